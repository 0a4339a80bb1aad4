//! The controllers end to end: `gitplane up` (with simulated nodes where pods must run) or
//! `gitplane up --disable-controllers` with separate `gitplane controller-manager` processes,
//! driven with the real kubectl and checked through the API and watches.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Server, watch_until};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

/// Polls `f` until it returns `Some`; past the deadline, fails with the end of the server's
/// log.
fn wait_for<T>(s: &Server, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if std::time::Instant::now() > deadline {
            let log = std::fs::read_to_string(s.data_dir.join("server.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "timed out waiting for {what}; server log:\n{}",
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A Deployment whose pods stop at once (grace 0), so rollouts are quick.
fn deployment(name: &str, replicas: u32, image: &str, strategy: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  strategy: {strategy}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: main
        image: {image}
"
    )
}

fn rolling(surge: u32, unavailable: u32) -> String {
    format!(
        "{{type: RollingUpdate, rollingUpdate: {{maxSurge: {surge}, maxUnavailable: {unavailable}}}}}"
    )
}

fn items(s: &Server, path: &str) -> Vec<Value> {
    s.get_json(path)["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn pods(s: &Server, selector: &str) -> Vec<Value> {
    items(
        s,
        &format!("/api/v1/namespaces/default/pods?labelSelector={selector}"),
    )
}

fn rollout_done(s: &Server, name: &str) {
    s.ok(&[
        "rollout",
        "status",
        &format!("deployment/{name}"),
        "--timeout=60s",
    ]);
}

fn image_of(pod: &Value) -> String {
    pod["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn wait_nodes(s: &Server, n: usize) {
    wait_for(s, "simulated nodes", || {
        (items(s, "/api/v1/nodes").len() >= n).then_some(())
    });
}

/// Watches the ReplicaSets of the default namespace in a thread; every change checks that the
/// `app` ReplicaSets' replicas add up to at most `ceiling`. Returns the stop flag and the
/// thread (which returns the highest sum seen).
fn watch_surge(
    s: &Server,
    app: &str,
    ceiling: i64,
) -> (Arc<AtomicBool>, std::thread::JoinHandle<i64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let url = s.url.clone();
    let path = format!(
        "/apis/apps/v1/namespaces/default/replicasets?watch=1&timeoutSeconds=300&labelSelector=app%3D{app}"
    );
    let handle = std::thread::spawn(move || {
        let mut replicas: BTreeMap<String, i64> = BTreeMap::new();
        let mut highest = 0;
        watch_until(&url, &path, |event| {
            let name = event["object"]["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if event["type"] == "DELETED" {
                replicas.remove(&name);
            } else {
                let n = event["object"]["spec"]["replicas"].as_i64().unwrap_or(0);
                replicas.insert(name, n);
            }
            let sum: i64 = replicas.values().sum();
            assert!(sum <= ceiling, "ReplicaSets exceed maxSurge: {replicas:?}");
            highest = highest.max(sum);
            flag.load(Ordering::SeqCst)
        });
        highest
    });
    (stop, handle)
}

/// Stops a [`watch_surge`] thread (one more ReplicaSet event wakes it) and returns its maximum.
fn stop_watch(
    s: &Server,
    app: &str,
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<i64>,
) -> i64 {
    stop.store(true, Ordering::SeqCst);
    let rs = items(
        s,
        &format!("/apis/apps/v1/namespaces/default/replicasets?labelSelector=app%3D{app}"),
    );
    let name = rs[0]["metadata"]["name"].as_str().unwrap_or("").to_string();
    s.ok(&[
        "annotate",
        "--overwrite",
        &format!("rs/{name}"),
        "test/wake=1",
    ]);
    handle.join().expect("the surge watch held")
}

#[test]
fn a_rolling_update_never_exceeds_max_surge_and_replaces_every_pod() {
    let s = Server::start_with(&["--runtime", "simulated", "--nodes", "2"]);
    wait_nodes(&s, 2);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &deployment("web", 4, "nginx:1", &rolling(1, 0)),
    );
    rollout_done(&s, "web");
    let (stop, watch) = watch_surge(&s, "web", 5);
    s.ok(&["set", "image", "deployment/web", "main=nginx:2"]);
    rollout_done(&s, "web");
    let highest = stop_watch(&s, "web", stop, watch);
    assert!(highest <= 5);
    let running = pods(&s, "app%3Dweb");
    assert_eq!(running.len(), 4);
    assert!(
        running.iter().all(|p| image_of(p) == "nginx:2"),
        "{running:?}"
    );
    let d = s.get_json("/apis/apps/v1/namespaces/default/deployments/web");
    let status = &d["status"];
    assert_eq!(status["updatedReplicas"], 4);
    assert_eq!(status["availableReplicas"], 4);
    assert_eq!(status["observedGeneration"], d["metadata"]["generation"]);
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );
    let reasons: Vec<&str> = status["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .filter_map(|c| c["reason"].as_str())
        .collect();
    assert!(
        reasons.contains(&"MinimumReplicasAvailable")
            && reasons.contains(&"NewReplicaSetAvailable"),
        "{reasons:?}"
    );
    let describe = s.ok(&["describe", "deployment", "web"]);
    assert!(
        describe.contains("ScalingReplicaSet") && describe.contains("Scaled down replica set web-"),
        "{describe}"
    );
    // Every pod carries its ReplicaSet's pod-template-hash.
    for p in &running {
        let hash = p["metadata"]["labels"]["pod-template-hash"]
            .as_str()
            .expect("hash label");
        let owner = p["metadata"]["ownerReferences"][0]["name"]
            .as_str()
            .unwrap_or("");
        assert_eq!(owner, format!("web-{hash}"));
    }
}

/// Kubernetes does not count a terminating pod in its ReplicaSet's `status.replicas`, so a
/// rollout completes as soon as the new pods are available, while old pods are still within
/// their grace period (issue #21: counting them held every rollout for the whole grace period).
#[test]
fn a_rolling_update_completes_while_old_pods_are_still_terminating() {
    let s = Server::start_with(&["--runtime", "simulated", "--nodes", "2"]);
    wait_nodes(&s, 2);
    // Simulated nodes keep a deleted pod until its grace period ends: here ten minutes, far
    // beyond rollout_done's deadline.
    let slow = deployment("slow", 2, "slow:1", &rolling(1, 0)).replace(
        "terminationGracePeriodSeconds: 0",
        "terminationGracePeriodSeconds: 600",
    );
    s.ok_stdin(&["apply", "-f", "-"], &slow);
    rollout_done(&s, "slow");
    s.ok(&["set", "image", "deployment/slow", "main=slow:2"]);
    rollout_done(&s, "slow");
    let all = pods(&s, "app%3Dslow");
    let terminating: Vec<&Value> = all
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_string())
        .collect();
    assert!(
        !terminating.is_empty() && terminating.iter().all(|p| image_of(p) == "slow:1"),
        "the rollout finished only after the old pods were gone, or with new pods terminating: {all:?}"
    );
    let live: Vec<&Value> = all
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect();
    assert_eq!(live.len(), 2, "{all:?}");
    assert!(live.iter().all(|p| image_of(p) == "slow:2"), "{live:?}");
    let d = s.get_json("/apis/apps/v1/namespaces/default/deployments/slow");
    assert_eq!(d["status"]["replicas"], 2, "{d}");
    assert_eq!(d["status"]["updatedReplicas"], 2, "{d}");
    let old_sets: Vec<Value> = items(
        &s,
        "/apis/apps/v1/namespaces/default/replicasets?labelSelector=app%3Dslow",
    )
    .into_iter()
    .filter(|rs| rs["spec"]["template"]["spec"]["containers"][0]["image"] == "slow:1")
    .collect();
    assert_eq!(old_sets.len(), 1);
    assert_eq!(old_sets[0]["status"]["replicas"], 0, "{:?}", old_sets[0]);
}

#[test]
fn recreate_removes_every_old_pod_before_creating_new_ones() {
    let s = Server::start_with(&["--runtime", "simulated", "--nodes", "2"]);
    wait_nodes(&s, 2);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &deployment("db", 3, "db:1", "{type: Recreate}"),
    );
    rollout_done(&s, "db");
    let url = s.url.clone();
    let watcher = std::thread::spawn(move || {
        let mut live: BTreeMap<String, String> = BTreeMap::new();
        watch_until(
            &url,
            "/api/v1/namespaces/default/pods?watch=1&timeoutSeconds=120&labelSelector=app%3Ddb",
            |event| {
                let name = event["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                if event["type"] == "DELETED" {
                    live.remove(&name);
                } else {
                    live.insert(name, image_of(&event["object"]));
                }
                let images: BTreeSet<&String> = live.values().collect();
                assert!(images.len() <= 1, "old and new pods at once: {live:?}");
                live.len() == 3 && live.values().all(|i| i == "db:2")
            },
        );
    });
    s.ok(&["set", "image", "deployment/db", "main=db:2"]);
    rollout_done(&s, "db");
    watcher.join().expect("never old and new pods together");
}

#[test]
fn kubectl_rollout_status_history_undo_pause_resume_and_restart_work() {
    let s = Server::start_with(&["--runtime", "simulated", "--nodes", "2"]);
    wait_nodes(&s, 2);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &deployment("app", 2, "app:1", &rolling(1, 0)),
    );
    rollout_done(&s, "app");
    s.ok(&["set", "image", "deployment/app", "main=app:2"]);
    s.ok(&[
        "annotate",
        "deployment/app",
        "kubernetes.io/change-cause=move to app:2",
    ]);
    let out = s.ok(&["rollout", "status", "deployment/app", "--timeout=60s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let history = s.ok(&["rollout", "history", "deployment/app"]);
    assert!(history.contains("move to app:2"), "{history}");
    assert!(
        history.lines().any(|l| l.starts_with('1')) && history.lines().any(|l| l.starts_with('2')),
        "{history}"
    );

    // undo: back to app:1 as revision 3.
    s.ok(&["rollout", "undo", "deployment/app"]);
    rollout_done(&s, "app");
    assert!(pods(&s, "app%3Dapp").iter().all(|p| image_of(p) == "app:1"));
    let history = s.ok(&["rollout", "history", "deployment/app"]);
    assert!(
        history.lines().any(|l| l.starts_with('3')) && !history.lines().any(|l| l.starts_with('1')),
        "{history}"
    );

    // pause: a template change does not roll out until resume.
    s.ok(&["rollout", "pause", "deployment/app"]);
    s.ok(&["set", "image", "deployment/app", "main=app:3"]);
    wait_for(&s, "the paused condition", || {
        let d = s.get_json("/apis/apps/v1/namespaces/default/deployments/app");
        d["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["reason"] == "DeploymentPaused")
            .then_some(())
    });
    assert!(
        pods(&s, "app%3Dapp").iter().all(|p| image_of(p) == "app:1"),
        "paused deployments do not roll out"
    );
    s.ok(&["rollout", "resume", "deployment/app"]);
    rollout_done(&s, "app");
    assert!(pods(&s, "app%3Dapp").iter().all(|p| image_of(p) == "app:3"));

    // restart: new pods, same image.
    let before: BTreeSet<String> = pods(&s, "app%3Dapp")
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect();
    s.ok(&["rollout", "restart", "deployment/app"]);
    rollout_done(&s, "app");
    let after: BTreeSet<String> = pods(&s, "app%3Dapp")
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(before.is_disjoint(&after), "{before:?} {after:?}");
}

#[test]
fn a_stuck_rollout_reports_progress_deadline_exceeded() {
    // No node: new pods never become ready.
    let s = Server::start();
    let mut manifest = deployment("stuck", 1, "x:1", &rolling(1, 0));
    manifest = manifest.replace(
        "  replicas: 1\n",
        "  replicas: 1\n  progressDeadlineSeconds: 2\n",
    );
    s.ok_stdin(&["apply", "-f", "-"], &manifest);
    let out = s.kubectl(&["rollout", "status", "deployment/stuck", "--timeout=60s"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exceeded its progress deadline"), "{err}");
}

fn replicaset(name: &str, replicas: u32, app: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {app}}}
  template:
    metadata:
      labels: {{app: {app}}}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: main
        image: x
"
    )
}

#[test]
fn a_replicaset_never_over_creates_and_deletes_the_least_valuable_pods_first() {
    // No node: pods stay Pending unless the test says otherwise.
    let s = Server::start();
    s.ok_stdin(&["apply", "-f", "-"], &replicaset("rs", 3, "rs"));
    wait_for(&s, "three pods", || {
        (pods(&s, "app%3Drs").len() == 3).then_some(())
    });
    let created = wait_for(&s, "three SuccessfulCreate events", || {
        let n = items(&s, "/api/v1/namespaces/default/events")
            .iter()
            .filter(|e| e["reason"] == "SuccessfulCreate" && e["involvedObject"]["name"] == "rs")
            .count();
        (n >= 3).then_some(n)
    });
    assert_eq!(created, 3, "no pod created twice");
    let rs = wait_for(&s, "status", || {
        let rs = s.get_json("/apis/apps/v1/namespaces/default/replicasets/rs");
        (rs["status"]["replicas"] == 3).then_some(rs)
    });
    assert_eq!(rs["status"]["fullyLabeledReplicas"], 3);
    assert_eq!(rs["status"]["readyReplicas"], 0);
    assert_eq!(
        rs["status"]["observedGeneration"],
        rs["metadata"]["generation"]
    );

    // One pod runs and is ready: it is the one that stays on a scale-down to 1.
    let keep = pods(&s, "app%3Drs")[1]["metadata"]["name"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let now = "2026-01-01T00:00:00Z";
    s.ok(&[
        "patch", "pod", &keep, "--subresource=status", "--type=merge", "-p",
        &format!(r#"{{"status":{{"phase":"Running","conditions":[{{"type":"Ready","status":"True","lastTransitionTime":"{now}"}}]}}}}"#),
    ]);
    wait_for(&s, "one ready", || {
        (s.get_json("/apis/apps/v1/namespaces/default/replicasets/rs")["status"]["readyReplicas"]
            == 1)
            .then_some(())
    });
    s.ok(&["scale", "rs/rs", "--replicas=1"]);
    let left = wait_for(&s, "one pod left", || {
        let p = pods(&s, "app%3Drs");
        (p.len() == 1).then_some(p)
    });
    assert_eq!(left[0]["metadata"]["name"], keep.as_str());
    // The Event is written after the delete: under load it may trail the pod's removal.
    wait_for(&s, "a SuccessfulDelete event in kubectl describe", || {
        let describe = s.ok(&["describe", "rs", "rs"]);
        (describe.contains("SuccessfulDelete") && describe.contains("Deleted pod: ")).then_some(())
    });
}

#[test]
fn orphans_are_adopted_and_pods_that_stop_matching_are_released() {
    let s = Server::start();
    s.ok(&[
        "run",
        "stray",
        "--image=x",
        "--labels=app=adopt",
        "--restart=Never",
    ]);
    // Running and ready, so that it is the pod kept if the controller's cache only sees it
    // after the ReplicaSet's first two pods exist (three pods, one too many: the newest
    // not-ready one goes, as in Kubernetes).
    s.ok(&[
        "patch", "pod", "stray", "--subresource=status", "--type=merge", "-p",
        r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}"#,
    ]);
    s.ok_stdin(&["apply", "-f", "-"], &replicaset("adopter", 2, "adopt"));
    let owned = wait_for(&s, "two pods, the stray one adopted", || {
        let p = pods(&s, "app%3Dadopt");
        (p.len() == 2
            && p.iter()
                .all(|p| p["metadata"]["ownerReferences"][0]["name"] == "adopter"))
        .then_some(p)
    });
    assert!(owned.iter().any(|p| p["metadata"]["name"] == "stray"));
    let stray = s.get_json("/api/v1/namespaces/default/pods/stray");
    assert_eq!(stray["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(
        stray["metadata"]["ownerReferences"][0]["blockOwnerDeletion"],
        true
    );

    // Relabelled, it leaves the ReplicaSet, which makes a replacement.
    s.ok(&["label", "--overwrite", "pod", "stray", "app=gone"]);
    wait_for(&s, "stray released and replaced", || {
        let stray = s.get_json("/api/v1/namespaces/default/pods/stray");
        let released = stray["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(|r| r.is_empty());
        (released && pods(&s, "app%3Dadopt").len() == 2).then_some(())
    });
}

#[test]
fn deletion_follows_background_foreground_and_orphan_propagation() {
    let s = Server::start();
    for name in ["bg", "fg", "orphan"] {
        s.ok_stdin(
            &["apply", "-f", "-"],
            &deployment(name, 2, "x", &rolling(1, 0)),
        );
    }
    for name in ["bg", "fg", "orphan"] {
        wait_for(&s, "pods", || {
            (pods(&s, &format!("app%3D{name}")).len() == 2).then_some(())
        });
    }
    let rs_of = |app: &str| {
        items(
            &s,
            &format!("/apis/apps/v1/namespaces/default/replicasets?labelSelector=app%3D{app}"),
        )
    };

    s.ok(&["delete", "deployment", "bg"]);
    wait_for(&s, "background: ReplicaSet and pods collected", || {
        (rs_of("bg").is_empty() && pods(&s, "app%3Dbg").is_empty()).then_some(())
    });

    // Foreground: kubectl returns once the Deployment is gone, which is after its dependents.
    s.ok(&[
        "delete",
        "deployment",
        "fg",
        "--cascade=foreground",
        "--timeout=60s",
    ]);
    wait_for(&s, "the foreground deployment gone", || {
        (s.http(
            "GET",
            "/apis/apps/v1/namespaces/default/deployments/fg",
            "",
            b"",
        )
        .0 == 404)
            .then_some(())
    });
    assert!(rs_of("fg").is_empty(), "dependents went before the owner");
    wait_for(&s, "foreground pods gone", || {
        pods(&s, "app%3Dfg").is_empty().then_some(())
    });

    s.ok(&["delete", "deployment", "orphan", "--cascade=orphan"]);
    let rs = wait_for(&s, "orphaned ReplicaSet", || {
        let (code, _) = s.http(
            "GET",
            "/apis/apps/v1/namespaces/default/deployments/orphan",
            "",
            b"",
        );
        let rs = rs_of("orphan");
        (code == 404
            && rs.len() == 1
            && rs[0]["metadata"]["ownerReferences"]
                .as_array()
                .is_none_or(|r| r.is_empty()))
        .then_some(rs)
    });
    assert_eq!(rs[0]["spec"]["replicas"], 2);
    assert_eq!(pods(&s, "app%3Dorphan").len(), 2, "the orphan's pods stay");
}

#[test]
fn deleting_a_namespace_empties_it_then_removes_it_and_new_namespaces_get_a_default_service_account()
 {
    let tmp = tempfile::tempdir().expect("temp dir");
    let ca = tmp.path().join("ca.crt");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nTEST\n-----END CERTIFICATE-----\n",
    )
    .expect("ca");
    let s = Server::start_with(&["--root-ca-file", ca.to_str().expect("utf-8 path")]);
    s.ok(&["create", "namespace", "team"]);
    wait_for(&s, "default service account", || {
        (s.http(
            "GET",
            "/api/v1/namespaces/team/serviceaccounts/default",
            "",
            b"",
        )
        .0 == 200)
            .then_some(())
    });
    let cm = wait_for(&s, "kube-root-ca.crt", || {
        let (code, v) = s.http(
            "GET",
            "/api/v1/namespaces/team/configmaps/kube-root-ca.crt",
            "",
            b"",
        );
        (code == 200).then_some(v)
    });
    assert!(cm["data"]["ca.crt"].as_str().unwrap_or("").contains("TEST"));
    // A deleted default service account comes back.
    s.ok(&["-n", "team", "delete", "serviceaccount", "default"]);
    wait_for(&s, "default service account again", || {
        (s.http(
            "GET",
            "/api/v1/namespaces/team/serviceaccounts/default",
            "",
            b"",
        )
        .0 == 200)
            .then_some(())
    });

    s.ok(&[
        "-n",
        "team",
        "create",
        "configmap",
        "c",
        "--from-literal=a=b",
    ]);
    s.ok_stdin(
        &["-n", "team", "apply", "-f", "-"],
        &deployment("d", 2, "x", &rolling(1, 0)),
    );
    s.ok(&["delete", "namespace", "team", "--timeout=60s"]);
    assert_eq!(s.http("GET", "/api/v1/namespaces/team", "", b"").0, 404);
    assert_eq!(
        s.http("GET", "/api/v1/namespaces/team/configmaps/c", "", b"")
            .0,
        404
    );
}

fn lease_holder(s: &Server) -> Option<String> {
    let (code, v) = s.http(
        "GET",
        "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager",
        "",
        b"",
    );
    (code == 200)
        .then(|| v["spec"]["holderIdentity"].as_str().map(str::to_string))
        .flatten()
        .filter(|h| !h.is_empty())
}

const ELECTION: [&str; 7] = [
    "controller-manager",
    "--leader-elect-lease-duration",
    "2s",
    "--leader-elect-renew-deadline",
    "1500ms",
    "--leader-elect-retry-period",
    "200ms",
];

#[test]
fn a_restarted_controller_manager_finishes_the_rollout_within_max_surge() {
    let s = Server::start_with(&[
        "--runtime",
        "simulated",
        "--nodes",
        "2",
        "--disable-controllers",
    ]);
    wait_nodes(&s, 2);
    let first = s.spawn("cm-1", &ELECTION);
    let mut manifest = deployment("web", 6, "web:1", &rolling(1, 0));
    // Slow the rollout down so the restart lands in the middle of it.
    manifest = manifest.replace("  replicas: 6\n", "  replicas: 6\n  minReadySeconds: 1\n");
    s.ok_stdin(&["apply", "-f", "-"], &manifest);
    rollout_done(&s, "web");
    let (stop, watch) = watch_surge(&s, "web", 7);
    s.ok(&["set", "image", "deployment/web", "main=web:2"]);
    wait_for(&s, "the rollout under way", || {
        let new = pods(&s, "app%3Dweb")
            .iter()
            .filter(|p| image_of(p) == "web:2")
            .count();
        (new >= 1).then_some(())
    });
    drop(first); // SIGKILL mid-rollout: the Lease is not released.
    let _second = s.spawn("cm-2", &ELECTION);
    let out = s.kubectl(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    if !out.status.success() {
        let log = |n: &str| {
            std::fs::read_to_string(s.data_dir.join(format!("{n}.log"))).unwrap_or_default()
        };
        panic!(
            "rollout did not finish: {}\n{}\ncm-1:\n{}\ncm-2:\n{}",
            String::from_utf8_lossy(&out.stderr),
            s.ok(&["get", "rs,pods", "-o", "wide"]),
            log("cm-1"),
            log("cm-2")
        );
    }
    stop_watch(&s, "web", stop, watch);
    let running = pods(&s, "app%3Dweb");
    assert_eq!(running.len(), 6);
    assert!(running.iter().all(|p| image_of(p) == "web:2"));
}

#[test]
fn two_controller_managers_never_both_act() {
    let s = Server::start_with(&["--disable-controllers"]);
    let one = s.spawn("cm-1", &ELECTION);
    let two = s.spawn("cm-2", &ELECTION);
    let leader = wait_for(&s, "a leader", || lease_holder(&s));
    s.ok_stdin(&["apply", "-f", "-"], &replicaset("solo", 3, "solo"));
    wait_for(&s, "three pods", || {
        (pods(&s, "app%3Dsolo").len() == 3).then_some(())
    });
    let instances: BTreeSet<String> = wait_for(&s, "create events", || {
        let events = items(&s, "/api/v1/namespaces/default/events");
        let by: BTreeSet<String> = events
            .iter()
            .filter(|e| e["reason"] == "SuccessfulCreate")
            .filter_map(|e| e["reportingInstance"].as_str().map(str::to_string))
            .collect();
        (events
            .iter()
            .filter(|e| e["reason"] == "SuccessfulCreate")
            .count()
            >= 3)
            .then_some(by)
    });
    assert_eq!(instances, BTreeSet::from([leader.clone()]));
    // The standby never started a controller.
    let leader_pid = leader.rsplit('_').next().unwrap_or("").to_string();
    let standby_log = if one.pid().to_string() == leader_pid {
        "cm-2"
    } else {
        "cm-1"
    };
    let log =
        std::fs::read_to_string(s.data_dir.join(format!("{standby_log}.log"))).unwrap_or_default();
    assert!(!log.contains("starting controller"), "{log}");
    drop((one, two));
}
