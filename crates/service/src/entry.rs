//! The one place a binary's error becomes its exit status.
//!
//! A binary's `main` parses its arguments, then hands its logging arguments and its async
//! body to [`run_service`] (a long-running service: shutdown on signals) or [`run_main`] (a
//! command that runs to its end), which install tracing before the body runs; or it passes a
//! synchronous result to [`exit_code`]:
//!
//! ```no_run
//! use std::process::ExitCode;
//!
//! use clap::Parser;
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     log: ciro_service::LogArgs,
//! }
//!
//! fn main() -> ExitCode {
//!     let cli = Cli::parse();
//!     ciro_service::run_service("ciro-example", &cli.log, |shutdown| async move {
//!         shutdown.cancelled().await;
//!         Ok(())
//!     })
//! }
//! ```

use std::future::Future;
use std::process::ExitCode;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use crate::log::{init_tracing, installed_format, LogArgs, LogFormat};
use crate::shutdown::Shutdown;

/// `ExitCode::SUCCESS` for `Ok`; for an error, prints `BINARY: error: ` and the whole
/// context chain (`a: b: c`) to stderr and returns status 1. With JSON logging installed
/// ([`crate::init_tracing`]) the error is also logged as an event, for log collectors.
pub fn exit_code(binary: &str, result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // An error may carry text another party wrote (a coordinator's or a node's
            // message): printed as is, its escape sequences could hide or rewrite lines.
            let chain = terminal_safe(&format!("{err:#}"), true).into_owned();
            if installed_format() == Some(LogFormat::Json) {
                tracing::error!(error = %chain, "{binary} failed");
            }
            eprintln!("{binary}: error: {chain}");
            ExitCode::FAILURE
        }
    }
}

/// `text` safe to print on a terminal: every control character (escape sequences, carriage
/// returns; line feeds too unless `lines`) and every bidirectional override is shown as its
/// `\u{..}` escape. For text another party wrote: a worker's receipt, a coordinator's
/// message, a file's tensor names.
pub fn terminal_safe(text: &str, lines: bool) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        (c.is_control() && !(lines && c == '\n'))
            || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(
        text.chars()
            .map(|c| {
                if unsafe_char(c) {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// Validates the logging arguments and installs tracing (once per process).
fn install_logging(log: &LogArgs) -> Result<()> {
    let config = log.config()?;
    if installed_format().is_none() {
        init_tracing(&config)?;
    }
    Ok(())
}

/// Installs tracing as `log` says, runs `main` to its end on a multi-threaded tokio runtime,
/// then [`exit_code`].
///
/// No signal handling: SIGINT and SIGTERM keep their default action (the process ends).
pub fn run_main<Fut>(binary: &str, log: &LogArgs, main: Fut) -> ExitCode
where
    Fut: Future<Output = Result<()>>,
{
    let result = install_logging(log).and_then(|()| runtime()?.block_on(main));
    exit_code(binary, result)
}

/// Runs a service: `main` gets the process's shutdown token, which the first SIGINT or
/// SIGTERM cancels ([`Shutdown::cancel_on_signals`]); `main` should then stop its tasks
/// and return `Ok(())` (status 0). Errors go through [`exit_code`].
///
/// Tracing is installed as `log` says before anything else.
pub fn run_service<F, Fut>(binary: &str, log: &LogArgs, main: F) -> ExitCode
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let result = install_logging(log)
        .and_then(|()| runtime())
        .and_then(|rt| {
            let result = rt.block_on(async {
                let shutdown = Shutdown::new();
                shutdown.cancel_on_signals()?;
                main(shutdown.token()).await
            });
            // A blocking task that never returns (a model load stuck in native code) must not
            // keep the process alive once `main` has ended: a supervisor waits for the exit.
            rt.shutdown_timeout(SHUTDOWN_GRACE);
            result
        });
    exit_code(binary, result)
}

/// How long a service's runtime waits for its blocking tasks once `main` has returned.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

#[cfg(test)]
mod tests {
    #[test]
    fn terminal_safe_escapes_control_and_bidi_characters() {
        assert_eq!(
            super::terminal_safe("plain text: 0x1", false),
            "plain text: 0x1"
        );
        assert_eq!(
            super::terminal_safe("GPU\u{1b}[8m hidden\r\u{202e}", false),
            "GPU\\u{1b}[8m hidden\\u{d}\\u{202e}"
        );
        assert_eq!(super::terminal_safe("a\nb", true), "a\nb");
        assert_eq!(super::terminal_safe("a\nb", false), "a\\u{a}b");
    }

    use super::*;

    #[test]
    fn ok_is_success_and_an_error_is_status_one() {
        assert_eq!(exit_code("test", Ok(())), ExitCode::SUCCESS);
        let failed: Result<()> = Err(anyhow::anyhow!("root cause")).context("doing the thing");
        assert_eq!(exit_code("test", failed), ExitCode::FAILURE);
        let log = LogArgs {
            log: "warn".into(),
            log_format: LogFormat::Text,
        };
        assert_eq!(
            run_main("test", &log, async { anyhow::bail!("no") }),
            ExitCode::FAILURE
        );
        assert_eq!(run_main("test", &log, async { Ok(()) }), ExitCode::SUCCESS);
        let bad = LogArgs {
            log: "not a [filter".into(),
            log_format: LogFormat::Text,
        };
        assert_eq!(run_main("test", &bad, async { Ok(()) }), ExitCode::FAILURE);
    }
}
