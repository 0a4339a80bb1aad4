//! Server-side apply: `PATCH` with `application/apply-patch+yaml` (`fieldManager` required,
//! `force` optional) on an object or its `status`, creating the object when it is missing.
//!
//! The merge, the ownership and the conflicts are [`apimachinery::patch::apply`]'s; this file
//! reads the request, runs the apply inside the write loop (so that a concurrent write makes it
//! re-run on the fresh object) and turns conflicts into Kubernetes' 409.

use std::sync::Arc;

use apimachinery::object::ObjectExt;
use apimachinery::patch::PatchType;
use apimachinery::patch::apply::{self as ssa, ApplyError, ManagedEntry};
use apimachinery::status::{FieldError, Reason, StatusError};
use axum::http::{StatusCode, header};
use serde_json::Value;

use super::ApiRequest;
use super::create::create_object;
use super::write::update_admitted;
use crate::fieldmanager;
use crate::response::{ApiResult, json};
use crate::state::ApiState;
use crate::strategy::{self, UpdateScope};

/// The manager of `kubectl apply --server-side`, which may take over client-side apply's fields.
const KUBECTL: &str = "kubectl";

/// kubectl's client-side apply annotation, parsed.
fn last_applied(live: &Value) -> Option<Value> {
    let text = live
        .annotations()
        .get("kubectl.kubernetes.io/last-applied-configuration")?
        .clone();
    serde_json::from_str(&text).ok()
}

/// Whether a request is a server-side apply.
pub fn is_apply(req: &ApiRequest) -> bool {
    req.method == axum::http::Method::PATCH
        && req
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(PatchType::from_content_type)
            == Some(PatchType::Apply)
}

/// The 422 Kubernetes answers for bad patch options.
fn invalid_options(cause: FieldError) -> StatusError {
    StatusError::invalid("meta.k8s.io", "PatchOptions", "", vec![cause])
}

/// `?force=`: absent is false.
pub fn force(req: &ApiRequest) -> Result<bool, StatusError> {
    match req.params.get("force") {
        None | Some("false" | "0" | "") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(v) => Err(StatusError::bad_request(format!(
            "invalid value for force: {v:?} is not a boolean"
        ))),
    }
}

/// The applied configuration: YAML (JSON is YAML too), an object without managedFields.
fn configuration(req: &ApiRequest) -> Result<Value, StatusError> {
    if req.body.is_empty() {
        return Err(StatusError::bad_request("the request body is empty"));
    }
    let parsed = serde_json::from_slice::<Value>(&req.body).or_else(|_| {
        let text = std::str::from_utf8(&req.body)
            .map_err(|_| StatusError::bad_request("the apply patch is not UTF-8"))?;
        serde_saphyr::from_str::<Value>(text)
            .map_err(|e| StatusError::bad_request(format!("error decoding YAML: {e}")))
    })?;
    if !parsed.is_object() {
        return Err(StatusError::bad_request(
            "the apply patch must be a YAML or JSON object",
        ));
    }
    if parsed
        .path("metadata.managedFields")
        .is_some_and(|m| !m.is_null())
    {
        return Err(StatusError::bad_request(
            "metadata.managedFields must be nil",
        ));
    }
    Ok(parsed)
}

/// The object an apply would write, ownership aside (for checks before the write, such as
/// RBAC escalation); `None` when the configuration does not parse (the apply then fails).
pub fn preview(req: &ApiRequest, current: Option<&Value>) -> Option<Value> {
    let config = configuration(req).ok()?;
    let schema = fieldmanager::schema(&req.info);
    Some(match current {
        Some(live) => ssa::merge(live, &config, schema),
        None => config,
    })
}

/// An apply's failure as the API answers it: conflicts are a 409 naming each field and its
/// manager, as Kubernetes' `NewApplyConflict` does.
fn apply_error(req: &ApiRequest, e: ApplyError) -> StatusError {
    match e {
        ApplyError::Conflicts(conflicts) => {
            let mut err = StatusError::new(Reason::Conflict, ssa::conflict_message(&conflicts));
            err.details_mut().causes = conflicts
                .into_iter()
                .map(|c| FieldError {
                    field: c.path,
                    reason: "FieldManagerConflict".into(),
                    message: format!("conflict with {}", c.manager),
                })
                .collect();
            err
        }
        ApplyError::Invalid(m) => StatusError::bad_request(format!(
            "failed to create typed patch object ({}/{}; {}, Kind={}): {m}",
            req.namespace().unwrap_or(""),
            req.name(),
            req.info.api_version(),
            req.info.kind
        )),
        ApplyError::ManagedFields(m) => {
            StatusError::bad_request(format!("failed to read metadata.managedFields: {m}"))
        }
    }
}

/// Applies the request's configuration to the object, creating it when missing.
pub async fn apply(state: &Arc<ApiState>, req: &ApiRequest, dry_run: bool) -> ApiResult {
    let Some(manager) = fieldmanager::requested_manager(req, "PatchOptions")? else {
        return Err(invalid_options(FieldError::required_because(
            "fieldManager",
            "is required for apply patch",
        )));
    };
    let force = force(req)?;
    let config = configuration(req)?;
    let info = &req.info;
    let scope = req.update_scope();
    let schema = fieldmanager::schema(info);
    let tracked = fieldmanager::tracked(info, scope);
    let api_version = info.api_version();
    let time = strategy::now();
    let writer = fieldmanager::writer(req, &manager, &api_version, &time);
    let run = |live: &Value| -> Result<(Value, Vec<ManagedEntry>), StatusError> {
        let stored = fieldmanager::entries(live).unwrap_or_default();
        let mut managers = stored.clone();
        let mut merged = ssa::apply(
            live,
            &config,
            schema,
            tracked,
            &mut managers,
            &writer,
            force,
        );
        if let Err(ApplyError::Conflicts(conflicts)) = &merged
            && manager == KUBECTL
            && last_applied(live)
                .is_some_and(|last| ssa::within_last_applied(conflicts, &last, schema, tracked))
        {
            managers = stored;
            merged = ssa::apply(live, &config, schema, tracked, &mut managers, &writer, true);
        }
        let merged = merged.map_err(|e| apply_error(req, e))?;
        Ok((req.check_typed(merged)?, managers))
    };
    // A create that loses a race with another create retries as an update, once.
    for _ in 0..2 {
        let updated = update_admitted(
            state,
            info,
            req.namespace(),
            req.name(),
            scope,
            dry_run,
            Some(req),
            |live| {
                let (mut merged, managers) = run(live)?;
                fieldmanager::set_entries(&mut merged, &managers);
                Ok(merged)
            },
        )
        .await;
        match updated {
            Ok(written) => return Ok(json(StatusCode::OK, &written.object)),
            Err(e) if e.reason == Reason::NotFound && scope == UpdateScope::Main => {}
            Err(e) => return Err(e),
        }
        let (mut obj, managers) = run(&Value::Object(Default::default()))?;
        strategy::check_identity(info, req.namespace(), &mut obj)?;
        match obj.name() {
            Some(n) if n != req.name() => {
                return Err(StatusError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({})",
                    req.name()
                )));
            }
            Some(_) => {}
            None => obj.set_meta("name", Value::String(req.name().to_string())),
        }
        match create_object(state, req, obj, dry_run, Some(managers)).await {
            Err(e) if e.reason == Reason::AlreadyExists => continue,
            other => return other,
        }
    }
    Err(StatusError::new(
        Reason::Conflict,
        format!(
            "{} \"{}\" is being created and deleted too often to apply",
            info.qualified(),
            req.name()
        ),
    ))
}
