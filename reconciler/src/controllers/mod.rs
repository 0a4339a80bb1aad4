//! The controller-manager: Kubernetes' controllers on kube-rs' runtime, started while this
//! replica leads.
//!
//! # Conventions
//! Every controller is one file here and one line in [`CONTROLLERS`]. A controller is the
//! informer/workqueue pattern through `kube::runtime`:
//! - a [`Controller`] on its main kind, fed by the manager's shared informers
//!   ([`Context::informer`]: one watch and one reflector store per kind for every controller)
//!   or a watch of its own ([`Context::reflect`]), with `owns_stream` for children and
//!   `watches_stream` for anything else that should trigger it;
//! - a reconcile function `async fn(Arc<K>, Arc<Context>) -> Result<Action, Error>` that reads
//!   the stores, decides with pure functions (tested with tables in the same file), and writes
//!   through the API with its own client;
//! - [`Context::drive`], which runs the controller until shutdown with per-object exponential
//!   back-off after errors (client-go's default rate limiter: 5 ms doubling, capped) and resets
//!   the back-off after a success, and records the controller's work queue metrics
//!   (`telemetry::workqueue`: a reconcile handed out is an add, its run the work duration, a
//!   failure a retry; the depth is the keys waiting for a retry, and the queue duration a
//!   retried key's wait past its due time; kube-rs' own queue of triggers is not observable).
//!
//! A controller waits for its stores' first lists ([`Context::synced`], [`Context::ready`])
//! before it starts
//! reconciling, so a controller that just started (a new leader) never acts on a partial view.
//!
//! # Identities
//! Each controller has its own client from [`Clients`] (its User-Agent, later its
//! credentials), its own field manager and its own Event source, named as in Kubernetes
//! (`deployment-controller`, `replicaset-controller`, ...).
//!
//! # Leader election
//! [`run`] has two states: *standby* (nothing runs) and *leading* (every enabled controller
//! runs). Losing leadership cancels the term's token and joins its tasks (controllers, watches,
//! informers), then returns to standby; the caller elects
//! on the Lease `kube-system/kube-controller-manager` with [`crate::leader`].

pub mod claim;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod expectations;
pub mod garbagecollector;
pub mod hpa;
pub mod informers;
pub mod job;
pub mod localpath;
pub mod namespace;
pub mod node_lifecycle;
pub mod persistentvolume;
pub mod replicaset;
pub mod rootcacert;
pub mod serviceaccount;
pub mod statefulset;
pub mod workload;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apimachinery::matching::selector_matches;
use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::api::{PatchParams, PostParams};
use kube::core::Selector;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::events::{EventType, Recorder};
use crate::leader::Leadership;
use informers::{Informer, Informers};

/// Starts one controller: runs until its context says stop.
pub type Start = fn(Arc<Context>) -> BoxFuture<'static, Result<(), Error>>;

/// A controller the manager can run.
#[derive(Clone, Copy, Debug)]
pub struct Registration {
    /// The name `--controllers` uses (`deployment`, `garbagecollector`, ...).
    pub name: &'static str,
    /// Its identity: client User-Agent, field manager and Event source
    /// (`deployment-controller`).
    pub identity: &'static str,
    /// Runs it.
    pub start: Start,
}

/// Every controller, in start order. Add a controller here and nowhere else.
pub const CONTROLLERS: &[Registration] = &[
    Registration {
        name: "deployment",
        identity: "deployment-controller",
        start: |ctx| Box::pin(deployment::run(ctx)),
    },
    Registration {
        name: "replicaset",
        identity: "replicaset-controller",
        start: |ctx| Box::pin(replicaset::run(ctx)),
    },
    Registration {
        name: "garbagecollector",
        identity: "generic-garbage-collector",
        start: |ctx| Box::pin(garbagecollector::run(ctx)),
    },
    Registration {
        name: "namespace",
        identity: "namespace-controller",
        start: |ctx| Box::pin(namespace::run(ctx)),
    },
    Registration {
        name: "serviceaccount",
        identity: "service-account-controller",
        start: |ctx| Box::pin(serviceaccount::run(ctx)),
    },
    Registration {
        name: "root-ca-cert-publisher",
        identity: "root-ca-cert-publisher",
        start: |ctx| Box::pin(rootcacert::run(ctx)),
    },
    Registration {
        name: "endpoint",
        identity: "endpoint-controller",
        start: |ctx| Box::pin(endpoints::run(ctx)),
    },
    Registration {
        name: "endpointslice",
        identity: "endpointslice-controller",
        start: |ctx| Box::pin(endpointslice::run(ctx)),
    },
    Registration {
        name: "job",
        identity: "job-controller",
        start: |ctx| Box::pin(job::run(ctx)),
    },
    Registration {
        name: "cronjob",
        identity: "cronjob-controller",
        start: |ctx| Box::pin(cronjob::run(ctx)),
    },
    Registration {
        name: "daemonset",
        identity: "daemon-set-controller",
        start: |ctx| Box::pin(daemonset::run(ctx)),
    },
    Registration {
        name: "statefulset",
        identity: "statefulset-controller",
        start: |ctx| Box::pin(statefulset::run(ctx)),
    },
    Registration {
        name: "nodelifecycle",
        identity: "node-controller",
        start: |ctx| Box::pin(node_lifecycle::run(ctx)),
    },
    Registration {
        name: "persistentvolume-binder",
        identity: "persistent-volume-binder",
        start: |ctx| Box::pin(persistentvolume::run(ctx)),
    },
    Registration {
        name: "local-path-provisioner",
        identity: "local-path-provisioner",
        start: |ctx| Box::pin(localpath::run(ctx)),
    },
    Registration {
        name: "disruption",
        identity: "disruption-controller",
        start: |ctx| Box::pin(disruption::run(ctx)),
    },
    Registration {
        name: "horizontalpodautoscaling",
        identity: "horizontal-pod-autoscaler",
        start: |ctx| Box::pin(hpa::run(ctx)),
    },
];

/// The identity the shared informers watch with (the manager's own: it may read every kind).
pub const INFORMER_IDENTITY: &str = "controller-manager";

/// Makes the client of one controller from its identity.
pub type Clients =
    Arc<dyn Fn(&str) -> Result<Client, Box<dyn std::error::Error + Send + Sync>> + Send + Sync>;

/// What the controller-manager runs and how.
#[derive(Clone, Debug)]
pub struct Config {
    /// kube-controller-manager's `--controllers`: `*` turns on every controller, `name` turns
    /// one on, `-name` turns one off.
    pub controllers: Vec<String>,
    /// This replica's name in Events (`reportingInstance`).
    pub instance: String,
    /// The cluster's root CA (PEM) that `root-ca-cert-publisher` puts in every namespace as
    /// `kube-root-ca.crt`; nothing is published while it is `None`.
    pub root_ca: Option<String>,
    /// Longest wait between retries of a failing object.
    pub max_retry_delay: Duration,
    /// Objects reconciled at once per controller.
    pub concurrency: u16,
    /// How long a node may stay silent (its Lease not renewed) before it is `Unknown`
    /// (`--node-monitor-grace-period`, 40 s).
    pub node_monitor_grace_period: Duration,
    /// How often the node lifecycle controller checks the nodes (`--node-monitor-period`).
    pub node_monitor_period: Duration,
    /// `tolerationSeconds` assumed for `not-ready`/`unreachable` on pods that have no such
    /// toleration (Kubernetes' DefaultTolerationSeconds admission: 300).
    pub default_toleration_seconds: i64,
    /// First delay before a Job replaces a failed pod, doubling per failure (Kubernetes: 10 s).
    pub job_backoff_base: Duration,
    /// How often each HorizontalPodAutoscaler is evaluated
    /// (`--horizontal-pod-autoscaler-sync-period`, 15 s).
    pub hpa_sync_period: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            controllers: vec!["*".into()],
            instance: "gitplane".into(),
            root_ca: None,
            max_retry_delay: Duration::from_secs(60),
            concurrency: 5,
            node_monitor_grace_period: Duration::from_secs(40),
            node_monitor_period: Duration::from_secs(5),
            default_toleration_seconds: 300,
            job_backoff_base: Duration::from_secs(10),
            hpa_sync_period: Duration::from_secs(15),
        }
    }
}

impl Config {
    /// Whether the controller `name` runs under `--controllers`.
    pub fn enabled(&self, name: &str) -> bool {
        let mut on = false;
        for c in &self.controllers {
            if c == "*" {
                on = true;
            }
        }
        for c in &self.controllers {
            if c == name {
                on = true;
            } else if c.strip_prefix('-') == Some(name) {
                on = false;
            }
        }
        on
    }

    /// An error naming the first entry of `--controllers` that is no controller.
    pub fn check(&self) -> Result<(), Error> {
        for c in &self.controllers {
            let name = c.strip_prefix('-').unwrap_or(c);
            if name != "*" && !CONTROLLERS.iter().any(|r| r.name == name) {
                let known: Vec<&str> = CONTROLLERS.iter().map(|r| r.name).collect();
                return Err(Error::Config(format!(
                    "--controllers: unknown controller {name:?} (known: {})",
                    known.join(", ")
                )));
            }
        }
        Ok(())
    }
}

/// Errors of the controllers (one reconcile, or starting one).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the API failed.
    #[error("{what}: {source}")]
    Api {
        /// What was being done (`creating pod default/web-1`).
        what: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// A store was dropped before its first list (the controller is stopping).
    #[error("informer stopped before its first list")]
    NotReady,
    /// The client of a controller could not be built.
    #[error("client for {identity}: {message}")]
    Client {
        /// The controller.
        identity: String,
        /// Why.
        message: String,
    },
    /// Bad configuration.
    #[error("{0}")]
    Config(String),
    /// An object that cannot be acted on (for example an invalid selector).
    #[error("{0}")]
    Invalid(String),
}

impl From<kube::Error> for Error {
    fn from(source: kube::Error) -> Error {
        Error::Api {
            what: "request".into(),
            source,
        }
    }
}

/// Wraps a client error with what was being done.
pub fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Api { what, source }
}

/// What a controller gets: its client, its Event recorder, the configuration and the stop
/// signal.
pub struct Context {
    /// `--controllers` name.
    pub name: &'static str,
    /// Identity (`deployment-controller`): field manager and Event source.
    pub identity: &'static str,
    /// This controller's own client.
    pub client: Client,
    /// Writes Events as this controller.
    pub recorder: Recorder,
    /// The manager's configuration.
    pub config: Arc<Config>,
    stop: CancellationToken,
    /// The tasks this controller started (its watches), joined when the manager stops it.
    tasks: TaskTracker,
    /// The manager's shared informers.
    informers: Arc<Informers>,
    /// Keys that failed: failures in a row, and when the retry is due.
    retries: Mutex<HashMap<String, (u32, Instant)>>,
    /// This controller's work queue metrics.
    queue: telemetry::workqueue::Queue,
}

impl Context {
    /// A context for the controller `registration` with this client; it stops when `stop` is
    /// cancelled, and its tasks go on `tasks`.
    pub fn new(
        registration: &Registration,
        client: Client,
        config: Arc<Config>,
        stop: CancellationToken,
        tasks: TaskTracker,
        informers: Arc<Informers>,
    ) -> Context {
        let recorder = Recorder::start(
            client.clone(),
            registration.identity.into(),
            config.instance.clone(),
        );
        Context {
            name: registration.name,
            identity: registration.identity,
            client,
            recorder,
            config,
            stop,
            tasks,
            informers,
            retries: Mutex::new(HashMap::new()),
            queue: telemetry::workqueue::Queue::new(registration.name),
        }
    }

    /// Resolves when the controller must stop.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        self.stop.clone().cancelled_owned()
    }

    /// Create options with this controller as the field manager.
    pub fn post_params(&self) -> PostParams {
        PostParams {
            field_manager: Some(self.identity.into()),
            ..PostParams::default()
        }
    }

    /// Patch options with this controller as the field manager.
    pub fn patch_params(&self) -> PatchParams {
        PatchParams {
            field_manager: Some(self.identity.into()),
            ..PatchParams::default()
        }
    }

    /// Records an Event about `object`.
    pub fn event<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        message: String,
    ) {
        self.recorder
            .publish(object, type_, reason, action, message);
    }

    /// The manager's shared informer of `K` (all namespaces): one watch and one store per kind
    /// for every controller; [`Informer::subscribe`] gives this controller its trigger stream.
    pub fn informer<K>(&self) -> Arc<Informer<K>>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        self.informers.get::<K>()
    }

    /// Waits until `informer` has had its first list ([`Error::NotReady`] if the controller
    /// stops first).
    pub async fn synced<K>(&self, informer: &Informer<K>) -> Result<(), Error>
    where
        K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    {
        tokio::select! {
            true = informer.listed() => Ok(()),
            _ = self.stopped() => Err(Error::NotReady),
        }
    }

    /// A watch of `api` of this controller alone (a namespace or a field selector; the
    /// cluster-wide watches are [`Context::informer`]s) kept in a store: returns the store to read and the stream of changed
    /// objects to give to a [`Controller`] (`for_stream`, `owns_stream`, `watches_stream`).
    ///
    /// The watch is driven by its own task (on the controller's tasks) until the controller
    /// stops, not by the
    /// `Controller`: a reconcile waiting for a store ([`Context::ready`]) then never blocks the
    /// watch that fills it (kube-rs' runner stops polling its triggers while every reconcile
    /// slot is busy).
    pub fn reflect<K>(
        &self,
        api: Api<K>,
        config: watcher::Config,
    ) -> (
        Store<K>,
        impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    )
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let (reader, writer) = reflector::store();
        let stream =
            reflector::reflector(writer, watcher(api, config).default_backoff()).touched_objects();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            tokio::pin!(stream);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    item = stream.next() => match item {
                        Some(item) => if tx.send(item).is_err() { break },
                        None => break,
                    },
                }
            }
        });
        (reader, futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }

    /// Waits until `store` has had its first list ([`Error::NotReady`] if the controller stops
    /// first). Call it in the controller's start function, before [`Context::drive`], never
    /// from reconciles: kube-rs' readiness signal wakes only its last waiter.
    pub async fn ready<K>(&self, store: &Store<K>) -> Result<(), Error>
    where
        K: Resource + Clone + 'static,
        K::DynamicType: Eq + Hash + Clone,
    {
        tokio::select! {
            r = store.wait_until_ready() => r.map_err(|_| Error::NotReady),
            _ = self.stopped() => Err(Error::NotReady),
        }
    }

    /// How long to wait before retrying `key` after its `n`th failure in a row.
    fn retry_delay(&self, key: &str) -> Duration {
        let mut retries = self.retries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = retries
            .entry(key.to_string())
            .or_insert((0, Instant::now()));
        entry.0 = entry.0.saturating_add(1);
        let delay = retry_delay(entry.0, self.config.max_retry_delay);
        entry.1 = Instant::now() + delay;
        self.queue.retry();
        self.queue.depth.set(retries.len() as i64);
        delay
    }

    /// A reconcile of `key` starts: counted as an add handed to a worker; a retried key's wait
    /// past its due time is its time in the queue.
    fn started(&self, key: &str) {
        self.queue.add();
        let retries = self.retries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, due)) = retries.get(key) {
            self.queue
                .started(Instant::now().saturating_duration_since(*due));
        }
    }

    fn forget(&self, key: &str) {
        let mut retries = self.retries.lock().unwrap_or_else(|p| p.into_inner());
        retries.remove(key);
        self.queue.depth.set(retries.len() as i64);
    }

    /// Runs `controller` with `reconcile` until the stop signal, retrying failed objects with
    /// back-off and logging every error.
    pub async fn drive<K, F, Fut>(self: Arc<Self>, controller: Controller<K>, reconcile: F)
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
        F: Fn(Arc<K>, Arc<Context>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Action, Error>> + Send + 'static,
    {
        let reconcile = Arc::new(reconcile);
        let name = self.name;
        let concurrency = self.config.concurrency;
        controller
            .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
            .graceful_shutdown_on(self.stopped())
            .run(
                move |obj: Arc<K>, ctx: Arc<Context>| {
                    let reconcile = reconcile.clone();
                    async move {
                        let key = key_of(obj.as_ref());
                        ctx.started(&key);
                        let began = Instant::now();
                        let result = reconcile(obj, ctx.clone()).await;
                        ctx.queue.done(began.elapsed());
                        if result.is_ok() {
                            ctx.forget(&key);
                        }
                        result
                    }
                },
                |obj: Arc<K>, error: &Error, ctx: Arc<Context>| {
                    let key = key_of(obj.as_ref());
                    let delay = ctx.retry_delay(&key);
                    tracing::warn!(controller = ctx.name, object = %key, error = %error, retry_in = ?delay, "reconcile failed");
                    Action::requeue(delay)
                },
                self.clone(),
            )
            .for_each(|result| async move {
                if let Err(e) = result {
                    tracing::debug!(controller = name, error = %e, "controller");
                }
            })
            .await;
    }
}

/// `namespace/name` of an object.
pub fn key_of<K: Resource>(obj: &K) -> String {
    let meta = obj.meta();
    match &meta.namespace {
        Some(ns) => format!("{ns}/{}", meta.name.as_deref().unwrap_or("")),
        None => meta.name.clone().unwrap_or_default(),
    }
}

/// The owner reference with `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// A controller reference to `owner` (`controller` and `blockOwnerDeletion` set), as
/// Kubernetes' controllers put on what they create.
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A label selector checked as kube-rs' [`Selector`] checks it; an empty or invalid one is an
/// error naming `what` (Kubernetes' controllers never act on an empty selector).
pub fn selector_of<'a>(
    what: &str,
    selector: Option<&'a LabelSelector>,
) -> Result<&'a LabelSelector, Error> {
    let Some(ls) = selector else {
        return Err(Error::Invalid(format!(
            "{what}: spec.selector: Required value"
        )));
    };
    let sel = Selector::try_from(ls.clone())
        .map_err(|e| Error::Invalid(format!("{what}: spec.selector: {e}")))?;
    if sel.selects_all() {
        return Err(Error::Invalid(format!(
            "{what}: spec.selector: Invalid value: empty selector is invalid"
        )));
    }
    Ok(ls)
}

/// Whether `selector` matches the labels of `meta`.
pub fn selects(selector: &LabelSelector, meta: &ObjectMeta) -> bool {
    selector_matches(selector, meta.labels.as_ref().unwrap_or(&BTreeMap::new()))
}

/// client-go's per-item exponential back-off: 5 ms doubling per failure, capped at `max`.
pub fn retry_delay(failures: u32, max: Duration) -> Duration {
    let base = Duration::from_millis(5);
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(30));
    base.saturating_mul(factor).min(max)
}

/// Runs the enabled controllers while this replica leads, until `shutdown` is cancelled.
///
/// States: *standby* (waiting for leadership) and *leading* (controllers running). Losing
/// leadership stops every controller (each finishes the reconcile in progress) and goes back
/// to standby. Each term's controllers and their watches are one [`TaskTracker`], joined
/// before the next term or the return.
pub async fn run(
    clients: Clients,
    config: Config,
    mut leadership: Leadership,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    config.check()?;
    let config = Arc::new(config);
    loop {
        while !leadership.is_leader() {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = leadership.changed() => {}
            }
        }
        let term = shutdown.child_token();
        let tasks = TaskTracker::new();
        // The informers read everything: they watch as the controller-manager itself.
        let informer_client = clients(INFORMER_IDENTITY).map_err(|e| Error::Client {
            identity: INFORMER_IDENTITY.into(),
            message: e.to_string(),
        })?;
        let informers = Arc::new(Informers::new(informer_client, term.clone(), tasks.clone()));
        for registration in CONTROLLERS.iter().filter(|r| config.enabled(r.name)) {
            let client = clients(registration.identity).map_err(|e| Error::Client {
                identity: registration.identity.into(),
                message: e.to_string(),
            })?;
            let ctx = Arc::new(Context::new(
                registration,
                client,
                config.clone(),
                term.clone(),
                tasks.clone(),
                informers.clone(),
            ));
            let (name, start) = (registration.name, registration.start);
            tracing::info!(controller = name, "starting controller");
            tasks.spawn(async move {
                match start(ctx).await {
                    Ok(()) | Err(Error::NotReady) => {}
                    Err(e) => tracing::error!(controller = name, error = %e, "controller stopped"),
                }
            });
        }
        tasks.close();
        let shutting_down = loop {
            tokio::select! {
                _ = shutdown.cancelled() => break true,
                _ = leadership.changed() => if !leadership.is_leader() { break false },
            }
        };
        term.cancel();
        tasks.wait().await;
        if shutting_down {
            return Ok(());
        }
        tracing::warn!("lost leadership; controllers stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(controllers: &[&str], name: &str, expected: bool) {
        let config = Config {
            controllers: controllers.iter().map(|s| s.to_string()).collect(),
            ..Config::default()
        };
        assert_eq!(config.enabled(name), expected, "{controllers:?} {name}");
    }

    #[test]
    fn controllers_flag_turns_controllers_on_and_off_like_kube_controller_manager() {
        check(&["*"], "serviceaccount", true);
        check(&["*", "-serviceaccount"], "serviceaccount", false);
        check(&["-serviceaccount", "*"], "serviceaccount", false);
        check(&["serviceaccount"], "serviceaccount", true);
        check(&["serviceaccount"], "root-ca-cert-publisher", false);
        check(&[], "serviceaccount", false);
    }

    #[test]
    fn an_unknown_controller_is_refused_by_name() {
        let config = Config {
            controllers: vec!["*".into(), "-nosuch".into()],
            ..Config::default()
        };
        let e = config.check().unwrap_err().to_string();
        assert!(e.contains("\"nosuch\""), "{e}");
    }

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        let max = Duration::from_secs(60);
        for (n, ms) in [(1, 5), (2, 10), (3, 20), (10, 2560), (40, 60_000)] {
            assert_eq!(
                retry_delay(n, max),
                Duration::from_millis(ms),
                "failure {n}"
            );
        }
    }
}
