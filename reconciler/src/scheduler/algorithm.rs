//! One scheduling cycle: pre-filter, a sampled feasibility search over the snapshot (resumed
//! where the last cycle stopped, as kube-scheduler does), scoring of the feasible nodes, and the
//! choice of the best one; or, when nothing fits, the diagnosis behind `FailedScheduling`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::equivalence::{EquivalenceCache, NodeResult, class_of};
use super::framework::{CycleState, NodeInfo, Plugin, PodInfo, Unfit};
use super::snapshot::Snapshot;

/// How many nodes a cycle looks at.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Stop searching once this percentage of the nodes were found feasible (at least 100
    /// nodes, or all of them in smaller clusters). `None`: kube-scheduler's adaptive default,
    /// `50 - nodes/125` percent, at least 5 % (10 % of 5,000 nodes).
    pub percentage_of_nodes_to_score: Option<u32>,
}

/// The smallest number of feasible nodes a cycle looks for.
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;

impl Config {
    /// How many feasible nodes to find among `nodes` before scoring.
    pub fn feasible_nodes_to_find(&self, nodes: usize) -> usize {
        if nodes < MIN_FEASIBLE_NODES_TO_FIND {
            return nodes;
        }
        let percentage = match self.percentage_of_nodes_to_score {
            Some(p) if p > 0 => p.min(100) as usize,
            _ => (50usize.saturating_sub(nodes / 125)).max(5),
        };
        (nodes * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
    }
}

/// Why a pod fits no node: reason → number of nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnosis {
    /// All nodes considered.
    pub nodes: usize,
    /// Each reason with the number of nodes that gave it.
    pub reasons: BTreeMap<String, usize>,
    /// Some node failed only for reasons preemption could resolve.
    pub resolvable: bool,
}

impl Diagnosis {
    /// The `FailedScheduling` message: "0/5 nodes are available: 2 Insufficient cpu, 3 node(s)
    /// had untolerated taint {gpu: true}." (reasons sorted as kube-scheduler sorts them).
    pub fn message(&self) -> String {
        if self.nodes == 0 {
            // kube-scheduler's ErrNoNodesAvailable.
            return "no nodes available to schedule pods".into();
        }
        let mut parts: Vec<String> = self
            .reasons
            .iter()
            .map(|(reason, n)| format!("{n} {reason}"))
            .collect();
        parts.sort();
        if parts.is_empty() {
            format!("0/{} nodes are available.", self.nodes)
        } else {
            format!(
                "0/{} nodes are available: {}.",
                self.nodes,
                parts.join(", ")
            )
        }
    }
}

/// The outcome of a cycle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Bind the pod to this node.
    Fit {
        /// The chosen node.
        node: String,
        /// Nodes evaluated.
        evaluated: usize,
        /// Feasible nodes found.
        feasible: usize,
    },
    /// No node fits.
    Unfit(Diagnosis),
}

/// Pods nominated to nodes by preemption, waiting for their victims to go: their requests are
/// held on the node for pods of lower or equal priority.
pub type Nominations = HashMap<String, Vec<Arc<PodInfo>>>;

/// The scheduling algorithm with its plugins and caches.
pub struct Algorithm {
    plugins: Vec<Box<dyn Plugin>>,
    scorers: Vec<usize>,
    config: Config,
    next_start: usize,
    cache: EquivalenceCache,
    rng: u64,
}

impl Algorithm {
    /// An algorithm over these plugins.
    pub fn new(plugins: Vec<Box<dyn Plugin>>, config: Config) -> Algorithm {
        let scorers = plugins
            .iter()
            .enumerate()
            .filter(|(_, p)| p.weight() > 0)
            .map(|(i, _)| i)
            .collect();
        Algorithm {
            plugins,
            scorers,
            config,
            next_start: 0,
            cache: EquivalenceCache::default(),
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// Equivalence cache hits and misses so far.
    pub fn cache_stats(&self) -> (u64, u64) {
        (self.cache.hits, self.cache.misses)
    }

    /// Runs every pre-filter for a pod.
    pub fn pre_filter(&self, pod: &PodInfo, snapshot: &Snapshot) -> CycleState {
        let mut state = CycleState::default();
        for p in &self.plugins {
            p.pre_filter(pod, snapshot, &mut state);
        }
        state
    }

    /// Runs the filters in order, stopping at the first that fails.
    pub fn filter(&self, pod: &PodInfo, node: &NodeInfo, state: &CycleState) -> Result<(), Unfit> {
        self.plugins
            .iter()
            .try_for_each(|p| p.filter(pod, node, state))
    }

    /// Filters `node` for `pod`; when it fits, appends its raw scores (one per scoring plugin)
    /// to `scores` and returns `None`.
    fn evaluate(
        &self,
        pod: &PodInfo,
        node: &NodeInfo,
        state: &CycleState,
        scores: &mut Vec<i64>,
    ) -> Option<Unfit> {
        match self.filter(pod, node, state) {
            Ok(()) => {
                scores.extend(
                    self.scorers
                        .iter()
                        .map(|&i| self.plugins[i].score(pod, node, state)),
                );
                None
            }
            Err(u) => Some(u),
        }
    }

    /// [`Algorithm::evaluate`] on a node holding the requests of pods nominated to it with at
    /// least `pod`'s priority.
    fn evaluate_with_nominated(
        &self,
        pod: &PodInfo,
        node: &NodeInfo,
        nominated: &[Arc<PodInfo>],
        state: &CycleState,
        scores: &mut Vec<i64>,
    ) -> Option<Unfit> {
        let mut held = node.clone();
        for n in nominated {
            if n.priority >= pod.priority && !(n.namespace == pod.namespace && n.name == pod.name) {
                held.add_pod(n.clone());
            }
        }
        match self.filter(pod, &held, state) {
            Ok(()) => self.evaluate(pod, node, state, scores),
            Err(u) => Some(u),
        }
    }

    fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Finds a node for `pod`.
    pub fn schedule(
        &mut self,
        pod: &PodInfo,
        snapshot: &Snapshot,
        nominations: &Nominations,
    ) -> Outcome {
        let nodes = snapshot.nodes();
        let n = nodes.len();
        if n == 0 {
            return Outcome::Unfit(Diagnosis::default());
        }
        let state = self.pre_filter(pod, snapshot);
        let class = if snapshot.anti_affinity_pods() == 0 {
            class_of(pod)
        } else {
            None
        };
        let to_find = self.config.feasible_nodes_to_find(n);
        let start = self.next_start % n;
        // The feasible nodes' positions, and their raw scores in one flat buffer (one row of
        // `scorers.len()` per feasible node): no allocation per node, as a cycle looks at
        // hundreds of them.
        let width = self.scorers.len();
        let mut feasible: Vec<usize> = Vec::with_capacity(to_find.min(n));
        let mut scores: Vec<i64> = Vec::with_capacity(to_find.min(n) * width);
        let mut diagnosis = Diagnosis {
            nodes: n,
            ..Diagnosis::default()
        };
        let mut processed = 0;
        // The class's cached results, looked up once per cycle; results computed in this cycle
        // are remembered after it.
        let cached = class.and_then(|c| self.cache.slots(c));
        let mut fresh: Vec<(usize, u64, NodeResult)> = Vec::new();
        let mut hits = 0;
        for k in 0..n {
            let i = (start + k) % n;
            let node = &nodes[i];
            processed += 1;
            let held = if nominations.is_empty() {
                None
            } else {
                nominations.get(&node.name).filter(|v| !v.is_empty())
            };
            let hit = cached
                .and_then(|slots| slots.get(i))
                .and_then(Option::as_ref)
                .filter(|(generation, _)| *generation == node.generation)
                .map(|(_, r)| r);
            let unfit = match (class, held, hit) {
                (_, Some(nominated), _) => {
                    self.evaluate_with_nominated(pod, node, nominated, &state, &mut scores)
                }
                (Some(_), None, Some(NodeResult::Fit(raw))) => {
                    hits += 1;
                    // A few scores: pushed one by one, cheaper than a call to memcpy.
                    for &v in raw {
                        scores.push(v);
                    }
                    None
                }
                (Some(_), None, Some(NodeResult::Unfit(u))) => {
                    hits += 1;
                    Some(u.clone())
                }
                (Some(_), None, None) => {
                    let at = scores.len();
                    let unfit = self.evaluate(pod, node, &state, &mut scores);
                    let result = match &unfit {
                        None => NodeResult::Fit(scores[at..].to_vec()),
                        Some(u) => NodeResult::Unfit(u.clone()),
                    };
                    fresh.push((i, node.generation, result));
                    unfit
                }
                (None, None, _) => self.evaluate(pod, node, &state, &mut scores),
            };
            match unfit {
                None => {
                    feasible.push(i);
                    if feasible.len() >= to_find {
                        break;
                    }
                }
                Some(u) => {
                    diagnosis.resolvable |= u.resolvable;
                    for r in u.reasons {
                        *diagnosis.reasons.entry(r.into_owned()).or_default() += 1;
                    }
                }
            }
        }
        self.next_start = (start + processed) % n;
        if let Some(c) = class {
            self.cache.hits += hits;
            self.cache.misses += fresh.len() as u64;
            for (i, generation, result) in fresh {
                self.cache.put(c, i, generation, result);
            }
        }
        if feasible.is_empty() {
            return Outcome::Unfit(diagnosis);
        }
        let found = feasible.len();
        let best = if found == 1 {
            feasible[0]
        } else {
            feasible[self.select(&scores, width)]
        };
        Outcome::Fit {
            node: nodes[best].name.clone(),
            evaluated: processed,
            feasible: found,
        }
    }

    /// Normalizes each plugin's scores over the feasible nodes (`scores`: one row of `width`
    /// raw scores per feasible node), weighs and sums them, and picks the row with the highest
    /// total (ties broken at random, so equal nodes share the load).
    fn select(&mut self, scores: &[i64], width: usize) -> usize {
        let rows = scores.len().checked_div(width).unwrap_or(0);
        let mut totals = vec![0i64; rows];
        let mut column = vec![0i64; rows];
        for (s, &plugin) in self.scorers.iter().enumerate() {
            for (j, c) in column.iter_mut().enumerate() {
                *c = scores[j * width + s];
            }
            let p = &self.plugins[plugin];
            p.normalize(&mut column);
            for (t, v) in totals.iter_mut().zip(&column) {
                *t += v * p.weight();
            }
        }
        let mut best = 0;
        let mut ties = 0u64;
        for j in 0..totals.len() {
            if totals[j] > totals[best] {
                best = j;
                ties = 1;
            } else if totals[j] == totals[best] {
                ties += 1;
                if self.random().is_multiple_of(ties) {
                    best = j;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::default_plugins;
    use crate::scheduler::plugins::tests::{node, pod, snapshot};
    use serde_json::json;

    fn check(
        nodes: &[serde_json::Value],
        bound: &[serde_json::Value],
        pod_spec: serde_json::Value,
        expected: Result<&str, &str>,
    ) {
        let snap = snapshot(nodes, bound);
        let mut alg = Algorithm::new(default_plugins(), Config::default());
        let got = match alg.schedule(&pod(&pod_spec, 0), &snap, &Nominations::new()) {
            Outcome::Fit { node, .. } => Ok(node),
            Outcome::Unfit(d) => Err(d.message()),
        };
        let expected = expected.map(str::to_string).map_err(str::to_string);
        assert_eq!(got, expected, "{pod_spec}");
    }

    #[test]
    fn the_message_counts_nodes_per_reason() {
        let tainted = |name: &str| {
            let mut n = node(name, "8", "8Gi", "110");
            n["spec"] =
                json!({"taints": [{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}]});
            n
        };
        let nodes = [
            node("s1", "1", "8Gi", "110"),
            node("s2", "1", "8Gi", "110"),
            node("s3", "1", "8Gi", "110"),
            tainted("t1"),
            tainted("t2"),
        ];
        check(
            &nodes,
            &[],
            json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "2"}}}]}),
            Err(
                "0/5 nodes are available: 2 node(s) had untolerated taint {dedicated: infra}, 3 Insufficient cpu.",
            ),
        );
    }

    #[test]
    fn the_emptiest_fitting_node_wins() {
        let nodes = [
            node("a", "4", "8Gi", "110"),
            node("b", "4", "8Gi", "110"),
            node("c", "1", "1Gi", "110"),
        ];
        let bound = [
            json!({"nodeName": "a", "containers": [{"name": "c", "resources": {"requests": {"cpu": "2", "memory": "4Gi"}}}]}),
        ];
        check(
            &nodes,
            &bound,
            json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]}),
            Ok("b"),
        );
    }

    #[test]
    fn sampling_looks_for_a_tenth_of_five_thousand_nodes() {
        let c = Config::default();
        assert_eq!(c.feasible_nodes_to_find(50), 50);
        assert_eq!(c.feasible_nodes_to_find(200), 100);
        assert_eq!(c.feasible_nodes_to_find(5000), 500);
        assert_eq!(c.feasible_nodes_to_find(100_000), 5000);
        let fixed = Config {
            percentage_of_nodes_to_score: Some(100),
        };
        assert_eq!(fixed.feasible_nodes_to_find(5000), 5000);
    }

    #[test]
    fn the_equivalence_cache_serves_later_pods_of_a_class_and_sees_changes() {
        let nodes: Vec<_> = (0..10)
            .map(|i| node(&format!("n{i}"), "1", "1Gi", "110"))
            .collect();
        let mut snap = snapshot(&nodes, &[]);
        let mut alg = Algorithm::new(default_plugins(), Config::default());
        let spec =
            json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "600m"}}}]});
        // Ten pods of one class fill the ten nodes, one each: every cycle reuses the results of
        // the nodes that did not change and recomputes the one that did.
        for i in 0..10 {
            let p = pod(&spec, i);
            match alg.schedule(&p, &snap, &Nominations::new()) {
                Outcome::Fit { node, .. } => snap.assume(p, &node),
                Outcome::Unfit(d) => panic!("pod {i}: {}", d.message()),
            }
        }
        let (hits, misses) = alg.cache_stats();
        assert!(hits > misses, "hits {hits}, misses {misses}");
        match alg.schedule(&pod(&spec, 11), &snap, &Nominations::new()) {
            Outcome::Unfit(d) => assert_eq!(
                d.message(),
                "0/10 nodes are available: 10 Insufficient cpu."
            ),
            other => panic!("{other:?}"),
        }
    }
}
