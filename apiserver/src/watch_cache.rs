//! The watch cache: every object in memory, fed by one storage watch, serving lists, gets and
//! watches without touching storage.
//!
//! The cache keeps the current object of every key (decoded once, with `resourceVersion` filled
//! in, and its serialized bytes ready to splice into list responses) and a ring of recent events.
//! A client watch is a cursor into that ring: it wakes when the cache revision moves and copies
//! out the events after its cursor. A cursor that falls off the ring ends with 410 Gone, as a
//! Kubernetes watch does, and the client re-lists.
//!
//! States of the feeding loop ([`run_feeder`]): *listing* (read every key at one revision),
//! *watching* (apply storage events in order), *resetting* (the storage watch failed: bump the
//! epoch, which ends every client watch, and list again).
//!
//! **Architecture Invariant**: reads that must see the caller's own writes first wait for the
//! cache to reach the storage revision ([`WatchCache::wait_for`]).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::watch;

use crate::storage::{KeyValue, Revision, StorageError, Store, WatchEvent};

/// One object as the cache holds it.
#[derive(Debug)]
pub struct CachedObject {
    /// Storage key.
    pub key: String,
    /// Revision of the last write.
    pub mod_revision: Revision,
    /// The object with `metadata.resourceVersion` set.
    pub object: Value,
    /// `object` serialized as JSON.
    pub bytes: Bytes,
}

impl CachedObject {
    /// Decodes a stored value and stamps its resourceVersion.
    pub fn from_kv(kv: &KeyValue) -> Result<Self, StorageError> {
        Self::decode(&kv.key, &kv.value, kv.mod_revision)
    }

    /// Decodes a stored value as of `revision`.
    pub fn decode(key: &str, value: &[u8], revision: Revision) -> Result<Self, StorageError> {
        let object = decode_object(key, value, revision)?;
        let bytes = Bytes::from(serde_json::to_vec(&object).unwrap_or_default());
        Ok(CachedObject {
            key: key.to_string(),
            mod_revision: revision,
            object,
            bytes,
        })
    }
}

/// Decodes a stored value as of `revision`: the object with its resourceVersion stamped.
pub fn decode_object(key: &str, value: &[u8], revision: Revision) -> Result<Value, StorageError> {
    let mut object: Value = serde_json::from_slice(value)
        .map_err(|e| StorageError::Internal(format!("stored value of {key} is not JSON: {e}")))?;
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "resourceVersion".into(),
            Value::String(revision.to_string()),
        );
    }
    Ok(object)
}

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Updated.
    Modified,
    /// Deleted.
    Deleted,
}

/// One change, as the cache replays it to watches.
#[derive(Clone, Debug)]
pub struct CacheEvent {
    /// Revision of the change.
    pub revision: Revision,
    /// What happened.
    pub kind: EventType,
    /// The object after the change (for deletes: the last state, stamped with the delete revision).
    pub object: Arc<CachedObject>,
    /// The object before the change, if it existed.
    pub prev: Option<Arc<CachedObject>>,
}

/// Limits of the cache.
#[derive(Clone, Debug)]
pub struct Config {
    /// How many recent events are kept for watches that start in the past.
    pub history: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config { history: 100_000 }
    }
}

#[derive(Default)]
struct State {
    revision: Revision,
    epoch: u64,
    objects: BTreeMap<String, Arc<CachedObject>>,
    events: VecDeque<CacheEvent>,
    /// Events at or before this revision are not in `events`.
    oldest: Revision,
}

/// `/registry/GROUP/PLURAL/` of a key (the whole key when it is shorter).
fn resource_prefix(key: &str) -> &str {
    key.match_indices('/')
        .nth(3)
        .map_or(key, |(i, _)| &key[..=i])
}

/// The cache. Cheap to share (`Arc`).
pub struct WatchCache {
    config: Config,
    state: RwLock<State>,
    revision_tx: watch::Sender<(u64, Revision)>,
}

/// Why a watch from a revision cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The revision is older than the oldest event kept.
    #[error("too old resource version: {requested} ({oldest})")]
    TooOld {
        /// Revision asked for.
        requested: Revision,
        /// Oldest revision available.
        oldest: Revision,
    },
    /// The cache was rebuilt; the watch must start again.
    #[error("the watch cache was reset")]
    Reset,
    /// The cache did not catch up with storage in time.
    #[error("timed out waiting for the watch cache to reach revision {0}")]
    NotReady(Revision),
}

/// A snapshot of the objects under a prefix.
pub struct Snapshot {
    /// Revision of the snapshot.
    pub revision: Revision,
    /// Objects in key order.
    pub objects: Vec<Arc<CachedObject>>,
}

/// What [`WatchCache::list_at`] reads.
#[derive(Clone, Copy)]
pub struct PageQuery<'a> {
    /// Keys under this prefix.
    pub prefix: &'a str,
    /// Only keys after this one (the last key of the previous page).
    pub start_after: Option<&'a str>,
    /// At most this many objects (0 = all).
    pub limit: usize,
    /// The revision to read at (`None`: now).
    pub at: Option<Revision>,
    /// Whether to count the objects after the page.
    pub count_rest: bool,
}

/// One page of a list.
pub struct Page {
    /// The objects and the revision they were read at.
    pub snapshot: Snapshot,
    /// Whether more objects follow.
    pub more: bool,
    /// How many objects follow, when counted.
    pub remaining: Option<usize>,
}

impl WatchCache {
    /// An empty cache; [`run_feeder`] fills it.
    pub fn new(config: Config) -> Arc<Self> {
        let (revision_tx, _) = watch::channel((0, 0));
        Arc::new(WatchCache {
            config,
            state: RwLock::new(State::default()),
            revision_tx,
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The revision the cache is current through.
    pub fn revision(&self) -> Revision {
        self.read().revision
    }

    /// Waits until the cache has applied every write up to `revision`.
    pub async fn wait_for(&self, revision: Revision) -> Result<(), CacheError> {
        let mut rx = self.revision_tx.subscribe();
        let wait = rx.wait_for(|(_, r)| *r >= revision);
        match tokio::time::timeout(Duration::from_secs(10), wait).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(CacheError::NotReady(revision)),
        }
    }

    /// How many objects each resource has (`pods`, `deployments.apps`), as
    /// `apiserver_storage_objects` counts them.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let state = self.read();
        let mut counts = BTreeMap::new();
        // Keys are sorted: the objects of one resource are consecutive.
        let mut current: Option<(&str, usize)> = None;
        for key in state.objects.keys() {
            let prefix = resource_prefix(key);
            match &mut current {
                Some((p, n)) if *p == prefix => *n += 1,
                _ => {
                    if let Some((p, n)) = current.take() {
                        counts.insert(telemetry::apiserver::resource_of_key(p), n);
                    }
                    current = Some((prefix, 1));
                }
            }
        }
        if let Some((p, n)) = current {
            counts.insert(telemetry::apiserver::resource_of_key(p), n);
        }
        counts
    }

    /// One object.
    pub fn get(&self, key: &str) -> Option<Arc<CachedObject>> {
        self.read().objects.get(key).cloned()
    }

    /// Objects whose keys start with `prefix` and come after `start_after`, at most `limit` of
    /// those that pass `filter` (0 = all). Returns the snapshot and whether more would pass.
    pub fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        filter: impl Fn(&CachedObject) -> bool,
    ) -> (Snapshot, bool) {
        let state = self.read();
        let start = match start_after {
            Some(k) if k >= prefix => std::ops::Bound::Excluded(k.to_string()),
            _ => std::ops::Bound::Included(prefix.to_string()),
        };
        let mut objects = Vec::new();
        let mut more = false;
        for (key, obj) in state.objects.range((start, std::ops::Bound::Unbounded)) {
            if !key.starts_with(prefix) {
                break;
            }
            if !filter(obj) {
                continue;
            }
            if limit > 0 && objects.len() == limit {
                more = true;
                break;
            }
            objects.push(obj.clone());
        }
        (
            Snapshot {
                revision: state.revision,
                objects,
            },
            more,
        )
    }

    /// A page of a list as it was at revision `at` (a continued list: Kubernetes serves every
    /// page at the first page's revision). The current objects with the changes after `at`
    /// undone from the event history; [`CacheError::TooOld`] once that history is gone. Also
    /// counts, when `count_rest`, the objects after the page (`remainingItemCount`).
    pub fn list_at(
        &self,
        query: &PageQuery<'_>,
        filter: impl Fn(&CachedObject) -> bool,
    ) -> Result<Page, CacheError> {
        let PageQuery {
            prefix,
            start_after,
            limit,
            at,
            count_rest,
        } = *query;
        let state = self.read();
        let at = at.unwrap_or(state.revision).min(state.revision);
        if at < state.oldest {
            return Err(CacheError::TooOld {
                requested: at,
                oldest: state.oldest,
            });
        }
        let after = |k: &str| k.starts_with(prefix) && start_after.is_none_or(|s| k > s);
        // The state at `at` of every key changed since: the `prev` of its oldest later event.
        let mut undone: BTreeMap<&str, Option<&Arc<CachedObject>>> = BTreeMap::new();
        for e in state.events.iter().rev() {
            if e.revision <= at {
                break;
            }
            if after(&e.object.key) {
                undone.insert(&e.object.key, e.prev.as_ref());
            }
        }
        let start = match start_after {
            Some(k) if k >= prefix => std::ops::Bound::Excluded(k.to_string()),
            _ => std::ops::Bound::Included(prefix.to_string()),
        };
        let current = state
            .objects
            .range((start, std::ops::Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, o)| (k.as_str(), Some(o)));
        // Merge the two key-ordered sequences; `undone` wins on equal keys.
        let mut merged: Box<dyn Iterator<Item = &Arc<CachedObject>>> = if undone.is_empty() {
            Box::new(current.filter_map(|(_, o)| o))
        } else {
            let mut view: BTreeMap<&str, Option<&Arc<CachedObject>>> = current.collect();
            view.extend(undone);
            Box::new(view.into_values().flatten().collect::<Vec<_>>().into_iter())
        };
        let mut objects = Vec::new();
        let mut more = false;
        let mut remaining = 0;
        for obj in merged.by_ref() {
            if !filter(obj) {
                continue;
            }
            if limit > 0 && objects.len() == limit {
                more = true;
                remaining = 1;
                break;
            }
            objects.push(obj.clone());
        }
        if more && count_rest {
            remaining += merged.filter(|o| filter(o)).count();
        }
        Ok(Page {
            snapshot: Snapshot {
                revision: at,
                objects,
            },
            more,
            remaining: (more && count_rest).then_some(remaining),
        })
    }

    /// Starts a watch cursor at `after`: it yields every event with a revision above it.
    pub fn watch_from(self: &Arc<Self>, after: Revision) -> Result<Cursor, CacheError> {
        let state = self.read();
        if after < state.oldest {
            return Err(CacheError::TooOld {
                requested: after,
                oldest: state.oldest,
            });
        }
        Ok(Cursor {
            cache: self.clone(),
            after,
            epoch: state.epoch,
            rx: self.revision_tx.subscribe(),
        })
    }

    fn apply(&self, event: WatchEvent) -> Result<(), StorageError> {
        let mut state = self.write();
        let revision = event.revision();
        match event {
            WatchEvent::Put { kv, .. } => {
                let obj = Arc::new(CachedObject::from_kv(&kv)?);
                let prev = state.objects.insert(kv.key.clone(), obj.clone());
                let kind = if prev.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                self.record(&mut state, revision, kind, obj, prev);
            }
            WatchEvent::Delete { revision, prev } => {
                let old = state.objects.remove(&prev.key);
                let last = Arc::new(CachedObject::decode(&prev.key, &prev.value, revision)?);
                self.record(&mut state, revision, EventType::Deleted, last, old);
            }
            WatchEvent::Progress { .. } => {}
        }
        state.revision = state.revision.max(revision);
        let (epoch, rev) = (state.epoch, state.revision);
        drop(state);
        self.revision_tx.send_replace((epoch, rev));
        Ok(())
    }

    fn record(
        &self,
        state: &mut State,
        revision: Revision,
        kind: EventType,
        object: Arc<CachedObject>,
        prev: Option<Arc<CachedObject>>,
    ) {
        state.events.push_back(CacheEvent {
            revision,
            kind,
            object,
            prev,
        });
        while state.events.len() > self.config.history {
            if let Some(e) = state.events.pop_front() {
                state.oldest = e.revision;
            }
        }
    }

    fn reset(&self, revision: Revision, kvs: Vec<KeyValue>) -> Result<(), StorageError> {
        let mut objects = BTreeMap::new();
        for kv in &kvs {
            objects.insert(kv.key.clone(), Arc::new(CachedObject::from_kv(kv)?));
        }
        let mut state = self.write();
        state.objects = objects;
        state.events.clear();
        state.oldest = revision;
        state.revision = revision;
        state.epoch += 1;
        let (epoch, rev) = (state.epoch, state.revision);
        drop(state);
        self.revision_tx.send_replace((epoch, rev));
        Ok(())
    }
}

/// A position in the cache's event history, owned by one client watch.
pub struct Cursor {
    cache: Arc<WatchCache>,
    after: Revision,
    epoch: u64,
    rx: watch::Receiver<(u64, Revision)>,
}

impl Cursor {
    /// The revision of the last event handed out (or the starting point).
    pub fn revision(&self) -> Revision {
        self.after
    }

    /// Waits for events after the cursor and returns them (never an empty batch).
    pub async fn next_batch(&mut self) -> Result<Vec<CacheEvent>, CacheError> {
        loop {
            {
                let (epoch, revision) = *self.rx.borrow_and_update();
                if epoch != self.epoch {
                    return Err(CacheError::Reset);
                }
                if revision > self.after {
                    let state = self.cache.read();
                    if self.after < state.oldest {
                        return Err(CacheError::TooOld {
                            requested: self.after,
                            oldest: state.oldest,
                        });
                    }
                    let start = state.events.partition_point(|e| e.revision <= self.after);
                    let batch: Vec<CacheEvent> = state.events.range(start..).cloned().collect();
                    drop(state);
                    self.after = revision;
                    if !batch.is_empty() {
                        return Ok(batch);
                    }
                }
            }
            if self.rx.changed().await.is_err() {
                return Err(CacheError::Reset);
            }
        }
    }
}

/// Feeds the cache from storage until the store stops answering for good.
///
/// Lists everything under `/registry/`, then watches from that revision; when the watch fails
/// (compaction, a dropped stream) it lists again and resets the cache.
pub async fn run_feeder(cache: Arc<WatchCache>, store: Arc<dyn Store>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match feed_once(&cache, store.as_ref()).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => {
                tracing::warn!(error = %e, "watch cache feed failed; re-listing");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn feed_once(cache: &WatchCache, store: &dyn Store) -> Result<(), StorageError> {
    let listed = store.list("/registry/", None, 0).await?;
    let revision = listed.revision;
    cache.reset(revision, listed.kvs)?;
    let mut stream = store.watch("/registry/", revision).await?;
    while let Some(event) = stream.next().await {
        cache.apply(event?)?;
    }
    Err(StorageError::Unavailable("storage watch ended".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str, revision: Revision) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Bytes::from(format!(r#"{{"metadata":{{"name":"{value}"}}}}"#)),
            create_revision: revision,
            mod_revision: revision,
        }
    }

    fn put(cache: &WatchCache, key: &str, value: &str, revision: Revision) {
        let prev = cache.get(key).map(|o| KeyValue {
            key: key.into(),
            value: o.bytes.clone(),
            create_revision: o.mod_revision,
            mod_revision: o.mod_revision,
        });
        let kv = kv(key, value, revision);
        cache.apply(WatchEvent::Put { kv, prev }).unwrap();
    }

    fn names(page: &Page) -> Vec<String> {
        page.snapshot
            .objects
            .iter()
            .map(|o| o.object["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn continued_pages_are_read_at_the_first_pages_revision() {
        let cache = WatchCache::new(Config { history: 100 });
        for (i, k) in ["a", "b", "c", "d"].iter().enumerate() {
            put(&cache, &format!("/p/{k}"), k, i as Revision + 1);
        }
        let q = |start: Option<&'static str>, at| PageQuery {
            prefix: "/p/",
            start_after: start,
            limit: 2,
            at,
            count_rest: true,
        };
        let first = cache.list_at(&q(None, None), |_| true).unwrap();
        assert_eq!(names(&first), ["a", "b"]);
        assert_eq!((first.more, first.remaining), (true, Some(2)));
        let at = first.snapshot.revision;
        // Between the pages: one created, one changed, one deleted.
        put(&cache, "/p/bb", "bb", 5);
        put(&cache, "/p/c", "c2", 6);
        let prev = kv("/p/d", "d", 4);
        cache
            .apply(WatchEvent::Delete { revision: 7, prev })
            .unwrap();
        let second = cache.list_at(&q(Some("/p/b"), Some(at)), |_| true).unwrap();
        assert_eq!(names(&second), ["c", "d"]);
        assert_eq!(second.snapshot.revision, at);
        assert!(!second.more);
        let now = cache.list_at(&q(Some("/p/b"), None), |_| true).unwrap();
        assert_eq!(names(&now), ["bb", "c2"]);
    }

    #[test]
    fn a_revision_older_than_the_history_is_too_old() {
        let cache = WatchCache::new(Config { history: 2 });
        for r in 1..=5 {
            put(&cache, &format!("/p/{r}"), "x", r);
        }
        let q = PageQuery {
            prefix: "/p/",
            start_after: None,
            limit: 1,
            at: Some(1),
            count_rest: false,
        };
        assert!(matches!(
            cache.list_at(&q, |_| true),
            Err(CacheError::TooOld { .. })
        ));
    }
}
