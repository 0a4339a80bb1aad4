//! `gitplane up`: the whole platform in one process.
//!
//! Start order: the API server, then (once it is ready) the scheduler and, with
//! `--runtime simulated`, the simulated nodes. Without `--runtime simulated` no node runs yet:
//! the process runtime arrives with the node agent issue, and pods stay Pending until some node
//! (for example `gitplane simulate-nodes`) registers.

use super::connect;
use super::scheduler::{self, SchedulerArgs};
use super::server::{self, ServerArgs};
use super::simulate_nodes::NodeArgs;

/// Node runtimes `up` can run in-process.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// No node (the default until the process runtime lands).
    None,
    /// Simulated nodes (kwok-style): pods reach Running without processes.
    Simulated,
}

/// Flags of `gitplane up`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    server: ServerArgs,
    /// The node runtime to run in this process.
    #[arg(long, value_enum, default_value_t = Runtime::None)]
    runtime: Runtime,
    /// Number of simulated nodes (`--runtime simulated`; 0 for none).
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    #[command(flatten)]
    node: NodeArgs,
    /// Do not run the scheduler in this process (run `gitplane scheduler` elsewhere).
    #[arg(long)]
    disable_scheduler: bool,
    #[command(flatten)]
    scheduler: SchedulerArgs,
}

/// Runs the platform until Ctrl-C or SIGTERM.
pub fn run(args: Args) -> anyhow::Result<u8> {
    server::init_logging();
    let node_config = args.node.config(args.nodes)?;
    server::block_on(async move {
        let api = server::start(&args.server).await?;
        let kubeconfig = args.server.data_dir.join("kubeconfig");
        let addr = api.local_addr();
        let client = connect::local_client(addr)?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let server_task = tokio::spawn(api.serve(stopped()));
        let scheduler_task = (!args.disable_scheduler).then(|| {
            let (client, sched, stop) = (client.clone(), args.scheduler.clone(), stopped());
            tokio::spawn(async move { scheduler::run_with(client, &sched, stop).await })
        });
        let nodes = match args.runtime {
            Runtime::Simulated if args.nodes > 0 => {
                Some(node::simulated::SimulatedNodes::start(client, node_config).await?)
            }
            _ => None,
        };
        eprintln!(
            "gitplane is up on http://{}\n  kubectl --kubeconfig {} get namespaces",
            addr,
            kubeconfig.display()
        );
        server::shutdown_signal().await;
        if let Some(nodes) = nodes {
            nodes.shutdown().await;
        }
        let _ = stop_tx.send(true);
        if let Some(t) = scheduler_task {
            t.await??;
        }
        server_task.await??;
        tracing::info!("gitplane stopped");
        Ok(0)
    })?
}
