//! NetworkPolicy enforcement for this node's pods that have their own network namespace.
//!
//! One shared set of watches (reflectors of every Pod, Namespace and NetworkPolicy: peers are
//! pods anywhere in the cluster) feeds one loop; each change (bursts settle for 20 ms) and a
//! resync every 10 s recompute, for every pod bound here whose sandbox is ready, what the
//! policies allow it ([`apimachinery::network_policy::evaluate`]) and the nftables script that
//! says so ([`super::nftables::script`]). A script that differs from the one last applied in
//! that network namespace is applied there with `nsenter --net=PATH nft -f -`, atomically. The
//! namespace's path comes from the runtime through CRI: a verbose `PodSandboxStatus` answers it
//! in `info` (containerd's CRI plugin does, and so does gitplane's process runtime); a sandbox
//! without one (host network) is skipped. Without `nft` on the host, a pod that a policy
//! isolates gets a warning in the agent's log once, and nothing is enforced.
//!
//! States: *syncing* (the three watches have not listed yet; nothing is applied), then
//! *enforcing*.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use apimachinery::network_policy::{Cidr, Cluster, evaluate};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use kube::runtime::reflector::Store;
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::labels;
use super::nftables;
use crate::proxy::reflect;
use crate::runtime::{Cri, api};

/// Runs until `stop`: enforces policies for the pods of `node` (whose pod CIDR is `pod_cidr`,
/// its first address the node as pods see it).
pub(super) async fn run(
    client: kube::Client,
    cri: Cri,
    node: String,
    pod_cidr: String,
    stop: CancellationToken,
) {
    let changed = Arc::new(Notify::new());
    let (pods, pod_task) = reflect(Api::<Pod>::all(client.clone()), changed.clone());
    let (namespaces, ns_task) = reflect(Api::<Namespace>::all(client.clone()), changed.clone());
    let (policies, pol_task) = reflect(Api::<NetworkPolicy>::all(client), changed.clone());
    let mut enforcer = Enforcer {
        cri,
        node,
        gateway: gateway(&pod_cidr).into_iter().collect(),
        nft: nft_available().await,
        applied: HashMap::new(),
        netns: HashMap::new(),
        reported: HashMap::new(),
    };
    tokio::select! {
        _ = async {
            let _ = tokio::join!(
                pods.wait_until_ready(),
                namespaces.wait_until_ready(),
                policies.wait_until_ready()
            );
        } => {
            loop {
                enforcer.reconcile(&pods, &namespaces, &policies).await;
                tokio::select! {
                    _ = changed.notified() => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                    _ = stop.cancelled() => break,
                }
            }
        }
        _ = stop.cancelled() => {}
    }
    pod_task.abort();
    ns_task.abort();
    pol_task.abort();
}

/// The node's address on the pod network: the first address of the pod CIDR (the bridge's,
/// and the pods' gateway, for the process runtime and CNI's bridge plugin alike).
fn gateway(pod_cidr: &str) -> Option<IpAddr> {
    match Cidr::parse(pod_cidr)?.addr {
        IpAddr::V4(a) => Some(IpAddr::V4((a.to_bits() + 1).into())),
        IpAddr::V6(a) => Some(IpAddr::V6((a.to_bits() + 1).into())),
    }
}

async fn nft_available() -> bool {
    tokio::process::Command::new("nft")
        .arg("--version")
        .output()
        .await
        .is_ok_and(|o| o.status.success())
}

/// The network namespace's path in a verbose `PodSandboxStatus`'s `info`, where containerd
/// puts the OCI runtime spec: `runtimeSpec.linux.namespaces[type=network].path`.
fn netns_from_info(info: &HashMap<String, String>) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(info.get("info")?).ok()?;
    v.pointer("/runtimeSpec/linux/namespaces")?
        .as_array()?
        .iter()
        .find(|n| n["type"] == "network")?
        .get("path")?
        .as_str()
        .filter(|p| !p.is_empty())
        .map(str::to_string)
}

struct Enforcer {
    cri: Cri,
    node: String,
    gateway: Vec<IpAddr>,
    nft: bool,
    /// The script last applied, by network namespace path.
    applied: HashMap<String, String>,
    /// Network namespace paths by sandbox id (`None`: the sandbox has none).
    netns: HashMap<String, Option<String>>,
    /// The last problem reported per pod, so each is logged once.
    reported: HashMap<String, String>,
}

impl Enforcer {
    async fn reconcile(
        &mut self,
        pods: &Store<Pod>,
        namespaces: &Store<Namespace>,
        policies: &Store<NetworkPolicy>,
    ) {
        let pods = pods.state();
        let pod_refs: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
        let namespaces = namespaces.state();
        let ns_refs: Vec<&Namespace> = namespaces.iter().map(|n| n.as_ref()).collect();
        let policies = policies.state();
        let policy_refs: Vec<&NetworkPolicy> = policies.iter().map(|p| p.as_ref()).collect();
        let cluster = Cluster::new(&pod_refs, &ns_refs);
        let local: Vec<&Pod> = pod_refs
            .iter()
            .copied()
            .filter(|p| {
                p.spec.as_ref().is_some_and(|s| {
                    s.node_name.as_deref() == Some(self.node.as_str())
                        && s.host_network != Some(true)
                })
            })
            .collect();
        if local.is_empty() && self.applied.is_empty() {
            return;
        }
        let Some(sandboxes) = self.sandboxes().await else {
            return;
        };
        let mut live = HashSet::new();
        for pod in local {
            let uid = pod.metadata.uid.as_deref().unwrap_or_default();
            let Some(sandbox) = sandboxes.get(uid) else {
                continue;
            };
            let Some(netns) = self.netns_of(sandbox).await else {
                continue;
            };
            live.insert(netns.clone());
            let policy = evaluate(pod, &policy_refs, &cluster);
            let name = format!(
                "{}/{}",
                pod.metadata.namespace.as_deref().unwrap_or_default(),
                pod.metadata.name.as_deref().unwrap_or_default()
            );
            if !self.nft {
                if policy.isolated() {
                    self.report(
                        &name,
                        "a NetworkPolicy selects it but nft is not installed (apt-get install \
                         nftables): not enforced",
                    );
                }
                continue;
            }
            let script = nftables::script(&policy, &self.gateway);
            if self.applied.get(&netns) == Some(&script) {
                continue;
            }
            match apply(&netns, &script).await {
                Ok(()) => {
                    tracing::debug!(pod = %name, isolated = policy.isolated(), "network policy applied");
                    self.reported.remove(&name);
                    self.applied.insert(netns, script);
                }
                Err(e) => self.report(&name, &format!("cannot apply its network policy: {e}")),
            }
        }
        self.applied.retain(|n, _| live.contains(n));
        let current: HashSet<&String> = sandboxes.values().collect();
        self.netns.retain(|id, _| current.contains(id));
    }

    fn report(&mut self, pod: &str, problem: &str) {
        if self.reported.get(pod).map(String::as_str) != Some(problem) {
            tracing::warn!(pod, "{problem}");
            self.reported.insert(pod.to_string(), problem.to_string());
        }
    }

    /// Ready sandboxes by pod uid (the newest when there are several).
    async fn sandboxes(&self) -> Option<HashMap<String, String>> {
        let filter = api::PodSandboxFilter {
            state: Some(api::PodSandboxStateValue {
                state: api::PodSandboxState::SandboxReady as i32,
            }),
            ..Default::default()
        };
        let mut items = self
            .cri
            .runtime
            .clone()
            .list_pod_sandbox(api::ListPodSandboxRequest {
                filter: Some(filter),
            })
            .await
            .inspect_err(|e| tracing::debug!(error = %e, "cannot list sandboxes"))
            .ok()?
            .into_inner()
            .items;
        items.sort_by_key(|s| s.created_at);
        Some(
            items
                .into_iter()
                .filter_map(|s| Some((s.labels.get(labels::POD_UID)?.clone(), s.id)))
                .collect(),
        )
    }

    async fn netns_of(&mut self, sandbox: &str) -> Option<String> {
        if let Some(known) = self.netns.get(sandbox) {
            return known.clone();
        }
        let status = self
            .cri
            .runtime
            .clone()
            .pod_sandbox_status(api::PodSandboxStatusRequest {
                pod_sandbox_id: sandbox.to_string(),
                verbose: true,
            })
            .await
            .ok()?
            .into_inner();
        let netns = netns_from_info(&status.info);
        self.netns.insert(sandbox.to_string(), netns.clone());
        netns
    }
}

/// Runs `script` through `nft -f -` inside the network namespace at `netns`.
async fn apply(netns: &str, script: &str) -> Result<(), String> {
    let mut child = tokio::process::Command::new("nsenter")
        .arg(format!("--net={netns}"))
        .args(["nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("nsenter: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .await
            .map_err(|e| format!("nft: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft -f: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(info: &str, expected: Option<&str>) {
        let map: HashMap<String, String> = [("info".to_string(), info.to_string())].into();
        assert_eq!(netns_from_info(&map).as_deref(), expected, "{info}");
    }

    #[test]
    fn the_network_namespace_is_read_from_the_runtime_spec_in_the_sandbox_info() {
        check(
            r#"{"runtimeSpec":{"linux":{"namespaces":[{"type":"pid"},
                {"type":"network","path":"/var/run/netns/cni-1"}]}}}"#,
            Some("/var/run/netns/cni-1"),
        );
        // Host network: no network namespace entry.
        check(
            r#"{"runtimeSpec":{"linux":{"namespaces":[{"type":"pid"}]}}}"#,
            None,
        );
        check("not json", None);
        assert_eq!(netns_from_info(&HashMap::new()), None);
        assert_eq!(
            gateway("10.88.7.0/24"),
            Some("10.88.7.1".parse().expect("ip"))
        );
    }
}
