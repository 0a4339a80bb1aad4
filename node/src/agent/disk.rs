//! The Node's `DiskPressure` condition, as the kubelet sets it: the file system holding the
//! agent's data dir (the kubelet's `nodefs`: pod volumes, container logs) is under pressure when
//! less than [`THRESHOLD_PERCENT`] of it is available, the kubelet's default hard eviction
//! threshold `nodefs.available<10%`. The kubelet then also evicts pods to reclaim space; this
//! agent only reports the condition.

use std::path::Path;

use serde_json::{Value, json};

/// Below this share of the file system available, the node is under disk pressure.
pub(super) const THRESHOLD_PERCENT: u64 = 10;

/// Space on the file system holding a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Space {
    /// Bytes available to ordinary users (`f_bavail`, as the kubelet's `nodefs.available`).
    pub(super) available: u64,
    /// The file system's size in bytes.
    pub(super) capacity: u64,
}

impl Space {
    /// The space of the file system holding `dir`; `None` when it cannot be read (the
    /// directory does not exist yet, for instance).
    pub(super) fn of(dir: &Path) -> Option<Space> {
        let stat = rustix::fs::statvfs(dir).ok()?;
        Some(Space {
            available: stat.f_bavail.saturating_mul(stat.f_frsize),
            capacity: stat.f_blocks.saturating_mul(stat.f_frsize),
        })
    }

    /// Whether less than [`THRESHOLD_PERCENT`] is available.
    pub(super) fn pressure(&self) -> bool {
        u128::from(self.available) * 100 < u128::from(self.capacity) * u128::from(THRESHOLD_PERCENT)
    }
}

/// The `DiskPressure` condition for `space` (none known: no pressure), stamped `now`.
pub(super) fn condition(space: Option<Space>, dir: &Path, now: &str) -> Value {
    let (status, reason, message) = match space {
        Some(space) if space.pressure() => (
            "True",
            "KubeletHasDiskPressure",
            format!(
                "kubelet has disk pressure: {} of {} available on the file system of {} \
                 (threshold {THRESHOLD_PERCENT}%)",
                mebibytes(space.available),
                mebibytes(space.capacity),
                dir.display()
            ),
        ),
        _ => (
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure".to_owned(),
        ),
    };
    json!({"type": "DiskPressure", "status": status, "reason": reason, "message": message,
        "lastHeartbeatTime": now, "lastTransitionTime": now})
}

fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(available: u64, capacity: u64, pressure: bool) {
        let space = Space {
            available,
            capacity,
        };
        assert_eq!(space.pressure(), pressure, "{space:?}");
        let condition = condition(Some(space), Path::new("/data"), "now");
        assert_eq!(
            condition["status"],
            if pressure { "True" } else { "False" },
            "{condition}"
        );
    }

    #[test]
    fn pressure_starts_below_ten_percent_available() {
        check(100, 100, false);
        check(10, 100, false);
        check(9, 100, true);
        check(0, 100, true);
        check(u64::MAX / 20, u64::MAX, true);
        check(0, 0, false);
    }

    #[test]
    fn the_true_condition_says_how_much_is_left_and_where() {
        let space = Space {
            available: 5 << 20,
            capacity: 100 << 20,
        };
        let condition = condition(Some(space), Path::new("/data"), "now");
        assert_eq!(condition["reason"], "KubeletHasDiskPressure");
        assert_eq!(
            condition["message"],
            "kubelet has disk pressure: 5.0 MiB of 100.0 MiB available on the file system of \
             /data (threshold 10%)"
        );
    }

    #[test]
    fn an_unknown_space_is_no_pressure() {
        let condition = condition(None, Path::new("/data"), "now");
        assert_eq!(condition["status"], "False");
        assert_eq!(condition["message"], "kubelet has no disk pressure");
    }
}
