//! `pod-startup`: 1,000 pods created at once on 100 simulated nodes (start-up latency 0),
//! scheduler and nodes already running. Figure: creation (request sent) → Running as seen by a
//! watch, p50 and p99, plus the over-commit check.

use std::time::Duration;

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
    let watch = pods::RunningWatch::start(client.clone(), count).await?;
    let sent = pods::create(server.addr, count, clients, "100m", "128Mi").await?;
    let latencies = watch.latencies(&sent, Duration::from_secs(300)).await?;
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
