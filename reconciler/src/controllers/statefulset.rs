//! The StatefulSet controller: pods with stable names `<set>-0 … <set>-(n-1)`.
//!
//! Each template version is a ControllerRevision `<set>-<hash>` (its `data` holds the
//! template, so a pod can be made at the current revision while an update is held back by a
//! partition); pods carry `controller-revision-hash` with the revision's name,
//! `statefulset.kubernetes.io/pod-name`, `apps.kubernetes.io/pod-index`, `hostname` = their
//! name and `subdomain` = `serviceName`. The pure [`plan`] follows Kubernetes'
//! `updateStatefulSet`: `OrderedReady` creates one pod at a time in ordinal order, each after
//! the previous is Running and Ready, and removes from the highest ordinal one at a time;
//! `Parallel` creates and removes all at once. A `RollingUpdate` replaces pods from the highest
//! ordinal down to `partition`, one at a time, each after the one before is ready again; pods
//! below the partition are (re)made at the current revision. Failed pods are deleted and made
//! again. Each `volumeClaimTemplates` entry gives every ordinal its own claim
//! `<template>-<set>-<ordinal>`, created before the pod (labelled with the set's selector, never
//! deleted by the controller: Kubernetes' default retention `Retain`), and the pod's volume of
//! that name mounts it ([`claim_volumes`]), so a replaced pod finds its data again.
//! `revisionHistoryLimit` is not enforced.
//!
//! Pods, claims and ControllerRevisions are read from the shared informers; the pods and the
//! revisions it created or deleted that the store has not shown yet hold the set back
//! (`expectations`).

use std::collections::BTreeMap;
use std::sync::Arc;

use apimachinery::pod;
use futures::FutureExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, Patch};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::expectations::Expectations;
use super::workload::{self, Events, PodName, REVISION_LABEL};
use super::{Context, Error, key_of};

/// Label with the pod's own name.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// Label with the pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// One ordinal's pod as the plan sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Replica {
    /// Running and Ready.
    pub ready: bool,
    /// Being deleted.
    pub deleting: bool,
    /// Phase Failed.
    pub failed: bool,
    /// At the update revision.
    pub updated: bool,
}

/// The parts of a StatefulSet's spec the plan needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetSpec {
    /// `spec.replicas`.
    pub replicas: usize,
    /// `podManagementPolicy: Parallel`.
    pub parallel: bool,
    /// `updateStrategy.type: RollingUpdate`.
    pub rolling: bool,
    /// `updateStrategy.rollingUpdate.partition`.
    pub partition: usize,
}

/// A write the controller makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetAction {
    /// Create the pod with this ordinal, at the update revision (`true`) or the current one.
    Create(usize, bool),
    /// Delete the pod with this ordinal.
    Delete(usize),
}

/// What to do now, given the pods by ordinal.
pub fn plan(spec: SetSpec, pods: &BTreeMap<usize, Replica>) -> Vec<SetAction> {
    let mut actions: Vec<SetAction> = pods
        .iter()
        .filter(|(_, p)| p.failed && !p.deleting)
        .map(|(o, _)| SetAction::Delete(*o))
        .collect();
    let monotonic = !spec.parallel;
    for o in 0..spec.replicas {
        match pods.get(&o) {
            None => {
                let updated = !spec.rolling || o >= spec.partition;
                actions.push(SetAction::Create(o, updated));
                if monotonic {
                    return actions;
                }
            }
            Some(p) if p.failed || p.deleting || !p.ready => {
                if monotonic {
                    return actions;
                }
            }
            Some(_) => {}
        }
    }
    let all_ready = (0..spec.replicas).all(|o| pods.get(&o).is_some_and(|p| p.ready));
    for (o, p) in pods.iter().rev().filter(|(o, _)| **o >= spec.replicas) {
        if p.deleting || p.failed {
            if monotonic {
                return actions;
            }
            continue;
        }
        if monotonic && !all_ready {
            return actions;
        }
        actions.push(SetAction::Delete(*o));
        if monotonic {
            return actions;
        }
    }
    if spec.rolling && spec.parallel && !all_ready {
        return actions;
    }
    if spec.rolling {
        for o in (spec.partition..spec.replicas).rev() {
            let Some(p) = pods.get(&o) else {
                return actions;
            };
            if !p.updated && !p.deleting {
                actions.push(SetAction::Delete(o));
                return actions;
            }
            if !p.ready {
                return actions;
            }
        }
    }
    actions
}

/// The ordinal of a pod named `<set>-<n>`.
pub fn ordinal(set: &str, pod: &str) -> Option<usize> {
    pod.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

/// The claim of template `template` for the set's pod `ordinal`.
pub fn claim_name(template: &str, set: &str, ordinal: usize) -> String {
    format!("{template}-{set}-{ordinal}")
}

/// Points the pod's volumes named after the set's claim templates at the ordinal's claims
/// (adding those the template lacks), as Kubernetes' `updateStorage` does.
pub fn claim_volumes(
    pod: &mut Pod,
    templates: &[PersistentVolumeClaim],
    set: &str,
    ordinal: usize,
) {
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    for t in templates {
        let name = t.metadata.name.clone().unwrap_or_default();
        let source = Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim_name(&name, set, ordinal),
            read_only: None,
        });
        volumes.retain(|v| v.name != name);
        volumes.push(Volume {
            name,
            persistent_volume_claim: source,
            ..Volume::default()
        });
    }
}

/// Runs the StatefulSet controller until the context stops.
pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let (set_informer, pod_informer) = (ctx.informer::<StatefulSet>(), ctx.informer::<Pod>());
    let revision_informer = ctx.informer::<ControllerRevision>();
    let claim_informer = ctx.informer::<PersistentVolumeClaim>();
    let controller = Controller::for_stream(set_informer.subscribe(), set_informer.store())
        .owns_stream(pod_informer.subscribe())
        .owns_stream(revision_informer.subscribe());
    ctx.synced(&set_informer).await?;
    ctx.synced(&pod_informer).await?;
    ctx.synced(&revision_informer).await?;
    ctx.synced(&claim_informer).await?;
    let state = Arc::new(State {
        pods: pod_informer.store(),
        revisions: revision_informer.store(),
        claims: claim_informer.store(),
        expectations: Expectations::default(),
        revision_expectations: Expectations::default(),
    });
    ctx.drive(controller, move |set, ctx| {
        reconcile(set, ctx, state.clone()).boxed()
    })
    .await;
    Ok(())
}

/// The shared stores and the expectations of the pods and revisions created and deleted.
struct State {
    pods: Store<Pod>,
    revisions: Store<ControllerRevision>,
    claims: Store<PersistentVolumeClaim>,
    expectations: Expectations,
    revision_expectations: Expectations,
}

/// The template a ControllerRevision holds.
fn revision_template(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let data = rev.data.as_ref()?.0.get("spec")?.get("template")?.clone();
    let mut data = data;
    if let Some(m) = data.as_object_mut() {
        m.remove("$patch");
    }
    serde_json::from_value(data).ok()
}

async fn reconcile(
    set: Arc<StatefulSet>,
    ctx: Arc<Context>,
    state: Arc<State>,
) -> Result<Action, Error> {
    let events = Events(&ctx);
    if set.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = set.namespace().unwrap_or_else(|| "default".into());
    let name = set.name_any();
    let uid = set.uid().unwrap_or_default();
    let spec = set.spec.clone().unwrap_or_default();
    let status = set.status.clone().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let revs_api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let claims_api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);

    if !workload::selector_usable(&ctx, set.as_ref(), Some(&spec.selector)) {
        return Ok(Action::await_change());
    }
    let key = key_of(set.as_ref());
    if !state.expectations.satisfied(&key, &ns, &state.pods)
        || !state
            .revision_expectations
            .satisfied(&key, &ns, &state.revisions)
    {
        // The store has not shown this StatefulSet's last creates and deletes: their pod or
        // revision change brings it back.
        return Ok(Action::await_change());
    }
    let update_revision = format!("{name}-{}", workload::template_hash(&spec.template));
    let revisions: Vec<ControllerRevision> = state
        .revisions
        .state()
        .iter()
        .filter(|r| r.namespace().as_deref() == Some(ns.as_str()))
        .filter(|r| workload::controlled_by(&r.metadata, &uid))
        .map(|r| r.as_ref().clone())
        .collect();
    if !revisions.iter().any(|r| r.name_any() == update_revision) {
        let mut labels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert(REVISION_LABEL.into(), update_revision.clone());
        let mut template = serde_json::to_value(&spec.template).unwrap_or_default();
        if let Some(m) = template.as_object_mut() {
            m.insert("$patch".into(), json!("replace"));
        }
        let rev = ControllerRevision {
            metadata: ObjectMeta {
                name: Some(update_revision.clone()),
                namespace: Some(ns.clone()),
                labels: Some(labels),
                owner_references: set.controller_owner_ref(&()).map(|r| vec![r]),
                ..ObjectMeta::default()
            },
            data: Some(RawExtension(json!({"spec": {"template": template}}))),
            revision: revisions.iter().map(|r| r.revision).max().unwrap_or(0) + 1,
        };
        match revs_api.create(&ctx.post_params(), &rev).await {
            Ok(_) => {
                state
                    .revision_expectations
                    .expect(&key, vec![update_revision.clone()], Vec::new())
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let current_revision = status
        .current_revision
        .clone()
        .unwrap_or_else(|| update_revision.clone());
    let current_template = revisions
        .iter()
        .find(|r| r.name_any() == current_revision)
        .and_then(revision_template)
        .unwrap_or_else(|| spec.template.clone());

    let pods = workload::stored_pods(&state.pods, &ns, Some(&spec.selector), &uid);
    let by_ordinal: BTreeMap<usize, &Pod> = pods
        .iter()
        .filter_map(|p| ordinal(&name, &p.name_any()).map(|o| (o, p)))
        .collect();
    let revision_of = |p: &Pod| p.labels().get(REVISION_LABEL).cloned();
    let replicas: BTreeMap<usize, Replica> = by_ordinal
        .iter()
        .map(|(o, p)| {
            (
                *o,
                Replica {
                    ready: pod::running_and_ready(p),
                    deleting: p.metadata.deletion_timestamp.is_some(),
                    failed: pod::phase(p) == "Failed",
                    updated: revision_of(p).as_deref() == Some(update_revision.as_str()),
                },
            )
        })
        .collect();
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let rolling = strategy.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate";
    let set_spec = SetSpec {
        replicas: usize::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0),
        parallel: spec.pod_management_policy.as_deref() == Some("Parallel"),
        rolling,
        partition: strategy
            .rolling_update
            .and_then(|r| r.partition)
            .and_then(|p| usize::try_from(p).ok())
            .unwrap_or(0),
    };
    for action in plan(set_spec, &replicas) {
        match action {
            SetAction::Create(o, updated) => {
                let pod_name = format!("{name}-{o}");
                let (template, revision) = if updated {
                    (&spec.template, &update_revision)
                } else {
                    (&current_template, &current_revision)
                };
                let labels = BTreeMap::from([
                    (REVISION_LABEL.to_string(), revision.clone()),
                    (POD_NAME_LABEL.to_string(), pod_name.clone()),
                    (POD_INDEX_LABEL.to_string(), o.to_string()),
                ]);
                let mut pod = workload::pod_from_template(
                    set.as_ref(),
                    template,
                    labels,
                    PodName::Exact(pod_name.clone()),
                );
                let templates = spec.volume_claim_templates.clone().unwrap_or_default();
                for t in &templates {
                    let claim = claim_name(t.metadata.name.as_deref().unwrap_or(""), &name, o);
                    if state
                        .claims
                        .get(&ObjectRef::new(&claim).within(&ns))
                        .is_some()
                    {
                        continue;
                    }
                    let pvc = PersistentVolumeClaim {
                        metadata: ObjectMeta {
                            name: Some(claim.clone()),
                            namespace: Some(ns.clone()),
                            labels: spec.selector.match_labels.clone(),
                            annotations: t.metadata.annotations.clone(),
                            ..ObjectMeta::default()
                        },
                        spec: t.spec.clone(),
                        status: None,
                    };
                    events
                        .create_once(
                            set.as_ref(),
                            &claims_api,
                            &pvc,
                            |_| {
                                format!(
                                    "create Claim {claim} Pod {pod_name} in StatefulSet {name} success"
                                )
                            },
                            |e| {
                                format!(
                                    "create Claim {claim} for Pod {pod_name} in StatefulSet {name} failed error: {e}"
                                )
                            },
                        )
                        .await?;
                }
                claim_volumes(&mut pod, &templates, &name, o);
                if let Some(s) = pod.spec.as_mut() {
                    s.hostname = Some(pod_name.clone());
                    if !spec.service_name.as_deref().unwrap_or("").is_empty() {
                        s.subdomain = spec.service_name.clone();
                    }
                }
                let created = events
                    .create_once(
                        set.as_ref(),
                        &pods_api,
                        &pod,
                        |_| format!("create Pod {pod_name} in StatefulSet {name} successful"),
                        |e| {
                            format!("create Pod {pod_name} in StatefulSet {name} failed error: {e}")
                        },
                    )
                    .await?;
                if created.is_some() {
                    state
                        .expectations
                        .expect(&key, vec![pod_name.clone()], Vec::new());
                }
            }
            SetAction::Delete(o) => {
                let pod_name = format!("{name}-{o}");
                match pods_api.delete(&pod_name, &DeleteParams::default()).await {
                    Ok(_) => {
                        let uid = by_ordinal.get(&o).and_then(|p| p.uid()).unwrap_or_default();
                        state
                            .expectations
                            .expect(&key, Vec::new(), vec![(pod_name.clone(), uid)]);
                        events
                            .normal(
                                set.as_ref(),
                                "SuccessfulDelete",
                                &format!("delete Pod {pod_name} in StatefulSet {name} successful"),
                            )
                            .await
                    }
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }

    let live: Vec<&Pod> = by_ordinal
        .values()
        .copied()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let count = |f: &dyn Fn(&Pod) -> bool| live.iter().filter(|p| f(p)).count() as i32;
    let ready = count(&|p| pod::running_and_ready(p));
    let updated = count(&|p| revision_of(p).as_deref() == Some(update_revision.as_str()));
    let mut current = count(&|p| revision_of(p).as_deref() == Some(current_revision.as_str()));
    let mut current_rev = current_revision.clone();
    let want = set_spec.replicas as i32;
    if updated == want && ready == want && live.len() as i32 == want {
        current_rev = update_revision.clone();
        current = updated;
    }
    let new_status = StatefulSetStatus {
        replicas: live.len() as i32,
        ready_replicas: Some(ready),
        available_replicas: Some(ready),
        current_replicas: Some(current),
        updated_replicas: Some(updated),
        current_revision: Some(current_rev),
        update_revision: Some(update_revision),
        observed_generation: set.metadata.generation,
        collision_count: Some(status.collision_count.unwrap_or(0)),
        conditions: status.conditions.clone(),
    };
    if new_status != status {
        Api::<StatefulSet>::namespaced(ctx.client.clone(), &ns)
            .patch_status(
                &name,
                &ctx.patch_params(),
                &Patch::Merge(json!({ "status": new_status })),
            )
            .await?;
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    const READY: Replica = Replica {
        ready: true,
        deleting: false,
        failed: false,
        updated: true,
    };
    const PENDING: Replica = Replica {
        ready: false,
        deleting: false,
        failed: false,
        updated: true,
    };
    const OLD: Replica = Replica {
        ready: true,
        deleting: false,
        failed: false,
        updated: false,
    };

    fn spec(replicas: usize, parallel: bool, partition: usize) -> SetSpec {
        SetSpec {
            replicas,
            parallel,
            rolling: true,
            partition,
        }
    }

    fn pods(list: &[(usize, Replica)]) -> BTreeMap<usize, Replica> {
        list.iter().copied().collect()
    }

    fn check(s: SetSpec, p: &[(usize, Replica)], expected: &[SetAction]) {
        assert_eq!(plan(s, &pods(p)), expected, "{s:?} {p:?}");
    }

    #[test]
    fn ordered_ready_creates_one_pod_after_the_previous_is_ready() {
        check(spec(3, false, 0), &[], &[SetAction::Create(0, true)]);
        check(spec(3, false, 0), &[(0, PENDING)], &[]);
        check(
            spec(3, false, 0),
            &[(0, READY)],
            &[SetAction::Create(1, true)],
        );
        check(
            spec(3, false, 0),
            &[(0, READY), (2, READY)],
            &[SetAction::Create(1, true)],
        );
        check(
            spec(3, false, 0),
            &[(0, READY), (1, READY), (2, READY)],
            &[],
        );
    }

    #[test]
    fn parallel_creates_and_deletes_everything_at_once() {
        check(
            spec(3, true, 0),
            &[(1, PENDING)],
            &[SetAction::Create(0, true), SetAction::Create(2, true)],
        );
        check(
            spec(1, true, 0),
            &[(0, PENDING), (1, READY), (2, READY)],
            &[SetAction::Delete(2), SetAction::Delete(1)],
        );
    }

    #[test]
    fn ordered_scale_down_removes_the_highest_ordinal_first_one_at_a_time() {
        check(
            spec(1, false, 0),
            &[(0, READY), (1, READY), (2, READY)],
            &[SetAction::Delete(2)],
        );
        let gone = Replica {
            deleting: true,
            ..READY
        };
        check(spec(1, false, 0), &[(0, READY), (1, READY), (2, gone)], &[]);
        check(spec(1, false, 0), &[(0, PENDING), (1, READY)], &[]);
    }

    #[test]
    fn rolling_updates_go_down_from_the_highest_ordinal_to_the_partition() {
        let all_old = [(0, OLD), (1, OLD), (2, OLD)];
        check(spec(3, false, 0), &all_old, &[SetAction::Delete(2)]);
        check(
            spec(3, false, 0),
            &[(0, OLD), (1, OLD), (2, READY)],
            &[SetAction::Delete(1)],
        );
        // The updated pod is not ready yet: wait.
        check(spec(3, false, 0), &[(0, OLD), (1, OLD), (2, PENDING)], &[]);
        // Partition 2: only ordinal 2 is updated.
        check(spec(3, false, 2), &all_old, &[SetAction::Delete(2)]);
        check(spec(3, false, 2), &[(0, OLD), (1, OLD), (2, READY)], &[]);
        // Below the partition a missing pod comes back at the current revision.
        check(
            spec(3, false, 2),
            &[(1, OLD), (2, READY)],
            &[SetAction::Create(0, false)],
        );
        let on_delete = SetSpec {
            rolling: false,
            ..spec(3, false, 0)
        };
        check(on_delete, &all_old, &[]);
    }

    #[test]
    fn failed_pods_are_deleted_to_be_made_again() {
        let failed = Replica {
            failed: true,
            ready: false,
            ..READY
        };
        check(
            spec(2, false, 0),
            &[(0, failed), (1, READY)],
            &[SetAction::Delete(0)],
        );
    }

    #[test]
    fn ordinals_come_from_pod_names() {
        assert_eq!(ordinal("web", "web-0"), Some(0));
        assert_eq!(ordinal("web", "web-12"), Some(12));
        assert_eq!(ordinal("web", "web-x"), None);
        assert_eq!(ordinal("web", "webby-1"), None);
        assert_eq!(ordinal("web", "web-sts-1"), None);
    }
}
