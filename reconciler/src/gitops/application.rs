//! The `Application` kind as the syncer reads and writes it: spec (source, destination, sync
//! policy) and [`ApplicationStatus`] (sync, health, conditions, resources, history, operation).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `spec` of an Application.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Spec {
    /// Where the manifests are.
    pub source: Source,
    /// Where they go.
    pub destination: Destination,
    /// When to sync.
    pub sync_policy: SyncPolicy,
}

/// `spec.source`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Source {
    /// Local path, `file://`, `https://` or `ssh://` URL. Empty in an Application rendered by
    /// another one: the parent's repository.
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    /// Branch, tag or commit; empty: the remote HEAD.
    pub target_revision: String,
    /// Directory inside the repository (Git).
    pub path: String,
    /// A chart in the Helm chart repository `repoURL` (HTTP(S)); `targetRevision` is then its
    /// version or a semver range, as in Argo CD.
    pub chart: String,
    /// Argo CD's Helm options (release name, values, parameters) for a chart.
    pub helm: Option<Helm>,
    /// Values files for a chart, relative to `path`.
    pub values_files: Vec<String>,
    /// Inline values for a chart.
    pub values: Option<Value>,
    /// `key.path=value` pairs, as `--set`.
    pub set: Vec<String>,
    /// Secret (name in `gitplane-system`... or any namespace as `ns/name`) with credentials:
    /// `username`/`password` for https, `sshPrivateKey` for ssh.
    pub secret_ref: Option<String>,
}

/// `spec.source.helm`, as Argo CD spells it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Helm {
    /// The release name (default: the Application's name).
    pub release_name: String,
    /// Values files: inside the chart for a chart repository, relative to `path` in Git.
    pub value_files: Vec<String>,
    /// Values as a YAML string.
    pub values: String,
    /// Values as an object (over `values`).
    pub values_object: Option<Value>,
    /// `--set` (or `--set-string` with `forceString`) parameters, over everything.
    pub parameters: Vec<Parameter>,
    /// Send the chart repository's credentials to an archive on another host too (helm's
    /// `--pass-credentials`).
    pub pass_credentials: bool,
}

/// An entry of `spec.source.helm.parameters`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Parameter {
    /// The value's path (`image.tag`).
    pub name: String,
    /// The value.
    pub value: String,
    /// Keep the value a string (`--set-string`).
    pub force_string: bool,
}

/// `spec.destination`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Destination {
    /// Namespace for namespaced objects that name none.
    pub namespace: String,
    /// The cluster's API server URL: a registered cluster's `server`, or
    /// `https://kubernetes.default.svc` (the local cluster). Empty with an empty `name`: local.
    pub server: String,
    /// The cluster's name: a registered cluster's `name`, or `in-cluster` (the local cluster).
    pub name: String,
}

/// `spec.syncPolicy`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct SyncPolicy {
    /// Sync without being asked; absent: only on `gitplane sync`.
    pub automated: Option<Automated>,
    /// Polling interval for remote repositories (`60s`, `5m`); default 60 s.
    pub interval: Option<String>,
    /// Argo CD's sync options (`ServerSideApply=true`); unknown ones are ignored, as Argo CD
    /// ignores them.
    pub sync_options: Vec<String>,
}

impl SyncPolicy {
    /// Whether objects are applied server-side (`ServerSideApply=true`): with field manager
    /// `gitplane`, forced, and drift judged on the fields that manager owns.
    pub fn server_side_apply(&self) -> bool {
        self.sync_options
            .iter()
            .any(|o| o.trim().eq_ignore_ascii_case("ServerSideApply=true"))
    }
}

/// `spec.syncPolicy.automated`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Automated {
    /// Delete what the app owns and no longer renders.
    pub prune: bool,
    /// Undo changes made to live objects by hand.
    pub self_heal: bool,
}

/// One resource of an Application, in `status.resources`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ResourceStatus {
    /// API group.
    pub group: String,
    /// Version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Namespace, if namespaced.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `Synced` or `OutOfSync`.
    pub status: String,
    /// Health of the live object.
    pub health: String,
    /// Rendered no more, but still live (waiting to be pruned).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub requires_pruning: bool,
}

/// One synced revision, in `status.history`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct HistoryEntry {
    /// Commit SHA.
    pub revision: String,
    /// When it was synced.
    pub deployed_at: String,
    /// Commit author.
    pub author: String,
    /// Commit message (first line).
    pub message: String,
}

/// A condition in `status.conditions`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Condition {
    /// `InvalidSpec`, `RepoError`, `ComparisonError` or `SyncError`.
    #[serde(rename = "type")]
    pub type_: String,
    /// What is wrong, with file and line where there is one.
    pub message: String,
    /// When it was seen.
    pub last_transition_time: String,
}

/// `status` of an Application, as the syncer writes it (a JSON merge patch of all of it).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ApplicationStatus {
    /// Whether the cluster matches the repository, at which commit.
    pub sync: SyncStatus,
    /// Health of the app as a whole; absent until first compared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthStatus>,
    /// What is wrong now.
    pub conditions: Vec<Condition>,
    /// Every object the app renders, and those waiting to be pruned.
    pub resources: Vec<ResourceStatus>,
    /// The last ten synced revisions, oldest first.
    pub history: Vec<HistoryEntry>,
    /// The last (or running) sync.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_state: Option<OperationState>,
    /// When the syncer last wrote the status (not compared: moving the clock is no change).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reconciled_at: String,
}

impl ApplicationStatus {
    /// The status without its clocks (`reconciledAt`, conditions' `lastTransitionTime`): what
    /// decides whether a new status is worth writing.
    pub fn without_clocks(&self) -> ApplicationStatus {
        let mut status = self.clone();
        status.reconciled_at.clear();
        for c in &mut status.conditions {
            c.last_transition_time.clear();
        }
        status
    }
}

/// `status.sync`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct SyncStatus {
    /// `Synced`, `OutOfSync` or `Unknown` (the repository could not be compared).
    pub status: String,
    /// The commit compared.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub revision: String,
}

/// `status.health`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct HealthStatus {
    /// `Healthy`, `Suspended`, `Progressing`, `Missing` or `Degraded`.
    pub status: String,
}

/// `status.operationState`: one sync, running or finished.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct OperationState {
    /// Where the sync is.
    pub phase: Phase,
    /// What it did, or why it failed (errors joined with `; `).
    pub message: String,
    /// The commit synced.
    pub revision: String,
    /// The hash of the spec synced (a changed spec syncs again).
    pub spec_hash: String,
    /// The `gitplane.io/sync-request` annotation when the sync ran (handled requests).
    pub request_id: String,
    /// When it started.
    pub started_at: String,
    /// When it finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The `operation` asked through the API that started this sync, as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<serde_json::Value>,
    /// Who asked for it (`{username}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initiated_by: Option<serde_json::Value>,
    /// The `git revert` commit a rollback made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revert_commit: Option<String>,
}

/// The phase of a sync.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum Phase {
    /// Dry run and apply under way.
    #[default]
    Running,
    /// Everything applied (and pruned, if asked).
    Succeeded,
    /// The dry run or apply failed; nothing more is applied.
    Failed,
}

impl Phase {
    /// The name written in `status.operationState.phase`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
        }
    }
}

/// The manual sync asked for by `gitplane sync`: an annotation with a request id.
pub const ANNOTATION_SYNC_REQUEST: &str = "gitplane.io/sync-request";
/// A request to re-read the repository now (`gitplane sync`, `gitplane rollback`).
pub const ANNOTATION_REFRESH: &str = "gitplane.io/refresh";

/// Parses a duration such as `30s`, `5m`, `1h`.
pub fn parse_interval(text: &str) -> Option<std::time::Duration> {
    let text = text.trim();
    let (num, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return None,
    };
    Some(std::time::Duration::from_secs(secs.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_read_from_json_with_defaults() {
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "source": {"repoURL": "/tmp/repo", "path": "apps/web", "set": ["replicas=3"]},
            "destination": {"namespace": "web"},
            "syncPolicy": {"automated": {"prune": true}}
        }))
        .unwrap();
        assert_eq!(spec.source.repo_url, "/tmp/repo");
        assert_eq!(spec.source.target_revision, "");
        assert!(spec.sync_policy.automated.as_ref().unwrap().prune);
        assert!(!spec.sync_policy.automated.unwrap().self_heal);
        assert_eq!(
            parse_interval("5m"),
            Some(std::time::Duration::from_secs(300))
        );
        assert_eq!(parse_interval("x"), None);
    }
}
