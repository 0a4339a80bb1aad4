//! Subcommands, one module each; `connect` (client flags) and `election` (leader-election
//! flags) are what several of them share.

pub mod apiserver;
pub mod apps;
pub mod bench;
pub mod blame;
pub mod cluster;
pub mod connect;
pub mod console;
pub mod controller_manager;
pub mod diff;
pub mod election;
pub mod history;
pub mod metrics;
pub mod node;
pub mod policy_webhook;
pub mod proxy;
pub mod render;
pub mod rollback;
pub mod runtime;
pub mod scheduler;
pub mod security;
pub mod server;
pub mod shim;
pub mod simulate_nodes;
pub mod sync;
pub mod up;
