//! NodeUnschedulable: a cordoned node (`spec.unschedulable`) takes only pods that tolerate the
//! `node.kubernetes.io/unschedulable:NoSchedule` taint.

use k8s_openapi::api::core::v1::Taint;

use crate::scheduler::framework::{CycleState, NodeInfo, Plugin, PodInfo, Unfit};
use apimachinery::matching::tolerates;

/// The plugin.
pub struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> Result<(), Unfit> {
        if !node.unschedulable {
            return Ok(());
        }
        let taint = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            ..Taint::default()
        };
        if pod.tolerations.iter().any(|t| tolerates(t, &taint)) {
            Ok(())
        } else {
            Err(Unfit::unresolvable("node(s) were unschedulable"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::tests::{check, fits, unfit};
    use serde_json::json;

    #[test]
    fn cordoned_nodes_take_only_pods_that_tolerate_it() {
        let nodes = [
            json!({"metadata": {"name": "open"}}),
            json!({"metadata": {"name": "cordoned"}, "spec": {"unschedulable": true}}),
        ];
        check(
            &NodeUnschedulable,
            json!({}),
            &nodes,
            &[],
            &[
                ("open", fits()),
                ("cordoned", unfit("node(s) were unschedulable")),
            ],
        );
        check(
            &NodeUnschedulable,
            json!({"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists"}]}),
            &nodes,
            &[],
            &[("open", fits()), ("cordoned", fits())],
        );
    }
}
