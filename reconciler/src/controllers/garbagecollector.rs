//! The garbage collector: deletes objects whose owners are gone, and carries out foreground
//! and orphan deletion of owners, over the ownerReferences of every kind.
//!
//! Like Kubernetes' GC it keeps a graph (uid → object, owner uid → dependents) built from one
//! watch per discovered resource (every resource that can be listed, watched and deleted, except
//! Events), and acts only once every watch has had its first list. One loop, two states:
//! *syncing* (initial lists) and *collecting* (dirty objects processed one at a time):
//! - an object with owners, none of them present (each absence confirmed by a GET): deleted
//!   in the background; some present: the missing owners are removed from its references;
//! - an owner being deleted with the `orphan` finalizer: its dependents lose their reference
//!   to it, then the finalizer goes;
//! - with `foregroundDeletion`: its dependents are deleted (in the foreground themselves when
//!   they have dependents), and the finalizer goes once no dependent with
//!   `blockOwnerDeletion` is left.
//!
//! Resources added after start (new CRDs) are not watched until the next start.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{DeleteParams, DynamicObject, Patch, PropagationPolicy};
use kube::core::{ApiResource, GroupVersion};
use kube::discovery::{Discovery, Scope, verbs};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;
use tokio::time::Instant;

use super::{Context, Error, api_error};

/// The finalizer of orphan deletion.
pub const ORPHAN: &str = "orphan";
/// The finalizer of foreground deletion.
pub const FOREGROUND: &str = "foregroundDeletion";

/// Runs the collector until the context stops.
pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let resources = loop {
        match discover(&ctx).await {
            Ok(r) => break r,
            Err(e) => {
                tracing::info!(error = %e, "garbage collector: discovery failed; retrying");
                tokio::select! {
                    _ = ctx.stopped() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        }
    };
    let streams = resources.iter().enumerate().map(|(i, (ar, _))| {
        watcher(
            Api::<DynamicObject>::all_with(ctx.client.clone(), ar),
            watcher::Config::default(),
        )
        .default_backoff()
        .map(move |e| (i, e))
        .boxed()
    });
    let mut events = futures::stream::select_all(streams);
    let mut gc = Graph::new(ctx.client.clone(), resources);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let stopped = ctx.stopped();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => return Ok(()),
            Some((i, event)) = events.next() => match event {
                Ok(e) => gc.observe(i, e),
                Err(e) => tracing::debug!(error = %e, "garbage collector watch"),
            },
            _ = tick.tick(), if gc.synced() => {
                gc.collect(&ctx).await;
            }
        }
    }
}

/// Every resource the collector watches, with whether it is namespaced.
async fn discover(ctx: &Context) -> Result<Vec<(ApiResource, bool)>, kube::Error> {
    let discovery = Discovery::new(ctx.client.clone()).run().await?;
    let mut out = Vec::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            let ok = [verbs::LIST, verbs::WATCH, verbs::DELETE]
                .iter()
                .all(|v| caps.supports_operation(v));
            if ok && ar.kind != "Event" {
                out.push((ar, caps.scope == Scope::Namespaced));
            }
        }
    }
    Ok(out)
}

struct Node {
    resource: usize,
    obj: Arc<DynamicObject>,
}

/// The ownership graph and the work queue.
struct Graph {
    client: kube::Client,
    resources: Vec<(ApiResource, bool)>,
    nodes: HashMap<String, Node>,
    dependents: HashMap<String, HashSet<String>>,
    /// Per resource: uids seen during a (re)list in progress; `None` when not listing.
    listing: Vec<Option<HashSet<String>>>,
    synced: Vec<bool>,
    dirty: HashSet<String>,
    retry: HashMap<String, (Instant, u32)>,
}

impl Graph {
    fn new(client: kube::Client, resources: Vec<(ApiResource, bool)>) -> Graph {
        let n = resources.len();
        Graph {
            client,
            resources,
            nodes: HashMap::new(),
            dependents: HashMap::new(),
            listing: vec![None; n],
            synced: vec![false; n],
            dirty: HashSet::new(),
            retry: HashMap::new(),
        }
    }

    fn synced(&self) -> bool {
        self.synced.iter().all(|s| *s)
    }

    fn observe(&mut self, i: usize, event: watcher::Event<DynamicObject>) {
        match event {
            watcher::Event::Init => self.listing[i] = Some(HashSet::new()),
            watcher::Event::InitApply(obj) => {
                if let (Some(seen), Some(uid)) = (self.listing[i].as_mut(), obj.uid()) {
                    seen.insert(uid);
                }
                self.apply(i, obj);
            }
            watcher::Event::InitDone => {
                if let Some(seen) = self.listing[i].take() {
                    let gone: Vec<String> = self
                        .nodes
                        .iter()
                        .filter(|(uid, n)| n.resource == i && !seen.contains(*uid))
                        .map(|(uid, _)| uid.clone())
                        .collect();
                    for uid in gone {
                        self.remove(&uid);
                    }
                }
                self.synced[i] = true;
            }
            watcher::Event::Apply(obj) => self.apply(i, obj),
            watcher::Event::Delete(obj) => {
                if let Some(uid) = obj.uid() {
                    self.remove(&uid);
                }
            }
        }
    }

    fn apply(&mut self, resource: usize, obj: DynamicObject) {
        let Some(uid) = obj.uid() else {
            return;
        };
        if let Some(old) = self.nodes.get(&uid) {
            for o in old.obj.owner_references() {
                if let Some(d) = self.dependents.get_mut(&o.uid) {
                    d.remove(&uid);
                }
            }
        }
        for o in obj.owner_references() {
            self.dependents
                .entry(o.uid.clone())
                .or_default()
                .insert(uid.clone());
            self.dirty.insert(o.uid.clone());
        }
        if !obj.owner_references().is_empty() || obj.metadata.deletion_timestamp.is_some() {
            self.dirty.insert(uid.clone());
        }
        self.nodes.insert(
            uid,
            Node {
                resource,
                obj: Arc::new(obj),
            },
        );
    }

    fn remove(&mut self, uid: &str) {
        let Some(node) = self.nodes.remove(uid) else {
            return;
        };
        for o in node.obj.owner_references() {
            if let Some(d) = self.dependents.get_mut(&o.uid) {
                d.remove(uid);
            }
            self.dirty.insert(o.uid.clone());
        }
        if let Some(deps) = self.dependents.get(uid) {
            self.dirty.extend(deps.iter().cloned());
        }
    }

    /// Processes every dirty object and every retry that is due.
    async fn collect(&mut self, ctx: &Context) {
        let now = Instant::now();
        let due: Vec<String> = self
            .retry
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(uid, _)| uid.clone())
            .collect();
        let mut work: Vec<String> = self.dirty.drain().collect();
        work.extend(due);
        for uid in work {
            match self.process(ctx, &uid).await {
                Ok(()) => {
                    self.retry.remove(&uid);
                }
                Err(e) => {
                    let n = self.retry.get(&uid).map_or(1, |(_, n)| n + 1);
                    let delay = super::retry_delay(n, ctx.config.max_retry_delay)
                        .max(Duration::from_millis(100));
                    tracing::info!(%uid, error = %e, "garbage collector: retrying");
                    self.retry.insert(uid, (Instant::now() + delay, n));
                }
            }
        }
    }

    fn api(&self, resource: usize, namespace: Option<&str>) -> Api<DynamicObject> {
        let (ar, namespaced) = &self.resources[resource];
        match (namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.client(), ns, ar),
            _ => Api::all_with(self.client(), ar),
        }
    }

    fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The resource serving `kind` in `api_version`.
    fn resource_of(&self, api_version: &str, kind: &str) -> Option<usize> {
        let gv: GroupVersion = api_version.parse().ok()?;
        self.resources
            .iter()
            .position(|(ar, _)| ar.group == gv.group && ar.kind == kind)
    }

    /// Whether the owner `o` of an object in `namespace` exists (by uid), asking the API when
    /// the graph does not have it; `None` when its kind is unknown.
    async fn owner_exists(
        &self,
        o: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
        namespace: Option<&str>,
    ) -> Result<Option<bool>, Error> {
        if self.nodes.contains_key(&o.uid) {
            return Ok(Some(true));
        }
        let Some(r) = self.resource_of(&o.api_version, &o.kind) else {
            return Ok(None);
        };
        let api = self.api(r, namespace);
        match api.get_opt(&o.name).await {
            Ok(Some(found)) => Ok(Some(found.uid().as_deref() == Some(o.uid.as_str()))),
            Ok(None) => Ok(Some(false)),
            Err(e) => Err(api_error(format!("reading owner {} {}", o.kind, o.name))(e)),
        }
    }

    async fn process(&mut self, ctx: &Context, uid: &str) -> Result<(), Error> {
        let Some(node) = self.nodes.get(uid) else {
            return Ok(());
        };
        let (resource, obj) = (node.resource, node.obj.clone());
        let namespace = obj.namespace();
        let api = self.api(resource, namespace.as_deref());
        let what = format!(
            "{} {}",
            self.resources[resource].0.kind,
            super::key_of(obj.as_ref())
        );
        let dependents: Vec<Arc<DynamicObject>> = self
            .dependents
            .get(uid)
            .map(|d| {
                d.iter()
                    .filter_map(|u| self.nodes.get(u).map(|n| n.obj.clone()))
                    .collect()
            })
            .unwrap_or_default();
        if obj.metadata.deletion_timestamp.is_some() {
            let finalizers = obj.finalizers().to_vec();
            if finalizers.iter().any(|f| f == ORPHAN) {
                for dep in &dependents {
                    self.remove_owners(ctx, dep, &[uid.to_string()]).await?;
                }
                return remove_finalizer(ctx, &api, &obj, ORPHAN).await;
            }
            if finalizers.iter().any(|f| f == FOREGROUND) {
                let mut blocking = 0;
                for dep in &dependents {
                    let blocks = dep
                        .owner_references()
                        .iter()
                        .any(|o| o.uid == uid && o.block_owner_deletion == Some(true));
                    if blocks {
                        blocking += 1;
                    }
                    if dep.metadata.deletion_timestamp.is_none() {
                        let has_dependents = dep
                            .uid()
                            .and_then(|u| self.dependents.get(&u))
                            .is_some_and(|d| !d.is_empty());
                        self.delete(dep, has_dependents).await?;
                    }
                }
                if blocking == 0 {
                    return remove_finalizer(ctx, &api, &obj, FOREGROUND).await;
                }
            }
            return Ok(());
        }
        let owners = obj.owner_references().to_vec();
        if owners.is_empty() {
            return Ok(());
        }
        let (mut solid, mut gone, mut waiting) = (0, Vec::new(), Vec::new());
        for o in &owners {
            match self.nodes.get(&o.uid) {
                Some(n) => {
                    let foreground = n.obj.metadata.deletion_timestamp.is_some()
                        && n.obj.finalizers().iter().any(|f| f == FOREGROUND);
                    if foreground {
                        waiting.push(o.uid.clone());
                    } else {
                        solid += 1;
                    }
                }
                None => match self.owner_exists(o, namespace.as_deref()).await? {
                    Some(false) => gone.push(o.uid.clone()),
                    _ => solid += 1,
                },
            }
        }
        if gone.is_empty() && waiting.is_empty() {
            return Ok(());
        }
        if solid > 0 {
            gone.extend(waiting);
            return self.remove_owners(ctx, &obj, &gone).await;
        }
        let foreground = !waiting.is_empty() && !dependents.is_empty();
        tracing::debug!(object = %what, foreground, "garbage collector: deleting");
        self.delete(&obj, foreground).await
    }

    /// Deletes a dependent (foreground or background), conditional on its uid.
    async fn delete(&self, obj: &DynamicObject, foreground: bool) -> Result<(), Error> {
        let Some(uid) = obj.uid() else {
            return Ok(());
        };
        let Some(resource) = self.nodes.get(&uid).map(|n| n.resource) else {
            return Ok(());
        };
        let api = self.api(resource, obj.namespace().as_deref());
        let dp = DeleteParams {
            propagation_policy: Some(if foreground {
                PropagationPolicy::Foreground
            } else {
                PropagationPolicy::Background
            }),
            preconditions: Some(kube::api::Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&obj.name_any(), &dp).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(api_error(format!("deleting {}", super::key_of(obj)))(e)),
        }
    }

    /// Removes the owner references with these uids from `obj`.
    async fn remove_owners(
        &self,
        ctx: &Context,
        obj: &DynamicObject,
        uids: &[String],
    ) -> Result<(), Error> {
        let Some(resource) = obj
            .uid()
            .and_then(|u| self.nodes.get(&u))
            .map(|n| n.resource)
        else {
            return Ok(());
        };
        let refs: Vec<_> = obj
            .owner_references()
            .iter()
            .filter(|o| !uids.contains(&o.uid))
            .cloned()
            .collect();
        if refs.len() == obj.owner_references().len() {
            return Ok(());
        }
        let api = self.api(resource, obj.namespace().as_deref());
        patch_metadata(
            ctx,
            &api,
            obj,
            json!({"ownerReferences": refs}),
            format!("removing owners of {}", super::key_of(obj)),
        )
        .await
    }
}

/// Removes `finalizer` from `obj` (conditional on its resourceVersion).
async fn remove_finalizer(
    ctx: &Context,
    api: &Api<DynamicObject>,
    obj: &DynamicObject,
    finalizer: &str,
) -> Result<(), Error> {
    let left: Vec<&String> = obj
        .finalizers()
        .iter()
        .filter(|f| *f != finalizer)
        .collect();
    patch_metadata(
        ctx,
        api,
        obj,
        json!({"finalizers": left}),
        format!("removing finalizer {finalizer} of {}", super::key_of(obj)),
    )
    .await
}

/// Merge-patches `fields` into `obj`'s metadata, conditional on its resourceVersion; an object
/// already gone is no failure (`what` names the change in an error).
async fn patch_metadata(
    ctx: &Context,
    api: &Api<DynamicObject>,
    obj: &DynamicObject,
    mut fields: serde_json::Value,
    what: String,
) -> Result<(), Error> {
    fields["resourceVersion"] = json!(obj.resource_version());
    let patch = json!({ "metadata": fields });
    match api
        .patch(&obj.name_any(), &ctx.patch_params(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(api_error(what)(e)),
    }
}
