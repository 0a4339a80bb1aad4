//! Helm charts, rendered as `helm template` (v3.17.2) renders them, byte for byte.
//!
//! - [`gotmpl`]: the Go `text/template` engine; [`funcs`]: sprig's and Helm's functions;
//!   [`fmt`]: Go's `Sprintf`; [`goyaml`]: `toYaml` in `sigs.k8s.io/yaml`'s style;
//!   [`semver`]: Masterminds constraints; [`strvals`]: `--set` parsing.
//! - this file: loading a chart and its subcharts (`charts/` directories), values (defaults,
//!   files, `--set`, a user `null` deleting a default, globals, conditions and tags, aliases),
//!   `values.schema.json`, `kubeVersion`, rendering every template, and assembling helm's
//!   output: `crds/` first (when asked), manifests by helm's kind install order, hooks last.
//!
//! A directory is a Helm chart when its `Chart.yaml` has `apiVersion` (`v1` or `v2`, which
//! Helm requires); gitplane's own handlebars charts have none.

pub mod archive;
pub mod fmt;
pub mod funcs;
pub mod gotmpl;
pub mod goyaml;
pub mod semver;
pub mod strvals;

use crate::source::{self, EntryKind, Source};
use crate::yaml::{self, Dialect};
use gotmpl::Value;
use gotmpl::exec::{Exec, Set};
use std::collections::BTreeMap;
use std::rc::Rc;

/// Why a Helm chart could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error(transparent)]
    Source(#[from] source::SourceError),
    /// A YAML file is malformed.
    #[error(transparent)]
    Yaml(#[from] yaml::YamlError),
    /// A file (Chart.yaml, values, schema, a rendered manifest) is wrong.
    #[error("{file}:{line}: {message}")]
    Invalid {
        /// The file at fault.
        file: String,
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A template failed to parse or execute (including `fail` and `required`).
    #[error("{file}:{line}: {message}")]
    Template {
        /// The template file.
        file: String,
        /// The 1-based line.
        line: usize,
        /// Go's or helm's wording.
        message: String,
    },
    /// The values break a chart's `values.schema.json`.
    #[error(
        "{file}: values don't meet the specifications of the schema(s) in the following chart(s):\n{message}"
    )]
    Schema {
        /// The schema file.
        file: String,
        /// One line per violation, under the chart's name.
        message: String,
    },
    /// A `--set` expression is malformed.
    #[error("--set {expr}: {message}")]
    Set {
        /// The expression.
        expr: String,
        /// What is wrong.
        message: String,
    },
}

/// The inputs of `helm template` beyond the release and values.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// `--kube-version` (helm's default: v1.32.0).
    pub kube_version: Option<String>,
    /// `--api-versions`, added to helm's defaults.
    pub api_versions: Vec<String>,
    /// `--include-crds`.
    pub include_crds: bool,
    /// `--skip-tests`.
    pub skip_tests: bool,
    /// `--set-string` expressions.
    pub set_string: Vec<String>,
    /// `--set-file`: the key and the file's contents.
    pub set_file: Vec<(String, String)>,
}

/// One document of helm's output.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    /// The `# Source:` path (`chart/templates/x.yaml`).
    pub source: String,
    /// The document's text.
    pub content: String,
}

/// What a render produced.
#[derive(Clone, Debug, Default)]
pub struct Output {
    /// Manifests in helm's order (CRDs when asked, ordinary manifests, then hooks).
    pub manifests: Vec<Manifest>,
    /// How many leading manifests form the release manifest (the rest are hooks).
    pub release_len: usize,
    /// The rendered NOTES.txt of the top chart.
    pub notes: String,
}

impl Output {
    /// The stream `helm template` prints.
    pub fn stream(&self) -> String {
        let mut release = String::new();
        for m in &self.manifests[..self.release_len] {
            release.push_str(&format!("---\n# Source: {}\n{}\n", m.source, m.content));
        }
        let mut out = format!("{}\n", release.trim());
        for m in &self.manifests[self.release_len..] {
            out.push_str(&format!("---\n# Source: {}\n{}\n", m.source, m.content));
        }
        out
    }
}

/// The group/versions helm v3.17.2 assumes a cluster serves (`.Capabilities.APIVersions`).
pub const DEFAULT_API_VERSIONS: &[&str] = &[
    "v1",
    "admissionregistration.k8s.io/v1",
    "admissionregistration.k8s.io/v1alpha1",
    "admissionregistration.k8s.io/v1beta1",
    "internal.apiserver.k8s.io/v1alpha1",
    "apps/v1",
    "apps/v1beta1",
    "apps/v1beta2",
    "authentication.k8s.io/v1",
    "authentication.k8s.io/v1alpha1",
    "authentication.k8s.io/v1beta1",
    "authorization.k8s.io/v1",
    "authorization.k8s.io/v1beta1",
    "autoscaling/v1",
    "autoscaling/v2",
    "autoscaling/v2beta1",
    "autoscaling/v2beta2",
    "batch/v1",
    "batch/v1beta1",
    "certificates.k8s.io/v1",
    "certificates.k8s.io/v1beta1",
    "certificates.k8s.io/v1alpha1",
    "coordination.k8s.io/v1alpha2",
    "coordination.k8s.io/v1beta1",
    "coordination.k8s.io/v1",
    "discovery.k8s.io/v1",
    "discovery.k8s.io/v1beta1",
    "events.k8s.io/v1",
    "events.k8s.io/v1beta1",
    "extensions/v1beta1",
    "flowcontrol.apiserver.k8s.io/v1",
    "flowcontrol.apiserver.k8s.io/v1beta1",
    "flowcontrol.apiserver.k8s.io/v1beta2",
    "flowcontrol.apiserver.k8s.io/v1beta3",
    "networking.k8s.io/v1",
    "networking.k8s.io/v1alpha1",
    "networking.k8s.io/v1beta1",
    "node.k8s.io/v1",
    "node.k8s.io/v1alpha1",
    "node.k8s.io/v1beta1",
    "policy/v1",
    "policy/v1beta1",
    "rbac.authorization.k8s.io/v1",
    "rbac.authorization.k8s.io/v1beta1",
    "rbac.authorization.k8s.io/v1alpha1",
    "resource.k8s.io/v1alpha3",
    "resource.k8s.io/v1beta1",
    "scheduling.k8s.io/v1alpha1",
    "scheduling.k8s.io/v1beta1",
    "scheduling.k8s.io/v1",
    "storage.k8s.io/v1beta1",
    "storage.k8s.io/v1",
    "storage.k8s.io/v1alpha1",
    "storagemigration.k8s.io/v1alpha1",
    "apiextensions.k8s.io/v1beta1",
    "apiextensions.k8s.io/v1",
];

/// Helm's install order of kinds (`releaseutil.InstallOrder`).
const INSTALL_ORDER: &[&str] = &[
    "PriorityClass",
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

const HOOK_EVENTS: &[&str] = &[
    "pre-install",
    "post-install",
    "pre-delete",
    "post-delete",
    "pre-upgrade",
    "post-upgrade",
    "pre-rollback",
    "post-rollback",
    "test",
    "test-success",
];

/// Whether `dir` holds a Helm chart: a `Chart.yaml` with an `apiVersion`.
pub fn is_helm_chart(source: &dyn Source, dir: &str) -> bool {
    let Ok(path) = source::join(dir, "Chart.yaml") else {
        return false;
    };
    if source.kind(&path) != Some(EntryKind::File) {
        return false;
    }
    let Ok(bytes) = source.read(&path) else {
        return false;
    };
    let text = String::from_utf8_lossy(&bytes);
    yaml::parse_value(&path, &text, Dialect::Kubectl)
        .ok()
        .and_then(|v| {
            v.get("apiVersion")
                .and_then(|a| a.as_str().map(str::to_string))
        })
        .is_some_and(|a| !a.is_empty())
}

/// A loaded chart.
#[derive(Clone)]
struct Chart {
    /// The name templates see (the alias when the parent gives one).
    name: String,
    /// Where it lives in the source (for messages); a `.tgz` path for archives.
    dir: String,
    /// Chart.yaml.
    meta: serde_json::Value,
    /// values.yaml.
    values: Value,
    /// values.schema.json, with its path.
    schema: Option<(String, serde_json::Value)>,
    /// `templates/…` files, path relative to the chart, and text.
    templates: Vec<(String, String)>,
    /// Every other file (`.Files`), relative to the chart.
    files: BTreeMap<String, Vec<u8>>,
    /// Subcharts.
    deps: Vec<Chart>,
}

impl Chart {
    fn is_library(&self) -> bool {
        self.meta.get("type").and_then(|t| t.as_str()) == Some("library")
    }

    fn crds(&self) -> impl Iterator<Item = (&String, &Vec<u8>)> {
        self.files.iter().filter(|(k, _)| k.starts_with("crds/"))
    }
}

fn text_of(path: &str, bytes: &[u8]) -> Result<String, Error> {
    String::from_utf8(bytes.to_vec()).map_err(|_| Error::Invalid {
        file: path.to_string(),
        line: 1,
        message: "not UTF-8 text".into(),
    })
}

fn walk(
    source: &dyn Source,
    dir: &str,
    rel: &str,
    out: &mut Vec<(String, String)>,
) -> Result<(), Error> {
    for e in source.list_dir(dir)? {
        let path = source::join(dir, &e.name)?;
        let r = if rel.is_empty() {
            e.name.clone()
        } else {
            format!("{rel}/{}", e.name)
        };
        if e.is_dir {
            walk(source, &path, &r, out)?;
        } else {
            out.push((r, path));
        }
    }
    Ok(())
}

fn ignored(rel: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|p| {
        let p = p.trim_end_matches('/');
        rel == p
            || rel.starts_with(&format!("{p}/"))
            || rel.split('/').any(|seg| seg == p)
            || (p.starts_with("*.") && rel.ends_with(&p[1..]))
    })
}

fn load(source: &dyn Source, dir: &str) -> Result<Chart, Error> {
    let mut listing = Vec::new();
    walk(source, dir, "", &mut listing)?;
    let mut ignore = Vec::new();
    if let Some((_, p)) = listing.iter().find(|(r, _)| r == ".helmignore") {
        let text = text_of(p, &source.read(p)?)?;
        ignore = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect();
    }
    let chart_file = source::join(dir, "Chart.yaml")?;
    let meta = yaml::parse_value(
        &chart_file,
        &text_of(&chart_file, &source.read(&chart_file)?)?,
        Dialect::Kubectl,
    )?;
    let name = meta
        .get("name")
        .and_then(|n| n.as_str())
        .unwrap_or_default()
        .to_string();
    if name.is_empty() {
        return Err(Error::Invalid {
            file: chart_file,
            line: 1,
            message: "validation: chart.metadata.name is required".into(),
        });
    }
    if meta.get("version").is_none_or(|v| v.is_null()) {
        return Err(Error::Invalid {
            file: chart_file,
            line: 1,
            message: "validation: chart.metadata.version is required".into(),
        });
    }
    let mut chart = Chart {
        name,
        dir: dir.to_string(),
        meta,
        values: Value::map(BTreeMap::new()),
        schema: None,
        templates: Vec::new(),
        files: BTreeMap::new(),
        deps: Vec::new(),
    };
    let mut sub_dirs = Vec::new();
    for (rel, path) in &listing {
        if rel == "Chart.yaml" || ignored(rel, &ignore) {
            continue;
        }
        if rel == "values.yaml" {
            let v =
                yaml::parse_value(path, &text_of(path, &source.read(path)?)?, Dialect::Kubectl)?;
            chart.values = match Value::from_json(&v) {
                Value::Nil => Value::map(BTreeMap::new()),
                m @ Value::Map(_) => m,
                _ => {
                    return Err(Error::Invalid {
                        file: path.clone(),
                        line: 1,
                        message: "values must be a mapping".into(),
                    });
                }
            };
        } else if rel == "values.schema.json" {
            let text = text_of(path, &source.read(path)?)?;
            let schema = serde_json::from_str(&text).map_err(|e| Error::Invalid {
                file: path.clone(),
                line: e.line(),
                message: e.to_string(),
            })?;
            chart.schema = Some((path.clone(), schema));
        } else if let Some(t) = rel.strip_prefix("templates/") {
            let _ = t;
            chart
                .templates
                .push((rel.clone(), text_of(path, &source.read(path)?)?));
        } else if let Some(sub) = rel.strip_prefix("charts/") {
            // helm skips names starting with `_` or `.`, and keeps provenance files as files.
            let first = sub.split('/').next().unwrap_or(sub);
            if first.starts_with(['_', '.']) {
                continue;
            }
            if sub.ends_with(".prov") && !sub.contains('/') {
                chart.files.insert(rel.clone(), source.read(path)?);
            } else if (sub.contains('/') || sub.ends_with(".tgz"))
                && !sub_dirs.contains(&first.to_string())
            {
                sub_dirs.push(first.to_string());
            }
        } else if rel == "requirements.yaml" || rel == "requirements.lock" || rel == "Chart.lock" {
            continue;
        } else {
            chart.files.insert(rel.clone(), source.read(path)?);
        }
    }
    sub_dirs.sort();
    for sub in sub_dirs {
        let sdir = source::join(dir, &format!("charts/{sub}"))?;
        if sub.ends_with(".tgz") && source.kind(&sdir) == Some(EntryKind::File) {
            chart.deps.push(load_archive(source, &sdir)?);
        } else if source.exists(&source::join(&sdir, "Chart.yaml")?) {
            chart.deps.push(load(source, &sdir)?);
        }
    }
    // requirements.yaml (apiVersion v1) holds the dependencies Chart.yaml v2 lists.
    if chart.meta.get("dependencies").is_none() {
        let req = source::join(dir, "requirements.yaml")?;
        if source.kind(&req) == Some(EntryKind::File) {
            let r =
                yaml::parse_value(&req, &text_of(&req, &source.read(&req)?)?, Dialect::Kubectl)?;
            if let (Some(deps), serde_json::Value::Object(m)) =
                (r.get("dependencies").cloned(), &mut chart.meta)
            {
                m.insert("dependencies".into(), deps);
            }
        }
    }
    Ok(chart)
}

/// Loads the packaged chart at `path` (a `.tgz` in `charts/`, or a chart from a chart
/// repository): unpacked in memory, its files named `path/…` in messages.
fn load_archive(source: &dyn Source, path: &str) -> Result<Chart, Error> {
    let bytes = source.read(path)?;
    let mem = archive::unpack(path, &bytes).map_err(|message| Error::Invalid {
        file: path.to_string(),
        line: 1,
        message,
    })?;
    let mut chart = load(&mem, "").map_err(|e| match e {
        Error::Source(source::SourceError::NotFound(f)) if f == "Chart.yaml" => Error::Invalid {
            file: path.to_string(),
            line: 1,
            message: "Chart.yaml file is missing".into(),
        },
        other => relabel_error(other, path),
    })?;
    relabel(&mut chart, path);
    Ok(chart)
}

/// Prefixes the archive's path to the directories of a chart loaded from it.
fn relabel(chart: &mut Chart, prefix: &str) {
    chart.dir = if chart.dir.is_empty() {
        prefix.to_string()
    } else {
        format!("{prefix}/{}", chart.dir)
    };
    for d in &mut chart.deps {
        relabel(d, prefix);
    }
}

fn relabel_error(e: Error, prefix: &str) -> Error {
    match e {
        Error::Invalid {
            file,
            line,
            message,
        } => Error::Invalid {
            file: format!("{prefix}/{file}"),
            line,
            message,
        },
        Error::Yaml(y) => Error::Invalid {
            file: format!("{prefix}/{}", y.file),
            line: y.line,
            message: y.message,
        },
        other => other,
    }
}

/// helm's `--name-template` (`TemplateName`): the release name is `text` executed as a Go
/// template with no data (sprig's functions, here with Helm's own beside them), then checked
/// as helm checks release names (`ValidateReleaseName`). The error is helm's message.
pub fn name_template(text: &str) -> Result<String, String> {
    let mut set = Set::default();
    set.add("name-template", "name-template", text)
        .map_err(|e| e.message)?;
    let lib = funcs::Helm;
    let name = Exec::new(Rc::new(set), &lib)
        .execute("name-template", Value::Nil)
        .map_err(|e| e.message)?;
    let valid =
        regex::Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
            .is_ok_and(|r| r.is_match(&name));
    if name.is_empty() || name.len() > 53 || !valid {
        return Err(format!(
            "release name {name:?}: invalid release name, must match regex ^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$ and the length must not be longer than 53"
        ));
    }
    Ok(name)
}

/// Renders the packaged chart (`.tgz`) at `path` as `helm template` does.
pub fn render_archive(
    source: &dyn Source,
    path: &str,
    options: &crate::chart::Options,
    settings: &Settings,
) -> Result<Output, Error> {
    let chart = load_archive(source, path)?;
    render_chart(chart, options, settings)
}

/// Helm's `coalesce`: fills `user` with `defaults` where it has no key; a user `null` deletes
/// the default.
/// With `merge` (helm's `MergeValues`, and `MergeTables` of `import-values`: `src` fills what
/// `dst` lacks, nested tables merge, `dst` wins), a user `null` is kept.
fn coalesce_tables_with(user: &Value, defaults: &Value, merge: bool) {
    let (Value::Map(u), Value::Map(d)) = (user, defaults) else {
        return;
    };
    if Rc::ptr_eq(u, d) {
        return;
    }
    let d = d.borrow().clone();
    for (k, dv) in d {
        let current = u.borrow().get(&k).cloned();
        match current {
            None => {
                u.borrow_mut().insert(k, dv.deep_copy());
            }
            Some(Value::Nil) if !merge => {
                u.borrow_mut().remove(&k);
            }
            Some(uv @ Value::Map(_)) if matches!(dv, Value::Map(_)) => {
                coalesce_tables_with(&uv, &dv, merge)
            }
            Some(_) => {}
        }
    }
}

fn get_map(v: &Value, key: &str) -> Option<Value> {
    match v {
        Value::Map(m) => m.borrow().get(key).cloned(),
        _ => None,
    }
}

fn ensure_map(v: &Value, key: &str) -> Value {
    if let Some(m @ Value::Map(_)) = get_map(v, key) {
        return m;
    }
    let m = Value::map(BTreeMap::new());
    if let Value::Map(p) = v {
        p.borrow_mut().insert(key.to_string(), m.clone());
    }
    m
}

/// Coalesces the chart's defaults and its subcharts' (with globals copied down) into `vals`.
fn coalesce(chart: &Chart, vals: &Value) {
    coalesce_with(chart, vals, false);
}

/// [`coalesce`]; with `merge` (helm's `MergeValues`), `null`s are kept.
fn coalesce_with(chart: &Chart, vals: &Value, merge: bool) {
    coalesce_tables_with(vals, &chart.values, merge);
    for dep in &chart.deps {
        let sub = ensure_map(vals, &dep.name);
        // Parent globals win over the subchart's.
        let pg = get_map(vals, "global").unwrap_or_else(|| Value::map(BTreeMap::new()));
        let sg = ensure_map(&sub, "global");
        if let (Value::Map(pg), Value::Map(sgm)) = (&pg, &sg) {
            let pg = pg.borrow().clone();
            for (k, v) in pg {
                let existing = sgm.borrow().get(&k).cloned();
                match (existing, &v) {
                    (Some(e @ Value::Map(_)), Value::Map(_)) => {
                        let merged = v.deep_copy();
                        coalesce_tables_with(&merged, &e, merge);
                        sgm.borrow_mut().insert(k, merged);
                    }
                    _ => {
                        sgm.borrow_mut().insert(k, v.deep_copy());
                    }
                }
            }
        }
        coalesce_with(dep, &sub, merge);
    }
}

fn path_lookup(v: &Value, path: &str) -> Option<Value> {
    let mut cur = v.clone();
    for seg in path.split('.') {
        cur = get_map(&cur, seg)?;
    }
    Some(cur)
}

/// The `dependencies` entries of the chart's `Chart.yaml`.
fn listed_dependencies(chart: &Chart) -> Vec<serde_json::Value> {
    chart
        .meta
        .get("dependencies")
        .and_then(|d| d.as_array())
        .cloned()
        .unwrap_or_default()
}

/// Drops disabled dependencies (conditions, tags) and applies aliases, recursively.
fn process_dependencies(chart: &mut Chart, vals: &Value) {
    let listed = listed_dependencies(chart);
    // helm's processDependencyEnabled: vendored charts no entry names come first, then one
    // copy per entry (an alias renames its copy, so one chart can serve two entries).
    let compatible = |req: &serde_json::Value, c: &Chart| {
        let version = c.meta.get("version").map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        let constraint = req.get("version").and_then(|v| v.as_str());
        match (constraint.map(semver::Constraint::parse), version) {
            (Some(Ok(c)), Some(v)) => semver::Version::parse(&v).is_some_and(|v| c.matches(&v)),
            _ => false,
        }
    };
    let named = |req: &serde_json::Value, c: &Chart| {
        req.get("name").and_then(|n| n.as_str()) == Some(c.name.as_str())
    };
    let vendored = std::mem::take(&mut chart.deps);
    for c in &vendored {
        if !listed.iter().any(|r| named(r, c) && compatible(r, c)) {
            chart.deps.push(c.clone());
        }
    }
    for req in &listed {
        if let Some(c) = vendored
            .iter()
            .find(|c| named(req, c) && compatible(req, c))
        {
            let mut copy = c.clone();
            if let Some(alias) = req
                .get("alias")
                .and_then(|a| a.as_str())
                .filter(|a| !a.is_empty())
            {
                copy.name = alias.to_string();
            }
            chart.deps.push(copy);
        }
    }
    let scratch = vals.deep_copy();
    coalesce(chart, &scratch);
    let tags = get_map(&scratch, "tags");
    let mut kept = Vec::new();
    for mut dep in std::mem::take(&mut chart.deps) {
        let entry = listed.iter().find(|d| {
            let alias = d
                .get("alias")
                .and_then(|a| a.as_str())
                .filter(|a| !a.is_empty());
            let name = d.get("name").and_then(|n| n.as_str());
            alias.or(name) == Some(dep.name.as_str())
        });
        let mut enabled = true;
        if let Some(entry) = entry {
            if let (Some(dtags), Some(tags)) = (entry.get("tags").and_then(|t| t.as_array()), &tags)
            {
                let states: Vec<bool> = dtags
                    .iter()
                    .filter_map(|t| t.as_str())
                    .filter_map(|t| match get_map(tags, t) {
                        Some(Value::Bool(b)) => Some(b),
                        _ => None,
                    })
                    .collect();
                if !states.is_empty() {
                    enabled = states.iter().any(|b| *b);
                }
            }
            if let Some(cond) = entry.get("condition").and_then(|c| c.as_str()) {
                for path in cond.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    if let Some(Value::Bool(b)) = path_lookup(&scratch, path) {
                        enabled = b;
                        break;
                    }
                }
            }
        }
        if enabled {
            let sub_vals = get_map(vals, &dep.name).unwrap_or_else(|| Value::map(BTreeMap::new()));
            process_dependencies(&mut dep, &sub_vals);
            kept.push(dep);
        }
    }
    chart.deps = kept;
}

/// helm's `processDependencyImportValues`: each chart, deepest first, takes the `import-values`
/// its dependencies' entries name from their defaults (never from the user's values), below its
/// own values: `- name` imports the child's `exports.name` table at the top, `- {child: a.b,
/// parent: c.d}` the child's `a.b` table at `c.d`; the first import of a key wins.
fn process_imports(chart: &mut Chart) -> Result<(), Error> {
    for dep in &mut chart.deps {
        process_imports(dep)?;
    }
    let listed = listed_dependencies(chart);
    if !listed.iter().any(|d| d.get("import-values").is_some()) {
        return Ok(());
    }
    let file = format!("{}/Chart.yaml", chart.dir.trim_start_matches('/'));
    let cvals = Value::map(BTreeMap::new());
    coalesce_with(chart, &cvals, true);
    let imported = Value::map(BTreeMap::new());
    for req in &listed {
        let name = req
            .get("alias")
            .and_then(|a| a.as_str())
            .filter(|a| !a.is_empty())
            .or_else(|| req.get("name").and_then(|n| n.as_str()))
            .unwrap_or_default();
        let Some(imports) = req.get("import-values") else {
            continue;
        };
        let Some(imports) = imports.as_array() else {
            return Err(Error::Invalid {
                file,
                line: 1,
                message: format!("dependencies[{name}].import-values: must be a list"),
            });
        };
        for iv in imports {
            let (child, parent) = match iv {
                serde_json::Value::String(s) => (format!("exports.{s}"), ".".to_string()),
                serde_json::Value::Object(m) => {
                    let field = |k: &str| m.get(k).and_then(|v| v.as_str()).map(str::to_string);
                    match (field("child"), field("parent")) {
                        (Some(c), Some(p)) => (c, p),
                        _ => {
                            return Err(Error::Invalid {
                                file,
                                line: 1,
                                message: format!(
                                    "dependencies[{name}].import-values: an entry needs string fields child and parent"
                                ),
                            });
                        }
                    }
                }
                other => {
                    return Err(Error::Invalid {
                        file,
                        line: 1,
                        message: format!(
                            "dependencies[{name}].import-values: {other} is neither a name nor {{child, parent}}"
                        ),
                    });
                }
            };
            // helm warns and goes on when the child has no such table.
            let Some(table @ Value::Map(_)) = path_lookup(&cvals, &format!("{name}.{child}"))
            else {
                continue;
            };
            let table = table.deep_copy();
            let placed = if parent == "." {
                table
            } else {
                parent
                    .split('.')
                    .rev()
                    .fold(table, |inner, seg| map_of(vec![(seg, inner)]))
            };
            coalesce_tables_with(&imported, &placed, true);
        }
    }
    let values = cvals.deep_copy();
    coalesce_tables_with(&values, &imported, true);
    chart.values = values;
    Ok(())
}

fn kube_parts(v: &str) -> (String, String, String) {
    let v = v.trim();
    let bare = v.strip_prefix('v').unwrap_or(v);
    let mut it = bare.split('.');
    let major = it.next().unwrap_or("1").to_string();
    let minor = it.next().unwrap_or("0").to_string();
    let patch = it.next().unwrap_or("0").to_string();
    (format!("v{major}.{minor}.{patch}"), major, minor)
}

fn map_of(pairs: Vec<(&str, Value)>) -> Value {
    Value::map(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn chart_object(meta: &serde_json::Value) -> Value {
    let s = |k: &str| {
        Value::str(
            meta.get(k)
                .map(|v| match v {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => String::new(),
                    other => other.to_string(),
                })
                .unwrap_or_default(),
        )
    };
    let raw = |k: &str| meta.get(k).map(Value::from_json).unwrap_or_default();
    map_of(vec![
        ("Name", s("name")),
        ("Version", s("version")),
        ("AppVersion", s("appVersion")),
        ("Description", s("description")),
        ("APIVersion", s("apiVersion")),
        ("Type", s("type")),
        ("Home", s("home")),
        ("Icon", s("icon")),
        ("KubeVersion", s("kubeVersion")),
        ("Condition", s("condition")),
        ("Tags", s("tags")),
        (
            "Deprecated",
            Value::Bool(
                meta.get("deprecated")
                    .and_then(|d| d.as_bool())
                    .unwrap_or(false),
            ),
        ),
        ("Keywords", raw("keywords")),
        ("Sources", raw("sources")),
        ("Maintainers", raw("maintainers")),
        ("Annotations", raw("annotations")),
        ("Dependencies", raw("dependencies")),
    ])
}

struct Rendering {
    set: Set,
    /// (template name, chart path prefix, top-level data) per renderable template.
    jobs: Vec<(String, String, Value)>,
}

/// Builds each chart's top-level data and collects templates, recursively.
#[allow(clippy::too_many_arguments)]
fn collect(
    chart: &Chart,
    prefix: &str,
    vals: &Value,
    release: &Value,
    caps: &Value,
    all: &mut Vec<(String, String, String, bool)>,
    datas: &mut BTreeMap<String, (Value, String)>,
) -> Value {
    let mut subcharts = BTreeMap::new();
    for dep in &chart.deps {
        let sub_prefix = format!("{prefix}/charts/{}", dep.name);
        let sub_vals = get_map(vals, &dep.name).unwrap_or_else(|| Value::map(BTreeMap::new()));
        let d = collect(dep, &sub_prefix, &sub_vals, release, caps, all, datas);
        subcharts.insert(dep.name.clone(), d);
    }
    let mut meta = chart.meta.clone();
    if let serde_json::Value::Object(m) = &mut meta {
        m.insert("name".into(), serde_json::Value::String(chart.name.clone()));
    }
    let files: BTreeMap<String, Vec<u8>> = chart.files.clone();
    let data = map_of(vec![
        ("Values", vals.clone()),
        ("Release", release.clone()),
        ("Chart", chart_object(&meta)),
        ("Capabilities", caps.clone()),
        ("Files", Value::Files(Rc::new(files))),
        ("Subcharts", Value::map(subcharts)),
    ]);
    for (rel, text) in &chart.templates {
        let name = format!("{prefix}/{rel}");
        let base = std::path::Path::new(rel)
            .file_name()
            .map(|f| f.to_string_lossy().starts_with('_'))
            .unwrap_or(false);
        if chart.is_library() && !base {
            continue;
        }
        all.push((
            name.clone(),
            format!("{}/{rel}", chart.dir),
            text.clone(),
            base,
        ));
        datas.insert(name, (data.clone(), format!("{prefix}/templates")));
    }
    data
}

fn validate_schemas(
    chart: &Chart,
    vals: &Value,
    path: &str,
    errors: &mut Vec<String>,
    file: &mut String,
) {
    if let Some((sfile, schema)) = &chart.schema {
        let json = vals.to_json();
        match jsonschema::validator_for(schema) {
            Ok(validator) => {
                let mut lines = Vec::new();
                for e in validator.iter_errors(&json) {
                    let at = e.instance_path().to_string();
                    let at = at.trim_start_matches('/').replace('/', ".");
                    let at = if at.is_empty() {
                        "(root)".to_string()
                    } else {
                        at
                    };
                    lines.push(format!("- {at}: {e}"));
                }
                if !lines.is_empty() {
                    if file.is_empty() {
                        *file = sfile.clone();
                    }
                    errors.push(format!("{path}:\n{}", lines.join("\n")));
                }
            }
            Err(e) => {
                if file.is_empty() {
                    *file = sfile.clone();
                }
                errors.push(format!("{path}:\n- invalid schema: {e}"));
            }
        }
    }
    for dep in &chart.deps {
        let sub = get_map(vals, &dep.name).unwrap_or_else(|| Value::map(BTreeMap::new()));
        validate_schemas(dep, &sub, &format!("{path}/{}", dep.name), errors, file);
    }
}

/// helm's `CheckDependencies`: every dependency the top chart lists is vendored in `charts/`
/// (gitplane never downloads what a chart lists: `helm dependency build` puts it there).
fn check_dependencies(chart: &Chart) -> Result<(), Error> {
    let listed = listed_dependencies(chart);
    let missing: Vec<&str> = listed
        .iter()
        .filter_map(|d| d.get("name").and_then(|n| n.as_str()))
        .filter(|n| !chart.deps.iter().any(|c| c.name == *n))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::Invalid {
        file: format!("{}/Chart.yaml", chart.dir.trim_start_matches('/')),
        line: 1,
        message: format!(
            "An error occurred while checking for chart dependencies. You may need to run `helm dependency build` to fetch missing dependencies: found in Chart.yaml, but missing in charts/ directory: {}",
            missing.join(", ")
        ),
    })
}

fn check_kube_version(chart: &Chart, kube: &str) -> Result<(), Error> {
    if let Some(c) = chart
        .meta
        .get("kubeVersion")
        .and_then(|k| k.as_str())
        .filter(|c| !c.is_empty())
    {
        let constraint = semver::Constraint::parse(c).map_err(|m| Error::Invalid {
            file: format!("{}/Chart.yaml", chart.dir),
            line: 1,
            message: format!("kubeVersion: {m}"),
        })?;
        let v = semver::Version::parse(kube).ok_or_else(|| Error::Invalid {
            file: "--kube-version".into(),
            line: 1,
            message: format!("invalid kube version {kube:?}"),
        })?;
        if !constraint.matches(&v) {
            return Err(Error::Invalid {
                file: format!("{}/Chart.yaml", chart.dir.trim_start_matches('/')),
                line: 1,
                message: format!(
                    "chart requires kubeVersion: {c} which is incompatible with Kubernetes {kube}"
                ),
            });
        }
    }
    for d in &chart.deps {
        check_kube_version(d, kube)?;
    }
    Ok(())
}

/// The user's values: files (later win), inline values, `--set`, `--set-string`, `--set-file`.
fn user_values(options: &crate::chart::Options, settings: &Settings) -> Result<Value, Error> {
    let vals = Value::map(BTreeMap::new());
    let mut layers = Vec::new();
    for f in &options.values_files {
        let v = yaml::parse_value(&f.name, &f.text, Dialect::Kubectl)?;
        layers.push((f.name.clone(), Value::from_json(&v)));
    }
    for (i, v) in options.values.iter().enumerate() {
        layers.push((format!("inline values #{}", i + 1), Value::from_json(v)));
    }
    for (name, layer) in layers {
        match layer {
            Value::Nil => {}
            Value::Map(_) => merge_maps(&vals, &layer),
            _ => {
                return Err(Error::Invalid {
                    file: name,
                    line: 1,
                    message: "values must be a mapping".into(),
                });
            }
        }
    }
    for expr in &options.set {
        strvals::parse_into(expr, &vals, false).map_err(|message| Error::Set {
            expr: expr.clone(),
            message,
        })?;
    }
    for expr in &settings.set_string {
        strvals::parse_into(expr, &vals, true).map_err(|message| Error::Set {
            expr: expr.clone(),
            message,
        })?;
    }
    for (key, content) in &settings.set_file {
        strvals::set_literal(key, Value::str(content.as_str()), &vals).map_err(|message| {
            Error::Set {
                expr: key.clone(),
                message,
            }
        })?;
    }
    Ok(vals)
}

/// Helm's `mergeMaps`: nested maps merge, everything else is replaced.
fn merge_maps(dst: &Value, src: &Value) {
    let (Value::Map(d), Value::Map(s)) = (dst, src) else {
        return;
    };
    let s = s.borrow().clone();
    for (k, v) in s {
        let existing = d.borrow().get(&k).cloned();
        match (existing, &v) {
            (Some(e @ Value::Map(_)), Value::Map(_)) => merge_maps(&e, &v),
            _ => {
                d.borrow_mut().insert(k, v);
            }
        }
    }
}

fn template_error(e: gotmpl::Error) -> Error {
    Error::Template {
        file: e.file,
        line: e.line,
        message: e.message,
    }
}

/// Splits a rendered file into documents as helm's `SplitManifests` does.
fn split_manifests(text: &str) -> Vec<String> {
    let sep = regex::Regex::new(r"(?:^|[\t\n\x0c\r ]*\n)---[\t\n\x0c\r ]*")
        .unwrap_or_else(|_| unreachable_regex());
    sep.split(text.trim_matches([' ', '\t', '\n', '\r', '\x0c', '\x0b']))
        .filter(|d| !d.is_empty())
        .map(|d| {
            d.trim_matches([' ', '\t', '\n', '\r', '\x0c', '\x0b'])
                .to_string()
        })
        .collect()
}

fn unreachable_regex() -> regex::Regex {
    regex::Regex::new("$^").unwrap_or_else(|_| unreachable_regex())
}

fn kind_rank(kind: &str) -> Option<usize> {
    INSTALL_ORDER.iter().position(|k| *k == kind)
}

fn sort_by_kind<T>(items: &mut [(String, T)]) {
    items.sort_by(|(a, _), (b, _)| match (kind_rank(a), kind_rank(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.cmp(b),
    });
}

/// Renders the Helm chart at `dir` as `helm template` does.
pub fn render(
    source: &dyn Source,
    dir: &str,
    options: &crate::chart::Options,
    settings: &Settings,
) -> Result<Output, Error> {
    render_chart(load(source, dir)?, options, settings)
}

fn render_chart(
    mut chart: Chart,
    options: &crate::chart::Options,
    settings: &Settings,
) -> Result<Output, Error> {
    let kube = settings
        .kube_version
        .clone()
        .unwrap_or_else(|| "v1.32.0".into());
    let (kube_version, major, minor) = kube_parts(&kube);
    check_dependencies(&chart)?;
    check_kube_version(&chart, &kube_version)?;

    let user = user_values(options, settings)?;
    process_dependencies(&mut chart, &user);
    process_imports(&mut chart)?;
    let vals = user.deep_copy();
    coalesce(&chart, &vals);

    let mut errors = Vec::new();
    let mut schema_file = String::new();
    validate_schemas(
        &chart,
        &vals,
        &chart.name.clone(),
        &mut errors,
        &mut schema_file,
    );
    if !errors.is_empty() {
        return Err(Error::Schema {
            file: schema_file,
            message: errors.join("\n"),
        });
    }

    let release_name = options
        .release_name
        .clone()
        .unwrap_or_else(|| "release-name".into());
    let release = map_of(vec![
        ("Name", Value::str(release_name.as_str())),
        (
            "Namespace",
            Value::str(
                options
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into()),
            ),
        ),
        ("IsUpgrade", Value::Bool(false)),
        ("IsInstall", Value::Bool(true)),
        ("Revision", Value::Int(1)),
        ("Service", Value::str("Helm")),
    ]);
    let mut api: Vec<String> = DEFAULT_API_VERSIONS.iter().map(|s| s.to_string()).collect();
    api.extend(settings.api_versions.iter().cloned());
    let caps = map_of(vec![
        (
            "KubeVersion",
            map_of(vec![
                ("Version", Value::str(kube_version.as_str())),
                ("Major", Value::str(major)),
                ("Minor", Value::str(minor)),
                ("GitVersion", Value::str(kube_version.as_str())),
            ]),
        ),
        ("APIVersions", Value::ApiVersions(Rc::new(api))),
        (
            "HelmVersion",
            map_of(vec![
                ("Version", Value::str("v3.17.2")),
                (
                    "GitCommit",
                    Value::str("cc0bbbd6d6276b83880042c1ecb34087e84d41eb"),
                ),
                ("GitTreeState", Value::str("clean")),
                ("GoVersion", Value::str("go1.23.7")),
            ]),
        ),
    ]);

    let mut all = Vec::new();
    let mut datas = BTreeMap::new();
    let top = chart.name.clone();
    collect(&chart, &top, &vals, &release, &caps, &mut all, &mut datas);

    // helm parses deepest paths first, and in reverse name order within a depth.
    all.sort_by(|a, b| {
        let (ca, cb) = (a.0.matches('/').count(), b.0.matches('/').count());
        cb.cmp(&ca).then_with(|| b.0.cmp(&a.0))
    });
    let mut set = Set::default();
    for (name, file, text, _) in &all {
        set.add(file.trim_start_matches('/'), name, text)
            .map_err(template_error)?;
    }
    let rendering = Rendering {
        set,
        jobs: all
            .iter()
            .filter(|(_, _, _, partial)| !partial)
            .filter_map(|(name, _, _, _)| {
                datas
                    .get(name)
                    .map(|(d, base)| (name.clone(), base.clone(), d.clone()))
            })
            .collect(),
    };
    let set = Rc::new(rendering.set);
    let lib = funcs::Helm;
    let mut rendered: BTreeMap<String, String> = BTreeMap::new();
    for (name, base, data) in rendering.jobs {
        // Each file sees its own `.Template`.
        let data = match &data {
            Value::Map(m) => {
                let mut copy = m.borrow().clone();
                copy.insert(
                    "Template".into(),
                    map_of(vec![
                        ("Name", Value::str(name.as_str())),
                        ("BasePath", Value::str(base)),
                    ]),
                );
                Value::map(copy)
            }
            d => d.clone(),
        };
        let mut exec = Exec::new(set.clone(), &lib);
        let text = exec.execute(&name, data).map_err(template_error)?;
        rendered.insert(name, text.replace("<no value>", ""));
    }

    let notes_name = format!("{top}/templates/NOTES.txt");
    let notes = rendered.get(&notes_name).cloned().unwrap_or_default();
    let mut generic: Vec<(String, Manifest)> = Vec::new();
    let mut hooks: Vec<(String, (Manifest, bool))> = Vec::new();
    for (path, content) in &rendered {
        if path.ends_with("NOTES.txt") || content.trim().is_empty() {
            continue;
        }
        for doc in split_manifests(content) {
            let head =
                yaml::parse_value(path, &doc, Dialect::Kubectl).map_err(|e| Error::Invalid {
                    file: path.clone(),
                    line: e.line,
                    message: format!("YAML parse error on {path}: {}", e.message),
                })?;
            let kind = head
                .get("kind")
                .and_then(|k| k.as_str())
                .unwrap_or_default()
                .to_string();
            let hook = head
                .pointer("/metadata/annotations/helm.sh~1hook")
                .and_then(|h| h.as_str())
                .map(str::to_string);
            let manifest = Manifest {
                source: path.clone(),
                content: doc,
            };
            match hook {
                None => generic.push((kind, manifest)),
                Some(h) => {
                    let events: Vec<String> =
                        h.split(',').map(|e| e.trim().to_lowercase()).collect();
                    if events.iter().any(|e| !HOOK_EVENTS.contains(&e.as_str())) {
                        continue;
                    }
                    let test = events.iter().any(|e| e == "test" || e == "test-success");
                    hooks.push((kind, (manifest, test)));
                }
            }
        }
    }
    sort_by_kind(&mut generic);
    sort_by_kind(&mut hooks);

    let mut manifests = Vec::new();
    if settings.include_crds {
        push_crds(&chart, &top, &mut manifests)?;
    }
    manifests.extend(generic.into_iter().map(|(_, m)| m));
    let release_len = manifests.len();
    manifests.extend(
        hooks
            .into_iter()
            .filter(|(_, (_, test))| !(settings.skip_tests && *test))
            .map(|(_, (m, _))| m),
    );
    Ok(Output {
        manifests,
        release_len,
        notes,
    })
}

fn push_crds(chart: &Chart, prefix: &str, out: &mut Vec<Manifest>) -> Result<(), Error> {
    for (rel, bytes) in chart.crds() {
        let path = format!("{prefix}/{rel}");
        out.push(Manifest {
            content: text_of(&path, bytes)?,
            source: path,
        });
    }
    for dep in &chart.deps {
        push_crds(dep, &format!("{prefix}/charts/{}", dep.name), out)?;
    }
    Ok(())
}

/// Renders a Helm chart into objects (for the syncer and kustomize): helm's stream, parsed.
pub fn render_objects(
    source: &dyn Source,
    dir: &str,
    options: &crate::chart::Options,
    settings: &Settings,
) -> Result<Vec<crate::Object>, crate::Error> {
    let out = render(source, dir, options, settings)?;
    objects_of(&out, source::parent(dir), false)
}

/// The objects of a render, each named `prefix/chart/templates/…` (helm's `# Source:` under
/// `prefix`); hooks only when `hooks` (a sync applies none, kustomize's `helmCharts` keeps them).
pub fn objects_of(
    out: &Output,
    prefix: &str,
    hooks: bool,
) -> Result<Vec<crate::Object>, crate::Error> {
    let mut objects = Vec::new();
    for (i, m) in out.manifests.iter().enumerate() {
        if i >= out.release_len && !hooks {
            break;
        }
        let file = format!("{}/{}", prefix.trim_end_matches('/'), m.source)
            .trim_start_matches('/')
            .to_string();
        for doc in yaml::parse_documents(&file, &m.content, Dialect::Kubectl)? {
            for value in crate::expand_list(doc.value) {
                objects.push(crate::Object {
                    value,
                    origin: crate::Origin {
                        file: file.clone(),
                        document: doc.index,
                        line: doc.line,
                    },
                });
            }
        }
    }
    Ok(objects)
}
