//! NetworkPolicy evaluation: which policies select a pod, and from them what the pod may
//! receive (ingress) and send (egress), as peers (pod addresses resolved from pod and namespace
//! selectors, or CIDR blocks with exceptions) and ports (protocol, port, `endPort` ranges,
//! named ports). Pure: the node agent turns a [`PodPolicy`] into nftables rules.
//!
//! Kubernetes' semantics, as `networking.k8s.io/v1` documents them:
//! - a pod selected by no policy of a direction is not isolated in it: everything is allowed;
//! - `policyTypes` defaults to `Ingress`, plus `Egress` when the policy has egress rules;
//! - a rule without peers allows every peer, one without ports every port; rules and policies
//!   add up (union);
//! - a peer with only `podSelector` means pods of the policy's namespace; with
//!   `namespaceSelector`, pods (all, or those matching `podSelector`) of matching namespaces;
//! - a named port is looked up in the container ports of the pod it names: the selected pod for
//!   ingress, each destination pod for egress (a named egress port to an `ipBlock` or to any
//!   peer therefore allows only pods of the cluster that have that port).
//!
//! Pods on the host network and pods without an address are no peers (Kubernetes leaves them
//! undefined); an address block (`ipBlock`) matches by address only.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::matching::selector_matches;

/// An address block: an address and a prefix length (`10.0.0.0/8`, `fd00::/64`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    /// The network address, host bits cleared.
    pub addr: IpAddr,
    /// The prefix length.
    pub len: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n` or `x::/n`; a bare address is a /32 (/128).
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a.parse::<IpAddr>().ok()?, Some(l.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = len.unwrap_or(max);
        (len <= max).then(|| Cidr {
            addr: mask(addr, len),
            len,
        })
    }

    /// Whether `ip` is in the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.len) == self.addr
    }
}

fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4((a.to_bits() & m).into())
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6((a.to_bits() & m).into())
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// A transport protocol of a policy port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// The protocol named as the API names it (`TCP`, `UDP`, `SCTP`); default TCP.
    pub fn parse(s: Option<&str>) -> Option<Protocol> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// The lowercase name (as nftables and `/etc/protocols` spell it).
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// Allowed ports of one protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port {
    /// The protocol.
    pub protocol: Protocol,
    /// The first and last port, or `None` for every port of the protocol.
    pub range: Option<(u16, u16)>,
}

/// Who an allowance is for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Peer {
    /// Any address.
    Any,
    /// These pod addresses (never empty).
    Pods(BTreeSet<IpAddr>),
    /// An address block minus exceptions.
    Block {
        /// The block.
        cidr: Cidr,
        /// Blocks inside it that are excluded.
        except: Vec<Cidr>,
    },
}

/// One allowance: traffic with a peer on some ports.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Allow {
    /// The peer (source for ingress, destination for egress).
    pub peer: Peer,
    /// The ports (of the pod for ingress, of the destination for egress); `None`: all.
    pub ports: Option<Vec<Port>>,
}

/// What the policies make of one pod. `None` in a direction: no policy of that direction
/// selects the pod, so it is not isolated there (everything allowed); `Some` lists everything
/// allowed (empty: nothing).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodPolicy {
    /// What the pod may receive.
    pub ingress: Option<Vec<Allow>>,
    /// What the pod may send.
    pub egress: Option<Vec<Allow>>,
}

impl PodPolicy {
    /// Whether the pod is isolated in either direction.
    pub fn isolated(&self) -> bool {
        self.ingress.is_some() || self.egress.is_some()
    }
}

/// The cluster as policies see it: every pod and the labels of every namespace.
pub struct Cluster<'a> {
    /// Every pod (peers are resolved from them).
    pub pods: &'a [&'a Pod],
    /// Labels by namespace name.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

impl<'a> Cluster<'a> {
    /// The cluster of `pods` and `namespaces`.
    pub fn new(pods: &'a [&'a Pod], namespaces: &[&Namespace]) -> Cluster<'a> {
        Cluster {
            pods,
            namespaces: namespaces
                .iter()
                .filter_map(|n| {
                    Some((
                        n.metadata.name.clone()?,
                        n.metadata.labels.clone().unwrap_or_default(),
                    ))
                })
                .collect(),
        }
    }
}

/// The addresses of a pod that can be a peer: none on the host network or without an IP.
pub fn pod_ips(pod: &Pod) -> BTreeSet<IpAddr> {
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
    {
        return BTreeSet::new();
    }
    let Some(status) = &pod.status else {
        return BTreeSet::new();
    };
    let mut ips: BTreeSet<IpAddr> = status
        .pod_ips
        .iter()
        .flatten()
        .filter_map(|p| p.ip.parse().ok())
        .collect();
    ips.extend(
        status
            .pod_ip
            .as_deref()
            .and_then(|p| p.parse::<IpAddr>().ok()),
    );
    ips
}

fn labels(pod: &Pod) -> BTreeMap<String, String> {
    pod.metadata.labels.clone().unwrap_or_default()
}

/// Whether `policy` selects `pod` (same namespace, `podSelector` matches; empty: every pod).
pub fn selects(policy: &NetworkPolicy, pod: &Pod) -> bool {
    let empty = LabelSelector::default();
    policy.metadata.namespace == pod.metadata.namespace
        && selector_matches(
            policy
                .spec
                .as_ref()
                .and_then(|s| s.pod_selector.as_ref())
                .unwrap_or(&empty),
            &labels(pod),
        )
}

/// The policy's types, defaulted as Kubernetes does: `(ingress, egress)`.
pub fn policy_types(policy: &NetworkPolicy) -> (bool, bool) {
    let Some(spec) = &policy.spec else {
        return (true, false);
    };
    match &spec.policy_types {
        Some(types) => (
            types.iter().any(|t| t == "Ingress"),
            types.iter().any(|t| t == "Egress"),
        ),
        None => (true, spec.egress.as_ref().is_some_and(|e| !e.is_empty())),
    }
}

/// What the `policies` make of `pod`.
pub fn evaluate(pod: &Pod, policies: &[&NetworkPolicy], cluster: &Cluster<'_>) -> PodPolicy {
    let mut out = PodPolicy::default();
    for policy in policies.iter().filter(|p| selects(p, pod)) {
        let Some(spec) = &policy.spec else { continue };
        let ns = policy.metadata.namespace.as_deref().unwrap_or_default();
        let (ingress, egress) = policy_types(policy);
        if ingress {
            let allows = out.ingress.get_or_insert_with(Vec::new);
            for rule in spec.ingress.iter().flatten() {
                allows.extend(rule_allows(
                    ns,
                    rule.from.as_deref().unwrap_or_default(),
                    rule.ports.as_deref(),
                    Some(pod),
                    cluster,
                ));
            }
        }
        if egress {
            let allows = out.egress.get_or_insert_with(Vec::new);
            for rule in spec.egress.iter().flatten() {
                allows.extend(rule_allows(
                    ns,
                    rule.to.as_deref().unwrap_or_default(),
                    rule.ports.as_deref(),
                    None,
                    cluster,
                ));
            }
        }
    }
    for allows in [&mut out.ingress, &mut out.egress].into_iter().flatten() {
        allows.sort();
        allows.dedup();
    }
    out
}

/// A policy port before named ports are looked up.
enum PolicyPort {
    Number(Port),
    Named(Protocol, String),
}

fn policy_port(p: &NetworkPolicyPort) -> Option<PolicyPort> {
    let protocol = Protocol::parse(p.protocol.as_deref())?;
    Some(match &p.port {
        None => PolicyPort::Number(Port {
            protocol,
            range: None,
        }),
        Some(IntOrString::Int(n)) => {
            let first = u16::try_from(*n).ok()?;
            let last = p.end_port.map_or(Some(first), |e| u16::try_from(e).ok())?;
            PolicyPort::Number(Port {
                protocol,
                range: Some((first, last.max(first))),
            })
        }
        Some(IntOrString::String(name)) => match name.parse::<u16>() {
            Ok(n) => PolicyPort::Number(Port {
                protocol,
                range: Some((n, n)),
            }),
            Err(_) => PolicyPort::Named(protocol, name.clone()),
        },
    })
}

/// The number of the container port `name` of `protocol` in `pod`.
fn named_port(pod: &Pod, protocol: Protocol, name: &str) -> Option<u16> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| {
            p.name.as_deref() == Some(name)
                && Protocol::parse(p.protocol.as_deref()) == Some(protocol)
        })
        .and_then(|p| u16::try_from(p.container_port).ok())
}

/// The pods a selector peer names (`None` for an `ipBlock` peer).
fn peer_pods<'a>(
    ns: &str,
    peer: &NetworkPolicyPeer,
    cluster: &Cluster<'a>,
) -> Option<Vec<&'a Pod>> {
    if peer.pod_selector.is_none() && peer.namespace_selector.is_none() {
        return None;
    }
    let in_namespace = |pod: &Pod| {
        let pod_ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        match &peer.namespace_selector {
            None => pod_ns == ns,
            Some(sel) => cluster
                .namespaces
                .get(pod_ns)
                .is_some_and(|l| selector_matches(sel, l)),
        }
    };
    Some(
        cluster
            .pods
            .iter()
            .copied()
            .filter(|p| in_namespace(p))
            .filter(|p| {
                peer.pod_selector
                    .as_ref()
                    .is_none_or(|s| selector_matches(s, &labels(p)))
            })
            .collect(),
    )
}

/// The allowances of one rule. `target` is the selected pod for ingress (named ports are its
/// own); for egress (`None`) named ports are looked up in each destination pod.
fn rule_allows(
    ns: &str,
    peers: &[NetworkPolicyPeer],
    ports: Option<&[NetworkPolicyPort]>,
    target: Option<&Pod>,
    cluster: &Cluster<'_>,
) -> Vec<Allow> {
    let mut numbered = Vec::new();
    let mut named = Vec::new();
    let any_port = ports.is_none_or(<[_]>::is_empty);
    for p in ports.into_iter().flatten().filter_map(policy_port) {
        match (p, target) {
            (PolicyPort::Number(p), _) => numbered.push(p),
            (PolicyPort::Named(protocol, name), Some(pod)) => {
                numbered.extend(named_port(pod, protocol, &name).map(|n| Port {
                    protocol,
                    range: Some((n, n)),
                }));
            }
            (PolicyPort::Named(protocol, name), None) => named.push((protocol, name)),
        }
    }
    // The peers, with the pods they may be (for named egress ports).
    let mut resolved: Vec<(Peer, Vec<&Pod>)> = Vec::new();
    if peers.is_empty() {
        resolved.push((Peer::Any, cluster.pods.to_vec()));
    }
    for peer in peers {
        if let Some(pods) = peer_pods(ns, peer, cluster) {
            let ips: BTreeSet<IpAddr> = pods.iter().flat_map(|p| pod_ips(p)).collect();
            if !ips.is_empty() {
                resolved.push((Peer::Pods(ips), pods));
            }
        } else if let Some(block) = &peer.ip_block
            && let Some(cidr) = Cidr::parse(&block.cidr)
        {
            let except: Vec<Cidr> = block
                .except
                .iter()
                .flatten()
                .filter_map(|e| Cidr::parse(e))
                .collect();
            let inside = cluster
                .pods
                .iter()
                .copied()
                .filter(|p| {
                    pod_ips(p)
                        .iter()
                        .any(|ip| cidr.contains(*ip) && !except.iter().any(|e| e.contains(*ip)))
                })
                .collect();
            resolved.push((Peer::Block { cidr, except }, inside));
        }
    }
    let mut out = Vec::new();
    for (peer, pods) in resolved {
        if any_port {
            out.push(Allow { peer, ports: None });
            continue;
        }
        if !numbered.is_empty() {
            out.push(Allow {
                peer: peer.clone(),
                ports: Some(numbered.clone()),
            });
        }
        // Named egress ports: each destination pod with that port, grouped by its number.
        let mut by_port: BTreeMap<Port, BTreeSet<IpAddr>> = BTreeMap::new();
        for (protocol, name) in &named {
            for pod in &pods {
                if let Some(n) = named_port(pod, *protocol, name) {
                    let port = Port {
                        protocol: *protocol,
                        range: Some((n, n)),
                    };
                    by_port.entry(port).or_default().extend(pod_ips(pod));
                }
            }
        }
        for (port, ips) in by_port.into_iter().filter(|(_, ips)| !ips.is_empty()) {
            out.push(Allow {
                peer: Peer::Pods(ips),
                ports: Some(vec![port]),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(ns: &str, name: &str, labels: serde_json::Value, ip: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"namespace": ns, "name": name, "labels": labels},
            "spec": {"containers": [{"name": "c", "ports": [
                {"name": "http", "containerPort": 8080},
                {"name": "dns", "containerPort": 53, "protocol": "UDP"},
            ]}]},
            "status": {"podIP": ip},
        }))
        .expect("pod")
    }

    fn policy(ns: &str, spec: serde_json::Value) -> NetworkPolicy {
        serde_json::from_value(json!({
            "metadata": {"namespace": ns, "name": "p"},
            "spec": spec,
        }))
        .expect("policy")
    }

    fn ns(name: &str, labels: serde_json::Value) -> Namespace {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}}))
            .expect("namespace")
    }

    fn ips(list: &[&str]) -> Peer {
        Peer::Pods(list.iter().map(|s| s.parse().expect("ip")).collect())
    }

    fn tcp(first: u16, last: u16) -> Port {
        Port {
            protocol: Protocol::Tcp,
            range: Some((first, last)),
        }
    }

    /// Evaluates `specs` (policies in namespace `a`) for the pod `a/web` in a cluster of
    /// `a/web` (app=web, .2), `a/client` (app=client, .3), `b/client` (app=client, .4),
    /// `b/other` (.5), a host-network pod and a pod without an address; namespace `b` is
    /// labelled team=b.
    fn check(specs: &[serde_json::Value], expected: PodPolicy) {
        let mut host = pod("a", "host", json!({"app": "client"}), "192.0.2.1");
        host.spec.as_mut().expect("spec").host_network = Some(true);
        let pods = [
            pod("a", "web", json!({"app": "web"}), "10.0.0.2"),
            pod("a", "client", json!({"app": "client"}), "10.0.0.3"),
            pod("b", "client", json!({"app": "client"}), "10.0.0.4"),
            pod("b", "other", json!({}), "10.0.0.5"),
            host,
            pod("a", "pending", json!({"app": "client"}), ""),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let namespaces = [ns("a", json!({})), ns("b", json!({"team": "b"}))];
        let ns_refs: Vec<&Namespace> = namespaces.iter().collect();
        let cluster = Cluster::new(&refs, &ns_refs);
        let policies: Vec<NetworkPolicy> = specs.iter().map(|s| policy("a", s.clone())).collect();
        let policy_refs: Vec<&NetworkPolicy> = policies.iter().collect();
        assert_eq!(
            evaluate(&pods[0], &policy_refs, &cluster),
            expected,
            "{specs:?}"
        );
    }

    fn ingress(allows: Vec<Allow>) -> PodPolicy {
        PodPolicy {
            ingress: Some(allows),
            egress: None,
        }
    }

    #[test]
    fn a_pod_selected_by_no_policy_is_not_isolated() {
        check(&[], PodPolicy::default());
        // A policy for other pods, and one in another namespace, leave it alone.
        check(
            &[json!({"podSelector": {"matchLabels": {"app": "client"}}})],
            PodPolicy::default(),
        );
        let pods = [pod("a", "web", json!({}), "10.0.0.2")];
        let refs: Vec<&Pod> = pods.iter().collect();
        let other = policy("b", json!({"podSelector": {}}));
        assert!(!evaluate(&pods[0], &[&other], &Cluster::new(&refs, &[])).isolated());
    }

    #[test]
    fn policy_types_default_to_ingress_and_to_egress_when_egress_rules_are_given() {
        // Default deny ingress: an empty pod selector and no rules.
        check(&[json!({"podSelector": {}})], ingress(vec![]));
        // Egress rules make it Ingress and Egress; an empty egress list does not.
        check(
            &[json!({"podSelector": {}, "egress": [{}]})],
            PodPolicy {
                ingress: Some(vec![]),
                egress: Some(vec![Allow {
                    peer: Peer::Any,
                    ports: None,
                }]),
            },
        );
        check(&[json!({"podSelector": {}, "egress": []})], ingress(vec![]));
        // Explicit types: egress only, deny all.
        check(
            &[json!({"podSelector": {}, "policyTypes": ["Egress"]})],
            PodPolicy {
                ingress: None,
                egress: Some(vec![]),
            },
        );
    }

    #[test]
    fn peers_come_from_pod_and_namespace_selectors_alone_and_combined() {
        // podSelector: pods of the policy's namespace only; host-network and address-less pods
        // are no peers.
        check(
            &[json!({"podSelector": {"matchLabels": {"app": "web"}},
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}]})],
            ingress(vec![Allow {
                peer: ips(&["10.0.0.3"]),
                ports: None,
            }]),
        );
        // namespaceSelector: every pod of the matching namespaces.
        check(
            &[json!({"podSelector": {},
                     "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}]}]})],
            ingress(vec![Allow {
                peer: ips(&["10.0.0.4", "10.0.0.5"]),
                ports: None,
            }]),
        );
        // Both in one peer: matching pods of matching namespaces; an empty namespace
        // selector is every namespace.
        check(
            &[json!({"podSelector": {},
                     "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}},
                                            "podSelector": {"matchLabels": {"app": "client"}}}]}]})],
            ingress(vec![Allow {
                peer: ips(&["10.0.0.4"]),
                ports: None,
            }]),
        );
        check(
            &[json!({"podSelector": {},
                     "ingress": [{"from": [{"namespaceSelector": {},
                                            "podSelector": {"matchExpressions": [
                                                {"key": "app", "operator": "In", "values": ["client"]}]}}]}]})],
            ingress(vec![Allow {
                peer: ips(&["10.0.0.3", "10.0.0.4"]),
                ports: None,
            }]),
        );
        // A selector matching no pod with an address allows nothing.
        check(
            &[json!({"podSelector": {},
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "none"}}}]}]})],
            ingress(vec![]),
        );
    }

    #[test]
    fn rules_without_peers_or_ports_allow_everything_and_policies_add_up() {
        check(
            &[json!({"podSelector": {}, "ingress": [{}]})],
            ingress(vec![Allow {
                peer: Peer::Any,
                ports: None,
            }]),
        );
        check(
            &[
                json!({"podSelector": {}}),
                json!({"podSelector": {"matchLabels": {"app": "web"}},
                       "ingress": [{"ports": [{"port": 80}]}]}),
            ],
            ingress(vec![Allow {
                peer: Peer::Any,
                ports: Some(vec![tcp(80, 80)]),
            }]),
        );
    }

    #[test]
    fn ip_blocks_keep_their_exceptions_and_cidrs_are_normalised() {
        check(
            &[json!({"podSelector": {}, "ingress": [{"from": [
                {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.2.3/16"]}},
                {"ipBlock": {"cidr": "fd00::1/64"}}]}]})],
            ingress(vec![
                Allow {
                    peer: Peer::Block {
                        cidr: Cidr::parse("10.0.0.0/8").expect("cidr"),
                        except: vec![Cidr::parse("10.1.0.0/16").expect("cidr")],
                    },
                    ports: None,
                },
                Allow {
                    peer: Peer::Block {
                        cidr: Cidr::parse("fd00::/64").expect("cidr"),
                        except: vec![],
                    },
                    ports: None,
                },
            ]),
        );
        let c = Cidr::parse("10.1.0.0/16").expect("cidr");
        assert!(c.contains("10.1.200.3".parse().expect("ip")));
        assert!(!c.contains("10.2.0.1".parse().expect("ip")));
        assert!(!c.contains("::1".parse().expect("ip")));
        assert_eq!(
            Cidr::parse("10.0.0.7").map(|c| c.to_string()).as_deref(),
            Some("10.0.0.7/32")
        );
        assert_eq!(
            Cidr::parse("0.0.0.0/0").map(|c| c.to_string()).as_deref(),
            Some("0.0.0.0/0")
        );
        assert_eq!(Cidr::parse("10.0.0.0/33"), None);
        assert_eq!(Cidr::parse("nonsense/8"), None);
    }

    #[test]
    fn ports_have_protocols_ranges_and_names() {
        check(
            &[json!({"podSelector": {}, "ingress": [{"ports": [
                {"port": 80},
                {"protocol": "UDP", "port": 5000, "endPort": 5010},
                {"protocol": "SCTP"},
                {"port": "http"},
                {"protocol": "UDP", "port": "dns"},
                {"port": "missing"}]}]})],
            ingress(vec![Allow {
                peer: Peer::Any,
                ports: Some(vec![
                    tcp(80, 80),
                    Port {
                        protocol: Protocol::Udp,
                        range: Some((5000, 5010)),
                    },
                    Port {
                        protocol: Protocol::Sctp,
                        range: None,
                    },
                    tcp(8080, 8080),
                    Port {
                        protocol: Protocol::Udp,
                        range: Some((53, 53)),
                    },
                ]),
            }]),
        );
        // Only unknown named ports: the rule allows nothing.
        check(
            &[json!({"podSelector": {}, "ingress": [{"ports": [{"port": "missing"}]}]})],
            ingress(vec![]),
        );
    }

    #[test]
    fn named_egress_ports_are_looked_up_in_each_destination_pod() {
        let mut other = pod("a", "other", json!({"app": "client"}), "10.0.0.9");
        other.spec.as_mut().expect("spec").containers[0].ports = None;
        let web = pod("a", "web", json!({"app": "web"}), "10.0.0.2");
        let client = pod("a", "client", json!({"app": "client"}), "10.0.0.3");
        let pods = [&web, &client, &other];
        let cluster = Cluster::new(&pods, &[]);
        let p = policy(
            "a",
            json!({"podSelector": {"matchLabels": {"app": "web"}}, "egress": [{
                "to": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                "ports": [{"port": "http"}, {"port": 443}]}]}),
        );
        assert_eq!(
            evaluate(&web, &[&p], &cluster),
            PodPolicy {
                ingress: Some(vec![]),
                egress: Some(vec![
                    Allow {
                        peer: ips(&["10.0.0.3"]),
                        ports: Some(vec![tcp(8080, 8080)]),
                    },
                    Allow {
                        peer: ips(&["10.0.0.3", "10.0.0.9"]),
                        ports: Some(vec![tcp(443, 443)]),
                    },
                ]),
            }
        );
    }
}
