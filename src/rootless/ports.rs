//! Forwards ports from the host into rootlesskit's network namespace through rootlesskit's port
//! API (HTTP on the unix socket `STATE_DIR/api.sock`: `POST /v1/ports` opens a listener on the
//! host that rootlesskit's builtin port driver connects to the same port inside, `DELETE
//! /v1/ports/ID` closes it): the API server's port at start, then the node ports of every
//! NodePort and LoadBalancer Service, as Services come and go.
//!
//! States of the loop: *listing* (the Services watch has not listed yet; only the fixed ports
//! are open), then *following* (each change recomputes the wanted ports and opens and closes
//! the difference). A port the host refuses (in use there) is warned about once and tried again
//! at the next change.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::runtime::watcher;
use serde_json::{Value, json};

/// A client of rootlesskit's port API.
#[derive(Clone, Debug)]
pub struct PortApi {
    socket: PathBuf,
}

/// One forwarded port: host address and port, the same port inside.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Forward {
    /// The host address rootlesskit listens on.
    pub address: IpAddr,
    /// The port, on the host and inside.
    pub port: u16,
}

impl PortApi {
    /// The API of the rootlesskit whose state directory is `state_dir`.
    pub fn new(state_dir: &Path) -> PortApi {
        PortApi {
            socket: state_dir.join("api.sock"),
        }
    }

    /// One request on a new connection; the status and the body.
    async fn request(
        &self,
        method: hyper::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(hyper::StatusCode, Bytes)> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .with_context(|| format!("rootlesskit's port API {}", self.socket.display()))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "rootlesskit")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    /// Opens `forward` on the host; returns its id.
    pub async fn add(&self, forward: Forward) -> anyhow::Result<u64> {
        let spec = json!({
            "proto": "tcp",
            "parentIP": forward.address.to_string(),
            "parentPort": forward.port,
            "childPort": forward.port,
        });
        let (status, body) = self
            .request(hyper::Method::POST, "/v1/ports", Some(spec))
            .await?;
        let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        match answer.get("id").and_then(Value::as_u64) {
            Some(id) if status.is_success() => Ok(id),
            _ => anyhow::bail!(
                "rootlesskit cannot forward {}:{}: {}",
                forward.address,
                forward.port,
                answer
                    .get("message")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned())
            ),
        }
    }

    /// Closes the forward `id`.
    pub async fn remove(&self, id: u64) -> anyhow::Result<()> {
        let (status, body) = self
            .request(hyper::Method::DELETE, &format!("/v1/ports/{id}"), None)
            .await?;
        anyhow::ensure!(
            status.is_success(),
            "rootlesskit cannot close port forward {id}: {}",
            String::from_utf8_lossy(&body)
        );
        Ok(())
    }
}

/// The node ports (TCP) of NodePort and LoadBalancer Services.
pub fn node_ports<'a>(services: impl IntoIterator<Item = &'a Service>) -> BTreeSet<u16> {
    services
        .into_iter()
        .filter_map(|s| s.spec.as_ref())
        .filter(|spec| matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer")))
        .flat_map(|spec| spec.ports.iter().flatten())
        .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
        .filter_map(|p| p.node_port.and_then(|n| u16::try_from(n).ok()))
        .collect()
}

/// The open forwards and the ones the host refused (warned about once).
struct Forwards {
    api: PortApi,
    open: BTreeMap<Forward, u64>,
    refused: BTreeSet<Forward>,
}

impl Forwards {
    /// Opens what `wanted` has and is not open, closes what is open and not wanted.
    async fn reconcile(&mut self, wanted: &BTreeSet<Forward>) {
        let stale: Vec<(Forward, u64)> = self
            .open
            .iter()
            .filter(|(f, _)| !wanted.contains(f))
            .map(|(f, id)| (*f, *id))
            .collect();
        for (forward, id) in stale {
            match self.api.remove(id).await {
                Ok(()) => tracing::info!(port = forward.port, "host port closed"),
                Err(e) => tracing::warn!(error = %e, "cannot close a host port"),
            }
            self.open.remove(&forward);
        }
        self.refused.retain(|f| wanted.contains(f));
        for forward in wanted {
            if self.open.contains_key(forward) {
                continue;
            }
            match self.api.add(*forward).await {
                Ok(id) => {
                    tracing::info!(address = %forward.address, port = forward.port, "host port forwarded");
                    self.refused.remove(forward);
                    self.open.insert(*forward, id);
                }
                Err(e) => {
                    if self.refused.insert(*forward) {
                        tracing::warn!(error = %e, "a port does not reach the host");
                    }
                }
            }
        }
    }
}

/// Forwards `fixed` (the API server's port) now, failing when the host refuses one; then
/// returns the loop that forwards each node port on every one of `node_addresses` as Services
/// appear, until `stop`, and closes them all.
pub async fn forward(
    api: PortApi,
    client: kube::Client,
    fixed: Vec<Forward>,
    node_addresses: Vec<IpAddr>,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<impl Future<Output = anyhow::Result<()>>> {
    let mut open = BTreeMap::new();
    for f in &fixed {
        let id = api.add(*f).await.with_context(|| {
            format!(
                "the API server's port {} cannot reach the host (is it in use there? pick another \
                 with --listen)",
                f.port
            )
        })?;
        open.insert(*f, id);
    }
    let forwards = Forwards {
        api,
        open,
        refused: BTreeSet::new(),
    };
    Ok(follow(forwards, client, fixed, node_addresses, stop))
}

/// The *following* loop of [`forward`].
async fn follow(
    mut forwards: Forwards,
    client: kube::Client,
    fixed: Vec<Forward>,
    node_addresses: Vec<IpAddr>,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let fixed_set: BTreeSet<Forward> = fixed.into_iter().collect();
    let services: Api<Service> = Api::all(client);
    let mut events = watcher(services, watcher::Config::default()).boxed();
    let mut listed: BTreeMap<String, Service> = BTreeMap::new();
    let mut listing: BTreeMap<String, Service> = BTreeMap::new();
    let key = |s: &Service| {
        format!(
            "{}/{}",
            s.metadata.namespace.as_deref().unwrap_or(""),
            s.metadata.name.as_deref().unwrap_or("")
        )
    };
    tokio::pin!(stop);
    loop {
        let event = tokio::select! {
            _ = &mut stop => break,
            e = events.next() => e,
        };
        match event {
            None => break,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "services watch");
                continue;
            }
            Some(Ok(watcher::Event::Init)) => {
                listing.clear();
                continue;
            }
            Some(Ok(watcher::Event::InitApply(s))) => {
                listing.insert(key(&s), s);
                continue;
            }
            Some(Ok(watcher::Event::InitDone)) => listed = std::mem::take(&mut listing),
            Some(Ok(watcher::Event::Apply(s))) => {
                listed.insert(key(&s), s);
            }
            Some(Ok(watcher::Event::Delete(s))) => {
                listed.remove(&key(&s));
            }
        }
        let mut wanted = fixed_set.clone();
        for port in node_ports(listed.values()) {
            wanted.extend(
                node_addresses
                    .iter()
                    .map(|&address| Forward { address, port }),
            );
        }
        forwards.reconcile(&wanted).await;
    }
    forwards.reconcile(&BTreeSet::new()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(v: Value) -> Service {
        serde_json::from_value(v).expect("service")
    }

    fn check(services: &[Value], expected: &[u16]) {
        let services: Vec<Service> = services.iter().cloned().map(service).collect();
        assert_eq!(
            node_ports(&services),
            expected.iter().copied().collect::<BTreeSet<u16>>()
        );
    }

    #[test]
    fn only_tcp_node_ports_of_node_port_and_load_balancer_services_are_forwarded() {
        let svc = |type_: &str, ports: Value| json!({"metadata": {"name": "s"}, "spec": {"type": type_, "ports": ports}});
        check(
            &[svc("NodePort", json!([{"port": 80, "nodePort": 30080}]))],
            &[30080],
        );
        check(
            &[
                svc("LoadBalancer", json!([{"port": 80, "nodePort": 30081}])),
                svc("ClusterIP", json!([{"port": 80, "nodePort": 30082}])),
                svc(
                    "NodePort",
                    json!([{"port": 53, "nodePort": 30053, "protocol": "UDP"}]),
                ),
            ],
            &[30081],
        );
        check(&[svc("NodePort", json!([{"port": 80}]))], &[]);
    }
}
