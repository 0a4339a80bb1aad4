//! `gitplane sync APP [--wait] [--prune]`: sync now, and follow it until done (and healthy).

use std::time::{Duration, Instant};

use anyhow::bail;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use reconciler::gitops::application::{ANNOTATION_REFRESH, ANNOTATION_SYNC_REQUEST};
use reconciler::gitops::syncer::application_resource;
use serde_json::{Value, json};

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
        let api: Api<DynamicObject> = Api::all_with(client, &application_resource());
        let id = format!(
            "{}{}",
            jiff::Timestamp::now().as_nanosecond(),
            if args.prune { ":prune" } else { "" }
        );
        let patch = json!({"metadata": {"annotations": {ANNOTATION_SYNC_REQUEST: id, ANNOTATION_REFRESH: id}}});
        api.patch(&args.app, &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        eprintln!("sync of {} requested", args.app);
        let deadline = Instant::now() + Duration::from_secs(args.timeout);
        let mut last = String::new();
        loop {
            let v = serde_json::to_value(api.get(&args.app).await?)?;
            let s = |p: &str| {
                v.pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            let (health, sync) = (s("/status/health/status"), s("/status/sync/status"));
            let done = s("/status/operationState/requestId") == id;
            let line = format!(
                "{:<10} sync={:<10} health={:<12} {}",
                if done {
                    s("/status/operationState/phase")
                } else {
                    "Running".into()
                },
                sync,
                health,
                s("/status/operationState/message")
            );
            if line != last {
                eprintln!("{line}");
                last = line;
            }
            if done {
                match s("/status/operationState/phase").as_str() {
                    "Failed" => {
                        eprintln!("sync failed: {}", s("/status/operationState/message"));
                        return Ok(2);
                    }
                    _ if !args.wait || health == "Healthy" => return Ok(0),
                    _ if health == "Degraded" => {
                        eprintln!("the application is Degraded");
                        return Ok(2);
                    }
                    _ => {}
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "timed out after {} s waiting for {}",
                    args.timeout,
                    args.app
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })?
}
