//! What `up` and `apiserver` share: the flags, opening the store, serving until a signal.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use apiserver::storage::Store;
use apiserver::storage::embedded::{EmbeddedConfig, EmbeddedStore};
use apiserver::storage::encrypted::{self, EncryptedStore, EncryptionConfig};
use apiserver::storage::etcd::{EtcdConfig, EtcdStore};
use apiserver::storage::instrumented::Instrumented;
use apiserver::{ApiServer, Config};

/// Flags of every command that runs the API server.
#[derive(clap::Args, Clone, Debug)]
pub struct ServerArgs {
    /// Directory for the store, the kubeconfig and everything else gitplane keeps.
    #[arg(long, default_value = ".gitplane")]
    pub data_dir: PathBuf,
    /// Address the API server listens on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// Where objects are stored: `embedded` (a file in the data dir) or
    /// `etcd://HOST:PORT[,HOST:PORT...]` (an etcd cluster, which several API servers can share).
    #[arg(long, default_value = "embedded", value_parser = parse_store)]
    pub store: StoreKind,
    /// Seconds between compactions of etcd's history (etcd store only; 0 never compacts). The
    /// API servers sharing a cluster compact once per interval between them.
    #[arg(long, default_value_t = 300)]
    pub etcd_compaction_interval: u64,
    /// An `apiserver.config.k8s.io/v1` EncryptionConfiguration file: the resources (Secrets)
    /// to encrypt at rest and their AES-GCM keys (the first encrypts, all decrypt).
    #[arg(long)]
    pub encryption_provider_config: Option<PathBuf>,
    /// The range Services get their cluster IPs from.
    #[arg(long, default_value = "10.96.0.0/12")]
    pub service_cluster_ip_range: apiserver::allocator::Ipv4Cidr,
    /// The range of node ports (Services of type NodePort and LoadBalancer).
    #[arg(long, default_value = "30000-32767", value_parser = parse_port_range)]
    pub service_node_port_range: std::ops::RangeInclusive<u16>,
    #[command(flatten)]
    pub security: super::security::SecurityArgs,
}

fn parse_port_range(value: &str) -> Result<std::ops::RangeInclusive<u16>, String> {
    apiserver::allocator::parse_port_range(value).map_err(|e| e.to_string())
}

/// The storage backend chosen with `--store`.
#[derive(Clone, Debug)]
pub enum StoreKind {
    /// The embedded store in the data dir.
    Embedded,
    /// An etcd cluster.
    Etcd(EtcdConfig),
}

fn parse_store(value: &str) -> Result<StoreKind, String> {
    if value == "embedded" {
        return Ok(StoreKind::Embedded);
    }
    if value.starts_with("etcd://") {
        return EtcdConfig::from_url(value)
            .map(StoreKind::Etcd)
            .map_err(|e| e.to_string());
    }
    Err(format!(
        "unknown store {value:?}: expected `embedded` or etcd://HOST:PORT[,HOST:PORT...]"
    ))
}

/// Opens the store that `args` name, encrypting what `--encryption-provider-config` says.
pub async fn open_store(args: &ServerArgs) -> anyhow::Result<Arc<dyn Store>> {
    let store = open_backend(args).await?;
    match &args.encryption_provider_config {
        None => Ok(store),
        Some(path) => {
            let config = EncryptionConfig::load(path)?;
            tracing::info!(providers = %encrypted::describe(&config), "encryption at rest");
            Ok(Arc::new(EncryptedStore::new(store, config)))
        }
    }
}

async fn open_backend(args: &ServerArgs) -> anyhow::Result<Arc<dyn Store>> {
    match &args.store {
        StoreKind::Embedded => {
            let path = args.data_dir.join("store.redb");
            let store = EmbeddedStore::open(EmbeddedConfig::new(&path))
                .with_context(|| format!("cannot open the store {}", path.display()))?;
            Ok(Arc::new(Instrumented::new(Arc::new(store), "embedded")))
        }
        StoreKind::Etcd(config) => {
            let config = EtcdConfig {
                compaction_interval: (args.etcd_compaction_interval > 0)
                    .then(|| Duration::from_secs(args.etcd_compaction_interval)),
                ..config.clone()
            };
            let endpoints = config.endpoints.join(",");
            let store = EtcdStore::connect(config)
                .await
                .with_context(|| format!("cannot use etcd at {endpoints}"))?;
            Ok(Arc::new(Instrumented::new(Arc::new(store), "etcd")))
        }
    }
}

fn create_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data dir {}", dir.display()))
}

/// Sets up logging once: `RUST_LOG` or `info`.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs `component` until it ends or Ctrl-C or SIGTERM cancels its stop token (then waits for
/// it to stop).
pub async fn until_signal<F, Fut>(component: F) -> anyhow::Result<()>
where
    F: FnOnce(tokio_util::sync::CancellationToken) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let stop = tokio_util::sync::CancellationToken::new();
    let run = component(stop.clone());
    tokio::pin!(run);
    tokio::select! {
        r = &mut run => r,
        _ = shutdown_signal() => {
            stop.cancel();
            run.await
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Opens the store (`--store`) and starts the API server on it.
pub async fn start(args: &ServerArgs) -> anyhow::Result<ApiServer> {
    create_dir(&args.data_dir)?;
    let prepared = args.security.prepare(&args.data_dir, args.listen)?;
    let store = open_store(args).await?;
    let mut config = Config::new(args.listen, prepared.security);
    config.tls = Some(prepared.tls);
    config.services = apiserver::allocator::ServiceRanges {
        cluster_ips: args.service_cluster_ip_range,
        node_ports: args.service_node_port_range.clone(),
    };
    let server = ApiServer::start(config, store).await?;
    let kubeconfig = args.data_dir.join("kubeconfig");
    crate::kubeconfig::write(&kubeconfig, server.local_addr(), &prepared.admin)
        .with_context(|| format!("cannot write {}", kubeconfig.display()))?;
    tracing::info!(
        address = %server.local_addr(),
        kubeconfig = %kubeconfig.display(),
        "API server ready"
    );
    Ok(server)
}

/// Runs a future on a new multi-threaded runtime.
pub fn block_on<F: std::future::Future>(f: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let out = rt.block_on(f);
    // Dropping the runtime would wait without end for blocking tasks (a file or DNS call
    // stuck on a dead peer): a stop is bounded.
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    Ok(out)
}
