//! Preemption: when no node fits a pod, find the node where evicting the fewest, least
//! important lower-priority pods makes it fit, as kube-scheduler's DefaultPreemption does.
//!
//! Per node: remove every lower-priority pod; if the pod then fits, put victims back one by
//! one, most important first, keeping back every one whose return still leaves room. Nodes
//! that fail for a reason eviction cannot fix (selectors, taints) are skipped. The best
//! candidate has the lowest highest-victim priority, then the lowest priority sum, then the
//! fewest victims. Cross-node constraints (spread, pod affinity) are judged on the cluster as it
//! is, not as it would be after the evictions.

use std::sync::Arc;

use super::algorithm::Algorithm;
use super::framework::{NodeInfo, PodInfo};
use super::snapshot::Snapshot;

/// A node and the pods to evict from it.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The node the pod is nominated to.
    pub node: String,
    /// The pods to delete.
    pub victims: Vec<Arc<PodInfo>>,
}

impl Candidate {
    fn rank(&self) -> (i32, i64, usize) {
        (
            self.victims
                .iter()
                .map(|v| v.priority)
                .max()
                .unwrap_or(i32::MIN),
            self.victims.iter().map(|v| i64::from(v.priority)).sum(),
            self.victims.len(),
        )
    }
}

/// Whether a pod may preempt at all: it has not opted out, and it is not already waiting for
/// victims of an earlier preemption on its nominated node to go.
pub fn eligible(pod: &PodInfo, nominated_node: Option<&NodeInfo>) -> bool {
    if pod.never_preempts {
        return false;
    }
    match nominated_node {
        Some(node) => !node
            .pods
            .iter()
            .any(|p| p.deleting && p.priority < pod.priority),
        None => true,
    }
}

/// Finds the best candidate, if any node can be freed for `pod`.
pub fn find(pod: &PodInfo, snapshot: &Snapshot, algorithm: &Algorithm) -> Option<Candidate> {
    let state = algorithm.pre_filter(pod, snapshot);
    let mut best: Option<Candidate> = None;
    for node in snapshot.nodes() {
        let mut lower: Vec<Arc<PodInfo>> = node
            .pods
            .iter()
            .filter(|p| p.priority < pod.priority && !p.deleting)
            .cloned()
            .collect();
        if lower.is_empty() {
            continue;
        }
        if let Err(u) = algorithm.filter(pod, node, &state)
            && !u.resolvable
        {
            continue;
        }
        let mut trial = node.clone();
        for v in &lower {
            trial.remove_pod(&v.namespace, &v.name);
        }
        if algorithm.filter(pod, &trial, &state).is_err() {
            continue;
        }
        // Most important first: they are the ones worth sparing.
        lower.sort_by_key(|p| std::cmp::Reverse(p.priority));
        let mut victims = Vec::new();
        for v in lower {
            trial.add_pod(v.clone());
            if algorithm.filter(pod, &trial, &state).is_err() {
                trial.remove_pod(&v.namespace, &v.name);
                victims.push(v);
            }
        }
        let candidate = Candidate {
            node: node.name.clone(),
            victims,
        };
        if best.as_ref().is_none_or(|b| candidate.rank() < b.rank()) {
            best = Some(candidate);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::algorithm::Config;
    use crate::scheduler::plugins::default_plugins;
    use crate::scheduler::plugins::tests::{node, pod, snapshot};
    use serde_json::{Value, json};

    fn with_priority(node: &str, name: &str, cpu: &str, priority: i32) -> Value {
        json!({"name": name, "nodeName": node, "priority": priority,
            "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]})
    }

    fn check(
        nodes: &[Value],
        bound: &[Value],
        preemptor: Value,
        expected: Option<(&str, &[&str])>,
    ) {
        let snap = snapshot(nodes, bound);
        let alg = Algorithm::new(default_plugins(), Config::default());
        let got = find(&pod(&preemptor, 0), &snap, &alg).map(|c| {
            let mut names: Vec<String> = c.victims.iter().map(|v| v.name.clone()).collect();
            names.sort();
            (c.node, names)
        });
        let expected = expected.map(|(n, v)| {
            (
                n.to_string(),
                v.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
        });
        assert_eq!(got, expected);
    }

    #[test]
    fn the_fewest_least_important_victims_are_chosen() {
        let nodes = [node("a", "2", "8Gi", "110"), node("b", "2", "8Gi", "110")];
        let bound = [
            with_priority("a", "a-low", "1", 1),
            with_priority("a", "a-mid", "1", 5),
            with_priority("b", "b-mid1", "1", 5),
            with_priority("b", "b-mid2", "1", 5),
        ];
        let preemptor = json!({"priority": 10, "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]});
        check(&nodes, &bound, preemptor, Some(("a", &["a-low"])));
    }

    #[test]
    fn equal_or_higher_priority_pods_are_never_victims() {
        let nodes = [node("a", "1", "8Gi", "110")];
        let bound = [with_priority("a", "same", "1", 10)];
        let preemptor = json!({"priority": 10, "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]});
        check(&nodes, &bound, preemptor, None);
    }

    #[test]
    fn nodes_eviction_cannot_fix_are_skipped() {
        let nodes = [node("a", "1", "8Gi", "110")];
        let bound = [with_priority("a", "low", "1", 0)];
        let preemptor = json!({"priority": 10, "nodeSelector": {"disk": "ssd"},
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]});
        check(&nodes, &bound, preemptor, None);
    }
}
