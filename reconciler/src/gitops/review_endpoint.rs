//! The console's Review endpoint: what `gitplane diff --app APP --head REV` reports, over HTTP,
//! as the caller.
//!
//! Mounted by `gitplane up` on the API server's address beside the API. It reads and dry-runs
//! with a client carrying the caller's own bearer token (from the request's `Authorization`
//! header) against the API server, never with the syncer's identity: the API server
//! authenticates the token and RBAC decides what the caller may read, and the dry run reports
//! what the caller could not write. A request without a token is refused before anything is
//! read; the repository is fetched only once the caller has read the Application.
//!
//! Routes (JSON answers; failures as a Kubernetes `Status` with the API server's code):
//! - `GET /gitplane/v1/applications/{app}/branches`: `{"branches": [...]}` of its repository.
//! - `GET /gitplane/v1/applications/{app}/review?revision=REV`: the review, with its markdown.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::preview::{self, PreviewError, Target};
use super::repo::RepoError;
use super::review::Review;

/// Why the target's repository could not be mirrored for a request.
#[derive(Debug, thiserror::Error)]
enum MirrorError {
    /// The temporary directory of the mirror could not be made.
    #[error("temp dir: {0}")]
    TempDir(#[source] std::io::Error),
    /// The repository could not be opened or fetched.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The blocking task running git panicked or was cancelled.
    #[error("repository task: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// Makes a client for the API server that authenticates with the given bearer token.
pub type CallerClients = Arc<
    dyn Fn(&str) -> Result<kube::Client, Box<dyn std::error::Error + Send + Sync>> + Send + Sync,
>;

/// The routes under `/gitplane/v1/applications/`, to mount on the API server's address.
pub fn router(clients: CallerClients) -> axum::Router {
    axum::Router::new()
        .route(
            "/gitplane/v1/applications/{app}/branches",
            axum::routing::get(branches),
        )
        .route(
            "/gitplane/v1/applications/{app}/review",
            axum::routing::get(review),
        )
        .with_state(clients)
}

/// A failure in the shape of a Kubernetes `Status`, which the console already reads.
fn status(code: StatusCode, message: impl Into<String>) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message.into(), "code": code.as_u16(),
    });
    (code, axum::Json(body)).into_response()
}

/// The caller's client and their Application, or the refusal to send back.
async fn caller(
    clients: &CallerClients,
    headers: &HeaderMap,
    app: &str,
) -> Result<(kube::Client, Target), Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            status(
                StatusCode::UNAUTHORIZED,
                "a bearer token is required (Authorization: Bearer TOKEN)",
            )
        })?;
    let client = clients(token).map_err(|e| {
        status(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("client for the caller: {e}"),
        )
    })?;
    match preview::application(&client, app).await {
        Ok(target) => Ok((client, target)),
        Err(PreviewError::Application {
            source: kube::Error::Api(e),
            ..
        }) => Err(status(
            StatusCode::from_u16(e.code).unwrap_or(StatusCode::BAD_GATEWAY),
            e.message,
        )),
        Err(e) => Err(status(StatusCode::BAD_GATEWAY, e.to_string())),
    }
}

/// Runs `f` on a fresh mirror of the target's repository, off the async threads (git is
/// blocking, and a mirror may not cross an await).
async fn with_mirror<T: Send + 'static>(
    target: &Target,
    f: impl FnOnce(&super::repo::Mirror) -> T + Send + 'static,
) -> Result<T, MirrorError> {
    let url = target.spec.source.repo_url.clone();
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().map_err(MirrorError::TempDir)?;
        let mirror = preview::mirror(dir.path(), &url)?;
        Ok(f(&mirror))
    })
    .await
    .map_err(MirrorError::Task)?
}

async fn branches(
    State(clients): State<CallerClients>,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (_, target) = match caller(&clients, &headers, &app).await {
        Ok(c) => c,
        Err(refusal) => return refusal,
    };
    match with_mirror(&target, |m| m.branches()).await {
        Ok(Ok(names)) => axum::Json(json!({ "branches": names })).into_response(),
        Ok(Err(e)) => status(StatusCode::BAD_GATEWAY, e.to_string()),
        Err(e) => status(StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

/// `?revision=`.
#[derive(serde::Deserialize)]
struct ReviewQuery {
    revision: Option<String>,
}

async fn review(
    State(clients): State<CallerClients>,
    Path(app): Path<String>,
    Query(query): Query<ReviewQuery>,
    headers: HeaderMap,
) -> Response {
    let revision = query.revision.unwrap_or_default();
    if revision.trim().is_empty() {
        return status(
            StatusCode::BAD_REQUEST,
            "revision: Required (a branch, tag or commit of the application's repository)",
        );
    }
    let (client, target) = match caller(&clients, &headers, &app).await {
        Ok(c) => c,
        Err(refusal) => return refusal,
    };
    let rendered = {
        let (t, rev) = (target.clone(), revision.clone());
        match with_mirror(&target, move |m| preview::render_revision(m, &t, &rev)).await {
            Ok(Ok(head)) => Ok(head),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    };
    let review = match rendered {
        Ok(head) => preview::against_live(client, &target, &head).await,
        Err(e) => Review {
            title: format!("{app} at {revision}"),
            errors: vec![e],
            ..Review::default()
        },
    };
    axum::Json(report(&review)).into_response()
}

/// The answer: the markdown report as `gitplane diff -o markdown` prints it, and its parts.
fn report(review: &Review) -> Value {
    json!({
        "title": review.title,
        "exitCode": review.exit_code(),
        "markdown": review.markdown(),
        "errors": review.errors,
        "entries": review.entries.iter().map(|e| json!({
            "object": e.object,
            "change": e.change.as_str(),
            "error": e.error,
        })).collect::<Vec<_>>(),
    })
}
