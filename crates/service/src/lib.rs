//! CIRO's service runtime: what every CIRO binary shares, so that each one is thin (parse
//! arguments, validate them into a plain config, call its library's `run(config, shutdown)`).
//!
//! - [`log`]: [`LogArgs`] (`--log` / `CIRO_LOG`, `--log-format` / `CIRO_LOG_FORMAT`) and
//!   [`init_tracing`]: an `EnvFilter` directive, text or JSON lines on stderr;
//! - [`metrics`]: [`Metrics`], one Prometheus registry per service with the runtime's own
//!   metrics (build info, HTTP requests and latency by route and status, readiness); the
//!   service registers its own into [`Metrics::registry`];
//! - [`http`]: [`ServeArgs`] (`--listen` / `CIRO_LISTEN`), [`router`] (the service's routes
//!   plus `/health`, `/ready`, `/metrics`), [`Server`] (bind, report the bound address,
//!   serve until shutdown) and [`serve`] (all three in one call);
//! - [`ready`]: the [`ReadinessCheck`] trait and [`RpcCheck`] (the Starknet node answers);
//! - [`shutdown`]: [`Shutdown`], a cancellation token cancelled by SIGINT or SIGTERM;
//! - [`chain`]: [`ChainArgs`] (`--rpc-url`, `--manifest`) into [`ChainConfig`], and
//!   [`AccountArgs`] into `ciro_chain::account::AccountSource` (keys never on the command line);
//! - [`entry`]: [`run_service`], [`run_main`] and [`exit_code`], the one place an error
//!   becomes a message and exit status 1;
//! - `test_util` (feature `test-util`): the services' integration-test scenarios.
//!
//! Every flag has one `CIRO_*` variable; a flag given on the command line wins over it.
//!
//! Metrics use the `prometheus` crate rather than `prometheus-client`: its label vectors
//! (`IntCounterVec`, `HistogramVec`) take label values at run time, which suits labels such as
//! a route template or a check name that each service supplies, where `prometheus-client`
//! wants a label type per metric; and it writes the classic Prometheus text format (0.0.4)
//! that every scraper reads. Its protobuf support is left out.

#![warn(missing_docs)]

pub mod chain;
pub mod entry;
pub mod http;
pub mod limits;
pub mod log;
pub mod metrics;
pub mod ready;
pub mod shutdown;
#[cfg(feature = "test-util")]
pub mod test_util;

#[cfg(test)]
mod test_env;

pub use chain::{AccountArgs, ChainArgs, ChainConfig};
pub use entry::{exit_code, run_main, run_service, terminal_safe};
pub use http::{router, serve, ServeArgs, Server};
pub use limits::RateLimiter;
pub use log::{init_tracing, LogArgs, LogConfig, LogFormat};
pub use metrics::Metrics;
pub use ready::{CheckStatus, Readiness, ReadinessCheck, ReadinessReport, RpcCheck};
pub use shutdown::Shutdown;
pub use tokio_util::sync::CancellationToken;
