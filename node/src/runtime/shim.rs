//! The per-container shim (`gitplane shim`): the process runtime starts each container's main
//! process through it, so a container dies with its runtime however the runtime ends.
//!
//! The shim is the leader of the container's process group (the runtime's stop signals the
//! group as before). It arms the parent-death signal (`PR_SET_PDEATHSIG`, SIGTERM) on itself,
//! then starts the container's command in its own group and waits for it. When its parent dies
//! — a `kill -9` of `gitplane up` or `gitplane runtime`, a crash — the kernel sends it SIGTERM,
//! and the shim kills the whole group with SIGKILL, itself included. The kernel also sends the
//! signal when only the runtime's *thread* that forked the shim ends; then the shim has been
//! handed to another thread of the same process, its parent pid has not changed, and it goes
//! on. A SIGTERM from the runtime's own stop (sent to the group) finds the parent alive, so the
//! shim leaves it to the container and keeps waiting.
//!
//! The shim exits with the container's exit code, or 128 + the signal that ended it.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags, posix_spawnp};
use nix::sys::prctl;
use nix::sys::signal::{SigSet, Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, getpgrp, getppid};

/// Runs `argv` as the container of a runtime whose pid is `parent`, after joining `cgroup`
/// (the container's cgroup directory) when given; returns the exit code for the shim.
pub fn run(parent: i32, cgroup: Option<&Path>, argv: &[String]) -> i32 {
    let Some((program, args)) = argv.split_first() else {
        eprintln!("gitplane shim: no command");
        return 127;
    };
    let mut signals = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGCHLD,
    ] {
        signals.add(s);
    }
    // Blocked, so they wait for `signals.wait()`; the child starts with an empty mask (see
    // `spawn`).
    if let Err(e) = signals.thread_block() {
        eprintln!("gitplane shim: blocking signals: {e}");
        return 127;
    }
    if let Err(e) = prctl::set_pdeathsig(Signal::SIGTERM) {
        eprintln!("gitplane shim: setting the parent-death signal: {e}");
        return 127;
    }
    // The parent may have died before the signal was armed.
    if getppid().as_raw() != parent {
        return orphaned();
    }
    if let Some(dir) = cgroup
        && let Err(e) = std::fs::write(dir.join("cgroup.procs"), "0")
    {
        eprintln!(
            "gitplane shim: joining {}: {e} (limits not enforced)",
            dir.display()
        );
    }
    // posix_spawn with an empty signal mask: a child started by `Command` would inherit the
    // mask blocked above (SIGTERM included) and never see the runtime's stop.
    let child = match spawn(program, args) {
        Ok(pid) => pid,
        Err(e) => {
            eprintln!("{program}: {e}");
            return 127;
        }
    };
    loop {
        match signals.wait() {
            Ok(Signal::SIGCHLD) => match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => return code,
                Ok(WaitStatus::Signaled(_, signal, _)) => return 128 + signal as i32,
                Ok(_) => {}
                Err(_) => return 255,
            },
            Ok(_) if getppid().as_raw() != parent => return orphaned(),
            _ => {}
        }
    }
}

/// Starts `program` (looked up in PATH) with `args`, this process's environment and an empty
/// signal mask.
fn spawn(program: &str, args: &[String]) -> Result<Pid, String> {
    let cstr = |s: &[u8]| CString::new(s).map_err(|_| "an argument holds a NUL byte".to_string());
    let path = cstr(program.as_bytes())?;
    let mut argv = vec![path.clone()];
    for a in args {
        argv.push(cstr(a.as_bytes())?);
    }
    let mut env = Vec::new();
    for (k, v) in std::env::vars_os() {
        let mut kv = k.as_bytes().to_vec();
        kv.push(b'=');
        kv.extend_from_slice(v.as_bytes());
        env.push(cstr(&kv)?);
    }
    let mut attr = PosixSpawnAttr::init().map_err(|e| e.to_string())?;
    attr.set_sigmask(&SigSet::empty())
        .map_err(|e| e.to_string())?;
    attr.set_flags(PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK)
        .map_err(|e| e.to_string())?;
    let actions = PosixSpawnFileActions::init().map_err(|e| e.to_string())?;
    posix_spawnp(&path, &actions, &attr, &argv, &env).map_err(|e| e.desc().to_string())
}

fn orphaned() -> i32 {
    let _ = killpg(getpgrp(), Signal::SIGKILL);
    137
}
