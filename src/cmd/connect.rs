//! What the client subcommands share: the `--kubeconfig` flag and a kube client built from it
//! (or from the address of a server in this process).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;

/// Flags of every subcommand that talks to an API server.
#[derive(clap::Args, Clone, Debug)]
pub struct ClientArgs {
    /// The kubeconfig to connect with (the one `gitplane up` writes in its data dir).
    #[arg(long, default_value = ".gitplane/kubeconfig")]
    pub kubeconfig: PathBuf,
}

impl ClientArgs {
    /// A client for the kubeconfig's current context.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        let config = self.config().await?;
        kube::Client::try_from(config).context("cannot build an API client")
    }

    /// The client configuration of the kubeconfig's current context.
    pub async fn config(&self) -> anyhow::Result<kube::Config> {
        let path = &self.kubeconfig;
        let kubeconfig = kube::config::Kubeconfig::read_from(path).with_context(|| {
            format!(
                "cannot read the kubeconfig {} (start gitplane up, or pass --kubeconfig)",
                path.display()
            )
        })?;
        kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .with_context(|| format!("{}: unusable kubeconfig", path.display()))
    }
}

/// `config` with the User-Agent of `component`, in Kubernetes' shape
/// (`gitplane/<version> (<os>/<arch>) <component>`).
pub fn named(mut config: kube::Config, component: &str) -> anyhow::Result<kube::Config> {
    let agent = format!(
        "gitplane/{} ({}/{}) {component}",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH
    );
    let value = agent
        .parse()
        .with_context(|| format!("component name {component:?}"))?;
    config.headers.push((hyper::header::USER_AGENT, value));
    Ok(config)
}

/// A client for a server in this process, over loopback HTTP.
pub fn local_client(addr: SocketAddr) -> anyhow::Result<kube::Client> {
    let url = format!("http://{addr}").parse().context("server address")?;
    kube::Client::try_from(kube::Config::new(url)).context("cannot build an API client")
}

/// Clients for the components `gitplane up` runs in-process, one identity per component
/// (the syncer, the scheduler, the controllers, the node agent, ...).
#[derive(Clone, Debug)]
pub struct Components {
    addr: SocketAddr,
}

impl Components {
    /// Components of the server listening on `addr` in this process.
    pub fn local(addr: SocketAddr) -> Self {
        Self { addr }
    }

    /// A client for the component `name` (for example `scheduler`), which names itself `name`
    /// in its User-Agent.
    pub fn client(&self, name: &str) -> anyhow::Result<kube::Client> {
        let url = format!("http://{}", self.addr)
            .parse()
            .context("server address")?;
        let config = named(kube::Config::new(url), name)?;
        kube::Client::try_from(config).with_context(|| format!("client for the {name}"))
    }
}

/// A name for this process in leases and events: host name and process id.
pub fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gitplane".into());
    format!("{host}_{}", std::process::id())
}
