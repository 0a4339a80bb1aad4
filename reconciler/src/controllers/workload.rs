//! What the workload controllers (Job, CronJob, DaemonSet, StatefulSet, node lifecycle) share:
//! controller references, pods made from templates, pod readiness, template hashes, a clock
//! that tests can replace, Events, and the controllers' error type.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Event, ObjectReference, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::scheduler::labels::selector_matches;

/// Errors of the workload controllers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the API server failed.
    #[error("{0}")]
    Kube(#[from] kube::Error),
    /// An object cannot be handled as it is (a missing field, a bad value).
    #[error("{0}")]
    Invalid(String),
}

/// Where a controller reads the time; tests give a fixed or shifted clock.
pub type Clock = Arc<dyn Fn() -> jiff::Timestamp + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(jiff::Timestamp::now)
}

/// The label every controller-made pod carries with its template's hash (DaemonSet,
/// StatefulSet), as Kubernetes' `controller-revision-hash`.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// Whether `meta` has a controller reference to the object with `uid`.
pub fn controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && r.uid == uid)
}

/// The pod's phase (`Pending` when unset).
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// Whether the pod finished (Succeeded or Failed).
pub fn terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// Whether the pod counts as active: neither finished nor being deleted.
pub fn active(pod: &Pod) -> bool {
    !terminal(pod) && pod.metadata.deletion_timestamp.is_none()
}

/// Whether the pod's `Ready` condition is `True`.
pub fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

/// Whether the pod is Running and Ready and not being deleted.
pub fn running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && ready(pod) && pod.metadata.deletion_timestamp.is_none()
}

/// A short stable hash of a pod template (letters Kubernetes uses in generated names), so a
/// changed template gives a new revision.
pub fn template_hash(template: &PodTemplateSpec) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let json = serde_json::to_vec(template).unwrap_or_default();
    let digest = Sha256::digest(&json);
    digest
        .iter()
        .take(10)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// A pod made from `template` for `owner`: template labels and annotations plus `labels`, a
/// controller reference, `name` or `generateName`.
pub fn pod_from_template<K: Resource<DynamicType = ()>>(
    owner: &K,
    template: &PodTemplateSpec,
    labels: BTreeMap<String, String>,
    name: PodName,
) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    let mut all_labels = meta.labels.unwrap_or_default();
    all_labels.extend(labels);
    let (name, generate_name) = match name {
        PodName::Exact(n) => (Some(n), None),
        PodName::Prefix(p) => (None, Some(p)),
    };
    Pod {
        metadata: ObjectMeta {
            name,
            generate_name,
            namespace: owner.meta().namespace.clone(),
            labels: Some(all_labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: owner.controller_owner_ref(&()).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// How a new pod is named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodName {
    /// Exactly this name (StatefulSet).
    Exact(String),
    /// This `generateName` prefix.
    Prefix(String),
}

/// The pods in `namespace` that match `selector` and are controlled by `owner_uid`.
pub async fn owned_pods(
    client: &Client,
    namespace: &str,
    selector: Option<&LabelSelector>,
    owner_uid: &str,
) -> Result<Vec<Pod>, Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut params = ListParams::default();
    if let Some(s) = selector.and_then(match_labels_query) {
        params = params.labels(&s);
    }
    let pods = api.list(&params).await?;
    Ok(pods
        .items
        .into_iter()
        .filter(|p| controlled_by(&p.metadata, owner_uid))
        .filter(|p| selector.is_none_or(|s| selector_matches(s, p.labels())))
        .collect())
}

/// The `matchLabels` part of a selector as a label query (`None` when empty); expressions are
/// checked on the listed objects.
pub fn match_labels_query(selector: &LabelSelector) -> Option<String> {
    let labels = selector.match_labels.as_ref()?;
    (!labels.is_empty()).then(|| {
        labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    })
}

/// Posts core/v1 Events about objects, as `component`.
#[derive(Clone)]
pub struct Events {
    client: Client,
    component: String,
}

impl Events {
    /// Events from `component` (`job-controller`, …).
    pub fn new(client: Client, component: &str) -> Events {
        Events {
            client,
            component: component.into(),
        }
    }

    /// Records a `Normal` event.
    pub async fn normal<K: Resource<DynamicType = ()>>(&self, obj: &K, reason: &str, msg: &str) {
        self.post(obj.object_ref(&()), "Normal", reason, msg).await;
    }

    /// Records a `Warning` event.
    pub async fn warning<K: Resource<DynamicType = ()>>(&self, obj: &K, reason: &str, msg: &str) {
        self.post(obj.object_ref(&()), "Warning", reason, msg).await;
    }

    /// Records an event about `object`; failures are logged, never returned (an event is not
    /// worth failing a reconcile for).
    pub async fn post(&self, object: ObjectReference, kind: &str, reason: &str, msg: &str) {
        let namespace = object
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let now = Time(jiff::Timestamp::now());
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}.", object.name.as_deref().unwrap_or("object"))),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: object,
            reason: Some(reason.into()),
            message: Some(msg.into()),
            type_: Some(kind.into()),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            source: Some(k8s_openapi::api::core::v1::EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            reporting_component: Some(self.component.clone()),
            ..Event::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            tracing::debug!(error = %e, reason, "event not written");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: None,
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
        }
    }

    #[test]
    fn template_hashes_are_stable_and_change_with_the_template() {
        let a = template_hash(&template("a"));
        assert_eq!(a, template_hash(&template("a")));
        assert_ne!(a, template_hash(&template("b")));
        assert_eq!(a.len(), 10);
    }

    #[test]
    fn match_labels_become_a_query() {
        let s = LabelSelector {
            match_labels: Some(BTreeMap::from([
                ("a".to_string(), "1".to_string()),
                ("b".to_string(), "2".to_string()),
            ])),
            match_expressions: None,
        };
        assert_eq!(match_labels_query(&s).as_deref(), Some("a=1,b=2"));
        assert_eq!(match_labels_query(&LabelSelector::default()), None);
    }
}
