//! Simulated nodes: one process hosts any number of Nodes, like kwok. Each node is registered
//! with its capacity, renews a Lease in `kube-node-lease` (renewals batched over the interval,
//! so thousands of nodes cost a steady trickle of small writes), and moves the pods bound to it
//! from Pending to Running after a start-up latency; a pod being deleted is removed once its
//! grace period is over. Failures can be injected: a node stops heartbeating, a pod fails.
//!
//! Addresses are data only, never contacted: nodes get `127.1.x.y`, pods `127.2.x.y` and up,
//! loopback addresses so that nothing could ever send traffic off the machine by mistake.
//!
//! [`SimulatedNodes::start`] registers the nodes and starts two tasks: `heartbeat` (Lease
//! renewals) and `pods` (the pod lifecycle state machine).

mod heartbeat;
mod pods;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, NodeSpec, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What the nodes look like and how they behave.
#[derive(Clone, Debug)]
pub struct Config {
    /// How many nodes.
    pub count: usize,
    /// Node names are this prefix and an index (`sim-node-0`, …).
    pub name_prefix: String,
    /// CPU capacity of each node (a Kubernetes quantity).
    pub cpu: String,
    /// Memory capacity of each node.
    pub memory: String,
    /// Pod capacity of each node.
    pub pods: u32,
    /// Extra labels on every node.
    pub labels: BTreeMap<String, String>,
    /// Taints on every node.
    pub taints: Vec<Taint>,
    /// Time from binding to Running.
    pub startup_latency: Duration,
    /// `leaseDurationSeconds` of the node Leases (kubelet: 40 s).
    pub lease_duration: Duration,
    /// Every Lease is renewed once per interval (kubelet: a quarter of the duration).
    pub renew_interval: Duration,
    /// Writes in flight at once (registration, statuses, deletions).
    pub concurrency: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            count: 1,
            name_prefix: "sim-node-".into(),
            cpu: "4".into(),
            memory: "16Gi".into(),
            pods: 110,
            labels: BTreeMap::new(),
            taints: Vec::new(),
            startup_latency: Duration::ZERO,
            lease_duration: Duration::from_secs(40),
            renew_interval: Duration::from_secs(10),
            concurrency: 32,
        }
    }
}

/// Errors of simulated nodes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Registering a node (or its Lease) failed.
    #[error("cannot register node {node}: {source}")]
    Register {
        /// The node.
        node: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// A taint is not `key[=value]:Effect`.
    #[error("invalid taint {0:?}: expected key[=value]:NoSchedule|PreferNoSchedule|NoExecute")]
    Taint(String),
    /// A label is not `key=value`.
    #[error("invalid label {0:?}: expected key=value")]
    Label(String),
}

/// Parses `key=value,key2=value2`.
pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, Error> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            p.split_once('=')
                .filter(|(k, _)| !k.trim().is_empty())
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| Error::Label(p.to_string()))
        })
        .collect()
}

/// Parses `key[=value]:Effect,…` as kubectl taint does.
pub fn parse_taints(s: &str) -> Result<Vec<Taint>, Error> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (kv, effect) = p.rsplit_once(':').ok_or_else(|| Error::Taint(p.into()))?;
            if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
                return Err(Error::Taint(p.into()));
            }
            let (key, value) = match kv.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (kv, None),
            };
            if key.is_empty() {
                return Err(Error::Taint(p.into()));
            }
            Ok(Taint {
                key: key.into(),
                value,
                effect: effect.into(),
                time_added: None,
            })
        })
        .collect()
}

/// A node this process simulates.
#[derive(Clone, Debug)]
pub(crate) struct SimNode {
    pub(crate) name: String,
    pub(crate) ip: String,
}

/// Commands to the pod task.
#[derive(Debug)]
pub(crate) enum Command {
    FailPod { namespace: String, name: String },
}

/// Running simulated nodes; the tasks stop when this is dropped or shut down.
pub struct SimulatedNodes {
    names: Vec<String>,
    stopped: Arc<Mutex<HashSet<String>>>,
    commands: mpsc::UnboundedSender<Command>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

/// The annotation that makes a simulated pod fail instead of running (`gitplane.io/simulate:
/// fail`), and, on a node, that stops its heartbeat (`gitplane.io/simulate: stop-heartbeat`).
pub const SIMULATE_ANNOTATION: &str = "gitplane.io/simulate";

fn node_ip(i: usize) -> String {
    format!("127.1.{}.{}", (i / 250) % 250, i % 250 + 1)
}

impl SimulatedNodes {
    /// Registers the nodes and starts simulating them.
    pub async fn start(client: Client, config: Config) -> Result<SimulatedNodes, Error> {
        let nodes: Vec<SimNode> = (0..config.count)
            .map(|i| SimNode {
                name: format!("{}{i}", config.name_prefix),
                ip: node_ip(i),
            })
            .collect();
        let results: Vec<Result<(), Error>> = futures::stream::iter(nodes.iter().cloned())
            .map(|n| register(client.clone(), &config, n))
            .buffer_unordered(config.concurrency.max(1))
            .collect()
            .await;
        results.into_iter().collect::<Result<Vec<()>, Error>>()?;
        tracing::info!(count = nodes.len(), prefix = %config.name_prefix, "simulated nodes registered");
        let stopped = Arc::new(Mutex::new(HashSet::new()));
        let stop = CancellationToken::new();
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let tasks = TaskTracker::new();
        tasks.spawn(heartbeat::run(
            client.clone(),
            config.clone(),
            nodes.iter().map(|n| n.name.clone()).collect(),
            stopped.clone(),
            stop.clone(),
        ));
        tasks.spawn(pods::run(
            client,
            config,
            nodes.clone(),
            commands_rx,
            stop.clone(),
        ));
        tasks.close();
        Ok(SimulatedNodes {
            names: nodes.into_iter().map(|n| n.name).collect(),
            stopped,
            commands,
            stop,
            tasks,
        })
    }

    /// The node names.
    pub fn node_names(&self) -> &[String] {
        &self.names
    }

    /// Stops renewing a node's Lease, as a node that died would.
    pub fn stop_heartbeat(&self, node: &str) {
        if let Ok(mut s) = self.stopped.lock() {
            s.insert(node.to_string());
        }
    }

    /// Resumes renewing a node's Lease.
    pub fn resume_heartbeat(&self, node: &str) {
        if let Ok(mut s) = self.stopped.lock() {
            s.remove(node);
        }
    }

    /// Makes a pod on one of these nodes fail (phase Failed, its containers exited with 1).
    pub fn fail_pod(&self, namespace: &str, name: &str) {
        let _ = self.commands.send(Command::FailPod {
            namespace: namespace.into(),
            name: name.into(),
        });
    }

    /// Stops the simulation (the Node objects stay, as a stopped kubelet's do).
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.tasks.wait().await;
    }
}

impl Drop for SimulatedNodes {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn now_micro() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

/// The conditions of a healthy node, stamped now (posted at registration, and again when a
/// node whose heartbeat resumes finds itself marked not Ready, as a kubelet does).
pub(crate) fn healthy_conditions() -> serde_json::Value {
    let now = jiff::Timestamp::now().to_string();
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    json!([
        condition(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available"
        ),
        condition(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure"
        ),
        condition(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available"
        ),
        condition(
            "Ready",
            "True",
            "KubeletReady",
            "simulated kubelet is posting ready status"
        ),
    ])
}

async fn register(client: Client, config: &Config, node: SimNode) -> Result<(), Error> {
    let err = |source| Error::Register {
        node: node.name.clone(),
        source,
    };
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), node.name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), "amd64".to_string()),
        ("type".to_string(), "gitplane-simulated".to_string()),
    ]);
    labels.extend(config.labels.clone());
    let nodes: Api<Node> = Api::all(client.clone());
    let object = Node {
        metadata: ObjectMeta {
            name: Some(node.name.clone()),
            labels: Some(labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            taints: (!config.taints.is_empty()).then(|| config.taints.clone()),
            ..NodeSpec::default()
        }),
        status: None,
    };
    let created = match nodes.create(&PostParams::default(), &object).await {
        Ok(n) => n,
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let patch = json!({"metadata": {"labels": labels}, "spec": {"taints": config.taints}});
            nodes
                .patch(&node.name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map_err(err)?
        }
        Err(e) => return Err(err(e)),
    };
    let resources = json!({"cpu": config.cpu, "memory": config.memory,
        "pods": config.pods.to_string(), "ephemeral-storage": "100Gi"});
    let status = json!({"status": {
        "capacity": resources,
        "allocatable": resources,
        "phase": "Running",
        "conditions": healthy_conditions(),
        "addresses": [{"type": "InternalIP", "address": node.ip}, {"type": "Hostname", "address": node.name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": node.name, "systemUUID": node.name, "bootID": node.name,
            "kernelVersion": "simulated", "osImage": "gitplane simulated node",
            "containerRuntimeVersion": "simulated://1", "kubeletVersion": "v1.32.0-gitplane",
            "kubeProxyVersion": "v1.32.0-gitplane", "operatingSystem": "linux", "architecture": "amd64"
        }
    }});
    nodes
        .patch_status(&node.name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .map_err(err)?;
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(node.name.clone()),
            namespace: Some("kube-node-lease".into()),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: node.name.clone(),
                uid: created.metadata.uid.clone().unwrap_or_default(),
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node.name.clone()),
            lease_duration_seconds: Some(config.lease_duration.as_secs().max(1) as i32),
            renew_time: Some(now_micro()),
            ..LeaseSpec::default()
        }),
    };
    match leases.create(&PostParams::default(), &lease).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A taint as (key, value, effect).
    type Parts<'a> = (&'a str, Option<&'a str>, &'a str);

    fn check_taints(input: &str, expected: Result<Vec<Parts<'_>>, ()>) {
        let got = parse_taints(input)
            .map(|v| {
                v.into_iter()
                    .map(|t| (t.key, t.value, t.effect))
                    .collect::<Vec<_>>()
            })
            .map_err(|_| ());
        let expected = expected.map(|v| {
            v.into_iter()
                .map(|(k, v, e)| (k.to_string(), v.map(str::to_string), e.to_string()))
                .collect::<Vec<_>>()
        });
        assert_eq!(got, expected, "{input}");
    }

    #[test]
    fn taints_parse_like_kubectl_taint() {
        check_taints(
            "gpu=true:NoSchedule",
            Ok(vec![("gpu", Some("true"), "NoSchedule")]),
        );
        check_taints(
            "a:PreferNoSchedule,b=1:NoExecute",
            Ok(vec![
                ("a", None, "PreferNoSchedule"),
                ("b", Some("1"), "NoExecute"),
            ]),
        );
        check_taints("", Ok(vec![]));
        check_taints("gpu=true", Err(()));
        check_taints("gpu:Sometimes", Err(()));
        check_taints(":NoSchedule", Err(()));
    }

    #[test]
    fn labels_parse_as_pairs() {
        assert_eq!(
            parse_labels("zone=a, disk=ssd").unwrap(),
            BTreeMap::from([("zone".into(), "a".into()), ("disk".into(), "ssd".into())])
        );
        assert!(parse_labels("nokey").is_err());
        assert!(parse_labels("=v").is_err());
    }

    #[test]
    fn node_addresses_are_loopback_and_distinct() {
        let ips: HashSet<String> = (0..5000).map(node_ip).collect();
        assert_eq!(ips.len(), 5000);
        assert!(ips.iter().all(|ip| ip.starts_with("127.")));
    }
}
