//! The syncer: converges the cluster to each Application's repository, Applications side by side.
//!
//! Applications are watched into a reflector store (one list, then a watch: no polling). The
//! loop is a closed set of events, each of which queues passes:
//! - a **tick** (every [`Config::tick`]) queues every Application, so that the timers of
//!   [`steps`](super::steps) (self-heal, polling, back-off) are looked at;
//! - a **watch event** queues the Application that changed;
//! - a **wake** (a change in a local repository's files, a verified push webhook) queues the
//!   Applications of that repository and marks them for a fetch (reading a repository opens its
//!   files; those events are not changes, so passes do not wake themselves);
//! - **drift** a remote destination's watch saw ([`super::drift`]) queues the Application it
//!   names and marks it for a comparison;
//! - a **finished pass** hands back the Application's state and lets the next wave start.
//!
//! A queued Application gets one pass ([`steps::reconcile`], which reads the Application afresh)
//! as its own task, while at most [`Config::workers`] passes run at once; an Application whose
//! pass still runs is not started again, so one slow fetch or cluster holds back only its own
//! Application. Applications start in their sync-wave order (then by name), so that the platform
//! an app needs (its namespace, say) is synced first: a queued Application waits while one of a
//! lower wave runs, for at most [`WAVE_WAIT`].

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apimachinery::application::{API_VERSION, KIND, PLURAL};
use apimachinery::object::ObjectExt;
use futures::StreamExt;
use kube::ResourceExt;
use kube::api::DynamicObject;
use kube::discovery::ApiResource;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::Value;
use tokio::task::JoinSet;

use super::repo;
use super::steps::{self, AppState, Context, StepError};
use super::webhook;

pub use super::steps::{credentials, render_at, render_chart};

/// How long a running pass of a lower sync wave holds back the Applications of higher waves.
pub const WAVE_WAIT: Duration = Duration::from_secs(10);

/// Syncer settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where mirrors live (`DATA_DIR/repos`).
    pub mirrors: PathBuf,
    /// Where charts from chart repositories are kept (`DATA_DIR/charts`).
    pub charts: PathBuf,
    /// How often every Application is queued for a pass.
    pub tick: Duration,
    /// How often each Application is compared with the cluster at the least (self-heal delay).
    pub heal_every: Duration,
    /// Polling interval for remote repositories without one of their own.
    pub poll_default: Duration,
    /// How many passes run at once.
    pub workers: usize,
}

impl Config {
    /// Defaults for a data dir.
    pub fn new(data_dir: &Path) -> Self {
        Config {
            mirrors: data_dir.join("repos"),
            charts: data_dir.join("charts"),
            tick: Duration::from_millis(250),
            heal_every: Duration::from_secs(3),
            poll_default: Duration::from_secs(60),
            workers: 8,
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

/// Paths of local repositories that changed since the loop last looked.
type Changed = Arc<Mutex<HashSet<PathBuf>>>;

/// The loop's record of one Application.
#[derive(Default)]
struct Slot {
    /// Its state between passes (taken by a running pass).
    state: AppState,
    /// When its running pass started; `None`: idle.
    running_since: Option<Instant>,
    /// A pass is wanted.
    queued: bool,
    /// Its repository changed: the next pass fetches.
    repo_event: bool,
    /// A destination watch saw its objects change: the next pass compares.
    drift: bool,
}

/// What a finished pass hands back.
type Done = (String, AppState, Result<(), StepError>);

/// The running syncer.
pub struct Syncer {
    ctx: Arc<Context>,
    changed: Changed,
    wake: Arc<tokio::sync::Notify>,
    watcher: Option<notify::RecommendedWatcher>,
    watched: HashSet<PathBuf>,
    pushed: webhook::Pushed,
}

impl Syncer {
    /// A syncer using `client`.
    pub fn new(client: kube::Client, config: Config) -> Self {
        let changed: Changed = Arc::default();
        let wake = Arc::new(tokio::sync::Notify::new());
        let (c, w) = (changed.clone(), wake.clone());
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // Reading a repository (each pass does) opens its files: only changes count, or
            // the passes would wake themselves forever.
            if let Some(event) = event.ok().filter(|e| {
                e.kind.is_create() || e.kind.is_modify() || e.kind.is_remove()
            }) {
                let mut set = c.lock().unwrap_or_else(|p| p.into_inner());
                set.extend(event.paths);
                w.notify_one();
            }
        })
        .map_err(|e| tracing::warn!(error = %e, "file watching unavailable; local repositories are polled"))
        .ok();
        Syncer {
            ctx: Arc::new(Context::new(client, config)),
            changed,
            wake,
            watcher,
            watched: HashSet::new(),
            pushed: Default::default(),
        }
    }

    /// The webhook endpoint feeding this syncer, with the shared secret (`None`: refuse all).
    pub fn webhook(&self, secret: Option<Vec<u8>>) -> webhook::Endpoint {
        webhook::Endpoint {
            secret: secret.map(Arc::new),
            pushed: self.pushed.clone(),
            wake: self.wake.clone(),
        }
    }

    /// Runs until `shutdown` resolves; passes still running then are dropped.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        let writer = reflector::store::Writer::new(application_resource());
        let store = writer.as_reader();
        super::metrics::collect(store.clone());
        let events = reflector(
            writer,
            watcher(self.ctx.api.clone(), watcher::Config::default()),
        )
        .default_backoff();
        tokio::pin!(shutdown, events);
        let mut tick = tokio::time::interval(self.ctx.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let permits = Arc::new(tokio::sync::Semaphore::new(self.ctx.config.workers.max(1)));
        let wake = self.wake.clone();
        let ctx = self.ctx.clone();
        let mut slots: HashMap<String, Slot> = HashMap::new();
        let mut tasks: JoinSet<Done> = JoinSet::new();
        let mut running: HashMap<tokio::task::Id, String> = HashMap::new();
        loop {
            self.start_passes(
                &store.state(),
                &mut slots,
                &mut tasks,
                &mut running,
                &permits,
            );
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tick.tick() => slots.values_mut().for_each(|s| s.queued = true),
                _ = wake.notified() => {
                    // Let a burst of file events settle before reading the repository.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    self.take_repo_events(&store.state(), &mut slots);
                    slots.values_mut().filter(|s| s.repo_event).for_each(|s| s.queued = true);
                }
                _ = ctx.drift.changed() => {
                    for name in ctx.drift.take() {
                        if let Some(slot) = slots.get_mut(&name) {
                            slot.queued = true;
                            slot.drift = true;
                        }
                    }
                }
                event = events.next() => match event {
                    Some(Ok(watcher::Event::Apply(app) | watcher::Event::InitApply(app))) => {
                        slots.entry(app.name_any()).or_default().queued = true;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => tracing::warn!(error = %e, "watching Applications failed"),
                    None => return,
                },
                Some(done) = tasks.join_next_with_id() => match done {
                    Ok((id, (name, state, result))) => {
                        running.remove(&id);
                        if let Err(e) = result {
                            tracing::warn!(app = %name, error = %e, "reconcile failed");
                        }
                        if let Some(slot) = slots.get_mut(&name) {
                            slot.state = state;
                            slot.running_since = None;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "a pass panicked");
                        if let Some(name) = running.remove(&e.id()) {
                            slots.remove(&name);
                        }
                    }
                },
            }
        }
    }

    /// Marks the Applications whose repository changed (a file event or a push) for a fetch.
    fn take_repo_events(&mut self, apps: &[Arc<DynamicObject>], slots: &mut HashMap<String, Slot>) {
        let changed = std::mem::take(&mut *self.changed.lock().unwrap_or_else(|p| p.into_inner()));
        let pushed = std::mem::take(&mut *self.pushed.lock().unwrap_or_else(|p| p.into_inner()));
        for app in apps {
            let repo_url = repo_url(&app.data);
            let local = repo::local_path(repo_url);
            if local
                .as_ref()
                .is_some_and(|p| changed.iter().any(|c| c.starts_with(p)))
                || webhook::matches(repo_url, &pushed)
            {
                slots.entry(app.name_any()).or_default().repo_event = true;
            }
        }
    }

    /// Starts a pass for every queued, idle Application that no lower wave holds back.
    fn start_passes(
        &mut self,
        apps: &[Arc<DynamicObject>],
        slots: &mut HashMap<String, Slot>,
        tasks: &mut JoinSet<Done>,
        running: &mut HashMap<tokio::task::Id, String>,
        permits: &Arc<tokio::sync::Semaphore>,
    ) {
        let mut apps: Vec<Value> = apps
            .iter()
            .filter_map(|a| serde_json::to_value(&**a).ok())
            .collect();
        apps.sort_by_key(|v| (super::compare::wave(v), v.name().unwrap_or("").to_string()));
        let names: HashSet<&str> = apps.iter().filter_map(|a| a.name()).collect();
        slots.retain(|n, s| names.contains(n.as_str()) || s.running_since.is_some());
        let mut lowest_running = apps
            .iter()
            .filter(|a| {
                slots
                    .get(a.name().unwrap_or(""))
                    .and_then(|s| s.running_since)
                    .is_some_and(|t| t.elapsed() < WAVE_WAIT)
            })
            .map(super::compare::wave)
            .min();
        for app in apps {
            let name = app.name().unwrap_or("").to_string();
            let wave = super::compare::wave(&app);
            if let Some(path) = repo::local_path(repo_url(&app)) {
                self.watch_local(&path);
            }
            let slot = slots.entry(name.clone()).or_insert_with(|| Slot {
                queued: true,
                ..Slot::default()
            });
            if !slot.queued
                || slot.running_since.is_some()
                || lowest_running.is_some_and(|w| w < wave)
            {
                continue;
            }
            slot.queued = false;
            slot.running_since = Some(Instant::now());
            lowest_running = Some(lowest_running.map_or(wave, |w| w.min(wave)));
            let mut state = std::mem::take(&mut slot.state);
            let repo_event = std::mem::take(&mut slot.repo_event);
            if std::mem::take(&mut slot.drift) {
                state.drifted();
            }
            let (ctx, permits, task_name) = (self.ctx.clone(), permits.clone(), name.clone());
            let labels = telemetry::argocd::ReconcileLabels {
                namespace: app.namespace().unwrap_or("").to_string(),
                dest_server: super::metrics::IN_CLUSTER.into(),
            };
            let task = tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let started = Instant::now();
                let result = steps::reconcile(&ctx, &task_name, &mut state, repo_event).await;
                telemetry::argocd::metrics()
                    .reconcile
                    .get_or_create(&labels)
                    .observe(started.elapsed().as_secs_f64());
                (task_name, state, result)
            });
            running.insert(task.id(), name);
        }
    }

    fn watch_local(&mut self, path: &Path) {
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
}

/// `spec.source.repoURL` of an Application.
fn repo_url(app: &Value) -> &str {
    app.pointer("/spec/source/repoURL")
        .and_then(Value::as_str)
        .unwrap_or("")
}
