//! A `gitplane up` child process on a fresh data dir, for the scenarios that measure the whole
//! platform (`memory`, `gitops-rollout`): started from this executable, stopped with SIGTERM
//! (so that its local node stops its pods' processes) when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::cmd::connect::ClientArgs;

/// A running `gitplane up`; its data dir (with `up.log`, its standard error) lives in a temporary
/// directory that goes with it.
pub struct Up {
    child: Child,
    dir: tempfile::TempDir,
    data: PathBuf,
    kubeconfig: PathBuf,
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
    /// Starts `gitplane up --listen 127.0.0.1:0 --data-dir <temp>` with `extra` flags, and waits
    /// until it has written its kubeconfig.
    pub fn start(extra: &[&str]) -> anyhow::Result<Up> {
        let dir = tempfile::tempdir().context("temp dir")?;
        let data = dir.path().join("data");
        let kubeconfig = data.join("kubeconfig");
        let log = std::fs::File::create(dir.path().join("up.log")).context("up.log")?;
        let mut child = Command::new(std::env::current_exe().context("own executable")?)
            .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            // The ingress controller on free ports: benchmarks do not use it.
            .args([
                "--ingress-listen=127.0.0.1:0",
                "--ingress-tls-listen=127.0.0.1:0",
            ])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting gitplane up")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !kubeconfig.exists() {
            if Instant::now() > deadline || matches!(child.try_wait(), Ok(Some(_))) {
                let _ = child.kill();
                let log = std::fs::read_to_string(dir.path().join("up.log")).unwrap_or_default();
                anyhow::bail!("gitplane up did not start in 60 s:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Up {
            child,
            dir,
            data,
            kubeconfig,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its data dir (the playground repository is `repo/` in it).
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The kubeconfig it wrote.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The last `lines` lines of its standard error, for a failure message.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("up.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(lines).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// A client with its kubeconfig, once the API server answers (within 30 s).
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        let client = ClientArgs {
            kubeconfig: self.kubeconfig.clone(),
        }
        .client()
        .await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while client.apiserver_version().await.is_err() {
            anyhow::ensure!(Instant::now() < deadline, "server not ready in 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(client)
    }
}
