//! What the workload controllers (Job, CronJob, DaemonSet, StatefulSet, node lifecycle) share:
//! controller references, pods made from templates, template hashes and Events.
//!
//! The Job, DaemonSet and StatefulSet controllers read their pods from the shared pod store
//! ([`stored_pods`]) with [`super::expectations`] for what they created and deleted: a store
//! lags behind the controller's own creates and deletes, and without expectations a reconcile
//! would then start a pod twice.

use std::collections::BTreeMap;

use apimachinery::matching::selector_matches;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::Api;
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::{Context, controller_of, controller_ref, selector_of};
use crate::events::EventType;

/// The label every controller-made pod carries with its template's hash (DaemonSet,
/// StatefulSet), as Kubernetes' `controller-revision-hash`.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// Whether `meta` has a controller reference to the object with `uid`.
pub fn controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    controller_of(meta).is_some_and(|r| r.uid == uid)
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
            owner_references: Some(vec![controller_ref(owner)]),
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

/// Refuses a missing, empty or invalid selector with a warning Event on `owner` (Kubernetes'
/// controllers never act on an empty selector); `false` means: do nothing.
pub fn selector_usable<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    owner: &K,
    selector: Option<&LabelSelector>,
) -> bool {
    let what = format!(
        "{} {}/{}",
        K::kind(&()).to_lowercase(),
        owner.meta().namespace.as_deref().unwrap_or(""),
        owner.meta().name.as_deref().unwrap_or("")
    );
    match selector_of(&what, selector) {
        Ok(_) => true,
        Err(e) => {
            ctx.event(
                owner,
                EventType::Warning,
                "InvalidSelector",
                "Sync",
                e.to_string(),
            );
            false
        }
    }
}

/// The pods in `namespace` of the shared pod store that match `selector` and are controlled
/// by `owner_uid`.
pub fn stored_pods(
    pods: &Store<Pod>,
    namespace: &str,
    selector: Option<&LabelSelector>,
    owner_uid: &str,
) -> Vec<Pod> {
    pods.state()
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(namespace))
        .filter(|p| controlled_by(&p.metadata, owner_uid))
        .filter(|p| selector.is_none_or(|s| selector_matches(s, p.labels())))
        .map(|p| p.as_ref().clone())
        .collect()
}

/// Events about the objects of one controller, through its [`Context`]'s recorder.
pub struct Events<'a>(pub &'a Context);

impl Events<'_> {
    /// Records a `Normal` event; the action is the reason's verb (`SuccessfulCreate` → `Create`).
    pub async fn normal<K: Resource<DynamicType = ()>>(&self, obj: &K, reason: &str, msg: &str) {
        self.0.event(
            obj,
            EventType::Normal,
            reason,
            action_of(reason),
            msg.to_string(),
        );
    }

    /// Records a `Warning` event.
    pub async fn warning<K: Resource<DynamicType = ()>>(&self, obj: &K, reason: &str, msg: &str) {
        self.0.event(
            obj,
            EventType::Warning,
            reason,
            action_of(reason),
            msg.to_string(),
        );
    }

    /// Creates `object` through `api` for `owner`, recording `SuccessfulCreate` with
    /// `created(made)` or `FailedCreate` with `failed(error)`. An object of that name that exists
    /// already (409: an earlier pass made it) is no failure and gives `None`.
    pub async fn create_once<O, K>(
        &self,
        owner: &O,
        api: &Api<K>,
        object: &K,
        created: impl FnOnce(&K) -> String,
        failed: impl FnOnce(&kube::Error) -> String,
    ) -> Result<Option<K>, kube::Error>
    where
        O: Resource<DynamicType = ()>,
        K: Resource + Clone + std::fmt::Debug + DeserializeOwned + Serialize,
    {
        match api.create(&self.0.post_params(), object).await {
            Ok(made) => {
                self.normal(owner, "SuccessfulCreate", &created(&made))
                    .await;
                Ok(Some(made))
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(None),
            Err(e) => {
                self.warning(owner, "FailedCreate", &failed(&e)).await;
                Err(e)
            }
        }
    }
}

fn action_of(reason: &str) -> &'static str {
    if reason.contains("Create") {
        "Create"
    } else if reason.contains("Delete") || reason.contains("Eviction") {
        "Delete"
    } else {
        "Sync"
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
}
