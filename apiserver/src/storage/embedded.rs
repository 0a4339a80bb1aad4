//! The embedded backend: a durable single-file store on redb with group commit and an in-memory
//! watch log.
//!
//! # Layout
//! - `file`: the database file, its handle, reopening it after a failed write, free space;
//! - `tables`: the redb tables, the value encoding and the read paths;
//! - `writer`: the writer thread and its state machine (Idle → Collecting → Applying →
//!   Committing → Publishing → Replying → Idle; Stopped when the store is dropped);
//! - `watch_log`: the revision log and the watch streams reading it.
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
//! # A full disk
//! Before each batch the writer looks at the free space of the file system holding the file:
//! below [`EmbeddedConfig::reserve_bytes`] it refuses creates and updates with
//! [`StorageError::Internal`] saying `no space left on device` (the API server answers 500, as
//! Kubernetes answers etcd's `mvcc: database space exceeded`) and lets deletes through. When a
//! commit fails all the same (another process filled the disk meanwhile), every request of the
//! batch gets the error, nothing is acknowledged, and the writer reopens the file (redb refuses
//! every call after an I/O error until then; see `file`); if the file cannot be opened yet, the
//! writes that follow fail with that reason and trigger another try. Watches and
//! `current_revision` never touch the file, so the API server's reads, served from its watch
//! cache, go on. Once space is freed, writes are accepted again without a restart.
//!
//! # Reads
//! `get` and `list` run in a redb read transaction on tokio's blocking pool (redb reads may hit
//! the disk); `current_revision` is the head the writer announced. A read transaction is a consistent snapshot, so the revision
//! returned is exactly the one the entries were read at. There is no in-memory copy of the data:
//! memory stays bounded by redb's cache whatever the data size.
//!
//! # Watch
//! The watch log keeps the last [`EmbeddedConfig::history_limit`] events (and at most
//! [`EmbeddedConfig::history_max_bytes`]); dropping old events moves the compaction point, as
//! does [`Store::compact`] (clamped to the current revision; compacting to an older revision than
//! the compaction point changes nothing). The log starts empty at open, so the compaction point is the
//! revision at open: a watch from before a restart fails with [`StorageError::Compacted`]. A
//! watch stream is a cursor over the shared log, so a slow watcher costs nothing to writers;
//! once the log has dropped events it had not read, its stream ends with
//! [`StorageError::Compacted`]. When the store closes, streams end with
//! [`StorageError::Unavailable`]. Streams never emit [`WatchEvent::Progress`].
//!
//! [`WatchEvent::Progress`]: crate::storage::WatchEvent::Progress

mod file;
mod tables;
mod watch_log;
mod writer;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use async_trait::async_trait;
use bytes::Bytes;
use redb::ReadableDatabase;
use tokio::sync::{mpsc, oneshot, watch};

use self::file::DbFile;
use self::tables::internal;
use self::watch_log::WatchLog;
use self::writer::{Applied, BatchLimits, Command, Counters, WriteOp, WriteRequest, Writer};
use crate::storage::{KeyValue, ListResult, Revision, StorageError, Store, WatchStream};

/// How to open an [`EmbeddedStore`]. [`EmbeddedConfig::new`] gives the defaults for a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbeddedConfig {
    /// The database file; it and its parent directories are created when missing.
    pub path: PathBuf,
    /// Most events the watch log keeps (at least 1). Default 10,000. A watcher that falls
    /// further behind than this ends with [`StorageError::Compacted`], so it should comfortably
    /// exceed bursts of writes.
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
    /// Free bytes the file system holding the file must keep: below this, creates and updates
    /// are refused (`no space left on device`) and deletes still go through, so that the disk
    /// never fills up under the store in the middle of a commit. Default 16 MiB (one full
    /// batch); 0 turns the check off.
    pub reserve_bytes: u64,
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
            reserve_bytes: 16 << 20,
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
    file: Arc<DbFile>,
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
        let (file, revision) = DbFile::open(config.path.clone())?;
        let file = Arc::new(file);
        let log = Arc::new(Mutex::new(WatchLog::new(
            revision,
            config.history_limit,
            config.history_max_bytes,
        )));
        let (head_tx, head_rx) = watch::channel(revision);
        let (commands_tx, commands_rx) = mpsc::channel(config.queue_capacity.max(1));
        let counters = Arc::new(Counters::default());
        let writer = Writer::new(
            file.clone(),
            commands_rx,
            log.clone(),
            head_tx,
            counters.clone(),
            BatchLimits {
                requests: config.max_batch_requests.max(1),
                bytes: config.max_batch_bytes,
                reserve: config.reserve_bytes,
            },
        );
        let writer = std::thread::Builder::new()
            .name("gitplane-storage-writer".to_owned())
            .spawn(move || writer.run())
            .map_err(|error| {
                StorageError::Internal(format!("cannot start the storage writer: {error}"))
            })?;
        Ok(EmbeddedStore {
            file,
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

    /// Stops the writer after the requests already queued and waits until it has dropped its
    /// handle on the database file. A read whose future was dropped mid-way may still hold the
    /// file on the blocking pool until it finishes.
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
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || {
            file.with(|db| {
                let txn = db.begin_read().map_err(internal)?;
                read(&txn)
            })
        })
        .await
        .map_err(|error| StorageError::Internal(format!("storage read failed: {error}")))?
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
        // The head the writer announces after each commit: every acknowledged write is at or
        // before it, and answering from memory keeps reads served while the file is closed.
        Ok(*self.head.borrow())
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use futures::StreamExt;
    use futures::future::BoxFuture;

    use super::*;
    use crate::storage::{WatchEvent, conformance};

    /// How long a test waits for something it polls for.
    const DEADLINE: Duration = Duration::from_secs(10);

    fn text(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn open_in(dir: &tempfile::TempDir) -> EmbeddedStore {
        EmbeddedStore::open(EmbeddedConfig::new(dir.path().join("store.redb"))).expect("open")
    }

    /// Pauses the writer; it resumes when the returned sender is dropped.
    async fn pause(store: &EmbeddedStore) -> std::sync::mpsc::Sender<()> {
        let (paused, is_paused) = oneshot::channel();
        let (resume_tx, resume) = std::sync::mpsc::channel();
        store
            .commands
            .send(Command::Pause { paused, resume })
            .await
            .expect("send pause");
        is_paused.await.expect("writer paused");
        resume_tx
    }

    /// Requests waiting in the writer's queue.
    fn queued(store: &EmbeddedStore) -> usize {
        store.commands.max_capacity() - store.commands.capacity()
    }

    /// Polls each write, in order, until it is queued behind the paused writer.
    async fn enqueue_in_order<T>(store: &EmbeddedStore, writes: &mut [BoxFuture<'_, T>]) {
        let deadline = Instant::now() + DEADLINE;
        for (i, write) in writes.iter_mut().enumerate() {
            while queued(store) <= i {
                assert!(
                    futures::poll!(write.as_mut()).is_pending(),
                    "write {i} finished while the writer was paused"
                );
                assert!(Instant::now() < deadline, "write {i} was never queued");
                tokio::task::yield_now().await;
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_embedded_store_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open_in(&dir);
        conformance::run_all(&store).await;
        store.close().await.expect("close");
    }

    #[tokio::test]
    async fn a_fresh_store_starts_at_revision_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open_in(&dir);
        assert_eq!(store.current_revision().await, Ok(tables::INITIAL_REVISION));
        let created = store.create("/k", text("v")).await.expect("create");
        assert_eq!(created.mod_revision, tables::INITIAL_REVISION + 1);
    }

    #[tokio::test]
    async fn reopening_the_file_finds_every_key_and_the_revision() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/data/store.redb");
        let store = EmbeddedStore::open(EmbeddedConfig::new(&path)).expect("open");
        for i in 0..50 {
            store
                .create(&format!("/keys/{i:02}"), text(&i.to_string()))
                .await
                .expect("create");
        }
        for i in (0..50).step_by(5) {
            let key = format!("/keys/{i:02}");
            let (_, kv) = store.get(&key).await.expect("get");
            let kv = kv.expect("the key exists");
            store
                .update(&key, text("updated"), kv.mod_revision)
                .await
                .expect("update");
        }
        for i in (1..50).step_by(7) {
            store
                .delete(&format!("/keys/{i:02}"), None)
                .await
                .expect("delete");
        }
        let before = store.list("/keys/", None, 0).await.expect("list");
        store.close().await.expect("close");

        let store = EmbeddedStore::open(EmbeddedConfig::new(&path)).expect("reopen");
        let after = store.list("/keys/", None, 0).await.expect("list");
        assert_eq!(
            after, before,
            "every entry and the revision survive a reopen"
        );
        assert_eq!(store.current_revision().await, Ok(before.revision));

        let revision = before.revision;
        let result = store.watch("/keys/", revision - 1).await.map(|_| ());
        assert_eq!(
            result,
            Err(StorageError::Compacted {
                requested: revision - 1,
                compacted: revision
            }),
            "history from before the restart is gone"
        );
        let mut stream = store.watch("/keys/", revision).await.expect("watch");
        let created = store
            .create("/keys/new", text("new"))
            .await
            .expect("create");
        assert_eq!(
            created.mod_revision,
            revision + 1,
            "the revision keeps growing"
        );
        let event = tokio::time::timeout(DEADLINE, stream.next()).await;
        assert_eq!(
            event.expect("event in time"),
            Some(Ok(WatchEvent::Put {
                kv: created,
                prev: None
            }))
        );
    }

    #[tokio::test]
    async fn concurrent_writes_share_one_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open_in(&dir);
        let before = store.stats();
        let keys: Vec<String> = (0..64).map(|i| format!("/group/{i:02}")).collect();

        let resume = pause(&store).await;
        let mut writes: Vec<_> = keys
            .iter()
            .map(|key| store.create(key, text("v")))
            .collect();
        enqueue_in_order(&store, &mut writes).await;
        drop(resume);
        let results = futures::future::join_all(writes).await;

        let mut revisions: Vec<Revision> = results
            .into_iter()
            .map(|result| result.expect("create").mod_revision)
            .collect();
        revisions.sort_unstable();
        let first = tables::INITIAL_REVISION + 1;
        assert_eq!(revisions, (first..first + 64).collect::<Vec<_>>());
        let after = store.stats();
        assert_eq!(
            after.commits - before.commits,
            1,
            "64 queued writes, one commit"
        );
        assert_eq!(after.writes - before.writes, 64);
    }

    #[tokio::test]
    async fn a_batch_applies_requests_in_order_and_rejects_only_the_failing_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open_in(&dir);
        let start = store.current_revision().await.expect("revision");
        let before = store.stats();

        let resume = pause(&store).await;
        let put = |result: Result<KeyValue, StorageError>| result.map(|kv| kv.mod_revision);
        let mut writes: Vec<BoxFuture<'_, Result<Revision, StorageError>>> = vec![
            Box::pin(async { put(store.create("/a", text("1")).await) }),
            Box::pin(async { put(store.create("/a", text("again")).await) }),
            Box::pin(async { put(store.update("/a", text("2"), start + 1).await) }),
            Box::pin(async { store.delete("/b", None).await.map(|(rev, _)| rev) }),
            Box::pin(async { put(store.update("/a", text("3"), start + 1).await) }),
            Box::pin(async { put(store.create("/b", text("1")).await) }),
        ];
        enqueue_in_order(&store, &mut writes).await;
        drop(resume);
        let results = futures::future::join_all(writes).await;

        let a = || "/a".to_owned();
        assert_eq!(
            results,
            vec![
                Ok(start + 1),
                Err(StorageError::AlreadyExists { key: a() }),
                Ok(start + 2),
                Err(StorageError::NotFound {
                    key: "/b".to_owned()
                }),
                Err(StorageError::Conflict {
                    key: a(),
                    expected: start + 1,
                    actual: start + 2
                }),
                Ok(start + 3),
            ]
        );
        let after = store.stats();
        assert_eq!(after.commits - before.commits, 1);
        assert_eq!(after.writes - before.writes, 3);
        assert_eq!(store.current_revision().await, Ok(start + 3));
    }

    #[tokio::test]
    async fn batches_respect_the_request_and_byte_limits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = EmbeddedConfig {
            max_batch_requests: 2,
            max_batch_bytes: 100,
            ..EmbeddedConfig::new(dir.path().join("store.redb"))
        };
        let store = EmbeddedStore::open(config).expect("open");
        let before = store.stats();
        // Keys of 5 bytes: small writes weigh 14 bytes, big ones 90.
        let small = || Bytes::from(vec![0; 9]);
        let big = || Bytes::from(vec![0; 85]);
        let writes = [
            ("/l/s1", small()),
            ("/l/s2", small()),
            ("/l/s3", small()),
            ("/l/b1", big()),
            ("/l/b2", big()),
            ("/l/s4", small()),
        ];

        let resume = pause(&store).await;
        let mut futures: Vec<_> = writes
            .iter()
            .map(|(key, value)| store.create(key, value.clone()))
            .collect();
        enqueue_in_order(&store, &mut futures).await;
        drop(resume);
        for result in futures::future::join_all(futures).await {
            result.expect("create");
        }

        // [s1 s2] (request limit), [s3] (s3 + b1 > 100 bytes), [b1], [b2], [s4].
        assert_eq!(store.stats().commits - before.commits, 5);
    }

    #[tokio::test]
    async fn a_batch_of_only_failures_commits_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open_in(&dir);
        let before = store.stats();
        let result = store.delete("/missing", None).await;
        assert_eq!(
            result,
            Err(StorageError::NotFound {
                key: "/missing".to_owned()
            })
        );
        assert_eq!(store.stats(), before, "no commit, no revision");
    }

    /// Where [`write_until_killed`] puts its database.
    const CRASH_PATH: &str = "GITPLANE_STORAGE_CRASH_PATH";

    /// The child half of [`a_killed_process_keeps_every_acknowledged_write`]: eight concurrent
    /// writers create keys until the process is killed, printing `ack <revision> <key>` once a
    /// create has returned `Ok`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a child process of a_killed_process_keeps_every_acknowledged_write"]
    async fn write_until_killed() {
        let Some(path) = std::env::var_os(CRASH_PATH) else {
            return;
        };
        let store = EmbeddedStore::open(EmbeddedConfig::new(path)).expect("open");
        let writer = |w: usize| {
            let store = &store;
            async move {
                for i in 0.. {
                    let key = format!("/crash/{w}/{i:06}");
                    let kv = store.create(&key, text(&key)).await.expect("create");
                    println!("ack {} {key}", kv.mod_revision);
                }
            }
        };
        futures::future::join_all((0..8).map(writer)).await;
    }

    #[test]
    fn a_killed_process_keeps_every_acknowledged_write() {
        use std::io::BufRead;
        use std::process::{Command, Stdio};

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.redb");
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "storage::embedded::tests::write_until_killed"])
            .args(["--ignored", "--nocapture", "--test-threads=1"])
            .env(CRASH_PATH, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the writing child");
        let stdout = child.stdout.take().expect("child stdout");
        let (acks_tx, acks) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(ack) = line.strip_prefix("ack ") {
                    let _ = acks_tx.send(ack.to_owned());
                }
            }
        });

        let deadline = Instant::now() + DEADLINE;
        let mut acknowledged = Vec::new();
        while acknowledged.len() < 500 {
            match acks.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(ack) => acknowledged.push(ack),
                Err(_) => {
                    let _ = child.kill();
                    panic!("the child acknowledged only {} writes", acknowledged.len());
                }
            }
        }
        child.kill().expect("kill -9 the child");
        child.wait().expect("reap the child");
        reader.join().expect("reader thread");
        acknowledged.extend(acks.try_iter());

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let store = EmbeddedStore::open(EmbeddedConfig::new(&path)).expect("reopen");
            let mut newest = 0;
            for ack in &acknowledged {
                let (revision, key) = ack.split_once(' ').expect("ack line");
                let revision: Revision = revision.parse().expect("ack revision");
                let (_, kv) = store.get(key).await.expect("get");
                let kv = kv.unwrap_or_else(|| panic!("acknowledged key {key} was lost"));
                assert_eq!((kv.mod_revision, kv.value), (revision, text(key)));
                newest = newest.max(revision);
            }
            let current = store.current_revision().await.expect("revision");
            assert!(
                current >= newest,
                "revision {current} is behind acknowledged {newest}"
            );
        });
    }

    #[tokio::test]
    async fn a_slow_watcher_does_not_block_writers_and_ends_with_compacted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = EmbeddedConfig {
            history_limit: 8,
            ..EmbeddedConfig::new(dir.path().join("store.redb"))
        };
        let store = EmbeddedStore::open(config).expect("open");
        let start = store.current_revision().await.expect("revision");
        let mut slow = store.watch("/slow/", start).await.expect("watch");

        let writes = async {
            for i in 0..100 {
                store
                    .create(&format!("/slow/{i:03}"), text("v"))
                    .await
                    .expect("create");
            }
        };
        tokio::time::timeout(DEADLINE, writes)
            .await
            .expect("writes finish while a watcher is not reading");
        let (compacted, len) = {
            let log = watch_log::lock(&store.log);
            (log.compacted(), log.len())
        };
        assert_eq!(len, 8, "the log keeps history_limit events");
        assert_eq!(compacted, start + 92);

        let first = slow.next().await;
        assert_eq!(
            first,
            Some(Err(StorageError::Compacted {
                requested: start,
                compacted
            })),
            "the slow watcher learns it missed events"
        );
        assert_eq!(slow.next().await, None, "and its stream ends");
    }

    #[tokio::test]
    async fn a_watcher_reading_along_sees_every_event_despite_a_short_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = EmbeddedConfig {
            history_limit: 4,
            ..EmbeddedConfig::new(dir.path().join("store.redb"))
        };
        let store = EmbeddedStore::open(config).expect("open");
        let start = store.current_revision().await.expect("revision");
        let mut stream = store.watch("/along/", start).await.expect("watch");
        for i in 0..20 {
            let created = store
                .create(&format!("/along/{i:02}"), text("v"))
                .await
                .expect("create");
            let event = tokio::time::timeout(DEADLINE, stream.next()).await;
            assert_eq!(
                event.expect("event in time"),
                Some(Ok(WatchEvent::Put {
                    kv: created,
                    prev: None
                }))
            );
        }
    }

    #[tokio::test]
    async fn watches_end_with_unavailable_when_the_store_closes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open_in(&dir);
        let revision = store.current_revision().await.expect("revision");
        let mut stream = store.watch("/", revision).await.expect("watch");
        store.close().await.expect("close");
        let item = tokio::time::timeout(DEADLINE, stream.next()).await;
        assert!(
            matches!(item, Ok(Some(Err(StorageError::Unavailable(_))))),
            "got {item:?}"
        );
        assert_eq!(stream.next().await, None);
    }

    #[tokio::test]
    async fn opening_a_file_that_is_already_open_is_unavailable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _store = open_in(&dir);
        let second = EmbeddedStore::open(EmbeddedConfig::new(dir.path().join("store.redb")));
        assert!(
            matches!(second, Err(StorageError::Unavailable(_))),
            "got {second:?}"
        );
    }

    #[tokio::test]
    async fn dropping_the_store_stops_the_writer_and_releases_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open_in(&dir);
        store.create("/kept", text("v")).await.expect("create");
        drop(store);
        let deadline = Instant::now() + DEADLINE;
        let store = loop {
            match EmbeddedStore::open(EmbeddedConfig::new(dir.path().join("store.redb"))) {
                Ok(store) => break store,
                Err(StorageError::Unavailable(_)) if Instant::now() < deadline => {
                    tokio::task::yield_now().await;
                }
                Err(error) => panic!("reopen after drop failed: {error}"),
            }
        };
        let (_, kv) = store.get("/kept").await.expect("get");
        assert_eq!(kv.map(|kv| kv.value), Some(text("v")));
    }

    #[tokio::test]
    async fn compacting_beyond_the_head_stops_at_the_head_and_never_goes_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open_in(&dir);
        let start = store.current_revision().await.expect("revision");
        for i in 0..3 {
            store
                .create(&format!("/c/{i}"), text("v"))
                .await
                .expect("create");
        }
        store.compact(start + 100).await.expect("compact");
        assert_eq!(watch_log::lock(&store.log).compacted(), start + 3);
        store.compact(start + 1).await.expect("compact");
        assert_eq!(watch_log::lock(&store.log).compacted(), start + 3);
        assert!(store.watch("/c/", start + 3).await.is_ok());
    }

    #[tokio::test]
    async fn the_log_keeps_within_its_byte_bound_but_always_the_newest_event() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = EmbeddedConfig {
            history_max_bytes: 1000,
            ..EmbeddedConfig::new(dir.path().join("store.redb"))
        };
        let store = EmbeddedStore::open(config).expect("open");
        let start = store.current_revision().await.expect("revision");
        store
            .create("/big/1", Bytes::from(vec![1; 4000]))
            .await
            .expect("create");
        assert_eq!(
            watch_log::lock(&store.log).len(),
            1,
            "the newest event stays"
        );
        for i in 0..10 {
            store
                .create(&format!("/small/{i}"), Bytes::from(vec![1; 200]))
                .await
                .expect("create");
        }
        let (len, compacted) = {
            let log = watch_log::lock(&store.log);
            (log.len(), log.compacted())
        };
        assert_eq!(len, 4, "four events of 208 bytes fit in 1000");
        assert_eq!(compacted, start + 7);
    }

    /// A small tmpfs mounted on a new temporary directory, unmounted when dropped (also when
    /// the test fails).
    struct Tmpfs {
        dir: tempfile::TempDir,
    }

    impl Tmpfs {
        fn mount(size: &str) -> Tmpfs {
            let dir = tempfile::tempdir().expect("tempdir");
            let status = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(dir.path())
                .status()
                .expect("run mount");
            assert!(
                status.success(),
                "mounting a tmpfs on {} failed: the full-disk tests must run as root",
                dir.path().display()
            );
            Tmpfs { dir }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }
    }

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }

    /// Writes zeros to `path` until the file system is full; returns the bytes written.
    fn fill(path: &std::path::Path) -> u64 {
        use std::io::Write;
        let mut file = std::fs::File::create(path).expect("create the filler");
        let chunk = vec![0u8; 64 << 10];
        let mut written = 0;
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(error) if error.kind() == std::io::ErrorKind::StorageFull => break,
                Err(error) => panic!("filling {}: {error}", path.display()),
            }
        }
        written
    }

    #[tokio::test]
    async fn below_the_reserve_creates_and_updates_are_refused_and_deletes_accepted() {
        let tmpfs = Tmpfs::mount("16m");
        let config = EmbeddedConfig {
            reserve_bytes: 4 << 20,
            ..EmbeddedConfig::new(tmpfs.path("store.redb"))
        };
        let store = EmbeddedStore::open(config).expect("open");
        let kept = store.create("/kept", text("v")).await.expect("create");
        let gone = store.create("/gone", text("v")).await.expect("create");

        // Leave about 2 MiB free: below the reserve, above what a commit needs.
        let free = file::free_bytes(&tmpfs.path("store.redb")).expect("statvfs");
        std::fs::write(tmpfs.path("filler"), vec![0u8; (free - (2 << 20)) as usize])
            .expect("write the filler");

        let refused = store.create("/new", text("v")).await;
        let Err(StorageError::Internal(message)) = &refused else {
            panic!("a create below the reserve: {refused:?}");
        };
        assert!(
            message.starts_with("no space left on device: ") && message.contains("store.redb"),
            "{message}"
        );
        let refused = store.update("/kept", text("w"), kept.mod_revision).await;
        assert!(
            matches!(refused, Err(StorageError::Internal(_))),
            "{refused:?}"
        );
        let (_, deleted) = store
            .delete("/gone", Some(gone.mod_revision))
            .await
            .expect("a delete goes through below the reserve");
        assert_eq!(deleted.key, "/gone");
        let (_, read) = store.get("/kept").await.expect("reads are served");
        assert_eq!(read.map(|kv| kv.value), Some(text("v")));

        std::fs::remove_file(tmpfs.path("filler")).expect("free the space");
        store
            .create("/new", text("v"))
            .await
            .expect("a create once space is freed");
    }

    #[tokio::test]
    async fn a_disk_filled_under_the_store_fails_writes_and_the_store_recovers_once_space_is_freed()
    {
        let tmpfs = Tmpfs::mount("8m");
        let path = tmpfs.path("store.redb");
        // No reserve: the disk fills under redb's own writes.
        let config = EmbeddedConfig {
            reserve_bytes: 0,
            ..EmbeddedConfig::new(&path)
        };
        let store = EmbeddedStore::open(config.clone()).expect("open");
        // Room to free later.
        std::fs::write(tmpfs.path("spare"), vec![0u8; 1 << 20]).expect("write the spare file");

        let value = |i: usize| Bytes::from(vec![(i % 251) as u8; 64 << 10]);
        let mut acknowledged = Vec::new();
        let failure = loop {
            let i = acknowledged.len();
            assert!(i < 1000, "8 MiB took more than 1000 writes of 64 KiB");
            match store.create(&format!("/fill/{i:04}"), value(i)).await {
                Ok(kv) => acknowledged.push(kv),
                Err(error) => break error,
            }
        };
        let StorageError::Internal(message) = &failure else {
            panic!("the write that found the disk full: {failure:?}");
        };
        assert!(
            message.starts_with("no space left on device: "),
            "{message}"
        );
        // Whatever slack is left goes too.
        fill(&tmpfs.path("filler"));
        let again = store.create("/fill/again", text("v")).await;
        assert!(
            matches!(&again, Err(StorageError::Internal(m)) if m.contains("no space left on device")),
            "{again:?}"
        );
        let head = store
            .current_revision()
            .await
            .expect("revision from memory");
        assert_eq!(head, acknowledged.last().expect("some writes").mod_revision);

        std::fs::remove_file(tmpfs.path("spare")).expect("free the space");
        std::fs::remove_file(tmpfs.path("filler")).expect("free the space");
        let deadline = Instant::now() + DEADLINE;
        let created = loop {
            match store.create("/after", text("v")).await {
                Ok(kv) => break kv,
                Err(error) => {
                    assert!(
                        Instant::now() < deadline,
                        "no write accepted after freeing: {error}"
                    );
                    tokio::time::sleep(writer::REOPEN_INTERVAL / 4).await;
                }
            }
        };
        assert!(created.mod_revision > head);
        for kv in &acknowledged {
            let (_, read) = store.get(&kv.key).await.expect("get");
            assert_eq!(read.as_ref(), Some(kv), "{} after recovery", kv.key);
        }
        store.close().await.expect("close");

        let store = EmbeddedStore::open(config).expect("the file opens again");
        for kv in acknowledged.iter().chain([&created]) {
            let (_, read) = store.get(&kv.key).await.expect("get");
            assert_eq!(read.as_ref(), Some(kv), "{} after reopening", kv.key);
        }
        store.close().await.expect("close");
    }
}
