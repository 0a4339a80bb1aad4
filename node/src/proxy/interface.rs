//! The dummy interface that makes cluster IPs local addresses of the host (`ip` from iproute2).

use std::net::IpAddr;
use std::process::Command;

/// Why the interface could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum InterfaceError {
    /// `ip` could not be run (not installed).
    #[error("cannot run `ip` (install iproute2): {0}")]
    Spawn(#[source] std::io::Error),
    /// `ip` refused (not root, for example).
    #[error("`ip {args}` failed: {stderr}")]
    Failed {
        /// The arguments given.
        args: String,
        /// What it printed.
        stderr: String,
    },
}

fn ip(args: &[&str]) -> Result<(), InterfaceError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(InterfaceError::Spawn)?;
    if out.status.success() {
        return Ok(());
    }
    Err(InterfaceError::Failed {
        args: args.join(" "),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

/// Creates the dummy interface `name` when missing and brings it up.
pub fn ensure(name: &str) -> Result<(), InterfaceError> {
    if ip(&["link", "show", "dev", name]).is_err() {
        ip(&["link", "add", name, "type", "dummy"])?;
    }
    ip(&["link", "set", name, "up"])
}

/// The device cluster IPs go on: the dummy interface `name`, created when missing, or the
/// loopback device `lo` where the kernel has no dummy interfaces (both make the addresses local,
/// for the host and for pods whose traffic reaches the host).
pub fn device(name: &str) -> Result<String, InterfaceError> {
    match ensure(name) {
        Ok(()) => Ok(name.to_string()),
        Err(InterfaceError::Failed { stderr, .. }) if stderr.contains("Unknown device type") => {
            tracing::warn!("the kernel has no dummy interfaces; cluster IPs go on lo");
            Ok("lo".to_string())
        }
        Err(e) => Err(e),
    }
}

/// Adds `addr/32` to the device `name`; an address already there is fine.
pub fn add_address(name: &str, addr: IpAddr) -> Result<(), InterfaceError> {
    let cidr = format!("{addr}/{}", if addr.is_ipv4() { 32 } else { 128 });
    match ip(&["addr", "add", &cidr, "dev", name]) {
        Err(InterfaceError::Failed { stderr, .. }) if stderr.contains("File exists") => Ok(()),
        other => other,
    }
}

/// Removes `addr` from the interface.
pub fn remove_address(name: &str, addr: IpAddr) -> Result<(), InterfaceError> {
    let cidr = format!("{addr}/{}", if addr.is_ipv4() { 32 } else { 128 });
    ip(&["addr", "del", &cidr, "dev", name])
}
