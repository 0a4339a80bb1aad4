//! The resource registry: which kinds exist, under which resource names, and how they are served.
//!
//! Kubernetes names a kind in two ways: by group/version/kind in an object's `apiVersion` and
//! `kind`, and by group/version/resource in URLs (`/apis/apps/v1/namespaces/x/deployments`). The
//! registry maps between them for the built-in kinds and for CRDs registered at run time.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::builtin::Printer;

/// A group, version and kind, as in an object's `apiVersion` and `kind`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupVersionKind {
    /// API group; empty for the core group.
    pub group: String,
    /// API version such as `v1`.
    pub version: String,
    /// Kind such as `Deployment`.
    pub kind: String,
}

impl GroupVersionKind {
    /// Splits an `apiVersion` (`apps/v1` or `v1`) and pairs it with a kind.
    pub fn from_api_version(api_version: &str, kind: &str) -> Self {
        let (group, version) = split_api_version(api_version);
        GroupVersionKind {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
        }
    }

    /// The `apiVersion` string for this group and version.
    pub fn api_version(&self) -> String {
        join_api_version(&self.group, &self.version)
    }
}

/// Splits `apps/v1` into (`apps`, `v1`) and `v1` into (``, `v1`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// Joins a group and version into an `apiVersion` string.
pub fn join_api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// How the names of a resource's objects are validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain: lowercase alphanumerics, `-` and `.`, at most 253 characters.
    Dns1123Subdomain,
    /// RFC 1123 label: lowercase alphanumerics and `-`, at most 63 characters.
    Dns1123Label,
    /// RFC 1035 label: an RFC 1123 label that starts with a letter (Services).
    Dns1035Label,
    /// Any name that is a valid path segment (RBAC objects, which allow `:`).
    PathSegment,
}

/// An extra column of a resource's server-side table, as in a CRD's `additionalPrinterColumns`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrinterColumn {
    /// Column header.
    pub name: String,
    /// OpenAPI type: `string`, `integer`, `number`, `boolean` or `date`.
    pub type_: String,
    /// A simple JSONPath such as `.spec.replicas`.
    pub json_path: String,
    /// Priority: 0 columns show by default, higher ones with `-o wide`.
    pub priority: i32,
    /// Description shown in the table's column definitions.
    pub description: String,
}

/// Everything the API server needs to serve one resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group; empty for the core group.
    pub group: String,
    /// Served version.
    pub version: String,
    /// Kind of the objects.
    pub kind: String,
    /// Kind of the list (`PodList`).
    pub list_kind: String,
    /// Plural resource name used in URLs (`deployments`).
    pub plural: String,
    /// Singular name (`deployment`).
    pub singular: String,
    /// Short names (`deploy`).
    pub short_names: Vec<String>,
    /// Categories such as `all`.
    pub categories: Vec<String>,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Verbs served.
    pub verbs: Vec<String>,
    /// Subresources served (`status`, `scale`, `binding`).
    pub subresources: Vec<String>,
    /// How object names are validated.
    pub name_rule: NameRule,
    /// Extra table columns (CRDs).
    pub printer_columns: Vec<PrinterColumn>,
    /// Whether the kind comes from a CustomResourceDefinition.
    pub custom: bool,
    /// The structural `openAPIV3Schema` of a custom resource's version, when its CRD has one.
    pub schema: Option<std::sync::Arc<serde_json::Value>>,
    /// The table printer of a built-in kind ([`Printer::NameAge`] for custom resources, which
    /// use `printer_columns`).
    pub printer: Printer,
    /// The group whose storage holds the objects, when it is not `group` (events.k8s.io Events
    /// are stored as core Events).
    pub storage_group: Option<String>,
}

/// The verbs every resource serves.
pub const STANDARD_VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

impl ResourceInfo {
    /// A resource with the standard verbs and no subresources.
    pub fn new(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        ResourceInfo {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
            list_kind: format!("{kind}List"),
            plural: plural.to_string(),
            singular: kind.to_lowercase(),
            short_names: Vec::new(),
            categories: Vec::new(),
            namespaced,
            verbs: STANDARD_VERBS.iter().map(|v| v.to_string()).collect(),
            subresources: Vec::new(),
            name_rule: NameRule::Dns1123Subdomain,
            printer_columns: Vec::new(),
            custom: false,
            schema: None,
            printer: Printer::NameAge,
            storage_group: None,
        }
    }

    /// The resource of a row of the built-in kinds table.
    pub fn from_builtin(k: &crate::builtin::Kind) -> Self {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        ResourceInfo {
            short_names: strings(k.short_names),
            categories: if k.extra.all {
                vec!["all".to_string()]
            } else {
                Vec::new()
            },
            verbs: strings(k.verbs.names()),
            subresources: strings(k.subresources),
            name_rule: k.extra.names,
            printer: k.printer,
            storage_group: k.extra.storage_group.map(str::to_string),
            ..ResourceInfo::new(k.group, k.version, k.kind, k.plural, k.namespaced)
        }
    }

    /// The `apiVersion` of the objects.
    pub fn api_version(&self) -> String {
        join_api_version(&self.group, &self.version)
    }

    /// The group, version and kind.
    pub fn gvk(&self) -> GroupVersionKind {
        GroupVersionKind {
            group: self.group.clone(),
            version: self.version.clone(),
            kind: self.kind.clone(),
        }
    }

    /// `plural.group`, the resource as Kubernetes names it in messages (`deployments.apps`).
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The storage key prefix of the resource, ending in `/`.
    ///
    /// Kubernetes' layout: `/registry/<group>/<resource>/` with the core group spelled `core`.
    pub fn key_prefix(&self) -> String {
        let group = self.storage_group.as_deref().unwrap_or(&self.group);
        let group = if group.is_empty() { "core" } else { group };
        format!("/registry/{group}/{}/", self.plural)
    }

    /// The storage key prefix of one namespace of a namespaced resource, ending in `/`.
    pub fn namespace_prefix(&self, namespace: &str) -> String {
        format!("{}{namespace}/", self.key_prefix())
    }

    /// The storage key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/{name}", self.key_prefix()),
            _ => format!("{}{name}", self.key_prefix()),
        }
    }

    /// Whether a subresource is served.
    pub fn has_subresource(&self, name: &str) -> bool {
        self.subresources.iter().any(|s| s == name)
    }
}

/// The set of served resources.
///
/// Cheap to clone: the API server swaps in a new registry when CRDs change.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    resources: BTreeMap<(String, String, String), Arc<ResourceInfo>>,
}

impl Registry {
    /// The built-in kinds: every row of [`crate::builtin::KINDS`].
    pub fn builtin() -> Self {
        let mut registry = Registry::default();
        for k in crate::builtin::KINDS {
            registry.add(ResourceInfo::from_builtin(k));
        }
        registry
    }

    /// Adds or replaces a resource.
    pub fn add(&mut self, info: ResourceInfo) {
        self.resources.insert(
            (
                info.group.clone(),
                info.version.clone(),
                info.plural.clone(),
            ),
            Arc::new(info),
        );
    }

    /// Removes every version of a resource of a group; returns whether one was there.
    pub fn remove(&mut self, group: &str, plural: &str) -> bool {
        let before = self.resources.len();
        self.resources
            .retain(|(g, _, p), _| !(g == group && p == plural));
        before != self.resources.len()
    }

    /// The resource served at `group/version/plural`.
    pub fn by_resource(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<Arc<ResourceInfo>> {
        self.resources
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }

    /// The resource that holds objects of a kind.
    pub fn by_kind(&self, gvk: &GroupVersionKind) -> Option<Arc<ResourceInfo>> {
        self.resources
            .values()
            .find(|r| r.group == gvk.group && r.version == gvk.version && r.kind == gvk.kind)
            .cloned()
    }

    /// Every served resource, ordered by group, version and plural.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<ResourceInfo>> {
        self.resources.values()
    }

    /// The served groups in discovery order (core first, then as Kubernetes lists them, then
    /// custom groups by name), each with its versions, preferred first (GA before beta before
    /// alpha, higher numbers first: `autoscaling` lists `v2` then `v1`).
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (g, v, _) in self.resources.keys() {
            let versions = groups.entry(g.clone()).or_default();
            if !versions.contains(v) {
                versions.push(v.clone());
            }
        }
        for versions in groups.values_mut() {
            versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        }
        let order = |g: &str| match g {
            "" => 0,
            _ if g.ends_with(".k8s.io") || !g.contains('.') => 1,
            _ => 2,
        };
        let mut out: Vec<_> = groups.into_iter().collect();
        out.sort_by(|(a, _), (b, _)| order(a).cmp(&order(b)).then_with(|| a.cmp(b)));
        out
    }
}

/// Kubernetes' version priority: GA, then beta, then alpha, then other names; within one
/// stability, higher major then higher minor numbers first.
fn version_priority(v: &str) -> (u8, u64, u64) {
    let parse = |rest: &str| -> Option<(u8, u64, u64)> {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let major = rest[..digits].parse().ok()?;
        let tail = &rest[digits..];
        let (stability, minor) = if tail.is_empty() {
            (3, "0")
        } else if let Some(m) = tail.strip_prefix("beta") {
            (2, m)
        } else if let Some(m) = tail.strip_prefix("alpha") {
            (1, m)
        } else {
            return None;
        };
        Some((stability, major, minor.parse().ok()?))
    };
    v.strip_prefix('v').and_then(parse).unwrap_or((0, 0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_kinds_to_resources_and_keys() {
        let r = Registry::builtin();
        let deploy = r.by_resource("apps", "v1", "deployments").unwrap();
        assert_eq!(deploy.kind, "Deployment");
        assert_eq!(
            deploy.key(Some("default"), "web"),
            "/registry/apps/deployments/default/web"
        );
        let ns = r
            .by_kind(&GroupVersionKind::from_api_version("v1", "Namespace"))
            .unwrap();
        assert_eq!(ns.key(None, "x"), "/registry/core/namespaces/x");
        assert!(!ns.namespaced);
        assert_eq!(deploy.qualified(), "deployments.apps");
    }

    #[test]
    fn preferred_versions_come_first() {
        let mut versions = vec!["v1alpha1", "v1", "v2beta1", "v1beta2", "v2", "v10", "x"];
        versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        assert_eq!(
            versions,
            ["v10", "v2", "v1", "v2beta1", "v1beta2", "v1alpha1", "x"]
        );
        let r = Registry::builtin();
        let autoscaling = r.groups().into_iter().find(|(g, _)| g == "autoscaling");
        assert_eq!(autoscaling.unwrap().1, ["v2", "v1"]);
    }

    #[test]
    fn events_of_both_groups_share_storage() {
        let r = Registry::builtin();
        let core = r.by_resource("", "v1", "events").unwrap();
        let events = r.by_resource("events.k8s.io", "v1", "events").unwrap();
        assert_eq!(core.key_prefix(), events.key_prefix());
    }

    #[test]
    fn custom_resources_come_and_go() {
        let mut r = Registry::builtin();
        let mut info = ResourceInfo::new("example.com", "v1", "Widget", "widgets", true);
        info.custom = true;
        r.add(info);
        assert!(r.by_resource("example.com", "v1", "widgets").is_some());
        assert_eq!(r.groups().last().unwrap().0, "example.com");
        assert!(r.remove("example.com", "widgets"));
        assert!(r.by_resource("example.com", "v1", "widgets").is_none());
    }
}
