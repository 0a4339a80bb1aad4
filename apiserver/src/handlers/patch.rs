//! `PATCH` on an object (or its `status` subresource): JSON patch, merge patch or strategic
//! merge patch, by the request's content type; server-side apply is [`super::apply`]'s.

use std::sync::Arc;

use apimachinery::patch::{PatchError, PatchType, json_patch, merge_patch, strategic};
use apimachinery::status::{Reason, StatusError};
use axum::http::header;
use serde_json::Value;

use super::ApiRequest;
use super::update::client_update;
use crate::response::ApiResult;
use crate::state::ApiState;

/// The patch type of a request, or 415.
pub fn patch_type(req: &ApiRequest) -> Result<PatchType, StatusError> {
    let ct = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match PatchType::from_content_type(ct) {
        Some(PatchType::StrategicMerge) if req.info.custom => Err(StatusError::new(
            Reason::UnsupportedMediaType,
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json (strategic merge patch is not supported for custom resource {})",
                req.info.qualified()
            ),
        )),
        Some(t) => Ok(t),
        None => Err(StatusError::new(
            Reason::UnsupportedMediaType,
            format!(
                "the body of the request was in an unknown format ({ct:?}) - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json"
            ),
        )),
    }
}

/// Applies a patch document to an object.
pub fn apply_patch(
    req: &ApiRequest,
    kind: PatchType,
    current: &Value,
    patch: &Value,
) -> Result<Value, StatusError> {
    let result = match kind {
        PatchType::Json => json_patch(current, patch),
        PatchType::Merge => merge_patch(current, patch),
        PatchType::StrategicMerge => strategic::apply(current, patch, &req.info.gvk()),
        PatchType::Apply => Err(PatchError::Invalid(
            "a server-side apply is not a patch document".into(),
        )),
    };
    result.map_err(|e| match e {
        PatchError::Invalid(m) => StatusError::bad_request(m),
        PatchError::Failed(m) => StatusError::new(Reason::Invalid, m),
    })
}

/// Patches the object.
pub async fn patch(state: &Arc<ApiState>, req: &ApiRequest) -> ApiResult {
    let dry_run = req.params.dry_run()?;
    let kind = patch_type(req)?;
    if kind == PatchType::Apply {
        return super::apply::apply(state, req, dry_run).await;
    }
    if req.params.get("force").is_some() {
        return Err(StatusError::invalid(
            "meta.k8s.io",
            "PatchOptions",
            "",
            vec![apimachinery::status::FieldError::forbidden(
                "force",
                "may not be specified for non-apply patch",
            )],
        ));
    }
    let doc = req.json_body()?;
    req.check_duplicates()?;
    client_update(state, req, dry_run, |current| {
        req.check_typed(apply_patch(req, kind, current, &doc)?)
    })
    .await
}
