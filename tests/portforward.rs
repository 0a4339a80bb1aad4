//! `kubectl port-forward` with the real kubectl 1.32 into a pod on the process runtime: to a
//! pod and through a Service, over kubectl's WebSocket tunnel (`SPDY/3.1+portforward.k8s.io`,
//! its default) and over plain SPDY (its fallback, forced with
//! `KUBECTL_PORT_FORWARD_WEBSOCKETS=false`), a port nobody listens on reported on kubectl's
//! error stream, RBAC on `pods/portforward`, and the clear error of a simulated node; the
//! `proxy` subresources of pods, services and nodes (`kubectl get --raw`) with RBAC on them.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{Server, eventually, kubectl_command};

/// A server stopped cleanly when dropped, so its node stops the pods' processes.
struct Up(Server);

impl Drop for Up {
    fn drop(&mut self) {
        self.0.stop();
    }
}

fn up(extra: &[&str]) -> Up {
    let mut args = vec!["--node-name", "local"];
    args.extend_from_slice(extra);
    Up(Server::start_with(&args))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A pod `web` (label `app: web`) serving `hello from web` over HTTP on `port`, and a
/// Service `web` sending its port 80 there; waits for the pod to be ready.
fn web(s: &Server, port: u16) {
    s.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: web, labels: {{app: web}}}}
spec:
  containers:
  - name: web
    image: python
    command: [sh, -c, "mkdir -p www && echo hello from web > www/index.html && cd www && exec python3 -m http.server {port}"]
    ports: [{{containerPort: {port}}}]
    readinessProbe:
      httpGet: {{path: /, port: {port}}}
      periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: {port}}}]
"#
        ),
    );
    eventually("pod web ready", Duration::from_secs(60), || {
        let out = s.kubectl(&[
            "get",
            "pod",
            "web",
            "-o",
            "jsonpath={.status.containerStatuses[0].ready}",
        ]);
        (text(&out.stdout) == "true").then_some(())
    });
}

/// `kubectl port-forward ARGS` running in the background, its stderr in a file; killed when
/// dropped.
struct Forward {
    child: Child,
    stderr: tempfile::NamedTempFile,
}

impl Forward {
    fn start(s: &Server, websockets: bool, args: &[&str]) -> Forward {
        let stderr = tempfile::NamedTempFile::new().expect("temp file");
        let child = kubectl_command()
            .arg("--kubeconfig")
            .arg(s.kubeconfig())
            .arg("port-forward")
            .args(args)
            .env(
                "KUBECTL_PORT_FORWARD_WEBSOCKETS",
                if websockets { "true" } else { "false" },
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr.reopen().expect("reopen"))
            .spawn()
            .expect("run kubectl port-forward");
        Forward { child, stderr }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.0 GET through `127.0.0.1:local`: the whole answer, or `None` while nothing
/// listens there yet.
fn get(local: u16) -> Option<String> {
    let mut conn = TcpStream::connect(("127.0.0.1", local)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    conn.write_all(b"GET /index.html HTTP/1.0\r\nHost: web\r\n\r\n")
        .ok()?;
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).ok()?;
    Some(text(&answer))
}

/// Forwards `target` (`pod/web`, `svc/web`) to a free local port and fetches the page twice
/// (two connections over kubectl's one SPDY connection).
fn fetch_through(s: &Server, websockets: bool, target: &str, remote: u16) {
    let local = free_port();
    let forward = Forward::start(s, websockets, &[target, &format!("{local}:{remote}")]);
    for attempt in 0..2 {
        let answer = eventually(
            &format!("an answer through port-forward {target} (attempt {attempt})"),
            Duration::from_secs(30),
            || get(local).filter(|a| !a.is_empty()),
        );
        assert!(
            answer.starts_with("HTTP/1.0 200"),
            "{target}: {answer}\nkubectl: {}",
            forward.stderr()
        );
        assert!(answer.ends_with("hello from web\n"), "{target}: {answer}");
    }
}

#[test]
fn port_forward_serves_http_from_a_pod_and_a_service_over_websocket_and_spdy() {
    let s = up(&["--runtime", "process"]);
    let port = free_port();
    web(&s.0, port);

    fetch_through(&s.0, true, "pod/web", port);
    fetch_through(&s.0, true, "svc/web", 80);
    fetch_through(&s.0, false, "pod/web", port);

    // A port nobody listens on: the connection ends without data, and kubectl shows the
    // error the node wrote on the error stream.
    let (local, closed) = (free_port(), free_port());
    let forward = Forward::start(&s.0, true, &["pod/web", &format!("{local}:{closed}")]);
    let answer = eventually("the refused forward", Duration::from_secs(30), || {
        get(local)
    });
    assert_eq!(answer, "");
    let err = eventually("kubectl's error", Duration::from_secs(10), || {
        let err = forward.stderr();
        err.contains(&format!(
            "error forwarding port {closed} to pod default/web"
        ))
        .then_some(err)
    });
    assert!(err.contains("refused"), "{err}");
}

#[test]
fn port_forward_needs_create_on_pods_portforward() {
    let s = up(&["--runtime", "process"]);
    let port = free_port();
    web(&s.0, port);
    s.0.ok(&[
        "create",
        "role",
        "reader",
        "--verb=get,list",
        "--resource=pods",
    ]);
    s.0.ok(&[
        "create",
        "rolebinding",
        "jane",
        "--role=reader",
        "--user=jane",
    ]);
    let local = free_port();
    let out = s.0.kubectl(&[
        "--as",
        "jane",
        "port-forward",
        "pod/web",
        &format!("{local}:{port}"),
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(r#"cannot create resource "pods/portforward""#),
        "unexpected error: {err}"
    );
    s.0.ok(&[
        "create",
        "role",
        "forward",
        "--verb=create,get",
        "--resource=pods/portforward",
    ]);
    s.0.ok(&[
        "create",
        "rolebinding",
        "jane-forward",
        "--role=forward",
        "--user=jane",
    ]);
    let forward = Forward::start(
        &s.0,
        true,
        &["--as", "jane", "pod/web", &format!("{local}:{port}")],
    );
    let answer = eventually("jane's forward", Duration::from_secs(30), || {
        get(local).filter(|a| !a.is_empty())
    });
    assert!(
        answer.ends_with("hello from web\n"),
        "{answer}\nkubectl: {}",
        forward.stderr()
    );
}

#[test]
fn proxy_subresources_reach_a_pod_a_service_and_a_node_under_rbac() {
    let s = up(&["--runtime", "process"]);
    let port = free_port();
    web(&s.0, port);
    let raw = |path: &str| s.0.ok(&["get", "--raw", path]);
    assert_eq!(
        raw("/api/v1/namespaces/default/services/web:80/proxy/index.html"),
        "hello from web\n"
    );
    assert_eq!(
        raw(&format!(
            "/api/v1/namespaces/default/pods/web:{port}/proxy/index.html"
        )),
        "hello from web\n"
    );
    // The port defaults to the container's first port.
    assert_eq!(
        raw("/api/v1/namespaces/default/pods/web/proxy/index.html"),
        "hello from web\n"
    );
    assert_eq!(raw("/api/v1/nodes/local/proxy/healthz"), "ok");
    // A missing file is the target's 404, passed on.
    let out = s.0.kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/services/web:80/proxy/missing.html",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("NotFound"),
        "{}",
        text(&out.stderr)
    );
    // A port the Service does not have.
    let out = s.0.kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/services/web:81/proxy/",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no endpoints available for service"),
        "{}",
        text(&out.stderr)
    );

    // RBAC: reading services is not proxying to them.
    s.0.ok(&[
        "create",
        "role",
        "reader",
        "--verb=get,list",
        "--resource=pods,services",
    ]);
    s.0.ok(&[
        "create",
        "rolebinding",
        "jane",
        "--role=reader",
        "--user=jane",
    ]);
    let out = s.0.kubectl(&[
        "--as",
        "jane",
        "get",
        "--raw",
        "/api/v1/namespaces/default/services/web:80/proxy/index.html",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(r#"cannot get resource "services/proxy""#),
        "{}",
        text(&out.stderr)
    );
    s.0.ok(&[
        "create",
        "role",
        "proxy",
        "--verb=get",
        "--resource=services/proxy",
    ]);
    s.0.ok(&[
        "create",
        "rolebinding",
        "jane-proxy",
        "--role=proxy",
        "--user=jane",
    ]);
    let answer = eventually("jane may proxy", Duration::from_secs(10), || {
        let out = s.0.kubectl(&[
            "--as",
            "jane",
            "get",
            "--raw",
            "/api/v1/namespaces/default/services/web:80/proxy/index.html",
        ]);
        out.status.success().then(|| text(&out.stdout))
    });
    assert_eq!(answer, "hello from web\n");
}

#[test]
fn port_forward_to_a_pod_on_a_simulated_node_is_a_clear_error() {
    let s = up(&["--runtime", "simulated", "--nodes", "1"]);
    s.0.ok(&["run", "ghost", "--image=busybox", "--port=80"]);
    eventually("pod ghost Running", Duration::from_secs(60), || {
        let out =
            s.0.kubectl(&["get", "pod", "ghost", "-o", "jsonpath={.status.phase}"]);
        (text(&out.stdout) == "Running").then_some(())
    });
    let out =
        s.0.kubectl(&["port-forward", "pod/ghost", &format!("{}:80", free_port())]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("portforward is not supported on simulated nodes"),
        "unexpected error: {err}"
    );
}
