//! The ServiceAccount controller: a `default` ServiceAccount in every namespace that is not
//! being deleted, recreated when it is deleted.

use std::sync::Arc;

use futures::FutureExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Api, ResourceExt};

use super::{Context, Error, api_error};

/// The ServiceAccount every namespace gets.
pub const DEFAULT: &str = "default";

/// Runs the controller until the context stops.
pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let namespace_informer = ctx.informer::<Namespace>();
    let (namespaces, ns_stream) = (namespace_informer.store(), namespace_informer.subscribe());
    let (accounts, sa_stream) = ctx.reflect(
        Api::<ServiceAccount>::all(ctx.client.clone()),
        watcher::Config::default().fields(&format!("metadata.name={DEFAULT}")),
    );
    let controller = Controller::for_stream(ns_stream, namespaces.clone())
        .watches_stream(sa_stream, |sa: ServiceAccount| {
            sa.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns))
        });
    ctx.synced(&namespace_informer).await?;
    ctx.ready(&accounts).await?;
    ctx.drive(controller, move |ns, ctx| {
        reconcile(ns, ctx, accounts.clone()).boxed()
    })
    .await;
    Ok(())
}

async fn reconcile(
    ns: Arc<Namespace>,
    ctx: Arc<Context>,
    accounts: Store<ServiceAccount>,
) -> Result<Action, Error> {
    let namespace = ns.name_any();
    if ns.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    if accounts
        .get(&ObjectRef::new(DEFAULT).within(&namespace))
        .is_some()
    {
        return Ok(Action::await_change());
    }
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT.into()),
            namespace: Some(namespace.clone()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    match Api::<ServiceAccount>::namespaced(ctx.client.clone(), &namespace)
        .create(&ctx.post_params(), &sa)
        .await
    {
        Ok(_) => {}
        // Already there (the store lags), or the namespace started terminating.
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 403 => {}
        Err(e) => {
            return Err(api_error(format!(
                "creating serviceaccount {namespace}/{DEFAULT}"
            ))(e));
        }
    }
    Ok(Action::await_change())
}
