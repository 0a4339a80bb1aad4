//! Discovery: `/api`, `/apis`, `/apis/<group>`, the resource list of each group-version, the
//! aggregated discovery documents (`apidiscovery.k8s.io/v2`) that kubectl asks for first, and
//! `/version`.

use apimachinery::registry::{ResourceInfo, join_api_version};
use apimachinery::status::StatusError;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use crate::response::{ApiResult, json};
use crate::state::ApiState;

/// The Kubernetes minor version gitplane reports. The API follows 1.32 (kubectl 1.32 is the
/// target client; the dispatching `kubectl` on these machines picks its client by this number).
pub const KUBE_MINOR: &str = "32";

/// The `/version` document.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": KUBE_MINOR,
        "gitVersion": format!("v1.{KUBE_MINOR}.0+gitplane-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    })
}

const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

fn wants_aggregated(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split(',').next())
        .is_some_and(|first| {
            first.contains("g=apidiscovery.k8s.io")
                && first.contains("as=APIGroupDiscoveryList")
                && first.contains("v=v2")
        })
}

fn subresource_verbs(sub: &str) -> Vec<&'static str> {
    match sub {
        "binding" | "eviction" | "token" => vec!["create"],
        "finalize" => vec!["update"],
        "log" => vec!["get"],
        "exec" | "attach" | "portforward" => vec!["create", "get"],
        "proxy" => vec!["create", "delete", "get", "patch", "update"],
        _ => vec!["get", "patch", "update"],
    }
}

fn subresource_kind(info: &ResourceInfo, sub: &str) -> (String, String, String) {
    match sub {
        "scale" => ("autoscaling".into(), "v1".into(), "Scale".into()),
        "binding" => (String::new(), "v1".into(), "Binding".into()),
        "eviction" => ("policy".into(), "v1".into(), "Eviction".into()),
        "token" => (
            "authentication.k8s.io".into(),
            "v1".into(),
            "TokenRequest".into(),
        ),
        "exec" => (String::new(), "v1".into(), "PodExecOptions".into()),
        "attach" => (String::new(), "v1".into(), "PodAttachOptions".into()),
        "portforward" => (String::new(), "v1".into(), "PodPortForwardOptions".into()),
        "proxy" => (
            String::new(),
            "v1".into(),
            format!("{}ProxyOptions", info.kind),
        ),
        _ => (info.group.clone(), info.version.clone(), info.kind.clone()),
    }
}

/// `/api` or `/apis`, legacy or aggregated by the Accept header.
pub fn root(state: &ApiState, core: bool, headers: &HeaderMap) -> ApiResult {
    let registry = state.registry();
    let groups = registry.groups();
    if wants_aggregated(headers) {
        let items: Vec<Value> = groups
            .iter()
            .filter(|(g, _)| g.is_empty() == core)
            .map(|(g, versions)| {
                let versions: Vec<Value> = versions
                    .iter()
                    .map(|v| {
                        let resources: Vec<Value> = registry
                            .iter()
                            .filter(|r| &r.group == g && &r.version == v)
                            .map(|r| aggregated_resource(r))
                            .collect();
                        json!({"version": v, "resources": resources, "freshness": "Current"})
                    })
                    .collect();
                json!({"metadata": {"name": g}, "versions": versions})
            })
            .collect();
        let body = json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
                          "metadata": {}, "items": items});
        let mut r = json(StatusCode::OK, &body);
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(AGGREGATED));
        return Ok(r);
    }
    if core {
        return Ok(json(
            StatusCode::OK,
            &json!({"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]}),
        ));
    }
    let groups: Vec<Value> = groups
        .iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, versions)| api_group(g, versions))
        .collect();
    Ok(json(
        StatusCode::OK,
        &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
    ))
}

fn api_group(group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": join_api_version(group, v), "version": v}))
        .collect();
    json!({"name": group, "versions": vs, "preferredVersion": vs.first().cloned().unwrap_or(json!({}))})
}

fn aggregated_resource(r: &ResourceInfo) -> Value {
    let subs: Vec<Value> = r
        .subresources
        .iter()
        .map(|s| {
            let (g, v, k) = subresource_kind(r, s);
            json!({"subresource": s, "responseKind": {"group": g, "version": v, "kind": k},
                   "verbs": subresource_verbs(s)})
        })
        .collect();
    let mut v = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        v["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        v["categories"] = json!(r.categories);
    }
    if !subs.is_empty() {
        v["subresources"] = json!(subs);
    }
    v
}

/// `/apis/<group>`.
pub fn group(state: &ApiState, group: &str) -> ApiResult {
    let registry = state.registry();
    let found = registry.groups().into_iter().find(|(g, _)| g == group);
    match found {
        Some((g, versions)) if !g.is_empty() => {
            let mut body = api_group(&g, &versions);
            body["kind"] = json!("APIGroup");
            body["apiVersion"] = json!("v1");
            Ok(json(StatusCode::OK, &body))
        }
        _ => Err(StatusError::new(
            apimachinery::status::Reason::NotFound,
            "the server could not find the requested resource",
        )),
    }
}

/// `/api/v1` or `/apis/<group>/<version>`: the APIResourceList.
pub fn resources(state: &ApiState, group: &str, version: &str) -> ApiResult {
    let registry = state.registry();
    let mut resources = Vec::new();
    for r in registry
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let mut main = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            main["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            main["categories"] = json!(r.categories);
        }
        resources.push(main);
        for s in &r.subresources {
            let (g, v, k) = subresource_kind(r, s);
            let mut sub = json!({"name": format!("{}/{s}", r.plural), "singularName": "",
                                 "namespaced": r.namespaced, "kind": k, "verbs": subresource_verbs(s)});
            if g != r.group || v != r.version {
                sub["group"] = json!(g);
                sub["version"] = json!(v);
            }
            resources.push(sub);
        }
    }
    if resources.is_empty() {
        return Err(StatusError::new(
            apimachinery::status::Reason::NotFound,
            "the server could not find the requested resource",
        ));
    }
    Ok(json(
        StatusCode::OK,
        &json!({"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": join_api_version(group, version), "resources": resources}),
    ))
}
