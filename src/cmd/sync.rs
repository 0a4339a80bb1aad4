//! `gitplane sync APP [--wait] [--prune]`: sync now (an `operation` on the Application, the
//! path the web console takes too), and follow it until done (and healthy).

use std::time::{Duration, Instant};

use anyhow::bail;
use kube::api::{Api, DynamicObject};
use reconciler::gitops::operation::{self, Kind};
use reconciler::gitops::syncer::application_resource;
use serde_json::Value;

use super::connect::ClientArgs;

/// Flags of `gitplane sync`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The Application.
    app: String,
    /// Also wait until the Application is healthy.
    #[arg(long)]
    wait: bool,
    /// Delete what the Application owns and no longer renders, even without automated prune.
    #[arg(long)]
    prune: bool,
    /// How long to wait, in seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    #[command(flatten)]
    kube: ClientArgs,
}

/// Requests a sync and follows it; exit 0 when it succeeded (and, with --wait, became healthy).
pub fn run(args: Args) -> anyhow::Result<u8> {
    super::server::block_on(async move {
        let client = args.kube.client().await?;
        let kind = Kind::Sync { prune: args.prune };
        let id = operation::request(&client, &args.app, kind).await?;
        eprintln!("sync of {} requested", args.app);
        let api: Api<DynamicObject> = Api::all_with(client, &application_resource());
        let (code, _) = follow(&api, &args.app, &id, args.wait, args.timeout).await?;
        Ok(code)
    })?
}

/// Follows the operation `id` on Application `app` until the syncer reports its outcome (and,
/// with `wait`, until the app is healthy); returns the exit code and the Application.
pub(super) async fn follow(
    api: &Api<DynamicObject>,
    app: &str,
    id: &str,
    wait: bool,
    timeout: u64,
) -> anyhow::Result<(u8, Value)> {
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let mut last = String::new();
    loop {
        let v = serde_json::to_value(api.get(app).await?)?;
        let s = |p: &str| {
            v.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let (health, sync) = (s("/status/health/status"), s("/status/sync/status"));
        let phase = s("/status/operationState/phase");
        let done = s("/status/operationState/requestId") == id && phase != "Running";
        let line = format!(
            "{:<10} sync={:<10} health={:<12} {}",
            if done { phase.as_str() } else { "Running" },
            sync,
            health,
            s("/status/operationState/message")
        );
        if line != last {
            eprintln!("{line}");
            last = line;
        }
        if done {
            match phase.as_str() {
                "Failed" => {
                    eprintln!("{app} failed: {}", s("/status/operationState/message"));
                    return Ok((2, v));
                }
                _ if !wait || health == "Healthy" => return Ok((0, v)),
                _ if health == "Degraded" => {
                    eprintln!("the application is Degraded");
                    return Ok((2, v));
                }
                _ => {}
            }
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout} s waiting for {app}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
