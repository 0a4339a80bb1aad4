//! Starting and stopping the API server.
//!
//! Start-up order (each step gated on the one before, as k3s does): the watch cache loads from
//! storage; the built-in namespaces are created if missing; the registry picks up stored CRDs;
//! the listener binds. Shutdown stops accepting requests, ends open watches, and lets requests
//! in flight finish.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use apimachinery::object::ObjectExt;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::allocator::ServiceRanges;
use crate::crd;
use crate::default_service;
use crate::handlers;
use crate::listener::TlsListener;
use crate::security::Security;
use crate::state::{ApiState, encode};
use crate::storage::{StorageError, Store};
use crate::strategy;
use crate::watch_cache::{self, WatchCache};

/// The namespaces that exist from the start.
pub const BUILTIN_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// API server settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to listen on (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Watch cache limits.
    pub cache: watch_cache::Config,
    /// TLS (HTTPS); `None` serves plain HTTP (the benchmarks' in-process server).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Authentication, authorization, audit and in-flight limits.
    pub security: Arc<Security>,
    /// Cluster IP and node port ranges of Services.
    pub services: ServiceRanges,
}

impl Config {
    /// Plain HTTP on `listen` under `security`, the default cache and Service ranges.
    pub fn new(listen: SocketAddr, security: Arc<Security>) -> Config {
        Config {
            listen,
            cache: Default::default(),
            tls: None,
            security,
            services: Default::default(),
        }
    }
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Storage failed during start-up.
    #[error("storage failed during start-up: {0}")]
    Storage(#[from] StorageError),
    /// The watch cache did not load.
    #[error("the watch cache did not load from storage: {0}")]
    Cache(String),
}

/// A started API server, bound and ready to serve.
pub struct ApiServer {
    state: Arc<ApiState>,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl ApiServer {
    /// Loads the cache, bootstraps, and binds the listener.
    pub async fn start(config: Config, store: Arc<dyn Store>) -> Result<Self, ServerError> {
        let cache = WatchCache::new(config.cache.clone());
        tokio::spawn(watch_cache::run_feeder(cache.clone(), store.clone()));
        let state = ApiState::new(
            store,
            cache,
            config.services.clone(),
            config.security.clone(),
        );
        state
            .sync_cache()
            .await
            .map_err(|e| ServerError::Cache(e.message))?;
        bootstrap_namespaces(&state).await?;
        bootstrap_application_crd(&state).await?;
        crate::admission::storage_class::ensure_local_path(&state).await?;
        crate::admission::ingress_class::ensure_gitplane_class(&state).await?;
        crate::rbac::bootstrap::create(&state)
            .await
            .map_err(|e| ServerError::Cache(e.message))?;
        crd::refresh(&state);
        tokio::spawn(watch_crds(state.clone()));
        tokio::spawn(crate::rbac::aggregate::run(state.clone()));
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let server = ApiServer {
            state,
            listener,
            tls: config.tls,
        };
        default_service::ensure(&server.state, server.local_addr())
            .await
            .map_err(|e| ServerError::Cache(e.message))?;
        Ok(server)
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The shared state (for components running in the same process).
    pub fn state(&self) -> Arc<ApiState> {
        self.state.clone()
    }

    /// Serves until `shutdown` completes, then drains.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        self.serve_with(axum::Router::new(), shutdown).await
    }

    /// Serves the API and, beside it, the web console's assets (`/ui/`) and `extra` routes of
    /// components in the same process (the syncer's push webhook); every other path goes to
    /// the API.
    pub async fn serve_with(
        self,
        extra: axum::Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let state = self.state.clone();
        let api = axum::Router::new()
            .fallback(handlers::dispatch)
            .with_state(self.state.clone());
        let app = extra.merge(crate::console::router()).fallback_service(api);
        let stop = async move {
            shutdown.await;
            state.begin_shutdown();
        };
        match self.tls {
            Some(tls) => {
                crate::listener::serve(TlsListener::new(self.listener, tls), app, stop).await
            }
            None => crate::listener::serve(self.listener, app, stop).await,
        }
        Ok(())
    }
}

async fn bootstrap_namespaces(state: &ApiState) -> Result<(), ServerError> {
    let registry = state.registry();
    let Some(info) = registry.by_resource("", "v1", "namespaces") else {
        return Ok(());
    };
    for name in BUILTIN_NAMESPACES {
        let mut ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        strategy::prepare_create(&info, &mut ns).map_err(|e| ServerError::Cache(e.message))?;
        ns.metadata_mut();
        create_if_missing(state, &info.key(None, name), &ns).await?;
    }
    sync_cache(state).await
}

/// Installs the `Application` and `ApplicationSet` CRDs, so gitplane's own kinds are served from
/// start-up.
async fn bootstrap_application_crd(state: &ApiState) -> Result<(), ServerError> {
    let registry = state.registry();
    let Some(info) =
        registry.by_resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    else {
        return Ok(());
    };
    for mut crd in [
        apimachinery::application::crd(),
        apimachinery::fleet::applicationset_crd(),
    ] {
        let name = crd.name().unwrap_or_default().to_string();
        strategy::prepare_create(&info, &mut crd).map_err(|e| ServerError::Cache(e.message))?;
        create_if_missing(state, &info.key(None, &name), &crd).await?;
    }
    sync_cache(state).await
}

/// Stores `object` under `key` unless something is there already (a bootstrap object written by
/// an earlier start or another server is kept as it is).
async fn create_if_missing(state: &ApiState, key: &str, object: &Value) -> Result<(), ServerError> {
    match state.store().create(key, encode(object)).await {
        Ok(_) | Err(StorageError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Loads what the bootstrap wrote into the watch cache.
async fn sync_cache(state: &ApiState) -> Result<(), ServerError> {
    state
        .sync_cache()
        .await
        .map_err(|e| ServerError::Cache(e.message))?;
    Ok(())
}

/// Keeps the registry in step with CRDs written through any server sharing the storage.
async fn watch_crds(state: Arc<ApiState>) {
    loop {
        let Ok(mut cursor) = state.cache().watch_from(state.cache().revision()) else {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        crd::refresh(&state);
        while let Ok(batch) = cursor.next_batch().await {
            if batch.iter().any(|e| crd::is_crd_key(&e.object.key)) {
                crd::refresh(&state);
            }
        }
    }
}
