//! A pod's NetworkPolicy as an nftables script, applied inside the pod's network namespace
//! (`nft -f -`). The script replaces the table `inet gitplane_policy` in one transaction (it
//! declares the table, deletes it, declares it again with its chains), so a pod never runs
//! between an old and a new rule set. A pod isolated for ingress gets a chain on the `input`
//! hook, for egress one on `output`; each accepts established and related traffic, loopback,
//! the node (traffic to and from the node a pod runs on is always allowed, as in Kubernetes:
//! probes and the service proxy come from there), then the policy's allowances, and drops the
//! rest. A pod that is not isolated gets no table. Pure: the caller runs `nft`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::IpAddr;

use apimachinery::network_policy::{Allow, Cidr, Peer, PodPolicy, Port, Protocol};

/// The table in each pod's network namespace.
pub const TABLE: &str = "gitplane_policy";

/// The script that makes the pod's table say `policy`; `node` are the addresses of the node
/// as the pod sees it (the bridge's).
pub fn script(policy: &PodPolicy, node: &[IpAddr]) -> String {
    let mut s = format!("table inet {TABLE}\ndelete table inet {TABLE}\n");
    if !policy.isolated() {
        return s;
    }
    let _ = writeln!(s, "table inet {TABLE} {{");
    for (name, hook, allows, addr, iface) in [
        ("ingress", "input", &policy.ingress, "saddr", "iifname"),
        ("egress", "output", &policy.egress, "daddr", "oifname"),
    ] {
        let Some(allows) = allows else { continue };
        let _ = writeln!(s, "\tchain {name} {{");
        let _ = writeln!(
            s,
            "\t\ttype filter hook {hook} priority filter; policy accept;"
        );
        let _ = writeln!(s, "\t\tct state established,related accept");
        let _ = writeln!(s, "\t\t{iface} \"lo\" accept");
        for ip in node {
            let _ = writeln!(s, "\t\t{} {addr} {ip} accept", family(*ip));
        }
        for allow in allows {
            for rule in rules(allow, addr) {
                let _ = writeln!(s, "\t\t{rule} accept");
            }
        }
        let _ = writeln!(s, "\t\tdrop");
        let _ = writeln!(s, "\t}}");
    }
    s.push_str("}\n");
    s
}

fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() { "ip" } else { "ip6" }
}

fn set<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    format!("{{ {} }}", items.join(", "))
}

/// The match expressions (without verdict) of one allowance; `addr` is `saddr` or `daddr`.
fn rules(allow: &Allow, addr: &str) -> Vec<String> {
    let peers: Vec<String> = match &allow.peer {
        Peer::Any => vec![String::new()],
        Peer::Pods(ips) => {
            let (v4, v6): (Vec<&IpAddr>, Vec<&IpAddr>) = ips.iter().partition(|i| i.is_ipv4());
            [("ip", v4), ("ip6", v6)]
                .into_iter()
                .filter(|(_, ips)| !ips.is_empty())
                .map(|(f, ips)| format!("{f} {addr} {}", set(ips)))
                .collect()
        }
        Peer::Block { cidr, except } => {
            let f = family(cidr.addr);
            let except: Vec<&Cidr> = except
                .iter()
                .filter(|e| e.addr.is_ipv4() == cidr.addr.is_ipv4())
                .collect();
            // An anonymous set refuses overlapping intervals: keep the outermost blocks.
            let except: Vec<&Cidr> = except
                .iter()
                .copied()
                .filter(|e| !except.iter().any(|o| o.len < e.len && o.contains(e.addr)))
                .collect();
            let mut m = format!("{f} {addr} {cidr}");
            if !except.is_empty() {
                let _ = write!(m, " {f} {addr} != {}", set(except));
            }
            vec![m]
        }
    };
    let ports: Vec<String> = match &allow.ports {
        None => vec![String::new()],
        Some(ports) => {
            let mut by_protocol: BTreeMap<Protocol, Option<Vec<Port>>> = BTreeMap::new();
            for p in ports {
                let entry = by_protocol
                    .entry(p.protocol)
                    .or_insert_with(|| Some(Vec::new()));
                match (p.range, entry.as_mut()) {
                    (None, _) => *entry = None,
                    (Some(_), Some(list)) => list.push(*p),
                    (Some(_), None) => {}
                }
            }
            by_protocol
                .into_iter()
                .map(|(protocol, ports)| {
                    let l4 = format!("meta l4proto {}", protocol.name());
                    match ports {
                        None => l4,
                        Some(ports) => {
                            let ranges = ports.iter().filter_map(|p| p.range).map(|(a, b)| {
                                if a == b {
                                    a.to_string()
                                } else {
                                    format!("{a}-{b}")
                                }
                            });
                            format!("{l4} th dport {}", set(ranges))
                        }
                    }
                })
                .collect()
        }
    };
    let mut out = Vec::new();
    for peer in &peers {
        for port in &ports {
            let rule = format!("{peer} {port}").trim().to_string();
            out.push(rule);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(policy: PodPolicy, expected: &str) {
        let node: Vec<IpAddr> = vec!["10.88.3.1".parse().expect("ip")];
        assert_eq!(script(&policy, &node), expected, "{policy:?}");
    }

    fn tcp(a: u16, b: u16) -> Port {
        Port {
            protocol: Protocol::Tcp,
            range: Some((a, b)),
        }
    }

    #[test]
    fn a_pod_that_is_not_isolated_has_no_table() {
        check(
            PodPolicy::default(),
            "table inet gitplane_policy\ndelete table inet gitplane_policy\n",
        );
    }

    #[test]
    fn default_deny_ingress_allows_replies_loopback_and_the_node_only() {
        check(
            PodPolicy {
                ingress: Some(vec![]),
                egress: None,
            },
            "table inet gitplane_policy
delete table inet gitplane_policy
table inet gitplane_policy {
\tchain ingress {
\t\ttype filter hook input priority filter; policy accept;
\t\tct state established,related accept
\t\tiifname \"lo\" accept
\t\tip saddr 10.88.3.1 accept
\t\tdrop
\t}
}
",
        );
    }

    #[test]
    fn allowances_become_address_sets_blocks_and_port_sets_per_protocol() {
        let pods = Peer::Pods(
            ["10.88.3.4", "10.88.3.5", "fd00::4"]
                .iter()
                .map(|s| s.parse().expect("ip"))
                .collect(),
        );
        let block = Peer::Block {
            cidr: Cidr::parse("10.0.0.0/8").expect("cidr"),
            except: vec![
                Cidr::parse("10.1.0.0/16").expect("cidr"),
                Cidr::parse("10.2.0.0/16").expect("cidr"),
                Cidr::parse("10.2.3.0/24").expect("cidr"),
            ],
        };
        check(
            PodPolicy {
                ingress: None,
                egress: Some(vec![
                    Allow {
                        peer: pods,
                        ports: Some(vec![
                            tcp(80, 80),
                            tcp(8000, 8080),
                            Port {
                                protocol: Protocol::Udp,
                                range: None,
                            },
                            Port {
                                protocol: Protocol::Udp,
                                range: Some((53, 53)),
                            },
                        ]),
                    },
                    Allow {
                        peer: block,
                        ports: None,
                    },
                    Allow {
                        peer: Peer::Any,
                        ports: Some(vec![Port {
                            protocol: Protocol::Sctp,
                            range: Some((9, 9)),
                        }]),
                    },
                ]),
            },
            "table inet gitplane_policy
delete table inet gitplane_policy
table inet gitplane_policy {
\tchain egress {
\t\ttype filter hook output priority filter; policy accept;
\t\tct state established,related accept
\t\toifname \"lo\" accept
\t\tip daddr 10.88.3.1 accept
\t\tip daddr { 10.88.3.4, 10.88.3.5 } meta l4proto tcp th dport { 80, 8000-8080 } accept
\t\tip daddr { 10.88.3.4, 10.88.3.5 } meta l4proto udp accept
\t\tip6 daddr { fd00::4 } meta l4proto tcp th dport { 80, 8000-8080 } accept
\t\tip6 daddr { fd00::4 } meta l4proto udp accept
\t\tip daddr 10.0.0.0/8 ip daddr != { 10.1.0.0/16, 10.2.0.0/16 } accept
\t\tmeta l4proto sctp th dport { 9 } accept
\t\tdrop
\t}
}
",
        );
    }
}
