//! What the server does to every object it writes, in the spirit of Kubernetes' REST strategies:
//! server-set fields on create, what an update may and may not change, and the checks all kinds
//! share (names, labels, annotations, the object's kind for its URL).

use apimachinery::object::{ObjectExt, equal_except};
use apimachinery::registry::ResourceInfo;
use apimachinery::status::{FieldError, StatusError};
use apimachinery::validation;
use serde_json::{Map, Value, json};

/// The time now as Kubernetes writes timestamps (RFC 3339, whole seconds, UTC).
pub fn now() -> String {
    let ts = jiff::Timestamp::now();
    jiff::Timestamp::from_second(ts.as_second())
        .unwrap_or(ts)
        .to_string()
}

/// Checks the body's `apiVersion` and `kind` against the URL's resource, filling them in when
/// absent, and its namespace against the URL's namespace.
pub fn check_identity(
    info: &ResourceInfo,
    namespace: Option<&str>,
    obj: &mut Value,
) -> Result<(), StatusError> {
    if !obj.is_object() {
        return Err(StatusError::bad_request(
            "the body of the request must be a JSON object",
        ));
    }
    let expected_av = info.api_version();
    match obj.api_version() {
        None => {
            obj["apiVersion"] = Value::String(expected_av.clone());
        }
        Some(av) if av != expected_av => {
            return Err(StatusError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({expected_av})"
            )));
        }
        _ => {}
    }
    match obj.kind() {
        None => obj["kind"] = Value::String(info.kind.clone()),
        Some(k) if k != info.kind => {
            return Err(StatusError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({}) for {}",
                info.kind,
                info.qualified()
            )));
        }
        _ => {}
    }
    if obj.get("metadata").is_some_and(|m| !m.is_object()) {
        return Err(StatusError::bad_request("metadata must be an object"));
    }
    if info.namespaced {
        match (obj.namespace(), namespace) {
            (Some(body), Some(url)) if !body.is_empty() && body != url => {
                return Err(StatusError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            (_, Some(url)) => obj.set_meta("namespace", Value::String(url.to_string())),
            _ => {}
        }
    } else if obj.metadata().is_some_and(|m| m.contains_key("namespace")) {
        obj.metadata_mut().remove("namespace");
    }
    Ok(())
}

/// Problems every object can have: its name, labels, annotations and metadata field types.
pub fn validate_meta(info: &ResourceInfo, obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let empty = serde_json::Map::new();
    let meta = obj.metadata().unwrap_or(&empty);
    match meta.get("name") {
        Some(Value::String(name)) if !name.is_empty() => {
            for msg in validation::object_name(info.name_rule, name) {
                errs.push(FieldError::invalid("metadata.name", name, msg));
            }
        }
        Some(Value::String(_)) | None => errs.push(FieldError::required("metadata.name")),
        Some(other) => errs.push(FieldError::invalid(
            "metadata.name",
            &other.to_string(),
            "must be a string",
        )),
    }
    for field in ["labels", "annotations"] {
        match meta.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    let path = format!("metadata.{field}");
                    for msg in validation::qualified_name(k) {
                        errs.push(FieldError::invalid(&path, k, msg));
                    }
                    match v {
                        Value::String(s) if field == "labels" => {
                            for msg in validation::label_value(s) {
                                errs.push(FieldError::invalid(format!("{path}.{k}"), s, msg));
                            }
                        }
                        Value::String(_) => {}
                        other => errs.push(FieldError::invalid(
                            format!("{path}.{k}"),
                            &other.to_string(),
                            "must be a string",
                        )),
                    }
                }
            }
            Some(other) => errs.push(FieldError::invalid(
                format!("metadata.{field}"),
                &other.to_string(),
                "must be a map of strings",
            )),
        }
    }
    if let Some(f) = meta.get("finalizers")
        && !f.as_array().is_some_and(|a| a.iter().all(Value::is_string))
    {
        errs.push(FieldError::invalid(
            "metadata.finalizers",
            &f.to_string(),
            "must be a list of strings",
        ));
    }
    errs
}

/// Turns field errors into a 422, or passes.
pub fn invalid_if_any(
    info: &ResourceInfo,
    obj: &Value,
    errs: Vec<FieldError>,
) -> Result<(), StatusError> {
    if errs.is_empty() {
        Ok(())
    } else {
        Err(StatusError::invalid(
            &info.group,
            &info.kind,
            obj.name().unwrap_or(""),
            errs,
        ))
    }
}

const GENERATE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A name from `generateName`: the prefix and five random characters, as Kubernetes does.
pub fn generate_name(prefix: &str) -> String {
    let random = uuid::Uuid::new_v4();
    let suffix: String = random.as_bytes()[..5]
        .iter()
        .map(|b| GENERATE_ALPHABET[usize::from(*b) % GENERATE_ALPHABET.len()] as char)
        .collect();
    let max_prefix = 63 - 5;
    let prefix = if prefix.len() > max_prefix {
        &prefix[..max_prefix]
    } else {
        prefix
    };
    format!("{prefix}{suffix}")
}

fn has_spec_generation(info: &ResourceInfo) -> bool {
    info.custom
        || !matches!(
            info.kind.as_str(),
            "ConfigMap"
                | "Secret"
                | "Event"
                | "Endpoints"
                | "EndpointSlice"
                | "ServiceAccount"
                | "Lease"
                | "Namespace"
                | "Node"
                | "ControllerRevision"
                | "Role"
                | "ClusterRole"
                | "RoleBinding"
                | "ClusterRoleBinding"
        )
}

/// Server-set fields on create: name from generateName, uid, creationTimestamp, generation,
/// and the status a new object starts with.
pub fn prepare_create(info: &ResourceInfo, obj: &mut Value) -> Result<(), StatusError> {
    let meta = obj.metadata_mut();
    if meta
        .get("resourceVersion")
        .is_some_and(|v| v != "" && !v.is_null())
    {
        return Err(StatusError::bad_request(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    let name_empty = meta
        .get("name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    if name_empty
        && let Some(prefix) = meta.get("generateName").and_then(Value::as_str)
        && !prefix.is_empty()
    {
        let name = generate_name(prefix);
        meta.insert("name".into(), Value::String(name));
    }
    meta.insert(
        "uid".into(),
        Value::String(uuid::Uuid::new_v4().to_string()),
    );
    meta.insert("creationTimestamp".into(), Value::String(now()));
    meta.remove("resourceVersion");
    meta.remove("deletionTimestamp");
    meta.remove("deletionGracePeriodSeconds");
    meta.remove("managedFields");
    if has_spec_generation(info) {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    if info.has_subresource("status")
        && let Some(root) = obj.as_object_mut()
    {
        root.remove("status");
    }
    initial_status(info, obj);
    crate::defaults::apply(info, obj);
    if (info.group.as_str(), info.kind.as_str()) == ("batch", "Job") {
        job_selector(obj);
    }
    Ok(())
}

/// A Job without `manualSelector` gets a selector on its own uid, and its template the labels
/// that selector matches, as Kubernetes' Job strategy generates them.
fn job_selector(job: &mut Value) {
    if job.pointer("/spec/manualSelector") == Some(&Value::Bool(true))
        || job.pointer("/spec/selector").is_some_and(|s| !s.is_null())
    {
        return;
    }
    let uid = job.uid().unwrap_or("").to_string();
    let name = job.name().unwrap_or("").to_string();
    let Some(spec) = job.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    spec.insert(
        "selector".into(),
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
    );
    let Some(template) = spec.get_mut("template").and_then(Value::as_object_mut) else {
        return;
    };
    let meta = template.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    let labels = meta
        .as_object_mut()
        .map(|m| m.entry("labels").or_insert_with(|| json!({})));
    if let Some(Value::Object(labels)) = labels {
        for (k, v) in [
            ("batch.kubernetes.io/controller-uid", &uid),
            ("batch.kubernetes.io/job-name", &name),
            ("controller-uid", &uid),
            ("job-name", &name),
        ] {
            labels.insert(k.into(), Value::String(v.clone()));
        }
    }
}

/// The status some kinds are born with.
fn initial_status(info: &ResourceInfo, obj: &mut Value) {
    match (info.group.as_str(), info.kind.as_str()) {
        ("", "Pod") => {
            obj["status"] = json!({"phase": "Pending", "qosClass": qos_class(obj)});
        }
        ("", "PersistentVolume") | ("", "PersistentVolumeClaim") => {
            obj["status"] = json!({"phase": "Pending"});
        }
        ("", "Namespace") => {
            obj["status"] = json!({"phase": "Active"});
            obj["spec"]["finalizers"] = json!(["kubernetes"]);
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            let names = obj.path("spec.names").cloned().unwrap_or(json!({}));
            let t = now();
            obj["status"] = json!({
                "acceptedNames": names,
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                     "message": "no conflicts found", "lastTransitionTime": t},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                     "message": "the initial names have been accepted", "lastTransitionTime": t}
                ],
                "storedVersions": stored_versions(obj),
            });
        }
        _ => {}
    }
}

fn stored_versions(crd: &Value) -> Vec<String> {
    crd.path("spec.versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .filter_map(|v| v.get("name")?.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The pod QoS class from its containers' requests and limits.
fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|f| pod.path(&format!("spec.{f}"))?.as_array())
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = !containers.is_empty();
    for c in containers {
        let requests = c.path("resources.requests").and_then(Value::as_object);
        let limits = c.path("resources.limits").and_then(Value::as_object);
        if requests.is_some_and(|r| !r.is_empty()) || limits.is_some_and(|l| !l.is_empty()) {
            any = true;
        }
        let full = |m: Option<&Map<String, Value>>| {
            m.is_some_and(|m| m.contains_key("cpu") && m.contains_key("memory"))
        };
        let same = match (requests, limits) {
            (Some(r), Some(l)) => ["cpu", "memory"]
                .iter()
                .all(|k| r.get(*k).is_none_or(|v| l.get(*k) == Some(v))),
            (None, Some(_)) => true,
            _ => false,
        };
        if !full(limits) || !same {
            guaranteed = false;
        }
    }
    if guaranteed {
        "Guaranteed"
    } else if any {
        "Burstable"
    } else {
        "BestEffort"
    }
}

/// A copy of `obj` without what [`spec_changed`] never compares: its metadata (with the
/// managedFields) and status, the bulk of a pod or a Deployment. Defaulting reads neither for a
/// kind with a spec generation (only a Namespace's defaults read its name).
fn spec_only(obj: &Value) -> Value {
    let Some(m) = obj.as_object() else {
        return obj.clone();
    };
    Value::Object(
        m.iter()
            .filter(|(k, _)| !matches!(k.as_str(), "metadata" | "status"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

/// Whether the parts of an object other than metadata and status, which `generation` counts
/// changes of, differ.
fn spec_changed(old: &Value, new: &Value) -> bool {
    const NOT_SPEC: &[&str] = &["metadata", "status", "apiVersion", "kind"];
    match (old.as_object(), new.as_object()) {
        (Some(o), Some(n)) => !equal_except(o, n, NOT_SPEC),
        _ => old != new,
    }
}

/// What an update may change, by which path it came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateScope {
    /// The main resource: everything but status (for kinds with a status subresource).
    Main,
    /// The status subresource: only status.
    Status,
    /// A delete that must wait: like `Main`, but it may set `deletionTimestamp`,
    /// `deletionGracePeriodSeconds` and a terminating status.
    Delete,
    /// A pod's `ephemeralcontainers` subresource: only `spec.ephemeralContainers`.
    EphemeralContainers,
    /// A CertificateSigningRequest's `approval` subresource: only `status.conditions`.
    Approval,
}

/// Carries server-owned fields from the stored object into the updated one, keeps what the
/// scope may not change, and bumps `generation` when the spec changed.
pub fn prepare_update(info: &ResourceInfo, old: &Value, new: &mut Value, scope: UpdateScope) {
    match scope {
        UpdateScope::Status => {
            *new = take_from_update(old, new, None, "status");
            return;
        }
        UpdateScope::Approval => {
            *new = take_from_update(old, new, Some(("status", Parent::Make)), "conditions");
            return;
        }
        UpdateScope::EphemeralContainers => {
            let mut merged = take_from_update(
                old,
                new,
                Some(("spec", Parent::Keep)),
                "ephemeralContainers",
            );
            crate::defaults::apply(info, &mut merged);
            *new = merged;
            return;
        }
        UpdateScope::Main | UpdateScope::Delete => {}
    }
    // A pod's ephemeral containers change only through their subresource (as in Kubernetes, an
    // update of the pod itself keeps them).
    if scope != UpdateScope::Delete && info.group.is_empty() && info.kind == "Pod" {
        carry_field(
            old,
            new,
            Some(("spec", Parent::Keep)),
            "ephemeralContainers",
        );
    }
    if info.has_subresource("status") && scope == UpdateScope::Main {
        match (old.get("status"), new.as_object_mut()) {
            // Most updates carry the stored status back unchanged: compare before copying.
            (Some(s), Some(m)) if m.get("status") != Some(s) => {
                m.insert("status".into(), s.clone());
            }
            (None, Some(m)) => {
                m.remove("status");
            }
            _ => {}
        }
    }
    let empty = serde_json::Map::new();
    let old_meta = old.metadata().unwrap_or(&empty);
    let meta = new.metadata_mut();
    let carried: &[&str] = match scope {
        UpdateScope::Delete => &["uid", "creationTimestamp", "generation", "namespace"],
        _ => &[
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "namespace",
        ],
    };
    for field in carried.iter().copied() {
        match old_meta.get(field) {
            Some(v) => {
                meta.insert(field.into(), v.clone());
            }
            None => {
                meta.remove(field);
            }
        }
    }
    // managedFields left out (or empty) keep the stored ones; the field manager records the
    // write in them afterwards.
    let unset = match meta.get("managedFields") {
        None | Some(Value::Null) => true,
        Some(Value::Array(items)) => items.is_empty(),
        Some(_) => false,
    };
    if unset {
        match old_meta.get("managedFields") {
            Some(v) => {
                meta.insert("managedFields".into(), v.clone());
            }
            None => {
                meta.remove("managedFields");
            }
        }
    }
    crate::defaults::apply(info, new);
    // Compare with the old object defaulted too: one stored before a default existed has not
    // changed its spec just because the default now shows.
    if has_spec_generation(info) && spec_changed(old, new) && {
        let mut old_defaulted = spec_only(old);
        crate::defaults::apply(info, &mut old_defaulted);
        spec_changed(&old_defaulted, new)
    } {
        let g = old_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        new.set_meta("generation", json!(g + 1));
    }
}

/// Whether [`carry_field`] makes a missing parent object or leaves the object as it is.
#[derive(Clone, Copy)]
enum Parent {
    /// A missing parent is made (empty) before the field is set.
    Make,
    /// A missing parent leaves the object unchanged.
    Keep,
}

/// Sets the field `key` of `into` (under its top-level object `parent`, if given) to `from`'s,
/// removing it where `from` has none.
fn carry_field(from: &Value, into: &mut Value, parent: Option<(&str, Parent)>, key: &str) {
    let value = match parent {
        None => from.get(key),
        Some((p, _)) => from.get(p).and_then(|v| v.get(key)),
    }
    .cloned();
    let target = match parent {
        None => into.as_object_mut(),
        Some((p, Parent::Make)) => into
            .as_object_mut()
            .map(|m| m.entry(p).or_insert_with(|| json!({})))
            .and_then(Value::as_object_mut),
        Some((p, Parent::Keep)) => into.get_mut(p).and_then(Value::as_object_mut),
    };
    if let Some(target) = target {
        match value {
            Some(v) => {
                target.insert(key.into(), v);
            }
            None => {
                target.remove(key);
            }
        }
    }
}

/// An update through a subresource: the stored object with one field taken from the update
/// (see [`carry_field`]) and the update's resourceVersion precondition; everything else stays
/// as stored.
fn take_from_update(old: &Value, new: &Value, parent: Option<(&str, Parent)>, key: &str) -> Value {
    let mut merged = old.clone();
    carry_field(new, &mut merged, parent, key);
    if let Some(rv) = new.resource_version() {
        merged.set_meta("resourceVersion", Value::String(rv.to_string()));
    }
    merged
}

/// Whether an object marked for deletion has nothing left to wait for: no finalizers (for
/// namespaces, none in `spec.finalizers` either) and no grace period running.
pub fn ready_to_remove(obj: &Value) -> bool {
    let marked = obj.path("metadata.deletionTimestamp").is_some();
    let grace = obj
        .path("metadata.deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let spec_finalizers = obj
        .path("spec.finalizers")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
        && obj.kind() == Some("Namespace");
    marked && grace == 0 && obj.finalizers().is_empty() && !spec_finalizers
}

/// Whether two versions of an object differ in anything but their resourceVersion.
pub fn changed(old: &Value, new: &Value) -> bool {
    let (Some(o), Some(n)) = (old.as_object(), new.as_object()) else {
        return old != new;
    };
    if !equal_except(o, n, &["metadata"]) {
        return true;
    }
    match (o.get("metadata"), n.get("metadata")) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            !equal_except(a, b, &["resourceVersion"])
        }
        (a, b) => a != b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apimachinery::registry::Registry;

    fn info(plural: &str) -> std::sync::Arc<ResourceInfo> {
        let r = Registry::builtin();
        r.iter().find(|i| i.plural == plural).cloned().unwrap()
    }

    #[test]
    fn create_sets_server_fields_and_generates_names() {
        let deploy = info("deployments");
        let mut obj = json!({"metadata": {"generateName": "web-"}, "spec": {}, "status": {"x": 1}});
        prepare_create(&deploy, &mut obj).unwrap();
        let name = obj.name().unwrap();
        assert!(name.starts_with("web-") && name.len() == 9, "{name}");
        assert_eq!(obj["metadata"]["generation"], 1);
        assert!(obj.get("status").is_none());
        assert!(obj.uid().is_some());
        let mut bad = json!({"metadata": {"name": "x", "resourceVersion": "5"}});
        assert!(prepare_create(&deploy, &mut bad).is_err());
    }

    #[test]
    fn update_bumps_generation_only_on_spec_changes() {
        let deploy = info("deployments");
        let old = json!({"metadata": {"name": "a", "uid": "u", "generation": 3},
                         "spec": {"replicas": 1}, "status": {"replicas": 1}});
        let mut new = json!({"metadata": {"name": "a", "labels": {"x": "y"}},
                             "spec": {"replicas": 1}, "status": {"replicas": 9}});
        prepare_update(&deploy, &old, &mut new, UpdateScope::Main);
        assert_eq!(new["metadata"]["generation"], 3);
        assert_eq!(new["metadata"]["uid"], "u");
        assert_eq!(new["status"]["replicas"], 1);
        let mut new = json!({"metadata": {"name": "a"}, "spec": {"replicas": 2}});
        prepare_update(&deploy, &old, &mut new, UpdateScope::Main);
        assert_eq!(new["metadata"]["generation"], 4);
        let mut st =
            json!({"metadata": {"name": "a"}, "spec": {"replicas": 7}, "status": {"replicas": 2}});
        prepare_update(&deploy, &old, &mut st, UpdateScope::Status);
        assert_eq!(st["spec"]["replicas"], 1);
        assert_eq!(st["status"]["replicas"], 2);
    }

    #[test]
    fn identity_checks_catch_wrong_kinds_and_namespaces() {
        let cm = info("configmaps");
        let mut ok = json!({"metadata": {"name": "c"}});
        check_identity(&cm, Some("ns"), &mut ok).unwrap();
        assert_eq!(ok["kind"], "ConfigMap");
        assert_eq!(ok["metadata"]["namespace"], "ns");
        let mut wrong = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "c"}});
        assert_eq!(
            check_identity(&cm, Some("ns"), &mut wrong)
                .unwrap_err()
                .code(),
            400
        );
        let mut other_ns = json!({"metadata": {"name": "c", "namespace": "b"}});
        assert!(check_identity(&cm, Some("a"), &mut other_ns).is_err());
        let bad = json!({"metadata": {"name": "Bad_Name", "labels": {"a": "has space"}}});
        assert_eq!(validate_meta(&cm, &bad).len(), 2);
    }

    #[test]
    fn jobs_get_a_selector_on_their_uid_unless_manual() {
        let mut obj = json!({"metadata": {"name": "pi"}, "spec": {"template": {"spec": {}}}});
        prepare_create(&info("jobs"), &mut obj).unwrap();
        let uid = obj["metadata"]["uid"].clone();
        assert_eq!(
            obj["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
            uid
        );
        let labels = &obj["spec"]["template"]["metadata"]["labels"];
        assert_eq!(labels["batch.kubernetes.io/job-name"], "pi");
        assert_eq!(labels["controller-uid"], uid);

        let mut manual = json!({"metadata": {"name": "m"}, "spec": {"manualSelector": true,
            "selector": {"matchLabels": {"a": "b"}}, "template": {"spec": {}}}});
        prepare_create(&info("jobs"), &mut manual).unwrap();
        assert_eq!(
            manual["spec"]["selector"],
            json!({"matchLabels": {"a": "b"}})
        );
    }

    #[test]
    fn pods_get_a_qos_class() {
        let guaranteed = json!({"spec": {"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}});
        assert_eq!(qos_class(&guaranteed), "Guaranteed");
        let burst = json!({"spec": {"containers": [{"resources": {"requests": {"cpu": "1"}}}]}});
        assert_eq!(qos_class(&burst), "Burstable");
        assert_eq!(
            qos_class(&json!({"spec": {"containers": [{}]}})),
            "BestEffort"
        );
    }
}
