//! ValidatingAdmissionPolicy (`admissionregistration.k8s.io/v1`): CEL validations bound to
//! requests by ValidatingAdmissionPolicyBindings, evaluated in the API server as
//! kube-apiserver's ValidatingAdmissionPolicy plugin does, before validating webhooks.
//!
//! For each binding (in name order) whose policy exists: the policy's `matchConstraints` and
//! the binding's `matchResources` (`resourceRules` with `resourceNames`,
//! `excludeResourceRules`, `namespaceSelector`, `objectSelector`) must match; the parameters
//! are found (`paramKind` + `paramRef` by name or selector, in the request's namespace unless
//! `paramRef.namespace` says otherwise; none found: `parameterNotFoundAction` Deny refuses,
//! Allow skips); `matchConditions` must all be true; then `variables` are evaluated in order and
//! every `validations` entry runs with `object`, `oldObject`, `request`, `params`,
//! `namespaceObject` and `variables`. A failed validation acts as the binding's
//! `validationActions` say: Deny refuses the request (403 Forbidden, or the validation's
//! `reason`), Warn adds a `Warning` header, Audit is logged. An expression that errors is a
//! failed validation under `failurePolicy: Fail` (the default) and is ignored under `Ignore`.
//!
//! Not evaluated: `authorizer` (no variable of that name is declared, so an expression using it
//! is an error), and `auditAnnotations` are computed but only logged, since gitplane's audit
//! events carry no annotations yet.

use apimachinery::cel::{self, Activation, CelValue};
use apimachinery::object::ObjectExt;
use apimachinery::registry::GroupVersionKind;
use apimachinery::status::{FieldError, Reason, StatusError};
use serde_json::{Value, json};

use super::webhook::{self, Attributes};
use crate::state::ApiState;

const POLICIES: &str = "/registry/admissionregistration.k8s.io/validatingadmissionpolicies/";
const BINDINGS: &str = "/registry/admissionregistration.k8s.io/validatingadmissionpolicybindings/";

/// The variables a policy's expressions may use.
const VARIABLES: &[&str] = &[
    "object",
    "oldObject",
    "request",
    "params",
    "namespaceObject",
    "variables",
];

/// The variables a webhook's `matchConditions` may use.
pub const WEBHOOK_VARIABLES: &[&str] = &["object", "oldObject", "request"];

/// The `request` variable: the admission request's attributes, as an `AdmissionRequest`.
pub fn request(attrs: &Attributes<'_>) -> Value {
    let info = attrs.info;
    json!({
        "kind": {"group": info.group, "version": info.version, "kind": info.kind},
        "resource": {"group": info.group, "version": info.version, "resource": info.plural},
        "subResource": attrs.subresource.unwrap_or(""),
        "requestKind": {"group": info.group, "version": info.version, "kind": info.kind},
        "requestResource": {"group": info.group, "version": info.version, "resource": info.plural},
        "name": attrs.name,
        "namespace": attrs.namespace.unwrap_or(""),
        "operation": attrs.operation.as_str(),
        "userInfo": {"username": attrs.user.username, "groups": attrs.user.groups},
        "dryRun": attrs.dry_run,
    })
}

/// Evaluates `matchConditions`: `Ok(false)` when one is false, `Err` naming the one that
/// failed to evaluate.
pub fn match_conditions(
    conditions: Option<&Value>,
    activation: &Activation,
    variables: &[&str],
) -> Result<bool, String> {
    for c in conditions.and_then(Value::as_array).into_iter().flatten() {
        let name = c.get("name").and_then(Value::as_str).unwrap_or("");
        let expression = c.get("expression").and_then(Value::as_str).unwrap_or("");
        let result =
            cel::compile(expression, variables).and_then(|p| cel::evaluate_bool(&p, activation));
        match result {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            Err(e) => {
                return Err(format!(
                    "failed to evaluate match condition {name:?}: expression '{expression}' resulted in error: {e}"
                ));
            }
        }
    }
    Ok(true)
}

/// A denial or a warning from one policy.
struct Failure {
    message: String,
    reason: Option<String>,
}

/// Runs the policies bound to the request. `obj` is `None` for deletes. Warnings are
/// appended to `warnings`.
pub fn run(
    state: &ApiState,
    attrs: &Attributes<'_>,
    old: Option<&Value>,
    obj: Option<&Value>,
    warnings: &mut Vec<String>,
) -> Result<(), StatusError> {
    if attrs.info.group == "admissionregistration.k8s.io" {
        return Ok(());
    }
    let (bindings, _) = state.cache().list(BINDINGS, None, 0, |_| true);
    for binding in &bindings.objects {
        let binding = &binding.object;
        let binding_name = binding.name().unwrap_or("");
        let policy_name = binding
            .pointer("/spec/policyName")
            .and_then(Value::as_str)
            .unwrap_or("");
        let Some(policy) = state.cache().get(&format!("{POLICIES}{policy_name}")) else {
            continue;
        };
        let policy = &policy.object;
        if !matches(
            state,
            policy.pointer("/spec/matchConstraints"),
            attrs,
            old,
            obj,
        ) || binding
            .pointer("/spec/matchResources")
            .is_some_and(|m| !matches(state, Some(m), attrs, old, obj))
        {
            continue;
        }
        let fail_closed = policy
            .pointer("/spec/failurePolicy")
            .and_then(Value::as_str)
            != Some("Ignore");
        let actions: Vec<&str> = binding
            .pointer("/spec/validationActions")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let failures = match params(state, attrs, policy, binding) {
            Err(message) => vec![Failure {
                message,
                reason: None,
            }],
            Ok(None) => Vec::new(),
            Ok(Some(params)) => params
                .iter()
                .flat_map(|p| evaluate(state, attrs, policy, old, obj, p.as_ref(), fail_closed))
                .collect(),
        };
        for failure in failures {
            let message = format!(
                "ValidatingAdmissionPolicy '{policy_name}' with binding '{binding_name}' denied request: {}",
                failure.message
            );
            if actions.contains(&"Warn") {
                warnings.push(format!(
                    "Validation failed for ValidatingAdmissionPolicy '{policy_name}' with binding '{binding_name}': {}",
                    failure.message
                ));
            }
            if actions.contains(&"Audit") {
                tracing::info!(policy = policy_name, binding = binding_name, message = %failure.message, "validation failed (Audit)");
            }
            if actions.contains(&"Deny") {
                return Err(denied(attrs, failure.reason.as_deref(), message));
            }
        }
    }
    Ok(())
}

/// The error a Deny answers with: 403 Forbidden by default, the validation's reason otherwise.
fn denied(attrs: &Attributes<'_>, reason: Option<&str>, message: String) -> StatusError {
    let info = attrs.info;
    match reason {
        Some("Invalid") => StatusError::invalid(
            &info.group,
            &info.kind,
            attrs.name,
            vec![FieldError {
                field: String::new(),
                reason: "FieldValueInvalid".into(),
                message,
            }],
        ),
        other => {
            let reason = match other {
                Some("Unauthorized") => Reason::Unauthorized,
                Some("RequestEntityTooLarge") => Reason::RequestEntityTooLarge,
                _ => Reason::Forbidden,
            };
            let mut e = StatusError::new(
                reason,
                format!(
                    "{} \"{}\" is forbidden: {message}",
                    info.qualified(),
                    attrs.name
                ),
            );
            let d = e.details_mut();
            d.group = Some(info.group.clone());
            d.kind = Some(info.plural.clone());
            d.name = Some(attrs.name.to_string());
            e
        }
    }
}

/// Whether `matchConstraints` or `matchResources` select the request.
fn matches(
    state: &ApiState,
    constraints: Option<&Value>,
    attrs: &Attributes<'_>,
    old: Option<&Value>,
    obj: Option<&Value>,
) -> bool {
    let Some(c) = constraints else {
        return false;
    };
    let named = |rules: Option<&Value>| -> Vec<Value> {
        rules
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|r| {
                let names = r.get("resourceNames").and_then(Value::as_array);
                names.is_none_or(|n| {
                    n.is_empty() || n.iter().any(|n| n.as_str() == Some(attrs.name))
                })
            })
            .cloned()
            .collect()
    };
    let excluded = named(c.get("excludeResourceRules"));
    if excluded.iter().any(|r| webhook::rule_matches(r, attrs)) {
        return false;
    }
    let mut rules = named(c.get("resourceRules"));
    if c.get("resourceRules").is_none() {
        // A binding's `matchResources` without rules narrows the policy's by selectors only.
        rules.push(json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}));
    }
    let mut hook = json!({"rules": rules});
    for field in ["namespaceSelector", "objectSelector"] {
        if let Some(s) = c.get(field) {
            hook[field] = s.clone();
        }
    }
    webhook::applies(state, &hook, attrs, old, obj)
}

/// The parameter objects a binding gives its policy: `Ok(None)` to skip the binding, one
/// `None` entry when the policy takes no parameters, `Err` for a denial.
fn params(
    state: &ApiState,
    attrs: &Attributes<'_>,
    policy: &Value,
    binding: &Value,
) -> Result<Option<Vec<Option<Value>>>, String> {
    let Some(kind) = policy.pointer("/spec/paramKind") else {
        return Ok(Some(vec![None]));
    };
    let Some(reference) = binding.pointer("/spec/paramRef") else {
        return Err(
            "failed to configure binding: paramRef is required when paramKind is set".into(),
        );
    };
    let api_version = kind.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind {
        group: group.to_string(),
        version: version.to_string(),
        kind: kind
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    };
    let Some(info) = state.registry().by_kind(&gvk) else {
        return Err(format!(
            "failed to configure policy: paramKind {api_version}, Kind={} is not served",
            gvk.kind
        ));
    };
    let namespace = match reference.get("namespace").and_then(Value::as_str) {
        Some(ns) if !ns.is_empty() => Some(ns),
        _ if info.namespaced => attrs.namespace,
        _ => None,
    };
    if info.namespaced && namespace.is_none() {
        return Err("cannot use a namespaced paramKind without paramRef.namespace for a cluster-scoped request".into());
    }
    let found: Vec<Option<Value>> = match reference.get("name").and_then(Value::as_str) {
        Some(name) if !name.is_empty() => state
            .cache()
            .get(&info.key(namespace, name))
            .map(|o| Some(o.object.clone()))
            .into_iter()
            .collect(),
        _ => {
            let selector = webhook::selector(reference.get("selector"))
                .ok_or("paramRef.selector is not a valid label selector")?;
            let prefix = match namespace {
                Some(ns) if info.namespaced => info.namespace_prefix(ns),
                _ => info.key_prefix(),
            };
            let (list, _) = state.cache().list(&prefix, None, 0, |_| true);
            list.objects
                .iter()
                .filter(|o| selector.matches(&webhook::labels_of(Some(&o.object))))
                .map(|o| Some(o.object.clone()))
                .collect()
        }
    };
    if !found.is_empty() {
        return Ok(Some(found));
    }
    match reference
        .get("parameterNotFoundAction")
        .and_then(Value::as_str)
    {
        Some("Allow") => Ok(None),
        _ => Err("no params found for policy binding with `Deny` parameterNotFoundAction".into()),
    }
}

/// Runs a policy's match conditions, variables and validations with one parameter object.
fn evaluate(
    state: &ApiState,
    attrs: &Attributes<'_>,
    policy: &Value,
    old: Option<&Value>,
    obj: Option<&Value>,
    params: Option<&Value>,
    fail_closed: bool,
) -> Vec<Failure> {
    let error = |message: String| {
        if fail_closed {
            vec![Failure {
                message,
                reason: None,
            }]
        } else {
            tracing::warn!(error = %message, "ValidatingAdmissionPolicy error ignored (failurePolicy Ignore)");
            Vec::new()
        }
    };
    let namespace = attrs.namespace.and_then(|ns| {
        state
            .cache()
            .get(&format!("/registry/core/namespaces/{ns}"))
    });
    let request = request(attrs);
    let mut activation = Activation::new()
        .bind("object", obj)
        .bind("oldObject", old)
        .bind("request", Some(&request))
        .bind("params", params)
        .bind("namespaceObject", namespace.as_ref().map(|n| &n.object));
    match match_conditions(
        policy.pointer("/spec/matchConditions"),
        &activation,
        VARIABLES,
    ) {
        Ok(true) => {}
        Ok(false) => return Vec::new(),
        Err(e) => return error(e),
    }
    let mut variables: Vec<(String, CelValue)> = Vec::new();
    for v in policy
        .pointer("/spec/variables")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let expression = v.get("expression").and_then(Value::as_str).unwrap_or("");
        let scoped = activation_with(&activation, &variables);
        match cel::compile(expression, VARIABLES).and_then(|p| cel::evaluate(&p, &scoped)) {
            Ok(value) => variables.push((name, value)),
            Err(e) => {
                return error(format!(
                    "variable '{name}' expression '{expression}' resulted in error: {e}"
                ));
            }
        }
    }
    activation = activation_with(&activation, &variables);
    let mut failures = Vec::new();
    for v in policy
        .pointer("/spec/validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let expression = v.get("expression").and_then(Value::as_str).unwrap_or("");
        let reason = v.get("reason").and_then(Value::as_str).map(str::to_string);
        match cel::compile(expression, VARIABLES).and_then(|p| cel::evaluate_bool(&p, &activation))
        {
            Ok(true) => {}
            Ok(false) => failures.push(Failure {
                message: message(v, expression, &activation),
                reason,
            }),
            Err(e) => failures.extend(error(format!(
                "expression '{expression}' resulted in error: {e}"
            ))),
        }
    }
    for a in policy
        .pointer("/spec/auditAnnotations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = a.get("key").and_then(Value::as_str).unwrap_or("");
        let expression = a
            .get("valueExpression")
            .and_then(Value::as_str)
            .unwrap_or("");
        if let Ok(value) =
            cel::compile(expression, VARIABLES).and_then(|p| cel::evaluate_string(&p, &activation))
        {
            tracing::info!(
                policy = policy.name().unwrap_or(""),
                key,
                value,
                "audit annotation"
            );
        }
    }
    failures
}

/// `base` with `variables` bound as the `variables` map.
fn activation_with(base: &Activation, variables: &[(String, CelValue)]) -> Activation {
    base.clone()
        .bind_value("variables", cel::map(variables.iter().cloned()))
}

/// A failed validation's message: `messageExpression`'s non-empty result, else `message`,
/// else `failed expression: EXPRESSION`.
fn message(validation: &Value, expression: &str, activation: &Activation) -> String {
    if let Some(m) = validation.get("messageExpression").and_then(Value::as_str)
        && let Ok(s) = cel::compile(m, VARIABLES).and_then(|p| cel::evaluate_string(&p, activation))
        && !s.trim().is_empty()
    {
        return s;
    }
    match validation.get("message").and_then(Value::as_str) {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => format!("failed expression: {expression}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(conditions: Value, expected: Result<bool, &str>) {
        let object = json!({"metadata": {"name": "web", "labels": {"tier": "front"}}});
        let request = json!({"operation": "CREATE", "userInfo": {"username": "jane"}});
        let activation = Activation::new()
            .bind("object", Some(&object))
            .bind("oldObject", None)
            .bind("request", Some(&request));
        let got = match_conditions(Some(&conditions), &activation, WEBHOOK_VARIABLES);
        match expected {
            Ok(b) => assert_eq!(got, Ok(b), "{conditions}"),
            Err(text) => {
                let err = got.expect_err("an error");
                assert!(err.contains(text), "{err}");
            }
        }
    }

    #[test]
    fn match_conditions_all_hold_or_one_is_false_or_one_errs() {
        check(json!([]), Ok(true));
        check(
            json!([
                {"name": "front", "expression": "object.metadata.labels.tier == 'front'"},
                {"name": "jane", "expression": "request.userInfo.username == 'jane'"},
            ]),
            Ok(true),
        );
        check(
            json!([
                {"name": "create", "expression": "request.operation == 'CREATE'"},
                {"name": "update", "expression": "oldObject != null"},
            ]),
            Ok(false),
        );
        check(
            json!([{"name": "bad", "expression": "object.spec.replicas > 1"}]),
            Err("failed to evaluate match condition \"bad\""),
        );
        check(
            json!([{"name": "params", "expression": "params.x == 1"}]),
            Err("undeclared reference to 'params'"),
        );
    }
}
