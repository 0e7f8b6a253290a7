//! The CIRO coordinator. Its service (submitter and worker API, chain indexer, matcher,
//! result store) is not built yet: the binary only describes itself.

use clap::Parser;

/// CIRO coordinator: accepts jobs from submitters, indexes the JobMgr and CDC Pool
/// contracts, assigns jobs to eligible workers on-chain and stores their results.
///
/// Not built yet: this binary has no service to run, so it only parses its command line.
#[derive(Parser)]
#[command(name = "ciro-coordinator", version, arg_required_else_help = true)]
struct Cli {}

fn main() {
    Cli::parse();
}
