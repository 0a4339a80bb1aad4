//! Liveness, readiness and startup probes: exec (through the runtime's ExecSync), HTTP GET and
//! TCP, each bounded by `timeoutSeconds`; and the per-container bookkeeping of when each probe
//! runs next and how many results in a row it has had.
//!
//! A readiness probe runs at once when its container starts, which is usually before the
//! process listens. Kubelet's next try comes on its probe ticker, somewhere within a period; a
//! readiness probe here that has not yet succeeded for its container retries sooner instead
//! ([`EAGER_FIRST`], doubling up to the period), so a server that binds 100 ms after its start
//! is Ready about then, not a period later (two seconds per pod of a rolling update with the
//! playground's `periodSeconds: 2`). After its first success the probe keeps its period, and
//! eager retries only ever make a not-ready container ready sooner: they count as failures of a
//! container that is not ready anyway, which changes nothing.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::runtime::RuntimeClient;
use crate::runtime::api;

/// Where a probe runs.
pub struct Target<'a> {
    /// The runtime.
    pub runtime: &'a RuntimeClient,
    /// The container's runtime id.
    pub container_id: &'a str,
    /// The address of HTTP and TCP probes without `host`.
    pub pod_ip: &'a str,
    /// The container (for named ports).
    pub container: &'a Container,
    /// The pod's name and namespace (the labels of `prober_probe_total`).
    pub pod: (&'a str, &'a str),
}

fn port(p: &IntOrString, container: &Container) -> Option<u16> {
    match p {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => name.parse().ok().or_else(|| {
            container
                .ports
                .as_ref()?
                .iter()
                .find(|cp| cp.name.as_deref() == Some(name.as_str()))
                .and_then(|cp| u16::try_from(cp.container_port).ok())
        }),
    }
}

/// Runs a probe once; `Err` carries the failure's message.
pub async fn run(probe: &Probe, target: &Target<'_>) -> Result<(), String> {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(exec) = &probe.exec {
        let cmd = exec.command.clone().unwrap_or_default();
        let mut rt = target.runtime.clone();
        let out = rt
            .exec_sync(api::ExecSyncRequest {
                container_id: target.container_id.to_string(),
                cmd: cmd.clone(),
                timeout: timeout.as_secs() as i64,
            })
            .await
            .map_err(|e| format!("exec {cmd:?}: {}", e.message()))?
            .into_inner();
        return if out.exit_code == 0 {
            Ok(())
        } else {
            Err(format!(
                "exec {cmd:?} exited with {}: {}",
                out.exit_code,
                String::from_utf8_lossy(&out.stdout).trim()
            ))
        };
    }
    let (host, port_ref, http) = if let Some(h) = &probe.http_get {
        (h.host.clone(), &h.port, Some(h))
    } else if let Some(t) = &probe.tcp_socket {
        (t.host.clone(), &t.port, None)
    } else {
        return Err("probe has no handler (exec, httpGet or tcpSocket)".into());
    };
    let port =
        port(port_ref, target.container).ok_or_else(|| format!("invalid port {port_ref:?}"))?;
    let host = host
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| target.pod_ip.to_string());
    let addr = format!("{host}:{port}");
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(&addr)
            .await
            .map_err(|e| format!("dial tcp {addr}: {e}"))?;
        let Some(h) = http else { return Ok(()) };
        let path = h.path.clone().unwrap_or_else(|| "/".into());
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.32\r\nAccept: */*\r\nConnection: close\r\n"
        );
        for hd in h.http_headers.clone().unwrap_or_default() {
            req.push_str(&format!("{}: {}\r\n", hd.name, hd.value));
        }
        req.push_str("\r\n");
        stream
            .write_all(req.as_bytes())
            .await
            .map_err(|e| format!("GET {addr}{path}: {e}"))?;
        let mut buf = vec![0u8; 256];
        let mut got = 0;
        while got < 12 {
            let n = stream
                .read(&mut buf[got..])
                .await
                .map_err(|e| format!("GET {addr}{path}: {e}"))?;
            if n == 0 {
                break;
            }
            got += n;
        }
        let head = String::from_utf8_lossy(&buf[..got]).to_string();
        let code: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("GET {addr}{path}: malformed response"))?;
        if (200..400).contains(&code) {
            Ok(())
        } else {
            Err(format!("HTTP probe failed with statuscode: {code}"))
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| format!("probe to {addr} timed out after {}s", timeout.as_secs()))?
}

/// The first retry of a readiness probe that has not yet succeeded.
pub const EAGER_FIRST: Duration = Duration::from_millis(50);

/// The state of one probe of one container run.
#[derive(Debug, Clone)]
pub struct Tracker {
    next: Instant,
    successes: i32,
    failures: i32,
    /// The probe's verdict so far.
    pub ok: bool,
    /// The next retry after a failure, while this is a readiness probe that has not succeeded.
    eager: Option<Duration>,
}

/// What a probe step decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing changed.
    Same,
    /// The verdict turned to success.
    Succeeded,
    /// The verdict turned to failure (with the last message).
    Failed(String),
}

impl Tracker {
    /// A probe of a container started at `started`; `ok` is the verdict before the first run.
    pub fn new(probe: &Probe, started: Instant, ok: bool) -> Tracker {
        Tracker {
            next: started
                + Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64),
            successes: 0,
            failures: 0,
            ok,
            eager: None,
        }
    }

    /// A readiness probe of a container started at `started`: not ready until it succeeds, and
    /// retried early until then (see the module doc).
    pub fn readiness(probe: &Probe, started: Instant) -> Tracker {
        Tracker {
            eager: Some(EAGER_FIRST),
            ..Tracker::new(probe, started, false)
        }
    }

    /// When an early retry of a not-yet-successful readiness probe is due, if one is pending:
    /// the pod's worker wakes for it rather than on its usual tick.
    pub fn eager_due(&self, now: Instant) -> Option<Instant> {
        (self.eager.is_some() && self.next > now).then_some(self.next)
    }

    /// Runs the probe (`probe_type`: `Liveness`, `Readiness`, `Startup`) when due, counts its
    /// result in `prober_probe_total` and updates the verdict.
    pub async fn step(
        &mut self,
        probe: &Probe,
        target: &Target<'_>,
        probe_type: &'static str,
    ) -> Verdict {
        let now = Instant::now();
        if now < self.next {
            return Verdict::Same;
        }
        let result = run(probe, target).await;
        telemetry::kubelet::metrics()
            .probes
            .get_or_create(&telemetry::kubelet::ProbeLabels {
                probe_type,
                result: if result.is_ok() {
                    "successful"
                } else {
                    "failed"
                },
                container: target.container.name.clone(),
                pod: target.pod.0.to_string(),
                namespace: target.pod.1.to_string(),
            })
            .inc();
        self.record(probe, now, result)
    }

    /// Takes the result of a run that started at `now`.
    fn record(&mut self, probe: &Probe, now: Instant, result: Result<(), String>) -> Verdict {
        let period = Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
        self.next = now + period;
        if result.is_err()
            && let Some(retry) = self.eager
        {
            self.next = now + retry.min(period);
            self.eager = Some(retry * 2);
        }
        match result {
            Ok(()) => {
                self.eager = None;
                self.failures = 0;
                self.successes += 1;
                if !self.ok && self.successes >= probe.success_threshold.unwrap_or(1).max(1) {
                    self.ok = true;
                    return Verdict::Succeeded;
                }
            }
            Err(message) => {
                self.successes = 0;
                self.failures += 1;
                if self.ok && self.failures >= probe.failure_threshold.unwrap_or(3).max(1) {
                    self.ok = false;
                    return Verdict::Failed(message);
                }
                if !self.ok && self.failures >= probe.failure_threshold.unwrap_or(3).max(1) {
                    return Verdict::Failed(message);
                }
            }
        }
        Verdict::Same
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(period: i32, delay: i32) -> Probe {
        Probe {
            period_seconds: Some(period),
            initial_delay_seconds: Some(delay),
            ..Probe::default()
        }
    }

    fn fail() -> Result<(), String> {
        Err("dial tcp: connection refused".into())
    }

    #[test]
    fn readiness_retries_early_until_its_first_success() {
        let p = probe(2, 0);
        let t0 = Instant::now();
        let mut t = Tracker::readiness(&p, t0);
        assert_eq!(t.next, t0, "runs at once when the container starts");
        assert_eq!(t.record(&p, t0, fail()), Verdict::Same);
        assert_eq!(t.next, t0 + EAGER_FIRST);
        assert_eq!(t.eager_due(t0), Some(t0 + EAGER_FIRST));
        let t1 = t.next;
        t.record(&p, t1, fail());
        assert_eq!(t.next, t1 + EAGER_FIRST * 2, "the retry doubles");
        // The retries never wait longer than the period.
        let mut at = t.next;
        let mut gap = Duration::ZERO;
        for _ in 0..10 {
            t.record(&p, at, fail());
            gap = t.next - at;
            assert!(gap <= Duration::from_secs(2), "{gap:?}");
            at = t.next;
        }
        assert_eq!(gap, Duration::from_secs(2), "capped at the period");
        assert_eq!(t.record(&p, at, Ok(())), Verdict::Succeeded);
        assert!(t.ok);
        assert_eq!(
            t.next,
            at + Duration::from_secs(2),
            "after a success: the period"
        );
        assert_eq!(t.eager_due(at), None);
        // Failing again after being ready: no early retries, three failures make it unready.
        let mut at = t.next;
        for n in 1..=3 {
            let v = t.record(&p, at, fail());
            assert_eq!(t.next, at + Duration::from_secs(2));
            assert_eq!(t.eager_due(at), None);
            assert_eq!(v == Verdict::Same, n < 3, "failure {n}: {v:?}");
            at = t.next;
        }
        assert!(!t.ok);
    }

    #[test]
    fn liveness_and_startup_keep_their_period() {
        let p = probe(10, 5);
        let t0 = Instant::now();
        let mut t = Tracker::new(&p, t0, true);
        assert_eq!(t.next, t0 + Duration::from_secs(5), "initialDelaySeconds");
        t.record(&p, t.next, fail());
        assert_eq!(t.next, t0 + Duration::from_secs(15));
        assert_eq!(t.eager_due(t0), None);
        let mut s = Tracker::new(&p, t0, false);
        s.record(&p, t0, fail());
        assert_eq!(s.next, t0 + Duration::from_secs(10));
    }

    #[test]
    fn the_initial_delay_holds_for_readiness_too() {
        let p = probe(2, 3);
        let t0 = Instant::now();
        let t = Tracker::readiness(&p, t0);
        assert_eq!(t.next, t0 + Duration::from_secs(3));
    }
}
