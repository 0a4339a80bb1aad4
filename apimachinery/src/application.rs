//! gitplane's own kind, `Application` (group `gitplane.io`): its CustomResourceDefinition and the
//! labels and annotations the GitOps syncer puts on the objects it manages.
//!
//! The API server installs the CRD at start-up, so Applications are served from the first
//! request; the syncer in `reconciler::gitops` is the only component that acts on them.

use serde_json::{Value, json};

/// API group of Applications.
pub const GROUP: &str = "gitplane.io";
/// Served version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of Applications.
pub const API_VERSION: &str = "gitplane.io/v1alpha1";
/// Kind.
pub const KIND: &str = "Application";
/// Plural resource name.
pub const PLURAL: &str = "applications";

/// Label on every object an Application manages; its value is the Application's name.
pub const LABEL_APP: &str = "gitplane.io/app";
/// Annotation naming the Application that manages an object (the authority on ownership).
pub const ANNOTATION_APP: &str = "gitplane.io/app";
/// Annotation with the commit an object was last applied from.
pub const ANNOTATION_REVISION: &str = "gitplane.io/revision";
/// Annotation with the file and line that produced an object (`apps/web/deploy.yaml:3`).
pub const ANNOTATION_SOURCE: &str = "gitplane.io/source";
/// Annotation with the configuration last applied, for three-way updates.
pub const ANNOTATION_LAST_APPLIED: &str = "gitplane.io/last-applied";
/// Annotation ordering objects within one kind tier (integers, lowest first).
pub const ANNOTATION_SYNC_WAVE: &str = "gitplane.io/sync-wave";

/// The CustomResourceDefinition of Applications.
pub fn crd() -> Value {
    let free = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{PLURAL}.{GROUP}")},
        "spec": {
            "group": GROUP,
            "scope": "Cluster",
            "names": {"plural": PLURAL, "singular": "application", "kind": KIND,
                      "listKind": "ApplicationList", "shortNames": ["app", "apps"]},
            "versions": [{
                "name": VERSION,
                "served": true,
                "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    // `operation`: a sync or rollback asked for through the API, as Argo CD
                    // records it; the syncer carries it out and removes it.
                    "properties": {"spec": free, "operation": free, "status": free},
                }},
                "additionalPrinterColumns": [
                    {"name": "Sync", "type": "string", "jsonPath": ".status.sync.status"},
                    {"name": "Health", "type": "string", "jsonPath": ".status.health.status"},
                    {"name": "Revision", "type": "string", "jsonPath": ".status.sync.revision"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
            }],
        },
    })
}
