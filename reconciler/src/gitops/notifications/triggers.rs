//! When a notification is due (pure): the five triggers, each with its built-in condition on an
//! Application's status, and the record of what was notified, kept on the Application in the
//! annotation `notified.notifications.argoproj.io` so that a restart sends nothing twice.
//!
//! The record holds, per sync trigger, the revision it was last sent for (a sync that fails
//! again and again on one commit, retried with back-off, is one notification), and the last
//! health among `Healthy` and `Degraded` (a change between them is an event;
//! `on-health-recovered` comes only after a degradation).

use std::collections::BTreeMap;

use serde_json::Value;

/// A trigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Trigger {
    /// A sync operation succeeded.
    SyncSucceeded,
    /// A sync operation failed.
    SyncFailed,
    /// The Application's health became `Degraded`.
    HealthDegraded,
    /// The Application's health became `Healthy` after `Degraded`.
    HealthRecovered,
    /// A new revision was synced and is healthy.
    Deployed,
}

impl Trigger {
    /// Every trigger.
    pub const ALL: [Trigger; 5] = [
        Trigger::SyncSucceeded,
        Trigger::SyncFailed,
        Trigger::HealthDegraded,
        Trigger::HealthRecovered,
        Trigger::Deployed,
    ];

    /// Its name in the configuration and in subscriptions.
    pub fn name(self) -> &'static str {
        match self {
            Trigger::SyncSucceeded => "on-sync-succeeded",
            Trigger::SyncFailed => "on-sync-failed",
            Trigger::HealthDegraded => "on-health-degraded",
            Trigger::HealthRecovered => "on-health-recovered",
            Trigger::Deployed => "on-deployed",
        }
    }

    /// The trigger named `name`.
    pub fn parse(name: &str) -> Option<Trigger> {
        Trigger::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The record's field this trigger updates.
    fn field(self) -> &'static str {
        match self {
            Trigger::HealthDegraded | Trigger::HealthRecovered => "health",
            other => other.name(),
        }
    }

    /// Whether it reports something that went wrong (a commit status' default state).
    pub fn is_failure(self) -> bool {
        matches!(self, Trigger::SyncFailed | Trigger::HealthDegraded)
    }
}

/// The annotation holding what was notified.
pub const NOTIFIED: &str = "notified.notifications.argoproj.io";

/// What was notified: field → value (a revision, or the last health).
pub type Record = BTreeMap<String, String>;

/// One due event: the trigger, and the value the record takes once it is handled.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Event {
    /// The trigger.
    pub trigger: Trigger,
    /// The record's new value (the revision; the health).
    pub value: String,
}

impl Event {
    /// Records this event as handled.
    pub fn record(&self, record: &mut Record) {
        record.insert(self.trigger.field().to_string(), self.value.clone());
    }
}

/// The record in an Application's annotations (empty when absent or unreadable).
pub fn read_record(annotations: &BTreeMap<String, String>) -> Record {
    annotations
        .get(NOTIFIED)
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default()
}

/// The events due for an Application (as JSON) given its record.
pub fn due(app: &Value, record: &Record) -> Vec<Event> {
    let text = |path: &str| app.pointer(path).and_then(Value::as_str).unwrap_or("");
    let phase = text("/status/operationState/phase");
    let revision = text("/status/operationState/revision");
    let health = text("/status/health/status");
    let seen = |t: Trigger| record.get(t.field()).map(String::as_str);
    let mut events = Vec::new();
    let mut fire = |trigger: Trigger, value: &str| {
        if seen(trigger) != Some(value) {
            events.push(Event {
                trigger,
                value: value.to_string(),
            });
        }
    };
    if !revision.is_empty() {
        match phase {
            "Succeeded" => {
                fire(Trigger::SyncSucceeded, revision);
                if health == "Healthy" {
                    fire(Trigger::Deployed, revision);
                }
            }
            "Failed" | "Error" => fire(Trigger::SyncFailed, revision),
            _ => {}
        }
    }
    match (health, seen(Trigger::HealthDegraded)) {
        ("Degraded", _) => fire(Trigger::HealthDegraded, "Degraded"),
        ("Healthy", Some("Degraded")) => fire(Trigger::HealthRecovered, "Healthy"),
        // The first Healthy is recorded without a notification, so that a later degradation
        // is a change.
        ("Healthy", None) => fire(Trigger::HealthRecovered, "Healthy"),
        _ => {}
    }
    events
}

/// Whether `event` is worth a notification (the first `Healthy` of an Application is only
/// recorded).
pub fn notifies(event: &Event, record: &Record) -> bool {
    event.trigger != Trigger::HealthRecovered
        || record.get("health").map(String::as_str) == Some("Degraded")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn app(phase: &str, revision: &str, health: &str) -> Value {
        json!({"status": {
            "operationState": {"phase": phase, "revision": revision},
            "health": {"status": health},
        }})
    }

    fn record(pairs: &[(&str, &str)]) -> Record {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The notifications `app` gets with `rec` (the triggers of the due events that notify).
    fn check(app: Value, rec: &[(&str, &str)], expected: &[Trigger]) {
        let rec = record(rec);
        let got: Vec<Trigger> = due(&app, &rec)
            .into_iter()
            .filter(|e| notifies(e, &rec))
            .map(|e| e.trigger)
            .collect();
        assert_eq!(got, expected, "{app} with {rec:?}");
    }

    #[test]
    fn each_trigger_fires_once_per_revision_or_health_change() {
        use Trigger::*;
        check(
            app("Succeeded", "a", "Healthy"),
            &[],
            &[SyncSucceeded, Deployed],
        );
        check(
            app("Succeeded", "a", "Healthy"),
            &[
                ("on-sync-succeeded", "a"),
                ("on-deployed", "a"),
                ("health", "Healthy"),
            ],
            &[],
        );
        check(
            app("Failed", "b", "Healthy"),
            &[("on-sync-succeeded", "a"), ("health", "Healthy")],
            &[SyncFailed],
        );
        check(
            app("Failed", "b", "Healthy"),
            &[("on-sync-failed", "b"), ("health", "Healthy")],
            &[],
        );
        check(
            app("Succeeded", "c", "Progressing"),
            &[("on-sync-succeeded", "a")],
            &[SyncSucceeded],
        );
        check(
            app("Succeeded", "c", "Degraded"),
            &[("on-sync-succeeded", "c"), ("health", "Healthy")],
            &[HealthDegraded],
        );
        check(
            app("Succeeded", "c", "Degraded"),
            &[("on-sync-succeeded", "c"), ("health", "Degraded")],
            &[],
        );
        check(
            app("Succeeded", "c", "Healthy"),
            &[
                ("on-sync-succeeded", "c"),
                ("on-deployed", "c"),
                ("health", "Degraded"),
            ],
            &[HealthRecovered],
        );
        check(
            app("Running", "d", "Healthy"),
            &[("health", "Healthy")],
            &[],
        );
    }

    #[test]
    fn the_first_healthy_is_recorded_without_a_notification() {
        let events = due(&app("", "", "Healthy"), &Record::new());
        assert_eq!(events.len(), 1);
        assert!(!notifies(&events[0], &Record::new()));
        let mut rec = Record::new();
        events[0].record(&mut rec);
        assert_eq!(rec, record(&[("health", "Healthy")]));
    }
}
