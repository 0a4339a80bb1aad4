//! The built-in ingress controller (as k3s ships Traefik), run beside the service proxy.
//!
//! It serves the Ingresses of its IngressClasses (`spec.controller: gitplane.dev/ingress`; the
//! class `gitplane` is created by the API server as the default) and those naming no class:
//! HTTP on one listener, HTTPS on another with the certificate of the `tls[].secretName`
//! Secret chosen by SNI ([`tls`]), each request routed by host and path ([`routes`]) and
//! reverse-proxied to a ready endpoint of the backend Service ([`forward`]). Every served
//! Ingress gets `status.loadBalancer.ingress: [{ip: <listen address>}]`, removed again when it
//! leaves the class. A backend Service that
//! does not exist (or lacks the port) and a TLS Secret that is missing or unusable are logged
//! and reported as a `Warning` Event on the Ingress, once per problem; the other rules still
//! serve.
//!
//! States of the loop: *binding* (the listeners are opened; none opening means the controller
//! stops with a warning), *syncing* (the watches of Ingresses, IngressClasses, Secrets,
//! Services and EndpointSlices have not listed yet; every request answers 404), then *serving*
//! (every change builds a new snapshot — routes, endpoints, certificates — swapped in whole
//! for the listeners, then statuses and Events are written).

pub mod forward;
pub mod routes;
pub mod tls;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use apimachinery::event::{EventType, Record, Reporter, new_event};
use apimachinery::ingress::{GITPLANE_CONTROLLER, classes_of, serves};
use k8s_openapi::api::core::v1::{ObjectReference, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use rustls::sign::CertifiedKey;
use serde_json::json;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use routes::{Backend, Port, Routes, SecretRef};

/// Where the controller listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The HTTP listener (`--ingress-listen`); `None`: no HTTP.
    pub http: Option<SocketAddr>,
    /// The HTTPS listener (`--ingress-tls-listen`); `None`: no HTTPS.
    pub https: Option<SocketAddr>,
}

/// What the listeners route by: replaced whole on every change.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The routing table of the served Ingresses.
    pub routes: Routes,
    /// Ready endpoints of every backend the routes name (missing: the Service is missing).
    pub endpoints: HashMap<Backend, Vec<SocketAddr>>,
    /// Usable certificates of the Secrets the TLS entries name.
    pub certs: HashMap<SecretRef, Arc<CertifiedKey>>,
}

/// The snapshot shared by the loop (writer) and the listeners (readers).
pub type Shared = Arc<RwLock<Arc<Snapshot>>>;

/// A running controller; [`IngressController::shutdown`] closes its listeners.
pub struct IngressController {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl IngressController {
    /// Opens the listeners and starts watching; `node_addresses` give the status address when
    /// a listener is on an unspecified address (`0.0.0.0`).
    pub fn start(client: kube::Client, config: Config, node_addresses: Vec<IpAddr>) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(client, config, node_addresses, stop.clone()));
        IngressController { stop, task }
    }

    /// Closes the listeners and stops.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Binds a listener, warning when it cannot.
fn listen(addr: SocketAddr, what: &str) -> Option<tokio::net::TcpListener> {
    match super::bind(addr) {
        Ok(l) => {
            tracing::info!(addr = %l.local_addr().unwrap_or(addr), "ingress {what} listening");
            Some(l)
        }
        Err(e) => {
            tracing::warn!(%addr, error = %e, "the ingress controller cannot listen for {what}");
            None
        }
    }
}

async fn run(
    client: kube::Client,
    config: Config,
    node_addresses: Vec<IpAddr>,
    stop: CancellationToken,
) {
    // Binding.
    let current: Shared = Arc::default();
    let mut listeners = Vec::new();
    let mut status_ip = None;
    if let Some(l) = config.http.and_then(|a| listen(a, "HTTP")) {
        status_ip = status_ip.or(l.local_addr().ok().map(|a| a.ip()));
        listeners.push(tokio::spawn(forward::serve(
            l,
            forward::Listener {
                current: current.clone(),
                tls: None,
                next: Arc::new(AtomicUsize::new(0)),
            },
        )));
    }
    if let Some(l) = config.https.and_then(|a| listen(a, "HTTPS")) {
        match tls::server_config(current.clone()) {
            Ok(tls) => {
                status_ip = status_ip.or(l.local_addr().ok().map(|a| a.ip()));
                listeners.push(tokio::spawn(forward::serve(
                    l,
                    forward::Listener {
                        current: current.clone(),
                        tls: Some(tokio_rustls::TlsAcceptor::from(tls)),
                        next: Arc::new(AtomicUsize::new(0)),
                    },
                )));
            }
            Err(e) => tracing::warn!(error = %e, "the ingress controller serves no HTTPS"),
        }
    }
    let Some(ip) = status_ip else {
        tracing::warn!("the ingress controller has no listener and stops");
        return;
    };
    let status_ip = if ip.is_unspecified() {
        node_addresses.first().copied().unwrap_or(ip)
    } else {
        ip
    };

    // Syncing.
    let changed = Arc::new(Notify::new());
    let (ingresses, t1) = super::reflect(Api::<Ingress>::all(client.clone()), changed.clone());
    let (classes, t2) = super::reflect(Api::<IngressClass>::all(client.clone()), changed.clone());
    let (secrets, t3) = super::reflect(Api::<Secret>::all(client.clone()), changed.clone());
    let (services, t4) = super::reflect(Api::<Service>::all(client.clone()), changed.clone());
    let (slices, t5) = super::reflect(Api::<EndpointSlice>::all(client.clone()), changed.clone());
    let watches = [t1, t2, t3, t4, t5];
    tokio::select! {
        _ = async {
            let _ = tokio::join!(
                ingresses.wait_until_ready(),
                classes.wait_until_ready(),
                secrets.wait_until_ready(),
                services.wait_until_ready(),
                slices.wait_until_ready(),
            );
        } => {}
        _ = stop.cancelled() => {}
    }

    // Serving.
    let mut reported: BTreeSet<(String, String)> = BTreeSet::new();
    let mut certs: HashMap<SecretRef, (String, Arc<CertifiedKey>)> = HashMap::new();
    while !stop.is_cancelled() {
        let classes: Vec<IngressClass> = classes.state().iter().map(|c| (**c).clone()).collect();
        let ours_classes = classes_of(&classes, GITPLANE_CONTROLLER);
        let all: Vec<Arc<Ingress>> = ingresses.state();
        let served: Vec<&Ingress> = all
            .iter()
            .map(|i| &**i)
            .filter(|i| serves(i, &ours_classes))
            .collect();
        let table = routes::routes(&served);
        let mut problems = Problems::new();

        let svcs: Vec<Arc<Service>> = services.state();
        let eps: Vec<Arc<EndpointSlice>> = slices.state();
        let mut endpoints = HashMap::new();
        for backend in table.backends() {
            if endpoints.contains_key(backend) {
                continue;
            }
            match service_endpoints(&svcs, &eps, backend) {
                Ok(addrs) => {
                    endpoints.insert(backend.clone(), addrs);
                }
                Err(message) => {
                    let subject = Subject::Service(backend.service.clone());
                    problems.insert((backend.namespace.clone(), subject), message);
                }
            }
        }

        let mut snapshot_certs = HashMap::new();
        let all_secrets: Vec<Arc<Secret>> = secrets.state();
        for secret_ref in table.secrets() {
            let found = all_secrets.iter().find(|s| {
                s.metadata.namespace.as_deref() == Some(&secret_ref.0)
                    && s.metadata.name.as_deref() == Some(&secret_ref.1)
            });
            let Some(secret) = found else {
                problems.insert(
                    (secret_ref.0.clone(), Subject::Secret(secret_ref.1.clone())),
                    format!(
                        "TLS secret {:?} not found in namespace {:?}",
                        secret_ref.1, secret_ref.0
                    ),
                );
                continue;
            };
            let version = secret.metadata.resource_version.clone().unwrap_or_default();
            let cached = certs
                .get(secret_ref)
                .filter(|(v, _)| *v == version)
                .map(|(_, k)| k.clone());
            let key = match cached {
                Some(k) => k,
                None => match tls::certified_key(secret) {
                    Ok(k) => {
                        let k = Arc::new(k);
                        certs.insert(secret_ref.clone(), (version, k.clone()));
                        k
                    }
                    Err(e) => {
                        let subject = Subject::Secret(secret_ref.1.clone());
                        problems.insert((secret_ref.0.clone(), subject), e.to_string());
                        continue;
                    }
                },
            };
            snapshot_certs.insert(secret_ref.clone(), key);
        }
        certs.retain(|k, _| snapshot_certs.contains_key(k));

        *current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Snapshot {
            routes: table,
            endpoints,
            certs: snapshot_certs,
        });

        let mut now_reported = BTreeSet::new();
        // An Ingress that left the class loses the address this controller gave it.
        let ours = status_ip.to_string();
        for ing in all.iter().filter(|i| !serves(i, &ours_classes)) {
            let given = ing
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .is_some_and(|l| l.len() == 1 && l[0].ip.as_deref() == Some(ours.as_str()));
            if given {
                tracing::info!(ingress = ?ing.metadata.name, "left the class: clearing its status");
                write_status(&client, ing, None).await;
            }
        }
        for ing in &served {
            write_status(&client, ing, Some(status_ip)).await;
            for (reason, message) in ingress_problems(ing, &problems) {
                let key = (
                    ing.metadata.uid.clone().unwrap_or_default(),
                    message.clone(),
                );
                if !reported.contains(&key) {
                    report(&client, ing, reason, message).await;
                }
                now_reported.insert(key);
            }
        }
        // A problem that went away is reported again if it comes back.
        reported = now_reported;

        tokio::select! {
            _ = changed.notified() => {
                // Let a burst of events settle into one snapshot.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            _ = stop.cancelled() => {}
        }
    }
    for task in watches.into_iter().chain(listeners) {
        task.abort();
    }
}

/// What a problem is about: a backend Service or a TLS Secret, by name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Subject {
    Service(String),
    Secret(String),
}

/// The problems found building a snapshot, by namespace and subject.
type Problems = BTreeMap<(String, Subject), String>;

/// The problems that concern this Ingress (its backends and its Secrets), with the Event
/// reason of each.
fn ingress_problems(ing: &Ingress, problems: &Problems) -> Vec<(&'static str, String)> {
    let ns = ing.metadata.namespace.clone().unwrap_or_default();
    let Some(spec) = &ing.spec else {
        return Vec::new();
    };
    let subjects: BTreeSet<Subject> = spec
        .rules
        .iter()
        .flatten()
        .flat_map(|r| r.http.iter().flat_map(|h| &h.paths))
        .map(|p| &p.backend)
        .chain(spec.default_backend.as_ref())
        .filter_map(|b| b.service.as_ref().map(|s| Subject::Service(s.name.clone())))
        .chain(
            spec.tls
                .iter()
                .flatten()
                .filter_map(|t| t.secret_name.clone().map(Subject::Secret)),
        )
        .collect();
    subjects
        .into_iter()
        .filter_map(|subject| {
            let reason = match subject {
                Subject::Service(_) => "BackendNotFound",
                Subject::Secret(_) => "TLSSecretUnusable",
            };
            problems
                .get(&(ns.clone(), subject))
                .map(|m| (reason, m.clone()))
        })
        .collect()
}

/// The ready endpoints of an Ingress backend's Service port.
fn service_endpoints(
    services: &[Arc<Service>],
    slices: &[Arc<EndpointSlice>],
    backend: &Backend,
) -> Result<Vec<SocketAddr>, String> {
    let name = format!("service \"{}/{}\"", backend.namespace, backend.service);
    let svc = services
        .iter()
        .find(|s| {
            s.metadata.namespace.as_deref() == Some(&backend.namespace)
                && s.metadata.name.as_deref() == Some(&backend.service)
        })
        .ok_or_else(|| format!("{name} not found"))?;
    let port = svc
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .find(|p| match &backend.port {
            Port::Number(n) => p.port == *n,
            Port::Name(n) => p.name.as_deref() == Some(n.as_str()),
        })
        .ok_or_else(|| match &backend.port {
            Port::Number(n) => format!("{name} has no port {n}"),
            Port::Name(n) => format!("{name} has no port named {n:?}"),
        })?;
    let own: Vec<&EndpointSlice> = slices
        .iter()
        .filter(|s| {
            s.metadata.namespace.as_deref() == Some(&backend.namespace)
                && s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(super::rules::SERVICE_NAME_LABEL))
                    == Some(&backend.service)
        })
        .map(|s| &**s)
        .collect();
    Ok(super::rules::ready_backends(
        &own,
        port.name.as_deref().unwrap_or(""),
    ))
}

/// Sets `status.loadBalancer.ingress` to `[{ip}]` (`Some`: served) or removes it (`None`),
/// unless it already says so.
async fn write_status(client: &kube::Client, ing: &Ingress, ip: Option<IpAddr>) {
    let wanted: Vec<String> = ip.iter().map(ToString::to_string).collect();
    let current: Vec<String> = ing
        .status
        .iter()
        .flat_map(|s| s.load_balancer.iter())
        .flat_map(|lb| lb.ingress.iter().flatten())
        .map(|i| i.ip.clone().unwrap_or_default())
        .collect();
    if current == wanted {
        return;
    }
    let (Some(ns), Some(name)) = (&ing.metadata.namespace, &ing.metadata.name) else {
        return;
    };
    let api: Api<Ingress> = Api::namespaced(client.clone(), ns);
    let value = match ip {
        Some(ip) => json!([{"ip": ip.to_string()}]),
        None => serde_json::Value::Null,
    };
    let patch = json!({"status": {"loadBalancer": {"ingress": value}}});
    if let Err(e) = api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::warn!(ingress = %format!("{ns}/{name}"), error = %e, "cannot write the ingress status");
    }
}

/// Logs a problem of an Ingress and posts it as a `Warning` Event.
async fn report(client: &kube::Client, ing: &Ingress, reason: &str, message: String) {
    let ns = ing.metadata.namespace.clone().unwrap_or_default();
    let name = ing.metadata.name.clone().unwrap_or_default();
    tracing::warn!(ingress = %format!("{ns}/{name}"), "{message}");
    let record = Record {
        regarding: ObjectReference {
            api_version: Some("networking.k8s.io/v1".into()),
            kind: Some("Ingress".into()),
            name: Some(name),
            namespace: Some(ns.clone()),
            uid: ing.metadata.uid.clone(),
            resource_version: ing.metadata.resource_version.clone(),
            ..ObjectReference::default()
        },
        type_: EventType::Warning,
        reason: reason.into(),
        action: String::new(),
        message,
    };
    let reporter = Reporter {
        component: "gitplane-ingress".into(),
        instance: "service-proxy".into(),
        host: None,
    };
    let event = new_event(record, &reporter, jiff::Timestamp::now());
    let api: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), &ns);
    if let Err(e) = api.create(&PostParams::default(), &event).await {
        tracing::debug!(error = %e, "cannot post an ingress event");
    }
}
