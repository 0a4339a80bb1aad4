//! HorizontalPodAutoscaler versions: `autoscaling/v1` and `autoscaling/v2` are two versions of
//! one stored resource, converted as Kubernetes converts them. The API server stores v2
//! ([`to_v2`] on every v1 write) and serves v1 through [`to_v1`].
//!
//! v1 has one CPU utilization target (`targetCPUUtilizationPercentage`, 80 % when absent and
//! no other metric is given, as Kubernetes' defaulting makes it); everything v2 has and v1 has
//! not travels in Kubernetes' annotations, so a v1 client's read-modify-write loses nothing:
//! `autoscaling.alpha.kubernetes.io/metrics` (the metrics other than the CPU utilization one),
//! `…/behavior`, `…/current-metrics` and `…/conditions`, the metrics in v1's own `MetricSpec`
//! and `MetricStatus` shapes (`targetAverageUtilization`, `metricName`, `currentAverageValue`:
//! [`metric_to_v1`], [`metric_from_v1`] and their status twins) as Kubernetes writes them.
//!
//! Objects stored as v1 by older versions of gitplane read as v2 through [`to_v2`] too.

use serde_json::{Map, Value, json};

/// The CPU utilization Kubernetes targets when a v1 object sets none.
pub const DEFAULT_CPU_UTILIZATION: i64 = 80;

/// The annotation keeping a v2 object's metrics other than its CPU utilization target.
pub const METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/metrics";
/// The annotation keeping a v2 object's `spec.behavior`.
pub const BEHAVIOR_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/behavior";
/// The annotation keeping a v2 object's `status.currentMetrics`.
pub const CURRENT_METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
/// The annotation keeping a v2 object's `status.conditions`.
pub const CONDITIONS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/conditions";

const ANNOTATIONS: [&str; 4] = [
    METRICS_ANNOTATION,
    BEHAVIOR_ANNOTATION,
    CURRENT_METRICS_ANNOTATION,
    CONDITIONS_ANNOTATION,
];

/// Whether `obj` is in `autoscaling/v1`'s shape.
pub fn is_v1(obj: &Value) -> bool {
    obj.get("apiVersion").and_then(Value::as_str) == Some("autoscaling/v1")
}

/// Whether a v2 metric is the CPU utilization target v1 has a field for.
fn is_cpu_utilization(metric: &Value) -> bool {
    metric["type"] == "Resource"
        && metric["resource"]["name"] == "cpu"
        && metric["resource"]["target"]["type"] == "Utilization"
        && metric["resource"]["target"]["averageUtilization"].is_i64()
}

/// Removes the conversion annotations of `metadata`, giving their values parsed (a value that
/// is not JSON is dropped, as Kubernetes drops it).
fn take_annotations(metadata: &mut Value) -> Map<String, Value> {
    let mut taken = Map::new();
    let Some(annotations) = metadata
        .get_mut("annotations")
        .and_then(Value::as_object_mut)
    else {
        return taken;
    };
    for key in ANNOTATIONS {
        if let Some(v) = annotations.remove(key)
            && let Some(parsed) = v.as_str().and_then(|s| serde_json::from_str(s).ok())
        {
            taken.insert(key.to_string(), parsed);
        }
    }
    if annotations.is_empty()
        && let Some(m) = metadata.as_object_mut()
    {
        m.remove("annotations");
    }
    taken
}

/// `obj` as an `autoscaling/v2` object (a v2 object is returned as it is).
pub fn to_v2(obj: &Value) -> Value {
    if !is_v1(obj) {
        return obj.clone();
    }
    let mut metadata = obj.get("metadata").cloned().unwrap_or(json!({}));
    let kept = take_annotations(&mut metadata);
    let spec = &obj["spec"];
    let mut metrics: Vec<Value> = kept
        .get(METRICS_ANNOTATION)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(metric_from_v1)
        .collect();
    let target = spec
        .get("targetCPUUtilizationPercentage")
        .and_then(Value::as_i64)
        .or_else(|| metrics.is_empty().then_some(DEFAULT_CPU_UTILIZATION));
    if let Some(target) = target {
        metrics.push(json!({"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": target}}}));
    }
    let mut v2_spec = json!({
        "scaleTargetRef": spec.get("scaleTargetRef").cloned().unwrap_or(json!({})),
        "maxReplicas": spec.get("maxReplicas").cloned().unwrap_or(json!(0)),
        "metrics": metrics,
    });
    if let Some(min) = spec.get("minReplicas") {
        v2_spec["minReplicas"] = min.clone();
    }
    if let Some(behavior) = kept.get(BEHAVIOR_ANNOTATION) {
        v2_spec["behavior"] = behavior.clone();
    }
    let mut out = json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata,
        "spec": v2_spec,
    });
    if let Some(status) = obj.get("status").filter(|s| s.is_object()) {
        let mut v2_status = json!({
            "currentReplicas": status.get("currentReplicas").cloned().unwrap_or(json!(0)),
            "desiredReplicas": status.get("desiredReplicas").cloned().unwrap_or(json!(0)),
        });
        for field in ["lastScaleTime", "observedGeneration"] {
            if let Some(v) = status.get(field) {
                v2_status[field] = v.clone();
            }
        }
        if let Some(current) = kept
            .get(CURRENT_METRICS_ANNOTATION)
            .and_then(Value::as_array)
        {
            v2_status["currentMetrics"] = current.iter().map(status_from_v1).collect();
        } else if let Some(cpu) = status.get("currentCPUUtilizationPercentage") {
            v2_status["currentMetrics"] = json!([{"type": "Resource", "resource": {"name": "cpu",
                "current": {"averageUtilization": cpu}}}]);
        }
        if let Some(conditions) = kept.get(CONDITIONS_ANNOTATION) {
            v2_status["conditions"] = conditions.clone();
        }
        out["status"] = v2_status;
    }
    out
}

/// A v2 object as `autoscaling/v1` serves it: the first CPU utilization metric as
/// `targetCPUUtilizationPercentage` (and its current value as
/// `currentCPUUtilizationPercentage`), everything else in the annotations.
pub fn to_v1(obj: &Value) -> Value {
    let v2 = to_v2(obj);
    let spec = &v2["spec"];
    let metrics: Vec<Value> = spec["metrics"].as_array().cloned().unwrap_or_default();
    let cpu = metrics.iter().position(is_cpu_utilization);
    let mut metadata = v2.get("metadata").cloned().unwrap_or(json!({}));
    let mut annotations = Map::new();
    let other: Vec<Value> = metrics
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != cpu)
        .map(|(_, m)| metric_to_v1(m))
        .collect();
    let mut keep = |key: &str, value: &Value| {
        annotations.insert(key.to_string(), json!(value.to_string()));
    };
    if !other.is_empty() {
        keep(METRICS_ANNOTATION, &json!(other));
    }
    if let Some(b) = spec.get("behavior").filter(|b| !b.is_null()) {
        keep(BEHAVIOR_ANNOTATION, b);
    }
    let status = v2.get("status").filter(|s| s.is_object());
    let current = status
        .and_then(|s| s.get("currentMetrics"))
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty());
    if let Some(current) = current {
        let current: Vec<Value> = current.iter().map(status_to_v1).collect();
        keep(CURRENT_METRICS_ANNOTATION, &json!(current));
    }
    let conditions = status
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty());
    if let Some(conditions) = conditions {
        keep(CONDITIONS_ANNOTATION, &json!(conditions));
    }
    if !annotations.is_empty() {
        let existing = metadata
            .as_object_mut()
            .map(|m| m.entry("annotations").or_insert_with(|| json!({})));
        if let Some(Value::Object(existing)) = existing {
            existing.extend(annotations);
        }
    }
    let mut v1_spec = json!({
        "scaleTargetRef": spec.get("scaleTargetRef").cloned().unwrap_or(json!({})),
        "maxReplicas": spec.get("maxReplicas").cloned().unwrap_or(json!(0)),
    });
    if let Some(min) = spec.get("minReplicas") {
        v1_spec["minReplicas"] = min.clone();
    }
    if let Some(i) = cpu {
        v1_spec["targetCPUUtilizationPercentage"] =
            metrics[i]["resource"]["target"]["averageUtilization"].clone();
    }
    let mut out = json!({
        "apiVersion": "autoscaling/v1",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata,
        "spec": v1_spec,
    });
    if let Some(status) = status {
        out["status"] = v1_status(status);
    }
    out
}

/// A v2 status in v1's fields: replicas, last scale time, observed generation and the CPU
/// utilization of the first CPU `Resource` metric.
fn v1_status(v2: &Value) -> Value {
    let mut out = json!({
        "currentReplicas": v2.get("currentReplicas").cloned().unwrap_or(json!(0)),
        "desiredReplicas": v2.get("desiredReplicas").cloned().unwrap_or(json!(0)),
    });
    for field in ["lastScaleTime", "observedGeneration"] {
        if let Some(v) = v2.get(field).filter(|v| !v.is_null()) {
            out[field] = v.clone();
        }
    }
    let cpu = v2
        .get("currentMetrics")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|m| m["type"] == "Resource" && m["resource"]["name"] == "cpu")
        .and_then(|m| m["resource"]["current"].get("averageUtilization"));
    if let Some(cpu) = cpu {
        out["currentCPUUtilizationPercentage"] = cpu.clone();
    }
    out
}

/// An object of the fields of `pairs` that are present and not null.
fn fields<'a>(pairs: impl IntoIterator<Item = (&'a str, Option<&'a Value>)>) -> Value {
    Value::Object(
        pairs
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_string(), v.filter(|v| !v.is_null())?.clone())))
            .collect(),
    )
}

/// The key of a metric type's source in v1 and v2 (`Resource` → `resource`).
fn source_key(type_: &str) -> String {
    let mut chars = type_.chars();
    chars
        .next()
        .map(|c| c.to_ascii_lowercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// A v2 `MetricSpec` in v1's shape (the annotation's), as Kubernetes converts it.
pub fn metric_to_v1(m: &Value) -> Value {
    let type_ = m["type"].as_str().unwrap_or("");
    let key = source_key(type_);
    let src = &m[&key];
    let target = &src["target"];
    let metric = &src["metric"];
    let converted = match type_ {
        "Resource" | "ContainerResource" => fields([
            ("name", src.get("name")),
            ("container", src.get("container")),
            ("targetAverageUtilization", target.get("averageUtilization")),
            ("targetAverageValue", target.get("averageValue")),
        ]),
        "Pods" => fields([
            ("metricName", metric.get("name")),
            ("targetAverageValue", target.get("averageValue")),
            ("selector", metric.get("selector")),
        ]),
        "Object" => fields([
            ("target", src.get("describedObject")),
            ("metricName", metric.get("name")),
            ("targetValue", target.get("value")),
            ("averageValue", target.get("averageValue")),
            ("selector", metric.get("selector")),
        ]),
        "External" => fields([
            ("metricName", metric.get("name")),
            ("metricSelector", metric.get("selector")),
            ("targetValue", target.get("value")),
            ("targetAverageValue", target.get("averageValue")),
        ]),
        _ => return m.clone(),
    };
    json!({"type": type_, key: converted})
}

/// A v1 `MetricSpec` (the annotation's) as v2's, as Kubernetes converts it: the target's type
/// follows from the fields given.
pub fn metric_from_v1(m: &Value) -> Value {
    let type_ = m["type"].as_str().unwrap_or("");
    let key = source_key(type_);
    let src = &m[&key];
    let target_type = |average: bool, otherwise: &str| -> Value {
        json!(if average { "AverageValue" } else { otherwise })
    };
    let converted = match type_ {
        "Resource" | "ContainerResource" => {
            let utilization = src.get("targetAverageUtilization").filter(|v| !v.is_null());
            let kind = if utilization.is_some() {
                json!("Utilization")
            } else {
                json!("AverageValue")
            };
            let target = fields([
                ("type", Some(&kind)),
                ("averageUtilization", utilization),
                ("averageValue", src.get("targetAverageValue")),
            ]);
            fields([
                ("name", src.get("name")),
                ("container", src.get("container")),
                ("target", Some(&target)),
            ])
        }
        "Pods" => {
            let kind = json!("AverageValue");
            let target = fields([
                ("type", Some(&kind)),
                ("averageValue", src.get("targetAverageValue")),
            ]);
            let metric = fields([
                ("name", src.get("metricName")),
                ("selector", src.get("selector")),
            ]);
            fields([("metric", Some(&metric)), ("target", Some(&target))])
        }
        "Object" => {
            let average = src.get("averageValue").is_some_and(|v| !v.is_null());
            let kind = target_type(average, "Value");
            let target = fields([
                ("type", Some(&kind)),
                ("value", src.get("targetValue")),
                ("averageValue", src.get("averageValue")),
            ]);
            let metric = fields([
                ("name", src.get("metricName")),
                ("selector", src.get("selector")),
            ]);
            fields([
                ("describedObject", src.get("target")),
                ("metric", Some(&metric)),
                ("target", Some(&target)),
            ])
        }
        "External" => {
            let average = src.get("targetAverageValue").is_some_and(|v| !v.is_null());
            let kind = target_type(average, "Value");
            let target = fields([
                ("type", Some(&kind)),
                ("value", src.get("targetValue")),
                ("averageValue", src.get("targetAverageValue")),
            ]);
            let metric = fields([
                ("name", src.get("metricName")),
                ("selector", src.get("metricSelector")),
            ]);
            fields([("metric", Some(&metric)), ("target", Some(&target))])
        }
        _ => return m.clone(),
    };
    json!({"type": type_, key: converted})
}

/// A v2 `MetricStatus` in v1's shape.
pub fn status_to_v1(m: &Value) -> Value {
    let type_ = m["type"].as_str().unwrap_or("");
    let key = source_key(type_);
    let src = &m[&key];
    let current = &src["current"];
    let metric = &src["metric"];
    let converted = match type_ {
        "Resource" | "ContainerResource" => fields([
            ("name", src.get("name")),
            ("container", src.get("container")),
            (
                "currentAverageUtilization",
                current.get("averageUtilization"),
            ),
            ("currentAverageValue", current.get("averageValue")),
        ]),
        "Pods" => fields([
            ("metricName", metric.get("name")),
            ("currentAverageValue", current.get("averageValue")),
            ("selector", metric.get("selector")),
        ]),
        "Object" => fields([
            ("target", src.get("describedObject")),
            ("metricName", metric.get("name")),
            ("currentValue", current.get("value")),
            ("averageValue", current.get("averageValue")),
            ("selector", metric.get("selector")),
        ]),
        "External" => fields([
            ("metricName", metric.get("name")),
            ("metricSelector", metric.get("selector")),
            ("currentValue", current.get("value")),
            ("currentAverageValue", current.get("averageValue")),
        ]),
        _ => return m.clone(),
    };
    json!({"type": type_, key: converted})
}

/// A v1 `MetricStatus` as v2's.
pub fn status_from_v1(m: &Value) -> Value {
    let type_ = m["type"].as_str().unwrap_or("");
    let key = source_key(type_);
    let src = &m[&key];
    let converted = match type_ {
        "Resource" | "ContainerResource" => {
            let current = fields([
                ("averageUtilization", src.get("currentAverageUtilization")),
                ("averageValue", src.get("currentAverageValue")),
            ]);
            fields([
                ("name", src.get("name")),
                ("container", src.get("container")),
                ("current", Some(&current)),
            ])
        }
        "Pods" => {
            let current = fields([("averageValue", src.get("currentAverageValue"))]);
            let metric = fields([
                ("name", src.get("metricName")),
                ("selector", src.get("selector")),
            ]);
            fields([("metric", Some(&metric)), ("current", Some(&current))])
        }
        "Object" => {
            let current = fields([
                ("value", src.get("currentValue")),
                ("averageValue", src.get("averageValue")),
            ]);
            let metric = fields([
                ("name", src.get("metricName")),
                ("selector", src.get("selector")),
            ]);
            fields([
                ("describedObject", src.get("target")),
                ("metric", Some(&metric)),
                ("current", Some(&current)),
            ])
        }
        "External" => {
            let current = fields([
                ("value", src.get("currentValue")),
                ("averageValue", src.get("currentAverageValue")),
            ]);
            let metric = fields([
                ("name", src.get("metricName")),
                ("selector", src.get("metricSelector")),
            ]);
            fields([("metric", Some(&metric)), ("current", Some(&current))])
        }
        _ => return m.clone(),
    };
    json!({"type": type_, key: converted})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v1_autoscaler_reads_as_a_cpu_utilization_metric() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "minReplicas": 1, "maxReplicas": 4, "targetCPUUtilizationPercentage": 50},
            "status": {"currentReplicas": 2, "desiredReplicas": 3, "currentCPUUtilizationPercentage": 70}});
        let v2 = to_v2(&v1);
        assert_eq!(v2["apiVersion"], "autoscaling/v2");
        assert_eq!(
            v2["spec"]["metrics"][0]["resource"]["target"],
            json!({"type": "Utilization", "averageUtilization": 50})
        );
        assert_eq!(
            (
                v2["spec"]["minReplicas"].clone(),
                v2["spec"]["maxReplicas"].clone()
            ),
            (json!(1), json!(4))
        );
        assert_eq!(
            v2["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"],
            70
        );
        // Back: the status in v1's fields, the current metric kept in its annotation.
        let back = to_v1(&v2);
        assert_eq!(
            back["status"],
            json!({"currentReplicas": 2, "desiredReplicas": 3, "currentCPUUtilizationPercentage": 70})
        );
        assert_eq!(back["spec"], v1["spec"]);
        assert_eq!(to_v2(&back), v2);
    }

    #[test]
    fn a_v1_autoscaler_without_a_target_aims_at_eighty_percent_and_v2_stays() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "spec": {"maxReplicas": 2}});
        assert_eq!(
            to_v2(&v1)["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
        let v2 = json!({"apiVersion": "autoscaling/v2", "spec": {"maxReplicas": 2}});
        assert_eq!(to_v2(&v2), v2);
    }

    #[test]
    fn what_v1_cannot_say_survives_a_round_trip_through_its_annotations() {
        let v2 = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "annotations": {"team": "a"}},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "minReplicas": 1, "maxReplicas": 5,
                     "metrics": [
                        {"type": "Resource", "resource": {"name": "memory",
                            "target": {"type": "AverageValue", "averageValue": "64Mi"}}},
                        {"type": "Resource", "resource": {"name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 50}}}],
                     "behavior": {"scaleDown": {"stabilizationWindowSeconds": 30}}},
            "status": {"currentReplicas": 1, "desiredReplicas": 1,
                       "conditions": [{"type": "AbleToScale", "status": "True"}]}});
        let v1 = to_v1(&v2);
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50);
        let annotations = &v1["metadata"]["annotations"];
        assert_eq!(annotations["team"], "a");
        assert!(
            annotations[METRICS_ANNOTATION].as_str()
                == Some(
                    r#"[{"type":"Resource","resource":{"name":"memory","targetAverageValue":"64Mi"}}]"#
                ),
            "{annotations}"
        );
        assert!(annotations[BEHAVIOR_ANNOTATION].is_string());
        assert!(annotations[CONDITIONS_ANNOTATION].is_string());
        assert!(v1["status"].get("conditions").is_none());
        // Back to v2: the other metrics first, then the CPU target (Kubernetes' order), the
        // annotations gone.
        let back = to_v2(&v1);
        assert_eq!(back["spec"]["metrics"], v2["spec"]["metrics"]);
        assert_eq!(back["spec"]["behavior"], v2["spec"]["behavior"]);
        assert_eq!(back["status"]["conditions"], v2["status"]["conditions"]);
        assert_eq!(
            back["metadata"],
            json!({"name": "web", "annotations": {"team": "a"}})
        );
    }

    #[test]
    fn a_v1_autoscaler_with_other_metrics_and_no_cpu_target_gets_no_default() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "metadata": {"annotations": {
            METRICS_ANNOTATION: r#"[{"type":"Pods","pods":{"metricName":"qps","targetAverageValue":"10"}}]"#}},
            "spec": {"maxReplicas": 2}});
        let v2 = to_v2(&v1);
        assert_eq!(v2["spec"]["metrics"].as_array().map(Vec::len), Some(1));
        assert_eq!(
            v2["spec"]["metrics"][0],
            json!({"type": "Pods", "pods": {"metric": {"name": "qps"},
                "target": {"type": "AverageValue", "averageValue": "10"}}})
        );
        assert_eq!(v2["metadata"], json!({}));
    }

    #[test]
    fn every_metric_type_converts_to_v1s_shape_and_back() {
        let check = |v2: Value, v1: Value| {
            assert_eq!(metric_to_v1(&v2), v1, "{v2}");
            assert_eq!(metric_from_v1(&v1), v2, "{v1}");
        };
        let selector = json!({"matchLabels": {"queue": "jobs"}});
        check(
            json!({"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "app",
                "target": {"type": "Utilization", "averageUtilization": 60}}}),
            json!({"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "app",
                "targetAverageUtilization": 60}}),
        );
        check(
            json!({"type": "Pods", "pods": {"metric": {"name": "qps", "selector": selector},
                "target": {"type": "AverageValue", "averageValue": "10"}}}),
            json!({"type": "Pods", "pods": {"metricName": "qps", "selector": selector,
                "targetAverageValue": "10"}}),
        );
        let ingress =
            json!({"kind": "Ingress", "name": "main", "apiVersion": "networking.k8s.io/v1"});
        check(
            json!({"type": "Object", "object": {"describedObject": ingress, "metric": {"name": "hits"},
                "target": {"type": "Value", "value": "2k"}}}),
            json!({"type": "Object", "object": {"target": ingress, "metricName": "hits",
                "targetValue": "2k"}}),
        );
        check(
            json!({"type": "External", "external": {"metric": {"name": "queue", "selector": selector},
                "target": {"type": "AverageValue", "averageValue": "30"}}}),
            json!({"type": "External", "external": {"metricName": "queue", "metricSelector": selector,
                "targetAverageValue": "30"}}),
        );
        let status = json!({"type": "Resource", "resource": {"name": "cpu",
            "current": {"averageUtilization": 70, "averageValue": "350m"}}});
        let v1 = json!({"type": "Resource", "resource": {"name": "cpu",
            "currentAverageUtilization": 70, "currentAverageValue": "350m"}});
        assert_eq!(status_to_v1(&status), v1);
        assert_eq!(status_from_v1(&v1), status);
        let external = json!({"type": "External", "external": {"metric": {"name": "queue"},
            "current": {"value": "12"}}});
        let v1 =
            json!({"type": "External", "external": {"metricName": "queue", "currentValue": "12"}});
        assert_eq!(status_to_v1(&external), v1);
        assert_eq!(status_from_v1(&v1), external);
    }
}
