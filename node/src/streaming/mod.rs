//! Streaming sessions (`kubectl exec`, `cp`, `attach`, `port-forward`), as the kubelet and
//! CRI runtimes serve them: a runtime answers CRI `Exec`, `Attach` or `PortForward` with the
//! URL of a one-time session on its [`Streams`] server (loopback, any port); the node agent
//! proxies the client's upgraded connection there ([`proxy`]), and the API server proxies it
//! to the agent.
//!
//! - [`remotecommand`]: the WebSocket remote-command protocol (`v5`/`v4.channel.k8s.io`).
//! - [`attach`]: the same protocol joined to a running container's standard streams.
//! - `tty`: pseudo-terminals for `exec -t`.
//! - [`portforward`]: port-forward sessions over SPDY/3.1 ([`spdy`], the framing).
//! - [`proxy`]: forwarding an HTTP upgrade (WebSocket, SPDY) to another server, byte for byte.
//!
//! Exec is served over WebSocket only: kubectl ≥ 1.30 speaks it first and falls back to SPDY
//! only when the upgrade is refused.

pub mod attach;
pub mod portforward;
pub mod proxy;
pub mod remotecommand;
pub mod spdy;
mod tty;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use tokio_util::sync::CancellationToken;

pub use attach::{AttachSpec, Console};
pub use portforward::PortForwardSpec;
pub use remotecommand::ExecSpec;

/// How long a session URL stays valid (the CRI streaming server's default).
const TOKEN_TTL: Duration = Duration::from_secs(60);

/// A session waiting for its client.
#[derive(Clone, Debug)]
pub enum Session {
    /// Run a command.
    Exec(ExecSpec),
    /// Join a running container's standard streams.
    Attach(AttachSpec),
    /// Forward connections to a pod's ports.
    PortForward(PortForwardSpec),
}

#[derive(Debug, Default)]
struct Inner {
    pending: Mutex<HashMap<String, (Instant, Session)>>,
    base: OnceLock<String>,
}

/// The sessions of one runtime and the server that serves them.
#[derive(Clone, Debug, Default)]
pub struct Streams {
    inner: Arc<Inner>,
}

impl Streams {
    /// Registers a session; its one-time URL, or `None` while the server is not listening.
    pub fn register(&self, session: Session) -> Option<String> {
        let base = self.inner.base.get()?;
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut pending = self.inner.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.retain(|_, (at, _)| at.elapsed() < TOKEN_TTL);
        let kind = match &session {
            Session::Exec(_) => "exec",
            Session::Attach(_) => "attach",
            Session::PortForward(_) => "portforward",
        };
        pending.insert(token.clone(), (Instant::now(), session));
        Some(format!("{base}/{kind}/{token}"))
    }

    fn take(&self, token: &str) -> Option<Session> {
        let mut pending = self.inner.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending
            .remove(token)
            .filter(|(at, _)| at.elapsed() < TOKEN_TTL)
            .map(|(_, s)| s)
    }

    /// Serves sessions on `listener` until `stop`; session URLs point at it from now on.
    pub fn serve(
        self,
        listener: tokio::net::TcpListener,
        stop: CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        match listener.local_addr() {
            Ok(addr) => {
                let _ = self.inner.base.set(format!("http://{addr}"));
            }
            Err(e) => tracing::warn!(error = %e, "streaming server has no address"),
        }
        let app = Router::new()
            .route("/exec/{token}", any(exec))
            .route("/attach/{token}", any(exec))
            .route("/portforward/{token}", any(port_forward))
            .with_state(self);
        async move {
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
            {
                tracing::warn!(error = %e, "streaming server failed");
            }
        }
    }
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, message.to_string()).into_response()
}

async fn exec(
    State(streams): State<Streams>,
    Path(token): Path<String>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Ok(ws) = ws else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "exec and attach are served over WebSocket (v5.channel.k8s.io, v4.channel.k8s.io) \
             only; SPDY is not supported",
        );
    };
    let ws = ws.protocols(apimachinery::streaming::PROTOCOLS.iter().copied());
    let Some(protocol) = ws
        .selected_protocol()
        .and_then(|p| p.to_str().ok())
        .map(str::to_string)
    else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "no supported subprotocol offered: exec speaks v5.channel.k8s.io and v4.channel.k8s.io",
        );
    };
    match streams.take(&token) {
        Some(Session::Exec(spec)) => {
            ws.on_upgrade(move |socket| remotecommand::run(socket, spec, protocol))
        }
        Some(Session::Attach(spec)) => {
            ws.on_upgrade(move |socket| attach::run(socket, spec, protocol))
        }
        _ => refuse(StatusCode::NOT_FOUND, "unknown or expired session"),
    }
}

async fn port_forward(
    State(streams): State<Streams>,
    Path(token): Path<String>,
    req: axum::extract::Request,
) -> Response {
    match streams.take(&token) {
        Some(Session::PortForward(spec)) => portforward::upgrade(req, spec),
        _ => refuse(StatusCode::NOT_FOUND, "unknown or expired session"),
    }
}
