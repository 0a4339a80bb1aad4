//! CPU and memory usage read from the host: the whole node (`/proc/stat`, `/proc/meminfo`),
//! process groups (`/proc/PID/stat` and `/proc/PID/status` of every process in the group, the
//! process runtime's containers) and cgroup v2 directories (`cpu.stat`, `memory.current`,
//! `memory.stat`).
//!
//! CPU is cumulative core-nanoseconds (a rate needs two readings); memory is the working set in
//! bytes: the resident set of the group's processes, or a cgroup's usage without its inactive
//! file pages, as the kubelet counts it.
//!
//! Hand-written: the `procfs` crate parses these files too, but the few fields read here are a
//! few lines each and it would be a new dependency for them.

use std::collections::HashMap;
use std::path::Path;

/// Clock ticks per second of the times in `/proc` (`USER_HZ`: 100 on every architecture
/// gitplane builds for; the kernel converts to it whatever its internal `HZ`).
const USER_HZ: u64 = 100;
const NANOS_PER_TICK: u64 = 1_000_000_000 / USER_HZ;

/// A reading: cumulative CPU and the current working set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reading {
    /// CPU time used so far, core-nanoseconds.
    pub cpu_nanos: u64,
    /// Working set, bytes.
    pub working_set: u64,
}

/// The whole node: busy CPU time of all CPUs from `/proc/stat` (everything but idle and
/// iowait), memory in use from `/proc/meminfo` (`MemTotal - MemAvailable`).
pub fn node() -> Option<Reading> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    Some(Reading {
        cpu_nanos: node_cpu_ticks(&stat)? * NANOS_PER_TICK,
        working_set: node_memory(&meminfo)?,
    })
}

fn node_cpu_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|i| fields.get(*i))
        .sum();
    Some(busy)
}

fn meminfo_kib(meminfo: &str, key: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

fn node_memory(meminfo: &str) -> Option<u64> {
    let total = meminfo_kib(meminfo, "MemTotal")?;
    let available = meminfo_kib(meminfo, "MemAvailable")?;
    Some(total.saturating_sub(available) * 1024)
}

/// One process of `/proc/PID/stat`: its process group and CPU ticks (user + system).
fn process_stat(stat: &str) -> Option<(i32, u64)> {
    // The command name is in parentheses and may contain anything: read after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is the state (field 3 of proc(5)); pgrp is field 5, utime 14, stime 15.
    let pgrp = fields.get(2)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((pgrp, utime + stime))
}

fn status_rss(status: &str) -> Option<u64> {
    meminfo_kib(status, "VmRSS").map(|kib| kib * 1024)
}

/// The processes of the host by process group: `(pid, CPU ticks)` of each.
fn processes_by_group() -> HashMap<i32, Vec<(i32, u64)>> {
    let mut groups: HashMap<i32, Vec<(i32, u64)>> = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return groups;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // A process may exit between the listing and the read: it is simply not counted.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some((pgrp, ticks)) = process_stat(&stat) {
            groups.entry(pgrp).or_default().push((pid, ticks));
        }
    }
    groups
}

/// Readings of process groups, from one pass over `/proc`.
pub struct ProcessGroups {
    groups: HashMap<i32, Vec<(i32, u64)>>,
}

impl ProcessGroups {
    /// Reads every process's group and CPU time.
    pub fn read() -> ProcessGroups {
        ProcessGroups {
            groups: processes_by_group(),
        }
    }

    /// The processes of group `pgid`, without its leader when `skip_leader` (the process
    /// runtime's shim leads the group and is no part of the container): CPU summed over the
    /// live processes (time of children already gone is not counted), memory as their summed
    /// resident sets.
    pub fn group(&self, pgid: i32, skip_leader: bool) -> Reading {
        let mut reading = Reading::default();
        for (pid, ticks) in self.groups.get(&pgid).into_iter().flatten() {
            if skip_leader && *pid == pgid {
                continue;
            }
            reading.cpu_nanos += ticks * NANOS_PER_TICK;
            reading.working_set += std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| status_rss(&s))
                .unwrap_or(0);
        }
        reading
    }
}

/// A cgroup v2 directory: `usage_usec` of `cpu.stat`, `memory.current` less `inactive_file`
/// of `memory.stat`; `None` when the files are not there.
pub fn cgroup_v2(dir: &Path) -> Option<Reading> {
    let cpu = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
    let usec: u64 = cpu
        .lines()
        .find_map(|l| l.strip_prefix("usage_usec "))?
        .trim()
        .parse()
        .ok()?;
    let current: u64 = std::fs::read_to_string(dir.join("memory.current"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let inactive = std::fs::read_to_string(dir.join("memory.stat"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("inactive_file "))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    Some(Reading {
        cpu_nanos: usec * 1000,
        working_set: current.saturating_sub(inactive),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_stat_line_gives_its_group_and_cpu_ticks() {
        let line = "4242 (sh -c ) (x)) R 1 4240 4240 0 -1 4194304 100 0 0 0 75 25 0 0 20 0 1 0 \
                    1000 1000000 200 18446744073709551615";
        assert_eq!(process_stat(line), Some((4240, 100)));
        assert_eq!(process_stat("garbage"), None);
    }

    #[test]
    fn the_node_reading_counts_busy_time_and_memory_in_use() {
        let stat = "cpu  100 5 50 1000 40 3 2 1 7 0\ncpu0 1 2 3 4 5 6 7 8 9 0\n";
        assert_eq!(node_cpu_ticks(stat), Some(161));
        let meminfo =
            "MemTotal:       2048 kB\nMemFree:         100 kB\nMemAvailable:    1024 kB\n";
        assert_eq!(node_memory(meminfo), Some(1024 * 1024));
        assert_eq!(
            status_rss("Name:\tsh\nVmRSS:\t  1500 kB\n"),
            Some(1500 * 1024)
        );
    }

    #[test]
    fn this_process_group_uses_memory() {
        let me = nix::unistd::getpgrp().as_raw();
        let reading = ProcessGroups::read().group(me, false);
        assert!(reading.working_set > 0, "{reading:?}");
        assert!(node().is_some_and(|n| n.cpu_nanos > 0 && n.working_set > 0));
    }
}
