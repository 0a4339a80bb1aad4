//! The kubeconfig gitplane writes for kubectl and its own client subcommands.

use std::net::SocketAddr;
use std::path::Path;

/// Writes a kubeconfig pointing at the API server (context `gitplane`).
pub fn write(path: &Path, server: SocketAddr) -> std::io::Result<()> {
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: gitplane
  cluster:
    server: http://{server}
users:
- name: admin
  user: {{}}
contexts:
- name: gitplane
  context:
    cluster: gitplane
    user: admin
    namespace: default
current-context: gitplane
"
    );
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}
