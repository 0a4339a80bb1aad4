//! The node agent's families, as the kubelet names them: `kubelet_running_pods`,
//! `kubelet_running_containers`, `kubelet_pod_start_duration_seconds`, `prober_probe_total`,
//! `kubelet_runtime_operations_duration_seconds` and `kubelet_runtime_operations_errors_total`
//! (the CRI calls). Several agents in one process (simulated nodes do not count here) add up.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

/// A container state label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// `running`, `exited`, `created`, `unknown`.
    pub container_state: &'static str,
}

/// A probe result's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    /// `Liveness`, `Readiness`, `Startup`.
    pub probe_type: &'static str,
    /// `successful` or `failed`.
    pub result: &'static str,
    /// The container.
    pub container: String,
    /// The pod.
    pub pod: String,
    /// Its namespace.
    pub namespace: String,
}

/// A CRI operation's label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// The CRI method in snake case (`run_pod_sandbox`, `create_container`...).
    pub operation_type: String,
}

/// The node agent's families.
#[derive(Debug)]
pub struct Metrics {
    /// `kubelet_running_pods`: pods with a ready sandbox.
    pub running_pods: Gauge,
    /// `kubelet_running_containers`.
    pub running_containers: Family<StateLabels, Gauge>,
    /// `kubelet_pod_start_duration_seconds`: from the agent's first sight of a pod to all its
    /// containers running.
    pub pod_start: Histogram,
    /// `prober_probe_total`.
    pub probes: Family<ProbeLabels, Counter>,
    /// `kubelet_runtime_operations_duration_seconds`.
    pub operations: Family<OperationLabels, Histogram, fn() -> Histogram>,
    /// `kubelet_runtime_operations_errors_total`.
    pub operation_errors: Family<OperationLabels, Counter>,
}

/// The kubelet's pod start buckets.
const POD_START_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0, 240.0,
    300.0, 360.0, 480.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0,
];

fn operation_histogram() -> Histogram {
    // The kubelet's: 5 ms, times 2.5, 14 buckets.
    Histogram::new(crate::exponential(0.005, 2.5, 14))
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let m = Metrics {
        running_pods: Gauge::default(),
        running_containers: Family::default(),
        pod_start: Histogram::new(POD_START_BUCKETS.iter().copied()),
        probes: Family::default(),
        operations: Family::new_with_constructor(operation_histogram),
        operation_errors: Family::default(),
    };
    crate::register(
        "kubelet_running_pods",
        "Number of pods that have a running pod sandbox",
        m.running_pods.clone(),
    );
    crate::register(
        "kubelet_running_containers",
        "Number of containers currently running",
        m.running_containers.clone(),
    );
    crate::register(
        "kubelet_pod_start_duration_seconds",
        "Duration in seconds from kubelet seeing a pod for the first time to the pod starting \
         to run",
        m.pod_start.clone(),
    );
    crate::register(
        "prober_probe",
        "Cumulative number of a liveness, readiness or startup probe for a container by result.",
        m.probes.clone(),
    );
    crate::register(
        "kubelet_runtime_operations_duration_seconds",
        "Duration in seconds of runtime operations. Broken down by operation type.",
        m.operations.clone(),
    );
    crate::register(
        "kubelet_runtime_operations_errors",
        "Cumulative number of runtime operation errors by operation type.",
        m.operation_errors.clone(),
    );
    m
});

/// The node agent's families, registered on first call.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    /// Records one CRI call (`/runtime.v1.RuntimeService/RunPodSandbox`).
    pub fn operation(&self, path: &str, elapsed: Duration, failed: bool) {
        let labels = OperationLabels {
            operation_type: operation_type(path),
        };
        self.operations
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if failed {
            self.operation_errors.get_or_create(&labels).inc();
        }
    }
}

/// A gRPC path's method in snake case: `/runtime.v1.RuntimeService/RunPodSandbox` →
/// `run_pod_sandbox`.
pub fn operation_type(path: &str) -> String {
    let method = path.rsplit('/').next().unwrap_or(path);
    let mut out = String::with_capacity(method.len() + 4);
    for (i, c) in method.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(path: &str, expected: &str) {
        assert_eq!(operation_type(path), expected, "{path}");
    }

    #[test]
    fn cri_methods_become_snake_case_operation_types() {
        check(
            "/runtime.v1.RuntimeService/RunPodSandbox",
            "run_pod_sandbox",
        );
        check("/runtime.v1.RuntimeService/ExecSync", "exec_sync");
        check("/runtime.v1.ImageService/PullImage", "pull_image");
        check("Version", "version");
    }
}
