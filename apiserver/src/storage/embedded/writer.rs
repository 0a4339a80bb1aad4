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
//! - **Committing**: if anything succeeded, the new revision goes to the `meta` table and the
//!   transaction commits with [`Durability::Immediate`], one `fsync` for the whole batch; if
//!   nothing succeeded the transaction is aborted and nothing touches the disk. A failure here
//!   fails every request of the batch with [`StorageError::Internal`] and leaves the revision
//!   where it was.
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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use redb::{Database, Durability, Table};
use tokio::sync::{mpsc, oneshot, watch};

use super::tables::{self, internal};
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
}

/// The writer thread's state.
pub(super) struct Writer {
    pub(super) db: Arc<Database>,
    pub(super) commands: mpsc::Receiver<Command>,
    pub(super) log: Arc<Mutex<WatchLog>>,
    pub(super) head: watch::Sender<Revision>,
    pub(super) counters: Arc<Counters>,
    pub(super) limits: BatchLimits,
}

impl Writer {
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
        let results = match apply_batch(&self.db, &ops) {
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
}

/// The outcome of a committed (or aborted, when nothing succeeded) batch.
struct Batch {
    /// One result per request, in order.
    results: Vec<Result<Applied, StorageError>>,
    /// The events of the successful requests, in revision order.
    events: Vec<WatchEvent>,
}

/// How one request failed.
enum Failure {
    /// The request was refused; the transaction is untouched and the batch goes on.
    Rejected(StorageError),
    /// The transaction cannot be trusted any more; the whole batch fails.
    Fatal(StorageError),
}

impl From<redb::StorageError> for Failure {
    fn from(error: redb::StorageError) -> Self {
        Failure::Fatal(internal(error))
    }
}

/// Applies `ops` in one write transaction and commits it durably if anything succeeded.
fn apply_batch(db: &Database, ops: &[WriteOp]) -> Result<Batch, StorageError> {
    let mut txn = db.begin_write().map_err(internal)?;
    txn.set_durability(Durability::Immediate)
        .map_err(internal)?;
    let mut results = Vec::with_capacity(ops.len());
    let mut events = Vec::new();
    {
        let mut kv = txn.open_table(tables::KV).map_err(internal)?;
        let mut meta = txn.open_table(tables::META).map_err(internal)?;
        let mut revision = tables::read_revision(&meta)?;
        for op in ops {
            let next = revision
                .checked_add(1)
                .ok_or_else(|| StorageError::Internal("the store revision overflowed".into()))?;
            match apply_one(&mut kv, next, op) {
                Ok((applied, event)) => {
                    revision = next;
                    results.push(Ok(applied));
                    events.push(event);
                }
                Err(Failure::Rejected(error)) => results.push(Err(error)),
                Err(Failure::Fatal(error)) => return Err(error),
            }
        }
        if !events.is_empty() {
            meta.insert(tables::REVISION, revision).map_err(internal)?;
        }
    }
    if events.is_empty() {
        txn.abort().map_err(internal)?;
    } else {
        txn.commit().map_err(internal)?;
    }
    Ok(Batch { results, events })
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
    tables::read_key(kv, key).map_err(Failure::Fatal)
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
