//! What a revision of an Application's repository would do to the live cluster, before it is
//! merged: rendered as the Application renders it, compared with the live objects, every changed
//! object dry-run (`dryRun=All`) through the API server so that validation, admission webhooks,
//! policies and RBAC speak, and what would be pruned listed. Shared by `gitplane diff --app` and
//! the console's Review endpoint ([`super::review_endpoint`]); the client it is given decides
//! whose identity the reads and the dry run carry.

use std::collections::BTreeMap;
use std::path::Path;

use kube::api::{Api, DynamicObject};
use serde_json::Value;

use super::application::{ResourceStatus, Spec};
use super::cluster::Cluster;
use super::repo::{Credentials, Mirror, RepoError};
use super::review::{Change, Entry, Review};
use super::sync;
use super::syncer::{application_resource, render_at};

/// Why an Application could not be previewed.
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    /// The Application could not be read: missing, or the client may not read it.
    #[error("application {name:?}: {source}")]
    Application {
        /// The Application.
        name: String,
        /// What the API server said.
        #[source]
        source: kube::Error,
    },
    /// Its spec is not an Application's.
    #[error("application {name:?}: spec: {source}")]
    Spec {
        /// The Application.
        name: String,
        /// What did not parse.
        #[source]
        source: serde_json::Error,
    },
}

/// An Application as a preview needs it.
#[derive(Clone, Debug)]
pub struct Target {
    /// Its name.
    pub name: String,
    /// Its spec (source and destination).
    pub spec: Spec,
    /// The objects its last sync recorded (`status.resources`): what a revision no longer
    /// rendering them would prune.
    pub previous: Vec<ResourceStatus>,
}

/// Reads the Application `name` with `client`.
pub async fn application(client: &kube::Client, name: &str) -> Result<Target, PreviewError> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &application_resource());
    let obj = api
        .get(name)
        .await
        .map_err(|source| PreviewError::Application {
            name: name.to_string(),
            source,
        })?;
    let obj = serde_json::to_value(obj).unwrap_or_default();
    let spec: Spec =
        serde_json::from_value(obj.get("spec").cloned().unwrap_or_default()).map_err(|source| {
            PreviewError::Spec {
                name: name.to_string(),
                source,
            }
        })?;
    let previous = obj
        .pointer("/status/resources")
        .cloned()
        .and_then(|r| serde_json::from_value(r).ok())
        .unwrap_or_default();
    Ok(Target {
        name: name.to_string(),
        spec,
        previous,
    })
}

/// A fresh mirror of `repo_url` under `dir`, fetched (every branch and tag).
pub fn mirror(dir: &Path, repo_url: &str) -> Result<Mirror, RepoError> {
    let mirror = Mirror::open(dir, repo_url)?;
    mirror.fetch(&Credentials::default())?;
    Ok(mirror)
}

/// The objects of one revision, rendered as the Application renders them, with the commit.
#[derive(Clone, Debug)]
pub struct Rendered {
    /// The commit `head` resolved to.
    pub sha: String,
    /// Each object with the `file:line` it came from.
    pub objects: Vec<(Value, String)>,
}

/// Renders `head` (a branch, tag or commit) of `mirror` for `target`; the error says which
/// revision and why.
pub fn render(mirror: &Mirror, target: &Target, head: &str) -> Result<Rendered, String> {
    let oid = mirror
        .resolve(head)
        .map_err(|e| format!("revision {head}: {e}"))?;
    let objects = render_at(
        mirror,
        oid,
        &target.spec.source,
        &target.name,
        &target.spec.destination.namespace,
    )
    .map_err(|e| format!("revision {head}: {e}"))?;
    Ok(Rendered {
        sha: oid.to_string(),
        objects,
    })
}

/// The review of `rendered` against the live cluster, read and dry-run with `client`.
pub async fn against_live(client: kube::Client, target: &Target, rendered: &Rendered) -> Review {
    let short = &rendered.sha[..7.min(rendered.sha.len())];
    let mut review = Review {
        title: format!("{}: {short} against the live cluster", target.name),
        dry_run: true,
        ..Review::default()
    };
    let cluster = Cluster::new(client);
    let plan = match sync::plan(
        &cluster,
        &target.name,
        &target.spec.destination.namespace,
        &target.spec.source.repo_url,
        &rendered.objects,
        &target.previous,
    )
    .await
    {
        Ok(p) => p,
        Err(e) => {
            review.errors.extend(e.0);
            return review;
        }
    };
    let refusals: BTreeMap<usize, String> = sync::dry_run_items(&cluster, &plan, &rendered.sha)
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
    review
}
