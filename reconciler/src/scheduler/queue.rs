//! The scheduling queue: pods waiting for a node, highest priority first (then oldest), with
//! exponential back-off for pods that did not fit and a parking area for unschedulable pods
//! until the cluster changes in a way that could help them.
//!
//! Which changes release a parked pod depends on why it failed: a node joining or changing can
//! help any pod; a pod going away helps only pods that failed somewhere for a reason eviction
//! could fix (resources, ports, anti-affinity, spreading), not pods that no node's labels or
//! taints admit; a pod being placed helps only pods with required pod affinity
//! (kube-scheduler's queueing hints, coarsely).
//!
//! A pod is in exactly one place: *active* (ready to be tried), *backoff* (tried and failed
//! recently; active again when its back-off ends), *unschedulable* (waits for a cluster change,
//! or at most [`Config::max_unschedulable`]), or *in flight* (popped, being scheduled or bound).

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::framework::PodInfo;

/// Queue timing.
#[derive(Clone, Debug)]
pub struct Config {
    /// Back-off after the first failed attempt (doubles per attempt).
    pub initial_backoff: Duration,
    /// Longest back-off.
    pub max_backoff: Duration,
    /// Longest stay among the unschedulable pods without a cluster change.
    pub max_unschedulable: Duration,
}

impl Default for Config {
    /// kube-scheduler's defaults: 1 s, 10 s, 5 min.
    fn default() -> Config {
        Config {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            max_unschedulable: Duration::from_secs(300),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Active,
    Backoff,
    Unschedulable,
    InFlight,
}

#[derive(Debug)]
struct Entry {
    pod: Arc<PodInfo>,
    place: Place,
    /// Orders active pods of equal priority (first come, first served) and tells stale heap
    /// entries from current ones.
    seq: u64,
    attempts: u32,
    backoff_until: Instant,
    parked_at: Instant,
    /// The cluster-change counter when the pod was popped: a change while in flight sends a
    /// failed pod to back-off instead of the unschedulable area.
    popped_at_move: u64,
    /// The pod was updated while in flight; retry it promptly.
    updated_in_flight: bool,
    /// Its last failure could be cured by a pod going away.
    helped_by_pod_removal: bool,
}

/// A change in the cluster that may help parked pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterChange {
    /// A node was added or changed in a way the scheduler reads.
    Node,
    /// A pod stopped taking resources (deleted or finished).
    PodRemoved,
    /// A pod was placed on a node (bound or assumed).
    PodPlaced,
}

#[derive(Debug, PartialEq, Eq)]
struct ActiveItem {
    priority: i32,
    seq: u64,
    key: String,
}

impl Ord for ActiveItem {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for ActiveItem {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The queue.
#[derive(Debug)]
pub struct SchedulingQueue {
    config: Config,
    entries: HashMap<String, Entry>,
    active: BinaryHeap<ActiveItem>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String)>>,
    seq: u64,
    moves: u64,
    /// Parked pods with required pod affinity (may hold keys that have moved on since).
    parked_with_affinity: Vec<String>,
}

impl SchedulingQueue {
    /// An empty queue.
    pub fn new(config: Config) -> SchedulingQueue {
        SchedulingQueue {
            config,
            entries: HashMap::new(),
            active: BinaryHeap::new(),
            backoff: BinaryHeap::new(),
            seq: 0,
            moves: 0,
            parked_with_affinity: Vec::new(),
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn push_active(&mut self, key: &str) {
        let seq = self.next_seq();
        if let Some(e) = self.entries.get_mut(key) {
            e.place = Place::Active;
            e.seq = seq;
            self.active.push(ActiveItem {
                priority: e.pod.priority,
                seq,
                key: key.to_string(),
            });
        }
    }

    fn push_backoff(&mut self, key: &str, now: Instant) {
        let seq = self.next_seq();
        if let Some(e) = self.entries.get_mut(key) {
            if e.backoff_until <= now {
                e.place = Place::Active;
                e.seq = seq;
                self.active.push(ActiveItem {
                    priority: e.pod.priority,
                    seq,
                    key: key.to_string(),
                });
                return;
            }
            e.place = Place::Backoff;
            e.seq = seq;
            self.backoff
                .push(Reverse((e.backoff_until, seq, key.to_string())));
        }
    }

    /// Number of pods in the queue (any place).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the queue holds no pod.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds a new pending pod, or takes an update of one already queued. An update makes a
    /// parked pod eligible again (its spec may now fit), respecting its back-off.
    pub fn add_or_update(&mut self, pod: Arc<PodInfo>, now: Instant) {
        let key = pod.key();
        match self.entries.get_mut(&key) {
            None => {
                self.entries.insert(
                    key.clone(),
                    Entry {
                        pod,
                        place: Place::Active,
                        seq: 0,
                        attempts: 0,
                        backoff_until: now,
                        parked_at: now,
                        popped_at_move: 0,
                        updated_in_flight: false,
                        helped_by_pod_removal: true,
                    },
                );
                self.push_active(&key);
            }
            Some(e) => {
                // A status-only update (our own PodScheduled condition, say) changes nothing
                // that could make the pod fit.
                let same = e.pod.generation == pod.generation
                    && e.pod.labels == pod.labels
                    && e.pod.priority == pod.priority;
                if same {
                    e.pod = pod;
                    return;
                }
                let priority_changed = e.pod.priority != pod.priority;
                e.pod = pod;
                match e.place {
                    Place::InFlight => e.updated_in_flight = true,
                    Place::Unschedulable => self.push_backoff(&key, now),
                    Place::Active if priority_changed => self.push_active(&key),
                    Place::Active | Place::Backoff => {}
                }
            }
        }
    }

    /// Removes a pod (deleted, bound elsewhere, or bound by this scheduler).
    pub fn remove(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Moves due back-off pods to active; returns when the next one is due.
    pub fn flush(&mut self, now: Instant) -> Option<Instant> {
        while let Some(Reverse((due, seq, key))) = self.backoff.peek().cloned() {
            let current = self
                .entries
                .get(&key)
                .is_some_and(|e| e.place == Place::Backoff && e.seq == seq);
            if !current {
                self.backoff.pop();
                continue;
            }
            if due > now {
                break;
            }
            self.backoff.pop();
            self.push_active(&key);
        }
        self.backoff.peek().map(|Reverse((due, _, _))| *due)
    }

    /// Retries pods parked as unschedulable for longer than [`Config::max_unschedulable`]
    /// (called now and then: it looks at every queued pod).
    pub fn flush_unschedulable(&mut self, now: Instant) {
        let stale: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| {
                e.place == Place::Unschedulable
                    && now.duration_since(e.parked_at) >= self.config.max_unschedulable
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            self.push_backoff(&key, now);
        }
    }

    /// Takes the best active pod, marking it in flight.
    pub fn pop(&mut self) -> Option<Arc<PodInfo>> {
        while let Some(item) = self.active.pop() {
            let moves = self.moves;
            let Some(e) = self.entries.get_mut(&item.key) else {
                continue;
            };
            if e.place != Place::Active || e.seq != item.seq {
                continue;
            }
            e.place = Place::InFlight;
            e.popped_at_move = moves;
            e.updated_in_flight = false;
            e.attempts += 1;
            return Some(e.pod.clone());
        }
        None
    }

    /// Whether an active pod is waiting (drops stale heap entries on top).
    pub fn has_active(&mut self) -> bool {
        while let Some(item) = self.active.peek() {
            let current = self
                .entries
                .get(&item.key)
                .is_some_and(|e| e.place == Place::Active && e.seq == item.seq);
            if current {
                return true;
            }
            self.active.pop();
        }
        false
    }

    fn backoff_for(&self, attempts: u32) -> Duration {
        let shift = attempts.saturating_sub(1).min(16);
        self.config
            .initial_backoff
            .saturating_mul(1 << shift)
            .min(self.config.max_backoff)
    }

    /// An in-flight pod did not fit: it waits for a cluster change (or, if one happened while
    /// it was in flight, or it was updated, for its back-off). `helped_by_pod_removal`: some
    /// node failed it only for reasons a pod going away could fix.
    pub fn unschedulable(&mut self, key: &str, now: Instant, helped_by_pod_removal: bool) {
        let moves = self.moves;
        let backoff = match self.entries.get(key) {
            Some(e) => self.backoff_for(e.attempts),
            None => return,
        };
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        e.backoff_until = now + backoff;
        e.helped_by_pod_removal = helped_by_pod_removal;
        if e.popped_at_move != moves || e.updated_in_flight {
            self.push_backoff(key, now);
        } else {
            e.place = Place::Unschedulable;
            e.parked_at = now;
            if !e.pod.affinity.is_empty() {
                self.parked_with_affinity.push(key.to_string());
            }
        }
    }

    /// An in-flight pod hit an error (a failed binding): retry after its back-off.
    pub fn retry(&mut self, key: &str, now: Instant) {
        let backoff = match self.entries.get(key) {
            Some(e) => self.backoff_for(e.attempts),
            None => return,
        };
        if let Some(e) = self.entries.get_mut(key) {
            e.backoff_until = now + backoff;
        }
        self.push_backoff(key, now);
    }

    /// The cluster changed in a way that could make unschedulable pods fit: the parked pods it
    /// may help go to back-off or active.
    pub fn cluster_changed(&mut self, change: ClusterChange, now: Instant) {
        if change == ClusterChange::PodPlaced {
            for key in std::mem::take(&mut self.parked_with_affinity) {
                if self
                    .entries
                    .get(&key)
                    .is_some_and(|e| e.place == Place::Unschedulable)
                {
                    self.push_backoff(&key, now);
                }
            }
            return;
        }
        self.moves += 1;
        let parked: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.place == Place::Unschedulable)
            .filter(|(_, e)| change == ClusterChange::Node || e.helped_by_pod_removal)
            .map(|(k, _)| k.clone())
            .collect();
        for key in parked {
            self.push_backoff(&key, now);
        }
    }

    /// Pods waiting in each place: active, backing off, parked as unschedulable.
    pub fn sizes(&self) -> (usize, usize, usize) {
        self.entries
            .values()
            .fold((0, 0, 0), |(a, b, u), e| match e.place {
                Place::Active => (a + 1, b, u),
                Place::Backoff => (a, b + 1, u),
                Place::Unschedulable => (a, b, u + 1),
                Place::InFlight => (a, b, u),
            })
    }

    /// Number of pods parked as unschedulable.
    pub fn unschedulable_len(&self) -> usize {
        self.entries
            .values()
            .filter(|e| e.place == Place::Unschedulable)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, priority: i32) -> Arc<PodInfo> {
        Arc::new(PodInfo {
            namespace: "default".into(),
            name: name.into(),
            priority,
            ..PodInfo::default()
        })
    }

    fn check(queue: &mut SchedulingQueue, expected: &[&str]) {
        let mut got = Vec::new();
        while let Some(p) = queue.pop() {
            got.push(p.name.clone());
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn higher_priority_pods_come_first_then_the_oldest() {
        let now = Instant::now();
        let mut q = SchedulingQueue::new(Config::default());
        q.add_or_update(pod("low", 0), now);
        q.add_or_update(pod("high", 100), now);
        q.add_or_update(pod("low2", 0), now);
        q.add_or_update(pod("mid", 10), now);
        check(&mut q, &["high", "mid", "low", "low2"]);
    }

    #[test]
    fn unschedulable_pods_wait_for_a_cluster_change_and_their_back_off() {
        let now = Instant::now();
        let mut q = SchedulingQueue::new(Config::default());
        q.add_or_update(pod("p", 0), now);
        check(&mut q, &["p"]);
        q.unschedulable("default/p", now, true);
        assert_eq!(q.unschedulable_len(), 1);
        q.flush(now + Duration::from_secs(60));
        check(&mut q, &[]);
        q.cluster_changed(ClusterChange::Node, now);
        let due = q.flush(now).expect("in back-off");
        assert_eq!(due, now + Duration::from_secs(1));
        check(&mut q, &[]);
        q.flush(due);
        check(&mut q, &["p"]);
        // Second failure: two seconds of back-off.
        q.unschedulable("default/p", now, true);
        q.cluster_changed(ClusterChange::Node, now);
        assert_eq!(q.flush(now), Some(now + Duration::from_secs(2)));
    }

    #[test]
    fn a_change_while_in_flight_sends_a_failed_pod_to_back_off() {
        let now = Instant::now();
        let mut q = SchedulingQueue::new(Config::default());
        q.add_or_update(pod("p", 0), now);
        check(&mut q, &["p"]);
        q.cluster_changed(ClusterChange::Node, now);
        q.unschedulable("default/p", now, true);
        assert_eq!(q.unschedulable_len(), 0);
        q.flush(now + Duration::from_secs(1));
        check(&mut q, &["p"]);
    }

    #[test]
    fn a_pod_going_away_releases_only_pods_it_could_help() {
        let now = Instant::now();
        let mut q = SchedulingQueue::new(Config::default());
        q.add_or_update(pod("needs-cpu", 0), now);
        q.add_or_update(pod("needs-label", 0), now);
        check(&mut q, &["needs-cpu", "needs-label"]);
        q.unschedulable("default/needs-cpu", now, true);
        q.unschedulable("default/needs-label", now, false);
        q.cluster_changed(ClusterChange::PodRemoved, now);
        q.flush(now + Duration::from_secs(1));
        check(&mut q, &["needs-cpu"]);
        q.cluster_changed(ClusterChange::Node, now);
        q.flush(now + Duration::from_secs(1));
        check(&mut q, &["needs-label"]);
    }

    #[test]
    fn a_placed_pod_releases_only_pods_with_pod_affinity() {
        let now = Instant::now();
        let mut q = SchedulingQueue::new(Config::default());
        let mut follower = (*pod("follower", 0)).clone();
        follower.affinity = vec![Default::default()];
        q.add_or_update(Arc::new(follower), now);
        q.add_or_update(pod("plain", 0), now);
        check(&mut q, &["follower", "plain"]);
        q.unschedulable("default/follower", now, false);
        q.unschedulable("default/plain", now, true);
        q.cluster_changed(ClusterChange::PodPlaced, now);
        q.flush(now + Duration::from_secs(1));
        check(&mut q, &["follower"]);
    }

    #[test]
    fn pods_parked_too_long_are_retried() {
        let now = Instant::now();
        let mut q = SchedulingQueue::new(Config::default());
        q.add_or_update(pod("p", 0), now);
        check(&mut q, &["p"]);
        q.unschedulable("default/p", now, true);
        q.flush_unschedulable(now + Duration::from_secs(301));
        q.flush(now + Duration::from_secs(301));
        check(&mut q, &["p"]);
    }

    #[test]
    fn removed_pods_are_never_popped() {
        let now = Instant::now();
        let mut q = SchedulingQueue::new(Config::default());
        q.add_or_update(pod("a", 0), now);
        q.add_or_update(pod("b", 0), now);
        q.remove("default/a");
        check(&mut q, &["b"]);
    }
}
