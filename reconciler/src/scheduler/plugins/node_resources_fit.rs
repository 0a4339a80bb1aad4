//! NodeResourcesFit: a node fits when its allocatable, minus what its pods (bound and assumed)
//! request, covers the pod's requests, including one more pod.

use crate::scheduler::framework::{CycleState, NodeInfo, Plugin, PodInfo, Unfit};

/// The plugin (its scoring half is [`super::least_allocated`]).
pub struct NodeResourcesFit;

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> Result<(), Unfit> {
        let want = &pod.requests.requests;
        let free = &node.allocatable;
        let used = &node.requested;
        let mut reasons = Vec::new();
        if used.pods + 1 > free.pods {
            reasons.push("Too many pods".into());
        }
        if want.milli_cpu > 0 && want.milli_cpu > free.milli_cpu - used.milli_cpu {
            reasons.push("Insufficient cpu".into());
        }
        if want.memory > 0 && want.memory > free.memory - used.memory {
            reasons.push("Insufficient memory".into());
        }
        if want.ephemeral_storage > 0
            && want.ephemeral_storage > free.ephemeral_storage - used.ephemeral_storage
        {
            reasons.push("Insufficient ephemeral-storage".into());
        }
        for (name, amount) in &want.scalar {
            let have = free.scalar.get(name).copied().unwrap_or(0)
                - used.scalar.get(name).copied().unwrap_or(0);
            if *amount > 0 && *amount > have {
                reasons.push(format!("Insufficient {name}").into());
            }
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(Unfit {
                reasons,
                resolvable: true,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::tests::{check, fits, node, unfit, unfit_all};
    use serde_json::json;

    #[test]
    fn requests_are_checked_against_what_bound_pods_leave() {
        let nodes = [
            node("big", "4", "8Gi", "110"),
            node("small", "1", "1Gi", "110"),
            node("full", "4", "8Gi", "1"),
        ];
        let bound = [json!({"nodeName": "small", "containers": [{"name": "c",
            "resources": {"requests": {"cpu": "600m", "memory": "512Mi"}}}]})];
        let pod = json!({"containers": [{"name": "c",
            "resources": {"requests": {"cpu": "500m", "memory": "600Mi"}}}]});
        check(
            &NodeResourcesFit,
            pod,
            &nodes,
            &bound,
            &[
                ("big", fits()),
                (
                    "small",
                    unfit_all(&["Insufficient cpu", "Insufficient memory"]),
                ),
                ("full", fits()),
            ],
        );
        let bound_full = [json!({"nodeName": "full", "containers": [{"name": "c"}]})];
        check(
            &NodeResourcesFit,
            json!({"containers": [{"name": "c"}]}),
            &nodes,
            &bound_full,
            &[
                ("big", fits()),
                ("small", fits()),
                ("full", unfit("Too many pods")),
            ],
        );
    }

    #[test]
    fn extended_resources_must_be_offered() {
        let mut gpu = node("gpu", "4", "8Gi", "110");
        gpu["status"]["allocatable"]["example.com/gpu"] = json!("1");
        let nodes = [gpu, node("plain", "4", "8Gi", "110")];
        check(
            &NodeResourcesFit,
            json!({"containers": [{"name": "c", "resources": {"requests": {"example.com/gpu": "1"}}}]}),
            &nodes,
            &[],
            &[
                ("gpu", fits()),
                ("plain", unfit("Insufficient example.com/gpu")),
            ],
        );
    }
}
