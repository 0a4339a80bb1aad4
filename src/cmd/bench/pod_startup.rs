//! `pod-startup`: 1,000 pods created at once on 100 simulated nodes (start-up latency 0),
//! scheduler and nodes already running. Figure: creation (request sent) → Running as seen by a
//! watch, p50 and p99, plus the over-commit check.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use node::simulated::{self, SimulatedNodes};
use reconciler::leader::Leadership;
use reconciler::scheduler;

use super::client::BenchServer;
use super::{percentile_ms, pods, report};

/// Runs the scenario.
pub async fn run(nodes: usize, count: usize, clients: usize) -> anyhow::Result<()> {
    let server = BenchServer::start().await?;
    let client = crate::cmd::connect::local_client(server.addr)?;
    let sim = SimulatedNodes::start(
        client.clone(),
        simulated::Config {
            count: nodes,
            concurrency: 256,
            ..simulated::Config::default()
        },
    )
    .await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sched = tokio::spawn(scheduler::run(
        client.clone(),
        scheduler::Config::default(),
        Leadership::always(),
        async move {
            let _ = stop_rx.await;
        },
    ));
    // Watch for Running before creating anything.
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
    let sent = pods::create(server.addr, count, clients, "100m", "128Mi").await?;
    let running = tokio::time::timeout(Duration::from_secs(300), observer)
        .await
        .map_err(|_| anyhow::anyhow!("not every pod was Running within 300 s"))??;
    let mut latencies: Vec<Duration> = running
        .iter()
        .filter_map(|(name, at)| {
            let i: usize = name.strip_prefix("pod-")?.parse().ok()?;
            Some(at.saturating_duration_since(*sent.get(i)?))
        })
        .collect();
    latencies.sort();
    report("pod-startup", "nodes", nodes as f64, "nodes");
    report(
        "pod-startup",
        "pods_running",
        latencies.len() as f64,
        "pods",
    );
    report(
        "pod-startup",
        "startup_p50",
        percentile_ms(&latencies, 50.0),
        "ms",
    );
    report(
        "pod-startup",
        "startup_p99",
        percentile_ms(&latencies, 99.0),
        "ms",
    );
    let _ = stop_tx.send(());
    sched.await??;
    let (over, _) = pods::overcommitted(&client).await?;
    report("pod-startup", "overcommitted_nodes", over as f64, "nodes");
    sim.shutdown().await;
    anyhow::ensure!(over == 0, "{over} node(s) are over-committed");
    Ok(())
}
