//! The API server's side of the metrics: the labels of a request (kube-apiserver's verb, group,
//! version, resource, subresource and scope), counting a finished request (a long-running one
//! stays in `apiserver_longrunning_requests` while its body streams), and `GET /metrics`
//! (authorized by RBAC as the non-resource URL `/metrics`, as in Kubernetes), which refreshes
//! `apiserver_storage_objects` from the watch cache and shows every family of this process.

use std::time::Instant;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use http_body_util::BodyExt;
use telemetry::apiserver::{RequestLabels, metrics};

use crate::rbac::Attributes;
use crate::request::{Target, parse_path};
use crate::state::ApiState;

/// kube-apiserver's verb label of a request: upper case, `LIST` and `WATCH` told apart from
/// `GET`, `CONNECT` for streaming subresources and proxies.
fn verb_label(attrs: &Attributes, method: &str) -> String {
    let sub = attrs
        .resource
        .as_ref()
        .map_or("", |r| r.subresource.as_str());
    if matches!(sub, "exec" | "attach" | "portforward" | "proxy") {
        return "CONNECT".into();
    }
    match attrs.verb.as_str() {
        "get" => "GET",
        "list" => "LIST",
        "watch" => "WATCH",
        "create" => "POST",
        "update" => "PUT",
        "patch" => "PATCH",
        "delete" | "deletecollection" => "DELETE",
        _ => return method.to_ascii_uppercase(),
    }
    .into()
}

/// The labels of a request for `path` with these authorization attributes.
pub fn request_labels(method: &str, path: &str, attrs: &Attributes) -> RequestLabels {
    let version = match parse_path(path) {
        Some(Target::Resource(r)) => r.version,
        _ => String::new(),
    };
    let (group, resource, subresource, scope) = match &attrs.resource {
        Some(r) => {
            let scope = if !r.name.is_empty() {
                "resource"
            } else if !r.namespace.is_empty() {
                "namespace"
            } else {
                "cluster"
            };
            (
                r.group.clone(),
                r.resource.clone(),
                r.subresource.clone(),
                scope.to_string(),
            )
        }
        None => Default::default(),
    };
    RequestLabels {
        verb: verb_label(attrs, method),
        group,
        version,
        resource,
        subresource,
        scope,
        component: "apiserver",
    }
}

/// Counts a request whose response is `response`: its code and duration; a long-running
/// request's successful response carries a guard in its body that keeps it in
/// `apiserver_longrunning_requests` until the stream ends.
pub fn finish(
    labels: RequestLabels,
    response: Response,
    started: Instant,
    long_running: bool,
) -> Response {
    let m = metrics();
    let status = response.status();
    m.request(&labels, status.as_u16(), started.elapsed());
    if !long_running || !(status.is_success() || status == StatusCode::SWITCHING_PROTOCOLS) {
        return response;
    }
    let guard = m.longrunning(&labels);
    response.map(|body| {
        Body::new(body.map_frame(move |frame| {
            let _open = &guard;
            frame
        }))
    })
}

/// `GET /metrics`: every family of this process, after refreshing the stored objects' counts.
pub fn exposition(state: &ApiState) -> Response {
    metrics().set_storage_objects(state.cache().counts());
    let mut response = Response::new(Body::from(telemetry::encode()));
    if let Ok(v) = header::HeaderValue::from_str(telemetry::CONTENT_TYPE) {
        response.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(method: &str, uri: &str, expected: [&str; 6]) {
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        let attrs = Attributes::from_request(method, path, Some(query));
        let l = request_labels(method, path, &attrs);
        assert_eq!(
            [
                l.verb.as_str(),
                &l.group,
                &l.version,
                &l.resource,
                &l.subresource,
                &l.scope
            ],
            expected,
            "{method} {uri}"
        );
    }

    #[test]
    fn requests_get_kube_apiservers_labels() {
        check(
            "GET",
            "/api/v1/namespaces/default/pods",
            ["LIST", "", "v1", "pods", "", "namespace"],
        );
        check(
            "GET",
            "/api/v1/pods?watch=true",
            ["WATCH", "", "v1", "pods", "", "cluster"],
        );
        check(
            "PATCH",
            "/apis/apps/v1/namespaces/a/deployments/web/status",
            ["PATCH", "apps", "v1", "deployments", "status", "resource"],
        );
        check(
            "POST",
            "/api/v1/namespaces/a/pods/p/exec",
            ["CONNECT", "", "v1", "pods", "exec", "resource"],
        );
        check(
            "DELETE",
            "/apis/apps/v1/namespaces/a/deployments",
            ["DELETE", "apps", "v1", "deployments", "", "namespace"],
        );
        check("GET", "/metrics", ["GET", "", "", "", "", ""]);
    }
}
