//! The node agent and its container runtimes.
//!
//! # Layout
//! - `runtime/`: the runtime API (a CRI-like gRPC service on a unix socket) and the process
//!   runtime, which runs containers as host processes.
//! - `agent/`: the node agent: registers its Node, renews its Lease, runs the pods bound to it
//!   through the runtime API, probes them, reports their status and serves their logs.
//! - `simulated/`: simulated nodes, kwok-style: one process registers many Nodes, renews their
//!   Leases and moves the pods bound to them through their lifecycle without running anything.
//!   The node agent with real runtimes arrives with the node agent issue.
//! - `streaming/`: exec sessions over the WebSocket remote-command protocol, served by the
//!   process runtime's streaming server (CRI `Exec` answers with a URL on it), and the
//!   upgrade proxy the agent uses to reach it.
//! - `proxy/`: the service proxy (kube-proxy's job) in userspace: cluster IPs and node ports
//!   forwarded to ready endpoints.

pub mod proxy;

pub mod agent;
pub mod runtime;
pub mod simulated;
pub mod streaming;
