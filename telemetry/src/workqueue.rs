//! The controllers' work queue families, as client-go's workqueue names them (`name` is the
//! controller): `workqueue_depth`, `workqueue_adds_total`, `workqueue_queue_duration_seconds`,
//! `workqueue_work_duration_seconds`, `workqueue_retries_total`. The controller-manager's one
//! driver of every controller records them (see `reconciler::controllers::Context::drive`).

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

/// A queue's label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// The controller (`deployment`, `replicaset`...).
    pub name: &'static str,
}

type HistogramFamily = Family<QueueLabels, Histogram, fn() -> Histogram>;

/// The work queues' families.
#[derive(Debug)]
pub struct Metrics {
    /// `workqueue_depth`.
    pub depth: Family<QueueLabels, Gauge>,
    /// `workqueue_adds_total`.
    pub adds: Family<QueueLabels, Counter>,
    /// `workqueue_queue_duration_seconds`.
    pub queue_duration: HistogramFamily,
    /// `workqueue_work_duration_seconds`.
    pub work_duration: HistogramFamily,
    /// `workqueue_retries_total`.
    pub retries: Family<QueueLabels, Counter>,
}

fn histogram() -> Histogram {
    // client-go's: 10 ns to 10 s, by tens.
    Histogram::new(crate::exponential(1e-8, 10.0, 10))
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let m = Metrics {
        depth: Family::default(),
        adds: Family::default(),
        queue_duration: Family::new_with_constructor(histogram),
        work_duration: Family::new_with_constructor(histogram),
        retries: Family::default(),
    };
    crate::register(
        "workqueue_depth",
        "Current depth of workqueue",
        m.depth.clone(),
    );
    crate::register(
        "workqueue_adds",
        "Total number of adds handled by workqueue",
        m.adds.clone(),
    );
    crate::register(
        "workqueue_queue_duration_seconds",
        "How long in seconds an item stays in workqueue before being requested.",
        m.queue_duration.clone(),
    );
    crate::register(
        "workqueue_work_duration_seconds",
        "How long in seconds processing an item from workqueue takes.",
        m.work_duration.clone(),
    );
    crate::register(
        "workqueue_retries",
        "Total number of retries handled by workqueue",
        m.retries.clone(),
    );
    m
});

/// The work queues' families, registered on first call.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// One controller's queue: cheap handles to its series.
#[derive(Clone, Debug)]
pub struct Queue {
    /// `workqueue_depth` of this queue.
    pub depth: Gauge,
    adds: Counter,
    queue_duration: Histogram,
    work_duration: Histogram,
    retries: Counter,
}

impl Queue {
    /// The series of the controller `name`.
    pub fn new(name: &'static str) -> Queue {
        let m = metrics();
        let labels = QueueLabels { name };
        Queue {
            depth: m.depth.get_or_create_owned(&labels),
            adds: m.adds.get_or_create_owned(&labels),
            queue_duration: m.queue_duration.get_or_create_owned(&labels),
            work_duration: m.work_duration.get_or_create_owned(&labels),
            retries: m.retries.get_or_create_owned(&labels),
        }
    }

    /// An item was added (a trigger or a retry).
    pub fn add(&self) {
        self.adds.inc();
    }

    /// An item was handed to a worker after waiting `waited`.
    pub fn started(&self, waited: Duration) {
        self.queue_duration.observe(waited.as_secs_f64());
    }

    /// A worker finished an item after `took`.
    pub fn done(&self, took: Duration) {
        self.work_duration.observe(took.as_secs_f64());
    }

    /// A failed item was put back with back-off.
    pub fn retry(&self) {
        self.retries.inc();
    }
}
