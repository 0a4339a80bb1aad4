//! The kubeconfig gitplane writes for kubectl and its own client subcommands: HTTPS verified
//! against the cluster CA, and a client certificate as the identity.

use std::net::SocketAddr;
use std::path::Path;

use base64::Engine;

/// The credentials a kubeconfig carries (all PEM).
#[derive(Clone, Debug)]
pub struct Credentials {
    /// The CA that signed the serving certificate.
    pub ca_pem: String,
    /// The client certificate.
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
}

/// The text of a kubeconfig for the server at `server` (context `gitplane`, user `user`).
pub fn render(server: SocketAddr, user: &str, creds: &Credentials) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let host = reachable(server);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: gitplane
  cluster:
    server: https://{host}
    certificate-authority-data: {ca}
users:
- name: {user}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: gitplane
  context:
    cluster: gitplane
    user: {user}
    namespace: default
current-context: gitplane
",
        ca = b64(&creds.ca_pem),
        cert = b64(&creds.cert_pem),
        key = b64(&creds.key_pem),
    )
}

/// The address a client on this host reaches a server listening on `server` at (loopback for a
/// wildcard address).
fn reachable(server: SocketAddr) -> SocketAddr {
    match server {
        SocketAddr::V4(a) if a.ip().is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], a.port()))
        }
        SocketAddr::V6(a) if a.ip().is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port()))
        }
        a => a,
    }
}

/// A kubeconfig for the server at `server` that authenticates with a bearer `token` (built as
/// data, so no token text can change its shape).
pub fn with_token(
    server: SocketAddr,
    ca_pem: &str,
    token: &str,
) -> anyhow::Result<kube::config::Kubeconfig> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "gitplane", "cluster": {
            "server": format!("https://{}", reachable(server)),
            "certificate-authority-data": b64(ca_pem),
        }}],
        "users": [{"name": "caller", "user": {"token": token}}],
        "contexts": [{"name": "gitplane", "context": {"cluster": "gitplane", "user": "caller"}}],
        "current-context": "gitplane",
    });
    Ok(serde_json::from_value(config)?)
}

/// Writes the administrator's kubeconfig (0600).
pub fn write(path: &Path, server: SocketAddr, creds: &Credentials) -> anyhow::Result<()> {
    apiserver::tls::write_private(path, &render(server, "admin", creds))?;
    Ok(())
}
