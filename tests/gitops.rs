//! GitOps end to end: real Git repositories in temp dirs, the real server running the syncer
//! (`gitplane up --repo`), kubectl and the gitplane CLI.

mod common;

use std::time::Duration;

use common::{GitRepo, Server, eventually, gitplane};

fn cm(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  value: \"{value}\"\n"
    )
}

fn value_of(s: &Server, name: &str) -> Option<String> {
    let out = s.kubectl(&["get", "cm", name, "-o", "jsonpath={.data.value}"]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn app_field(s: &Server, path: &str) -> String {
    s.ok(&[
        "get",
        "application",
        "root",
        "-o",
        &format!("jsonpath={path}"),
    ])
}

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn commits_are_applied_bad_commits_change_nothing_and_deleted_files_are_pruned() {
    let repo = GitRepo::new();
    repo.write("app/one.yaml", &cm("one", "1"));
    repo.write("app/two.yaml", &cm("two", "2"));
    repo.commit("first");
    let repo_path = repo.path.to_string_lossy().into_owned();
    let s = Server::start_with(&["--repo", &repo_path, "--path", "app"]);
    eventually("first commit applied", WAIT, || {
        (value_of(&s, "one").as_deref() == Some("1")).then_some(())
    });
    let src = s.ok(&[
        "get",
        "cm",
        "one",
        "-o",
        "jsonpath={.metadata.annotations.gitplane\\.io/source}",
    ]);
    assert_eq!(src, "app/one.yaml:1");

    repo.write("app/one.yaml", &cm("one", "1b"));
    let good = repo.commit("change one");
    eventually("second commit applied", WAIT, || {
        (value_of(&s, "one").as_deref() == Some("1b")).then_some(())
    });
    eventually("status names the revision", WAIT, || {
        (app_field(&s, "{.status.sync.revision}") == good).then_some(())
    });

    // Malformed YAML: nothing applied, a condition with file and line.
    repo.write("app/one.yaml", &cm("one", "nope"));
    repo.write("app/broken.yaml", "kind: [\n");
    repo.commit("broken yaml");
    eventually("a condition naming the file", WAIT, || {
        app_field(&s, "{.status.conditions[*].message}")
            .contains("app/broken.yaml:1")
            .then_some(())
    });
    assert_eq!(
        value_of(&s, "one").as_deref(),
        Some("1b"),
        "the previous revision stays live"
    );

    // An object the API server refuses: the dry run stops the whole commit.
    repo.git(&["rm", "-q", "app/broken.yaml"]);
    repo.write("app/bad.yaml", &cm("Bad_Name", "x"));
    repo.commit("invalid object");
    eventually("a sync error naming the file", WAIT, || {
        app_field(&s, "{.status.conditions[*].message}")
            .contains("app/bad.yaml:1")
            .then_some(())
    });
    assert_eq!(
        value_of(&s, "one").as_deref(),
        Some("1b"),
        "nothing of a refused commit is applied"
    );

    // Fixed, and a file deleted: applied, and the deleted object pruned.
    repo.git(&["rm", "-q", "app/bad.yaml", "app/two.yaml"]);
    repo.commit("fix, and drop two");
    eventually("pruned", WAIT, || {
        (value_of(&s, "one").as_deref() == Some("nope") && value_of(&s, "two").is_none())
            .then_some(())
    });
    assert_eq!(app_field(&s, "{.status.sync.status}"), "Synced");
    let history = String::from_utf8_lossy(&gitplane(&s, &["history", "root"]).stdout).into_owned();
    assert!(
        history.contains("fix, and drop two") && history.contains("Test Author"),
        "{history}"
    );
}

#[test]
fn a_commit_just_above_the_object_limit_is_refused_whole_with_a_condition() {
    let repo = GitRepo::new();
    repo.write("app/one.yaml", &cm("one", "1"));
    repo.commit("first");
    let repo_path = repo.path.to_string_lossy().into_owned();
    let s = Server::start_with(&["--repo", &repo_path, "--path", "app"]);
    eventually("first commit applied", WAIT, || {
        (value_of(&s, "one").as_deref() == Some("1")).then_some(())
    });

    // 10,000 objects is the limit (reconciler's MAX_OBJECTS); this commit renders 10,001.
    let many: String = (0..10_000)
        .map(|i| format!("---\n{}", cm(&format!("many-{i}"), "x")))
        .collect();
    repo.write("app/many.yaml", &many);
    repo.write("app/one.yaml", &cm("one", "2"));
    repo.commit("one object too many");
    eventually(
        "a condition naming the limit",
        Duration::from_secs(120),
        || {
            let message = app_field(&s, "{.status.conditions[*].message}");
            (message.contains("renders 10001 objects") && message.contains("at most 10000"))
                .then_some(())
        },
    );
    assert_eq!(
        value_of(&s, "one").as_deref(),
        Some("1"),
        "nothing of a refused commit is applied"
    );
    assert!(value_of(&s, "many-0").is_none());
}

#[test]
fn drift_is_healed_and_rollback_is_a_revert_commit() {
    let repo = GitRepo::new();
    repo.write("app/web.yaml", &cm("web", "v1"));
    let v1 = repo.commit("v1");
    let repo_path = repo.path.to_string_lossy().into_owned();
    let s = Server::start_with(&["--repo", &repo_path, "--path", "app"]);
    eventually("v1 applied", WAIT, || {
        (value_of(&s, "web").as_deref() == Some("v1")).then_some(())
    });

    // Someone edits the live object: self-heal puts it back.
    s.ok(&[
        "patch",
        "cm",
        "web",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"value":"hand-edited"}}"#,
    ]);
    eventually("drift healed", WAIT, || {
        (value_of(&s, "web").as_deref() == Some("v1")).then_some(())
    });

    repo.write("app/web.yaml", &cm("web", "v2"));
    repo.commit("v2");
    eventually("v2 applied", WAIT, || {
        (value_of(&s, "web").as_deref() == Some("v2")).then_some(())
    });
    eventually("v2 in history", WAIT, || {
        app_field(&s, "{.status.history[*].message}")
            .contains("v2")
            .then_some(())
    });

    let out = gitplane(&s, &["rollback", "root"]);
    assert!(
        out.status.success(),
        "rollback: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = repo.git(&["log", "--format=%s", "-n", "1"]);
    assert_eq!(log, "Revert \"v2\"");
    assert_eq!(
        repo.git(&["show", "HEAD:app/web.yaml"]),
        cm("web", "v1").trim_end()
    );
    eventually("rolled back", WAIT, || {
        (value_of(&s, "web").as_deref() == Some("v1")).then_some(())
    });
    let blame =
        String::from_utf8_lossy(&gitplane(&s, &["blame", "configmap/web"]).stdout).into_owned();
    assert!(
        blame.contains("Revert \"v2\"") && blame.contains("app/web.yaml:1"),
        "{blame}"
    );
    let _ = v1;
}

#[test]
fn diff_reviews_a_branch_against_the_cluster_and_offline() {
    let repo = GitRepo::new();
    repo.write("app/web.yaml", &cm("web", "v1"));
    let base = repo.commit("base");
    let repo_path = repo.path.to_string_lossy().into_owned();
    let s = Server::start_with(&["--repo", &repo_path, "--path", "app"]);
    eventually("applied", WAIT, || {
        (value_of(&s, "web").as_deref() == Some("v1")).then_some(())
    });
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write("app/web.yaml", &cm("web", "v2"));
    repo.write("app/bad.yaml", &cm("Bad_Name", "x"));
    repo.commit("feature");
    repo.git(&["checkout", "-q", "main"]);

    let out = gitplane(&s, &["diff", "--app", "root", "--head", "feature"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an invalid object makes the review fail"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("=== ConfigMap/default/web (changed)"),
        "{text}"
    );
    assert!(
        text.contains("-  value: v1") && text.contains("+  value: v2"),
        "{text}"
    );
    assert!(
        text.contains(
            "refused by the API server: app/bad.yaml:1: ConfigMap \"Bad_Name\" is invalid"
        ),
        "{text}"
    );
    let md = String::from_utf8_lossy(
        &gitplane(
            &s,
            &[
                "diff", "--app", "root", "--head", "feature", "-o", "markdown",
            ],
        )
        .stdout,
    )
    .into_owned();
    assert!(
        md.contains("| `ConfigMap/default/web` | changed | :white_check_mark: passed |"),
        "{md}"
    );
    assert!(
        md.contains("<details><summary><code>ConfigMap/default/Bad_Name</code> (added)</summary>"),
        "{md}"
    );
    assert_eq!(
        value_of(&s, "web").as_deref(),
        Some("v1"),
        "a review changes nothing"
    );

    // Offline: base against head, golden text.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gitplane"))
        .args([
            "diff", "--repo", &repo_path, "--path", "app", "--base", &base, "--head", "feature",
        ])
        .output()
        .expect("gitplane diff");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let head = repo.git(&["rev-parse", "--short=7", "feature"]);
    let expected = format!(
        "{base} → {head}

=== ConfigMap/default/Bad_Name (added)
--- base
+++ head
@@ -0,0 +1,6 @@
+apiVersion: v1
+data:
+  value: x
+kind: ConfigMap
+metadata:
+  name: Bad_Name

=== ConfigMap/default/web (changed)
--- base
+++ head
@@ -1,6 +1,6 @@
 apiVersion: v1
 data:
-  value: v1
+  value: v2
 kind: ConfigMap
 metadata:
   name: web
"
    );
    assert_eq!(text, expected);
}

#[test]
fn up_seeds_a_playground_from_examples_repo_and_syncs_the_app_of_apps() {
    let s = Server::start();
    let playground = s.data_dir.join("repo");
    eventually("the playground repository", WAIT, || {
        playground
            .join("applications/hello.yaml")
            .is_file()
            .then_some(())
    });
    eventually("every sample app synced", WAIT, || {
        let out = s.kubectl(&[
            "get",
            "applications",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.sync.status} {end}",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let want = [
            "hello=Synced",
            "platform=Synced",
            "root=Synced",
            "web-prod=Synced",
            "web-staging=Synced",
        ];
        want.iter().all(|w| text.contains(w)).then_some(())
    });
    assert_eq!(
        s.ok(&[
            "get",
            "deploy",
            "web",
            "-n",
            "web-prod",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "3"
    );
    assert_eq!(
        s.ok(&[
            "get",
            "deploy",
            "hello",
            "-n",
            "hello",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "2"
    );
    let apps = String::from_utf8_lossy(&gitplane(&s, &["apps"]).stdout).into_owned();
    assert!(
        apps.starts_with("NAME") && apps.contains("web-staging"),
        "{apps}"
    );
}

#[test]
fn the_push_webhook_refuses_bad_signatures_and_accepts_good_ones() {
    let secret_dir = tempfile::tempdir().expect("tmp");
    let secret_file = secret_dir.path().join("secret");
    std::fs::write(&secret_file, "s3cret\n").expect("write secret");
    let s = Server::start_with(&["--webhook-secret-file", &secret_file.to_string_lossy()]);
    let body = br#"{"ref":"refs/heads/main","repository":{"clone_url":"https://git.example/org/repo.git"}}"#;
    let post = |headers: &[(&str, &str)]| {
        // No client credentials: the webhook authenticates by HMAC, not by the API's authn.
        let agent = s.agent(&common::Auth::Anonymous, Duration::from_secs(30));
        let mut req = agent
            .post(&format!("{}/webhooks/git", s.url))
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send(&body[..]).expect("post").status().as_u16()
    };
    assert_eq!(post(&[]), 401, "unsigned");
    assert_eq!(
        post(&[("X-Hub-Signature-256", "sha256=00ff")]),
        401,
        "wrong signature"
    );
    assert_eq!(post(&[("X-Gitlab-Token", "nope")]), 401, "wrong token");
    // HMAC-SHA256("s3cret", body), computed independently with openssl.
    let out = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", "s3cret", "-hex"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(body)?;
            c.wait_with_output()
        })
        .expect("openssl is needed to sign the test payload");
    let hex = String::from_utf8_lossy(&out.stdout)
        .rsplit(' ')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    assert_eq!(
        post(&[("X-Hub-Signature-256", &format!("sha256={hex}"))]),
        202
    );
    assert_eq!(post(&[("X-Gitea-Signature", &hex)]), 202);
    assert_eq!(post(&[("X-Gitlab-Token", "s3cret")]), 202);
    // The API is still served on the same address.
    assert!(
        s.ok(&["get", "ns", "default", "-o", "name"])
            .contains("namespace/default")
    );
}

/// A bare repository served by `git daemon` on a free loopback port (git://), push enabled.
struct GitDaemon {
    child: std::process::Child,
    url: String,
    bare: std::path::PathBuf,
    _tmp: tempfile::TempDir,
}

impl GitDaemon {
    fn start() -> GitDaemon {
        let tmp = tempfile::tempdir().expect("tmp");
        let bare = tmp.path().join("repo.git");
        let ok = std::process::Command::new("git")
            .args(["init", "-q", "--bare", "-b", "main"])
            .arg(&bare)
            .status()
            .expect("git");
        assert!(ok.success());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        // Run git-daemon itself: `git daemon` would leave it behind as a child when killed.
        let exec_path = std::process::Command::new("git")
            .arg("--exec-path")
            .output()
            .expect("git --exec-path");
        let daemon = std::path::Path::new(String::from_utf8_lossy(&exec_path.stdout).trim())
            .join("git-daemon");
        let child = std::process::Command::new(daemon)
            .args([
                "--reuseaddr",
                "--export-all",
                "--enable=receive-pack",
                "--listen=127.0.0.1",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", tmp.path().display()))
            .arg(tmp.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("git daemon (part of git) is needed for the remote repository test");
        eventually("git daemon listening", WAIT, || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ())
        });
        GitDaemon {
            child,
            url: format!("git://127.0.0.1:{port}/repo.git"),
            bare,
            _tmp: tmp,
        }
    }

    fn head_message(&self) -> String {
        let out = std::process::Command::new("git")
            .args(["--git-dir"])
            .arg(&self.bare)
            .args(["log", "-1", "--format=%s", "main"])
            .output()
            .expect("git log");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_remote_repository_is_fetched_and_rolled_back_by_pushing_a_revert() {
    let daemon = GitDaemon::start();
    let work = GitRepo::new();
    work.write("app/web.yaml", &cm("web", "v1"));
    work.commit("v1");
    work.git(&["push", "-q", &daemon.url, "main"]);
    let s = Server::start_with(&["--repo", &daemon.url, "--path", "app"]);
    eventually("v1 applied from the remote", WAIT, || {
        (value_of(&s, "web").as_deref() == Some("v1")).then_some(())
    });

    work.write("app/web.yaml", &cm("web", "v2"));
    work.commit("v2");
    work.git(&["push", "-q", &daemon.url, "main"]);
    let out = gitplane(&s, &["sync", "root"]);
    assert!(
        out.status.success(),
        "sync: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually("v2 applied", WAIT, || {
        (value_of(&s, "web").as_deref() == Some("v2")).then_some(())
    });

    let out = gitplane(&s, &["rollback", "root"]);
    assert!(
        out.status.success(),
        "rollback: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        daemon.head_message(),
        "Revert \"v2\"",
        "the revert is pushed to the remote"
    );
    eventually("rolled back", WAIT, || {
        (value_of(&s, "web").as_deref() == Some("v1")).then_some(())
    });
}

#[test]
fn a_typo_in_a_manifest_stops_the_commit_with_its_file_and_line() {
    let repo = GitRepo::new();
    repo.write("app/web.yaml", &cm("web", "v1"));
    repo.commit("v1");
    let repo_path = repo.path.to_string_lossy().into_owned();
    let s = Server::start_with(&["--repo", &repo_path, "--path", "app"]);
    eventually("v1 applied", WAIT, || {
        (value_of(&s, "web").as_deref() == Some("v1")).then_some(())
    });
    repo.write(
        "app/web.yaml",
        &cm("web", "v2").replace("\ndata:", "\ndat:"),
    );
    repo.commit("typo");
    eventually("a condition naming the file and the field", WAIT, || {
        let msg = app_field(&s, "{.status.conditions[*].message}");
        (msg.contains("app/web.yaml:1") && msg.contains("unknown field \"dat\"")).then_some(())
    });
    assert_eq!(
        value_of(&s, "web").as_deref(),
        Some("v1"),
        "nothing of the commit is applied"
    );
}

#[test]
fn an_application_whose_fetch_hangs_does_not_hold_back_the_others() {
    // A Git server that accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = listener.local_addr().expect("an address").port();
    let (accepted, connected) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
            let _ = accepted.send(());
        }
    });
    let repo = GitRepo::new();
    repo.write("app/one.yaml", &cm("one", "1"));
    repo.commit("first");
    let repo_path = repo.path.to_string_lossy().into_owned();
    let s = Server::start_with(&["--repo", &repo_path, "--path", "app"]);
    eventually("first commit applied", WAIT, || {
        (value_of(&s, "one").as_deref() == Some("1")).then_some(())
    });
    s.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: gitplane.io/v1alpha1\nkind: Application\nmetadata:\n  name: stuck\nspec:\n  source:\n    repoURL: http://127.0.0.1:{port}/stuck.git\n    path: app\n  destination:\n    namespace: default\n  syncPolicy:\n    automated: {{}}\n"
        ),
    );
    connected
        .recv_timeout(WAIT)
        .expect("the syncer fetches from the stuck repository");

    repo.write("app/one.yaml", &cm("one", "2"));
    repo.commit("second");
    eventually(
        "second commit applied while the other fetch hangs",
        WAIT,
        || (value_of(&s, "one").as_deref() == Some("2")).then_some(()),
    );
}

/// A static file server on a free 127.0.0.1 port (a Helm chart repository is files over HTTP);
/// returns its base URL.
fn serve_dir(dir: std::path::PathBuf) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = listener.local_addr().expect("an address").port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(&conn);
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                loop {
                    let mut header = String::new();
                    match reader.read_line(&mut header) {
                        Ok(0) | Err(_) => break,
                        Ok(_) if header.trim().is_empty() => break,
                        Ok(_) => {}
                    }
                }
                let name = path.trim_start_matches('/');
                let mut out = &conn;
                let _ = match std::fs::read(dir.join(name)).ok().filter(|_| !name.contains("..")) {
                    Some(body) => out
                        .write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                body.len()
                            )
                            .as_bytes(),
                        )
                        .and_then(|_| out.write_all(&body)),
                    None => out.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    ),
                };
            });
        }
    });
    format!("http://127.0.0.1:{port}")
}

/// `web` at `version` (a ConfigMap showing its version and `.Values.code`), packaged into
/// `repo` by the real helm, and the repository re-indexed.
fn publish_chart(work: &std::path::Path, repo: &std::path::Path, version: &str) {
    let chart = work.join(format!("src-{version}/web"));
    std::fs::create_dir_all(chart.join("templates")).expect("mkdir");
    std::fs::write(
        chart.join("Chart.yaml"),
        format!("apiVersion: v2\nname: web\nversion: {version}\n"),
    )
    .expect("Chart.yaml");
    std::fs::write(chart.join("values.yaml"), "code: none\n").expect("values.yaml");
    std::fs::write(
        chart.join("templates/cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-settings\ndata:\n  version: {{ .Chart.Version | quote }}\n  code: {{ .Values.code | quote }}\n",
    )
    .expect("template");
    for args in [
        vec![
            "package",
            chart.to_str().expect("utf8"),
            "-d",
            repo.to_str().expect("utf8"),
        ],
        vec!["repo", "index", repo.to_str().expect("utf8")],
    ] {
        let out = std::process::Command::new("helm")
            .args(&args)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "helm: {e}; install helm (https://github.com/helm/helm/releases/tag/v3.17.2)"
                )
            });
        assert!(
            out.status.success(),
            "helm {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn an_application_of_a_chart_repository_syncs_its_values_and_new_versions() {
    let work = tempfile::tempdir().expect("tmp");
    let repo = work.path().join("repo");
    std::fs::create_dir_all(&repo).expect("mkdir");
    publish_chart(work.path(), &repo, "1.0.0");
    publish_chart(work.path(), &repo, "1.2.0");
    publish_chart(work.path(), &repo, "2.0.0");
    let url = serve_dir(repo.clone());
    let s = Server::start();
    let app = |code: &str| {
        format!(
            "apiVersion: gitplane.io/v1alpha1\nkind: Application\nmetadata:\n  name: web\nspec:\n  source:\n    repoURL: {url}\n    chart: web\n    targetRevision: ^1.0.0\n    helm:\n      releaseName: shop\n      parameters:\n        - name: code\n          value: \"{code}\"\n  destination:\n    namespace: default\n  syncPolicy:\n    automated: {{prune: true}}\n    interval: 1s\n"
        )
    };
    s.ok_stdin(&["apply", "-f", "-"], &app("a1"));
    let data = |s: &Server| {
        let out = s.kubectl(&[
            "get",
            "cm",
            "shop-settings",
            "-o",
            "jsonpath={.data.version}/{.data.code}",
        ]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    eventually("the highest 1.x version synced", WAIT, || {
        (data(&s) == "1.2.0/a1").then_some(())
    });
    let revision = s.ok(&[
        "get",
        "application",
        "web",
        "-o",
        "jsonpath={.status.sync.revision}",
    ]);
    assert_eq!(revision, "1.2.0");

    // A change of the Application's values is synced.
    s.ok_stdin(&["apply", "-f", "-"], &app("b2"));
    eventually("the new value synced", WAIT, || {
        (data(&s) == "1.2.0/b2").then_some(())
    });

    // Without a parent in Git, a review's head is a chart version: 2.0.0 against what is live.
    let out = gitplane(&s, &["diff", "--app", "web", "--head", "2.0.0"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("=== ConfigMap/default/shop-settings (changed)")
            && text.contains("-  version: 1.2.0")
            && text.contains("+  version: 2.0.0"),
        "{text}"
    );
    let out = gitplane(&s, &["rollback", "web"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a rollback with no commit to revert is an error"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("web: spec.source is a Helm chart repository, which has no commit to revert"),
        "{err}"
    );

    // A new version in range, published to the repository, is picked up at the next poll.
    publish_chart(work.path(), &repo, "1.3.0");
    eventually("the new version synced", WAIT, || {
        (data(&s) == "1.3.0/b2").then_some(())
    });
    let archives: Vec<String> = std::fs::read_dir(s.data_dir.join("charts"))
        .expect("DATA_DIR/charts")
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).expect("repo cache").flatten())
        .map(|f| f.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        archives.contains(&"web-1.2.0.tgz".to_string())
            && archives.contains(&"web-1.3.0.tgz".to_string()),
        "{archives:?}"
    );
}

#[test]
fn a_hostile_application_gets_a_condition_naming_the_file_while_others_keep_syncing() {
    let repo = GitRepo::new();
    repo.write("app/one.yaml", &cm("one", "1"));
    repo.write("evil/ok.yaml", &cm("evil-ok", "1"));
    std::fs::create_dir_all(repo.path.join("evil")).expect("mkdir");
    std::os::unix::fs::symlink("/etc/passwd", repo.path.join("evil/passwd.yaml")).expect("link");
    repo.commit("first, with a link out of the repository");
    let repo_path = repo.path.to_string_lossy().into_owned();
    let s = Server::start_with(&["--repo", &repo_path, "--path", "app"]);
    eventually("first commit applied", WAIT, || {
        (value_of(&s, "one").as_deref() == Some("1")).then_some(())
    });
    let url = app_field(&s, "{.spec.source.repoURL}");
    s.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: gitplane.io/v1alpha1\nkind: Application\nmetadata:\n  name: hostile\nspec:\n  source:\n    repoURL: {url}\n    path: evil\n  destination:\n    namespace: default\n  syncPolicy:\n    automated: {{}}\n"
        ),
    );
    eventually("the hostile app's condition names the link", WAIT, || {
        let msg = s.ok(&[
            "get",
            "application",
            "hostile",
            "-o",
            "jsonpath={.status.conditions[*].message}",
        ]);
        msg.contains("evil/passwd.yaml: is a symbolic link")
            .then_some(())
    });
    assert_eq!(
        value_of(&s, "evil-ok"),
        None,
        "nothing of the hostile commit is applied"
    );
    repo.write("app/one.yaml", &cm("one", "2"));
    repo.commit("second");
    eventually("the other app keeps syncing", WAIT, || {
        (value_of(&s, "one").as_deref() == Some("2")).then_some(())
    });
}

#[test]
fn a_force_push_is_followed_and_rollback_reverts_only_the_branch() {
    let repo = GitRepo::new();
    repo.write("app/web.yaml", &cm("web", "v1"));
    let v1 = repo.commit("v1");
    let repo_path = repo.path.to_string_lossy().into_owned();
    let s = Server::start_with(&["--repo", &repo_path, "--path", "app"]);
    eventually("v1 applied", WAIT, || {
        (value_of(&s, "web").as_deref() == Some("v1")).then_some(())
    });
    repo.write("app/web.yaml", &cm("web", "v2"));
    repo.commit("v2");
    eventually("v2 applied", WAIT, || {
        (value_of(&s, "web").as_deref() == Some("v2")).then_some(())
    });
    // History rewritten: v2 is gone from the branch, v3 replaces it.
    repo.git(&["reset", "-q", "--hard", &v1]);
    repo.write("app/web.yaml", &cm("web", "v3"));
    repo.commit("v3");
    eventually("the rewritten head is synced", WAIT, || {
        (value_of(&s, "web").as_deref() == Some("v3")).then_some(())
    });
    eventually("v3 in history", WAIT, || {
        app_field(&s, "{.status.history[*].message}")
            .contains("v3")
            .then_some(())
    });
    let out = gitplane(&s, &["rollback", "root"]);
    assert!(
        out.status.success(),
        "rollback: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        repo.git(&["log", "--format=%s", "-n", "1"]),
        "Revert \"v3\""
    );
    assert_eq!(
        repo.git(&["log", "--format=%s"]),
        "Revert \"v3\"\nv3\nv1",
        "v2, no longer on the branch, is neither reverted nor back"
    );
    eventually("rolled back to v1", WAIT, || {
        (value_of(&s, "web").as_deref() == Some("v1")).then_some(())
    });
}

/// The ConfigMap `name`'s `data.code`, or "" while it is missing.
fn code_of(s: &Server, name: &str) -> String {
    let out = s.kubectl(&["get", "cm", name, "-o", "jsonpath={.data.code}"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An app of apps in Git holds two Helm Applications: `web`, a chart of a chart repository
/// served over HTTP with its values in the Application's `helm.values`, and `local`, a chart in
/// the repository with a values file beside it. Both sync; a branch changing both values is
/// reviewed by `gitplane diff` (from the parent, and from each child) without changing the
/// cluster; merged, it syncs; `gitplane rollback web` reverts the parent's commit.
#[test]
fn helm_applications_from_a_chart_repository_and_from_git_have_their_value_changes_reviewed() {
    let work = tempfile::tempdir().expect("tmp");
    let charts = work.path().join("charts");
    std::fs::create_dir_all(&charts).expect("mkdir");
    publish_chart(work.path(), &charts, "1.0.0");
    let url = serve_dir(charts);
    let repo = GitRepo::new();
    let web = |code: &str| {
        format!(
            "apiVersion: gitplane.io/v1alpha1\nkind: Application\nmetadata:\n  name: web\nspec:\n  source:\n    repoURL: {url}\n    chart: web\n    targetRevision: 1.0.0\n    helm:\n      releaseName: shop\n      values: |\n        code: {code}\n  destination:\n    namespace: default\n  syncPolicy:\n    automated: {{prune: true}}\n"
        )
    };
    repo.write("apps/web.yaml", &web("a1"));
    repo.write(
        "apps/local.yaml",
        "apiVersion: gitplane.io/v1alpha1\nkind: Application\nmetadata:\n  name: local\nspec:\n  source:\n    path: charts/local\n    helm:\n      valueFiles: [values-prod.yaml]\n  destination:\n    namespace: default\n  syncPolicy:\n    automated: {prune: true}\n",
    );
    repo.write(
        "charts/local/Chart.yaml",
        "apiVersion: v2\nname: local\nversion: 0.1.0\n",
    );
    repo.write("charts/local/values.yaml", "code: none\n");
    repo.write("charts/local/values-prod.yaml", "code: l1\n");
    repo.write(
        "charts/local/templates/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-settings\ndata:\n  code: {{ .Values.code | quote }}\n",
    );
    let first = repo.commit("web and local");
    let repo_path = repo.path.to_string_lossy().into_owned();
    let s = Server::start_with(&["--repo", &repo_path, "--path", "apps"]);
    eventually("both charts synced", WAIT, || {
        (code_of(&s, "shop-settings") == "a1" && code_of(&s, "local-settings") == "l1")
            .then_some(())
    });

    repo.git(&["checkout", "-q", "-b", "values"]);
    repo.write("apps/web.yaml", &web("a2"));
    repo.write("charts/local/values-prod.yaml", "code: l2\n");
    repo.commit("new values");
    repo.git(&["checkout", "-q", "main"]);

    let out = gitplane(&s, &["diff", "--app", "root", "--head", "values"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    for want in [
        "=== Application/web (changed)",
        "=== [web] ConfigMap/default/shop-settings (changed)",
        "-  code: a1",
        "+  code: a2",
        "=== [local] ConfigMap/default/local-settings (changed)",
        "-  code: l1",
        "+  code: l2",
    ] {
        assert!(text.contains(want), "{want:?} in:\n{text}");
    }
    let md = String::from_utf8_lossy(
        &gitplane(
            &s,
            &[
                "diff", "--app", "root", "--head", "values", "-o", "markdown",
            ],
        )
        .stdout,
    )
    .into_owned();
    assert!(
        md.contains(
            "| `[web] ConfigMap/default/shop-settings` | changed | :white_check_mark: passed |"
        ),
        "{md}"
    );
    for (app, name, before, after) in [
        ("web", "shop-settings", "a1", "a2"),
        ("local", "local-settings", "l1", "l2"),
    ] {
        let out = gitplane(&s, &["diff", "--app", app, "--head", "values"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(1), "{app}: {text}");
        assert!(
            text.contains(&format!("=== ConfigMap/default/{name} (changed)"))
                && text.contains(&format!("-  code: {before}"))
                && text.contains(&format!("+  code: {after}")),
            "{app}: {text}"
        );
        let out = gitplane(&s, &["diff", "--app", app, "--head", "main"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{app} at main changes nothing: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    assert_eq!(
        code_of(&s, "shop-settings"),
        "a1",
        "a review changes nothing"
    );

    repo.git(&["merge", "-q", "values"]);
    eventually("the new values synced", WAIT, || {
        (code_of(&s, "shop-settings") == "a2" && code_of(&s, "local-settings") == "l2")
            .then_some(())
    });
    let merged = repo.git(&["rev-parse", "HEAD"]);
    eventually("root records the merge", WAIT, || {
        let out = s.kubectl(&[
            "get",
            "application",
            "root",
            "-o",
            "jsonpath={.status.history[*].revision}",
        ]);
        (String::from_utf8_lossy(&out.stdout)
            .trim()
            .ends_with(&merged))
        .then_some(())
    });
    let out = gitplane(&s, &["rollback", "web", "--to", &first]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rolling back root"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually("the values of the first commit synced again", WAIT, || {
        (code_of(&s, "shop-settings") == "a1" && code_of(&s, "local-settings") == "l1")
            .then_some(())
    });
    let subject = repo.git(&["log", "-1", "--format=%s", "main"]);
    assert_eq!(subject, "Revert \"new values\"");
}
