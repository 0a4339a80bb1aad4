//! LeastAllocated (NodeResourcesFit's default scoring strategy): prefers nodes with the most
//! CPU and memory left after placing the pod, so pods spread over the cluster.

use crate::scheduler::framework::{CycleState, MAX_NODE_SCORE, NodeInfo, Plugin, PodInfo};

/// The plugin.
pub struct LeastAllocated;

/// `(allocatable - requested) * 100 / allocatable`, 0 when nothing is allocatable or it is full.
pub fn least_allocated(requested: i64, allocatable: i64) -> i64 {
    if allocatable <= 0 || requested > allocatable {
        return 0;
    }
    (allocatable - requested) * MAX_NODE_SCORE / allocatable
}

impl Plugin for LeastAllocated {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    fn weight(&self) -> i64 {
        1
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> i64 {
        let cpu = least_allocated(
            node.non_zero_milli_cpu + pod.requests.non_zero_milli_cpu,
            node.allocatable.milli_cpu,
        );
        let memory = least_allocated(
            node.non_zero_memory + pod.requests.non_zero_memory,
            node.allocatable.memory,
        );
        (cpu + memory) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::tests::{check_scores, node};
    use serde_json::json;

    #[test]
    fn emptier_nodes_score_higher() {
        let nodes = [
            node("empty", "4", "4Gi", "110"),
            node("busy", "4", "4Gi", "110"),
        ];
        let bound = [json!({"nodeName": "busy", "containers": [{"name": "c",
            "resources": {"requests": {"cpu": "2", "memory": "2Gi"}}}]})];
        let pod = json!({"containers": [{"name": "c",
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]});
        check_scores(
            &LeastAllocated,
            pod,
            &nodes,
            &bound,
            &[("empty", 75), ("busy", 25)],
        );
    }
}
