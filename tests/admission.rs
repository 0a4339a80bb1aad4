//! Admission end to end: validation of built-in kinds and custom resources, fieldValidation,
//! ServiceAccount admission, NamespaceLifecycle, admission webhooks, through the real kubectl.

mod common;

use common::Server;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const BAD_DEPLOYMENT: &str = "
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: -1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: other}}
    spec:
      containers:
      - image: nginx
        ports: [{containerPort: 70000}]
";

#[test]
fn an_invalid_deployment_is_refused_with_every_problem_and_its_field_path() {
    let s = Server::start();
    let out = s.kubectl_stdin(&["apply", "-f", "-"], Some(BAD_DEPLOYMENT));
    assert!(!out.status.success());
    let err = stderr(&out);
    for part in [
        "The Deployment \"web\" is invalid:",
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
        "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"other\"}: `selector` does not match template `labels`",
        "spec.template.spec.containers[0].name: Required value",
        "spec.template.spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
    ] {
        assert!(err.contains(part), "missing {part:?} in {err}");
    }
    let (code, status) = s.http(
        "POST",
        "/apis/apps/v1/namespaces/default/deployments",
        "application/json",
        br#"{"metadata":{"name":"web"},"spec":{"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c"}]}}}}"#,
    );
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        status["message"],
        "Deployment.apps \"web\" is invalid: spec.template.spec.containers[0].image: Required value"
    );
    assert_eq!(
        status["details"]["causes"][0]["field"],
        "spec.template.spec.containers[0].image"
    );
    assert_eq!(
        status["details"]["causes"][0]["reason"],
        "FieldValueRequired"
    );
    // Nothing was stored.
    let out = s.kubectl(&["get", "deployment", "web"]);
    assert!(!out.status.success());
}

#[test]
fn immutable_fields_and_services_are_checked_on_update() {
    let s = Server::start();
    s.ok(&["create", "deployment", "web", "--image=nginx"]);
    let out = s.kubectl(&[
        "patch",
        "deployment",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"selector":{"matchLabels":{"app":"x"}},"template":{"metadata":{"labels":{"app":"x"}}}}}"#,
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("spec.selector: Invalid value:")
            && stderr(&out).contains("field is immutable"),
        "{}",
        stderr(&out)
    );
    s.ok(&["run", "p", "--image=nginx:1"]);
    s.ok(&["set", "image", "pod/p", "p=nginx:2"]);
    let out = s.kubectl(&[
        "patch",
        "pod",
        "p",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/containers/0/name","value":"q"}]"#,
    ]);
    assert!(
        stderr(&out).contains("pod updates may not change fields other than"),
        "{}",
        stderr(&out)
    );
    let out = s.kubectl_stdin(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Service\nmetadata: {name: svc}\nspec:\n  ports:\n  - {name: http, port: 80}\n  - {name: http, port: 0}\n"),
    );
    let err = stderr(&out);
    assert!(
        err.contains("spec.ports[1].name: Duplicate value: \"http\"")
            && err.contains(
                "spec.ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive"
            ),
        "{err}"
    );
}

#[test]
fn pods_run_as_the_default_service_account_and_terminating_namespaces_refuse_content() {
    let s = Server::start();
    s.ok(&["run", "p", "--image=nginx"]);
    let sa = s.ok(&["get", "pod", "p", "-o", "jsonpath={.spec.serviceAccountName}"]);
    assert_eq!(sa, "default");
    s.ok(&["create", "namespace", "gone"]);
    // A finalizer keeps the namespace Terminating.
    s.ok(&["create", "configmap", "keep", "-n", "gone"]);
    s.ok(&[
        "patch",
        "configmap",
        "keep",
        "-n",
        "gone",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
    ]);
    s.ok(&["delete", "namespace", "gone", "--wait=false"]);
    let out = s.kubectl(&["create", "configmap", "new", "-n", "gone"]);
    assert!(
        stderr(&out).contains("because it is being terminated"),
        "{}",
        stderr(&out)
    );
    s.ok(&[
        "patch",
        "configmap",
        "keep",
        "-n",
        "gone",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
}

const CRD: &str = "
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
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
            required: [image]
            properties:
              image: {type: string, pattern: '^[a-z:0-9.]+$'}
              replicas: {type: integer, minimum: 1, maximum: 5, default: 1}
              mode: {type: string, enum: [fast, slow]}
              tags: {type: array, maxItems: 2, items: {type: string}}
              extra: {type: object, x-kubernetes-preserve-unknown-fields: true}
";

fn widget(spec: &str) -> String {
    format!("apiVersion: example.com/v1\nkind: Widget\nmetadata: {{name: w}}\nspec: {spec}\n")
}

#[test]
fn custom_resources_are_validated_pruned_and_defaulted_by_their_schema() {
    let s = Server::start();
    s.ok_stdin(&["apply", "-f", "-"], CRD);
    common::eventually("widgets served", std::time::Duration::from_secs(10), || {
        s.kubectl(&["get", "widgets"]).status.success().then_some(())
    });
    let out = s.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(&widget("{replicas: 9, mode: medium, tags: [a, b, c]}")),
    );
    let err = stderr(&out);
    for part in [
        "The Widget \"w\" is invalid:",
        "spec.image: Required value",
        "spec.replicas: Invalid value: 9: spec.replicas in body should be less than or equal to 5",
        "spec.mode: Unsupported value: \"medium\": supported values: \"fast\", \"slow\"",
        "spec.tags: Too many: 3: must have at most 2 items",
    ] {
        assert!(err.contains(part), "missing {part:?} in {err}");
    }
    let out = s.kubectl_stdin(&["apply", "-f", "-"], Some(&widget("{image: nginx, replicas: two}")));
    assert!(stderr(&out).contains("spec.replicas"), "{}", stderr(&out));
    // kubectl sends fieldValidation=Strict: an unknown field is refused.
    let out = s.kubectl_stdin(&["apply", "-f", "-"], Some(&widget("{image: nginx, colour: red}")));
    assert!(
        stderr(&out).contains("unknown field \"spec.colour\""),
        "{}",
        stderr(&out)
    );
    // With --validate=false it is pruned; preserved fields stay; defaults are filled in.
    s.ok_stdin(
        &["apply", "--validate=false", "-f", "-"],
        &widget("{image: nginx, colour: red, extra: {anything: [1]}}"),
    );
    let spec = s.ok(&["get", "widget", "w", "-o", "jsonpath={.spec}"]);
    let spec: serde_json::Value = serde_json::from_str(&spec).expect("spec as JSON");
    assert_eq!(
        spec,
        serde_json::json!({"image": "nginx", "extra": {"anything": [1]}, "replicas": 1})
    );
}

#[test]
fn field_validation_warn_sends_warning_headers_that_kubectl_prints() {
    let s = Server::start();
    let out = s.kubectl_stdin(
        &["apply", "--validate=warn", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\ncolour: red\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Warning: unknown field \"colour\""),
        "{}",
        stderr(&out)
    );
    let (code, v) = s.http(
        "POST",
        "/api/v1/namespaces/default/configmaps?fieldValidation=Bogus",
        "application/json",
        br#"{"metadata":{"name":"d"}}"#,
    );
    assert_eq!(code, 400, "{v}");
}
