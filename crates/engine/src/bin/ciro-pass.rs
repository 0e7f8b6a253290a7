//! `ciro-pass REQUEST`: one job's forward pass in a sandboxed process
//! ([`ciro_engine::isolation`]), as the worker's hidden `pass` subcommand runs it; for the
//! engine's own tests and for tools that embed the engine without the worker.

use std::process::ExitCode;

fn main() -> ExitCode {
    match std::env::args().nth(1) {
        Some(request) => ciro_engine::child_main(&request),
        None => {
            eprintln!("usage: ciro-pass REQUEST (started by the engine, not by hand)");
            ExitCode::from(2)
        }
    }
}
