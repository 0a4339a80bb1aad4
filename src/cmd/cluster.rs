//! `gitplane cluster add|list|remove`: the clusters Applications may be synced into, kept as
//! Secrets in the hub's `gitplane-system` (Argo CD's layout, `apimachinery::fleet`).
//!
//! `add NAME --kubeconfig FILE [--context C]` does what `argocd cluster add` does: in the target
//! cluster it creates the ServiceAccount `kube-system/gitplane-manager` bound to `cluster-admin`
//! and asks a token for it (TokenRequest, one year), then stores the server, the token and the
//! server's CA in the hub. `--no-service-account` stores the kubeconfig's own credentials
//! instead (the target's RBAC then decides with that identity). A target still starting (its
//! kubeconfig not written yet, its server not answering) is waited for up to [`START_WAIT`], so
//! `gitplane apiserver … & gitplane cluster add …` works pasted as one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use apimachinery::fleet::{self, LABEL_SECRET_TYPE, SECRET_TYPE_CLUSTER};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, DeleteParams, PostParams};
use reconciler::gitops::destinations;
use serde_json::{Value, json};

use super::connect::ClientArgs;

/// The ServiceAccount `cluster add` creates in the target.
const MANAGER: &str = "gitplane-manager";
/// Its namespace.
const MANAGER_NAMESPACE: &str = "kube-system";

/// How long `add` waits for a target that is still starting.
const START_WAIT: Duration = Duration::from_secs(30);

/// Flags of `gitplane cluster`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Registers a cluster (a Secret in the hub's gitplane-system).
    Add(AddArgs),
    /// Lists the registered clusters.
    List(ClientArgs),
    /// Removes a registered cluster (its Secret; nothing in the cluster is touched).
    Remove {
        /// The cluster's name.
        name: String,
        #[command(flatten)]
        kube: ClientArgs,
    },
}

#[derive(clap::Args, Debug)]
struct AddArgs {
    /// The name Applications give in `spec.destination.name`.
    name: String,
    /// The target cluster's kubeconfig.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// The kubeconfig's context (default: its current context).
    #[arg(long)]
    context: Option<String>,
    /// The server URL to store (default: the context's server).
    #[arg(long)]
    server: Option<String>,
    /// Store the kubeconfig's own credentials rather than creating a ServiceAccount.
    #[arg(long)]
    no_service_account: bool,
    /// Labels of the cluster (`key=value`, repeatable), for the ApplicationSet `clusters`
    /// generator's selectors.
    #[arg(long = "label")]
    labels: Vec<String>,
    /// The hub's kubeconfig (where the Secret is stored).
    #[arg(long, default_value = ".gitplane/kubeconfig")]
    hub_kubeconfig: PathBuf,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<u8> {
    super::server::block_on(async move {
        match args.command {
            Command::Add(a) => add(a).await,
            Command::List(kube) => list(kube).await,
            Command::Remove { name, kube } => remove(&name, kube).await,
        }
    })?
}

/// The target's kubeconfig text and client config, once the file exists and its server
/// answers; a missing file or an unanswered call is retried for [`START_WAIT`] (the target may
/// have been started a moment ago), anything else fails at once.
async fn started_target(
    path: &Path,
    context: Option<String>,
) -> anyhow::Result<(String, kube::Config)> {
    let deadline = Instant::now() + START_WAIT;
    let mut told = false;
    loop {
        let waiting = match std::fs::read_to_string(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                anyhow::anyhow!("cannot read the kubeconfig {}: {e}", path.display())
            }
            Err(e) => anyhow::bail!("cannot read the kubeconfig {}: {e}", path.display()),
            Ok(text) => {
                let kubeconfig = kube::config::Kubeconfig::from_yaml(&text)
                    .with_context(|| format!("{}: not a kubeconfig", path.display()))?;
                let options = kube::config::KubeConfigOptions {
                    context: context.clone(),
                    ..Default::default()
                };
                let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .with_context(|| format!("{}: unusable kubeconfig", path.display()))?;
                let client = kube::Client::try_from(config.clone())
                    .context("cannot build a client for the target")?;
                match client.apiserver_version().await {
                    Ok(_) => return Ok((text, config)),
                    Err(e @ kube::Error::Api(_)) => {
                        return Err(e).with_context(|| format!("{}", config.cluster_url));
                    }
                    Err(e) => anyhow::anyhow!(
                        "{} does not answer: {}",
                        config.cluster_url,
                        reconciler::gitops::cluster::chain(&e)
                    ),
                }
            }
        };
        if Instant::now() >= deadline {
            return Err(waiting);
        }
        if !told {
            eprintln!("waiting for the target to start ({waiting})");
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The Secret name of the cluster `name`.
fn secret_name(name: &str) -> String {
    format!("cluster-{name}")
}

async fn add(args: AddArgs) -> anyhow::Result<u8> {
    let invalid = apimachinery::validation::dns1123_subdomain(&args.name);
    if !invalid.is_empty() {
        anyhow::bail!("cluster name {:?}: {}", args.name, invalid.join("; "));
    }
    let mut labels = BTreeMap::new();
    for l in &args.labels {
        let (k, v) = l
            .split_once('=')
            .with_context(|| format!("--label {l:?}: expected key=value"))?;
        labels.insert(k.to_string(), v.to_string());
    }
    let (text, config) = started_target(&args.kubeconfig, args.context.clone()).await?;
    let server = args
        .server
        .clone()
        .unwrap_or_else(|| config.cluster_url.to_string())
        .trim_end_matches('/')
        .to_string();
    let ca_pem = config
        .root_cert
        .as_ref()
        .and_then(|certs| certs.first())
        .map(|der| pem("CERTIFICATE", der))
        .unwrap_or_default();
    let mut secret = if args.no_service_account {
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": secret_name(&args.name), "namespace": fleet::NAMESPACE,
                         "labels": {LABEL_SECRET_TYPE: SECRET_TYPE_CLUSTER}},
            "type": "Opaque",
            "stringData": {"name": args.name, "server": server, "kubeconfig": text,
                           "context": args.context.clone().unwrap_or_default()},
        })
    } else {
        let target =
            kube::Client::try_from(config).context("cannot build a client for the target")?;
        let token = manager_token(&target)
            .await
            .with_context(|| format!("creating {MANAGER_NAMESPACE}/{MANAGER} in {server}"))?;
        fleet::cluster_secret(
            &secret_name(&args.name),
            &args.name,
            &server,
            &token,
            &ca_pem,
        )
    };
    for (k, v) in labels {
        secret["metadata"]["labels"][k] = json!(v);
    }
    let hub = ClientArgs {
        kubeconfig: args.hub_kubeconfig.clone(),
    }
    .client()
    .await?;
    ensure_namespace(&hub, fleet::NAMESPACE).await?;
    let secrets: Api<Secret> = Api::namespaced(hub, fleet::NAMESPACE);
    let name = secret_name(&args.name);
    let typed: Secret = serde_json::from_value(secret)?;
    let stored = match secrets.create(&PostParams::default(), &typed).await {
        Err(kube::Error::Api(s)) if s.code == 409 => {
            // Registered before: replaced whole (new credentials, labels).
            let mut typed = typed;
            typed.metadata.resource_version = secrets.get(&name).await?.metadata.resource_version;
            secrets.replace(&name, &PostParams::default(), &typed).await
        }
        other => other,
    };
    stored.with_context(|| format!("storing secret {}/{name}", fleet::NAMESPACE))?;
    println!("cluster {:?} ({server}) registered", args.name);
    Ok(0)
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or(""))
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

async fn ensure_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating namespace {name}")),
    }
}

/// Creates the manager ServiceAccount bound to `cluster-admin` in the target (kept when it is
/// there) and returns a token for it.
async fn manager_token(target: &kube::Client) -> anyhow::Result<String> {
    let create = |e: kube::Error| match e {
        kube::Error::Api(s) if s.code == 409 => Ok(()),
        e => Err(e),
    };
    let sas: Api<ServiceAccount> = Api::namespaced(target.clone(), MANAGER_NAMESPACE);
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": MANAGER}}))?;
    sas.create(&PostParams::default(), &sa)
        .await
        .map(drop)
        .or_else(create)
        .context("creating the ServiceAccount")?;
    let bindings: Api<ClusterRoleBinding> = Api::all(target.clone());
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("{MANAGER}-role-binding")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": MANAGER,
                      "namespace": MANAGER_NAMESPACE}],
    }))?;
    bindings
        .create(&PostParams::default(), &binding)
        .await
        .map(drop)
        .or_else(create)
        .context("binding it to cluster-admin")?;
    let request = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": 365 * 24 * 3600},
    });
    let answer: Value = sas
        .create_subresource("token", MANAGER, &PostParams::default(), &request)
        .await
        .context("asking a token for it")?;
    answer
        .pointer("/status/token")
        .and_then(Value::as_str)
        .map(str::to_string)
        .context("the TokenRequest answered no token")
}

async fn list(kube: ClientArgs) -> anyhow::Result<u8> {
    let hub = kube.client().await?;
    let clusters = destinations::registered(&hub).await?;
    let mut rows = vec![[
        fleet::IN_CLUSTER_NAME.to_string(),
        fleet::IN_CLUSTER_SERVER.to_string(),
        "(local)".to_string(),
        String::new(),
    ]];
    for c in clusters {
        let labels: Vec<String> = c
            .secret
            .labels
            .iter()
            .filter(|(k, _)| k.as_str() != LABEL_SECRET_TYPE)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        rows.push([c.secret.name, c.server, c.secret.secret, labels.join(",")]);
    }
    super::apps::print_table(&["NAME", "SERVER", "SECRET", "LABELS"], &rows);
    Ok(0)
}

async fn remove(name: &str, kube: ClientArgs) -> anyhow::Result<u8> {
    let hub = kube.client().await?;
    let api: Api<Secret> = Api::namespaced(hub.clone(), fleet::NAMESPACE);
    let clusters = destinations::registered(&hub).await?;
    let Some(c) = clusters.iter().find(|c| c.secret.name == name) else {
        anyhow::bail!("cluster {name:?} is not registered (see gitplane cluster list)");
    };
    api.delete(&c.secret.secret, &DeleteParams::default())
        .await
        .with_context(|| format!("deleting secret {}/{}", fleet::NAMESPACE, c.secret.secret))?;
    println!("cluster {name:?} removed");
    Ok(0)
}
