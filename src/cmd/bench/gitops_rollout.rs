//! `gitops-rollout`: commit → the new version serving everywhere, on the whole platform.
//!
//! `gitplane up` runs as a child process (process runtime, one local node, a temporary data
//! dir) on a repository like the playground's, holding only the hello chart (2 replicas, an
//! HTTP readiness probe every 2 s, a NodePort chosen free) and its namespace. Each of `commits` commits changes
//! hello's `version`; each of `rollbacks` runs `gitplane rollback hello` (a child process, as a
//! user would). The figure per change is the time from the commit (or from starting the
//! rollback) until every answer through the NodePort carries the expected version (10 answers in
//! a row, each on its own connection, so the proxy spreads them over the endpoints) and no pod
//! of another version is Ready. It counts from the first of those 10 answers.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::gitops::git;
use super::up_child::Up;
use super::{percentile_ms, report};

/// Consecutive answers of the expected version that count as "every answer".
const STREAK: usize = 10;
/// How long one change may take before the scenario gives up.
const CHANGE_DEADLINE: Duration = Duration::from_secs(120);

/// A free port in the default node port range (30000-32767) on 127.0.0.1, searched from a
/// point that depends on the process id so that concurrent runs pick different ones.
fn free_node_port() -> anyhow::Result<u16> {
    let start = 30000 + (std::process::id() % 2000) as u16;
    (start..=32767)
        .chain(30000..start)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .context("no free port in 30000-32767 on 127.0.0.1")
}

/// Writes the hello chart and its Application from the playground (`examples-repo/`) into a new
/// repository at `repo`, with `node_port`, and commits it.
fn seed(repo: &Path, node_port: u16) -> anyhow::Result<()> {
    for (path, contents) in crate::cmd::up::examples::FILES {
        if !(path.starts_with("apps/hello/") || *path == "applications/hello.yaml") {
            continue;
        }
        let mut text = String::from_utf8(contents.to_vec()).context("playground file")?;
        if *path == "apps/hello/values.yaml" {
            anyhow::ensure!(
                text.contains("nodePort: 30080") && text.contains("version: \"1.0.0\""),
                "the playground's apps/hello/values.yaml no longer sets nodePort 30080 and version 1.0.0"
            );
            text = text.replace("nodePort: 30080", &format!("nodePort: {node_port}"));
        }
        let file = repo.join(path);
        std::fs::create_dir_all(file.parent().context("file in a directory")?)?;
        std::fs::write(file, text)?;
    }
    // The playground's `platform` app makes hello's namespace; here the root app does.
    std::fs::write(
        repo.join("applications/namespace.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: hello\n",
    )?;
    git(repo, &["init", "-q", "-b", "main"])?;
    git(repo, &["add", "-A"])?;
    git(repo, &["commit", "-q", "-m", "hello 1.0.0"])
}

/// Commits `version` as hello's version.
fn commit_version(repo: &Path, version: &str) -> anyhow::Result<()> {
    let values = repo.join("apps/hello/values.yaml");
    let text = std::fs::read_to_string(&values)?;
    let line = text
        .lines()
        .find(|l| l.starts_with("version: "))
        .context("no version line in values.yaml")?
        .to_string();
    std::fs::write(
        &values,
        text.replace(&line, &format!("version: \"{version}\"")),
    )?;
    git(repo, &["commit", "-q", "-am", &format!("hello {version}")])
}

/// One answer of `GET /version` through the NodePort, on a new connection.
async fn answer(port: u16) -> Option<String> {
    let ask = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream
            .write_all(b"GET /version HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            .await?;
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await?;
        std::io::Result::Ok(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(2), ask)
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8(buf).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let ok = head.split_whitespace().nth(1) == Some("200");
    ok.then(|| body.trim().to_string())
}

/// The `VERSION` a pod's container runs with.
fn version_of(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()?
        .containers
        .first()?
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == "VERSION")?
        .value
        .as_deref()
}

/// Waits until every answer is `want` and no pod of another version is Ready; returns when the
/// first answer of the final streak came.
async fn serving(pods: &Api<Pod>, up: &Up, port: u16, want: &str) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + CHANGE_DEADLINE;
    let (mut streak, mut since) = (0, Instant::now());
    let mut last = None;
    loop {
        let now = Instant::now();
        let got = answer(port).await;
        if got.as_deref() == Some(want) {
            if streak == 0 {
                since = now;
            }
            streak += 1;
        } else {
            streak = 0;
        }
        if streak >= STREAK {
            let list = pods.list(&ListParams::default()).await?;
            let old_ready = list
                .items
                .iter()
                .any(|p| apimachinery::pod::ready(p) && version_of(p) != Some(want));
            if !old_ready {
                return Ok(since);
            }
        }
        last = got.or(last);
        anyhow::ensure!(
            Instant::now() < deadline,
            "version {want} not serving everywhere within {CHANGE_DEADLINE:?} (last answer {last:?}); gitplane up's log:\n{}",
            up.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Prints the p50 and p99 of `samples` as `{name}_p50` and `{name}_p99`.
fn report_percentiles(name: &str, samples: &mut [Duration]) {
    samples.sort();
    for p in [50.0, 99.0] {
        report(
            "gitops-rollout",
            &format!("{name}_p{p}"),
            percentile_ms(samples, p),
            "ms",
        );
    }
}

/// Runs `commits` version commits, then `rollbacks` rollbacks.
pub async fn run(commits: usize, rollbacks: usize) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir().context("temp dir")?;
    let repo = tmp.path().join("repo");
    let port = free_node_port()?;
    seed(&repo, port)?;
    // Cluster IPs on a loopback /16 of its own: the benchmark leaves the host's interfaces
    // alone and does not collide with another run's Services.
    let range = format!("127.{}.0.0/16", 100 + std::process::id() % 100);
    let up = Up::start(&[
        "--runtime",
        "process",
        "--repo",
        &repo.to_string_lossy(),
        "--path",
        "applications",
        "--service-cluster-ip-range",
        &range,
    ])?;
    let client = up.client().await?;
    let pods: Api<Pod> = Api::namespaced(client, "hello");
    let mut served = vec!["1.0.0".to_string()];
    serving(&pods, &up, port, "1.0.0").await?;

    let mut commit_times = Vec::new();
    for n in 1..=commits {
        let version = format!("1.0.{n}");
        commit_version(&repo, &version)?;
        let committed = Instant::now();
        let at = serving(&pods, &up, port, &version).await?;
        commit_times.push(at.saturating_duration_since(committed));
        served.push(version);
    }

    // `gitplane rollback` goes to the revision synced before the current one, so each rollback
    // brings back the version served before the current one.
    let mut rollback_times = Vec::new();
    for _ in 0..rollbacks {
        let want = served[served.len() - 2].clone();
        let started = Instant::now();
        let child = Command::new(std::env::current_exe().context("own executable")?)
            .args(["rollback", "hello", "--timeout", "120", "--kubeconfig"])
            .arg(up.kubeconfig())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting gitplane rollback")?;
        let at = serving(&pods, &up, port, &want).await?;
        rollback_times.push(at.saturating_duration_since(started));
        let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await??;
        anyhow::ensure!(
            out.status.success(),
            "gitplane rollback hello failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        served.push(want);
    }

    report("gitops-rollout", "commits", commits as f64, "commits");
    report_percentiles("commit_to_serving", &mut commit_times);
    report("gitops-rollout", "rollbacks", rollbacks as f64, "rollbacks");
    report_percentiles("rollback_to_serving", &mut rollback_times);
    Ok(())
}
