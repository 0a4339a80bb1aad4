//! The Endpoints controller: the legacy `v1/Endpoints` of every Service with a selector, from
//! the pods it selects.
//!
//! A pod is listed when it has an IP and has not finished; a pod being deleted is left out
//! (unless `publishNotReadyAddresses`). Ready pods go to `addresses`, the others to
//! `notReadyAddresses`, each with `targetRef` to the pod and its node; pods that resolve the
//! Service's ports to the same numbers share a subset (Kubernetes' `RepackSubsets`). Services
//! without a selector are left alone: their Endpoints belong to whoever wrote them.
//!
//! This file also holds what the EndpointSlice controller shares: which pods a Service selects,
//! port resolution, and the Service controller whose pod watch triggers the Services that
//! select (or selected) a pod.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apimachinery::matching::map_matches;
use apimachinery::pod;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, Patch};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use super::{Context, Error};

/// The label that marks a headless Service's endpoints.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// Pods each Service selected at its last sync, so that a pod that stops matching still
/// triggers the Service it left.
#[derive(Clone, Default)]
pub struct Selected(Arc<Mutex<SelectedPods>>);

/// (namespace, Service) → names of the pods it selected.
type SelectedPods = HashMap<(String, String), BTreeSet<String>>;

impl Selected {
    /// Records the pods `service` in `namespace` selects now.
    pub fn record(&self, namespace: &str, service: &str, pods: BTreeSet<String>) {
        if let Ok(mut m) = self.0.lock() {
            let key = (namespace.to_string(), service.to_string());
            if pods.is_empty() {
                m.remove(&key);
            } else {
                m.insert(key, pods);
            }
        }
    }

    /// The Services that selected `pod` at their last sync.
    pub fn services_of(&self, namespace: &str, pod: &str) -> Vec<String> {
        self.0
            .lock()
            .map(|m| {
                m.iter()
                    .filter(|((ns, _), pods)| ns == namespace && pods.contains(pod))
                    .map(|((_, svc), _)| svc.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Whether the Service's selector (a label map; `None` or empty selects nothing here) matches.
pub fn selects(service: &Service, labels: &BTreeMap<String, String>) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_some_and(|sel| !sel.is_empty() && map_matches(sel, labels))
}

/// A controller on Services (the shared informers) that also runs for every Service selecting
/// (or having selected) a changed pod, and the shared pod store it reads; returns once both
/// informers have had their first list.
pub async fn service_controller(
    ctx: &Context,
    selected: Selected,
) -> Result<(Controller<Service>, Store<Pod>), Error> {
    let (service_informer, pod_informer) = (ctx.informer::<Service>(), ctx.informer::<Pod>());
    let services = service_informer.store();
    let mapper_services = services.clone();
    let controller = Controller::for_stream(service_informer.subscribe(), services).watches_stream(
        pod_informer.subscribe(),
        move |pod: Pod| {
            let ns = pod.namespace().unwrap_or_default();
            let mut names: BTreeSet<String> = mapper_services
                .state()
                .iter()
                .filter(|s| s.namespace().as_deref() == Some(ns.as_str()))
                .filter(|s| selects(s, pod.labels()))
                .map(|s| s.name_any())
                .collect();
            names.extend(selected.services_of(&ns, &pod.name_any()));
            names
                .into_iter()
                .map(move |n| ObjectRef::new(&n).within(&ns))
                .collect::<Vec<_>>()
        },
    );
    ctx.synced(&service_informer).await?;
    ctx.synced(&pod_informer).await?;
    Ok((controller, pod_informer.store()))
}

/// The pods of the Service's namespace that its selector matches (read from the shared pod
/// store).
pub fn selected_pods(pods: &Store<Pod>, service: &Service) -> Vec<Pod> {
    let ns = service.namespace().unwrap_or_else(|| "default".into());
    pods.state()
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .filter(|p| selects(service, p.labels()))
        .map(|p| p.as_ref().clone())
        .collect()
}

/// Whether a pod belongs in endpoints at all: it has an IP, has not finished, and is not being
/// deleted unless `include_terminating` (Kubernetes' `ShouldPodBeInEndpoints`).
pub fn should_include(pod: &Pod, include_terminating: bool) -> bool {
    let has_ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .is_some_and(|ip| !ip.is_empty());
    has_ip
        && !pod::terminal(pod)
        && (include_terminating || pod.metadata.deletion_timestamp.is_none())
}

/// The pod's IP.
pub fn pod_ip(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_default()
}

/// The container port a Service port reaches on this pod: `targetPort` as a number, or the
/// container port with that name (and protocol); `None` when the name is not found.
pub fn resolve_port(port: &ServicePort, pod: &Pod) -> Option<i32> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => match name.parse::<i32>() {
            Ok(n) => Some(n),
            Err(_) => pod
                .spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port),
        },
    }
}

/// The reference from an endpoint to its pod.
pub fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.namespace(),
        name: Some(pod.name_any()),
        uid: pod.uid(),
        ..ObjectReference::default()
    }
}

/// The hostname of a pod in the Service's DNS (`spec.hostname` when `spec.subdomain` names the
/// Service).
pub fn hostname(pod: &Pod, service: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    (spec.subdomain.as_deref() == Some(service.name_any().as_str()))
        .then(|| spec.hostname.clone())
        .flatten()
}

/// Whether the Service's endpoints are maintained: it has a selector and is not being deleted.
pub fn maintained(service: &Service) -> bool {
    let has_selector = service
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_some_and(|s| !s.is_empty());
    has_selector && service.meta().deletion_timestamp.is_none()
}

/// Whether the Service is headless (`clusterIP: None`).
pub fn headless(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// The subsets of a Service's Endpoints from its pods.
pub fn subsets(service: &Service, pods: &[Pod]) -> Vec<EndpointSubset> {
    let spec = service.spec.clone().unwrap_or_default();
    let publish = spec.publish_not_ready_addresses == Some(true);
    let ports = spec.ports.unwrap_or_default();
    type Ports = Vec<(Option<String>, i32, String, Option<String>)>;
    let mut groups: BTreeMap<Ports, (Vec<EndpointAddress>, Vec<EndpointAddress>)> = BTreeMap::new();
    for pod in pods.iter().filter(|p| should_include(p, publish)) {
        let resolved: Ports = ports
            .iter()
            .filter_map(|sp| {
                resolve_port(sp, pod).map(|n| {
                    (
                        sp.name.clone().filter(|n| !n.is_empty()),
                        n,
                        sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
                        sp.app_protocol.clone(),
                    )
                })
            })
            .collect();
        if !ports.is_empty() && resolved.is_empty() {
            continue;
        }
        let address = EndpointAddress {
            ip: pod_ip(pod),
            hostname: hostname(pod, service),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(pod_ref(pod)),
        };
        let entry = groups.entry(resolved).or_default();
        if publish || pod::ready(pod) {
            entry.0.push(address);
        } else {
            entry.1.push(address);
        }
    }
    groups
        .into_iter()
        .map(|(ports, (mut ready, mut not_ready))| {
            ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            not_ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then(|| {
                    ports
                        .into_iter()
                        .map(|(name, port, protocol, app_protocol)| EndpointPort {
                            name,
                            port,
                            protocol: Some(protocol),
                            app_protocol,
                        })
                        .collect()
                }),
            }
        })
        .collect()
}

/// Labels of a Service's Endpoints (and slices): the Service's, plus the headless mark. The
/// syncer's `gitplane.io/` marks are not copied, so endpoints never look managed by an
/// Application.
pub fn endpoint_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = service
        .labels()
        .iter()
        .filter(|(k, _)| !k.starts_with("gitplane.io/"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if headless(service) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

/// The reference from a Service's endpoints to the Service, so they go when it goes.
pub fn service_owner(service: &Service, controller: bool) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: <Service as k8s_openapi::Resource>::API_VERSION.into(),
        kind: <Service as k8s_openapi::Resource>::KIND.into(),
        name: service.name_any(),
        uid: service.uid()?,
        controller: controller.then_some(true),
        block_owner_deletion: controller.then_some(true),
    })
}

/// Runs the Endpoints controller until the context stops.
pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let selected = Selected::default();
    let (controller, pods) = service_controller(&ctx, selected.clone()).await?;
    ctx.drive(controller, move |svc, ctx| {
        reconcile(svc, ctx, selected.clone(), pods.clone())
    })
    .await;
    Ok(())
}

async fn reconcile(
    svc: Arc<Service>,
    ctx: Arc<Context>,
    selected: Selected,
    pods: Store<Pod>,
) -> Result<Action, Error> {
    if !maintained(&svc) {
        return Ok(Action::await_change());
    }
    let ns = svc.namespace().unwrap_or_else(|| "default".into());
    let name = svc.name_any();
    let pods = selected_pods(&pods, &svc);
    selected.record(&ns, &name, pods.iter().map(|p| p.name_any()).collect());
    let subsets = subsets(&svc, &pods);
    let desired = Endpoints {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            labels: Some(endpoint_labels(&svc)),
            owner_references: service_owner(&svc, false).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        subsets: (!subsets.is_empty()).then_some(subsets),
    };
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &ns);
    match api.get_opt(&name).await? {
        None => match api.create(&ctx.post_params(), &desired).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {
                return Ok(Action::requeue(Duration::from_millis(100)));
            }
            Err(e) => return Err(e.into()),
        },
        Some(current) => {
            let same = current.subsets == desired.subsets
                && current.metadata.labels == desired.metadata.labels;
            if !same {
                let mut next = desired;
                next.metadata.resource_version = current.metadata.resource_version.clone();
                next.metadata.annotations = current.metadata.annotations.clone();
                let patch = serde_json::json!({
                    "metadata": {"labels": next.metadata.labels,
                        "resourceVersion": next.metadata.resource_version},
                    "subsets": next.subsets,
                });
                api.patch(&name, &ctx.patch_params(), &Patch::Merge(patch))
                    .await?;
            }
        }
    }
    Ok(Action::await_change())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodSpec, PodStatus, ServiceSpec,
    };
    use serde_json::json;

    pub(crate) fn pod(name: &str, ip: &str, ready: bool, port_name: Option<(&str, i32)>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                containers: vec![Container {
                    name: "c".into(),
                    ports: port_name.map(|(n, p)| {
                        vec![ContainerPort {
                            name: Some(n.into()),
                            container_port: p,
                            ..ContainerPort::default()
                        }]
                    }),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: (!ip.is_empty()).then(|| ip.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
        }
    }

    pub(crate) fn service(ports: Vec<ServicePort>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("svc-uid".into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
                ports: Some(ports),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }

    pub(crate) fn port(name: &str, port: i32, target: IntOrString) -> ServicePort {
        ServicePort {
            name: Some(name.into()),
            port,
            target_port: Some(target),
            protocol: Some("TCP".into()),
            ..ServicePort::default()
        }
    }

    fn check(svc: &Service, pods: &[Pod], expected: serde_json::Value) {
        let got = serde_json::to_value(subsets(svc, pods)).unwrap();
        assert_eq!(got, expected);
    }

    #[test]
    fn ready_pods_are_addresses_and_the_others_not_ready_addresses() {
        let svc = service(vec![port("http", 80, IntOrString::Int(8080))]);
        let pods = [
            pod("b", "127.2.0.2", true, None),
            pod("a", "127.2.0.1", true, None),
            pod("c", "127.2.0.3", false, None),
            pod("no-ip", "", true, None),
        ];
        let target = |n: &str| json!({"kind": "Pod", "namespace": "default", "name": n, "uid": format!("uid-{n}")});
        check(
            &svc,
            &pods,
            json!([{
                "addresses": [
                    {"ip": "127.2.0.1", "nodeName": "n1", "targetRef": target("a")},
                    {"ip": "127.2.0.2", "nodeName": "n1", "targetRef": target("b")}],
                "notReadyAddresses": [{"ip": "127.2.0.3", "nodeName": "n1", "targetRef": target("c")}],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
            }]),
        );
    }

    #[test]
    fn named_target_ports_resolve_per_pod_and_split_subsets() {
        let svc = service(vec![port("http", 80, IntOrString::String("web".into()))]);
        let pods = [
            pod("a", "127.2.0.1", true, Some(("web", 8080))),
            pod("b", "127.2.0.2", true, Some(("web", 9090))),
            pod("c", "127.2.0.3", true, Some(("other", 7070))),
        ];
        let got = subsets(&svc, &pods);
        assert_eq!(got.len(), 2);
        let ports: Vec<i32> = got
            .iter()
            .map(|s| s.ports.as_ref().unwrap()[0].port)
            .collect();
        assert_eq!(ports, vec![8080, 9090]);
    }

    #[test]
    fn terminating_and_finished_pods_are_left_out() {
        let svc = service(vec![port("http", 80, IntOrString::Int(80))]);
        let mut deleting = pod("a", "127.2.0.1", true, None);
        deleting.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
        );
        let mut done = pod("b", "127.2.0.2", false, None);
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        check(&svc, &[deleting, done], json!([]));
    }

    #[test]
    fn publish_not_ready_addresses_lists_every_pod_as_ready() {
        let mut svc = service(vec![port("http", 80, IntOrString::Int(80))]);
        svc.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        let got = subsets(&svc, &[pod("a", "127.2.0.1", false, None)]);
        assert_eq!(got[0].addresses.as_ref().map(Vec::len), Some(1));
        assert!(got[0].not_ready_addresses.is_none());
    }

    #[test]
    fn a_service_selects_pods_by_its_label_map_and_never_with_an_empty_one() {
        let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
        let mut svc = service(vec![]);
        assert!(selects(&svc, &labels));
        svc.spec.as_mut().unwrap().selector = Some(BTreeMap::new());
        assert!(!selects(&svc, &labels));
        svc.spec.as_mut().unwrap().selector = None;
        assert!(!selects(&svc, &labels));
    }

    #[test]
    fn endpoints_copy_the_service_labels_but_not_the_syncers_marks() {
        let mut svc = service(vec![]);
        svc.metadata.labels = Some(BTreeMap::from([
            ("tier".to_string(), "front".to_string()),
            ("gitplane.io/app".to_string(), "web".to_string()),
        ]));
        svc.spec.as_mut().unwrap().cluster_ip = Some("None".into());
        assert_eq!(
            endpoint_labels(&svc),
            BTreeMap::from([
                ("tier".to_string(), "front".to_string()),
                (HEADLESS_LABEL.to_string(), String::new()),
            ])
        );
    }

    #[test]
    fn selected_pods_remember_the_services_they_were_in() {
        let s = Selected::default();
        s.record("default", "web", BTreeSet::from(["a".to_string()]));
        assert_eq!(s.services_of("default", "a"), vec!["web".to_string()]);
        assert!(s.services_of("other", "a").is_empty());
        s.record("default", "web", BTreeSet::new());
        assert!(s.services_of("default", "a").is_empty());
    }
}
