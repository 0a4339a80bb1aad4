//! Building HTTP responses: JSON bodies, `metav1.Status` errors, and content negotiation.

use apimachinery::status::{Reason, StatusError};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;

use crate::storage::StorageError;

/// A JSON response with a status code.
pub fn json(code: StatusCode, value: &Value) -> Response {
    raw_json(
        code,
        Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
    )
}

/// A response from JSON bytes already serialized.
pub fn raw_json(code: StatusCode, bytes: Bytes) -> Response {
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The `metav1.Status` response for an error.
pub fn error(e: &StatusError) -> Response {
    let code = StatusCode::from_u16(e.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = json(code, &e.to_json());
    if let Some(secs) = e.details.as_ref().and_then(|d| d.retry_after_seconds)
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// A handler result: a response or a Status error.
pub type ApiResult = Result<Response, StatusError>;

/// Turns a handler result into a response.
pub fn finish(result: ApiResult) -> Response {
    match result {
        Ok(r) => r,
        Err(e) => error(&e),
    }
}

/// A plain-text response (health endpoints).
pub fn text(code: StatusCode, body: &'static str) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Maps a storage failure to the Status a client sees, naming the object where there is one.
pub fn storage_error(e: StorageError, group: &str, resource: &str, name: &str) -> StatusError {
    match e {
        StorageError::NotFound { .. } => StatusError::not_found(group, resource, name),
        StorageError::AlreadyExists { .. } => StatusError::already_exists(group, resource, name),
        StorageError::Conflict { .. } => StatusError::conflict(
            group,
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        ),
        StorageError::Compacted {
            requested,
            compacted,
        } => StatusError::expired(format!(
            "too old resource version: {requested} ({compacted})"
        )),
        // No `Retry-After`: client-go retries such a 503 up to ten times, so a store outage
        // would hold every kubectl for a minute instead of telling it at once (the 429 of an
        // overloaded server keeps it; that one passes in a second).
        StorageError::Unavailable(m) => StatusError::new(Reason::ServiceUnavailable, m),
        StorageError::Internal(m) => StatusError::internal(m),
    }
}

/// How the client wants objects rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Representation {
    /// Plain objects and lists.
    Object,
    /// A `meta.k8s.io` Table (kubectl get).
    Table,
    /// `PartialObjectMetadata` / `PartialObjectMetadataList`.
    Metadata,
}

/// Reads the `Accept` header: the first acceptable representation the server can produce.
pub fn representation(headers: &HeaderMap) -> Representation {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    for choice in accept.split(',') {
        let params: Vec<&str> = choice.split(';').map(str::trim).collect();
        let has = |p: &str| params.contains(&p);
        let is_meta = has("g=meta.k8s.io") && (has("v=v1") || has("v=v1beta1"));
        if is_meta && has("as=Table") {
            return Representation::Table;
        }
        if is_meta && (has("as=PartialObjectMetadata") || has("as=PartialObjectMetadataList")) {
            return Representation::Metadata;
        }
        if params
            .first()
            .is_some_and(|m| matches!(*m, "application/json" | "*/*" | "application/*" | ""))
            && !params.iter().any(|p| p.starts_with("as="))
        {
            return Representation::Object;
        }
    }
    Representation::Object
}
