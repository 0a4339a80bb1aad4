//! `gitplane diff`: the pull-request review.
//!
//! With `--app`, the head revision is rendered as the Application would render it and compared
//! with the live cluster; every changed object goes through the API server with `dryRun=All`, so
//! validation, admission webhooks and RBAC speak in the review, and what would be pruned is
//! listed. Without `--app` (no cluster), head is compared with base. Exit code: 0 no change,
//! 1 changes, 2 errors.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use anyhow::{Context, bail};
use apimachinery::object::ObjectExt;
use kube::api::{Api, DynamicObject};
use reconciler::gitops::application::{ResourceStatus, Spec};
use reconciler::gitops::cluster::Cluster;
use reconciler::gitops::repo::{Credentials, Mirror};
use reconciler::gitops::review::{Change, Entry, Review};
use reconciler::gitops::syncer::{application_resource, render_at};
use reconciler::gitops::{compare, sync};
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
    /// The revision under review.
    #[arg(long)]
    head: String,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    output: Format,
    #[command(flatten)]
    kube: ClientArgs,
}

type Rendered = Vec<(Value, String)>;

fn render(
    mirror: &Mirror,
    rev: &str,
    spec: &Spec,
    app: &str,
) -> anyhow::Result<(String, Rendered)> {
    let oid = mirror.resolve(rev)?;
    let objects = render_at(mirror, oid, &spec.source, app, &spec.destination.namespace)
        .map_err(|e| anyhow::anyhow!("revision {rev}: {e}"))?;
    Ok((oid.to_string(), objects))
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
    let (mut spec, app_name, previous, client) = match &app {
        Some(name) => {
            let client = args.kube.client().await?;
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &application_resource());
            let obj = serde_json::to_value(
                api.get(name)
                    .await
                    .with_context(|| format!("application {name:?}"))?,
            )?;
            let spec: Spec = serde_json::from_value(obj.get("spec").cloned().unwrap_or_default())?;
            let previous: Vec<ResourceStatus> = obj
                .pointer("/status/resources")
                .cloned()
                .and_then(|r| serde_json::from_value(r).ok())
                .unwrap_or_default();
            (spec, name.clone(), previous, Some(client))
        }
        None => (Spec::default(), "review".to_string(), Vec::new(), None),
    };
    if let Some(r) = &args.repo {
        spec.source.repo_url = r.clone();
    }
    if let Some(p) = &args.path {
        spec.source.path = p.clone();
    }
    if spec.source.repo_url.is_empty() {
        bail!("nothing to review: give --app APP, or --repo PATH (and --path P)");
    }
    let mirror = Mirror::open(tmp.path(), &spec.source.repo_url)?;
    mirror.fetch(&Credentials::default())?;
    let mut review = Review::default();
    let (head_sha, head) = match render(&mirror, &args.head, &spec, &app_name) {
        Ok(r) => r,
        Err(e) => {
            review.title = format!("{} at {}", app_name, args.head);
            review.errors.push(e.to_string());
            return Ok(review);
        }
    };
    let short = &head_sha[..7.min(head_sha.len())];
    let Some(client) = client else {
        // No cluster: head against base.
        let base = match &args.base {
            Some(b) => render(&mirror, b, &spec, &app_name)?.1,
            None => Vec::new(),
        };
        review.title = format!("{} → {short}", args.base.as_deref().unwrap_or("(nothing)"));
        let ns = &spec.destination.namespace;
        let before: BTreeMap<String, Value> = base
            .into_iter()
            .map(|(v, _)| (identity(&v, ns), v))
            .collect();
        let after: BTreeMap<String, Value> = head
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
        return Ok(review);
    };
    review.title = format!("{app_name}: {short} against the live cluster");
    review.dry_run = true;
    let cluster = Cluster::new(client);
    let plan = match sync::plan(
        &cluster,
        &app_name,
        &spec.destination.namespace,
        &spec.source.repo_url,
        &head,
        &previous,
    )
    .await
    {
        Ok(p) => p,
        Err(e) => {
            review.errors.extend(e.0);
            return Ok(review);
        }
    };
    let refusals: BTreeMap<usize, String> = sync::dry_run_items(&cluster, &plan, &head_sha)
        .await
        .into_iter()
        .collect();
    let diffs = sync::diffs(&plan);
    for (i, item) in plan.items.iter().enumerate() {
        if item.action == sync::Action::InSync {
            continue;
        }
        let object = item.describe();
        review.entries.push(Entry {
            change: if item.live.is_some() {
                Change::Changed
            } else {
                Change::Added
            },
            diff: diffs.get(&object).cloned().unwrap_or_default(),
            error: refusals.get(&i).map(|m| format!("{}: {m}", item.source)),
            object,
        });
    }
    for p in &plan.prune {
        let e = &p.entry;
        let object = if e.namespace.is_empty() {
            format!("{}/{}", e.kind, e.name)
        } else {
            format!("{}/{}/{}", e.kind, e.namespace, e.name)
        };
        review.entries.push(Entry {
            object,
            change: Change::Removed,
            diff: String::new(),
            error: None,
        });
    }
    Ok(review)
}
