//! The object model and the pure algorithms of the Kubernetes API, shared by every gitplane crate.
//!
//! # Layout
//! - [`builtin`]: the built-in kinds, listed once (names, verbs, types, printers).
//! - [`application`]: gitplane's own `Application` CRD and the marks the syncer leaves on objects.
//! - [`fleet`]: cluster Secrets (the destinations Applications sync into) and the
//!   `ApplicationSet` CRD.
//! - [`event`]: `core/v1` Events as every component writes them.
//! - [`disruption`]: PodDisruptionBudget status arithmetic (eviction, disruption controller).
//! - [`ingress`]: IngressClasses: the default one, which Ingresses the built-in controller serves.
//! - [`kind_validation`]: the built-in kinds validated as Kubernetes validates them.
//! - [`limit_range`]: LimitRange defaults and bounds for pods, with Kubernetes' messages.
//! - [`matching`]: label maps, label selectors, node selectors and tolerations matched against
//!   objects (one matcher each for the scheduler, the controllers and the nodes).
//! - [`network_policy`]: which NetworkPolicies select a pod and what they allow it (peers, ports).
//! - [`object`]: dynamic objects (JSON with metadata accessors) and typed ones through k8s-openapi.
//! - [`quantity`]: resource quantities (`100m`, `1Gi`) parsed and printed.
//! - [`quota`]: ResourceQuota usage and LimitRange defaults and bounds, with Kubernetes' messages.
//! - [`registry`]: kinds ↔ resources for the built-in kinds and for CRDs added at run time.
//! - [`schema`]: structural schemas of CRDs: pruning, defaulting and validating custom resources.
//! - [`selector`]: label and field selectors.
//! - [`status`]: `metav1.Status` errors with reasons and causes.
//! - [`pod`]: what a pod's status says (phase, active, Ready since, available).
//! - [`patch`]: JSON patch (RFC 6902), merge patch (RFC 7386) and strategic merge patch.
//! - [`protobuf`]: Kubernetes protobuf request bodies decoded into the JSON Kubernetes would write.
//! - [`typed`]: checking built-in objects against their k8s-openapi types (wrong types, unknown
//!   fields for `fieldValidation=Strict`).
//! - [`validation`]: name and label syntax checks shared by the API server and renderers.
//! - [`volume`]: PersistentVolume binding (which volume fits a claim) and the default StorageClass.
//!
//! **Architecture Invariant**: no IO, no tokio, no clock. Everything here is a pure function of
//! its inputs, so it is tested with tables.

pub mod application;
pub mod builtin;
pub mod disruption;
pub mod event;
pub mod fleet;
pub mod ingress;
pub mod kind_validation;
pub mod limit_range;
pub mod matching;
pub mod network_policy;
pub mod object;
pub mod patch;
pub mod pod;
pub mod protobuf;
pub mod quantity;
pub mod quota;
pub mod registry;
pub mod schema;
pub mod selector;
pub mod status;
pub mod streaming;
pub mod typed;
pub mod validation;
pub mod volume;

pub use k8s_openapi;
