//! The storage interface: a revisioned key-value store with watch, shaped like etcd's KV API.
//!
//! Every call returns (or carries) the store's revision. Objects carry `create_revision` and
//! `mod_revision`; writes are compare-and-swap on `mod_revision`; [`Store::watch`] replays history
//! after a revision and then streams; a revision older than the compaction point is
//! [`StorageError::Compacted`] (410 Gone to clients). Keys follow Kubernetes
//! (`/registry/<group>/<resource>/<namespace>/<name>`), values are JSON bytes.
//!
//! **API Boundary**: only the API server uses this trait. Every other component goes through the
//! HTTP API.
//!
//! Backends: [`embedded`] (redb, the default) and [`etcd`] (an etcd v3 cluster, which several
//! API servers can share); both pass the same suite, [`conformance`]. [`encrypted`] wraps
//! either, sealing the values of the resources its configuration names (Secrets, typically).

pub mod conformance;
pub mod embedded;
pub mod encrypted;
pub mod etcd;
pub mod instrumented;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

/// A store revision: a counter that grows by one with every successful write, as in etcd.
pub type Revision = i64;

/// A stored key with its value and revisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value (JSON bytes for objects).
    pub value: Bytes,
    /// Revision of the write that created the key.
    pub create_revision: Revision,
    /// Revision of the last write to the key.
    pub mod_revision: Revision,
}

/// The result of a range read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListResult {
    /// The store revision the read was served at.
    pub revision: Revision,
    /// Matching entries in key order.
    pub kvs: Vec<KeyValue>,
    /// Whether more entries match beyond the limit.
    pub more: bool,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was created or updated. `kv.mod_revision` is the revision of the write; `prev` is the
    /// value before it (`None` for a create).
    Put {
        /// The new entry.
        kv: KeyValue,
        /// The entry before the write.
        prev: Option<KeyValue>,
    },
    /// A key was deleted at `revision`; `prev` is the last value it had.
    Delete {
        /// The revision of the delete.
        revision: Revision,
        /// The entry as it was before the delete.
        prev: KeyValue,
    },
    /// Nothing changed under the prefix up to `revision` (a progress notification; becomes a
    /// watch bookmark).
    Progress {
        /// The revision the watch has caught up to.
        revision: Revision,
    },
}

impl WatchEvent {
    /// The revision of the event.
    pub fn revision(&self) -> Revision {
        match self {
            WatchEvent::Put { kv, .. } => kv.mod_revision,
            WatchEvent::Delete { revision, .. } => *revision,
            WatchEvent::Progress { revision } => *revision,
        }
    }
}

/// A stream of watch events in revision order. It ends with an error if the watch cannot go on.
pub type WatchStream = BoxStream<'static, Result<WatchEvent, StorageError>>;

/// What a store operation can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The key does not exist.
    #[error("key {key} not found")]
    NotFound {
        /// The key.
        key: String,
    },
    /// A create found the key already there.
    #[error("key {key} already exists")]
    AlreadyExists {
        /// The key.
        key: String,
    },
    /// A compare-and-swap found a different `mod_revision`.
    #[error("key {key} was modified: expected revision {expected}, found {actual}")]
    Conflict {
        /// The key.
        key: String,
        /// The revision the caller expected.
        expected: Revision,
        /// The revision the key has now.
        actual: Revision,
    },
    /// A watch or read asked for history older than the compaction point.
    #[error("revision {requested} has been compacted; the oldest available is {compacted}")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The compaction point: history at or before it is gone.
        compacted: Revision,
    },
    /// The backend cannot be reached or is shutting down.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The backend failed (I/O error, corrupt data).
    #[error("storage error: {0}")]
    Internal(String),
}

/// A revisioned key-value store with watch.
///
/// Semantics every backend keeps (checked by [`conformance`]):
/// - the revision starts above 0 and grows by exactly one per successful write (create, update,
///   delete); failed writes do not change it;
/// - a write is durable when its call returns `Ok`;
/// - `watch(prefix, after)` delivers every event with revision `> after` under `prefix`, in order,
///   first the replay of history and then live events; `after` below the compaction point fails
///   with [`StorageError::Compacted`] (from the call or as the stream's first item).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads one key at the current revision.
    async fn get(&self, key: &str) -> Result<(Revision, Option<KeyValue>), StorageError>;

    /// Reads keys starting with `prefix`, in key order, strictly after `start_after` when given,
    /// at most `limit` of them (0 = no limit).
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListResult, StorageError>;

    /// Creates a key that must not exist.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, StorageError>;

    /// Replaces the value of a key whose `mod_revision` must equal `expected`.
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
    ) -> Result<KeyValue, StorageError>;

    /// Deletes a key, if `expected` is given only when its `mod_revision` equals it. Returns the
    /// deleted entry and the revision of the delete.
    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(Revision, KeyValue), StorageError>;

    /// Streams the changes under `prefix` after revision `after`.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StorageError>;

    /// The current revision.
    async fn current_revision(&self) -> Result<Revision, StorageError>;

    /// Forgets history at and before `revision`, clamped to the current revision; later watches
    /// after an earlier revision fail with `Compacted`. Compacting to an older revision than the
    /// compaction point changes nothing.
    async fn compact(&self, revision: Revision) -> Result<(), StorageError>;

    /// Whether the stored value of `key` should be rewritten even by an update that changes
    /// nothing (it is encrypted with a key that is no longer the first; see [`encrypted`]).
    async fn stale(&self, _key: &str) -> Result<bool, StorageError> {
        Ok(false)
    }
}
