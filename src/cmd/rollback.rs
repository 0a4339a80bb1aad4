//! `gitplane rollback APP [--to REV]`: asks, through an `operation` on the Application (the path
//! the web console takes too), for a `git revert` commit on the tracked branch, which the syncer
//! makes (committed directly in a local repository; pushed with the Application's credentials to
//! a remote one) and then converges to. The history stays the single source of truth, and automated sync
//! never undoes a rollback, because the rollback is a commit.
//!
//! An Application of a Helm chart repository has no commit of its own: when a parent
//! Application renders it from Git (app of apps), the parent is rolled back (its values and
//! chart version are in the parent's commits); without one, the rollback is refused with what
//! to change instead.

use anyhow::Context;
use apimachinery::application::ANNOTATION_APP;
use kube::api::{Api, DynamicObject};
use reconciler::gitops::operation::{self, Kind};
use reconciler::gitops::syncer::application_resource;
use serde_json::Value;

use super::connect::ClientArgs;

/// Flags of `gitplane rollback`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The Application.
    app: String,
    /// The revision to go back to (default: the one synced before the current one).
    #[arg(long)]
    to: Option<String>,
    /// How long to wait for the syncer, in seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    #[command(flatten)]
    kube: ClientArgs,
}

/// Asks the syncer for the rollback and follows it until the revert commit is synced.
pub fn run(args: Args) -> anyhow::Result<u8> {
    super::server::block_on(async move {
        let client = args.kube.client().await?;
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &application_resource());
        let mut name = args.app.clone();
        let mut app = serde_json::to_value(api.get(&name).await?)?;
        if app
            .pointer("/spec/source/chart")
            .and_then(Value::as_str)
            .is_some_and(|c| !c.is_empty())
        {
            let parent = app
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(ANNOTATION_APP))
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty() && *p != name)
                .map(str::to_string)
                .with_context(|| {
                    format!(
                        "{name}: spec.source is a Helm chart repository, which has no commit to revert, and no Application renders {name} from Git; set spec.source.targetRevision (or its values) to what it was"
                    )
                })?;
            eprintln!(
                "{name}: spec.source is a Helm chart repository; its chart version and values are in the commits of Application {parent}: rolling back {parent}"
            );
            name = parent;
            app = serde_json::to_value(api.get(&name).await?)?;
        }
        let target = match &args.to {
            Some(t) => t.clone(),
            None => {
                let current = app
                    .pointer("/status/sync/revision")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                app.pointer("/status/history")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .rev()
                    .filter_map(|h| h.get("revision").and_then(Value::as_str))
                    .find(|r| *r != current)
                    .map(str::to_string)
                    .with_context(|| {
                        format!(
                            "{} has no earlier synced revision to roll back to; pass --to REV",
                            name
                        )
                    })?
            }
        };
        let kind = Kind::Rollback {
            revision: target.clone(),
        };
        let id = operation::request(&client, &name, kind).await?;
        let (code, app) = super::sync::follow(&api, &name, &id, false, args.timeout).await?;
        if code == 0 {
            let head = app
                .pointer("/status/operationState/revertCommit")
                .and_then(Value::as_str)
                .unwrap_or("");
            println!("{}: reverted to {target} with commit {head}", name);
        }
        Ok(code)
    })?
}
