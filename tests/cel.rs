//! CEL end to end: ValidatingAdmissionPolicies (Deny, Warn, params from a ConfigMap, through
//! the real kubectl and `gitplane diff`) and CRD `x-kubernetes-validations` rules (plain and
//! transition rules, refused rules), against a real server.

mod common;

use std::time::Duration;

use common::{GitRepo, Server, eventually, gitplane};

const WAIT: Duration = Duration::from_secs(30);

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A policy forbidding more than five replicas, bound to namespaces labelled `env: prod`.
const REPLICA_POLICY: &str = "
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: max-replicas}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: [apps]
      apiVersions: [v1]
      operations: [CREATE, UPDATE]
      resources: [deployments]
  validations:
  - expression: object.spec.replicas <= 5
    messageExpression: \"'replicas must be at most 5, not ' + string(object.spec.replicas)\"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: max-replicas-prod}
spec:
  policyName: max-replicas
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels: {env: prod}
";

fn deployment(namespace: &str, name: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers: [{{name: app, image: nginx}}]
"
    )
}

fn namespaces(s: &Server) {
    s.ok(&["create", "namespace", "prod"]);
    s.ok(&["label", "namespace", "prod", "env=prod"]);
    s.ok(&["create", "namespace", "dev"]);
}

#[test]
fn a_policy_refuses_too_many_replicas_only_in_labelled_namespaces() {
    let s = Server::start();
    namespaces(&s);
    s.ok_stdin(&["apply", "-f", "-"], REPLICA_POLICY);

    let out = s.kubectl_stdin(&["apply", "-f", "-"], Some(&deployment("prod", "web", 7)));
    assert!(!out.status.success(), "7 replicas in prod must be refused");
    assert!(
        stderr(&out).contains(
            "deployments.apps \"web\" is forbidden: ValidatingAdmissionPolicy 'max-replicas' \
             with binding 'max-replicas-prod' denied request: replicas must be at most 5, not 7"
        ),
        "{}",
        stderr(&out)
    );
    assert!(
        !s.kubectl(&["get", "deploy", "web", "-n", "prod"])
            .status
            .success(),
        "nothing was stored"
    );

    s.ok_stdin(&["apply", "-f", "-"], &deployment("prod", "web", 3));
    let out = s.kubectl(&["scale", "deploy", "web", "-n", "prod", "--replicas", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = s.kubectl_stdin(&["apply", "-f", "-"], Some(&deployment("prod", "web", 9)));
    assert!(
        stderr(&out).contains("replicas must be at most 5, not 9"),
        "an update is refused too: {}",
        stderr(&out)
    );

    s.ok_stdin(&["apply", "-f", "-"], &deployment("dev", "web", 7));
    assert_eq!(
        s.ok(&[
            "get",
            "deploy",
            "web",
            "-n",
            "dev",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "7",
        "an unlabelled namespace is not bound"
    );
}

#[test]
fn a_warn_binding_lets_the_request_through_with_a_kubectl_warning() {
    let s = Server::start();
    namespaces(&s);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &REPLICA_POLICY.replace("[Deny]", "[Warn, Audit]"),
    );
    let out = s.kubectl_stdin(&["apply", "-f", "-"], Some(&deployment("prod", "web", 7)));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "Warning: Validation failed for ValidatingAdmissionPolicy 'max-replicas' with \
             binding 'max-replicas-prod': replicas must be at most 5, not 7"
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_policy_reads_its_limit_from_a_configmap_named_by_the_binding() {
    let s = Server::start();
    namespaces(&s);
    s.ok(&[
        "create",
        "configmap",
        "limits",
        "-n",
        "prod",
        "--from-literal=max=2",
    ]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        "
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: param-replicas}
spec:
  paramKind: {apiVersion: v1, kind: ConfigMap}
  matchConstraints:
    resourceRules:
    - {apiGroups: [apps], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [deployments]}
  variables:
  - {name: limit, expression: int(params.data.max)}
  validations:
  - expression: object.spec.replicas <= variables.limit
    message: over the limit of the limits ConfigMap
    reason: Invalid
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: param-replicas}
spec:
  policyName: param-replicas
  validationActions: [Deny]
  paramRef: {name: limits, parameterNotFoundAction: Deny}
",
    );
    let out = s.kubectl_stdin(&["apply", "-f", "-"], Some(&deployment("prod", "web", 3)));
    assert!(
        stderr(&out).contains(
            "The Deployment \"web\" is invalid: : ValidatingAdmissionPolicy 'param-replicas' \
             with binding 'param-replicas' denied request: over the limit of the limits ConfigMap"
        ),
        "{}",
        stderr(&out)
    );
    s.ok_stdin(&["apply", "-f", "-"], &deployment("prod", "web", 2));
    let out = s.kubectl_stdin(&["apply", "-f", "-"], Some(&deployment("dev", "web", 1)));
    assert!(
        stderr(&out)
            .contains("no params found for policy binding with `Deny` parameterNotFoundAction"),
        "dev has no limits ConfigMap: {}",
        stderr(&out)
    );
}

#[test]
fn gitplane_diff_shows_a_policy_denial_of_a_branch() {
    let repo = GitRepo::new();
    repo.write(
        "app/ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: prod\n  labels: {env: prod}\n",
    );
    repo.write("app/web.yaml", &deployment("prod", "web", 2));
    repo.commit("base");
    let repo_path = repo.path.to_string_lossy().into_owned();
    let s = Server::start_with(&["--repo", &repo_path, "--path", "app"]);
    eventually("applied", WAIT, || {
        s.kubectl(&["get", "deploy", "web", "-n", "prod"])
            .status
            .success()
            .then_some(())
    });
    s.ok_stdin(&["apply", "-f", "-"], REPLICA_POLICY);
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write("app/web.yaml", &deployment("prod", "web", 8));
    repo.commit("scale up");
    repo.git(&["checkout", "-q", "main"]);

    let out = gitplane(&s, &["diff", "--app", "root", "--head", "feature"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a denial fails the review: {text}"
    );
    assert!(
        text.contains(
            "ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas-prod' denied \
             request: replicas must be at most 5, not 8"
        ),
        "{text}"
    );
    assert_eq!(
        s.ok(&[
            "get",
            "deploy",
            "web",
            "-n",
            "prod",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "2",
        "a review changes nothing"
    );
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
            x-kubernetes-validations:
            - rule: self.replicas <= self.maxReplicas
              message: replicas may not exceed maxReplicas
              fieldPath: .replicas
            properties:
              replicas:
                type: integer
                x-kubernetes-validations:
                - rule: self >= oldSelf
                  message: replicas may not decrease
              maxReplicas: {type: integer}
";

fn widget(replicas: u32, max: u32) -> String {
    format!(
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {{name: w}}\nspec: {{replicas: {replicas}, maxReplicas: {max}}}\n"
    )
}

#[test]
fn crd_rules_and_transition_rules_are_enforced() {
    let s = Server::start();
    s.ok_stdin(&["apply", "-f", "-"], CRD);
    eventually("widgets served", WAIT, || {
        s.kubectl(&["get", "widgets"])
            .status
            .success()
            .then_some(())
    });

    let out = s.kubectl_stdin(&["apply", "-f", "-"], Some(&widget(6, 5)));
    assert!(
        stderr(&out).contains(
            "The Widget \"w\" is invalid: spec.replicas: Invalid value: \"object\": replicas may not exceed maxReplicas"
        ),
        "{}",
        stderr(&out)
    );
    s.ok_stdin(&["apply", "-f", "-"], &widget(3, 5));
    s.ok_stdin(&["apply", "-f", "-"], &widget(4, 5));
    let out = s.kubectl_stdin(&["apply", "-f", "-"], Some(&widget(2, 5)));
    assert!(
        stderr(&out)
            .contains("spec.replicas: Invalid value: \"integer\": replicas may not decrease"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        s.ok(&["get", "widget", "w", "-o", "jsonpath={.spec.replicas}"]),
        "4"
    );
}

#[test]
fn a_crd_with_a_rule_that_does_not_compile_is_refused() {
    let s = Server::start();
    let out = s.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(&CRD.replace("self >= oldSelf", "self >=")),
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("The CustomResourceDefinition \"widgets.example.com\" is invalid")
            && err.contains(
                "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[replicas].x-kubernetes-validations[0].rule"
            )
            && err.contains("compilation failed"),
        "{err}"
    );
    assert!(
        !s.kubectl(&["get", "crd", "widgets.example.com"])
            .status
            .success()
    );
}

#[test]
fn kubectl_replace_of_a_list_validates_against_openapi_v2() {
    let s = Server::start();
    s.ok(&["create", "configmap", "a", "--from-literal=k=1"]);
    s.ok(&["create", "configmap", "b", "--from-literal=k=1"]);
    let list = s
        .ok(&["get", "configmap", "a", "b", "-o", "json"])
        .replace("\"1\"", "\"2\"");
    let out = s.ok_stdin(&["replace", "-f", "-"], &list);
    assert!(
        out.contains("configmap/a replaced") && out.contains("configmap/b replaced"),
        "{out}"
    );
    assert_eq!(s.ok(&["get", "cm", "b", "-o", "jsonpath={.data.k}"]), "2");

    let bogus = list.replace("\"data\": {", "\"bogus\": 1, \"data\": {");
    let out = s.kubectl_stdin(&["replace", "-f", "-"], Some(&bogus));
    assert!(
        !out.status.success(),
        "an unknown field is refused on the client side"
    );
    assert!(
        stderr(&out)
            .contains("error validating data: ValidationError(ConfigMap): unknown field \"bogus\""),
        "{}",
        stderr(&out)
    );

    let (code, doc) = s.http("GET", "/openapi/v2", "application/json", b"");
    assert_eq!(code, 200);
    assert_eq!(
        doc.pointer(
            "/definitions/io.k8s.api.core.v1.ConfigMap/x-kubernetes-group-version-kind/0/kind"
        ),
        Some(&serde_json::json!("ConfigMap"))
    );
}
