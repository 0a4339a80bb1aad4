//! The node's service proxy (kube-proxy's job), in userspace.
//!
//! It watches Services and EndpointSlices, computes the [`rules::rules`] and keeps one TCP
//! listener per frontend address (a Service's `clusterIP:port`, and `address:nodePort` on each of
//! the node's addresses) that has ready endpoints. Each accepted connection goes to the next
//! ready endpoint (round robin; an endpoint that refuses is skipped) and the bytes are copied
//! both ways. A frontend with no ready endpoint has no listener, so connections to it are
//! refused, as kube-proxy's REJECT rule does; an endpoint that becomes unready gets no new
//! connections while established ones run on.
//!
//! Cluster IPs are only reachable if they are local addresses of the host. With
//! [`ClusterIps::Interface`] (root, `ip` available) the proxy adds each one as a /32 to a dummy
//! interface, as kube-proxy's IPVS mode does with `kube-ipvs0` (or to `lo` where the kernel has
//! no dummy interfaces), so that the host and pods in their own network namespaces (whose
//! default route leads to the host) reach them. With
//! [`ClusterIps::Bind`] it only binds, which works for ranges the host already treats as local
//! (a range inside 127.0.0.0/8). UDP is not proxied.
//!
//! With [`Config::ingress`] it also runs the built-in ingress controller ([`ingress`]), which
//! routes HTTP and HTTPS requests by the Ingresses to the same ready endpoints.
//!
//! States of the loop: *syncing* (the two watches have not listed yet; nothing is served), then
//! *serving* (every change recomputes the rules and reconciles the listeners).

pub mod ingress;
pub mod interface;
pub mod rules;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use rules::Rule;

/// How cluster IPs are made reachable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterIps {
    /// Not proxied (node ports only).
    Off,
    /// Bind them as they are: for service ranges the host treats as local (127.0.0.0/8).
    Bind,
    /// Add each one to this dummy interface (created when missing), then bind.
    Interface(String),
}

/// Proxy settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Addresses node ports listen on: the node's own addresses, loopback included.
    pub node_addresses: Vec<IpAddr>,
    /// How cluster IPs are handled.
    pub cluster_ips: ClusterIps,
    /// The built-in ingress controller's listeners; `None`: no ingress controller.
    pub ingress: Option<ingress::Config>,
}

/// A running proxy; dropping it does not stop it, [`ServiceProxy::shutdown`] does.
pub struct ServiceProxy {
    stop: CancellationToken,
    task: JoinHandle<()>,
    ingress: Option<ingress::IngressController>,
}

impl ServiceProxy {
    /// Starts watching and proxying.
    pub fn start(client: kube::Client, config: Config) -> Self {
        let stop = CancellationToken::new();
        let ingress = config.ingress.clone().map(|c| {
            ingress::IngressController::start(client.clone(), c, config.node_addresses.clone())
        });
        let task = tokio::spawn(run(client, config, stop.clone()));
        ServiceProxy {
            stop,
            task,
            ingress,
        }
    }

    /// Closes every listener (and removes the cluster IPs it added) and stops.
    pub async fn shutdown(self) {
        self.stop.cancel();
        if let Some(ingress) = self.ingress {
            ingress.shutdown().await;
        }
        let _ = self.task.await;
    }
}

/// Drives a reflector until the stream ends, poking `changed` after every event (the proxy's
/// and the agent's NetworkPolicy enforcer's watches).
pub(crate) fn reflect<K>(api: Api<K>, changed: Arc<Notify>) -> (Store<K>, JoinHandle<()>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .touched_objects();
    let task = tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            if let Err(e) = event {
                tracing::debug!(error = %e, "watch error (retrying)");
            }
            changed.notify_one();
        }
    });
    (reader, task)
}

async fn run(client: kube::Client, config: Config, stop: CancellationToken) {
    let changed = Arc::new(Notify::new());
    let (services, svc_task) = reflect(Api::<Service>::all(client.clone()), changed.clone());
    let (slices, slice_task) = reflect(Api::<EndpointSlice>::all(client), changed.clone());
    let mut proxy = Listeners::new(config);
    // Syncing: wait for both initial lists (or a stop).
    tokio::select! {
        _ = async { let _ = tokio::join!(services.wait_until_ready(), slices.wait_until_ready()); } => {}
        _ = stop.cancelled() => {
            svc_task.abort();
            slice_task.abort();
            return;
        }
    }
    tracing::info!("service proxy serving");
    loop {
        let svcs: Vec<Service> = services.state().iter().map(|s| (**s).clone()).collect();
        let eps: Vec<EndpointSlice> = slices.state().iter().map(|s| (**s).clone()).collect();
        proxy.reconcile(rules::rules(
            &svcs,
            &eps,
            &proxy.config.node_addresses,
            proxy.config.cluster_ips != ClusterIps::Off,
        ));
        tokio::select! {
            _ = changed.notified() => {
                // Let a burst of events (a rollout) settle into one recomputation.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            _ = stop.cancelled() => break,
        }
    }
    svc_task.abort();
    slice_task.abort();
    proxy.reconcile(BTreeMap::new());
}

/// The backends of one listener, swapped in place when endpoints change.
struct Frontend {
    rule: Rule,
    backends: Arc<RwLock<Vec<SocketAddr>>>,
    task: JoinHandle<()>,
}

/// The listeners now open, by address.
struct Listeners {
    config: Config,
    open: BTreeMap<SocketAddr, Frontend>,
    /// Addresses that failed to bind, so the warning is given once.
    failed: BTreeMap<SocketAddr, String>,
    /// The device cluster IPs are added to, once known ([`ClusterIps::Interface`]).
    device: Option<String>,
}

impl Listeners {
    fn new(config: Config) -> Self {
        Listeners {
            config,
            open: BTreeMap::new(),
            failed: BTreeMap::new(),
            device: None,
        }
    }

    /// Opens, updates and closes listeners to match `wanted`; rules without backends get none.
    fn reconcile(&mut self, wanted: BTreeMap<SocketAddr, Rule>) {
        let wanted: BTreeMap<SocketAddr, Rule> = wanted
            .into_iter()
            .filter(|(_, r)| !r.backends.is_empty())
            .collect();
        let gone: Vec<SocketAddr> = self
            .open
            .keys()
            .filter(|a| !wanted.contains_key(a))
            .copied()
            .collect();
        for addr in gone {
            if let Some(f) = self.open.remove(&addr) {
                f.task.abort();
                tracing::info!(%addr, service = %f.rule.service, "closed (no ready endpoints)");
                if f.rule.frontend == rules::Frontend::ClusterIp {
                    self.release_ip(addr.ip());
                }
            }
        }
        self.failed.retain(|a, _| wanted.contains_key(a));
        for (addr, rule) in wanted {
            if let Some(f) = self.open.get_mut(&addr) {
                if f.rule.backends != rule.backends {
                    *f.backends.write().unwrap_or_else(|p| p.into_inner()) = rule.backends.clone();
                }
                f.rule = rule;
                continue;
            }
            if let ClusterIps::Interface(name) = &self.config.cluster_ips
                && rule.frontend == rules::Frontend::ClusterIp
            {
                let added = match &self.device {
                    Some(d) => Ok(d.clone()),
                    None => interface::device(name),
                }
                .and_then(|d| interface::add_address(&d, addr.ip()).map(|()| d));
                match added {
                    Ok(d) => self.device = Some(d),
                    Err(e) => {
                        self.warn_once(addr, &rule, e.to_string());
                        continue;
                    }
                }
            }
            match bind(addr) {
                Ok(listener) => {
                    let backends = Arc::new(RwLock::new(rule.backends.clone()));
                    let task =
                        tokio::spawn(serve(listener, backends.clone(), rule.service.clone()));
                    tracing::info!(%addr, service = %rule.service, backends = rule.backends.len(), "listening");
                    self.failed.remove(&addr);
                    self.open.insert(
                        addr,
                        Frontend {
                            rule,
                            backends,
                            task,
                        },
                    );
                }
                Err(e) => self.warn_once(addr, &rule, e.to_string()),
            }
        }
    }

    fn release_ip(&self, ip: IpAddr) {
        if let Some(device) = &self.device
            && !self.open.keys().any(|a| a.ip() == ip)
            && let Err(e) = interface::remove_address(device, ip)
        {
            tracing::warn!(%ip, error = %e, "could not remove a cluster IP from {device}");
        }
    }

    fn warn_once(&mut self, addr: SocketAddr, rule: &Rule, error: String) {
        if self.failed.get(&addr) != Some(&error) {
            tracing::warn!(%addr, service = %rule.service, %error, "cannot listen for a service");
            self.failed.insert(addr, error);
        }
    }
}

/// A listener with SO_REUSEADDR, so a closed frontend can be reopened at once.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Accepts connections and forwards each to the next backend that accepts it.
async fn serve(listener: TcpListener, backends: Arc<RwLock<Vec<SocketAddr>>>, service: String) {
    let next = Arc::new(AtomicUsize::new(0));
    loop {
        let (mut inbound, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(%service, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (backends, next, service) = (backends.clone(), next.clone(), service.clone());
        tokio::spawn(async move {
            let latest = || backends.read().unwrap_or_else(|p| p.into_inner()).clone();
            let Some(mut outbound) = connect_latest(latest, &next, CONNECT_TIMEOUT).await else {
                tracing::debug!(%service, %peer, "no endpoint accepted the connection");
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
        });
    }
}

/// How long a connection attempt to one endpoint runs alone before the next endpoint is tried
/// beside it (RFC 8305's connection attempt delay, at its lower bound). An endpoint whose pod
/// has just gone, its network namespace deleted before this proxy heard that the pod is
/// terminating, neither accepts nor refuses: its SYNs go unanswered. Tried one after the other,
/// such an endpoint held each connection that came to it for the whole [`CONNECT_TIMEOUT`]
/// (2 s in every rollout of `bench gitops-rollout`).
const ATTEMPT_DELAY: Duration = Duration::from_millis(100);

/// How long one attempt may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Connects to one of `backends`, in round-robin order from `next`: an endpoint that refuses
/// is skipped at once, one that has not answered within [`ATTEMPT_DELAY`] gets the next one
/// tried beside it, and the first connection made wins (the others are dropped).
pub(crate) async fn connect_any(backends: &[SocketAddr], next: &AtomicUsize) -> Option<TcpStream> {
    connect_latest(|| backends.to_vec(), next, CONNECT_TIMEOUT).await
}

/// [`connect_any`] over the endpoints `latest` gives, read again while the attempts made so far
/// are unanswered: an endpoint that became ready meanwhile is tried too. In a rollout whose old
/// pods go before this proxy hears that the new ones are ready, every endpoint it knew can be
/// silent at once; a connection then waited for [`CONNECT_TIMEOUT`] and failed (one request in
/// about fifteen version switches of `bench gitops-rollout`), where the new pods were ready a
/// few hundred milliseconds later. Each attempt's timeout is `timeout` (the tests give one that
/// no attempt ends by).
async fn connect_latest(
    latest: impl Fn() -> Vec<SocketAddr>,
    next: &AtomicUsize,
    timeout: Duration,
) -> Option<TcpStream> {
    let start = next.fetch_add(1, Ordering::Relaxed);
    let mut tried = Vec::new();
    let attempt = |addr: SocketAddr| async move {
        (
            addr,
            tokio::time::timeout(timeout, TcpStream::connect(addr)).await,
        )
    };
    let mut attempts = futures::stream::FuturesUnordered::new();
    // The next endpoint to try: in round-robin order from `start`, the first of the endpoints
    // known now that no attempt went to.
    let mut pick = || {
        let backends = latest();
        let addr = (0..backends.len())
            .map(|i| backends[(start + i) % backends.len()])
            .find(|a| !tried.contains(a))?;
        tried.push(addr);
        Some(addr)
    };
    attempts.push(attempt(pick()?));
    loop {
        tokio::select! {
            Some((addr, result)) = attempts.next() => {
                match result {
                    Ok(Ok(stream)) => {
                        let _ = stream.set_nodelay(true);
                        return Some(stream);
                    }
                    Ok(Err(e)) => tracing::debug!(%addr, error = %e, "endpoint refused"),
                    Err(_) => tracing::debug!(%addr, "endpoint timed out"),
                }
                attempts.extend(pick().map(attempt));
                if attempts.is_empty() {
                    return None;
                }
            }
            () = tokio::time::sleep(ATTEMPT_DELAY) => {
                attempts.extend(pick().map(attempt));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback endpoint that neither accepts nor refuses: its accept queue (length 0) is
    /// full, so the kernel drops further SYNs, as for a pod whose network namespace is gone.
    async fn silent_endpoint() -> (tokio::net::TcpListener, TcpStream) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(0).unwrap();
        let filler = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        (listener, filler)
    }

    #[tokio::test]
    async fn a_silent_endpoint_does_not_hold_the_connection_while_another_accepts() {
        let (silent, _filler) = silent_endpoint().await;
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backends = [silent.local_addr().unwrap(), live.local_addr().unwrap()];
        // The silent endpoint first; its attempt alone would wait for the whole hour.
        let next = AtomicUsize::new(0);
        let connect = connect_latest(|| backends.to_vec(), &next, Duration::from_secs(3600));
        let stream = tokio::time::timeout(Duration::from_secs(60), connect)
            .await
            .expect("the silent endpoint held the connection")
            .expect("the live endpoint accepts");
        assert_eq!(stream.peer_addr().unwrap(), backends[1]);
    }

    #[tokio::test]
    async fn an_endpoint_that_becomes_ready_while_the_others_are_silent_gets_the_connection() {
        let (silent, _filler) = silent_endpoint().await;
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let known = std::sync::Mutex::new(vec![silent.local_addr().unwrap()]);
        let next = AtomicUsize::new(0);
        let latest = || known.lock().unwrap().clone();
        let connect = connect_latest(latest, &next, Duration::from_secs(3600));
        let ready_later = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            known.lock().unwrap().push(live.local_addr().unwrap());
            std::future::pending::<()>().await;
        };
        let stream = tokio::select! {
            s = tokio::time::timeout(Duration::from_secs(60), connect) => s,
            () = ready_later => unreachable!(),
        };
        let stream = stream
            .expect("the silent endpoint held the connection")
            .expect("the endpoint that became ready accepts");
        assert_eq!(stream.peer_addr().unwrap(), live.local_addr().unwrap());
    }

    #[tokio::test]
    async fn refusing_endpoints_are_skipped_and_none_left_is_none() {
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let next = AtomicUsize::new(0);
        let backends = [closed, live.local_addr().unwrap()];
        let stream = connect_any(&backends, &next)
            .await
            .expect("the live endpoint");
        assert_eq!(stream.peer_addr().unwrap(), backends[1]);
        assert!(connect_any(&[closed], &next).await.is_none());
        assert!(connect_any(&[], &next).await.is_none());
    }
}
