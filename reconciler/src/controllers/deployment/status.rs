//! A Deployment's status from its ReplicaSets: counts, and the `Available` and `Progressing`
//! conditions with Kubernetes' reasons and messages (pure).

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::rolling::surge_and_unavailable;
use super::sync::Rollout;

/// `Progressing` reason: the new ReplicaSet is complete.
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
/// `Progressing` reason: no progress within `progressDeadlineSeconds`.
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
/// `Progressing` reason: paused.
pub const PAUSED: &str = "DeploymentPaused";

/// The most unavailable pods the strategy allows (0 for Recreate).
pub fn max_unavailable(d: &Deployment) -> i32 {
    let spec = d.spec.as_ref();
    let recreate = spec
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate");
    if recreate || spec.and_then(|s| s.replicas).unwrap_or(1) == 0 {
        0
    } else {
        surge_and_unavailable(d).1
    }
}

/// The status the Deployment should have; `created` says the new ReplicaSet was just created.
pub fn compute(
    d: &Deployment,
    r: &Rollout,
    created: bool,
    now: jiff::Timestamp,
) -> DeploymentStatus {
    let old = d.status.clone().unwrap_or_default();
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let sum = |f: &dyn Fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> i32| -> i32 {
        r.all().filter_map(|rs| rs.status.as_ref()).map(f).sum()
    };
    let spec_total: i32 = r
        .all()
        .map(|rs| rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0))
        .sum();
    let available = sum(&|s| s.available_replicas.unwrap_or(0));
    let mut new = DeploymentStatus {
        replicas: Some(sum(&|s| s.replicas)),
        updated_replicas: Some(
            r.new
                .as_ref()
                .and_then(|rs| rs.status.as_ref())
                .map_or(0, |s| s.replicas),
        ),
        ready_replicas: Some(sum(&|s| s.ready_replicas.unwrap_or(0))),
        available_replicas: Some(available),
        unavailable_replicas: Some((spec_total - available).max(0)),
        observed_generation: d.metadata.generation,
        collision_count: old.collision_count,
        conditions: None,
        terminating_replicas: None,
    };
    let mut conds = old.conditions.clone().unwrap_or_default();
    let t = Time(now);
    if available >= desired - max_unavailable(d) {
        set(
            &mut conds,
            cond(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                &t,
            ),
            false,
        );
    } else {
        set(
            &mut conds,
            cond(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                &t,
            ),
            false,
        );
    }
    let spec = d.spec.clone().unwrap_or_default();
    let paused = spec.paused.unwrap_or(false);
    let reason_now = get(&conds, "Progressing").and_then(|c| c.reason.clone());
    if paused && reason_now.as_deref() != Some(PAUSED) {
        set(
            &mut conds,
            cond("Progressing", "Unknown", PAUSED, "Deployment is paused", &t),
            false,
        );
    } else if !paused && reason_now.as_deref() == Some(PAUSED) {
        set(
            &mut conds,
            cond(
                "Progressing",
                "Unknown",
                "DeploymentResumed",
                "Deployment is resumed",
                &t,
            ),
            false,
        );
    }
    let deadline = spec.progress_deadline_seconds.filter(|s| *s != i32::MAX);
    let new_name = r.new.as_ref().map(|rs| rs.name_any());
    let subject = match &new_name {
        Some(n) => format!("ReplicaSet \"{n}\""),
        None => format!("Deployment \"{}\"", d.name_any()),
    };
    if deadline.is_none() {
        conds.retain(|c| c.type_ != "Progressing");
    } else if !paused {
        if let Some(n) = &new_name {
            if created {
                set(
                    &mut conds,
                    cond(
                        "Progressing",
                        "True",
                        "NewReplicaSetCreated",
                        &format!("Created new replica set \"{n}\""),
                        &t,
                    ),
                    false,
                );
            } else if get(&conds, "Progressing").is_none() {
                set(
                    &mut conds,
                    cond(
                        "Progressing",
                        "True",
                        "FoundNewReplicaSet",
                        &format!("Found new replica set \"{n}\""),
                        &t,
                    ),
                    false,
                );
            }
        }
        let current = get(&conds, "Progressing").cloned();
        let complete_already = new.replicas == new.updated_replicas
            && current.as_ref().and_then(|c| c.reason.as_deref()) == Some(NEW_RS_AVAILABLE);
        if !complete_already {
            if complete(desired, &new) {
                set(
                    &mut conds,
                    cond(
                        "Progressing",
                        "True",
                        NEW_RS_AVAILABLE,
                        &format!("{subject} has successfully progressed."),
                        &t,
                    ),
                    false,
                );
            } else if progressing(&old, &new) {
                set(
                    &mut conds,
                    cond(
                        "Progressing",
                        "True",
                        "ReplicaSetUpdated",
                        &format!("{subject} is progressing."),
                        &t,
                    ),
                    true,
                );
            } else if timed_out(current.as_ref(), deadline, now) {
                set(
                    &mut conds,
                    cond(
                        "Progressing",
                        "False",
                        TIMED_OUT,
                        &format!("{subject} has timed out progressing."),
                        &t,
                    ),
                    false,
                );
            }
        }
    }
    new.conditions = Some(conds);
    new
}

/// When to look again for a progress deadline (None: no deadline running).
pub fn deadline_in(
    d: &Deployment,
    status: &DeploymentStatus,
    now: jiff::Timestamp,
) -> Option<std::time::Duration> {
    let spec = d.spec.as_ref()?;
    let secs = spec.progress_deadline_seconds.filter(|s| *s != i32::MAX)?;
    if spec.paused.unwrap_or(false) {
        return None;
    }
    let c = get(status.conditions.as_deref().unwrap_or(&[]), "Progressing")?;
    if matches!(
        c.reason.as_deref(),
        Some(NEW_RS_AVAILABLE) | Some(TIMED_OUT)
    ) {
        return None;
    }
    let from = c.last_update_time.as_ref()?.0;
    let at = from
        .checked_add(jiff::SignedDuration::from_secs(i64::from(secs)))
        .ok()?;
    let left = if at > now {
        at.duration_since(now)
    } else {
        jiff::SignedDuration::ZERO
    };
    std::time::Duration::try_from(left)
        .ok()
        .map(|d| d + std::time::Duration::from_secs(1))
}

/// Every replica updated, present and available, for the current generation.
pub fn complete(desired: i32, s: &DeploymentStatus) -> bool {
    s.updated_replicas == Some(desired)
        && s.replicas == Some(desired)
        && s.available_replicas == Some(desired)
}

/// Kubernetes' `DeploymentProgressing`: more updated, ready or available pods, or fewer old.
fn progressing(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let n = |v: Option<i32>| v.unwrap_or(0);
    let old_old = n(old.replicas) - n(old.updated_replicas);
    let new_old = n(new.replicas) - n(new.updated_replicas);
    n(new.updated_replicas) > n(old.updated_replicas)
        || new_old < old_old
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
}

fn timed_out(
    current: Option<&DeploymentCondition>,
    deadline: Option<i32>,
    now: jiff::Timestamp,
) -> bool {
    let (Some(c), Some(secs)) = (current, deadline) else {
        return false;
    };
    match c.reason.as_deref() {
        Some(TIMED_OUT) => return true,
        Some(NEW_RS_AVAILABLE) => return false,
        _ => {}
    }
    c.last_update_time
        .as_ref()
        .and_then(|t| {
            t.0.checked_add(jiff::SignedDuration::from_secs(i64::from(secs)))
                .ok()
        })
        .is_some_and(|at| now > at)
}

fn cond(type_: &str, status: &str, reason: &str, message: &str, t: &Time) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_transition_time: Some(t.clone()),
        last_update_time: Some(t.clone()),
    }
}

fn get<'a>(conds: &'a [DeploymentCondition], type_: &str) -> Option<&'a DeploymentCondition> {
    conds.iter().find(|c| c.type_ == type_)
}

/// Kubernetes' `SetDeploymentCondition`: an identical status and reason changes nothing
/// (unless `refresh`, which renews `lastUpdateTime`); the same status keeps its
/// `lastTransitionTime`.
fn set(conds: &mut Vec<DeploymentCondition>, mut c: DeploymentCondition, refresh: bool) {
    if let Some(i) = conds.iter().position(|x| x.type_ == c.type_) {
        let existing = &conds[i];
        if existing.status == c.status {
            if existing.reason == c.reason && !refresh {
                return;
            }
            c.last_transition_time = existing.last_transition_time.clone();
        }
        conds.remove(i);
    }
    conds.push(c);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(replicas: i32, updated: i32, ready: i32, available: i32) -> DeploymentStatus {
        DeploymentStatus {
            replicas: Some(replicas),
            updated_replicas: Some(updated),
            ready_replicas: Some(ready),
            available_replicas: Some(available),
            ..DeploymentStatus::default()
        }
    }

    #[test]
    fn progress_is_more_updated_ready_or_available_pods_or_fewer_old_ones() {
        let base = status(4, 1, 3, 3);
        for (new, expected) in [
            (status(4, 1, 3, 3), false),
            (status(4, 2, 3, 3), true),
            (status(3, 1, 3, 3), true),
            (status(4, 1, 4, 3), true),
            (status(4, 1, 3, 4), true),
        ] {
            assert_eq!(progressing(&base, &new), expected, "{new:?}");
        }
    }

    #[test]
    fn a_rollout_times_out_after_the_deadline_since_the_last_progress() {
        let at = |s: i64| jiff::Timestamp::from_second(s).unwrap();
        let c = cond(
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            "",
            &Time(at(100)),
        );
        assert!(!timed_out(Some(&c), Some(10), at(110)));
        assert!(timed_out(Some(&c), Some(10), at(111)));
        assert!(!timed_out(Some(&c), None, at(1000)));
        let done = cond("Progressing", "True", NEW_RS_AVAILABLE, "", &Time(at(100)));
        assert!(!timed_out(Some(&done), Some(10), at(1000)));
    }

    #[test]
    fn setting_a_condition_keeps_the_transition_time_of_the_same_status() {
        let at = |s: i64| Time(jiff::Timestamp::from_second(s).unwrap());
        let mut conds = vec![cond(
            "Progressing",
            "True",
            "NewReplicaSetCreated",
            "",
            &at(1),
        )];
        set(
            &mut conds,
            cond("Progressing", "True", "ReplicaSetUpdated", "", &at(5)),
            true,
        );
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].last_transition_time, Some(at(1)));
        assert_eq!(conds[0].last_update_time, Some(at(5)));
        set(
            &mut conds,
            cond("Progressing", "False", TIMED_OUT, "", &at(9)),
            false,
        );
        assert_eq!(conds[0].last_transition_time, Some(at(9)));
    }
}
