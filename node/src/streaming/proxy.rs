//! Forwarding an HTTP/1.1 upgrade (a WebSocket handshake) to another server, as Kubernetes'
//! `UpgradeAwareHandler` does: the request goes on with its upgrade headers, the answer comes
//! back as it is, and after a `101 Switching Protocols` both connections are joined byte for
//! byte, so the protocol inside is the two ends' business.

use axum::body::Body;
use axum::http::{Request, Response, StatusCode, Uri, header};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// An error answer in plain text.
pub fn refusal(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(Body::from(message.into()));
    *r.status_mut() = status;
    r
}

/// Sends `req` (its method, upgrade headers and `path_and_query`) over `io`, an established
/// connection to `host`, and answers the client with the upstream's answer; after a 101 the
/// client's connection and `io` are joined until either side closes.
pub async fn forward<IO>(
    mut req: Request<Body>,
    io: IO,
    host: &str,
    path_and_query: &str,
) -> Result<Response<Body>, String>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let client_upgrade = hyper::upgrade::on(&mut req);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let mut upstream = Request::builder()
        .method(req.method())
        .uri(path_and_query)
        .header(header::HOST, host);
    for name in apimachinery::streaming::UPGRADE_HEADERS
        .iter()
        .chain(&[header::ORIGIN.as_str()])
    {
        for v in req.headers().get_all(*name) {
            upstream = upstream.header(*name, v);
        }
    }
    let upstream = upstream.body(Body::empty()).map_err(|e| e.to_string())?;
    let mut answer = sender
        .send_request(upstream)
        .await
        .map_err(|e| e.to_string())?;
    if answer.status() == StatusCode::SWITCHING_PROTOCOLS {
        let upstream_upgrade = hyper::upgrade::on(&mut answer);
        tokio::spawn(async move {
            let (Ok(client), Ok(upstream)) = tokio::join!(client_upgrade, upstream_upgrade) else {
                return;
            };
            let (mut a, mut b) = (TokioIo::new(client), TokioIo::new(upstream));
            let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
        });
    }
    let (parts, body) = answer.into_parts();
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// `forward` to a plain-HTTP `url` (a runtime's streaming server on loopback).
pub async fn forward_to(req: Request<Body>, url: &str) -> Response<Body> {
    let uri: Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => return refusal(StatusCode::INTERNAL_SERVER_ERROR, format!("{url}: {e}")),
    };
    let (Some(authority), Some(pq)) = (uri.authority(), uri.path_and_query()) else {
        return refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{url}: not an absolute URL"),
        );
    };
    let io = match tokio::net::TcpStream::connect(authority.as_str()).await {
        Ok(io) => io,
        Err(e) => {
            return refusal(
                StatusCode::BAD_GATEWAY,
                format!("cannot reach the runtime's streaming server at {authority}: {e}"),
            );
        }
    };
    match forward(req, io, authority.as_str(), pq.as_str()).await {
        Ok(r) => r,
        Err(e) => refusal(
            StatusCode::BAD_GATEWAY,
            format!("the runtime's streaming server at {authority}: {e}"),
        ),
    }
}
