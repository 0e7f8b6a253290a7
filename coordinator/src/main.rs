//! `ciro-coordinator`: parses its flags into a [`Config`] and runs the service until SIGINT
//! or SIGTERM.

use std::process::ExitCode;
use std::time::Duration;

use ciro_coordinator::api::ApiConfig;
use ciro_coordinator::operator::{OperatorConfig, DEFAULT_MAX_GIVE_BACKS, MAX_BATCH};
use ciro_coordinator::{run, Config, DEFAULT_PORT, SERVICE};
use ciro_service::{run_service, AccountArgs, ChainArgs, LogArgs, ServeArgs};
use clap::Parser;

/// CIRO coordinator: accepts jobs from submitters, indexes the JobMgr and CDC Pool
/// contracts, assigns jobs to eligible workers on-chain and stores their results.
///
/// Serves the REST API (/v1, described at /openapi.json) with the blob store, and /health,
/// /ready (node, database, index lag) and /metrics. The replica holding the leader lease in the
/// database indexes the chain and, with an account holding JobMgr's COORDINATOR role, assigns
/// jobs to live workers, releases stale assignments, finalizes and expires jobs.
#[derive(Parser)]
#[command(name = "ciro-coordinator", version)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    serve: ServeArgs<DEFAULT_PORT>,
    #[command(flatten)]
    chain: ChainArgs,
    /// The URL clients reach this coordinator at (its public URL behind a proxy; several
    /// comma-separated). Signed requests name its origin, and one signed for another origin is
    /// refused, so a look-alike coordinator cannot replay what it receives. Default: the listen
    /// address's (`http://127.0.0.1:PORT` and `http://localhost:PORT` on loopback); required
    /// when listening on every interface.
    #[arg(long, env = "CIRO_PUBLIC_URL", value_delimiter = ',')]
    public_url: Vec<url::Url>,
    /// The database: `sqlite://<file>` (created if missing; the embedded default) or
    /// `postgres://user@host/db` (for many replicas).
    #[arg(
        long,
        env = "CIRO_DATABASE_URL",
        default_value = "sqlite://ciro-coordinator.db"
    )]
    database_url: String,
    /// Most connections to PostgreSQL (default 4: about twice the database server's cores).
    #[arg(long, env = "CIRO_DB_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..=1000))]
    db_max_connections: Option<u32>,
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
    /// Most event streams open at once (each reads the database four times a second); past
    /// it a new stream is answered 503.
    #[arg(long, env = "CIRO_MAX_EVENT_STREAMS", default_value_t = 1_024, value_parser = clap::value_parser!(u32).range(1..))]
    max_event_streams: u32,
    /// Most event streams one client address may hold open; past it a new one is answered
    /// 429.
    #[arg(long, env = "CIRO_MAX_EVENT_STREAMS_PER_CLIENT", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    max_event_streams_per_client: u32,
    /// Most assignment long-polls waiting at once (each reads the database five times a
    /// second); past it a new one is answered 503, and past 2 of one worker's, 429.
    #[arg(long, env = "CIRO_MAX_LONG_POLLS", default_value_t = 4_096, value_parser = clap::value_parser!(u32).range(1..))]
    max_long_polls: u32,
    /// Most bytes of one account's uploads that no model, job or output of its own refers to
    /// yet; past it the account's uploads are answered 429.
    #[arg(long, env = "CIRO_MAX_PENDING_UPLOAD_BYTES", default_value_t = 4 << 30, value_parser = clap::value_parser!(u64).range(1..))]
    max_pending_upload_bytes: u64,
    /// Uploads are answered 503 while the blob directory's file system has less than this
    /// many bytes free.
    #[arg(long, env = "CIRO_MIN_FREE_BYTES", default_value_t = 1 << 30)]
    min_free_bytes: u64,
    /// The coordinator's account (needs JobMgr's COORDINATOR role). Without one, the replica
    /// indexes and serves but sends no transaction.
    #[command(flatten)]
    account: AccountArgs,
    /// This replica's name in the leader lease (default: host name and process id); a random
    /// token is appended, so that two processes given one name never share the lease.
    #[arg(long, env = "CIRO_REPLICA_NAME")]
    replica_name: Option<String>,
    /// Seconds a leader lease lasts unless renewed (renewed every third of it); a killed
    /// leader is replaced within this.
    #[arg(long, env = "CIRO_LEASE_SECS", default_value_t = 10)]
    lease_secs: u64,
    /// Milliseconds between the leader's ticks (index, keepers, matcher).
    #[arg(long, env = "CIRO_TICK_MS", default_value_t = 1_000)]
    tick_ms: u64,
    /// Jobs per assign, release, finalize or expire transaction (1 to 100).
    #[arg(long, env = "CIRO_BATCH_SIZE", default_value_t = MAX_BATCH)]
    batch_size: usize,
    /// Days an output is kept after its job's final state.
    #[arg(long, env = "CIRO_OUTPUT_RETENTION_DAYS", default_value_t = 7)]
    output_retention_days: u64,
    /// Hours an upload nothing refers to is kept.
    #[arg(long, env = "CIRO_UPLOAD_GRACE_HOURS", default_value_t = 24)]
    upload_grace_hours: u64,
    /// Seconds an upload's body may go without a chunk; past its first such span it must also
    /// average `--min-upload-rate`, or the upload is abandoned (408) and what it reserved freed.
    #[arg(long, env = "CIRO_UPLOAD_STALL_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    upload_stall_secs: u64,
    /// Bytes a second an upload's body must average once past its first `--upload-stall-secs`.
    #[arg(long, env = "CIRO_MIN_UPLOAD_RATE", default_value_t = 64 << 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    min_upload_rate: u64,
    /// A queued job this many workers gave back (failed or refused it) is not offered again:
    /// it expires with a refund at its deadline. 0: no limit.
    #[arg(long, env = "CIRO_MAX_GIVE_BACKS", default_value_t = DEFAULT_MAX_GIVE_BACKS)]
    max_give_backs: u32,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    run_service(SERVICE, &cli.log, |shutdown| async move {
        let account = match (&cli.account.devnet_account, &cli.account.account_address) {
            (None, None) => None,
            _ => Some(cli.account.source()?),
        };
        let name = cli.replica_name.unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        });
        // The lease names this process, not its configured name: two processes given the
        // same name (a fixed name in a replicated template, a rolling update, pid 1 in two
        // containers) would otherwise both renew one lease and both lead.
        let mut token = [0u8; 8];
        getrandom::getrandom(&mut token)
            .map_err(|e| anyhow::anyhow!("drawing the replica's lease token: {e}"))?;
        let holder = format!("{name}/{:016x}", u64::from_be_bytes(token));
        let stale_after_secs = cli.stale_after_secs.max(1);
        let operator = OperatorConfig {
            lease_ttl: Duration::from_secs(cli.lease_secs.max(1)),
            tick: Duration::from_millis(cli.tick_ms.max(10)),
            stale_after_secs,
            batch_size: cli.batch_size,
            output_retention_secs: cli.output_retention_days.saturating_mul(86_400),
            upload_grace_secs: cli.upload_grace_hours.saturating_mul(3_600),
            max_give_backs: cli.max_give_backs,
            ..OperatorConfig::new(holder)
        };
        let config = Config {
            chain: cli.chain.config()?,
            listen: cli.serve.listen,
            public_urls: cli.public_url,
            database_url: cli.database_url,
            db_max_connections: cli.db_max_connections,
            max_index_lag: cli.max_index_lag,
            blob_dir: cli.blob_dir,
            api: ApiConfig {
                max_blob_bytes: cli.max_blob_bytes,
                stale_after_secs,
                rate_per_sec: cli.rate_limit.max(1),
                rate_burst: cli.rate_limit.max(1).saturating_mul(2),
                max_event_streams: cli.max_event_streams,
                max_event_streams_per_client: cli.max_event_streams_per_client,
                max_long_polls: cli.max_long_polls,
                max_pending_upload_bytes: cli.max_pending_upload_bytes,
                min_free_bytes: cli.min_free_bytes,
                upload_grace_secs: cli.upload_grace_hours.saturating_mul(3_600),
                max_give_backs: cli.max_give_backs,
                upload_stall: Duration::from_secs(cli.upload_stall_secs),
                min_upload_rate: cli.min_upload_rate,
                ..ApiConfig::default()
            },
            account,
            operator,
        };
        run(config, shutdown).await
    })
}
