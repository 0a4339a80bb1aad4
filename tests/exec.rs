//! Into the running pod with the real kubectl: `kubectl exec` (exit codes, stdin, a TTY under
//! `script`), `kubectl cp` both ways, `kubectl attach` to a container reading its stdin and
//! `kubectl debug -it`, RBAC on `pods/exec`, the node agent refusing anyone but
//! the API server, and the clear error of a simulated node. `gitplane up` runs a local node on
//! the process runtime.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{Server, eventually};

/// A server stopped cleanly when dropped, so its node stops the pods' processes.
struct Up(Server);

impl Drop for Up {
    fn drop(&mut self) {
        self.0.stop();
    }
}

fn up(extra: &[&str]) -> Up {
    let mut args = vec!["--node-name", "local"];
    args.extend_from_slice(extra);
    Up(Server::start_with(&args))
}

/// Creates a pod that sleeps and waits for it to run.
fn sleeper(s: &Server, name: &str) {
    s.ok(&[
        "run",
        name,
        "--image=busybox",
        "--command",
        "--",
        "sleep",
        "100000",
    ]);
    eventually(
        &format!("pod {name} Running"),
        Duration::from_secs(60),
        || {
            let out = s.kubectl(&["get", "pod", name, "-o", "jsonpath={.status.phase}"]);
            (String::from_utf8_lossy(&out.stdout) == "Running").then_some(())
        },
    );
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `kubectl ARGS` on a pseudo-terminal (util-linux `script`), with `input` typed in.
fn kubectl_on_a_terminal(s: &Server, args: &str, input: &str) -> Output {
    let found = Command::new("script").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "`script` is required for the TTY test: apt-get install bsdutils (util-linux)"
    );
    let command = format!("kubectl --kubeconfig {} {args}", s.kubeconfig().display());
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run script");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(input.as_bytes())
            .expect("type into the terminal");
    }
    child.wait_with_output().expect("script output")
}

#[test]
fn exec_runs_in_the_pod_with_its_exit_code_stdin_a_terminal_and_cp_both_ways() {
    let s = up(&["--runtime", "process"]);
    sleeper(&s.0, "box");

    // The command runs in the container's context and its exit code is kubectl's.
    let out =
        s.0.kubectl(&["exec", "box", "--", "sh", "-c", "echo $HOSTNAME; exit 3"]);
    assert_eq!(text(&out.stdout), "box\n", "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let out =
        s.0.kubectl(&["exec", "box", "--", "sh", "-c", "echo oops >&2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "oops\n");

    // Standard input reaches the process, and its end closes the process's stdin (v5).
    let out = s.0.kubectl_stdin(
        &[
            "exec",
            "-i",
            "box",
            "--",
            "sh",
            "-c",
            "tr a-z A-Z; echo end",
        ],
        Some("hello stdin\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "HELLO STDIN\nend\n");

    // `-it` gets a real pseudo-terminal: an interactive shell reads what is typed.
    let out = kubectl_on_a_terminal(&s.0, "exec -it box -- sh", "tty\nexit 7\n");
    let shown = text(&out.stdout);
    assert!(shown.contains("/dev/pts/"), "no terminal in: {shown}");
    assert_eq!(out.status.code(), Some(7), "{shown}");

    // kubectl cp (tar through exec) into the pod and back out.
    let dir = tempfile::tempdir().expect("temp dir");
    let local = dir.path().join("in.txt");
    std::fs::write(&local, "copied in\n").expect("write file");
    let remote = dir.path().join("in-pod.txt");
    let target = format!("box:{}", remote.display());
    s.0.ok(&["cp", local.to_str().expect("utf-8"), &target]);
    let out =
        s.0.ok(&["exec", "box", "--", "cat", remote.to_str().expect("utf-8")]);
    assert_eq!(out, "copied in\n");
    s.0.ok(&[
        "exec",
        "box",
        "--",
        "sh",
        "-c",
        &format!("echo made in the pod > {}/out.txt", dir.path().display()),
    ]);
    let back = dir.path().join("back.txt");
    s.0.ok(&[
        "cp",
        &format!("box:{}/out.txt", dir.path().display()),
        back.to_str().expect("utf-8"),
    ]);
    assert_eq!(
        std::fs::read_to_string(&back).expect("copied out"),
        "made in the pod\n"
    );

    // A command that does not exist fails with kubectl's error, not a hang.
    let out = s.0.kubectl(&["exec", "box", "--", "no-such-command-here"]);
    assert!(!out.status.success());
}

#[test]
fn attach_joins_a_container_reading_its_stdin_and_debug_it_runs_a_shell() {
    let s = up(&["--runtime", "process"]);
    s.0.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: echo}
spec:
  restartPolicy: Never
  containers:
  - name: echo
    image: busybox
    stdin: true
    stdinOnce: true
    command: [sh, -c, 'while read line; do echo "got $line"; done; echo bye >&2']
"#,
    );
    eventually("pod echo Running", Duration::from_secs(60), || {
        let out =
            s.0.kubectl(&["get", "pod", "echo", "-o", "jsonpath={.status.phase}"]);
        (text(&out.stdout) == "Running").then_some(())
    });
    // What is typed reaches the container; closing stdin (stdinOnce) ends it, and its exit
    // ends the attach.
    let out = s.0.kubectl_stdin(
        &["attach", "-i", "echo"],
        Some("hello attach\nsecond line\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "got hello attach\ngot second line\n");
    assert!(text(&out.stderr).contains("bye"), "{}", text(&out.stderr));

    // `kubectl debug -it` adds an ephemeral container with stdin and a TTY and attaches.
    sleeper(&s.0, "box");
    let out = kubectl_on_a_terminal(
        &s.0,
        "debug -it box --image=busybox --container=dbg -- sh",
        "echo debugging in $HOSTNAME\nexit 0\n",
    );
    let shown = text(&out.stdout);
    assert!(shown.contains("debugging in box"), "{shown}");
}

#[test]
fn exec_needs_create_on_pods_exec_and_the_node_agent_serves_the_api_server_only() {
    let s = up(&["--runtime", "process"]);
    sleeper(&s.0, "box");
    s.0.ok(&[
        "create",
        "role",
        "reader",
        "--verb=get,list",
        "--resource=pods",
    ]);
    s.0.ok(&[
        "create",
        "rolebinding",
        "jane",
        "--role=reader",
        "--user=jane",
    ]);
    s.0.ok(&["--as", "jane", "get", "pod", "box"]);
    let out = s.0.kubectl(&["--as", "jane", "exec", "box", "--", "true"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(r#"cannot create resource "pods/exec""#),
        "unexpected error: {err}"
    );
    s.0.ok(&[
        "create",
        "role",
        "exec",
        "--verb=create,get",
        "--resource=pods/exec",
    ]);
    s.0.ok(&[
        "create",
        "rolebinding",
        "jane-exec",
        "--role=exec",
        "--user=jane",
    ]);
    let out = eventually("jane may exec", Duration::from_secs(10), || {
        let out =
            s.0.kubectl(&["--as", "jane", "exec", "box", "--", "echo", "allowed"]);
        out.status.success().then_some(out)
    });
    assert_eq!(text(&out.stdout), "allowed\n");

    // The agent's port takes the API server's certificate only: none fails the handshake,
    // the administrator's (same CA, another user) gets 403.
    let port = s.0.ok(&[
        "get",
        "node",
        "local",
        "-o",
        "jsonpath={.status.daemonEndpoints.kubeletEndpoint.Port}",
    ]);
    let url = format!("https://127.0.0.1:{port}/containerLogs/default/box/box");
    let curl = |extra: &[&str]| {
        Command::new("curl")
            .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(extra)
            .arg(&url)
            .output()
            .expect("curl is required: apt-get install curl")
    };
    let anonymous = curl(&[]);
    assert!(
        !anonymous.status.success(),
        "the agent served a client without a certificate"
    );
    let pki = s.0.data_dir.join("pki");
    let admin = curl(&[
        "--cert",
        pki.join("admin.crt").to_str().expect("utf-8"),
        "--key",
        pki.join("admin.key").to_str().expect("utf-8"),
    ]);
    assert_eq!(text(&admin.stdout), "403");
    // Through the API server, logs still work.
    s.0.ok(&["logs", "box"]);
}

#[test]
fn exec_into_a_pod_on_a_simulated_node_is_a_clear_error() {
    let s = up(&["--runtime", "simulated", "--nodes", "1"]);
    sleeper(&s.0, "ghost");
    let out = s.0.kubectl(&["exec", "ghost", "--", "true"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("exec is not supported on simulated nodes"),
        "unexpected error: {err}"
    );
}
