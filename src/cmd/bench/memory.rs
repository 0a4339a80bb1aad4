//! `memory`: peak RSS of `gitplane up`, idle and with 10,000 objects and 1,000 simulated nodes.
//!
//! Each case runs `gitplane up` as a child process on a fresh data dir (the playground repository
//! is seeded and synced, as for a new user), waits until it is ready and has settled, and reads
//! the kernel's high-water mark of its resident memory (`VmHWM` in `/proc/PID/status`).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};

use super::report;
use super::up_child::Up;

/// Cluster IPs on loopback: the benchmark leaves the host's interfaces alone.
const SERVICE_RANGE: [&str; 2] = ["--service-cluster-ip-range", "127.96.0.0/16"];

fn vm_hwm_mb(status: &Path) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(status).context("reading /proc status")?;
    let kb: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmHWM in /proc status")?;
    Ok(kb / 1024.0)
}

/// Peak resident set size of `up` in MB.
fn peak_mb(up: &Up) -> anyhow::Result<f64> {
    vm_hwm_mb(&Path::new("/proc").join(up.pid().to_string()).join("status"))
}

/// Runs both cases.
pub async fn run(objects: usize, nodes: usize) -> anyhow::Result<()> {
    let idle = Up::start(&SERVICE_RANGE)?;
    // The server answers; the playground is applied in the next seconds.
    idle.client().await?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    report("memory", "idle_peak_rss", peak_mb(&idle)?, "MB");
    drop(idle);

    let nodes_flag = nodes.to_string();
    let mut flags = SERVICE_RANGE.to_vec();
    flags.extend(["--runtime", "simulated", "--nodes", &nodes_flag]);
    let loaded = Up::start(&flags)?;
    let client = loaded.client().await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let payload = "x".repeat(1024);
    let results: Vec<kube::Result<ConfigMap>> = futures::stream::iter(0..objects)
        .map(|i| {
            let api = api.clone();
            let cm: ConfigMap = serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("memory-{i}")},
                "data": {"payload": payload},
            }))
            .unwrap_or_default();
            async move { api.create(&PostParams::default(), &cm).await }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let failed = results.iter().filter(|r| r.is_err()).count();
    anyhow::ensure!(failed == 0, "{failed} of {objects} creates failed");
    tokio::time::sleep(Duration::from_secs(5)).await;
    report("memory", "loaded_peak_rss", peak_mb(&loaded)?, "MB");
    report("memory", "loaded_objects", objects as f64, "objects");
    report("memory", "loaded_nodes", nodes as f64, "nodes");
    Ok(())
}
