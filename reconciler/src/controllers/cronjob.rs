//! The CronJob controller: starts Jobs on a schedule.
//!
//! Schedules are the standard five fields with names and the `@yearly`, `@monthly`, `@weekly`,
//! `@daily`/`@midnight`, `@hourly` macros (through the `croner` crate), in `spec.timeZone`, in
//! a `TZ=`/`CRON_TZ=` prefix, or else in UTC. Per CronJob: its Jobs (controller reference) give
//! `status.active` and `lastSuccessfulTime`, finished ones beyond the history limits are
//! deleted, and [`decide`] says whether a Job starts now: the most recent unmet schedule time
//! since `lastScheduleTime` (or creation), not older than `startingDeadlineSeconds`; more than
//! 100 missed times get a `TooManyMissedTimes` warning and only the latest starts; `Forbid`
//! waits while a Job is active, `Replace` deletes the active ones first. The Job is named
//! `<cronjob>-<minutes since the epoch>`, so a schedule time starts at most one Job. The clock
//! is an input of the pure [`decide`], so schedule decisions are tested without waiting.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job, JobStatus};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, DeleteParams, Patch, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::expectations::Expectations;
use super::job::finished_at;
use super::workload::{self, Events};
use super::{Context, Error, key_of};

/// The annotation with the schedule time a Job was started for.
pub const SCHEDULED_TIMESTAMP_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// More missed schedule times than this get a warning (Kubernetes' limit).
pub const MAX_MISSED: usize = 100;

/// A schedule that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// The cron expression does not parse.
    #[error("unparseable schedule {schedule:?}: {message}")]
    Syntax {
        /// The schedule.
        schedule: String,
        /// What is wrong.
        message: String,
    },
    /// The time zone is unknown.
    #[error("unknown time zone {0:?}")]
    TimeZone(String),
}

/// A parsed schedule in its time zone.
#[derive(Clone, Debug)]
pub struct Schedule {
    cron: croner::Cron,
    tz: TimeZone,
}

impl Schedule {
    /// Parses `schedule` (five fields or a macro, maybe after `TZ=zone ` or `CRON_TZ=zone `)
    /// in `time_zone` (`spec.timeZone`), UTC when neither names one.
    pub fn parse(schedule: &str, time_zone: Option<&str>) -> Result<Schedule, ScheduleError> {
        let syntax = |message: &str| ScheduleError::Syntax {
            schedule: schedule.into(),
            message: message.into(),
        };
        let trimmed = schedule.trim();
        let (zone, expr) = match trimmed
            .strip_prefix("CRON_TZ=")
            .or_else(|| trimmed.strip_prefix("TZ="))
        {
            Some(rest) => {
                let (zone, expr) = rest
                    .split_once(char::is_whitespace)
                    .ok_or_else(|| syntax("a time zone prefix must be followed by a schedule"))?;
                (Some(zone), expr.trim())
            }
            None => (time_zone, trimmed),
        };
        let tz = match zone {
            None | Some("") => TimeZone::UTC,
            Some(z) => TimeZone::get(z).map_err(|_| ScheduleError::TimeZone(z.into()))?,
        };
        let expr = match expr.to_ascii_lowercase().as_str() {
            "@midnight" => "0 0 * * *".to_string(),
            e if e.starts_with("@every") => return Err(syntax("@every is not supported")),
            _ => expr.to_string(),
        };
        if !expr.starts_with('@') && expr.split_whitespace().count() != 5 {
            return Err(syntax("expected exactly 5 fields"));
        }
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Disallowed)
            .year(croner::parser::Year::Disallowed)
            .build()
            .parse(&expr)
            .map_err(|e| syntax(&e.to_string()))?;
        Ok(Schedule { cron, tz })
    }

    /// The first schedule time strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let zoned = t.to_zoned(self.tz.clone());
        self.cron
            .find_next_occurrence(&zoned, false)
            .ok()
            .map(|z| z.timestamp())
    }

    /// The last schedule time at or before `t`.
    pub fn last_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        let zoned = t.to_zoned(self.tz.clone());
        self.cron
            .find_previous_occurrence(&zoned, true)
            .ok()
            .map(|z| z.timestamp())
    }

    /// The most recent schedule time in `(earliest, now]` and how many there are (counted up
    /// to `MAX_MISSED + 1`).
    pub fn unmet(&self, earliest: Timestamp, now: Timestamp) -> (Option<Timestamp>, usize) {
        let mut count = 0;
        let mut t = earliest;
        while count <= MAX_MISSED {
            match self.next_after(t) {
                Some(next) if next <= now => {
                    count += 1;
                    t = next;
                }
                _ => return ((count > 0).then_some(t), count),
            }
        }
        (self.last_at_or_before(now), count)
    }
}

/// What the controller knows about a CronJob at one moment.
#[derive(Clone, Debug)]
pub struct CronState {
    /// When the CronJob was created.
    pub created: Timestamp,
    /// `status.lastScheduleTime`.
    pub last_schedule: Option<Timestamp>,
    /// `spec.startingDeadlineSeconds`.
    pub starting_deadline: Option<i64>,
    /// `spec.suspend`.
    pub suspended: bool,
    /// `spec.concurrencyPolicy`.
    pub concurrency: String,
    /// Jobs of this CronJob still running.
    pub active: usize,
    /// Now.
    pub now: Timestamp,
}

/// What to do about a CronJob now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CronDecision {
    /// Nothing now; look again at `next` (the next schedule time), if any.
    Wait {
        /// The next schedule time.
        next: Option<Timestamp>,
    },
    /// Start the Job for `scheduled`.
    Start {
        /// The schedule time it is for.
        scheduled: Timestamp,
        /// More than [`MAX_MISSED`] times were missed (only the latest starts).
        too_many_missed: bool,
        /// Delete the active Jobs first (`Replace`).
        replace: bool,
    },
    /// A Job is due but one is still active and the policy is `Forbid`.
    Forbidden {
        /// The schedule time that waits.
        scheduled: Timestamp,
        /// The next schedule time.
        next: Option<Timestamp>,
    },
    /// The latest schedule time is past its starting deadline.
    MissedDeadline {
        /// The missed schedule time.
        scheduled: Timestamp,
        /// The next schedule time.
        next: Option<Timestamp>,
    },
}

/// Kubernetes' CronJob decision (cronjob_controllerv2 `syncCronJob`) as a pure function.
pub fn decide(schedule: &Schedule, s: &CronState) -> CronDecision {
    let next = schedule.next_after(s.now);
    if s.suspended {
        return CronDecision::Wait { next: None };
    }
    let mut earliest = s.last_schedule.unwrap_or(s.created);
    if let Some(d) = s.starting_deadline {
        let window = s.now - jiff::SignedDuration::from_secs(d);
        if window > earliest {
            earliest = window;
        }
    }
    let (latest, count) = schedule.unmet(earliest, s.now);
    let Some(scheduled) = latest else {
        return CronDecision::Wait { next };
    };
    if let Some(d) = s.starting_deadline
        && scheduled + jiff::SignedDuration::from_secs(d) < s.now
    {
        return CronDecision::MissedDeadline { scheduled, next };
    }
    if s.concurrency == "Forbid" && s.active > 0 {
        return CronDecision::Forbidden { scheduled, next };
    }
    CronDecision::Start {
        scheduled,
        too_many_missed: count > MAX_MISSED,
        replace: s.concurrency == "Replace" && s.active > 0,
    }
}

/// The name of the Job a CronJob starts for `scheduled` (Kubernetes: minutes since the epoch).
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

/// Runs the CronJob controller until the context stops.
pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let (cronjob_informer, job_informer) = (ctx.informer::<CronJob>(), ctx.informer::<Job>());
    let controller = Controller::for_stream(cronjob_informer.subscribe(), cronjob_informer.store())
        .owns_stream(job_informer.subscribe());
    ctx.synced(&cronjob_informer).await?;
    ctx.synced(&job_informer).await?;
    let state = Arc::new(State {
        jobs: job_informer.store(),
        expectations: Expectations::default(),
    });
    ctx.drive(controller, move |cj, ctx| {
        reconcile(cj, ctx, state.clone()).boxed()
    })
    .await;
    Ok(())
}

/// The shared Job store and the expectations of the Jobs created and deleted.
struct State {
    jobs: Store<Job>,
    expectations: Expectations,
}

fn succeeded(status: &JobStatus) -> bool {
    status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Complete" && c.status == "True")
}

fn job_ref(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some(<Job as k8s_openapi::Resource>::API_VERSION.into()),
        kind: Some(<Job as k8s_openapi::Resource>::KIND.into()),
        name: Some(job.name_any()),
        namespace: job.namespace(),
        uid: job.uid(),
        resource_version: job.resource_version(),
        ..ObjectReference::default()
    }
}

fn until(now: Timestamp, t: Option<Timestamp>) -> Action {
    match t {
        // Kubernetes adds 100 ms so the schedule time has surely passed.
        Some(t) => Action::requeue(Duration::from_millis(
            (t.as_millisecond() - now.as_millisecond()).max(0) as u64 + 100,
        )),
        None => Action::await_change(),
    }
}

async fn reconcile(
    cj: Arc<CronJob>,
    ctx: Arc<Context>,
    store: Arc<State>,
) -> Result<Action, Error> {
    let events = Events(&ctx);
    if cj.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let now = Timestamp::now();
    let ns = cj.namespace().unwrap_or_else(|| "default".into());
    let name = cj.name_any();
    let uid = cj.uid().unwrap_or_default();
    let spec = cj.spec.clone().unwrap_or_default();
    let status = cj.status.clone().unwrap_or_default();
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let cronjobs: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ns);

    let key = key_of(cj.as_ref());
    if !store.expectations.satisfied(&key, &ns, &store.jobs) {
        // The store has not shown this CronJob's last creates and deletes: their Job change
        // brings it back.
        return Ok(Action::await_change());
    }
    let mut jobs: Vec<Job> = store
        .jobs
        .state()
        .iter()
        .filter(|j| j.namespace().as_deref() == Some(ns.as_str()))
        .filter(|j| workload::controlled_by(&j.metadata, &uid))
        .filter(|j| j.metadata.deletion_timestamp.is_none())
        .map(|j| j.as_ref().clone())
        .collect();
    jobs.sort_by_key(|j| {
        j.status
            .as_ref()
            .and_then(|s| s.start_time.as_ref().map(|t| t.0))
            .or(j.metadata.creation_timestamp.as_ref().map(|t| t.0))
    });
    let mut last_successful = status.last_successful_time.as_ref().map(|t| t.0);
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    let mut active: Vec<&Job> = Vec::new();
    for j in &jobs {
        let js = j.status.clone().unwrap_or_default();
        match finished_at(&js) {
            None => active.push(j),
            Some(_) if succeeded(&js) => {
                let done = js.completion_time.as_ref().map(|t| t.0);
                last_successful = last_successful.max(done);
                ok.push(j);
            }
            Some(_) => failed.push(j),
        }
    }
    let background = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    // Deletes a job of this CronJob (in the background, its pods after it), expecting its
    // removal; one already gone is no failure.
    let delete_job = async |j: &Job| -> Result<(), Error> {
        match jobs_api.delete(&j.name_any(), &background).await {
            Ok(_) => {
                store.expectations.expect(
                    &key,
                    Vec::new(),
                    vec![(j.name_any(), j.uid().unwrap_or_default())],
                );
                events
                    .normal(
                        cj.as_ref(),
                        "SuccessfulDelete",
                        &format!("Deleted job {}", j.name_any()),
                    )
                    .await;
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    };
    for (list, limit) in [
        (&ok, spec.successful_jobs_history_limit.unwrap_or(3)),
        (&failed, spec.failed_jobs_history_limit.unwrap_or(1)),
    ] {
        let extra = list
            .len()
            .saturating_sub(usize::try_from(limit).unwrap_or(0));
        for j in list.iter().take(extra) {
            delete_job(j).await?;
        }
    }

    let schedule = match Schedule::parse(&spec.schedule, spec.time_zone.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            events
                .warning(cj.as_ref(), "UnparseableSchedule", &e.to_string())
                .await;
            return Ok(Action::await_change());
        }
    };
    let state = CronState {
        created: cj
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(now),
        last_schedule: status.last_schedule_time.as_ref().map(|t| t.0),
        starting_deadline: spec.starting_deadline_seconds,
        suspended: spec.suspend == Some(true),
        concurrency: spec
            .concurrency_policy
            .clone()
            .unwrap_or_else(|| "Allow".into()),
        active: active.len(),
        now,
    };
    let decision = decide(&schedule, &state);
    let mut last_schedule = status.last_schedule_time.clone();
    let mut active_refs: Vec<ObjectReference> = active.iter().map(|j| job_ref(j)).collect();
    let action = match decision {
        CronDecision::Wait { next } => until(now, next),
        CronDecision::Forbidden { next, .. } => until(now, next),
        CronDecision::MissedDeadline { scheduled, next } => {
            events
                .warning(
                    cj.as_ref(),
                    "MissSchedule",
                    &format!("Missed scheduled time to start a job: {scheduled}"),
                )
                .await;
            until(now, next)
        }
        CronDecision::Start {
            scheduled,
            too_many_missed,
            replace,
        } => {
            if too_many_missed {
                events.warning(
                        cj.as_ref(),
                        "TooManyMissedTimes",
                        "too many missed start times (> 100); only the latest one is started. Set or decrease .spec.startingDeadlineSeconds or check clock skew",
                    )
                    .await;
            }
            if replace {
                for j in &active {
                    delete_job(j).await?;
                }
                active_refs.clear();
            }
            let template = spec.job_template.clone();
            let meta = template.metadata.clone().unwrap_or_default();
            let mut annotations = meta.annotations.unwrap_or_default();
            annotations.insert(
                SCHEDULED_TIMESTAMP_ANNOTATION.into(),
                scheduled.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            );
            let job = Job {
                metadata: ObjectMeta {
                    name: Some(job_name(&name, scheduled)),
                    namespace: Some(ns.clone()),
                    labels: meta.labels,
                    annotations: Some(annotations),
                    owner_references: cj.controller_owner_ref(&()).map(|r| vec![r]),
                    ..ObjectMeta::default()
                },
                spec: template.spec,
                status: None,
            };
            // An existing job is one started for this time (an earlier sync whose status write
            // was lost).
            let created = events
                .create_once(
                    cj.as_ref(),
                    &jobs_api,
                    &job,
                    |j| format!("Created job {}", j.name_any()),
                    |e| format!("Error creating job: {e}"),
                )
                .await?;
            if let Some(j) = created {
                store
                    .expectations
                    .expect(&key, vec![j.name_any()], Vec::new());
                active_refs.push(job_ref(&j));
            }
            last_schedule = Some(Time(scheduled));
            until(now, schedule.next_after(now))
        }
    };
    let new_status = CronJobStatus {
        active: (!active_refs.is_empty()).then_some(active_refs),
        last_schedule_time: last_schedule,
        last_successful_time: last_successful.map(Time),
    };
    // Only the fields that changed, so a concurrent writer of the others is not undone.
    let mut patch = serde_json::Map::new();
    if new_status.active != status.active {
        patch.insert("active".into(), json!(new_status.active));
    }
    if new_status.last_schedule_time != status.last_schedule_time {
        patch.insert(
            "lastScheduleTime".into(),
            json!(new_status.last_schedule_time),
        );
    }
    if new_status.last_successful_time != status.last_successful_time {
        patch.insert(
            "lastSuccessfulTime".into(),
            json!(new_status.last_successful_time),
        );
    }
    if !patch.is_empty() {
        cronjobs
            .patch_status(
                &name,
                &ctx.patch_params(),
                &Patch::Merge(json!({ "status": patch })),
            )
            .await?;
    }
    Ok(action)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(schedule: &str, tz: Option<&str>, after: &str) -> String {
        Schedule::parse(schedule, tz)
            .unwrap()
            .next_after(t(after))
            .unwrap()
            .to_string()
    }

    #[test]
    fn schedules_find_the_next_time_in_their_time_zone() {
        let cases = [
            (
                "*/5 * * * *",
                None,
                "2026-01-01T00:03:00Z",
                "2026-01-01T00:05:00Z",
            ),
            (
                "0 * * * *",
                None,
                "2026-01-01T00:00:00Z",
                "2026-01-01T01:00:00Z",
            ),
            (
                "@hourly",
                None,
                "2026-01-01T00:30:00Z",
                "2026-01-01T01:00:00Z",
            ),
            (
                "@daily",
                None,
                "2026-01-01T00:30:00Z",
                "2026-01-02T00:00:00Z",
            ),
            (
                "@midnight",
                None,
                "2026-01-01T00:30:00Z",
                "2026-01-02T00:00:00Z",
            ),
            (
                "@weekly",
                None,
                "2026-01-01T00:00:00Z",
                "2026-01-04T00:00:00Z",
            ),
            (
                "0 0 1 * *",
                None,
                "2026-01-15T00:00:00Z",
                "2026-02-01T00:00:00Z",
            ),
            (
                "30 9 * * MON-FRI",
                None,
                "2026-01-03T00:00:00Z",
                "2026-01-05T09:30:00Z",
            ),
            (
                "0 9 * JAN,FEB *",
                None,
                "2026-02-28T10:00:00Z",
                "2027-01-01T09:00:00Z",
            ),
            (
                "0 9 * * *",
                Some("Europe/Paris"),
                "2026-01-01T00:00:00Z",
                "2026-01-01T08:00:00Z",
            ),
            (
                "TZ=America/New_York 0 9 * * *",
                None,
                "2026-01-01T00:00:00Z",
                "2026-01-01T14:00:00Z",
            ),
            (
                "CRON_TZ=Asia/Tokyo 0 9 * * *",
                None,
                "2026-01-01T00:00:00Z",
                "2026-01-02T00:00:00Z",
            ),
        ];
        for (schedule, tz, after, expected) in cases {
            assert_eq!(
                next(schedule, tz, after),
                expected,
                "{schedule} after {after}"
            );
        }
    }

    #[test]
    fn bad_schedules_are_refused_with_the_reason() {
        for bad in [
            "",
            "* * * *",
            "* * * * * *",
            "61 * * * *",
            "@every 5m",
            "TZ=Nowhere/City * * * * *",
        ] {
            assert!(Schedule::parse(bad, None).is_err(), "{bad:?} parsed");
        }
        assert!(Schedule::parse("* * * * *", Some("Not/AZone")).is_err());
    }

    fn state(last: Option<&str>, deadline: Option<i64>, now: &str) -> CronState {
        CronState {
            created: t("2026-01-01T00:00:30Z"),
            last_schedule: last.map(t),
            starting_deadline: deadline,
            suspended: false,
            concurrency: "Allow".into(),
            active: 0,
            now: t(now),
        }
    }

    fn every_minute() -> Schedule {
        Schedule::parse("* * * * *", None).unwrap()
    }

    #[test]
    fn nothing_starts_before_the_first_schedule_time() {
        let d = decide(&every_minute(), &state(None, None, "2026-01-01T00:00:50Z"));
        assert_eq!(
            d,
            CronDecision::Wait {
                next: Some(t("2026-01-01T00:01:00Z"))
            }
        );
    }

    #[test]
    fn the_most_recent_missed_time_starts_once() {
        let d = decide(&every_minute(), &state(None, None, "2026-01-01T00:05:10Z"));
        assert_eq!(
            d,
            CronDecision::Start {
                scheduled: t("2026-01-01T00:05:00Z"),
                too_many_missed: false,
                replace: false
            }
        );
        let d = decide(
            &every_minute(),
            &state(Some("2026-01-01T00:05:00Z"), None, "2026-01-01T00:05:20Z"),
        );
        assert!(matches!(d, CronDecision::Wait { .. }), "{d:?}");
    }

    #[test]
    fn more_than_a_hundred_missed_times_warn_and_start_the_latest() {
        let d = decide(&every_minute(), &state(None, None, "2026-01-02T00:00:10Z"));
        assert_eq!(
            d,
            CronDecision::Start {
                scheduled: t("2026-01-02T00:00:00Z"),
                too_many_missed: true,
                replace: false
            }
        );
    }

    #[test]
    fn the_starting_deadline_limits_how_far_back_times_count() {
        // A day of missed minutes, but only the last hour counts: no warning.
        let d = decide(
            &every_minute(),
            &state(None, Some(3600), "2026-01-02T00:00:10Z"),
        );
        assert_eq!(
            d,
            CronDecision::Start {
                scheduled: t("2026-01-02T00:00:00Z"),
                too_many_missed: false,
                replace: false
            }
        );
        // The only time is 10 s old with a 5 s deadline: missed.
        let d = decide(
            &every_minute(),
            &state(None, Some(5), "2026-01-02T00:00:10Z"),
        );
        assert_eq!(
            d,
            CronDecision::Wait {
                next: Some(t("2026-01-02T00:01:00Z"))
            }
        );
        let yearly = Schedule::parse("@yearly", None).unwrap();
        let mut s = state(
            Some("2020-01-01T00:00:00Z"),
            Some(60),
            "2026-03-01T00:00:00Z",
        );
        s.created = t("2019-06-01T00:00:00Z");
        assert!(matches!(decide(&yearly, &s), CronDecision::Wait { .. }));
    }

    #[test]
    fn times_before_the_deadline_window_do_not_start() {
        let hourly = Schedule::parse("@hourly", None).unwrap();
        let mut s = state(
            Some("2026-01-01T00:00:00Z"),
            Some(600),
            "2026-01-01T01:20:00Z",
        );
        s.last_schedule = Some(t("2026-01-01T00:00:00Z"));
        // Window starts at 01:10, after the 01:00 time: nothing unmet in the window.
        assert!(matches!(decide(&hourly, &s), CronDecision::Wait { .. }));
        s.starting_deadline = Some(3600);
        s.now = t("2026-01-01T01:20:00Z");
        assert!(matches!(decide(&hourly, &s), CronDecision::Start { .. }));
    }

    #[test]
    fn concurrency_policies_forbid_or_replace_active_jobs() {
        let mut s = state(None, None, "2026-01-01T00:05:10Z");
        s.active = 1;
        s.concurrency = "Forbid".into();
        assert!(matches!(
            decide(&every_minute(), &s),
            CronDecision::Forbidden { .. }
        ));
        s.concurrency = "Replace".into();
        assert!(matches!(
            decide(&every_minute(), &s),
            CronDecision::Start { replace: true, .. }
        ));
        s.concurrency = "Allow".into();
        assert!(matches!(
            decide(&every_minute(), &s),
            CronDecision::Start { replace: false, .. }
        ));
    }

    #[test]
    fn a_suspended_cronjob_starts_nothing() {
        let mut s = state(None, None, "2026-01-01T00:05:10Z");
        s.suspended = true;
        assert_eq!(
            decide(&every_minute(), &s),
            CronDecision::Wait { next: None }
        );
    }

    #[test]
    fn job_names_count_minutes_since_the_epoch() {
        assert_eq!(
            job_name("hello", t("2026-01-01T00:05:00Z")),
            "hello-29453765"
        );
    }
}
