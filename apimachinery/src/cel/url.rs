//! Kubernetes' CEL URL library: `url(s)`, `isURL(s)`, and on URLs `getScheme()`, `getHost()`,
//! `getHostname()`, `getPort()`, `getEscapedPath()`, `getQuery()`.
//!
//! URLs are split as Go's `url.ParseRequestURI` does (an absolute URL or an absolute path),
//! keeping what was written: the `url` crate normalises (drops default ports, lowercases,
//! resolves dots), which would answer `getPort()` differently from Kubernetes.

use std::collections::BTreeMap;
use std::sync::Arc;

use cel::extractors::This;
use cel::objects::Opaque;
use cel::{Context, ExecutionError, Value};

/// A URL split into the parts the library returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    scheme: String,
    host: String,
    path: String,
    query: String,
}

impl Opaque for Url {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.URL"
    }
}

impl Url {
    /// Parses an absolute URL (`https://host:port/path?query`) or an absolute path
    /// (`/path?query`); a fragment is dropped.
    pub fn parse(s: &str) -> Option<Url> {
        if s.chars().any(|c| c.is_ascii_control() || c == ' ') {
            return None;
        }
        let s = s.split_once('#').map_or(s, |(a, _)| a);
        let (rest, query) = s.split_once('?').unwrap_or((s, ""));
        if rest.starts_with('/') {
            return Some(Url {
                scheme: String::new(),
                host: String::new(),
                path: rest.to_string(),
                query: query.to_string(),
            });
        }
        let (scheme, rest) = rest.split_once(':')?;
        let mut chars = scheme.chars();
        if !chars.next()?.is_ascii_alphabetic()
            || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        {
            return None;
        }
        let (host, path) = match rest.strip_prefix("//") {
            Some(rest) => match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            },
            None if rest.starts_with('/') => ("", rest),
            None => return None,
        };
        let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
        Some(Url {
            scheme: scheme.to_string(),
            host: host.to_string(),
            path: path.to_string(),
            query: query.to_string(),
        })
    }

    /// The host without its port (and without the brackets of an IPv6 address).
    fn hostname(&self) -> &str {
        if let Some(rest) = self.host.strip_prefix('[') {
            return rest.split_once(']').map_or(rest, |(h, _)| h);
        }
        self.host.split_once(':').map_or(&self.host, |(h, _)| h)
    }

    /// The port written in the host, or empty.
    fn port(&self) -> &str {
        let after = match self.host.rfind(']') {
            Some(i) => &self.host[i + 1..],
            None => &self.host,
        };
        after.split_once(':').map_or("", |(_, p)| p)
    }

    /// The query as a map of lists, values unescaped.
    fn query_map(&self) -> Value {
        let mut map: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for (k, v) in form_pairs(&self.query) {
            map.entry(k).or_default().push(Value::from(v));
        }
        crate::cel::map(map.into_iter().map(|(k, v)| (k, Value::List(Arc::new(v)))))
    }
}

/// `a=1&b=x%20y` as decoded pairs.
fn form_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (unescape(k), unescape(v))
        })
        .collect()
}

fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Adds the URL functions to `context`.
pub fn register(context: &mut Context<'_, '_>) {
    let results = [
        context.add_function("url", |s: Arc<String>| {
            Url::parse(&s)
                .map(|u| Value::Opaque(Arc::new(u)))
                .ok_or_else(|| {
                    ExecutionError::function_error("url", format!("URL parse error: {s:?}"))
                })
        }),
        context.add_function("isURL", |s: Arc<String>| Url::parse(&s).is_some()),
        context.add_function("getScheme", |This(u): This<Arc<dyn Opaque>>| {
            part(&u, "getScheme", |u| Value::from(u.scheme.as_str()))
        }),
        context.add_function("getHost", |This(u): This<Arc<dyn Opaque>>| {
            part(&u, "getHost", |u| Value::from(u.host.as_str()))
        }),
        context.add_function("getHostname", |This(u): This<Arc<dyn Opaque>>| {
            part(&u, "getHostname", |u| Value::from(u.hostname()))
        }),
        context.add_function("getPort", |This(u): This<Arc<dyn Opaque>>| {
            part(&u, "getPort", |u| Value::from(u.port()))
        }),
        context.add_function("getEscapedPath", |This(u): This<Arc<dyn Opaque>>| {
            part(&u, "getEscapedPath", |u| Value::from(u.path.as_str()))
        }),
        context.add_function("getQuery", |This(u): This<Arc<dyn Opaque>>| {
            part(&u, "getQuery", Url::query_map)
        }),
    ];
    debug_assert!(results.iter().all(Result::is_ok));
}

fn part(
    u: &Arc<dyn Opaque>,
    function: &str,
    get: impl Fn(&Url) -> Value,
) -> Result<Value, ExecutionError> {
    u.downcast_ref::<Url>()
        .map(get)
        .ok_or_else(|| ExecutionError::function_error(function, "receiver is not a URL"))
}

#[cfg(test)]
mod tests {
    use crate::cel::{Activation, compile, evaluate_bool};

    fn check(expression: &str, expected: Result<bool, &str>) {
        let got = compile(expression, &[]).and_then(|p| evaluate_bool(&p, &Activation::new()));
        match expected {
            Ok(b) => assert_eq!(got, Ok(b), "{expression}"),
            Err(text) => {
                let err = got.expect_err(expression).to_string();
                assert!(err.contains(text), "{expression}: {err}");
            }
        }
    }

    #[test]
    fn url_parts_are_returned_as_written() {
        for expression in [
            "url('https://example.com:8443/a/b?x=1').getScheme() == 'https'",
            "url('https://example.com:8443/a/b').getHost() == 'example.com:8443'",
            "url('https://example.com:8443/a/b').getHostname() == 'example.com'",
            "url('https://example.com:443/').getPort() == '443'",
            "url('https://example.com').getPort() == ''",
            "url('https://[::1]:80/').getHostname() == '::1'",
            "url('https://[::1]:80/').getPort() == '80'",
            "url('https://example.com/a%20b').getEscapedPath() == '/a%20b'",
            "url('/just/a/path').getEscapedPath() == '/just/a/path'",
            "url('https://e.com/?k=a&k=b&j=x%20y').getQuery() == {'k': ['a', 'b'], 'j': ['x y']}",
            "isURL('https://example.com')",
            "!isURL('not a url')",
            "!isURL('example.com')",
        ] {
            check(expression, Ok(true));
        }
    }

    #[test]
    fn a_bad_url_is_an_evaluation_error() {
        check("url('::').getHost() == ''", Err("URL parse error"));
    }
}
