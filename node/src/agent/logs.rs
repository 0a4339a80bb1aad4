//! The agent's HTTP endpoint for container logs, as the kubelet's:
//! `GET /containerLogs/{namespace}/{pod}/{container}` with `follow`, `tailLines`, `previous`,
//! `timestamps` and `limitBytes`, served by the agent's `server`. The API server's `pods/log`
//! proxies to it. Logs are read
//! from the files the runtime writes (`<logs>/<ns>_<pod>_<uid>/<container>/<attempt>.log`);
//! `previous` is the attempt before the newest. Following ends once the container is no longer
//! running and its file is drained.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::mpsc;

use super::labels;
use crate::runtime::logs::{files, parse};
use crate::runtime::{RuntimeClient, api};

#[derive(Clone)]
struct Ctx {
    runtime: RuntimeClient,
    root: PathBuf,
}

/// Query parameters of a log request.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Params {
    follow: Option<String>,
    previous: Option<String>,
    timestamps: Option<String>,
    tail_lines: Option<i64>,
    limit_bytes: Option<i64>,
}

fn flag(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|v| v == "true" || v == "1")
}

/// The log endpoint's routes, for the agent's server (`server`).
pub(super) fn routes(runtime: RuntimeClient, root: PathBuf) -> Router {
    Router::new()
        .route("/containerLogs/{ns}/{pod}/{container}", get(logs))
        .with_state(Ctx { runtime, root })
}

fn not_found(message: String) -> Response {
    (StatusCode::NOT_FOUND, message).into_response()
}

/// The pod's log directory (the newest when the name was reused) and the attempts found.
fn attempts(root: &Path, ns: &str, pod: &str, container: &str) -> Option<(PathBuf, Vec<u32>)> {
    let prefix = format!("{ns}_{pod}_");
    let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(root)
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    dirs.sort();
    let dir = dirs.pop()?.1.join(container);
    let mut found: Vec<u32> = std::fs::read_dir(&dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_suffix(".log")
                .and_then(|n| n.parse().ok())
        })
        .collect();
    found.sort();
    Some((dir, found))
}

async fn running(
    runtime: &RuntimeClient,
    ns: &str,
    pod: &str,
    container: &str,
    attempt: u32,
) -> bool {
    let mut rt = runtime.clone();
    let filter = api::ContainerFilter {
        label_selector: labels::of_container(ns, pod, container),
        ..Default::default()
    };
    rt.list_containers(api::ListContainersRequest {
        filter: Some(filter),
    })
    .await
    .map(|r| {
        r.into_inner().containers.iter().any(|c| {
            c.state == api::ContainerState::ContainerRunning as i32
                && c.metadata.as_ref().is_some_and(|m| m.attempt == attempt)
        })
    })
    .unwrap_or(false)
}

fn render(line: &str, timestamps: bool) -> Option<String> {
    let r = parse(line)?;
    let end = if r.full { "\n" } else { "" };
    Some(if timestamps {
        format!("{} {}{end}", r.time, r.text)
    } else {
        format!("{}{end}", r.text)
    })
}

async fn logs(
    State(ctx): State<Ctx>,
    UrlPath((ns, pod, container)): UrlPath<(String, String, String)>,
    Query(params): Query<Params>,
) -> Response {
    let Some((dir, found)) = attempts(&ctx.root, &ns, &pod, &container) else {
        return not_found(format!(
            "container {container:?} in pod {pod:?} has no logs"
        ));
    };
    let previous = flag(&params.previous);
    let attempt = if previous {
        match found.len().checked_sub(2).and_then(|i| found.get(i)) {
            Some(a) => *a,
            None => {
                return (
                    StatusCode::BAD_REQUEST,
                    format!("previous terminated container {container:?} in pod {pod:?} not found"),
                )
                    .into_response();
            }
        }
    } else {
        match found.last() {
            Some(a) => *a,
            None => {
                return not_found(format!(
                    "container {container:?} in pod {pod:?} has no logs"
                ));
            }
        }
    };
    let path = dir.join(format!("{attempt}.log"));
    let timestamps = flag(&params.timestamps);
    let follow = flag(&params.follow) && !previous;
    let mut lines: Vec<String> = Vec::new();
    for f in files(&path, 5) {
        if let Ok(text) = std::fs::read_to_string(&f) {
            lines.extend(text.lines().filter_map(|l| render(l, timestamps)));
        }
    }
    let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    if let Some(n) = params.tail_lines.filter(|n| *n >= 0) {
        let skip = lines.len().saturating_sub(n as usize);
        lines.drain(..skip);
    }
    let mut head: String = lines.concat();
    if let Some(limit) = params.limit_bytes.filter(|l| *l > 0) {
        let mut cut = (limit as usize).min(head.len());
        while !head.is_char_boundary(cut) {
            cut -= 1;
        }
        head.truncate(cut);
        return head.into_response();
    }
    if !follow {
        return head.into_response();
    }
    let (tx, rx) = mpsc::channel::<Result<String, std::io::Error>>(16);
    tokio::spawn(async move {
        if tx.send(Ok(head)).await.is_err() {
            return;
        }
        let mut offset = offset;
        let mut partial = String::new();
        let mut idle = 0u32;
        loop {
            let (chunk, new_offset) = read_from(&path, offset);
            offset = new_offset;
            if !chunk.is_empty() {
                idle = 0;
                partial.push_str(&chunk);
                while let Some(i) = partial.find('\n') {
                    let line: String = partial.drain(..=i).collect();
                    if let Some(out) = render(line.trim_end_matches('\n'), timestamps)
                        && tx.send(Ok(out)).await.is_err()
                    {
                        return;
                    }
                }
                continue;
            }
            idle += 1;
            if idle.is_multiple_of(5)
                && !running(&ctx.runtime, &ns, &pod, &container, attempt).await
            {
                // Drain what was written last, then stop.
                let (chunk, _) = read_from(&path, offset);
                partial.push_str(&chunk);
                for line in partial.lines() {
                    if let Some(out) = render(line, timestamps) {
                        let _ = tx.send(Ok(out)).await;
                    }
                }
                return;
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)).into_response()
}

/// Reads what was appended to `path` after `offset` (starting over when the file was rotated).
fn read_from(path: &Path, offset: u64) -> (String, u64) {
    let Ok(mut f) = std::fs::File::open(path) else {
        return (String::new(), offset);
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = if len < offset { 0 } else { offset };
    if f.seek(SeekFrom::Start(start)).is_err() {
        return (String::new(), offset);
    }
    let mut out = String::new();
    let mut reader = BufReader::new(&mut f).take(1024 * 1024);
    let mut read = 0u64;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(n) if line.ends_with('\n') => {
                read += n as u64;
                out.push_str(&line);
            }
            Ok(_) => break,
        }
    }
    (out, start + read)
}
