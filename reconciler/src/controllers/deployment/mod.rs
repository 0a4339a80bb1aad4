//! The Deployment controller: rolls a Deployment's pod template out through ReplicaSets.
//!
//! Per Deployment: claim its ReplicaSets (adopting orphans its selector matches, through
//! [`crate::controllers::claim`]), sort them
//! into the new one (template equal to the Deployment's, `sync`) and the old ones, then one
//! step of the strategy (`rolling`: RollingUpdate with maxSurge/maxUnavailable, `recreate`),
//! clean up old ReplicaSets beyond `revisionHistoryLimit` once complete, and write the status
//! (`status`). A paused Deployment only scales and reports `DeploymentPaused`.
//!
//! `kubectl rollout` works on top of this: `undo` copies an old ReplicaSet's template into the
//! Deployment (which makes that ReplicaSet new again, with the next revision), `restart`
//! changes a template annotation, `pause`/`resume` flip `spec.paused`, `history` reads the
//! ReplicaSets' revision and `kubernetes.io/change-cause` annotations, `status` reads the
//! status written here.

pub mod recreate;
pub mod rolling;
pub mod status;
pub mod sync;

use std::sync::Arc;

use futures::FutureExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Patch;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::{Context, Error, api_error, claim, controller_of, key_of, selector_of, selects};
use sync::Rollout;

/// Runs the controller until the context stops.
pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let deployment_informer = ctx.informer::<Deployment>();
    let set_informer = ctx.informer::<ReplicaSet>();
    let pod_informer = ctx.informer::<Pod>();
    let (deployments, sets, pods) = (
        deployment_informer.store(),
        set_informer.store(),
        pod_informer.store(),
    );
    let mapper_sets = sets.clone();
    let controller = Controller::for_stream(deployment_informer.subscribe(), deployments.clone())
        .owns_stream(set_informer.subscribe())
        .watches_stream(pod_informer.subscribe(), move |pod: Pod| {
            deployment_of_pod(&mapper_sets, &pod)
        });
    ctx.synced(&deployment_informer).await?;
    ctx.synced(&set_informer).await?;
    ctx.synced(&pod_informer).await?;
    let state = Arc::new(State { sets, pods });
    ctx.drive(controller, move |d, ctx| {
        reconcile(d, ctx, state.clone()).boxed()
    })
    .await;
    Ok(())
}

struct State {
    sets: Store<ReplicaSet>,
    pods: Store<Pod>,
}

/// The Deployment whose ReplicaSet controls a pod (for Recreate, which waits for old pods).
fn deployment_of_pod(sets: &Store<ReplicaSet>, pod: &Pod) -> Option<ObjectRef<Deployment>> {
    let owner = controller_of(&pod.metadata).filter(|o| o.kind == "ReplicaSet")?;
    let namespace = pod.namespace()?;
    let rs = sets.get(&ObjectRef::new(&owner.name).within(&namespace))?;
    let d = controller_of(&rs.metadata).filter(|o| o.kind == "Deployment")?;
    Some(ObjectRef::new(&d.name).within(&namespace))
}

async fn reconcile(
    d: Arc<Deployment>,
    ctx: Arc<Context>,
    state: Arc<State>,
) -> Result<Action, Error> {
    let key = key_of(d.as_ref());
    if d.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(spec) = d.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let selector = match selector_of(&format!("deployment {key}"), Some(&spec.selector)) {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(error = %e, "deployment not synced");
            return Ok(Action::await_change());
        }
    };
    let namespace = d.namespace().unwrap_or_default();
    let uid = d.uid().unwrap_or_default();
    let mut owned = Vec::new();
    for rs in state
        .sets
        .state()
        .into_iter()
        .filter(|rs| rs.namespace().as_deref() == Some(namespace.as_str()))
    {
        match controller_of(&rs.metadata) {
            Some(o) if o.uid == uid => {
                if selects(selector, &rs.metadata) {
                    owned.push(rs);
                }
            }
            Some(_) => {}
            None => {
                if rs.metadata.deletion_timestamp.is_none()
                    && selects(selector, &rs.metadata)
                    && let Some(adopted) = claim::adopt(&ctx, d.as_ref(), rs.as_ref()).await?
                {
                    owned.push(Arc::new(adopted));
                }
            }
        }
    }
    let mut r = Rollout::of(&d, owned);
    let desired = spec.replicas.unwrap_or(1);
    let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
    let surge = if recreate {
        0
    } else {
        rolling::surge_and_unavailable(&d).0
    };
    if spec.paused.unwrap_or(false) {
        sync::ensure_new(&ctx, &d, &mut r, false, desired, surge).await?;
        scale_paused(&ctx, &d, &mut r, desired, surge).await?;
        sync::cleanup(&ctx, &d, &r).await?;
    } else if recreate {
        let pods: Vec<Arc<Pod>> = state
            .pods
            .state()
            .into_iter()
            .filter(|p| p.namespace().as_deref() == Some(namespace.as_str()))
            .collect();
        recreate::rollout(&ctx, &d, &mut r, &pods).await?;
    } else {
        let total: i32 = r.all().map(|rs| rolling::replicas(rs)).sum();
        let first = if r.new.is_none() {
            rolling::scale_up_new(desired, surge, total, 0)
        } else {
            0
        };
        sync::ensure_new(&ctx, &d, &mut r, true, first, surge).await?;
        if !r.created {
            rolling::rollout(&ctx, &d, &mut r).await?;
        }
    }
    let now = jiff::Timestamp::now();
    let status = status::compute(&d, &r, r.created, now);
    if status::complete(desired, &status) && !spec.paused.unwrap_or(false) {
        sync::cleanup(&ctx, &d, &r).await?;
    }
    if Some(&status) != d.status.as_ref() {
        let patch = json!({ "status": status });
        match Api::<Deployment>::namespaced(ctx.client.clone(), &namespace)
            .patch_status(&d.name_any(), &ctx.patch_params(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(api_error(format!("updating status of deployment {key}"))(e)),
        }
    }
    Ok(match status::deadline_in(&d, &status, now) {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

/// A paused Deployment still follows `spec.replicas`: with one active ReplicaSet (or only the
/// new one) that one is scaled; otherwise the difference goes to the newest active one.
async fn scale_paused(
    ctx: &Context,
    d: &Deployment,
    r: &mut Rollout,
    desired: i32,
    surge: i32,
) -> Result<(), Error> {
    let total: i32 = r.all().map(|rs| rolling::replicas(rs)).sum();
    if total == desired {
        return Ok(());
    }
    let mut active: Vec<Arc<ReplicaSet>> = r
        .all()
        .filter(|rs| rolling::replicas(rs) > 0)
        .cloned()
        .collect();
    if active.is_empty() {
        active.extend(r.new.clone());
    }
    // New first, then the newest old one.
    let target = match (r.new.as_ref(), active.len()) {
        (Some(n), _) if rolling::replicas(n) > 0 || active.len() <= 1 => n.clone(),
        _ => match active.last() {
            Some(rs) => rs.clone(),
            None => return Ok(()),
        },
    };
    let n = (rolling::replicas(&target) + desired - total).max(0);
    sync::scale(ctx, d, &target, n, surge).await?;
    Ok(())
}
