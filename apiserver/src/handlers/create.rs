//! `POST` on a collection: create an object (also the create of a server-side apply).

use std::sync::Arc;

use apimachinery::object::ObjectExt;
use apimachinery::patch::apply::ManagedEntry;
use axum::http::StatusCode;

use super::ApiRequest;
use super::write::{check_namespace, stamp};
use crate::admission;
use crate::crd;
use crate::fieldmanager;
use crate::response::{ApiResult, json, storage_error};
use crate::state::{ApiState, encode};
use crate::strategy;

/// Creates the object in the body.
pub async fn create(state: &Arc<ApiState>, req: &ApiRequest) -> ApiResult {
    let info = &req.info;
    let dry_run = req.params.dry_run()?;
    let mut obj = req.json_body()?;
    req.check_duplicates()?;
    strategy::check_identity(info, req.namespace(), &mut obj)?;
    let obj = req.check_typed(obj)?;
    create_object(state, req, obj, dry_run, None).await
}

/// Creates `obj` (identity and type checked): a create, or a server-side apply of a missing
/// object, which passes the managedFields entries the apply made as `applied`; a create gets an
/// `Update` entry for its manager.
pub(super) async fn create_object(
    state: &Arc<ApiState>,
    req: &ApiRequest,
    obj: serde_json::Value,
    dry_run: bool,
    applied: Option<Vec<ManagedEntry>>,
) -> ApiResult {
    let info = &req.info;
    let mut obj = crate::convert::stored(info, obj);
    if info.namespaced && req.namespace().is_none() {
        return Err(apimachinery::status::StatusError::bad_request(
            "a namespaced resource must be created in a namespace",
        ));
    }
    strategy::prepare_create(info, &mut obj)?;
    crate::defaults::wire_status(info, &mut obj);
    match applied {
        Some(entries) => fieldmanager::set_entries(&mut obj, &entries),
        None => fieldmanager::record_update(req, info, None, None, &mut obj, "CreateOptions")?,
    }
    admission::admit(state, Some(req), info, None, &mut obj).await?;
    admission::quota::charge(state, info, req.namespace(), &obj, dry_run).await?;
    if let Some(ns) = req.namespace() {
        check_namespace(state, ns).await?;
    }
    let name = obj.name().unwrap_or("").to_string();
    let allocated = state
        .allocate_service(info, &mut obj, None, dry_run)
        .await?;
    if dry_run {
        let (_, existing) = state
            .store()
            .get(&info.key(req.namespace(), &name))
            .await
            .map_err(|e| storage_error(e, &info.group, &info.plural, &name))?;
        if existing.is_some() {
            return Err(apimachinery::status::StatusError::already_exists(
                &info.group,
                &info.plural,
                &name,
            ));
        }
        return Ok(json(
            StatusCode::CREATED,
            &crate::convert::served(info, &obj),
        ));
    }
    let kv = match state
        .store()
        .create(&info.key(req.namespace(), &name), encode(&obj))
        .await
    {
        Ok(kv) => kv,
        Err(e) => {
            state.release(allocated).await;
            return Err(storage_error(e, &info.group, &info.plural, &name));
        }
    };
    crd::after_write(state, info, kv.mod_revision).await;
    if info.plural == "resourcequotas" {
        admission::quota::after_write(state, info, req.namespace(), kv.mod_revision).await;
    }
    let obj = super::write::into_served(info, obj);
    Ok(json(StatusCode::CREATED, &stamp(obj, kv.mod_revision)))
}
