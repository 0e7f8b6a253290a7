//! The CIRO worker. Its service (hardware report, registration and staking, job execution)
//! is not built yet: the binary only describes itself.

use clap::Parser;

/// CIRO worker: detects the GPU, registers and stakes in the CDC Pool, pulls jobs from the
/// coordinator, runs their TorchScript models with libtorch and commits the results.
///
/// Not built yet: this binary has no service to run, so it only parses its command line.
#[derive(Parser)]
#[command(name = "ciro-worker", version, arg_required_else_help = true)]
struct Cli {}

fn main() {
    Cli::parse();
}
