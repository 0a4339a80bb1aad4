//! NodeAffinity: filters on `spec.nodeSelector` and required node affinity; scores the weights
//! of the preferred node affinity terms a node matches.

use crate::scheduler::framework::{
    CycleState, NodeInfo, Plugin, PodInfo, Unfit, default_normalize,
};
use apimachinery::matching::{map_matches, node_selector_matches, node_selector_term_matches};

/// The plugin.
pub struct NodeAffinity;

/// Whether a node passes a pod's node selector and required node affinity (also used by
/// PodTopologySpread, which counts only such nodes).
pub fn required_matches(pod: &PodInfo, node: &NodeInfo) -> bool {
    map_matches(&pod.node_selector, &node.labels)
        && pod
            .required_node_affinity
            .as_ref()
            .is_none_or(|s| node_selector_matches(s, &node.labels, &node.name))
}

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> Result<(), Unfit> {
        if required_matches(pod, node) {
            Ok(())
        } else {
            Err(Unfit::unresolvable(
                "node(s) didn't match Pod's node affinity/selector",
            ))
        }
    }

    fn weight(&self) -> i64 {
        2
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> i64 {
        pod.preferred_node_affinity
            .iter()
            .filter(|t| t.weight != 0)
            .filter(|t| node_selector_term_matches(&t.preference, &node.labels, &node.name))
            .map(|t| i64::from(t.weight))
            .sum()
    }

    fn normalize(&self, scores: &mut [i64]) {
        default_normalize(scores, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::tests::{check, check_scores, fits, unfit};
    use serde_json::json;

    const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

    fn nodes() -> Vec<serde_json::Value> {
        vec![
            json!({"metadata": {"name": "ssd-a", "labels": {"disk": "ssd", "zone": "a"}}}),
            json!({"metadata": {"name": "hdd-b", "labels": {"disk": "hdd", "zone": "b"}}}),
            json!({"metadata": {"name": "bare"}}),
        ]
    }

    #[test]
    fn node_selector_and_required_affinity_filter_nodes() {
        check(
            &NodeAffinity,
            json!({"nodeSelector": {"disk": "ssd"}}),
            &nodes(),
            &[],
            &[
                ("ssd-a", fits()),
                ("hdd-b", unfit(REASON)),
                ("bare", unfit(REASON)),
            ],
        );
        check(
            &NodeAffinity,
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b", "c"]}]}]}}}}),
            &nodes(),
            &[],
            &[
                ("ssd-a", unfit(REASON)),
                ("hdd-b", fits()),
                ("bare", unfit(REASON)),
            ],
        );
        check(
            &NodeAffinity,
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["bare"]}]}]}}}}),
            &nodes(),
            &[],
            &[
                ("ssd-a", unfit(REASON)),
                ("hdd-b", unfit(REASON)),
                ("bare", fits()),
            ],
        );
    }

    #[test]
    fn preferred_terms_score_by_weight() {
        check_scores(
            &NodeAffinity,
            json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 80, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}},
                {"weight": 20, "preference": {"matchExpressions": [{"key": "zone", "operator": "Exists"}]}}
            ]}}}),
            &nodes(),
            &[],
            &[("ssd-a", 100), ("hdd-b", 20), ("bare", 0)],
        );
    }
}
