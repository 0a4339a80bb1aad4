//! The single writer of the embedded store: group commit of queued write requests.
//!
//! The writer is a dedicated thread (redb commits block on `fsync`) running this state machine:
//!
//! - **Idle**: blocked on the command channel. A closed channel (every [`EmbeddedStore`] handle
//!   dropped) moves to **Stopped**.
//! - **Collecting**: takes, without waiting, every request already queued, up to
//!   `max_batch_requests` requests and `max_batch_bytes` of keys and values (a request that would
//!   overflow the batch waits for the next one; a single request is always taken).
//! - **Applying**: one redb write transaction for the whole batch. Requests are checked in
//!   arrival order against the transaction's view (so a later request sees an earlier one), each
//!   successful one taking the next revision; a rejected one (missing key, existing key, stale
//!   revision) changes nothing and takes no revision.
//!   When the file system has less than the reserve free, creates and updates are refused
//!   here (`no space left on device`) and deletes go on.
//! - **Committing**: if anything succeeded, the new revision goes to the `meta` table and the
//!   transaction commits with [`Durability::Immediate`], one `fsync` for the whole batch; if
//!   nothing succeeded the transaction is aborted and nothing touches the disk. A failure here
//!   fails every request of the batch with [`StorageError::Internal`] and leaves the revision
//!   where it was.
//! - **Reopening** (after a batch failed as a whole, or before a batch while the file is
//!   closed, at most once per [`REOPEN_INTERVAL`]): the file is opened again (see `file`). Should
//!   it hold another revision than the announced head (a commit reported failed that reached
//!   the disk all the same), the watch log restarts at the file's revision, so watchers end
//!   with [`StorageError::Compacted`] and list again rather than miss those writes.
//! - **Publishing**: the batch's events go to the watch log and the new head is announced.
//! - **Replying**: every caller gets its result, then back to **Idle**. Publishing before
//!   replying means a caller that watches after its own acknowledged write always finds it.
//! - **Stopped**: the thread returns, dropping its database handle and the head announcer (which
//!   ends every watch stream with [`StorageError::Unavailable`]).
//!
//! A caller that gives up waiting does not cancel its write: once queued it is applied, as with
//! etcd.
//!
//! [`EmbeddedStore`]: super::EmbeddedStore

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redb::{Database, Durability, ReadableTable, Table};
use tokio::sync::{mpsc, oneshot, watch};

use super::file::{self, DbFile};
use super::tables;
use super::watch_log::{self, WatchLog};
use crate::storage::{KeyValue, Revision, StorageError, WatchEvent};

/// What the writer is asked to do.
pub(super) enum Command {
    /// Apply one write.
    Write(WriteRequest),
    /// Stop after the current batch until `resume` is dropped (tests use this to queue requests
    /// deterministically).
    #[cfg(test)]
    Pause {
        /// Told once the writer is paused.
        paused: oneshot::Sender<()>,
        /// Dropped by the test to resume the writer.
        resume: std::sync::mpsc::Receiver<()>,
    },
}

/// One write and where its result goes.
pub(super) struct WriteRequest {
    /// The write.
    pub(super) op: WriteOp,
    /// The caller waiting for the result.
    pub(super) reply: oneshot::Sender<Result<Applied, StorageError>>,
}

/// A write operation, as received from [`Store`](crate::storage::Store) calls.
pub(super) enum WriteOp {
    /// Create a key that must not exist.
    Create {
        /// The key.
        key: String,
        /// The value.
        value: Bytes,
    },
    /// Replace the value of a key whose `mod_revision` must be `expected`.
    Update {
        /// The key.
        key: String,
        /// The value.
        value: Bytes,
        /// The required `mod_revision`.
        expected: Revision,
    },
    /// Delete a key, when `expected` is given only if its `mod_revision` is `expected`.
    Delete {
        /// The key.
        key: String,
        /// The required `mod_revision`, if any.
        expected: Option<Revision>,
    },
}

impl WriteOp {
    /// Bytes the operation adds to a batch.
    fn size(&self) -> usize {
        match self {
            WriteOp::Create { key, value } | WriteOp::Update { key, value, .. } => {
                key.len() + value.len()
            }
            WriteOp::Delete { key, .. } => key.len(),
        }
    }
}

/// The result of a successful write.
#[derive(Debug)]
pub(super) enum Applied {
    /// The key now has this entry.
    Put(KeyValue),
    /// The key was deleted at this revision; this was its entry.
    Deleted(Revision, KeyValue),
}

/// Counters the writer keeps, read by [`EmbeddedStore::stats`](super::EmbeddedStore::stats).
#[derive(Debug, Default)]
pub(super) struct Counters {
    /// Write transactions committed (each one `fsync`).
    pub(super) commits: AtomicU64,
    /// Successful writes (each one revision).
    pub(super) writes: AtomicU64,
}

/// Limits on one batch.
#[derive(Clone, Copy, Debug)]
pub(super) struct BatchLimits {
    /// Most requests per batch.
    pub(super) requests: usize,
    /// Most key and value bytes per batch.
    pub(super) bytes: usize,
    /// Free bytes below which creates and updates are refused (0: no check).
    pub(super) reserve: u64,
}

/// The least time between two tries to reopen a file that could not be opened.
pub(super) const REOPEN_INTERVAL: Duration = Duration::from_secs(1);

/// The writer thread's state.
pub(super) struct Writer {
    file: Arc<DbFile>,
    commands: mpsc::Receiver<Command>,
    log: Arc<Mutex<WatchLog>>,
    head: watch::Sender<Revision>,
    counters: Arc<Counters>,
    limits: BatchLimits,
    /// When the file was last reopened.
    reopened: Option<Instant>,
}

impl Writer {
    /// A writer of `file`, reading `commands`, appending to `log` and announcing `head`.
    pub(super) fn new(
        file: Arc<DbFile>,
        commands: mpsc::Receiver<Command>,
        log: Arc<Mutex<WatchLog>>,
        head: watch::Sender<Revision>,
        counters: Arc<Counters>,
        limits: BatchLimits,
    ) -> Self {
        Writer {
            file,
            commands,
            log,
            head,
            counters,
            limits,
            reopened: None,
        }
    }

    /// Runs until every command sender is dropped.
    pub(super) fn run(mut self) {
        let mut held: Option<Command> = None;
        loop {
            // Idle.
            let command = match held.take() {
                Some(command) => command,
                None => match self.commands.blocking_recv() {
                    Some(command) => command,
                    None => return,
                },
            };
            match command {
                Command::Write(first) => {
                    let batch = self.collect(first, &mut held);
                    self.run_batch(batch);
                }
                #[cfg(test)]
                Command::Pause { paused, resume } => {
                    // The test may have stopped waiting; pausing is then pointless but harmless.
                    let _ = paused.send(());
                    let _ = resume.recv();
                }
            }
        }
    }

    /// Collecting: takes the requests already queued behind `first`, within the limits. A
    /// command that does not fit is left in `held` for the next turn.
    fn collect(&mut self, first: WriteRequest, held: &mut Option<Command>) -> Vec<WriteRequest> {
        let mut bytes = first.op.size();
        let mut batch = vec![first];
        while batch.len() < self.limits.requests {
            let Ok(command) = self.commands.try_recv() else {
                break;
            };
            match command {
                Command::Write(request) if bytes + request.op.size() <= self.limits.bytes => {
                    bytes += request.op.size();
                    batch.push(request);
                }
                other => {
                    *held = Some(other);
                    break;
                }
            }
        }
        batch
    }

    /// Applying, Committing, Publishing and Replying for one batch.
    fn run_batch(&mut self, batch: Vec<WriteRequest>) {
        let (ops, replies): (Vec<WriteOp>, Vec<_>) = batch
            .into_iter()
            .map(|request| (request.op, request.reply))
            .unzip();
        let results = match self.apply(&ops) {
            Ok(Batch { results, events }) => {
                if !events.is_empty() {
                    self.counters.commits.fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .writes
                        .fetch_add(events.len() as u64, Ordering::Relaxed);
                    let mut log = watch_log::lock(&self.log);
                    log.append(events);
                    let head = log.head();
                    drop(log);
                    self.head.send_replace(head);
                }
                results
            }
            Err(error) => replies.iter().map(|_| Err(error.clone())).collect(),
        };
        for (reply, result) in replies.into_iter().zip(results) {
            // A caller that stopped waiting still had its write applied; nobody to tell.
            let _ = reply.send(result);
        }
    }

    /// Applying and Committing, with Reopening before (the file is closed) or after (the batch
    /// failed as a whole).
    fn apply(&mut self, ops: &[WriteOp]) -> Result<Batch, StorageError> {
        if self.file.is_closed()
            && self
                .reopened
                .is_none_or(|at| at.elapsed() >= REOPEN_INTERVAL)
        {
            self.reopen(None);
        }
        let low_space = self.low_space(ops);
        let path = self.file.path().to_owned();
        let result = self
            .file
            .with(|db| apply_batch(db, &path, ops, low_space.as_deref()));
        match result {
            Ok(batch) => Ok(batch),
            Err(failed) if self.file.is_closed() => Err(failed.error),
            Err(failed) => {
                // redb refuses every call after an I/O error until the file is opened again.
                let BatchFailure { error, uncommitted } = failed;
                let committed = self.reopen(uncommitted.as_ref());
                match uncommitted {
                    Some(batch) if committed => Ok(batch),
                    _ => Err(error),
                }
            }
        }
    }

    /// Why creates and updates are refused now, if the file system is short of space (looked
    /// up only for batches that would add data).
    fn low_space(&self, ops: &[WriteOp]) -> Option<String> {
        let reserve = self.limits.reserve;
        if reserve == 0 || ops.iter().all(|op| matches!(op, WriteOp::Delete { .. })) {
            return None;
        }
        let free = file::free_bytes(self.file.path())?;
        (free < reserve).then(|| {
            format!(
                "no space left on device: {} free on the file system of {}, below the {} the \
                 store keeps in reserve; creates and updates are refused until space is freed \
                 (deletes are accepted)",
                file::mebibytes(free),
                self.file.path().display(),
                file::mebibytes(reserve)
            )
        })
    }

    /// Reopening: opens the file again. Returns whether the file holds `committing`, the
    /// batch whose commit reported a failure (redb's repair keeps a commit whose pages all
    /// reached the file): then the batch was committed after all and is acknowledged. Any other
    /// revision than the head restarts the watch log there.
    fn reopen(&mut self, committing: Option<&Batch>) -> bool {
        self.reopened = Some(Instant::now());
        let path = self.file.path().display().to_string();
        let revision = match self.file.reopen() {
            Ok(revision) => revision,
            Err(error) => {
                tracing::error!(path, %error, "cannot reopen the store file; writes fail until it opens");
                return false;
            }
        };
        let head = watch_log::lock(&self.log).head();
        let committed = committing
            .and_then(|batch| batch.events.last())
            .is_some_and(|last| last.revision() == revision);
        if committed {
            tracing::warn!(
                path,
                revision,
                "a commit reported failed reached the store file; acknowledged"
            );
        } else if revision != head {
            watch_log::lock(&self.log).restart(revision);
            self.head.send_replace(revision);
            tracing::warn!(
                path,
                head,
                revision,
                "the store file holds another revision than announced; watches restart"
            );
        } else {
            tracing::warn!(path, "reopened the store file after a failed write");
        }
        committed
    }
}

/// The outcome of a committed (or aborted, when nothing succeeded) batch.
struct Batch {
    /// One result per request, in order.
    results: Vec<Result<Applied, StorageError>>,
    /// The events of the successful requests, in revision order.
    events: Vec<WatchEvent>,
}

/// Why a batch failed as a whole.
struct BatchFailure {
    /// What every request of the batch is told.
    error: StorageError,
    /// The batch, when the failure came from its commit: it may have reached the file.
    uncommitted: Option<Batch>,
}

impl From<StorageError> for BatchFailure {
    fn from(error: StorageError) -> Self {
        BatchFailure {
            error,
            uncommitted: None,
        }
    }
}

/// How one request failed.
enum Failure {
    /// The request was refused; the transaction is untouched and the batch goes on.
    Rejected(StorageError),
    /// The transaction cannot be trusted any more; the whole batch fails.
    Fatal(redb::Error),
}

impl From<redb::StorageError> for Failure {
    fn from(error: redb::StorageError) -> Self {
        Failure::Fatal(error.into())
    }
}

/// Applies `ops` to the file at `path` in one write transaction and commits it durably if
/// anything succeeded. With `low_space`, creates and updates are rejected with that message.
fn apply_batch(
    db: &Database,
    path: &Path,
    ops: &[WriteOp],
    low_space: Option<&str>,
) -> Result<Batch, BatchFailure> {
    let what = format!("writing {}", path.display());
    let fail = |error: redb::Error| file::failure(&what, error);
    let mut txn = db.begin_write().map_err(|e| fail(e.into()))?;
    txn.set_durability(Durability::Immediate)
        .map_err(|e| fail(e.into()))?;
    let mut results = Vec::with_capacity(ops.len());
    let mut events = Vec::new();
    {
        let mut kv = txn.open_table(tables::KV).map_err(|e| fail(e.into()))?;
        let mut meta = txn.open_table(tables::META).map_err(|e| fail(e.into()))?;
        let mut revision = tables::read_revision(&meta)?;
        for op in ops {
            let next = revision
                .checked_add(1)
                .ok_or_else(|| StorageError::Internal("the store revision overflowed".into()))?;
            let result = match (op, low_space) {
                (WriteOp::Create { .. } | WriteOp::Update { .. }, Some(message)) => Err(
                    Failure::Rejected(StorageError::Internal(message.to_owned())),
                ),
                _ => apply_one(&mut kv, next, op),
            };
            match result {
                Ok((applied, event)) => {
                    revision = next;
                    results.push(Ok(applied));
                    events.push(event);
                }
                Err(Failure::Rejected(error)) => results.push(Err(error)),
                Err(Failure::Fatal(error)) => return Err(fail(error).into()),
            }
        }
        if !events.is_empty() {
            meta.insert(tables::REVISION, revision)
                .map_err(|e| fail(e.into()))?;
        }
    }
    let batch = Batch { results, events };
    if batch.events.is_empty() {
        txn.abort().map_err(|e| fail(e.into()))?;
    } else if let Err(e) = txn.commit() {
        return Err(BatchFailure {
            error: fail(e.into()),
            uncommitted: Some(batch),
        });
    }
    Ok(batch)
}

/// Applies one operation at `revision` inside the batch's transaction.
fn apply_one(
    kv: &mut Table<&'static [u8], &'static [u8]>,
    revision: Revision,
    op: &WriteOp,
) -> Result<(Applied, WatchEvent), Failure> {
    match op {
        WriteOp::Create { key, value } => {
            if current(kv, key)?.is_some() {
                return Err(Failure::Rejected(StorageError::AlreadyExists {
                    key: key.clone(),
                }));
            }
            let entry = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: revision,
                mod_revision: revision,
            };
            insert(kv, &entry)?;
            let event = WatchEvent::Put {
                kv: entry.clone(),
                prev: None,
            };
            Ok((Applied::Put(entry), event))
        }
        WriteOp::Update {
            key,
            value,
            expected,
        } => {
            let prev = existing(kv, key, Some(*expected))?;
            let entry = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: prev.create_revision,
                mod_revision: revision,
            };
            insert(kv, &entry)?;
            let event = WatchEvent::Put {
                kv: entry.clone(),
                prev: Some(prev),
            };
            Ok((Applied::Put(entry), event))
        }
        WriteOp::Delete { key, expected } => {
            let prev = existing(kv, key, *expected)?;
            kv.remove(key.as_bytes())?;
            let event = WatchEvent::Delete {
                revision,
                prev: prev.clone(),
            };
            Ok((Applied::Deleted(revision, prev), event))
        }
    }
}

/// The entry of `key` in the transaction's view.
fn current(
    kv: &Table<&'static [u8], &'static [u8]>,
    key: &str,
) -> Result<Option<KeyValue>, Failure> {
    match kv.get(key.as_bytes())? {
        Some(guard) => tables::decode(key.as_bytes(), guard.value())
            .map(Some)
            .map_err(|error| Failure::Fatal(redb::Error::Corrupted(error.to_string()))),
        None => Ok(None),
    }
}

/// The entry of `key`, which must exist and, when `expected` is given, have that
/// `mod_revision`.
fn existing(
    kv: &Table<&'static [u8], &'static [u8]>,
    key: &str,
    expected: Option<Revision>,
) -> Result<KeyValue, Failure> {
    let Some(entry) = current(kv, key)? else {
        return Err(Failure::Rejected(StorageError::NotFound {
            key: key.to_owned(),
        }));
    };
    match expected {
        Some(expected) if expected != entry.mod_revision => {
            Err(Failure::Rejected(StorageError::Conflict {
                key: key.to_owned(),
                expected,
                actual: entry.mod_revision,
            }))
        }
        _ => Ok(entry),
    }
}

/// Writes `entry`; an entry too large for redb is rejected before anything changes.
fn insert(kv: &mut Table<&'static [u8], &'static [u8]>, entry: &KeyValue) -> Result<(), Failure> {
    match kv.insert(entry.key.as_bytes(), tables::encode(entry).as_slice()) {
        Ok(_) => Ok(()),
        Err(redb::StorageError::ValueTooLarge(size)) => {
            Err(Failure::Rejected(StorageError::Internal(format!(
                "key {} with a value of {} bytes is too large for the embedded store ({size} \
                 bytes encoded)",
                entry.key,
                entry.value.len()
            ))))
        }
        Err(error) => Err(error.into()),
    }
}
