//! ResourceQuota arithmetic, as Kubernetes' quota evaluators count: what an object uses (object
//! counts, pods' compute requests and limits, services by type, claims' storage), whether a
//! quota admits it, and the messages Kubernetes refuses with.
//!
//! Amounts are kept in thousandths of a unit (`quantity::parse_milli`), so CPU and counts share
//! one arithmetic.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::object::ObjectExt;
use crate::quantity::{format_milli, parse_milli};

/// Amounts per resource name, in thousandths.
pub type Usage = BTreeMap<String, i64>;

/// Why a quota refuses an object (the message follows `failed quota:`/`exceeded quota:`).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    /// A container does not state a resource the quota limits.
    #[error("failed quota: {quota}: must specify {missing}")]
    MustSpecify {
        /// The quota.
        quota: String,
        /// `limits.cpu for: a,b; requests.memory for: a`.
        missing: String,
    },
    /// The object would take the quota over its hard limit.
    #[error("exceeded quota: {quota}, requested: {requested}, used: {used}, limited: {limited}")]
    Exceeded {
        /// The quota.
        quota: String,
        /// What the object asks for, of the exceeded resources.
        requested: String,
        /// What is used already.
        used: String,
        /// The hard limits.
        limited: String,
    },
}

fn quantities(obj: &Value, path: &str) -> Usage {
    obj.path(path)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), parse_milli(v.as_str()?)?)))
                .collect()
        })
        .unwrap_or_default()
}

/// A quota's `spec.hard`.
pub fn hard(quota: &Value) -> Usage {
    quantities(quota, "spec.hard")
}

/// A quota's `status.used`.
pub fn used(quota: &Value) -> Usage {
    quantities(quota, "status.used")
}

fn add(into: &mut Usage, from: &Usage) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}

/// A pod's requests or limits: containers summed, the largest init container if larger, plus
/// the pod's overhead.
fn pod_compute(pod: &Value, which: &str) -> Usage {
    let of = |path: &str| -> Vec<Usage> {
        pod.path(path)
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .map(|c| quantities(c, &format!("resources.{which}")))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut total = Usage::new();
    for c in of("spec.containers") {
        add(&mut total, &c);
    }
    for c in of("spec.initContainers") {
        for (k, v) in c {
            let e = total.entry(k).or_default();
            *e = (*e).max(v);
        }
    }
    add(&mut total, &quantities(pod, "spec.overhead"));
    total
}

/// Whether a pod no longer counts (Succeeded or Failed).
pub fn terminal(pod: &Value) -> bool {
    matches!(
        pod.path("status.phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    )
}

/// What one object of `group`/`plural` uses.
pub fn usage(group: &str, plural: &str, obj: &Value) -> Usage {
    let one = 1000;
    let mut u = Usage::new();
    let count = if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    };
    u.insert(count, one);
    if !group.is_empty() {
        return u;
    }
    match plural {
        "pods" if !terminal(obj) => {
            u.insert("pods".into(), one);
            for (name, amount) in pod_compute(obj, "requests") {
                if matches!(name.as_str(), "cpu" | "memory" | "ephemeral-storage") {
                    u.insert(name.clone(), amount);
                }
                u.insert(format!("requests.{name}"), amount);
            }
            for (name, amount) in pod_compute(obj, "limits") {
                u.insert(format!("limits.{name}"), amount);
            }
        }
        "pods" => {
            u.remove("count/pods");
        }
        "services" => {
            u.insert("services".into(), one);
            let t = obj.path("spec.type").and_then(Value::as_str).unwrap_or("");
            if t == "LoadBalancer" {
                u.insert("services.loadbalancers".into(), one);
            }
            if matches!(t, "NodePort" | "LoadBalancer") {
                let ports = obj
                    .path("spec.ports")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len) as i64;
                u.insert("services.nodeports".into(), ports * one);
            }
        }
        "persistentvolumeclaims" => {
            u.insert("persistentvolumeclaims".into(), one);
            let storage = obj
                .path("spec.resources.requests.storage")
                .and_then(Value::as_str)
                .and_then(parse_milli)
                .unwrap_or(0);
            u.insert("requests.storage".into(), storage);
            if let Some(class) = obj.path("spec.storageClassName").and_then(Value::as_str) {
                let prefix = format!("{class}.storageclass.storage.k8s.io");
                u.insert(format!("{prefix}/persistentvolumeclaims"), one);
                u.insert(format!("{prefix}/requests.storage"), storage);
            }
        }
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => {
            u.insert(plural.into(), one);
        }
        _ => {}
    }
    u
}

/// The resources a quota must see stated on every container of a pod.
const STATED: [&str; 6] = [
    "cpu",
    "limits.cpu",
    "limits.memory",
    "memory",
    "requests.cpu",
    "requests.memory",
];

/// Checks that every container of a pod states what the quota limits (Kubernetes'
/// backward-compatible rule for cpu and memory).
pub fn check_stated(quota: &Value, pod: &Value) -> Result<(), QuotaError> {
    let hard = hard(quota);
    let required: BTreeSet<&str> = STATED
        .iter()
        .copied()
        .filter(|r| hard.contains_key(*r))
        .collect();
    if required.is_empty() {
        return Ok(());
    }
    let mut missing: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for path in ["spec.containers", "spec.initContainers"] {
        for c in pod
            .path(path)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let requests = quantities(c, "resources.requests");
            let limits = quantities(c, "resources.limits");
            for r in &required {
                let stated = match *r {
                    "cpu" | "requests.cpu" => requests.contains_key("cpu"),
                    "memory" | "requests.memory" => requests.contains_key("memory"),
                    "limits.cpu" => limits.contains_key("cpu"),
                    _ => limits.contains_key("memory"),
                };
                if !stated {
                    let name = c.get("name").and_then(Value::as_str).unwrap_or("");
                    missing.entry(r).or_default().insert(name.to_string());
                }
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(QuotaError::MustSpecify {
        quota: quota.name().unwrap_or("").to_string(),
        missing: missing
            .iter()
            .map(|(r, names)| {
                format!(
                    "{r} for: {}",
                    names.iter().cloned().collect::<Vec<_>>().join(",")
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    })
}

fn pretty(u: &Usage) -> String {
    u.iter()
        .map(|(k, v)| format!("{k}={}", format_milli(*v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Charges `delta` to a quota whose usage is `used`: the new usage of the resources the quota
/// limits, or the refusal. `None` when the quota limits nothing the object uses.
pub fn charge(quota: &Value, used: &Usage, delta: &Usage) -> Result<Option<Usage>, QuotaError> {
    let hard = hard(quota);
    let touched: Vec<&String> = delta.keys().filter(|k| hard.contains_key(*k)).collect();
    if touched.is_empty() {
        return Ok(None);
    }
    let mut requested = Usage::new();
    let mut failed_used = Usage::new();
    let mut limited = Usage::new();
    let mut next = used.clone();
    for k in touched {
        let now = used.get(k).copied().unwrap_or(0);
        let want = delta[k];
        if want > 0 && now + want > hard[k] {
            requested.insert(k.clone(), want);
            failed_used.insert(k.clone(), now);
            limited.insert(k.clone(), hard[k]);
        }
        next.insert(k.clone(), now + want);
    }
    if !requested.is_empty() {
        return Err(QuotaError::Exceeded {
            quota: quota.name().unwrap_or("").to_string(),
            requested: pretty(&requested),
            used: pretty(&failed_used),
            limited: pretty(&limited),
        });
    }
    Ok(Some(next))
}

/// The sum of what `objects` use, limited to the quota's resources.
pub fn recount<'a>(quota: &Value, objects: impl Iterator<Item = Usage> + 'a) -> Usage {
    let hard = hard(quota);
    let mut total: Usage = hard.keys().map(|k| (k.clone(), 0)).collect();
    for u in objects {
        for (k, v) in u {
            if let Some(t) = total.get_mut(&k) {
                *t += v;
            }
        }
    }
    total
}

/// The quota's status for a usage: `hard` copied from the spec, `used` for each hard resource.
pub fn status(quota: &Value, used: &Usage) -> Value {
    let hard = quota
        .path("spec.hard")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let used: serde_json::Map<String, Value> = self::hard(quota)
        .keys()
        .map(|k| {
            (
                k.clone(),
                json!(format_milli(used.get(k).copied().unwrap_or(0))),
            )
        })
        .collect();
    json!({"hard": hard, "used": used})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(hard: Value) -> Value {
        json!({"metadata": {"name": "q"}, "spec": {"hard": hard}})
    }

    fn pod(resources: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "resources": resources}]}})
    }

    #[test]
    fn the_fourth_pod_exceeds_a_quota_of_three() {
        let q = quota(json!({"pods": "3"}));
        let delta = usage("", "pods", &pod(json!({})));
        let used: Usage = [("pods".to_string(), 3000)].into();
        assert_eq!(
            charge(&q, &used, &delta).unwrap_err().to_string(),
            "exceeded quota: q, requested: pods=1, used: pods=3, limited: pods=3"
        );
        let used: Usage = [("pods".to_string(), 2000)].into();
        assert_eq!(
            charge(&q, &used, &delta).unwrap(),
            Some([("pods".to_string(), 3000)].into())
        );
        assert_eq!(
            charge(&quota(json!({"secrets": "1"})), &used, &delta).unwrap(),
            None
        );
    }

    #[test]
    fn compute_quotas_need_stated_resources_and_count_them() {
        let q = quota(json!({"limits.cpu": "1", "requests.memory": "1Gi"}));
        assert_eq!(
            check_stated(&q, &pod(json!({}))).unwrap_err().to_string(),
            "failed quota: q: must specify limits.cpu for: c; requests.memory for: c"
        );
        let p = pod(json!({"limits": {"cpu": "600m"}, "requests": {"memory": "512Mi"}}));
        assert!(check_stated(&q, &p).is_ok());
        let delta = usage("", "pods", &p);
        let next = charge(&q, &Usage::new(), &delta).unwrap().unwrap();
        assert_eq!(
            charge(&q, &next, &delta).unwrap_err().to_string(),
            "exceeded quota: q, requested: limits.cpu=600m, used: limits.cpu=600m, limited: limits.cpu=1"
        );
        assert_eq!(
            status(&q, &next),
            json!({"hard": {"limits.cpu": "1", "requests.memory": "1Gi"},
                   "used": {"limits.cpu": "600m", "requests.memory": "512Mi"}})
        );
    }

    #[test]
    fn objects_count_by_kind() {
        let svc = json!({"spec": {"type": "NodePort", "ports": [{}, {}]}});
        let u = usage("", "services", &svc);
        assert_eq!(u["services.nodeports"], 2000);
        assert_eq!(u["count/services"], 1000);
        let d = usage("apps", "deployments", &json!({}));
        assert_eq!(d, [("count/deployments.apps".to_string(), 1000)].into());
        let done = json!({"status": {"phase": "Succeeded"}});
        assert!(usage("", "pods", &done).is_empty());
        let q = quota(json!({"configmaps": "5", "pods": "2"}));
        let total = recount(
            &q,
            [
                usage("", "configmaps", &json!({})),
                usage("", "pods", &done),
            ]
            .into_iter(),
        );
        assert_eq!(
            total,
            [("configmaps".into(), 1000), ("pods".into(), 0)].into()
        );
    }
}
