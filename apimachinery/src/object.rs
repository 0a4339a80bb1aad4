//! Dynamic objects: any Kubernetes object as JSON, with accessors for the metadata all kinds share.
//!
//! The API server stores and serves objects of every kind, including CRDs it only learns about at
//! run time, so its working type is [`serde_json::Value`]. [`ObjectExt`] gives that value the
//! metadata accessors of `metav1.ObjectMeta`; [`to_typed`] turns one into a k8s-openapi type where
//! a component wants the typed view.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// A Kubernetes object of any kind, as JSON.
pub type Object = Value;

/// Metadata accessors for a JSON object.
///
/// Getters return `None` (or an empty map) when a field is absent or has the wrong JSON type; the
/// API server validates shapes before it relies on them.
pub trait ObjectExt {
    /// `apiVersion`.
    fn api_version(&self) -> Option<&str>;
    /// `kind`.
    fn kind(&self) -> Option<&str>;
    /// `metadata`, if it is an object.
    fn metadata(&self) -> Option<&Map<String, Value>>;
    /// `metadata`, created as an empty object when absent or not an object.
    fn metadata_mut(&mut self) -> &mut Map<String, Value>;
    /// A string field of `metadata`.
    fn meta_str(&self, field: &str) -> Option<&str>;
    /// `metadata.name`.
    fn name(&self) -> Option<&str> {
        self.meta_str("name")
    }
    /// `metadata.namespace`.
    fn namespace(&self) -> Option<&str> {
        self.meta_str("namespace")
    }
    /// `metadata.resourceVersion`.
    fn resource_version(&self) -> Option<&str> {
        self.meta_str("resourceVersion")
    }
    /// `metadata.uid`.
    fn uid(&self) -> Option<&str> {
        self.meta_str("uid")
    }
    /// A string-to-string map of `metadata` (`labels`, `annotations`); non-string values are skipped.
    fn meta_map(&self, field: &str) -> BTreeMap<String, String>;
    /// `metadata.labels`.
    fn labels(&self) -> BTreeMap<String, String> {
        self.meta_map("labels")
    }
    /// `metadata.annotations`.
    fn annotations(&self) -> BTreeMap<String, String> {
        self.meta_map("annotations")
    }
    /// `metadata.finalizers`.
    fn finalizers(&self) -> Vec<String>;
    /// Sets a field of `metadata`.
    fn set_meta(&mut self, field: &str, value: Value) {
        self.metadata_mut().insert(field.to_string(), value);
    }
    /// The value at a dotted path such as `spec.nodeName` or `metadata.name`.
    fn path(&self, dotted: &str) -> Option<&Value>;
}

impl ObjectExt for Value {
    fn api_version(&self) -> Option<&str> {
        self.get("apiVersion")?.as_str()
    }

    fn kind(&self) -> Option<&str> {
        self.get("kind")?.as_str()
    }

    fn metadata(&self) -> Option<&Map<String, Value>> {
        self.get("metadata")?.as_object()
    }

    fn metadata_mut(&mut self) -> &mut Map<String, Value> {
        if !self.is_object() {
            *self = Value::Object(Map::new());
        }
        let Value::Object(root) = self else {
            unreachable!("made an object above")
        };
        let meta = root
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if !meta.is_object() {
            *meta = Value::Object(Map::new());
        }
        match meta {
            Value::Object(m) => m,
            _ => unreachable!("made an object above"),
        }
    }

    fn meta_str(&self, field: &str) -> Option<&str> {
        self.metadata()?.get(field)?.as_str()
    }

    fn meta_map(&self, field: &str) -> BTreeMap<String, String> {
        self.metadata()
            .and_then(|m| m.get(field))
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn finalizers(&self) -> Vec<String> {
        self.metadata()
            .and_then(|m| m.get("finalizers"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn path(&self, dotted: &str) -> Option<&Value> {
        dotted.split('.').try_fold(self, |v, part| v.get(part))
    }
}

/// Whether two maps are equal but for the keys `skip` (compared without copying either).
pub fn equal_except(a: &Map<String, Value>, b: &Map<String, Value>, skip: &[&str]) -> bool {
    let kept = |m: &Map<String, Value>| m.keys().filter(|k| !skip.contains(&k.as_str())).count();
    kept(a) == kept(b)
        && a.iter()
            .filter(|(k, _)| !skip.contains(&k.as_str()))
            .all(|(k, v)| b.get(k) == Some(v))
}

/// Converts a dynamic object into a k8s-openapi type.
pub fn to_typed<K: DeserializeOwned>(object: &Value) -> Result<K, serde_json::Error> {
    K::deserialize(object)
}

/// The name of the newest of `objects` annotated `annotation: "true"` (ties broken by name):
/// how Kubernetes' admission picks the default StorageClass and IngressClass.
pub fn newest_annotated(objects: &[Value], annotation: &str) -> Option<String> {
    objects
        .iter()
        .filter(|c| {
            c.pointer("/metadata/annotations")
                .and_then(|a| a.get(annotation))
                .and_then(Value::as_str)
                == Some("true")
        })
        .filter_map(|c| {
            let name = c.pointer("/metadata/name")?.as_str()?;
            let created = c
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .unwrap_or("");
            Some((created, name))
        })
        .max_by(|a, b| a.0.cmp(b.0).then_with(|| b.1.cmp(a.1)))
        .map(|(_, name)| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accessors_read_metadata_and_tolerate_wrong_types() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "a", "namespace": "ns", "labels": {"app": "web", "n": 1},
                         "finalizers": ["x"]},
            "spec": {"nodeName": "n1"}});
        assert_eq!(pod.name(), Some("a"));
        assert_eq!(pod.namespace(), Some("ns"));
        assert_eq!(pod.labels().len(), 1);
        assert_eq!(pod.finalizers(), vec!["x".to_string()]);
        assert_eq!(pod.path("spec.nodeName"), Some(&json!("n1")));
        let mut odd = json!({"metadata": 3});
        assert_eq!(odd.name(), None);
        odd.set_meta("name", json!("b"));
        assert_eq!(odd.name(), Some("b"));
    }

    #[test]
    fn typed_view_through_k8s_openapi() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c"}, "data": {"k": "v"}});
        let typed: k8s_openapi::api::core::v1::ConfigMap = to_typed(&cm).unwrap();
        assert_eq!(typed.data.unwrap()["k"], "v");
    }
}
