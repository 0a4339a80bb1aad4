//! The built-in ingress controller end to end: `gitplane up` with a local process node and the
//! controller on free loopback ports; two real pods (Python HTTP servers answering with their
//! name, the path and the forwarded headers) behind two Services; the real curl with
//! `--resolve` for host routing, Prefix and Exact paths, 404, 503, TLS with a Secret's
//! certificate (made by openssl) chosen by SNI, the default class, another class left alone,
//! a default backend, `status.loadBalancer` and the Events of a missing Service and Secret.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Server, eventually};
use serde_json::Value;

/// A server with a local process node, stopped with SIGTERM so that its node stops the pods'
/// processes (a SIGKILL would leave them running).
struct LocalNode(Server);

impl Drop for LocalNode {
    fn drop(&mut self) {
        self.0.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A Deployment of one pod answering `NAME PATH host=… xff=… proto=… xhost=…` on `port`, and
/// its Service on port 80 (named `http`).
fn app(name: &str, port: u16) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: web
        image: python:3
        command: ["python3", "-u", "-c"]
        args:
        - |
          import http.server
          class Handler(http.server.BaseHTTPRequestHandler):
              def do_GET(self):
                  h = self.headers
                  text = "{name} %s host=%s xff=%s proto=%s xhost=%s" % (self.path, h.get("Host"),
                      h.get("X-Forwarded-For"), h.get("X-Forwarded-Proto"), h.get("X-Forwarded-Host"))
                  body = (text + "\n").encode()
                  self.send_response(200)
                  self.send_header("Content-Length", str(len(body)))
                  self.end_headers()
                  self.wfile.write(body)
          http.server.ThreadingHTTPServer(("", {port}), Handler).serve_forever()
        ports:
        - {{name: http, containerPort: {port}}}
        readinessProbe:
          httpGet: {{path: /, port: http}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: http, port: 80, targetPort: http}}]
"#
    )
}

const WEB: &str = r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  tls:
  - hosts: [alpha.example.test]
    secretName: alpha-tls
  rules:
  - host: alpha.example.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: alpha, port: {number: 80}}}}
      - {path: /beta-exact, pathType: Exact, backend: {service: {name: beta, port: {name: http}}}}
  - host: beta.example.test
    http:
      paths:
      - {path: /app, pathType: Prefix, backend: {service: {name: beta, port: {number: 80}}}}
  - host: "*.gamma.test"
    http:
      paths:
      - {path: /, pathType: ImplementationSpecific, backend: {service: {name: gamma, port: {number: 80}}}}
      - {path: /missing, pathType: Prefix, backend: {service: {name: nothing, port: {number: 80}}}}
---
apiVersion: v1
kind: Service
metadata: {name: gamma}
spec:
  selector: {app: gamma}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: elsewhere}
spec:
  ingressClassName: other
  rules:
  - host: other.example.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: alpha, port: {number: 80}}}}
"#;

/// One request with the real curl: (status code, body); `extra` adds flags (`--cacert`).
fn curl(scheme: &str, host: &str, port: u16, path: &str, extra: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--resolve"])
        .arg(format!("{host}:{port}:127.0.0.1"))
        .args(["-w", "\n%{http_code}"])
        .args(extra)
        .arg(format!("{scheme}://{host}:{port}{path}"))
        .output()
        .expect("curl is needed: apt-get install curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let code = code.trim().parse().unwrap_or(0);
    if !out.status.success() {
        return (0, String::from_utf8_lossy(&out.stderr).into_owned());
    }
    (code, body.trim().to_string())
}

/// A self-signed certificate and key for `host`, made by openssl in `dir`.
fn certificate(dir: &Path, host: &str) -> (String, String) {
    let (crt, key) = (
        dir.join(format!("{host}.crt")),
        dir.join(format!("{host}.key")),
    );
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", &format!("/CN={host}")])
        .args(["-addext", &format!("subjectAltName=DNS:{host}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("openssl is needed: apt-get install openssl");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        crt.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    )
}

fn ingress_json(s: &Server, name: &str) -> Value {
    serde_json::from_str(&s.ok(&["get", "ingress", name, "-o", "json"])).expect("ingress json")
}

/// The Warning Events about the Ingress `web`, as `REASON: message` lines.
fn warnings(s: &Server) -> String {
    s.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=web,type=Warning",
        "-o",
        "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
    ])
}

#[test]
fn an_ingress_routes_hosts_and_paths_to_two_services_and_serves_tls_by_sni() {
    let (http, https) = (free_port(), free_port());
    let s = LocalNode(Server::start_with(&[
        "--runtime",
        "process",
        "--ingress-listen",
        &format!("127.0.0.1:{http}"),
        "--ingress-tls-listen",
        &format!("127.0.0.1:{https}"),
    ]));
    let s = &s.0;

    // The default class exists and a classless Ingress gets it.
    let class = s.ok(&[
        "get",
        "ingressclass",
        "gitplane",
        "-o",
        "jsonpath={.spec.controller} {.metadata.annotations.ingressclass\\.kubernetes\\.io/is-default-class}",
    ]);
    assert_eq!(class, "gitplane.dev/ingress true");

    s.ok_stdin(&["apply", "-f", "-"], &app("alpha", free_port()));
    s.ok_stdin(&["apply", "-f", "-"], &app("beta", free_port()));
    s.ok_stdin(&["apply", "-f", "-"], WEB);
    assert_eq!(
        ingress_json(s, "web")["spec"]["ingressClassName"],
        "gitplane"
    );

    // Host routing to two pods answering differently, once they are Ready.
    let get = |host: &str, path: &str| curl("http", host, http, path, &[]);
    eventually("alpha behind the ingress", Duration::from_secs(90), || {
        get("alpha.example.test", "/")
            .1
            .starts_with("alpha /")
            .then_some(())
    });
    eventually("beta behind the ingress", Duration::from_secs(90), || {
        get("beta.example.test", "/app")
            .1
            .starts_with("beta /app")
            .then_some(())
    });
    let (code, body) = get("beta.example.test", "/app/x?q=1");
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body,
        format!(
            "beta /app/x?q=1 host=beta.example.test:{http} xff=127.0.0.1 proto=http \
             xhost=beta.example.test:{http}"
        )
    );

    // Paths: Exact beats the Prefix `/` on its own path only; Prefix matches whole elements.
    let who = |host: &str, path: &str| {
        let (code, body) = get(host, path);
        match code {
            200 => body.split(' ').next().unwrap_or("").to_string(),
            other => other.to_string(),
        }
    };
    for (host, path, expected) in [
        ("alpha.example.test", "/beta-exact", "beta"),
        ("alpha.example.test", "/beta-exact/", "alpha"),
        ("alpha.example.test", "/beta-exact/x", "alpha"),
        ("alpha.example.test", "/anything", "alpha"),
        ("ALPHA.example.test", "/", "alpha"),
        ("beta.example.test", "/app/", "beta"),
        ("beta.example.test", "/apple", "404"),
        ("beta.example.test", "/", "404"),
        ("unknown.example.test", "/", "404"),
        // Another class's Ingress is not served.
        ("other.example.test", "/", "404"),
        // A wildcard host: a Service without endpoints, and one that does not exist.
        ("x.gamma.test", "/", "503"),
        ("x.gamma.test", "/missing", "503"),
        ("x.y.gamma.test", "/", "404"),
    ] {
        assert_eq!(who(host, path), expected, "{host}{path}");
    }

    // status.loadBalancer: the listen address on the served Ingress, nothing on the other.
    eventually("web's status", Duration::from_secs(20), || {
        (ingress_json(s, "web")["status"]["loadBalancer"]["ingress"]
            == serde_json::json!([{"ip": "127.0.0.1"}]))
        .then_some(())
    });
    assert!(
        ingress_json(s, "elsewhere")["status"]["loadBalancer"]
            .get("ingress")
            .is_none(),
        "{}",
        ingress_json(s, "elsewhere")
    );

    // The missing Service and the missing TLS Secret are Events, not failures.
    eventually("warning events on web", Duration::from_secs(20), || {
        let events = warnings(s);
        (events.contains("BackendNotFound: service \"default/nothing\" not found")
            && events.contains("TLSSecretUnusable: TLS secret \"alpha-tls\" not found"))
        .then_some(())
    });

    // TLS: without the Secret, the default certificate does not verify for the host.
    let tmp = tempfile::tempdir().expect("temp dir");
    let (crt, key) = certificate(tmp.path(), "alpha.example.test");
    let tls = |host: &str| curl("https", host, https, "/", &["--cacert", &crt]);
    let (code, err) = tls("alpha.example.test");
    assert_eq!(code, 0, "verified without the secret: {err}");
    s.ok(&[
        "create",
        "secret",
        "tls",
        "alpha-tls",
        "--cert",
        &crt,
        "--key",
        &key,
    ]);
    let body = eventually(
        "alpha over https with the secret's certificate",
        Duration::from_secs(20),
        || {
            let (code, body) = tls("alpha.example.test");
            (code == 200).then_some(body)
        },
    );
    assert!(
        body.starts_with("alpha / ") && body.contains("proto=https"),
        "{body}"
    );
    // Another server name gets another certificate, which the CA file does not trust.
    let (code, err) = tls("beta.example.test");
    assert_eq!(code, 0, "beta verified with alpha's certificate: {err}");
    let (code, body) = curl("https", "beta.example.test", https, "/app", &["-k"]);
    assert_eq!(
        (code, body.split(' ').next()),
        (200, Some("beta")),
        "{body}"
    );

    // A default backend answers what no rule matches.
    s.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: fallback}\nspec:\n  \
         defaultBackend: {service: {name: beta, port: {number: 80}}}\n",
    );
    eventually("the default backend", Duration::from_secs(20), || {
        (who("unknown.example.test", "/") == "beta").then_some(())
    });
    assert_eq!(who("beta.example.test", "/apple"), "beta");
    assert_eq!(who("alpha.example.test", "/"), "alpha");

    // The Ingress moved to another class: its hosts and its status are gone.
    s.ok(&[
        "patch",
        "ingress",
        "web",
        "-p",
        r#"{"spec":{"ingressClassName":"other"}}"#,
    ]);
    eventually("alpha's rules to go", Duration::from_secs(20), || {
        (who("alpha.example.test", "/") == "beta").then_some(())
    });
    eventually(
        "web's status to be cleared",
        Duration::from_secs(20),
        || {
            ingress_json(s, "web")["status"]["loadBalancer"]
                .get("ingress")
                .is_none()
                .then_some(())
        },
    );
}
