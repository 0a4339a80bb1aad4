//! `--metrics-listen`, the flag of the components run on their own (`scheduler`,
//! `controller-manager`, `node`): their Prometheus metrics on a plain-HTTP `/metrics`, as
//! kube-scheduler's and the kubelet's metrics ports. In `gitplane up` every component's
//! families are on the API server's `/metrics` instead (one registry, behind RBAC).

use std::net::SocketAddr;

/// The metrics flag.
#[derive(clap::Args, Clone, Debug)]
pub struct MetricsArgs {
    /// Serve this component's Prometheus metrics on `http://ADDR/metrics` (e.g.
    /// 127.0.0.1:10259); unset: not served.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
}

impl MetricsArgs {
    /// Serves `/metrics` until `stop` resolves, when asked to.
    pub async fn serve(
        &self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Some(listen) = self.metrics_listen else {
            return Ok(());
        };
        let addr = telemetry::serve(listen, stop)
            .await
            .map_err(|e| anyhow::anyhow!("--metrics-listen {listen}: {e}"))?;
        eprintln!("metrics on http://{addr}/metrics");
        Ok(())
    }
}
