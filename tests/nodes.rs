//! The node agent and the process runtime end to end: `gitplane up` with its local node (or a
//! separate `gitplane runtime` and `gitplane node`), real processes, the real kubectl. Where the
//! tests run as root with `ip` available, pods get network namespaces (the agent's default),
//! and the tests check those are cleaned up too.

mod common;

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use common::{Server, eventually, free_port, pod_json, pod_ready as ready};
use serde_json::Value;

/// A server stopped cleanly when dropped, so that its node stops the pods' processes even
/// when a test fails.
struct Up(Server);

impl Deref for Up {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.0
    }
}

impl DerefMut for Up {
    fn deref_mut(&mut self) -> &mut Server {
        &mut self.0
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        self.0.stop();
    }
}

fn up(extra: &[&str]) -> Up {
    let mut args = vec!["--node-name", "local"];
    if !extra.contains(&"--runtime") {
        args.extend(["--runtime", "process"]);
    }
    args.extend_from_slice(extra);
    Up(Server::start_with(&args))
}

fn wait_pod(s: &Server, name: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    common::wait_pod(s, name, what, Duration::from_secs(60), f)
}

fn running(p: &Value) -> bool {
    p["status"]["phase"] == "Running"
}

/// Whether the process is gone (or a zombie waiting for its parent).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Live processes whose command line contains `marker`, not counting the runtime's shims
/// (`gitplane shim … -- COMMAND` carries its container's command line too).
fn processes(marker: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(marker) && !cmdline.contains(" shim --parent ") && !gone(pid) {
            out.push(pid);
        }
    }
    out
}

fn netns_available() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        && std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .is_ok_and(|o| o.status.success())
}

fn netns_list() -> String {
    std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

#[test]
fn a_pod_serving_http_becomes_running_and_ready_through_its_readiness_probe() {
    let s = up(&[]);
    let port = free_port();
    s.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: web}}
spec:
  containers:
  - name: web
    image: python
    command: [python3, -m, http.server, "{port}"]
    readinessProbe:
      httpGet: {{path: /, port: {port}}}
      periodSeconds: 1
"#
        ),
    );
    let p = wait_pod(&s, "web", "Running and Ready", |p| running(p) && ready(p));
    assert_eq!(p["spec"]["nodeName"], "local");
    assert_eq!(p["status"]["containerStatuses"][0]["ready"], true);
    assert_eq!(p["status"]["hostIP"], "127.0.0.1");
    let ip = p["status"]["podIP"].as_str().expect("a pod IP").to_string();
    let nodes = s.ok(&["get", "nodes", "-o", "name"]);
    assert_eq!(nodes.trim(), "node/local");
    if netns_available() {
        assert!(ip.starts_with("10.88."), "pod IP {ip}");
        let node: Value =
            serde_json::from_str(&s.ok(&["get", "node", "local", "-o", "json"])).expect("json");
        let cidr = node["spec"]["podCIDR"]
            .as_str()
            .expect("a pod CIDR")
            .to_string();
        let n = cidr.split('.').nth(2).unwrap_or("");
        let bridge = format!("gpbr{n}");
        assert!(link_exists(&bridge), "{bridge} exists");
        let pods_ns = netns_list();
        assert!(
            pods_ns.contains(&format!("gp{n}-")),
            "a pod network namespace: {pods_ns}"
        );
    }
    // `kubectl run` reaches Running on the local node too.
    s.ok(&[
        "run",
        "sleeper",
        "--image=x",
        "--command",
        "--",
        "sleep",
        "1000",
    ]);
    wait_pod(&s, "sleeper", "Running", running);
}

#[test]
fn a_pod_network_namespace_and_its_veth_go_away_with_the_pod() {
    if !netns_available() {
        eprintln!("skipped: pod networks need root and ip");
        return;
    }
    let s = up(&[]);
    s.ok(&[
        "run",
        "net",
        "--image=x",
        "--command",
        "--",
        "sleep",
        "1000",
    ]);
    let p = wait_pod(&s, "net", "Running", running);
    let pid_line = p["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(pid_line.starts_with("process://"));
    // The sandbox's namespace is named after its id; find the one holding our sleep.
    let ns: Vec<String> = netns_list()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|n| n.starts_with("gp") && n.contains('-'))
        .filter(|n| {
            std::process::Command::new("ip")
                .args(["netns", "pids", n])
                .output()
                .is_ok_and(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .filter_map(|p| p.trim().parse::<u32>().ok())
                        .any(|pid| {
                            std::fs::read(format!("/proc/{pid}/environ"))
                                .map(|e| String::from_utf8_lossy(&e).contains("HOSTNAME=net\0"))
                                .unwrap_or(false)
                        })
                })
        })
        .collect();
    assert_eq!(ns.len(), 1, "one namespace holds the pod's process: {ns:?}");
    let veth = format!("gv{}", ns[0].split_once('-').map_or("", |(_, id)| id));
    assert!(link_exists(&veth), "{veth} exists");
    s.ok(&["delete", "pod", "net"]);
    eventually(
        "the namespace and veth to go",
        Duration::from_secs(30),
        || (!netns_list().contains(&ns[0]) && !link_exists(&veth)).then_some(()),
    );
}

/// The prefix of the pod network namespaces of the node `local` of `s` (`gp<N>-` for its pod
/// CIDR 10.88.N.0/24): other tests' runtimes, running at the same time, have their own N.
fn netns_prefix(s: &Server) -> String {
    let node: Value =
        serde_json::from_str(&s.ok(&["get", "node", "local", "-o", "json"])).expect("json");
    let cidr = node["spec"]["podCIDR"].as_str().expect("a pod CIDR");
    format!("gp{}-", cidr.split('.').nth(2).unwrap_or(""))
}

/// The network namespaces named with `prefix`.
fn netns_with(prefix: &str) -> Vec<String> {
    netns_list()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// The namespace (named with `prefix`) holding a process of pod `pod` (its `HOSTNAME`).
fn netns_of(prefix: &str, pod: &str) -> Option<String> {
    let marker = format!("HOSTNAME={pod}\0");
    netns_with(prefix).into_iter().find(|n| {
        std::process::Command::new("ip")
            .args(["netns", "pids", n])
            .output()
            .is_ok_and(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter_map(|p| p.trim().parse::<u32>().ok())
                    .any(|pid| {
                        std::fs::read(format!("/proc/{pid}/environ"))
                            .is_ok_and(|e| String::from_utf8_lossy(&e).contains(&marker))
                    })
            })
    })
}

#[test]
fn pod_network_namespaces_go_with_their_pod_a_killed_runtime_and_a_stopped_one() {
    if !netns_available() {
        eprintln!("skipped: pod networks need root and ip");
        return;
    }
    let s = Server::start_with(&["--node-name", "local", "--runtime", "process"]);
    for name in ["one", "two"] {
        s.ok(&["run", name, "--image=x", "--command", "--", "sleep", "1000"]);
    }
    wait_pod(&s, "one", "Running", running);
    wait_pod(&s, "two", "Running", running);
    let prefix = netns_prefix(&s);
    let find = |pod: &str| {
        eventually(
            &format!("the network namespace of {pod}"),
            Duration::from_secs(30),
            || netns_of(&prefix, pod),
        )
    };
    let (one, two) = (find("one"), find("two"));
    assert_ne!(one, two);
    // Pod deletion removes its namespace.
    s.ok(&["delete", "pod", "one", "--wait=true"]);
    eventually("one's namespace to go", Duration::from_secs(30), || {
        (!netns_list().contains(&one)).then_some(())
    });
    // A runtime killed with SIGKILL cleans up nothing; the next runtime to start does (the
    // namespaces of all the node's pods before the kill, the playground's too). Whether they
    // are still there right after the kill is not asserted: any runtime that starts sweeps
    // what killed ones left, and other tests of this binary start runtimes in parallel (one
    // did, between the kill and the check, in a full run on 2026-12-04).
    let before_kill = netns_with(&prefix);
    assert!(before_kill.contains(&two), "{before_kill:?}");
    let (dir, tmp) = s.into_data();
    let mut s = Up(Server::start_in_with(
        &dir,
        &["--node-name", "local", "--runtime", "process"],
    ));
    eventually(
        "the killed runtime's namespaces to be swept",
        Duration::from_secs(60),
        || {
            let list = netns_list();
            before_kill
                .iter()
                .all(|n| !list.contains(n.as_str()))
                .then_some(())
        },
    );
    // The new runtime runs the pod again, in a namespace of its own.
    let prefix = netns_prefix(&s);
    let again = eventually("two's new namespace", Duration::from_secs(60), || {
        netns_of(&prefix, "two")
    });
    assert_ne!(again, two);
    // A clean stop removes the namespaces of the pods it stops.
    s.stop();
    let left = netns_with(&prefix);
    assert!(left.is_empty(), "a stopped runtime left {left:?}");
    drop(tmp);
}

#[test]
fn a_crashing_container_backs_off_and_kubectl_logs_previous_shows_its_last_output() {
    let s = up(&[]);
    s.ok(&[
        "run",
        "crash",
        "--image=x",
        "--command",
        "--",
        "sh",
        "-c",
        "echo attempt-output; exit 3",
    ]);
    let p = wait_pod(&s, "crash", "CrashLoopBackOff after a restart", |p| {
        let c = &p["status"]["containerStatuses"][0];
        c["restartCount"].as_i64().unwrap_or(0) >= 1
            && c["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    });
    let c = &p["status"]["containerStatuses"][0];
    assert_eq!(c["lastState"]["terminated"]["exitCode"], 3);
    let previous = s.ok(&["logs", "crash", "--previous"]);
    assert_eq!(previous.trim(), "attempt-output");
    let table = s.ok(&["get", "pod", "crash"]);
    assert!(table.contains("CrashLoopBackOff"), "{table}");
}

#[test]
fn a_failing_liveness_probe_restarts_the_container() {
    let s = up(&[]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: live}
spec:
  containers:
  - name: c
    image: x
    command: [sleep, "1000"]
    livenessProbe:
      exec: {command: [sh, -c, "exit 1"]}
      periodSeconds: 1
      failureThreshold: 1
"#,
    );
    wait_pod(&s, "live", "restarted by its liveness probe", |p| {
        p["status"]["containerStatuses"][0]["restartCount"]
            .as_i64()
            .unwrap_or(0)
            >= 1
    });
    let events = s.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=live",
    ]);
    assert!(events.contains("Liveness probe failed"), "{events}");
}

#[test]
fn deleting_a_pod_stops_its_processes_and_their_children_within_the_grace_period() {
    let s = up(&[]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: stubborn}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: c
    image: x
    command: [sh, -c, 'trap "" TERM; sleep 1000 & echo pids $$$$ $!; wait; wait']
"#,
    );
    wait_pod(&s, "stubborn", "Running", running);
    let pids: Vec<u32> = eventually("the pids in the log", Duration::from_secs(30), || {
        let out = s.kubectl(&["logs", "stubborn"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let line = text.lines().find(|l| l.starts_with("pids "))?.to_string();
        let pids: Vec<u32> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|p| p.parse().ok())
            .collect();
        (pids.len() == 2).then_some(pids)
    });
    assert!(pids.iter().all(|p| !gone(*p)), "both processes run");
    // kubectl waits for the pod to go, which the agent does once the processes are stopped
    // (SIGTERM is ignored here, so SIGKILL after the 2 s grace period).
    s.ok(&["delete", "pod", "stubborn", "--wait=true"]);
    for pid in &pids {
        assert!(gone(*pid), "process {pid} is gone after the delete");
    }
}

#[test]
fn an_agent_restarted_over_a_live_runtime_leaves_exactly_the_expected_processes() {
    let s = up(&["--runtime", "none"]);
    let dir = s.data_dir.join("node");
    let socket = dir.join("rt.sock");
    let socket = socket.to_str().expect("utf-8 path");
    let root = dir.join("runtime");
    let mut runtime = s.spawn_plain(
        "runtime",
        &[
            "runtime",
            "--socket",
            socket,
            "--root",
            root.to_str().expect("utf-8"),
            "--pod-network",
            "host",
        ],
    );
    let node_dir = dir.join("agent");
    let node_args = [
        "node",
        "--name",
        "n1",
        "--runtime-endpoint",
        socket,
        "--data-dir",
        node_dir.to_str().expect("utf-8"),
    ];
    let agent = s.spawn("node", &node_args);
    let marker = format!("{}", 7_000_000 + std::process::id() % 1_000_000);
    for name in ["keep", "drop"] {
        s.ok(&[
            "run",
            name,
            "--image=x",
            "--command",
            "--",
            "sleep",
            &marker,
        ]);
    }
    for name in ["keep", "drop"] {
        wait_pod(&s, name, "Running", running);
    }
    let id_of = |name: &str| {
        pod_json(&s, name).expect("pod")["status"]["containerStatuses"][0]["containerID"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let keep_id = id_of("keep");
    assert_eq!(processes(&format!("sleep {marker}")).len(), 2);
    drop(agent); // SIGKILL
    // While the agent is down one pod is deleted (it waits for the agent to finish it).
    let out = s.kubectl(&["delete", "pod", "drop", "--wait=false"]);
    assert!(out.status.success());
    let _agent = s.spawn("node2", &node_args);
    eventually("the deleted pod to go", Duration::from_secs(60), || {
        (!s.kubectl(&["get", "pod", "drop"]).status.success()).then_some(())
    });
    eventually("exactly one process left", Duration::from_secs(30), || {
        (processes(&format!("sleep {marker}")).len() == 1).then_some(())
    });
    let p = wait_pod(&s, "keep", "still Running", running);
    assert_eq!(
        id_of("keep"),
        keep_id,
        "the container was adopted, not restarted"
    );
    assert_eq!(p["status"]["containerStatuses"][0]["restartCount"], 0);
    s.ok(&["delete", "pod", "keep"]);
    eventually("no process left", Duration::from_secs(30), || {
        processes(&format!("sleep {marker}"))
            .is_empty()
            .then_some(())
    });
    // A clean stop, so the runtime stops every container it still runs (the playground's pods
    // landed on this node too); a SIGKILL would leave them running.
    runtime.terminate();
}

#[test]
fn a_runtime_killed_twice_under_its_agent_runs_the_pods_again_and_leaves_nothing() {
    let s = up(&["--runtime", "none"]);
    let dir = s.data_dir.join("node");
    let socket = dir.join("rt.sock");
    let socket = socket.to_str().expect("utf-8 path");
    let root = dir.join("runtime");
    let runtime_args = [
        "runtime",
        "--socket",
        socket,
        "--root",
        root.to_str().expect("utf-8"),
        "--pod-network",
        "host",
    ];
    let mut runtime = s.spawn_plain("runtime", &runtime_args);
    let node_dir = dir.join("agent");
    let _agent = s.spawn(
        "node",
        &[
            "node",
            "--name",
            "n1",
            "--runtime-endpoint",
            socket,
            "--data-dir",
            node_dir.to_str().expect("utf-8"),
        ],
    );
    let marker = format!("{}", 6_000_000 + std::process::id() % 1_000_000);
    let sleeper = format!("sleep {marker}");
    s.ok(&[
        "run",
        "twice",
        "--image=x",
        "--command",
        "--",
        "sleep",
        &marker,
    ]);
    wait_pod(&s, "twice", "Running", running);
    let id_of = || {
        pod_json(&s, "twice").expect("pod")["status"]["containerStatuses"][0]["containerID"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    for round in 1..=2 {
        let before = id_of();
        assert_eq!(processes(&sleeper).len(), 1, "round {round}");
        drop(runtime); // SIGKILL: its containers die with it (each under a shim)
        eventually(
            "the container to die with its runtime",
            Duration::from_secs(30),
            || processes(&sleeper).is_empty().then_some(()),
        );
        runtime = s.spawn_plain(&format!("runtime-{round}"), &runtime_args);
        // The agent notices the sandbox is gone and runs the pod again on the new runtime
        // (a pull failing while no runtime answers starts no back-off).
        eventually(
            "the pod running again on the new runtime",
            Duration::from_secs(60),
            || {
                let p = pod_json(&s, "twice")?;
                let id = p["status"]["containerStatuses"][0]["containerID"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                (running(&p)
                    && p["status"]["containerStatuses"][0]["ready"] == true
                    && !id.is_empty()
                    && id != before
                    && processes(&sleeper).len() == 1)
                    .then_some(())
            },
        );
    }
    // A clean stop of the runtime stops what it runs (the playground's pods too).
    runtime.terminate();
    eventually(
        "no process left after the clean stop",
        Duration::from_secs(30),
        || processes(&sleeper).is_empty().then_some(()),
    );
}

#[test]
fn kubectl_logs_follows_tails_picks_containers_and_adds_timestamps() {
    let s = up(&[]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: talk}
spec:
  containers:
  - name: a
    image: x
    command: [sh, -c, 'echo one; echo two; echo three; sleep 1000']
  - name: b
    image: x
    command: [sh, -c, 'echo from-b; sleep 1000']
  - name: slow
    image: x
    command: [sh, -c, 'echo start; sleep 3; echo end; sleep 1000']
"#,
    );
    wait_pod(&s, "talk", "Running", running);
    let a = eventually("a's three lines", Duration::from_secs(30), || {
        let out = s.ok(&["logs", "talk", "-c", "a"]);
        (out.lines().count() == 3).then_some(out)
    });
    assert_eq!(a, "one\ntwo\nthree\n");
    assert_eq!(s.ok(&["logs", "talk", "-c", "a", "--tail", "1"]), "three\n");
    assert_eq!(s.ok(&["logs", "talk", "-c", "b"]), "from-b\n");
    let stamped = s.ok(&["logs", "talk", "-c", "b", "--timestamps"]);
    let (time, text) = stamped.trim().split_once(' ').expect("a timestamp");
    assert_eq!(text, "from-b");
    assert!(time.parse::<jiff::Timestamp>().is_ok(), "{time}");
    // Follow: the line written three seconds later arrives on the open stream.
    let mut follow = common::kubectl_command()
        .arg("--kubeconfig")
        .arg(s.kubeconfig())
        .args(["logs", "-f", "talk", "-c", "slow"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl logs -f");
    let stdout = follow.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    eventually(
        "start and end on the followed stream",
        Duration::from_secs(30),
        || {
            while let Ok(l) = rx.try_recv() {
                seen.push(l);
            }
            (seen.contains(&"start".to_string()) && seen.contains(&"end".to_string())).then_some(())
        },
    );
    let _ = follow.kill();
    let _ = follow.wait();
    // Without -c, kubectl picks the first container.
    assert_eq!(s.ok(&["logs", "talk", "--tail", "1"]), "three\n");
}

#[test]
fn environment_and_volume_files_reach_the_process() {
    let s = up(&[]);
    s.ok(&[
        "create",
        "configmap",
        "cm",
        "--from-literal=a=1",
        "--from-literal=b=2",
    ]);
    s.ok(&[
        "create",
        "secret",
        "generic",
        "sec",
        "--from-literal=token=s3cret",
    ]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Service
metadata: {name: my-db}
spec:
  clusterIP: 127.96.0.50
  ports: [{name: sql, port: 5432}]
---
apiVersion: v1
kind: Pod
metadata: {name: env, labels: {app: env}}
spec:
  volumes:
  - name: cfg
    configMap: {name: cm, defaultMode: 0640}
  - name: sec
    secret:
      secretName: sec
      items: [{key: token, path: tok, mode: 0600}]
  - name: info
    downwardAPI:
      items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]
  containers:
  - name: c
    image: x
    command: [sh, -c]
    args:
    - >-
      echo "FOO=$FOO NAME=$NAME CM_A=$CM_A FROM_b=$FROM_b SEC=$SEC EXPANDED=$(NAME)";
      echo "DB=$MY_DB_SERVICE_HOST:$MY_DB_SERVICE_PORT_SQL";
      stat -c '%a %n' $GITPLANE_ROOT/etc/cfg/a $GITPLANE_ROOT/etc/sec/tok;
      echo "tok=$(cat $GITPLANE_ROOT/etc/sec/tok) a=$(cat $GITPLANE_ROOT/etc/cfg/a)";
      cat $GITPLANE_ROOT/info/labels; echo; sleep 1000
    env:
    - {name: FOO, value: bar}
    - name: NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    - name: CM_A
      valueFrom: {configMapKeyRef: {name: cm, key: a}}
    - name: SEC
      valueFrom: {secretKeyRef: {name: sec, key: token}}
    envFrom:
    - {prefix: FROM_, configMapRef: {name: cm}}
    volumeMounts:
    - {name: cfg, mountPath: /etc/cfg}
    - {name: sec, mountPath: /etc/sec}
    - {name: info, mountPath: /info}
"#,
    );
    wait_pod(&s, "env", "Running", running);
    let out = eventually("the output", Duration::from_secs(30), || {
        let out = s.ok(&["logs", "env"]);
        out.contains("app=").then_some(out)
    });
    assert!(
        out.contains("FOO=bar NAME=env CM_A=1 FROM_b=2 SEC=s3cret EXPANDED=env"),
        "{out}"
    );
    assert!(out.contains("DB=127.96.0.50:5432"), "{out}");
    assert!(out.contains("640 ") && out.contains("/etc/cfg/a"), "{out}");
    assert!(
        out.contains("600 ") && out.contains("/etc/sec/tok"),
        "{out}"
    );
    assert!(out.contains("tok=s3cret a=1"), "{out}");
    assert!(out.contains("app=\"env\""), "{out}");
}

#[test]
fn init_containers_run_in_order_before_the_containers() {
    let s = up(&[]);
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: init}
spec:
  volumes: [{name: work, emptyDir: {}}]
  initContainers:
  - name: first
    image: x
    command: [sh, -c, 'sleep 1; echo first >> $GITPLANE_ROOT/work/order']
    volumeMounts: [{name: work, mountPath: /work}]
  - name: second
    image: x
    command: [sh, -c, 'echo second >> $GITPLANE_ROOT/work/order']
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: main
    image: x
    command: [sh, -c, 'cat $GITPLANE_ROOT/work/order; sleep 1000']
    volumeMounts: [{name: work, mountPath: /work}]
"#,
    );
    let p = wait_pod(&s, "init", "Running", running);
    let inits = p["status"]["initContainerStatuses"]
        .as_array()
        .expect("init statuses");
    assert_eq!(inits.len(), 2);
    for i in inits {
        assert_eq!(i["state"]["terminated"]["exitCode"], 0, "{i}");
    }
    let out = eventually("main's output", Duration::from_secs(30), || {
        let out = s.ok(&["logs", "init", "-c", "main"]);
        (out.lines().count() == 2).then_some(out)
    });
    assert_eq!(out, "first\nsecond\n");
    assert_eq!(s.ok(&["logs", "init", "-c", "first"]), "");
}

#[test]
fn a_container_without_a_command_gets_an_error_event() {
    let s = up(&[]);
    s.ok(&["run", "nocmd", "--image=nginx"]);
    let p = wait_pod(&s, "nocmd", "a waiting reason", |p| {
        p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CreateContainerError"
    });
    assert_eq!(p["status"]["phase"], "Pending");
    let events = eventually("the Failed event", Duration::from_secs(30), || {
        let e = s.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=nocmd",
        ]);
        e.contains("has no command").then_some(e)
    });
    assert!(events.contains("Failed"), "{events}");
}

/// Live processes whose working directory is under `dir` (the pods' processes of a data dir).
fn processes_in(dir: &std::path::Path) -> Vec<u32> {
    let dir = dir.canonicalize().expect("data dir");
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let in_dir =
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c.starts_with(&dir));
        if in_dir && !gone(pid) {
            out.push(pid);
        }
    }
    out
}

#[test]
fn pod_processes_die_with_up_killed_twice_in_a_row_and_none_is_left_after_a_clean_stop() {
    let args = ["--node-name", "local", "--runtime", "process"];
    let mut s = Server::start_with(&args);
    let dir = s.data_dir.clone();
    let mut keep = None;
    // A shell and its child, so the whole process group is counted, not only the main process.
    s.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: survivor}
spec:
  containers:
  - name: c
    image: x
    command: [sh, -c, 'sleep 1000 & wait']
"#,
    );
    for round in 1..=2 {
        wait_pod(&s, "survivor", "Running", running);
        let pids = eventually(
            &format!("round {round}: the pod's processes"),
            Duration::from_secs(30),
            || {
                let p = processes_in(&dir);
                (p.len() >= 2).then_some(p)
            },
        );
        let (_, tmp) = s.into_data(); // SIGKILL
        keep = keep.or(tmp);
        eventually(
            &format!("round {round}: the processes {pids:?} to die with the killed up"),
            Duration::from_secs(30),
            || pids.iter().all(|p| gone(*p)).then_some(()),
        );
        s = Server::start_in_with(&dir, &args);
    }
    wait_pod(&s, "survivor", "Running after the second restart", running);
    s.stop();
    let left = processes_in(&dir);
    assert!(
        left.is_empty(),
        "processes left after the clean stop: {left:?}"
    );
    drop(keep);
}
