//! gitplane on real etcd processes on loopback: several API servers sharing one etcd, and the
//! faults a cluster sees (a member killed under write load, the leader killed, etcd stopped
//! altogether and back).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Server, eventually, http, watch_until};
use serde_json::{Value, json};

const CONFIG_MAPS: &str = "/api/v1/namespaces/default/configmaps";

fn config_map(name: &str, value: &str) -> Vec<u8> {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
           "data": {"v": value}})
    .to_string()
    .into_bytes()
}

fn create(server: &Server, name: &str, value: &str) -> (u16, Value) {
    server.http(
        "POST",
        CONFIG_MAPS,
        "application/json",
        &config_map(name, value),
    )
}

#[test]
fn two_api_servers_on_one_etcd_share_objects_resource_versions_watches_and_crds() {
    let etcd = common::etcd(1);
    let a = Server::start_on(Some(&etcd.store_url()));
    let b = Server::start_on(Some(&etcd.store_url()));

    let (code, created) = create(&a, "first", "1");
    assert_eq!(code, 201, "{created}");
    let on_b = b.get_json(&format!("{CONFIG_MAPS}/first"));
    assert_eq!(
        on_b["metadata"]["resourceVersion"], created["metadata"]["resourceVersion"],
        "a read on B after a write on A sees it, at the same resourceVersion"
    );

    // List on A, then watch on B from that resourceVersion.
    let list = a.get_json(CONFIG_MAPS);
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .expect("list resourceVersion")
        .to_owned();
    let list_rv: u64 = rv.parse().expect("numeric resourceVersion");
    let b_url = b.url.clone();
    let watcher = std::thread::spawn(move || {
        watch_until(
            &b_url,
            &format!("{CONFIG_MAPS}?watch=1&resourceVersion={rv}&timeoutSeconds=30"),
            |e| e["object"]["metadata"]["name"] == "second",
        )
    });
    let (code, second) = create(&a, "second", "2");
    assert_eq!(code, 201, "{second}");
    let events = watcher.join().expect("watcher");
    // (The CA publisher may write `kube-root-ca.crt` into the namespace after the list: that
    // event belongs in the watch; one from before the list would not.)
    let after_list = |e: &Value| {
        e["object"]["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|v| v > list_rv)
    };
    let names: Vec<&str> = events
        .iter()
        .filter(|e| !(e["object"]["metadata"]["name"] == "kube-root-ca.crt" && after_list(e)))
        .filter_map(|e| e["object"]["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["second"],
        "the watch on B starts exactly after A's list"
    );
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(
        events[0]["object"]["metadata"]["resourceVersion"],
        second["metadata"]["resourceVersion"]
    );

    // A CRD created on A becomes served on B.
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object",
                    "x-kubernetes-preserve-unknown-fields": true}}}]}});
    let (code, body) = a.http(
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        "application/json",
        crd.to_string().as_bytes(),
    );
    assert_eq!(code, 201, "{body}");
    let widgets = "/apis/example.com/v1/namespaces/default/widgets";
    let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w1"}, "spec": {"size": 3}});
    eventually(
        "B serves the CRD created on A",
        Duration::from_secs(20),
        || {
            let (code, _) = b.http(
                "POST",
                widgets,
                "application/json",
                widget.to_string().as_bytes(),
            );
            (code == 201).then_some(())
        },
    );
    let on_a = a.get_json(&format!("{widgets}/w1"));
    assert_eq!(
        on_a["spec"]["size"], 3,
        "a custom object created on B is read on A"
    );
}

#[test]
fn stopping_etcd_fails_readyz_and_requests_promptly_and_service_resumes_when_it_returns() {
    let mut etcd = common::etcd(1);
    let server = Server::start_on(Some(&etcd.store_url()));
    assert_eq!(server.http("GET", "/readyz", "", b"").0, 200);
    let (code, body) = create(&server, "before", "1");
    assert_eq!(code, 201, "{body}");

    etcd.kill_all();
    eventually("/readyz to fail", Duration::from_secs(10), || {
        (server.http("GET", "/readyz", "", b"").0 == 503).then_some(())
    });
    for (method, path, body) in [
        ("GET", CONFIG_MAPS.to_owned(), Vec::new()),
        ("GET", format!("{CONFIG_MAPS}/before"), Vec::new()),
        ("POST", CONFIG_MAPS.to_owned(), config_map("during", "2")),
    ] {
        let started = Instant::now();
        let (code, status) = server.http(method, &path, "application/json", &body);
        let took = started.elapsed();
        assert!(
            code == 503 || code == 504,
            "{method} {path} with etcd down answered {code}: {status}"
        );
        assert_eq!(status["kind"], "Status", "{method} {path}: {status}");
        assert!(
            took < Duration::from_secs(15),
            "{method} {path} took {took:?} to fail"
        );
    }

    etcd.restart_all().expect("etcd restarts");
    eventually("service to resume", Duration::from_secs(30), || {
        let (code, _) = create(&server, "after", "3");
        (code == 201).then_some(())
    });
    assert_eq!(server.http("GET", "/readyz", "", b"").0, 200);
    let list = server.get_json(CONFIG_MAPS);
    let names: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert!(
        names.contains(&"before") && names.contains(&"after"),
        "{names:?}"
    );
}

#[test]
fn kubectl_is_told_of_a_stopped_etcd_in_one_request_and_works_again_when_etcd_returns() {
    let mut etcd = common::etcd(1);
    let server = Server::start_on(Some(&etcd.store_url()));
    server.ok(&["create", "configmap", "before", "--from-literal=k=v"]);

    etcd.kill_all();
    let outage = server.http_as(&common::Auth::Admin, "GET", CONFIG_MAPS, b"", &[]);
    assert!(
        outage.code == 503 || outage.code == 504,
        "a list with etcd down answered {}: {}",
        outage.code,
        outage.body
    );
    assert_eq!(outage.body["kind"], "Status", "{}", outage.body);
    assert_eq!(
        outage.headers.get("retry-after"),
        None,
        "an outage carries no Retry-After, which client-go would retry ten times"
    );
    // kubectl logs each response at -v=6: one answer, no retries, and the Status's reason.
    let out = server.kubectl(&["get", "cm", "-v=6"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "kubectl get cm with etcd down succeeded"
    );
    assert!(
        stderr.contains("Error from server (ServiceUnavailable)")
            || stderr.contains("Error from server (Timeout)"),
        "{stderr}"
    );
    let answers = stderr
        .lines()
        .filter(|l| l.contains("configmaps?limit=500") && l.contains("round_trippers"))
        .count();
    assert_eq!(
        answers, 1,
        "kubectl asked once, not again and again: {stderr}"
    );

    etcd.restart_all().expect("etcd restarts");
    let listed = eventually(
        "kubectl get cm to work again",
        Duration::from_secs(30),
        || {
            let out = server.kubectl(&["get", "cm", "-o", "name"]);
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        },
    );
    assert!(listed.contains("configmap/before"), "{listed}");
}

#[test]
fn up_on_etcd_gone_for_a_while_exits_cleanly_after_sigterm() {
    let mut etcd = common::etcd(1);
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("data");
    let store = etcd.store_url();
    let mut server = Server::start_in_with(
        &dir,
        &[
            &format!("--store={store}"),
            "--runtime",
            "simulated",
            "--nodes",
            "1",
        ],
    );
    // Fully up (the welcome is printed once every component runs), with its node.
    eventually("up to be up", Duration::from_secs(60), || {
        let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
        log.contains("gitplane is up on").then_some(())
    });
    eventually("the simulated node", Duration::from_secs(30), || {
        server
            .ok(&["get", "nodes", "-o", "name"])
            .contains("node/")
            .then_some(())
    });
    etcd.kill_all();
    eventually("/readyz to fail", Duration::from_secs(10), || {
        (server.http("GET", "/readyz", "", b"").0 == 503).then_some(())
    });
    // The scenario is an outage of some length, not a wait for a condition: after about 20 s
    // without etcd (the watch cache has failed over twice, the components are in their retry
    // loops) the simulated nodes never stopped and `up` was still there minutes after SIGTERM.
    std::thread::sleep(Duration::from_secs(20));
    // `terminate` fails the test when the process is still there a minute after SIGTERM.
    let status = server.terminate();
    assert!(
        status.success(),
        "up exited with {status} (1: a component outlived its deadline); see {}",
        dir.join("server.log").display()
    );
}

#[test]
fn writes_go_on_when_a_follower_of_three_members_is_killed() {
    kill_a_member_under_write_load(false);
}

#[test]
fn writes_go_on_when_the_leader_of_three_members_is_killed() {
    kill_a_member_under_write_load(true);
}

/// Four writers create ConfigMaps through one API server on a three-member etcd; a member (the
/// leader, or another) is killed with SIGKILL mid-load. Writes must go on (at least 100 more
/// acknowledged after the kill) and every acknowledged write must be there.
fn kill_a_member_under_write_load(leader: bool) {
    const WRITERS: usize = 4;
    let mut etcd = common::etcd(3);
    let server = Server::start_on(Some(&etcd.store_url()));
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(120);
    let workers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (url, acked, count, stop) = (
                server.url.clone(),
                acked.clone(),
                count.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let (name, value) = (format!("w{w}-{i}"), format!("value-{w}-{i}"));
                    i += 1;
                    let (code, _) = http(
                        &url,
                        "POST",
                        CONFIG_MAPS,
                        "application/json",
                        &config_map(&name, &value),
                    );
                    // Anything but 201 is not acknowledged (503/504 while etcd elects).
                    if code == 201 {
                        acked.lock().expect("lock").push((name, value));
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    eventually("100 acknowledged writes", Duration::from_secs(60), || {
        (count.load(Ordering::Relaxed) >= 100).then_some(())
    });
    let victim = if leader {
        etcd.leader().expect("a leader")
    } else {
        let leader = etcd.leader().expect("a leader");
        (leader + 1) % etcd.size()
    };
    etcd.kill(victim);
    let at_kill = count.load(Ordering::Relaxed);
    eventually(
        "100 more acknowledged writes after the kill",
        Duration::from_secs(60),
        || (count.load(Ordering::Relaxed) >= at_kill + 100).then_some(()),
    );
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("writer");
    }

    let list = server.get_json(CONFIG_MAPS);
    let stored: HashMap<String, String> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            (
                i["metadata"]["name"].as_str().unwrap_or("").to_owned(),
                i["data"]["v"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let acked = acked.lock().expect("lock").clone();
    let lost: Vec<_> = acked
        .iter()
        .filter(|(n, v)| stored.get(n) != Some(v))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        lost.first()
    );
}
