//! The web console's side of `gitplane up`: the ServiceAccount `kube-system/gitplane-console`
//! (bound to `cluster-admin`) whose tokens sign in, and the lines that say where the console is.
//! The console itself is served by the API server (`apiserver::console`).

use std::path::Path;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, PostParams};
use serde_json::json;

/// The ServiceAccount whose tokens sign in to the console as an administrator.
const ACCOUNT: &str = "gitplane-console";
/// Its namespace.
const NAMESPACE: &str = "kube-system";

/// Creates the console's ServiceAccount and its binding to `cluster-admin` when missing.
pub async fn ensure_account(client: &kube::Client) -> anyhow::Result<()> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), NAMESPACE);
    if accounts.get_opt(ACCOUNT).await?.is_none() {
        let account = serde_json::from_value(json!({"metadata": {"name": ACCOUNT}}))?;
        accounts.create(&PostParams::default(), &account).await?;
    }
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    if bindings.get_opt(ACCOUNT).await?.is_none() {
        let binding = serde_json::from_value(json!({
            "metadata": {"name": ACCOUNT},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": NAMESPACE}],
        }))?;
        bindings.create(&PostParams::default(), &binding).await?;
    }
    Ok(())
}

/// Prints the console's address and the command that makes a token to sign in with.
pub fn print_welcome(address: std::net::SocketAddr, kubeconfig: &Path) {
    eprintln!(
        "Web console: https://{address}{} (the cluster's own CA signs its certificate)",
        apiserver::console::PATH
    );
    eprintln!(
        "  sign in with the token of: kubectl --kubeconfig {} -n {NAMESPACE} create token {ACCOUNT}",
        kubeconfig.display()
    );
}
