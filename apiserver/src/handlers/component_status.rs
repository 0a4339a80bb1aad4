//! `GET componentstatuses[/NAME]`: the health of the control plane's components, computed on
//! each request and never stored (deprecated in Kubernetes, still asked by
//! `kubectl get componentstatuses`).
//!
//! `etcd-0` is the store answering; `scheduler` and `controller-manager` are their leader-election
//! Leases in `kube-system` renewed within their lease duration (Kubernetes probes the components'
//! `/healthz` ports; gitplane's components have none, but each leader renews its Lease).

use std::sync::Arc;

use apimachinery::object::ObjectExt;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::ApiRequest;
use crate::response::{ApiResult, Representation, json, representation};
use crate::state::ApiState;
use crate::table;

/// How long the store may take to answer before etcd is reported unhealthy.
const STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

fn status(name: &str, healthy: Result<(), String>) -> Value {
    let condition = match healthy {
        Ok(()) => json!({"type": "Healthy", "status": "True", "message": "ok"}),
        Err(e) => json!({"type": "Healthy", "status": "False", "message": "", "error": e}),
    };
    json!({"kind": "ComponentStatus", "apiVersion": "v1", "metadata": {"name": name},
           "conditions": [condition]})
}

fn lease_health(state: &ApiState, lease: &str) -> Result<(), String> {
    let key = format!("/registry/coordination.k8s.io/leases/kube-system/{lease}");
    let Some(obj) = state.cache().get(&key) else {
        return Err(format!("no leader: Lease kube-system/{lease} not found"));
    };
    let renewed = obj
        .object
        .path("spec.renewTime")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    let duration = obj
        .object
        .path("spec.leaseDurationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(15);
    match renewed {
        Some(t) if jiff::Timestamp::now().as_second() - t.as_second() <= duration => Ok(()),
        _ => Err(format!(
            "no leader: Lease kube-system/{lease} not renewed within {duration}s"
        )),
    }
}

async fn statuses(state: &Arc<ApiState>) -> Vec<Value> {
    let store = match tokio::time::timeout(STORE_TIMEOUT, state.store().current_revision()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("the store did not answer within {STORE_TIMEOUT:?}")),
    };
    vec![
        status(
            "controller-manager",
            lease_health(state, "kube-controller-manager"),
        ),
        status("etcd-0", store),
        status("scheduler", lease_health(state, "kube-scheduler")),
    ]
}

/// Lists the components' statuses.
pub async fn list(state: &Arc<ApiState>, req: &ApiRequest) -> ApiResult {
    let items = statuses(state).await;
    let rv = state.cache().revision().to_string();
    Ok(match representation(&req.headers) {
        Representation::Table => {
            let refs: Vec<&Value> = items.iter().collect();
            let meta = json!({"resourceVersion": rv});
            json(
                StatusCode::OK,
                &table::table(&req.info, &refs, meta, &req.params, true),
            )
        }
        _ => json(
            StatusCode::OK,
            &json!({"kind": "ComponentStatusList", "apiVersion": "v1",
                    "metadata": {"resourceVersion": rv}, "items": items}),
        ),
    })
}

/// Reads one component's status.
pub async fn get(state: &Arc<ApiState>, req: &ApiRequest) -> ApiResult {
    let item = statuses(state)
        .await
        .into_iter()
        .find(|s| s.name() == Some(req.name()))
        .ok_or_else(|| req.not_found())?;
    Ok(match representation(&req.headers) {
        Representation::Table => json(
            StatusCode::OK,
            &table::table(&req.info, &[&item], json!({}), &req.params, true),
        ),
        _ => json(StatusCode::OK, &item),
    })
}
