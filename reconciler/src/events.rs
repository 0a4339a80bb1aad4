//! `core/v1` Events, written in the background as client-go's event broadcaster does: the
//! scheduler and every controller report what they did through a [`Recorder`].
//!
//! Events go through a bounded channel to one writer task with a few requests in flight; when
//! the channel is full an Event is dropped (and counted) rather than slowing the component
//! down. A repeat (same object, reason and message) bumps the `count` and `lastTimestamp` of
//! the first one instead of creating another, as client-go's event correlator does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
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

/// `Normal` or `Warning`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something went wrong.
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// One Event to write.
#[derive(Clone, Debug)]
pub struct Record {
    /// The object the Event is about.
    pub regarding: ObjectReference,
    /// `Normal` or `Warning`.
    pub type_: EventType,
    /// Kubernetes' reason (`Scheduled`, `ScalingReplicaSet`, `SuccessfulCreate`, ...).
    pub reason: String,
    /// What was done (`Binding`, `Scaling`, `Create`, ...).
    pub action: String,
    /// The message, in Kubernetes' words.
    pub message: String,
}

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
    let event = Event {
        metadata: ObjectMeta {
            generate_name: Some(format!(
                "{}.",
                record.regarding.name.as_deref().unwrap_or("event")
            )),
            namespace: Some(namespace),
            ..ObjectMeta::default()
        },
        involved_object: record.regarding,
        reason: Some(record.reason),
        message: Some(record.message),
        type_: Some(record.type_.as_str().into()),
        count: Some(1),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        source: Some(EventSource {
            component: Some(component.into()),
            host: None,
        }),
        reporting_component: Some(component.into()),
        reporting_instance: Some(instance.into()),
        action: Some(record.action),
        ..Event::default()
    };
    let created = events.create(&PostParams::default(), &event).await?;
    if let (Some(name), Ok(mut r)) = (created.metadata.name, recent.lock()) {
        if r.len() >= REMEMBERED {
            r.clear();
        }
        r.insert(key, (name, 1));
    }
    Ok(())
}
