//! The node lifecycle controller: notices nodes that stopped heartbeating and evicts their pods.
//!
//! Every monitor period, per node: when its Lease in `kube-node-lease` was last seen to change
//! (by this controller's clock, as Kubernetes' probe timestamps). Silent for longer than the
//! grace period (40 s by default), the node's conditions become `Unknown`
//! (`NodeStatusUnknown`) and its pods are marked not Ready. The taints follow the `Ready`
//! condition ([`condition_taints`]): `Unknown` gives `node.kubernetes.io/unreachable`, `False`
//! gives `node.kubernetes.io/not-ready`, each `NoSchedule` and `NoExecute`; `True` removes them
//! (the node's own agent posts `Ready` again when it comes back). Pods on a node with
//! `NoExecute` taints are deleted when [`eviction_at`] says so: at once without a toleration,
//! after the shortest `tolerationSeconds`, never for an unbounded toleration. Pods without a
//! toleration for `not-ready`/`unreachable` are treated as having Kubernetes'
//! DefaultTolerationSeconds ones (300 s, configurable), since gitplane's API server does not
//! add them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use apimachinery::matching::tolerates;
use apimachinery::pod;
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch};
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use super::{Context, Error};
use crate::events::EventType;

/// The taint of a node whose `Ready` condition is `Unknown`.
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The taint of a node whose `Ready` condition is `False`.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// Where node Leases live.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// The `(key, effect)` taints a node gets for its `Ready` condition status.
pub fn condition_taints(ready: Option<&str>) -> Vec<(&'static str, &'static str)> {
    match ready {
        Some("False") => vec![(NOT_READY, "NoSchedule"), (NOT_READY, "NoExecute")],
        Some("Unknown") => vec![(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")],
        // Ready, or not reported yet (a silent node becomes Unknown after the grace period).
        _ => vec![],
    }
}

/// When a pod with `tolerations` must leave a node with `taints` (`NoExecute` ones count):
/// `None` never, `Some(t)` at `t` (the taint's `timeAdded` plus the shortest matching
/// `tolerationSeconds`; `now` for a taint nothing tolerates).
pub fn eviction_at(
    tolerations: &[Toleration],
    taints: &[Taint],
    default_seconds: i64,
    now: Timestamp,
) -> Option<Timestamp> {
    let mut at: Option<Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let mut matching: Vec<Option<i64>> = tolerations
            .iter()
            .filter(|t| tolerates(t, taint))
            .map(|t| t.toleration_seconds)
            .collect();
        if matching.is_empty() && (taint.key == UNREACHABLE || taint.key == NOT_READY) {
            matching.push(Some(default_seconds));
        }
        if matching.is_empty() {
            return Some(now);
        }
        let Some(secs) = matching.into_iter().flatten().min() else {
            continue;
        };
        let added = taint.time_added.as_ref().map(|t| t.0).unwrap_or(now);
        let t = added + jiff::SignedDuration::from_secs(secs.max(0));
        at = Some(at.map_or(t, |a| a.min(t)));
    }
    at
}

fn ready_status(node: &Node) -> Option<String> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

/// Runs the node lifecycle controller until the context stops.
pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let (nodes, node_writer) = reflector::store::<Node>();
    let (leases, lease_writer) = reflector::store::<Lease>();
    let node_stream = reflector(
        node_writer,
        watcher(
            Api::<Node>::all(ctx.client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .for_each(|_| async {});
    let lease_stream = reflector(
        lease_writer,
        watcher(
            Api::<Lease>::namespaced(ctx.client.clone(), LEASE_NAMESPACE),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .for_each(|_| async {});
    let mut monitor = Monitor {
        ctx: ctx.clone(),
        probes: HashMap::new(),
    };
    let mut tick = tokio::time::interval(ctx.config.node_monitor_period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The watches run on their own so the stores fill while a check waits for them.
    let watches = [tokio::spawn(node_stream), tokio::spawn(lease_stream)];
    let shutdown = ctx.stopped();
    tokio::pin!(shutdown);
    let result = loop {
        tokio::select! {
            _ = &mut shutdown => break Ok(()),
            _ = tick.tick() => {
                if let Err(e) = ctx.ready(&nodes).await.and(ctx.ready(&leases).await) {
                    break Err(e);
                }
                monitor.check(&nodes, &leases).await;
            }
        }
    };
    for w in watches {
        w.abort();
    }
    result
}

/// The controller's state: when each node's Lease was last seen to change.
struct Monitor {
    ctx: Arc<Context>,
    probes: HashMap<String, (Option<Timestamp>, Instant)>,
}

impl Monitor {
    async fn check(&mut self, nodes: &Store<Node>, leases: &Store<Lease>) {
        let now = Instant::now();
        let nodes = nodes.state();
        self.probes
            .retain(|name, _| nodes.iter().any(|n| &n.name_any() == name));
        for node in nodes {
            let name = node.name_any();
            let renew = leases
                .get(&ObjectRef::new(&name).within(LEASE_NAMESPACE))
                .and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0));
            let probe = self.probes.entry(name.clone()).or_insert((renew, now));
            if probe.0 != renew {
                *probe = (renew, now);
            }
            let stale = now.duration_since(probe.1) > self.ctx.config.node_monitor_grace_period;
            if let Err(e) = self.sync(&node, stale).await {
                tracing::warn!(node = %name, error = %e, "node lifecycle sync failed");
            }
        }
    }

    async fn sync(&self, node: &Node, stale: bool) -> Result<(), kube::Error> {
        let name = node.name_any();
        let api: Api<Node> = Api::all(self.ctx.client.clone());
        let wall = Timestamp::now();
        let mut ready = ready_status(node);
        if stale && ready.as_deref() != Some("Unknown") {
            let conditions: Vec<NodeCondition> = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default()
                .into_iter()
                .map(|c| NodeCondition {
                    status: "Unknown".into(),
                    reason: Some("NodeStatusUnknown".into()),
                    message: Some("Kubelet stopped posting node status.".into()),
                    last_transition_time: Some(Time(wall)),
                    ..c
                })
                .collect();
            let conditions = if conditions.iter().any(|c| c.type_ == "Ready") {
                conditions
            } else {
                let mut c = conditions;
                c.push(NodeCondition {
                    type_: "Ready".into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_transition_time: Some(Time(wall)),
                    ..NodeCondition::default()
                });
                c
            };
            api.patch_status(
                &name,
                &self.ctx.patch_params(),
                &Patch::Merge(json!({"status": {"conditions": conditions}})),
            )
            .await?;
            self.ctx.event(
                node,
                EventType::Normal,
                "NodeNotReady",
                "NodeNotReady",
                format!("Node {name} status is now: NodeNotReady"),
            );
            ready = Some("Unknown".into());
        }
        // Taints follow the Ready condition.
        let wanted = condition_taints(ready.as_deref());
        let current: Vec<Taint> = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let ours = |t: &Taint| t.key == UNREACHABLE || t.key == NOT_READY;
        let mut next: Vec<Taint> = current
            .iter()
            .filter(|t| !ours(t) || wanted.contains(&(t.key.as_str(), t.effect.as_str())))
            .cloned()
            .collect();
        for (key, effect) in &wanted {
            if !next.iter().any(|t| t.key == *key && t.effect == *effect) {
                next.push(Taint {
                    key: (*key).into(),
                    effect: (*effect).into(),
                    time_added: (*effect == "NoExecute").then_some(Time(wall)),
                    value: None,
                });
            }
        }
        if next != current {
            api.patch(
                &name,
                &self.ctx.patch_params(),
                &Patch::Merge(json!({
                    "metadata": {"resourceVersion": node.resource_version()},
                    "spec": {"taints": next},
                })),
            )
            .await?;
        }
        if next.iter().any(|t| t.effect == "NoExecute") || ready.as_deref() != Some("True") {
            self.pods_on(&name, &next, ready.as_deref() == Some("True"), wall)
                .await?;
        }
        Ok(())
    }

    /// Marks the pods of a node that is not Ready as not Ready, and evicts those whose
    /// tolerations ran out.
    async fn pods_on(
        &self,
        node: &str,
        taints: &[Taint],
        node_ready: bool,
        now: Timestamp,
    ) -> Result<(), kube::Error> {
        let pods = Api::<Pod>::all(self.ctx.client.clone())
            .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
            .await?;
        for pod in pods.items {
            if pod.metadata.deletion_timestamp.is_some() || pod::terminal(&pod) {
                continue;
            }
            let ns = pod.namespace().unwrap_or_else(|| "default".into());
            let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
            let tolerations = pod
                .spec
                .as_ref()
                .and_then(|s| s.tolerations.clone())
                .unwrap_or_default();
            let evict = eviction_at(
                &tolerations,
                taints,
                self.ctx.config.default_toleration_seconds,
                now,
            );
            if evict.is_some_and(|t| t <= now) {
                match api.delete(&pod.name_any(), &DeleteParams::default()).await {
                    Ok(_) => self.ctx.event(
                        &pod,
                        EventType::Normal,
                        "TaintManagerEviction",
                        "Delete",
                        format!("Marking for deletion Pod {ns}/{}", pod.name_any()),
                    ),
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
                continue;
            }
            if !node_ready && pod::ready(&pod) {
                let patch = json!({"status": {"conditions": [{
                    "type": "Ready", "status": "False", "reason": "NodeNotReady",
                    "lastTransitionTime": Time(now),
                }]}});
                if let Err(e) = api
                    .patch_status(
                        &pod.name_any(),
                        &self.ctx.patch_params(),
                        &Patch::Strategic(patch),
                    )
                    .await
                {
                    tracing::debug!(pod = %pod.name_any(), error = %e, "marking pod not ready failed");
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn taint(key: &str, effect: &str, added: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            time_added: Some(Time(t(added))),
            value: None,
        }
    }

    fn toleration(key: &str, effect: &str, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            toleration_seconds: seconds,
            ..Toleration::default()
        }
    }

    const NOW: &str = "2026-01-01T00:10:00Z";

    fn check(tolerations: &[Toleration], taints: &[Taint], expected: Option<&str>) {
        assert_eq!(
            eviction_at(tolerations, taints, 300, t(NOW)),
            expected.map(t),
            "{tolerations:?} {taints:?}"
        );
    }

    #[test]
    fn pods_leave_a_no_execute_node_when_their_toleration_runs_out() {
        let unreachable = [taint(UNREACHABLE, "NoExecute", "2026-01-01T00:00:00Z")];
        // The default toleration: 300 s after the taint.
        check(&[], &unreachable, Some("2026-01-01T00:05:00Z"));
        check(
            &[toleration(UNREACHABLE, "NoExecute", Some(2))],
            &unreachable,
            Some("2026-01-01T00:00:02Z"),
        );
        // Tolerated forever (DaemonSet pods).
        check(
            &[toleration(UNREACHABLE, "NoExecute", None)],
            &unreachable,
            None,
        );
        // The shortest of several matching tolerations.
        check(
            &[
                toleration(UNREACHABLE, "NoExecute", Some(60)),
                toleration("", "NoExecute", Some(10)),
            ],
            &unreachable,
            Some("2026-01-01T00:00:10Z"),
        );
    }

    #[test]
    fn an_untolerated_no_execute_taint_evicts_at_once_and_others_do_not_count() {
        let other = [taint("maintenance", "NoExecute", "2026-01-01T00:00:00Z")];
        check(&[], &other, Some(NOW));
        check(
            &[],
            &[taint("gpu", "NoSchedule", "2026-01-01T00:00:00Z")],
            None,
        );
        check(&[], &[], None);
    }

    #[test]
    fn taints_follow_the_ready_condition() {
        assert_eq!(condition_taints(Some("True")), vec![]);
        assert_eq!(
            condition_taints(Some("Unknown")),
            vec![(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")]
        );
        assert_eq!(
            condition_taints(Some("False")),
            vec![(NOT_READY, "NoSchedule"), (NOT_READY, "NoExecute")]
        );
        assert_eq!(condition_taints(None), vec![]);
    }
}
