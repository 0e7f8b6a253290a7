//! `ciro devnet`: a local starknet-devnet started by the chain crate's launcher, the same one
//! the test harness uses, so a local network and the tests run on the same chain setup.

use anyhow::{bail, Context, Result};
use ciro_chain::devnet::{Devnet, DevnetOptions, ACCOUNTS, SEED};
use ciro_service::CancellationToken;
use clap::Args;

#[derive(Args)]
pub struct DevnetArgs {
    /// Address to listen on.
    #[arg(long, env = "CIRO_DEVNET_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0: a free one).
    #[arg(long, env = "CIRO_DEVNET_PORT", default_value_t = 5050)]
    port: u16,
    /// More flags for starknet-devnet (after `--`).
    #[arg(last = true)]
    extra: Vec<String>,
}

/// Runs devnet until `shutdown` is cancelled (SIGINT or SIGTERM) or devnet exits.
pub async fn run(args: DevnetArgs, shutdown: CancellationToken) -> Result<()> {
    let options = DevnetOptions {
        host: args.host,
        port: args.port,
        extra_args: args.extra,
    };
    let mut devnet = tokio::task::spawn_blocking(move || Devnet::start_options(&options))
        .await
        .context("the devnet launcher task")??;
    // The one line on stdout: scripts read the URL from it.
    println!("{}", devnet.rpc_url());
    eprintln!(
        "starknet-devnet (pid {}) seed {SEED}, {ACCOUNTS} predeployed accounts; SIGINT or SIGTERM stops it",
        devnet.pid()
    );
    let mut poll = tokio::time::interval(std::time::Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = poll.tick() => {
                if let Some(status) = devnet.exited()? {
                    bail!("starknet-devnet exited with {status}:\n{}", devnet.recent_log());
                }
            }
        }
    }
    drop(devnet);
    eprintln!("starknet-devnet stopped");
    Ok(())
}
