//! `configurations`: transformer configuration files whose field specs teach the built-in
//! transformers about more fields (custom kinds' labels, name references, var references, …),
//! on top of kustomize's defaults. A kustomization sees its own files and those of everything
//! it includes, as in kustomize.

use super::fields::{FieldSpec, NameReference};
use super::kustomization::FieldSpecConfig;
use super::{Ctx, Error};
use crate::source::Source;
use crate::yaml::{self, Dialect};
use serde::Deserialize;

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
                serde_json::Value::Object(Default::default())
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

fn yaml_line(text: &str, key: &str) -> usize {
    super::locate(text, key, None)
}
