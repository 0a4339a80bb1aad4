//! The in-flight limits (`--max-requests-inflight`, `--max-mutating-requests-inflight`):
//! separate budgets for read-only and mutating requests; beyond them a request gets 429 with
//! `Retry-After`. Long-running requests (watches; logs, exec and proxy when they arrive) take no
//! slot, as in Kubernetes.

use std::sync::Arc;

use apimachinery::status::{Reason, StatusError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The two budgets; 0 means no limit.
#[derive(Clone, Debug)]
pub struct Limits {
    read: Option<Arc<Semaphore>>,
    mutating: Option<Arc<Semaphore>>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::new(0, 0)
    }
}

/// A held slot; released when dropped.
#[derive(Debug)]
pub struct Slot(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

/// The 429 Kubernetes answers beyond the limit.
pub fn too_many() -> StatusError {
    StatusError::new(
        Reason::TooManyRequests,
        "Too many requests, please try again later.",
    )
    .retry_after(1)
}

impl Limits {
    /// At most `read` read-only and `mutating` mutating requests at once (0: unlimited).
    pub fn new(read: usize, mutating: usize) -> Limits {
        let sem = |n: usize| (n > 0).then(|| Arc::new(Semaphore::new(n)));
        Limits {
            read: sem(read),
            mutating: sem(mutating),
        }
    }

    /// A slot for a request, or the 429.
    pub fn acquire(&self, read_only: bool) -> Result<Slot, StatusError> {
        let sem = if read_only {
            &self.read
        } else {
            &self.mutating
        };
        match sem {
            None => Ok(Slot(None)),
            Some(s) => s
                .clone()
                .try_acquire_owned()
                .map(|p| Slot(Some(p)))
                .map_err(|_| too_many()),
        }
    }
}

/// Whether a request is long-running (takes no slot): a watch, or a streaming subresource.
pub fn long_running(verb: &str, subresource: &str) -> bool {
    verb == "watch"
        || matches!(
            subresource,
            "log" | "exec" | "attach" | "portforward" | "proxy"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_budget_refuses_beyond_its_limit_and_frees_on_drop() {
        let limits = Limits::new(2, 1);
        let r1 = limits.acquire(true).expect("first read");
        let _r2 = limits.acquire(true).expect("second read");
        let e = limits.acquire(true).expect_err("third read");
        assert_eq!(e.code(), 429);
        assert_eq!(
            e.details.as_ref().and_then(|d| d.retry_after_seconds),
            Some(1)
        );
        let m1 = limits.acquire(false).expect("mutating has its own budget");
        assert!(limits.acquire(false).is_err());
        drop(r1);
        drop(m1);
        assert!(limits.acquire(true).is_ok());
        assert!(limits.acquire(false).is_ok());
        let unlimited = Limits::new(0, 0);
        let held: Vec<_> = (0..1000).map(|_| unlimited.acquire(false)).collect();
        assert!(held.iter().all(Result::is_ok));
    }

    #[test]
    fn watches_and_streams_are_long_running() {
        assert!(long_running("watch", ""));
        assert!(long_running("get", "log"));
        assert!(!long_running("list", ""));
        assert!(!long_running("update", "status"));
    }
}
