//! The API server's families, as kube-apiserver names them: `apiserver_request_total`,
//! `apiserver_request_duration_seconds`, `apiserver_current_inflight_requests`,
//! `apiserver_dropped_requests_total` (the 429s of the in-flight limit),
//! `apiserver_longrunning_requests`, `apiserver_storage_objects`, and the storage backend's
//! `etcd_request_duration_seconds` and `etcd_request_errors_total` (for both backends, with
//! `backend` telling them apart).

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

/// Labels of a request, as kube-apiserver's `apiserver_request_*`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `GET`, `LIST`, `WATCH`, `POST`, `PUT`, `PATCH`, `DELETE`, `CONNECT` (upper case, as
    /// kube-apiserver reports them).
    pub verb: String,
    /// API group (empty for core and non-resource URLs).
    pub group: String,
    /// API version.
    pub version: String,
    /// Resource plural (empty for non-resource URLs).
    pub resource: String,
    /// Subresource.
    pub subresource: String,
    /// `cluster`, `namespace` or `resource` (one named object); empty for non-resource URLs.
    pub scope: String,
    /// Always `apiserver`.
    pub component: &'static str,
}

/// [`RequestLabels`] with the response's status code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    /// The request.
    #[prometheus(flatten)]
    pub request: RequestLabels,
    /// HTTP status code.
    pub code: String,
}

/// `readOnly` or `mutating`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// The request's budget.
    pub request_kind: &'static str,
}

/// A storage resource (`pods`, `deployments.apps`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    /// Plural, then `.group` unless core.
    pub resource: String,
}

/// A storage operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StorageLabels {
    /// `get`, `list`, `create`, `update`, `delete`, `watch`, `compact`.
    pub operation: &'static str,
    /// The resource the key belongs to (`pods`, `deployments.apps`).
    pub r#type: String,
    /// `embedded` or `etcd`.
    pub backend: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The API server's families.
#[derive(Debug)]
pub struct Metrics {
    /// `apiserver_request_total`.
    pub requests: Family<CodeLabels, Counter>,
    /// `apiserver_request_duration_seconds` (until the response's head for long-running
    /// requests).
    pub duration: HistogramFamily<RequestLabels>,
    /// `apiserver_current_inflight_requests`.
    pub inflight: Family<KindLabels, Gauge>,
    /// `apiserver_dropped_requests_total`.
    pub dropped: Family<KindLabels, Counter>,
    /// `apiserver_longrunning_requests`: watches and streams open now.
    pub longrunning: Family<RequestLabels, Gauge>,
    /// `apiserver_storage_objects`, refreshed at each scrape.
    pub storage_objects: Family<ResourceLabels, Gauge>,
    /// `etcd_request_duration_seconds`.
    pub storage_duration: HistogramFamily<StorageLabels>,
    /// `etcd_request_errors_total`: failed storage operations (a conflict, a missing key or
    /// an existing one is an answer, not an error).
    pub storage_errors: Family<StorageLabels, Counter>,
}

/// kube-apiserver's request duration buckets.
const REQUEST_BUCKETS: &[f64] = &[
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

/// kube-apiserver's etcd request buckets.
const STORAGE_BUCKETS: &[f64] = &[
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_BUCKETS.iter().copied())
}

fn storage_histogram() -> Histogram {
    Histogram::new(STORAGE_BUCKETS.iter().copied())
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let m = Metrics {
        requests: Family::default(),
        duration: Family::new_with_constructor(request_histogram),
        inflight: Family::default(),
        dropped: Family::default(),
        longrunning: Family::default(),
        storage_objects: Family::default(),
        storage_duration: Family::new_with_constructor(storage_histogram),
        storage_errors: Family::default(),
    };
    crate::register(
        "apiserver_request",
        "Counter of apiserver requests broken out for each verb, group, version, resource, \
         scope, component, and HTTP response code.",
        m.requests.clone(),
    );
    crate::register(
        "apiserver_request_duration_seconds",
        "Response latency distribution in seconds for each verb, group, version, resource, \
         subresource, scope and component.",
        m.duration.clone(),
    );
    crate::register(
        "apiserver_current_inflight_requests",
        "Maximal number of currently used inflight request limit of this apiserver per \
         request kind.",
        m.inflight.clone(),
    );
    crate::register(
        "apiserver_dropped_requests",
        "Number of requests dropped with 'Try again later' response.",
        m.dropped.clone(),
    );
    crate::register(
        "apiserver_longrunning_requests",
        "Gauge of all active long-running apiserver requests broken out by verb, group, \
         version, resource, scope and component.",
        m.longrunning.clone(),
    );
    crate::register(
        "apiserver_storage_objects",
        "Number of stored objects at the time of last check split by kind.",
        m.storage_objects.clone(),
    );
    crate::register(
        "etcd_request_duration_seconds",
        "Storage request latency in seconds for each operation and object type.",
        m.storage_duration.clone(),
    );
    crate::register(
        "etcd_request_errors",
        "Storage failed request counts for each operation and object type.",
        m.storage_errors.clone(),
    );
    // The 429 counters exist from the start, so that `rate()` over them is 0, not absent.
    for read_only in [true, false] {
        let _ = m.dropped.get_or_create(&kind(read_only));
    }
    m
});

/// The API server's families, registered on first call.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    /// Counts a finished request (its response head) that took `elapsed`.
    pub fn request(&self, labels: &RequestLabels, code: u16, elapsed: Duration) {
        self.duration
            .get_or_create(labels)
            .observe(elapsed.as_secs_f64());
        self.requests
            .get_or_create(&CodeLabels {
                request: labels.clone(),
                code: code.to_string(),
            })
            .inc();
    }

    /// Counts a request refused by the in-flight limit.
    pub fn drop_request(&self, read_only: bool) {
        self.dropped.get_or_create(&kind(read_only)).inc();
    }

    /// Marks a request as holding an in-flight slot until the guard drops.
    pub fn inflight(&self, read_only: bool) -> GaugeGuard {
        GaugeGuard::new(self.inflight.get_or_create_owned(&kind(read_only)))
    }

    /// Marks a long-running request as open until the guard drops.
    pub fn longrunning(&self, labels: &RequestLabels) -> GaugeGuard {
        GaugeGuard::new(self.longrunning.get_or_create_owned(labels))
    }

    /// Sets `apiserver_storage_objects` of each (resource, objects) of `counts`.
    pub fn set_storage_objects(&self, counts: impl IntoIterator<Item = (String, usize)>) {
        for (resource, n) in counts {
            self.storage_objects
                .get_or_create(&ResourceLabels { resource })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Records one storage operation on `key` (`/registry/GROUP/PLURAL/...`).
    pub fn storage(
        &self,
        backend: &'static str,
        operation: &'static str,
        key: &str,
        elapsed: Duration,
        failed: bool,
    ) {
        let labels = StorageLabels {
            operation,
            r#type: resource_of_key(key),
            backend,
        };
        self.storage_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if failed {
            self.storage_errors.get_or_create(&labels).inc();
        }
    }
}

fn kind(read_only: bool) -> KindLabels {
    KindLabels {
        request_kind: if read_only { "readOnly" } else { "mutating" },
    }
}

/// The resource a storage key or prefix belongs to, as kube-apiserver names it:
/// `/registry/core/pods/ns/a` → `pods`, `/registry/apps/deployments/` → `deployments.apps`;
/// anything else is `other`.
pub fn resource_of_key(key: &str) -> String {
    let mut parts = key.trim_start_matches('/').split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("registry"), Some("core"), Some(plural)) if !plural.is_empty() => plural.into(),
        (Some("registry"), Some(group), Some(plural)) if !plural.is_empty() => {
            format!("{plural}.{group}")
        }
        _ => "other".into(),
    }
}

/// Holds a gauge one higher until dropped.
#[derive(Debug)]
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    /// Increments `gauge` until the guard drops.
    pub fn new(gauge: Gauge) -> GaugeGuard {
        gauge.inc();
        GaugeGuard(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(key: &str, expected: &str) {
        assert_eq!(resource_of_key(key), expected, "{key}");
    }

    #[test]
    fn storage_keys_name_their_resource_as_kubernetes_does() {
        check("/registry/core/pods/default/web-1", "pods");
        check("/registry/core/namespaces/", "namespaces");
        check("/registry/apps/deployments/default/web", "deployments.apps");
        check(
            "/registry/gitplane.io/applications/",
            "applications.gitplane.io",
        );
        check("/registry/", "other");
        check("/elsewhere/x/y", "other");
    }

    #[test]
    fn a_gauge_guard_counts_while_held() {
        let m = metrics();
        let labels = RequestLabels {
            verb: "WATCH".into(),
            group: "test.gitplane.io".into(),
            version: "v1".into(),
            resource: "guards".into(),
            subresource: String::new(),
            scope: "cluster".into(),
            component: "apiserver",
        };
        let a = m.longrunning(&labels);
        let b = m.longrunning(&labels);
        assert_eq!(m.longrunning.get_or_create(&labels).get(), 2);
        drop(a);
        drop(b);
        assert_eq!(m.longrunning.get_or_create(&labels).get(), 0);
    }
}
