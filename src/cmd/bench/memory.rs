//! `memory`: peak RSS of `gitplane up`, idle and with 10,000 objects and 1,000 simulated nodes.
//!
//! Each case runs `gitplane up` as a child process on a fresh data dir (the playground repository
//! is seeded and synced, as for a new user), waits until it is ready and has settled, and reads
//! the kernel's high-water mark of its resident memory (`VmHWM` in `/proc/PID/status`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};

use super::report;
use crate::cmd::connect::ClientArgs;

/// A `gitplane up` child process, killed when dropped.
struct Up {
    child: Child,
    _dir: tempfile::TempDir,
    kubeconfig: std::path::PathBuf,
}

impl Drop for Up {
    /// SIGTERM, so that the local node stops its pods' processes; SIGKILL after 30 s.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Up {
    fn start(extra: &[&str]) -> anyhow::Result<Up> {
        let dir = tempfile::tempdir().context("temp dir")?;
        let data = dir.path().join("data");
        let kubeconfig = data.join("kubeconfig");
        let child = Command::new(std::env::current_exe().context("own executable")?)
            .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            // Cluster IPs on loopback: the benchmark leaves the host's interfaces alone.
            .args(["--service-cluster-ip-range", "127.96.0.0/16"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting gitplane up")?;
        let up = Up {
            child,
            _dir: dir,
            kubeconfig,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !up.kubeconfig.exists() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "gitplane up did not start in 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(up)
    }

    /// Peak resident set size in MB.
    fn peak_mb(&self) -> anyhow::Result<f64> {
        vm_hwm_mb(
            &Path::new("/proc")
                .join(self.child.id().to_string())
                .join("status"),
        )
    }

    async fn client(&self) -> anyhow::Result<kube::Client> {
        ClientArgs {
            kubeconfig: self.kubeconfig.clone(),
        }
        .client()
        .await
    }
}

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

/// Waits until the server answers and the playground has been applied for a while.
async fn settle(client: &kube::Client, seconds: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.apiserver_version().await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "server not ready in 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    Ok(())
}

/// Runs both cases.
pub async fn run(objects: usize, nodes: usize) -> anyhow::Result<()> {
    let idle = Up::start(&[])?;
    settle(&idle.client().await?, 10).await?;
    report("memory", "idle_peak_rss", idle.peak_mb()?, "MB");
    drop(idle);

    let nodes_flag = nodes.to_string();
    let loaded = Up::start(&["--runtime", "simulated", "--nodes", &nodes_flag])?;
    let client = loaded.client().await?;
    settle(&client, 5).await?;
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
    report("memory", "loaded_peak_rss", loaded.peak_mb()?, "MB");
    report("memory", "loaded_objects", objects as f64, "objects");
    report("memory", "loaded_nodes", nodes as f64, "nodes");
    Ok(())
}
