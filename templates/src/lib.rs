//! Renderers that turn a source tree into Kubernetes objects: handlebars charts, kustomize
//! overlays and plain YAML.
//!
//! # Layout
//! - [`source`]: the [`Source`](source::Source) trait renderers read through, and
//!   [`DirSource`](source::DirSource) for a directory on disk.
//! - [`yaml`]: multi-document YAML in (with lines) and out (in `kubectl kustomize`'s style).
//! - [`chart`]: gitplane's handlebars charts (values layering, schema, helpers, strict
//!   rendering).
//! - [`helm`]: Helm charts (Go templates), rendered as `helm template` renders them.
//! - [`gotemplate`]: Go templates over a JSON document (ApplicationSets' `goTemplate: true`).
//! - [`kustomize`]: kustomize overlays, equal to `kubectl kustomize`.
//! - this file: [`render`], which detects the kind of a directory and renders it, and plain
//!   directories of YAML/JSON files.
//!
//! **Architecture Invariant**: rendering is pure. Files come through a `Source`, results are
//! values; nothing here touches the network, the cluster, the clock or the process environment.

pub mod chart;
pub mod gotemplate;
pub mod helm;
pub mod kustomize;
mod scalar;
pub mod source;
pub mod yaml;

use serde_json::Value;
use source::{EntryKind, Source};

/// Where a rendered object came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The file (relative to the source root): a manifest, a chart template, or the
    /// kustomization whose generator made the object.
    pub file: String,
    /// Index of the document within the file, from 0.
    pub document: usize,
    /// 1-based line where the document (or the generator entry) starts.
    pub line: usize,
}

/// One rendered Kubernetes object.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    /// The object, as JSON.
    pub value: Value,
    /// Where it came from.
    pub origin: Origin,
}

/// A warning about input that rendered but deserves attention (a deprecated field, …).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file concerned.
    pub file: String,
    /// The 1-based line concerned.
    pub line: usize,
    /// What to look at.
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// The result of rendering: the objects, in output order, and any warnings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rendered {
    /// The objects.
    pub objects: Vec<Object>,
    /// Warnings, in the order they were found.
    pub diagnostics: Vec<Diagnostic>,
}

/// What kind of source a directory holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A directory with `kustomization.yaml` (or `.yml`, or `Kustomization`).
    Kustomization,
    /// A directory with a `Chart.yaml` that has `apiVersion`, or a packaged chart (`.tgz`): a
    /// Helm chart.
    HelmChart,
    /// A directory with a `Chart.yaml` without `apiVersion`: a handlebars chart.
    Chart,
    /// Any other directory, or a single file: plain YAML/JSON manifests.
    Plain,
}

/// Why a source could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The path could not be read.
    #[error(transparent)]
    Source(#[from] source::SourceError),
    /// A plain manifest is malformed.
    #[error(transparent)]
    Yaml(#[from] yaml::YamlError),
    /// A chart failed.
    #[error(transparent)]
    Chart(#[from] chart::Error),
    /// A Helm chart failed.
    #[error(transparent)]
    Helm(#[from] helm::Error),
    /// A kustomization failed.
    #[error(transparent)]
    Kustomize(#[from] kustomize::Error),
    /// A plain manifest is not a Kubernetes object.
    #[error("{file}:{line}: {message}")]
    Invalid {
        /// The file at fault.
        file: String,
        /// The line of the document.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// Which renderer `path` needs: kustomization first, then a Helm chart (`Chart.yaml` with
/// `apiVersion`), then a handlebars chart (`Chart.yaml` without), else plain manifests.
pub fn detect(source: &dyn Source, path: &str) -> Kind {
    if path.ends_with(".tgz") && source.kind(path) == Some(EntryKind::File) {
        Kind::HelmChart
    } else if source.kind(path) != Some(EntryKind::Dir) {
        Kind::Plain
    } else if kustomize::kustomization_file(source, path).is_some() {
        Kind::Kustomization
    } else if helm::is_helm_chart(source, path) {
        Kind::HelmChart
    } else if chart::is_chart(source, path) {
        Kind::Chart
    } else {
        Kind::Plain
    }
}

/// Renders the directory (or file) at `path`; `chart` configures charts, including those that
/// kustomizations use as resources.
pub fn render(source: &dyn Source, path: &str, chart: &chart::Options) -> Result<Rendered, Error> {
    match detect(source, path) {
        Kind::Kustomization => Ok(kustomize::render(source, path, chart)?),
        Kind::HelmChart if source.kind(path) == Some(EntryKind::File) => {
            let out = helm::render_archive(source, path, chart, &helm::Settings::default())?;
            Ok(Rendered {
                objects: helm::objects_of(&out, source::parent(path), false)?,
                diagnostics: Vec::new(),
            })
        }
        Kind::HelmChart => Ok(Rendered {
            objects: helm::render_objects(source, path, chart, &helm::Settings::default())?,
            diagnostics: Vec::new(),
        }),
        Kind::Chart => Ok(Rendered {
            objects: chart::render(source, path, chart)?,
            diagnostics: Vec::new(),
        }),
        Kind::Plain => Ok(Rendered {
            objects: plain(source, path)?,
            diagnostics: Vec::new(),
        }),
    }
}

/// Items of a `List` (`kind: List`, `ConfigMapList`, …), or the object itself.
pub(crate) fn expand_list(value: Value) -> Vec<Value> {
    let is_list = value
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k.ends_with("List"))
        && value.get("items").is_some_and(Value::is_array);
    if !is_list {
        return vec![value];
    }
    match value {
        Value::Object(mut map) => match map.remove("items") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

fn manifest_files(source: &dyn Source, dir: &str, out: &mut Vec<String>) -> Result<(), Error> {
    for entry in source.list_dir(dir)? {
        if entry.name.starts_with('.') {
            continue;
        }
        let path = source::join(dir, &entry.name)?;
        if entry.is_dir {
            manifest_files(source, &path, out)?;
        } else if [".yaml", ".yml", ".json"]
            .iter()
            .any(|e| entry.name.ends_with(e))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Every `.yaml`, `.yml` and `.json` file under `path` (recursively, in name order).
fn plain(source: &dyn Source, path: &str) -> Result<Vec<Object>, Error> {
    let mut files = Vec::new();
    match source.kind(path) {
        Some(EntryKind::Dir) => manifest_files(source, path, &mut files)?,
        Some(EntryKind::File) => files.push(path.to_string()),
        None => return Err(source::SourceError::NotFound(path.to_string()).into()),
    }
    let mut objects = Vec::new();
    for file in files {
        let text = String::from_utf8(source.read(&file)?).map_err(|_| Error::Invalid {
            file: file.clone(),
            line: 1,
            message: "not UTF-8 text".into(),
        })?;
        for doc in yaml::parse_documents(&file, &text, yaml::Dialect::Kubectl)? {
            let origin = Origin {
                file: file.clone(),
                document: doc.index,
                line: doc.line,
            };
            for value in expand_list(doc.value) {
                if value
                    .get("kind")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    return Err(Error::Invalid {
                        file: file.clone(),
                        line: doc.line,
                        message: "document is not a Kubernetes object (missing kind)".into(),
                    });
                }
                objects.push(Object {
                    value,
                    origin: origin.clone(),
                });
            }
        }
    }
    Ok(objects)
}
