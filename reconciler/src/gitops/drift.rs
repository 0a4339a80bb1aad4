//! Drift in remote destinations, seen as it happens: one watch per registered cluster and
//! resource on the objects the syncer marks (label `gitplane.io/app`), so that a change or a
//! deletion there queues the Application it names at once, and self-heal in another cluster
//! does not wait for the next periodic comparison.
//!
//! A pass that compared an Application against a remote cluster calls [`Drift::watch`] with the
//! resources it manages there; the first call for a (cluster, resource) starts a watch task
//! (kube-rs' `watcher`: list, then watch, re-watching from the last revision after a lost
//! connection, with back-off). Events of the initial listing are not drift; later ones put the
//! Application's name in a set and wake the syncer ([`Drift::changed`], then [`Drift::take`]).
//! Each watch is its own task, so a slow or unreachable cluster delays nothing else; its
//! watches end at the next [`Drift::watch`] after the cluster's client is dropped (its Secret
//! changed or was removed), or when the syncer stops.
//! The syncer still compares every `heal_every` too (events missed while a watch reconnects).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};

use apimachinery::application::LABEL_APP;
use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};

use super::cluster::{Cluster, Resource};
use super::destinations::Target;

/// The server closes a watch after this long, before the client's read timeout
/// ([`IO_TIMEOUT`](super::destinations::IO_TIMEOUT)) would call an idle watch a failure.
const WATCH_TIMEOUT_SECS: u32 = 15;

/// The watches of remote destinations and the Applications they saw drift in.
#[derive(Default)]
pub struct Drift {
    watches: Mutex<HashMap<(usize, String), Running>>,
    drifted: Arc<Mutex<HashSet<String>>>,
    wake: Arc<tokio::sync::Notify>,
}

/// One watch task and the cluster it watches (held weakly: a rebuilt client ends it).
struct Running {
    cluster: Weak<Cluster>,
    task: tokio::task::AbortHandle,
}

impl Drop for Drift {
    fn drop(&mut self) {
        let watches = self.watches.get_mut().unwrap_or_else(|p| p.into_inner());
        for (_, w) in watches.drain() {
            w.task.abort();
        }
    }
}

impl Drift {
    /// Makes sure `resources` of the remote `target` are watched (the local cluster is not:
    /// its Applications are compared every `heal_every`); ends the watches of clusters whose
    /// client is gone.
    pub fn watch<'a>(&self, target: &Target, resources: impl IntoIterator<Item = &'a Resource>) {
        if target.local {
            return;
        }
        let mut watches = self.watches.lock().unwrap_or_else(|p| p.into_inner());
        watches.retain(|_, w| {
            let alive = w.cluster.strong_count() > 0;
            if !alive {
                w.task.abort();
            }
            alive
        });
        let cluster_key = Arc::as_ptr(&target.cluster) as usize;
        for r in resources {
            let key = (
                cluster_key,
                format!("{}/{}/{}", r.api.group, r.api.version, r.api.plural),
            );
            if watches.contains_key(&key) {
                continue;
            }
            let api: Api<DynamicObject> = Api::all_with(target.cluster.client().clone(), &r.api);
            let task = tokio::spawn(watch_one(
                api,
                target.name.clone(),
                key.1.clone(),
                self.drifted.clone(),
                self.wake.clone(),
            ));
            watches.insert(
                key,
                Running {
                    cluster: Arc::downgrade(&target.cluster),
                    task: task.abort_handle(),
                },
            );
        }
    }

    /// Resolves when a watch saw drift since the last [`Drift::take`].
    pub async fn changed(&self) {
        self.wake.notified().await;
    }

    /// The Applications drift was seen in since the last call.
    pub fn take(&self) -> HashSet<String> {
        std::mem::take(&mut *self.drifted.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Watches one resource of one cluster until aborted.
async fn watch_one(
    api: Api<DynamicObject>,
    cluster: String,
    resource: String,
    drifted: Arc<Mutex<HashSet<String>>>,
    wake: Arc<tokio::sync::Notify>,
) {
    let config = watcher::Config::default()
        .labels(LABEL_APP)
        .timeout(WATCH_TIMEOUT_SECS);
    let events = watcher(api, config).default_backoff();
    tokio::pin!(events);
    let mut failing = false;
    while let Some(event) = events.next().await {
        let obj = match event {
            Ok(watcher::Event::Apply(obj) | watcher::Event::Delete(obj)) => obj,
            Ok(_) => continue,
            Err(e) => {
                if !failing {
                    tracing::debug!(%cluster, %resource, error = %e, "drift watch interrupted");
                }
                failing = true;
                continue;
            }
        };
        failing = false;
        if let Some(app) = obj.metadata.labels.as_ref().and_then(|l| l.get(LABEL_APP)) {
            drifted
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(app.clone());
            wake.notify_one();
        }
    }
}
