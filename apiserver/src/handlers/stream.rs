//! `pods/exec`: the client's connection upgrade
//! (WebSocket, `v5.channel.k8s.io` / `v4.channel.k8s.io`) is proxied to the pod's node agent
//! (`/exec/{ns}/{pod}/{container}?…` over HTTPS, [`crate::node_client`]) and, once the agent
//! answers `101 Switching Protocols`, both connections are joined byte for byte, as
//! kube-apiserver's `UpgradeAwareHandler` does: the protocol is spoken by the client and the
//! node. Authorization already asked for `create` on the subresource (and `get` for the
//! WebSocket `GET`, see `pipeline`). An answer other than 101 becomes a `metav1.Status`.
//! `pods/attach` and `pods/portforward` are authorized and routed here, and refused with a
//! clear error: neither is served yet.

use std::sync::Arc;

use apimachinery::status::{Reason, StatusError};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::response::Response;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;

use super::ApiRequest;
use crate::node_client;
use crate::response::ApiResult;
use crate::state::ApiState;

/// Headers passed on to the node agent.
const FORWARDED: &[header::HeaderName] = &[
    header::CONNECTION,
    header::UPGRADE,
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
    header::SEC_WEBSOCKET_PROTOCOL,
    header::SEC_WEBSOCKET_EXTENSIONS,
];

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
    if sub != "exec" {
        return Err(StatusError::bad_request(format!(
            "pods/{sub} is not supported by this server yet; pods/exec is (see ARCHITECTURE.md)"
        )));
    }
    let query = req.raw_query.as_deref().unwrap_or("");
    let path = match sub {
        "exec" | "attach" => {
            let container = node_client::container(pod, &name, req.params.get("container"))?;
            format!("/{sub}/{ns}/{name}/{container}?{query}")
        }
        _ => format!("/portForward/{ns}/{name}?{query}"),
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
                "{sub} needs a connection upgrade (WebSocket: v5.channel.k8s.io)"
            ))
        })?;
    let io = agent.connect(state).await?;
    let unavailable = |e: String| StatusError::new(Reason::ServiceUnavailable, e);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let mut forwarded = Request::builder()
        .method(req.method.clone())
        .uri(&path)
        .header(header::HOST, &agent.host);
    for h in FORWARDED {
        for v in req.headers.get_all(h) {
            forwarded = forwarded.header(h, v);
        }
    }
    let forwarded = forwarded
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| StatusError::internal(e.to_string()))?;
    let mut answer = sender
        .send_request(forwarded)
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = answer.status();
        let body = answer
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(agent.refused(status, &body));
    }
    let node_upgrade = hyper::upgrade::on(&mut answer);
    tokio::spawn(async move {
        let (Ok(client), Ok(node)) = tokio::join!(upgrade, node_upgrade) else {
            return;
        };
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
