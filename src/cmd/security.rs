//! The security flags of `up` and `apiserver` (named as kube-apiserver names them) and what
//! they become: the TLS config, the authenticators, the authorizer, the audit log and the
//! in-flight limits. Whatever is not given is generated in `DATA_DIR/pki` on first start
//! (all files 0600): the cluster CA, the serving certificate, the service account key pair and
//! the administrator's client certificate (`admin`, group `system:masters`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use apiserver::audit::{Auditor, Policy};
use apiserver::authn::{Authenticator, MASTERS, service_account, token_file};
use apiserver::inflight::Limits;
use apiserver::rbac::{Authorizer, Mode};
use apiserver::security::Security;
use apiserver::tls::{self, Ca};

use crate::kubeconfig::Credentials;

/// `--authorization-mode`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthorizationMode {
    /// Kubernetes RBAC (the default).
    #[value(name = "RBAC")]
    Rbac,
    /// Every request is allowed.
    #[value(name = "AlwaysAllow")]
    AlwaysAllow,
}

/// Security flags of every command that runs the API server.
#[derive(clap::Args, Clone, Debug)]
pub struct SecurityArgs {
    /// Serving certificate (PEM). Default: DATA_DIR/pki/apiserver.crt, signed by the cluster CA.
    #[arg(long, requires = "tls_private_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// Private key of the serving certificate (PEM).
    #[arg(long, requires = "tls_cert_file")]
    pub tls_private_key_file: Option<PathBuf>,
    /// Extra CA bundle whose client certificates are accepted (CN = user, O = groups), beside
    /// the cluster CA in DATA_DIR/pki/ca.crt.
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,
    /// Static tokens, Kubernetes' CSV format: token,user,uid,"group1,group2".
    #[arg(long)]
    pub token_auth_file: Option<PathBuf>,
    /// Public key (PEM) that verifies service account tokens. Default: DATA_DIR/pki/sa.pub.
    #[arg(long)]
    pub service_account_key_file: Option<PathBuf>,
    /// Private key (PKCS#8 EC P-256 PEM) that signs service account tokens. Default:
    /// DATA_DIR/pki/sa.key.
    #[arg(long)]
    pub service_account_signing_key_file: Option<PathBuf>,
    /// Serve requests without credentials as system:anonymous (allowed only what RBAC grants).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub anonymous_auth: bool,
    /// How requests are authorized.
    #[arg(long, value_enum, default_value = "RBAC")]
    pub authorization_mode: AuthorizationMode,
    /// Write audit events (audit.k8s.io/v1, JSON lines) to this file.
    #[arg(long)]
    pub audit_log_path: Option<PathBuf>,
    /// Audit policy (audit.k8s.io/v1 Policy). Default: every request at Metadata.
    #[arg(long, requires = "audit_log_path")]
    pub audit_policy_file: Option<PathBuf>,
    /// Read-only requests served at once before 429 (0: no limit).
    #[arg(long, default_value_t = 400)]
    pub max_requests_inflight: usize,
    /// Mutating requests served at once before 429 (0: no limit).
    #[arg(long, default_value_t = 200)]
    pub max_mutating_requests_inflight: usize,
}

/// What the flags resolve to.
pub struct Prepared {
    /// The rustls config.
    pub tls: Arc<rustls::ServerConfig>,
    /// The pipeline's settings.
    pub security: Arc<Security>,
    /// The administrator's kubeconfig credentials.
    pub admin: Credentials,
}

/// The directory of generated certificates and keys.
pub fn pki_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("pki")
}

/// The cluster CA of a data dir (created when missing).
pub fn cluster_ca(data_dir: &Path) -> anyhow::Result<Ca> {
    Ok(Ca::load_or_create(&pki_dir(data_dir))?)
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

impl SecurityArgs {
    /// Loads or generates everything the flags name.
    pub fn prepare(&self, data_dir: &Path, listen: SocketAddr) -> anyhow::Result<Prepared> {
        let pki = pki_dir(data_dir);
        let ca = cluster_ca(data_dir)?;
        let (cert_file, key_file) = match (&self.tls_cert_file, &self.tls_private_key_file) {
            (Some(c), Some(k)) => (c.clone(), k.clone()),
            _ => {
                let (crt, key) = (pki.join("apiserver.crt"), pki.join("apiserver.key"));
                if !(crt.exists() && key.exists()) {
                    ca.issue_serving(&[listen.ip()])?.write(&pki, "apiserver")?;
                }
                (crt, key)
            }
        };
        let mut client_cas = ca.cert_pem.clone();
        if let Some(f) = &self.client_ca_file {
            client_cas.push('\n');
            client_cas.push_str(&read(f)?);
        }
        let roots = tls::root_store("client CA", &client_cas)?;
        let verifier = tls::client_verifier(roots)?;
        let tls_config = tls::server_config(&cert_file, &key_file, Some(verifier.clone()))?;

        let tokens = match &self.token_auth_file {
            Some(f) => token_file::parse(&read(f)?)
                .with_context(|| format!("token file {}", f.display()))?,
            None => Default::default(),
        };
        let (sa_private, sa_public) = match (
            &self.service_account_key_file,
            &self.service_account_signing_key_file,
        ) {
            (Some(public), private) => (private.clone(), public.clone()),
            (None, _) => {
                let (private, public) = service_account::ensure_key_files(&pki)?;
                (
                    Some(
                        self.service_account_signing_key_file
                            .clone()
                            .unwrap_or(private),
                    ),
                    public,
                )
            }
        };
        let keys = service_account::Keys::from_files(&sa_public, sa_private.as_deref())?;
        let audit = match &self.audit_log_path {
            Some(path) => {
                let policy = match &self.audit_policy_file {
                    Some(f) => Policy::from_file(f)?,
                    None => Policy::metadata(),
                };
                Some(Arc::new(Auditor::open(path, policy)?))
            }
            None => None,
        };
        let security = Security {
            authn: Authenticator {
                client_ca: Some(verifier),
                tokens,
                service_accounts: Some(keys),
                anonymous: self.anonymous_auth,
                disabled: false,
            },
            authz: Authorizer {
                mode: match self.authorization_mode {
                    AuthorizationMode::Rbac => Mode::Rbac,
                    AuthorizationMode::AlwaysAllow => Mode::AlwaysAllow,
                },
            },
            audit,
            inflight: Limits::new(
                self.max_requests_inflight,
                self.max_mutating_requests_inflight,
            ),
            node_client: Some(apiserver::tls::node_client_config(
                &ca.issue_client(apimachinery::streaming::APISERVER_NODE_CLIENT, &[])?,
            )?),
        };
        let (admin_crt, admin_key) = (pki.join("admin.crt"), pki.join("admin.key"));
        if !(admin_crt.exists() && admin_key.exists()) {
            ca.issue_client("admin", &[MASTERS])?.write(&pki, "admin")?;
        }
        Ok(Prepared {
            tls: tls_config,
            security: Arc::new(security),
            admin: Credentials {
                ca_pem: ca.cert_pem.clone(),
                cert_pem: read(&admin_crt)?,
                key_pem: read(&admin_key)?,
            },
        })
    }
}
