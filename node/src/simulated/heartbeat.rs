//! Lease renewals for every simulated node, batched: the nodes are split into ten batches and
//! one batch is renewed every tenth of the renew interval, each renewal a small merge patch of
//! `renewTime`. A node stops heartbeating when told through [`super::SimulatedNodes`] or when it
//! carries the annotation `gitplane.io/simulate: stop-heartbeat` (the task watches the nodes
//! for it). A heartbeating node whose `Ready` condition is not `True` (the node lifecycle
//! controller marks a silent node `Unknown`) posts healthy conditions again, as a kubelet does.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{Config, SIMULATE_ANNOTATION, healthy_conditions};

const BATCHES: usize = 10;

/// Runs until `stop` is cancelled.
pub(crate) async fn run(
    client: Client,
    config: Config,
    names: Vec<String>,
    stopped: Arc<Mutex<HashSet<String>>>,
    stop: CancellationToken,
) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let ours: HashSet<String> = names.iter().cloned().collect();
    let mut annotated: HashSet<String> = HashSet::new();
    let mut not_ready: HashSet<String> = HashSet::new();
    let node_api: Api<Node> = Api::all(client.clone());
    let pods_api: Api<Pod> = Api::all(client.clone());
    let nodes = watcher(
        Api::<Node>::all(client),
        watcher::Config::default().labels("type=gitplane-simulated"),
    )
    .default_backoff();
    tokio::pin!(nodes);
    let batch_size = names.len().div_ceil(BATCHES).max(1);
    let mut tick = tokio::time::interval(config.renew_interval / BATCHES as u32);
    let mut next = 0usize;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            ev = nodes.next() => {
                let Some(Ok(ev)) = ev else { continue };
                let node = match ev {
                    watcher::Event::Apply(n) | watcher::Event::InitApply(n) => n,
                    _ => continue,
                };
                let Some(name) = node.metadata.name.clone().filter(|n| ours.contains(n)) else {
                    continue;
                };
                let stop_it = node.metadata.annotations.as_ref()
                    .and_then(|a| a.get(SIMULATE_ANNOTATION))
                    .is_some_and(|v| v == "stop-heartbeat");
                let is_ready = node.status.as_ref().and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                if is_ready { not_ready.remove(&name); } else { not_ready.insert(name.clone()); }
                if stop_it { annotated.insert(name); } else { annotated.remove(&name); }
            }
            _ = tick.tick() => {
                if names.is_empty() {
                    continue;
                }
                let skip: HashSet<String> = stopped.lock().map(|s| s.clone()).unwrap_or_default();
                let batch: Vec<String> = names
                    .iter()
                    .skip(next * batch_size)
                    .take(batch_size)
                    .filter(|n| !skip.contains(*n) && !annotated.contains(*n))
                    .cloned()
                    .collect();
                next = (next + 1) % BATCHES;
                let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
                futures::stream::iter(batch)
                    .for_each_concurrent(config.concurrency.max(1), |name| {
                        let (leases, now) = (leases.clone(), now.clone());
                        async move {
                            let patch = json!({"spec": {"renewTime": now}});
                            if let Err(e) = leases
                                .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                                .await
                            {
                                tracing::debug!(node = %name, error = %e, "lease renewal failed");
                            }
                        }
                    })
                    .await;
                let revive: Vec<String> = not_ready
                    .iter()
                    .filter(|n| !skip.contains(*n) && !annotated.contains(*n))
                    .cloned()
                    .collect();
                for name in revive {
                    let patch = json!({"status": {"conditions": healthy_conditions()}});
                    match node_api.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
                        Ok(_) => {
                            not_ready.remove(&name);
                            ready_pods_again(&pods_api, &name).await;
                        }
                        Err(e) => tracing::debug!(node = %name, error = %e, "node status update failed"),
                    }
                }
            }
        }
    }
}

/// A node back from silence reports its running pods Ready again (the node lifecycle
/// controller marked them not Ready while it was silent).
async fn ready_pods_again(pods: &Api<Pod>, node: &str) {
    let params =
        ListParams::default().fields(&format!("spec.nodeName={node},status.phase=Running"));
    let Ok(list) = pods.list(&params).await else {
        return;
    };
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    for pod in list.items {
        let not_ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status != "True"));
        if !not_ready || pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let (Some(ns), Some(name)) = (
            pod.metadata.namespace.as_deref(),
            pod.metadata.name.as_deref(),
        ) else {
            continue;
        };
        let api: Api<Pod> = Api::namespaced(pods.clone().into_client(), ns);
        let patch = json!({"status": {"conditions": [
            {"type": "Ready", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}]}});
        if let Err(e) = api
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            tracing::debug!(pod = %name, error = %e, "pod status update failed");
        }
    }
}
