//! `gitplane rollback APP [--to REV]`: a `git revert` commit on the tracked branch, which the
//! syncer then converges to. The history stays the single source of truth, and automated sync
//! never undoes a rollback, because the rollback is a commit.

use anyhow::{Context, bail};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use reconciler::gitops::application::ANNOTATION_REFRESH;
use reconciler::gitops::repo;
use reconciler::gitops::syncer::application_resource;
use serde_json::{Value, json};

use super::client::{self, KubeconfigArg};

/// Flags of `gitplane rollback`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The Application.
    app: String,
    /// The revision to go back to (default: the one synced before the current one).
    #[arg(long)]
    to: Option<String>,
    #[command(flatten)]
    kube: KubeconfigArg,
}

/// Reverts the commits after the target and asks the syncer to refresh.
pub fn run(args: Args) -> anyhow::Result<u8> {
    super::server::block_on(async move {
        let client = client::connect(&args.kube.kubeconfig).await?;
        let api: Api<DynamicObject> = Api::all_with(client, &application_resource());
        let app = serde_json::to_value(api.get(&args.app).await?)?;
        let s = |p: &str| {
            app.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let repo_url = s("/spec/source/repoURL");
        let Some(path) = repo::local_path(&repo_url) else {
            bail!(
                "{}: rolling back a remote repository ({repo_url}) needs a push, which gitplane does not do yet; revert the commit in your repository and push it",
                args.app
            );
        };
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
        let repository =
            git2::Repository::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let oid = repository
            .revparse_single(&target)
            .and_then(|o| o.peel_to_commit())
            .with_context(|| format!("revision {target:?} not found in {}", path.display()))?
            .id();
        drop(repository);
        let branch = s("/spec/source/targetRevision");
        let head = repo::revert_to(&path, &branch, oid)?;
        println!("{}: reverted to {target} with commit {head}", args.app);
        let patch = json!({"metadata": {"annotations": {ANNOTATION_REFRESH: head.to_string()}}});
        api.patch(&args.app, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        Ok(0)
    })?
}
