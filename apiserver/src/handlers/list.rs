//! `GET` on a collection: list objects from the watch cache, with label and field selectors
//! and `limit`/`continue` pagination.
//!
//! A continue token names the revision of the first page and the last key served. Later pages
//! are served at that revision, as Kubernetes serves them: the watch cache undoes the changes
//! made since from its event history (an object created between pages is not listed, one
//! changed shows its state at the first page), and a token older than that history is 410
//! `Expired`. `remainingItemCount` counts the objects after a page of a list without selectors.

use std::sync::Arc;

use apimachinery::object::ObjectExt;
use apimachinery::registry::ResourceInfo;
use apimachinery::selector::{FieldSelector, LabelSelector};
use apimachinery::status::StatusError;
use axum::http::StatusCode;
use base64::Engine;
use bytes::{BufMut, BytesMut};
use serde_json::{Value, json};

use super::ApiRequest;
use crate::response::{ApiResult, Representation, json, raw_json, representation};
use crate::state::ApiState;
use crate::table;
use crate::watch_cache::PageQuery;

/// Label and field selectors of a list or watch.
pub struct Filter {
    labels: Option<LabelSelector>,
    fields: Option<FieldSelector>,
}

/// Field selectors Kubernetes supports beyond `metadata.name` and `metadata.namespace`.
fn extra_fields(info: &ResourceInfo) -> &'static [&'static str] {
    match (info.group.as_str(), info.plural.as_str()) {
        ("", "pods") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ("", "events") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("", "secrets") => &["type"],
        ("", "nodes") => &["spec.unschedulable"],
        ("", "namespaces") => &["status.phase"],
        ("apps", "replicasets") => &["status.replicas"],
        ("batch", "jobs") => &["status.successful"],
        _ => &[],
    }
}

fn field_value(obj: &Value, field: &str) -> Option<String> {
    let v = if field == "source" {
        obj.path("source.component")
    } else {
        obj.path(field)
    }?;
    Some(match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

impl Filter {
    /// Parses `labelSelector` and `fieldSelector`; 400 for bad syntax or unsupported fields.
    pub fn from_params(
        info: &ResourceInfo,
        params: &crate::request::Params,
    ) -> Result<Self, StatusError> {
        let labels = match params.get("labelSelector") {
            Some(s) if !s.trim().is_empty() => Some(LabelSelector::parse(s).map_err(|e| {
                StatusError::bad_request(format!("unable to parse labelSelector {s:?}: {e}"))
            })?),
            _ => None,
        };
        let fields = match params.get("fieldSelector") {
            Some(s) if !s.trim().is_empty() => {
                let sel = FieldSelector::parse(s).map_err(|e| {
                    StatusError::bad_request(format!("unable to parse fieldSelector {s:?}: {e}"))
                })?;
                for field in sel.requirements().iter().map(|r| r.field.as_str()) {
                    let known = matches!(field, "metadata.name" | "metadata.namespace")
                        || extra_fields(info).contains(&field);
                    if !known {
                        return Err(StatusError::bad_request(format!(
                            "field label not supported: {field}"
                        )));
                    }
                }
                Some(sel)
            }
            _ => None,
        };
        Ok(Filter { labels, fields })
    }

    /// Whether the list has neither selector.
    pub fn is_empty(&self) -> bool {
        self.labels.is_none() && self.fields.is_none()
    }

    /// Whether an object passes both selectors.
    pub fn matches(&self, obj: &Value) -> bool {
        if let Some(l) = &self.labels
            && !l.matches(&obj.labels())
        {
            return false;
        }
        if let Some(f) = &self.fields
            && !f.matches(&|field: &str| field_value(obj, field))
        {
            return false;
        }
        true
    }
}

/// The objects of cache entries.
pub fn objects(entries: &[Arc<crate::watch_cache::CachedObject>]) -> Vec<&Value> {
    entries.iter().map(|o| &o.object).collect()
}

/// Kubernetes' words for a continue token older than the history kept (410 Expired).
const TOO_OLD_CONTINUE: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.";

/// Encodes a continue token.
fn continue_token(revision: i64, last_key: &str) -> String {
    let raw = json!({"rv": revision, "start": last_key}).to_string();
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// Decodes a continue token into (revision, last key).
fn parse_continue(token: &str) -> Result<(i64, String), StatusError> {
    let bad = || StatusError::bad_request(format!("continue key is not valid: {token:?}"));
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_i64).ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    Ok((rv, start.to_string()))
}

/// Lists the collection.
pub async fn list(state: &Arc<ApiState>, req: &ApiRequest) -> ApiResult {
    let info = &req.info;
    let filter = Filter::from_params(info, &req.params)?;
    let limit = req.params.int("limit")?.unwrap_or(0).max(0) as usize;
    let prefix = match req.namespace() {
        Some(ns) => info.namespace_prefix(ns),
        None => info.key_prefix(),
    };
    let (list_rv, start_after) = match req.params.get("continue") {
        Some(token) if !token.is_empty() => {
            let (rv, key) = parse_continue(token)?;
            if !key.starts_with(&prefix) {
                return Err(StatusError::bad_request(
                    "continue key does not belong to this collection",
                ));
            }
            (Some(rv), Some(key))
        }
        _ => (None, None),
    };
    // resourceVersion "0" means "any state is fine"; everything else reads our own writes.
    if req.params.get("resourceVersion") != Some("0") {
        state.sync_cache().await?;
    }
    let query = PageQuery {
        prefix: &prefix,
        start_after: start_after.as_deref(),
        limit,
        at: list_rv,
        // Kubernetes counts the rest only for lists without selectors.
        count_rest: filter.is_empty(),
    };
    let page = state
        .cache()
        .list_at(&query, |o| filter.matches(&o.object))
        .map_err(|_| StatusError::expired(TOO_OLD_CONTINUE))?;
    let snapshot = page.snapshot;
    let revision = snapshot.revision;
    let cont = if page.more {
        snapshot
            .objects
            .last()
            .map(|o| continue_token(revision, &o.key))
    } else {
        None
    };
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if let Some(c) = &cont {
        metadata["continue"] = json!(c);
    }
    if let Some(n) = page.remaining {
        metadata["remainingItemCount"] = json!(n);
    }
    match representation(&req.headers) {
        Representation::Table => Ok(json(
            StatusCode::OK,
            &table::table(
                info,
                &objects(&snapshot.objects),
                metadata,
                &req.params,
                true,
            ),
        )),
        Representation::Metadata => {
            let items: Vec<Value> = snapshot
                .objects
                .iter()
                .map(|o| table::partial_metadata(&o.object))
                .collect();
            Ok(json(
                StatusCode::OK,
                &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                        "metadata": metadata, "items": items}),
            ))
        }
        Representation::Object => {
            // Splice the cached bytes: no per-object serialization on the hot path.
            let head = json!({"kind": info.list_kind, "apiVersion": info.api_version(),
                              "metadata": metadata});
            let head = serde_json::to_vec(&head).unwrap_or_default();
            let items: Vec<bytes::Bytes> = snapshot
                .objects
                .iter()
                .map(|o| crate::convert::served_bytes(info, o))
                .collect();
            let size: usize = items.iter().map(|o| o.len() + 1).sum();
            let mut buf = BytesMut::with_capacity(head.len() + size + 16);
            buf.put_slice(&head[..head.len() - 1]);
            buf.put_slice(b",\"items\":[");
            for (i, o) in items.iter().enumerate() {
                if i > 0 {
                    buf.put_u8(b',');
                }
                buf.put_slice(o);
            }
            buf.put_slice(b"]}");
            Ok(raw_json(StatusCode::OK, buf.freeze()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let t = continue_token(42, "/registry/core/pods/ns/p");
        assert_eq!(
            parse_continue(&t).unwrap(),
            (42, "/registry/core/pods/ns/p".into())
        );
        assert!(parse_continue("%%%").is_err());
        assert!(parse_continue("e30=").is_err());
    }
}
