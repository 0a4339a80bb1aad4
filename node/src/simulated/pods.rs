//! The pod lifecycle of simulated nodes, one state machine per pod bound to them:
//!
//! - *starting*: bound, Pending; after the start-up latency its status becomes Running (or
//!   Failed when it carries `gitplane.io/simulate: fail`).
//! - *running*: Running; [`super::SimulatedNodes::fail_pod`] or the annotation turns it Failed;
//!   with `gitplane.io/simulate: succeed-after=DURATION` (or `fail-after=DURATION`) it becomes
//!   Succeeded (Failed) that long after it started, its containers exited with 0 (1).
//! - *terminating*: it has a deletionTimestamp; when that time comes it is deleted with grace 0
//!   (the API server keeps bound pods being deleted until their node lets go).
//! - *done*: Failed or Succeeded, waiting for deletion.
//!
//! One watch of all bound pods drives every node; timers sit in one heap; writes go out in
//! the background with a bounded number in flight.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apimachinery::lean::Lean;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::{Command, Config, SIMULATE_ANNOTATION, SimNode};

/// Where a pod is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Starting,
    Running,
    Terminating,
    Done,
}

#[derive(Debug)]
struct SimPod {
    namespace: String,
    name: String,
    uid: String,
    node: String,
    phase: Phase,
    fail: bool,
    finish: Option<(Outcome, Duration)>,
    containers: Vec<(String, String)>,
    /// The last status write, which the next one waits for.
    last_write: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Start,
    Finish,
    Delete,
}

/// How a pod that finishes by itself ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Succeed,
    Fail,
}

/// Reads `succeed-after=1s` / `fail-after=500ms` (`succeed` alone: at once).
fn parse_finish(value: &str) -> Option<(Outcome, Duration)> {
    if value == "succeed" {
        return Some((Outcome::Succeed, Duration::ZERO));
    }
    let (outcome, d) = if let Some(d) = value.strip_prefix("succeed-after=") {
        (Outcome::Succeed, d)
    } else {
        (Outcome::Fail, value.strip_prefix("fail-after=")?)
    };
    let d = d.trim();
    let (number, unit) = d.split_at(d.find(|c: char| !c.is_ascii_digit()).unwrap_or(d.len()));
    let n: u64 = number.parse().ok()?;
    let duration = match unit {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        _ => return None,
    };
    Some((outcome, duration))
}

struct Lifecycle {
    client: Client,
    config: Config,
    nodes: HashMap<String, SimNode>,
    pods: HashMap<String, SimPod>,
    timers: BinaryHeap<Reverse<(Instant, u64, String, Action)>>,
    seq: u64,
    next_ip: u32,
    writes: Arc<Semaphore>,
}

/// Runs until `stop` is cancelled.
pub(crate) async fn run(
    client: Client,
    config: Config,
    nodes: Vec<SimNode>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    stop: CancellationToken,
) {
    // Decoded without managedFields: a kubelet never reads them.
    let pods = watcher(
        Api::<Lean<Pod>>::all(client.clone()),
        watcher::Config::default().fields("spec.nodeName!="),
    )
    .default_backoff();
    tokio::pin!(pods);
    let mut l = Lifecycle {
        writes: Arc::new(Semaphore::new(config.concurrency.max(1))),
        client,
        config,
        nodes: nodes.into_iter().map(|n| (n.name.clone(), n)).collect(),
        pods: HashMap::new(),
        timers: BinaryHeap::new(),
        seq: 0,
        next_ip: 0,
    };
    loop {
        let next = l.timers.peek().map(|Reverse((at, ..))| *at);
        tokio::select! {
            _ = stop.cancelled() => return,
            ev = pods.next() => match ev {
                Some(Ok(watcher::Event::Apply(Lean(p)) | watcher::Event::InitApply(Lean(p)))) => {
                    l.on_pod(&p)
                }
                Some(Ok(watcher::Event::Delete(Lean(p)))) => {
                    l.pods.remove(&key_of(&p));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => tracing::warn!(error = %e, "pod watch failed; retrying"),
                None => return,
            },
            Some(cmd) = commands.recv() => match cmd {
                Command::FailPod { namespace, name } => l.fail(&format!("{namespace}/{name}")),
            },
            _ = sleep_until(next) => l.fire_due(),
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

fn key_of(p: &Pod) -> String {
    format!(
        "{}/{}",
        p.metadata.namespace.as_deref().unwrap_or("default"),
        p.metadata.name.as_deref().unwrap_or("")
    )
}

fn rfc3339(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl Lifecycle {
    fn timer(&mut self, at: Instant, key: String, action: Action) {
        self.seq += 1;
        self.timers.push(Reverse((at, self.seq, key, action)));
    }

    fn on_pod(&mut self, p: &Pod) {
        let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            return;
        };
        if !self.nodes.contains_key(&node) {
            return;
        }
        let key = key_of(p);
        let simulate = p
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(SIMULATE_ANNOTATION));
        let fail = simulate.is_some_and(|v| v == "fail");
        let finish = simulate.and_then(|v| parse_finish(v));
        let phase = apimachinery::pod::phase(p);
        let known = self.pods.contains_key(&key);
        if !known {
            let current = match phase {
                "Running" => Phase::Running,
                "Succeeded" | "Failed" => Phase::Done,
                _ => Phase::Starting,
            };
            self.pods.insert(
                key.clone(),
                SimPod {
                    namespace: p
                        .metadata
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "default".into()),
                    name: p.metadata.name.clone().unwrap_or_default(),
                    uid: p.metadata.uid.clone().unwrap_or_default(),
                    node,
                    phase: current,
                    fail,
                    finish,
                    containers: p
                        .spec
                        .as_ref()
                        .map(|s| {
                            s.containers
                                .iter()
                                .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
                                .collect()
                        })
                        .unwrap_or_default(),
                    last_write: None,
                },
            );
            if current == Phase::Starting && p.metadata.deletion_timestamp.is_none() {
                let at = Instant::now() + self.config.startup_latency;
                if self.config.startup_latency.is_zero() {
                    self.start(&key);
                } else {
                    self.timer(at, key.clone(), Action::Start);
                }
            }
        }
        if let Some(sim) = self.pods.get_mut(&key) {
            sim.fail |= fail;
            if fail && sim.phase == Phase::Running {
                self.fail(&key);
            }
        }
        if let Some(ts) = &p.metadata.deletion_timestamp
            && self
                .pods
                .get(&key)
                .is_some_and(|s| s.phase != Phase::Terminating)
        {
            if let Some(sim) = self.pods.get_mut(&key) {
                sim.phase = Phase::Terminating;
            }
            let wait = ts.0.duration_since(jiff::Timestamp::now());
            let wait = Duration::try_from(wait).unwrap_or(Duration::ZERO);
            self.timer(Instant::now() + wait, key, Action::Delete);
        }
    }

    fn fire_due(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, ..))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, _, key, action))) = self.timers.pop() else {
                break;
            };
            match action {
                Action::Start => self.start(&key),
                Action::Finish => self.finish(&key),
                Action::Delete => self.delete(&key),
            }
        }
    }

    fn pod_ip(&mut self) -> String {
        let n = self.next_ip;
        self.next_ip = self.next_ip.wrapping_add(1);
        format!(
            "127.{}.{}.{}",
            2 + (n / 62_500) % 250,
            (n / 250) % 250,
            n % 250 + 1
        )
    }

    fn start(&mut self, key: &str) {
        let Some(sim) = self.pods.get(key) else {
            return;
        };
        if sim.phase != Phase::Starting {
            return;
        }
        if sim.fail {
            self.fail(key);
            return;
        }
        let ip = self.pod_ip();
        let Some(sim) = self.pods.get_mut(key) else {
            return;
        };
        sim.phase = Phase::Running;
        if let Some((_, after)) = sim.finish {
            let key = key.to_string();
            self.timer(Instant::now() + after, key, Action::Finish);
        }
        let Some(sim) = self.pods.get(key) else {
            return;
        };
        let host_ip = self
            .nodes
            .get(&sim.node)
            .map(|n| n.ip.clone())
            .unwrap_or_default();
        let now = rfc3339(jiff::Timestamp::now());
        let condition = |kind: &str| json!({"type": kind, "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
        let containers: Vec<Value> = sim
            .containers
            .iter()
            .map(|(name, image)| {
                json!({"name": name, "image": image, "imageID": format!("simulated://{image}"),
                    "containerID": format!("simulated://{}/{name}", sim.uid),
                    "ready": true, "started": true, "restartCount": 0,
                    "state": {"running": {"startedAt": now}}})
            })
            .collect();
        let status = json!({"status": {
            "phase": "Running",
            "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
            "podIP": ip, "podIPs": [{"ip": ip}],
            "startTime": now,
            "conditions": [condition("PodReadyToStartContainers"), condition("Initialized"),
                condition("Ready"), condition("ContainersReady"), condition("PodScheduled")],
            "containerStatuses": containers,
        }});
        self.write_status(key, status);
    }

    fn finish(&mut self, key: &str) {
        match self.pods.get(key).and_then(|s| s.finish) {
            Some((Outcome::Succeed, _)) => self.end(key, true),
            Some((Outcome::Fail, _)) => self.end(key, false),
            None => {}
        }
    }

    fn fail(&mut self, key: &str) {
        self.end(key, false);
    }

    /// Ends a pod: Succeeded (exit code 0) or Failed (exit code 1).
    fn end(&mut self, key: &str, success: bool) {
        let Some(sim) = self.pods.get_mut(key) else {
            return;
        };
        if matches!(sim.phase, Phase::Done | Phase::Terminating) {
            return;
        }
        sim.phase = Phase::Done;
        let now = rfc3339(jiff::Timestamp::now());
        let condition = |kind: &str, status: &str| json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": now});
        let containers: Vec<Value> = sim
            .containers
            .iter()
            .map(|(name, image)| {
                json!({"name": name, "image": image, "imageID": format!("simulated://{image}"),
                    "ready": false, "started": false, "restartCount": 0,
                    "state": {"terminated": {"exitCode": if success { 0 } else { 1 },
                        "reason": if success { "Completed" } else { "Error" }, "startedAt": now, "finishedAt": now,
                        "containerID": format!("simulated://{}/{name}", sim.uid)}}})
            })
            .collect();
        let (phase, reason, message) = if success {
            ("Succeeded", Value::Null, Value::Null)
        } else {
            ("Failed", json!("Error"), json!("simulated failure"))
        };
        let status = json!({"status": {
            "phase": phase,
            "reason": reason,
            "message": message,
            "conditions": [condition("Initialized", "True"), condition("Ready", "False"),
                condition("ContainersReady", "False"), condition("PodScheduled", "True")],
            "containerStatuses": containers,
        }});
        self.write_status(key, status);
    }

    /// Writes `status` in a task of its own, after the pod's previous status write: a pod that
    /// succeeds at once (`succeed`) had its Succeeded written before its Running now and then,
    /// and stayed Running (seen as a Job that never completed, under load).
    fn write_status(&mut self, key: &str, status: Value) {
        let Some(sim) = self.pods.get_mut(key) else {
            return;
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &sim.namespace);
        let name = sim.name.clone();
        let writes = self.writes.clone();
        let previous = sim.last_write.take();
        sim.last_write = Some(tokio::spawn(async move {
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            let _permit = writes.acquire_owned().await;
            match api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
                .await
            {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => tracing::warn!(pod = %name, error = %e, "status write failed"),
            }
        }));
    }

    fn delete(&mut self, key: &str) {
        let Some(sim) = self.pods.get(key) else {
            return;
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &sim.namespace);
        let (name, uid) = (sim.name.clone(), sim.uid.clone());
        let writes = self.writes.clone();
        tokio::spawn(async move {
            let _permit = writes.acquire_owned().await;
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(&name, &params).await {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => tracing::warn!(pod = %name, error = %e, "delete failed"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_annotations_parse_with_units() {
        assert_eq!(
            parse_finish("succeed"),
            Some((Outcome::Succeed, Duration::ZERO))
        );
        assert_eq!(
            parse_finish("succeed-after=1s"),
            Some((Outcome::Succeed, Duration::from_secs(1)))
        );
        assert_eq!(
            parse_finish("fail-after=250ms"),
            Some((Outcome::Fail, Duration::from_millis(250)))
        );
        assert_eq!(
            parse_finish("succeed-after=2m"),
            Some((Outcome::Succeed, Duration::from_secs(120)))
        );
        assert_eq!(parse_finish("succeed-after=soon"), None);
        assert_eq!(parse_finish("fail"), None);
        assert_eq!(parse_finish("stop-heartbeat"), None);
    }
}
