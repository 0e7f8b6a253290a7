//! `ciro-paymaster-relayer`: parses its flags into a [`Config`] and runs the service until
//! SIGINT or SIGTERM.

use std::process::ExitCode;

use ciro_paymaster_relayer::{run, Config, DEFAULT_PORT, SERVICE};
use ciro_service::{run_service, ChainArgs, LogArgs, ServeArgs};
use clap::Parser;

/// CIRO paymaster relayer: serves the SNIP-29 paymaster API and submits users' signed
/// SNIP-9 outside executions through the Paymaster contract from its own accounts.
///
/// Not built yet: today it serves only /health, /ready (is the Starknet node answering?)
/// and /metrics.
#[derive(Parser)]
#[command(name = "ciro-paymaster-relayer", version)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    serve: ServeArgs<DEFAULT_PORT>,
    #[command(flatten)]
    chain: ChainArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    run_service(SERVICE, &cli.log, |shutdown| async move {
        let config = Config {
            chain: cli.chain.config()?,
            listen: cli.serve.listen,
        };
        run(config, shutdown).await
    })
}
