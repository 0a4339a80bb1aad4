//! What the proxy should listen on and where each listener forwards: a pure function of the
//! Services and EndpointSlices (kube-proxy's "service and endpoints change trackers").

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Why an address is listened on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Frontend {
    /// `clusterIP:port` of a Service.
    ClusterIp,
    /// `nodeAddress:nodePort` of a Service.
    NodePort,
}

/// One listening address and the ready backends behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// `namespace/name:port` of the Service port, for logs.
    pub service: String,
    /// What kind of address this is.
    pub frontend: Frontend,
    /// Ready endpoints, sorted; empty means connections are refused.
    pub backends: Vec<SocketAddr>,
}

/// Computes the rules: for every TCP port of every Service with a cluster IP, a cluster IP rule
/// (when `cluster_ips`) and, for NodePort and LoadBalancer Services, a rule per node address.
/// Backends are the ready endpoints of the Service's slices whose port has the same name.
pub fn rules(
    services: &[Service],
    slices: &[EndpointSlice],
    node_addresses: &[IpAddr],
    cluster_ips: bool,
) -> BTreeMap<SocketAddr, Rule> {
    let mut by_service: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in slices {
        let labels = slice.metadata.labels.as_ref();
        let (Some(ns), Some(name)) = (
            slice.metadata.namespace.clone(),
            labels.and_then(|l| l.get(SERVICE_NAME_LABEL)).cloned(),
        ) else {
            continue;
        };
        by_service.entry((ns, name)).or_default().push(slice);
    }
    let mut out = BTreeMap::new();
    for svc in services {
        let (Some(ns), Some(name)) = (&svc.metadata.namespace, &svc.metadata.name) else {
            continue;
        };
        let Some(spec) = &svc.spec else { continue };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let cluster_ip = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<IpAddr>().ok());
        let node_ports = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
        let slices = by_service
            .get(&(ns.clone(), name.clone()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        for port in spec.ports.iter().flatten() {
            if port.protocol.as_deref().unwrap_or("TCP") != "TCP" {
                continue;
            }
            let port_name = port.name.as_deref().unwrap_or("");
            let backends = ready_backends(slices, port_name);
            let service = format!("{ns}/{name}:{}", port.port);
            let mut add = |addr: SocketAddr, frontend: Frontend| {
                out.insert(
                    addr,
                    Rule {
                        service: service.clone(),
                        frontend,
                        backends: backends.clone(),
                    },
                );
            };
            if cluster_ips
                && let Some(ip) = cluster_ip
                && let Ok(p) = u16::try_from(port.port)
            {
                add(SocketAddr::new(ip, p), Frontend::ClusterIp);
            }
            if node_ports
                && let Some(np) = port.node_port.and_then(|p| u16::try_from(p).ok())
                && np != 0
            {
                for addr in node_addresses {
                    add(SocketAddr::new(*addr, np), Frontend::NodePort);
                }
            }
        }
    }
    out
}

/// Ready endpoints of the slice port named `port_name`. A missing `ready` condition counts as
/// ready (the API says so); terminating endpoints are never ready.
pub(crate) fn ready_backends(slices: &[&EndpointSlice], port_name: &str) -> Vec<SocketAddr> {
    let mut set = BTreeSet::new();
    for slice in slices {
        let Some(port) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or("") == port_name)
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for ep in &slice.endpoints {
            let conditions = ep.conditions.as_ref();
            let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
            let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
            if !ready || terminating {
                continue;
            }
            for addr in &ep.addresses {
                if let Ok(ip) = addr.parse::<IpAddr>() {
                    set.insert(SocketAddr::new(ip, port));
                }
            }
        }
    }
    set.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    fn slice(v: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(v).unwrap()
    }

    fn web_slice(endpoints: serde_json::Value) -> EndpointSlice {
        slice(json!({
            "metadata": {"name": "web-abc", "namespace": "default",
                         "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": endpoints,
        }))
    }

    fn check(services: &[Service], slices: &[EndpointSlice], expected: &[(&str, &[&str])]) {
        let nodes = ["127.0.0.1".parse().unwrap()];
        let got = rules(services, slices, &nodes, true);
        let got: Vec<(String, Vec<String>)> = got
            .iter()
            .map(|(a, r)| {
                (
                    a.to_string(),
                    r.backends.iter().map(ToString::to_string).collect(),
                )
            })
            .collect();
        let expected: Vec<(String, Vec<String>)> = expected
            .iter()
            .map(|(a, b)| (a.to_string(), b.iter().map(ToString::to_string).collect()))
            .collect();
        assert_eq!(got, expected);
    }

    fn web(type_: &str) -> Service {
        service(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": type_, "clusterIP": "10.96.0.10",
                     "ports": [{"name": "http", "port": 80, "targetPort": "http",
                                "protocol": "TCP", "nodePort": 30080}]},
        }))
    }

    #[test]
    fn a_node_port_service_listens_on_its_cluster_ip_and_every_node_address() {
        let eps = web_slice(json!([
            {"addresses": ["10.244.0.5"], "conditions": {"ready": true}},
            {"addresses": ["10.244.0.6"]},
        ]));
        check(
            &[web("NodePort")],
            &[eps],
            &[
                ("10.96.0.10:80", &["10.244.0.5:8080", "10.244.0.6:8080"]),
                ("127.0.0.1:30080", &["10.244.0.5:8080", "10.244.0.6:8080"]),
            ],
        );
    }

    #[test]
    fn unready_and_terminating_endpoints_get_no_traffic() {
        let eps = web_slice(json!([
            {"addresses": ["10.244.0.5"], "conditions": {"ready": false}},
            {"addresses": ["10.244.0.6"], "conditions": {"ready": true, "terminating": true}},
            {"addresses": ["10.244.0.7"], "conditions": {"ready": true}},
        ]));
        check(
            &[web("ClusterIP")],
            &[eps],
            &[("10.96.0.10:80", &["10.244.0.7:8080"])],
        );
    }

    #[test]
    fn a_service_without_endpoints_keeps_its_rule_with_no_backends() {
        check(&[web("ClusterIP")], &[], &[("10.96.0.10:80", &[])]);
    }

    #[test]
    fn headless_external_name_and_udp_services_are_not_proxied() {
        let headless = service(json!({
            "metadata": {"name": "db", "namespace": "default"},
            "spec": {"clusterIP": "None", "ports": [{"port": 5432}]},
        }));
        let external = service(json!({
            "metadata": {"name": "ext", "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": "example.com"},
        }));
        let udp = service(json!({
            "metadata": {"name": "dns", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.53", "ports": [{"port": 53, "protocol": "UDP"}]},
        }));
        check(&[headless, external, udp], &[], &[]);
    }

    #[test]
    fn slices_of_another_namespace_or_port_name_do_not_count() {
        let other_ns = slice(json!({
            "metadata": {"name": "web-x", "namespace": "prod",
                         "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [{"addresses": ["10.244.1.1"]}],
        }));
        let other_port = slice(json!({
            "metadata": {"name": "web-y", "namespace": "default",
                         "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "metrics", "port": 9090}],
            "endpoints": [{"addresses": ["10.244.1.2"]}],
        }));
        check(
            &[web("ClusterIP")],
            &[other_ns, other_port],
            &[("10.96.0.10:80", &[])],
        );
    }
}
