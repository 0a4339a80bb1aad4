//! What `up` and `apiserver` share: the flags, opening the store, serving until a signal.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use apiserver::storage::embedded::{EmbeddedConfig, EmbeddedStore};
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

/// Opens the embedded store in the data dir and starts the API server on it.
pub async fn start(args: &ServerArgs) -> anyhow::Result<ApiServer> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
    let path = args.data_dir.join("store.redb");
    let store = EmbeddedStore::open(EmbeddedConfig::new(&path))
        .with_context(|| format!("cannot open the store {}", path.display()))?;
    let server = ApiServer::start(
        Config {
            listen: args.listen,
            cache: Default::default(),
        },
        Arc::new(store),
    )
    .await?;
    let kubeconfig = args.data_dir.join("kubeconfig");
    crate::kubeconfig::write(&kubeconfig, server.local_addr())
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
    Ok(rt.block_on(f))
}
