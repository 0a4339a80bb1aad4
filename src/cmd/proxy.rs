//! `gitplane proxy`: the service proxy alone (kube-proxy's job for one node) with the built-in
//! ingress controller, an API client.

use std::net::{IpAddr, SocketAddr};

use node::proxy::{ClusterIps, Config, ServiceProxy, ingress};

use super::connect::ClientArgs;
use super::server;

/// How cluster IPs are made reachable (`--proxy-cluster-ips`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterIpMode {
    /// `interface` when running as root, `off` otherwise; `bind` when the service range is on
    /// loopback (127.0.0.0/8).
    Auto,
    /// Do not proxy cluster IPs (node ports only).
    Off,
    /// Bind cluster IPs as they are (for a service range inside 127.0.0.0/8).
    Bind,
    /// Add cluster IPs to the dummy interface `gitplane-svc` (needs root and `ip`).
    Interface,
}

/// Proxy flags, shared with `gitplane up`.
#[derive(clap::Args, Clone, Debug)]
pub struct ProxyArgs {
    /// Addresses node ports listen on (comma-separated): the node's own addresses.
    #[arg(long, default_value = "127.0.0.1", value_delimiter = ',')]
    pub proxy_addresses: Vec<IpAddr>,
    /// How cluster IPs are made reachable.
    #[arg(long, value_enum, default_value_t = ClusterIpMode::Auto)]
    pub proxy_cluster_ips: ClusterIpMode,
    /// Where the built-in ingress controller serves HTTP (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub ingress_listen: SocketAddr,
    /// Where the built-in ingress controller serves HTTPS, with the certificates of the
    /// Ingresses' TLS Secrets chosen by SNI.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub ingress_tls_listen: SocketAddr,
    /// Do not run the built-in ingress controller (IngressClass `gitplane`).
    #[arg(long)]
    pub disable_ingress: bool,
}

/// The name of the dummy interface that holds cluster IPs.
pub const INTERFACE: &str = "gitplane-svc";

impl ProxyArgs {
    /// The proxy configuration; `loopback_range` says whether the service range is in
    /// 127.0.0.0/8 (unknown outside `up`).
    pub fn config(&self, loopback_range: Option<bool>) -> Config {
        let cluster_ips = match self.proxy_cluster_ips {
            ClusterIpMode::Off => ClusterIps::Off,
            ClusterIpMode::Bind => ClusterIps::Bind,
            ClusterIpMode::Interface => ClusterIps::Interface(INTERFACE.into()),
            ClusterIpMode::Auto if loopback_range == Some(true) => ClusterIps::Bind,
            ClusterIpMode::Auto if is_root() => ClusterIps::Interface(INTERFACE.into()),
            ClusterIpMode::Auto => {
                tracing::warn!(
                    "not root: cluster IPs are not proxied (node ports are); run as root, or use a \
                     service range inside 127.0.0.0/8 (--service-cluster-ip-range)"
                );
                ClusterIps::Off
            }
        };
        Config {
            node_addresses: self.proxy_addresses.clone(),
            cluster_ips,
            ingress: (!self.disable_ingress).then_some(ingress::Config {
                http: Some(self.ingress_listen),
                https: Some(self.ingress_tls_listen),
            }),
        }
    }
}

/// Whether this process runs as root (effective uid 0, read from /proc).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Flags of `gitplane proxy`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    proxy: ProxyArgs,
}

/// Runs the proxy until Ctrl-C or SIGTERM.
pub fn run(args: Args) -> anyhow::Result<u8> {
    server::init_logging();
    server::block_on(async move {
        let client = args.client.client().await?;
        let proxy = ServiceProxy::start(client, args.proxy.config(None));
        server::shutdown_signal().await;
        proxy.shutdown().await;
        Ok(0)
    })?
}
