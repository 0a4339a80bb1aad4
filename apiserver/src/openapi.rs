//! OpenAPI v3 documents: one per group-version, listed by the `/openapi/v3` root.
//!
//! Clients read these to learn what the server accepts: kubectl looks for the `fieldValidation`
//! parameter on each kind's PATCH operation to decide that the server validates fields itself
//! (`--validate=strict`). The documents describe every served path and operation, tagged with
//! `x-kubernetes-group-version-kind` and `x-kubernetes-action` as Kubernetes tags them. Component
//! schemas (for `kubectl explain`) come with the schema validation work.

use std::hash::{DefaultHasher, Hash, Hasher};

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
            "components": {"schemas": {}},
            "x-gitplane-group-version": join_api_version(&first.group, &first.version),
        }),
    ))
}
