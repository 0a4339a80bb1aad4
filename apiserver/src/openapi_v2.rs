//! `/openapi/v2`: the Swagger 2.0 document, in JSON or in the protobuf form kubectl asks for
//! (`apimachinery::openapi_v2`).
//!
//! kubectl falls back to it for client-side validation (`--validate=true`, the default) of what
//! the OpenAPI v3 documents do not describe as server-validated, such as the items of a `List`
//! (`kubectl replace -f list.yaml`). Its `definitions` are the same schemas as the v3
//! documents' (`openapi`): every built-in kind's and every served CRD version's, tagged with
//! `x-kubernetes-group-version-kind`, with references rewritten to `#/definitions/` and a lone
//! `allOf: [{$ref}]` (how OpenAPI v3 adds a description to a reference) folded into the
//! reference, as Kubernetes writes v2. `paths` is empty: kubectl reads paths from v3.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use apimachinery::status::{Reason, StatusError};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::openapi;
use crate::state::ApiState;

/// The media type of the protobuf form, as answered. kubectl asks for
/// `application/com.github.proto-openapi.spec.v2@v1.0+protobuf`, but Go's `mime` parser (with
/// which client-go reads the answer's `Content-Type`) refuses the `@`, so Kubernetes answers
/// with a dot, as here.
pub const PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// A v3 schema as Swagger 2.0 writes it.
fn to_v2(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            if let Some(Value::Array(all)) = m.get("allOf")
                && let [only] = all.as_slice()
                && only.get("$ref").is_some()
            {
                let mut folded = m.clone();
                folded.remove("allOf");
                folded.insert("$ref".into(), to_v2(&only["$ref"]));
                return Value::Object(folded.into_iter().map(|(k, v)| (k, to_v2(&v))).collect());
            }
            let mut out = Map::new();
            for (k, child) in m {
                if k == "nullable" {
                    continue;
                }
                out.insert(k.clone(), to_v2(child));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(to_v2).collect()),
        Value::String(s) => match s.strip_prefix("#/components/schemas/") {
            Some(name) => Value::String(format!("#/definitions/{name}")),
            None => v.clone(),
        },
        _ => v.clone(),
    }
}

/// The Swagger 2.0 document as JSON, rebuilt only when the served kinds or a CRD schema
/// changed (building it converts every schema).
pub fn document(state: &ApiState) -> Arc<Value> {
    static CACHE: Mutex<Option<(u64, Arc<Value>)>> = Mutex::new(None);
    let registry = state.registry();
    let mut h = DefaultHasher::new();
    for r in registry.iter() {
        (
            &r.group,
            &r.version,
            &r.kind,
            r.schema.as_deref().map(Value::to_string),
        )
            .hash(&mut h);
    }
    let key = h.finish();
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((k, doc)) = cache.as_ref()
        && *k == key
    {
        return Arc::clone(doc);
    }
    let doc = Arc::new(build(state));
    *cache = Some((key, Arc::clone(&doc)));
    doc
}

fn build(state: &ApiState) -> Value {
    let mut definitions = Map::new();
    for (name, s) in &openapi::builtin().schemas {
        definitions.insert(name.clone(), to_v2(s));
    }
    for r in state.registry().iter().filter(|r| r.custom) {
        if let Some(s) = r.schema.as_deref() {
            definitions.insert(
                openapi::custom_schema_name(r),
                to_v2(&openapi::custom_schema(r, s)),
            );
        }
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{}.0", crate::discovery::KUBE_MINOR)},
        "paths": {},
        "definitions": definitions,
    })
}

/// Serves `/openapi/v2`: protobuf when the `Accept` header asks for it, JSON otherwise.
pub fn serve(state: &ApiState, headers: &HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let doc = document(state);
    if accept.contains("protobuf") {
        let mut response = apimachinery::openapi_v2::encode(&doc).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROTOBUF));
        return response;
    }
    if !accept.is_empty() && !accept.contains("json") && !accept.contains("*/*") {
        let e = StatusError::new(
            Reason::NotAcceptable,
            format!("only application/json and {PROTOBUF} are served"),
        );
        return crate::response::error(&e);
    }
    crate::response::json(StatusCode::OK, &doc)
}

#[cfg(test)]
mod tests {
    use super::to_v2;
    use serde_json::json;

    #[test]
    fn v3_references_become_v2_definitions() {
        let v3 = json!({
            "properties": {
                "metadata": {"allOf": [{"$ref": "#/components/schemas/Meta"}], "description": "m"},
                "items": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}, "nullable": true},
            },
        });
        assert_eq!(
            to_v2(&v3),
            json!({
                "properties": {
                    "metadata": {"$ref": "#/definitions/Meta", "description": "m"},
                    "items": {"type": "array", "items": {"$ref": "#/definitions/Item"}},
                },
            })
        );
    }
}
