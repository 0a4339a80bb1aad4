//! Validation of the built-in kinds as Kubernetes validates them (`pkg/apis/*/validation`):
//! required fields, names, unique container and port names, ranges, selectors that must match
//! their template's labels, and the fields an update may not change. Every problem of an object
//! is reported at once, with Kubernetes' field paths and wording.
//!
//! Objects have already passed the typed check (`typed::check`), so fields have the right JSON
//! types; values of the wrong type are skipped here rather than reported twice.

use serde_json::{Map, Value};

use crate::object::equal_except;
use crate::registry::GroupVersionKind;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as Metav1Selector;

use crate::selector::LabelSelector;
use crate::status::FieldError;
use crate::validation::{dns1123_label, dns1123_subdomain, label_value, qualified_name};

type Errs = Vec<FieldError>;

const PROTOCOLS: [&str; 3] = ["SCTP", "TCP", "UDP"];
const PULL_POLICIES: [&str; 3] = ["Always", "IfNotPresent", "Never"];

fn get<'a>(v: &'a Value, field: &str) -> Option<&'a Value> {
    v.get(field).filter(|v| !v.is_null())
}

fn str_of<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    get(v, field).and_then(Value::as_str)
}

fn list<'a>(v: &'a Value, field: &str) -> &'a [Value] {
    get(v, field)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Problems with an object of a built-in kind on create and update (none for kinds without
/// rules here).
pub fn validate(gvk: &GroupVersionKind, obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match (gvk.group.as_str(), gvk.kind.as_str()) {
        ("", "Pod") => {
            if let Some(spec) = get(obj, "spec") {
                pod_spec(spec, "spec", &mut errs);
            } else {
                errs.push(FieldError::required("spec.containers"));
            }
        }
        ("", "Service") => service(obj, &mut errs),
        ("", "ConfigMap") => config_keys(obj, &["data", "binaryData"], &mut errs),
        ("", "Secret") => config_keys(obj, &["data", "stringData"], &mut errs),
        ("", "PodTemplate") => {
            if let Some(t) = get(obj, "template") {
                template(t, "template", None, &mut errs);
            }
        }
        ("apps", kind @ ("Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet")) => {
            workload(kind, obj, &mut errs);
        }
        ("batch", "Job") => job(obj, &mut errs),
        (
            "admissionregistration.k8s.io",
            kind @ ("MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration"),
        ) => webhooks(kind.starts_with("Mutating"), obj, &mut errs),
        ("batch", "CronJob") => {
            if obj
                .pointer("/spec/schedule")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                errs.push(FieldError::required("spec.schedule"));
            }
            if let Some(jt) = obj.pointer("/spec/jobTemplate/spec/template") {
                template(
                    jt,
                    "spec.jobTemplate.spec.template",
                    Some(&["OnFailure", "Never"]),
                    &mut errs,
                );
            } else {
                errs.push(FieldError::required(
                    "spec.jobTemplate.spec.template.spec.containers",
                ));
            }
        }
        _ => {}
    }
    errs
}

/// Whether an update of a pod's spec from `old` to `new` keeps every field a pod update may not
/// change: all but `activeDeadlineSeconds`, `tolerations`, `schedulingGates`, the ephemeral
/// containers (their own rule), `nodeName` while unbound and the containers' images. Compared
/// in place: every status write and binding of a pod passes here.
fn pod_spec_kept(old: Option<&Value>, new: Option<&Value>, unbound: bool) -> bool {
    let (Some(Value::Object(o)), Some(Value::Object(n))) = (old, new) else {
        return old.unwrap_or(&Value::Null) == new.unwrap_or(&Value::Null);
    };
    const LISTS: [&str; 2] = ["containers", "initContainers"];
    const MUTABLE: [&str; 7] = [
        "activeDeadlineSeconds",
        "tolerations",
        "schedulingGates",
        "ephemeralContainers",
        "containers",
        "initContainers",
        "nodeName",
    ];
    // `nodeName`, last, may change only while the pod is unbound.
    let skip = if unbound { &MUTABLE[..] } else { &MUTABLE[..6] };
    equal_except(o, n, skip) && LISTS.iter().all(|l| same_but_images(o.get(*l), n.get(*l)))
}

/// Whether two container lists are equal but for the containers' `image`.
fn same_but_images(a: Option<&Value>, b: Option<&Value>) -> bool {
    let (Some(a), Some(b)) = (a.and_then(Value::as_array), b.and_then(Value::as_array)) else {
        return a == b;
    };
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| match (x.as_object(), y.as_object()) {
                (Some(x), Some(y)) => equal_except(x, y, &["image"]),
                _ => x == y,
            })
}

/// A container that its pod does not restart may not leave the terminated state
/// (kube-apiserver's `ValidateContainerStateTransition`): under `restartPolicy: Never`, or
/// `OnFailure` after exit code 0. A sidecar (an init container with `restartPolicy: Always`)
/// restarts whatever the pod's policy. A status write that does so (a stale write of a node
/// agent landing after the container's exit, say) is refused rather than making a finished
/// container run again.
fn container_state_transitions(old: &Value, new: &Value, errs: &mut Errs) {
    let policy = old
        .pointer("/spec/restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or("Always");
    if policy == "Always" {
        return;
    }
    let spec = get(old, "spec").unwrap_or(&Value::Null);
    let (old_status, new_status) = (
        get(old, "status").unwrap_or(&Value::Null),
        get(new, "status").unwrap_or(&Value::Null),
    );
    let terminated = |s: &Value| s.pointer("/state/terminated").is_some_and(|t| !t.is_null());
    for (statuses, containers) in [
        ("containerStatuses", "containers"),
        ("initContainerStatuses", "initContainers"),
    ] {
        let now = list(new_status, statuses);
        for (i, was) in list(old_status, statuses).iter().enumerate() {
            let Some(name) = str_of(was, "name") else {
                continue;
            };
            let exit = was
                .pointer("/state/terminated/exitCode")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let sidecar = list(spec, containers).iter().any(|c| {
                str_of(c, "name") == Some(name) && str_of(c, "restartPolicy") == Some("Always")
            });
            if !terminated(was) || (exit != 0 && policy == "OnFailure") || sidecar {
                continue;
            }
            if now
                .iter()
                .any(|n| str_of(n, "name") == Some(name) && !terminated(n))
            {
                errs.push(FieldError::forbidden(
                    format!("status.{statuses}[{i}].state"),
                    "may not be transitioned to non-terminated state",
                ));
            }
        }
    }
}

/// Problems with an update of a built-in kind: the fields Kubernetes makes immutable.
pub fn validate_update(gvk: &GroupVersionKind, old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let changed = |p: &str| old.pointer(p).is_some() && old.pointer(p) != new.pointer(p);
    let immutable = |errs: &mut Errs, pointer: &str, field: &str| {
        if changed(pointer) {
            let v = new.pointer(pointer).cloned().unwrap_or(Value::Null);
            errs.push(FieldError::invalid_value(field, &v, "field is immutable"));
        }
    };
    match (gvk.group.as_str(), gvk.kind.as_str()) {
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet") => {
            immutable(&mut errs, "/spec/selector", "spec.selector");
        }
        ("apps", "StatefulSet") => {
            let strip = |v: &Value| {
                let mut spec = v.get("spec").cloned().unwrap_or(Value::Null);
                if let Some(m) = spec.as_object_mut() {
                    for f in [
                        "replicas",
                        "ordinals",
                        "template",
                        "updateStrategy",
                        "persistentVolumeClaimRetentionPolicy",
                        "minReadySeconds",
                    ] {
                        m.remove(f);
                    }
                }
                spec
            };
            if strip(old) != strip(new) {
                errs.push(FieldError::forbidden("spec", "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"));
            }
        }
        ("batch", "Job") => {
            immutable(&mut errs, "/spec/selector", "spec.selector");
            immutable(&mut errs, "/spec/completions", "spec.completions");
            if changed("/spec/template") {
                let v = new
                    .pointer("/spec/template")
                    .cloned()
                    .unwrap_or(Value::Null);
                errs.push(FieldError::invalid_value(
                    "spec.template",
                    &v,
                    "field is immutable",
                ));
            }
        }
        ("", "Pod") => {
            // Only images, activeDeadlineSeconds, added tolerations and the scheduling gates
            // may change, and nodeName once (the binding subresource goes through here).
            let unbound = old
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty);
            // Ephemeral containers may be added, never changed or removed.
            let ephemeral = |v: &Value| {
                v.pointer("/spec/ephemeralContainers")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            };
            let now = ephemeral(new);
            for (i, c) in ephemeral(old).iter().enumerate() {
                let name = str_of(c, "name").unwrap_or("");
                match now.iter().find(|n| str_of(n, "name") == Some(name)) {
                    Some(n) if n == c => {}
                    Some(_) => errs.push(FieldError::forbidden(
                        format!("spec.ephemeralContainers[{i}]"),
                        format!("existing ephemeral containers \"{name}\" may not be changed"),
                    )),
                    None => errs.push(FieldError::forbidden(
                        "spec.ephemeralContainers",
                        format!("existing ephemeral containers \"{name}\" may not be removed"),
                    )),
                }
            }
            container_state_transitions(old, new, &mut errs);
            if !pod_spec_kept(old.get("spec"), new.get("spec"), unbound) {
                errs.push(FieldError::forbidden(
                    "spec",
                    "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
                ));
            }
        }
        ("", "Secret" | "ConfigMap") if old.get("immutable") == Some(&Value::Bool(true)) => {
            for f in ["data", "binaryData"] {
                if old.get(f) != new.get(f) {
                    errs.push(FieldError::forbidden(
                        f,
                        "field is immutable when `immutable` is set",
                    ));
                }
            }
            if new.get("immutable") != Some(&Value::Bool(true)) {
                errs.push(FieldError::forbidden(
                    "immutable",
                    "field is immutable when `immutable` is set",
                ));
            }
        }
        _ => {}
    }
    errs
}

fn name_errors(field: &str, name: &str, errs: &mut Errs) {
    for msg in dns1123_label(name) {
        errs.push(FieldError::invalid(field, name, msg));
    }
}

fn labels(map: Option<&Value>, field: &str, errs: &mut Errs) {
    let Some(m) = map.and_then(Value::as_object) else {
        return;
    };
    for (k, v) in m {
        for msg in qualified_name(k) {
            errs.push(FieldError::invalid(field, k, msg));
        }
        if let Some(s) = v.as_str() {
            for msg in label_value(s) {
                errs.push(FieldError::invalid(format!("{field}[{k}]"), s, msg));
            }
        }
    }
}

fn port_range(v: &Value, field: &str, min: i64, errs: &mut Errs) {
    if let Some(n) = v.as_i64()
        && !(min..=65535).contains(&n)
    {
        errs.push(FieldError::invalid_value(
            field,
            v,
            format!("must be between {min} and 65535, inclusive"),
        ));
    }
}

fn enum_value(v: Option<&Value>, field: &str, allowed: &[&str], errs: &mut Errs) {
    if let Some(s) = v.and_then(Value::as_str)
        && !allowed.contains(&s)
    {
        errs.push(FieldError::not_supported(field, &Value::from(s), allowed));
    }
}

fn iana_svc_name(name: &str) -> Option<&'static str> {
    if name.len() > 15 {
        return Some("must be no more than 15 characters");
    }
    let ok = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.chars().any(|c| c.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    (!ok).then_some("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-), must contain at least one letter (a-z), must not start or end with a hyphen, and hyphens cannot be adjacent to other hyphens")
}

fn container(c: &Value, field: &str, volumes: &[String], names: &mut Vec<String>, errs: &mut Errs) {
    match str_of(c, "name") {
        None | Some("") => errs.push(FieldError::required(format!("{field}.name"))),
        Some(name) => {
            name_errors(&format!("{field}.name"), name, errs);
            if names.iter().any(|n| n == name) {
                errs.push(FieldError::duplicate(
                    format!("{field}.name"),
                    &Value::from(name),
                ));
            }
            names.push(name.to_string());
        }
    }
    if str_of(c, "image").is_none_or(|i| i.trim().is_empty()) {
        errs.push(FieldError::required(format!("{field}.image")));
    }
    enum_value(
        get(c, "imagePullPolicy"),
        &format!("{field}.imagePullPolicy"),
        &PULL_POLICIES,
        errs,
    );
    let mut port_names: Vec<&str> = Vec::new();
    for (i, p) in list(c, "ports").iter().enumerate() {
        let pf = format!("{field}.ports[{i}]");
        match get(p, "containerPort") {
            None => errs.push(FieldError::required(format!("{pf}.containerPort"))),
            Some(v) => port_range(v, &format!("{pf}.containerPort"), 1, errs),
        }
        if let Some(v) = get(p, "hostPort") {
            port_range(v, &format!("{pf}.hostPort"), 0, errs);
        }
        if let Some(name) = str_of(p, "name").filter(|n| !n.is_empty()) {
            if let Some(msg) = iana_svc_name(name) {
                errs.push(FieldError::invalid(format!("{pf}.name"), name, msg));
            }
            if port_names.contains(&name) {
                errs.push(FieldError::duplicate(
                    format!("{pf}.name"),
                    &Value::from(name),
                ));
            }
            port_names.push(name);
        }
        enum_value(
            get(p, "protocol"),
            &format!("{pf}.protocol"),
            &PROTOCOLS,
            errs,
        );
    }
    for (i, e) in list(c, "env").iter().enumerate() {
        if str_of(e, "name").is_none_or(str::is_empty) {
            errs.push(FieldError::required(format!("{field}.env[{i}].name")));
        }
    }
    let mut paths: Vec<&str> = Vec::new();
    for (i, m) in list(c, "volumeMounts").iter().enumerate() {
        let mf = format!("{field}.volumeMounts[{i}]");
        match str_of(m, "name") {
            None | Some("") => errs.push(FieldError::required(format!("{mf}.name"))),
            Some(n) if !volumes.iter().any(|v| v == n) => {
                errs.push(FieldError::not_found(format!("{mf}.name"), &Value::from(n)));
            }
            Some(_) => {}
        }
        match str_of(m, "mountPath") {
            None | Some("") => errs.push(FieldError::required(format!("{mf}.mountPath"))),
            Some(p) => {
                if paths.contains(&p) {
                    errs.push(FieldError::invalid(
                        format!("{mf}.mountPath"),
                        p,
                        "must be unique",
                    ));
                }
                paths.push(p);
            }
        }
    }
}

/// What an ephemeral container may not have, beyond a container's checks: Kubernetes' words
/// for ports, probes, lifecycle hooks, resources and the rest it forbids.
fn ephemeral_container(c: &Value, field: &str, errs: &mut Errs) {
    for f in [
        "ports",
        "livenessProbe",
        "readinessProbe",
        "startupProbe",
        "lifecycle",
        "resizePolicy",
        "restartPolicy",
    ] {
        let set = match get(c, f) {
            None | Some(Value::Null) => false,
            Some(Value::Array(a)) => !a.is_empty(),
            Some(_) => true,
        };
        if set {
            errs.push(FieldError::forbidden(
                format!("{field}.{f}"),
                "cannot be set for an Ephemeral Container",
            ));
        }
    }
    let resources = get(c, "resources").and_then(Value::as_object);
    if resources.is_some_and(|r| {
        r.values()
            .any(|v| v.as_object().is_none_or(|m| !m.is_empty()))
    }) {
        errs.push(FieldError::forbidden(
            format!("{field}.resources"),
            "cannot be set for an Ephemeral Container",
        ));
    }
}

/// Problems that only a create has: a pod may not be created with ephemeral containers (they
/// are added through the `ephemeralcontainers` subresource).
pub fn validate_create(gvk: &GroupVersionKind, obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if gvk.group.is_empty()
        && gvk.kind == "Pod"
        && !list(
            obj.get("spec").unwrap_or(&Value::Null),
            "ephemeralContainers",
        )
        .is_empty()
    {
        errs.push(FieldError::forbidden(
            "spec.ephemeralContainers",
            "cannot be set on create",
        ));
    }
    errs
}

/// Problems with a pod spec under `field`.
fn pod_spec(spec: &Value, field: &str, errs: &mut Errs) {
    let mut volumes = Vec::new();
    for (i, v) in list(spec, "volumes").iter().enumerate() {
        let vf = format!("{field}.volumes[{i}].name");
        match str_of(v, "name") {
            None | Some("") => errs.push(FieldError::required(vf)),
            Some(n) => {
                name_errors(&vf, n, errs);
                if volumes.iter().any(|x| x == n) {
                    errs.push(FieldError::duplicate(vf, &Value::from(n)));
                }
                volumes.push(n.to_string());
            }
        }
    }
    let containers = list(spec, "containers");
    if containers.is_empty() {
        errs.push(FieldError::required(format!("{field}.containers")));
    }
    let mut names = Vec::new();
    for (i, c) in containers.iter().enumerate() {
        container(
            c,
            &format!("{field}.containers[{i}]"),
            &volumes,
            &mut names,
            errs,
        );
    }
    for (i, c) in list(spec, "initContainers").iter().enumerate() {
        container(
            c,
            &format!("{field}.initContainers[{i}]"),
            &volumes,
            &mut names,
            errs,
        );
    }
    for (i, c) in list(spec, "ephemeralContainers").iter().enumerate() {
        let cf = format!("{field}.ephemeralContainers[{i}]");
        container(c, &cf, &volumes, &mut names, errs);
        ephemeral_container(c, &cf, errs);
    }
    enum_value(
        get(spec, "restartPolicy"),
        &format!("{field}.restartPolicy"),
        &["Always", "OnFailure", "Never"],
        errs,
    );
    enum_value(
        get(spec, "dnsPolicy"),
        &format!("{field}.dnsPolicy"),
        &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
        errs,
    );
    if let Some(v) = get(spec, "terminationGracePeriodSeconds")
        && v.as_i64().is_some_and(|n| n < 0)
    {
        errs.push(FieldError::invalid_value(
            format!("{field}.terminationGracePeriodSeconds"),
            v,
            "must be greater than or equal to 0",
        ));
    }
    if let Some(v) = get(spec, "activeDeadlineSeconds")
        && v.as_i64().is_some_and(|n| n <= 0)
    {
        errs.push(FieldError::invalid_value(
            format!("{field}.activeDeadlineSeconds"),
            v,
            "must be between 1 and 2147483647, inclusive",
        ));
    }
    if let Some(sa) = str_of(spec, "serviceAccountName").filter(|s| !s.is_empty()) {
        for msg in dns1123_subdomain(sa) {
            errs.push(FieldError::invalid(
                format!("{field}.serviceAccountName"),
                sa,
                msg,
            ));
        }
    }
    labels(
        get(spec, "nodeSelector"),
        &format!("{field}.nodeSelector"),
        errs,
    );
}

/// Problems with a pod template under `field`; `restart` lists the restart policies the owner
/// allows (None: any).
fn template(t: &Value, field: &str, restart: Option<&[&str]>, errs: &mut Errs) {
    labels(
        t.pointer("/metadata/labels"),
        &format!("{field}.metadata.labels"),
        errs,
    );
    match get(t, "spec") {
        None => errs.push(FieldError::required(format!("{field}.spec.containers"))),
        Some(spec) => {
            pod_spec(spec, &format!("{field}.spec"), errs);
            if !list(spec, "ephemeralContainers").is_empty() {
                errs.push(FieldError::forbidden(
                    format!("{field}.spec.ephemeralContainers"),
                    "ephemeral containers not allowed in pod template",
                ));
            }
            if let Some(allowed) = restart {
                let rf = format!("{field}.spec.restartPolicy");
                match str_of(spec, "restartPolicy") {
                    None if allowed.len() > 1 => {
                        errs.push(FieldError::required_because(
                            rf,
                            "valid values: \"OnFailure\", \"Never\"",
                        ));
                    }
                    Some(r) if !allowed.contains(&r) => {
                        errs.push(FieldError::not_supported(rf, &Value::from(r), allowed));
                    }
                    _ => {}
                }
            }
        }
    }
}

fn go_map(labels: &Map<String, Value>) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k:?}:{:?}", v.as_str().unwrap_or("")))
        .collect();
    format!("map[string]string{{{}}}", pairs.join(", "))
}

/// Checks `spec.selector` (required, non-empty, valid) and that it selects the template's labels.
fn selector_matches_template(obj: &Value, kind: &str, errs: &mut Errs) {
    let Some(sel) = obj.pointer("/spec/selector").filter(|v| !v.is_null()) else {
        errs.push(FieldError::required("spec.selector"));
        return;
    };
    let empty = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty)
        && sel
            .get("matchExpressions")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
    if empty {
        errs.push(FieldError::invalid_value(
            "spec.selector",
            sel,
            format!("empty selector is invalid for {}", kind.to_lowercase()),
        ));
        return;
    }
    labels(sel.get("matchLabels"), "spec.selector.matchLabels", errs);
    let parsed: Result<Metav1Selector, _> = serde_json::from_value(sel.clone());
    let Ok(parsed) = parsed else {
        return;
    };
    let Ok(matcher) = LabelSelector::from_metav1(&parsed) else {
        errs.push(FieldError::invalid_value(
            "spec.selector",
            sel,
            "invalid label selector",
        ));
        return;
    };
    let template_labels = obj
        .pointer("/spec/template/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let as_strings: std::collections::BTreeMap<String, String> = template_labels
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
        .collect();
    if !matcher.matches(&as_strings) {
        errs.push(FieldError {
            field: "spec.template.metadata.labels".into(),
            reason: "FieldValueInvalid".into(),
            message: format!(
                "Invalid value: {}: `selector` does not match template `labels`",
                go_map(&template_labels)
            ),
        });
    }
}

fn non_negative(obj: &Value, pointer: &str, field: &str, errs: &mut Errs) {
    if let Some(v) = obj.pointer(pointer).filter(|v| !v.is_null())
        && v.as_i64().is_some_and(|n| n < 0)
    {
        errs.push(FieldError::invalid_value(
            field,
            v,
            "must be greater than or equal to 0",
        ));
    }
}

/// A StatefulSet's template with a volume for each `volumeClaimTemplates` entry it does not
/// name itself, as the controller gives its pods: mounts may name the claim templates.
fn with_claim_volumes(obj: &Value, template: &Value) -> Value {
    let mut t = template.clone();
    let claims: Vec<String> = obj
        .pointer("/spec/volumeClaimTemplates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.pointer("/metadata/name").and_then(Value::as_str))
        .map(str::to_string)
        .collect();
    if claims.is_empty() {
        return t;
    }
    let Some(spec) = t.get_mut("spec").and_then(Value::as_object_mut) else {
        return t;
    };
    let volumes = spec
        .entry("volumes")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Some(list) = volumes.as_array_mut() {
        for name in claims {
            if !list
                .iter()
                .any(|v| v.get("name").and_then(Value::as_str) == Some(&name))
            {
                list.push(serde_json::json!({"name": name,
                    "persistentVolumeClaim": {"claimName": name}}));
            }
        }
    }
    t
}

fn workload(kind: &str, obj: &Value, errs: &mut Errs) {
    non_negative(obj, "/spec/replicas", "spec.replicas", errs);
    non_negative(obj, "/spec/minReadySeconds", "spec.minReadySeconds", errs);
    non_negative(
        obj,
        "/spec/revisionHistoryLimit",
        "spec.revisionHistoryLimit",
        errs,
    );
    selector_matches_template(obj, kind, errs);
    match obj.pointer("/spec/template").filter(|v| !v.is_null()) {
        None => errs.push(FieldError::required("spec.template")),
        Some(t) if kind == "StatefulSet" => template(
            &with_claim_volumes(obj, t),
            "spec.template",
            Some(&["Always"]),
            errs,
        ),
        Some(t) => template(t, "spec.template", Some(&["Always"]), errs),
    }
    if kind == "Deployment" {
        enum_value(
            obj.pointer("/spec/strategy/type"),
            "spec.strategy.type",
            &["Recreate", "RollingUpdate"],
            errs,
        );
        if obj.pointer("/spec/strategy/type").and_then(Value::as_str) == Some("Recreate")
            && obj
                .pointer("/spec/strategy/rollingUpdate")
                .is_some_and(|v| !v.is_null())
        {
            errs.push(FieldError::forbidden(
                "spec.strategy.rollingUpdate",
                "may not be specified when strategy `type` is 'Recreate'",
            ));
        }
    }
}

fn job(obj: &Value, errs: &mut Errs) {
    for (p, f) in [
        ("/spec/parallelism", "spec.parallelism"),
        ("/spec/completions", "spec.completions"),
        ("/spec/backoffLimit", "spec.backoffLimit"),
        ("/spec/activeDeadlineSeconds", "spec.activeDeadlineSeconds"),
    ] {
        non_negative(obj, p, f, errs);
    }
    selector_matches_template(obj, "Job", errs);
    match obj.pointer("/spec/template").filter(|v| !v.is_null()) {
        None => errs.push(FieldError::required("spec.template")),
        Some(t) => template(t, "spec.template", Some(&["OnFailure", "Never"]), errs),
    }
}

fn webhooks(mutating: bool, obj: &Value, errs: &mut Errs) {
    let mut names: Vec<&str> = Vec::new();
    for (i, h) in list(obj, "webhooks").iter().enumerate() {
        let f = format!("webhooks[{i}]");
        match str_of(h, "name") {
            None | Some("") => errs.push(FieldError::required(format!("{f}.name"))),
            Some(n) => {
                let parts = n.split('.').count();
                if parts < 3 || !dns1123_subdomain(n).is_empty() {
                    errs.push(FieldError::invalid(
                        format!("{f}.name"),
                        n,
                        "should be a domain with at least three segments separated by dots",
                    ));
                }
                if names.contains(&n) {
                    errs.push(FieldError::duplicate(format!("{f}.name"), &Value::from(n)));
                }
                names.push(n);
            }
        }
        if !list(h, "admissionReviewVersions")
            .iter()
            .any(|v| v.as_str() == Some("v1"))
        {
            errs.push(FieldError::required_because(
                format!("{f}.admissionReviewVersions"),
                "must include at least one of v1",
            ));
        }
        match get(h, "sideEffects") {
            None => errs.push(FieldError::required_because(
                format!("{f}.sideEffects"),
                "must specify one of None, NoneOnDryRun",
            )),
            v => enum_value(
                v,
                &format!("{f}.sideEffects"),
                &["None", "NoneOnDryRun"],
                errs,
            ),
        }
        enum_value(
            get(h, "failurePolicy"),
            &format!("{f}.failurePolicy"),
            &["Fail", "Ignore"],
            errs,
        );
        if mutating {
            enum_value(
                get(h, "reinvocationPolicy"),
                &format!("{f}.reinvocationPolicy"),
                &["IfNeeded", "Never"],
                errs,
            );
        }
        if let Some(t) = get(h, "timeoutSeconds")
            && t.as_i64().is_some_and(|t| !(1..=30).contains(&t))
        {
            errs.push(FieldError::invalid_value(
                format!("{f}.timeoutSeconds"),
                t,
                "the timeout value must be between 1 and 30 seconds",
            ));
        }
        let cc = get(h, "clientConfig").cloned().unwrap_or(Value::Null);
        match (str_of(&cc, "url"), get(&cc, "service")) {
            (Some(_), Some(_)) | (None, None) => errs.push(FieldError::required_because(
                format!("{f}.clientConfig"),
                "exactly one of url or service is required",
            )),
            (Some(url), None) if !url.starts_with("https://") => {
                errs.push(FieldError::invalid(
                    format!("{f}.clientConfig.url"),
                    url,
                    "'https' is the only allowed URL scheme",
                ));
            }
            (None, Some(svc)) => {
                for field in ["namespace", "name"] {
                    if str_of(svc, field).is_none_or(str::is_empty) {
                        errs.push(FieldError::required(format!(
                            "{f}.clientConfig.service.{field}"
                        )));
                    }
                }
            }
            _ => {}
        }
        for (j, r) in list(h, "rules").iter().enumerate() {
            enum_value(
                get(r, "scope"),
                &format!("{f}.rules[{j}].scope"),
                &["*", "Cluster", "Namespaced"],
                errs,
            );
            for field in ["operations", "apiGroups", "apiVersions", "resources"] {
                if list(r, field).is_empty() {
                    errs.push(FieldError::required(format!("{f}.rules[{j}].{field}")));
                }
            }
        }
    }
}

fn service(obj: &Value, errs: &mut Errs) {
    let spec = get(obj, "spec").cloned().unwrap_or(Value::Null);
    let kind = str_of(&spec, "type").unwrap_or("ClusterIP");
    enum_value(
        get(&spec, "type"),
        "spec.type",
        &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        errs,
    );
    let ports = list(&spec, "ports");
    if kind == "ExternalName" {
        match str_of(&spec, "externalName") {
            None | Some("") => errs.push(FieldError::required("spec.externalName")),
            Some(n) => {
                for msg in dns1123_subdomain(n) {
                    errs.push(FieldError::invalid("spec.externalName", n, msg));
                }
            }
        }
    } else if ports.is_empty() && str_of(&spec, "clusterIP") != Some("None") {
        errs.push(FieldError::required("spec.ports"));
    }
    let mut names: Vec<&str> = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let pf = format!("spec.ports[{i}]");
        match str_of(p, "name").filter(|n| !n.is_empty()) {
            None if ports.len() > 1 => errs.push(FieldError::required(format!("{pf}.name"))),
            None => {}
            Some(n) => {
                name_errors(&format!("{pf}.name"), n, errs);
                if names.contains(&n) {
                    errs.push(FieldError::duplicate(format!("{pf}.name"), &Value::from(n)));
                }
                names.push(n);
            }
        }
        match get(p, "port") {
            None => errs.push(FieldError::required(format!("{pf}.port"))),
            Some(v) => port_range(v, &format!("{pf}.port"), 1, errs),
        }
        match get(p, "targetPort") {
            Some(v @ Value::Number(_)) => port_range(v, &format!("{pf}.targetPort"), 1, errs),
            Some(Value::String(s)) => {
                if let Some(msg) = iana_svc_name(s) {
                    errs.push(FieldError::invalid(format!("{pf}.targetPort"), s, msg));
                }
            }
            _ => {}
        }
        if let Some(v) = get(p, "nodePort") {
            port_range(v, &format!("{pf}.nodePort"), 0, errs);
        }
        enum_value(
            get(p, "protocol"),
            &format!("{pf}.protocol"),
            &PROTOCOLS,
            errs,
        );
    }
    labels(get(&spec, "selector"), "spec.selector", errs);
    enum_value(
        get(&spec, "sessionAffinity"),
        "spec.sessionAffinity",
        &["ClientIP", "None"],
        errs,
    );
}

fn config_keys(obj: &Value, fields: &[&str], errs: &mut Errs) {
    let mut seen: Vec<&str> = Vec::new();
    let mut total = 0usize;
    for field in fields {
        let Some(m) = get(obj, field).and_then(Value::as_object) else {
            continue;
        };
        for (k, v) in m {
            let ok = !k.is_empty()
                && k.len() <= 253
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && k != "."
                && k != ".."
                && !k.starts_with("..");
            if !ok {
                errs.push(FieldError::invalid(
                    format!("{field}[{k}]"),
                    k,
                    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                ));
            }
            if *field != "stringData" && seen.contains(&k.as_str()) {
                errs.push(FieldError::invalid(
                    format!("{field}[{k}]"),
                    k,
                    "duplicate of key present in another field",
                ));
            }
            seen.push(k);
            total += v.as_str().map_or(0, str::len);
        }
    }
    if total > 1024 * 1024 {
        errs.push(FieldError::too_long(fields[0], 1024 * 1024));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(api_version: &str, kind: &str, obj: Value, expected: &[&str]) {
        let gvk = GroupVersionKind::from_api_version(api_version, kind);
        let got: Vec<String> = validate(&gvk, &obj)
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        assert_eq!(got, expected, "{obj}");
    }

    fn deployment(spec: Value) -> Value {
        json!({"metadata": {"name": "web"}, "spec": spec})
    }

    #[test]
    fn deployments_are_checked_like_kubernetes() {
        let ok = json!({"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx"}]}}});
        check("apps/v1", "Deployment", deployment(ok), &[]);
        check(
            "apps/v1",
            "Deployment",
            deployment(
                json!({"replicas": -1, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "other"}},
                    "spec": {"restartPolicy": "Never", "containers": [
                        {"image": "nginx", "ports": [{"containerPort": 0}, {"containerPort": 80, "name": "http"}, {"containerPort": 81, "name": "http"}]},
                        {"name": "b", "image": ""}]}}}),
            ),
            &[
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"other\"}: `selector` does not match template `labels`",
                "spec.template.spec.containers[0].name: Required value",
                "spec.template.spec.containers[0].ports[0].containerPort: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.template.spec.containers[0].ports[2].name: Duplicate value: \"http\"",
                "spec.template.spec.containers[1].image: Required value",
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
            ],
        );
        check(
            "apps/v1",
            "Deployment",
            deployment(json!({"selector": {}, "template": {"spec": {"containers": [
                {"name": "a", "image": "x"}, {"name": "a", "image": "x"}]}}})),
            &[
                "spec.selector: Invalid value: {}: empty selector is invalid for deployment",
                "spec.template.spec.containers[1].name: Duplicate value: \"a\"",
            ],
        );
    }

    #[test]
    fn services_jobs_and_config_maps_are_checked() {
        check(
            "v1",
            "Service",
            json!({"spec": {"ports": [{"port": 70000}, {"port": 80, "name": "Bad_Name"}]}}),
            &[
                "spec.ports[0].name: Required value",
                "spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.ports[1].name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            ],
        );
        check(
            "v1",
            "Service",
            json!({"spec": {}}),
            &["spec.ports: Required value"],
        );
        check(
            "batch/v1",
            "Job",
            json!({"spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
            &[
                "spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\"",
            ],
        );
        check(
            "v1",
            "ConfigMap",
            json!({"data": {"ok.key": "1", "bad key": "2"}}),
            &[
                "data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
            ],
        );
        check(
            "v1",
            "Pod",
            json!({"spec": {"containers": [{"name": "c", "image": "i", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}]}}),
            &["spec.containers[0].volumeMounts[0].name: Not found: \"data\""],
        );
        let set = |claims: Value| {
            json!({"spec": {"selector": {"matchLabels": {"a": "b"}}, "serviceName": "s",
                "volumeClaimTemplates": claims,
                "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [
                    {"name": "c", "image": "i",
                     "volumeMounts": [{"name": "data", "mountPath": "/d"}]}]}}}})
        };
        check(
            "apps/v1",
            "StatefulSet",
            set(json!([{"metadata": {"name": "data"}}])),
            &[],
        );
        check(
            "apps/v1",
            "StatefulSet",
            set(json!([])),
            &["spec.template.spec.containers[0].volumeMounts[0].name: Not found: \"data\""],
        );
    }

    #[test]
    fn updates_may_not_change_immutable_fields() {
        let gvk = GroupVersionKind::from_api_version("v1", "Pod");
        let old = json!({"spec": {"containers": [{"name": "c", "image": "a"}]}});
        let image = json!({"spec": {"containers": [{"name": "c", "image": "b"}]}});
        let name = json!({"spec": {"containers": [{"name": "d", "image": "a"}]}});
        assert!(validate_update(&gvk, &old, &image).is_empty());
        let bound =
            json!({"spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "a"}]}});
        assert!(
            validate_update(&gvk, &old, &bound).is_empty(),
            "binding sets nodeName once"
        );
        let moved =
            json!({"spec": {"nodeName": "n2", "containers": [{"name": "c", "image": "a"}]}});
        assert_eq!(validate_update(&gvk, &bound, &moved).len(), 1);
        assert_eq!(validate_update(&gvk, &old, &name).len(), 1);
        let gvk = GroupVersionKind::from_api_version("apps/v1", "Deployment");
        let old = json!({"spec": {"selector": {"matchLabels": {"a": "b"}}}});
        let new = json!({"spec": {"selector": {"matchLabels": {"a": "c"}}}});
        assert_eq!(
            validate_update(&gvk, &old, &new)[0].message,
            "Invalid value: {\"matchLabels\":{\"a\":\"c\"}}: field is immutable"
        );
    }

    #[test]
    fn a_container_its_pod_does_not_restart_stays_terminated() {
        let gvk = GroupVersionKind::from_api_version("v1", "Pod");
        let pod = |policy: &str, state: Value, init_state: Value| {
            json!({
                "spec": {
                    "restartPolicy": policy,
                    "initContainers": [
                        {"name": "setup", "image": "a"},
                        {"name": "sidecar", "image": "a", "restartPolicy": "Always"},
                    ],
                    "containers": [{"name": "c", "image": "a"}],
                },
                "status": {
                    "containerStatuses": [{"name": "c", "state": state}],
                    "initContainerStatuses": [
                        {"name": "setup", "state": init_state.clone()},
                        {"name": "sidecar", "state": init_state},
                    ],
                },
            })
        };
        let done = |code: i64| json!({"terminated": {"exitCode": code}});
        let running = json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}});
        let check = |policy: &str, before: Value, after: Value, refused: &[&str]| {
            let old = pod(policy, before.clone(), before);
            let new = pod(policy, after.clone(), after);
            let fields: Vec<String> = validate_update(&gvk, &old, &new)
                .into_iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect();
            let expected: Vec<String> = refused
                .iter()
                .map(|f| format!("{f}: Forbidden: may not be transitioned to non-terminated state"))
                .collect();
            assert_eq!(fields, expected, "{policy}");
        };
        let both = [
            "status.containerStatuses[0].state",
            "status.initContainerStatuses[0].state",
        ];
        check("Never", done(0), running.clone(), &both);
        check("Never", done(1), running.clone(), &both);
        check("OnFailure", done(0), running.clone(), &both);
        // Restarted after a failure, or always: allowed.
        check("OnFailure", done(1), running.clone(), &[]);
        check("Always", done(0), running.clone(), &[]);
        // Running to terminated, and terminated to terminated, are what a node reports.
        check("Never", running.clone(), done(0), &[]);
        check("Never", done(1), done(1), &[]);
        // A status without the container says nothing of it.
        let old = pod("Never", done(0), done(0));
        let mut new = old.clone();
        new["status"] = json!({"phase": "Succeeded"});
        assert!(validate_update(&gvk, &old, &new).is_empty());
    }

    #[test]
    fn ephemeral_containers_are_added_never_changed_and_stay_plain() {
        let gvk = GroupVersionKind::from_api_version("v1", "Pod");
        let pod = |eph: Value| json!({"spec": {"containers": [{"name": "c", "image": "a"}], "ephemeralContainers": eph}});
        let old = pod(json!([]));
        let added = pod(json!([{"name": "debug", "image": "busybox"}]));
        assert!(validate_update(&gvk, &old, &added).is_empty());
        assert!(validate(&gvk, &added).is_empty());
        assert_eq!(
            validate_create(&gvk, &added)[0].field,
            "spec.ephemeralContainers"
        );
        assert!(validate_create(&gvk, &old).is_empty());
        let changed = pod(json!([{"name": "debug", "image": "alpine"}]));
        let errs = validate_update(&gvk, &added, &changed);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].message.contains("may not be changed"), "{errs:?}");
        let removed = pod(json!([]));
        assert!(
            validate_update(&gvk, &added, &removed)[0]
                .message
                .contains("may not be removed")
        );
        let ported = pod(
            json!([{"name": "debug", "image": "b", "ports": [{"containerPort": 80}],
                                 "readinessProbe": {"exec": {"command": ["true"]}},
                                 "resources": {"limits": {"cpu": "1"}}}]),
        );
        let fields: Vec<String> = validate(&gvk, &ported)
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.ephemeralContainers[0].ports",
                "spec.ephemeralContainers[0].readinessProbe",
                "spec.ephemeralContainers[0].resources"
            ]
        );
        let clash = pod(json!([{"name": "c", "image": "b"}]));
        assert_eq!(
            validate(&gvk, &clash)[0].field,
            "spec.ephemeralContainers[0].name"
        );
    }
}
