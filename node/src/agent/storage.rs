//! Local-path storage on this node: the directory under which the controller-manager's
//! local-path provisioner puts this node's volumes (`<data dir>/storage`, advertised on the
//! Node as `local-path.gitplane.io/root`), the host directory of a claimed volume, and the
//! clean-up of directories whose PersistentVolume is gone (a `Delete` reclaim: the provisioner
//! deletes the volume object, the node that holds the data removes it, as k3s's local-path
//! provisioner does with a helper pod).
//!
//! The clean-up reads the directory before it lists the volumes: a directory only exists once
//! its volume is bound, so a volume made between the two reads is always in the list.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use kube::Api;
use kube::api::ListParams;
use tokio_util::sync::CancellationToken;

/// How often directories of deleted volumes are looked for.
const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// The local-path root of a node with data under `data_dir` (absolute).
pub fn root(data_dir: &Path) -> PathBuf {
    let dir = data_dir.join("storage");
    let _ = std::fs::create_dir_all(&dir);
    std::fs::canonicalize(&dir).unwrap_or(dir)
}

/// Why a claim cannot be mounted yet.
pub fn not_ready(volume: &str, message: String) -> String {
    format!("MountVolume.SetUp failed for volume {volume:?}: {message}")
}

/// The host directory of the volume bound to the claim `name` for a pod on `node`, or why
/// there is none (yet): the claim is not bound, or the volume's node affinity excludes this
/// node (the scheduler does not yet place pods by their volumes).
pub async fn claim_path(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    node: &str,
) -> Result<PathBuf, String> {
    let claim = Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|e| format!("persistentvolumeclaim {name:?}: {e}"))?
        .ok_or_else(|| format!("persistentvolumeclaim {name:?} not found"))?;
    let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
    let volume = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|v| !v.is_empty() && phase == Some("Bound"))
        .ok_or_else(|| format!("persistentvolumeclaim {name:?} is not bound"))?;
    let pv = Api::<PersistentVolume>::all(client.clone())
        .get_opt(&volume)
        .await
        .map_err(|e| format!("persistentvolume {volume:?}: {e}"))?
        .ok_or_else(|| format!("persistentvolume {volume:?} not found"))?;
    let labels = Api::<Node>::all(client.clone())
        .get_opt(node)
        .await
        .map_err(|e| format!("node {node:?}: {e}"))?
        .and_then(|n| n.metadata.labels)
        .unwrap_or_default();
    if !apimachinery::volume::admits_node(&pv, node, &labels) {
        return Err(format!(
            "persistentvolume {volume:?} has a node affinity that excludes node {node:?}"
        ));
    }
    let spec = pv.spec.unwrap_or_default();
    let path = spec
        .host_path
        .map(|h| h.path)
        .or(spec.local.map(|l| l.path))
        .ok_or_else(|| {
            format!("persistentvolume {volume:?}: only hostPath and local volumes can be mounted")
        })?;
    let path = PathBuf::from(path);
    std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// Removes, every [`SWEEP_INTERVAL`] until `stop`, the directories under `root` that no
/// PersistentVolume points at any more.
pub async fn sweep(client: kube::Client, root: PathBuf, stop: CancellationToken) {
    loop {
        let present: Vec<PathBuf> = std::fs::read_dir(&root)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        if !present.is_empty()
            && let Ok(list) = Api::<PersistentVolume>::all(client.clone())
                .list(&ListParams::default())
                .await
        {
            let used: BTreeSet<PathBuf> = list
                .items
                .into_iter()
                .filter_map(|pv| {
                    let spec = pv.spec?;
                    spec.host_path
                        .map(|h| h.path)
                        .or(spec.local.map(|l| l.path))
                })
                .map(PathBuf::from)
                .collect();
            for dir in present.into_iter().filter(|d| !used.contains(d)) {
                tracing::info!(dir = %dir.display(), "removing the data of a deleted volume");
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(SWEEP_INTERVAL) => {}
        }
    }
}
