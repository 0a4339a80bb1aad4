//! `TokenRequest`: a service account token, signed with the server's key; `TokenReview`: who
//! a token stands for, as the API server's own authenticators (static token file, service
//! account tokens) judge it.

use std::sync::Arc;

use apimachinery::status::StatusError;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::request::ResourcePath;
use crate::response::ApiResult;
use crate::security::Security;
use crate::state::ApiState;

/// `POST /api/v1/namespaces/NS/serviceaccounts/NAME/token`: a token bound to the account.
pub async fn token_request(
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
    let audiences = audiences(&body);
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

/// `POST /apis/authentication.k8s.io/v1/tokenreviews`: authenticates `spec.token` for
/// `spec.audiences` (default: the API server's) and answers in `status` (`authenticated`,
/// `user`, `audiences`, or `error`), as kube-apiserver does; nothing is stored.
pub fn token_review(state: &Arc<ApiState>, security: &Security, mut body: Value) -> ApiResult {
    let Some(token) = body
        .pointer("/spec/token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
    else {
        return Err(StatusError::new(
            apimachinery::status::Reason::Invalid,
            "TokenReview.authentication.k8s.io \"\" is invalid: spec.token: Required value: token must not be empty",
        ));
    };
    let audiences = audiences(&body);
    body["apiVersion"] = "authentication.k8s.io/v1".into();
    body["kind"] = "TokenReview".into();
    if !body.get("metadata").is_some_and(Value::is_object) {
        body["metadata"] = json!({});
    }
    body["metadata"]["creationTimestamp"] = Value::Null;
    body["status"] = match security.authn.review(state, &token, &audiences) {
        Ok((user, valid_for)) => json!({
            "authenticated": true,
            "user": user.to_json(),
            "audiences": valid_for,
        }),
        Err(e) => {
            tracing::info!(error = %e, "token review: not authenticated");
            json!({"user": {}, "error": "invalid bearer token"})
        }
    };
    Ok(crate::response::json(StatusCode::CREATED, &body))
}

/// `spec.audiences` of a TokenRequest or TokenReview (what is not a string is passed over).
fn audiences(body: &Value) -> Vec<String> {
    body.pointer("/spec/audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}
