//! The object model and the pure algorithms of the Kubernetes API, shared by every gitplane crate.
//!
//! # Layout
//! - [`cel`]: CEL expressions with the Kubernetes libraries (CRD rules, admission policies).
//! - [`builtin`]: the built-in kinds, listed once (names, verbs, types, printers).
//! - [`application`]: gitplane's own `Application` CRD and the marks the syncer leaves on objects.
//! - [`autoscaling`]: HorizontalPodAutoscaler `autoscaling/v1` objects read as `v2`, and back.
//! - [`fleet`]: cluster Secrets (the destinations Applications sync into) and the
//!   `ApplicationSet` CRD.
//! - [`event`]: `core/v1` Events as every component writes them.
//! - [`disruption`]: PodDisruptionBudget status arithmetic (eviction, disruption controller).
//! - [`ingress`]: IngressClasses: the default one, which Ingresses the built-in controller serves.
//! - [`kind_validation`]: the built-in kinds validated as Kubernetes validates them.
//! - [`limit_range`]: LimitRange defaults and bounds for pods, with Kubernetes' messages.
//! - [`matching`]: label maps, label selectors, node selectors and tolerations matched against
//!   objects (one matcher each for the scheduler, the controllers and the nodes).
//! - [`metrics`]: resource metrics: the node agents' usage summary, `metrics.k8s.io` objects,
//!   the usage simulated nodes report.
//! - [`network_policy`]: which NetworkPolicies select a pod and what they allow it (peers, ports).
//! - [`object`]: dynamic objects (JSON with metadata accessors) and typed ones through k8s-openapi.
//! - [`quantity`]: resource quantities (`100m`, `1Gi`) parsed and printed.
//! - [`quota`]: ResourceQuota usage and LimitRange defaults and bounds, with Kubernetes' messages.
//! - [`registry`]: kinds ↔ resources for the built-in kinds and for CRDs added at run time.
//! - [`schema`]: structural schemas of CRDs: pruning, defaulting and validating custom resources.
//! - [`selector`]: label and field selectors.
//! - [`secret`]: a Secret's write-only `stringData` merged into `data`.
//! - [`status`]: `metav1.Status` errors with reasons and causes.
//! - [`pod`]: what a pod's status says (phase, active, Ready since, available).
//! - [`openapi_v2`]: the protobuf form of the OpenAPI v2 document kubectl validates with.
//! - [`patch`]: JSON patch (RFC 6902), merge patch (RFC 7386) and strategic merge patch.
//! - [`protobuf`]: Kubernetes protobuf request bodies decoded into the JSON Kubernetes would write.
//! - [`typed`]: checking built-in objects against their k8s-openapi types (wrong types, unknown
//!   fields for `fieldValidation=Strict`).
//! - [`validation`]: name and label syntax checks shared by the API server and renderers.
//! - [`validation_rules`]: CRD `x-kubernetes-validations` CEL rules, checked and evaluated.
//! - [`volume`]: PersistentVolume binding (which volume fits a claim) and the default StorageClass.
//!
//! **Architecture Invariant**: no IO, no tokio, no clock. Everything here is a pure function of
//! its inputs, so it is tested with tables.

pub mod application;
pub mod autoscaling;
pub mod builtin;
pub mod cel;
pub mod disruption;
pub mod event;
pub mod fleet;
pub mod ingress;
pub mod kind_validation;
pub mod lean;
pub mod limit_range;
pub mod matching;
pub mod metrics;
pub mod network_policy;
pub mod object;
pub mod openapi_v2;
pub mod patch;
pub mod pod;
pub mod protobuf;
pub mod quantity;
pub mod quota;
pub mod registry;
pub mod schema;
pub mod secret;
pub mod selector;
pub mod status;
pub mod streaming;
pub mod typed;
pub mod validation;
pub mod validation_rules;
pub mod volume;

pub use k8s_openapi;
