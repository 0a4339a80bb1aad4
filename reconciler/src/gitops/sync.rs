//! One sync of one Application: plan, dry-run, apply, prune.
//!
//! - **plan**: every rendered object gets its resource (discovery), its namespace (the
//!   destination for namespaced kinds that name none) and the marks of its app; its live state
//!   is read (one labelled LIST per kind, a GET for objects not yet labelled); it is in sync, to
//!   create, or to patch. Objects the app recorded before and renders no more are prune
//!   candidates, kept only when the live object still names this app.
//! - **dry-run**: every create and patch goes through the API server with `dryRun=All`, so
//!   validation and admission speak before anything is written. One failure stops the sync.
//! - **apply**: in order (sync wave, then namespaces, CRDs, RBAC, config, services, workloads);
//!   discovery is refreshed after CRDs.
//! - **prune**: in reverse order.

use std::collections::{BTreeMap, HashMap};

use apimachinery::application::{ANNOTATION_APP, LABEL_APP};
use apimachinery::object::ObjectExt;
use apimachinery::patch::strategic;
use apimachinery::registry::GroupVersionKind;
use serde_json::{Value, json};

use super::application::ResourceStatus;
use super::cluster::{Cluster, ClusterError, PatchKind, Resource, SERVER_SIDE_MANAGER};
use super::compare;
use super::health::{self, Health};

/// What to do with one object.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Live matches the repository.
    InSync,
    /// Not live yet.
    Create,
    /// Live differs; this patch fixes it.
    Patch(Value),
}

/// One rendered object, ready to apply.
#[derive(Clone, Debug)]
pub struct Item {
    /// Kind.
    pub gvk: GroupVersionKind,
    /// The resource; `None` while its CRD is created by the same sync.
    pub resource: Option<Resource>,
    /// The object with namespace and app marks (no revision).
    pub managed: Value,
    /// `file:line` it came from.
    pub source: String,
    /// The live object.
    pub live: Option<Value>,
    /// What to do.
    pub action: Action,
    /// Applied server-side (`ServerSideApply=true`) rather than patched the way `kubectl apply`
    /// patches.
    pub server_side: bool,
}

impl Item {
    fn namespace(&self) -> Option<&str> {
        self.managed.namespace()
    }
    fn name(&self) -> &str {
        self.managed.name().unwrap_or("")
    }
    /// `Kind/namespace/name` for messages.
    pub fn describe(&self) -> String {
        match self.namespace() {
            Some(ns) => format!("{}/{}/{}", self.gvk.kind, ns, self.name()),
            None => format!("{}/{}", self.gvk.kind, self.name()),
        }
    }
}

/// An object to prune.
#[derive(Clone, Debug)]
pub struct Prune {
    /// Its recorded status entry.
    pub entry: ResourceStatus,
    /// Its resource.
    pub resource: Resource,
}

/// The plan of one sync.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Objects in apply order.
    pub items: Vec<Item>,
    /// Objects to prune.
    pub prune: Vec<Prune>,
}

impl Plan {
    /// Whether anything would change (prune candidates included).
    pub fn out_of_sync(&self) -> bool {
        !self.prune.is_empty() || self.items.iter().any(|i| i.action != Action::InSync)
    }
}

/// Why a plan or sync failed; every message names the object and, where known, its file:line.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct SyncError(pub Vec<String>);

fn patch_kind(gvk: &GroupVersionKind) -> PatchKind {
    if strategic::is_known_kind(gvk) {
        PatchKind::Strategic
    } else {
        PatchKind::Merge
    }
}

fn key(group: &str, kind: &str, ns: Option<&str>, name: &str) -> String {
    format!("{group}/{kind}/{}/{name}", ns.unwrap_or(""))
}

/// Builds the plan for `rendered` (objects with their `file:line`).
pub async fn plan(
    cluster: &Cluster,
    app: &str,
    destination: &str,
    repo_url: &str,
    rendered: &[(Value, String)],
    previous: &[ResourceStatus],
    server_side: bool,
) -> Result<Plan, SyncError> {
    let mut errors = Vec::new();
    // Kinds that CRDs in this render will serve.
    let pending: Vec<(String, String)> = rendered
        .iter()
        .filter(|(o, _)| o.kind() == Some("CustomResourceDefinition"))
        .filter_map(|(o, _)| {
            Some((
                o.path("spec.group")?.as_str()?.to_string(),
                o.path("spec.names.kind")?.as_str()?.to_string(),
            ))
        })
        .collect();
    let mut items = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for (obj, source) in rendered {
        let (Some(av), Some(kind)) = (obj.api_version(), obj.kind()) else {
            errors.push(format!("{source}: object has no apiVersion or kind"));
            continue;
        };
        if obj.name().is_none_or(str::is_empty) {
            errors.push(format!("{source}: {kind} has no metadata.name"));
            continue;
        }
        let gvk = GroupVersionKind::from_api_version(av, kind);
        let resource = match cluster.resource(&gvk).await {
            Ok(r) => Some(r),
            Err(ClusterError::UnknownKind { .. })
                if pending
                    .iter()
                    .any(|(g, k)| *g == gvk.group && *k == gvk.kind) =>
            {
                None
            }
            Err(e) => {
                errors.push(format!("{source}: {e}"));
                continue;
            }
        };
        let mut managed = compare::managed(obj, app);
        let namespaced = resource.as_ref().is_none_or(|r| r.namespaced);
        if namespaced {
            if managed.namespace().is_none_or(str::is_empty) {
                let ns = if destination.is_empty() {
                    "default"
                } else {
                    destination
                };
                managed.set_meta("namespace", json!(ns));
            }
        } else {
            managed.metadata_mut().remove("namespace");
        }
        // An Application rendered by another one inherits its repository.
        if kind == "Application"
            && managed
                .path("spec.source.repoURL")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            managed["spec"]["source"]["repoURL"] = json!(repo_url);
        }
        // The types of Kubernetes' built-in kinds: a typo or a wrong type stops the commit here,
        // with its file and line, rather than being dropped by the server.
        match apimachinery::typed::check(&gvk, &managed) {
            Err(e) => {
                errors.push(format!("{source}: {e}"));
                continue;
            }
            Ok(Some(unknown)) if !unknown.is_empty() => {
                let list: Vec<String> = unknown.iter().map(|u| format!("\"{u}\"")).collect();
                errors.push(format!(
                    "{source}: {kind} {:?}: unknown field {}",
                    managed.name().unwrap_or(""),
                    list.join(", ")
                ));
                continue;
            }
            Ok(_) => {}
        }
        let k = key(
            &gvk.group,
            kind,
            managed.namespace(),
            managed.name().unwrap_or(""),
        );
        if let Some(first) = seen.insert(k.clone(), source.clone()) {
            errors.push(format!(
                "{source}: {kind} {:?} is also rendered by {first}",
                managed.name().unwrap_or("")
            ));
            continue;
        }
        items.push(Item {
            gvk,
            resource,
            managed,
            source: source.clone(),
            live: None,
            action: Action::Create,
            server_side,
        });
    }
    if !errors.is_empty() {
        return Err(SyncError(errors));
    }
    items.sort_by_key(|i| compare::order_key(&i.managed));

    // Live state: one labelled list per resource, a GET for what the list did not find.
    let selector = format!("{LABEL_APP}={app}");
    let mut live: HashMap<String, Value> = HashMap::new();
    let mut listed: Vec<String> = Vec::new();
    for item in &items {
        let Some(r) = &item.resource else { continue };
        let rk = format!("{}/{}", r.api.group, r.api.plural);
        if listed.contains(&rk) {
            continue;
        }
        listed.push(rk);
        match cluster.list(r, &selector).await {
            Ok(objs) => {
                for o in objs {
                    let k = key(
                        &r.api.group,
                        &r.api.kind,
                        o.namespace(),
                        o.name().unwrap_or(""),
                    );
                    live.insert(k, o);
                }
            }
            Err(e) => errors.push(format!("listing {}: {e}", r.api.plural)),
        }
    }
    for item in &mut items {
        let k = key(
            &item.gvk.group,
            &item.gvk.kind,
            item.namespace(),
            item.name(),
        );
        item.live = match live.remove(&k) {
            Some(l) => Some(l),
            None => match &item.resource {
                Some(r) => match cluster.get(r, item.namespace(), item.name()).await {
                    Ok(l) => l,
                    Err(e) => {
                        errors.push(format!("{}: reading {}: {e}", item.source, item.describe()));
                        None
                    }
                },
                None => None,
            },
        };
        if let Some(l) = &item.live {
            if let Some(owner) = l.annotations().get(ANNOTATION_APP)
                && owner != app
            {
                errors.push(format!(
                    "{}: {} is managed by application {owner:?}; refusing to take it over",
                    item.source,
                    item.describe()
                ));
                continue;
            }
            let in_sync = match server_side {
                true => {
                    compare::in_sync_server_side(&item.managed, l, &item.gvk, SERVER_SIDE_MANAGER)
                        .map_err(|e| e.to_string())
                }
                false => compare::in_sync(&item.managed, l, &item.gvk).map_err(|e| e.to_string()),
            };
            item.action = match in_sync {
                Ok(true) => Action::InSync,
                Ok(false) => Action::Patch(Value::Null),
                Err(e) => {
                    errors.push(format!("{}: {}: {e}", item.source, item.describe()));
                    continue;
                }
            };
        }
    }

    // Prune candidates: recorded before, rendered no more, still naming this app.
    let mut prune = Vec::new();
    for entry in previous {
        let ns = (!entry.namespace.is_empty()).then_some(entry.namespace.as_str());
        let k = key(&entry.group, &entry.kind, ns, &entry.name);
        if seen.contains_key(&k) {
            continue;
        }
        let gvk = GroupVersionKind {
            group: entry.group.clone(),
            version: entry.version.clone(),
            kind: entry.kind.clone(),
        };
        let Ok(resource) = cluster.resource(&gvk).await else {
            continue;
        };
        match cluster.get(&resource, ns, &entry.name).await {
            Ok(Some(l)) if l.annotations().get(ANNOTATION_APP).map(String::as_str) == Some(app) => {
                prune.push(Prune {
                    entry: entry.clone(),
                    resource,
                });
            }
            Ok(_) => {}
            Err(e) => errors.push(format!("reading {}/{}: {e}", entry.kind, entry.name)),
        }
    }
    if !errors.is_empty() {
        return Err(SyncError(errors));
    }
    Ok(Plan { items, prune })
}

fn namespace_created_by(plan: &Plan, message: &str) -> bool {
    plan.items.iter().any(|i| {
        i.gvk.kind == "Namespace"
            && i.action == Action::Create
            && message.contains(&format!("namespaces \"{}\" not found", i.name()))
    })
}

async fn write(
    cluster: &Cluster,
    item: &Item,
    revision: &str,
    dry_run: bool,
) -> Result<Option<Value>, ClusterError> {
    let Some(r) = &item.resource else {
        return Ok(None);
    };
    if item.server_side {
        if item.action == Action::InSync {
            return Ok(item.live.clone());
        }
        let applied = compare::to_apply_server_side(&item.managed, revision, &item.source);
        return cluster.apply(r, &applied, dry_run).await.map(Some);
    }
    let applied = compare::to_apply(&item.managed, revision, &item.source);
    match (&item.action, &item.live) {
        (Action::InSync, _) => Ok(item.live.clone()),
        (Action::Create, _) | (_, None) => cluster.create(r, &applied, dry_run).await.map(Some),
        (Action::Patch(_), Some(live)) => {
            let patch = compare::patch_for(&applied, live, &item.gvk)
                .map_err(|e| ClusterError::Transport(e.to_string()))?;
            cluster
                .patch(
                    r,
                    item.namespace(),
                    item.name(),
                    &patch,
                    patch_kind(&item.gvk),
                    dry_run,
                )
                .await
                .map(Some)
        }
    }
}

/// Sends every change through the API server with `dryRun=All`; returns the refusals as
/// (index of the item, message).
pub async fn dry_run_items(cluster: &Cluster, plan: &Plan, revision: &str) -> Vec<(usize, String)> {
    let mut errors = Vec::new();
    for (i, item) in plan.items.iter().enumerate() {
        if item.action == Action::InSync {
            continue;
        }
        if let Err(e) = write(cluster, item, revision, true).await {
            let message = e.to_string();
            if !namespace_created_by(plan, &message) {
                errors.push((i, message));
            }
        }
    }
    errors
}

/// Sends every change through the API server with `dryRun=All`; returns the refusals, each
/// naming the object and its file:line.
pub async fn dry_run(cluster: &Cluster, plan: &Plan, revision: &str) -> Vec<String> {
    dry_run_items(cluster, plan, revision)
        .await
        .into_iter()
        .map(|(i, m)| {
            format!(
                "{}: {}: {m}",
                plan.items[i].source,
                plan.items[i].describe()
            )
        })
        .collect()
}

/// Applies the plan, then prunes (when `prune`); returns the objects as written.
pub async fn apply(
    cluster: &Cluster,
    plan: &mut Plan,
    revision: &str,
    prune: bool,
) -> Result<(), SyncError> {
    let mut crds_applied = false;
    for item in &mut plan.items {
        if item.resource.is_none() {
            if crds_applied {
                let _ = cluster.refresh().await;
            }
            item.resource = cluster.resource(&item.gvk).await.ok();
            if item.resource.is_none() {
                return Err(SyncError(vec![format!(
                    "{}: kind {} is not served even after its CRD was applied",
                    item.source, item.gvk.kind
                )]));
            }
        }
        if item.action == Action::InSync {
            continue;
        }
        match write(cluster, item, revision, false).await {
            Ok(written) => {
                item.live = written;
                item.action = Action::InSync;
            }
            Err(e) => {
                return Err(SyncError(vec![format!(
                    "{}: {}: {e}",
                    item.source,
                    item.describe()
                )]));
            }
        }
        if item.gvk.kind == "CustomResourceDefinition" {
            crds_applied = true;
        }
    }
    if prune {
        for p in plan.prune.iter().rev() {
            let ns = (!p.entry.namespace.is_empty()).then_some(p.entry.namespace.as_str());
            cluster
                .delete(&p.resource, ns, &p.entry.name)
                .await
                .map_err(|e| {
                    SyncError(vec![format!(
                        "pruning {}/{}: {e}",
                        p.entry.kind, p.entry.name
                    )])
                })?;
        }
        plan.prune.clear();
    }
    Ok(())
}

/// The status entries of a plan's objects (and of what waits to be pruned).
pub fn resource_statuses(plan: &Plan) -> Vec<ResourceStatus> {
    let mut out: Vec<ResourceStatus> = plan
        .items
        .iter()
        .map(|i| ResourceStatus {
            group: i.gvk.group.clone(),
            version: i.gvk.version.clone(),
            kind: i.gvk.kind.clone(),
            namespace: i.namespace().unwrap_or("").to_string(),
            name: i.name().to_string(),
            status: if i.action == Action::InSync {
                "Synced"
            } else {
                "OutOfSync"
            }
            .to_string(),
            health: health::of(&i.gvk.kind, i.live.as_ref())
                .as_str()
                .to_string(),
            requires_pruning: false,
        })
        .collect();
    out.extend(plan.prune.iter().map(|p| ResourceStatus {
        status: "OutOfSync".into(),
        requires_pruning: true,
        ..p.entry.clone()
    }));
    out
}

/// The health of the app from its resources.
pub fn app_health(plan: &Plan) -> Health {
    health::overall(
        plan.items
            .iter()
            .map(|i| health::of(&i.gvk.kind, i.live.as_ref())),
    )
}

/// Per-object diffs of a plan (for `gitplane diff` and status): `describe → unified diff`; for
/// server-side items, the diff to what the server-side apply (the same structured merge the
/// API server's dry run performs) would leave.
pub fn diffs(plan: &Plan) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for i in &plan.items {
        let after = match &i.live {
            Some(l) if i.server_side => {
                compare::predicted_server_side(&i.managed, l, &i.gvk, SERVER_SIDE_MANAGER)
                    .unwrap_or_else(|_| i.managed.clone())
            }
            Some(l) => {
                compare::predicted(&i.managed, l, &i.gvk).unwrap_or_else(|_| i.managed.clone())
            }
            None => i.managed.clone(),
        };
        let d = compare::diff_text(i.live.as_ref(), Some(&after));
        if !d.is_empty() {
            out.insert(i.describe(), d);
        }
    }
    out
}
