//! Resource usage of the node and its pods, as the kubelet's summary API gives it
//! (`GET /stats/summary` on the agent's server, read by the API server for
//! `metrics.k8s.io`).
//!
//! A sampler reads, every `Config::stats_interval`, the node's CPU and memory from `/proc`
//! ([`crate::usage::node`]) and every running container's from the runtime over CRI
//! `ListContainerStats` (the process runtime measures its process groups or cgroups;
//! containerd its cgroups). CPU rates are the cumulative CPU's change over a window of at least
//! [`RATE_WINDOW`] (metrics-server's default resolution) between the sample at its start and
//! the latest, so a process that wakes briefly now and then has a small non-zero rate rather
//! than 0 or a spike; until a container has been seen for that long, the window is as long as
//! it has been seen, and a container seen once has no rate yet. A pod's usage is the sum of its
//! containers'. The latest summary is kept whole and served as it is.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apimachinery::metrics::{
    ContainerStats, CpuStats, MemoryStats, NodeStats, PodReference, PodStats, Summary,
};
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use super::labels;
use crate::runtime::{RuntimeClient, api};

/// The latest summary, shared by the sampler and the server.
pub(super) type Latest = Arc<Mutex<Summary>>;

/// A cumulative CPU reading and when it was taken.
#[derive(Clone, Copy)]
struct Sample {
    at_ns: i64,
    cpu_nanos: u64,
}

/// The shortest time a CPU rate is measured over once a counter has been sampled that long.
pub(super) const RATE_WINDOW: Duration = Duration::from_secs(15);

/// The recent samples of one cumulative counter: enough to measure over [`RATE_WINDOW`].
#[derive(Default)]
struct History(VecDeque<Sample>);

impl History {
    /// Records `now`; gives the rate since the newest sample at least [`RATE_WINDOW`] older
    /// (or the oldest kept, while none is that old) and the seconds it spans.
    fn record(&mut self, now: Sample) -> Option<(u64, f64)> {
        let window = RATE_WINDOW.as_nanos() as i64;
        while self.0.len() > 1 && self.0.get(1).is_some_and(|s| now.at_ns - s.at_ns >= window) {
            self.0.pop_front();
        }
        let measured = self
            .0
            .front()
            .and_then(|b| Some((rate(*b, now)?, (now.at_ns - b.at_ns) as f64 / 1e9)));
        self.0.push_back(now);
        measured
    }
}

/// The rate between two samples, in nano-cores (0 when the cumulative value went down: a
/// process of the group exited and took its time with it).
fn rate(before: Sample, now: Sample) -> Option<u64> {
    let elapsed = now.at_ns.checked_sub(before.at_ns).filter(|e| *e > 0)? as u128;
    let used = now.cpu_nanos.saturating_sub(before.cpu_nanos) as u128;
    Some((used * 1_000_000_000 / elapsed) as u64)
}

fn rfc3339(ns: i64) -> String {
    jiff::Timestamp::from_nanosecond(ns as i128)
        .map(|t| t.round(jiff::Unit::Second).unwrap_or(t).to_string())
        .unwrap_or_default()
}

/// The sampler's memory: the recent cumulative CPU of the node and of each container.
#[derive(Default)]
struct Sampler {
    node: History,
    containers: HashMap<String, History>,
    warned: bool,
}

impl Sampler {
    async fn sample(&mut self, runtime: &RuntimeClient, node_name: &str) -> Summary {
        let now = jiff::Timestamp::now().as_nanosecond() as i64;
        let time = rfc3339(now);
        let reading = tokio::task::spawn_blocking(crate::usage::node)
            .await
            .ok()
            .flatten();
        let mut summary = Summary {
            node: NodeStats {
                node_name: node_name.to_string(),
                ..Default::default()
            },
            ..Default::default()
        };
        if let Some(r) = reading {
            let sample = Sample {
                at_ns: now,
                cpu_nanos: r.cpu_nanos,
            };
            let measured = self.node.record(sample);
            summary.window_seconds = measured.map(|(_, w)| w);
            summary.node.cpu = Some(CpuStats {
                time: time.clone(),
                usage_nano_cores: measured.map(|(r, _)| r),
                usage_core_nano_seconds: Some(r.cpu_nanos),
            });
            summary.node.memory = Some(MemoryStats {
                time: time.clone(),
                working_set_bytes: Some(r.working_set),
            });
        }
        let listed = runtime
            .clone()
            .list_container_stats(api::ListContainerStatsRequest { filter: None })
            .await;
        let stats = match listed {
            Ok(l) => l.into_inner().stats,
            Err(e) => {
                if !self.warned {
                    tracing::warn!(error = %e.message(), "the runtime gives no container stats: pods have no resource metrics");
                    self.warned = true;
                }
                Vec::new()
            }
        };
        let mut seen = HashMap::new();
        let mut pods: BTreeMap<String, PodStats> = BTreeMap::new();
        for s in stats {
            let Some(attributes) = s.attributes else {
                continue;
            };
            let l = &attributes.labels;
            let (Some(uid), Some(name), Some(namespace), Some(container)) = (
                l.get(labels::POD_UID),
                l.get(labels::POD_NAME),
                l.get(labels::POD_NAMESPACE),
                l.get(labels::CONTAINER_NAME),
            ) else {
                continue;
            };
            let (Some(cpu), Some(memory)) = (s.cpu, s.memory) else {
                continue;
            };
            let (Some(cumulative), Some(working_set)) =
                (cpu.usage_core_nano_seconds, memory.working_set_bytes)
            else {
                continue;
            };
            let at_ns = if cpu.timestamp > 0 {
                cpu.timestamp
            } else {
                now
            };
            let sample = Sample {
                at_ns,
                cpu_nanos: cumulative.value,
            };
            let mut history = self.containers.remove(&attributes.id).unwrap_or_default();
            let nano_cores = history.record(sample).map(|(r, _)| r);
            seen.insert(attributes.id.clone(), history);
            let pod = pods.entry(uid.clone()).or_insert_with(|| PodStats {
                pod_ref: PodReference {
                    name: name.clone(),
                    namespace: namespace.clone(),
                    uid: uid.clone(),
                },
                ..Default::default()
            });
            pod.containers.push(ContainerStats {
                name: container.clone(),
                cpu: Some(CpuStats {
                    time: time.clone(),
                    usage_nano_cores: nano_cores,
                    usage_core_nano_seconds: Some(cumulative.value),
                }),
                memory: Some(MemoryStats {
                    time: time.clone(),
                    working_set_bytes: Some(working_set.value),
                }),
            });
        }
        self.containers = seen;
        for pod in pods.values_mut() {
            let cpu = |c: &ContainerStats| c.cpu.as_ref().and_then(|c| c.usage_nano_cores);
            let mem = |c: &ContainerStats| c.memory.as_ref().and_then(|m| m.working_set_bytes);
            pod.cpu = Some(CpuStats {
                time: time.clone(),
                usage_nano_cores: pod.containers.iter().map(cpu).sum(),
                usage_core_nano_seconds: pod
                    .containers
                    .iter()
                    .map(|c| c.cpu.as_ref().and_then(|c| c.usage_core_nano_seconds))
                    .sum(),
            });
            pod.memory = Some(MemoryStats {
                time: time.clone(),
                working_set_bytes: pod.containers.iter().map(mem).sum(),
            });
        }
        summary.pods = pods.into_values().collect();
        summary
    }
}

/// Samples every `interval` into `latest` until `stop`.
pub(super) async fn run(
    runtime: RuntimeClient,
    node_name: String,
    interval: Duration,
    latest: Latest,
    stop: CancellationToken,
) {
    let mut sampler = Sampler::default();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let summary = sampler.sample(&runtime, &node_name).await;
        *latest.lock().unwrap_or_else(|p| p.into_inner()) = summary;
    }
}

/// `GET /stats/summary`: the latest summary.
pub(super) fn routes(latest: Latest) -> Router {
    Router::new()
        .route("/stats/summary", get(summary))
        .with_state(latest)
}

async fn summary(State(latest): State<Latest>) -> Response {
    let summary = latest.lock().unwrap_or_else(|p| p.into_inner()).clone();
    axum::Json(summary).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_is_cpu_time_over_elapsed_time() {
        let at = |s: i64, cpu: u64| Sample {
            at_ns: s * 1_000_000_000,
            cpu_nanos: cpu,
        };
        assert_eq!(rate(at(10, 0), at(12, 1_000_000_000)), Some(500_000_000));
        assert_eq!(rate(at(10, 5), at(12, 1)), Some(0));
        assert_eq!(rate(at(12, 0), at(12, 1)), None);
    }

    #[test]
    fn a_rate_spans_the_window_once_samples_are_that_old() {
        let at = |s: i64, cpu: u64| Sample {
            at_ns: s * 1_000_000_000,
            cpu_nanos: cpu,
        };
        let mut h = History::default();
        assert_eq!(h.record(at(0, 0)), None);
        // Until 15 s of samples exist, the rate is since the first.
        assert_eq!(h.record(at(2, 20_000_000)), Some((10_000_000, 2.0)));
        for s in (4..=14).step_by(2) {
            h.record(at(s, 20_000_000));
        }
        // 20 ms of CPU in the first 2 s, none since: over 16 s, 1.25 ms a second.
        assert_eq!(h.record(at(16, 20_000_000)), Some((1_250_000, 16.0)));
        // Later the window starts at the newest sample at least 15 s old.
        assert_eq!(h.record(at(18, 20_000_000)), Some((0, 16.0)));
        assert_eq!(h.record(at(19, 21_000_000)), Some((66_666, 15.0)));
    }
}
