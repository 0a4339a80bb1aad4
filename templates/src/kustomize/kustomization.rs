//! The `kustomization.yaml` file: its fields as kustomize v5 reads them.

use serde::Deserialize;
use serde_json::{Map, Value};

/// A map of strings (labels, annotations).
pub type Pairs = std::collections::BTreeMap<String, String>;

/// Turns [`Pairs`] into JSON strings.
pub fn pairs_to_map(pairs: &Pairs) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect()
}

/// The fields of a kustomization that gitplane understands.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Kustomization {
    pub kind: Option<String>,
    pub resources: Vec<String>,
    pub bases: Vec<String>,
    pub components: Vec<String>,
    pub namespace: Option<String>,
    pub name_prefix: Option<String>,
    pub name_suffix: Option<String>,
    pub common_labels: Pairs,
    pub labels: Vec<Label>,
    pub common_annotations: Pairs,
    pub images: Vec<Image>,
    pub replicas: Vec<Replica>,
    pub patches: Vec<Patch>,
    pub patches_strategic_merge: Vec<String>,
    pub patches_json6902: Vec<Json6902>,
    pub config_map_generator: Vec<Generator>,
    pub secret_generator: Vec<Generator>,
    pub generator_options: Option<GeneratorOptions>,
    pub sort_options: Option<SortOptions>,
    pub replacements: Vec<super::replacements::Entry>,
    pub vars: Vec<super::vars::Var>,
    pub build_metadata: Vec<String>,
    pub configurations: Vec<String>,
    pub crds: Vec<String>,
    pub openapi: Option<OpenApi>,
    pub helm_charts: Vec<super::helm::HelmChart>,
    pub helm_globals: Option<super::helm::HelmGlobals>,
    /// Everything else: reported as unknown or unsupported.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// Fields that change nothing in the output.
pub const IGNORED: &[&str] = &["apiVersion", "metadata"];

/// Fields that kustomize knows and gitplane deliberately does not implement.
pub const UNSUPPORTED: &[&str] = &[
    "helmChartInflationGenerator",
    "transformers",
    "generators",
    "validators",
    "imageTags",
];

/// An entry of `labels`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Label {
    pub pairs: Pairs,
    pub include_selectors: bool,
    pub include_templates: bool,
    pub fields: Vec<FieldSpecConfig>,
}

/// A field spec written in a kustomization (`labels[].fields`) or a configuration file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct FieldSpecConfig {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub path: String,
    pub create: bool,
}

impl FieldSpecConfig {
    pub fn to_spec(&self) -> super::fields::FieldSpec {
        super::fields::FieldSpec {
            group: self.group.clone(),
            version: self.version.clone(),
            kind: self.kind.clone(),
            path: self.path.clone(),
            create: self.create,
        }
    }
}

/// An entry of `images`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Image {
    pub name: String,
    pub new_name: String,
    pub new_tag: String,
    pub digest: String,
    pub tag_suffix: String,
}

/// An entry of `replicas`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Replica {
    pub name: String,
    pub count: i64,
}

/// A patch target selector.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Selector {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub name: String,
    pub namespace: String,
    pub label_selector: String,
    pub annotation_selector: String,
}

/// Patch options.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct PatchOptions {
    pub allow_name_change: bool,
    pub allow_kind_change: bool,
}

/// An entry of `patches`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Patch {
    pub path: Option<String>,
    pub patch: Option<String>,
    pub target: Option<Selector>,
    pub options: Option<PatchOptions>,
}

/// An entry of `patchesJson6902`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Json6902 {
    pub target: Selector,
    pub path: Option<String>,
    pub patch: Option<String>,
}

/// An entry of `configMapGenerator` or `secretGenerator`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Generator {
    pub name: String,
    pub namespace: Option<String>,
    pub behavior: Option<String>,
    pub literals: Vec<String>,
    pub files: Vec<String>,
    pub envs: Vec<String>,
    pub env: Option<String>,
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub options: Option<GeneratorOptions>,
}

/// `generatorOptions`, or a generator's own `options`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct GeneratorOptions {
    pub labels: Pairs,
    pub annotations: Pairs,
    pub disable_name_suffix_hash: Option<bool>,
    pub immutable: Option<bool>,
}

/// `sortOptions`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct SortOptions {
    pub order: String,
    pub legacy_sort_options: Option<LegacySortOptions>,
}

/// `sortOptions.legacySortOptions`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct LegacySortOptions {
    pub order_first: Vec<String>,
    pub order_last: Vec<String>,
}

/// `openapi`: a schema file giving custom kinds their strategic merge keys.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenApi {
    pub path: Option<String>,
    pub version: Option<String>,
}
