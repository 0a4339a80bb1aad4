//! Fleets end to end: a hub (`gitplane up`) syncing into other real gitplane API servers
//! (`gitplane apiserver`) on loopback, registered with `gitplane cluster add`; ApplicationSets
//! generating Applications per cluster and per directory (fasttemplate and `goTemplate`);
//! unreachable and refusing destinations.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{GitRepo, Server, eventually, gitplane};

const WAIT: Duration = Duration::from_secs(60);

fn cm(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  value: \"{value}\"\n"
    )
}

fn value_of(s: &Server, name: &str) -> Option<String> {
    let out = s.kubectl(&["get", "cm", name, "-o", "jsonpath={.data.value}"]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn app_field(hub: &Server, app: &str, path: &str) -> String {
    let out = hub.kubectl(&["get", "application", app, "-o", &format!("jsonpath={path}")]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `gitplane cluster add NAME --kubeconfig <destination's>` into `hub`.
fn cluster_add(hub: &Server, name: &str, destination: &Server, extra: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_gitplane"))
        .args(["cluster", "add", name, "--kubeconfig"])
        .arg(destination.kubeconfig())
        .arg("--hub-kubeconfig")
        .arg(hub.kubeconfig())
        .args(extra)
        .output()
        .expect("run gitplane");
    assert!(
        out.status.success(),
        "cluster add {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn application(name: &str, repo: &str, path: &str, destination: &str) -> String {
    format!(
        "apiVersion: gitplane.io/v1alpha1
kind: Application
metadata:
  name: {name}
spec:
  source: {{repoURL: \"{repo}\", path: {path}}}
  destination: {{namespace: default, {destination}}}
  syncPolicy: {{automated: {{prune: true, selfHeal: true}}}}
"
    )
}

#[test]
fn a_hub_syncs_into_two_registered_clusters_and_never_into_itself_for_an_unknown_one() {
    let repo = GitRepo::new();
    repo.write("web/cm.yaml", &cm("web", "1"));
    repo.commit("first");
    let url = repo.path.to_string_lossy().into_owned();
    let hub = Server::start_with(&["--repo", &url, "--path", "none"]);
    let mut east = Server::start_apiserver();
    let west = Server::start_apiserver();
    cluster_add(&hub, "east", &east, &["--label", "env=prod"]);
    cluster_add(&hub, "west", &west, &["--no-service-account"]);
    let listed = String::from_utf8_lossy(&gitplane(&hub, &["cluster", "list"]).stdout).into_owned();
    assert!(
        listed.contains("east") && listed.contains("west") && listed.contains(&west.url),
        "{listed}"
    );

    // By name and by server; and one naming a cluster nobody registered.
    let manifests = [
        application("web-east", &url, "web", "name: east"),
        application(
            "web-west",
            &url,
            "web",
            &format!("server: \"{}\"", west.url),
        ),
        application("web-nowhere", &url, "web", "name: nowhere"),
    ]
    .join("---\n");
    hub.ok_stdin(&["apply", "-f", "-"], &manifests);
    eventually("applied in east and west", WAIT, || {
        (value_of(&east, "web").as_deref() == Some("1")
            && value_of(&west, "web").as_deref() == Some("1"))
        .then_some(())
    });
    eventually("web-east Synced and Healthy", WAIT, || {
        (app_field(
            &hub,
            "web-east",
            "{.status.sync.status}/{.status.health.status}",
        ) == "Synced/Healthy")
            .then_some(())
    });
    // `cluster add` made a ServiceAccount in east (the identity the hub applies with).
    assert!(
        east.kubectl(&["get", "sa", "gitplane-manager", "-n", "kube-system"])
            .status
            .success()
    );
    let condition = eventually("web-nowhere has a condition", WAIT, || {
        let c = app_field(
            &hub,
            "web-nowhere",
            "{.status.conditions[0].type}: {.status.conditions[0].message}",
        );
        (!c.trim().is_empty() && c != ": ").then_some(c)
    });
    assert!(
        condition.starts_with("InvalidSpec: ") && condition.contains("\"nowhere\""),
        "{condition}"
    );
    assert_eq!(
        app_field(&hub, "web-nowhere", "{.status.sync.status}"),
        "Unknown"
    );
    assert_eq!(
        value_of(&hub, "web"),
        None,
        "nothing is applied into the hub for a destination it cannot honour"
    );

    // Drift in a destination is healed there.
    east.ok(&[
        "patch",
        "cm",
        "web",
        "--type=merge",
        "-p",
        r#"{"data":{"value":"drift"}}"#,
    ]);
    eventually("drift healed in east", WAIT, || {
        (value_of(&east, "web").as_deref() == Some("1")).then_some(())
    });

    // One destination stops: its app becomes Unknown naming it; the other keeps syncing.
    east.terminate();
    let condition = eventually("web-east Unknown", WAIT, || {
        let c = app_field(
            &hub,
            "web-east",
            "{.status.sync.status} {.status.conditions[0].message}",
        );
        c.starts_with("Unknown ").then_some(c)
    });
    assert!(
        condition.contains("cluster \"east\"") && condition.contains("unreachable"),
        "{condition}"
    );
    repo.write("web/cm.yaml", &cm("web", "2"));
    repo.commit("second");
    eventually("west follows the commit while east is down", WAIT, || {
        (value_of(&west, "web").as_deref() == Some("2")).then_some(())
    });
    assert!(app_field(&hub, "web-east", "{.status.sync.status}").starts_with("Unknown"));

    // Removing a cluster makes its Applications an InvalidSpec error again.
    let out = gitplane(&hub, &["cluster", "remove", "west"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually("web-west has lost its destination", WAIT, || {
        app_field(&hub, "web-west", "{.status.conditions[0].type}")
            .eq("InvalidSpec")
            .then_some(())
    });
}

#[test]
fn applicationsets_generate_one_app_per_cluster_and_per_directory_and_prune_by_policy() {
    let repo = GitRepo::new();
    repo.write("apps/one/cm.yaml", &cm("one", "1"));
    repo.write("apps/two/cm.yaml", &cm("two", "2"));
    repo.write("apps/skip/cm.yaml", &cm("skip", "x"));
    repo.write("web/cm.yaml", &cm("web", "w"));
    repo.commit("first");
    let url = repo.path.to_string_lossy().into_owned();
    let hub = Server::start_with(&["--repo", &url, "--path", "none"]);
    let east = Server::start_apiserver();
    let west = Server::start_apiserver();
    cluster_add(&hub, "east", &east, &["--label", "env=prod"]);
    cluster_add(&hub, "west", &west, &["--label", "env=prod"]);

    let sets = format!(
        "apiVersion: gitplane.io/v1alpha1
kind: ApplicationSet
metadata:
  name: web
spec:
  generators:
  - clusters:
      selector: {{matchLabels: {{env: prod}}}}
  template:
    metadata:
      name: 'web-{{{{name}}}}'
    spec:
      source: {{repoURL: \"{url}\", path: web}}
      destination: {{name: '{{{{name}}}}', namespace: default}}
      syncPolicy: {{automated: {{prune: true}}}}
---
apiVersion: gitplane.io/v1alpha1
kind: ApplicationSet
metadata:
  name: dirs
spec:
  generators:
  - git:
      repoURL: \"{url}\"
      directories:
      - path: 'apps/*'
      - path: apps/skip
        exclude: true
  template:
    metadata:
      name: 'dir-{{{{path.basename}}}}'
    spec:
      source: {{repoURL: \"{url}\", path: '{{{{path}}}}'}}
      destination: {{server: \"{}\", namespace: default}}
      syncPolicy: {{automated: {{prune: true}}}}
",
        east.url
    );
    hub.ok_stdin(&["apply", "-f", "-"], &sets);
    eventually("one app per prod cluster, synced into it", WAIT, || {
        (value_of(&east, "web").as_deref() == Some("w")
            && value_of(&west, "web").as_deref() == Some("w"))
        .then_some(())
    });
    let apps = hub.ok(&[
        "get",
        "applications",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    let mut apps: Vec<&str> = apps.split_whitespace().filter(|a| *a != "root").collect();
    apps.sort();
    assert_eq!(apps, ["dir-one", "dir-two", "web-east", "web-west"]);
    assert_eq!(
        app_field(
            &hub,
            "web-east",
            "{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}"
        ),
        "ApplicationSet/web"
    );
    eventually(
        "one app per directory, the excluded one left out",
        WAIT,
        || {
            (value_of(&east, "one").as_deref() == Some("1")
                && value_of(&east, "two").as_deref() == Some("2"))
            .then_some(())
        },
    );
    assert_eq!(value_of(&east, "skip"), None);
    let status = hub.ok(&[
        "get",
        "applicationset",
        "dirs",
        "-o",
        "jsonpath={.status.applicationCount} {.status.conditions[?(@.type==\"ResourcesUpToDate\")].status}",
    ]);
    assert_eq!(status, "2 True");

    // A new directory adds an Application; a removed one deletes it and prunes its objects.
    repo.write("apps/three/cm.yaml", &cm("three", "3"));
    repo.git(&["rm", "-q", "-r", "apps/one"]);
    repo.commit("three in, one out");
    eventually("three applied, one pruned", WAIT, || {
        (value_of(&east, "three").as_deref() == Some("3") && value_of(&east, "one").is_none())
            .then_some(())
    });
    eventually("dir-one deleted", WAIT, || {
        (!hub
            .kubectl(&["get", "application", "dir-one"])
            .status
            .success())
        .then_some(())
    });

    // preserveResourcesOnDeletion: a removed directory's objects stay.
    hub.ok(&[
        "patch",
        "applicationset",
        "dirs",
        "--type=merge",
        "-p",
        r#"{"spec":{"syncPolicy":{"preserveResourcesOnDeletion":true}}}"#,
    ]);
    eventually("the finalizer is dropped from generated apps", WAIT, || {
        app_field(&hub, "dir-two", "{.metadata.finalizers}")
            .is_empty()
            .then_some(())
    });
    repo.git(&["rm", "-q", "-r", "apps/two"]);
    repo.commit("two out");
    eventually("dir-two deleted", WAIT, || {
        (!hub
            .kubectl(&["get", "application", "dir-two"])
            .status
            .success())
        .then_some(())
    });
    assert_eq!(value_of(&east, "two").as_deref(), Some("2"));
}

#[test]
fn go_template_applicationsets_read_nested_parameters_and_name_their_errors() {
    let repo = GitRepo::new();
    repo.write("apps/one/cm.yaml", &cm("one", "1"));
    repo.commit("first");
    let url = repo.path.to_string_lossy().into_owned();
    let hub = Server::start_with(&["--repo", &url, "--path", "none"]);
    let east = Server::start_apiserver();
    cluster_add(&hub, "east", &east, &["--label", "env=prod"]);

    let set = |name_template: &str| {
        format!(
            "apiVersion: gitplane.io/v1alpha1
kind: ApplicationSet
metadata:
  name: go
spec:
  goTemplate: true
  goTemplateOptions: [\"missingkey=error\"]
  generators:
  - matrix:
      generators:
      - git:
          repoURL: \"{url}\"
          directories: [{{path: 'apps/*'}}]
      - clusters: {{selector: {{matchLabels: {{env: prod}}}}}}
  template:
    metadata:
      name: '{name_template}'
      labels: {{env: '{{{{ index .metadata.labels \"env\" }}}}'}}
    spec:
      source: {{repoURL: \"{url}\", path: '{{{{ .path.path }}}}'}}
      destination: {{name: '{{{{ .name }}}}', namespace: default}}
      syncPolicy: {{automated: {{prune: true}}}}
"
        )
    };
    hub.ok_stdin(
        &["apply", "-f", "-"],
        &set("{{ .path.basename }}-{{ .name | lower }}"),
    );
    eventually("one-east generated and synced into east", WAIT, || {
        (value_of(&east, "one").as_deref() == Some("1")).then_some(())
    });
    assert_eq!(
        app_field(&hub, "one-east", "{.metadata.labels.env}"),
        "prod"
    );

    // missingkey=error: a parameter no generator gives is an error naming the set and field.
    hub.ok_stdin(&["apply", "-f", "-"], &set("{{ .path.nope }}"));
    let message = eventually("the missing key reported", WAIT, || {
        let m = hub.ok(&[
            "get",
            "applicationset",
            "go",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"ErrorOccurred\")].message}",
        ]);
        m.contains("nope").then_some(m)
    });
    assert_eq!(
        message,
        "applicationset \"go\": spec.template.metadata.name: template: :1:3: executing \"\" \
         at <.path.nope>: map has no entry for key \"nope\""
    );
    assert!(
        hub.kubectl(&["get", "application", "one-east"])
            .status
            .success()
    );
}

#[test]
fn a_kind_the_destination_refuses_shows_in_diff_as_a_refusal_from_that_cluster() {
    let repo = GitRepo::new();
    repo.write("web/cm.yaml", &cm("web", "1"));
    repo.commit("first");
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write(
        "web/secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: web\nstringData:\n  k: v\n",
    );
    repo.commit("add a secret");
    repo.git(&["checkout", "-q", "main"]);
    let url = repo.path.to_string_lossy().into_owned();
    let hub = Server::start_with(&["--repo", &url, "--path", "none"]);
    let east = Server::start_apiserver();
    // In east, an identity that may manage ConfigMaps but only read Secrets.
    east.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1
kind: ServiceAccount
metadata: {name: deployer, namespace: default}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: deployer}
rules:
- apiGroups: ['']
  resources: [configmaps]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: ['']
  resources: [secrets]
  verbs: [get, list, watch]
- apiGroups: ['']
  resources: [namespaces]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: deployer}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: deployer}
subjects: [{kind: ServiceAccount, name: deployer, namespace: default}]
",
    );
    let token = east.ok(&[
        "create",
        "token",
        "deployer",
        "-n",
        "default",
        "--duration=1h",
    ]);
    let kubeconfig = east.data_dir.join("deployer.kubeconfig");
    let mut text = std::fs::read_to_string(east.kubeconfig()).expect("kubeconfig");
    let user_start = text.find("users:").expect("users");
    let contexts = text.find("contexts:").expect("contexts");
    text.replace_range(
        user_start..contexts,
        &format!("users:\n- name: deployer\n  user:\n    token: {token}\n"),
    );
    let text = regex_user(&text);
    std::fs::write(&kubeconfig, text).expect("write kubeconfig");
    let out = Command::new(env!("CARGO_BIN_EXE_gitplane"))
        .args([
            "cluster",
            "add",
            "east",
            "--no-service-account",
            "--kubeconfig",
        ])
        .arg(&kubeconfig)
        .arg("--hub-kubeconfig")
        .arg(hub.kubeconfig())
        .output()
        .expect("run gitplane");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    hub.ok_stdin(
        &["apply", "-f", "-"],
        &application("web", &url, "web", "name: east"),
    );
    eventually("main applied in east", WAIT, || {
        (value_of(&east, "web").as_deref() == Some("1")).then_some(())
    });
    let out = gitplane(&hub, &["diff", "--app", "web", "--head", "feature"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("Secret/default/web")
            && text.contains("cluster \"east\"")
            && text.contains("forbidden"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!east.kubectl(&["get", "secret", "web"]).status.success());
}

/// The kubeconfig's context pointed at the `deployer` user.
fn regex_user(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.trim_start().starts_with("user:") && !l.trim_end().ends_with("user:") {
                let indent = &l[..l.len() - l.trim_start().len()];
                format!("{indent}user: deployer")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}
