//! `buildMetadata`: the annotations and label kustomize can add to what it prints — where each
//! object came from (`originAnnotations`), which transformers touched it
//! (`transformerAnnotations`) and `app.kubernetes.io/managed-by` (`managedByLabel`). Only the
//! top-level kustomization's list counts, and it applies to everything it includes.

use super::Resource;
use serde_json::{Map, Value};

const ORIGIN: &str = "config.kubernetes.io/origin";
const TRANSFORMATIONS: &str = "alpha.config.kubernetes.io/transformations";
const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// What kubectl 1.32's embedded kustomize (built without a release version) writes.
const MANAGED_BY_VALUE: &str = "kustomize-(devel)";

/// The options of the top-level `buildMetadata`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Options {
    pub origin: bool,
    pub transformers: bool,
    pub managed_by: bool,
}

impl Options {
    pub fn parse(list: &[String]) -> Result<Self, String> {
        let mut out = Options::default();
        for option in list {
            match option.as_str() {
                "originAnnotations" => out.origin = true,
                "transformerAnnotations" => out.transformers = true,
                "managedByLabel" => out.managed_by = true,
                other => {
                    return Err(format!(
                        "buildMetadata: unknown option {other:?} (known: originAnnotations, transformerAnnotations, managedByLabel)"
                    ));
                }
            }
        }
        Ok(out)
    }
}

/// The origin of an object read from `path` (relative to the top-level kustomization).
pub(crate) fn file_origin(path: &str) -> String {
    format!("path: {path}\n")
}

/// A `configuredIn`/`configuredBy` record of a built-in generator or transformer.
pub(crate) fn configured(configured_in: &str, kind: &str) -> String {
    format!("configuredIn: {configured_in}\nconfiguredBy:\n  apiVersion: builtin\n  kind: {kind}\n")
}

/// Records that the transformer `kind` configured in `configured_in` ran over `resources`.
pub(crate) fn note(resources: &mut [Resource], configured_in: Option<&str>, kind: &str) {
    let Some(configured_in) = configured_in else {
        return;
    };
    let record = configured(configured_in, kind);
    for r in resources {
        r.transformations.push(record.clone());
    }
}

/// Writes what the options ask for into the objects, once the build is over. As kustomize
/// rewrites every object's annotations when it drops its own build annotations, annotation
/// values that are not strings (a replacement can write a number) become strings.
pub(crate) fn finish(resources: &mut [Resource], options: Options) {
    for r in resources {
        if let Some(Value::Object(annotations)) = r
            .value
            .get_mut("metadata")
            .and_then(|m| m.get_mut("annotations"))
        {
            for v in annotations.values_mut() {
                if !v.is_string() {
                    *v = Value::String(super::fieldpath::scalar_text(v).unwrap_or_default());
                }
            }
        }
        let mut annotations = Vec::new();
        if options.origin
            && let Some(origin) = &r.build_origin
        {
            annotations.push((ORIGIN, origin.clone()));
        }
        if options.transformers && !r.transformations.is_empty() {
            let mut text = String::new();
            for record in &r.transformations {
                for (i, line) in record.lines().enumerate() {
                    text.push_str(if i == 0 { "- " } else { "  " });
                    text.push_str(line);
                    text.push('\n');
                }
            }
            annotations.push((TRANSFORMATIONS, text));
        }
        for (key, text) in annotations {
            if let Some(map) = meta_map(&mut r.value, "annotations") {
                map.insert(key.into(), Value::String(text));
            }
        }
        if options.managed_by
            && let Some(map) = meta_map(&mut r.value, "labels")
        {
            map.insert(MANAGED_BY.into(), Value::String(MANAGED_BY_VALUE.into()));
        }
    }
}

/// `metadata.<field>` of an object, created when missing (`None` if the object is no map).
fn meta_map<'v>(value: &'v mut Value, field: &str) -> Option<&'v mut Map<String, Value>> {
    let meta = value
        .as_object_mut()?
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    let map = meta
        .as_object_mut()?
        .entry(field)
        .or_insert_with(|| Value::Object(Map::new()));
    if !map.is_object() {
        *map = Value::Object(Map::new());
    }
    map.as_object_mut()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_and_refuse_unknown_names() {
        let o = Options::parse(&["originAnnotations".into(), "managedByLabel".into()]).unwrap();
        assert!(o.origin && o.managed_by && !o.transformers);
        assert!(Options::parse(&["origin".into()]).is_err());
    }
}
