//! The Job controller: runs pods to completion.
//!
//! Per Job: its pods (controller reference, labels `batch.kubernetes.io/job-name` and
//! `batch.kubernetes.io/controller-uid`) are counted (active, ready, succeeded, failed); the
//! pure [`decide`] says how many pods to start or stop, or that the Job is finished:
//! `Complete` when `completions` pods succeeded (or, without `completions`, when one succeeded
//! and none is active), `Failed` with `BackoffLimitExceeded` when more than `backoffLimit` pods
//! failed or `DeadlineExceeded` after `activeDeadlineSeconds`. A new pod after failures waits
//! the pod-failure back-off (base × 2^(failures-1), at most 6 minutes). A finished Job with
//! `ttlSecondsAfterFinished` is deleted that long after it finished. Only `NonIndexed`
//! completion is supported; an `Indexed` Job gets a warning Event and is left alone.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;

use apimachinery::pod;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use serde_json::json;

use super::expectations::Expectations;
use super::workload::{self, Events, PodName};
use super::{Context, Error, key_of};

/// Label with the Job's name on its pods.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// Label with the Job's uid on its pods.
pub const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";

/// What the controller knows about one Job at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobState {
    /// `spec.parallelism`.
    pub parallelism: i32,
    /// `spec.completions` (`None`: a work queue).
    pub completions: Option<i32>,
    /// `spec.backoffLimit`.
    pub backoff_limit: i32,
    /// `spec.activeDeadlineSeconds`.
    pub active_deadline: Option<i64>,
    /// Seconds since `status.startTime`.
    pub elapsed: i64,
    /// Pods running or starting.
    pub active: i32,
    /// Pods that succeeded.
    pub succeeded: i32,
    /// Pods that failed.
    pub failed: i32,
}

/// What to do with a Job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Keep going: start `create` pods, stop `delete` active ones.
    Run {
        /// Pods to start.
        create: i32,
        /// Active pods to stop.
        delete: i32,
    },
    /// Every completion is done.
    Complete,
    /// The Job failed; its active pods are stopped.
    Failed {
        /// `BackoffLimitExceeded` or `DeadlineExceeded`.
        reason: &'static str,
        /// The condition's message.
        message: &'static str,
    },
}

/// How many pods to start or stop now, or how the Job ends (Kubernetes' syncJob for
/// NonIndexed Jobs).
pub fn decide(s: &JobState) -> Decision {
    if s.failed > s.backoff_limit {
        return Decision::Failed {
            reason: "BackoffLimitExceeded",
            message: "Job has reached the specified backoff limit",
        };
    }
    if s.active_deadline.is_some_and(|d| s.elapsed >= d) {
        return Decision::Failed {
            reason: "DeadlineExceeded",
            message: "Job was active longer than specified deadline",
        };
    }
    let want = match s.completions {
        Some(c) if s.succeeded >= c => return Decision::Complete,
        Some(c) => s.parallelism.min(c - s.succeeded),
        None if s.succeeded > 0 && s.active == 0 => return Decision::Complete,
        // Once one pod of a work queue succeeded, no new pod starts; the others finish.
        None if s.succeeded > 0 => s.active.min(s.parallelism),
        None => s.parallelism,
    }
    .max(0);
    Decision::Run {
        create: (want - s.active).max(0),
        delete: (s.active - want).max(0),
    }
}

/// The delay before a new pod after `failures` failed ones (Kubernetes: 10 s doubling, at most
/// 6 minutes).
pub fn backoff(base: Duration, failures: i32) -> Duration {
    if failures <= 0 || base.is_zero() {
        return Duration::ZERO;
    }
    let factor = 1u32 << (failures - 1).min(16);
    base.saturating_mul(factor).min(Duration::from_secs(360))
}

/// Runs the Job controller until the context stops.
pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let (job_informer, pod_informer) = (ctx.informer::<Job>(), ctx.informer::<Pod>());
    let controller = Controller::for_stream(job_informer.subscribe(), job_informer.store())
        .owns_stream(pod_informer.subscribe());
    ctx.synced(&job_informer).await?;
    ctx.synced(&pod_informer).await?;
    let state = Arc::new(State {
        pods: pod_informer.store(),
        expectations: Expectations::default(),
    });
    ctx.drive(controller, move |job, ctx| {
        reconcile(job, ctx, state.clone()).boxed()
    })
    .await;
    Ok(())
}

/// The shared pod store and the expectations of the pods created and deleted.
struct State {
    pods: Store<Pod>,
    expectations: Expectations,
}

fn condition_true<'a>(status: &'a JobStatus, kind: &str) -> Option<&'a JobCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == kind && c.status == "True")
}

/// When a Job finished (its Complete or Failed condition), if it did.
pub fn finished_at(status: &JobStatus) -> Option<jiff::Timestamp> {
    let cond = condition_true(status, "Complete").or_else(|| condition_true(status, "Failed"))?;
    cond.last_transition_time
        .as_ref()
        .map(|t| t.0)
        .or_else(|| status.completion_time.as_ref().map(|t| t.0))
        .or(Some(jiff::Timestamp::UNIX_EPOCH))
}

fn pod_finished_at(pod: &Pod) -> Option<jiff::Timestamp> {
    let status = pod.status.as_ref()?;
    status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max()
        .or_else(|| {
            status
                .conditions
                .iter()
                .flatten()
                .filter_map(|c| c.last_transition_time.as_ref())
                .map(|t| t.0)
                .max()
        })
}

fn seconds_between(from: jiff::Timestamp, to: jiff::Timestamp) -> i64 {
    to.as_second() - from.as_second()
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Context>, store: Arc<State>) -> Result<Action, Error> {
    let events = Events(&ctx);
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let now = jiff::Timestamp::now();
    let ns = job.namespace().unwrap_or_else(|| "default".into());
    let name = job.name_any();
    let uid = job.uid().unwrap_or_default();
    let spec = job.spec.clone().unwrap_or_default();
    let status = job.status.clone().unwrap_or_default();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);

    if let Some(done) = finished_at(&status) {
        let Some(ttl) = spec.ttl_seconds_after_finished else {
            return Ok(Action::await_change());
        };
        let expires = seconds_between(now, done) + i64::from(ttl);
        if expires > 0 {
            return Ok(Action::requeue(Duration::from_secs(expires as u64)));
        }
        // As Kubernetes' TTL-after-finished controller: foreground, so the pods go first.
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            ..DeleteParams::default()
        };
        match jobs.delete(&name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        return Ok(Action::await_change());
    }
    if spec.completion_mode.as_deref() == Some("Indexed") {
        events
            .warning(
                job.as_ref(),
                "Unsupported",
                "completionMode Indexed is not supported by gitplane yet",
            )
            .await;
        return Ok(Action::await_change());
    }

    if !workload::selector_usable(&ctx, job.as_ref(), spec.selector.as_ref()) {
        return Ok(Action::await_change());
    }
    let key = key_of(job.as_ref());
    if !store.expectations.satisfied(&key, &ns, &store.pods) {
        // The store has not shown this Job's last creates and deletes: its pod change will
        // bring it back.
        return Ok(Action::await_change());
    }
    let pods = workload::stored_pods(&store.pods, &ns, spec.selector.as_ref(), &uid);
    let mut active: Vec<&Pod> = pods.iter().filter(|p| pod::active(p)).collect();
    let count = |ph: &str| pods.iter().filter(|p| pod::phase(p) == ph).count() as i32;
    let succeeded = count("Succeeded").max(status.succeeded.unwrap_or(0));
    let failed = count("Failed").max(status.failed.unwrap_or(0));
    let start = status.start_time.as_ref().map(|t| t.0).unwrap_or(now);
    let suspended = spec.suspend == Some(true);
    let state = JobState {
        parallelism: if suspended {
            0
        } else {
            spec.parallelism.unwrap_or(1)
        },
        completions: spec.completions,
        backoff_limit: spec.backoff_limit.unwrap_or(6),
        active_deadline: spec.active_deadline_seconds,
        elapsed: seconds_between(start, now),
        active: active.len() as i32,
        succeeded,
        failed,
    };
    let decision = decide(&state);
    let mut requeue: Option<Duration> = spec
        .active_deadline_seconds
        .map(|d| Duration::from_secs((d - state.elapsed).max(1) as u64));

    let mut to_delete = match &decision {
        Decision::Run { delete, .. } => *delete as usize,
        _ => active.len(),
    };
    // Stop not-ready pods first, then the youngest.
    active.sort_by_key(|p| (pod::ready(p), std::cmp::Reverse(p.creation_timestamp())));
    for p in active.iter().take(to_delete) {
        match pods_api
            .delete(&p.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => {
                store.expectations.expect(
                    &key,
                    Vec::new(),
                    vec![(p.name_any(), p.uid().unwrap_or_default())],
                );
                events
                    .normal(
                        job.as_ref(),
                        "SuccessfulDelete",
                        &format!("Deleted pod: {}", p.name_any()),
                    )
                    .await
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    to_delete = to_delete.min(active.len());
    let mut active_now = active.len() - to_delete;

    if let Decision::Run { create, .. } = decision
        && create > 0
    {
        let last_failure = pods
            .iter()
            .filter(|p| pod::phase(p) == "Failed")
            .filter_map(pod_finished_at)
            .max();
        let wait = backoff(ctx.config.job_backoff_base, failed);
        let ready_at =
            last_failure.map(|t| t + jiff::SignedDuration::try_from(wait).unwrap_or_default());
        match ready_at.filter(|t| *t > now) {
            Some(t) => {
                let left = Duration::from_millis(
                    (t.as_millisecond() - now.as_millisecond()).max(1) as u64,
                );
                requeue = Some(requeue.map_or(left, |r| r.min(left)));
            }
            None => {
                let template = spec.template.clone();
                for _ in 0..create {
                    let labels = [
                        (JOB_NAME_LABEL.to_string(), name.clone()),
                        (CONTROLLER_UID_LABEL.to_string(), uid.clone()),
                        ("job-name".to_string(), name.clone()),
                        ("controller-uid".to_string(), uid.clone()),
                    ]
                    .into_iter()
                    .collect();
                    let pod = workload::pod_from_template(
                        job.as_ref(),
                        &template,
                        labels,
                        PodName::Prefix(format!("{name}-")),
                    );
                    match pods_api.create(&ctx.post_params(), &pod).await {
                        Ok(p) => {
                            active_now += 1;
                            store
                                .expectations
                                .expect(&key, vec![p.name_any()], Vec::new());
                            events
                                .normal(
                                    job.as_ref(),
                                    "SuccessfulCreate",
                                    &format!("Created pod: {}", p.name_any()),
                                )
                                .await;
                        }
                        Err(e) => {
                            events
                                .warning(
                                    job.as_ref(),
                                    "FailedCreate",
                                    &format!("Error creating: {e}"),
                                )
                                .await;
                            return Err(e.into());
                        }
                    }
                }
            }
        }
    }

    let ready = active.iter().filter(|p| pod::ready(p)).count() as i32;
    let mut conditions = status.conditions.clone().unwrap_or_default();
    let mut completion_time = status.completion_time.clone();
    let stamp = Time(now);
    let mut finished = false;
    match &decision {
        Decision::Complete => {
            conditions.push(JobCondition {
                type_: "Complete".into(),
                status: "True".into(),
                last_probe_time: Some(stamp.clone()),
                last_transition_time: Some(stamp.clone()),
                reason: Some("CompletionsReached".into()),
                message: Some("Reached expected number of succeeded pods".into()),
            });
            completion_time = Some(stamp.clone());
            finished = true;
            events
                .normal(job.as_ref(), "Completed", "Job completed")
                .await;
        }
        Decision::Failed { reason, message } => {
            conditions.push(JobCondition {
                type_: "Failed".into(),
                status: "True".into(),
                last_probe_time: Some(stamp.clone()),
                last_transition_time: Some(stamp.clone()),
                reason: Some((*reason).into()),
                message: Some((*message).into()),
            });
            finished = true;
            events.warning(job.as_ref(), reason, message).await;
        }
        Decision::Run { .. } => {}
    }
    let new_status = JobStatus {
        active: Some(if finished { 0 } else { active_now as i32 }),
        ready: Some(if finished { 0 } else { ready }),
        succeeded: Some(succeeded),
        failed: Some(failed),
        start_time: Some(status.start_time.clone().unwrap_or(Time(start))),
        completion_time,
        conditions: (!conditions.is_empty()).then_some(conditions),
        ..status.clone()
    };
    if new_status != status {
        jobs.patch_status(
            &name,
            &ctx.patch_params(),
            &Patch::Merge(json!({ "status": new_status })),
        )
        .await?;
    }
    if finished {
        return Ok(match spec.ttl_seconds_after_finished {
            Some(ttl) => Action::requeue(Duration::from_secs(u64::try_from(ttl).unwrap_or(0))),
            None => Action::await_change(),
        });
    }
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(
        parallelism: i32,
        completions: Option<i32>,
        active: i32,
        succeeded: i32,
        failed: i32,
    ) -> JobState {
        JobState {
            parallelism,
            completions,
            backoff_limit: 2,
            active_deadline: None,
            elapsed: 0,
            active,
            succeeded,
            failed,
        }
    }

    fn check(s: JobState, expected: Decision) {
        assert_eq!(decide(&s), expected, "{s:?}");
    }

    fn run(create: i32, delete: i32) -> Decision {
        Decision::Run { create, delete }
    }

    #[test]
    fn pods_to_start_follow_parallelism_and_remaining_completions() {
        check(state(1, Some(1), 0, 0, 0), run(1, 0));
        check(state(2, Some(5), 0, 0, 0), run(2, 0));
        check(state(2, Some(5), 1, 0, 0), run(1, 0));
        check(state(3, Some(5), 0, 4, 0), run(1, 0));
        check(state(3, Some(5), 3, 3, 0), run(0, 1));
        check(state(2, Some(5), 2, 0, 1), run(0, 0));
        check(state(0, Some(5), 2, 0, 0), run(0, 2));
    }

    #[test]
    fn a_job_completes_when_enough_pods_succeeded() {
        check(state(2, Some(3), 0, 3, 0), Decision::Complete);
        check(state(2, Some(3), 1, 3, 1), Decision::Complete);
    }

    #[test]
    fn a_work_queue_completes_when_one_succeeded_and_none_is_active() {
        check(state(3, None, 0, 0, 0), run(3, 0));
        check(state(3, None, 2, 1, 0), run(0, 0));
        check(state(3, None, 0, 1, 0), Decision::Complete);
    }

    #[test]
    fn more_failures_than_the_backoff_limit_fail_the_job() {
        check(state(1, Some(1), 0, 0, 2), run(1, 0));
        check(
            state(1, Some(1), 0, 0, 3),
            Decision::Failed {
                reason: "BackoffLimitExceeded",
                message: "Job has reached the specified backoff limit",
            },
        );
    }

    #[test]
    fn the_active_deadline_fails_the_job() {
        let mut s = state(1, Some(1), 1, 0, 0);
        s.active_deadline = Some(10);
        s.elapsed = 9;
        check(s.clone(), run(0, 0));
        s.elapsed = 10;
        check(
            s,
            Decision::Failed {
                reason: "DeadlineExceeded",
                message: "Job was active longer than specified deadline",
            },
        );
    }

    #[test]
    fn the_failure_backoff_doubles_up_to_six_minutes() {
        let base = Duration::from_secs(10);
        assert_eq!(backoff(base, 0), Duration::ZERO);
        assert_eq!(backoff(base, 1), Duration::from_secs(10));
        assert_eq!(backoff(base, 3), Duration::from_secs(40));
        assert_eq!(backoff(base, 10), Duration::from_secs(360));
        assert_eq!(backoff(Duration::ZERO, 5), Duration::ZERO);
    }
}
