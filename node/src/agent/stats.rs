//! Resource usage of the node and its pods, as the kubelet's summary API gives it
//! (`GET /stats/summary` on the agent's server, read by the API server for
//! `metrics.k8s.io`).
//!
//! A sampler reads, every `Config::stats_interval`, the node's CPU and memory from `/proc`
//! ([`crate::usage::node`]) and every running container's from the runtime over CRI
//! `ListContainerStats` (the process runtime measures its process groups or cgroups;
//! containerd its cgroups). CPU rates are the cumulative CPU's change between two samples over
//! the time between them; a container seen once has no rate yet. A pod's usage is the sum of
//! its containers'. The latest summary is kept whole and served as it is.

use std::collections::{BTreeMap, HashMap};
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

/// The sampler's memory: the last cumulative CPU of the node and of each container.
#[derive(Default)]
struct Sampler {
    node: Option<Sample>,
    containers: HashMap<String, Sample>,
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
            summary.window_seconds = self
                .node
                .map(|b| (now - b.at_ns) as f64 / 1e9)
                .filter(|w| *w > 0.0);
            summary.node.cpu = Some(CpuStats {
                time: time.clone(),
                usage_nano_cores: self.node.and_then(|b| rate(b, sample)),
                usage_core_nano_seconds: Some(r.cpu_nanos),
            });
            summary.node.memory = Some(MemoryStats {
                time: time.clone(),
                working_set_bytes: Some(r.working_set),
            });
            self.node = Some(sample);
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
            let nano_cores = self
                .containers
                .get(&attributes.id)
                .and_then(|b| rate(*b, sample));
            seen.insert(attributes.id.clone(), sample);
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
}
