//! `gitplane up`: the whole platform in one process.
//!
//! Today that is the API server (on the embedded store, or `--store etcd://…`); the controllers,
//! scheduler, local node and syncer join here as their issues land, each started after the API
//! server is ready.

use super::server::{self, ServerArgs};

/// Flags of `gitplane up`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    server: ServerArgs,
}

/// Runs the platform until Ctrl-C or SIGTERM.
pub fn run(args: Args) -> anyhow::Result<u8> {
    server::init_logging();
    server::block_on(async move {
        let api = server::start(&args.server).await?;
        let kubeconfig = args.server.data_dir.join("kubeconfig");
        eprintln!(
            "gitplane is up on http://{}\n  kubectl --kubeconfig {} get namespaces",
            api.local_addr(),
            kubeconfig.display()
        );
        api.serve(server::shutdown_signal()).await?;
        tracing::info!("gitplane stopped");
        Ok(0)
    })?
}
