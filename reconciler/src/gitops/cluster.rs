//! The syncer's view of one cluster (the local one, or a registered destination): dynamic
//! objects of any kind through kube-rs, with the resources found by discovery (refreshed when a
//! kind is not yet known, e.g. a CRD that the same sync just created), and whether the cluster
//! answered its last call ([`Cluster::unreachable`]).

use std::sync::{Mutex, RwLock};

use apimachinery::registry::GroupVersionKind;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope};
use serde_json::Value;

/// Why a call to the API server failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The server answered with a Status error.
    #[error("{message}")]
    Api {
        /// HTTP code.
        code: u16,
        /// The Status message.
        message: String,
    },
    /// The kind is not served.
    #[error("the server does not serve kind {kind} in {api_version}")]
    UnknownKind {
        /// apiVersion.
        api_version: String,
        /// kind.
        kind: String,
    },
    /// The call failed before the server answered.
    #[error("{0}")]
    Transport(String),
}

impl ClusterError {
    /// Whether the error is a 404.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClusterError::Api { code: 404, .. })
    }
}

impl From<kube::Error> for ClusterError {
    fn from(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(s) => ClusterError::Api {
                code: s.code,
                message: s.message,
            },
            other => ClusterError::Transport(chain(&other)),
        }
    }
}

/// An error with its sources (`client error (Connect): tcp connect error: Connection refused`).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = s.source();
    }
    out
}

/// How a patch is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchKind {
    /// Strategic merge patch (built-in kinds).
    Strategic,
    /// JSON merge patch (custom resources).
    Merge,
}

/// A resource and whether it is namespaced.
#[derive(Clone, Debug)]
pub struct Resource {
    /// What kube-rs needs to address it.
    pub api: ApiResource,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
}

/// Access to the cluster.
pub struct Cluster {
    client: kube::Client,
    discovery: RwLock<Vec<(ApiResource, ApiCapabilities)>>,
    /// Why the last call got no answer from the server; `None` once one is answered.
    unreachable: Mutex<Option<String>>,
}

const FIELD_MANAGER: &str = "gitplane-syncer";
/// The field manager of server-side applies (`ServerSideApply=true`).
pub const SERVER_SIDE_MANAGER: &str = "gitplane";

impl Cluster {
    /// A cluster reached through `client`.
    pub fn new(client: kube::Client) -> Self {
        Cluster {
            client,
            discovery: RwLock::new(Vec::new()),
            unreachable: Mutex::new(None),
        }
    }

    /// Why the last call got no answer (a refused connection, a timeout); `None` when the
    /// server answered it (an error Status is an answer).
    pub fn unreachable(&self) -> Option<String> {
        self.unreachable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records whether `result` is an answer from the server, and converts its error.
    fn seen<T>(&self, result: Result<T, kube::Error>) -> Result<T, ClusterError> {
        let mut unreachable = self.unreachable.lock().unwrap_or_else(|p| p.into_inner());
        match &result {
            Ok(_) | Err(kube::Error::Api(_)) => *unreachable = None,
            Err(e) => *unreachable = Some(chain(e)),
        }
        result.map_err(ClusterError::from)
    }

    /// The client.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// Reads discovery again.
    pub async fn refresh(&self) -> Result<(), ClusterError> {
        let d = self.seen(Discovery::new(self.client.clone()).run().await)?;
        let mut all = Vec::new();
        for group in d.groups() {
            for (ar, caps) in group.recommended_resources() {
                all.push((ar, caps));
            }
            for version in group.versions() {
                for (ar, caps) in group.versioned_resources(version) {
                    if !all.iter().any(|(a, _)| {
                        a.group == ar.group && a.version == ar.version && a.kind == ar.kind
                    }) {
                        all.push((ar, caps));
                    }
                }
            }
        }
        *self.discovery.write().unwrap_or_else(|p| p.into_inner()) = all;
        Ok(())
    }

    fn lookup(&self, gvk: &GroupVersionKind) -> Option<Resource> {
        let d = self.discovery.read().unwrap_or_else(|p| p.into_inner());
        d.iter()
            .find(|(ar, _)| {
                ar.group == gvk.group && ar.version == gvk.version && ar.kind == gvk.kind
            })
            .map(|(ar, caps)| Resource {
                api: ar.clone(),
                namespaced: caps.scope == Scope::Namespaced,
            })
    }

    /// The resource serving a kind, refreshing discovery once if it is not known.
    pub async fn resource(&self, gvk: &GroupVersionKind) -> Result<Resource, ClusterError> {
        if let Some(r) = self.lookup(gvk) {
            return Ok(r);
        }
        self.refresh().await?;
        self.lookup(gvk).ok_or_else(|| ClusterError::UnknownKind {
            api_version: gvk.api_version(),
            kind: gvk.kind.clone(),
        })
    }

    fn api(&self, r: &Resource, namespace: Option<&str>) -> Api<DynamicObject> {
        match (r.namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &r.api),
            _ => Api::all_with(self.client.clone(), &r.api),
        }
    }

    /// Reads one object; `None` if it does not exist.
    pub async fn get(
        &self,
        r: &Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, ClusterError> {
        let obj = self.seen(self.api(r, namespace).get_opt(name).await)?;
        Ok(obj.map(|o| serde_json::to_value(o).unwrap_or_default()))
    }

    /// Lists the objects of a resource carrying a label selector, in every namespace.
    pub async fn list(&self, r: &Resource, selector: &str) -> Result<Vec<Value>, ClusterError> {
        let lp = kube::api::ListParams::default().labels(selector);
        let list = self.seen(
            Api::<DynamicObject>::all_with(self.client.clone(), &r.api)
                .list(&lp)
                .await,
        )?;
        Ok(list
            .items
            .into_iter()
            .map(|o| serde_json::to_value(o).unwrap_or_default())
            .collect())
    }

    /// Creates an object (or checks that it could be created, with `dry_run`).
    pub async fn create(
        &self,
        r: &Resource,
        obj: &Value,
        dry_run: bool,
    ) -> Result<Value, ClusterError> {
        let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str);
        let dynamic: DynamicObject = serde_json::from_value(obj.clone())
            .map_err(|e| ClusterError::Transport(format!("object does not decode: {e}")))?;
        let pp = PostParams {
            dry_run,
            field_manager: Some(FIELD_MANAGER.into()),
        };
        let created = self.seen(self.api(r, ns).create(&pp, &dynamic).await)?;
        Ok(serde_json::to_value(created).unwrap_or_default())
    }

    /// Patches an object (or checks that the patch would pass, with `dry_run`).
    pub async fn patch(
        &self,
        r: &Resource,
        namespace: Option<&str>,
        name: &str,
        patch: &Value,
        kind: PatchKind,
        dry_run: bool,
    ) -> Result<Value, ClusterError> {
        let pp = PatchParams {
            dry_run,
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        }
        .validation_strict();
        let p = match kind {
            PatchKind::Strategic => Patch::Strategic(patch.clone()),
            PatchKind::Merge => Patch::Merge(patch.clone()),
        };
        let patched = self.seen(self.api(r, namespace).patch(name, &pp, &p).await)?;
        Ok(serde_json::to_value(patched).unwrap_or_default())
    }

    /// Applies an object server-side with field manager [`SERVER_SIDE_MANAGER`], taking over
    /// conflicting fields as Argo CD's `ServerSideApply=true` does (or checks that the apply
    /// would pass, with `dry_run`).
    pub async fn apply(
        &self,
        r: &Resource,
        obj: &Value,
        dry_run: bool,
    ) -> Result<Value, ClusterError> {
        let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str);
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let pp = PatchParams {
            dry_run,
            force: true,
            field_manager: Some(SERVER_SIDE_MANAGER.into()),
            ..Default::default()
        }
        .validation_strict();
        let applied = self
            .api(r, ns)
            .patch(name, &pp, &Patch::Apply(obj.clone()))
            .await?;
        Ok(serde_json::to_value(applied).unwrap_or_default())
    }

    /// Deletes an object in the background (its dependents go with it).
    pub async fn delete(
        &self,
        r: &Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<(), ClusterError> {
        match self.seen(
            self.api(r, namespace)
                .delete(name, &DeleteParams::background())
                .await,
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }
}
