//! Admission: what happens to a write between decoding and storage, in Kubernetes' order.
//!
//! 1. decode and check against the type or schema (`handlers::ApiRequest::check_typed`: unknown
//!    fields, pruning, schema defaults);
//! 2. server-set fields and built-in defaulting (`strategy`, `defaults`);
//! 3. built-in mutating admission ([`service_account`]);
//! 4. mutating webhooks;
//! 5. validation (`validate`: built-in kinds, CRD schemas);
//! 6. validating webhooks;
//! 7. NamespaceLifecycle (`handlers::write::check_namespace`) and storage.

/// ServiceAccount admission: a pod created without a service account runs as `default`.
///
/// Kubernetes also refuses pods naming a ServiceAccount that does not exist and mounts its
/// token; gitplane has no ServiceAccount controller or tokens yet, so it only fills in the name.
pub fn service_account(info: &apimachinery::registry::ResourceInfo, obj: &mut serde_json::Value) {
    if info.custom || (info.group.as_str(), info.kind.as_str()) != ("", "Pod") {
        return;
    }
    let Some(spec) = obj.get_mut("spec").and_then(serde_json::Value::as_object_mut) else {
        return;
    };
    let name = spec
        .get("serviceAccountName")
        .and_then(serde_json::Value::as_str)
        .filter(|s| !s.is_empty())
        .or_else(|| {
            spec.get("serviceAccount")
                .and_then(serde_json::Value::as_str)
                .filter(|s| !s.is_empty())
        })
        .unwrap_or("default")
        .to_string();
    spec.insert("serviceAccountName".into(), name.clone().into());
    spec.insert("serviceAccount".into(), name.into());
}
