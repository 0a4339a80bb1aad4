//! `gitops-latency` (commit to a local repository → first object applied, with the syncer
//! running) and `gitops-sync` (an app of 1,000 objects: render + diff + dry-run + apply on the
//! first sync, render + diff on a no-op resync).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use kube::api::{Api, DynamicObject, PostParams};
use reconciler::gitops::application::Source;
use reconciler::gitops::cluster::Cluster;
use reconciler::gitops::repo::{Credentials, Mirror};
use reconciler::gitops::sync;
use reconciler::gitops::syncer::{self, Syncer, render_at};
use serde_json::json;

use super::client::BenchServer;
use super::{percentile_ms, report};

/// Runs `git` in `dir` as the benchmark's author.
pub(super) fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let ok = std::process::Command::new("git")
        .args(["-c", "user.name=bench", "-c", "user.email=bench@localhost"])
        .args(args)
        .current_dir(dir)
        .status()
        .context("running git (install it: apt-get install git)")?
        .success();
    anyhow::ensure!(ok, "git {} failed", args.join(" "));
    Ok(())
}

fn configmap(i: usize, value: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i:04}\ndata:\n  value: \"{value}\"\n"
    )
}

async fn client_for(server: &BenchServer) -> anyhow::Result<kube::Client> {
    let config = kube::Config::new(format!("http://{}", server.addr).parse()?);
    Ok(kube::Client::try_from(config)?)
}

/// `gitops-latency`: `commits` commits, each changing one ConfigMap.
pub async fn latency(commits: usize) -> anyhow::Result<()> {
    let server = BenchServer::start().await?;
    let client = client_for(&server).await?;
    let tmp = tempfile::tempdir()?;
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(repo.join("app"))?;
    git(&repo, &["init", "-q", "-b", "main"])?;
    std::fs::write(repo.join("app/cm.yaml"), configmap(0, "v0"))?;
    git(&repo, &["add", "-A"])?;
    git(&repo, &["commit", "-q", "-m", "v0"])?;
    let apps: Api<DynamicObject> = Api::all_with(client.clone(), &syncer::application_resource());
    let app: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "gitplane.io/v1alpha1", "kind": "Application", "metadata": {"name": "bench"},
        "spec": {"source": {"repoURL": repo.to_string_lossy(), "path": "app"}, "syncPolicy": {"automated": {"prune": true}}}
    }))?;
    apps.create(&PostParams::default(), &app).await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let syncer = Syncer::new(client.clone(), syncer::Config::new(tmp.path()));
    tokio::spawn(syncer.run(async move {
        let _ = stop_rx.await;
    }));
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client, "default");
    let value_is = async |want: &str, deadline: Duration| -> anyhow::Result<Instant> {
        let end = Instant::now() + deadline;
        loop {
            let current = cms.get("cm-0000").await.ok();
            let value = current
                .as_ref()
                .and_then(|cm| cm.data.as_ref()?.get("value"));
            if value.map(String::as_str) == Some(want) {
                return Ok(Instant::now());
            }
            anyhow::ensure!(
                Instant::now() < end,
                "value {want} not applied within {deadline:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    value_is("v0", Duration::from_secs(30)).await?;
    let mut latencies = Vec::new();
    for n in 1..=commits {
        let value = format!("v{n}");
        std::fs::write(repo.join("app/cm.yaml"), configmap(0, &value))?;
        git(&repo, &["add", "-A"])?;
        git(&repo, &["commit", "-q", "-m", &value])?;
        let committed = Instant::now();
        let applied = value_is(&value, Duration::from_secs(30)).await?;
        latencies.push(applied - committed);
    }
    let _ = stop_tx.send(());
    latencies.sort();
    report("gitops-latency", "commits", commits as f64, "commits");
    report(
        "gitops-latency",
        "commit_to_applied_p50",
        percentile_ms(&latencies, 50.0),
        "ms",
    );
    report(
        "gitops-latency",
        "commit_to_applied_p99",
        percentile_ms(&latencies, 99.0),
        "ms",
    );
    Ok(())
}

/// `gitops-sync`: an app of `objects` ConfigMaps.
pub async fn sync(objects: usize) -> anyhow::Result<()> {
    let server = BenchServer::start().await?;
    let client = client_for(&server).await?;
    let tmp = tempfile::tempdir()?;
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(repo.join("app"))?;
    git(&repo, &["init", "-q", "-b", "main"])?;
    for f in 0..10 {
        let text: String = (0..objects / 10)
            .map(|i| configmap(f * (objects / 10) + i, "v1"))
            .collect();
        std::fs::write(repo.join(format!("app/cms-{f}.yaml")), text)?;
    }
    git(&repo, &["add", "-A"])?;
    git(&repo, &["commit", "-q", "-m", "v1"])?;
    let mirror = Mirror::open(&tmp.path().join("mirrors"), &repo.to_string_lossy())?;
    mirror.fetch(&Credentials::default())?;
    let oid = mirror.resolve("")?;
    let sha = oid.to_string();
    let source = Source {
        repo_url: repo.to_string_lossy().into_owned(),
        path: "app".into(),
        ..Default::default()
    };
    let cluster = Cluster::new(client);
    let run = async |apply: bool| -> anyhow::Result<(Duration, bool)> {
        let started = Instant::now();
        let rendered =
            render_at(&mirror, oid, &source, "bench", "default").map_err(anyhow::Error::msg)?;
        let mut plan = sync::plan(
            &cluster,
            "bench",
            "default",
            &source.repo_url,
            &rendered,
            &[],
            false,
        )
        .await?;
        let changed = plan.out_of_sync();
        if apply && changed {
            let errors = sync::dry_run(&cluster, &plan, &sha).await;
            anyhow::ensure!(errors.is_empty(), "dry run: {}", errors.join("; "));
            sync::apply(&cluster, &mut plan, &sha, true).await?;
        }
        Ok((started.elapsed(), changed))
    };
    let (first, changed) = run(true).await?;
    anyhow::ensure!(changed, "the first sync found nothing to do");
    let mut noop = Vec::new();
    for _ in 0..5 {
        let (t, changed) = run(true).await?;
        anyhow::ensure!(!changed, "a resync after a full sync found changes");
        noop.push(t);
    }
    noop.sort();
    report("gitops-sync", "objects", objects as f64, "objects");
    report("gitops-sync", "first_sync", first.as_secs_f64(), "s");
    report(
        "gitops-sync",
        "noop_resync_p50",
        noop[noop.len() / 2].as_secs_f64(),
        "s",
    );
    Ok(())
}
