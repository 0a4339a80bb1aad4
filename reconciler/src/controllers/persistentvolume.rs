//! The PersistentVolume binder (Kubernetes' `persistentvolume-binder`): binds each pending
//! claim to a volume and keeps both phases.
//!
//! A claim (`Pending`) takes the volume reserved for it (`claimRef`, or its own `volumeName`),
//! else the smallest Available volume that fits (`apimachinery::volume::best`: class, access
//! modes, volume mode, capacity, selector). A claim whose StorageClass binds
//! `WaitForFirstConsumer` waits until a pod using it is scheduled: the node of that pod is
//! written as `volume.kubernetes.io/selected-node` (Kubernetes' scheduler does this; here the
//! binder does, after the fact) and only volumes admitting that node fit. With no volume, a
//! class with a provisioner gets the claim annotated `volume.kubernetes.io/storage-provisioner`
//! for it (the local-path provisioner, `localpath`, acts on that).
//!
//! Binding is Kubernetes' order: the volume's `claimRef` (with the claim's uid) and phase
//! `Bound`, then the claim's `volumeName`, `pv.kubernetes.io/bind-completed` and its status
//! (`Bound`, capacity, access modes). A volume whose claim is gone (absent, or another uid)
//! becomes `Released` (reclaim `Retain`; the provisioner deletes its own `Delete` volumes) or
//! `Failed` (`Delete` without a provisioner that can, `Recycle`); a volume without `claimRef`
//! is `Available`; a bound claim whose volume is gone is `Lost`.

use std::sync::Arc;

use apimachinery::volume::{
    self, BIND_COMPLETED_ANNOTATION, BOUND_BY_CONTROLLER_ANNOTATION, PROVISIONED_BY_ANNOTATION,
    SELECTED_NODE_ANNOTATION, STORAGE_PROVISIONER_ANNOTATION,
};
use futures::FutureExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;
use kube::api::{Api, Patch};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::json;

use super::{Context, Error, api_error};
use crate::events::EventType;

/// Provisioner name of classes whose volumes are made by hand.
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// The stores the binder reads.
#[derive(Clone)]
struct Stores {
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    classes: Store<StorageClass>,
    nodes: Store<Node>,
    pods: Store<Pod>,
}

/// Runs the binder until the context stops: one controller on claims, one on volumes.
pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let claim_informer = ctx.informer::<PersistentVolumeClaim>();
    let volume_informer = ctx.informer::<PersistentVolume>();
    let class_informer = ctx.informer::<StorageClass>();
    let node_informer = ctx.informer::<Node>();
    let pod_informer = ctx.informer::<Pod>();
    let stores = Stores {
        claims: claim_informer.store(),
        volumes: volume_informer.store(),
        classes: class_informer.store(),
        nodes: node_informer.store(),
        pods: pod_informer.store(),
    };
    let pending = stores.claims.clone();
    let claims = Controller::for_stream(claim_informer.subscribe(), stores.claims.clone())
        .watches_stream(volume_informer.subscribe(), move |pv: PersistentVolume| {
            // A volume change concerns the claim it names, or, when free, every pending claim.
            match pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
                Some(r) => vec![
                    ObjectRef::new(r.name.as_deref().unwrap_or_default())
                        .within(r.namespace.as_deref().unwrap_or_default()),
                ],
                None => pending
                    .state()
                    .iter()
                    .filter(|c| phase_of_claim(c) == "Pending")
                    .map(|c| ObjectRef::from_obj(c.as_ref()))
                    .collect(),
            }
        })
        .watches_stream(pod_informer.subscribe(), |pod: Pod| {
            let ns = pod.namespace().unwrap_or_default();
            let scheduled = pod.spec.as_ref().is_some_and(|s| s.node_name.is_some());
            pod.spec
                .iter()
                .filter(|_| scheduled)
                .flat_map(|s| s.volumes.iter().flatten())
                .filter_map(|v| v.persistent_volume_claim.as_ref())
                .map(|c| ObjectRef::new(&c.claim_name).within(&ns))
                .collect::<Vec<_>>()
        })
        .watches_stream(class_informer.subscribe(), |_| Vec::new());
    let volumes = Controller::for_stream(volume_informer.subscribe(), stores.volumes.clone())
        .watches_stream(claim_informer.subscribe(), |pvc: PersistentVolumeClaim| {
            pvc.spec
                .and_then(|s| s.volume_name)
                .filter(|v| !v.is_empty())
                .map(|v| ObjectRef::new(&v))
        });
    ctx.synced(&claim_informer).await?;
    ctx.synced(&volume_informer).await?;
    ctx.synced(&class_informer).await?;
    ctx.synced(&node_informer).await?;
    ctx.synced(&pod_informer).await?;
    let (a, b) = (stores.clone(), stores);
    tokio::join!(
        ctx.clone().drive(claims, move |pvc, ctx| {
            reconcile_claim(pvc, ctx, a.clone()).boxed()
        }),
        ctx.clone().drive(volumes, move |pv, ctx| {
            reconcile_volume(pv, ctx, b.clone()).boxed()
        }),
    );
    Ok(())
}

fn phase_of_claim(pvc: &PersistentVolumeClaim) -> &str {
    pvc.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn phase_of_volume(pv: &PersistentVolume) -> &str {
    pv.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// The node of the first scheduled, unfinished pod in `namespace` that mounts the claim.
fn consumer_node(pods: &Store<Pod>, namespace: &str, claim: &str) -> Option<String> {
    pods.state()
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(namespace))
        .filter(|p| !apimachinery::pod::terminal(p))
        .filter_map(|p| {
            let spec = p.spec.as_ref()?;
            let uses = spec
                .volumes
                .iter()
                .flatten()
                .filter_map(|v| v.persistent_volume_claim.as_ref())
                .any(|c| c.claim_name == claim);
            uses.then(|| spec.node_name.clone()).flatten()
        })
        .next()
}

async fn reconcile_claim(
    pvc: Arc<PersistentVolumeClaim>,
    ctx: Arc<Context>,
    stores: Stores,
) -> Result<Action, Error> {
    if pvc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = pvc.namespace().unwrap_or_default();
    let name = pvc.name_any();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let bound_to = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|v| !v.is_empty());
    let annotations = pvc.annotations();
    if let Some(pv_name) = &bound_to
        && annotations.contains_key(BIND_COMPLETED_ANNOTATION)
    {
        let pv = stores.volumes.get(&ObjectRef::new(pv_name));
        let ours = pv.as_ref().is_some_and(|pv| volume::reserved_for(pv, &pvc));
        let phase = phase_of_claim(&pvc);
        if !ours && phase != "Lost" {
            ctx.event(
                pvc.as_ref(),
                EventType::Warning,
                "ClaimLost",
                "Binding",
                "Bound claim has lost its PersistentVolume. Data on the volume is lost!".into(),
            );
            set_claim_status(&api, &ctx, &name, json!({"phase": "Lost"})).await?;
        } else if let Some(pv) = pv.filter(|_| ours && phase != "Bound") {
            set_claim_status(&api, &ctx, &name, bound_status(&pv)).await?;
        }
        return Ok(Action::await_change());
    }

    let class_name = volume::claim_class(&pvc).to_string();
    let class = (!class_name.is_empty())
        .then(|| stores.classes.get(&ObjectRef::new(&class_name)))
        .flatten();
    let wait_for_consumer = class
        .as_ref()
        .and_then(|c| c.volume_binding_mode.as_deref())
        == Some("WaitForFirstConsumer");
    let mut node = annotations.get(SELECTED_NODE_ANNOTATION).cloned();
    if wait_for_consumer && node.is_none() && bound_to.is_none() {
        let Some(n) = consumer_node(&stores.pods, &ns, &name) else {
            return Ok(Action::await_change());
        };
        api.patch(
            &name,
            &ctx.patch_params(),
            &Patch::Merge(json!({"metadata": {"annotations": {SELECTED_NODE_ANNOTATION: n}}})),
        )
        .await
        .map_err(api_error(format!(
            "selecting node {n} for claim {ns}/{name}"
        )))?;
        node = Some(n);
    }
    let node_labels = node
        .as_ref()
        .and_then(|n| stores.nodes.get(&ObjectRef::new(n)))
        .and_then(|n| n.metadata.labels.clone())
        .unwrap_or_default();
    let volumes = stores.volumes.state();
    let candidate = volume::best(
        volumes.iter().map(|v| v.as_ref()),
        &pvc,
        node.as_deref().map(|n| (n, &node_labels)),
    )
    .cloned();
    if let Some(pv) = candidate {
        bind(&ctx, &pvc, &pv).await?;
        return Ok(Action::await_change());
    }
    let provisioner = class.as_ref().map(|c| c.provisioner.clone());
    match provisioner.filter(|p| p != NO_PROVISIONER) {
        Some(p) if bound_to.is_none() => {
            if annotations.get(STORAGE_PROVISIONER_ANNOTATION) != Some(&p) {
                api.patch(
                    &name,
                    &ctx.patch_params(),
                    &Patch::Merge(json!({"metadata": {"annotations": {
                        STORAGE_PROVISIONER_ANNOTATION: p,
                        "volume.beta.kubernetes.io/storage-provisioner": p,
                    }}})),
                )
                .await
                .map_err(api_error(format!("annotating claim {ns}/{name}")))?;
                ctx.event(
                    pvc.as_ref(),
                    EventType::Normal,
                    "ExternalProvisioning",
                    "Provisioning",
                    format!(
                        "Waiting for a volume to be created either by the external provisioner '{p}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered."
                    ),
                );
            }
        }
        _ => {
            let message = if class_name.is_empty() {
                "no persistent volumes available for this claim and no storage class is set"
                    .to_string()
            } else if class.is_none() {
                format!("storageclass.storage.k8s.io \"{class_name}\" not found")
            } else {
                "no persistent volumes available for this claim".to_string()
            };
            ctx.event(
                pvc.as_ref(),
                EventType::Normal,
                "FailedBinding",
                "Binding",
                message,
            );
        }
    }
    Ok(Action::await_change())
}

/// A claim's status once bound to `pv`.
fn bound_status(pv: &PersistentVolume) -> serde_json::Value {
    let spec = pv.spec.clone().unwrap_or_default();
    json!({"phase": "Bound", "capacity": spec.capacity, "accessModes": spec.access_modes})
}

async fn set_claim_status(
    api: &Api<PersistentVolumeClaim>,
    ctx: &Context,
    name: &str,
    status: serde_json::Value,
) -> Result<(), Error> {
    api.patch_status(
        name,
        &ctx.patch_params(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .map_err(api_error(format!("writing the status of claim {name}")))?;
    Ok(())
}

/// Binds `pv` to `pvc` in Kubernetes' order: the volume first, then the claim.
async fn bind(
    ctx: &Context,
    pvc: &PersistentVolumeClaim,
    pv: &PersistentVolume,
) -> Result<(), Error> {
    let ns = pvc.namespace().unwrap_or_default();
    let name = pvc.name_any();
    let pv_name = pv.name_any();
    let volumes: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let has_uid = pv
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .is_some_and(|r| r.uid.is_some());
    if !has_uid {
        // Conditional on the volume's resourceVersion: two claims never take one volume.
        let mut patch = json!({"metadata": {"resourceVersion": pv.resource_version()},
        "spec": {"claimRef": {
            "kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": ns,
            "name": name, "uid": pvc.uid(), "resourceVersion": pvc.resource_version(),
        }}});
        if pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .is_none()
        {
            patch["metadata"]["annotations"] = json!({BOUND_BY_CONTROLLER_ANNOTATION: "yes"});
        }
        volumes
            .patch(&pv_name, &ctx.patch_params(), &Patch::Merge(patch))
            .await
            .map_err(api_error(format!(
                "binding volume {pv_name} to claim {ns}/{name}"
            )))?;
    }
    if phase_of_volume(pv) != "Bound" {
        volumes
            .patch_status(
                &pv_name,
                &ctx.patch_params(),
                &Patch::Merge(json!({"status": {"phase": "Bound"}})),
            )
            .await
            .map_err(api_error(format!("writing the status of volume {pv_name}")))?;
    }
    let mut annotations = json!({BIND_COMPLETED_ANNOTATION: "yes"});
    if pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .is_none_or(str::is_empty)
    {
        annotations[BOUND_BY_CONTROLLER_ANNOTATION] = json!("yes");
    }
    claims
        .patch(
            &name,
            &ctx.patch_params(),
            &Patch::Merge(json!({"metadata": {"annotations": annotations},
                                 "spec": {"volumeName": pv_name}})),
        )
        .await
        .map_err(api_error(format!(
            "binding claim {ns}/{name} to volume {pv_name}"
        )))?;
    set_claim_status(&claims, ctx, &name, bound_status(pv)).await?;
    Ok(())
}

async fn reconcile_volume(
    pv: Arc<PersistentVolume>,
    ctx: Arc<Context>,
    stores: Stores,
) -> Result<Action, Error> {
    if pv.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = pv.name_any();
    let spec = pv.spec.clone().unwrap_or_default();
    let phase = phase_of_volume(&pv).to_string();
    let (want, message) = match &spec.claim_ref {
        None => ("Available", None),
        Some(r) => {
            let claim = stores.claims.get(
                &ObjectRef::new(r.name.as_deref().unwrap_or_default())
                    .within(r.namespace.as_deref().unwrap_or_default()),
            );
            match claim {
                // Reserved for a claim that does not exist yet.
                None if r.uid.is_none() => ("Available", None),
                Some(c) if r.uid.is_none() || r.uid == c.metadata.uid => {
                    // Bound, or being bound (the claim's reconcile finishes it).
                    if phase == "Pending" || phase == "Available" {
                        return Ok(Action::await_change());
                    }
                    ("Bound", None)
                }
                _ => released(&pv, &spec),
            }
        }
    };
    if phase == want || (phase == "Failed" && want == "Released") {
        return Ok(Action::await_change());
    }
    if want == "Failed" && phase != "Failed" {
        ctx.event(
            pv.as_ref(),
            EventType::Warning,
            "VolumeFailedDelete",
            "Delete",
            message.clone().unwrap_or_default(),
        );
    }
    Api::<PersistentVolume>::all(ctx.client.clone())
        .patch_status(
            &name,
            &ctx.patch_params(),
            &Patch::Merge(json!({"status": {"phase": want, "message": message}})),
        )
        .await
        .map_err(api_error(format!("writing the status of volume {name}")))?;
    Ok(Action::await_change())
}

/// The phase of a volume whose claim is gone, by its reclaim policy.
fn released(
    pv: &PersistentVolume,
    spec: &k8s_openapi::api::core::v1::PersistentVolumeSpec,
) -> (&'static str, Option<String>) {
    let policy = spec
        .persistent_volume_reclaim_policy
        .as_deref()
        .unwrap_or("Retain");
    let provisioned = pv.annotations().contains_key(PROVISIONED_BY_ANNOTATION);
    match policy {
        "Delete" if !provisioned => (
            "Failed",
            Some(format!(
                "error getting deleter volume plugin for volume \"{}\": no deletable volume plugin matched",
                pv.name_any()
            )),
        ),
        "Recycle" => (
            "Failed",
            Some("recycling is not supported by gitplane".to_string()),
        ),
        _ => ("Released", None),
    }
}
