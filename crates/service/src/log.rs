//! Tracing to stderr: an `EnvFilter` directive from `--log` / `CIRO_LOG`, text or JSON lines.

use std::io::IsTerminal;
use std::sync::OnceLock;

use anyhow::{anyhow, Context, Result};
use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured only when stderr is a terminal).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Logging flags, shared by every binary.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// What to log, as a tracing `EnvFilter` directive (`info`, `warn,ciro_coordinator=debug`).
    #[arg(long = "log", env = "CIRO_LOG", default_value = "info")]
    pub log: String,
    /// Log line format.
    #[arg(
        long = "log-format",
        env = "CIRO_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    pub log_format: LogFormat,
}

impl LogArgs {
    /// Validates the filter directive.
    pub fn config(&self) -> Result<LogConfig> {
        EnvFilter::try_new(&self.log).with_context(|| {
            format!("--log / CIRO_LOG: `{}` is not a filter directive", self.log)
        })?;
        Ok(LogConfig {
            filter: self.log.clone(),
            format: self.log_format,
        })
    }
}

/// Validated logging configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// An `EnvFilter` directive, checked to parse.
    pub filter: String,
    /// Line format.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            filter: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

/// The format [`init_tracing`] installed, if it ran (read by [`crate::exit_code`]).
static INSTALLED: OnceLock<LogFormat> = OnceLock::new();

/// The log format installed by [`init_tracing`], if any.
pub fn installed_format() -> Option<LogFormat> {
    INSTALLED.get().copied()
}

/// Installs the process-wide subscriber: stderr, ANSI colours only on a terminal.
///
/// Fails when the filter does not parse or a subscriber is already installed.
pub fn init_tracing(config: &LogConfig) -> Result<()> {
    let filter = EnvFilter::try_new(&config.filter)
        .with_context(|| format!("`{}` is not a filter directive", config.filter))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match config.format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    installed.map_err(|e| anyhow!("installing the tracing subscriber: {e}"))?;
    // Only the first successful installation gets here: a second `try_init` fails above.
    let _ = INSTALLED.set(config.format);
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::test_env::parse_with;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        log: LogArgs,
    }

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<LogConfig> {
        parse_with(args, env, |cli: Cli| cli.log.config())
    }

    #[test]
    fn defaults_to_info_text() {
        assert_eq!(parse(&[], &[]).unwrap(), LogConfig::default());
    }

    #[test]
    fn flags_override_the_environment() {
        let config = parse(
            &["--log", "warn,ciro=debug", "--log-format", "json"],
            &[("CIRO_LOG", "error"), ("CIRO_LOG_FORMAT", "text")],
        )
        .unwrap();
        assert_eq!(config.filter, "warn,ciro=debug");
        assert_eq!(config.format, LogFormat::Json);
        let from_env = parse(&[], &[("CIRO_LOG", "debug"), ("CIRO_LOG_FORMAT", "json")]).unwrap();
        assert_eq!(from_env.filter, "debug");
        assert_eq!(from_env.format, LogFormat::Json);
    }

    #[test]
    fn bad_directives_and_formats_are_rejected() {
        let err = format!(
            "{:#}",
            parse(&["--log", "info,ciro=loud"], &[]).unwrap_err()
        );
        assert!(err.contains("is not a filter directive"), "{err}");
        assert!(parse(&["--log-format", "xml"], &[]).is_err());
    }
}
