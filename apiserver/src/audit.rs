//! Audit: `audit.k8s.io/v1` events as JSON lines (`--audit-log-path`), chosen by a Kubernetes
//! audit Policy (`--audit-policy-file`).
//!
//! Each audited request writes `RequestReceived` (after authentication) and `ResponseComplete`
//! (for watches `ResponseStarted` when the stream begins and `ResponseComplete` when it ends),
//! minus the policy's `omitStages`. Levels: `None`, `Metadata` (who, what, when, the code),
//! `Request` (+ the request body), `RequestResponse` (+ the response body). Secrets are never
//! logged above `Metadata`, whatever the policy says. Without a policy file every request is
//! logged at `Metadata`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::{Body, HttpBody};
use axum::response::Response;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::authn::UserInfo;
use crate::rbac::Attributes;

/// Why the audit log could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A file could not be read or opened.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The policy file is not a valid Policy.
    #[error("{path}: not a valid audit.k8s.io/v1 Policy: {message}")]
    Policy {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// How much of a request is logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Default)]
pub enum Level {
    /// Nothing.
    #[default]
    None,
    /// Metadata: user, verb, object, code, timestamps.
    Metadata,
    /// Metadata and the request body.
    Request,
    /// Metadata and both bodies.
    RequestResponse,
}

/// A group's resources in a policy rule.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupResources {
    /// The API group (empty: core).
    #[serde(default)]
    pub group: String,
    /// Resources (`pods`, `pods/log`, `*/status`); empty: all.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Object names; empty: all.
    #[serde(default)]
    pub resource_names: Vec<String>,
}

/// One rule of a Policy; the first matching rule gives the level.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    /// The level of matching requests.
    pub level: Level,
    /// User names; empty: all.
    #[serde(default)]
    pub users: Vec<String>,
    /// Groups; empty: all.
    #[serde(default)]
    pub user_groups: Vec<String>,
    /// Verbs; empty: all.
    #[serde(default)]
    pub verbs: Vec<String>,
    /// Resources; when set, only resource requests match.
    #[serde(default)]
    pub resources: Vec<GroupResources>,
    /// Namespaces (`""` is cluster scope); when set, only resource requests match.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Paths; when set, only non-resource requests match.
    #[serde(default, rename = "nonResourceURLs")]
    pub non_resource_urls: Vec<String>,
    /// Stages not logged for matching requests.
    #[serde(default)]
    pub omit_stages: Vec<String>,
}

/// An `audit.k8s.io/v1` Policy.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    /// The rules, first match wins; no match: `None`.
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
    /// Stages never logged.
    #[serde(default)]
    pub omit_stages: Vec<String>,
}

fn any_or(list: &[String], f: impl Fn(&str) -> bool) -> bool {
    list.is_empty() || list.iter().any(|v| f(v))
}

impl PolicyRule {
    fn matches(&self, user: &UserInfo, a: &Attributes) -> bool {
        if !any_or(&self.users, |u| u == user.name)
            || !any_or(&self.user_groups, |g| user.in_group(g))
            || !any_or(&self.verbs, |v| v == a.verb)
        {
            return false;
        }
        match &a.resource {
            None => {
                if !self.resources.is_empty() || !self.namespaces.is_empty() {
                    return false;
                }
                any_or(&self.non_resource_urls, |u| {
                    u == a.path
                        || u == "*"
                        || u.strip_suffix('*').is_some_and(|p| a.path.starts_with(p))
                })
            }
            Some(r) => {
                if !self.non_resource_urls.is_empty() {
                    return false;
                }
                if !any_or(&self.namespaces, |n| n == r.namespace) {
                    return false;
                }
                let combined = if r.subresource.is_empty() {
                    r.resource.clone()
                } else {
                    format!("{}/{}", r.resource, r.subresource)
                };
                self.resources.is_empty()
                    || self.resources.iter().any(|g| {
                        g.group == r.group
                            && any_or(&g.resources, |res| {
                                res == "*"
                                    || res == combined
                                    || res == format!("{}/*", r.resource)
                                    || (!r.subresource.is_empty()
                                        && res == format!("*/{}", r.subresource))
                            })
                            && any_or(&g.resource_names, |n| n == r.name)
                    })
            }
        }
    }
}

impl Policy {
    /// Reads a Policy (YAML or JSON).
    pub fn from_file(path: &Path) -> Result<Policy, AuditError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Policy::parse(&text).map_err(|message| AuditError::Policy {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses a Policy document.
    pub fn parse(text: &str) -> Result<Policy, String> {
        let value: Value = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        match value.get("kind").and_then(Value::as_str) {
            Some("Policy") | None => {}
            Some(k) => return Err(format!("kind is {k:?}, expected \"Policy\"")),
        }
        serde_json::from_value(value).map_err(|e| e.to_string())
    }

    /// Every request at `Metadata`.
    pub fn metadata() -> Policy {
        Policy {
            rules: vec![PolicyRule {
                level: Level::Metadata,
                ..Default::default()
            }],
            omit_stages: vec![],
        }
    }

    /// The level and omitted stages for a request. Secrets are capped at `Metadata`.
    pub fn level(&self, user: &UserInfo, a: &Attributes) -> (Level, Vec<String>) {
        let Some(rule) = self.rules.iter().find(|r| r.matches(user, a)) else {
            return (Level::None, vec![]);
        };
        let mut level = rule.level;
        if a.resource
            .as_ref()
            .is_some_and(|r| r.group.is_empty() && r.resource == "secrets")
        {
            level = level.min(Level::Metadata);
        }
        let mut omit = self.omit_stages.clone();
        omit.extend(rule.omit_stages.iter().cloned());
        (level, omit)
    }
}

/// The audit log: a policy and the file events go to.
pub struct Auditor {
    policy: Policy,
    file: Mutex<std::fs::File>,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor").finish_non_exhaustive()
    }
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

impl Auditor {
    /// Appends events to `path` (created 0600 if missing) under `policy`.
    pub fn open(path: &Path, policy: Policy) -> Result<Auditor, AuditError> {
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(path).map_err(|source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Auditor {
            policy,
            file: Mutex::new(file),
        })
    }

    fn write(&self, event: &Value) {
        let mut line = serde_json::to_vec(event).unwrap_or_default();
        line.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = f.write_all(&line) {
            tracing::warn!(error = %e, "cannot write the audit log");
        }
    }

    /// Starts the record of a request; writes `RequestReceived`. `None` when the policy says
    /// `None`.
    pub fn begin(
        self: &Arc<Self>,
        request: RequestInfo,
        user: &UserInfo,
        impersonated: Option<&UserInfo>,
        a: &Attributes,
    ) -> Option<Record> {
        let policy_user = impersonated.unwrap_or(user);
        let (level, omit) = self.policy.level(policy_user, a);
        if level == Level::None {
            return None;
        }
        let mut event = json!({
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": format!("{level:?}"),
            "auditID": uuid::Uuid::new_v4().to_string(),
            "requestURI": request.uri,
            "verb": a.verb,
            "user": user.to_json(),
            "sourceIPs": [request.source_ip],
            "requestReceivedTimestamp": now(),
        });
        if let Some(u) = impersonated {
            event["impersonatedUser"] = u.to_json();
        }
        if let Some(ua) = request.user_agent {
            event["userAgent"] = ua.into();
        }
        if let Some(r) = &a.resource {
            let mut obj = json!({"resource": r.resource, "apiVersion": request.api_version});
            for (k, v) in [
                ("namespace", &r.namespace),
                ("name", &r.name),
                ("apiGroup", &r.group),
                ("subresource", &r.subresource),
            ] {
                if !v.is_empty() {
                    obj[k] = v.clone().into();
                }
            }
            event["objectRef"] = obj;
        }
        let record = Record {
            auditor: self.clone(),
            level,
            omit,
            event,
        };
        record.emit("RequestReceived");
        Some(record)
    }
}

/// What the audit log needs to know of the HTTP request.
#[derive(Clone, Debug, Default)]
pub struct RequestInfo {
    /// Path and query.
    pub uri: String,
    /// The client's address.
    pub source_ip: String,
    /// The User-Agent header.
    pub user_agent: Option<String>,
    /// The API version of the URL (`v1`, `apps/v1`), for objectRef.
    pub api_version: String,
}

/// The audit record of one request in flight.
pub struct Record {
    auditor: Arc<Auditor>,
    level: Level,
    omit: Vec<String>,
    event: Value,
}

impl Record {
    fn emit(&self, stage: &str) {
        if self.omit.iter().any(|s| s == stage) {
            return;
        }
        let mut e = self.event.clone();
        e["stage"] = stage.into();
        e["stageTimestamp"] = now().into();
        self.auditor.write(&e);
    }

    /// Records the authorization decision as Kubernetes' annotations.
    pub fn decision(&mut self, allowed: bool) {
        self.event["annotations"] = json!({
            "authorization.k8s.io/decision": if allowed { "allow" } else { "forbid" },
            "authorization.k8s.io/reason": if allowed { "RBAC: allowed" } else { "" },
        });
    }

    /// Records the request body (level `Request` and above; JSON, or protobuf decoded to the
    /// JSON Kubernetes would log).
    pub fn request_body(&mut self, body: &Bytes) {
        if self.level < Level::Request || body.is_empty() {
            return;
        }
        let decoded = serde_json::from_slice::<Value>(body)
            .ok()
            .or_else(|| apimachinery::protobuf::decode(body).ok());
        if let Some(v) = decoded {
            self.event["requestObject"] = v;
        }
    }

    /// Records the response and writes `ResponseComplete` (for a long-running response,
    /// `ResponseStarted` now and `ResponseComplete` when its body ends).
    pub async fn finish(mut self, response: Response, long_running: bool) -> Response {
        let code = response.status().as_u16();
        self.event["responseStatus"] = json!({"metadata": {}, "code": code});
        if long_running {
            self.emit("ResponseStarted");
            let (parts, body) = response.into_parts();
            return Response::from_parts(
                parts,
                Body::new(Audited {
                    inner: body,
                    record: Some(self),
                }),
            );
        }
        let capture = self.level >= Level::RequestResponse || code >= 400;
        if !capture {
            self.emit("ResponseComplete");
            return response;
        }
        let (parts, body) = response.into_parts();
        let bytes = match http_body_util::BodyExt::collect(body).await {
            Ok(c) => c.to_bytes(),
            Err(_) => Bytes::new(),
        };
        if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
            if code >= 400 && v.get("kind").and_then(Value::as_str) == Some("Status") {
                for k in ["status", "message", "reason"] {
                    if let Some(x) = v.get(k) {
                        self.event["responseStatus"][k] = x.clone();
                    }
                }
            }
            if self.level >= Level::RequestResponse {
                self.event["responseObject"] = v;
            }
        }
        self.emit("ResponseComplete");
        Response::from_parts(parts, Body::from(bytes))
    }
}

/// A streamed body that writes `ResponseComplete` when it ends or is dropped.
struct Audited {
    inner: Body,
    record: Option<Record>,
}

impl HttpBody for Audited {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

impl Drop for Audited {
    fn drop(&mut self) {
        if let Some(r) = self.record.take() {
            r.emit("ResponseComplete");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  nonResourceURLs: ["/healthz*", "/version"]
- level: None
  users: ["system:kube-scheduler"]
- level: RequestResponse
  resources:
  - group: ""
    resources: ["secrets", "configmaps"]
- level: Request
  verbs: ["create", "update"]
  namespaces: ["prod"]
- level: Metadata
"#;

    fn check(user: &str, method: &str, path: &str, expected: Level) {
        let policy = Policy::parse(POLICY).expect("policy parses");
        let u = UserInfo {
            name: user.into(),
            ..Default::default()
        };
        let a = Attributes::from_request(method, path, None);
        assert_eq!(policy.level(&u, &a).0, expected, "{user} {method} {path}");
    }

    #[test]
    fn the_first_matching_rule_gives_the_level_and_secrets_stay_at_metadata() {
        check("jane", "GET", "/healthz", Level::None);
        check("jane", "GET", "/healthz/etcd", Level::None);
        check("system:kube-scheduler", "GET", "/api/v1/pods", Level::None);
        check(
            "jane",
            "GET",
            "/api/v1/namespaces/a/configmaps/c",
            Level::RequestResponse,
        );
        check(
            "jane",
            "GET",
            "/api/v1/namespaces/a/secrets/s",
            Level::Metadata,
        );
        check(
            "jane",
            "POST",
            "/api/v1/namespaces/prod/pods",
            Level::Request,
        );
        check(
            "jane",
            "POST",
            "/api/v1/namespaces/dev/pods",
            Level::Metadata,
        );
        check("jane", "GET", "/apis", Level::Metadata);
        let policy = Policy::parse(POLICY).expect("policy parses");
        assert_eq!(policy.omit_stages, vec!["RequestReceived"]);
        assert!(Policy::parse("kind: Pod").is_err());
        assert!(Policy::parse("rules: [{level: Loud}]").is_err());
    }
}
