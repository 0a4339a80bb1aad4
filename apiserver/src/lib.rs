//! gitplane's Kubernetes-compatible API server.
//!
//! # Layout
//! - [`server`]: start-up order, listener, shutdown.
//! - [`handlers`]: the request path in order (pipeline, body, route), then one file per API
//!   verb; the access reviews and TokenRequest in their own files.
//! - [`request`] / [`response`]: URL and query parsing; Status errors and content negotiation.
//! - [`strategy`] / [`defaults`] / [`validate`]: what the server sets, fills in and checks on
//!   every write; [`fieldmanager`]: `metadata.managedFields` of every client write.
//! - [`admission`]: the order of admission, one `admit` for creates, updates and patches,
//!   built-in admission plugins, ValidatingAdmissionPolicies (CEL) and webhooks.
//! - [`watch_cache`]: all objects in memory, fed by one storage watch; serves reads and watches.
//! - [`storage`]: the revisioned key-value interface and its backends.
//! - [`security`]: the outer pipeline's settings: [`authn`] (client certificates, tokens, service account
//!   tokens, impersonation), [`inflight`] (429 beyond the limits), [`audit`] (JSON lines),
//!   [`rbac`] (authorization, bootstrap roles, aggregation, escalation checks, access reviews);
//!   [`tls`] and [`listener`] serve HTTPS with the cluster CA.
//! - [`allocator`]: cluster IPs and node ports of Services; [`default_service`]: the
//!   `default/kubernetes` Service.
//! - [`discovery`], [`table`], [`crd`]: discovery documents, server-side tables, CRD serving;
//!   [`openapi`] (v3) and [`openapi_v2`] (JSON and protobuf): the schemas clients validate with.
//! - [`console`]: the web console's static assets under `/ui/` (data comes from the API).
//! - [`metrics`]: request labels and `GET /metrics` (the families are `telemetry`'s).
//!
//! **Architecture Invariant**: only this crate touches storage; every other component is an
//! HTTP client of the API.

pub mod admission;
pub mod allocator;
pub mod audit;
pub mod authn;
pub mod console;
pub mod convert;
pub mod crd;
pub mod default_service;
pub mod defaults;
pub mod discovery;
pub mod fieldmanager;
pub mod handlers;
pub mod inflight;
pub mod listener;
pub mod metrics;
pub mod node_client;
pub mod openapi;
pub mod openapi_v2;
pub mod rbac;
pub mod request;
pub mod response;
pub mod security;
pub mod server;
pub mod state;
pub mod storage;
pub mod strategy;
pub mod table;
pub mod tls;
pub mod validate;
pub mod watch_cache;

pub use server::{ApiServer, Config, ServerError};
