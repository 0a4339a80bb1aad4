//! Admission webhooks (`admissionregistration.k8s.io/v1`): finding the webhooks a request
//! matches, calling them with an `AdmissionReview` v1 over HTTPS verified with their `caBundle`,
//! and applying their answers (JSON patches, refusals, warnings).
//!
//! Matching follows Kubernetes: `rules` (operations, apiGroups, apiVersions, resources with
//! subresources and `*`, scope), `namespaceSelector` (the namespace's labels; a Namespace's own
//! labels; cluster-scoped objects always match), `objectSelector` (the new or old object's
//! labels), then `matchConditions` (CEL, see [`super::policy`]). Requests for
//! admissionregistration objects themselves never go to webhooks.
//! Mutating webhooks run one after another in name order, re-run once with
//! `reinvocationPolicy: IfNeeded` when a later webhook changed the object; validating webhooks
//! run concurrently.
//!
//! A `service` reference is resolved through the Service's Endpoints (first ready address, port
//! by the Service port's `targetPort`), since gitplane has no cluster IPs; TLS then verifies the
//! certificate for `NAME.NAMESPACE.svc`, as Kubernetes does.

use std::collections::BTreeMap;
use std::time::Duration;

use apimachinery::registry::ResourceInfo;
use apimachinery::selector::LabelSelector;
use apimachinery::status::{Reason, StatusError};
use base64::Engine;
use serde_json::{Value, json};

use crate::state::ApiState;

/// What is being done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// A create.
    Create,
    /// An update or patch.
    Update,
    /// A delete.
    Delete,
}

impl Operation {
    /// `CREATE`, `UPDATE` or `DELETE`, as admission reviews spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }

    fn options_kind(self) -> &'static str {
        match self {
            Operation::Create => "CreateOptions",
            Operation::Update => "UpdateOptions",
            Operation::Delete => "DeleteOptions",
        }
    }
}

/// The user a request is made as, sent to webhooks in `userInfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    /// User name.
    pub username: String,
    /// Groups.
    pub groups: Vec<String>,
}

/// Which kind of webhook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// MutatingWebhookConfiguration: may patch the object.
    Mutating,
    /// ValidatingWebhookConfiguration: may only allow or refuse.
    Validating,
}

impl Phase {
    fn plural(self) -> &'static str {
        match self {
            Phase::Mutating => "mutatingwebhookconfigurations",
            Phase::Validating => "validatingwebhookconfigurations",
        }
    }
}

/// A request as admission sees it.
pub struct Attributes<'a> {
    /// The resource.
    pub info: &'a ResourceInfo,
    /// What is being done.
    pub operation: Operation,
    /// `status`, `scale`, … or none.
    pub subresource: Option<&'a str>,
    /// The namespace, for namespaced resources.
    pub namespace: Option<&'a str>,
    /// The object's name.
    pub name: &'a str,
    /// Whether this is a dry run.
    pub dry_run: bool,
    /// Who asks.
    pub user: UserInfo,
}

/// The webhooks of one phase, in the order of their configurations' names.
fn webhooks(state: &ApiState, phase: Phase) -> Vec<Value> {
    let prefix = format!("/registry/admissionregistration.k8s.io/{}/", phase.plural());
    let (snapshot, _) = state.cache().list(&prefix, None, 0, |_| true);
    let mut out = Vec::new();
    for cfg in &snapshot.objects {
        let hooks = cfg.object.get("webhooks").and_then(Value::as_array);
        out.extend(hooks.into_iter().flatten().cloned());
    }
    out
}

fn strs(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Whether one rule matches the request.
pub fn rule_matches(rule: &Value, attrs: &Attributes<'_>) -> bool {
    let has = |field: &str, value: &str| {
        strs(rule.get(field))
            .iter()
            .any(|x| *x == "*" || *x == value)
    };
    if !has("operations", attrs.operation.as_str())
        || !has("apiGroups", &attrs.info.group)
        || !has("apiVersions", &attrs.info.version)
    {
        return false;
    }
    let resource_ok = strs(rule.get("resources")).iter().any(|r| {
        let (res, sub) = match r.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (*r, None),
        };
        let res_ok = res == "*" || res == attrs.info.plural;
        let sub_ok = match (sub, attrs.subresource) {
            (None, None) => true,
            (Some("*"), _) => true,
            (Some(s), Some(want)) => s == want,
            _ => false,
        };
        res_ok && sub_ok
    });
    let scope = rule.get("scope").and_then(Value::as_str).unwrap_or("*");
    let scope_ok = match scope {
        "Cluster" => !attrs.info.namespaced,
        "Namespaced" => attrs.info.namespaced,
        _ => true,
    };
    resource_ok && scope_ok
}

pub(super) fn labels_of(obj: Option<&Value>) -> BTreeMap<String, String> {
    obj.and_then(|o| o.pointer("/metadata/labels"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn selector(v: Option<&Value>) -> Option<LabelSelector> {
    match v {
        None | Some(Value::Null) => Some(LabelSelector::everything()),
        Some(v) => {
            let s: apimachinery::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector =
                serde_json::from_value(v.clone()).ok()?;
            LabelSelector::from_metav1(&s).ok()
        }
    }
}

/// Whether a webhook applies to the request (rules and selectors).
pub(super) fn applies(
    state: &ApiState,
    hook: &Value,
    attrs: &Attributes<'_>,
    old: Option<&Value>,
    new: Option<&Value>,
) -> bool {
    let rules = hook.get("rules").and_then(Value::as_array);
    if !rules.is_some_and(|r| r.iter().any(|r| rule_matches(r, attrs))) {
        return false;
    }
    let Some(objects) = selector(hook.get("objectSelector")) else {
        return false;
    };
    let selects = |o: Option<&Value>| o.is_some_and(|o| objects.matches(&labels_of(Some(o))));
    if !objects.is_everything() && !selects(new) && !selects(old) {
        return false;
    }
    let Some(namespaces) = selector(hook.get("namespaceSelector")) else {
        return false;
    };
    if namespaces.is_everything() {
        return true;
    }
    if (attrs.info.group.as_str(), attrs.info.kind.as_str()) == ("", "Namespace") {
        return namespaces.matches(&labels_of(new.or(old)));
    }
    match attrs.namespace {
        None => true,
        Some(ns) => {
            let key = format!("/registry/core/namespaces/{ns}");
            let labels = state
                .cache()
                .get(&key)
                .map(|n| labels_of(Some(&n.object)))
                .unwrap_or_default();
            namespaces.matches(&labels)
        }
    }
}

/// Whether a webhook's `matchConditions` (CEL over `object`, `oldObject` and `request`) all
/// hold. One that fails to evaluate refuses the request under `failurePolicy: Fail` (the
/// default) and skips the webhook under `Ignore`.
fn match_conditions(
    hook: &Value,
    attrs: &Attributes<'_>,
    old: Option<&Value>,
    obj: Option<&Value>,
) -> Result<bool, StatusError> {
    let Some(conditions) = hook.get("matchConditions") else {
        return Ok(true);
    };
    let request = super::policy::request(attrs);
    let activation = apimachinery::cel::Activation::new()
        .bind("object", obj)
        .bind("oldObject", old)
        .bind("request", Some(&request));
    match super::policy::match_conditions(
        Some(conditions),
        &activation,
        super::policy::WEBHOOK_VARIABLES,
    ) {
        Ok(matched) => Ok(matched),
        Err(_) if hook.get("failurePolicy").and_then(Value::as_str) == Some("Ignore") => Ok(false),
        Err(e) => Err(StatusError::internal(format!(
            "failed calling webhook \"{}\": {e}",
            hook_name(hook)
        ))),
    }
}

/// The webhooks of `phase` that match the request (none for the admission kinds themselves),
/// refused on a dry run by a webhook with side effects.
fn matching(
    state: &ApiState,
    phase: Phase,
    attrs: &Attributes<'_>,
    old: Option<&Value>,
    obj: Option<&Value>,
) -> Result<Vec<Value>, StatusError> {
    if attrs.info.group == "admissionregistration.k8s.io" {
        return Ok(Vec::new());
    }
    let mut hooks = Vec::new();
    for h in webhooks(state, phase) {
        if applies(state, &h, attrs, old, obj) && match_conditions(&h, attrs, old, obj)? {
            hooks.push(h);
        }
    }
    for h in &hooks {
        let effects = h
            .get("sideEffects")
            .and_then(Value::as_str)
            .unwrap_or("Unknown");
        if attrs.dry_run && !matches!(effects, "None" | "NoneOnDryRun") {
            return Err(StatusError::bad_request(format!(
                "admission webhook \"{}\" does not support dry run",
                hook_name(h)
            )));
        }
    }
    Ok(hooks)
}

/// Runs the mutating webhooks that match the request. On create and update `obj` is patched in
/// place; the answer says whether a patch changed it. Warnings from webhooks are appended to
/// `warnings`.
pub async fn mutate(
    state: &ApiState,
    attrs: &Attributes<'_>,
    old: Option<&Value>,
    mut obj: Option<&mut Value>,
    warnings: &mut Vec<String>,
) -> Result<bool, StatusError> {
    let hooks = matching(state, Phase::Mutating, attrs, old, obj.as_deref())?;
    // `ran[i]`: the change count after webhook i last ran; a reinvocation is needed when
    // something changed the object after it.
    let mut changes = 0usize;
    let mut ran = vec![0usize; hooks.len()];
    for (i, h) in hooks.iter().enumerate() {
        if mutate_once(state, h, attrs, old, obj.as_deref_mut(), warnings).await? {
            changes += 1;
        }
        ran[i] = changes;
    }
    let mut changed = changes > 0;
    for (i, h) in hooks.iter().enumerate() {
        let policy = h.get("reinvocationPolicy").and_then(Value::as_str);
        if policy == Some("IfNeeded") && ran[i] < changes {
            changed |= mutate_once(state, h, attrs, old, obj.as_deref_mut(), warnings).await?;
        }
    }
    Ok(changed)
}

/// Runs the validating webhooks that match the request, all at once. Warnings from webhooks are
/// appended to `warnings`.
pub async fn validate(
    state: &ApiState,
    attrs: &Attributes<'_>,
    old: Option<&Value>,
    obj: Option<&Value>,
    warnings: &mut Vec<String>,
) -> Result<(), StatusError> {
    let hooks = matching(state, Phase::Validating, attrs, old, obj)?;
    let calls = hooks.iter().map(|h| call(state, h, attrs, old, obj));
    for result in futures::future::join_all(calls).await {
        let outcome = result?;
        warnings.extend(outcome.warnings);
    }
    Ok(())
}

async fn mutate_once(
    state: &ApiState,
    hook: &Value,
    attrs: &Attributes<'_>,
    old: Option<&Value>,
    obj: Option<&mut Value>,
    warnings: &mut Vec<String>,
) -> Result<bool, StatusError> {
    let outcome = call(state, hook, attrs, old, obj.as_deref()).await?;
    warnings.extend(outcome.warnings);
    let (Some(patch), Some(obj)) = (outcome.patch, obj) else {
        return Ok(false);
    };
    let patched = apimachinery::patch::json_patch(obj, &patch).map_err(|e| {
        StatusError::internal(format!(
            "admission webhook \"{}\" returned a patch that cannot be applied: {e}",
            hook_name(hook)
        ))
    })?;
    let changed = patched != *obj;
    *obj = patched;
    Ok(changed)
}

fn hook_name(hook: &Value) -> &str {
    hook.get("name").and_then(Value::as_str).unwrap_or("")
}

/// What a webhook answered when it allowed the request.
struct Outcome {
    patch: Option<Value>,
    warnings: Vec<String>,
}

/// Calls one webhook, applying its failure policy to call failures.
async fn call(
    state: &ApiState,
    hook: &Value,
    attrs: &Attributes<'_>,
    old: Option<&Value>,
    obj: Option<&Value>,
) -> Result<Outcome, StatusError> {
    let name = hook_name(hook);
    match call_inner(state, hook, attrs, old, obj).await {
        Ok(Answer::Allowed(o)) => Ok(o),
        Ok(Answer::Denied(e)) => Err(e),
        Err(msg) => {
            let policy = hook
                .get("failurePolicy")
                .and_then(Value::as_str)
                .unwrap_or("Fail");
            if policy == "Ignore" {
                tracing::warn!(webhook = name, error = %msg, "failed calling webhook; ignored (failurePolicy Ignore)");
                Ok(Outcome {
                    patch: None,
                    warnings: Vec::new(),
                })
            } else {
                Err(StatusError::internal(format!(
                    "Internal error occurred: failed calling webhook \"{name}\": {msg}"
                )))
            }
        }
    }
}

enum Answer {
    Allowed(Outcome),
    Denied(StatusError),
}

fn review(attrs: &Attributes<'_>, uid: &str, old: Option<&Value>, obj: Option<&Value>) -> Value {
    let info = attrs.info;
    let kind = json!({"group": info.group, "version": info.version, "kind": info.kind});
    let resource = json!({"group": info.group, "version": info.version, "resource": info.plural});
    let mut request = json!({
        "uid": uid,
        "kind": kind,
        "resource": resource,
        "requestKind": kind,
        "requestResource": resource,
        "name": attrs.name,
        "operation": attrs.operation.as_str(),
        "userInfo": {"username": attrs.user.username, "groups": attrs.user.groups},
        "object": obj.cloned().unwrap_or(Value::Null),
        "oldObject": old.cloned().unwrap_or(Value::Null),
        "dryRun": attrs.dry_run,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": attrs.operation.options_kind()},
    });
    if let Some(sub) = attrs.subresource {
        request["subResource"] = json!(sub);
    }
    if let Some(ns) = attrs.namespace {
        request["namespace"] = json!(ns);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
}

async fn call_inner(
    state: &ApiState,
    hook: &Value,
    attrs: &Attributes<'_>,
    old: Option<&Value>,
    obj: Option<&Value>,
) -> Result<Answer, String> {
    let name = hook_name(hook);
    let timeout = hook
        .get("timeoutSeconds")
        .and_then(Value::as_u64)
        .unwrap_or(10)
        .clamp(1, 30);
    let target = endpoint(state, hook)?;
    let uid = uuid::Uuid::new_v4().to_string();
    let body = serde_json::to_vec(&review(attrs, &uid, old, obj)).map_err(|e| e.to_string())?;
    let ca = hook
        .pointer("/clientConfig/caBundle")
        .and_then(Value::as_str)
        .unwrap_or("");
    let url = target.url.clone();
    let response = tokio::time::timeout(
        Duration::from_secs(timeout),
        super::client::post(&target, ca, body),
    )
    .await
    .map_err(|_| format!("failed to call webhook: Post \"{url}\": context deadline exceeded"))?
    .map_err(|e| format!("failed to call webhook: Post \"{url}\": {e}"))?;
    let answer: Value = serde_json::from_slice(&response)
        .map_err(|e| format!("received invalid webhook response: {e}"))?;
    let Some(resp) = answer.get("response") else {
        return Err("received invalid webhook response: response is missing".into());
    };
    if resp.get("uid").and_then(Value::as_str) != Some(uid.as_str()) {
        return Err(format!(
            "expected response.uid=\"{uid}\", got \"{}\"",
            resp.get("uid").and_then(Value::as_str).unwrap_or("")
        ));
    }
    let warnings = strs(resp.get("warnings"))
        .into_iter()
        .map(str::to_string)
        .collect();
    if resp.get("allowed") != Some(&Value::Bool(true)) {
        return Ok(Answer::Denied(denied(name, resp.get("status"))));
    }
    let patch = match resp.get("patch").and_then(Value::as_str) {
        None => None,
        Some(_) if attrs.operation == Operation::Delete => None,
        Some(p) => {
            if resp.get("patchType").and_then(Value::as_str) != Some("JSONPatch") {
                return Err(
                    "received invalid webhook response: patchType must be JSONPatch".into(),
                );
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(p)
                .map_err(|e| format!("received invalid webhook response: patch: {e}"))?;
            Some(
                serde_json::from_slice(&bytes)
                    .map_err(|e| format!("received invalid webhook response: patch: {e}"))?,
            )
        }
    };
    Ok(Answer::Allowed(Outcome { patch, warnings }))
}

/// The error for a refusal, as Kubernetes' `webhookerrors.ToStatusErr` words it.
fn denied(name: &str, status: Option<&Value>) -> StatusError {
    let s = |f: &str| {
        status
            .and_then(|v| v.get(f))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let by = format!("admission webhook \"{name}\" denied the request");
    let (message, reason) = (s("message"), s("reason"));
    let text = if !message.is_empty() {
        format!("{by}: {message}")
    } else if !reason.is_empty() {
        format!("{by}: {reason}")
    } else {
        format!("{by} without explanation")
    };
    let code = status
        .and_then(|v| v.get("code"))
        .and_then(Value::as_u64)
        .unwrap_or(400);
    let reason = match code {
        401 => Reason::Unauthorized,
        403 => Reason::Forbidden,
        404 => Reason::NotFound,
        409 => Reason::Conflict,
        422 => Reason::Invalid,
        429 => Reason::TooManyRequests,
        500..=599 => Reason::InternalError,
        _ => Reason::BadRequest,
    };
    StatusError::new(reason, text)
}

/// Where to send a webhook's request.
pub struct Target {
    /// The URL as Kubernetes would name it (for messages and the HTTP request line).
    pub url: String,
    /// Host and port to connect to.
    pub connect: String,
    /// The name the server's certificate must have.
    pub server_name: String,
    /// Path and query.
    pub path: String,
}

fn endpoint(state: &ApiState, hook: &Value) -> Result<Target, String> {
    let cc = hook.get("clientConfig").cloned().unwrap_or(Value::Null);
    if let Some(url) = cc.get("url").and_then(Value::as_str) {
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| format!("webhook URL {url:?} is not https"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, rest) = v6.split_once(']').unwrap_or((v6, ""));
            (h, rest.strip_prefix(':').unwrap_or("443"))
        } else {
            authority.rsplit_once(':').unwrap_or((authority, "443"))
        };
        let connect = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        return Ok(Target {
            url: url.to_string(),
            connect,
            server_name: host.to_string(),
            path: path.to_string(),
        });
    }
    let Some(svc) = cc.get("service") else {
        return Err("webhook has neither clientConfig.url nor clientConfig.service".into());
    };
    let s = |f: &str| svc.get(f).and_then(Value::as_str).unwrap_or("").to_string();
    let (ns, name, path) = (s("namespace"), s("name"), s("path"));
    let port = svc.get("port").and_then(Value::as_i64).unwrap_or(443);
    let path = if path.is_empty() {
        "/".to_string()
    } else {
        path
    };
    let url = format!("https://{name}.{ns}.svc:{port}{path}");
    let service = state
        .cache()
        .get(&format!("/registry/core/services/{ns}/{name}"))
        .ok_or_else(|| format!("service \"{name}\" not found in namespace \"{ns}\""))?;
    let sp = service
        .object
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .and_then(|ps| {
            ps.iter()
                .find(|p| p.get("port").and_then(Value::as_i64) == Some(port))
                .cloned()
        })
        .ok_or_else(|| format!("service \"{ns}/{name}\" has no port {port}"))?;
    let endpoints = state
        .cache()
        .get(&format!("/registry/core/endpoints/{ns}/{name}"))
        .ok_or_else(|| format!("service \"{ns}/{name}\" has no endpoints"))?;
    let port_name = sp.get("name").and_then(Value::as_str);
    let target_port = sp.get("targetPort").cloned().unwrap_or(json!(port));
    for subset in endpoints
        .object
        .get("subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let ip = subset.pointer("/addresses/0/ip").and_then(Value::as_str);
        let ports = subset.get("ports").and_then(Value::as_array);
        let ep_port = ports.into_iter().flatten().find_map(|p| {
            let n = p.get("port").and_then(Value::as_i64)?;
            let named = p.get("name").and_then(Value::as_str);
            let ok = (port_name.is_some() && named == port_name)
                || target_port.as_i64() == Some(n)
                || ports.is_some_and(|ps| ps.len() == 1);
            ok.then_some(n)
        });
        if let (Some(ip), Some(p)) = (ip, ep_port) {
            return Ok(Target {
                url,
                connect: format!("{ip}:{p}"),
                server_name: format!("{name}.{ns}.svc"),
                path,
            });
        }
    }
    Err(format!("service \"{ns}/{name}\" has no ready endpoint"))
}
