//! The GitOps syncer.
pub mod repo;
