//! `gitplane scheduler`: the scheduler alone, an API client with leader election (several can
//! run; only the one holding the `kube-system/kube-scheduler` Lease binds).

use std::time::Duration;

use reconciler::scheduler;
use tokio_util::sync::CancellationToken;

use super::connect::{self, ClientArgs};
use super::election::LeaderElectArgs;
use super::metrics::MetricsArgs;
use super::server;

/// Scheduler flags, shared with `gitplane up`.
#[derive(clap::Args, Clone, Debug)]
pub struct SchedulerArgs {
    /// Schedule pods whose `spec.schedulerName` is this.
    #[arg(long, default_value = scheduler::DEFAULT_SCHEDULER_NAME)]
    pub scheduler_name: String,
    /// Stop the feasibility search after this percentage of nodes were found feasible (default:
    /// adaptive, 50 - nodes/125 percent, at least 5 %, at least 100 nodes).
    #[arg(long)]
    pub percentage_of_nodes_to_score: Option<u32>,
}

/// Flags of `gitplane scheduler`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    scheduler: SchedulerArgs,
    #[command(flatten)]
    election: LeaderElectArgs,
    #[command(flatten)]
    metrics: MetricsArgs,
}

/// Parses `15s`, `500ms`, `2m` or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 15s or 500ms"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("invalid duration {s:?}: unit must be ms, s or m")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// Runs the scheduler (with leader election unless disabled) until `stop` is cancelled.
pub async fn run_with(
    client: kube::Client,
    args: &SchedulerArgs,
    election: &LeaderElectArgs,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let identity = connect::identity();
    let config = scheduler::Config {
        scheduler_name: args.scheduler_name.clone(),
        identity: identity.clone(),
        algorithm: scheduler::algorithm::Config {
            percentage_of_nodes_to_score: args.percentage_of_nodes_to_score,
        },
        ..scheduler::Config::default()
    };
    let term = stop.clone().cancelled_owned();
    election
        .run(
            client.clone(),
            "kube-scheduler",
            &identity,
            &stop,
            move |leadership| async move {
                Ok(scheduler::run(client, config, leadership, term).await?)
            },
        )
        .await
}

/// Runs until Ctrl-C or SIGTERM.
pub fn run(args: Args) -> anyhow::Result<u8> {
    server::init_logging();
    server::block_on(async move {
        let client = args.client.client().await?;
        telemetry::scheduler::metrics();
        server::until_signal(|stop| async move {
            args.metrics.serve(stop.clone().cancelled_owned()).await?;
            run_with(client, &args.scheduler, &args.election, stop).await
        })
        .await?;
        Ok(0)
    })?
}
