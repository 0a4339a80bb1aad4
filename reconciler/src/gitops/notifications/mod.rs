//! Notifications: Application events (sync succeeded or failed, health degraded or recovered,
//! a new revision deployed) sent to the services an Application subscribes to, configured
//! declaratively in Argo CD notifications' layout ([`config`]).
//!
//! The notifier is its own loop beside the syncer, never in a sync's way. Its events:
//! - a **tick** (every [`RELOAD`]) reads the ConfigMap and the Secret again and looks at every
//!   Application;
//! - a **watch event** looks at the Application that changed;
//! - a **delivery done** records the event on the Application.
//!
//! Looking at an Application that subscribes to something: the due events ([`triggers::due`])
//! that it subscribes to, with the templates of the trigger's conditions whose `when` holds
//! ([`config::Condition::selects`]; one that cannot be evaluated is a Warning Event
//! `NotificationConditionFailed` on the Application and sends nothing), are delivered, each on its own task with retries and back-off
//! ([`deliver::send`]), and recorded in the `notified.notifications.argoproj.io` annotation
//! once sent (or given up on after the last retry); events nobody subscribes to are recorded at
//! once. An event in flight is not started again, and a recorded one is never sent again, also
//! after a restart (an event sent but not yet recorded when the process stopped is sent again:
//! at least once). A configuration that cannot be used (an unknown key, an invalid `when`) is
//! a Warning Event `InvalidNotificationConfig` on the ConfigMap, and nothing is sent until it is
//! fixed.

pub mod config;
pub mod deliver;
pub mod triggers;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use apimachinery::object::ObjectExt;
use config::Config;
use k8s_openapi::api::core::v1::ObjectReference;

use crate::events::{EventType, Recorder};
use triggers::{Event, Record};

use super::syncer::application_resource;

/// Where the configuration lives.
pub const NAMESPACE: &str = "gitplane-system";
/// The prefix of subscription annotations (Argo CD's spelling).
pub const SUBSCRIBE: &str = "notifications.argoproj.io/subscribe.";
/// How often the configuration is read again and every Application looked at.
pub const RELOAD: Duration = Duration::from_secs(2);

/// A finished delivery of one event of one Application.
struct Done {
    app: String,
    event: Event,
}

/// The notifier.
pub struct Notifier {
    client: kube::Client,
    apps: Api<DynamicObject>,
    config: Option<Config>,
    /// The last configuration error, logged once.
    config_error: Option<String>,
    in_flight: HashSet<(String, Event)>,
    /// What was recorded by this process, ahead of the annotation the store shows.
    records: HashMap<String, Record>,
    done_tx: mpsc::UnboundedSender<Done>,
    /// Events about the configuration and the Applications.
    recorder: Recorder,
}

/// The reporting component of the notifier's Events (Argo CD's controller's name).
pub const COMPONENT: &str = "argocd-notifications-controller";

impl Notifier {
    /// Runs the notifier with `client` until `shutdown` resolves.
    pub async fn run(client: kube::Client, shutdown: impl Future<Output = ()>) {
        let apps: Api<DynamicObject> = Api::all_with(client.clone(), &application_resource());
        let writer = reflector::store::Writer::new(application_resource());
        let store = writer.as_reader();
        let events =
            reflector(writer, watcher(apps.clone(), watcher::Config::default())).default_backoff();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        let client_for_events = client.clone();
        let mut n = Notifier {
            client,
            apps,
            config: None,
            config_error: None,
            in_flight: HashSet::new(),
            records: HashMap::new(),
            done_tx,
            recorder: Recorder::start(client_for_events, COMPONENT.into(), "gitplane".into()),
        };
        tokio::pin!(shutdown, events);
        let mut tick = tokio::time::interval(RELOAD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tick.tick() => {
                    n.reload().await;
                    for app in store.state() {
                        n.look_at(&app).await;
                    }
                }
                event = events.next() => match event {
                    Some(Ok(watcher::Event::Apply(app) | watcher::Event::InitApply(app))) => {
                        n.look_at(&app).await;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => tracing::warn!(error = %e, "notifier: watching Applications failed"),
                    None => return,
                },
                Some(done) = done_rx.recv() => {
                    n.in_flight.remove(&(done.app.clone(), done.event.clone()));
                    n.record(&done.app, &[done.event]).await;
                }
            }
        }
    }

    /// Reads the ConfigMap and the Secret; a broken configuration is logged and reported as a
    /// Warning Event on the ConfigMap (once per error) and notifies nothing until fixed.
    async fn reload(&mut self) {
        let cms: Api<ConfigMap> = Api::namespaced(self.client.clone(), NAMESPACE);
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), NAMESPACE);
        let cm = match cms.get_opt(config::CONFIG_MAP).await {
            Ok(Some(cm)) => cm,
            Ok(None) => {
                self.config = None;
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "notifier: reading the configuration failed");
                return;
            }
        };
        // `stringData` is read too: this API server stores it as written.
        let secret: BTreeMap<String, String> = match secrets.get_opt(config::SECRET).await {
            Ok(s) => s
                .map(|s| {
                    let data = s.data.unwrap_or_default().into_iter();
                    data.map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                        .chain(s.string_data.unwrap_or_default())
                        .collect()
                })
                .unwrap_or_default(),
            Err(e) => {
                tracing::debug!(error = %e, "notifier: reading the secret failed");
                return;
            }
        };
        match Config::parse(&cm.data.clone().unwrap_or_default(), &secret) {
            Ok(c) => {
                self.config = Some(c);
                self.config_error = None;
            }
            Err(e) => {
                let message = e.to_string();
                if self.config_error.as_ref() != Some(&message) {
                    tracing::warn!(error = %message, "notifications configuration refused");
                    self.recorder.publish(
                        &cm,
                        EventType::Warning,
                        "InvalidNotificationConfig",
                        "Notify",
                        format!("{message}; nothing is sent until it is fixed"),
                    );
                }
                self.config = None;
                self.config_error = Some(message);
            }
        }
    }

    /// Starts the deliveries an Application's due events call for.
    async fn look_at(&mut self, app: &DynamicObject) {
        let Some(config) = self.config.clone() else {
            return;
        };
        let Ok(app) = serde_json::to_value(app) else {
            return;
        };
        let annotations = app.annotations();
        let subscriptions = config::subscriptions(&annotations);
        if subscriptions.is_empty() {
            return;
        }
        let name = app.name().unwrap_or("").to_string();
        let mut record = triggers::read_record(&annotations);
        if let Some(ours) = self.records.get(&name) {
            record.extend(ours.clone());
        }
        let mut quiet = Vec::new();
        for event in triggers::due(&app, &record) {
            let key = (name.clone(), event.clone());
            if self.in_flight.contains(&key) {
                continue;
            }
            let services: Vec<&String> = subscriptions
                .iter()
                .filter(|(t, _)| *t == event.trigger)
                .map(|(_, s)| s)
                .collect();
            let conditions = config.triggers.get(&event.trigger);
            if !triggers::notifies(&event, &record) || services.is_empty() || conditions.is_none() {
                quiet.push(event);
                continue;
            }
            let mut templates = Vec::new();
            for condition in conditions.into_iter().flatten() {
                match condition.selects(event.trigger, &app) {
                    Ok(true) => templates.extend(condition.send.iter()),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(app = %name, error = %e, "notifications: a trigger's condition failed");
                        self.recorder.send(apimachinery::event::Record {
                            regarding: reference(&app),
                            type_: EventType::Warning,
                            reason: "NotificationConditionFailed".into(),
                            action: "Notify".into(),
                            message: format!("{e}; not sent"),
                        });
                    }
                }
            }
            if templates.is_empty() {
                quiet.push(event);
                continue;
            }
            let mut requests = Vec::new();
            for service_name in services {
                let Some(service) = config.services.get(service_name) else {
                    tracing::warn!(app = %name, service = %service_name, "notifications: the subscription names no configured service");
                    continue;
                };
                for template_name in templates.iter().copied() {
                    let template = &config.templates[template_name];
                    match deliver::request(
                        service_name,
                        service,
                        template_name.as_str(),
                        template,
                        event.trigger,
                        &app,
                    ) {
                        Ok(r) => requests.push((service_name.clone(), r)),
                        Err(e) => tracing::warn!(app = %name, error = %e, "notification not sent"),
                    }
                }
            }
            self.in_flight.insert(key);
            let done = self.done_tx.clone();
            let app_name = name.clone();
            tokio::spawn(async move {
                for (service, request) in requests {
                    let result = deliver::send(request).await;
                    if let Err(e) = &result {
                        tracing::warn!(app = %app_name, trigger = event.trigger.name(), %service, error = %e, "notification not delivered");
                    }
                    telemetry::argocd::metrics()
                        .deliveries
                        .get_or_create(&telemetry::argocd::DeliveryLabels {
                            trigger: event.trigger.name().to_string(),
                            notifier: service,
                            succeeded: if result.is_ok() { "true" } else { "false" },
                        })
                        .inc();
                }
                let _ = done.send(Done {
                    app: app_name,
                    event,
                });
            });
        }
        if !quiet.is_empty() {
            self.record(&name, &quiet).await;
        }
    }

    /// Records `events` of the Application `name` in its annotation.
    async fn record(&mut self, name: &str, events: &[Event]) {
        let ours = self.records.entry(name.to_string()).or_default();
        for e in events {
            e.record(ours);
        }
        let mut record = match self.apps.get_opt(name).await {
            Ok(Some(app)) => triggers::read_record(&app.metadata.annotations.unwrap_or_default()),
            Ok(None) => {
                self.records.remove(name);
                return;
            }
            Err(e) => {
                tracing::warn!(app = %name, error = %e, "notifier: reading the application failed");
                return;
            }
        };
        record.extend(self.records.get(name).cloned().unwrap_or_default());
        let text = serde_json::to_string(&record).unwrap_or_default();
        let patch: Value = json!({"metadata": {"annotations": {triggers::NOTIFIED: text}}});
        if let Err(e) = self
            .apps
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            tracing::warn!(app = %name, error = %e, "notifier: recording the notification failed");
        }
    }
}

/// A reference to an Application (as JSON) for an Event.
fn reference(app: &Value) -> ObjectReference {
    let text = |path: &str| {
        app.pointer(path)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    ObjectReference {
        api_version: text("/apiVersion"),
        kind: text("/kind"),
        name: text("/metadata/name"),
        namespace: text("/metadata/namespace"),
        uid: text("/metadata/uid"),
        resource_version: text("/metadata/resourceVersion"),
        ..ObjectReference::default()
    }
}
