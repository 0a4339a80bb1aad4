//! The ReplicaSet controller: keeps `spec.replicas` active pods for every ReplicaSet.
//!
//! Per ReplicaSet: claim pods (adopt orphans that match the selector, release owned pods that
//! stopped matching), then, once the expectations of its last writes are met, create the
//! missing pods (in batches of 1, 2, 4, … as Kubernetes' slow start) or delete the least
//! valuable surplus ones ([`deletion_order`]), then write the status.
//!
//! Claiming is [`super::claim`]'s and the expectations (pods created and deleted, not yet in
//! the shared pod store, hold the ReplicaSet back) are [`super::expectations`]'.

use std::sync::Arc;
use std::time::Duration;

use apimachinery::matching::map_matches;
use apimachinery::pod;
use futures::FutureExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch};
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::expectations::Expectations;
use super::{
    Context, Error, api_error, claim, controller_of, controller_ref, key_of, selector_of, selects,
};
use crate::events::EventType;

/// Most pods created or deleted in one sync (Kubernetes' `burstReplicas`).
const BURST: usize = 500;

/// Runs the controller until the context stops.
pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let (set_informer, pod_informer) = (ctx.informer::<ReplicaSet>(), ctx.informer::<Pod>());
    let (sets, pods) = (set_informer.store(), pod_informer.store());
    let mapper_sets = sets.clone();
    let controller = Controller::for_stream(set_informer.subscribe(), sets.clone())
        .watches_stream(pod_informer.subscribe(), move |pod: Pod| {
            sets_for_pod(&mapper_sets, &pod)
        });
    ctx.synced(&set_informer).await?;
    ctx.synced(&pod_informer).await?;
    let state = Arc::new(State {
        pods,
        expectations: Expectations::default(),
    });
    ctx.drive(controller, move |rs, ctx| {
        sync(rs, ctx, state.clone()).boxed()
    })
    .await;
    Ok(())
}

/// The pod store and the expectations.
struct State {
    pods: Store<Pod>,
    expectations: Expectations,
}

/// The ReplicaSets a pod change concerns: its controller, or every ReplicaSet of its
/// namespace that selects it when it has none.
fn sets_for_pod(sets: &Store<ReplicaSet>, pod: &Pod) -> Vec<ObjectRef<ReplicaSet>> {
    let namespace = pod.namespace().unwrap_or_default();
    if let Some(owner) = controller_of(&pod.metadata) {
        if owner.kind == "ReplicaSet" {
            return vec![ObjectRef::new(&owner.name).within(&namespace)];
        }
        return Vec::new();
    }
    sets.state()
        .iter()
        .filter(|rs| rs.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|rs| {
            selector_of("", rs.spec.as_ref().map(|s| &s.selector))
                .is_ok_and(|sel| selects(sel, &pod.metadata))
        })
        .map(|rs| ObjectRef::from_obj(rs.as_ref()))
        .collect()
}

async fn sync(rs: Arc<ReplicaSet>, ctx: Arc<Context>, state: Arc<State>) -> Result<Action, Error> {
    let key = key_of(rs.as_ref());
    let namespace = rs.namespace().unwrap_or_default();
    let Some(spec) = rs.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let selector = match selector_of(&format!("replicaset {key}"), Some(&spec.selector)) {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(error = %e, "replicaset not synced");
            return Ok(Action::await_change());
        }
    };
    let uid = rs.uid().unwrap_or_default();
    let deleting = rs.metadata.deletion_timestamp.is_some();
    let in_namespace: Vec<Arc<Pod>> = state
        .pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(namespace.as_str()))
        .collect();
    let mut owned = Vec::new();
    for pod in in_namespace {
        match controller_of(&pod.metadata) {
            Some(r) if r.uid == uid => {
                if selects(selector, &pod.metadata) {
                    owned.push(pod);
                } else if !deleting {
                    claim::release(&ctx, pod.as_ref(), &uid).await?;
                }
            }
            Some(_) => {}
            None => {
                if !deleting
                    && pod::active(&pod)
                    && pod.metadata.deletion_timestamp.is_none()
                    && selects(selector, &pod.metadata)
                    && let Some(adopted) = claim::adopt(&ctx, rs.as_ref(), pod.as_ref()).await?
                {
                    owned.push(Arc::new(adopted));
                }
            }
        }
    }
    let active: Vec<Arc<Pod>> = owned.into_iter().filter(|p| pod::active(p)).collect();
    let want = usize::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0);
    if !deleting && state.expectations.satisfied(&key, &namespace, &state.pods) {
        if active.len() < want {
            create_pods(&ctx, &state, &rs, &key, (want - active.len()).min(BURST)).await?;
        } else if active.len() > want {
            let victims = deletion_order(&active, jiff::Timestamp::now());
            let victims: Vec<Arc<Pod>> = victims
                .into_iter()
                .take((active.len() - want).min(BURST))
                .collect();
            delete_pods(&ctx, &state, &rs, &key, &victims).await?;
        }
    }
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let now = jiff::Timestamp::now();
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let status = Counts {
        replicas: active.len() as i32,
        fully_labeled: active
            .iter()
            .filter(|p| map_matches(&template_labels, p.labels()))
            .count() as i32,
        ready: active.iter().filter(|p| pod::ready(p)).count() as i32,
        available: active
            .iter()
            .filter(|p| pod::available(p, min_ready, now))
            .count() as i32,
    };
    write_status(&ctx, &rs, &status).await?;
    // Come back when a ready pod reaches minReadySeconds.
    let next = active
        .iter()
        .filter_map(|p| pod::ready_since(p))
        .filter_map(|since| {
            let at = since
                .checked_add(jiff::SignedDuration::from_secs(i64::from(min_ready)))
                .ok()?;
            (at > now).then(|| at.duration_since(now))
        })
        .min();
    Ok(match next {
        Some(d) => {
            Action::requeue(Duration::try_from(d).unwrap_or_default() + Duration::from_millis(50))
        }
        None => Action::await_change(),
    })
}

/// What the status reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Counts {
    replicas: i32,
    fully_labeled: i32,
    ready: i32,
    available: i32,
}

async fn write_status(ctx: &Context, rs: &ReplicaSet, c: &Counts) -> Result<(), Error> {
    let current = rs.status.clone().unwrap_or_default();
    let generation = rs.metadata.generation;
    if current.replicas == c.replicas
        && current.fully_labeled_replicas.unwrap_or(0) == c.fully_labeled
        && current.ready_replicas.unwrap_or(0) == c.ready
        && current.available_replicas.unwrap_or(0) == c.available
        && current.observed_generation == generation
    {
        return Ok(());
    }
    let patch = json!({"status": {
        "replicas": c.replicas,
        "fullyLabeledReplicas": c.fully_labeled,
        "readyReplicas": c.ready,
        "availableReplicas": c.available,
        "observedGeneration": generation,
    }});
    let name = rs.name_any();
    match Api::<ReplicaSet>::namespaced(ctx.client.clone(), &rs.namespace().unwrap_or_default())
        .patch_status(&name, &ctx.patch_params(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(api_error(format!(
            "updating status of replicaset {}",
            key_of(rs)
        ))(e)),
    }
}

/// Creates `count` pods in batches of 1, 2, 4, …; stops at the first batch with a failure.
async fn create_pods(
    ctx: &Context,
    state: &State,
    rs: &ReplicaSet,
    key: &str,
    count: usize,
) -> Result<(), Error> {
    let namespace = rs.namespace().unwrap_or_default();
    let api = Api::<Pod>::namespaced(ctx.client.clone(), &namespace);
    let pod = pod_from_template(rs);
    let pp = ctx.post_params();
    let mut left = count;
    let mut batch = 1;
    while left > 0 {
        let n = batch.min(left);
        let results = futures::future::join_all((0..n).map(|_| api.create(&pp, &pod))).await;
        let mut created = Vec::new();
        let mut failed = None;
        for r in results {
            match r {
                Ok(p) => {
                    let name = p.name_any();
                    ctx.event(
                        rs,
                        EventType::Normal,
                        "SuccessfulCreate",
                        "Create",
                        format!("Created pod: {name}"),
                    );
                    created.push(name);
                }
                Err(e) => failed = Some(e),
            }
        }
        state.expectations.expect(key, created, Vec::new());
        if let Some(e) = failed {
            if matches!(&e, kube::Error::Api(s) if s.code == 403 && s.message.contains("being terminated"))
            {
                // The namespace is going away: nothing to create, nothing to report.
                return Ok(());
            }
            let message = match &e {
                kube::Error::Api(s) => s.message.clone(),
                other => other.to_string(),
            };
            ctx.event(
                rs,
                EventType::Warning,
                "FailedCreate",
                "Create",
                format!("Error creating: {message}"),
            );
            return Err(api_error(format!("creating pods for replicaset {key}"))(e));
        }
        left -= n;
        batch *= 2;
    }
    Ok(())
}

async fn delete_pods(
    ctx: &Context,
    state: &State,
    rs: &ReplicaSet,
    key: &str,
    victims: &[Arc<Pod>],
) -> Result<(), Error> {
    let namespace = rs.namespace().unwrap_or_default();
    let api = Api::<Pod>::namespaced(ctx.client.clone(), &namespace);
    let results = futures::future::join_all(victims.iter().map(|p| {
        let api = api.clone();
        let name = p.name_any();
        let uid = p.uid().unwrap_or_default();
        async move {
            let dp = DeleteParams {
                preconditions: Some(kube::api::Preconditions {
                    uid: Some(uid.clone()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            let result = api.delete(&name, &dp).await;
            (name, uid, result)
        }
    }))
    .await;
    let mut deleted = Vec::new();
    let mut failed = None;
    for (name, uid, r) in results {
        match r {
            Ok(_) => {
                ctx.event(
                    rs,
                    EventType::Normal,
                    "SuccessfulDelete",
                    "Delete",
                    format!("Deleted pod: {name}"),
                );
                deleted.push((name, uid));
            }
            Err(kube::Error::Api(s)) if s.code == 404 => deleted.push((name, uid)),
            Err(e) => {
                ctx.event(
                    rs,
                    EventType::Warning,
                    "FailedDelete",
                    "Delete",
                    format!("Error deleting: {e}"),
                );
                failed = Some(e);
            }
        }
    }
    state.expectations.expect(key, Vec::new(), deleted);
    match failed {
        Some(e) => Err(api_error(format!("deleting pods of replicaset {key}"))(e)),
        None => Ok(()),
    }
}

/// A new pod for `rs`: its template, `generateName` `<rs>-`, and a controller reference.
fn pod_from_template(rs: &ReplicaSet) -> Pod {
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.name_any())),
            namespace: rs.namespace(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref(rs)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// What decides which pod goes first when scaling down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rank {
    /// Bound to a node.
    pub assigned: bool,
    /// Pending 0, Unknown 1, Running 2.
    pub phase: u8,
    /// Ready since (None: not ready).
    pub ready_since: Option<jiff::Timestamp>,
    /// Highest container restart count.
    pub restarts: i32,
    /// Creation time.
    pub created: Option<jiff::Timestamp>,
}

impl Rank {
    /// The rank of a pod.
    pub fn of(pod: &Pod) -> Rank {
        let status = pod.status.as_ref();
        Rank {
            assigned: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| !n.is_empty()),
            phase: match status.and_then(|s| s.phase.as_deref()) {
                Some("Running") => 2,
                Some("Unknown") => 1,
                _ => 0,
            },
            ready_since: pod::ready_since(pod),
            restarts: status
                .and_then(|s| s.container_statuses.as_ref())
                .map_or(0, |cs| {
                    cs.iter().map(|c| c.restart_count).max().unwrap_or(0)
                }),
            created: pod.metadata.creation_timestamp.as_ref().map(|t| t.0),
        }
    }
}

/// Kubernetes' order of deletion (`ActivePods` less-than): unassigned before assigned, Pending
/// before Unknown before Running, not ready before ready, ready for less time before more,
/// more restarts before fewer, newer before older.
pub fn compare(a: &Rank, b: &Rank) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    a.assigned
        .cmp(&b.assigned)
        .then(a.phase.cmp(&b.phase))
        .then(a.ready_since.is_some().cmp(&b.ready_since.is_some()))
        .then_with(|| match (a.ready_since, b.ready_since) {
            // Ready more recently goes first.
            (Some(x), Some(y)) => y.cmp(&x),
            _ => Ordering::Equal,
        })
        .then(b.restarts.cmp(&a.restarts))
        .then_with(|| match (a.created, b.created) {
            (Some(x), Some(y)) => y.cmp(&x),
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        })
}

/// The pods in the order they should be deleted.
pub fn deletion_order(pods: &[Arc<Pod>], _now: jiff::Timestamp) -> Vec<Arc<Pod>> {
    let mut ranked: Vec<(Rank, Arc<Pod>)> = pods.iter().map(|p| (Rank::of(p), p.clone())).collect();
    ranked.sort_by(|(a, _), (b, _)| compare(a, b));
    ranked.into_iter().map(|(_, p)| p).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(secs: i64) -> Option<jiff::Timestamp> {
        jiff::Timestamp::from_second(secs).ok()
    }

    fn rank(assigned: bool, phase: u8, ready: Option<i64>, restarts: i32, created: i64) -> Rank {
        Rank {
            assigned,
            phase,
            ready_since: ready.and_then(ts),
            restarts,
            created: ts(created),
        }
    }

    fn check(first: Rank, second: Rank) {
        assert_eq!(
            compare(&first, &second),
            std::cmp::Ordering::Less,
            "{first:?} should go before {second:?}"
        );
        assert_eq!(compare(&second, &first), std::cmp::Ordering::Greater);
    }

    #[test]
    fn the_least_valuable_pod_is_deleted_first() {
        // Unscheduled before scheduled, whatever else.
        check(rank(false, 2, Some(1), 0, 1), rank(true, 0, None, 0, 1));
        // Pending before Unknown before Running.
        check(rank(true, 0, None, 0, 1), rank(true, 1, None, 0, 1));
        check(rank(true, 1, None, 0, 1), rank(true, 2, None, 0, 1));
        // Not ready before ready.
        check(rank(true, 2, None, 0, 1), rank(true, 2, Some(5), 0, 1));
        // Ready for less time before ready for longer.
        check(rank(true, 2, Some(50), 0, 1), rank(true, 2, Some(10), 0, 1));
        // More restarts before fewer.
        check(rank(true, 2, Some(10), 3, 1), rank(true, 2, Some(10), 0, 1));
        // Newer before older.
        check(
            rank(true, 2, Some(10), 0, 20),
            rank(true, 2, Some(10), 0, 10),
        );
    }
}
