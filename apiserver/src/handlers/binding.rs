//! `POST pods/<name>/binding` (and `POST bindings`, the pod named in the Binding): the scheduler
//! assigns a pod to a node.

use std::sync::Arc;

use apimachinery::object::ObjectExt;
use apimachinery::status::{FieldError, StatusError};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::ApiRequest;
use super::write::update_with;
use crate::response::{ApiResult, json};
use crate::state::ApiState;
use crate::strategy::UpdateScope;

/// Binds the pod of the path to the node named in the Binding's `target`.
pub async fn bind(state: &Arc<ApiState>, req: &ApiRequest) -> ApiResult {
    bind_pod(state, req, &req.info, req.name()).await
}

/// `POST bindings`: binds the pod the Binding names in its metadata.
pub async fn bind_named(state: &Arc<ApiState>, req: &ApiRequest) -> ApiResult {
    let binding = req.json_body()?;
    let name = binding.name().unwrap_or("").to_string();
    if name.is_empty() {
        return Err(StatusError::invalid(
            "",
            "Binding",
            "",
            vec![FieldError::required("metadata.name")],
        ));
    }
    let registry = state.registry();
    let pods = registry
        .by_resource("", "v1", "pods")
        .ok_or_else(|| StatusError::internal("pods are not served"))?;
    bind_pod(state, req, &pods, &name).await
}

async fn bind_pod(
    state: &Arc<ApiState>,
    req: &ApiRequest,
    pods: &apimachinery::registry::ResourceInfo,
    name: &str,
) -> ApiResult {
    let dry_run = req.params.dry_run()?;
    let binding = req.json_body()?;
    let node = binding
        .path("target.name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            StatusError::invalid(
                "",
                "Binding",
                name,
                vec![FieldError::required("target.name")],
            )
        })?
        .to_string();
    let name = name.to_string();
    update_with(
        state,
        pods,
        req.namespace(),
        &name,
        UpdateScope::Main,
        dry_run,
        |pod| {
            if pod.path("metadata.deletionTimestamp").is_some() {
                return Err(StatusError::conflict(
                    "",
                    "pods",
                    &name,
                    "pod is being deleted, cannot be assigned to a host",
                ));
            }
            if pod
                .path("spec.nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty())
            {
                return Err(StatusError::conflict(
                    "",
                    "pods",
                    &name,
                    &format!(
                        "pod {name} is already assigned to node {:?}",
                        pod.path("spec.nodeName")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                    ),
                ));
            }
            let mut pod = pod.clone();
            pod["spec"]["nodeName"] = json!(node);
            Ok(pod)
        },
    )
    .await?;
    Ok(json(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}
