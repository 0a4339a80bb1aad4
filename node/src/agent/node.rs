//! Registration of the Node (labels, taints, capacity from the host or the flags, addresses, the
//! log server's port in `daemonEndpoints`) and its Lease in `kube-node-lease`, renewed every
//! `renew_interval`; the Ready condition's heartbeat is refreshed once a minute.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{Config, Error};

fn host_cpus() -> String {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .to_string()
}

fn host_memory() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|k| format!("{k}Ki")))
        })
        .unwrap_or_else(|| "4Gi".into())
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn status(config: &Config, port: u16, runtime: &str) -> Value {
    let now = now();
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    let resources = json!({
        "cpu": config.cpu.clone().unwrap_or_else(host_cpus),
        "memory": config.memory.clone().unwrap_or_else(host_memory),
        "pods": config.max_pods.to_string(),
        "ephemeral-storage": "100Gi",
    });
    json!({
        "capacity": resources,
        "allocatable": resources,
        "phase": "Running",
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            super::disk::condition(super::disk::Space::of(&config.data_dir), &config.data_dir, &now),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            condition("Ready", "True", "KubeletReady", "gitplane node agent is posting ready status"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": config.node_ip},
            {"type": "Hostname", "address": config.node_name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "nodeInfo": {
            "machineID": "", "systemUUID": "", "bootID": "",
            "kernelVersion": std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default(),
            "osImage": "linux", "containerRuntimeVersion": runtime,
            "kubeletVersion": "v1.32.0", "kubeProxyVersion": "", "operatingSystem": "linux",
            "architecture": std::env::consts::ARCH,
        },
    })
}

/// Creates or updates the Node and its Lease.
/// `runtime` is the CRI runtime's `name://version` (`nodeInfo.containerRuntimeVersion`).
pub(super) async fn register(
    client: &Client,
    config: &Config,
    port: u16,
    runtime: &str,
) -> Result<(), Error> {
    let err = |source| Error::Register {
        node: config.node_name.clone(),
        source,
    };
    let mut labels = BTreeMap::from([
        (
            "kubernetes.io/hostname".to_string(),
            config.node_name.clone(),
        ),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        (
            "kubernetes.io/arch".to_string(),
            std::env::consts::ARCH.to_string(),
        ),
    ]);
    labels.extend(config.labels.clone());
    let storage = super::storage::root(&config.data_dir);
    let annotations = BTreeMap::from([(
        apimachinery::volume::LOCAL_PATH_ROOT_ANNOTATION.to_string(),
        storage.to_string_lossy().into_owned(),
    )]);
    let nodes: Api<Node> = Api::all(client.clone());
    let mut spec = json!({"taints": config.taints});
    if let Some(cidr) = &config.pod_cidr {
        spec["podCIDR"] = json!(cidr);
        spec["podCIDRs"] = json!([cidr]);
    }
    let object: Node = serde_json::from_value(json!({
        "metadata": {"name": config.node_name, "labels": labels, "annotations": annotations},
        "spec": spec,
    }))
    .map_err(|e| err(kube::Error::SerdeError(e)))?;
    let created = match nodes.create(&PostParams::default(), &object).await {
        Ok(n) => n,
        Err(kube::Error::Api(s)) if s.code == 409 => nodes
            .patch(
                &config.node_name,
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"labels": labels, "annotations": annotations}, "spec": spec}),
                ),
            )
            .await
            .map_err(err)?,
        Err(e) => return Err(err(e)),
    };
    nodes
        .patch_status(
            &config.node_name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status(config, port, runtime)})),
        )
        .await
        .map_err(err)?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = json!({
        "metadata": {"name": config.node_name, "ownerReferences": [{
            "apiVersion": "v1", "kind": "Node", "name": config.node_name,
            "uid": created.metadata.uid.unwrap_or_default(),
        }]},
        "spec": {
            "holderIdentity": config.node_name,
            "leaseDurationSeconds": config.lease_duration.as_secs(),
            "renewTime": micro_now(),
        },
    });
    let lease: Lease =
        serde_json::from_value(lease).map_err(|e| err(kube::Error::SerdeError(e)))?;
    match leases.create(&PostParams::default(), &lease).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {
            renew(&leases, &config.node_name).await.map_err(err)?
        }
        Err(e) => return Err(err(e)),
    }
    tracing::info!(node = %config.node_name, port, "node registered");
    Ok(())
}

fn micro_now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

async fn renew(leases: &Api<Lease>, name: &str) -> Result<(), kube::Error> {
    leases
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"renewTime": micro_now()}})),
        )
        .await
        .map(|_| ())
}

/// Renews the Lease every `renew_interval` and the Ready heartbeat once a minute until `stop`;
/// at each renewal, reports a change of `DiskPressure` (retried at the next one when the write
/// fails: the API server's store may be on the very disk that is full).
pub(super) async fn heartbeat(client: Client, config: Config, stop: CancellationToken) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let nodes: Api<Node> = Api::all(client);
    let mut tick = tokio::time::interval(config.renew_interval);
    let mut last_status = tokio::time::Instant::now();
    // What registration reported.
    let mut disk_pressure =
        super::disk::Space::of(&config.data_dir).is_some_and(|space| space.pressure());
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = renew(&leases, &config.node_name).await {
            tracing::warn!(node = %config.node_name, error = %e, "lease renewal failed");
        }
        let space = super::disk::Space::of(&config.data_dir);
        let pressure = space.is_some_and(|space| space.pressure());
        if pressure != disk_pressure {
            let condition = super::disk::condition(space, &config.data_dir, &now());
            tracing::warn!(node = %config.node_name, message = %condition["message"], "DiskPressure changed");
            let patch = json!({"status": {"conditions": [condition]}});
            match nodes
                .patch_status(
                    &config.node_name,
                    &PatchParams::default(),
                    &Patch::Strategic(patch),
                )
                .await
            {
                Ok(_) => disk_pressure = pressure,
                Err(e) => tracing::warn!(
                    node = %config.node_name, error = %e, "cannot report DiskPressure"
                ),
            }
        }
        if last_status.elapsed() >= Duration::from_secs(60) {
            last_status = tokio::time::Instant::now();
            let now = now();
            let patch = json!({"status": {"conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady",
                 "message": "gitplane node agent is posting ready status", "lastHeartbeatTime": now},
            ]}});
            let _ = nodes
                .patch_status(
                    &config.node_name,
                    &PatchParams::default(),
                    &Patch::Strategic(patch),
                )
                .await;
        }
    }
}
