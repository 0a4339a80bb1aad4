//! Conversion between a served version and the stored form, for the resources whose storage
//! is another group's: `events.k8s.io/v1` Events are stored as `core/v1` Events (Kubernetes
//! keeps one storage for both and converts), so each is read, written and watched in its own
//! field names. Every other resource is served as stored.

use std::borrow::Cow;

use apimachinery::registry::ResourceInfo;
use bytes::Bytes;
use serde_json::Value;

use crate::watch_cache::CachedObject;

fn is_events_v1(info: &ResourceInfo) -> bool {
    info.group == "events.k8s.io" && info.storage_group.is_some()
}

/// A stored object as `info`'s version serves it.
pub fn served<'a>(info: &ResourceInfo, stored: &'a Value) -> Cow<'a, Value> {
    if is_events_v1(info) {
        Cow::Owned(apimachinery::event::to_events_v1(stored))
    } else {
        Cow::Borrowed(stored)
    }
}

/// The JSON of a cached object as `info`'s version serves it.
pub fn served_bytes(info: &ResourceInfo, cached: &CachedObject) -> Bytes {
    if is_events_v1(info) {
        let v = apimachinery::event::to_events_v1(&cached.object);
        Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
    } else {
        cached.bytes.clone()
    }
}

/// An object written through `info`'s version, in the form it is stored in.
pub fn stored(info: &ResourceInfo, served: Value) -> Value {
    if is_events_v1(info) {
        apimachinery::event::from_events_v1(&served)
    } else {
        served
    }
}
