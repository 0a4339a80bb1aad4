//! Security end to end: TLS and authentication (client certificates, tokens, service account
//! tokens, anonymous), RBAC (a matrix from tests/fixtures/rbac, can-i through the real kubectl,
//! escalation, impersonation), audit, and the in-flight limits.

mod common;

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use common::{Auth, Server, eventually};
use serde_json::{Value, json};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/rbac");
const USERS: [&str; 6] = ["jane", "bob", "carl", "dave", "erin", "frank"];
const VERBS: [&str; 6] = ["get", "list", "create", "update", "patch", "delete"];
const RESOURCES: [&str; 4] = ["configmaps", "secrets", "pods", "deployments"];
const NAMESPACES: [&str; 2] = ["team-a", "team-b"];

fn fixture(name: &str) -> PathBuf {
    Path::new(FIXTURES).join(name)
}

fn token(user: &str) -> Auth {
    Auth::Token(format!("{user}-token"))
}

/// A server with the fixture's token file and roles applied.
fn server_with_fixture(extra: &[&str]) -> Server {
    let tokens = fixture("tokens.csv");
    let mut args = vec!["--token-auth-file", tokens.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    let s = Server::start_with(&args);
    let roles = std::fs::read_to_string(fixture("roles.yaml")).expect("roles.yaml");
    s.ok_stdin(&["apply", "-f", "-"], &roles);
    s
}

/// The allowed (user, verb, resource, namespace) of expected.txt.
fn expected() -> HashSet<(String, String, String, String)> {
    let text = std::fs::read_to_string(fixture("expected.txt")).expect("expected.txt");
    let mut out = HashSet::new();
    for line in text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 4, "expected.txt: {line}");
        for verb in f[1].split(',') {
            for resource in f[2].split(',') {
                for ns in f[3].split(',') {
                    out.insert((f[0].into(), verb.into(), resource.into(), ns.into()));
                }
            }
        }
    }
    out
}

fn object(resource: &str, ns: &str, name: &str) -> Value {
    let meta = json!({"name": name, "namespace": ns});
    match resource {
        "configmaps" => {
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"a": "b"}})
        }
        "secrets" => {
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta, "stringData": {"a": "b"}})
        }
        "pods" => json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
        _ => json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}),
    }
}

fn collection(resource: &str, ns: &str) -> String {
    match resource {
        "deployments" => format!("/apis/apps/v1/namespaces/{ns}/deployments"),
        r => format!("/api/v1/namespaces/{ns}/{r}"),
    }
}

#[test]
fn the_rbac_matrix_allows_exactly_what_the_fixture_grants() {
    let s = server_with_fixture(&[]);
    for ns in NAMESPACES {
        for r in RESOURCES {
            let (code, body) = s.http(
                "POST",
                &collection(r, ns),
                "application/json",
                object(r, ns, "fixture").to_string().as_bytes(),
            );
            assert_eq!(code, 201, "{r} in {ns}: {body}");
        }
    }
    let allowed = expected();
    let mut failures = Vec::new();
    let mut checked = 0;
    for user in USERS {
        for verb in VERBS {
            for r in RESOURCES {
                for ns in NAMESPACES {
                    let base = collection(r, ns);
                    let (method, path, body) = match verb {
                        "get" => ("GET", format!("{base}/fixture"), Value::Null),
                        "list" => ("GET", base.clone(), Value::Null),
                        "create" => (
                            "POST",
                            format!("{base}?dryRun=All"),
                            object(r, ns, "new-one"),
                        ),
                        "update" => {
                            let current = s.get_json(&format!("{base}/fixture"));
                            ("PUT", format!("{base}/fixture?dryRun=All"), current)
                        }
                        "patch" => (
                            "PATCH",
                            format!("{base}/fixture?dryRun=All"),
                            json!({"metadata": {"labels": {"patched": "yes"}}}),
                        ),
                        _ => ("DELETE", format!("{base}/fixture?dryRun=All"), Value::Null),
                    };
                    let body = if body.is_null() {
                        Vec::new()
                    } else {
                        body.to_string().into_bytes()
                    };
                    let ct = if verb == "patch" {
                        "application/merge-patch+json"
                    } else {
                        "application/json"
                    };
                    let a = common::request(&s.url, &token(user), method, &path, ct, &body, &[]);
                    let want = allowed.contains(&(user.into(), verb.into(), r.into(), ns.into()));
                    let group = if r == "deployments" { "apps" } else { "" };
                    let ok = if want {
                        (200..300).contains(&a.code)
                    } else {
                        a.code == 403
                            && a.body["message"].as_str().is_some_and(|m| {
                                m.contains(&format!(
                                    "User \"{user}\" cannot {verb} resource \"{r}\" in API group \"{group}\" in the namespace \"{ns}\""
                                ))
                            })
                    };
                    checked += 1;
                    if !ok {
                        failures.push(format!(
                            "{user} {verb} {r} in {ns}: expected {}, got {} {}",
                            if want { "allowed" } else { "403" },
                            a.code,
                            a.body
                        ));
                    }
                }
            }
        }
    }
    assert_eq!(
        checked,
        USERS.len() * VERBS.len() * RESOURCES.len() * NAMESPACES.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A kubeconfig for this server that authenticates with `token` only.
fn token_kubeconfig(s: &Server, token: &str) -> PathBuf {
    let admin = std::fs::read_to_string(s.kubeconfig()).expect("kubeconfig");
    let mut out = String::new();
    let mut replaced = false;
    for line in admin.lines() {
        let t = line.trim_start();
        if t.starts_with("client-certificate-data:") || t.starts_with("client-key-data:") {
            if !replaced {
                out.push_str(&format!("    token: {token}\n"));
                replaced = true;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    let tag: String = token.chars().rev().take(12).collect();
    let path = s.data_dir.join(format!("kubeconfig-{tag}"));
    std::fs::write(&path, out).expect("write kubeconfig");
    path
}

#[test]
fn kubectl_auth_can_i_and_can_i_list_answer_for_the_caller() {
    let s = server_with_fixture(&[]);
    let jane = token_kubeconfig(&s, "jane-token");
    let jane = jane.to_str().expect("utf-8");
    let yes = s.kubectl_as(
        jane,
        &["auth", "can-i", "create", "deployments", "-n", "team-a"],
    );
    assert!(yes.status.success(), "{yes:?}");
    assert_eq!(String::from_utf8_lossy(&yes.stdout).trim(), "yes");
    let no = s.kubectl_as(
        jane,
        &["auth", "can-i", "create", "deployments", "-n", "team-b"],
    );
    assert!(!no.status.success());
    assert_eq!(String::from_utf8_lossy(&no.stdout).trim(), "no");
    let list = s.kubectl_as(jane, &["auth", "can-i", "--list", "-n", "team-a"]);
    assert!(list.status.success(), "{list:?}");
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(text.contains("deployments.apps"), "{text}");
    assert!(
        text.contains("selfsubjectaccessreviews.authorization.k8s.io"),
        "{text}"
    );
    let carl = token_kubeconfig(&s, "carl-token");
    let carl = carl.to_str().expect("utf-8");
    let list = s.kubectl_as(carl, &["auth", "can-i", "--list", "-n", "team-b"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.contains("[fixture]"),
        "resourceNames are listed: {text}"
    );
    // The admin asks about another user (impersonation through --as; an impersonated user has
    // only the groups asked for, so bob's `viewers` comes with --as-group).
    let as_bob = ["-n", "team-a", "--as", "bob", "--as-group", "viewers"];
    let no = s.kubectl(&[&["auth", "can-i", "delete", "pods"][..], &as_bob].concat());
    assert_eq!(String::from_utf8_lossy(&no.stdout).trim(), "no");
    assert_eq!(
        s.ok(&[&["auth", "can-i", "list", "pods"][..], &as_bob].concat())
            .trim(),
        "yes"
    );
}

fn assert_unauthorized(a: &common::Answer, what: &str) {
    assert_eq!(a.code, 401, "{what}: {:?}", a.body);
    assert_eq!(
        a.body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "Unauthorized", "reason": "Unauthorized", "code": 401}),
        "{what}"
    );
}

fn cert(issued: apiserver::tls::Issued) -> Auth {
    Auth::Cert {
        cert_pem: issued.cert_pem,
        key_pem: issued.key_pem,
    }
}

#[test]
fn bad_tokens_and_unknown_or_expired_certificates_get_401() {
    let s = server_with_fixture(&[]);
    let pods = "/api/v1/namespaces/default/pods";
    let bad = s.http_as(&Auth::Token("nope".into()), "GET", pods, b"", &[]);
    assert_unauthorized(&bad, "unknown token");
    let ca = apiserver::tls::Ca::load_or_create(&s.data_dir.join("pki")).expect("cluster CA");
    let expired = ca
        .issue_client_valid("admin", &["system:masters"], -5)
        .expect("cert");
    let a = s.http_as(&cert(expired), "GET", pods, b"", &[]);
    assert_unauthorized(&a, "expired certificate");
    let other_dir = tempfile::tempdir().expect("tmp");
    let other = apiserver::tls::Ca::load_or_create(other_dir.path()).expect("another CA");
    let stranger = other
        .issue_client("admin", &["system:masters"])
        .expect("cert");
    let a = s.http_as(&cert(stranger), "GET", pods, b"", &[]);
    assert_unauthorized(&a, "certificate of an unknown CA");
    // A certificate of the cluster CA names its user and groups.
    let jane = ca.issue_client("jane", &["dev"]).expect("cert");
    let who = s.http_as(
        &cert(jane),
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        br#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#,
        &[],
    );
    assert_eq!(who.code, 201, "{:?}", who.body);
    assert_eq!(who.body["status"]["userInfo"]["username"], "jane");
    assert_eq!(
        who.body["status"]["userInfo"]["groups"],
        json!(["dev", "system:authenticated"])
    );
}

#[test]
fn denials_are_403_statuses_in_kubernetes_wording() {
    let s = server_with_fixture(&[]);
    let a = s.http_as(
        &token("erin"),
        "GET",
        "/api/v1/namespaces/default/pods",
        b"",
        &[],
    );
    assert_eq!(a.code, 403);
    assert_eq!(
        a.body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "pods is forbidden: User \"erin\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"",
            "reason": "Forbidden", "details": {"kind": "pods"}, "code": 403})
    );
    let a = s.http_as(
        &token("erin"),
        "GET",
        "/apis/apps/v1/namespaces/x/deployments/web",
        b"",
        &[],
    );
    assert_eq!(
        a.body["message"],
        "deployments.apps \"web\" is forbidden: User \"erin\" cannot get resource \"deployments\" in API group \"apps\" in the namespace \"x\""
    );
    let a = s.http_as(&token("erin"), "GET", "/api/v1/nodes", b"", &[]);
    assert_eq!(
        a.body["message"],
        "nodes is forbidden: User \"erin\" cannot list resource \"nodes\" in API group \"\" at the cluster scope"
    );
}

#[test]
fn anonymous_requests_see_only_health_and_discovery() {
    let s = server_with_fixture(&[]);
    for path in [
        "/healthz", "/livez", "/readyz", "/version", "/api", "/apis", "/api/v1",
    ] {
        let a = s.http_as(&Auth::Anonymous, "GET", path, b"", &[]);
        assert_eq!(a.code, 200, "{path}: {:?}", a.body);
    }
    let a = s.http_as(
        &Auth::Anonymous,
        "GET",
        "/api/v1/namespaces/default/configmaps",
        b"",
        &[],
    );
    assert_eq!(a.code, 403);
    assert_eq!(
        a.body["message"],
        "configmaps is forbidden: User \"system:anonymous\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\""
    );
    let a = s.http_as(&Auth::Anonymous, "POST", "/api/v1/namespaces", b"{}", &[]);
    assert_eq!(a.code, 403);
}

#[test]
fn anonymous_auth_off_makes_requests_without_credentials_401() {
    let tokens = fixture("tokens.csv");
    let s = Server::start_with(&[
        "--token-auth-file",
        tokens.to_str().expect("utf-8"),
        "--anonymous-auth=false",
    ]);
    let a = s.http_as(&Auth::Anonymous, "GET", "/version", b"", &[]);
    assert_unauthorized(&a, "no credentials");
    assert_eq!(
        s.http_as(&token("erin"), "GET", "/version", b"", &[]).code,
        200
    );
}

#[test]
fn impersonation_needs_the_impersonate_verb() {
    let s = server_with_fixture(&[]);
    let cms = "/api/v1/namespaces/team-a/configmaps";
    // dave may impersonate jane (and group dev), and then acts as jane.
    let a = s.http_as(
        &token("dave"),
        "GET",
        cms,
        b"",
        &[("Impersonate-User", "jane")],
    );
    assert_eq!(a.code, 200, "{:?}", a.body);
    let a = s.http_as(
        &token("dave"),
        "GET",
        "/api/v1/namespaces/team-b/configmaps",
        b"",
        &[("Impersonate-User", "jane")],
    );
    assert_eq!(a.code, 403);
    assert!(
        a.body["message"]
            .as_str()
            .unwrap_or("")
            .contains("User \"jane\""),
        "{:?}",
        a.body
    );
    // ... but not bob, nor the group system:masters.
    let a = s.http_as(
        &token("dave"),
        "GET",
        cms,
        b"",
        &[("Impersonate-User", "bob")],
    );
    assert_eq!(a.code, 403);
    assert_eq!(
        a.body["message"],
        "users \"bob\" is forbidden: User \"dave\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
    );
    let a = s.http_as(
        &token("dave"),
        "GET",
        cms,
        b"",
        &[
            ("Impersonate-User", "jane"),
            ("Impersonate-Group", "system:masters"),
        ],
    );
    assert_eq!(a.code, 403, "{:?}", a.body);
    // Without the right at all.
    let a = s.http_as(
        &token("erin"),
        "GET",
        cms,
        b"",
        &[("Impersonate-User", "jane")],
    );
    assert_eq!(a.code, 403);
    // The admin may impersonate anyone (kubectl --as).
    let out = s.kubectl(&["get", "configmaps", "-n", "team-b", "--as", "jane"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("User \"jane\" cannot list resource"),
        "{out:?}"
    );
}

#[test]
fn roles_and_bindings_cannot_grant_more_than_their_author_holds() {
    let s = server_with_fixture(&[]);
    let frank = token("frank");
    let roles = "/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/roles";
    let bindings = "/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/rolebindings";
    let role = |name: &str, rules: Value| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": name}, "rules": rules})
        .to_string()
    };
    let held = s.http_as(
        &frank,
        "POST",
        roles,
        role(
            "pods",
            json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]),
        )
        .as_bytes(),
        &[],
    );
    assert_eq!(held.code, 201, "{:?}", held.body);
    let more = s.http_as(
        &frank,
        "POST",
        roles,
        role(
            "nodes",
            json!([{"apiGroups": [""], "resources": ["nodes"], "verbs": ["delete"]}]),
        )
        .as_bytes(),
        &[],
    );
    assert_eq!(more.code, 403, "{:?}", more.body);
    let message = more.body["message"].as_str().unwrap_or("");
    assert!(
        message
            .starts_with("roles.rbac.authorization.k8s.io \"nodes\" is forbidden: user \"frank\"")
            && message.contains("attempting to grant RBAC permissions not currently held")
            && message.contains("Resources:[\"nodes\"]"),
        "{message}"
    );
    // Patching a held role into more is refused too.
    let patch = s.http_as(
        &frank,
        "PATCH",
        &format!("{roles}/pods"),
        br#"{"rules":[{"apiGroups":["*"],"resources":["*"],"verbs":["*"]}]}"#,
        &[("Content-Type", "application/merge-patch+json")],
    );
    assert_eq!(patch.code, 403, "{:?}", patch.body);
    let binding = |name: &str, role: &str| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "erin"}]})
        .to_string()
    };
    let a = s.http_as(
        &frank,
        "POST",
        bindings,
        binding("view", "view").as_bytes(),
        &[],
    );
    assert_eq!(
        a.code, 201,
        "frank holds view's rules in team-a: {:?}",
        a.body
    );
    let a = s.http_as(
        &frank,
        "POST",
        bindings,
        binding("root", "cluster-admin").as_bytes(),
        &[],
    );
    assert_eq!(a.code, 403, "{:?}", a.body);
    // The admin (system:masters) may.
    let (code, body) = s.http(
        "POST",
        bindings,
        "application/json",
        binding("root", "cluster-admin").as_bytes(),
    );
    assert_eq!(code, 201, "{body}");
}

#[test]
fn kubectl_create_token_gives_a_service_account_token_bound_to_the_account() {
    let s = server_with_fixture(&[]);
    s.ok(&["create", "serviceaccount", "bot", "-n", "team-a"]);
    s.ok(&[
        "create",
        "rolebinding",
        "bot-view",
        "-n",
        "team-a",
        "--clusterrole=view",
        "--serviceaccount=team-a:bot",
    ]);
    let token = s
        .ok(&["create", "token", "bot", "-n", "team-a"])
        .trim()
        .to_string();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let bot = Auth::Token(token.clone());
    let a = s.http_as(&bot, "GET", "/api/v1/namespaces/team-a/pods", b"", &[]);
    assert_eq!(a.code, 200, "{:?}", a.body);
    let a = s.http_as(&bot, "GET", "/api/v1/namespaces/team-b/pods", b"", &[]);
    assert_eq!(a.code, 403);
    assert!(
        a.body["message"]
            .as_str()
            .unwrap_or("")
            .contains("User \"system:serviceaccount:team-a:bot\""),
        "{:?}",
        a.body
    );
    // kubectl with the token.
    let kc = token_kubeconfig(&s, &token);
    let out = s.kubectl_as(
        kc.to_str().expect("utf-8"),
        &["get", "pods", "-n", "team-a"],
    );
    assert!(out.status.success(), "{out:?}");
    // A recreated account (new uid) does not accept the old token.
    s.ok(&["delete", "serviceaccount", "bot", "-n", "team-a"]);
    s.ok(&["create", "serviceaccount", "bot", "-n", "team-a"]);
    let a = s.http_as(&bot, "GET", "/api/v1/namespaces/team-a/pods", b"", &[]);
    assert_unauthorized(&a, "token of a deleted account");
    // Too short a lifetime is refused.
    let out = s.kubectl(&["create", "token", "bot", "-n", "team-a", "--duration=1m"]);
    assert!(!out.status.success());
}

#[test]
fn a_token_review_says_who_a_token_stands_for_and_for_which_audiences() {
    let s = server_with_fixture(&[]);
    s.ok(&["create", "serviceaccount", "bot", "-n", "team-a"]);
    let bot = s
        .ok(&["create", "token", "bot", "-n", "team-a"])
        .trim()
        .to_string();
    let vault = s
        .ok(&["create", "token", "bot", "-n", "team-a", "--audience=vault"])
        .trim()
        .to_string();
    let review = |auth: &Auth, token: &str, audiences: &[&str]| {
        let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "spec": {"token": token, "audiences": audiences}});
        s.http_as(
            auth,
            "POST",
            "/apis/authentication.k8s.io/v1/tokenreviews",
            body.to_string().as_bytes(),
            &[("Content-Type", "application/json")],
        )
    };
    let a = review(&Auth::Admin, &bot, &[]);
    assert_eq!(a.code, 201, "{:?}", a.body);
    let status = &a.body["status"];
    assert_eq!(status["authenticated"], true, "{status}");
    assert_eq!(
        status["user"]["username"],
        "system:serviceaccount:team-a:bot"
    );
    assert!(
        status["user"]["groups"]
            .as_array()
            .is_some_and(|g| g.contains(&json!("system:serviceaccounts:team-a"))),
        "{status}"
    );
    assert_eq!(
        status["audiences"],
        json!(["https://kubernetes.default.svc.cluster.local"])
    );
    // A static token of the token file.
    let a = review(&Auth::Admin, "jane-token", &[]);
    assert_eq!(a.body["status"]["user"]["username"], "jane", "{:?}", a.body);
    assert_eq!(a.body["status"]["user"]["groups"][0], "dev");
    // Audiences: a token made for vault is valid for vault only.
    let a = review(&Auth::Admin, &vault, &["vault"]);
    assert_eq!(a.body["status"]["authenticated"], true, "{:?}", a.body);
    assert_eq!(a.body["status"]["audiences"], json!(["vault"]));
    let a = review(&Auth::Admin, &vault, &[]);
    assert_eq!(a.code, 201);
    assert_ne!(a.body["status"]["authenticated"], true, "{:?}", a.body);
    // A bad token is not authenticated (the review itself succeeds).
    let a = review(&Auth::Admin, "not-a-token", &[]);
    assert_eq!(a.code, 201);
    assert_ne!(a.body["status"]["authenticated"], true, "{:?}", a.body);
    assert!(a.body["status"]["error"].is_string(), "{:?}", a.body);
    // Only who may create tokenreviews asks; an empty token is invalid.
    assert_eq!(review(&token("carl"), &bot, &[]).code, 403);
    assert_eq!(review(&Auth::Admin, "", &[]).code, 422);
    let resources = s.ok(&["api-resources", "--api-group=authentication.k8s.io"]);
    assert!(resources.contains("tokenreviews"), "{resources}");
}

const AUDIT_POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: None
  nonResourceURLs: ["/healthz", "/livez", "/readyz"]
- level: RequestResponse
  resources:
  - group: ""
    resources: ["secrets", "configmaps"]
- level: Metadata
"#;

#[test]
fn the_audit_log_follows_the_policy_and_keeps_secrets_at_metadata() {
    let dir = tempfile::tempdir().expect("tmp");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, AUDIT_POLICY).expect("policy");
    let log = dir.path().join("audit.log");
    let s = server_with_fixture(&[
        "--audit-log-path",
        log.to_str().expect("utf-8"),
        "--audit-policy-file",
        policy.to_str().expect("utf-8"),
    ]);
    s.ok(&[
        "create",
        "configmap",
        "audited",
        "-n",
        "team-a",
        "--from-literal=k=v",
    ]);
    s.ok(&[
        "create",
        "secret",
        "generic",
        "hidden",
        "-n",
        "team-a",
        "--from-literal=password=hunter2",
    ]);
    s.ok(&["get", "secret", "hidden", "-n", "team-a", "-o", "name"]);
    let denied = s.http_as(
        &token("erin"),
        "GET",
        "/api/v1/namespaces/team-a/pods",
        b"",
        &[],
    );
    assert_eq!(denied.code, 403);
    assert_eq!(s.http("GET", "/healthz", "", b"").0, 200);
    let events: Vec<Value> = eventually("audit events", Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&log).ok()?;
        let events: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit lines are JSON"))
            .collect();
        events
            .iter()
            .any(|e| e["user"]["username"] == "erin" && e["stage"] == "ResponseComplete")
            .then_some(events)
    });
    let text = std::fs::read_to_string(&log).expect("audit log");
    assert!(
        !text.contains("hunter2"),
        "no secret value in the audit log"
    );
    assert!(!text.contains("aHVudGVyMg"), "not even base64-encoded");
    for e in &events {
        assert_eq!(e["apiVersion"], "audit.k8s.io/v1");
        assert_eq!(e["kind"], "Event");
        assert_ne!(
            e["requestURI"], "/healthz",
            "health checks are at level None"
        );
    }
    let find = |verb: &str, resource: &str, stage: &str| {
        events
            .iter()
            .find(|e| {
                e["verb"] == verb && e["objectRef"]["resource"] == resource && e["stage"] == stage
            })
            .unwrap_or_else(|| panic!("no {stage} event for {verb} {resource}: {events:?}"))
            .clone()
    };
    // The admin's own create: the root-CA publisher creates `kube-root-ca.crt` in the same
    // namespace, and its event may come first.
    let cm = events
        .iter()
        .find(|e| {
            e["verb"] == "create"
                && e["objectRef"]["resource"] == "configmaps"
                && e["stage"] == "ResponseComplete"
                && e["user"]["username"] == "admin"
        })
        .unwrap_or_else(|| panic!("no ResponseComplete event for admin's create: {events:?}"))
        .clone();
    assert_eq!(cm["level"], "RequestResponse");
    assert_eq!(cm["requestObject"]["data"]["k"], "v");
    assert_eq!(cm["responseObject"]["metadata"]["name"], "audited");
    assert_eq!(cm["responseStatus"]["code"], 201);
    assert_eq!(cm["user"]["username"], "admin");
    assert_eq!(cm["objectRef"]["namespace"], "team-a");
    find("create", "configmaps", "RequestReceived");
    let secret = find("create", "secrets", "ResponseComplete");
    assert_eq!(secret["level"], "Metadata", "secrets never above Metadata");
    assert!(secret.get("requestObject").is_none() && secret.get("responseObject").is_none());
    let get_secret = find("get", "secrets", "ResponseComplete");
    assert!(get_secret.get("responseObject").is_none());
    let denied = events
        .iter()
        .find(|e| e["user"]["username"] == "erin" && e["stage"] == "ResponseComplete")
        .expect("denied request audited");
    assert_eq!(denied["responseStatus"]["code"], 403);
    assert_eq!(
        denied["annotations"]["authorization.k8s.io/decision"],
        "forbid"
    );
    assert_eq!(denied["level"], "Metadata");
}

/// A request body that sends its first half at once (so the request reaches the server and
/// holds its slot) and the rest only when told to.
/// A ConfigMap body (the object named `.2`) that yields its first 20 bytes, then waits for
/// `.0` before the rest.
struct Held(mpsc::Receiver<()>, u8, String);

impl Read for Held {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let body = format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{}"}}}}"#,
            self.2
        );
        let (first, rest) = body.as_bytes().split_at(20);
        let part = match self.1 {
            0 => first,
            1 => {
                let _ = self.0.recv();
                rest
            }
            _ => return Ok(0),
        };
        self.1 += 1;
        buf[..part.len()].copy_from_slice(part);
        Ok(part.len())
    }
}

#[test]
fn beyond_the_in_flight_limit_requests_get_429_with_retry_after_and_watches_do_not_count() {
    // A quiet server: with one slot each, the writes of controllers and the syncer's first
    // applies would take the slot the slow create below needs.
    let s = Server::start_with(&[
        "--max-mutating-requests-inflight=1",
        "--max-requests-inflight=1",
        "--disable-controllers",
        "--disable-scheduler",
        "--disable-proxy",
    ]);
    eventually(
        "the syncer's first pass over every Application",
        Duration::from_secs(60),
        || {
            let (code, apps) = s.http("GET", "/apis/gitplane.io/v1alpha1/applications", "", b"");
            let items = apps["items"].as_array().cloned().unwrap_or_default();
            (code == 200
                && items.len() >= 5
                && items
                    .iter()
                    .all(|a| a["status"]["sync"]["status"].is_string()))
            .then_some(())
        },
    );
    let cms = "/api/v1/namespaces/default/configmaps";
    // A watch is open the whole time: it takes no read-only slot.
    let watch_agent = s.agent(&Auth::Admin, Duration::from_secs(60));
    let watch = watch_agent
        .get(&format!("{}{cms}?watch=1&timeoutSeconds=30", s.url))
        .call()
        .expect("watch");
    assert_eq!(watch.status().as_u16(), 200);
    eventually("a list beside the watch", Duration::from_secs(20), || {
        (s.http("GET", cms, "", b"").0 == 200).then_some(())
    });

    // The slow create holds the one mutating slot while its body is held back. A write of
    // the syncer or the node agent may hold the slot at that moment, and then the slow create
    // is the one refused (the server answers 429 and closes before reading its body); and now
    // and then the slow request has not reached the server's in-flight stage at all (the
    // probes below get 201 for as long as one waits). Either way it is started again, under a
    // new name, until a 429 is seen while it is still in flight.
    let mut attempt = 0;
    let refused = loop {
        attempt += 1;
        assert!(attempt <= 8, "no 429 while a slow create was in flight");
        let (release, held) = mpsc::channel();
        let agent = s.agent(&Auth::Admin, Duration::from_secs(60));
        let url = format!("{}{cms}", s.url);
        let name = format!("slow-{attempt}");
        let slow = std::thread::spawn(move || {
            let mut body = Held(held, 0, name);
            agent
                .post(&url)
                .content_type("application/json")
                .send(ureq::SendBody::from_reader(&mut body))
                .map(|r| r.status().as_u16())
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let refused = loop {
            let a = s.http_as(
                &Auth::Admin,
                "POST",
                &format!("{cms}?dryRun=All"),
                br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"other"}}"#,
                &[],
            );
            if a.code == 429 || slow.is_finished() {
                break Some(a);
            }
            if std::time::Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(25));
        };
        let Some(refused) = refused.filter(|_| !slow.is_finished()) else {
            let _ = release.send(());
            let _ = slow.join();
            continue;
        };
        // The node agent and the syncer of `gitplane up` read too and may hold the one read
        // slot for a moment: a read gets through while the mutating slot stays held.
        eventually(
            "a read while the slow create holds the mutating slot",
            Duration::from_secs(20),
            || (s.http("GET", cms, "", b"").0 == 200).then_some(()),
        );
        release.send(()).expect("release");
        // When a write of the syncer or the node agent held the slot as the slow create came,
        // the slow create was refused too (its connection closed while its body was held
        // back), and the 429 above was for that write's slot: start again.
        match slow.join().expect("slow thread") {
            Ok(201) => break refused,
            _ => continue,
        }
    };
    assert_eq!(
        refused.headers.get("retry-after").map(String::as_str),
        Some("1")
    );
    assert_eq!(refused.body["reason"], "TooManyRequests");
    assert_eq!(
        refused.body["message"],
        "Too many requests, please try again later."
    );
    let (code, _) = s.http(
        "POST",
        cms,
        "application/json",
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"after"}}"#,
    );
    assert_eq!(code, 201, "the slot is free again");
    drop(watch);
}

fn config_map(name: &str, value: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  value: {value}\n")
}

#[test]
fn a_review_with_a_read_only_kubeconfig_shows_the_rbac_refusal_of_the_server() {
    let repo = common::GitRepo::new();
    repo.write("app/web.yaml", &config_map("web", "v1"));
    repo.commit("base");
    let dir = tempfile::tempdir().expect("tmp");
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "reviewer-token,reviewer,uid-r,\"reviewers\"\n").expect("tokens");
    let repo_path = repo.path.to_string_lossy().into_owned();
    let s = Server::start_with(&[
        "--repo",
        &repo_path,
        "--path",
        "app",
        "--token-auth-file",
        tokens.to_str().expect("utf-8"),
    ]);
    s.ok(&[
        "create",
        "clusterrolebinding",
        "reviewers-view",
        "--clusterrole=view",
        "--group=reviewers",
    ]);
    eventually("applied", Duration::from_secs(30), || {
        let (code, cm) = s.http("GET", "/api/v1/namespaces/default/configmaps/web", "", b"");
        (code == 200 && cm["data"]["value"] == "v1").then_some(())
    });
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write("app/web.yaml", &config_map("web", "v2"));
    repo.commit("feature");
    repo.git(&["checkout", "-q", "main"]);

    let kubeconfig = token_kubeconfig(&s, "reviewer-token");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gitplane"))
        .args(["diff", "--app", "root", "--head", "feature", "--kubeconfig"])
        .arg(&kubeconfig)
        .output()
        .expect("run gitplane diff");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a refusal fails the review: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("=== ConfigMap/default/web (changed)"),
        "{text}"
    );
    assert!(
        text.contains("refused by the API server: app/web.yaml:1:")
            && text.contains("configmaps \"web\" is forbidden: User \"reviewer\" cannot"),
        "{text}"
    );
    // The admin's review of the same change passes.
    let out = common::gitplane(&s, &["diff", "--app", "root", "--head", "feature"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A data dir made by an older gitplane has bootstrap roles without the rights its components
/// need now: at start the API server adds what they lack (and leaves an opted-out role alone).
#[test]
fn bootstrap_roles_get_back_what_they_lack_at_restart() {
    let s = Server::start();
    let rules = |s: &Server, role: &str| -> Value {
        let out = s.ok(&["get", "clusterrole", role, "-o", "json"]);
        serde_json::from_str::<Value>(&out).expect("json")["rules"].clone()
    };
    let before = rules(&s, "system:node-proxier");
    assert!(before.as_array().is_some_and(|r| r.len() > 1), "{before}");
    let empty = r#"[{"op":"replace","path":"/rules","value":[]}]"#;
    s.ok(&[
        "patch",
        "clusterrole",
        "system:node-proxier",
        "--type=json",
        "-p",
        empty,
    ]);
    s.ok(&[
        "annotate",
        "clusterrole",
        "system:kube-scheduler",
        "rbac.authorization.kubernetes.io/autoupdate=false",
        "--overwrite",
    ]);
    s.ok(&[
        "patch",
        "clusterrole",
        "system:kube-scheduler",
        "--type=json",
        "-p",
        empty,
    ]);
    let none = |r: Value| r.as_array().is_none_or(Vec::is_empty);
    assert!(none(rules(&s, "system:node-proxier")));

    let (dir, tmp) = s.into_data();
    let s = Server::start_in(&dir);
    assert_eq!(
        rules(&s, "system:node-proxier"),
        before,
        "the missing rules are back"
    );
    assert!(
        none(rules(&s, "system:kube-scheduler")),
        "autoupdate=false is left as the user made it"
    );
    drop(s);
    drop(tmp);
}
