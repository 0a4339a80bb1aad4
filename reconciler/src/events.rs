//! `core/v1` Events, written in the background as client-go's event broadcaster does: the
//! scheduler and every controller report what they did through a [`Recorder`]; the Event
//! itself is `apimachinery::event`'s, as the node agents write it.
//!
//! Events go through a bounded channel to one writer task with a few requests in flight; when
//! the channel is full an Event is dropped (and counted) rather than slowing the component
//! down. A repeat (same object, reason and message) bumps the `count` and `lastTimestamp` of
//! the first one instead of creating another, as client-go's event correlator does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use apimachinery::event::{EventType, Record};
use apimachinery::event::{Reporter, new_event};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::mpsc;

/// How many Events may wait.
const CAPACITY: usize = 20_000;
/// Requests in flight.
const IN_FLIGHT: usize = 8;
/// Events remembered for aggregation before the memory starts over.
const REMEMBERED: usize = 10_000;

/// (namespace, object uid, reason, message) → (Event name, count).
pub(crate) type Recent = Mutex<HashMap<(String, String, String, String), (String, i32)>>;

/// The sending side; cheap to clone.
#[derive(Clone, Debug)]
pub struct Recorder {
    tx: mpsc::Sender<Record>,
    dropped: Arc<AtomicU64>,
}

impl Recorder {
    /// Starts the writer task, reporting as `component` (`source.component`) and `instance`.
    pub fn start(client: Client, component: String, instance: String) -> Recorder {
        let (tx, rx) = mpsc::channel(CAPACITY);
        tokio::spawn(write_all(client, component, instance, rx));
        Recorder {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Queues an Event, dropping it if the writer is too far behind.
    pub fn send(&self, record: Record) {
        if self.tx.try_send(record).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queues an Event about `object`.
    pub fn publish<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        message: String,
    ) {
        self.send(Record {
            regarding: reference(object),
            type_,
            reason: reason.into(),
            action: action.into(),
            message,
        });
    }

    /// Events dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// A reference to `object` for `involvedObject`.
pub fn reference<K: Resource<DynamicType = ()>>(object: &K) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: Some(object.name_any()),
        namespace: object.namespace(),
        uid: object.uid(),
        resource_version: object.resource_version(),
        ..ObjectReference::default()
    }
}

async fn write_all(
    client: Client,
    component: String,
    instance: String,
    rx: mpsc::Receiver<Record>,
) {
    let stream = stream_of(rx);
    let recent: Recent = Mutex::new(HashMap::new());
    stream
        .for_each_concurrent(IN_FLIGHT, |record| {
            let (client, component, instance) = (client.clone(), &component, &instance);
            let recent = &recent;
            async move {
                if let Err(e) = write(client, component, instance, recent, record).await {
                    tracing::debug!(error = %e, "event not written");
                }
            }
        })
        .await;
}

/// The receiver as a stream.
pub(crate) fn stream_of<T>(mut rx: mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Writes one Event now (or bumps the count of its first occurrence).
pub(crate) async fn write(
    client: Client,
    component: &str,
    instance: &str,
    recent: &Recent,
    record: Record,
) -> Result<(), kube::Error> {
    let now = Time(jiff::Timestamp::now());
    let namespace = record
        .regarding
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let events = Api::<Event>::namespaced(client, &namespace);
    let key = (
        namespace.clone(),
        record.regarding.uid.clone().unwrap_or_default(),
        record.reason.clone(),
        record.message.clone(),
    );
    let seen = recent.lock().ok().and_then(|r| r.get(&key).cloned());
    if let Some((name, count)) = seen {
        let patch = json!({"count": count + 1, "lastTimestamp": now});
        match events
            .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => {
                if let Ok(mut r) = recent.lock() {
                    r.insert(key, (name, count + 1));
                }
                return Ok(());
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let reporter = Reporter {
        component: component.into(),
        instance: instance.into(),
        host: None,
    };
    let event = new_event(record, &reporter, now.0);
    let created = events.create(&PostParams::default(), &event).await?;
    if let (Some(name), Ok(mut r)) = (created.metadata.name, recent.lock()) {
        if r.len() >= REMEMBERED {
            r.clear();
        }
        r.insert(key, (name, 1));
    }
    Ok(())
}
