//! The node agent (gitplane's kubelet): an API client and a client of the runtime API.
//!
//! [`Agent::start`] registers the Node (`node`), renews its Lease every 10 s (and reports
//! `DiskPressure` when its data dir's file system runs short, `disk`), serves container
//! logs, exec sessions and usage (`stats`: the kubelet's `/stats/summary`) over HTTPS to the
//! API server only (`server`, `logs`) and runs the pods bound to the node (`pods`: one worker per pod,
//! an explicit state machine; `spec` turns a pod spec into runtime requests; `images`;
//! `image_gc`: unused images removed by disk threshold;
//! `probes`; `oom`: OOM kills from the kernel log; `storage`: claimed volumes and the
//! local-path directories of deleted volumes; `network_policy`: NetworkPolicies enforced with
//! nftables (`nftables`) in the network namespaces of the node's pods, when pods have their own).
//!
//! Files: `<data>/pods/<pod uid>/volumes/<volume>` (volume directories) and
//! `<data>/logs/<namespace>_<pod>_<uid>/<container>/<restart count>.log` (logs, as the kubelet
//! lays them out); `<data>/storage/<volume>` (local-path volumes: they outlive pods).

mod disk;
pub mod image_gc;
mod images;
mod logs;
mod network_policy;
mod nftables;
mod node;
mod oom;
mod pods;
mod probes;
pub mod server;
mod spec;
mod stats;
mod storage;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Taint;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::runtime::{Cri, api};

/// Labels the agent puts on sandboxes and containers in the runtime.
pub mod labels {
    /// The pod's uid.
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    /// The pod's name.
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    /// The pod's namespace.
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    /// The container's name.
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";

    /// The labels that pick the runtime's containers named `container` of pod `ns/pod`.
    pub fn of_container(
        ns: &str,
        pod: &str,
        container: &str,
    ) -> std::collections::HashMap<String, String> {
        [
            (POD_NAMESPACE.to_string(), ns.to_string()),
            (POD_NAME.to_string(), pod.to_string()),
            (CONTAINER_NAME.to_string(), container.to_string()),
        ]
        .into()
    }
}

/// How the agent runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// The Node's name.
    pub node_name: String,
    /// The address put in the Node's addresses and pods' `hostIP`; the log server listens on it.
    pub node_ip: String,
    /// CPU capacity (a quantity); default: the host's CPUs.
    pub cpu: Option<String>,
    /// Memory capacity; default: the host's memory.
    pub memory: Option<String>,
    /// Pod capacity.
    pub max_pods: u32,
    /// Extra Node labels.
    pub labels: BTreeMap<String, String>,
    /// Node taints.
    pub taints: Vec<Taint>,
    /// The Node's `spec.podCIDR`, when pods get their own network.
    pub pod_cidr: Option<String>,
    /// Where volumes and logs live.
    pub data_dir: PathBuf,
    /// Port of the agent's HTTPS server (logs, exec; 0: any free port).
    pub port: u16,
    /// The cluster CA (PEM): the agent's server accepts the API server's client certificate
    /// from it and nobody else (without one, it refuses every request).
    pub client_ca: Option<String>,
    /// `leaseDurationSeconds` of the node Lease.
    pub lease_duration: Duration,
    /// How often the Lease is renewed.
    pub renew_interval: Duration,
    /// Image garbage collection.
    pub image_gc: image_gc::Policy,
    /// How often CPU and memory are sampled (CPU rates span at least `stats::RATE_WINDOW`
    /// once a container has been sampled that long).
    pub stats_interval: Duration,
}

impl Config {
    /// Defaults for node `name` with data under `data_dir`.
    pub fn new(name: &str, data_dir: PathBuf) -> Config {
        Config {
            node_name: name.to_string(),
            node_ip: "127.0.0.1".into(),
            cpu: None,
            memory: None,
            max_pods: 110,
            labels: BTreeMap::new(),
            taints: Vec::new(),
            pod_cidr: None,
            data_dir,
            port: 0,
            client_ca: None,
            lease_duration: Duration::from_secs(40),
            renew_interval: Duration::from_secs(10),
            image_gc: image_gc::Policy::default(),
            stats_interval: Duration::from_secs(2),
        }
    }
}

/// Errors of the node agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Registering the Node or its Lease failed.
    #[error("cannot register node {node}: {source}")]
    Register {
        /// The node.
        node: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// The log server could not listen.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The node IP is not an IP address.
    #[error("invalid node IP {0:?}")]
    NodeIp(String),
    /// The agent's TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] server::TlsError),
    /// The container runtime did not answer CRI `Version`.
    #[error("the container runtime does not answer CRI v1: {0}")]
    Runtime(#[source] tonic::Status),
}

/// A running node agent; it stops when shut down or dropped (the pods' processes stay with
/// the runtime).
pub struct Agent {
    stop: CancellationToken,
    tasks: TaskTracker,
    log_addr: SocketAddr,
}

impl Agent {
    /// Starts the log server, registers the Node and starts the Lease and pod tasks.
    pub async fn start(client: kube::Client, cri: Cri, config: Config) -> Result<Agent, Error> {
        let version = cri
            .runtime
            .clone()
            .version(api::VersionRequest {
                version: "v1".into(),
            })
            .await
            .map_err(Error::Runtime)?
            .into_inner();
        let ip: std::net::IpAddr = config
            .node_ip
            .parse()
            .map_err(|_| Error::NodeIp(config.node_ip.clone()))?;
        let tls = server::tls_config(&config.node_ip, config.client_ca.as_deref())?;
        let addr = SocketAddr::new(ip, config.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Listen {
                addr: addr.to_string(),
                source,
            })?;
        let log_addr = listener.local_addr().map_err(|source| Error::Listen {
            addr: addr.to_string(),
            source,
        })?;
        node::register(
            &client,
            &config,
            log_addr.port(),
            &format!("{}://{}", version.runtime_name, version.runtime_version),
        )
        .await?;
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let latest = stats::Latest::default();
        tasks.spawn(stats::run(
            cri.runtime.clone(),
            config.node_name.clone(),
            config.stats_interval,
            latest.clone(),
            stop.clone(),
        ));
        tasks.spawn(server::serve(
            listener,
            tls,
            server::routes(cri.runtime.clone(), config.data_dir.join("logs"))
                .merge(stats::routes(latest)),
            stop.clone(),
        ));
        tasks.spawn(node::heartbeat(
            client.clone(),
            config.clone(),
            stop.clone(),
        ));
        tasks.spawn(storage::sweep(
            client.clone(),
            storage::root(&config.data_dir),
            stop.clone(),
        ));
        tasks.spawn(image_gc::run(
            cri.clone(),
            client.clone(),
            config.node_name.clone(),
            config.image_gc.clone(),
            stop.clone(),
        ));
        if let Some(cidr) = &config.pod_cidr {
            tasks.spawn(network_policy::run(
                client.clone(),
                cri.clone(),
                config.node_name.clone(),
                cidr.clone(),
                stop.clone(),
            ));
        }
        tasks.spawn(pods::run(
            client,
            cri,
            config,
            version.runtime_name,
            stop.clone(),
            tasks.clone(),
        ));
        tasks.close();
        Ok(Agent {
            stop,
            tasks,
            log_addr,
        })
    }

    /// The address of the log server.
    pub fn log_addr(&self) -> SocketAddr {
        self.log_addr
    }

    /// Stops the agent's tasks (the pod workers among them) and waits for them.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.tasks.wait().await;
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
