//! What a revision of an Application's repository would do to the live cluster, before it is
//! merged: rendered as the Application renders it, compared with the live objects, every changed
//! object dry-run (`dryRun=All`) through the API server so that validation, admission webhooks,
//! policies and RBAC speak, and what would be pruned listed. Shared by `gitplane diff --app` and
//! the console's Review endpoint ([`super::review_endpoint`]); the client it is given decides
//! whose identity the reads and the dry run carry.
//!
//! [`review`] follows Applications as their repositories hold them (app of apps):
//! - an Application rendered by a parent Application from Git (a chart-repository one, or one
//!   reading the parent's repository) is reviewed with the spec the parent renders at the
//!   revision, so a change of its `helm.values` in the parent's manifest is seen; a chart-repository
//!   Application without a parent takes the revision as the chart's version (or range);
//! - an Application whose revision renders Applications reviews, after its own objects, each
//!   child whose spec changes or which reads the same repository: the child's objects (rendered
//!   from its chart repository, or from the same commit) against its live ones, listed as
//!   `[child] Kind/namespace/name`. One level: a child's children are not followed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use apimachinery::application::ANNOTATION_APP;
use apimachinery::object::ObjectExt;
use kube::api::{Api, DynamicObject};
use serde_json::Value;

use super::application::{ResourceStatus, Spec};
use super::chartrepo::{self, Access, ChartError};
use super::cluster::Cluster;
use super::destinations::Destinations;
use super::repo::{Credentials, Mirror, RepoError};
use super::review::{Change, Entry, Review};
use super::steps::{StepError, is_chart_repository};
use super::sync;
use super::syncer::{application_resource, render_at, render_chart};

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
    /// The repository could not be mirrored, or the revision is not in it.
    #[error("revision {revision}: {source}")]
    Repo {
        /// The revision asked for.
        revision: String,
        /// What Git said.
        #[source]
        source: RepoError,
    },
    /// The revision did not render (a template, a values file, a chart).
    #[error("revision {revision}: {source}")]
    Render {
        /// The revision (a commit, or a chart version).
        revision: String,
        /// Why.
        #[source]
        source: Box<StepError>,
    },
    /// The chart could not be had from its chart repository.
    #[error("application {app:?}: {source}")]
    Chart {
        /// The Application.
        app: String,
        /// Why.
        #[source]
        source: Box<ChartError>,
    },
    /// The parent Application does not render this one at the revision.
    #[error(
        "application {app:?} is not rendered by its parent {parent:?} at revision {revision}: merging it would prune {app:?}"
    )]
    NotRendered {
        /// The Application.
        app: String,
        /// Its parent.
        parent: String,
        /// The revision.
        revision: String,
    },
    /// A blocking Git or HTTP task panicked or was cancelled.
    #[error("review task: {0}")]
    Task(#[from] tokio::task::JoinError),
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
    /// The Application that renders it (app of apps), from its `gitplane.io/app` annotation.
    pub parent: Option<String>,
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
    target_of(name, &obj)
}

/// The [`Target`] of an Application object (live, or as a revision renders it).
fn target_of(name: &str, obj: &Value) -> Result<Target, PreviewError> {
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
    let parent = obj
        .annotations()
        .get(ANNOTATION_APP)
        .filter(|p| !p.is_empty() && p.as_str() != name)
        .cloned();
    Ok(Target {
        name: name.to_string(),
        spec,
        previous,
        parent,
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
    /// The commit `head` resolved to (a chart version for a chart repository).
    pub sha: String,
    /// Each object with the `file:line` it came from.
    pub objects: Vec<(Value, String)>,
}

/// Renders `head` (a branch, tag or commit) of `mirror` for `target`; the error says which
/// revision and why.
pub fn render_revision(
    mirror: &Mirror,
    target: &Target,
    head: &str,
) -> Result<Rendered, PreviewError> {
    let oid = mirror.resolve(head).map_err(|source| PreviewError::Repo {
        revision: head.to_string(),
        source,
    })?;
    render_commit(mirror, target, oid, head)
}

fn render_commit(
    mirror: &Mirror,
    target: &Target,
    oid: git2::Oid,
    revision: &str,
) -> Result<Rendered, PreviewError> {
    let objects = render_at(
        mirror,
        oid,
        &target.spec.source,
        &target.name,
        &target.spec.destination.namespace,
    )
    .map_err(|source| PreviewError::Render {
        revision: revision.to_string(),
        source: Box::new(source),
    })?;
    Ok(Rendered {
        sha: oid.to_string(),
        objects,
    })
}

/// Pulls `target`'s chart from its chart repository (at `version`, a version or a range) into
/// `charts` and renders it; the chart version stands where a commit would.
fn render_chart_repository(
    charts: &Path,
    target: &Target,
    version: &str,
    access: &Access,
) -> Result<Rendered, PreviewError> {
    let source = &target.spec.source;
    let pulled = chartrepo::pull(charts, &source.repo_url, &source.chart, version, access)
        .map_err(|source| PreviewError::Chart {
            app: target.name.clone(),
            source: Box::new(source),
        })?;
    let objects = render_chart(
        &pulled,
        source,
        &target.name,
        &target.spec.destination.namespace,
    )
    .map_err(|source| PreviewError::Render {
        revision: pulled.version.clone(),
        source: Box::new(source),
    })?;
    Ok(Rendered {
        sha: pulled.version,
        objects,
    })
}

/// Where a review keeps its mirrors and charts.
#[derive(Clone, Debug)]
struct Work {
    repos: PathBuf,
    charts: PathBuf,
}

/// A commit of a Git repository that a review has fetched and resolved.
#[derive(Clone, Debug)]
struct At {
    repo_url: String,
    oid: git2::Oid,
    revision: String,
}

/// Renders `target` for a review: its chart repository at `version`, or `at` when it reads that
/// repository, or else its own repository at its `targetRevision` (fetched afresh).
fn render_for_review(
    work: &Work,
    target: &Target,
    at: Option<&At>,
    version: &str,
    access: &Access,
) -> Result<Rendered, PreviewError> {
    if is_chart_repository(&target.spec.source) {
        return render_chart_repository(&work.charts, target, version, access);
    }
    let url = &target.spec.source.repo_url;
    let repo = |revision: &str| {
        let revision = revision.to_string();
        move |source| PreviewError::Repo { revision, source }
    };
    match at.filter(|a| a.repo_url == *url) {
        Some(a) => {
            let mirror = Mirror::open(&work.repos, url).map_err(repo(&a.revision))?;
            render_commit(&mirror, target, a.oid, &a.revision)
        }
        None => {
            let revision = target.spec.source.target_revision.clone();
            let mirror = Mirror::open(&work.repos, url).map_err(repo(&revision))?;
            mirror
                .fetch(&Credentials::default())
                .map_err(repo(&revision))?;
            render_revision(&mirror, target, &revision)
        }
    }
}

/// Mirrors `repo_url` under `work` and resolves `head` in it.
fn fetch_at(work: &Work, repo_url: &str, head: &str) -> Result<At, PreviewError> {
    let repo = |source| PreviewError::Repo {
        revision: head.to_string(),
        source,
    };
    let mirror = mirror(&work.repos, repo_url).map_err(repo)?;
    let oid = mirror.resolve(head).map_err(repo)?;
    Ok(At {
        repo_url: repo_url.to_string(),
        oid,
        revision: head.to_string(),
    })
}

/// The Applications among `objects`, each as a [`Target`] (an empty `repoURL` inherits
/// `repo_url`, as the syncer does).
fn applications_in(objects: &[(Value, String)], repo_url: &str) -> Vec<Target> {
    objects
        .iter()
        .filter(|(o, _)| {
            o.kind() == Some("Application")
                && o.api_version()
                    .is_some_and(|v| v.starts_with(apimachinery::application::GROUP))
        })
        .filter_map(|(o, _)| {
            let name = o.name()?.to_string();
            let mut t = target_of(&name, o).ok()?;
            if t.spec.source.repo_url.is_empty() {
                t.spec.source.repo_url = repo_url.to_string();
            }
            t.previous.clear();
            t.parent = None;
            Some(t)
        })
        .collect()
}

/// How `target`'s chart repository is reached (its Secret read with the caller's `client`);
/// nothing for a Git source (a review fetches Git without credentials, as `gitplane diff` always
/// has).
async fn chart_access(client: &kube::Client, target: &Target) -> Result<Access, PreviewError> {
    if !is_chart_repository(&target.spec.source) {
        return Ok(Access::default());
    }
    chartrepo::access(client, &target.spec.source)
        .await
        .map_err(|source| PreviewError::Chart {
            app: target.name.clone(),
            source: Box::new(source),
        })
}

/// Reviews `target` at `head` against the live cluster, as the module documentation says: a
/// chart-repository Application or one rendered by a parent from the same repository with the
/// spec the parent renders at `head`, then the Applications `head` renders. `work` holds the
/// mirrors and charts the review fetches (a temporary directory). Blocking Git and HTTP work
/// runs off the async threads.
pub async fn review(client: kube::Client, target: &Target, head: &str, work: &Path) -> Review {
    let work = Work {
        repos: work.join("repos"),
        charts: work.join("charts"),
    };
    match review_app(&client, target, head, &work).await {
        Ok(review) => review,
        Err(e) => Review {
            title: format!("{} at {head}", target.name),
            errors: vec![e.to_string()],
            ..Review::default()
        },
    }
}

async fn review_app(
    client: &kube::Client,
    target: &Target,
    head: &str,
    work: &Work,
) -> Result<Review, PreviewError> {
    let parent = match &target.parent {
        Some(p) => Some(application(client, p).await?),
        None => None,
    };
    let follow = parent.filter(|p| {
        !is_chart_repository(&p.spec.source)
            && (is_chart_repository(&target.spec.source)
                || p.spec.source.repo_url == target.spec.source.repo_url)
    });
    // The spec at `head`: as the parent renders it there.
    let (target, at) = match follow {
        Some(parent) => {
            let (w, h, t) = (work.clone(), head.to_string(), target.clone());
            tokio::task::spawn_blocking(move || -> Result<(Target, Option<At>), PreviewError> {
                let at = fetch_at(&w, &parent.spec.source.repo_url, &h)?;
                let mirror =
                    Mirror::open(&w.repos, &at.repo_url).map_err(|source| PreviewError::Repo {
                        revision: h.clone(),
                        source,
                    })?;
                let rendered = render_commit(&mirror, &parent, at.oid, &h)?;
                let mut child = applications_in(&rendered.objects, &at.repo_url)
                    .into_iter()
                    .find(|c| c.name == t.name)
                    .ok_or_else(|| PreviewError::NotRendered {
                        app: t.name.clone(),
                        parent: parent.name.clone(),
                        revision: h.clone(),
                    })?;
                child.previous = t.previous;
                child.parent = t.parent;
                Ok((child, Some(at)))
            })
            .await??
        }
        None => (target.clone(), None),
    };
    let access = chart_access(client, &target).await?;
    // A chart-repository Application of its own: `head` is the chart version (or range).
    let version = match &at {
        None if is_chart_repository(&target.spec.source) => head.to_string(),
        _ => target.spec.source.target_revision.clone(),
    };
    let (w, t) = (work.clone(), target.clone());
    let (h, v) = (head.to_string(), version);
    let (rendered, at) = tokio::task::spawn_blocking(move || {
        let at = match at {
            Some(a) => Some(a),
            None if !is_chart_repository(&t.spec.source) => {
                Some(fetch_at(&w, &t.spec.source.repo_url, &h)?)
            }
            None => None,
        };
        let rendered = render_for_review(&w, &t, at.as_ref(), &v, &access)?;
        Ok::<_, PreviewError>((rendered, at))
    })
    .await??;
    let mut review = against_live(client.clone(), &target, &rendered).await;
    for child in applications_in(&rendered.objects, &target.spec.source.repo_url) {
        if child.name == target.name {
            continue;
        }
        review_child(client, &child, at.as_ref(), work, &mut review).await;
    }
    Ok(review)
}

/// Adds the review of `child` (as `head` renders it) to `review`, its objects named
/// `[child] Kind/namespace/name`; a child whose spec does not change and which reads another
/// repository is left out (this revision changes nothing of it).
async fn review_child(
    client: &kube::Client,
    child: &Target,
    at: Option<&At>,
    work: &Work,
    review: &mut Review,
) {
    let mut child = child.clone();
    let live = match application(client, &child.name).await {
        Ok(live) => Some(live),
        Err(PreviewError::Application {
            source: kube::Error::Api(e),
            ..
        }) if e.code == 404 => None,
        Err(e) => {
            review.errors.push(e.to_string());
            return;
        }
    };
    let same_repo = at.is_some_and(|a| {
        !is_chart_repository(&child.spec.source) && a.repo_url == child.spec.source.repo_url
    });
    if let Some(live) = &live {
        if live.spec == child.spec && !same_repo {
            return;
        }
        child.previous = live.previous.clone();
    }
    let access = match chart_access(client, &child).await {
        Ok(a) => a,
        Err(e) => {
            review.errors.push(e.to_string());
            return;
        }
    };
    let (w, t, a) = (work.clone(), child.clone(), at.cloned());
    let version = child.spec.source.target_revision.clone();
    let rendered = tokio::task::spawn_blocking(move || {
        render_for_review(&w, &t, a.as_ref(), &version, &access)
    })
    .await
    .map_err(PreviewError::from)
    .and_then(|r| r);
    let rendered = match rendered {
        Ok(r) => r,
        Err(e) => {
            review
                .errors
                .push(format!("application {:?}: {e}", child.name));
            return;
        }
    };
    let sub = against_live(client.clone(), &child, &rendered).await;
    let label = |s: String| format!("[{}] {s}", child.name);
    review.errors.extend(sub.errors.into_iter().map(label));
    review.entries.extend(sub.entries.into_iter().map(|mut e| {
        e.object = label(e.object);
        e
    }));
}

/// The review of `rendered` against the live objects of the Application's destination, read and
/// dry-run with `client` (the local cluster), or with the credentials of the registered cluster
/// the destination names (read with `client`): that cluster's RBAC and admission decide, and
/// its refusals name it.
pub async fn against_live(client: kube::Client, target: &Target, rendered: &Rendered) -> Review {
    let short = &rendered.sha[..7.min(rendered.sha.len())];
    let mut review = Review {
        title: format!("{}: {short} against the live cluster", target.name),
        dry_run: true,
        ..Review::default()
    };
    let local = Arc::new(Cluster::new(client.clone()));
    let destination = match Destinations::new(client, local)
        .resolve(&target.spec.destination)
        .await
    {
        Ok(d) => d,
        Err(e) => {
            review.errors.push(e.to_string());
            return review;
        }
    };
    let from = |m: String| match destination.local {
        true => m,
        false => format!("cluster {:?}: {m}", destination.name),
    };
    if !destination.local {
        review.title = format!(
            "{}: {short} against cluster {:?} ({})",
            target.name, destination.name, destination.server
        );
    }
    let cluster = &destination.cluster;
    let plan = match sync::plan(
        cluster,
        &target.name,
        &target.spec.destination.namespace,
        &target.spec.source.repo_url,
        &rendered.objects,
        &target.previous,
        target.spec.sync_policy.server_side_apply(),
    )
    .await
    {
        Ok(p) => p,
        Err(e) => {
            review.errors.extend(e.0.into_iter().map(from));
            return review;
        }
    };
    let refusals: BTreeMap<usize, String> = sync::dry_run_items(cluster, &plan, &rendered.sha)
        .await
        .into_iter()
        .map(|(i, m)| (i, from(m)))
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
