//! The syncer's metrics: `argocd_app_info`, computed at each scrape from the syncer's store of
//! Applications (as Argo CD's application controller computes it from its informer), and the
//! labels the syncer's other families (`telemetry::argocd`) take from an Application.

use std::sync::{Mutex, Once};

use apimachinery::object::ObjectExt;
use kube::api::DynamicObject;
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use serde_json::Value;

/// gitplane syncs into the cluster it runs: Argo CD's name of that destination.
pub const IN_CLUSTER: &str = "https://kubernetes.default.svc";

/// The Applications the collector reads: the latest syncer's store.
static APPS: Mutex<Option<Store<DynamicObject>>> = Mutex::new(None);
static REGISTER: Once = Once::new();

/// Makes `argocd_app_info` show the Applications of `store` (registering the collector the
/// first time).
pub fn collect(store: Store<DynamicObject>) {
    *APPS.lock().unwrap_or_else(|p| p.into_inner()) = Some(store);
    REGISTER.call_once(|| telemetry::register_collector(Box::new(AppInfo)));
    telemetry::argocd::metrics();
}

/// The labels of `argocd_app_info` for one Application.
pub fn info_labels(app: &Value) -> Vec<(&'static str, String)> {
    let text = |v: &Value, path: &str| v.pointer(path).and_then(Value::as_str).map(str::to_string);
    let status = |path: &str| text(app, path).unwrap_or_else(|| "Unknown".into());
    vec![
        ("name", app.name().unwrap_or("").to_string()),
        ("namespace", app.namespace().unwrap_or("").to_string()),
        ("project", "default".into()),
        (
            "repo",
            text(app, "/spec/source/repoURL").unwrap_or_default(),
        ),
        ("dest_server", IN_CLUSTER.into()),
        (
            "dest_namespace",
            text(app, "/spec/destination/namespace").unwrap_or_default(),
        ),
        ("sync_status", status("/status/sync/status")),
        ("health_status", status("/status/health/status")),
        (
            "autosync_enabled",
            app.pointer("/spec/syncPolicy/automated")
                .is_some_and(|a| !a.is_null())
                .to_string(),
        ),
    ]
}

/// The `argocd_app_info` collector.
#[derive(Debug)]
struct AppInfo;

impl Collector for AppInfo {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(store) = APPS.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
            return Ok(());
        };
        let apps: Vec<Value> = store
            .state()
            .iter()
            .filter_map(|a| serde_json::to_value(&**a).ok())
            .collect();
        let mut family = encoder.encode_descriptor(
            "argocd_app_info",
            "Information about application.",
            None,
            MetricType::Gauge,
        )?;
        for app in &apps {
            let labels = info_labels(app);
            ConstGauge::new(1i64).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_application_gives_argo_cds_info_labels() {
        let app = json!({
            "metadata": {"name": "web"},
            "spec": {
                "source": {"repoURL": "/srv/repo"},
                "destination": {"namespace": "shop"},
                "syncPolicy": {"automated": {"prune": true}},
            },
            "status": {"sync": {"status": "Synced"}, "health": {"status": "Degraded"}},
        });
        let labels = info_labels(&app);
        let get = |k: &str| {
            labels
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("name"), Some("web"));
        assert_eq!(get("repo"), Some("/srv/repo"));
        assert_eq!(get("dest_namespace"), Some("shop"));
        assert_eq!(get("sync_status"), Some("Synced"));
        assert_eq!(get("health_status"), Some("Degraded"));
        assert_eq!(get("autosync_enabled"), Some("true"));
        let bare = info_labels(&json!({"metadata": {"name": "new"}}));
        assert!(bare.contains(&("sync_status", "Unknown".into())));
        assert!(bare.contains(&("autosync_enabled", "false".into())));
    }
}
