//! The `gitplane` command: one binary, one subcommand per component or task.
//!
//! # Layout
//! - `cmd/`: one module per subcommand, each with its clap `Args` and a `run`.
//! - `kubeconfig`: writing and reading the kubeconfig that clients use.
//! - `rootless`: `up` for an ordinary user, re-executed in a user namespace by rootlesskit.

mod cmd;
mod kubeconfig;
mod rootless;

use clap::{Parser, Subcommand};

/// jemalloc rather than glibc's malloc: the scheduling and pod start-up benchmarks run about
/// twice as fast with it (ARCHITECTURE.md, *jemalloc as the global allocator*).
/// `--features system-allocator` keeps glibc's, for heap profilers that intercept malloc.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// gitplane: a GitOps-driven, Kubernetes-compatible control plane in one binary.
#[derive(Parser)]
#[command(name = "gitplane", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the largest variant (`up`'s many flags) does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the whole platform on this machine: API server (embedded store unless --store), the
    /// GitOps syncer, the scheduler, the controllers, the service proxy and a local node running
    /// pods as processes (or simulated nodes with `--runtime simulated`).
    Up(cmd::up::Args),
    /// Run the API server alone.
    Apiserver(cmd::apiserver::Args),
    /// Run the scheduler alone (an API client, with leader election).
    Scheduler(cmd::scheduler::Args),
    /// Run the service proxy alone: cluster IPs and node ports forwarded to ready endpoints.
    Proxy(cmd::proxy::Args),
    /// Run the controllers alone (an API client, with leader election).
    ControllerManager(cmd::controller_manager::Args),
    /// Run the node agent alone (an API client and a client of `gitplane runtime`).
    Node(cmd::node::Args),
    /// Run the process runtime alone, serving the runtime API on a unix socket.
    Runtime(cmd::runtime::Args),
    /// Register simulated nodes and run their pods (kwok-style) until stopped.
    SimulateNodes(cmd::simulate_nodes::Args),
    /// Render a kustomization, chart or directory of manifests and print the objects.
    Render(cmd::render::Args),
    /// List Applications: sync status, health, revision.
    Apps(cmd::apps::Args),
    /// Sync an Application now and follow it.
    Sync(cmd::sync::Args),
    /// Review a change: render a revision, diff it against the cluster, dry-run it.
    Diff(cmd::diff::Args),
    /// The revisions an Application was synced to.
    History(cmd::history::Args),
    /// Register, list and remove the clusters Applications may be synced into.
    Cluster(cmd::cluster::Args),
    /// Roll an Application back with a `git revert` commit.
    Rollback(cmd::rollback::Args),
    /// Which commit and file:line produced a live object.
    Blame(cmd::blame::Args),
    /// Run a benchmark scenario from BENCHMARKS.md and print `scenario=… metric=… value=… unit=…`.
    Bench(cmd::bench::Args),
    /// Run the example admission webhook (adds a label; refuses untagged and `latest` images).
    PolicyWebhook(cmd::policy_webhook::Args),
    /// Start one container for the process runtime and die with the runtime (internal).
    #[command(hide = true)]
    Shim(cmd::shim::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => cmd::up::run(args),
        Command::Apiserver(args) => cmd::apiserver::run(args),
        Command::Scheduler(args) => cmd::scheduler::run(args),
        Command::Proxy(args) => cmd::proxy::run(args),
        Command::ControllerManager(args) => cmd::controller_manager::run(args),
        Command::Node(args) => cmd::node::run(args),
        Command::Runtime(args) => cmd::runtime::run(args),
        Command::SimulateNodes(args) => cmd::simulate_nodes::run(args),
        Command::Render(args) => cmd::render::run(args),
        Command::Apps(args) => cmd::apps::run(args),
        Command::Sync(args) => cmd::sync::run(args),
        Command::Diff(args) => cmd::diff::run(args),
        Command::History(args) => cmd::history::run(args),
        Command::Cluster(args) => cmd::cluster::run(args),
        Command::Rollback(args) => cmd::rollback::run(args),
        Command::Blame(args) => cmd::blame::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::PolicyWebhook(args) => cmd::policy_webhook::run(args),
        Command::Shim(args) => cmd::shim::run(args),
    };
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
