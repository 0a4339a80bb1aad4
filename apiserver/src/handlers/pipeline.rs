//! The outer pipeline every request passes, in order: authentication (and impersonation), the
//! in-flight limit, audit, authorization; then the body is read and the request routed.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::header;
use axum::response::Response;

use crate::request::{Target, parse_path};
use crate::response::error;
use crate::state::ApiState;

/// Whether a pod subresource streams over an upgraded connection.
fn streaming_subresource(sub: &str) -> bool {
    matches!(sub, "exec" | "attach" | "portforward")
}

/// The one handler behind every route: the outer pipeline (authentication, impersonation,
/// in-flight limit, audit, authorization), then the request itself; counted in the request
/// metrics whatever its outcome.
pub async fn dispatch(State(state): State<Arc<ApiState>>, req: axum::extract::Request) -> Response {
    let started = Instant::now();
    let attrs = crate::rbac::Attributes::from_request(
        req.method().as_str(),
        req.uri().path(),
        req.uri().query(),
    );
    let labels = crate::metrics::request_labels(req.method().as_str(), req.uri().path(), &attrs);
    let sub = attrs
        .resource
        .as_ref()
        .map_or("", |r| r.subresource.as_str());
    let long_running = crate::inflight::long_running(&attrs.verb, sub);
    let response = pipeline(state, req, attrs, long_running).await;
    crate::metrics::finish(labels, response, started, long_running)
}

async fn pipeline(
    state: Arc<ApiState>,
    req: axum::extract::Request,
    attrs: crate::rbac::Attributes,
    long_running: bool,
) -> Response {
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
    let sub = attrs
        .resource
        .as_ref()
        .map_or("", |r| r.subresource.as_str());
    let metrics = telemetry::apiserver::metrics();
    let _slot = match long_running {
        true => None,
        false => match security.inflight.acquire(attrs.is_read_only()) {
            Ok(slot) => Some((slot, metrics.inflight(attrs.is_read_only()))),
            Err(e) => {
                metrics.drop_request(attrs.is_read_only());
                return error(&e);
            }
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
    // A streaming subresource opened by a WebSocket GET needs `create` as well, as
    // kube-apiserver asks since 1.30 (AuthorizePodWebsocketUpgradeCreatePermission).
    let create = (attrs.verb == "get" && streaming_subresource(sub)).then(|| {
        let mut create = attrs.clone();
        create.verb = "create".into();
        create
    });
    let denied = if !security.authz.allows(&state, &user, &attrs) {
        Some(&attrs)
    } else {
        create
            .as_ref()
            .filter(|c| !security.authz.allows(&state, &user, c))
    };
    if let Some(r) = &mut record {
        r.decision(denied.is_none());
    }
    let response = if let Some(denied) = denied {
        error(&denied.forbidden(&user))
    } else {
        match super::body::read_body(body).await {
            Err(e) => error(&e),
            Ok(bytes) => {
                if let Some(r) = &mut record {
                    r.request_body(&bytes);
                }
                super::route::serve(&state, parts, bytes, &user).await
            }
        }
    };
    match record {
        Some(r) => r.finish(response, long_running).await,
        None => response,
    }
}
