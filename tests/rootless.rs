//! Rootless: the README quickstart run by an ordinary user that the test creates (`useradd`,
//! with /etc/subuid and /etc/subgid ranges), through `setpriv`. `gitplane up` re-executes itself
//! under rootlesskit; the test checks from the host side that the six playground pods run, the
//! node port answers, a commit rolls out and a rollback rolls back, that a SIGTERM leaves no
//! process of the user behind, and that the same data dir starts again and a `kill -9` also
//! leaves nothing behind. Needs root (to create the user), rootlesskit, slirp4netns and uidmap
//! (scripts/test.sh installs them).

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    eventually, free_port, hello_versions, http_get, kubectl_command, only, set_hello_version,
};
use serde_json::Value;

/// An ordinary user created for the test, deleted (with its home and processes) on drop.
struct User {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
}

/// Runs a command as root; fails the test with its output when it fails.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The end of the highest range in a subuid/subgid file (100000 when empty).
fn next_free_range(file: &str) -> u64 {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(f.get(1)?.parse::<u64>().ok()? + f.get(2)?.parse::<u64>().ok()?)
        })
        .max()
        .unwrap_or(100_000)
        .max(100_000)
}

impl User {
    fn create() -> User {
        let name = format!("gprl{}", std::process::id());
        run("useradd", &["-m", "-s", "/bin/sh", &name]);
        for (file, flag) in [
            ("/etc/subuid", "--add-subuids"),
            ("/etc/subgid", "--add-subgids"),
        ] {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            if !text.lines().any(|l| l.starts_with(&format!("{name}:"))) {
                let start = next_free_range(file);
                run(
                    "usermod",
                    &[flag, &format!("{start}-{}", start + 65535), &name],
                );
            }
        }
        let uid = run("id", &["-u", &name]).parse().expect("uid");
        let gid = run("id", &["-g", &name]).parse().expect("gid");
        let home = PathBuf::from(format!("/home/{name}"));
        User {
            name,
            uid,
            gid,
            home,
        }
    }

    /// `program` as this user, in its home, with the environment a login gives an ordinary
    /// user on Debian (no /usr/sbin on PATH).
    fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--init-groups")
            .arg("--")
            .arg(program)
            .current_dir(&self.home)
            .env_clear()
            .env("HOME", &self.home)
            .env("USER", &self.name)
            .env("LOGNAME", &self.name)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin");
        c
    }

    /// `program args` as this user; fails the test when it fails.
    fn ok(&self, program: &str, args: &[&str]) -> String {
        let out = self
            .command(Path::new(program))
            .args(args)
            .output()
            .expect("run setpriv");
        assert!(
            out.status.success(),
            "{program} {} as {}: {}",
            args.join(" "),
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The processes of this user (`pgrep -u`).
    fn processes(&self) -> String {
        let out = Command::new("pgrep")
            .args(["-a", "-u", &self.name])
            .output()
            .expect("pgrep");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .args(["-KILL", "-u", &self.name])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.processes().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("userdel").args(["-r", &self.name]).output();
    }
}

/// Fails the test, saying what to install, when a piece rootless mode needs is missing.
fn require_tools() {
    let missing: Vec<&str> = [
        "rootlesskit",
        "slirp4netns",
        "newuidmap",
        "setpriv",
        "useradd",
        "pgrep",
    ]
    .into_iter()
    .filter(|t| {
        !Command::new("sh")
            .args(["-c", &format!("command -v {t} || test -x /usr/sbin/{t}")])
            .output()
            .is_ok_and(|o| o.status.success())
    })
    .collect();
    assert!(
        missing.is_empty(),
        "the rootless test needs {} (as root: apt-get install rootlesskit slirp4netns uidmap \
         util-linux procps passwd; scripts/test.sh does)",
        missing.join(", ")
    );
    use std::os::unix::fs::PermissionsExt;
    let tun = std::fs::metadata("/dev/net/tun").map(|m| m.permissions().mode() & 0o666);
    assert!(
        matches!(tun, Ok(0o666)),
        "slirp4netns needs /dev/net/tun usable by ordinary users ({tun:?}): as root, modprobe tun \
         && chmod 0666 /dev/net/tun (scripts/test.sh does)"
    );
    assert!(
        nix_is_root(),
        "the rootless test creates a user and must run as root"
    );
}

fn nix_is_root() -> bool {
    run("id", &["-u"]) == "0"
}

/// `gitplane up` of the user, its log in `log`.
struct Up {
    child: Child,
    log: PathBuf,
}

impl Up {
    fn start(user: &User, binary: &Path, port: u16, log: PathBuf) -> Up {
        let file = std::fs::File::create(&log).expect("log file");
        let child = user
            .command(binary)
            .args(["up", "--listen", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("start gitplane up");
        Up { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the process to end, at most a minute.
    fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "gitplane up did not stop within 60 s; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the playground's six pods are all Running, seen with kubectl from the host.
fn six_pods_running(kubeconfig: &Path, up: &Up) {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let out = kubectl_command()
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["get", "pods", "-A", "-o", "json"])
            .output()
            .expect("kubectl");
        let pods: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let items = pods["items"].as_array().cloned().unwrap_or_default();
        let phases: Vec<String> = items
            .iter()
            .map(|p| {
                format!(
                    "{}/{}={}",
                    p["metadata"]["namespace"].as_str().unwrap_or(""),
                    p["metadata"]["name"].as_str().unwrap_or(""),
                    p["status"]["phase"].as_str().unwrap_or("")
                )
            })
            .collect();
        if items.len() == 6 && phases.iter().all(|p| p.ends_with("=Running")) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the six playground pods are not all Running: {phases:?} {}\nlog:\n{}",
            String::from_utf8_lossy(&out.stderr),
            up.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Waits until the user has no process left.
fn no_process_left(user: &User, after: &str) {
    let mut left = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        left = user.processes();
        if left.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("processes of {} left after {after}:\n{left}", user.name);
}

#[test]
fn an_ordinary_user_runs_the_quickstart_in_a_user_namespace_and_leaves_nothing_behind() {
    require_tools();
    let user = User::create();
    let binary = user.home.join("gitplane");
    std::fs::copy(env!("CARGO_BIN_EXE_gitplane"), &binary).expect("copy the gitplane binary");
    run(
        "chown",
        &[
            &format!("{}:{}", user.uid, user.gid),
            &binary.to_string_lossy(),
        ],
    );
    let logs = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let kubeconfig = user.home.join(".gitplane/kubeconfig");

    let mut up = Up::start(&user, &binary, port, logs.path().join("up.log"));
    six_pods_running(&kubeconfig, &up);
    eventually(
        "hello 1.0.0 on localhost:30080",
        Duration::from_secs(120),
        || (hello_versions(10) == only("1.0.0")).then_some(()),
    );
    let hello = http_get("127.0.0.1:30080").expect("an answer");
    assert!(hello.starts_with("hello from hello-"), "{hello}");

    set_hello_version(&user.home.join(".gitplane/repo"), "1.0.0", "1.1.0");
    user.ok(
        "/usr/bin/git",
        &[
            "-C",
            ".gitplane/repo",
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.com",
            "commit",
            "-qam",
            "hello 1.1.0",
        ],
    );
    eventually("hello 1.1.0 rolled out", Duration::from_secs(180), || {
        (hello_versions(10) == only("1.1.0")).then_some(())
    });
    user.ok(
        &binary.to_string_lossy(),
        &["rollback", "hello", "--kubeconfig", ".gitplane/kubeconfig"],
    );
    eventually(
        "hello 1.0.0 back after the rollback",
        Duration::from_secs(180),
        || (hello_versions(10) == only("1.0.0")).then_some(()),
    );

    run("kill", &["-TERM", &up.child.id().to_string()]);
    let status = up.wait();
    assert!(status.success(), "{status}; log:\n{}", up.log());
    no_process_left(&user, "SIGTERM");
    assert!(
        http_get("127.0.0.1:30080").is_err(),
        "port 30080 still open"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the API port is still open"
    );

    // The same data dir again, then kill -9: nothing stays.
    let mut up = Up::start(&user, &binary, port, logs.path().join("up-again.log"));
    six_pods_running(&kubeconfig, &up);
    eventually(
        "hello 1.0.0 after the restart",
        Duration::from_secs(120),
        || (hello_versions(10) == only("1.0.0")).then_some(()),
    );
    run("kill", &["-KILL", &up.child.id().to_string()]);
    up.wait();
    no_process_left(&user, "kill -9");
    assert!(
        http_get("127.0.0.1:30080").is_err(),
        "port 30080 still open"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the API port is still open"
    );
}
