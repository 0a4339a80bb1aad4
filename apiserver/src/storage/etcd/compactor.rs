//! Periodic compaction of etcd's history, done once per interval however many API servers share
//! the cluster.
//!
//! The scheme is kube-apiserver's: every server runs a [`Compactor`], and each round is one
//! transaction on [`COMPACTION_KEY`] that succeeds only if the key's version is still the one
//! this server saw last round. Every server that saw the same version competes, exactly one
//! wins: it records the revision it saw one round ago and compacts etcd up to it; the others
//! learn the new version and try again next round. So history is kept for at least one interval
//! (a watch that started less than an interval ago can always resume) and compaction happens
//! once per interval, not once per server.

use std::time::Duration;

use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};

use super::EtcdStore;
use crate::storage::{Revision, StorageError};

/// The key whose version counts compaction rounds; its value is `{"revision": N}`, the revision
/// last compacted at.
///
/// It sits under `/registry/` (but under no resource's prefix, which all end in `/`) so that
/// every write gitplane makes reaches the watch caches as an event: on etcd versions without
/// reliable progress notifications on demand, a write outside the cached prefix would leave the
/// caches behind the store revision until etcd's next periodic notification.
pub const COMPACTION_KEY: &str = "/registry/gitplane.io/compaction";

/// What one round did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Round {
    /// This server won the round and compacted at the revision (none on its first win).
    Won(Option<Revision>),
    /// Another server won this round (or an earlier one this server had not seen).
    Lost,
}

/// One API server's side of the compaction scheme. States between rounds: the version of
/// [`COMPACTION_KEY`] seen last round, and the revision of the store then.
pub struct Compactor {
    store: EtcdStore,
    version: i64,
    revision: Revision,
}

impl Compactor {
    /// A compactor that has seen nothing yet.
    pub fn new(store: EtcdStore) -> Self {
        Compactor {
            store,
            version: 0,
            revision: 0,
        }
    }

    /// Runs a round every `interval`, forever (until the task is aborted).
    pub async fn run(mut self, interval: Duration) {
        loop {
            tokio::time::sleep(interval).await;
            match self.round().await {
                Ok(Round::Won(Some(revision))) => {
                    tracing::info!(revision, "compacted etcd history");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "etcd compaction round failed"),
            }
        }
    }

    /// One round: try to claim it, and compact at the revision of the last round when won.
    pub async fn round(&mut self) -> Result<Round, StorageError> {
        let txn = Txn::new()
            .when([Compare::version(
                COMPACTION_KEY,
                CompareOp::Equal,
                self.version,
            )])
            .and_then([TxnOp::put(
                COMPACTION_KEY,
                format!(r#"{{"revision":{}}}"#, self.revision),
                None,
            )])
            .or_else([TxnOp::get(COMPACTION_KEY, None)]);
        let (current, response) = self.store.txn(txn).await?;
        if !response.succeeded() {
            self.version = response
                .op_responses()
                .into_iter()
                .find_map(|op| match op {
                    TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.version()),
                    _ => None,
                })
                .unwrap_or(0);
            self.revision = current;
            return Ok(Round::Lost);
        }
        self.version += 1;
        let compact_at = std::mem::replace(&mut self.revision, current);
        if compact_at == 0 {
            return Ok(Round::Won(None));
        }
        self.store.compact_etcd(compact_at).await?;
        Ok(Round::Won(Some(compact_at)))
    }
}
