//! Controllers: each converges one kind of object through the API, on kube-rs' runtime.
//!
//! # Layout
//! - `workload`: what the workload controllers share (pods from templates, readiness, Events).
//! - `job`, `cronjob`, `daemonset`, `statefulset`: the workload controllers.
//! - `endpoints`, `endpointslice`: Service endpoints from the pods a Service selects.
//! - `node_lifecycle`: silent nodes marked Unknown and tainted, their pods evicted.

pub mod cronjob;
pub mod daemonset;
pub mod endpoints;
pub mod endpointslice;
pub mod job;
pub mod node_lifecycle;
pub mod statefulset;
pub mod workload;
