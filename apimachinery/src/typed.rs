//! Checking built-in objects against their Go-derived types (k8s-openapi): a value of the wrong
//! type is refused, as Kubernetes refuses it on decode, and fields the type does not have are
//! found for `fieldValidation=Strict`.
//!
//! The check decodes the object into its k8s-openapi type and encodes it again: a field of the
//! input that does not come back is unknown.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::registry::GroupVersionKind;

/// What checking an object against its type found.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TypedError {
    /// A value has the wrong type (or a required field is malformed).
    #[error("{kind} in version \"{version}\" cannot be handled as a {kind}: {message}")]
    Decode {
        /// Kind.
        kind: String,
        /// Version.
        version: String,
        /// What the decoder said.
        message: String,
    },
}

/// One step of a path into an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A field of an object.
    Field(String),
    /// An element of a list.
    Index(usize),
}

/// A field a type does not have, where it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unknown(pub Vec<Step>);

impl std::fmt::Display for Unknown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, step) in self.0.iter().enumerate() {
            match step {
                Step::Field(name) if i == 0 => write!(f, "{name}")?,
                Step::Field(name) => write!(f, ".{name}")?,
                Step::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

fn unknown(input: &Value, output: &Value, path: &mut Vec<Step>, out: &mut Vec<Unknown>) {
    match (input, output) {
        (Value::Object(i), Value::Object(o)) => {
            for (k, v) in i {
                if v.is_null() {
                    continue;
                }
                path.push(Step::Field(k.clone()));
                match o.get(k) {
                    Some(ov) => unknown(v, ov, path, out),
                    None => out.push(Unknown(path.clone())),
                }
                path.pop();
            }
        }
        (Value::Array(i), Value::Array(o)) => {
            for (n, (iv, ov)) in i.iter().zip(o).enumerate() {
                path.push(Step::Index(n));
                unknown(iv, ov, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

fn remove_at(v: &mut Value, path: &[Step]) {
    match path {
        [Step::Field(k)] => {
            if let Some(m) = v.as_object_mut() {
                m.remove(k);
            }
        }
        [first, rest @ ..] => {
            let next = match first {
                Step::Field(k) => v.get_mut(k.as_str()),
                Step::Index(n) => v.get_mut(*n),
            };
            if let Some(next) = next {
                remove_at(next, rest);
            }
        }
        [] => {}
    }
}

/// Removes unknown fields from an object, as decoding into the type would.
pub fn prune(obj: &mut Value, fields: &[Unknown]) {
    for Unknown(path) in fields {
        remove_at(obj, path);
    }
}

/// Decodes an object into its type `K` and encodes it back; the fields that did not come back.
pub(crate) fn roundtrip<K: DeserializeOwned + Serialize>(
    gvk: &GroupVersionKind,
    obj: &Value,
) -> Result<Vec<Unknown>, TypedError> {
    let typed: K = K::deserialize(obj).map_err(|e| TypedError::Decode {
        kind: gvk.kind.clone(),
        version: gvk.version.clone(),
        message: e.to_string(),
    })?;
    let back = serde_json::to_value(&typed).unwrap_or(Value::Null);
    let mut found = Vec::new();
    unknown(obj, &back, &mut Vec::new(), &mut found);
    Ok(found)
}

/// Checks a built-in object against its type. `Ok(None)`: the kind has no type here (custom
/// resources); `Ok(Some(fields))`: it decodes, and these fields are unknown to it.
pub fn check(gvk: &GroupVersionKind, obj: &Value) -> Result<Option<Vec<Unknown>>, TypedError> {
    match crate::builtin::find(&gvk.group, &gvk.version, &gvk.kind) {
        Some(k) => (k.typed.check)(gvk, obj).map(Some),
        None => Ok(None),
    }
}

/// The fields that appear twice in one JSON object of a document (`spec.replicas`), which
/// decoding would silently collapse to the last value. Malformed JSON gives no duplicates (the
/// decoder reports it).
pub fn duplicate_fields(json: &[u8]) -> Vec<String> {
    use serde::de::DeserializeSeed;
    let mut found = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(json);
    let _ = Scan {
        path: String::new(),
        found: &mut found,
    }
    .deserialize(&mut de);
    found
}

struct Scan<'a> {
    path: String,
    found: &'a mut Vec<String>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Scan<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Scan<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while seq
            .next_element_seed(Scan {
                path: format!("{}[{i}]", self.path),
                found: self.found,
            })?
            .is_some()
        {
            i += 1;
        }
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            if !seen.insert(key) {
                self.found.push(path.clone());
            }
            map.next_value_seed(Scan {
                path,
                found: self.found,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check_deploy(spec: Value) -> Result<Option<Vec<String>>, TypedError> {
        check_deploy_raw(spec).map(|r| r.map(|u| u.iter().map(ToString::to_string).collect()))
    }

    fn check_deploy_raw(spec: Value) -> Result<Option<Vec<Unknown>>, TypedError> {
        let obj = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "creationTimestamp": null, "labels": {}},
            "spec": spec});
        check(
            &GroupVersionKind::from_api_version("apps/v1", "Deployment"),
            &obj,
        )
    }

    #[test]
    fn duplicate_fields_are_found_with_their_paths() {
        let body = br#"{"spec":{"replicas":1,"replicas":2,"template":{"containers":[{"name":"a","name":"b"}]}},"kind":"x","kind":"y"}"#;
        assert_eq!(
            duplicate_fields(body),
            vec!["spec.replicas", "spec.template.containers[0].name", "kind"]
        );
        assert!(duplicate_fields(b"{\"a\":1}").is_empty());
        assert!(duplicate_fields(b"{\"a\":").is_empty());
    }

    #[test]
    fn unknown_fields_are_found_and_wrong_types_refused() {
        let selector = json!({"matchLabels": {"a": "b"}});
        let template = json!({"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i", "args": [], "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}});
        assert_eq!(
            check_deploy(json!({"replicas": 2, "selector": selector, "template": template}))
                .unwrap(),
            Some(vec![])
        );
        assert_eq!(
            check_deploy(json!({"replicass": 2, "selector": selector, "template": {"spec": {"containers": [{"name": "c", "imag": "i"}]}}})).unwrap(),
            Some(vec!["spec.replicass".to_string(), "spec.template.spec.containers[0].imag".to_string()])
        );
        let err = check_deploy(json!({"replicas": "two", "selector": selector})).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("Deployment in version \"v1\" cannot be handled as a Deployment: "),
            "{err}"
        );
        let custom = check(
            &GroupVersionKind::from_api_version("example.com/v1", "Widget"),
            &json!({"x": 1}),
        )
        .unwrap();
        assert_eq!(custom, None);
        // Pruning removes exactly the unknown fields.
        let spec = json!({"replicass": 2, "selector": selector, "template": {"spec": {"containers": [{"name": "c", "imag": "i"}]}}});
        let unknown = check_deploy_raw(spec.clone()).unwrap().unwrap();
        let mut obj = json!({"spec": spec});
        prune(&mut obj, &unknown);
        assert_eq!(
            obj,
            json!({"spec": {"selector": selector, "template": {"spec": {"containers": [{"name": "c"}]}}}})
        );
    }
}
