//! `fleet-sync`: one hub and `destinations` destination API servers (all in this process, plain
//! HTTP), each registered as a cluster Secret; one ApplicationSet with the `clusters` generator
//! makes one Application per destination. Each of `commits` commits changes one ConfigMap; the
//! figure is commit → applied in every destination (p50, p99), and the slowest single
//! destination's p99.

use std::time::{Duration, Instant};

use apimachinery::fleet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, DynamicObject, PostParams};
use reconciler::gitops::applicationset;
use reconciler::gitops::syncer::{self, Syncer};
use serde_json::json;

use super::client::BenchServer;
use super::gitops::git;
use super::{percentile_ms, report};

fn client_for(server: &BenchServer) -> anyhow::Result<kube::Client> {
    let config = kube::Config::new(format!("http://{}", server.addr).parse()?);
    Ok(kube::Client::try_from(config)?)
}

fn configmap(value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fleet\ndata:\n  value: \"{value}\"\n"
    )
}

/// Runs the scenario.
pub async fn run(destinations: usize, commits: usize) -> anyhow::Result<()> {
    let hub = BenchServer::start().await?;
    let hub_client = client_for(&hub)?;
    let mut remotes = Vec::new();
    for _ in 0..destinations {
        let server = BenchServer::start().await?;
        let client = client_for(&server)?;
        remotes.push((server, client));
    }
    let namespaces: Api<Namespace> = Api::all(hub_client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": fleet::NAMESPACE}}))?,
        )
        .await?;
    let secrets: Api<Secret> = Api::namespaced(hub_client.clone(), fleet::NAMESPACE);
    for (i, (server, _)) in remotes.iter().enumerate() {
        let secret = json!({
            "metadata": {"name": format!("dest-{i}"), "namespace": fleet::NAMESPACE,
                         "labels": {fleet::LABEL_SECRET_TYPE: fleet::SECRET_TYPE_CLUSTER,
                                    "fleet": "bench"}},
            "stringData": {"name": format!("dest-{i}"), "server": format!("http://{}", server.addr),
                           "config": "{}"},
        });
        secrets
            .create(&PostParams::default(), &serde_json::from_value(secret)?)
            .await?;
    }
    let tmp = tempfile::tempdir()?;
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(repo.join("app"))?;
    git(&repo, &["init", "-q", "-b", "main"])?;
    std::fs::write(repo.join("app/cm.yaml"), configmap("v0"))?;
    git(&repo, &["add", "-A"])?;
    git(&repo, &["commit", "-q", "-m", "v0"])?;
    let sets: Api<DynamicObject> = Api::all_with(
        hub_client.clone(),
        &applicationset::applicationset_resource(),
    );
    let set: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "gitplane.io/v1alpha1", "kind": "ApplicationSet",
        "metadata": {"name": "fleet"},
        "spec": {
            "generators": [{"clusters": {"selector": {"matchLabels": {"fleet": "bench"}}}}],
            "template": {
                "metadata": {"name": "fleet-{{name}}"},
                "spec": {"source": {"repoURL": repo.to_string_lossy(), "path": "app"},
                         "destination": {"name": "{{name}}", "namespace": "default"},
                         "syncPolicy": {"automated": {"prune": true}}},
            },
        },
    }))?;
    sets.create(&PostParams::default(), &set).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut config = syncer::Config::new(tmp.path());
    config.workers = config.workers.max(destinations);
    tokio::spawn(Syncer::new(hub_client.clone(), config).run(stopped(stop_rx.clone())));
    tokio::spawn(applicationset::run(
        hub_client.clone(),
        tmp.path().join("applicationsets"),
        stopped(stop_rx.clone()),
    ));
    let cms: Vec<Api<ConfigMap>> = remotes
        .iter()
        .map(|(_, c)| Api::namespaced(c.clone(), "default"))
        .collect();
    // Waits until every destination has `want`; returns when each got it.
    let all_have = async |want: &str, deadline: Duration| -> anyhow::Result<Vec<Instant>> {
        let end = Instant::now() + deadline;
        let mut seen: Vec<Option<Instant>> = vec![None; cms.len()];
        loop {
            for (i, api) in cms.iter().enumerate() {
                if seen[i].is_some() {
                    continue;
                }
                let value = api
                    .get_opt("fleet")
                    .await
                    .ok()
                    .flatten()
                    .and_then(|cm| cm.data.and_then(|d| d.get("value").cloned()));
                if value.as_deref() == Some(want) {
                    seen[i] = Some(Instant::now());
                }
            }
            if seen.iter().all(Option::is_some) {
                return Ok(seen.into_iter().flatten().collect());
            }
            anyhow::ensure!(
                Instant::now() < end,
                "value {want} not applied in every destination within {deadline:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    all_have("v0", Duration::from_secs(60)).await?;
    let mut all = Vec::new();
    let mut each = Vec::new();
    for n in 1..=commits {
        let value = format!("v{n}");
        std::fs::write(repo.join("app/cm.yaml"), configmap(&value))?;
        git(&repo, &["add", "-A"])?;
        git(&repo, &["commit", "-q", "-m", &value])?;
        let committed = Instant::now();
        let applied = all_have(&value, Duration::from_secs(60)).await?;
        each.extend(applied.iter().map(|t| *t - committed));
        all.push(applied.into_iter().max().unwrap_or(committed) - committed);
    }
    let _ = stop_tx.send(true);
    all.sort();
    each.sort();
    report(
        "fleet-sync",
        "destinations",
        destinations as f64,
        "clusters",
    );
    report("fleet-sync", "commits", commits as f64, "commits");
    report(
        "fleet-sync",
        "commit_to_all_applied_p50",
        percentile_ms(&all, 50.0),
        "ms",
    );
    report(
        "fleet-sync",
        "commit_to_all_applied_p99",
        percentile_ms(&all, 99.0),
        "ms",
    );
    report(
        "fleet-sync",
        "commit_to_one_applied_p99",
        percentile_ms(&each, 99.0),
        "ms",
    );
    Ok(())
}
