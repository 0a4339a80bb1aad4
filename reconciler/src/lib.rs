//! Components that converge the cluster, all of them clients of the API server.
//!
//! # Layout
//! - [`controllers`]: the controller-manager: its runtime on kube-rs and one file per
//!   controller.
//! - [`events`]: `core/v1` Events written in the background (scheduler and controllers).
//! - [`gitops`]: the GitOps syncer: Applications, Git mirrors, render → compare → sync → prune.
//! - `scheduler/`: the scheduler (queue, snapshot, plugins, preemption, binding).
//! - `leader`: leader election on a Lease, shared by every component that runs replicated.
//!
//! **Architecture Invariant**: nothing here touches storage; every read and write goes through
//! the HTTP API (kube-rs), exactly as a component on another machine would.

pub mod controllers;
pub mod events;
pub mod gitops;
pub mod leader;
pub mod scheduler;
