//! `pod-startup-process`: 50 pods (`sleep 3600`) created at once on one local node running the
//! process runtime and the node agent (pod networking as `gitplane up` would choose it, or
//! `--pod-network host`), with
//! the scheduler running. Figure: creation (request sent) → Running as seen by a watch, p50 and
//! p99. The pods are deleted and the node stopped at the end, so no process is left.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use kube::runtime::{WatchStreamExt, watcher};
use reconciler::leader::Leadership;
use reconciler::scheduler;

use super::client::BenchServer;
use super::{percentile_ms, pods, report};
use crate::cmd::runtime::{NetworkArgs, PodNetwork};

/// Runs the scenario.
pub async fn run(count: usize, clients: usize, pod_network: PodNetwork) -> anyhow::Result<()> {
    let server = BenchServer::start().await?;
    let client = crate::cmd::connect::local_client(server.addr)?;
    let dir = tempfile::tempdir()?;
    let network = NetworkArgs {
        pod_network,
        pod_cidr: None,
    };
    let node =
        crate::cmd::node::start_local(client.clone(), "bench-node", dir.path(), &network).await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sched = tokio::spawn(scheduler::run(
        client.clone(),
        scheduler::Config::default(),
        Leadership::always(),
        async move {
            let _ = stop_rx.await;
        },
    ));
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    let watch_client = client.clone();
    let observer = tokio::spawn(async move {
        let stream =
            watcher(Api::<Pod>::all(watch_client), watcher::Config::default()).default_backoff();
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
    let sent = pods::create_running(
        server.addr,
        count,
        clients.min(count.max(1)),
        "10m",
        "16Mi",
        Some(r#"["sleep","3600"]"#),
    )
    .await?;
    let running = tokio::time::timeout(Duration::from_secs(120), observer)
        .await
        .map_err(|_| anyhow::anyhow!("not every pod was Running within 120 s"))??;
    let mut latencies: Vec<Duration> = running
        .iter()
        .filter_map(|(name, at)| {
            let i: usize = name.strip_prefix("pod-")?.parse().ok()?;
            Some(at.saturating_duration_since(*sent.get(i)?))
        })
        .collect();
    latencies.sort();
    let s = "pod-startup-process";
    report(s, "pods_running", latencies.len() as f64, "pods");
    report(s, "startup_p50", percentile_ms(&latencies, 50.0), "ms");
    report(s, "startup_p99", percentile_ms(&latencies, 99.0), "ms");
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    api.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && !api.list(&ListParams::default()).await?.items.is_empty() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop_tx.send(());
    sched.await??;
    node.shutdown().await;
    Ok(())
}
