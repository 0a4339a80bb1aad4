//! The `proxy` subresources: `pods/NAME[:PORT]/proxy/PATH`, `services/NAME[:PORT]/proxy/PATH`
//! and `nodes/NAME[:PORT]/proxy/PATH` (`kubectl get --raw`, dashboards). The request (method,
//! query, body, content type and accept headers) goes over plain HTTP to the pod's IP and port,
//! or to a ready endpoint of the Service's port, or to the node agent over HTTPS with the API
//! server's client certificate; the answer comes back as it is. Authorization asked for the
//! method's verb on `pods/proxy`, `services/proxy` or `nodes/proxy` (see `pipeline`).
//! The `https:` scheme prefix of Kubernetes' `scheme:name:port` form is refused.

use std::sync::Arc;
use std::time::Duration;

use apimachinery::object::ObjectExt;
use apimachinery::status::{Reason, StatusError};
use axum::body::Body;
use axum::http::{Request, header};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::ApiRequest;
use crate::node_client;
use crate::response::ApiResult;
use crate::state::ApiState;

/// How long connecting to the target may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Request headers passed on to the target.
const FORWARDED: &[header::HeaderName] = &[header::ACCEPT, header::CONTENT_TYPE];

/// `[scheme:]name[:port]` split as Kubernetes' `SplitSchemeNamePort` does.
fn split_name(id: &str) -> Option<(&str, &str, &str)> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [name] => ("", *name, ""),
        [name, port] => ("", *name, *port),
        [scheme, name, port] => (*scheme, *name, *port),
        _ => return None,
    };
    (!name.is_empty() && matches!(scheme, "" | "http" | "https")).then_some((scheme, name, port))
}

/// Serves `pods|services|nodes/<name>/proxy/<path>`.
pub async fn proxy(state: &Arc<ApiState>, req: &ApiRequest) -> ApiResult {
    state.sync_cache().await?;
    let plural = req.info.plural.as_str();
    let (scheme, name, port) = split_name(req.name()).ok_or_else(|| {
        StatusError::bad_request(format!(
            "invalid {plural} proxy target {:?}: expected [scheme:]name[:port]",
            req.name()
        ))
    })?;
    if scheme == "https" {
        return Err(StatusError::bad_request(format!(
            "{plural}/{name}: proxying over https is not supported by this server; use http"
        )));
    }
    let mut path = req.path.proxy_path.clone().unwrap_or_else(|| "/".into());
    if let Some(q) = req.raw_query.as_deref().filter(|q| !q.is_empty()) {
        path = format!("{path}?{q}");
    }
    let mut upstream = Request::builder().method(req.method.clone()).uri(&path);
    for h in FORWARDED {
        if let Some(v) = req.headers.get(h) {
            upstream = upstream.header(h, v);
        }
    }
    if plural == "nodes" {
        let agent = node_client::node_agent(state, name, &format!("node {name}"), "node proxy")?;
        let answer = agent.send(state, upstream).await?;
        return answer_of(answer);
    }
    let ns = req.namespace().unwrap_or("default");
    let object = state
        .cache()
        .get(&req.info.key(Some(ns), name))
        .ok_or_else(|| StatusError::not_found("", plural, name))?;
    let target = match plural {
        "pods" => pod_target(&object.object, name, port)?,
        _ => service_target(state, &object.object, ns, name, port)?,
    };
    let unavailable = |e: String| {
        StatusError::new(
            Reason::ServiceUnavailable,
            format!("error trying to reach {plural} {name} at {target}: {e}"),
        )
    };
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&target))
        .await
        .map_err(|_| unavailable("connection timed out".into()))?
        .map_err(|e| unavailable(e.to_string()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let request = upstream
        .header(header::HOST, &target)
        .body(http_body_util::Full::new(req.body.clone()))
        .map_err(|e| StatusError::internal(e.to_string()))?;
    let answer = sender
        .send_request(request)
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    answer_of(answer)
}

/// The target's answer for the client: its status, content headers and streamed body.
fn answer_of(answer: axum::http::Response<hyper::body::Incoming>) -> ApiResult {
    let (parts, body) = answer.into_parts();
    let mut response = Response::builder().status(parts.status);
    for h in [
        header::CONTENT_TYPE,
        header::CONTENT_ENCODING,
        header::CACHE_CONTROL,
        header::LOCATION,
    ] {
        if let Some(v) = parts.headers.get(&h) {
            response = response.header(h, v);
        }
    }
    response
        .body(Body::new(body))
        .map_err(|e| StatusError::internal(e.to_string()))
}

fn host_port(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// `podIP:port`: the port given, else the pod's first container port, else 80.
fn pod_target(pod: &Value, name: &str, port: &str) -> Result<String, StatusError> {
    let ip = pod
        .path("status.podIP")
        .and_then(Value::as_str)
        .filter(|ip| !ip.is_empty())
        .ok_or_else(|| StatusError::bad_request(format!("pod {name} has no IP address yet")))?;
    let port = if port.is_empty() {
        pod.path("spec.containers")
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter().find_map(|c| {
                    c.path("ports")
                        .and_then(Value::as_array)
                        .and_then(|ps| ps.first())
                        .and_then(|p| p.get("containerPort"))
                        .and_then(Value::as_u64)
                })
            })
            .unwrap_or(80)
    } else {
        named_container_port(pod, port)
            .ok_or_else(|| StatusError::bad_request(format!("pod {name} has no port {port:?}")))?
    };
    let port = u16::try_from(port)
        .map_err(|_| StatusError::bad_request(format!("pod {name}: port {port} is invalid")))?;
    Ok(host_port(ip, port))
}

/// A port number, or the number of a container port with that name.
fn named_container_port(pod: &Value, port: &str) -> Option<u64> {
    if let Ok(n) = port.parse::<u64>() {
        return Some(n);
    }
    pod.path("spec.containers")?
        .as_array()?
        .iter()
        .filter_map(|c| c.path("ports").and_then(Value::as_array))
        .flatten()
        .find(|p| p.get("name").and_then(Value::as_str) == Some(port))
        .and_then(|p| p.get("containerPort"))
        .and_then(Value::as_u64)
}

/// A ready endpoint of the Service's port (named or numbered `port`; the only port when
/// empty), from its EndpointSlices.
fn service_target(
    state: &ApiState,
    service: &Value,
    ns: &str,
    name: &str,
    port: &str,
) -> Result<String, StatusError> {
    let ports = service
        .path("spec.ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let chosen = if port.is_empty() {
        (ports.len() == 1).then(|| &ports[0])
    } else {
        ports.iter().find(|p| {
            p.get("name").and_then(Value::as_str) == Some(port)
                || p.get("port")
                    .and_then(Value::as_u64)
                    .map(|n| n.to_string())
                    .as_deref()
                    == Some(port)
        })
    }
    .ok_or_else(|| {
        StatusError::new(
            Reason::ServiceUnavailable,
            format!("no endpoints available for service \"{name}:{port}\""),
        )
    })?;
    let port_name = chosen.get("name").and_then(Value::as_str).unwrap_or("");
    let slices = state
        .registry()
        .by_resource("discovery.k8s.io", "v1", "endpointslices")
        .ok_or_else(|| StatusError::internal("endpointslices are not served"))?;
    let (snapshot, _) = state
        .cache()
        .list(&slices.namespace_prefix(ns), None, 0, |_| true);
    for slice in &snapshot.objects {
        let slice = &slice.object;
        let owner = slice
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .and_then(|l| l.get("kubernetes.io/service-name"))
            .and_then(Value::as_str);
        if owner != Some(name) {
            continue;
        }
        let Some(number) = slice
            .get("ports")
            .and_then(Value::as_array)
            .and_then(|ps| {
                ps.iter()
                    .find(|p| p.get("name").and_then(Value::as_str).unwrap_or("") == port_name)
            })
            .and_then(|p| p.get("port"))
            .and_then(Value::as_u64)
            .and_then(|n| u16::try_from(n).ok())
        else {
            continue;
        };
        let endpoints = slice
            .get("endpoints")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for e in endpoints {
            let ready = e
                .path("conditions.ready")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            if let (true, Some(ip)) = (
                ready,
                e.get("addresses")
                    .and_then(Value::as_array)
                    .and_then(|a| a.first())
                    .and_then(Value::as_str),
            ) {
                return Ok(host_port(ip, number));
            }
        }
    }
    Err(StatusError::new(
        Reason::ServiceUnavailable,
        format!("no endpoints available for service \"{name}\""),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(id: &str, expected: Option<(&str, &str, &str)>) {
        assert_eq!(split_name(id), expected, "{id}");
    }

    #[test]
    fn names_split_into_scheme_name_and_port() {
        check("web", Some(("", "web", "")));
        check("web:8080", Some(("", "web", "8080")));
        check("web:http", Some(("", "web", "http")));
        check("http:web:80", Some(("http", "web", "80")));
        check("https:web:443", Some(("https", "web", "443")));
        check("ftp:web:21", None);
        check(":80", None);
        check("a:b:c:d", None);
    }
}
