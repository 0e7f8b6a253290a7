//! The CIRO paymaster relayer. Its service (SNIP-29 API, outside execution submission,
//! nonce management) is not built yet: the binary only describes itself.

use clap::Parser;

/// CIRO paymaster relayer: serves the SNIP-29 paymaster API and submits users' signed
/// SNIP-9 outside executions through the Paymaster contract from its own accounts.
///
/// Not built yet: this binary has no service to run, so it only parses its command line.
#[derive(Parser)]
#[command(
    name = "ciro-paymaster-relayer",
    version,
    arg_required_else_help = true
)]
struct Cli {}

fn main() {
    Cli::parse();
}
