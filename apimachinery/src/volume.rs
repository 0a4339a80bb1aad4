//! PersistentVolume binding as Kubernetes' PV controller decides it: which volume a claim may
//! take (storage class, access modes, volume mode, capacity, selector, the node of a
//! `WaitForFirstConsumer` claim), the smallest one that fits, and the default StorageClass that
//! admission gives a claim naming none.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use serde_json::Value;

use crate::matching::{Labels, node_selector_matches, selector_matches};
use crate::quantity;

/// The default StorageClass gitplane creates at start.
pub const LOCAL_PATH_CLASS: &str = "local-path";
/// The provisioner of [`LOCAL_PATH_CLASS`] (the controller-manager's local-path provisioner).
pub const LOCAL_PATH_PROVISIONER: &str = "gitplane.io/local-path";
/// Annotation marking the default StorageClass.
pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
/// Annotation on a `WaitForFirstConsumer` claim naming the node of its first consumer.
pub const SELECTED_NODE_ANNOTATION: &str = "volume.kubernetes.io/selected-node";
/// Annotation on a claim naming the provisioner that should make its volume.
pub const STORAGE_PROVISIONER_ANNOTATION: &str = "volume.kubernetes.io/storage-provisioner";
/// Annotation on a volume naming the provisioner that made it.
pub const PROVISIONED_BY_ANNOTATION: &str = "pv.kubernetes.io/provisioned-by";
/// Annotation on a Node naming the directory under which the local-path provisioner puts the
/// volumes it makes for that node (the node agent sets it to `<its data dir>/storage`).
pub const LOCAL_PATH_ROOT_ANNOTATION: &str = "local-path.gitplane.io/root";
/// Annotation on a claim whose binding the controller has finished.
pub const BIND_COMPLETED_ANNOTATION: &str = "pv.kubernetes.io/bind-completed";
/// Annotation on a claim or volume the controller bound (rather than the user).
pub const BOUND_BY_CONTROLLER_ANNOTATION: &str = "pv.kubernetes.io/bound-by-controller";

/// The storage class a claim asks for (`""`: none, only volumes without a class).
pub fn claim_class(pvc: &PersistentVolumeClaim) -> &str {
    pvc.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

/// The storage class of a volume (`""`: none).
pub fn volume_class(pv: &PersistentVolume) -> &str {
    pv.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

/// The storage a claim requests, in bytes (0 when it states none).
pub fn requested(pvc: &PersistentVolumeClaim) -> i64 {
    pvc.spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| quantity::parse_units(&q.0))
        .unwrap_or(0)
}

/// The capacity of a volume, in bytes (0 when it states none).
pub fn capacity(pv: &PersistentVolume) -> i64 {
    pv.spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(|q| quantity::parse_units(&q.0))
        .unwrap_or(0)
}

/// The node a volume's required node affinity admits, as a check on a node's name and labels.
pub fn admits_node(pv: &PersistentVolume, node_name: &str, node_labels: &impl Labels) -> bool {
    match pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
    {
        Some(required) => node_selector_matches(required, node_labels, node_name),
        None => true,
    }
}

/// Whether the volume's `claimRef` names this claim (and, when it carries one, its uid).
pub fn reserved_for(pv: &PersistentVolume, pvc: &PersistentVolumeClaim) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    r.name == pvc.metadata.name
        && r.namespace == pvc.metadata.namespace
        && (r.uid.is_none() || r.uid == pvc.metadata.uid)
}

/// Whether `pv` may be bound to `pvc`: free (or reserved for this claim), not being deleted,
/// same storage class and volume mode, the claim's access modes all offered, enough capacity,
/// the claim's selector and `volumeName` satisfied; with `node`, the volume's node affinity
/// admits that node.
pub fn fits(
    pv: &PersistentVolume,
    pvc: &PersistentVolumeClaim,
    node: Option<(&str, &BTreeMap<String, String>)>,
) -> bool {
    let (Some(spec), Some(claim)) = (pv.spec.as_ref(), pvc.spec.as_ref()) else {
        return false;
    };
    if pv.metadata.deletion_timestamp.is_some() {
        return false;
    }
    if spec.claim_ref.is_some() && !reserved_for(pv, pvc) {
        return false;
    }
    if !matches!(
        pv.status.as_ref().and_then(|s| s.phase.as_deref()),
        None | Some("Available") | Some("Pending")
    ) && !reserved_for(pv, pvc)
    {
        return false;
    }
    if let Some(name) = claim.volume_name.as_deref().filter(|n| !n.is_empty())
        && pv.metadata.name.as_deref() != Some(name)
    {
        return false;
    }
    if volume_class(pv) != claim_class(pvc) {
        return false;
    }
    let mode = |m: Option<&String>| m.map(String::as_str).unwrap_or("Filesystem").to_string();
    if mode(spec.volume_mode.as_ref()) != mode(claim.volume_mode.as_ref()) {
        return false;
    }
    let offered = spec.access_modes.as_deref().unwrap_or_default();
    if !claim
        .access_modes
        .as_deref()
        .unwrap_or_default()
        .iter()
        .all(|m| offered.contains(m))
    {
        return false;
    }
    if capacity(pv) < requested(pvc) {
        return false;
    }
    if let Some(selector) = &claim.selector
        && !selector_matches(selector, &pv.metadata.labels.clone().unwrap_or_default())
    {
        return false;
    }
    if let Some((name, labels)) = node
        && !admits_node(pv, name, labels)
    {
        return false;
    }
    true
}

/// The volume Kubernetes' binder would pick for the claim among `pvs`: one reserved for it
/// (`claimRef`) first, else the smallest that fits (ties by name).
pub fn best<'a>(
    pvs: impl IntoIterator<Item = &'a PersistentVolume>,
    pvc: &PersistentVolumeClaim,
    node: Option<(&str, &BTreeMap<String, String>)>,
) -> Option<&'a PersistentVolume> {
    let fitting: Vec<&PersistentVolume> =
        pvs.into_iter().filter(|pv| fits(pv, pvc, node)).collect();
    if let Some(pv) = fitting.iter().find(|pv| reserved_for(pv, pvc)) {
        return Some(pv);
    }
    fitting
        .into_iter()
        .min_by(|a, b| (capacity(a), &a.metadata.name).cmp(&(capacity(b), &b.metadata.name)))
}

/// The default StorageClass among `classes` (JSON objects): of those annotated
/// `is-default-class: "true"`, the newest, ties by name (Kubernetes ≥ 1.26).
pub fn default_class(classes: &[Value]) -> Option<String> {
    crate::object::newest_annotated(classes, DEFAULT_CLASS_ANNOTATION)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pv(v: Value) -> PersistentVolume {
        serde_json::from_value(v).unwrap()
    }

    fn pvc(v: Value) -> PersistentVolumeClaim {
        serde_json::from_value(v).unwrap()
    }

    fn claim() -> PersistentVolumeClaim {
        pvc(json!({
            "metadata": {"name": "data", "namespace": "default", "uid": "u1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast",
                     "resources": {"requests": {"storage": "1Gi"}}},
        }))
    }

    fn volume(name: &str, size: &str, extra: Value) -> PersistentVolume {
        let v = json!({
            "metadata": {"name": name, "labels": {"tier": "a"}},
            "spec": {"accessModes": ["ReadWriteOnce", "ReadOnlyMany"], "storageClassName": "fast",
                     "capacity": {"storage": size}, "hostPath": {"path": "/tmp/x"}},
            "status": {"phase": "Available"},
        });
        pv(crate::patch::merge_patch(&v, &extra).unwrap())
    }

    fn check(pv: PersistentVolume, node: Option<&str>, expected: bool) {
        let labels = node
            .map(|n| BTreeMap::from([("kubernetes.io/hostname".to_string(), n.to_string())]))
            .unwrap_or_default();
        let node = node.map(|n| (n, &labels));
        assert_eq!(
            fits(&pv, &claim(), node),
            expected,
            "{:?}",
            pv.metadata.name
        );
    }

    #[test]
    fn a_volume_fits_a_claim_only_when_every_condition_holds() {
        check(volume("ok", "1Gi", json!({})), None, true);
        check(volume("big", "10Gi", json!({})), None, true);
        check(volume("small", "512Mi", json!({})), None, false);
        check(
            volume(
                "class",
                "1Gi",
                json!({"spec": {"storageClassName": "slow"}}),
            ),
            None,
            false,
        );
        check(
            volume(
                "modes",
                "1Gi",
                json!({"spec": {"accessModes": ["ReadOnlyMany"]}}),
            ),
            None,
            false,
        );
        check(
            volume("block", "1Gi", json!({"spec": {"volumeMode": "Block"}})),
            None,
            false,
        );
        check(
            volume("bound", "1Gi", json!({"status": {"phase": "Bound"}})),
            None,
            false,
        );
        check(
            volume(
                "other",
                "1Gi",
                json!({"spec": {"claimRef": {"name": "x", "namespace": "default"}}}),
            ),
            None,
            false,
        );
        check(
            volume(
                "mine",
                "1Gi",
                json!({"spec": {"claimRef": {"name": "data", "namespace": "default"}},
                        "status": {"phase": "Bound"}}),
            ),
            None,
            true,
        );
        let affinity = json!({"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In",
                                   "values": ["n1"]}]}]}}}});
        check(volume("here", "1Gi", affinity.clone()), Some("n1"), true);
        check(volume("here", "1Gi", affinity.clone()), Some("n2"), false);
        check(volume("anywhere", "1Gi", json!({})), Some("n2"), true);
    }

    #[test]
    fn the_smallest_fitting_volume_wins_unless_one_is_reserved() {
        let vols = [
            volume("b", "5Gi", json!({})),
            volume("a", "2Gi", json!({})),
            volume("c", "512Mi", json!({})),
        ];
        assert_eq!(
            best(vols.iter(), &claim(), None).and_then(|p| p.metadata.name.clone()),
            Some("a".into())
        );
        let reserved = volume(
            "r",
            "9Gi",
            json!({"spec": {"claimRef": {"name": "data", "namespace": "default", "uid": "u1"}}}),
        );
        let with = [vols[0].clone(), reserved];
        assert_eq!(
            best(with.iter(), &claim(), None).and_then(|p| p.metadata.name.clone()),
            Some("r".into())
        );
    }

    #[test]
    fn the_newest_default_class_is_the_default() {
        let class = |name: &str, created: &str, default: bool| {
            json!({"metadata": {"name": name, "creationTimestamp": created,
                "annotations": {DEFAULT_CLASS_ANNOTATION: if default { "true" } else { "false" }}}})
        };
        let cases = [
            (vec![], None),
            (vec![class("a", "2026-01-01T00:00:00Z", false)], None),
            (
                vec![
                    class("a", "2026-01-01T00:00:00Z", true),
                    class("b", "2026-02-01T00:00:00Z", true),
                    class("c", "2026-03-01T00:00:00Z", false),
                ],
                Some("b"),
            ),
            (
                vec![
                    class("b", "2026-01-01T00:00:00Z", true),
                    class("a", "2026-01-01T00:00:00Z", true),
                ],
                Some("a"),
            ),
        ];
        for (classes, expected) in cases {
            assert_eq!(default_class(&classes).as_deref(), expected, "{classes:?}");
        }
    }
}
