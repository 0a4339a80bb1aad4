//! The syncer: a loop over every Application, converging the cluster to each one's repository.
//!
//! Per Application the loop keeps an [`AppState`] and, on every tick, walks it through these
//! steps (each skipped when nothing calls for it):
//! 0. **take** an `operation` written through the API (`super::operation`: sync, rollback);
//! 1. **fetch** the mirror: first sight, a `gitplane.io/refresh` request, a file-system event in
//!    a local repository, a verified push webhook, or the polling interval (60 s by default);
//! 2. **render** the tree at the resolved commit (cached per commit and spec);
//! 3. **compare** with the live cluster (at least every `heal_every`, so drift is seen within
//!    seconds);
//! 4. **sync** when asked (an operation, through `gitplane.io/sync-request`) or when the policy is
//!    automated and the commit or spec changed since the last sync (or always, with selfHeal);
//!    an automatic sync that failed is retried for the same commit and spec with back-off (5 s
//!    doubling to 3 minutes), as a namespace another app creates may simply not exist yet;
//! 5. **report** in `status`: sync, health, conditions with file:line, resources, history.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apimachinery::application::{API_VERSION, KIND, PLURAL};
use apimachinery::object::ObjectExt;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

use super::application::{
    ANNOTATION_REFRESH, ANNOTATION_SYNC_REQUEST, Condition, HistoryEntry, ResourceStatus, Spec,
    parse_interval,
};
use super::cluster::Cluster;
use super::repo::{self, Credentials, Mirror};
use super::sync;

/// Syncer settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where mirrors live (`DATA_DIR/repos`).
    pub mirrors: PathBuf,
    /// How often the loop looks at Applications.
    pub tick: Duration,
    /// How often each Application is compared with the cluster at the least (self-heal delay).
    pub heal_every: Duration,
    /// Polling interval for remote repositories without one of their own.
    pub poll_default: Duration,
}

impl Config {
    /// Defaults for a data dir.
    pub fn new(data_dir: &std::path::Path) -> Self {
        Config {
            mirrors: data_dir.join("repos"),
            tick: Duration::from_millis(250),
            heal_every: Duration::from_secs(3),
            poll_default: Duration::from_secs(60),
        }
    }
}

/// The ApiResource of Applications.
pub fn application_resource() -> ApiResource {
    ApiResource {
        group: apimachinery::application::GROUP.into(),
        version: apimachinery::application::VERSION.into(),
        api_version: API_VERSION.into(),
        kind: KIND.into(),
        plural: PLURAL.into(),
    }
}

/// Rendered objects with their `file:line`, or why rendering failed.
type Rendered = Result<Vec<(Value, String)>, String>;

/// What the loop remembers of one Application between ticks.
#[derive(Default)]
struct AppState {
    fetched_at: Option<Instant>,
    seen_refresh: Option<String>,
    rendered: Option<(String, u64, Rendered)>,
    compared_at: Option<Instant>,
    compared_key: Option<(String, u64)>,
    /// Automatic syncs of this commit and spec that failed in a row, and when to try again.
    failures: u32,
    retry_at: Option<Instant>,
}

/// The back-off before retrying a failed automatic sync: 5 s, doubling, at most 3 minutes.
fn retry_delay(failures: u32) -> Duration {
    Duration::from_secs((5u64 << failures.saturating_sub(1).min(6)).min(180))
}

/// Paths of local repositories that changed since the loop last looked.
type Changed = Arc<Mutex<HashSet<PathBuf>>>;

/// The running syncer.
pub struct Syncer {
    cluster: Cluster,
    config: Config,
    states: HashMap<String, AppState>,
    mirrors: HashMap<String, Arc<Mutex<Mirror>>>,
    changed: Changed,
    wake: Arc<tokio::sync::Notify>,
    watcher: Option<notify::RecommendedWatcher>,
    watched: HashSet<PathBuf>,
    pushed: super::webhook::Pushed,
}

fn spec_hash(spec: &Value) -> u64 {
    let mut h = DefaultHasher::new();
    spec.to_string().hash(&mut h);
    h.finish()
}

fn now() -> String {
    let t = jiff::Timestamp::now();
    jiff::Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string()
}

impl Syncer {
    /// A syncer using `client`.
    pub fn new(client: kube::Client, config: Config) -> Self {
        let changed: Changed = Arc::default();
        let wake = Arc::new(tokio::sync::Notify::new());
        let (c, w) = (changed.clone(), wake.clone());
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event {
                let mut set = c.lock().unwrap_or_else(|p| p.into_inner());
                set.extend(event.paths);
                w.notify_one();
            }
        })
        .map_err(|e| tracing::warn!(error = %e, "file watching unavailable; local repositories are polled"))
        .ok();
        Syncer {
            cluster: Cluster::new(client),
            config,
            states: HashMap::new(),
            mirrors: HashMap::new(),
            changed,
            wake,
            watcher,
            watched: HashSet::new(),
            pushed: Default::default(),
        }
    }

    /// The webhook endpoint feeding this syncer, with the shared secret (`None`: refuse all).
    pub fn webhook(&self, secret: Option<Vec<u8>>) -> super::webhook::Endpoint {
        super::webhook::Endpoint {
            secret: secret.map(Arc::new),
            pushed: self.pushed.clone(),
            wake: self.wake.clone(),
        }
    }

    /// Runs until `shutdown` resolves.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %e, "syncer pass failed");
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(self.config.tick) => {}
                _ = self.wake.notified() => {
                    // Let a burst of file events settle before reading the repository.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// One pass over every Application.
    pub async fn tick(&mut self) -> Result<(), kube::Error> {
        let api: Api<DynamicObject> =
            Api::all_with(self.cluster.client().clone(), &application_resource());
        let apps = api.list(&ListParams::default()).await?;
        let changed: HashSet<PathBuf> =
            std::mem::take(&mut *self.changed.lock().unwrap_or_else(|p| p.into_inner()));
        let pushed: HashSet<String> =
            std::mem::take(&mut *self.pushed.lock().unwrap_or_else(|p| p.into_inner()));
        let names: HashSet<String> = apps
            .items
            .iter()
            .filter_map(|a| a.metadata.name.clone())
            .collect();
        self.states.retain(|n, _| names.contains(n));
        // Applications in their own sync-wave order (then by name), so that the platform an app
        // needs (its namespace, say) is synced first.
        let mut values: Vec<Value> = apps
            .items
            .iter()
            .map(|a| serde_json::to_value(a).unwrap_or_default())
            .collect();
        values.sort_by_key(|v| (super::compare::wave(v), v.name().unwrap_or("").to_string()));
        for value in values {
            if let Err(e) = self.reconcile(&api, &value, &changed, &pushed).await {
                tracing::warn!(app = value.name().unwrap_or(""), error = %e, "reconcile failed");
            }
        }
        Ok(())
    }

    fn watch_local(&mut self, path: &std::path::Path) {
        let target = if path.join(".git").is_dir() {
            path.join(".git")
        } else {
            path.to_path_buf()
        };
        if self.watched.contains(&target) {
            return;
        }
        if let Some(w) = self.watcher.as_mut() {
            use notify::Watcher;
            if w.watch(&target, notify::RecursiveMode::Recursive).is_ok() {
                self.watched.insert(target);
            }
        }
    }

    async fn reconcile(
        &mut self,
        api: &Api<DynamicObject>,
        app: &Value,
        changed: &HashSet<PathBuf>,
        pushed: &HashSet<String>,
    ) -> Result<(), String> {
        let app = &super::operation::take(
            self.cluster.client(),
            &self.config.mirrors,
            api,
            app.clone(),
        )
        .await;
        let name = app.name().unwrap_or("").to_string();
        let spec_value = app.get("spec").cloned().unwrap_or(json!({}));
        let status = app.get("status").cloned().unwrap_or(json!({}));
        let spec: Spec = match serde_json::from_value(spec_value.clone()) {
            Ok(s) => s,
            Err(e) => {
                return self
                    .report_error(api, &name, "InvalidSpec", &format!("spec: {e}"))
                    .await;
            }
        };
        if spec.source.repo_url.is_empty() {
            return self
                .report_error(
                    api,
                    &name,
                    "InvalidSpec",
                    "spec.source.repoURL: Required value",
                )
                .await;
        }
        let hash = spec_hash(&spec_value);
        let annotations = app.annotations();
        let refresh = annotations.get(ANNOTATION_REFRESH).cloned();
        let sync_request = annotations.get(ANNOTATION_SYNC_REQUEST).cloned();
        let handled_request = status
            .pointer("/operationState/requestId")
            .and_then(Value::as_str)
            .map(str::to_string);
        let pending_request = sync_request
            .clone()
            .filter(|r| Some(r) != handled_request.as_ref());

        let local = repo::local_path(&spec.source.repo_url);
        if let Some(p) = &local {
            self.watch_local(p);
        }
        let poll = spec
            .sync_policy
            .interval
            .as_deref()
            .and_then(parse_interval)
            .unwrap_or(self.config.poll_default);
        let state = self.states.entry(name.clone()).or_default();
        let repo_changed = local
            .as_ref()
            .is_some_and(|p| changed.iter().any(|c| c.starts_with(p)));
        let need_fetch = state.fetched_at.is_none_or(|t| t.elapsed() >= poll)
            || refresh != state.seen_refresh
            || repo_changed
            || super::webhook::matches(&spec.source.repo_url, pushed)
            || pending_request.is_some();
        let mirror = match self.mirrors.get(&spec.source.repo_url) {
            Some(m) => m.clone(),
            None => {
                let m = Mirror::open(&self.config.mirrors, &spec.source.repo_url)
                    .map_err(|e| e.to_string());
                match m {
                    Ok(m) => {
                        let m = Arc::new(Mutex::new(m));
                        self.mirrors.insert(spec.source.repo_url.clone(), m.clone());
                        m
                    }
                    Err(e) => return self.report_error(api, &name, "RepoError", &e).await,
                }
            }
        };
        if need_fetch {
            let creds =
                match credentials(self.cluster.client(), spec.source.secret_ref.as_deref()).await {
                    Ok(c) => c,
                    Err(e) => return self.report_error(api, &name, "RepoError", &e).await,
                };
            let m = mirror.clone();
            let fetched = tokio::task::spawn_blocking(move || {
                m.lock().unwrap_or_else(|p| p.into_inner()).fetch(&creds)
            })
            .await
            .map_err(|e| e.to_string())?;
            if let Err(e) = fetched {
                return self
                    .report_error(api, &name, "RepoError", &e.to_string())
                    .await;
            }
            let state = self.states.entry(name.clone()).or_default();
            state.fetched_at = Some(Instant::now());
            state.seen_refresh = refresh.clone();
        }

        // Resolve and render (cached per commit and spec).
        let (m, rev, src) = (
            mirror.clone(),
            spec.source.target_revision.clone(),
            spec.source.clone(),
        );
        let state = self.states.entry(name.clone()).or_default();
        let cached = state.rendered.clone();
        let (app_name, dest) = (name.clone(), spec.destination.namespace.clone());
        let resolved = tokio::task::spawn_blocking(move || {
            let mirror = m.lock().unwrap_or_else(|p| p.into_inner());
            let oid = mirror.resolve(&rev).map_err(|e| e.to_string())?;
            let sha = oid.to_string();
            if let Some((s, h, r)) = cached
                && s == sha
                && h == hash
            {
                return Ok::<_, String>((sha, r, None));
            }
            let info = mirror.commit_info(oid).ok();
            let rendered = render_at(&mirror, oid, &src, &app_name, &dest);
            Ok((sha, rendered, info))
        })
        .await
        .map_err(|e| e.to_string())?;
        let (sha, rendered, info) = match resolved {
            Ok(r) => r,
            Err(e) => return self.report_error(api, &name, "RepoError", &e).await,
        };
        let state = self.states.entry(name.clone()).or_default();
        state.rendered = Some((sha.clone(), hash, rendered.clone()));
        let objects = match rendered {
            Ok(o) => o,
            Err(e) => {
                return self
                    .report_error(
                        api,
                        &name,
                        "ComparisonError",
                        &format!("revision {}: {e}", short(&sha)),
                    )
                    .await;
            }
        };

        // Compare (and maybe sync) when something changed or the self-heal period is up.
        let key = (sha.clone(), hash);
        let due = state.compared_key.as_ref() != Some(&key)
            || state
                .compared_at
                .is_none_or(|t| t.elapsed() >= self.config.heal_every)
            || pending_request.is_some()
            || need_fetch;
        if !due {
            return Ok(());
        }
        state.compared_key = Some(key);
        state.compared_at = Some(Instant::now());
        let retry_at = state.retry_at;
        let previous: Vec<ResourceStatus> = status
            .get("resources")
            .cloned()
            .and_then(|r| serde_json::from_value(r).ok())
            .unwrap_or_default();
        let mut plan = match sync::plan(
            &self.cluster,
            &name,
            &spec.destination.namespace,
            &spec.source.repo_url,
            &objects,
            &previous,
        )
        .await
        {
            Ok(p) => p,
            Err(e) => {
                return self
                    .report_error(
                        api,
                        &name,
                        "ComparisonError",
                        &format!("revision {}: {e}", short(&sha)),
                    )
                    .await;
            }
        };

        let op = status.get("operationState").cloned().unwrap_or(json!({}));
        let op_key = (
            op.get("revision")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            op.get("specHash")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        );
        let this_key = (sha.clone(), hash.to_string());
        let op_phase = op.get("phase").and_then(Value::as_str).unwrap_or("");
        let auto = spec.sync_policy.automated.clone();
        let retry_due = retry_at.is_none_or(|t| Instant::now() >= t);
        let auto_sync = auto.as_ref().is_some_and(|a| {
            plan.out_of_sync()
                && if op_key == this_key {
                    match op_phase {
                        "Succeeded" => a.self_heal,
                        "Failed" => retry_due,
                        _ => true,
                    }
                } else {
                    true
                }
        });
        let mut conditions = Vec::new();
        let mut operation = op.clone();
        let mut history: Vec<HistoryEntry> = status
            .get("history")
            .cloned()
            .and_then(|h| serde_json::from_value(h).ok())
            .unwrap_or_default();
        if pending_request.is_some() || auto_sync {
            let prune = auto.as_ref().is_some_and(|a| a.prune)
                || pending_request
                    .as_deref()
                    .is_some_and(|r| r.ends_with(":prune"));
            let started = now();
            // Show the operation in progress while it runs.
            let running = json!({"status": {"operationState": {
                "phase": "Running", "message": format!("syncing to {}", short(&sha)), "revision": sha,
                "specHash": hash.to_string(), "requestId": sync_request.clone().unwrap_or_default(),
                "startedAt": started,
            }}});
            if let Err(e) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(running))
                .await
            {
                tracing::warn!(app = %name, error = %e, "recording the running operation failed");
            }
            let errors = sync::dry_run(&self.cluster, &plan, &sha).await;
            let result = if errors.is_empty() {
                sync::apply(&self.cluster, &mut plan, &sha, prune)
                    .await
                    .map_err(|e| e.0)
            } else {
                Err(errors)
            };
            let (phase, message) = match &result {
                Ok(()) => ("Succeeded", format!("synced to {}", short(&sha))),
                Err(errs) => ("Failed", errs.join("; ")),
            };
            if let Err(errs) = &result {
                for e in errs {
                    conditions.push(Condition {
                        type_: "SyncError".into(),
                        message: e.clone(),
                        last_transition_time: started.clone(),
                    });
                }
            }
            operation = json!({
                "phase": phase, "message": message, "revision": sha, "specHash": hash.to_string(),
                "requestId": sync_request.clone().unwrap_or_default(), "startedAt": started, "finishedAt": now(),
            });
            if result.is_ok() && history.last().is_none_or(|h| h.revision != sha) {
                let info = info.or_else(|| {
                    let m = mirror.lock().unwrap_or_else(|p| p.into_inner());
                    git2::Oid::from_str(&sha)
                        .ok()
                        .and_then(|o| m.commit_info(o).ok())
                });
                history.push(HistoryEntry {
                    revision: sha.clone(),
                    deployed_at: now(),
                    author: info.as_ref().map(|i| i.author.clone()).unwrap_or_default(),
                    message: info.as_ref().map(|i| i.message.clone()).unwrap_or_default(),
                });
                let excess = history.len().saturating_sub(10);
                history.drain(..excess);
            }
            let state = self.states.entry(name.clone()).or_default();
            if result.is_ok() {
                state.failures = 0;
                state.retry_at = None;
            } else {
                state.failures += 1;
                state.retry_at = Some(Instant::now() + retry_delay(state.failures));
            }
            tracing::info!(app = %name, revision = short(&sha), phase, "sync");
        } else if op_phase == "Failed" && op_key == this_key {
            // Keep showing why the last sync of this revision failed.
            for e in op
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .split("; ")
            {
                conditions.push(Condition {
                    type_: "SyncError".into(),
                    message: e.to_string(),
                    last_transition_time: now(),
                });
            }
        }
        let sync_status = if plan.out_of_sync() {
            "OutOfSync"
        } else {
            "Synced"
        };
        let new_status = json!({
            "sync": {"status": sync_status, "revision": sha},
            "health": {"status": sync::app_health(&plan).as_str()},
            "conditions": conditions,
            "resources": sync::resource_statuses(&plan),
            "history": history,
            "operationState": operation,
            "reconciledAt": now(),
        });
        self.write_status(api, &name, &status, new_status).await
    }

    async fn write_status(
        &self,
        api: &Api<DynamicObject>,
        name: &str,
        old: &Value,
        mut new: Value,
    ) -> Result<(), String> {
        // Do not rewrite status just to move the clock.
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Some(m) = v.as_object_mut() {
                m.remove("reconciledAt");
                if let Some(c) = m.get_mut("conditions").and_then(Value::as_array_mut) {
                    for x in c {
                        if let Some(o) = x.as_object_mut() {
                            o.remove("lastTransitionTime");
                        }
                    }
                }
            }
            v
        };
        if strip(old) == strip(&new) {
            return Ok(());
        }
        if let (Some(o), Some(n)) = (old.get("conditions"), new.get_mut("conditions")) {
            // Keep the original transition time of conditions that did not change.
            if let (Some(o), Some(n)) = (o.as_array(), n.as_array_mut()) {
                for c in n.iter_mut() {
                    if let Some(prev) = o.iter().find(|p| {
                        p.get("type") == c.get("type") && p.get("message") == c.get("message")
                    }) {
                        c["lastTransitionTime"] = prev["lastTransitionTime"].clone();
                    }
                }
            }
        }
        api.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": new})),
        )
        .await
        .map(|_| ())
        .map_err(|e| format!("writing status of {name}: {e}"))
    }

    async fn report_error(
        &self,
        api: &Api<DynamicObject>,
        name: &str,
        kind: &str,
        message: &str,
    ) -> Result<(), String> {
        let current = api.get(name).await.map_err(|e| e.to_string())?;
        let current = serde_json::to_value(current).unwrap_or_default();
        let mut status = current.get("status").cloned().unwrap_or(json!({}));
        if !status.is_object() {
            status = json!({});
        }
        status["conditions"] =
            json!([{"type": kind, "message": message, "lastTransitionTime": now()}]);
        // The repository could not be compared with the cluster: what is live stays, but
        // whether it matches the repository is not known.
        status["sync"]["status"] = json!("Unknown");
        let old = current.get("status").cloned().unwrap_or(json!({}));
        self.write_status(api, name, &old, status).await
    }
}

/// The credentials an Application's `spec.source.secretRef` names (`namespace/name`, or `name`
/// in `default`): `username` and `password` (or `token`) for https, `sshPrivateKey` for ssh.
pub async fn credentials(
    client: &kube::Client,
    secret_ref: Option<&str>,
) -> Result<Credentials, String> {
    let Some(r) = secret_ref.filter(|s| !s.is_empty()) else {
        return Ok(Credentials::default());
    };
    let (ns, name) = r.split_once('/').unwrap_or(("default", r));
    let api: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), ns);
    let secret = api
        .get(name)
        .await
        .map_err(|e| format!("reading secret {ns}/{name}: {e}"))?;
    let field = |k: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(k))
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
            .or_else(|| secret.string_data.as_ref().and_then(|d| d.get(k).cloned()))
    };
    Ok(Credentials {
        username: field("username"),
        password: field("password").or_else(|| field("token")),
        ssh_private_key: field("sshPrivateKey"),
    })
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

/// Renders an Application's source at a commit: objects with their `file:line`.
pub fn render_at(
    mirror: &Mirror,
    oid: git2::Oid,
    source: &super::application::Source,
    app: &str,
    namespace: &str,
) -> Result<Vec<(Value, String)>, String> {
    use templates::source::Source as _;
    let tree = mirror.tree(oid).map_err(|e| e.to_string())?;
    let path = source.path.trim_matches('/').to_string();
    if !path.is_empty() && !tree.exists(&path) {
        return Err(format!("path {path:?} does not exist in the repository"));
    }
    let mut values_files = Vec::new();
    for f in &source.values_files {
        let file = templates::source::join(&path, f).map_err(|e| e.to_string())?;
        let bytes = tree.read(&file).map_err(|e| e.to_string())?;
        values_files.push(templates::chart::ValuesFile {
            name: file,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        });
    }
    let options = templates::chart::Options {
        release_name: Some(app.to_string()),
        namespace: (!namespace.is_empty()).then(|| namespace.to_string()),
        values_files,
        values: source.values.clone().into_iter().collect(),
        set: source.set.clone(),
    };
    let rendered = templates::render(&tree, &path, &options).map_err(|e| e.to_string())?;
    Ok(rendered
        .objects
        .into_iter()
        .map(|o| (o.value, format!("{}:{}", o.origin.file, o.origin.line)))
        .collect())
}
