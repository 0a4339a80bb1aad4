//! `watch-fanout`: watchers on pods, each on its own connection, receive a stream of updates.
//! Figure: delivery latency (update sent → event received by a watcher), p50/p99 over every
//! (watcher, update) pair, and how many deliveries arrived.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Method, StatusCode};

use super::client::{BenchServer, Conn};
use super::{percentile_ms, report};

/// Runs the scenario.
pub async fn run(watchers: usize, updates: usize) -> anyhow::Result<()> {
    let server = BenchServer::start().await?;
    let mut conn = Conn::open(server.addr).await?;
    let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"target","labels":{"seq":"none"}},"spec":{"containers":[{"name":"c","image":"i"}]}}"#;
    let (status, created) = conn
        .call(
            Method::POST,
            "/api/v1/namespaces/default/pods",
            "application/json",
            Bytes::from(pod),
        )
        .await?;
    anyhow::ensure!(status == StatusCode::CREATED, "create answered {status}");
    let created: serde_json::Value = serde_json::from_slice(&created)?;
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();

    // sent[i]: when update i was sent; filled before the update goes out.
    let sent: Arc<Vec<std::sync::OnceLock<Instant>>> =
        Arc::new((0..updates).map(|_| std::sync::OnceLock::new()).collect());
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(watchers.max(1));
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        let (addr, sent, rv, ready) = (server.addr, sent.clone(), rv.clone(), ready_tx.clone());
        tasks.push(tokio::spawn(async move {
            let conn = Conn::open(addr).await?;
            let mut body = conn
                .stream(&format!(
                    "/api/v1/namespaces/default/pods?watch=true&resourceVersion={rv}"
                ))
                .await?;
            ready.send(()).await.ok();
            let mut latencies = Vec::with_capacity(updates);
            let mut pending = Vec::new();
            while latencies.len() < updates {
                let Some(frame) = body.frame().await else {
                    break;
                };
                let Ok(data) = frame?.into_data() else {
                    continue;
                };
                pending.extend_from_slice(&data);
                while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=nl).collect();
                    let received = Instant::now();
                    // Find `"seq":"u-<n>"` without a full JSON parse: the watcher stays cheap.
                    let text = String::from_utf8_lossy(&line);
                    if let Some(pos) = text.find("\"seq\":\"u-") {
                        let digits: String = text[pos + 9..]
                            .chars()
                            .take_while(char::is_ascii_digit)
                            .collect();
                        if let Some(at) = digits
                            .parse::<usize>()
                            .ok()
                            .and_then(|n| sent.get(n)?.get().copied())
                        {
                            latencies.push(received - at);
                        }
                    }
                }
            }
            anyhow::Ok(latencies)
        }));
    }
    drop(ready_tx);
    for _ in 0..watchers {
        ready_rx.recv().await;
    }
    let started = Instant::now();
    for i in 0..updates {
        let patch = format!(r#"{{"metadata":{{"labels":{{"seq":"u-{i}"}}}}}}"#);
        let _ = sent[i].set(Instant::now());
        let (status, _) = conn
            .call(
                Method::PATCH,
                "/api/v1/namespaces/default/pods/target",
                "application/merge-patch+json",
                Bytes::from(patch),
            )
            .await?;
        anyhow::ensure!(status == StatusCode::OK, "patch answered {status}");
    }
    let update_secs = started.elapsed().as_secs_f64();
    let mut all: Vec<Duration> = Vec::with_capacity(watchers * updates);
    for t in tasks {
        match tokio::time::timeout(Duration::from_secs(120), t).await {
            Ok(r) => all.extend(r??),
            Err(_) => anyhow::bail!("a watcher did not receive every update within 120 s"),
        }
    }
    all.sort();
    report("watch-fanout", "watchers", watchers as f64, "watchers");
    report(
        "watch-fanout",
        "updates_per_second",
        updates as f64 / update_secs,
        "1/s",
    );
    report("watch-fanout", "deliveries", all.len() as f64, "events");
    report(
        "watch-fanout",
        "delivery_p50",
        percentile_ms(&all, 50.0),
        "ms",
    );
    report(
        "watch-fanout",
        "delivery_p99",
        percentile_ms(&all, 99.0),
        "ms",
    );
    Ok(())
}
