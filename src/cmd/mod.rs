//! Subcommands, one module each.

pub mod apiserver;
pub mod apps;
pub mod bench;
pub mod blame;
pub mod client;
pub mod diff;
pub mod history;
pub mod render;
pub mod rollback;
pub mod server;
pub mod sync;
pub mod up;
