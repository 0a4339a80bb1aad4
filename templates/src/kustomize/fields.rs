//! Field specs: which fields of which kinds a transformer touches, as kustomize's built-in
//! configuration lists them (labels, annotations, replicas, name references).

use serde_json::{Map, Value};
use std::sync::OnceLock;

/// A path in objects of the kinds a group/version/kind pattern selects (empty parts match all).
#[derive(Clone, Debug, PartialEq)]
pub struct FieldSpec {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub path: String,
    pub create: bool,
}

impl FieldSpec {
    fn new(group: &str, version: &str, kind: &str, path: &str, create: bool) -> Self {
        FieldSpec {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            path: path.into(),
            create,
        }
    }

    /// Whether this spec applies to objects of `apiVersion`/`kind`.
    pub fn selects(&self, api_version: &str, kind: &str) -> bool {
        let (group, version) = apimachinery::registry::split_api_version(api_version);
        (self.group.is_empty() || self.group == group)
            && (self.version.is_empty() || self.version == version)
            && (self.kind.is_empty() || self.kind == kind)
    }
}

/// Splits a field path at `/`, honouring `\/` inside a key.
pub fn segments(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'/') => {
                current.push('/');
                chars.next();
            }
            '/' => out.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    out.push(current);
    out.into_iter()
        .map(|s| s.trim_end_matches("[]").to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Calls `f` on every value at `path` in `node`, walking into every element of the lists met
/// on the way. With `create`, missing maps on the way are created and `f` sees a missing last
/// field as `null` (which it may fill).
pub fn visit(node: &mut Value, path: &[String], create: bool, f: &mut dyn FnMut(&mut Value)) {
    if let Value::Array(items) = node {
        for item in items {
            visit(item, path, create, f);
        }
        return;
    }
    let Some((first, rest)) = path.split_first() else {
        f(node);
        return;
    };
    let Value::Object(map) = node else {
        return;
    };
    if !map.contains_key(first) {
        if !create {
            return;
        }
        let empty = if rest.is_empty() {
            Value::Null
        } else {
            Value::Object(Map::new())
        };
        map.insert(first.clone(), empty);
    }
    if let Some(child) = map.get_mut(first) {
        if child.is_null() && !rest.is_empty() {
            if !create {
                return;
            }
            *child = Value::Object(Map::new());
        }
        visit(child, rest, create, f);
        if rest.is_empty() && child.is_null() && !create {
            map.remove(first);
        }
    }
}

fn spec_list(text: &[(&str, &str, &str, &str, bool)]) -> Vec<FieldSpec> {
    text.iter()
        .map(|(g, v, k, p, c)| FieldSpec::new(g, v, k, p, *c))
        .collect()
}

/// Where `commonLabels` (and `labels` with `includeSelectors`) go.
pub fn common_labels() -> &'static [FieldSpec] {
    static SPECS: OnceLock<Vec<FieldSpec>> = OnceLock::new();
    SPECS.get_or_init(|| {
        let mut specs = spec_list(&[
            ("", "v1", "Service", "spec/selector", true),
            ("", "v1", "ReplicationController", "spec/selector", true),
            ("", "", "Deployment", "spec/selector/matchLabels", true),
            ("", "", "ReplicaSet", "spec/selector/matchLabels", true),
            ("", "", "DaemonSet", "spec/selector/matchLabels", true),
            ("apps", "", "StatefulSet", "spec/selector/matchLabels", true),
            ("batch", "", "Job", "spec/selector/matchLabels", false),
            ("batch", "", "CronJob", "spec/jobTemplate/spec/selector/matchLabels", false),
            ("policy", "", "PodDisruptionBudget", "spec/selector/matchLabels", false),
            ("networking.k8s.io", "", "NetworkPolicy", "spec/podSelector/matchLabels", false),
            ("networking.k8s.io", "", "NetworkPolicy", "spec/ingress/from/podSelector/matchLabels", false),
            ("networking.k8s.io", "", "NetworkPolicy", "spec/egress/to/podSelector/matchLabels", false),
        ]);
        for kind in ["Deployment", "StatefulSet"] {
            for path in [
                "spec/template/spec/affinity/podAffinity/preferredDuringSchedulingIgnoredDuringExecution/podAffinityTerm/labelSelector/matchLabels",
                "spec/template/spec/affinity/podAffinity/requiredDuringSchedulingIgnoredDuringExecution/labelSelector/matchLabels",
                "spec/template/spec/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution/podAffinityTerm/labelSelector/matchLabels",
                "spec/template/spec/affinity/podAntiAffinity/requiredDuringSchedulingIgnoredDuringExecution/labelSelector/matchLabels",
                "spec/template/spec/topologySpreadConstraints/labelSelector/matchLabels",
            ] {
                specs.push(FieldSpec::new("apps", "", kind, path, false));
            }
        }
        specs.extend(template_labels().iter().cloned());
        specs
    })
}

/// `metadata/labels` everywhere plus the pod templates' labels (`labels` with `includeTemplates`).
pub fn template_labels() -> &'static [FieldSpec] {
    static SPECS: OnceLock<Vec<FieldSpec>> = OnceLock::new();
    SPECS.get_or_init(|| {
        let mut specs = metadata_fields("labels");
        specs.push(FieldSpec::new(
            "apps",
            "",
            "StatefulSet",
            "spec/volumeClaimTemplates[]/metadata/labels",
            true,
        ));
        specs
    })
}

/// Where `commonAnnotations` go.
pub fn common_annotations() -> &'static [FieldSpec] {
    static SPECS: OnceLock<Vec<FieldSpec>> = OnceLock::new();
    SPECS.get_or_init(|| metadata_fields("annotations"))
}

fn metadata_fields(field: &str) -> Vec<FieldSpec> {
    [
        ("", "", "", "metadata"),
        ("", "v1", "ReplicationController", "spec/template/metadata"),
        ("", "", "Deployment", "spec/template/metadata"),
        ("", "", "ReplicaSet", "spec/template/metadata"),
        ("", "", "DaemonSet", "spec/template/metadata"),
        ("apps", "", "StatefulSet", "spec/template/metadata"),
        ("batch", "", "Job", "spec/template/metadata"),
        ("batch", "", "CronJob", "spec/jobTemplate/metadata"),
        (
            "batch",
            "",
            "CronJob",
            "spec/jobTemplate/spec/template/metadata",
        ),
    ]
    .iter()
    .map(|(g, v, k, p)| FieldSpec::new(g, v, k, &format!("{p}/{field}"), true))
    .collect()
}

/// Where `replicas` go.
pub fn replicas() -> &'static [FieldSpec] {
    static SPECS: OnceLock<Vec<FieldSpec>> = OnceLock::new();
    SPECS.get_or_init(|| {
        [
            "Deployment",
            "ReplicationController",
            "ReplicaSet",
            "StatefulSet",
        ]
        .iter()
        .map(|k| FieldSpec::new("", "", k, "spec/replicas", true))
        .collect()
    })
}

/// Where `vars` are substituted (kustomize's `varReference` defaults).
pub fn var_reference() -> &'static [FieldSpec] {
    static SPECS: OnceLock<Vec<FieldSpec>> = OnceLock::new();
    SPECS.get_or_init(|| {
        let mut specs = Vec::new();
        let containers = [
            "containers/args",
            "containers/command",
            "containers/env/value",
            "containers/volumeMounts/mountPath",
            "initContainers/args",
            "initContainers/command",
            "initContainers/env/value",
            "initContainers/volumeMounts/mountPath",
        ];
        for (kind, prefix) in [
            ("CronJob", "spec/jobTemplate/spec/template/spec"),
            ("DaemonSet", "spec/template/spec"),
            ("Deployment", "spec/template/spec"),
            ("Job", "spec/template/spec"),
            ("Pod", "spec"),
            ("ReplicaSet", "spec/template/spec"),
            ("StatefulSet", "spec/template/spec"),
        ] {
            for field in containers {
                specs.push(FieldSpec::new(
                    "",
                    "",
                    kind,
                    &format!("{prefix}/{field}"),
                    false,
                ));
            }
            let nfs = match kind {
                "CronJob" => "spec/jobTemplate/spec/template/volumes/nfs/server".to_string(),
                "StatefulSet" => "spec/volumeClaimTemplates/spec/nfs/server".to_string(),
                _ => format!("{prefix}/volumes/nfs/server"),
            };
            specs.push(FieldSpec::new("", "", kind, &nfs, false));
            if kind == "Deployment" {
                specs.push(FieldSpec::new(
                    "",
                    "",
                    kind,
                    "spec/template/metadata/annotations",
                    false,
                ));
            }
        }
        specs.extend(spec_list(&[
            ("", "", "Ingress", "spec/rules/host", false),
            ("", "", "Ingress", "spec/tls/hosts", false),
            ("", "", "Ingress", "spec/tls/secretName", false),
            ("", "", "Service", "spec/ports/port", false),
            ("", "", "Service", "spec/ports/targetPort", false),
            ("", "", "PersistentVolume", "spec/nfs/server", false),
            ("", "", "", "metadata/labels", false),
            ("", "", "", "metadata/annotations", false),
        ]));
        specs
    })
}

/// Extra image fields beyond the `containers`/`initContainers` lists found anywhere.
pub fn image_volumes() -> &'static [FieldSpec] {
    static SPECS: OnceLock<Vec<FieldSpec>> = OnceLock::new();
    SPECS.get_or_init(|| {
        spec_list(&[
            ("", "", "", "spec/volumes[]/image/reference", false),
            (
                "",
                "",
                "",
                "spec/template/spec/volumes[]/image/reference",
                false,
            ),
        ])
    })
}

/// A kind whose name other objects refer to, and the fields that refer to it.
#[derive(Clone, Debug)]
pub struct NameReference {
    pub group: String,
    pub kind: String,
    pub referrers: Vec<FieldSpec>,
}

/// The pod spec of each workload kind.
const POD_SPECS: &[(&str, &str)] = &[
    ("Pod", "spec"),
    ("PodTemplate", "template/spec"),
    ("Deployment", "spec/template/spec"),
    ("ReplicaSet", "spec/template/spec"),
    ("DaemonSet", "spec/template/spec"),
    ("StatefulSet", "spec/template/spec"),
    ("Job", "spec/template/spec"),
    ("CronJob", "spec/jobTemplate/spec/template/spec"),
];

fn in_pod_specs(kinds: &[&str], fields: &[&str]) -> Vec<FieldSpec> {
    let mut specs = Vec::new();
    for (kind, prefix) in POD_SPECS
        .iter()
        .chain([("ReplicationController", "spec/template/spec")].iter())
    {
        if !kinds.contains(kind) {
            continue;
        }
        for field in fields {
            specs.push(FieldSpec::new(
                "",
                "",
                kind,
                &format!("{prefix}/{field}"),
                false,
            ));
        }
    }
    specs
}

/// kustomize's name reference table (the kinds gitplane follows).
pub fn name_references() -> &'static [NameReference] {
    static REFS: OnceLock<Vec<NameReference>> = OnceLock::new();
    REFS.get_or_init(|| {
        let workloads = [
            "Pod",
            "PodTemplate",
            "Deployment",
            "ReplicaSet",
            "DaemonSet",
            "StatefulSet",
            "Job",
            "CronJob",
        ];
        let mut config_map = in_pod_specs(
            &workloads,
            &[
                "volumes/configMap/name",
                "containers/env/valueFrom/configMapKeyRef/name",
                "initContainers/env/valueFrom/configMapKeyRef/name",
                "containers/envFrom/configMapRef/name",
                "initContainers/envFrom/configMapRef/name",
                "volumes/projected/sources/configMap/name",
            ],
        );
        config_map.extend(spec_list(&[
            ("", "", "Role", "rules/resourceNames", false),
            ("", "", "ClusterRole", "rules/resourceNames", false),
        ]));
        let mut secret = in_pod_specs(
            &workloads,
            &[
                "volumes/secret/secretName",
                "containers/env/valueFrom/secretKeyRef/name",
                "initContainers/env/valueFrom/secretKeyRef/name",
                "containers/envFrom/secretRef/name",
                "initContainers/envFrom/secretRef/name",
                "imagePullSecrets/name",
                "volumes/projected/sources/secret/name",
            ],
        );
        secret.extend(spec_list(&[
            ("", "", "Ingress", "spec/tls/secretName", false),
            ("", "", "ServiceAccount", "imagePullSecrets/name", false),
            ("", "", "Role", "rules/resourceNames", false),
            ("", "", "ClusterRole", "rules/resourceNames", false),
        ]));
        let mut service_account = in_pod_specs(
            &[
                "Pod",
                "StatefulSet",
                "Deployment",
                "ReplicationController",
                "CronJob",
                "Job",
                "DaemonSet",
            ],
            &["serviceAccountName"],
        );
        service_account.extend(spec_list(&[
            (
                "rbac.authorization.k8s.io",
                "",
                "RoleBinding",
                "subjects",
                false,
            ),
            (
                "rbac.authorization.k8s.io",
                "",
                "ClusterRoleBinding",
                "subjects",
                false,
            ),
        ]));
        let claims = in_pod_specs(
            &[
                "Pod",
                "StatefulSet",
                "Deployment",
                "ReplicationController",
                "CronJob",
                "Job",
                "DaemonSet",
            ],
            &["volumes/persistentVolumeClaim/claimName"],
        );
        let scale_target = spec_list(&[(
            "",
            "",
            "HorizontalPodAutoscaler",
            "spec/scaleTargetRef/name",
            false,
        )]);
        vec![
            NameReference {
                group: "".into(),
                kind: "ConfigMap".into(),
                referrers: config_map,
            },
            NameReference {
                group: "".into(),
                kind: "Secret".into(),
                referrers: secret,
            },
            NameReference {
                group: "".into(),
                kind: "Service".into(),
                referrers: spec_list(&[
                    ("apps", "", "StatefulSet", "spec/serviceName", false),
                    (
                        "",
                        "",
                        "Ingress",
                        "spec/rules/http/paths/backend/serviceName",
                        false,
                    ),
                    ("", "", "Ingress", "spec/backend/serviceName", false),
                    (
                        "",
                        "",
                        "Ingress",
                        "spec/rules/http/paths/backend/service/name",
                        false,
                    ),
                    ("", "", "Ingress", "spec/defaultBackend/service/name", false),
                    (
                        "apiregistration.k8s.io",
                        "",
                        "APIService",
                        "spec/service/name",
                        false,
                    ),
                    (
                        "admissionregistration.k8s.io",
                        "",
                        "ValidatingWebhookConfiguration",
                        "webhooks/clientConfig/service",
                        false,
                    ),
                    (
                        "admissionregistration.k8s.io",
                        "",
                        "MutatingWebhookConfiguration",
                        "webhooks/clientConfig/service",
                        false,
                    ),
                ]),
            },
            NameReference {
                group: "rbac.authorization.k8s.io".into(),
                kind: "Role".into(),
                referrers: spec_list(&[(
                    "rbac.authorization.k8s.io",
                    "",
                    "RoleBinding",
                    "roleRef/name",
                    false,
                )]),
            },
            NameReference {
                group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                referrers: spec_list(&[
                    (
                        "rbac.authorization.k8s.io",
                        "",
                        "RoleBinding",
                        "roleRef/name",
                        false,
                    ),
                    (
                        "rbac.authorization.k8s.io",
                        "",
                        "ClusterRoleBinding",
                        "roleRef/name",
                        false,
                    ),
                ]),
            },
            NameReference {
                group: "".into(),
                kind: "ServiceAccount".into(),
                referrers: service_account,
            },
            NameReference {
                group: "".into(),
                kind: "PersistentVolumeClaim".into(),
                referrers: claims,
            },
            NameReference {
                group: "apps".into(),
                kind: "Deployment".into(),
                referrers: scale_target.clone(),
            },
            NameReference {
                group: "apps".into(),
                kind: "StatefulSet".into(),
                referrers: scale_target.clone(),
            },
            NameReference {
                group: "apps".into(),
                kind: "ReplicaSet".into(),
                referrers: scale_target.clone(),
            },
            NameReference {
                group: "".into(),
                kind: "ReplicationController".into(),
                referrers: scale_target,
            },
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(mut doc: Value, path: &str, create: bool, expected: Value) {
        visit(&mut doc, &segments(path), create, &mut |v| {
            if v.is_null() {
                *v = json!({});
            }
            if let Value::Object(m) = v {
                m.insert("x".into(), json!("1"));
            }
        });
        assert_eq!(doc, expected, "{path}");
    }

    #[test]
    fn visiting_walks_lists_and_creates_only_when_asked() {
        check(
            json!({"a": {}}),
            "a/b",
            true,
            json!({"a": {"b": {"x": "1"}}}),
        );
        check(json!({"a": {}}), "a/b", false, json!({"a": {}}));
        check(
            json!({"l": [{"m": {}}, {"m": {}}]}),
            "l[]/m",
            false,
            json!({"l": [{"m": {"x": "1"}}, {"m": {"x": "1"}}]}),
        );
        check(
            json!({}),
            "a/b/c",
            true,
            json!({"a": {"b": {"c": {"x": "1"}}}}),
        );
    }

    #[test]
    fn escaped_slashes_stay_inside_a_key() {
        assert_eq!(
            segments(r"metadata/annotations/nginx.ingress.kubernetes.io\/auth-secret"),
            vec![
                "metadata",
                "annotations",
                "nginx.ingress.kubernetes.io/auth-secret"
            ]
        );
        assert_eq!(
            segments("spec/containers[]/image"),
            vec!["spec", "containers", "image"]
        );
    }
}
