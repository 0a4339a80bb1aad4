//! TLS of the ingress controller's HTTPS listener: the certificate is chosen per connection by
//! its server name (SNI) from the Secrets the Ingresses' `tls[]` entries name; a name no entry
//! covers (or a client without SNI) gets a self-signed certificate made at start, as Traefik
//! answers with its default certificate.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::Shared;

/// Errors making a certificate usable.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The Secret lacks `tls.crt` or `tls.key`.
    #[error("secret {0:?} has no {1}")]
    Missing(String, &'static str),
    /// `tls.crt` or `tls.key` is not PEM of a certificate chain or a private key.
    #[error("secret {secret:?}: {field} is not usable: {reason}")]
    Invalid {
        /// `namespace/name` of the Secret.
        secret: String,
        /// `tls.crt` or `tls.key`.
        field: &'static str,
        /// What the parser said.
        reason: String,
    },
    /// The default certificate could not be made, or the server configuration built.
    #[error("cannot set up the ingress TLS listener: {0}")]
    Setup(String),
}

/// The certificate and key of a `kubernetes.io/tls` Secret (`tls.crt`, `tls.key` in PEM).
pub fn certified_key(secret: &Secret) -> Result<CertifiedKey, TlsError> {
    let name = format!(
        "{}/{}",
        secret.metadata.namespace.as_deref().unwrap_or(""),
        secret.metadata.name.as_deref().unwrap_or("")
    );
    let field = |key: &'static str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| b.0.clone())
            .ok_or_else(|| TlsError::Missing(name.clone(), key))
    };
    let invalid = |field: &'static str, reason: String| TlsError::Invalid {
        secret: name.clone(),
        field,
        reason,
    };
    let crt = field("tls.crt")?;
    let key = field("tls.key")?;
    let chain = CertificateDer::pem_slice_iter(&crt)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("tls.crt", e.to_string()))?;
    if chain.is_empty() {
        return Err(invalid("tls.crt", "no certificate found".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(&key).map_err(|e| invalid("tls.key", e.to_string()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| invalid("tls.key", e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| invalid("tls.key", format!("does not match tls.crt: {e}")))?;
    Ok(certified)
}

/// The self-signed certificate for names no Ingress covers.
pub fn default_certificate() -> Result<CertifiedKey, TlsError> {
    let issued = rcgen::generate_simple_self_signed(vec!["gitplane-ingress-default".into()])
        .map_err(|e| TlsError::Setup(e.to_string()))?;
    let key = PrivateKeyDer::Pkcs8(issued.signing_key.serialize_der().into());
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| TlsError::Setup(e.to_string()))?;
    Ok(CertifiedKey::new(vec![issued.cert.der().clone()], signing))
}

/// Chooses the certificate by server name from the current snapshot.
pub struct Resolver {
    current: Shared,
    fallback: Arc<CertifiedKey>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let snapshot = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        hello
            .server_name()
            .and_then(|name| snapshot.routes.tls_secret(name))
            .and_then(|secret| snapshot.certs.get(secret))
            .cloned()
            .or_else(|| Some(self.fallback.clone()))
    }
}

/// The server configuration of the HTTPS listener: HTTP/1.1 only, certificates by SNI.
pub fn server_config(current: Shared) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let fallback = Arc::new(default_certificate()?);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver { current, fallback }));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
