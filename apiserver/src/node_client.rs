//! The API server as a client of node agents (`pods/log`, `pods/exec`, `pods/portforward`):
//! where a pod's node agent listens (the Node's address and
//! `daemonEndpoints.kubeletEndpoint.Port`), and one request to it ([`NodeAgent::send`]) over
//! its own HTTPS connection, presenting the client certificate of
//! `apimachinery::streaming::APISERVER_NODE_CLIENT` from the cluster CA (its configuration is
//! [`crate::tls::node_client_config`]). Agents' serving certificates are self-signed and not
//! verified (kube-apiserver's default without `--kubelet-certificate-authority`).

use apimachinery::object::ObjectExt;
use apimachinery::status::{Reason, StatusError};
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::state::ApiState;

/// A pod's node agent: its node's name and `host:port`.
#[derive(Clone, Debug)]
pub struct NodeAgent {
    /// The node's name.
    pub node: String,
    /// `address:port` (IPv6 in brackets).
    pub host: String,
    /// The address alone, for TLS.
    pub address: String,
}

/// The names of the containers in a pod spec list (`spec.containers`, …).
pub fn container_names(list: Option<&Value>) -> Vec<String> {
    list.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The container a request names (`?container=`), or the pod's only container.
pub fn container(pod: &Value, name: &str, asked: Option<&str>) -> Result<String, StatusError> {
    let containers = container_names(pod.path("spec.containers"));
    let inits = container_names(pod.path("spec.initContainers"));
    let ephemeral = container_names(pod.path("spec.ephemeralContainers"));
    match asked.filter(|c| !c.is_empty()) {
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
            Ok(c.to_string())
        }
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => Err(StatusError::bad_request(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            containers.join(" ")
        ))),
    }
}

/// The node agent of `pod` (named `name`), for `what` (`container logs`, `exec`); a simulated
/// node answers that it does not support `what`.
pub fn agent_of(
    state: &ApiState,
    pod: &Value,
    name: &str,
    what: &str,
) -> Result<NodeAgent, StatusError> {
    let node_name = pod
        .path("spec.nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            StatusError::bad_request(format!("pod {name} does not have a host assigned"))
        })?;
    node_agent(state, node_name, &format!("pod {name}"), what)
}

/// The agent of node `node_name`, for `what`; `whose` names the object asked about in the
/// simulated node's refusal (`pod web`, `node n1`).
pub fn node_agent(
    state: &ApiState,
    node_name: &str,
    whose: &str,
    what: &str,
) -> Result<NodeAgent, StatusError> {
    let nodes = state
        .registry()
        .by_resource("", "v1", "nodes")
        .ok_or_else(|| StatusError::internal("nodes are not served"))?;
    let node = state
        .cache()
        .get(&nodes.key(None, node_name))
        .ok_or_else(|| StatusError::not_found("", "nodes", node_name))?;
    let node = &node.object;
    let runtime = node
        .path("status.nodeInfo.containerRuntimeVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if runtime.starts_with("simulated://") {
        return Err(StatusError::bad_request(format!(
            "{what} is not supported on simulated nodes ({whose} is on {node_name})"
        )));
    }
    let port = node
        .path("status.daemonEndpoints.kubeletEndpoint.Port")
        .and_then(Value::as_u64)
        .filter(|p| *p > 0 && *p < 65536)
        .ok_or_else(|| {
            StatusError::bad_request(format!("node {node_name} does not serve {what}"))
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
    let host = if address.contains(':') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    };
    Ok(NodeAgent {
        node: node_name.to_string(),
        host,
        address,
    })
}

impl NodeAgent {
    fn unavailable(&self, e: impl std::fmt::Display) -> StatusError {
        StatusError::new(
            Reason::ServiceUnavailable,
            format!(
                "cannot reach the node agent of {} at {}: {e}",
                self.node, self.host
            ),
        )
    }

    /// An HTTPS connection to the agent.
    pub async fn connect(&self, state: &ApiState) -> Result<TlsStream<TcpStream>, StatusError> {
        let config = state.security().node_client.clone().ok_or_else(|| {
            StatusError::internal("this API server has no client certificate for node agents")
        })?;
        let tcp = TcpStream::connect(&self.host)
            .await
            .map_err(|e| self.unavailable(e))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(self.address.clone()).map_err(|e| self.unavailable(e))?;
        tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| self.unavailable(e))
    }

    /// Sends `request` (a path, its headers, no body) on a new connection to the agent and
    /// returns the answer, its upgrade (`hyper::upgrade::on`) usable after a 101. An answer
    /// that is neither a success nor a 101 becomes a Status error.
    pub async fn send(
        &self,
        state: &ApiState,
        request: axum::http::request::Builder,
    ) -> Result<axum::http::Response<hyper::body::Incoming>, StatusError> {
        let io = self.connect(state).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
                .await
                .map_err(|e| self.unavailable(e))?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let request = request
            .header(axum::http::header::HOST, &self.host)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| StatusError::internal(e.to_string()))?;
        let answer = sender
            .send_request(request)
            .await
            .map_err(|e| self.unavailable(e))?;
        let status = answer.status();
        if status.is_success() || status == axum::http::StatusCode::SWITCHING_PROTOCOLS {
            return Ok(answer);
        }
        let body = http_body_util::BodyExt::collect(answer.into_body())
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Err(self.refused(status, &body))
    }

    /// A plain-text answer of the agent as a Status error (404 stays NotFound).
    fn refused(&self, status: axum::http::StatusCode, body: &[u8]) -> StatusError {
        let message = String::from_utf8_lossy(body).trim().to_string();
        let reason = match status.as_u16() {
            404 => Reason::NotFound,
            403 => Reason::Forbidden,
            501 => Reason::BadRequest,
            s if s >= 500 => Reason::InternalError,
            _ => Reason::BadRequest,
        };
        StatusError::new(reason, message)
    }
}
