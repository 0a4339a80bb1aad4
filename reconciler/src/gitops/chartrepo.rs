//! Charts from Helm chart repositories over HTTP(S), as an Application names them (Argo CD's
//! `repoURL` + `chart` + `targetRevision`): the repository's `index.yaml` is read, the version
//! picked (an exact version, or the highest that a Masterminds semver range admits; empty or
//! `*`: the newest release), and the archive downloaded once per version into
//! `DATA_DIR/charts/<repository>/<chart>-<version>.tgz`, its SHA-256 checked against the
//! index's `digest` (also before a cached archive is used again).
//!
//! Network only where the Application points: the archive must lie on the repository's own
//! scheme, host and port (helm would follow an index to any host); credentials from the
//! Application's `secretRef` go to that host only. Rendering stays in `templates` (pure): this
//! module only brings the bytes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use sha2::Digest;

use super::repo::Credentials;
use templates::helm::semver;

/// The largest index or archive read (helm refuses charts past 100 MiB decompressed).
const MAX_BODY: u64 = 100 * 1024 * 1024;

/// Why a chart could not be had from its repository.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// The repository could not be reached or answered an error.
    #[error("{url}: {message}")]
    Http {
        /// What was asked for.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// `index.yaml` is malformed.
    #[error("{url}: {message}")]
    Index {
        /// The index's URL.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// No version of the chart matches `targetRevision`.
    #[error("chart {chart:?} in {repo}: {message}")]
    NoVersion {
        /// The chart.
        chart: String,
        /// The repository.
        repo: String,
        /// Why.
        message: String,
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
    /// The cache could not be written.
    #[error("{path}: {source}")]
    Cache {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
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

fn get(url: &str, creds: &Credentials, send_creds: bool) -> Result<Vec<u8>, ChartError> {
    let http = |message: String| ChartError::Http {
        url: url.to_string(),
        message,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let mut request = agent.get(url);
    if send_creds && let Some(password) = &creds.password {
        let user = creds.username.clone().unwrap_or_default();
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        request = request.header("Authorization", &format!("Basic {token}"));
    }
    let mut response = request.call().map_err(|e| http(e.to_string()))?;
    response
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_vec()
        .map_err(|e| http(e.to_string()))
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
    let bad = |message: String| ChartError::Index {
        url: url.to_string(),
        message,
    };
    let index = templates::yaml::parse_value("index.yaml", text, templates::yaml::Dialect::Kubectl)
        .map_err(|e| bad(e.to_string()))?;
    let Some(entries) = index.pointer(&format!("/entries/{chart}")) else {
        return Ok(Vec::new());
    };
    let Some(list) = entries.as_array() else {
        return Err(bad(format!("entries.{chart} is not a list")));
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
            return Err(bad(format!("entries.{chart}[{i}]: no urls")));
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
pub fn pick<'a>(entries: &'a [IndexEntry], target: &str) -> Result<&'a IndexEntry, String> {
    let target = target.trim();
    if let Some(e) = entries
        .iter()
        .find(|e| !target.is_empty() && e.version == target)
    {
        return Ok(e);
    }
    let range = if target.is_empty() { "*" } else { target };
    let constraint = semver::Constraint::parse(range).map_err(|m| {
        format!("targetRevision {target:?} is neither a listed version nor a semver range: {m}")
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
            format!(
                "no version matches {range:?} (listed: {})",
                if listed.is_empty() {
                    "none".to_string()
                } else {
                    listed.join(", ")
                }
            )
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

/// Resolves `chart` at `target` in the repository `repo_url` and makes sure its verified
/// archive is in the cache under `charts` (downloaded only when missing or not matching).
pub fn pull(
    charts: &Path,
    repo_url: &str,
    chart: &str,
    target: &str,
    creds: &Credentials,
) -> Result<Pulled, ChartError> {
    let base = repo_url.trim_end_matches('/');
    let index_url = format!("{base}/index.yaml");
    let index = get(&index_url, creds, true)?;
    let text = String::from_utf8(index).map_err(|_| ChartError::Index {
        url: index_url.clone(),
        message: "not UTF-8 text".into(),
    })?;
    let entries = parse_index(&index_url, &text, chart)?;
    let no_version = |message: String| ChartError::NoVersion {
        chart: chart.to_string(),
        repo: repo_url.to_string(),
        message,
    };
    if entries.is_empty() {
        return Err(no_version("not in the repository's index.yaml".into()));
    }
    let entry = pick(&entries, target).map_err(no_version)?;
    let url = if entry.url.contains("://") {
        entry.url.clone()
    } else {
        format!("{base}/{}", entry.url.trim_start_matches("./"))
    };
    if origin(&url) != origin(base) {
        return Err(ChartError::Http {
            url,
            message: format!(
                "index.yaml places the archive outside the repository {}; gitplane reads only what the Application names",
                origin(base)
            ),
        });
    }
    if entry.digest.len() != 64 {
        return Err(ChartError::Index {
            url: index_url,
            message: format!("{chart} {}: no sha256 digest", entry.version),
        });
    }
    let dir = cache_dir(charts, repo_url);
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-+".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let archive = dir.join(format!("{}-{}.tgz", safe(chart), safe(&entry.version)));
    let pulled = Pulled {
        version: entry.version.clone(),
        archive: archive.clone(),
        digest: entry.digest.clone(),
    };
    if std::fs::read(&archive).is_ok_and(|b| sha256_hex(&b) == entry.digest) {
        return Ok(pulled);
    }
    let bytes = get(&url, creds, true)?;
    let got = sha256_hex(&bytes);
    if got != entry.digest {
        return Err(ChartError::Digest {
            url,
            want: entry.digest.clone(),
            got,
        });
    }
    let cache = |source: std::io::Error| ChartError::Cache {
        path: archive.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(cache)?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(cache)?;
    tmp.write_all(&bytes).map_err(cache)?;
    tmp.persist(&archive).map_err(|e| cache(e.error))?;
    Ok(pulled)
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
        let err = v("3.x").expect_err("nothing in range");
        assert!(err.contains("no version matches \"3.x\""), "{err}");
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
}
