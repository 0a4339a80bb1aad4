//! `POST pods/<name>/eviction`: delete a pod unless that breaks its PodDisruptionBudget.
//!
//! As Kubernetes' eviction REST: a pod that is terminal, pending or already being deleted goes
//! without a budget check; a pod covered by more than one budget is refused (500); otherwise the
//! budget's status is computed from the pods it covers (`apimachinery::disruption`), and either
//! the eviction is refused with 429 ("Cannot evict pod as it would violate the pod's disruption
//! budget.") or the pod is recorded in the budget's `status.disruptedPods` with
//! `disruptionsAllowed` decremented (one compare-and-swap write, so concurrent evictions cannot
//! both spend the last disruption) and then deleted under the Eviction's `deleteOptions`.

use std::sync::Arc;

use apimachinery::disruption::{self, Budget};
use apimachinery::object::ObjectExt;
use apimachinery::status::{FieldError, Reason, StatusError};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::ApiRequest;
use super::delete::{DeleteOptions, delete_object};
use super::write::update_with;
use crate::response::{ApiResult, json};
use crate::state::ApiState;
use crate::strategy::UpdateScope;

/// Kubernetes' message for an eviction refused by a budget.
pub const REFUSED: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

fn options(eviction: &Value, dry_run: bool) -> DeleteOptions {
    let o = eviction.get("deleteOptions").unwrap_or(&Value::Null);
    let s = |p: &str| o.pointer(p).and_then(Value::as_str).map(str::to_string);
    DeleteOptions {
        uid: s("/preconditions/uid"),
        resource_version: s("/preconditions/resourceVersion"),
        propagation: s("/propagationPolicy"),
        grace_period: o.get("gracePeriodSeconds").and_then(Value::as_i64),
        dry_run: dry_run
            || o.get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|v| v == "All")),
    }
}

/// The budgets covering a pod, and the pods each covers, from the watch cache.
fn budgets_of(state: &ApiState, pod: &Value) -> Result<Vec<Value>, StatusError> {
    let ns = pod.namespace().unwrap_or("");
    let prefix = format!("/registry/policy/poddisruptionbudgets/{ns}/");
    let (pdbs, _) = state.cache().list(&prefix, None, 0, |_| true);
    let mut out = Vec::new();
    for pdb in &pdbs.objects {
        let selector =
            disruption::selector(&pdb.object).map_err(|e| StatusError::internal(e.to_string()))?;
        if disruption::covers(&pdb.object, &selector, pod) {
            out.push(pdb.object.clone());
        }
    }
    Ok(out)
}

/// The budget's status now, from the pods in the cache.
pub fn compute(state: &ApiState, pdb: &Value) -> Result<Budget, StatusError> {
    let ns = pdb.namespace().unwrap_or("");
    let selector = disruption::selector(pdb).map_err(|e| StatusError::internal(e.to_string()))?;
    let (pods, _) = state
        .cache()
        .list(&format!("/registry/core/pods/{ns}/"), None, 0, |_| true);
    let covered: Vec<&Value> = pods
        .objects
        .iter()
        .map(|p| &p.object)
        .filter(|p| disruption::covers(pdb, &selector, p))
        .filter(|p| {
            !matches!(
                p.path("status.phase").and_then(Value::as_str),
                Some("Succeeded" | "Failed")
            )
        })
        .collect();
    let scale = |kind: &str, name: &str| {
        let resource = match kind {
            "ReplicaSet" => "apps/replicasets",
            "StatefulSet" => "apps/statefulsets",
            "ReplicationController" => "core/replicationcontrollers",
            _ => return None,
        };
        state
            .cache()
            .get(&format!("/registry/{resource}/{ns}/{name}"))
            .map(|c| {
                c.object
                    .path("spec.replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1)
            })
    };
    disruption::budget(pdb, &covered, &scale).map_err(|e| StatusError::internal(e.to_string()))
}

/// The budget without the `status.disruptedPods` entries of pods that are gone or being
/// deleted (they no longer count as healthy anyway).
pub fn forget_gone(state: &ApiState, pdb: &Value) -> Value {
    let mut pdb = pdb.clone();
    let ns = pdb.namespace().unwrap_or("").to_string();
    if let Some(m) = pdb
        .pointer_mut("/status/disruptedPods")
        .and_then(Value::as_object_mut)
    {
        m.retain(|pod, _| {
            state
                .cache()
                .get(&format!("/registry/core/pods/{ns}/{pod}"))
                .is_some_and(|p| p.object.path("metadata.deletionTimestamp").is_none())
        });
    }
    pdb
}

/// The status a budget is written with.
pub fn status_of(pdb: &Value, b: &Budget) -> Value {
    let mut status = pdb.get("status").cloned().unwrap_or_else(|| json!({}));
    status["observedGeneration"] = pdb.path("metadata.generation").cloned().unwrap_or(json!(1));
    status["expectedPods"] = json!(b.expected_pods);
    status["currentHealthy"] = json!(b.current_healthy);
    status["desiredHealthy"] = json!(b.desired_healthy);
    status["disruptionsAllowed"] = json!(b.disruptions_allowed);
    let (reason, state) = if b.disruptions_allowed > 0 {
        ("SufficientPods", "True")
    } else {
        ("InsufficientPods", "False")
    };
    let previous = status
        .get("conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "DisruptionAllowed"))
        .cloned();
    let since = match previous {
        Some(c) if c["status"] == state => c["lastTransitionTime"].clone(),
        _ => json!(
            jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
                .map(|t| t.to_string())
                .unwrap_or_default()
        ),
    };
    status["conditions"] = json!([{"type": "DisruptionAllowed", "status": state, "reason": reason,
        "message": "", "observedGeneration": status["observedGeneration"], "lastTransitionTime": since}]);
    status
}

/// Evicts the pod named in the path.
pub async fn evict(state: &Arc<ApiState>, req: &ApiRequest) -> ApiResult {
    let eviction = req.json_body()?;
    let name = req.name().to_string();
    if let Some(n) = eviction.name()
        && n != name
    {
        return Err(StatusError::bad_request(format!(
            "name in URL does not match name in Eviction object: {name} != {n}"
        )));
    }
    let opts = options(&eviction, req.params.dry_run()?);
    let pod = state
        .read_stored(&req.info, req.namespace(), &name)
        .await?
        .ok_or_else(|| StatusError::not_found("", "pods", &name))?
        .object;
    let unchecked = pod.path("metadata.deletionTimestamp").is_some()
        || matches!(
            pod.path("status.phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed" | "Pending")
        );
    if !unchecked {
        state.sync_cache().await?;
        let budgets = budgets_of(state, &pod)?;
        if budgets.len() > 1 {
            return Err(StatusError::internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
        if let Some(pdb) = budgets.first() {
            spend(state, pdb, &pod, opts.dry_run).await?;
        }
    }
    delete_object(state, &req.info, req.namespace(), &name, &opts).await?;
    Ok(json(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

/// Spends one disruption of the budget on the pod, or refuses with 429.
async fn spend(
    state: &Arc<ApiState>,
    pdb: &Value,
    pod: &Value,
    dry_run: bool,
) -> Result<(), StatusError> {
    let registry = state.registry();
    let info = registry
        .by_resource("policy", "v1", "poddisruptionbudgets")
        .ok_or_else(|| StatusError::internal("poddisruptionbudgets are not served"))?;
    let pod_name = pod.name().unwrap_or("").to_string();
    let pod_healthy = disruption::healthy(pod);
    let always_allow = pdb
        .path("spec.unhealthyPodEvictionPolicy")
        .and_then(Value::as_str)
        == Some("AlwaysAllow");
    update_with(
        state,
        &info,
        pdb.namespace(),
        pdb.name().unwrap_or(""),
        UpdateScope::Status,
        dry_run,
        |current| {
            let mut next = forget_gone(state, current);
            let b = compute(state, &next)?;
            // An unhealthy pod costs the budget nothing when the budget is met (Kubernetes'
            // IfHealthyBudget) or the policy says AlwaysAllow.
            if !pod_healthy && (always_allow || b.current_healthy >= b.desired_healthy) {
                next["status"] = status_of(&next, &b);
                return Ok(next);
            }
            if b.disruptions_allowed <= 0 {
                let mut e = StatusError::new(Reason::TooManyRequests, REFUSED);
                e.details_mut().causes.push(FieldError {
                    field: String::new(),
                    reason: "DisruptionBudget".into(),
                    message: format!(
                        "The disruption budget {} needs {} healthy pods and has {} currently",
                        current.name().unwrap_or(""),
                        b.desired_healthy,
                        b.current_healthy
                    ),
                });
                return Err(e);
            }
            let spent = Budget {
                current_healthy: b.current_healthy - 1,
                disruptions_allowed: b.disruptions_allowed - 1,
                ..b
            };
            let mut status = status_of(&next, &spent);
            let now = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
                .map(|t| t.to_string())
                .unwrap_or_default();
            if !status["disruptedPods"].is_object() {
                status["disruptedPods"] = json!({});
            }
            status["disruptedPods"][pod_name.as_str()] = json!(now);
            next["status"] = status;
            Ok(next)
        },
    )
    .await?;
    Ok(())
}
