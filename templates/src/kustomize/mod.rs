//! Kustomize overlays, rendered the way `kubectl kustomize` (kustomize v5.5) renders them.
//!
//! A kustomization is accumulated depth first: its resources (files, directories holding
//! another kustomization or a chart), then its generators (`helmCharts` last), then its
//! components, then its
//! transformers in kustomize's fixed order (strategic merge patches, patches, namespace, name
//! prefix and suffix, labels, annotations, JSON 6902 patches, replicas, images,
//! replacements), then records the objects its `vars` read. Only the top-level kustomization
//! then adds hash suffixes to generated names, updates the references to every renamed object,
//! substitutes `vars`, sorts the output (kustomize's legacy order unless `sortOptions` says
//! otherwise) and writes what `buildMetadata` asks for.
//!
//! One deliberate difference: a patch whose target selects nothing is an error here, where
//! kustomize silently skips it — a patch that changes nothing is almost always a mistake.

mod config;
mod fieldpath;
mod fields;
mod generate;
mod helm;
mod kustomization;
mod metadata;
mod nameref;
mod openapi;
mod patch;
mod replacements;
mod transform;
mod vars;

use crate::source::{self, EntryKind, Source};
use crate::yaml::{self, Dialect, YamlError};
use crate::{Diagnostic, Object, Origin, Rendered};
use kustomization::{IGNORED, Kustomization, UNSUPPORTED};
use serde_json::Value;

/// Why a kustomization could not be rendered. Every variant names the file (and line) at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A YAML file is malformed.
    #[error(transparent)]
    Yaml(#[from] YamlError),
    /// A file could not be read.
    #[error("{file}:{line}: {source}")]
    Source {
        /// The kustomization that names the file.
        file: String,
        /// The line that names it.
        line: usize,
        /// The read error.
        #[source]
        source: source::SourceError,
    },
    /// A resource, component or patch path names nothing.
    #[error("{file}:{line}: {path}: no such file or directory")]
    Missing {
        /// The kustomization that names the path.
        file: String,
        /// The line that names it.
        line: usize,
        /// The path as resolved from the source root.
        path: String,
    },
    /// Kustomizations include each other in a loop.
    #[error("{file}:{line}: kustomization cycle: {chain}")]
    Cycle {
        /// The kustomization that closes the loop.
        file: String,
        /// The line that names the directory already being rendered.
        line: usize,
        /// The directories of the loop, outermost first.
        chain: String,
    },
    /// A patch's target selects no object.
    #[error("{file}:{line}: patch target matches no resource: {target}")]
    NoTarget {
        /// The kustomization holding the patch.
        file: String,
        /// The line of the patch.
        line: usize,
        /// The target, as kustomize prints ids.
        target: String,
    },
    /// A chart used as a resource failed to render.
    #[error(transparent)]
    Chart(Box<crate::chart::Error>),
    /// A Helm chart of `helmCharts` failed to render.
    #[error(transparent)]
    Helm(Box<crate::helm::Error>),
    /// Anything else that is wrong with a kustomization or what it produces.
    #[error("{file}:{line}: {message}")]
    Invalid {
        /// The file at fault.
        file: String,
        /// The line at fault.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// The names kustomize looks for in a directory, in its order of preference.
pub const FILE_NAMES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// The kustomization file of `dir`, if it has one.
pub fn kustomization_file(source: &dyn Source, dir: &str) -> Option<String> {
    FILE_NAMES
        .iter()
        .map(|name| source::join(dir, name).unwrap_or_default())
        .find(|path| source.kind(path) == Some(EntryKind::File))
}

/// Renders the kustomization in `dir`; charts met as resources render with `chart_options`.
pub fn render(
    source: &dyn Source,
    dir: &str,
    chart_options: &crate::chart::Options,
) -> Result<Rendered, Error> {
    let mut engine = Engine {
        source,
        chart_options,
        stack: Vec::new(),
        diagnostics: Vec::new(),
        root: dir.to_string(),
        build: metadata::Options::default(),
        vars: Vec::new(),
        openapi: None,
    };
    let file = kustomization_file(source, dir).ok_or_else(|| Error::Missing {
        file: dir.to_string(),
        line: 1,
        path: format!("{}/kustomization.yaml", dir),
    })?;
    let (mut resources, k, config) =
        engine.kustomize(dir, Vec::new(), config::Config::default(), false, None)?;
    generate::add_hash_suffixes(&mut resources);
    nameref::fix(&mut resources, &config.name_references).map_err(|message| Error::Invalid {
        file: file.clone(),
        line: 1,
        message,
    })?;
    let var_specs: Vec<fields::FieldSpec> = fields::var_reference()
        .iter()
        .chain(&config.var_reference)
        .cloned()
        .collect();
    vars::resolve(&mut resources, &engine.vars, &var_specs).map_err(|message| Error::Invalid {
        file: file.clone(),
        line: locate(&engine.text_of(&file), "vars", None),
        message,
    })?;
    transform::sort(&mut resources, k.sort_options.as_ref()).map_err(|message| Error::Invalid {
        file: file.clone(),
        line: locate(&engine.text_of(&file), "sortOptions", None),
        message,
    })?;
    metadata::finish(&mut resources, engine.build);
    Ok(Rendered {
        objects: resources
            .into_iter()
            .map(|r| Object {
                value: r.value,
                origin: r.origin,
            })
            .collect(),
        diagnostics: engine.diagnostics,
    })
}

/// Fields kustomize still reads but has deprecated, and what replaces them.
const DEPRECATED: &[(&str, &str)] = &[
    ("commonLabels", "labels"),
    ("bases", "resources"),
    ("patchesStrategicMerge", "patches"),
    ("patchesJson6902", "patches"),
    ("vars", "replacements"),
];

/// An object on its way through the kustomizations, with the history kustomize keeps.
#[derive(Clone, Debug)]
pub(crate) struct Resource {
    pub value: Value,
    pub origin: Origin,
    /// Earlier (name, namespace) pairs, oldest first.
    pub previous: Vec<(String, String)>,
    /// Name prefixes and suffixes added, innermost first (empty strings included).
    pub prefixes: Vec<String>,
    pub suffixes: Vec<String>,
    /// A generated ConfigMap or Secret whose name gets the content hash.
    pub needs_hash: bool,
    /// The `vars` that read this object.
    pub ref_vars: Vec<String>,
    /// Where it came from, as `buildMetadata: [originAnnotations]` prints it.
    pub build_origin: Option<String>,
    /// The transformers that ran over it, as `buildMetadata: [transformerAnnotations]` prints.
    pub transformations: Vec<String>,
}

impl Resource {
    pub fn new(value: Value, origin: Origin) -> Self {
        Resource {
            value,
            origin,
            previous: Vec::new(),
            prefixes: Vec::new(),
            suffixes: Vec::new(),
            needs_hash: false,
            ref_vars: Vec::new(),
            build_origin: None,
            transformations: Vec::new(),
        }
    }

    /// The string at `path` (map keys), or `""`.
    pub fn str_at(&self, path: &[&str]) -> &str {
        let mut node = &self.value;
        for key in path {
            match node.get(key) {
                Some(child) => node = child,
                None => return "",
            }
        }
        node.as_str().unwrap_or("")
    }

    pub fn api_version(&self) -> &str {
        self.str_at(&["apiVersion"])
    }

    pub fn kind(&self) -> &str {
        self.str_at(&["kind"])
    }

    pub fn group(&self) -> &str {
        apimachinery::registry::split_api_version(self.api_version()).0
    }

    pub fn name(&self) -> &str {
        self.str_at(&["metadata", "name"])
    }

    pub fn namespace(&self) -> &str {
        self.str_at(&["metadata", "namespace"])
    }

    pub fn is_cluster_scoped(&self) -> bool {
        transform::is_cluster_scoped(self.kind())
    }

    /// The namespace kustomize compares: `default` for a namespaced object without one.
    pub fn effective_namespace(&self) -> String {
        effective_namespace(self.kind(), self.namespace())
    }

    pub fn set_meta(&mut self, field: &str, value: &str) {
        if let Some(meta) = self
            .value
            .as_object_mut()
            .map(|o| {
                o.entry("metadata")
                    .or_insert_with(|| Value::Object(Default::default()))
            })
            .and_then(Value::as_object_mut)
        {
            meta.insert(field.to_string(), Value::String(value.to_string()));
        }
    }

    /// Records the current name and namespace before they change.
    pub fn store_previous(&mut self) {
        let id = (self.name().to_string(), self.effective_namespace());
        self.previous.push(id);
    }

    /// The ids this object has had: the original one first, the current one last.
    pub fn all_names(&self) -> impl Iterator<Item = (&str, String)> {
        self.previous
            .iter()
            .map(|(n, ns)| (n.as_str(), ns.clone()))
            .chain(std::iter::once((self.name(), self.effective_namespace())))
    }

    /// The original name and namespace.
    pub fn original(&self) -> (String, String) {
        self.previous
            .first()
            .cloned()
            .unwrap_or_else(|| (self.name().to_string(), self.effective_namespace()))
    }

    /// `Kind.version.group/name.namespace`, as kustomize prints ids.
    pub fn id(&self) -> String {
        let (group, version) = apimachinery::registry::split_api_version(self.api_version());
        let gvk = if group.is_empty() {
            format!("{}.{}", self.kind(), version)
        } else {
            format!("{}.{}.{}", self.kind(), version, group)
        };
        let ns = self.namespace();
        if ns.is_empty() {
            format!("{gvk}/{}.[noNs]", self.name())
        } else {
            format!("{gvk}/{}.{ns}", self.name())
        }
    }

    /// What makes an object unique in a kustomization: group, kind, name and namespace.
    pub fn key(&self) -> (String, String, String, String) {
        (
            self.group().to_string(),
            self.kind().to_string(),
            self.name().to_string(),
            self.effective_namespace(),
        )
    }
}

/// `default` for a namespaced kind without a namespace, `""` for cluster-scoped kinds.
pub(crate) fn effective_namespace(kind: &str, namespace: &str) -> String {
    if transform::is_cluster_scoped(kind) {
        String::new()
    } else if namespace.is_empty() {
        "default".into()
    } else {
        namespace.to_string()
    }
}

/// The line of `key:` at the top of a kustomization, or of `needle` below it.
pub(crate) fn locate(text: &str, key: &str, needle: Option<&str>) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with(key) && l[key.len()..].trim_start().starts_with(':'));
    let Some(start) = start else {
        return 1;
    };
    if let Some(needle) = needle {
        let needle = needle.lines().next().unwrap_or(needle).trim();
        if !needle.is_empty() {
            for (i, line) in lines.iter().enumerate().skip(start) {
                if i > start && !line.starts_with([' ', '-', '\t', '#']) && !line.is_empty() {
                    break;
                }
                if line.contains(needle) {
                    return i + 1;
                }
            }
        }
    }
    start + 1
}

/// The line of the `index`-th list item under the top-level `key:` of a kustomization.
pub(crate) fn locate_item(text: &str, key: &str, index: usize) -> usize {
    let start = locate(text, key, None);
    let mut indent = None;
    let mut seen = 0;
    for (i, line) in text.lines().enumerate().skip(start) {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let width = line.len() - trimmed.len();
        if !trimmed.starts_with('-') && width == 0 {
            break;
        }
        if trimmed.starts_with("- ") || trimmed == "-" {
            let first = *indent.get_or_insert(width);
            if width == first {
                if seen == index {
                    return i + 1;
                }
                seen += 1;
            }
        }
    }
    start
}

/// The context in which one kustomization is being rendered.
pub(crate) struct Ctx<'k> {
    pub dir: String,
    pub file: String,
    pub text: String,
    pub k: &'k Kustomization,
    /// The kustomization file relative to the top-level one, when transformers are recorded.
    pub configured_in: Option<String>,
    /// The field specs in force (kustomize's defaults plus `configurations`).
    pub config: config::Config,
    /// The `openapi` schema of custom kinds, once a kustomization has named one.
    pub openapi: Option<std::rc::Rc<openapi::Schema>>,
}

impl Ctx<'_> {
    pub fn invalid(&self, key: &str, needle: Option<&str>, message: impl Into<String>) -> Error {
        Error::Invalid {
            file: self.file.clone(),
            line: locate(&self.text, key, needle),
            message: message.into(),
        }
    }

    /// Reads a file named by this kustomization.
    pub fn read(
        &self,
        source: &dyn Source,
        key: &str,
        relative: &str,
    ) -> Result<(String, String), Error> {
        let line = locate(&self.text, key, Some(relative));
        let path = source::join(&self.dir, relative).map_err(|e| Error::Source {
            file: self.file.clone(),
            line,
            source: e,
        })?;
        if source.kind(&path) != Some(EntryKind::File) {
            return Err(Error::Missing {
                file: self.file.clone(),
                line,
                path,
            });
        }
        let bytes = source.read(&path).map_err(|e| Error::Source {
            file: self.file.clone(),
            line,
            source: e,
        })?;
        let text = String::from_utf8(bytes).map_err(|_| Error::Invalid {
            file: path.clone(),
            line: 1,
            message: "not UTF-8 text".into(),
        })?;
        Ok((path, text))
    }
}

struct Engine<'a> {
    source: &'a dyn Source,
    chart_options: &'a crate::chart::Options,
    /// Directories being rendered, outermost first (to find cycles).
    stack: Vec<String>,
    /// Warnings found so far.
    diagnostics: Vec<Diagnostic>,
    /// The top-level kustomization's directory.
    root: String,
    /// The top-level `buildMetadata`.
    build: metadata::Options,
    /// Every var declared so far.
    vars: Vec<vars::Var>,
    /// The `openapi` schema, once a kustomization has named one (it holds for the whole
    /// build from then on, as kustomize's global schema does).
    openapi: Option<std::rc::Rc<openapi::Schema>>,
}

impl Engine<'_> {
    fn text_of(&self, file: &str) -> String {
        self.source
            .read(file)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default()
    }

    /// Renders the kustomization (or component) in `dir` on top of `resources`.
    fn kustomize(
        &mut self,
        dir: &str,
        mut resources: Vec<Resource>,
        config: config::Config,
        component: bool,
        named_by: Option<(&str, usize)>,
    ) -> Result<(Vec<Resource>, Kustomization, config::Config), Error> {
        let Some(file) = kustomization_file(self.source, dir) else {
            let (file, line) = named_by.unwrap_or((dir, 1));
            return Err(Error::Invalid {
                file: file.to_string(),
                line,
                message: format!("{dir}: directory has no kustomization.yaml (and no Chart.yaml)"),
            });
        };
        if let Some(i) = self.stack.iter().position(|d| d == dir) {
            let (file, line) = named_by.unwrap_or((dir, 1));
            let mut chain = self.stack[i..].to_vec();
            chain.push(dir.to_string());
            return Err(Error::Cycle {
                file: file.to_string(),
                line,
                chain: chain.join(" -> "),
            });
        }
        let text = self.text_of(&file);
        let value = yaml::parse_value(&file, &text, Dialect::Kustomize)?;
        let value = if value.is_null() {
            Value::Object(Default::default())
        } else {
            value
        };
        let k: Kustomization = serde_json::from_value(value).map_err(|e| Error::Invalid {
            file: file.clone(),
            line: 1,
            message: e.to_string(),
        })?;
        let mut ctx = Ctx {
            dir: dir.to_string(),
            file: file.clone(),
            text,
            k: &k,
            configured_in: None,
            config,
            openapi: None,
        };
        check_fields(&ctx, component)?;
        if self.stack.is_empty() {
            self.build = metadata::Options::parse(&k.build_metadata)
                .map_err(|message| ctx.invalid("buildMetadata", None, message))?;
        }
        let configured_in = relative(&self.root, &file);
        if self.build.transformers {
            ctx.configured_in = Some(configured_in.clone());
        }
        if let Some(path) = k.openapi.as_ref().and_then(|o| o.path.as_deref()) {
            let (schema_file, schema_text) = ctx.read(self.source, "openapi", path)?;
            let document = yaml::parse_value(&schema_file, &schema_text, Dialect::Kustomize)?;
            let schema = openapi::Schema::parse(&document).map_err(|message| Error::Invalid {
                file: schema_file.clone(),
                line: 1,
                message,
            })?;
            self.openapi = Some(std::rc::Rc::new(schema));
        }
        ctx.openapi = self.openapi.clone();
        for (old, new) in DEPRECATED {
            if ctx.text.lines().any(|l| l.starts_with(&format!("{old}:"))) {
                self.diagnostics.push(Diagnostic {
                    file: ctx.file.clone(),
                    line: locate(&ctx.text, old, None),
                    message: format!("{old} is deprecated; use {new}"),
                });
            }
        }
        self.stack.push(dir.to_string());

        let mut ids: Ids = resources.iter().map(Resource::key).collect();
        for entry in k.bases.iter().chain(&k.resources) {
            let (loaded, sub) = self.load(&ctx, entry)?;
            if let Some(sub) = sub {
                ctx.config.merge(&sub);
            }
            for r in loaded {
                add(&ctx, &mut resources, &mut ids, r, entry)?;
            }
        }
        let mut own = config::Config::default();
        own.load(self.source, &ctx)?;
        own.load_crds(self.source, &ctx)?;
        ctx.config.merge(&own);
        let before = resources.len();
        generate::run(self.source, &ctx, &mut resources)?;
        if self.build.origin {
            for r in &mut resources[before..] {
                let generator = if r.kind() == "Secret" {
                    "SecretGenerator"
                } else {
                    "ConfigMapGenerator"
                };
                r.build_origin = Some(metadata::configured(&configured_in, generator));
            }
        }
        let before = resources.len();
        let mut ids: Ids = resources.iter().map(Resource::key).collect();
        helm::run(self.source, &ctx, &mut resources, &mut ids)?;
        if self.build.origin {
            for r in &mut resources[before..] {
                r.build_origin = Some(metadata::configured(
                    &configured_in,
                    "HelmChartInflationGenerator",
                ));
            }
        }
        for entry in &k.components {
            let line = locate(&ctx.text, "components", Some(entry));
            let path = self.resolve(&ctx, "components", entry)?;
            if self.source.kind(&path) != Some(EntryKind::Dir) {
                return Err(Error::Missing {
                    file: ctx.file.clone(),
                    line,
                    path,
                });
            }
            let (out, _, config) = self.kustomize(
                &path,
                resources,
                ctx.config.clone(),
                true,
                Some((&ctx.file, line)),
            )?;
            resources = out;
            ctx.config = config;
        }
        transform::run(self.source, &ctx, &mut resources)?;
        vars::merge(&ctx, &mut resources, &mut self.vars)?;
        self.stack.pop();
        let config = ctx.config;
        Ok((resources, k, config))
    }

    fn resolve(&self, ctx: &Ctx, key: &str, entry: &str) -> Result<String, Error> {
        if entry.contains("://") || entry.starts_with("github.com/") || entry.starts_with("git@") {
            return Err(ctx.invalid(
                key,
                Some(entry),
                format!(
                    "{entry}: remote resources are not supported (rendering never uses the network)"
                ),
            ));
        }
        source::join(&ctx.dir, entry).map_err(|e| Error::Source {
            file: ctx.file.clone(),
            line: locate(&ctx.text, key, Some(entry)),
            source: e,
        })
    }

    /// The objects one `resources` entry names, and the configuration of a kustomization.
    fn load(
        &mut self,
        ctx: &Ctx,
        entry: &str,
    ) -> Result<(Vec<Resource>, Option<config::Config>), Error> {
        let key = if ctx.k.bases.iter().any(|b| b == entry) {
            "bases"
        } else {
            "resources"
        };
        let line = locate(&ctx.text, key, Some(entry));
        let path = self.resolve(ctx, key, entry)?;
        match self.source.kind(&path) {
            None => Err(Error::Missing {
                file: ctx.file.clone(),
                line,
                path,
            }),
            Some(EntryKind::Dir) => {
                if kustomization_file(self.source, &path).is_none()
                    && crate::chart::is_chart(self.source, &path)
                {
                    let objects = crate::chart::render(self.source, &path, self.chart_options)
                        .map_err(|e| Error::Chart(Box::new(e)))?;
                    let origin = self.build.origin.then(|| relative(&self.root, &path));
                    return Ok((
                        objects
                            .into_iter()
                            .map(|o| {
                                let mut r = Resource::new(o.value, o.origin);
                                r.build_origin = origin.as_deref().map(metadata::file_origin);
                                r
                            })
                            .collect(),
                        None,
                    ));
                }
                let (resources, k, config) = self.kustomize(
                    &path,
                    Vec::new(),
                    config::Config::default(),
                    false,
                    Some((&ctx.file, line)),
                )?;
                if k.kind.as_deref() == Some("Component") {
                    return Err(ctx.invalid(
                        key,
                        Some(entry),
                        format!("{entry}: a Component belongs under components, not {key}"),
                    ));
                }
                Ok((resources, Some(config)))
            }
            Some(EntryKind::File) => {
                let (path, text) = ctx.read(self.source, key, entry)?;
                if source::file_name(&path).starts_with("kustomization") {
                    return Err(ctx.invalid(
                        key,
                        Some(entry),
                        format!("{entry}: name the directory of a kustomization, not its file"),
                    ));
                }
                let mut loaded = load_file(&path, &text)?;
                if self.build.origin {
                    let origin = metadata::file_origin(&relative(&self.root, &path));
                    for r in &mut loaded {
                        r.build_origin = Some(origin.clone());
                    }
                }
                Ok((loaded, None))
            }
        }
    }
}

/// `path` relative to the directory `root` (both relative to the source root), with `..` where
/// it lies outside.
fn relative(root: &str, path: &str) -> String {
    let split = |p: &str| -> Vec<String> {
        p.split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .map(str::to_string)
            .collect()
    };
    let (root, path) = (split(root), split(path));
    let common = root.iter().zip(&path).take_while(|(a, b)| a == b).count();
    let mut out: Vec<String> = vec!["..".to_string(); root.len() - common];
    out.extend(path[common..].iter().cloned());
    out.join("/")
}

/// The objects of one YAML file, with `List`s expanded.
pub(crate) fn load_file(path: &str, text: &str) -> Result<Vec<Resource>, Error> {
    let mut out = Vec::new();
    for doc in yaml::parse_documents(path, text, Dialect::Kustomize)? {
        let origin = Origin {
            file: path.to_string(),
            document: doc.index,
            line: doc.line,
        };
        let items = crate::expand_list(doc.value);
        for value in items {
            let r = Resource::new(value, origin.clone());
            if !r.value.is_object() || r.kind().is_empty() {
                return Err(Error::Invalid {
                    file: path.to_string(),
                    line: doc.line,
                    message: "document is not a Kubernetes object (missing kind)".into(),
                });
            }
            if r.name().is_empty() {
                return Err(Error::Invalid {
                    file: path.to_string(),
                    line: doc.line,
                    message: format!("{} has no metadata.name", r.kind()),
                });
            }
            out.push(r);
        }
    }
    Ok(out)
}

/// The ids of a list of objects, to refuse duplicates without comparing every pair.
pub(crate) type Ids = std::collections::HashSet<(String, String, String, String)>;

fn add(
    ctx: &Ctx,
    resources: &mut Vec<Resource>,
    ids: &mut Ids,
    r: Resource,
    entry: &str,
) -> Result<(), Error> {
    if !ids.insert(r.key()) {
        return Err(ctx.invalid(
            "resources",
            Some(entry),
            format!(
                "may not add resource with an already registered id: {}",
                r.id()
            ),
        ));
    }
    resources.push(r);
    Ok(())
}

fn check_fields(ctx: &Ctx, component: bool) -> Result<(), Error> {
    for key in ctx.k.rest.keys() {
        if IGNORED.contains(&key.as_str()) {
            continue;
        }
        let message = if UNSUPPORTED.contains(&key.as_str()) {
            format!("{key}: not supported by gitplane's kustomize renderer")
        } else {
            format!("{key}: unknown field")
        };
        return Err(ctx.invalid(key, None, message));
    }
    match (component, ctx.k.kind.as_deref()) {
        (true, Some("Component")) | (false, None | Some("Kustomization")) => Ok(()),
        (true, other) => Err(ctx.invalid(
            "kind",
            None,
            format!(
                "a component must have kind Component, found {}",
                other.unwrap_or("none")
            ),
        )),
        (false, Some("Component")) => Ok(()),
        (false, Some(other)) => Err(ctx.invalid("kind", None, format!("unknown kind {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, key: &str, needle: Option<&str>, expected: usize) {
        assert_eq!(locate(text, key, needle), expected, "{key} {needle:?}");
    }

    #[test]
    fn locating_finds_the_line_of_a_key_or_an_entry() {
        let text = "namespace: x\nresources:\n- a.yaml\n- b\npatches:\n- path: b\n";
        check(text, "resources", None, 2);
        check(text, "resources", Some("b"), 4);
        check(text, "patches", Some("b"), 6);
        check(text, "images", None, 1);
        assert_eq!(locate_item(text, "resources", 1), 4);
        assert_eq!(locate_item(text, "patches", 0), 6);
        assert_eq!(
            locate_item("a:\n  - x\n  - y: 1\n    z: 2\n  - w\n", "a", 2),
            5
        );
    }
}
