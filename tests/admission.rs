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
    let sa = s.ok(&[
        "get",
        "pod",
        "p",
        "-o",
        "jsonpath={.spec.serviceAccountName}",
    ]);
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
        s.kubectl(&["get", "widgets"])
            .status
            .success()
            .then_some(())
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
    let out = s.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(&widget("{image: nginx, replicas: two}")),
    );
    assert!(stderr(&out).contains("spec.replicas"), "{}", stderr(&out));
    // kubectl sends fieldValidation=Strict: an unknown field is refused.
    let out = s.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(&widget("{image: nginx, colour: red}")),
    );
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
    let body = br#"{"metadata":{"name":"dup"},"data":{"a":"1","a":"2"}}"#;
    let (code, v) = s.http(
        "POST",
        "/api/v1/namespaces/default/configmaps?fieldValidation=Strict",
        "application/json",
        body,
    );
    assert_eq!(code, 400, "{v}");
    assert_eq!(
        v["message"],
        "strict decoding error: duplicate field \"data.a\""
    );
    let (code, v) = s.http(
        "POST",
        "/api/v1/namespaces/default/configmaps?fieldValidation=Bogus",
        "application/json",
        br#"{"metadata":{"name":"d"}}"#,
    );
    assert_eq!(code, 400, "{v}");
}

/// A CA and a server certificate for `names`, made with rcgen: (CA PEM, cert PEM, key PEM).
fn certificates(names: &[&str]) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
    let key = rcgen::KeyPair::generate().expect("server key");
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("server params");
    let cert = params.signed_by(&key, &ca).expect("server certificate");
    (ca.pem(), cert.pem(), key.serialize_pem())
}

fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

type Answer = dyn Fn(&serde_json::Value) -> serde_json::Value + Send + Sync;

/// A webhook server for tests: HTTPS on 127.0.0.1 with its own CA; `answer` gets the
/// AdmissionReview's `request` and returns its `response` (the uid is filled in); every answer
/// waits `delay` first. Stopped when dropped.
struct TestHook {
    port: u16,
    ca_bundle: String,
    requests: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    _runtime: tokio::runtime::Runtime,
}

impl TestHook {
    fn start(delay: std::time::Duration, answer: Box<Answer>) -> TestHook {
        use std::sync::{Arc, Mutex};
        let (ca, cert, key) = certificates(&["127.0.0.1"]);
        use rustls::pki_types::pem::PemObject;
        let certs = rustls::pki_types::CertificateDer::pem_slice_iter(cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("cert");
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let answer: Arc<Answer> = Arc::from(answer);
        runtime.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, answer, seen) = (acceptor.clone(), answer.clone(), seen.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (answer, seen) = (answer.clone(), seen.clone());
                        async move {
                            use http_body_util::BodyExt;
                            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let review: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                            let request = review["request"].clone();
                            seen.lock().expect("requests").push(request.clone());
                            tokio::time::sleep(delay).await;
                            let mut response = answer(&request);
                            response["uid"] = request["uid"].clone();
                            let out = serde_json::json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response});
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(out.to_string()))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        TestHook {
            port,
            ca_bundle: b64(&ca),
            requests,
            _runtime: runtime,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }
}

/// A webhook configuration of one webhook on configmaps.
fn hook_config(kind: &str, name: &str, url: &str, ca: &str, extra: &str) -> String {
    format!(
        "apiVersion: admissionregistration.k8s.io/v1
kind: {kind}
metadata: {{name: {name}}}
webhooks:
- name: {name}.example.com
  admissionReviewVersions: [v1]
  sideEffects: None
  clientConfig: {{url: \"{url}\", caBundle: \"{ca}\"}}
  rules:
  - {{operations: [CREATE, UPDATE], apiGroups: [\"\"], apiVersions: [v1], resources: [configmaps]}}
{extra}"
    )
}

fn deny_bad(request: &serde_json::Value) -> serde_json::Value {
    if request["object"]["data"]["bad"].is_string() {
        serde_json::json!({"allowed": false, "status": {"code": 403, "message": "bad data is not allowed"}})
    } else {
        serde_json::json!({"allowed": true, "warnings": ["configmaps are checked by deny.example.com"]})
    }
}

const WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// Waits until creating configmap `probe-N` gives an error containing `text`.
fn until_refused(s: &Server, args: &[&str], text: &str) -> String {
    let mut n = 0;
    common::eventually(&format!("a refusal containing {text:?}"), WAIT, || {
        n += 1;
        let name = format!("probe-{n}");
        let mut full: Vec<&str> = vec!["create", "configmap", &name];
        full.extend_from_slice(args);
        let out = s.kubectl(&full);
        let err = stderr(&out);
        err.contains(text).then_some(err)
    })
}

#[test]
fn a_validating_webhook_refuses_with_its_message_and_its_warnings_reach_kubectl() {
    let s = Server::start();
    let hook = TestHook::start(std::time::Duration::ZERO, Box::new(deny_bad));
    s.ok_stdin(
        &["apply", "-f", "-"],
        &hook_config(
            "ValidatingWebhookConfiguration",
            "deny",
            &hook.url("/validate"),
            &hook.ca_bundle,
            "",
        ),
    );
    until_refused(
        &s,
        &["--from-literal=bad=1"],
        "admission webhook \"deny.example.com\" denied the request: bad data is not allowed",
    );
    let (code, _) = s.http(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        br#"{"metadata":{"name":"raw"},"data":{"bad":"1"}}"#,
    );
    assert_eq!(code, 403, "the webhook's status code is the answer's");
    let out = s.kubectl(&["create", "configmap", "fine", "--from-literal=good=1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Warning: configmaps are checked by deny.example.com"),
        "{}",
        stderr(&out)
    );
    // The AdmissionReview carries what Kubernetes sends.
    let requests = hook.requests.lock().expect("requests").clone();
    let r = requests
        .iter()
        .find(|r| r["name"] == "fine")
        .expect("the webhook saw the create");
    assert_eq!(r["operation"], "CREATE");
    assert_eq!(r["namespace"], "default");
    assert_eq!(
        r["kind"],
        serde_json::json!({"group": "", "version": "v1", "kind": "ConfigMap"})
    );
    assert_eq!(r["resource"]["resource"], "configmaps");
    // The authenticated user: the kubeconfig's admin certificate.
    assert_eq!(r["userInfo"]["username"], "admin");
    assert!(
        r["userInfo"]["groups"]
            .to_string()
            .contains("system:masters")
    );
    assert_eq!(r["dryRun"], false);
    assert_eq!(r["options"]["kind"], "CreateOptions");
    // A server-side dry run calls the webhook too (sideEffects: None) and is refused the same.
    let out = s.kubectl(&[
        "create",
        "configmap",
        "dry",
        "--from-literal=bad=1",
        "--dry-run=server",
    ]);
    assert!(
        stderr(&out).contains("denied the request"),
        "{}",
        stderr(&out)
    );
    assert!(
        hook.requests
            .lock()
            .expect("requests")
            .iter()
            .any(|r| r["name"] == "dry" && r["dryRun"] == true)
    );
    // Updates are checked too, with the old object.
    let out = s.kubectl(&[
        "patch",
        "configmap",
        "fine",
        "--type=merge",
        "-p",
        r#"{"data":{"bad":"1"}}"#,
    ]);
    assert!(
        stderr(&out).contains("bad data is not allowed"),
        "{}",
        stderr(&out)
    );
    assert!(
        hook.requests
            .lock()
            .expect("requests")
            .iter()
            .any(|r| r["operation"] == "UPDATE" && r["oldObject"]["data"]["good"] == "1")
    );
    // A webhook needing side effects cannot be registered in v1.
    let out = s.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(
            &hook_config(
                "ValidatingWebhookConfiguration",
                "effects",
                &hook.url("/v"),
                &hook.ca_bundle,
                "",
            )
            .replace("sideEffects: None", "sideEffects: Unknown"),
        ),
    );
    assert!(
        stderr(&out).contains("webhooks[0].sideEffects: Unsupported value: \"Unknown\": supported values: \"None\", \"NoneOnDryRun\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn mutating_webhooks_patch_objects_and_a_patch_making_them_invalid_is_refused() {
    let s = Server::start();
    let hook = TestHook::start(
        std::time::Duration::ZERO,
        Box::new(|request| {
            use base64::Engine;
            let name = request["name"].as_str().unwrap_or("");
            let patch = if name.starts_with("broken") {
                serde_json::json!([{"op": "add", "path": "/data/bad key", "value": "x"}])
            } else {
                serde_json::json!([{"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}}])
            };
            serde_json::json!({"allowed": true, "patchType": "JSONPatch",
                "patch": base64::engine::general_purpose::STANDARD.encode(patch.to_string())})
        }),
    );
    s.ok_stdin(
        &["apply", "-f", "-"],
        &hook_config(
            "MutatingWebhookConfiguration",
            "label",
            &hook.url("/mutate"),
            &hook.ca_bundle,
            "",
        ),
    );
    common::eventually("the mutating webhook labels configmaps", WAIT, || {
        let name = format!("m{}", hook.requests.lock().expect("requests").len());
        s.ok(&["create", "configmap", &name]);
        let label = s.ok(&[
            "get",
            "configmap",
            &name,
            "-o",
            "jsonpath={.metadata.labels.mutated}",
        ]);
        (label == "yes").then_some(())
    });
    let out = s.kubectl(&["create", "configmap", "broken", "--from-literal=a=b"]);
    assert!(
        stderr(&out).contains("data[bad key]: Invalid value: \"bad key\": a valid config key"),
        "{}",
        stderr(&out)
    );
    assert!(!s.kubectl(&["get", "configmap", "broken"]).status.success());
}

#[test]
fn an_unreachable_or_slow_webhook_refuses_under_fail_and_is_skipped_under_ignore() {
    let s = Server::start();
    // A port with nobody listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "https://127.0.0.1:{}/validate",
        closed.local_addr().expect("addr").port()
    );
    drop(closed);
    let (ca, _, _) = certificates(&["127.0.0.1"]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &hook_config(
            "ValidatingWebhookConfiguration",
            "down",
            &url,
            &b64(&ca),
            "",
        ),
    );
    let err = until_refused(&s, &[], "failed calling webhook \"down.example.com\"");
    assert!(err.contains("Internal error occurred"), "{err}");
    s.ok(&["delete", "validatingwebhookconfiguration", "down"]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &hook_config(
            "ValidatingWebhookConfiguration",
            "down-ignored",
            &url,
            &b64(&ca),
            "  failurePolicy: Ignore\n",
        ),
    );
    common::eventually("an unreachable Ignore webhook is skipped", WAIT, || {
        s.kubectl(&["create", "configmap", "allowed"])
            .status
            .success()
            .then_some(())
    });

    let slow = TestHook::start(
        std::time::Duration::from_secs(5),
        Box::new(|_| serde_json::json!({"allowed": true})),
    );
    s.ok_stdin(
        &["apply", "-f", "-"],
        &hook_config(
            "ValidatingWebhookConfiguration",
            "slow",
            &slow.url("/validate"),
            &slow.ca_bundle,
            "  timeoutSeconds: 1\n",
        ),
    );
    until_refused(&s, &[], "context deadline exceeded");
}

#[test]
fn namespace_and_object_selectors_choose_the_requests_a_webhook_sees() {
    let s = Server::start();
    let hook = TestHook::start(
        std::time::Duration::ZERO,
        Box::new(|_| serde_json::json!({"allowed": false, "status": {"message": "selected"}})),
    );
    s.ok(&["create", "namespace", "checked"]);
    s.ok(&["label", "namespace", "checked", "policy=on"]);
    s.ok(&["create", "namespace", "free"]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &hook_config(
            "ValidatingWebhookConfiguration",
            "select",
            &hook.url("/validate"),
            &hook.ca_bundle,
            "  namespaceSelector: {matchLabels: {policy: \"on\"}}\n  objectSelector: {matchExpressions: [{key: skip, operator: DoesNotExist}]}\n",
        ),
    );
    until_refused(&s, &["-n", "checked"], "denied the request: selected");
    let out = s.kubectl(&["create", "configmap", "a", "-n", "free"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = s.kubectl_stdin(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: skipped, namespace: checked, labels: {skip: \"yes\"}}\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // Webhook configurations themselves never go to webhooks.
    assert!(
        hook.requests
            .lock()
            .expect("requests")
            .iter()
            .all(|r| r["kind"]["kind"] == "ConfigMap" && r["namespace"] == "checked")
    );
}

#[test]
fn the_example_policy_webhook_labels_workloads_and_refuses_untagged_images() {
    let s = Server::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (ca, cert, key) = certificates(&["policy-webhook.default.svc"]);
    std::fs::write(dir.path().join("tls.crt"), cert).expect("cert");
    std::fs::write(dir.path().join("tls.key"), key).expect("key");
    let mut hook = std::process::Command::new(env!("CARGO_BIN_EXE_gitplane"))
        .args(["policy-webhook", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(dir.path().join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.path().join("tls.key"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the policy webhook");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(hook.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("the webhook's address");
    let port = line.trim().rsplit(':').next().expect("a port").to_string();
    let manifest = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples-repo/policy-webhook/webhook.yaml"
    ))
    .expect("the example manifests")
    .replace("9443", &port)
    .replace("CA_BUNDLE", &b64(&ca));
    s.ok_stdin(&["apply", "-f", "-"], &manifest);
    let err = common::eventually("untagged images refused", WAIT, || {
        let out = s.kubectl(&["run", "untagged", "--image=nginx"]);
        let err = stderr(&out);
        err.contains("denied the request").then_some(err)
    });
    assert!(
        err.contains("admission webhook \"images.policy.gitplane.io\" denied the request: container \"untagged\": image \"nginx\" has no tag; pin a version"),
        "{err}"
    );
    let out = s.kubectl(&["create", "deployment", "web", "--image=nginx:latest"]);
    assert!(
        stderr(&out).contains("is tagged latest"),
        "{}",
        stderr(&out)
    );
    s.ok(&["run", "pinned", "--image=nginx:1.27"]);
    let label = s.ok(&[
        "get",
        "pod",
        "pinned",
        "-o",
        "jsonpath={.metadata.labels.gitplane\\.io/policy}",
    ]);
    assert_eq!(label, "checked");
    let _ = hook.kill();
    let _ = hook.wait();
}

#[test]
fn gitplane_diff_shows_a_validating_webhooks_refusal() {
    let repo = common::GitRepo::new();
    repo.write(
        "app/one.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: one}\ndata: {a: \"1\"}\n",
    );
    repo.commit("base");
    let repo_path = repo.path.to_string_lossy().into_owned();
    let s = Server::start_with(&["--repo", &repo_path, "--path", "app"]);
    common::eventually("applied", WAIT, || {
        s.kubectl(&["get", "configmap", "one"])
            .status
            .success()
            .then_some(())
    });
    let hook = TestHook::start(std::time::Duration::ZERO, Box::new(deny_bad));
    s.ok_stdin(
        &["apply", "-f", "-"],
        &hook_config(
            "ValidatingWebhookConfiguration",
            "deny",
            &hook.url("/validate"),
            &hook.ca_bundle,
            "",
        ),
    );
    until_refused(&s, &["--from-literal=bad=1"], "bad data is not allowed");
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write(
        "app/one.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: one}\ndata: {a: \"1\", bad: \"2\"}\n",
    );
    repo.commit("feature");
    repo.git(&["checkout", "-q", "main"]);
    let out = common::gitplane(&s, &["diff", "--app", "root", "--head", "feature"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a refused object fails the review"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "admission webhook \"deny.example.com\" denied the request: bad data is not allowed"
        ),
        "{text}"
    );
}

/// An EncryptionConfiguration for Secrets with these AES-GCM keys (first encrypts) and identity.
fn encryption_config(dir: &std::path::Path, keys: &[(&str, &str)]) -> std::path::PathBuf {
    let keys: String = keys
        .iter()
        .map(|(name, secret)| {
            format!(
                "          - name: {name}\n            secret: {}\n",
                b64(secret)
            )
        })
        .collect();
    let path = dir.join("encryption.yaml");
    std::fs::write(
        &path,
        format!("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - aesgcm:\n          keys:\n{keys}      - identity: {{}}\n"),
    )
    .expect("write the encryption configuration");
    path
}

const KEY1: &str = "0123456789abcdef0123456789abcdef";
const KEY2: &str = "abcdef0123456789";
const PLAINTEXT: &str = "hunter2-very-secret-value";

#[test]
fn secrets_are_encrypted_in_the_embedded_store_file() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let config = encryption_config(tmp.path(), &[("key1", KEY1)]);
    let dir = tmp.path().join("data");
    let s = Server::start_in_with(
        &dir,
        &[
            "--encryption-provider-config",
            config.to_str().expect("path"),
        ],
    );
    s.ok(&[
        "create",
        "secret",
        "generic",
        "s1",
        &format!("--from-literal=password={PLAINTEXT}"),
    ]);
    s.ok(&[
        "create",
        "configmap",
        "plain",
        "--from-literal=visible=in-the-clear-value",
    ]);
    let got = s.ok(&["get", "secret", "s1", "-o", "jsonpath={.data.password}"]);
    assert_eq!(got, b64(PLAINTEXT));
    let raw = std::fs::read(dir.join("store.redb")).expect("the store file");
    let has = |needle: &str| raw.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(
        has("k8s:enc:aesgcm:v1:key1:"),
        "the secret is stored encrypted"
    );
    assert!(
        !has(PLAINTEXT) && !has(&b64(PLAINTEXT)),
        "no plaintext in the store file"
    );
    assert!(
        has("in-the-clear-value"),
        "other resources are not encrypted"
    );
    // A configuration that is not valid stops the server with the field named.
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aesgcm: {keys: [{name: k, secret: c2hvcnQ=}]}\n").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gitplane"))
        .args(["apiserver", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join("other"))
        .arg("--encryption-provider-config")
        .arg(&bad)
        .output()
        .expect("run gitplane apiserver");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("aesgcm.keys[0].secret: an AES-GCM key is 16, 24 or 32 bytes, got 5"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn etcd_value(etcd: &etcd_process::EtcdCluster, key: &str) -> Vec<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut client = etcd_client::Client::connect(etcd.endpoints(), None)
            .await
            .expect("etcd client");
        let resp = client.get(key, None).await.expect("etcd get");
        resp.kvs()
            .first()
            .map(|kv| kv.value().to_vec())
            .unwrap_or_default()
    })
}

#[test]
fn secrets_in_etcd_are_encrypted_and_a_new_first_key_takes_over_after_a_rewrite() {
    let etcd = common::etcd(1);
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("data");
    let store = format!("--store={}", etcd.store_url());
    let config = encryption_config(tmp.path(), &[("key1", KEY1)]);
    let mut s = Server::start_in_with(
        &dir,
        &[
            &store,
            "--encryption-provider-config",
            config.to_str().expect("path"),
        ],
    );
    s.ok(&[
        "create",
        "secret",
        "generic",
        "s1",
        &format!("--from-literal=password={PLAINTEXT}"),
    ]);
    let key = "/registry/core/secrets/default/s1";
    let raw = etcd_value(&etcd, key);
    assert!(
        raw.starts_with(b"k8s:enc:aesgcm:v1:key1:"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    assert!(
        !raw.windows(PLAINTEXT.len())
            .any(|w| w == PLAINTEXT.as_bytes())
    );
    s.terminate();

    // Rotation: key2 first, key1 still there to read the old value.
    let config = encryption_config(tmp.path(), &[("key2", KEY2), ("key1", KEY1)]);
    let s = Server::start_in_with(
        &dir,
        &[
            &store,
            "--encryption-provider-config",
            config.to_str().expect("path"),
        ],
    );
    // Polled: once, under a heavily loaded machine, this first read after the restart failed
    // (cause not found; see the report).
    let got = common::eventually("the old secret read after the restart", WAIT, || {
        let out = s.kubectl(&["get", "secret", "s1", "-o", "jsonpath={.data.password}"]);
        if !out.status.success() {
            eprintln!("get secret s1 after restart: {}", stderr(&out));
        }
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    assert_eq!(got, b64(PLAINTEXT), "an old secret is still readable");
    assert!(etcd_value(&etcd, key).starts_with(b"k8s:enc:aesgcm:v1:key1:"));
    // Kubernetes' way to re-encrypt everything: read and replace unchanged.
    let all = s.ok(&["get", "secrets", "-A", "-o", "json"]);
    s.ok_stdin(&["replace", "--validate=false", "-f", "-"], &all);
    assert!(
        etcd_value(&etcd, key).starts_with(b"k8s:enc:aesgcm:v1:key2:"),
        "rewritten with the new key"
    );
    let got = s.ok(&["get", "secret", "s1", "-o", "jsonpath={.data.password}"]);
    assert_eq!(got, b64(PLAINTEXT));
}

#[test]
fn kubectl_explain_describes_built_in_kinds_and_custom_resources() {
    let s = Server::start();
    let out = s.ok(&["explain", "deployment.spec.strategy"]);
    assert!(out.contains("KIND:       Deployment"), "{out}");
    assert!(
        out.contains("rollingUpdate\t<RollingUpdateDeployment>"),
        "{out}"
    );
    let out = s.ok(&["explain", "pods.spec.containers.ports"]);
    assert!(out.contains("containerPort\t<integer> -required-"), "{out}");
    s.ok_stdin(
        &["apply", "-f", "-"],
        &CRD.replace(
            "type: object\n            required",
            "type: object\n            description: What the widget wants.\n            required",
        ),
    );
    let out = common::eventually("widgets explained", WAIT, || {
        let out = s.kubectl(&["explain", "widget.spec"]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    assert!(out.contains("What the widget wants."), "{out}");
    assert!(out.contains("image\t<string> -required-"), "{out}");
    assert!(out.contains("replicas\t<integer>"), "{out}");
}

#[test]
fn hostile_bodies_get_client_errors_and_the_server_stays_up() {
    let s = Server::start();
    let path = "/api/v1/namespaces/default/configmaps";
    let deep = "[".repeat(1_000_000);
    let nested_objects = format!(
        "{{\"metadata\":{{\"name\":\"x\"}},\"data\":{}}}",
        "{\"a\":".repeat(100_000)
    );
    let huge_string = format!(
        "{{\"metadata\":{{\"name\":\"x\"}},\"data\":{{\"a\":\"{}\"}}}}",
        "x".repeat(4 << 20)
    );
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("deep arrays", "application/json", deep.into_bytes()),
        (
            "deep objects",
            "application/json",
            nested_objects.into_bytes(),
        ),
        (
            "huge number",
            "application/json",
            br#"{"metadata":{"name":"x"},"data":{"a":1e999}}"#.to_vec(),
        ),
        (
            "invalid UTF-8",
            "application/json",
            b"{\"metadata\":{\"name\":\"\xff\xfe\"}}".to_vec(),
        ),
        ("huge string", "application/json", huge_string.into_bytes()),
        ("YAML", "application/yaml", b"metadata: {name: x}".to_vec()),
        (
            "truncated protobuf",
            "application/vnd.kubernetes.protobuf",
            b"k8s\0\x0a\x0f\x0a\x02v1\x12\x09ConfigMap\x12\x7f\x0a".to_vec(),
        ),
    ];
    for (what, ct, body) in cases {
        let (code, status) = s.http("POST", path, ct, &body);
        assert!((400..500).contains(&code), "{what}: {code} {status}");
    }
    let (code, status) = s.http(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/none",
        "application/merge-patch+json",
        &"{\"a\":".repeat(100_000).into_bytes(),
    );
    assert!((400..500).contains(&code), "deep patch: {code} {status}");
    s.ok(&["create", "configmap", "still-up"]);
}

#[test]
fn a_mutating_webhook_with_if_needed_runs_again_after_a_later_one_changed_the_object() {
    use base64::Engine;
    let s = Server::start();
    let label = |key: &'static str| {
        Box::new(move |request: &serde_json::Value| {
            let has = request["object"]["metadata"]["labels"][key].is_string();
            let patch = if has {
                serde_json::json!([])
            } else if request["object"]["metadata"]["labels"].is_object() {
                serde_json::json!([{"op": "add", "path": format!("/metadata/labels/{key}"), "value": "yes"}])
            } else {
                serde_json::json!([{"op": "add", "path": "/metadata/labels", "value": {key: "yes"}}])
            };
            serde_json::json!({"allowed": true, "patchType": "JSONPatch",
                "patch": base64::engine::general_purpose::STANDARD.encode(patch.to_string())})
        }) as Box<Answer>
    };
    let first = TestHook::start(std::time::Duration::ZERO, label("first"));
    let second = TestHook::start(std::time::Duration::ZERO, label("second"));
    let config = format!(
        "{}- name: second.example.com
  admissionReviewVersions: [v1]
  sideEffects: None
  clientConfig: {{url: \"{}\", caBundle: \"{}\"}}
  rules:
  - {{operations: [CREATE], apiGroups: [\"\"], apiVersions: [v1], resources: [configmaps]}}
",
        hook_config(
            "MutatingWebhookConfiguration",
            "first",
            &first.url("/m"),
            &first.ca_bundle,
            "  reinvocationPolicy: IfNeeded\n"
        ),
        second.url("/m"),
        second.ca_bundle
    );
    s.ok_stdin(&["apply", "-f", "-"], &config);
    common::eventually("both webhooks label configmaps", WAIT, || {
        let name = format!("r{}", first.requests.lock().expect("requests").len());
        s.ok(&["create", "configmap", &name]);
        let labels = s.ok(&[
            "get",
            "configmap",
            &name,
            "-o",
            "jsonpath={.metadata.labels}",
        ]);
        (labels.contains("first") && labels.contains("second")).then_some(name)
    });
    s.ok(&["create", "configmap", "counted"]);
    let calls = |hook: &TestHook| {
        hook.requests
            .lock()
            .expect("requests")
            .iter()
            .filter(|r| r["name"] == "counted")
            .count()
    };
    assert_eq!(
        calls(&first),
        2,
        "reinvoked once after the second webhook's change"
    );
    assert_eq!(calls(&second), 1);
}
