//! The pods bound to this node: one watch (`spec.nodeName=<node>`) feeds one worker per pod.
//!
//! A worker is a state machine, re-evaluated on every change of its pod and every second:
//! *preparing* (sandbox and volumes) → *initializing* (init containers one at a time, in order)
//! → *running* (containers started, restarted per `restartPolicy` with CrashLoopBackOff, 10 s
//! doubling to 5 min; probes) → *finished* (Succeeded or Failed), and from any state
//! *terminating* once the pod has a deletionTimestamp (containers stopped within the grace
//! period, sandbox removed, the pod deleted with grace 0) or is gone.
//!
//! The runtime is the truth about containers: a worker reads their state from it on every step,
//! so an agent restarted over a live runtime adopts the sandboxes and containers it finds
//! (matched by the pod uid label) instead of starting them again, and removes sandboxes whose
//! pod is no longer bound here.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use apimachinery::event::{EventType, Record, Reporter, new_event};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, ObjectReference, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::images;
use super::oom;
use super::probes::{self, Tracker, Verdict};
use super::spec::{self, Lookup};
use super::{Config, labels};
use crate::runtime::{Cri, ImageClient, RuntimeClient, api};

const INITIAL_BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
const TICK: Duration = Duration::from_secs(1);
/// How long a container that SIGKILL ended (exit code 137) under a memory limit is given for
/// its runtime to record `OOMKilled`: containerd's CRI plugin handles the task's exit event and
/// its OOM event one after the other, in either order, and a status read between the two says
/// `Error`. The kubelet takes the reason from the same CRI status.
const OOM_SETTLE: Duration = Duration::from_secs(3);
const OOM_POLL: Duration = Duration::from_millis(50);
const SIGKILL_EXIT: i32 = 128 + 9;
/// How soon a failed service account token refresh is tried again.
const TOKEN_RETRY: Duration = Duration::from_secs(10);
const OOM_KILLED: &str = "OOMKilled";

/// Runs until `stop`: watches the node's pods and keeps one worker per pod (on `tasks`; a
/// worker stops with `stop` too). `scheme` prefixes container ids in statuses
/// (`containerd://…`): the runtime's name.
pub(super) async fn run(
    client: Client,
    cri: Cri,
    config: Config,
    scheme: String,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    let runtime = cri.runtime.clone();
    let api: Api<Pod> = Api::all(client.clone());
    let pods = watcher(
        api,
        watcher::Config::default().fields(&format!("spec.nodeName={}", config.node_name)),
    )
    .default_backoff();
    tokio::pin!(pods);
    let mut workers: HashMap<String, watch::Sender<Option<Pod>>> = HashMap::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    let mut listed: HashSet<String> = HashSet::new();
    let mut count_every = tokio::time::interval(COUNT_RUNNING_EVERY);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = count_every.tick() => count_running(&runtime).await,
            Some(uid) = done_rx.recv() => {
                if workers.get(&uid).is_some_and(|w| w.is_closed()) {
                    workers.remove(&uid);
                }
            }
            ev = pods.next() => {
                let Some(Ok(ev)) = ev else { continue };
                match ev {
                    watcher::Event::Init => listed.clear(),
                    watcher::Event::InitApply(p) | watcher::Event::Apply(p) => {
                        let Some(uid) = p.metadata.uid.clone() else { continue };
                        listed.insert(uid.clone());
                        match workers.get(&uid) {
                            Some(w) if !w.is_closed() => { let _ = w.send(Some(p)); }
                            _ => {
                                let (tx, rx) = watch::channel(Some(p));
                                workers.insert(uid.clone(), tx);
                                let worker = Worker::new(client.clone(), cri.clone(), config.clone(), scheme.clone(), rx, tasks.clone(), stop.clone());
                                let done = done_tx.clone();
                                let stop = stop.clone();
                                tasks.spawn(async move {
                                    if stop.run_until_cancelled(worker.run()).await.is_some() {
                                        let _ = done.send(uid);
                                    }
                                });
                            }
                        }
                    }
                    watcher::Event::Delete(p) => {
                        if let Some(w) = p.metadata.uid.as_ref().and_then(|u| workers.get(u)) {
                            let _ = w.send(None);
                        }
                    }
                    watcher::Event::InitDone => {
                        remove_orphans(&runtime, &listed).await;
                    }
                }
            }
        }
    }
}

/// How often the running pods and containers are counted.
const COUNT_RUNNING_EVERY: Duration = Duration::from_secs(5);

/// Sets `kubelet_running_pods` (ready sandboxes) and `kubelet_running_containers` (by state)
/// from the runtime's lists.
async fn count_running(runtime: &RuntimeClient) {
    let mut rt = runtime.clone();
    let metrics = telemetry::kubelet::metrics();
    if let Ok(list) = rt
        .list_pod_sandbox(api::ListPodSandboxRequest { filter: None })
        .await
    {
        let ready = list
            .into_inner()
            .items
            .iter()
            .filter(|sb| sb.state == api::PodSandboxState::SandboxReady as i32)
            .count();
        metrics.running_pods.set(ready as i64);
    }
    if let Ok(list) = rt
        .list_containers(api::ListContainersRequest { filter: None })
        .await
    {
        let mut counts = [
            ("created", 0i64),
            ("running", 0),
            ("exited", 0),
            ("unknown", 0),
        ];
        for c in list.into_inner().containers {
            let i = match api::ContainerState::try_from(c.state) {
                Ok(api::ContainerState::ContainerCreated) => 0,
                Ok(api::ContainerState::ContainerRunning) => 1,
                Ok(api::ContainerState::ContainerExited) => 2,
                _ => 3,
            };
            counts[i].1 += 1;
        }
        for (container_state, n) in counts {
            metrics
                .running_containers
                .get_or_create(&telemetry::kubelet::StateLabels { container_state })
                .set(n);
        }
    }
}

/// Removes the sandboxes of pods that are not bound here any more.
async fn remove_orphans(runtime: &RuntimeClient, pods: &HashSet<String>) {
    crate::runtime::remove_sandboxes(runtime, None, |sb| {
        let uid = sb.labels.get(labels::POD_UID).map_or("", String::as_str);
        let gone = !pods.contains(uid);
        if gone {
            tracing::info!(sandbox = %sb.id, pod_uid = %uid, "removing a sandbox whose pod is gone");
        }
        gone
    })
    .await;
}

fn rfc3339(ns: i64) -> String {
    jiff::Timestamp::from_nanosecond(ns as i128)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A pod's ephemeral containers as containers (the same fields but `targetContainerName`,
/// which the process runtime has no use for: every container already sees the node's
/// processes).
fn ephemeral_containers(spec: &k8s_openapi::api::core::v1::PodSpec) -> Vec<Container> {
    spec.ephemeral_containers
        .iter()
        .flatten()
        .filter_map(|e| {
            let mut v = serde_json::to_value(e).ok()?;
            v.as_object_mut()?.remove("targetContainerName");
            serde_json::from_value(v).ok()
        })
        .collect()
}

/// The agent's memory of one container name (across its restarts).
#[derive(Default)]
struct Memory {
    backoff: Duration,
    /// No restart before this.
    not_before: Option<Instant>,
    /// The runtime id the probes below belong to.
    probed: String,
    liveness: Option<Tracker>,
    readiness: Option<Tracker>,
    startup: Option<Tracker>,
    /// Why the container cannot be created (waiting reason, message).
    error: Option<(String, String)>,
    /// The image pull back-off.
    pull: images::Backoff,
    /// The latest attempt whose exit reason settled: its runtime id and that reason (which
    /// later reads keep, as the runtime may never record the kernel's OOM kill).
    settled: Option<(String, String)>,
}

/// Where a worker is in the pod's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Preparing,
    Initializing,
    Running,
    Finished,
}

struct Worker {
    client: Client,
    runtime: RuntimeClient,
    images: ImageClient,
    scheme: String,
    config: Config,
    rx: watch::Receiver<Option<Pod>>,
    pod: Pod,
    stage: Stage,
    sandbox: Option<(String, String)>,
    volumes: BTreeMap<String, PathBuf>,
    /// When the service account tokens of projected volumes are due for a refresh.
    token_refresh: Option<Instant>,
    memory: HashMap<String, Memory>,
    last_status: Option<Value>,
    start_time: Option<String>,
    events: HashSet<String>,
    phase: &'static str,
    /// When this agent first saw the pod, until it runs (`kubelet_pod_start_duration_seconds`);
    /// `None` for a pod that was running or finished before (an agent restarted).
    seen: Option<Instant>,
    /// The agent's tasks (Events written in the background) and its stop signal.
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl Worker {
    fn new(
        client: Client,
        cri: Cri,
        config: Config,
        scheme: String,
        rx: watch::Receiver<Option<Pod>>,
        tasks: TaskTracker,
        stop: CancellationToken,
    ) -> Worker {
        let pod = rx.borrow().clone().unwrap_or_default();
        let seen = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_none_or(|p| p == "Pending")
            .then(Instant::now);
        // A pod that already finished is never run again (after an agent or runtime restart).
        let phase = match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
            Some("Succeeded") => Some("Succeeded"),
            Some("Failed") => Some("Failed"),
            _ => None,
        };
        Worker {
            client,
            runtime: cri.runtime,
            images: cri.images,
            scheme,
            config,
            rx,
            start_time: pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
            pod,
            stage: if phase.is_some() {
                Stage::Finished
            } else {
                Stage::Preparing
            },
            sandbox: None,
            volumes: BTreeMap::new(),
            token_refresh: None,
            memory: HashMap::new(),
            last_status: None,
            events: HashSet::new(),
            seen,
            phase: phase.unwrap_or("Pending"),
            tasks,
            stop,
        }
    }

    fn uid(&self) -> String {
        self.pod.metadata.uid.clone().unwrap_or_default()
    }
    fn name(&self) -> String {
        self.pod.metadata.name.clone().unwrap_or_default()
    }
    fn namespace(&self) -> String {
        self.pod.metadata.namespace.clone().unwrap_or_default()
    }
    fn log_dir(&self) -> PathBuf {
        self.config.data_dir.join("logs").join(format!(
            "{}_{}_{}",
            self.namespace(),
            self.name(),
            self.uid()
        ))
    }
    fn pod_dir(&self) -> PathBuf {
        self.config.data_dir.join("pods").join(self.uid())
    }

    async fn run(mut self) {
        loop {
            let gone = self.rx.borrow_and_update().clone();
            match gone {
                None => {
                    self.terminate(Duration::ZERO, false).await;
                    return;
                }
                Some(p) => self.pod = p,
            }
            if self.pod.metadata.deletion_timestamp.is_some() {
                let grace = self
                    .pod
                    .metadata
                    .deletion_grace_period_seconds
                    .or_else(|| {
                        self.pod
                            .spec
                            .as_ref()
                            .and_then(|s| s.termination_grace_period_seconds)
                    })
                    .unwrap_or(30)
                    .max(0);
                self.terminate(Duration::from_secs(grace as u64), true)
                    .await;
                return;
            }
            self.step().await;
            let wait = self.wait();
            tokio::select! {
                r = self.rx.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// How long the worker sleeps before its next step: a tick, or less when a readiness probe's
    /// early retry is due sooner.
    fn wait(&self) -> Duration {
        let now = Instant::now();
        self.memory
            .values()
            .filter_map(|m| m.readiness.as_ref()?.eager_due(now))
            .min()
            .map_or(TICK, |due| {
                (due - now).clamp(Duration::from_millis(5), TICK)
            })
    }

    async fn event(&mut self, kind: EventType, reason: &str, message: String, once: bool) {
        if once && !self.events.insert(format!("{reason}/{message}")) {
            return;
        }
        let api: Api<k8s_openapi::api::core::v1::Event> =
            Api::namespaced(self.client.clone(), &self.namespace());
        let record = Record {
            regarding: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(self.name()),
                namespace: Some(self.namespace()),
                uid: Some(self.uid()),
                ..ObjectReference::default()
            },
            type_: kind,
            reason: reason.into(),
            action: String::new(),
            message,
        };
        let reporter = Reporter {
            component: "kubelet".into(),
            instance: self.config.node_name.clone(),
            host: Some(self.config.node_name.clone()),
        };
        let ev = new_event(record, &reporter, jiff::Timestamp::now());
        // Events are best effort and never hold the pod up.
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            let _ = stop
                .run_until_cancelled(api.create(&PostParams::default(), &ev))
                .await;
        });
    }

    /// The runtime's containers of this pod (their CRI statuses), by name, newest attempt last.
    async fn containers(&self) -> HashMap<String, Vec<api::ContainerStatus>> {
        let rt = self.runtime.clone();
        let filter = api::ContainerFilter {
            label_selector: [(labels::POD_UID.to_string(), self.uid())].into(),
            ..Default::default()
        };
        let ids: Vec<String> = rt
            .clone()
            .list_containers(api::ListContainersRequest {
                filter: Some(filter),
            })
            .await
            .map(|r| r.into_inner().containers)
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.id)
            .collect();
        let list: Vec<api::ContainerStatus> =
            futures::future::join_all(ids.into_iter().map(|id| {
                let mut rt = rt.clone();
                async move {
                    rt.container_status(api::ContainerStatusRequest {
                        container_id: id,
                        verbose: false,
                    })
                    .await
                    .ok()
                    .and_then(|r| r.into_inner().status)
                }
            }))
            .await
            .into_iter()
            .flatten()
            .collect();
        let mut out: HashMap<String, Vec<api::ContainerStatus>> = HashMap::new();
        for c in list {
            let name = c
                .labels
                .get(labels::CONTAINER_NAME)
                .cloned()
                .unwrap_or_default();
            out.entry(name).or_default().push(c);
        }
        for v in out.values_mut() {
            v.sort_by_key(|c| c.metadata.as_ref().map(|m| m.attempt).unwrap_or(0));
        }
        out
    }

    /// [`Worker::containers`], with the exit reason of each latest attempt settled (once per
    /// attempt): one that SIGKILL ended under a memory limit without `OOMKilled` is
    /// `OOMKilled` when the kernel's log says so (`oom`), else it is read again, up to
    /// [`OOM_SETTLE`], until the runtime records the OOM kill.
    async fn settled_containers(&mut self) -> HashMap<String, Vec<api::ContainerStatus>> {
        let mut runs = self.containers().await;
        let spec = self.pod.spec.clone().unwrap_or_default();
        let limited: HashSet<String> = spec
            .init_containers
            .unwrap_or_default()
            .iter()
            .chain(&spec.containers)
            .filter(|c| spec::limits(c).memory_limit_in_bytes > 0)
            .map(|c| c.name.clone())
            .collect();
        for (name, attempts) in runs.iter_mut() {
            let Some(latest) = attempts.last_mut() else {
                continue;
            };
            if latest.state != api::ContainerState::ContainerExited as i32 {
                continue;
            }
            let mem = self.memory.entry(name.clone()).or_default();
            if let Some((id, reason)) = &mem.settled
                && *id == latest.id
            {
                latest.reason = reason.clone();
                continue;
            }
            if limited.contains(name)
                && latest.exit_code == SIGKILL_EXIT
                && latest.reason != OOM_KILLED
            {
                let id = latest.id.clone();
                let kernel = tokio::task::spawn_blocking(move || oom::killed(&id))
                    .await
                    .unwrap_or(false);
                let deadline = Instant::now() + OOM_SETTLE;
                while !kernel && latest.reason != OOM_KILLED && Instant::now() < deadline {
                    tokio::time::sleep(OOM_POLL).await;
                    let read = self
                        .runtime
                        .clone()
                        .container_status(api::ContainerStatusRequest {
                            container_id: latest.id.clone(),
                            verbose: false,
                        })
                        .await;
                    match read.ok().and_then(|r| r.into_inner().status) {
                        Some(status) => *latest = status,
                        None => break,
                    }
                }
                if kernel {
                    latest.reason = OOM_KILLED.into();
                }
            }
            mem.settled = Some((latest.id.clone(), latest.reason.clone()));
        }
        runs
    }

    /// The pod's sandbox as CRI describes it (also sent with every CreateContainer).
    fn sandbox_config(&self) -> api::PodSandboxConfig {
        let host_network = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata {
                name: self.name(),
                uid: self.uid(),
                namespace: self.namespace(),
                attempt: 0,
            }),
            hostname: self
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.hostname.clone())
                .unwrap_or_else(|| self.name()),
            log_directory: self.log_dir().to_string_lossy().into_owned(),
            labels: [
                (labels::POD_UID.to_string(), self.uid()),
                (labels::POD_NAME.to_string(), self.name()),
                (labels::POD_NAMESPACE.to_string(), self.namespace()),
            ]
            .into(),
            annotations: Default::default(),
            linux: Some(api::LinuxPodSandboxConfig {
                security_context: Some(api::LinuxSandboxSecurityContext {
                    namespace_options: Some(api::NamespaceOption {
                        network: if host_network {
                            api::NamespaceMode::Node
                        } else {
                            api::NamespaceMode::Pod
                        } as i32,
                        pid: api::NamespaceMode::Container as i32,
                        ipc: api::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    async fn ensure_sandbox(&mut self) -> Result<(), String> {
        let mut rt = self.runtime.clone();
        if let Some((id, _)) = &self.sandbox {
            // The sandbox may have gone under the agent (a runtime killed and restarted forgets
            // its sandboxes and their containers die with it): check it on every step, as the
            // kubelet's relist does, and make a new one when it is gone or no longer ready.
            match rt
                .pod_sandbox_status(api::PodSandboxStatusRequest {
                    pod_sandbox_id: id.clone(),
                    verbose: false,
                })
                .await
            {
                Ok(r)
                    if r.get_ref()
                        .status
                        .as_ref()
                        .is_some_and(|s| s.state == api::PodSandboxState::SandboxReady as i32) =>
                {
                    return Ok(());
                }
                Err(e) if images::runtime_unavailable(&e) => {
                    return Err(format!(
                        "the container runtime is unavailable: {}",
                        e.message()
                    ));
                }
                Ok(_) | Err(_) => {
                    tracing::info!(pod = %self.name(), namespace = %self.namespace(), sandbox = %id, "the pod's sandbox is gone; making a new one");
                    self.sandbox = None;
                }
            }
        }
        let filter = api::PodSandboxFilter {
            label_selector: [(labels::POD_UID.to_string(), self.uid())].into(),
            ..Default::default()
        };
        let found = rt
            .list_pod_sandbox(api::ListPodSandboxRequest {
                filter: Some(filter),
            })
            .await
            .map_err(|e| e.message().to_string())?
            .into_inner()
            .items;
        let mut ready: Vec<_> = found
            .into_iter()
            .filter(|s| s.state == api::PodSandboxState::SandboxReady as i32)
            .collect();
        ready.sort_by_key(|s| s.created_at);
        // Keep the newest, remove duplicates.
        let keep = ready.pop();
        for dup in ready {
            let _ = rt
                .remove_pod_sandbox(api::RemovePodSandboxRequest {
                    pod_sandbox_id: dup.id,
                })
                .await;
        }
        let id = match keep {
            Some(s) => s.id,
            None => {
                let config = self.sandbox_config();
                rt.run_pod_sandbox(api::RunPodSandboxRequest {
                    config: Some(config),
                    runtime_handler: String::new(),
                })
                .await
                .map_err(|e| e.message().to_string())?
                .into_inner()
                .pod_sandbox_id
            }
        };
        let status = rt
            .pod_sandbox_status(api::PodSandboxStatusRequest {
                pod_sandbox_id: id.clone(),
                verbose: false,
            })
            .await
            .map_err(|e| e.message().to_string())?
            .into_inner()
            .status
            .unwrap_or_default();
        let ip = status
            .network
            .map(|n| n.ip)
            .filter(|ip| !ip.is_empty())
            .unwrap_or_else(|| self.config.node_ip.clone());
        self.sandbox = Some((id, ip));
        Ok(())
    }

    fn pod_ip(&self) -> String {
        self.sandbox
            .as_ref()
            .map(|s| s.1.clone())
            .unwrap_or_default()
    }

    /// Creates and starts attempt `attempt` of `c`, removing attempts older than the previous.
    async fn start_container(&mut self, c: &Container, attempt: u32, old: &[api::ContainerStatus]) {
        let name = c.name.clone();
        let Some((sandbox, _)) = self.sandbox.clone() else {
            return;
        };
        let lookup = Lookup {
            client: self.client.clone(),
            namespace: self.namespace(),
        };
        let mut pod = self.pod.clone();
        if let Some(st) = pod.status.as_mut() {
            st.pod_ip = Some(self.pod_ip());
            st.host_ip = Some(self.config.node_ip.clone());
        } else {
            pod.status = Some(k8s_openapi::api::core::v1::PodStatus {
                pod_ip: Some(self.pod_ip()),
                host_ip: Some(self.config.node_ip.clone()),
                ..Default::default()
            });
        }
        let env = match spec::environment(&pod, c, &lookup).await {
            Ok(env) => env,
            Err(e) => {
                self.memory.entry(name.clone()).or_default().error =
                    Some((e.reason.into(), e.message.clone()));
                self.event(
                    EventType::Warning,
                    "Failed",
                    format!("Error: {}", e.message),
                    true,
                )
                .await;
                return;
            }
        };
        // `command` replaces the image's entrypoint and `args` its cmd: the runtime merges.
        let expand = |v: &Option<Vec<String>>| -> Vec<String> {
            v.clone()
                .unwrap_or_default()
                .iter()
                .map(|a| spec::expand(a, &env))
                .collect()
        };
        let (command, args) = (expand(&c.command), expand(&c.args));
        let mut backoff = std::mem::take(&mut self.memory.entry(name.clone()).or_default().pull);
        let mut events = Vec::new();
        let pulled = images::ensure(
            &self.images,
            &self.client,
            &self.pod,
            c,
            &mut backoff,
            &mut events,
        )
        .await;
        self.memory.entry(name.clone()).or_default().pull = backoff;
        // Each distinct pull event once per pod (retries repeat them word for word).
        for (kind, reason, message) in events {
            self.event(kind, reason, message, true).await;
        }
        let image_ref = match pulled {
            Ok(r) => r,
            Err(e) => {
                self.memory.entry(name.clone()).or_default().error =
                    Some((e.reason.into(), e.message));
                return;
            }
        };
        self.memory.entry(name.clone()).or_default().error = None;
        let mut rt = self.runtime.clone();
        // Keep the current (soon previous) container and its log; drop older ones.
        for o in old.iter().rev().skip(1) {
            let _ = rt
                .remove_container(api::RemoveContainerRequest {
                    container_id: o.id.clone(),
                })
                .await;
            let attempt = o.metadata.as_ref().map(|m| m.attempt).unwrap_or(0);
            let _ = std::fs::remove_file(self.log_dir().join(&name).join(format!("{attempt}.log")));
        }
        // The runtime writes the log file; its directory is the agent's to make (as the
        // kubelet's).
        let _ = std::fs::create_dir_all(self.log_dir().join(&name));
        let config = api::ContainerConfig {
            metadata: Some(api::ContainerMetadata {
                name: name.clone(),
                attempt,
            }),
            image: Some(api::ImageSpec {
                image: image_ref,
                user_specified_image: c.image.clone().unwrap_or_default(),
                ..Default::default()
            }),
            command,
            args,
            envs: env
                .into_iter()
                .map(|(key, value)| api::KeyValue { key, value })
                .collect(),
            working_dir: c.working_dir.clone().unwrap_or_default(),
            stdin: c.stdin.unwrap_or(false),
            stdin_once: c.stdin_once.unwrap_or(false),
            tty: c.tty.unwrap_or(false),
            mounts: spec::mounts(c, &self.volumes),
            log_path: format!("{name}/{attempt}.log"),
            labels: [
                (labels::POD_UID.to_string(), self.uid()),
                (labels::POD_NAME.to_string(), self.name()),
                (labels::POD_NAMESPACE.to_string(), self.namespace()),
                (labels::CONTAINER_NAME.to_string(), name.clone()),
            ]
            .into(),
            annotations: Default::default(),
            linux: Some(api::LinuxContainerConfig {
                resources: Some(spec::limits(c)),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = rt
            .create_container(api::CreateContainerRequest {
                pod_sandbox_id: sandbox,
                config: Some(config),
                sandbox_config: Some(self.sandbox_config()),
            })
            .await;
        let id = match created {
            Ok(r) => r.into_inner().container_id,
            Err(e) => {
                let message = e.message().to_string();
                self.memory.entry(name.clone()).or_default().error =
                    Some(("CreateContainerError".into(), message.clone()));
                self.event(
                    EventType::Warning,
                    "Failed",
                    format!("Error: {message}"),
                    true,
                )
                .await;
                return;
            }
        };
        match rt
            .start_container(api::StartContainerRequest { container_id: id })
            .await
        {
            Ok(_) => {
                self.event(
                    EventType::Normal,
                    "Started",
                    format!("Started container {name}"),
                    false,
                )
                .await
            }
            Err(e) => {
                self.event(
                    EventType::Warning,
                    "Failed",
                    format!("Error: {}", e.message()),
                    false,
                )
                .await
            }
        }
    }

    /// Replaces the projected volumes' service account tokens once they are due (80% of their
    /// lifetime); a failed request is retried after [`TOKEN_RETRY`].
    async fn refresh_tokens(&mut self) {
        if self.token_refresh.is_none_or(|t| Instant::now() < t) {
            return;
        }
        let lookup = Lookup {
            client: self.client.clone(),
            namespace: self.namespace(),
        };
        let dir = self.pod_dir().join("volumes");
        match spec::refresh_tokens(&self.pod, &dir, &lookup).await {
            Ok(due) => self.token_refresh = due.map(|d| Instant::now() + d),
            Err(e) => {
                tracing::warn!(pod = %self.name(), error = %e, "service account token refresh failed");
                self.token_refresh = Some(Instant::now() + TOKEN_RETRY);
            }
        }
    }

    /// Decides about one container: start, restart (after back-off) or leave it.
    async fn drive(&mut self, c: &Container, runs: &[api::ContainerStatus], restart: bool) -> bool {
        let latest = runs.last();
        let Some(latest) = latest else {
            self.start_container(c, 0, runs).await;
            return true;
        };
        if latest.state != api::ContainerState::ContainerExited as i32 || !restart {
            return false;
        }
        let attempt = latest.metadata.as_ref().map(|m| m.attempt).unwrap_or(0) + 1;
        let mem = self.memory.entry(c.name.clone()).or_default();
        let now = Instant::now();
        match mem.not_before {
            None => {
                let ran =
                    Duration::from_nanos((latest.finished_at - latest.started_at).max(0) as u64);
                mem.backoff = if mem.backoff.is_zero() || ran > 2 * MAX_BACKOFF {
                    INITIAL_BACKOFF
                } else {
                    (mem.backoff * 2).min(MAX_BACKOFF)
                };
                mem.not_before = Some(now + mem.backoff);
                self.event(
                    EventType::Warning,
                    "BackOff",
                    format!(
                        "Back-off restarting failed container {} in pod {}",
                        c.name,
                        self.name()
                    ),
                    false,
                )
                .await;
            }
            Some(t) if now >= t => {
                mem.not_before = None;
                self.start_container(c, attempt, runs).await;
                return true;
            }
            Some(_) => {}
        }
        false
    }

    async fn step(&mut self) {
        if self.start_time.is_none() {
            self.start_time = Some(now());
        }
        if self.stage == Stage::Finished
            && self.last_status.is_none()
            && self.containers().await.is_empty()
        {
            // Finished before this agent or runtime started: nothing to run or report.
            return;
        }
        if let Err(e) = self.ensure_sandbox().await {
            self.event(
                EventType::Warning,
                "FailedCreatePodSandBox",
                format!("Failed to create pod sandbox: {e}"),
                true,
            )
            .await;
            self.report(&HashMap::new()).await;
            return;
        }
        if self.stage == Stage::Preparing {
            let lookup = Lookup {
                client: self.client.clone(),
                namespace: self.namespace(),
            };
            match spec::volumes(&self.pod, &self.pod_dir().join("volumes"), &lookup).await {
                Ok(v) => {
                    self.volumes = v.paths;
                    self.token_refresh = v.refresh.map(|d| Instant::now() + d);
                    self.stage = Stage::Initializing;
                }
                Err(e) => {
                    self.event(EventType::Warning, "FailedMount", e.message, true)
                        .await;
                    self.report(&HashMap::new()).await;
                    return;
                }
            }
        }
        self.refresh_tokens().await;
        let spec = self.pod.spec.clone().unwrap_or_default();
        let policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        let mut runs = self.settled_containers().await;
        if self.stage == Stage::Initializing {
            let mut all_done = true;
            for c in spec.init_containers.clone().unwrap_or_default() {
                let r = runs.get(&c.name).cloned().unwrap_or_default();
                match r.last() {
                    Some(l)
                        if l.state == api::ContainerState::ContainerExited as i32
                            && l.exit_code == 0 =>
                    {
                        continue;
                    }
                    Some(l)
                        if l.state == api::ContainerState::ContainerExited as i32
                            && policy == "Never" =>
                    {
                        self.stage = Stage::Finished;
                        self.phase = "Failed";
                        all_done = false;
                        break;
                    }
                    _ => {
                        let _ = self.drive(&c, &r, true).await;
                        all_done = false;
                        break;
                    }
                }
            }
            if all_done {
                self.stage = Stage::Running;
            }
            runs = self.settled_containers().await;
        }
        if self.stage == Stage::Running {
            // The runtime is read again only after this step changed something there: a
            // running pod's tick costs one list of its containers, not three.
            let mut changed = false;
            for c in spec.containers.clone() {
                let r = runs.get(&c.name).cloned().unwrap_or_default();
                let restart = match r.last() {
                    Some(l) => policy == "Always" || (policy == "OnFailure" && l.exit_code != 0),
                    None => true,
                };
                changed |= self.drive(&c, &r, restart).await;
            }
            // Ephemeral containers (`kubectl debug`) run once each, never restarted, and
            // count for neither readiness nor the pod's phase.
            for c in ephemeral_containers(&spec) {
                let r = runs.get(&c.name).cloned().unwrap_or_default();
                changed |= self.drive(&c, &r, false).await;
            }
            if changed {
                runs = self.settled_containers().await;
            }
            if self.probe(&spec.containers, &runs).await {
                runs = self.settled_containers().await;
            }
            // Finished when every container exited for good.
            let mut finished = true;
            let mut failed = false;
            for c in &spec.containers {
                match runs.get(&c.name).and_then(|r| r.last()) {
                    Some(l) if l.state == api::ContainerState::ContainerExited as i32 => {
                        let restarts =
                            policy == "Always" || (policy == "OnFailure" && l.exit_code != 0);
                        if restarts {
                            finished = false;
                        }
                        failed |= l.exit_code != 0;
                    }
                    _ => finished = false,
                }
            }
            let all_created = spec.containers.iter().all(|c| runs.contains_key(&c.name));
            if finished {
                self.stage = Stage::Finished;
                self.phase = if failed { "Failed" } else { "Succeeded" };
            } else if all_created {
                self.phase = "Running";
                if let Some(seen) = self.seen.take() {
                    telemetry::kubelet::metrics()
                        .pod_start
                        .observe(seen.elapsed().as_secs_f64());
                }
            } else {
                self.phase = "Pending";
            }
        }
        self.report(&runs).await;
    }

    async fn probe(
        &mut self,
        containers: &[Container],
        runs: &HashMap<String, Vec<api::ContainerStatus>>,
    ) -> bool {
        let mut stopped = false;
        let pod_ip = self.pod_ip();
        let (pod_name, pod_namespace) = (self.name(), self.namespace());
        let grace = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30);
        for c in containers {
            let Some(l) = runs.get(&c.name).and_then(|r| r.last()) else {
                continue;
            };
            if l.state != api::ContainerState::ContainerRunning as i32 {
                continue;
            }
            let mem = self.memory.entry(c.name.clone()).or_default();
            if mem.probed != l.id {
                let started = Instant::now();
                mem.probed = l.id.clone();
                mem.startup = c
                    .startup_probe
                    .as_ref()
                    .map(|p| Tracker::new(p, started, false));
                mem.liveness = c
                    .liveness_probe
                    .as_ref()
                    .map(|p| Tracker::new(p, started, true));
                mem.readiness = c
                    .readiness_probe
                    .as_ref()
                    .map(|p| Tracker::readiness(p, started));
            }
            let target = probes::Target {
                runtime: &self.runtime,
                container_id: &l.id,
                pod_ip: &pod_ip,
                container: c,
                pod: (&pod_name, &pod_namespace),
            };
            let mut kill: Option<String> = None;
            if let (Some(p), Some(t)) = (&c.startup_probe, mem.startup.as_mut())
                && !t.ok
                && let Verdict::Failed(m) = t.step(p, &target, "Startup").await
            {
                kill = Some(format!("Startup probe failed: {m}"));
            }
            let started = mem.startup.as_ref().is_none_or(|t| t.ok);
            if started && kill.is_none() {
                if let (Some(p), Some(t)) = (&c.liveness_probe, mem.liveness.as_mut())
                    && let Verdict::Failed(m) = t.step(p, &target, "Liveness").await
                {
                    kill = Some(format!("Liveness probe failed: {m}"));
                }
                if let (Some(p), Some(t)) = (&c.readiness_probe, mem.readiness.as_mut()) {
                    t.step(p, &target, "Readiness").await;
                }
            }
            if let Some(message) = kill {
                self.event(EventType::Warning, "Unhealthy", message, false)
                    .await;
                self.event(
                    EventType::Normal,
                    "Killing",
                    format!("Container {} failed its probe, will be restarted", c.name),
                    false,
                )
                .await;
                let mut rt = self.runtime.clone();
                let _ = rt
                    .stop_container(api::StopContainerRequest {
                        container_id: l.id.clone(),
                        timeout: grace,
                    })
                    .await;
                stopped = true;
            }
        }
        stopped
    }

    fn container_status(&self, c: &Container, runs: &[api::ContainerStatus], init: bool) -> Value {
        let mem = self.memory.get(&c.name);
        let latest = runs.last();
        let restart_count = latest
            .and_then(|l| l.metadata.as_ref())
            .map(|m| m.attempt)
            .unwrap_or(0);
        let terminated = |s: &api::ContainerStatus| {
            json!({"terminated": {
                "exitCode": s.exit_code, "reason": s.reason,
                "startedAt": rfc3339(s.started_at), "finishedAt": rfc3339(s.finished_at),
                "containerID": format!("{}://{}", self.scheme, s.id),
            }})
        };
        let mut ready = false;
        let mut started = false;
        let (state, last_state) = match latest {
            None => {
                let (reason, message) = mem.and_then(|m| m.error.clone()).unwrap_or_else(|| {
                    (
                        if init {
                            "PodInitializing"
                        } else {
                            "ContainerCreating"
                        }
                        .into(),
                        String::new(),
                    )
                });
                let mut w = json!({"reason": reason});
                if !message.is_empty() {
                    w["message"] = json!(message);
                }
                (json!({"waiting": w}), json!({}))
            }
            Some(l) => {
                let previous = runs.len().checked_sub(2).and_then(|i| runs.get(i));
                let last = previous.map(terminated).unwrap_or_else(|| json!({}));
                if l.state == api::ContainerState::ContainerRunning as i32 {
                    started = mem.and_then(|m| m.startup.as_ref()).is_none_or(|t| t.ok);
                    ready = started && mem.and_then(|m| m.readiness.as_ref()).is_none_or(|t| t.ok);
                    if init {
                        ready = false;
                    }
                    (
                        json!({"running": {"startedAt": rfc3339(l.started_at)}}),
                        last,
                    )
                } else if l.state == api::ContainerState::ContainerExited as i32 {
                    let waiting = mem.and_then(|m| m.not_before).is_some();
                    if waiting {
                        let b = mem.map(|m| m.backoff.as_secs()).unwrap_or(10);
                        (
                            json!({"waiting": {"reason": "CrashLoopBackOff", "message": format!(
                                "back-off {}s restarting failed container={} pod={}_{}({})",
                                b, c.name, self.name(), self.namespace(), self.uid())}}),
                            terminated(l),
                        )
                    } else {
                        ready = init && l.exit_code == 0;
                        (terminated(l), last)
                    }
                } else {
                    (json!({"waiting": {"reason": "ContainerCreating"}}), last)
                }
            }
        };
        let mut s = json!({
            "name": c.name,
            "image": c.image.clone().unwrap_or_default(),
            "imageID": "",
            "ready": ready,
            "restartCount": restart_count,
            "started": started,
            "state": state,
            "lastState": last_state,
        });
        if let Some(l) = latest {
            s["containerID"] = json!(format!("{}://{}", self.scheme, l.id));
            s["imageID"] = json!(l.image_ref);
        }
        s
    }

    async fn report(&mut self, runs: &HashMap<String, Vec<api::ContainerStatus>>) {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let empty = Vec::new();
        let inits: Vec<Value> = spec
            .init_containers
            .clone()
            .unwrap_or_default()
            .iter()
            .map(|c| self.container_status(c, runs.get(&c.name).unwrap_or(&empty), true))
            .collect();
        let mains: Vec<Value> = spec
            .containers
            .iter()
            .map(|c| self.container_status(c, runs.get(&c.name).unwrap_or(&empty), false))
            .collect();
        let ephemerals: Vec<Value> = ephemeral_containers(&spec)
            .iter()
            .map(|c| {
                let mut s = self.container_status(c, runs.get(&c.name).unwrap_or(&empty), false);
                s["ready"] = json!(false);
                s
            })
            .collect();
        let initialized = matches!(self.stage, Stage::Running | Stage::Finished);
        let all_ready = initialized && mains.iter().all(|s| s["ready"] == json!(true));
        let old: Vec<Value> = self
            .pod
            .status
            .as_ref()
            .and_then(|s| serde_json::to_value(&s.conditions).ok())
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default();
        let condition = |kind: &str, ok: bool| {
            let status = if ok { "True" } else { "False" };
            let since = old
                .iter()
                .find(|c| c["type"] == json!(kind) && c["status"] == json!(status))
                .and_then(|c| c["lastTransitionTime"].as_str().map(str::to_string))
                .unwrap_or_else(now);
            let mut c = json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": since});
            if !ok && (kind == "Ready" || kind == "ContainersReady") {
                c["reason"] = json!("ContainersNotReady");
            }
            c
        };
        let mut conditions: Vec<Value> = vec![
            condition("PodReadyToStartContainers", self.sandbox.is_some()),
            condition("Initialized", initialized),
            condition("Ready", all_ready),
            condition("ContainersReady", all_ready),
        ];
        for c in &old {
            if !conditions.iter().any(|n| n["type"] == c["type"]) {
                conditions.push(c.clone());
            }
        }
        let ip = self.pod_ip();
        let mut status = json!({
            "phase": self.phase,
            "conditions": conditions,
            "hostIP": self.config.node_ip,
            "hostIPs": [{"ip": self.config.node_ip}],
            "startTime": self.start_time,
            "containerStatuses": mains,
            "qosClass": self.pod.status.as_ref().and_then(|s| s.qos_class.clone()).unwrap_or_else(|| "BestEffort".into()),
        });
        if !inits.is_empty() {
            status["initContainerStatuses"] = json!(inits);
        }
        if !ephemerals.is_empty() {
            status["ephemeralContainerStatuses"] = json!(ephemerals);
        }
        if !ip.is_empty() {
            status["podIP"] = json!(ip);
            status["podIPs"] = json!([{"ip": ip}]);
        }
        if self.last_status.as_ref() == Some(&status) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace());
        match api
            .patch_status(
                &self.name(),
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await
        {
            Ok(p) => {
                self.last_status = Some(status);
                if p.metadata.uid == self.pod.metadata.uid {
                    self.pod.status = p.status;
                }
            }
            Err(e) => tracing::debug!(pod = %self.name(), error = %e, "status update failed"),
        }
    }

    /// Stops the containers (within `grace`), removes the sandbox and the pod's files and, when
    /// `delete`, the pod object.
    async fn terminate(&mut self, grace: Duration, delete: bool) {
        let rt = self.runtime.clone();
        let runs = self.containers().await;
        let running: Vec<String> = runs
            .values()
            .flatten()
            .filter(|c| c.state == api::ContainerState::ContainerRunning as i32)
            .map(|c| c.id.clone())
            .collect();
        if !running.is_empty() && delete {
            self.event(
                EventType::Normal,
                "Killing",
                "Stopping containers".into(),
                false,
            )
            .await;
        }
        futures::future::join_all(running.into_iter().map(|id| {
            let mut rt = rt.clone();
            async move {
                let _ = rt
                    .stop_container(api::StopContainerRequest {
                        container_id: id,
                        timeout: grace.as_secs() as i64,
                    })
                    .await;
            }
        }))
        .await;
        let filter = api::PodSandboxFilter {
            label_selector: [(labels::POD_UID.to_string(), self.uid())].into(),
            ..Default::default()
        };
        crate::runtime::remove_sandboxes(&rt, Some(filter), |_| true).await;
        let _ = std::fs::remove_dir_all(self.pod_dir());
        let _ = std::fs::remove_dir_all(self.log_dir());
        if delete {
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace());
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: self.pod.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            if let Err(e) = api.delete(&self.name(), &params).await {
                tracing::debug!(pod = %self.name(), error = %e, "final delete failed");
            }
        }
    }
}
