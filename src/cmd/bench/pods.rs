//! What the scheduling scenarios share: creating many pods over concurrent connections, timing
//! when they are seen Running, and checking that no node is over-committed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use hyper::{Method, StatusCode};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use kube::runtime::{WatchStreamExt, watcher};
use reconciler::scheduler::resources::{PodRequests, Resources};

use super::client::Conn;
use super::{percentile_ms, report};

/// Creates `count` pods named `pod-<i>` requesting `cpu` and `memory`, over `clients`
/// connections; returns when each creation was sent, by index.
pub async fn create(
    addr: std::net::SocketAddr,
    count: usize,
    clients: usize,
    cpu: &str,
    memory: &str,
) -> anyhow::Result<Vec<Instant>> {
    create_running(addr, count, clients, cpu, memory, PAUSE, None).await
}

/// The image of the pods the scenarios create (pulled only by containerd).
pub const PAUSE: &str = "registry.k8s.io/pause:3.10";

/// Like [`create`], with the container's `image`, and a `command` (a JSON array) when given.
pub async fn create_running(
    addr: std::net::SocketAddr,
    count: usize,
    clients: usize,
    cpu: &str,
    memory: &str,
    image: &str,
    command: Option<&str>,
) -> anyhow::Result<Vec<Instant>> {
    let command = command
        .map(|c| format!(r#","command":{c}"#))
        .unwrap_or_default();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients.max(1) {
        let (next, cpu, memory) = (next.clone(), cpu.to_string(), memory.to_string());
        let image = image.to_string();
        let command = command.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await?;
            let mut sent = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let body = format!(
                    r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"pod-{i}","labels":{{"app":"bench"}}}},"spec":{{"containers":[{{"name":"c","image":"{image}"{command},"resources":{{"requests":{{"cpu":"{cpu}","memory":"{memory}"}}}}}}]}}}}"#
                );
                let t = Instant::now();
                let (status, answer) = conn
                    .call(
                        Method::POST,
                        "/api/v1/namespaces/default/pods",
                        "application/json",
                        Bytes::from(body),
                    )
                    .await?;
                anyhow::ensure!(
                    status == StatusCode::CREATED,
                    "create answered {status}: {}",
                    String::from_utf8_lossy(&answer)
                );
                sent.push((i, t));
            }
            anyhow::Ok(sent)
        }));
    }
    let now = Instant::now();
    let mut times = vec![now; count];
    for t in tasks {
        for (i, at) in t.await?? {
            times[i] = at;
        }
    }
    Ok(times)
}

/// Reports a pod start-up scenario's figures (pods running, p50, p99 of `latencies`), then
/// deletes the pods of `default` and waits up to `wait` for them to go.
pub async fn report_and_delete(
    scenario: &str,
    latencies: &[Duration],
    client: &kube::Client,
    wait: Duration,
) -> anyhow::Result<()> {
    report(scenario, "pods_running", latencies.len() as f64, "pods");
    report(
        scenario,
        "startup_p50",
        percentile_ms(latencies, 50.0),
        "ms",
    );
    report(
        scenario,
        "startup_p99",
        percentile_ms(latencies, 99.0),
        "ms",
    );
    for (operation, count, mean) in cri_operations(&telemetry::encode()) {
        report(scenario, &format!("cri_{operation}_count"), count, "calls");
        report(scenario, &format!("cri_{operation}_mean"), mean, "ms");
    }
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    api.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline && !api.list(&ListParams::default()).await?.items.is_empty() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// The node agent's CRI calls so far, from `kubelet_runtime_operations_duration_seconds` in
/// `metrics` (the OpenMetrics text): (operation, calls, mean in ms), by operation, so a start-up
/// figure comes with where the runtime's share of it went.
fn cri_operations(metrics: &str) -> Vec<(String, f64, f64)> {
    const FAMILY: &str = "kubelet_runtime_operations_duration_seconds";
    let mut sums: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix(FAMILY) else {
            continue;
        };
        let (is_sum, rest) = match (rest.strip_prefix("_sum{"), rest.strip_prefix("_count{")) {
            (Some(r), _) => (true, r),
            (_, Some(r)) => (false, r),
            _ => continue,
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let Some(op) = labels
            .strip_prefix("operation_type=\"")
            .and_then(|l| l.strip_suffix('"'))
        else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let entry = sums.entry(op.to_string()).or_default();
        if is_sum {
            entry.0 = value;
        } else {
            entry.1 = value;
        }
    }
    sums.into_iter()
        .filter(|(_, (_, count))| *count > 0.0)
        .map(|(op, (sum, count))| (op, count, sum / count * 1000.0))
        .collect()
}

/// Lists nodes and pods and counts the nodes whose bound pods request more CPU, memory or pods
/// than the node offers. Returns (over-committed nodes, bound pods).
pub async fn overcommitted(client: &kube::Client) -> anyhow::Result<(usize, usize)> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    let pods = Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    let mut used: HashMap<String, Resources> = HashMap::new();
    let mut bound = 0;
    for p in &pods.items {
        let Some(spec) = &p.spec else { continue };
        let Some(node) = spec.node_name.clone().filter(|n| !n.is_empty()) else {
            continue;
        };
        bound += 1;
        used.entry(node)
            .or_default()
            .add(&PodRequests::of(spec).requests);
    }
    let mut over = 0;
    for n in &nodes.items {
        let name = n.metadata.name.clone().unwrap_or_default();
        let Some(alloc) = n
            .status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref())
            .map(Resources::from_map)
        else {
            continue;
        };
        if let Some(u) = used.get(&name)
            && (u.milli_cpu > alloc.milli_cpu || u.memory > alloc.memory || u.pods > alloc.pods)
        {
            over += 1;
        }
    }
    Ok((over, bound))
}

/// A watch of every pod that notes when each is first seen Running.
pub struct RunningWatch {
    observer: tokio::task::JoinHandle<HashMap<String, Instant>>,
}

impl RunningWatch {
    /// Starts the watch and returns once its initial list is done, so nothing created after
    /// this is missed; it ends when `count` pods were seen Running.
    pub async fn start(client: kube::Client, count: usize) -> anyhow::Result<Self> {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
        let observer = tokio::spawn(async move {
            let stream =
                watcher(Api::<Pod>::all(client), watcher::Config::default()).default_backoff();
            tokio::pin!(stream);
            let mut ready_tx = Some(ready_tx);
            let mut running: HashMap<String, Instant> = HashMap::new();
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(watcher::Event::InitDone) => {
                        if let Some(tx) = ready_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => {
                        let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                        if phase == Some("Running") {
                            running
                                .entry(p.metadata.name.clone().unwrap_or_default())
                                .or_insert_with(Instant::now);
                            if running.len() >= count {
                                return running;
                            }
                        }
                    }
                    _ => {}
                }
            }
            running
        });
        ready_rx.await?;
        Ok(RunningWatch { observer })
    }

    /// Waits (at most `limit`) until every pod is Running; returns the sorted latencies from
    /// each `pod-<i>`'s creation (`sent[i]`) to Running.
    pub async fn latencies(
        self,
        sent: &[Instant],
        limit: Duration,
    ) -> anyhow::Result<Vec<Duration>> {
        let running = tokio::time::timeout(limit, self.observer)
            .await
            .map_err(|_| {
                anyhow::anyhow!("not every pod was Running within {} s", limit.as_secs())
            })??;
        let mut latencies: Vec<Duration> = running
            .iter()
            .filter_map(|(name, at)| {
                let i: usize = name.strip_prefix("pod-")?.parse().ok()?;
                Some(at.saturating_duration_since(*sent.get(i)?))
            })
            .collect();
        latencies.sort();
        Ok(latencies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_calls_are_summed_from_the_runtime_operations_histogram() {
        let text = "kubelet_runtime_operations_duration_seconds_sum{operation_type=\"run_pod_sandbox\"} 0.5\n\
                    kubelet_runtime_operations_duration_seconds_count{operation_type=\"run_pod_sandbox\"} 10\n\
                    kubelet_runtime_operations_duration_seconds_bucket{le=\"0.005\",operation_type=\"run_pod_sandbox\"} 1\n\
                    kubelet_runtime_operations_duration_seconds_sum{operation_type=\"version\"} 0.0\n\
                    kubelet_runtime_operations_duration_seconds_count{operation_type=\"version\"} 0\n";
        assert_eq!(
            cri_operations(text),
            vec![("run_pod_sandbox".to_string(), 10.0, 50.0)]
        );
    }
}
