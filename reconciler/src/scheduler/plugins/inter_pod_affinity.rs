//! InterPodAffinity (required terms): a pod with pod affinity goes only where a matching pod
//! runs in the same topology domain; a pod with anti-affinity never goes where one does; and no
//! pod goes where an existing pod's anti-affinity forbids it.
//!
//! Terms look in the namespaces they list, or the pod's own; `namespaceSelector` is read as
//! "all namespaces" when empty and is otherwise not supported (namespaces carry no labels the
//! scheduler watches yet), so such terms fall back to the listed or own namespace.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::PodAffinityTerm;

use crate::scheduler::framework::{CycleState, NodeInfo, Plugin, PodInfo, Unfit};
use crate::scheduler::snapshot::Snapshot;
use apimachinery::matching::selector_matches;

/// The plugin.
pub struct InterPodAffinity;

/// A topology domain: a label key and value.
type Domain = (String, String);

/// Per-pod state: for each affinity term the domains that have a matching pod, the domains
/// where the pod's anti-affinity terms find a pod, and the domains existing pods' anti-affinity
/// closes to it.
#[derive(Debug, Default)]
pub struct State {
    affinity: Vec<HashSet<Domain>>,
    /// No pod anywhere matches any affinity term, and the pod matches its own terms: the first
    /// pod of a group that wants to be together may go anywhere.
    affinity_bootstrap: bool,
    anti_affinity: HashSet<Domain>,
    existing_anti_affinity: HashSet<Domain>,
}

/// Whether `term` (of a pod in `owner_namespace`) selects `candidate`.
pub fn term_matches(term: &PodAffinityTerm, owner_namespace: &str, candidate: &PodInfo) -> bool {
    let Some(selector) = &term.label_selector else {
        return false;
    };
    let all_namespaces = term.namespace_selector.as_ref().is_some_and(|s| {
        s.match_labels.as_ref().is_none_or(|m| m.is_empty())
            && s.match_expressions.as_ref().is_none_or(|e| e.is_empty())
    });
    let in_namespace = all_namespaces
        || match term.namespaces.as_deref() {
            Some(list) if !list.is_empty() => list.contains(&candidate.namespace),
            _ => candidate.namespace == owner_namespace,
        };
    in_namespace && selector_matches(selector, &candidate.labels)
}

fn node_domain(node: &NodeInfo, key: &str) -> Option<Domain> {
    node.labels.get(key).map(|v| (key.to_string(), v.clone()))
}

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }

    fn pre_filter(&self, pod: &PodInfo, snapshot: &Snapshot, state: &mut CycleState) {
        let mut s = State {
            affinity: vec![HashSet::new(); pod.affinity.len()],
            ..State::default()
        };
        let check_existing = snapshot.anti_affinity_pods() > 0;
        if pod.affinity.is_empty() && pod.anti_affinity.is_empty() && !check_existing {
            return;
        }
        for node in snapshot.nodes() {
            for other in &node.pods {
                if other.namespace == pod.namespace && other.name == pod.name {
                    continue;
                }
                for (i, term) in pod.affinity.iter().enumerate() {
                    if term_matches(term, &pod.namespace, other)
                        && let Some(d) = node_domain(node, &term.topology_key)
                    {
                        s.affinity[i].insert(d);
                    }
                }
                for term in &pod.anti_affinity {
                    if term_matches(term, &pod.namespace, other)
                        && let Some(d) = node_domain(node, &term.topology_key)
                    {
                        s.anti_affinity.insert(d);
                    }
                }
                for term in &other.anti_affinity {
                    if term_matches(term, &other.namespace, pod)
                        && let Some(d) = node_domain(node, &term.topology_key)
                    {
                        s.existing_anti_affinity.insert(d);
                    }
                }
            }
        }
        s.affinity_bootstrap = !pod.affinity.is_empty()
            && s.affinity.iter().all(HashSet::is_empty)
            && pod
                .affinity
                .iter()
                .all(|t| term_matches(t, &pod.namespace, pod));
        state.inter_pod = Some(s);
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo, state: &CycleState) -> Result<(), Unfit> {
        let Some(s) = &state.inter_pod else {
            return Ok(());
        };
        if !s.existing_anti_affinity.is_empty()
            && node
                .labels
                .iter()
                .any(|(k, v)| s.existing_anti_affinity.contains(&(k.clone(), v.clone())))
        {
            return Err(Unfit::resolvable(
                "node(s) didn't satisfy existing pods anti-affinity rules",
            ));
        }
        if pod.affinity.iter().zip(&s.affinity).any(|(term, domains)| {
            let Some(d) = node_domain(node, &term.topology_key) else {
                return true;
            };
            !s.affinity_bootstrap && !domains.contains(&d)
        }) {
            return Err(Unfit::unresolvable(
                "node(s) didn't match pod affinity rules",
            ));
        }
        if pod.anti_affinity.iter().any(|term| {
            node_domain(node, &term.topology_key).is_some_and(|d| s.anti_affinity.contains(&d))
        }) {
            return Err(Unfit::resolvable(
                "node(s) didn't match pod anti-affinity rules",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::tests::{check, fits, unfit};
    use serde_json::json;

    fn nodes() -> Vec<serde_json::Value> {
        vec![
            json!({"metadata": {"name": "a1", "labels": {"zone": "a", "kubernetes.io/hostname": "a1"}}}),
            json!({"metadata": {"name": "a2", "labels": {"zone": "a", "kubernetes.io/hostname": "a2"}}}),
            json!({"metadata": {"name": "b1", "labels": {"zone": "b", "kubernetes.io/hostname": "b1"}}}),
        ]
    }

    fn term(app: &str, key: &str) -> serde_json::Value {
        json!([{"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}])
    }

    #[test]
    fn affinity_follows_matching_pods_into_their_domain() {
        let bound =
            [json!({"nodeName": "a1", "labels": {"app": "cache"}, "containers": [{"name": "c"}]})];
        let pod = json!({"containers": [{"name": "c"}], "affinity": {"podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": term("cache", "zone")}}});
        let miss = "node(s) didn't match pod affinity rules";
        check(
            &InterPodAffinity,
            pod.clone(),
            &nodes(),
            &bound,
            &[("a1", fits()), ("a2", fits()), ("b1", unfit(miss))],
        );
        check(
            &InterPodAffinity,
            pod,
            &nodes(),
            &[],
            &[
                ("a1", unfit(miss)),
                ("a2", unfit(miss)),
                ("b1", unfit(miss)),
            ],
        );
    }

    #[test]
    fn the_first_pod_of_a_self_affine_group_goes_anywhere() {
        let pod = json!({"labels": {"app": "cache"}, "containers": [{"name": "c"}], "affinity": {"podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": term("cache", "zone")}}});
        check(
            &InterPodAffinity,
            pod,
            &nodes(),
            &[],
            &[("a1", fits()), ("a2", fits()), ("b1", fits())],
        );
    }

    #[test]
    fn anti_affinity_keeps_pods_apart_both_ways() {
        let bound =
            [json!({"nodeName": "a1", "labels": {"app": "web"}, "containers": [{"name": "c"}]})];
        let pod = json!({"labels": {"app": "web"}, "containers": [{"name": "c"}], "affinity": {"podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": term("web", "kubernetes.io/hostname")}}});
        check(
            &InterPodAffinity,
            pod.clone(),
            &nodes(),
            &bound,
            &[
                ("a1", unfit("node(s) didn't match pod anti-affinity rules")),
                ("a2", fits()),
                ("b1", fits()),
            ],
        );
        let mut existing = pod;
        existing["nodeName"] = json!("b1");
        check(
            &InterPodAffinity,
            json!({"labels": {"app": "web"}, "containers": [{"name": "c"}]}),
            &nodes(),
            &[existing],
            &[
                ("a1", fits()),
                ("a2", fits()),
                (
                    "b1",
                    unfit("node(s) didn't satisfy existing pods anti-affinity rules"),
                ),
            ],
        );
    }
}
