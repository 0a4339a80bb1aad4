//! CustomResourceDefinitions: serving a resource for every established CRD, from the moment
//! the CRD is written, and no longer once it is deleted.
//!
//! The registry is always rebuilt from the watch cache ([`refresh`]): the built-in kinds plus
//! one resource per served version of each CRD. After a write to a CRD, the writing request waits
//! for the cache to hold it and refreshes, so the next request already sees the change.

use std::sync::Arc;

use apimachinery::object::ObjectExt;
use apimachinery::registry::{NameRule, PrinterColumn, Registry, ResourceInfo};
use apimachinery::status::FieldError;
use serde_json::Value;

use crate::state::ApiState;
use crate::storage::Revision;

const CRD_PREFIX: &str = "/registry/apiextensions.k8s.io/customresourcedefinitions/";

/// Whether a storage key holds a CRD.
pub fn is_crd_key(key: &str) -> bool {
    key.starts_with(CRD_PREFIX)
}

fn is_crd(info: &ResourceInfo) -> bool {
    info.group == "apiextensions.k8s.io" && info.plural == "customresourcedefinitions"
}

fn strs(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The resources a CRD serves, one per served version.
pub fn resources_of(crd: &Value) -> Vec<ResourceInfo> {
    let s = |p: &str| {
        crd.path(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let group = s("spec.group");
    let kind = s("spec.names.kind");
    let plural = s("spec.names.plural");
    if group.is_empty() || kind.is_empty() || plural.is_empty() {
        return Vec::new();
    }
    let namespaced = s("spec.scope") != "Cluster";
    let versions = crd
        .path("spec.versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    versions
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool).unwrap_or(true))
        .filter_map(|v| {
            let version = v.get("name")?.as_str()?;
            let mut info = ResourceInfo::new(&group, version, &kind, &plural, namespaced);
            info.custom = true;
            info.name_rule = NameRule::Dns1123Subdomain;
            let singular = s("spec.names.singular");
            info.singular = if singular.is_empty() {
                kind.to_lowercase()
            } else {
                singular
            };
            let list_kind = s("spec.names.listKind");
            if !list_kind.is_empty() {
                info.list_kind = list_kind;
            }
            info.short_names = strs(crd.path("spec.names.shortNames"));
            info.categories = strs(crd.path("spec.names.categories"));
            let mut subs = Vec::new();
            if v.pointer("/subresources/status").is_some() {
                subs.push("status".to_string());
            }
            if v.pointer("/subresources/scale").is_some() {
                subs.push("scale".to_string());
            }
            info.subresources = subs;
            info.schema = v
                .pointer("/schema/openAPIV3Schema")
                .filter(|s| s.is_object())
                .map(|s| Arc::new(s.clone()));
            info.printer_columns = v
                .get("additionalPrinterColumns")
                .and_then(Value::as_array)
                .map(|cols| {
                    cols.iter()
                        .filter_map(|c| {
                            Some(PrinterColumn {
                                name: c.get("name")?.as_str()?.to_string(),
                                type_: c
                                    .get("type")
                                    .and_then(Value::as_str)
                                    .unwrap_or("string")
                                    .to_string(),
                                json_path: c.get("jsonPath")?.as_str()?.to_string(),
                                priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0)
                                    as i32,
                                description: c
                                    .get("description")
                                    .and_then(Value::as_str)
                                    .unwrap_or("")
                                    .to_string(),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            Some(info)
        })
        .collect()
}

/// Problems with a CRD that would keep it from being served, its validation rules' included.
pub fn validate(crd: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let s = |p: &str| {
        crd.path(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (group, plural, kind) = (
        s("spec.group"),
        s("spec.names.plural"),
        s("spec.names.kind"),
    );
    for (field, value) in [
        ("spec.group", &group),
        ("spec.names.plural", &plural),
        ("spec.names.kind", &kind),
    ] {
        if value.is_empty() {
            errs.push(FieldError::required(field));
        }
    }
    if !group.is_empty() && !group.contains('.') {
        errs.push(FieldError::invalid(
            "spec.group",
            &group,
            "should be a domain with at least one dot",
        ));
    }
    if !plural.is_empty() && !apimachinery::validation::dns1123_label(&plural).is_empty() {
        errs.push(FieldError::invalid(
            "spec.names.plural",
            &plural,
            "a lowercase RFC 1123 label is required",
        ));
    }
    let name = crd.name().unwrap_or("");
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        errs.push(FieldError::invalid(
            "metadata.name",
            name,
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    let scope = s("spec.scope");
    if scope != "Namespaced" && scope != "Cluster" {
        errs.push(FieldError::invalid(
            "spec.scope",
            &scope,
            "supported values: \"Cluster\", \"Namespaced\"",
        ));
    }
    let versions = crd
        .path("spec.versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        errs.push(FieldError::required("spec.versions"));
    }
    let storage = versions
        .iter()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .count();
    if !versions.is_empty() && storage != 1 {
        errs.push(FieldError::invalid(
            "spec.versions",
            &storage.to_string(),
            "must have exactly one version marked as storage version",
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        if v.get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            errs.push(FieldError::required(format!("spec.versions[{i}].name")));
        }
        if let Some(schema) = v.pointer("/schema/openAPIV3Schema") {
            errs.extend(apimachinery::validation_rules::check_schema(
                schema,
                &format!("spec.versions[{i}].schema.openAPIV3Schema"),
            ));
        }
    }
    errs
}

/// Rebuilds the registry from the CRDs in the watch cache.
pub fn refresh(state: &ApiState) {
    let mut registry = Registry::builtin();
    let (snapshot, _) = state.cache().list(CRD_PREFIX, None, 0, |_| true);
    for crd in &snapshot.objects {
        if crd.object.path("metadata.deletionTimestamp").is_some() {
            continue;
        }
        for info in resources_of(&crd.object) {
            if registry
                .by_resource(&info.group, &info.version, &info.plural)
                .is_none_or(|r| r.custom)
            {
                registry.add(info);
            }
        }
    }
    state.set_registry(registry);
}

/// Called after every successful write: a CRD change refreshes the registry once the cache
/// holds it.
pub async fn after_write(state: &Arc<ApiState>, info: &ResourceInfo, revision: Revision) {
    if is_crd(info) && state.cache().wait_for(revision).await.is_ok() {
        refresh(state);
    }
}

/// Called after an object was removed: a removed CRD takes its objects with it.
pub async fn after_delete(
    state: &Arc<ApiState>,
    info: &ResourceInfo,
    obj: &Value,
    revision: Revision,
) {
    if !is_crd(info) {
        return;
    }
    after_write(state, info, revision).await;
    if let Some(served) = resources_of(obj).first() {
        let prefix = served.key_prefix();
        let mut start: Option<String> = None;
        loop {
            let Ok(page) = state.store().list(&prefix, start.as_deref(), 500).await else {
                return;
            };
            for kv in &page.kvs {
                if let Err(e) = state.store().delete(&kv.key, None).await {
                    tracing::warn!(key = %kv.key, error = %e, "deleting a custom resource of a removed CRD failed");
                }
            }
            if !page.more {
                return;
            }
            start = page.kvs.last().map(|kv| kv.key.clone());
        }
    }
}
