//! PodDisruptionBudget arithmetic: which pods a budget covers, and its status (expected,
//! healthy, desired healthy, disruptions allowed), computed as Kubernetes' disruption controller
//! computes it. Used by the API server's eviction subresource and the disruption controller.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::object::ObjectExt;
use crate::selector::{LabelSelector, SelectorError};

/// Why a budget's status cannot be computed.
#[derive(Debug, thiserror::Error)]
pub enum DisruptionError {
    /// The budget's selector does not parse.
    #[error("poddisruptionbudgets \"{name}\": spec.selector: {source}")]
    Selector {
        /// The budget.
        name: String,
        /// What was wrong.
        #[source]
        source: SelectorError,
    },
    /// `minAvailable`/`maxUnavailable` is neither an integer nor a percentage.
    #[error("poddisruptionbudgets \"{name}\": {field}: invalid value {value}")]
    Value {
        /// The budget.
        name: String,
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
    },
}

/// A budget's computed status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Budget {
    /// `status.expectedPods`.
    pub expected_pods: i64,
    /// `status.currentHealthy`.
    pub current_healthy: i64,
    /// `status.desiredHealthy`.
    pub desired_healthy: i64,
    /// `status.disruptionsAllowed`.
    pub disruptions_allowed: i64,
}

/// Whether a pod is healthy for a budget: Ready and not being deleted.
pub fn healthy(pod: &Value) -> bool {
    pod.path("metadata.deletionTimestamp").is_none()
        && pod
            .path("status.conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.get("type").and_then(Value::as_str) == Some("Ready")
                        && c.get("status").and_then(Value::as_str) == Some("True")
                })
            })
}

/// The budget's selector (policy/v1: an empty selector selects every pod of the namespace).
pub fn selector(pdb: &Value) -> Result<LabelSelector, DisruptionError> {
    let name = pdb.name().unwrap_or("").to_string();
    match pdb.path("spec.selector") {
        Some(s) if !s.is_null() => {
            let typed: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector =
                serde_json::from_value(s.clone()).map_err(|e| DisruptionError::Value {
                    name: name.clone(),
                    field: "spec.selector",
                    value: e.to_string(),
                })?;
            LabelSelector::from_metav1(&typed)
                .map_err(|source| DisruptionError::Selector { name, source })
        }
        _ => Ok(LabelSelector::everything()),
    }
}

/// Whether the budget covers the pod (same namespace, selector matches).
pub fn covers(pdb: &Value, selector: &LabelSelector, pod: &Value) -> bool {
    pdb.namespace() == pod.namespace() && selector.matches(&pod.labels())
}

/// An int-or-string scaled against `total` (`"50%"` of 3 is 2, rounding up as Kubernetes does).
fn scaled(pdb: &Value, field: &'static str, v: &Value, total: i64) -> Result<i64, DisruptionError> {
    let bad = || DisruptionError::Value {
        name: pdb.name().unwrap_or("").to_string(),
        field,
        value: v.to_string(),
    };
    match v {
        Value::Number(n) => n.as_i64().ok_or_else(bad),
        Value::String(s) => match s.strip_suffix('%') {
            Some(p) => {
                let pct: i64 = p.parse().map_err(|_| bad())?;
                Ok((pct * total + 99) / 100)
            }
            None => s.parse().map_err(|_| bad()),
        },
        _ => Err(bad()),
    }
}

/// Computes a budget over the pods it covers. `scale` gives the desired replicas of a pod's
/// controller (kind, name) when the budget needs it (a percentage, or `maxUnavailable`); pods
/// without a known controller count as one each. Pods listed in `status.disruptedPods` (evicted,
/// not yet gone) are not counted healthy.
pub fn budget(
    pdb: &Value,
    pods: &[&Value],
    scale: &dyn Fn(&str, &str) -> Option<i64>,
) -> Result<Budget, DisruptionError> {
    let disrupted: BTreeSet<&str> = pdb
        .path("status.disruptedPods")
        .and_then(Value::as_object)
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let current_healthy = pods
        .iter()
        .filter(|p| healthy(p) && !disrupted.contains(p.name().unwrap_or("")))
        .count() as i64;
    let expected_from_controllers = || {
        let mut controllers = BTreeSet::new();
        let mut loose = 0;
        for pod in pods {
            let owner = pod
                .path("metadata.ownerReferences")
                .and_then(Value::as_array)
                .and_then(|os| {
                    os.iter()
                        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
                });
            match owner {
                Some(o) => {
                    let kind = o.get("kind").and_then(Value::as_str).unwrap_or("");
                    let name = o.get("name").and_then(Value::as_str).unwrap_or("");
                    controllers.insert((kind.to_string(), name.to_string()));
                }
                None => loose += 1,
            }
        }
        loose
            + controllers
                .iter()
                .map(|(k, n)| scale(k, n).unwrap_or(1))
                .sum::<i64>()
    };
    let (expected_pods, desired_healthy) = match (
        pdb.path("spec.maxUnavailable"),
        pdb.path("spec.minAvailable"),
    ) {
        (Some(max), _) if !max.is_null() => {
            let expected = expected_from_controllers();
            let max = scaled(pdb, "spec.maxUnavailable", max, expected)?;
            (expected, (expected - max).max(0))
        }
        (_, Some(min @ Value::Number(_))) => {
            (pods.len() as i64, scaled(pdb, "spec.minAvailable", min, 0)?)
        }
        (_, Some(min)) if !min.is_null() => {
            let expected = expected_from_controllers();
            (expected, scaled(pdb, "spec.minAvailable", min, expected)?)
        }
        _ => (pods.len() as i64, 0),
    };
    Ok(Budget {
        expected_pods,
        current_healthy,
        desired_healthy,
        disruptions_allowed: (current_healthy - desired_healthy).max(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, ready: bool, owner: Option<&str>) -> Value {
        let mut p = json!({"metadata": {"name": name, "namespace": "d", "labels": {"app": "web"}},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
        if let Some(o) = owner {
            p["metadata"]["ownerReferences"] =
                json!([{"kind": "ReplicaSet", "name": o, "controller": true}]);
        }
        p
    }

    fn check(spec: Value, pods: &[Value], expected: (i64, i64, i64, i64)) {
        let pdb = json!({"metadata": {"name": "b", "namespace": "d"}, "spec": spec});
        let refs: Vec<&Value> = pods.iter().collect();
        let b = budget(&pdb, &refs, &|_, _| Some(4)).unwrap();
        assert_eq!(
            (
                b.expected_pods,
                b.current_healthy,
                b.desired_healthy,
                b.disruptions_allowed
            ),
            expected,
            "{spec}"
        );
    }

    #[test]
    fn budgets_count_like_the_disruption_controller() {
        let three = [
            pod("a", true, Some("rs")),
            pod("b", true, Some("rs")),
            pod("c", false, Some("rs")),
        ];
        check(json!({"minAvailable": 2}), &three, (3, 2, 2, 0));
        check(json!({"minAvailable": 1}), &three, (3, 2, 1, 1));
        check(json!({"minAvailable": "50%"}), &three, (4, 2, 2, 0));
        check(json!({"maxUnavailable": 1}), &three, (4, 2, 3, 0));
        check(json!({"maxUnavailable": "50%"}), &three, (4, 2, 2, 0));
        check(json!({}), &three, (3, 2, 0, 2));
        let loose = [pod("a", true, None), pod("b", true, None)];
        check(json!({"maxUnavailable": 1}), &loose, (2, 2, 1, 1));
    }

    #[test]
    fn disrupted_pods_are_not_healthy_and_selectors_cover_their_namespace() {
        let pdb = json!({"metadata": {"name": "b", "namespace": "d"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"disruptedPods": {"a": "2024-01-01T00:00:00Z"}}});
        let a = pod("a", true, None);
        let b = pod("b", true, None);
        let budget = budget(&pdb, &[&a, &b], &|_, _| None).unwrap();
        assert_eq!(budget.current_healthy, 1);
        assert_eq!(budget.disruptions_allowed, 0);
        let sel = selector(&pdb).unwrap();
        assert!(covers(&pdb, &sel, &a));
        let mut other = a.clone();
        other["metadata"]["namespace"] = json!("x");
        assert!(!covers(&pdb, &sel, &other));
    }
}
