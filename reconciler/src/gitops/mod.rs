//! The GitOps syncer.
pub mod repo;
pub mod compare;
pub mod health;
