//! Reports scheduling outcomes to the API in the background: `Scheduled`, `FailedScheduling`
//! and `Preempted` Events, and the pod's `PodScheduled` condition and `nominatedNodeName`.
//!
//! Reports go through a bounded channel to one writer task with a few requests in flight; when
//! the channel is full a report is dropped (and counted) rather than slowing scheduling down,
//! as Kubernetes' event broadcaster does. Events are written by [`crate::events::write`], which
//! the controllers' recorder shares.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::mpsc;

use super::framework::PodInfo;
use crate::events::{self, EventType, Recent, Record};

/// How many reports may wait.
const CAPACITY: usize = 20_000;
/// Requests in flight.
const IN_FLIGHT: usize = 8;

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
    let stream = events::stream_of(rx);
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
            let record = Record {
                regarding: ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(pod.name.clone()),
                    namespace: Some(pod.namespace.clone()),
                    uid: Some(pod.uid.clone()),
                    ..ObjectReference::default()
                },
                type_: if kind == "Warning" {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: reason.into(),
                action: if reason == "Scheduled" {
                    "Binding"
                } else {
                    "Scheduling"
                }
                .into(),
                message,
            };
            events::write(client, component, instance, recent, record).await?;
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
