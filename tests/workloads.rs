//! The workload controllers end to end: `gitplane up --runtime simulated` with its controllers,
//! driven with the real kubectl and checked through the API. Simulated pods finish with the
//! annotation `gitplane.io/simulate: succeed-after=…` / `fail`; nodes go silent with
//! `gitplane.io/simulate: stop-heartbeat`.

mod common;

use std::time::Duration;

use common::{Server, eventually};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

fn get(s: &Server, path: &str) -> Option<Value> {
    let (code, v) = s.http("GET", path, "", b"");
    (code == 200).then_some(v)
}

fn items(s: &Server, path: &str) -> Vec<Value> {
    get(s, path)
        .and_then(|v| v["items"].as_array().cloned())
        .unwrap_or_default()
}

fn apply(s: &Server, yaml: &str) {
    s.ok_stdin(&["apply", "-f", "-"], yaml);
}

fn condition(obj: &Value, kind: &str) -> Option<Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind && c["status"] == "True")
        .cloned()
}

fn job(s: &Server, name: &str) -> Option<Value> {
    get(s, &format!("/apis/batch/v1/namespaces/default/jobs/{name}"))
}

fn job_pods(s: &Server, name: &str) -> Vec<Value> {
    items(
        s,
        &format!(
            "/api/v1/namespaces/default/pods?labelSelector=batch.kubernetes.io/job-name%3D{name}"
        ),
    )
}

fn events(s: &Server, object: &str, reason: &str) -> Vec<Value> {
    items(s, "/api/v1/namespaces/default/events")
        .into_iter()
        .filter(|e| e["involvedObject"]["name"] == object && e["reason"] == reason)
        .collect()
}

fn simulated(nodes: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--runtime", "simulated", "--nodes", nodes];
    args.extend_from_slice(extra);
    Server::start_with(&args)
}

fn endpoint_ips(ep: &Value, field: &str) -> Vec<String> {
    ep["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s[field].as_array().cloned().unwrap_or_default())
        .map(|a| a["targetRef"]["name"].as_str().unwrap_or("").to_string())
        .collect()
}

/// The pods of a Service's slices, with their `ready` condition.
fn slice_endpoints(s: &Server, service: &str) -> Vec<(String, bool)> {
    let mut v: Vec<(String, bool)> = items(
        s,
        &format!(
            "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io/service-name%3D{service}"
        ),
    )
    .iter()
    .flat_map(|sl| sl["endpoints"].as_array().cloned().unwrap_or_default())
    .map(|e| {
        (
            e["targetRef"]["name"].as_str().unwrap_or("").to_string(),
            e["conditions"]["ready"] == true,
        )
    })
    .collect();
    v.sort();
    v
}

#[test]
fn endpoints_and_endpointslices_follow_pod_readiness() {
    let s = simulated("1", &[]);
    let pod = |name: &str, extra: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n    app: web\n{extra}spec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: nginx\n    ports:\n    - name: http\n      containerPort: 8080\n"
        )
    };
    apply(
        &s,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  labels:\n    tier: front\nspec:\n  selector:\n    app: web\n  ports:\n  - name: http\n    port: 80\n    targetPort: http\n",
    );
    apply(&s, &pod("web-a", ""));
    apply(&s, &pod("web-b", ""));
    apply(
        &s,
        &pod(
            "web-failed",
            "  annotations:\n    gitplane.io/simulate: fail\n",
        ),
    );
    let ep = eventually("two ready addresses", WAIT, || {
        get(&s, "/api/v1/namespaces/default/endpoints/web")
            .filter(|ep| endpoint_ips(ep, "addresses").len() == 2)
    });
    assert_eq!(ep["subsets"][0]["ports"][0]["port"], 8080, "{ep}");
    assert_eq!(ep["metadata"]["labels"]["tier"], "front");
    eventually("two ready slice endpoints", WAIT, || {
        (slice_endpoints(&s, "web") == vec![("web-a".into(), true), ("web-b".into(), true)])
            .then_some(())
    });
    let slice = &items(
        &s,
        "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io/service-name%3Dweb",
    )[0];
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(slice["ports"][0]["port"], 8080);
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
    assert!(s.ok(&["get", "endpointslices"]).contains("web-"));

    // web-a stops being ready: it moves to notReadyAddresses and its endpoint is not ready.
    s.ok(&[
        "patch",
        "pod",
        "web-a",
        "--subresource=status",
        "--type=strategic",
        "-p",
        r#"{"status":{"conditions":[{"type":"Ready","status":"False"}]}}"#,
    ]);
    eventually("web-a not ready in endpoints", WAIT, || {
        get(&s, "/api/v1/namespaces/default/endpoints/web").filter(|ep| {
            endpoint_ips(ep, "notReadyAddresses") == vec!["web-a"]
                && endpoint_ips(ep, "addresses") == vec!["web-b"]
        })
    });
    eventually("web-a not ready in slices", WAIT, || {
        (slice_endpoints(&s, "web") == vec![("web-a".into(), false), ("web-b".into(), true)])
            .then_some(())
    });

    // A relabelled pod leaves the Service; a deleted one leaves too.
    s.ok(&["label", "pod", "web-b", "app=other", "--overwrite"]);
    s.ok(&["delete", "pod", "web-a", "--wait=false"]);
    eventually("no endpoint left", WAIT, || {
        get(&s, "/api/v1/namespaces/default/endpoints/web")
            .filter(|ep| ep["subsets"].as_array().is_none_or(|a| a.is_empty()))
    });
    eventually("an empty slice", WAIT, || {
        slice_endpoints(&s, "web").is_empty().then_some(())
    });

    // A Service without a selector keeps the Endpoints its user wrote.
    apply(
        &s,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: external\nspec:\n  ports:\n  - port: 80\n---\napiVersion: v1\nkind: Endpoints\nmetadata:\n  name: external\nsubsets:\n- addresses:\n  - ip: 127.0.0.9\n  ports:\n  - port: 80\n",
    );
    apply(&s, &pod("web-c", ""));
    eventually("web-c ready", WAIT, || {
        get(&s, "/api/v1/namespaces/default/endpoints/web")
            .filter(|ep| endpoint_ips(ep, "addresses") == vec!["web-c"])
    });
    let external = get(&s, "/api/v1/namespaces/default/endpoints/external").expect("external");
    assert_eq!(external["subsets"][0]["addresses"][0]["ip"], "127.0.0.9");
    assert!(
        items(
            &s,
            "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io/service-name%3Dexternal"
        )
        .is_empty()
    );
}

fn job_yaml(name: &str, spec: &str, annotation: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\nspec:\n{spec}  template:\n    metadata:\n      annotations:\n        gitplane.io/simulate: {annotation}\n    spec:\n      restartPolicy: Never\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: c\n        image: busybox\n"
    )
}

#[test]
fn a_job_runs_its_completions_with_parallelism_and_completes() {
    let s = simulated("2", &[]);
    apply(
        &s,
        &job_yaml(
            "work",
            "  completions: 4\n  parallelism: 2\n",
            "succeed-after=500ms",
        ),
    );
    let j = eventually("job work complete", WAIT, || {
        job(&s, "work").filter(|j| condition(j, "Complete").is_some())
    });
    assert_eq!(j["status"]["succeeded"], 4, "{j}");
    assert_eq!(j["status"]["active"], 0, "{j}");
    assert!(j["status"]["startTime"].is_string() && j["status"]["completionTime"].is_string());
    let uid = j["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let pods = job_pods(&s, "work");
    assert_eq!(pods.len(), 4);
    for p in &pods {
        assert_eq!(p["status"]["phase"], "Succeeded");
        assert_eq!(
            p["metadata"]["labels"]["batch.kubernetes.io/controller-uid"],
            uid
        );
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "Job");
        assert_eq!(p["metadata"]["ownerReferences"][0]["controller"], true);
    }
    // Never more than `parallelism` pods at once: each pod started after at least
    // completions - parallelism others... checked here as "the last two started after the
    // first two finished".
    let mut starts: Vec<String> = pods
        .iter()
        .map(|p| {
            p["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    starts.sort();
    let mut ends: Vec<String> = pods
        .iter()
        .filter_map(|p| {
            p["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"].as_str()
        })
        .map(str::to_string)
        .collect();
    ends.sort();
    assert!(
        starts[2] >= ends[0],
        "third pod started before any pod finished"
    );
    s.ok(&[
        "wait",
        "--for=condition=complete",
        "job/work",
        "--timeout=10s",
    ]);
}

#[test]
fn failures_beyond_the_backoff_limit_fail_the_job() {
    let s = simulated("1", &["--job-pod-failure-backoff", "100ms"]);
    apply(&s, &job_yaml("flaky", "  backoffLimit: 1\n", "fail"));
    let j = eventually("job flaky failed", WAIT, || {
        job(&s, "flaky").filter(|j| condition(j, "Failed").is_some())
    });
    assert_eq!(
        condition(&j, "Failed").unwrap()["reason"],
        "BackoffLimitExceeded"
    );
    assert_eq!(j["status"]["failed"], 2, "{j}");
    assert_eq!(job_pods(&s, "flaky").len(), 2);
    assert!(!events(&s, "flaky", "BackoffLimitExceeded").is_empty());
}

#[test]
fn the_active_deadline_fails_a_running_job_and_stops_its_pods() {
    let s = simulated("1", &[]);
    apply(
        &s,
        &job_yaml(
            "slow",
            "  activeDeadlineSeconds: 2\n  parallelism: 2\n  completions: 2\n",
            "run",
        ),
    );
    eventually("two running pods", WAIT, || {
        (job_pods(&s, "slow")
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .count()
            == 2)
            .then_some(())
    });
    let j = eventually("job slow failed", WAIT, || {
        job(&s, "slow").filter(|j| condition(j, "Failed").is_some())
    });
    assert_eq!(
        condition(&j, "Failed").unwrap()["reason"],
        "DeadlineExceeded"
    );
    eventually("pods stopped", WAIT, || {
        job_pods(&s, "slow")
            .iter()
            .all(|p| p["metadata"]["deletionTimestamp"].is_string())
            .then_some(())
    });
}

#[test]
fn a_finished_job_with_a_ttl_is_deleted() {
    let s = simulated("1", &[]);
    apply(
        &s,
        &job_yaml("brief", "  ttlSecondsAfterFinished: 1\n", "succeed"),
    );
    // The TTL counts from `completionTime`, which has whole seconds: the Job may be deleted
    // within moments of completing, before a poll sees it Complete.
    // This wait timed out twice in loaded runs and never since: on a timeout, say what the
    // Job, its pods, the Events and the server said.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let done = match job(&s, "brief") {
            None => true,
            Some(j) => condition(&j, "Complete").is_some(),
        };
        if done {
            break;
        }
        if std::time::Instant::now() > deadline {
            say_what_the_job_is(&s, "brief");
            panic!("timed out waiting for job brief complete (or already deleted)");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    eventually("job brief deleted", WAIT, || {
        job(&s, "brief").is_none().then_some(())
    });
    eventually("its pod deleted", WAIT, || {
        job_pods(&s, "brief").is_empty().then_some(())
    });
}

/// Prints what the Job `name`, its pods, the Events and the server's log say (for a wait that
/// timed out).
fn say_what_the_job_is(s: &Server, name: &str) {
    let events = items(s, "/api/v1/namespaces/default/events");
    eprintln!("job: {}", Value::from(job(s, name)));
    eprintln!("pods: {}", Value::from(job_pods(s, name)));
    eprintln!("events: {}", Value::from(events));
    let log = std::fs::read_to_string(&s.log).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(200).collect();
    eprintln!(
        "server log (last 200 lines, newest first):\n{}",
        tail.join("\n")
    );
}

fn cronjob_yaml(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: {name}\nspec:\n  schedule: \"* * * * *\"\n  suspend: true\n{extra}  jobTemplate:\n    spec:\n      template:\n        metadata:\n          annotations:\n            gitplane.io/simulate: succeed\n        spec:\n          restartPolicy: Never\n          containers:\n          - name: c\n            image: busybox\n"
    )
}

fn cronjob(s: &Server, name: &str) -> Value {
    get(
        s,
        &format!("/apis/batch/v1/namespaces/default/cronjobs/{name}"),
    )
    .expect("cronjob")
}

fn jobs_of(s: &Server, cronjob: &str) -> Vec<Value> {
    items(s, "/apis/batch/v1/namespaces/default/jobs")
        .into_iter()
        .filter(|j| j["metadata"]["ownerReferences"][0]["name"] == cronjob)
        .collect()
}

#[test]
fn cronjobs_start_manual_jobs_and_the_latest_missed_schedule() {
    let s = simulated("1", &[]);
    apply(
        &s,
        &cronjob_yaml("recent", "  startingDeadlineSeconds: 3600\n"),
    );
    apply(&s, &cronjob_yaml("ancient", ""));

    // kubectl create job --from=cronjob: a Job owned by the CronJob, run by the Job controller.
    s.ok(&["create", "job", "manual", "--from=cronjob/recent"]);
    // Timed out twice under load (2026-12-04, 1 run in 8 with two test binaries at once): on a
    // timeout, say what the Job, its pods, the Events and the server said.
    let deadline = std::time::Instant::now() + WAIT;
    let j = loop {
        if let Some(j) = job(&s, "manual").filter(|j| condition(j, "Complete").is_some()) {
            break j;
        }
        if std::time::Instant::now() > deadline {
            say_what_the_job_is(&s, "manual");
            panic!("timed out waiting for manual job complete");
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    assert_eq!(j["metadata"]["ownerReferences"][0]["kind"], "CronJob");
    eventually("lastSuccessfulTime", WAIT, || {
        cronjob(&s, "recent")["status"]["lastSuccessfulTime"]
            .is_string()
            .then_some(())
    });

    // Both last ran in 2020. `recent` only looks back an hour (60 missed times); `ancient`
    // has missed more than 100 and says so. Each starts only the latest time.
    for name in ["recent", "ancient"] {
        s.ok(&[
            "patch",
            "cronjob",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"lastScheduleTime":"2020-01-01T00:00:00Z"}}"#,
        ]);
        s.ok(&[
            "patch",
            "cronjob",
            name,
            "--type=merge",
            "-p",
            r#"{"spec":{"suspend":false}}"#,
        ]);
    }
    for name in ["recent", "ancient"] {
        let cj = eventually(&format!("{name} scheduled"), WAIT, || {
            Some(cronjob(&s, name)).filter(|c| {
                c["status"]["lastScheduleTime"]
                    .as_str()
                    .is_some_and(|t| !t.starts_with("2020"))
            })
        });
        let scheduled: jiff::Timestamp = cj["status"]["lastScheduleTime"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .expect("time");
        let expected = format!("{name}-{}", scheduled.as_second() / 60);
        let scheduled_jobs: Vec<Value> = jobs_of(&s, name)
            .into_iter()
            .filter(|j| j["metadata"]["name"] != "manual")
            .collect();
        assert!(
            !scheduled_jobs.is_empty() && scheduled_jobs.len() <= 2,
            "{name}: {scheduled_jobs:?}"
        );
        assert!(
            scheduled_jobs
                .iter()
                .any(|j| j["metadata"]["name"] == expected.as_str()),
            "{name}: expected {expected}"
        );
    }
    assert!(events(&s, "recent", "TooManyMissedTimes").is_empty());
    eventually("TooManyMissedTimes", WAIT, || {
        (!events(&s, "ancient", "TooManyMissedTimes").is_empty()).then_some(())
    });
}

fn ds_pods(s: &Server) -> Vec<Value> {
    items(
        s,
        "/api/v1/namespaces/default/pods?labelSelector=app%3Dagent",
    )
}

const DAEMONSET: &str = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: agent\nspec:\n  selector:\n    matchLabels:\n      app: agent\n  template:\n    metadata:\n      labels:\n        app: agent\n    spec:\n      terminationGracePeriodSeconds: 0\n      containers:\n      - name: c\n        image: agent:v1\n";

#[test]
fn a_daemonset_runs_one_pod_per_node_including_new_ones_and_rolls_updates() {
    let s = simulated("2", &[]);
    apply(&s, DAEMONSET);
    let nodes_of = |pods: &[Value]| {
        let mut n: Vec<String> = pods
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .filter_map(|p| p["spec"]["nodeName"].as_str().map(str::to_string))
            .collect();
        n.sort();
        n
    };
    eventually("one running pod per node", WAIT, || {
        (nodes_of(&ds_pods(&s)) == vec!["sim-node-0", "sim-node-1"]).then_some(())
    });
    let ds = eventually("daemonset status", WAIT, || {
        get(&s, "/apis/apps/v1/namespaces/default/daemonsets/agent")
            .filter(|d| d["status"]["numberReady"] == 2)
    });
    assert_eq!(ds["status"]["desiredNumberScheduled"], 2);
    assert_eq!(ds["status"]["updatedNumberScheduled"], 2);
    let pod = &ds_pods(&s)[0];
    assert_eq!(
        pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchFields"][0]["key"],
        "metadata.name"
    );

    // A new node gets its pod.
    let _extra = s.spawn(
        "extra-node",
        &["simulate-nodes", "--count", "1", "--name-prefix", "extra-"],
    );
    eventually("a pod on the new node", WAIT, || {
        (nodes_of(&ds_pods(&s)) == vec!["extra-0", "sim-node-0", "sim-node-1"]).then_some(())
    });

    // A new template rolls out to every node.
    apply(&s, &DAEMONSET.replace("agent:v1", "agent:v2"));
    eventually("every pod updated", WAIT, || {
        let pods = ds_pods(&s);
        let live: Vec<&Value> = pods
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect();
        (live.len() == 3
            && live.iter().all(|p| {
                p["spec"]["containers"][0]["image"] == "agent:v2"
                    && p["status"]["phase"] == "Running"
            }))
        .then_some(())
    });
    eventually("status updated", WAIT, || {
        get(&s, "/apis/apps/v1/namespaces/default/daemonsets/agent").filter(|d| {
            d["status"]["updatedNumberScheduled"] == 3 && d["status"]["numberAvailable"] == 3
        })
    });
}

fn sts_yaml(name: &str, policy: &str, image: &str, partition: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: {name}\nspec:\n  serviceName: {name}\n  replicas: 3\n  podManagementPolicy: {policy}\n  updateStrategy:\n    type: RollingUpdate\n    rollingUpdate:\n      partition: {partition}\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n      terminationGracePeriodSeconds: 0\n      nodeSelector:\n        sts: ok\n      containers:\n      - name: c\n        image: {image}\n"
    )
}

fn sts_pods(s: &Server, name: &str) -> Vec<Value> {
    let mut pods = items(
        s,
        &format!("/api/v1/namespaces/default/pods?labelSelector=app%3D{name}"),
    );
    pods.sort_by_key(|p| p["metadata"]["name"].as_str().unwrap_or("").to_string());
    pods
}

#[test]
fn a_statefulset_creates_pods_in_order_and_updates_above_its_partition() {
    let s = simulated("1", &[]);
    // No node fits yet: OrderedReady stops at db-0, Parallel makes all three.
    apply(&s, &sts_yaml("db", "OrderedReady", "db:v1", 0));
    apply(&s, &sts_yaml("cache", "Parallel", "cache:v1", 0));
    eventually("three parallel pods", WAIT, || {
        (sts_pods(&s, "cache").len() == 3).then_some(())
    });
    eventually("db-0 created and seen", WAIT, || {
        get(&s, "/apis/apps/v1/namespaces/default/statefulsets/db")
            .filter(|d| d["status"]["replicas"] == 1)
    });
    let names: Vec<String> = sts_pods(&s, "db")
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(names, vec!["db-0"]);
    let p0 = &sts_pods(&s, "db")[0];
    assert_eq!(p0["spec"]["hostname"], "db-0");
    assert_eq!(p0["spec"]["subdomain"], "db");
    assert_eq!(
        p0["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
        "db-0"
    );

    s.ok(&["label", "node", "sim-node-0", "sts=ok"]);
    let set = eventually("three ready db pods", WAIT, || {
        get(&s, "/apis/apps/v1/namespaces/default/statefulsets/db")
            .filter(|d| d["status"]["readyReplicas"] == 3)
    });
    let pods = sts_pods(&s, "db");
    let created: Vec<&str> = pods
        .iter()
        .map(|p| p["metadata"]["creationTimestamp"].as_str().unwrap_or(""))
        .collect();
    assert!(created.windows(2).all(|w| w[0] <= w[1]), "{created:?}");
    let v1 = set["status"]["currentRevision"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert_eq!(set["status"]["updateRevision"], v1.as_str());
    assert!(s.ok(&["get", "controllerrevisions"]).contains(&v1));

    // A new image with partition 2: only db-2 moves to the new revision.
    apply(&s, &sts_yaml("db", "OrderedReady", "db:v2", 2));
    let set = eventually("db-2 updated", WAIT, || {
        get(&s, "/apis/apps/v1/namespaces/default/statefulsets/db")
            .filter(|d| d["status"]["updatedReplicas"] == 1 && d["status"]["readyReplicas"] == 3)
    });
    let v2 = set["status"]["updateRevision"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert_ne!(v1, v2);
    assert_eq!(set["status"]["currentRevision"], v1.as_str());
    let revisions: Vec<String> = sts_pods(&s, "db")
        .iter()
        .map(|p| {
            p["metadata"]["labels"]["controller-revision-hash"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(revisions, vec![v1.clone(), v1.clone(), v2.clone()]);

    // Partition 0: the rest follow, highest first, and the revision becomes current.
    apply(&s, &sts_yaml("db", "OrderedReady", "db:v2", 0));
    eventually("every pod updated", WAIT, || {
        get(&s, "/apis/apps/v1/namespaces/default/statefulsets/db").filter(|d| {
            d["status"]["updatedReplicas"] == 3
                && d["status"]["readyReplicas"] == 3
                && d["status"]["currentRevision"] == v2.as_str()
        })
    });
}

fn node(s: &Server, name: &str) -> Value {
    get(s, &format!("/api/v1/nodes/{name}")).expect("node")
}

fn ready_status(n: &Value) -> String {
    n["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}

fn tainted(n: &Value, key: &str) -> bool {
    n["spec"]["taints"].as_array().is_some_and(|t| {
        t.iter()
            .any(|t| t["key"] == key && t["effect"] == "NoExecute")
    })
}

#[test]
fn a_silent_node_is_tainted_its_pods_evicted_and_replaced_and_it_recovers() {
    let s = simulated(
        "2",
        &[
            "--lease-renew-interval",
            "300ms",
            "--node-monitor-grace-period",
            "2s",
            "--node-monitor-period",
            "300ms",
            "--default-toleration-seconds",
            "1",
        ],
    );
    apply(
        &s,
        &job_yaml("service", "  parallelism: 1\n  completions: 1\n", "run"),
    );
    let (first, victim) = eventually("a running job pod", WAIT, || {
        job_pods(&s, "service")
            .into_iter()
            .find(|p| p["status"]["phase"] == "Running")
            .map(|p| {
                (
                    p["metadata"]["name"].as_str().unwrap_or("").to_string(),
                    p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
                )
            })
    });
    // A pod that tolerates unreachability forever stays.
    apply(
        &s,
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: patient\nspec:\n  nodeName: {victim}\n  tolerations:\n  - key: node.kubernetes.io/unreachable\n    operator: Exists\n    effect: NoExecute\n  containers:\n  - name: c\n    image: pause\n"
        ),
    );
    eventually("patient running", WAIT, || {
        get(&s, "/api/v1/namespaces/default/pods/patient")
            .filter(|p| p["status"]["phase"] == "Running")
    });

    s.ok(&[
        "annotate",
        "node",
        &victim,
        "gitplane.io/simulate=stop-heartbeat",
    ]);
    eventually("node unreachable", WAIT, || {
        let n = node(&s, &victim);
        (ready_status(&n) == "Unknown" && tainted(&n, "node.kubernetes.io/unreachable"))
            .then_some(())
    });
    eventually("a replacement running elsewhere", WAIT, || {
        job_pods(&s, "service").into_iter().find(|p| {
            p["metadata"]["name"] != first.as_str()
                && p["status"]["phase"] == "Running"
                && p["spec"]["nodeName"] != victim.as_str()
        })
    });
    let evicted = get(&s, &format!("/api/v1/namespaces/default/pods/{first}"));
    assert!(
        evicted.is_none_or(|p| p["metadata"]["deletionTimestamp"].is_string()),
        "the pod on the silent node was not evicted"
    );
    let patient = get(&s, "/api/v1/namespaces/default/pods/patient").expect("patient stays");
    assert!(patient["metadata"]["deletionTimestamp"].is_null());

    s.ok(&["annotate", "node", &victim, "gitplane.io/simulate-"]);
    eventually("node back", WAIT, || {
        let n = node(&s, &victim);
        (ready_status(&n) == "True" && !tainted(&n, "node.kubernetes.io/unreachable")).then_some(())
    });
}
