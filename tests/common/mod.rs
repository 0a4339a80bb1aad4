//! What the end-to-end tests share: a real `gitplane` server process on a free port, the real
//! `kubectl` pointed at it, and a raw HTTPS client for checking status codes (it trusts the
//! server's CA and presents the admin's client certificate, both read from the kubeconfig;
//! [`Auth`] picks another identity).

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};

/// Who a raw request is sent as.
#[derive(Clone, Debug)]
pub enum Auth {
    /// The administrator of the kubeconfig (client certificate, group `system:masters`).
    Admin,
    /// No credentials at all (`system:anonymous`).
    Anonymous,
    /// A bearer token.
    Token(String),
    /// A client certificate and key (PEM).
    Cert {
        /// Certificate.
        cert_pem: String,
        /// Key.
        key_pem: String,
    },
}

/// What a server's kubeconfig holds: the CA and the admin's certificate and key (PEM).
#[derive(Clone, Debug)]
struct Trust {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

/// The trust material of every server started by this test process, by base URL.
fn trusts() -> &'static Mutex<HashMap<String, Trust>> {
    static TRUSTS: OnceLock<Mutex<HashMap<String, Trust>>> = OnceLock::new();
    TRUSTS.get_or_init(Default::default)
}

fn kubeconfig_field(text: &str, field: &str) -> Option<String> {
    let b64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{field}: ")))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    String::from_utf8(bytes).ok()
}

fn read_trust(kubeconfig: &Path) -> Option<Trust> {
    let text = std::fs::read_to_string(kubeconfig).ok()?;
    Some(Trust {
        ca_pem: kubeconfig_field(&text, "certificate-authority-data")?,
        cert_pem: kubeconfig_field(&text, "client-certificate-data")?,
        key_pem: kubeconfig_field(&text, "client-key-data")?,
    })
}

/// An HTTPS agent for the server at `base` (started by this process), sending as `auth`.
pub fn agent(base: &str, auth: &Auth, timeout: Duration) -> ureq::Agent {
    let trust = trusts()
        .lock()
        .expect("trust lock")
        .get(base)
        .cloned()
        .unwrap_or_else(|| panic!("no server started at {base}"));
    let ca = Certificate::from_pem(trust.ca_pem.as_bytes()).expect("CA pem");
    let pair = |cert: &str, key: &str| {
        ClientCert::new_with_certs(
            &[Certificate::from_pem(cert.as_bytes()).expect("cert pem")],
            PrivateKey::from_pem(key.as_bytes()).expect("key pem"),
        )
    };
    let client = match auth {
        Auth::Admin => Some(pair(&trust.cert_pem, &trust.key_pem)),
        Auth::Cert { cert_pem, key_pem } => Some(pair(cert_pem, key_pem)),
        Auth::Anonymous | Auth::Token(_) => None,
    };
    let tls = TlsConfig::builder()
        .root_certs(RootCerts::Specific(Arc::new(vec![ca])))
        .client_cert(client)
        .build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .tls_config(tls)
        .build()
        .into()
}

/// The PEM files a scraper needs for the server at `base` (started by this process): the
/// cluster CA, the admin's client certificate and its key, written into `dir`.
pub fn write_admin_pems(base: &str, dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let trust = trusts()
        .lock()
        .expect("trust lock")
        .get(base)
        .cloned()
        .unwrap_or_else(|| panic!("no server started at {base}"));
    let write = |name: &str, pem: &str| {
        let path = dir.join(name);
        std::fs::write(&path, pem).expect("write pem");
        path
    };
    (
        write("ca.pem", &trust.ca_pem),
        write("admin.pem", &trust.cert_pem),
        write("admin-key.pem", &trust.key_pem),
    )
}

/// A full answer: code, body as JSON (Null if none) and headers (names lowercase).
#[derive(Debug)]
pub struct Answer {
    /// HTTP status code.
    pub code: u16,
    /// The body as JSON.
    pub body: Value,
    /// The headers.
    pub headers: HashMap<String, String>,
}

/// Sends a request to `base` as `auth` with extra headers.
pub fn request(
    base: &str,
    auth: &Auth,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> Answer {
    let agent = agent(base, auth, Duration::from_secs(30));
    let url = format!("{base}{path}");
    let mut all: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Auth::Token(t) = auth {
        all.push(("Authorization".into(), format!("Bearer {t}")));
    }
    let ct = if content_type.is_empty() {
        "application/json"
    } else {
        content_type
    };
    macro_rules! with_headers {
        ($req:expr) => {{
            let mut r = $req;
            for (k, v) in &all {
                r = r.header(k.as_str(), v.as_str());
            }
            r
        }};
    }
    let result = match method {
        "GET" => with_headers!(agent.get(&url)).call(),
        "DELETE" => with_headers!(agent.delete(&url))
            .force_send_body()
            .content_type(ct)
            .send(body),
        "POST" => with_headers!(agent.post(&url)).content_type(ct).send(body),
        "PUT" => with_headers!(agent.put(&url)).content_type(ct).send(body),
        "PATCH" => with_headers!(agent.patch(&url)).content_type(ct).send(body),
        other => panic!("unsupported method {other}"),
    };
    let mut resp = result.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let code = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    Answer {
        code,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        headers,
    }
}

/// A `gitplane` server process with its own data dir; killed when dropped.
pub struct Server {
    child: Option<Child>,
    /// The data dir (kept across restarts).
    pub data_dir: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The `--store` the server runs on (`None`: the default, embedded in the data dir).
    pub store: Option<String>,
    /// The server's stderr (`server.log` in the data dir unless the test chose another file).
    pub log: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    cache: tempfile::TempDir,
}

fn kubeconfig_server(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .map(str::to_string)
}

impl Server {
    /// Starts `gitplane up` on a fresh data dir.
    pub fn start() -> Server {
        Server::start_on(None)
    }

    /// Starts `gitplane up` on a fresh data dir and the given `--store` (`None`: embedded).
    pub fn start_on(store: Option<&str>) -> Server {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("data");
        let mut s = Server::start_in_on(&dir, store);
        s._tmp = Some(tmp);
        s
    }

    /// Starts `gitplane up` with extra flags (`--repo`, `--runtime simulated`, …) on a fresh
    /// data dir.
    pub fn start_with(extra: &[&str]) -> Server {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("data");
        let mut s = Server::launch(&dir, None, extra);
        s._tmp = Some(tmp);
        s
    }

    /// Starts `gitplane up` on a given data dir (to restart on the same data).
    pub fn start_in(dir: &Path) -> Server {
        Server::launch(dir, None, &[])
    }

    /// Starts `gitplane up` on a given data dir and `--store` (`None`: embedded).
    pub fn start_in_on(dir: &Path, store: Option<&str>) -> Server {
        Server::launch(dir, store, &[])
    }

    /// Starts `gitplane up` with extra flags on a given data dir.
    pub fn start_in_with(dir: &Path, extra: &[&str]) -> Server {
        Server::launch(dir, None, extra)
    }

    /// Starts `gitplane up` with extra flags on a given data dir, its stderr appended to
    /// `log` (for a data dir that may run out of space).
    pub fn start_in_logging(dir: &Path, log: &Path, extra: &[&str]) -> Server {
        Server::launch_logging(dir, None, extra, log)
    }

    /// Starts `gitplane apiserver` (the API server alone, as a destination cluster) on a fresh
    /// data dir and a free loopback port.
    pub fn start_apiserver() -> Server {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("data");
        let mut s = Server::launch_apiserver(&dir, "127.0.0.1:0");
        s._tmp = Some(tmp);
        s
    }

    /// Starts `gitplane apiserver` on a data dir, listening on `listen`.
    pub fn launch_apiserver(dir: &Path, listen: &str) -> Server {
        let kubeconfig = dir.join("kubeconfig");
        let _ = std::fs::remove_file(&kubeconfig);
        std::fs::create_dir_all(dir).expect("data dir");
        let log_path = dir.join("server.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("server log");
        let child = Command::new(env!("CARGO_BIN_EXE_gitplane"))
            .args(["apiserver", "--listen", listen, "--data-dir"])
            .arg(dir)
            .arg("--service-cluster-ip-range=127.96.0.0/16")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start gitplane apiserver");
        Server::wait_ready(child, dir, None, &log_path)
    }

    fn launch(dir: &Path, store: Option<&str>, extra: &[&str]) -> Server {
        Server::launch_logging(dir, store, extra, &dir.join("server.log"))
    }

    fn launch_logging(dir: &Path, store: Option<&str>, extra: &[&str], log_path: &Path) -> Server {
        let kubeconfig = dir.join("kubeconfig");
        let _ = std::fs::remove_file(&kubeconfig);
        std::fs::create_dir_all(dir).expect("data dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .expect("server log");
        let child = Command::new(env!("CARGO_BIN_EXE_gitplane"))
            .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .args(store.map(|s| format!("--store={s}")))
            // No local process node unless a test asks for one: most tests need no pods running,
            // and the playground's apps would start real processes in every server.
            .args((!extra.contains(&"--runtime")).then_some("--runtime=none"))
            // Cluster IPs on loopback, so the service proxy never touches the host's interfaces.
            .args(
                (!extra.contains(&"--service-cluster-ip-range"))
                    .then_some("--service-cluster-ip-range=127.96.0.0/16"),
            )
            // The ingress controller on free ports, so that servers never compete for 8080/8443.
            .args((!extra.contains(&"--ingress-listen")).then_some("--ingress-listen=127.0.0.1:0"))
            .args(
                (!extra.contains(&"--ingress-tls-listen"))
                    .then_some("--ingress-tls-listen=127.0.0.1:0"),
            )
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start gitplane");
        Server::wait_ready(child, dir, store, log_path)
    }

    /// Waits until the server `child` wrote its kubeconfig in `dir`.
    fn wait_ready(mut child: Child, dir: &Path, store: Option<&str>, log_path: &Path) -> Server {
        let kubeconfig = dir.join("kubeconfig");
        let started = Instant::now();
        let deadline = started + Duration::from_secs(30);
        let url = loop {
            if let (Some(url), Some(trust)) =
                (kubeconfig_server(&kubeconfig), read_trust(&kubeconfig))
            {
                trusts()
                    .lock()
                    .expect("trust lock")
                    .insert(url.clone(), trust);
                break url;
            }
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() >= deadline {
                // The data dir is a temp dir that goes with the test: the log is shown here.
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(log_path).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let why = match exited {
                    Some(status) => format!("exited ({status}) before writing"),
                    None => "did not write".to_owned(),
                };
                panic!(
                    "gitplane {why} {} in {:?}; the end of its log:\n{}",
                    kubeconfig.display(),
                    started.elapsed(),
                    lines[lines.len().saturating_sub(40)..].join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Server {
            child: Some(child),
            data_dir: dir.to_path_buf(),
            url,
            store: store.map(str::to_owned),
            log: log_path.to_path_buf(),
            _tmp: None,
            cache: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Kills the process with SIGKILL, keeping the data dir.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the process with SIGTERM and waits for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("server running");
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        // `up` gives its components 20 s after its nodes; a process still there after a
        // minute is a bug, reported rather than waited for.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = c.try_wait().expect("wait for gitplane") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!(
                    "gitplane did not stop within 60 s of SIGTERM; see {}",
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running (it has not exited or crashed).
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().expect("wait for gitplane").is_none())
    }

    /// Stops the process with SIGTERM if it still runs (a clean shutdown: a local node stops
    /// its containers) and waits.
    pub fn stop(&mut self) {
        if self.child.is_some() {
            self.terminate();
        }
    }

    /// Takes the data dir's temp-dir ownership, so a restarted server can use it.
    pub fn into_data(mut self) -> (PathBuf, Option<tempfile::TempDir>) {
        self.kill9();
        (self.data_dir.clone(), self._tmp.take())
    }

    /// The kubeconfig path.
    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir.join("kubeconfig")
    }

    /// Runs the real kubectl against this server.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_stdin(args, None)
    }

    /// Runs the real kubectl against this server with another kubeconfig (another identity).
    pub fn kubectl_as(&self, kubeconfig: &str, args: &[&str]) -> Output {
        self.kubectl_with(Path::new(kubeconfig), args, None)
    }

    /// Runs kubectl with standard input.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        self.kubectl_with(&self.kubeconfig(), args, stdin)
    }

    fn kubectl_with(&self, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = kubectl_command();
        cmd.arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--cache-dir")
            .arg(self.cache.path())
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run kubectl");
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write kubectl stdin");
        }
        child.wait_with_output().expect("kubectl output")
    }

    /// Runs kubectl and returns stdout, failing the test with kubectl's stderr if it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl with a manifest on stdin (`-f -`), failing the test if it fails.
    pub fn ok_stdin(&self, args: &[&str], manifest: &str) -> String {
        let out = self.kubectl_stdin(args, Some(manifest));
        assert!(
            out.status.success(),
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Sends a raw HTTP request; returns the status code and the body as JSON (Null if none).
    pub fn http(&self, method: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
        http(&self.url, method, path, content_type, body)
    }

    /// Sends a raw request as `auth`, with extra headers; returns code, body and headers.
    pub fn http_as(
        &self,
        auth: &Auth,
        method: &str,
        path: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> Answer {
        request(&self.url, auth, method, path, "", body, headers)
    }

    /// An HTTPS agent for this server sending as `auth` (for streaming reads).
    pub fn agent(&self, auth: &Auth, timeout: Duration) -> ureq::Agent {
        agent(&self.url, auth, timeout)
    }

    /// Starts another gitplane client subcommand (`scheduler`, `simulate-nodes`) against this
    /// server, logging to `<data dir>/<log>.log`; stopped when the handle is dropped.
    pub fn spawn(&self, log: &str, args: &[&str]) -> Process {
        let file =
            std::fs::File::create(self.data_dir.join(format!("{log}.log"))).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_gitplane"))
            .args(args)
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start gitplane");
        Process { child: Some(child) }
    }

    /// Starts another gitplane subcommand that takes no `--kubeconfig` (`runtime`), logging to
    /// `<data dir>/<log>.log`; stopped when the handle is dropped.
    pub fn spawn_plain(&self, log: &str, args: &[&str]) -> Process {
        let file =
            std::fs::File::create(self.data_dir.join(format!("{log}.log"))).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_gitplane"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start gitplane");
        Process { child: Some(child) }
    }

    /// `GET path` as JSON, expecting 200.
    pub fn get_json(&self, path: &str) -> Value {
        let (code, v) = self.http("GET", path, "", b"");
        assert_eq!(code, 200, "GET {path}: {v}");
        v
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Another gitplane process; killed when dropped.
pub struct Process {
    child: Option<Child>,
}

impl Process {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Stops it with SIGTERM (a clean shutdown) and waits.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A raw HTTP request against a server started by this process, as its administrator.
pub fn http(base: &str, method: &str, path: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
    let a = request(base, &Auth::Admin, method, path, content_type, body, &[]);
    (a.code, a.body)
}

/// Starts a watch (`path` with `watch=1`) and reads its JSON lines until `done` says so; panics
/// if the stream ends first. The path should carry `timeoutSeconds` so the stream ends.
pub fn watch_until(base: &str, path: &str, mut done: impl FnMut(&Value) -> bool) -> Vec<Value> {
    use std::io::BufRead;
    let agent = agent(base, &Auth::Admin, Duration::from_secs(60));
    let url = format!("{base}{path}");
    let mut resp = agent
        .get(&url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(resp.status().as_u16(), 200, "watch {url}");
    let reader = std::io::BufReader::new(resp.body_mut().as_reader());
    let mut seen = Vec::new();
    for line in reader.lines() {
        let line = line.unwrap_or_else(|e| panic!("reading watch {url}: {e}"));
        if line.trim().is_empty() {
            continue;
        }
        let event: Value = serde_json::from_str(&line).expect("a watch line is JSON");
        seen.push(event);
        if done(seen.last().expect("just pushed")) {
            return seen;
        }
    }
    panic!("watch {url} ended before the expected event; saw {seen:?}");
}

/// A real etcd cluster of `size` members on loopback, or a failed test that says how to get
/// etcd.
pub fn etcd(size: usize) -> etcd_process::EtcdCluster {
    etcd_process::EtcdCluster::start(size).unwrap_or_else(|e| panic!("{e}"))
}

/// The kubectl command, or a failed test that says how to get it.
pub fn kubectl_command() -> Command {
    static FOUND: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let found = *FOUND.get_or_init(|| {
        Command::new("kubectl")
            .args(["version", "--client"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    match found {
        true => Command::new("kubectl"),
        false => panic!(
            "kubectl is required for the end-to-end tests and was not found on PATH; install \
             kubectl v1.32 (for example from the Kubernetes apt repository or a release binary) \
             and run the tests again"
        ),
    }
}

/// Runs the `gitplane` binary (a client subcommand) against this server.
pub fn gitplane(s: &Server, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gitplane"))
        .args(args)
        .arg("--kubeconfig")
        .arg(s.kubeconfig())
        .output()
        .expect("run gitplane")
}

/// Runs git in the work tree `repo` as the tests' author; fails the test on error.
pub fn git_in(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Test Author",
            "-c",
            "user.email=author@example.com",
        ])
        .args(args)
        .current_dir(repo)
        .output()
        .expect("git is required by the tests; install it (apt-get install git)");
    assert!(
        out.status.success(),
        "git {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A real Git repository in a temp dir, driven with the `git` command.
pub struct GitRepo {
    /// The work tree.
    pub path: PathBuf,
    _tmp: tempfile::TempDir,
}

impl GitRepo {
    /// `git init` in a new temp dir.
    pub fn new() -> GitRepo {
        let tmp = tempfile::tempdir().expect("temp dir");
        let path = tmp.path().join("repo");
        std::fs::create_dir_all(&path).expect("mkdir");
        let r = GitRepo { path, _tmp: tmp };
        r.git(&["init", "-q", "-b", "main"]);
        r
    }

    /// Runs git in the work tree; fails the test on error.
    pub fn git(&self, args: &[&str]) -> String {
        git_in(&self.path, args)
    }

    /// Writes a file (creating directories).
    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }

    /// Stages everything and commits; returns the commit SHA.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }
}

/// Polls `f` until it returns `Some` or the deadline passes.
pub fn eventually<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A port free on the host's loopback now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The body of one plain `GET /` on `addr`, or the error (connection refused …).
pub fn http_get(addr: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(stream, "GET / HTTP/1.0\r\n\r\n").map_err(|e| e.to_string())?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    text.split("\r\n\r\n")
        .nth(1)
        .map(str::to_string)
        .ok_or_else(|| format!("no HTTP answer: {text:?}"))
}

/// The versions `n` answers of the playground's hello app on the host's port 30080 report
/// (errors as `error: …`).
pub fn hello_versions(n: usize) -> std::collections::BTreeSet<String> {
    (0..n)
        .map(|_| match http_get("127.0.0.1:30080") {
            Ok(a) => a.rsplit(' ').next().unwrap_or("").trim().to_string(),
            Err(e) => format!("error: {e}"),
        })
        .collect()
}

/// The set holding `v` alone.
pub fn only(v: &str) -> std::collections::BTreeSet<String> {
    std::collections::BTreeSet::from([v.to_string()])
}

/// Changes the hello app's version in the playground repository's `apps/hello/values.yaml`
/// under `repo` (uncommitted).
pub fn set_hello_version(repo: &Path, from: &str, to: &str) {
    let values = repo.join("apps/hello/values.yaml");
    let text = std::fs::read_to_string(&values).expect("values.yaml");
    std::fs::write(
        &values,
        text.replace(
            &format!("version: \"{from}\""),
            &format!("version: \"{to}\""),
        ),
    )
    .expect("write values.yaml");
}

/// Pod `name` of the default namespace as JSON, if it exists.
pub fn pod_json(s: &Server, name: &str) -> Option<Value> {
    let out = s.kubectl(&["get", "pod", name, "-o", "json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

/// Waits up to `timeout` for pod `name` to satisfy `f` (`what` says what is awaited).
pub fn wait_pod(
    s: &Server,
    name: &str,
    what: &str,
    timeout: Duration,
    f: impl Fn(&Value) -> bool,
) -> Value {
    eventually(&format!("pod {name}: {what}"), timeout, || {
        pod_json(s, name).filter(|p| f(p))
    })
}

/// Whether the pod's `Ready` condition is `True`.
pub fn pod_ready(p: &Value) -> bool {
    p["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// One HTTP request a [`Receiver`] got.
#[derive(Clone, Debug)]
pub struct Received {
    /// The method.
    pub method: String,
    /// The path (with the query).
    pub path: String,
    /// The headers, names lowercase.
    pub headers: HashMap<String, String>,
    /// The body.
    pub body: String,
}

/// An HTTP/1.1 receiver on a free loopback port that answers every request with 200 and keeps
/// it (a webhook receiver, a Git host's commit status API).
pub struct Receiver {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// Starts the receiver on its own thread (it lives as long as the test process).
    pub fn start() -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let sink = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Some(r) = read_request(stream) {
                    sink.lock().expect("receiver lock").push(r);
                }
            }
        });
        Receiver { url, received }
    }

    /// The requests so far whose path starts with `prefix`.
    pub fn requests(&self, prefix: &str) -> Vec<Received> {
        self.received
            .lock()
            .expect("receiver lock")
            .iter()
            .filter(|r| r.path.starts_with(prefix))
            .cloned()
            .collect()
    }
}

fn read_request(mut stream: std::net::TcpStream) -> Option<Received> {
    use std::io::{BufRead, BufReader, Read, Write};
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    stream
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .ok()?;
    Some(Received {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}
