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
use crate::watch_cache::WatchCache;

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
    ) -> Result<Option<StoredObject>, StatusError> {
        let key = info.key(namespace, name);
        let (_, kv) = self
            .store
            .get(&key)
            .await
            .map_err(|e| storage_error(e, &info.group, &info.plural, name))?;
        kv.map(|kv| {
            crate::watch_cache::decode_object(&kv.key, &kv.value, kv.mod_revision)
                .map(|object| StoredObject {
                    mod_revision: kv.mod_revision,
                    object,
                })
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

/// An object as storage has it, for a write to compare-and-swap against.
pub struct StoredObject {
    /// Revision of the last write.
    pub mod_revision: Revision,
    /// The object with `metadata.resourceVersion` set.
    pub object: Value,
}

/// Serializes an object for storage: `resourceVersion` is not stored (the revision is).
pub fn encode(object: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(&WithoutResourceVersion(object)).unwrap_or_default())
}

/// Serializes an object as it is but for `metadata.resourceVersion` (without copying it).
struct WithoutResourceVersion<'a>(&'a Value);

impl serde::Serialize for WithoutResourceVersion<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Value::Object(map) = self.0 else {
            return self.0.serialize(s);
        };
        let mut out = s.serialize_map(Some(map.len()))?;
        for (k, v) in map {
            match v {
                Value::Object(meta) if k == "metadata" => {
                    let kept = meta.iter().filter(|(k, _)| *k != "resourceVersion");
                    out.serialize_entry(k, &Entries(kept))?;
                }
                _ => out.serialize_entry(k, v)?,
            }
        }
        out.end()
    }
}

/// A map's entries, serialized as a map.
struct Entries<I>(I);

impl<'a, I: Iterator<Item = (&'a String, &'a Value)> + Clone> serde::Serialize for Entries<I> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_form_leaves_out_only_the_resource_version() {
        let object = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "resourceVersion": "12", "labels": {"resourceVersion": "x"}},
            "data": {"resourceVersion": "kept"}
        });
        let stored: Value = serde_json::from_slice(&encode(&object)).unwrap();
        let mut want = object.clone();
        want["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("resourceVersion");
        assert_eq!(stored, want);
        assert_eq!(
            String::from_utf8(encode(&want).to_vec()).unwrap(),
            serde_json::to_string(&want).unwrap(),
            "same bytes, same key order"
        );
    }
}
