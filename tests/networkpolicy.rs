//! NetworkPolicy enforced end to end: `gitplane up` as root with its local process node, whose
//! pods get their own network namespaces on the node's bridge; the node agent turns policies
//! into nftables rules inside them. Two pods talk over HTTP; a default-deny ingress policy cuts
//! them off, allow rules by pod selector and by namespace selector let them through again,
//! deleting the policies restores everything, and an egress deny stops a pod's outgoing
//! connections. The probe is the real kubectl exec of curl inside the client pod's namespace.
//! Where pods share the host network (simulated nodes here), creating a policy answers a
//! `Warning:`.

mod common;

use std::time::Duration;

use common::{Server, eventually};
use serde_json::Value;

/// A server stopped cleanly when dropped, so that its node stops the pods' processes even
/// when a test fails.
struct Up(Server);

impl Drop for Up {
    fn drop(&mut self) {
        self.0.stop();
    }
}

fn root_with_ip() -> bool {
    nix_root()
        && std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .is_ok_and(|o| o.status.success())
}

fn nix_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn pod_json(s: &Server, ns: &str, name: &str) -> Option<Value> {
    let out = s.kubectl(&["get", "pod", "-n", ns, name, "-o", "json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

/// Waits for the pod to run and answers its address.
fn running_ip(s: &Server, ns: &str, name: &str) -> String {
    eventually(
        &format!("pod {ns}/{name} Running with an IP"),
        Duration::from_secs(60),
        || {
            pod_json(s, ns, name)
                .filter(|p| p["status"]["phase"] == "Running")
                .and_then(|p| p["status"]["podIP"].as_str().map(str::to_string))
        },
    )
}

/// Whether the pod `ns/from` gets an HTTP answer from `ip:8080`.
fn reaches(s: &Server, ns: &str, from: &str, ip: &str) -> bool {
    s.kubectl(&[
        "exec",
        "-n",
        ns,
        from,
        "--",
        "curl",
        "-sS",
        "-o",
        "/dev/null",
        "--max-time",
        "2",
        &format!("http://{ip}:8080/"),
    ])
    .status
    .success()
}

fn wait_reach(s: &Server, ns: &str, from: &str, ip: &str, expected: bool, why: &str) {
    eventually(
        &format!(
            "{ns}/{from} {} web: {why}",
            if expected {
                "to reach"
            } else {
                "to be cut off from"
            }
        ),
        Duration::from_secs(60),
        || (reaches(s, ns, from, ip) == expected).then_some(()),
    );
}

/// Applies a manifest and answers kubectl's stderr (where its warnings go).
fn apply(s: &Server, manifest: &str) -> String {
    let out = s.kubectl_stdin(&["apply", "-f", "-"], Some(manifest));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "kubectl apply failed: {stderr}");
    stderr
}

#[test]
fn policies_cut_pods_off_and_allow_rules_by_pod_and_namespace_selector_let_them_through() {
    if !root_with_ip() {
        eprintln!("skipped: pods get their own network namespaces only as root with ip");
        return;
    }
    assert!(
        std::process::Command::new("nft")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "nft is missing: install it with `apt-get install nftables`"
    );
    assert!(
        std::process::Command::new("curl")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "curl is missing: install it with `apt-get install curl`"
    );
    let up = Up(Server::start_with(&[
        "--node-name",
        "local",
        "--runtime",
        "process",
    ]));
    let s = &up.0;
    apply(
        s,
        r#"
apiVersion: v1
kind: Namespace
metadata: {name: other, labels: {team: other}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default, labels: {app: web}}
spec:
  containers:
  - name: web
    image: python
    command: [python3, -m, http.server, "8080"]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default, labels: {app: client}}
spec:
  containers:
  - {name: c, image: x, command: [sleep, "1000"]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: other, labels: {app: client}}
spec:
  containers:
  - {name: c, image: x, command: [sleep, "1000"]}
"#,
    );
    let web = running_ip(s, "default", "web");
    assert!(web.starts_with("10.88."), "web has its own network: {web}");
    running_ip(s, "default", "client");
    running_ip(s, "other", "client");
    wait_reach(s, "default", "client", &web, true, "no policy yet");
    wait_reach(s, "other", "client", &web, true, "no policy yet");

    // Default deny for web's ingress. The node gives pods their own network: no warning.
    let stderr = apply(
        s,
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
"#,
    );
    assert!(!stderr.contains("Warning"), "no warning: {stderr}");
    wait_reach(s, "default", "client", &web, false, "default deny");
    assert!(
        !reaches(s, "other", "client", &web),
        "denied from other too"
    );

    // Allowed by pod selector (same namespace) on web's port: only default/client.
    apply(
        s,
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-client, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{protocol: TCP, port: 8080}]
"#,
    );
    wait_reach(
        s,
        "default",
        "client",
        &web,
        true,
        "allowed by pod selector",
    );
    assert!(
        !reaches(s, "other", "client", &web),
        "a pod selector alone means the policy's namespace"
    );

    // Allowed by namespace selector.
    apply(
        s,
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-other, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {team: other}}}]
"#,
    );
    wait_reach(
        s,
        "other",
        "client",
        &web,
        true,
        "allowed by namespace selector",
    );

    // The allow rules go, the deny stays: cut off again; then no policy: open again.
    s.ok(&["delete", "networkpolicy", "allow-client", "allow-other"]);
    wait_reach(s, "default", "client", &web, false, "allow rules deleted");
    s.ok(&["delete", "networkpolicy", "deny"]);
    wait_reach(s, "default", "client", &web, true, "every policy deleted");
    wait_reach(s, "other", "client", &web, true, "every policy deleted");

    // Egress deny on default/client: its outgoing connections stop, other/client is untouched.
    apply(
        s,
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: no-egress, namespace: default}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
"#,
    );
    wait_reach(s, "default", "client", &web, false, "egress denied");
    assert!(
        reaches(s, "other", "client", &web),
        "other/client is not selected"
    );
    // An egress rule to web's pods lets it out again.
    apply(
        s,
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: to-web, namespace: default}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress:
  - to: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: 8080}]
"#,
    );
    wait_reach(s, "default", "client", &web, true, "egress allowed to web");
}

#[test]
fn creating_a_policy_where_pods_share_the_host_network_answers_a_warning() {
    let s = Server::start_with(&["--runtime", "simulated"]);
    eventually("a simulated node", Duration::from_secs(30), || {
        let nodes = s.ok(&["get", "nodes", "-o", "name"]);
        (!nodes.trim().is_empty()).then_some(())
    });
    let stderr = apply(
        &s,
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: default}
spec:
  podSelector: {}
"#,
    );
    assert!(
        stderr.contains(
            "Warning: NetworkPolicy is not enforced on nodes whose pods share the host network ("
        ),
        "{stderr}"
    );
    // The policy is stored all the same.
    s.ok(&["get", "networkpolicy", "deny"]);
}
