//! NodePorts: a pod's host ports must be free on the node.

use crate::scheduler::framework::{CycleState, NodeInfo, Plugin, PodInfo, Unfit};

/// The plugin.
pub struct NodePorts;

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        "NodePorts"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &CycleState) -> Result<(), Unfit> {
        let taken = pod
            .host_ports
            .iter()
            .any(|want| node.used_ports.iter().any(|used| used.conflicts(want)));
        if taken {
            Err(Unfit::resolvable(
                "node(s) didn't have free ports for the requested pod ports",
            ))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::tests::{check, fits, unfit};
    use serde_json::json;

    const TAKEN: &str = "node(s) didn't have free ports for the requested pod ports";

    fn with_port(port: i32, protocol: &str, ip: Option<&str>) -> serde_json::Value {
        let mut p = json!({"containerPort": 80, "hostPort": port, "protocol": protocol});
        if let Some(ip) = ip {
            p["hostIP"] = json!(ip);
        }
        json!({"containers": [{"name": "c", "ports": [p]}]})
    }

    #[test]
    fn host_ports_in_use_keep_pods_out() {
        let nodes = [
            json!({"metadata": {"name": "a"}}),
            json!({"metadata": {"name": "b"}}),
        ];
        let mut bound = with_port(8080, "TCP", Some("127.0.0.1"));
        bound["nodeName"] = json!("a");
        let bound = [bound];
        check(
            &NodePorts,
            with_port(8080, "TCP", None),
            &nodes,
            &bound,
            &[("a", unfit(TAKEN)), ("b", fits())],
        );
        check(
            &NodePorts,
            with_port(8080, "UDP", None),
            &nodes,
            &bound,
            &[("a", fits()), ("b", fits())],
        );
        check(
            &NodePorts,
            with_port(8080, "TCP", Some("127.0.0.2")),
            &nodes,
            &bound,
            &[("a", fits()), ("b", fits())],
        );
        check(
            &NodePorts,
            with_port(9090, "TCP", None),
            &nodes,
            &bound,
            &[("a", fits()), ("b", fits())],
        );
    }
}
