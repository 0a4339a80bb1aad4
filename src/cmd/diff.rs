//! `gitplane diff`: the pull-request review.
//!
//! With `--app`, the head revision is rendered as the Application would render it and compared
//! with the live cluster; every changed object goes through the API server with `dryRun=All`, so
//! validation, admission webhooks and RBAC speak in the review, and what would be pruned is
//! listed. An Application of a chart repository, or one rendered by a parent Application, is
//! reviewed as the parent renders it at head (so a change of its values in the parent's
//! manifest shows); Applications that head renders are reviewed after their parent's objects
//! (see `reconciler::gitops::preview`). Without `--app` (no cluster), head is compared with
//! base. Exit code: 0 no change, 1 changes, 2 errors.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use anyhow::{Context, bail};
use apimachinery::object::ObjectExt;
use reconciler::gitops::application::Spec;
use reconciler::gitops::compare;
use reconciler::gitops::preview::{self, Target};
use reconciler::gitops::repo::Mirror;
use reconciler::gitops::review::{Change, Entry, Review};
use serde_json::Value;

use super::connect::ClientArgs;

/// Output format.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Format {
    /// Colored text on a terminal.
    Text,
    /// Markdown for a pull-request comment.
    Markdown,
}

/// Flags of `gitplane diff`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Compare with the live objects of this Application (and dry-run through the API server).
    #[arg(long)]
    app: Option<String>,
    /// Repository (default: the Application's).
    #[arg(long)]
    repo: Option<String>,
    /// Directory inside the repository (default: the Application's).
    #[arg(long)]
    path: Option<String>,
    /// The revision the change starts from (compared with head when no --app is given).
    #[arg(long)]
    base: Option<String>,
    /// The revision under review (a branch, tag or commit; for an Application of a chart
    /// repository that no Application renders: the chart version or range).
    #[arg(long)]
    head: String,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    output: Format,
    #[command(flatten)]
    kube: ClientArgs,
}

fn identity(v: &Value, default_ns: &str) -> String {
    format!(
        "{}/{}/{}",
        v.kind().unwrap_or(""),
        v.namespace().unwrap_or(if default_ns.is_empty() {
            "default"
        } else {
            default_ns
        }),
        v.name().unwrap_or("")
    )
}

/// Runs the review; the exit code says no change / changes / errors.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let review = super::server::block_on(review(args.app.clone(), &args))??;
    match args.output {
        Format::Text => print!("{}", review.text(std::io::stdout().is_terminal())),
        Format::Markdown => print!("{}", review.markdown()),
    }
    Ok(review.exit_code())
}

async fn review(app: Option<String>, args: &Args) -> anyhow::Result<Review> {
    let tmp = tempfile::tempdir().context("temp dir")?;
    let (mut target, client) = match &app {
        Some(name) => {
            let client = args.kube.client().await?;
            (preview::application(&client, name).await?, Some(client))
        }
        None => (
            Target {
                name: "review".into(),
                spec: Spec::default(),
                previous: Vec::new(),
                parent: None,
            },
            None,
        ),
    };
    // A repository or path given by hand is reviewed as given, not as a parent renders it.
    if let Some(r) = &args.repo {
        target.spec.source.repo_url = r.clone();
        target.spec.source.chart.clear();
        target.parent = None;
    }
    if let Some(p) = &args.path {
        target.spec.source.path = p.clone();
        target.parent = None;
    }
    if target.spec.source.repo_url.is_empty() {
        bail!("nothing to review: give --app APP, or --repo PATH (and --path P)");
    }
    if let Some(client) = client {
        return Ok(preview::review(client, &target, &args.head, tmp.path()).await);
    }
    let mirror = preview::mirror(tmp.path(), &target.spec.source.repo_url)?;
    let head = match preview::render_revision(&mirror, &target, &args.head) {
        Ok(r) => r,
        Err(e) => {
            return Ok(Review {
                title: format!("{} at {}", target.name, args.head),
                errors: vec![e.to_string()],
                ..Review::default()
            });
        }
    };
    between(&mirror, &target, args.base.as_deref(), head)
}

/// No cluster: head against base (or against nothing).
fn between(
    mirror: &Mirror,
    target: &Target,
    base: Option<&str>,
    head: preview::Rendered,
) -> anyhow::Result<Review> {
    let short = &head.sha[..7.min(head.sha.len())];
    let before = match base {
        Some(b) => preview::render_revision(mirror, target, b)?.objects,
        None => Vec::new(),
    };
    let mut review = Review {
        title: format!("{} → {short}", base.unwrap_or("(nothing)")),
        ..Review::default()
    };
    let ns = &target.spec.destination.namespace;
    let before: BTreeMap<String, Value> = before
        .into_iter()
        .map(|(v, _)| (identity(&v, ns), v))
        .collect();
    let after: BTreeMap<String, Value> = head
        .objects
        .into_iter()
        .map(|(v, _)| (identity(&v, ns), v))
        .collect();
    let relabel = |d: String| d.replacen("--- live\n+++ desired\n", "--- base\n+++ head\n", 1);
    for (k, v) in &after {
        let diff = relabel(compare::diff_text(before.get(k), Some(v)));
        if !diff.is_empty() {
            let change = if before.contains_key(k) {
                Change::Changed
            } else {
                Change::Added
            };
            review.entries.push(Entry {
                object: k.clone(),
                change,
                diff,
                error: None,
            });
        }
    }
    for (k, v) in &before {
        if !after.contains_key(k) {
            review.entries.push(Entry {
                object: k.clone(),
                change: Change::Removed,
                diff: compare::diff_text(Some(v), None),
                error: None,
            });
        }
    }
    Ok(review)
}
