//! The rest of the built-in API with the real kubectl: every Kubernetes 1.32 kind discoverable,
//! kubectl's columns for the new kinds, componentstatuses, `apply --prune`, quotas and limit
//! ranges at admission, PodDisruptionBudgets against `kubectl drain`, and a GitOps repository
//! of the new kinds.

mod common;

use std::time::Duration;

use common::{GitRepo, Server, eventually};

const WAIT: Duration = Duration::from_secs(60);

const OBJECTS: &str = "
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, labels: {set: kinds}}
spec:
  ingressClassName: gitplane
  rules:
  - host: web.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, labels: {set: kinds}}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, labels: {set: kinds}}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: web}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web, labels: {set: kinds}}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 5
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 80}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, labels: {set: kinds}}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: fast
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: fast-1, labels: {set: kinds}}
spec:
  storageClassName: fast
  capacity: {storage: 2Gi}
  accessModes: [ReadWriteOnce]
  hostPath: {path: /tmp/gitplane-fast-1}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: fast
  labels: {set: kinds}
  annotations: {storageclass.kubernetes.io/is-default-class: \"true\"}
provisioner: example.com/fast
";

fn header(table: &str) -> String {
    table.lines().next().unwrap_or("").to_string()
}

fn columns(table: &str) -> Vec<String> {
    header(table)
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn api_resources_lists_every_kind_and_kubectl_shows_their_columns() {
    let s = Server::start();
    let resources = s.ok(&["api-resources"]);
    for name in [
        "bindings",
        "componentstatuses",
        "limitranges",
        "persistentvolumes",
        "podtemplates",
        "replicationcontrollers",
        "resourcequotas",
        "validatingadmissionpolicies",
        "validatingadmissionpolicybindings",
        "apiservices",
        "selfsubjectreviews",
        "subjectaccessreviews",
        "horizontalpodautoscalers",
        "certificatesigningrequests",
        "flowschemas",
        "prioritylevelconfigurations",
        "ingressclasses",
        "ingresses",
        "networkpolicies",
        "runtimeclasses",
        "poddisruptionbudgets",
        "csidrivers",
        "csinodes",
        "csistoragecapacities",
        "storageclasses",
        "volumeattachments",
        "endpointslices",
        "priorityclasses",
    ] {
        assert!(
            resources
                .lines()
                .any(|l| l.starts_with(&format!("{name} "))),
            "api-resources lacks {name}:\n{resources}"
        );
    }
    assert!(
        resources
            .lines()
            .any(|l| l.starts_with("events ") && l.contains("events.k8s.io/v1")),
        "{resources}"
    );
    assert!(
        resources
            .lines()
            .any(|l| l.starts_with("horizontalpodautoscalers") && l.contains("autoscaling/v2")),
        "{resources}"
    );

    s.ok_stdin(&["apply", "-f", "-"], OBJECTS);
    for (what, expected) in [
        ("ingress", "NAME CLASS HOSTS ADDRESS PORTS AGE"),
        ("networkpolicy", "NAME POD-SELECTOR AGE"),
        (
            "pdb",
            "NAME MIN AVAILABLE MAX UNAVAILABLE ALLOWED DISRUPTIONS AGE",
        ),
        ("hpa", "NAME REFERENCE TARGETS MINPODS MAXPODS REPLICAS AGE"),
        (
            "pvc",
            "NAME STATUS VOLUME CAPACITY ACCESS MODES STORAGECLASS VOLUMEATTRIBUTESCLASS AGE",
        ),
        (
            "storageclass",
            "NAME PROVISIONER RECLAIMPOLICY VOLUMEBINDINGMODE ALLOWVOLUMEEXPANSION AGE",
        ),
    ] {
        let table = s.ok(&["get", what]);
        assert_eq!(columns(&table).join(" "), expected, "{table}");
    }
    let ing = s.ok(&["get", "ingress", "web"]);
    assert!(
        ing.contains("gitplane") && ing.contains("web.example") && ing.contains("80"),
        "{ing}"
    );
    let hpa = s.ok(&["get", "hpa", "web"]);
    assert!(
        hpa.contains("Deployment/web") && hpa.contains("cpu: <unknown>/80%"),
        "{hpa}"
    );
    let sc = s.ok(&["get", "storageclass"]);
    assert!(
        sc.contains("fast (default)") && sc.contains("example.com/fast"),
        "{sc}"
    );
    let np = s.ok(&["get", "netpol", "deny"]);
    assert!(np.contains("app=web"), "{np}");

    // Update and delete like any kind; a wrong type is refused as Kubernetes refuses it.
    s.ok(&[
        "patch",
        "pdb",
        "web",
        "--type=merge",
        "-p",
        "{\"spec\":{\"minAvailable\":2}}",
    ]);
    let min = s.ok(&["get", "pdb", "web", "-o", "jsonpath={.spec.minAvailable}"]);
    assert_eq!(min, "2");
    let bad = s.kubectl_stdin(
        &["apply", "-f", "-"],
        Some("apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: bad}\nspec: {maxReplicas: many}\n"),
    );
    assert!(!bad.status.success());
    s.ok(&["delete", "ingress", "web"]);
    assert!(!s.ok(&["get", "ingress"]).contains("web"));

    // componentstatuses: computed, read-only.
    let cs = s.ok(&["get", "componentstatuses"]);
    assert_eq!(columns(&cs).join(" "), "NAME STATUS MESSAGE ERROR", "{cs}");
    for name in ["scheduler", "controller-manager", "etcd-0"] {
        assert!(cs.contains(name), "{cs}");
    }
    eventually("components healthy", WAIT, || {
        let cs = s.ok(&["get", "cs"]);
        (cs.matches("Healthy").count() == 3 && !cs.contains("Unhealthy")).then_some(())
    });
    let create = s.kubectl_stdin(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: ComponentStatus\nmetadata: {name: x}\n"),
    );
    assert!(!create.status.success());
}

#[test]
fn apply_prune_with_a_label_removes_what_left_the_manifest() {
    // kubectl's default prune allow-list names every kind it prunes; each must be discoverable.
    let s = Server::start();
    s.ok_stdin(&["apply", "--prune", "-l", "set=kinds", "-f", "-"], OBJECTS);
    let without: String = OBJECTS
        .split("---")
        .filter(|doc| !doc.contains("kind: Ingress"))
        .collect::<Vec<_>>()
        .join("---");
    let out = s.ok_stdin(
        &["apply", "--prune", "-l", "set=kinds", "-f", "-"],
        &without,
    );
    assert!(
        out.contains("ingress.networking.k8s.io/web pruned"),
        "{out}"
    );
    assert!(!s.ok(&["get", "ingress"]).contains("web"));
    assert!(s.ok(&["get", "pdb"]).contains("web"));
}

fn pod(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers:\n  - {{name: c, image: busybox}}\n"
    )
}

#[test]
fn a_quota_refuses_the_fourth_pod_and_limit_ranges_fill_defaults() {
    let s = Server::start();
    s.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: pods}\nspec: {hard: {pods: \"3\", configmaps: \"20\"}}\n",
    );
    eventually("quota status", WAIT, || {
        (s.ok(&["get", "quota", "pods", "-o", "jsonpath={.status.hard.pods}"]) == "3").then_some(())
    });
    for name in ["p1", "p2", "p3"] {
        s.ok_stdin(&["create", "-f", "-"], &pod(name));
    }
    let fourth = s.kubectl_stdin(&["create", "-f", "-"], Some(&pod("p4")));
    let err = String::from_utf8_lossy(&fourth.stderr);
    assert!(!fourth.status.success());
    assert!(
        err.contains("pods \"p4\" is forbidden: exceeded quota: pods, requested: pods=1, used: pods=3, limited: pods=3"),
        "{err}"
    );
    let quota = s.ok(&["get", "quota"]);
    assert!(quota.contains("pods: 3/3"), "{quota}");
    // A delete gives the unit back.
    s.ok(&["delete", "pod", "p1", "--wait=false"]);
    eventually("quota recounted", WAIT, || {
        (s.ok(&["get", "quota", "pods", "-o", "jsonpath={.status.used.pods}"]) == "2").then_some(())
    });
    s.ok_stdin(&["create", "-f", "-"], &pod("p4"));

    // LimitRange: defaults filled, bounds refused; a compute quota needs stated limits.
    s.ok(&["create", "namespace", "limited"]);
    s.ok_stdin(
        &["apply", "-n", "limited", "-f", "-"],
        "apiVersion: v1\nkind: LimitRange\nmetadata: {name: lr}\nspec:\n  limits:\n  - type: Container\n    default: {cpu: 500m, memory: 128Mi}\n    defaultRequest: {cpu: 100m}\n    max: {cpu: \"1\"}\n",
    );
    s.ok_stdin(&["create", "-n", "limited", "-f", "-"], &pod("d"));
    let res = s.ok(&[
        "get", "pod", "d", "-n", "limited", "-o",
        "jsonpath={.spec.containers[0].resources.limits.cpu} {.spec.containers[0].resources.requests.cpu} {.spec.containers[0].resources.limits.memory}",
    ]);
    assert_eq!(res, "500m 100m 128Mi");
    let big = s.kubectl_stdin(
        &["create", "-n", "limited", "-f", "-"],
        Some("apiVersion: v1\nkind: Pod\nmetadata: {name: big}\nspec:\n  containers:\n  - {name: c, image: busybox, resources: {limits: {cpu: \"2\"}}}\n"),
    );
    let err = String::from_utf8_lossy(&big.stderr);
    assert!(
        err.contains(
            "pods \"big\" is forbidden: maximum cpu usage per Container is 1, but limit is 2"
        ),
        "{err}"
    );
    s.ok(&["create", "namespace", "compute"]);
    s.ok_stdin(
        &["apply", "-n", "compute", "-f", "-"],
        "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: compute}\nspec: {hard: {limits.cpu: \"1\"}}\n",
    );
    let unstated = s.kubectl_stdin(&["create", "-n", "compute", "-f", "-"], Some(&pod("u")));
    let err = String::from_utf8_lossy(&unstated.stderr);
    assert!(
        err.contains("failed quota: compute: must specify limits.cpu for: c"),
        "{err}"
    );
}

#[test]
fn drain_is_refused_while_a_budget_would_break_and_succeeds_once_replicas_allow_it() {
    let s = Server::start_with(&["--runtime", "simulated", "--nodes", "2"]);
    eventually("two nodes", WAIT, || {
        (s.ok(&["get", "nodes", "-o", "name"]).lines().count() == 2).then_some(())
    });
    s.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {terminationGracePeriodSeconds: 1, containers: [{name: web, image: nginx}]}\n---\napiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web}\nspec:\n  minAvailable: 2\n  selector: {matchLabels: {app: web}}\n",
    );
    s.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    eventually("budget status from the disruption controller", WAIT, || {
        (s.ok(&[
            "get",
            "pdb",
            "web",
            "-o",
            "jsonpath={.status.currentHealthy}/{.status.disruptionsAllowed}",
        ]) == "2/0")
            .then_some(())
    });
    let node = s.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[0].spec.nodeName}",
    ]);
    let refused = s.kubectl(&["drain", &node, "--ignore-daemonsets", "--timeout=8s"]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{err}");
    assert!(
        err.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{err}"
    );
    let unschedulable = s.ok(&["get", "node", &node, "-o", "jsonpath={.spec.unschedulable}"]);
    assert_eq!(unschedulable, "true", "drain cordons first");

    s.ok(&[
        "patch",
        "pdb",
        "web",
        "--type=merge",
        "-p",
        "{\"spec\":{\"minAvailable\":1}}",
    ]);
    let drained = s.kubectl(&["drain", &node, "--ignore-daemonsets", "--timeout=120s"]);
    assert!(
        drained.status.success(),
        "{}{}",
        String::from_utf8_lossy(&drained.stdout),
        String::from_utf8_lossy(&drained.stderr)
    );
    let on_node = s.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "--field-selector",
        &format!("spec.nodeName={node}"),
        "-o",
        "name",
    ]);
    assert!(on_node.trim().is_empty(), "{on_node}");
    s.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
}

#[test]
fn a_repository_of_the_new_kinds_syncs() {
    let repo = GitRepo::new();
    repo.write("app/objects.yaml", OBJECTS);
    repo.commit("new kinds");
    let repo_path = repo.path.to_string_lossy().into_owned();
    let s = Server::start_with(&[
        "--repo",
        &repo_path,
        "--path",
        "app",
        "--runtime",
        "simulated",
    ]);
    eventually("synced and healthy", WAIT, || {
        (s.ok(&[
            "get",
            "application",
            "root",
            "-o",
            "jsonpath={.status.sync.status}/{.status.health.status}",
        ]) == "Synced/Healthy")
            .then_some(())
    });
    for (kind, name) in [
        ("ingress", "web"),
        ("networkpolicy", "deny"),
        ("pdb", "web"),
        ("hpa", "web"),
        ("pvc", "data"),
        ("storageclass", "fast"),
    ] {
        s.ok(&["get", kind, name]);
    }
    let health = s.ok(&[
        "get",
        "application",
        "root",
        "-o",
        "jsonpath={range .status.resources[*]}{.kind}={.health} {end}",
    ]);
    for kind in [
        "Ingress",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "StorageClass",
        "PersistentVolume",
        "PersistentVolumeClaim",
    ] {
        assert!(health.contains(&format!("{kind}=Healthy")), "{health}");
    }
    assert_eq!(
        s.ok(&[
            "get",
            "pvc",
            "data",
            "-o",
            "jsonpath={.status.phase} {.spec.volumeName}"
        ]),
        "Bound fast-1"
    );
}
