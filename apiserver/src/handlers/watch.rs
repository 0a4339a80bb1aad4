//! `GET ...?watch=true`: stream changes as JSON lines (`{"type": ..., "object": ...}`).
//!
//! A watch is a task that owns a [`Cursor`] into the watch cache and writes events into the
//! response body. States: *initial* (send the current objects as `ADDED` when the client asked
//! for them: no resourceVersion, `0`, or `sendInitialEvents=true`), *streaming* (forward cache
//! events that pass the selectors, turning selector transitions into `ADDED`/`DELETED` as
//! Kubernetes does), *done* (client gone, timeout, or the cursor fell behind: an `ERROR` event
//! with a 410 Status tells the client to re-list).

use std::sync::Arc;
use std::time::Duration;

use apimachinery::registry::ResourceInfo;
use apimachinery::status::StatusError;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::ApiRequest;
use super::list::Filter;
use crate::response::{ApiResult, Representation, representation};
use crate::state::ApiState;
use crate::table;
use crate::watch_cache::{CacheError, CacheEvent, CachedObject, Cursor, EventType};

/// How long a watch stays open when the client sets no timeout (Kubernetes: 30 to 60 minutes).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
/// How long a quiet watch waits before sending a bookmark.
const BOOKMARK_EVERY: Duration = Duration::from_secs(5);

struct Encoder {
    info: Arc<ResourceInfo>,
    repr: Representation,
    params: crate::request::Params,
    sent_columns: bool,
}

impl Encoder {
    fn event(&mut self, kind: &str, obj: &CachedObject) -> Bytes {
        let mut buf = BytesMut::with_capacity(obj.bytes.len() + 32);
        buf.put_slice(b"{\"type\":\"");
        buf.put_slice(kind.as_bytes());
        buf.put_slice(b"\",\"object\":");
        match self.repr {
            Representation::Object => buf.put_slice(&crate::convert::served_bytes(&self.info, obj)),
            Representation::Metadata => buf.put_slice(
                &serde_json::to_vec(&table::partial_metadata(&obj.object)).unwrap_or_default(),
            ),
            Representation::Table => {
                let meta = json!({"resourceVersion": obj.mod_revision.to_string()});
                let t = table::table(
                    &self.info,
                    &[&obj.object],
                    meta,
                    &self.params,
                    !self.sent_columns,
                );
                self.sent_columns = true;
                buf.put_slice(&serde_json::to_vec(&t).unwrap_or_default());
            }
        }
        buf.put_slice(b"}\n");
        buf.freeze()
    }

    fn bookmark(&self, revision: i64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": revision.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let (kind, api_version) = match self.repr {
            Representation::Object => (self.info.kind.clone(), self.info.api_version()),
            Representation::Metadata => ("PartialObjectMetadata".into(), "meta.k8s.io/v1".into()),
            Representation::Table => ("Table".into(), "meta.k8s.io/v1".into()),
        };
        line(&json!({"type": "BOOKMARK",
                     "object": {"kind": kind, "apiVersion": api_version, "metadata": meta}}))
    }
}

fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

fn error_line(e: &StatusError) -> Bytes {
    line(&json!({"type": "ERROR", "object": e.to_json()}))
}

/// Which event, if any, a watcher with `filter` sees for a cache event.
fn visible(filter: &Filter, e: &CacheEvent) -> Option<&'static str> {
    let now = filter.matches(&e.object.object);
    let before = e.prev.as_ref().is_some_and(|p| filter.matches(&p.object));
    match e.kind {
        EventType::Added => now.then_some("ADDED"),
        EventType::Deleted => now.then_some("DELETED"),
        EventType::Modified => match (before, now) {
            (true, true) => Some("MODIFIED"),
            (false, true) => Some("ADDED"),
            (true, false) => Some("DELETED"),
            (false, false) => None,
        },
    }
}

/// Starts a watch.
pub async fn watch(state: &Arc<ApiState>, req: &ApiRequest) -> ApiResult {
    let info = req.info.clone();
    let mut filter = Filter::from_params(&info, &req.params)?;
    let prefix = match (req.namespace(), &req.path.name) {
        (Some(ns), _) => info.namespace_prefix(ns),
        (None, _) => info.key_prefix(),
    };
    if let Some(name) = &req.path.name {
        // `/watch/.../name` is a watch with a name field selector.
        let mut params = req.params.clone();
        params.set("fieldSelector", &format!("metadata.name={name}"));
        filter = Filter::from_params(&info, &params)?;
    }
    let timeout = req
        .params
        .int("timeoutSeconds")?
        .filter(|s| *s > 0)
        .map(|s| Duration::from_secs(s as u64))
        .unwrap_or(DEFAULT_TIMEOUT);
    let bookmarks = req.params.flag("allowWatchBookmarks");
    let send_initial = req.params.flag("sendInitialEvents");
    let rv = req.params.get("resourceVersion").unwrap_or("").to_string();
    let from_now = rv.is_empty() || rv == "0" || send_initial;

    let mut encoder = Encoder {
        info: info.clone(),
        repr: representation(&req.headers),
        params: req.params.clone(),
        sent_columns: false,
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let mut initial: Vec<Bytes> = Vec::new();
    let cursor: Result<Cursor, StatusError> = if from_now {
        if rv.is_empty() || send_initial {
            state.sync_cache().await?;
        }
        let (snapshot, _) = state
            .cache()
            .list(&prefix, None, 0, |o| filter.matches(&o.object));
        for obj in &snapshot.objects {
            initial.push(encoder.event("ADDED", obj));
        }
        if send_initial && bookmarks {
            initial.push(encoder.bookmark(snapshot.revision, true));
        }
        state
            .cache()
            .watch_from(snapshot.revision)
            .map_err(|e| StatusError::expired(e.to_string()))
    } else {
        let after: i64 = rv.parse().map_err(|_| {
            StatusError::bad_request(format!("invalid resourceVersion {rv:?}: not a number"))
        })?;
        state
            .cache()
            .watch_from(after)
            .map_err(|e| StatusError::expired(e.to_string()))
    };

    let stopping = state.shutting_down();
    tokio::spawn(async move {
        tokio::pin!(stopping);
        let mut cursor = match cursor {
            Ok(c) => c,
            Err(e) => {
                let _ = tx.send(Ok(error_line(&e))).await;
                return;
            }
        };
        for b in initial {
            if tx.send(Ok(b)).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let next = tokio::select! {
                r = cursor.next_batch() => Some(r),
                _ = tokio::time::sleep(BOOKMARK_EVERY), if bookmarks => None,
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tx.closed() => return,
                _ = &mut stopping => return,
            };
            match next {
                None => {
                    if tx
                        .send(Ok(encoder.bookmark(cursor.revision(), false)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Some(Ok(batch)) => {
                    for e in batch.iter().filter(|e| e.object.key.starts_with(&prefix)) {
                        if let Some(kind) = visible(&filter, e)
                            && tx.send(Ok(encoder.event(kind, &e.object))).await.is_err()
                        {
                            return;
                        }
                    }
                }
                Some(Err(CacheError::TooOld { requested, oldest })) => {
                    let e = StatusError::expired(format!(
                        "too old resource version: {requested} ({oldest})"
                    ));
                    let _ = tx.send(Ok(error_line(&e))).await;
                    return;
                }
                Some(Err(_)) => return,
            }
        }
    });

    let mut response = Response::new(Body::from_stream(ReceiverStream::new(rx)));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
