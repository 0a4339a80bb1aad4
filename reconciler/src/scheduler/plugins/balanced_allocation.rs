//! BalancedAllocation: prefers nodes whose CPU and memory would be used in similar proportions
//! after placing the pod.

use crate::scheduler::framework::{CycleState, MAX_NODE_SCORE, NodeInfo, Plugin, PodInfo};

/// The plugin.
pub struct BalancedAllocation;

fn fraction(requested: i64, allocatable: i64) -> f64 {
    if allocatable <= 0 {
        return 1.0;
    }
    (requested as f64 / allocatable as f64).min(1.0)
}

impl Plugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        "NodeResourcesBalancedAllocation"
    }

    fn weight(&self) -> i64 {
        1
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> i64 {
        let cpu = fraction(
            node.non_zero_milli_cpu + pod.requests.non_zero_milli_cpu,
            node.allocatable.milli_cpu,
        );
        let memory = fraction(
            node.non_zero_memory + pod.requests.non_zero_memory,
            node.allocatable.memory,
        );
        // The standard deviation of two fractions is half their distance.
        let std = (cpu - memory).abs() / 2.0;
        ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::tests::{check_scores, node};
    use serde_json::json;

    #[test]
    fn nodes_used_evenly_score_higher() {
        let nodes = [
            node("even", "4", "4Gi", "110"),
            node("skewed", "4", "4Gi", "110"),
        ];
        let bound = [json!({"nodeName": "skewed", "containers": [{"name": "c",
            "resources": {"requests": {"cpu": "3", "memory": "1Gi"}}}]})];
        let pod = json!({"containers": [{"name": "c",
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]});
        check_scores(
            &BalancedAllocation,
            pod,
            &nodes,
            &bound,
            &[("even", 100), ("skewed", 75)],
        );
    }
}
