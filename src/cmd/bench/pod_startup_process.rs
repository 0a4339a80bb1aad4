//! `pod-startup-process`: 50 pods (`sleep 3600`) created at once on one local node running the
//! process runtime and the node agent (pod networking as `gitplane up` would choose it, or
//! `--pod-network host`), with
//! the scheduler running. Figure: creation (request sent) → Running as seen by a watch, p50 and
//! p99. The pods are deleted and the node stopped at the end, so no process is left.

use std::time::Duration;

use reconciler::leader::Leadership;
use reconciler::scheduler;

use super::client::BenchServer;
use super::pods;
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
    let node = crate::cmd::node::start_local(
        client.clone(),
        None,
        "bench-node",
        dir.path(),
        crate::cmd::node::LocalRuntime::Process(&network),
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
    let sent = pods::create_running(
        server.addr,
        count,
        clients.min(count.max(1)),
        "10m",
        "16Mi",
        pods::PAUSE,
        Some(r#"["sleep","3600"]"#),
    )
    .await?;
    let latencies = watch.latencies(&sent, Duration::from_secs(120)).await?;
    pods::report_and_delete(
        "pod-startup-process",
        &latencies,
        &client,
        Duration::from_secs(60),
    )
    .await?;
    let _ = stop_tx.send(());
    sched.await??;
    node.shutdown().await;
    Ok(())
}
