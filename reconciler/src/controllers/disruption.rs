//! The disruption controller: keeps each PodDisruptionBudget's status (expected pods, healthy
//! pods, desired healthy, disruptions allowed, the `DisruptionAllowed` condition) from the pods
//! it covers, and forgets evicted pods (`status.disruptedPods`) once they are gone or going.
//!
//! The arithmetic is `apimachinery::disruption`, shared with the API server's eviction
//! subresource, which spends disruptions between two passes of this controller.

use std::sync::Arc;

use apimachinery::disruption;
use futures::FutureExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Patch;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use super::{Context, Error, api_error};

/// The stores the controller reads.
#[derive(Clone)]
struct Stores {
    pods: Store<Pod>,
    replicasets: Store<ReplicaSet>,
    statefulsets: Store<StatefulSet>,
}

/// Runs the controller until the context stops.
pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let (budgets, pdb_stream) = ctx.reflect(
        Api::<PodDisruptionBudget>::all(ctx.client.clone()),
        watcher::Config::default(),
    );
    let (pods, pod_stream) = ctx.reflect(
        Api::<Pod>::all(ctx.client.clone()),
        watcher::Config::default(),
    );
    let (replicasets, rs_stream) = ctx.reflect(
        Api::<ReplicaSet>::all(ctx.client.clone()),
        watcher::Config::default(),
    );
    let (statefulsets, sts_stream) = ctx.reflect(
        Api::<StatefulSet>::all(ctx.client.clone()),
        watcher::Config::default(),
    );
    let stores = Stores {
        pods: pods.clone(),
        replicasets: replicasets.clone(),
        statefulsets: statefulsets.clone(),
    };
    let for_pod = budgets.clone();
    let controller = Controller::for_stream(pdb_stream, budgets.clone())
        .watches_stream(pod_stream, move |pod: Pod| {
            let ns = pod.namespace().unwrap_or_default();
            for_pod
                .state()
                .into_iter()
                .filter(|b| b.namespace().as_deref() == Some(ns.as_str()))
                .map(|b| ObjectRef::from_obj(&*b))
                .collect::<Vec<_>>()
        })
        // Scale changes move `expectedPods`; the pods' own events follow soon after, but a
        // budget with maxUnavailable reads the scale directly.
        .watches_stream(rs_stream, |_| None::<ObjectRef<PodDisruptionBudget>>)
        .watches_stream(sts_stream, |_| None::<ObjectRef<PodDisruptionBudget>>);
    ctx.ready(&budgets).await?;
    ctx.ready(&pods).await?;
    ctx.ready(&replicasets).await?;
    ctx.ready(&statefulsets).await?;
    ctx.drive(controller, move |pdb, ctx| {
        reconcile(pdb, ctx, stores.clone()).boxed()
    })
    .await;
    Ok(())
}

async fn reconcile(
    pdb: Arc<PodDisruptionBudget>,
    ctx: Arc<Context>,
    stores: Stores,
) -> Result<Action, Error> {
    let ns = pdb.namespace().unwrap_or_default();
    let name = pdb.name_any();
    let Ok(mut obj) = serde_json::to_value(&*pdb) else {
        return Ok(Action::await_change());
    };
    let pods: Vec<Value> = stores
        .pods
        .state()
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .filter_map(|p| serde_json::to_value(&**p).ok())
        .collect();
    // Evicted pods that are gone or terminating no longer need remembering.
    if let Some(m) = obj
        .pointer_mut("/status/disruptedPods")
        .and_then(Value::as_object_mut)
    {
        m.retain(|pod, _| {
            pods.iter().any(|p| {
                p.pointer("/metadata/name").and_then(Value::as_str) == Some(pod.as_str())
                    && p.pointer("/metadata/deletionTimestamp").is_none()
            })
        });
    }
    let selector = match disruption::selector(&obj) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(namespace = %ns, budget = %name, error = %e, "bad budget");
            return Ok(Action::await_change());
        }
    };
    let covered: Vec<&Value> = pods
        .iter()
        .filter(|p| disruption::covers(&obj, &selector, p))
        .filter(|p| {
            !matches!(
                p.pointer("/status/phase").and_then(Value::as_str),
                Some("Succeeded" | "Failed")
            )
        })
        .collect();
    let scale = |kind: &str, owner: &str| match kind {
        "ReplicaSet" => stores
            .replicasets
            .get(&ObjectRef::new(owner).within(&ns))
            .map(|rs| rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1) as i64),
        "StatefulSet" => stores
            .statefulsets
            .get(&ObjectRef::new(owner).within(&ns))
            .map(|s| s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1) as i64),
        _ => None,
    };
    let budget = match disruption::budget(&obj, &covered, &scale) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(namespace = %ns, budget = %name, error = %e, "bad budget");
            return Ok(Action::await_change());
        }
    };
    let old = pdb
        .status
        .as_ref()
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(json!({}));
    let allowed = budget.disruptions_allowed > 0;
    let state = if allowed { "True" } else { "False" };
    let since = old
        .get("conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "DisruptionAllowed"))
        .filter(|c| c["status"] == state)
        .map(|c| c["lastTransitionTime"].clone())
        .unwrap_or_else(|| {
            json!(
                jiff::Timestamp::now()
                    .round(jiff::Unit::Second)
                    .map(|t| t.to_string())
                    .unwrap_or_default()
            )
        });
    let generation = pdb.metadata.generation.unwrap_or(1);
    let status = json!({
        "observedGeneration": generation,
        "expectedPods": budget.expected_pods,
        "currentHealthy": budget.current_healthy,
        "desiredHealthy": budget.desired_healthy,
        "disruptionsAllowed": budget.disruptions_allowed,
        "disruptedPods": obj.pointer("/status/disruptedPods").cloned().unwrap_or(json!({})),
        "conditions": [{
            "type": "DisruptionAllowed",
            "status": state,
            "reason": if allowed { "SufficientPods" } else { "InsufficientPods" },
            "message": "",
            "observedGeneration": generation,
            "lastTransitionTime": since,
        }],
    });
    let unchanged = [
        "observedGeneration",
        "expectedPods",
        "currentHealthy",
        "desiredHealthy",
        "disruptionsAllowed",
        "disruptedPods",
        "conditions",
    ]
    .iter()
    .all(|k| old.get(*k).unwrap_or(&Value::Null) == &status[*k]);
    if unchanged {
        return Ok(Action::await_change());
    }
    // A merge patch removes map entries with nulls.
    let mut disrupted = status["disruptedPods"].clone();
    if let (Some(was), Some(now)) = (
        old.get("disruptedPods").and_then(Value::as_object),
        disrupted.as_object_mut(),
    ) {
        for k in was.keys() {
            now.entry(k.clone()).or_insert(Value::Null);
        }
    }
    let mut patch = status.clone();
    patch["disruptedPods"] = disrupted;
    Api::<PodDisruptionBudget>::namespaced(ctx.client.clone(), &ns)
        .patch_status(
            &name,
            &ctx.patch_params(),
            &Patch::Merge(json!({"status": patch})),
        )
        .await
        .map_err(api_error(format!(
            "updating the status of poddisruptionbudget {ns}/{name}"
        )))?;
    Ok(Action::await_change())
}
