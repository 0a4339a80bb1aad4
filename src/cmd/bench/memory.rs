//! `memory`: peak RSS of `gitplane up`, idle (fresh, then after a rollout and a rollback of the
//! playground's hello) and with 10,000 objects and 1,000 simulated nodes.
//!
//! Each case runs `gitplane up` as a child process on a fresh data dir (the playground repository
//! is seeded and synced, as for a new user), waits until it is ready and has settled, and reads
//! the kernel's high-water mark of its resident memory (`VmHWM` in `/proc/PID/status`) and its
//! resident memory at that moment (`VmRSS`). The idle case then commits a new version of hello
//! to the playground repository, waits for the rollout, runs `gitplane rollback hello` (as a
//! user would), waits for that rollout, lets it settle and reads both figures again.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};

use super::gitops::git;
use super::report;
use super::up_child::Up;

/// Cluster IPs on loopback: the benchmark leaves the host's interfaces alone.
const SERVICE_RANGE: [&str; 2] = ["--service-cluster-ip-range", "127.96.0.0/16"];

/// How long a rollout of the playground's hello may take before the scenario gives up.
const ROLLOUT_DEADLINE: Duration = Duration::from_secs(120);

/// A field of `/proc/PID/status` given in kB (`VmHWM`, `VmRSS`), in MB.
fn status_mb(status: &Path, field: &str) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(status).context("reading /proc status")?;
    let kb: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no {field} in /proc status"))?;
    Ok(kb / 1024.0)
}

/// Peak resident set size of `up` in MB.
fn peak_mb(up: &Up) -> anyhow::Result<f64> {
    status_mb(&proc_status(up), "VmHWM")
}

/// Resident set size of `up` now, in MB.
fn rss_mb(up: &Up) -> anyhow::Result<f64> {
    status_mb(&proc_status(up), "VmRSS")
}

fn proc_status(up: &Up) -> std::path::PathBuf {
    Path::new("/proc").join(up.pid().to_string()).join("status")
}

/// Whether the Deployment runs `version` everywhere: its template carries it, and every replica
/// is updated and available.
fn rolled_out(deployment: &Deployment, version: &str) -> bool {
    let template_version = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.env.as_ref())
        .and_then(|env| env.iter().find(|e| e.name == "VERSION"))
        .and_then(|e| e.value.as_deref());
    let want = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let generation = deployment.metadata.generation.unwrap_or(0);
    deployment.status.as_ref().is_some_and(|s| {
        s.observed_generation.unwrap_or(0) >= generation
            && s.replicas == Some(want)
            && s.updated_replicas == Some(want)
            && s.available_replicas == Some(want)
    }) && template_version == Some(version)
}

/// Waits until the playground's hello Deployment runs `version` everywhere.
async fn wait_rolled_out(client: &kube::Client, up: &Up, version: &str) -> anyhow::Result<()> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), "hello");
    let deadline = Instant::now() + ROLLOUT_DEADLINE;
    loop {
        if let Some(d) = api.get_opt("hello").await?
            && rolled_out(&d, version)
        {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "hello did not roll out {version} within {ROLLOUT_DEADLINE:?}; gitplane up's log:\n{}",
            up.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Commits hello 1.0.1 to the playground repository, waits for the rollout, rolls back with
/// `gitplane rollback hello` and waits for that rollout.
async fn rollout_and_rollback(up: &Up, client: &kube::Client) -> anyhow::Result<()> {
    wait_rolled_out(client, up, "1.0.0").await?;
    let repo = up.data_dir().join("repo");
    let values = repo.join("apps/hello/values.yaml");
    let text = std::fs::read_to_string(&values).context("the playground's hello values")?;
    anyhow::ensure!(
        text.contains("version: \"1.0.0\""),
        "the playground's apps/hello/values.yaml no longer sets version 1.0.0"
    );
    std::fs::write(
        &values,
        text.replace("version: \"1.0.0\"", "version: \"1.0.1\""),
    )?;
    git(&repo, &["commit", "-q", "-am", "hello 1.0.1"])?;
    wait_rolled_out(client, up, "1.0.1").await?;
    let exe = std::env::current_exe().context("own executable")?;
    let kubeconfig = up.kubeconfig().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(exe)
            .args(["rollback", "hello", "--timeout", "120", "--kubeconfig"])
            .arg(kubeconfig)
            .output()
    })
    .await?
    .context("running gitplane rollback")?;
    anyhow::ensure!(
        out.status.success(),
        "gitplane rollback hello failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    wait_rolled_out(client, up, "1.0.0").await
}

/// Runs both cases.
pub async fn run(objects: usize, nodes: usize) -> anyhow::Result<()> {
    let idle = Up::start(&SERVICE_RANGE)?;
    // The server answers; the playground is applied in the next seconds.
    let client = idle.client().await?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    report("memory", "idle_peak_rss", peak_mb(&idle)?, "MB");
    report("memory", "idle_rss", rss_mb(&idle)?, "MB");
    // What the resident memory is: the heap and stacks (anonymous) and the binary's pages.
    report(
        "memory",
        "idle_rss_anon",
        status_mb(&proc_status(&idle), "RssAnon")?,
        "MB",
    );
    report(
        "memory",
        "idle_rss_file",
        status_mb(&proc_status(&idle), "RssFile")?,
        "MB",
    );
    rollout_and_rollback(&idle, &client).await?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    report("memory", "after_rollback_peak_rss", peak_mb(&idle)?, "MB");
    report("memory", "after_rollback_rss", rss_mb(&idle)?, "MB");
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
