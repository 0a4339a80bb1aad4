//! `gitplane simulate-nodes`: registers simulated nodes and runs them until stopped (kwok-style:
//! one process, any number of nodes; see `node::simulated`).

use std::time::Duration;

use node::simulated::{self, SimulatedNodes};

use super::connect::ClientArgs;
use super::server;

/// What the simulated nodes look like (shared with `gitplane up --runtime simulated`).
#[derive(clap::Args, Clone, Debug)]
pub struct NodeArgs {
    /// CPU capacity of each node.
    #[arg(long, default_value = "4")]
    pub cpu: String,
    /// Memory capacity of each node.
    #[arg(long, default_value = "16Gi")]
    pub memory: String,
    /// Pod capacity of each node.
    #[arg(long, default_value_t = 110)]
    pub pods: u32,
    /// Extra node labels, `k=v,k2=v2`.
    #[arg(long, default_value = "")]
    pub labels: String,
    /// Node taints, `key[=value]:Effect,…`.
    #[arg(long, default_value = "")]
    pub taints: String,
    /// Milliseconds from binding to Running.
    #[arg(long, default_value_t = 0)]
    pub startup_latency: u64,
    /// Node names are this prefix and an index.
    #[arg(long, default_value = "sim-node-")]
    pub name_prefix: String,
    /// How often each node's Lease is renewed (kubelet: 10s).
    #[arg(long, default_value = "10s", value_parser = super::scheduler::parse_duration)]
    pub lease_renew_interval: Duration,
}

impl NodeArgs {
    /// The simulation config for `count` nodes.
    pub fn config(&self, count: usize) -> anyhow::Result<simulated::Config> {
        Ok(simulated::Config {
            count,
            name_prefix: self.name_prefix.clone(),
            cpu: self.cpu.clone(),
            memory: self.memory.clone(),
            pods: self.pods,
            labels: simulated::parse_labels(&self.labels)?,
            taints: simulated::parse_taints(&self.taints)?,
            startup_latency: Duration::from_millis(self.startup_latency),
            renew_interval: self.lease_renew_interval,
            ..simulated::Config::default()
        })
    }
}

/// Flags of `gitplane simulate-nodes`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    client: ClientArgs,
    /// How many nodes.
    #[arg(long, default_value_t = 1)]
    count: usize,
    #[command(flatten)]
    nodes: NodeArgs,
}

/// Runs until Ctrl-C or SIGTERM.
pub fn run(args: Args) -> anyhow::Result<u8> {
    server::init_logging();
    let config = args.nodes.config(args.count)?;
    server::block_on(async move {
        let client = args.client.client().await?;
        let nodes = SimulatedNodes::start(client, config).await?;
        eprintln!("simulating {} node(s)", nodes.node_names().len());
        server::shutdown_signal().await;
        nodes.shutdown().await;
        Ok(0)
    })?
}
