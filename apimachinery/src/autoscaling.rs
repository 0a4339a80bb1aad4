//! HorizontalPodAutoscaler versions: an `autoscaling/v1` object read as `autoscaling/v2`
//! (`targetCPUUtilizationPercentage` is a CPU `Utilization` metric, 80 % when absent, as
//! Kubernetes' conversion and defaulting make it) and a v2 status written back in v1's fields.
//!
//! The API server stores each version as it was written (no conversion yet, see
//! ARCHITECTURE.md); the autoscaler controller reads both through [`to_v2`] and reports a v1
//! object's status through [`v1_status`].

use serde_json::{Value, json};

/// The CPU utilization Kubernetes targets when a v1 object sets none.
pub const DEFAULT_CPU_UTILIZATION: i64 = 80;

/// Whether `obj` is in `autoscaling/v1`'s shape.
pub fn is_v1(obj: &Value) -> bool {
    obj.get("apiVersion").and_then(Value::as_str) == Some("autoscaling/v1")
}

/// `obj` as an `autoscaling/v2` object (a v2 object is returned as it is).
pub fn to_v2(obj: &Value) -> Value {
    if !is_v1(obj) {
        return obj.clone();
    }
    let spec = &obj["spec"];
    let target = spec
        .get("targetCPUUtilizationPercentage")
        .and_then(Value::as_i64)
        .unwrap_or(DEFAULT_CPU_UTILIZATION);
    let mut v2_spec = json!({
        "scaleTargetRef": spec.get("scaleTargetRef").cloned().unwrap_or(json!({})),
        "maxReplicas": spec.get("maxReplicas").cloned().unwrap_or(json!(0)),
        "metrics": [{"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": target}}}],
    });
    if let Some(min) = spec.get("minReplicas") {
        v2_spec["minReplicas"] = min.clone();
    }
    let mut out = json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
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
        if let Some(cpu) = status.get("currentCPUUtilizationPercentage") {
            v2_status["currentMetrics"] = json!([{"type": "Resource", "resource": {"name": "cpu",
                "current": {"averageUtilization": cpu}}}]);
        }
        out["status"] = v2_status;
    }
    out
}

/// A v2 status in v1's fields: replicas, last scale time, observed generation and the CPU
/// utilization of the first CPU `Resource` metric (v1 has no conditions field).
pub fn v1_status(v2: &Value) -> Value {
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
        // Back: the status in v1's fields.
        assert_eq!(
            v1_status(&v2["status"]),
            json!({"currentReplicas": 2, "desiredReplicas": 3, "currentCPUUtilizationPercentage": 70})
        );
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
}
