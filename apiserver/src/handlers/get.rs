//! `GET` on an object (or its `status` subresource).

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::json;

use super::ApiRequest;
use crate::response::{ApiResult, Representation, json, raw_json, representation};
use crate::state::ApiState;
use crate::table;

/// Reads one object from the watch cache.
pub async fn get(state: &Arc<ApiState>, req: &ApiRequest) -> ApiResult {
    if req.params.get("resourceVersion") != Some("0") {
        state.sync_cache().await?;
    }
    let key = req.info.key(req.namespace(), req.name());
    let obj = state.cache().get(&key).ok_or_else(|| req.not_found())?;
    match representation(&req.headers) {
        Representation::Table => {
            let meta = json!({"resourceVersion": obj.mod_revision.to_string()});
            Ok(json(
                StatusCode::OK,
                &table::table(&req.info, &[&obj.object], meta, &req.params, true),
            ))
        }
        Representation::Metadata => Ok(json(StatusCode::OK, &table::partial_metadata(&obj.object))),
        Representation::Object => Ok(raw_json(
            StatusCode::OK,
            crate::convert::served_bytes(&req.info, &obj),
        )),
    }
}
