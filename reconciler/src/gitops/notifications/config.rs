//! The notifications configuration, in Argo CD notifications' layout: the ConfigMap
//! `gitplane-system/gitplane-notifications-cm` holds `service.TYPE[.NAME]`, `template.NAME` and
//! `trigger.NAME` keys (each a YAML document), and `$key` in a service's settings is the value
//! of `key` in the Secret `gitplane-system/gitplane-notifications-secret`.
//!
//! Services: `service.webhook.NAME` (`url`, `headers`: generic JSON or a template's own body),
//! `service.slack[.NAME]` (`url`: a Slack incoming webhook; Slack's payload), and the commit
//! statuses `service.github`, `service.gitlab`, `service.gitea` (`url`: the API's base URL,
//! `token`). A subscription names a service by `NAME` for webhooks and by its type otherwise
//! (`slack`, `github`), or by the `NAME` of `service.TYPE.NAME`.
//!
//! Triggers are the five of [`super::triggers::Trigger`], each a list of conditions: the
//! trigger's built-in condition says when an event is due, and each condition's `when` (a CEL
//! expression over the Application as `app`, checked here when the configuration is read and
//! evaluated by [`Condition::selects`]) whether its `send` templates go out for it. Argo CD
//! writes `when` in expr-lang; the expressions its catalog uses (`app.status.sync.status ==
//! 'Synced'`, `phase in ['Error', 'Failed']`) read the same in CEL. `oncePer` is accepted and
//! not evaluated (each trigger's once-per key is built in).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::triggers::Trigger;

/// The ConfigMap's name (in `gitplane-system`).
pub const CONFIG_MAP: &str = "gitplane-notifications-cm";
/// The Secret's name (in `gitplane-system`).
pub const SECRET: &str = "gitplane-notifications-secret";

/// Why the configuration cannot be used: names the ConfigMap key and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{ns}/{cm}: {key}: {message}", ns = super::NAMESPACE, cm = CONFIG_MAP)]
pub struct ConfigError {
    /// The ConfigMap key.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// A Git host whose commit status API a service calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GitHost {
    /// `POST /repos/OWNER/REPO/statuses/SHA`.
    GitHub,
    /// `POST /api/v4/projects/OWNER%2FREPO/statuses/SHA`.
    GitLab,
    /// `POST /api/v1/repos/OWNER/REPO/statuses/SHA`.
    Gitea,
}

impl GitHost {
    /// The template key and service type of this host.
    pub fn name(self) -> &'static str {
        match self {
            GitHost::GitHub => "github",
            GitHost::GitLab => "gitlab",
            GitHost::Gitea => "gitea",
        }
    }
}

/// What a service sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A JSON POST: the template's `webhook.NAME.body`, or the generic JSON payload.
    Webhook,
    /// Slack's incoming webhook payload (`text`, `attachments`, `blocks`).
    Slack,
    /// A commit status on the Application's revision.
    CommitStatus(GitHost),
}

/// A service, its `$secret` references resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// What it sends.
    pub kind: Kind,
    /// The URL (a commit status service's: the API's base URL).
    pub url: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// A commit status service's token.
    pub token: Option<String>,
}

/// A template's webhook part for one service.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookTemplate {
    /// `POST` unless given.
    pub method: Option<String>,
    /// Appended to the service's URL.
    pub path: Option<String>,
    /// The body (a handlebars template; values are JSON-escaped).
    pub body: Option<String>,
}

/// A template's Slack part.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct SlackTemplate {
    /// A JSON array of attachments (a handlebars template).
    pub attachments: Option<String>,
    /// A JSON array of blocks (a handlebars template).
    pub blocks: Option<String>,
}

/// A template's commit status part.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct StatusTemplate {
    /// `success`, `failure`, `pending`, `error` (default: from the trigger).
    pub state: Option<String>,
    /// The status' context (default `continuous-delivery/gitplane`).
    pub label: Option<String>,
    /// Its link.
    #[serde(rename = "targetURL")]
    pub target_url: Option<String>,
}

/// The commit status part of a template (`github:`, `gitlab:`, `gitea:`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct HostTemplate {
    /// The status.
    pub status: StatusTemplate,
}

/// A template.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Template {
    /// The message (handlebars): Slack's text, the generic payload's `message`, a commit
    /// status' description.
    pub message: String,
    /// Per webhook service.
    pub webhook: BTreeMap<String, WebhookTemplate>,
    /// For Slack services.
    pub slack: Option<SlackTemplate>,
    /// For GitHub services.
    pub github: Option<HostTemplate>,
    /// For GitLab services.
    pub gitlab: Option<HostTemplate>,
    /// For Gitea services.
    pub gitea: Option<HostTemplate>,
}

impl Template {
    /// The commit status part for `host`.
    pub fn status(&self, host: GitHost) -> StatusTemplate {
        match host {
            GitHost::GitHub => &self.github,
            GitHost::GitLab => &self.gitlab,
            GitHost::Gitea => &self.gitea,
        }
        .as_ref()
        .map(|h| h.status.clone())
        .unwrap_or_default()
    }
}

/// One condition of a trigger as written. `oncePer` is accepted (Argo CD configurations have
/// it) and not evaluated: each trigger's once-per key is built in.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerCondition {
    #[serde(default)]
    when: Option<String>,
    send: Vec<String>,
    #[serde(default, rename = "oncePer")]
    _once_per: Option<String>,
}

/// The variable a `when` expression sees the Application as.
pub const APP_VARIABLE: &str = "app";

/// Why a `when` expression could not say whether to send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("trigger.{trigger}: when: {expression:?}: {message}")]
pub struct WhenError {
    /// The trigger's name.
    pub trigger: String,
    /// The expression.
    pub expression: String,
    /// The evaluation error (a missing field, not a boolean).
    pub message: String,
}

/// One condition of a trigger: the templates it sends, and when (always when `when` is absent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// A CEL expression over `app`, compiled when the configuration was read.
    pub when: Option<String>,
    /// The templates it sends.
    pub send: Vec<String>,
}

impl Condition {
    /// Whether this condition sends for the Application `app` (JSON), for `trigger`.
    pub fn selects(&self, trigger: Trigger, app: &serde_json::Value) -> Result<bool, WhenError> {
        let Some(expression) = &self.when else {
            return Ok(true);
        };
        let activation = apimachinery::cel::Activation::new().bind(APP_VARIABLE, Some(app));
        apimachinery::cel::compile(expression, &[APP_VARIABLE])
            .and_then(|p| apimachinery::cel::evaluate_bool(&p, &activation))
            .map_err(|e| WhenError {
                trigger: trigger.name().to_string(),
                expression: expression.clone(),
                message: e.to_string(),
            })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceSettings {
    url: String,
    #[serde(default)]
    headers: Vec<Header>,
    #[serde(default)]
    token: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    name: String,
    value: String,
}

/// The whole configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Services by the name subscriptions use.
    pub services: BTreeMap<String, Service>,
    /// Templates by name.
    pub templates: BTreeMap<String, Template>,
    /// Each trigger's conditions.
    pub triggers: BTreeMap<Trigger, Vec<Condition>>,
}

fn yaml<T: serde::de::DeserializeOwned>(key: &str, text: &str) -> Result<T, ConfigError> {
    serde_saphyr::from_str(text).map_err(|e| ConfigError {
        key: key.to_string(),
        message: e.to_string(),
    })
}

/// Replaces `$name` (a whole value) with the Secret's `name`.
fn resolve(
    key: &str,
    value: &str,
    secret: &BTreeMap<String, String>,
) -> Result<String, ConfigError> {
    match value.strip_prefix('$') {
        None => Ok(value.to_string()),
        Some(name) => secret.get(name).cloned().ok_or_else(|| ConfigError {
            key: key.to_string(),
            message: format!("${name}: key {name:?} not found in secret {SECRET}"),
        }),
    }
}

impl Config {
    /// Reads the ConfigMap's `data` and the Secret's decoded `data`.
    pub fn parse(
        data: &BTreeMap<String, String>,
        secret: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        for (key, text) in data {
            if let Some(rest) = key.strip_prefix("service.") {
                let (kind, name) = match rest.split_once('.') {
                    Some(("webhook", name)) => (Kind::Webhook, name),
                    Some(("slack", name)) => (Kind::Slack, name),
                    Some(("github", name)) => (Kind::CommitStatus(GitHost::GitHub), name),
                    Some(("gitlab", name)) => (Kind::CommitStatus(GitHost::GitLab), name),
                    Some(("gitea", name)) => (Kind::CommitStatus(GitHost::Gitea), name),
                    None if rest == "slack" => (Kind::Slack, rest),
                    None if rest == "github" => (Kind::CommitStatus(GitHost::GitHub), rest),
                    None if rest == "gitlab" => (Kind::CommitStatus(GitHost::GitLab), rest),
                    None if rest == "gitea" => (Kind::CommitStatus(GitHost::Gitea), rest),
                    _ => {
                        return Err(ConfigError {
                            key: key.clone(),
                            message: "unknown service type: expected webhook.NAME, slack, \
                                      github, gitlab or gitea"
                                .into(),
                        });
                    }
                };
                let s: ServiceSettings = yaml(key, text)?;
                let headers = s
                    .headers
                    .iter()
                    .map(|h| Ok((h.name.clone(), resolve(key, &h.value, secret)?)))
                    .collect::<Result<_, ConfigError>>()?;
                let token = s.token.map(|t| resolve(key, &t, secret)).transpose()?;
                if matches!(kind, Kind::CommitStatus(_)) && token.is_none() {
                    return Err(ConfigError {
                        key: key.clone(),
                        message: "token: Required value".into(),
                    });
                }
                config.services.insert(
                    name.to_string(),
                    Service {
                        kind,
                        url: resolve(key, &s.url, secret)?,
                        headers,
                        token,
                    },
                );
            } else if let Some(name) = key.strip_prefix("template.") {
                config.templates.insert(name.to_string(), yaml(key, text)?);
            } else if let Some(name) = key.strip_prefix("trigger.") {
                let trigger = Trigger::parse(name).ok_or_else(|| ConfigError {
                    key: key.clone(),
                    message: format!(
                        "unknown trigger: expected one of {}",
                        Trigger::ALL.map(Trigger::name).join(", ")
                    ),
                })?;
                let written: Vec<TriggerCondition> = yaml(key, text)?;
                let mut conditions = Vec::new();
                for (i, c) in written.into_iter().enumerate() {
                    if let Some(when) = &c.when {
                        apimachinery::cel::compile(when, &[APP_VARIABLE]).map_err(|e| {
                            ConfigError {
                                key: key.clone(),
                                message: format!("[{i}].when: {when:?}: {e}"),
                            }
                        })?;
                    }
                    conditions.push(Condition {
                        when: c.when,
                        send: c.send,
                    });
                }
                config.triggers.insert(trigger, conditions);
            }
        }
        for (trigger, conditions) in &config.triggers {
            if let Some(missing) = conditions
                .iter()
                .flat_map(|c| &c.send)
                .find(|t| !config.templates.contains_key(*t))
            {
                return Err(ConfigError {
                    key: format!("trigger.{}", trigger.name()),
                    message: format!("send: template {missing:?} is not defined"),
                });
            }
        }
        Ok(config)
    }
}

/// An Application's subscriptions: `notifications.argoproj.io/subscribe.TRIGGER.SERVICE`
/// annotations (their value, the recipient, is not used by gitplane's services).
pub fn subscriptions(annotations: &BTreeMap<String, String>) -> Vec<(Trigger, String)> {
    annotations
        .keys()
        .filter_map(|k| k.strip_prefix(super::SUBSCRIBE))
        .filter_map(|rest| {
            let (trigger, service) = rest.split_once('.')?;
            Some((Trigger::parse(trigger)?, service.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn check(data: &[(&str, &str)], expected: Result<(), &str>) -> Option<Config> {
        let secret = map(&[("token", "s3cret")]);
        let got = Config::parse(&map(data), &secret);
        match (&got, expected) {
            (Ok(_), Ok(())) => {}
            (Err(e), Err(want)) => assert_eq!(e.to_string(), want, "{data:?}"),
            _ => panic!("{data:?}: got {got:?}, expected {expected:?}"),
        }
        got.ok()
    }

    #[test]
    fn argo_cd_layout_reads_with_secret_references_and_errors_name_the_key() {
        let config = check(
            &[
                (
                    "service.webhook.ops",
                    "url: http://127.0.0.1:1/hook\nheaders:\n- name: Authorization\n  value: $token\n",
                ),
                ("service.gitea", "url: http://127.0.0.1:2\ntoken: $token\n"),
                ("template.failed", "message: '{{app.metadata.name}} failed'\n"),
                ("trigger.on-sync-failed", "- when: app.status.operationState.phase in ['Failed']\n  send: [failed]\n"),
            ],
            Ok(()),
        )
        .expect("config");
        let ops = &config.services["ops"];
        assert_eq!(ops.kind, Kind::Webhook);
        assert_eq!(ops.headers, vec![("Authorization".into(), "s3cret".into())]);
        assert_eq!(config.services["gitea"].token.as_deref(), Some("s3cret"));
        let failed = &config.triggers[&Trigger::SyncFailed];
        assert_eq!(failed[0].send, vec!["failed".to_string()]);
        let app = |phase: &str| serde_json::json!({"status": {"operationState": {"phase": phase}}});
        assert_eq!(
            failed[0].selects(Trigger::SyncFailed, &app("Failed")),
            Ok(true)
        );
        assert_eq!(
            failed[0].selects(Trigger::SyncFailed, &app("Succeeded")),
            Ok(false)
        );
        let missing = failed[0].selects(Trigger::SyncFailed, &serde_json::json!({}));
        assert!(
            missing.as_ref().is_err_and(|e| e.to_string().starts_with(
                "trigger.on-sync-failed: when: \"app.status.operationState.phase in ['Failed']\": "
            )),
            "{missing:?}"
        );
        let not_bool = Condition {
            when: Some("app.metadata.name".into()),
            send: vec![],
        };
        let named = serde_json::json!({"metadata": {"name": "web"}});
        assert!(
            not_bool
                .selects(Trigger::Deployed, &named)
                .is_err_and(|e| e.message == "expected bool, got string")
        );

        check(
            &[("service.webhook.x", "url: $missing\n")],
            Err(
                "gitplane-system/gitplane-notifications-cm: service.webhook.x: $missing: key \"missing\" not found in secret gitplane-notifications-secret",
            ),
        );
        check(
            &[("trigger.on-sync-failed", "- send: [nope]\n")],
            Err(
                "gitplane-system/gitplane-notifications-cm: trigger.on-sync-failed: send: template \"nope\" is not defined",
            ),
        );
        check(
            &[("trigger.on-created", "- send: []\n")],
            Err(
                "gitplane-system/gitplane-notifications-cm: trigger.on-created: unknown trigger: expected one of on-sync-succeeded, on-sync-failed, on-health-degraded, on-health-recovered, on-deployed",
            ),
        );
        let unparsable = Config::parse(
            &map(&[
                ("template.t", "message: x\n"),
                (
                    "trigger.on-deployed",
                    "- send: [t]\n- when: app.status.(\n  send: [t]\n",
                ),
            ]),
            &BTreeMap::new(),
        );
        assert!(
            unparsable.as_ref().is_err_and(|e| e.to_string().starts_with(
                "gitplane-system/gitplane-notifications-cm: trigger.on-deployed: [1].when: \"app.status.(\": compilation failed: "
            )),
            "{unparsable:?}"
        );
        check(
            &[
                ("template.t", "message: x\n"),
                (
                    "trigger.on-deployed",
                    "- when: application.status\n  send: [t]\n",
                ),
            ],
            Err(
                "gitplane-system/gitplane-notifications-cm: trigger.on-deployed: [0].when: \"application.status\": compilation failed: undeclared reference to 'application'",
            ),
        );
        check(
            &[("service.gitea", "url: http://x\n")],
            Err("gitplane-system/gitplane-notifications-cm: service.gitea: token: Required value"),
        );
        check(
            &[("service.pager.x", "url: http://x\n")],
            Err(
                "gitplane-system/gitplane-notifications-cm: service.pager.x: unknown service type: expected webhook.NAME, slack, github, gitlab or gitea",
            ),
        );
    }

    #[test]
    fn subscriptions_are_read_from_argo_cd_annotations() {
        let subs = subscriptions(&map(&[
            ("notifications.argoproj.io/subscribe.on-sync-failed.ops", ""),
            (
                "notifications.argoproj.io/subscribe.on-deployed.slack",
                "#deploys",
            ),
            ("notifications.argoproj.io/subscribe.on-unknown.ops", ""),
            ("gitplane.io/app", "x"),
        ]));
        assert_eq!(
            subs,
            vec![
                (Trigger::Deployed, "slack".to_string()),
                (Trigger::SyncFailed, "ops".to_string()),
            ]
        );
    }
}
