//! PodTopologySpread: `DoNotSchedule` constraints filter out nodes whose topology domain would
//! exceed `maxSkew`; `ScheduleAnyway` constraints prefer domains with fewer matching pods.
//!
//! Counted are the pods in the pod's namespace that match the constraint's selector, on nodes
//! that carry the topology key and pass the pod's node selector and required node affinity
//! (`nodeAffinityPolicy: Honor`, the default; taints are ignored, also the default).

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::node_affinity::required_matches;
use crate::scheduler::framework::{CycleState, MAX_NODE_SCORE, NodeInfo, Plugin, PodInfo, Unfit};
use crate::scheduler::snapshot::Snapshot;
use apimachinery::matching::selector_matches;

/// The plugin.
pub struct PodTopologySpread;

/// One constraint with the matching pods counted per domain.
#[derive(Debug)]
pub struct Constraint {
    key: String,
    max_skew: i64,
    hard: bool,
    min_domains: usize,
    /// Whether the pod being scheduled matches its own selector (it would add one).
    self_match: i64,
    counts: HashMap<String, i64>,
}

impl Constraint {
    fn min_count(&self) -> i64 {
        if self.counts.len() < self.min_domains {
            return 0;
        }
        self.counts.values().copied().min().unwrap_or(0)
    }
}

/// Per-pod state: every constraint with its counts.
#[derive(Debug, Default)]
pub struct State {
    constraints: Vec<Constraint>,
}

fn effective_selector(
    pod: &PodInfo,
    s: &Option<LabelSelector>,
    keys: &[String],
) -> Option<LabelSelector> {
    let mut selector = s.clone()?;
    for key in keys {
        if let Some(v) = pod.labels.get(key) {
            selector
                .match_labels
                .get_or_insert_with(Default::default)
                .insert(key.clone(), v.clone());
        }
    }
    Some(selector)
}

fn count_matching(node: &NodeInfo, namespace: &str, selector: &LabelSelector) -> i64 {
    node.pods
        .iter()
        .filter(|p| {
            p.namespace == namespace && !p.deleting && selector_matches(selector, &p.labels)
        })
        .count() as i64
}

fn domain<'a>(labels: &'a BTreeMap<String, String>, key: &str) -> Option<&'a String> {
    labels.get(key)
}

impl Plugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }

    fn pre_filter(&self, pod: &PodInfo, snapshot: &Snapshot, state: &mut CycleState) {
        if pod.spread.is_empty() {
            return;
        }
        let mut constraints = Vec::new();
        for c in &pod.spread {
            let selector = effective_selector(
                pod,
                &c.label_selector,
                c.match_label_keys.as_deref().unwrap_or_default(),
            );
            let mut counts = HashMap::new();
            for node in snapshot.nodes() {
                let Some(value) = domain(&node.labels, &c.topology_key) else {
                    continue;
                };
                if !required_matches(pod, node) {
                    continue;
                }
                let n = selector
                    .as_ref()
                    .map_or(0, |s| count_matching(node, &pod.namespace, s));
                *counts.entry(value.clone()).or_insert(0) += n;
            }
            constraints.push(Constraint {
                key: c.topology_key.clone(),
                max_skew: i64::from(c.max_skew.max(1)),
                hard: c.when_unsatisfiable != "ScheduleAnyway",
                min_domains: c.min_domains.unwrap_or(1).max(1) as usize,
                self_match: i64::from(
                    selector
                        .as_ref()
                        .is_some_and(|s| selector_matches(s, &pod.labels)),
                ),
                counts,
            });
        }
        state.spread = Some(State { constraints });
    }

    fn filter(&self, _pod: &PodInfo, node: &NodeInfo, state: &CycleState) -> Result<(), Unfit> {
        let Some(s) = &state.spread else {
            return Ok(());
        };
        for c in s.constraints.iter().filter(|c| c.hard) {
            let Some(value) = domain(&node.labels, &c.key) else {
                return Err(Unfit::unresolvable(
                    "node(s) didn't match pod topology spread constraints (missing required label)",
                ));
            };
            let here = c.counts.get(value).copied().unwrap_or(0);
            if here + c.self_match - c.min_count() > c.max_skew {
                return Err(Unfit::resolvable(
                    "node(s) didn't match pod topology spread constraints",
                ));
            }
        }
        Ok(())
    }

    fn weight(&self) -> i64 {
        2
    }

    fn score(&self, _pod: &PodInfo, node: &NodeInfo, state: &CycleState) -> i64 {
        let Some(s) = &state.spread else {
            return 0;
        };
        s.constraints
            .iter()
            .filter(|c| !c.hard)
            .map(|c| {
                domain(&node.labels, &c.key)
                    .and_then(|v| c.counts.get(v))
                    .copied()
                    // A node outside every domain is the worst place to spread to.
                    .unwrap_or_else(|| c.counts.values().copied().max().unwrap_or(0) + 1)
            })
            .sum()
    }

    fn normalize(&self, scores: &mut [i64]) {
        let (Some(min), Some(max)) = (scores.iter().min().copied(), scores.iter().max().copied())
        else {
            return;
        };
        for s in scores.iter_mut() {
            *s = if max == min {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max - *s) / (max - min)
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::tests::{check, check_scores, fits, unfit};
    use serde_json::json;

    const SKEW: &str = "node(s) didn't match pod topology spread constraints";

    fn nodes() -> Vec<serde_json::Value> {
        vec![
            json!({"metadata": {"name": "a1", "labels": {"zone": "a"}}}),
            json!({"metadata": {"name": "a2", "labels": {"zone": "a"}}}),
            json!({"metadata": {"name": "b1", "labels": {"zone": "b"}}}),
            json!({"metadata": {"name": "nozone"}}),
        ]
    }

    fn web(node: &str) -> serde_json::Value {
        json!({"nodeName": node, "labels": {"app": "web"}, "containers": [{"name": "c"}]})
    }

    fn spread(when: &str, skew: i32) -> serde_json::Value {
        json!({"labels": {"app": "web"}, "containers": [{"name": "c"}],
            "topologySpreadConstraints": [{"maxSkew": skew, "topologyKey": "zone",
                "whenUnsatisfiable": when, "labelSelector": {"matchLabels": {"app": "web"}}}]})
    }

    #[test]
    fn hard_constraints_keep_domains_within_max_skew() {
        let bound = [web("a1"), web("a2")];
        check(
            &PodTopologySpread,
            spread("DoNotSchedule", 1),
            &nodes(),
            &bound,
            &[
                ("a1", unfit(SKEW)),
                ("a2", unfit(SKEW)),
                ("b1", fits()),
                (
                    "nozone",
                    unfit(
                        "node(s) didn't match pod topology spread constraints (missing required label)",
                    ),
                ),
            ],
        );
        check(
            &PodTopologySpread,
            spread("DoNotSchedule", 3),
            &nodes(),
            &bound,
            &[
                ("a1", fits()),
                ("a2", fits()),
                ("b1", fits()),
                (
                    "nozone",
                    unfit(
                        "node(s) didn't match pod topology spread constraints (missing required label)",
                    ),
                ),
            ],
        );
    }

    #[test]
    fn pods_of_other_namespaces_and_labels_do_not_count() {
        let mut other_ns = web("a1");
        other_ns["namespace"] = json!("other");
        let bound = [
            other_ns,
            json!({"nodeName": "a2", "labels": {"app": "db"}, "containers": [{"name": "c"}]}),
        ];
        check(
            &PodTopologySpread,
            spread("DoNotSchedule", 1),
            &nodes()[..3],
            &bound,
            &[("a1", fits()), ("a2", fits()), ("b1", fits())],
        );
    }

    #[test]
    fn soft_constraints_prefer_emptier_domains() {
        let bound = [web("a1"), web("a2")];
        check_scores(
            &PodTopologySpread,
            spread("ScheduleAnyway", 1),
            &nodes(),
            &bound,
            &[("a1", 33), ("a2", 33), ("b1", 100), ("nozone", 0)],
        );
    }
}
