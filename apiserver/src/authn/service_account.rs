//! ServiceAccount tokens: ES256 JWTs issued through the TokenRequest subresource
//! (`kubectl create token SA`) and verified against the key and the ServiceAccount's existence
//! and uid, like Kubernetes' bound service account tokens.

use std::collections::BTreeMap;
use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::UserInfo;

/// The issuer and audience of the tokens gitplane issues (Kubernetes' default audience).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Why a service account key or token was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// A key file could not be read.
    #[error("{path}: {message}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The token is malformed, badly signed or expired.
    #[error("invalid service account token: {0}")]
    Invalid(String),
    /// No signing key is configured.
    #[error("this server has no service account signing key")]
    NoSigningKey,
}

/// What the `kubernetes.io` claim holds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KubernetesClaim {
    /// The namespace of the ServiceAccount.
    pub namespace: String,
    /// The ServiceAccount.
    pub serviceaccount: Ref,
}

/// A reference to an object by name and uid.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ref {
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
}

/// The claims of a service account token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject: `system:serviceaccount:NS:NAME`.
    pub sub: String,
    /// Audiences.
    pub aud: Vec<String>,
    /// Expiry (seconds since the epoch).
    pub exp: u64,
    /// Issued at.
    pub iat: u64,
    /// Not before.
    pub nbf: u64,
    /// The bound ServiceAccount.
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaim,
}

impl Claims {
    /// The user the token stands for (uid and groups as Kubernetes gives them).
    pub fn user(&self) -> UserInfo {
        let k = &self.kubernetes;
        UserInfo {
            name: format!(
                "system:serviceaccount:{}:{}",
                k.namespace, k.serviceaccount.name
            ),
            uid: k.serviceaccount.uid.clone(),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{}", k.namespace),
            ],
            extra: BTreeMap::new(),
        }
    }
}

/// The keys that sign and verify service account tokens.
pub struct Keys {
    signing: Option<EncodingKey>,
    verifying: DecodingKey,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").finish_non_exhaustive()
    }
}

fn key_err(path: &Path) -> impl Fn(String) -> TokenError + '_ {
    move |message| TokenError::Key {
        path: path.display().to_string(),
        message,
    }
}

impl Keys {
    /// Keys from a public key file (PEM, `--service-account-key-file`) and optionally the
    /// private key that signs (`--service-account-signing-key-file`, PKCS#8 EC P-256 PEM).
    pub fn from_files(public: &Path, private: Option<&Path>) -> Result<Keys, TokenError> {
        let text = std::fs::read(public).map_err(|e| key_err(public)(e.to_string()))?;
        let verifying =
            DecodingKey::from_ec_pem(&text).map_err(|e| key_err(public)(e.to_string()))?;
        let signing = match private {
            Some(p) => {
                let text = std::fs::read(p).map_err(|e| key_err(p)(e.to_string()))?;
                Some(EncodingKey::from_ec_pem(&text).map_err(|e| key_err(p)(e.to_string()))?)
            }
            None => None,
        };
        Ok(Keys { signing, verifying })
    }

    /// Whether these keys can sign tokens (a signing key was given).
    pub fn can_issue(&self) -> bool {
        self.signing.is_some()
    }

    /// Issues a token for the ServiceAccount `namespace/name` with `uid`, valid `seconds`.
    pub fn issue(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        audiences: Vec<String>,
        seconds: u64,
    ) -> Result<(String, u64), TokenError> {
        let signing = self.signing.as_ref().ok_or(TokenError::NoSigningKey)?;
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            iss: ISSUER.into(),
            sub: format!("system:serviceaccount:{namespace}:{name}"),
            aud: if audiences.is_empty() {
                vec![ISSUER.into()]
            } else {
                audiences
            },
            exp: now + seconds,
            iat: now,
            nbf: now,
            kubernetes: KubernetesClaim {
                namespace: namespace.into(),
                serviceaccount: Ref {
                    name: name.into(),
                    uid: uid.into(),
                },
            },
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, signing)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        Ok((token, claims.exp))
    }

    /// Checks signature, issuer, audience and expiry; the caller checks the ServiceAccount.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        self.verify_for(token, &[ISSUER.to_string()])
    }

    /// [`Keys::verify`] for a token that must be valid for one of `audiences`.
    pub fn verify_for(&self, token: &str, audiences: &[String]) -> Result<Claims, TokenError> {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(audiences);
        validation.leeway = 0;
        jsonwebtoken::decode::<Claims>(token, &self.verifying, &validation)
            .map(|d| d.claims)
            .map_err(|e| TokenError::Invalid(e.to_string()))
    }

    /// Whether `token` looks like a JWT issued by us (so other authenticators are not tried).
    pub fn is_ours(token: &str) -> bool {
        token.split('.').count() == 3
            && jsonwebtoken::decode_header(token).is_ok_and(|h| h.alg == Algorithm::ES256)
    }
}

/// Creates an EC P-256 signing key (`NAME.key`, PKCS#8) and its public key (`NAME.pub`) in
/// `dir` when missing; returns their paths.
pub fn ensure_key_files(
    dir: &Path,
) -> Result<(std::path::PathBuf, std::path::PathBuf), crate::tls::TlsError> {
    let (private, public) = (dir.join("sa.key"), dir.join("sa.pub"));
    if !(private.exists() && public.exists()) {
        let key = rcgen::KeyPair::generate().map_err(|e| crate::tls::TlsError::Pki {
            what: "generating the service account key".into(),
            message: e.to_string(),
        })?;
        crate::tls::write_private(&private, &key.serialize_pem())?;
        crate::tls::write_private(&public, &key.public_key_pem())?;
    }
    Ok((private, public))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_and_name_their_service_account() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (private, public) = ensure_key_files(dir.path()).expect("keys");
        let keys = Keys::from_files(&public, Some(&private)).expect("keys load");
        let (token, _) = keys
            .issue("ns", "bot", "uid-1", vec![], 600)
            .expect("issue");
        assert!(Keys::is_ours(&token));
        let claims = keys.verify(&token).expect("verify");
        let user = claims.user();
        assert_eq!(user.name, "system:serviceaccount:ns:bot");
        assert_eq!(user.uid, "uid-1");
        assert_eq!(
            user.groups,
            vec!["system:serviceaccounts", "system:serviceaccounts:ns"]
        );
        let mut tampered = token.clone();
        tampered.push('x');
        assert!(keys.verify(&tampered).is_err());
        let other_dir = tempfile::tempdir().expect("temp dir");
        let (p2, _) = ensure_key_files(other_dir.path()).expect("keys");
        let other = Keys::from_files(&public, Some(&p2)).expect("keys load");
        let (forged, _) = other
            .issue("ns", "bot", "uid-1", vec![], 600)
            .expect("issue");
        assert!(keys.verify(&forged).is_err(), "signed by another key");
    }
}
