//! The Recreate strategy: scale every old ReplicaSet to zero, wait until none of their pods
//! is left running, then create (or scale up) the new one.

use std::sync::Arc;

use apimachinery::pod;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use super::rolling::replicas;
use super::sync::{Rollout, ensure_new, scale};
use crate::controllers::{Context, Error, controller_of};

/// One step of a Recreate rollout; `pods` are the pods of the Deployment's namespace.
pub async fn rollout(
    ctx: &Context,
    d: &Deployment,
    r: &mut Rollout,
    pods: &[Arc<Pod>],
) -> Result<(), Error> {
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    ensure_new(ctx, d, r, false, desired, 0).await?;
    let mut scaled = false;
    for i in 0..r.olds.len() {
        if replicas(&r.olds[i]) > 0 {
            let rs = scale(ctx, d, &r.olds[i].clone(), 0, 0).await?;
            r.olds[i] = Arc::new(rs);
            scaled = true;
        }
    }
    if scaled {
        return Ok(());
    }
    let old_uids: Vec<String> = r.olds.iter().filter_map(|rs| rs.uid()).collect();
    let old_running = pods.iter().any(|p| {
        !pod::terminal(p) && controller_of(&p.metadata).is_some_and(|o| old_uids.contains(&o.uid))
    });
    if old_running {
        return Ok(());
    }
    if r.new.is_none() {
        return ensure_new(ctx, d, r, true, desired, 0).await;
    }
    if let Some(new) = r.new.clone()
        && replicas(&new) != desired
    {
        r.new = Some(Arc::new(scale(ctx, d, &new, desired, 0).await?));
    }
    Ok(())
}
