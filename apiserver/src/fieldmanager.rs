//! Field managers: who a client write is filed under in `metadata.managedFields`, and the
//! `Update` entries of creates, updates and non-apply patches (server-side apply's own entries
//! are made by [`crate::handlers`]' apply through [`apimachinery::patch::apply`]).
//!
//! The manager is the request's `fieldManager` parameter, else the program name of its
//! user agent (`kubectl` of `kubectl/v1.32.0 (linux/amd64) …`), as in Kubernetes. A client that
//! sends `managedFields` different from the stored ones sets them (kubectl's migration from
//! client-side apply does that with a JSON patch); one that leaves them out keeps them.

use apimachinery::object::ObjectExt;
use apimachinery::patch::apply::{self as ssa, ManagedEntry, Schema, Tracked, Writer};
use apimachinery::registry::ResourceInfo;
use apimachinery::status::{FieldError, StatusError};
use axum::http::header;
use serde_json::Value;

use crate::handlers::ApiRequest;
use crate::strategy::{self, UpdateScope};

/// The longest manager name Kubernetes accepts.
const MAX_MANAGER: usize = 128;

/// The `fieldManager` of a request (`None` when it names none), checked as Kubernetes checks
/// it; `options` is the options kind named in the error (`PatchOptions`).
pub fn requested_manager(req: &ApiRequest, options: &str) -> Result<Option<String>, StatusError> {
    let Some(manager) = req.params.get("fieldManager") else {
        return Ok(None);
    };
    let mut causes = Vec::new();
    if manager.len() > MAX_MANAGER {
        causes.push(FieldError::too_long("fieldManager", MAX_MANAGER));
    }
    if manager.chars().any(|c| c.is_control()) {
        causes.push(FieldError::invalid(
            "fieldManager",
            manager,
            "must only contain printable characters",
        ));
    }
    if !causes.is_empty() {
        return Err(StatusError::invalid("meta.k8s.io", options, "", causes));
    }
    Ok(Some(manager.to_string()))
}

/// The manager a non-apply write is filed under: `fieldManager`, else the user agent's program.
pub fn manager(req: &ApiRequest, options: &str) -> Result<String, StatusError> {
    if let Some(m) = requested_manager(req, options)? {
        return Ok(m);
    }
    let agent = req
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let program = agent.split('/').next().unwrap_or("");
    Ok(program.chars().take(MAX_MANAGER).collect())
}

/// The structured-merge schema of a resource's objects.
pub fn schema(info: &ResourceInfo) -> Schema<'_> {
    if info.custom {
        Schema::custom(info.schema.as_deref())
    } else {
        Schema::builtin(&info.gvk())
    }
}

/// What a write through `scope` may own.
pub fn tracked(info: &ResourceInfo, scope: UpdateScope) -> Tracked {
    match scope {
        UpdateScope::Status => Tracked::StatusOnly,
        _ if info.has_subresource("status") => Tracked::AllButStatus,
        _ => Tracked::All,
    }
}

/// The manager entry a request writes under.
pub fn writer<'a>(
    req: &'a ApiRequest,
    manager: &'a str,
    api_version: &'a str,
    time: &'a str,
) -> Writer<'a> {
    Writer {
        manager,
        api_version,
        subresource: req.path.subresource.as_deref().unwrap_or(""),
        time,
    }
}

/// The entries of an object's `metadata.managedFields`; a 400 naming the field when they
/// cannot be read.
pub fn entries(obj: &Value) -> Result<Vec<ManagedEntry>, StatusError> {
    ssa::read_managed_fields(obj.path("metadata.managedFields"))
        .map_err(|e| StatusError::bad_request(e.to_string()))
}

/// Writes entries into an object's metadata (none: the field goes).
pub fn set_entries(obj: &mut Value, entries: &[ManagedEntry]) {
    if entries.is_empty() {
        obj.metadata_mut().remove("managedFields");
    } else {
        obj.set_meta("managedFields", ssa::write_managed_fields(entries));
    }
}

/// Whether a client's managedFields ask for nothing (absent, `null` or empty).
fn unset(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::Array(items)) => items.is_empty(),
        Some(_) => false,
    }
}

/// The managedFields a client's update `new` of `old` sends when they are not the stored ones
/// (absent, `null` or empty ask for the stored ones): what [`record_update`] takes as
/// `requested`. Copied only then, which is seldom.
pub fn requested(old: &Value, new: &Value) -> Option<Value> {
    let sent = new.path("metadata.managedFields");
    (!unset(sent) && sent != old.path("metadata.managedFields")).then(|| sent.cloned())?
}

/// Records a client's create (`old` is `None`) or update of `new` in its managedFields, under
/// `requested`: the managedFields the client sent, which replace the stored ones when they
/// differ from them.
pub fn record_update(
    req: &ApiRequest,
    info: &ResourceInfo,
    old: Option<&Value>,
    requested: Option<&Value>,
    new: &mut Value,
    options: &str,
) -> Result<(), StatusError> {
    let manager = manager(req, options)?;
    let stored = old.and_then(|o| o.path("metadata.managedFields"));
    let from_client = old.is_some() && !unset(requested) && requested != stored;
    let mut managers = match old {
        _ if from_client => ssa::read_managed_fields(requested)
            .map_err(|e| StatusError::bad_request(e.to_string()))?,
        // A stored object with unreadable managedFields starts over, as Kubernetes does.
        Some(o) => entries(o).unwrap_or_default(),
        None => Vec::new(),
    };
    let before = managers.clone();
    // A create compares with an empty object whose metadata and spec exist, as Kubernetes'
    // comparison with a zero Go struct does: a create owns `.` of the maps it adds below them
    // (`f:data: {.: {}, …}`), not of `metadata` or `spec`.
    let empty = serde_json::json!({"metadata": {}, "spec": {}});
    let live = old.unwrap_or(&empty);
    let api_version = info.api_version();
    let time = strategy::now();
    ssa::update(
        live,
        new,
        schema(info),
        tracked(info, req.update_scope()),
        &mut managers,
        &writer(req, &manager, &api_version, &time),
    );
    if !from_client
        && managers == before
        && let Some(stored) = stored
    {
        if new.path("metadata.managedFields") != Some(stored) {
            new.set_meta("managedFields", stored.clone());
        }
    } else {
        set_entries(new, &managers);
    }
    Ok(())
}
