//! Subcommands, one module each.

pub mod apiserver;
pub mod bench;
pub mod connect;
pub mod render;
pub mod scheduler;
pub mod server;
pub mod simulate_nodes;
pub mod up;
