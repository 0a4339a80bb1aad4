//! Subcommands, one module each.

pub mod apiserver;
pub mod bench;
pub mod client;
pub mod render;
pub mod server;
pub mod up;
