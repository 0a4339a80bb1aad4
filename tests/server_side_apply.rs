//! Server-side apply and managedFields against a real server: the real kubectl (`apply
//! --server-side`, conflicts, `--force-conflicts`, field removal, the migration from
//! client-side apply, `--show-managed-fields`), kube-rs `Patch::Apply`, a CRD with a
//! `listType: map` list, and the managedFields of creates, updates, patches and status writes.

mod common;

use common::Server;
use serde_json::{Value, json};

const APPLY: &str = "application/apply-patch+yaml";

fn web(replicas: u32, labels: &str) -> String {
    format!(
        "
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {{{labels}}}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1.25
"
    )
}

const DEPLOY: &str = "/apis/apps/v1/namespaces/default/deployments/web";

/// The managedFields entry of `manager` with `operation`, if any.
fn entry<'a>(obj: &'a Value, manager: &str, operation: &str) -> Option<&'a Value> {
    obj["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn kubectl_apply_server_side_creates_conflicts_forces_and_removes_dropped_fields() {
    let s = Server::start();
    let out = s.ok_stdin(
        &["apply", "--server-side", "-f", "-"],
        &web(2, "app: web, tier: front"),
    );
    assert!(
        out.contains("deployment.apps/web serverside-applied"),
        "{out}"
    );
    let obj = s.get_json(DEPLOY);
    let mine = entry(&obj, "kubectl", "Apply").expect("an Apply entry for kubectl");
    assert_eq!(mine["fieldsType"], "FieldsV1");
    assert_eq!(mine["apiVersion"], "apps/v1");
    assert!(mine["time"].is_string(), "{mine}");
    assert_eq!(mine["fieldsV1"]["f:spec"]["f:replicas"], json!({}));
    assert_eq!(mine["fieldsV1"]["f:spec"]["f:selector"], json!({}));
    assert!(
        mine["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"]
            ["f:image"]
            .is_object(),
        "{mine}"
    );
    // kubectl hides managedFields unless asked.
    let plain = s.ok(&["get", "deploy", "web", "-o", "yaml"]);
    assert!(!plain.contains("managedFields"), "{plain}");
    let shown = s.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "yaml",
        "--show-managed-fields",
    ]);
    assert!(
        shown.contains("managedFields:") && shown.contains("operation: Apply"),
        "{shown}"
    );

    // Another manager changing replicas conflicts, in Kubernetes' words.
    let other = s.kubectl_stdin(
        &["apply", "--server-side", "--field-manager=other", "-f", "-"],
        Some(&web(3, "app: web, tier: front")),
    );
    assert!(!other.status.success());
    assert!(
        stderr(&other)
            .contains("Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"),
        "{}",
        stderr(&other)
    );
    let (code, status) = s.http(
        "PATCH",
        &format!("{DEPLOY}?fieldManager=other"),
        APPLY,
        br#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 3}}"#,
    );
    assert_eq!(code, 409, "{status}");
    assert_eq!(status["reason"], "Conflict");
    assert_eq!(
        status["details"]["causes"],
        json!([{"reason": "FieldManagerConflict", "message": "conflict with \"kubectl\"", "field": ".spec.replicas"}])
    );
    assert_eq!(s.get_json(DEPLOY)["spec"]["replicas"], 2);

    // The same value is no conflict: both own it.
    s.ok_stdin(
        &["apply", "--server-side", "--field-manager=same", "-f", "-"],
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 2}\n",
    );
    let obj = s.get_json(DEPLOY);
    assert!(entry(&obj, "same", "Apply").is_some(), "{obj}");
    assert!(
        entry(&obj, "kubectl", "Apply").unwrap()["fieldsV1"]["f:spec"]["f:replicas"].is_object()
    );

    // --force-conflicts takes replicas from both.
    s.ok_stdin(
        &[
            "apply",
            "--server-side",
            "--field-manager=other",
            "--force-conflicts",
            "-f",
            "-",
        ],
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 3}\n",
    );
    let obj = s.get_json(DEPLOY);
    assert_eq!(obj["spec"]["replicas"], 3);
    assert!(entry(&obj, "kubectl", "Apply").unwrap()["fieldsV1"]["f:spec"]["f:replicas"].is_null());
    assert!(
        entry(&obj, "same", "Apply").is_none(),
        "an emptied entry goes: {obj}"
    );

    // kubectl drops the tier label and replicas: the label goes, replicas (owned by `other`)
    // stays.
    let mut dropped = web(2, "app: web");
    dropped = dropped.replace("  replicas: 2\n", "");
    s.ok_stdin(&["apply", "--server-side", "-f", "-"], &dropped);
    let obj = s.get_json(DEPLOY);
    assert_eq!(obj["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(obj["spec"]["replicas"], 3);

    // A dry run changes nothing.
    let out = s.ok_stdin(
        &["apply", "--server-side", "--dry-run=server", "-f", "-"],
        &dropped.replace("labels: {app: web}\nspec", "labels: {app: web, x: z}\nspec"),
    );
    assert!(out.contains("serverside-applied (server dry run)"), "{out}");
    let obj = s.get_json(DEPLOY);
    assert_eq!(obj["metadata"]["labels"], json!({"app": "web"}));
}

#[test]
fn kubectl_apply_server_side_takes_over_from_client_side_apply() {
    let s = Server::start();
    s.ok_stdin(&["apply", "-f", "-"], &web(2, "app: web, tier: front"));
    let obj = s.get_json(DEPLOY);
    assert!(
        entry(&obj, "kubectl-client-side-apply", "Update").is_some(),
        "{obj}"
    );
    // Changing replicas server-side is no conflict with the client-side apply's fields:
    // kubectl hands them to its server-side manager first.
    let out = s.ok_stdin(&["apply", "--server-side", "-f", "-"], &web(4, "app: web"));
    assert!(out.contains("serverside-applied"), "{out}");
    let obj = s.get_json(DEPLOY);
    assert_eq!(obj["spec"]["replicas"], 4);
    assert!(
        entry(&obj, "kubectl-client-side-apply", "Update").is_none(),
        "{obj}"
    );
    assert!(entry(&obj, "kubectl", "Apply").is_some(), "{obj}");
    // The label the configuration dropped was the client-side apply's: it goes.
    assert_eq!(obj["metadata"]["labels"], json!({"app": "web"}));
}

#[test]
fn managed_fields_record_creates_updates_patches_and_status_writes() {
    let s = Server::start();
    s.ok(&["create", "configmap", "cm", "--from-literal=a=1"]);
    s.ok(&["label", "configmap", "cm", "team=x"]);
    let cm = s.get_json("/api/v1/namespaces/default/configmaps/cm");
    let created = entry(&cm, "kubectl-create", "Update").expect("create entry");
    assert_eq!(created["apiVersion"], "v1");
    assert_eq!(created["fieldsV1"], json!({"f:data": {".": {}, "f:a": {}}}));
    let labelled = entry(&cm, "kubectl-label", "Update").expect("label entry");
    assert_eq!(
        labelled["fieldsV1"],
        json!({"f:metadata": {"f:labels": {".": {}, "f:team": {}}}})
    );
    // A PUT without managedFields keeps them; its writer (the user agent's program without
    // fieldManager) owns what it changed.
    let mut put = cm.clone();
    put["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    put["data"]["a"] = json!("2");
    let (code, updated) = s.http(
        "PUT",
        "/api/v1/namespaces/default/configmaps/cm",
        "",
        put.to_string().as_bytes(),
    );
    assert_eq!(code, 200, "{updated}");
    let mine = entry(&updated, "ureq", "Update").expect("an entry for the user agent");
    assert_eq!(mine["fieldsV1"], json!({"f:data": {"f:a": {}}}));
    assert_eq!(
        entry(&updated, "kubectl-create", "Update").unwrap()["fieldsV1"],
        json!({"f:data": {}}),
        "the creator keeps the data map, not the value it no longer set"
    );
    assert!(entry(&updated, "kubectl-label", "Update").is_some());

    // Apply needs a fieldManager; force is for applies only.
    let (code, status) = s.http(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/cm",
        APPLY,
        b"{\"data\": {\"b\": \"1\"}}",
    );
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        status["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );
    let (code, status) = s.http(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/cm?force=true",
        "application/merge-patch+json",
        b"{\"data\": {\"b\": \"1\"}}",
    );
    assert_eq!(code, 422, "{status}");

    // Apply to a missing object creates it (201) with an Apply entry; YAML bodies work.
    let (code, made) = s.http(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/made?fieldManager=tool",
        APPLY,
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: made\ndata:\n  k: v\n",
    );
    assert_eq!(code, 201, "{made}");
    assert_eq!(made["data"], json!({"k": "v"}));
    assert_eq!(
        entry(&made, "tool", "Apply").unwrap()["fieldsV1"],
        json!({"f:data": {"f:k": {}}})
    );
    let (code, _) = s.http("GET", "/api/v1/namespaces/default/configmaps/dry", "", b"");
    assert_eq!(code, 404);
    let (code, _) = s.http(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/dry?fieldManager=tool&dryRun=All",
        APPLY,
        b"{\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\", \"data\": {\"k\": \"v\"}}",
    );
    assert_eq!(code, 201);
    let (code, _) = s.http("GET", "/api/v1/namespaces/default/configmaps/dry", "", b"");
    assert_eq!(code, 404, "a dry-run apply creates nothing");

    // Status is applied through /status, filed under that subresource; the object's own
    // apply does not own status.
    s.ok_stdin(&["apply", "--server-side", "-f", "-"], &web(1, "app: web"));
    let (code, obj) = s.http(
        "PATCH",
        &format!("{DEPLOY}/status?fieldManager=statusbot&force=true"),
        APPLY,
        br#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 9}, "status": {"observedGeneration": 41}}"#,
    );
    assert_eq!(code, 200, "{obj}");
    assert_eq!(obj["status"]["observedGeneration"], 41);
    assert_eq!(
        obj["spec"]["replicas"], 1,
        "a status apply leaves spec alone"
    );
    let bot = entry(&obj, "statusbot", "Apply").expect("status entry");
    assert_eq!(bot["subresource"], "status");
    assert_eq!(
        bot["fieldsV1"],
        json!({"f:status": {"f:observedGeneration": {}}})
    );
}

#[test]
fn a_crd_list_of_type_map_merges_by_key_and_each_manager_removes_only_its_elements() {
    let s = Server::start();
    s.ok_stdin(
        &["apply", "-f", "-"],
        "
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              ports:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items:
                  type: object
                  required: [name]
                  properties:
                    name: {type: string}
                    port: {type: integer}
",
    );
    let path = "/apis/example.com/v1/namespaces/default/gadgets/g";
    let apply = |manager: &str, ports: &str| {
        let body = format!(
            "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {{name: g}}\nspec:\n  ports: {ports}\n"
        );
        s.http(
            "PATCH",
            &format!("{path}?fieldManager={manager}"),
            APPLY,
            body.as_bytes(),
        )
    };
    common::eventually("gadgets served", std::time::Duration::from_secs(20), || {
        let (code, _) = s.http(
            "GET",
            "/apis/example.com/v1/namespaces/default/gadgets",
            "",
            b"",
        );
        (code == 200).then_some(())
    });
    let (code, v) = apply("a", "[{name: http, port: 80}]");
    assert_eq!(code, 201, "{v}");
    let (code, v) = apply("b", "[{name: metrics, port: 9090}]");
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        v["spec"]["ports"],
        json!([{"name": "http", "port": 80}, {"name": "metrics", "port": 9090}])
    );
    let b = entry(&v, "b", "Apply").unwrap();
    assert_eq!(
        b["fieldsV1"]["f:spec"]["f:ports"],
        json!({"k:{\"name\":\"metrics\"}": {".": {}, "f:name": {}, "f:port": {}}})
    );
    // b changing http's port conflicts with a.
    let (code, v) = apply("b", "[{name: metrics, port: 9090}, {name: http, port: 81}]");
    assert_eq!(code, 409, "{v}");
    assert_eq!(
        v["message"],
        "Apply failed with 1 conflict: conflict with \"a\": .spec.ports[name=\"http\"].port"
    );
    // a drops http: only b's element is left.
    let (code, v) = apply("a", "[]");
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        v["spec"]["ports"],
        json!([{"name": "metrics", "port": 9090}])
    );
}

#[tokio::test]
async fn kube_rs_patch_apply_creates_and_updates_with_its_field_manager() {
    use kube::api::{Api, DynamicObject, Patch, PatchParams};
    use kube::core::{ApiResource, GroupVersionKind};

    let s = Server::start();
    let kubeconfig = kube::config::Kubeconfig::read_from(s.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "ConfigMap"));
    let api: Api<DynamicObject> = Api::namespaced_with(client, "default", &resource);
    let params = PatchParams::apply("rust-app");
    let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "rs"}, "data": {"x": "1"}});
    let made = api
        .patch("rs", &params, &Patch::Apply(&config))
        .await
        .unwrap();
    assert_eq!(made.data["data"]["x"], "1");
    let fields = made.metadata.managed_fields.unwrap_or_default();
    assert_eq!(fields.len(), 1);
    assert_eq!(fields[0].manager.as_deref(), Some("rust-app"));
    assert_eq!(fields[0].operation.as_deref(), Some("Apply"));
    let other = PatchParams::apply("other");
    let err = api
        .patch(
            "rs",
            &other,
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"x": "2"}})),
        )
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 409);
            assert!(
                status
                    .message
                    .contains("conflict with \"rust-app\": .data.x"),
                "{}",
                status.message
            );
        }
        other => panic!("expected a 409, got {other}"),
    }
    let forced = api
        .patch(
            "rs",
            &other.force(),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"x": "2"}})),
        )
        .await
        .unwrap();
    assert_eq!(forced.data["data"]["x"], "2");
}

#[test]
fn the_syncer_applies_server_side_leaves_another_managers_replicas_and_reports_repository_drift() {
    use common::{GitRepo, eventually, gitplane};
    use std::time::Duration;
    const WAIT: Duration = Duration::from_secs(60);

    let repo = GitRepo::new();
    repo.write(
        "root/placeholder.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: placeholder}\n",
    );
    // The repository does not set replicas: another manager (an autoscaler) owns them.
    repo.write(
        "apps/web.yaml",
        &web(1, "app: web").replace("  replicas: 1\n", ""),
    );
    repo.commit("first");
    let repo_path = repo.path.to_string_lossy().into_owned();
    let s = Server::start_with(&["--repo", &repo_path, "--path", "root"]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: gitplane.io/v1alpha1\nkind: Application\nmetadata: {{name: web}}\nspec:\n  source: {{repoURL: {repo_path}, path: apps}}\n  destination: {{namespace: default}}\n  syncPolicy:\n    automated: {{}}\n    syncOptions: [ServerSideApply=true]\n"
        ),
    );
    let sync_status = || {
        s.ok(&[
            "get",
            "application",
            "web",
            "-o",
            "jsonpath={.status.sync.status}",
        ])
    };
    let obj = eventually("web applied server-side", WAIT, || {
        let (code, obj) = s.http("GET", DEPLOY, "", b"");
        (code == 200 && entry(&obj, "gitplane", "Apply").is_some()).then_some(obj)
    });
    let mine = entry(&obj, "gitplane", "Apply").unwrap();
    assert!(mine["fieldsV1"]["f:spec"]["f:replicas"].is_null(), "{mine}");
    eventually("the app is synced", WAIT, || {
        (sync_status() == "Synced").then_some(())
    });

    // Another manager scales: no drift, and a sync leaves its replicas alone.
    s.ok(&[
        "patch",
        "deploy",
        "web",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"replicas":3}}"#,
        "--field-manager=autoscaler",
    ]);
    let out = gitplane(&s, &["sync", "web"]);
    assert!(out.status.success(), "sync: {}", stderr(&out));
    let obj = s.get_json(DEPLOY);
    assert_eq!(obj["spec"]["replicas"], 3);
    assert!(entry(&obj, "autoscaler", "Update").is_some(), "{obj}");
    assert_eq!(sync_status(), "Synced");
    let diff = gitplane(&s, &["diff", "--app", "web", "--head", "main"]);
    let text = String::from_utf8_lossy(&diff.stdout).into_owned();
    assert!(!text.contains("replicas"), "{text}");

    // A hand edit of a field the repository sets is drift, shown by `gitplane diff`.
    s.ok(&["set", "image", "deploy/web", "web=nginx:1.26"]);
    eventually("the hand edit is drift", WAIT, || {
        (sync_status() == "OutOfSync").then_some(())
    });
    let diff = gitplane(&s, &["diff", "--app", "web", "--head", "main"]);
    let text = String::from_utf8_lossy(&diff.stdout).into_owned();
    assert!(
        text.contains("nginx:1.26") && text.contains("nginx:1.25") && !text.contains("replicas"),
        "{text}"
    );
}
