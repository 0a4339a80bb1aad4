//! Conversion between a served version and the stored form, for the resources served in more
//! than one shape over one storage: `events.k8s.io/v1` Events are stored as `core/v1` Events
//! (Kubernetes keeps one storage for both and converts), and HorizontalPodAutoscalers are stored
//! as `autoscaling/v2` and served as v1 too (`apimachinery::autoscaling`), so each is read,
//! written and watched in its own field names. Every other resource is served as stored.

use std::borrow::Cow;

use apimachinery::registry::ResourceInfo;
use bytes::Bytes;
use serde_json::Value;

use crate::watch_cache::CachedObject;

fn is_events_v1(info: &ResourceInfo) -> bool {
    info.group == "events.k8s.io" && info.storage_group.is_some()
}

fn is_hpa(info: &ResourceInfo) -> bool {
    info.group == "autoscaling" && info.plural == "horizontalpodautoscalers" && !info.custom
}

/// The served form of `stored` when it differs from the stored one.
fn converted(info: &ResourceInfo, stored: &Value) -> Option<Value> {
    if is_events_v1(info) {
        Some(apimachinery::event::to_events_v1(stored))
    } else if is_hpa(info) && info.version == "v1" {
        Some(apimachinery::autoscaling::to_v1(stored))
    } else if is_hpa(info) && apimachinery::autoscaling::is_v1(stored) {
        // Stored as v1 by an older gitplane.
        Some(apimachinery::autoscaling::to_v2(stored))
    } else {
        None
    }
}

/// A stored object as `info`'s version serves it.
pub fn served<'a>(info: &ResourceInfo, stored: &'a Value) -> Cow<'a, Value> {
    match converted(info, stored) {
        Some(v) => Cow::Owned(v),
        None => Cow::Borrowed(stored),
    }
}

/// The JSON of a cached object as `info`'s version serves it.
pub fn served_bytes(info: &ResourceInfo, cached: &CachedObject) -> Bytes {
    match converted(info, &cached.object) {
        Some(v) => Bytes::from(serde_json::to_vec(&v).unwrap_or_default()),
        None => cached.bytes.clone(),
    }
}

/// An object written through `info`'s version, in the form it is stored in.
pub fn stored(info: &ResourceInfo, served: Value) -> Value {
    if is_events_v1(info) {
        apimachinery::event::from_events_v1(&served)
    } else if is_hpa(info) {
        apimachinery::autoscaling::to_v2(&served)
    } else {
        served
    }
}
