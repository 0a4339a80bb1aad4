//! `gitplane bench SCENARIO`: the benchmarks of BENCHMARKS.md.
//!
//! Each API scenario starts what it measures in this process (an API server on a durable
//! embedded store in a temporary directory, or on an etcd the scenario starts) and drives it over real HTTP connections; `render`
//! times gitplane's renderer against `kubectl kustomize`. Each prints one line per figure: `scenario=… metric=… value=… unit=…`. Server and load share the machine, as
//! they would on one node.

mod api_list;
mod api_write;
mod api_write_etcd;
mod client;
mod faults;
mod fleet_sync;
mod gitops;
mod gitops_rollout;
mod memory;
mod pod_startup;
mod pod_startup_containerd;
mod pod_startup_process;
mod pods;
mod render;
mod render_helm;
mod schedule;
mod up_child;
mod watch_fanout;

use std::time::Duration;

use anyhow::Context;

/// Flags of `gitplane bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The scenario to run.
    #[arg(value_enum)]
    scenario: Scenario,
    /// Concurrent clients (api-write, api-write-etcd).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Objects to create (api-write, api-write-etcd: ConfigMaps; api-list: pods; gitops-rollout:
    /// commits).
    #[arg(long)]
    count: Option<usize>,
    /// Watchers (watch-fanout).
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Updates (watch-fanout).
    #[arg(long, default_value_t = 1000)]
    updates: usize,
    /// Rollbacks after the commits (gitops-rollout).
    #[arg(long, default_value_t = 5)]
    rollbacks: usize,
    /// Repetitions of the measured request (api-list).
    #[arg(long, default_value_t = 50)]
    rounds: usize,
    /// Destination API servers (fleet-sync).
    #[arg(long, default_value_t = 10)]
    destinations: usize,
    /// Simulated nodes (schedule: 5,000; pod-startup: 100).
    #[arg(long)]
    nodes: Option<usize>,
    /// Only these fault scenarios, by the ids of their `scenario=faults metric=ID/…` lines
    /// (`kill-up,hostile-repository`; etcd-members runs both etcd member rows).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Pod networking (pod-startup-process).
    #[arg(long, value_enum, default_value_t = super::runtime::PodNetwork::Auto)]
    pod_network: super::runtime::PodNetwork,
    /// The pods' image (pod-startup-containerd; built and pushed by
    /// scripts/build-test-image.sh: `HOST:PORT/gitplane/busybox:1`).
    #[arg(long)]
    image: Option<String>,
    /// The containerd of pod-startup-containerd.
    #[command(flatten)]
    containerd: super::runtime::ContainerdArgs,
}

/// The scenarios.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Scenario {
    /// Concurrent creates of 1 KiB ConfigMaps through the API (embedded store, durable).
    ApiWrite,
    /// The same through an API server on etcd, against raw etcd puts and raw compare-and-put
    /// transactions in the same run (needs `etcd` on PATH).
    ApiWriteEtcd,
    /// LIST of 10,000 pods in one namespace.
    ApiList,
    /// Watchers on pods receiving updates.
    WatchFanout,
    /// A 1,000-object kustomize overlay rendered by gitplane and by `kubectl kustomize`.
    Render,
    /// The shared Helm charts rendered by `gitplane render` and by `helm template` (processes).
    RenderHelm,
    /// Commit to a local repository → first object applied, with the syncer running.
    GitopsLatency,
    /// `gitplane up` (process runtime) on a hello app of 2 replicas: 10 commits of a new version
    /// and 5 `gitplane rollback`s, each until every answer through the NodePort is that version
    /// and no other version's pod is Ready.
    GitopsRollout,
    /// An app of 1,000 objects: first sync and no-op resync.
    GitopsSync,
    /// One ApplicationSet → one Application in each of 10 destination API servers: commit →
    /// applied in all of them.
    FleetSync,
    /// 10,000 pods scheduled onto 5,000 simulated nodes; pods/s and an over-commit check.
    Schedule,
    /// 1,000 pods created at once on 100 simulated nodes; creation → Running p99.
    PodStartup,
    /// Peak RSS of `gitplane up`: idle, after a rollout and a rollback of the playground's
    /// hello, then with 10,000 objects and 1,000 simulated nodes.
    Memory,
    /// 50 pods (`sleep`) created at once on one local node with the process runtime;
    /// creation → Running p99.
    PodStartupProcess,
    /// 50 pods of a pre-pulled image created at once on one local node through containerd;
    /// creation → Running p99 (needs `--image` and `--sandbox-image`).
    PodStartupContainerd,
    /// The fault scenarios under a write load (kill -9 of `up`, etcd outage, etcd follower
    /// and leader loss, node loss, hostile repositories, disk full as root, controller-manager
    /// killed mid-rollout): writes acknowledged and lost, processes leaked, time to recover,
    /// as one table.
    Faults,
}

/// Runs one scenario.
pub fn run(args: Args) -> anyhow::Result<u8> {
    if std::env::var_os("RUST_LOG").is_some() {
        super::server::init_logging();
    }
    super::server::block_on(async move {
        match args.scenario {
            Scenario::ApiWrite => api_write::run(args.clients, args.count.unwrap_or(20_000)).await,
            Scenario::ApiWriteEtcd => {
                api_write_etcd::run(args.clients, args.count.unwrap_or(20_000)).await
            }
            Scenario::ApiList => api_list::run(args.count.unwrap_or(10_000), args.rounds).await,
            Scenario::WatchFanout => watch_fanout::run(args.watchers, args.updates).await,
            Scenario::Render => render::run(),
            Scenario::RenderHelm => render_helm::run(),
            Scenario::GitopsLatency => gitops::latency(args.count.unwrap_or(20)).await,
            Scenario::GitopsRollout => {
                gitops_rollout::run(args.count.unwrap_or(10), args.rollbacks).await
            }
            Scenario::GitopsSync => gitops::sync(args.count.unwrap_or(1000)).await,
            Scenario::FleetSync => {
                fleet_sync::run(args.destinations, args.count.unwrap_or(10)).await
            }
            Scenario::Schedule => {
                schedule::run(
                    args.nodes.unwrap_or(5000),
                    args.count.unwrap_or(10_000),
                    args.clients,
                )
                .await
            }
            Scenario::Memory => {
                memory::run(args.count.unwrap_or(10_000), args.nodes.unwrap_or(1000)).await
            }
            Scenario::PodStartup => {
                pod_startup::run(
                    args.nodes.unwrap_or(100),
                    args.count.unwrap_or(1000),
                    args.clients,
                )
                .await
            }
            Scenario::Faults => faults::run(&args.only).await,
            Scenario::PodStartupContainerd => {
                let image = args.image.as_deref().context(
                    "pod-startup-containerd needs --image (scripts/build-test-image.sh builds one)",
                )?;
                pod_startup_containerd::run(
                    args.count.unwrap_or(50),
                    args.clients,
                    image,
                    &args.containerd,
                )
                .await
            }
            Scenario::PodStartupProcess => {
                pod_startup_process::run(args.count.unwrap_or(50), args.clients, args.pod_network)
                    .await
            }
        }?;
        Ok(0)
    })?
}

/// Prints one figure.
pub fn report(scenario: &str, metric: &str, value: f64, unit: &str) {
    println!("scenario={scenario} metric={metric} value={value:.3} unit={unit}");
}

/// The p-th percentile (0..=100) of durations, in milliseconds.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// CPU time this process has used so far (user and system, all threads), in seconds, from
/// `/proc/self/stat`; 0 where that cannot be read. A window's CPU seconds beside its wall time
/// say whether a slow run was busy or waiting.
pub fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // The fields after the command name (which may hold spaces, inside parentheses).
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: f64 = fields
        .get(11..13)
        .unwrap_or_default()
        .iter()
        .filter_map(|f| f.parse::<f64>().ok())
        .sum();
    // USER_HZ is 100 on every Linux architecture gitplane builds for.
    ticks / 100.0
}

/// The API requests this process has served so far, from `apiserver_request_total` in the
/// metrics text: (verb resource/subresource code) → count.
pub fn request_counts() -> std::collections::BTreeMap<String, f64> {
    let mut counts = std::collections::BTreeMap::new();
    for line in telemetry::encode().lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|l| l.strip_prefix(name)?.strip_prefix("=\"")?.strip_suffix('"'))
                .unwrap_or("")
                .to_string()
        };
        let sub = label("subresource");
        let key = format!(
            "{}_{}{}{}_{}",
            label("verb"),
            label("resource"),
            if sub.is_empty() { "" } else { "_" },
            sub,
            label("code")
        );
        *counts.entry(key).or_default() += value.trim().parse::<f64>().unwrap_or(0.0);
    }
    counts
}

/// Reports the requests served between `before` (from [`request_counts`]) and now, one line
/// per verb, resource and code, so that a slow run shows what else the server did meanwhile.
pub fn report_requests(scenario: &str, before: &std::collections::BTreeMap<String, f64>) {
    for (key, now) in request_counts() {
        let n = now - before.get(&key).copied().unwrap_or(0.0);
        if n > 0.0 {
            report(scenario, &format!("requests_{key}"), n, "requests");
        }
    }
}
