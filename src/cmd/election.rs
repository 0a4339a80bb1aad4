//! The leader-election flags and wiring that `scheduler`, `controller-manager` and `up` share
//! (kube-scheduler's and kube-controller-manager's `--leader-elect*`): declared once here.

use std::future::Future;
use std::time::Duration;

use reconciler::leader::{self, Leadership};
use tokio_util::sync::CancellationToken;

use super::scheduler::parse_duration;

/// `--leader-elect*` flags.
#[derive(clap::Args, Clone, Debug)]
pub struct LeaderElectArgs {
    /// Elect a leader among replicas through a Lease (off: this one always acts).
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
}

impl LeaderElectArgs {
    /// Runs `component` with the leadership of the Lease `kube-system/<lease>`, elected as
    /// `identity` (without `--leader-elect` this replica always leads), until `stop` is
    /// cancelled; then joins the election, which releases a held Lease.
    pub async fn run<F, Fut>(
        &self,
        client: kube::Client,
        lease: &str,
        identity: &str,
        stop: &CancellationToken,
        component: F,
    ) -> anyhow::Result<()>
    where
        F: FnOnce(Leadership) -> Fut,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        let (leadership, election) = if self.leader_elect {
            let mut config = leader::Config::new("kube-system", lease, identity);
            config.lease_duration = self.leader_elect_lease_duration;
            config.renew_deadline = self.leader_elect_renew_deadline;
            config.retry_period = self.leader_elect_retry_period;
            let (l, task) = leader::elect(client, config, stop.clone().cancelled_owned());
            (l, Some(task))
        } else {
            (Leadership::always(), None)
        };
        component(leadership).await?;
        if let Some(task) = election {
            let _ = task.await;
        }
        Ok(())
    }
}
