//! The `scale` subresource: an `autoscaling/v1` Scale view of a workload's replicas.

use std::sync::Arc;

use apimachinery::object::ObjectExt;
use apimachinery::patch::PatchType;
use apimachinery::status::{FieldError, StatusError};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::ApiRequest;
use super::patch::{apply_patch, patch_type};
use super::write::update_with;
use crate::response::{ApiResult, json};
use crate::state::ApiState;
use crate::strategy::UpdateScope;

/// The Scale object of a workload.
fn scale_of(obj: &Value) -> Value {
    let selector = crate::table::selector_string(obj, "spec.selector");
    let mut meta = serde_json::Map::new();
    for f in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = obj.metadata().and_then(|m| m.get(f)) {
            meta.insert(f.into(), v.clone());
        }
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": meta,
        "spec": {"replicas": obj.path("spec.replicas").and_then(Value::as_i64).unwrap_or(1)},
        "status": {
            "replicas": obj.path("status.replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    })
}

/// `GET .../scale`.
pub async fn get(state: &Arc<ApiState>, req: &ApiRequest) -> ApiResult {
    state.sync_cache().await?;
    let obj = state
        .cache()
        .get(&req.info.key(req.namespace(), req.name()))
        .ok_or_else(|| req.not_found())?;
    Ok(json(StatusCode::OK, &scale_of(&obj.object)))
}

fn replicas_of(scale: &Value) -> Result<i64, StatusError> {
    let invalid = |v: &str, why: &str| {
        StatusError::invalid(
            "autoscaling",
            "Scale",
            scale.name().unwrap_or(""),
            vec![FieldError::invalid("spec.replicas", v, why)],
        )
    };
    match scale.path("spec.replicas") {
        Some(Value::Number(n)) => match n.as_i64() {
            Some(r) if r >= 0 && r <= i64::from(i32::MAX) => Ok(r),
            Some(r) => Err(invalid(
                &r.to_string(),
                "must be greater than or equal to 0",
            )),
            None => Err(invalid(&n.to_string(), "must be an integer")),
        },
        Some(other) => Err(invalid(&other.to_string(), "must be an integer")),
        None => Err(StatusError::invalid(
            "autoscaling",
            "Scale",
            scale.name().unwrap_or(""),
            vec![FieldError::required("spec.replicas")],
        )),
    }
}

async fn write_scale(
    state: &Arc<ApiState>,
    req: &ApiRequest,
    new_scale: impl Fn(&Value) -> Result<Value, StatusError>,
) -> ApiResult {
    let dry_run = req.params.dry_run()?;
    let written = update_with(
        state,
        &req.info,
        req.namespace(),
        req.name(),
        UpdateScope::Main,
        dry_run,
        |current| {
            let scale = new_scale(&scale_of(current))?;
            let replicas = replicas_of(&scale)?;
            let mut obj = current.clone();
            if let Some(rv) = scale.resource_version() {
                obj.set_meta("resourceVersion", json!(rv));
            }
            obj["spec"]["replicas"] = json!(replicas);
            Ok(obj)
        },
    )
    .await?;
    Ok(json(StatusCode::OK, &scale_of(&written.object)))
}

/// `PUT .../scale`.
pub async fn update(state: &Arc<ApiState>, req: &ApiRequest) -> ApiResult {
    let body = req.json_body()?;
    write_scale(state, req, |_| Ok(body.clone())).await
}

/// `PATCH .../scale`.
pub async fn patch(state: &Arc<ApiState>, req: &ApiRequest) -> ApiResult {
    let kind = match patch_type(req)? {
        PatchType::StrategicMerge => PatchType::Merge,
        k => k,
    };
    let doc = req.json_body()?;
    write_scale(state, req, |scale| apply_patch(req, kind, scale, &doc)).await
}
