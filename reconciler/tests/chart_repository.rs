//! Charts from a Helm chart repository served over HTTP on 127.0.0.1 by the test: a real
//! repository made by `helm package` and `helm repo index`, read by the syncer's chart layer
//! (index, version ranges, digest, cache, credentials, one download per version), and rendered
//! as `helm template` renders the same archive with the same flags. Over HTTPS (a CA made by the
//! test) the repository is read with the Secret's `ca.crt` or `insecure`, and refused otherwise;
//! archives on another host get the credentials only with `passCredentials`. From an OCI
//! registry (the real `docker-registry`, charts pushed by the real `helm push`) a chart is pulled
//! by version or range, verified, and rendered.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use reconciler::gitops::application::{Helm, Parameter, Source};
use reconciler::gitops::chartrepo::{self, Access, ChartError};
use reconciler::gitops::repo::Credentials;
use reconciler::gitops::syncer::render_chart;

fn helm(args: &[&str], dir: &Path) -> String {
    let out = Command::new("helm")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("helm: {e}; install helm v3.17.2 (https://github.com/helm/helm/releases/tag/v3.17.2)")
        });
    assert!(
        out.status.success(),
        "helm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// A chart `web` at `version`, packaged into `repo`.
fn package(work: &Path, repo: &Path, version: &str) {
    let chart = work.join(format!("src-{version}/web"));
    write(
        &chart.join("Chart.yaml"),
        &format!("apiVersion: v2\nname: web\nversion: {version}\nappVersion: \"{version}\"\n"),
    );
    write(
        &chart.join("values.yaml"),
        "replicas: 1\nimage:\n  repository: nginx\n  tag: \"\"\nlabels: {}\n",
    );
    write(
        &chart.join("values-prod.yaml"),
        "replicas: 3\nlabels:\n  env: prod\n",
    );
    write(
        &chart.join("templates/deployment.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}-web\n  namespace: {{ .Release.Namespace }}\n  labels:\n    version: {{ .Chart.Version | quote }}\n    {{- range $k, $v := .Values.labels }}\n    {{ $k }}: {{ $v | quote }}\n    {{- end }}\nspec:\n  replicas: {{ .Values.replicas }}\n  selector:\n    matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      containers:\n        - name: web\n          image: \"{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}\"\n",
    );
    write(
        &chart.join("templates/cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-settings\ndata:\n  code: {{ .Values.code | default \"none\" | quote }}\n",
    );
    helm(
        &[
            "package",
            chart.to_str().expect("utf8"),
            "-d",
            repo.to_str().expect("utf8"),
        ],
        work,
    );
}

/// What the server saw: requests per path.
#[derive(Clone, Default)]
struct Served {
    dir: PathBuf,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    /// `Authorization` header required, when set.
    auth: Option<String>,
    /// The `Authorization` header of every request, in order.
    authorizations: Arc<Mutex<Vec<Option<String>>>>,
}

async fn serve_file(
    State(s): State<Served>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Vec<u8>, StatusCode> {
    *s.hits
        .lock()
        .expect("hits")
        .entry(name.clone())
        .or_default() += 1;
    s.authorizations.lock().expect("authorizations").push(
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    );
    if let Some(want) = &s.auth
        && headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(want.as_str())
    {
        return Err(StatusCode::UNAUTHORIZED);
    }
    std::fs::read(s.dir.join(&name)).map_err(|_| StatusCode::NOT_FOUND)
}

/// Serves `dir` on a free 127.0.0.1 port until the process ends; returns the base URL.
fn start(served: Served) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr")).expect("send");
            let app = axum::Router::new()
                .route("/charts/{name}", axum::routing::get(serve_file))
                .with_state(served);
            axum::serve(listener, app).await.expect("serve");
        });
    });
    let addr = rx.recv().expect("address");
    format!("http://{addr}/charts")
}

fn hits(s: &Served, name: &str) -> usize {
    s.hits.lock().expect("hits").get(name).copied().unwrap_or(0)
}

/// A repository with web 1.0.0, 1.2.0 and 2.0.0, indexed by the real helm.
fn repository() -> (tempfile::TempDir, PathBuf) {
    let work = tempfile::tempdir().expect("tmp");
    let repo = work.path().join("repo");
    std::fs::create_dir_all(&repo).expect("mkdir");
    for v in ["1.0.0", "1.2.0", "2.0.0"] {
        package(work.path(), &repo, v);
    }
    helm(
        &["repo", "index", repo.to_str().expect("utf8")],
        work.path(),
    );
    (work, repo)
}

#[test]
fn a_chart_is_fetched_once_per_version_verified_and_rendered_as_helm_template_renders_it() {
    let (work, repo) = repository();
    let served = Served {
        dir: repo.clone(),
        ..Default::default()
    };
    let url = start(served.clone());
    let charts = work.path().join("data/charts");
    let none = Access::default();

    // A range picks the highest version in it; the archive lands in the cache, verified.
    let pulled = chartrepo::pull(&charts, &url, "web", "~1.0", &none).expect("pull ~1.0");
    assert_eq!(pulled.version, "1.0.0");
    let pulled = chartrepo::pull(&charts, &url, "web", "^1.0.0", &none).expect("pull ^1");
    assert_eq!(pulled.version, "1.2.0");
    assert!(pulled.archive.starts_with(&charts), "{:?}", pulled.archive);
    assert_eq!(
        std::fs::read(&pulled.archive).expect("cached"),
        std::fs::read(repo.join("web-1.2.0.tgz")).expect("served")
    );
    // Pulled again: the index is read again, the archive is not downloaded again.
    let again = chartrepo::pull(&charts, &url, "web", "1.2.0", &none).expect("pull 1.2.0");
    assert_eq!(again, pulled);
    assert_eq!(
        hits(&served, "web-1.2.0.tgz"),
        1,
        "one download per version"
    );
    assert_eq!(hits(&served, "index.yaml"), 3);
    assert_eq!(
        chartrepo::pull(&charts, &url, "web", "", &none)
            .expect("latest")
            .version,
        "2.0.0"
    );

    // The Application's helm options, rendered as `helm template` renders the archive.
    let source = Source {
        repo_url: url.clone(),
        chart: "web".into(),
        target_revision: "^1.0.0".into(),
        helm: Some(Helm {
            release_name: "shop".into(),
            value_files: vec!["values-prod.yaml".into()],
            values: "image:\n  tag: \"1.27\"\nlabels:\n  team: a\n".into(),
            values_object: Some(serde_json::json!({"labels": {"team": "b"}})),
            parameters: vec![
                Parameter {
                    name: "replicas".into(),
                    value: "5".into(),
                    force_string: false,
                },
                Parameter {
                    name: "code".into(),
                    value: "007".into(),
                    force_string: true,
                },
            ],
            ..Default::default()
        }),
        ..Default::default()
    };
    let got = render_chart(&pulled, &source, "app", "prod").expect("render");
    let values = work.path().join("values.yaml");
    // helm merges -f files in order: the chart's values-prod.yaml (the file packaged), then
    // the two inline layers as files.
    write(&values, "image:\n  tag: \"1.27\"\nlabels:\n  team: a\n");
    let object = work.path().join("object.yaml");
    write(&object, "labels:\n  team: b\n");
    let want = helm(
        &[
            "template",
            "shop",
            pulled.archive.to_str().expect("utf8"),
            "-n",
            "prod",
            "-f",
            work.path()
                .join("src-1.2.0/web/values-prod.yaml")
                .to_str()
                .expect("utf8"),
            "-f",
            values.to_str().expect("utf8"),
            "-f",
            object.to_str().expect("utf8"),
            "--set",
            "replicas=5",
            "--set-string",
            "code=007",
        ],
        work.path(),
    );
    let want: Vec<serde_json::Value> =
        templates::yaml::parse_documents("helm", &want, templates::yaml::Dialect::Kubectl)
            .expect("helm output")
            .into_iter()
            .map(|d| d.value)
            .filter(|v| !v.is_null())
            .collect();
    let got_values: Vec<serde_json::Value> = got.iter().map(|(v, _)| v.clone()).collect();
    assert_eq!(
        got_values, want,
        "gitplane's render differs from helm template's"
    );
    assert_eq!(
        got_values[1].pointer("/metadata/labels/team"),
        Some(&serde_json::json!("b"))
    );
    assert_eq!(got[0].1, "web/templates/cm.yaml:1");
}

#[test]
fn a_tampered_archive_missing_versions_and_credentials_are_errors() {
    let (work, repo) = repository();
    let charts = work.path().join("data/charts");
    let none = Access::default();

    // The archive no longer matches the index's digest: refused, nothing cached.
    let served = Served {
        dir: repo.clone(),
        ..Default::default()
    };
    let url = start(served);
    std::fs::write(repo.join("web-2.0.0.tgz"), b"tampered").expect("tamper");
    match chartrepo::pull(&charts, &url, "web", "2.0.0", &none) {
        Err(ChartError::Digest { url: u, .. }) => assert!(u.ends_with("web-2.0.0.tgz"), "{u}"),
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert!(!charts.exists() || std::fs::read_dir(&charts).expect("ls").count() <= 1);

    let err = chartrepo::pull(&charts, &url, "web", "3.x", &none).expect_err("3.x");
    assert!(
        err.to_string().contains("no version matches \"3.x\""),
        "{err}"
    );
    let err = chartrepo::pull(&charts, &url, "nope", "", &none).expect_err("nope");
    assert!(
        err.to_string()
            .contains("not in the repository's index.yaml"),
        "{err}"
    );

    // A repository behind basic auth: refused without the Secret's credentials, read with them.
    let guarded = Served {
        dir: repo.clone(),
        auth: Some("Basic dXNlcjpzM2NyZXQ=".into()),
        ..Default::default()
    };
    let url = start(guarded);
    let err = chartrepo::pull(&charts, &url, "web", "1.0.0", &none).expect_err("no creds");
    assert!(err.to_string().contains("401"), "{err}");
    let creds = Credentials {
        username: Some("user".into()),
        password: Some("s3cret".into()),
        ssh_private_key: None,
    };
    let pulled = chartrepo::pull(&charts, &url, "web", "1.0.0", &creds.into()).expect("with creds");
    assert_eq!(pulled.version, "1.0.0");
}

/// A CA and a certificate for 127.0.0.1 it signed: (CA PEM, certificate PEM, key PEM).
fn certificates() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
    let cert = params.signed_by(&key, &ca).expect("certificate");
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// Serves `dir` under `/charts/` over HTTPS on a free 127.0.0.1 port, with a certificate of a
/// CA made here; returns the base URL and the CA's PEM.
fn start_tls(dir: PathBuf) -> (String, String) {
    use rustls::pki_types::pem::PemObject;
    use std::io::{Read, Write};
    let (ca, cert, key) = certificates();
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("certificate");
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config"),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let (config, dir) = (config.clone(), dir.clone());
            std::thread::spawn(move || {
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut stream = rustls::StreamOwned::new(conn, tcp);
                let mut request = Vec::new();
                let mut byte = [0u8; 1];
                while !request.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte) {
                        Ok(1) => request.push(byte[0]),
                        _ => return,
                    }
                }
                let request = String::from_utf8_lossy(&request).into_owned();
                let path = request.split_whitespace().nth(1).unwrap_or("/");
                let name = path.trim_start_matches("/charts/");
                let response = match std::fs::read(dir.join(name)) {
                    Ok(body) if !name.contains("..") => {
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        r.extend(body);
                        r
                    }
                    _ => {
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec()
                    }
                };
                let _ = stream.write_all(&response);
                stream.conn.send_close_notify();
                let _ = stream.flush();
            });
        }
    });
    (format!("https://127.0.0.1:{port}/charts"), ca)
}

fn secret(pairs: &[(&str, &[u8])]) -> std::collections::BTreeMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_vec()))
        .collect()
}

#[test]
fn an_https_repository_is_read_with_the_secrets_ca_or_insecure_and_refused_otherwise() {
    let (work, repo) = repository();
    let (url, ca) = start_tls(repo);
    let charts = work.path().join("data/charts");

    // The system's roots do not know the test's CA.
    match chartrepo::pull(&charts, &url, "web", "1.0.0", &Access::default()) {
        Err(ChartError::Request { url: u, .. }) => assert!(u.ends_with("/index.yaml"), "{u}"),
        other => panic!("expected a refused certificate, got {other:?}"),
    }
    // The Secret's ca.crt.
    let with_ca = Access::from_secret("default/repo", &secret(&[("ca.crt", ca.as_bytes())]), false);
    let pulled = chartrepo::pull(&charts, &url, "web", "1.0.0", &with_ca).expect("with ca.crt");
    assert_eq!(pulled.version, "1.0.0");
    // insecure: "true" skips verification (the archive is downloaded: another version).
    let insecure = Access::from_secret("default/repo", &secret(&[("insecure", b"true")]), false);
    assert!(insecure.insecure_skip_verify);
    let pulled = chartrepo::pull(&charts, &url, "web", "1.2.0", &insecure).expect("insecure");
    assert!(pulled.archive.is_file());
    // A ca.crt without a certificate is named.
    let bad = Access::from_secret("default/repo", &secret(&[("ca.crt", b"nope")]), false);
    let err = chartrepo::pull(&charts, &url, "web", "1.0.0", &bad).expect_err("bad ca.crt");
    assert_eq!(
        err.to_string(),
        "secret default/repo: ca.crt holds no PEM certificate"
    );
}

#[test]
fn archives_on_another_host_get_the_credentials_only_with_pass_credentials() {
    let (work, repo) = repository();
    // The archives on one server, the index (naming them by absolute URL) behind basic auth on
    // another.
    let archives = Served {
        dir: repo.clone(),
        ..Default::default()
    };
    let archives_url = start(archives.clone());
    helm(
        &[
            "repo",
            "index",
            repo.to_str().expect("utf8"),
            "--url",
            &archives_url,
        ],
        work.path(),
    );
    let index_dir = work.path().join("index");
    std::fs::create_dir_all(&index_dir).expect("mkdir");
    std::fs::copy(repo.join("index.yaml"), index_dir.join("index.yaml")).expect("copy");
    let index_url = start(Served {
        dir: index_dir,
        auth: Some("Basic dXNlcjpzM2NyZXQ=".into()),
        ..Default::default()
    });
    let charts = work.path().join("data/charts");
    let mut access: Access = Credentials {
        username: Some("user".into()),
        password: Some("s3cret".into()),
        ssh_private_key: None,
    }
    .into();
    let pulled = chartrepo::pull(&charts, &index_url, "web", "1.0.0", &access).expect("pull");
    assert_eq!(pulled.version, "1.0.0");
    access.pass_credentials = true;
    chartrepo::pull(&charts, &index_url, "web", "1.2.0", &access).expect("pull");
    assert_eq!(
        *archives.authorizations.lock().expect("authorizations"),
        vec![None, Some("Basic dXNlcjpzM2NyZXQ=".to_string())],
        "the archive host got the credentials only with passCredentials"
    );
}

/// The real `docker-registry` (Debian's package of the distribution registry) on a free
/// 127.0.0.1 port with storage in a temporary directory; killed when dropped.
struct Registry {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    fn start() -> Registry {
        let dir = tempfile::tempdir().expect("tmp");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("address")
            .port();
        let config = dir.path().join("config.yml");
        write(
            &config,
            &format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        );
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("docker-registry: {e}; install it with `apt-get install docker-registry`")
            });
        let registry = Registry {
            child,
            port,
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "docker-registry did not listen on {port}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        registry
    }
}

#[test]
fn a_chart_in_an_oci_registry_is_pulled_by_version_or_range_verified_and_rendered() {
    let (work, repo) = repository();
    let registry = Registry::start();
    let url = format!("oci://127.0.0.1:{}/charts", registry.port);
    for v in ["1.0.0", "1.2.0", "2.0.0"] {
        helm(
            &[
                "push",
                repo.join(format!("web-{v}.tgz")).to_str().expect("utf8"),
                &url,
                "--plain-http",
            ],
            work.path(),
        );
    }
    let charts = work.path().join("data/charts");
    let none = Access::default();
    let pulled = chartrepo::pull(&charts, &url, "web", "^1.0.0", &none).expect("pull ^1");
    assert_eq!(pulled.version, "1.2.0");
    assert_eq!(
        std::fs::read(&pulled.archive).expect("cached"),
        std::fs::read(repo.join("web-1.2.0.tgz")).expect("pushed"),
        "the chart layer is the archive helm pushed"
    );
    assert_eq!(
        chartrepo::pull(&charts, &url, "web", "", &none)
            .expect("newest")
            .version,
        "2.0.0"
    );
    let source = Source {
        repo_url: url.clone(),
        chart: "web".into(),
        helm: Some(Helm {
            release_name: "shop".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let got = render_chart(&pulled, &source, "app", "prod").expect("render");
    assert_eq!(
        got[1].0.pointer("/metadata/labels/version"),
        Some(&serde_json::json!("1.2.0"))
    );
    let err = chartrepo::pull(&charts, &url, "nope", "", &none).expect_err("no such chart");
    assert!(
        err.to_string().contains("/v2/charts/nope/tags/list"),
        "{err}"
    );
    let err = chartrepo::pull(&charts, &url, "web", "3.x", &none).expect_err("3.x");
    assert!(
        err.to_string().contains("no version matches \"3.x\""),
        "{err}"
    );
}
