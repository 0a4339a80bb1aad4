//! Rootless mode of `gitplane up`: a user without root gets the same cluster as root does.
//!
//! As rootless k3s does, `up` started by an ordinary user re-executes itself under
//! `rootlesskit`, which puts it in a new user namespace (where it is uid 0 with every
//! capability), with its own network namespace (outbound traffic through `slirp4netns`), mount
//! namespace (`/etc` and `/run` copied up, so `ip netns` works) and PID namespace (so that when
//! the user's process dies, even by `kill -9`, every process inside dies with it and the
//! namespaces vanish). Inside, the root code paths run unchanged: pods get their own network
//! namespaces on the node's bridge and cluster IPs are local addresses. Ports reach the host
//! through rootlesskit's port API ([`ports`]): the API server's port at start, and every
//! NodePort as Services come and go.
//!
//! Where user namespaces or the tools are missing, `up` names what to install or enable and runs
//! on the host network; [`conflicts`] then names the pods that want the same port.

pub mod conflicts;
pub mod ports;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

/// Set on the re-executed `up` so that it knows it runs inside rootlesskit.
const MARKER: &str = "GITPLANE_ROOTLESS";
/// rootlesskit tells its child where its state directory (and port API socket) is.
const STATE_DIR_ENV: &str = "ROOTLESSKIT_STATE_DIR";
/// The longest path a unix socket address holds (108 bytes with the terminating zero).
const MAX_SOCKET_PATH: usize = 100;

/// How `up` runs.
#[derive(Debug)]
pub enum Mode {
    /// Started as root: nothing to do.
    Root,
    /// Inside rootlesskit, whose state directory (with `api.sock`) is this one.
    Rootless {
        /// rootlesskit's state directory.
        state_dir: PathBuf,
    },
    /// An ordinary user without a usable user namespace: pods share the host network.
    HostNetwork {
        /// What is missing, and what to install or enable.
        reason: String,
    },
}

impl Mode {
    /// Starts what the mode needs once the API server (on `api`) and the local process nodes
    /// (`nodes`) run: inside rootlesskit, the forwarding of the API server's port and of the node
    /// ports (on `node_addresses`) to the host; on the host network, the warnings about
    /// conflicting pods. The task ends after `stop`.
    pub async fn start(
        &self,
        components: &crate::cmd::connect::Components,
        api: std::net::SocketAddr,
        node_addresses: &[std::net::IpAddr],
        nodes: Vec<String>,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<Option<tokio::task::JoinHandle<anyhow::Result<()>>>> {
        match self {
            Mode::Root => Ok(None),
            Mode::Rootless { state_dir } => {
                let client = components.client("service-proxy")?;
                let fixed = vec![ports::Forward {
                    address: api.ip(),
                    port: api.port(),
                }];
                tracing::info!(
                    "rootless: running in a user namespace; ports {api} and every node port are                      forwarded to the host"
                );
                let follow = ports::forward(
                    ports::PortApi::new(state_dir),
                    client,
                    fixed,
                    node_addresses.to_vec(),
                    stop,
                )
                .await?;
                Ok(Some(tokio::spawn(follow)))
            }
            Mode::HostNetwork { reason } if !nodes.is_empty() => {
                let client = components.client("scheduler")?;
                let task =
                    conflicts::warn(client, nodes.into_iter().collect(), reason.clone(), stop);
                Ok(Some(tokio::spawn(async move {
                    task.await;
                    Ok(())
                })))
            }
            Mode::HostNetwork { .. } => Ok(None),
        }
    }
}

/// Decides how `up` runs. An ordinary user with rootlesskit, slirp4netns, newuidmap and a
/// usable user namespace never gets an answer: the process becomes rootlesskit, which starts
/// this same command again inside the namespaces (with the state directory under `data_dir`).
pub fn enter(data_dir: &Path) -> anyhow::Result<Mode> {
    let euid = nix::unistd::geteuid();
    if euid.is_root() {
        return Ok(match std::env::var_os(STATE_DIR_ENV) {
            Some(dir) if std::env::var_os(MARKER).is_some() => {
                prepare_namespace()?;
                Mode::Rootless {
                    state_dir: dir.into(),
                }
            }
            _ => Mode::Root,
        });
    }
    let missing = missing_pieces(euid);
    if !missing.is_empty() {
        let reason = missing.join("; ");
        tracing::warn!(
            "gitplane runs without root and cannot use a user namespace, so pods share the host \
             network (two pods that listen on one port conflict): {reason}"
        );
        return Ok(Mode::HostNetwork { reason });
    }
    let state_dir = state_dir(data_dir, euid.as_raw())?;
    let exe = std::env::current_exe().context("the path of the gitplane binary")?;
    tracing::info!(
        state_dir = %state_dir.display(),
        "not root: re-executing in a user namespace with rootlesskit"
    );
    let error = Command::new("rootlesskit")
        .args([
            "--net=slirp4netns",
            "--disable-host-loopback",
            "--copy-up=/etc",
            "--copy-up=/run",
            "--port-driver=builtin",
            "--pidns",
        ])
        .arg(format!("--state-dir={}", state_dir.display()))
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .env(MARKER, "1")
        .env("PATH", with_sbin(std::env::var_os("PATH")))
        .exec();
    Err(error).context("cannot run rootlesskit")
}

/// Inside rootlesskit: makes `/run/netns` and `/run/gitplane` directories of this namespace
/// (copy-up leaves a symbolic link to the host's, which only the host's root may write), and
/// lets pods reach out: forwarding on, and what leaves through slirp4netns's `tap0`
/// masqueraded behind the namespace's own address.
fn prepare_namespace() -> anyhow::Result<()> {
    for dir in ["/run/netns", "/run/gitplane"] {
        let dir = Path::new(dir);
        if dir.is_symlink() {
            std::fs::remove_file(dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let outbound = std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
        .map_err(|e| format!("cannot enable forwarding: {e}"))
        .and_then(|()| {
            let out = Command::new("iptables")
                .args([
                    "-t",
                    "nat",
                    "-A",
                    "POSTROUTING",
                    "-o",
                    "tap0",
                    "-j",
                    "MASQUERADE",
                ])
                .output()
                .map_err(|e| format!("cannot run iptables ({e}; apt-get install iptables)"))?;
            match out.status.success() {
                true => Ok(()),
                false => Err(format!(
                    "iptables: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
            }
        });
    if let Err(why) = outbound {
        tracing::warn!("pods cannot reach beyond this machine: {why}");
    }
    Ok(())
}

/// `path` with /usr/sbin and /sbin added where missing: inside the namespace `up` runs `ip`,
/// which Debian keeps there, off an ordinary user's PATH.
fn with_sbin(path: Option<std::ffi::OsString>) -> std::ffi::OsString {
    let mut dirs: Vec<PathBuf> = path
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for sbin in ["/usr/sbin", "/sbin"] {
        if !dirs.iter().any(|d| d == Path::new(sbin)) {
            dirs.push(sbin.into());
        }
    }
    std::env::join_paths(dirs)
        .unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".into())
}

/// rootlesskit's state directory: `DATA_DIR/rootless`, or a directory in the temp dir named
/// after the user and the data dir where that path is too long for a unix socket.
fn state_dir(data_dir: &Path, uid: u32) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data dir {}", data_dir.display()))?;
    let data_dir = std::fs::canonicalize(data_dir)
        .with_context(|| format!("data dir {}", data_dir.display()))?;
    let dir = data_dir.join("rootless");
    if dir.join("api.sock").as_os_str().len() <= MAX_SOCKET_PATH {
        return Ok(dir);
    }
    use std::hash::{Hash, Hasher};
    let mut hash = std::collections::hash_map::DefaultHasher::new();
    data_dir.hash(&mut hash);
    Ok(std::env::temp_dir().join(format!("gitplane-rootless-{uid}-{:x}", hash.finish())))
}

/// What keeps this user from a user namespace with rootlesskit, each with the fix.
fn missing_pieces(euid: nix::unistd::Uid) -> Vec<String> {
    let mut missing = Vec::new();
    let tools: Vec<&str> = [
        ("rootlesskit", "rootlesskit"),
        ("slirp4netns", "slirp4netns"),
        ("newuidmap", "uidmap"),
        ("newgidmap", "uidmap"),
    ]
    .into_iter()
    .filter(|(tool, _)| !on_path(tool))
    .map(|(_, package)| package)
    .collect();
    if !tools.is_empty() {
        let mut packages = tools;
        packages.dedup();
        missing.push(format!(
            "install {} (as root: apt-get install {})",
            packages.join(", "),
            packages.join(" ")
        ));
    }
    let sysctl = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .map(|v| v.trim().to_string())
    };
    if sysctl("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        missing.push(
            "unprivileged user namespaces are disabled (as root: sysctl -w \
             kernel.unprivileged_userns_clone=1)"
                .into(),
        );
    }
    if sysctl("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        missing.push(
            "user namespaces are disabled (as root: sysctl -w user.max_user_namespaces=28633)"
                .into(),
        );
    }
    if sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        missing.push(
            "AppArmor restricts unprivileged user namespaces (as root: sysctl -w \
             kernel.apparmor_restrict_unprivileged_userns=0, or give rootlesskit an AppArmor \
             profile that allows userns)"
                .into(),
        );
    }
    let name = nix::unistd::User::from_uid(euid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| euid.to_string());
    let without: Vec<&str> = ["/etc/subuid", "/etc/subgid"]
        .into_iter()
        .filter(|file| {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            !has_range(&text, &name, euid.as_raw())
        })
        .collect();
    if !without.is_empty() {
        missing.push(format!(
            "{} give {name} no range, which newuidmap needs (as root: usermod --add-subuids \
             100000-165535 --add-subgids 100000-165535 {name}, with ranges no other user has)",
            without.join(" and ")
        ));
    }
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
    {
        missing.push(format!(
            "slirp4netns needs /dev/net/tun readable and writable by you ({e}; as root: modprobe \
             tun && chmod 0666 /dev/net/tun, as udev does on most systems)"
        ));
    }
    missing
}

/// Whether `tool` is an executable file in a directory of PATH.
fn on_path(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(tool))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// Whether a subuid/subgid file (`name_or_uid:start:count` lines) gives `name` or `uid` a
/// range.
fn has_range(text: &str, name: &str, uid: u32) -> bool {
    text.lines().any(|line| {
        let mut fields = line.trim().split(':');
        let owner = fields.next().unwrap_or("");
        let count = fields.nth(1).and_then(|c| c.parse::<u64>().ok());
        (owner == name || owner == uid.to_string()) && count.is_some_and(|c| c > 0)
    })
}

#[cfg(test)]
mod tests {
    use super::has_range;

    fn check(text: &str, expected: bool) {
        assert_eq!(has_range(text, "ada", 1001), expected, "{text:?}");
    }

    #[test]
    fn a_subordinate_range_counts_by_name_or_uid_when_not_empty() {
        check("ada:100000:65536\n", true);
        check("bob:100000:65536\n1001:165536:65536\n", true);
        check("bob:100000:65536\n", false);
        check("ada:100000:0\n", false);
        check("adam:100000:65536\n", false);
        check("", false);
    }
}
