//! `api-write`: concurrent clients create 1 KiB ConfigMaps through the API on the durable
//! embedded store. Figures: creates per second, latency p50/p99, and writes per fsync (how much
//! group commit shares).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::{Method, StatusCode};

use super::client::{BenchServer, Conn};
use super::{percentile_ms, report};

/// Runs the scenario.
pub async fn run(clients: usize, count: usize) -> anyhow::Result<()> {
    let server = BenchServer::start().await?;
    let before = server.stats().unwrap_or_default();
    let (mut latencies, elapsed) = create_config_maps(server.addr, clients, count).await?;
    let after = server.stats().unwrap_or_default();
    latencies.sort();
    report(
        "api-write",
        "creates_per_second",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        "1/s",
    );
    report(
        "api-write",
        "latency_p50",
        percentile_ms(&latencies, 50.0),
        "ms",
    );
    report(
        "api-write",
        "latency_p99",
        percentile_ms(&latencies, 99.0),
        "ms",
    );
    let commits = (after.commits - before.commits).max(1);
    report(
        "api-write",
        "writes_per_fsync",
        (after.writes - before.writes) as f64 / commits as f64,
        "writes",
    );
    report("api-write", "clients", clients as f64, "clients");
    Ok(())
}

/// The JSON of the `i`th 1 KiB ConfigMap.
pub fn config_map(i: usize) -> String {
    let payload = "x".repeat(1024 - 120);
    format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"cm-{i}"}},"data":{{"payload":"{payload}"}}}}"#
    )
}

/// `clients` connections create `count` ConfigMaps between them, each waiting for its answer
/// before sending the next; returns every create's latency and the wall time.
pub async fn create_config_maps(
    addr: SocketAddr,
    clients: usize,
    count: usize,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients.max(1) {
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await?;
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let t = Instant::now();
                let (status, answer) = conn
                    .call(
                        Method::POST,
                        "/api/v1/namespaces/default/configmaps",
                        "application/json",
                        Bytes::from(config_map(i)),
                    )
                    .await?;
                anyhow::ensure!(
                    status == StatusCode::CREATED,
                    "create answered {status}: {}",
                    String::from_utf8_lossy(&answer)
                );
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies: Vec<Duration> = Vec::with_capacity(count);
    for t in tasks {
        latencies.extend(t.await??);
    }
    Ok((latencies, started.elapsed()))
}
