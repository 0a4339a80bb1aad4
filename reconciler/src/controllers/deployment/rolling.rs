//! The RollingUpdate strategy: how far the new ReplicaSet may grow and the old ones shrink
//! (pure, [`scale_up_new`] and [`scale_down_old`]), and the rollout step that applies them.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::sync::{Rollout, scale};
use crate::controllers::{Context, Error};

/// An `IntOrString` (`3` or `"25%"`) of `total`, rounding up or down; an invalid one is 0.
pub fn resolve(
    value: Option<&IntOrString>,
    default_percent: i32,
    total: i32,
    round_up: bool,
) -> i32 {
    match value {
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => {
            match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
                Some(p) => percent(p, total, round_up),
                None => 0,
            }
        }
        None => percent(i64::from(default_percent), total, round_up),
    }
}

fn percent(p: i64, total: i32, round_up: bool) -> i32 {
    let product = p * i64::from(total);
    let v = if round_up {
        (product + 99) / 100
    } else {
        product / 100
    };
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// (maxSurge, maxUnavailable) of a RollingUpdate deployment of `replicas`: surge rounds up,
/// unavailability down, and both zero means one may be unavailable (Kubernetes' rule).
pub fn surge_and_unavailable(d: &Deployment) -> (i32, i32) {
    let spec = d.spec.as_ref();
    let replicas = spec.and_then(|s| s.replicas).unwrap_or(1);
    let rolling = spec
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let surge = resolve(
        rolling.and_then(|r| r.max_surge.as_ref()),
        25,
        replicas,
        true,
    )
    .max(0);
    let unavailable = resolve(
        rolling.and_then(|r| r.max_unavailable.as_ref()),
        25,
        replicas,
        false,
    )
    .max(0);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable.min(replicas))
    }
}

/// The replicas the new ReplicaSet may have now: toward `desired`, never past
/// `desired + surge` pods in all ReplicaSets together (`total` is their current sum).
pub fn scale_up_new(desired: i32, surge: i32, total: i32, new: i32) -> i32 {
    if new >= desired {
        return desired;
    }
    let room = (desired + surge - total).max(0);
    new + room.min(desired - new)
}

/// A ReplicaSet's counts for the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts {
    /// `spec.replicas`.
    pub replicas: i32,
    /// Available pods (never more than `replicas`: the surplus is on its way out).
    pub available: i32,
}

/// The new `spec.replicas` of each old ReplicaSet (oldest first), keeping at least
/// `desired - max_unavailable` pods available: first the unhealthy pods of old ReplicaSets go,
/// then available ones as far as availability allows.
pub fn scale_down_old(
    desired: i32,
    max_unavailable: i32,
    new: Counts,
    olds: &[Counts],
) -> Vec<i32> {
    let mut targets: Vec<i32> = olds.iter().map(|o| o.replicas).collect();
    let old_total: i32 = targets.iter().sum();
    if old_total == 0 {
        return targets;
    }
    let all_total = old_total + new.replicas;
    let min_available = desired - max_unavailable;
    let new_unavailable = new.replicas - new.available;
    let max_scaled_down = all_total - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return targets;
    }
    let mut cleaned = 0;
    for (t, o) in targets.iter_mut().zip(olds) {
        if cleaned >= max_scaled_down {
            break;
        }
        let unhealthy = *t - o.available.min(*t);
        if unhealthy <= 0 {
            continue;
        }
        let n = unhealthy.min(max_scaled_down - cleaned);
        *t -= n;
        cleaned += n;
    }
    let available: i32 = new.available.min(new.replicas)
        + olds
            .iter()
            .zip(&targets)
            .map(|(o, t)| o.available.min(*t))
            .sum::<i32>();
    let budget = (available - min_available).min(max_scaled_down - cleaned);
    let mut scaled = 0;
    for t in targets.iter_mut() {
        if scaled >= budget {
            break;
        }
        if *t == 0 {
            continue;
        }
        let n = (*t).min(budget - scaled);
        *t -= n;
        scaled += n;
    }
    targets
}

/// One step of a rolling update: grow the new ReplicaSet, or else shrink the old ones.
pub async fn rollout(ctx: &Context, d: &Deployment, r: &mut Rollout) -> Result<(), Error> {
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let (surge, unavailable) = surge_and_unavailable(d);
    let Some(new) = r.new.clone() else {
        return Ok(());
    };
    let total: i32 = r.all().map(|rs| replicas(rs)).sum();
    let target = scale_up_new(desired, surge, total, replicas(&new));
    if target != replicas(&new) {
        let scaled = scale(ctx, d, &new, target, surge).await?;
        r.new = Some(Arc::new(scaled));
        return Ok(());
    }
    let olds: Vec<Counts> = r.olds.iter().map(|rs| counts(rs)).collect();
    let targets = scale_down_old(desired, unavailable, counts(&new), &olds);
    for (i, t) in targets.into_iter().enumerate() {
        if t != olds[i].replicas {
            let scaled = scale(ctx, d, &r.olds[i].clone(), t, surge).await?;
            r.olds[i] = Arc::new(scaled);
        }
    }
    Ok(())
}

/// `spec.replicas` of a ReplicaSet.
pub fn replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn counts(rs: &ReplicaSet) -> Counts {
    let replicas = replicas(rs);
    let available = rs
        .status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0);
    Counts {
        replicas,
        available: available.min(replicas),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(replicas: i32, available: i32) -> Counts {
        Counts {
            replicas,
            available,
        }
    }

    #[test]
    fn percentages_round_surge_up_and_unavailability_down() {
        let s = |v: &str| IntOrString::String(v.into());
        for (value, total, up, expected) in [
            (Some(s("25%")), 10, true, 3),
            (Some(s("25%")), 10, false, 2),
            (Some(s("100%")), 3, false, 3),
            (Some(IntOrString::Int(2)), 10, true, 2),
            (None, 4, true, 1),
            (None, 1, false, 0),
            (Some(s("x%")), 10, true, 0),
        ] {
            assert_eq!(
                resolve(value.as_ref(), 25, total, up),
                expected,
                "{value:?} of {total}"
            );
        }
    }

    #[test]
    fn the_new_replicaset_grows_within_max_surge() {
        // (desired, surge, total of all ReplicaSets, new now) -> new target
        for (desired, surge, total, new, expected) in [
            (3, 1, 3, 0, 1), // one extra pod allowed
            (3, 1, 4, 1, 1), // at the ceiling: wait
            (3, 0, 3, 0, 0), // no surge: old ones must shrink first
            (3, 0, 2, 0, 1), // one old pod gone: one new
            (3, 3, 3, 0, 3), // 100% surge: all at once
            (3, 1, 5, 4, 3), // too big (scaled down): shrink to desired
            (10, 3, 10, 0, 3),
        ] {
            assert_eq!(
                scale_up_new(desired, surge, total, new),
                expected,
                "desired {desired} surge {surge} total {total} new {new}"
            );
        }
    }

    #[test]
    fn old_replicasets_shrink_only_as_far_as_availability_allows() {
        // desired 3, maxUnavailable 0, new has 1 not yet available: nothing may go.
        assert_eq!(scale_down_old(3, 0, c(1, 0), &[c(3, 3)]), vec![3]);
        // The new pod became available: one old pod may go.
        assert_eq!(scale_down_old(3, 0, c(1, 1), &[c(3, 3)]), vec![2]);
        // maxUnavailable 1 and no surge: one old pod may go before any new one exists.
        assert_eq!(scale_down_old(3, 1, c(0, 0), &[c(3, 3)]), vec![2]);
        // Unhealthy old pods go first, even past availability (they were not available).
        assert_eq!(scale_down_old(3, 0, c(1, 1), &[c(3, 1)]), vec![2]);
        // Oldest first.
        assert_eq!(
            scale_down_old(4, 0, c(2, 2), &[c(2, 2), c(2, 2)]),
            vec![0, 2]
        );
        // A stale status (more available than replicas) never counts the surplus.
        assert_eq!(scale_down_old(3, 0, c(2, 1), &[c(2, 3)]), vec![2]);
        // Nothing old: nothing to do.
        assert_eq!(scale_down_old(3, 1, c(3, 3), &[c(0, 0)]), vec![0]);
    }
}
