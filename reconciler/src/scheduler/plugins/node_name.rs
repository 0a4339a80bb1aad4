//! NodeName: a pod that names a node (`spec.nodeName`) fits only that node.

use crate::scheduler::framework::{CycleState, NodeInfo, Plugin, PodInfo, Unfit};

/// The plugin.
pub struct NodeName;

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        "NodeName"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> Result<(), Unfit> {
        if pod.node_name.is_empty() || pod.node_name == node.name {
            Ok(())
        } else {
            Err(Unfit::unresolvable(
                "node(s) didn't match the requested node name",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::tests::{check, fits, unfit};
    use serde_json::json;

    #[test]
    fn a_named_node_is_the_only_fit() {
        let nodes = [
            json!({"metadata": {"name": "a"}}),
            json!({"metadata": {"name": "b"}}),
        ];
        check(
            &NodeName,
            json!({}),
            &nodes,
            &[],
            &[("a", fits()), ("b", fits())],
        );
        check(
            &NodeName,
            json!({"nodeName": "a"}),
            &nodes,
            &[],
            &[
                ("a", fits()),
                ("b", unfit("node(s) didn't match the requested node name")),
            ],
        );
    }
}
