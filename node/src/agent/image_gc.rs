//! Image garbage collection by disk threshold, as the kubelet's image GC manager does it.
//!
//! Every [`Policy::period`] the agent lists the runtime's images and its containers (running
//! or exited: an image any container names is in use) and remembers, per image, when it first
//! saw it and when it last saw it in use. It then reads the image file system from CRI
//! `ImageFsInfo` (its mount point's size and free space, as the kubelet asks cadvisor): when
//! the usage reaches [`Policy::high`] percent, it removes unused images, least recently used
//! first, skipping those seen for less than [`Policy::min_age`] and pinned ones (CRI `pinned`,
//! or the runtime's sandbox image, which containerd 1.6 does not pin), until the usage would be
//! down to [`Policy::low`] percent. When it cannot free that much it records the kubelet's
//! `FreeDiskSpaceFailed` Event on the Node, and `ImageGCFailed` when that happens twice in a
//! row, in the kubelet's words.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use apimachinery::event::{EventType, Record, Reporter, new_event};
use k8s_openapi::api::core::v1::{Event, ObjectReference};
use kube::Api;
use kube::api::PostParams;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::runtime::{Cri, api};

/// When and how much the agent collects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Disk usage (percent of the image file system) at or above which images are collected
    /// (`--image-gc-high-threshold`, default 85; 100 turns collection off).
    pub high: u8,
    /// The usage collection brings the file system down to (`--image-gc-low-threshold`,
    /// default 80).
    pub low: u8,
    /// An image seen for less than this is never collected (`--minimum-image-ttl-duration`,
    /// default 2 minutes).
    pub min_age: Duration,
    /// How often the agent looks (the kubelet's fixed 5 minutes).
    pub period: Duration,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            high: 85,
            low: 80,
            min_age: Duration::from_secs(120),
            period: Duration::from_secs(300),
        }
    }
}

impl Policy {
    /// Checks the thresholds as the kubelet validates its configuration.
    pub fn check(&self) -> Result<(), String> {
        if self.high > 100 {
            return Err(format!(
                "--image-gc-high-threshold: {} is not a percentage in [0, 100]",
                self.high
            ));
        }
        if self.low > 100 {
            return Err(format!(
                "--image-gc-low-threshold: {} is not a percentage in [0, 100]",
                self.low
            ));
        }
        if self.low >= self.high {
            return Err(format!(
                "--image-gc-low-threshold ({}) must be less than --image-gc-high-threshold ({})",
                self.low, self.high
            ));
        }
        if self.period.is_zero() {
            return Err("--image-gc-period must be more than 0".into());
        }
        Ok(())
    }

    /// The bytes to free on a file system of `capacity` bytes with `available` free: none below
    /// the high threshold, else enough to come down to the low one (the kubelet's arithmetic).
    pub fn to_free(&self, capacity: u64, available: u64) -> Option<u64> {
        if capacity == 0 || self.high >= 100 {
            return None;
        }
        let available = available.min(capacity);
        let usage = 100 - (u128::from(available) * 100 / u128::from(capacity)) as u64;
        if usage < u64::from(self.high) {
            return None;
        }
        let target = u128::from(capacity) * u128::from(100 - self.low) / 100;
        Some((target as u64).saturating_sub(available))
    }
}

/// What the agent remembers of one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The runtime's image id.
    pub id: String,
    /// Its size in bytes.
    pub size: u64,
    /// When the agent first listed it.
    pub first: Instant,
    /// When the agent last found a container using it (`first` when never).
    pub last_used: Instant,
    /// In use now, or pinned: never collected.
    pub keep: bool,
}

/// The images to remove, in order, to free `amount` bytes: unused ones seen for at least
/// `min_age`, least recently used first (then oldest first), up to the first that makes the
/// total reach `amount`; and the bytes they free.
pub fn choose(images: &[Seen], amount: u64, now: Instant, min_age: Duration) -> (Vec<String>, u64) {
    let mut candidates: Vec<&Seen> = images
        .iter()
        .filter(|i| !i.keep && now.saturating_duration_since(i.first) >= min_age)
        .collect();
    candidates.sort_by_key(|i| (i.last_used, i.first));
    let (mut chosen, mut freed) = (Vec::new(), 0u64);
    for i in candidates {
        if freed >= amount {
            break;
        }
        chosen.push(i.id.clone());
        freed = freed.saturating_add(i.size);
    }
    (chosen, freed)
}

/// The kubelet's message when it cannot free enough.
pub fn failure_message(amount: u64, freed: u64) -> String {
    format!(
        "Failed to garbage collect required amount of images. Attempted to free {amount} bytes, but only found {freed} bytes eligible to free."
    )
}

/// The collector's memory between rounds.
struct Collector {
    cri: Cri,
    client: kube::Client,
    node: String,
    policy: Policy,
    seen: HashMap<String, Seen>,
    failed_before: bool,
}

/// Runs image garbage collection for node `node` until `stop`.
pub(super) async fn run(
    cri: Cri,
    client: kube::Client,
    node: String,
    policy: Policy,
    stop: CancellationToken,
) {
    if policy.high >= 100 {
        return;
    }
    let mut c = Collector {
        cri,
        client,
        node,
        policy,
        seen: HashMap::new(),
        failed_before: false,
    };
    loop {
        c.round().await;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(c.policy.period) => {}
        }
    }
}

impl Collector {
    /// The runtime's sandbox image when it says (containerd's verbose `Status`: `config`).
    async fn sandbox_image(&self) -> Option<String> {
        let status = self
            .cri
            .runtime
            .clone()
            .status(api::StatusRequest { verbose: true })
            .await
            .ok()?
            .into_inner();
        let config: serde_json::Value = serde_json::from_str(status.info.get("config")?).ok()?;
        config["sandboxImage"].as_str().map(str::to_string)
    }

    /// Lists images and containers and updates what the agent remembers.
    async fn detect(&mut self, now: Instant) -> Result<(), tonic::Status> {
        let images = self
            .cri
            .images
            .clone()
            .list_images(api::ListImagesRequest { filter: None })
            .await?
            .into_inner()
            .images;
        let containers = self
            .cri
            .runtime
            .clone()
            .list_containers(api::ListContainersRequest { filter: None })
            .await?
            .into_inner()
            .containers;
        let mut used: HashSet<String> = HashSet::new();
        for c in containers {
            used.insert(c.image_ref);
            if let Some(i) = c.image {
                used.insert(i.image);
            }
        }
        let sandbox = self.sandbox_image().await;
        let listed: HashSet<String> = images.iter().map(|i| i.id.clone()).collect();
        self.seen.retain(|id, _| listed.contains(id));
        for i in images {
            let names = std::iter::once(&i.id)
                .chain(&i.repo_tags)
                .chain(&i.repo_digests);
            let in_use = names.clone().any(|n| used.contains(n));
            let pinned = i.pinned || names.clone().any(|n| Some(n) == sandbox.as_ref());
            let seen = self.seen.entry(i.id.clone()).or_insert_with(|| Seen {
                id: i.id.clone(),
                size: i.size,
                first: now,
                last_used: now,
                keep: false,
            });
            seen.size = i.size;
            seen.keep = in_use || pinned;
            if in_use {
                seen.last_used = now;
            }
        }
        Ok(())
    }

    /// One round: detect, then collect when the image file system is above the threshold.
    async fn round(&mut self) {
        let now = Instant::now();
        if let Err(e) = self.detect(now).await {
            tracing::debug!(error = %e.message(), "image GC: cannot list images");
            return;
        }
        let Ok(info) = self
            .cri
            .images
            .clone()
            .image_fs_info(api::ImageFsInfoRequest {})
            .await
        else {
            return;
        };
        let Some(mount) = info
            .into_inner()
            .image_filesystems
            .into_iter()
            .find_map(|f| f.fs_id.map(|id| id.mountpoint))
        else {
            return;
        };
        let Ok(stat) = rustix::fs::statvfs(mount.as_str()) else {
            return;
        };
        let capacity = stat.f_blocks.saturating_mul(stat.f_frsize);
        let available = stat.f_bavail.saturating_mul(stat.f_frsize);
        let Some(amount) = self.policy.to_free(capacity, available) else {
            self.failed_before = false;
            return;
        };
        let seen: Vec<Seen> = self.seen.values().cloned().collect();
        let (chosen, _) = choose(&seen, amount, now, self.policy.min_age);
        let mut freed = 0u64;
        for id in chosen {
            tracing::info!(image = %id, "image GC: removing an unused image to free disk space");
            let removed = self
                .cri
                .images
                .clone()
                .remove_image(api::RemoveImageRequest {
                    image: Some(api::ImageSpec {
                        image: id.clone(),
                        ..Default::default()
                    }),
                })
                .await;
            match removed {
                Ok(_) => {
                    freed += self.seen.remove(&id).map_or(0, |s| s.size);
                }
                Err(e) => {
                    tracing::warn!(image = %id, error = %e.message(), "image GC: cannot remove")
                }
            }
        }
        if freed >= amount {
            self.failed_before = false;
            return;
        }
        let message = failure_message(amount, freed);
        tracing::warn!(node = %self.node, "{message}");
        self.event("FreeDiskSpaceFailed", &message).await;
        if self.failed_before {
            self.event("ImageGCFailed", &message).await;
        }
        self.failed_before = true;
    }

    /// A Warning Event on the Node, from the kubelet.
    async fn event(&self, reason: &str, message: &str) {
        let record = Record {
            regarding: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(self.node.clone()),
                uid: Some(self.node.clone()),
                ..ObjectReference::default()
            },
            type_: EventType::Warning,
            reason: reason.into(),
            action: String::new(),
            message: message.into(),
        };
        let reporter = Reporter {
            component: "kubelet".into(),
            instance: self.node.clone(),
            host: Some(self.node.clone()),
        };
        let ev = new_event(record, &reporter, jiff::Timestamp::now());
        let api: Api<Event> = Api::namespaced(self.client.clone(), "default");
        if let Err(e) = api.create(&PostParams::default(), &ev).await {
            tracing::debug!(error = %e, "image GC: cannot record an event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_free(capacity: u64, available: u64, want: Option<u64>) {
        let policy = Policy::default();
        assert_eq!(
            policy.to_free(capacity, available),
            want,
            "{available} of {capacity} available"
        );
    }

    #[test]
    fn collection_starts_at_the_high_threshold_and_aims_for_the_low_one() {
        // 84% used: below 85.
        check_free(100, 16, None);
        // 85% used: free down to 80%, 5 bytes.
        check_free(100, 15, Some(5));
        check_free(1000, 50, Some(150));
        check_free(0, 0, None);
        let off = Policy {
            high: 100,
            low: 0,
            ..Policy::default()
        };
        assert_eq!(off.to_free(100, 0), None);
    }

    #[test]
    fn thresholds_are_checked_as_the_kubelet_checks_them() {
        let p = |high, low| Policy {
            high,
            low,
            ..Policy::default()
        };
        assert!(p(85, 80).check().is_ok());
        assert!(p(1, 0).check().is_ok());
        assert!(
            p(80, 80)
                .check()
                .unwrap_err()
                .contains("must be less than --image-gc-high-threshold")
        );
        assert!(p(101, 80).check().unwrap_err().contains("[0, 100]"));
    }

    #[test]
    fn unused_images_go_least_recently_used_first_until_enough_is_free() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let seen = |id: &str, size, first, last_used, keep| Seen {
            id: id.into(),
            size,
            first: at(first),
            last_used: at(last_used),
            keep,
        };
        let images = [
            seen("in-use", 100, 0, 50, true),
            seen("recent", 10, 0, 40, false),
            seen("stale", 10, 0, 10, false),
            seen("never-used", 10, 5, 5, false),
            seen("young", 1000, 95, 95, false),
        ];
        let now = at(100);
        let min_age = Duration::from_secs(60);
        let check = |amount, want: &[&str], freed| {
            let (chosen, got) = choose(&images, amount, now, min_age);
            assert_eq!(chosen, want, "amount {amount}");
            assert_eq!(got, freed, "amount {amount}");
        };
        check(0, &[], 0);
        check(5, &["never-used"], 10);
        check(15, &["never-used", "stale"], 20);
        check(1000, &["never-used", "stale", "recent"], 30);
        assert_eq!(
            failure_message(1000, 30),
            "Failed to garbage collect required amount of images. Attempted to free 1000 bytes, but only found 30 bytes eligible to free."
        );
    }
}
