//! Resource metrics, the pure parts: the node agent's usage summary (the kubelet's
//! `/stats/summary` shape, with the fields gitplane fills), the `metrics.k8s.io/v1beta1`
//! objects the API server builds from it (`NodeMetrics`, `PodMetrics`, as metrics-server writes
//! them), and the usage a simulated node reports for a pod, read from the pod's
//! `gitplane.io/simulated-usage` annotation.
//!
//! CPU is a rate in nano-cores averaged over the agent's sampling window; memory is the working
//! set in bytes.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::object::ObjectExt;

/// The group of the resource metrics API.
pub const GROUP: &str = "metrics.k8s.io";
/// Its version.
pub const VERSION: &str = "v1beta1";
/// The pod annotation whose usage a simulated node reports for each of the pod's containers:
/// `{"cpu": "250m", "memory": "64Mi"}` (either key may be left out: zero).
pub const SIMULATED_USAGE: &str = "gitplane.io/simulated-usage";

/// A node's summary, as the node agent serves it on `/stats/summary` (a subset of the
/// kubelet's `statsapi.Summary`, plus `window`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// The node as a whole.
    pub node: NodeStats,
    /// The pods running on it.
    #[serde(default)]
    pub pods: Vec<PodStats>,
    /// The window CPU rates are averaged over, in seconds (gitplane's addition: the kubelet's
    /// summary leaves it to metrics-server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<f64>,
}

/// A node's usage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    /// The node's name.
    pub node_name: String,
    /// CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    /// Memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
}

/// Which pod a [`PodStats`] is about.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PodReference {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Uid.
    pub uid: String,
}

/// A pod's usage: the sum of its containers'.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    /// The pod.
    pub pod_ref: PodReference,
    /// Its running containers.
    #[serde(default)]
    pub containers: Vec<ContainerStats>,
    /// CPU of the whole pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    /// Memory of the whole pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
}

/// A container's usage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats {
    /// The container's name in the pod spec.
    pub name: String,
    /// CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    /// Memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
}

/// CPU usage at a time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuStats {
    /// When it was measured (RFC 3339).
    pub time: String,
    /// The rate over the window, in nano-cores (absent until two samples exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_nano_cores: Option<u64>,
    /// Cumulative CPU time, in core-nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_core_nano_seconds: Option<u64>,
}

/// Memory usage at a time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStats {
    /// When it was measured (RFC 3339).
    pub time: String,
    /// The working set, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_set_bytes: Option<u64>,
}

/// One measurement: CPU in nano-cores, memory in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU rate, nano-cores.
    pub nano_cores: u64,
    /// Working set, bytes.
    pub bytes: u64,
}

impl Usage {
    fn of(cpu: Option<&CpuStats>, memory: Option<&MemoryStats>) -> Option<Usage> {
        Some(Usage {
            nano_cores: cpu?.usage_nano_cores?,
            bytes: memory?.working_set_bytes?,
        })
    }

    /// `{"cpu": "…n", "memory": "…"}` as metrics-server writes usage: CPU in nano-cores,
    /// memory in bytes with the largest binary suffix that divides them.
    pub fn to_json(self) -> Value {
        json!({"cpu": format!("{}n", self.nano_cores), "memory": bytes(self.bytes)})
    }
}

fn bytes(n: u64) -> String {
    for (suffix, shift) in [("Gi", 30), ("Mi", 20), ("Ki", 10)] {
        let f = 1u64 << shift;
        if n >= f && n.is_multiple_of(f) {
            return format!("{}{suffix}", n / f);
        }
    }
    n.to_string()
}

/// The window as metrics-server writes it (`10s`, `1.5s`).
pub fn window(seconds: f64) -> String {
    let ms = (seconds * 1000.0).round() as i64;
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{}s", ms as f64 / 1000.0)
    }
}

/// The name (namespace) and labels of the measured object; the caller adds
/// `creationTimestamp` (metrics-server sets the time of the request; this crate has no clock).
fn metadata(of: &Value, namespaced: bool) -> Value {
    let mut meta = json!({"name": of.name()});
    if namespaced {
        meta["namespace"] = json!(of.namespace().unwrap_or_default());
    }
    if let Some(labels) = of.path("metadata.labels") {
        meta["labels"] = labels.clone();
    }
    meta
}

/// The `NodeMetrics` of `node` (a Node object) from its summary; `None` while the agent has no
/// rate yet.
pub fn node_metrics(node: &Value, stats: &NodeStats, window_seconds: f64) -> Option<Value> {
    let usage = Usage::of(stats.cpu.as_ref(), stats.memory.as_ref())?;
    Some(json!({
        "kind": "NodeMetrics",
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": metadata(node, false),
        "timestamp": stats.cpu.as_ref().map(|c| c.time.clone()),
        "window": window(window_seconds),
        "usage": usage.to_json(),
    }))
}

/// The `PodMetrics` of `pod` from its summary, one entry per container in the summary;
/// `None` when a container has no rate yet (metrics-server leaves such pods out).
pub fn pod_metrics(pod: &Value, stats: &PodStats, window_seconds: f64) -> Option<Value> {
    let mut containers = Vec::new();
    let mut time = None;
    for c in &stats.containers {
        let usage = Usage::of(c.cpu.as_ref(), c.memory.as_ref())?;
        time = time.or_else(|| c.cpu.as_ref().map(|cpu| cpu.time.clone()));
        containers.push(json!({"name": c.name, "usage": usage.to_json()}));
    }
    if containers.is_empty() {
        return None;
    }
    Some(pod_metrics_object(pod, time, window_seconds, containers))
}

fn pod_metrics_object(
    pod: &Value,
    time: Option<String>,
    window_seconds: f64,
    containers: Vec<Value>,
) -> Value {
    json!({
        "kind": "PodMetrics",
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": metadata(pod, true),
        "timestamp": time,
        "window": window(window_seconds),
        "containers": containers,
    })
}

/// A bad `gitplane.io/simulated-usage` annotation.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SimulatedUsageError {
    /// Not a JSON object of quantities.
    #[error(
        "pod {pod}: annotation {SIMULATED_USAGE}: {message} (expected {{\"cpu\": \"250m\", \"memory\": \"64Mi\"}})"
    )]
    Invalid {
        /// `namespace/name`.
        pod: String,
        /// What is wrong.
        message: String,
    },
}

/// The usage a simulated node reports for each container of `pod`: its
/// `gitplane.io/simulated-usage` annotation, or zero without one.
pub fn simulated_usage(pod: &Value) -> Result<Usage, SimulatedUsageError> {
    let annotations = pod.annotations();
    let Some(raw) = annotations.get(SIMULATED_USAGE) else {
        return Ok(Usage::default());
    };
    let invalid = |message: String| SimulatedUsageError::Invalid {
        pod: format!(
            "{}/{}",
            pod.namespace().unwrap_or_default(),
            pod.name().unwrap_or_default()
        ),
        message,
    };
    let map: BTreeMap<String, Value> =
        serde_json::from_str(raw).map_err(|e| invalid(format!("not a JSON object: {e}")))?;
    let mut usage = Usage::default();
    for (key, value) in &map {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Err(invalid(format!("{key}: expected a quantity"))),
        };
        let amount = crate::quantity::parse(&text)
            .filter(|v| *v >= 0.0)
            .ok_or_else(|| invalid(format!("{key}: {text:?} is not a quantity")))?;
        match key.as_str() {
            "cpu" => usage.nano_cores = (amount * 1e9).round() as u64,
            "memory" => usage.bytes = amount.round() as u64,
            other => return Err(invalid(format!("unknown resource {other:?}"))),
        }
    }
    Ok(usage)
}

/// The `PodMetrics` a simulated node reports for `pod` (running or not: the usage is what the
/// annotation says), at `time`.
pub fn simulated_pod_metrics(
    pod: &Value,
    time: &str,
    window_seconds: f64,
) -> Result<Value, SimulatedUsageError> {
    let usage = simulated_usage(pod)?;
    let containers = pod
        .path("spec.containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .map(|name| json!({"name": name, "usage": usage.to_json()}))
        .collect();
    Ok(pod_metrics_object(
        pod,
        Some(time.to_string()),
        window_seconds,
        containers,
    ))
}

/// `NodeMetrics` (a schema for OpenAPI and the typed checks of the built-in kinds table).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeMetrics {
    /// Always `metrics.k8s.io/v1beta1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Always `NodeMetrics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The node's name and labels.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// When the usage was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// The window the CPU rate is averaged over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// `cpu` and `memory`.
    #[serde(default)]
    pub usage: BTreeMap<String, Quantity>,
}

/// One container of a [`PodMetrics`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ContainerMetrics {
    /// The container's name.
    pub name: String,
    /// `cpu` and `memory`.
    #[serde(default)]
    pub usage: BTreeMap<String, Quantity>,
}

/// `PodMetrics` (a schema for OpenAPI and the typed checks of the built-in kinds table).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodMetrics {
    /// Always `metrics.k8s.io/v1beta1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Always `PodMetrics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The pod's name, namespace and labels.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// When the usage was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// The window the CPU rate is averaged over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// The containers' usage.
    #[serde(default)]
    pub containers: Vec<ContainerMetrics>,
}

fn usage_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "additionalProperties": g.subschema_for::<Quantity>(),
    })
}

impl schemars::JsonSchema for NodeMetrics {
    fn schema_name() -> Cow<'static, str> {
        "io.k8s.metrics.pkg.apis.metrics.v1beta1.NodeMetrics".into()
    }

    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "NodeMetrics sets resource usage metrics of a node.",
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": g.subschema_for::<ObjectMeta>(),
                "timestamp": {"type": "string", "format": "date-time"},
                "window": {"type": "string"},
                "usage": usage_schema(g),
            },
        })
    }
}

impl schemars::JsonSchema for PodMetrics {
    fn schema_name() -> Cow<'static, str> {
        "io.k8s.metrics.pkg.apis.metrics.v1beta1.PodMetrics".into()
    }

    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "PodMetrics sets resource usage metrics of a pod.",
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": g.subschema_for::<ObjectMeta>(),
                "timestamp": {"type": "string", "format": "date-time"},
                "window": {"type": "string"},
                "containers": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "usage"],
                        "properties": {
                            "name": {"type": "string"},
                            "usage": usage_schema(g),
                        },
                    },
                },
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(annotation: Option<&str>, expected: Result<Usage, &str>) {
        let mut pod = json!({"metadata": {"name": "p", "namespace": "ns"},
                             "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        if let Some(a) = annotation {
            pod["metadata"]["annotations"] = json!({SIMULATED_USAGE: a});
        }
        let got = simulated_usage(&pod).map_err(|e| e.to_string());
        match expected {
            Ok(u) => assert_eq!(got, Ok(u), "{annotation:?}"),
            Err(part) => {
                let e = got.expect_err(annotation.unwrap_or_default());
                assert!(e.contains(part) && e.contains("pod ns/p"), "{e}");
            }
        }
    }

    #[test]
    fn the_simulated_usage_annotation_is_read_as_quantities() {
        check(None, Ok(Usage::default()));
        check(
            Some(r#"{"cpu":"250m","memory":"64Mi"}"#),
            Ok(Usage {
                nano_cores: 250_000_000,
                bytes: 64 << 20,
            }),
        );
        check(
            Some(r#"{"cpu":1}"#),
            Ok(Usage {
                nano_cores: 1_000_000_000,
                bytes: 0,
            }),
        );
        check(Some("250m"), Err("not a JSON object"));
        check(
            Some(r#"{"cpu":"lots"}"#),
            Err("cpu: \"lots\" is not a quantity"),
        );
        check(Some(r#"{"gpu":"1"}"#), Err("unknown resource \"gpu\""));
        check(Some(r#"{"cpu":"-1"}"#), Err("is not a quantity"));
    }

    #[test]
    fn usage_is_written_as_metrics_server_writes_it() {
        let u = Usage {
            nano_cores: 12_345,
            bytes: 3 << 20,
        };
        assert_eq!(u.to_json(), json!({"cpu": "12345n", "memory": "3Mi"}));
        assert_eq!(bytes(1000), "1000");
        assert_eq!(bytes(2048), "2Ki");
        assert_eq!(window(10.0), "10s");
        assert_eq!(window(1.5), "1.5s");
    }

    #[test]
    fn a_pod_without_a_rate_for_every_container_has_no_metrics() {
        let pod = json!({"metadata": {"name": "p", "namespace": "ns", "labels": {"app": "x"}}});
        let cpu = |rate| {
            Some(CpuStats {
                time: "2026-01-01T00:00:00Z".into(),
                usage_nano_cores: rate,
                usage_core_nano_seconds: Some(1),
            })
        };
        let memory = Some(MemoryStats {
            time: "2026-01-01T00:00:00Z".into(),
            working_set_bytes: Some(4096),
        });
        let mut stats = PodStats {
            containers: vec![
                ContainerStats {
                    name: "a".into(),
                    cpu: cpu(Some(5)),
                    memory: memory.clone(),
                },
                ContainerStats {
                    name: "b".into(),
                    cpu: cpu(None),
                    memory: memory.clone(),
                },
            ],
            ..Default::default()
        };
        assert_eq!(pod_metrics(&pod, &stats, 2.0), None);
        stats.containers[1].cpu = cpu(Some(7));
        let m = pod_metrics(&pod, &stats, 2.0).expect("metrics");
        assert_eq!(m["metadata"]["labels"], json!({"app": "x"}));
        assert_eq!(m["metadata"]["namespace"], "ns");
        assert_eq!(m["window"], "2s");
        assert_eq!(
            m["containers"],
            json!([{"name": "a", "usage": {"cpu": "5n", "memory": "4Ki"}},
                   {"name": "b", "usage": {"cpu": "7n", "memory": "4Ki"}}])
        );
    }
}
