//! ResourceQuota and LimitRange admission, as Kubernetes' `ResourceQuota` and `LimitRanger`
//! plugins: pods get their namespace's default requests and limits and are checked against
//! its LimitRanges; every create is charged to the namespace's quotas, whose `status.used` is
//! raised by a compare-and-swap write before the object is stored (so two creates cannot both
//! take the last unit); deletes and quota changes recount `status.used` from the cache.

use std::sync::Arc;

use apimachinery::limit_range;
use apimachinery::object::ObjectExt;
use apimachinery::quota::{self, Usage};
use apimachinery::registry::ResourceInfo;
use apimachinery::status::{Reason, StatusError};
use serde_json::Value;

use crate::handlers::write::update_with;
use crate::state::ApiState;
use crate::strategy::UpdateScope;

fn forbidden(info: &ResourceInfo, name: &str, message: &str) -> StatusError {
    StatusError::new(
        Reason::Forbidden,
        format!("{} \"{name}\" is forbidden: {message}", info.qualified()),
    )
}

fn objects_in(state: &ApiState, prefix: &str) -> Vec<Value> {
    let (snapshot, _) = state.cache().list(prefix, None, 0, |_| true);
    snapshot.objects.iter().map(|o| o.object.clone()).collect()
}

fn quotas(state: &ApiState, namespace: &str) -> Vec<Value> {
    objects_in(
        state,
        &format!("/registry/core/resourcequotas/{namespace}/"),
    )
}

fn is_pod(info: &ResourceInfo) -> bool {
    !info.custom && info.group.is_empty() && info.plural == "pods"
}

/// LimitRanger: fills a new pod's default requests and limits, then checks its bounds.
pub fn limit_ranges(
    state: &ApiState,
    info: &ResourceInfo,
    namespace: Option<&str>,
    obj: &mut Value,
) -> Result<(), StatusError> {
    let Some(ns) = namespace.filter(|_| is_pod(info)) else {
        return Ok(());
    };
    let ranges = objects_in(state, &format!("/registry/core/limitranges/{ns}/"));
    if ranges.is_empty() {
        return Ok(());
    }
    let refs: Vec<&Value> = ranges.iter().collect();
    limit_range::default_pod(&refs, obj);
    let errs = limit_range::check_pod(&refs, obj);
    if errs.is_empty() {
        return Ok(());
    }
    Err(forbidden(
        info,
        obj.name().unwrap_or(""),
        &limit_range::aggregate(&errs),
    ))
}

/// ResourceQuota: charges a new object to every quota of its namespace that limits what it
/// uses, or refuses it (403, in Kubernetes' words).
pub async fn charge(
    state: &Arc<ApiState>,
    info: &ResourceInfo,
    namespace: Option<&str>,
    obj: &Value,
    dry_run: bool,
) -> Result<(), StatusError> {
    let Some(ns) = namespace else {
        return Ok(());
    };
    let list = quotas(state, ns);
    if list.is_empty() {
        return Ok(());
    }
    let delta = quota::usage(&info.group, &info.plural, obj);
    let name = obj.name().unwrap_or("").to_string();
    let registry = state.registry();
    let Some(quota_info) = registry.by_resource("", "v1", "resourcequotas") else {
        return Ok(());
    };
    for q in &list {
        if is_pod(info) {
            quota::check_stated(q, obj).map_err(|e| forbidden(info, &name, &e.to_string()))?;
        }
        if quota::charge(q, &quota::used(q), &delta)
            .map_err(|e| forbidden(info, &name, &e.to_string()))?
            .is_none()
        {
            continue;
        }
        update_with(
            state,
            &quota_info,
            Some(ns),
            q.name().unwrap_or(""),
            UpdateScope::Status,
            dry_run,
            |current| {
                let next_used = quota::charge(current, &quota::used(current), &delta)
                    .map_err(|e| forbidden(info, &name, &e.to_string()))?
                    .unwrap_or_default();
                let mut next = current.clone();
                next["status"] = quota::status(current, &next_used);
                Ok(next)
            },
        )
        .await?;
    }
    Ok(())
}

/// What the objects of the namespace use, as the quota counts it.
fn usage_of(state: &ApiState, namespace: &str, quota: &Value) -> Usage {
    let registry = state.registry();
    let hard = quota::hard(quota);
    let mut total = Vec::new();
    for info in registry.iter().filter(|r| r.namespaced && !r.custom) {
        let counted = hard.keys().any(|k| {
            k.starts_with(&format!("count/{}", info.plural))
                || (info.group.is_empty() && !k.starts_with("count/"))
        });
        if !counted || info.storage_group.is_some() {
            continue;
        }
        for obj in objects_in(state, &info.namespace_prefix(namespace)) {
            total.push(quota::usage(&info.group, &info.plural, &obj));
        }
    }
    quota::recount(quota, total.into_iter())
}

/// Recounts `status.used` of every quota of a namespace from the cache (after a delete, or
/// when a quota is created or changed).
pub async fn recount(state: &Arc<ApiState>, namespace: &str) {
    let registry = state.registry();
    let Some(quota_info) = registry.by_resource("", "v1", "resourcequotas") else {
        return;
    };
    for q in quotas(state, namespace) {
        let name = q.name().unwrap_or("").to_string();
        let result = update_with(
            state,
            &quota_info,
            Some(namespace),
            &name,
            UpdateScope::Status,
            false,
            |current| {
                let used = usage_of(state, namespace, current);
                let mut next = current.clone();
                next["status"] = quota::status(current, &used);
                Ok(next)
            },
        )
        .await;
        if let Err(e) = result {
            tracing::warn!(namespace, quota = %name, error = %e, "recounting a quota failed");
        }
    }
}

/// After a write landed at `revision`: recounts the namespace's quotas when the write changes
/// what they count (an object removed, a quota created or changed).
pub async fn after_write(
    state: &Arc<ApiState>,
    info: &ResourceInfo,
    namespace: Option<&str>,
    revision: crate::storage::Revision,
) {
    let Some(ns) = namespace else {
        return;
    };
    if info.custom || quotas(state, ns).is_empty() && info.plural != "resourcequotas" {
        return;
    }
    if state.cache().wait_for(revision).await.is_ok() {
        recount(state, ns).await;
    }
}
