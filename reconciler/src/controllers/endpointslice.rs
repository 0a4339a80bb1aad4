//! The EndpointSlice controller: `discovery.k8s.io/v1` EndpointSlices of every Service with a
//! selector, from the pods it selects.
//!
//! Each pod with an IPv4 address that has not finished is an endpoint with conditions `ready`
//! (ready and not terminating), `serving` (ready) and `terminating` (being deleted), its node
//! and a `targetRef`. Pods that resolve the Service's ports to the same numbers share slices,
//! at most [`MAX_ENDPOINTS`] endpoints each. Slices carry the labels
//! `kubernetes.io/service-name` and `endpointslice.kubernetes.io/managed-by` and a controller
//! reference to the Service. A Service with no endpoints keeps one empty slice, as Kubernetes
//! does. Existing slices are reused in place; only changed ones are written.
//!
//! Services, pods and slices are read from the shared informers; slices created or deleted and
//! not yet in the store hold the Service back ([`super::expectations`]), so a lagging store
//! never makes a second slice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use apimachinery::pod;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;

use super::endpoints::{
    Selected, endpoint_labels, hostname, maintained, pod_ip, pod_ref, resolve_port, selected_pods,
    service_controller, service_owner, should_include,
};
use super::expectations::Expectations;
use super::workload;
use super::{Context, Error, key_of};

/// Label naming the Service of a slice.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label naming the controller that manages a slice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's value of [`MANAGED_BY_LABEL`] (Kubernetes' own, so tools recognise it).
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// Endpoints per slice at most (Kubernetes' `--max-endpoints-per-slice` default).
pub const MAX_ENDPOINTS: usize = 100;

/// One slice's content: its ports and endpoints.
#[derive(Clone, Debug, PartialEq)]
pub struct SliceContent {
    /// The ports (empty for a Service without ports).
    pub ports: Vec<EndpointPort>,
    /// The endpoints, sorted by address.
    pub endpoints: Vec<Endpoint>,
}

/// The slices a Service should have, given its pods: grouped by resolved ports, sorted,
/// chunked by `max_per_slice`; one empty slice when there is no endpoint.
pub fn desired_slices(service: &Service, pods: &[Pod], max_per_slice: usize) -> Vec<SliceContent> {
    let spec = service.spec.clone().unwrap_or_default();
    let publish = spec.publish_not_ready_addresses == Some(true);
    let ports = spec.ports.unwrap_or_default();
    type Key = Vec<(Option<String>, i32, String, Option<String>)>;
    let mut groups: BTreeMap<Key, Vec<Endpoint>> = BTreeMap::new();
    for pod in pods.iter().filter(|p| should_include(p, true)) {
        let ip = pod_ip(pod);
        if ip.parse::<std::net::Ipv4Addr>().is_err() {
            continue;
        }
        let key: Key = ports
            .iter()
            .filter_map(|sp| {
                resolve_port(sp, pod).map(|n| {
                    (
                        Some(sp.name.clone().unwrap_or_default()),
                        n,
                        sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
                        sp.app_protocol.clone(),
                    )
                })
            })
            .collect();
        if !ports.is_empty() && key.is_empty() {
            continue;
        }
        let serving = publish || pod::ready(pod);
        let terminating = pod.metadata.deletion_timestamp.is_some();
        groups.entry(key).or_default().push(Endpoint {
            addresses: vec![ip],
            conditions: Some(EndpointConditions {
                ready: Some(publish || (serving && !terminating)),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            hostname: hostname(pod, service),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(pod_ref(pod)),
            ..Endpoint::default()
        });
    }
    let mut slices = Vec::new();
    for (key, mut endpoints) in groups {
        endpoints.sort_by(|a, b| a.addresses.cmp(&b.addresses));
        let ports: Vec<EndpointPort> = key
            .into_iter()
            .map(|(name, port, protocol, app_protocol)| EndpointPort {
                name,
                port: Some(port),
                protocol: Some(protocol),
                app_protocol,
            })
            .collect();
        for chunk in endpoints.chunks(max_per_slice.max(1)) {
            slices.push(SliceContent {
                ports: ports.clone(),
                endpoints: chunk.to_vec(),
            });
        }
    }
    if slices.is_empty() {
        slices.push(SliceContent {
            ports: Vec::new(),
            endpoints: Vec::new(),
        });
    }
    slices
}

fn content_of(slice: &EndpointSlice) -> SliceContent {
    SliceContent {
        ports: slice.ports.clone().unwrap_or_default(),
        endpoints: slice.endpoints.clone(),
    }
}

/// A write to bring the slices in line.
#[derive(Clone, Debug, PartialEq)]
pub enum SliceChange {
    /// Replace the content of the existing slice at this index.
    Update(usize, SliceContent),
    /// Create a slice.
    Create(SliceContent),
    /// Delete the existing slice at this index.
    Delete(usize),
}

/// The fewest writes that turn `existing` into `desired`: slices already right stay, the
/// others are rewritten in place, then created or deleted.
pub fn plan(existing: &[SliceContent], desired: &[SliceContent]) -> Vec<SliceChange> {
    let mut taken = vec![false; existing.len()];
    let mut left = Vec::new();
    for d in desired {
        match (0..existing.len()).find(|i| !taken[*i] && existing[*i] == *d) {
            Some(i) => taken[i] = true,
            None => left.push(d.clone()),
        }
    }
    let mut free = (0..existing.len()).filter(|i| !taken[*i]);
    let mut changes = Vec::new();
    for d in left {
        match free.next() {
            Some(i) => changes.push(SliceChange::Update(i, d)),
            None => changes.push(SliceChange::Create(d)),
        }
    }
    changes.extend(free.map(SliceChange::Delete));
    changes
}

/// Runs the EndpointSlice controller until the context stops.
pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let selected = Selected::default();
    let (controller, pods) = service_controller(&ctx, selected.clone()).await?;
    let slice_informer = ctx.informer::<EndpointSlice>();
    let controller = controller.owns_stream(slice_informer.subscribe());
    ctx.synced(&slice_informer).await?;
    let state = Arc::new(State {
        pods,
        slices: slice_informer.store(),
        expectations: Expectations::default(),
    });
    ctx.drive(controller, move |svc, ctx| {
        reconcile(svc, ctx, selected.clone(), state.clone())
    })
    .await;
    Ok(())
}

/// The shared pod and slice stores, and the expectations of the slices created and deleted.
struct State {
    pods: Store<Pod>,
    slices: Store<EndpointSlice>,
    expectations: Expectations,
}

async fn reconcile(
    svc: Arc<Service>,
    ctx: Arc<Context>,
    selected: Selected,
    state: Arc<State>,
) -> Result<Action, Error> {
    if !maintained(&svc) {
        return Ok(Action::await_change());
    }
    let ns = svc.namespace().unwrap_or_else(|| "default".into());
    let name = svc.name_any();
    let uid = svc.uid().unwrap_or_default();
    if !state
        .expectations
        .satisfied(&key_of(svc.as_ref()), &ns, &state.slices)
    {
        // The store has not shown this Service's last slice creates and deletes: their
        // change brings it back.
        return Ok(Action::await_change());
    }
    let pods = selected_pods(&state.pods, &svc);
    selected.record(&ns, &name, pods.iter().map(|p| p.name_any()).collect());
    let desired = desired_slices(&svc, &pods, MAX_ENDPOINTS);

    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &ns);
    let mut existing: Vec<EndpointSlice> = state
        .slices
        .state()
        .iter()
        .filter(|s| s.namespace().as_deref() == Some(ns.as_str()))
        .filter(|s| {
            s.labels().get(SERVICE_NAME_LABEL) == Some(&name)
                && s.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
        })
        .filter(|s| workload::controlled_by(&s.metadata, &uid))
        .map(|s| s.as_ref().clone())
        .collect();
    existing.sort_by_key(|s| s.name_any());
    let mut labels = endpoint_labels(&svc);
    labels.insert(SERVICE_NAME_LABEL.into(), name.clone());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    let contents: Vec<SliceContent> = existing.iter().map(content_of).collect();
    let mut changes = plan(&contents, &desired);
    // Labels drifted (the Service's labels changed): rewrite those slices too.
    for (i, s) in existing.iter().enumerate() {
        let touched = changes
            .iter()
            .any(|c| matches!(c, SliceChange::Update(j, _) | SliceChange::Delete(j) if *j == i));
        if !touched && s.metadata.labels.as_ref() != Some(&labels) {
            changes.push(SliceChange::Update(i, contents[i].clone()));
        }
    }
    for change in changes {
        match change {
            SliceChange::Update(i, content) => {
                let mut slice = existing[i].clone();
                slice.metadata.labels = Some(labels.clone());
                slice.ports = Some(content.ports);
                slice.endpoints = content.endpoints;
                match api
                    .replace(&slice.name_any(), &ctx.post_params(), &slice)
                    .await
                {
                    Ok(_) => {}
                    // The store was behind this slice: come back when it caught up.
                    Err(kube::Error::Api(e)) if e.code == 409 => {
                        return Ok(Action::requeue(Duration::from_millis(100)));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            SliceChange::Create(content) => {
                let slice = EndpointSlice {
                    metadata: ObjectMeta {
                        generate_name: Some(format!("{name}-")),
                        namespace: Some(ns.clone()),
                        labels: Some(labels.clone()),
                        owner_references: service_owner(&svc, true).map(|r| vec![r]),
                        ..ObjectMeta::default()
                    },
                    address_type: "IPv4".into(),
                    endpoints: content.endpoints,
                    ports: Some(content.ports),
                };
                let created = api.create(&ctx.post_params(), &slice).await?;
                state.expectations.expect(
                    &key_of(svc.as_ref()),
                    vec![created.name_any()],
                    Vec::new(),
                );
            }
            SliceChange::Delete(i) => {
                let (gone, gone_uid) = (
                    existing[i].name_any(),
                    existing[i].uid().unwrap_or_default(),
                );
                match api.delete(&gone, &DeleteParams::default()).await {
                    Ok(_) => state.expectations.expect(
                        &key_of(svc.as_ref()),
                        Vec::new(),
                        vec![(gone, gone_uid)],
                    ),
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::endpoints::tests::{pod, port, service};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn conditions(slices: &[SliceContent]) -> Vec<(String, bool, bool, bool)> {
        slices
            .iter()
            .flat_map(|s| &s.endpoints)
            .map(|e| {
                let c = e.conditions.clone().unwrap_or_default();
                (
                    e.addresses[0].clone(),
                    c.ready.unwrap_or(false),
                    c.serving.unwrap_or(false),
                    c.terminating.unwrap_or(false),
                )
            })
            .collect()
    }

    #[test]
    fn endpoint_conditions_follow_readiness_and_termination() {
        let svc = service(vec![port("http", 80, IntOrString::Int(8080))]);
        let mut terminating = pod("c", "127.2.0.3", true, None);
        terminating.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        let pods = [
            pod("a", "127.2.0.1", true, None),
            pod("b", "127.2.0.2", false, None),
            terminating,
            pod("v6", "fd00::1", true, None),
        ];
        let slices = desired_slices(&svc, &pods, MAX_ENDPOINTS);
        assert_eq!(slices.len(), 1);
        assert_eq!(
            conditions(&slices),
            vec![
                ("127.2.0.1".into(), true, true, false),
                ("127.2.0.2".into(), false, false, false),
                ("127.2.0.3".into(), false, true, true),
            ]
        );
        assert_eq!(slices[0].ports[0].port, Some(8080));
        assert_eq!(slices[0].ports[0].name.as_deref(), Some("http"));
    }

    #[test]
    fn slices_hold_at_most_the_maximum_and_split_by_ports() {
        let svc = service(vec![port("http", 80, IntOrString::String("web".into()))]);
        let mut pods: Vec<Pod> = (0..5)
            .map(|i| {
                pod(
                    &format!("p{i}"),
                    &format!("127.2.0.{i}"),
                    true,
                    Some(("web", 8080)),
                )
            })
            .collect();
        pods.push(pod("q", "127.2.1.1", true, Some(("web", 9090))));
        pods.push(pod("unresolved", "127.2.1.2", true, Some(("other", 1))));
        let slices = desired_slices(&svc, &pods, 2);
        let sizes: Vec<(Option<i32>, usize)> = slices
            .iter()
            .map(|s| (s.ports[0].port, s.endpoints.len()))
            .collect();
        assert_eq!(
            sizes,
            vec![
                (Some(8080), 2),
                (Some(8080), 2),
                (Some(8080), 1),
                (Some(9090), 1)
            ]
        );
    }

    #[test]
    fn a_service_without_endpoints_keeps_one_empty_slice() {
        let svc = service(vec![port("http", 80, IntOrString::Int(80))]);
        assert_eq!(
            desired_slices(&svc, &[], MAX_ENDPOINTS),
            vec![SliceContent {
                ports: vec![],
                endpoints: vec![]
            }]
        );
    }

    #[test]
    fn plans_keep_right_slices_and_rewrite_the_rest_in_place() {
        let c = |n: usize| SliceContent {
            ports: vec![],
            endpoints: (0..n).map(|_| Endpoint::default()).collect(),
        };
        assert_eq!(plan(&[c(1), c(2)], &[c(2), c(1)]), vec![]);
        assert_eq!(
            plan(&[c(1), c(2)], &[c(2), c(3)]),
            vec![SliceChange::Update(0, c(3))]
        );
        assert_eq!(
            plan(&[c(1)], &[c(2), c(3)]),
            vec![SliceChange::Update(0, c(2)), SliceChange::Create(c(3))]
        );
        assert_eq!(
            plan(&[c(1), c(2), c(3)], &[c(2)]),
            vec![SliceChange::Delete(0), SliceChange::Delete(2)]
        );
    }
}
