//! A notification's HTTP request, built from a service, a template and the Application
//! ([`request`], pure), and its delivery with retries and exponential back-off ([`send`]).
//!
//! Templates are handlebars over `{app, trigger, revision, message}` (`{{app.metadata.name}}`,
//! `{{app.status.operationState.message}}`): Argo CD's Go templates with the leading dot
//! dropped. Values put into a JSON body or Slack attachments are JSON-escaped.

use std::time::Duration;

use handlebars::Handlebars;
use serde_json::{Value, json};

use super::config::{GitHost, Kind, Service, Template};
use super::triggers::Trigger;

/// An HTTP request to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// `POST`, `PUT` or `PATCH`.
    pub method: String,
    /// Where.
    pub url: String,
    /// Headers (with the content type).
    pub headers: Vec<(String, String)>,
    /// The JSON body.
    pub body: String,
}

/// Why a request could not be built: names the template and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template.{template}: {field}: {message}")]
pub struct RenderError {
    /// The template.
    pub template: String,
    /// Its field (`message`, `webhook.ops.body`, `slack.attachments`).
    pub field: String,
    /// What went wrong.
    pub message: String,
}

fn engines() -> (Handlebars<'static>, Handlebars<'static>) {
    let mut plain = Handlebars::new();
    plain.register_escape_fn(handlebars::no_escape);
    let mut json = Handlebars::new();
    json.register_escape_fn(|s: &str| {
        let quoted = serde_json::to_string(s).unwrap_or_default();
        quoted[1..quoted.len().saturating_sub(1)].to_string()
    });
    (plain, json)
}

/// The commit a notification is about: the operation's for sync triggers, else the compared
/// one.
fn revision(app: &Value, trigger: Trigger) -> String {
    let text = |p: &str| {
        app.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    match trigger {
        Trigger::SyncSucceeded | Trigger::SyncFailed | Trigger::Deployed => {
            text("/status/operationState/revision")
        }
        _ => text("/status/sync/revision"),
    }
}

/// `OWNER` and `REPO` of a repository URL (`https://host/OWNER/REPO.git`,
/// `git@host:OWNER/REPO`, a local path's last two directories).
pub fn owner_repo(url: &str) -> Option<(String, String)> {
    let trimmed = url.trim_end_matches('/');
    let trimmed = trimmed.strip_suffix(".git").unwrap_or(trimmed);
    let mut parts = trimmed.rsplit(['/', ':']).filter(|p| !p.is_empty());
    let repo = parts.next()?;
    let owner = parts.next()?;
    Some((owner.to_string(), repo.to_string()))
}

/// The request that tells `service` (named `service_name`) about `trigger` on `app` with
/// `template` (named `template_name`).
pub fn request(
    service_name: &str,
    service: &Service,
    template_name: &str,
    template: &Template,
    trigger: Trigger,
    app: &Value,
) -> Result<Request, RenderError> {
    let (plain, json_engine) = engines();
    let fail = |field: &str, message: String| RenderError {
        template: template_name.to_string(),
        field: field.to_string(),
        message,
    };
    let revision = revision(app, trigger);
    let mut context = json!({"app": app, "trigger": trigger.name(), "revision": revision});
    let message = plain
        .render_template(&template.message, &context)
        .map_err(|e| fail("message", e.to_string()))?;
    context["message"] = Value::String(message.clone());
    let render_json = |field: &str, text: &str| {
        json_engine
            .render_template(text, &context)
            .map_err(|e| fail(field, e.to_string()))
    };
    let text = |p: &str| {
        app.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let json_header = ("Content-Type".to_string(), "application/json".to_string());
    let mut headers = service.headers.clone();
    headers.push(json_header);
    match &service.kind {
        Kind::Webhook => {
            let part = template
                .webhook
                .get(service_name)
                .cloned()
                .unwrap_or_default();
            let body = match &part.body {
                Some(body) => render_json(&format!("webhook.{service_name}.body"), body)?,
                None => json!({
                    "app": text("/metadata/name"),
                    "trigger": trigger.name(),
                    "revision": revision,
                    "syncStatus": text("/status/sync/status"),
                    "healthStatus": text("/status/health/status"),
                    "message": message,
                })
                .to_string(),
            };
            let path = match &part.path {
                Some(p) => plain
                    .render_template(p, &context)
                    .map_err(|e| fail(&format!("webhook.{service_name}.path"), e.to_string()))?,
                None => String::new(),
            };
            Ok(Request {
                method: part.method.unwrap_or_else(|| "POST".into()),
                url: format!("{}{path}", service.url),
                headers,
                body,
            })
        }
        Kind::Slack => {
            let mut payload = json!({"text": message});
            if let Some(slack) = &template.slack {
                for (field, text) in [
                    ("attachments", &slack.attachments),
                    ("blocks", &slack.blocks),
                ] {
                    let Some(text) = text else { continue };
                    let key = format!("slack.{field}");
                    let rendered = render_json(&key, text)?;
                    let value: Value = serde_json::from_str(&rendered)
                        .map_err(|e| fail(&key, format!("not JSON after rendering: {e}")))?;
                    payload[field] = value;
                }
            }
            Ok(Request {
                method: "POST".into(),
                url: service.url.clone(),
                headers,
                body: payload.to_string(),
            })
        }
        Kind::CommitStatus(host) => {
            let repo_url = text("/spec/source/repoURL");
            let (owner, repo) = owner_repo(&repo_url).ok_or_else(|| {
                fail(
                    host.name(),
                    format!("no OWNER/REPO in the repoURL {repo_url:?}"),
                )
            })?;
            let status = template.status(*host);
            let render = |field: &str, t: &Option<String>| -> Result<Option<String>, RenderError> {
                t.as_ref()
                    .map(|t| {
                        plain.render_template(t, &context).map_err(|e| {
                            fail(&format!("{}.status.{field}", host.name()), e.to_string())
                        })
                    })
                    .transpose()
            };
            let state = render("state", &status.state)?.unwrap_or_else(|| {
                if trigger.is_failure() {
                    "failure"
                } else {
                    "success"
                }
                .into()
            });
            let label = render("label", &status.label)?
                .unwrap_or_else(|| "continuous-delivery/gitplane".into());
            let target_url = render("targetURL", &status.target_url)?.unwrap_or_default();
            let description: String = message.chars().take(140).collect();
            let token = service.token.clone().unwrap_or_default();
            let base = service.url.trim_end_matches('/');
            let (url, auth, body) = match host {
                GitHost::GitHub => (
                    format!("{base}/repos/{owner}/{repo}/statuses/{revision}"),
                    ("Authorization", format!("token {token}")),
                    json!({"state": state, "context": label, "target_url": target_url, "description": description}),
                ),
                GitHost::Gitea => (
                    format!("{base}/api/v1/repos/{owner}/{repo}/statuses/{revision}"),
                    ("Authorization", format!("token {token}")),
                    json!({"state": state, "context": label, "target_url": target_url, "description": description}),
                ),
                GitHost::GitLab => (
                    format!("{base}/api/v4/projects/{owner}%2F{repo}/statuses/{revision}"),
                    ("PRIVATE-TOKEN", token),
                    json!({
                        "state": if state == "failure" { "failed".to_string() } else { state },
                        "name": label,
                        "target_url": target_url,
                        "description": description,
                    }),
                ),
            };
            headers.push((auth.0.to_string(), auth.1));
            Ok(Request {
                method: "POST".into(),
                url,
                headers,
                body: body.to_string(),
            })
        }
    }
}

/// How many times a request is tried.
pub const ATTEMPTS: u32 = 5;
/// The wait before the first retry; it doubles.
pub const FIRST_RETRY: Duration = Duration::from_millis(500);

/// Sends `request`, retrying with exponential back-off while the receiver cannot be reached,
/// answers 5xx, 408 or 429; other answers (2xx, or a 4xx that another try would not change)
/// end it. Runs on its own task: a slow receiver holds up nothing else.
pub async fn send(request: Request) -> Result<(), String> {
    let mut wait = FIRST_RETRY;
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        let r = request.clone();
        let outcome = tokio::task::spawn_blocking(move || send_once(&r))
            .await
            .unwrap_or_else(|e| Err((true, e.to_string())));
        match outcome {
            Ok(()) => return Ok(()),
            Err((retry, message)) => {
                last = format!(
                    "{} {}: {message} (attempt {attempt})",
                    request.method, request.url
                );
                if !retry {
                    break;
                }
            }
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
    Err(last)
}

/// One try: `Err((worth retrying, why))`.
fn send_once(request: &Request) -> Result<(), (bool, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    macro_rules! with_headers {
        ($req:expr) => {{
            let mut r = $req;
            for (k, v) in &request.headers {
                r = r.header(k.as_str(), v.as_str());
            }
            r
        }};
    }
    let body = request.body.as_bytes();
    let result = match request.method.to_ascii_uppercase().as_str() {
        "PUT" => with_headers!(agent.put(&request.url)).send(body),
        "PATCH" => with_headers!(agent.patch(&request.url)).send(body),
        _ => with_headers!(agent.post(&request.url)).send(body),
    };
    match result {
        Err(e) => Err((true, e.to_string())),
        Ok(response) => {
            let code = response.status().as_u16();
            match code {
                200..=299 => Ok(()),
                408 | 429 | 500..=599 => Err((true, format!("HTTP {code}"))),
                _ => Err((false, format!("HTTP {code}"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitops::notifications::config::{
        HostTemplate, SlackTemplate, StatusTemplate, WebhookTemplate,
    };

    fn app() -> Value {
        json!({
            "metadata": {"name": "web"},
            "spec": {"source": {"repoURL": "https://git.example/team/web.git"}},
            "status": {
                "sync": {"status": "OutOfSync", "revision": "abc"},
                "health": {"status": "Healthy"},
                "operationState": {"phase": "Failed", "revision": "abc", "message": "bad \"name\""},
            },
        })
    }

    fn service(kind: Kind) -> Service {
        Service {
            kind,
            url: "http://127.0.0.1:9".into(),
            headers: vec![],
            token: Some("t0k".into()),
        }
    }

    fn template() -> Template {
        Template {
            message: "{{app.metadata.name}} failed: {{app.status.operationState.message}}".into(),
            ..Template::default()
        }
    }

    #[test]
    fn owner_and_repo_come_from_the_repository_url() {
        for (url, expected) in [
            ("https://github.com/team/web.git", Some(("team", "web"))),
            ("git@github.com:team/web", Some(("team", "web"))),
            ("/tmp/x/team/web/", Some(("team", "web"))),
            ("web", None),
        ] {
            let want = expected.map(|(o, r)| (o.to_string(), r.to_string()));
            assert_eq!(owner_repo(url), want, "{url}");
        }
    }

    #[test]
    fn the_generic_payload_carries_the_event_and_the_rendered_message() {
        let r = request(
            "ops",
            &service(Kind::Webhook),
            "t",
            &template(),
            Trigger::SyncFailed,
            &app(),
        )
        .expect("request");
        let body: Value = serde_json::from_str(&r.body).expect("json");
        assert_eq!(body["app"], "web");
        assert_eq!(body["trigger"], "on-sync-failed");
        assert_eq!(body["revision"], "abc");
        assert_eq!(body["message"], "web failed: bad \"name\"");
    }

    #[test]
    fn a_webhook_body_template_escapes_values_as_json() {
        let mut t = template();
        t.webhook.insert(
            "ops".into(),
            WebhookTemplate {
                body: Some("{\"text\": \"{{message}}\"}".into()),
                path: Some("/apps/{{app.metadata.name}}".into()),
                method: Some("PUT".into()),
            },
        );
        let r = request(
            "ops",
            &service(Kind::Webhook),
            "t",
            &t,
            Trigger::SyncFailed,
            &app(),
        )
        .expect("request");
        assert_eq!(r.method, "PUT");
        assert_eq!(r.url, "http://127.0.0.1:9/apps/web");
        let body: Value = serde_json::from_str(&r.body).expect("valid JSON despite the quotes");
        assert_eq!(body["text"], "web failed: bad \"name\"");
    }

    #[test]
    fn slack_payloads_have_text_and_attachments_and_bad_json_names_the_field() {
        let mut t = template();
        t.slack = Some(SlackTemplate {
            attachments: Some(
                "[{\"title\": \"{{app.metadata.name}}\", \"color\": \"#E96D76\"}]".into(),
            ),
            blocks: None,
        });
        let r = request(
            "slack",
            &service(Kind::Slack),
            "t",
            &t,
            Trigger::SyncFailed,
            &app(),
        )
        .expect("request");
        let body: Value = serde_json::from_str(&r.body).expect("json");
        assert_eq!(body["text"], "web failed: bad \"name\"");
        assert_eq!(body["attachments"][0]["title"], "web");
        t.slack = Some(SlackTemplate {
            attachments: Some("[{".into()),
            blocks: None,
        });
        let e = request(
            "slack",
            &service(Kind::Slack),
            "t",
            &t,
            Trigger::SyncFailed,
            &app(),
        )
        .expect_err("bad JSON");
        assert_eq!(e.field, "slack.attachments");
        assert!(
            e.to_string()
                .starts_with("template.t: slack.attachments: not JSON"),
            "{e}"
        );
    }

    #[test]
    fn commit_statuses_follow_each_hosts_api() {
        let t = template();
        let gitea = request(
            "gitea",
            &service(Kind::CommitStatus(GitHost::Gitea)),
            "t",
            &t,
            Trigger::SyncFailed,
            &app(),
        )
        .expect("gitea");
        assert_eq!(
            gitea.url,
            "http://127.0.0.1:9/api/v1/repos/team/web/statuses/abc"
        );
        assert!(
            gitea
                .headers
                .contains(&("Authorization".into(), "token t0k".into()))
        );
        let body: Value = serde_json::from_str(&gitea.body).expect("json");
        assert_eq!(body["state"], "failure");
        assert_eq!(body["context"], "continuous-delivery/gitplane");
        let github = request(
            "github",
            &service(Kind::CommitStatus(GitHost::GitHub)),
            "t",
            &t,
            Trigger::SyncSucceeded,
            &app(),
        )
        .expect("github");
        assert_eq!(github.url, "http://127.0.0.1:9/repos/team/web/statuses/abc");
        assert_eq!(
            serde_json::from_str::<Value>(&github.body).expect("json")["state"],
            "success"
        );
        let mut custom = template();
        custom.gitlab = Some(HostTemplate {
            status: StatusTemplate {
                state: None,
                label: Some("deploy/{{app.metadata.name}}".into()),
                target_url: None,
            },
        });
        let gitlab = request(
            "gitlab",
            &service(Kind::CommitStatus(GitHost::GitLab)),
            "t",
            &custom,
            Trigger::SyncFailed,
            &app(),
        )
        .expect("gitlab");
        assert_eq!(
            gitlab.url,
            "http://127.0.0.1:9/api/v4/projects/team%2Fweb/statuses/abc"
        );
        assert!(
            gitlab
                .headers
                .contains(&("PRIVATE-TOKEN".into(), "t0k".into()))
        );
        let body: Value = serde_json::from_str(&gitlab.body).expect("json");
        assert_eq!(body["state"], "failed");
        assert_eq!(body["name"], "deploy/web");
    }
}
