//! `gitplane up`: the whole platform in one process.
//!
//! Start order: the API server (on the embedded store, or `--store etcd://…`), then, once it is
//! ready, the GitOps syncer (with its push webhook on the API address) and the ApplicationSet
//! controller, the scheduler, the
//! controllers (each with its own client), the service proxy and the nodes: by default one
//! local node (`--nodes N` for more) whose pods run as host processes (a process runtime and a
//! node agent each, data under `<data dir>/nodes/<name>/`), or with `--runtime simulated`
//! simulated nodes, or with `--runtime none` none. The syncer follows the Application `root`: on
//! `--repo` when given, otherwise on a playground repository seeded from `examples-repo/` in the
//! data dir on first start. Shutdown (Ctrl-C, SIGTERM): nodes first (their containers are
//! stopped), then the proxy, then the other components and the API server together.

use std::path::Path;

use anyhow::Context;
use kube::api::{Api, DynamicObject, PostParams};
use reconciler::gitops::{repo, syncer};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::connect;
use super::controller_manager::{self, ControllerManagerArgs};
use super::election::LeaderElectArgs;
use super::proxy::ProxyArgs;
use super::scheduler::{self, SchedulerArgs};
use super::server::{self, ServerArgs};
use super::simulate_nodes::NodeArgs;

/// The playground's files (`examples-repo/`), embedded.
pub(super) mod examples {
    include!(concat!(env!("OUT_DIR"), "/examples.rs"));
}

/// Node runtimes `up` can run in-process.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// No node (run `gitplane node` elsewhere).
    None,
    /// Local nodes whose containers are host processes (node agent + process runtime).
    Process,
    /// Simulated nodes (kwok-style): pods reach Running without processes.
    Simulated,
    /// Local nodes whose pods run in real containers from OCI images, through containerd's
    /// CRI plugin (a containerd started under `<data dir>/nodes/<name>/containerd`).
    Containerd,
}

/// Flags of `gitplane up`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    server: ServerArgs,
    /// Git repository for the Application `root` (local path, file://, https://, ssh://,
    /// git://). Default: a playground repository seeded from examples-repo/ in the data dir.
    #[arg(long)]
    repo: Option<String>,
    /// Directory inside the repository that `root` renders (default: `applications` in the
    /// playground, the repository root otherwise).
    #[arg(long)]
    path: Option<String>,
    /// File with the shared secret of the push webhook (`POST /webhooks/git` on the API
    /// address). Without it the webhook refuses every request.
    #[arg(long)]
    webhook_secret_file: Option<std::path::PathBuf>,
    /// The node runtime to run in this process.
    #[arg(long, value_enum, default_value_t = Runtime::Process)]
    runtime: Runtime,
    /// Number of nodes (process or simulated; 0 for none).
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Name of the (first) process node; others get `-1`, `-2`, … (default: the host name).
    #[arg(long)]
    node_name: Option<String>,
    #[command(flatten)]
    network: super::runtime::NetworkArgs,
    #[command(flatten)]
    containerd: super::runtime::ContainerdArgs,
    #[command(flatten)]
    node: NodeArgs,
    /// Do not run the scheduler in this process (run `gitplane scheduler` elsewhere).
    #[arg(long)]
    disable_scheduler: bool,
    #[command(flatten)]
    scheduler: SchedulerArgs,
    /// Leader election of the scheduler and the controllers (each on its own Lease).
    #[command(flatten)]
    election: LeaderElectArgs,
    /// Do not run the service proxy in this process.
    #[arg(long)]
    disable_proxy: bool,
    #[command(flatten)]
    proxy: ProxyArgs,
    /// Do not run the controllers in this process (run `gitplane controller-manager`
    /// elsewhere).
    #[arg(long)]
    disable_controllers: bool,
    #[command(flatten)]
    controller_manager: ControllerManagerArgs,
}

/// How long the simulated nodes, and the service proxy, may take to stop after a signal (a
/// local node bounds its agent with `node::AGENT_STOP`, then gives its containers their grace).
const NODES_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// How long the components other than the nodes may take to stop after a signal.
const SHUTDOWN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

/// Creates the Application `root` unless it exists.
async fn ensure_root(client: &kube::Client, repo_url: &str, path: &str) -> anyhow::Result<bool> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &syncer::application_resource());
    if api.get_opt("root").await?.is_some() {
        return Ok(false);
    }
    let app: DynamicObject = serde_json::from_value(json!({
        "apiVersion": apimachinery::application::API_VERSION,
        "kind": apimachinery::application::KIND,
        "metadata": {"name": "root"},
        "spec": {
            "source": {"repoURL": repo_url, "path": path},
            "destination": {"namespace": "default"},
            "syncPolicy": {"automated": {"prune": true, "selfHeal": true}},
        },
    }))?;
    api.create(&PostParams::default(), &app).await?;
    Ok(true)
}

/// Runs a start-up step against the API server again while it fails for a reason that passes
/// (the server's store unavailable, too many requests, a broken connection), waiting 0.1 s,
/// then twice as long up to 2 s: a store that goes away while `up` starts (etcd restarted)
/// delays the start instead of ending the process. Other errors end it, and so does Ctrl-C.
async fn retried<T, Step>(what: &str, mut step: impl FnMut() -> Step) -> anyhow::Result<T>
where
    Step: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut pause = std::time::Duration::from_millis(100);
    loop {
        match step().await {
            Ok(done) => return Ok(done),
            Err(e) if passes(&e) => {
                tracing::warn!(step = what, error = %e, "start-up step failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = server::shutdown_signal() => {
                        return Err(e.context(format!("stopped while creating {what}")));
                    }
                }
                pause = (pause * 2).min(std::time::Duration::from_secs(2));
            }
            Err(e) => return Err(e.context(format!("creating {what}"))),
        }
    }
}

/// Whether an API call failed for a reason that passes: a 5xx or 429 answer, or no answer.
fn passes(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|cause| match cause.downcast_ref::<kube::Error>() {
            Some(kube::Error::Api(status)) => status.code >= 500 || status.code == 429,
            Some(kube::Error::HyperError(_) | kube::Error::Service(_)) => true,
            _ => false,
        })
}

/// Runs the platform until Ctrl-C or SIGTERM.
pub fn run(args: Args) -> anyhow::Result<u8> {
    server::init_logging();
    // As an ordinary user this re-executes `up` inside rootlesskit and does not return.
    let rootless = crate::rootless::enter(&args.server.data_dir)?;
    let node_config = args.node.config(args.nodes)?;
    server::block_on(async move {
        let api = server::start(&args.server).await?;
        let kubeconfig = args.server.data_dir.join("kubeconfig");
        let address = api.local_addr();
        let components = connect::Components::local(address, &args.server.data_dir)?;
        let client = components.client("gitops-syncer")?;
        // One stop signal for the components below the nodes; their tasks are joined, within
        // a deadline, in the order below.
        let stop = CancellationToken::new();
        let stopped = || stop.clone().cancelled_owned();

        let syncer =
            syncer::Syncer::new(client.clone(), syncer::Config::new(&args.server.data_dir));
        let secret = match &args.webhook_secret_file {
            Some(f) => Some(
                std::fs::read(f)
                    .with_context(|| format!("reading the webhook secret {}", f.display()))?
                    .trim_ascii()
                    .to_vec(),
            ),
            None => None,
        };
        let webhook = reconciler::gitops::webhook::router(syncer.webhook(secret));
        let callers = components.clone();
        let review =
            reconciler::gitops::review_endpoint::router(std::sync::Arc::new(move |token: &str| {
                Ok(callers.client_with_token(token, "console-review")?)
            }));
        let server_task = tokio::spawn(api.serve_with(webhook.merge(review), stopped()));

        let (repo_url, path, seeded) = match &args.repo {
            Some(r) => (r.clone(), args.path.clone().unwrap_or_default(), false),
            None => {
                let playground = std::fs::canonicalize(&args.server.data_dir)
                    .with_context(|| format!("data dir {}", args.server.data_dir.display()))?
                    .join("repo");
                let seeded = repo::seed(
                    &playground,
                    examples::FILES,
                    "Seed the gitplane playground from examples-repo",
                )?;
                let path = args.path.clone().unwrap_or_else(|| "applications".into());
                (playground.to_string_lossy().into_owned(), path, seeded)
            }
        };
        retried("the root Application", || {
            ensure_root(&client, &repo_url, &path)
        })
        .await?;
        retried("the console's account", || {
            super::console::ensure_account(&client)
        })
        .await?;
        let sync_task = tokio::spawn(syncer.run(stopped()));
        let notify_task = tokio::spawn(reconciler::gitops::notifications::Notifier::run(
            client.clone(),
            stopped(),
        ));
        let appset_task = tokio::spawn(reconciler::gitops::applicationset::run(
            client.clone(),
            args.server.data_dir.join("applicationsets"),
            stopped(),
        ));

        let scheduler_task = (!args.disable_scheduler).then(|| {
            let client = components.client("scheduler");
            let (sched, election, stop) =
                (args.scheduler.clone(), args.election.clone(), stop.clone());
            tokio::spawn(async move { scheduler::run_with(client?, &sched, &election, stop).await })
        });
        let controllers_task = if args.disable_controllers {
            None
        } else {
            let client = components.client("controller-manager")?;
            let each = components.clone();
            let clients: reconciler::controllers::Clients =
                std::sync::Arc::new(move |identity: &str| Ok(each.client(identity)?));
            let mut cm = args.controller_manager.clone();
            // The cluster CA `up` generated is the root CA pods trust (`kube-root-ca.crt`).
            let generated_ca = crate::cmd::security::pki_dir(&args.server.data_dir).join("ca.crt");
            if cm.root_ca_file.is_none() && generated_ca.is_file() {
                cm.root_ca_file = Some(generated_ca);
            }
            let (cm, election, stop) = (cm, args.election.clone(), stop.clone());
            Some(tokio::spawn(async move {
                controller_manager::run_with(client, clients, &cm, &election, stop).await
            }))
        };
        let nodes = match args.runtime {
            Runtime::Simulated if args.nodes > 0 => {
                let client = components.client("simulated-nodes")?;
                Some(node::simulated::SimulatedNodes::start(client, node_config).await?)
            }
            _ => None,
        };
        let proxy = if args.disable_proxy {
            None
        } else {
            let loopback = args.server.service_cluster_ip_range.is_loopback();
            let config = args.proxy.config(Some(loopback));
            let client = components.client("service-proxy")?;
            Some(node::proxy::ServiceProxy::start(client, config))
        };
        let (mut local_nodes, mut local_names) = (Vec::new(), Vec::new());
        let local = match args.runtime {
            Runtime::Process => Some(super::node::LocalRuntime::Process(&args.network)),
            Runtime::Containerd => Some(super::node::LocalRuntime::Containerd(
                &args.network,
                &args.containerd,
            )),
            Runtime::None | Runtime::Simulated => None,
        };
        if let Some(local) = local {
            let base = args
                .node_name
                .clone()
                .unwrap_or_else(super::node::host_name);
            for i in 0..args.nodes {
                let name = if i == 0 {
                    base.clone()
                } else {
                    format!("{base}-{i}")
                };
                let client = components.client(&format!("node-{name}"))?;
                let dir = args.server.data_dir.join("nodes").join(&name);
                local_nodes.push(
                    super::node::start_local(client, Some(components.ca_pem()), &name, &dir, local)
                        .await?,
                );
                local_names.push(name);
            }
        }
        let rootless_task = rootless
            .start(
                &components,
                address,
                &args.proxy.proxy_addresses,
                local_names,
                stopped(),
            )
            .await?;
        print_welcome(address, &kubeconfig, &repo_url, seeded);
        super::console::print_welcome(address, &kubeconfig);

        server::shutdown_signal().await;
        // Nodes and the proxy first, each within a deadline: their last API calls may hang on
        // a store that is gone. A local node stops its containers whatever its agent does.
        if let Some(nodes) = nodes
            && tokio::time::timeout(NODES_DEADLINE, nodes.shutdown())
                .await
                .is_err()
        {
            tracing::warn!(
                "the simulated nodes did not stop within {} s",
                NODES_DEADLINE.as_secs()
            );
        }
        if let Some(proxy) = proxy
            && tokio::time::timeout(NODES_DEADLINE, proxy.shutdown())
                .await
                .is_err()
        {
            tracing::warn!(
                "the service proxy did not stop within {} s",
                NODES_DEADLINE.as_secs()
            );
        }
        futures::future::join_all(local_nodes.into_iter().map(|n| n.shutdown())).await;
        stop.cancel();
        // The components get a deadline: a stop that hangs must not keep the process alive.
        let pending = std::sync::Mutex::new("the scheduler");
        let rest = async {
            if let Some(t) = scheduler_task {
                t.await??;
            }
            *pending.lock().unwrap_or_else(|p| p.into_inner()) = "the controllers";
            if let Some(t) = controllers_task {
                t.await??;
            }
            *pending.lock().unwrap_or_else(|p| p.into_inner()) = "the syncer";
            let _ = sync_task.await;
            let _ = notify_task.await;
            let _ = appset_task.await;
            if let Some(t) = rootless_task {
                t.await??;
            }
            *pending.lock().unwrap_or_else(|p| p.into_inner()) = "the API server";
            server_task.await.context("API server task")??;
            anyhow::Ok(())
        };
        match tokio::time::timeout(SHUTDOWN_DEADLINE, rest).await {
            Ok(result) => result?,
            Err(_) => {
                let step = *pending.lock().unwrap_or_else(|p| p.into_inner());
                tracing::error!(
                    "{step} did not stop within {} s; exiting anyway",
                    SHUTDOWN_DEADLINE.as_secs()
                );
                // Not a return: dropping the runtime would wait for the hung task.
                std::process::exit(1);
            }
        }
        tracing::info!("gitplane stopped");
        Ok(0)
    })?
}

fn print_welcome(address: std::net::SocketAddr, kubeconfig: &Path, repo: &str, seeded: bool) {
    eprintln!("gitplane is up on https://{address}");
    eprintln!(
        "  kubectl --kubeconfig {} get applications",
        kubeconfig.display()
    );
    eprintln!("  gitplane apps --kubeconfig {}", kubeconfig.display());
    if seeded {
        eprintln!("A playground repository was created at {repo}. Try:");
        eprintln!(
            "  cd {repo} && sed -i 's/replicas: 2/replicas: 3/' apps/hello/values.yaml && git commit -am 'Scale hello'"
        );
        eprintln!(
            "and watch the change roll out: kubectl --kubeconfig {} get deploy -A -w",
            kubeconfig.display()
        );
    } else {
        eprintln!("Syncing the Application root from {repo}.");
    }
}
