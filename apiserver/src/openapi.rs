//! OpenAPI v3 documents: one per group-version, listed by the `/openapi/v3` root.
//!
//! Clients read these to learn what the server accepts: kubectl looks for the `fieldValidation`
//! parameter on each kind's PATCH operation to decide that the server validates fields itself
//! (`--validate=strict`). The documents describe every served path and operation, tagged with
//! `x-kubernetes-group-version-kind` and `x-kubernetes-action` as Kubernetes tags them. Component
//! schemas (`kubectl explain`) are those of k8s-openapi's types (its `schemars` feature) for the
//! built-in kinds, and the CRDs' `openAPIV3Schema`s for custom resources, each kind's schema
//! tagged with `x-kubernetes-group-version-kind`; a document holds the schemas its kinds reach.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::OnceLock;

use apimachinery::registry::{Registry, ResourceInfo, join_api_version};
use apimachinery::status::{Reason, StatusError};
use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use crate::response::{ApiResult, json};
use crate::state::ApiState;

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn registry_hash(registry: &Registry) -> String {
    let mut h = DefaultHasher::new();
    for r in registry.iter() {
        (
            &r.group,
            &r.version,
            &r.plural,
            &r.kind,
            r.namespaced,
            &r.subresources,
        )
            .hash(&mut h);
    }
    format!("{:016X}", h.finish())
}

/// `/openapi/v3`: the group-versions with a document each.
pub fn root(state: &ApiState) -> ApiResult {
    let registry = state.registry();
    let hash = registry_hash(&registry);
    let mut paths = Map::new();
    for (group, versions) in registry.groups() {
        for v in versions {
            let p = gv_path(&group, &v);
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={hash}")}),
            );
        }
    }
    Ok(json(StatusCode::OK, &json!({"paths": paths})))
}

fn param(name: &str, location: &str) -> Value {
    json!({"name": name, "in": location, "schema": {"type": "string", "uniqueItems": true}})
}

fn operation(info: &ResourceInfo, action: &str, params: &[&str]) -> Value {
    let mut parameters: Vec<Value> = params.iter().map(|p| param(p, "query")).collect();
    parameters.push(param("pretty", "query"));
    json!({
        "operationId": format!("{action}{}", info.kind),
        "parameters": parameters,
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": info.group, "version": info.version, "kind": info.kind},
    })
}

fn paths_of(info: &ResourceInfo) -> Vec<(String, Value)> {
    let base = format!("/{}", gv_path(&info.group, &info.version));
    let scope = if info.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", info.plural)
    } else {
        format!("{base}/{}", info.plural)
    };
    let write = ["dryRun", "fieldManager", "fieldValidation"];
    let list = [
        "labelSelector",
        "fieldSelector",
        "limit",
        "continue",
        "resourceVersion",
        "resourceVersionMatch",
        "watch",
        "allowWatchBookmarks",
        "sendInitialEvents",
        "timeoutSeconds",
    ];
    let mut out = vec![
        (
            scope.clone(),
            json!({
                "get": operation(info, "list", &list),
                "post": operation(info, "post", &write),
                "delete": operation(info, "deletecollection", &["dryRun", "gracePeriodSeconds", "propagationPolicy"]),
            }),
        ),
        (
            format!("{scope}/{{name}}"),
            json!({
                "get": operation(info, "get", &["resourceVersion"]),
                "put": operation(info, "put", &write),
                "patch": operation(info, "patch", &["dryRun", "fieldManager", "fieldValidation", "force"]),
                "delete": operation(info, "delete", &["dryRun", "gracePeriodSeconds", "propagationPolicy"]),
            }),
        ),
    ];
    for sub in &info.subresources {
        out.push((
            format!("{scope}/{{name}}/{sub}"),
            json!({
                "get": operation(info, "get", &[]),
                "put": operation(info, "put", &write),
                "patch": operation(info, "patch", &write),
            }),
        ));
    }
    out
}

/// The component schemas of the built-in kinds and everything they reach, and the schema name
/// of each kind.
pub(crate) struct Builtin {
    /// Component schemas by name.
    pub(crate) schemas: serde_json::Map<String, Value>,
    kinds: BTreeMap<(String, String, String), String>,
}

pub(crate) fn builtin() -> &'static Builtin {
    static BUILTIN: OnceLock<Builtin> = OnceLock::new();
    BUILTIN.get_or_init(|| {
        let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
        let mut kinds = BTreeMap::new();
        for k in apimachinery::builtin::KINDS {
            let _ = (k.typed.schema)(&mut generator);
            kinds.insert(
                (
                    k.group.to_string(),
                    k.version.to_string(),
                    k.kind.to_string(),
                ),
                (k.typed.schema_name)().into_owned(),
            );
        }
        let mut schemas = generator.take_definitions(true);
        for ((group, version, kind), name) in &kinds {
            if let Some(Value::Object(s)) = schemas.get_mut(name) {
                s.insert(
                    "x-kubernetes-group-version-kind".into(),
                    json!([{"group": group, "version": version, "kind": kind}]),
                );
            }
        }
        Builtin { schemas, kinds }
    })
}

/// The component name Kubernetes gives a custom resource's schema: the group reversed.
pub(crate) fn custom_schema_name(info: &ResourceInfo) -> String {
    let group: Vec<&str> = info.group.split('.').rev().collect();
    format!("{}.{}.{}", group.join("."), info.version, info.kind)
}

/// A CRD's schema as a component: apiVersion, kind and metadata added, tagged with its kind.
pub(crate) fn custom_schema(info: &ResourceInfo, schema: &Value) -> Value {
    let mut s = schema.clone();
    if let Some(m) = s.as_object_mut() {
        let props = m.entry("properties").or_insert_with(|| json!({}));
        if let Some(p) = props.as_object_mut() {
            p.insert("apiVersion".into(), json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
            p.insert("kind".into(), json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
            p.insert("metadata".into(), json!({"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}], "description": "Standard object's metadata."}));
        }
        m.insert(
            "x-kubernetes-group-version-kind".into(),
            json!([{"group": info.group, "version": info.version, "kind": info.kind}]),
        );
    }
    s
}

fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                if k == "$ref"
                    && let Some(r) = child.as_str()
                    && let Some(name) = r.strip_prefix("#/components/schemas/")
                {
                    out.push(name.to_string());
                } else {
                    refs(child, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| refs(i, out)),
        _ => {}
    }
}

/// The component schemas of these resources and everything they reference.
fn schemas_of(resources: &[std::sync::Arc<ResourceInfo>]) -> Map<String, Value> {
    let b = builtin();
    let mut out = Map::new();
    let mut todo = Vec::new();
    for r in resources {
        if let Some(schema) = r.schema.as_deref().filter(|_| r.custom) {
            let s = custom_schema(r, schema);
            refs(&s, &mut todo);
            out.insert(custom_schema_name(r), s);
        } else if let Some(name) =
            b.kinds
                .get(&(r.group.clone(), r.version.clone(), r.kind.clone()))
        {
            todo.push(name.clone());
        }
    }
    while let Some(name) = todo.pop() {
        if out.contains_key(&name) {
            continue;
        }
        if let Some(s) = b.schemas.get(&name) {
            refs(s, &mut todo);
            out.insert(name, s.clone());
        }
    }
    out
}

/// `/openapi/v3/<api/v1 | apis/group/version>`: the document of one group-version.
pub fn group_version(state: &ApiState, gv: &str) -> ApiResult {
    let registry = state.registry();
    let resources: Vec<_> = registry
        .iter()
        .filter(|r| gv_path(&r.group, &r.version) == gv)
        .cloned()
        .collect();
    let Some(first) = resources.first() else {
        return Err(StatusError::new(
            Reason::NotFound,
            format!("the server could not find the OpenAPI document for {gv}"),
        ));
    };
    let mut paths = Map::new();
    for r in &resources {
        for (p, ops) in paths_of(r) {
            paths.insert(p, ops);
        }
    }
    Ok(json(
        StatusCode::OK,
        &json!({
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": format!("v1.{}.0", crate::discovery::KUBE_MINOR)},
            "paths": paths,
            "components": {"schemas": schemas_of(&resources)},
            "x-gitplane-group-version": join_api_version(&first.group, &first.version),
        }),
    ))
}
