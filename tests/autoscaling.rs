//! Resource metrics and autoscaling with the real kubectl: `kubectl top` against `gitplane up`
//! with a local process node running a CPU-burning shell loop and a quiet one that wakes once a
//! second (non-zero CPU and memory for both; usage from `/proc` through the
//! node agent's `/stats/summary` and `metrics.k8s.io`), RBAC on the metrics; a
//! HorizontalPodAutoscaler scaling a Deployment of real burning processes up and, once they
//! stop burning, back down after a short stabilization window; `kubectl autoscale` on
//! simulated nodes whose usage a pod annotation sets, with `kubectl get hpa`'s TARGETS and the
//! `SuccessfulRescale` Event, the v1 object read through v2 and a v2-only field surviving a v1
//! replace; a `ContainerResource` metric beside a `Pods` one (no custom metrics API: an Event).

mod common;

use std::time::Duration;

use common::{Server, eventually};

/// A server stopped cleanly when dropped, so its node stops the pods' processes.
struct Up(Server);

impl Drop for Up {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// The row of `kubectl top` output whose first columns are `keys`, as its cells.
fn row(out: &str, keys: &[&str]) -> Option<Vec<String>> {
    out.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|cells| cells.len() >= keys.len() && cells.iter().zip(keys).all(|(c, k)| c == k))
}

/// `123m` → 123, `45Mi` → 45: the number in front of the unit.
fn number(cell: &str) -> u64 {
    cell.trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .unwrap_or(0)
}

#[test]
fn kubectl_top_shows_the_usage_of_a_cpu_burning_process() {
    let s = Up(Server::start_with(&[
        "--runtime",
        "process",
        "--node-name",
        "local",
        "--disable-proxy",
    ]));
    let s = &s.0;
    s.ok(&[
        "run",
        "burn",
        "--image=busybox",
        "--command",
        "--",
        "sh",
        "-c",
        "while :; do :; done",
    ]);
    // A pod that does something small: a shell waking once a second.
    s.ok(&[
        "run",
        "quiet",
        "--image=busybox",
        "--command",
        "--",
        "sh",
        "-c",
        "while :; do sleep 1; done",
    ]);
    // Non-zero CPU and memory for the burning pod: the machine may be busy, but a busy loop
    // always gets some CPU.
    let cells = eventually(
        "burn in kubectl top pods -A",
        Duration::from_secs(90),
        || {
            let out = s.kubectl(&["top", "pods", "-A"]);
            let out = String::from_utf8_lossy(&out.stdout).into_owned();
            row(&out, &["default", "burn"]).filter(|c| number(&c[2]) > 0 && number(&c[3]) > 0)
        },
    );
    assert!(
        cells[2].ends_with('m') && cells[3].ends_with("Mi"),
        "{cells:?}"
    );
    // The quiet pod uses little, measured finely enough not to read as 0 (kubectl shows at
    // least 1m for any non-zero figure).
    let usage = eventually(
        "quiet's PodMetrics with non-zero CPU",
        Duration::from_secs(90),
        || {
            let out = s.kubectl(&[
                "get",
                "--raw",
                "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/quiet",
            ]);
            let m: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            let usage = m["containers"][0]["usage"].clone();
            let cpu = usage["cpu"]
                .as_str()?
                .trim_end_matches('n')
                .parse::<u64>()
                .ok()?;
            (cpu > 0).then_some(usage)
        },
    );
    assert!(
        usage["memory"]
            .as_str()
            .is_some_and(|m| number(m) > 0 && m.ends_with("Ki")),
        "{usage}"
    );
    let top = s.ok(&["top", "pods"]);
    let q = row(&top, &["quiet"]).unwrap_or_else(|| panic!("{top}"));
    assert!(number(&q[1]) > 0 && number(&q[2]) > 0, "{top}");
    let containers = s.ok(&["top", "pods", "--containers"]);
    let c = row(&containers, &["burn", "burn"]).unwrap_or_else(|| panic!("{containers}"));
    assert!(number(&c[3]) > 0, "{containers}");
    // A label selector picks the pods.
    let labelled = s.ok(&["top", "pods", "-l", "run=burn"]);
    assert!(row(&labelled, &["burn"]).is_some(), "{labelled}");
    let none = s.kubectl(&["top", "pods", "-l", "run=nothing"]);
    assert!(
        String::from_utf8_lossy(&none.stdout).lines().count() <= 1,
        "{none:?}"
    );
    let nodes = s.ok(&["top", "nodes"]);
    let n = row(&nodes, &["local"]).unwrap_or_else(|| panic!("{nodes}"));
    assert!(number(&n[1]) > 0 && number(&n[3]) > 0, "{nodes}");
    // RBAC decides as for any resource: nobody may not, a viewer may.
    let refused = s.kubectl(&["top", "pods", "--as=alice"]);
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("forbidden"),
        "{refused:?}"
    );
    s.ok(&[
        "create",
        "rolebinding",
        "alice-view",
        "--clusterrole=view",
        "--user=alice",
    ]);
    eventually("alice reads pod metrics", Duration::from_secs(30), || {
        let out = s.kubectl(&["top", "pods", "--as=alice"]);
        let out = String::from_utf8_lossy(&out.stdout).into_owned();
        row(&out, &["burn"])
    });
    // The object as a client library reads it.
    let raw = s.ok(&[
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/burn",
    ]);
    let m: serde_json::Value = serde_json::from_str(&raw).expect("PodMetrics JSON");
    assert_eq!(m["kind"], "PodMetrics");
    assert_eq!(m["containers"][0]["name"], "burn");
    let missing = s.kubectl(&[
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/nothing",
    ]);
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("NotFound"),
        "{missing:?}"
    );
}

#[test]
fn an_autoscaler_scales_burning_pods_up_and_back_down_after_its_window() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let stop = tmp.path().join("stop-burning");
    let s = Up(Server::start_with(&[
        "--runtime",
        "process",
        "--node-name",
        "local",
        "--disable-proxy",
        "--horizontal-pod-autoscaler-sync-period",
        "1s",
    ]));
    let s = &s.0;
    let script = format!(
        "while [ ! -e {} ]; do :; done; exec sleep 100000",
        stop.display()
    );
    let manifest = format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: burner}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: burner}}}}
  template:
    metadata: {{labels: {{app: burner}}}}
    spec:
      containers:
      - name: burn
        image: busybox
        command: ["sh", "-c", {script:?}]
        resources: {{requests: {{cpu: 10m}}}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {{name: burner}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: burner}}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Resource
    resource: {{name: cpu, target: {{type: Utilization, averageUtilization: 50}}}}
  behavior:
    scaleDown: {{stabilizationWindowSeconds: 3}}
"#
    );
    s.ok_stdin(&["apply", "-f", "-"], &manifest);
    let replicas = || {
        s.ok(&[
            "get",
            "deployment",
            "burner",
            "-o",
            "jsonpath={.spec.replicas}",
        ])
    };
    eventually("scaled up to 3", Duration::from_secs(120), || {
        (replicas() == "3").then_some(())
    });
    let hpa = s.ok(&["get", "hpa", "burner"]);
    let cells = row(&hpa, &["burner"]).unwrap_or_else(|| panic!("{hpa}"));
    assert!(
        cells[2] == "cpu:" && cells[3].ends_with("%/50%") && !cells[3].starts_with("<unknown>"),
        "{hpa}"
    );
    let events = s.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=HorizontalPodAutoscaler",
    ]);
    assert!(
        events.contains("SuccessfulRescale")
            && events
                .contains("reason: cpu resource utilization (percentage of request) above target"),
        "{events}"
    );
    let status = s.ok(&["get", "hpa", "burner", "-o", "json"]);
    let status: serde_json::Value = serde_json::from_str(&status).expect("hpa JSON");
    assert!(status["status"]["lastScaleTime"].is_string(), "{status}");
    let conditions = status["status"]["conditions"].to_string();
    assert!(
        conditions.contains("AbleToScale") && conditions.contains("ValidMetricFound"),
        "{conditions}"
    );
    // The pods stop burning: after the 3 s window, back to the minimum.
    std::fs::write(&stop, "").expect("stop file");
    eventually("scaled back down to 1", Duration::from_secs(120), || {
        (replicas() == "1").then_some(())
    });
    let events = s.ok(&["get", "events"]);
    assert!(
        events.contains("New size: 1; reason: All metrics below target"),
        "{events}"
    );
}

#[test]
fn kubectl_autoscale_on_simulated_nodes_follows_the_usage_annotation() {
    let s = Server::start_with(&[
        "--runtime",
        "simulated",
        "--nodes",
        "2",
        "--horizontal-pod-autoscaler-sync-period",
        "1s",
    ]);
    let manifest = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: sim}
spec:
  replicas: 1
  selector: {matchLabels: {app: sim}}
  template:
    metadata:
      labels: {app: sim}
      annotations:
        gitplane.io/simulated-usage: '{"cpu": "400m", "memory": "64Mi"}'
    spec:
      containers:
      - name: app
        image: example/app
        resources: {requests: {cpu: 200m}}
"#;
    s.ok_stdin(&["apply", "-f", "-"], manifest);
    let top = eventually("sim in kubectl top pods", Duration::from_secs(60), || {
        let out = s.kubectl(&["top", "pods"]);
        let out = String::from_utf8_lossy(&out.stdout).into_owned();
        out.lines()
            .find(|l| l.starts_with("sim-"))
            .map(str::to_string)
    });
    assert!(top.contains("400m") && top.contains("64Mi"), "{top}");
    s.ok(&[
        "autoscale",
        "deployment",
        "sim",
        "--cpu-percent=50",
        "--min=1",
        "--max=4",
    ]);
    // 200 % of requests against 50 %: four times as many, at most 4.
    eventually("scaled to 4", Duration::from_secs(90), || {
        let r = s.ok(&[
            "get",
            "deployment",
            "sim",
            "-o",
            "jsonpath={.spec.replicas}",
        ]);
        (r == "4").then_some(())
    });
    let hpa = eventually("TARGETS shows the usage", Duration::from_secs(30), || {
        let out = s.ok(&["get", "hpa", "sim"]);
        out.contains("cpu: 200%/50%").then_some(out)
    });
    let cells = row(&hpa, &["sim"]).unwrap_or_else(|| panic!("{hpa}"));
    assert_eq!(cells[1], "Deployment/sim", "{hpa}");
    // `kubectl autoscale` wrote autoscaling/v1; v2 reads the same object converted: the CPU
    // target as a metric, the conditions v1 has no field for.
    let v2 = s.ok(&["get", "hpa.v2.autoscaling", "sim", "-o", "json"]);
    let v2: serde_json::Value = serde_json::from_str(&v2).expect("v2 JSON");
    assert_eq!(v2["apiVersion"], "autoscaling/v2");
    assert_eq!(
        v2["spec"]["metrics"][0]["resource"]["target"],
        serde_json::json!({"type": "Utilization", "averageUtilization": 50}),
        "{v2}"
    );
    assert!(
        v2["status"]["conditions"]
            .to_string()
            .contains("ValidMetricFound"),
        "{v2}"
    );
    // A v2-only field set through v2 survives a v1 client's read and replace (it travels in
    // Kubernetes' annotation).
    s.ok(&[
        "patch",
        "hpa.v2.autoscaling",
        "sim",
        "--type=merge",
        "-p",
        r#"{"spec": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 7}}}}"#,
    ]);
    let url = "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/sim";
    let v1: serde_json::Value = serde_json::from_str(&s.ok(&["get", "--raw", url])).expect("v1");
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50, "{v1}");
    let annotations = &v1["metadata"]["annotations"];
    assert!(
        annotations["autoscaling.alpha.kubernetes.io/behavior"].is_string()
            && annotations["autoscaling.alpha.kubernetes.io/conditions"].is_string(),
        "{v1}"
    );
    // Read, edit, replace; again on a Conflict (the controller writes the status meanwhile).
    eventually("a v1 read-edit-replace", Duration::from_secs(30), || {
        let mut edited: serde_json::Value =
            serde_json::from_str(&s.ok(&["get", "--raw", url])).expect("v1");
        edited["spec"]["maxReplicas"] = serde_json::json!(6);
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), edited.to_string()).expect("write");
        let out = s.kubectl(&[
            "replace",
            "--raw",
            url,
            "-f",
            &file.path().to_string_lossy(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || stderr.contains("Conflict"),
            "replace --raw: {stderr}"
        );
        out.status.success().then_some(())
    });
    let after = s.ok(&[
        "get",
        "hpa.v2.autoscaling",
        "sim",
        "-o",
        "jsonpath={.spec.maxReplicas} {.spec.behavior.scaleDown.stabilizationWindowSeconds} {.metadata.annotations}",
    ]);
    assert_eq!(after, "6 7 ", "{after}");

    // A ContainerResource metric is computed from one container; a Pods metric needs a custom
    // metrics API gitplane does not serve: a Warning Event says so, and the other metric scales.
    let other = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: other}
spec:
  replicas: 1
  selector: {matchLabels: {app: other}}
  template:
    metadata:
      labels: {app: other}
      annotations:
        gitplane.io/simulated-usage: '{"cpu": "400m", "memory": "64Mi"}'
    spec:
      containers:
      - name: app
        image: example/app
        resources: {requests: {cpu: 200m}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: other}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: other}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: ContainerResource
    containerResource: {name: cpu, container: app, target: {type: Utilization, averageUtilization: 100}}
  - type: Pods
    pods: {metric: {name: qps}, target: {type: AverageValue, averageValue: "10"}}
"#;
    s.ok_stdin(&["apply", "-f", "-"], other);
    eventually("other scaled to 2", Duration::from_secs(90), || {
        let r = s.ok(&[
            "get",
            "deployment",
            "other",
            "-o",
            "jsonpath={.spec.replicas}",
        ]);
        (r == "2").then_some(())
    });
    let events = eventually("the Pods metric's Event", Duration::from_secs(30), || {
        let out = s.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=other",
        ]);
        out.contains("FailedGetPodsMetric").then_some(out)
    });
    assert!(
        events.contains("unable to get metric qps")
            && events.contains(
                "New size: 2; reason: cpu container resource utilization (percentage of request) above target"
            ),
        "{events}"
    );
    let status = s.ok(&[
        "get",
        "hpa",
        "other",
        "-o",
        "jsonpath={.status.currentMetrics[0].type} {.status.currentMetrics[0].containerResource.current.averageUtilization}",
    ]);
    assert_eq!(status, "ContainerResource 200", "{status}");
    let events = s.ok(&["get", "events"]);
    assert!(
        events.contains(
            "New size: 4; reason: cpu resource utilization (percentage of request) above target"
        ),
        "{events}"
    );
    // The annotation cannot be read: the pod has no metrics, the error names it.
    let bad = s.kubectl(&[
        "annotate",
        "pods",
        "-l",
        "app=sim",
        "--overwrite",
        "gitplane.io/simulated-usage=lots",
    ]);
    assert!(bad.status.success(), "{bad:?}");
    let refused = s.kubectl(&["top", "pods"]);
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("gitplane.io/simulated-usage"),
        "{refused:?}"
    );
}
