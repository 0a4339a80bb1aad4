//! A Deployment's ReplicaSets: which is new (its template is the Deployment's), creating it
//! (named `<deployment>-<pod-template-hash>`), revisions and the annotations copied from the
//! Deployment, scaling one, and the revision history clean-up.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::controllers::{Context, Error, api_error, controller_ref, key_of};
use crate::events::EventType;

/// The revision of a ReplicaSet and of its Deployment.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Earlier revisions a ReplicaSet had (rolled back to).
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// The Deployment's replicas when the ReplicaSet was last scaled.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// Replicas plus maxSurge when the ReplicaSet was last scaled.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// The label that tells the pods of each ReplicaSet apart.
pub const HASH_LABEL: &str = "pod-template-hash";

/// Deployment annotations never copied to its ReplicaSets (Kubernetes' list, plus gitplane's
/// syncer marks so that a ReplicaSet never looks managed by an Application).
fn copied(key: &str) -> bool {
    !matches!(
        key,
        "kubectl.kubernetes.io/last-applied-configuration"
            | REVISION
            | REVISION_HISTORY
            | DESIRED_REPLICAS
            | MAX_REPLICAS
            | "deprecated.deployment.rollback.to"
    ) && !key.starts_with("gitplane.io/")
}

/// The ReplicaSets of a Deployment: the new one (if any) and the old ones, oldest first.
#[derive(Clone, Debug, Default)]
pub struct Rollout {
    /// The ReplicaSet whose template is the Deployment's.
    pub new: Option<Arc<ReplicaSet>>,
    /// The others, oldest first.
    pub olds: Vec<Arc<ReplicaSet>>,
    /// The new ReplicaSet was created in this sync.
    pub created: bool,
}

impl Rollout {
    /// Sorts `owned` into new and old.
    pub fn of(d: &Deployment, mut owned: Vec<Arc<ReplicaSet>>) -> Rollout {
        owned.sort_by(|a, b| {
            let t = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
            t(a).cmp(&t(b))
                .then_with(|| a.name_any().cmp(&b.name_any()))
        });
        let template = d.spec.as_ref().map(|s| &s.template);
        let position = owned.iter().position(|rs| {
            template.is_some_and(|t| {
                rs.spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|rt| same_template(t, rt))
            })
        });
        let new = position.map(|i| owned.remove(i));
        Rollout {
            new,
            olds: owned,
            created: false,
        }
    }

    /// Every ReplicaSet, new one first.
    pub fn all(&self) -> impl Iterator<Item = &Arc<ReplicaSet>> {
        self.new.iter().chain(self.olds.iter())
    }

    /// The highest revision among the old ReplicaSets.
    pub fn max_old_revision(&self) -> i64 {
        self.olds.iter().map(|rs| revision(rs)).max().unwrap_or(0)
    }
}

/// Whether a ReplicaSet's template is the Deployment's (ignoring `pod-template-hash`).
pub fn same_template(deployment: &PodTemplateSpec, rs: &PodTemplateSpec) -> bool {
    let mut rs = rs.clone();
    if let Some(labels) = rs.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(HASH_LABEL);
    }
    let norm = |t: &PodTemplateSpec| {
        let mut v = serde_json::to_value(t).unwrap_or_default();
        if let Some(m) = v.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            m.retain(|_, v| !(v.is_null() || v.as_object().is_some_and(|o| o.is_empty())));
        }
        v
    };
    norm(deployment) == norm(&rs)
}

/// A ReplicaSet's revision (0 when it has none).
pub fn revision(rs: &ReplicaSet) -> i64 {
    rs.annotations()
        .get(REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The `pod-template-hash` of a template: FNV-1a (32 bits) of its JSON and the collision
/// count, written with Kubernetes' alphabet of consonants and digits (`SafeEncodeString`).
pub fn pod_template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(template).unwrap_or_default();
    if let Some(c) = collision_count {
        bytes.extend_from_slice(&c.to_le_bytes());
    }
    let mut hash: u32 = 0x811c_9dc5;
    for b in bytes {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    safe_encode(&hash.to_string())
}

/// Kubernetes' `rand.SafeEncodeString`: each byte to one of 27 characters without vowels.
fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// The annotations a ReplicaSet of `d` should carry (besides its revision).
fn annotations_for(d: &Deployment) -> BTreeMap<String, String> {
    d.annotations()
        .iter()
        .filter(|(k, _)| copied(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Finds or (when `create`) creates the new ReplicaSet with `replicas` replicas, and brings its
/// revision and annotations, and the Deployment's revision annotation, up to date.
pub async fn ensure_new(
    ctx: &Context,
    d: &Deployment,
    r: &mut Rollout,
    create: bool,
    replicas: i32,
    surge: i32,
) -> Result<(), Error> {
    let namespace = d.namespace().unwrap_or_default();
    let api = Api::<ReplicaSet>::namespaced(ctx.client.clone(), &namespace);
    let new_revision = r.max_old_revision() + 1;
    let min_ready = d.spec.as_ref().and_then(|s| s.min_ready_seconds);
    match r.new.clone() {
        Some(rs) => {
            let mut annotations = serde_json::Map::new();
            for (k, v) in annotations_for(d) {
                if rs.annotations().get(&k) != Some(&v) {
                    annotations.insert(k, json!(v));
                }
            }
            let current = revision(&rs);
            if current < new_revision {
                annotations.insert(REVISION.into(), json!(new_revision.to_string()));
                if current > 0 {
                    let history = match rs.annotations().get(REVISION_HISTORY) {
                        Some(h) if !h.is_empty() => format!("{h},{current}"),
                        _ => current.to_string(),
                    };
                    annotations.insert(REVISION_HISTORY.into(), json!(history));
                }
            }
            let rs_min_ready = rs.spec.as_ref().and_then(|s| s.min_ready_seconds);
            if !annotations.is_empty() || rs_min_ready.unwrap_or(0) != min_ready.unwrap_or(0) {
                let patch = json!({
                    "metadata": {"annotations": annotations},
                    "spec": {"minReadySeconds": min_ready.unwrap_or(0)},
                });
                let patched = api
                    .patch(&rs.name_any(), &ctx.patch_params(), &Patch::Merge(patch))
                    .await
                    .map_err(api_error(format!(
                        "updating replicaset {}",
                        key_of(rs.as_ref())
                    )))?;
                r.new = Some(Arc::new(patched));
            }
        }
        None if create => {
            let rs = create_new(ctx, d, &api, new_revision, replicas, surge).await?;
            r.new = Some(Arc::new(rs));
            r.created = true;
        }
        None => {}
    }
    // The Deployment's revision follows its new ReplicaSet's.
    if let Some(rs) = &r.new {
        let rev = revision(rs).to_string();
        if d.annotations().get(REVISION) != Some(&rev) {
            let patch = json!({"metadata": {"annotations": {REVISION: rev}}});
            Api::<Deployment>::namespaced(ctx.client.clone(), &namespace)
                .patch(&d.name_any(), &ctx.patch_params(), &Patch::Merge(patch))
                .await
                .map_err(api_error(format!("updating deployment {}", key_of(d))))?;
        }
    }
    Ok(())
}

async fn create_new(
    ctx: &Context,
    d: &Deployment,
    api: &Api<ReplicaSet>,
    revision: i64,
    replicas: i32,
    surge: i32,
) -> Result<ReplicaSet, Error> {
    let spec = d.spec.clone().unwrap_or_default();
    let collision = d.status.as_ref().and_then(|s| s.collision_count);
    let hash = pod_template_hash(&spec.template, collision);
    let mut template = spec.template.clone();
    let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(HASH_LABEL.into(), hash.clone());
    let mut selector = spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(HASH_LABEL.into(), hash.clone());
    let mut annotations = annotations_for(d);
    annotations.insert(REVISION.into(), revision.to_string());
    annotations.insert(
        DESIRED_REPLICAS.into(),
        spec.replicas.unwrap_or(1).to_string(),
    );
    annotations.insert(
        MAX_REPLICAS.into(),
        (spec.replicas.unwrap_or(1) + surge).to_string(),
    );
    let name = format!("{}-{hash}", d.name_any());
    let rs = ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: d.namespace(),
            labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref(d)]),
            ..ObjectMeta::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: None,
    };
    match api.create(&ctx.post_params(), &rs).await {
        Ok(created) => {
            if replicas > 0 {
                ctx.event(
                    d,
                    EventType::Normal,
                    "ScalingReplicaSet",
                    "Scaling",
                    format!("Scaled up replica set {name} from 0 to {replicas}"),
                );
            }
            Ok(created)
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            // Created by an earlier sync whose write the cache has not shown yet, or a hash
            // collision with someone else's ReplicaSet.
            let existing = api
                .get(&name)
                .await
                .map_err(api_error(format!("reading replicaset {name}")))?;
            let ours = existing
                .owner_references()
                .iter()
                .any(|o| Some(&o.uid) == d.metadata.uid.as_ref() && o.controller == Some(true));
            let same = existing
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| same_template(&spec.template, t));
            if ours && same {
                return Ok(existing);
            }
            let count = collision.unwrap_or(0) + 1;
            let patch = json!({"status": {"collisionCount": count}});
            Api::<Deployment>::namespaced(ctx.client.clone(), &d.namespace().unwrap_or_default())
                .patch_status(&d.name_any(), &ctx.patch_params(), &Patch::Merge(patch))
                .await
                .map_err(api_error(format!(
                    "updating status of deployment {}",
                    key_of(d)
                )))?;
            Err(Error::Invalid(format!(
                "replicaset {name} exists with another template: collisionCount now {count}"
            )))
        }
        Err(e) => Err(api_error(format!("creating replicaset {name}"))(e)),
    }
}

/// Sets a ReplicaSet's replicas (and the desired/max annotations), with a
/// `ScalingReplicaSet` Event on the Deployment.
pub async fn scale(
    ctx: &Context,
    d: &Deployment,
    rs: &ReplicaSet,
    replicas: i32,
    surge: i32,
) -> Result<ReplicaSet, Error> {
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let before = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let patch = json!({
        "metadata": {"annotations": {
            DESIRED_REPLICAS: desired.to_string(),
            MAX_REPLICAS: (desired + surge).to_string(),
        }},
        "spec": {"replicas": replicas},
    });
    let name = rs.name_any();
    let scaled =
        Api::<ReplicaSet>::namespaced(ctx.client.clone(), &rs.namespace().unwrap_or_default())
            .patch(&name, &ctx.patch_params(), &Patch::Merge(patch))
            .await
            .map_err(api_error(format!("scaling replicaset {}", key_of(rs))))?;
    if before != replicas {
        let direction = if replicas > before { "up" } else { "down" };
        ctx.event(
            d,
            EventType::Normal,
            "ScalingReplicaSet",
            "Scaling",
            format!("Scaled {direction} replica set {name} from {before} to {replicas}"),
        );
    }
    Ok(scaled)
}

/// Deletes the oldest empty old ReplicaSets beyond `revisionHistoryLimit`.
pub async fn cleanup(ctx: &Context, d: &Deployment, r: &Rollout) -> Result<(), Error> {
    let limit = d
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10)
        .max(0) as usize;
    let mut empty: Vec<&Arc<ReplicaSet>> = r
        .olds
        .iter()
        .filter(|rs| {
            rs.metadata.deletion_timestamp.is_none()
                && rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0) == 0
                && rs.status.as_ref().map_or(0, |s| s.replicas) == 0
        })
        .collect();
    if empty.len() <= limit {
        return Ok(());
    }
    empty.sort_by_key(|rs| revision(rs));
    let api = Api::<ReplicaSet>::namespaced(ctx.client.clone(), &d.namespace().unwrap_or_default());
    for rs in empty.iter().take(empty.len() - limit) {
        match api.delete(&rs.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                return Err(api_error(format!(
                    "deleting replicaset {}",
                    key_of(rs.as_ref())
                ))(e));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_uses_kubernetes_alphabet_and_changes_with_the_template_and_collisions() {
        let mut t = PodTemplateSpec::default();
        let a = pod_template_hash(&t, None);
        assert!(
            !a.is_empty() && a.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
            "{a}"
        );
        assert_eq!(a, pod_template_hash(&t, None), "stable");
        assert_ne!(a, pod_template_hash(&t, Some(1)), "collision count");
        t.metadata = Some(ObjectMeta {
            labels: Some(BTreeMap::from([("app".into(), "web".into())])),
            ..ObjectMeta::default()
        });
        assert_ne!(a, pod_template_hash(&t, None), "template");
    }

    #[test]
    fn a_replicaset_template_matches_its_deployment_whatever_its_hash_label() {
        let labels = |pairs: &[(&str, &str)]| PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(
                    pairs
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            }),
            ..PodTemplateSpec::default()
        };
        let d = labels(&[("app", "web")]);
        assert!(same_template(
            &d,
            &labels(&[("app", "web"), (HASH_LABEL, "abc")])
        ));
        assert!(!same_template(
            &d,
            &labels(&[("app", "db"), (HASH_LABEL, "abc")])
        ));
        assert!(!copied(REVISION));
        assert!(copied("kubernetes.io/change-cause"));
    }
}
