//! The requests served by the server rather than by storage: the access reviews
//! (SelfSubjectAccessReview, SelfSubjectRulesReview, SubjectAccessReview,
//! LocalSubjectAccessReview, answered by [`crate::rbac::review`]), `whoami` (SelfSubjectReview)
//! and TokenRequest ([`super::token`]).

use std::sync::Arc;

use apimachinery::registry::ResourceInfo;
use axum::http::{HeaderMap, Method, StatusCode};
use bytes::Bytes;
use serde_json::json;

use super::ApiRequest;
use crate::authn::UserInfo;
use crate::request::{Params, ResourcePath};
use crate::response::ApiResult;
use crate::state::ApiState;

/// The requests served here rather than by the storage verbs: access reviews, `whoami`
/// (SelfSubjectReview) and TokenRequest. `None`: not one of them.
pub async fn special(
    state: &Arc<ApiState>,
    user: &UserInfo,
    method: &Method,
    headers: &HeaderMap,
    path: &ResourcePath,
    params: &Params,
    body: &Bytes,
) -> Option<ApiResult> {
    if *method != Method::POST {
        return None;
    }
    let kind = match (
        path.group.as_str(),
        path.resource.as_str(),
        path.subresource.as_deref(),
    ) {
        ("authorization.k8s.io", "selfsubjectaccessreviews", None) => "SelfSubjectAccessReview",
        ("authorization.k8s.io", "selfsubjectrulesreviews", None) => "SelfSubjectRulesReview",
        ("authorization.k8s.io", "subjectaccessreviews", None) => "SubjectAccessReview",
        ("authorization.k8s.io", "localsubjectaccessreviews", None) => "LocalSubjectAccessReview",
        ("authentication.k8s.io", "selfsubjectreviews", None) => "SelfSubjectReview",
        ("authentication.k8s.io", "tokenreviews", None) => "TokenReview",
        ("", "serviceaccounts", Some("token")) => "TokenRequest",
        _ => return None,
    };
    let group = if kind == "TokenRequest" {
        "authentication.k8s.io"
    } else {
        path.group.as_str()
    };
    let req = ApiRequest::new(
        method.clone(),
        path.clone(),
        Arc::new(ResourceInfo::new(
            group,
            &path.version,
            kind,
            &path.resource,
            path.namespace.is_some(),
        )),
        params.clone(),
        headers.clone(),
        body.clone(),
        user.clone(),
    );
    let body = match req.json_body() {
        Ok(b) => b,
        Err(e) => return Some(Err(e)),
    };
    let security = state.security();
    let authz = &security.authz;
    Some(match kind {
        "SelfSubjectAccessReview" => {
            crate::rbac::review::self_subject_access_review(state, authz, user, body)
        }
        "SelfSubjectRulesReview" => {
            crate::rbac::review::self_subject_rules_review(state, authz, user, body)
        }
        "SubjectAccessReview" => crate::rbac::review::subject_access_review(state, authz, body),
        "LocalSubjectAccessReview" => {
            let mut body = body;
            if let (Some(ns), Some(r)) = (
                &path.namespace,
                body.pointer_mut("/spec/resourceAttributes"),
            ) {
                r["namespace"] = ns.clone().into();
            }
            crate::rbac::review::subject_access_review(state, authz, body)
        }
        "SelfSubjectReview" => Ok(crate::response::json(
            StatusCode::CREATED,
            &json!({
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "SelfSubjectReview",
                "metadata": {"creationTimestamp": null},
                "status": {"userInfo": user.to_json()},
            }),
        )),
        "TokenReview" => super::token::token_review(state, security, body),
        _ => super::token::token_request(state, security, path, body).await,
    })
}
