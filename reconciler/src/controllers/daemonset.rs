//! The DaemonSet controller: one pod per eligible node.
//!
//! A node is eligible ([`placement`]) when it matches the template's `nodeSelector` and
//! required node affinity and the template (plus the tolerations every DaemonSet pod gets,
//! [`default_tolerations`]) tolerates its `NoSchedule` and `NoExecute` taints; a pod already
//! there stays on a node it no longer fits only for an untolerated `NoSchedule` taint. Each
//! pod is pinned with node affinity on `metadata.name` (`matchFields`) and placed by the
//! scheduler, as Kubernetes does since 1.12. Pods carry `controller-revision-hash` (the
//! template's hash); a `RollingUpdate` deletes old pods while no more than `maxUnavailable`
//! nodes lack an available pod (`maxSurge` is not supported), `OnDelete` waits for the user.
//! Failed pods are deleted and replaced; extra pods on a node are deleted.

use std::collections::BTreeMap;
use std::sync::Arc;

use apimachinery::matching::{map_matches, node_selector_matches, tolerates};
use apimachinery::pod;
use futures::FutureExt;
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::json;

use super::expectations::Expectations;
use super::workload::{self, Events, PodName, REVISION_LABEL};
use super::{Context, Error, key_of};

fn toleration(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Toleration::default()
    }
}

/// The tolerations Kubernetes adds to every DaemonSet pod (and, with host networking,
/// `network-unavailable`).
pub fn default_tolerations(host_network: bool) -> Vec<Toleration> {
    let mut t = vec![
        toleration("node.kubernetes.io/not-ready", "NoExecute"),
        toleration("node.kubernetes.io/unreachable", "NoExecute"),
        toleration("node.kubernetes.io/disk-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/memory-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/pid-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        t.push(toleration(
            "node.kubernetes.io/network-unavailable",
            "NoSchedule",
        ));
    }
    t
}

/// The template's tolerations with the defaults added where missing.
pub fn with_default_tolerations(spec: &PodSpec) -> Vec<Toleration> {
    let mut all = spec.tolerations.clone().unwrap_or_default();
    for d in default_tolerations(spec.host_network == Some(true)) {
        if !all.iter().any(|t| t.key == d.key && t.effect == d.effect) {
            all.push(d);
        }
    }
    all
}

/// Whether a DaemonSet pod should be placed on a node, and whether one there may stay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// A pod should run there.
    pub run: bool,
    /// A pod already there may keep running.
    pub keep: bool,
}

/// Kubernetes' `NodeShouldRunDaemonPod` for a template and a node.
pub fn placement(spec: &PodSpec, node: &Node) -> Placement {
    let no = Placement {
        run: false,
        keep: false,
    };
    let labels = node.labels();
    let name = node.name_any();
    if let Some(sel) = &spec.node_selector
        && !map_matches(sel, labels)
    {
        return no;
    }
    if let Some(required) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        && !node_selector_matches(required, labels, &name)
    {
        return no;
    }
    let tolerations = with_default_tolerations(spec);
    let mut p = Placement {
        run: true,
        keep: true,
    };
    for taint in node.spec.iter().flat_map(|s| s.taints.iter().flatten()) {
        if taint.effect == "PreferNoSchedule" || tolerations.iter().any(|t| tolerates(t, taint)) {
            continue;
        }
        match taint.effect.as_str() {
            "NoExecute" => return no,
            _ => p.run = false,
        }
    }
    p
}

/// The template's spec pinned to `node` (Kubernetes' `ReplaceDaemonSetPodNodeNameNodeAffinity`):
/// every required node-affinity term gets `matchFields` on `metadata.name`.
pub fn pin_to_node(spec: &PodSpec, node: &str) -> PodSpec {
    let mut spec = spec.clone();
    let field = NodeSelectorRequirement {
        key: "metadata.name".into(),
        operator: "In".into(),
        values: Some(vec![node.into()]),
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    let required = node_affinity
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(|| NodeSelector {
            node_selector_terms: Vec::new(),
        });
    if required.node_selector_terms.is_empty() {
        required
            .node_selector_terms
            .push(NodeSelectorTerm::default());
    }
    for term in &mut required.node_selector_terms {
        term.match_fields = Some(vec![field.clone()]);
    }
    spec.tolerations = Some(with_default_tolerations(&spec));
    spec
}

/// The node a DaemonSet pod is for: its `nodeName`, else its `metadata.name` affinity.
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = &spec.node_name {
        return Some(n.clone());
    }
    spec.affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|f| f.key == "metadata.name" && f.operator == "In")
        .and_then(|f| f.values.as_ref()?.first().cloned())
}

/// A pod as the rolling update sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodView {
    /// Its name.
    pub name: String,
    /// Its `controller-revision-hash` is the current one.
    pub current: bool,
    /// Ready (available).
    pub ready: bool,
    /// Phase Failed.
    pub failed: bool,
    /// Being deleted.
    pub deleting: bool,
}

/// One node as the controller sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    /// The node's name.
    pub name: String,
    /// Where the template fits.
    pub placement: Placement,
    /// The DaemonSet's pods for that node, oldest first.
    pub pods: Vec<PodView>,
}

/// A write the controller makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DsAction {
    /// Create a pod for this node.
    Create(String),
    /// Delete this pod.
    Delete(String),
}

/// What to do now: pods for eligible nodes without one, no pods where they may not stay,
/// failed and extra pods deleted, and with `rolling` the old pods replaced while at most
/// `max_unavailable` nodes lack an available pod.
pub fn plan(nodes: &[NodeView], rolling: bool, max_unavailable: usize) -> Vec<DsAction> {
    let mut actions = Vec::new();
    let mut unavailable = 0usize;
    let mut old_ready = Vec::new();
    for node in nodes {
        let live: Vec<&PodView> = node.pods.iter().filter(|p| !p.deleting).collect();
        for p in live.iter().filter(|p| p.failed) {
            actions.push(DsAction::Delete(p.name.clone()));
        }
        let running: Vec<&&PodView> = live.iter().filter(|p| !p.failed).collect();
        if !node.placement.keep {
            actions.extend(running.iter().map(|p| DsAction::Delete(p.name.clone())));
            continue;
        }
        if running.is_empty() {
            if node.placement.run {
                // A pod still terminating on the node holds the place until it is gone.
                if node.pods.iter().all(|p| !p.deleting || p.failed) {
                    actions.push(DsAction::Create(node.name.clone()));
                }
                unavailable += 1;
            }
            continue;
        }
        // Keep one pod: a current one if any, else the oldest.
        let keep = running.iter().position(|p| p.current).unwrap_or(0);
        for (i, p) in running.iter().enumerate() {
            if i != keep {
                actions.push(DsAction::Delete(p.name.clone()));
            }
        }
        let kept = running[keep];
        if !kept.ready {
            unavailable += 1;
        }
        if rolling && !kept.current {
            if kept.ready {
                old_ready.push(kept.name.clone());
            } else {
                // Already unavailable: replacing it costs nothing.
                actions.push(DsAction::Delete(kept.name.clone()));
            }
        }
    }
    for name in old_ready {
        if unavailable >= max_unavailable {
            break;
        }
        unavailable += 1;
        actions.push(DsAction::Delete(name));
    }
    actions
}

/// `maxUnavailable` of a rolling update against `desired` nodes (a percentage rounds up, and
/// at least one).
pub fn max_unavailable(value: Option<&IntOrString>, desired: usize) -> usize {
    let n = match value {
        None => 1,
        Some(IntOrString::Int(n)) => usize::try_from(*n).unwrap_or(0),
        Some(IntOrString::String(s)) => {
            let pct: usize = s.trim_end_matches('%').parse().unwrap_or(0);
            (pct * desired).div_ceil(100)
        }
    };
    n.max(1)
}

/// Runs the DaemonSet controller until the context stops.
pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let (set_informer, pod_informer, node_informer) = (
        ctx.informer::<DaemonSet>(),
        ctx.informer::<Pod>(),
        ctx.informer::<Node>(),
    );
    let sets = set_informer.store();
    let controller = Controller::for_stream(set_informer.subscribe(), sets.clone())
        .owns_stream(pod_informer.subscribe())
        .watches_stream(node_informer.subscribe(), move |_: Node| {
            sets.state()
                .iter()
                .map(|d| ObjectRef::from_obj(d.as_ref()))
                .collect::<Vec<_>>()
        });
    ctx.synced(&set_informer).await?;
    ctx.synced(&pod_informer).await?;
    ctx.synced(&node_informer).await?;
    let state = Arc::new(State {
        pods: pod_informer.store(),
        nodes: node_informer.store(),
        expectations: Expectations::default(),
    });
    ctx.drive(controller, move |ds, ctx| {
        reconcile(ds, ctx, state.clone()).boxed()
    })
    .await;
    Ok(())
}

/// The shared pod and node stores, and the expectations of the pods created and deleted.
struct State {
    pods: Store<Pod>,
    nodes: Store<Node>,
    expectations: Expectations,
}

async fn reconcile(
    ds: Arc<DaemonSet>,
    ctx: Arc<Context>,
    state: Arc<State>,
) -> Result<Action, Error> {
    let events = Events(&ctx);
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = ds.namespace().unwrap_or_else(|| "default".into());
    let name = ds.name_any();
    let uid = ds.uid().unwrap_or_default();
    let spec = ds.spec.clone().unwrap_or_default();
    let template_spec = spec.template.spec.clone().unwrap_or_default();
    let hash = workload::template_hash(&spec.template);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);

    if !workload::selector_usable(&ctx, ds.as_ref(), Some(&spec.selector)) {
        return Ok(Action::await_change());
    }
    let key = key_of(ds.as_ref());
    if !state.expectations.satisfied(&key, &ns, &state.pods) {
        // The store has not shown this DaemonSet's last creates and deletes: their pod
        // change brings it back.
        return Ok(Action::await_change());
    }
    let mut nodes: Vec<Node> = state
        .nodes
        .state()
        .iter()
        .map(|n| n.as_ref().clone())
        .collect();
    nodes.sort_by_key(|n| n.name_any());
    let mut pods = workload::stored_pods(&state.pods, &ns, Some(&spec.selector), &uid);
    pods.sort_by_key(|p| p.creation_timestamp());
    let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for p in &pods {
        if let Some(n) = target_node(p) {
            by_node.entry(n).or_default().push(p);
        }
    }
    let is_current = |p: &Pod| p.labels().get(REVISION_LABEL) == Some(&hash);
    let views: Vec<NodeView> = nodes
        .iter()
        .map(|n| NodeView {
            name: n.name_any(),
            placement: placement(&template_spec, n),
            pods: by_node
                .get(&n.name_any())
                .into_iter()
                .flatten()
                .map(|p| PodView {
                    name: p.name_any(),
                    current: is_current(p),
                    ready: pod::running_and_ready(p),
                    failed: pod::phase(p) == "Failed",
                    deleting: p.metadata.deletion_timestamp.is_some(),
                })
                .collect(),
        })
        .collect();
    let desired = views.iter().filter(|v| v.placement.run).count();
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let rolling = strategy.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate";
    let budget = max_unavailable(
        strategy
            .rolling_update
            .as_ref()
            .and_then(|r| r.max_unavailable.as_ref()),
        desired,
    );
    // Pods for nodes that are gone are deleted too.
    let known: std::collections::HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();
    let mut actions = plan(&views, rolling, budget);
    actions.extend(
        pods.iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| target_node(p).is_none_or(|n| !known.contains(&n)))
            .map(|p| DsAction::Delete(p.name_any())),
    );
    for action in actions {
        match action {
            DsAction::Create(node) => {
                let mut template = spec.template.clone();
                template.spec = Some(pin_to_node(&template_spec, &node));
                let labels = BTreeMap::from([(REVISION_LABEL.to_string(), hash.clone())]);
                let pod = workload::pod_from_template(
                    ds.as_ref(),
                    &template,
                    labels,
                    PodName::Prefix(format!("{name}-")),
                );
                match pods_api.create(&ctx.post_params(), &pod).await {
                    Ok(p) => {
                        state
                            .expectations
                            .expect(&key, vec![p.name_any()], Vec::new());
                        events
                            .normal(
                                ds.as_ref(),
                                "SuccessfulCreate",
                                &format!("Created pod: {}", p.name_any()),
                            )
                            .await
                    }
                    Err(e) => {
                        events
                            .warning(ds.as_ref(), "FailedCreate", &format!("Error creating: {e}"))
                            .await;
                        return Err(e.into());
                    }
                }
            }
            DsAction::Delete(pod) => match pods_api.delete(&pod, &DeleteParams::default()).await {
                Ok(_) => {
                    let uid = pods
                        .iter()
                        .find(|p| p.name_any() == pod)
                        .and_then(|p| p.uid())
                        .unwrap_or_default();
                    state
                        .expectations
                        .expect(&key, Vec::new(), vec![(pod.clone(), uid)]);
                    events
                        .normal(
                            ds.as_ref(),
                            "SuccessfulDelete",
                            &format!("Deleted pod: {pod}"),
                        )
                        .await
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            },
        }
    }

    let mut status = DaemonSetStatus {
        desired_number_scheduled: desired as i32,
        observed_generation: ds.metadata.generation,
        ..DaemonSetStatus::default()
    };
    let (mut available, mut updated) = (0, 0);
    for v in &views {
        let live: Vec<&PodView> = v.pods.iter().filter(|p| !p.deleting && !p.failed).collect();
        if live.is_empty() {
            continue;
        }
        if v.placement.run {
            status.current_number_scheduled += 1;
        } else if !v.placement.keep {
            status.number_misscheduled += 1;
        }
        if live.iter().any(|p| p.ready) {
            status.number_ready += 1;
            available += 1;
        }
        if live.iter().any(|p| p.current) {
            updated += 1;
        }
    }
    status.number_available = Some(available);
    status.updated_number_scheduled = Some(updated);
    status.number_unavailable = Some((desired as i32 - available).max(0));
    if ds.status.as_ref() != Some(&status) {
        Api::<DaemonSet>::namespaced(ctx.client.clone(), &ns)
            .patch_status(
                &name,
                &ctx.patch_params(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await?;
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, Taint};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                taints: Some(
                    taints
                        .iter()
                        .map(|(k, e)| Taint {
                            key: k.to_string(),
                            effect: e.to_string(),
                            ..Taint::default()
                        })
                        .collect(),
                ),
                ..NodeSpec::default()
            }),
            status: None,
        }
    }

    fn check(spec: &PodSpec, n: &Node, run: bool, keep: bool) {
        assert_eq!(
            placement(spec, n),
            Placement { run, keep },
            "{}",
            n.name_any()
        );
    }

    #[test]
    fn nodes_are_eligible_by_selector_affinity_and_taints() {
        let mut spec = PodSpec {
            node_selector: Some(BTreeMap::from([("disk".into(), "ssd".into())])),
            ..PodSpec::default()
        };
        check(&spec, &node("ssd", &[("disk", "ssd")], &[]), true, true);
        check(&spec, &node("hdd", &[("disk", "hdd")], &[]), false, false);
        check(
            &spec,
            &node("gpu", &[("disk", "ssd")], &[("gpu", "NoSchedule")]),
            false,
            true,
        );
        check(
            &spec,
            &node("drain", &[("disk", "ssd")], &[("drain", "NoExecute")]),
            false,
            false,
        );
        check(
            &spec,
            &node("soft", &[("disk", "ssd")], &[("x", "PreferNoSchedule")]),
            true,
            true,
        );
        spec.tolerations = Some(vec![Toleration {
            key: Some("gpu".into()),
            operator: Some("Exists".into()),
            ..Toleration::default()
        }]);
        check(
            &spec,
            &node("gpu", &[("disk", "ssd")], &[("gpu", "NoSchedule")]),
            true,
            true,
        );
    }

    #[test]
    fn default_tolerations_let_daemon_pods_stay_on_troubled_nodes() {
        let spec = PodSpec::default();
        for (key, effect) in [
            ("node.kubernetes.io/unreachable", "NoExecute"),
            ("node.kubernetes.io/not-ready", "NoExecute"),
            ("node.kubernetes.io/unschedulable", "NoSchedule"),
            ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ] {
            check(&spec, &node("n", &[], &[(key, effect)]), true, true);
        }
        check(
            &spec,
            &node(
                "n",
                &[],
                &[("node.kubernetes.io/network-unavailable", "NoSchedule")],
            ),
            false,
            true,
        );
    }

    #[test]
    fn pods_are_pinned_with_match_fields_and_keep_their_expressions() {
        let spec = PodSpec {
            affinity: Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: "zone".into(),
                                operator: "In".into(),
                                values: Some(vec!["a".into()]),
                            }]),
                            match_fields: None,
                        }],
                    }),
                    ..NodeAffinity::default()
                }),
                ..Affinity::default()
            }),
            ..PodSpec::default()
        };
        let pinned = pin_to_node(&spec, "n1");
        let pod = Pod {
            spec: Some(pinned.clone()),
            ..Pod::default()
        };
        assert_eq!(target_node(&pod).as_deref(), Some("n1"));
        let term = &pinned
            .affinity
            .unwrap()
            .node_affinity
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .unwrap()
            .node_selector_terms[0];
        assert!(term.match_expressions.is_some());
        assert_eq!(pinned.tolerations.map(|t| t.len()), Some(6));
        let bare = pin_to_node(&PodSpec::default(), "n2");
        assert_eq!(
            target_node(&Pod {
                spec: Some(bare),
                ..Pod::default()
            })
            .as_deref(),
            Some("n2")
        );
    }

    fn view(name: &str, pods: &[(&str, bool, bool)]) -> NodeView {
        NodeView {
            name: name.into(),
            placement: Placement {
                run: true,
                keep: true,
            },
            pods: pods
                .iter()
                .map(|(n, current, ready)| PodView {
                    name: n.to_string(),
                    current: *current,
                    ready: *ready,
                    failed: false,
                    deleting: false,
                })
                .collect(),
        }
    }

    #[test]
    fn every_eligible_node_without_a_pod_gets_one_and_extras_go() {
        let mut gone = view("c", &[("c1", true, true)]);
        gone.placement = Placement {
            run: false,
            keep: false,
        };
        let nodes = [
            view("a", &[]),
            view("b", &[("b1", true, true), ("b2", true, true)]),
            gone,
        ];
        assert_eq!(
            plan(&nodes, true, 1),
            vec![
                DsAction::Create("a".into()),
                DsAction::Delete("b2".into()),
                DsAction::Delete("c1".into()),
            ]
        );
    }

    #[test]
    fn a_rolling_update_replaces_old_pods_within_max_unavailable() {
        let nodes = [
            view("a", &[("a1", false, true)]),
            view("b", &[("b1", false, true)]),
            view("c", &[("c1", false, true)]),
        ];
        assert_eq!(plan(&nodes, true, 1), vec![DsAction::Delete("a1".into())]);
        assert_eq!(
            plan(&nodes, true, 2),
            vec![DsAction::Delete("a1".into()), DsAction::Delete("b1".into())]
        );
        assert_eq!(plan(&nodes, false, 1), vec![]);
        // One node is already without an available pod: nothing more goes.
        let busy = [
            view("a", &[("a2", true, false)]),
            view("b", &[("b1", false, true)]),
        ];
        assert_eq!(plan(&busy, true, 1), vec![]);
        // An old pod that is not ready is replaced at once.
        let sick = [
            view("a", &[("a1", false, false)]),
            view("b", &[("b1", false, true)]),
        ];
        assert_eq!(plan(&sick, true, 1), vec![DsAction::Delete("a1".into())]);
    }

    #[test]
    fn max_unavailable_rounds_percentages_up() {
        assert_eq!(max_unavailable(None, 10), 1);
        assert_eq!(max_unavailable(Some(&IntOrString::Int(3)), 10), 3);
        assert_eq!(
            max_unavailable(Some(&IntOrString::String("25%".into())), 10),
            3
        );
        assert_eq!(max_unavailable(Some(&IntOrString::Int(0)), 10), 1);
    }
}
