//! The etcd backend: the [`Store`] contract on an etcd v3 cluster through `etcd-client`.
//!
//! # Layout
//! - `watch`: the watch streams (an etcd watch per call, progress on demand, transparent
//!   re-watch after a lost connection);
//! - `compactor`: periodic compaction coordinated between every API server on the cluster.
//!
//! # Mapping
//! Revisions are etcd's revisions, so resourceVersions mean the same on every API server of the
//! cluster. Creates, updates and conditional deletes are single transactions comparing
//! `create_revision` / `mod_revision`; the failure branch reads the key so that the error names
//! what was found. A [`Store::list`] without a limit reads page by page at the revision of the
//! first page (one consistent snapshot whatever its size). Reads are linearizable.
//!
//! # Compaction
//! The trait's `compact(r)` forgets history *at and before* `r`; that is etcd's compaction at
//! `r`: etcd keeps the state as of `r` (so the events after `r` still carry their previous
//! values) but not the value each key had before `r`, so the event *at* `r` has lost its
//! previous value. A watch after `a` therefore opens etcd's watch at `a` (not `a + 1`) and skips
//! the event at `a`: etcd refuses it exactly when `a` is before the compaction point, and
//! [`StorageError::Compacted`] names etcd's compaction revision. Like the embedded store,
//! `compact` is clamped to the current revision, and compacting to an older revision than the
//! compaction point changes nothing.
//!
//! # Failures
//! Every call has a deadline ([`EtcdConfig::request_timeout`]); reads (which change nothing) are
//! retried within it when a member is unreachable, so the loss of one member of a cluster costs
//! reads nothing. A write that fails or times out is reported as [`StorageError::Unavailable`]
//! and is *not* retried: it may or may not have been applied (as with any remote store), but
//! one that returned `Ok` was committed by a quorum.

mod compactor;
mod watch;

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, KvClient, Txn, TxnOp,
    TxnOpResponse, TxnResponse,
};
use tokio::sync::watch as signal;

pub use self::compactor::{COMPACTION_KEY, Compactor};
use crate::storage::{KeyValue, ListResult, Revision, StorageError, Store, WatchStream};

/// Largest gRPC message accepted from etcd: pages of large values and watch batches can be far
/// above tonic's 4 MiB default.
const MAX_MESSAGE: usize = 1 << 30;
/// Keys per page when [`Store::list`] reads without a limit.
const PAGE: i64 = 500;
/// First pause before a read is retried.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// How to reach an etcd cluster. [`EtcdConfig::new`] gives the defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client endpoints, `host:port` (or `http://host:port`).
    pub endpoints: Vec<String>,
    /// Deadline of every call, retries included. Default 5 s.
    pub request_timeout: Duration,
    /// Deadline of one connection attempt to a member. Default 2 s.
    pub connect_timeout: Duration,
    /// How often to compact history; `None` never compacts. The API servers sharing a cluster
    /// coordinate through [`COMPACTION_KEY`], so each interval compacts once. Default 5 min, as
    /// kube-apiserver.
    pub compaction_interval: Option<Duration>,
}

impl EtcdConfig {
    /// The defaults for these endpoints.
    pub fn new(endpoints: Vec<String>) -> Self {
        EtcdConfig {
            endpoints,
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            compaction_interval: Some(Duration::from_secs(300)),
        }
    }

    /// Reads a store URL, `etcd://host:port[,host:port...]`.
    pub fn from_url(url: &str) -> Result<Self, StorageError> {
        let invalid = |why: &str| {
            StorageError::Internal(format!(
                "invalid etcd store {url:?}: {why} (expected etcd://HOST:PORT[,HOST:PORT...])"
            ))
        };
        let rest = url
            .strip_prefix("etcd://")
            .ok_or_else(|| invalid("it does not start with etcd://"))?;
        let mut endpoints = Vec::new();
        for endpoint in rest.split(',') {
            let endpoint = endpoint.trim().trim_end_matches('/');
            let (host, port) = endpoint
                .rsplit_once(':')
                .ok_or_else(|| invalid(&format!("endpoint {endpoint:?} has no port")))?;
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(invalid(&format!("endpoint {endpoint:?} is not HOST:PORT")));
            }
            endpoints.push(endpoint.to_owned());
        }
        Ok(EtcdConfig::new(endpoints))
    }
}

/// The etcd [`Store`]. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    config: EtcdConfig,
    /// The highest revision any response has shown; watches behind it ask etcd for progress.
    head: signal::Sender<Revision>,
    /// Whether etcd answers progress requests only once a watch has caught up (3.4.25, 3.5.8
    /// and later).
    progress_on_demand: bool,
    /// Stops the compactor when the last clone is dropped.
    _compactor: std::sync::Arc<Option<AbortOnDrop>>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.config.endpoints)
            .field("head", &*self.head.borrow())
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects to the cluster and checks that it answers; starts the compactor when
    /// [`EtcdConfig::compaction_interval`] is set.
    pub async fn connect(config: EtcdConfig) -> Result<Self, StorageError> {
        let options = ConnectOptions::new()
            .with_timeout(config.request_timeout)
            .with_connect_timeout(config.connect_timeout)
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
            .with_require_leader(true);
        let endpoints = config.endpoints.clone();
        let connect = Client::connect(endpoints, Some(options));
        let client = tokio::time::timeout(config.request_timeout, connect)
            .await
            .map_err(|_| unreachable_cluster(&config))?
            .map_err(|e| {
                StorageError::Unavailable(format!(
                    "cannot connect to etcd at {}: {e}",
                    config.endpoints.join(",")
                ))
            })?;
        let version =
            tokio::time::timeout(config.request_timeout, client.maintenance_client().status())
                .await
                .map_err(|_| unreachable_cluster(&config))?
                .map_err(map_error)?
                .version()
                .to_owned();
        let progress_on_demand = reliable_progress(&version);
        tracing::info!(%version, progress_on_demand, "connected to etcd");
        let mut store = EtcdStore {
            client,
            head: signal::channel(0).0,
            progress_on_demand,
            config,
            _compactor: std::sync::Arc::new(None),
        };
        // The compactor's own clone is taken before the handle is stored, so it does not keep
        // itself alive.
        store.current_revision().await.map_err(|e| match e {
            StorageError::Unavailable(why) => StorageError::Unavailable(format!(
                "etcd at {} does not answer: {why}",
                store.config.endpoints.join(",")
            )),
            other => other,
        })?;
        if let Some(interval) = store.config.compaction_interval {
            let compactor = Compactor::new(store.clone());
            let task = tokio::spawn(compactor.run(interval));
            store._compactor = std::sync::Arc::new(Some(AbortOnDrop(task)));
        }
        Ok(store)
    }

    /// The configuration the store was connected with.
    pub fn config(&self) -> &EtcdConfig {
        &self.config
    }

    fn kv(&self) -> KvClient {
        self.client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    /// Notes a revision seen in a response.
    fn saw(&self, revision: Revision) {
        self.head.send_if_modified(|head| {
            let newer = revision > *head;
            if newer {
                *head = revision;
            }
            newer
        });
    }

    /// Runs a write once, within the deadline.
    async fn write<T>(
        &self,
        call: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, StorageError> {
        tokio::time::timeout(self.config.request_timeout, call)
            .await
            .map_err(|_| self.timed_out())?
            .map_err(map_error)
    }

    /// Runs a read, retrying while etcd is unreachable, within the deadline.
    async fn read<T, F>(&self, mut call: impl FnMut(KvClient) -> F) -> Result<T, StorageError>
    where
        F: Future<Output = Result<T, etcd_client::Error>>,
    {
        let attempts = async {
            let mut pause = RETRY_PAUSE;
            loop {
                match call(self.kv()).await.map_err(map_error) {
                    Err(StorageError::Unavailable(why)) => {
                        tracing::debug!(error = %why, "etcd read failed; retrying");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_millis(500));
                    }
                    other => return other,
                }
            }
        };
        tokio::time::timeout(self.config.request_timeout, attempts)
            .await
            .map_err(|_| self.timed_out())?
    }

    fn timed_out(&self) -> StorageError {
        StorageError::Unavailable(format!(
            "etcd at {} did not answer within {:?}",
            self.config.endpoints.join(","),
            self.config.request_timeout
        ))
    }

    async fn txn(&self, txn: Txn) -> Result<(Revision, TxnResponse), StorageError> {
        let mut kv = self.kv();
        let response = self.write(kv.txn(txn)).await?;
        let revision = header_revision(response.header())?;
        self.saw(revision);
        Ok((revision, response))
    }

    /// Compacts etcd itself at `revision` (history before it is dropped); an older revision
    /// than etcd's compaction point changes nothing.
    async fn compact_etcd(&self, revision: Revision) -> Result<(), StorageError> {
        let mut kv = self.kv();
        match self.write(kv.compact(revision, None)).await {
            Ok(_) | Err(StorageError::Compacted { .. }) => Ok(()),
            Err(other) => Err(other),
        }
    }
}

/// A background task that ends when this handle is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<(Revision, Option<KeyValue>), StorageError> {
        let mut response = self
            .read(|mut kv| async move { kv.get(key, None).await })
            .await?;
        let revision = header_revision(response.header())?;
        self.saw(revision);
        let kv = response
            .take_kvs()
            .into_iter()
            .next()
            .map(convert)
            .transpose()?;
        Ok((revision, kv))
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListResult, StorageError> {
        let end = prefix_end(prefix.as_bytes());
        let mut start = match start_after {
            Some(after) if after >= prefix => {
                let mut key = after.as_bytes().to_vec();
                key.push(0);
                key
            }
            _ => prefix.as_bytes().to_vec(),
        };
        let page = match i64::try_from(limit) {
            Ok(0) | Err(_) => PAGE,
            Ok(limit) => limit,
        };
        let mut revision = 0;
        let mut kvs = Vec::new();
        loop {
            let options = || {
                let options = GetOptions::new().with_range(end.clone()).with_limit(page);
                // Later pages read the snapshot of the first.
                if revision > 0 {
                    options.with_revision(revision)
                } else {
                    options
                }
            };
            let key = start.clone();
            let mut response = self
                .read(|mut kv| {
                    let (key, options) = (key.clone(), options());
                    async move { kv.get(key, Some(options)).await }
                })
                .await
                .map_err(|error| match error {
                    // A later page's snapshot was compacted away meanwhile.
                    StorageError::Compacted { .. } => StorageError::Compacted {
                        requested: revision,
                        compacted: revision,
                    },
                    other => other,
                })?;
            if revision == 0 {
                revision = header_revision(response.header())?;
                self.saw(revision);
            }
            let more = response.more();
            let page_kvs = response.take_kvs();
            if let Some(last) = page_kvs.last() {
                start = last.key().to_vec();
                start.push(0);
            }
            for kv in page_kvs {
                kvs.push(convert(kv)?);
            }
            if limit > 0 || !more {
                return Ok(ListResult {
                    revision,
                    kvs,
                    more,
                });
            }
        }
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, StorageError> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value.to_vec(), None)]);
        let (revision, response) = self.txn(txn).await?;
        if !response.succeeded() {
            return Err(StorageError::AlreadyExists {
                key: key.to_owned(),
            });
        }
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision: revision,
            mod_revision: revision,
        })
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
    ) -> Result<KeyValue, StorageError> {
        let txn = Txn::new()
            .when([
                Compare::create_revision(key, CompareOp::Greater, 0),
                Compare::mod_revision(key, CompareOp::Equal, expected),
            ])
            .and_then([
                TxnOp::put(key, value.to_vec(), None),
                TxnOp::get(key, Some(GetOptions::new().with_keys_only())),
            ])
            .or_else([TxnOp::get(key, Some(GetOptions::new().with_keys_only()))]);
        let (revision, response) = self.txn(txn).await?;
        let found = found_key(&response);
        if !response.succeeded() {
            return Err(mismatch(key, expected, found));
        }
        let create_revision = found.map(|(create, _)| create).ok_or_else(|| {
            StorageError::Internal(format!("etcd did not return {key} after an update"))
        })?;
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision,
            mod_revision: revision,
        })
    }

    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(Revision, KeyValue), StorageError> {
        let mut when = vec![Compare::create_revision(key, CompareOp::Greater, 0)];
        if let Some(expected) = expected {
            when.push(Compare::mod_revision(key, CompareOp::Equal, expected));
        }
        let txn = Txn::new()
            .when(when)
            .and_then([TxnOp::delete(
                key,
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, Some(GetOptions::new().with_keys_only()))]);
        let (revision, response) = self.txn(txn).await?;
        if !response.succeeded() {
            return Err(mismatch(key, expected.unwrap_or(0), found_key(&response)));
        }
        let prev = response.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Delete(mut delete) => delete.take_prev_kvs().into_iter().next(),
            _ => None,
        });
        let prev = prev.map(convert).transpose()?.ok_or_else(|| {
            StorageError::Internal(format!("etcd deleted {key} without its value"))
        })?;
        Ok((revision, prev))
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StorageError> {
        watch::start(self, prefix, after).await
    }

    async fn current_revision(&self) -> Result<Revision, StorageError> {
        let response = self
            .read(|mut kv| async move {
                kv.get(COMPACTION_KEY, Some(GetOptions::new().with_count_only()))
                    .await
            })
            .await?;
        let revision = header_revision(response.header())?;
        self.saw(revision);
        Ok(revision)
    }

    async fn compact(&self, revision: Revision) -> Result<(), StorageError> {
        let current = self.current_revision().await?;
        self.compact_etcd(revision.min(current)).await
    }
}

/// The create and mod revisions of the key a transaction read (keys only), if it exists.
fn found_key(response: &TxnResponse) -> Option<(Revision, Revision)> {
    response.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(get) => get
            .kvs()
            .first()
            .map(|kv| (kv.create_revision(), kv.mod_revision())),
        _ => None,
    })
}

/// The error of a failed compare-and-swap: the key is missing or has another revision.
fn mismatch(key: &str, expected: Revision, found: Option<(Revision, Revision)>) -> StorageError {
    match found {
        None => StorageError::NotFound {
            key: key.to_owned(),
        },
        Some((_, actual)) => StorageError::Conflict {
            key: key.to_owned(),
            expected,
            actual,
        },
    }
}

/// The revision in a response header.
fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Result<Revision, StorageError> {
    header
        .map(|h| h.revision())
        .ok_or_else(|| StorageError::Internal("etcd answered without a header".to_owned()))
}

/// An etcd entry as a [`KeyValue`]; keys must be UTF-8 (every key gitplane writes is).
fn convert(kv: etcd_client::KeyValue) -> Result<KeyValue, StorageError> {
    let (create_revision, mod_revision) = (kv.create_revision(), kv.mod_revision());
    let (key, value) = kv.into_key_value();
    let key = String::from_utf8(key)
        .map_err(|e| StorageError::Internal(format!("etcd key is not UTF-8: {e}")))?;
    Ok(KeyValue {
        key,
        value: Bytes::from(value),
        create_revision,
        mod_revision,
    })
}

/// Whether an etcd version answers progress requests only after the events before them (fixed
/// in 3.4.25 and 3.5.8; etcd issue 15220).
fn reliable_progress(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor, patch) = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    match (major, minor) {
        (3, 4) => patch >= 25,
        (3, 5) => patch >= 8,
        (3, m) => m >= 6,
        (m, _) => m > 3,
    }
}

/// The end of the range of keys starting with `prefix` (etcd's `range_end`).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte is 0xff (or the prefix is empty): the range runs to the end of the keyspace.
    vec![0]
}

/// Maps an etcd-client error to a storage error.
fn map_error(error: etcd_client::Error) -> StorageError {
    use tonic::Code;
    match error {
        etcd_client::Error::GRpcStatus(status) => {
            let message = status.message();
            if message.contains("required revision has been compacted") {
                return StorageError::Compacted {
                    requested: 0,
                    compacted: 0,
                };
            }
            match status.code() {
                Code::Unavailable
                | Code::DeadlineExceeded
                | Code::Cancelled
                | Code::Aborted
                | Code::Unknown => StorageError::Unavailable(format!("etcd: {message}")),
                _ => StorageError::Internal(format!("etcd: {message}")),
            }
        }
        etcd_client::Error::TransportError(e) => {
            StorageError::Unavailable(format!("etcd transport: {e}"))
        }
        etcd_client::Error::IoError(e) => StorageError::Unavailable(format!("etcd I/O: {e}")),
        etcd_client::Error::WatchError(e) => StorageError::Unavailable(format!("etcd watch: {e}")),
        other => StorageError::Internal(format!("etcd: {other}")),
    }
}

/// The error for a cluster that cannot be reached at all.
fn unreachable_cluster(config: &EtcdConfig) -> StorageError {
    StorageError::Unavailable(format!(
        "cannot connect to etcd at {} within {:?}",
        config.endpoints.join(","),
        config.request_timeout
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_prefix_end(prefix: &[u8], want: &[u8]) {
        assert_eq!(prefix_end(prefix), want, "prefix_end({prefix:?})");
    }

    #[test]
    fn the_range_end_of_a_prefix_increments_its_last_byte() {
        check_prefix_end(b"/registry/", b"/registry0");
        check_prefix_end(b"a", b"b");
        check_prefix_end(b"a\xff", b"b");
        check_prefix_end(b"\xff\xff", b"\0");
        check_prefix_end(b"", b"\0");
    }

    #[test]
    fn progress_requests_are_trusted_from_the_etcd_versions_that_fixed_them() {
        for (version, want) in [
            ("3.4.23", false),
            ("3.4.25", true),
            ("3.5.7", false),
            ("3.5.8", true),
            ("3.6.0", true),
            ("4.0.0", true),
            ("3.3.27", false),
            ("garbage", false),
        ] {
            assert_eq!(reliable_progress(version), want, "{version}");
        }
    }

    fn check_url(url: &str, want: Result<&[&str], ()>) {
        let got = EtcdConfig::from_url(url)
            .map(|c| c.endpoints)
            .map_err(|_| ());
        let want = want.map(|eps| eps.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(got, want, "from_url({url:?})");
    }

    #[test]
    fn store_urls_name_one_or_more_endpoints() {
        check_url("etcd://127.0.0.1:2379", Ok(&["127.0.0.1:2379"]));
        check_url(
            "etcd://10.0.0.1:2379,10.0.0.2:2379/",
            Ok(&["10.0.0.1:2379", "10.0.0.2:2379"]),
        );
        check_url("etcd://host", Err(()));
        check_url("etcd://:2379", Err(()));
        check_url("etcd://h:port", Err(()));
        check_url("http://127.0.0.1:2379", Err(()));
        check_url("etcd://", Err(()));
    }
}

/// Tests against real etcd processes on loopback.
#[cfg(test)]
mod etcd_tests {
    use std::time::Duration;

    use etcd_process::EtcdCluster;
    use futures::StreamExt;

    use super::compactor::Round;
    use super::*;
    use crate::storage::{WatchEvent, conformance};

    const DEADLINE: Duration = Duration::from_secs(10);

    fn cluster(size: usize) -> EtcdCluster {
        EtcdCluster::start(size).unwrap_or_else(|e| panic!("cannot start etcd: {e}"))
    }

    async fn connect(cluster: &EtcdCluster) -> EtcdStore {
        let config = EtcdConfig {
            compaction_interval: None,
            ..EtcdConfig::new(cluster.endpoints())
        };
        EtcdStore::connect(config).await.expect("connect to etcd")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_etcd_store_passes_the_conformance_suite_on_one_member() {
        let etcd = cluster(1);
        conformance::run_all(&connect(&etcd).await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_etcd_store_passes_the_conformance_suite_on_three_members() {
        let etcd = cluster(3);
        conformance::run_all(&connect(&etcd).await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_compaction_round_is_won_by_exactly_one_of_the_servers() {
        let etcd = cluster(1);
        let mut a = Compactor::new(connect(&etcd).await);
        let mut b = Compactor::new(connect(&etcd).await);
        let store = connect(&etcd).await;
        let write = |i: usize| {
            let store = store.clone();
            async move {
                store
                    .create(&format!("/registry/x/{i}"), Bytes::from_static(b"{}"))
                    .await
                    .expect("create")
            }
        };
        assert_eq!(
            a.round().await,
            Ok(Round::Won(None)),
            "first round: nothing to compact yet"
        );
        assert_eq!(
            b.round().await,
            Ok(Round::Lost),
            "the same round, already won"
        );
        let first = write(1).await;
        write(2).await;
        // Both saw the same version now; whoever goes first wins and compacts at the revision
        // it saw last round.
        let won = b.round().await.expect("round");
        assert!(
            matches!(won, Round::Won(Some(r)) if r >= first.mod_revision - 1),
            "{won:?}"
        );
        assert_eq!(a.round().await, Ok(Round::Lost), "one compaction per round");
        let Round::Won(Some(at)) = won else {
            unreachable!()
        };
        let result = store.watch("/registry/", at - 2).await.expect("watch");
        let first_item = tokio::time::timeout(DEADLINE, result.into_future()).await;
        match first_item.expect("answer in time").0 {
            Some(Err(StorageError::Compacted { compacted, .. })) => {
                assert_eq!(
                    compacted, at,
                    "the compaction point is where etcd compacted"
                )
            }
            other => panic!("a watch from before the compaction got {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_watch_learns_of_writes_outside_its_prefix_through_progress() {
        let etcd = cluster(1);
        let store = connect(&etcd).await;
        let start = store.current_revision().await.expect("revision");
        let mut stream = store.watch("/registry/", start).await.expect("watch");
        let other = store
            .create("/elsewhere/key", Bytes::from_static(b"v"))
            .await
            .expect("create");
        let event = tokio::time::timeout(DEADLINE, stream.next()).await;
        assert_eq!(
            event.expect("progress in time"),
            Some(Ok(WatchEvent::Progress {
                revision: other.mod_revision
            }))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_watch_goes_on_when_a_member_it_may_use_is_killed() {
        let mut etcd = cluster(3);
        let store = connect(&etcd).await;
        let start = store.current_revision().await.expect("revision");
        let mut stream = store.watch("/w/", start).await.expect("watch");
        let mut want = Vec::new();
        let deadline = std::time::Instant::now() + DEADLINE;
        for i in 0..3 {
            if i == 1 {
                etcd.kill(0);
            }
            let created = loop {
                match store
                    .create(&format!("/w/{i}"), Bytes::from_static(b"v"))
                    .await
                {
                    Ok(kv) => break kv,
                    Err(StorageError::AlreadyExists { key }) => {
                        break store.get(&key).await.expect("get").1.expect("exists");
                    }
                    Err(StorageError::Unavailable(why)) => {
                        assert!(
                            std::time::Instant::now() < deadline,
                            "writes stopped: {why}"
                        );
                        continue;
                    }
                    Err(other) => panic!("create failed: {other}"),
                }
            };
            want.push(created.mod_revision);
        }
        let mut seen = Vec::new();
        while seen.len() < want.len() {
            match tokio::time::timeout(DEADLINE, stream.next()).await {
                Ok(Some(Ok(WatchEvent::Put { kv, .. }))) => seen.push(kv.mod_revision),
                Ok(Some(Ok(_))) => {}
                other => panic!("the watch ended after {seen:?}: {other:?}"),
            }
        }
        assert_eq!(
            seen, want,
            "every event once, in order, across the member's death"
        );
    }
}
