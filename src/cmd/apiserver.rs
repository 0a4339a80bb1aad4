//! `gitplane apiserver`: the API server alone.

use super::server::{self, ServerArgs};

/// Flags of `gitplane apiserver`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    server: ServerArgs,
}

/// Serves until Ctrl-C or SIGTERM.
pub fn run(args: Args) -> anyhow::Result<u8> {
    server::init_logging();
    server::block_on(async move {
        let api = server::start(&args.server).await?;
        api.serve(server::shutdown_signal()).await?;
        tracing::info!("API server stopped");
        Ok(0)
    })?
}
