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

/// The top-level fields a patch document can change, or `None`
/// when that is not plain from the document (a directive of a strategic merge patch at the top,
/// a JSON patch on the whole object) or it changes apiVersion or kind.
fn touched(kind: PatchType, doc: &Value) -> Option<Vec<String>> {
    let mut keys: Vec<String> = match kind {
        PatchType::Merge | PatchType::StrategicMerge => {
            let map = doc.as_object()?;
            if map.keys().any(|k| k.starts_with('$')) {
                return None;
            }
            map.keys().cloned().collect()
        }
        PatchType::Json => {
            let mut keys = Vec::new();
            for op in doc.as_array()? {
                for field in ["path", "from"] {
                    let Some(path) = op.get(field) else { continue };
                    let first = path.as_str()?.strip_prefix('/')?.split('/').next()?;
                    if first.is_empty() {
                        return None;
                    }
                    keys.push(first.replace("~1", "/").replace("~0", "~"));
                }
            }
            keys
        }
        PatchType::Apply => return None,
    };
    // A patch of apiVersion or kind is checked whole (the identity is part of the check).
    if keys.iter().any(|k| k == "apiVersion" || k == "kind") {
        return None;
    }
    keys.sort();
    keys.dedup();
    Some(keys)
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
    let touched = touched(kind, &doc);
    client_update(state, req, dry_run, |current| {
        req.check_typed_touched(apply_patch(req, kind, current, &doc)?, touched.as_deref())
    })
    .await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_patch_touches_the_top_level_fields_its_document_names() {
        let keys = |v: &[&str]| Some(v.iter().map(ToString::to_string).collect::<Vec<_>>());
        let cases = [
            (
                PatchType::Merge,
                json!({"status": {"phase": "Running"}}),
                keys(&["status"]),
            ),
            (
                PatchType::StrategicMerge,
                json!({"metadata": {"labels": {"a": "b"}}, "spec": {"x": null}}),
                keys(&["metadata", "spec"]),
            ),
            (
                PatchType::StrategicMerge,
                json!({"$patch": "replace", "spec": {}}),
                None,
            ),
            (PatchType::Merge, json!({"kind": "Other"}), None),
            (PatchType::Merge, json!([1]), None),
            (
                PatchType::Json,
                json!([{"op": "replace", "path": "/status/phase", "value": "Running"},
                    {"op": "move", "from": "/metadata/labels/a", "path": "/spec/x"},
                    {"op": "add", "path": "/data~1x", "value": 1}]),
                keys(&["data/x", "metadata", "spec", "status"]),
            ),
            (
                PatchType::Json,
                json!([{"op": "replace", "path": "", "value": {}}]),
                None,
            ),
            (
                PatchType::Json,
                json!([{"op": "replace", "path": "/apiVersion", "value": "v2"}]),
                None,
            ),
            (
                PatchType::Json,
                json!([{"op": "replace", "value": 1}]),
                keys(&[]),
            ),
        ];
        for (kind, doc, expected) in cases {
            assert_eq!(touched(kind, &doc), expected, "{doc}");
        }
    }
}
