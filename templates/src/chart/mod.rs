//! Helm-style charts with handlebars templates.
//!
//! A chart directory holds `Chart.yaml` (name, version, appVersion), `values.yaml`, optionally
//! `values.schema.json`, templates in `templates/*.yaml` and partials in `templates/_*.hbs` (a
//! partial file is one partial named after the file, `_labels.hbs` → `labels`, or several
//! `{{#*inline "name"}}…{{/inline}}` blocks). Templates see `values`, `release` (`name`,
//! `namespace`) and `chart` (`name`, `version`, `appVersion`).
//!
//! Rendering is strict: a value that does not exist is an error naming the template, its line
//! and the value's path — never an empty string.

mod helpers;
mod schema;
pub mod values;

use crate::source::{self, EntryKind, Source};
use crate::yaml::{self, Dialect, YamlError};
use crate::{Object, Origin};
use handlebars::{Handlebars, RenderErrorReason};
use serde_json::{Value, json};
use std::collections::HashMap;

/// Why a chart could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A YAML file (Chart.yaml, a values file, rendered output) is malformed.
    #[error(transparent)]
    Yaml(#[from] YamlError),
    /// A file could not be read.
    #[error(transparent)]
    Source(#[from] source::SourceError),
    /// A `--set` expression is malformed.
    #[error(transparent)]
    Set(#[from] values::SetError),
    /// Chart.yaml, a values file or the schema is wrong, or the values break the schema.
    #[error("{file}:{line}: {message}")]
    Invalid {
        /// The file at fault (`--set` for a value given on the command line).
        file: String,
        /// The line at fault.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A value given outside any file (inline values, `--set`) breaks the schema.
    #[error("{origin}: {message}")]
    Value {
        /// Where the value came from (`--set`, `inline values #1`).
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A template failed to parse or render (a missing value, a failing `required`, …).
    #[error("{file}:{line}: {message}")]
    Template {
        /// The template or partial file.
        file: String,
        /// The line in that file.
        line: usize,
        /// What went wrong (`missing value values.replicas`).
        message: String,
    },
}

/// A values file given by the caller (not part of the chart).
#[derive(Clone, Debug)]
pub struct ValuesFile {
    /// How errors name it (its path).
    pub name: String,
    /// Its YAML text.
    pub text: String,
}

/// How to render a chart: the release, and the values layered over the chart's defaults.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The release name; the chart's name when `None`.
    pub release_name: Option<String>,
    /// The release namespace; `default` when `None`.
    pub namespace: Option<String>,
    /// Values files, later ones winning.
    pub values_files: Vec<ValuesFile>,
    /// Inline values (from an Application), over the files.
    pub values: Vec<Value>,
    /// `--set key.path=value` expressions, over everything.
    pub set: Vec<String>,
}

/// Whether `dir` holds a chart.
pub fn is_chart(source: &dyn Source, dir: &str) -> bool {
    source::join(dir, "Chart.yaml").is_ok_and(|p| source.kind(&p) == Some(EntryKind::File))
}

fn read_text(source: &dyn Source, path: &str) -> Result<String, Error> {
    String::from_utf8(source.read(path)?).map_err(|_| Error::Invalid {
        file: path.to_string(),
        line: 1,
        message: "not UTF-8 text".into(),
    })
}

/// One layer of values and where it came from.
struct Layer {
    name: String,
    text: Option<String>,
    value: Value,
}

fn read_layer(name: &str, text: &str) -> Result<Layer, Error> {
    let value = yaml::parse_value(name, text, Dialect::Kubectl)?;
    let value = match value {
        Value::Null => json!({}),
        v @ Value::Object(_) => v,
        _ => {
            return Err(Error::Invalid {
                file: name.to_string(),
                line: 1,
                message: "values must be a mapping".into(),
            });
        }
    };
    Ok(Layer {
        name: name.to_string(),
        text: Some(text.to_string()),
        value,
    })
}

fn has_path(value: &Value, path: &str) -> bool {
    let mut node = value;
    for key in path.split('.') {
        let key = key.split('[').next().unwrap_or(key);
        match node.get(key) {
            Some(v) => node = v,
            None => return false,
        }
    }
    true
}

/// The file and line that set the value at `path` (the last layer holding it); no line for
/// values given outside files.
fn blame(layers: &[Layer], path: &str) -> (String, Option<usize>) {
    let layer = layers
        .iter()
        .rev()
        .find(|l| has_path(&l.value, path))
        .or(layers.first());
    let Some(layer) = layer else {
        return ("values".into(), None);
    };
    let Some(text) = layer.text.as_deref() else {
        return (layer.name.clone(), None);
    };
    let key = path.rsplit('.').next().unwrap_or(path);
    let key = key.split('[').next().unwrap_or(key);
    let line = text
        .lines()
        .position(|l| {
            let l = l.trim_start().trim_start_matches("- ");
            l.starts_with(&format!("{key}:")) || l.starts_with(&format!("\"{key}\":"))
        })
        .map(|i| i + 1)
        .unwrap_or(1);
    (layer.name.clone(), Some(line))
}

/// Renders the chart in `dir`.
pub fn render(source: &dyn Source, dir: &str, options: &Options) -> Result<Vec<Object>, Error> {
    let chart_file = source::join(dir, "Chart.yaml")?;
    let chart_text = read_text(source, &chart_file)?;
    let chart = yaml::parse_value(&chart_file, &chart_text, Dialect::Kubectl)?;
    let field = |name: &str| -> Result<String, Error> {
        match chart.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            _ => Err(Error::Invalid {
                file: chart_file.clone(),
                line: 1,
                message: format!("{name}: required (a non-empty string)"),
            }),
        }
    };
    let name = field("name")?;
    let version = field("version")?;
    let app_version = field("appVersion").unwrap_or_default();

    let mut layers = Vec::new();
    let defaults = source::join(dir, "values.yaml")?;
    if source.kind(&defaults) == Some(EntryKind::File) {
        layers.push(read_layer(&defaults, &read_text(source, &defaults)?)?);
    }
    for file in &options.values_files {
        layers.push(read_layer(&file.name, &file.text)?);
    }
    for (i, v) in options.values.iter().enumerate() {
        layers.push(Layer {
            name: format!("inline values #{}", i + 1),
            text: None,
            value: v.clone(),
        });
    }
    let mut merged = json!({});
    for layer in &layers {
        values::merge(&mut merged, &layer.value);
    }
    let mut set_layer = json!({});
    for expression in &options.set {
        values::apply_set(&mut set_layer, expression)?;
        values::apply_set(&mut merged, expression)?;
    }
    layers.push(Layer {
        name: "--set".into(),
        text: None,
        value: set_layer,
    });

    let schema_file = source::join(dir, "values.schema.json")?;
    if source.kind(&schema_file) == Some(EntryKind::File) {
        let text = read_text(source, &schema_file)?;
        let schema: Value = serde_json::from_str(&text).map_err(|e| Error::Invalid {
            file: schema_file.clone(),
            line: e.line(),
            message: e.to_string(),
        })?;
        if let Some(v) = schema::validate(&schema, &merged).into_iter().next() {
            let message = format!("{}: {} (values.schema.json)", v.path, v.message);
            return Err(match blame(&layers, &v.path) {
                (file, Some(line)) => Error::Invalid {
                    file,
                    line,
                    message,
                },
                (origin, None) => Error::Value { origin, message },
            });
        }
    }

    let context = json!({
        "values": merged,
        "release": {
            "name": options.release_name.clone().unwrap_or_else(|| name.clone()),
            "namespace": options.namespace.clone().unwrap_or_else(|| "default".into()),
            "service": "gitplane",
        },
        "chart": {"name": name, "version": version, "appVersion": app_version},
    });
    render_templates(source, dir, &context)
}

/// Where each registered template came from: its file and the line its text starts on.
type Registered = HashMap<String, (String, usize)>;

fn template_error(registered: &Registered, e: &handlebars::RenderError) -> Error {
    let name = e.template_name.clone().unwrap_or_default();
    let (file, offset) = registered.get(&name).cloned().unwrap_or((name, 1));
    let message = match e.reason() {
        RenderErrorReason::MissingVariable(Some(path)) => format!("missing value {path}"),
        RenderErrorReason::MissingVariable(None) => "missing value".into(),
        RenderErrorReason::Other(m) => m.clone(),
        RenderErrorReason::TemplateError(t) => t.reason().to_string(),
        other => other.to_string(),
    };
    Error::Template {
        file,
        line: offset + e.line_no.unwrap_or(1) - 1,
        message,
    }
}

fn register(
    hb: &mut Handlebars<'_>,
    registered: &mut Registered,
    name: &str,
    file: &str,
    line: usize,
    text: &str,
) -> Result<(), Error> {
    hb.register_template_string(name, text)
        .map_err(|e| Error::Template {
            file: file.to_string(),
            line: line + e.pos().map_or(1, |p| p.0) - 1,
            message: e.reason().to_string(),
        })?;
    registered.insert(name.to_string(), (file.to_string(), line));
    Ok(())
}

fn register_partials(
    hb: &mut Handlebars<'_>,
    registered: &mut Registered,
    file: &str,
    text: &str,
) -> Result<(), Error> {
    let re = regex::Regex::new(r#"(?s)\{\{#\*inline\s+"([^"]+)"\s*\}\}\n?(.*?)\{\{/inline\}\}"#)
        .expect("static pattern");
    let mut found = false;
    for caps in re.captures_iter(text) {
        found = true;
        let (Some(name), Some(body)) = (caps.get(1), caps.get(2)) else {
            continue;
        };
        let line = text[..body.start()].matches('\n').count() + 1;
        // The newline before `{{/inline}}` is layout, not part of the partial.
        let body = body.as_str().strip_suffix('\n').unwrap_or(body.as_str());
        register(hb, registered, name.as_str(), file, line, body)?;
    }
    if !found {
        let stem = source::file_name(file);
        let stem = stem.trim_start_matches('_').trim_end_matches(".hbs");
        register(hb, registered, stem, file, 1, text)?;
    }
    Ok(())
}

fn render_templates(source: &dyn Source, dir: &str, context: &Value) -> Result<Vec<Object>, Error> {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    hb.register_escape_fn(handlebars::no_escape);
    helpers::register(&mut hb);
    let mut registered = Registered::new();

    let templates_dir = source::join(dir, "templates")?;
    let entries = if source.kind(&templates_dir) == Some(EntryKind::Dir) {
        source.list_dir(&templates_dir)?
    } else {
        Vec::new()
    };
    let mut templates = Vec::new();
    for entry in entries.iter().filter(|e| !e.is_dir) {
        let path = source::join(&templates_dir, &entry.name)?;
        if entry.name.starts_with('_') && entry.name.ends_with(".hbs") {
            let text = read_text(source, &path)?;
            register_partials(&mut hb, &mut registered, &path, &text)?;
        } else if [".yaml", ".yml", ".json"]
            .iter()
            .any(|ext| entry.name.ends_with(ext))
            && !entry.name.starts_with('_')
        {
            let text = read_text(source, &path)?;
            register(&mut hb, &mut registered, &path, &path, 1, &text)?;
            templates.push(path);
        }
    }
    let mut objects = Vec::new();
    for path in templates {
        let rendered = hb
            .render(&path, context)
            .map_err(|e| template_error(&registered, &e))?;
        let docs = yaml::parse_documents(&path, &rendered, Dialect::Kubectl).map_err(|e| {
            Error::Yaml(YamlError {
                message: format!("{} (in the rendered output)", e.message),
                ..e
            })
        })?;
        for doc in docs {
            let origin = Origin {
                file: path.clone(),
                document: doc.index,
                line: doc.line,
            };
            for value in crate::expand_list(doc.value) {
                objects.push(Object {
                    value,
                    origin: origin.clone(),
                });
            }
        }
    }
    Ok(objects)
}
