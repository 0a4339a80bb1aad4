//! Access reviews: SelfSubjectAccessReview (`kubectl auth can-i`), SelfSubjectRulesReview
//! (`kubectl auth can-i --list`) and SubjectAccessReview (for whoever may create them).

use apimachinery::status::StatusError;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{Attributes, Authorizer, ResourceAttributes, Rule};
use crate::authn::UserInfo;
use crate::response::{ApiResult, json};
use crate::state::ApiState;

fn s(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

fn attributes(spec: &Value) -> Result<Attributes, StatusError> {
    if let Some(r) = spec.get("resourceAttributes").filter(|r| r.is_object()) {
        let verb = s(r, "verb");
        return Ok(Attributes::resource(
            if verb.is_empty() { "*" } else { &verb },
            ResourceAttributes {
                group: s(r, "group"),
                resource: s(r, "resource"),
                subresource: s(r, "subresource"),
                namespace: s(r, "namespace"),
                name: s(r, "name"),
            },
        ));
    }
    if let Some(n) = spec.get("nonResourceAttributes").filter(|r| r.is_object()) {
        return Ok(Attributes::path(&s(n, "verb"), &s(n, "path")));
    }
    Err(StatusError::bad_request(
        "spec: Invalid value: exactly one of nonResourceAttributes or resourceAttributes must be specified",
    ))
}

fn answer(mut review: Value, kind: &str, allowed: bool, reason: &str) -> ApiResult {
    review["apiVersion"] = "authorization.k8s.io/v1".into();
    review["kind"] = kind.into();
    let mut status = json!({"allowed": allowed});
    if !reason.is_empty() {
        status["reason"] = reason.into();
    }
    review["status"] = status;
    Ok(json(StatusCode::CREATED, &review))
}

/// `POST .../selfsubjectaccessreviews`: may the caller do what the spec says?
pub fn self_subject_access_review(
    state: &ApiState,
    authz: &Authorizer,
    user: &UserInfo,
    body: Value,
) -> ApiResult {
    let a = attributes(body.get("spec").unwrap_or(&Value::Null))?;
    let allowed = authz.allows(state, user, &a);
    let reason = if allowed { "allowed by RBAC" } else { "" };
    answer(body, "SelfSubjectAccessReview", allowed, reason)
}

/// `POST .../subjectaccessreviews`: may the user in the spec do what it says?
pub fn subject_access_review(state: &ApiState, authz: &Authorizer, body: Value) -> ApiResult {
    let spec = body.get("spec").cloned().unwrap_or(Value::Null);
    let a = attributes(&spec)?;
    let user = UserInfo {
        name: s(&spec, "user"),
        uid: s(&spec, "uid"),
        groups: spec
            .get("groups")
            .and_then(Value::as_array)
            .map(|g| {
                g.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
        ..Default::default()
    };
    if user.name.is_empty() && user.groups.is_empty() {
        return Err(StatusError::bad_request(
            "spec.user: Invalid value: at least one of user or group must be specified",
        ));
    }
    let allowed = authz.allows(state, &user, &a);
    answer(body, "SubjectAccessReview", allowed, "")
}

/// `POST .../selfsubjectrulesreviews`: every rule that applies to the caller in a namespace.
pub fn self_subject_rules_review(
    state: &ApiState,
    authz: &Authorizer,
    user: &UserInfo,
    mut body: Value,
) -> ApiResult {
    let namespace = body
        .pointer("/spec/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let rules: Vec<Rule> = if authz.mode == super::Mode::AlwaysAllow {
        vec![
            Rule {
                verbs: vec!["*".into()],
                api_groups: vec!["*".into()],
                resources: vec!["*".into()],
                ..Default::default()
            },
            Rule {
                verbs: vec!["*".into()],
                non_resource_urls: vec!["*".into()],
                ..Default::default()
            },
        ]
    } else {
        authz.rules_for(state, user, namespace)
    };
    let (mut resource_rules, mut non_resource_rules) = (Vec::new(), Vec::new());
    for r in rules {
        if r.non_resource_urls.is_empty() {
            resource_rules.push(json!({
                "verbs": r.verbs,
                "apiGroups": r.api_groups,
                "resources": r.resources,
                "resourceNames": r.resource_names,
            }));
        } else {
            non_resource_rules
                .push(json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}));
        }
    }
    body["apiVersion"] = "authorization.k8s.io/v1".into();
    body["kind"] = "SelfSubjectRulesReview".into();
    body["status"] = json!({
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": false,
    });
    Ok(json(StatusCode::CREATED, &body))
}
