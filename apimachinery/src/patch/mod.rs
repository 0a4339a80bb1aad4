//! Patches: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and strategic merge patch.
//!
//! JSON and merge patches are json-patch's; strategic merge patch is ours, because it needs the
//! patch merge keys of the Kubernetes kinds ([`strategic`]). Server-side apply ([`apply`]) merges
//! by the list types derived from the same tables and tracks field ownership in [`fieldset`]s.

pub mod apply;
pub mod fieldset;
pub mod strategic;

use serde_json::Value;

/// Why a patch could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The patch document is not a valid patch of its type.
    #[error("invalid patch: {0}")]
    Invalid(String),
    /// A JSON patch operation failed (a `test` did not match, a path did not exist, …).
    #[error("{0}")]
    Failed(String),
}

/// The patch types of the Kubernetes API, by their content types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json`
    Json,
    /// `application/merge-patch+json`
    Merge,
    /// `application/strategic-merge-patch+json`
    StrategicMerge,
    /// `application/apply-patch+yaml` (server-side apply)
    Apply,
}

impl PatchType {
    /// The patch type named by a request's content type.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let base = content_type.split(';').next().unwrap_or("").trim();
        match base {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::StrategicMerge),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                Some(PatchType::Apply)
            }
            _ => None,
        }
    }
}

/// Applies an RFC 6902 JSON patch to a copy of `original`.
///
/// `json_patch::patch_unsafe`, not `json_patch::patch`: the copy is dropped when an operation
/// fails, so nothing needs undoing, and `patch`'s undo panics on some failing patches
/// (json-patch 4.2: "unable to undo applied patches", found by `tests/hostile.rs`).
pub fn json_patch(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let ops: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| PatchError::Invalid(e.to_string()))?;
    let mut doc = original.clone();
    json_patch::patch_unsafe(&mut doc, &ops).map_err(|e| PatchError::Failed(e.to_string()))?;
    Ok(doc)
}

/// Applies an RFC 7386 merge patch to a copy of `original`.
pub fn merge_patch(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    if !patch.is_object() {
        return Err(PatchError::Invalid(
            "a merge patch must be a JSON object".into(),
        ));
    }
    let mut doc = original.clone();
    json_patch::merge(&mut doc, patch);
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_and_merge_patches_apply_and_fail_cleanly() {
        let doc = json!({"a": 1, "b": {"c": 2}});
        assert_eq!(
            json_patch(&doc, &json!([{"op": "replace", "path": "/a", "value": 3}])).unwrap(),
            json!({"a": 3, "b": {"c": 2}})
        );
        assert!(matches!(
            json_patch(&doc, &json!([{"op": "test", "path": "/a", "value": 9}])),
            Err(PatchError::Failed(_))
        ));
        assert!(matches!(
            json_patch(&doc, &json!({"op": "add"})),
            Err(PatchError::Invalid(_))
        ));
        assert_eq!(
            merge_patch(&doc, &json!({"b": {"c": null, "d": 4}})).unwrap(),
            json!({"a": 1, "b": {"d": 4}})
        );
        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json; charset=utf-8"),
            Some(PatchType::Merge)
        );
    }
}
