//! The Kubernetes CRI v1 (`runtime.v1` RuntimeService and ImageService, from the `k8s-cri`
//! crate) and gitplane's process runtime that serves it. [`serve`] puts the process runtime on a
//! unix socket; [`connect`] is the client side the node agent uses for any CRI runtime
//! (gitplane's own, or containerd's CRI plugin — see [`containerd`]).

pub mod cgroup;
pub mod containerd;
pub mod logs;
pub mod netlink;
pub mod network;
pub mod process;
pub mod shim;
pub mod timed;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::transport::{Endpoint, Uri};

pub use timed::Timed;

pub use k8s_cri::v1 as api;

/// A client of the CRI RuntimeService.
pub type RuntimeClient = api::runtime_service_client::RuntimeServiceClient<Timed>;
/// A client of the CRI ImageService.
pub type ImageClient = api::image_service_client::ImageServiceClient<Timed>;

/// Both halves of a CRI runtime, on one connection.
#[derive(Clone, Debug)]
pub struct Cri {
    /// Sandboxes, containers, exec.
    pub runtime: RuntimeClient,
    /// Images.
    pub images: ImageClient,
}

/// Stops and removes, with their containers, the pod sandboxes `filter` selects (every sandbox
/// with `None`) for which `remove` says yes; best effort: what the runtime refuses stays.
pub async fn remove_sandboxes(
    runtime: &RuntimeClient,
    filter: Option<api::PodSandboxFilter>,
    remove: impl Fn(&api::PodSandbox) -> bool,
) {
    let mut rt = runtime.clone();
    let Ok(list) = rt
        .list_pod_sandbox(api::ListPodSandboxRequest { filter })
        .await
    else {
        return;
    };
    for sb in list.into_inner().items.into_iter().filter(|sb| remove(sb)) {
        let _ = rt
            .stop_pod_sandbox(api::StopPodSandboxRequest {
                pod_sandbox_id: sb.id.clone(),
            })
            .await;
        let _ = rt
            .remove_pod_sandbox(api::RemovePodSandboxRequest {
                pod_sandbox_id: sb.id,
            })
            .await;
    }
}

/// The socket of a CRI endpoint: `unix:///PATH` or a plain path.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, Error> {
    match endpoint.split_once("://") {
        None => Ok(PathBuf::from(endpoint)),
        Some(("unix", path)) if path.starts_with('/') => Ok(PathBuf::from(path)),
        _ => Err(Error::Invalid(format!(
            "container runtime endpoint {endpoint:?}: expected unix:///PATH"
        ))),
    }
}

/// How pods are networked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetworkMode {
    /// Pods share the host's network.
    Host,
    /// Each pod gets a network namespace with a veth on the runtime's bridge and an address
    /// from the node's pod CIDR.
    Bridge {
        /// The pod CIDR (an IPv4 /24); `None`: the first free 10.88.N.0/24.
        cidr: Option<String>,
        /// Where the search for a free CIDR starts (any string; the data dir, say).
        seed: String,
    },
}

/// Settings of the process runtime.
#[derive(Clone, Debug)]
pub struct Config {
    /// Directory of the sandboxes (`<root>/pods/<sandbox id>`).
    pub root: PathBuf,
    /// Pod networking.
    pub network: NetworkMode,
    /// A log file is rotated when it passes this size.
    pub log_max_size: u64,
    /// Log files kept per container, the current one included.
    pub log_max_files: usize,
    /// A `gitplane` binary whose `shim` subcommand starts each container (see [`shim`]), so
    /// containers die with the runtime; `None`: containers are started directly and outlive
    /// a runtime that is killed.
    pub shim: Option<PathBuf>,
}

impl Config {
    /// Defaults for a runtime rooted at `root`: host network, 10 MiB × 3 log files, no shim.
    pub fn new(root: &Path) -> Config {
        Config {
            root: root.to_path_buf(),
            network: NetworkMode::Host,
            log_max_size: 10 * 1024 * 1024,
            log_max_files: 3,
            shim: None,
        }
    }
}

/// Errors of the runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file system operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// No such sandbox or container.
    #[error("{0} not found")]
    NotFound(String),
    /// A request the runtime cannot carry out as given.
    #[error("{0}")]
    Invalid(String),
    /// A process could not be started.
    #[error("cannot start {0}")]
    Start(String),
    /// Setting up or tearing down pod networking failed.
    #[error("pod network: {0}")]
    Network(String),
    /// A lock was poisoned by a panic.
    #[error("runtime state lock poisoned")]
    Poisoned,
    /// Serving or connecting failed.
    #[error("runtime socket {}: {message}", path.display())]
    Socket {
        /// The socket.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// Serves `runtime` on the unix socket `path` (replacing a stale socket file) until
/// `shutdown` resolves.
pub async fn serve(
    runtime: process::ProcessRuntime,
    path: &Path,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let err = |message: String| Error::Socket {
        path: path.to_path_buf(),
        message,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    }
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path).map_err(|e| err(e.to_string()))?;
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    // The streaming server (exec sessions) lives and stops with the CRI server.
    let streaming = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| err(format!("streaming server: {e}")))?;
    let stop_streams = tokio_util::sync::CancellationToken::new();
    tokio::spawn(
        runtime
            .streams()
            .clone()
            .serve(streaming, stop_streams.clone()),
    );
    let _stop_streams = stop_streams.drop_guard();
    tonic::transport::Server::builder()
        .add_service(api::runtime_service_server::RuntimeServiceServer::new(
            runtime.clone(),
        ))
        .add_service(api::image_service_server::ImageServiceServer::new(runtime))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| err(e.to_string()))
}

/// Connects to the CRI runtime on the unix socket `path`, waiting up to `wait` for it to
/// appear.
pub async fn connect(path: &Path, wait: Duration) -> Result<Cri, Error> {
    let deadline = tokio::time::Instant::now() + wait;
    let socket = path.to_path_buf();
    loop {
        let socket = socket.clone();
        let endpoint = Endpoint::try_from("http://runtime.invalid")
            .map_err(|e| Error::Socket {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?
            .connect_timeout(Duration::from_secs(5));
        let result = endpoint
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let socket = socket.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(socket).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                }
            }))
            .await;
        match result {
            Ok(channel) => {
                return Ok(Cri {
                    runtime: RuntimeClient::new(Timed(channel.clone())),
                    images: ImageClient::new(Timed(channel)),
                });
            }
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(Error::Socket {
                    path: path.to_path_buf(),
                    message: format!("cannot connect: {e}"),
                });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
