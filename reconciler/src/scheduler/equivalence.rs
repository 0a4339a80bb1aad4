//! Equivalence classes (Borg's idea): pods with identical scheduling constraints get identical
//! filter results and raw scores on an unchanged node, so a cycle reuses what an earlier pod of
//! the same class computed for every node whose generation has not moved since.
//!
//! Only pods without cross-node constraints (topology spread, pod affinity) are classed, and
//! only while no placed pod has required anti-affinity: then every filter and raw score is a
//! function of the pod's class and the node alone.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use super::framework::{PodInfo, Unfit};

/// How many classes are remembered before the cache starts over.
const MAX_CLASSES: usize = 4096;

/// The class of a pod, or `None` when its results cannot be shared.
pub fn class_of(pod: &PodInfo) -> Option<u64> {
    if pod.has_cross_node_constraints() {
        return None;
    }
    let mut h = DefaultHasher::new();
    let r = &pod.requests;
    (
        r.requests.milli_cpu,
        r.requests.memory,
        r.requests.ephemeral_storage,
        &r.requests.scalar,
        r.non_zero_milli_cpu,
        r.non_zero_memory,
    )
        .hash(&mut h);
    pod.node_name.hash(&mut h);
    pod.node_selector.hash(&mut h);
    pod.host_ports.hash(&mut h);
    // The API types do not implement Hash; their JSON form is canonical enough (field order is
    // fixed by the type, maps are sorted).
    for part in [
        serde_json::to_string(&pod.required_node_affinity),
        serde_json::to_string(&pod.preferred_node_affinity),
        serde_json::to_string(&pod.tolerations),
    ] {
        part.ok()?.hash(&mut h);
    }
    Some(h.finish())
}

/// What a cycle found for one node.
#[derive(Clone, Debug)]
pub enum NodeResult {
    /// The node fits; raw scores per scoring plugin.
    Fit(Vec<i64>),
    /// The node does not fit.
    Unfit(Unfit),
}

/// Results per class and node position, each valid for the node generation it names.
#[derive(Debug, Default)]
pub struct EquivalenceCache {
    classes: HashMap<u64, Vec<Option<(u64, NodeResult)>>>,
    /// Results served from the cache.
    pub hits: u64,
    /// Results computed.
    pub misses: u64,
}

impl EquivalenceCache {
    /// The cached result of `class` on the node at `index` if the node still has `generation`.
    pub fn get(&mut self, class: u64, index: usize, generation: u64) -> Option<&NodeResult> {
        let hit = self
            .classes
            .get(&class)
            .and_then(|v| v.get(index))
            .and_then(Option::as_ref)
            .filter(|(g, _)| *g == generation)
            .map(|(_, r)| r);
        match hit {
            Some(r) => {
                self.hits += 1;
                Some(r)
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    /// Every cached result of `class`, by node position, each with the node generation it is
    /// valid for.
    pub fn slots(&self, class: u64) -> Option<&[Option<(u64, NodeResult)>]> {
        self.classes.get(&class).map(Vec::as_slice)
    }

    /// Remembers a result.
    pub fn put(&mut self, class: u64, index: usize, generation: u64, result: NodeResult) {
        if self.classes.len() >= MAX_CLASSES && !self.classes.contains_key(&class) {
            self.classes.clear();
        }
        let slots = self.classes.entry(class).or_default();
        if slots.len() <= index {
            slots.resize(index + 1, None);
        }
        slots[index] = Some((generation, result));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::tests::pod;
    use serde_json::json;

    fn check(a: serde_json::Value, b: serde_json::Value, same: bool) {
        let (ca, cb) = (class_of(&pod(&a, 1)), class_of(&pod(&b, 2)));
        assert!(ca.is_some() && cb.is_some(), "{a} and {b} are classed");
        assert_eq!(ca == cb, same, "{a} vs {b}");
    }

    #[test]
    fn pods_with_the_same_constraints_share_a_class() {
        let base = json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]});
        check(
            base.clone(),
            json!({"labels": {"x": "y"}, "containers": [{"name": "other", "resources": {"requests": {"cpu": "1000m"}}}]}),
            true,
        );
        check(
            base.clone(),
            json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "2"}}}]}),
            false,
        );
        let mut sel = base.clone();
        sel["nodeSelector"] = json!({"disk": "ssd"});
        check(base.clone(), sel, false);
        let mut tol = base.clone();
        tol["tolerations"] = json!([{"key": "k", "operator": "Exists"}]);
        check(base, tol, false);
    }

    #[test]
    fn pods_with_cross_node_constraints_have_no_class() {
        let p = pod(
            &json!({"containers": [{"name": "c"}], "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]}),
            0,
        );
        assert_eq!(class_of(&p), None);
    }

    #[test]
    fn a_result_is_served_only_for_the_generation_it_was_computed_at() {
        let mut c = EquivalenceCache::default();
        c.put(7, 3, 10, NodeResult::Fit(vec![1]));
        assert!(c.get(7, 3, 10).is_some());
        assert!(c.get(7, 3, 11).is_none());
        assert!(c.get(7, 2, 10).is_none());
        assert!(c.get(8, 3, 10).is_none());
        assert_eq!((c.hits, c.misses), (1, 3));
    }
}
