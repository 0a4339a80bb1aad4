//! `gitplane apps`: the Applications and where they stand.

use kube::api::{Api, DynamicObject, ListParams};
use reconciler::gitops::syncer::application_resource;
use serde_json::Value;

use super::connect::ClientArgs;

/// Flags of `gitplane apps`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    kube: ClientArgs,
}

fn field<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// Prints NAME SYNC HEALTH REVISION REPO PATH.
pub fn run(args: Args) -> anyhow::Result<u8> {
    super::server::block_on(async move {
        let client = args.kube.client().await?;
        let api: Api<DynamicObject> = Api::all_with(client, &application_resource());
        let apps = api.list(&ListParams::default()).await?;
        let rows: Vec<[String; 6]> = apps
            .items
            .iter()
            .map(|a| {
                let v = serde_json::to_value(a).unwrap_or_default();
                let rev = field(&v, "/status/sync/revision");
                [
                    a.metadata.name.clone().unwrap_or_default(),
                    field(&v, "/status/sync/status").to_string(),
                    field(&v, "/status/health/status").to_string(),
                    rev[..rev.len().min(7)].to_string(),
                    field(&v, "/spec/source/repoURL").to_string(),
                    field(&v, "/spec/source/path").to_string(),
                ]
            })
            .collect();
        print_table(
            &["NAME", "SYNC", "HEALTH", "REVISION", "REPO", "PATH"],
            &rows,
        );
        Ok(0)
    })?
}

/// Prints a table with columns padded like kubectl's.
pub fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", parts.join("   ").trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}
