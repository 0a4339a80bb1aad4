//! Request handlers: one file per API verb, dispatched from [`dispatch`].
//!
//! [`dispatch`] is the single axum fallback handler: it parses the path, finds the resource in
//! the registry, reads the body (at most [`MAX_BODY`]) and calls the verb's handler. Handlers
//! return [`ApiResult`]; errors become `metav1.Status` responses.

mod binding;
mod component_status;
mod create;
pub(crate) mod delete;
mod delete_collection;
pub(crate) mod eviction;
mod get;
mod list;
mod log;
mod patch;
mod scale;
mod update;
mod watch;
pub(crate) mod write;

pub use patch::{apply_patch, patch_type};

use std::sync::Arc;

use apimachinery::protobuf::{self, ProtobufError};
use apimachinery::registry::ResourceInfo;
use apimachinery::status::{Reason, StatusError};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;

use crate::discovery;
use crate::request::{Params, ResourcePath, Target, parse_path};
use crate::response::{ApiResult, error, finish, text};
use crate::state::ApiState;

/// The largest request body accepted (Kubernetes' limit).
pub const MAX_BODY: usize = 3 * 1024 * 1024;
/// How much of a too-large body is read and dropped before answering 413, so that the client
/// is still listening when the answer comes; beyond it the connection is closed.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// A parsed request for a resource.
pub struct ApiRequest {
    /// HTTP method.
    pub method: Method,
    /// Where the request points.
    pub path: ResourcePath,
    /// The resource.
    pub info: Arc<ResourceInfo>,
    /// Query parameters.
    pub params: Params,
    /// Request headers.
    pub headers: HeaderMap,
    /// Request body.
    pub body: Bytes,
    /// Warnings for the client, sent as `Warning` headers (unknown fields under
    /// `fieldValidation=Warn`, webhooks' warnings).
    pub warnings: std::sync::Mutex<Vec<String>>,
    /// Who makes the request (after authentication and impersonation).
    pub user: crate::authn::UserInfo,
}

impl ApiRequest {
    /// The namespace of the request (for namespaced resources).
    pub fn namespace(&self) -> Option<&str> {
        self.path.namespace.as_deref()
    }

    /// The object name; requests that reach a handler needing one always have one.
    pub fn name(&self) -> &str {
        self.path.name.as_deref().unwrap_or("")
    }

    /// The body as a JSON value, decoding Kubernetes protobuf bodies to the JSON Kubernetes would
    /// write; 415 for other content types and for protobuf kinds without a field table, 400
    /// naming the problem when the body is malformed.
    pub fn json_body(&self) -> Result<serde_json::Value, StatusError> {
        let ct = self
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json");
        let base = ct.split(';').next().unwrap_or("").trim();
        if base == protobuf::MEDIA_TYPE {
            return protobuf::decode(&self.body).map_err(|e| match e {
                ProtobufError::UnknownKind { .. } => {
                    StatusError::new(Reason::UnsupportedMediaType, e.to_string())
                }
                e => StatusError::bad_request(format!("the body of the request was invalid: {e}")),
            });
        }
        if !(base.is_empty() || base == "application/json" || base.ends_with("+json")) {
            return Err(StatusError::new(
                Reason::UnsupportedMediaType,
                format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json, application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/vnd.kubernetes.protobuf (got {ct:?})"
                ),
            ));
        }
        if self.body.is_empty() {
            return Err(StatusError::bad_request("the request body is empty"));
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            StatusError::bad_request(format!(
                "the body of the request was in an unknown format: {e}"
            ))
        })
    }

    /// What a write through this path may change: only status on `.../status`.
    pub fn update_scope(&self) -> crate::strategy::UpdateScope {
        match self.path.subresource.as_deref() {
            Some("status") => crate::strategy::UpdateScope::Status,
            _ => crate::strategy::UpdateScope::Main,
        }
    }

    /// Fields given twice in the JSON body: a 400 under `fieldValidation=Strict`, a warning
    /// under `Warn` (the default), nothing under `Ignore`. The last value wins, as in Kubernetes.
    pub fn check_duplicates(&self) -> Result<(), StatusError> {
        let ct = self
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json");
        if ct.starts_with(protobuf::MEDIA_TYPE) {
            return Ok(());
        }
        let duplicates = apimachinery::typed::duplicate_fields(&self.body);
        if duplicates.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = duplicates
            .iter()
            .map(|f| format!("duplicate field \"{f}\""))
            .collect();
        match self.params.get("fieldValidation").unwrap_or("Warn") {
            "Strict" => Err(StatusError::bad_request(format!(
                "strict decoding error: {}",
                list.join(", ")
            ))),
            "Ignore" => Ok(()),
            _ => {
                list.into_iter().for_each(|w| self.warn(w));
                Ok(())
            }
        }
    }

    /// Adds a warning for the client.
    pub fn warn(&self, warning: impl Into<String>) {
        let w = warning.into();
        let mut list = self.warnings.lock().unwrap_or_else(|p| p.into_inner());
        if !list.contains(&w) {
            list.push(w);
        }
    }

    /// Checks an object against its type (built-in kinds) or its CRD's structural schema
    /// (custom resources) and returns it as stored: a wrong type is a 400 always; unknown fields
    /// are a 400 under `fieldValidation=Strict` (kubectl's default), dropped with a `Warning`
    /// header under `Warn` (the server's default, as in Kubernetes) and dropped silently under
    /// `Ignore`. Custom resources then get their schema's defaults.
    pub fn check_typed(&self, obj: serde_json::Value) -> Result<serde_json::Value, StatusError> {
        self.check_typed_as(obj, self.params.get("fieldValidation").unwrap_or("Warn"))
    }

    /// [`ApiRequest::check_typed`] under a given `fieldValidation` mode.
    pub fn check_typed_as(
        &self,
        obj: serde_json::Value,
        mode: &str,
    ) -> Result<serde_json::Value, StatusError> {
        if !matches!(mode, "Strict" | "Warn" | "Ignore") {
            return Err(StatusError::bad_request(format!(
                "fieldValidation parameter unsupported: {mode:?}; supported values: \"Ignore\", \"Warn\", \"Strict\""
            )));
        }
        let (mut obj, unknown) = if self.info.custom {
            let mut obj = obj;
            let unknown = match &self.info.schema {
                Some(schema) => apimachinery::schema::prune(schema, &mut obj),
                None => Vec::new(),
            };
            (obj, unknown)
        } else {
            let gvk = self.info.gvk();
            // The body may leave apiVersion and kind to the URL.
            let mut full = obj.clone();
            if let Some(m) = full.as_object_mut() {
                m.entry("apiVersion")
                    .or_insert_with(|| self.info.api_version().into());
                m.entry("kind")
                    .or_insert_with(|| self.info.kind.clone().into());
            }
            match apimachinery::typed::check(&gvk, &full) {
                Err(e) => return Err(StatusError::bad_request(e.to_string())),
                Ok(Some(unknown)) if !unknown.is_empty() => {
                    let mut obj = obj;
                    apimachinery::typed::prune(&mut obj, &unknown);
                    (obj, unknown.iter().map(ToString::to_string).collect())
                }
                Ok(_) => (obj, Vec::new()),
            }
        };
        if !unknown.is_empty() {
            let list: Vec<String> = unknown
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect();
            match mode {
                "Strict" => {
                    return Err(StatusError::bad_request(format!(
                        "strict decoding error: {}",
                        list.join(", ")
                    )));
                }
                "Warn" => list.into_iter().for_each(|w| self.warn(w)),
                _ => {}
            }
        }
        if let Some(schema) = self.info.schema.as_deref() {
            apimachinery::schema::default(schema, &mut obj);
        }
        Ok(obj)
    }

    /// A 404 for the object this request names.
    pub fn not_found(&self) -> StatusError {
        StatusError::not_found(&self.info.group, &self.info.plural, self.name())
    }
}

fn not_found_path() -> StatusError {
    StatusError::new(
        Reason::NotFound,
        "the server could not find the requested resource",
    )
}

/// The one handler behind every route: the outer pipeline (authentication, impersonation,
/// in-flight limit, audit, authorization), then the request itself.
pub async fn dispatch(State(state): State<Arc<ApiState>>, req: axum::extract::Request) -> Response {
    let (parts, body) = req.into_parts();
    let security = state.security();
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<crate::listener::PeerInfo>>()
        .map(|c| c.0.clone());
    let certs = peer.as_ref().and_then(|p| p.certs.clone());
    let authenticated = match security.authn.authenticate(
        &state,
        &parts.headers,
        certs.as_deref().map(Vec::as_slice),
    ) {
        Ok(u) => u,
        Err(e) => return error(&e),
    };
    let user = match crate::authn::impersonate::apply(
        &state,
        &security.authz,
        authenticated.clone(),
        &parts.headers,
    ) {
        Ok(u) => u,
        Err(e) => return error(&e),
    };
    let attrs = crate::rbac::Attributes::from_request(
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query(),
    );
    let sub = attrs
        .resource
        .as_ref()
        .map_or("", |r| r.subresource.as_str());
    let long_running = crate::inflight::long_running(&attrs.verb, sub);
    let _slot = match long_running {
        true => None,
        false => match security.inflight.acquire(attrs.is_read_only()) {
            Ok(slot) => Some(slot),
            Err(e) => return error(&e),
        },
    };
    let mut record = security.audit.as_ref().and_then(|a| {
        let info = crate::audit::RequestInfo {
            uri: parts.uri.to_string(),
            source_ip: peer
                .as_ref()
                .map(|p| p.addr.ip().to_string())
                .unwrap_or_default(),
            user_agent: parts
                .headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            api_version: match parse_path(parts.uri.path()) {
                Some(Target::Resource(r)) => {
                    apimachinery::registry::join_api_version(&r.group, &r.version)
                }
                _ => String::new(),
            },
        };
        let impersonated = (user != authenticated).then_some(&user);
        a.begin(info, &authenticated, impersonated, &attrs)
    });
    let allowed = security.authz.allows(&state, &user, &attrs);
    if let Some(r) = &mut record {
        r.decision(allowed);
    }
    let response = if !allowed {
        error(&attrs.forbidden(&user))
    } else {
        match read_body(body).await {
            Err(e) => error(&e),
            Ok(bytes) => {
                if let Some(r) = &mut record {
                    r.request_body(&bytes);
                }
                serve(&state, parts, bytes, &user).await
            }
        }
    };
    match record {
        Some(r) => r.finish(response, long_running).await,
        None => response,
    }
}

/// Serves an authenticated and authorized request.
async fn serve(
    state: &Arc<ApiState>,
    parts: axum::http::request::Parts,
    body: Bytes,
    user: &crate::authn::UserInfo,
) -> Response {
    let path = parts.uri.path().to_string();
    match path.as_str() {
        "/healthz" | "/livez" | "/readyz" => return health(state).await,
        "/version" | "/version/" => {
            return crate::response::json(StatusCode::OK, &discovery::version());
        }
        _ => {}
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
    finish(
        resource_request(
            state,
            parts.method,
            parts.headers,
            resource,
            params,
            body,
            user,
        )
        .await,
    )
}

async fn read_body(body: Body) -> Result<Bytes, StatusError> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(StatusError::bad_request(
                "the request body could not be read",
            ));
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len();
        if seen <= MAX_BODY {
            buf.extend_from_slice(&data);
        } else if seen > DRAIN_LIMIT {
            break;
        }
    }
    if seen > MAX_BODY {
        // Read (and drop) what the client sends so that it gets to see the answer.
        return Err(StatusError::new(
            Reason::RequestEntityTooLarge,
            format!("the request body is larger than the limit of {MAX_BODY} bytes"),
        ));
    }
    Ok(buf.freeze())
}

async fn resource_request(
    state: &Arc<ApiState>,
    method: Method,
    headers: HeaderMap,
    path: ResourcePath,
    params: Params,
    body: Bytes,
    user: &crate::authn::UserInfo,
) -> ApiResult {
    if let Some(result) =
        crate::security::special(state, user, &method, &headers, &path, &params, &body).await
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
    let req = ApiRequest {
        method,
        path,
        info,
        params,
        headers,
        body,
        warnings: Default::default(),
        user: user.clone(),
    };
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
        (&Method::GET, false, None) if watch => watch::watch(state, req).await,
        (&Method::GET, true, None) if watch => watch::watch(state, req).await,
        (&Method::GET, false, None) => list::list(state, req).await,
        (&Method::GET, true, None | Some("status")) => get::get(state, req).await,
        (&Method::GET, true, Some("scale")) => scale::get(state, req).await,
        (&Method::GET, true, Some("log")) => log::logs(state, req).await,
        (&Method::POST, false, None) => create::create(state, req).await,
        (&Method::POST, true, Some("binding")) => binding::bind(state, req).await,
        (&Method::POST, true, Some("eviction")) => eviction::evict(state, req).await,
        (&Method::PUT, true, None | Some("status") | Some("finalize")) => {
            update::update(state, req).await
        }
        (&Method::PUT, true, Some("scale")) => scale::update(state, req).await,
        (&Method::PATCH, true, None | Some("status")) => patch::patch(state, req).await,
        (&Method::PATCH, true, Some("scale")) => scale::patch(state, req).await,
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
    match tokio::time::timeout(HEALTH_TIMEOUT, state.store.current_revision()).await {
        Ok(Ok(_)) => text(StatusCode::OK, "ok"),
        _ => text(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable"),
    }
}

#[cfg(test)]
mod tests {
    use apimachinery::registry::Registry;
    use serde_json::json;

    use super::*;

    /// A kubectl 1.32 `create configmap c1 --from-literal=a=b` body.
    const CONFIGMAP: &[u8] = b"k8s\0\x0a\x0f\x0a\x02v1\x12\x09ConfigMap\x12\x1c\x0a\x12\x0a\x02c1\x12\x00\x1a\x00\x22\x00\x2a\x00\x32\x00\x38\x00\x42\x00\x12\x06\x0a\x01a\x12\x01b\x1a\x00\x22\x00";

    fn request(content_type: &str, body: &[u8]) -> ApiRequest {
        let Some(Target::Resource(path)) = parse_path("/api/v1/namespaces/default/configmaps")
        else {
            unreachable!("a resource path")
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            content_type.parse().expect("a header value"),
        );
        ApiRequest {
            method: Method::POST,
            info: Registry::builtin()
                .by_resource("", "v1", "configmaps")
                .expect("configmaps are built in"),
            path,
            params: Params::parse(None),
            headers,
            body: Bytes::copy_from_slice(body),
            warnings: Default::default(),
            user: crate::authn::UserInfo::anonymous(),
        }
    }

    fn check(content_type: &str, body: &[u8], expected: Result<serde_json::Value, (u16, &str)>) {
        let got = request(content_type, body)
            .json_body()
            .map_err(|e| (e.code(), e.message));
        let expected = expected.map_err(|(code, m)| (code, m.to_string()));
        assert_eq!(got, expected, "{content_type}");
    }

    #[test]
    fn protobuf_bodies_are_decoded_to_json_and_their_problems_named() {
        let configmap = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "c1", "creationTimestamp": null},
            "data": {"a": "b"},
        });
        check(
            "application/vnd.kubernetes.protobuf",
            CONFIGMAP,
            Ok(configmap.clone()),
        );
        check(
            "application/json",
            br#"{"kind":"ConfigMap"}"#,
            Ok(json!({"kind": "ConfigMap"})),
        );
        check(
            "application/vnd.kubernetes.protobuf",
            &CONFIGMAP[..30],
            Err((
                400,
                "the body of the request was invalid: protobuf message k8s.io.apimachinery.pkg.runtime.Unknown is truncated",
            )),
        );
        check(
            "application/vnd.kubernetes.protobuf",
            b"k8s\0\x0a\x0a\x0a\x02v1\x12\x04Node\x12\x02\x08\x01",
            Err((
                400,
                "the body of the request was invalid: protobuf field 1 (metadata) of k8s.io.api.core.v1.Node has wire type 0, which does not match its type",
            )),
        );
        check(
            "application/vnd.kubernetes.protobuf",
            b"k8s\0\x0a\x0d\x0a\x02v1\x12\x07Unknown",
            Err((
                415,
                "the server cannot decode protobuf for kind \"Unknown\" of \"v1\"; send the object as JSON",
            )),
        );
        check(
            "application/yaml",
            b"kind: ConfigMap",
            Err((
                415,
                "the body of the request was in an unknown format - accepted media types include: application/json, application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/vnd.kubernetes.protobuf (got \"application/yaml\")",
            )),
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Hostile bodies of every accepted content type are refused with a 4xx, never a panic.
        #[test]
        fn hostile_bodies_get_a_client_error(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            kind in 0usize..5,
        ) {
            let ct = ["application/json", "application/vnd.kubernetes.protobuf", "application/yaml", "application/merge-patch+json", "text/plain"][kind];
            let req = request(ct, &body);
            match req.json_body() {
                Ok(v) => {
                    let _ = req.check_typed(v);
                }
                Err(e) => proptest::prop_assert!((400..500).contains(&e.code()), "{}", e.message),
            }
        }
    }

    #[test]
    fn deep_nesting_huge_numbers_and_invalid_utf8_are_bad_requests() {
        for body in [
            "[".repeat(200_000).into_bytes(),
            format!("{{\"data\":{}}}", "{\"a\":".repeat(5000)).into_bytes(),
            b"{\"metadata\":{\"name\":1e999}}".to_vec(),
            b"{\"metadata\":{\"name\":\"\xff\xfe\"}}".to_vec(),
        ] {
            let e = request("application/json", &body)
                .json_body()
                .expect_err("refused");
            assert_eq!(e.code(), 400, "{}", e.message);
        }
    }

    #[test]
    fn delete_options_may_come_as_protobuf() {
        let body = b"k8s\0\x0a\x1f\x0a\x0emeta.k8s.io/v1\x12\x0dDeleteOptions\x12\x0e\x08\x00\x22\x0aForeground";
        let req = request("application/vnd.kubernetes.protobuf", body);
        let options = delete::DeleteOptions::from_request(&req).expect("valid options");
        assert_eq!(options.propagation.as_deref(), Some("Foreground"));
        assert_eq!(options.grace_period, Some(0));
    }
}
