//! What client subcommands share: a kube-rs client from the kubeconfig (`--kubeconfig`, default
//! the one in the default data dir).

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The `--kubeconfig` flag of client subcommands.
#[derive(clap::Args, Clone, Debug)]
pub struct KubeconfigArg {
    /// Kubeconfig of the gitplane to talk to.
    #[arg(long, default_value = ".gitplane/kubeconfig")]
    pub kubeconfig: PathBuf,
}

/// A client for the server named by a kubeconfig file.
pub async fn connect(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).with_context(|| {
        format!(
            "cannot read kubeconfig {} (is `gitplane up` running? pass --kubeconfig)",
            kubeconfig.display()
        )
    })?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .with_context(|| format!("invalid kubeconfig {}", kubeconfig.display()))?;
    kube::Client::try_from(config).context("cannot build a client")
}
