//! `ciro-coordinator`: parses its flags into a [`Config`] and runs the service until SIGINT
//! or SIGTERM.

use std::process::ExitCode;
use std::time::Duration;

use ciro_coordinator::api::ApiConfig;
use ciro_coordinator::{run, Config, DEFAULT_PORT, SERVICE};
use ciro_service::{run_service, ChainArgs, LogArgs, ServeArgs};
use clap::Parser;

/// CIRO coordinator: accepts jobs from submitters, indexes the JobMgr and CDC Pool
/// contracts, assigns jobs to eligible workers on-chain and stores their results.
///
/// Built so far: the chain indexer into SQLite or PostgreSQL, the REST API (/v1, described at
/// /openapi.json) with the blob store, and /health, /ready (node, database, index lag) and
/// /metrics. The matcher and keepers are not running yet.
#[derive(Parser)]
#[command(name = "ciro-coordinator", version)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    serve: ServeArgs<DEFAULT_PORT>,
    #[command(flatten)]
    chain: ChainArgs,
    /// The database: `sqlite://<file>` (created if missing; the embedded default) or
    /// `postgres://user@host/db` (for many replicas).
    #[arg(
        long,
        env = "CIRO_DATABASE_URL",
        default_value = "sqlite://ciro-coordinator.db"
    )]
    database_url: String,
    /// How often the indexer polls the chain once caught up, in milliseconds.
    #[arg(long, env = "CIRO_INDEX_POLL_MS", default_value_t = 1_000)]
    index_poll_ms: u64,
    /// Blocks the index may lag behind the chain before /ready says unready.
    #[arg(long, env = "CIRO_MAX_INDEX_LAG", default_value_t = 10)]
    max_index_lag: u64,
    /// Directory of the blob store (model files, inputs, outputs; created if missing).
    #[arg(long, env = "CIRO_BLOB_DIR", default_value = "ciro-blobs")]
    blob_dir: std::path::PathBuf,
    /// Largest blob upload, in bytes.
    #[arg(long, env = "CIRO_MAX_BLOB_BYTES", default_value_t = 256 << 20)]
    max_blob_bytes: u64,
    /// A worker without a heartbeat for this many seconds is not live.
    #[arg(long, env = "CIRO_STALE_AFTER_SECS", default_value_t = 30)]
    stale_after_secs: u64,
    /// Requests per second allowed per client address (bursts of twice as many).
    #[arg(long, env = "CIRO_RATE_LIMIT", default_value_t = 200)]
    rate_limit: u32,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    run_service(SERVICE, &cli.log, |shutdown| async move {
        let config = Config {
            chain: cli.chain.config()?,
            listen: cli.serve.listen,
            database_url: cli.database_url,
            index_poll: Duration::from_millis(cli.index_poll_ms.max(10)),
            max_index_lag: cli.max_index_lag,
            blob_dir: cli.blob_dir,
            api: ApiConfig {
                max_blob_bytes: cli.max_blob_bytes,
                stale_after_secs: cli.stale_after_secs.max(1),
                rate_per_sec: cli.rate_limit.max(1),
                rate_burst: cli.rate_limit.max(1).saturating_mul(2),
                ..ApiConfig::default()
            },
        };
        run(config, shutdown).await
    })
}
