//! Shared informers: one cluster-wide watch per kind for the whole controller-manager, as
//! kube-controller-manager's `SharedInformerFactory` (with the manager's own client,
//! [`super::INFORMER_IDENTITY`], which may read every kind). Every controller that asks for a kind gets the same reflector store and its own
//! stream of changed objects to trigger its [`kube::runtime::Controller`].
//!
//! A subscriber that comes late first gets every object of the store, then the changes, so no
//! controller misses an object that was listed before it subscribed (an object may come twice,
//! which only reconciles it twice). Each subscriber has an unbounded queue, so a busy
//! controller never holds the watch up for the others. The watches run on the manager's
//! tasks and stop with the leadership term.
//!
//! kube-rs' own shared stores (`store_shared`, `reflect_shared`) were evaluated: their
//! subscribers see only what comes after they subscribe, and one slow subscriber stops the
//! broadcast for all, which a manager starting its controllers concurrently cannot use.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The informers of one leadership term, created on first use.
pub struct Informers {
    client: Client,
    stop: CancellationToken,
    tasks: TaskTracker,
    kinds: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

/// One kind's watch: its store, its subscribers and whether it has listed.
pub struct Informer<K: Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    subscribers: Mutex<Vec<mpsc::UnboundedSender<K>>>,
    listed: watch::Sender<bool>,
}

impl Informers {
    /// Informers watching with `client` until `stop`, their watches on `tasks`.
    pub fn new(client: Client, stop: CancellationToken, tasks: TaskTracker) -> Informers {
        Informers {
            client,
            stop,
            tasks,
            kinds: Mutex::new(HashMap::new()),
        }
    }

    /// The informer of `K` (all namespaces), started on the first call.
    pub fn get<K>(&self) -> Arc<Informer<K>>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let mut kinds = self.kinds.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = kinds.get(&TypeId::of::<K>())
            && let Ok(informer) = found.clone().downcast::<Informer<K>>()
        {
            return informer;
        }
        let (store, writer) = reflector::store();
        let informer = Arc::new(Informer {
            store,
            subscribers: Mutex::new(Vec::new()),
            listed: watch::channel(false).0,
        });
        kinds.insert(TypeId::of::<K>(), informer.clone());
        let events = reflector::reflector(
            writer,
            watcher(
                Api::<K>::all(self.client.clone()),
                watcher::Config::default(),
            )
            .default_backoff(),
        );
        let (stop, driven) = (self.stop.clone(), informer.clone());
        self.tasks.spawn(async move {
            tokio::pin!(events);
            // The objects of a (re)list, published once the store holds them (at `InitDone`):
            // a controller triggered earlier would not find them in the store.
            let mut listing = Vec::new();
            loop {
                let event = tokio::select! {
                    _ = stop.cancelled() => break,
                    event = events.next() => event,
                };
                match event {
                    None => break,
                    Some(Ok(watcher::Event::InitDone)) => {
                        driven.listed.send_replace(true);
                        for obj in listing.drain(..) {
                            driven.publish(obj);
                        }
                    }
                    Some(Ok(watcher::Event::Init)) => listing.clear(),
                    Some(Ok(watcher::Event::InitApply(obj))) => listing.push(obj),
                    Some(Ok(watcher::Event::Apply(obj) | watcher::Event::Delete(obj))) => {
                        driven.publish(obj)
                    }
                    Some(Err(e)) => tracing::debug!(error = %e, "shared informer watch (retrying)"),
                }
            }
        });
        informer
    }
}

impl<K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static> Informer<K> {
    /// The store every controller reads.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// The changed objects from now on, after every object the store holds now; for
    /// `Controller::for_stream`, `owns_stream` and `watches_stream`.
    pub fn subscribe(&self) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut subscribers = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        for obj in self.store.state() {
            let _ = tx.send(obj.as_ref().clone());
        }
        subscribers.push(tx);
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).map(Ok)
    }

    /// Resolves once the first list is in the store (`false` if the watch stopped first).
    pub async fn listed(&self) -> bool {
        self.listed.subscribe().wait_for(|l| *l).await.is_ok()
    }

    fn publish(&self, obj: K) {
        let mut subscribers = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        subscribers.retain(|tx| tx.send(obj.clone()).is_ok());
    }
}
