//! `pods/exec`, `pods/attach` and `pods/portforward`: the client's connection upgrade is
//! proxied to the pod's node agent (`/exec/{ns}/{pod}/{container}?…`, `/attach/…`,
//! `/portForward/{ns}/{pod}` over HTTPS, [`crate::node_client`]) and, once the agent answers
//! `101 Switching Protocols`, both connections are joined byte for byte, as kube-apiserver's
//! `UpgradeAwareHandler` does: the protocol is spoken by the client and the node. Exec and
//! attach are a WebSocket (`v5.channel.k8s.io` / `v4.channel.k8s.io`); port-forward is
//! SPDY/3.1, which kubectl ≥ 1.31 tunnels inside a WebSocket (`SPDY/3.1+portforward.k8s.io`,
//! binary messages carrying the SPDY bytes): the API server ends that WebSocket and asks the
//! node for a plain SPDY upgrade, as kube-apiserver's `TunnelingHandler` does, so nodes (and
//! CRI runtimes) only speak SPDY. Authorization already asked for `create` on the subresource
//! (and `get` for the WebSocket `GET`, see `pipeline`). An answer other than 101 becomes a
//! `metav1.Status`.

use std::sync::Arc;

use apimachinery::status::StatusError;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::ApiRequest;
use crate::node_client;
use crate::response::ApiResult;
use crate::state::ApiState;

/// The WebSocket subprotocol of kubectl's port-forward tunnel.
const TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";

/// The stream protocol of port-forward over SPDY.
const PORT_FORWARD: &str = "portforward.k8s.io";

/// Serves `pods/<name>/<sub>` for `sub` in `exec`, `attach`, `portforward`.
pub async fn stream(state: &Arc<ApiState>, req: &ApiRequest, sub: &str) -> ApiResult {
    state.sync_cache().await?;
    let name = req.name().to_string();
    let ns = req.namespace().unwrap_or("default").to_string();
    let pod = state
        .cache()
        .get(&req.info.key(Some(&ns), &name))
        .ok_or_else(|| req.not_found())?;
    let pod = &pod.object;
    let query = req.raw_query.as_deref().unwrap_or("");
    let path = match sub {
        "exec" | "attach" => {
            let container = node_client::container(pod, &name, req.params.get("container"))?;
            format!("/{sub}/{ns}/{name}/{container}?{query}")
        }
        _ => format!("/portForward/{ns}/{name}"),
    };
    let phase = apimachinery::object::ObjectExt::path(pod, "status.phase")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    if matches!(phase, "Succeeded" | "Failed") {
        return Err(StatusError::bad_request(format!(
            "cannot {sub} into a container in a completed pod; current phase is {phase}"
        )));
    }
    let agent = node_client::agent_of(state, pod, &name, sub)?;
    let upgrade = req
        .upgrade
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .ok_or_else(|| {
            StatusError::bad_request(format!(
                "{sub} needs a connection upgrade (WebSocket: {})",
                if sub == "portforward" {
                    TUNNEL
                } else {
                    "v5.channel.k8s.io"
                }
            ))
        })?;
    let upstream = Request::builder().method(req.method.clone()).uri(&path);
    if sub == "portforward" && offers(&req.headers, header::SEC_WEBSOCKET_PROTOCOL, TUNNEL) {
        return tunnel(state, &agent, req, upstream, upgrade).await;
    }
    if sub == "portforward" && !offers(&req.headers, header::UPGRADE, "SPDY/3.1") {
        return Err(StatusError::bad_request(format!(
            "port-forward is served as SPDY/3.1, plain or tunnelled in a WebSocket ({TUNNEL})"
        )));
    }
    let mut upstream = upstream;
    for h in apimachinery::streaming::UPGRADE_HEADERS {
        for v in req.headers.get_all(*h) {
            upstream = upstream.header(*h, v);
        }
    }
    let mut answer = agent.send(state, upstream).await?;
    if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(StatusError::internal(format!(
            "the node agent of {} answered {} to an upgrade",
            agent.node,
            answer.status()
        )));
    }
    joined(upgrade, &mut answer, |client, node| async move {
        let (mut a, mut b) = (TokioIo::new(client), TokioIo::new(node));
        let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
    });
    let mut response = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for (k, v) in answer.headers() {
        response = response.header(k, v);
    }
    response
        .body(Body::empty())
        .map_err(|e| StatusError::internal(e.to_string()))
}

/// Once both the client's connection and the node's answer (a 101) are upgraded, runs `join`
/// on the two.
fn joined<F, Fut>(
    client: OnUpgrade,
    answer: &mut axum::http::Response<hyper::body::Incoming>,
    join: F,
) where
    F: FnOnce(Upgraded, Upgraded) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let node = hyper::upgrade::on(answer);
    tokio::spawn(async move {
        if let (Ok(client), Ok(node)) = tokio::join!(client, node) {
            join(client, node).await;
        }
    });
}

/// Whether header `name` lists `value` (comma-separated, case-insensitive).
fn offers(headers: &HeaderMap, name: header::HeaderName, value: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case(value))
}

/// Ends kubectl's WebSocket tunnel here and asks the node for plain SPDY: after both
/// upgrades, each binary message from the client goes to the node as bytes, and the node's
/// bytes go back as binary messages.
async fn tunnel(
    state: &ApiState,
    agent: &node_client::NodeAgent,
    req: &ApiRequest,
    upstream: axum::http::request::Builder,
    upgrade: OnUpgrade,
) -> ApiResult {
    let key = req
        .headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or_else(|| StatusError::bad_request("the WebSocket upgrade has no Sec-WebSocket-Key"))?
        .as_bytes()
        .to_vec();
    let upstream = upstream
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1")
        .header("x-stream-protocol-version", PORT_FORWARD);
    let mut answer = agent.send(state, upstream).await?;
    if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(StatusError::internal(format!(
            "the node agent of {} answered {} to an SPDY upgrade",
            agent.node,
            answer.status()
        )));
    }
    joined(upgrade, &mut answer, |client, node| async move {
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(client), Role::Server, None).await;
        carry(ws, TokioIo::new(node)).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(
            header::SEC_WEBSOCKET_ACCEPT,
            tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key),
        )
        .header(header::SEC_WEBSOCKET_PROTOCOL, TUNNEL)
        .body(Body::empty())
        .map_err(|e| StatusError::internal(e.to_string()))
}

/// Copies between the client's WebSocket and the node's byte stream until both ends close.
async fn carry(ws: WebSocketStream<TokioIo<Upgraded>>, node: TokioIo<Upgraded>) {
    let (mut to_client, mut from_client) = ws.split();
    let (mut from_node, mut to_node) = tokio::io::split(node);
    let up = async {
        while let Some(Ok(message)) = from_client.next().await {
            match message {
                Message::Binary(bytes) if to_node.write_all(&bytes).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = to_node.shutdown().await;
    };
    let down = async {
        let mut buf = vec![0u8; 32 << 10];
        loop {
            match from_node.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let bytes = bytes::Bytes::copy_from_slice(&buf[..n]);
                    if to_client.send(Message::Binary(bytes)).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to_client.close().await;
    };
    tokio::join!(up, down);
}
