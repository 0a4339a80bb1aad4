//! The local-path provisioner (as k3s ships one): volumes of the StorageClasses whose
//! provisioner is `gitplane.io/local-path` (the default class `local-path`) are directories on
//! the node of the claim's first consumer.
//!
//! A claim the binder annotated `volume.kubernetes.io/storage-provisioner: gitplane.io/local-path`
//! with a selected node (`volume.kubernetes.io/selected-node`, so the class must bind
//! `WaitForFirstConsumer`) gets a PersistentVolume `pvc-<claim uid>`: a `hostPath`
//! (`DirectoryOrCreate`) at `<node's local-path root>/pvc-<uid>_<namespace>_<claim>` with
//! required node affinity to that node (`kubernetes.io/hostname`), the claim's size and access
//! modes, the class's reclaim policy, and a `claimRef` to the claim, so the binder binds the
//! two. The root is the Node's `local-path.gitplane.io/root` annotation, which the node agent
//! sets to `<its data dir>/storage`; the directory is made by the node agent when a pod mounts
//! it. When such a volume is `Released` under reclaim `Delete`, the provisioner deletes it and
//! the node agent removes the directory.

use std::sync::Arc;

use apimachinery::volume::{
    self, LOCAL_PATH_ROOT_ANNOTATION, PROVISIONED_BY_ANNOTATION, SELECTED_NODE_ANNOTATION,
    STORAGE_PROVISIONER_ANNOTATION,
};
use futures::FutureExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::json;

use super::{Context, Error, api_error};
use crate::events::EventType;

/// The provisioner name this controller serves.
pub const PROVISIONER: &str = volume::LOCAL_PATH_PROVISIONER;

#[derive(Clone)]
struct Stores {
    volumes: Store<PersistentVolume>,
    classes: Store<StorageClass>,
    nodes: Store<Node>,
}

/// Runs the provisioner until the context stops: one controller on claims (provisioning) and
/// one on volumes (deleting released ones).
pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let claim_informer = ctx.informer::<PersistentVolumeClaim>();
    let volume_informer = ctx.informer::<PersistentVolume>();
    let class_informer = ctx.informer::<StorageClass>();
    let node_informer = ctx.informer::<Node>();
    let stores = Stores {
        volumes: volume_informer.store(),
        classes: class_informer.store(),
        nodes: node_informer.store(),
    };
    let claims = Controller::for_stream(claim_informer.subscribe(), claim_informer.store());
    let volumes = Controller::for_stream(volume_informer.subscribe(), volume_informer.store());
    ctx.synced(&claim_informer).await?;
    ctx.synced(&volume_informer).await?;
    ctx.synced(&class_informer).await?;
    ctx.synced(&node_informer).await?;
    let a = stores.clone();
    tokio::join!(
        ctx.clone().drive(claims, move |pvc, ctx| {
            provision(pvc, ctx, a.clone()).boxed()
        }),
        ctx.clone()
            .drive(volumes, |pv, ctx| delete(pv, ctx).boxed()),
    );
    Ok(())
}

/// The name of the volume made for a claim.
pub fn volume_name(pvc: &PersistentVolumeClaim) -> String {
    format!("pvc-{}", pvc.uid().unwrap_or_default())
}

async fn provision(
    pvc: Arc<PersistentVolumeClaim>,
    ctx: Arc<Context>,
    stores: Stores,
) -> Result<Action, Error> {
    let annotations = pvc.annotations();
    let pending = pvc
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_none_or(|p| p == "Pending");
    let unbound = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .is_none_or(str::is_empty);
    if pvc.metadata.deletion_timestamp.is_some()
        || !pending
        || !unbound
        || annotations
            .get(STORAGE_PROVISIONER_ANNOTATION)
            .map(String::as_str)
            != Some(PROVISIONER)
    {
        return Ok(Action::await_change());
    }
    let pv_name = volume_name(&pvc);
    if stores.volumes.get(&ObjectRef::new(&pv_name)).is_some() {
        return Ok(Action::await_change());
    }
    let class_name = volume::claim_class(&pvc).to_string();
    let Some(class) = stores.classes.get(&ObjectRef::new(&class_name)) else {
        return Ok(Action::await_change());
    };
    let failed = |message: String| {
        ctx.event(
            pvc.as_ref(),
            EventType::Warning,
            "ProvisioningFailed",
            "Provision",
            message,
        );
        Ok(Action::await_change())
    };
    let Some(node_name) = annotations.get(SELECTED_NODE_ANNOTATION) else {
        return failed(format!(
            "storageclass {class_name:?}: the local-path provisioner needs a node: set volumeBindingMode: WaitForFirstConsumer"
        ));
    };
    let Some(root) = stores
        .nodes
        .get(&ObjectRef::new(node_name))
        .and_then(|n| n.annotations().get(LOCAL_PATH_ROOT_ANNOTATION).cloned())
    else {
        return failed(format!(
            "node {node_name:?} offers no local-path storage (no {LOCAL_PATH_ROOT_ANNOTATION} annotation)"
        ));
    };
    let ns = pvc.namespace().unwrap_or_default();
    let name = pvc.name_any();
    let spec = pvc.spec.clone().unwrap_or_default();
    let size = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone())
        .unwrap_or_else(|| "0".into());
    let path = format!("{}/{pv_name}_{ns}_{name}", root.trim_end_matches('/'));
    let pv: PersistentVolume = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": pv_name, "annotations": {PROVISIONED_BY_ANNOTATION: PROVISIONER}},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": spec.access_modes,
            "volumeMode": spec.volume_mode.unwrap_or_else(|| "Filesystem".into()),
            "persistentVolumeReclaimPolicy": class.reclaim_policy.clone().unwrap_or_else(|| "Delete".into()),
            "storageClassName": class_name,
            "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": ns,
                         "name": name, "uid": pvc.uid(), "resourceVersion": pvc.resource_version()},
            "hostPath": {"path": path, "type": "DirectoryOrCreate"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node_name]}]}]}},
        },
    }))
    .map_err(|e| Error::Invalid(format!("volume for claim {ns}/{name}: {e}")))?;
    ctx.event(
        pvc.as_ref(),
        EventType::Normal,
        "Provisioning",
        "Provision",
        format!("External provisioner is provisioning volume for claim \"{ns}/{name}\""),
    );
    match Api::<PersistentVolume>::all(ctx.client.clone())
        .create(&ctx.post_params(), &pv)
        .await
    {
        Ok(_) => ctx.event(
            pvc.as_ref(),
            EventType::Normal,
            "ProvisioningSucceeded",
            "Provision",
            format!("Successfully provisioned volume {pv_name}"),
        ),
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(api_error(format!("creating volume {pv_name}"))(e)),
    }
    Ok(Action::await_change())
}

/// Deletes a volume this provisioner made once it is `Released` under reclaim `Delete`.
async fn delete(pv: Arc<PersistentVolume>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ours = pv
        .annotations()
        .get(PROVISIONED_BY_ANNOTATION)
        .map(String::as_str)
        == Some(PROVISIONER);
    let spec = pv.spec.clone().unwrap_or_default();
    let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
    if !ours
        || !released
        || pv.metadata.deletion_timestamp.is_some()
        || spec.persistent_volume_reclaim_policy.as_deref() != Some("Delete")
    {
        return Ok(Action::await_change());
    }
    let name = pv.name_any();
    match Api::<PersistentVolume>::all(ctx.client.clone())
        .delete(&name, &DeleteParams::default())
        .await
    {
        Ok(_) | Err(kube::Error::Api(_)) => {}
        Err(e) => return Err(api_error(format!("deleting volume {name}"))(e)),
    }
    Ok(Action::await_change())
}
