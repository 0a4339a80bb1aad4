//! Lease renewals for every simulated node, batched: the nodes are split into ten batches and
//! one batch is renewed every tenth of the renew interval, each renewal a small merge patch of
//! `renewTime`. A node stops heartbeating when told through [`super::SimulatedNodes`] or when it
//! carries the annotation `gitplane.io/simulate: stop-heartbeat` (the task watches the nodes
//! for it).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::watch;

use super::{Config, SIMULATE_ANNOTATION};

const BATCHES: usize = 10;

/// Runs until `stop` turns true.
pub(crate) async fn run(
    client: Client,
    config: Config,
    names: Vec<String>,
    stopped: Arc<Mutex<HashSet<String>>>,
    mut stop: watch::Receiver<bool>,
) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let ours: HashSet<String> = names.iter().cloned().collect();
    let mut annotated: HashSet<String> = HashSet::new();
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
            _ = stop.changed() => return,
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
            }
        }
    }
}
