//! TLS for the API server: the cluster CA (created with rcgen on first start), the serving
//! certificate, client certificates for users and components, the rustls server config, and the
//! client config the API server presents to node agents.
//!
//! Client certificates are *requested* in the handshake but verified only by the authenticator
//! ([`crate::authn`]): a connection with an unknown or expired certificate is accepted, and its
//! requests answer 401 as Kubernetes' do, instead of failing the handshake.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls::{
    DigitallySignedStruct, DistinguishedName as RustlsDn, RootCertStore, SignatureScheme,
};

/// Why TLS material could not be created, read or used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A certificate or key could not be generated or parsed.
    #[error("{what}: {message}")]
    Pki {
        /// What was being done.
        what: String,
        /// What went wrong.
        message: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(String),
}

fn pki(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> TlsError {
    let what = what.into();
    move |e| TlsError::Pki {
        what,
        message: e.to_string(),
    }
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes a file readable by its owner only (0600), atomically.
pub fn write_private(path: &Path, text: &str) -> Result<(), TlsError> {
    let io = |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(&tmp).map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}

/// A certificate and its private key, both PEM.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The private key (PKCS#8 PEM).
    pub key_pem: String,
}

impl Issued {
    /// Writes `NAME.crt` and `NAME.key` (both 0600) in `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> Result<(PathBuf, PathBuf), TlsError> {
        let (crt, key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        write_private(&crt, &self.cert_pem)?;
        write_private(&key, &self.key_pem)?;
        Ok((crt, key))
    }
}

/// Validity of the certificates gitplane issues: from yesterday for `days` days.
fn validity(params: &mut CertificateParams, days: i64) {
    let now = jiff::Timestamp::now();
    let date = |t: jiff::Timestamp| {
        let d = t.to_zoned(jiff::tz::TimeZone::UTC).date();
        rcgen::date_time_ymd(i32::from(d.year()), d.month() as u8, d.day() as u8)
    };
    params.not_before = date(now - jiff::SignedDuration::from_hours(24));
    params.not_after = date(now + jiff::SignedDuration::from_hours(24 * days));
}

/// The cluster's certificate authority: signs the serving certificate and client certificates.
pub struct Ca {
    /// The CA certificate (PEM).
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

impl Ca {
    /// Reads `ca.crt` and `ca.key` from `dir`, creating them (0600) when missing.
    pub fn load_or_create(dir: &Path) -> Result<Ca, TlsError> {
        let (crt, key) = (dir.join("ca.crt"), dir.join("ca.key"));
        if crt.exists() && key.exists() {
            return Ca::from_pem(&read(&crt)?, &read(&key)?);
        }
        std::fs::create_dir_all(dir).map_err(|source| TlsError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        let key_pair = KeyPair::generate().map_err(pki("generating the CA key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "gitplane-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, 3650);
        let cert = params
            .self_signed(&key_pair)
            .map_err(pki("signing the CA certificate"))?;
        let issued = Issued {
            cert_pem: cert.pem(),
            key_pem: key_pair.serialize_pem(),
        };
        issued.write(dir, "ca")?;
        Ok(Ca {
            cert_pem: issued.cert_pem,
            issuer: Issuer::new(params, key_pair),
        })
    }

    /// A CA from its certificate and key (PEM).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, TlsError> {
        let key = KeyPair::from_pem(key_pem).map_err(pki("reading the CA key"))?;
        let issuer =
            Issuer::from_ca_cert_pem(cert_pem, key).map_err(pki("reading the CA certificate"))?;
        Ok(Ca {
            cert_pem: cert_pem.to_string(),
            issuer,
        })
    }

    /// A client certificate for `user` in `groups` (CN = user, O = group), valid a year. At most
    /// one group: rcgen writes one value per attribute type (certificates from other CAs with
    /// several O are read whole by the authenticator).
    pub fn issue_client(&self, user: &str, groups: &[&str]) -> Result<Issued, TlsError> {
        self.issue_client_valid(user, groups, 365)
    }

    /// A client certificate valid for `days` days from yesterday (negative days give an
    /// expired certificate, for tests).
    pub fn issue_client_valid(
        &self,
        user: &str,
        groups: &[&str],
        days: i64,
    ) -> Result<Issued, TlsError> {
        if groups.len() > 1 {
            return Err(TlsError::Pki {
                what: format!("the client certificate of {user}"),
                message: format!("at most one group can be issued, got {groups:?}"),
            });
        }
        let key = KeyPair::generate().map_err(pki("generating a client key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, user);
        for g in groups {
            params.distinguished_name.push(DnType::OrganizationName, *g);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, days);
        if days < 0 {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        }
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(pki(format!("signing the client certificate of {user}")))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A serving certificate for `localhost`, the loopback addresses and `hosts`.
    pub fn issue_serving(&self, hosts: &[IpAddr]) -> Result<Issued, TlsError> {
        let key = KeyPair::generate().map_err(pki("generating the serving key"))?;
        let mut params = CertificateParams::new(vec!["localhost".to_string()])
            .map_err(pki("serving certificate names"))?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "gitplane-apiserver");
        let mut ips: Vec<IpAddr> =
            vec![[127, 0, 0, 1].into(), std::net::Ipv6Addr::LOCALHOST.into()];
        for h in hosts {
            if !h.is_unspecified() && !ips.contains(h) {
                ips.push(*h);
            }
        }
        for dns in ["kubernetes", "kubernetes.default", "kubernetes.default.svc"] {
            params
                .subject_alt_names
                .push(SanType::DnsName(dns.try_into().map_err(pki("a DNS name"))?));
        }
        params
            .subject_alt_names
            .extend(ips.into_iter().map(SanType::IpAddress));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, 365);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(pki("signing the serving certificate"))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The ring crypto provider, the only one gitplane uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM text.
pub fn certs_from_pem(what: &str, pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem.as_bytes()).collect();
    match certs {
        Ok(c) if !c.is_empty() => Ok(c),
        Ok(_) => Err(TlsError::Pki {
            what: what.to_string(),
            message: "no certificate found".into(),
        }),
        Err(e) => Err(TlsError::Pki {
            what: what.to_string(),
            message: e.to_string(),
        }),
    }
}

/// The roots of a client CA bundle.
pub fn root_store(what: &str, pem: &str) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in certs_from_pem(what, pem)? {
        roots.add(c).map_err(|e| TlsError::Pki {
            what: what.to_string(),
            message: e.to_string(),
        })?;
    }
    Ok(Arc::new(roots))
}

/// The verifier of client certificates against `roots` (used by the authenticator).
pub fn client_verifier(roots: Arc<RootCertStore>) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    WebPkiClientVerifier::builder_with_provider(roots, provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Rustls(e.to_string()))
}

/// The rustls server config: the serving certificate and key (PEM files), and, when a client
/// CA is given, client certificates requested (not required) and left to the authenticator.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
    client_verifier: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certs_from_pem(&cert_file.display().to_string(), &read(cert_file)?)?;
    let key =
        PrivateKeyDer::from_pem_slice(read(key_file)?.as_bytes()).map_err(|e| TlsError::Pki {
            what: key_file.display().to_string(),
            message: e.to_string(),
        })?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = match client_verifier {
        Some(inner) => builder.with_client_cert_verifier(Arc::new(Deferred {
            inner,
            algorithms: provider().signature_verification_algorithms,
        })),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The three handshake-signature methods that rustls' `ServerCertVerifier` and
/// `ClientCertVerifier` both declare, checked with the verifier's `algorithms` (the provider's):
/// the verifiers below skip the certificate chain, never the signature.
macro_rules! handshake_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algorithms.supported_schemes()
        }
    };
}

/// Asks for a client certificate and checks the handshake signature, but leaves the chain to the
/// authenticator, so a bad certificate is a 401 and not a failed handshake.
#[derive(Debug)]
struct Deferred {
    /// The authenticator's verifier: its CA names are the hints sent to clients.
    inner: Arc<dyn ClientCertVerifier>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for Deferred {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[RustlsDn] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    handshake_signatures!();
}

/// Accepts any serving certificate, checking only that the handshake is signed by it (node
/// agents' certificates are self-signed).
#[derive(Debug)]
struct AnyServer {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    handshake_signatures!();
}

/// The TLS client configuration for node agents, presenting `issued` (a certificate of the
/// cluster CA for [`apimachinery::streaming::APISERVER_NODE_CLIENT`]); the agents' serving
/// certificates are not verified (kube-apiserver's default without
/// `--kubelet-certificate-authority`).
pub fn node_client_config(issued: &Issued) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let pki = |e: String| TlsError::Pki {
        what: "node client certificate".into(),
        message: e,
    };
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| pki(e.to_string()))?;
    let key =
        PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).map_err(|e| pki(e.to_string()))?;
    let provider = provider();
    let algorithms = provider.signature_verification_algorithms;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer { algorithms }))
        .with_client_auth_cert(chain, key)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    Ok(Arc::new(config))
}
