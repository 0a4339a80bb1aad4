//! Kind-specific validation the server needs to stay consistent (the full built-in validation
//! and schema validation of custom resources come with the admission work).

use apimachinery::object::ObjectExt;
use apimachinery::registry::ResourceInfo;
use apimachinery::status::FieldError;
use serde_json::Value;

use crate::crd;

/// Problems with an object of a kind, on create and update.
pub fn object(info: &ResourceInfo, obj: &Value) -> Vec<FieldError> {
    match (info.group.as_str(), info.kind.as_str()) {
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd::validate(obj),
        _ => {
            let mut errs = Vec::new();
            if info.has_subresource("scale")
                && let Some(r) = obj.path("spec.replicas")
                && r.as_i64().is_none_or(|n| n < 0)
            {
                errs.push(FieldError::invalid(
                    "spec.replicas",
                    &r.to_string(),
                    "must be greater than or equal to 0",
                ));
            }
            errs
        }
    }
}

/// Problems with an update: fields Kubernetes makes immutable.
pub fn update(info: &ResourceInfo, old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let immutable: &[&str] = match (info.group.as_str(), info.kind.as_str()) {
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            &["spec.group", "spec.names.plural", "spec.scope"]
        }
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") => &["spec.selector"],
        ("batch", "Job") => &["spec.selector"],
        _ => &[],
    };
    for path in immutable {
        let (a, b) = (old.path(path), new.path(path));
        if a.is_some() && a != b {
            errs.push(FieldError::invalid(
                *path,
                &b.map(Value::to_string).unwrap_or_default(),
                "field is immutable",
            ));
        }
    }
    let _ = new.name();
    errs
}
