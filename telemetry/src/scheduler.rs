//! The scheduler's families, as kube-scheduler names them: `scheduler_schedule_attempts_total`,
//! `scheduler_scheduling_attempt_duration_seconds` and `scheduler_pending_pods`.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

/// An attempt's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    /// `scheduled`, `unschedulable` or `error`.
    pub result: &'static str,
    /// The scheduler's name (`default-scheduler`).
    pub profile: String,
}

/// A queue's label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// `active`, `backoff`, `unschedulable` (kube-scheduler's `gated` does not exist here).
    pub queue: &'static str,
}

/// The scheduler's families.
#[derive(Debug)]
pub struct Metrics {
    /// `scheduler_schedule_attempts_total`.
    pub attempts: Family<AttemptLabels, Counter>,
    /// `scheduler_scheduling_attempt_duration_seconds`: the algorithm (filter, score) of one
    /// attempt; binding is asynchronous and not in it.
    pub attempt_duration: Family<AttemptLabels, Histogram, fn() -> Histogram>,
    /// `scheduler_pending_pods`.
    pub pending: Family<QueueLabels, Gauge>,
}

fn attempt_histogram() -> Histogram {
    // kube-scheduler's: 1 ms doubling, 15 buckets.
    Histogram::new(crate::exponential(0.001, 2.0, 15))
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let m = Metrics {
        attempts: Family::default(),
        attempt_duration: Family::new_with_constructor(attempt_histogram),
        pending: Family::default(),
    };
    crate::register(
        "scheduler_schedule_attempts",
        "Number of attempts to schedule pods, by the result. 'unschedulable' means a pod could \
         not be scheduled, while 'error' means an internal scheduler problem.",
        m.attempts.clone(),
    );
    crate::register(
        "scheduler_scheduling_attempt_duration_seconds",
        "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
        m.attempt_duration.clone(),
    );
    crate::register(
        "scheduler_pending_pods",
        "Number of pending pods, by the queue type. 'active' means number of pods in activeQ; \
         'backoff' means number of pods in backoffQ; 'unschedulable' means number of pods in \
         unschedulablePods.",
        m.pending.clone(),
    );
    m
});

/// The scheduler's families, registered on first call.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    /// Records one attempt of `profile` that ended with `result` after `elapsed`.
    pub fn attempt(&self, profile: &str, result: &'static str, elapsed: Option<Duration>) {
        let labels = AttemptLabels {
            result,
            profile: profile.to_string(),
        };
        self.attempts.get_or_create(&labels).inc();
        if let Some(elapsed) = elapsed {
            self.attempt_duration
                .get_or_create(&labels)
                .observe(elapsed.as_secs_f64());
        }
    }

    /// Creates the attempt series of `profile` at 0, so that they exist before the first pod.
    pub fn init_profile(&self, profile: &str) {
        for result in ["scheduled", "unschedulable", "error"] {
            let _ = self.attempts.get_or_create(&AttemptLabels {
                result,
                profile: profile.to_string(),
            });
        }
    }

    /// Sets the pending pods of each queue.
    pub fn set_pending(&self, active: usize, backoff: usize, unschedulable: usize) {
        for (queue, n) in [
            ("active", active),
            ("backoff", backoff),
            ("unschedulable", unschedulable),
        ] {
            self.pending
                .get_or_create(&QueueLabels { queue })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}
