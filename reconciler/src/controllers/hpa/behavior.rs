//! From the metrics' proposal to the replica count the autoscaler sets (pure): Kubernetes'
//! stabilization windows (the lowest recent recommendation when scaling up, the highest when
//! scaling down), the `behavior` policies (`Pods`/`Percent` per `periodSeconds`, chosen by
//! `selectPolicy`, counted from the replicas at the start of each period), and min/max
//! replicas; each with the reason and message of the `AbleToScale` and `ScalingLimited`
//! conditions.
//!
//! Without `behavior`, Kubernetes' older rule applies: a downscale stabilization window
//! (300 s) and a scale-up limit of `max(2 × current, 4)`.

/// The downscale stabilization window used when `behavior` does not set one
/// (`--horizontal-pod-autoscaler-downscale-stabilization`).
pub const DOWNSCALE_STABILIZATION: i32 = 300;

/// How a policy limits change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyKind {
    /// A number of pods per period.
    Pods,
    /// A percentage of the replicas at the start of the period.
    Percent,
}

/// One `HPAScalingPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Pods or Percent.
    pub kind: PolicyKind,
    /// How many (or what percentage).
    pub value: i32,
    /// Over how long, seconds.
    pub period: i32,
}

/// `selectPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Select {
    /// The policy allowing the most change.
    Max,
    /// The policy allowing the least change.
    Min,
    /// No change in this direction.
    Disabled,
}

/// `HPAScalingRules` of one direction, defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    /// `stabilizationWindowSeconds`.
    pub window: i32,
    /// `selectPolicy`.
    pub select: Select,
    /// `policies`.
    pub policies: Vec<Policy>,
}

impl Rules {
    /// Kubernetes' default scale-up rules: no window, at most double or 4 pods per 15 s.
    pub fn default_up() -> Rules {
        Rules {
            window: 0,
            select: Select::Max,
            policies: vec![
                Policy {
                    kind: PolicyKind::Percent,
                    value: 100,
                    period: 15,
                },
                Policy {
                    kind: PolicyKind::Pods,
                    value: 4,
                    period: 15,
                },
            ],
        }
    }

    /// Kubernetes' default scale-down rules: a 300 s window, down to nothing per 15 s.
    pub fn default_down() -> Rules {
        Rules {
            window: DOWNSCALE_STABILIZATION,
            select: Select::Max,
            policies: vec![Policy {
                kind: PolicyKind::Percent,
                value: 100,
                period: 15,
            }],
        }
    }
}

/// `spec.behavior` with defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Behavior {
    /// `scaleUp`.
    pub up: Rules,
    /// `scaleDown`.
    pub down: Rules,
}

/// A change of replicas made at a time.
#[derive(Clone, Copy, Debug, PartialEq)]
struct ScaleEvent {
    at: f64,
    change: i32,
}

/// What the controller remembers of one autoscaler: recent recommendations and scale events
/// (kept in memory, as Kubernetes keeps them: a new leader starts afresh).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    recommendations: Vec<(f64, i32)>,
    ups: Vec<ScaleEvent>,
    downs: Vec<ScaleEvent>,
}

/// A decision with the reason and message of its condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Replicas.
    pub replicas: i32,
    /// Condition reason (`ScaleDownStabilized`, `TooManyReplicas`, ...).
    pub reason: &'static str,
    /// Condition message.
    pub message: &'static str,
}

fn decision(replicas: i32, reason: &'static str, message: &'static str) -> Decision {
    Decision {
        replicas,
        reason,
        message,
    }
}

const SCALE_UP_STABILIZED: &str =
    "recent recommendations were lower than current one, applying the lowest recent recommendation";
const SCALE_DOWN_STABILIZED: &str = "recent recommendations were higher than current one, applying the highest recent recommendation";
const WITHIN_RANGE: &str = "the desired count is within the acceptable range";
const TOO_MANY: &str = "the desired replica count is more than the maximum replica count";
const TOO_FEW: &str = "the desired replica count is less than the minimum replica count";
const UP_LIMIT: &str = "the desired replica count is increasing faster than the maximum scale rate";
const DOWN_LIMIT: &str =
    "the desired replica count is decreasing faster than the maximum scale rate";

impl History {
    /// Records `desired` and returns the stabilized recommendation: over the window of the
    /// direction of change, the lowest recommendation when scaling up, the highest when
    /// scaling down. The reason is `ScaleUpStabilized` or `ScaleDownStabilized`.
    pub fn stabilize(
        &mut self,
        now: f64,
        current: i32,
        desired: i32,
        up_window: i32,
        down_window: i32,
    ) -> Decision {
        let up = desired >= current;
        let window = if up { up_window } else { down_window };
        let cutoff = now - f64::from(window);
        let obsolete = now - f64::from(up_window.max(down_window));
        let mut recommendation = desired;
        for (at, r) in &self.recommendations {
            if *at > cutoff {
                recommendation = if up {
                    recommendation.min(*r)
                } else {
                    recommendation.max(*r)
                };
            }
        }
        match self
            .recommendations
            .iter_mut()
            .find(|(at, _)| *at < obsolete)
        {
            Some(old) => *old = (now, desired),
            None => self.recommendations.push((now, desired)),
        }
        if up {
            decision(recommendation, "ScaleUpStabilized", SCALE_UP_STABILIZED)
        } else {
            decision(recommendation, "ScaleDownStabilized", SCALE_DOWN_STABILIZED)
        }
    }

    /// Without `behavior`: records `desired` and returns the highest recommendation of the
    /// last [`DOWNSCALE_STABILIZATION`] seconds (Kubernetes' `stabilizeRecommendation`).
    pub fn stabilize_without_behavior(&mut self, now: f64, desired: i32) -> Decision {
        let cutoff = now - f64::from(DOWNSCALE_STABILIZATION);
        let mut recommendation = desired;
        for (at, r) in &self.recommendations {
            if *at > cutoff {
                recommendation = recommendation.max(*r);
            }
        }
        match self
            .recommendations
            .iter_mut()
            .find(|(at, _)| *at <= cutoff)
        {
            Some(old) => *old = (now, desired),
            None => self.recommendations.push((now, desired)),
        }
        decision(recommendation, "ScaleDownStabilized", SCALE_DOWN_STABILIZED)
    }

    /// Records a rescale from `from` to `to` at `now`; events older than the longest policy
    /// period of `behavior` are forgotten.
    pub fn record_scale(&mut self, now: f64, from: i32, to: i32, behavior: &Behavior) {
        let longest = |r: &Rules| r.policies.iter().map(|p| p.period).max().unwrap_or(0);
        let keep_up = now - f64::from(longest(&behavior.up));
        let keep_down = now - f64::from(longest(&behavior.down));
        self.ups.retain(|e| e.at > keep_up);
        self.downs.retain(|e| e.at > keep_down);
        if to > from {
            self.ups.push(ScaleEvent {
                at: now,
                change: to - from,
            });
        } else if to < from {
            self.downs.push(ScaleEvent {
                at: now,
                change: from - to,
            });
        }
    }

    fn changed_within(events: &[ScaleEvent], now: f64, period: i32) -> i32 {
        let cutoff = now - f64::from(period);
        events
            .iter()
            .filter(|e| e.at > cutoff)
            .map(|e| e.change)
            .sum()
    }

    /// The most replicas the scale-up rules allow now.
    fn scale_up_limit(&self, now: f64, current: i32, rules: &Rules) -> i32 {
        let (mut result, pick): (i32, fn(i32, i32) -> i32) = match rules.select {
            Select::Disabled => return current,
            Select::Min => (i32::MAX, i32::min),
            Select::Max => (i32::MIN, i32::max),
        };
        for p in &rules.policies {
            let start = current - Self::changed_within(&self.ups, now, p.period)
                + Self::changed_within(&self.downs, now, p.period);
            let proposed = match p.kind {
                PolicyKind::Pods => start + p.value,
                PolicyKind::Percent => {
                    (f64::from(start) * (1.0 + f64::from(p.value) / 100.0)).ceil() as i32
                }
            };
            result = pick(result, proposed);
        }
        result
    }

    /// The fewest replicas the scale-down rules allow now.
    fn scale_down_limit(&self, now: f64, current: i32, rules: &Rules) -> i32 {
        let (mut result, pick): (i32, fn(i32, i32) -> i32) = match rules.select {
            Select::Disabled => return current,
            Select::Min => (i32::MIN, i32::max),
            Select::Max => (i32::MAX, i32::min),
        };
        for p in &rules.policies {
            let start = current - Self::changed_within(&self.ups, now, p.period)
                + Self::changed_within(&self.downs, now, p.period);
            let proposed = match p.kind {
                PolicyKind::Pods => start - p.value,
                PolicyKind::Percent => {
                    (f64::from(start) * (1.0 - f64::from(p.value) / 100.0)) as i32
                }
            };
            result = pick(result, proposed);
        }
        result
    }

    /// `desired` (already stabilized) limited by the rate policies of `behavior` and by
    /// min/max replicas; the reason is that of `ScalingLimited`.
    pub fn limit(
        &self,
        now: f64,
        current: i32,
        desired: i32,
        min: i32,
        max: i32,
        behavior: &Behavior,
    ) -> Decision {
        if desired > current {
            let limit = self.scale_up_limit(now, current, &behavior.up).max(current);
            let (allowed, reason, message) = if max > limit {
                (limit, "ScaleUpLimit", UP_LIMIT)
            } else {
                (max, "TooManyReplicas", TOO_MANY)
            };
            if desired > allowed {
                return decision(allowed, reason, message);
            }
        } else if desired < current {
            let limit = self
                .scale_down_limit(now, current, &behavior.down)
                .min(current);
            let (allowed, reason, message) = if min < limit {
                (limit, "ScaleDownLimit", DOWN_LIMIT)
            } else {
                (min, "TooFewReplicas", TOO_FEW)
            };
            if desired < allowed {
                return decision(allowed, reason, message);
            }
        }
        decision(desired, "DesiredWithinRange", WITHIN_RANGE)
    }
}

/// Without `behavior`: min/max replicas and a scale-up limit of `max(2 × current, 4)`.
pub fn limit_without_behavior(current: i32, desired: i32, min: i32, max: i32) -> Decision {
    let up_limit = (2 * current).max(4);
    let (allowed, reason, message) = if max > up_limit {
        (up_limit, "ScaleUpLimit", UP_LIMIT)
    } else {
        (max, "TooManyReplicas", TOO_MANY)
    };
    if desired < min {
        decision(min, "TooFewReplicas", TOO_FEW)
    } else if desired > allowed {
        decision(allowed, reason, message)
    } else {
        decision(desired, "DesiredWithinRange", WITHIN_RANGE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn behavior(up_window: i32, down_window: i32) -> Behavior {
        let mut b = Behavior {
            up: Rules::default_up(),
            down: Rules::default_down(),
        };
        b.up.window = up_window;
        b.down.window = down_window;
        b
    }

    #[test]
    fn scaling_down_waits_for_the_highest_recommendation_in_the_window() {
        let mut h = History::default();
        assert_eq!(h.stabilize(0.0, 4, 4, 0, 60).replicas, 4);
        // 10 s later the metrics ask for 1: the 4 of 10 s ago still counts.
        let d = h.stabilize(10.0, 4, 1, 0, 60);
        assert_eq!((d.replicas, d.reason), (4, "ScaleDownStabilized"));
        // Once the window has passed over every higher recommendation, 1 it is.
        assert_eq!(h.stabilize(75.0, 4, 1, 0, 60).replicas, 1);
    }

    #[test]
    fn scaling_up_takes_the_lowest_recommendation_in_its_window() {
        let mut h = History::default();
        h.stabilize(0.0, 2, 2, 30, 300);
        assert_eq!(h.stabilize(10.0, 2, 6, 30, 300).replicas, 2);
        assert_eq!(h.stabilize(10.0, 2, 6, 0, 300).replicas, 6);
    }

    #[test]
    fn policies_limit_the_rate_and_select_policy_picks_one() {
        let h = History::default();
        let b = behavior(0, 0);
        // Default scale-up: max(double, +4) per 15 s.
        let d = h.limit(0.0, 1, 10, 1, 20, &b);
        assert_eq!((d.replicas, d.reason), (5, "ScaleUpLimit"));
        let d = h.limit(0.0, 8, 30, 1, 20, &b);
        assert_eq!((d.replicas, d.reason), (16, "ScaleUpLimit"));
        // The max replicas is lower than the rate limit.
        let d = h.limit(0.0, 8, 30, 1, 10, &b);
        assert_eq!((d.replicas, d.reason), (10, "TooManyReplicas"));
        // selectPolicy Min picks the slower policy.
        let mut slow = b.clone();
        slow.up.select = Select::Min;
        assert_eq!(h.limit(0.0, 8, 30, 1, 40, &slow).replicas, 12);
        slow.up.select = Select::Disabled;
        assert_eq!(h.limit(0.0, 8, 30, 1, 40, &slow).replicas, 8);
        // Scale down by at most one pod per minute, never below min.
        let mut gentle = b.clone();
        gentle.down.policies = vec![Policy {
            kind: PolicyKind::Pods,
            value: 1,
            period: 60,
        }];
        let d = h.limit(0.0, 5, 1, 1, 10, &gentle);
        assert_eq!((d.replicas, d.reason), (4, "ScaleDownLimit"));
        let d = h.limit(0.0, 5, 1, 3, 10, &b);
        assert_eq!((d.replicas, d.reason), (3, "TooFewReplicas"));
        let d = h.limit(0.0, 5, 4, 3, 10, &b);
        assert_eq!((d.replicas, d.reason), (4, "DesiredWithinRange"));
    }

    #[test]
    fn a_period_counts_from_the_replicas_at_its_start() {
        let mut h = History::default();
        let mut b = behavior(0, 0);
        b.up.policies = vec![Policy {
            kind: PolicyKind::Pods,
            value: 2,
            period: 60,
        }];
        h.record_scale(0.0, 2, 4, &b);
        // Within the minute, 4 was reached from 2: no more room.
        assert_eq!(h.limit(30.0, 4, 10, 1, 10, &b).replicas, 4);
        // After it, two more.
        assert_eq!(h.limit(61.0, 4, 10, 1, 10, &b).replicas, 6);
    }

    #[test]
    fn without_behavior_scale_up_is_at_most_double_or_four() {
        assert_eq!(limit_without_behavior(1, 10, 1, 10).replicas, 4);
        assert_eq!(limit_without_behavior(3, 10, 1, 10).replicas, 6);
        assert_eq!(
            limit_without_behavior(3, 10, 1, 5).reason,
            "TooManyReplicas"
        );
        assert_eq!(limit_without_behavior(3, 0, 2, 5).replicas, 2);
    }
}
