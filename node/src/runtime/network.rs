//! Pod networking for the process runtime: a bridge on the host with the first address of the
//! node's pod CIDR (a /24), and per pod a network namespace with loopback up and a veth whose
//! host end is on the bridge and whose pod end (`eth0`) has the next free address, with a
//! default route through the bridge. Nothing is forwarded or masqueraded: pod traffic stays on
//! this machine. All of it is done with `ip` (iproute2), so it needs root.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;

use super::Error;

/// Pod networking on one bridge.
#[derive(Debug)]
pub struct Network {
    bridge: String,
    /// The first three octets of the /24.
    prefix: [u8; 3],
    used: std::sync::Mutex<BTreeSet<u8>>,
}

/// Whether this process can set pod networks up: root with `ip` on PATH.
pub fn available() -> bool {
    nix::unistd::geteuid().is_root()
        && Command::new("ip")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
}

fn ip(args: &[&str]) -> Result<(), Error> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| Error::Network(format!("ip {}: {e}", args.join(" "))))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Network(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Parses `a.b.c.0/24` (only /24 CIDRs are supported).
pub fn parse_cidr(cidr: &str) -> Result<[u8; 3], Error> {
    let bad = || Error::Network(format!("pod CIDR {cidr:?}: expected an IPv4 /24 like 10.88.0.0/24"));
    let (addr, len) = cidr.split_once('/').ok_or_else(bad)?;
    if len != "24" {
        return Err(bad());
    }
    let a: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let o = a.octets();
    Ok([o[0], o[1], o[2]])
}

impl Network {
    /// Creates (or reuses) the bridge `bridge` with the gateway address of `cidr`.
    pub fn setup(bridge: &str, cidr: &str) -> Result<Network, Error> {
        let prefix = parse_cidr(cidr)?;
        let exists = Command::new("ip")
            .args(["link", "show", bridge])
            .output()
            .is_ok_and(|o| o.status.success());
        if !exists {
            ip(&["link", "add", bridge, "type", "bridge"])?;
        }
        let gateway = format!("{}.{}.{}.1/24", prefix[0], prefix[1], prefix[2]);
        let _ = ip(&["addr", "replace", &gateway, "dev", bridge]);
        ip(&["link", "set", bridge, "up"])?;
        Ok(Network {
            bridge: bridge.to_string(),
            prefix,
            used: std::sync::Mutex::new(BTreeSet::new()),
        })
    }

    /// The bridge's name.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// Creates the namespace `netns` with its veth and an address; returns the address.
    pub fn add_pod(&self, netns: &str, host_veth: &str) -> Result<String, Error> {
        let octet = {
            let mut used = self.used.lock().map_err(|_| Error::Poisoned)?;
            let free = (2..=254u8)
                .find(|o| !used.contains(o))
                .ok_or_else(|| Error::Network("no free pod address in the pod CIDR".into()))?;
            used.insert(free);
            free
        };
        let addr = format!("{}.{}.{}.{octet}", self.prefix[0], self.prefix[1], self.prefix[2]);
        let result = (|| {
            ip(&["netns", "add", netns])?;
            ip(&["-n", netns, "link", "set", "lo", "up"])?;
            ip(&[
                "link", "add", host_veth, "type", "veth", "peer", "name", "eth0", "netns", netns,
            ])?;
            ip(&["link", "set", host_veth, "master", &self.bridge, "up"])?;
            ip(&["-n", netns, "addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
            ip(&["-n", netns, "link", "set", "eth0", "up"])?;
            let gw = format!("{}.{}.{}.1", self.prefix[0], self.prefix[1], self.prefix[2]);
            ip(&["-n", netns, "route", "add", "default", "via", &gw])
        })();
        if let Err(e) = result {
            self.remove_pod(netns, host_veth, &addr);
            return Err(e);
        }
        Ok(addr)
    }

    /// Deletes the namespace and the veth and frees the address.
    pub fn remove_pod(&self, netns: &str, host_veth: &str, addr: &str) {
        let _ = ip(&["netns", "del", netns]);
        let _ = ip(&["link", "del", host_veth]);
        if let Some(o) = addr.rsplit('.').next().and_then(|o| o.parse::<u8>().ok())
            && let Ok(mut used) = self.used.lock()
        {
            used.remove(&o);
        }
    }

    /// Deletes the bridge.
    pub fn teardown(&self) {
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ipv4_slash_24_cidrs_are_accepted() {
        assert_eq!(parse_cidr("10.88.3.0/24").ok(), Some([10, 88, 3]));
        assert!(parse_cidr("10.88.3.0/16").is_err());
        assert!(parse_cidr("10.88.3.0").is_err());
        assert!(parse_cidr("fd00::/24").is_err());
    }
}
