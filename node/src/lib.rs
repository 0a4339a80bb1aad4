//! The node agent and its container runtimes.
//!
//! # Layout
//! - `runtime/`: the runtime API (Kubernetes' CRI v1, gRPC on a unix socket), the process
//!   runtime, which runs containers as host processes through a per-container shim, and the
//!   containerd runtime (CRI to a containerd the agent starts).
//! - `agent/`: the node agent: registers its Node, renews its Lease, runs the pods bound to it
//!   through the runtime API, probes them, reports their status and serves their logs.
//! - `simulated/`: simulated nodes, kwok-style: one process registers many Nodes, renews their
//!   Leases and moves the pods bound to them through their lifecycle without running anything.
//! - `streaming/`: exec sessions over the WebSocket remote-command protocol, served by the
//!   process runtime's streaming server (CRI `Exec` answers with a URL on it), and the
//!   upgrade proxy the agent uses to reach it.
//! - `usage`: CPU and memory read from `/proc` and cgroup v2 (the node, process groups).
//! - `proxy/`: the service proxy (kube-proxy's job) in userspace: cluster IPs and node ports
//!   forwarded to ready endpoints.

pub mod proxy;

pub mod agent;
pub mod runtime;
pub mod simulated;
pub mod streaming;
pub mod usage;
