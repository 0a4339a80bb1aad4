//! The cluster as the scheduler sees it, updated incrementally from watch events and from its
//! own decisions ("assumed" pods, counted on their node before the binding is confirmed), never
//! rebuilt per pod.
//!
//! Nodes live in a vector, so a scheduling cycle walks them by index; every change to a node
//! gives it a fresh generation number from one counter, which is what the equivalence cache
//! checks.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;

use super::framework::{NodeInfo, PodInfo};

/// Where a pod the snapshot counts is.
#[derive(Clone, Debug)]
struct Placement {
    node: String,
    assumed: bool,
}

/// Nodes and the pods on them.
#[derive(Debug, Default)]
pub struct Snapshot {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    pods: HashMap<String, Placement>,
    /// Pods on a node whose name is not (yet) known: they join it when it appears.
    orphans: HashMap<String, Vec<Arc<PodInfo>>>,
    generation: u64,
    anti_affinity_pods: usize,
}

/// What a node event changed, for deciding which waiting pods to retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeChange {
    /// A node appeared.
    Added,
    /// Something the scheduler reads changed (labels, taints, allocatable, unschedulable).
    Updated,
    /// Nothing the scheduler reads changed.
    Unchanged,
}

impl Snapshot {
    /// An empty snapshot.
    pub fn new() -> Snapshot {
        Snapshot::default()
    }

    fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    /// The nodes, in a stable order (until a node is removed).
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// A node by name.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|i| &self.nodes[*i])
    }

    /// Number of bound or assumed pods with required anti-affinity terms. While there are any,
    /// whether a node fits can depend on other nodes, so the equivalence cache stays unused.
    pub fn anti_affinity_pods(&self) -> usize {
        self.anti_affinity_pods
    }

    /// Adds or updates a node.
    pub fn apply_node(&mut self, node: &Node) -> NodeChange {
        let mut info = NodeInfo::from_node(node);
        match self.index.get(&info.name) {
            Some(&i) => {
                if self.nodes[i].same_node(&info) {
                    return NodeChange::Unchanged;
                }
                let generation = self.next_generation();
                let old = &mut self.nodes[i];
                old.labels = info.labels;
                old.taints = info.taints;
                old.unschedulable = info.unschedulable;
                old.allocatable = info.allocatable;
                old.generation = generation;
                NodeChange::Updated
            }
            None => {
                info.generation = self.next_generation();
                for pod in self.orphans.remove(&info.name).unwrap_or_default() {
                    info.add_pod(pod);
                }
                self.index.insert(info.name.clone(), self.nodes.len());
                self.nodes.push(info);
                NodeChange::Added
            }
        }
    }

    /// Removes a node; its pods stay counted (as orphans) until they are deleted, in case it
    /// comes back.
    pub fn delete_node(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else {
            return;
        };
        let node = self.nodes.swap_remove(i);
        if i < self.nodes.len() {
            self.index.insert(self.nodes[i].name.clone(), i);
        }
        if !node.pods.is_empty() {
            self.orphans.insert(node.name, node.pods);
        }
    }

    /// Whether the snapshot counts a pod (bound or assumed).
    pub fn has_pod(&self, key: &str) -> bool {
        self.pods.contains_key(key)
    }

    /// A bound (not assumed) pod as the snapshot counts it.
    pub fn bound_pod(&self, key: &str) -> Option<&Arc<PodInfo>> {
        let placement = self.pods.get(key).filter(|p| !p.assumed)?;
        let (namespace, name) = key.split_once('/')?;
        let pods = match self.index.get(&placement.node) {
            Some(&i) => &self.nodes[i].pods,
            None => self.orphans.get(&placement.node)?,
        };
        pods.iter()
            .find(|p| p.namespace == namespace && p.name == name)
    }

    /// Whether a pod is assumed (placed by this scheduler, binding not yet seen).
    pub fn is_assumed(&self, key: &str) -> bool {
        self.pods.get(key).is_some_and(|p| p.assumed)
    }

    /// Counts a pod on its node, as seen bound in a watch event (confirms an assumed pod).
    pub fn apply_bound_pod(&mut self, pod: Arc<PodInfo>) {
        let key = pod.key();
        let node = pod.node_name.clone();
        self.remove_pod(&key);
        self.place(key, node, pod, false);
    }

    /// Counts a pod on the node chosen for it before the binding is confirmed.
    pub fn assume(&mut self, pod: Arc<PodInfo>, node: &str) {
        let key = pod.key();
        self.remove_pod(&key);
        self.place(key, node.to_string(), pod, true);
    }

    fn place(&mut self, key: String, node: String, pod: Arc<PodInfo>, assumed: bool) {
        if !pod.anti_affinity.is_empty() {
            self.anti_affinity_pods += 1;
        }
        match self.index.get(&node) {
            Some(&i) => {
                let generation = self.next_generation();
                let info = &mut self.nodes[i];
                info.add_pod(pod);
                info.generation = generation;
            }
            None => self.orphans.entry(node.clone()).or_default().push(pod),
        }
        self.pods.insert(key, Placement { node, assumed });
    }

    /// Stops counting a pod (deleted, finished, or an assumed pod whose binding failed).
    pub fn remove_pod(&mut self, key: &str) -> bool {
        let Some(placement) = self.pods.remove(key) else {
            return false;
        };
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        let anti = match self.index.get(&placement.node) {
            Some(&i) => {
                let generation = self.next_generation();
                let info = &mut self.nodes[i];
                let anti = info
                    .pods
                    .iter()
                    .find(|p| p.namespace == namespace && p.name == name)
                    .is_some_and(|p| !p.anti_affinity.is_empty());
                info.remove_pod(namespace, name);
                info.generation = generation;
                anti
            }
            None => {
                let mut anti = false;
                if let Some(list) = self.orphans.get_mut(&placement.node) {
                    if let Some(j) = list
                        .iter()
                        .position(|p| p.namespace == namespace && p.name == name)
                    {
                        anti = !list[j].anti_affinity.is_empty();
                        list.swap_remove(j);
                    }
                    if list.is_empty() {
                        self.orphans.remove(&placement.node);
                    }
                }
                anti
            }
        };
        if anti {
            self.anti_affinity_pods -= 1;
        }
        true
    }

    /// Keys of every counted pod (to reconcile after a re-list).
    pub fn pod_keys(&self) -> Vec<String> {
        self.pods.keys().cloned().collect()
    }

    /// Names of every node (to reconcile after a re-list).
    pub fn node_names(&self) -> Vec<String> {
        self.index.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::framework::PriorityClasses;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    fn node(name: &str, cpu: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name},
            "status": {"allocatable": {"cpu": cpu, "memory": "1Gi", "pods": "10"}}}))
        .unwrap()
    }

    fn pod(name: &str, node: &str, cpu: &str) -> Arc<PodInfo> {
        let p: Pod = serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}}))
        .unwrap();
        Arc::new(PodInfo::from_pod(&p, &PriorityClasses::default()))
    }

    #[test]
    fn pods_are_counted_incrementally_and_bump_only_their_node() {
        let mut s = Snapshot::new();
        assert_eq!(s.apply_node(&node("a", "2")), NodeChange::Added);
        assert_eq!(s.apply_node(&node("b", "2")), NodeChange::Added);
        assert_eq!(s.apply_node(&node("b", "2")), NodeChange::Unchanged);
        let gen_b = s.node("b").unwrap().generation;
        s.assume(pod("p", "", "500m"), "a");
        assert!(s.is_assumed("default/p"));
        assert_eq!(s.node("a").unwrap().requested.milli_cpu, 500);
        assert_eq!(s.node("b").unwrap().generation, gen_b);
        s.apply_bound_pod(pod("p", "a", "500m"));
        assert!(!s.is_assumed("default/p"));
        assert_eq!(s.node("a").unwrap().requested.milli_cpu, 500);
        assert_eq!(s.node("a").unwrap().requested.pods, 1);
        assert!(s.remove_pod("default/p"));
        assert_eq!(s.node("a").unwrap().requested.milli_cpu, 0);
        assert_eq!(s.apply_node(&node("b", "4")), NodeChange::Updated);
        assert_ne!(s.node("b").unwrap().generation, gen_b);
    }

    #[test]
    fn pods_of_an_unknown_node_join_it_when_it_appears() {
        let mut s = Snapshot::new();
        s.apply_bound_pod(pod("p", "late", "1"));
        s.apply_node(&node("x", "1"));
        s.apply_node(&node("late", "4"));
        assert_eq!(s.node("late").unwrap().requested.milli_cpu, 1000);
        s.delete_node("x");
        assert_eq!(s.node("late").unwrap().name, "late");
        assert_eq!(s.nodes().len(), 1);
    }
}
