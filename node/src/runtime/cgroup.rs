//! cgroup v2 limits: one cgroup per container under `/sys/fs/cgroup/gitplane/`, with
//! `memory.max` and `cpu.max` from the container's limits. When the host has no writable cgroup
//! v2 hierarchy (cgroup v1, or no rights), a warning is logged once and limits stay unenforced.

use std::path::{Path, PathBuf};

/// The parent cgroup of gitplane's containers, when usable.
#[derive(Debug)]
pub struct Cgroups {
    parent: PathBuf,
}

impl Cgroups {
    /// Creates the parent cgroup and enables the memory and cpu controllers for its children;
    /// `None` (after one warning) when that is not possible.
    pub fn detect() -> Option<Cgroups> {
        let root = Path::new("/sys/fs/cgroup");
        let warn = |why: &str| {
            tracing::warn!(
                "cgroup v2 is not usable ({why}): container memory and CPU limits are not enforced"
            );
            None
        };
        if !root.join("cgroup.controllers").exists() {
            return warn("no unified hierarchy at /sys/fs/cgroup");
        }
        let parent = root.join("gitplane");
        if let Err(e) = std::fs::create_dir_all(&parent) {
            return warn(&format!("cannot create {}: {e}", parent.display()));
        }
        let _ = std::fs::write(root.join("cgroup.subtree_control"), "+memory +cpu");
        if let Err(e) = std::fs::write(parent.join("cgroup.subtree_control"), "+memory +cpu") {
            return warn(&format!("cannot enable memory and cpu controllers: {e}"));
        }
        Some(Cgroups { parent })
    }

    /// Creates the cgroup of a container with its limits; its directory, `None` (after a
    /// warning) when that fails.
    pub fn create(&self, id: &str, memory_bytes: i64, cpu_millis: i64) -> Option<PathBuf> {
        let dir = self.parent.join(id);
        let result = (|| -> std::io::Result<()> {
            std::fs::create_dir_all(&dir)?;
            if memory_bytes > 0 {
                std::fs::write(dir.join("memory.max"), memory_bytes.to_string())?;
            }
            if cpu_millis > 0 {
                std::fs::write(dir.join("cpu.max"), format!("{} 100000", cpu_millis * 100))?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => Some(dir),
            Err(e) => {
                tracing::warn!(container = id, error = %e, "cannot apply the container's cgroup limits");
                None
            }
        }
    }

    /// Moves `pid` into the cgroup `dir` made by [`Cgroups::create`].
    pub fn join(dir: &Path, pid: u32) {
        if let Err(e) = std::fs::write(dir.join("cgroup.procs"), pid.to_string()) {
            tracing::warn!(cgroup = %dir.display(), error = %e, "cannot move the container into its cgroup");
        }
    }

    /// The directory of a container's cgroup (present while it runs with limits).
    pub fn dir(&self, id: &str) -> PathBuf {
        self.parent.join(id)
    }

    /// Removes a container's cgroup (once its processes are gone).
    pub fn remove(&self, id: &str) {
        let _ = std::fs::remove_dir(self.parent.join(id));
    }
}
