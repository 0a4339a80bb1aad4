//! On the host network (no user namespace for an ordinary user), names the pods of the local
//! nodes that want the same TCP port: all but one of them fail to listen. Each set of
//! conflicting pods is warned about once, with what to install or enable instead.
//!
//! States of the loop: *listing* (the Pods watch has not listed yet), then *following* (each
//! change recomputes the conflicts and warns about new ones).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::watcher;

/// Pods (`namespace/name`) by the TCP port more than one of them wants, among the running or
/// pending pods on `nodes`.
pub fn conflicts<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    nodes: &BTreeSet<String>,
) -> BTreeMap<u16, BTreeSet<String>> {
    let mut by_port: BTreeMap<u16, BTreeSet<String>> = BTreeMap::new();
    for pod in pods {
        let (Some(spec), Some(name)) = (&pod.spec, &pod.metadata.name) else {
            continue;
        };
        let on_local_node = spec.node_name.as_ref().is_some_and(|n| nodes.contains(n));
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if !on_local_node || matches!(phase, Some("Succeeded" | "Failed")) {
            continue;
        }
        let pod_name = format!(
            "{}/{name}",
            pod.metadata.namespace.as_deref().unwrap_or("default")
        );
        let ports = spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
            .filter_map(|p| u16::try_from(p.host_port.unwrap_or(p.container_port)).ok());
        for port in ports {
            by_port.entry(port).or_default().insert(pod_name.clone());
        }
    }
    by_port.retain(|_, pods| pods.len() > 1);
    by_port
}

/// Warns about pods on `nodes` that conflict on the host network (`reason`: why there is no
/// user namespace) until `stop`.
pub async fn warn(
    client: kube::Client,
    nodes: BTreeSet<String>,
    reason: String,
    stop: impl Future<Output = ()>,
) {
    let mut events = watcher(Api::<Pod>::all(client), watcher::Config::default()).boxed();
    let mut listed: BTreeMap<String, Pod> = BTreeMap::new();
    let mut listing: BTreeMap<String, Pod> = BTreeMap::new();
    let mut warned: BTreeSet<(u16, BTreeSet<String>)> = BTreeSet::new();
    let key = |p: &Pod| {
        format!(
            "{}/{}",
            p.metadata.namespace.as_deref().unwrap_or(""),
            p.metadata.name.as_deref().unwrap_or("")
        )
    };
    tokio::pin!(stop);
    loop {
        let event = tokio::select! {
            _ = &mut stop => return,
            e = events.next() => e,
        };
        match event {
            None => return,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "pods watch");
                continue;
            }
            Some(Ok(watcher::Event::Init)) => {
                listing.clear();
                continue;
            }
            Some(Ok(watcher::Event::InitApply(p))) => {
                listing.insert(key(&p), p);
                continue;
            }
            Some(Ok(watcher::Event::InitDone)) => listed = std::mem::take(&mut listing),
            Some(Ok(watcher::Event::Apply(p))) => {
                listed.insert(key(&p), p);
            }
            Some(Ok(watcher::Event::Delete(p))) => {
                listed.remove(&key(&p));
            }
        }
        for (port, pods) in conflicts(listed.values(), &nodes) {
            let names: Vec<&str> = pods.iter().map(String::as_str).collect();
            let text = names.join(", ");
            if warned.insert((port, pods)) {
                tracing::warn!(
                    "pods {text} all listen on port {port} on the host network: all but one will \
                     fail (pods get their own network namespaces as root, or in a user namespace: \
                     {reason})"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn pod(name: &str, node: &str, phase: &str, ports: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "hello"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "ports": ports}]},
            "status": {"phase": phase},
        }))
        .expect("pod")
    }

    fn check(pods: &[Pod], expected: &[(u16, &[&str])]) {
        let nodes = BTreeSet::from(["local".to_string()]);
        let expected: BTreeMap<u16, BTreeSet<String>> = expected
            .iter()
            .map(|(port, pods)| (*port, pods.iter().map(|p| format!("hello/{p}")).collect()))
            .collect();
        assert_eq!(conflicts(pods, &nodes), expected);
    }

    #[test]
    fn pods_on_local_nodes_wanting_one_tcp_port_conflict() {
        let http = json!([{"containerPort": 8080}]);
        check(
            &[
                pod("a", "local", "Running", http.clone()),
                pod("b", "local", "Pending", http.clone()),
            ],
            &[(8080, &["a", "b"])],
        );
        check(
            &[
                pod("a", "local", "Running", http.clone()),
                pod("b", "elsewhere", "Running", http.clone()),
                pod("c", "local", "Succeeded", http.clone()),
                pod("d", "local", "Running", json!([{"containerPort": 8081}])),
                pod(
                    "e",
                    "local",
                    "Running",
                    json!([{"containerPort": 8080, "protocol": "UDP"}]),
                ),
            ],
            &[],
        );
        check(
            &[
                pod(
                    "a",
                    "local",
                    "Running",
                    json!([{"containerPort": 80, "hostPort": 9000}]),
                ),
                pod(
                    "b",
                    "local",
                    "Running",
                    json!([{"containerPort": 81, "hostPort": 9000}]),
                ),
            ],
            &[(9000, &["a", "b"])],
        );
    }
}
