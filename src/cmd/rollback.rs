//! `gitplane rollback APP [--to REV]`: a `git revert` commit on the tracked branch (committed
//! directly in a local repository; pushed with the Application's credentials to a remote one),
//! which the syncer then converges to. The history stays the single source of truth, and automated sync
//! never undoes a rollback, because the rollback is a commit.

use anyhow::Context;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use reconciler::gitops::application::ANNOTATION_REFRESH;
use reconciler::gitops::repo::{self, Mirror};
use reconciler::gitops::syncer::{self, application_resource};
use serde_json::{Value, json};

use super::connect::ClientArgs;

/// Flags of `gitplane rollback`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The Application.
    app: String,
    /// The revision to go back to (default: the one synced before the current one).
    #[arg(long)]
    to: Option<String>,
    #[command(flatten)]
    kube: ClientArgs,
}

/// Reverts the commits after the target and asks the syncer to refresh.
pub fn run(args: Args) -> anyhow::Result<u8> {
    super::server::block_on(async move {
        let client = args.kube.client().await?;
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &application_resource());
        let app = serde_json::to_value(api.get(&args.app).await?)?;
        let s = |p: &str| {
            app.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let repo_url = s("/spec/source/repoURL");
        let history = app
            .pointer("/status/history")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let target = match &args.to {
            Some(t) => t.clone(),
            None => {
                let current = s("/status/sync/revision");
                history
                    .iter()
                    .rev()
                    .filter_map(|h| h.get("revision").and_then(Value::as_str))
                    .find(|r| *r != current)
                    .map(str::to_string)
                    .with_context(|| {
                        format!(
                            "{} has no earlier synced revision to roll back to; pass --to REV",
                            args.app
                        )
                    })?
            }
        };
        let branch = s("/spec/source/targetRevision");
        let head = match repo::local_path(&repo_url) {
            Some(path) => {
                let repository = git2::Repository::open(&path)
                    .with_context(|| format!("opening {}", path.display()))?;
                let oid = repository
                    .revparse_single(&target)
                    .and_then(|o| o.peel_to_commit())
                    .with_context(|| {
                        format!("revision {target:?} not found in {}", path.display())
                    })?
                    .id();
                drop(repository);
                repo::revert_to(&path, &branch, oid)?
            }
            None => {
                // A remote: revert in a fresh mirror and push with the Application's credentials.
                let secret = s("/spec/source/secretRef");
                let creds = syncer::credentials(&client, Some(&secret))
                    .await
                    .map_err(anyhow::Error::msg)?;
                let tmp = tempfile::tempdir().context("temp dir")?;
                let mirror = Mirror::open(tmp.path(), &repo_url)?;
                mirror.fetch(&creds)?;
                let oid = mirror.resolve(&target)?;
                let head = mirror.revert_and_push(&branch, oid, &creds)?;
                println!("{}: pushed the revert to {repo_url}", args.app);
                head
            }
        };
        println!("{}: reverted to {target} with commit {head}", args.app);
        let patch = json!({"metadata": {"annotations": {ANNOTATION_REFRESH: head.to_string()}}});
        api.patch(&args.app, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        Ok(0)
    })?
}
