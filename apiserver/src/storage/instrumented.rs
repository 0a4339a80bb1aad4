//! A [`Store`] wrapper that times every operation into `etcd_request_duration_seconds` and
//! counts failures into `etcd_request_errors_total` (kube-apiserver's names, kept for the
//! embedded backend too, with `backend` telling them apart). An answer the caller expects
//! (a missing key, an existing one, a conflict, a compacted revision) is not a failure.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;

use super::{KeyValue, ListResult, Revision, StorageError, Store, WatchStream};

/// Times the calls to `inner`.
pub struct Instrumented {
    inner: Arc<dyn Store>,
    backend: &'static str,
}

impl Instrumented {
    /// Wraps `inner`, whose metrics say `backend` (`embedded`, `etcd`).
    pub fn new(inner: Arc<dyn Store>, backend: &'static str) -> Instrumented {
        telemetry::apiserver::metrics();
        Instrumented { inner, backend }
    }

    fn record<T>(
        &self,
        operation: &'static str,
        key: &str,
        started: Instant,
        result: &Result<T, StorageError>,
    ) {
        let failed = matches!(
            result,
            Err(StorageError::Unavailable(_) | StorageError::Internal(_))
        );
        telemetry::apiserver::metrics().storage(
            self.backend,
            operation,
            key,
            started.elapsed(),
            failed,
        );
    }
}

#[async_trait]
impl Store for Instrumented {
    async fn get(&self, key: &str) -> Result<(Revision, Option<KeyValue>), StorageError> {
        let started = Instant::now();
        let r = self.inner.get(key).await;
        self.record("get", key, started, &r);
        r
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListResult, StorageError> {
        let started = Instant::now();
        let r = self.inner.list(prefix, start_after, limit).await;
        self.record("list", prefix, started, &r);
        r
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, StorageError> {
        let started = Instant::now();
        let r = self.inner.create(key, value).await;
        self.record("create", key, started, &r);
        r
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
    ) -> Result<KeyValue, StorageError> {
        let started = Instant::now();
        let r = self.inner.update(key, value, expected).await;
        self.record("update", key, started, &r);
        r
    }

    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(Revision, KeyValue), StorageError> {
        let started = Instant::now();
        let r = self.inner.delete(key, expected).await;
        self.record("delete", key, started, &r);
        r
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StorageError> {
        let started = Instant::now();
        let r = self.inner.watch(prefix, after).await;
        self.record("watch", prefix, started, &r);
        r
    }

    async fn current_revision(&self) -> Result<Revision, StorageError> {
        let started = Instant::now();
        let r = self.inner.current_revision().await;
        self.record("current_revision", "/registry/", started, &r);
        r
    }

    async fn compact(&self, revision: Revision) -> Result<(), StorageError> {
        let started = Instant::now();
        let r = self.inner.compact(revision).await;
        self.record("compact", "/registry/", started, &r);
        r
    }

    async fn stale(&self, key: &str) -> Result<bool, StorageError> {
        self.inner.stale(key).await
    }
}
