//! The HTTPS client of admission webhooks: one connection per call, TLS (rustls with ring)
//! verified against the webhook's `caBundle`, HTTP/1.1 `POST` of the AdmissionReview.

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use super::webhook::Target;

/// The largest webhook response read.
const MAX_RESPONSE: usize = 3 * 1024 * 1024;

/// Why a webhook call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The caBundle is not base64 PEM certificates.
    #[error("invalid caBundle: {0}")]
    CaBundle(String),
    /// Connecting, TLS or HTTP failed.
    #[error("{0}")]
    Transport(String),
    /// The webhook answered with a non-200 status.
    #[error("the server responded with status {0}")]
    Status(u16),
}

fn roots(ca_bundle: &str) -> Result<rustls::RootCertStore, ClientError> {
    if ca_bundle.is_empty() {
        return Err(ClientError::CaBundle(
            "clientConfig.caBundle is required (gitplane does not trust system roots for webhooks)"
                .into(),
        ));
    }
    let pem = base64::engine::general_purpose::STANDARD
        .decode(ca_bundle.trim())
        .map_err(|e| ClientError::CaBundle(e.to_string()))?;
    let mut store = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| ClientError::CaBundle(e.to_string()))?;
        store
            .add(cert)
            .map_err(|e| ClientError::CaBundle(e.to_string()))?;
    }
    if store.is_empty() {
        return Err(ClientError::CaBundle("no certificate found".into()));
    }
    Ok(store)
}

/// POSTs `body` to the target and returns the response body.
pub async fn post(target: &Target, ca_bundle: &str, body: Vec<u8>) -> Result<Bytes, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Transport(e.to_string()))?
        .with_root_certificates(roots(ca_bundle)?)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(target.server_name.clone())
        .map_err(|e| ClientError::Transport(e.to_string()))?;
    let tcp = tokio::net::TcpStream::connect(&target.connect)
        .await
        .map_err(|e| ClientError::Transport(format!("dial tcp {}: {e}", target.connect)))?;
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| ClientError::Transport(format!("tls: {e}")))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let request = hyper::Request::post(&target.path)
        .header(hyper::header::HOST, &target.server_name)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::ACCEPT, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| ClientError::Transport(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| ClientError::Transport(e.to_string()))?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(ClientError::Status(status));
    }
    let limited = http_body_util::Limited::new(response.into_body(), MAX_RESPONSE);
    let bytes = limited
        .collect()
        .await
        .map_err(|e| ClientError::Transport(e.to_string()))?
        .to_bytes();
    Ok(bytes)
}
