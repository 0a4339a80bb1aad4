//! `faults`: the fault scenarios one command can run on this machine, each under a write load,
//! reported as one table (and one `scenario=…` line per figure).
//!
//! Every scenario runs `gitplane up` as a child process of this executable on its own data dir
//! and a fixed loopback port (so a restarted server answers where the clients already point),
//! and [`WRITERS`] clients create small ConfigMaps through it for as long as the scenario
//! lasts, retrying after any error. A write counts as acknowledged when the API answered 201;
//! once the fault is over and the server answers again, every acknowledged ConfigMap must be
//! listed (the rest are "lost"). "Time to recover" runs from the kill (of `up`: restart
//! included) or the end of the fault (etcd back, space freed, a new controller-manager
//! started) to the first acknowledged write after it, or, for the rollout, to the rollout's
//! completion (the new controller-manager first waits out the killed one's 15 s Lease).
//!
//! Scenarios: `up` killed with SIGKILL twice while a process node runs two pods (then stopped
//! cleanly: pod processes left behind are "leaked"); etcd stopped for 5 s under an API server
//! on it; the data dir's file system filled (a tmpfs, only as root); the controller-manager
//! killed with SIGKILL in the middle of a rollout on simulated nodes; a follower and then the
//! leader of a three-member etcd killed and restarted; a simulated node's process killed while
//! it runs pods (they are replaced on the node left); hostile Applications (a symlink out of
//! the repository, a kustomization climbing out of it, a YAML bomb) beside a good one, which
//! //! must keep syncing; the node agent and then the runtime, each a process of its own, killed
//! twice (the agent adopts the running containers; the runtime's containers die with it and run
//! again on the next one; nothing is left after the final clean stop); the scheduler killed
//! while it binds 300 pods (a new one binds the rest).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::gitops::git;
use super::report;
use crate::cmd::connect::ClientArgs;

/// Concurrent writers of the load.
const WRITERS: usize = 8;
/// The argument of the pods' `sleep`, to find their processes.
const SLEEP_MARK: &str = "86399";
/// How long anything the scenarios wait for may take.
const DEADLINE: Duration = Duration::from_secs(180);

/// One line of the report.
struct Row {
    /// Short name for the `scenario=faults metric=ID/…` lines.
    id: &'static str,
    scenario: &'static str,
    load: String,
    acknowledged: usize,
    lost: usize,
    leaked: Option<usize>,
    recover: Option<Duration>,
}

/// Runs every scenario and prints the table; fails when a write was lost or a process leaked.
/// `only` names scenarios by id (all when empty).
pub async fn run(only: &[String]) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let scenarios = [
        ("kill-up", "kill -9 of up (twice)", Scenario::KillUp),
        ("etcd-outage", "etcd outage (5 s)", Scenario::EtcdOutage),
        (
            "etcd-members",
            "etcd follower and leader loss",
            Scenario::EtcdMembers,
        ),
        ("node-loss", "node loss", Scenario::NodeLoss),
        (
            "hostile-repository",
            "hostile repository",
            Scenario::Hostile,
        ),
        (
            "disk-full",
            "disk full (embedded store)",
            Scenario::DiskFull,
        ),
        (
            "controller-manager",
            "controller-manager killed mid-rollout",
            Scenario::ControllerManager,
        ),
        (
            "node-components",
            "kill -9 of the node agent and of the runtime",
            Scenario::NodeComponents,
        ),
        (
            "scheduler",
            "scheduler killed mid-scheduling",
            Scenario::Scheduler,
        ),
    ];
    if let Some(unknown) = only
        .iter()
        .find(|o| !scenarios.iter().any(|(id, ..)| id == o))
    {
        let ids: Vec<&str> = scenarios.iter().map(|(id, ..)| *id).collect();
        anyhow::bail!(
            "--only {unknown}: no such scenario (one of {})",
            ids.join(", ")
        );
    }
    for (id, name, scenario) in scenarios {
        if !only.is_empty() && !only.iter().any(|o| o == id) {
            continue;
        }
        eprintln!("faults: {name}");
        let row = match scenario {
            Scenario::EtcdMembers => {
                let two = etcd_members()
                    .await
                    .with_context(|| format!("scenario {name}"))?;
                rows.extend(two);
                continue;
            }
            Scenario::NodeComponents => {
                let two = node_components()
                    .await
                    .with_context(|| format!("scenario {name}"))?;
                rows.extend(two);
                continue;
            }
            Scenario::NodeLoss => node_loss().await,
            Scenario::Scheduler => scheduler().await,
            Scenario::Hostile => hostile_repository().await,
            Scenario::KillUp => kill_up().await,
            Scenario::EtcdOutage => etcd_outage().await,
            Scenario::DiskFull if !nix::unistd::geteuid().is_root() => {
                eprintln!("faults: {name} skipped: mounting a tmpfs needs root");
                continue;
            }
            Scenario::DiskFull => disk_full().await,
            Scenario::ControllerManager => controller_manager().await,
        }
        .with_context(|| format!("scenario {name}"))?;
        rows.push(row);
    }
    println!(
        "| scenario | load during it | writes acknowledged | writes lost | processes leaked | time to recover |"
    );
    println!("|---|---|---|---|---|---|");
    for row in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            row.scenario,
            row.load,
            row.acknowledged,
            row.lost,
            row.leaked.map_or("—".to_owned(), |n| n.to_string()),
            row.recover
                .map_or("—".to_owned(), |d| format!("{:.1} s", d.as_secs_f64())),
        );
    }
    for row in &rows {
        let name = row.id;
        report(
            "faults",
            &format!("{name}/acknowledged"),
            row.acknowledged as f64,
            "writes",
        );
        report("faults", &format!("{name}/lost"), row.lost as f64, "writes");
        if let Some(leaked) = row.leaked {
            report(
                "faults",
                &format!("{name}/leaked"),
                leaked as f64,
                "processes",
            );
        }
        if let Some(recover) = row.recover {
            report(
                "faults",
                &format!("{name}/recover"),
                recover.as_secs_f64(),
                "s",
            );
        }
    }
    let lost: usize = rows.iter().map(|r| r.lost).sum();
    let leaked: usize = rows.iter().filter_map(|r| r.leaked).sum();
    anyhow::ensure!(
        lost == 0 && leaked == 0,
        "{lost} acknowledged writes lost, {leaked} processes leaked"
    );
    Ok(())
}

#[derive(Clone, Copy)]
enum Scenario {
    KillUp,
    EtcdOutage,
    EtcdMembers,
    NodeLoss,
    Hostile,
    DiskFull,
    ControllerManager,
    NodeComponents,
    Scheduler,
}

/// `gitplane up` as a child process on `data`, listening on `port`, restartable.
struct UpProcess {
    child: Option<Child>,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    extra: Vec<String>,
}

impl UpProcess {
    fn start(data: &Path, log: &Path, extra: &[&str]) -> anyhow::Result<UpProcess> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut up = UpProcess {
            child: None,
            data: data.to_owned(),
            log: log.to_owned(),
            port,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        };
        up.restart()?;
        Ok(up)
    }

    /// Starts the process (again) and waits for its kubeconfig.
    fn restart(&mut self) -> anyhow::Result<()> {
        let kubeconfig = self.kubeconfig();
        let _ = std::fs::remove_file(&kubeconfig);
        std::fs::create_dir_all(&self.data)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(std::env::current_exe()?)
            .args(["up", "--listen", &format!("127.0.0.1:{}", self.port)])
            .arg("--data-dir")
            .arg(&self.data)
            .args(&self.extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting gitplane up")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !kubeconfig.exists() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "gitplane up did not start in 60 s; see {}",
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn kubeconfig(&self) -> PathBuf {
        self.data.join("kubeconfig")
    }

    async fn client(&self) -> anyhow::Result<kube::Client> {
        let client = ClientArgs {
            kubeconfig: self.kubeconfig(),
        }
        .client()
        .await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while client.apiserver_version().await.is_err() {
            anyhow::ensure!(Instant::now() < deadline, "server not ready in 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(client)
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait (SIGKILL after 60 s).
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child);
        }
    }
}

/// SIGTERM to `child`, then wait for it (SIGKILL after 60 s).
fn stop(child: &mut Child) {
    terminate(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends SIGTERM to `child`.
fn terminate(child: &Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}

impl Drop for UpProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The write load: [`WRITERS`] tasks creating ConfigMaps `f-W-I` in `default` until stopped,
/// retrying after errors.
struct Load {
    acknowledged: Arc<Mutex<Vec<(String, Instant)>>>,
    stop: tokio_util::sync::CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(client: &kube::Client, value_bytes: usize) -> Load {
        let acknowledged: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
        let stop = tokio_util::sync::CancellationToken::new();
        let tasks = (0..WRITERS)
            .map(|w| {
                let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
                let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
                let value = "v".repeat(value_bytes);
                tokio::spawn(async move {
                    for i in 0.. {
                        if stop.is_cancelled() {
                            return;
                        }
                        let name = format!("f-{w}-{i}");
                        let cm: ConfigMap = serde_json::from_value(json!({
                            "metadata": {"name": name}, "data": {"v": value}}))
                        .expect("a ConfigMap");
                        let params = PostParams::default();
                        let result = tokio::select! {
                            _ = stop.cancelled() => return,
                            result = api.create(&params, &cm) => result,
                        };
                        match result {
                            Ok(_) => acknowledged
                                .lock()
                                .expect("lock")
                                .push((name, Instant::now())),
                            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                        }
                    }
                })
            })
            .collect();
        Load {
            acknowledged,
            stop,
            tasks,
        }
    }

    fn count(&self) -> usize {
        self.acknowledged.lock().expect("lock").len()
    }

    /// Waits until `n` writes are acknowledged in all.
    async fn wait_for(&self, n: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + DEADLINE;
        while self.count() < n {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the load stalled at {}",
                self.count()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Waits for the first write acknowledged after `since`; returns how long after `since`.
    async fn first_after(&self, since: Instant) -> anyhow::Result<Duration> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let first = self
                .acknowledged
                .lock()
                .expect("lock")
                .iter()
                .filter(|(_, at)| *at > since)
                .map(|(_, at)| *at)
                .min();
            if let Some(at) = first {
                return Ok(at - since);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "no write acknowledged after the fault"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The names acknowledged so far (the writers go on).
    fn names(&self) -> Vec<String> {
        let acknowledged = self.acknowledged.lock().expect("lock");
        acknowledged.iter().map(|(name, _)| name.clone()).collect()
    }

    /// Stops the writers; returns the names acknowledged.
    async fn finish(self) -> Vec<String> {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        let acknowledged = self.acknowledged.lock().expect("lock");
        acknowledged.iter().map(|(name, _)| name.clone()).collect()
    }
}

/// How many of `acknowledged` the server does not list.
async fn lost(client: &kube::Client, acknowledged: &[String]) -> anyhow::Result<usize> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let listed: HashSet<String> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|cm| cm.metadata.name)
        .collect();
    Ok(acknowledged.iter().filter(|n| !listed.contains(*n)).count())
}

/// A repository with one ConfigMap in `app/`, for `up --repo` (so no playground starts).
fn repository(dir: &Path) -> anyhow::Result<String> {
    let repo = dir.join("repo");
    std::fs::create_dir_all(repo.join("app"))?;
    std::fs::write(
        repo.join("app/cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-git\ndata:\n  v: \"1\"\n",
    )?;
    git(&repo, &["init", "-q", "-b", "main"])?;
    git(&repo, &["add", "-A"])?;
    git(&repo, &["commit", "-q", "-m", "faults"])?;
    Ok(repo.to_string_lossy().into_owned())
}

/// Processes running `sleep SLEEP_MARK` (the pods' containers; the runtime's shims carry the
/// same arguments after their own name, so only `sleep` itself counts).
fn sleepers() -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|cmdline| {
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.len() >= 2 && args[0].ends_with(b"sleep") && args[1] == SLEEP_MARK.as_bytes()
        })
        .count()
}

async fn wait_until<F, Fut>(what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !check().await {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn deployment(replicas: i32, image: &str, command: &[&str]) -> anyhow::Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": "faults"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "faults"}},
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "minReadySeconds": 1,
            "template": {
                "metadata": {"labels": {"app": "faults"}},
                "spec": {"containers": [{"name": "main", "image": image, "command": command}]},
            },
        },
    }))?)
}

async fn running_pods(client: &kube::Client) -> usize {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    api.list(&ListParams::default().labels("app=faults"))
        .await
        .map(|list| {
            list.items
                .iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .count()
        })
        .unwrap_or(0)
}

/// `up` on the embedded store with a process node running two pods, killed with SIGKILL twice
/// under load, restarted each time, then stopped cleanly.
async fn kill_up() -> anyhow::Result<Row> {
    let dir = tempfile::tempdir()?;
    let repo = repository(dir.path())?;
    let args = [
        "--repo",
        &repo,
        "--path",
        "app",
        "--runtime",
        "process",
        "--node-name",
        "faults",
    ];
    let mut up = UpProcess::start(&dir.path().join("data"), &dir.path().join("up.log"), &args)?;
    let client = up.client().await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments
        .create(
            &PostParams::default(),
            &deployment(2, "busybox", &["sleep", SLEEP_MARK])?,
        )
        .await?;
    wait_until("two pods running", || async {
        running_pods(&client).await == 2
    })
    .await?;
    let load = Load::start(&client, 64);
    let mut recover = Duration::ZERO;
    for round in 1..=2 {
        load.wait_for(200 * round).await?;
        let killed = Instant::now();
        up.kill9();
        up.restart()?;
        recover = recover.max(load.first_after(killed).await?);
    }
    load.wait_for(load.count() + 100).await?;
    let acknowledged = load.finish().await;
    let lost = lost(&client, &acknowledged).await?;
    up.stop();
    // The shims die with their runtime; give the last ones a moment to go.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sleepers() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Row {
        id: "kill-up",
        scenario: "kill -9 of `up` twice, process node with 2 pods",
        load: format!("{WRITERS} writers"),
        acknowledged: acknowledged.len(),
        lost,
        leaked: Some(sleepers()),
        recover: Some(recover),
    })
}

/// `up` on a one-member etcd; etcd killed for 5 s under load and restarted on its data.
async fn etcd_outage() -> anyhow::Result<Row> {
    let dir = tempfile::tempdir()?;
    let repo = repository(dir.path())?;
    let mut etcd = etcd_process::EtcdCluster::start(1)?;
    let store = format!("--store={}", etcd.store_url());
    let args = [
        "--repo",
        &repo,
        "--path",
        "app",
        "--runtime",
        "none",
        &store,
    ];
    let up = UpProcess::start(&dir.path().join("data"), &dir.path().join("up.log"), &args)?;
    let client = up.client().await?;
    let load = Load::start(&client, 64);
    load.wait_for(200).await?;
    etcd.kill(0);
    tokio::time::sleep(Duration::from_secs(5)).await;
    etcd.restart(0)?;
    let back = Instant::now();
    let recover = load.first_after(back).await?;
    load.wait_for(load.count() + 100).await?;
    let acknowledged = load.finish().await;
    let lost = lost(&client, &acknowledged).await?;
    drop(up);
    Ok(Row {
        id: "etcd-outage",
        scenario: "etcd killed for 5 s, `up --store etcd://`",
        load: format!("{WRITERS} writers"),
        acknowledged: acknowledged.len(),
        lost,
        leaked: None,
        recover: Some(recover),
    })
}

/// A mounted tmpfs, unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

/// `up` with its data dir on a 128 MiB tmpfs that a filler file fills under load; the filler
/// is removed after 3 s of refused writes; then `up` is restarted to count what survived.
async fn disk_full() -> anyhow::Result<Row> {
    let dir = tempfile::tempdir()?;
    let repo = repository(dir.path())?;
    let mount = Tmpfs(tempfile::tempdir()?);
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=128m", "tmpfs"])
        .arg(mount.0.path())
        .status()?
        .success();
    anyhow::ensure!(ok, "mount -t tmpfs failed");
    let args = ["--repo", &repo, "--path", "app", "--runtime", "none"];
    let mut up = UpProcess::start(
        &mount.0.path().join("data"),
        &dir.path().join("up.log"),
        &args,
    )?;
    let client = up.client().await?;
    let load = Load::start(&client, 1024);
    load.wait_for(200).await?;
    let filler = mount.0.path().join("filler");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&filler)?;
        let chunk = vec![0u8; 1 << 20];
        while file.write_all(&chunk).is_ok() {}
    }
    // Writes are refused now; let the load run into it.
    let full = Instant::now();
    let refused_from = load.count();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = load.count() - refused_from;
    std::fs::remove_file(&filler)?;
    let freed = Instant::now();
    let recover = load.first_after(freed).await?;
    load.wait_for(load.count() + 100).await?;
    let acknowledged = load.finish().await;
    up.stop();
    up.restart()?;
    let client = up.client().await?;
    let lost = lost(&client, &acknowledged).await?;
    drop(up);
    eprintln!(
        "faults: disk full: {during} writes acknowledged in the 3 s after the filler ({:.1} s)",
        full.elapsed().as_secs_f64()
    );
    drop(mount);
    Ok(Row {
        id: "disk-full",
        scenario: "data dir's file system full (tmpfs), embedded store",
        load: format!("{WRITERS} writers of 1 KiB"),
        acknowledged: acknowledged.len(),
        lost,
        leaked: None,
        recover: Some(recover),
    })
}

/// `up --disable-controllers` on simulated nodes with a `gitplane controller-manager` process,
/// killed with SIGKILL while a 6-replica Deployment rolls out; a new one finishes it.
async fn controller_manager() -> anyhow::Result<Row> {
    let dir = tempfile::tempdir()?;
    let repo = repository(dir.path())?;
    let args = [
        "--repo",
        &repo,
        "--path",
        "app",
        "--runtime",
        "simulated",
        "--nodes",
        "2",
        "--disable-controllers",
    ];
    let up = UpProcess::start(&dir.path().join("data"), &dir.path().join("up.log"), &args)?;
    let client = up.client().await?;
    let kubeconfig = up.kubeconfig();
    let kubeconfig = kubeconfig.to_str().context("utf-8 temp dir")?.to_owned();
    let cm_args = [
        "controller-manager",
        "--kubeconfig",
        &kubeconfig,
        "--leader-elect-lease-duration",
        "15s",
    ];
    let first = Component::spawn(&cm_args, &dir.path().join("cm-1.log"))?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments
        .create(&PostParams::default(), &deployment(6, "web:1", &["web"])?)
        .await?;
    let complete = |image: &'static str| {
        let deployments = deployments.clone();
        move || {
            let deployments = deployments.clone();
            async move {
                let Ok(d) = deployments.get("faults").await else {
                    return false;
                };
                let (spec, status) = (d.spec.unwrap_or_default(), d.status.unwrap_or_default());
                let template_image = spec
                    .template
                    .spec
                    .and_then(|s| s.containers.into_iter().next())
                    .and_then(|c| c.image);
                template_image.as_deref() == Some(image)
                    && status.observed_generation == d.metadata.generation
                    && status.updated_replicas == Some(6)
                    && status.available_replicas == Some(6)
                    && status.replicas == Some(6)
            }
        }
    };
    wait_until("the first rollout", complete("web:1")).await?;
    let load = Load::start(&client, 64);
    load.wait_for(100).await?;
    deployments
        .patch(
            "faults",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "main", "image": "web:2"}]}}}})),
        )
        .await?;
    wait_until("the rollout under way", || {
        let deployments = deployments.clone();
        async move {
            deployments
                .get("faults")
                .await
                .ok()
                .and_then(|d| d.status)
                .and_then(|s| s.updated_replicas)
                .is_some_and(|n| n >= 1)
        }
    })
    .await?;
    first.kill9();
    let second = Component::spawn(&cm_args, &dir.path().join("cm-2.log"))?;
    let restarted = Instant::now();
    wait_until(
        "the rollout finished by the new controller-manager",
        complete("web:2"),
    )
    .await?;
    let recover = restarted.elapsed();
    let acknowledged = load.finish().await;
    let lost = lost(&client, &acknowledged).await?;
    second.stop();
    drop(up);
    Ok(Row {
        id: "controller-manager",
        scenario: "controller-manager killed mid-rollout (6 replicas, simulated nodes)",
        load: format!("{WRITERS} writers + the rollout"),
        acknowledged: acknowledged.len(),
        lost,
        leaked: None,
        recover: Some(recover),
    })
}

/// `up` on a three-member etcd: a follower killed under load (the load goes on), restarted;
/// then the leader killed (a new one is elected) and restarted. Two rows.
async fn etcd_members() -> anyhow::Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let repo = repository(dir.path())?;
    let mut etcd = etcd_process::EtcdCluster::start(3)?;
    let store = format!("--store={}", etcd.store_url());
    let args = [
        "--repo",
        &repo,
        "--path",
        "app",
        "--runtime",
        "none",
        &store,
    ];
    let up = UpProcess::start(&dir.path().join("data"), &dir.path().join("up.log"), &args)?;
    let client = up.client().await?;
    let load = Load::start(&client, 64);
    load.wait_for(200).await?;
    let leader = etcd.leader().context("the etcd cluster has no leader")?;
    let follower = (leader + 1) % etcd.size();
    let start = load.count();
    etcd.kill(follower);
    let killed = Instant::now();
    let follower_recover = load.first_after(killed).await?;
    load.wait_for(load.count() + 100).await?;
    let during_follower = load.count() - start;
    etcd.restart(follower)?;
    etcd.wait_healthy()?;
    load.wait_for(load.count() + 100).await?;
    let leader = etcd
        .leader()
        .context("no leader after the follower came back")?;
    etcd.kill(leader);
    let killed = Instant::now();
    let leader_recover = load.first_after(killed).await?;
    load.wait_for(load.count() + 100).await?;
    etcd.restart(leader)?;
    etcd.wait_healthy()?;
    load.wait_for(load.count() + 100).await?;
    let acknowledged = load.finish().await;
    let lost = lost(&client, &acknowledged).await?;
    drop(up);
    eprintln!("faults: {during_follower} writes acknowledged while a follower was down");
    Ok(vec![
        Row {
            id: "etcd-follower",
            scenario: "etcd follower killed and restarted (3 members), `up --store etcd://`",
            load: format!("{WRITERS} writers"),
            acknowledged: acknowledged.len(),
            lost,
            leaked: None,
            recover: Some(follower_recover),
        },
        Row {
            id: "etcd-leader",
            scenario: "etcd leader killed and restarted (3 members; the same run)",
            load: format!("{WRITERS} writers"),
            acknowledged: acknowledged.len(),
            lost,
            leaked: None,
            recover: Some(leader_recover),
        },
    ])
}

/// `up` with one simulated node and a second node in a `gitplane simulate-nodes` process
/// that is killed with SIGKILL under load while a 4-replica Deployment runs on both; the
/// node lifecycle controller marks it unreachable (4 s grace here), its pods are evicted
/// (`tolerationSeconds: 0`) and replaced on the node that is left.
async fn node_loss() -> anyhow::Result<Row> {
    let dir = tempfile::tempdir()?;
    let repo = repository(dir.path())?;
    let args = [
        "--repo",
        &repo,
        "--path",
        "app",
        "--runtime",
        "simulated",
        "--nodes",
        "1",
        "--node-monitor-grace-period",
        "4s",
        "--node-monitor-period",
        "1s",
    ];
    let up = UpProcess::start(&dir.path().join("data"), &dir.path().join("up.log"), &args)?;
    let client = up.client().await?;
    let log = std::fs::File::create(dir.path().join("extra-node.log"))?;
    let mut extra = Command::new(std::env::current_exe()?)
        .args(["simulate-nodes", "--count", "1", "--name-prefix", "extra-"])
        .args(["--lease-renew-interval", "1s", "--kubeconfig"])
        .arg(up.kubeconfig())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    wait_until("the extra node registered", || {
        let nodes = nodes.clone();
        async move { nodes.get("extra-0").await.is_ok() }
    })
    .await?;
    let mut spread = deployment(4, "web:1", &["web"])?;
    let tolerations = json!([
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 0},
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 0}
    ]);
    if let Some(spec) = spread.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        spec.tolerations = Some(serde_json::from_value(tolerations)?);
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments.create(&PostParams::default(), &spread).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let running_on = |node: &'static str| {
        let pods = pods.clone();
        async move {
            pods.list(&ListParams::default().labels("app=faults"))
                .await
                .map(|l| {
                    l.items
                        .iter()
                        .filter(|p| p.metadata.deletion_timestamp.is_none())
                        .filter(|p| {
                            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                        })
                        .filter(|p| {
                            p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)
                        })
                        .count()
                })
                .unwrap_or(0)
        }
    };
    wait_until("pods on both nodes", || async {
        running_on("extra-0").await >= 1 && running_on("sim-node-0").await >= 1
    })
    .await?;
    let load = Load::start(&client, 64);
    load.wait_for(100).await?;
    let _ = extra.kill();
    let _ = extra.wait();
    let killed = Instant::now();
    wait_until("four replicas running on the node left", || async {
        running_on("sim-node-0").await == 4
    })
    .await?;
    let recover = killed.elapsed();
    load.wait_for(load.count() + 100).await?;
    let acknowledged = load.finish().await;
    let lost = lost(&client, &acknowledged).await?;
    drop(up);
    Ok(Row {
        id: "node-loss",
        scenario: "simulated node process killed (4 replicas, 2 nodes, 4 s grace)",
        load: format!("{WRITERS} writers"),
        acknowledged: acknowledged.len(),
        lost,
        leaked: None,
        recover: Some(recover),
    })
}

/// `up` syncing a good app beside three hostile ones in the same repository (a symlink to
/// `/etc/passwd`, a kustomization whose resources climb out of the repository, a YAML bomb of
/// aliases): each hostile app gets a condition and applies nothing, and a commit to the good
/// app is applied while they fail. "Recover" is that commit → applied.
async fn hostile_repository() -> anyhow::Result<Row> {
    let dir = tempfile::tempdir()?;
    let repo_path = repository(dir.path())?;
    let repo = Path::new(&repo_path);
    std::fs::create_dir_all(repo.join("link"))?;
    std::os::unix::fs::symlink("/etc/passwd", repo.join("link/passwd.yaml"))?;
    std::fs::create_dir_all(repo.join("climb"))?;
    std::fs::write(
        repo.join("climb/kustomization.yaml"),
        "resources:\n- ../../../../../../../etc\n",
    )?;
    std::fs::create_dir_all(repo.join("bomb"))?;
    let mut bomb = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\ndata:\n  a0: &a0 \"lol\"\n",
    );
    for i in 1..=9 {
        let prev = format!("*a{}", i - 1);
        let row = [prev.as_str(); 10].join(", ");
        bomb.push_str(&format!("  a{i}: &a{i} [{row}]\n"));
    }
    std::fs::write(repo.join("bomb/bomb.yaml"), bomb)?;
    git(repo, &["add", "-A"])?;
    git(repo, &["commit", "-q", "-m", "hostile"])?;
    let args = ["--repo", &repo_path, "--path", "app", "--runtime", "none"];
    let up = UpProcess::start(&dir.path().join("data"), &dir.path().join("up.log"), &args)?;
    let client = up.client().await?;
    let apps: Api<kube::api::DynamicObject> = Api::all_with(
        client.clone(),
        &reconciler::gitops::syncer::application_resource(),
    );
    for path in ["link", "climb", "bomb"] {
        let app: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "gitplane.io/v1alpha1", "kind": "Application",
            "metadata": {"name": format!("hostile-{path}")},
            "spec": {"source": {"repoURL": repo_path, "path": path},
                     "destination": {"namespace": "default"},
                     "syncPolicy": {"automated": {}}}
        }))?;
        apps.create(&PostParams::default(), &app).await?;
    }
    let load = Load::start(&client, 64);
    load.wait_for(100).await?;
    for path in ["link", "climb", "bomb"] {
        let name = format!("hostile-{path}");
        let apps = apps.clone();
        wait_until(&format!("a condition on {name}"), move || {
            let (apps, name) = (apps.clone(), name.clone());
            async move {
                apps.get(&name).await.ok().is_some_and(|a| {
                    a.data["status"]["conditions"]
                        .as_array()
                        .is_some_and(|c| !c.is_empty())
                })
            }
        })
        .await?;
    }
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    anyhow::ensure!(
        cms.get("bomb").await.is_err(),
        "the YAML bomb's ConfigMap was applied"
    );
    std::fs::write(
        repo.join("app/cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-git\ndata:\n  v: \"2\"\n",
    )?;
    git(repo, &["commit", "-q", "-am", "good app, second commit"])?;
    let committed = Instant::now();
    wait_until("the good app's commit applied", || {
        let cms = cms.clone();
        async move {
            cms.get("from-git").await.ok().is_some_and(|cm| {
                cm.data
                    .and_then(|d| d.get("v").cloned())
                    .is_some_and(|v| v == "2")
            })
        }
    })
    .await?;
    let recover = committed.elapsed();
    let acknowledged = load.finish().await;
    let lost = lost(&client, &acknowledged).await?;
    drop(up);
    Ok(Row {
        id: "hostile-repository",
        scenario: "hostile apps (symlink to /etc/passwd, kustomize climbing out, YAML bomb) beside a good app",
        load: format!("{WRITERS} writers + the syncer"),
        acknowledged: acknowledged.len(),
        lost,
        leaked: None,
        recover: Some(recover),
    })
}

/// A component as its own child process (`gitplane ARGS…`), logging to `log`; killed with
/// SIGKILL if dropped still running (a scenario that fails half-way leaves nothing behind).
struct Component {
    child: Option<Child>,
}

impl Component {
    fn spawn(args: &[&str], log: &Path) -> anyhow::Result<Component> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let child = Command::new(std::env::current_exe()?)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting gitplane {}", args.join(" ")))?;
        Ok(Component { child: Some(child) })
    }

    /// SIGKILL, and wait for it (what dropping it does).
    fn kill9(self) {
        drop(self);
    }

    /// SIGTERM, then wait (SIGKILL after 60 s).
    fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child);
        }
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The container IDs of the running `app=faults` pods, sorted.
async fn container_ids(client: &kube::Client) -> Vec<String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut ids: Vec<String> = api
        .list(&ListParams::default().labels("app=faults"))
        .await
        .map(|list| list.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter_map(|p| {
            p.status?
                .container_statuses?
                .into_iter()
                .next()?
                .container_id
        })
        .collect();
    ids.sort();
    ids
}

/// `up --runtime none` with the node as two processes of their own, `gitplane runtime` (the
/// process runtime on a unix socket) and `gitplane node` (the agent), running two pods under
/// load. First the agent is killed with SIGKILL twice and restarted: the pods' processes run on
/// and the new agent adopts them (same container IDs, still two `sleep`s). Then the runtime is
/// killed with SIGKILL twice and restarted on its root: its containers die with it (each runs
/// under a shim), the agent runs the pods again on the new runtime. Finally everything stops
/// cleanly and the pods' processes left over are counted. Two rows: "recover" runs from the kill
/// to a new pod Running (agent) and to both pods Running again (runtime).
async fn node_components() -> anyhow::Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let repo = repository(dir.path())?;
    let args = ["--repo", &repo, "--path", "app", "--runtime", "none"];
    let up = UpProcess::start(&dir.path().join("data"), &dir.path().join("up.log"), &args)?;
    let client = up.client().await?;
    let node_dir = dir.path().join("node");
    std::fs::create_dir_all(&node_dir)?;
    let socket = node_dir.join("rt.sock");
    let socket = socket.to_str().context("utf-8 temp dir")?.to_owned();
    let root = node_dir.join("runtime");
    let root = root.to_str().context("utf-8 temp dir")?.to_owned();
    let agent_dir = node_dir.join("agent");
    let agent_dir = agent_dir.to_str().context("utf-8 temp dir")?.to_owned();
    let kubeconfig = up.kubeconfig();
    let kubeconfig = kubeconfig.to_str().context("utf-8 temp dir")?.to_owned();
    let runtime_args = [
        "runtime",
        "--socket",
        &socket,
        "--root",
        &root,
        "--pod-network",
        "host",
    ];
    let agent_args = [
        "node",
        "--name",
        "faults",
        "--runtime-endpoint",
        &socket,
        "--data-dir",
        &agent_dir,
        "--kubeconfig",
        &kubeconfig,
    ];
    let (runtime_log, agent_log) = (dir.path().join("runtime.log"), dir.path().join("node.log"));
    let mut runtime = Component::spawn(&runtime_args, &runtime_log)?;
    let mut agent = Component::spawn(&agent_args, &agent_log)?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments
        .create(
            &PostParams::default(),
            &deployment(2, "busybox", &["sleep", SLEEP_MARK])?,
        )
        .await?;
    wait_until("two pods running", || async {
        running_pods(&client).await == 2 && sleepers() == 2
    })
    .await?;
    let load = Load::start(&client, 64);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // The agent, twice.
    let before = container_ids(&client).await;
    let mut agent_recover = Duration::ZERO;
    for round in 1..=2 {
        load.wait_for(100 * round).await?;
        let killed = Instant::now();
        agent.kill9();
        agent = Component::spawn(&agent_args, &agent_log)?;
        let probe = format!("probe-{round}");
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": probe},
            "spec": {"containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]},
        }))?;
        pods.create(&PostParams::default(), &pod).await?;
        wait_until("a new pod running after the agent's restart", || {
            let pods = pods.clone();
            let probe = probe.clone();
            async move {
                pods.get(&probe)
                    .await
                    .ok()
                    .and_then(|p| p.status?.phase)
                    .as_deref()
                    == Some("Running")
            }
        })
        .await?;
        agent_recover = agent_recover.max(killed.elapsed());
        pods.delete(&probe, &Default::default()).await?;
    }
    let after = container_ids(&client).await;
    anyhow::ensure!(
        before == after && sleepers() == 2,
        "the restarted agent did not adopt the running containers ({before:?} before, {after:?} \
         after, {} sleep processes)",
        sleepers()
    );
    let agent_acknowledged = load.names();
    let agent_lost = lost(&client, &agent_acknowledged).await?;

    // The runtime, twice.
    let mut runtime_recover = Duration::ZERO;
    for round in 1..=2 {
        load.wait_for(agent_acknowledged.len() + 100 * round)
            .await?;
        let before = container_ids(&client).await;
        let killed = Instant::now();
        runtime.kill9();
        runtime = Component::spawn(&runtime_args, &runtime_log)?;
        wait_until("both pods running again on the new runtime", || {
            let (client, before) = (client.clone(), before.clone());
            async move {
                let now = container_ids(&client).await;
                now.len() == 2 && now.iter().all(|id| !before.contains(id)) && sleepers() == 2
            }
        })
        .await?;
        runtime_recover = runtime_recover.max(killed.elapsed());
    }
    load.wait_for(load.count() + 100).await?;
    let acknowledged = load.finish().await;
    let lost = lost(&client, &acknowledged).await?;
    // A clean stop: the agent, then the runtime (which stops what it runs), then `up`.
    agent.stop();
    runtime.stop();
    drop(up);
    let deadline = Instant::now() + Duration::from_secs(10);
    while sleepers() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let leaked = sleepers();
    Ok(vec![
        Row {
            id: "kill-agent",
            scenario: "kill -9 of `gitplane node` twice (its runtime a process of its own, 2 pods)",
            load: format!("{WRITERS} writers"),
            acknowledged: agent_acknowledged.len(),
            lost: agent_lost,
            leaked: None,
            recover: Some(agent_recover),
        },
        Row {
            id: "kill-runtime",
            scenario: "kill -9 of `gitplane runtime` twice under its agent (2 pods)",
            load: format!("{WRITERS} writers"),
            acknowledged: acknowledged.len(),
            lost,
            leaked: Some(leaked),
            recover: Some(runtime_recover),
        },
    ])
}

/// `up --disable-scheduler` on simulated nodes with a `gitplane scheduler` process, killed with
/// SIGKILL while 300 pods are being scheduled; a new one (after the killed one's 15 s Lease)
/// binds the rest. "Recover" runs from the new scheduler's start to the last pod bound.
async fn scheduler() -> anyhow::Result<Row> {
    let dir = tempfile::tempdir()?;
    let repo = repository(dir.path())?;
    let args = [
        "--repo",
        &repo,
        "--path",
        "app",
        "--runtime",
        "simulated",
        "--nodes",
        "4",
        "--disable-scheduler",
    ];
    let up = UpProcess::start(&dir.path().join("data"), &dir.path().join("up.log"), &args)?;
    let client = up.client().await?;
    let kubeconfig = up.kubeconfig();
    let kubeconfig = kubeconfig.to_str().context("utf-8 temp dir")?.to_owned();
    let scheduler_args = [
        "scheduler",
        "--kubeconfig",
        &kubeconfig,
        "--leader-elect-lease-duration",
        "15s",
    ];
    let log = dir.path().join("scheduler.log");
    let load = Load::start(&client, 64);
    load.wait_for(100).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let bound = || {
        let pods = pods.clone();
        async move {
            pods.list(&ListParams::default().labels("app=faults"))
                .await
                .map(|l| {
                    l.items
                        .iter()
                        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
                        .count()
                })
                .unwrap_or(0)
        }
    };
    let first = Component::spawn(&scheduler_args, &log)?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let mut many = deployment(300, "web:1", &["web"])?;
    if let Some(spec) = many.spec.as_mut() {
        spec.strategy = None;
    }
    deployments.create(&PostParams::default(), &many).await?;
    wait_until("the first pods bound", || async { bound().await >= 1 }).await?;
    first.kill9();
    let at_kill = bound().await;
    let second = Component::spawn(&scheduler_args, &log)?;
    let restarted = Instant::now();
    wait_until("every pod bound by the new scheduler", || async {
        bound().await == 300
    })
    .await?;
    let recover = restarted.elapsed();
    eprintln!("faults: {at_kill} of 300 pods were bound when the scheduler was killed");
    let acknowledged = load.finish().await;
    let lost = lost(&client, &acknowledged).await?;
    second.stop();
    drop(up);
    Ok(Row {
        id: "scheduler",
        scenario: "scheduler killed while 300 pods are scheduled (4 simulated nodes)",
        load: format!("{WRITERS} writers + the pods"),
        acknowledged: acknowledged.len(),
        lost,
        leaked: None,
        recover: Some(recover),
    })
}
