//! TaintToleration: a node's `NoSchedule` and `NoExecute` taints keep out pods that do not
//! tolerate them; `PreferNoSchedule` taints lower the node's score.

use apimachinery::matching::tolerates;

use crate::scheduler::framework::{
    CycleState, NodeInfo, Plugin, PodInfo, Unfit, default_normalize,
};

/// The plugin.
pub struct TaintToleration;

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> Result<(), Unfit> {
        let untolerated = node.taints.iter().find(|taint| {
            (taint.effect == "NoSchedule" || taint.effect == "NoExecute")
                && !pod.tolerations.iter().any(|t| tolerates(t, taint))
        });
        match untolerated {
            None => Ok(()),
            Some(taint) => Err(Unfit::unresolvable(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                taint.key,
                taint.value.as_deref().unwrap_or("")
            ))),
        }
    }

    fn weight(&self) -> i64 {
        3
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> i64 {
        node.taints
            .iter()
            .filter(|taint| taint.effect == "PreferNoSchedule")
            .filter(|taint| {
                !pod.tolerations.iter().any(|t| {
                    matches!(
                        t.effect.as_deref(),
                        None | Some("") | Some("PreferNoSchedule")
                    ) && tolerates(t, taint)
                })
            })
            .count() as i64
    }

    fn normalize(&self, scores: &mut [i64]) {
        default_normalize(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::tests::{check, check_scores, fits, unfit};
    use serde_json::json;

    fn nodes() -> Vec<serde_json::Value> {
        vec![
            json!({"metadata": {"name": "clean"}}),
            json!({"metadata": {"name": "gpu"}, "spec": {"taints": [{"key": "gpu", "value": "true", "effect": "NoSchedule"}]}}),
            json!({"metadata": {"name": "draining"}, "spec": {"taints": [{"key": "drain", "effect": "NoExecute"}]}}),
            json!({"metadata": {"name": "soft"}, "spec": {"taints": [{"key": "spot", "value": "yes", "effect": "PreferNoSchedule"}]}}),
        ]
    }

    #[test]
    fn untolerated_hard_taints_filter_nodes() {
        check(
            &TaintToleration,
            json!({}),
            &nodes(),
            &[],
            &[
                ("clean", fits()),
                ("gpu", unfit("node(s) had untolerated taint {gpu: true}")),
                ("draining", unfit("node(s) had untolerated taint {drain: }")),
                ("soft", fits()),
            ],
        );
        check(
            &TaintToleration,
            json!({"tolerations": [{"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"},
                                   {"operator": "Exists", "effect": "NoExecute"}]}),
            &nodes(),
            &[],
            &[
                ("clean", fits()),
                ("gpu", fits()),
                ("draining", fits()),
                ("soft", fits()),
            ],
        );
        check(
            &TaintToleration,
            json!({"tolerations": [{"key": "gpu", "value": "false"}]}),
            &nodes(),
            &[],
            &[
                ("clean", fits()),
                ("gpu", unfit("node(s) had untolerated taint {gpu: true}")),
                ("draining", unfit("node(s) had untolerated taint {drain: }")),
                ("soft", fits()),
            ],
        );
    }

    #[test]
    fn prefer_no_schedule_taints_lower_the_score() {
        let nodes = [nodes()[0].clone(), nodes()[3].clone()];
        check_scores(
            &TaintToleration,
            json!({}),
            &nodes,
            &[],
            &[("clean", 100), ("soft", 0)],
        );
        check_scores(
            &TaintToleration,
            json!({"tolerations": [{"key": "spot", "operator": "Exists"}]}),
            &nodes,
            &[],
            &[("clean", 100), ("soft", 100)],
        );
    }
}
