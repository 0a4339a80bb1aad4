//! Field sets: which fields of an object a manager owns, in Kubernetes' `fieldsV1` encoding.
//!
//! A field set is a tree of path elements. Each node records which of its children are
//! *members* (owned themselves) and which lead to owned fields further down. The `fieldsV1`
//! encoding is a JSON object per node: `f:<name>` for a field, `k:{"name":"x"}` for the element of
//! an associative list with those key fields, `v:<json>` for the element of a set, `i:<n>` for a
//! list index, `{}` for a member without children, and `.` inside a child that is both a member
//! and a parent.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde_json::{Map, Value};

/// Why a `fieldsV1` document could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FieldSetError {
    /// A node of the document is not a JSON object.
    #[error("fieldsV1 must be a JSON object of objects")]
    NotAnObject,
    /// A key is not `f:`, `k:`, `v:`, `i:` or `.`.
    #[error("unknown fieldsV1 key {0:?}")]
    UnknownKey(String),
    /// The JSON after `k:` or `v:` does not parse, or `i:` is not a number.
    #[error("invalid fieldsV1 key {0:?}")]
    InvalidKey(String),
}

/// One step of a path into an object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A field of a map (`f:name`).
    Field(String),
    /// The element of an associative list whose key fields have these values: their canonical
    /// JSON object, fields sorted (`k:{"name":"x"}`).
    Key(String),
    /// The element of a set with this value, as canonical JSON (`v:"a"`).
    Value(String),
    /// A list index (`i:0`), for lists neither atomic nor keyed.
    Index(usize),
}

/// A path: the steps from the object's root.
pub type Path = [PathElement];

/// The canonical JSON of a value: object fields sorted, no spaces.
pub fn canonical_json(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&m[k])))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

impl PathElement {
    /// The `fieldsV1` key of this element.
    pub fn encode(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(key) => format!("k:{key}"),
            PathElement::Value(value) => format!("v:{value}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Reads a `fieldsV1` key (not `.`).
    pub fn decode(key: &str) -> Result<PathElement, FieldSetError> {
        let invalid = || FieldSetError::InvalidKey(key.to_string());
        let json = |text: &str| {
            serde_json::from_str::<Value>(text)
                .map(|v| canonical_json(&v))
                .map_err(|_| invalid())
        };
        match key.split_at_checked(2) {
            Some(("f:", name)) => Ok(PathElement::Field(name.to_string())),
            Some(("k:", text)) => Ok(PathElement::Key(json(text)?)),
            Some(("v:", text)) => Ok(PathElement::Value(json(text)?)),
            Some(("i:", n)) => n.parse().map(PathElement::Index).map_err(|_| invalid()),
            _ => Err(FieldSetError::UnknownKey(key.to_string())),
        }
    }

    /// How Kubernetes prints this step in a conflict: `.name`, `[name="x"]`, `[="a"]`, `[0]`.
    fn display(&self, out: &mut String) {
        match self {
            PathElement::Field(name) => {
                let _ = write!(out, ".{name}");
            }
            PathElement::Key(key) => {
                let fields: Map<String, Value> = serde_json::from_str(key).unwrap_or_default();
                let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let _ = write!(out, "[{}]", parts.join(","));
            }
            PathElement::Value(value) => {
                let _ = write!(out, "[={value}]");
            }
            PathElement::Index(i) => {
                let _ = write!(out, "[{i}]");
            }
        }
    }
}

/// A path as Kubernetes prints it in a conflict (`.spec.containers[name="web"].image`).
pub fn path_string(path: &Path) -> String {
    let mut out = String::new();
    for element in path {
        element.display(&mut out);
    }
    out
}

/// A set of paths into an object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    /// Children owned themselves.
    members: BTreeSet<PathElement>,
    /// Children with owned paths below them (never empty sets).
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    /// The empty set.
    pub fn new() -> FieldSet {
        FieldSet::default()
    }

    /// Whether the set has no path.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// Adds a path (the empty path, the object itself, is not recorded).
    pub fn insert(&mut self, path: &Path) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    /// Whether `path` is a member.
    pub fn contains(&self, path: &Path) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.contains(rest)),
        }
    }

    /// Whether `path` or a path below it is a member.
    pub fn covers(&self, path: &Path) -> bool {
        match path {
            [] => !self.is_empty(),
            [last] => self.members.contains(last) || self.children.contains_key(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.covers(rest)),
        }
    }

    /// The paths in either set.
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (pe, child) in &other.children {
            let merged = match out.children.get(pe) {
                Some(mine) => mine.union(child),
                None => child.clone(),
            };
            out.children.insert(pe.clone(), merged);
        }
        out
    }

    /// The paths of `self` that are not in `other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(pe, child)| {
                let rest = match other.children.get(pe) {
                    Some(theirs) => child.difference(theirs),
                    None => child.clone(),
                };
                (!rest.is_empty()).then(|| (pe.clone(), rest))
            })
            .collect();
        FieldSet { members, children }
    }

    /// The paths in both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.intersection(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(pe, child)| {
                let both = child.intersection(other.children.get(pe)?);
                (!both.is_empty()).then(|| (pe.clone(), both))
            })
            .collect();
        FieldSet { members, children }
    }

    /// The set without the paths below `prefix` (and `prefix` itself).
    pub fn without(&self, prefix: &Path) -> FieldSet {
        self.difference(&self.only(prefix))
    }

    /// The paths of the set at or below `prefix`.
    pub fn only(&self, prefix: &Path) -> FieldSet {
        match prefix {
            [] => self.clone(),
            [first, rest @ ..] => {
                let mut out = FieldSet::new();
                if rest.is_empty() && self.members.contains(first) {
                    out.members.insert(first.clone());
                }
                if let Some(child) = self.children.get(first) {
                    let inner = child.only(rest);
                    if !inner.is_empty() {
                        out.children.insert(first.clone(), inner);
                    }
                }
                out
            }
        }
    }

    /// Every member path, parents before their children.
    pub fn paths(&self) -> Vec<Vec<PathElement>> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Vec<PathElement>>) {
        let mut keys: BTreeSet<&PathElement> = self.members.iter().collect();
        keys.extend(self.children.keys());
        for pe in keys {
            prefix.push(pe.clone());
            if self.members.contains(pe) {
                out.push(prefix.clone());
            }
            if let Some(child) = self.children.get(pe) {
                child.collect(prefix, out);
            }
            prefix.pop();
        }
    }

    /// The `fieldsV1` document of the set.
    pub fn to_fields_v1(&self) -> Value {
        let mut out = Map::new();
        let mut keys: BTreeSet<&PathElement> = self.members.iter().collect();
        keys.extend(self.children.keys());
        for pe in keys {
            let value = match self.children.get(pe) {
                Some(child) => {
                    let mut inner = Map::new();
                    if self.members.contains(pe) {
                        inner.insert(".".into(), Value::Object(Map::new()));
                    }
                    if let Value::Object(m) = child.to_fields_v1() {
                        inner.extend(m);
                    }
                    Value::Object(inner)
                }
                None => Value::Object(Map::new()),
            };
            out.insert(pe.encode(), value);
        }
        Value::Object(out)
    }

    /// Reads a `fieldsV1` document.
    pub fn from_fields_v1(doc: &Value) -> Result<FieldSet, FieldSetError> {
        let Value::Object(map) = doc else {
            return Err(FieldSetError::NotAnObject);
        };
        let mut set = FieldSet::new();
        for (key, value) in map {
            if key == "." {
                continue;
            }
            let pe = PathElement::decode(key)?;
            let Value::Object(inner) = value else {
                return Err(FieldSetError::NotAnObject);
            };
            if inner.is_empty() || inner.contains_key(".") {
                set.members.insert(pe.clone());
            }
            let child = FieldSet::from_fields_v1(value)?;
            if !child.is_empty() {
                set.children.insert(pe, child);
            }
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(name: &str) -> PathElement {
        PathElement::Field(name.into())
    }

    fn check(doc: Value, paths: &[&str]) {
        let set = FieldSet::from_fields_v1(&doc).unwrap();
        let printed: Vec<String> = set.paths().iter().map(|p| path_string(p)).collect();
        assert_eq!(printed, paths);
        assert_eq!(set.to_fields_v1(), doc, "round trip");
    }

    #[test]
    fn fields_v1_documents_read_print_and_round_trip() {
        check(json!({"f:spec": {"f:replicas": {}}}), &[".spec.replicas"]);
        check(
            json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}),
            &[".metadata.labels", ".metadata.labels.app"],
        );
        check(
            json!({"f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:image": {}}}}}),
            &[
                ".spec.containers[name=\"web\"]",
                ".spec.containers[name=\"web\"].image",
            ],
        );
        check(
            json!({"f:metadata": {"f:finalizers": {"v:\"a/b\"": {}}}}),
            &[".metadata.finalizers[=\"a/b\"]"],
        );
        check(json!({"f:items": {"i:3": {}}}), &[".items[3]"]);
    }

    #[test]
    fn bad_fields_v1_documents_are_refused() {
        assert_eq!(
            FieldSet::from_fields_v1(&json!({"x:y": {}})),
            Err(FieldSetError::UnknownKey("x:y".into()))
        );
        assert_eq!(
            FieldSet::from_fields_v1(&json!({"k:{bad": {}})),
            Err(FieldSetError::InvalidKey("k:{bad".into()))
        );
        assert_eq!(
            FieldSet::from_fields_v1(&json!({"f:a": 1})),
            Err(FieldSetError::NotAnObject)
        );
    }

    #[test]
    fn keys_are_canonical_whatever_their_field_order() {
        let a =
            FieldSet::from_fields_v1(&json!({"k:{\"port\":80,\"protocol\":\"TCP\"}": {}})).unwrap();
        let b = FieldSet::from_fields_v1(&json!({"k:{\"protocol\":\"TCP\", \"port\":80}": {}}))
            .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn set_algebra_keeps_members_and_drops_empty_children() {
        let mut a = FieldSet::new();
        a.insert(&[f("spec"), f("replicas")]);
        a.insert(&[f("spec"), f("paused")]);
        let mut b = FieldSet::new();
        b.insert(&[f("spec"), f("replicas")]);
        b.insert(&[f("metadata"), f("labels"), f("app")]);
        let paths =
            |s: &FieldSet| -> Vec<String> { s.paths().iter().map(|p| path_string(p)).collect() };
        assert_eq!(paths(&a.intersection(&b)), [".spec.replicas"]);
        assert_eq!(paths(&a.difference(&b)), [".spec.paused"]);
        assert_eq!(
            paths(&a.union(&b)),
            [".metadata.labels.app", ".spec.paused", ".spec.replicas"]
        );
        assert!(a.difference(&a).is_empty());
        assert!(b.covers(&[f("metadata"), f("labels")]));
        assert!(!b.contains(&[f("metadata"), f("labels")]));
        assert_eq!(paths(&b.without(&[f("metadata")])), [".spec.replicas"]);
        assert_eq!(paths(&b.only(&[f("metadata")])), [".metadata.labels.app"]);
    }
}
