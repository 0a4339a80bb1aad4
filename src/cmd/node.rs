//! `gitplane node`: the node agent alone, an API client (from `--kubeconfig`) and a CRI v1
//! client of a runtime on a unix socket (`gitplane runtime`, or containerd). `gitplane up` runs
//! the same agent in-process with its own runtime ([`start_local`]: a process runtime, or a
//! containerd it starts).

use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use anyhow::Context;
use node::agent::{self, Agent};
use node::runtime::containerd::{self, Containerd};
use node::runtime::{self, process::ProcessRuntime};

use super::connect::ClientArgs;
use super::metrics::MetricsArgs;
use super::runtime::{ContainerdArgs, NetworkArgs};
use super::server;

/// Flags of `gitplane node`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    client: ClientArgs,
    /// The Node's name (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// The CRI v1 runtime's endpoint, `unix:///PATH` or a path: `gitplane runtime --socket`,
    /// or containerd's socket (`/run/containerd/containerd.sock`).
    #[arg(
        long,
        alias = "runtime-endpoint",
        default_value = ".gitplane/runtime.sock"
    )]
    container_runtime_endpoint: String,
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
    /// The CA (PEM file) whose `kube-apiserver-kubelet-client` certificate may read logs and
    /// exec (default: the kubeconfig's CA, the cluster CA).
    #[arg(long)]
    client_ca_file: Option<PathBuf>,
    #[command(flatten)]
    image_gc: ImageGcArgs,
    #[command(flatten)]
    metrics: MetricsArgs,
}

/// The kubelet's image garbage collection flags (shared by `node` and `up --runtime
/// containerd`).
#[derive(clap::Args, Clone, Debug)]
pub struct ImageGcArgs {
    /// Percent of the image file system in use at or above which unused images are removed
    /// (100: never).
    #[arg(long, default_value_t = 85)]
    pub image_gc_high_threshold: u8,
    /// Percent of the image file system in use that image garbage collection aims for.
    #[arg(long, default_value_t = 80)]
    pub image_gc_low_threshold: u8,
    /// An unused image is kept at least this long after the agent first saw it.
    #[arg(long, default_value = "2m", value_parser = super::scheduler::parse_duration)]
    pub minimum_image_ttl_duration: Duration,
    /// How often image garbage collection looks (the kubelet's fixed period: 5m).
    #[arg(long, default_value = "5m", value_parser = super::scheduler::parse_duration)]
    pub image_gc_period: Duration,
}

impl ImageGcArgs {
    /// The policy, checked as the kubelet checks its thresholds.
    pub fn policy(&self) -> anyhow::Result<agent::image_gc::Policy> {
        let policy = agent::image_gc::Policy {
            high: self.image_gc_high_threshold,
            low: self.image_gc_low_threshold,
            min_age: self.minimum_image_ttl_duration,
            period: self.image_gc_period,
        };
        policy.check().map_err(anyhow::Error::msg)?;
        Ok(policy)
    }
}

/// The PEM of DER certificates (a kubeconfig's CA as kube reads it).
fn pem_of(ders: &[Vec<u8>]) -> String {
    use base64::Engine;
    let mut pem = String::new();
    for der in ders {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem
}

/// The host name, as a node name (lower case).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gitplane-node".into())
}

/// The runtime of a node run in this process.
#[derive(Clone, Copy, Debug)]
pub enum LocalRuntime<'a> {
    /// gitplane's process runtime.
    Process(&'a NetworkArgs),
    /// A containerd started (or found running) under the node's data dir.
    Containerd(&'a NetworkArgs, &'a ContainerdArgs),
}

enum Running {
    Process {
        runtime: ProcessRuntime,
        stop: CancellationToken,
        server: tokio::task::JoinHandle<()>,
    },
    Containerd(Box<(Containerd, runtime::Cri)>),
}

/// How long a local node's agent may take to stop before its containers are stopped anyway.
pub const AGENT_STOP: Duration = Duration::from_secs(10);

/// A node run in this process: its runtime and its agent.
pub struct LocalNode {
    runtime: Running,
    agent: Agent,
}

impl LocalNode {
    /// Stops the agent (within [`AGENT_STOP`]: an agent whose API calls hang, say on a store
    /// that is gone, is left behind), then every container, then the runtime.
    pub async fn shutdown(self) {
        if tokio::time::timeout(AGENT_STOP, self.agent.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                "the node agent did not stop within {} s; stopping the containers anyway",
                AGENT_STOP.as_secs()
            );
        }
        match self.runtime {
            Running::Process {
                runtime,
                stop,
                server,
            } => {
                runtime.shutdown(Duration::from_secs(10)).await;
                stop.cancel();
                let _ = server.await;
            }
            Running::Containerd(running) => {
                let (containerd, cri) = *running;
                containerd::remove_all(&cri).await;
                containerd.stop(Duration::from_secs(10)).await;
            }
        }
    }
}

/// Starts a runtime and an agent for node `name` with data under `dir`.
pub async fn start_local(
    client: kube::Client,
    client_ca: Option<String>,
    name: &str,
    dir: &Path,
    runtime: LocalRuntime<'_>,
) -> anyhow::Result<LocalNode> {
    std::fs::create_dir_all(dir).with_context(|| format!("node data dir {}", dir.display()))?;
    let dir = std::fs::canonicalize(dir).with_context(|| format!("{}", dir.display()))?;
    let mut config = agent::Config::new(name, dir.clone());
    config.client_ca = client_ca;
    let (running, cri) = match runtime {
        LocalRuntime::Process(network) => {
            let mode = network.mode(&format!("{}{name}", dir.display()))?;
            let socket = dir.join("runtime.sock");
            let stop = CancellationToken::new();
            let (rt, server) = super::runtime::start(
                &socket,
                &dir.join("runtime"),
                mode,
                stop.clone().cancelled_owned(),
            )?;
            let cri = runtime::connect(&socket, Duration::from_secs(10)).await?;
            config.pod_cidr = rt.pod_cidr();
            let running = Running::Process {
                runtime: rt,
                stop,
                server,
            };
            (running, cri)
        }
        LocalRuntime::Containerd(network, args) => {
            let c = args.config(&dir.join("containerd"), network.pod_cidr.as_deref())?;
            config.pod_cidr = Some(c.pod_cidr.clone());
            config.image_gc = args.image_gc.policy()?;
            let (containerd, cri) = Containerd::start(&c, Duration::from_secs(30))
                .await
                .context("starting containerd")?;
            (
                Running::Containerd(Box::new((containerd, cri.clone()))),
                cri,
            )
        }
    };
    let agent = Agent::start(client, cri, config).await?;
    Ok(LocalNode {
        runtime: running,
        agent,
    })
}

/// Runs until Ctrl-C or SIGTERM.
pub fn run(args: Args) -> anyhow::Result<u8> {
    server::init_logging();
    server::block_on(async move {
        let kube_config = args.client.config().await?;
        let client_ca = match &args.client_ca_file {
            Some(f) => std::fs::read_to_string(f)
                .with_context(|| format!("--client-ca-file {}", f.display()))?,
            None => pem_of(kube_config.root_cert.as_deref().unwrap_or_default()),
        };
        let client = kube::Client::try_from(kube_config).context("cannot build an API client")?;
        let socket = runtime::socket_path(&args.container_runtime_endpoint)?;
        let rt = runtime::connect(&socket, Duration::from_secs(10))
            .await
            .context("connecting to the runtime (start `gitplane runtime` or containerd first)")?;
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
        config.client_ca = Some(client_ca).filter(|c| !c.is_empty());
        config.image_gc = args.image_gc.policy()?;
        let agent = Agent::start(client, rt, config).await?;
        eprintln!("node {name} is up (logs on {})", agent.log_addr());
        telemetry::kubelet::metrics();
        args.metrics.serve(server::shutdown_signal()).await?;
        server::shutdown_signal().await;
        agent.shutdown().await;
        Ok(0)
    })?
}
