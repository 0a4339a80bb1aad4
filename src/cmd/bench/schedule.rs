//! `schedule`: schedule 10,000 pods onto 5,000 simulated nodes (kube-scheduler's
//! SchedulingBasic 5000Nodes_10000Pods shape: 100m CPU / 500Mi pods). The nodes register and
//! the pods are created first; then the scheduler starts and the clock runs until every pod is
//! bound (its initial list of the pods included). The simulated nodes keep running the pods
//! (status writes to Running, Lease renewals) meanwhile, as they would in a cluster.
//! Figures: pods/s, and the number of over-committed nodes afterwards (must be 0).

use std::time::{Duration, Instant};

use apimachinery::lean::Lean;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use node::simulated::{self, SimulatedNodes};
use reconciler::leader::Leadership;
use reconciler::scheduler;

use super::client::BenchServer;
use super::{pods, report};

/// Runs the scenario.
pub async fn run(nodes: usize, count: usize, clients: usize) -> anyhow::Result<()> {
    let server = BenchServer::start().await?;
    let client = crate::cmd::connect::local_client(server.addr)?;
    let t = Instant::now();
    let sim = SimulatedNodes::start(
        client.clone(),
        simulated::Config {
            count: nodes,
            cpu: "4".into(),
            memory: "32Gi".into(),
            pods: 110,
            concurrency: 256,
            ..simulated::Config::default()
        },
    )
    .await?;
    report("schedule", "nodes", nodes as f64, "nodes");
    report(
        "schedule",
        "node_registration",
        t.elapsed().as_secs_f64(),
        "s",
    );
    let t = Instant::now();
    pods::create(server.addr, count, clients, "100m", "500Mi").await?;
    report("schedule", "pod_creation", t.elapsed().as_secs_f64(), "s");

    // Count bindings as the watch sees them.
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Instant>();
    let watch_client = client.clone();
    let counter = tokio::spawn(async move {
        // Decoded as the scheduler decodes them, without managedFields.
        let stream = watcher(
            Api::<Lean<Pod>>::all(watch_client),
            watcher::Config::default(),
        )
        .default_backoff()
        .applied_objects();
        tokio::pin!(stream);
        let mut bound = std::collections::HashSet::new();
        while let Some(Ok(Lean(p))) = stream.next().await {
            if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                bound.insert(p.metadata.name.clone().unwrap_or_default());
                if bound.len() >= count {
                    let _ = done_tx.send(Instant::now());
                    return;
                }
            }
        }
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let cpu_before = super::cpu_seconds();
    let requests_before = super::request_counts();
    let sched = tokio::spawn(scheduler::run(
        client.clone(),
        scheduler::Config::default(),
        Leadership::always(),
        async move {
            let _ = stop_rx.await;
        },
    ));
    let finished = tokio::time::timeout(Duration::from_secs(600), done_rx)
        .await
        .map_err(|_| anyhow::anyhow!("not every pod was bound within 600 s"))??;
    let secs = finished.duration_since(started).as_secs_f64();
    let cpu = super::cpu_seconds() - cpu_before;
    super::report_requests("schedule", &requests_before);
    report("schedule", "pods", count as f64, "pods");
    report("schedule", "scheduling_time", secs, "s");
    report("schedule", "pods_per_second", count as f64 / secs, "1/s");
    // Of the two cores' 2 × scheduling_time: how busy the process was meanwhile.
    report("schedule", "cpu_seconds", cpu, "s");
    let _ = stop_tx.send(());
    sched.await??;
    counter.abort();
    let (over, bound) = pods::overcommitted(&client).await?;
    report("schedule", "bound_pods", bound as f64, "pods");
    report("schedule", "overcommitted_nodes", over as f64, "nodes");
    sim.shutdown().await;
    anyhow::ensure!(over == 0, "{over} node(s) are over-committed");
    anyhow::ensure!(bound == count, "{bound} of {count} pods are bound");
    Ok(())
}
