//! The web console in a real browser: `gitplane up` with the playground on simulated nodes,
//! headless Chromium driven through chromedriver (WebDriver, plain HTTP on loopback): sign in
//! with a token, see the applications, open one and find its Deployment and Pods in the tree, see
//! a commit arrive without a reload, roll back with the button, and a `view` token refused on
//! Sync; on the Review page, a branch's changes and the dry-run refusals of the caller's own RBAC. Screenshots of the list and of an application's tree go to `$GITPLANE_SCREENSHOTS`
//! (the README's are made with `GITPLANE_SCREENSHOTS=docs`), else to the target's temp dir.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, eventually, git_in as git};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

/// chromedriver on a free loopback port; killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Driver {
        for tool in ["chromedriver", "chromium"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(
                found,
                "{tool} is required by the console tests: apt-get install chromium chromium-driver \
                 (scripts/test.sh installs them)"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        eventually("chromedriver to listen", WAIT, || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ())
        });
        Driver { child, url }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &Driver, profile: &std::path::Path) -> Client {
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        // The cluster CA is the test's own; the browser is told to accept it.
        "--ignore-certificate-errors",
        "--window-size=1400,1000",
    ]
    .iter()
    .map(|a| a.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect::<Vec<_>>();
    let mut caps = serde_json::Map::new();
    caps.insert("acceptInsecureCerts".into(), json!(true));
    caps.insert("goog:chromeOptions".into(), json!({"args": args}));
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session in headless Chromium")
}

/// Polls the page until `f` returns `Some`, or fails the test after [`WAIT`].
async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The text of the first element matching `css`, if there is one.
async fn text(c: &Client, css: &str) -> Option<String> {
    let element = c.find(Locator::Css(css)).await.ok()?;
    element.text().await.ok()
}

/// Clicks the first element matching `css`, finding it again while the click fails: the pages
/// render again on every live update, and an element found just before one is stale.
async fn click(c: &Client, css: &str) {
    until(&format!("a click on {css}"), || async {
        c.find(Locator::Css(css)).await.ok()?.click().await.ok()
    })
    .await
}

async fn count(c: &Client, css: &str) -> usize {
    c.find_all(Locator::Css(css)).await.map_or(0, |v| v.len())
}

async fn sign_in(c: &Client, base: &str, token: &str) {
    c.goto(&format!("{base}/ui/"))
        .await
        .expect("open the console");
    let area = until("the sign-in form", || async {
        c.find(Locator::Css("#token")).await.ok()
    })
    .await;
    area.send_keys(token).await.expect("type the token");
    c.find(Locator::Css("#signin"))
        .await
        .expect("sign-in button")
        .click()
        .await
        .expect("click sign in");
    until("the applications page", || async {
        text(c, "#whoami")
            .await
            .filter(|t| t.contains("signed in as"))
    })
    .await;
}

fn screenshot_dir() -> PathBuf {
    let dir = std::env::var_os("GITPLANE_SCREENSHOTS")
        .map(|d| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(d))
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

async fn save_screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(screenshot_dir().join(name), png).expect("write screenshot");
}

fn token(s: &Server, namespace: &str, account: &str) -> String {
    s.ok(&["-n", namespace, "create", "token", account])
        .trim()
        .to_string()
}

#[test]
fn the_console_shows_applications_live_rolls_back_and_refuses_a_viewer_sync() {
    let driver = Driver::start();
    let profile = tempfile::tempdir().expect("browser profile");
    let s = Server::start_with(&["--runtime", "simulated", "--nodes", "2", "--disable-proxy"]);
    eventually("the playground synced and healthy", WAIT, || {
        let out = s.kubectl(&[
            "get",
            "applications",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.sync.status}/{.status.health.status} {end}",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("hello=Synced/Healthy").then_some(())
    });
    let admin = token(&s, "kube-system", "gitplane-console");
    s.ok(&["create", "serviceaccount", "viewer"]);
    s.ok(&[
        "create",
        "clusterrolebinding",
        "viewer",
        "--clusterrole=view",
        "--serviceaccount=default:viewer",
    ]);
    let viewer = token(&s, "default", "viewer");
    let repo = s.data_dir.join("repo");

    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let c = browser(&driver, profile.path()).await;
            sign_in(&c, &s.url, &admin).await;

            // The list: every playground application, hello synced and healthy.
            until("hello synced and healthy in the list", || async {
                let sync = text(&c, "tr[data-app='hello'] .sync").await?;
                let health = text(&c, "tr[data-app='hello'] .health").await?;
                (sync == "Synced" && health == "Healthy").then_some(())
            })
            .await;
            for app in ["platform", "root", "web-prod", "web-staging"] {
                assert_eq!(
                    count(&c, &format!("tr[data-app='{app}']")).await,
                    1,
                    "{app}"
                );
            }
            save_screenshot(&c, "console-applications.png").await;

            // An application's tree: its Deployment and the Pods under it.
            click(&c, "tr[data-app='hello'] a").await;
            until("hello's Deployment and two Pods in the tree", || async {
                let deployment =
                    count(&c, "g.node[data-kind='Deployment'][data-name='hello']").await;
                let pods = count(&c, "g.node[data-kind='Pod'][data-health='Healthy']").await;
                (deployment == 1 && pods == 2).then_some(())
            })
            .await;
            assert_eq!(count(&c, "g.node[data-kind='ReplicaSet']").await, 1);
            save_screenshot(&c, "console-tree.png").await;

            // A commit shows up without a reload: new revision, a third Pod.
            let values = repo.join("apps/hello/values.yaml");
            let text_before = std::fs::read_to_string(&values).expect("hello's values");
            std::fs::write(&values, text_before.replace("replicas: 2", "replicas: 3"))
                .expect("write values");
            git(&repo, &["commit", "-qam", "Scale hello to 3"]);
            let scaled = git(&repo, &["rev-parse", "HEAD"]);
            until("the new revision and a third Pod on the page", || async {
                let revision = text(&c, "#revision").await?;
                let pods = count(&c, "g.node[data-kind='Pod']").await;
                (revision == scaled[..7] && pods == 3).then_some(())
            })
            .await;

            // Roll back with the button: the revert commit is synced and in the history.
            click(&c, "button.rollback").await;
            until("the revert in the sync history", || async {
                let first = text(&c, "#history tr .message").await?;
                (first == "Revert \"Scale hello to 3\"").then_some(())
            })
            .await;
            assert_eq!(
                git(&repo, &["log", "--format=%s", "-n", "1"]),
                "Revert \"Scale hello to 3\""
            );
            let app: Value = s.get_json("/apis/gitplane.io/v1alpha1/applications/hello");
            assert_eq!(
                app.pointer("/status/operationState/initiatedBy/username")
                    .and_then(Value::as_str),
                Some("system:serviceaccount:kube-system:gitplane-console"),
                "{app}"
            );
            assert!(
                app.get("operation").is_none(),
                "the operation was taken: {app}"
            );

            // A read-only token sees the pages but is refused on Sync, clearly.
            c.find(Locator::Css("#signout"))
                .await
                .expect("sign out")
                .click()
                .await
                .expect("click sign out");
            sign_in(&c, &s.url, &viewer).await;
            c.goto(&format!("{}/ui/#/apps/hello", s.url))
                .await
                .expect("open hello as the viewer");
            until("hello's tree for the viewer", || async {
                (count(&c, "g.node[data-kind='Deployment']").await == 1).then_some(())
            })
            .await;
            click(&c, "#sync").await;
            let refusal = until("the refusal", || async {
                text(&c, "#notice").await.filter(|t| t.contains("403"))
            })
            .await;
            assert!(
                refusal.contains("Refused (403 Forbidden)")
                    && refusal.contains("system:serviceaccount:default:viewer"),
                "{refusal}"
            );
            c.close().await.expect("close the browser");
        });
}

/// A ResourceQuota, which the `edit` role may read but not write: its dry run is refused to a
/// reviewer with `edit` in the namespace and would pass for an administrator.
const QUOTA: &str = "apiVersion: v1
kind: ResourceQuota
metadata:
  name: review-quota
spec:
  hard:
    pods: \"10\"
";

#[test]
fn the_review_page_shows_what_a_branch_would_change_with_the_callers_refusals() {
    let driver = Driver::start();
    let profile = tempfile::tempdir().expect("browser profile");
    let s = Server::start_with(&["--runtime", "simulated", "--nodes", "2", "--disable-proxy"]);
    eventually("hello synced and healthy", WAIT, || {
        let out = s.kubectl(&[
            "get",
            "application",
            "hello",
            "-o",
            "jsonpath={.status.sync.status}/{.status.health.status}",
        ]);
        (String::from_utf8_lossy(&out.stdout) == "Synced/Healthy").then_some(())
    });
    // A reviewer who reads everything and may edit workloads in hello, nothing more.
    s.ok(&["create", "serviceaccount", "reviewer"]);
    s.ok(&[
        "create",
        "clusterrolebinding",
        "reviewer-view",
        "--clusterrole=view",
        "--serviceaccount=default:reviewer",
    ]);
    s.ok(&[
        "-n",
        "hello",
        "create",
        "rolebinding",
        "reviewer-edit",
        "--clusterrole=edit",
        "--serviceaccount=default:reviewer",
    ]);
    let reviewer = token(&s, "default", "reviewer");

    // A branch in its own worktree, so the branch the syncer follows never moves.
    let repo = s.data_dir.join("repo");
    let branch_dir = s.data_dir.join("branch");
    git(
        &repo,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "bigger",
            &branch_dir.to_string_lossy(),
        ],
    );
    let values = branch_dir.join("apps/hello/values.yaml");
    let text_before = std::fs::read_to_string(&values).expect("hello's values");
    std::fs::write(&values, text_before.replace("replicas: 2", "replicas: 4")).expect("values");
    std::fs::write(branch_dir.join("apps/hello/templates/quota.yaml"), QUOTA).expect("quota");
    git(&branch_dir, &["add", "-A"]);
    git(
        &branch_dir,
        &["commit", "-qm", "Scale hello to 4 with a quota"],
    );

    // The endpoint answers only a bearer token's owner.
    let anonymous = s.http_as(
        &common::Auth::Anonymous,
        "GET",
        "/gitplane/v1/applications/hello/review?revision=bigger",
        b"",
        &[],
    );
    assert_eq!(anonymous.code, 401, "{}", anonymous.body);

    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let c = browser(&driver, profile.path()).await;
            sign_in(&c, &s.url, &reviewer).await;
            c.goto(&format!("{}/ui/#/review", s.url))
                .await
                .expect("open Review");
            let apps = until("hello among the applications", || async {
                let select = c.find(Locator::Css("#review-app")).await.ok()?;
                (count(&c, "#review-app option[value='hello']").await == 1).then_some(select)
            })
            .await;
            apps.select_by_value("hello").await.expect("pick hello");
            let branches = until("the branch among hello's branches", || async {
                let select = c.find(Locator::Css("#review-branch")).await.ok()?;
                (count(&c, "#review-branch option[value='bigger']").await == 1).then_some(select)
            })
            .await;
            branches
                .select_by_value("bigger")
                .await
                .expect("pick the branch");
            c.find(Locator::Css("#review-run"))
                .await
                .expect("the Review button")
                .click()
                .await
                .expect("click Review");
            let deployment = until("the changed Deployment in the report", || async {
                text(
                    &c,
                    "#review-report tr[data-object='Deployment/hello/hello']",
                )
                .await
            })
            .await;
            assert!(
                deployment.contains("changed") && deployment.contains("passed"),
                "{deployment}"
            );
            let quota = text(
                &c,
                "#review-report tr.refused[data-object='ResourceQuota/hello/review-quota']",
            )
            .await
            .expect("the quota refused in the report");
            assert!(
                quota.contains("added")
                    && quota.contains("forbidden")
                    && quota.contains("system:serviceaccount:default:reviewer"),
                "{quota}"
            );
            // The diff is in a collapsed <details>: read its text, not what is shown.
            let diff = c
                .find(Locator::Css(
                    "#review-report details[data-object='Deployment/hello/hello'] pre",
                ))
                .await
                .expect("the Deployment's diff")
                .prop("textContent")
                .await
                .expect("its text")
                .unwrap_or_default();
            assert!(
                diff.lines()
                    .any(|l| l.starts_with('+') && l.contains("replicas: 4")),
                "{diff}"
            );
            c.close().await.expect("close the browser");
        });

    // A review applies nothing.
    let d = s.get_json("/apis/apps/v1/namespaces/hello/deployments/hello");
    assert_eq!(d["spec"]["replicas"], 2);
    let (code, _) = s.http(
        "GET",
        "/api/v1/namespaces/hello/resourcequotas/review-quota",
        "",
        b"",
    );
    assert_eq!(code, 404);
}
