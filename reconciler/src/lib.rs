//! Controllers, the scheduler and the GitOps syncer: API clients that converge the cluster (filled by the controllers, scheduler and GitOps issues).
