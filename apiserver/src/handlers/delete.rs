//! `DELETE` on an object: preconditions, finalizers and graceful deletion.
//!
//! An object with finalizers (including the `orphan` / `foregroundDeletion` ones a propagation
//! policy adds) is not removed: it gets a `deletionTimestamp` and stays until its finalizers are
//! gone. A pod already bound to a node is deleted gracefully: it gets a `deletionTimestamp` of
//! now plus its grace period and its node removes it. Everything else goes at once.

use std::sync::Arc;

use apimachinery::object::ObjectExt;
use apimachinery::registry::ResourceInfo;
use apimachinery::status::StatusError;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::ApiRequest;
use super::write::{conflict, stamp, update_with};
use crate::crd;
use crate::response::{ApiResult, json, storage_error};
use crate::state::ApiState;
use crate::storage::StorageError;
use crate::strategy::UpdateScope;

/// The parts of `DeleteOptions` the server acts on.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `propagationPolicy` (or the legacy `orphanDependents`).
    pub propagation: Option<String>,
    /// `gracePeriodSeconds`.
    pub grace_period: Option<i64>,
    /// `dryRun: [All]`.
    pub dry_run: bool,
}

impl DeleteOptions {
    /// Reads DeleteOptions from the body (if any) and the query.
    pub fn from_request(req: &ApiRequest) -> Result<Self, StatusError> {
        let body = if req.body.is_empty() {
            Value::Null
        } else {
            req.json_body()?
        };
        let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
        let mut propagation = s(body.get("propagationPolicy"))
            .or_else(|| req.params.get("propagationPolicy").map(str::to_string));
        let orphan = body
            .get("orphanDependents")
            .and_then(Value::as_bool)
            .or_else(|| req.params.get("orphanDependents").map(|v| v == "true"));
        if propagation.is_none() {
            propagation = orphan.map(|o| if o { "Orphan" } else { "Background" }.to_string());
        }
        if let Some(p) = &propagation
            && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
        {
            return Err(StatusError::invalid(
                "meta.k8s.io",
                "DeleteOptions",
                "",
                vec![apimachinery::status::FieldError::invalid(
                    "propagationPolicy",
                    p,
                    "supported values: \"Orphan\", \"Background\", \"Foreground\"",
                )],
            ));
        }
        let dry_run = req.params.dry_run()?
            || body
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|v| v == "All"));
        Ok(DeleteOptions {
            uid: s(body.pointer("/preconditions/uid")),
            resource_version: s(body.pointer("/preconditions/resourceVersion")),
            propagation,
            grace_period: body
                .get("gracePeriodSeconds")
                .and_then(Value::as_i64)
                .or(req.params.int("gracePeriodSeconds")?),
            dry_run,
        })
    }
}

/// Deletes the named object.
pub async fn delete(state: &Arc<ApiState>, req: &ApiRequest) -> ApiResult {
    let opts = DeleteOptions::from_request(req)?;
    if let Some(stored) = state
        .cache()
        .get(&req.info.key(req.namespace(), req.name()))
    {
        crate::admission::delete(state, req, &stored.object).await?;
    }
    let object = delete_object(state, &req.info, req.namespace(), req.name(), &opts).await?;
    Ok(json(StatusCode::OK, &answer(&req.info, object)))
}

/// What a DELETE answers, as Kubernetes' generic store does: an object whose deletion is pending
/// (finalizers, a graceful pod) is answered as it now is; one removed at once with a `Status`
/// naming it (`details.kind` is the resource, as Kubernetes sets it), except for the kinds whose
/// storage returns the deleted object (`ReturnDeletedObject`).
fn answer(info: &ResourceInfo, object: Value) -> Value {
    let returns_object = matches!(
        (info.group.as_str(), info.plural.as_str()),
        ("", "pods" | "services" | "serviceaccounts" | "namespaces")
            | ("storage.k8s.io", "storageclasses")
            | ("apiextensions.k8s.io", "customresourcedefinitions")
    );
    let pending = object.pointer("/metadata/deletionTimestamp").is_some();
    if returns_object || pending {
        return object;
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": object.name().unwrap_or(""),
            "group": info.group,
            "kind": info.plural,
            "uid": object.uid().unwrap_or(""),
        },
    })
}

/// Deletes one object under the given options; returns its last state.
pub async fn delete_object(
    state: &Arc<ApiState>,
    info: &ResourceInfo,
    namespace: Option<&str>,
    name: &str,
    opts: &DeleteOptions,
) -> Result<Value, StatusError> {
    let key = info.key(namespace, name);
    loop {
        let stored = state
            .read_stored(info, namespace, name)
            .await?
            .ok_or_else(|| StatusError::not_found(&info.group, &info.plural, name))?;
        let obj = stored.object;
        if opts.uid.as_deref().is_some_and(|u| Some(u) != obj.uid()) {
            return Err(StatusError::conflict(
                &info.group,
                &info.plural,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {}, UID in object meta: {}",
                    opts.uid.as_deref().unwrap_or(""),
                    obj.uid().unwrap_or("")
                ),
            ));
        }
        if opts
            .resource_version
            .as_deref()
            .is_some_and(|rv| rv != stored.mod_revision.to_string())
        {
            return Err(conflict(info, name));
        }
        if let Some(pending) = pending_deletion(info, &obj, opts) {
            let written = update_with(
                state,
                info,
                namespace,
                name,
                UpdateScope::Delete,
                opts.dry_run,
                |current| Ok(mark_deleted(current, &pending)),
            )
            .await?;
            return Ok(written.object);
        }
        if opts.dry_run {
            return Ok(stamp(obj, stored.mod_revision));
        }
        match state.store().delete(&key, Some(stored.mod_revision)).await {
            Ok((revision, _)) => {
                state.release_service(info, &obj, None).await;
                crd::after_delete(state, info, &obj, revision).await;
                crate::admission::quota::after_write(state, info, namespace, revision).await;
                return Ok(stamp(obj, stored.mod_revision));
            }
            Err(StorageError::Conflict { .. }) => continue,
            Err(e) => return Err(storage_error(e, &info.group, &info.plural, name)),
        }
    }
}

/// What a pending (not immediate) deletion sets.
struct Pending {
    finalizer: Option<&'static str>,
    grace_seconds: i64,
}

/// Whether the object must wait (finalizers, a graceful pod, a namespace with spec finalizers),
/// and
/// how; `None` means it can go now.
fn pending_deletion(info: &ResourceInfo, obj: &Value, opts: &DeleteOptions) -> Option<Pending> {
    let finalizer = match opts.propagation.as_deref() {
        Some("Orphan") => Some("orphan"),
        Some("Foreground") => Some("foregroundDeletion"),
        _ => None,
    };
    // A namespace waits for its `spec.finalizers` (`kubernetes`: the namespace controller
    // empties it, then finalizes it).
    let is_namespace = info.group.is_empty()
        && info.plural == "namespaces"
        && obj
            .path("spec.finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
    let bound_pod = info.group.is_empty()
        && info.plural == "pods"
        && obj
            .path("spec.nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
    let grace = if bound_pod {
        opts.grace_period.unwrap_or_else(|| {
            obj.path("spec.terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(30)
        })
    } else {
        0
    };
    let has_finalizers = !obj.finalizers().is_empty() || finalizer.is_some();
    (has_finalizers || is_namespace || grace > 0).then_some(Pending {
        finalizer,
        grace_seconds: grace.max(0),
    })
}

fn mark_deleted(current: &Value, pending: &Pending) -> Value {
    let mut obj = current.clone();
    if let Some(f) = pending.finalizer {
        let mut finalizers = obj.finalizers();
        if !finalizers.iter().any(|x| x == f) {
            finalizers.push(f.to_string());
        }
        obj.set_meta("finalizers", json!(finalizers));
    }
    let deadline = |secs: i64| {
        let at = jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::from_secs(secs))
            .unwrap_or_else(|_| jiff::Timestamp::now());
        json!(
            jiff::Timestamp::from_second(at.as_second())
                .unwrap_or(at)
                .to_string()
        )
    };
    let running = obj
        .path("metadata.deletionGracePeriodSeconds")
        .and_then(Value::as_i64);
    match running {
        // First delete: start the clock.
        None if obj.path("metadata.deletionTimestamp").is_none() => {
            obj.set_meta("deletionTimestamp", deadline(pending.grace_seconds));
            obj.set_meta("deletionGracePeriodSeconds", json!(pending.grace_seconds));
        }
        // A later delete may only shorten the grace period, as in Kubernetes.
        Some(g) if pending.grace_seconds < g => {
            obj.set_meta("deletionTimestamp", deadline(pending.grace_seconds));
            obj.set_meta("deletionGracePeriodSeconds", json!(pending.grace_seconds));
        }
        _ => {}
    }
    if obj.kind() == Some("Namespace") {
        obj["status"] = json!({"phase": "Terminating"});
    }
    obj
}
