//! `pod-startup-containerd`: 50 pods of one image, pulled before the clock starts, created at
//! once on one local node whose runtime is a containerd the scenario starts (as
//! `gitplane up --runtime containerd` does), with the scheduler running. Figure: creation
//! (request sent) → Running as seen by a watch, p50 and p99. The image and the sandbox image
//! come from a registry the caller names (scripts/build-test-image.sh builds both and pushes
//! them to a local `docker-registry`); the pods are deleted and containerd stopped at the end.

use std::time::Duration;

use anyhow::Context;
use node::runtime::api;
use reconciler::leader::Leadership;
use reconciler::scheduler;

use super::client::BenchServer;
use super::pods;
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
    pods::report_and_delete(
        "pod-startup-containerd",
        &latencies,
        &client,
        Duration::from_secs(120),
    )
    .await?;
    let _ = stop_tx.send(());
    sched.await??;
    node.shutdown().await;
    Ok(())
}
