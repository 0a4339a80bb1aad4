//! `gitplane shim` (hidden): the process runtime starts each container through it, so the
//! container dies with the runtime (see `node::runtime::shim`).

use std::path::PathBuf;

/// Flags of `gitplane shim`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Pid of the runtime; when it is no longer the shim's parent, the container is killed.
    #[arg(long)]
    pub parent: i32,
    /// The container's cgroup directory, joined before the command starts.
    #[arg(long)]
    pub cgroup: Option<PathBuf>,
    /// The container's command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

/// Runs the container and exits with its code.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let code = node::runtime::shim::run(args.parent, args.cgroup.as_deref(), &args.command);
    Ok(u8::try_from(code).unwrap_or(255))
}
