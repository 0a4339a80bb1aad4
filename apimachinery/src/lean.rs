//! Objects decoded without `metadata.managedFields`, for components that never read them.
//!
//! A pod a kubelet has written carries two managedFields entries whose field sets are the
//! largest part of its JSON, and k8s-openapi decodes each set as a `serde_json::Value` tree:
//! in the `schedule` benchmark that was a third of the time the scheduler and the simulated
//! nodes spent decoding their watch events. kube-scheduler drops managedFields from its
//! informers' cache too (after decoding them). [`Lean`] wraps a resource type so that a list or
//! watch through kube-rs (`Api<Lean<Pod>>`) skips over them while parsing: the object comes out
//! as the server sent it but for `metadata.managedFields`, which is `None`.
//!
//! A component that decodes this way must not write back a whole object it read (an update
//! without managedFields keeps the stored ones, so nothing is lost, but the intent is wrong);
//! patches, bindings and status writes are what the scheduler and the nodes send.
//!
//! How: [`without_managed_fields`] wraps the deserializer, every visitor it is given and every
//! map and sequence below it, and answers the value of a map entry named `managedFields` as
//! absent after skipping it in the input. No crate does this (serde-ignored and
//! serde_path_to_error wrap deserializers the same way, to report paths, not to skip them).

use std::fmt;

use serde::de::value::UnitDeserializer;
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde::{Deserialize, Serialize};

/// The map key whose values are skipped.
const SKIPPED: &str = "managedFields";

/// A resource decoded without `metadata.managedFields` (see the module documentation). It is
/// the same resource to kube-rs: same kind, group, version and plural.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Lean<K>(pub K);

impl<'de, K: Deserialize<'de>> Deserialize<'de> for Lean<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        without_managed_fields(d).map(Lean)
    }
}

impl<K: Serialize> Serialize for Lean<K> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<K: k8s_openapi::Resource> k8s_openapi::Resource for Lean<K> {
    const API_VERSION: &'static str = K::API_VERSION;
    const GROUP: &'static str = K::GROUP;
    const KIND: &'static str = K::KIND;
    const VERSION: &'static str = K::VERSION;
    const URL_PATH_SEGMENT: &'static str = K::URL_PATH_SEGMENT;
    type Scope = K::Scope;
}

impl<K: k8s_openapi::Metadata> k8s_openapi::Metadata for Lean<K> {
    type Ty = K::Ty;

    fn metadata(&self) -> &Self::Ty {
        self.0.metadata()
    }

    fn metadata_mut(&mut self) -> &mut Self::Ty {
        self.0.metadata_mut()
    }
}

/// Deserializes a `T` from `d` as if no map in the input had an entry named `managedFields`
/// (the entry's value is skipped; `T` sees the field as absent, an `Option` as `None`).
pub fn without_managed_fields<'de, T, D>(d: D) -> Result<T, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    T::deserialize(Skip(d))
}

/// A deserializer whose maps, at any depth, leave out [`SKIPPED`].
struct Skip<D>(D);

/// A visitor whose maps and sequences, and the values inside them, go through [`Skip`].
struct Wrap<V>(V);

/// A seed that deserializes through [`Skip`].
struct WrapSeed<T>(T);

/// A sequence whose elements go through [`Skip`].
struct SkipSeq<A>(A);

/// A map that skips the value of a [`SKIPPED`] key.
struct SkipMap<A> {
    inner: A,
    skip_value: bool,
}

/// A map key's seed that notes whether the key is [`SKIPPED`].
struct KeySeed<'a, K> {
    seed: K,
    skip: &'a mut bool,
}

/// A map key's deserializer that notes whether the key is [`SKIPPED`].
struct KeyDeserializer<'a, D> {
    inner: D,
    skip: &'a mut bool,
}

/// A map key's visitor that notes whether the key is [`SKIPPED`].
struct KeyVisitor<'a, V> {
    inner: V,
    skip: &'a mut bool,
}

/// The deserializer methods that take only a visitor, forwarded with the visitor wrapped.
macro_rules! forward_visitor {
    ($wrap:expr; $($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            let (inner, visitor) = $wrap(self, visitor);
            inner.$method(visitor)
        }
    )*};
}

/// The deserializer methods that take more than a visitor.
macro_rules! forward_rest {
    ($wrap:expr) => {
        fn deserialize_unit_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            visitor: V,
        ) -> Result<V::Value, Self::Error> {
            let (inner, visitor) = $wrap(self, visitor);
            inner.deserialize_unit_struct(name, visitor)
        }

        fn deserialize_newtype_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            visitor: V,
        ) -> Result<V::Value, Self::Error> {
            let (inner, visitor) = $wrap(self, visitor);
            inner.deserialize_newtype_struct(name, visitor)
        }

        fn deserialize_tuple<V: Visitor<'de>>(
            self,
            len: usize,
            visitor: V,
        ) -> Result<V::Value, Self::Error> {
            let (inner, visitor) = $wrap(self, visitor);
            inner.deserialize_tuple(len, visitor)
        }

        fn deserialize_tuple_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            len: usize,
            visitor: V,
        ) -> Result<V::Value, Self::Error> {
            let (inner, visitor) = $wrap(self, visitor);
            inner.deserialize_tuple_struct(name, len, visitor)
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Self::Error> {
            let (inner, visitor) = $wrap(self, visitor);
            inner.deserialize_struct(name, fields, visitor)
        }

        fn deserialize_enum<V: Visitor<'de>>(
            self,
            name: &'static str,
            variants: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Self::Error> {
            let (inner, visitor) = $wrap(self, visitor);
            inner.deserialize_enum(name, variants, visitor)
        }
    };
}

fn skip_parts<D, V>(d: Skip<D>, visitor: V) -> (D, Wrap<V>) {
    (d.0, Wrap(visitor))
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Skip<D> {
    type Error = D::Error;

    forward_visitor!(skip_parts;
        deserialize_any deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32
        deserialize_i64 deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32
        deserialize_u64 deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char
        deserialize_str deserialize_string deserialize_bytes deserialize_byte_buf
        deserialize_option deserialize_unit deserialize_seq deserialize_map
        deserialize_identifier deserialize_ignored_any);
    forward_rest!(skip_parts);

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// Visitor methods that take a plain value, forwarded unchanged to the visitor in field
/// `$inner`.
macro_rules! forward_values {
    ($inner:tt; $($method:ident($ty:ty))*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.$inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    forward_values!(0;
        visit_bool(bool) visit_i8(i8) visit_i16(i16) visit_i32(i32) visit_i64(i64)
        visit_i128(i128) visit_u8(u8) visit_u16(u16) visit_u32(u32) visit_u64(u64)
        visit_u128(u128) visit_f32(f32) visit_f64(f64) visit_char(char) visit_str(&str)
        visit_borrowed_str(&'de str) visit_string(String) visit_bytes(&[u8])
        visit_borrowed_bytes(&'de [u8]) visit_byte_buf(Vec<u8>)
    );

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.0.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.0.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.visit_some(Skip(d))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.visit_newtype_struct(Skip(d))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.0.visit_seq(SkipSeq(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.0.visit_map(SkipMap {
            inner: map,
            skip_value: false,
        })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        // Enums in Kubernetes objects are strings; their contents are not searched.
        self.0.visit_enum(data)
    }
}

impl<'de, T: DeserializeSeed<'de>> DeserializeSeed<'de> for WrapSeed<T> {
    type Value = T::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(Skip(d))
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for SkipSeq<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        self.0.next_element_seed(WrapSeed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for SkipMap<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let mut skip = false;
        let key = self.inner.next_key_seed(KeySeed {
            seed,
            skip: &mut skip,
        })?;
        self.skip_value = skip;
        Ok(key)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<T::Value, Self::Error> {
        if std::mem::take(&mut self.skip_value) {
            self.inner.next_value::<IgnoredAny>()?;
            return seed.deserialize(UnitDeserializer::new());
        }
        self.inner.next_value_seed(WrapSeed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, K: DeserializeSeed<'de>> DeserializeSeed<'de> for KeySeed<'_, K> {
    type Value = K::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.seed.deserialize(KeyDeserializer {
            inner: d,
            skip: self.skip,
        })
    }
}

fn key_parts<'a, D, V>(d: KeyDeserializer<'a, D>, visitor: V) -> (D, KeyVisitor<'a, V>) {
    (
        d.inner,
        KeyVisitor {
            inner: visitor,
            skip: d.skip,
        },
    )
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for KeyDeserializer<'_, D> {
    type Error = D::Error;

    forward_visitor!(key_parts;
        deserialize_any deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32
        deserialize_i64 deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32
        deserialize_u64 deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char
        deserialize_str deserialize_string deserialize_bytes deserialize_byte_buf
        deserialize_option deserialize_unit deserialize_seq deserialize_map
        deserialize_identifier deserialize_ignored_any);
    forward_rest!(key_parts);

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

impl<'de, V: Visitor<'de>> Visitor<'de> for KeyVisitor<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    // Strings are looked at below; everything else passes.
    forward_values!(inner;
        visit_bool(bool) visit_i8(i8) visit_i16(i16) visit_i32(i32) visit_i64(i64)
        visit_i128(i128) visit_u8(u8) visit_u16(u16) visit_u32(u32) visit_u64(u64)
        visit_u128(u128) visit_f32(f32) visit_f64(f64) visit_char(char) visit_bytes(&[u8])
        visit_borrowed_bytes(&'de [u8]) visit_byte_buf(Vec<u8>)
    );

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        *self.skip = v == SKIPPED;
        self.inner.visit_str(v)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        *self.skip = v == SKIPPED;
        self.inner.visit_borrowed_str(v)
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        *self.skip = v == SKIPPED;
        self.inner.visit_string(v)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.inner.visit_some(d)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.inner.visit_newtype_struct(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_map(map)
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_enum(data)
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    use super::*;

    fn pod_json() -> serde_json::Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "web-0",
                "namespace": "shop",
                "labels": {"app": "web"},
                "managedFields": [{
                    "manager": "kubelet",
                    "operation": "Update",
                    "subresource": "status",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:status": {"f:phase": {}, "f:conditions": {".": {}}}}
                }],
                "resourceVersion": "42"
            },
            "spec": {
                "nodeName": "n1",
                "containers": [{"name": "c", "image": "busybox:1", "ports": [{"containerPort": 80}]}],
                "tolerations": [{"key": "k", "operator": "Exists", "tolerationSeconds": 30}]
            },
            "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.1"}]}
        })
    }

    #[test]
    fn a_lean_pod_is_the_pod_but_for_its_managed_fields() {
        let text = pod_json().to_string();
        let full: Pod = serde_json::from_str(&text).unwrap();
        let lean: Lean<Pod> = serde_json::from_str(&text).unwrap();
        assert!(full.metadata.managed_fields.is_some());
        assert_eq!(lean.0.metadata.managed_fields, None);
        let mut expected = full;
        expected.metadata.managed_fields = None;
        assert_eq!(lean.0, expected);
    }

    #[test]
    fn lists_and_watch_events_decode_their_objects_lean() {
        let list = json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [pod_json(), pod_json()]});
        let decoded: kube::core::ObjectList<Lean<Pod>> =
            serde_json::from_str(&list.to_string()).unwrap();
        assert_eq!(decoded.items.len(), 2);
        assert!(
            decoded
                .items
                .iter()
                .all(|p| p.0.metadata.managed_fields.is_none())
        );
        assert_eq!(decoded.items[1].0.metadata.name.as_deref(), Some("web-0"));
        let event = json!({"type": "MODIFIED", "object": pod_json()});
        let decoded: kube::core::WatchEvent<Lean<Pod>> =
            serde_json::from_str(&event.to_string()).unwrap();
        let kube::core::WatchEvent::Modified(pod) = decoded else {
            panic!("not a modification: {decoded:?}");
        };
        assert_eq!(pod.0.metadata.resource_version.as_deref(), Some("42"));
        assert!(pod.0.metadata.managed_fields.is_none());
    }

    #[test]
    fn bad_input_fails_as_it_would_without_the_wrapper() {
        let mut bad = pod_json();
        bad["spec"]["containers"][0]["ports"][0]["containerPort"] = json!("eighty");
        let text = bad.to_string();
        let full = serde_json::from_str::<Pod>(&text).unwrap_err().to_string();
        let lean = serde_json::from_str::<Lean<Pod>>(&text)
            .unwrap_err()
            .to_string();
        assert_eq!(lean, full);
        // A malformed managedFields is skipped, not decoded: it cannot fail.
        let mut odd = pod_json();
        odd["metadata"]["managedFields"] = json!({"not": ["a", "list"]});
        let lean: Lean<Pod> = serde_json::from_str(&odd.to_string()).unwrap();
        assert_eq!(lean.0.metadata.name.as_deref(), Some("web-0"));
    }

    #[test]
    fn untyped_values_see_the_entry_as_null() {
        let v: serde_json::Value = without_managed_fields(pod_json()).unwrap();
        assert_eq!(v["metadata"]["managedFields"], serde_json::Value::Null);
        assert_eq!(v["spec"], pod_json()["spec"]);
    }
}
