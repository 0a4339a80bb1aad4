//! gitplane's Kubernetes-compatible API server.
//!
//! # Layout
//! - [`server`]: start-up order, listener, shutdown.
//! - [`handlers`]: one file per API verb, behind one dispatcher.
//! - [`request`] / [`response`]: URL and query parsing; Status errors and content negotiation.
//! - [`strategy`] / [`defaults`] / [`validate`]: what the server sets, fills in and checks on
//!   every write.
//! - [`admission`]: the order of admission, built-in admission plugins and webhooks.
//! - [`watch_cache`]: all objects in memory, fed by one storage watch; serves reads and watches.
//! - [`storage`]: the revisioned key-value interface and its backends.
//! - [`allocator`]: cluster IPs and node ports of Services; [`default_service`]: the
//!   `default/kubernetes` Service.
//! - [`discovery`], [`table`], [`crd`]: discovery documents, server-side tables, CRD serving.
//!
//! **Architecture Invariant**: only this crate touches storage; every other component is an
//! HTTP client of the API.

pub mod admission;
pub mod allocator;
pub mod crd;
pub mod default_service;
pub mod defaults;
pub mod discovery;
pub mod handlers;
pub mod openapi;
pub mod request;
pub mod response;
pub mod server;
pub mod state;
pub mod storage;
pub mod strategy;
pub mod table;
pub mod validate;
pub mod watch_cache;

pub use server::{ApiServer, Config, ServerError};
