//! Operations asked of an Application through the API, as Argo CD records them: a write of
//! `operation: {sync: {prune}}` or `operation: {rollback: {revision}}` (with `initiatedBy` and an
//! optional `id`) on the Application, by `gitplane sync`, `gitplane rollback` or the web console.
//!
//! The syncer calls [`take`] once per Application and pass, before anything else: a rollback
//! becomes the same `git revert` commit `gitplane rollback` always made (on the local repository,
//! or pushed to a remote one with the Application's credentials), and both kinds become the
//! syncer's sync request. The operation is then removed from the Application and recorded in
//! `status.operationState` (`operation`, `initiatedBy`, `requestId`), where the syncer reports
//! the outcome. Every request is a write through the API, so RBAC decides who may make it and
//! the audit log records who did.

use std::path::{Path, PathBuf};

use apimachinery::object::ObjectExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

use super::application::{ANNOTATION_REFRESH, ANNOTATION_SYNC_REQUEST};
use super::repo::{self, Mirror};

/// Why an operation could not be read or carried out.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    /// The `operation` field is malformed.
    #[error("operation: {0}")]
    Invalid(String),
    /// The revert commit of a rollback could not be made.
    #[error("rollback to {revision}: {source}")]
    Rollback {
        /// The revision asked for.
        revision: String,
        /// What went wrong.
        #[source]
        source: RevertError,
    },
    /// An API call failed.
    #[error("{what}: {source}")]
    Api {
        /// The call.
        what: String,
        /// The error.
        #[source]
        source: kube::Error,
    },
}

/// Why the revert commit of a rollback could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RevertError {
    /// The credentials of a remote repository could not be read.
    #[error(transparent)]
    Credentials(Box<super::steps::StepError>),
    /// The local repository could not be opened.
    #[error("opening {}: {}", .path.display(), .source.message())]
    Open {
        /// The repository.
        path: PathBuf,
        /// What libgit2 said.
        #[source]
        source: git2::Error,
    },
    /// The revision names no commit of the local repository.
    #[error("revision not found in {}", .0.display())]
    NotFound(PathBuf),
    /// Mirroring, fetching, reverting or pushing failed.
    #[error(transparent)]
    Repo(#[from] repo::RepoError),
    /// The blocking task running git panicked or was cancelled.
    #[error(transparent)]
    Task(tokio::task::JoinError),
}

/// What an operation asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// Sync to the tracked revision now (`prune`: also delete what is no longer rendered).
    Sync {
        /// Prune even without automated prune.
        prune: bool,
    },
    /// A `git revert` of every commit after `revision` on the tracked branch, then a sync.
    Rollback {
        /// Branch, tag or commit to go back to.
        revision: String,
    },
}

/// A parsed `operation`.
#[derive(Clone, Debug, PartialEq)]
pub struct Operation {
    /// Request id: the client's `id`, or one made from the time; the syncer reports the
    /// outcome under it in `status.operationState.requestId`.
    pub id: String,
    /// Who asked (`initiatedBy.username`; the audit log has the authenticated user).
    pub initiated_by: String,
    /// What was asked.
    pub kind: Kind,
}

impl Operation {
    /// The syncer's sync request for this operation (`:prune` asks for pruning).
    pub fn request_id(&self) -> String {
        match self.kind {
            Kind::Sync { prune: true } => format!("{}:prune", self.id),
            _ => self.id.clone(),
        }
    }
}

/// Reads an `operation` field; `fallback_id` is used when it carries no `id`.
pub fn parse(value: &Value, fallback_id: &str) -> Result<Operation, OperationError> {
    let invalid = |m: &str| OperationError::Invalid(m.to_string());
    let object = value
        .as_object()
        .ok_or_else(|| invalid("expected an object"))?;
    let id = match object.get("id") {
        None | Some(Value::Null) => fallback_id.to_string(),
        Some(Value::String(s)) if !s.is_empty() && !s.contains(':') => s.clone(),
        Some(_) => return Err(invalid("id: expected a non-empty string without ':'")),
    };
    let initiated_by = value
        .pointer("/initiatedBy/username")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let kind = match (object.get("sync"), object.get("rollback")) {
        (Some(sync), None) => Kind::Sync {
            prune: match sync.get("prune") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(invalid("sync.prune: expected a boolean")),
            },
        },
        (None, Some(rollback)) => match rollback.get("revision").and_then(Value::as_str) {
            Some(r) if !r.trim().is_empty() => Kind::Rollback {
                revision: r.trim().to_string(),
            },
            _ => return Err(invalid("rollback.revision: Required value")),
        },
        (Some(_), Some(_)) => return Err(invalid("give one of sync and rollback, not both")),
        (None, None) => return Err(invalid("expected sync or rollback")),
    };
    Ok(Operation {
        id,
        initiated_by,
        kind,
    })
}

fn now() -> String {
    let t = jiff::Timestamp::now();
    jiff::Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string()
}

/// Takes the pending `operation` of `app`, if any, and returns the Application as it is
/// afterwards (the operation removed, the sync requested); without one, `app` as it was.
/// `mirrors` is where the mirror of a remote repository is kept for a rollback's push.
pub async fn take(
    client: &kube::Client,
    mirrors: &Path,
    api: &Api<DynamicObject>,
    app: Value,
) -> Value {
    let Some(requested) = app.get("operation").filter(|o| !o.is_null()).cloned() else {
        return app;
    };
    let name = app.name().unwrap_or("").to_string();
    let fallback = jiff::Timestamp::now().as_nanosecond().to_string();
    let result = match parse(&requested, &fallback) {
        Ok(op) => carry_out(client, mirrors, &app, &op)
            .await
            .map(|head| (op, head)),
        Err(e) => Err(e),
    };
    let (patch, state) = match &result {
        Ok((op, head)) => {
            let id = op.request_id();
            // No `requestId` yet: the syncer writes it when it takes the sync request up (an
            // operation state naming the request would tell it the request was handled).
            let mut state = json!({
                "phase": "Running", "message": "requested",
                "operation": requested, "startedAt": now(), "finishedAt": null, "revertCommit": null,
                "initiatedBy": {"username": op.initiated_by},
            });
            if let Some(head) = head {
                state["message"] = json!(format!("reverted with commit {head}"));
                state["revertCommit"] = json!(head);
            }
            let patch = json!({"operation": null, "metadata": {"annotations": {
                ANNOTATION_SYNC_REQUEST: id, ANNOTATION_REFRESH: id,
            }}});
            (patch, state)
        }
        Err(e) => {
            tracing::warn!(app = %name, error = %e, "operation refused");
            let state = json!({
                "phase": "Failed", "message": e.to_string(),
                "requestId": requested.get("id").cloned().unwrap_or(Value::Null),
                "operation": requested, "startedAt": now(), "finishedAt": now(), "revertCommit": null,
                "initiatedBy": requested.get("initiatedBy").cloned().unwrap_or(json!({})),
            });
            (json!({"operation": null}), state)
        }
    };
    let status = json!({"status": {"operationState": state}});
    if let Err(e) = api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
        .await
    {
        tracing::warn!(app = %name, error = %e, "recording the operation failed");
    }
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(updated) => serde_json::to_value(updated).unwrap_or(app),
        Err(e) => {
            tracing::warn!(app = %name, error = %e, "removing the operation failed");
            app
        }
    }
}

/// Makes a rollback's revert commit (its id is returned); a sync needs nothing beforehand.
async fn carry_out(
    client: &kube::Client,
    mirrors: &Path,
    app: &Value,
    op: &Operation,
) -> Result<Option<String>, OperationError> {
    let Kind::Rollback { revision } = &op.kind else {
        return Ok(None);
    };
    let s = |p: &str| {
        app.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (url, branch) = (s("/spec/source/repoURL"), s("/spec/source/targetRevision"));
    let failed = |source: RevertError| OperationError::Rollback {
        revision: revision.clone(),
        source,
    };
    let creds = match repo::local_path(&url) {
        Some(_) => Default::default(),
        None => super::syncer::credentials(client, Some(&s("/spec/source/secretRef")))
            .await
            .map_err(|e| failed(RevertError::Credentials(Box::new(e))))?,
    };
    let (mirrors, target) = (mirrors.to_path_buf(), revision.clone());
    let head = tokio::task::spawn_blocking(move || -> Result<git2::Oid, RevertError> {
        match repo::local_path(&url) {
            Some(path) => {
                let repository =
                    git2::Repository::open(&path).map_err(|source| RevertError::Open {
                        path: path.clone(),
                        source,
                    })?;
                let oid = repository
                    .revparse_single(&target)
                    .and_then(|o| o.peel_to_commit())
                    .map_err(|_| RevertError::NotFound(path.clone()))?
                    .id();
                drop(repository);
                Ok(repo::revert_to(&path, &branch, oid)?)
            }
            None => {
                let mirror = Mirror::open(&mirrors, &url)?;
                mirror.fetch(&creds)?;
                let oid = mirror.resolve(&target)?;
                Ok(mirror.revert_and_push(&branch, oid, &creds)?)
            }
        }
    })
    .await
    .map_err(|e| failed(RevertError::Task(e)))?
    .map_err(failed)?;
    Ok(Some(head.to_string()))
}

/// Asks for an operation on Application `name` through the API as the client's user (named in
/// `initiatedBy` from a SelfSubjectReview); returns the request id the syncer will report under.
pub async fn request(
    client: &kube::Client,
    name: &str,
    kind: Kind,
) -> Result<String, OperationError> {
    let api: Api<DynamicObject> =
        Api::all_with(client.clone(), &super::syncer::application_resource());
    let username = whoami(client).await.unwrap_or_default();
    let id = jiff::Timestamp::now().as_nanosecond().to_string();
    let mut operation = json!({"id": id, "initiatedBy": {"username": username}});
    match &kind {
        Kind::Sync { prune } => operation["sync"] = json!({"prune": prune}),
        Kind::Rollback { revision } => operation["rollback"] = json!({"revision": revision}),
    }
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"operation": operation})),
    )
    .await
    .map_err(|source| OperationError::Api {
        what: format!("requesting an operation on application {name}"),
        source,
    })?;
    Ok(Operation {
        id,
        initiated_by: username,
        kind,
    }
    .request_id())
}

/// The client's user name, from a SelfSubjectReview.
async fn whoami(client: &kube::Client) -> Option<String> {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    let api: Api<SelfSubjectReview> = Api::all(client.clone());
    let review = api
        .create(
            &kube::api::PostParams::default(),
            &SelfSubjectReview::default(),
        )
        .await
        .ok()?;
    review.status?.user_info?.username
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: Value, expected: Result<(&str, &str, Kind), &str>) {
        let got = parse(&input, "t1").map_err(|e| e.to_string());
        let expected = expected
            .map(|(id, user, kind)| Operation {
                id: id.into(),
                initiated_by: user.into(),
                kind,
            })
            .map_err(str::to_string);
        assert_eq!(got, expected, "{input}");
    }

    #[test]
    fn operations_are_read_with_their_problems_named() {
        check(
            json!({"sync": {}, "initiatedBy": {"username": "alice"}}),
            Ok(("t1", "alice", Kind::Sync { prune: false })),
        );
        check(
            json!({"id": "42", "sync": {"prune": true}}),
            Ok(("42", "", Kind::Sync { prune: true })),
        );
        check(
            json!({"rollback": {"revision": " abc123 "}}),
            Ok((
                "t1",
                "",
                Kind::Rollback {
                    revision: "abc123".into(),
                },
            )),
        );
        check(
            json!({"rollback": {}}),
            Err("operation: rollback.revision: Required value"),
        );
        check(
            json!({"sync": {"prune": "yes"}}),
            Err("operation: sync.prune: expected a boolean"),
        );
        check(json!({}), Err("operation: expected sync or rollback"));
        check(
            json!({"sync": {}, "rollback": {"revision": "x"}}),
            Err("operation: give one of sync and rollback, not both"),
        );
        check(
            json!({"id": "a:b", "sync": {}}),
            Err("operation: id: expected a non-empty string without ':'"),
        );
        check(json!("sync"), Err("operation: expected an object"));
    }

    #[test]
    fn a_pruning_sync_asks_the_syncer_to_prune() {
        let op = parse(&json!({"id": "7", "sync": {"prune": true}}), "t").expect("valid");
        assert_eq!(op.request_id(), "7:prune");
    }
}
