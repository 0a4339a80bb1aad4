//! Health of live objects, per kind, as gitops-engine assesses it; and the health of an
//! Application as the worst of its resources.

use serde_json::Value;

/// Health states, ordered from best to worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum Health {
    /// Running as intended.
    Healthy,
    /// Paused on purpose (a paused Deployment, a suspended CronJob).
    Suspended,
    /// Not yet what it should be, but getting there.
    Progressing,
    /// Should exist and does not.
    Missing,
    /// Failed or stuck.
    Degraded,
}

impl Health {
    /// The name used in status and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "Healthy",
            Health::Suspended => "Suspended",
            Health::Progressing => "Progressing",
            Health::Missing => "Missing",
            Health::Degraded => "Degraded",
        }
    }
}

fn int(obj: &Value, pointer: &str) -> i64 {
    obj.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn condition<'a>(obj: &'a Value, kind: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
}

fn generation_observed(obj: &Value) -> bool {
    let generation = int(obj, "/metadata/generation");
    obj.pointer("/status/observedGeneration")
        .and_then(Value::as_i64)
        .is_some_and(|o| o >= generation)
}

/// The health of one live object (`None`: the object is absent).
pub fn of(kind: &str, live: Option<&Value>) -> Health {
    let Some(obj) = live else {
        return Health::Missing;
    };
    match kind {
        "Deployment" => {
            if obj.pointer("/spec/paused").and_then(Value::as_bool) == Some(true) {
                return Health::Suspended;
            }
            if !generation_observed(obj) {
                return Health::Progressing;
            }
            if condition(obj, "Progressing")
                .and_then(|c| c.get("reason"))
                .and_then(Value::as_str)
                == Some("ProgressDeadlineExceeded")
            {
                return Health::Degraded;
            }
            let want = obj
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let updated = int(obj, "/status/updatedReplicas");
            if updated < want
                || int(obj, "/status/replicas") > updated
                || int(obj, "/status/availableReplicas") < updated
            {
                return Health::Progressing;
            }
            Health::Healthy
        }
        "ReplicaSet" | "StatefulSet" => {
            if !generation_observed(obj) {
                return Health::Progressing;
            }
            let want = obj
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            if int(obj, "/status/readyReplicas") < want {
                return Health::Progressing;
            }
            Health::Healthy
        }
        "DaemonSet" => {
            if !generation_observed(obj) {
                return Health::Progressing;
            }
            let want = int(obj, "/status/desiredNumberScheduled");
            if int(obj, "/status/updatedNumberScheduled") < want
                || int(obj, "/status/numberAvailable") < want
            {
                return Health::Progressing;
            }
            Health::Healthy
        }
        "Job" => {
            for (t, h) in [("Failed", Health::Degraded), ("Complete", Health::Healthy)] {
                if condition(obj, t)
                    .and_then(|c| c.get("status"))
                    .and_then(Value::as_str)
                    == Some("True")
                {
                    return h;
                }
            }
            if obj.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true) {
                return Health::Suspended;
            }
            Health::Progressing
        }
        "CronJob" => {
            if obj.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true) {
                Health::Suspended
            } else {
                Health::Healthy
            }
        }
        "Pod" => {
            let waiting_bad = obj
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        matches!(
                            c.pointer("/state/waiting/reason").and_then(Value::as_str),
                            Some(
                                "CrashLoopBackOff"
                                    | "ErrImagePull"
                                    | "ImagePullBackOff"
                                    | "CreateContainerConfigError"
                            )
                        )
                    })
                });
            if waiting_bad {
                return Health::Degraded;
            }
            match obj.pointer("/status/phase").and_then(Value::as_str) {
                Some("Succeeded") => Health::Healthy,
                Some("Failed") => Health::Degraded,
                Some("Running") => {
                    let ready = condition(obj, "Ready")
                        .and_then(|c| c.get("status"))
                        .and_then(Value::as_str);
                    if ready == Some("True") {
                        Health::Healthy
                    } else {
                        Health::Progressing
                    }
                }
                _ => Health::Progressing,
            }
        }
        "Service" => {
            let lb = obj.pointer("/spec/type").and_then(Value::as_str) == Some("LoadBalancer");
            let ingress = obj
                .pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
            if lb && !ingress {
                Health::Progressing
            } else {
                Health::Healthy
            }
        }
        "PersistentVolumeClaim" => match obj.pointer("/status/phase").and_then(Value::as_str) {
            Some("Bound") => Health::Healthy,
            Some("Lost") => Health::Degraded,
            _ => Health::Progressing,
        },
        "Application" => match obj.pointer("/status/health/status").and_then(Value::as_str) {
            Some("Healthy") => Health::Healthy,
            Some("Suspended") => Health::Suspended,
            Some("Degraded") => Health::Degraded,
            Some("Missing") => Health::Missing,
            _ => Health::Progressing,
        },
        _ => Health::Healthy,
    }
}

/// The health of an Application: the worst of its resources (Healthy when it has none).
pub fn overall(resources: impl IntoIterator<Item = Health>) -> Health {
    resources.into_iter().max().unwrap_or(Health::Healthy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(kind: &str, obj: Option<Value>, expected: Health) {
        assert_eq!(of(kind, obj.as_ref()), expected, "{kind}: {obj:?}");
    }

    #[test]
    fn health_follows_each_kinds_status() {
        let deploy = |status: Value| json!({"metadata": {"generation": 2}, "spec": {"replicas": 2}, "status": status});
        check("Deployment", None, Health::Missing);
        check("Deployment", Some(deploy(json!({}))), Health::Progressing);
        check(
            "Deployment",
            Some(deploy(
                json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
            )),
            Health::Healthy,
        );
        check(
            "Deployment",
            Some(deploy(
                json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 2}),
            )),
            Health::Progressing,
        );
        check(
            "Deployment",
            Some(deploy(
                json!({"observedGeneration": 2, "conditions": [{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}]}),
            )),
            Health::Degraded,
        );
        check(
            "Deployment",
            Some(json!({"spec": {"paused": true}})),
            Health::Suspended,
        );
        check(
            "Pod",
            Some(
                json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}),
            ),
            Health::Healthy,
        );
        check(
            "Pod",
            Some(
                json!({"status": {"phase": "Running", "containerStatuses": [{"state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}),
            ),
            Health::Degraded,
        );
        check(
            "Pod",
            Some(json!({"status": {"phase": "Pending"}})),
            Health::Progressing,
        );
        check(
            "Job",
            Some(json!({"status": {"conditions": [{"type": "Complete", "status": "True"}]}})),
            Health::Healthy,
        );
        check(
            "Job",
            Some(json!({"status": {"conditions": [{"type": "Failed", "status": "True"}]}})),
            Health::Degraded,
        );
        check(
            "Service",
            Some(json!({"spec": {"type": "LoadBalancer"}})),
            Health::Progressing,
        );
        check(
            "Service",
            Some(json!({"spec": {"type": "ClusterIP"}})),
            Health::Healthy,
        );
        check(
            "PersistentVolumeClaim",
            Some(json!({"status": {"phase": "Bound"}})),
            Health::Healthy,
        );
        check("ConfigMap", Some(json!({})), Health::Healthy);
        check(
            "Application",
            Some(json!({"status": {"health": {"status": "Degraded"}}})),
            Health::Degraded,
        );
        assert_eq!(
            overall([Health::Healthy, Health::Progressing, Health::Suspended]),
            Health::Progressing
        );
        assert_eq!(overall([]), Health::Healthy);
    }
}
