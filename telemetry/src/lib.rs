//! gitplane's Prometheus metrics: one process-wide registry, the metric families of every
//! component (named as Kubernetes and Argo CD name them, so existing dashboards and alerts
//! work), and their exposition in the OpenMetrics text format.
//!
//! # Layout
//! - [`apiserver`]: requests, in-flight and long-running requests, 429s, stored objects,
//!   storage operation latency and errors;
//! - [`scheduler`]: scheduling attempts, their latency, pending pods by queue;
//! - [`workqueue`]: every controller's queue (depth, adds, queue and work latency, retries);
//! - [`kubelet`]: running pods and containers, pod start latency, probes, CRI operations;
//! - [`argocd`]: Applications (`argocd_app_info` comes from the syncer's collector), syncs,
//!   reconciles, Git requests, notifications.
//!
//! Each module's families are registered on first use of its accessor (`apiserver::metrics()`,
//! ...), which a component calls when it starts, so a component's families are on `/metrics`
//! from its start. Every component of one process (`gitplane up`) registers into the same
//! registry: the API server's `/metrics` shows them all; a component run alone serves them on
//! its `--metrics-listen` address ([`serve`]).
//!
//! **Architecture Invariant**: recording a value never takes a lock of the caller's: counters,
//! gauges and histograms are atomics (a labelled family looks its series up under a
//! read-mostly lock of its own). The registry's lock is taken only at registration and scrape.

pub mod apiserver;
pub mod argocd;
pub mod kubelet;
pub mod scheduler;
pub mod workqueue;

use std::net::SocketAddr;
use std::sync::{LazyLock, Mutex, MutexGuard};

use prometheus_client::collector::Collector;
use prometheus_client::registry::{Metric, Registry};

/// The `Content-Type` of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| Mutex::new(Registry::default()));

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// Registers a metric under its full name (a counter's without its `_total` suffix, which the
/// exposition adds). The help text is Kubernetes' or Argo CD's, less its final period (the
/// encoder adds one).
fn register(name: &str, help: &str, metric: impl Metric) {
    registry().register(name, help.trim_end_matches('.'), metric);
}

/// Registers a collector: families computed at each scrape (the syncer's `argocd_app_info`).
pub fn register_collector(collector: Box<dyn Collector>) {
    registry().register_collector(collector);
}

/// Every registered family in the OpenMetrics text format (ending in `# EOF`).
pub fn encode() -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry());
    out
}

/// Exponential histogram buckets: `count` bounds from `start`, each `factor` times the last.
fn exponential(start: f64, factor: f64, count: u16) -> Vec<f64> {
    (0..count)
        .scan(start, |bound, _| {
            let b = *bound;
            *bound *= factor;
            Some(b)
        })
        .collect()
}

/// Serves `GET /metrics` on `listen` until `shutdown` resolves: the exposition of a component
/// run on its own (`--metrics-listen`), without authentication, as the kubelet's and
/// kube-scheduler's plain-HTTP metrics ports are. Returns the bound address.
pub async fn serve(
    listen: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().route("/metrics", axum::routing::get(exposition));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
    });
    Ok(addr)
}

/// The `/metrics` response.
pub async fn exposition() -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_buckets_multiply_from_the_start() {
        assert_eq!(exponential(0.5, 2.0, 4), vec![0.5, 1.0, 2.0, 4.0]);
        assert!(exponential(1.0, 10.0, 0).is_empty());
    }

    #[test]
    fn the_exposition_holds_each_registered_family_once_and_ends_in_eof() {
        apiserver::metrics();
        apiserver::metrics();
        argocd::metrics().git_fetch("/srv/repo", std::time::Duration::from_millis(20), true);
        let text = encode();
        assert_eq!(
            text.matches("# TYPE apiserver_dropped_requests counter")
                .count(),
            1,
            "{text}"
        );
        assert!(
            text.contains(
                "argocd_git_fetch_fail_total{repo=\"/srv/repo\",request_type=\"fetch\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "# HELP argocd_git_request_duration_seconds Git requests duration seconds.\n"
            ),
            "one final period: {text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
