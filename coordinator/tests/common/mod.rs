//! A coordinator run in-process against a test devnet deployment, and API clients signing as
//! the suite's actors.
#![allow(dead_code)]

use std::net::SocketAddr;

use anyhow::Result;
use std::time::{Duration, Instant};

use ciro_api::coordinator::{CoordinatorClient, RequestSigner};
use ciro_chain::account::AccountSource;
use ciro_coordinator::api::ApiConfig;
use ciro_coordinator::operator::OperatorConfig;
use ciro_coordinator::{run, Config};
use ciro_service::{CancellationToken, ChainConfig};
use ciro_tests::system::System;
use ciro_tests::Actor;

/// A running coordinator.
pub struct Running {
    pub base: String,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub dir: tempfile::TempDir,
}

/// What varies between the tests' coordinators.
pub struct Options {
    /// Seconds without a heartbeat before a worker is not live.
    pub stale_after_secs: u64,
    /// The database; `None`: a fresh SQLite file.
    pub database_url: Option<String>,
    /// The replica's lease name.
    pub holder: String,
    /// Whether it has the coordinator's account.
    pub with_account: bool,
    /// Each account's quota of unreferenced upload bytes (`None`: the default).
    pub upload_quota: Option<u64>,
    /// Workers that may give a job back before it is no longer matched.
    pub max_give_backs: u32,
    /// Seconds a (job, worker) pair the contract refused is set aside.
    pub exclusion_secs: u64,
    /// What an upload's body must keep up: a chunk within, and the average past it (`None`:
    /// the defaults).
    pub upload_pace: Option<(Duration, u64)>,
    /// How long an upload's reservation lasts unless renewed (`None`: the default).
    pub upload_reservation_ttl: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            stale_after_secs: 30,
            database_url: None,
            holder: "test-replica".into(),
            with_account: true,
            upload_quota: None,
            max_give_backs: ciro_coordinator::operator::DEFAULT_MAX_GIVE_BACKS,
            exclusion_secs: 5,
            upload_pace: None,
            upload_reservation_ttl: None,
        }
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("address").port()
}

impl Running {
    /// Starts a coordinator over `s`'s deployment acting as [`Actor::Coordinator`], and waits
    /// until its API answers.
    pub async fn start(s: &System, options: Options) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let manifest = dir.path().join("manifest.json");
        s.manifest.write(&manifest).expect("writing the manifest");
        let port = free_port();
        let listen: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
        let database_url = options
            .database_url
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("coordinator.db").display()));
        let config = Config {
            chain: ChainConfig {
                rpc_url: s.net.rpc_url(),
                manifest,
            },
            listen,
            public_urls: Vec::new(),
            database_url,
            db_max_connections: None,
            max_index_lag: 10,
            blob_dir: dir.path().join("blobs"),
            api: ApiConfig {
                stale_after_secs: options.stale_after_secs,
                max_pending_upload_bytes: options
                    .upload_quota
                    .unwrap_or(ApiConfig::default().max_pending_upload_bytes),
                max_give_backs: options.max_give_backs,
                upload_stall: options
                    .upload_pace
                    .map_or(ApiConfig::default().upload_stall, |(stall, _)| stall),
                min_upload_rate: options
                    .upload_pace
                    .map_or(ApiConfig::default().min_upload_rate, |(_, rate)| rate),
                upload_reservation_ttl: options
                    .upload_reservation_ttl
                    .unwrap_or(ApiConfig::default().upload_reservation_ttl),
                ..ApiConfig::default()
            },
            account: options
                .with_account
                .then_some(AccountSource::DevnetPredeployed(Actor::Coordinator.index())),
            operator: OperatorConfig {
                tick: Duration::from_millis(200),
                lease_ttl: Duration::from_secs(3),
                stale_after_secs: options.stale_after_secs,
                exclusion_secs: options.exclusion_secs,
                max_give_backs: options.max_give_backs,
                ..OperatorConfig::new(options.holder)
            },
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(config, shutdown.clone()));
        let base = format!("http://{listen}");
        let started = Instant::now();
        loop {
            if let Ok(response) = reqwest::get(format!("{base}/health")).await {
                if response.status().is_success() {
                    break;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the coordinator did not answer in 30 s"
            );
            assert!(!task.is_finished(), "the coordinator exited at start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            base,
            shutdown,
            task,
            dir,
        }
    }

    /// An unsigned client.
    pub fn client(&self) -> CoordinatorClient {
        CoordinatorClient::new(&self.base).expect("client")
    }

    /// A client signing as `actor`.
    pub fn client_as(&self, s: &System, actor: Actor) -> CoordinatorClient {
        self.client().with_signer(signer(s, actor))
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Stops it and waits for it to exit cleanly.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task
            .await
            .expect("the coordinator task")
            .expect("the coordinator exited with an error");
    }
}

/// A request signer for `actor`'s devnet account.
pub fn signer(s: &System, actor: Actor) -> RequestSigner {
    RequestSigner::new(
        s.net.signing_key(actor),
        s.net.address(actor),
        s.net.chain_id(),
        s.job_mgr,
    )
}

/// The value of the metric sample `name{labels}` (labels exactly as exported), or 0.
pub fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// Polls `check` every 100 ms until it returns `Some`, for at most `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            started.elapsed() < limit,
            "{what}: not within {} s",
            limit.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A fresh, empty PostgreSQL database on the tests' server; its URL.
pub async fn fresh_postgres() -> Result<String> {
    ciro_coordinator::store::fresh_postgres_database(None).await
}

/// Every job of the index equals the chain's `get_job` (a reconcile over every job), and the
/// index has no job the chain lacks.
pub async fn assert_jobs_match_chain(s: &System, store: &ciro_coordinator::store::Store) {
    let jobs = ciro_chain::tx::call(s.jobs_reader().job_count())
        .await
        .expect("job_count");
    assert!(jobs > 0);
    for job_id in 1..=jobs {
        let chain = ciro_coordinator::indexer::job_row_of(&s.job_info(job_id).await).expect("row");
        assert_eq!(
            store.job(job_id).await.expect("read"),
            Some(chain),
            "job {job_id}: index vs chain"
        );
    }
    assert_eq!(store.jobs().await.expect("jobs").len() as u64, jobs);
}
