//! The filter and score plugins, one file each, and the default set the scheduler runs.

pub mod balanced_allocation;
pub mod inter_pod_affinity;
pub mod least_allocated;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod taint_toleration;

use super::framework::Plugin;

/// The default plugins in the order they filter (cheap and decisive first, as kube-scheduler
/// orders them); the ones with a weight also score.
pub fn default_plugins() -> Vec<Box<dyn Plugin>> {
    vec![
        Box::new(node_unschedulable::NodeUnschedulable),
        Box::new(node_name::NodeName),
        Box::new(taint_toleration::TaintToleration),
        Box::new(node_affinity::NodeAffinity),
        Box::new(node_ports::NodePorts),
        Box::new(node_resources_fit::NodeResourcesFit),
        Box::new(pod_topology_spread::PodTopologySpread),
        Box::new(inter_pod_affinity::InterPodAffinity),
        Box::new(least_allocated::LeastAllocated),
        Box::new(balanced_allocation::BalancedAllocation),
    ]
}

#[cfg(test)]
pub(crate) mod tests {
    //! The one table helper every plugin's tests use: a snapshot built from JSON nodes and
    //! pods, a plugin run over it, the outcome per node compared with the table.

    use std::sync::Arc;

    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::{Value, json};

    use crate::scheduler::framework::{CycleState, Plugin, PodInfo, PriorityClasses};
    use crate::scheduler::snapshot::Snapshot;

    /// Expected filter outcome: `Ok` or the reasons.
    pub type Outcome = Result<(), Vec<String>>;

    /// The node fits.
    pub fn fits() -> Outcome {
        Ok(())
    }

    /// The node does not fit, for one reason.
    pub fn unfit(reason: &str) -> Outcome {
        Err(vec![reason.to_string()])
    }

    /// The node does not fit, for these reasons.
    pub fn unfit_all(reasons: &[&str]) -> Outcome {
        Err(reasons.iter().map(|r| r.to_string()).collect())
    }

    /// A node with allocatable cpu, memory and pods.
    pub fn node(name: &str, cpu: &str, memory: &str, pods: &str) -> Value {
        json!({"metadata": {"name": name},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods}}})
    }

    /// A pod from a pod spec in JSON, where `labels`, `namespace` and `name` may sit beside the
    /// spec fields for brevity.
    pub fn pod(spec: &Value, n: usize) -> Arc<PodInfo> {
        let mut spec = spec.clone();
        let obj = spec.as_object_mut().expect("pod spec object");
        let labels = obj.remove("labels").unwrap_or(json!({}));
        let namespace = obj.remove("namespace").unwrap_or(json!("default"));
        let name = obj.remove("name").unwrap_or(json!(format!("pod-{n}")));
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": spec,
        }))
        .expect("pod");
        Arc::new(PodInfo::from_pod(&p, &PriorityClasses::default()))
    }

    /// A snapshot of nodes and bound pods (each naming its node in `nodeName`).
    pub fn snapshot(nodes: &[Value], bound: &[Value]) -> Snapshot {
        let mut s = Snapshot::new();
        for n in nodes {
            let mut n = n.clone();
            if n.get("status").is_none() {
                n["status"] = json!({"allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"}});
            }
            s.apply_node(&serde_json::from_value::<Node>(n).expect("node"));
        }
        for (i, p) in bound.iter().enumerate() {
            s.apply_bound_pod(pod(p, 1000 + i));
        }
        s
    }

    /// Runs `plugin`'s filter for `pod_spec` on every node and compares with `expected`.
    pub fn check(
        plugin: &dyn Plugin,
        pod_spec: Value,
        nodes: &[Value],
        bound: &[Value],
        expected: &[(&str, Outcome)],
    ) {
        let snap = snapshot(nodes, bound);
        let pod = pod(&pod_spec, 0);
        let mut state = CycleState::default();
        plugin.pre_filter(&pod, &snap, &mut state);
        for (name, want) in expected {
            let node = snap.node(name).expect("node in table");
            let got = plugin
                .filter(&pod, node, &state)
                .map_err(|u| u.reasons.iter().map(|r| r.to_string()).collect::<Vec<_>>());
            assert_eq!(
                &got,
                want,
                "{} on node {name} for {pod_spec}",
                plugin.name()
            );
        }
    }

    /// Runs `plugin`'s score and normalization over every node in `expected` (all taken as
    /// feasible) and compares the normalized scores.
    pub fn check_scores(
        plugin: &dyn Plugin,
        pod_spec: Value,
        nodes: &[Value],
        bound: &[Value],
        expected: &[(&str, i64)],
    ) {
        let snap = snapshot(nodes, bound);
        let pod = pod(&pod_spec, 0);
        let mut state = CycleState::default();
        plugin.pre_filter(&pod, &snap, &mut state);
        let mut scores: Vec<i64> = expected
            .iter()
            .map(|(name, _)| plugin.score(&pod, snap.node(name).expect("node"), &state))
            .collect();
        plugin.normalize(&mut scores);
        let got: Vec<(&str, i64)> = expected.iter().map(|(n, _)| *n).zip(scores).collect();
        assert_eq!(got, expected, "{} scores for {pod_spec}", plugin.name());
    }
}
