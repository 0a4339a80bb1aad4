//! `gitplane controller-manager`: the controllers alone, an API client with leader election
//! (several can run; only the one holding the `kube-system/kube-controller-manager` Lease
//! acts). Each controller talks to the API with its own client, named after it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use reconciler::controllers;
use tokio_util::sync::CancellationToken;

use super::connect::{self, ClientArgs};
use super::election::LeaderElectArgs;
use super::metrics::MetricsArgs;
use super::scheduler::parse_duration;
use super::server;

/// Controller-manager flags, shared with `gitplane up`.
#[derive(clap::Args, Clone, Debug)]
pub struct ControllerManagerArgs {
    /// Controllers to run: `*` for all, `name` to add one, `-name` to remove one
    /// (e.g. `*,-garbagecollector`).
    #[arg(long, value_delimiter = ',', default_value = "*")]
    pub controllers: Vec<String>,
    /// PEM file of the cluster's root CA, published as the ConfigMap `kube-root-ca.crt` in
    /// every namespace (nothing is published without it; `up`: its cluster CA,
    /// DATA_DIR/pki/ca.crt).
    #[arg(long)]
    pub root_ca_file: Option<PathBuf>,
    /// Objects each controller reconciles at once.
    #[arg(long, default_value_t = 5)]
    pub concurrent_syncs: u16,
    /// How long a node may go without renewing its Lease before it is marked `Unknown` and
    /// tainted `node.kubernetes.io/unreachable`.
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    pub node_monitor_grace_period: Duration,
    /// How often the node lifecycle controller checks the nodes.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub node_monitor_period: Duration,
    /// `tolerationSeconds` for the `not-ready`/`unreachable` NoExecute taints on pods that do
    /// not set their own (Kubernetes' DefaultTolerationSeconds admission: 300).
    #[arg(long, default_value_t = 300)]
    pub default_toleration_seconds: i64,
    /// First delay before a Job replaces a failed pod; doubles per failure, at most 6 min.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub job_pod_failure_backoff: Duration,
    /// How often each HorizontalPodAutoscaler is evaluated.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub horizontal_pod_autoscaler_sync_period: Duration,
}

/// Flags of `gitplane controller-manager`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    controllers: ControllerManagerArgs,
    #[command(flatten)]
    election: LeaderElectArgs,
    #[command(flatten)]
    metrics: MetricsArgs,
}

impl ControllerManagerArgs {
    /// The controllers' configuration (reads `--root-ca-file`).
    pub fn config(&self) -> anyhow::Result<controllers::Config> {
        let root_ca = match &self.root_ca_file {
            Some(f) => Some(
                std::fs::read_to_string(f)
                    .with_context(|| format!("--root-ca-file {}", f.display()))?,
            ),
            None => None,
        };
        let config = controllers::Config {
            controllers: self.controllers.clone(),
            instance: connect::identity(),
            root_ca,
            concurrency: self.concurrent_syncs.max(1),
            node_monitor_grace_period: self.node_monitor_grace_period,
            node_monitor_period: self.node_monitor_period,
            default_toleration_seconds: self.default_toleration_seconds,
            job_backoff_base: self.job_pod_failure_backoff,
            hpa_sync_period: self.horizontal_pod_autoscaler_sync_period,
            ..controllers::Config::default()
        };
        config.check()?;
        Ok(config)
    }
}

/// Runs the controllers (with leader election unless disabled) until `stop` is cancelled.
/// `client` elects; `clients` makes each controller's own client.
pub async fn run_with(
    client: kube::Client,
    clients: controllers::Clients,
    args: &ControllerManagerArgs,
    election: &LeaderElectArgs,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let config = args.config()?;
    let identity = config.instance.clone();
    let term = stop.clone();
    election
        .run(
            client,
            "kube-controller-manager",
            &identity,
            &stop,
            move |leadership| async move {
                Ok(controllers::run(clients, config, leadership, term).await?)
            },
        )
        .await
}

/// Runs until Ctrl-C or SIGTERM.
pub fn run(args: Args) -> anyhow::Result<u8> {
    server::init_logging();
    server::block_on(async move {
        let base = args.client.config().await?;
        let client = kube::Client::try_from(connect::named(base.clone(), "controller-manager")?)?;
        let clients: controllers::Clients = Arc::new(move |identity: &str| {
            let config = connect::named(base.clone(), identity)?;
            Ok(kube::Client::try_from(config)?)
        });
        telemetry::workqueue::metrics();
        server::until_signal(|stop| async move {
            args.metrics.serve(stop.clone().cancelled_owned()).await?;
            run_with(client, clients, &args.controllers, &args.election, stop).await
        })
        .await?;
        Ok(0)
    })?
}
