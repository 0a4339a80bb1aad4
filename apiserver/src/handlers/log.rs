//! `GET pods/<name>/log`: proxied to the node agent's `/containerLogs/{ns}/{pod}/{container}`
//! on the node's `InternalIP` and `daemonEndpoints.kubeletEndpoint.Port`, streaming the answer
//! (so `follow=true` streams too). The container defaults to the pod's only container.

use std::sync::Arc;

use apimachinery::object::ObjectExt;
use apimachinery::status::{Reason, StatusError};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::response::Response;
use http_body_util::BodyExt;
use serde_json::Value;

use super::ApiRequest;
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

fn names(list: Option<&Value>) -> Vec<String> {
    list.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

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
    let containers = names(pod.path("spec.containers"));
    let inits = names(pod.path("spec.initContainers"));
    let ephemeral = names(pod.path("spec.ephemeralContainers"));
    let container = match req.params.get("container").filter(|c| !c.is_empty()) {
        Some(c) => {
            if !containers
                .iter()
                .chain(inits.iter())
                .chain(ephemeral.iter())
                .any(|n| n == c)
            {
                return Err(StatusError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )));
            }
            c.to_string()
        }
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            return Err(StatusError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            )));
        }
    };
    let node_name = pod
        .path("spec.nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            StatusError::bad_request(format!("pod {name} does not have a host assigned"))
        })?;
    let nodes = state
        .registry()
        .by_resource("", "v1", "nodes")
        .ok_or_else(|| StatusError::internal("nodes are not served"))?;
    let node = state
        .cache()
        .get(&nodes.key(None, node_name))
        .ok_or_else(|| StatusError::not_found("", "nodes", node_name))?;
    let node = &node.object;
    let port = node
        .path("status.daemonEndpoints.kubeletEndpoint.Port")
        .and_then(Value::as_u64)
        .filter(|p| *p > 0 && *p < 65536)
        .ok_or_else(|| {
            StatusError::bad_request(format!("node {node_name} does not serve container logs"))
        })?;
    let addresses = node
        .path("status.addresses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let address = ["InternalIP", "ExternalIP", "Hostname"]
        .iter()
        .find_map(|kind| {
            addresses
                .iter()
                .find(|a| a.get("type").and_then(Value::as_str) == Some(kind))
                .and_then(|a| a.get("address").and_then(Value::as_str))
        })
        .ok_or_else(|| StatusError::bad_request(format!("node {node_name} has no address")))?
        .to_string();
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
    let unavailable = |e: String| {
        StatusError::new(
            Reason::ServiceUnavailable,
            format!("cannot reach the node agent of {node_name} at {address}:{port}: {e}"),
        )
    };
    let host = if address.contains(':') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    };
    let stream = tokio::net::TcpStream::connect(&host)
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| unavailable(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let request = Request::get(&path)
        .header(header::HOST, &host)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| StatusError::internal(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let status = response.status();
    if !status.is_success() {
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        let reason = if status == StatusCode::NOT_FOUND {
            Reason::NotFound
        } else {
            Reason::BadRequest
        };
        return Err(StatusError::new(reason, body.trim().to_string()));
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::new(response.into_body()))
        .map_err(|e| StatusError::internal(e.to_string()))
}
