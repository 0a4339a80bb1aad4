//! gitplane's Kubernetes-compatible API server.
//!
//! # Layout
//! - [`storage`]: the revisioned key-value interface and its backends.
pub mod storage;
