//! The ClusterRole aggregation controller, run inside the API server: the `rules` of every
//! ClusterRole with an `aggregationRule` are the union of the rules of the ClusterRoles its
//! `clusterRoleSelectors` match (Kubernetes runs this in the controller-manager).

use std::sync::Arc;
use std::time::Duration;

use apimachinery::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as MetaSelector;
use apimachinery::selector::LabelSelector;
use serde_json::Value;

use crate::handlers::write::update_with;
use crate::state::ApiState;
use crate::strategy::UpdateScope;

const CLUSTER_ROLES: &str = "/registry/rbac.authorization.k8s.io/clusterroles/";

/// Re-aggregates whenever a ClusterRole changes, until the process ends.
pub async fn run(state: Arc<ApiState>) {
    loop {
        let Ok(mut cursor) = state.cache().watch_from(state.cache().revision()) else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        reconcile(&state).await;
        while let Ok(batch) = cursor.next_batch().await {
            if batch
                .iter()
                .any(|e| e.object.key.starts_with(CLUSTER_ROLES))
            {
                reconcile(&state).await;
            }
        }
    }
}

fn selectors(role: &Value) -> Option<Vec<LabelSelector>> {
    let list = role
        .pointer("/aggregationRule/clusterRoleSelectors")?
        .as_array()?;
    Some(
        list.iter()
            .filter_map(|s| serde_json::from_value::<MetaSelector>(s.clone()).ok())
            .filter_map(|s| LabelSelector::from_metav1(&s).ok())
            .collect(),
    )
}

fn labels(role: &Value) -> std::collections::BTreeMap<String, String> {
    role.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// The aggregated rules of every aggregating role, from `roles` (name, object).
pub fn aggregate(roles: &[(String, Value)]) -> Vec<(String, Vec<Value>)> {
    let mut out = Vec::new();
    for (name, role) in roles {
        let Some(selectors) = selectors(role) else {
            continue;
        };
        let mut rules: Vec<Value> = Vec::new();
        for (other, source) in roles {
            if other == name {
                continue;
            }
            let l = labels(source);
            if !selectors
                .iter()
                .any(|s| !s.is_everything() && s.matches(&l))
            {
                continue;
            }
            for r in source
                .get("rules")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if !rules.contains(r) {
                    rules.push(r.clone());
                }
            }
        }
        out.push((name.clone(), rules));
    }
    out
}

async fn reconcile(state: &Arc<ApiState>) {
    let Some(info) =
        state
            .registry()
            .by_resource("rbac.authorization.k8s.io", "v1", "clusterroles")
    else {
        return;
    };
    let roles: Vec<(String, Value)> = state
        .cache()
        .list(CLUSTER_ROLES, None, 0, |_| true)
        .0
        .objects
        .iter()
        .map(|o| {
            (
                o.key.trim_start_matches(CLUSTER_ROLES).to_string(),
                o.object.clone(),
            )
        })
        .collect();
    for (name, rules) in aggregate(&roles) {
        let current = roles
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, r)| r.get("rules").cloned())
            .unwrap_or(Value::Array(vec![]));
        if current == Value::Array(rules.clone()) {
            continue;
        }
        let rules = Value::Array(rules);
        let result = update_with(state, &info, None, &name, UpdateScope::Main, false, |old| {
            let mut new = old.clone();
            new["rules"] = rules.clone();
            if let Some(m) = new.pointer_mut("/metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            Ok(new)
        })
        .await;
        if let Err(e) = result {
            tracing::warn!(role = %name, error = %e, "cannot aggregate the rules of a ClusterRole");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn aggregated_roles_collect_the_rules_of_labelled_roles_once() {
        let r1 = json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]});
        let r2 = json!({"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]});
        let roles = vec![
            (
                "view".to_string(),
                json!({"aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "view"}}]}, "rules": []}),
            ),
            (
                "a".to_string(),
                json!({"metadata": {"labels": {"agg": "view"}}, "rules": [r1, r2]}),
            ),
            (
                "b".to_string(),
                json!({"metadata": {"labels": {"agg": "view"}}, "rules": [r1]}),
            ),
            (
                "c".to_string(),
                json!({"metadata": {"labels": {"agg": "edit"}}, "rules": [{"verbs": ["*"]}]}),
            ),
        ];
        assert_eq!(aggregate(&roles), vec![("view".to_string(), vec![r1, r2])]);
    }
}
