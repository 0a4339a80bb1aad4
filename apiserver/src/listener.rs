//! The listener: plain TCP, or TLS with the handshake done off the accept loop; either way each
//! connection carries a [`PeerInfo`] (address and client certificates) to the handlers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is at the other end of a connection.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// The client's address.
    pub addr: SocketAddr,
    /// The certificate chain the client presented (TLS only), leaf first.
    pub certs: Option<Arc<Vec<CertificateDer<'static>>>>,
}

/// A TLS listener: accepts TCP connections and completes handshakes in their own tasks.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, PeerInfo)>,
}

impl TlsListener {
    /// Serves TLS with `config` on `tcp`.
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> TlsListener {
        let local = tcp
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let (tx, ready) = mpsc::channel(128);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    r = tcp.accept() => r,
                    _ = tx.closed() => return,
                };
                let (stream, addr) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::debug!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let (tx, acceptor) = (tx.clone(), acceptor.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let certs = tls.get_ref().1.peer_certificates().map(|c| {
                                Arc::new(c.iter().map(|c| c.clone().into_owned()).collect())
                            });
                            let _ = tx.send((tls, PeerInfo { addr, certs })).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                    }
                });
            }
        });
        TlsListener { local, ready }
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = PeerInfo;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(PeerInfo {
            addr: self.local,
            certs: None,
        })
    }
}

impl From<SocketAddr> for PeerInfo {
    fn from(addr: SocketAddr) -> Self {
        PeerInfo { addr, certs: None }
    }
}

/// Streams one HTTP/2 connection may have open at once. hyper's default, 200, is less than a
/// client that sends every request over one connection (client-go, and `gitplane up`'s own
/// components) may hold in watches alone: the garbage collector watches every kind, CRDs
/// included, and a request beyond the limit waits until a stream ends. kube-apiserver
/// allows 1,000 (`--http2-max-streams-per-connection`).
pub const MAX_CONCURRENT_STREAMS: u32 = 1000;

/// Serves `app` on `listener` (HTTP/1.1, and HTTP/2 where the client chose it) until `shutdown`
/// completes; then accepts nothing more, asks each open connection to end (HTTP/2: GOAWAY,
/// HTTP/1.1: after its current request) and waits until they have. What `axum::serve` with a
/// graceful shutdown does, with [`MAX_CONCURRENT_STREAMS`], which it does not let one set.
/// Each request carries its connection's [`PeerInfo`] as `ConnectInfo`.
pub async fn serve<L>(
    mut listener: L,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send,
) where
    L: Listener,
    L::Addr: Into<PeerInfo>,
{
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .enable_connect_protocol()
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (io, addr) = tokio::select! {
            conn = listener.accept() => conn,
            () = &mut shutdown => break,
        };
        let peer = axum::extract::ConnectInfo(addr.into());
        let service = tower::Layer::layer(&axum::Extension(peer), app.clone());
        let service = hyper_util::service::TowerToHyperService::new(service);
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::trace!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
