//! Routing an authenticated and authorized request: health, version, OpenAPI and discovery
//! documents, the access reviews and tokens, then a resource's verb (one file each).

use std::sync::Arc;

use apimachinery::status::{Reason, StatusError};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;

use super::{
    ApiRequest, binding, component_status, create, delete, delete_collection, eviction, get, list,
    log, metrics, patch, proxy, scale, stream, update, watch,
};
use crate::discovery;
use crate::request::{Params, ResourcePath, Target, parse_path};
use crate::response::{ApiResult, error, finish, text};
use crate::state::ApiState;

fn not_found_path() -> StatusError {
    StatusError::new(
        Reason::NotFound,
        "the server could not find the requested resource",
    )
}

/// Serves an authenticated and authorized request.
pub async fn serve(
    state: &Arc<ApiState>,
    mut parts: axum::http::request::Parts,
    body: Bytes,
    user: &crate::authn::UserInfo,
) -> Response {
    let path = parts.uri.path().to_string();
    match path.as_str() {
        "/healthz" | "/livez" | "/readyz" => return health(state).await,
        "/metrics" => return crate::metrics::exposition(state),
        "/version" | "/version/" => {
            return crate::response::json(StatusCode::OK, &discovery::version());
        }
        _ => {}
    }
    if path == "/openapi/v2" || path == "/openapi/v2/" {
        return crate::openapi_v2::serve(state, &parts.headers);
    }
    if path == "/openapi/v3" || path == "/openapi/v3/" {
        return finish(crate::openapi::root(state));
    }
    if let Some(gv) = path.strip_prefix("/openapi/v3/") {
        return finish(crate::openapi::group_version(state, gv));
    }
    let Some(target) = parse_path(&path) else {
        return error(&not_found_path());
    };
    let resource = match target {
        Target::Root { core } => return finish(discovery::root(state, core, &parts.headers)),
        Target::Group(group) => return finish(discovery::group(state, &group)),
        Target::GroupVersion { group, version } => {
            return finish(discovery::resources(state, &group, &version));
        }
        Target::Resource(r) => r,
    };
    let params = Params::parse(parts.uri.query());
    let connection = Connection {
        raw_query: parts.uri.query().map(str::to_string),
        upgrade: parts.extensions.remove::<hyper::upgrade::OnUpgrade>(),
    };
    finish(
        resource_request(
            state,
            parts.method,
            parts.headers,
            resource,
            params,
            body,
            user,
            connection,
        )
        .await,
    )
}

/// What a streaming subresource needs of the client's connection.
struct Connection {
    raw_query: Option<String>,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
}

#[allow(clippy::too_many_arguments)]
async fn resource_request(
    state: &Arc<ApiState>,
    method: Method,
    headers: HeaderMap,
    path: ResourcePath,
    params: Params,
    body: Bytes,
    user: &crate::authn::UserInfo,
    connection: Connection,
) -> ApiResult {
    if let Some(result) =
        super::review::special(state, user, &method, &headers, &path, &params, &body).await
    {
        return result;
    }
    let registry = state.registry();
    let info = registry
        .by_resource(&path.group, &path.version, &path.resource)
        .ok_or_else(not_found_path)?;
    if path.namespace.is_some() && !info.namespaced {
        return Err(not_found_path());
    }
    if let Some(sub) = &path.subresource
        && !info.has_subresource(sub)
    {
        return Err(not_found_path());
    }
    let watch = path.legacy_watch || params.flag("watch");
    let mut req = ApiRequest::new(method, path, info, params, headers, body, user.clone());
    req.raw_query = connection.raw_query;
    req.upgrade = std::sync::Mutex::new(connection.upgrade);
    crate::security::check_rbac_write(state, user, &req)?;
    let result = verb(state, &req, watch).await;
    let mut response = finish(result);
    let warnings = req.warnings.lock().unwrap_or_else(|p| p.into_inner());
    for w in warnings.iter() {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = axum::http::HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            response.headers_mut().append(header::WARNING, v);
        }
    }
    Ok(response)
}

fn is_core(req: &ApiRequest, plural: &str) -> bool {
    req.info.group.is_empty() && req.info.plural == plural
}

/// The verb of a request on a resource (not a subresource), as discovery names verbs.
fn verb_name(method: &Method, has_name: bool, watch: bool) -> &'static str {
    match (method, has_name) {
        (&Method::GET, _) if watch => "watch",
        (&Method::GET, true) => "get",
        (&Method::GET, false) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => "",
    }
}

async fn verb(state: &Arc<ApiState>, req: &ApiRequest, watch: bool) -> ApiResult {
    let has_name = req.path.name.is_some();
    let sub = req.path.subresource.clone();
    if sub.is_none() {
        let name = verb_name(&req.method, has_name, watch);
        if !req.info.verbs.iter().any(|v| v == name) {
            return Err(StatusError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource: {} {}",
                req.method,
                req.info.qualified()
            )));
        }
    }
    match (&req.method, has_name, sub.as_deref()) {
        (&Method::POST, false, None) if is_core(req, "bindings") => {
            binding::bind_named(state, req).await
        }
        (&Method::GET, false, None) if is_core(req, "componentstatuses") => {
            component_status::list(state, req).await
        }
        (&Method::GET, true, None) if is_core(req, "componentstatuses") => {
            component_status::get(state, req).await
        }
        (&Method::GET, _, None) if req.info.group == apimachinery::metrics::GROUP => {
            metrics::serve(state, req).await
        }
        (&Method::GET, false, None) if watch => watch::watch(state, req).await,
        (&Method::GET, true, None) if watch => watch::watch(state, req).await,
        (&Method::GET, false, None) => list::list(state, req).await,
        (&Method::GET, true, None | Some("status")) => get::get(state, req).await,
        (&Method::GET, true, Some("ephemeralcontainers")) if is_core(req, "pods") => {
            get::get(state, req).await
        }
        (&Method::GET, true, Some("scale")) => scale::get(state, req).await,
        (&Method::GET, true, Some("log")) => log::logs(state, req).await,
        (&Method::GET | &Method::POST, true, Some(sub @ ("exec" | "attach" | "portforward")))
            if is_core(req, "pods") =>
        {
            stream::stream(state, req, sub).await
        }
        (_, true, Some("proxy"))
            if is_core(req, "pods") || is_core(req, "services") || is_core(req, "nodes") =>
        {
            proxy::proxy(state, req).await
        }
        (&Method::POST, false, None) => create::create(state, req).await,
        (&Method::POST, true, Some("binding")) => binding::bind(state, req).await,
        (&Method::POST, true, Some("eviction")) => eviction::evict(state, req).await,
        (&Method::PUT, true, None | Some("status") | Some("finalize")) => {
            update::update(state, req).await
        }
        (&Method::PUT, true, Some("scale")) => scale::update(state, req).await,
        (&Method::PUT, true, Some("ephemeralcontainers")) if is_core(req, "pods") => {
            update::update(state, req).await
        }
        (&Method::GET, true, Some("approval"))
            if req.info.plural == "certificatesigningrequests" =>
        {
            get::get(state, req).await
        }
        (&Method::PUT, true, Some("approval"))
            if req.info.plural == "certificatesigningrequests" =>
        {
            update::update(state, req).await
        }
        (&Method::PATCH, true, Some("approval"))
            if req.info.plural == "certificatesigningrequests" =>
        {
            patch::patch(state, req).await
        }
        (&Method::PATCH, true, None | Some("status")) => patch::patch(state, req).await,
        (&Method::PATCH, true, Some("scale")) => scale::patch(state, req).await,
        (&Method::PATCH, true, Some("ephemeralcontainers")) if is_core(req, "pods") => {
            patch::patch(state, req).await
        }
        (&Method::DELETE, true, None) => delete::delete(state, req).await,
        (&Method::DELETE, false, None) => delete_collection::delete_collection(state, req).await,
        (m, _, _) => Err(StatusError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource: {m} {}",
            req.info.qualified()
        ))),
    }
}

/// How long a health check waits for storage.
const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// `/healthz`, `/livez`, `/readyz`: 200 when storage answers within [`HEALTH_TIMEOUT`], 503
/// otherwise.
async fn health(state: &ApiState) -> Response {
    match tokio::time::timeout(HEALTH_TIMEOUT, state.store().current_revision()).await {
        Ok(Ok(_)) => text(StatusCode::OK, "ok"),
        _ => text(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable"),
    }
}
