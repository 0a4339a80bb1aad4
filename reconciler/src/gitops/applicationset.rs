//! The ApplicationSet controller: generates Applications from parameter sets, as Argo CD's
//! ApplicationSet controller does.
//!
//! An ApplicationSet (`gitplane.io/v1alpha1`, cluster-scoped) has `generators`, a `template`
//! (an Application's `metadata` and `spec` with `{{param}}` placeholders, Argo CD's
//! fasttemplate syntax: an unknown parameter stays as written) and a `syncPolicy`. With
//! `goTemplate: true` every string of the template is a Go template instead
//! ([`templates::gotemplate`]) with the parameters as a nested map, in Argo CD's shapes
//! (`{{ .name }}`, `{{ .path.basename }}`, `{{ index .path.segments 0 }}`,
//! `{{ index .metadata.labels "env" }}`), and `goTemplateOptions: ["missingkey=error"]` makes a
//! missing parameter an error. The parameters below are the fasttemplate names. Generators:
//! - `list`: `elements`, each an object whose fields (nested ones flattened as `a.b`) are one
//!   parameter set;
//! - `clusters`: one set per registered cluster whose labels match `selector` (`matchLabels`,
//!   `matchExpressions`): `name`, `nameNormalized`, `server`, `metadata.labels.<k>`,
//!   `metadata.annotations.<k>`, `values.<k>`; with no selector the local cluster
//!   (`in-cluster`) is one of them, as in Argo CD;
//! - `git` with `directories` (`path` globs, `*` and `?` within one segment, `exclude: true` to
//!   drop matches): one set per directory: `path`, `path.basename`,
//!   `path.basenameNormalized`, `path[N]` (with `goTemplate`: `.path.path`, `.path.basename`,
//!   `.path.basenameNormalized`, `.path.segments`);
//! - `git` with `files` (`path` globs of JSON or YAML files): one set per file (per element when
//!   the file is a list), its fields flattened, plus the `path` parameters of its directory;
//! - `matrix` of two generators: every pair of their sets, merged (nested maps key by key).
//!
//! Each pass (on a change of the ApplicationSet or of an Application it owns, and every
//! [`REQUEUE`] to follow Git and the registered clusters) renders the Applications, creates the
//! missing ones (owned by the ApplicationSet), updates those whose labels, annotations or spec
//! differ and deletes those no longer generated, as `syncPolicy.applicationsSync` allows
//! (`sync`, the default: all three; `create-only`, `create-update`, `create-delete`).
//! Generated Applications carry the finalizer [`FINALIZER`] (the syncer prunes their resources
//! when they are deleted) unless `syncPolicy.preserveResourcesOnDeletion` is true. Status:
//! `resources` (the generated Applications), `applicationCount`, and conditions
//! `ErrorOccurred`, `ParametersGenerated`, `ResourcesUpToDate`; an error rendering a template
//! names the ApplicationSet and the field (`applicationset "web": spec.template.metadata.name:
//! template: :1:3: executing "" at <.nope>: map has no entry for key "nope"`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apimachinery::application::{API_VERSION, KIND};
use apimachinery::fleet::{
    APPLICATIONSET_KIND, APPLICATIONSET_PLURAL, IN_CLUSTER_NAME, IN_CLUSTER_SERVER,
};
use apimachinery::object::ObjectExt;
use apimachinery::selector::LabelSelector;
use futures::StreamExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::{Map, Value, json};
use templates::source::Source as _;

use super::destinations;
use super::repo::{Credentials, Mirror, RepoError};
use super::syncer::application_resource;

/// How often every ApplicationSet is generated again (Git and clusters are polled).
pub const REQUEUE: Duration = Duration::from_secs(2);
/// The finalizer by which the syncer prunes a deleted Application's resources.
pub const FINALIZER: &str = "gitplane.io/resources-finalizer";

/// Parameters of one generated Application, as fasttemplate reads them (flattened).
pub type Params = BTreeMap<String, String>;

/// Which template language an ApplicationSet uses, and so the shape of its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Language {
    /// Argo CD's fasttemplate `{{param}}`: parameters flattened (`path.basename`, `path[0]`).
    Fast,
    /// `goTemplate: true`: parameters as a nested map (`.path.basename`, `.path.segments`).
    Go,
}

/// Why an ApplicationSet could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec is wrong; the message names the field.
    #[error("{0}")]
    Spec(String),
    /// A Go template (`goTemplate: true`) or its options failed.
    #[error("applicationset {set:?}: {source}")]
    Template {
        /// The ApplicationSet.
        set: String,
        /// The field and Go's message.
        #[source]
        source: templates::gotemplate::Error,
    },
    /// A Git generator's repository could not be read.
    #[error("spec.generators[{index}].git: {source}")]
    Repo {
        /// The generator.
        index: usize,
        /// Why.
        #[source]
        source: RepoError,
    },
    /// A file of a Git files generator does not read.
    #[error("{0}")]
    File(String),
    /// The registered clusters could not be listed.
    #[error(transparent)]
    Clusters(#[from] destinations::DestinationError),
    /// The API server refused a read or write.
    #[error("{0}")]
    Api(String),
    /// A blocking Git task failed.
    #[error("git task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The ApiResource of ApplicationSets.
pub fn applicationset_resource() -> ApiResource {
    ApiResource {
        group: apimachinery::application::GROUP.into(),
        version: apimachinery::application::VERSION.into(),
        api_version: API_VERSION.into(),
        kind: APPLICATIONSET_KIND.into(),
        plural: APPLICATIONSET_PLURAL.into(),
    }
}

/// What every pass shares.
pub struct Context {
    client: kube::Client,
    mirrors_dir: PathBuf,
    mirrors: Mutex<HashMap<String, Arc<Mutex<Mirror>>>>,
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    client: kube::Client,
    mirrors_dir: PathBuf,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let sets: Api<DynamicObject> = Api::all_with(client.clone(), &applicationset_resource());
    let apps: Api<DynamicObject> = Api::all_with(client.clone(), &application_resource());
    let ctx = Arc::new(Context {
        client,
        mirrors_dir,
        mirrors: Mutex::default(),
    });
    Controller::new_with(sets, watcher::Config::default(), applicationset_resource())
        .owns_with(apps, application_resource(), watcher::Config::default())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

fn error_policy(_: Arc<DynamicObject>, e: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(error = %e, "applicationset pass failed");
    Action::requeue(REQUEUE)
}

/// One pass over one ApplicationSet.
async fn reconcile(set: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action, Error> {
    let set = serde_json::to_value(&*set).unwrap_or_default();
    let name = set.name().unwrap_or("").to_string();
    if set.pointer("/metadata/deletionTimestamp").is_some() {
        return Ok(Action::await_change());
    }
    let sets: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &applicationset_resource());
    let outcome = generate_and_apply(&ctx, &set).await;
    let old_status = set.get("status").cloned().unwrap_or(json!({}));
    let status = status_of(&old_status, &outcome);
    if strip_times(&status) != strip_times(&old_status) {
        sets.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .map_err(|e| Error::Api(format!("writing status of applicationset {name}: {e}")))?;
    }
    Ok(Action::requeue(REQUEUE))
}

/// What a pass arrived at.
struct Outcome {
    /// The parameter sets, or why they could not be generated.
    generated: Result<usize, String>,
    /// The Applications it owns now (name, status) and the errors writing them.
    apps: Vec<(String, Value)>,
    errors: Vec<String>,
}

async fn generate_and_apply(ctx: &Context, set: &Value) -> Outcome {
    let mut outcome = Outcome {
        generated: Ok(0),
        apps: Vec::new(),
        errors: Vec::new(),
    };
    let desired = match desired_apps(ctx, set).await {
        Ok(d) => d,
        Err(e) => {
            outcome.generated = Err(e.to_string());
            return outcome;
        }
    };
    outcome.generated = Ok(desired.len());
    let policy = set
        .pointer("/spec/syncPolicy/applicationsSync")
        .and_then(Value::as_str)
        .unwrap_or("sync");
    let (may_update, may_delete) = match policy {
        "create-only" => (false, false),
        "create-update" => (true, false),
        "create-delete" => (false, true),
        _ => (true, true),
    };
    let uid = set.uid().unwrap_or("").to_string();
    let apps: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &application_resource());
    let existing = match apps.list(&Default::default()).await {
        Ok(l) => l.items,
        Err(e) => {
            outcome.errors.push(format!("listing applications: {e}"));
            return outcome;
        }
    };
    let existing: HashMap<String, Value> = existing
        .into_iter()
        .filter_map(|a| {
            let v = serde_json::to_value(a).ok()?;
            Some((v.name()?.to_string(), v))
        })
        .collect();
    let mut wanted = HashSet::new();
    for app in &desired {
        let app_name = app.name().unwrap_or("").to_string();
        wanted.insert(app_name.clone());
        match existing.get(&app_name) {
            None => {
                let obj: DynamicObject = match serde_json::from_value(app.clone()) {
                    Ok(o) => o,
                    Err(e) => {
                        outcome.errors.push(format!("application {app_name}: {e}"));
                        continue;
                    }
                };
                match apps.create(&PostParams::default(), &obj).await {
                    Ok(_) => outcome.apps.push((app_name, json!({}))),
                    Err(e) => outcome
                        .errors
                        .push(format!("creating application {app_name}: {e}")),
                }
            }
            Some(live) if !owned_by(live, &uid) => outcome.errors.push(format!(
                "application {app_name} exists and is not owned by this ApplicationSet; left alone"
            )),
            Some(live) => {
                if may_update && differs(app, live) {
                    let patch = json!({
                        "metadata": {"labels": app.pointer("/metadata/labels"),
                                     "annotations": app.pointer("/metadata/annotations"),
                                     "finalizers": app.pointer("/metadata/finalizers")},
                        "spec": app.get("spec"),
                    });
                    if let Err(e) = apps
                        .patch(&app_name, &PatchParams::default(), &Patch::Merge(patch))
                        .await
                    {
                        outcome
                            .errors
                            .push(format!("updating application {app_name}: {e}"));
                    }
                }
                outcome
                    .apps
                    .push((app_name, live.get("status").cloned().unwrap_or(json!({}))));
            }
        }
    }
    for (app_name, live) in &existing {
        if wanted.contains(app_name) || !owned_by(live, &uid) {
            continue;
        }
        if !may_delete {
            outcome.apps.push((
                app_name.clone(),
                live.get("status").cloned().unwrap_or(json!({})),
            ));
            continue;
        }
        if live.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        if let Err(e) = apps.delete(app_name, &DeleteParams::background()).await {
            outcome
                .errors
                .push(format!("deleting application {app_name}: {e}"));
        }
    }
    outcome.apps.sort_by(|a, b| a.0.cmp(&b.0));
    outcome
}

fn owned_by(app: &Value, uid: &str) -> bool {
    app.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| {
            refs.iter()
                .any(|r| r.get("uid").and_then(Value::as_str) == Some(uid))
        })
}

/// Whether the generated `want` differs from `live` in what the controller owns.
fn differs(want: &Value, live: &Value) -> bool {
    let field = |v: &Value, p: &str| v.pointer(p).cloned().unwrap_or(Value::Null);
    let map = |v: &Value, p: &str| match v.pointer(p) {
        Some(Value::Object(m)) if !m.is_empty() => Value::Object(m.clone()),
        _ => Value::Null,
    };
    field(want, "/spec") != field(live, "/spec")
        || map(want, "/metadata/labels") != map(live, "/metadata/labels")
        || map(want, "/metadata/annotations") != map(live, "/metadata/annotations")
        || field(want, "/metadata/finalizers") != field(live, "/metadata/finalizers")
}

/// The ApplicationSet's status from a pass's outcome (conditions keep their time while they do
/// not change).
fn status_of(old: &Value, outcome: &Outcome) -> Value {
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let mut conditions = Vec::new();
    let mut condition = |type_: &str, status: bool, reason: &str, message: String| {
        let status = if status { "True" } else { "False" };
        let old_time = old
            .get("conditions")
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter().find(|c| {
                    c.get("type").and_then(Value::as_str) == Some(type_)
                        && c.get("status").and_then(Value::as_str) == Some(status)
                        && c.get("message").and_then(Value::as_str) == Some(message.as_str())
                })
            })
            .and_then(|c| c.get("lastTransitionTime").cloned());
        conditions.push(json!({
            "type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": old_time.unwrap_or(json!(now)),
        }));
    };
    match &outcome.generated {
        Err(e) => {
            condition(
                "ErrorOccurred",
                true,
                "ApplicationGenerationFromParamsError",
                e.clone(),
            );
            condition("ParametersGenerated", false, "ErrorOccurred", e.clone());
            condition("ResourcesUpToDate", false, "ErrorOccurred", e.clone());
        }
        Ok(n) => {
            let errors = outcome.errors.join("; ");
            condition(
                "ErrorOccurred",
                !outcome.errors.is_empty(),
                if outcome.errors.is_empty() {
                    "ApplicationSetUpToDate"
                } else {
                    "UpdateApplicationError"
                },
                errors.clone(),
            );
            condition(
                "ParametersGenerated",
                true,
                "ParametersGenerated",
                format!("{n} parameter sets generated"),
            );
            condition(
                "ResourcesUpToDate",
                outcome.errors.is_empty(),
                if outcome.errors.is_empty() {
                    "ApplicationSetUpToDate"
                } else {
                    "UpdateApplicationError"
                },
                if outcome.errors.is_empty() {
                    "All applications have been generated successfully".to_string()
                } else {
                    errors
                },
            );
        }
    }
    let resources: Vec<Value> = outcome
        .apps
        .iter()
        .map(|(name, status)| {
            json!({
                "group": apimachinery::application::GROUP,
                "version": apimachinery::application::VERSION,
                "kind": KIND,
                "name": name,
                "status": status.pointer("/sync/status").cloned().unwrap_or(json!("")),
                "health": {"status": status.pointer("/health/status").cloned().unwrap_or(json!(""))},
            })
        })
        .collect();
    json!({
        "conditions": conditions,
        "resources": resources,
        "applicationCount": outcome.apps.len(),
    })
}

fn strip_times(status: &Value) -> Value {
    let mut s = status.clone();
    if let Some(cs) = s.get_mut("conditions").and_then(Value::as_array_mut) {
        for c in cs {
            if let Some(m) = c.as_object_mut() {
                m.remove("lastTransitionTime");
            }
        }
    }
    s
}

/// The Applications `set` generates, in order, with owner references and finalizers.
async fn desired_apps(ctx: &Context, set: &Value) -> Result<Vec<Value>, Error> {
    let spec = set.get("spec").cloned().unwrap_or(json!({}));
    let set_name = set.name().unwrap_or("").to_string();
    let template_error = |source| Error::Template {
        set: set_name.clone(),
        source,
    };
    let language = match spec.get("goTemplate") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Language::Fast,
        Some(Value::Bool(true)) => Language::Go,
        Some(other) => {
            return Err(Error::Spec(format!(
                "spec.goTemplate: Invalid value: {other}: expected a boolean"
            )));
        }
    };
    let options = match spec.get("goTemplateOptions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, o)| {
                o.as_str().map(str::to_string).ok_or_else(|| {
                    Error::Spec(format!(
                        "spec.goTemplateOptions[{i}]: Invalid value: {o}: expected a string"
                    ))
                })
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(Error::Spec(format!(
                "spec.goTemplateOptions: Invalid value: {other}: expected a list of strings"
            )));
        }
    };
    let options = templates::gotemplate::Options::parse(&options).map_err(template_error)?;
    let generators = spec
        .get("generators")
        .and_then(Value::as_array)
        .cloned()
        .ok_or_else(|| Error::Spec("spec.generators: Required value".into()))?;
    let template = spec
        .get("template")
        .cloned()
        .ok_or_else(|| Error::Spec("spec.template: Required value".into()))?;
    let mut sets = Vec::new();
    for (i, g) in generators.iter().enumerate() {
        sets.extend(generate(ctx, g, i, language).await?);
    }
    let preserve = spec
        .pointer("/syncPolicy/preserveResourcesOnDeletion")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let owner = json!({
        "apiVersion": API_VERSION,
        "kind": APPLICATIONSET_KIND,
        "name": set.name().unwrap_or(""),
        "uid": set.uid().unwrap_or(""),
        "controller": true,
        "blockOwnerDeletion": true,
    });
    let mut out: Vec<Value> = Vec::new();
    for params in &sets {
        let rendered = match language {
            Language::Fast => substitute(&template, &flatten(params)),
            Language::Go => {
                templates::gotemplate::render(&template, params, options, "spec.template")
                    .map_err(template_error)?
            }
        };
        let name = rendered
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let invalid = apimachinery::validation::dns1123_subdomain(&name);
        if name.is_empty() || !invalid.is_empty() {
            return Err(Error::Spec(format!(
                "spec.template.metadata.name: Invalid value: {name:?}: {}",
                if name.is_empty() {
                    "Required value".to_string()
                } else {
                    invalid.join("; ")
                }
            )));
        }
        if out.iter().any(|a| a.name() == Some(name.as_str())) {
            return Err(Error::Spec(format!(
                "spec.template.metadata.name: Duplicate value: {name:?} (two parameter sets \
                 generate the same Application)"
            )));
        }
        let meta = rendered.get("metadata").cloned().unwrap_or(json!({}));
        let mut metadata = json!({"name": name, "ownerReferences": [owner.clone()]});
        for field in ["labels", "annotations"] {
            if let Some(m) = meta
                .get(field)
                .filter(|m| m.as_object().is_some_and(|o| !o.is_empty()))
            {
                metadata[field] = m.clone();
            }
        }
        if !preserve {
            metadata["finalizers"] = json!([FINALIZER]);
        }
        out.push(json!({
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": metadata,
            "spec": rendered.get("spec").cloned().unwrap_or(json!({})),
        }));
    }
    Ok(out)
}

/// The parameter sets of one generator (`index` in `spec.generators`, for messages), each an
/// object in `language`'s shape.
fn generate<'a>(
    ctx: &'a Context,
    generator: &'a Value,
    index: usize,
    language: Language,
) -> futures::future::BoxFuture<'a, Result<Vec<Value>, Error>> {
    Box::pin(async move {
        let field = format!("spec.generators[{index}]");
        if let Some(list) = generator.get("list") {
            let elements = list
                .get("elements")
                .and_then(Value::as_array)
                .ok_or_else(|| Error::Spec(format!("{field}.list.elements: Required value")))?;
            return Ok(elements.clone());
        }
        if let Some(clusters) = generator.get("clusters") {
            return clusters_params(ctx, clusters, &field).await;
        }
        if let Some(git) = generator.get("git") {
            return git_params(ctx, git, index, language).await;
        }
        if let Some(matrix) = generator.get("matrix") {
            let gens = matrix
                .get("generators")
                .and_then(Value::as_array)
                .filter(|g| g.len() == 2)
                .ok_or_else(|| {
                    Error::Spec(format!(
                        "{field}.matrix.generators: must hold exactly two generators"
                    ))
                })?;
            let left = generate(ctx, &gens[0], index, language).await?;
            let right = generate(ctx, &gens[1], index, language).await?;
            let mut out = Vec::new();
            for l in &left {
                for r in &right {
                    let mut merged = l.clone();
                    merge(&mut merged, r);
                    out.push(merged);
                }
            }
            return Ok(out);
        }
        Err(Error::Spec(format!(
            "{field}: Unsupported generator (expected one of list, clusters, git, matrix)"
        )))
    })
}

async fn clusters_params(
    ctx: &Context,
    clusters: &Value,
    field: &str,
) -> Result<Vec<Value>, Error> {
    let selector = match clusters.get("selector") {
        None | Some(Value::Null) => LabelSelector::everything(),
        Some(s) => {
            let s: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector =
                serde_json::from_value(s.clone())
                    .map_err(|e| Error::Spec(format!("{field}.clusters.selector: {e}")))?;
            LabelSelector::from_metav1(&s)
                .map_err(|e| Error::Spec(format!("{field}.clusters.selector: {e}")))?
        }
    };
    let values = clusters.get("values").cloned().unwrap_or(json!({}));
    let mut out = Vec::new();
    if selector.is_everything() {
        out.push(json!({
            "name": IN_CLUSTER_NAME,
            "nameNormalized": IN_CLUSTER_NAME,
            "server": IN_CLUSTER_SERVER,
            "metadata": {"labels": {}, "annotations": {}},
            "values": values,
        }));
    }
    for c in destinations::registered(&ctx.client).await? {
        if !selector.matches(&c.secret.labels) {
            continue;
        }
        out.push(json!({
            "name": c.secret.name,
            "nameNormalized": normalize(&c.secret.name),
            "server": c.server,
            "metadata": {"labels": c.secret.labels, "annotations": c.secret.annotations},
            "values": values,
        }));
    }
    Ok(out)
}

async fn git_params(
    ctx: &Context,
    git: &Value,
    index: usize,
    language: Language,
) -> Result<Vec<Value>, Error> {
    let field = format!("spec.generators[{index}].git");
    let repo_url = git
        .get("repoURL")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::Spec(format!("{field}.repoURL: Required value")))?
        .to_string();
    let revision = git
        .get("revision")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let patterns = |key: &str| -> Vec<(String, bool)> {
        git.get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|d| {
                        Some((
                            d.get("path")?.as_str()?.trim_matches('/').to_string(),
                            d.get("exclude").and_then(Value::as_bool).unwrap_or(false),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let (dirs, files) = (patterns("directories"), patterns("files"));
    if dirs.is_empty() && files.is_empty() {
        return Err(Error::Spec(format!(
            "{field}: one of directories or files is required"
        )));
    }
    let mirror = {
        let mut mirrors = ctx.mirrors.lock().unwrap_or_else(|p| p.into_inner());
        match mirrors.get(&repo_url) {
            Some(m) => m.clone(),
            None => {
                let m = Mirror::open(&ctx.mirrors_dir, &repo_url)
                    .map_err(|source| Error::Repo { index, source })?;
                let m = Arc::new(Mutex::new(m));
                mirrors.insert(repo_url.clone(), m.clone());
                m
            }
        }
    };
    tokio::task::spawn_blocking(move || {
        let mirror = mirror.lock().unwrap_or_else(|p| p.into_inner());
        mirror
            .fetch(&Credentials::default())
            .map_err(|source| Error::Repo { index, source })?;
        let oid = mirror
            .resolve(&revision)
            .map_err(|source| Error::Repo { index, source })?;
        let tree = mirror
            .tree(oid)
            .map_err(|source| Error::Repo { index, source })?;
        let mut all_dirs = Vec::new();
        let mut all_files = Vec::new();
        walk(&tree, "", &mut all_dirs, &mut all_files);
        let mut out = Vec::new();
        if !dirs.is_empty() {
            for d in &all_dirs {
                let included = dirs.iter().any(|(p, ex)| !ex && glob_match(p, d));
                let excluded = dirs.iter().any(|(p, ex)| *ex && glob_match(p, d));
                if included && !excluded {
                    out.push(path_params(d, None, language));
                }
            }
        }
        for f in &all_files {
            let included = files.iter().any(|(p, ex)| !ex && glob_match(p, f));
            let excluded = files.iter().any(|(p, ex)| *ex && glob_match(p, f));
            if !included || excluded {
                continue;
            }
            let bytes = tree.read(f).map_err(|e| Error::File(e.to_string()))?;
            let text = String::from_utf8_lossy(&bytes);
            let value = templates::yaml::parse_value(f, &text, templates::yaml::Dialect::Kubectl)
                .map_err(|e| Error::File(format!("{f}: {e}")))?;
            let dir = templates::source::parent(f).to_string();
            let items = match value {
                Value::Array(items) => items,
                other => vec![other],
            };
            for item in items {
                let mut p = match item {
                    Value::Object(_) => item,
                    other => {
                        return Err(Error::File(format!(
                            "{f}: expected an object (or a list of objects), found {other}"
                        )));
                    }
                };
                merge(&mut p, &path_params(&dir, Some(f), language));
                out.push(p);
            }
        }
        Ok(out)
    })
    .await?
}

/// Every directory and file of a tree (paths relative to its root).
fn walk(
    tree: &dyn templates::source::Source,
    dir: &str,
    dirs: &mut Vec<String>,
    files: &mut Vec<String>,
) {
    let Ok(entries) = tree.list_dir(dir) else {
        return;
    };
    for e in entries {
        let path = if dir.is_empty() {
            e.name.clone()
        } else {
            format!("{dir}/{}", e.name)
        };
        if e.is_dir {
            if e.name.starts_with('.') {
                continue;
            }
            dirs.push(path.clone());
            walk(tree, &path, dirs, files);
        } else {
            files.push(path);
        }
    }
}

/// The `path` parameters of a directory (and of a file in it, for the Git files generator):
/// with fasttemplate `path`, `path.basename`, `path.basenameNormalized`, `path[N]`,
/// `path.filename`, `path.filenameNormalized`; with Go templates the same under `.path` as
/// `path`, `basename`, …, `segments` (a list), as Argo CD has them.
fn path_params(dir: &str, file: Option<&str>, language: Language) -> Value {
    let base = templates::source::file_name(dir).to_string();
    let segments: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
    let mut p = Map::new();
    p.insert("path".into(), json!(dir));
    p.insert("basenameNormalized".into(), json!(normalize(&base)));
    p.insert("basename".into(), json!(base));
    if let Some(f) = file {
        let name = templates::source::file_name(f);
        p.insert("filename".into(), json!(name));
        p.insert("filenameNormalized".into(), json!(normalize(name)));
    }
    match language {
        Language::Go => {
            p.insert("segments".into(), json!(segments));
            json!({ "path": p })
        }
        Language::Fast => {
            let mut flat = Map::new();
            for (k, v) in p {
                let key = if k == "path" { k } else { format!("path.{k}") };
                flat.insert(key, v);
            }
            for (i, seg) in segments.iter().enumerate() {
                flat.insert(format!("path[{i}]"), json!(seg));
            }
            Value::Object(flat)
        }
    }
}

/// Merges `from` into `into`: objects key by key (recursively), anything else replaced.
fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

/// A name made a DNS subdomain as Argo CD does: lowercase, anything but `[a-z0-9.-]` a `-`.
fn normalize(name: &str) -> String {
    name.to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Whether `path` matches the glob `pattern` segment by segment (`*`: any run within one
/// segment, `?`: one character, `**` as a whole segment: any number of segments).
fn glob_match(pattern: &str, path: &str) -> bool {
    let pat: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    fn segments(pat: &[&str], segs: &[&str]) -> bool {
        match (pat.first(), segs.first()) {
            (None, None) => true,
            (Some(&"**"), _) => {
                segments(&pat[1..], segs) || (!segs.is_empty() && segments(pat, &segs[1..]))
            }
            (Some(p), Some(s)) => {
                segment(p.as_bytes(), s.as_bytes()) && segments(&pat[1..], &segs[1..])
            }
            _ => false,
        }
    }
    fn segment(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => segment(&p[1..], s) || (!s.is_empty() && segment(p, &s[1..])),
            (Some(b'?'), Some(_)) => segment(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => segment(&p[1..], &s[1..]),
            _ => false,
        }
    }
    segments(&pat, &segs)
}

/// An object's fields as parameters: strings, numbers and booleans as text, nested objects
/// flattened as `a.b`, arrays as JSON.
pub fn flatten(value: &Value) -> Params {
    fn go(prefix: &str, v: &Value, out: &mut Params) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    go(&key, v, out);
                }
            }
            Value::String(s) => {
                out.insert(prefix.to_string(), s.clone());
            }
            Value::Null => {
                out.insert(prefix.to_string(), String::new());
            }
            other => {
                out.insert(prefix.to_string(), other.to_string());
            }
        }
    }
    let mut out = Params::new();
    go("", value, &mut out);
    out
}

/// The template with every `{{ param }}` in its strings (keys included) replaced; unknown
/// parameters stay as written (Argo CD's fasttemplate behaviour).
pub fn substitute(template: &Value, params: &Params) -> Value {
    match template {
        Value::String(s) => Value::String(substitute_str(s, params)),
        Value::Array(a) => Value::Array(a.iter().map(|v| substitute(v, params)).collect()),
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                out.insert(substitute_str(k, params), substitute(v, params));
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

fn substitute_str(text: &str, params: &Params) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let key = after[..end].trim();
                match params.get(key) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&rest[start..start + 2 + end + 2]),
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(template: &str, params: &[(&str, &str)], expected: &str) {
        let params: Params = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(substitute_str(template, &params), expected, "{template}");
    }

    #[test]
    fn fasttemplate_placeholders_are_replaced_and_unknown_ones_stay() {
        check("{{name}}-web", &[("name", "east")], "east-web");
        check(
            "{{ name }}/{{path.basename}}",
            &[("name", "e"), ("path.basename", "x")],
            "e/x",
        );
        check("{{missing}}", &[], "{{missing}}");
        check("open {{ never closed", &[], "open {{ never closed");
        check("no placeholders", &[("a", "b")], "no placeholders");
    }

    #[test]
    fn nested_fields_flatten_with_dots() {
        let p = flatten(&json!({"cluster": {"name": "e", "port": 1}, "on": true, "x": null}));
        assert_eq!(p["cluster.name"], "e");
        assert_eq!(p["cluster.port"], "1");
        assert_eq!(p["on"], "true");
        assert_eq!(p["x"], "");
    }

    #[test]
    fn globs_match_within_segments_and_double_star_across() {
        for (pattern, path, want) in [
            ("apps/*", "apps/web", true),
            ("apps/*", "apps/web/sub", false),
            ("apps/*", "other/web", false),
            ("apps/w?b", "apps/web", true),
            ("apps/**", "apps/a/b", true),
            ("**/config.json", "clusters/east/config.json", true),
            ("apps/*-prod", "apps/web-prod", true),
        ] {
            assert_eq!(glob_match(pattern, path), want, "{pattern} {path}");
        }
    }

    #[test]
    fn directory_parameters_name_the_path_and_its_segments() {
        let p = flatten(&path_params("apps/My_App", None, Language::Fast));
        assert_eq!(p["path"], "apps/My_App");
        assert_eq!(p["path.basename"], "My_App");
        assert_eq!(p["path.basenameNormalized"], "my-app");
        assert_eq!(p["path[0]"], "apps");
        assert_eq!(p["path[1]"], "My_App");
        let p = path_params("apps/My_App", Some("apps/My_App/c.json"), Language::Go);
        assert_eq!(
            p,
            json!({"path": {"path": "apps/My_App", "basename": "My_App",
                            "basenameNormalized": "my-app", "segments": ["apps", "My_App"],
                            "filename": "c.json", "filenameNormalized": "c.json"}})
        );
    }

    #[test]
    fn matrix_sets_merge_nested_maps_key_by_key() {
        let mut a = json!({"name": "e", "metadata": {"labels": {"env": "prod"}}});
        merge(
            &mut a,
            &json!({"metadata": {"labels": {"tier": "web"}}, "name": "w"}),
        );
        assert_eq!(
            a,
            json!({"name": "w", "metadata": {"labels": {"env": "prod", "tier": "web"}}})
        );
    }
}
