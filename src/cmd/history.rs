//! `gitplane history APP`: the revisions an Application was synced to, newest first.

use kube::api::{Api, DynamicObject};
use reconciler::gitops::syncer::application_resource;
use serde_json::Value;

use super::connect::ClientArgs;

/// Flags of `gitplane history`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The Application.
    app: String,
    #[command(flatten)]
    kube: ClientArgs,
}

/// Prints REVISION DEPLOYED AUTHOR MESSAGE.
pub fn run(args: Args) -> anyhow::Result<u8> {
    super::server::block_on(async move {
        let client = args.kube.client().await?;
        let api: Api<DynamicObject> = Api::all_with(client, &application_resource());
        let app = api.get(&args.app).await?;
        let v = serde_json::to_value(app)?;
        let history = v
            .pointer("/status/history")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let s = |h: &Value, k: &str| h.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let rows: Vec<[String; 4]> = history
            .iter()
            .rev()
            .map(|h| {
                let rev = s(h, "revision");
                [
                    rev[..rev.len().min(7)].to_string(),
                    s(h, "deployedAt"),
                    s(h, "author"),
                    s(h, "message"),
                ]
            })
            .collect();
        super::apps::print_table(&["REVISION", "DEPLOYED", "AUTHOR", "MESSAGE"], &rows);
        Ok(0)
    })?
}
