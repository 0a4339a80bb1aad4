//! The scheduling framework: the scheduler's view of pods and nodes, the [`Plugin`] trait that
//! every filter and score plugin implements, and the per-pod [`CycleState`] they share.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Node, NodeSelector, Pod, PodAffinityTerm, PreferredSchedulingTerm, Taint, Toleration,
    TopologySpreadConstraint,
};
use k8s_openapi::api::scheduling::v1::PriorityClass;

use super::plugins::{inter_pod_affinity, pod_topology_spread};
use super::resources::{PodRequests, Resources};
use super::snapshot::Snapshot;

/// The highest score a plugin gives a node.
pub const MAX_NODE_SCORE: i64 = 100;

/// A host port a container asks for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// The port on the node.
    pub port: i32,
    /// The host IP; `0.0.0.0` (all addresses) when unset.
    pub ip: String,
}

impl HostPort {
    /// Whether two host ports cannot share a node.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.protocol == other.protocol
            && self.port == other.port
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// PriorityClass values by name, and the value of the global default class.
#[derive(Clone, Debug, Default)]
pub struct PriorityClasses {
    values: HashMap<String, i32>,
    global_default: Option<(String, i32)>,
}

impl PriorityClasses {
    /// Records a class (added or changed).
    pub fn apply(&mut self, class: &PriorityClass) {
        let Some(name) = class.metadata.name.clone() else {
            return;
        };
        if class.global_default == Some(true) {
            self.global_default = Some((name.clone(), class.value));
        } else if self
            .global_default
            .as_ref()
            .is_some_and(|(n, _)| *n == name)
        {
            self.global_default = None;
        }
        self.values.insert(name, class.value);
    }

    /// Forgets a class.
    pub fn delete(&mut self, name: &str) {
        self.values.remove(name);
        if self.global_default.as_ref().is_some_and(|(n, _)| n == name) {
            self.global_default = None;
        }
    }

    /// A pod's priority: `spec.priority` when the API server resolved it, else the value of
    /// its `priorityClassName`, else the global default class, else 0.
    pub fn priority_of(&self, pod: &Pod) -> i32 {
        let spec = pod.spec.as_ref();
        if let Some(p) = spec.and_then(|s| s.priority) {
            return p;
        }
        if let Some(v) = spec
            .and_then(|s| s.priority_class_name.as_deref())
            .and_then(|n| self.values.get(n))
        {
            return *v;
        }
        self.global_default.as_ref().map_or(0, |(_, v)| *v)
    }
}

/// What the scheduler needs of a pod, read once from the object.
#[derive(Clone, Debug, Default)]
pub struct PodInfo {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID (bindings and deletions are made against it).
    pub uid: String,
    /// `metadata.generation`: changes with the spec, not with the status.
    pub generation: i64,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Resolved priority (see [`PriorityClasses::priority_of`]).
    pub priority: i32,
    /// `spec.preemptionPolicy` is `Never`.
    pub never_preempts: bool,
    /// `spec.schedulerName` (`default-scheduler` when unset).
    pub scheduler_name: String,
    /// `spec.nodeName`, empty when unassigned.
    pub node_name: String,
    /// What the pod requests.
    pub requests: PodRequests,
    /// `spec.nodeSelector`.
    pub node_selector: BTreeMap<String, String>,
    /// Required node affinity.
    pub required_node_affinity: Option<NodeSelector>,
    /// Preferred node affinity terms.
    pub preferred_node_affinity: Vec<PreferredSchedulingTerm>,
    /// Tolerations.
    pub tolerations: Vec<Toleration>,
    /// Host ports of all containers.
    pub host_ports: Vec<HostPort>,
    /// Topology spread constraints.
    pub spread: Vec<TopologySpreadConstraint>,
    /// Required pod affinity terms.
    pub affinity: Vec<PodAffinityTerm>,
    /// Required pod anti-affinity terms.
    pub anti_affinity: Vec<PodAffinityTerm>,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
}

impl PodInfo {
    /// Reads a pod.
    pub fn from_pod(pod: &Pod, priorities: &PriorityClasses) -> PodInfo {
        let meta = &pod.metadata;
        let spec = pod.spec.clone().unwrap_or_default();
        let affinity = spec.affinity.clone().unwrap_or_default();
        let node_aff = affinity.node_affinity.unwrap_or_default();
        let pod_aff = affinity.pod_affinity.unwrap_or_default();
        let anti = affinity.pod_anti_affinity.unwrap_or_default();
        let host_ports = spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                let port = p.host_port.filter(|p| *p > 0)?;
                Some(HostPort {
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    port,
                    ip: p
                        .host_ip
                        .clone()
                        .filter(|ip| !ip.is_empty())
                        .unwrap_or_else(|| "0.0.0.0".into()),
                })
            })
            .collect();
        PodInfo {
            namespace: meta.namespace.clone().unwrap_or_else(|| "default".into()),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            generation: meta.generation.unwrap_or(0),
            labels: meta.labels.clone().unwrap_or_default(),
            priority: priorities.priority_of(pod),
            never_preempts: spec.preemption_policy.as_deref() == Some("Never"),
            scheduler_name: spec
                .scheduler_name
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "default-scheduler".into()),
            node_name: spec.node_name.clone().unwrap_or_default(),
            requests: PodRequests::of(&spec),
            node_selector: spec.node_selector.clone().unwrap_or_default(),
            required_node_affinity: node_aff.required_during_scheduling_ignored_during_execution,
            preferred_node_affinity: node_aff
                .preferred_during_scheduling_ignored_during_execution
                .unwrap_or_default(),
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            host_ports,
            spread: spec.topology_spread_constraints.clone().unwrap_or_default(),
            affinity: pod_aff
                .required_during_scheduling_ignored_during_execution
                .unwrap_or_default(),
            anti_affinity: anti
                .required_during_scheduling_ignored_during_execution
                .unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
        }
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Whether the pod's placement can depend on other nodes than the one being checked
    /// (topology spread, pod affinity): such pods are never served from the equivalence cache.
    pub fn has_cross_node_constraints(&self) -> bool {
        !self.spread.is_empty() || !self.affinity.is_empty() || !self.anti_affinity.is_empty()
    }
}

/// The scheduler's view of a node: what it offers and what its pods (bound or assumed) take.
#[derive(Clone, Debug, Default)]
pub struct NodeInfo {
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Taints.
    pub taints: Vec<Taint>,
    /// `spec.unschedulable`.
    pub unschedulable: bool,
    /// `status.allocatable`.
    pub allocatable: Resources,
    /// Sum of the requests of its pods (including their count).
    pub requested: Resources,
    /// Sum of the scoring CPU requests of its pods.
    pub non_zero_milli_cpu: i64,
    /// Sum of the scoring memory requests of its pods.
    pub non_zero_memory: i64,
    /// Host ports in use.
    pub used_ports: Vec<HostPort>,
    /// Its pods.
    pub pods: Vec<Arc<PodInfo>>,
    /// Changes whenever anything above changes; unique across nodes, so a cached result
    /// naming a generation is valid exactly while the node still has it.
    pub generation: u64,
}

impl NodeInfo {
    /// Reads a node (no pods yet).
    pub fn from_node(node: &Node) -> NodeInfo {
        let spec = node.spec.clone().unwrap_or_default();
        NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints: spec.taints.unwrap_or_default(),
            unschedulable: spec.unschedulable.unwrap_or(false),
            allocatable: node
                .status
                .as_ref()
                .and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()))
                .map(Resources::from_map)
                .unwrap_or_default(),
            ..NodeInfo::default()
        }
    }

    /// Whether what the scheduler reads of two versions of a node is the same.
    pub fn same_node(&self, other: &NodeInfo) -> bool {
        self.labels == other.labels
            && self.taints == other.taints
            && self.unschedulable == other.unschedulable
            && self.allocatable == other.allocatable
    }

    /// Adds a pod's requests and ports.
    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests.requests);
        self.non_zero_milli_cpu += pod.requests.non_zero_milli_cpu;
        self.non_zero_memory += pod.requests.non_zero_memory;
        self.used_ports.extend(pod.host_ports.iter().cloned());
        self.pods.push(pod);
    }

    /// Removes a pod by namespace and name; returns whether it was there.
    pub fn remove_pod(&mut self, namespace: &str, name: &str) -> bool {
        let Some(i) = self
            .pods
            .iter()
            .position(|p| p.namespace == namespace && p.name == name)
        else {
            return false;
        };
        let pod = self.pods.swap_remove(i);
        self.requested.sub(&pod.requests.requests);
        self.non_zero_milli_cpu -= pod.requests.non_zero_milli_cpu;
        self.non_zero_memory -= pod.requests.non_zero_memory;
        for port in &pod.host_ports {
            if let Some(j) = self.used_ports.iter().position(|p| p == port) {
                self.used_ports.swap_remove(j);
            }
        }
        true
    }
}

/// Why a node cannot take a pod: one or more Kubernetes-style reasons ("Insufficient cpu"),
/// and whether evicting lower-priority pods could change that.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unfit {
    /// The reasons, as counted in `FailedScheduling` messages.
    pub reasons: Vec<Cow<'static, str>>,
    /// Preemption could help (resources, ports, anti-affinity of victims).
    pub resolvable: bool,
}

impl Unfit {
    /// A reason preemption can resolve.
    pub fn resolvable(reason: impl Into<Cow<'static, str>>) -> Unfit {
        Unfit {
            reasons: vec![reason.into()],
            resolvable: true,
        }
    }

    /// A reason preemption cannot resolve (labels, taints, names).
    pub fn unresolvable(reason: impl Into<Cow<'static, str>>) -> Unfit {
        Unfit {
            reasons: vec![reason.into()],
            resolvable: false,
        }
    }
}

/// What plugins compute once per pod and read per node.
#[derive(Debug, Default)]
pub struct CycleState {
    /// PodTopologySpread's counts per topology domain.
    pub spread: Option<pod_topology_spread::State>,
    /// InterPodAffinity's matching domains.
    pub inter_pod: Option<inter_pod_affinity::State>,
}

/// A filter and/or score plugin. Filters say whether a node can take a pod; scores rank the
/// nodes that can, each plugin on 0..=[`MAX_NODE_SCORE`] after [`Plugin::normalize`].
pub trait Plugin: Send + Sync {
    /// The plugin's name, as kube-scheduler calls it.
    fn name(&self) -> &'static str;

    /// Computes per-pod state before any node is filtered.
    fn pre_filter(&self, _pod: &PodInfo, _snapshot: &Snapshot, _state: &mut CycleState) {}

    /// Whether `node` can take `pod`.
    fn filter(&self, _pod: &PodInfo, _node: &NodeInfo, _state: &CycleState) -> Result<(), Unfit> {
        Ok(())
    }

    /// The weight of the plugin's score; 0 for filter-only plugins.
    fn weight(&self) -> i64 {
        0
    }

    /// The raw score of a feasible node.
    fn score(&self, _pod: &PodInfo, _node: &NodeInfo, _state: &CycleState) -> i64 {
        0
    }

    /// Turns the raw scores of all feasible nodes into 0..=100.
    fn normalize(&self, _scores: &mut [i64]) {}
}

/// Scales scores so the highest becomes [`MAX_NODE_SCORE`]; `reverse` makes the lowest best
/// (kube-scheduler's `DefaultNormalizeScore`).
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        let v = MAX_NODE_SCORE * *s / max;
        *s = if reverse { MAX_NODE_SCORE - v } else { v };
    }
}
