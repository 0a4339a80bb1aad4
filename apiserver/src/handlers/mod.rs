//! Request handlers: the request path in the order requests take it, then one file per verb.
//!
//! [`dispatch`] is the single axum fallback handler. A request passes the [`pipeline`]
//! (authentication, in-flight limit, audit, authorization), has its [`body`] read, and is
//! [`route`]d: to health, discovery and OpenAPI documents, to the access reviews and tokens
//! ([`review`], [`token`]), or to its resource's verb. Handlers return
//! [`ApiResult`](crate::response::ApiResult); errors become `metav1.Status` responses.

pub(crate) mod apply;
mod binding;
pub mod body;
mod component_status;
mod create;
pub(crate) mod delete;
mod delete_collection;
pub(crate) mod eviction;
mod get;
mod list;
mod log;
mod metrics;
mod patch;
pub mod pipeline;
mod proxy;
mod review;
pub mod route;
mod scale;
mod stream;
mod token;
mod update;
mod watch;
pub(crate) mod write;

pub use body::{FieldValidation, MAX_BODY};
pub use patch::{apply_patch, patch_type};
pub use pipeline::dispatch;

use std::sync::Arc;

use apimachinery::registry::ResourceInfo;
use apimachinery::status::StatusError;
use axum::http::{HeaderMap, Method};
use bytes::Bytes;

use crate::request::{Params, ResourcePath};

/// A parsed request for a resource.
pub struct ApiRequest {
    /// HTTP method.
    pub method: Method,
    /// Where the request points.
    pub path: ResourcePath,
    /// The resource.
    pub info: Arc<ResourceInfo>,
    /// Query parameters.
    pub params: Params,
    /// Request headers.
    pub headers: HeaderMap,
    /// Request body.
    pub body: Bytes,
    /// Warnings for the client, sent as `Warning` headers (unknown fields under
    /// `fieldValidation=Warn`, webhooks' warnings).
    pub warnings: std::sync::Mutex<Vec<String>>,
    /// Who makes the request (after authentication and impersonation).
    pub user: crate::authn::UserInfo,
    /// `?fieldValidation=`, parsed once (an unsupported mode is refused by the writes that read
    /// it).
    pub field_validation: Result<FieldValidation, StatusError>,
    /// The query string as sent (passed on to node agents by `pods/exec`).
    pub raw_query: Option<String>,
    /// The client connection's upgrade (WebSocket), taken by `pods/exec`, `attach` and
    /// `portforward`.
    pub upgrade: std::sync::Mutex<Option<hyper::upgrade::OnUpgrade>>,
}

impl ApiRequest {
    /// A request for `info` at `path`.
    pub fn new(
        method: Method,
        path: ResourcePath,
        info: Arc<ResourceInfo>,
        params: Params,
        headers: HeaderMap,
        body: Bytes,
        user: crate::authn::UserInfo,
    ) -> ApiRequest {
        ApiRequest {
            field_validation: FieldValidation::parse(&params),
            method,
            path,
            info,
            params,
            headers,
            body,
            warnings: Default::default(),
            user,
            raw_query: None,
            upgrade: Default::default(),
        }
    }

    /// The namespace of the request (for namespaced resources).
    pub fn namespace(&self) -> Option<&str> {
        self.path.namespace.as_deref()
    }

    /// The object name; requests that reach a handler needing one always have one.
    pub fn name(&self) -> &str {
        self.path.name.as_deref().unwrap_or("")
    }

    /// What a write through this path may change: only status on `.../status`.
    pub fn update_scope(&self) -> crate::strategy::UpdateScope {
        match self.path.subresource.as_deref() {
            Some("status") => crate::strategy::UpdateScope::Status,
            Some("ephemeralcontainers") => crate::strategy::UpdateScope::EphemeralContainers,
            Some("approval") => crate::strategy::UpdateScope::Approval,
            _ => crate::strategy::UpdateScope::Main,
        }
    }

    /// Adds a warning for the client.
    pub fn warn(&self, warning: impl Into<String>) {
        let w = warning.into();
        let mut list = self.warnings.lock().unwrap_or_else(|p| p.into_inner());
        if !list.contains(&w) {
            list.push(w);
        }
    }

    /// A 404 for the object this request names.
    pub fn not_found(&self) -> StatusError {
        StatusError::not_found(&self.info.group, &self.info.plural, self.name())
    }
}
