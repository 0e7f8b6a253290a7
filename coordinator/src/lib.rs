//! The CIRO coordinator: accepts jobs from submitters, indexes the JobMgr and CDC Pool
//! contracts, assigns jobs to eligible workers on-chain and stores their results.
//!
//! Parts: the [`store`] (SQLite by default, PostgreSQL for many replicas, one set of
//! migrations); the chain [`indexer`], which mirrors models, jobs, workers and parameters and
//! reports its lag in `/ready` and `/metrics`; the content-addressed [`blobs`]; the signed REST
//! [`api`]; the [`matcher`]; and the [`operator`], which on the replica holding the [`leader`]
//! lease indexes, runs the keepers and assigns. [`run`] serves the API and runs the operator
//! until shutdown.

#![warn(missing_docs)]

pub mod api;
pub mod batches;
pub mod blobs;
pub mod eligibility;
pub mod indexer;
pub mod leader;
pub mod matcher;
pub mod operator;
pub mod records;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use async_trait::async_trait;
use ciro_api::coordinator::auth::{origin_of, MAX_ORIGIN_LEN};
use ciro_chain::account::AccountSource;
use ciro_chain::manifest::Manifest;
use ciro_chain::sender::{SenderConfig, TxSender};
use ciro_chain::starknet::accounts::Account;
use ciro_chain::starknet::providers::jsonrpc::HttpTransport;
use ciro_chain::starknet::providers::JsonRpcClient;
use ciro_chain::starknet::providers::Provider;
use ciro_service::{
    router, CancellationToken, ChainConfig, Metrics, Readiness, ReadinessCheck, RpcCheck, Server,
};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntGauge, IntGaugeVec, Opts};

use crate::api::{Api, ApiConfig, Verifier};
use crate::blobs::{BlobStore, LocalBlobStore};
use crate::indexer::{Indexer, IndexerStatus};
use crate::operator::{Operator, OperatorConfig};
use crate::store::Store;

/// The service's name, in logs, errors and the `ciro_build_info` metric.
pub const SERVICE: &str = "ciro-coordinator";
/// The port the coordinator listens on by default (on loopback).
pub const DEFAULT_PORT: u16 = 7070;
/// Most events the indexer reads per `starknet_getEvents` page.
pub const INDEX_PAGE_SIZE: u64 = 1_000;

/// The coordinator's configuration, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The Starknet node and the deployment manifest.
    pub chain: ChainConfig,
    /// Where to serve HTTP (port 0: any free port, logged).
    pub listen: SocketAddr,
    /// The URLs clients reach this coordinator at (behind a proxy, its public URL); signed
    /// requests name one's origin. Empty: the bound address's own ([`origins`]).
    pub public_urls: Vec<url::Url>,
    /// `sqlite://<file>` (created if missing) or `postgres://...`.
    pub database_url: String,
    /// Most connections to PostgreSQL (`None`: [`store::DEFAULT_POSTGRES_CONNECTIONS`]).
    pub db_max_connections: Option<u32>,
    /// Blocks the index may lag behind the chain before `/ready` says unready.
    pub max_index_lag: u64,
    /// Directory of the local blob store.
    pub blob_dir: std::path::PathBuf,
    /// The API's limits and timings.
    pub api: ApiConfig,
    /// The coordinator's own account (it needs JobMgr's COORDINATOR role to assign and
    /// release); `None`: the replica indexes and serves but sends no transaction.
    pub account: Option<AccountSource>,
    /// The leader's work.
    pub operator: OperatorConfig,
}

/// The origins this coordinator answers as, which a signed request must name: those of
/// `public_urls`, or with none given, the bound address's: `http://127.0.0.1:PORT` and
/// `http://localhost:PORT` on loopback, `http://IP:PORT` on another address. Bound to every
/// interface (`0.0.0.0`, `::`) with no public URL is refused: the coordinator would not know
/// the names its clients use, and accepting any would let a look-alike coordinator replay the
/// requests it receives.
///
/// A public URL must be an origin alone (a path other than `/` is refused: the coordinator
/// serves from its root, and a proxy stripping a prefix would change the path clients sign),
/// and fit the request header ([`MAX_ORIGIN_LEN`]).
pub fn origins(public_urls: &[url::Url], bound: SocketAddr) -> Result<Vec<String>> {
    if !public_urls.is_empty() {
        return public_urls
            .iter()
            .map(|url| {
                let origin = origin_of(url).with_context(|| {
                    format!("the public URL {url} is not an http or https URL with a host")
                })?;
                anyhow::ensure!(
                    url.path() == "/" && url.query().is_none() && url.fragment().is_none(),
                    "the public URL {url} has a path, query or fragment: give the origin \
                     clients reach the coordinator's root at ({origin})"
                );
                anyhow::ensure!(
                    origin.len() <= MAX_ORIGIN_LEN,
                    "the public URL's origin {origin} is longer than {MAX_ORIGIN_LEN} bytes, \
                     more than a signed request may name"
                );
                Ok(origin)
            })
            .collect();
    }
    let ip = bound.ip();
    anyhow::ensure!(
        !ip.is_unspecified(),
        "listening on {bound} (every interface) needs the URL clients use: set \
         --public-url (CIRO_PUBLIC_URL), e.g. https://coordinator.example or http://10.0.0.5:{}",
        bound.port()
    );
    let mut names = vec![format!("http://{bound}")];
    if ip.is_loopback() {
        names.push(format!("http://localhost:{}", bound.port()));
    }
    names
        .iter()
        .map(|name| {
            url::Url::parse(name)
                .ok()
                .as_ref()
                .and_then(origin_of)
                .with_context(|| {
                    format!("{name} is not a URL clients can sign for: set --public-url")
                })
        })
        .collect()
}

/// `/ready`'s database check: the database answers.
struct DatabaseCheck(Store);

#[async_trait]
impl ReadinessCheck for DatabaseCheck {
    fn name(&self) -> &str {
        "database"
    }

    async fn check(&self) -> Result<String> {
        self.0.ping().await?;
        Ok(format!("{:?} answers", self.0.backend()))
    }
}

/// `/ready`'s indexer check: the index is at most `max_lag` blocks behind the chain's head.
struct IndexLagCheck {
    status: Arc<IndexerStatus>,
    max_lag: u64,
}

#[async_trait]
impl ReadinessCheck for IndexLagCheck {
    fn name(&self) -> &str {
        "indexer"
    }

    async fn check(&self) -> Result<String> {
        let (head, indexed) = (self.status.head(), self.status.indexed());
        anyhow::ensure!(
            self.status.stepped(),
            "the indexer has not reached the chain yet"
        );
        let lag = self.status.lag();
        anyhow::ensure!(
            lag <= self.max_lag,
            "the index is {lag} blocks behind the chain (block {indexed} of {head}; at most {} allowed)",
            self.max_lag
        );
        Ok(format!("indexed to block {indexed} of {head} (lag {lag})"))
    }
}

/// The indexer's metrics, read from its status when scraped (never stale).
struct IndexCollector {
    status: Arc<IndexerStatus>,
    blocks: IntGaugeVec,
    events: IntGauge,
}

impl IndexCollector {
    fn register(metrics: &Metrics, status: Arc<IndexerStatus>) -> Result<()> {
        let collector = Self {
            status,
            blocks: IntGaugeVec::new(
                Opts::new(
                    "ciro_index_block",
                    "The chain's head and the last block indexed",
                ),
                &["which"],
            )?,
            events: IntGauge::new(
                "ciro_index_events_applied",
                "Events the indexer applied since the process started",
            )?,
        };
        metrics.registry().register(Box::new(collector))?;
        Ok(())
    }
}

impl Collector for IndexCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut descs = self.blocks.desc();
        descs.extend(self.events.desc());
        descs
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.blocks
            .with_label_values(&["head"])
            .set(to_i64(self.status.head()));
        self.blocks
            .with_label_values(&["indexed"])
            .set(to_i64(self.status.indexed()));
        self.events.set(to_i64(self.status.events()));
        let mut families = self.blocks.collect();
        families.extend(self.events.collect());
        families
    }
}

/// Serves the coordinator and runs its operator (indexer, keepers, matcher; on the leader
/// only) until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    let metrics = Metrics::new(SERVICE, env!("CARGO_PKG_VERSION"))?;
    let manifest = Manifest::read(&config.chain.manifest)?;
    let store = Store::connect_with(&config.database_url, config.db_max_connections).await?;
    let node = Arc::new(JsonRpcClient::new(HttpTransport::new(
        config.chain.rpc_url.clone(),
    )));
    let indexer = Indexer::new(node.clone(), store.clone(), &manifest, INDEX_PAGE_SIZE)
        .with_context(|| {
            format!(
                "the deployment manifest {}",
                config.chain.manifest.display()
            )
        })?;
    let status = indexer.status();
    let readiness = Readiness::new()
        .with_check(RpcCheck::new(config.chain.rpc_url.clone()))
        .with_check(DatabaseCheck(store.clone()))
        .with_check(IndexLagCheck {
            status: status.clone(),
            max_lag: config.max_index_lag,
        });
    IndexCollector::register(&metrics, status.clone())?;
    let failures = Api::auth_failures_counter()?;
    metrics.registry().register(Box::new(failures.clone()))?;
    let blobs: Arc<dyn BlobStore> = Arc::new(
        LocalBlobStore::open_dir(&config.blob_dir)
            .await
            .with_context(|| format!("opening the blob store {}", config.blob_dir.display()))?,
    );
    let sender = match &config.account {
        Some(source) => {
            let chain_id = node
                .chain_id()
                .await
                .context("reading the chain id for the coordinator's account")?;
            let account = ciro_chain::account::connect(source, &config.chain.rpc_url, chain_id)
                .await
                .context("the coordinator's account")?;
            tracing::info!(account = %indexer::felt_text(account.address()), "sending as the coordinator's account");
            Some(Arc::new(TxSender::new(account, SenderConfig::default())))
        }
        None => {
            tracing::warn!(
                "no coordinator account configured: this replica indexes and serves the API but assigns, releases and finalizes nothing"
            );
            None
        }
    };
    let operator = Operator::new(
        store.clone(),
        blobs.clone(),
        indexer,
        sender,
        config.operator.clone(),
        &metrics,
    )?;
    let server = Server::bind(config.listen).await?;
    let origins = origins(&config.public_urls, server.local_addr())?;
    tracing::info!(origins = %origins.join(", "), "signed requests must name one of these origins");
    let api = Api::new(
        store.clone(),
        blobs,
        Verifier::new(
            node.clone(),
            manifest.contract(ciro_protocol::contracts::JOB_MGR)?,
            origins,
            store.clone(),
            config.api.signature_window_secs,
            failures,
        ),
        config.api.clone(),
        status,
        shutdown.clone(),
    )
    .with_accounting(api::dashboard::AccountingSource::new(
        node.clone(),
        manifest.contract(ciro_protocol::contracts::JOB_MGR)?,
        manifest.contract(ciro_protocol::contracts::CDC_POOL)?,
        manifest.contract(ciro_protocol::contracts::PAYMASTER).ok(),
    ));
    tracing::info!(
        rpc_url = %config.chain.rpc_url,
        network = %manifest.network,
        database = ?store.backend(),
        blobs = %config.blob_dir.display(),
        holder = %config.operator.holder,
        "{SERVICE} {}: serving the API; indexing, keeping and matching while it leads",
        env!("CARGO_PKG_VERSION")
    );
    let operating = tokio::spawn(operator.run(shutdown.clone()));
    let served = server
        .serve(router(api.router(), &metrics, readiness), shutdown)
        .await;
    operating.await.context("the operator task")?;
    served
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(texts: &[&str]) -> Vec<url::Url> {
        texts.iter().map(|t| url::Url::parse(t).unwrap()).collect()
    }

    #[test]
    fn origins_are_the_public_urls_or_the_bound_addresss_and_never_any() {
        let bound: SocketAddr = "127.0.0.1:7070".parse().unwrap();
        assert_eq!(
            origins(&[], bound).unwrap(),
            ["http://127.0.0.1:7070", "http://localhost:7070"]
        );
        assert_eq!(
            origins(&[], "[::1]:80".parse().unwrap()).unwrap(),
            ["http://[::1]", "http://localhost"]
        );
        assert_eq!(
            origins(&[], "10.0.0.5:7070".parse().unwrap()).unwrap(),
            ["http://10.0.0.5:7070"]
        );
        assert_eq!(
            origins(
                &urls(&[
                    "https://Coordinator.CIRO.example:443/",
                    "http://10.0.0.5:7070"
                ]),
                "0.0.0.0:7070".parse().unwrap()
            )
            .unwrap(),
            ["https://coordinator.ciro.example", "http://10.0.0.5:7070"]
        );
        // Every interface with no public URL: the names clients use are unknown.
        let error = origins(&[], "0.0.0.0:7070".parse().unwrap()).unwrap_err();
        assert!(error.to_string().contains("--public-url"), "{error}");
        assert!(origins(&[], "[::]:7070".parse().unwrap()).is_err());
        assert!(origins(&urls(&["ftp://files.example"]), bound).is_err());
        // A path would be dropped from the origin while clients sign it: refused.
        assert!(origins(&urls(&["https://gateway.example/ciro"]), bound).is_err());
        assert!(origins(&urls(&["https://gateway.example/"]), bound).is_ok());
        let long = format!("https://{}.example", "a".repeat(250));
        assert!(origins(&urls(&[&long]), bound).is_err());
    }
}
