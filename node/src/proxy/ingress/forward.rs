//! The ingress controller's listeners: HTTP/1.1 (over TLS on the HTTPS listener) served with
//! hyper, each request routed by the current snapshot and reverse-proxied over a new HTTP/1.1
//! connection to a ready endpoint of the chosen Service (round robin, skipping endpoints that
//! refuse). The request keeps its `Host`; `X-Forwarded-For` (appended to), `X-Forwarded-Proto`,
//! `X-Forwarded-Host` and `X-Forwarded-Port` are set; hop-by-hop headers are dropped both ways.
//! No rule and no default backend: 404; a Service without ready endpoints (or missing): 503;
//! no endpoint answering: 502. Protocol upgrades (WebSocket) are not forwarded.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use axum::body::Body;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::Shared;
use super::routes::host_of;

/// What a listener needs to answer requests.
#[derive(Clone)]
pub struct Listener {
    /// The routing snapshot, swapped by the controller loop.
    pub current: Shared,
    /// `Some` on the HTTPS listener.
    pub tls: Option<TlsAcceptor>,
    /// Round-robin position, shared by every request of this listener.
    pub next: Arc<AtomicUsize>,
}

/// Accepts connections until the task is aborted.
pub async fn serve(listener: TcpListener, ctx: Listener) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "ingress accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let proto = if ctx.tls.is_some() { "https" } else { "http" };
            let service = {
                let ctx = ctx.clone();
                hyper::service::service_fn(move |req| {
                    let ctx = ctx.clone();
                    async move { Ok::<_, Infallible>(handle(&ctx, req, peer, proto, port).await) }
                })
            };
            let http = hyper::server::conn::http1::Builder::new();
            let result = match &ctx.tls {
                Some(acceptor) => match acceptor.accept(tcp).await {
                    Ok(stream) => http.serve_connection(TokioIo::new(stream), service).await,
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "ingress TLS handshake failed");
                        return;
                    }
                },
                None => http.serve_connection(TokioIo::new(tcp), service).await,
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "ingress connection ended");
            }
        });
    }
}

/// A plain-text answer of the controller itself.
fn answer(status: StatusCode, text: &str) -> Response<Body> {
    let mut res = Response::new(Body::from(format!("{text}\n")));
    *res.status_mut() = status;
    res.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

/// Headers that describe one connection, never forwarded (RFC 9110 section 7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn drop_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

async fn handle(
    ctx: &Listener,
    mut req: Request<hyper::body::Incoming>,
    peer: SocketAddr,
    proto: &'static str,
    port: u16,
) -> Response<Body> {
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers()
                .get(hyper::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let host = host_of(&authority);
    let snapshot = ctx
        .current
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let Some(backend) = snapshot.routes.route(&host, req.uri().path()) else {
        return answer(StatusCode::NOT_FOUND, "404 page not found");
    };
    let endpoints = snapshot
        .endpoints
        .get(backend)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if endpoints.is_empty() {
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "service {}/{} has no ready endpoint",
                backend.namespace, backend.service
            ),
        );
    }
    let Some(tcp) = crate::proxy::connect_any(endpoints, &ctx.next).await else {
        return answer(
            StatusCode::BAD_GATEWAY,
            "no endpoint accepted the connection",
        );
    };

    // The upstream request: origin-form target, the client's headers less hop-by-hop ones.
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    *req.uri_mut() = match target.parse() {
        Ok(uri) => uri,
        Err(_) => return answer(StatusCode::BAD_REQUEST, "bad request target"),
    };
    *req.version_mut() = hyper::Version::HTTP_11;
    let headers = req.headers_mut();
    drop_hop_by_hop(headers);
    if !headers.contains_key(hyper::header::HOST)
        && let Ok(v) = HeaderValue::from_str(&authority)
    {
        headers.insert(hyper::header::HOST, v);
    }
    let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prior) => format!("{prior}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    let set = |headers: &mut HeaderMap, name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    set(headers, "x-forwarded-for", &forwarded_for);
    set(headers, "x-forwarded-proto", proto);
    set(headers, "x-forwarded-host", &authority);
    set(headers, "x-forwarded-port", &port.to_string());

    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "ingress backend handshake failed");
            return answer(StatusCode::BAD_GATEWAY, "the backend did not answer");
        }
    };
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "ingress backend connection ended");
        }
    });
    match sender.send_request(req).await {
        Ok(res) => {
            let (mut parts, body) = res.into_parts();
            drop_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, Body::new(body))
        }
        Err(e) => {
            tracing::debug!(error = %e, "ingress backend request failed");
            answer(StatusCode::BAD_GATEWAY, "the backend did not answer")
        }
    }
}
