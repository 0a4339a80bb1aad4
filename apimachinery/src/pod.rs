//! What a pod's status says, as Kubernetes' `podutil` reads it: its phase, whether it finished,
//! counts as active, is Ready (and since when), is available after `minReadySeconds`. Used by
//! the workload controllers, the scheduler and the nodes alike.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// The pod's phase (`Pending` when unset).
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// Whether the pod finished (Succeeded or Failed).
pub fn terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// Whether the pod counts as active: neither finished nor being deleted (Kubernetes'
/// `IsPodActive`; a terminating pod is not counted in a ReplicaSet's `status.replicas`).
pub fn active(pod: &Pod) -> bool {
    !terminal(pod) && pod.metadata.deletion_timestamp.is_none()
}

/// When the pod's `Ready` condition became `True`, if it is (the epoch when the condition has
/// no transition time).
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    let c = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    (c.status == "True").then(|| {
        c.last_transition_time
            .as_ref()
            .map_or(Timestamp::UNIX_EPOCH, |t| t.0)
    })
}

/// Whether the pod's `Ready` condition is `True`.
pub fn ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Whether the pod is Running and Ready and not being deleted.
pub fn running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && ready(pod) && pod.metadata.deletion_timestamp.is_none()
}

/// Ready for at least `min_ready_seconds` at `now` (Kubernetes' `IsPodAvailable`).
pub fn available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(since) => since
            .checked_add(SignedDuration::from_secs(i64::from(min_ready_seconds)))
            .is_ok_and(|at| at <= now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// One row: a pod (as JSON) and what each predicate says of it at second 1000:
    /// (phase, terminal, active, ready, running and ready, available after 0 s, after 10 s).
    fn check(pod: serde_json::Value, expected: (&str, bool, bool, bool, bool, bool, bool)) {
        let p: Pod = serde_json::from_value(pod.clone()).unwrap();
        let now = Timestamp::from_second(1000).unwrap();
        let got = (
            phase(&p),
            terminal(&p),
            active(&p),
            ready(&p),
            running_and_ready(&p),
            available(&p, 0, now),
            available(&p, 10, now),
        );
        assert_eq!(got, expected, "{pod}");
    }

    fn ready_at(second: i64) -> serde_json::Value {
        let at = Timestamp::from_second(second).unwrap().to_string();
        json!([{"type": "Ready", "status": "True", "lastTransitionTime": at}])
    }

    #[test]
    fn pod_predicates_read_the_status_as_kubernetes_does() {
        let deleting = json!("1970-01-01T00:10:00Z");
        check(
            json!({}),
            ("Pending", false, true, false, false, false, false),
        );
        check(
            json!({"status": {"phase": "Running", "conditions": ready_at(995)}}),
            ("Running", false, true, true, true, true, false),
        );
        check(
            json!({"status": {"phase": "Running", "conditions": ready_at(990)}}),
            ("Running", false, true, true, true, true, true),
        );
        check(
            json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}}),
            ("Running", false, true, false, false, false, false),
        );
        // Ready without a transition time: ready since the epoch.
        check(
            json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}),
            ("Running", false, true, true, true, true, true),
        );
        // Terminating: not active, not running and ready, still Ready.
        check(
            json!({"metadata": {"deletionTimestamp": deleting},
                   "status": {"phase": "Running", "conditions": ready_at(990)}}),
            ("Running", false, false, true, false, true, true),
        );
        check(
            json!({"status": {"phase": "Succeeded"}}),
            ("Succeeded", true, false, false, false, false, false),
        );
        check(
            json!({"status": {"phase": "Failed"}}),
            ("Failed", true, false, false, false, false, false),
        );
    }
}
