//! `gitplane runtime`: the process runtime alone, serving the runtime API on a unix socket for
//! `gitplane node` (containers are host processes; see `node::runtime::process`). On SIGTERM or
//! Ctrl-C it stops every container and removes every sandbox; killed, its containers die with it
//! (each runs under `gitplane shim`).

use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use anyhow::Context;
use node::runtime::{self, NetworkMode, network, process::ProcessRuntime};

use super::server;

/// How pods are networked.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodNetwork {
    /// A network namespace per pod when running as root with `ip` available, else host.
    Auto,
    /// Pods share the host's network.
    Host,
    /// A network namespace per pod on a bridge (needs root and `ip`).
    Bridge,
}

/// Pod network flags (shared with `gitplane up`).
#[derive(clap::Args, Clone, Debug)]
pub struct NetworkArgs {
    /// Pod networking.
    #[arg(long, value_enum, default_value_t = PodNetwork::Auto)]
    pub pod_network: PodNetwork,
    /// The node's pod CIDR (an IPv4 /24; default: the first 10.88.N.0/24 that no other
    /// gitplane runtime holds). Its bridge is `gpbrN`.
    #[arg(long)]
    pub pod_cidr: Option<String>,
}

impl NetworkArgs {
    /// The network mode to run with; `seed` picks where the search for a free /24 starts.
    pub fn mode(&self, seed: &str) -> anyhow::Result<NetworkMode> {
        let bridge = match self.pod_network {
            PodNetwork::Host => false,
            PodNetwork::Bridge => {
                anyhow::ensure!(
                    network::available(),
                    "--pod-network bridge needs root and the `ip` command"
                );
                true
            }
            PodNetwork::Auto => network::available(),
        };
        if !bridge {
            return Ok(NetworkMode::Host);
        }
        Ok(NetworkMode::Bridge {
            cidr: self.pod_cidr.clone(),
            seed: seed.to_string(),
        })
    }
}

/// Flags of a containerd that gitplane starts (`gitplane up --runtime containerd`).
#[derive(clap::Args, Clone, Debug)]
pub struct ContainerdArgs {
    /// The pod sandbox (pause) image of containerd's CRI plugin. Without network access, build
    /// one with scripts/build-test-image.sh and push it to a local registry.
    #[arg(long, default_value = "registry.k8s.io/pause:3.9")]
    pub sandbox_image: String,
    /// A registry (`host:port`) containerd pulls from over plain HTTP (repeatable).
    #[arg(long)]
    pub insecure_registry: Vec<String>,
    #[command(flatten)]
    pub image_gc: super::node::ImageGcArgs,
}

impl ContainerdArgs {
    /// The configuration of a containerd under `dir` for pods in `pod_cidr` (default: a
    /// 10.89.N.0/24 derived from `dir`).
    pub fn config(
        &self,
        dir: &Path,
        pod_cidr: Option<&str>,
    ) -> anyhow::Result<runtime::containerd::Config> {
        let pod_cidr = match pod_cidr {
            Some(c) => {
                network::parse_cidr(c)?;
                c.to_string()
            }
            None => {
                let n = dir
                    .to_string_lossy()
                    .bytes()
                    .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32))
                    % 250
                    + 1;
                format!("10.89.{n}.0/24")
            }
        };
        Ok(runtime::containerd::Config {
            dir: dir.to_path_buf(),
            pod_cidr,
            sandbox_image: self.sandbox_image.clone(),
            insecure_registries: self.insecure_registry.clone(),
        })
    }
}

/// Flags of `gitplane runtime`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The unix socket to serve the runtime API on.
    #[arg(long, default_value = ".gitplane/runtime.sock")]
    pub socket: PathBuf,
    /// Directory of the pod sandboxes.
    #[arg(long, default_value = ".gitplane/runtime")]
    pub root: PathBuf,
    #[command(flatten)]
    pub network: NetworkArgs,
    /// Seconds containers get to stop when the runtime shuts down.
    #[arg(long, default_value_t = 10)]
    pub shutdown_grace: u64,
}

/// Starts a process runtime serving on `socket`; returns it and its server task.
pub fn start(
    socket: &Path,
    root: &Path,
    mode: NetworkMode,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(ProcessRuntime, tokio::task::JoinHandle<()>)> {
    let mut config = runtime::Config::new(root);
    config.network = mode;
    // Containers start through this binary's `shim`, so they die with this process.
    config.shim = Some(std::env::current_exe().context("finding the gitplane binary")?);
    let rt = ProcessRuntime::new(config).context("starting the process runtime")?;
    let (serving, socket) = (rt.clone(), socket.to_path_buf());
    let task = tokio::spawn(async move {
        if let Err(e) = runtime::serve(serving, &socket, stop).await {
            tracing::error!(error = %e, "runtime server failed");
        }
    });
    Ok((rt, task))
}

/// Runs until Ctrl-C or SIGTERM.
pub fn run(args: Args) -> anyhow::Result<u8> {
    server::init_logging();
    server::block_on(async move {
        let mode = args.network.mode(&args.root.to_string_lossy())?;
        let stop = CancellationToken::new();
        let (rt, task) = start(
            &args.socket,
            &args.root,
            mode.clone(),
            stop.clone().cancelled_owned(),
        )?;
        eprintln!(
            "gitplane runtime serving on {} ({})",
            args.socket.display(),
            match rt.pod_cidr() {
                None => "pods on the host network".to_string(),
                Some(cidr) => format!("pod CIDR {cidr}"),
            }
        );
        server::shutdown_signal().await;
        rt.shutdown(Duration::from_secs(args.shutdown_grace)).await;
        stop.cancel();
        let _ = task.await;
        Ok(0)
    })?
}
