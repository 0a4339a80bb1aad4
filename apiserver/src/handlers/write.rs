//! The read-modify-write loop every mutating verb shares, and the checks around it.
//!
//! A write reads the stored object (with its revision), computes the new object, runs the
//! strategy and validation, and writes with compare-and-swap on the revision it read. When the
//! compare-and-swap fails, the loop reads again and re-runs the change, as Kubernetes'
//! `GuaranteedUpdate` does: a caller who gave a resourceVersion then gets its 409 from the
//! precondition check, one who did not gets its change applied to the fresh object.

use std::sync::Arc;

use apimachinery::object::ObjectExt;
use apimachinery::registry::ResourceInfo;
use apimachinery::status::{Reason, StatusError};
use serde_json::Value;

use super::ApiRequest;
use crate::admission;
use crate::crd;
use crate::fieldmanager;
use crate::response::storage_error;
use crate::state::{ApiState, StoredObject, encode};
use crate::storage::{Revision, StorageError};
use crate::strategy::{self, UpdateScope};
use crate::watch_cache::CachedObject;

/// How many times a write without a precondition is retried on conflict.
const MAX_RETRIES: usize = 16;

/// The outcome of a write.
pub struct Written {
    /// The object as stored (or as it would be, for dry runs), resourceVersion stamped.
    pub object: Value,
}

/// Checks that the namespace of a namespaced create exists and is not terminating.
///
/// An active namespace in the cache is enough, as in Kubernetes' NamespaceLifecycle admission
/// (which reads an informer): the cache is only synced with storage (a storage read plus a wait
/// for the watch) when it does not show the namespace active, so that a namespace created just
/// before is found.
pub async fn check_namespace(state: &ApiState, namespace: &str) -> Result<(), StatusError> {
    let key = format!("/registry/core/namespaces/{namespace}");
    let active = |ns: &crate::watch_cache::CachedObject| {
        ns.object.path("metadata.deletionTimestamp").is_none()
    };
    if state.cache().get(&key).is_some_and(|ns| active(&ns)) {
        return Ok(());
    }
    state.sync_cache().await?;
    match state.cache().get(&key) {
        None => Err(StatusError::not_found("", "namespaces", namespace)),
        Some(ns) if ns.object.path("metadata.deletionTimestamp").is_some() => {
            Err(StatusError::new(
                Reason::Forbidden,
                format!(
                    "unable to create new content in namespace {namespace} because it is being terminated"
                ),
            ))
        }
        Some(_) => Ok(()),
    }
}

/// Stamps the revision of a write into an object.
pub fn stamp(mut object: Value, revision: Revision) -> Value {
    object.set_meta("resourceVersion", Value::String(revision.to_string()));
    object
}

/// Updates an object by applying `change` to its stored state until the write lands.
///
/// `change` gets the stored object (resourceVersion stamped) and returns the desired object;
/// when that carries a resourceVersion different from the stored one, the write fails with 409.
pub async fn update_with(
    state: &Arc<ApiState>,
    info: &ResourceInfo,
    namespace: Option<&str>,
    name: &str,
    scope: UpdateScope,
    dry_run: bool,
    change: impl Fn(&Value) -> Result<Value, StatusError>,
) -> Result<Written, StatusError> {
    update_admitted(state, info, namespace, name, scope, dry_run, None, change).await
}

/// The object a write starts from: the watch cache's copy on the first attempt (as
/// Kubernetes' `GuaranteedUpdate` starts from the cached object), storage's afterwards.
enum Current {
    Cached(Arc<CachedObject>),
    Stored(StoredObject),
}

impl Current {
    fn object(&self) -> &Value {
        match self {
            Current::Cached(c) => &c.object,
            Current::Stored(s) => &s.object,
        }
    }

    fn mod_revision(&self) -> Revision {
        match self {
            Current::Cached(c) => c.mod_revision,
            Current::Stored(s) => s.mod_revision,
        }
    }
}

/// How one attempt of a write ended.
enum Attempt {
    /// Written (or, for dry runs, what would be written).
    Written(Written),
    /// Nothing to change: the object as it is.
    Unchanged(Written),
    /// Someone else wrote first: read again.
    Conflict,
}

/// [`update_with`], with admission webhooks for the client request `admit` (updates and patches
/// by clients; the server's own writes such as finalization and scale pass `None`).
///
/// The first attempt starts from the watch cache's copy when it has one, which saves a storage
/// read and a decode per write; the compare-and-swap on its revision makes a stale copy
/// harmless. An attempt from the cache that fails, finds nothing to change or meets another
/// write is repeated from storage, so every answer (an error, a 409 on a resourceVersion
/// precondition, "unchanged") is the one the stored object gives.
#[allow(clippy::too_many_arguments)]
pub async fn update_admitted(
    state: &Arc<ApiState>,
    info: &ResourceInfo,
    namespace: Option<&str>,
    name: &str,
    scope: UpdateScope,
    dry_run: bool,
    admit: Option<&ApiRequest>,
    change: impl Fn(&Value) -> Result<Value, StatusError>,
) -> Result<Written, StatusError> {
    let key = info.key(namespace, name);
    let mut cached = if dry_run {
        None
    } else {
        state.cache().get(&key)
    };
    for _ in 0..MAX_RETRIES {
        let current = match cached.take() {
            Some(c) => Current::Cached(c),
            None => Current::Stored(
                state
                    .read_stored(info, namespace, name)
                    .await?
                    .ok_or_else(|| StatusError::not_found(&info.group, &info.plural, name))?,
            ),
        };
        let from_cache = matches!(current, Current::Cached(_));
        let args = (state, info, namespace, name, scope, dry_run, admit);
        match attempt(args, &key, &current, &change).await {
            Ok(Attempt::Written(written)) => return Ok(written),
            Ok(Attempt::Unchanged(written)) if !from_cache => return Ok(written),
            Ok(Attempt::Unchanged(_) | Attempt::Conflict) => continue,
            Err(_) if from_cache => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StatusError::new(
        Reason::Conflict,
        format!(
            "{} \"{name}\" is being modified too often; gave up after {MAX_RETRIES} attempts",
            info.qualified()
        ),
    ))
}

/// The arguments of [`update_admitted`] an attempt needs.
type Args<'a> = (
    &'a Arc<ApiState>,
    &'a ResourceInfo,
    Option<&'a str>,
    &'a str,
    UpdateScope,
    bool,
    Option<&'a ApiRequest>,
);

/// One read-modify-write of [`update_admitted`] from `current`.
async fn attempt(
    (state, info, namespace, name, scope, dry_run, admit): Args<'_>,
    key: &str,
    current: &Current,
    change: &impl Fn(&Value) -> Result<Value, StatusError>,
) -> Result<Attempt, StatusError> {
    let old = current.object();
    let mod_revision = current.mod_revision();
    let served = crate::convert::served(info, old);
    // The identity is the served version's; the stored form may be another version's.
    let mut new = change(&served)?;
    strategy::check_identity(info, namespace, &mut new)?;
    let mut new = crate::convert::stored(info, new);
    // The managedFields the client sent (only client writes record them), when they are not
    // the stored ones; server-side apply's are the ones it computed.
    let requested = match admit {
        Some(req) if super::apply::is_apply(req) => new.path("metadata.managedFields").cloned(),
        Some(_) => fieldmanager::requested(old, &new),
        None => None,
    };
    match new.name() {
        Some(n) if n == name => {}
        Some(n) if !n.is_empty() => {
            return Err(StatusError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        _ => new.set_meta("name", Value::String(name.to_string())),
    }
    let precondition = new
        .resource_version()
        .map(str::to_string)
        .filter(|s| !s.is_empty());
    if let Some(rv) = &precondition
        && *rv != mod_revision.to_string()
    {
        return Err(conflict(info, name));
    }
    strategy::prepare_update(info, old, &mut new, scope);
    crate::defaults::wire_status(info, &mut new);
    match admit {
        // Server-side apply computed the managedFields itself.
        Some(req) if super::apply::is_apply(req) => {
            if let Some(m) = requested {
                new.set_meta("managedFields", m);
            }
        }
        Some(req) => {
            let options = match req.method {
                axum::http::Method::PATCH => "PatchOptions",
                _ => "UpdateOptions",
            };
            fieldmanager::record_update(
                req,
                info,
                Some(old),
                requested.as_ref(),
                &mut new,
                options,
            )?;
        }
        None => {}
    }
    admission::admit(state, admit, info, Some(old), &mut new).await?;
    let finalized = strategy::ready_to_remove(&new);
    let stale = !finalized
        && !strategy::changed(old, &new)
        && state
            .store()
            .stale(key)
            .await
            .map_err(|e| storage_error(e, &info.group, &info.plural, name))?;
    let allocated = if finalized {
        Default::default()
    } else {
        state
            .allocate_service(info, &mut new, Some(old), dry_run)
            .await?
    };
    if !strategy::changed(old, &new) && !finalized && !stale {
        state.release(allocated).await;
        return Ok(Attempt::Unchanged(Written {
            object: stamp(served.into_owned(), mod_revision),
        }));
    }
    if dry_run {
        return Ok(Attempt::Written(Written {
            object: stamp(
                crate::convert::served(info, &new).into_owned(),
                mod_revision,
            ),
        }));
    }
    let result = if finalized {
        state
            .store()
            .delete(key, Some(mod_revision))
            .await
            .map(|(rev, _)| rev)
    } else {
        state
            .store()
            .update(key, encode(&new), mod_revision)
            .await
            .map(|kv| kv.mod_revision)
    };
    match result {
        Ok(revision) => {
            state
                .release_service(info, old, (!finalized).then_some(&new))
                .await;
            crd::after_write(state, info, revision).await;
            if admit.is_some() && info.plural == "resourcequotas" {
                // Boxed: the recount writes quotas through this function (without `admit`).
                Box::pin(admission::quota::after_write(
                    state, info, namespace, revision,
                ))
                .await;
            }
            Ok(Attempt::Written(Written {
                object: stamp(into_served(info, new), revision),
            }))
        }
        // Re-read and re-run `change`: a resourceVersion precondition then fails above.
        Err(StorageError::Conflict { .. }) => {
            state.release(allocated).await;
            Ok(Attempt::Conflict)
        }
        Err(e) => {
            state.release(allocated).await;
            Err(storage_error(e, &info.group, &info.plural, name))
        }
    }
}

/// A stored object as `info`'s version serves it, without a copy when that is the stored version.
pub(super) fn into_served(info: &ResourceInfo, stored: Value) -> Value {
    let converted = match crate::convert::served(info, &stored) {
        std::borrow::Cow::Owned(v) => Some(v),
        std::borrow::Cow::Borrowed(_) => None,
    };
    converted.unwrap_or(stored)
}

/// The 409 for a stale resourceVersion.
pub fn conflict(info: &ResourceInfo, name: &str) -> StatusError {
    StatusError::conflict(
        &info.group,
        &info.plural,
        name,
        "the object has been modified; please apply your changes to the latest version and try again",
    )
}
