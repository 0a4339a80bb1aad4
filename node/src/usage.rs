//! CPU and memory usage read from the host: the whole node (`/proc/stat`, `/proc/meminfo`),
//! the process runtime's containers (`/proc/PID/stat`, `/proc/PID/task/TID/schedstat` and
//! `/proc/PID/status` of every process in the container's group or under its leader) and
//! cgroup v2 directories (`cpu.stat`, `memory.current`, `memory.stat`).
//!
//! CPU is cumulative core-nanoseconds (a rate needs two readings), at nanosecond resolution
//! where the kernel keeps it (`schedstat`, `usage_usec`) and never decreasing while the
//! container's processes live: a child's time is counted, once waited for, in its parent's
//! `cutime`/`cstime`. Memory is the working set in
//! bytes: the resident set of the group's processes, or a cgroup's usage without its inactive
//! file pages, as the kubelet counts it.
//!
//! Hand-written: the `procfs` crate parses these files too, but the few fields read here are a
//! few lines each and it would be a new dependency for them.

use std::collections::{BTreeSet, HashMap};
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

/// One process as `/proc/PID/stat` gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ProcessStat {
    /// The parent process.
    ppid: i32,
    /// The process group.
    pgrp: i32,
    /// CPU ticks of the process itself (user + system, all its threads).
    ticks: u64,
    /// CPU ticks of its children already waited for (`cutime + cstime`): the time of a
    /// short-lived child (a probe's `sh -c`, a loop's `sleep`) ends up here.
    children_ticks: u64,
}

/// Parses `/proc/PID/stat`.
fn process_stat(stat: &str) -> Option<ProcessStat> {
    // The command name is in parentheses and may contain anything: read after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is the state (field 3 of proc(5)); ppid is field 4, pgrp 5, utime 14,
    // stime 15, cutime 16, cstime 17.
    let field = |i: usize| -> Option<u64> { fields.get(i)?.parse().ok() };
    Some(ProcessStat {
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        ticks: field(11)? + field(12)?,
        children_ticks: field(13)? + field(14)?,
    })
}

/// The first field of `/proc/PID/task/TID/schedstat`: the thread's time on a CPU, in
/// nanoseconds (the scheduler's own count, where `stat` has 10 ms ticks).
fn schedstat_nanos(schedstat: &str) -> Option<u64> {
    schedstat.split_whitespace().next()?.parse().ok()
}

/// CPU time of process `pid`, core-nanoseconds: its threads' scheduler time (nanosecond
/// resolution, so an idle server waking a few times a second is not 0; the time of threads
/// already gone is not counted), or its ticks where `schedstat` cannot be read, plus the
/// time of the children it waited for.
fn process_cpu_nanos(pid: i32, stat: &ProcessStat) -> u64 {
    // A thread that exits between the listing and the read is simply not counted.
    let threads: Vec<u64> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| schedstat_nanos(&s))
        .collect();
    let own = if threads.is_empty() {
        stat.ticks * NANOS_PER_TICK
    } else {
        threads.iter().sum()
    };
    own + stat.children_ticks * NANOS_PER_TICK
}

fn status_rss(status: &str) -> Option<u64> {
    meminfo_kib(status, "VmRSS").map(|kib| kib * 1024)
}

/// Every process of the host: its `stat` line, parsed.
fn processes() -> HashMap<i32, ProcessStat> {
    let mut all = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return all;
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
        if let Some(p) = process_stat(&stat) {
            all.insert(pid, p);
        }
    }
    all
}

/// The processes of a container led by `leader`: its process group and every descendant of
/// the leader (a process that left the group with `setsid` is still the container's).
fn members(all: &HashMap<i32, ProcessStat>, leader: i32) -> BTreeSet<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for (pid, p) in all {
        children.entry(p.ppid).or_default().push(*pid);
    }
    let mut found: BTreeSet<i32> = all
        .iter()
        .filter(|(pid, p)| p.pgrp == leader || **pid == leader)
        .map(|(pid, _)| *pid)
        .collect();
    let mut stack = vec![leader];
    let mut visited = BTreeSet::new();
    while let Some(pid) = stack.pop() {
        if !visited.insert(pid) {
            continue;
        }
        for child in children.get(&pid).into_iter().flatten() {
            found.insert(*child);
            stack.push(*child);
        }
    }
    found
}

/// The host's processes, from one pass over `/proc`.
pub struct ProcessGroups {
    all: HashMap<i32, ProcessStat>,
}

impl ProcessGroups {
    /// Reads every process's parent, group and CPU ticks.
    pub fn read() -> ProcessGroups {
        ProcessGroups { all: processes() }
    }

    /// The processes of the container led by `pgid` (its group and the leader's
    /// descendants), without the leader when `skip_leader` (the process runtime's shim leads
    /// the group and is no part of the container): CPU summed over the live processes and the
    /// children they waited for, memory as their summed resident sets.
    pub fn group(&self, pgid: i32, skip_leader: bool) -> Reading {
        let mut reading = Reading::default();
        for pid in members(&self.all, pgid) {
            if skip_leader && pid == pgid {
                continue;
            }
            let Some(stat) = self.all.get(&pid) else {
                continue;
            };
            reading.cpu_nanos += process_cpu_nanos(pid, stat);
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
    fn a_process_stat_line_gives_its_parent_group_and_cpu_ticks() {
        let line = "4242 (sh -c ) (x)) R 1 4240 4240 0 -1 4194304 100 0 0 0 75 25 0 0 20 0 1 0 \
                    1000 1000000 200 18446744073709551615";
        assert_eq!(
            process_stat(line),
            Some(ProcessStat {
                ppid: 1,
                pgrp: 4240,
                ticks: 100,
                children_ticks: 0,
            })
        );
        assert_eq!(process_stat("garbage"), None);
        assert_eq!(schedstat_nanos("1234567 89 3\n"), Some(1_234_567));
    }

    #[test]
    fn a_container_is_its_group_and_the_leaders_descendants() {
        let p = |ppid, pgrp| ProcessStat {
            ppid,
            pgrp,
            ticks: 0,
            children_ticks: 0,
        };
        // 10 leads group 10; 11 is in it; 12 left it with setsid, 13 is 12's child;
        // 20 is another container; 30 is in group 10 but elsewhere in the tree.
        let all = HashMap::from([
            (10, p(1, 10)),
            (11, p(10, 10)),
            (12, p(11, 12)),
            (13, p(12, 12)),
            (20, p(1, 20)),
            (30, p(1, 10)),
        ]);
        assert_eq!(members(&all, 10), BTreeSet::from([10, 11, 12, 13, 30]));
        assert_eq!(members(&all, 20), BTreeSet::from([20]));
        assert_eq!(members(&all, 99), BTreeSet::new());
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
