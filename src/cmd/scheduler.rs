//! `gitplane scheduler`: the scheduler alone, an API client with leader election (several can
//! run; only the one holding the `kube-system/kube-scheduler` Lease binds).

use std::future::Future;
use std::time::Duration;

use reconciler::leader::{self, Leadership};
use reconciler::scheduler;

use super::connect::{self, ClientArgs};
use super::server;

/// Scheduler flags, shared with `gitplane up`.
#[derive(clap::Args, Clone, Debug)]
pub struct SchedulerArgs {
    /// Schedule pods whose `spec.schedulerName` is this.
    #[arg(long, default_value = scheduler::DEFAULT_SCHEDULER_NAME)]
    pub scheduler_name: String,
    /// Elect a leader among schedulers through a Lease (off: this one always binds).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// How long a leader's Lease lasts without renewal (e.g. `15s`, `500ms`).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub leader_elect_lease_duration: Duration,
    /// How long a leader tries to renew before stepping down.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub leader_elect_renew_deadline: Duration,
    /// Time between election attempts and renewals.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub leader_elect_retry_period: Duration,
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

/// Runs the scheduler (with leader election unless disabled) until `shutdown` resolves.
pub async fn run_with(
    client: kube::Client,
    args: &SchedulerArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let identity = connect::identity();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (leadership, election) = if args.leader_elect {
        let mut config = leader::Config::new("kube-system", "kube-scheduler", &identity);
        config.lease_duration = args.leader_elect_lease_duration;
        config.renew_deadline = args.leader_elect_renew_deadline;
        config.retry_period = args.leader_elect_retry_period;
        let mut rx = stop_rx.clone();
        let (l, h) = leader::elect(client.clone(), config, async move {
            let _ = rx.wait_for(|s| *s).await;
        });
        (l, Some(h))
    } else {
        (Leadership::always(), None)
    };
    let config = scheduler::Config {
        scheduler_name: args.scheduler_name.clone(),
        identity,
        algorithm: scheduler::algorithm::Config {
            percentage_of_nodes_to_score: args.percentage_of_nodes_to_score,
        },
        ..scheduler::Config::default()
    };
    let mut rx = stop_rx;
    let stopped = async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    scheduler::run(client, config, leadership, stopped).await?;
    if let Some(h) = election {
        let _ = h.await;
    }
    Ok(())
}

/// Runs until Ctrl-C or SIGTERM.
pub fn run(args: Args) -> anyhow::Result<u8> {
    server::init_logging();
    server::block_on(async move {
        let client = args.client.client().await?;
        run_with(client, &args.scheduler, server::shutdown_signal()).await?;
        Ok(0)
    })?
}
