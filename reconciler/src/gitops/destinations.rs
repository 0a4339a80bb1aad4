//! Where an Application is synced: the local cluster, or a cluster registered as a Secret in
//! `gitplane-system` (Argo CD's layout, see `apimachinery::fleet`).
//!
//! `spec.destination.server` and/or `.name` pick the cluster: both empty, `in-cluster` or
//! `https://kubernetes.default.svc` is the local cluster; anything else must be a registered
//! cluster, or the Application gets an `InvalidSpec` condition and nothing is applied anywhere.
//! Each registered cluster has one [`Cluster`] (one kube-rs client, its discovery cached),
//! built from its Secret and rebuilt when the Secret changes (its `resourceVersion`). Every call
//! to a remote cluster has a connect timeout of [`CONNECT_TIMEOUT`] and read/write timeouts of
//! [`IO_TIMEOUT`], and a cluster that did not answer is marked down: its Applications are
//! reported `Unknown` without calling it until a back-off (1 s doubling to [`MAX_BACKOFF`])
//! passes, so an unreachable cluster costs the others nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apimachinery::fleet::{
    self, Access, ClusterSecret, IN_CLUSTER_NAME, IN_CLUSTER_SERVER, LABEL_SECRET_TYPE,
    SECRET_TYPE_CLUSTER,
};
use apimachinery::object::ObjectExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::application::Destination;
use super::cluster::{Cluster, chain};

/// How long connecting to a remote cluster may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one read or write of a remote call may take.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest wait before an unreachable cluster is tried again.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Why a destination cannot be synced to.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    /// No registered cluster matches the destination.
    #[error(
        "spec.destination: {0} is not a registered cluster (no Secret in gitplane-system \
         labelled gitplane.io/secret-type=cluster has it); nothing is applied"
    )]
    Unknown(String),
    /// The registered cluster's Secret does not read.
    #[error(transparent)]
    Secret(#[from] fleet::SecretError),
    /// The Secret's kubeconfig or server does not make a client.
    #[error("cluster secret {secret:?}: {message}")]
    Client {
        /// The Secret.
        secret: String,
        /// Why.
        message: String,
    },
    /// The cluster Secrets could not be listed in the hub.
    #[error("listing cluster secrets in gitplane-system: {0}")]
    List(String),
    /// The cluster did not answer (now, or recently and the back-off has not passed).
    #[error("cluster {name:?} ({server}) is unreachable: {message}")]
    Unreachable {
        /// Its name.
        name: String,
        /// Its server.
        server: String,
        /// Why.
        message: String,
    },
}

impl DestinationError {
    /// The Application condition this error is reported as.
    pub fn condition(&self) -> &'static str {
        match self {
            DestinationError::Unreachable { .. } | DestinationError::List(_) => "ComparisonError",
            _ => "InvalidSpec",
        }
    }
}

/// A resolved destination.
#[derive(Clone)]
pub struct Target {
    /// The cluster's name (`in-cluster` for the local one).
    pub name: String,
    /// Its server URL.
    pub server: String,
    /// Access to it.
    pub cluster: Arc<Cluster>,
    /// Whether it is the local cluster.
    pub local: bool,
}

/// A registered cluster as the registry knows it.
#[derive(Clone, Debug)]
pub struct Registered {
    /// Its Secret, read.
    pub secret: ClusterSecret,
    /// Its server (from the kubeconfig when the Secret names none).
    pub server: String,
}

struct Remote {
    version: String,
    cluster: Arc<Cluster>,
    down: Option<Down>,
}

#[derive(Clone)]
struct Down {
    failures: u32,
    retry_at: Instant,
    message: String,
}

/// The destinations of one syncer: the local cluster and the registered ones.
pub struct Destinations {
    hub: kube::Client,
    local: Arc<Cluster>,
    remotes: Mutex<HashMap<String, Remote>>,
}

/// Whether `destination` names the local cluster.
pub fn is_local(destination: &Destination) -> bool {
    let server = destination.server.trim_end_matches('/');
    let name = destination.name.as_str();
    (server.is_empty() || server == IN_CLUSTER_SERVER)
        && (name.is_empty() || name == IN_CLUSTER_NAME)
}

/// How a destination is named in messages.
pub fn describe(destination: &Destination) -> String {
    match (destination.name.is_empty(), destination.server.is_empty()) {
        (false, true) => format!("cluster name {:?}", destination.name),
        (true, false) => format!("server {:?}", destination.server),
        _ => format!(
            "cluster name {:?} with server {:?}",
            destination.name, destination.server
        ),
    }
}

/// The server a registered cluster is reached at (its Secret's `server`, else its kubeconfig
/// context's).
fn server_of(secret: &ClusterSecret) -> Result<String, DestinationError> {
    if !secret.server.is_empty() {
        return Ok(secret.server.trim_end_matches('/').to_string());
    }
    let Access::Kubeconfig { text, context } = &secret.access else {
        return Ok(String::new());
    };
    let client_err = |message: String| DestinationError::Client {
        secret: secret.secret.clone(),
        message,
    };
    let kc = Kubeconfig::from_yaml(text).map_err(|e| client_err(format!("kubeconfig: {e}")))?;
    let context_name = context
        .clone()
        .or(kc.current_context.clone())
        .unwrap_or_default();
    let cluster_name = kc
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .ok_or_else(|| client_err(format!("kubeconfig: no context {context_name:?}")))?;
    kc.clusters
        .iter()
        .find(|c| c.name == cluster_name)
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.server.clone())
        .map(|s| s.trim_end_matches('/').to_string())
        .ok_or_else(|| {
            client_err(format!(
                "kubeconfig: cluster {cluster_name:?} has no server"
            ))
        })
}

/// A client for a registered cluster, with the remote timeouts.
pub async fn client_for(secret: &ClusterSecret) -> Result<kube::Client, DestinationError> {
    let client_err = |message: String| DestinationError::Client {
        secret: secret.secret.clone(),
        message,
    };
    let (kubeconfig, context) = match &secret.access {
        Access::Config(c) => (
            serde_json::from_value::<Kubeconfig>(fleet::kubeconfig_of(&secret.server, c))
                .map_err(|e| client_err(format!("config: {e}")))?,
            None,
        ),
        Access::Kubeconfig { text, context } => (
            Kubeconfig::from_yaml(text).map_err(|e| client_err(format!("kubeconfig: {e}")))?,
            context.clone(),
        ),
    };
    let options = KubeConfigOptions {
        context,
        ..Default::default()
    };
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| client_err(chain(&e)))?;
    if !secret.server.is_empty() {
        config.cluster_url = secret
            .server
            .parse()
            .map_err(|e| client_err(format!("server {:?}: {e}", secret.server)))?;
    }
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.read_timeout = Some(IO_TIMEOUT);
    config.write_timeout = Some(IO_TIMEOUT);
    kube::Client::try_from(config).map_err(|e| client_err(chain(&e)))
}

impl Destinations {
    /// The destinations of a syncer whose own cluster is `local`, reading cluster Secrets with
    /// `hub`.
    pub fn new(hub: kube::Client, local: Arc<Cluster>) -> Self {
        Destinations {
            hub,
            local,
            remotes: Mutex::default(),
        }
    }

    /// The local cluster.
    pub fn local(&self) -> Target {
        Target {
            name: IN_CLUSTER_NAME.into(),
            server: IN_CLUSTER_SERVER.into(),
            cluster: self.local.clone(),
            local: true,
        }
    }

    /// Every registered cluster whose Secret reads (those that do not are skipped with a
    /// warning).
    pub async fn registered(&self) -> Result<Vec<Registered>, DestinationError> {
        registered(&self.hub).await
    }

    /// The cluster `destination` names.
    pub async fn resolve(&self, destination: &Destination) -> Result<Target, DestinationError> {
        if is_local(destination) {
            return Ok(self.local());
        }
        let secrets = list(&self.hub).await?;
        {
            // A removed cluster's client goes (and with it its drift watches).
            let mut remotes = self.remotes.lock().unwrap_or_else(|p| p.into_inner());
            remotes.retain(|name, _| {
                secrets
                    .iter()
                    .any(|(_, s)| s.as_ref().is_ok_and(|s| &s.secret == name))
            });
        }
        let want_server = destination.server.trim_end_matches('/');
        let mut found = None;
        for (version, secret) in secrets {
            let secret = match secret {
                Ok(s) => s,
                Err(e) => {
                    // A broken Secret is an error only for the Applications that name it.
                    if e.to_string().contains(&format!("{:?}", destination.name)) {
                        return Err(e.into());
                    }
                    continue;
                }
            };
            let server = server_of(&secret)?;
            let name_ok = destination.name.is_empty() || destination.name == secret.name;
            let server_ok = want_server.is_empty() || want_server == server;
            if name_ok && server_ok {
                found = Some((version, secret, server));
                break;
            }
        }
        let Some((version, secret, server)) = found else {
            return Err(DestinationError::Unknown(describe(destination)));
        };
        let cached = {
            let remotes = self.remotes.lock().unwrap_or_else(|p| p.into_inner());
            remotes
                .get(&secret.secret)
                .filter(|r| r.version == version)
                .map(|r| (r.cluster.clone(), r.down.clone()))
        };
        let (cluster, down) = match cached {
            Some(c) => c,
            None => {
                let cluster = Arc::new(Cluster::new(client_for(&secret).await?));
                self.remotes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(
                        secret.secret.clone(),
                        Remote {
                            version,
                            cluster: cluster.clone(),
                            down: None,
                        },
                    );
                (cluster, None)
            }
        };
        if let Some(down) = down.filter(|d| Instant::now() < d.retry_at) {
            return Err(DestinationError::Unreachable {
                name: secret.name,
                server,
                message: down.message,
            });
        }
        Ok(Target {
            name: secret.name,
            server,
            cluster,
            local: false,
        })
    }

    /// Records how a pass against `target` went: a cluster that did not answer is marked down
    /// (doubling its back-off); one that answered is up again. Returns the error to report when
    /// it did not answer.
    pub fn observe(&self, target: &Target) -> Option<DestinationError> {
        if target.local {
            return None;
        }
        let unreachable = target.cluster.unreachable();
        let mut remotes = self.remotes.lock().unwrap_or_else(|p| p.into_inner());
        let remote = remotes
            .values_mut()
            .find(|r| Arc::ptr_eq(&r.cluster, &target.cluster))?;
        match unreachable {
            None => {
                remote.down = None;
                None
            }
            Some(message) => {
                let failures = remote.down.as_ref().map_or(0, |d| d.failures) + 1;
                let backoff =
                    (Duration::from_secs(1) * 2u32.pow(failures.min(6) - 1)).min(MAX_BACKOFF);
                tracing::warn!(cluster = %target.name, server = %target.server, error = %message,
                    retry_in = ?backoff, "destination cluster unreachable");
                remote.down = Some(Down {
                    failures,
                    retry_at: Instant::now() + backoff,
                    message: message.clone(),
                });
                Some(DestinationError::Unreachable {
                    name: target.name.clone(),
                    server: target.server.clone(),
                    message,
                })
            }
        }
    }
}

type Listed = Vec<(String, Result<ClusterSecret, fleet::SecretError>)>;

/// The cluster Secrets in the hub, each with its `resourceVersion`, read or not.
async fn list(hub: &kube::Client) -> Result<Listed, DestinationError> {
    let api: Api<Secret> = Api::namespaced(hub.clone(), fleet::NAMESPACE);
    let lp = ListParams::default().labels(&format!("{LABEL_SECRET_TYPE}={SECRET_TYPE_CLUSTER}"));
    let list = api
        .list(&lp)
        .await
        .map_err(|e| DestinationError::List(chain(&e)))?;
    let mut out = Vec::new();
    for s in list.items {
        let value = serde_json::to_value(&s).unwrap_or_default();
        let version = value.resource_version().unwrap_or("").to_string();
        out.push((version, ClusterSecret::from_secret(&value)));
    }
    Ok(out)
}

/// Every registered cluster whose Secret reads, read with `hub`.
pub async fn registered(hub: &kube::Client) -> Result<Vec<Registered>, DestinationError> {
    let mut out = Vec::new();
    for (_, secret) in list(hub).await? {
        match secret {
            Ok(secret) => match server_of(&secret) {
                Ok(server) => out.push(Registered { secret, server }),
                Err(e) => tracing::warn!(error = %e, "cluster secret skipped"),
            },
            Err(e) => tracing::warn!(error = %e, "cluster secret skipped"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, server: &str, local: bool) {
        let d = Destination {
            namespace: String::new(),
            server: server.into(),
            name: name.into(),
        };
        assert_eq!(is_local(&d), local, "{name:?} {server:?}");
    }

    #[test]
    fn only_an_empty_destination_or_the_in_cluster_names_are_local() {
        check("", "", true);
        check("in-cluster", "", true);
        check("", "https://kubernetes.default.svc", true);
        check("", "https://kubernetes.default.svc/", true);
        check("in-cluster", "https://kubernetes.default.svc", true);
        check("remote", "", false);
        check("", "https://10.0.0.1:6443", false);
        check("in-cluster", "https://10.0.0.1:6443", false);
    }
}
