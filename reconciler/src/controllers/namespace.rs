//! The namespace controller: empties a Terminating namespace and then finalizes it.
//!
//! The API server marks a deleted namespace Terminating and keeps it while `spec.finalizers`
//! holds `kubernetes`. This controller deletes everything in it, resource by resource
//! (`deletecollection` where served, one DELETE per object otherwise; finalizers and graceful
//! pod deletion still apply), looks again until nothing is left, then removes `kubernetes`
//! through `PUT /api/v1/namespaces/<name>/finalize`, after which the server deletes the
//! namespace.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, DynamicObject, ListParams};
use kube::core::ApiResource;
use kube::discovery::{Discovery, Scope, verbs};
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use super::{Context, Error, api_error};

/// The finalizer the namespace controller owns.
pub const FINALIZER: &str = "kubernetes";

/// Runs the controller until the context stops.
pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let informer = ctx.informer::<Namespace>();
    let controller = Controller::for_stream(informer.subscribe(), informer.store());
    ctx.drive(controller, |ns, ctx| reconcile(ns, ctx).boxed())
        .await;
    Ok(())
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let finalizers = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default();
    if ns.metadata.deletion_timestamp.is_none() || !finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let left = empty(&ctx, &name).await?;
    if left > 0 {
        tracing::debug!(namespace = %name, left, "namespace not empty yet");
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let mut finalized = (*ns).clone();
    if let Some(spec) = finalized.spec.as_mut() {
        spec.finalizers = Some(finalizers.into_iter().filter(|f| f != FINALIZER).collect());
    }
    match Api::<Namespace>::all(ctx.client.clone())
        .replace_subresource("finalize", &name, &ctx.post_params(), &finalized)
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(Action::await_change()),
        Err(e) => Err(api_error(format!("finalizing namespace {name}"))(e)),
    }
}

/// Deletes what is in the namespace; returns how many objects were still there.
async fn empty(ctx: &Context, namespace: &str) -> Result<usize, Error> {
    let discovery = Discovery::new(ctx.client.clone())
        .run()
        .await
        .map_err(api_error("discovery"))?;
    let mut resources: Vec<(ApiResource, bool)> = Vec::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            if caps.scope == Scope::Namespaced
                && caps.supports_operation(verbs::LIST)
                && caps.supports_operation(verbs::DELETE)
            {
                resources.push((ar, caps.supports_operation(verbs::DELETE_COLLECTION)));
            }
        }
    }
    let mut left = 0;
    for (ar, collection) in resources {
        let api = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), namespace, &ar);
        let what = format!("listing {} in namespace {namespace}", ar.plural);
        let objects = api
            .list(&ListParams::default())
            .await
            .map_err(api_error(what))?;
        if objects.items.is_empty() {
            continue;
        }
        left += objects.items.len();
        let what = format!("deleting {} in namespace {namespace}", ar.plural);
        if collection {
            match api
                .delete_collection(&DeleteParams::default(), &ListParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(api_error(what)(e)),
            }
        } else {
            for obj in objects
                .items
                .iter()
                .filter(|o| o.metadata.deletion_timestamp.is_none())
            {
                match api.delete(&obj.name_any(), &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                    Err(e) => return Err(api_error(what.clone())(e)),
                }
            }
        }
    }
    Ok(left)
}
