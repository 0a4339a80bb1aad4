//! The syncer's families, as Argo CD names them: `argocd_app_sync_total`,
//! `argocd_app_reconcile`, `argocd_git_request_total`, `argocd_git_request_duration_seconds`,
//! `argocd_git_fetch_fail_total`, and the notifications' `argocd_notifications_deliveries_total`.
//! `argocd_app_info` is computed at each scrape from the syncer's Applications (its collector
//! lives in the syncer, which has them).

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

/// One sync's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncLabels {
    /// The Application.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Always `default` (gitplane has no AppProjects).
    pub project: &'static str,
    /// `Succeeded`, `Failed`, `Error`.
    pub phase: String,
    /// The destination cluster.
    pub dest_server: String,
}

/// A reconcile's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// The Application's namespace.
    pub namespace: String,
    /// The destination cluster.
    pub dest_server: String,
}

/// A Git request's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GitLabels {
    /// The repository URL.
    pub repo: String,
    /// `fetch` (gitplane's mirrors fetch; Argo CD also counts `ls-remote`).
    pub request_type: &'static str,
}

/// A notification delivery's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    /// The trigger (`on-sync-failed`).
    pub trigger: String,
    /// The service (`webhook.NAME`, `slack.NAME`, `github`...).
    pub notifier: String,
    /// `true` when delivered.
    pub succeeded: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The syncer's families.
#[derive(Debug)]
pub struct Metrics {
    /// `argocd_app_sync_total`.
    pub syncs: Family<SyncLabels, Counter>,
    /// `argocd_app_reconcile` (seconds).
    pub reconcile: HistogramFamily<ReconcileLabels>,
    /// `argocd_git_request_total`.
    pub git_requests: Family<GitLabels, Counter>,
    /// `argocd_git_request_duration_seconds`.
    pub git_duration: HistogramFamily<GitLabels>,
    /// `argocd_git_fetch_fail_total`.
    pub git_failures: Family<GitLabels, Counter>,
    /// `argocd_notifications_deliveries_total`.
    pub deliveries: Family<DeliveryLabels, Counter>,
}

fn reconcile_histogram() -> Histogram {
    // Argo CD's buckets.
    Histogram::new([0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0])
}

fn git_histogram() -> Histogram {
    Histogram::new([0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 10.0, 20.0])
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let m = Metrics {
        syncs: Family::default(),
        reconcile: Family::new_with_constructor(reconcile_histogram),
        git_requests: Family::default(),
        git_duration: Family::new_with_constructor(git_histogram),
        git_failures: Family::default(),
        deliveries: Family::default(),
    };
    crate::register(
        "argocd_app_sync",
        "Number of application syncs.",
        m.syncs.clone(),
    );
    crate::register(
        "argocd_app_reconcile",
        "Application reconciliation performance in seconds.",
        m.reconcile.clone(),
    );
    crate::register(
        "argocd_git_request",
        "Number of git requests performed by repo server",
        m.git_requests.clone(),
    );
    crate::register(
        "argocd_git_request_duration_seconds",
        "Git requests duration seconds.",
        m.git_duration.clone(),
    );
    crate::register(
        "argocd_git_fetch_fail",
        "Number of git fetch requests failures by repo server",
        m.git_failures.clone(),
    );
    crate::register(
        "argocd_notifications_deliveries",
        "Number of delivered notifications.",
        m.deliveries.clone(),
    );
    m
});

/// The syncer's families, registered on first call.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    /// Records one Git fetch of `repo`.
    pub fn git_fetch(&self, repo: &str, elapsed: Duration, failed: bool) {
        let labels = GitLabels {
            repo: repo.to_string(),
            request_type: "fetch",
        };
        self.git_requests.get_or_create(&labels).inc();
        self.git_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if failed {
            self.git_failures.get_or_create(&labels).inc();
        }
    }
}
