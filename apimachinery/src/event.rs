//! `core/v1` Events as Kubernetes' components write them: one builder for the controllers,
//! the scheduler and the node agents, so that every Event carries the same fields (type,
//! reason, action, source, reporting component and instance, first and last timestamps).
//! Writing them (and bumping the count of repeats) is the caller's.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

/// `Normal` or `Warning`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something went wrong.
    Warning,
}

impl EventType {
    /// `Normal` or `Warning`, as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// One Event to write.
#[derive(Clone, Debug)]
pub struct Record {
    /// The object the Event is about.
    pub regarding: ObjectReference,
    /// `Normal` or `Warning`.
    pub type_: EventType,
    /// Kubernetes' reason (`Scheduled`, `ScalingReplicaSet`, `SuccessfulCreate`, ...).
    pub reason: String,
    /// What was done (`Binding`, `Scaling`, `Create`, ...; empty: not said, as the kubelet).
    pub action: String,
    /// The message, in Kubernetes' words.
    pub message: String,
}

/// Who reports an Event.
#[derive(Clone, Debug)]
pub struct Reporter {
    /// `source.component` and `reportingComponent` (`kubelet`, `deployment-controller`).
    pub component: String,
    /// `reportingInstance` (the node or replica name).
    pub instance: String,
    /// `source.host` (the node, for node agents).
    pub host: Option<String>,
}

/// The Event to create for `record` at `now` (count 1, named `<object>.<random>`, in the
/// object's namespace or `default`).
pub fn new_event(record: Record, reporter: &Reporter, now: Timestamp) -> Event {
    let now = Time(now);
    let namespace = record
        .regarding
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    Event {
        metadata: ObjectMeta {
            generate_name: Some(format!(
                "{}.",
                record.regarding.name.as_deref().unwrap_or("event")
            )),
            namespace: Some(namespace),
            ..ObjectMeta::default()
        },
        involved_object: record.regarding,
        reason: Some(record.reason),
        message: Some(record.message),
        type_: Some(record.type_.as_str().into()),
        count: Some(1),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        source: Some(EventSource {
            component: Some(reporter.component.clone()),
            host: reporter.host.clone(),
        }),
        reporting_component: Some(reporter.component.clone()),
        reporting_instance: Some(reporter.instance.clone()),
        action: (!record.action.is_empty()).then_some(record.action),
        ..Event::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(record: Record, reporter: Reporter, expected: serde_json::Value) {
        let now = Timestamp::from_second(60).unwrap();
        let got = serde_json::to_value(new_event(record, &reporter, now)).unwrap();
        assert_eq!(got, expected);
    }

    #[test]
    fn events_carry_their_object_reason_and_reporter() {
        let pod = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some("web-1".into()),
            namespace: Some("shop".into()),
            uid: Some("u1".into()),
            ..ObjectReference::default()
        };
        check(
            Record {
                regarding: pod,
                type_: EventType::Warning,
                reason: "BackOff".into(),
                action: "Start".into(),
                message: "Back-off restarting failed container".into(),
            },
            Reporter {
                component: "kubelet".into(),
                instance: "n1".into(),
                host: Some("n1".into()),
            },
            json!({
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"generateName": "web-1.", "namespace": "shop"},
                "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": "web-1",
                    "namespace": "shop", "uid": "u1"},
                "reason": "BackOff", "message": "Back-off restarting failed container",
                "type": "Warning", "count": 1, "action": "Start",
                "firstTimestamp": "1970-01-01T00:01:00Z", "lastTimestamp": "1970-01-01T00:01:00Z",
                "source": {"component": "kubelet", "host": "n1"},
                "reportingComponent": "kubelet", "reportingInstance": "n1",
            }),
        );
        check(
            Record {
                regarding: ObjectReference {
                    kind: Some("Node".into()),
                    name: Some("n1".into()),
                    ..ObjectReference::default()
                },
                type_: EventType::Normal,
                reason: "RegisteredNode".into(),
                action: "Register".into(),
                message: "Registered".into(),
            },
            Reporter {
                component: "node-controller".into(),
                instance: "gitplane".into(),
                host: None,
            },
            json!({
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"generateName": "n1.", "namespace": "default"},
                "involvedObject": {"kind": "Node", "name": "n1"},
                "reason": "RegisteredNode", "message": "Registered",
                "type": "Normal", "count": 1, "action": "Register",
                "firstTimestamp": "1970-01-01T00:01:00Z", "lastTimestamp": "1970-01-01T00:01:00Z",
                "source": {"component": "node-controller"},
                "reportingComponent": "node-controller", "reportingInstance": "gitplane",
            }),
        );
    }
}

/// `core/v1` Event fields and their `events.k8s.io/v1` names (Kubernetes' conversion of the
/// two versions, which share storage).
const EVENTS_V1_NAMES: [(&str, &str); 7] = [
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

fn rename(obj: &serde_json::Value, api_version: &str, to_v1: bool) -> serde_json::Value {
    let mut out = obj.clone();
    let Some(map) = out.as_object_mut() else {
        return out;
    };
    for (core, v1) in EVENTS_V1_NAMES {
        let (from, to) = if to_v1 { (core, v1) } else { (v1, core) };
        match map.remove(from) {
            Some(v) if !v.is_null() => {
                map.insert(to.to_string(), v);
            }
            _ => {}
        }
    }
    map.insert("apiVersion".into(), api_version.into());
    map.insert("kind".into(), "Event".into());
    out
}

/// A stored (`core/v1`) Event as `events.k8s.io/v1` serves it.
pub fn to_events_v1(core: &serde_json::Value) -> serde_json::Value {
    rename(core, "events.k8s.io/v1", true)
}

/// An `events.k8s.io/v1` Event in the `core/v1` form it is stored in.
pub fn from_events_v1(event: &serde_json::Value) -> serde_json::Value {
    rename(event, "v1", false)
}

#[cfg(test)]
mod conversion_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_convert_both_ways() {
        let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "note": "hi", "regarding": {"kind": "Pod", "name": "p"}, "reason": "R",
            "reportingController": "c", "reportingInstance": "i", "deprecatedCount": 2,
            "eventTime": "2026-01-01T00:00:00.000000Z"});
        let core = from_events_v1(&v1);
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["message"], "hi");
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core["reportingComponent"], "c");
        assert_eq!(core["count"], 2);
        assert!(core.get("note").is_none());
        assert_eq!(to_events_v1(&core), v1);
    }
}
