//! ClusterIP and NodePort allocation for Services.
//!
//! Every allocated address and node port is a key of its own in storage
//! (`/registry/gitplane.io/serviceips/<ip>`, `/registry/gitplane.io/servicenodeports/<port>`)
//! whose value names the owning Service. Allocating is creating that key, so two API servers on
//! one etcd can never hand out the same value (Kubernetes 1.33 does the same with `IPAddress`
//! objects). A Service create or update allocates before it writes and releases what it
//! allocated when the write fails; a Service leaving storage releases its keys.
//!
//! Known gap: a crash between the allocation and the Service write leaks that one value (there
//! is no repair loop).

use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::sync::Arc;

use apimachinery::object::ObjectExt;
use apimachinery::registry::ResourceInfo;
use apimachinery::status::{FieldError, StatusError};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::response::storage_error;
use crate::state::ApiState;
use crate::storage::StorageError;

const IP_PREFIX: &str = "/registry/gitplane.io/serviceips/";
const PORT_PREFIX: &str = "/registry/gitplane.io/servicenodeports/";

/// An IPv4 range in CIDR notation (`10.96.0.0/12`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Cidr {
    base: u32,
    prefix: u8,
}

/// Why a range flag could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// Not `a.b.c.d/n` with n in 1..=30.
    #[error("invalid CIDR {0:?}: expected an IPv4 range such as 10.96.0.0/12 (prefix 1-30)")]
    Cidr(String),
    /// Not `low-high` with 1 <= low <= high <= 65535.
    #[error("invalid port range {0:?}: expected LOW-HIGH such as 30000-32767")]
    Ports(String),
}

impl FromStr for Ipv4Cidr {
    type Err = RangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || RangeError::Cidr(s.to_string());
        let (ip, prefix) = s.split_once('/').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if !(1..=30).contains(&prefix) {
            return Err(bad());
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Ipv4Cidr {
            base: u32::from(ip) & mask,
            prefix,
        })
    }
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

impl Ipv4Cidr {
    /// How many addresses can be handed out (the network and broadcast addresses cannot).
    pub fn usable(&self) -> u32 {
        (1u32 << (32 - self.prefix)) - 2
    }

    /// The `i`-th usable address (0-based; the first is the network address plus one).
    pub fn nth(&self, i: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1 + i % self.usable())
    }

    /// Whether the range lies inside 127.0.0.0/8 (loopback: every address is local).
    pub fn is_loopback(&self) -> bool {
        Ipv4Addr::from(self.base).is_loopback()
    }

    /// Whether `ip` is a usable address of the range.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        ip > self.base && ip - self.base <= self.usable()
    }
}

/// The ranges Services get their cluster IPs and node ports from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRanges {
    /// Cluster IPs (`--service-cluster-ip-range`).
    pub cluster_ips: Ipv4Cidr,
    /// Node ports (`--service-node-port-range`).
    pub node_ports: RangeInclusive<u16>,
}

impl Default for ServiceRanges {
    fn default() -> Self {
        ServiceRanges {
            cluster_ips: Ipv4Cidr {
                base: u32::from(Ipv4Addr::new(10, 96, 0, 0)),
                prefix: 12,
            },
            node_ports: 30000..=32767,
        }
    }
}

/// Parses `LOW-HIGH` (`30000-32767`).
pub fn parse_port_range(s: &str) -> Result<RangeInclusive<u16>, RangeError> {
    let bad = || RangeError::Ports(s.to_string());
    let (low, high) = s.split_once('-').ok_or_else(bad)?;
    let (low, high): (u16, u16) = (
        low.trim().parse().map_err(|_| bad())?,
        high.trim().parse().map_err(|_| bad())?,
    );
    if low == 0 || low > high {
        return Err(bad());
    }
    Ok(low..=high)
}

/// The keys one request allocated, to release if its write fails.
#[derive(Debug, Default)]
#[must_use]
pub struct Allocated {
    keys: Vec<String>,
}

fn is_service(info: &ResourceInfo) -> bool {
    info.group.is_empty() && info.kind == "Service" && !info.custom
}

fn owner(obj: &Value) -> String {
    format!(
        "{}/{}",
        obj.namespace().unwrap_or(""),
        obj.name().unwrap_or("")
    )
}

fn service_type(obj: &Value) -> &str {
    obj.path("spec.type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
}

fn uses_node_ports(obj: &Value) -> bool {
    matches!(service_type(obj), "NodePort" | "LoadBalancer")
}

fn cluster_ip(obj: &Value) -> Option<&str> {
    obj.path("spec.clusterIP")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The node ports a Service holds.
fn node_ports(obj: &Value) -> Vec<u16> {
    ports(obj)
        .iter()
        .filter_map(|p| p.get("nodePort").and_then(Value::as_u64))
        .filter_map(|p| u16::try_from(p).ok())
        .collect()
}

fn ports(obj: &Value) -> Vec<Value> {
    obj.path("spec.ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The port of `old` that `new_port` continues: same name, or same port and protocol.
fn matching_old_port<'a>(old: &'a [Value], new_port: &Value) -> Option<&'a Value> {
    let name = new_port.get("name").and_then(Value::as_str).unwrap_or("");
    old.iter().find(|p| {
        let same_name = p.get("name").and_then(Value::as_str).unwrap_or("") == name;
        if !name.is_empty() {
            return same_name;
        }
        p.get("port") == new_port.get("port") && p.get("protocol") == new_port.get("protocol")
    })
}

impl ApiState {
    /// Fills in (and checks) the cluster IP and node ports of a Service being created or
    /// updated (`old`), allocating what is new. Dry runs check but reserve nothing.
    pub async fn allocate_service(
        self: &Arc<Self>,
        info: &ResourceInfo,
        obj: &mut Value,
        old: Option<&Value>,
        dry_run: bool,
    ) -> Result<Allocated, StatusError> {
        let mut allocated = Allocated::default();
        if !is_service(info) {
            return Ok(allocated);
        }
        match self
            .allocate_into(info, obj, old, dry_run, &mut allocated)
            .await
        {
            Ok(()) => Ok(allocated),
            Err(e) => {
                self.release(allocated).await;
                Err(e)
            }
        }
    }

    async fn allocate_into(
        self: &Arc<Self>,
        info: &ResourceInfo,
        obj: &mut Value,
        old: Option<&Value>,
        dry_run: bool,
        allocated: &mut Allocated,
    ) -> Result<(), StatusError> {
        let name = obj.name().unwrap_or("").to_string();
        let invalid = |e: FieldError| StatusError::invalid("", &info.kind, &name, vec![e]);
        let owner = owner(obj);
        let external = service_type(obj) == "ExternalName";

        // The cluster IP.
        let old_ip = old.and_then(cluster_ip).map(str::to_string);
        let wanted = cluster_ip(obj).map(str::to_string);
        let ip = match (&old_ip, wanted) {
            _ if external => None,
            (Some(o), None) => Some(o.clone()),
            (Some(o), Some(w)) if *o == w => Some(w),
            (Some(o), Some(w)) => {
                return Err(invalid(FieldError::invalid(
                    "spec.clusterIPs[0]",
                    &w,
                    format!("may not change once set (it is {o})"),
                )));
            }
            (None, Some(w)) if w == "None" => Some(w),
            (None, Some(w)) => {
                let ip: Ipv4Addr = w.parse().map_err(|_| {
                    invalid(FieldError::invalid(
                        "spec.clusterIPs[0]",
                        &w,
                        "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                    ))
                })?;
                let range = self.services.cluster_ips;
                if !range.contains(ip) {
                    return Err(invalid(FieldError::invalid(
                        "spec.clusterIPs",
                        &w,
                        format!(
                            "failed to allocate IP {w}: the provided IP ({w}) is not in the valid range. The range of valid IPs is {range}"
                        ),
                    )));
                }
                let key = format!("{IP_PREFIX}{ip}");
                if !self.claim(&key, &owner, dry_run, allocated, &name).await? {
                    return Err(invalid(FieldError::invalid(
                        "spec.clusterIPs",
                        &w,
                        format!("failed to allocate IP {w}: provided IP is already allocated"),
                    )));
                }
                Some(w)
            }
            (None, None) => Some(self.allocate_ip(&owner, dry_run, allocated, &name).await?),
        };
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            match &ip {
                Some(ip) => {
                    spec.insert("clusterIP".into(), json!(ip));
                    spec.insert("clusterIPs".into(), json!([ip]));
                    if ip != "None" || !spec.contains_key("ipFamilies") {
                        spec.entry("ipFamilies").or_insert(json!(["IPv4"]));
                        spec.entry("ipFamilyPolicy").or_insert(json!("SingleStack"));
                    }
                }
                None => {
                    spec.remove("clusterIP");
                    spec.remove("clusterIPs");
                }
            }
        }

        // Node ports.
        let old_ports = old.map(ports).unwrap_or_default();
        let node_port_type = uses_node_ports(obj);
        let old_held: Vec<u16> = old.map(node_ports).unwrap_or_default();
        let mut new_ports = ports(obj);
        for (i, port) in new_ports.iter_mut().enumerate() {
            let field = format!("spec.ports[{i}].nodePort");
            let previous = matching_old_port(&old_ports, port)
                .and_then(|p| p.get("nodePort"))
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok());
            let given = port
                .get("nodePort")
                .and_then(Value::as_i64)
                .filter(|p| *p != 0);
            let Some(map) = port.as_object_mut() else {
                continue;
            };
            if !node_port_type {
                match given {
                    // Kept from when the type allowed it: dropped with the type change.
                    Some(g) if previous.map(i64::from) == Some(g) => {
                        map.remove("nodePort");
                    }
                    Some(g) => {
                        return Err(invalid(FieldError::forbidden(
                            field,
                            format!(
                                "may not be used when `type` is '{}' (got {g})",
                                service_type(obj)
                            ),
                        )));
                    }
                    None => {
                        map.remove("nodePort");
                    }
                }
                continue;
            }
            let chosen = match given {
                Some(g) if previous.map(i64::from) == Some(g) => g as u16,
                Some(g) if old_held.iter().any(|p| i64::from(*p) == g) => g as u16,
                Some(g) => {
                    let range = &self.services.node_ports;
                    let Some(p) = u16::try_from(g).ok().filter(|p| range.contains(p)) else {
                        return Err(invalid(FieldError::invalid(
                            field,
                            &g.to_string(),
                            format!(
                                "provided port is not in the valid range. The range of valid ports is {}-{}",
                                range.start(),
                                range.end()
                            ),
                        )));
                    };
                    let key = format!("{PORT_PREFIX}{p}");
                    if !self.claim(&key, &owner, dry_run, allocated, &name).await? {
                        return Err(invalid(FieldError::invalid(
                            field,
                            &g.to_string(),
                            "provided port is already allocated",
                        )));
                    }
                    p
                }
                None => match previous {
                    Some(p) => p,
                    None => {
                        self.allocate_port(&owner, dry_run, allocated, &name)
                            .await?
                    }
                },
            };
            map.insert("nodePort".into(), json!(chosen));
        }
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut)
            && spec.contains_key("ports")
        {
            spec.insert("ports".into(), Value::Array(new_ports));
        }
        Ok(())
    }

    /// Creates the allocation key; `false` when someone holds it. A dry run only looks.
    async fn claim(
        &self,
        key: &str,
        owner: &str,
        dry_run: bool,
        allocated: &mut Allocated,
        name: &str,
    ) -> Result<bool, StatusError> {
        let err = |e| storage_error(e, "", "services", name);
        if dry_run {
            let (_, kv) = self.store().get(key).await.map_err(err)?;
            return Ok(kv.is_none());
        }
        let value = Bytes::from(json!({ "service": owner }).to_string());
        match self.store().create(key, value).await {
            Ok(_) => {
                allocated.keys.push(key.to_string());
                Ok(true)
            }
            Err(StorageError::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(err(e)),
        }
    }

    /// Picks a free cluster IP: a pseudo-random start, then the next free one.
    async fn allocate_ip(
        &self,
        owner: &str,
        dry_run: bool,
        allocated: &mut Allocated,
        name: &str,
    ) -> Result<String, StatusError> {
        let range = self.services.cluster_ips;
        let size = range.usable();
        let start = random_u32() % size;
        // The first address is the `kubernetes` Service's in Kubernetes; hand it out last.
        for i in 0..size.min(MAX_PROBES) {
            let offset = (start + i) % size;
            let ip = range.nth(if offset == 0 { size - 1 } else { offset });
            let key = format!("{IP_PREFIX}{ip}");
            if self.cache().get(&key).is_some() {
                continue;
            }
            if self.claim(&key, owner, dry_run, allocated, name).await? {
                return Ok(ip.to_string());
            }
        }
        Err(StatusError::internal(format!(
            "failed to allocate a serviceIP: range {range} is full"
        )))
    }

    /// Picks a free node port.
    async fn allocate_port(
        &self,
        owner: &str,
        dry_run: bool,
        allocated: &mut Allocated,
        name: &str,
    ) -> Result<u16, StatusError> {
        let range = self.services.node_ports.clone();
        let size = u32::from(*range.end() - *range.start()) + 1;
        let start = random_u32() % size;
        for i in 0..size {
            let port = *range.start() + ((start + i) % size) as u16;
            let key = format!("{PORT_PREFIX}{port}");
            if self.cache().get(&key).is_some() {
                continue;
            }
            if self.claim(&key, owner, dry_run, allocated, name).await? {
                return Ok(port);
            }
        }
        Err(StatusError::internal(format!(
            "failed to allocate a nodePort: range {}-{} is full",
            range.start(),
            range.end()
        )))
    }

    /// Gives back what a failed request allocated.
    pub async fn release(&self, allocated: Allocated) {
        for key in allocated.keys {
            if let Err(e) = self.store().delete(&key, None).await {
                tracing::warn!(%key, error = %e, "could not release a service allocation");
            }
        }
    }

    /// Releases what `old` held and `new` (None: deleted) no longer does.
    pub async fn release_service(&self, info: &ResourceInfo, old: &Value, new: Option<&Value>) {
        if !is_service(info) {
            return;
        }
        let owner = owner(old);
        let mut keys = Vec::new();
        if let Some(ip) = cluster_ip(old).filter(|ip| *ip != "None")
            && new.and_then(cluster_ip) != Some(ip)
        {
            keys.push(format!("{IP_PREFIX}{ip}"));
        }
        let kept = new.map(node_ports).unwrap_or_default();
        for port in node_ports(old) {
            if !kept.contains(&port) {
                keys.push(format!("{PORT_PREFIX}{port}"));
            }
        }
        for key in keys {
            // Only the owner's key: a value re-allocated since is someone else's.
            let held = match self.store().get(&key).await {
                Ok((_, Some(kv))) => serde_json::from_slice::<Value>(&kv.value)
                    .ok()
                    .is_some_and(|v| v["service"] == owner.as_str())
                    .then_some(kv.mod_revision),
                _ => None,
            };
            if let Some(rev) = held
                && let Err(e) = self.store().delete(&key, Some(rev)).await
            {
                tracing::warn!(%key, error = %e, "could not release a service allocation");
            }
        }
    }
}

/// Probes at most this many addresses before calling a huge range full.
const MAX_PROBES: u32 = 1 << 16;

fn random_u32() -> u32 {
    uuid::Uuid::new_v4().as_u128() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_cidr(input: &str, expected: Result<(&str, u32), ()>) {
        let got = input.parse::<Ipv4Cidr>();
        match expected {
            Ok((shown, usable)) => {
                let c = got.expect(input);
                assert_eq!(
                    (c.to_string().as_str(), c.usable()),
                    (shown, usable),
                    "{input}"
                );
            }
            Err(()) => assert!(got.is_err(), "{input} should be refused"),
        }
    }

    #[test]
    fn cidrs_parse_to_their_network_and_size() {
        check_cidr("10.96.0.0/12", Ok(("10.96.0.0/12", (1 << 20) - 2)));
        check_cidr("10.96.3.7/24", Ok(("10.96.3.0/24", 254)));
        check_cidr("127.96.0.0/16", Ok(("127.96.0.0/16", 65534)));
        check_cidr("10.96.0.0", Err(()));
        check_cidr("10.96.0.0/31", Err(()));
        check_cidr("10.96.0.0/0", Err(()));
        check_cidr("10.300.0.0/12", Err(()));
        check_cidr("fd00::/64", Err(()));
    }

    #[test]
    fn usable_addresses_exclude_network_and_broadcast() {
        let c: Ipv4Cidr = "10.0.0.0/30".parse().unwrap();
        assert_eq!(c.nth(0), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(c.nth(1), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(c.nth(2), Ipv4Addr::new(10, 0, 0, 1));
        assert!(!c.contains(Ipv4Addr::new(10, 0, 0, 0)));
        assert!(c.contains(Ipv4Addr::new(10, 0, 0, 2)));
        assert!(!c.contains(Ipv4Addr::new(10, 0, 0, 3)));
        assert!(!c.contains(Ipv4Addr::new(10, 0, 1, 1)));
    }

    #[test]
    fn port_ranges_need_low_dash_high() {
        assert_eq!(parse_port_range("30000-32767"), Ok(30000..=32767));
        assert_eq!(parse_port_range("8000-8000"), Ok(8000..=8000));
        assert!(parse_port_range("32767-30000").is_err());
        assert!(parse_port_range("0-10").is_err());
        assert!(parse_port_range("30000").is_err());
        assert!(parse_port_range("a-b").is_err());
    }

    #[test]
    fn a_new_port_continues_the_old_port_of_the_same_name_or_number() {
        let old = vec![
            json!({"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}),
            json!({"port": 53, "protocol": "UDP", "nodePort": 30053}),
        ];
        let by_name = json!({"name": "http", "port": 8080, "protocol": "TCP"});
        assert_eq!(
            matching_old_port(&old, &by_name).unwrap()["nodePort"],
            30080
        );
        let by_number = json!({"port": 53, "protocol": "UDP"});
        assert_eq!(
            matching_old_port(&old, &by_number).unwrap()["nodePort"],
            30053
        );
        let other_protocol = json!({"port": 53, "protocol": "TCP"});
        assert!(matching_old_port(&old, &other_protocol).is_none());
    }
}
