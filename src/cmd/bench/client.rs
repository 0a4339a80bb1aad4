//! The benchmark side of the wire: an in-process server on a store of the scenario's choice
//! (by default a durable embedded store in a temporary directory), and plain HTTP/1.1
//! connections to it.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use apiserver::security::Security;
use apiserver::storage::Store;
use apiserver::storage::embedded::{EmbeddedConfig, EmbeddedStats, EmbeddedStore};
use apiserver::{ApiServer, Config};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A server running in this process.
pub struct BenchServer {
    /// Where it listens.
    pub addr: SocketAddr,
    embedded: Option<Arc<EmbeddedStore>>,
    _dir: Option<tempfile::TempDir>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl BenchServer {
    /// Starts the server on a durable embedded store in a temporary directory.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("temp dir")?;
        let store = Arc::new(EmbeddedStore::open(EmbeddedConfig::new(
            dir.path().join("store.redb"),
        ))?);
        let mut server = Self::start_on(store.clone()).await?;
        server.embedded = Some(store);
        server._dir = Some(dir);
        Ok(server)
    }

    /// Starts the server on `store`.
    pub async fn start_on(store: Arc<dyn Store>) -> anyhow::Result<Self> {
        // Plain HTTP with security disabled, so the figures stay comparable with earlier runs
        // (ARCHITECTURE.md: the benchmarks measure the API, not TLS and RBAC).
        let server = ApiServer::start(
            Config::new(
                SocketAddr::from(([127, 0, 0, 1], 0)),
                Arc::new(Security::disabled()),
            ),
            store,
        )
        .await?;
        let addr = server.local_addr();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.serve(async move {
            let _ = rx.await;
        }));
        Ok(BenchServer {
            addr,
            embedded: None,
            _dir: None,
            stop: Some(tx),
        })
    }

    /// Commit counters of the store, when it is the embedded one.
    pub fn stats(&self) -> Option<EmbeddedStats> {
        self.embedded.as_ref().map(|store| store.stats())
    }
}

impl Drop for BenchServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    /// Connects.
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Conn { sender })
    }

    /// Sends a request and reads the whole answer.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Bytes,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        self.sender.ready().await?;
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .header("content-type", content_type)
            .body(Full::new(body))?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// Starts a request whose answer is streamed (a watch).
    pub async fn stream(mut self, path: &str) -> anyhow::Result<hyper::body::Incoming> {
        self.sender.ready().await?;
        let req = Request::builder()
            .uri(path)
            .header("host", "localhost")
            .body(Full::new(Bytes::new()))?;
        let resp = self.sender.send_request(req).await?;
        anyhow::ensure!(
            resp.status() == StatusCode::OK,
            "watch answered {}",
            resp.status()
        );
        Ok(resp.into_body())
    }
}
