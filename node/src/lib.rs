//! The node agent and its container runtimes.
//!
//! # Layout
//! - `simulated/`: simulated nodes, kwok-style: one process registers many Nodes, renews their
//!   Leases and moves the pods bound to them through their lifecycle without running anything.
//!   The node agent with real runtimes arrives with the node agent issue.
//! - `proxy/`: the service proxy (kube-proxy's job) in userspace: cluster IPs and node ports
//!   forwarded to ready endpoints.

pub mod proxy;
pub mod simulated;
