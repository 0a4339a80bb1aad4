//! The printers of the kinds served since the built-in kinds table grew (networking, policy,
//! autoscaling, storage, quota, certificates, flow control...), with the columns of Kubernetes
//! 1.32's `pkg/printers/internalversion`.

use apimachinery::builtin::Printer;
use apimachinery::object::ObjectExt;
use serde_json::{Value, json};

use super::{
    Column, age, arr, col, containers_and_images, int, n, or_none, s, selector_string, wide,
};

/// kubectl's abbreviations of access modes (`RWO,ROX`).
pub(super) fn access_modes(obj: &Value, path: &str) -> String {
    arr(obj, path)
        .iter()
        .filter_map(Value::as_str)
        .map(|m| match m {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            other => other,
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// An int-or-string at `path`, `N/A` when unset.
fn int_or_string(obj: &Value, path: &str) -> Value {
    match obj.path(path) {
        Some(Value::Number(v)) => json!(v.to_string()),
        Some(Value::String(v)) => json!(v),
        _ => json!("N/A"),
    }
}

fn bool_at(obj: &Value, path: &str, default: bool) -> Value {
    json!(
        obj.path(path)
            .and_then(Value::as_bool)
            .unwrap_or(default)
            .to_string()
    )
}

fn opt_int(obj: &Value, path: &str) -> Value {
    match obj.path(path).and_then(Value::as_i64) {
        Some(v) => json!(v.to_string()),
        None => json!("<unset>"),
    }
}

fn ingress_hosts(obj: &Value) -> String {
    let hosts: Vec<&str> = arr(obj, "spec.rules")
        .iter()
        .map(|r| s(r, "host"))
        .filter(|h| !h.is_empty())
        .collect();
    match hosts.len() {
        0 => "*".into(),
        1..=3 => hosts.join(","),
        more => format!("{} + {} more...", hosts[..3].join(","), more - 3),
    }
}

fn load_balancer(obj: &Value, path: &str) -> String {
    arr(obj, path)
        .iter()
        .map(|i| {
            let ip = s(i, "ip");
            if ip.is_empty() { s(i, "hostname") } else { ip }
        })
        .filter(|a| !a.is_empty())
        .collect::<Vec<_>>()
        .join(",")
}

/// One metric of an HPA as kubectl shows it (`cpu: 40%/80%`).
fn hpa_metric(spec: &Value, status: Option<&Value>) -> String {
    let current = |path: &str| {
        status
            .and_then(|st| st.path(path))
            .map(|v| match v {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.clone(),
                _ => "<unknown>".into(),
            })
            .unwrap_or_else(|| "<unknown>".into())
    };
    let (kind, target_base) = match s(spec, "type") {
        "Resource" => ("resource", "resource.target"),
        "ContainerResource" => ("containerResource", "containerResource.target"),
        "Pods" => ("pods", "pods.target"),
        "Object" => ("object", "object.target"),
        "External" => ("external", "external.target"),
        _ => return "<unknown>".into(),
    };
    let name = match kind {
        "resource" | "containerResource" => s(spec, &format!("{kind}.name")).to_string(),
        _ => s(spec, &format!("{kind}.metric.name")).to_string(),
    };
    let status_base = target_base.replace(".target", ".current");
    let (target, cur) = match spec.path(&format!("{target_base}.averageUtilization")) {
        Some(u) => (
            format!("{u}%"),
            match status.and_then(|st| st.path(&format!("{status_base}.averageUtilization"))) {
                Some(c) => format!("{c}%"),
                None => "<unknown>".into(),
            },
        ),
        None => {
            let field = if spec.path(&format!("{target_base}.averageValue")).is_some() {
                "averageValue"
            } else {
                "value"
            };
            let t = match spec.path(&format!("{target_base}.{field}")) {
                Some(Value::String(v)) => v.clone(),
                Some(v) => v.to_string(),
                None => "<unknown>".into(),
            };
            let c = current(&format!("{status_base}.{field}"));
            if field == "averageValue" {
                (format!("{t} (avg)"), c)
            } else {
                (t, c)
            }
        }
    };
    format!("{name}: {cur}/{target}")
}

fn hpa_targets(obj: &Value) -> String {
    if let Some(pct) = obj
        .path("spec.targetCPUUtilizationPercentage")
        .and_then(Value::as_i64)
    {
        let cur = match obj
            .path("status.currentCPUUtilizationPercentage")
            .and_then(Value::as_i64)
        {
            Some(c) => format!("{c}%"),
            None => "<unknown>".into(),
        };
        return format!("cpu: {cur}/{pct}%");
    }
    let metrics = arr(obj, "spec.metrics");
    if metrics.is_empty() {
        return "<none>".into();
    }
    let current = arr(obj, "status.currentMetrics");
    let mut parts: Vec<String> = metrics
        .iter()
        .enumerate()
        .take(2)
        .map(|(i, m)| hpa_metric(m, current.get(i)))
        .collect();
    if metrics.len() > 2 {
        parts.push(format!("+ {} more...", metrics.len() - 2));
    }
    parts.join(", ")
}

fn quota_lists(obj: &Value) -> (String, String) {
    let mut requests = Vec::new();
    let mut limits = Vec::new();
    if let Some(hard) = obj.path("status.hard").and_then(Value::as_object) {
        let mut names: Vec<&String> = hard.keys().collect();
        names.sort();
        for name in names {
            let used = obj
                .path("status.used")
                .and_then(|u| u.get(name.as_str()))
                .and_then(Value::as_str)
                .unwrap_or("0");
            let entry = format!("{name}: {used}/{}", hard[name].as_str().unwrap_or(""));
            if name.starts_with("limits") {
                limits.push(entry);
            } else {
                requests.push(entry);
            }
        }
    }
    (requests.join(", "), limits.join(", "))
}

fn condition(obj: &Value, path: &str, type_: &str) -> Option<String> {
    arr(obj, path)
        .iter()
        .find(|c| s(c, "type") == type_)
        .map(|c| s(c, "status").to_string())
}

/// The columns and cells of the kinds printed here; `None` for the others.
pub(super) fn cells(printer: Printer, obj: &Value) -> Option<(Vec<Column>, Vec<Value>)> {
    let name = json!(obj.name().unwrap_or(""));
    Some(match printer {
        Printer::Ingress => {
            let ports = if arr(obj, "spec.tls").is_empty() {
                "80"
            } else {
                "80, 443"
            };
            (
                vec![
                    col("Name"),
                    col("Class"),
                    col("Hosts"),
                    col("Address"),
                    col("Ports"),
                    col("Age"),
                ],
                vec![
                    name,
                    or_none(s(obj, "spec.ingressClassName").into()),
                    json!(ingress_hosts(obj)),
                    json!(load_balancer(obj, "status.loadBalancer.ingress")),
                    json!(ports),
                    age(obj),
                ],
            )
        }
        Printer::IngressClass => {
            let parameters = match obj.path("spec.parameters") {
                Some(p) if p.is_object() => {
                    let mut kind = s(p, "kind").to_string();
                    if !s(p, "apiGroup").is_empty() {
                        kind = format!("{kind}.{}", s(p, "apiGroup"));
                    }
                    format!("{kind}/{}", s(p, "name"))
                }
                _ => "<none>".into(),
            };
            (
                vec![
                    col("Name"),
                    col("Controller"),
                    col("Parameters"),
                    col("Age"),
                ],
                vec![
                    name,
                    json!(s(obj, "spec.controller")),
                    json!(parameters),
                    age(obj),
                ],
            )
        }
        Printer::NetworkPolicy => (
            vec![col("Name"), col("Pod-Selector"), col("Age")],
            vec![
                name,
                or_none(selector_string(obj, "spec.podSelector")),
                age(obj),
            ],
        ),
        Printer::PodDisruptionBudget => (
            vec![
                col("Name"),
                col("Min Available"),
                col("Max Unavailable"),
                int("Allowed Disruptions"),
                col("Age"),
            ],
            vec![
                name,
                int_or_string(obj, "spec.minAvailable"),
                int_or_string(obj, "spec.maxUnavailable"),
                json!(n(obj, "status.disruptionsAllowed")),
                age(obj),
            ],
        ),
        Printer::HorizontalPodAutoscaler => (
            vec![
                col("Name"),
                col("Reference"),
                col("Targets"),
                col("MinPods"),
                int("MaxPods"),
                int("Replicas"),
                col("Age"),
            ],
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    s(obj, "spec.scaleTargetRef.kind"),
                    s(obj, "spec.scaleTargetRef.name")
                )),
                json!(hpa_targets(obj)),
                opt_int(obj, "spec.minReplicas"),
                json!(n(obj, "spec.maxReplicas")),
                json!(n(obj, "status.currentReplicas")),
                age(obj),
            ],
        ),
        Printer::StorageClass => {
            let default = ["", "beta."].iter().any(|p| {
                obj.path("metadata.annotations")
                    .and_then(|a| a.get(format!("storageclass.{p}kubernetes.io/is-default-class")))
                    .and_then(Value::as_str)
                    == Some("true")
            });
            let shown = if default {
                format!("{} (default)", obj.name().unwrap_or(""))
            } else {
                obj.name().unwrap_or("").to_string()
            };
            let or = |path: &str, d: &'static str| {
                let v = s(obj, path);
                json!(if v.is_empty() { d } else { v })
            };
            (
                vec![
                    col("Name"),
                    col("Provisioner"),
                    col("ReclaimPolicy"),
                    col("VolumeBindingMode"),
                    col("AllowVolumeExpansion"),
                    col("Age"),
                ],
                vec![
                    json!(shown),
                    json!(s(obj, "provisioner")),
                    or("reclaimPolicy", "Delete"),
                    or("volumeBindingMode", "Immediate"),
                    bool_at(obj, "allowVolumeExpansion", false),
                    age(obj),
                ],
            )
        }
        Printer::PersistentVolume => {
            let claim = match obj.path("spec.claimRef") {
                Some(c) if c.is_object() => {
                    format!("{}/{}", s(c, "namespace"), s(c, "name"))
                }
                _ => String::new(),
            };
            let reclaim = s(obj, "spec.persistentVolumeReclaimPolicy");
            (
                vec![
                    col("Name"),
                    col("Capacity"),
                    col("Access Modes"),
                    col("Reclaim Policy"),
                    col("Status"),
                    col("Claim"),
                    col("StorageClass"),
                    col("VolumeAttributesClass"),
                    col("Reason"),
                    col("Age"),
                    wide("VolumeMode"),
                ],
                vec![
                    name,
                    json!(s(obj, "spec.capacity.storage")),
                    json!(access_modes(obj, "spec.accessModes")),
                    json!(if reclaim.is_empty() {
                        "Retain"
                    } else {
                        reclaim
                    }),
                    json!(s(obj, "status.phase")),
                    json!(claim),
                    json!(s(obj, "spec.storageClassName")),
                    super::or_unset(s(obj, "spec.volumeAttributesClassName")),
                    json!(s(obj, "status.reason")),
                    age(obj),
                    json!(s(obj, "spec.volumeMode")),
                ],
            )
        }
        Printer::ResourceQuota => {
            let (requests, limits) = quota_lists(obj);
            (
                vec![col("Name"), col("Age"), col("Request"), col("Limit")],
                vec![name, age(obj), json!(requests), json!(limits)],
            )
        }
        Printer::LimitRange => (
            vec![col("Name"), col("Created At")],
            vec![name, json!(s(obj, "metadata.creationTimestamp"))],
        ),
        Printer::PodTemplate => {
            let (c, i) = containers_and_images(obj, "template.spec.containers");
            (
                vec![
                    col("Template"),
                    col("Containers"),
                    col("Images"),
                    col("Pod Labels"),
                ],
                vec![
                    name,
                    c,
                    i,
                    or_none(super::map_string(obj, "template.metadata.labels")),
                ],
            )
        }
        Printer::ReplicationController => {
            super::replica_set(name, obj, or_none(super::map_string(obj, "spec.selector")))
        }
        Printer::ComponentStatus => {
            let healthy = arr(obj, "conditions")
                .iter()
                .find(|c| s(c, "type") == "Healthy");
            let (status, message, error) = match healthy {
                Some(c) if s(c, "status") == "True" => ("Healthy", s(c, "message"), ""),
                Some(c) => ("Unhealthy", s(c, "message"), s(c, "error")),
                None => ("Unknown", "", ""),
            };
            (
                vec![col("Name"), col("Status"), col("Message"), col("Error")],
                vec![name, json!(status), json!(message), json!(error)],
            )
        }
        Printer::RuntimeClass => (
            vec![col("Name"), col("Handler"), col("Age")],
            vec![name, json!(s(obj, "handler")), age(obj)],
        ),
        Printer::CertificateSigningRequest => {
            let conditions: Vec<&str> = arr(obj, "status.conditions")
                .iter()
                .filter(|c| s(c, "status") != "False")
                .map(|c| s(c, "type"))
                .collect();
            let requested = match obj.path("spec.expirationSeconds").and_then(Value::as_i64) {
                Some(secs) => super::human_duration(secs),
                None => "<none>".into(),
            };
            (
                vec![
                    col("Name"),
                    col("Age"),
                    col("SignerName"),
                    col("Requestor"),
                    col("RequestedDuration"),
                    col("Condition"),
                ],
                vec![
                    name,
                    age(obj),
                    json!(s(obj, "spec.signerName")),
                    json!(s(obj, "spec.username")),
                    json!(requested),
                    json!(if conditions.is_empty() {
                        "Pending".to_string()
                    } else {
                        conditions.join(",")
                    }),
                ],
            )
        }
        Printer::ApiService => {
            let service = match obj.path("spec.service") {
                Some(svc) if svc.is_object() => {
                    format!("{}/{}", s(svc, "namespace"), s(svc, "name"))
                }
                _ => "Local".into(),
            };
            let available = match condition(obj, "status.conditions", "Available") {
                Some(status) if status == "True" => "True".to_string(),
                Some(status) => status,
                None => "Unknown".into(),
            };
            (
                vec![col("Name"), col("Service"), col("Available"), col("Age")],
                vec![name, json!(service), json!(available), age(obj)],
            )
        }
        Printer::CsiDriver => {
            let modes: Vec<&str> = arr(obj, "spec.volumeLifecycleModes")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let tokens: Vec<&str> = arr(obj, "spec.tokenRequests")
                .iter()
                .map(|t| s(t, "audience"))
                .collect();
            (
                vec![
                    col("Name"),
                    col("AttachRequired"),
                    col("PodInfoOnMount"),
                    col("StorageCapacity"),
                    col("TokenRequests"),
                    col("RequiresRepublish"),
                    col("Modes"),
                    col("Age"),
                ],
                vec![
                    name,
                    bool_at(obj, "spec.attachRequired", true),
                    bool_at(obj, "spec.podInfoOnMount", false),
                    bool_at(obj, "spec.storageCapacity", false),
                    or_none(tokens.join(",")),
                    bool_at(obj, "spec.requiresRepublish", false),
                    json!(if modes.is_empty() {
                        "Persistent".to_string()
                    } else {
                        modes.join(",")
                    }),
                    age(obj),
                ],
            )
        }
        Printer::CsiNode => (
            vec![col("Name"), int("Drivers"), col("Age")],
            vec![name, json!(arr(obj, "spec.drivers").len()), age(obj)],
        ),
        Printer::VolumeAttachment => (
            vec![
                col("Name"),
                col("Attacher"),
                col("PV"),
                col("Node"),
                col("Attached"),
                col("Age"),
            ],
            vec![
                name,
                json!(s(obj, "spec.attacher")),
                json!(s(obj, "spec.source.persistentVolumeName")),
                json!(s(obj, "spec.nodeName")),
                bool_at(obj, "status.attached", false),
                age(obj),
            ],
        ),
        Printer::CsiStorageCapacity => (
            vec![col("Name"), col("StorageClassName"), col("Capacity")],
            vec![
                name,
                json!(s(obj, "storageClassName")),
                json!(s(obj, "capacity")),
            ],
        ),
        Printer::FlowSchema => (
            vec![
                col("Name"),
                col("PriorityLevel"),
                int("MatchingPrecedence"),
                col("DistinguisherMethod"),
                col("Age"),
                col("MissingPL"),
            ],
            vec![
                name,
                json!(s(obj, "spec.priorityLevelConfiguration.name")),
                json!(n(obj, "spec.matchingPrecedence")),
                or_none(s(obj, "spec.distinguisherMethod.type").into()),
                age(obj),
                json!(
                    condition(obj, "status.conditions", "Dangling")
                        .unwrap_or_else(|| "Unknown".into())
                ),
            ],
        ),
        Printer::PriorityLevelConfiguration => {
            let limited = |path: &str| match obj.path(&format!("spec.limited.{path}")) {
                Some(v) => json!(v.to_string()),
                None => json!("<none>"),
            };
            (
                vec![
                    col("Name"),
                    col("Type"),
                    col("NominalConcurrencyShares"),
                    col("Queues"),
                    col("HandSize"),
                    col("QueueLengthLimit"),
                    col("Age"),
                ],
                vec![
                    name,
                    json!(s(obj, "spec.type")),
                    limited("nominalConcurrencyShares"),
                    limited("limitResponse.queuing.queues"),
                    limited("limitResponse.queuing.handSize"),
                    limited("limitResponse.queuing.queueLengthLimit"),
                    age(obj),
                ],
            )
        }
        Printer::Webhooks => (
            vec![col("Name"), int("Webhooks"), col("Age")],
            vec![name, json!(arr(obj, "webhooks").len()), age(obj)],
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(printer: Printer, obj: Value, expected: &[&str]) {
        let (_, cells) = cells(printer, &obj).unwrap();
        let shown: Vec<String> = cells
            .iter()
            .map(|c| match c {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        assert_eq!(&shown[..expected.len()], expected, "{printer:?}");
    }

    #[test]
    fn new_kinds_print_kubectls_columns() {
        check(
            Printer::Ingress,
            json!({"metadata": {"name": "web"}, "spec": {"ingressClassName": "gitplane",
                "rules": [{"host": "a.example"}, {"host": "b.example"}], "tls": [{}]}}),
            &["web", "gitplane", "a.example,b.example", "", "80, 443"],
        );
        check(
            Printer::PodDisruptionBudget,
            json!({"metadata": {"name": "p"}, "spec": {"minAvailable": 2}, "status": {"disruptionsAllowed": 1}}),
            &["p", "2", "N/A", "1"],
        );
        check(
            Printer::HorizontalPodAutoscaler,
            json!({"metadata": {"name": "h"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"},
                "maxReplicas": 5, "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 80}}}]}}),
            &[
                "h",
                "Deployment/web",
                "cpu: <unknown>/80%",
                "<unset>",
                "5",
                "0",
            ],
        );
        check(
            Printer::StorageClass,
            json!({"metadata": {"name": "fast", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                "provisioner": "example.com/fast"}),
            &[
                "fast (default)",
                "example.com/fast",
                "Delete",
                "Immediate",
                "false",
            ],
        );
        check(
            Printer::NetworkPolicy,
            json!({"metadata": {"name": "deny"}, "spec": {"podSelector": {}}}),
            &["deny", "<none>"],
        );
        check(
            Printer::ResourceQuota,
            json!({"metadata": {"name": "q"}, "status": {"hard": {"pods": "3", "limits.cpu": "2"},
                "used": {"pods": "1"}}}),
            &["q", "<unknown>", "pods: 1/3", "limits.cpu: 0/2"],
        );
    }
}
