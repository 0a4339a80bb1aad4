//! The `gitplane` command: one binary, one subcommand per component or task.
//!
//! # Layout
//! - `cmd/`: one module per subcommand, each with its clap `Args` and a `run`.
//! - `kubeconfig`: writing and reading the kubeconfig that clients use.

mod cmd;
mod kubeconfig;

use clap::{Parser, Subcommand};

/// gitplane: a GitOps-driven, Kubernetes-compatible control plane in one binary.
#[derive(Parser)]
#[command(name = "gitplane", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole platform on this machine: API server on the embedded store, the
    /// scheduler, simulated nodes with `--runtime simulated`, and (as they arrive) the
    /// controllers, a local node and the syncer.
    Up(cmd::up::Args),
    /// Run the API server alone.
    Apiserver(cmd::apiserver::Args),
    /// Run the scheduler alone (an API client, with leader election).
    Scheduler(cmd::scheduler::Args),
    /// Register simulated nodes and run their pods (kwok-style) until stopped.
    SimulateNodes(cmd::simulate_nodes::Args),
    /// Render a kustomization, chart or directory of manifests and print the objects.
    Render(cmd::render::Args),
    /// Run a benchmark scenario from BENCHMARKS.md and print `scenario=… metric=… value=… unit=…`.
    Bench(cmd::bench::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => cmd::up::run(args),
        Command::Apiserver(args) => cmd::apiserver::run(args),
        Command::Scheduler(args) => cmd::scheduler::run(args),
        Command::SimulateNodes(args) => cmd::simulate_nodes::run(args),
        Command::Render(args) => cmd::render::run(args),
        Command::Bench(args) => cmd::bench::run(args),
    };
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
