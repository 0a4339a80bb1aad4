//! Reports scheduling outcomes to the API in the background: `Scheduled`, `FailedScheduling`
//! and `Preempted` Events, and the pod's `PodScheduled` condition and `nominatedNodeName`.
//!
//! Reports go through a bounded channel to one writer task with a few requests in flight; when
//! the channel is full a report is dropped (and counted) rather than slowing scheduling down,
//! as Kubernetes' event broadcaster does. A repeat of an Event (same pod, reason and message)
//! bumps the `count` and `lastTimestamp` of the first one instead of creating another, as
//! client-go's event correlator does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::mpsc;

use super::framework::PodInfo;

/// How many reports may wait.
const CAPACITY: usize = 20_000;
/// Requests in flight.
const IN_FLIGHT: usize = 8;
/// Events remembered for aggregation before the memory starts over.
const REMEMBERED: usize = 10_000;

/// (namespace, pod uid, reason, message) → (Event name, count).
type Recent = Mutex<HashMap<(String, String, &'static str, String), (String, i32)>>;

/// One thing to tell the API.
#[derive(Debug)]
pub enum Report {
    /// An Event about a pod.
    Event {
        /// The pod.
        pod: Arc<PodInfo>,
        /// `Normal` or `Warning`.
        kind: &'static str,
        /// `Scheduled`, `FailedScheduling`, `Preempted`.
        reason: &'static str,
        /// The message.
        message: String,
    },
    /// Set `PodScheduled=False` (reason `Unschedulable`) with a message.
    Unschedulable {
        /// The pod.
        pod: Arc<PodInfo>,
        /// The message.
        message: String,
    },
    /// Set `status.nominatedNodeName`.
    Nominated {
        /// The pod.
        pod: Arc<PodInfo>,
        /// The node.
        node: String,
    },
}

/// The sending side; cheap to clone.
#[derive(Clone, Debug)]
pub struct Reporter {
    tx: mpsc::Sender<Report>,
    dropped: Arc<AtomicU64>,
}

impl Reporter {
    /// Starts the writer task, reporting as `component` (`source.component`) and `instance`.
    pub fn start(client: Client, component: String, instance: String) -> Reporter {
        let (tx, rx) = mpsc::channel(CAPACITY);
        tokio::spawn(write_all(client, component, instance, rx));
        Reporter {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Queues a report, dropping it if the writer is too far behind.
    pub fn send(&self, report: Report) {
        if self.tx.try_send(report).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reports dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn write_all(
    client: Client,
    component: String,
    instance: String,
    rx: mpsc::Receiver<Report>,
) {
    let stream = tokio_stream_of(rx);
    let recent: Recent = Mutex::new(HashMap::new());
    stream
        .for_each_concurrent(IN_FLIGHT, |report| {
            let (client, component, instance) = (client.clone(), &component, &instance);
            let recent = &recent;
            async move {
                if let Err(e) = write(client, component, instance, recent, report).await {
                    tracing::debug!(error = %e, "report not written");
                }
            }
        })
        .await;
}

fn tokio_stream_of(mut rx: mpsc::Receiver<Report>) -> impl futures::Stream<Item = Report> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn write(
    client: Client,
    component: &str,
    instance: &str,
    recent: &Recent,
    report: Report,
) -> Result<(), kube::Error> {
    match report {
        Report::Event {
            pod,
            kind,
            reason,
            message,
        } => {
            let now = Time(jiff::Timestamp::now());
            let events = Api::<Event>::namespaced(client, &pod.namespace);
            let key = (
                pod.namespace.clone(),
                pod.uid.clone(),
                reason,
                message.clone(),
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
                    generate_name: Some(format!("{}.", pod.name)),
                    namespace: Some(pod.namespace.clone()),
                    ..ObjectMeta::default()
                },
                involved_object: ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(pod.name.clone()),
                    namespace: Some(pod.namespace.clone()),
                    uid: Some(pod.uid.clone()),
                    ..ObjectReference::default()
                },
                reason: Some(reason.into()),
                message: Some(message),
                type_: Some(kind.into()),
                count: Some(1),
                first_timestamp: Some(now.clone()),
                last_timestamp: Some(now),
                source: Some(k8s_openapi::api::core::v1::EventSource {
                    component: Some(component.into()),
                    host: None,
                }),
                reporting_component: Some(component.into()),
                reporting_instance: Some(instance.into()),
                action: Some(
                    if reason == "Scheduled" {
                        "Binding"
                    } else {
                        "Scheduling"
                    }
                    .into(),
                ),
                ..Event::default()
            };
            let created = events.create(&PostParams::default(), &event).await?;
            if let (Some(name), Ok(mut r)) = (created.metadata.name, recent.lock()) {
                if r.len() >= REMEMBERED {
                    r.clear();
                }
                r.insert(key, (name, 1));
            }
        }
        Report::Unschedulable { pod, message } => {
            let now = jiff::Timestamp::now().to_string();
            let patch = json!({"status": {"conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": message, "lastTransitionTime": now, "lastProbeTime": null
            }]}});
            Api::<Pod>::namespaced(client, &pod.namespace)
                .patch_status(&pod.name, &PatchParams::default(), &Patch::Strategic(patch))
                .await?;
        }
        Report::Nominated { pod, node } => {
            let patch = json!({"status": {"nominatedNodeName": node}});
            Api::<Pod>::namespaced(client, &pod.namespace)
                .patch_status(&pod.name, &PatchParams::default(), &Patch::Merge(patch))
                .await?;
        }
    }
    Ok(())
}
