//! The HorizontalPodAutoscaler controller (`autoscaling/v2`): every sync period
//! (`Config::hpa_sync_period`, Kubernetes' `--horizontal-pod-autoscaler-sync-period`) and on
//! every change of an autoscaler, it reads the target's `scale` subresource (any kind that
//! serves one: Deployments, ReplicaSets, StatefulSets, ReplicationControllers, custom
//! resources), the pods its `status.selector` matches (shared informer) and their
//! `metrics.k8s.io` PodMetrics, computes the replicas each `Resource` metric asks for
//! (`replicas`), takes the highest, applies the stabilization windows, `behavior` policies and
//! min/max replicas (`behavior`), writes the scale when it changes (a `SuccessfulRescale`
//! Event: `New size: N; reason: cpu resource utilization (percentage of request) above
//! target`), and reports `status` (current and desired replicas, current metrics, last scale
//! time) with the `AbleToScale`, `ScalingActive` and `ScalingLimited` conditions, worded as
//! Kubernetes words them.
//!
//! The API server stores every autoscaler as v2 and converts `autoscaling/v1` objects (what
//! `kubectl autoscale` writes), so the controller reads and writes v2 only.
//!
//! `Resource` and `ContainerResource` metrics are computed (the latter from one container's
//! usage and request); gitplane serves no custom or external metrics API, so a `Pods`,
//! `Object` or `External` metric fails as Kubernetes' fails without one
//! (`FailedGetPodsMetric`, `FailedGetObjectMetric`, `FailedGetExternalMetric`: `ScalingActive`
//! false unless another metric asks for more replicas, and a Warning Event). Recommendations
//! and scale events are kept in memory per autoscaler, as in Kubernetes (a new leader starts
//! with none).

pub mod behavior;
pub mod replicas;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use apimachinery::quantity;
use apimachinery::selector::LabelSelector;
use futures::FutureExt;
use k8s_openapi::api::autoscaling::v2::{
    HPAScalingRules, HorizontalPodAutoscaler, MetricSpec, MetricTarget,
};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DynamicObject, ListParams, Patch};
use kube::core::GroupVersionKind;
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::runtime::{Controller, watcher};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use super::{Context, Error, api_error, key_of};
use crate::events::EventType;
use behavior::{Behavior, Decision, History, Policy, PolicyKind, Rules, Select};
use replicas::{Metric, PodSample, Readiness, Target};

/// An autoscaler as the v2 endpoint serves it, read leniently: an object the typed v2 struct
/// cannot read is logged and skipped rather than breaking the watch.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
pub struct StoredHpa {
    /// Metadata.
    pub metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    /// Everything else, as stored.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, Value>,
}

impl kube::Resource for StoredHpa {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "HorizontalPodAutoscaler".into()
    }

    fn group(_: &()) -> Cow<'_, str> {
        "autoscaling".into()
    }

    fn version(_: &()) -> Cow<'_, str> {
        "v2".into()
    }

    fn plural(_: &()) -> Cow<'_, str> {
        "horizontalpodautoscalers".into()
    }

    fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        &mut self.metadata
    }
}

/// What the reconciles share: the pod store and each autoscaler's history.
struct Shared {
    pods: Store<Pod>,
    histories: Mutex<HashMap<String, History>>,
}

/// Runs the controller until the context stops.
pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let (hpas, stream) = ctx.reflect(
        Api::<StoredHpa>::all(ctx.client.clone()),
        watcher::Config::default(),
    );
    let pods = ctx.informer::<Pod>();
    let controller = Controller::for_stream(stream, hpas.clone());
    ctx.synced(&pods).await?;
    ctx.ready(&hpas).await?;
    let shared = Arc::new(Shared {
        pods: pods.store(),
        histories: Mutex::new(HashMap::new()),
    });
    ctx.drive(controller, move |hpa, ctx| {
        reconcile(hpa, ctx, shared.clone()).boxed()
    })
    .await;
    Ok(())
}

fn now() -> (f64, String) {
    let t = jiff::Timestamp::now();
    let text = t
        .round(jiff::Unit::Second)
        .map(|r| r.to_string())
        .unwrap_or_else(|_| t.to_string());
    (t.as_millisecond() as f64 / 1000.0, text)
}

fn seconds(rfc3339: Option<&str>) -> Option<f64> {
    rfc3339
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| t.as_millisecond() as f64 / 1000.0)
}

/// The conditions of an autoscaler's status, kept in Kubernetes' order, each keeping its
/// `lastTransitionTime` while its status stays.
struct Conditions {
    list: Vec<Value>,
    now: String,
}

impl Conditions {
    fn set(&mut self, type_: &str, status: bool, reason: &str, message: String) {
        let status = if status { "True" } else { "False" };
        let since = self
            .list
            .iter()
            .find(|c| c["type"] == type_ && c["status"] == status)
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(self.now));
        let condition = json!({"type": type_, "status": status, "lastTransitionTime": since,
                               "reason": reason, "message": message});
        match self.list.iter_mut().find(|c| c["type"] == type_) {
            Some(c) => *c = condition,
            None => self.list.push(condition),
        }
    }
}

/// The scale target's API, from its `apiVersion` and `kind` (through discovery).
async fn target_api(
    ctx: &Context,
    ns: &str,
    api_version: &str,
    kind: &str,
) -> Result<Api<DynamicObject>, String> {
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (resource, _) = kube::discovery::pinned_kind(&ctx.client, &gvk)
        .await
        .map_err(|e| format!("unable to find the resource of {kind} in {api_version}: {e}"))?;
    Ok(Api::namespaced_with(ctx.client.clone(), ns, &resource))
}

/// The PodMetrics of a namespace's pods matching `selector`, by pod name.
async fn pod_metrics(
    ctx: &Context,
    ns: &str,
    selector: &str,
) -> Result<HashMap<String, Value>, String> {
    let resource = kube::core::ApiResource {
        group: apimachinery::metrics::GROUP.into(),
        version: apimachinery::metrics::VERSION.into(),
        api_version: format!(
            "{}/{}",
            apimachinery::metrics::GROUP,
            apimachinery::metrics::VERSION
        ),
        kind: "PodMetrics".into(),
        plural: "pods".into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &resource);
    let list = api
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| format!("unable to fetch metrics from resource metrics API: {e}"))?;
    Ok(list
        .items
        .into_iter()
        .map(|m| (m.name_any(), m.data))
        .collect())
}

/// The window of a PodMetrics (`10s`, `1.5s`, `1m0s`), seconds.
fn window(text: &str) -> f64 {
    let mut total = 0.0;
    let mut number = String::new();
    for c in text.chars() {
        match c {
            '0'..='9' | '.' => number.push(c),
            'h' | 'm' | 's' => {
                let n: f64 = number.parse().unwrap_or(0.0);
                total += n * match c {
                    'h' => 3600.0,
                    'm' => 60.0,
                    _ => 1.0,
                };
                number.clear();
            }
            _ => {}
        }
    }
    total
}

/// What the calculator needs of a pod for `resource`, of all its containers or of the one
/// named `container` (a `ContainerResource` metric).
fn sample(pod: &Pod, resource: &str, container: Option<&str>, metric: Option<&Value>) -> PodSample {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut request = Ok(0i64);
    if let Some(name) = container
        && !spec.containers.iter().any(|c| c.name == name)
    {
        request = Err(name.to_string());
    }
    let counted = |name: &str| container.is_none_or(|c| c == name);
    for c in spec.containers.iter().filter(|c| counted(&c.name)) {
        let asked = c
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get(resource))
            .and_then(|q| quantity::parse_milli(&q.0));
        request = match (request, asked) {
            (Ok(sum), Some(r)) => Ok(sum + r),
            (Ok(_), None) => Err(c.name.clone()),
            (e, _) => e,
        };
    }
    let status = pod.status.clone().unwrap_or_default();
    let readiness = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| Readiness {
            ready: c.status == "True",
            since: c
                .last_transition_time
                .map(|t| t.0.as_millisecond() as f64 / 1000.0)
                .unwrap_or(0.0),
        });
    let metric = metric.and_then(|m| {
        let containers = m["containers"].as_array()?;
        let mut milli = 0;
        let mut found = false;
        for c in containers {
            if counted(c["name"].as_str().unwrap_or("")) {
                milli += quantity::parse_milli(c["usage"][resource].as_str()?)?;
                found = true;
            }
        }
        if !found && container.is_some() {
            return None;
        }
        Some(Metric {
            milli,
            at: seconds(m["timestamp"].as_str())?,
            window: window(m["window"].as_str().unwrap_or("")),
        })
    });
    PodSample {
        name: pod.name_any(),
        phase: status.phase.unwrap_or_default(),
        deleting: pod.metadata.deletion_timestamp.is_some(),
        readiness,
        started: status
            .start_time
            .map(|t| t.0.as_millisecond() as f64 / 1000.0),
        request,
        metric,
    }
}

/// One metric's proposal, its name for Events and its `currentMetrics` entry.
struct MetricResult {
    replicas: i32,
    name: String,
    current: Value,
}

/// A metric that could not be computed: the condition's reason and message.
struct MetricFailure {
    reason: &'static str,
    message: String,
}

/// The failure of a metric that needs a custom or external metrics API (`Pods`, `Object`,
/// `External`), worded as Kubernetes words it when no such API is registered.
fn unserved_metric(spec: &MetricSpec) -> MetricFailure {
    let custom = "unable to fetch metrics from custom metrics API: no custom metrics API (custom.metrics.k8s.io) registered";
    let (reason, what) = match spec.type_.as_str() {
        "Pods" => (
            "FailedGetPodsMetric",
            match &spec.pods {
                Some(p) => format!("unable to get metric {}: {custom}", p.metric.name),
                None => "spec.metrics: pods: Required value".into(),
            },
        ),
        "Object" => (
            "FailedGetObjectMetric",
            match &spec.object {
                Some(o) => format!(
                    "unable to get metric {}: {}/{}: {custom}",
                    o.metric.name, o.described_object.kind, o.described_object.name
                ),
                None => "spec.metrics: object: Required value".into(),
            },
        ),
        "External" => (
            "FailedGetExternalMetric",
            match &spec.external {
                Some(e) => format!(
                    "unable to get external metric {}: unable to fetch metrics from external metrics API: no external metrics API (external.metrics.k8s.io) registered",
                    e.metric.name
                ),
                None => "spec.metrics: external: Required value".into(),
            },
        ),
        other => (
            "InvalidMetricSourceType",
            format!("unknown metric source type {other:?}"),
        ),
    };
    MetricFailure {
        reason,
        message: format!("the HPA was unable to compute the replica count: {what}"),
    }
}

/// A `Resource` or `ContainerResource` metric's proposal.
fn resource_metric(
    spec: &MetricSpec,
    current: i32,
    pods: &[&Pod],
    metrics: &Result<HashMap<String, Value>, String>,
    now: f64,
) -> Result<MetricResult, MetricFailure> {
    let missing = |field: &str| MetricFailure {
        reason: "InvalidMetricSourceType",
        message: format!(
            "the HPA was unable to compute the replica count: spec.metrics: {field}: Required value"
        ),
    };
    let (source, container) = match spec.type_.as_str() {
        "Resource" => {
            let r = spec.resource.as_ref().ok_or_else(|| missing("resource"))?;
            ((r.name.as_str(), &r.target), None)
        }
        "ContainerResource" => {
            let r = spec
                .container_resource
                .as_ref()
                .ok_or_else(|| missing("containerResource"))?;
            ((r.name.as_str(), &r.target), Some(r.container.as_str()))
        }
        _ => return Err(unserved_metric(spec)),
    };
    let (resource, target) = source;
    let failed = |message: String| MetricFailure {
        reason: if container.is_some() {
            "FailedGetContainerResourceMetric"
        } else {
            "FailedGetResourceMetric"
        },
        message: format!("the HPA was unable to compute the replica count: {message}"),
    };
    let kind = if container.is_some() {
        "container resource"
    } else {
        "resource"
    };
    let (target, name, what) = match target_of(target) {
        Some(t @ Target::Utilization(_)) => (
            t,
            format!("{resource} {kind} utilization (percentage of request)"),
            format!("failed to get {resource} utilization"),
        ),
        Some(t) => (
            t,
            format!("{resource} {kind}"),
            format!("failed to get {resource} usage"),
        ),
        None => {
            return Err(failed(format!(
                "invalid resource metric source: neither a utilization target nor a value target was set for {resource}"
            )));
        }
    };
    let metrics = metrics.as_ref().map_err(|e| {
        failed(format!(
            "{what}: unable to get metrics for resource {resource}: {e}"
        ))
    })?;
    if metrics.is_empty() {
        return Err(failed(format!(
            "{what}: unable to get metrics for resource {resource}: no metrics returned from resource metrics API"
        )));
    }
    let samples: Vec<PodSample> = pods
        .iter()
        .map(|p| sample(p, resource, container, metrics.get(&p.name_any())))
        .collect();
    let proposal = replicas::resource_replicas(
        current,
        resource,
        target,
        &samples,
        now,
        replicas::TOLERANCE,
    )
    .map_err(|e| failed(format!("{what}: {e}")))?;
    let mut current_value = json!({"averageValue": quantity::format_milli(proposal.average_milli)});
    if let Some(u) = proposal.utilization {
        current_value["averageUtilization"] = json!(u);
    }
    let current = match container {
        Some(c) => json!({"type": "ContainerResource", "containerResource":
            {"name": resource, "container": c, "current": current_value}}),
        None => {
            json!({"type": "Resource", "resource": {"name": resource, "current": current_value}})
        }
    };
    Ok(MetricResult {
        replicas: proposal.replicas,
        name,
        current,
    })
}

fn target_of(target: &MetricTarget) -> Option<Target> {
    match target.type_.as_str() {
        "Utilization" => target.average_utilization.map(Target::Utilization),
        "AverageValue" => target
            .average_value
            .as_ref()
            .and_then(|q| quantity::parse_milli(&q.0))
            .map(Target::AverageValue),
        _ => None,
    }
}

fn rules(given: Option<&HPAScalingRules>, default: Rules) -> Rules {
    let Some(r) = given else {
        return default;
    };
    Rules {
        window: r.stabilization_window_seconds.unwrap_or(default.window),
        select: match r.select_policy.as_deref() {
            Some("Min") => Select::Min,
            Some("Disabled") => Select::Disabled,
            Some(_) => Select::Max,
            None => default.select,
        },
        policies: match &r.policies {
            Some(p) => p
                .iter()
                .map(|p| Policy {
                    kind: if p.type_ == "Pods" {
                        PolicyKind::Pods
                    } else {
                        PolicyKind::Percent
                    },
                    value: p.value,
                    period: p.period_seconds,
                })
                .collect(),
            None => default.policies,
        },
    }
}

async fn reconcile(
    stored: Arc<StoredHpa>,
    ctx: Arc<Context>,
    shared: Arc<Shared>,
) -> Result<Action, Error> {
    let requeue = Action::requeue(ctx.config.hpa_sync_period);
    if stored.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let raw = serde_json::to_value(stored.as_ref()).unwrap_or(Value::Null);
    let hpa: HorizontalPodAutoscaler = match serde_json::from_value(raw) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(hpa = %key_of(stored.as_ref()), error = %e, "unreadable autoscaler");
            return Ok(Action::await_change());
        }
    };
    let hpa = Arc::new(hpa);
    let target = hpa.as_ref();
    let key = key_of(hpa.as_ref());
    let ns = hpa.namespace().unwrap_or_default();
    let spec = hpa.spec.clone().unwrap_or_default();
    let old_status = hpa.status.clone().unwrap_or_default();
    let (now_secs, now_text) = now();
    let mut conditions = Conditions {
        list: serde_json::to_value(old_status.conditions.clone().unwrap_or_default())
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default(),
        now: now_text.clone(),
    };
    let reference = &spec.scale_target_ref;
    let target_name = format!("{}/{}", reference.kind, reference.name);
    let mut status = json!({
        "observedGeneration": hpa.metadata.generation,
        "currentReplicas": old_status.current_replicas.unwrap_or(0),
        "desiredReplicas": old_status.desired_replicas,
        "lastScaleTime": old_status.last_scale_time.as_ref().map(|t| t.0.to_string()),
    });
    if let Some(m) = &old_status.current_metrics {
        status["currentMetrics"] = serde_json::to_value(m).unwrap_or(Value::Null);
    }
    let api_version = reference.api_version.as_deref().unwrap_or("");
    let scales = match target_api(&ctx, &ns, api_version, &reference.kind).await {
        Ok(api) => api,
        Err(e) => {
            return fail_scale(&ctx, target, conditions, status, e).await;
        }
    };
    let scale = match scales.get_scale(&reference.name).await {
        Ok(s) => s,
        Err(e) => {
            let message = format!("{}: {e}", target_name.to_lowercase());
            return fail_scale(&ctx, target, conditions, status, message).await;
        }
    };
    let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    status["currentReplicas"] = json!(current);
    let min = spec.min_replicas.unwrap_or(1);
    let max = spec.max_replicas;
    let behavior = spec.behavior.as_ref().map(|b| Behavior {
        up: rules(b.scale_up.as_ref(), Rules::default_up()),
        down: rules(b.scale_down.as_ref(), Rules::default_down()),
    });
    let mut desired;
    let mut rescale_reason = String::new();
    if current == 0 && min != 0 {
        conditions.set(
            "ScalingActive",
            false,
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero".into(),
        );
        desired = 0;
    } else if current > max {
        rescale_reason = "Current number of replicas above Spec.MaxReplicas".into();
        desired = max;
    } else if current < min {
        rescale_reason = "Current number of replicas below Spec.MinReplicas".into();
        desired = min;
    } else {
        let selector = scale
            .status
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        let parsed = if selector.is_empty() {
            Err("selector is required".to_string())
        } else {
            LabelSelector::parse(&selector).map_err(|e| e.to_string())
        };
        let parsed = match parsed {
            Ok(p) => p,
            Err(e) => {
                conditions.set(
                    "ScalingActive",
                    false,
                    "InvalidSelector",
                    format!("the HPA target's scale is missing a selector: {e}"),
                );
                ctx.event(
                    hpa.as_ref(),
                    EventType::Warning,
                    "InvalidSelector",
                    "ComputeMetrics",
                    e,
                );
                write_status(&ctx, target, status, conditions).await?;
                return Ok(requeue);
            }
        };
        let pods: Vec<Arc<Pod>> = shared
            .pods
            .state()
            .into_iter()
            .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
            .filter(|p| parsed.matches(&p.labels().clone()))
            .collect();
        let pod_refs: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
        let metrics = pod_metrics(&ctx, &ns, &selector).await;
        let mut best: Option<MetricResult> = None;
        let mut current_metrics = Vec::new();
        let mut failure: Option<MetricFailure> = None;
        let mut invalid = 0;
        for m in spec.metrics.clone().unwrap_or_default() {
            match resource_metric(&m, current, &pod_refs, &metrics, now_secs) {
                Ok(r) => {
                    current_metrics.push(r.current.clone());
                    if best.as_ref().is_none_or(|b| r.replicas > b.replicas) {
                        best = Some(r);
                    }
                }
                Err(f) => {
                    // Each failing metric is an Event, as in Kubernetes.
                    ctx.event(
                        hpa.as_ref(),
                        EventType::Warning,
                        f.reason,
                        "ComputeMetrics",
                        f.message.clone(),
                    );
                    invalid += 1;
                    current_metrics.push(json!({"type": ""}));
                    failure.get_or_insert(f);
                }
            }
        }
        let total = spec.metrics.as_ref().map_or(0, Vec::len);
        status["currentMetrics"] = json!(current_metrics);
        let proposed = best.as_ref().map_or(-1, |b| b.replicas);
        if total == 0 || invalid >= total || (invalid > 0 && proposed < current) {
            let f = failure.unwrap_or(MetricFailure {
                reason: "FailedGetResourceMetric",
                message: "the HPA was unable to compute the replica count: no metrics".into(),
            });
            conditions.set("ScalingActive", false, f.reason, f.message.clone());
            ctx.event(
                hpa.as_ref(),
                EventType::Warning,
                "FailedComputeMetricsReplicas",
                "ComputeMetrics",
                format!(
                    "invalid metrics ({invalid} invalid out of {total}), first error is: {}",
                    f.message
                ),
            );
            write_status(&ctx, target, status, conditions).await?;
            return Ok(requeue);
        }
        let best = best.expect("a valid metric");
        conditions.set(
            "ScalingActive",
            true,
            "ValidMetricFound",
            format!(
                "the HPA was able to successfully calculate a replica count from {}",
                best.name
            ),
        );
        desired = best.replicas;
        if desired > current {
            rescale_reason = format!("{} above target", best.name);
        } else if desired < current {
            rescale_reason = "All metrics below target".into();
        }
        let prenormalized = desired;
        let mut histories = shared.histories.lock().unwrap_or_else(|p| p.into_inner());
        let history = histories.entry(key.clone()).or_default();
        let (stabilized, limited): (Decision, Decision) = match &behavior {
            Some(b) => {
                let s =
                    history.stabilize(now_secs, current, prenormalized, b.up.window, b.down.window);
                let l = history.limit(now_secs, current, s.replicas, min, max, b);
                (s, l)
            }
            None => {
                let s = history.stabilize_without_behavior(now_secs, prenormalized);
                let l = behavior::limit_without_behavior(current, s.replicas, min, max);
                (s, l)
            }
        };
        drop(histories);
        if stabilized.replicas != prenormalized {
            conditions.set(
                "AbleToScale",
                true,
                stabilized.reason,
                stabilized.message.into(),
            );
        } else {
            conditions.set(
                "AbleToScale",
                true,
                "ReadyForNewScale",
                "recommended size matches current size".into(),
            );
        }
        conditions.set(
            "ScalingLimited",
            limited.replicas != stabilized.replicas,
            limited.reason,
            limited.message.into(),
        );
        desired = limited.replicas;
    }
    status["desiredReplicas"] = json!(desired);
    if desired != current && !(current == 0 && min != 0) {
        let mut new_scale = scale.clone();
        if let Some(s) = new_scale.spec.as_mut() {
            s.replicas = Some(desired);
        }
        if let Err(e) = scales
            .replace_scale(&reference.name, &ctx.post_params(), &new_scale)
            .await
        {
            let message = format!("New size: {desired}; reason: {rescale_reason}; error: {e}");
            ctx.event(
                hpa.as_ref(),
                EventType::Warning,
                "FailedRescale",
                "Scale",
                message,
            );
            conditions.set(
                "AbleToScale",
                false,
                "FailedUpdateScale",
                format!("the HPA controller was unable to update the target scale: {e}"),
            );
            write_status(&ctx, target, status, conditions).await?;
            return Err(api_error(format!("rescaling {target_name}"))(e));
        }
        conditions.set(
            "AbleToScale",
            true,
            "SucceededRescale",
            format!("the HPA controller was able to update the target scale to {desired}"),
        );
        ctx.event(
            hpa.as_ref(),
            EventType::Normal,
            "SuccessfulRescale",
            "Scale",
            format!("New size: {desired}; reason: {rescale_reason}"),
        );
        if let Some(b) = &behavior {
            let mut histories = shared.histories.lock().unwrap_or_else(|p| p.into_inner());
            histories
                .entry(key.clone())
                .or_default()
                .record_scale(now_secs, current, desired, b);
        }
        status["lastScaleTime"] = json!(now_text);
        tracing::info!(hpa = %key, from = current, to = desired, reason = %rescale_reason, "rescaled");
    }
    write_status(&ctx, target, status, conditions).await?;
    Ok(requeue)
}

/// The target's scale could not be read: `AbleToScale` false, a `FailedGetScale` Event.
async fn fail_scale(
    ctx: &Context,
    target: &HorizontalPodAutoscaler,
    mut conditions: Conditions,
    status: Value,
    error: String,
) -> Result<Action, Error> {
    conditions.set(
        "AbleToScale",
        false,
        "FailedGetScale",
        format!("the HPA controller was unable to get the target's current scale: {error}"),
    );
    ctx.event(
        target,
        EventType::Warning,
        "FailedGetScale",
        "GetScale",
        error,
    );
    write_status(ctx, target, status, conditions).await?;
    Ok(Action::requeue(ctx.config.hpa_sync_period))
}

/// Writes the status when it differs from the stored one.
async fn write_status(
    ctx: &Context,
    hpa: &HorizontalPodAutoscaler,
    mut status: Value,
    conditions: Conditions,
) -> Result<(), Error> {
    status["conditions"] = json!(conditions.list);
    if let Some(m) = status.as_object_mut() {
        m.retain(|_, v| !v.is_null());
        if let Some(Value::Array(metrics)) = m.get_mut("currentMetrics") {
            metrics.retain(|c| c["type"] != "");
        }
    }
    let old = serde_json::to_value(&hpa.status).unwrap_or(Value::Null);
    if normalized(&old) == normalized(&status) {
        return Ok(());
    }
    let ns = hpa.namespace().unwrap_or_default();
    let what = format!("updating the status of {}", key_of(hpa));
    Api::<HorizontalPodAutoscaler>::namespaced(ctx.client.clone(), &ns)
        .patch_status(
            &hpa.name_any(),
            &ctx.patch_params(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .map_err(api_error(what))?;
    Ok(())
}

/// A status as JSON with its keys sorted, for comparison.
fn normalized(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .into_iter()
        .flatten()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_read_as_go_durations() {
        assert_eq!(window("10s"), 10.0);
        assert_eq!(window("1.5s"), 1.5);
        assert_eq!(window("1m0s"), 60.0);
    }

    #[test]
    fn metrics_needing_a_custom_or_external_metrics_api_fail_as_kubernetes_words_it() {
        let check = |spec: Value, reason: &str, message: &str| {
            let spec: MetricSpec = serde_json::from_value(spec).expect("a metric");
            let f = unserved_metric(&spec);
            assert_eq!(f.reason, reason);
            assert!(f.message.contains(message), "{}", f.message);
        };
        let target = json!({"type": "AverageValue", "averageValue": "10"});
        check(
            json!({"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": target}}),
            "FailedGetPodsMetric",
            "unable to get metric qps: unable to fetch metrics from custom metrics API",
        );
        check(
            json!({"type": "Object", "object": {"metric": {"name": "hits"}, "target": target,
                "describedObject": {"kind": "Ingress", "name": "main", "apiVersion": "networking.k8s.io/v1"}}}),
            "FailedGetObjectMetric",
            "unable to get metric hits: Ingress/main",
        );
        check(
            json!({"type": "External", "external": {"metric": {"name": "queue"}, "target": target}}),
            "FailedGetExternalMetric",
            "no external metrics API (external.metrics.k8s.io) registered",
        );
        check(
            json!({"type": "Pods"}),
            "FailedGetPodsMetric",
            "spec.metrics: pods: Required value",
        );
    }
}
