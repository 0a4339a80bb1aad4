//! The replica count one resource metric asks for (pure): Kubernetes' replica calculator for
//! `Resource` metrics, with its handling of pods that are ignored (deleted, failed), unready
//! (pending; for CPU, not Ready yet or Ready too recently for a full metrics window) and
//! missing metrics, and its tolerance.
//!
//! Usage ratio = current / target, where current is the summed usage of the ready pods with
//! metrics over their summed requests (`Utilization`) or their average usage
//! (`AverageValue`). Within the tolerance nothing changes. Otherwise, when no pod is unready
//! or missing, the proposal is `ceil(ratio × ready pods)`; else the ratio is computed again
//! with missing pods assumed at 100 % of their request (the target for `AverageValue`) when
//! scaling down and at 0 when scaling up, and unready pods at 0 when scaling up, and the
//! change is dropped if that flips its direction or lands within the tolerance.

use std::collections::BTreeMap;

/// CPU readings of a pod started less than this long ago are trusted only once a full metrics
/// window has passed since it turned Ready (`--horizontal-pod-autoscaler-cpu-initialization-period`).
pub const CPU_INITIALIZATION_PERIOD: f64 = 300.0;
/// After that, a not-Ready pod whose readiness last changed within this long of its start is
/// still treated as unready (`--horizontal-pod-autoscaler-initial-readiness-delay`).
pub const INITIAL_READINESS_DELAY: f64 = 30.0;
/// Default tolerance (`--horizontal-pod-autoscaler-tolerance`).
pub const TOLERANCE: f64 = 0.1;

/// A pod's `Ready` condition.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Readiness {
    /// `status: "True"`.
    pub ready: bool,
    /// `lastTransitionTime`, seconds since the epoch.
    pub since: f64,
}

/// A metric of a pod: its usage (thousandths of a unit: millicores, millibytes), when it was
/// measured and over which window (seconds).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Metric {
    /// Usage, thousandths of a unit.
    pub milli: i64,
    /// When measured, seconds since the epoch.
    pub at: f64,
    /// The window it is averaged over, seconds.
    pub window: f64,
}

/// One pod the scale target's selector matches, as the calculator sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct PodSample {
    /// The pod's name.
    pub name: String,
    /// `status.phase`.
    pub phase: String,
    /// It has a deletionTimestamp.
    pub deleting: bool,
    /// Its Ready condition, if any.
    pub readiness: Option<Readiness>,
    /// `status.startTime`, seconds since the epoch.
    pub started: Option<f64>,
    /// Summed requests of its containers for the resource (thousandths), or the name of the
    /// first container without one.
    pub request: Result<i64, String>,
    /// Its metric, if the metrics API had one.
    pub metric: Option<Metric>,
}

/// What the metric targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// `averageUtilization`: percent of the pods' requests.
    Utilization(i32),
    /// `averageValue`: usage per pod, thousandths of a unit.
    AverageValue(i64),
}

/// The calculator's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proposal {
    /// Replicas asked for.
    pub replicas: i32,
    /// Current utilization in percent of requests (`Utilization` targets).
    pub utilization: Option<i32>,
    /// Current average usage per pod, thousandths of a unit.
    pub average_milli: i64,
}

/// Why no proposal could be made (messages as Kubernetes words them).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CalcError {
    /// The selector matched no pod.
    #[error("no pods returned by selector while calculating replica count")]
    NoPods,
    /// A container has no request for the resource (only `Utilization` needs them).
    #[error("missing request for {resource} in container {container} of Pod {pod}")]
    MissingRequest {
        /// The resource.
        resource: String,
        /// The container.
        container: String,
        /// The pod.
        pod: String,
    },
    /// Every pod with a metric was left out.
    #[error("did not receive metrics for targeted pods (pods might be unready)")]
    NoReadyMetrics,
    /// The pods with metrics request nothing.
    #[error("no metrics returned matched known pods")]
    NoMatchingRequests,
}

/// How the pods were sorted.
struct Groups {
    ready: usize,
    /// Pods whose metric counts: name → usage.
    metrics: BTreeMap<String, i64>,
    unready: Vec<String>,
    missing: Vec<String>,
}

fn group(pods: &[PodSample], cpu: bool, now: f64) -> Groups {
    let mut g = Groups {
        ready: 0,
        metrics: BTreeMap::new(),
        unready: Vec::new(),
        missing: Vec::new(),
    };
    for pod in pods {
        if pod.deleting || pod.phase == "Failed" {
            continue;
        }
        if pod.phase == "Pending" {
            g.unready.push(pod.name.clone());
            continue;
        }
        let Some(metric) = pod.metric else {
            g.missing.push(pod.name.clone());
            continue;
        };
        if cpu {
            let unready = match (pod.readiness, pod.started) {
                (Some(r), Some(started)) => {
                    if started + CPU_INITIALIZATION_PERIOD > now {
                        !r.ready || metric.at < r.since + metric.window
                    } else {
                        !r.ready && started + INITIAL_READINESS_DELAY > r.since
                    }
                }
                _ => true,
            };
            if unready {
                g.unready.push(pod.name.clone());
                continue;
            }
        }
        g.ready += 1;
        g.metrics.insert(pod.name.clone(), metric.milli);
    }
    g
}

/// (ratio, utilization percent, average usage) of `metrics` against `target`.
fn ratio(
    metrics: &BTreeMap<String, i64>,
    requests: &BTreeMap<&str, i64>,
    target: Target,
) -> Result<(f64, Option<i32>, i64), CalcError> {
    match target {
        Target::Utilization(percent) => {
            let (mut used, mut requested, mut n) = (0i64, 0i64, 0i64);
            for (pod, value) in metrics {
                if let Some(r) = requests.get(pod.as_str()) {
                    used += value;
                    requested += r;
                    n += 1;
                }
            }
            if requested == 0 {
                return Err(CalcError::NoMatchingRequests);
            }
            let utilization = (used * 100 / requested) as i32;
            Ok((
                f64::from(utilization) / f64::from(percent.max(1)),
                Some(utilization),
                used / n,
            ))
        }
        Target::AverageValue(per_pod) => {
            let n = metrics.len().max(1) as i64;
            let average = metrics.values().sum::<i64>() / n;
            Ok((average as f64 / per_pod.max(1) as f64, None, average))
        }
    }
}

/// The replicas `resource` asks for with `current` replicas, the target and the pods.
pub fn resource_replicas(
    current: i32,
    resource: &str,
    target: Target,
    pods: &[PodSample],
    now: f64,
    tolerance: f64,
) -> Result<Proposal, CalcError> {
    if pods.is_empty() {
        return Err(CalcError::NoPods);
    }
    let mut requests = BTreeMap::new();
    if let Target::Utilization(_) = target {
        for pod in pods {
            match &pod.request {
                Ok(r) => {
                    requests.insert(pod.name.as_str(), *r);
                }
                Err(container) => {
                    return Err(CalcError::MissingRequest {
                        resource: resource.to_string(),
                        container: container.clone(),
                        pod: pod.name.clone(),
                    });
                }
            }
        }
    }
    let mut g = group(pods, resource == "cpu", now);
    if g.metrics.is_empty() {
        return Err(CalcError::NoReadyMetrics);
    }
    let (usage_ratio, utilization, average_milli) = ratio(&g.metrics, &requests, target)?;
    let proposal = |replicas| Proposal {
        replicas,
        utilization,
        average_milli,
    };
    let scale_up_with_unready = !g.unready.is_empty() && usage_ratio > 1.0;
    if !scale_up_with_unready && g.missing.is_empty() {
        if (1.0 - usage_ratio).abs() <= tolerance {
            return Ok(proposal(current));
        }
        return Ok(proposal((usage_ratio * g.ready as f64).ceil() as i32));
    }
    for pod in &g.missing {
        let assumed = if usage_ratio < 1.0 {
            match target {
                Target::Utilization(_) => requests.get(pod.as_str()).copied().unwrap_or(0),
                Target::AverageValue(per_pod) => per_pod,
            }
        } else {
            0
        };
        g.metrics.insert(pod.clone(), assumed);
    }
    if scale_up_with_unready {
        for pod in &g.unready {
            g.metrics.insert(pod.clone(), 0);
        }
    }
    let (new_ratio, _, _) = ratio(&g.metrics, &requests, target)?;
    if (1.0 - new_ratio).abs() <= tolerance
        || (usage_ratio < 1.0 && new_ratio > 1.0)
        || (usage_ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok(proposal(current));
    }
    let replicas = (new_ratio * g.metrics.len() as f64).ceil() as i32;
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(proposal(current));
    }
    Ok(proposal(replicas))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: f64 = 10_000.0;

    /// A running pod, Ready long ago, requesting 500m, using `milli`.
    fn pod(name: &str, milli: Option<i64>) -> PodSample {
        PodSample {
            name: name.into(),
            phase: "Running".into(),
            deleting: false,
            readiness: Some(Readiness {
                ready: true,
                since: NOW - 1000.0,
            }),
            started: Some(NOW - 1000.0),
            request: Ok(500),
            metric: milli.map(|m| Metric {
                milli: m,
                at: NOW - 5.0,
                window: 10.0,
            }),
        }
    }

    fn check(current: i32, target: Target, pods: &[PodSample], expected: Result<i32, CalcError>) {
        let got =
            resource_replicas(current, "cpu", target, pods, NOW, TOLERANCE).map(|p| p.replicas);
        assert_eq!(got, expected, "{current} replicas, {target:?}, {pods:#?}");
    }

    #[test]
    fn utilization_scales_by_the_ratio_of_ready_pods() {
        let u = Target::Utilization(50);
        // 100% of requests against 50%: twice as many.
        check(2, u, &[pod("a", Some(500)), pod("b", Some(500))], Ok(4));
        // 10% against 50%: a fifth, rounded up.
        check(
            3,
            u,
            &[pod("a", Some(50)), pod("b", Some(50)), pod("c", Some(50))],
            Ok(1),
        );
        // 54% is within the tolerance of 50%.
        check(2, u, &[pod("a", Some(270)), pod("b", Some(270))], Ok(2));
        // 56% is not.
        check(2, u, &[pod("a", Some(280)), pod("b", Some(280))], Ok(3));
    }

    #[test]
    fn average_value_divides_the_average_usage_by_the_target() {
        let v = Target::AverageValue(100);
        check(2, v, &[pod("a", Some(300)), pod("b", Some(300))], Ok(6));
        let p = resource_replicas(
            2,
            "memory",
            v,
            &[pod("a", Some(300)), pod("b", Some(100))],
            NOW,
            TOLERANCE,
        )
        .expect("proposal");
        assert_eq!((p.replicas, p.average_milli, p.utilization), (4, 200, None));
    }

    #[test]
    fn missing_metrics_damp_the_change() {
        let u = Target::Utilization(50);
        // Scaling down: the pod without metrics counts as 100% of its request, which flips
        // the direction: no change.
        check(
            3,
            u,
            &[pod("a", Some(100)), pod("b", Some(100)), pod("c", None)],
            Ok(3),
        );
        // Scaling up: it counts as 0: (500+500+0)/1500 = 66% → ceil(1.32 × 3) = 4.
        check(
            3,
            u,
            &[pod("a", Some(500)), pod("b", Some(500)), pod("c", None)],
            Ok(4),
        );
    }

    #[test]
    fn unready_and_pending_pods_count_as_idle_when_scaling_up() {
        let u = Target::Utilization(50);
        let mut fresh = pod("c", Some(500));
        fresh.started = Some(NOW - 20.0);
        fresh.readiness = Some(Readiness {
            ready: true,
            since: NOW - 8.0,
        });
        // Ready 8 s ago with a 10 s window: unready, counted as 0 while scaling up.
        check(
            3,
            u,
            &[pod("a", Some(500)), pod("b", Some(500)), fresh.clone()],
            Ok(4),
        );
        let mut pending = pod("d", None);
        pending.phase = "Pending".into();
        check(2, u, &[pod("a", Some(500)), pending.clone()], Ok(2));
        check(2, u, &[pod("a", Some(1000)), pending], Ok(4));
        // Deleted and failed pods are ignored.
        let mut gone = pod("e", Some(0));
        gone.deleting = true;
        let mut failed = pod("f", Some(0));
        failed.phase = "Failed".into();
        check(1, u, &[pod("a", Some(500)), gone, failed], Ok(2));
    }

    #[test]
    fn errors_name_what_is_missing() {
        let u = Target::Utilization(50);
        check(1, u, &[], Err(CalcError::NoPods));
        let mut no_request = pod("a", Some(5));
        no_request.request = Err("burn".into());
        check(
            1,
            u,
            &[no_request],
            Err(CalcError::MissingRequest {
                resource: "cpu".into(),
                container: "burn".into(),
                pod: "a".into(),
            }),
        );
        check(1, u, &[pod("a", None)], Err(CalcError::NoReadyMetrics));
        let mut unrequested = pod("a", Some(5));
        unrequested.request = Ok(0);
        check(1, u, &[unrequested], Err(CalcError::NoMatchingRequests));
        assert_eq!(
            CalcError::MissingRequest {
                resource: "cpu".into(),
                container: "c".into(),
                pod: "p".into()
            }
            .to_string(),
            "missing request for cpu in container c of Pod p"
        );
    }
}
