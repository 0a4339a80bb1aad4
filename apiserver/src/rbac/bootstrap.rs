//! The roles and bindings the API server creates at start when missing, and reconciles when they
//! exist (as Kubernetes' RBAC bootstrap does: unless an object's
//! `rbac.authorization.kubernetes.io/autoupdate` annotation is `"false"`, missing rules,
//! subjects, labels and annotations are added and nothing is removed, so a data dir made by an
//! older gitplane gets the rights its components need now): Kubernetes' user-facing
//! roles (cluster-admin, admin, edit, view with their aggregation labels), the discovery and
//! health roles, and one role per gitplane component identity.
//!
//! Component identities (client certificates minted by `gitplane up` from the cluster CA):
//! `gitplane:syncer` (cluster-admin: it applies whatever the repository holds, as Argo CD's
//! application controller does), `system:kube-scheduler`, `system:kube-controller-manager`,
//! `system:kube-proxy` (the service proxy, Kubernetes' `system:node-proxier`), and nodes as
//! `system:node:NAME` in `system:nodes`.

use serde_json::{Value, json};

const AGGREGATE_TO: &str = "rbac.authorization.k8s.io/aggregate-to-";

/// The read verbs.
const READ: &[&str] = &["get", "list", "watch"];
/// Every write verb of `edit`.
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

fn urls(paths: &[&str], verbs: &[&str]) -> Value {
    json!({"nonResourceURLs": paths, "verbs": verbs})
}

fn labels(extra: &[(&str, &str)]) -> Value {
    let mut l = serde_json::Map::new();
    l.insert("kubernetes.io/bootstrapping".into(), "rbac-defaults".into());
    for (k, v) in extra {
        l.insert((*k).into(), (*v).into());
    }
    Value::Object(l)
}

fn cluster_role(name: &str, rules: Vec<Value>, extra_labels: &[(&str, &str)]) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": name,
            "labels": labels(extra_labels),
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
        },
        "rules": rules,
    })
}

fn aggregated(name: &str, from: &str, extra_labels: &[(&str, &str)]) -> Value {
    let mut role = cluster_role(name, vec![], extra_labels);
    role["aggregationRule"] = json!({
        "clusterRoleSelectors": [{"matchLabels": {format!("{AGGREGATE_TO}{from}"): "true"}}],
    });
    role
}

fn binding(name: &str, role: &str, subjects: Vec<Value>) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {
            "name": name,
            "labels": labels(&[]),
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
        },
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    })
}

fn group(name: &str) -> Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": name})
}

fn user(name: &str) -> Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name})
}

/// The workload resources `edit` writes and `view` reads.
fn workloads(verbs: &[&str]) -> Vec<Value> {
    vec![
        rule(
            &[""],
            &[
                "pods",
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
                "pods/log",
                "pods/status",
                "configmaps",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "replicationcontrollers/status",
                "services",
                "services/proxy",
                "services/status",
                "serviceaccounts",
                "events",
            ],
            verbs,
        ),
        rule(
            &["apps"],
            &[
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "statefulsets",
                "statefulsets/scale",
                "statefulsets/status",
                "controllerrevisions",
            ],
            verbs,
        ),
        rule(
            &["batch"],
            &["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
            verbs,
        ),
        rule(
            &["autoscaling"],
            &[
                "horizontalpodautoscalers",
                "horizontalpodautoscalers/status",
            ],
            verbs,
        ),
        rule(
            &["policy"],
            &["poddisruptionbudgets", "poddisruptionbudgets/status"],
            verbs,
        ),
        rule(
            &["networking.k8s.io"],
            &["ingresses", "ingresses/status", "networkpolicies"],
            verbs,
        ),
        rule(&["discovery.k8s.io"], &["endpointslices"], verbs),
        rule(&["coordination.k8s.io"], &["leases"], verbs),
        rule(
            &["gitplane.io"],
            &["applications", "applications/status"],
            verbs,
        ),
    ]
}

/// The discovery paths (`system:discovery`).
const DISCOVERY: &[&str] = &[
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
    "/healthz",
    "/livez",
    "/readyz",
    "/version",
    "/version/",
    "/openapi",
    "/openapi/*",
];
/// The health paths (`system:public-info-viewer`).
const PUBLIC_INFO: &[&str] = &["/healthz", "/livez", "/readyz", "/version", "/version/"];
/// The monitoring paths (`system:monitoring`, bound to the group of that name as in
/// Kubernetes): the metrics and the health checks.
const MONITORING: &[&str] = &[
    "/metrics",
    "/metrics/slis",
    "/healthz",
    "/healthz/*",
    "/livez",
    "/livez/*",
    "/readyz",
    "/readyz/*",
];

/// The ClusterRoles created at start.
pub fn cluster_roles() -> Vec<Value> {
    let mut edit_rules = workloads(WRITE);
    edit_rules.extend([
        rule(
            &[""],
            &["secrets"],
            &[
                "create",
                "delete",
                "deletecollection",
                "patch",
                "update",
                "get",
                "list",
                "watch",
            ],
        ),
        rule(&[""], &["serviceaccounts"], &["impersonate"]),
        rule(&[""], &["serviceaccounts/token"], &["create"]),
        rule(&[""], &["pods/eviction"], &["create"]),
    ]);
    let mut view_rules = workloads(READ);
    view_rules.extend([rule(
        &[""],
        &[
            "namespaces",
            "namespaces/status",
            "resourcequotas",
            "limitranges",
        ],
        READ,
    )]);
    vec![
        cluster_role(
            "cluster-admin",
            vec![rule(&["*"], &["*"], &["*"]), urls(&["*"], &["*"])],
            &[],
        ),
        aggregated("admin", "admin", &[]),
        aggregated("edit", "edit", &[(&format!("{AGGREGATE_TO}admin"), "true")]),
        aggregated("view", "view", &[(&format!("{AGGREGATE_TO}edit"), "true")]),
        cluster_role(
            "system:aggregate-to-admin",
            vec![
                rule(
                    &["rbac.authorization.k8s.io"],
                    &["roles", "rolebindings"],
                    &[
                        "create",
                        "delete",
                        "deletecollection",
                        "get",
                        "list",
                        "patch",
                        "update",
                        "watch",
                    ],
                ),
                rule(
                    &["authorization.k8s.io"],
                    &["localsubjectaccessreviews"],
                    &["create"],
                ),
            ],
            &[(&format!("{AGGREGATE_TO}admin"), "true")],
        ),
        cluster_role(
            "system:aggregate-to-edit",
            edit_rules,
            &[(&format!("{AGGREGATE_TO}edit"), "true")],
        ),
        cluster_role(
            "system:aggregate-to-view",
            view_rules,
            &[(&format!("{AGGREGATE_TO}view"), "true")],
        ),
        // metrics-server's role: `kubectl top` for whoever may view.
        cluster_role(
            "system:aggregated-metrics-reader",
            vec![rule(&["metrics.k8s.io"], &["pods", "nodes"], READ)],
            &[
                (&format!("{AGGREGATE_TO}view"), "true"),
                (&format!("{AGGREGATE_TO}edit"), "true"),
                (&format!("{AGGREGATE_TO}admin"), "true"),
            ],
        ),
        cluster_role("system:discovery", vec![urls(DISCOVERY, &["get"])], &[]),
        cluster_role(
            "system:public-info-viewer",
            vec![urls(PUBLIC_INFO, &["get"])],
            &[],
        ),
        cluster_role("system:monitoring", vec![urls(MONITORING, &["get"])], &[]),
        cluster_role(
            "system:basic-user",
            vec![
                rule(
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    &["create"],
                ),
                rule(
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                    &["create"],
                ),
            ],
            &[],
        ),
        cluster_role(
            "system:kube-scheduler",
            vec![
                rule(
                    &["", "events.k8s.io"],
                    &["events"],
                    &["create", "patch", "update"],
                ),
                rule(
                    &["coordination.k8s.io"],
                    &["leases"],
                    &["create", "get", "list", "watch", "update"],
                ),
                rule(&[""], &["nodes"], READ),
                rule(&[""], &["pods"], &["delete", "get", "list", "watch"]),
                rule(&[""], &["bindings", "pods/binding"], &["create"]),
                rule(&[""], &["pods/status"], &["patch", "update"]),
                rule(
                    &[""],
                    &[
                        "namespaces",
                        "services",
                        "replicationcontrollers",
                        "persistentvolumeclaims",
                        "persistentvolumes",
                        "configmaps",
                    ],
                    READ,
                ),
                rule(&["apps"], &["replicasets", "statefulsets"], READ),
                rule(&["policy"], &["poddisruptionbudgets"], READ),
                rule(&["scheduling.k8s.io"], &["priorityclasses"], READ),
                rule(
                    &["storage.k8s.io"],
                    &[
                        "storageclasses",
                        "csinodes",
                        "csidrivers",
                        "csistoragecapacities",
                    ],
                    READ,
                ),
                rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
                rule(
                    &["authorization.k8s.io"],
                    &["subjectaccessreviews"],
                    &["create"],
                ),
            ],
            &[],
        ),
        cluster_role(
            "system:kube-controller-manager",
            vec![
                rule(
                    &[
                        "",
                        "apps",
                        "batch",
                        "autoscaling",
                        "policy",
                        "discovery.k8s.io",
                        "coordination.k8s.io",
                        "events.k8s.io",
                        "networking.k8s.io",
                    ],
                    &["*"],
                    &["*"],
                ),
                rule(&["scheduling.k8s.io"], &["priorityclasses"], READ),
                rule(&["gitplane.io"], &["applications"], READ),
                rule(
                    &["apiextensions.k8s.io"],
                    &["customresourcedefinitions"],
                    READ,
                ),
                rule(
                    &["*"],
                    &["*"],
                    &["get", "list", "watch", "delete", "deletecollection"],
                ),
                rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
                rule(
                    &["authorization.k8s.io"],
                    &["subjectaccessreviews"],
                    &["create"],
                ),
            ],
            &[],
        ),
        cluster_role(
            "system:auth-delegator",
            vec![
                rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
                rule(
                    &["authorization.k8s.io"],
                    &["subjectaccessreviews"],
                    &["create"],
                ),
            ],
            &[],
        ),
        cluster_role(
            "system:node-proxier",
            vec![
                rule(
                    &[""],
                    &["services", "endpoints", "nodes"],
                    &["list", "watch", "get"],
                ),
                rule(
                    &["discovery.k8s.io"],
                    &["endpointslices"],
                    &["list", "watch", "get"],
                ),
                // The built-in ingress controller lives in the service proxy: it reads
                // Ingresses, their classes and TLS Secrets, and fills in Ingress status.
                rule(
                    &["networking.k8s.io"],
                    &["ingresses", "ingressclasses"],
                    &["list", "watch", "get"],
                ),
                rule(
                    &["networking.k8s.io"],
                    &["ingresses/status"],
                    &["update", "patch"],
                ),
                rule(&[""], &["secrets"], &["list", "watch", "get"]),
                rule(
                    &["", "events.k8s.io"],
                    &["events"],
                    &["create", "patch", "update"],
                ),
            ],
            &[],
        ),
        cluster_role(
            "system:node",
            vec![
                rule(
                    &[""],
                    &["nodes"],
                    &[
                        "create", "get", "list", "watch", "update", "patch", "delete",
                    ],
                ),
                rule(&[""], &["nodes/status"], &["patch", "update"]),
                rule(
                    &[""],
                    &["pods"],
                    &["create", "delete", "get", "list", "watch"],
                ),
                rule(&[""], &["pods/status"], &["patch", "update"]),
                rule(&[""], &["pods/eviction"], &["create"]),
                rule(
                    &["", "events.k8s.io"],
                    &["events"],
                    &["create", "patch", "update"],
                ),
                rule(
                    &["coordination.k8s.io"],
                    &["leases"],
                    &[
                        "create", "delete", "get", "patch", "update", "list", "watch",
                    ],
                ),
                rule(
                    &[""],
                    &[
                        "configmaps",
                        "secrets",
                        "services",
                        "endpoints",
                        "persistentvolumeclaims",
                        "persistentvolumes",
                    ],
                    READ,
                ),
                rule(&["discovery.k8s.io"], &["endpointslices"], READ),
                // The node agent enforces NetworkPolicies for its pods: peers are pods of any
                // namespace, chosen by namespace labels too (what Calico's and kube-router's
                // node agents are granted by their own roles).
                rule(&[""], &["namespaces"], READ),
                rule(&["networking.k8s.io"], &["networkpolicies"], READ),
                rule(&[""], &["serviceaccounts/token"], &["create"]),
                rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
                rule(
                    &["authorization.k8s.io"],
                    &["subjectaccessreviews"],
                    &["create"],
                ),
            ],
            &[],
        ),
    ]
}

/// The ClusterRoleBindings created at start.
pub fn cluster_role_bindings() -> Vec<Value> {
    vec![
        binding(
            "cluster-admin",
            "cluster-admin",
            vec![group(crate::authn::MASTERS)],
        ),
        binding(
            "system:discovery",
            "system:discovery",
            vec![
                group(crate::authn::AUTHENTICATED),
                group(crate::authn::UNAUTHENTICATED),
            ],
        ),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            vec![
                group(crate::authn::AUTHENTICATED),
                group(crate::authn::UNAUTHENTICATED),
            ],
        ),
        binding(
            "system:monitoring",
            "system:monitoring",
            vec![group("system:monitoring")],
        ),
        binding(
            "system:basic-user",
            "system:basic-user",
            vec![group(crate::authn::AUTHENTICATED)],
        ),
        binding(
            "system:kube-scheduler",
            "system:kube-scheduler",
            vec![user("system:kube-scheduler")],
        ),
        binding(
            "system:kube-controller-manager",
            "system:kube-controller-manager",
            vec![user("system:kube-controller-manager"), group(CONTROLLERS)],
        ),
        binding("system:node", "system:node", vec![group("system:nodes")]),
        binding(
            "system:node-proxier",
            "system:node-proxier",
            vec![user("system:kube-proxy")],
        ),
        binding(
            "gitplane:syncer",
            "cluster-admin",
            vec![user("gitplane:syncer")],
        ),
    ]
}

/// The group of the controller-manager's controllers (`system:controller:NAME` each).
pub const CONTROLLERS: &str = "gitplane:controllers";

/// The identity (user, groups) of an in-process component of `gitplane up`.
pub fn component_identity(component: &str) -> (String, Vec<String>) {
    let nodes = || vec!["system:nodes".to_string()];
    match component {
        "gitops-syncer" | "syncer" => ("gitplane:syncer".into(), vec![]),
        "scheduler" => ("system:kube-scheduler".into(), vec![]),
        "controller-manager" => ("system:kube-controller-manager".into(), vec![]),
        // Each controller of the controller-manager in its own name, with the manager's rights.
        n if n.ends_with("-controller")
            || matches!(
                n,
                "generic-garbage-collector"
                    | "root-ca-cert-publisher"
                    | "persistent-volume-binder"
                    | "local-path-provisioner"
                    | "horizontal-pod-autoscaler"
            ) =>
        {
            (format!("system:controller:{n}"), vec![CONTROLLERS.into()])
        }
        "service-proxy" | "proxy" => ("system:kube-proxy".into(), vec![]),
        "simulated-nodes" => ("system:node:simulated".into(), nodes()),
        n => match n.strip_prefix("node-").or_else(|| n.strip_prefix("node:")) {
            Some(node) => (format!("system:node:{node}"), nodes()),
            None if n == "node" => ("system:node:local".into(), nodes()),
            None => (format!("gitplane:{n}"), vec![]),
        },
    }
}

/// Creates the bootstrap ClusterRoles and ClusterRoleBindings that do not exist (existing ones
/// are left as they are, so an administrator's changes survive restarts).
pub async fn create(
    state: &crate::state::ApiState,
) -> Result<(), apimachinery::status::StatusError> {
    use apimachinery::status::StatusError;
    let registry = state.registry();
    for (resource, objects) in [
        ("clusterroles", cluster_roles()),
        ("clusterrolebindings", cluster_role_bindings()),
    ] {
        let Some(info) = registry.by_resource("rbac.authorization.k8s.io", "v1", resource) else {
            continue;
        };
        for mut obj in objects {
            let name = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let key = info.key(None, &name);
            if let Some(existing) = state.cache().get(&key) {
                let Some(updated) = reconcile(&existing.object, &obj) else {
                    continue;
                };
                match state
                    .store()
                    .update(&key, crate::state::encode(&updated), existing.mod_revision)
                    .await
                {
                    Ok(_) => {
                        tracing::info!(%name, resource, "bootstrap RBAC: added what was missing")
                    }
                    // Changed meanwhile (another API server reconciled it): its next start does.
                    Err(e) => {
                        tracing::warn!(%name, resource, error = %e, "bootstrap RBAC: not reconciled")
                    }
                }
                continue;
            }
            crate::strategy::prepare_create(&info, &mut obj)?;
            match state.store().create(&key, crate::state::encode(&obj)).await {
                Ok(_) | Err(crate::storage::StorageError::AlreadyExists { .. }) => {}
                Err(e) => return Err(StatusError::internal(e.to_string())),
            }
        }
    }
    state.sync_cache().await?;
    Ok(())
}

/// What an existing bootstrap role or binding becomes with what its current version
/// (`bootstrap`) has and it lacks: rules (ClusterRoles), subjects (bindings), an
/// `aggregationRule` it has none of, labels and annotations. `None` when nothing is missing or
/// the object opted out with `rbac.authorization.kubernetes.io/autoupdate: "false"`.
fn reconcile(existing: &Value, bootstrap: &Value) -> Option<Value> {
    const AUTOUPDATE: &str = "/metadata/annotations/rbac.authorization.kubernetes.io~1autoupdate";
    if existing.pointer(AUTOUPDATE).and_then(Value::as_str) == Some("false") {
        return None;
    }
    let mut out = existing.clone();
    let mut changed = false;
    for list in ["rules", "subjects"] {
        let Some(wanted) = bootstrap.get(list).and_then(Value::as_array) else {
            continue;
        };
        // An aggregated role's rules are the aggregation controller's to fill.
        if list == "rules" && bootstrap.get("aggregationRule").is_some() {
            continue;
        }
        let have = out[list].as_array().cloned().unwrap_or_default();
        let missing: Vec<Value> = wanted
            .iter()
            .filter(|w| !have.contains(w))
            .cloned()
            .collect();
        if !missing.is_empty() {
            out[list] = Value::Array(have.into_iter().chain(missing).collect());
            changed = true;
        }
    }
    if out.get("aggregationRule").is_none_or(Value::is_null)
        && let Some(rule) = bootstrap.get("aggregationRule")
    {
        out["aggregationRule"] = rule.clone();
        changed = true;
    }
    for map in ["labels", "annotations"] {
        let Some(wanted) = bootstrap["metadata"][map].as_object() else {
            continue;
        };
        for (k, v) in wanted {
            if out["metadata"][map].get(k).is_none() {
                out["metadata"][map][k] = v.clone();
                changed = true;
            }
        }
    }
    changed.then_some(out)
}

#[cfg(test)]
mod reconcile_tests {
    use super::*;

    #[test]
    fn adds_missing_rules_and_subjects_and_keeps_the_rest() {
        let wanted = cluster_role(
            "system:node-proxier",
            vec![
                rule(&[""], &["services"], READ),
                rule(&["networking.k8s.io"], &["ingresses"], READ),
            ],
            &[],
        );
        let mut old = cluster_role(
            "system:node-proxier",
            vec![
                rule(&[""], &["services"], READ),
                rule(&[""], &["configmaps"], &["get"]),
            ],
            &[],
        );
        old["metadata"]["labels"]["team"] = json!("ops");
        let new = reconcile(&old, &wanted).expect("a rule is missing");
        assert_eq!(
            new["rules"],
            json!([
                rule(&[""], &["services"], READ),
                rule(&[""], &["configmaps"], &["get"]),
                rule(&["networking.k8s.io"], &["ingresses"], READ),
            ])
        );
        assert_eq!(new["metadata"]["labels"]["team"], "ops");
        assert_eq!(reconcile(&new, &wanted), None, "nothing left to add");

        let b = binding("b", "view", vec![user("alice")]);
        let mut extra = b.clone();
        extra["subjects"] = json!([user("carol")]);
        let merged = reconcile(&extra, &b).expect("alice is missing");
        assert_eq!(merged["subjects"], json!([user("carol"), user("alice")]));
    }

    #[test]
    fn leaves_opted_out_and_aggregated_roles_alone() {
        let wanted = cluster_role("r", vec![rule(&[""], &["pods"], READ)], &[]);
        let mut old = cluster_role("r", vec![], &[]);
        old["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"] =
            json!("false");
        assert_eq!(reconcile(&old, &wanted), None);

        let agg = aggregated("view", "view", &[]);
        let mut filled = agg.clone();
        filled["rules"] = json!([rule(&[""], &["pods"], READ)]);
        assert_eq!(
            reconcile(&filled, &agg),
            None,
            "aggregated rules are not touched"
        );
    }
}
