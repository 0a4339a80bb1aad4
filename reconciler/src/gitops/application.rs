//! The `Application` kind as the syncer reads and writes it: spec (source, destination, sync
//! policy) and status (sync, health, conditions, resources, history, operation).

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
    /// Directory inside the repository.
    pub path: String,
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

/// `spec.destination`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Destination {
    /// Namespace for namespaced objects that name none.
    pub namespace: String,
}

/// `spec.syncPolicy`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct SyncPolicy {
    /// Sync without being asked; absent: only on `gitplane sync`.
    pub automated: Option<Automated>,
    /// Polling interval for remote repositories (`60s`, `5m`); default 60 s.
    pub interval: Option<String>,
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
    /// `ComparisonError`, `SyncError`, `RepoError`.
    #[serde(rename = "type")]
    pub type_: String,
    /// What is wrong, with file and line where there is one.
    pub message: String,
    /// When it was seen.
    pub last_transition_time: String,
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
