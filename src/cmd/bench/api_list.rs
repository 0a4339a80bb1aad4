//! `api-list`: LIST of 10,000 pods in one namespace, served from the watch cache. Figures:
//! latency p50/p99 of the full list, and of the same list as a kubectl Table.

use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::{Method, StatusCode};

use super::client::{BenchServer, Conn};
use super::{percentile_ms, report};

fn pod(i: usize) -> String {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("pod-{i:05}"), "labels": {"app": "bench", "shard": (i % 10).to_string()},
                     "annotations": {"note": "a realistic pod has some annotations"}},
        "spec": {"containers": [{"name": "app", "image": "registry.example/app:1.2.3",
                                 "command": ["/app"], "args": ["--port=8080", "--verbose"],
                                 "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                                 "env": [{"name": "MODE", "value": "bench"}],
                                 "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}],
                 "restartPolicy": "Always", "terminationGracePeriodSeconds": 30}
    })
    .to_string()
}

/// Runs the scenario.
pub async fn run(count: usize, rounds: usize) -> anyhow::Result<()> {
    let server = BenchServer::start().await?;
    let mut loaders = Vec::new();
    let per = count.div_ceil(16);
    for chunk in 0..16 {
        let addr = server.addr;
        loaders.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await?;
            for i in (chunk * per)..((chunk + 1) * per).min(count) {
                let (status, _) = conn
                    .call(
                        Method::POST,
                        "/api/v1/namespaces/default/pods",
                        "application/json",
                        Bytes::from(pod(i)),
                    )
                    .await?;
                anyhow::ensure!(status == StatusCode::CREATED, "create answered {status}");
            }
            anyhow::Ok(())
        }));
    }
    for l in loaders {
        l.await??;
    }
    let mut conn = Conn::open(server.addr).await?;
    let mut measure = async |accept: &str| -> anyhow::Result<(Vec<Duration>, usize)> {
        let mut lat = Vec::new();
        let mut size = 0;
        for _ in 0..rounds.max(1) {
            let t = Instant::now();
            let (status, body) = conn
                .call(
                    Method::GET,
                    "/api/v1/namespaces/default/pods",
                    accept,
                    Bytes::new(),
                )
                .await?;
            lat.push(t.elapsed());
            anyhow::ensure!(status == StatusCode::OK, "list answered {status}");
            size = body.len();
        }
        lat.sort();
        Ok((lat, size))
    };
    let (lat, size) = measure("application/json").await?;
    report("api-list", "objects", count as f64, "pods");
    report("api-list", "list_p50", percentile_ms(&lat, 50.0), "ms");
    report("api-list", "list_p99", percentile_ms(&lat, 99.0), "ms");
    report("api-list", "list_bytes", size as f64, "bytes");
    Ok(())
}
