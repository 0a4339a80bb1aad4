//! The embedded backend: a durable single-file store on redb with group commit and an in-memory
//! watch log.
//!
//! # Layout
//! - [`tables`]: the redb tables, the value encoding and the read paths;
//! - [`writer`]: the writer thread and its state machine (Idle → Collecting → Applying →
//!   Committing → Publishing → Replying → Idle; Stopped when the store is dropped);
//! - [`watch_log`]: the revision log and the watch streams reading it.
//!
//! # Writes: group commit
//! Every write call sends a request over a bounded channel to the one writer thread and waits
//! for its answer. The writer takes every request already queued (up to
//! [`EmbeddedConfig::max_batch_requests`] and [`EmbeddedConfig::max_batch_bytes`]), applies them
//! in order in one redb write transaction (compare-and-swap checks per request; each success
//! takes the next revision), commits once with `fsync` ([`redb::Durability::Immediate`]), appends
//! the events to the watch log and only then answers each caller. A write call returns `Ok` only
//! after its transaction committed, so an acknowledged write survives `kill -9`; concurrent
//! writers share one `fsync`. The store revision lives in the file and keeps growing across
//! restarts.
//!
//! # Reads
//! `get`, `list` and `current_revision` run in a redb read transaction on tokio's blocking pool
//! (redb reads may hit the disk). A read transaction is a consistent snapshot, so the revision
//! returned is exactly the one the entries were read at. There is no in-memory copy of the data:
//! memory stays bounded by redb's cache whatever the data size.
//!
//! # Watch
//! The watch log keeps the last [`EmbeddedConfig::history_limit`] events (and at most
//! [`EmbeddedConfig::history_max_bytes`]); dropping old events moves the compaction point, as
//! does [`Store::compact`]. The log starts empty at open, so the compaction point is the
//! revision at open: a watch from before a restart fails with [`StorageError::Compacted`]. A
//! watch stream is a cursor over the shared log, so a slow watcher costs nothing to writers;
//! once the log has dropped events it had not read, its stream ends with
//! [`StorageError::Compacted`]. When the store closes, streams end with
//! [`StorageError::Unavailable`]. Streams never emit [`WatchEvent::Progress`].
//!
//! [`WatchEvent::Progress`]: crate::storage::WatchEvent::Progress

mod tables;
mod watch_log;
mod writer;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use async_trait::async_trait;
use bytes::Bytes;
use redb::{Database, DatabaseError, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use tokio::sync::{mpsc, oneshot, watch};

use self::tables::internal;
use self::watch_log::WatchLog;
use self::writer::{Applied, BatchLimits, Command, Counters, WriteOp, WriteRequest, Writer};
use crate::storage::{KeyValue, ListResult, Revision, StorageError, Store, WatchStream};

/// How to open an [`EmbeddedStore`]. [`EmbeddedConfig::new`] gives the defaults for a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbeddedConfig {
    /// The database file; it and its parent directories are created when missing.
    pub path: PathBuf,
    /// Most events the watch log keeps (at least 1). Default 10,000.
    pub history_limit: usize,
    /// Most key and value bytes the watch log keeps; the newest event is kept whatever its
    /// size. Default 64 MiB.
    pub history_max_bytes: usize,
    /// Most write requests committed in one transaction (at least 1). Default 1,024.
    pub max_batch_requests: usize,
    /// Most key and value bytes committed in one transaction; a single larger request still
    /// goes through, alone. Default 16 MiB.
    pub max_batch_bytes: usize,
    /// Most write requests waiting for the writer before callers wait to enqueue (at least 1).
    /// Default 4,096.
    pub queue_capacity: usize,
}

impl EmbeddedConfig {
    /// The defaults for a database file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        EmbeddedConfig {
            path: path.into(),
            history_limit: 10_000,
            history_max_bytes: 64 << 20,
            max_batch_requests: 1024,
            max_batch_bytes: 16 << 20,
            queue_capacity: 4096,
        }
    }
}

/// Counters of an [`EmbeddedStore`] since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmbeddedStats {
    /// Write transactions committed, each with one `fsync`.
    pub commits: u64,
    /// Successful writes, each with its own revision.
    pub writes: u64,
}

/// The embedded [`Store`]: one redb file, one writer thread, one in-memory watch log.
///
/// Dropping it stops the writer once the requests already queued are committed; use
/// [`EmbeddedStore::close`] to wait for that (for instance before opening the file again).
pub struct EmbeddedStore {
    db: Arc<Database>,
    commands: mpsc::Sender<Command>,
    log: Arc<Mutex<WatchLog>>,
    head: watch::Receiver<Revision>,
    counters: Arc<Counters>,
    writer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("head", &*self.head.borrow())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the database file and starts the writer thread.
    ///
    /// Fails with [`StorageError::Unavailable`] when the file is already open (by this or
    /// another process) and [`StorageError::Internal`] when it cannot be created or read.
    pub fn open(config: EmbeddedConfig) -> Result<Self, StorageError> {
        let path = config.path.display().to_string();
        if let Some(parent) = config.path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|error| {
                StorageError::Internal(format!("cannot create {}: {error}", parent.display()))
            })?;
        }
        let db = Database::create(&config.path).map_err(|error| match error {
            DatabaseError::DatabaseAlreadyOpen => {
                StorageError::Unavailable(format!("{path} is already open"))
            }
            other => StorageError::Internal(format!("cannot open {path}: {other}")),
        })?;
        let revision = initialize(&db)
            .map_err(|error| StorageError::Internal(format!("cannot open {path}: {error}")))?;

        let db = Arc::new(db);
        let log = Arc::new(Mutex::new(WatchLog::new(
            revision,
            config.history_limit,
            config.history_max_bytes,
        )));
        let (head_tx, head_rx) = watch::channel(revision);
        let (commands_tx, commands_rx) = mpsc::channel(config.queue_capacity.max(1));
        let counters = Arc::new(Counters::default());
        let writer = Writer {
            db: db.clone(),
            commands: commands_rx,
            log: log.clone(),
            head: head_tx,
            counters: counters.clone(),
            limits: BatchLimits {
                requests: config.max_batch_requests.max(1),
                bytes: config.max_batch_bytes,
            },
        };
        let writer = std::thread::Builder::new()
            .name("gitplane-storage-writer".to_owned())
            .spawn(move || writer.run())
            .map_err(|error| {
                StorageError::Internal(format!("cannot start the storage writer: {error}"))
            })?;
        Ok(EmbeddedStore {
            db,
            commands: commands_tx,
            log,
            head: head_rx,
            counters,
            writer: Some(writer),
        })
    }

    /// Counters since the store was opened.
    pub fn stats(&self) -> EmbeddedStats {
        EmbeddedStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            writes: self.counters.writes.load(Ordering::Relaxed),
        }
    }

    /// Stops the writer after the requests already queued and waits until it has closed the
    /// database file.
    pub async fn close(mut self) -> Result<(), StorageError> {
        let writer = self.writer.take();
        drop(self);
        if let Some(writer) = writer {
            tokio::task::spawn_blocking(move || writer.join())
                .await
                .map_err(internal)?
                .map_err(|_| StorageError::Internal("the storage writer panicked".to_owned()))?;
        }
        Ok(())
    }

    /// Sends one write to the writer and waits for its result.
    async fn write(&self, op: WriteOp) -> Result<Applied, StorageError> {
        let stopped = || StorageError::Unavailable("the storage writer has stopped".to_owned());
        let (reply, result) = oneshot::channel();
        self.commands
            .send(Command::Write(WriteRequest { op, reply }))
            .await
            .map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())?
    }

    /// Runs `read` in a read transaction on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&redb::ReadTransaction) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(internal)?;
            read(&txn)
        })
        .await
        .map_err(|error| StorageError::Internal(format!("storage read failed: {error}")))?
    }
}

/// Creates the tables of a new file, or checks the layout version of an existing one, and
/// returns the store revision.
fn initialize(db: &Database) -> Result<Revision, StorageError> {
    let txn = db.begin_write().map_err(internal)?;
    let revision = {
        let kv = txn.open_table(tables::KV).map_err(internal)?;
        let mut meta = txn.open_table(tables::META).map_err(internal)?;
        let format = meta
            .get(tables::FORMAT)
            .map_err(internal)?
            .map(|guard| guard.value());
        match format {
            Some(tables::FORMAT_VERSION) => None,
            Some(other) => {
                return Err(StorageError::Internal(format!(
                    "unsupported layout version {other} (this build reads {})",
                    tables::FORMAT_VERSION
                )));
            }
            None if kv.is_empty().map_err(internal)? => {
                meta.insert(tables::FORMAT, tables::FORMAT_VERSION)
                    .map_err(internal)?;
                meta.insert(tables::REVISION, tables::INITIAL_REVISION)
                    .map_err(internal)?;
                Some(tables::INITIAL_REVISION)
            }
            None => {
                return Err(StorageError::Internal(
                    "the file has entries but no layout version".to_owned(),
                ));
            }
        }
    };
    match revision {
        Some(revision) => {
            txn.commit().map_err(internal)?;
            Ok(revision)
        }
        None => {
            let revision = {
                let meta = txn.open_table(tables::META).map_err(internal)?;
                tables::read_revision(&meta)?
            };
            txn.abort().map_err(internal)?;
            Ok(revision)
        }
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<(Revision, Option<KeyValue>), StorageError> {
        let key = key.to_owned();
        self.read(move |txn| {
            let revision = tables::read_revision(&txn.open_table(tables::META).map_err(internal)?)?;
            let kv = txn.open_table(tables::KV).map_err(internal)?;
            Ok((revision, tables::read_key(&kv, &key)?))
        })
        .await
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListResult, StorageError> {
        let prefix = prefix.to_owned();
        let start_after = start_after.map(str::to_owned);
        self.read(move |txn| {
            let revision = tables::read_revision(&txn.open_table(tables::META).map_err(internal)?)?;
            let kv = txn.open_table(tables::KV).map_err(internal)?;
            tables::read_range(&kv, revision, &prefix, start_after.as_deref(), limit)
        })
        .await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, StorageError> {
        let op = WriteOp::Create {
            key: key.to_owned(),
            value,
        };
        match self.write(op).await? {
            Applied::Put(kv) => Ok(kv),
            Applied::Deleted(..) => Err(unexpected()),
        }
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
    ) -> Result<KeyValue, StorageError> {
        let op = WriteOp::Update {
            key: key.to_owned(),
            value,
            expected,
        };
        match self.write(op).await? {
            Applied::Put(kv) => Ok(kv),
            Applied::Deleted(..) => Err(unexpected()),
        }
    }

    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(Revision, KeyValue), StorageError> {
        let op = WriteOp::Delete {
            key: key.to_owned(),
            expected,
        };
        match self.write(op).await? {
            Applied::Deleted(revision, prev) => Ok((revision, prev)),
            Applied::Put(_) => Err(unexpected()),
        }
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StorageError> {
        watch_log::lock(&self.log).check_available(after)?;
        Ok(watch_log::stream(
            self.log.clone(),
            self.head.clone(),
            prefix,
            after,
        ))
    }

    async fn current_revision(&self) -> Result<Revision, StorageError> {
        self.read(|txn| tables::read_revision(&txn.open_table(tables::META).map_err(internal)?))
            .await
    }

    async fn compact(&self, revision: Revision) -> Result<(), StorageError> {
        watch_log::lock(&self.log).compact(revision);
        Ok(())
    }
}

/// The writer answered a write with the result of another kind of write.
fn unexpected() -> StorageError {
    StorageError::Internal("the storage writer answered with the wrong kind of result".to_owned())
}
