//! OpenAPI v2 (Swagger 2.0) documents in the protobuf form kubectl asks `/openapi/v2` for
//! (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`): gnostic's
//! `openapi.v2.Document`, of which kubectl's client-side validation reads the `definitions`.
//!
//! The messages are declared here with prost's derive, with gnostic's field numbers, for the
//! fields gitplane's documents use: `swagger`, `info`, `definitions` (a list of named schemas)
//! and in a schema `$ref`, `format`, `description`, `default`, the numeric and length bounds,
//! `required`, `enum`, `additionalProperties`, `type`, `items`, `allOf`, `properties` and the
//! `x-` vendor extensions (values as YAML, which JSON is). JSON Schema keywords Swagger 2.0 has
//! no field for (`oneOf`, `anyOf`, `not`, `nullable`) are left out, as in Kubernetes' own v2
//! document. [`encode`] turns the JSON document into these messages.

use prost::Message;
use serde_json::Value;

/// `openapi.v2.Document`.
#[derive(Clone, PartialEq, Message)]
pub struct Document {
    /// `swagger`: "2.0".
    #[prost(string, tag = "1")]
    pub swagger: String,
    /// `info`.
    #[prost(message, optional, tag = "2")]
    pub info: Option<Info>,
    /// `definitions`.
    #[prost(message, optional, tag = "9")]
    pub definitions: Option<Definitions>,
}

/// `openapi.v2.Info`.
#[derive(Clone, PartialEq, Message)]
pub struct Info {
    /// `title`.
    #[prost(string, tag = "1")]
    pub title: String,
    /// `version`.
    #[prost(string, tag = "2")]
    pub version: String,
}

/// `openapi.v2.Definitions` (and `Properties`, which has the same shape).
#[derive(Clone, PartialEq, Message)]
pub struct Definitions {
    /// The named schemas, in document order.
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedSchema>,
}

/// `openapi.v2.NamedSchema`.
#[derive(Clone, PartialEq, Message)]
pub struct NamedSchema {
    /// The name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The schema.
    #[prost(message, optional, tag = "2")]
    pub value: Option<Schema>,
}

/// `openapi.v2.Any`: a value written as YAML.
#[derive(Clone, PartialEq, Message)]
pub struct Any {
    /// The value as YAML (gitplane writes JSON, a subset).
    #[prost(string, tag = "2")]
    pub yaml: String,
}

/// `openapi.v2.NamedAny`: a vendor extension.
#[derive(Clone, PartialEq, Message)]
pub struct NamedAny {
    /// The extension's name (`x-kubernetes-group-version-kind`).
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its value.
    #[prost(message, optional, tag = "2")]
    pub value: Option<Any>,
}

/// `openapi.v2.TypeItem`.
#[derive(Clone, PartialEq, Message)]
pub struct TypeItem {
    /// The type names.
    #[prost(string, repeated, tag = "1")]
    pub value: Vec<String>,
}

/// `openapi.v2.ItemsItem`.
#[derive(Clone, PartialEq, Message)]
pub struct ItemsItem {
    /// The item schema.
    #[prost(message, repeated, tag = "1")]
    pub schema: Vec<Schema>,
}

/// `openapi.v2.AdditionalPropertiesItem` (a oneof of a schema and a boolean; one is set).
#[derive(Clone, PartialEq, Message)]
pub struct AdditionalPropertiesItem {
    /// The schema of the values.
    #[prost(message, optional, boxed, tag = "1")]
    pub schema: Option<Box<Schema>>,
    /// `true` or `false`.
    #[prost(bool, optional, tag = "2")]
    pub boolean: Option<bool>,
}

/// `openapi.v2.Schema`.
#[derive(Clone, PartialEq, Message)]
pub struct Schema {
    /// `$ref`.
    #[prost(string, tag = "1")]
    pub r#ref: String,
    /// `format`.
    #[prost(string, tag = "2")]
    pub format: String,
    /// `description`.
    #[prost(string, tag = "4")]
    pub description: String,
    /// `default`.
    #[prost(message, optional, tag = "5")]
    pub default: Option<Any>,
    /// `maximum`.
    #[prost(double, tag = "7")]
    pub maximum: f64,
    /// `exclusiveMaximum`.
    #[prost(bool, tag = "8")]
    pub exclusive_maximum: bool,
    /// `minimum`.
    #[prost(double, tag = "9")]
    pub minimum: f64,
    /// `exclusiveMinimum`.
    #[prost(bool, tag = "10")]
    pub exclusive_minimum: bool,
    /// `maxLength`.
    #[prost(int64, tag = "11")]
    pub max_length: i64,
    /// `minLength`.
    #[prost(int64, tag = "12")]
    pub min_length: i64,
    /// `pattern`.
    #[prost(string, tag = "13")]
    pub pattern: String,
    /// `maxItems`.
    #[prost(int64, tag = "14")]
    pub max_items: i64,
    /// `minItems`.
    #[prost(int64, tag = "15")]
    pub min_items: i64,
    /// `uniqueItems`.
    #[prost(bool, tag = "16")]
    pub unique_items: bool,
    /// `required`.
    #[prost(string, repeated, tag = "19")]
    pub required: Vec<String>,
    /// `enum`.
    #[prost(message, repeated, tag = "20")]
    pub r#enum: Vec<Any>,
    /// `additionalProperties`.
    #[prost(message, optional, tag = "21")]
    pub additional_properties: Option<AdditionalPropertiesItem>,
    /// `type`.
    #[prost(message, optional, tag = "22")]
    pub r#type: Option<TypeItem>,
    /// `items`.
    #[prost(message, optional, tag = "23")]
    pub items: Option<ItemsItem>,
    /// `allOf`.
    #[prost(message, repeated, tag = "24")]
    pub all_of: Vec<Schema>,
    /// `properties`.
    #[prost(message, optional, tag = "25")]
    pub properties: Option<Definitions>,
    /// `x-` vendor extensions.
    #[prost(message, repeated, tag = "31")]
    pub vendor_extension: Vec<NamedAny>,
}

fn any(v: &Value) -> Any {
    Any {
        yaml: v.to_string(),
    }
}

fn string(s: &Value, key: &str) -> String {
    s.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

fn int(s: &Value, key: &str) -> i64 {
    s.get(key).and_then(Value::as_i64).unwrap_or(0)
}

/// One JSON schema as a message.
pub fn schema(s: &Value) -> Schema {
    let named = |v: Option<&Value>| {
        v.and_then(Value::as_object).map(|props| Definitions {
            additional_properties: props
                .iter()
                .map(|(name, s)| NamedSchema {
                    name: name.clone(),
                    value: Some(schema(s)),
                })
                .collect(),
        })
    };
    Schema {
        r#ref: string(s, "$ref"),
        format: string(s, "format"),
        description: string(s, "description"),
        default: s.get("default").map(any),
        maximum: s.get("maximum").and_then(Value::as_f64).unwrap_or(0.0),
        exclusive_maximum: s.get("exclusiveMaximum") == Some(&Value::Bool(true)),
        minimum: s.get("minimum").and_then(Value::as_f64).unwrap_or(0.0),
        exclusive_minimum: s.get("exclusiveMinimum") == Some(&Value::Bool(true)),
        max_length: int(s, "maxLength"),
        min_length: int(s, "minLength"),
        pattern: string(s, "pattern"),
        max_items: int(s, "maxItems"),
        min_items: int(s, "minItems"),
        unique_items: s.get("uniqueItems") == Some(&Value::Bool(true)),
        required: s
            .get("required")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        r#enum: s
            .get("enum")
            .and_then(Value::as_array)
            .map(|e| e.iter().map(any).collect())
            .unwrap_or_default(),
        additional_properties: match s.get("additionalProperties") {
            Some(Value::Bool(b)) => Some(AdditionalPropertiesItem {
                schema: None,
                boolean: Some(*b),
            }),
            Some(v @ Value::Object(_)) => Some(AdditionalPropertiesItem {
                schema: Some(Box::new(schema(v))),
                boolean: None,
            }),
            _ => None,
        },
        r#type: match s.get("type") {
            Some(Value::String(t)) => Some(TypeItem {
                value: vec![t.clone()],
            }),
            _ => None,
        },
        items: s.get("items").filter(|i| i.is_object()).map(|i| ItemsItem {
            schema: vec![schema(i)],
        }),
        all_of: s
            .get("allOf")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(schema).collect())
            .unwrap_or_default(),
        properties: named(s.get("properties")),
        vendor_extension: s
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.starts_with("x-"))
            .map(|(k, v)| NamedAny {
                name: k.clone(),
                value: Some(any(v)),
            })
            .collect(),
    }
}

/// A Swagger 2.0 JSON document (`swagger`, `info`, `definitions`) in its protobuf form.
pub fn encode(doc: &Value) -> Vec<u8> {
    let definitions = doc
        .get("definitions")
        .and_then(Value::as_object)
        .map(|defs| Definitions {
            additional_properties: defs
                .iter()
                .map(|(name, s)| NamedSchema {
                    name: name.clone(),
                    value: Some(schema(s)),
                })
                .collect(),
        });
    Document {
        swagger: string(doc, "swagger"),
        info: doc.get("info").map(|i| Info {
            title: string(i, "title"),
            version: string(i, "version"),
        }),
        definitions,
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_document_encodes_with_gnostics_field_numbers() {
        let doc = json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": "v1.32.0"},
            "definitions": {"A": {
                "type": "object",
                "required": ["b"],
                "properties": {"b": {"$ref": "#/definitions/B"}},
                "x-kubernetes-group-version-kind": [{"group": "", "kind": "A", "version": "v1"}],
            }},
        });
        let bytes = encode(&doc);
        // swagger (field 1, length-delimited) comes first.
        assert_eq!(&bytes[..5], &[0x0a, 3, b'2', b'.', b'0']);
        let decoded = Document::decode(bytes.as_slice()).expect("decodes");
        let a = &decoded
            .definitions
            .expect("definitions")
            .additional_properties[0];
        assert_eq!(a.name, "A");
        let s = a.value.as_ref().expect("schema");
        assert_eq!(
            s.r#type.as_ref().map(|t| t.value.clone()),
            Some(vec!["object".to_string()])
        );
        assert_eq!(s.required, ["b"]);
        let b = &s
            .properties
            .as_ref()
            .expect("properties")
            .additional_properties[0];
        assert_eq!(
            b.value.as_ref().map(|s| s.r#ref.as_str()),
            Some("#/definitions/B")
        );
        assert_eq!(
            s.vendor_extension[0].name,
            "x-kubernetes-group-version-kind"
        );
        assert_eq!(
            s.vendor_extension[0]
                .value
                .as_ref()
                .map(|v| v.yaml.as_str()),
            Some(r#"[{"group":"","kind":"A","version":"v1"}]"#)
        );
    }
}
