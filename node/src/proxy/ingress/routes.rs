//! Which backend answers a request to the built-in ingress controller, and which TLS Secret
//! answers a server name: a pure function of the Ingresses it serves, with Kubernetes' matching
//! rules.
//!
//! - **Hosts**: a rule's `host` matches the request's host (the `Host` header without its port,
//!   case-insensitive) exactly; a wildcard `*.example.com` matches one more DNS label
//!   (`a.example.com`, not `example.com` nor `a.b.example.com`); a rule without a host matches
//!   every host. Exact hosts are tried first, then wildcards, then rules without a host; the
//!   first of these groups with a matching path answers (as Traefik, k3s's ingress, falls
//!   through to a less specific router).
//! - **Paths**: `Exact` matches the path as it is; `Prefix` matches element by element split on
//!   `/` (`/foo` matches `/foo`, `/foo/` and `/foo/bar`, not `/foobar`; a trailing `/` in the
//!   rule is ignored); `ImplementationSpecific` is treated as `Prefix`. The longest path wins, an
//!   `Exact` path over a `Prefix` one of the same length, then the older Ingress.
//! - **Default backend**: `spec.defaultBackend` of the oldest Ingress that has one answers what
//!   no rule matches; without one the answer is 404.
//! - **TLS**: `spec.tls[].hosts` names (exact, then wildcard) choose the entry's `secretName`
//!   (in the Ingress's namespace) for a server name; an entry without hosts serves any name.

use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};

/// The Service port an Ingress backend names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Port {
    /// `port.number`.
    Number(i32),
    /// `port.name`.
    Name(String),
}

/// A Service port that receives requests.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Backend {
    /// The Ingress's (and so the Service's) namespace.
    pub namespace: String,
    /// The Service's name.
    pub service: String,
    /// Its port.
    pub port: Port,
}

/// A TLS Secret, by namespace and name.
pub type SecretRef = (String, String);

/// How a rule's host matches.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Host {
    /// This host exactly (lowercase).
    Exact(String),
    /// `*.` + this suffix (lowercase, without the `*.`).
    Wildcard(String),
    /// No host: every host.
    Any,
}

impl Host {
    fn parse(host: Option<&str>) -> Host {
        match host.map(str::to_ascii_lowercase) {
            None => Host::Any,
            Some(h) if h.is_empty() => Host::Any,
            Some(h) => match h.strip_prefix("*.") {
                Some(suffix) => Host::Wildcard(suffix.to_string()),
                None => Host::Exact(h),
            },
        }
    }

    /// 0 for an exact match, 1 for a wildcard one, 2 for no host; `None` if it does not match.
    fn rank(&self, host: &str) -> Option<u8> {
        match self {
            Host::Exact(h) => (h == host).then_some(0),
            Host::Wildcard(suffix) => host
                .strip_suffix(suffix.as_str())
                .and_then(|label| label.strip_suffix('.'))
                .filter(|label| !label.is_empty() && !label.contains('.'))
                .map(|_| 1),
            Host::Any => Some(2),
        }
    }
}

/// One path of one rule.
#[derive(Clone, Debug)]
struct Route {
    host: Host,
    exact: bool,
    /// The rule's path (for `Exact`), or its elements joined by `/` (for `Prefix`).
    path: String,
    backend: Backend,
}

impl Route {
    fn matches(&self, path: &str) -> bool {
        if self.exact {
            return self.path == path;
        }
        let mut request = elements(path);
        elements(&self.path).all(|e| request.next() == Some(e))
    }

    /// The length that orders matches: the rule's path without a trailing `/`.
    fn length(&self) -> usize {
        self.path.trim_end_matches('/').len()
    }
}

fn elements(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|e| !e.is_empty())
}

/// The routing table of the Ingresses a controller serves.
#[derive(Clone, Debug, Default)]
pub struct Routes {
    routes: Vec<Route>,
    default: Option<Backend>,
    tls: Vec<(Vec<Host>, SecretRef)>,
}

/// The backend of an Ingress backend: a Service port (a `resource` backend is not one).
fn backend(namespace: &str, b: &IngressBackend) -> Option<Backend> {
    let svc = b.service.as_ref()?;
    let port = svc.port.as_ref()?;
    let port = match (&port.name, port.number) {
        (Some(name), _) if !name.is_empty() => Port::Name(name.clone()),
        (_, Some(n)) => Port::Number(n),
        _ => return None,
    };
    Some(Backend {
        namespace: namespace.to_string(),
        service: svc.name.clone(),
        port,
    })
}

/// Builds the table from the served Ingresses, oldest first (creation time, then namespace and
/// name), so that ties go to the older one.
pub fn routes(ingresses: &[&Ingress]) -> Routes {
    let mut sorted: Vec<&Ingress> = ingresses.to_vec();
    sorted.sort_by(|a, b| {
        let key = |i: &Ingress| {
            (
                i.metadata.creation_timestamp.as_ref().map(|t| t.0),
                i.metadata.namespace.clone(),
                i.metadata.name.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    let mut out = Routes::default();
    for ing in sorted {
        let ns = ing.metadata.namespace.as_deref().unwrap_or("default");
        let Some(spec) = &ing.spec else { continue };
        if out.default.is_none() {
            out.default = spec.default_backend.as_ref().and_then(|b| backend(ns, b));
        }
        for rule in spec.rules.iter().flatten() {
            let host = Host::parse(rule.host.as_deref());
            for p in rule.http.iter().flat_map(|h| &h.paths) {
                let Some(backend) = backend(ns, &p.backend) else {
                    continue;
                };
                out.routes.push(Route {
                    host: host.clone(),
                    exact: p.path_type == "Exact",
                    path: p.path.clone().unwrap_or_else(|| "/".into()),
                    backend,
                });
            }
        }
        for tls in spec.tls.iter().flatten() {
            let Some(secret) = tls.secret_name.clone().filter(|s| !s.is_empty()) else {
                continue;
            };
            let hosts = tls
                .hosts
                .iter()
                .flatten()
                .map(|h| Host::parse(Some(h)))
                .collect();
            out.tls.push((hosts, (ns.to_string(), secret)));
        }
    }
    out
}

/// The host of a `Host` header or URI authority: lowercase, without the port.
pub fn host_of(authority: &str) -> String {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        // An IPv6 literal keeps its brackets.
        rest.split(']')
            .next()
            .map(|h| format!("[{h}]"))
            .unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or("").to_string()
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

impl Routes {
    /// The backend for `host` (already [`host_of`]) and `path`; `None` means 404.
    pub fn route(&self, host: &str, path: &str) -> Option<&Backend> {
        for rank in 0..=2 {
            let best = self
                .routes
                .iter()
                .filter(|r| r.host.rank(host) == Some(rank) && r.matches(path))
                // `max_by_key` keeps the last of equals; reverse so the oldest wins ties.
                .rev()
                .max_by_key(|r| (r.length(), r.exact));
            if let Some(r) = best {
                return Some(&r.backend);
            }
        }
        self.default.as_ref()
    }

    /// Every backend the table can send to, default included.
    pub fn backends(&self) -> impl Iterator<Item = &Backend> {
        self.routes
            .iter()
            .map(|r| &r.backend)
            .chain(self.default.as_ref())
    }

    /// The TLS Secret for a server name (SNI); `None` when no entry names it.
    pub fn tls_secret(&self, server_name: &str) -> Option<&SecretRef> {
        let name = server_name.to_ascii_lowercase();
        let by_rank = |rank: u8| {
            self.tls.iter().find(|(hosts, _)| {
                hosts
                    .iter()
                    .any(|h| h != &Host::Any && h.rank(&name) == Some(rank))
            })
        };
        by_rank(0)
            .or_else(|| by_rank(1))
            .or_else(|| self.tls.iter().find(|(hosts, _)| hosts.is_empty()))
            .map(|(_, secret)| secret)
    }

    /// Every Secret the TLS entries name.
    pub fn secrets(&self) -> impl Iterator<Item = &SecretRef> {
        self.tls.iter().map(|(_, s)| s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn ingress(name: &str, created: &str, spec: Value) -> Ingress {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": created},
            "spec": spec,
        }))
        .unwrap()
    }

    fn path(path: &str, kind: &str, service: &str) -> Value {
        json!({"path": path, "pathType": kind,
               "backend": {"service": {"name": service, "port": {"number": 80}}}})
    }

    /// Asserts the Service each (host, path) request reaches ("404" for none).
    fn check(ingresses: &[Ingress], requests: &[(&str, &str, &str)]) {
        let refs: Vec<&Ingress> = ingresses.iter().collect();
        let table = routes(&refs);
        for (host, path, expected) in requests {
            let got = table
                .route(&host_of(host), path)
                .map(|b| b.service.as_str())
                .unwrap_or("404");
            assert_eq!(got, *expected, "{host}{path}");
        }
    }

    #[test]
    fn prefix_paths_match_whole_elements_and_the_longest_wins() {
        let ing = ingress(
            "web",
            "2024-01-01T00:00:00Z",
            json!({"rules": [{"http": {"paths": [
                path("/", "Prefix", "root"),
                path("/aaa", "Prefix", "aaa"),
                path("/aaa/bbb/", "Prefix", "bbb"),
                path("/foo", "Exact", "foo-exact"),
                path("/foo", "Prefix", "foo-prefix"),
                path("/impl", "ImplementationSpecific", "impl"),
            ]}}]}),
        );
        check(
            &[ing],
            &[
                ("x.test", "/", "root"),
                ("x.test", "/aaa", "aaa"),
                ("x.test", "/aaa/", "aaa"),
                ("x.test", "/aaa/ccc", "aaa"),
                ("x.test", "/aaaxyz", "root"),
                ("x.test", "/aaa/bbb", "bbb"),
                ("x.test", "/aaa/bbb/ccc", "bbb"),
                ("x.test", "/aaa/bbbxyz", "aaa"),
                ("x.test", "/foo", "foo-exact"),
                ("x.test", "/foo/", "foo-prefix"),
                ("x.test", "/foo/bar", "foo-prefix"),
                ("x.test", "/impl/x", "impl"),
            ],
        );
    }

    #[test]
    fn exact_paths_match_only_themselves_and_unmatched_requests_get_none() {
        let ing = ingress(
            "web",
            "2024-01-01T00:00:00Z",
            json!({"rules": [{"host": "a.test", "http": {"paths": [
                path("/foo", "Exact", "foo"),
            ]}}]}),
        );
        check(
            &[ing],
            &[
                ("a.test", "/foo", "foo"),
                ("a.test", "/foo/", "404"),
                ("a.test", "/foo/bar", "404"),
                ("a.test", "/", "404"),
                ("b.test", "/foo", "404"),
            ],
        );
    }

    #[test]
    fn hosts_match_exactly_then_by_wildcard_then_rules_without_a_host() {
        let ing = ingress(
            "web",
            "2024-01-01T00:00:00Z",
            json!({"rules": [
                {"host": "a.example.com", "http": {"paths": [path("/", "Prefix", "a")]}},
                {"host": "*.example.com", "http": {"paths": [path("/", "Prefix", "wild")]}},
                {"host": "api.example.com", "http": {"paths": [path("/v1", "Prefix", "api")]}},
                {"http": {"paths": [path("/", "Prefix", "any")]}},
            ]}),
        );
        check(
            &[ing],
            &[
                ("a.example.com", "/x", "a"),
                ("A.Example.COM:8080", "/", "a"),
                ("b.example.com", "/", "wild"),
                ("b.example.com.", "/", "wild"),
                ("x.b.example.com", "/", "any"),
                ("example.com", "/", "any"),
                ("api.example.com", "/v1/users", "api"),
                ("api.example.com", "/v2", "wild"),
                ("other.test", "/", "any"),
                ("127.0.0.1:8080", "/", "any"),
                ("[::1]:8080", "/", "any"),
            ],
        );
    }

    #[test]
    fn the_oldest_default_backend_answers_what_no_rule_matches() {
        let default = |name: &str, created: &str, svc: &str| {
            ingress(
                name,
                created,
                json!({"defaultBackend": {"service": {"name": svc, "port": {"name": "http"}}},
                       "rules": [{"host": "a.test", "http": {"paths": [path("/", "Prefix", name)]}}]}),
            )
        };
        check(
            &[
                default("new", "2025-01-01T00:00:00Z", "fallback-new"),
                default("old", "2024-01-01T00:00:00Z", "fallback-old"),
            ],
            &[("b.test", "/", "fallback-old"), ("a.test", "/", "old")],
        );
    }

    #[test]
    fn resource_backends_and_portless_backends_are_skipped() {
        let ing = ingress(
            "web",
            "2024-01-01T00:00:00Z",
            json!({"rules": [{"http": {"paths": [
                {"path": "/bucket", "pathType": "Prefix",
                 "backend": {"resource": {"apiGroup": "k8s.example.com", "kind": "Bucket", "name": "b"}}},
                path("/", "Prefix", "root"),
            ]}}]}),
        );
        check(&[ing], &[("x.test", "/bucket", "root")]);
    }

    fn check_tls(tls: Value, requests: &[(&str, Option<&str>)]) {
        let ing = ingress("web", "2024-01-01T00:00:00Z", json!({"tls": tls}));
        let table = routes(&[&ing]);
        for (name, expected) in requests {
            let got = table.tls_secret(name).map(|(_, s)| s.as_str());
            assert_eq!(got, *expected, "{name}");
        }
    }

    #[test]
    fn server_names_choose_the_secret_of_their_tls_entry() {
        check_tls(
            json!([
                {"hosts": ["*.example.com"], "secretName": "wild"},
                {"hosts": ["a.example.com", "b.test"], "secretName": "ab"},
            ]),
            &[
                ("a.example.com", Some("ab")),
                ("B.TEST", Some("ab")),
                ("c.example.com", Some("wild")),
                ("c.d.example.com", None),
                ("other.test", None),
            ],
        );
        check_tls(
            json!([{"hosts": ["a.test"], "secretName": "a"}, {"secretName": "any"}]),
            &[("a.test", Some("a")), ("z.test", Some("any"))],
        );
    }
}
