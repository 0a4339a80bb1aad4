//! Controllers, the scheduler and (later) the GitOps syncer: API clients that converge the
//! cluster.
//!
//! # Layout
//! - `scheduler/`: the scheduler (queue, snapshot, plugins, preemption, binding).
//! - `leader`: leader election on a Lease, shared by every component that runs replicated.

pub mod leader;
pub mod scheduler;
