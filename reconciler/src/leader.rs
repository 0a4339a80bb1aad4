//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's `leaderelection` does,
//! so that several replicas of a component can run and only one acts.
//!
//! [`elect`] runs a loop with two states:
//! - *candidate*: every `retry_period`, read the Lease; take it when it is free, released, or
//!   its holder has not renewed it for `lease_duration` of our own clock since we last saw it
//!   change (clocks of different machines are never compared).
//! - *leader*: every `retry_period`, renew; if no renewal succeeds for `renew_deadline`, step
//!   down to candidate.
//!
//! Every write is a compare-and-swap on the Lease's resourceVersion, so two candidates never
//! both win. On shutdown a leader releases the Lease (empty holder) so a standby takes over at
//! once instead of after `lease_duration`.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::time::Instant;

/// Where the Lease is and how long leadership lasts.
#[derive(Clone, Debug)]
pub struct Config {
    /// Namespace of the Lease (`kube-system` for the scheduler).
    pub namespace: String,
    /// Name of the Lease (`kube-scheduler`).
    pub name: String,
    /// This replica's identity, written as the holder.
    pub identity: String,
    /// How long a Lease holds without renewal (client-go default 15 s).
    pub lease_duration: Duration,
    /// How long a leader keeps trying to renew before it steps down (10 s).
    pub renew_deadline: Duration,
    /// Time between attempts (2 s).
    pub retry_period: Duration,
}

impl Config {
    /// A config with client-go's default timings.
    pub fn new(namespace: &str, name: &str, identity: &str) -> Config {
        Config {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Errors of one attempt (logged; the loop goes on).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API refused or failed a read or write of the Lease.
    #[error("lease {namespace}/{name}: {source}")]
    Api {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// Another replica holds a valid Lease.
    #[error("lease is held by {0}")]
    Held(String),
}

/// Whether this replica leads, as it changes.
#[derive(Clone, Debug)]
pub struct Leadership {
    rx: watch::Receiver<bool>,
    /// Keeps the channel open for [`Leadership::always`], which has no election task.
    _fixed: Option<std::sync::Arc<watch::Sender<bool>>>,
}

impl Leadership {
    /// Leadership that is always held (no election: a single replica).
    pub fn always() -> Leadership {
        let (tx, rx) = watch::channel(true);
        Leadership {
            rx,
            _fixed: Some(std::sync::Arc::new(tx)),
        }
    }

    /// Whether this replica leads now.
    pub fn is_leader(&self) -> bool {
        *self.rx.borrow()
    }

    /// Waits for the next change.
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The loop's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Candidate,
    Leader { last_renew: Instant },
}

/// What a candidate remembers of the Lease it saw: its record and when that record last changed
/// by our clock.
struct Observed {
    resource_version: String,
    holder: String,
    renew: Option<String>,
    at: Instant,
}

/// Starts electing; returns the leadership signal. The task runs until `shutdown` resolves, then
/// releases the Lease if it holds it.
pub fn elect(
    client: Client,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (Leadership, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let handle = tokio::spawn(async move {
        let api: Api<Lease> = Api::namespaced(client, &config.namespace);
        let mut state = State::Candidate;
        let mut observed: Option<Observed> = None;
        tokio::pin!(shutdown);
        loop {
            let now = Instant::now();
            state = match state {
                State::Candidate => match try_acquire(&api, &config, &mut observed).await {
                    Ok(()) => {
                        tracing::info!(lease = %config.name, identity = %config.identity, "became leader");
                        let _ = tx.send(true);
                        State::Leader { last_renew: now }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "not leader");
                        State::Candidate
                    }
                },
                State::Leader { last_renew } => match renew(&api, &config).await {
                    Ok(()) => State::Leader { last_renew: now },
                    Err(e)
                        if matches!(e, Error::Held(_))
                            || now.duration_since(last_renew) >= config.renew_deadline =>
                    {
                        tracing::warn!(error = %e, "lost leadership");
                        let _ = tx.send(false);
                        observed = None;
                        State::Candidate
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "renewal failed, retrying");
                        State::Leader { last_renew }
                    }
                },
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(config.retry_period) => {}
            }
        }
        if matches!(state, State::Leader { .. }) {
            let _ = tx.send(false);
            if let Err(e) = release(&api, &config).await {
                tracing::warn!(error = %e, "could not release the lease");
            }
        }
    });
    (Leadership { rx, _fixed: None }, handle)
}

fn api_error(config: &Config, source: kube::Error) -> Error {
    Error::Api {
        namespace: config.namespace.clone(),
        name: config.name.clone(),
        source,
    }
}

fn now_micro() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
}

async fn try_acquire(
    api: &Api<Lease>,
    config: &Config,
    observed: &mut Option<Observed>,
) -> Result<(), Error> {
    let current = api
        .get_opt(&config.name)
        .await
        .map_err(|e| api_error(config, e))?;
    let Some(mut lease) = current else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                namespace: Some(config.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                lease_duration_seconds: Some(seconds(config.lease_duration)),
                acquire_time: Some(now_micro()),
                renew_time: Some(now_micro()),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        api.create(&PostParams::default(), &lease)
            .await
            .map_err(|e| api_error(config, e))?;
        return Ok(());
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let renew = spec.renew_time.as_ref().map(|t| t.0.to_string());
    let rv = lease.metadata.resource_version.clone().unwrap_or_default();
    let now = Instant::now();
    let changed = observed
        .as_ref()
        .is_none_or(|o| o.resource_version != rv || o.holder != holder || o.renew != renew);
    if changed {
        *observed = Some(Observed {
            resource_version: rv,
            holder: holder.clone(),
            renew,
            at: now,
        });
    }
    let duration = spec
        .lease_duration_seconds
        .map_or(config.lease_duration, |s| {
            Duration::from_secs(s.max(0) as u64)
        });
    let seen_at = observed.as_ref().map_or(now, |o| o.at);
    let free = holder.is_empty() || holder == config.identity;
    if !free && now.duration_since(seen_at) < duration {
        return Err(Error::Held(holder));
    }
    let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(holder != config.identity);
    lease.spec = Some(LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(seconds(config.lease_duration)),
        acquire_time: Some(now_micro()),
        renew_time: Some(now_micro()),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    });
    api.replace(&config.name, &PostParams::default(), &lease)
        .await
        .map_err(|e| api_error(config, e))?;
    Ok(())
}

async fn renew(api: &Api<Lease>, config: &Config) -> Result<(), Error> {
    let mut lease = api
        .get(&config.name)
        .await
        .map_err(|e| api_error(config, e))?;
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder != config.identity {
        return Err(Error::Held(holder));
    }
    spec.renew_time = Some(now_micro());
    api.replace(&config.name, &PostParams::default(), &lease)
        .await
        .map_err(|e| api_error(config, e))?;
    Ok(())
}

async fn release(api: &Api<Lease>, config: &Config) -> Result<(), Error> {
    let mut lease = api
        .get(&config.name)
        .await
        .map_err(|e| api_error(config, e))?;
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(now_micro());
    api.replace(&config.name, &PostParams::default(), &lease)
        .await
        .map_err(|e| api_error(config, e))?;
    Ok(())
}
