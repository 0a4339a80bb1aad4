//! The state every request handler shares: storage, the watch cache, the resource registry and
//! the security settings.

use std::sync::{Arc, RwLock};

use apimachinery::registry::{Registry, ResourceInfo};
use apimachinery::status::StatusError;
use bytes::Bytes;
use serde_json::Value;

use crate::allocator::ServiceRanges;
use crate::response::storage_error;
use crate::security::Security;
use crate::storage::{Revision, Store};
use crate::watch_cache::{CachedObject, WatchCache};

/// Shared server state.
pub struct ApiState {
    /// The storage backend. Only the API server touches it.
    store: Arc<dyn Store>,
    /// The watch cache that serves reads.
    cache: Arc<WatchCache>,
    /// Where Services get their cluster IPs and node ports.
    pub services: ServiceRanges,
    registry: RwLock<Arc<Registry>>,
    shutdown: tokio::sync::watch::Sender<bool>,
    security: Arc<Security>,
}

impl ApiState {
    /// State over a store and a cache, serving the built-in kinds under `security` (which the
    /// caller always states: [`Security::disabled`] is asked for, never fallen back to).
    pub fn new(
        store: Arc<dyn Store>,
        cache: Arc<WatchCache>,
        services: ServiceRanges,
        security: Arc<Security>,
    ) -> Arc<Self> {
        Arc::new(ApiState {
            store,
            cache,
            services,
            registry: RwLock::new(Arc::new(Registry::builtin())),
            shutdown: tokio::sync::watch::channel(false).0,
            security,
        })
    }

    /// Authentication, authorization, audit and limits in force.
    pub fn security(&self) -> &Security {
        &self.security
    }

    /// The storage backend.
    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// The watch cache that serves reads.
    pub fn cache(&self) -> &Arc<WatchCache> {
        &self.cache
    }

    /// The registry now in force.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the registry (CRDs changed).
    pub fn set_registry(&self, registry: Registry) {
        *self.registry.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(registry);
    }

    /// Tells long-running requests (watches) to end: the server is shutting down.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Resolves when the server begins shutting down.
    pub fn shutting_down(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.shutdown.subscribe();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }

    /// Reads one object straight from storage (writes need its exact revision).
    pub async fn read_stored(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<CachedObject>, StatusError> {
        let key = info.key(namespace, name);
        let (_, kv) = self
            .store
            .get(&key)
            .await
            .map_err(|e| storage_error(e, &info.group, &info.plural, name))?;
        kv.map(|kv| {
            CachedObject::from_kv(&kv)
                .map_err(|e| storage_error(e, &info.group, &info.plural, name))
        })
        .transpose()
    }

    /// Waits until the watch cache has every write acknowledged so far, so that a read sees
    /// the caller's own writes.
    pub async fn sync_cache(&self) -> Result<Revision, StatusError> {
        let rev = self
            .store
            .current_revision()
            .await
            .map_err(|e| storage_error(e, "", "", ""))?;
        self.cache
            .wait_for(rev)
            .await
            .map_err(|e| StatusError::new(apimachinery::status::Reason::Timeout, e.to_string()))?;
        Ok(rev)
    }
}

/// Serializes an object for storage: `resourceVersion` is not stored (the revision is).
pub fn encode(object: &Value) -> Bytes {
    let mut object = object.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    Bytes::from(serde_json::to_vec(&object).unwrap_or_default())
}
