//! `api-write-etcd`: the api-write load through an API server on etcd, and raw `etcd-client`
//! puts of the same size with the same concurrency on the same etcd, in the same run. Figures:
//! API creates per second with latency p50/p99, raw puts per second, and their ratio (the
//! target is 0.8: the API server should cost etcd writes little).
//!
//! A third phase runs raw compare-and-put transactions with the same concurrency
//! (`create_revision == 0`, then put: what a create must ask of etcd so that it fails on an
//! existing name), and the ratio of API creates to those is printed too.
//!
//! The scenario starts its own single-member etcd (`etcd` on PATH, or `$ETCD_BIN`) on free
//! loopback ports with its data in a temporary directory, fsync on as always in etcd.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use apiserver::storage::etcd::{EtcdConfig, EtcdStore};
use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use etcd_process::EtcdCluster;

use super::api_write::{config_map, create_config_maps};
use super::client::BenchServer;
use super::{percentile_ms, report};

const SCENARIO: &str = "api-write-etcd";

/// Runs the scenario.
pub async fn run(clients: usize, count: usize) -> anyhow::Result<()> {
    let etcd = EtcdCluster::start(1).context("cannot start etcd for the benchmark")?;
    let config = EtcdConfig {
        compaction_interval: None,
        ..EtcdConfig::new(etcd.endpoints())
    };
    let store = Arc::new(EtcdStore::connect(config).await?);
    let server = BenchServer::start_on(store).await?;

    let (mut api, api_elapsed) = create_config_maps(server.addr, clients, count).await?;
    let (mut raw, raw_elapsed) = raw_writes(&etcd.endpoints(), clients, count, Raw::Put).await?;
    let (mut txns, txn_elapsed) = raw_writes(&etcd.endpoints(), clients, count, Raw::Txn).await?;
    api.sort();
    raw.sort();
    txns.sort();
    let api_rate = api.len() as f64 / api_elapsed.as_secs_f64();
    let raw_rate = raw.len() as f64 / raw_elapsed.as_secs_f64();
    report(SCENARIO, "creates_per_second", api_rate, "1/s");
    report(SCENARIO, "latency_p50", percentile_ms(&api, 50.0), "ms");
    report(SCENARIO, "latency_p99", percentile_ms(&api, 99.0), "ms");
    report(SCENARIO, "raw_puts_per_second", raw_rate, "1/s");
    report(SCENARIO, "raw_latency_p50", percentile_ms(&raw, 50.0), "ms");
    report(SCENARIO, "raw_latency_p99", percentile_ms(&raw, 99.0), "ms");
    let txn_rate = txns.len() as f64 / txn_elapsed.as_secs_f64();
    report(SCENARIO, "raw_txns_per_second", txn_rate, "1/s");
    report(
        SCENARIO,
        "raw_txn_latency_p50",
        percentile_ms(&txns, 50.0),
        "ms",
    );
    report(
        SCENARIO,
        "raw_txn_latency_p99",
        percentile_ms(&txns, 99.0),
        "ms",
    );
    report(SCENARIO, "ratio_to_raw", api_rate / raw_rate, "ratio");
    report(SCENARIO, "ratio_to_raw_txns", api_rate / txn_rate, "ratio");
    report(SCENARIO, "clients", clients as f64, "clients");
    Ok(())
}

/// What a raw phase asks of etcd.
#[derive(Clone, Copy)]
enum Raw {
    /// A plain put.
    Put,
    /// A put when the key does not exist yet, as the API server's create.
    Txn,
}

/// `clients` etcd-client tasks write `count` values the size of the API's stored ConfigMaps,
/// each waiting for its answer; returns every write's latency and the wall time.
async fn raw_writes(
    endpoints: &[String],
    clients: usize,
    count: usize,
    raw: Raw,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let client = etcd_client::Client::connect(endpoints, None).await?;
    let value = config_map(0).into_bytes();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients.max(1) {
        let (mut kv, next, value) = (client.kv_client(), next.clone(), value.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let t = Instant::now();
                match raw {
                    Raw::Put => {
                        kv.put(format!("/bench/raw/cm-{i}"), value.clone(), None)
                            .await?;
                    }
                    Raw::Txn => {
                        let key = format!("/bench/txn/cm-{i}");
                        let txn = Txn::new()
                            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
                            .and_then([TxnOp::put(key.as_str(), value.clone(), None)]);
                        let response = kv.txn(txn).await?;
                        anyhow::ensure!(response.succeeded(), "{key} existed");
                    }
                }
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(count);
    for t in tasks {
        latencies.extend(t.await??);
    }
    Ok((latencies, started.elapsed()))
}
