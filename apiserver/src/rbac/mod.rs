//! Authorization: RBAC with Kubernetes' semantics (additive, default deny), or `AlwaysAllow`.
//!
//! Roles and bindings are read from the watch cache on each request: the ClusterRoleBindings
//! whose subjects match the user, and the RoleBindings of the request's namespace; a RoleBinding
//! to a ClusterRole grants it in that namespace only. Members of `system:masters` are allowed
//! everything without a look-up (Kubernetes binds them to cluster-admin; the short cut keeps the
//! administrator's and the benchmarks' requests free of RBAC cost).
//! - [`bootstrap`]: the roles and bindings created at start.
//! - [`aggregate`]: the ClusterRole aggregation controller.
//! - [`escalation`]: no granting of permissions one does not hold.
//! - [`review`]: SelfSubjectAccessReview, SelfSubjectRulesReview, SubjectAccessReview.

pub mod aggregate;
pub mod bootstrap;
pub mod escalation;
pub mod review;

use std::sync::Arc;

use apimachinery::status::{Reason, StatusError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::authn::{MASTERS, UserInfo};
use crate::request::{Target, parse_path};
use crate::state::ApiState;
use crate::watch_cache::CachedObject;

/// The storage prefix of the RBAC group.
const PREFIX: &str = "/registry/rbac.authorization.k8s.io";

/// `--authorization-mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// Everything is allowed to everyone authenticated (or anonymous).
    AlwaysAllow,
    /// Kubernetes RBAC.
    #[default]
    Rbac,
}

/// What a request asks to do on a resource.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceAttributes {
    /// API group (empty for core).
    pub group: String,
    /// Plural resource.
    pub resource: String,
    /// Subresource, or empty.
    pub subresource: String,
    /// Namespace, or empty for cluster scope.
    pub namespace: String,
    /// Object name, or empty.
    pub name: String,
}

/// What a request asks to do: a verb on a resource, or on a non-resource path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attributes {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`, or
    /// another verb (`impersonate`, `bind`, `escalate`); for paths the lowercase HTTP method.
    pub verb: String,
    /// The resource, for resource requests.
    pub resource: Option<ResourceAttributes>,
    /// The path, for non-resource requests.
    pub path: String,
}

impl Attributes {
    /// The attributes of an HTTP request, as Kubernetes' `RequestInfo` derives them.
    pub fn from_request(method: &str, path: &str, query: Option<&str>) -> Attributes {
        let params = crate::request::Params::parse(query);
        match parse_path(path) {
            Some(Target::Resource(r)) => {
                let watch = r.legacy_watch || params.flag("watch");
                let verb = match (method, r.name.is_some()) {
                    ("GET" | "HEAD", _) if watch => "watch",
                    ("GET" | "HEAD", true) => "get",
                    ("GET" | "HEAD", false) => "list",
                    ("POST", _) => "create",
                    ("PUT", _) => "update",
                    ("PATCH", _) => "patch",
                    ("DELETE", true) => "delete",
                    ("DELETE", false) => "deletecollection",
                    (m, _) => return Attributes::path(&m.to_ascii_lowercase(), path),
                };
                let namespace = match (&r.namespace, r.resource.as_str(), &r.name) {
                    (Some(ns), _, _) => ns.clone(),
                    (None, "namespaces", Some(name)) => name.clone(),
                    _ => String::new(),
                };
                Attributes {
                    verb: verb.into(),
                    resource: Some(ResourceAttributes {
                        group: r.group,
                        resource: r.resource,
                        subresource: r.subresource.unwrap_or_default(),
                        namespace,
                        name: r.name.unwrap_or_default(),
                    }),
                    path: path.into(),
                }
            }
            _ => {
                let verb = match method {
                    "HEAD" => "get".to_string(),
                    m => m.to_ascii_lowercase(),
                };
                Attributes::path(&verb, path)
            }
        }
    }

    /// A non-resource request.
    pub fn path(verb: &str, path: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            resource: None,
            path: path.into(),
        }
    }

    /// A resource request.
    pub fn resource(verb: &str, r: ResourceAttributes) -> Attributes {
        Attributes {
            verb: verb.into(),
            resource: Some(r),
            path: String::new(),
        }
    }

    /// Whether the request is a read (`get`, `list`, `watch`).
    pub fn is_read_only(&self) -> bool {
        matches!(self.verb.as_str(), "get" | "list" | "watch")
    }

    /// The 403 Kubernetes answers when these attributes are refused to `user`.
    pub fn forbidden(&self, user: &UserInfo) -> StatusError {
        let Some(r) = &self.resource else {
            return StatusError::new(
                Reason::Forbidden,
                format!(
                    "forbidden: User {:?} cannot {} path {:?}",
                    user.name, self.verb, self.path
                ),
            );
        };
        let mut resource = r.resource.clone();
        if !r.subresource.is_empty() {
            resource = format!("{resource}/{}", r.subresource);
        }
        let scope = if r.namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace {:?}", r.namespace)
        };
        let why = format!(
            "User {:?} cannot {} resource {resource:?} in API group {:?} {scope}",
            user.name, self.verb, r.group
        );
        let qualified = if r.group.is_empty() {
            r.resource.clone()
        } else {
            format!("{}.{}", r.resource, r.group)
        };
        let message = if r.name.is_empty() {
            format!("{qualified} is forbidden: {why}")
        } else {
            format!("{qualified} {:?} is forbidden: {why}", r.name)
        };
        let mut e = StatusError::new(Reason::Forbidden, message);
        // Kubernetes omits empty details.
        let d = e.details_mut();
        d.group = Some(r.group.clone()).filter(|g| !g.is_empty());
        d.kind = Some(r.resource.clone());
        d.name = Some(r.name.clone()).filter(|n| !n.is_empty());
        e
    }
}

/// One RBAC rule (`rbac.authorization.k8s.io/v1` PolicyRule).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Verbs.
    #[serde(default)]
    pub verbs: Vec<String>,
    /// API groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    /// Resources (`pods`, `pods/log`, `*`, `*/scale`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// Object names (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
    /// Non-resource URLs (`/healthz`, `/apis/*`).
    #[serde(
        default,
        rename = "nonResourceURLs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub non_resource_urls: Vec<String>,
}

fn has(list: &[String], value: &str) -> bool {
    list.iter().any(|v| v == "*" || v == value)
}

impl Rule {
    /// Whether this rule allows `a`.
    pub fn allows(&self, a: &Attributes) -> bool {
        if !has(&self.verbs, &a.verb) {
            return false;
        }
        match &a.resource {
            None => self.non_resource_urls.iter().any(|u| {
                u == "*"
                    || u == &a.path
                    || u.strip_suffix('*').is_some_and(|p| a.path.starts_with(p))
            }),
            Some(r) => {
                if !has(&self.api_groups, &r.group) {
                    return false;
                }
                let combined = if r.subresource.is_empty() {
                    r.resource.clone()
                } else {
                    format!("{}/{}", r.resource, r.subresource)
                };
                // Kubernetes' ResourceMatches: `*`, the exact `resource/subresource`, or
                // `*/subresource`; `pods/*` matches nothing special.
                let resource_ok = self.resources.iter().any(|res| {
                    res == "*"
                        || *res == combined
                        || (!r.subresource.is_empty()
                            && res.strip_prefix("*/") == Some(r.subresource.as_str()))
                });
                resource_ok
                    && (self.resource_names.is_empty()
                        || (!r.name.is_empty() && self.resource_names.contains(&r.name)))
            }
        }
    }
}

/// The rules of a role object (`rules`), skipping malformed ones.
pub fn rules_of(role: &Value) -> Vec<Rule> {
    role.get("rules")
        .and_then(Value::as_array)
        .map(|rules| {
            rules
                .iter()
                .filter_map(|r| serde_json::from_value(r.clone()).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn subject_matches(subject: &Value, user: &UserInfo, binding_ns: &str) -> bool {
    let s = |k: &str| subject.get(k).and_then(Value::as_str).unwrap_or("");
    match s("kind") {
        "User" => s("name") == user.name,
        "Group" => user.in_group(s("name")),
        "ServiceAccount" => {
            let ns = if s("namespace").is_empty() {
                binding_ns
            } else {
                s("namespace")
            };
            user.name == format!("system:serviceaccount:{ns}:{}", s("name"))
        }
        _ => false,
    }
}

fn binds(binding: &Value, user: &UserInfo, ns: &str) -> bool {
    binding
        .get("subjects")
        .and_then(Value::as_array)
        .is_some_and(|subjects| subjects.iter().any(|s| subject_matches(s, user, ns)))
}

fn objects(state: &ApiState, prefix: &str) -> Vec<Arc<CachedObject>> {
    state.cache().list(prefix, None, 0, |_| true).0.objects
}

/// The rules of the role a binding refers to (empty when it does not exist).
pub fn role_rules(state: &ApiState, role_ref: &Value, namespace: &str) -> Vec<Rule> {
    let kind = role_ref.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = role_ref.get("name").and_then(Value::as_str).unwrap_or("");
    let key = match kind {
        "ClusterRole" => format!("{PREFIX}/clusterroles/{name}"),
        "Role" if !namespace.is_empty() => format!("{PREFIX}/roles/{namespace}/{name}"),
        _ => return Vec::new(),
    };
    state
        .cache()
        .get(&key)
        .map(|r| rules_of(&r.object))
        .unwrap_or_default()
}

/// The authorizer in force.
#[derive(Clone, Copy, Debug, Default)]
pub struct Authorizer {
    /// The mode.
    pub mode: Mode,
}

impl Authorizer {
    /// Every rule that applies to `user` in `namespace` (cluster-wide rules only when `None`).
    pub fn rules_for(&self, state: &ApiState, user: &UserInfo, namespace: &str) -> Vec<Rule> {
        let mut rules = Vec::new();
        for b in objects(state, &format!("{PREFIX}/clusterrolebindings/")) {
            if binds(&b.object, user, "") {
                rules.extend(role_rules(
                    state,
                    b.object.get("roleRef").unwrap_or(&Value::Null),
                    "",
                ));
            }
        }
        if !namespace.is_empty() {
            for b in objects(state, &format!("{PREFIX}/rolebindings/{namespace}/")) {
                if binds(&b.object, user, namespace) {
                    rules.extend(role_rules(
                        state,
                        b.object.get("roleRef").unwrap_or(&Value::Null),
                        namespace,
                    ));
                }
            }
        }
        rules
    }

    /// Whether `user` may do `a`.
    pub fn allows(&self, state: &ApiState, user: &UserInfo, a: &Attributes) -> bool {
        if self.mode == Mode::AlwaysAllow || user.in_group(MASTERS) {
            return true;
        }
        let ns = a.resource.as_ref().map_or("", |r| r.namespace.as_str());
        self.rules_for(state, user, ns).iter().any(|r| r.allows(a))
    }

    /// `Ok` when allowed, the 403 otherwise.
    pub fn check(
        &self,
        state: &ApiState,
        user: &UserInfo,
        a: &Attributes,
    ) -> Result<(), StatusError> {
        if self.allows(state, user, a) {
            Ok(())
        } else {
            Err(a.forbidden(user))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> Rule {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        Rule {
            verbs: v(verbs),
            api_groups: v(groups),
            resources: v(resources),
            resource_names: v(names),
            non_resource_urls: vec![],
        }
    }

    fn attrs(verb: &str, group: &str, resource: &str, sub: &str, name: &str) -> Attributes {
        Attributes::resource(
            verb,
            ResourceAttributes {
                group: group.into(),
                resource: resource.into(),
                subresource: sub.into(),
                namespace: "default".into(),
                name: name.into(),
            },
        )
    }

    fn check(r: &Rule, a: &Attributes, expected: bool) {
        assert_eq!(r.allows(a), expected, "{r:?} on {a:?}");
    }

    #[test]
    fn rules_match_verbs_groups_resources_subresources_and_names() {
        let pods = rule(&["get", "list"], &[""], &["pods"], &[]);
        check(&pods, &attrs("get", "", "pods", "", "p"), true);
        check(&pods, &attrs("delete", "", "pods", "", "p"), false);
        check(&pods, &attrs("get", "apps", "pods", "", "p"), false);
        check(&pods, &attrs("get", "", "pods", "log", "p"), false);
        let logs = rule(&["get"], &[""], &["pods/log"], &[]);
        check(&logs, &attrs("get", "", "pods", "log", "p"), true);
        check(&logs, &attrs("get", "", "pods", "", "p"), false);
        let any_scale = rule(&["*"], &["*"], &["*/scale"], &[]);
        check(
            &any_scale,
            &attrs("update", "apps", "deployments", "scale", "d"),
            true,
        );
        check(
            &any_scale,
            &attrs("update", "apps", "deployments", "", "d"),
            false,
        );
        let not_a_wildcard = rule(&["get"], &[""], &["pods/*"], &[]);
        check(
            &not_a_wildcard,
            &attrs("get", "", "pods", "status", "p"),
            false,
        );
        check(&not_a_wildcard, &attrs("get", "", "pods", "", "p"), false);
        let named = rule(&["get"], &[""], &["configmaps"], &["a"]);
        check(&named, &attrs("get", "", "configmaps", "", "a"), true);
        check(&named, &attrs("get", "", "configmaps", "", "b"), false);
        check(&named, &attrs("list", "", "configmaps", "", ""), false);
        let everything = rule(&["*"], &["*"], &["*"], &[]);
        check(
            &everything,
            &attrs("escalate", "rbac.authorization.k8s.io", "roles", "", "r"),
            true,
        );
        let urls = Rule {
            verbs: vec!["get".into()],
            non_resource_urls: vec!["/healthz".into(), "/apis/*".into()],
            ..Default::default()
        };
        check(&urls, &Attributes::path("get", "/healthz"), true);
        check(&urls, &Attributes::path("get", "/apis/apps/v1"), true);
        check(&urls, &Attributes::path("get", "/api"), false);
        check(&urls, &Attributes::path("post", "/healthz"), false);
        check(&urls, &attrs("get", "", "healthz", "", ""), false);
    }

    #[test]
    fn requests_become_kubernetes_attributes() {
        let a = Attributes::from_request("GET", "/api/v1/namespaces/ns/pods", Some("watch=1"));
        assert_eq!(a.verb, "watch");
        let a = Attributes::from_request("DELETE", "/api/v1/namespaces/ns/pods", None);
        assert_eq!(a.verb, "deletecollection");
        let a = Attributes::from_request("GET", "/api/v1/namespaces/ns", None);
        let r = a.resource.clone().expect("resource");
        assert_eq!(
            (r.resource.as_str(), r.namespace.as_str(), r.name.as_str()),
            ("namespaces", "ns", "ns")
        );
        let a = Attributes::from_request("GET", "/apis/apps/v1", None);
        assert_eq!(a, Attributes::path("get", "/apis/apps/v1"));
    }

    #[test]
    fn denials_are_worded_like_kubernetes() {
        let jane = UserInfo {
            name: "jane".into(),
            ..Default::default()
        };
        let a = Attributes::from_request("GET", "/api/v1/namespaces/default/pods", None);
        assert_eq!(
            a.forbidden(&jane).message,
            "pods is forbidden: User \"jane\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        let a = Attributes::from_request(
            "GET",
            "/apis/apps/v1/namespaces/x/deployments/web/scale",
            None,
        );
        assert_eq!(
            a.forbidden(&jane).message,
            "deployments.apps \"web\" is forbidden: User \"jane\" cannot get resource \"deployments/scale\" in API group \"apps\" in the namespace \"x\""
        );
        let a = Attributes::from_request("GET", "/api/v1/nodes", None);
        assert_eq!(
            a.forbidden(&jane).message,
            "nodes is forbidden: User \"jane\" cannot list resource \"nodes\" in API group \"\" at the cluster scope"
        );
        let a = Attributes::from_request("GET", "/metrics", None);
        assert_eq!(
            a.forbidden(&jane).message,
            "forbidden: User \"jane\" cannot get path \"/metrics\""
        );
    }
}
