//! The real kubectl against a real gitplane server: every command the foundation promises.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::{Server, eventually};

const DEPLOYMENT: &str = "
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports:
        - containerPort: 80
        env:
        - {name: A, value: \"1\"}
        - {name: B, value: \"2\"}
";

#[test]
fn kubectl_version_and_api_resources_show_the_server() {
    let s = Server::start();
    let version = s.ok(&["version"]);
    assert!(version.contains("Server Version: v1.32"), "{version}");
    let resources = s.ok(&["api-resources"]);
    for line in [
        "deployments",
        "configmaps",
        "customresourcedefinitions",
        "leases",
    ] {
        assert!(
            resources.contains(line),
            "api-resources lacks {line}:\n{resources}"
        );
    }
    let ns = s.ok(&["get", "namespaces"]);
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(ns.contains(name), "{ns}");
    }
}

#[test]
fn kubectl_get_prints_kubernetes_tables_and_every_output_format() {
    let s = Server::start();
    s.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT);
    let table = s.ok(&["get", "deployments"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "{table}"
    );
    assert!(table.contains("web") && table.contains("0/2"), "{table}");
    let wide = s.ok(&["get", "deploy", "-o", "wide"]);
    assert!(
        wide.contains("CONTAINERS") && wide.contains("nginx:1.25") && wide.contains("app=web"),
        "{wide}"
    );
    let yaml = s.ok(&["get", "deploy", "web", "-o", "yaml"]);
    assert!(
        yaml.contains("kind: Deployment") && yaml.contains("resourceVersion:"),
        "{yaml}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&s.ok(&["get", "deploy", "web", "-o", "json"])).expect("json");
    assert_eq!(json["spec"]["replicas"], 2);
    assert_eq!(
        s.ok(&["get", "deploy", "-o", "name"]).trim(),
        "deployment.apps/web"
    );
    assert_eq!(
        s.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}"
        ]),
        "nginx:1.25"
    );
    s.ok(&[
        "create",
        "configmap",
        "--dry-run=client",
        "-o",
        "yaml",
        "probe",
    ]);
    // The deployment's pods exist now (the controllers run in `up`); kube-public has none.
    let pods = s.kubectl(&["get", "pods", "-n", "kube-public"]);
    assert!(pods.status.success() && pods.stdout.is_empty());
    assert!(String::from_utf8_lossy(&pods.stderr).contains("No resources found"));
}

#[test]
fn repeated_apply_removes_fields_dropped_from_the_file_and_diff_shows_changes() {
    let s = Server::start();
    s.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT);
    // Someone else adds an env var; apply must keep it (three-way merge).
    s.ok(&["set", "env", "deployment/web", "C=3"]);
    let edited = DEPLOYMENT
        .replace("        - {name: B, value: \"2\"}\n", "")
        .replace("replicas: 2", "replicas: 3");
    let diff = s.kubectl_stdin(&["diff", "-f", "-"], Some(&edited));
    assert_eq!(
        diff.status.code(),
        Some(1),
        "diff should report changes: {}",
        String::from_utf8_lossy(&diff.stderr)
    );
    assert!(String::from_utf8_lossy(&diff.stdout).contains("+  replicas: 3"));
    s.ok_stdin(&["apply", "-f", "-"], &edited);
    let env = s.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].env[*].name}",
    ]);
    assert_eq!(env, "A C");
    let same = s.kubectl_stdin(&["diff", "-f", "-"], Some(&edited));
    assert_eq!(
        same.status.code(),
        Some(0),
        "no diff after apply: {}",
        String::from_utf8_lossy(&same.stdout)
    );
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {k: v}\n";
    s.ok_stdin(&["apply", "-f", "-"], cm);
    let unchanged = s.ok_stdin(&["apply", "-f", "-"], cm);
    assert!(unchanged.contains("unchanged"), "{unchanged}");
}

#[test]
fn create_replace_label_annotate_patch_scale_and_describe() {
    let s = Server::start();
    let cms = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, labels: {g: x}}\ndata: {k: v}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, labels: {g: x}}\ndata: {k: v}\n";
    s.ok_stdin(&["create", "-f", "-"], cms);
    let again = s.kubectl_stdin(&["create", "-f", "-"], Some(cms));
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("AlreadyExists"));
    s.ok_stdin(&["replace", "-f", "-"], &cms.replace("k: v", "k: w"));
    assert_eq!(s.ok(&["get", "cm", "a", "-o", "jsonpath={.data.k}"]), "w");
    s.ok(&["label", "cm", "a", "tier=fe"]);
    s.ok(&["annotate", "cm", "a", "note=hi"]);
    assert_eq!(
        s.ok(&["get", "cm", "-l", "tier=fe", "-o", "name"]).trim(),
        "configmap/a"
    );
    assert_eq!(
        s.ok(&[
            "get",
            "cm",
            "a",
            "-o",
            "jsonpath={.metadata.annotations.note}"
        ]),
        "hi"
    );
    s.ok(&[
        "patch",
        "cm",
        "a",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"m":"1"}}"#,
    ]);
    s.ok(&[
        "patch",
        "cm",
        "a",
        "--type",
        "json",
        "-p",
        r#"[{"op":"add","path":"/data/j","value":"2"}]"#,
    ]);
    s.ok(&[
        "patch",
        "cm",
        "a",
        "--type",
        "strategic",
        "-p",
        r#"{"data":{"s":"3"}}"#,
    ]);
    assert_eq!(
        s.ok(&[
            "get",
            "cm",
            "a",
            "-o",
            "jsonpath={.data.m}{.data.j}{.data.s}"
        ]),
        "123"
    );
    let bad = s.kubectl(&[
        "patch",
        "cm",
        "a",
        "--type",
        "json",
        "-p",
        r#"[{"op":"test","path":"/data/k","value":"nope"}]"#,
    ]);
    assert!(!bad.status.success(), "a failing json-patch test must fail");

    s.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT);
    s.ok(&["scale", "deployment", "web", "--replicas=5"]);
    assert_eq!(
        s.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "5"
    );
    let described = s.ok(&["describe", "deployment", "web"]);
    assert!(
        described.contains("Replicas:") && described.contains("5 desired"),
        "{described}"
    );
    let described = s.ok(&["describe", "configmap", "a"]);
    assert!(
        described.contains("Name:") && described.contains("tier=fe"),
        "{described}"
    );
}

#[test]
fn delete_by_name_label_and_all() {
    let s = Server::start();
    let make = |name: &str, group: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, labels: {{g: \"{group}\"}}}}\n"
        )
    };
    for (n, g) in [("a", "x"), ("b", "x"), ("c", "y"), ("d", "y")] {
        s.ok_stdin(&["create", "-f", "-"], &make(n, g));
    }
    // The root CA publisher's `kube-root-ca.crt` (re-made after `--all`, as on Kubernetes)
    // is not the test's.
    let names = || -> Vec<String> {
        s.ok(&["get", "cm", "-o", "name"])
            .split_whitespace()
            .filter(|n| *n != "configmap/kube-root-ca.crt")
            .map(str::to_string)
            .collect()
    };
    assert!(s.ok(&["delete", "cm", "a"]).contains("deleted"));
    s.ok(&["delete", "cm", "-l", "g=x"]);
    assert_eq!(names(), ["configmap/c", "configmap/d"]);
    s.ok(&["delete", "cm", "--all"]);
    assert!(names().is_empty());
    let missing = s.kubectl(&["delete", "cm", "zzz"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("NotFound"));
}

#[test]
fn get_watch_streams_changes_as_they_happen() {
    let s = Server::start();
    let mut watch = common::kubectl_command()
        .arg("--kubeconfig")
        .arg(s.kubeconfig())
        .args([
            "get",
            "configmaps",
            "--watch",
            "--output-watch-events",
            "-o",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get -w");
    let stdout = watch.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut next = |want: &str| {
        let want = format!("\"type\":\"{want}\"");
        eventually(
            &format!("watch line {want:?}"),
            Duration::from_secs(20),
            || {
                while let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
                    seen.push(l);
                }
                let found = seen.iter().position(|l| l.contains(&want))?;
                seen.drain(..=found);
                Some(())
            },
        )
    };
    s.ok_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: w1}\n",
    );
    next("ADDED");
    s.ok(&["label", "cm", "w1", "x=y"]);
    next("MODIFIED");
    s.ok(&["delete", "cm", "w1"]);
    next("DELETED");
    let _ = watch.kill();
    let _ = watch.wait();
}

#[test]
fn crds_are_served_without_a_restart_and_removed_with_their_objects() {
    let s = Server::start();
    let crd = "
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
";
    s.ok_stdin(&["apply", "-f", "-"], crd);
    s.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 3}\n",
    );
    let table = s.ok(&["get", "widgets"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "SIZE", "AGE"], "{table}");
    assert!(table.contains("w1") && table.contains('3'), "{table}");
    assert!(s.ok(&["api-resources"]).contains("widgets"));
    assert_eq!(
        s.ok(&["get", "wd", "w1", "-o", "jsonpath={.spec.size}"]),
        "3"
    );
    s.ok(&["delete", "crd", "widgets.example.com"]);
    let (code, _) = s.http(
        "GET",
        "/apis/example.com/v1/namespaces/default/widgets",
        "",
        b"",
    );
    assert_eq!(code, 404);
    // Re-creating the CRD does not resurrect the old objects.
    s.ok_stdin(&["apply", "-f", "-"], crd);
    assert!(s.ok(&["get", "widgets", "-o", "name"]).trim().is_empty());
}

#[test]
fn kubectl_create_generators_send_protobuf_that_the_server_decodes() {
    let s = Server::start();
    s.ok(&["create", "namespace", "team"]);
    s.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.25",
        "--replicas=2",
        "--port=80",
        "-n",
        "team",
    ]);
    s.ok(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=mode=prod",
    ]);
    s.ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=password=hunter2",
    ]);
    s.ok(&["create", "service", "nodeport", "web", "--tcp=80:8080"]);
    s.ok(&["create", "serviceaccount", "robot"]);
    s.ok(&["create", "role", "reader", "--verb=get", "--resource=pods"]);
    assert_eq!(
        s.ok(&[
            "get",
            "deploy",
            "web",
            "-n",
            "team",
            "-o",
            "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image}"
        ]),
        "2 nginx:1.25"
    );
    assert_eq!(
        s.ok(&["get", "cm", "settings", "-o", "jsonpath={.data.mode}"]),
        "prod"
    );
    assert_eq!(
        s.ok(&["get", "secret", "creds", "-o", "jsonpath={.data.password}"]),
        "aHVudGVyMg=="
    );
    assert_eq!(
        s.ok(&[
            "get",
            "svc",
            "web",
            "-o",
            "jsonpath={.spec.type} {.spec.ports[0].targetPort}"
        ]),
        "NodePort 8080"
    );
    assert_eq!(
        s.ok(&[
            "get",
            "role",
            "reader",
            "-o",
            "jsonpath={.rules[0].verbs[0]}"
        ]),
        "get"
    );
}

#[test]
fn unknown_fields_and_wrong_types_are_refused_and_nothing_is_written() {
    let s = Server::start();
    let typo = DEPLOYMENT.replace("  replicas: 2", "  replicass: 2");
    let out = s.kubectl_stdin(&["apply", "-f", "-"], Some(&typo));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("strict decoding error: unknown field \"spec.replicass\""),
        "{err}"
    );
    let wrong = DEPLOYMENT.replace("  replicas: 2", "  replicas: \"two\"");
    let out = s.kubectl_stdin(&["create", "-f", "-"], Some(&wrong));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot be handled as a Deployment"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        s.kubectl(&["get", "deploy", "web"]).stdout.is_empty(),
        "nothing was created"
    );
    // Without validation, unknown fields are dropped as Kubernetes' decoding drops them.
    s.ok_stdin(&["apply", "--validate=false", "-f", "-"], &typo);
    let stored = s.ok(&["get", "deploy", "web", "-o", "json"]);
    assert!(
        !stored.contains("replicass") || stored.matches("replicass").count() == 1,
        "only the last-applied annotation may mention it: {stored}"
    );
    assert_eq!(
        s.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "1",
        "the default, since the file sets none"
    );
}
