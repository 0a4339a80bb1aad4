//! The built-in kinds, listed once: every resource of Kubernetes 1.32 that gitplane serves, with
//! its names, scope, verbs, subresources, k8s-openapi type, table printer and strategic merge
//! patch metadata.
//!
//! [`KINDS`] is the only list. The registry ([`crate::registry::Registry::builtin`]), the typed
//! checks ([`crate::typed::check`]), strategic merge patch, the API server's OpenAPI schemas and
//! its tables read it, so
//! serving one more kind is one row of [`KINDS`].

use std::borrow::Cow;

use k8s_openapi::api::{
    admissionregistration::v1 as admission, apps::v1 as apps, authentication::v1 as authentication,
    authorization::v1 as authorization, autoscaling::v1 as autoscaling1,
    autoscaling::v2 as autoscaling2, batch::v1 as batch, certificates::v1 as certificates,
    coordination::v1 as coordination, core::v1 as core, discovery::v1 as discovery,
    events::v1 as events, flowcontrol::v1 as flowcontrol, networking::v1 as networking,
    node::v1 as node, policy::v1 as policy, rbac::v1 as rbac, scheduling::v1 as scheduling,
    storage::v1 as storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apiregistration;
use serde_json::Value;

use crate::registry::{GroupVersionKind, NameRule};
use crate::typed::{TypedError, Unknown};

/// The verbs a resource serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verbs {
    /// create, delete, deletecollection, get, list, patch, update, watch.
    Standard,
    /// get and list (ComponentStatus, NodeMetrics, PodMetrics: computed, never stored).
    ReadOnly,
    /// create only (Binding: a write to another object; the access reviews, answered and
    /// never stored).
    CreateOnly,
}

impl Verbs {
    /// The verb names, as discovery lists them.
    pub fn names(self) -> &'static [&'static str] {
        match self {
            Verbs::Standard => &crate::registry::STANDARD_VERBS,
            Verbs::ReadOnly => &["get", "list"],
            Verbs::CreateOnly => &["create"],
        }
    }
}

/// Which of Kubernetes' table printers shows a kind (`kubectl get` columns). The API server
/// implements each; [`Printer::NameAge`] is Kubernetes' default of NAME and AGE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Printer {
    NameAge,
    Pod,
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
    Service,
    Endpoints,
    EndpointSlice,
    ConfigMap,
    Secret,
    ServiceAccount,
    Namespace,
    Node,
    Event,
    Lease,
    RoleBinding,
    PriorityClass,
    PersistentVolumeClaim,
    PersistentVolume,
    Ingress,
    IngressClass,
    NetworkPolicy,
    PodDisruptionBudget,
    HorizontalPodAutoscaler,
    StorageClass,
    ResourceQuota,
    LimitRange,
    PodTemplate,
    ReplicationController,
    ComponentStatus,
    RuntimeClass,
    CertificateSigningRequest,
    ApiService,
    CsiDriver,
    CsiNode,
    VolumeAttachment,
    CsiStorageCapacity,
    FlowSchema,
    PriorityLevelConfiguration,
    Webhooks,
}

/// What a kind's k8s-openapi type provides: the decode/encode check and the JSON schema.
#[derive(Clone, Copy)]
pub struct Typed {
    /// Decodes an object into the type and encodes it back; the fields that did not come back.
    pub check: fn(&GroupVersionKind, &Value) -> Result<Vec<Unknown>, TypedError>,
    /// The name of the type's schema among the OpenAPI components.
    pub schema_name: fn() -> Cow<'static, str>,
    /// Adds the type's schema (and everything it reaches) to a generator.
    pub schema: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
}

impl std::fmt::Debug for Typed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Typed({})", (self.schema_name)())
    }
}

fn subschema<T: schemars::JsonSchema>(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    g.subschema_for::<T>()
}

/// The [`Typed`] of a k8s-openapi type.
const fn typed<T>() -> Typed
where
    T: serde::de::DeserializeOwned + serde::Serialize + schemars::JsonSchema,
{
    Typed {
        check: crate::typed::roundtrip::<T>,
        schema_name: T::schema_name,
        schema: subschema::<T>,
    }
}

/// Less common properties of a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extra {
    /// In the `all` category (`kubectl get all`).
    pub all: bool,
    /// How object names are validated.
    pub names: NameRule,
    /// The group whose storage holds the objects, when it is another group's (events.k8s.io
    /// Events are core Events, as in Kubernetes).
    pub storage_group: Option<&'static str>,
}

const PLAIN: Extra = Extra {
    all: false,
    names: NameRule::Dns1123Subdomain,
    storage_group: None,
};
const ALL: Extra = Extra { all: true, ..PLAIN };
const LABEL: Extra = Extra {
    names: NameRule::Dns1123Label,
    ..PLAIN
};
const SERVICE: Extra = Extra {
    all: true,
    names: NameRule::Dns1035Label,
    storage_group: None,
};
const PATH: Extra = Extra {
    names: NameRule::PathSegment,
    ..PLAIN
};
const CORE_EVENTS: Extra = Extra {
    storage_group: Some(""),
    ..PLAIN
};

/// One built-in kind.
#[derive(Clone, Copy, Debug)]
pub struct Kind {
    /// API group; empty for the core group.
    pub group: &'static str,
    /// Version.
    pub version: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Plural resource name (URLs).
    pub plural: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Short names (`kubectl get ing`).
    pub short_names: &'static [&'static str],
    /// Verbs served.
    pub verbs: Verbs,
    /// Subresources served.
    pub subresources: &'static [&'static str],
    /// The k8s-openapi type.
    pub typed: Typed,
    /// The table printer.
    pub printer: Printer,
    /// Category, name rule, shared storage.
    pub extra: Extra,
    /// Strategic merge patch metadata (which lists merge, by which key).
    pub(crate) patch: crate::patch::strategic::Fields,
}

const NS: bool = true;
const CLUSTER: bool = false;

macro_rules! kinds {
    ($(($group:literal, $version:literal, $kind:literal, $plural:literal, $scope:ident, [$($short:literal),*], $verbs:ident, [$($sub:literal),*], $ty:ty, $printer:ident, $extra:ident, $patch:ident)),* $(,)?) => {
        /// Every built-in kind; one row each.
        pub static KINDS: &[Kind] = &[$(Kind {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            namespaced: $scope,
            short_names: &[$($short),*],
            verbs: Verbs::$verbs,
            subresources: &[$($sub),*],
            typed: typed::<$ty>(),
            printer: Printer::$printer,
            extra: $extra,
            patch: crate::patch::strategic::$patch,
        }),*];
    };
}

kinds! {
    // (group, version, kind, plural, scope, short names, verbs, subresources, type, printer,
    //  extra, strategic merge patch metadata)
    ("", "v1", "Binding", "bindings", NS, [], CreateOnly, [], core::Binding, NameAge, PLAIN, PLAIN),
    ("", "v1", "ComponentStatus", "componentstatuses", CLUSTER, ["cs"], ReadOnly, [], core::ComponentStatus, ComponentStatus, PLAIN, COMPONENT_STATUS),
    ("", "v1", "ConfigMap", "configmaps", NS, ["cm"], Standard, [], core::ConfigMap, ConfigMap, PLAIN, PLAIN),
    ("", "v1", "Endpoints", "endpoints", NS, ["ep"], Standard, [], core::Endpoints, Endpoints, PLAIN, PLAIN),
    ("", "v1", "Event", "events", NS, ["ev"], Standard, [], core::Event, Event, PLAIN, PLAIN),
    ("", "v1", "LimitRange", "limitranges", NS, ["limits"], Standard, [], core::LimitRange, LimitRange, PLAIN, PLAIN),
    ("", "v1", "Namespace", "namespaces", CLUSTER, ["ns"], Standard, ["finalize", "status"], core::Namespace, Namespace, LABEL, CONDITIONED),
    ("", "v1", "Node", "nodes", CLUSTER, ["no"], Standard, ["proxy", "status"], core::Node, Node, PLAIN, NODE),
    ("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", NS, ["pvc"], Standard, ["status"], core::PersistentVolumeClaim, PersistentVolumeClaim, PLAIN, CONDITIONED),
    ("", "v1", "PersistentVolume", "persistentvolumes", CLUSTER, ["pv"], Standard, ["status"], core::PersistentVolume, PersistentVolume, PLAIN, PLAIN),
    ("", "v1", "Pod", "pods", NS, ["po"], Standard, ["attach", "binding", "ephemeralcontainers", "eviction", "exec", "log", "portforward", "proxy", "status"], core::Pod, Pod, ALL, POD),
    ("", "v1", "PodTemplate", "podtemplates", NS, [], Standard, [], core::PodTemplate, PodTemplate, PLAIN, POD_TEMPLATE_KIND),
    ("", "v1", "ReplicationController", "replicationcontrollers", NS, ["rc"], Standard, ["scale", "status"], core::ReplicationController, ReplicationController, ALL, WORKLOAD),
    ("", "v1", "ResourceQuota", "resourcequotas", NS, ["quota"], Standard, ["status"], core::ResourceQuota, ResourceQuota, PLAIN, PLAIN),
    ("", "v1", "Secret", "secrets", NS, [], Standard, [], core::Secret, Secret, PLAIN, PLAIN),
    ("", "v1", "ServiceAccount", "serviceaccounts", NS, ["sa"], Standard, ["token"], core::ServiceAccount, ServiceAccount, PLAIN, SERVICE_ACCOUNT),
    ("", "v1", "Service", "services", NS, ["svc"], Standard, ["proxy", "status"], core::Service, Service, SERVICE, SERVICE),
    ("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration", "mutatingwebhookconfigurations", CLUSTER, [], Standard, [], admission::MutatingWebhookConfiguration, Webhooks, PLAIN, WEBHOOK_CONFIGURATION),
    ("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicy", "validatingadmissionpolicies", CLUSTER, [], Standard, ["status"], admission::ValidatingAdmissionPolicy, NameAge, PLAIN, CONDITIONED),
    ("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicyBinding", "validatingadmissionpolicybindings", CLUSTER, [], Standard, [], admission::ValidatingAdmissionPolicyBinding, NameAge, PLAIN, PLAIN),
    ("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration", "validatingwebhookconfigurations", CLUSTER, [], Standard, [], admission::ValidatingWebhookConfiguration, Webhooks, PLAIN, WEBHOOK_CONFIGURATION),
    ("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", CLUSTER, ["crd", "crds"], Standard, ["status"], apiextensions::CustomResourceDefinition, NameAge, PLAIN, PLAIN),
    ("apiregistration.k8s.io", "v1", "APIService", "apiservices", CLUSTER, [], Standard, ["status"], apiregistration::APIService, ApiService, PLAIN, CONDITIONED),
    ("apps", "v1", "ControllerRevision", "controllerrevisions", NS, [], Standard, [], apps::ControllerRevision, NameAge, PLAIN, PLAIN),
    ("apps", "v1", "DaemonSet", "daemonsets", NS, ["ds"], Standard, ["status"], apps::DaemonSet, DaemonSet, ALL, WORKLOAD),
    ("apps", "v1", "Deployment", "deployments", NS, ["deploy"], Standard, ["scale", "status"], apps::Deployment, Deployment, ALL, DEPLOYMENT),
    ("apps", "v1", "ReplicaSet", "replicasets", NS, ["rs"], Standard, ["scale", "status"], apps::ReplicaSet, ReplicaSet, ALL, WORKLOAD),
    ("apps", "v1", "StatefulSet", "statefulsets", NS, ["sts"], Standard, ["scale", "status"], apps::StatefulSet, StatefulSet, ALL, WORKLOAD),
    ("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", CLUSTER, [], CreateOnly, [], authentication::SelfSubjectReview, NameAge, PLAIN, PLAIN),
    ("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", CLUSTER, [], CreateOnly, [], authentication::TokenReview, NameAge, PLAIN, PLAIN),
    ("authorization.k8s.io", "v1", "LocalSubjectAccessReview", "localsubjectaccessreviews", NS, [], CreateOnly, [], authorization::LocalSubjectAccessReview, NameAge, PLAIN, PLAIN),
    ("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", CLUSTER, [], CreateOnly, [], authorization::SelfSubjectAccessReview, NameAge, PLAIN, PLAIN),
    ("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews", CLUSTER, [], CreateOnly, [], authorization::SelfSubjectRulesReview, NameAge, PLAIN, PLAIN),
    ("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews", CLUSTER, [], CreateOnly, [], authorization::SubjectAccessReview, NameAge, PLAIN, PLAIN),
    ("autoscaling", "v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers", NS, ["hpa"], Standard, ["status"], autoscaling1::HorizontalPodAutoscaler, HorizontalPodAutoscaler, ALL, PLAIN),
    ("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", NS, ["hpa"], Standard, ["status"], autoscaling2::HorizontalPodAutoscaler, HorizontalPodAutoscaler, ALL, CONDITIONED),
    ("batch", "v1", "CronJob", "cronjobs", NS, ["cj"], Standard, ["status"], batch::CronJob, CronJob, ALL, CRON_JOB),
    ("batch", "v1", "Job", "jobs", NS, [], Standard, ["status"], batch::Job, Job, ALL, WORKLOAD),
    ("certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests", CLUSTER, ["csr"], Standard, ["approval", "status"], certificates::CertificateSigningRequest, CertificateSigningRequest, PLAIN, CONDITIONED),
    ("coordination.k8s.io", "v1", "Lease", "leases", NS, [], Standard, [], coordination::Lease, Lease, PLAIN, PLAIN),
    ("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", NS, [], Standard, [], discovery::EndpointSlice, EndpointSlice, PLAIN, PLAIN),
    ("events.k8s.io", "v1", "Event", "events", NS, ["ev"], Standard, [], events::Event, Event, CORE_EVENTS, PLAIN),
    ("flowcontrol.apiserver.k8s.io", "v1", "FlowSchema", "flowschemas", CLUSTER, [], Standard, ["status"], flowcontrol::FlowSchema, FlowSchema, PLAIN, CONDITIONED),
    ("flowcontrol.apiserver.k8s.io", "v1", "PriorityLevelConfiguration", "prioritylevelconfigurations", CLUSTER, [], Standard, ["status"], flowcontrol::PriorityLevelConfiguration, PriorityLevelConfiguration, PLAIN, CONDITIONED),
    ("metrics.k8s.io", "v1beta1", "NodeMetrics", "nodes", CLUSTER, [], ReadOnly, [], crate::metrics::NodeMetrics, NameAge, PLAIN, PLAIN),
    ("metrics.k8s.io", "v1beta1", "PodMetrics", "pods", NS, [], ReadOnly, [], crate::metrics::PodMetrics, NameAge, PLAIN, PLAIN),
    ("networking.k8s.io", "v1", "IngressClass", "ingressclasses", CLUSTER, [], Standard, [], networking::IngressClass, IngressClass, PLAIN, PLAIN),
    ("networking.k8s.io", "v1", "Ingress", "ingresses", NS, ["ing"], Standard, ["status"], networking::Ingress, Ingress, PLAIN, PLAIN),
    ("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", NS, ["netpol"], Standard, [], networking::NetworkPolicy, NetworkPolicy, PLAIN, PLAIN),
    ("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", CLUSTER, [], Standard, [], node::RuntimeClass, RuntimeClass, PLAIN, PLAIN),
    ("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", NS, ["pdb"], Standard, ["status"], policy::PodDisruptionBudget, PodDisruptionBudget, PLAIN, CONDITIONED),
    ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", CLUSTER, [], Standard, [], rbac::ClusterRoleBinding, RoleBinding, PATH, PLAIN),
    ("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", CLUSTER, [], Standard, [], rbac::ClusterRole, NameAge, PATH, PLAIN),
    ("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", NS, [], Standard, [], rbac::RoleBinding, RoleBinding, PATH, PLAIN),
    ("rbac.authorization.k8s.io", "v1", "Role", "roles", NS, [], Standard, [], rbac::Role, NameAge, PATH, PLAIN),
    ("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", CLUSTER, ["pc"], Standard, [], scheduling::PriorityClass, PriorityClass, PLAIN, PLAIN),
    ("storage.k8s.io", "v1", "CSIDriver", "csidrivers", CLUSTER, [], Standard, [], storage::CSIDriver, CsiDriver, PLAIN, PLAIN),
    ("storage.k8s.io", "v1", "CSINode", "csinodes", CLUSTER, [], Standard, [], storage::CSINode, CsiNode, PLAIN, CSI_NODE),
    ("storage.k8s.io", "v1", "CSIStorageCapacity", "csistoragecapacities", NS, [], Standard, [], storage::CSIStorageCapacity, CsiStorageCapacity, PLAIN, PLAIN),
    ("storage.k8s.io", "v1", "StorageClass", "storageclasses", CLUSTER, ["sc"], Standard, [], storage::StorageClass, StorageClass, PLAIN, PLAIN),
    ("storage.k8s.io", "v1", "VolumeAttachment", "volumeattachments", CLUSTER, [], Standard, ["status"], storage::VolumeAttachment, VolumeAttachment, PLAIN, PLAIN),
}

/// The row of a built-in kind.
pub fn find(group: &str, version: &str, kind: &str) -> Option<&'static Kind> {
    KINDS
        .iter()
        .find(|k| k.group == group && k.version == version && k.kind == kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_names_its_own_type() {
        for k in KINDS {
            let name = (k.typed.schema_name)();
            assert!(
                name.ends_with(&format!(".{}.{}", k.version, k.kind)),
                "{} {}/{}: {name}",
                k.kind,
                k.group,
                k.version
            );
        }
    }

    #[test]
    fn rows_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for k in KINDS {
            assert!(seen.insert((k.group, k.version, k.plural)), "{}", k.plural);
        }
    }
}
