//! Real etcd servers on loopback for tests and benchmarks: a cluster of one or more members,
//! each an `etcd` process on free 127.0.0.1 ports with its data in a temporary directory.
//!
//! Members can be killed with SIGKILL, stopped and restarted on the same data and ports, which
//! is what the fault tests need. Dropping an [`EtcdCluster`] kills every member and removes the
//! data.
//!
//! The `etcd` binary is `$ETCD_BIN` when set, otherwise `etcd` on `PATH`; when it is missing,
//! [`EtcdCluster::start`] fails with [`Error::NotFound`], whose message says how to install it
//! (`scripts/install-deps.sh etcd`, or Debian's `etcd-server`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a member (or the cluster) may take to become healthy.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// How many times a cluster start is retried when a port picked as free was taken meanwhile.
const START_ATTEMPTS: usize = 3;

/// What can go wrong running etcd.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No `etcd` binary was found.
    #[error(
        "the etcd server binary was not found ({0}); install it with `scripts/install-deps.sh etcd` \
         (Debian/Ubuntu package etcd-server) or set ETCD_BIN to its path"
    )]
    NotFound(String),
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The cluster did not become healthy in time.
    #[error("etcd did not become healthy within {deadline:?}; its log ends with:\n{log}")]
    Unhealthy {
        /// How long it was given.
        deadline: Duration,
        /// The end of the log of the first unhealthy member.
        log: String,
    },
    /// A member's process ended (a port picked as free was taken meanwhile, say), even if
    /// something else answers on its client port.
    #[error("etcd member {member} exited ({status}); its log ends with:\n{log}")]
    Exited {
        /// The member's name.
        member: String,
        /// How it ended.
        status: std::process::ExitStatus,
        /// The end of its log.
        log: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// The `etcd` binary to run.
pub fn binary() -> Result<PathBuf, Error> {
    if let Some(path) = std::env::var_os("ETCD_BIN") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(Error::NotFound(format!(
                "ETCD_BIN={} is not a file",
                path.display()
            )))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| Error::NotFound("no etcd on PATH".to_owned()))
}

/// One member of a cluster.
struct Member {
    name: String,
    client: SocketAddr,
    peer: SocketAddr,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Member {
    fn spawn(&mut self, binary: &Path, initial_cluster: &str, token: &str) -> Result<(), Error> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(io(format!("cannot open {}", self.log.display())))?;
        let client = format!("http://{}", self.client);
        let peer = format!("http://{}", self.peer);
        let child = Command::new(binary)
            .arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", initial_cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", token])
            // Fast failure detection on loopback, so tests of leader loss stay short.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-level", "warn"])
            // Progress notifications every 100 ms rather than 10 minutes, so that watches of
            // quiet prefixes learn the revision quickly on etcd versions whose progress
            // requests gitplane cannot trust.
            .args(["--experimental-watch-progress-notify-interval", "100ms"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(io(format!("cannot start {}", binary.display())))?;
        self.child = Some(child);
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// A running etcd cluster on loopback.
pub struct EtcdCluster {
    binary: PathBuf,
    members: Vec<Member>,
    initial_cluster: String,
    token: String,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for EtcdCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdCluster")
            .field("endpoints", &self.endpoints())
            .finish_non_exhaustive()
    }
}

impl EtcdCluster {
    /// Starts a cluster of `size` members (at least one) and waits until every member is
    /// healthy.
    pub fn start(size: usize) -> Result<Self, Error> {
        let binary = binary()?;
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(&binary, size.max(1)) {
                Ok(cluster) => return Ok(cluster),
                Err(error @ (Error::Unhealthy { .. } | Error::Exited { .. })) => last = Some(error),
                Err(error) => return Err(error),
            }
        }
        Err(last.unwrap_or_else(|| Error::NotFound("no attempt made".to_owned())))
    }

    fn start_once(binary: &Path, size: usize) -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix("gitplane-etcd-")
            .tempdir()
            .map_err(io("cannot create a temporary directory"))?;
        let mut members = Vec::new();
        for i in 0..size {
            members.push(Member {
                name: format!("m{i}"),
                client: free_port()?,
                peer: free_port()?,
                data_dir: dir.path().join(format!("m{i}")),
                log: dir.path().join(format!("m{i}.log")),
                child: None,
            });
        }
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let token = dir
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "gitplane".to_owned());
        let mut cluster = EtcdCluster {
            binary: binary.to_path_buf(),
            members,
            initial_cluster,
            token,
            _dir: dir,
        };
        for i in 0..size {
            cluster.spawn(i)?;
        }
        cluster.wait_healthy()?;
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> Result<(), Error> {
        let (binary, initial, token) = (&self.binary, &self.initial_cluster, &self.token);
        self.members[i].spawn(binary, initial, token)
    }

    /// The client addresses, `127.0.0.1:PORT`, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client.to_string()).collect()
    }

    /// The `--store` value that points gitplane at this cluster: `etcd://H:P,H:P,...`.
    pub fn store_url(&self) -> String {
        format!("etcd://{}", self.endpoints().join(","))
    }

    /// How many members the cluster has (running or not).
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// Whether member `i` is running.
    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }

    /// Kills member `i` with SIGKILL (its data stays).
    pub fn kill(&mut self, i: usize) {
        self.members[i].kill();
    }

    /// Kills every member with SIGKILL (their data stays).
    pub fn kill_all(&mut self) {
        for member in &mut self.members {
            member.kill();
        }
    }

    /// Starts member `i` again on its data and ports, without waiting for it.
    pub fn restart(&mut self, i: usize) -> Result<(), Error> {
        self.members[i].kill();
        self.spawn(i)
    }

    /// Starts every stopped member again and waits until all are healthy.
    pub fn restart_all(&mut self) -> Result<(), Error> {
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                self.spawn(i)?;
            }
        }
        self.wait_healthy()
    }

    /// Waits until every running member reports itself healthy (it has a leader) and is still
    /// running: a member that could not bind a port another process took meanwhile exits, and
    /// that process (another test's etcd, say) may answer the health check in its place.
    pub fn wait_healthy(&mut self) -> Result<(), Error> {
        let deadline = Instant::now() + START_DEADLINE;
        for i in 0..self.members.len() {
            while self.members[i].child.is_some() {
                self.check_running(i)?;
                if healthy(self.members[i].client) {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(Error::Unhealthy {
                        deadline: START_DEADLINE,
                        log: self.members[i].log_tail(),
                    });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // One that exited after an answer in its place, from whatever holds its port now.
        (0..self.members.len()).try_for_each(|i| self.check_running(i))
    }

    /// [`Error::Exited`] when member `i` was started and its process has ended (it is then no
    /// longer counted as running).
    fn check_running(&mut self, i: usize) -> Result<(), Error> {
        let member = &mut self.members[i];
        let exited = member
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten());
        match exited {
            None => Ok(()),
            Some(status) => {
                member.child = None;
                Err(Error::Exited {
                    member: member.name.clone(),
                    status,
                    log: member.log_tail(),
                })
            }
        }
    }

    /// The index of the current leader among the running members, if one answers.
    pub fn leader(&self) -> Option<usize> {
        let statuses: Vec<(usize, String, String)> = (0..self.members.len())
            .filter(|&i| self.members[i].child.is_some())
            .filter_map(|i| {
                let (member, leader) = member_status(self.members[i].client)?;
                Some((i, member, leader))
            })
            .collect();
        let (_, _, leader) = statuses.first()?;
        statuses
            .iter()
            .find(|(_, member, _)| member == leader)
            .map(|(i, _, _)| *i)
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// A free loopback port (free when asked; the kernel may hand it out again later).
fn free_port() -> Result<SocketAddr, Error> {
    let listener =
        TcpListener::bind(("127.0.0.1", 0)).map_err(io("cannot bind a free loopback port"))?;
    listener
        .local_addr()
        .map_err(io("cannot read a bound address"))
}

/// One plain HTTP/1.0 request to a member's client port; the response body.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> Option<String> {
    let timeout = Duration::from_millis(500);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.")
        .then(|| head.split(' ').nth(1) == Some("200"))
        .filter(|ok| *ok)
        .map(|_| body.to_owned())
}

/// Whether a member answers `/health` with `"health":"true"`.
fn healthy(addr: SocketAddr) -> bool {
    http(addr, "GET", "/health", "")
        .is_some_and(|body| body.replace(' ', "").contains("\"health\":\"true\""))
}

/// A member's own id and its leader's id, from the v3 JSON gateway's status call.
fn member_status(addr: SocketAddr) -> Option<(String, String)> {
    let body = http(addr, "POST", "/v3/maintenance/status", "{}")?;
    let field = |name: &str| {
        let start = body.find(&format!("\"{name}\":\""))? + name.len() + 4;
        let end = body[start..].find('"')? + start;
        Some(body[start..end].to_owned())
    };
    let header = &body[body.find("\"member_id\":\"")?..];
    let member_start = header.find(':')? + 2;
    let member = header[member_start..member_start + header[member_start..].find('"')?].to_owned();
    Some((member, field("leader")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_that_exited_is_reported_even_while_the_others_are_healthy() {
        let mut cluster = EtcdCluster::start(3).unwrap_or_else(|e| panic!("{e}"));
        // Ended behind the cluster's back, as a member that lost its port to another process.
        let child = cluster.members[2].child.as_mut().expect("member m2 runs");
        child.kill().expect("kill m2");
        child.wait().expect("reap m2");
        match cluster.wait_healthy() {
            Err(Error::Exited { member, .. }) => assert_eq!(member, "m2"),
            other => panic!("expected m2 to be reported as exited, got {other:?}"),
        }
        assert!(!cluster.is_running(2));
        // The two others still form a quorum.
        cluster
            .wait_healthy()
            .expect("two of three members are healthy");
    }
}
