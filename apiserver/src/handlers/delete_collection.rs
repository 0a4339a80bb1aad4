//! `DELETE` on a collection: delete every object that matches the selectors.

use std::sync::Arc;

use apimachinery::object::ObjectExt;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::ApiRequest;
use super::delete::{DeleteOptions, delete_object};
use super::list::Filter;
use crate::response::{ApiResult, json};
use crate::state::ApiState;

/// Deletes the matching objects and answers with the list of what was deleted.
pub async fn delete_collection(state: &Arc<ApiState>, req: &ApiRequest) -> ApiResult {
    let opts = DeleteOptions::from_request(req)?;
    let filter = Filter::from_params(&req.info, &req.params)?;
    state.sync_cache().await?;
    let prefix = match req.namespace() {
        Some(ns) => req.info.namespace_prefix(ns),
        None => req.info.key_prefix(),
    };
    let (snapshot, _) = state
        .cache()
        .list(&prefix, None, 0, |o| filter.matches(&o.object));
    let mut items: Vec<Value> = Vec::new();
    for obj in snapshot.objects {
        let name = obj.object.name().unwrap_or("").to_string();
        let ns = obj.object.namespace().map(str::to_string);
        match delete_object(state, &req.info, ns.as_deref(), &name, &opts).await {
            Ok(v) => items.push(v),
            // Gone in the meantime: someone else deleted it, which is what was asked.
            Err(e) if e.code() == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(json(
        StatusCode::OK,
        &json!({
            "apiVersion": req.info.api_version(),
            "kind": req.info.list_kind,
            "metadata": {"resourceVersion": snapshot.revision.to_string()},
            "items": items,
        }),
    ))
}
