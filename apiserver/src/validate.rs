//! Validation of objects on create and update: the built-in kinds as Kubernetes validates them
//! (`apimachinery::kind_validation`), custom resources against their CRD's structural schema
//! (`apimachinery::schema`) and its CEL rules (`apimachinery::validation_rules`; transition
//! rules on updates), and the CRDs themselves.

use apimachinery::kind_validation;
use apimachinery::registry::ResourceInfo;
use apimachinery::schema;
use apimachinery::status::FieldError;
use apimachinery::validation_rules::{self, Rules};
use serde_json::Value;

use crate::crd;

/// Problems with an object of a kind, on create and update.
pub fn object(info: &ResourceInfo, obj: &Value) -> Vec<FieldError> {
    match (info.group.as_str(), info.kind.as_str()) {
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd::validate(obj),
        _ if info.custom => {
            let mut errs = Vec::new();
            if let Some(s) = &info.schema {
                errs.extend(schema::validate(s, obj));
                if errs.is_empty() {
                    errs.extend(validation_rules::validate(s, obj, None, Rules::Plain));
                }
            }
            if info.has_subresource("scale")
                && let Some(r) = obj.pointer("/spec/replicas")
                && r.as_i64().is_none_or(|n| n < 0)
            {
                errs.push(FieldError::invalid_value(
                    "spec.replicas",
                    r,
                    "must be greater than or equal to 0",
                ));
            }
            errs
        }
        _ => kind_validation::validate(&info.gvk(), obj),
    }
}

/// Problems with an update: fields Kubernetes makes immutable, and the transition rules
/// (`oldSelf`) of custom resources.
pub fn update(info: &ResourceInfo, old: &Value, new: &Value) -> Vec<FieldError> {
    match (info.group.as_str(), info.kind.as_str()) {
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            let mut errs = Vec::new();
            for (pointer, field) in [
                ("/spec/group", "spec.group"),
                ("/spec/names/plural", "spec.names.plural"),
                ("/spec/scope", "spec.scope"),
            ] {
                let (a, b) = (old.pointer(pointer), new.pointer(pointer));
                if a.is_some() && a != b {
                    errs.push(FieldError::invalid_value(
                        field,
                        b.unwrap_or(&Value::Null),
                        "field is immutable",
                    ));
                }
            }
            errs
        }
        _ if info.custom => match &info.schema {
            Some(s) => validation_rules::validate(s, new, Some(old), Rules::Transition),
            None => Vec::new(),
        },
        _ => kind_validation::validate_update(&info.gvk(), old, new),
    }
}
