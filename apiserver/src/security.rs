//! The outer request pipeline's settings: authentication, authorization, audit and the
//! in-flight limits, in the order requests meet them (authn → impersonation → max-in-flight →
//! audit → authz; the order of the stages is in [`crate::handlers::dispatch`]).

use std::sync::{Arc, OnceLock};

use crate::audit::Auditor;
use crate::authn::Authenticator;
use crate::inflight::Limits;
use crate::rbac::{Authorizer, Mode};

/// How the server authenticates, authorizes, audits and limits requests.
#[derive(Debug, Default)]
pub struct Security {
    /// Authentication.
    pub authn: Authenticator,
    /// Authorization.
    pub authz: Authorizer,
    /// The audit log, when one is configured.
    pub audit: Option<Arc<Auditor>>,
    /// In-flight limits.
    pub inflight: Limits,
}

impl Security {
    /// No authentication (every request is an administrator's), no authorization, no audit, no
    /// limits: the benchmarks' in-process server and unit tests.
    pub fn disabled() -> Security {
        Security {
            authn: Authenticator::disabled(),
            authz: Authorizer {
                mode: Mode::AlwaysAllow,
            },
            audit: None,
            inflight: Limits::default(),
        }
    }

    /// The shared disabled settings.
    pub fn disabled_shared() -> Arc<Security> {
        static DISABLED: OnceLock<Arc<Security>> = OnceLock::new();
        DISABLED
            .get_or_init(|| Arc::new(Security::disabled()))
            .clone()
    }
}

use apimachinery::registry::ResourceInfo;
use apimachinery::status::StatusError;
use axum::http::{HeaderMap, Method, StatusCode};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::authn::UserInfo;
use crate::handlers::ApiRequest;
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
        ("", "serviceaccounts", Some("token")) => "TokenRequest",
        _ => return None,
    };
    let group = if kind == "TokenRequest" {
        "authentication.k8s.io"
    } else {
        path.group.as_str()
    };
    let req = ApiRequest {
        method: method.clone(),
        path: path.clone(),
        info: Arc::new(ResourceInfo::new(
            group,
            &path.version,
            kind,
            &path.resource,
            path.namespace.is_some(),
        )),
        params: params.clone(),
        headers: headers.clone(),
        body: body.clone(),
        warnings: Default::default(),
        user: user.clone(),
    };
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
        _ => token_request(state, &security, path, body).await,
    })
}

/// `POST /api/v1/namespaces/NS/serviceaccounts/NAME/token`: a token bound to the account.
async fn token_request(
    state: &Arc<ApiState>,
    security: &Security,
    path: &ResourcePath,
    mut body: Value,
) -> ApiResult {
    let (Some(ns), Some(name)) = (path.namespace.as_deref(), path.name.as_deref()) else {
        return Err(StatusError::bad_request(
            "a TokenRequest needs a namespace and a name",
        ));
    };
    let keys = security.authn.service_accounts.as_ref().ok_or_else(|| {
        StatusError::new(
            apimachinery::status::Reason::ServiceUnavailable,
            "this server issues no service account tokens (no --service-account-signing-key-file)",
        )
    })?;
    let info = state
        .registry()
        .by_resource("", "v1", "serviceaccounts")
        .ok_or_else(|| StatusError::internal("serviceaccounts are not served"))?;
    let sa = state
        .read_stored(&info, Some(ns), name)
        .await?
        .ok_or_else(|| StatusError::not_found("", "serviceaccounts", name))?;
    let uid = sa
        .object
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let seconds = body
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(3600);
    if seconds < 600 {
        return Err(StatusError::bad_request(format!(
            "TokenRequest.authentication.k8s.io \"{name}\" is invalid: spec.expirationSeconds: Invalid value: {seconds}: may not specify a duration less than 10 minutes"
        )));
    }
    let audiences: Vec<String> = body
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let (token, exp) = keys
        .issue(ns, name, &uid, audiences.clone(), seconds as u64)
        .map_err(|e| StatusError::internal(e.to_string()))?;
    let expiration = jiff::Timestamp::from_second(exp as i64)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    body["apiVersion"] = "authentication.k8s.io/v1".into();
    body["kind"] = "TokenRequest".into();
    body["metadata"] =
        json!({"name": name, "namespace": ns, "creationTimestamp": crate::strategy::now()});
    body["spec"]["expirationSeconds"] = seconds.into();
    body["spec"]["audiences"] = if audiences.is_empty() {
        json!([crate::authn::service_account::ISSUER])
    } else {
        json!(audiences)
    };
    body["status"] = json!({"token": token, "expirationTimestamp": expiration});
    Ok(crate::response::json(StatusCode::CREATED, &body))
}

/// Refuses a create, update or patch of an RBAC object that would grant permissions its author
/// does not hold ([`crate::rbac::escalation`]). A patch is judged on the patched object as of
/// the cache; a body that does not parse is left to the verb's handler to refuse.
pub fn check_rbac_write(
    state: &ApiState,
    user: &UserInfo,
    req: &ApiRequest,
) -> Result<(), StatusError> {
    if req.info.group != "rbac.authorization.k8s.io" || req.path.subresource.is_some() {
        return Ok(());
    }
    let security = state.security();
    if security.authz.mode == Mode::AlwaysAllow || user.in_group(crate::authn::MASTERS) {
        return Ok(());
    }
    let object = match req.method {
        Method::POST | Method::PUT => match req.json_body() {
            Ok(o) => o,
            Err(_) => return Ok(()),
        },
        Method::PATCH => {
            let Some(current) = state.cache.get(&req.info.key(req.namespace(), req.name())) else {
                return Ok(());
            };
            let (Ok(kind), Ok(doc)) = (crate::handlers::patch_type(req), req.json_body()) else {
                return Ok(());
            };
            match crate::handlers::apply_patch(req, kind, &current.object, &doc) {
                Ok(o) => o,
                Err(_) => return Ok(()),
            }
        }
        _ => return Ok(()),
    };
    crate::rbac::escalation::check(
        state,
        &security.authz,
        user,
        &req.info.plural,
        req.namespace().unwrap_or(""),
        &object,
    )
}
