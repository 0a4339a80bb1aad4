//! One pass over one Application, in the syncer's five steps: [`fetch`], [`render`], [`compare`],
//! [`sync`] and [`report`].
//!
//! Each step is skipped when nothing calls for it:
//! 0. **take** an `operation` written through the API ([`super::operation`]: sync, rollback),
//!    which becomes the sync request;
//! 1. **fetch** the mirror: first sight, a `gitplane.io/refresh` request, a repository event (a
//!    file-system event in a local repository, a verified push webhook), a pending manual sync,
//!    or the polling interval (60 s by default);
//! 2. **render** the tree at the resolved commit (cached per commit and spec);
//! 3. **compare** with the live cluster when the commit or spec changed, after a fetch, on a
//!    manual sync, on drift a remote destination's watch saw ([`super::drift`], at most every
//!    [`DRIFT_GAP`]), and at least every `heal_every` (so drift is seen within seconds);
//! 4. **sync** when asked (an operation, through `gitplane.io/sync-request`) or when the policy is
//!    automated and the commit or spec changed since the last sync (or always, with selfHeal);
//!    an automatic sync that failed is retried for the same commit and spec with back-off (5 s
//!    doubling to 3 minutes), as a namespace another app creates may simply not exist yet;
//! 5. **report** in `status` ([`ApplicationStatus`]): sync, health, conditions with file:line,
//!    resources, history, the operation. A step that fails reports its error as the one
//!    condition (`InvalidSpec`, `RepoError`, `ComparisonError`) with sync status `Unknown`.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apimachinery::object::ObjectExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

use super::application::{
    ANNOTATION_REFRESH, ANNOTATION_SYNC_REQUEST, ApplicationStatus, Condition, HealthStatus,
    HistoryEntry, OperationState, Phase, Source, Spec, SyncStatus, parse_interval,
};
use super::chartrepo::{self, ChartError, Pulled};
use super::cluster::Cluster;
use super::destinations::{DestinationError, Destinations, Target};
use super::drift::Drift;
use super::repo::{CommitInfo, Credentials, Mirror, RepoError};
use super::sync::{self, Plan, SyncError};
use super::syncer::Config;

/// Why a step of a pass failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// `spec` does not read as an Application spec.
    #[error("spec: {0}")]
    InvalidSpec(#[source] serde_json::Error),
    /// `spec.source.repoURL` is empty.
    #[error("spec.source.repoURL: Required value")]
    MissingRepoUrl,
    /// The Secret named by `spec.source.secretRef` could not be read.
    #[error("reading secret {namespace}/{name}: {source}")]
    Secret {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// What the API server answered.
        #[source]
        source: kube::Error,
    },
    /// The mirror could not be opened or fetched, or the revision not resolved.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The chart could not be had from its chart repository.
    #[error(transparent)]
    Chart(#[from] ChartError),
    /// `spec.source.path` names nothing in the tree.
    #[error("path {0:?} does not exist in the repository")]
    MissingPath(String),
    /// A values file could not be read.
    #[error(transparent)]
    Source(#[from] templates::source::SourceError),
    /// The manifests, chart or kustomization did not render.
    #[error(transparent)]
    Template(#[from] templates::Error),
    /// Rendering the commit failed (the error is cached with the commit's rendering).
    #[error("revision {revision}: {source}")]
    Render {
        /// The commit, shortened.
        revision: String,
        /// Why.
        #[source]
        source: Arc<StepError>,
    },
    /// The rendered objects could not be compared with the cluster.
    #[error("revision {revision}: {source}")]
    Plan {
        /// The commit, shortened.
        revision: String,
        /// Why.
        #[source]
        source: SyncError,
    },
    /// The Application could not be read.
    #[error("reading application {name}: {source}")]
    ReadApplication {
        /// The Application.
        name: String,
        /// What the API server answered.
        #[source]
        source: kube::Error,
    },
    /// The status could not be written.
    #[error("writing status of {name}: {source}")]
    WriteStatus {
        /// The Application.
        name: String,
        /// What the API server answered.
        #[source]
        source: kube::Error,
    },
    /// The destination is not the local cluster nor a registered one, or it did not answer.
    #[error(transparent)]
    Destination(#[from] DestinationError),
    /// A blocking Git task panicked or was cancelled.
    #[error("git task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The source renders more objects than one Application may hold.
    #[error(
        "the source renders {count} objects; an Application holds at most {limit} (split it \
         into several Applications)"
    )]
    TooManyObjects {
        /// Objects rendered.
        count: usize,
        /// [`MAX_OBJECTS`].
        limit: usize,
    },
}

/// The most objects one Application may render. Every one is diffed, dry-run and tracked in
/// `status.resources`, so the syncer's memory and a sync's length grow with it; a commit above
/// it is refused as a whole (nothing applied) with a `ComparisonError` condition.
pub const MAX_OBJECTS: usize = 10_000;

/// `objects`, unless there are more than [`MAX_OBJECTS`].
fn bounded(objects: Vec<(Value, String)>) -> Result<Vec<(Value, String)>, StepError> {
    match objects.len() {
        count if count > MAX_OBJECTS => Err(StepError::TooManyObjects {
            count,
            limit: MAX_OBJECTS,
        }),
        _ => Ok(objects),
    }
}

impl StepError {
    /// The condition type this error is reported as; `None`: it cannot be reported (reading or
    /// writing the Application failed) and is only logged.
    fn condition(&self) -> Option<&'static str> {
        match self {
            StepError::InvalidSpec(_) | StepError::MissingRepoUrl => Some("InvalidSpec"),
            StepError::Secret { .. } | StepError::Repo(_) | StepError::Chart(_) => {
                Some("RepoError")
            }
            StepError::MissingPath(_)
            | StepError::Source(_)
            | StepError::Template(_)
            | StepError::Render { .. }
            | StepError::TooManyObjects { .. }
            | StepError::Plan { .. } => Some("ComparisonError"),
            StepError::Destination(e) => Some(e.condition()),
            StepError::ReadApplication { .. }
            | StepError::WriteStatus { .. }
            | StepError::Task(_) => None,
        }
    }
}

/// What every pass shares: the clusters, the settings and the mirrors (one per repository URL).
pub struct Context {
    /// The cluster the syncer runs on (Applications, Secrets; the default destination).
    pub cluster: Arc<Cluster>,
    /// The clusters Applications are synced to.
    pub destinations: Destinations,
    /// The watches of remote destinations.
    pub drift: Drift,
    /// Applications.
    pub api: Api<DynamicObject>,
    /// Syncer settings.
    pub config: Config,
    mirrors: Mutex<HashMap<String, Arc<Mutex<Mirror>>>>,
    /// When the last fetch of each mirror started: a pass that asked for a fetch before then
    /// takes that one (the Applications of one repository woken by one commit fetch once).
    fetch_started: Arc<Mutex<HashMap<String, Instant>>>,
}

impl Context {
    /// A context over `client`.
    pub fn new(client: kube::Client, config: Config) -> Self {
        let cluster = Arc::new(Cluster::new(client.clone()));
        Context {
            api: Api::all_with(client.clone(), &super::syncer::application_resource()),
            destinations: Destinations::new(client, cluster.clone()),
            drift: Drift::default(),
            cluster,
            config,
            mirrors: Mutex::default(),
            fetch_started: Arc::default(),
        }
    }

    /// The mirror of `repo_url`, opened on first use.
    fn mirror(&self, repo_url: &str) -> Result<Arc<Mutex<Mirror>>, RepoError> {
        let mut mirrors = self.mirrors.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = mirrors.get(repo_url) {
            return Ok(m.clone());
        }
        let m = Arc::new(Mutex::new(Mirror::open(&self.config.mirrors, repo_url)?));
        mirrors.insert(repo_url.to_string(), m.clone());
        Ok(m)
    }
}

/// What a pass remembers of one Application until its next pass.
#[derive(Default)]
pub struct AppState {
    fetched_at: Option<Instant>,
    seen_refresh: Option<String>,
    rendered: Option<Rendered>,
    compared_at: Option<Instant>,
    compared_key: Option<(String, u64)>,
    /// A watch saw drift in the destination since the last comparison.
    drift_pending: bool,
    /// The chart archive last pulled (an Application of a chart repository).
    pulled: Option<Pulled>,
    /// Automatic syncs of this commit and spec that failed in a row, and when to try again.
    failures: u32,
    retry_at: Option<Instant>,
}

impl AppState {
    /// Records that a destination watch saw one of the Application's objects change.
    pub fn drifted(&mut self) {
        self.drift_pending = true;
    }
}

/// The shortest time between two comparisons that drift asks for (a sync's own writes come
/// back as watch events too, and an object that never settles must not be compared in a loop).
pub const DRIFT_GAP: Duration = Duration::from_millis(500);

/// A commit rendered for one spec: the objects with their `file:line`, or why rendering failed.
#[derive(Clone)]
struct Rendered {
    sha: String,
    spec_hash: u64,
    info: Option<CommitInfo>,
    objects: Result<Arc<Vec<(Value, String)>>, Arc<StepError>>,
}

/// What the Application asks for, read once at the start of a pass.
struct Request {
    name: String,
    spec: Spec,
    spec_hash: u64,
    refresh: Option<String>,
    /// The `gitplane.io/sync-request` annotation.
    sync_request: Option<String>,
    /// The sync request, when no operation has handled it yet.
    pending_request: Option<String>,
    status: ApplicationStatus,
}

impl Request {
    fn read(app: &Value) -> Result<Request, StepError> {
        let spec_value = app.get("spec").cloned().unwrap_or(json!({}));
        let spec: Spec =
            serde_json::from_value(spec_value.clone()).map_err(StepError::InvalidSpec)?;
        if spec.source.repo_url.is_empty() {
            return Err(StepError::MissingRepoUrl);
        }
        let status: ApplicationStatus = app
            .get("status")
            .cloned()
            .and_then(|s| serde_json::from_value(s).ok())
            .unwrap_or_default();
        let annotations = app.annotations();
        let sync_request = annotations.get(ANNOTATION_SYNC_REQUEST).cloned();
        let handled = status.operation_state.as_ref().map(|o| &o.request_id);
        Ok(Request {
            name: app.name().unwrap_or("").to_string(),
            spec_hash: spec_hash(&spec_value),
            refresh: annotations.get(ANNOTATION_REFRESH).cloned(),
            pending_request: sync_request.clone().filter(|r| Some(r) != handled),
            sync_request,
            spec,
            status,
        })
    }
}

/// One pass over the Application `name`: the five steps; a failed step is reported in its
/// status.
///
/// The pass reads the Application itself rather than taking the watch's copy: that copy may not
/// have the status the previous pass wrote yet, and a status built on it would undo that one.
pub async fn reconcile(
    ctx: &Context,
    name: &str,
    state: &mut AppState,
    repo_event: bool,
) -> Result<(), StepError> {
    let read = ctx
        .api
        .get_opt(name)
        .await
        .map_err(|source| StepError::ReadApplication {
            name: name.to_string(),
            source,
        })?;
    let Some(app) = read.and_then(|a| serde_json::to_value(a).ok()) else {
        return Ok(());
    };
    if app.pointer("/metadata/deletionTimestamp").is_some() {
        return match finalize(ctx, name, &app).await {
            Err(e) => match e.condition() {
                Some(kind) => report_error(ctx, name, kind, &e.to_string()).await,
                None => Err(e),
            },
            Ok(()) => Ok(()),
        };
    }
    // An operation written through the API (sync, rollback) becomes this pass's sync request.
    let app =
        super::operation::take(ctx.cluster.client(), &ctx.config.mirrors, &ctx.api, app).await;
    match pass(ctx, &app, state, repo_event).await {
        Err(e) => match e.condition() {
            Some(kind) => report_error(ctx, name, kind, &e.to_string()).await,
            None => Err(e),
        },
        Ok(()) => Ok(()),
    }
}

async fn pass(
    ctx: &Context,
    app: &Value,
    state: &mut AppState,
    repo_event: bool,
) -> Result<(), StepError> {
    let app = Request::read(app)?;
    let (origin, fetched) = fetch(ctx, &app, state, repo_event).await?;
    let rendered = match origin {
        Fetched::Git(mirror) => render(&app, mirror, state).await?,
        Fetched::Chart(pulled) => render_pulled(&app, pulled, state).await?,
    };
    let objects = rendered
        .objects
        .clone()
        .map_err(|source| StepError::Render {
            revision: short(&rendered.sha).to_string(),
            source,
        })?;
    if !compare_due(ctx, &app, state, &rendered.sha, fetched) {
        return Ok(());
    }
    // Nothing is applied anywhere unless the destination is this cluster or a registered one.
    let target = ctx.destinations.resolve(&app.spec.destination).await?;
    let plan = compare(&app, &target, &objects, &rendered.sha).await;
    if let Some(e) = ctx.destinations.observe(&target) {
        return Err(e.into());
    }
    let mut plan = plan?;
    ctx.drift.watch(
        &target,
        plan.items.iter().filter_map(|item| item.resource.as_ref()),
    );
    let synced = sync(ctx, &app, &target, &mut plan, &rendered, state).await;
    ctx.destinations.observe(&target);
    report(ctx, &app, &plan, &rendered.sha, synced).await
}

/// A deleted Application with the resources finalizer (an ApplicationSet's, unless it preserves
/// resources): deletes every object its status records that still names it, in its
/// destination, then removes the finalizer. Without the finalizer its objects stay.
async fn finalize(ctx: &Context, name: &str, app: &Value) -> Result<(), StepError> {
    use super::applicationset::FINALIZER;
    let finalizers = app.finalizers();
    if !finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let spec: Spec = serde_json::from_value(app.get("spec").cloned().unwrap_or(json!({})))
        .map_err(StepError::InvalidSpec)?;
    let status: ApplicationStatus = app
        .get("status")
        .cloned()
        .and_then(|s| serde_json::from_value(s).ok())
        .unwrap_or_default();
    let target = ctx.destinations.resolve(&spec.destination).await?;
    let mut errors = Vec::new();
    for entry in status.resources.iter().rev() {
        let gvk = apimachinery::registry::GroupVersionKind {
            group: entry.group.clone(),
            version: entry.version.clone(),
            kind: entry.kind.clone(),
        };
        let Ok(resource) = target.cluster.resource(&gvk).await else {
            continue;
        };
        let ns = (!entry.namespace.is_empty()).then_some(entry.namespace.as_str());
        match target.cluster.get(&resource, ns, &entry.name).await {
            Ok(Some(live))
                if live
                    .annotations()
                    .get(apimachinery::application::ANNOTATION_APP)
                    == Some(&name.to_string()) =>
            {
                if let Err(e) = target.cluster.delete(&resource, ns, &entry.name).await {
                    errors.push(format!("deleting {}/{}: {e}", entry.kind, entry.name));
                }
            }
            Ok(_) => {}
            Err(e) => errors.push(format!("reading {}/{}: {e}", entry.kind, entry.name)),
        }
    }
    if let Some(e) = ctx.destinations.observe(&target) {
        return Err(e.into());
    }
    if !errors.is_empty() {
        return Err(StepError::Plan {
            revision: "deletion".into(),
            source: SyncError(errors),
        });
    }
    let rest: Vec<String> = finalizers.into_iter().filter(|f| f != FINALIZER).collect();
    let patch = json!({"metadata": {"finalizers": rest,
        "resourceVersion": app.resource_version().unwrap_or("")}});
    ctx.api
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(drop)
        .map_err(|source| StepError::WriteStatus {
            name: name.to_string(),
            source,
        })
}

/// Where step 1 left the source: a Git mirror, or a chart archive from a chart repository.
enum Fetched {
    Git(Arc<Mutex<Mirror>>),
    Chart(Pulled),
}

/// Whether the Application names a chart in a Helm chart repository (`chart` and an HTTP(S)
/// `repoURL`), rather than a Git repository.
pub fn is_chart_repository(source: &Source) -> bool {
    !source.chart.is_empty()
}

/// Step 1: fetches the mirror (or the chart repository's index, and the chart's archive when
/// it is not cached) when something calls for it; returns the source and whether it was
/// fetched.
async fn fetch(
    ctx: &Context,
    app: &Request,
    state: &mut AppState,
    repo_event: bool,
) -> Result<(Fetched, bool), StepError> {
    let poll = app
        .spec
        .sync_policy
        .interval
        .as_deref()
        .and_then(parse_interval)
        .unwrap_or(ctx.config.poll_default);
    let need = state.fetched_at.is_none_or(|t| t.elapsed() >= poll)
        || app.refresh != state.seen_refresh
        || repo_event
        || app.pending_request.is_some();
    if is_chart_repository(&app.spec.source) {
        let pulled = match state.pulled.clone() {
            Some(p) if !need => p,
            _ => {
                let source = &app.spec.source;
                let access = chartrepo::access(ctx.cluster.client(), source).await?;
                let (charts, source) = (ctx.config.charts.clone(), source.clone());
                let p = tokio::task::spawn_blocking(move || {
                    chartrepo::pull(
                        &charts,
                        &source.repo_url,
                        &source.chart,
                        &source.target_revision,
                        &access,
                    )
                })
                .await??;
                state.fetched_at = Some(Instant::now());
                state.seen_refresh = app.refresh.clone();
                state.pulled = Some(p.clone());
                p
            }
        };
        return Ok((Fetched::Chart(pulled), need));
    }
    let mirror = ctx.mirror(&app.spec.source.repo_url)?;
    if need {
        let asked = Instant::now();
        let creds =
            credentials(ctx.cluster.client(), app.spec.source.secret_ref.as_deref()).await?;
        let (m, fetch_started) = (mirror.clone(), ctx.fetch_started.clone());
        let url = app.spec.source.repo_url.clone();
        let started = Instant::now();
        let fetched = tokio::task::spawn_blocking(move || {
            let m = m.lock().unwrap_or_else(|p| p.into_inner());
            // Another Application of the repository fetched since this one asked: done.
            let fetched_since = |t: Option<&Instant>| t.is_some_and(|t| *t >= asked);
            if fetched_since(
                fetch_started
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&url),
            ) {
                return Ok(());
            }
            let now = Instant::now();
            m.fetch(&creds)?;
            fetch_started
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(url, now);
            Ok::<_, RepoError>(())
        })
        .await?;
        telemetry::argocd::metrics().git_fetch(
            &app.spec.source.repo_url,
            started.elapsed(),
            fetched.is_err(),
        );
        fetched?;
        state.fetched_at = Some(Instant::now());
        state.seen_refresh = app.refresh.clone();
    }
    Ok((Fetched::Git(mirror), need))
}

/// Step 2 for a chart repository: renders the pulled chart version, unless it is rendered for
/// this spec. The version stands where a commit would.
async fn render_pulled(
    app: &Request,
    pulled: Pulled,
    state: &mut AppState,
) -> Result<Rendered, StepError> {
    let revision = pulled.version.clone();
    if let Some(r) = state.rendered.clone()
        && r.sha == revision
        && r.spec_hash == app.spec_hash
    {
        return Ok(r);
    }
    let (source, name) = (app.spec.source.clone(), app.name.clone());
    let namespace = app.spec.destination.namespace.clone();
    let objects =
        tokio::task::spawn_blocking(move || render_chart(&pulled, &source, &name, &namespace))
            .await?;
    let rendered = Rendered {
        info: Some(CommitInfo {
            sha: revision.clone(),
            author: String::new(),
            time: String::new(),
            message: format!("chart {} {revision}", app.spec.source.chart),
        }),
        objects: objects.map(Arc::new).map_err(Arc::new),
        sha: revision,
        spec_hash: app.spec_hash,
    };
    state.rendered = Some(rendered.clone());
    Ok(rendered)
}

/// Step 2: resolves the revision and renders the commit, unless it is rendered for this spec.
async fn render(
    app: &Request,
    mirror: Arc<Mutex<Mirror>>,
    state: &mut AppState,
) -> Result<Rendered, StepError> {
    let cached = state.rendered.clone();
    let (source, name) = (app.spec.source.clone(), app.name.clone());
    let (namespace, spec_hash) = (app.spec.destination.namespace.clone(), app.spec_hash);
    let rendered = tokio::task::spawn_blocking(move || {
        let (oid, mirror) = {
            let mirror = mirror.lock().unwrap_or_else(|p| p.into_inner());
            let oid = mirror.resolve(&source.target_revision)?;
            if let Some(r) = cached
                && r.sha == oid.to_string()
                && r.spec_hash == spec_hash
            {
                return Ok::<_, StepError>(r);
            }
            // Render on a handle of its own: the shared one stays free for the others.
            (oid, mirror.reader()?)
        };
        let sha = oid.to_string();
        Ok(Rendered {
            info: mirror.commit_info(oid).ok(),
            objects: render_at(&mirror, oid, &source, &name, &namespace)
                .map(Arc::new)
                .map_err(Arc::new),
            sha,
            spec_hash,
        })
    })
    .await??;
    state.rendered = Some(rendered.clone());
    Ok(rendered)
}

/// Whether step 3 is due: the commit or spec changed, the mirror was fetched, a manual sync
/// waits, a watch saw drift (and [`DRIFT_GAP`] passed), or the self-heal period is up. Records
/// the comparison when it is.
fn compare_due(
    ctx: &Context,
    app: &Request,
    state: &mut AppState,
    sha: &str,
    fetched: bool,
) -> bool {
    let key = (sha.to_string(), app.spec_hash);
    let since = |gap: Duration| state.compared_at.is_none_or(|t| t.elapsed() >= gap);
    let due = state.compared_key.as_ref() != Some(&key)
        || since(ctx.config.heal_every)
        || (state.drift_pending && since(DRIFT_GAP))
        || app.pending_request.is_some()
        || fetched;
    if due {
        state.compared_key = Some(key);
        state.compared_at = Some(Instant::now());
        state.drift_pending = false;
    }
    due
}

/// Step 3: compares the rendered objects with the live objects of the destination; errors from
/// a registered cluster name it.
async fn compare(
    app: &Request,
    target: &Target,
    objects: &[(Value, String)],
    sha: &str,
) -> Result<Plan, StepError> {
    sync::plan(
        &target.cluster,
        &app.name,
        &app.spec.destination.namespace,
        &app.spec.source.repo_url,
        objects,
        &app.status.resources,
        app.spec.sync_policy.server_side_apply(),
    )
    .await
    .map_err(|mut source| {
        if !target.local {
            for e in &mut source.0 {
                *e = format!("cluster {:?}: {e}", target.name);
            }
        }
        StepError::Plan {
            revision: short(sha).to_string(),
            source,
        }
    })
}

/// What the sync step leaves for the report.
struct Synced {
    operation: Option<OperationState>,
    conditions: Vec<Condition>,
    history: Vec<HistoryEntry>,
}

/// Step 4: syncs when asked or when the policy calls for it (dry run, then apply); otherwise
/// keeps showing why the last sync of this commit and spec failed.
async fn sync(
    ctx: &Context,
    app: &Request,
    target: &Target,
    plan: &mut Plan,
    rendered: &Rendered,
    state: &mut AppState,
) -> Synced {
    let sha = rendered.sha.as_str();
    let last = app
        .status
        .operation_state
        .as_ref()
        .filter(|o| o.revision == sha && o.spec_hash == app.spec_hash.to_string());
    let mut synced = Synced {
        operation: app.status.operation_state.clone(),
        conditions: Vec::new(),
        history: app.status.history.clone(),
    };
    let Some(prune) = sync_wanted(app, plan, last, state.retry_at) else {
        if let Some(op) = last.filter(|o| o.phase == Phase::Failed) {
            synced.conditions = op
                .message
                .split("; ")
                .map(|e| sync_error(e.to_string(), now()))
                .collect();
        }
        return synced;
    };
    let started = now();
    // The operation that asked for this sync (recorded by `operation::take` under the request).
    let asked = app
        .status
        .operation_state
        .as_ref()
        .filter(|o| app.sync_request.as_ref() == Some(&o.request_id) && o.operation.is_some());
    let mut operation = OperationState {
        phase: Phase::Running,
        message: format!("syncing to {}", short(sha)),
        revision: sha.to_string(),
        spec_hash: app.spec_hash.to_string(),
        request_id: app.sync_request.clone().unwrap_or_default(),
        started_at: started.clone(),
        finished_at: None,
        operation: asked.and_then(|o| o.operation.clone()),
        initiated_by: asked.and_then(|o| o.initiated_by.clone()),
        revert_commit: asked.and_then(|o| o.revert_commit.clone()),
    };
    // Show the operation in progress while it runs.
    let running = json!({"status": {"operationState": operation}});
    if let Err(e) = ctx
        .api
        .patch_status(&app.name, &PatchParams::default(), &Patch::Merge(running))
        .await
    {
        tracing::warn!(app = %app.name, error = %e, "recording the running operation failed");
    }
    let errors = sync::dry_run(&target.cluster, plan, sha).await;
    let result = if errors.is_empty() {
        sync::apply(&target.cluster, plan, sha, prune)
            .await
            .map_err(|e| e.0)
    } else {
        Err(errors)
    };
    let result = result.map_err(|errors| {
        if target.local {
            return errors;
        }
        errors
            .into_iter()
            .map(|e| format!("cluster {:?}: {e}", target.name))
            .collect()
    });
    match &result {
        Ok(()) => {
            operation.phase = Phase::Succeeded;
            operation.message = format!("synced to {}", short(sha));
            if synced.history.last().is_none_or(|h| h.revision != sha) {
                let info = rendered.info.as_ref();
                synced.history.push(HistoryEntry {
                    revision: sha.to_string(),
                    deployed_at: now(),
                    author: info.map(|i| i.author.clone()).unwrap_or_default(),
                    message: info.map(|i| i.message.clone()).unwrap_or_default(),
                });
                let excess = synced.history.len().saturating_sub(10);
                synced.history.drain(..excess);
            }
            state.failures = 0;
            state.retry_at = None;
        }
        Err(errs) => {
            operation.phase = Phase::Failed;
            operation.message = errs.join("; ");
            synced.conditions = errs
                .iter()
                .map(|e| sync_error(e.clone(), started.clone()))
                .collect();
            state.failures += 1;
            state.retry_at = Some(Instant::now() + retry_delay(state.failures));
        }
    }
    operation.finished_at = Some(now());
    tracing::info!(app = %app.name, revision = short(sha), phase = operation.phase.as_str(), "sync");
    telemetry::argocd::metrics()
        .syncs
        .get_or_create(&telemetry::argocd::SyncLabels {
            name: app.name.clone(),
            namespace: String::new(),
            project: "default",
            phase: operation.phase.as_str().to_string(),
            dest_server: super::metrics::IN_CLUSTER.into(),
        })
        .inc();
    synced.operation = Some(operation);
    synced
}

/// Whether to sync now, and if so whether to prune: a manual request always syncs (pruning
/// when it ends in `:prune`); an automated policy syncs what is out of sync unless this commit
/// and spec were synced already (then only with selfHeal) or failed (then after the back-off).
fn sync_wanted(
    app: &Request,
    plan: &Plan,
    last: Option<&OperationState>,
    retry_at: Option<Instant>,
) -> Option<bool> {
    let automated = app.spec.sync_policy.automated.as_ref();
    let auto_sync = automated.is_some_and(|a| {
        plan.out_of_sync()
            && match last.map(|o| o.phase) {
                Some(Phase::Succeeded) => a.self_heal,
                Some(Phase::Failed) => retry_at.is_none_or(|t| Instant::now() >= t),
                _ => true,
            }
    });
    (app.pending_request.is_some() || auto_sync).then(|| {
        automated.is_some_and(|a| a.prune)
            || app
                .pending_request
                .as_deref()
                .is_some_and(|r| r.ends_with(":prune"))
    })
}

fn sync_error(message: String, at: String) -> Condition {
    Condition {
        type_: "SyncError".into(),
        message,
        last_transition_time: at,
    }
}

/// Step 5: writes the status the pass arrived at.
async fn report(
    ctx: &Context,
    app: &Request,
    plan: &Plan,
    sha: &str,
    synced: Synced,
) -> Result<(), StepError> {
    let status = ApplicationStatus {
        sync: SyncStatus {
            status: if plan.out_of_sync() {
                "OutOfSync"
            } else {
                "Synced"
            }
            .into(),
            revision: sha.to_string(),
        },
        health: Some(HealthStatus {
            status: sync::app_health(plan).as_str().into(),
        }),
        conditions: synced.conditions,
        resources: sync::resource_statuses(plan),
        history: synced.history,
        operation_state: synced.operation,
        reconciled_at: now(),
    };
    write_status(ctx, &app.name, &app.status, status).await
}

/// Reports a failed step: the one condition, and sync status `Unknown` (what is live stays, but
/// whether it matches the repository is not known).
async fn report_error(
    ctx: &Context,
    name: &str,
    kind: &str,
    message: &str,
) -> Result<(), StepError> {
    let current = ctx
        .api
        .get(name)
        .await
        .map_err(|source| StepError::ReadApplication {
            name: name.to_string(),
            source,
        })?;
    let old: ApplicationStatus = current
        .data
        .get("status")
        .cloned()
        .and_then(|s| serde_json::from_value(s).ok())
        .unwrap_or_default();
    let mut status = old.clone();
    status.conditions = vec![Condition {
        type_: kind.to_string(),
        message: message.to_string(),
        last_transition_time: now(),
    }];
    status.sync.status = "Unknown".into();
    write_status(ctx, name, &old, status).await
}

/// Writes `new` unless only its clocks moved; conditions that did not change keep their time.
async fn write_status(
    ctx: &Context,
    name: &str,
    old: &ApplicationStatus,
    mut new: ApplicationStatus,
) -> Result<(), StepError> {
    if old.without_clocks() == new.without_clocks() {
        return Ok(());
    }
    for c in &mut new.conditions {
        if let Some(prev) = old
            .conditions
            .iter()
            .find(|p| p.type_ == c.type_ && p.message == c.message)
        {
            c.last_transition_time = prev.last_transition_time.clone();
        }
    }
    ctx.api
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": new})),
        )
        .await
        .map(drop)
        .map_err(|source| StepError::WriteStatus {
            name: name.to_string(),
            source,
        })
}

/// The back-off before retrying a failed automatic sync: 5 s, doubling, at most 3 minutes.
fn retry_delay(failures: u32) -> Duration {
    Duration::from_secs((5u64 << failures.saturating_sub(1).min(6)).min(180))
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

/// A commit's short form; a chart version stays whole.
fn short(sha: &str) -> &str {
    if sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        &sha[..7]
    } else {
        sha
    }
}

/// The credentials an Application's `spec.source.secretRef` names (`namespace/name`, or `name`
/// in `default`): `username` and `password` (or `token`) for https, `sshPrivateKey` for ssh.
pub async fn credentials(
    client: &kube::Client,
    secret_ref: Option<&str>,
) -> Result<Credentials, StepError> {
    let Some(r) = secret_ref.filter(|s| !s.is_empty()) else {
        return Ok(Credentials::default());
    };
    let (ns, name) = r.split_once('/').unwrap_or(("default", r));
    let api: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), ns);
    let secret = api.get(name).await.map_err(|source| StepError::Secret {
        namespace: ns.to_string(),
        name: name.to_string(),
        source,
    })?;
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

/// Renders an Application's source at a commit: objects with their `file:line`.
pub fn render_at(
    mirror: &Mirror,
    oid: git2::Oid,
    source: &Source,
    app: &str,
    namespace: &str,
) -> Result<Vec<(Value, String)>, StepError> {
    use templates::source::Source as _;
    let tree = mirror.tree(oid)?;
    let path = source.path.trim_matches('/').to_string();
    if !path.is_empty() && !tree.exists(&path) {
        return Err(StepError::MissingPath(path));
    }
    let mut values_files = Vec::new();
    for f in &source.values_files {
        let file = templates::source::join(&path, f)?;
        let bytes = tree.read(&file)?;
        values_files.push(templates::chart::ValuesFile {
            name: file,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        });
    }
    let helm = source.helm.clone().unwrap_or_default();
    for f in &helm.value_files {
        let file = templates::source::join(&path, f)?;
        let bytes = tree.read(&file)?;
        values_files.push(templates::chart::ValuesFile {
            name: file,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        });
    }
    let (options, _) = chart_options(source, app, namespace, values_files)?;
    let rendered = templates::render(&tree, &path, &options)?;
    bounded(
        rendered
            .objects
            .into_iter()
            .map(|o| (o.value, format!("{}:{}", o.origin.file, o.origin.line)))
            .collect(),
    )
}

/// The release, values and `--set`s of a chart: gitplane's `values`/`set` and Argo CD's
/// `helm` fields (`releaseName`, `values`, `valuesObject` over it, `parameters` over all, a
/// `forceString` one as `--set-string`).
fn chart_options(
    source: &Source,
    app: &str,
    namespace: &str,
    values_files: Vec<templates::chart::ValuesFile>,
) -> Result<(templates::chart::Options, templates::helm::Settings), StepError> {
    let helm = source.helm.clone().unwrap_or_default();
    let mut values = Vec::new();
    if !helm.values.trim().is_empty() {
        let v = templates::yaml::parse_value(
            "spec.source.helm.values",
            &helm.values,
            templates::yaml::Dialect::Kubectl,
        )
        .map_err(templates::Error::from)?;
        values.push(v);
    }
    values.extend(helm.values_object.clone());
    values.extend(source.values.clone());
    let mut set = source.set.clone();
    let mut set_string = Vec::new();
    for p in &helm.parameters {
        let expr = format!("{}={}", p.name, p.value);
        if p.force_string {
            set_string.push(expr);
        } else {
            set.push(expr);
        }
    }
    let release = if helm.release_name.is_empty() {
        app.to_string()
    } else {
        helm.release_name.clone()
    };
    Ok((
        templates::chart::Options {
            release_name: Some(release),
            namespace: (!namespace.is_empty()).then(|| namespace.to_string()),
            values_files,
            values,
            set,
        },
        templates::helm::Settings {
            set_string,
            ..Default::default()
        },
    ))
}

/// Renders a chart pulled from a chart repository as the Application asks (values files are
/// read inside the chart): objects with their `chart/templates/file:line`.
pub fn render_chart(
    pulled: &Pulled,
    source: &Source,
    app: &str,
    namespace: &str,
) -> Result<Vec<(Value, String)>, StepError> {
    use templates::source::Source as _;
    let bytes = std::fs::read(&pulled.archive).map_err(|e| {
        StepError::Chart(ChartError::Cache {
            path: pulled.archive.display().to_string(),
            source: e,
        })
    })?;
    let name = format!("{}-{}.tgz", source.chart, pulled.version);
    let chart = templates::helm::archive::unpack(&name, &bytes).map_err(|message| {
        templates::Error::from(templates::helm::Error::Invalid {
            file: name.clone(),
            line: 1,
            message,
        })
    })?;
    let helm = source.helm.clone().unwrap_or_default();
    let mut values_files = Vec::new();
    for f in source.values_files.iter().chain(&helm.value_files) {
        if f.contains("://") {
            return Err(templates::Error::from(templates::helm::Error::Invalid {
                file: f.clone(),
                line: 1,
                message: "values files from URLs are not read (name a file inside the chart)"
                    .into(),
            })
            .into());
        }
        let file = templates::source::join("", f)?;
        let text = String::from_utf8_lossy(&chart.read(&file)?).into_owned();
        values_files.push(templates::chart::ValuesFile {
            name: format!("{name}:{file}"),
            text,
        });
    }
    let (options, settings) = chart_options(source, app, namespace, values_files)?;
    let out =
        templates::helm::render(&chart, "", &options, &settings).map_err(templates::Error::from)?;
    let objects = templates::helm::objects_of(&out, "", false)?;
    bounded(
        objects
            .into_iter()
            .map(|o| (o.value, format!("{}:{}", o.origin.file, o.origin.line)))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_application_may_render_up_to_the_object_limit_and_not_one_more() {
        let objects = |n: usize| vec![(Value::Null, String::new()); n];
        assert!(bounded(objects(MAX_OBJECTS)).is_ok());
        let refused = bounded(objects(MAX_OBJECTS + 1)).expect_err("one too many");
        assert_eq!(
            refused.to_string(),
            "the source renders 10001 objects; an Application holds at most 10000 (split it \
             into several Applications)"
        );
        assert_eq!(refused.condition(), Some("ComparisonError"));
    }

    fn check(failures: u32, expected: u64) {
        assert_eq!(
            retry_delay(failures),
            Duration::from_secs(expected),
            "{failures}"
        );
    }

    #[test]
    fn failed_syncs_are_retried_after_five_seconds_doubling_to_three_minutes() {
        check(1, 5);
        check(2, 10);
        check(3, 20);
        check(6, 160);
        check(7, 180);
        check(40, 180);
    }
}
