//! Resource quantities as the scheduler counts them: CPU in millicores, everything else in
//! whole units, and what a pod requests.

use std::collections::BTreeMap;

pub use apimachinery::quantity::{parse_milli, parse_units};
use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// CPU a container without a CPU request counts as when scoring (kube-scheduler's default).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory a container without a memory request counts as when scoring (200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// An amount of each resource the scheduler tracks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU in millicores.
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Ephemeral storage in bytes.
    pub ephemeral_storage: i64,
    /// Number of pods.
    pub pods: i64,
    /// Every other resource (extended resources such as `example.com/gpu`), in whole units.
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// Reads a `resources` map (`capacity`, `allocatable`, `requests`).
    pub fn from_map(map: &BTreeMap<String, Quantity>) -> Resources {
        let mut r = Resources::default();
        for (name, q) in map {
            r.set(name, q);
        }
        r
    }

    fn set(&mut self, name: &str, q: &Quantity) {
        match name {
            "cpu" => self.milli_cpu = parse_milli(&q.0).unwrap_or(0),
            "memory" => self.memory = parse_units(&q.0).unwrap_or(0),
            "ephemeral-storage" => self.ephemeral_storage = parse_units(&q.0).unwrap_or(0),
            "pods" => self.pods = parse_units(&q.0).unwrap_or(0),
            other => {
                self.scalar
                    .insert(other.to_string(), parse_units(&q.0).unwrap_or(0));
            }
        }
    }

    /// Adds `other` to `self`.
    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        self.pods += other.pods;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    /// Subtracts `other` from `self`.
    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        self.pods -= other.pods;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }

    /// The larger of each resource.
    fn max(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }
}

/// What a pod asks of a node: the effective request (the sum over containers, at least the
/// largest init container, plus the overhead) and the same with defaults for missing CPU and
/// memory requests, which scoring uses so that request-less pods still spread.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodRequests {
    /// Counted against allocatable (includes one pod).
    pub requests: Resources,
    /// Millicores for scoring (missing requests count as 100m).
    pub non_zero_milli_cpu: i64,
    /// Bytes for scoring (missing requests count as 200 MiB).
    pub non_zero_memory: i64,
}

impl PodRequests {
    /// Computes the requests of a pod spec, as kube-scheduler's `computePodResourceRequest`.
    pub fn of(spec: &PodSpec) -> PodRequests {
        let mut sum = Resources::default();
        let (mut nz_cpu, mut nz_mem) = (0, 0);
        for c in &spec.containers {
            let r = c
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .map(Resources::from_map)
                .unwrap_or_default();
            nz_cpu += if r.milli_cpu == 0 {
                DEFAULT_MILLI_CPU_REQUEST
            } else {
                r.milli_cpu
            };
            nz_mem += if r.memory == 0 {
                DEFAULT_MEMORY_REQUEST
            } else {
                r.memory
            };
            sum.add(&r);
        }
        for c in spec.init_containers.iter().flatten() {
            let r = c
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .map(Resources::from_map)
                .unwrap_or_default();
            nz_cpu = nz_cpu.max(r.milli_cpu);
            nz_mem = nz_mem.max(r.memory);
            sum.max(&r);
        }
        if let Some(overhead) = &spec.overhead {
            let o = Resources::from_map(overhead);
            nz_cpu += o.milli_cpu;
            nz_mem += o.memory;
            sum.add(&o);
        }
        sum.pods = 1;
        PodRequests {
            requests: sum,
            non_zero_milli_cpu: nz_cpu,
            non_zero_memory: nz_mem,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_requests_sum_containers_and_take_the_largest_init_container() {
        let spec: PodSpec = serde_json::from_value(serde_json::json!({
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "200m", "memory": "1Gi"}}},
                {"name": "b"}
            ],
            "initContainers": [
                {"name": "i", "resources": {"requests": {"cpu": "1", "example.com/gpu": "1"}}}
            ]
        }))
        .unwrap();
        let r = PodRequests::of(&spec);
        assert_eq!(r.requests.milli_cpu, 1000);
        assert_eq!(r.requests.memory, 1024 * 1024 * 1024);
        assert_eq!(r.requests.pods, 1);
        assert_eq!(r.requests.scalar["example.com/gpu"], 1);
        assert_eq!(r.non_zero_milli_cpu, 1000);
        assert_eq!(
            r.non_zero_memory,
            1024 * 1024 * 1024 + DEFAULT_MEMORY_REQUEST
        );
    }
}
