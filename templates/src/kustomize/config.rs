//! `configurations`: transformer configuration files whose field specs teach the built-in
//! transformers about more fields (custom kinds' labels, name references, var references, …),
//! on top of kustomize's defaults; and `crds`, OpenAPI definitions of custom kinds that mark
//! such fields. A kustomization sees its own files and those of everything it includes, as in
//! kustomize.

use super::fields::{FieldSpec, NameReference};
use super::kustomization::FieldSpecConfig;
use super::{Ctx, Error};
use crate::source::Source;
use crate::yaml::{self, Dialect};
use serde::Deserialize;
use serde_json::{Map, Value};

/// A transformer configuration file (kustomize's `TransformerConfig`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct File {
    pub name_prefix: Vec<FieldSpecConfig>,
    pub name_suffix: Vec<FieldSpecConfig>,
    pub namespace: Vec<FieldSpecConfig>,
    pub common_labels: Vec<FieldSpecConfig>,
    pub labels: Vec<FieldSpecConfig>,
    pub template_labels: Vec<FieldSpecConfig>,
    pub common_annotations: Vec<FieldSpecConfig>,
    pub name_reference: Vec<NameReferenceConfig>,
    pub var_reference: Vec<FieldSpecConfig>,
    pub images: Vec<FieldSpecConfig>,
    pub replicas: Vec<FieldSpecConfig>,
}

/// A `nameReference` entry: a kind and the fields that hold names of its objects.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct NameReferenceConfig {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub field_specs: Vec<FieldSpecConfig>,
}

/// The field specs added to kustomize's defaults.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub name_prefix: Vec<FieldSpec>,
    pub name_suffix: Vec<FieldSpec>,
    pub common_labels: Vec<FieldSpec>,
    pub labels: Vec<FieldSpec>,
    pub template_labels: Vec<FieldSpec>,
    pub common_annotations: Vec<FieldSpec>,
    pub name_references: Vec<NameReference>,
    pub var_reference: Vec<FieldSpec>,
    pub images: Vec<FieldSpec>,
    pub replicas: Vec<FieldSpec>,
}

fn specs(list: &[FieldSpecConfig]) -> Vec<FieldSpec> {
    list.iter().map(FieldSpecConfig::to_spec).collect()
}

fn extend(into: &mut Vec<FieldSpec>, more: &[FieldSpec]) {
    for spec in more {
        if !into.contains(spec) {
            into.push(spec.clone());
        }
    }
}

impl Config {
    /// Adds another configuration (an included kustomization's, or a file's).
    pub fn merge(&mut self, other: &Config) {
        extend(&mut self.name_prefix, &other.name_prefix);
        extend(&mut self.name_suffix, &other.name_suffix);
        extend(&mut self.common_labels, &other.common_labels);
        extend(&mut self.labels, &other.labels);
        extend(&mut self.template_labels, &other.template_labels);
        extend(&mut self.common_annotations, &other.common_annotations);
        extend(&mut self.var_reference, &other.var_reference);
        extend(&mut self.images, &other.images);
        extend(&mut self.replicas, &other.replicas);
        for reference in &other.name_references {
            match self
                .name_references
                .iter_mut()
                .find(|r| r.group == reference.group && r.kind == reference.kind)
            {
                Some(mine) => extend(&mut mine.referrers, &reference.referrers),
                None => self.name_references.push(reference.clone()),
            }
        }
    }

    /// Reads the `configurations` files of `ctx`'s kustomization into this configuration.
    pub(crate) fn load(&mut self, source: &dyn Source, ctx: &Ctx) -> Result<(), Error> {
        for path in &ctx.k.configurations {
            let (file, text) = ctx.read(source, "configurations", path)?;
            let value = yaml::parse_value(&file, &text, Dialect::Kustomize)?;
            let value = if value.is_null() {
                Value::Object(Default::default())
            } else {
                value
            };
            let parsed: File = serde_json::from_value(value).map_err(|e| Error::Invalid {
                file: file.clone(),
                line: 1,
                message: e.to_string(),
            })?;
            if !parsed.namespace.is_empty() {
                return Err(Error::Invalid {
                    file: file.clone(),
                    line: yaml_line(&text, "namespace"),
                    message: "namespace: field specs for the namespace transformer are not supported by gitplane's kustomize renderer".into(),
                });
            }
            self.merge(&Config {
                name_prefix: specs(&parsed.name_prefix),
                name_suffix: specs(&parsed.name_suffix),
                common_labels: specs(&parsed.common_labels),
                labels: specs(&parsed.labels),
                template_labels: specs(&parsed.template_labels),
                common_annotations: specs(&parsed.common_annotations),
                name_references: parsed
                    .name_reference
                    .iter()
                    .map(|r| NameReference {
                        group: r.group.clone(),
                        kind: r.kind.clone(),
                        referrers: specs(&r.field_specs),
                    })
                    .collect(),
                var_reference: specs(&parsed.var_reference),
                images: specs(&parsed.images),
                replicas: specs(&parsed.replicas),
            });
        }
        Ok(())
    }
}

impl Config {
    /// Reads the `crds` files of `ctx`'s kustomization: OpenAPI definitions (JSON or YAML, name
    /// to `{Schema: …}`) whose `x-kubernetes-*` extensions mark annotation, label-selector,
    /// identity and object-reference fields of custom kinds, as kustomize's
    /// `LoadConfigFromCRDs` reads them.
    pub(crate) fn load_crds(&mut self, source: &dyn Source, ctx: &Ctx) -> Result<(), Error> {
        for path in &ctx.k.crds {
            let (file, text) = ctx.read(source, "crds", path)?;
            let value = yaml::parse_value(&file, &text, Dialect::Kustomize)?;
            let Value::Object(definitions) = value else {
                return Err(Error::Invalid {
                    file,
                    line: 1,
                    message: "unable to parse open API definitions: expected a map of type names to definitions".into(),
                });
            };
            let mut found = Config::default();
            let mut names: Vec<&String> = definitions.keys().collect();
            names.sort();
            for name in names {
                let properties = properties(&definitions, name);
                if !["kind", "apiVersion", "metadata"]
                    .iter()
                    .all(|p| properties.is_some_and(|props| props.contains_key(*p)))
                {
                    continue;
                }
                let kind = name.rsplit('.').next().unwrap_or(name);
                crd_fields(&mut found, kind, &definitions, name, &mut Vec::new(), 0);
            }
            self.merge(&found);
        }
        Ok(())
    }
}

/// The `Schema.properties` of the definition `name`.
fn properties<'d>(
    definitions: &'d Map<String, Value>,
    name: &str,
) -> Option<&'d Map<String, Value>> {
    definitions
        .get(name)?
        .get("Schema")?
        .get("properties")?
        .as_object()
}

/// An `x-kubernetes-*` extension of a property, when it is a string (names compare without
/// case, as kube-openapi's do).
fn extension<'p>(property: &'p Value, key: &str) -> Option<&'p str> {
    property
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .and_then(|(_, v)| v.as_str())
}

fn crd_fields(
    config: &mut Config,
    kind: &str,
    definitions: &Map<String, Value>,
    name: &str,
    path: &mut Vec<String>,
    depth: usize,
) {
    // Definitions may refer to each other in a loop; real schemas are far shallower.
    if depth > 32 {
        return;
    }
    let Some(properties) = properties(definitions, name) else {
        return;
    };
    let spec = |path: &[String]| FieldSpec {
        group: String::new(),
        version: String::new(),
        kind: kind.to_string(),
        path: path.join("/"),
        create: false,
    };
    for (prop, property) in properties {
        path.push(prop.clone());
        if extension(property, "x-kubernetes-annotation").is_some() {
            extend(&mut config.common_annotations, &[spec(path)]);
        }
        if extension(property, "x-kubernetes-label-selector").is_some() {
            extend(&mut config.common_labels, &[spec(path)]);
        }
        if extension(property, "x-kubernetes-identity").is_some() {
            extend(&mut config.name_prefix, &[spec(path)]);
        }
        if extension(property, "x-kubernetes-object-ref-api-version").is_some()
            && let Some(target) = extension(property, "x-kubernetes-object-ref-kind")
        {
            let key = extension(property, "x-kubernetes-object-ref-name-key").unwrap_or("name");
            let mut referrer = path.clone();
            referrer.push(key.to_string());
            config.merge(&Config {
                name_references: vec![NameReference {
                    group: String::new(),
                    kind: target.to_string(),
                    referrers: vec![spec(&referrer)],
                }],
                ..Config::default()
            });
        }
        if let Some(reference) = property.get("$ref").and_then(Value::as_str) {
            let reference = reference.to_string();
            crd_fields(config, kind, definitions, &reference, path, depth + 1);
        }
        path.pop();
    }
}

fn yaml_line(text: &str, key: &str) -> usize {
    super::locate(text, key, None)
}
