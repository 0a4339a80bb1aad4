//! `PUT` on an object (or its `status`/`finalize` subresource): replace it.

use std::sync::Arc;

use axum::http::StatusCode;

use super::ApiRequest;
use super::write::update_admitted;
use crate::response::{ApiResult, json};
use crate::state::ApiState;

/// Replaces the object with the body.
pub async fn update(state: &Arc<ApiState>, req: &ApiRequest) -> ApiResult {
    let dry_run = req.params.dry_run()?;
    let body = req.json_body()?;
    req.check_duplicates()?;
    let scope = req.update_scope();
    let written = update_admitted(
        state,
        &req.info,
        req.namespace(),
        req.name(),
        scope,
        dry_run,
        Some(req),
        |_| req.check_typed(body.clone()),
    )
    .await?;
    Ok(json(StatusCode::OK, &written.object))
}
