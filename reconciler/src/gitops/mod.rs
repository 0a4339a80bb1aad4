//! The GitOps syncer.
pub mod application;
pub mod applicationset;
pub mod chartrepo;
pub mod cluster;
pub mod compare;
pub mod destinations;
pub mod health;
pub mod operation;
pub mod preview;
pub mod repo;
pub mod review;
pub mod review_endpoint;
pub mod steps;
pub mod sync;
pub mod syncer;
pub mod webhook;
