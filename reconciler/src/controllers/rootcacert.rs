//! The root CA publisher: a ConfigMap `kube-root-ca.crt` (key `ca.crt`) with the cluster's
//! root CA in every namespace, kept equal to it. Publishes nothing while no CA is configured.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::FutureExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Patch;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::{Context, Error, api_error};

/// The ConfigMap's name.
pub const NAME: &str = "kube-root-ca.crt";
/// Its key.
pub const KEY: &str = "ca.crt";

/// Runs the publisher until the context stops (idle when there is no CA).
pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let Some(ca) = ctx.config.root_ca.clone() else {
        tracing::info!("no root CA configured: kube-root-ca.crt is not published");
        ctx.stopped().await;
        return Ok(());
    };
    let namespace_informer = ctx.informer::<Namespace>();
    let (namespaces, ns_stream) = (namespace_informer.store(), namespace_informer.subscribe());
    let (maps, cm_stream) = ctx.reflect(
        Api::<ConfigMap>::all(ctx.client.clone()),
        watcher::Config::default().fields(&format!("metadata.name={NAME}")),
    );
    let controller = Controller::for_stream(ns_stream, namespaces.clone())
        .watches_stream(cm_stream, |cm: ConfigMap| {
            cm.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns))
        });
    ctx.synced(&namespace_informer).await?;
    ctx.ready(&maps).await?;
    let ca = Arc::new(ca);
    ctx.drive(controller, move |ns, ctx| {
        reconcile(ns, ctx, maps.clone(), ca.clone()).boxed()
    })
    .await;
    Ok(())
}

async fn reconcile(
    ns: Arc<Namespace>,
    ctx: Arc<Context>,
    maps: Store<ConfigMap>,
    ca: Arc<String>,
) -> Result<Action, Error> {
    let namespace = ns.name_any();
    if ns.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let api = Api::<ConfigMap>::namespaced(ctx.client.clone(), &namespace);
    let what = format!("publishing configmap {namespace}/{NAME}");
    match maps.get(&ObjectRef::new(NAME).within(&namespace)) {
        Some(cm) => {
            let current = cm.data.as_ref().and_then(|d| d.get(KEY));
            if current != Some(ca.as_ref()) {
                let patch = json!({"data": {KEY: ca.as_str()}});
                api.patch(NAME, &ctx.patch_params(), &Patch::Merge(patch))
                    .await
                    .map_err(api_error(what))?;
            }
        }
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(NAME.into()),
                    namespace: Some(namespace.clone()),
                    ..ObjectMeta::default()
                },
                data: Some(BTreeMap::from([(KEY.to_string(), ca.to_string())])),
                ..ConfigMap::default()
            };
            match api.create(&ctx.post_params(), &cm).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 || s.code == 403 => {}
                Err(e) => return Err(api_error(what)(e)),
            }
        }
    }
    Ok(Action::await_change())
}
