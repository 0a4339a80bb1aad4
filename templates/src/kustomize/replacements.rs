//! `replacements`: copy a field of one object (the source) into fields of others (the
//! targets), as kustomize's ReplacementTransformer does, inline or from `path:` files.

use super::fieldpath::{self, Create, Part};
use super::kustomization::Selector;
use super::{Ctx, Error, Resource};
use crate::source::Source;
use crate::yaml::{self, Dialect};
use apimachinery::selector::LabelSelector;
use serde::Deserialize;
use serde_json::Value;

/// An object id as a replacement selects it; empty fields match everything.
#[derive(Clone, Debug, Default)]
pub struct ResId {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub name: String,
    pub namespace: String,
}

impl ResId {
    /// Whether `r` (under any of the names it has had) is selected.
    fn selects(&self, r: &Resource) -> bool {
        let (group, version) = apimachinery::registry::split_api_version(r.api_version());
        let gvk = (self.group.is_empty() || self.group == group)
            && (self.version.is_empty() || self.version == version)
            && (self.kind.is_empty() || self.kind == r.kind());
        let namespace = (!self.namespace.is_empty())
            .then(|| super::effective_namespace(&self.kind, &self.namespace));
        gvk && r.all_names().any(|(name, ns)| {
            (self.name.is_empty() || self.name == name)
                && namespace.as_ref().is_none_or(|want| *want == ns)
        })
    }

    fn is_empty(&self) -> bool {
        self.group.is_empty()
            && self.version.is_empty()
            && self.kind.is_empty()
            && self.name.is_empty()
            && self.namespace.is_empty()
    }
}

impl std::fmt::Display for ResId {
    /// As kustomize prints selectors: `Kind.version.group/name.namespace`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let or = |s: &str, none: &'static str| {
            if s.is_empty() {
                none.to_string()
            } else {
                s.to_string()
            }
        };
        write!(
            f,
            "{}.{}.{}/{}.{}",
            or(&self.kind, "[noKind]"),
            or(&self.version, "[noVer]"),
            or(&self.group, "[noGrp]"),
            or(&self.name, "[noName]"),
            or(&self.namespace, "[noNs]")
        )
    }
}

/// How a field's value is split and joined.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FieldOptions {
    pub delimiter: String,
    pub index: i64,
    pub encoding: String,
    pub create: bool,
}

/// Where the value comes from.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct SourceSelector {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub name: String,
    pub namespace: String,
    pub field_path: String,
    pub options: Option<FieldOptions>,
}

impl SourceSelector {
    fn id(&self) -> ResId {
        ResId {
            group: self.group.clone(),
            version: self.version.clone(),
            kind: self.kind.clone(),
            name: self.name.clone(),
            namespace: self.namespace.clone(),
        }
    }
}

/// A replacement's targets are chosen with the patch target selector: by id and by label and
/// annotation selectors.
impl Selector {
    fn id(&self) -> ResId {
        ResId {
            group: self.group.clone(),
            version: self.version.clone(),
            kind: self.kind.clone(),
            name: self.name.clone(),
            namespace: self.namespace.clone(),
        }
    }

    /// Whether the label and annotation selectors (not the id) match `r`.
    fn matches_metadata(&self, r: &Resource) -> Result<bool, String> {
        for (selector, field) in [
            (&self.label_selector, "labels"),
            (&self.annotation_selector, "annotations"),
        ] {
            if selector.is_empty() {
                continue;
            }
            let parsed = LabelSelector::parse(selector)
                .map_err(|e| format!("selector {selector:?}: {e}"))?;
            let map = super::patch::string_map(r.value.get("metadata").and_then(|m| m.get(field)));
            if !parsed.matches(&map) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Where the value goes.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct TargetSelector {
    pub select: Option<Selector>,
    pub reject: Vec<Selector>,
    pub field_paths: Vec<String>,
    pub options: Option<FieldOptions>,
}

/// One replacement.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Replacement {
    pub source: Option<SourceSelector>,
    pub targets: Vec<TargetSelector>,
}

/// An entry of `replacements`: a replacement, or the `path` of a file holding one or a list.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Entry {
    pub path: Option<String>,
    pub source: Option<SourceSelector>,
    pub targets: Option<Vec<TargetSelector>>,
}

/// The path kustomize reads and writes when none is given.
const DEFAULT_FIELD_PATH: &str = "metadata.name";

/// Runs the `replacements` of `ctx`'s kustomization over `resources`.
pub(crate) fn run(source: &dyn Source, ctx: &Ctx, resources: &mut [Resource]) -> Result<(), Error> {
    for (index, entry) in ctx.k.replacements.iter().enumerate() {
        let line = super::locate_item(&ctx.text, "replacements", index);
        let at = |message: String| Error::Invalid {
            file: ctx.file.clone(),
            line,
            message: format!("replacements[{index}]: {message}"),
        };
        let list = match &entry.path {
            Some(path) => {
                if entry.source.is_some() || entry.targets.is_some() {
                    return Err(at("cannot specify both path and inline replacement".into()));
                }
                load(source, ctx, path)?
            }
            None => vec![Replacement {
                source: entry.source.clone(),
                targets: entry.targets.clone().unwrap_or_default(),
            }],
        };
        for replacement in &list {
            apply(resources, replacement).map_err(&at)?;
        }
    }
    Ok(())
}

/// The replacements of a `path:` file: one replacement or a list of them.
fn load(source: &dyn Source, ctx: &Ctx, path: &str) -> Result<Vec<Replacement>, Error> {
    let (file, text) = ctx.read(source, "replacements", path)?;
    let value = yaml::parse_value(&file, &text, Dialect::Kustomize)?;
    let invalid = |message: String| Error::Invalid {
        file: file.clone(),
        line: 1,
        message,
    };
    match value {
        Value::Array(_) => serde_json::from_value(value).map_err(|e| invalid(e.to_string())),
        Value::Object(_) => serde_json::from_value(value)
            .map(|r| vec![r])
            .map_err(|e| invalid(e.to_string())),
        _ => Err(invalid(
            "a replacements file holds a replacement or a list of them".into(),
        )),
    }
}

fn apply(resources: &mut [Resource], replacement: &Replacement) -> Result<(), String> {
    let (Some(source), false) = (&replacement.source, replacement.targets.is_empty()) else {
        return Err("replacements must specify a source and at least one target".into());
    };
    let value = source_value(resources, source)?;
    for (t, target) in replacement.targets.iter().enumerate() {
        let Some(select) = &target.select else {
            return Err(format!(
                "targets[{t}]: target must specify resources to select"
            ));
        };
        let paths: Vec<String> = if target.field_paths.is_empty() {
            vec![DEFAULT_FIELD_PATH.to_string()]
        } else {
            target.field_paths.clone()
        };
        let parsed = paths
            .iter()
            .map(|p| fieldpath::parse_target(p).map_err(|e| format!("targets[{t}]: {p}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let select_id = select.id();
        let rejects: Vec<ResId> = target
            .reject
            .iter()
            .map(Selector::id)
            .filter(|id| !id.is_empty())
            .collect();
        let options = target.options.clone().unwrap_or_default();
        for r in resources.iter_mut() {
            if !selected(r, select, &target.reject)? {
                continue;
            }
            if rejects.iter().any(|id| id.selects(r)) || !select_id.selects(r) {
                continue;
            }
            for (path, parts) in paths.iter().zip(&parsed) {
                copy_to(r, &value, path, parts, &options)
                    .map_err(|e| format!("targets[{t}]: {}: {e}", r.id()))?;
            }
        }
    }
    Ok(())
}

/// Whether the label and annotation selectors of `select` match and none of `reject`'s do.
fn selected(r: &Resource, select: &Selector, reject: &[Selector]) -> Result<bool, String> {
    if !select.matches_metadata(r)? {
        return Ok(false);
    }
    for rej in reject {
        if rej.label_selector.is_empty() && rej.annotation_selector.is_empty() {
            continue;
        }
        if rej.matches_metadata(r)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The value the source selects, refined by its options.
fn source_value(resources: &[Resource], source: &SourceSelector) -> Result<Value, String> {
    let id = source.id();
    let mut found = resources.iter().filter(|r| id.selects(r));
    let (Some(r), None) = (found.next(), found.next()) else {
        let n = resources.iter().filter(|r| id.selects(r)).count();
        return Err(if n == 0 {
            format!("nothing selected by {}", describe(source))
        } else {
            format!("multiple matches for selector {}", describe(source))
        });
    };
    let path = if source.field_path.is_empty() {
        DEFAULT_FIELD_PATH
    } else {
        &source.field_path
    };
    let parts =
        fieldpath::parse_source(path).map_err(|e| format!("source fieldPath {path}: {e}"))?;
    let value = fieldpath::lookup(&r.value, &parts)
        .map_err(|e| format!("error looking up replacement source: {e}"))?;
    let value = match value {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) if m.is_empty() => None,
        Some(Value::Array(a)) if a.is_empty() => None,
        Some(v) => Some(v.clone()),
    };
    let Some(value) = value else {
        return Err(format!(
            "fieldPath `{path}` is missing for replacement source {id}"
        ));
    };
    let options = source.options.clone().unwrap_or_default();
    if options.delimiter.is_empty() {
        return Ok(value);
    }
    let Some(text) = fieldpath::scalar_text(&value) else {
        return Err("delimiter option can only be used with scalar nodes".into());
    };
    let pieces: Vec<&str> = text.split(options.delimiter.as_str()).collect();
    let piece = usize::try_from(options.index)
        .ok()
        .and_then(|i| pieces.get(i))
        .ok_or_else(|| {
            format!(
                "options.index {} is out of bounds for value {text}",
                options.index
            )
        })?;
    Ok(with_text(&value, piece))
}

/// The source selector as kustomize prints it in errors.
fn describe(source: &SourceSelector) -> String {
    let mut out = source.id().to_string();
    if !source.field_path.is_empty() {
        out.push(':');
        out.push_str(&source.field_path);
    }
    if let Some(o) = &source.options
        && (!o.delimiter.is_empty() || o.create)
    {
        out.push_str(&format!(
            ":{}({}), create={}",
            o.delimiter, o.index, o.create
        ));
    }
    out
}

/// A scalar of the same type as `like` (a string stays a string) holding `text`.
fn with_text(like: &Value, text: &str) -> Value {
    if like.is_string() {
        Value::String(text.to_string())
    } else {
        resolve(text)
    }
}

/// What `text` means as a plain YAML scalar.
fn resolve(text: &str) -> Value {
    match yaml::parse_value("", text, Dialect::Kustomize) {
        Ok(v @ (Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_))) => v,
        _ => Value::String(text.to_string()),
    }
}

fn copy_to(
    r: &mut Resource,
    value: &Value,
    path: &str,
    parts: &[Part],
    options: &FieldOptions,
) -> Result<(), String> {
    let create = options.create.then(|| Create::like(value));
    let found = fieldpath::visit_targets(&mut r.value, parts, create, &mut |target| {
        set(target, value, options)
    })
    .map_err(|e| format!("{}: {e}", retrieval_error(path, create.is_some())))?;
    if found == 0 {
        return Err(retrieval_error(path, create.is_some()));
    }
    Ok(())
}

fn retrieval_error(path: &str, create: bool) -> String {
    if create {
        format!("unable to find or create field {path:?} in replacement target")
    } else {
        format!("unable to find field {path:?} in replacement target")
    }
}

/// Writes `value` into one target field (kustomize's `setFieldValue`): a scalar target keeps
/// its type and takes the value's text; anything else is replaced.
fn set(target: &mut Value, value: &Value, options: &FieldOptions) -> Result<(), String> {
    let is_scalar = |v: &Value| !v.is_object() && !v.is_array();
    let mut value = value.clone();
    if !options.delimiter.is_empty() {
        if !is_scalar(target) {
            return Err("delimiter option can only be used with scalar nodes".into());
        }
        let current = fieldpath::scalar_text(target).unwrap_or_default();
        let mut parts: Vec<String> = current
            .split(options.delimiter.as_str())
            .map(str::to_string)
            .collect();
        let piece = fieldpath::scalar_text(&value).unwrap_or_default();
        match usize::try_from(options.index) {
            Err(_) => parts.insert(0, piece),
            Ok(i) if i >= parts.len() => parts.push(piece),
            Ok(i) => parts[i] = piece,
        }
        value = with_text(&value, &parts.join(&options.delimiter));
    }
    if is_scalar(target) {
        let text = fieldpath::scalar_text(&value).unwrap_or_default();
        *target = if target.is_string() {
            Value::String(text)
        } else {
            resolve(&text)
        };
    } else {
        *target = value;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scalar_targets_keep_their_type() {
        let table: &[(Value, Value, &str, i64, Value)] = &[
            (json!("old"), json!(5), "", 0, json!("5")),
            (json!(3), json!("5"), "", 0, json!(5)),
            (Value::Null, json!("5"), "", 0, json!(5)),
            (Value::Null, json!("web"), "", 0, json!("web")),
            (json!({"a": 1}), json!("x"), "", 0, json!("x")),
            (json!("a-b-c"), json!("X"), "-", 1, json!("a-X-c")),
            (json!("a-b"), json!("X"), "-", -1, json!("X-a-b")),
            (json!("a-b"), json!("X"), "-", 9, json!("a-b-X")),
        ];
        for (target, value, delimiter, index, expected) in table {
            let mut t = target.clone();
            let options = FieldOptions {
                delimiter: delimiter.to_string(),
                index: *index,
                ..Default::default()
            };
            set(&mut t, value, &options).unwrap();
            assert_eq!(&t, expected, "{target} <- {value}");
        }
        assert!(
            set(
                &mut json!({}),
                &json!("x"),
                &FieldOptions {
                    delimiter: "-".into(),
                    ..Default::default()
                }
            )
            .is_err()
        );
    }

    #[test]
    fn selectors_print_like_kustomize() {
        let id = ResId {
            kind: "ConfigMap".into(),
            name: "cm".into(),
            ..Default::default()
        };
        assert_eq!(id.to_string(), "ConfigMap.[noVer].[noGrp]/cm.[noNs]");
    }
}
