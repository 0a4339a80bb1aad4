//! `PUT` on an object (or its `status`/`finalize` subresource): replace it.

use std::sync::Arc;

use apimachinery::status::StatusError;
use axum::http::StatusCode;
use serde_json::Value;

use super::ApiRequest;
use super::write::update_admitted;
use crate::response::{ApiResult, json};
use crate::state::ApiState;

/// Replaces the object with the body.
pub async fn update(state: &Arc<ApiState>, req: &ApiRequest) -> ApiResult {
    let dry_run = req.params.dry_run()?;
    let body = req.json_body()?;
    req.check_duplicates()?;
    client_update(state, req, dry_run, |_| req.check_typed(body.clone())).await
}

/// A client's update of the object `req` names (a `PUT` or a `PATCH`): [`update_admitted`] in
/// the request's scope, with its admission webhooks, answered with the object written.
pub(super) async fn client_update(
    state: &Arc<ApiState>,
    req: &ApiRequest,
    dry_run: bool,
    change: impl Fn(&Value) -> Result<Value, StatusError>,
) -> ApiResult {
    let written = update_admitted(
        state,
        &req.info,
        req.namespace(),
        req.name(),
        req.update_scope(),
        dry_run,
        Some(req),
        change,
    )
    .await?;
    Ok(json(StatusCode::OK, &written.object))
}
