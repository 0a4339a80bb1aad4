//! Charts from Helm chart repositories over HTTP(S), as an Application names them (Argo CD's
//! `repoURL` + `chart` + `targetRevision`): the repository's `index.yaml` is read, the version
//! picked (an exact version, or the highest that a Masterminds semver range admits; empty or
//! `*`: the newest release), and the archive downloaded once per version into
//! `DATA_DIR/charts/<repository>/<chart>-<version>.tgz`, its SHA-256 checked against the
//! index's `digest` (also before a cached archive is used again).
//!
//! Network only where the Application points: the repository, and the archive URLs its
//! `index.yaml` lists (on another host too, as helm follows them). The repository's
//! credentials go to the repository's own scheme, host and port only, unless
//! `helm.passCredentials` is set (helm's `--pass-credentials`). How the repository is reached
//! ([`Access`]) comes from the Secret that `secretRef` names: `username` and `password` (or
//! `token`), `ca.crt` (PEM certificates trusted instead of the system's roots: Flux's
//! `certSecretRef` key) and `insecure: "true"` (no certificate verification: Argo CD's repository
//! Secret key).
//!
//! `oci://host/path` is a registry holding charts as OCI artifacts (`helm push`): the tags are
//! the versions, the manifest's config and chart layer carry Helm's media types, and the layer's
//! digest is checked ([`pull_oci`]). Rendering stays in `templates` (pure): this module only
//! brings the bytes.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use kube::api::Api;
use sha2::Digest;

use super::application::Source;
use super::repo::Credentials;
use templates::helm::semver;

/// The largest index or archive read (helm refuses charts past 100 MiB decompressed).
const MAX_BODY: u64 = 100 * 1024 * 1024;

/// Why a chart could not be had from its repository.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// `repoURL` is not a chart repository's URL.
    #[error(
        "spec.source.repoURL {url:?}: spec.source.chart needs an http://, https:// or oci:// chart repository"
    )]
    NotChartRepository {
        /// The URL given.
        url: String,
    },
    /// The repository could not be reached or answered an error.
    #[error("{url}: {source}")]
    Request {
        /// What was asked for.
        url: String,
        /// What went wrong.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The Secret's `ca.crt` holds no readable PEM certificate.
    #[error("secret {secret}: ca.crt: {source}")]
    CaCertificate {
        /// `namespace/name` of the Secret.
        secret: String,
        /// What did not parse.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The Secret's `ca.crt` has no certificate at all.
    #[error("secret {secret}: ca.crt holds no PEM certificate")]
    NoCaCertificate {
        /// `namespace/name` of the Secret.
        secret: String,
    },
    /// The Secret `secretRef` names could not be read.
    #[error("reading secret {namespace}/{name}: {source}")]
    Secret {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// What the API server answered.
        #[source]
        source: kube::Error,
    },
    /// `index.yaml` is not UTF-8 text.
    #[error("{url}: not UTF-8 text")]
    IndexNotText {
        /// The index's URL.
        url: String,
        /// The decoding error.
        #[source]
        source: std::string::FromUtf8Error,
    },
    /// `index.yaml` is not YAML.
    #[error("{url}: {source}")]
    IndexYaml {
        /// The index's URL.
        url: String,
        /// What did not parse.
        #[source]
        source: templates::yaml::YamlError,
    },
    /// An entry of `index.yaml` lacks what a download needs.
    #[error("{url}: entries.{chart}{entry}: {problem}")]
    IndexEntry {
        /// The index's URL.
        url: String,
        /// The chart.
        chart: String,
        /// `[i]`, or empty when the list itself is wrong.
        entry: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// A registry's answer is not the JSON it should be.
    #[error("{url}: {source}")]
    RegistryJson {
        /// What was asked for.
        url: String,
        /// What did not parse.
        #[source]
        source: serde_json::Error,
    },
    /// The OCI artifact is not a Helm chart (its config or layer media type).
    #[error("{url}: not a Helm chart: {problem}")]
    NotAChart {
        /// The manifest's URL.
        url: String,
        /// What is missing.
        problem: String,
    },
    /// The registry has no tag of the chart.
    #[error("chart {chart:?} in {repo}: the registry lists no tags")]
    NoTags {
        /// The chart.
        chart: String,
        /// The registry.
        repo: String,
    },
    /// The chart is not in the repository's index.
    #[error("chart {chart:?} in {repo}: not in the repository's index.yaml")]
    NotInIndex {
        /// The chart.
        chart: String,
        /// The repository.
        repo: String,
    },
    /// No version of the chart matches `targetRevision`.
    #[error("chart {chart:?} in {repo}: {source}")]
    NoVersion {
        /// The chart.
        chart: String,
        /// The repository.
        repo: String,
        /// Why.
        #[source]
        source: PickError,
    },
    /// The archive is not what the index says.
    #[error("{url}: digest mismatch: index.yaml says sha256 {want}, the archive has {got}")]
    Digest {
        /// The archive's URL.
        url: String,
        /// The index's digest.
        want: String,
        /// The archive's.
        got: String,
    },
    /// The cache could not be written or read.
    #[error("{path}: {source}")]
    Cache {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Why no version of a chart was picked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PickError {
    /// `targetRevision` is neither a listed version nor a constraint.
    #[error("targetRevision {target:?} is neither a listed version nor a semver range: {reason}")]
    NotARange {
        /// `targetRevision`.
        target: String,
        /// What the constraint parser said.
        reason: String,
    },
    /// No listed version is in the range.
    #[error("no version matches {range:?} (listed: {listed})")]
    NoneMatches {
        /// The range.
        range: String,
        /// The first versions listed (`none` when there are none).
        listed: String,
    },
}

/// A chart archive in the cache, verified against the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pulled {
    /// The version picked.
    pub version: String,
    /// The `.tgz` in the cache.
    pub archive: PathBuf,
    /// Its SHA-256 (hex), as the index gives it.
    pub digest: String,
}

/// How a chart repository is reached, from the Secret `secretRef` names and
/// `helm.passCredentials`.
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// `username` and `password` (or `token`), sent as HTTP basic authentication.
    pub creds: Credentials,
    /// PEM certificates trusted for https instead of the system's roots (`ca.crt`).
    pub ca_pem: Option<Vec<u8>>,
    /// `namespace/name` of the Secret, for messages.
    pub secret: String,
    /// No certificate verification (`insecure: "true"`).
    pub insecure_skip_verify: bool,
    /// Credentials go to archive hosts other than the repository's too.
    pub pass_credentials: bool,
}

impl From<Credentials> for Access {
    fn from(creds: Credentials) -> Self {
        Access {
            creds,
            ..Access::default()
        }
    }
}

impl Access {
    /// The access the Secret's `data` (and `helm.passCredentials`) describe.
    pub fn from_secret(secret: &str, data: &BTreeMap<String, Vec<u8>>, pass: bool) -> Access {
        let text = |k: &str| {
            data.get(k).map(|b| {
                String::from_utf8_lossy(b)
                    .trim_end_matches('\n')
                    .to_string()
            })
        };
        Access {
            creds: Credentials {
                username: text("username"),
                password: text("password").or_else(|| text("token")),
                ssh_private_key: None,
            },
            ca_pem: data.get("ca.crt").cloned(),
            secret: secret.to_string(),
            insecure_skip_verify: text("insecure").is_some_and(|v| v.trim() == "true"),
            pass_credentials: pass,
        }
    }
}

/// The [`Access`] of an Application's chart repository: its `secretRef` Secret (`namespace/name`,
/// or `name` in `default`) read with `client`, and its `helm.passCredentials`.
pub async fn access(client: &kube::Client, source: &Source) -> Result<Access, ChartError> {
    let pass = source.helm.as_ref().is_some_and(|h| h.pass_credentials);
    let Some(r) = source.secret_ref.as_deref().filter(|s| !s.is_empty()) else {
        return Ok(Access {
            pass_credentials: pass,
            ..Access::default()
        });
    };
    let (ns, name) = r.split_once('/').unwrap_or(("default", r));
    let api: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), ns);
    let secret = api.get(name).await.map_err(|source| ChartError::Secret {
        namespace: ns.to_string(),
        name: name.to_string(),
        source,
    })?;
    let mut data: BTreeMap<String, Vec<u8>> = secret
        .string_data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    data.extend(
        secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0)),
    );
    Ok(Access::from_secret(&format!("{ns}/{name}"), &data, pass))
}

/// Whether `repo_url` names a chart repository reached over HTTP(S) (as opposed to Git).
pub fn is_http(repo_url: &str) -> bool {
    repo_url.starts_with("http://") || repo_url.starts_with("https://")
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> &str {
    let after = url.find("://").map(|i| i + 3).unwrap_or(0);
    match url[after..].find('/') {
        Some(i) => &url[..after + i],
        None => url,
    }
}

/// An HTTP client for `access`: its CA, or no verification.
fn agent(access: &Access) -> Result<ureq::Agent, ChartError> {
    let mut tls = ureq::tls::TlsConfig::builder().disable_verification(access.insecure_skip_verify);
    if let Some(pem) = &access.ca_pem {
        let bad = |source| ChartError::CaCertificate {
            secret: access.secret.clone(),
            source: Box::new(source),
        };
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(pem) {
            if let ureq::tls::PemItem::Certificate(c) = item.map_err(bad)? {
                certs.push(c);
            }
        }
        if certs.is_empty() {
            return Err(ChartError::NoCaCertificate {
                secret: access.secret.clone(),
            });
        }
        tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
    }
    Ok(ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(120)))
        .tls_config(tls.build())
        .build()
        .into())
}

fn get(
    agent: &ureq::Agent,
    url: &str,
    creds: Option<&Credentials>,
    accept: Option<&str>,
) -> Result<Vec<u8>, ChartError> {
    let failed = |source: ureq::Error| ChartError::Request {
        url: url.to_string(),
        source: Box::new(source),
    };
    let mut request = agent.get(url);
    if let Some(accept) = accept {
        request = request.header("Accept", accept);
    }
    if let Some(creds) = creds
        && let Some(password) = &creds.password
    {
        let user = creds.username.clone().unwrap_or_default();
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        request = request.header("Authorization", &format!("Basic {token}"));
    }
    let mut response = request.call().map_err(failed)?;
    response
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_vec()
        .map_err(failed)
}

/// One version of a chart in `index.yaml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// `version`.
    pub version: String,
    /// `urls[0]`.
    pub url: String,
    /// `digest` (SHA-256 hex).
    pub digest: String,
}

/// The versions of `chart` that `index.yaml` (read from `url`) lists.
pub fn parse_index(url: &str, text: &str, chart: &str) -> Result<Vec<IndexEntry>, ChartError> {
    let bad = |entry: String, problem| ChartError::IndexEntry {
        url: url.to_string(),
        chart: chart.to_string(),
        entry,
        problem,
    };
    let index = templates::yaml::parse_value("index.yaml", text, templates::yaml::Dialect::Kubectl)
        .map_err(|source| ChartError::IndexYaml {
            url: url.to_string(),
            source,
        })?;
    let Some(entries) = index.get("entries").and_then(|e| e.get(chart)) else {
        return Ok(Vec::new());
    };
    let Some(list) = entries.as_array() else {
        return Err(bad(String::new(), "not a list"));
    };
    let mut out = Vec::new();
    for (i, e) in list.iter().enumerate() {
        let field = |k: &str| match e.get(k) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        let url = e
            .get("urls")
            .and_then(|u| u.as_array())
            .and_then(|u| u.first())
            .and_then(|u| u.as_str())
            .unwrap_or_default()
            .to_string();
        if url.is_empty() {
            return Err(bad(format!("[{i}]"), "no urls"));
        }
        out.push(IndexEntry {
            version: field("version"),
            url,
            digest: field("digest").to_lowercase(),
        });
    }
    Ok(out)
}

/// The entry `target` picks: the exact version when one is listed, else the highest version the
/// range admits (empty: `*`, the newest release).
pub fn pick<'a>(entries: &'a [IndexEntry], target: &str) -> Result<&'a IndexEntry, PickError> {
    let target = target.trim();
    if let Some(e) = entries
        .iter()
        .find(|e| !target.is_empty() && e.version == target)
    {
        return Ok(e);
    }
    let range = if target.is_empty() { "*" } else { target };
    let constraint = semver::Constraint::parse(range).map_err(|reason| PickError::NotARange {
        target: target.to_string(),
        reason,
    })?;
    entries
        .iter()
        .filter_map(|e| semver::Version::parse(&e.version).map(|v| (v, e)))
        .filter(|(v, _)| constraint.matches(v))
        .max_by(|(a, _), (b, _)| a.cmp(b))
        .map(|(_, e)| e)
        .ok_or_else(|| {
            let mut listed: Vec<&str> = entries.iter().map(|e| e.version.as_str()).collect();
            listed.truncate(10);
            PickError::NoneMatches {
                range: range.to_string(),
                listed: if listed.is_empty() {
                    "none".to_string()
                } else {
                    listed.join(", ")
                },
            }
        })
}

fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The cache directory of one repository.
fn cache_dir(charts: &Path, repo_url: &str) -> PathBuf {
    let name: String = repo_url
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    charts.join(name.trim_matches('_'))
}

/// `s` as a file-name part.
fn safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes `bytes` to `archive` (through a temporary file in its directory).
fn store(archive: &Path, bytes: &[u8]) -> Result<(), ChartError> {
    let cache = |source: std::io::Error| ChartError::Cache {
        path: archive.display().to_string(),
        source,
    };
    let dir = archive.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(cache)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(cache)?;
    tmp.write_all(bytes).map_err(cache)?;
    tmp.persist(archive).map_err(|e| cache(e.error))?;
    Ok(())
}

/// Resolves `chart` at `target` in the repository `repo_url` and makes sure its verified
/// archive is in the cache under `charts` (downloaded only when missing or not matching).
pub fn pull(
    charts: &Path,
    repo_url: &str,
    chart: &str,
    target: &str,
    access: &Access,
) -> Result<Pulled, ChartError> {
    if repo_url.starts_with("oci://") {
        return pull_oci(charts, repo_url, chart, target, access);
    }
    if !is_http(repo_url) {
        return Err(ChartError::NotChartRepository {
            url: repo_url.to_string(),
        });
    }
    let agent = agent(access)?;
    let base = repo_url.trim_end_matches('/');
    let index_url = format!("{base}/index.yaml");
    let index = get(&agent, &index_url, Some(&access.creds), None)?;
    let text = String::from_utf8(index).map_err(|source| ChartError::IndexNotText {
        url: index_url.clone(),
        source,
    })?;
    let entries = parse_index(&index_url, &text, chart)?;
    if entries.is_empty() {
        return Err(ChartError::NotInIndex {
            chart: chart.to_string(),
            repo: repo_url.to_string(),
        });
    }
    let entry = pick_in(&entries, chart, repo_url, target)?;
    let url = if entry.url.contains("://") {
        entry.url.clone()
    } else {
        format!("{base}/{}", entry.url.trim_start_matches("./"))
    };
    if entry.digest.len() != 64 {
        return Err(ChartError::IndexEntry {
            url: index_url,
            chart: chart.to_string(),
            entry: format!("[version={}]", entry.version),
            problem: "no sha256 digest",
        });
    }
    // helm sends the repository's credentials to another host only with --pass-credentials.
    let creds = (origin(&url) == origin(base) || access.pass_credentials).then_some(&access.creds);
    let wanted = in_cache(charts, repo_url, chart, &entry.version, &entry.digest);
    fetch_archive(&agent, wanted, url, creds)
}

/// The entry `target` picks among the versions `repo_url` lists for `chart`.
fn pick_in<'a>(
    entries: &'a [IndexEntry],
    chart: &str,
    repo_url: &str,
    target: &str,
) -> Result<&'a IndexEntry, ChartError> {
    pick(entries, target).map_err(|source| ChartError::NoVersion {
        chart: chart.to_string(),
        repo: repo_url.to_string(),
        source,
    })
}

/// Where `chart` at `version` of `repo_url` is kept under `charts`, with the digest it must have.
fn in_cache(charts: &Path, repo_url: &str, chart: &str, version: &str, digest: &str) -> Pulled {
    Pulled {
        version: version.to_string(),
        archive: cache_dir(charts, repo_url).join(format!("{}-{}.tgz", safe(chart), safe(version))),
        digest: digest.to_string(),
    }
}

/// The archive `wanted` names: kept when the cache holds it with its digest, else downloaded
/// from `url` (with `creds`), checked against the digest and stored.
fn fetch_archive(
    agent: &ureq::Agent,
    wanted: Pulled,
    url: String,
    creds: Option<&Credentials>,
) -> Result<Pulled, ChartError> {
    if std::fs::read(&wanted.archive).is_ok_and(|b| sha256_hex(&b) == wanted.digest) {
        return Ok(wanted);
    }
    let bytes = get(agent, &url, creds, None)?;
    let got = sha256_hex(&bytes);
    if got != wanted.digest {
        return Err(ChartError::Digest {
            url,
            want: wanted.digest,
            got,
        });
    }
    store(&wanted.archive, &bytes)?;
    Ok(wanted)
}

/// The media type of a Helm chart artifact's config (helm's `ConfigMediaType`).
pub const HELM_CONFIG_MEDIA_TYPE: &str = "application/vnd.cncf.helm.config.v1+json";
/// The media type of its chart layer (helm's `ChartLayerMediaType`).
pub const HELM_CHART_MEDIA_TYPE: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";

/// `oci://host[:port]/path` as the registry's base URL and the chart's repository name
/// (`path/chart`). Loopback registries are spoken to over plain HTTP, as Docker treats them
/// (`127.0.0.0/8` and `localhost` are insecure registries by default); others over HTTPS.
fn oci_parts(repo_url: &str, chart: &str) -> (String, String) {
    let rest = repo_url.trim_start_matches("oci://").trim_end_matches('/');
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let hostname = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => host.split(':').next().unwrap_or(host),
    };
    let loopback = hostname == "localhost"
        || hostname
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let scheme = if loopback { "http" } else { "https" };
    let name = if path.is_empty() {
        chart.to_string()
    } else {
        format!("{path}/{chart}")
    };
    (format!("{scheme}://{host}"), name)
}

/// [`pull`] from an OCI registry (Helm's OCI charts): the tags are the versions (`_` standing
/// for `+`, as helm pushes them), the manifest's config must be a Helm chart's, and its chart
/// layer is the archive, checked against the layer's SHA-256 digest. The registry's own
/// credentials (basic authentication) are sent; token-authenticated registries are not yet
/// spoken to.
fn pull_oci(
    charts: &Path,
    repo_url: &str,
    chart: &str,
    target: &str,
    access: &Access,
) -> Result<Pulled, ChartError> {
    let agent = agent(access)?;
    let (base, name) = oci_parts(repo_url, chart);
    let json = |url: &str, bytes: Vec<u8>| {
        serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|source| {
            ChartError::RegistryJson {
                url: url.to_string(),
                source,
            }
        })
    };
    let tags_url = format!("{base}/v2/{name}/tags/list");
    let tags = json(
        &tags_url,
        get(&agent, &tags_url, Some(&access.creds), None)?,
    )?;
    let entries: Vec<IndexEntry> = tags
        .get("tags")
        .and_then(|t| t.as_array())
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str())
        .map(|t| IndexEntry {
            version: t.replace('_', "+"),
            url: t.to_string(),
            digest: String::new(),
        })
        .collect();
    if entries.is_empty() {
        return Err(ChartError::NoTags {
            chart: chart.to_string(),
            repo: repo_url.to_string(),
        });
    }
    let entry = pick_in(&entries, chart, repo_url, target)?;
    let manifest_url = format!("{base}/v2/{name}/manifests/{}", entry.url);
    let manifest = json(
        &manifest_url,
        get(
            &agent,
            &manifest_url,
            Some(&access.creds),
            Some("application/vnd.oci.image.manifest.v1+json"),
        )?,
    )?;
    let not_a_chart = |problem: String| ChartError::NotAChart {
        url: manifest_url.clone(),
        problem,
    };
    let config = manifest
        .pointer("/config/mediaType")
        .and_then(|m| m.as_str())
        .unwrap_or_default();
    if config != HELM_CONFIG_MEDIA_TYPE {
        return Err(not_a_chart(format!(
            "config mediaType {config:?}, not {HELM_CONFIG_MEDIA_TYPE}"
        )));
    }
    let layer = manifest
        .get("layers")
        .and_then(|l| l.as_array())
        .into_iter()
        .flatten()
        .find(|l| l.get("mediaType").and_then(|m| m.as_str()) == Some(HELM_CHART_MEDIA_TYPE))
        .and_then(|l| l.get("digest").and_then(|d| d.as_str()))
        .ok_or_else(|| not_a_chart(format!("no layer of mediaType {HELM_CHART_MEDIA_TYPE}")))?;
    let digest = layer
        .strip_prefix("sha256:")
        .filter(|d| d.len() == 64)
        .ok_or_else(|| not_a_chart(format!("layer digest {layer:?} is not sha256")))?
        .to_lowercase();
    let wanted = in_cache(charts, repo_url, chart, &entry.version, &digest);
    let url = format!("{base}/v2/{name}/blobs/{layer}");
    fetch_archive(&agent, wanted, url, Some(&access.creds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(versions: &[&str]) -> Vec<IndexEntry> {
        versions
            .iter()
            .map(|v| IndexEntry {
                version: v.to_string(),
                url: format!("c-{v}.tgz"),
                digest: String::new(),
            })
            .collect()
    }

    #[test]
    fn versions_are_picked_exactly_or_as_the_highest_in_range() {
        let e = entries(&["1.2.0", "1.10.1", "2.0.0-rc.1", "1.9.9", "0.5.0"]);
        let v = |t: &str| pick(&e, t).map(|e| e.version.clone());
        assert_eq!(v("1.9.9").as_deref(), Ok("1.9.9"));
        assert_eq!(v("").as_deref(), Ok("1.10.1"));
        assert_eq!(v("*").as_deref(), Ok("1.10.1"));
        assert_eq!(v("~1.2").as_deref(), Ok("1.2.0"));
        assert_eq!(v("^1.0.0").as_deref(), Ok("1.10.1"));
        assert_eq!(v(">=2.0.0-0").as_deref(), Ok("2.0.0-rc.1"));
        assert_eq!(v("2.0.0-rc.1").as_deref(), Ok("2.0.0-rc.1"));
        assert_eq!(
            v("3.x"),
            Err(PickError::NoneMatches {
                range: "3.x".into(),
                listed: "1.2.0, 1.10.1, 2.0.0-rc.1, 1.9.9, 0.5.0".into()
            })
        );
    }

    #[test]
    fn index_entries_are_read_and_origins_compared() {
        let text = "apiVersion: v1\nentries:\n  web:\n  - version: 1.0.0\n    digest: ABC\n    urls: [charts/web-1.0.0.tgz]\n";
        let got = parse_index("http://h/index.yaml", text, "web").expect("index");
        assert_eq!(
            got,
            vec![IndexEntry {
                version: "1.0.0".into(),
                url: "charts/web-1.0.0.tgz".into(),
                digest: "abc".into()
            }]
        );
        assert!(
            parse_index("http://h/index.yaml", text, "other")
                .expect("index")
                .is_empty()
        );
        assert_eq!(
            origin("http://127.0.0.1:8080/charts"),
            "http://127.0.0.1:8080"
        );
        assert_eq!(origin("https://h"), "https://h");
    }

    #[test]
    fn oci_references_name_the_registry_and_the_repository() {
        let check = |url: &str, base: &str, name: &str| {
            assert_eq!(
                oci_parts(url, "web"),
                (base.to_string(), name.to_string()),
                "{url}"
            );
        };
        check(
            "oci://127.0.0.1:5000/charts",
            "http://127.0.0.1:5000",
            "charts/web",
        );
        check("oci://localhost:5000/", "http://localhost:5000", "web");
        check("oci://[::1]:5000/a/b", "http://[::1]:5000", "a/b/web");
        check(
            "oci://ghcr.io/org/charts",
            "https://ghcr.io",
            "org/charts/web",
        );
    }
}
