//! Comparing what the repository renders with what is live, without touching the cluster.
//!
//! An object is in sync when applying it would change nothing: the three-way patch of
//! `kubectl apply` (last applied configuration, desired, live), applied to the live object,
//! gives the live object back. Fields the server fills in, defaults, and fields other actors own
//! are left alone by that patch, so they never count as drift; a field the repository sets to
//! something else, or a field it no longer sets but once did, does.

use apimachinery::application::{
    ANNOTATION_APP, ANNOTATION_LAST_APPLIED, ANNOTATION_REVISION, ANNOTATION_SOURCE,
    ANNOTATION_SYNC_WAVE, LABEL_APP,
};
use apimachinery::object::ObjectExt;
use apimachinery::patch::apply::{self as ssa, ApplyError, Schema, Tracked, Writer};
use apimachinery::patch::{PatchError, strategic};
use apimachinery::registry::GroupVersionKind;
use serde_json::{Value, json};

/// Where in the apply order a kind goes: namespaces and CRDs first, workloads late.
pub fn kind_tier(kind: &str) -> u8 {
    match kind {
        "Namespace" => 0,
        "CustomResourceDefinition" => 1,
        "ServiceAccount" | "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding" => 2,
        "ConfigMap" | "Secret" | "PersistentVolumeClaim" | "PriorityClass" => 3,
        "Service" | "Endpoints" => 4,
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" | "CronJob" | "Pod" => 5,
        "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration" => 6,
        "Application" => 8,
        _ => 7,
    }
}

/// The sync wave of an object (`gitplane.io/sync-wave`, default 0).
pub fn wave(obj: &Value) -> i64 {
    obj.annotations()
        .get(ANNOTATION_SYNC_WAVE)
        .and_then(|w| w.trim().parse().ok())
        .unwrap_or(0)
}

/// The sort key of the apply order: sync wave, then kind tier, then namespace and name.
pub fn order_key(obj: &Value) -> (i64, u8, String, String) {
    (
        wave(obj),
        kind_tier(obj.kind().unwrap_or("")),
        obj.namespace().unwrap_or("").to_string(),
        obj.name().unwrap_or("").to_string(),
    )
}

/// The desired object with the marks of its Application (label and app annotation), as it is
/// compared and recorded as the last applied configuration.
pub fn managed(desired: &Value, app: &str) -> Value {
    let mut obj = desired.clone();
    let meta = obj.metadata_mut();
    let labels = meta.entry("labels").or_insert_with(|| json!({}));
    if !labels.is_object() {
        *labels = json!({});
    }
    labels[LABEL_APP] = json!(app);
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    if !annotations.is_object() {
        *annotations = json!({});
    }
    annotations[ANNOTATION_APP] = json!(app);
    obj
}

/// What is written: the managed object plus the commit, the file and line, and the last
/// applied configuration.
pub fn to_apply(managed: &Value, revision: &str, source: &str) -> Value {
    let mut obj = managed.clone();
    let last = serde_json::to_string(managed).unwrap_or_default();
    let annotations = &mut obj.metadata_mut()["annotations"];
    annotations[ANNOTATION_REVISION] = json!(revision);
    annotations[ANNOTATION_SOURCE] = json!(source);
    annotations[ANNOTATION_LAST_APPLIED] = json!(last);
    obj
}

/// The last applied configuration recorded on a live object.
pub fn last_applied(live: &Value) -> Option<Value> {
    serde_json::from_str(live.annotations().get(ANNOTATION_LAST_APPLIED)?).ok()
}

/// The patch that makes `live` match `modified`, as `kubectl apply` computes it.
pub fn patch_for(
    modified: &Value,
    live: &Value,
    gvk: &GroupVersionKind,
) -> Result<Value, PatchError> {
    let original = last_applied(live);
    strategic::three_way(original.as_ref(), modified, live, gvk)
}

/// The live object as it would be after applying `managed` (marks without revision).
pub fn predicted(
    managed: &Value,
    live: &Value,
    gvk: &GroupVersionKind,
) -> Result<Value, PatchError> {
    let patch = patch_for(managed, live, gvk)?;
    let mut predicted = strategic::apply(live, &patch, gvk)?;
    if gvk.group.is_empty() && gvk.kind == "Secret" {
        // The server stores `stringData` in `data`; so does the prediction.
        apimachinery::secret::merge_string_data(&mut predicted);
    }
    Ok(predicted)
}

/// Whether applying `managed` to `live` would change nothing.
pub fn in_sync(managed: &Value, live: &Value, gvk: &GroupVersionKind) -> Result<bool, PatchError> {
    Ok(normalize(&predicted(managed, live, gvk)?) == normalize(live))
}

/// The live object as a forced server-side apply of `managed` by `manager` would leave it: the
/// structured merge the API server runs (list types of built-in kinds from their patch
/// metadata; custom resources' lists taken as atomic, since their schemas are the server's),
/// with the removal of what `manager` applied before and no longer does.
pub fn predicted_server_side(
    managed: &Value,
    live: &Value,
    gvk: &GroupVersionKind,
    manager: &str,
) -> Result<Value, ApplyError> {
    let mut managers = ssa::read_managed_fields(live.path("metadata.managedFields"))?;
    let schema = if strategic::is_known_kind(gvk) {
        Schema::builtin(gvk)
    } else {
        Schema::custom(None)
    };
    let api_version = live.api_version().unwrap_or("").to_string();
    let writer = Writer {
        manager,
        api_version: &api_version,
        subresource: "",
        time: "",
    };
    ssa::apply(
        live,
        managed,
        schema,
        Tracked::AllButStatus,
        &mut managers,
        &writer,
        true,
    )
}

/// Whether a server-side apply of `managed` by `manager` would change nothing: only the fields
/// the repository sets (and those `manager` applied before) count, so another manager's
/// changes to other fields are no drift.
pub fn in_sync_server_side(
    managed: &Value,
    live: &Value,
    gvk: &GroupVersionKind,
    manager: &str,
) -> Result<bool, ApplyError> {
    Ok(normalize(&predicted_server_side(managed, live, gvk, manager)?) == normalize(live))
}

/// What a server-side apply writes: the managed object plus the commit and the file and line
/// (no last applied configuration: the server keeps the field sets).
pub fn to_apply_server_side(managed: &Value, revision: &str, source: &str) -> Value {
    let mut obj = managed.clone();
    let annotations = &mut obj.metadata_mut()["annotations"];
    annotations[ANNOTATION_REVISION] = json!(revision);
    annotations[ANNOTATION_SOURCE] = json!(source);
    obj
}

/// An object without what the server and the syncer fill in, for showing diffs.
pub fn normalize(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in [
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "managedFields",
            "selfLink",
        ] {
            meta.remove(f);
        }
        if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            for f in [
                ANNOTATION_LAST_APPLIED,
                ANNOTATION_REVISION,
                ANNOTATION_SOURCE,
            ] {
                a.remove(f);
            }
            if a.is_empty() {
                meta.remove("annotations");
            }
        }
    }
    if let Some(m) = v.as_object_mut() {
        m.remove("status");
    }
    v
}

/// A unified diff between two objects rendered as YAML (`---`/`+++` headers named `live` and
/// `desired`); empty when they are equal.
pub fn diff_text(before: Option<&Value>, after: Option<&Value>) -> String {
    let yaml = |v: Option<&Value>| {
        v.map(|v| templates::yaml::to_yaml(&normalize(v)))
            .unwrap_or_default()
    };
    let (a, b) = (yaml(before), yaml(after));
    if a == b {
        return String::new();
    }
    similar::TextDiff::from_lines(&a, &b)
        .unified_diff()
        .context_radius(3)
        .header("live", "desired")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gvk() -> GroupVersionKind {
        GroupVersionKind::from_api_version("apps/v1", "Deployment")
    }

    fn deploy(replicas: i64, env: &[&str]) -> Value {
        let env: Vec<Value> = env
            .iter()
            .map(|n| json!({"name": n, "value": "1"}))
            .collect();
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
               "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "c", "image": "i", "env": env}]}}}})
    }

    fn live_from(applied: &Value) -> Value {
        // What the server hands back: the applied object plus what it fills in.
        let mut live = applied.clone();
        live["metadata"]["uid"] = json!("u");
        live["metadata"]["resourceVersion"] = json!("7");
        live["spec"]["strategy"] = json!({"type": "RollingUpdate"});
        live["status"] = json!({"replicas": 1});
        live
    }

    #[test]
    fn server_filled_fields_are_not_drift_but_changes_and_removals_are() {
        let m = managed(&deploy(2, &["A", "B"]), "web");
        let live = live_from(&to_apply(&m, "abc", "deploy.yaml:1"));
        assert!(in_sync(&m, &live, &gvk()).unwrap());
        // Someone scaled it: drift.
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(5);
        assert!(!in_sync(&m, &scaled, &gvk()).unwrap());
        // The repository dropped env B: the live object must lose it.
        let fewer = managed(&deploy(2, &["A"]), "web");
        assert!(!in_sync(&fewer, &live, &gvk()).unwrap());
        let after = predicted(&fewer, &live, &gvk()).unwrap();
        assert_eq!(
            after["spec"]["template"]["spec"]["containers"][0]["env"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        let diff = diff_text(Some(&live), Some(&after));
        assert!(
            diff.lines()
                .any(|l| l.starts_with('-') && l.contains("name: B")),
            "{diff}"
        );
    }

    #[test]
    fn apply_order_puts_namespaces_first_and_waves_outermost() {
        let mut objs = [
            json!({"kind": "Deployment", "metadata": {"name": "a"}}),
            json!({"kind": "ConfigMap", "metadata": {"name": "b"}}),
            json!({"kind": "Namespace", "metadata": {"name": "n"}}),
            json!({"kind": "Job", "metadata": {"name": "migrate", "annotations": {"gitplane.io/sync-wave": "-1"}}}),
        ];
        objs.sort_by_key(order_key);
        let kinds: Vec<&str> = objs.iter().map(|o| o.kind().unwrap()).collect();
        assert_eq!(kinds, ["Job", "Namespace", "ConfigMap", "Deployment"]);
    }
}
