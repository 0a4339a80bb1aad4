//! `gitplane up`: the whole platform in one process.
//!
//! Start-up order: the API server (on the embedded store, or `--store etcd://…`), then, once it
//! serves, the GitOps syncer. The syncer follows the Application `root`: on `--repo` when given,
//! otherwise on a playground repository seeded from `examples-repo/` in the data dir on first
//! start. The controllers, scheduler and local node join here as their issues land.

use std::path::Path;

use anyhow::Context;
use kube::api::{Api, DynamicObject, PostParams};
use reconciler::gitops::{repo, syncer};
use serde_json::json;

use super::client;
use super::server::{self, ServerArgs};

mod examples {
    include!(concat!(env!("OUT_DIR"), "/examples.rs"));
}

/// Flags of `gitplane up`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    server: ServerArgs,
    /// Git repository for the Application `root` (local path, file://, https://, ssh://).
    /// Default: a playground repository seeded from examples-repo/ in the data dir.
    #[arg(long)]
    repo: Option<String>,
    /// Directory inside the repository that `root` renders (default: `applications` in the
    /// playground, the repository root otherwise).
    #[arg(long)]
    path: Option<String>,
    /// File with the shared secret of the push webhook (`POST /webhooks/git` on the API
    /// address). Without it the webhook refuses every request.
    #[arg(long)]
    webhook_secret_file: Option<std::path::PathBuf>,
}

/// Creates the Application `root` unless it exists.
async fn ensure_root(client: &kube::Client, repo_url: &str, path: &str) -> anyhow::Result<bool> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &syncer::application_resource());
    if api.get_opt("root").await?.is_some() {
        return Ok(false);
    }
    let app: DynamicObject = serde_json::from_value(json!({
        "apiVersion": apimachinery::application::API_VERSION,
        "kind": apimachinery::application::KIND,
        "metadata": {"name": "root"},
        "spec": {
            "source": {"repoURL": repo_url, "path": path},
            "destination": {"namespace": "default"},
            "syncPolicy": {"automated": {"prune": true, "selfHeal": true}},
        },
    }))?;
    api.create(&PostParams::default(), &app).await?;
    Ok(true)
}

/// Runs the platform until Ctrl-C or SIGTERM.
pub fn run(args: Args) -> anyhow::Result<u8> {
    server::init_logging();
    server::block_on(async move {
        let api = server::start(&args.server).await?;
        let kubeconfig = args.server.data_dir.join("kubeconfig");
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let address = api.local_addr();
        let client = client::connect(&kubeconfig).await?;
        let syncer =
            syncer::Syncer::new(client.clone(), syncer::Config::new(&args.server.data_dir));
        let secret = match &args.webhook_secret_file {
            Some(f) => Some(
                std::fs::read(f)
                    .with_context(|| format!("reading the webhook secret {}", f.display()))?
                    .trim_ascii()
                    .to_vec(),
            ),
            None => None,
        };
        let webhook = reconciler::gitops::webhook::router(syncer.webhook(secret));
        let serving = tokio::spawn(api.serve_with(webhook, stopped(stop_rx.clone())));
        tokio::spawn(async move {
            server::shutdown_signal().await;
            let _ = stop_tx.send(true);
        });

        let (repo_url, path, seeded) = match &args.repo {
            Some(r) => (r.clone(), args.path.clone().unwrap_or_default(), false),
            None => {
                let playground = std::fs::canonicalize(&args.server.data_dir)
                    .with_context(|| format!("data dir {}", args.server.data_dir.display()))?
                    .join("repo");
                let seeded = repo::seed(
                    &playground,
                    examples::FILES,
                    "Seed the gitplane playground from examples-repo",
                )?;
                let path = args.path.clone().unwrap_or_else(|| "applications".into());
                (playground.to_string_lossy().into_owned(), path, seeded)
            }
        };
        ensure_root(&client, &repo_url, &path).await?;
        print_welcome(address, &kubeconfig, &repo_url, seeded);

        let sync_task = tokio::spawn(syncer.run(stopped(stop_rx.clone())));
        serving.await.context("API server task")??;
        let _ = sync_task.await;
        tracing::info!("gitplane stopped");
        Ok(0)
    })?
}

fn print_welcome(address: std::net::SocketAddr, kubeconfig: &Path, repo: &str, seeded: bool) {
    eprintln!("gitplane is up on http://{address}");
    eprintln!(
        "  kubectl --kubeconfig {} get applications",
        kubeconfig.display()
    );
    eprintln!("  gitplane apps --kubeconfig {}", kubeconfig.display());
    if seeded {
        eprintln!("A playground repository was created at {repo}. Try:");
        eprintln!(
            "  cd {repo} && sed -i 's/replicas: 2/replicas: 3/' apps/hello/values.yaml && git commit -am 'Scale hello'"
        );
        eprintln!(
            "and watch the change roll out: kubectl --kubeconfig {} get deploy -A -w",
            kubeconfig.display()
        );
    } else {
        eprintln!("Syncing the Application root from {repo}.");
    }
}
