//! A full disk under `gitplane up` (the embedded store): the data dir is on a small tmpfs the
//! test mounts (it must run as root), with the syncer following a repository and a process node
//! running a pod. The disk is filled while the server runs: writes are answered with a 500
//! `Status` naming the cause, reads are served, the node reports `DiskPressure`, the syncer and
//! the node agent keep running; once the filler is removed, writes are accepted again, the
//! syncer applies the commit it could not fetch, and after a restart every acknowledged write
//! is there.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{GitRepo, Server, eventually};
use serde_json::{Value, json};

/// The tmpfs: 10% of it (the node's `DiskPressure` threshold) is above the store's 16 MiB
/// reserve, so the node can report the pressure before the store refuses writes.
const SIZE_MIB: u64 = 256;

const WAIT: Duration = Duration::from_secs(60);

/// A tmpfs mounted on a new temporary directory, unmounted when dropped (also when the test
/// fails).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size_mib: u64) -> Tmpfs {
        let dir = tempfile::tempdir().expect("temp dir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs on {} failed: this test must run as root",
            dir.path().display()
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Bytes available on the file system of `path`, as `df` says.
fn available(path: &Path) -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(path)
        .output()
        .expect("run df");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("df of {}: {out:?}", path.display()))
}

/// Appends zeros to `path` until `limit` bytes are written or the file system is full.
fn fill(path: &Path, limit: u64) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open the filler");
    let chunk = vec![0u8; 1 << 20];
    let mut written = 0u64;
    while written < limit {
        let n = (limit - written).min(chunk.len() as u64) as usize;
        match file.write(&chunk[..n]) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
            Err(e) => panic!("writing {}: {e}", path.display()),
        }
    }
}

fn configmap(name: &str, value: &str) -> Vec<u8> {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
        "data": {"v": value}})
    .to_string()
    .into_bytes()
}

fn create(s: &Server, name: &str, value: &str) -> (u16, Value) {
    s.http(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        &configmap(name, value),
    )
}

/// The node's `DiskPressure` condition.
fn disk_pressure(s: &Server) -> Option<Value> {
    let node = s.get_json("/api/v1/nodes/local");
    node["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "DiskPressure")
        .cloned()
}

fn value_of(s: &Server, name: &str) -> Option<String> {
    let out = s.kubectl(&["get", "cm", name, "-o", "jsonpath={.data.value}"]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn git_cm(value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-git\ndata:\n  value: \"{value}\"\n"
    )
}

fn log_lines(log: &Path, needle: &str) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.to_lowercase().contains(needle))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_full_data_dir_refuses_writes_with_a_500_naming_the_cause_and_recovers_once_space_is_freed() {
    let tmpfs = Tmpfs::mount(SIZE_MIB);
    let outside = tempfile::tempdir().expect("temp dir");
    let log: PathBuf = outside.path().join("up.log");
    let data = tmpfs.path().join("data");
    let filler = tmpfs.path().join("filler");

    let repo = GitRepo::new();
    repo.write("app/cm.yaml", &git_cm("1"));
    repo.commit("first");
    let repo_path = repo.path.to_string_lossy().into_owned();
    let args = [
        "--repo",
        &repo_path,
        "--path",
        "app",
        "--runtime",
        "process",
        "--node-name",
        "local",
    ];
    let mut s = Server::start_in_logging(&data, &log, &args);
    eventually("the first commit applied", WAIT, || {
        (value_of(&s, "from-git").as_deref() == Some("1")).then_some(())
    });
    s.ok(&[
        "run",
        "ticker",
        "--image=busybox",
        "--restart=Never",
        "--command",
        "--",
        "sh",
        "-c",
        "while true; do echo tick; sleep 0.2; done",
    ]);
    eventually("the pod running", WAIT, || {
        let pod = s.get_json("/api/v1/namespaces/default/pods/ticker");
        (pod["status"]["phase"] == "Running").then_some(())
    });
    eventually("no DiskPressure", WAIT, || {
        disk_pressure(&s).filter(|c| c["status"] == "False")
    });

    // Under 10% left but above the store's reserve: the node reports the pressure.
    fill(&filler, available(tmpfs.path()).saturating_sub(20 << 20));
    let pressure = eventually("DiskPressure reported", WAIT, || {
        disk_pressure(&s).filter(|c| c["status"] == "True")
    });
    assert_eq!(pressure["reason"], "KubeletHasDiskPressure", "{pressure}");
    assert!(
        pressure["message"]
            .as_str()
            .is_some_and(|m| m.contains("available on the file system of")),
        "{pressure}"
    );

    // Writes of 256 KiB until the store refuses one.
    let big = "x".repeat(256 << 10);
    let mut acknowledged: Vec<(String, String)> = Vec::new();
    let refusal = loop {
        let i = acknowledged.len();
        assert!(i < 400, "400 writes of 256 KiB did not fill 20 MiB");
        let name = format!("big-{i}");
        let value = format!("{i}-{big}");
        match create(&s, &name, &value) {
            (201, _) => acknowledged.push((name, value)),
            (_, status) => break status,
        }
    };
    assert_eq!(refusal["code"], 500, "{refusal}");
    assert_eq!(refusal["reason"], "InternalError", "{refusal}");
    let message = refusal["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("no space left on device"),
        "the refusal names the cause: {refusal}"
    );
    let out = s.kubectl(&["create", "configmap", "small", "--from-literal=a=b"]);
    assert!(
        !out.status.success(),
        "kubectl create on a full store succeeded"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no space left on device"), "{stderr}");

    // Now every byte: the store's own writes hit the full disk.
    fill(&filler, u64::MAX);
    let (code, status) = create(&s, "small", "v");
    assert_eq!(code, 500, "{status}");
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("no space left on device")),
        "{status}"
    );
    // A delete on a full disk either goes through (redb had free pages) or is refused with the
    // cause; either way the answer says which.
    let (first, _) = acknowledged[0].clone();
    let (code, status) = s.http(
        "DELETE",
        &format!("/api/v1/namespaces/default/configmaps/{first}"),
        "application/json",
        b"",
    );
    match code {
        200 => {
            acknowledged.remove(0);
        }
        500 => assert!(
            status["message"]
                .as_str()
                .is_some_and(|m| m.contains("no space left on device")),
            "{status}"
        ),
        _ => panic!("a delete on a full disk: {code} {status}"),
    }

    // Reads are served.
    for (name, value) in &acknowledged {
        let cm = s.get_json(&format!("/api/v1/namespaces/default/configmaps/{name}"));
        assert_eq!(cm["data"]["v"].as_str(), Some(value.as_str()), "{name}");
    }
    let listed = s.get_json("/api/v1/namespaces/default/configmaps");
    let count = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|i| {
            i["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("big-"))
        })
        .count();
    assert_eq!(count, acknowledged.len());
    s.ok(&["get", "cm", "from-git"]);

    // A commit the syncer cannot fetch into the full data dir: it says so and carries on.
    repo.write("app/cm.yaml", &git_cm("2"));
    repo.commit("second, while the disk is full");
    eventually("the syncer reports the full disk", WAIT, || {
        let lines = log_lines(&log, "no space left on device");
        lines.iter().any(|l| l.contains("gitops")).then_some(())
    });
    assert_eq!(value_of(&s, "from-git").as_deref(), Some("1"));
    assert!(
        s.running(),
        "gitplane up exited on a full disk; see {}",
        log.display()
    );
    let pod = s.get_json("/api/v1/namespaces/default/pods/ticker");
    assert_eq!(pod["status"]["phase"], "Running", "{pod}");

    // Space freed: writes are accepted again without a restart.
    std::fs::remove_file(&filler).expect("remove the filler");
    eventually("a write accepted again", WAIT, || {
        let (code, _) = create(&s, "after", "v");
        (code == 201 || code == 409).then_some(())
    });
    eventually("the commit made while full applied", WAIT, || {
        (value_of(&s, "from-git").as_deref() == Some("2")).then_some(())
    });
    eventually("DiskPressure gone", WAIT, || {
        disk_pressure(&s).filter(|c| c["status"] == "False")
    });
    assert!(s.running(), "gitplane up exited; see {}", log.display());

    // Restarted on the same data: the database opens and holds every acknowledged write.
    let status = s.terminate();
    assert!(
        status.success(),
        "gitplane up exited with {status} after SIGTERM"
    );
    drop(s);
    let s = Server::start_in_logging(&data, &log, &args);
    for (name, value) in &acknowledged {
        let cm = s.get_json(&format!("/api/v1/namespaces/default/configmaps/{name}"));
        assert_eq!(
            cm["data"]["v"].as_str(),
            Some(value.as_str()),
            "acknowledged {name} after the restart"
        );
    }
    s.ok(&["get", "cm", "after"]);
    drop(s);
    drop(tmpfs);
}
