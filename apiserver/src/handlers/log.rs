//! `GET pods/<name>/log`: proxied to the node agent's `/containerLogs/{ns}/{pod}/{container}`
//! on the node's `InternalIP` and `daemonEndpoints.kubeletEndpoint.Port` over HTTPS
//! ([`crate::node_client`]), streaming the answer
//! (so `follow=true` streams too). The container defaults to the pod's only container.

use std::sync::Arc;

use apimachinery::status::StatusError;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::response::Response;

use super::ApiRequest;
use crate::node_client;
use crate::response::ApiResult;
use crate::state::ApiState;

/// The query parameters passed on to the node.
const FORWARDED: &[&str] = &[
    "follow",
    "previous",
    "timestamps",
    "tailLines",
    "limitBytes",
    "sinceSeconds",
    "sinceTime",
];

/// Serves the logs of one container of a pod.
pub async fn logs(state: &Arc<ApiState>, req: &ApiRequest) -> ApiResult {
    state.sync_cache().await?;
    let name = req.name().to_string();
    let ns = req.namespace().unwrap_or("default").to_string();
    let pod = state
        .cache()
        .get(&req.info.key(Some(&ns), &name))
        .ok_or_else(|| req.not_found())?;
    let pod = &pod.object;
    let container = node_client::container(pod, &name, req.params.get("container"))?;
    let agent = node_client::agent_of(state, pod, &name, "container logs")?;
    let mut query: Vec<String> = Vec::new();
    for p in FORWARDED {
        if let Some(v) = req.params.get(p) {
            query.push(format!(
                "{p}={}",
                form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
            ));
        }
    }
    let path = format!(
        "/containerLogs/{ns}/{name}/{container}{}{}",
        if query.is_empty() { "" } else { "?" },
        query.join("&")
    );
    let response = agent.send(state, Request::get(&path)).await?;
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::new(response.into_body()))
        .map_err(|e| StatusError::internal(e.to_string()))
}
