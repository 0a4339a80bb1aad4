//! Built-in defaulting: the values Kubernetes fills in for fields a client left out, so that
//! objects read back look as they would from Kubernetes (`kubectl describe` shows a strategy,
//! ports have a protocol) and controllers can rely on them.
//!
//! Applied on create and on update, before validation, as Kubernetes defaults on decode. Only
//! absent fields are set; nothing a client wrote is changed.

use apimachinery::registry::ResourceInfo;
use serde_json::{Map, Value, json};

fn set(obj: &mut Map<String, Value>, field: &str, value: Value) {
    if obj.get(field).is_none_or(Value::is_null) {
        obj.insert(field.to_string(), value);
    }
}

fn object_at<'a>(v: &'a mut Value, path: &[&str]) -> Option<&'a mut Map<String, Value>> {
    let mut cur = v;
    for p in path {
        cur = cur.get_mut(*p)?;
    }
    cur.as_object_mut()
}

fn image_pull_policy(image: &str) -> &'static str {
    let name = image.rsplit('/').next().unwrap_or(image);
    let tag = if image.contains('@') {
        None
    } else {
        name.split_once(':').map(|(_, t)| t)
    };
    match tag {
        None if image.contains('@') => "IfNotPresent",
        None | Some("latest") => "Always",
        _ => "IfNotPresent",
    }
}

fn container(c: &mut Value) {
    let Some(c) = c.as_object_mut() else { return };
    let image = c
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    set(c, "imagePullPolicy", json!(image_pull_policy(&image)));
    set(c, "terminationMessagePath", json!("/dev/termination-log"));
    set(c, "terminationMessagePolicy", json!("File"));
    set(c, "resources", json!({}));
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).and_then(Value::as_object_mut) {
            set(p, "timeoutSeconds", json!(1));
            set(p, "periodSeconds", json!(10));
            set(p, "successThreshold", json!(1));
            set(p, "failureThreshold", json!(3));
        }
    }
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            set(p, "protocol", json!("TCP"));
        }
    }
}

/// Defaults of a pod spec; `restart` is the default restartPolicy (`None` for Job templates,
/// which must name one).
fn pod_spec(spec: &mut Map<String, Value>, restart: Option<&str>) {
    if let Some(r) = restart {
        set(spec, "restartPolicy", json!(r));
    }
    set(spec, "dnsPolicy", json!("ClusterFirst"));
    set(spec, "schedulerName", json!("default-scheduler"));
    set(spec, "terminationGracePeriodSeconds", json!(30));
    set(spec, "securityContext", json!({}));
    set(spec, "enableServiceLinks", json!(true));
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            cs.iter_mut().for_each(container);
        }
    }
}

fn template(obj: &mut Value, path: &[&str], restart: Option<&str>) {
    if let Some(spec) = object_at(obj, path) {
        pod_spec(spec, restart);
    }
}

/// The status fields Kubernetes' Go encoder always writes (struct fields and those without
/// `omitempty`), so that a created object is answered with `status: {}` (a Deployment) or
/// `{"loadBalancer": {}}` (a Service), and a pod's container statuses always carry `imageID`,
/// which typed clients (the official Python client) require. Only absent fields are set; run
/// after every write's own preparation, status writes included.
pub fn wire_status(info: &ResourceInfo, obj: &mut Value) {
    if info.custom {
        return;
    }
    let zero = match (info.group.as_str(), info.kind.as_str()) {
        ("apps", "Deployment")
        | ("batch", "Job" | "CronJob")
        | ("", "ResourceQuota")
        | ("certificates.k8s.io", "CertificateSigningRequest") => json!({}),
        ("apps", "ReplicaSet") | ("", "ReplicationController") => json!({"replicas": 0}),
        ("apps", "StatefulSet") => json!({"replicas": 0, "availableReplicas": 0}),
        ("apps", "DaemonSet") => json!({
            "currentNumberScheduled": 0,
            "numberMisscheduled": 0,
            "desiredNumberScheduled": 0,
            "numberReady": 0,
        }),
        ("", "Service") | ("networking.k8s.io", "Ingress") => json!({"loadBalancer": {}}),
        ("policy", "PodDisruptionBudget") => json!({
            "disruptionsAllowed": 0,
            "currentHealthy": 0,
            "desiredHealthy": 0,
            "expectedPods": 0,
        }),
        ("", "Pod") => {
            pod_container_statuses(obj);
            return;
        }
        _ => return,
    };
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    let status = root.entry("status").or_insert_with(|| json!({}));
    if status.is_null() {
        *status = json!({});
    }
    if let (Some(status), Value::Object(zero)) = (status.as_object_mut(), zero) {
        for (k, v) in zero {
            set(status, &k, v);
        }
    }
}

fn pod_container_statuses(pod: &mut Value) {
    for list in [
        "containerStatuses",
        "initContainerStatuses",
        "ephemeralContainerStatuses",
    ] {
        let Some(statuses) = pod
            .pointer_mut(&format!("/status/{list}"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for s in statuses.iter_mut().filter_map(Value::as_object_mut) {
            set(s, "image", json!(""));
            set(s, "imageID", json!(""));
            set(s, "ready", json!(false));
            set(s, "restartCount", json!(0));
            set(s, "state", json!({}));
            set(s, "lastState", json!({}));
        }
    }
}

/// Fills in the defaults of a built-in kind.
pub fn apply(info: &ResourceInfo, obj: &mut Value) {
    if info.custom {
        return;
    }
    match (info.group.as_str(), info.kind.as_str()) {
        ("", "Pod") => template(obj, &["spec"], Some("Always")),
        ("", "Service") => {
            let Some(spec) = object_at(obj, &["spec"]) else {
                return;
            };
            set(spec, "type", json!("ClusterIP"));
            set(spec, "sessionAffinity", json!("None"));
            set(spec, "internalTrafficPolicy", json!("Cluster"));
            if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                    set(p, "protocol", json!("TCP"));
                    if let Some(port) = p.get("port").cloned() {
                        set(p, "targetPort", port);
                    }
                }
            }
        }
        ("", "Namespace") => {
            let name = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if let Some(meta) = object_at(obj, &["metadata"]) {
                let labels = meta.entry("labels").or_insert_with(|| json!({}));
                if let Some(labels) = labels.as_object_mut() {
                    labels.insert("kubernetes.io/metadata.name".into(), json!(name));
                }
            }
        }
        ("", "Secret") => {
            if let Some(o) = obj.as_object_mut() {
                set(o, "type", json!("Opaque"));
            }
            apimachinery::secret::merge_string_data(obj);
        }
        ("apps", "Deployment") => {
            if let Some(spec) = object_at(obj, &["spec"]) {
                set(spec, "replicas", json!(1));
                set(spec, "revisionHistoryLimit", json!(10));
                set(spec, "progressDeadlineSeconds", json!(600));
                set(
                    spec,
                    "strategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
                );
                if let Some(strategy) = spec.get_mut("strategy").and_then(Value::as_object_mut)
                    && strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
                {
                    set(
                        strategy,
                        "rollingUpdate",
                        json!({"maxSurge": "25%", "maxUnavailable": "25%"}),
                    );
                }
            }
            template(obj, &["spec", "template", "spec"], Some("Always"));
        }
        ("apps", "ReplicaSet") => {
            if let Some(spec) = object_at(obj, &["spec"]) {
                set(spec, "replicas", json!(1));
            }
            template(obj, &["spec", "template", "spec"], Some("Always"));
        }
        ("apps", "StatefulSet") => {
            if let Some(spec) = object_at(obj, &["spec"]) {
                set(spec, "replicas", json!(1));
                set(spec, "podManagementPolicy", json!("OrderedReady"));
                set(spec, "revisionHistoryLimit", json!(10));
                set(
                    spec,
                    "updateStrategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
                );
            }
            template(obj, &["spec", "template", "spec"], Some("Always"));
        }
        ("apps", "DaemonSet") => {
            if let Some(spec) = object_at(obj, &["spec"]) {
                set(spec, "revisionHistoryLimit", json!(10));
                set(
                    spec,
                    "updateStrategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
                );
            }
            template(obj, &["spec", "template", "spec"], Some("Always"));
        }
        ("batch", "Job") => {
            if let Some(spec) = object_at(obj, &["spec"]) {
                set(spec, "backoffLimit", json!(6));
                set(spec, "completionMode", json!("NonIndexed"));
                set(spec, "suspend", json!(false));
                // Both absent: one pod to completion. Only parallelism: a work queue, no completions.
                if spec.get("completions").is_none() && spec.get("parallelism").is_none() {
                    spec.insert("completions".into(), json!(1));
                }
                set(spec, "parallelism", json!(1));
            }
            template(obj, &["spec", "template", "spec"], None);
        }
        (
            "admissionregistration.k8s.io",
            kind @ ("MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration"),
        ) => {
            let mutating = kind.starts_with("Mutating");
            let hooks = obj.get_mut("webhooks").and_then(Value::as_array_mut);
            for hook in hooks.into_iter().flatten().filter_map(Value::as_object_mut) {
                set(hook, "failurePolicy", json!("Fail"));
                set(hook, "matchPolicy", json!("Equivalent"));
                set(hook, "namespaceSelector", json!({}));
                set(hook, "objectSelector", json!({}));
                set(hook, "timeoutSeconds", json!(10));
                if mutating {
                    set(hook, "reinvocationPolicy", json!("Never"));
                }
                if let Some(svc) = hook
                    .get_mut("clientConfig")
                    .and_then(|c| c.get_mut("service"))
                    .and_then(Value::as_object_mut)
                {
                    set(svc, "port", json!(443));
                }
                let rules = hook.get_mut("rules").and_then(Value::as_array_mut);
                for rule in rules.into_iter().flatten().filter_map(Value::as_object_mut) {
                    set(rule, "scope", json!("*"));
                }
            }
        }
        ("autoscaling", "HorizontalPodAutoscaler") => {
            // Stored as v2 whichever version it was written through (`convert`).
            let v2 = !apimachinery::autoscaling::is_v1(obj);
            if let Some(spec) = object_at(obj, &["spec"]) {
                set(spec, "minReplicas", json!(1));
                let no_metrics = spec
                    .get("metrics")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty);
                if v2 && no_metrics {
                    spec.insert(
                        "metrics".into(),
                        json!([{"type": "Resource", "resource": {"name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 80}}}]),
                    );
                }
            }
        }
        ("batch", "CronJob") => {
            if let Some(spec) = object_at(obj, &["spec"]) {
                set(spec, "concurrencyPolicy", json!("Allow"));
                set(spec, "suspend", json!(false));
                set(spec, "successfulJobsHistoryLimit", json!(3));
                set(spec, "failedJobsHistoryLimit", json!(1));
            }
            template(
                obj,
                &["spec", "jobTemplate", "spec", "template", "spec"],
                None,
            );
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apimachinery::registry::Registry;

    fn check(plural: &str, input: Value, pointer: &str, expected: Value) {
        let registry = Registry::builtin();
        let info = registry
            .iter()
            .find(|i| i.plural == plural)
            .cloned()
            .unwrap();
        let mut obj = input.clone();
        apply(&info, &mut obj);
        assert_eq!(
            obj.pointer(pointer),
            Some(&expected),
            "{plural} {pointer}: {obj}"
        );
    }

    #[test]
    fn absent_fields_get_kubernetes_defaults_and_written_ones_stay() {
        let deploy = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "nginx:1.25", "ports": [{"containerPort": 80}]},
            {"name": "b", "image": "nginx"}]}}}});
        check(
            "deployments",
            deploy.clone(),
            "/spec/strategy/rollingUpdate/maxSurge",
            json!("25%"),
        );
        check("deployments", deploy.clone(), "/spec/replicas", json!(1));
        check(
            "deployments",
            deploy.clone(),
            "/spec/template/spec/restartPolicy",
            json!("Always"),
        );
        check(
            "deployments",
            deploy.clone(),
            "/spec/template/spec/containers/0/imagePullPolicy",
            json!("IfNotPresent"),
        );
        check(
            "deployments",
            deploy.clone(),
            "/spec/template/spec/containers/1/imagePullPolicy",
            json!("Always"),
        );
        check(
            "deployments",
            deploy,
            "/spec/template/spec/containers/0/ports/0/protocol",
            json!("TCP"),
        );
        check(
            "deployments",
            json!({"spec": {"replicas": 0, "strategy": {"type": "Recreate"}}}),
            "/spec/strategy",
            json!({"type": "Recreate"}),
        );
        check(
            "deployments",
            json!({"spec": {"replicas": 0}}),
            "/spec/replicas",
            json!(0),
        );
        check(
            "services",
            json!({"spec": {"ports": [{"port": 80}]}}),
            "/spec/ports/0/targetPort",
            json!(80),
        );
        check(
            "services",
            json!({"spec": {"type": "NodePort", "ports": []}}),
            "/spec/type",
            json!("NodePort"),
        );
        check("secrets", json!({}), "/type", json!("Opaque"));
        check(
            "jobs",
            json!({"spec": {"template": {"spec": {"containers": []}}}}),
            "/spec/backoffLimit",
            json!(6),
        );
        let job = json!({"spec": {"template": {"spec": {"containers": []}}}});
        let registry = Registry::builtin();
        let info = registry
            .iter()
            .find(|i| i.plural == "jobs")
            .cloned()
            .unwrap();
        let mut obj = job;
        apply(&info, &mut obj);
        assert!(
            obj.pointer("/spec/template/spec/restartPolicy").is_none(),
            "a Job must name its restartPolicy"
        );
        check(
            "cronjobs",
            json!({"spec": {}}),
            "/spec/concurrencyPolicy",
            json!("Allow"),
        );
        check(
            "pods",
            json!({"spec": {"containers": [{"name": "c", "image": "r/app@sha256:abc"}]}}),
            "/spec/containers/0/imagePullPolicy",
            json!("IfNotPresent"),
        );
    }
}
