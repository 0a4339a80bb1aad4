//! The scheduler: assigns pending pods to nodes through `pods/binding`.
//!
//! # Layout
//! - `framework`: the pod and node views and the [`framework::Plugin`] trait.
//! - `plugins/`: one file per filter or score plugin.
//! - `snapshot`: the cluster, updated incrementally from watches and assumed pods.
//! - `queue`: pending pods by priority, with back-off and an unschedulable area.
//! - `algorithm`: one cycle (sampled filter, score, select) and the failure diagnosis.
//! - `equivalence`: results shared by pods with identical constraints.
//! - `preemption`: choosing victims when nothing fits.
//! - `report`: Events and pod conditions, written in the background.
//! - `resources`: quantities (selector matching is `apimachinery::matching`).
//!
//! # The loop
//! [`run`] owns all state in one task (no locks): watch events of nodes, pods and
//! PriorityClasses update the snapshot and the queue; while this replica leads and the watches
//! have synced, it pops the best pod, runs a cycle, counts the pod on the chosen node at once
//! ("assumes" it) and binds in the background with up to [`Config::bind_concurrency`] bindings
//! in flight. A failed binding un-assumes the pod and retries it after back-off. States:
//! *syncing* (initial lists not complete: nothing is scheduled), *standby* (synced, another
//! replica leads: the snapshot is kept warm), *leading* (scheduling).

pub mod algorithm;
pub mod equivalence;
pub mod framework;
pub mod plugins;
pub mod preemption;
pub mod queue;
pub mod report;
pub mod resources;
pub mod snapshot;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use apimachinery::lean::Lean;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use std::time::Instant;
use tokio::sync::mpsc;

use crate::leader::Leadership;
use algorithm::{Algorithm, Nominations, Outcome};
use framework::{PodInfo, PriorityClasses};
use queue::{ClusterChange, SchedulingQueue};
use report::{Report, Reporter};
use snapshot::{NodeChange, Snapshot};

/// The default `schedulerName`.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// Scheduler settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Pods whose `spec.schedulerName` is this are ours.
    pub scheduler_name: String,
    /// This replica's name in Events (`reportingInstance`).
    pub identity: String,
    /// Sampling of the feasibility search.
    pub algorithm: algorithm::Config,
    /// Back-off timings.
    pub queue: queue::Config,
    /// Bindings in flight at once. Bindings are durable writes; the more wait together, the
    /// more share one fsync on the server (64 → 1,040 pods/s, 1,024 → 2,500 pods/s in the
    /// `schedule` benchmark).
    pub bind_concurrency: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            scheduler_name: DEFAULT_SCHEDULER_NAME.into(),
            identity: DEFAULT_SCHEDULER_NAME.into(),
            algorithm: algorithm::Config::default(),
            queue: queue::Config::default(),
            bind_concurrency: 1024,
        }
    }
}

/// Why the scheduler stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A watch stream ended, which kube's watcher never does on its own.
    #[error("the watch of {0} ended")]
    WatchEnded(&'static str),
}

/// What a binding task reports back.
struct BindResult {
    pod: Arc<PodInfo>,
    node: String,
    result: Result<(), kube::Error>,
}

/// The loop's state (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Syncing,
    Standby,
    Leading,
}

/// Which initial lists are complete, and what a re-list has seen so far.
#[derive(Default)]
struct Sync {
    nodes: bool,
    pods: bool,
    classes: bool,
    relist_nodes: Option<HashSet<String>>,
    relist_pods: Option<HashSet<String>>,
}

struct Scheduler {
    config: Config,
    client: Client,
    snapshot: Snapshot,
    queue: SchedulingQueue,
    algorithm: Algorithm,
    priorities: PriorityClasses,
    /// Node → pods nominated to it by preemption.
    nominations: Nominations,
    /// Pod key → the node it is nominated to.
    nominated: HashMap<String, String>,
    reporter: Reporter,
    binds_in_flight: usize,
    bind_tx: mpsc::UnboundedSender<BindResult>,
    sync: Sync,
    scheduled: u64,
}

/// Runs the scheduler until `shutdown` resolves. It acts only while `leadership` says so.
pub async fn run(
    client: Client,
    config: Config,
    mut leadership: Leadership,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    // Nodes and pods decoded without managedFields, which the scheduler never reads (most of
    // a pod's JSON once its node has written its status).
    let nodes = watch_all(Api::<Lean<Node>>::all(client.clone())).map(|ev| ev.map(lean));
    let pods = watch_all(Api::<Lean<Pod>>::all(client.clone())).map(|ev| ev.map(lean));
    let classes = watch_all(Api::<PriorityClass>::all(client.clone()));
    tokio::pin!(nodes, pods, classes, shutdown);
    let (bind_tx, mut bind_rx) = mpsc::unbounded_channel();
    let mut s = Scheduler {
        reporter: Reporter::start(
            client.clone(),
            config.scheduler_name.clone(),
            config.identity.clone(),
        ),
        algorithm: Algorithm::new(plugins::default_plugins(), config.algorithm.clone()),
        queue: SchedulingQueue::new(config.queue.clone()),
        config,
        client,
        snapshot: Snapshot::new(),
        priorities: PriorityClasses::default(),
        nominations: Nominations::new(),
        nominated: HashMap::new(),
        binds_in_flight: 0,
        bind_tx,
        sync: Sync::default(),
        scheduled: 0,
    };
    let mut state = State::Syncing;
    let mut parked_check = tokio::time::interval(Duration::from_secs(30));
    let metrics = telemetry::scheduler::metrics();
    metrics.init_profile(&s.config.scheduler_name);
    let mut pending_gauges = tokio::time::interval(Duration::from_secs(1));
    loop {
        let next_backoff = s.queue.flush(Instant::now());
        state = next_state(state, &s.sync, &leadership, &s);
        let can_schedule = state == State::Leading
            && s.binds_in_flight < s.config.bind_concurrency
            && s.queue.has_active();
        tokio::select! {
            _ = &mut shutdown => break,
            _ = leadership.changed() => {}
            ev = nodes.next() => s.on_node(ev.ok_or(Error::WatchEnded("nodes"))?),
            ev = pods.next() => s.on_pod(ev.ok_or(Error::WatchEnded("pods"))?),
            ev = classes.next() => s.on_class(ev.ok_or(Error::WatchEnded("priorityclasses"))?),
            Some(r) = bind_rx.recv() => s.on_bound(r),
            _ = sleep_until(next_backoff) => {}
            _ = parked_check.tick() => s.queue.flush_unschedulable(Instant::now()),
            _ = pending_gauges.tick() => {
                let (active, backoff, unschedulable) = s.queue.sizes();
                metrics.set_pending(active, backoff, unschedulable);
            }
            _ = std::future::ready(()), if can_schedule => s.schedule_one(),
        }
    }
    let (hits, misses) = s.algorithm.cache_stats();
    tracing::info!(
        scheduled = s.scheduled,
        cache_hits = hits,
        cache_misses = misses,
        reports_dropped = s.reporter.dropped(),
        "scheduler stopped"
    );
    Ok(())
}

/// Follows every transition that applies now (syncing → standby → leading, or back).
fn next_state(mut state: State, sync: &Sync, leadership: &Leadership, s: &Scheduler) -> State {
    loop {
        let next = match state {
            State::Syncing if sync.nodes && sync.pods && sync.classes => {
                tracing::info!(
                    nodes = s.snapshot.nodes().len(),
                    pending = s.queue.len(),
                    "scheduler synced"
                );
                State::Standby
            }
            State::Standby if leadership.is_leader() => State::Leading,
            State::Leading if !leadership.is_leader() => State::Standby,
            other => other,
        };
        if next == state {
            return state;
        }
        state = next;
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

fn watch_all<K>(api: Api<K>) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    watcher(api, watcher::Config::default()).default_backoff()
}

/// A watch event of a [`Lean`] object as one of the object itself.
fn lean<K>(ev: watcher::Event<Lean<K>>) -> watcher::Event<K> {
    match ev {
        watcher::Event::Apply(Lean(o)) => watcher::Event::Apply(o),
        watcher::Event::Delete(Lean(o)) => watcher::Event::Delete(o),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitApply(Lean(o)) => watcher::Event::InitApply(o),
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

fn key_of(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

impl Scheduler {
    fn on_node(&mut self, ev: Result<watcher::Event<Node>, watcher::Error>) {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(error = %e, "node watch failed; retrying");
                return;
            }
        };
        let now = Instant::now();
        match ev {
            watcher::Event::Init => self.sync.relist_nodes = Some(HashSet::new()),
            watcher::Event::InitApply(node) | watcher::Event::Apply(node) => {
                if let (Some(seen), Some(name)) =
                    (self.sync.relist_nodes.as_mut(), node.metadata.name.clone())
                {
                    seen.insert(name);
                }
                if self.snapshot.apply_node(&node) != NodeChange::Unchanged {
                    self.queue.cluster_changed(ClusterChange::Node, now);
                }
            }
            watcher::Event::InitDone => {
                if let Some(seen) = self.sync.relist_nodes.take() {
                    for name in self.snapshot.node_names() {
                        if !seen.contains(&name) {
                            self.snapshot.delete_node(&name);
                        }
                    }
                }
                self.sync.nodes = true;
            }
            watcher::Event::Delete(node) => {
                self.snapshot
                    .delete_node(node.metadata.name.as_deref().unwrap_or(""));
            }
        }
    }

    fn on_class(&mut self, ev: Result<watcher::Event<PriorityClass>, watcher::Error>) {
        match ev {
            Ok(watcher::Event::InitApply(c) | watcher::Event::Apply(c)) => {
                self.priorities.apply(&c)
            }
            Ok(watcher::Event::Delete(c)) => {
                self.priorities
                    .delete(c.metadata.name.as_deref().unwrap_or(""));
            }
            Ok(watcher::Event::InitDone) => self.sync.classes = true,
            Ok(watcher::Event::Init) => {}
            Err(e) => tracing::warn!(error = %e, "priorityclass watch failed; retrying"),
        }
    }

    fn on_pod(&mut self, ev: Result<watcher::Event<Pod>, watcher::Error>) {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(error = %e, "pod watch failed; retrying");
                return;
            }
        };
        match ev {
            watcher::Event::Init => self.sync.relist_pods = Some(HashSet::new()),
            watcher::Event::InitApply(pod) | watcher::Event::Apply(pod) => {
                if let Some(seen) = self.sync.relist_pods.as_mut() {
                    seen.insert(key_of(&pod));
                }
                self.apply_pod(&pod);
            }
            watcher::Event::InitDone => {
                if let Some(seen) = self.sync.relist_pods.take() {
                    for key in self.snapshot.pod_keys() {
                        if !seen.contains(&key) && !self.snapshot.is_assumed(&key) {
                            self.forget_pod(&key);
                        }
                    }
                }
                self.sync.pods = true;
            }
            watcher::Event::Delete(pod) => self.forget_pod(&key_of(&pod)),
        }
    }

    fn forget_pod(&mut self, key: &str) {
        if self.snapshot.remove_pod(key) {
            self.queue
                .cluster_changed(ClusterChange::PodRemoved, Instant::now());
        }
        self.queue.remove(key);
        self.unnominate(key);
    }

    fn unnominate(&mut self, key: &str) {
        if let Some(node) = self.nominated.remove(key)
            && let Some(list) = self.nominations.get_mut(&node)
        {
            list.retain(|p| p.key() != key);
            if list.is_empty() {
                self.nominations.remove(&node);
            }
        }
    }

    fn apply_pod(&mut self, pod: &Pod) {
        let key = key_of(pod);
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or("");
        if apimachinery::pod::terminal(pod) {
            self.forget_pod(&key);
            return;
        }
        if !node.is_empty() {
            let labels = pod.metadata.labels.clone().unwrap_or_default();
            let deleting = pod.metadata.deletion_timestamp.is_some();
            let unchanged = self.snapshot.bound_pod(&key).is_some_and(|p| {
                p.node_name == node && p.labels == labels && p.deleting == deleting
            });
            if !unchanged {
                let new = !self.snapshot.has_pod(&key);
                let info = Arc::new(PodInfo::from_pod(pod, &self.priorities));
                self.snapshot.apply_bound_pod(info);
                if new {
                    self.queue
                        .cluster_changed(ClusterChange::PodPlaced, Instant::now());
                }
            }
            self.queue.remove(&key);
            self.unnominate(&key);
            return;
        }
        let ours = pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .filter(|n| !n.is_empty())
            .unwrap_or(DEFAULT_SCHEDULER_NAME)
            == self.config.scheduler_name;
        if !ours || pod.metadata.deletion_timestamp.is_some() {
            self.queue.remove(&key);
            return;
        }
        if self.snapshot.is_assumed(&key) {
            // Placed by us; the binding has not shown up in the watch yet.
            return;
        }
        self.queue.add_or_update(
            Arc::new(PodInfo::from_pod(pod, &self.priorities)),
            Instant::now(),
        );
    }

    fn schedule_one(&mut self) {
        let Some(pod) = self.queue.pop() else {
            return;
        };
        let key = pod.key();
        if self.snapshot.has_pod(&key) {
            self.queue.remove(&key);
            return;
        }
        let started = Instant::now();
        let outcome = self
            .algorithm
            .schedule(&pod, &self.snapshot, &self.nominations);
        let result = match outcome {
            Outcome::Fit { .. } => "scheduled",
            Outcome::Unfit(_) => "unschedulable",
        };
        telemetry::scheduler::metrics().attempt(
            &self.config.scheduler_name,
            result,
            Some(started.elapsed()),
        );
        match outcome {
            Outcome::Fit { node, .. } => {
                self.unnominate(&key);
                self.snapshot.assume(pod.clone(), &node);
                self.queue
                    .cluster_changed(ClusterChange::PodPlaced, Instant::now());
                self.bind(pod, node);
            }
            Outcome::Unfit(diagnosis) => {
                let message = diagnosis.message();
                tracing::debug!(pod = %key, %message, "unschedulable");
                if diagnosis.resolvable {
                    self.preempt(&pod);
                }
                self.reporter.send(Report::Event {
                    pod: pod.clone(),
                    kind: "Warning",
                    reason: "FailedScheduling",
                    message: message.clone(),
                });
                self.reporter.send(Report::Unschedulable { pod, message });
                self.queue
                    .unschedulable(&key, Instant::now(), diagnosis.resolvable);
            }
        }
    }

    fn preempt(&mut self, pod: &Arc<PodInfo>) {
        let key = pod.key();
        let nominated_node = self.nominated.get(&key).and_then(|n| self.snapshot.node(n));
        if !preemption::eligible(pod, nominated_node) {
            return;
        }
        let Some(candidate) = preemption::find(pod, &self.snapshot, &self.algorithm) else {
            return;
        };
        tracing::info!(pod = %key, node = %candidate.node, victims = candidate.victims.len(), "preempting");
        for victim in &candidate.victims {
            self.reporter.send(Report::Event {
                pod: victim.clone(),
                kind: "Normal",
                reason: "Preempted",
                message: format!("Preempted by pod {} on node {}", pod.uid, candidate.node),
            });
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &victim.namespace);
            let (name, uid) = (victim.name.clone(), victim.uid.clone());
            tokio::spawn(async move {
                let params = DeleteParams {
                    preconditions: Some(kube::api::Preconditions {
                        uid: Some(uid),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                if let Err(e) = api.delete(&name, &params).await {
                    tracing::warn!(pod = %name, error = %e, "could not delete preemption victim");
                }
            });
        }
        self.unnominate(&key);
        self.nominated.insert(key, candidate.node.clone());
        self.nominations
            .entry(candidate.node.clone())
            .or_default()
            .push(pod.clone());
        self.reporter.send(Report::Nominated {
            pod: pod.clone(),
            node: candidate.node,
        });
    }

    fn bind(&mut self, pod: Arc<PodInfo>, node: String) {
        self.binds_in_flight += 1;
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        let tx = self.bind_tx.clone();
        tokio::spawn(async move {
            let binding = Binding {
                metadata: ObjectMeta {
                    name: Some(pod.name.clone()),
                    namespace: Some(pod.namespace.clone()),
                    uid: Some(pod.uid.clone()),
                    ..ObjectMeta::default()
                },
                target: ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Node".into()),
                    name: Some(node.clone()),
                    ..ObjectReference::default()
                },
            };
            let result = api
                .create_subresource::<_, serde_json::Value>(
                    "binding",
                    &pod.name,
                    &PostParams::default(),
                    &binding,
                )
                .await
                .map(|_| ());
            let _ = tx.send(BindResult { pod, node, result });
        });
    }

    fn on_bound(&mut self, r: BindResult) {
        self.binds_in_flight -= 1;
        let key = r.pod.key();
        match r.result {
            Ok(()) => {
                self.scheduled += 1;
                if self.scheduled.is_multiple_of(1000) {
                    tracing::debug!(
                        scheduled = self.scheduled,
                        pending = self.queue.len(),
                        "progress"
                    );
                }
                self.queue.remove(&key);
                self.reporter.send(Report::Event {
                    message: format!("Successfully assigned {key} to {}", r.node),
                    pod: r.pod,
                    kind: "Normal",
                    reason: "Scheduled",
                });
            }
            Err(e) => {
                if self.snapshot.is_assumed(&key) {
                    self.snapshot.remove_pod(&key);
                }
                let gone = matches!(&e, kube::Error::Api(s) if s.code == 404 || s.code == 409);
                if gone {
                    // Deleted, or bound by someone else: the watch will say which.
                    self.queue.remove(&key);
                } else {
                    tracing::warn!(pod = %key, node = %r.node, error = %e, "binding failed");
                    telemetry::scheduler::metrics().attempt(
                        &self.config.scheduler_name,
                        "error",
                        None,
                    );
                    self.queue.retry(&key, Instant::now());
                }
            }
        }
    }
}
