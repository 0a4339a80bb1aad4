//! Expectations, as Kubernetes' `ControllerExpectations`: what a controller created and deleted
//! and its store has not shown yet. Until the store shows them, the owner is not scaled again,
//! so a store that lags behind the controller's own writes never makes it create (or delete)
//! twice. An expectation expires after 5 minutes, as in Kubernetes.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use tokio::time::Instant;

/// How long an unmet expectation holds an owner back.
const TIMEOUT: Duration = Duration::from_secs(300);

/// Per owner key (`namespace/name`): names created and (name, uid) deleted, not yet seen.
#[derive(Default)]
pub struct Expectations(Mutex<HashMap<String, Pending>>);

struct Pending {
    creates: HashSet<String>,
    deletes: HashSet<(String, String)>,
    since: Instant,
}

impl Expectations {
    /// Whether every write for `key` was observed in `store` (forgets what was): a created
    /// object is in the store, a deleted one is gone or being deleted.
    pub fn satisfied<K>(&self, key: &str, namespace: &str, store: &Store<K>) -> bool
    where
        K: Resource<DynamicType = ()> + Clone + 'static,
    {
        let Ok(mut all) = self.0.lock() else {
            return true;
        };
        let Some(p) = all.get_mut(key) else {
            return true;
        };
        p.creates
            .retain(|name| store.get(&ObjectRef::new(name).within(namespace)).is_none());
        p.deletes.retain(|(name, uid)| {
            store
                .get(&ObjectRef::new(name).within(namespace))
                .is_some_and(|obj| {
                    obj.uid().as_deref() == Some(uid.as_str())
                        && obj.meta().deletion_timestamp.is_none()
                })
        });
        let done = (p.creates.is_empty() && p.deletes.is_empty()) || p.since.elapsed() > TIMEOUT;
        if done {
            all.remove(key);
        }
        done
    }

    /// Remembers the names created and the (name, uid) deleted for `key`.
    pub fn expect(&self, key: &str, creates: Vec<String>, deletes: Vec<(String, String)>) {
        if creates.is_empty() && deletes.is_empty() {
            return;
        }
        if let Ok(mut all) = self.0.lock() {
            let p = all.entry(key.to_string()).or_insert_with(|| Pending {
                creates: HashSet::new(),
                deletes: HashSet::new(),
                since: Instant::now(),
            });
            p.since = Instant::now();
            p.creates.extend(creates);
            p.deletes.extend(deletes);
        }
    }
}
