//! `openapi`: an OpenAPI v2 schema file (`definitions` with `x-kubernetes-group-version-kind`)
//! whose strategic merge keys (`x-kubernetes-patch-merge-key` with the `merge` patch
//! strategy) patches use, as kustomize uses them: the file replaces the built-in schema, so a
//! kind it does not describe has no merge keys.
//!
//! The merge itself stays apimachinery's: before patching, every keyed list (in the object and
//! in the patch) becomes a map from key to element, which merges exactly like a keyed list
//! (elements matched by key, the object's order first, new elements after in the patch's order,
//! `$patch: delete` elements removed); afterwards the maps become lists again.

use apimachinery::registry::GroupVersionKind;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The shape of an object as far as merging is concerned.
#[derive(Clone, Debug, Default)]
struct Shape {
    /// Fields with a shape of their own.
    fields: BTreeMap<String, Field>,
}

#[derive(Clone, Debug)]
enum Field {
    Object(Shape),
    /// A list merged by `key`, whose elements have `item`'s shape.
    Keyed {
        key: String,
        item: Shape,
    },
}

/// The custom kinds a schema file describes.
#[derive(Debug, Default)]
pub struct Schema {
    kinds: Vec<(String, String, Shape)>,
}

/// Nested definitions deeper than this are not followed (schemas may refer to themselves).
const MAX_DEPTH: usize = 24;

impl Schema {
    /// Reads a schema document (JSON or YAML, already parsed).
    pub fn parse(document: &Value) -> Result<Self, String> {
        let definitions = document
            .get("definitions")
            .and_then(Value::as_object)
            .ok_or("the schema has no definitions map")?;
        let mut kinds = Vec::new();
        for definition in definitions.values() {
            let Some(gvks) = definition
                .get("x-kubernetes-group-version-kind")
                .and_then(Value::as_array)
            else {
                continue;
            };
            let shape = shape_of(definitions, definition, 0);
            for gvk in gvks {
                let text = |k: &str| gvk.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                kinds.push((text("group"), text("kind"), shape.clone()));
            }
        }
        Ok(Schema { kinds })
    }

    fn shape(&self, gvk: &GroupVersionKind) -> Option<&Shape> {
        self.kinds
            .iter()
            .find(|(g, k, _)| *g == gvk.group && *k == gvk.kind)
            .map(|(_, _, s)| s)
    }

    /// Applies a strategic merge patch with this schema's merge keys. Like kustomize, whose
    /// schema file replaces its built-in one, a kind the file does not describe (built-in
    /// kinds included) has no merge keys: its lists are replaced.
    pub fn apply(
        &self,
        original: &Value,
        patch: &Value,
        gvk: &GroupVersionKind,
    ) -> Result<Value, apimachinery::patch::PatchError> {
        // A kind apimachinery has no patch metadata for, so that only the shapes here count.
        let plain = GroupVersionKind::from_api_version("", "");
        let Some(shape) = self.shape(gvk) else {
            return apimachinery::patch::strategic::apply(original, patch, &plain);
        };
        let original = to_maps(original.clone(), shape, false);
        let patch = to_maps(patch.clone(), shape, true);
        apimachinery::patch::strategic::apply(&original, &patch, &plain)
            .map(|merged| to_lists(merged, shape))
    }
}

fn resolve<'d>(definitions: &'d Map<String, Value>, node: &'d Value) -> &'d Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(r) => definitions
            .get(r.trim_start_matches("#/definitions/"))
            .unwrap_or(node),
        None => node,
    }
}

fn shape_of(definitions: &Map<String, Value>, node: &Value, depth: usize) -> Shape {
    let mut shape = Shape::default();
    if depth > MAX_DEPTH {
        return shape;
    }
    let node = resolve(definitions, node);
    let Some(properties) = node.get("properties").and_then(Value::as_object) else {
        return shape;
    };
    for (name, property) in properties {
        let property = resolve(definitions, property);
        let merge_key = property
            .get("x-kubernetes-patch-merge-key")
            .and_then(Value::as_str);
        let merges = property
            .get("x-kubernetes-patch-strategy")
            .and_then(Value::as_str)
            .is_some_and(|s| s.split(',').any(|p| p == "merge"));
        if let (Some(key), true, Some(items)) = (merge_key, merges, property.get("items")) {
            let item = shape_of(definitions, items, depth + 1);
            shape.fields.insert(
                name.clone(),
                Field::Keyed {
                    key: key.to_string(),
                    item,
                },
            );
            continue;
        }
        let nested = match property.get("items") {
            Some(items) if property.get("type").and_then(Value::as_str) == Some("array") => {
                shape_of(definitions, items, depth + 1)
            }
            _ => shape_of(definitions, property, depth + 1),
        };
        if !nested.fields.is_empty() {
            shape.fields.insert(name.clone(), Field::Object(nested));
        }
    }
    shape
}

/// The text a merge key's value is known by.
fn key_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) => Some(value.to_string()),
        _ => None,
    }
}

/// Turns the keyed lists below `value` into maps; in a patch, `$patch: delete` elements
/// become `null`s. A list with an element the key cannot name, or with a `$patch: replace`
/// directive, stays a list (and so replaces the object's list).
fn to_maps(value: Value, shape: &Shape, patch: bool) -> Value {
    let Value::Object(map) = value else {
        return match value {
            Value::Array(items) => Value::Array(
                items
                    .into_iter()
                    .map(|i| to_maps(i, shape, patch))
                    .collect(),
            ),
            other => other,
        };
    };
    let mut out = Map::new();
    for (name, child) in map {
        let converted = match (shape.fields.get(&name), child) {
            (Some(Field::Object(inner)), child) => to_maps(child, inner, patch),
            (Some(Field::Keyed { key, item }), Value::Array(items)) => {
                keyed_to_map(items, key, item, patch)
            }
            (_, child) => child,
        };
        out.insert(name, converted);
    }
    Value::Object(out)
}

fn keyed_to_map(items: Vec<Value>, key: &str, item: &Shape, patch: bool) -> Value {
    let mut entries = Map::new();
    for element in &items {
        let directive = element.get("$patch").and_then(Value::as_str);
        let id = element.get(key).and_then(key_text);
        match (id, directive) {
            (Some(id), None) if !entries.contains_key(&id) => {
                entries.insert(id, to_maps(element.clone(), item, patch));
            }
            (Some(id), Some("delete")) if patch => {
                entries.insert(id, Value::Null);
            }
            _ => {
                return Value::Array(items.into_iter().map(|i| to_maps(i, item, patch)).collect());
            }
        }
    }
    Value::Object(entries)
}

/// Turns the maps [`to_maps`] made back into lists.
fn to_lists(value: Value, shape: &Shape) -> Value {
    let Value::Object(map) = value else {
        return match value {
            Value::Array(items) => {
                Value::Array(items.into_iter().map(|i| to_lists(i, shape)).collect())
            }
            other => other,
        };
    };
    let mut out = Map::new();
    for (name, child) in map {
        let converted = match (shape.fields.get(&name), child) {
            (Some(Field::Object(inner)), child) => to_lists(child, inner),
            (Some(Field::Keyed { item, .. }), Value::Object(entries)) => Value::Array(
                entries
                    .into_iter()
                    .map(|(_, element)| to_lists(element, item))
                    .collect(),
            ),
            (Some(Field::Keyed { item, .. }), Value::Array(items)) => {
                Value::Array(items.into_iter().map(|i| to_lists(i, item)).collect())
            }
            (_, child) => child,
        };
        out.insert(name, converted);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Schema {
        Schema::parse(&json!({"definitions": {
            "io.example.v1.Pool": {
                "x-kubernetes-group-version-kind": [{"group": "example.io", "kind": "Pool", "version": "v1"}],
                "properties": {"spec": {"$ref": "#/definitions/io.example.v1.PoolSpec"}}
            },
            "io.example.v1.PoolSpec": {
                "properties": {"members": {
                    "type": "array",
                    "x-kubernetes-patch-merge-key": "name",
                    "x-kubernetes-patch-strategy": "merge",
                    "items": {"properties": {"ports": {
                        "type": "array",
                        "x-kubernetes-patch-merge-key": "port",
                        "x-kubernetes-patch-strategy": "merge",
                        "items": {"type": "object"}
                    }}}
                }}
            }
        }}))
        .unwrap()
    }

    #[test]
    fn keyed_lists_merge_by_key() {
        let gvk = GroupVersionKind::from_api_version("example.io/v1", "Pool");
        let original = json!({"spec": {"members": [
            {"name": "a", "weight": 1, "ports": [{"port": 80}, {"port": 443}]},
            {"name": "b", "weight": 1},
            {"name": "c"}
        ]}});
        let table: &[(Value, Value)] = &[
            (
                json!({"spec": {"members": [{"name": "b", "weight": 5}, {"name": "d"}]}}),
                json!({"spec": {"members": [
                    {"name": "a", "weight": 1, "ports": [{"port": 80}, {"port": 443}]},
                    {"name": "b", "weight": 5},
                    {"name": "c"},
                    {"name": "d"}
                ]}}),
            ),
            (
                json!({"spec": {"members": [{"name": "c", "$patch": "delete"}, {"name": "a", "ports": [{"port": 80, "tls": true}]}]}}),
                json!({"spec": {"members": [
                    {"name": "a", "weight": 1, "ports": [{"port": 80, "tls": true}, {"port": 443}]},
                    {"name": "b", "weight": 1}
                ]}}),
            ),
        ];
        for (patch, expected) in table {
            let merged = schema().apply(&original, patch, &gvk).unwrap();
            assert_eq!(&merged, expected, "{patch}");
        }
        let other = GroupVersionKind::from_api_version("example.io/v1", "Other");
        let replaced = schema()
            .apply(
                &original,
                &json!({"spec": {"members": [{"name": "z"}]}}),
                &other,
            )
            .unwrap();
        assert_eq!(replaced, json!({"spec": {"members": [{"name": "z"}]}}));
    }
}
