//! Subcommands, one module each.

pub mod apiserver;
pub mod server;
pub mod up;
