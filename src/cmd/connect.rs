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

/// A client for a plain-HTTP server in this process (the benchmarks' in-process server),
/// speaking HTTP/2 as `up`'s components do (`multiplexed`).
pub fn local_client(addr: SocketAddr) -> anyhow::Result<kube::Client> {
    let url = format!("http://{addr}").parse().context("server address")?;
    multiplexed(kube::Config::new(url))
}

/// Clients for the components `gitplane up` runs in-process, one identity per component
/// (the syncer, the scheduler, the controllers, the node agent, ...): each gets a client
/// certificate minted from the cluster CA, with the user and groups
/// `apiserver::rbac::bootstrap::component_identity` gives its name (`scheduler` is
/// `system:kube-scheduler`, `gitops-syncer` is `gitplane:syncer`, `node-NAME` is
/// `system:node:NAME` in `system:nodes`), which the bootstrap RBAC roles grant.
#[derive(Clone)]
pub struct Components {
    addr: SocketAddr,
    ca: std::sync::Arc<apiserver::tls::Ca>,
}

impl std::fmt::Debug for Components {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Components")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Components {
    /// Components of the server listening on `addr` in this process, with the cluster CA of
    /// `data_dir`.
    pub fn local(addr: SocketAddr, data_dir: &std::path::Path) -> anyhow::Result<Self> {
        let ca = super::security::cluster_ca(data_dir)?;
        Ok(Self {
            addr,
            ca: std::sync::Arc::new(ca),
        })
    }

    /// The cluster CA's certificate (PEM).
    pub fn ca_pem(&self) -> String {
        self.ca.cert_pem.clone()
    }

    /// A client for the component `name` (for example `scheduler`), with its own identity,
    /// naming itself `name` in its User-Agent.
    pub fn client(&self, name: &str) -> anyhow::Result<kube::Client> {
        let build = || -> anyhow::Result<kube::Client> {
            let (user, groups) = apiserver::rbac::bootstrap::component_identity(name);
            if user == format!("gitplane:{name}") {
                tracing::warn!(
                    component = name,
                    user,
                    "no bootstrap role grants this component anything; add it to \
                     rbac::bootstrap::component_identity and give it a role"
                );
            }
            let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
            let issued = self.ca.issue_client(&user, &groups)?;
            let creds = crate::kubeconfig::Credentials {
                ca_pem: self.ca.cert_pem.clone(),
                cert_pem: issued.cert_pem,
                key_pem: issued.key_pem,
            };
            let text = crate::kubeconfig::render(self.addr, name, &creds);
            let kubeconfig = kube::config::Kubeconfig::from_yaml(&text)?;
            let config = named(kube::Config::try_from(kubeconfig)?, name)?;
            multiplexed(config)
        };
        build().with_context(|| format!("client for the {name}"))
    }
}

impl Components {
    /// A client that authenticates with someone's bearer `token` (the console's Review
    /// endpoint acts as its caller), naming itself `component` in its User-Agent.
    pub fn client_with_token(&self, token: &str, component: &str) -> anyhow::Result<kube::Client> {
        let kubeconfig = crate::kubeconfig::with_token(self.addr, &self.ca.cert_pem, token)?;
        let config = named(kube::Config::try_from(kubeconfig)?, component)?;
        multiplexed(config)
    }
}

/// A client for `config` that sends all its requests, watches included, as streams of one
/// HTTP/2 connection, as client-go does. kube's own client speaks HTTP/1.1 only, so each
/// open watch holds a TLS connection of its own: an idle `up` had 146 of them, each with
/// buffers at both ends in this process (~10 MB of heap; ARCHITECTURE.md, *Memory of an idle
/// `up`*). The stack is kube's (base URI, credentials, User-Agent) minus its HTTP/1.1 read
/// timeout, which would end an idle connection that carries watches.
fn multiplexed(config: kube::Config) -> anyhow::Result<kube::Client> {
    use kube::client::ConfigExt;
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    if config.cluster_url.scheme_str() == Some("http") {
        // HTTP/2 without TLS, by prior knowledge (the server takes either).
        return over(config, http);
    }
    // ALPN `h2` is set by `enable_http2`.
    let tls = config.rustls_client_config()?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http2()
        .wrap_connector(http);
    over(config, https)
}

/// [`multiplexed`]'s client over `connector`.
fn over<C>(config: kube::Config, connector: C) -> anyhow::Result<kube::Client>
where
    C: tower::Service<hyper::Uri> + Clone + Send + Sync + 'static,
    C::Response: hyper_util::client::legacy::connect::Connection
        + hyper::rt::Read
        + hyper::rt::Write
        + Send
        + Unpin
        + 'static,
    C::Future: Send + Unpin + 'static,
    C::Error: Into<tower::BoxError>,
{
    use kube::client::ConfigExt;
    // Go's HTTP/2 client windows (client-go's transport): 4 MiB per stream, 1 GiB for the
    // connection. Data a stream's reader has not taken yet counts against both; with hyper's
    // 5 MiB for the connection, a few watches whose controller is busy would stall every other
    // request of the component, which over HTTP/1.1 had connections of their own.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .http2_initial_stream_window_size(4 << 20)
        .http2_initial_connection_window_size(1 << 30)
        .build(connector);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(client);
    Ok(kube::Client::new(service, config.default_namespace))
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
