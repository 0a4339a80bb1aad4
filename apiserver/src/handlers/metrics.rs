//! `metrics.k8s.io/v1beta1` (`kubectl top`, the HorizontalPodAutoscaler): `NodeMetrics` and
//! `PodMetrics`, get and list (all namespaces or one, label and field selectors), computed on
//! each request and never stored.
//!
//! Kubernetes serves this group through an aggregated API server, metrics-server, which scrapes
//! every kubelet's summary on a timer. Here the group is served in-process, and each request
//! asks the node agents it needs for their `/stats/summary` (over the API server's node client,
//! `crate::node_client`), concurrently and with a deadline; a node that does not answer in time
//! is left out, as metrics-server leaves out a node it cannot scrape. Simulated nodes run no
//! processes: their pods' usage is what each pod's `gitplane.io/simulated-usage` annotation
//! says (`apimachinery::metrics::simulated_usage`), and a simulated node's usage is the sum
//! of its pods'. Authorization is RBAC's, on `nodes` and `pods` of the group, as for any
//! resource.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use apimachinery::metrics::{self, Summary, Usage};
use apimachinery::object::ObjectExt;
use apimachinery::status::StatusError;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::ApiRequest;
use super::list::Filter;
use crate::response::{ApiResult, Representation, json, representation};
use crate::state::ApiState;
use crate::table;

/// How long a node agent may take to answer.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// The window reported for simulated usage (it is constant).
const SIMULATED_WINDOW: f64 = 1.0;

/// What one node reported.
enum Report {
    /// A node agent's summary.
    Agent(Summary),
    /// A simulated node.
    Simulated,
}

fn is_simulated(node: &Value) -> bool {
    node.path("status.nodeInfo.containerRuntimeVersion")
        .and_then(Value::as_str)
        .is_some_and(|r| r.starts_with("simulated://"))
}

fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn core(
    state: &ApiState,
    plural: &str,
) -> Result<Arc<apimachinery::registry::ResourceInfo>, StatusError> {
    state
        .registry()
        .by_resource("", "v1", plural)
        .ok_or_else(|| StatusError::internal(format!("{plural} are not served")))
}

/// The stored objects of a core resource (one namespace, or all) that pass the request's
/// selectors (a `get` reads one name).
fn objects(state: &ApiState, req: &ApiRequest, plural: &str) -> Result<Vec<Value>, StatusError> {
    let info = core(state, plural)?;
    if let Some(name) = req.path.name.as_deref() {
        return Ok(state
            .cache()
            .get(&info.key(req.namespace(), name))
            .map(|o| vec![o.object.clone()])
            .unwrap_or_default());
    }
    let filter = Filter::from_params(&info, &req.params)?;
    let prefix = match req.namespace() {
        Some(ns) if info.namespaced => info.namespace_prefix(ns),
        _ => info.key_prefix(),
    };
    let (snapshot, _) = state
        .cache()
        .list(&prefix, None, 0, |o| filter.matches(&o.object));
    Ok(snapshot.objects.iter().map(|o| o.object.clone()).collect())
}

/// The reports of `wanted` nodes, asked concurrently; nodes that fail are left out.
async fn reports(state: &Arc<ApiState>, wanted: &BTreeSet<String>) -> HashMap<String, Report> {
    let nodes = match core(state, "nodes") {
        Ok(n) => n,
        Err(_) => return HashMap::new(),
    };
    let mut asks = tokio::task::JoinSet::new();
    let mut out = HashMap::new();
    for name in wanted {
        let Some(node) = state.cache().get(&nodes.key(None, name)) else {
            continue;
        };
        if is_simulated(&node.object) {
            out.insert(name.clone(), Report::Simulated);
            continue;
        }
        let (state, name) = (state.clone(), name.clone());
        asks.spawn(async move {
            let summary = tokio::time::timeout(SCRAPE_TIMEOUT, scrape(&state, &name)).await;
            match summary {
                Ok(Ok(s)) => Some((name, s)),
                Ok(Err(e)) => {
                    tracing::debug!(node = %name, error = %e.message, "no usage from the node agent");
                    None
                }
                Err(_) => {
                    tracing::debug!(node = %name, "the node agent's usage timed out");
                    None
                }
            }
        });
    }
    while let Some(done) = asks.join_next().await {
        if let Ok(Some((name, summary))) = done {
            out.insert(name, Report::Agent(summary));
        }
    }
    out
}

/// Reads a node agent's `/stats/summary`.
async fn scrape(state: &ApiState, node: &str) -> Result<Summary, StatusError> {
    let agent = crate::node_client::node_agent(state, node, &format!("node {node}"), "metrics")?;
    let request = axum::http::Request::get("/stats/summary");
    let answer = agent.send(state, request).await?;
    let body = http_body_util::BodyExt::collect(answer.into_body())
        .await
        .map_err(|e| StatusError::internal(format!("reading node {node}'s summary: {e}")))?
        .to_bytes();
    serde_json::from_slice(&body)
        .map_err(|e| StatusError::internal(format!("node {node}'s summary: {e}")))
}

fn stamped(mut metrics: Value, time: &str) -> Value {
    metrics["metadata"]["creationTimestamp"] = json!(time);
    metrics
}

/// The `NodeMetrics` the request asks for.
async fn node_metrics(state: &Arc<ApiState>, req: &ApiRequest) -> Result<Vec<Value>, StatusError> {
    let nodes = objects(state, req, "nodes")?;
    let wanted: BTreeSet<String> = nodes
        .iter()
        .filter_map(|n| n.name().map(str::to_string))
        .collect();
    let reports = reports(state, &wanted).await;
    let time = now();
    let mut simulated: BTreeMap<String, Usage> = BTreeMap::new();
    if reports.values().any(|r| matches!(r, Report::Simulated)) {
        for pod in running_pods(state)? {
            let node = pod
                .path("spec.nodeName")
                .and_then(Value::as_str)
                .unwrap_or("");
            if matches!(reports.get(node), Some(Report::Simulated)) {
                let usage = metrics::simulated_usage(&pod).unwrap_or_default();
                let containers = pod
                    .path("spec.containers")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len) as u64;
                let total = simulated.entry(node.to_string()).or_default();
                total.nano_cores += usage.nano_cores * containers;
                total.bytes += usage.bytes * containers;
            }
        }
    }
    let mut items = Vec::new();
    for node in &nodes {
        let name = node.name().unwrap_or_default();
        let item = match reports.get(name) {
            Some(Report::Agent(s)) => s
                .window_seconds
                .and_then(|w| metrics::node_metrics(node, &s.node, w)),
            Some(Report::Simulated) => {
                let usage = simulated.get(name).copied().unwrap_or_default();
                let stats = metrics::NodeStats {
                    node_name: name.to_string(),
                    cpu: Some(metrics::CpuStats {
                        time: time.clone(),
                        usage_nano_cores: Some(usage.nano_cores),
                        usage_core_nano_seconds: None,
                    }),
                    memory: Some(metrics::MemoryStats {
                        time: time.clone(),
                        working_set_bytes: Some(usage.bytes),
                    }),
                };
                metrics::node_metrics(node, &stats, SIMULATED_WINDOW)
            }
            None => None,
        };
        items.extend(item.map(|m| stamped(m, &time)));
    }
    Ok(items)
}

/// Every pod bound to a node and running.
fn running_pods(state: &ApiState) -> Result<Vec<Value>, StatusError> {
    let pods = core(state, "pods")?;
    let (snapshot, _) = state.cache().list(&pods.key_prefix(), None, 0, |o| {
        o.object.path("status.phase").and_then(Value::as_str) == Some("Running")
    });
    Ok(snapshot.objects.iter().map(|o| o.object.clone()).collect())
}

/// The `PodMetrics` the request asks for.
async fn pod_metrics(state: &Arc<ApiState>, req: &ApiRequest) -> Result<Vec<Value>, StatusError> {
    let pods: Vec<Value> = objects(state, req, "pods")?
        .into_iter()
        .filter(|p| p.path("status.phase").and_then(Value::as_str) == Some("Running"))
        .collect();
    let wanted: BTreeSet<String> = pods
        .iter()
        .filter_map(|p| p.path("spec.nodeName").and_then(Value::as_str))
        .map(str::to_string)
        .collect();
    let reports = reports(state, &wanted).await;
    let time = now();
    let mut by_uid = HashMap::new();
    let mut windows = HashMap::new();
    for (node, report) in &reports {
        if let Report::Agent(s) = report {
            windows.insert(node.as_str(), s.window_seconds);
            for p in &s.pods {
                by_uid.insert(p.pod_ref.uid.as_str(), p);
            }
        }
    }
    let mut items = Vec::new();
    for pod in &pods {
        let node = pod
            .path("spec.nodeName")
            .and_then(Value::as_str)
            .unwrap_or("");
        let item = match reports.get(node) {
            Some(Report::Simulated) => Some(
                metrics::simulated_pod_metrics(pod, &time, SIMULATED_WINDOW)
                    .map_err(|e| StatusError::internal(e.to_string()))?,
            ),
            Some(Report::Agent(_)) => {
                let uid = pod
                    .path("metadata.uid")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                match (by_uid.get(uid), windows.get(node).copied().flatten()) {
                    (Some(stats), Some(w)) => metrics::pod_metrics(pod, stats, w),
                    _ => None,
                }
            }
            None => None,
        };
        items.extend(item.map(|m| stamped(m, &time)));
    }
    Ok(items)
}

/// Serves a get or list of `metrics.k8s.io` nodes or pods.
pub async fn serve(state: &Arc<ApiState>, req: &ApiRequest) -> ApiResult {
    let (items, kind) = match req.info.plural.as_str() {
        "nodes" => (node_metrics(state, req).await?, "NodeMetrics"),
        _ => (pod_metrics(state, req).await?, "PodMetrics"),
    };
    let table = representation(&req.headers) == Representation::Table;
    if req.path.name.is_some() {
        let item = items.into_iter().next().ok_or_else(|| req.not_found())?;
        return Ok(if table {
            json(
                StatusCode::OK,
                &table::table(&req.info, &[&item], json!({}), &req.params, true),
            )
        } else {
            json(StatusCode::OK, &item)
        });
    }
    let meta = json!({"resourceVersion": ""});
    Ok(if table {
        let refs: Vec<&Value> = items.iter().collect();
        json(
            StatusCode::OK,
            &table::table(&req.info, &refs, meta, &req.params, true),
        )
    } else {
        json(
            StatusCode::OK,
            &json!({"kind": format!("{kind}List"), "apiVersion": req.info.api_version(),
                    "metadata": meta, "items": items}),
        )
    })
}
