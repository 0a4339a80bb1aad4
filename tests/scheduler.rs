//! The scheduler and simulated nodes end to end: the real binary (`up`, `scheduler`,
//! `simulate-nodes`) against a real server, checked through the API.

mod common;

use std::time::Duration;

use common::{Server, eventually};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

fn pod(s: &Server, name: &str) -> Option<Value> {
    let (code, v) = s.http(
        "GET",
        &format!("/api/v1/namespaces/default/pods/{name}"),
        "",
        b"",
    );
    (code == 200).then_some(v)
}

fn node_of(s: &Server, name: &str) -> String {
    eventually(&format!("pod {name} to be bound"), WAIT, || {
        pod(s, name).and_then(|p| p["spec"]["nodeName"].as_str().map(str::to_string))
    })
}

fn wait_phase(s: &Server, name: &str, phase: &str) -> Value {
    eventually(&format!("pod {name} to be {phase}"), WAIT, || {
        pod(s, name).filter(|p| p["status"]["phase"] == phase)
    })
}

fn wait_nodes(s: &Server, n: usize) {
    eventually(&format!("{n} ready nodes"), WAIT, || {
        let list = s.get_json("/api/v1/nodes");
        let ready = list["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter(|n| n["status"]["allocatable"]["cpu"].is_string())
                    .count()
            })
            .unwrap_or(0);
        (ready >= n).then_some(())
    });
}

/// The messages of a pod's Events with this reason (in no particular order).
fn event_messages(s: &Server, pod: &str, reason: &str) -> Vec<String> {
    let list = s.get_json("/api/v1/namespaces/default/events");
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["involvedObject"]["name"] == pod && e["reason"] == reason)
        .map(|e| e["message"].as_str().unwrap_or("").to_string())
        .collect()
}

fn event_message(s: &Server, pod: &str, reason: &str) -> Option<String> {
    event_messages(s, pod, reason).pop()
}

fn pod_yaml(name: &str, cpu: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: pause\n    resources:\n      requests:\n        cpu: {cpu}\n{extra}"
    )
}

#[test]
fn pods_land_where_resources_selectors_and_taints_allow_and_run() {
    let s = Server::start_with(&["--runtime", "simulated", "--nodes", "0"]);
    let _small = s.spawn(
        "small",
        &[
            "simulate-nodes",
            "--count",
            "2",
            "--cpu",
            "1",
            "--name-prefix",
            "small-",
        ],
    );
    let _ssd = s.spawn(
        "ssd",
        &[
            "simulate-nodes",
            "--cpu",
            "4",
            "--labels",
            "disk=ssd",
            "--name-prefix",
            "ssd-",
        ],
    );
    let _gpu = s.spawn(
        "gpu",
        &[
            "simulate-nodes",
            "--cpu",
            "8",
            "--taints",
            "gpu=true:NoSchedule",
            "--name-prefix",
            "gpu-",
        ],
    );
    wait_nodes(&s, 4);
    s.ok_stdin(
        &["apply", "-f", "-"],
        &pod_yaml("elsewhere", "100m", "  schedulerName: other\n"),
    );
    s.ok_stdin(&["apply", "-f", "-"], &pod_yaml("big", "2", ""));
    s.ok_stdin(
        &["apply", "-f", "-"],
        &pod_yaml("ssd", "100m", "  nodeSelector:\n    disk: ssd\n"),
    );
    s.ok_stdin(
        &["apply", "-f", "-"],
        &pod_yaml("tolerant", "6", "  tolerations:\n  - key: gpu\n    operator: Equal\n    value: \"true\"\n    effect: NoSchedule\n"),
    );
    s.ok_stdin(&["apply", "-f", "-"], &pod_yaml("huge", "16", ""));
    assert_eq!(node_of(&s, "big"), "ssd-0");
    assert_eq!(node_of(&s, "ssd"), "ssd-0");
    assert_eq!(node_of(&s, "tolerant"), "gpu-0");
    let running = wait_phase(&s, "big", "Running");
    assert!(
        running["status"]["podIP"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("127."))
    );
    assert_eq!(running["status"]["containerStatuses"][0]["ready"], true);
    let message = eventually("FailedScheduling for huge", WAIT, || {
        event_message(&s, "huge", "FailedScheduling")
    });
    assert_eq!(
        message,
        "0/4 nodes are available: 1 node(s) had untolerated taint {gpu: true}, 3 Insufficient cpu."
    );
    let scheduled = eventually("Scheduled for big", WAIT, || {
        event_message(&s, "big", "Scheduled")
    });
    assert_eq!(scheduled, "Successfully assigned default/big to ssd-0");
    eventually("PodScheduled=False on huge", WAIT, || {
        let huge = pod(&s, "huge")?;
        (huge["status"]["conditions"][0]["reason"] == "Unschedulable").then_some(())
    });

    // Created first, and everything after it has been handled: a pod for another scheduler is
    // left alone.
    assert!(pod(&s, "elsewhere").unwrap()["spec"]["nodeName"].is_null());
    assert!(event_messages(&s, "elsewhere", "FailedScheduling").is_empty());

    // A failure injected through the annotation; a deletion honoured after the grace period.
    s.ok(&["annotate", "pod", "ssd", "gitplane.io/simulate=fail"]);
    wait_phase(&s, "ssd", "Failed");
    s.ok(&["delete", "pod", "big", "--wait=false"]);
    eventually("big to be removed by its node", WAIT, || {
        pod(&s, "big").is_none().then_some(())
    });
}

#[test]
fn topology_spread_balances_zones() {
    let s = Server::start_with(&["--runtime", "simulated", "--nodes", "0"]);
    let _a = s.spawn(
        "a",
        &[
            "simulate-nodes",
            "--count",
            "2",
            "--labels",
            "zone=a",
            "--name-prefix",
            "a-",
        ],
    );
    let _b = s.spawn(
        "b",
        &[
            "simulate-nodes",
            "--count",
            "2",
            "--labels",
            "zone=b",
            "--name-prefix",
            "b-",
        ],
    );
    wait_nodes(&s, 4);
    let spread = "  topologySpreadConstraints:\n  - maxSkew: 1\n    topologyKey: zone\n    whenUnsatisfiable: DoNotSchedule\n    labelSelector:\n      matchLabels:\n        app: web\n";
    let mut manifests = String::new();
    for i in 0..6 {
        let p = pod_yaml(&format!("web-{i}"), "100m", spread).replace(
            "metadata:\n  name",
            "metadata:\n  labels:\n    app: web\n  name",
        );
        manifests.push_str(&p);
        manifests.push_str("---\n");
    }
    s.ok_stdin(&["apply", "-f", "-"], &manifests);
    let zones: Vec<String> = (0..6)
        .map(|i| node_of(&s, &format!("web-{i}"))[..1].to_string())
        .collect();
    assert_eq!(zones.iter().filter(|z| *z == "a").count(), 3, "{zones:?}");
    assert_eq!(zones.iter().filter(|z| *z == "b").count(), 3, "{zones:?}");
}

#[test]
fn a_pod_with_pod_affinity_waits_for_its_partner_and_joins_its_zone() {
    let s = Server::start_with(&["--runtime", "simulated", "--nodes", "0"]);
    let _a = s.spawn(
        "a",
        &[
            "simulate-nodes",
            "--labels",
            "zone=a",
            "--name-prefix",
            "a-",
        ],
    );
    let _b = s.spawn(
        "b",
        &[
            "simulate-nodes",
            "--labels",
            "zone=b",
            "--name-prefix",
            "b-",
        ],
    );
    wait_nodes(&s, 2);
    let affinity = "  affinity:\n    podAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n      - topologyKey: zone\n        labelSelector:\n          matchLabels:\n            app: cache\n";
    s.ok_stdin(
        &["apply", "-f", "-"],
        &pod_yaml("follower", "100m", affinity),
    );
    let message = eventually("FailedScheduling", WAIT, || {
        event_message(&s, "follower", "FailedScheduling")
    });
    assert_eq!(
        message,
        "0/2 nodes are available: 2 node(s) didn't match pod affinity rules."
    );
    let cache = pod_yaml("cache", "100m", "  nodeSelector:\n    zone: b\n").replace(
        "metadata:\n  name",
        "metadata:\n  labels:\n    app: cache\n  name",
    );
    s.ok_stdin(&["apply", "-f", "-"], &cache);
    assert_eq!(node_of(&s, "cache"), "b-0");
    assert_eq!(node_of(&s, "follower"), "b-0");
}

#[test]
fn a_high_priority_pod_preempts_a_lower_one() {
    let s = Server::start_with(&["--runtime", "simulated", "--nodes", "1", "--cpu", "1"]);
    wait_nodes(&s, 1);
    s.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: high\nvalue: 1000\n---\napiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: low\nvalue: 10\n",
    );
    s.ok_stdin(
        &["apply", "-f", "-"],
        &pod_yaml("victim", "800m", "  priorityClassName: low\n"),
    );
    wait_phase(&s, "victim", "Running");
    s.ok_stdin(
        &["apply", "-f", "-"],
        &pod_yaml("vip", "800m", "  priorityClassName: high\n"),
    );
    assert_eq!(node_of(&s, "vip"), "sim-node-0");
    assert!(
        pod(&s, "victim").is_none(),
        "the victim is gone before the preemptor binds"
    );
    eventually("Preempted for the victim", WAIT, || {
        event_message(&s, "victim", "Preempted")
    });
    wait_phase(&s, "vip", "Running");
}

#[test]
fn an_unschedulable_pod_is_scheduled_when_a_node_joins() {
    let s = Server::start_with(&["--runtime", "simulated", "--nodes", "0"]);
    s.ok_stdin(&["apply", "-f", "-"], &pod_yaml("waiting", "2", ""));
    let message = eventually("FailedScheduling", WAIT, || {
        event_message(&s, "waiting", "FailedScheduling")
    });
    assert_eq!(message, "no nodes available to schedule pods");
    let _small = s.spawn(
        "small",
        &["simulate-nodes", "--cpu", "1", "--name-prefix", "small-"],
    );
    wait_nodes(&s, 1);
    eventually("FailedScheduling on the small node", WAIT, || {
        event_messages(&s, "waiting", "FailedScheduling")
            .contains(&"0/1 nodes are available: 1 Insufficient cpu.".to_string())
            .then_some(())
    });
    let _big = s.spawn(
        "big",
        &["simulate-nodes", "--cpu", "4", "--name-prefix", "big-"],
    );
    assert_eq!(node_of(&s, "waiting"), "big-0");
    wait_phase(&s, "waiting", "Running");
}

#[test]
fn only_the_leader_binds_and_a_standby_takes_over() {
    let s = Server::start_with(&[
        "--runtime",
        "simulated",
        "--nodes",
        "1",
        "--disable-scheduler",
    ]);
    wait_nodes(&s, 1);
    let election = [
        "scheduler",
        "--leader-elect-lease-duration",
        "3s",
        "--leader-elect-renew-deadline",
        "2s",
        "--leader-elect-retry-period",
        "200ms",
    ];
    let mut one = s.spawn("scheduler-1", &election);
    let mut two = s.spawn("scheduler-2", &election);
    let lease = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler";
    let holder = || {
        let (code, v) = s.http("GET", lease, "", b"");
        (code == 200)
            .then(|| v["spec"]["holderIdentity"].as_str().map(str::to_string))
            .flatten()
            .filter(|h| !h.is_empty())
    };
    let first = eventually("a leader", WAIT, holder);
    s.ok_stdin(&["apply", "-f", "-"], &pod_yaml("one", "100m", ""));
    node_of(&s, "one");
    let binders = eventually("the Scheduled event", WAIT, || {
        let events = s.get_json("/api/v1/namespaces/default/events");
        let binders: Vec<String> = events["items"]
            .as_array()?
            .iter()
            .filter(|e| e["reason"] == "Scheduled")
            .filter_map(|e| e["reportingInstance"].as_str().map(str::to_string))
            .collect();
        (!binders.is_empty()).then_some(binders)
    });
    assert_eq!(binders, std::slice::from_ref(&first));

    // The leader stops (and releases the Lease); the other one takes over.
    // Identities are `host_pid`.
    let leader_pid = first.rsplit('_').next().unwrap_or("").to_string();
    let one_led = one.pid().to_string() == leader_pid;
    if one_led {
        one.terminate();
    } else {
        two.terminate();
    }
    let second = eventually("a new leader", WAIT, || holder().filter(|h| *h != first));
    s.ok_stdin(&["apply", "-f", "-"], &pod_yaml("two", "100m", ""));
    node_of(&s, "two");
    let by = eventually("Scheduled event for two", WAIT, || {
        let events = s.get_json("/api/v1/namespaces/default/events");
        events["items"].as_array()?.iter().find_map(|e| {
            (e["reason"] == "Scheduled" && e["involvedObject"]["name"] == "two")
                .then(|| e["reportingInstance"].as_str().unwrap_or("").to_string())
        })
    });
    assert_eq!(by, second);

    // A leader that dies without releasing (SIGKILL) is replaced once its Lease expires.
    let _three = s.spawn("scheduler-3", &election);
    drop(if one_led { two } else { one });
    let deadline = std::time::Instant::now() + WAIT;
    let third = loop {
        if let Some(h) = holder().filter(|h| *h != second) {
            break h;
        }
        if std::time::Instant::now() > deadline {
            let logs: Vec<String> = (1..=3)
                .map(|i| {
                    std::fs::read_to_string(s.data_dir.join(format!("scheduler-{i}.log")))
                        .unwrap_or_default()
                })
                .collect();
            panic!(
                "no leader after expiry; lease {:?}; logs:\n{}",
                s.http("GET", lease, "", b"").1,
                logs.join("\n----\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_ne!(third, first);
}

#[test]
fn a_node_told_to_stop_heartbeating_stops_renewing_its_lease() {
    let s = Server::start_with(&[
        "--runtime",
        "simulated",
        "--nodes",
        "2",
        "--lease-renew-interval",
        "300ms",
        "--disable-scheduler",
    ]);
    wait_nodes(&s, 2);
    let renew = |node: &str| {
        let path = format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}");
        let (code, v) = s.http("GET", &path, "", b"");
        (code == 200)
            .then(|| v["spec"]["renewTime"].as_str().map(str::to_string))
            .flatten()
    };
    let first = eventually("a lease", WAIT, || renew("sim-node-0"));
    eventually("a renewal", WAIT, || {
        renew("sim-node-0").filter(|r| *r != first)
    });
    s.ok(&[
        "annotate",
        "node",
        "sim-node-0",
        "gitplane.io/simulate=stop-heartbeat",
    ]);
    // Let one renewal that was already under way land, then take the last value.
    let mut other = renew("sim-node-1").expect("lease");
    for _ in 0..2 {
        let seen = other.clone();
        other = eventually("the other node to renew", WAIT, || {
            renew("sim-node-1").filter(|r| *r != seen)
        });
    }
    let stopped = renew("sim-node-0").expect("lease");
    for _ in 0..3 {
        let seen = other.clone();
        other = eventually("the other node to renew", WAIT, || {
            renew("sim-node-1").filter(|r| *r != seen)
        });
    }
    assert_eq!(
        renew("sim-node-0").expect("lease"),
        stopped,
        "a stopped node's lease does not move"
    );
}
