//! Escalation prevention: a Role or ClusterRole may only be written with rules its author holds
//! (unless the author may `escalate` it), and a binding only to a role whose rules the author
//! holds (unless the author may `bind` it), as Kubernetes' RBAC storage enforces.

use apimachinery::status::{Reason, StatusError};
use serde_json::Value;

use super::{Attributes, Authorizer, Mode, ResourceAttributes, Rule, role_rules, rules_of};
use crate::authn::{MASTERS, UserInfo};
use crate::state::ApiState;

const GROUP: &str = "rbac.authorization.k8s.io";

/// The rules of `wanted` not covered by `held`, each broken down to one verb, group, resource
/// and name (or one verb and URL), as Kubernetes' `ConfirmNoEscalation` compares them.
pub fn uncovered(held: &[Rule], wanted: &[Rule]) -> Vec<Rule> {
    let mut missing = Vec::new();
    let one = |v: &str| vec![v.to_string()];
    for w in wanted {
        for verb in &w.verbs {
            for url in &w.non_resource_urls {
                let a = Attributes::path(verb, url);
                if !held.iter().any(|h| h.allows(&a)) {
                    missing.push(Rule {
                        verbs: one(verb),
                        non_resource_urls: one(url),
                        ..Default::default()
                    });
                }
            }
            for group in &w.api_groups {
                for resource in &w.resources {
                    let (res, sub) = resource.split_once('/').unwrap_or((resource, ""));
                    let names: Vec<&str> = if w.resource_names.is_empty() {
                        vec![""]
                    } else {
                        w.resource_names.iter().map(String::as_str).collect()
                    };
                    for name in names {
                        let a = Attributes::resource(
                            verb,
                            ResourceAttributes {
                                group: group.clone(),
                                resource: res.to_string(),
                                subresource: sub.to_string(),
                                namespace: String::new(),
                                name: name.to_string(),
                            },
                        );
                        if !held.iter().any(|h| h.allows(&a)) {
                            missing.push(Rule {
                                verbs: one(verb),
                                api_groups: one(group),
                                resources: one(resource),
                                resource_names: if name.is_empty() { vec![] } else { one(name) },
                                ..Default::default()
                            });
                        }
                    }
                }
            }
        }
    }
    missing
}

fn describe(rules: &[Rule]) -> String {
    rules
        .iter()
        .map(|r| {
            if r.non_resource_urls.is_empty() {
                let names = if r.resource_names.is_empty() {
                    String::new()
                } else {
                    format!(", ResourceNames:{:?}", r.resource_names)
                };
                format!(
                    "{{APIGroups:{:?}, Resources:{:?}{names}, Verbs:{:?}}}",
                    r.api_groups, r.resources, r.verbs
                )
            } else {
                format!(
                    "{{NonResourceURLs:{:?}, Verbs:{:?}}}",
                    r.non_resource_urls, r.verbs
                )
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn forbidden(resource: &str, name: &str, user: &UserInfo, what: String) -> StatusError {
    let mut e = StatusError::new(
        Reason::Forbidden,
        format!(
            "{resource}.{GROUP} {name:?} is forbidden: user {:?} (groups={:?}) is attempting to grant RBAC permissions not currently held:\n{what}",
            user.name, user.groups
        ),
    );
    let d = e.details_mut();
    d.group = Some(GROUP.into());
    d.kind = Some(resource.into());
    d.name = Some(name.into());
    e
}

fn may(
    state: &ApiState,
    authz: &Authorizer,
    user: &UserInfo,
    verb: &str,
    resource: &str,
    namespace: &str,
    name: &str,
) -> bool {
    authz.allows(
        state,
        user,
        &Attributes::resource(
            verb,
            ResourceAttributes {
                group: GROUP.into(),
                resource: resource.into(),
                subresource: String::new(),
                namespace: namespace.into(),
                name: name.into(),
            },
        ),
    )
}

/// Refuses the write of `object` (a role or binding in `namespace`) by `user` when it would grant
/// permissions the user does not hold.
pub fn check(
    state: &ApiState,
    authz: &Authorizer,
    user: &UserInfo,
    resource: &str,
    namespace: &str,
    object: &Value,
) -> Result<(), StatusError> {
    if authz.mode == Mode::AlwaysAllow || user.in_group(MASTERS) {
        return Ok(());
    }
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    match resource {
        "roles" | "clusterroles" => {
            if may(state, authz, user, "escalate", resource, namespace, name) {
                return Ok(());
            }
            if object.get("aggregationRule").is_some_and(|r| !r.is_null()) {
                let mut e = forbidden(resource, name, user, String::new());
                e.message = format!(
                    "{resource}.{GROUP} {name:?} is forbidden: must have cluster-admin privileges to use the aggregationRule"
                );
                return Err(e);
            }
            let held = authz.rules_for(state, user, namespace);
            let missing = uncovered(&held, &rules_of(object));
            if missing.is_empty() {
                Ok(())
            } else {
                Err(forbidden(resource, name, user, describe(&missing)))
            }
        }
        "rolebindings" | "clusterrolebindings" => {
            let role_ref = object.get("roleRef").cloned().unwrap_or(Value::Null);
            let kind = role_ref.get("kind").and_then(Value::as_str).unwrap_or("");
            let role = role_ref.get("name").and_then(Value::as_str).unwrap_or("");
            let (role_resource, role_ns) = match kind {
                "Role" => ("roles", namespace),
                _ => ("clusterroles", ""),
            };
            if may(state, authz, user, "bind", role_resource, role_ns, role)
                || (!namespace.is_empty()
                    && may(state, authz, user, "bind", role_resource, namespace, role))
            {
                return Ok(());
            }
            let held = authz.rules_for(state, user, namespace);
            let missing = uncovered(&held, &role_rules(state, &role_ref, namespace));
            if missing.is_empty() {
                Ok(())
            } else {
                Err(forbidden(resource, name, user, describe(&missing)))
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], resources: &[&str]) -> Rule {
        Rule {
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            api_groups: vec![String::new()],
            resources: resources.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn only_rules_not_held_are_reported() {
        let held = vec![rule(&["get", "list"], &["pods", "configmaps"])];
        assert!(uncovered(&held, &[rule(&["get"], &["pods"])]).is_empty());
        assert_eq!(
            uncovered(&held, &[rule(&["get", "delete"], &["pods"])]),
            vec![rule(&["delete"], &["pods"])]
        );
        assert_eq!(
            uncovered(&held, &[rule(&["*"], &["pods"])]),
            vec![rule(&["*"], &["pods"])],
            "a wildcard is held only through a wildcard"
        );
        assert!(uncovered(&[rule(&["*"], &["*"])], &[rule(&["get"], &["pods/log"])]).is_empty());
    }
}
