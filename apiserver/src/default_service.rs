//! The `default/kubernetes` Service: the API server as a Service, on the first address of the
//! service range (port 443), with an EndpointSlice pointing at this server's listener. Pods find
//! the API through it (`KUBERNETES_SERVICE_HOST`), as in Kubernetes.
//!
//! Written at every start, so the slice follows the listener when its port changes. Several API
//! servers on one etcd overwrite each other's endpoint (Kubernetes keeps one per live server
//! with leases): the last one started is the one pods reach.

use std::net::SocketAddr;
use std::sync::Arc;

use apimachinery::object::ObjectExt;
use apimachinery::status::StatusError;
use serde_json::{Value, json};

use crate::state::{ApiState, encode};
use crate::storage::StorageError;
use crate::strategy;

fn failed(e: impl std::fmt::Display) -> StatusError {
    StatusError::internal(format!("cannot write the default/kubernetes Service: {e}"))
}

/// Creates or refreshes `default/kubernetes` and its EndpointSlice for a server on `addr`.
pub async fn ensure(state: &Arc<ApiState>, addr: SocketAddr) -> Result<(), StatusError> {
    let registry = state.registry();
    let (Some(svc_info), Some(slice_info)) = (
        registry.by_resource("", "v1", "services"),
        registry.by_resource("discovery.k8s.io", "v1", "endpointslices"),
    ) else {
        return Ok(());
    };
    let ip = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    let first = state.services.cluster_ips.nth(0).to_string();
    let ports =
        json!([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": addr.port()}]);

    let svc_key = svc_info.key(Some("default"), "kubernetes");
    let (_, existing) = state.store().get(&svc_key).await.map_err(failed)?;
    match existing {
        None => {
            let mut svc = json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "kubernetes", "namespace": "default",
                             "labels": {"component": "apiserver", "provider": "kubernetes"}},
                "spec": {"type": "ClusterIP", "clusterIP": first, "ports": ports,
                         "sessionAffinity": "None", "internalTrafficPolicy": "Cluster"},
            });
            strategy::prepare_create(&svc_info, &mut svc)?;
            // The first address may be taken when the range changed; then any will do.
            let allocated = match state
                .allocate_service(&svc_info, &mut svc, None, false)
                .await
            {
                Ok(a) => a,
                Err(_) => {
                    svc["spec"].as_object_mut().map(|s| s.remove("clusterIP"));
                    state
                        .allocate_service(&svc_info, &mut svc, None, false)
                        .await?
                }
            };
            if let Err(e) = state.store().create(&svc_key, encode(&svc)).await {
                state.release(allocated).await;
                if !matches!(e, StorageError::AlreadyExists { .. }) {
                    return Err(failed(e));
                }
            }
        }
        Some(kv) => {
            let mut svc: Value = serde_json::from_slice(&kv.value).map_err(failed)?;
            if svc.path("spec.ports") != Some(&ports) {
                svc["spec"]["ports"] = ports.clone();
                // Lost to a concurrent writer: that one wrote its own port.
                match state
                    .store()
                    .update(&svc_key, encode(&svc), kv.mod_revision)
                    .await
                {
                    Ok(_) | Err(StorageError::Conflict { .. }) => {}
                    Err(e) => return Err(failed(e)),
                }
            }
        }
    }

    let slice_key = slice_info.key(Some("default"), "kubernetes");
    let mut slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "kubernetes",
                                "endpointslice.kubernetes.io/managed-by": "gitplane-apiserver"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": true, "serving": true, "terminating": false}}],
        "ports": [{"name": "https", "port": addr.port(), "protocol": "TCP"}],
    });
    let (_, existing) = state.store().get(&slice_key).await.map_err(failed)?;
    match existing {
        None => {
            strategy::prepare_create(&slice_info, &mut slice)?;
            match state.store().create(&slice_key, encode(&slice)).await {
                Ok(_) | Err(StorageError::AlreadyExists { .. }) => {}
                Err(e) => return Err(failed(e)),
            }
        }
        Some(kv) => {
            let mut old: Value = serde_json::from_slice(&kv.value).map_err(failed)?;
            if old.get("endpoints") != slice.get("endpoints")
                || old.get("ports") != slice.get("ports")
            {
                old["endpoints"] = slice["endpoints"].take();
                old["ports"] = slice["ports"].take();
                match state
                    .store()
                    .update(&slice_key, encode(&old), kv.mod_revision)
                    .await
                {
                    Ok(_) | Err(StorageError::Conflict { .. }) => {}
                    Err(e) => return Err(failed(e)),
                }
            }
        }
    }
    Ok(())
}
