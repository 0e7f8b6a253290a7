//! The CIRO paymaster relayer: serves the SNIP-29 paymaster API and submits users' signed
//! SNIP-9 outside executions through the Paymaster contract from its own accounts, managing
//! their nonces.
//!
//! Not built yet: none of that exists. Today [`run`] serves only the service runtime's
//! endpoints (`/health`, `/ready` with a check that the Starknet node answers, `/metrics`)
//! until shutdown; the relayer's accounts (`ciro_service::AccountArgs`) come with the API.

#![warn(missing_docs)]

use std::net::SocketAddr;

use anyhow::Result;
use axum::Router;
use ciro_service::{serve, CancellationToken, ChainConfig, Metrics, Readiness, RpcCheck};

/// The service's name, in logs, errors and the `ciro_build_info` metric.
pub const SERVICE: &str = "ciro-paymaster-relayer";
/// The port the relayer listens on by default (on loopback).
pub const DEFAULT_PORT: u16 = 7071;

/// The relayer's configuration, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The Starknet node it submits to, and the deployment manifest (the Paymaster's address).
    pub chain: ChainConfig,
    /// Where to serve HTTP (port 0: any free port, logged).
    pub listen: SocketAddr,
}

/// Serves the relayer until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    let metrics = Metrics::new(SERVICE, env!("CARGO_PKG_VERSION"))?;
    let readiness = Readiness::new().with_check(RpcCheck::new(config.chain.rpc_url.clone()));
    tracing::info!(
        rpc_url = %config.chain.rpc_url,
        "{SERVICE} {}: serving the runtime endpoints only (the SNIP-29 API is not built yet)",
        env!("CARGO_PKG_VERSION")
    );
    serve(config.listen, Router::new(), &metrics, readiness, shutdown).await
}
