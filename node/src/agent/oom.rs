//! OOM kills as the kernel reports them: its log (`/dev/kmsg`) has one `oom-kill:` line per
//! kill, naming the memory cgroup of the killed task (`task_memcg=/k8s.io/<container id>`),
//! which is how cadvisor's OOM watcher finds them for the kubelet. The agent asks here when a
//! runtime reports a container SIGKILLed under a memory limit without `OOMKilled`: containerd
//! 1.6 on cgroup v1 drops its OOM event when the container's cgroup is gone before its OOM
//! watcher ran, and the cgroup (with its `memory.oom_control` counter) is gone by the time the
//! container is reported exited.
//!
//! Evaluated: the `rmesg` crate reads `/dev/kmsg` too, but brings clap, regex, strum and num
//! (and wants kernel log timestamps switched on) for the one pass over the records needed
//! here; the format is one record per `read(2)` (the kernel's
//! `Documentation/ABI/testing/dev-kmsg`).

use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt as _;

/// The memory cgroup of the task an `oom-kill:` kernel log record names, if it is one.
pub fn killed_memcg(record: &str) -> Option<&str> {
    let (_, message) = record.split_once(';')?;
    let fields = message.trim_end().strip_prefix("oom-kill:")?;
    fields
        .split(',')
        .find_map(|f| f.strip_prefix("task_memcg="))
}

/// Whether the kernel log has an OOM kill in a memory cgroup whose last path component is
/// `container_id` (false when the log cannot be read: no root, or no `/dev/kmsg`).
pub fn killed(container_id: &str) -> bool {
    if container_id.is_empty() {
        return false;
    }
    let Ok(mut kmsg) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open("/dev/kmsg")
    else {
        return false;
    };
    let mut buf = vec![0u8; 8192];
    loop {
        match kmsg.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => {
                let record = String::from_utf8_lossy(&buf[..n]);
                if killed_memcg(&record).is_some_and(|m| m.rsplit('/').next() == Some(container_id))
                {
                    return true;
                }
            }
            // A record overwritten while reading: the next read goes on with the oldest.
            Err(e) if e.raw_os_error() == Some(nix::libc::EPIPE) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // EAGAIN: the end of the log.
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_killed_tasks_memory_cgroup_comes_from_an_oom_kill_record() {
        let record = "6,2012,13422880497,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),\
                      cpuset=25cf,mems_allowed=0,oom_memcg=/k8s.io/25cf,task_memcg=/k8s.io/25cf,\
                      task=sh,pid=23893,uid=0\n";
        assert_eq!(killed_memcg(record), Some("/k8s.io/25cf"));
        assert_eq!(
            killed_memcg(
                "6,2013,13422880500,-;Memory cgroup out of memory: Killed process 23893 (sh)"
            ),
            None
        );
        assert_eq!(killed_memcg("oom-kill:task_memcg=/x"), None);
    }
}
