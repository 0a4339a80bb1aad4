//! Impersonation: the `Impersonate-User`, `Impersonate-Group` and `Impersonate-Uid` headers,
//! honoured when the caller may `impersonate` each of them (users, groups,
//! serviceaccounts, and `uids` in `authentication.k8s.io`).

use apimachinery::status::StatusError;
use axum::http::HeaderMap;

use super::{ANONYMOUS, AUTHENTICATED, UNAUTHENTICATED, UserInfo};
use crate::rbac::{Attributes, Authorizer, ResourceAttributes};
use crate::state::ApiState;

fn values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

fn impersonate(group: &str, resource: &str, namespace: &str, name: &str) -> Attributes {
    Attributes::resource(
        "impersonate",
        ResourceAttributes {
            group: group.into(),
            resource: resource.into(),
            subresource: String::new(),
            namespace: namespace.into(),
            name: name.into(),
        },
    )
}

/// The user a request acts as: `user` itself, or the one its impersonation headers name when
/// `user` may impersonate it (403 otherwise).
pub fn apply(
    state: &ApiState,
    authz: &Authorizer,
    user: UserInfo,
    headers: &HeaderMap,
) -> Result<UserInfo, StatusError> {
    let names = values(headers, "impersonate-user");
    let groups = values(headers, "impersonate-group");
    let uids = values(headers, "impersonate-uid");
    let Some(name) = names.first() else {
        if groups.is_empty() && uids.is_empty() {
            return Ok(user);
        }
        return Err(StatusError::bad_request(
            "requested impersonation of groups or uid without impersonating a user",
        ));
    };
    let mut checks = Vec::new();
    let mut target = UserInfo {
        name: name.clone(),
        ..Default::default()
    };
    match name
        .strip_prefix("system:serviceaccount:")
        .and_then(|r| r.split_once(':'))
    {
        Some((ns, sa)) => {
            checks.push(impersonate("", "serviceaccounts", ns, sa));
            target.groups = vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
            ];
        }
        None => checks.push(impersonate("", "users", "", name)),
    }
    for g in &groups {
        checks.push(impersonate("", "groups", "", g));
        if !target.groups.contains(g) {
            target.groups.push(g.clone());
        }
    }
    if let Some(uid) = uids.first() {
        checks.push(impersonate("authentication.k8s.io", "uids", "", uid));
        target.uid = uid.clone();
    }
    for a in &checks {
        authz.check(state, &user, a)?;
    }
    let group = if target.name == ANONYMOUS {
        UNAUTHENTICATED
    } else {
        AUTHENTICATED
    };
    if !target.in_group(group) {
        target.groups.push(group.into());
    }
    Ok(target)
}
