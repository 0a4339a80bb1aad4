//! Parsing API requests: the URL path into a [`ResourcePath`], the query into [`Params`].
//!
//! Paths follow Kubernetes' `RequestInfo` rules: `/api/v1/...` for the core group,
//! `/apis/<group>/<version>/...` for the rest, an optional `namespaces/<ns>/` scope, then
//! `<resource>[/<name>[/<subresource>]]`. `namespaces/<name>/status` and `.../finalize` are
//! subresources of the namespace itself. After `…/<name>/proxy` the rest of the path is the
//! path to proxy to ([`ResourcePath::proxy_path`]).

use std::collections::HashMap;

use apimachinery::status::StatusError;

/// Where a resource request points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourcePath {
    /// API group; empty for core.
    pub group: String,
    /// API version.
    pub version: String,
    /// Namespace scope, if any.
    pub namespace: Option<String>,
    /// Plural resource name.
    pub resource: String,
    /// Object name, if any.
    pub name: Option<String>,
    /// Subresource, if any.
    pub subresource: Option<String>,
    /// The legacy `/watch/` prefix was used.
    pub legacy_watch: bool,
    /// For the `proxy` subresource, the path after it (`/` when none).
    pub proxy_path: Option<String>,
}

/// What a path addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `/api` or `/apis`.
    Root {
        /// True for `/api` (core group).
        core: bool,
    },
    /// `/apis/<group>`.
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`.
    GroupVersion {
        /// Group.
        group: String,
        /// Version.
        version: String,
    },
    /// A resource, collection or object.
    Resource(ResourcePath),
}

/// Parses a request path under `/api` or `/apis`; `None` for other paths.
pub fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest, core) = match parts.as_slice() {
        ["api"] => return Some(Target::Root { core: true }),
        ["apis"] => return Some(Target::Root { core: false }),
        ["apis", g] => return Some(Target::Group((*g).to_string())),
        ["api", v, rest @ ..] => ("", *v, rest, true),
        ["apis", g, v, rest @ ..] => (*g, *v, rest, false),
        _ => return None,
    };
    let _ = core;
    if rest.is_empty() {
        return Some(Target::GroupVersion {
            group: group.to_string(),
            version: version.to_string(),
        });
    }
    let mut rest = rest;
    let mut legacy_watch = false;
    if rest[0] == "watch" {
        legacy_watch = true;
        rest = &rest[1..];
    }
    let mut namespace = None;
    if rest.first() == Some(&"namespaces") && rest.len() > 1 {
        namespace = Some(rest[1].to_string());
        if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
            rest = &rest[2..];
        }
    }
    let mut proxy_path = None;
    if rest.len() >= 3 && rest[2] == "proxy" {
        let mut tail = format!("/{}", rest[3..].join("/"));
        if rest.len() > 3 && path.ends_with('/') {
            tail.push('/');
        }
        proxy_path = Some(tail);
        rest = &rest[..3];
    }
    if rest.iter().any(|p| p.is_empty()) || rest.len() > 3 || rest.is_empty() {
        return None;
    }
    let resource = rest[0].to_string();
    let name = rest.get(1).map(|s| s.to_string());
    let subresource = rest.get(2).map(|s| s.to_string());
    // `/namespaces/<name>[/<sub>]` addresses the Namespace object itself.
    if resource == "namespaces"
        && let Some(ns) = namespace.take()
    {
        return Some(Target::Resource(ResourcePath {
            group: group.to_string(),
            version: version.to_string(),
            namespace: None,
            resource,
            name: Some(ns),
            subresource: rest.get(2).map(|s| s.to_string()),
            legacy_watch,
            proxy_path: None,
        }));
    }
    Some(Target::Resource(ResourcePath {
        group: group.to_string(),
        version: version.to_string(),
        namespace,
        resource,
        name,
        subresource,
        legacy_watch,
        proxy_path,
    }))
}

/// The query parameters of API requests.
#[derive(Clone, Debug, Default)]
pub struct Params {
    raw: HashMap<String, Vec<String>>,
}

impl Params {
    /// Parses a query string.
    pub fn parse(query: Option<&str>) -> Self {
        let mut raw: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in form_pairs(query.unwrap_or("")) {
            raw.entry(k).or_default().push(v);
        }
        Params { raw }
    }

    /// The first value of a parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.raw.get(name)?.first().map(String::as_str)
    }

    /// Sets a parameter, replacing any values it had.
    pub fn set(&mut self, name: &str, value: &str) {
        self.raw.insert(name.to_string(), vec![value.to_string()]);
    }

    /// A boolean parameter (`true`/`1`).
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), Some("true" | "1"))
    }

    /// An integer parameter; 400 when it does not parse.
    pub fn int(&self, name: &str) -> Result<Option<i64>, StatusError> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                StatusError::bad_request(format!(
                    "invalid value for {name}: {v:?} is not an integer"
                ))
            }),
        }
    }

    /// Whether `dryRun=All` was asked for; 400 for other values.
    pub fn dry_run(&self) -> Result<bool, StatusError> {
        let Some(values) = self.raw.get("dryRun") else {
            return Ok(false);
        };
        for v in values {
            if v != "All" {
                return Err(StatusError::bad_request(format!(
                    "Invalid dryRun value: {v:?}; the only supported value is \"All\""
                )));
            }
        }
        Ok(!values.is_empty())
    }
}

fn form_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Group, namespace, resource, name, subresource.
    type Parsed<'a> = (
        &'a str,
        Option<&'a str>,
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
    );

    fn check(path: &str, expected: Option<Parsed<'_>>) {
        let got = match parse_path(path) {
            Some(Target::Resource(r)) => Some(r),
            _ => None,
        };
        let got = got.as_ref().map(|r| {
            (
                r.group.as_str(),
                r.namespace.as_deref(),
                r.resource.as_str(),
                r.name.as_deref(),
                r.subresource.as_deref(),
            )
        });
        assert_eq!(got, expected, "{path}");
    }

    #[test]
    fn paths_split_like_kubernetes_request_info() {
        check("/api/v1/pods", Some(("", None, "pods", None, None)));
        check(
            "/api/v1/namespaces/ns/pods/p",
            Some(("", Some("ns"), "pods", Some("p"), None)),
        );
        check(
            "/apis/apps/v1/namespaces/ns/deployments/d/scale",
            Some(("apps", Some("ns"), "deployments", Some("d"), Some("scale"))),
        );
        check(
            "/api/v1/namespaces",
            Some(("", None, "namespaces", None, None)),
        );
        check(
            "/api/v1/namespaces/ns",
            Some(("", None, "namespaces", Some("ns"), None)),
        );
        check(
            "/api/v1/namespaces/ns/status",
            Some(("", None, "namespaces", Some("ns"), Some("status"))),
        );
        check(
            "/api/v1/watch/namespaces/ns/pods",
            Some(("", Some("ns"), "pods", None, None)),
        );
        check("/api/v1/namespaces/ns/pods/p/log/extra", None);
        check(
            "/api/v1/namespaces/ns/services/web:80/proxy/a/b/",
            Some(("", Some("ns"), "services", Some("web:80"), Some("proxy"))),
        );
        check(
            "/api/v1/nodes/n1/proxy",
            Some(("", None, "nodes", Some("n1"), Some("proxy"))),
        );
        let proxied = |path: &str| match parse_path(path) {
            Some(Target::Resource(r)) => r.proxy_path,
            _ => None,
        };
        assert_eq!(
            proxied("/api/v1/namespaces/ns/pods/p:8080/proxy/a/b/").as_deref(),
            Some("/a/b/")
        );
        assert_eq!(proxied("/api/v1/nodes/n1/proxy/").as_deref(), Some("/"));
        assert_eq!(proxied("/api/v1/namespaces/ns/pods/p").as_deref(), None);
        check("/healthz", None);
        assert_eq!(parse_path("/apis"), Some(Target::Root { core: false }));
        assert_eq!(
            parse_path("/apis/apps/v1"),
            Some(Target::GroupVersion {
                group: "apps".into(),
                version: "v1".into()
            })
        );
    }

    #[test]
    fn query_values_are_decoded() {
        let p = Params::parse(Some(
            "labelSelector=app%3Dweb%2Ctier+in+(a)&limit=5&dryRun=All",
        ));
        assert_eq!(p.get("labelSelector"), Some("app=web,tier in (a)"));
        assert_eq!(p.int("limit").unwrap(), Some(5));
        assert!(p.dry_run().unwrap());
        assert!(Params::parse(Some("limit=x")).int("limit").is_err());
        assert_eq!(Params::parse(Some("a=%zz%2")).get("a"), Some("%zz%2"));
    }
}
