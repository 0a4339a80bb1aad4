//! Services end to end: cluster IP and node port allocation by the API server, and the service
//! proxy forwarding cluster IPs and node ports to ready endpoints. Backends are small HTTP
//! servers of the test on loopback addresses; all traffic stays on 127.0.0.0/8 (the service
//! range given to the server is inside it, so the proxy binds cluster IPs as they are).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use common::{Server, eventually, hello_versions, http_get, only, set_hello_version};
use serde_json::Value;

/// Flags that keep every address on loopback, with a node port range of this test's own.
fn server(node_ports: &str) -> Server {
    Server::start_with(&[
        "--service-cluster-ip-range",
        "127.96.0.0/24",
        "--service-node-port-range",
        node_ports,
    ])
}

fn json(s: &Server, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&s.ok(&all)).expect("kubectl -o json")
}

fn refused(s: &Server, manifest: &str) -> String {
    let out = s.kubectl_stdin(&["apply", "-f", "-"], Some(manifest));
    assert!(
        !out.status.success(),
        "apply should have failed:\n{manifest}"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn node_port_service(name: &str, node_port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  type: NodePort\n  \
         ports: [{{port: 80, nodePort: {node_port}}}]\n"
    )
}

#[test]
fn cluster_ips_and_node_ports_are_allocated_once_and_released_on_delete() {
    let s = server("31000-31099");
    s.ok(&["create", "service", "clusterip", "a", "--tcp=80:8080"]);
    let a = json(&s, &["get", "svc", "a"]);
    let ip = a["spec"]["clusterIP"]
        .as_str()
        .expect("clusterIP")
        .to_string();
    assert!(ip.starts_with("127.96.0."), "{ip}");
    assert_eq!(a["spec"]["clusterIPs"], serde_json::json!([ip]));

    // An explicit node port is taken once.
    s.ok_stdin(&["apply", "-f", "-"], &node_port_service("b", 31050));
    let err = refused(&s, &node_port_service("c", 31050));
    assert!(
        err.contains("spec.ports[0].nodePort")
            && err.contains("provided port is already allocated"),
        "{err}"
    );
    let err = refused(&s, &node_port_service("c", 40000));
    assert!(err.contains("31000-31099"), "{err}");
    let err = refused(
        &s,
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: d}}\nspec: {{clusterIP: {ip}, ports: [{{port: 80}}]}}\n"
        ),
    );
    assert!(err.contains("provided IP is already allocated"), "{err}");
    let err = refused(
        &s,
        "apiVersion: v1\nkind: Service\nmetadata: {name: d}\nspec: {clusterIP: 10.0.0.5, ports: [{port: 80}]}\n",
    );
    assert!(
        err.contains("The range of valid IPs is 127.96.0.0/24"),
        "{err}"
    );
    assert!(s.kubectl(&["get", "svc", "c"]).status.code() != Some(0));

    // A cluster IP never changes; updates keep it.
    s.ok(&["label", "svc", "a", "tier=web"]);
    assert_eq!(
        json(&s, &["get", "svc", "a"])["spec"]["clusterIP"],
        ip.as_str()
    );
    let out = s.kubectl(&[
        "patch",
        "svc",
        "a",
        "-p",
        r#"{"spec":{"clusterIP":"127.96.0.200","clusterIPs":["127.96.0.200"]}}"#,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("may not change once set"));

    // Deleting b frees its port; changing c's type to ClusterIP frees c's.
    s.ok(&["delete", "svc", "b"]);
    s.ok_stdin(&["apply", "-f", "-"], &node_port_service("c", 31050));
    s.ok(&[
        "patch",
        "svc",
        "c",
        "-p",
        r#"{"spec":{"type":"ClusterIP"}}"#,
    ]);
    let c = json(&s, &["get", "svc", "c"]);
    assert!(c["spec"]["ports"][0].get("nodePort").is_none(), "{c}");
    s.ok_stdin(&["apply", "-f", "-"], &node_port_service("e", 31050));

    // Without a node port, one is picked from the range; headless Services get no IP.
    s.ok(&["create", "service", "nodeport", "f", "--tcp=80:8080"]);
    let port = json(&s, &["get", "svc", "f"])["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .expect("nodePort");
    assert!((31000..=31099).contains(&port), "{port}");
    s.ok(&["create", "service", "clusterip", "g", "--clusterip=None"]);
    assert_eq!(json(&s, &["get", "svc", "g"])["spec"]["clusterIP"], "None");

    // The API server is a Service too, on the first address, with its listener as endpoint.
    let k = json(&s, &["get", "svc", "kubernetes", "-n", "default"]);
    assert_eq!(k["spec"]["clusterIP"], "127.96.0.1", "{k}");
    assert_eq!(k["spec"]["ports"][0]["port"], 443, "{k}");
    let eps = json(&s, &["get", "endpointslice", "kubernetes", "-n", "default"]);
    let port = s.url.rsplit(':').next().unwrap().parse::<u64>().unwrap();
    assert_eq!(eps["ports"][0]["port"], port, "{eps}");

    // Every allocated cluster IP is distinct.
    let list = json(&s, &["get", "svc", "-A"]);
    let mut ips: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["spec"]["clusterIP"].as_str())
        .filter(|ip| *ip != "None")
        .collect();
    let n = ips.len();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), n, "duplicate cluster IPs: {list}");
}

/// An HTTP server answering `backend-NAME` to every request, on `ip:port`.
fn backend(ip: &str, port: u16, name: &str) -> SocketAddr {
    let listener = TcpListener::bind((ip, port)).expect("bind backend");
    let addr = listener.local_addr().unwrap();
    let body = format!("backend-{name}");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let body = body.clone();
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf);
                let _ = write!(
                    stream,
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    addr
}

/// Who answered `n` requests in a row (errors included, as `error: …`).
fn answers(addr: &str, n: usize) -> std::collections::BTreeSet<String> {
    (0..n)
        .map(|_| http_get(addr).unwrap_or_else(|e| format!("error: {e}")))
        .collect()
}

fn slice(endpoints: &[(&SocketAddr, bool)]) -> String {
    let port = endpoints.first().map(|(a, _)| a.port()).unwrap_or(1);
    let eps: Vec<String> = endpoints
        .iter()
        .map(|(a, ready)| {
            format!(
                "  - addresses: [\"{}\"]\n    conditions: {{ready: {ready}}}\n",
                a.ip()
            )
        })
        .collect();
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  \
         labels: {{kubernetes.io/service-name: web}}\naddressType: IPv4\n\
         ports: [{{name: http, port: {port}, protocol: TCP}}]\nendpoints:{}\n{}",
        if eps.is_empty() { " []" } else { "" },
        eps.concat()
    )
}

#[test]
fn node_ports_and_cluster_ips_reach_every_ready_endpoint_and_only_those() {
    let s = server("31100-31199");
    // Three backends on three loopback addresses, one port.
    let first = backend("127.0.0.2", 0, "a");
    let port = first.port();
    let backends = [
        first,
        backend("127.0.0.3", port, "b"),
        backend("127.0.0.4", port, "c"),
    ];
    s.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  type: NodePort\n  \
         ports: [{name: http, port: 28080, targetPort: http, nodePort: 31180}]\n",
    );
    let svc = json(&s, &["get", "svc", "web"]);
    let cluster = format!("{}:28080", svc["spec"]["clusterIP"].as_str().unwrap());
    let node_port = "127.0.0.1:31180".to_string();

    // No endpoints: connections are refused on both frontends.
    assert!(http_get(&node_port).is_err());
    assert!(http_get(&cluster).is_err());

    s.ok_stdin(
        &["apply", "-f", "-"],
        &slice(&[
            (&backends[0], true),
            (&backends[1], true),
            (&backends[2], true),
        ]),
    );
    let all: std::collections::BTreeSet<String> = ["backend-a", "backend-b", "backend-c"]
        .map(String::from)
        .into();
    for frontend in [&node_port, &cluster] {
        eventually(
            &format!("{frontend} to reach every backend"),
            Duration::from_secs(20),
            || (answers(frontend, 30) == all).then_some(()),
        );
    }

    // b fails readiness: it gets no new connections, the others keep serving.
    s.ok_stdin(
        &["apply", "-f", "-"],
        &slice(&[
            (&backends[0], true),
            (&backends[1], false),
            (&backends[2], true),
        ]),
    );
    let ready: std::collections::BTreeSet<String> =
        ["backend-a", "backend-c"].map(String::from).into();
    for frontend in [&node_port, &cluster] {
        eventually(
            &format!("{frontend} to skip the unready backend"),
            Duration::from_secs(20),
            || (answers(frontend, 30) == ready).then_some(()),
        );
    }

    // Scaled to zero: refused again.
    s.ok_stdin(&["apply", "-f", "-"], &slice(&[]));
    for frontend in [&node_port, &cluster] {
        eventually(
            &format!("{frontend} to refuse"),
            Duration::from_secs(20),
            || http_get(frontend).is_err().then_some(()),
        );
    }
}

/// A server with a local process node, stopped with SIGTERM so that its node stops the pods'
/// processes (a SIGKILL would leave them running).
struct LocalNode(Server);

impl Drop for LocalNode {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Runs git in the playground repository `up` seeded.
fn playground_git(s: &Server, args: &[&str]) {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(s.data_dir.join("repo"))
        .args(["-c", "user.name=test", "-c", "user.email=test@example.com"])
        .args(args)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The README's quickstart: the playground's hello app answers on its node port through the
/// proxy from real processes on the local node; a commit rolls a new version out and a
/// rollback brings the old one back.
#[test]
fn the_quickstart_app_answers_on_its_node_port_and_follows_commits_and_rollbacks() {
    let s = LocalNode(Server::start_with(&["--runtime", "process"]));
    let s = &s.0;
    eventually(
        "hello 1.0.0 on the node port",
        Duration::from_secs(180),
        || (hello_versions(10) == only("1.0.0")).then_some(()),
    );
    let hello = http_get("127.0.0.1:30080").expect("an answer");
    assert!(hello.starts_with("hello from hello-"), "{hello}");

    set_hello_version(&s.data_dir.join("repo"), "1.0.0", "1.1.0");
    playground_git(s, &["commit", "-qam", "hello 1.1.0"]);
    eventually("hello 1.1.0 rolled out", Duration::from_secs(180), || {
        (hello_versions(10) == only("1.1.0")).then_some(())
    });

    let out = common::gitplane(s, &["rollback", "hello"]);
    assert!(
        out.status.success(),
        "rollback: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(
        "hello 1.0.0 back after the rollback",
        Duration::from_secs(180),
        || (hello_versions(10) == only("1.0.0")).then_some(()),
    );
}
