//! `pod-startup-containerd`: 50 pods of one image, pulled before the clock starts, created at
//! once on one local node whose runtime is a containerd the scenario starts (as
//! `gitplane up --runtime containerd` does), with the scheduler running. Figure: creation
//! (request sent) → Running as seen by a watch, p50 and p99. The image and the sandbox image
//! come from a registry the caller names (scripts/build-test-image.sh builds both and pushes
//! them to a local `docker-registry`); the pods are deleted and containerd stopped at the end.

use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use node::runtime::api;
use reconciler::leader::Leadership;
use reconciler::scheduler;

use super::client::BenchServer;
use super::{percentile_ms, pods, report};
use crate::cmd::runtime::{ContainerdArgs, NetworkArgs, PodNetwork};

/// Runs the scenario with `image` (its entrypoint keeps running) on a containerd set up by
/// `containerd` (sandbox image, insecure registries).
pub async fn run(
    count: usize,
    clients: usize,
    image: &str,
    containerd: &ContainerdArgs,
) -> anyhow::Result<()> {
    let server = BenchServer::start().await?;
    let client = crate::cmd::connect::local_client(server.addr)?;
    let dir = tempfile::tempdir()?;
    let network = NetworkArgs {
        pod_network: PodNetwork::Auto,
        pod_cidr: None,
    };
    let node = crate::cmd::node::start_local(
        client.clone(),
        None,
        "bench-node",
        dir.path(),
        crate::cmd::node::LocalRuntime::Containerd(&network, containerd),
    )
    .await?;
    let cri = node::runtime::connect(
        &dir.path()
            .join("containerd/containerd.sock")
            .canonicalize()?,
        Duration::from_secs(10),
    )
    .await?;
    for pre in [image, containerd.sandbox_image.as_str()] {
        cri.images
            .clone()
            .pull_image(api::PullImageRequest {
                image: Some(api::ImageSpec {
                    image: pre.to_string(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .with_context(|| format!("pulling {pre} before the run"))?;
    }
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sched = tokio::spawn(scheduler::run(
        client.clone(),
        scheduler::Config::default(),
        Leadership::always(),
        async move {
            let _ = stop_rx.await;
        },
    ));
    let watch = pods::RunningWatch::start(client.clone(), count).await?;
    let sent = pods::create_running(
        server.addr,
        count,
        clients.min(count.max(1)),
        "10m",
        "16Mi",
        image,
        None,
    )
    .await?;
    let latencies = watch.latencies(&sent, Duration::from_secs(300)).await?;
    let s = "pod-startup-containerd";
    report(s, "pods_running", latencies.len() as f64, "pods");
    report(s, "startup_p50", percentile_ms(&latencies, 50.0), "ms");
    report(s, "startup_p99", percentile_ms(&latencies, 99.0), "ms");
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    api.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline && !api.list(&ListParams::default()).await?.items.is_empty() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop_tx.send(());
    sched.await??;
    node.shutdown().await;
    Ok(())
}
