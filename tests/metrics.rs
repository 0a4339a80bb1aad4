//! Metrics end to end: `gitplane up`'s `/metrics` behind RBAC, scraped by the real Prometheus
//! (Debian's `prometheus`, on a free loopback port) with the admin's client certificate, and
//! PromQL over Prometheus' HTTP API finding the API server's and the syncer's families;
//! notifications to a receiver the test serves on loopback (once per failing commit, again on
//! the fix; a trigger's CEL `when` choosing the templates, an invalid one reported).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Auth, GitRepo, Server, eventually, free_port};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

fn cm(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  value: \"{value}\"\n"
    )
}

/// `GET /metrics` as `auth`: the code and the body.
fn scrape(s: &Server, auth: &Auth) -> (u16, String) {
    let agent = common::agent(&s.url, auth, Duration::from_secs(30));
    let mut response = agent
        .get(format!("{}/metrics", s.url))
        .call()
        .expect("GET /metrics");
    let code = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    (code, body)
}

/// A Prometheus server, stopped when dropped.
struct Prometheus {
    child: Child,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus on a free loopback port, scraping `target` (host:port) over HTTPS
    /// with these PEM files every second.
    fn start(dir: &Path, target: &str, ca: &Path, cert: &Path, key: &Path) -> Prometheus {
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: gitplane\n    scheme: https\n    tls_config:\n      ca_file: {}\n      cert_file: {}\n      key_file: {}\n    static_configs:\n      - targets: ['{target}']\n",
            ca.display(),
            cert.display(),
            key.display(),
        );
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).expect("prometheus.yml");
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("prometheus log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start prometheus ({e}): install it with `apt-get install prometheus` \
                     (scripts/test.sh does)"
                )
            });
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// The series of an instant PromQL query, or `None` while Prometheus does not answer.
    fn query(&self, promql: &str) -> Option<Vec<Value>> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let mut response = agent
            .get(format!("{}/api/v1/query", self.url))
            .query("query", promql)
            .call()
            .ok()?;
        let body: Value = response.body_mut().read_json().ok()?;
        assert_eq!(body["status"], "success", "{promql}: {body}");
        body["data"]["result"].as_array().cloned()
    }
}

#[test]
fn prometheus_scrapes_the_api_servers_metrics_with_the_admin_certificate() {
    let repo = GitRepo::new();
    repo.write("app/one.yaml", &cm("one", "1"));
    repo.commit("first");
    let repo_path = repo.path.to_string_lossy().into_owned();
    let s = Server::start_with(&["--repo", &repo_path, "--path", "app"]);
    eventually("the application synced", WAIT, || {
        let out = s.kubectl(&[
            "get",
            "application",
            "root",
            "-o",
            "jsonpath={.status.sync.status}",
        ]);
        (String::from_utf8_lossy(&out.stdout) == "Synced").then_some(())
    });

    // Without credentials, /metrics is refused; the admin (cluster-admin) reads it.
    let (code, _) = scrape(&s, &Auth::Anonymous);
    assert!(code == 401 || code == 403, "anonymous /metrics: {code}");
    let (code, text) = scrape(&s, &Auth::Admin);
    assert_eq!(code, 200, "{text}");
    for family in [
        "# TYPE apiserver_request counter",
        "# TYPE apiserver_request_duration_seconds histogram",
        "# TYPE apiserver_current_inflight_requests gauge",
        "# TYPE apiserver_dropped_requests counter",
        "# TYPE apiserver_longrunning_requests gauge",
        "# TYPE apiserver_storage_objects gauge",
        "# TYPE etcd_request_duration_seconds histogram",
        "# TYPE scheduler_schedule_attempts counter",
        "# TYPE scheduler_pending_pods gauge",
        "# TYPE workqueue_adds counter",
        "# TYPE workqueue_depth gauge",
        "# TYPE workqueue_work_duration_seconds histogram",
        "# TYPE argocd_app_info gauge",
        "# TYPE argocd_app_sync counter",
        "# TYPE argocd_app_reconcile histogram",
        "# TYPE argocd_git_request counter",
    ] {
        assert!(
            text.contains(family),
            "{family} missing from /metrics:\n{text}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("apiserver_storage_objects{resource=\"configmaps\"}")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("argocd_app_sync_total{")
            && l.contains("name=\"root\"")
            && l.contains("phase=\"Succeeded\"")),
        "{text}"
    );
    // A watch open now is a long-running request.
    assert!(
        text.lines()
            .any(|l| l.starts_with("apiserver_longrunning_requests{")
                && l.contains("verb=\"WATCH\"")
                && !l.ends_with(" 0")),
        "{text}"
    );

    let tmp = tempfile::tempdir().expect("temp dir");
    let (ca, cert, key) = common::write_admin_pems(&s.url, tmp.path());
    let target = s.url.trim_start_matches("https://").to_string();
    let prometheus = Prometheus::start(tmp.path(), &target, &ca, &cert, &key);
    let requests = eventually("Prometheus scraped gitplane", WAIT, || {
        let up = prometheus.query("up{job=\"gitplane\"}")?;
        if up.first().and_then(|s| s["value"][1].as_str()) != Some("1") {
            return None;
        }
        prometheus
            .query("sum by (verb, code) (apiserver_request_total)")
            .filter(|r| !r.is_empty())
    });
    assert!(
        requests
            .iter()
            .any(|s| s["metric"]["verb"] == "WATCH" && s["metric"]["code"] == "200"),
        "{requests:?}"
    );
    let apps = prometheus
        .query("argocd_app_info{name=\"root\"}")
        .expect("query argocd_app_info");
    assert_eq!(apps.len(), 1, "{apps:?}");
    assert_eq!(apps[0]["metric"]["sync_status"], "Synced", "{apps:?}");
    assert_eq!(apps[0]["metric"]["repo"], repo_path.as_str(), "{apps:?}");
}

/// The notifications configuration: a generic webhook, a Slack-compatible one and a commit
/// status service speaking Gitea's API, all on the test's receiver.
fn notifications_config(receiver: &str) -> String {
    format!(
        r##"apiVersion: v1
kind: Namespace
metadata:
  name: gitplane-system
---
apiVersion: v1
kind: Secret
metadata:
  name: gitplane-notifications-secret
  namespace: gitplane-system
stringData:
  ops-token: Bearer ops-s3cret
  gitea-token: gitea-s3cret
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: gitplane-notifications-cm
  namespace: gitplane-system
data:
  service.webhook.ops: |
    url: {receiver}/hooks/ops
    headers:
    - name: Authorization
      value: $ops-token
  service.slack: |
    url: {receiver}/slack
  service.gitea: |
    url: {receiver}/gitea
    token: $gitea-token
  template.sync-failed: |
    message: "{{{{app.metadata.name}}}} failed to sync {{{{revision}}}}: {{{{app.status.operationState.message}}}}"
    slack:
      attachments: |
        [{{"title": "{{{{app.metadata.name}}}}", "color": "#E96D76", "text": "{{{{app.status.operationState.message}}}}"}}]
  template.sync-succeeded: |
    message: "{{{{app.metadata.name}}}} synced to {{{{revision}}}}"
  trigger.on-sync-failed: |
    - when: app.status.operationState.phase in ['Error', 'Failed']
      send: [sync-failed]
  trigger.on-sync-succeeded: |
    - send: [sync-succeeded]
"##
    )
}

fn json_body(r: &common::Received) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{} is not JSON: {e}", r.body))
}

/// The generic payloads `receiver` got for `trigger` and `revision`.
fn generic(receiver: &common::Receiver, trigger: &str, revision: &str) -> Vec<Value> {
    receiver
        .requests("/hooks/ops")
        .iter()
        .map(json_body)
        .filter(|b| b["trigger"] == trigger && b["revision"] == revision)
        .collect()
}

#[test]
fn a_failing_commit_notifies_once_and_its_fix_notifies_again() {
    let repo = GitRepo::new();
    repo.write("app/one.yaml", &cm("one", "1"));
    let first = repo.commit("first");
    let repo_path = repo.path.to_string_lossy().into_owned();
    let s = Server::start_with(&["--repo", &repo_path, "--path", "app"]);
    let receiver = common::Receiver::start();
    s.ok_stdin(&["apply", "-f", "-"], &notifications_config(&receiver.url));
    s.ok(&[
        "annotate",
        "application",
        "root",
        "notifications.argoproj.io/subscribe.on-sync-failed.ops=",
        "notifications.argoproj.io/subscribe.on-sync-succeeded.ops=",
        "notifications.argoproj.io/subscribe.on-sync-failed.slack=#deploys",
        "notifications.argoproj.io/subscribe.on-sync-failed.gitea=",
        "notifications.argoproj.io/subscribe.on-sync-succeeded.gitea=",
    ]);
    eventually("the first sync notified", WAIT, || {
        (!generic(&receiver, "on-sync-succeeded", &first).is_empty()).then_some(())
    });
    let hook = &receiver.requests("/hooks/ops")[0];
    assert_eq!(hook.method, "POST");
    assert_eq!(
        hook.headers.get("authorization").map(String::as_str),
        Some("Bearer ops-s3cret"),
        "the header's $secret reference is resolved"
    );

    // A commit the API server refuses: one notification, however often the sync is retried.
    repo.write("app/bad.yaml", &cm("Bad_Name", "x"));
    let bad = repo.commit("invalid object");
    let failed = eventually("the failure notified", WAIT, || {
        generic(&receiver, "on-sync-failed", &bad).first().cloned()
    });
    assert_eq!(failed["app"], "root");
    let message = failed["message"].as_str().unwrap_or("");
    assert!(
        message.starts_with(&format!("root failed to sync {bad}: "))
            && message.contains("Bad_Name"),
        "{failed}"
    );
    let first_try = s.ok(&[
        "get",
        "application",
        "root",
        "-o",
        "jsonpath={.status.operationState.startedAt}",
    ]);
    eventually("the failed sync retried", WAIT, || {
        let out = s.ok(&[
            "get",
            "application",
            "root",
            "-o",
            "jsonpath={.status.operationState.phase} {.status.operationState.startedAt}",
        ]);
        (out.starts_with("Failed ") && !out.ends_with(&first_try)).then_some(())
    });
    // The notifier looks at every Application at least every 2 s; a record in the annotation
    // is what keeps it from sending again.
    eventually("the failure recorded", WAIT, || {
        s.ok(&[
            "get",
            "application",
            "root",
            "-o",
            "jsonpath={.metadata.annotations.notified\\.notifications\\.argoproj\\.io}",
        ])
        .contains(&bad)
        .then_some(())
    });
    assert_eq!(generic(&receiver, "on-sync-failed", &bad).len(), 1);

    let slack = receiver.requests("/slack");
    assert_eq!(slack.len(), 1, "{slack:?}");
    let payload = json_body(&slack[0]);
    assert!(
        payload["text"]
            .as_str()
            .is_some_and(|t| t.contains("Bad_Name")),
        "{payload}"
    );
    assert_eq!(payload["attachments"][0]["title"], "root", "{payload}");
    assert_eq!(payload["attachments"][0]["color"], "#E96D76", "{payload}");

    // The commit status, on a loopback endpoint speaking Gitea's API (no Gitea is packaged).
    let owner = repo
        .path
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let status_path = format!("/gitea/api/v1/repos/{owner}/repo/statuses/{bad}");
    let statuses = receiver.requests(&status_path);
    assert_eq!(statuses.len(), 1, "{:?}", receiver.requests("/gitea"));
    assert_eq!(
        statuses[0].headers.get("authorization").map(String::as_str),
        Some("token gitea-s3cret")
    );
    let status = json_body(&statuses[0]);
    assert_eq!(status["state"], "failure", "{status}");
    assert_eq!(
        status["context"], "continuous-delivery/gitplane",
        "{status}"
    );

    // The fix (the object renamed): a success notification and a success status on its commit.
    repo.write("app/bad.yaml", &cm("good-name", "x"));
    let fix = repo.commit("fix");
    eventually("the fix notified", WAIT, || {
        (!generic(&receiver, "on-sync-succeeded", &fix).is_empty()).then_some(())
    });
    let fixed = eventually("the fix's commit status", WAIT, || {
        receiver
            .requests(&format!("/gitea/api/v1/repos/{owner}/repo/statuses/{fix}"))
            .first()
            .map(json_body)
    });
    assert_eq!(fixed["state"], "success", "{fixed}");
    assert_eq!(generic(&receiver, "on-sync-failed", &bad).len(), 1);
}

/// A trigger whose conditions choose by the Application's labels (CEL over `app`).
fn when_config(receiver: &str, payments_when: &str) -> String {
    format!(
        r##"apiVersion: v1
kind: Namespace
metadata:
  name: gitplane-system
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: gitplane-notifications-cm
  namespace: gitplane-system
data:
  service.webhook.ops: |
    url: {receiver}/hooks/ops
  template.synced: |
    message: "synced {{{{revision}}}}"
  template.payments: |
    message: "payments synced {{{{revision}}}}"
  trigger.on-sync-succeeded: |
    - when: app.status.operationState.phase == 'Succeeded'
      send: [synced]
    - when: {payments_when}
      send: [payments]
"##
    )
}

#[test]
fn a_triggers_when_condition_chooses_what_is_sent_and_a_bad_one_is_reported() {
    let repo = GitRepo::new();
    repo.write("app/one.yaml", &cm("one", "1"));
    let first = repo.commit("first");
    let repo_path = repo.path.to_string_lossy().into_owned();
    let s = Server::start_with(&["--repo", &repo_path, "--path", "app"]);
    let receiver = common::Receiver::start();
    let payments = "\"has(app.metadata.labels) && 'team' in app.metadata.labels && app.metadata.labels['team'] == 'payments'\"";
    s.ok_stdin(&["apply", "-f", "-"], &when_config(&receiver.url, payments));
    s.ok(&[
        "annotate",
        "application",
        "root",
        "notifications.argoproj.io/subscribe.on-sync-succeeded.ops=",
    ]);
    let messages = |revision: &str| -> Vec<String> {
        receiver
            .requests("/hooks/ops")
            .iter()
            .map(json_body)
            .filter(|b| b["revision"] == revision)
            .map(|b| b["message"].as_str().unwrap_or("").to_string())
            .collect()
    };
    eventually("the first sync notified", WAIT, || {
        (!messages(&first).is_empty()).then_some(())
    });
    // Recorded: the event is handled, and the payments condition did not hold.
    eventually("the first sync recorded", WAIT, || {
        s.ok(&[
            "get",
            "application",
            "root",
            "-o",
            "jsonpath={.metadata.annotations.notified\\.notifications\\.argoproj\\.io}",
        ])
        .contains(&first)
        .then_some(())
    });
    assert_eq!(messages(&first), vec![format!("synced {first}")]);

    // Labelled for the payments team: the next revision sends both templates.
    s.ok(&["label", "application", "root", "team=payments"]);
    repo.write("app/two.yaml", &cm("two", "2"));
    let second = repo.commit("second");
    let both = eventually("both templates sent", WAIT, || {
        let mut m = messages(&second);
        m.sort();
        (m.len() == 2).then_some(m)
    });
    assert_eq!(
        both,
        vec![
            format!("payments synced {second}"),
            format!("synced {second}")
        ]
    );

    // An expression that does not compile: a Warning Event on the ConfigMap names the key, and
    // nothing is sent until it is fixed.
    s.ok_stdin(
        &["apply", "-f", "-"],
        &when_config(&receiver.url, "\"app.metadata.labels.(\""),
    );
    let events = eventually("the configuration's Event", WAIT, || {
        let out = s.ok(&[
            "get",
            "events",
            "-n",
            "gitplane-system",
            "--field-selector",
            "involvedObject.name=gitplane-notifications-cm",
        ]);
        out.contains("InvalidNotificationConfig").then_some(out)
    });
    assert!(
        events.contains("trigger.on-sync-succeeded: [1].when"),
        "{events}"
    );
    repo.write("app/three.yaml", &cm("three", "3"));
    let third = repo.commit("third");
    eventually("the third revision synced", WAIT, || {
        let out = s.ok(&[
            "get",
            "application",
            "root",
            "-o",
            "jsonpath={.status.operationState.phase} {.status.operationState.revision}",
        ]);
        (out == format!("Succeeded {third}")).then_some(())
    });
    assert!(messages(&third).is_empty(), "{:?}", messages(&third));
}

#[test]
fn components_run_alone_serve_their_families_on_metrics_listen() {
    let s = Server::start();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _scheduler = s.spawn(
        "scheduler",
        &[
            "scheduler",
            "--scheduler-name",
            "other",
            "--metrics-listen",
            &listen,
        ],
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    // The pending pods are counted once the scheduler's loop runs.
    let text = eventually("the scheduler's /metrics with its queues", WAIT, || {
        let mut r = agent.get(format!("http://{listen}/metrics")).call().ok()?;
        r.body_mut()
            .read_to_string()
            .ok()
            .filter(|t| t.contains("scheduler_pending_pods{queue=\"active\"}"))
    });
    assert!(
        text.contains("# TYPE scheduler_schedule_attempts counter"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE scheduler_pending_pods gauge"),
        "{text}"
    );
    assert!(
        !text.contains("apiserver_request"),
        "a component alone shows only its own families: {text}"
    );
}
