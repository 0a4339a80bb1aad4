//! `gitplane node`: the node agent alone, an API client (from `--kubeconfig`) and a client of a
//! runtime on a unix socket (`gitplane runtime`). `gitplane up` runs the same agent in-process
//! with its own runtime ([`start_local`]).

use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use anyhow::Context;
use node::agent::{self, Agent};
use node::runtime::{self, process::ProcessRuntime};

use super::connect::ClientArgs;
use super::runtime::NetworkArgs;
use super::server;

/// Flags of `gitplane node`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    client: ClientArgs,
    /// The Node's name (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// The runtime's socket (`gitplane runtime --socket`).
    #[arg(long, default_value = ".gitplane/runtime.sock")]
    runtime_endpoint: PathBuf,
    /// Directory for pod volumes and container logs.
    #[arg(long, default_value = ".gitplane/node")]
    data_dir: PathBuf,
    /// The node's address (Node addresses, pods' hostIP; the log server listens on it).
    #[arg(long, default_value = "127.0.0.1")]
    node_ip: String,
    /// Port of the log server (`daemonEndpoints.kubeletEndpoint`; 0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// CPU capacity (default: the host's CPUs).
    #[arg(long)]
    cpu: Option<String>,
    /// Memory capacity (default: the host's memory).
    #[arg(long)]
    memory: Option<String>,
    /// Pod capacity.
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
    /// Extra node labels, `k=v,k2=v2`.
    #[arg(long, default_value = "")]
    labels: String,
    /// Node taints, `key[=value]:Effect,…`.
    #[arg(long, default_value = "")]
    taints: String,
    /// The Node's pod CIDR to advertise (the runtime's `--pod-cidr`).
    #[arg(long)]
    pod_cidr: Option<String>,
}

/// The host name, as a node name (lower case).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gitplane-node".into())
}

/// A node run in this process: its runtime and its agent.
pub struct LocalNode {
    runtime: ProcessRuntime,
    agent: Agent,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<()>,
}

impl LocalNode {
    /// Stops the agent, then every container, then the runtime's server.
    pub async fn shutdown(self) {
        self.agent.shutdown().await;
        self.runtime.shutdown(Duration::from_secs(10)).await;
        self.stop.cancel();
        let _ = self.server.await;
    }
}

/// Starts a process runtime and an agent for node `name` with data under `dir`.
pub async fn start_local(
    client: kube::Client,
    name: &str,
    dir: &Path,
    network: &NetworkArgs,
) -> anyhow::Result<LocalNode> {
    std::fs::create_dir_all(dir).with_context(|| format!("node data dir {}", dir.display()))?;
    let dir = std::fs::canonicalize(dir).with_context(|| format!("{}", dir.display()))?;
    let mode = network.mode(&format!("{}{name}", dir.display()))?;
    let socket = dir.join("runtime.sock");
    let stop = CancellationToken::new();
    let (rt, server) = super::runtime::start(
        &socket,
        &dir.join("runtime"),
        mode,
        stop.clone().cancelled_owned(),
    )?;
    let client_rt = runtime::connect(&socket, Duration::from_secs(10)).await?;
    let mut config = agent::Config::new(name, dir.clone());
    config.pod_cidr = rt.pod_cidr();
    let agent = Agent::start(client, client_rt, config).await?;
    Ok(LocalNode {
        runtime: rt,
        agent,
        stop,
        server,
    })
}

/// Runs until Ctrl-C or SIGTERM.
pub fn run(args: Args) -> anyhow::Result<u8> {
    server::init_logging();
    server::block_on(async move {
        let client = args.client.client().await?;
        let rt = runtime::connect(&args.runtime_endpoint, Duration::from_secs(10))
            .await
            .context("connecting to the runtime (start `gitplane runtime` first)")?;
        std::fs::create_dir_all(&args.data_dir)
            .with_context(|| format!("node data dir {}", args.data_dir.display()))?;
        let data_dir = std::fs::canonicalize(&args.data_dir)?;
        let name = args.name.clone().unwrap_or_else(host_name);
        let mut config = agent::Config::new(&name, data_dir);
        config.node_ip = args.node_ip.clone();
        config.port = args.port;
        config.cpu = args.cpu.clone();
        config.memory = args.memory.clone();
        config.max_pods = args.max_pods;
        config.labels = node::simulated::parse_labels(&args.labels)?;
        config.taints = node::simulated::parse_taints(&args.taints)?;
        config.pod_cidr = args.pod_cidr.clone();
        let agent = Agent::start(client, rt, config).await?;
        eprintln!("node {name} is up (logs on {})", agent.log_addr());
        server::shutdown_signal().await;
        agent.shutdown().await;
        Ok(0)
    })?
}
