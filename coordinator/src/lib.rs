//! The CIRO coordinator: accepts jobs from submitters, indexes the JobMgr and CDC Pool
//! contracts, assigns jobs to eligible workers on-chain and stores their results.
//!
//! Not built yet: none of that exists. Today [`run`] serves only the service runtime's
//! endpoints (`/health`, `/ready` with a check that the Starknet node answers, `/metrics`)
//! until shutdown, so that deployment, monitoring and the binary's life cycle can be set up
//! and tested before the API arrives.

#![warn(missing_docs)]

use std::net::SocketAddr;

use anyhow::Result;
use axum::Router;
use ciro_service::{serve, CancellationToken, ChainConfig, Metrics, Readiness, RpcCheck};

/// The service's name, in logs, errors and the `ciro_build_info` metric.
pub const SERVICE: &str = "ciro-coordinator";
/// The port the coordinator listens on by default (on loopback).
pub const DEFAULT_PORT: u16 = 7070;

/// The coordinator's configuration, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The Starknet node and the deployment manifest.
    pub chain: ChainConfig,
    /// Where to serve HTTP (port 0: any free port, logged).
    pub listen: SocketAddr,
}

/// Serves the coordinator until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    let metrics = Metrics::new(SERVICE, env!("CARGO_PKG_VERSION"))?;
    let readiness = Readiness::new().with_check(RpcCheck::new(config.chain.rpc_url.clone()));
    tracing::info!(
        rpc_url = %config.chain.rpc_url,
        "{SERVICE} {}: serving the runtime endpoints only (the coordinator API is not built yet)",
        env!("CARGO_PKG_VERSION")
    );
    serve(config.listen, Router::new(), &metrics, readiness, shutdown).await
}
