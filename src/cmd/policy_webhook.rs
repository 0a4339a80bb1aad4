//! `gitplane policy-webhook`: an example admission webhook over HTTPS (rustls with ring).
//!
//! `POST /mutate` adds the label `gitplane.io/policy: checked` to every object it sees;
//! `POST /validate` refuses containers whose image is untagged or tagged `latest` (a digest is
//! fine). `examples-repo/platform/policy-webhook.yaml` registers both with the API server. It
//! prints `listening on ADDRESS` on standard output once it accepts connections.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};

use super::server;

/// The label the mutating side adds.
pub const LABEL: &str = "gitplane.io/policy";

/// Flags of `gitplane policy-webhook`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    #[arg(long, default_value = "127.0.0.1:9443")]
    pub listen: String,
    /// PEM certificate chain of the server.
    #[arg(long)]
    pub tls_cert: PathBuf,
    /// PEM private key of the server.
    #[arg(long)]
    pub tls_key: PathBuf,
}

/// Runs the webhook until SIGINT/SIGTERM.
pub fn run(args: Args) -> anyhow::Result<u8> {
    server::init_logging();
    server::block_on(serve(args))?
}

async fn serve(args: Args) -> anyhow::Result<u8> {
    let certs = CertificateDer::pem_file_iter(&args.tls_cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading --tls-cert {}", args.tls_cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&args.tls_key)
        .with_context(|| format!("reading --tls-key {}", args.tls_key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("the certificate and key do not make a TLS configuration")?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    println!("listening on {}", listener.local_addr()?);
    let shutdown = server::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = &mut shutdown => return Ok(0),
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let service = hyper::service::service_fn(handle);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await
            {
                tracing::warn!(%peer, error = %e, "connection failed");
            }
        });
    }
}

async fn handle(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let body = match http_body_util::Limited::new(req.into_body(), 3 << 20)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Ok(reply(
                StatusCode::BAD_REQUEST,
                json!({"error": "unreadable body"}),
            ));
        }
    };
    let Ok(review) = serde_json::from_slice::<Value>(&body) else {
        return Ok(reply(StatusCode::BAD_REQUEST, json!({"error": "not JSON"})));
    };
    let request = review.get("request").cloned().unwrap_or(Value::Null);
    let response = match path.as_str() {
        "/mutate" => mutate(&request),
        "/validate" => validate(&request),
        _ => {
            return Ok(reply(
                StatusCode::NOT_FOUND,
                json!({"error": "no such path"}),
            ));
        }
    };
    Ok(reply(
        StatusCode::OK,
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}),
    ))
}

fn reply(code: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = code;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn uid(request: &Value) -> Value {
    request.get("uid").cloned().unwrap_or(Value::Null)
}

/// The mutating answer: a JSON patch adding the policy label.
pub fn mutate(request: &Value) -> Value {
    let object = request.get("object").unwrap_or(&Value::Null);
    let patch = if object
        .pointer("/metadata/labels")
        .is_some_and(Value::is_object)
    {
        json!([{"op": "add", "path": "/metadata/labels/gitplane.io~1policy", "value": "checked"}])
    } else {
        json!([{"op": "add", "path": "/metadata/labels", "value": {LABEL: "checked"}}])
    };
    json!({
        "uid": uid(request),
        "allowed": true,
        "patchType": "JSONPatch",
        "patch": base64::engine::general_purpose::STANDARD.encode(patch.to_string()),
    })
}

/// Images of every container list anywhere in the object (pods and pod templates).
fn images(v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                if matches!(k.as_str(), "containers" | "initContainers")
                    && let Some(list) = child.as_array()
                {
                    for c in list {
                        let s =
                            |f: &str| c.get(f).and_then(Value::as_str).unwrap_or("").to_string();
                        out.push((s("name"), s("image")));
                    }
                } else {
                    images(child, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| images(i, out)),
        _ => {}
    }
}

/// Why an image is refused, if it is.
pub fn image_problem(image: &str) -> Option<&'static str> {
    if image.contains('@') {
        return None;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        None => Some("has no tag"),
        Some((_, "latest")) => Some("is tagged latest"),
        Some(_) => None,
    }
}

/// The validating answer: refused when a container's image is untagged or `latest`.
pub fn validate(request: &Value) -> Value {
    let mut found = Vec::new();
    images(request.get("object").unwrap_or(&Value::Null), &mut found);
    let problems: Vec<String> = found
        .iter()
        .filter_map(|(name, image)| {
            image_problem(image)
                .map(|p| format!("container \"{name}\": image \"{image}\" {p}; pin a version"))
        })
        .collect();
    if problems.is_empty() {
        json!({"uid": uid(request), "allowed": true})
    } else {
        json!({"uid": uid(request), "allowed": false,
            "status": {"code": 403, "reason": "Forbidden", "message": problems.join("; ")}})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(image: &str, expected: Option<&str>) {
        assert_eq!(image_problem(image), expected, "{image}");
    }

    #[test]
    fn untagged_and_latest_images_are_refused_and_others_pass() {
        check("nginx", Some("has no tag"));
        check("nginx:latest", Some("is tagged latest"));
        check("registry:5000/app", Some("has no tag"));
        check("registry:5000/app:1.2", None);
        check("nginx@sha256:abc", None);
        let pod = json!({"uid": "u", "object": {"spec": {"containers": [{"name": "web", "image": "nginx"}]}}});
        assert_eq!(
            validate(&pod)["status"]["message"],
            "container \"web\": image \"nginx\" has no tag; pin a version"
        );
        let fine = json!({"uid": "u", "object": {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}}}});
        assert_eq!(validate(&fine)["allowed"], true);
        assert_eq!(
            mutate(&json!({"uid": "u", "object": {}}))["patchType"],
            "JSONPatch"
        );
    }
}
