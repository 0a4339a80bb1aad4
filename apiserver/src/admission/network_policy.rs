//! The NetworkPolicy warning on create: policies are enforced by node agents whose pods have
//! their own network namespace (Nodes with a `spec.podCIDR`: the process runtime as root, or
//! containerd with its CNI bridge). Pods of nodes without one (rootless, `--pod-network host`,
//! simulated nodes) share the host network and cannot be isolated, so creating a policy while
//! such nodes are registered answers a `Warning:` naming them; with no node registered at all,
//! the warning says where policies are enforced.

use apimachinery::registry::ResourceInfo;
use serde_json::Value;

use crate::handlers::ApiRequest;
use crate::state::ApiState;

/// Adds the warning to a NetworkPolicy create, when the cluster has nodes that do not enforce it.
pub fn warn_unenforced(state: &ApiState, info: &ResourceInfo, req: &ApiRequest) {
    if info.custom
        || (info.group.as_str(), info.kind.as_str()) != ("networking.k8s.io", "NetworkPolicy")
    {
        return;
    }
    let Some(nodes) = state.registry().by_resource("", "v1", "nodes") else {
        return;
    };
    let (snapshot, _) = state.cache().list(&nodes.key_prefix(), None, 0, |_| true);
    let nodes: Vec<&Value> = snapshot.objects.iter().map(|o| &o.object).collect();
    if let Some(w) = warning(&nodes) {
        req.warn(w);
    }
}

/// The warning for a cluster of `nodes`, if any.
fn warning(nodes: &[&Value]) -> Option<String> {
    if nodes.is_empty() {
        return Some(
            "NetworkPolicy is enforced only for pods in their own network namespace (nodes with a \
             spec.podCIDR); pods on the host network are not isolated"
                .into(),
        );
    }
    let mut shared: Vec<&str> = nodes
        .iter()
        .filter(|n| {
            n.pointer("/spec/podCIDR")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        })
        .filter_map(|n| n.pointer("/metadata/name").and_then(Value::as_str))
        .collect();
    if shared.is_empty() {
        return None;
    }
    shared.sort_unstable();
    let more = shared.len().saturating_sub(5);
    shared.truncate(5);
    let mut names = shared.join(", ");
    if more > 0 {
        names.push_str(&format!(" and {more} more"));
    }
    Some(format!(
        "NetworkPolicy is not enforced on nodes whose pods share the host network ({names}): \
         pods there are not isolated"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(nodes: &[Value], expected: Option<&str>) {
        let refs: Vec<&Value> = nodes.iter().collect();
        assert_eq!(warning(&refs).as_deref(), expected, "{nodes:?}");
    }

    fn node(name: &str, cidr: Option<&str>) -> Value {
        match cidr {
            Some(c) => json!({"metadata": {"name": name}, "spec": {"podCIDR": c}}),
            None => json!({"metadata": {"name": name}, "spec": {}}),
        }
    }

    #[test]
    fn the_warning_names_the_nodes_whose_pods_share_the_host_network() {
        check(&[node("a", Some("10.88.1.0/24"))], None);
        check(
            &[
                node("b", None),
                node("a", Some("10.88.1.0/24")),
                node("c", Some("")),
            ],
            Some(
                "NetworkPolicy is not enforced on nodes whose pods share the host network \
                 (b, c): pods there are not isolated",
            ),
        );
        let many: Vec<Value> = (0..7).map(|i| node(&format!("n{i}"), None)).collect();
        check(
            &many,
            Some(
                "NetworkPolicy is not enforced on nodes whose pods share the host network \
                 (n0, n1, n2, n3, n4 and 2 more): pods there are not isolated",
            ),
        );
        check(
            &[],
            Some(
                "NetworkPolicy is enforced only for pods in their own network namespace (nodes \
                 with a spec.podCIDR); pods on the host network are not isolated",
            ),
        );
    }
}
