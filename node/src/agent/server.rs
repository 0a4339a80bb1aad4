//! The agent's HTTPS server (the kubelet's port, advertised in `daemonEndpoints`): container
//! logs (`logs`), and `exec`, `attach` and `portForward` sessions, which it asks the runtime
//! for with CRI `Exec`, `Attach` and `PortForward` and proxies to the URL the runtime answers
//! (`crate::streaming::proxy`).
//!
//! Only the API server is served: a client must present a certificate of the cluster CA
//! (`Config::client_ca`) whose user is `kube-apiserver-kubelet-client`; a handshake without
//! one fails, any other user gets 403. The serving certificate is self-signed (the API server
//! does not verify it, as kube-apiserver without `--kubelet-certificate-authority`).

use std::sync::Arc;
use std::time::Duration;

use apimachinery::streaming::{APISERVER_NODE_CLIENT, RemoteCommand};
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{any, get};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

use super::labels;
use crate::runtime::{RuntimeClient, api};
use crate::streaming::proxy::{forward_to, refusal};

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors setting the server up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The cluster CA given to the agent is not a PEM certificate.
    #[error("the client CA is not usable: {0}")]
    ClientCa(String),
    /// The serving certificate could not be made or used.
    #[error("cannot set up the agent's TLS: {0}")]
    Setup(String),
}

/// The TLS configuration: a self-signed certificate for `node_ip`, client certificates of
/// `client_ca` required (without a CA, none are asked for and every request is refused).
pub fn tls_config(
    node_ip: &str,
    client_ca: Option<&str>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?;
    let builder = match client_ca {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certs(pem)? {
                roots
                    .add(cert)
                    .map_err(|e| TlsError::ClientCa(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(TlsError::ClientCa("no certificate found".into()));
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| TlsError::Setup(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let names = vec![node_ip.to_string(), "localhost".to_string()];
    let issued =
        rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Setup(e.to_string()))?;
    let key = PrivateKeyDer::Pkcs8(issued.signing_key.serialize_der().into());
    let config = builder
        .with_single_cert(vec![issued.cert.der().clone()], key)
        .map_err(|e| TlsError::Setup(e.to_string()))?;
    Ok(Arc::new(config))
}

fn certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::ClientCa(e.to_string()))
}

/// Whether the leaf certificate names the API server's node client.
fn is_apiserver(certs: Option<&[CertificateDer<'_>]>) -> bool {
    let Some(leaf) = certs.and_then(|c| c.first()) else {
        return false;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf.as_ref()) else {
        return false;
    };
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        == Some(APISERVER_NODE_CLIENT)
}

#[derive(Clone)]
struct Ctx {
    runtime: RuntimeClient,
}

/// The routes of the server: logs, exec, attach, port-forward, health.
pub(super) fn routes(runtime: RuntimeClient, logs_root: std::path::PathBuf) -> Router {
    Router::new()
        .route("/exec/{ns}/{pod}/{container}", any(exec))
        .route("/attach/{ns}/{pod}/{container}", any(attach))
        .route("/portForward/{ns}/{pod}", any(port_forward))
        .with_state(Ctx {
            runtime: runtime.clone(),
        })
        .merge(super::logs::routes(runtime, logs_root))
        .route("/healthz", get(|| async { "ok" }))
}

/// Serves `app` over TLS on `listener` until `stop`, to the API server only.
pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    stop: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, addr) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let (acceptor, app, stop) = (acceptor.clone(), app.clone(), stop.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%addr, error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => return,
            };
            let app = if is_apiserver(tls.get_ref().1.peer_certificates()) {
                app
            } else {
                Router::new().fallback(|| async {
                    refusal(
                        StatusCode::FORBIDDEN,
                        format!("the node agent serves {APISERVER_NODE_CLIENT} only"),
                    )
                })
            };
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                .with_upgrades();
            tokio::select! {
                _ = conn => {}
                _ = stop.cancelled() => {}
            }
        });
    }
}

/// The id of the running container `container` of pod `ns/pod` (the newest attempt).
async fn running_container(
    runtime: &RuntimeClient,
    ns: &str,
    pod: &str,
    container: &str,
) -> Result<String, Response> {
    let filter = api::ContainerFilter {
        state: Some(api::ContainerStateValue {
            state: api::ContainerState::ContainerRunning as i32,
        }),
        label_selector: labels::of_container(ns, pod, container),
        ..Default::default()
    };
    let listed = runtime
        .clone()
        .list_containers(api::ListContainersRequest {
            filter: Some(filter),
        })
        .await
        .map(|l| {
            let items = l.into_inner().containers;
            items.into_iter().map(|c| (c.created_at, c.id)).collect()
        });
    newest(
        listed,
        format!("container {container} in pod {ns}/{pod} is not running"),
    )
    .map_err(|(code, message)| refusal(code, message))
}

/// The id of the newest of what the runtime listed (creation time, id), or the refusal: a 404
/// saying what is `missing`.
fn newest(
    listed: Result<Vec<(i64, String)>, tonic::Status>,
    missing: String,
) -> Result<String, (StatusCode, String)> {
    listed
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.message().to_string()))?
        .into_iter()
        .max_by_key(|(created, _)| *created)
        .map(|(_, id)| id)
        .ok_or((StatusCode::NOT_FOUND, missing))
}

async fn exec(
    State(ctx): State<Ctx>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    let rc = RemoteCommand::parse(req.uri().query().unwrap_or(""));
    if rc.command.is_empty() {
        return refusal(
            StatusCode::BAD_REQUEST,
            "you must specify at least 1 command",
        );
    }
    let id = match running_container(&ctx.runtime, &ns, &pod, &container).await {
        Ok(id) => id,
        Err(r) => return r,
    };
    let answer = ctx
        .runtime
        .clone()
        .exec(api::ExecRequest {
            container_id: id,
            cmd: rc.command,
            tty: rc.tty,
            stdin: rc.stdin,
            stdout: rc.stdout,
            stderr: rc.stderr,
        })
        .await;
    answer_url(req, "exec", answer.map(|r| r.into_inner().url)).await
}

async fn attach(
    State(ctx): State<Ctx>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    let rc = RemoteCommand::parse(req.uri().query().unwrap_or(""));
    let id = match running_container(&ctx.runtime, &ns, &pod, &container).await {
        Ok(id) => id,
        Err(r) => return r,
    };
    let answer = ctx
        .runtime
        .clone()
        .attach(api::AttachRequest {
            container_id: id,
            stdin: rc.stdin,
            tty: rc.tty,
            stdout: rc.stdout,
            stderr: rc.stderr,
        })
        .await;
    answer_url(req, "attach", answer.map(|r| r.into_inner().url)).await
}

/// Proxies `req` to the session URL a CRI call answered, or answers its error.
async fn answer_url(req: Request, what: &str, url: Result<String, tonic::Status>) -> Response {
    match url {
        Ok(url) => forward_to(req, &url).await,
        Err(e) if e.code() == tonic::Code::Unimplemented => refusal(
            StatusCode::NOT_IMPLEMENTED,
            format!(
                "the container runtime does not support {what}: {}",
                e.message()
            ),
        ),
        Err(e) => refusal(StatusCode::BAD_REQUEST, e.message().to_string()),
    }
}

/// The ready sandbox of pod `ns/pod` (the newest).
async fn ready_sandbox(runtime: &RuntimeClient, ns: &str, pod: &str) -> Result<String, Response> {
    let filter = api::PodSandboxFilter {
        state: Some(api::PodSandboxStateValue {
            state: api::PodSandboxState::SandboxReady as i32,
        }),
        label_selector: [
            (labels::POD_NAMESPACE.to_string(), ns.to_string()),
            (labels::POD_NAME.to_string(), pod.to_string()),
        ]
        .into(),
        ..Default::default()
    };
    let listed = runtime
        .clone()
        .list_pod_sandbox(api::ListPodSandboxRequest {
            filter: Some(filter),
        })
        .await
        .map(|l| {
            let items = l.into_inner().items;
            items.into_iter().map(|s| (s.created_at, s.id)).collect()
        });
    newest(
        listed,
        format!("pod {ns}/{pod} has no running sandbox on this node"),
    )
    .map_err(|(code, message)| refusal(code, message))
}

async fn port_forward(
    State(ctx): State<Ctx>,
    Path((ns, pod)): Path<(String, String)>,
    req: Request,
) -> Response {
    let id = match ready_sandbox(&ctx.runtime, &ns, &pod).await {
        Ok(id) => id,
        Err(r) => return r,
    };
    let answer = ctx
        .runtime
        .clone()
        .port_forward(api::PortForwardRequest {
            pod_sandbox_id: id,
            port: Vec::new(),
        })
        .await;
    answer_url(req, "port-forward", answer.map(|r| r.into_inner().url)).await
}
