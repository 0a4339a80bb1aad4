//! Pod networking for the process runtime: a bridge on the host with the first address of the
//! node's pod CIDR (a /24), and per pod a network namespace with loopback up and a veth whose
//! host end is on the bridge and whose pod end (`eth0`) has an address, with a default route
//! through the bridge. Addresses go round robin ([`next_address`], as CNI's `host-local` IPAM
//! allocates): a new pod never takes the address of a pod that just went, whose MAC the host's
//! neighbour table still holds (until that entry fails, some 20 to 50 s later, nothing on the
//! host could reach the new pod: its readiness probes timed out and rollouts waited). The
//! neighbour entry of an address is also flushed when a pod takes it. Nothing is forwarded or masqueraded: pod traffic stays on
//! this machine. All of it is done over rtnetlink from this process ([`super::netlink`]), with
//! no `ip` process (seven of them per pod took most of a sandbox's start-up), so it needs
//! root; containers still start through `ip netns exec`. The bridge is
//! `gpbr<N>` for the pod CIDR 10.88.N.0/24 (N: the CIDR's third octet), one per runtime, and
//! its pods' namespaces are `gp<N>-<sandbox id prefix>` ([`Network::netns_name`]), so the
//! runtime holding bridge N's lock owns them. A starting runtime ([`sweep`]) deletes the bridges
//! and namespaces of runtimes that were killed (whose lock nobody holds), and the namespaces
//! of its own bridge left from an earlier run (the process runtime keeps its sandboxes in
//! memory and adopts none: their containers died with it), so a killed runtime leaks nothing
//! past the next start.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;

use super::Error;
use super::netlink::{self, NETNS_DIR, Netlink};

/// Pod networking on one bridge.
#[derive(Debug)]
pub struct Network {
    bridge: String,
    /// The bridge's link index.
    bridge_index: u32,
    /// The first three octets of the /24.
    prefix: [u8; 3],
    /// The last octets in use, and the last one handed out.
    used: std::sync::Mutex<(BTreeSet<u8>, u8)>,
    _lock: std::fs::File,
}

/// The host octet for a new pod: the first free one after `last` (2 to 254, wrapping around).
pub fn next_address(used: &BTreeSet<u8>, last: u8) -> Option<u8> {
    (last.saturating_add(1).max(2)..=254)
        .chain(2..=last.min(254))
        .find(|o| !used.contains(o))
}

/// Whether this process can set pod networks up: root with `ip` on PATH (containers start
/// through `ip netns exec`).
pub fn available() -> bool {
    nix::unistd::geteuid().is_root()
        && Command::new("ip")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
}

fn network_error(e: std::io::Error) -> Error {
    Error::Network(e.to_string())
}

/// Parses `a.b.c.0/24` (only /24 CIDRs are supported).
pub fn parse_cidr(cidr: &str) -> Result<[u8; 3], Error> {
    let bad = || {
        Error::Network(format!(
            "pod CIDR {cidr:?}: expected an IPv4 /24 like 10.88.0.0/24"
        ))
    };
    let (addr, len) = cidr.split_once('/').ok_or_else(bad)?;
    if len != "24" {
        return Err(bad());
    }
    let a: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let o = a.octets();
    Ok([o[0], o[1], o[2]])
}

/// Where the locks that keep two runtimes off one bridge live.
const LOCK_DIR: &str = "/run/gitplane";

/// Takes the lock of bridge number `n` (held while the file stays open); `None` when another
/// runtime holds it.
fn claim(n: u8) -> Option<std::fs::File> {
    std::fs::create_dir_all(LOCK_DIR).ok()?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(format!("{LOCK_DIR}/gpbr{n}.lock"))
        .ok()?;
    file.try_lock().ok()?;
    Some(file)
}

/// A legacy namespace (`gp-<id>`, named before namespaces carried their bridge's number) this
/// young is never swept: its runtime may still be wiring it up.
const LEGACY_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// The bridge number of a pod namespace `gp<N>-<id>`.
pub fn netns_bridge(name: &str) -> Option<u8> {
    let (n, id) = name.strip_prefix("gp")?.split_once('-')?;
    if id.is_empty() {
        return None;
    }
    n.parse().ok()
}

/// Named network namespaces (`ip netns list`, read from its directory).
fn namespaces() -> Vec<String> {
    std::fs::read_dir(NETNS_DIR)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Deletes the pod namespaces of bridge `n` (the caller holds its lock).
fn delete_namespaces_of(n: u8) {
    for ns in namespaces() {
        if netns_bridge(&ns) == Some(n) {
            tracing::info!(netns = %ns, "deleting the network namespace of a pod of a runtime that is gone");
            let _ = netlink::delete_namespace(&ns);
        }
    }
}

/// Whether a legacy pod namespace `gp-<id>` is left over: older than [`LEGACY_GRACE`] and its
/// host veth `gv<id>` is gone or on no bridge (its runtime's bridge was deleted).
fn legacy_stale(name: &str) -> bool {
    let Some(id) = name.strip_prefix("gp-") else {
        return false;
    };
    let old = std::fs::symlink_metadata(format!("{NETNS_DIR}/{name}"))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > LEGACY_GRACE);
    let on_bridge = std::path::Path::new(&format!("/sys/class/net/gv{id}/master")).exists();
    old && !on_bridge
}

/// Deletes what runtimes that were killed left: a `gpbr<N>` bridge and `gp<N>-*` namespaces
/// whose lock nobody holds, and legacy `gp-<id>` namespaces whose veth is on no bridge.
fn sweep() {
    let mut numbers: BTreeSet<u8> = BTreeSet::new();
    if let Ok(links) = std::fs::read_dir("/sys/class/net") {
        for link in links.flatten() {
            let name = link.file_name().to_string_lossy().into_owned();
            if let Some(n) = name.strip_prefix("gpbr").and_then(|n| n.parse::<u8>().ok()) {
                numbers.insert(n);
            }
        }
    }
    let spaces = namespaces();
    numbers.extend(spaces.iter().filter_map(|ns| netns_bridge(ns)));
    let host = Netlink::open();
    for n in numbers {
        if let Some(_lock) = claim(n) {
            delete_namespaces_of(n);
            if let Ok(host) = &host {
                let _ = host.delete_link(&format!("gpbr{n}"));
            }
        }
    }
    for ns in spaces.iter().filter(|ns| legacy_stale(ns)) {
        tracing::info!(netns = %ns, "deleting a pod network namespace left over");
        let _ = netlink::delete_namespace(ns);
    }
}

/// The bridge's MAC for the pod CIDR `prefix`: locally administered (`02:67:70`, "gp"), then the
/// CIDR's three octets. Set when the bridge is made, so the kernel keeps it: a bridge without an
/// address of its own takes the lowest MAC among its ports and changes it as veths come and go
/// (some twenty times in one `bench gitops-rollout`). Each change left every pod sending to the
/// gateway's old MAC: the answer to a request the pod had just received went nowhere until the
/// pod learned the new one (a request through the NodePort then hung past the benchmark's 2 s
/// timeout in 5 of its 90 transitions in six runs; none in 180 with the MAC set). CNI's bridge
/// plugin sets its bridge's MAC for the same reason (containernetworking/cni#285, after
/// kubernetes/kubernetes#30783), so the containerd runtime's pods have a fixed one already.
pub fn bridge_mac(prefix: [u8; 3]) -> [u8; 6] {
    [0x02, 0x67, 0x70, prefix[0], prefix[1], prefix[2]]
}

impl Network {
    /// Sets up the bridge of `cidr` (`gpbr<third octet>` with the CIDR's first address), or,
    /// without a CIDR, of the first free 10.88.N.0/24 starting from a number derived from
    /// `seed`. A lock file per bridge keeps two runtimes apart; a bridge left behind by a
    /// runtime that was killed is taken over.
    pub fn setup(cidr: Option<&str>, seed: &str) -> Result<Network, Error> {
        sweep();
        let (prefix, lock) = match cidr {
            Some(c) => {
                let p = parse_cidr(c)?;
                let lock = claim(p[2]).ok_or_else(|| {
                    Error::Network(format!(
                        "pod CIDR {c} is in use by another gitplane runtime"
                    ))
                })?;
                (p, lock)
            }
            None => {
                let start = seed
                    .bytes()
                    .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32))
                    % 250;
                (0..250u32)
                    .map(|i| ((start + i) % 250 + 1) as u8)
                    .find_map(|n| claim(n).map(|l| ([10, 88, n], l)))
                    .ok_or_else(|| Error::Network("no free pod CIDR in 10.88.0.0/16".into()))?
            }
        };
        let bridge = format!("gpbr{}", prefix[2]);
        netlink::prepare_netns_dir().map_err(network_error)?;
        // A bridge whose lock was free is left over from a killed runtime: start afresh, and
        // without the namespaces of that runtime's pods.
        delete_namespaces_of(prefix[2]);
        let host = Netlink::open().map_err(network_error)?;
        let _ = host.delete_link(&bridge);
        host.add_bridge(&bridge, bridge_mac(prefix))
            .map_err(network_error)?;
        let bridge_index = host.index(&bridge).map_err(network_error)?;
        let gateway = Ipv4Addr::new(prefix[0], prefix[1], prefix[2], 1);
        host.replace_address(bridge_index, gateway, 24)
            .map_err(network_error)?;
        Ok(Network {
            bridge,
            bridge_index,
            prefix,
            used: std::sync::Mutex::new((BTreeSet::new(), 1)),
            _lock: lock,
        })
    }

    /// The pod CIDR.
    pub fn cidr(&self) -> String {
        format!(
            "{}.{}.{}.0/24",
            self.prefix[0], self.prefix[1], self.prefix[2]
        )
    }

    /// The bridge's name.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// The network namespace of the pod sandbox `id`: `gp<N>-<first 12 characters of id>`.
    pub fn netns_name(&self, id: &str) -> String {
        format!("gp{}-{}", self.prefix[2], &id[..id.len().min(12)])
    }

    /// Creates the namespace `netns` with its veth and an address; returns the address.
    pub fn add_pod(&self, netns: &str, host_veth: &str) -> Result<String, Error> {
        let octet = {
            let mut guard = self.used.lock().map_err(|_| Error::Poisoned)?;
            let (used, last) = &mut *guard;
            let free = next_address(used, *last)
                .ok_or_else(|| Error::Network("no free pod address in the pod CIDR".into()))?;
            used.insert(free);
            *last = free;
            free
        };
        let addr = Ipv4Addr::new(self.prefix[0], self.prefix[1], self.prefix[2], octet);
        let gateway = Ipv4Addr::new(self.prefix[0], self.prefix[1], self.prefix[2], 1);
        let result = (|| {
            let host = Netlink::open()?;
            let pod = netlink::new_namespace(netns)?;
            pod.loopback_up()?;
            let path = std::path::Path::new(NETNS_DIR).join(netns);
            host.add_veth(host_veth, self.bridge_index, "eth0", &path)?;
            // Forget a MAC an earlier pod left for this address (when the octets wrapped).
            let _ = host.forget_neighbour(self.bridge_index, addr);
            let eth0 = pod.index("eth0")?;
            pod.replace_address(eth0, addr, 24)?;
            pod.up(eth0)?;
            pod.add_default_route(gateway)
        })();
        if let Err(e) = result {
            self.remove_pod(netns, host_veth, &addr.to_string());
            return Err(network_error(e));
        }
        Ok(addr.to_string())
    }

    /// Deletes the namespace and the veth and frees the address.
    pub fn remove_pod(&self, netns: &str, host_veth: &str, addr: &str) {
        let _ = netlink::delete_namespace(netns);
        if let Ok(host) = Netlink::open() {
            let _ = host.delete_link(host_veth);
        }
        if let Some(o) = addr.rsplit('.').next().and_then(|o| o.parse::<u8>().ok())
            && let Ok(mut used) = self.used.lock()
        {
            used.0.remove(&o);
        }
    }

    /// Deletes the bridge.
    pub fn teardown(&self) {
        if let Ok(host) = Netlink::open() {
            let _ = host.delete_link(&self.bridge);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac_of(link: &str) -> String {
        std::fs::read_to_string(format!("/sys/class/net/{link}/address"))
            .unwrap_or_else(|e| panic!("reading the MAC of {link}: {e}"))
            .trim()
            .to_owned()
    }

    /// Needs root, as the process runtime's pod network does (the test command runs as root).
    #[test]
    fn the_bridge_keeps_its_mac_while_pods_come_and_go() {
        /// Deletes the bridge however the test ends.
        struct Teardown(Network);
        impl Drop for Teardown {
            fn drop(&mut self) {
                self.0.teardown();
            }
        }
        let net = Teardown(
            Network::setup(None, "bridge-mac-test")
                .unwrap_or_else(|e| panic!("setting up a pod network needs root: {e}")),
        );
        let net = &net.0;
        let expected = bridge_mac(net.prefix)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(mac_of(net.bridge()), expected);
        let pods: Vec<(String, String, String)> = (0..3)
            .map(|i| {
                let id = format!("bridgemac{i}{}", std::process::id());
                let (netns, veth) = (net.netns_name(&id), format!("gpt{i}{}", std::process::id()));
                let ip = net.add_pod(&netns, &veth).expect("add a pod");
                // Each new port could have become the bridge's lowest MAC.
                assert_eq!(mac_of(net.bridge()), expected, "after adding {veth}");
                (netns, veth, ip)
            })
            .collect();
        for (netns, veth, ip) in &pods {
            net.remove_pod(netns, veth, ip);
            assert_eq!(mac_of(net.bridge()), expected, "after removing {veth}");
        }
    }

    fn check(used: &[u8], last: u8, expected: Option<u8>) {
        let set: BTreeSet<u8> = used.iter().copied().collect();
        assert_eq!(
            next_address(&set, last),
            expected,
            "used {used:?}, last {last}"
        );
    }

    #[test]
    fn addresses_go_round_robin_so_a_freed_one_is_not_taken_again_at_once() {
        // The first pod gets .2 (.1 is the bridge).
        check(&[], 1, Some(2));
        // .2 was freed just now: the next pod gets .3, not .2.
        check(&[], 2, Some(3));
        check(&[3, 4], 2, Some(5));
        // After .254 it wraps around to the first free one.
        check(&[], 254, Some(2));
        check(&[2, 3, 254], 254, Some(4));
        check(&[2, 3], 200, Some(201));
        // All taken.
        let all: Vec<u8> = (2..=254).collect();
        check(&all, 100, None);
        check(&all[1..], 100, Some(2));
    }

    #[test]
    fn a_pod_namespace_names_its_bridge() {
        let cases = [
            ("gp7-0a3102817cf8", Some(7)),
            ("gp254-abc", Some(254)),
            ("gp-0a3102817cf8", None),
            ("gp7-", None),
            ("gp300-abc", None),
            ("cni-1234", None),
            ("gpx-abc", None),
        ];
        for (name, want) in cases {
            assert_eq!(netns_bridge(name), want, "{name}");
        }
    }

    #[test]
    fn only_ipv4_slash_24_cidrs_are_accepted() {
        assert_eq!(parse_cidr("10.88.3.0/24").ok(), Some([10, 88, 3]));
        assert!(parse_cidr("10.88.3.0/16").is_err());
        assert!(parse_cidr("10.88.3.0").is_err());
        assert!(parse_cidr("fd00::/24").is_err());
    }
}
