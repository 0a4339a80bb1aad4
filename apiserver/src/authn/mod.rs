//! Authentication: who sent a request.
//!
//! Tried in Kubernetes' order: the client certificate (verified against the client CA here, not
//! in the TLS handshake; CN = user, O = groups), then the bearer token (the static token file,
//! then ServiceAccount JWTs). Presented but bad credentials are a 401; no credentials at all
//! make the request `system:anonymous` in `system:unauthenticated` when anonymous requests are
//! allowed, a 401 otherwise. Every authenticated user is also in `system:authenticated`.
//! [`impersonate`] then applies the `Impersonate-*` headers.

pub mod impersonate;
pub mod service_account;
pub mod token_file;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use apimachinery::status::{Reason, StatusError};
use axum::http::{HeaderMap, header};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;

use crate::state::ApiState;

/// The group of the cluster's administrators: every request of its members is allowed.
pub const MASTERS: &str = "system:masters";
/// The group every authenticated user is in.
pub const AUTHENTICATED: &str = "system:authenticated";
/// The group of anonymous requests.
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
/// The user name of anonymous requests.
pub const ANONYMOUS: &str = "system:anonymous";

/// Who a request comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserInfo {
    /// User name.
    pub name: String,
    /// UID (may be empty).
    pub uid: String,
    /// Groups.
    pub groups: Vec<String>,
    /// Extra attributes.
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// The identity of an unauthenticated request.
    pub fn anonymous() -> UserInfo {
        UserInfo {
            name: ANONYMOUS.into(),
            groups: vec![UNAUTHENTICATED.into()],
            ..Default::default()
        }
    }

    /// An administrator (used when no authentication is configured: benchmarks, unit tests).
    pub fn admin() -> UserInfo {
        UserInfo {
            name: "admin".into(),
            groups: vec![MASTERS.into(), AUTHENTICATED.into()],
            ..Default::default()
        }
    }

    /// Whether the user is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    fn authenticated(mut self) -> UserInfo {
        if !self.in_group(AUTHENTICATED) {
            self.groups.push(AUTHENTICATED.into());
        }
        self
    }

    /// The user as a JSON `UserInfo` (audit events, access reviews).
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({"username": self.name, "groups": self.groups});
        if !self.uid.is_empty() {
            v["uid"] = self.uid.clone().into();
        }
        if !self.extra.is_empty() {
            v["extra"] = serde_json::json!(self.extra);
        }
        v
    }
}

/// The authenticators in force.
#[derive(Default)]
pub struct Authenticator {
    /// Verifies client certificates (`--client-ca-file`); `None`: certificates are ignored.
    pub client_ca: Option<Arc<dyn ClientCertVerifier>>,
    /// The static token file.
    pub tokens: HashMap<String, UserInfo>,
    /// ServiceAccount token keys.
    pub service_accounts: Option<service_account::Keys>,
    /// Whether requests without credentials are served as `system:anonymous`.
    pub anonymous: bool,
    /// No authentication at all: every request is an administrator's (benchmarks, unit tests).
    pub disabled: bool,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("client_ca", &self.client_ca.is_some())
            .field("tokens", &self.tokens.len())
            .field("anonymous", &self.anonymous)
            .finish_non_exhaustive()
    }
}

/// The 401 every authentication failure answers with (the reason goes to the log only).
pub fn unauthorized() -> StatusError {
    StatusError::new(Reason::Unauthorized, "Unauthorized")
}

impl Authenticator {
    /// No authentication: every request is an administrator's.
    pub fn disabled() -> Authenticator {
        Authenticator {
            disabled: true,
            ..Default::default()
        }
    }

    /// Who sent a request with `headers` over a connection that presented `certs`.
    pub fn authenticate(
        &self,
        state: &ApiState,
        headers: &HeaderMap,
        certs: Option<&[CertificateDer<'static>]>,
    ) -> Result<UserInfo, StatusError> {
        if self.disabled {
            return Ok(UserInfo::admin());
        }
        if let (Some(verifier), Some([leaf, rest @ ..])) = (&self.client_ca, certs) {
            return match client_cert_user(verifier.as_ref(), leaf, rest) {
                Ok(u) => Ok(u.authenticated()),
                Err(e) => {
                    tracing::info!(error = %e, "client certificate refused");
                    Err(unauthorized())
                }
            };
        }
        if let Some(token) = bearer(headers) {
            return self
                .token_user(state, token)
                .map(UserInfo::authenticated)
                .map_err(|e| {
                    tracing::info!(error = %e, "bearer token refused");
                    unauthorized()
                });
        }
        if self.anonymous {
            return Ok(UserInfo::anonymous());
        }
        Err(unauthorized())
    }

    fn token_user(&self, state: &ApiState, token: &str) -> Result<UserInfo, String> {
        self.review(state, token, &[]).map(|(user, _)| user)
    }

    /// TokenReview: who a bearer token stands for and the audiences it is valid for, among
    /// `audiences` (empty: the API server's own, `https://kubernetes.default.svc.cluster.local`).
    /// A static token is valid for the API server's audience only, as in Kubernetes.
    pub fn review(
        &self,
        state: &ApiState,
        token: &str,
        audiences: &[String],
    ) -> Result<(UserInfo, Vec<String>), String> {
        let own = [service_account::ISSUER.to_string()];
        let audiences = if audiences.is_empty() {
            &own[..]
        } else {
            audiences
        };
        if let Some(u) = self.tokens.get(token) {
            if !audiences.iter().any(|a| a == service_account::ISSUER) {
                return Err("token audiences do not match the requested audiences".into());
            }
            return Ok((u.clone(), own.to_vec()));
        }
        let Some(keys) = &self.service_accounts else {
            return Err("unknown token".into());
        };
        if !service_account::Keys::is_ours(token) {
            return Err("unknown token".into());
        }
        let claims = keys
            .verify_for(token, audiences)
            .map_err(|e| e.to_string())?;
        let k = &claims.kubernetes;
        let key = format!(
            "/registry/core/serviceaccounts/{}/{}",
            k.namespace, k.serviceaccount.name
        );
        let sa = state.cache().get(&key).ok_or_else(|| {
            format!(
                "service account {}/{} does not exist",
                k.namespace, k.serviceaccount.name
            )
        })?;
        let uid = sa.object.pointer("/metadata/uid").and_then(|v| v.as_str());
        if uid != Some(k.serviceaccount.uid.as_str()) {
            return Err(format!(
                "service account {}/{} was recreated (uid differs)",
                k.namespace, k.serviceaccount.name
            ));
        }
        let valid_for = claims
            .aud
            .iter()
            .filter(|a| audiences.contains(a))
            .cloned()
            .collect();
        Ok((claims.user(), valid_for))
    }
}

/// The bearer token of a request, if it has one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The user of a client certificate chain verified against the client CA.
fn client_cert_user(
    verifier: &dyn ClientCertVerifier,
    leaf: &CertificateDer<'static>,
    intermediates: &[CertificateDer<'static>],
) -> Result<UserInfo, String> {
    verifier
        .verify_client_cert(leaf, intermediates, UnixTime::now())
        .map_err(|e| e.to_string())?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|e| e.to_string())?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .filter(|cn| !cn.is_empty())
        .ok_or("the certificate has no common name")?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_string)
        .collect();
    Ok(UserInfo {
        name,
        groups,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls;

    #[test]
    fn client_certificates_name_the_user_and_groups_and_bad_ones_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = tls::Ca::load_or_create(dir.path()).expect("ca");
        let roots = tls::root_store("ca", &ca.cert_pem).expect("roots");
        let verifier = tls::client_verifier(roots).expect("verifier");
        let leaf = |issued: &tls::Issued| {
            tls::certs_from_pem("cert", &issued.cert_pem).expect("pem")[0].clone()
        };
        let jane = ca.issue_client("jane", &["dev"]).expect("issue");
        let user = client_cert_user(verifier.as_ref(), &leaf(&jane), &[]).expect("valid");
        assert_eq!(user.name, "jane");
        assert_eq!(user.groups, vec!["dev"]);
        assert!(ca.issue_client("jane", &["dev", "ops"]).is_err());

        let expired = ca.issue_client_valid("old", &[], -10).expect("issue");
        let err = client_cert_user(verifier.as_ref(), &leaf(&expired), &[]).unwrap_err();
        assert!(err.contains("xpired"), "{err}");

        let other_dir = tempfile::tempdir().expect("temp dir");
        let other = tls::Ca::load_or_create(other_dir.path()).expect("ca");
        let stranger = other.issue_client("mallory", &[MASTERS]).expect("issue");
        assert!(client_cert_user(verifier.as_ref(), &leaf(&stranger), &[]).is_err());
    }

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().expect("header"));
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().expect("header"));
        assert_eq!(bearer(&h), None);
    }
}
