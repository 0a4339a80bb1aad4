//! The push webhook: Git hosts tell the syncer about new commits, so remote repositories are
//! fetched at once instead of at the next poll.
//!
//! Accepted: GitHub (`X-Hub-Signature-256: sha256=<hmac>`), Gitea/Forgejo (`X-Gitea-Signature:
//! <hmac>`), both HMAC-SHA256 of the body with the shared secret, and GitLab (`X-Gitlab-Token`,
//! the secret itself). Anything unsigned, wrongly signed, or not a push is refused, and nothing
//! is fetched for it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// Why a webhook request was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// No secret is configured, so no request can be trusted.
    #[error("no webhook secret is configured on this gitplane; refusing")]
    NoSecret,
    /// The request carries no signature header gitplane knows.
    #[error("unsigned request: expected X-Hub-Signature-256, X-Gitea-Signature or X-Gitlab-Token")]
    Unsigned,
    /// The signature does not match the body and secret.
    #[error("signature does not match")]
    BadSignature,
    /// The body is not JSON.
    #[error("not a push event: body is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// The body is not a push event gitplane understands.
    #[error("not a push event: {0}")]
    NotAPush(String),
}

/// Two refusals are equal when they say the same (the JSON error has no equality of its own).
impl PartialEq for WebhookError {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for WebhookError {}

/// The headers that matter, lowercased names.
#[derive(Debug, Default)]
pub struct Headers {
    /// `x-hub-signature-256`.
    pub github: Option<String>,
    /// `x-gitea-signature` (also Forgejo's).
    pub gitea: Option<String>,
    /// `x-gitlab-token`.
    pub gitlab: Option<String>,
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn hmac_ok(secret: &[u8], body: &[u8], hex: &str) -> bool {
    let Some(expected) = from_hex(hex.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks a request and returns the repository URLs the push names.
pub fn verify(
    secret: Option<&[u8]>,
    headers: &Headers,
    body: &[u8],
) -> Result<Vec<String>, WebhookError> {
    let secret = secret
        .filter(|s| !s.is_empty())
        .ok_or(WebhookError::NoSecret)?;
    let signed = if let Some(sig) = &headers.github {
        let hex = sig
            .strip_prefix("sha256=")
            .ok_or(WebhookError::BadSignature)?;
        hmac_ok(secret, body, hex)
    } else if let Some(sig) = &headers.gitea {
        hmac_ok(secret, body, sig)
    } else if let Some(token) = &headers.gitlab {
        constant_time_eq(token.as_bytes(), secret)
    } else {
        return Err(WebhookError::Unsigned);
    };
    if !signed {
        return Err(WebhookError::BadSignature);
    }
    let payload: Value = serde_json::from_slice(body).map_err(WebhookError::NotJson)?;
    let mut urls = Vec::new();
    for pointer in [
        "/repository/clone_url",
        "/repository/ssh_url",
        "/repository/html_url",
        "/repository/git_http_url",
        "/repository/git_ssh_url",
        "/project/git_http_url",
        "/project/git_ssh_url",
        "/project/web_url",
    ] {
        if let Some(u) = payload.pointer(pointer).and_then(Value::as_str) {
            urls.push(u.to_string());
        }
    }
    if urls.is_empty() || payload.get("ref").is_none() {
        return Err(WebhookError::NotAPush(
            "no ref and repository URL in the payload".into(),
        ));
    }
    Ok(urls)
}

/// Whether an Application's `repoURL` names one of the pushed repositories (ignoring a trailing
/// `.git` and `/`, and the scheme's letter case).
pub fn matches(repo_url: &str, pushed: &HashSet<String>) -> bool {
    let norm = |u: &str| {
        u.trim_end_matches('/')
            .trim_end_matches(".git")
            .to_lowercase()
    };
    let mine = norm(repo_url);
    pushed.iter().any(|p| norm(p) == mine)
}

/// Repository URLs pushed since the syncer last looked, shared with the HTTP handler.
pub type Pushed = Arc<Mutex<HashSet<String>>>;

/// What the HTTP handler needs.
#[derive(Clone)]
pub struct Endpoint {
    /// The shared secret (`None`: refuse everything).
    pub secret: Option<Arc<Vec<u8>>>,
    /// Where accepted pushes go.
    pub pushed: Pushed,
    /// Wakes the syncer.
    pub wake: Arc<tokio::sync::Notify>,
}

/// The route `POST /webhooks/git`, to mount on an HTTP server.
pub fn router(endpoint: Endpoint) -> axum::Router {
    axum::Router::new()
        .route("/webhooks/git", axum::routing::post(handle))
        .with_state(endpoint)
}

async fn handle(
    axum::extract::State(endpoint): axum::extract::State<Endpoint>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> (axum::http::StatusCode, String) {
    use axum::http::StatusCode;
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let h = Headers {
        github: get("x-hub-signature-256"),
        gitea: get("x-gitea-signature").or_else(|| get("x-forgejo-signature")),
        gitlab: get("x-gitlab-token"),
    };
    match verify(endpoint.secret.as_deref().map(Vec::as_slice), &h, &body) {
        Ok(urls) => {
            let n = urls.len();
            endpoint
                .pushed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(urls);
            endpoint.wake.notify_one();
            (
                StatusCode::ACCEPTED,
                format!("accepted: {n} repository URL(s) will be fetched\n"),
            )
        }
        Err(e @ (WebhookError::Unsigned | WebhookError::BadSignature | WebhookError::NoSecret)) => {
            tracing::warn!(error = %e, "webhook refused");
            (StatusCode::UNAUTHORIZED, format!("{e}\n"))
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(body);
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn check(
        secret: Option<&[u8]>,
        headers: Headers,
        body: &[u8],
        expected: Result<Vec<&str>, WebhookError>,
    ) {
        let got = verify(secret, &headers, body);
        assert_eq!(
            got,
            expected.map(|v| v.into_iter().map(str::to_string).collect()),
            "{headers:?}"
        );
    }

    #[test]
    fn pushes_are_accepted_only_when_signed_with_the_secret() {
        let body = br#"{"ref":"refs/heads/main","repository":{"clone_url":"https://git.example/org/repo.git"}}"#;
        let s: &[u8] = b"s3cret";
        let good = sign(s, body);
        check(
            Some(s),
            Headers {
                github: Some(format!("sha256={good}")),
                ..Default::default()
            },
            body,
            Ok(vec!["https://git.example/org/repo.git"]),
        );
        check(
            Some(s),
            Headers {
                gitea: Some(good.clone()),
                ..Default::default()
            },
            body,
            Ok(vec!["https://git.example/org/repo.git"]),
        );
        check(
            Some(s),
            Headers {
                github: Some(format!("sha256={}", sign(b"other", body))),
                ..Default::default()
            },
            body,
            Err(WebhookError::BadSignature),
        );
        check(
            Some(s),
            Headers {
                github: Some(good.clone()),
                ..Default::default()
            },
            body,
            Err(WebhookError::BadSignature),
        );
        check(
            Some(s),
            Headers {
                gitea: Some("zz".into()),
                ..Default::default()
            },
            body,
            Err(WebhookError::BadSignature),
        );
        check(
            Some(s),
            Headers::default(),
            body,
            Err(WebhookError::Unsigned),
        );
        check(
            None,
            Headers {
                gitea: Some(good),
                ..Default::default()
            },
            body,
            Err(WebhookError::NoSecret),
        );
        let gitlab = br#"{"ref":"refs/heads/main","project":{"git_http_url":"https://gitlab.example/g/r.git"}}"#;
        check(
            Some(s),
            Headers {
                gitlab: Some("s3cret".into()),
                ..Default::default()
            },
            gitlab,
            Ok(vec!["https://gitlab.example/g/r.git"]),
        );
        check(
            Some(s),
            Headers {
                gitlab: Some("wrong".into()),
                ..Default::default()
            },
            gitlab,
            Err(WebhookError::BadSignature),
        );
        let ping = br#"{"zen":"hi"}"#;
        assert!(matches!(
            verify(
                Some(s),
                &Headers {
                    gitea: Some(sign(s, ping)),
                    ..Default::default()
                },
                ping
            ),
            Err(WebhookError::NotAPush(_))
        ));
    }

    #[test]
    fn repository_urls_match_loosely() {
        let pushed: HashSet<String> = ["https://git.example/org/repo.git".to_string()].into();
        assert!(matches("https://git.example/org/repo", &pushed));
        assert!(matches("HTTPS://git.example/org/repo.git/", &pushed));
        assert!(!matches("https://git.example/org/other", &pushed));
    }
}
