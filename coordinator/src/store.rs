//! The coordinator's database: SQLite by default (a file, WAL), PostgreSQL when the URL says
//! so, through one `sqlx` pool and the same migrations (`coordinator/migrations/`) and queries
//! on both.
//!
//! The index tables are a mirror of the chain, rebuildable from the deployment block: the
//! indexer writes every page of events and its stream cursor in one transaction
//! ([`Store::apply`]), so a restart resumes with nothing lost or applied twice.
//!
//! Queries are portable SQL: `$1, $2, ...` placeholders, each first used in increasing order
//! (SQLite numbers named parameters by first appearance), `INSERT .. ON CONFLICT .. DO UPDATE`,
//! `BIGINT` and `TEXT` columns only. The index's multi-row statements (a page's jobs and log
//! entries) use anonymous `?` placeholders on SQLite instead (see [`placeholders`]).

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ciro_chain::events::EventCursor;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Row};

/// Which database a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file (the embedded default).
    Sqlite,
    /// A PostgreSQL server (for many replicas).
    Postgres,
}

/// The database, migrated.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) pool: AnyPool,
    backend: Backend,
    /// Bumped by [`Store::reset_index`]: a [`JobCache`] filled before is dropped.
    generation: Arc<AtomicU64>,
    /// PostgreSQL only: a native pool (connected on first use) for the index's page writes,
    /// which `COPY` rows in; the `Any` driver cannot reach `COPY` or bind arrays.
    pages: Option<sqlx::PgPool>,
    /// Reads of the job event log so far ([`Store::job_events`]).
    pub(crate) event_reads: Arc<AtomicU64>,
}

/// Most job rows a [`JobCache`] holds by default (a few hundred bytes each).
pub const CACHED_JOBS: usize = 50_000;

/// The job rows the last pages' commits left, kept by the indexer between pages so that a
/// page's jobs are read from the database only when this indexer has not just written them
/// (a page of a thousand cancellations then reads nothing). Only the indexer writes job rows,
/// one leader at a time: the cache holds for one leadership (fence) and one index (until
/// [`Store::reset_index`]); a page that fails empties it.
#[derive(Debug)]
pub struct JobCache {
    /// The fence and index generation the rows were written under.
    key: Option<(Option<(String, u64)>, u64)>,
    /// Past this many rows, it starts over.
    capacity: usize,
    rows: HashMap<u64, JobRow>,
    /// The highest job id the database has, as the last commit left it: a page's jobs above
    /// it are new and not read (a page of submissions reads nothing).
    highest: Option<u64>,
}

/// What a page starts from: the rows of its jobs the cache has, and the highest job id the
/// database has if known.
#[derive(Debug, Default)]
struct Known {
    rows: HashMap<u64, JobRow>,
    highest: Option<u64>,
}

impl Default for JobCache {
    fn default() -> Self {
        Self::with_capacity(CACHED_JOBS)
    }
}

impl JobCache {
    /// An empty cache that starts over past `capacity` rows.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            key: None,
            capacity,
            rows: HashMap::new(),
            highest: None,
        }
    }

    /// The cached rows of `ids` taken out (they come back with the page's commit); the cache
    /// emptied first when it was filled under another fence or index.
    fn take(&mut self, key: (Option<(String, u64)>, u64), ids: &[u64]) -> Known {
        if self.key.as_ref() != Some(&key) {
            self.rows.clear();
            self.highest = None;
            self.key = Some(key);
        }
        // Taken out too: only a committed page puts it back, so a page that fails, panics or
        // is dropped (even after its commit) leaves it to be read again.
        Known {
            rows: ids
                .iter()
                .filter_map(|id| self.rows.remove_entry(id))
                .collect(),
            highest: self.highest.take(),
        }
    }

    /// Keeps `rows` and the highest job id, as a committed page left them.
    fn keep(&mut self, rows: HashMap<u64, JobRow>, highest: u64) {
        if self.rows.len() + rows.len() > self.capacity {
            self.rows.clear();
        }
        self.rows.extend(rows);
        self.highest = Some(highest);
    }

    /// Forgets every row and the highest job id: the next page reads what it needs.
    fn clear(&mut self) {
        self.rows.clear();
        self.highest = None;
    }

    /// How many rows it holds.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// One mutation of the index, produced from one event (or one chain read).
#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    /// A model registered or updated (`ModelSet`).
    ModelSet(ModelRow),
    /// A model (de)activated.
    ModelActive {
        /// The model's id.
        model_id: u64,
        /// Whether new jobs may use it.
        active: bool,
    },
    /// A job submitted.
    JobSubmitted(JobRow),
    /// A job's state changed; `None` fields are left as they are, `Some(None)` clears.
    JobState {
        /// The job's id.
        job_id: u64,
        /// The state, as the contract names it.
        state: &'static str,
        /// The assigned worker's address, if any.
        worker: Option<Option<String>>,
        /// SHA-256 of the committed output, if any.
        output_hash: Option<String>,
        /// Who opened a dispute, if anyone.
        disputer: Option<String>,
        /// The timestamp of the change's block: recorded as `assigned_at` when the state is
        /// `Assigned`, as `completed_at` when it is `Completed`.
        at: Option<u64>,
    },
    /// A log entry for the job's state as the page's previous mutations leave it (the
    /// server-sent event streams read the log).
    JobEvent {
        /// The job's id.
        job_id: u64,
        /// The block of the event.
        block_number: u64,
        /// The transaction of the event (0x-hex).
        tx_hash: String,
        /// The coordinator's clock when the page was indexed (unix seconds).
        recorded_at: u64,
    },
    /// A whole job read from the chain (after events whose effect is not in their data).
    JobRead(JobRow),
    /// A worker as `get_worker` shows it.
    Worker(WorkerRow),
    /// A contract's parameters.
    Params {
        /// The contract (`JobMgr`, `CdcPool`).
        contract: String,
        /// Its parameters as JSON.
        params: String,
    },
}

/// A model's row.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRow {
    /// The model's id.
    pub model_id: u64,
    /// The model owner's address.
    pub owner: String,
    /// SHA-256 of the model file (64 hex).
    pub model_hash: String,
    /// Least VRAM required, in MB.
    pub min_vram_mb: u64,
    /// Capability flags required (`ciro_protocol::flags`).
    pub required_flags: u64,
    /// Least stake tier required.
    pub min_stake_tier: u64,
    /// Least reputation score required.
    pub min_score: u64,
    /// Price per job (0x-hex).
    pub price: String,
    /// Whether new jobs may use it.
    pub active: bool,
}

/// A job's row.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    /// The job's id.
    pub job_id: u64,
    /// The submitter's address.
    pub submitter: String,
    /// The model's id.
    pub model_id: u64,
    /// SHA-256 of the input (64 hex).
    pub input_hash: String,
    /// The escrowed fee (0x-hex).
    pub fee: String,
    /// The deadline (chain seconds).
    pub deadline: u64,
    /// Inputs it carries: 1, or a batch's count (its input hash is its manifest's).
    pub items: u64,
    /// Least VRAM required, in MB.
    pub min_vram_mb: u64,
    /// Capability flags required (`ciro_protocol::flags`).
    pub required_flags: u64,
    /// Least stake tier required.
    pub min_stake_tier: u64,
    /// Least reputation score required.
    pub min_score: u64,
    /// The job's terms as JSON.
    pub terms: String,
    /// The dispute bond fixed at submission (0x-hex).
    pub dispute_bond: String,
    /// The state, as the contract names it.
    pub state: String,
    /// The assigned worker's address, if any.
    pub worker: Option<String>,
    /// SHA-256 of the committed output, if any.
    pub output_hash: Option<String>,
    /// Who opened a dispute, if anyone.
    pub disputer: Option<String>,
    /// When it was assigned (chain seconds), while assigned or after.
    pub assigned_at: Option<u64>,
    /// When its result was committed (chain seconds).
    pub completed_at: Option<u64>,
    /// Its dispute as JSON (`disputer`, `evidence_hash`, `bond` as 0x-hex, `opened_at`).
    pub dispute: Option<String>,
}

/// A worker's row.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerRow {
    /// The worker's address.
    pub address: String,
    /// The state, as the contract names it.
    pub state: String,
    /// The declared GPU model.
    pub gpu_model: String,
    /// The declared VRAM, in MB.
    pub vram_mb: u64,
    /// The declared compute capability (major × 10 + minor).
    pub compute_capability: u64,
    /// The declared capability flags.
    pub flags: u64,
    /// Own stake (0x-hex).
    pub stake: String,
    /// Hardware tier (0 to 3) from its VRAM.
    pub hardware_tier: u64,
    /// Highest stake tier its own stake meets (255: none).
    pub stake_tier: u64,
    /// Reputation score (0 to 10,000).
    pub score: u64,
    /// Its last on-chain heartbeat (chain seconds).
    pub last_heartbeat: u64,
    /// The whole `get_worker` view as JSON.
    pub info: String,
}

/// What [`Store::apply`] writes: one page of one contract's events.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The contract (`JobMgr`, `CdcPool`).
    pub contract: String,
    /// The stream cursor after the page.
    pub cursor: EventCursor,
    /// How many events the page had.
    pub events: u64,
    /// The block the mutations stand at (rows record it as `updated_block`).
    pub block: u64,
    /// The mutations, in event order.
    pub mutations: Vec<Mutation>,
    /// Where the page starts, which the index must still hold when it is written.
    pub from: PageStart,
}

/// Where a page of a contract's events starts: the cursor the index must still hold for the
/// page to be written. A page read from a cursor the index has since lost (an index reset, or
/// a PostgreSQL crash emptying its unlogged tables while the page was read) would otherwise
/// write its rows and a cursor past everything before it into the emptied index, which would
/// then look caught up and never be rebuilt.
#[derive(Debug, Clone, PartialEq)]
pub enum PageStart {
    /// The stream's start: the index holds no cursor for the contract.
    Empty,
    /// Right after this cursor, which the index holds.
    After(EventCursor),
    /// Not checked: wherever the index stands (seeding an index in tests and benchmarks).
    Anywhere,
}

pub(crate) fn i64_of(value: u64, what: &str) -> Result<i64> {
    i64::try_from(value).with_context(|| format!("{what} {value} does not fit the database"))
}

pub(crate) fn u64_of(value: i64, what: &str) -> Result<u64> {
    u64::try_from(value).with_context(|| format!("{what} {value} is negative in the database"))
}

/// The PostgreSQL server test databases are created in: `CIRO_TEST_POSTGRES`, else the local
/// cluster scripts/setup.sh starts (over its Unix socket, as the OS user).
pub fn test_postgres_admin_url() -> String {
    std::env::var("CIRO_TEST_POSTGRES").unwrap_or_else(|_| {
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        format!("postgres://{user}@localhost/postgres?host=/var/run/postgresql")
    })
}

/// Creates a fresh, empty database on the PostgreSQL server at `admin_url` (default:
/// [`test_postgres_admin_url`]); its URL. What the test suites run each PostgreSQL test in.
pub async fn fresh_postgres_database(admin_url: Option<String>) -> Result<String> {
    use sqlx::Executor;
    sqlx::any::install_default_drivers();
    let admin_url = admin_url.unwrap_or_else(test_postgres_admin_url);
    // The process, the time and a count: two tests of one process asking in the same clock
    // tick (the clock's resolution may be coarser than a nanosecond) got one name.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "ciro_test_{}_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let mut admin = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin_url)
        .await
        .with_context(|| {
            format!("connecting to PostgreSQL at {admin_url} (scripts/setup.sh starts it)")
        })?;
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .context("creating the database")?;
    Ok(admin_url.replacen("/postgres?", &format!("/{name}?"), 1))
}

/// The index's tables: the rebuildable mirror of the chain the indexer writes (with its job
/// event log), cursors last, as a page's transaction writes them last.
pub const INDEX_TABLES: [&str; 6] = [
    "models",
    "jobs",
    "workers",
    "params",
    "job_events",
    "index_cursors",
];

/// Makes the index's tables `UNLOGGED` on PostgreSQL, where they are not yet (the migrations
/// are portable SQL, which SQLite shares, so this is done here).
///
/// The index is a mirror the indexer can rebuild from the chain, and its pages are most of the
/// coordinator's writes: unlogged, they skip the write-ahead log (the indexer benchmark's
/// PostgreSQL ingest rose from 0.81–0.82 to 0.87–0.88 of the raw read, same runs). The price:
/// after a PostgreSQL crash (not a clean restart), or on a promoted standby, every index table
/// is empty, together (the cursors with the rows), and the leader's next tick rebuilds the
/// index from the deployment block before it keeps or matches, as after
/// [`Store::reset_index`]. The service's own tables (blobs, outputs, heartbeats, nonces, the
/// lease) stay logged. One transaction: every index table is unlogged or none is; replicas
/// starting together wait for each other's lock, and a table already unlogged is left alone.
async fn unlog_index(pool: &sqlx::AnyPool) -> Result<()> {
    let mut tx = pool.begin().await.context("starting a transaction")?;
    // Each change rewrites its table under an exclusive lock: wait at most 5 s for it rather
    // than queue every replica's reads behind a long one.
    sqlx::query("SET LOCAL lock_timeout = '5s'")
        .execute(&mut *tx)
        .await
        .context("bounding the lock wait")?;
    let find = format!(
        "SELECT c.relname::text AS name FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relpersistence = 'p' \
         AND c.relname::text IN {} ORDER BY c.relname",
        placeholders(Backend::Postgres, 1, INDEX_TABLES.len())
    );
    let logged: Vec<String> = INDEX_TABLES
        .iter()
        .fold(sqlx::query(&find), |query, table| query.bind(*table))
        .fetch_all(&mut *tx)
        .await
        .context("reading which index tables are logged")?
        .iter()
        .map(|row| row.try_get("name"))
        .collect::<Result<_, _>>()?;
    for table in &logged {
        sqlx::query(&format!("ALTER TABLE {table} SET UNLOGGED"))
            .execute(&mut *tx)
            .await
            .with_context(|| format!("making the index table {table} unlogged"))?;
    }
    tx.commit()
        .await
        .context("committing the index tables' change to unlogged")?;
    if !logged.is_empty() {
        tracing::info!(tables = ?logged, "index tables made unlogged (rebuilt after a PostgreSQL crash)");
    }
    Ok(())
}

/// PostgreSQL connections a replica keeps by default. PostgreSQL's own sizing rule is about
/// twice the database server's cores: more connections than that make its backends compete for
/// the cores rather than answer sooner (the API benchmark, with the server on the same 2 cores,
/// serves 15% more with 4 than with 8).
pub const DEFAULT_POSTGRES_CONNECTIONS: u32 = 4;

impl Store {
    /// Connects to `url` (`sqlite://path` or `sqlite::memory:`, `postgres://...`), creating an
    /// SQLite file if needed, and applies the migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, None).await
    }

    /// [`Store::connect`] with at most `postgres_connections` connections to PostgreSQL
    /// (default [`DEFAULT_POSTGRES_CONNECTIONS`]); SQLite always has one (one writer at a time).
    pub async fn connect_with(url: &str, postgres_connections: Option<u32>) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            bail!("unsupported database URL {url:?}: use sqlite://<file> or postgres://...");
        };
        let url = match backend {
            // The file is created when missing.
            Backend::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url)
            .with_context(|| format!("parsing the database URL {url:?}"))?;
        let pool = AnyPoolOptions::new()
            // One SQLite writer at a time; PostgreSQL takes a few connections.
            .max_connections(match backend {
                Backend::Sqlite => 1,
                Backend::Postgres => postgres_connections
                    .unwrap_or(DEFAULT_POSTGRES_CONNECTIONS)
                    .max(1),
            })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |connection, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers and the one writer share the file; a busy timeout
                        // waits out another process's write instead of failing.
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *connection)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 5000")
                            .execute(&mut *connection)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .with_context(|| format!("connecting to the database ({backend:?})"))?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .context("applying the database migrations")?;
        if backend == Backend::Postgres {
            // Only a speed-up: where it cannot be made (a table in a publication, a lock not
            // granted in time), the index stays logged and works the same.
            if let Err(err) = unlog_index(&pool).await {
                tracing::warn!(error = %format!("{err:#}"), "the index tables stay logged");
            }
        }
        let pages = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(
                sqlx::postgres::PgPoolOptions::new()
                    // Pages are written one at a time, by the leader's indexer only.
                    .max_connections(1)
                    .min_connections(0)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_lazy(&url)
                    .with_context(|| format!("parsing the database URL {url:?}"))?,
            ),
        };
        Ok(Self {
            pool,
            backend,
            generation: Arc::default(),
            pages,
            event_reads: Arc::default(),
        })
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the database answers (the readiness check).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .context("the database does not answer")?;
        Ok(())
    }

    /// The stored cursor of `contract`'s event stream, and how many events were applied.
    pub async fn cursor(&self, contract: &str) -> Result<Option<(EventCursor, u64)>> {
        let row =
            sqlx::query("SELECT cursor, events_applied FROM index_cursors WHERE contract = $1")
                .bind(contract)
                .fetch_optional(&self.pool)
                .await
                .context("reading the index cursor")?;
        row.map(|row| {
            let text: String = row.try_get("cursor")?;
            let cursor = serde_json::from_str(&text).context("the stored cursor")?;
            let events = u64_of(row.try_get("events_applied")?, "events_applied")?;
            Ok((cursor, events))
        })
        .transpose()
    }

    /// Writes a page's mutations and the stream's new cursor in one transaction.
    pub async fn apply(&self, batch: &Batch) -> Result<()> {
        self.apply_checked(batch, None).await
    }

    pub(crate) async fn apply_checked(
        &self,
        batch: &Batch,
        fence: Option<(&str, u64)>,
    ) -> Result<()> {
        self.apply_cached(batch, fence, None).await
    }

    /// [`Store::apply`] as the leader `fence` `(holder, epoch)` if any (see
    /// [`Store::apply_fenced`]), the page's jobs taken from `cache` where it has them (rather
    /// than read) and the rows as the page's commit left them kept in it. The indexer's write.
    pub async fn apply_cached(
        &self,
        batch: &Batch,
        fence: Option<(&str, u64)>,
        cache: Option<&Mutex<JobCache>>,
    ) -> Result<()> {
        let ids = JobFold::ids(&batch.mutations);
        let known = match cache {
            Some(cache) => {
                let key = (
                    fence.map(|(holder, epoch)| (holder.to_owned(), epoch)),
                    self.generation.load(Ordering::SeqCst),
                );
                // A panic elsewhere cannot leave it inconsistent: take and keep do not panic.
                cache
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take(key, &ids)
            }
            None => Known::default(),
        };
        let jobs = match self.write_page(batch, fence, &ids, known).await {
            Ok(jobs) => jobs,
            Err(err) => {
                // Emptied, not only without the page's rows: a page fails when the database
                // lost rows the cache has (an index reset elsewhere, a PostgreSQL crash that
                // emptied its unlogged index), and every other cached row may be gone too.
                // Kept, each later page would fail once on its own rows.
                if let Some(cache) = cache {
                    cache
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .clear();
                }
                return Err(err);
            }
        };
        if let Some(cache) = cache {
            cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .keep(jobs.rows, jobs.highest);
        }
        Ok(())
    }

    /// Writes a page in one transaction (natively on PostgreSQL); the fold as committed.
    async fn write_page(
        &self,
        batch: &Batch,
        fence: Option<(&str, u64)>,
        ids: &[u64],
        known: Known,
    ) -> Result<JobFold> {
        Ok(match &self.pages {
            Some(pages) => {
                let mut tx = pages.begin().await.context("starting a transaction")?;
                let jobs = pg_db::apply_page(&mut tx, batch, fence, ids, known).await?;
                jobs.write_copy(&mut tx, i64_of(batch.block, "block")?)
                    .await?;
                pg_db::write_cursor(&mut tx, batch).await?;
                tx.commit().await.context("committing the page")?;
                jobs
            }
            None => {
                let mut tx = self.pool.begin().await.context("starting a transaction")?;
                let jobs = any_db::apply_page(&mut tx, batch, fence, ids, known).await?;
                jobs.write(&mut tx, i64_of(batch.block, "block")?).await?;
                any_db::write_cursor(&mut tx, batch).await?;
                tx.commit().await.context("committing the page")?;
                jobs
            }
        })
    }

    /// Empties the index (every mirrored row and cursor): the next indexer run rebuilds it
    /// from the deployment block.
    ///
    /// On PostgreSQL the tables are truncated (in the same transaction): a `DELETE` leaves
    /// every row and index entry dead until a vacuum, and the rebuild's inserts then land
    /// beside them, checking each job id and sequence against its dead twin (about a third
    /// more server time per row, measured). `TRUNCATE` takes the tables' exclusive locks until
    /// the reset commits: readers of the index (every replica's API) wait for it, and it waits
    /// at most 5 s for them. SQLite's unconditional `DELETE` already truncates.
    pub async fn reset_index(&self) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        match self.backend {
            Backend::Postgres => {
                // A bounded wait for the tables' exclusive locks: a long read in the way fails
                // the reset with the reason instead of queueing every reader behind it.
                sqlx::query("SET LOCAL lock_timeout = '5s'")
                    .execute(&mut *tx)
                    .await
                    .context("bounding the reset's lock wait")?;
                sqlx::query(&format!("TRUNCATE {}", INDEX_TABLES.join(", ")))
                    .execute(&mut *tx)
                    .await
                    .context(
                        "emptying the index (TRUNCATE, which waits at most 5 s for its locks)",
                    )?;
            }
            Backend::Sqlite => {
                for table in INDEX_TABLES {
                    sqlx::query(&format!("DELETE FROM {table}"))
                        .execute(&mut *tx)
                        .await
                        .with_context(|| format!("emptying {table}"))?;
                }
            }
        }
        tx.commit().await?;
        self.generation.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// A job's row.
    pub async fn job(&self, job_id: u64) -> Result<Option<JobRow>> {
        let row = sqlx::query("SELECT * FROM jobs WHERE job_id = $1")
            .bind(i64_of(job_id, "job id")?)
            .fetch_optional(&self.pool)
            .await
            .context("reading a job")?;
        row.map(|r| job_row(&r)).transpose()
    }

    /// Every job, by id.
    pub async fn jobs(&self) -> Result<Vec<JobRow>> {
        let rows = sqlx::query("SELECT * FROM jobs ORDER BY job_id")
            .fetch_all(&self.pool)
            .await
            .context("reading the jobs")?;
        rows.iter().map(job_row).collect()
    }

    /// A model's row.
    pub async fn model(&self, model_id: u64) -> Result<Option<ModelRow>> {
        let row = sqlx::query("SELECT * FROM models WHERE model_id = $1")
            .bind(i64_of(model_id, "model id")?)
            .fetch_optional(&self.pool)
            .await
            .context("reading a model")?;
        row.as_ref().map(model_row).transpose()
    }

    /// A worker's row.
    pub async fn worker(&self, address: &str) -> Result<Option<WorkerRow>> {
        let row = sqlx::query("SELECT * FROM workers WHERE address = $1")
            .bind(address)
            .fetch_optional(&self.pool)
            .await
            .context("reading a worker")?;
        row.as_ref().map(worker_row).transpose()
    }

    /// A contract's parameters as JSON.
    pub async fn params(&self, contract: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT params FROM params WHERE contract = $1")
            .bind(contract)
            .fetch_optional(&self.pool)
            .await
            .context("reading parameters")?;
        row.map(|r| r.try_get("params").map_err(Into::into))
            .transpose()
    }
}

pub(crate) fn model_row(r: &sqlx::any::AnyRow) -> Result<ModelRow> {
    Ok(ModelRow {
        model_id: u64_of(r.try_get("model_id")?, "model_id")?,
        owner: r.try_get("owner")?,
        model_hash: r.try_get("model_hash")?,
        min_vram_mb: u64_of(r.try_get("min_vram_mb")?, "min_vram_mb")?,
        required_flags: u64_of(r.try_get("required_flags")?, "required_flags")?,
        min_stake_tier: u64_of(r.try_get("min_stake_tier")?, "min_stake_tier")?,
        min_score: u64_of(r.try_get("min_score")?, "min_score")?,
        price: r.try_get("price")?,
        active: r.try_get::<i64, _>("active")? != 0,
    })
}

pub(crate) fn worker_row(r: &sqlx::any::AnyRow) -> Result<WorkerRow> {
    Ok(WorkerRow {
        address: r.try_get("address")?,
        state: r.try_get("state")?,
        gpu_model: r.try_get("gpu_model")?,
        vram_mb: u64_of(r.try_get("vram_mb")?, "vram_mb")?,
        compute_capability: u64_of(r.try_get("compute_capability")?, "cc")?,
        flags: u64_of(r.try_get("flags")?, "flags")?,
        stake: r.try_get("stake")?,
        hardware_tier: u64_of(r.try_get("hardware_tier")?, "hardware_tier")?,
        stake_tier: u64_of(r.try_get("stake_tier")?, "stake_tier")?,
        score: u64_of(r.try_get("score")?, "score")?,
        last_heartbeat: u64_of(r.try_get("last_heartbeat")?, "last_heartbeat")?,
        info: r.try_get("info")?,
    })
}

pub(crate) use any_db::job_row;

pub(crate) fn opt_u64(value: Option<i64>, what: &str) -> Result<Option<u64>> {
    value.map(|v| u64_of(v, what)).transpose()
}

fn opt_i64(value: Option<u64>, what: &str) -> Result<Option<i64>> {
    value.map(|v| i64_of(v, what)).transpose()
}

/// Rows per multi-row statement (a job row binds 22 values: well inside SQLite's and
/// PostgreSQL's limits on bound values).
const ROWS_PER_STATEMENT: usize = 200;

/// A page's job mutations folded in memory: the page's jobs are read once, its mutations
/// applied to them in order (each log entry takes the job as the mutations before it leave
/// it), and the changed rows and the log entries written in a few multi-row statements: a
/// page of a thousand events costs a dozen statements instead of thousands.
struct JobFold {
    rows: HashMap<u64, JobRow>,
    /// Jobs the page changed.
    changed: BTreeSet<u64>,
    /// Jobs the database did not have when the page was loaded.
    fresh: BTreeSet<u64>,
    /// The highest job id the database has once the page is written.
    highest: u64,
    /// Log entries, each with the job as it stood then.
    events: Vec<LogEntry>,
}

/// A `job_events` row but its sequence.
struct LogEntry {
    job_id: u64,
    submitter: String,
    state: String,
    worker: Option<String>,
    output_hash: Option<String>,
    block_number: u64,
    tx_hash: String,
    recorded_at: u64,
}

impl JobFold {
    /// The jobs the page's mutations name, in order.
    fn ids(mutations: &[Mutation]) -> Vec<u64> {
        mutations
            .iter()
            .filter_map(|mutation| match mutation {
                Mutation::JobSubmitted(job) | Mutation::JobRead(job) => Some(job.job_id),
                Mutation::JobState { job_id, .. } | Mutation::JobEvent { job_id, .. } => {
                    Some(*job_id)
                }
                _ => None,
            })
            .collect::<BTreeSet<u64>>()
            .into_iter()
            .collect()
    }

    /// A fold of the rows `rows` (the page's jobs the database has), `highest` the highest
    /// job id it has.
    fn new(rows: HashMap<u64, JobRow>, highest: u64) -> Self {
        Self {
            rows,
            changed: BTreeSet::new(),
            fresh: BTreeSet::new(),
            highest,
            events: Vec::new(),
        }
    }

    /// Applies `mutation` if it is a job's; whether it was.
    fn apply(&mut self, mutation: &Mutation) -> Result<bool> {
        match mutation {
            Mutation::JobSubmitted(job) | Mutation::JobRead(job) => {
                match self.rows.get_mut(&job.job_id) {
                    // What an upsert updates of a known job; the rest was fixed at submission.
                    Some(row) => {
                        row.state.clone_from(&job.state);
                        row.worker.clone_from(&job.worker);
                        row.output_hash.clone_from(&job.output_hash);
                        row.disputer.clone_from(&job.disputer);
                        row.assigned_at = job.assigned_at;
                        row.completed_at = job.completed_at;
                        row.dispute.clone_from(&job.dispute);
                    }
                    None => {
                        self.rows.insert(job.job_id, job.clone());
                        self.fresh.insert(job.job_id);
                        self.highest = self.highest.max(job.job_id);
                    }
                }
                self.changed.insert(job.job_id);
            }
            Mutation::JobState {
                job_id,
                state,
                worker,
                output_hash,
                disputer,
                at,
            } => {
                // A job the index does not have changes nothing (as an UPDATE of no row).
                let Some(row) = self.rows.get_mut(job_id) else {
                    return Ok(true);
                };
                match *state {
                    // A job assigned or back in the queue has no output on chain (a row read
                    // at the range's end, past later events, may hold a later one).
                    "Assigned" => {
                        row.assigned_at = *at;
                        row.output_hash = None;
                    }
                    "Completed" => row.completed_at = *at,
                    // Back in the queue: the assignment is over.
                    "Queued" => {
                        row.assigned_at = None;
                        row.output_hash = None;
                    }
                    _ => {}
                }
                (*state).clone_into(&mut row.state);
                if let Some(worker) = worker {
                    row.worker.clone_from(worker);
                }
                if let Some(output) = output_hash {
                    row.output_hash = Some(output.clone());
                }
                if let Some(disputer) = disputer {
                    row.disputer = Some(disputer.clone());
                }
                self.changed.insert(*job_id);
            }
            Mutation::JobEvent {
                job_id,
                block_number,
                tx_hash,
                recorded_at,
            } => {
                if let Some(row) = self.rows.get(job_id) {
                    self.events.push(LogEntry {
                        job_id: *job_id,
                        submitter: row.submitter.clone(),
                        state: row.state.clone(),
                        worker: row.worker.clone(),
                        output_hash: row.output_hash.clone(),
                        block_number: *block_number,
                        tx_hash: tx_hash.clone(),
                        recorded_at: *recorded_at,
                    });
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Writes the changed rows (at `block`) and the log entries on SQLite (PostgreSQL's pages
    /// are written by [`JobFold::write_copy`]), as PostgreSQL's are: new jobs inserted (one
    /// the database has after all fails the page), known jobs updated in what changes after
    /// submission, every one of them checked to be there (a row taken as known that the
    /// database no longer has, an index reset elsewhere, fails the page, and its retry reads
    /// the database; an upsert would have written the cached row's submission fields).
    async fn write(&self, tx: &mut sqlx::Transaction<'_, sqlx::Any>, block: i64) -> Result<()> {
        let (fresh, known): (Vec<&JobRow>, Vec<&JobRow>) = self
            .changed
            .iter()
            .filter_map(|id| self.rows.get(id))
            .partition(|job| self.fresh.contains(&job.job_id));
        for chunk in known.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "WITH u (job_id, state, worker, output_hash, disputer, assigned_at, \
                 completed_at, dispute) AS (VALUES {}) \
                 UPDATE jobs SET state = u.state, worker = u.worker, \
                 output_hash = u.output_hash, disputer = u.disputer, \
                 assigned_at = u.assigned_at, completed_at = u.completed_at, \
                 dispute = u.dispute, updated_block = ? \
                 FROM u WHERE jobs.job_id = u.job_id",
                placeholders(Backend::Sqlite, chunk.len(), 8)
            );
            let mut query = sqlx::query(&sql);
            for job in chunk {
                query = query
                    .bind(i64_of(job.job_id, "job id")?)
                    .bind(job.state.clone())
                    .bind(job.worker.clone())
                    .bind(job.output_hash.clone())
                    .bind(job.disputer.clone())
                    .bind(opt_i64(job.assigned_at, "assigned_at")?)
                    .bind(opt_i64(job.completed_at, "completed_at")?)
                    .bind(job.dispute.clone());
            }
            let updated = query
                .bind(block)
                .execute(&mut **tx)
                .await
                .context("updating the page's jobs")?
                .rows_affected();
            all_known_updated(updated, chunk.len())?;
        }
        for chunk in fresh.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO jobs (job_id, submitter, model_id, input_hash, fee, deadline, \
                 min_vram_mb, required_flags, min_stake_tier, min_score, terms, dispute_bond, \
                 state, worker, output_hash, disputer, assigned_at, completed_at, dispute, \
                 submitted_block, updated_block, items) VALUES {}",
                placeholders(Backend::Sqlite, chunk.len(), 22)
            );
            let mut query = sqlx::query(&sql);
            for job in chunk {
                query = query
                    .bind(i64_of(job.job_id, "job id")?)
                    .bind(job.submitter.clone())
                    .bind(i64_of(job.model_id, "model id")?)
                    .bind(job.input_hash.clone())
                    .bind(job.fee.clone())
                    .bind(i64_of(job.deadline, "deadline")?)
                    .bind(i64_of(job.min_vram_mb, "min_vram_mb")?)
                    .bind(i64_of(job.required_flags, "required_flags")?)
                    .bind(i64_of(job.min_stake_tier, "min_stake_tier")?)
                    .bind(i64_of(job.min_score, "min_score")?)
                    .bind(job.terms.clone())
                    .bind(job.dispute_bond.clone())
                    .bind(job.state.clone())
                    .bind(job.worker.clone())
                    .bind(job.output_hash.clone())
                    .bind(job.disputer.clone())
                    .bind(opt_i64(job.assigned_at, "assigned_at")?)
                    .bind(opt_i64(job.completed_at, "completed_at")?)
                    .bind(job.dispute.clone())
                    .bind(block)
                    .bind(block)
                    .bind(i64_of(job.items, "items")?);
            }
            query
                .execute(&mut **tx)
                .await
                .context("writing the page's jobs")?;
        }
        if self.events.is_empty() {
            return Ok(());
        }
        let mut sequence = any_db::last_sequence(tx).await?;
        for chunk in self.events.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO job_events (sequence, job_id, submitter, state, worker, \
                 output_hash, block_number, tx_hash, recorded_at) VALUES {}",
                placeholders(Backend::Sqlite, chunk.len(), 9)
            );
            let mut query = sqlx::query(&sql);
            for entry in chunk {
                sequence += 1;
                query = query
                    .bind(sequence)
                    .bind(i64_of(entry.job_id, "job id")?)
                    .bind(entry.submitter.clone())
                    .bind(entry.state.clone())
                    .bind(entry.worker.clone())
                    .bind(entry.output_hash.clone())
                    .bind(i64_of(entry.block_number, "block")?)
                    .bind(entry.tx_hash.clone())
                    .bind(i64_of(entry.recorded_at, "recorded_at")?);
            }
            query
                .execute(&mut **tx)
                .await
                .context("writing the page's event log")?;
        }
        Ok(())
    }

    /// [`JobFold::write`] on PostgreSQL: new jobs and the log entries are `COPY`'d in (a
    /// multi-row `INSERT` costs PostgreSQL several times more per row), and jobs the database
    /// had are updated in one `UPDATE .. FROM UNNEST` of array parameters. A job new to the
    /// page that the database has after all (it cannot, the leader being the one writer) fails
    /// the page, which the indexer retries, and the retry reads it.
    async fn write_copy(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        block: i64,
    ) -> Result<()> {
        let mut fresh = CopyRows::default();
        let mut known = Vec::new();
        for job in self.changed.iter().filter_map(|id| self.rows.get(id)) {
            if !self.fresh.contains(&job.job_id) {
                known.push(job);
                continue;
            }
            fresh.int(Some(i64_of(job.job_id, "job id")?));
            fresh.text(Some(&job.submitter));
            fresh.int(Some(i64_of(job.model_id, "model id")?));
            fresh.text(Some(&job.input_hash));
            fresh.text(Some(&job.fee));
            fresh.int(Some(i64_of(job.deadline, "deadline")?));
            fresh.int(Some(i64_of(job.min_vram_mb, "min_vram_mb")?));
            fresh.int(Some(i64_of(job.required_flags, "required_flags")?));
            fresh.int(Some(i64_of(job.min_stake_tier, "min_stake_tier")?));
            fresh.int(Some(i64_of(job.min_score, "min_score")?));
            fresh.text(Some(&job.terms));
            fresh.text(Some(&job.dispute_bond));
            fresh.text(Some(&job.state));
            fresh.text(job.worker.as_deref());
            fresh.text(job.output_hash.as_deref());
            fresh.text(job.disputer.as_deref());
            fresh.int(opt_i64(job.assigned_at, "assigned_at")?);
            fresh.int(opt_i64(job.completed_at, "completed_at")?);
            fresh.text(job.dispute.as_deref());
            fresh.int(Some(block));
            fresh.int(Some(block));
            fresh.int(Some(i64_of(job.items, "items")?));
            fresh.end_row();
        }
        fresh
            .copy(
                tx,
                "COPY jobs (job_id, submitter, model_id, input_hash, fee, deadline, min_vram_mb, \
                 required_flags, min_stake_tier, min_score, terms, dispute_bond, state, worker, \
                 output_hash, disputer, assigned_at, completed_at, dispute, submitted_block, \
                 updated_block, items) FROM STDIN",
            )
            .await
            .context("writing the page's new jobs")?;
        if !known.is_empty() {
            let ids = known
                .iter()
                .map(|j| i64_of(j.job_id, "job id"))
                .collect::<Result<Vec<i64>>>()?;
            let text =
                |f: fn(&JobRow) -> Option<String>| known.iter().map(|j| f(j)).collect::<Vec<_>>();
            let at = |f: fn(&JobRow) -> Option<u64>| {
                known
                    .iter()
                    .map(|j| opt_i64(f(j), "time"))
                    .collect::<Result<Vec<Option<i64>>>>()
            };
            let updated = sqlx::query(
                "UPDATE jobs SET state = u.state, worker = u.worker, \
                 output_hash = u.output_hash, disputer = u.disputer, \
                 assigned_at = u.assigned_at, completed_at = u.completed_at, \
                 dispute = u.dispute, updated_block = $9 \
                 FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], \
                 $6::bigint[], $7::bigint[], $8::text[]) AS u (job_id, state, worker, \
                 output_hash, disputer, assigned_at, completed_at, dispute) \
                 WHERE jobs.job_id = u.job_id",
            )
            .bind(ids)
            .bind(text(|j| Some(j.state.clone())))
            .bind(text(|j| j.worker.clone()))
            .bind(text(|j| j.output_hash.clone()))
            .bind(text(|j| j.disputer.clone()))
            .bind(at(|j| j.assigned_at)?)
            .bind(at(|j| j.completed_at)?)
            .bind(text(|j| j.dispute.clone()))
            .bind(block)
            .execute(&mut **tx)
            .await
            .context("updating the page's jobs")?
            .rows_affected();
            all_known_updated(updated, known.len())?;
        }
        if self.events.is_empty() {
            return Ok(());
        }
        let mut sequence = pg_db::last_sequence(tx).await?;
        let mut log = CopyRows::default();
        for entry in &self.events {
            sequence += 1;
            log.int(Some(sequence));
            log.int(Some(i64_of(entry.job_id, "job id")?));
            log.text(Some(&entry.submitter));
            log.text(Some(&entry.state));
            log.text(entry.worker.as_deref());
            log.text(entry.output_hash.as_deref());
            log.int(Some(i64_of(entry.block_number, "block")?));
            log.text(Some(&entry.tx_hash));
            log.int(Some(i64_of(entry.recorded_at, "recorded_at")?));
            log.end_row();
        }
        log.copy(
            tx,
            "COPY job_events (sequence, job_id, submitter, state, worker, output_hash, \
             block_number, tx_hash, recorded_at) FROM STDIN",
        )
        .await
        .context("writing the page's event log")
    }
}

/// Fails the page when its update of `known` rows it took as known changed only `updated` of
/// them: a row the database lacks (an index reset elsewhere) fails the page, and its retry
/// reads the database.
fn all_known_updated(updated: u64, known: usize) -> Result<()> {
    let known = known as u64;
    anyhow::ensure!(
        updated == known,
        "{} of the page's {} known jobs are not in the index",
        known - updated.min(known),
        known
    );
    Ok(())
}

/// Rows in PostgreSQL's `COPY` text format: tab between columns, newline after each row,
/// `\N` for NULL, and backslash, tab, newline and carriage return escaped in text (so any text
/// comes back as it was).
#[derive(Default)]
struct CopyRows {
    data: String,
    rows: usize,
    /// Whether the current row has a column yet.
    started: bool,
}

impl CopyRows {
    fn separate(&mut self) {
        if self.started {
            self.data.push('\t');
        }
        self.started = true;
    }

    fn int(&mut self, value: Option<i64>) {
        self.separate();
        match value {
            Some(value) => {
                let _ = write!(self.data, "{value}");
            }
            None => self.data.push_str("\\N"),
        }
    }

    fn text(&mut self, value: Option<&str>) {
        self.separate();
        let Some(value) = value else {
            self.data.push_str("\\N");
            return;
        };
        if !value.contains(['\\', '\t', '\n', '\r']) {
            self.data.push_str(value);
            return;
        }
        for c in value.chars() {
            match c {
                '\\' => self.data.push_str("\\\\"),
                '\t' => self.data.push_str("\\t"),
                '\n' => self.data.push_str("\\n"),
                '\r' => self.data.push_str("\\r"),
                c => self.data.push(c),
            }
        }
    }

    fn end_row(&mut self) {
        self.data.push('\n');
        self.rows += 1;
        self.started = false;
    }

    /// Sends the rows with `statement` (a `COPY .. FROM STDIN`), if there are any.
    async fn copy(
        self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        statement: &str,
    ) -> Result<()> {
        if self.rows == 0 {
            return Ok(());
        }
        let mut copy = tx.copy_in_raw(statement).await?;
        copy.send(self.data.into_bytes()).await?;
        let copied = copy.finish().await?;
        anyhow::ensure!(
            copied == self.rows as u64,
            "COPY took {copied} of {} rows",
            self.rows
        );
        Ok(())
    }
}

/// `rows` rows of `columns` placeholders: `($1, …, $columns), ($columns+1, …)` for
/// PostgreSQL; `(?, …), (?, …)` for SQLite, which binds them in order (SQLite finds a numbered
/// parameter's name by a linear scan, so thousands of `$n` in one statement cost quadratic
/// time).
fn placeholders(backend: Backend, rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|r| {
            let marks: Vec<String> = (1..=columns)
                .map(|c| match backend {
                    Backend::Sqlite => "?".to_owned(),
                    Backend::Postgres => format!("${}", r * columns + c),
                })
                .collect();
            format!("({})", marks.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The index's page statements, one body compiled for each sqlx database type a page is
/// written through: `Any` (SQLite) and native PostgreSQL (whose page writes `COPY` rows in,
/// which `Any` cannot reach). The same SQL on both.
macro_rules! page_statements {
    ($module:ident, $db:ty, $backend:expr) => {
        pub(crate) mod $module {
            use super::*;

            /// Fails unless `(holder, epoch)` still leads. Taking the lease row's lock (an
            /// UPDATE that changes nothing) orders this write after any takeover in
            /// PostgreSQL; SQLite has a single writer anyway.
            pub(crate) async fn check_fence(
                tx: &mut sqlx::Transaction<'_, $db>,
                (holder, epoch): (&str, u64),
            ) -> Result<()> {
                let held = sqlx::query(
                    "UPDATE leases SET holder = holder \
                     WHERE name = $1 AND holder = $2 AND epoch = $3",
                )
                .bind(crate::leader::LEADER)
                .bind(holder)
                .bind(i64_of(epoch, "epoch")?)
                .execute(&mut **tx)
                .await
                .context("checking the leader lease")?;
                anyhow::ensure!(
                    held.rows_affected() == 1,
                    "no longer the leader (epoch {epoch} was superseded): index write refused"
                );
                Ok(())
            }

            /// Checks the fence, reads the page's jobs the database has and `known` lacks,
            /// folds the page's job mutations and applies the others; the fold, to be
            /// written.
            pub(super) async fn apply_page(
                tx: &mut sqlx::Transaction<'_, $db>,
                batch: &Batch,
                fence: Option<(&str, u64)>,
                ids: &[u64],
                known: Known,
            ) -> Result<JobFold> {
                if let Some(fence) = fence {
                    check_fence(tx, fence).await?;
                }
                let highest = match known.highest {
                    Some(highest) => highest,
                    None => u64_of(
                        sqlx::query("SELECT COALESCE(MAX(job_id), 0) AS highest FROM jobs")
                            .fetch_one(&mut **tx)
                            .await
                            .context("reading the highest job id")?
                            .try_get("highest")?,
                        "highest job id",
                    )?,
                };
                // Jobs above the highest the database has are new: nothing to read.
                let missing = ids
                    .iter()
                    .filter(|&&id| id <= highest && !known.rows.contains_key(&id))
                    .map(|&id| i64_of(id, "job id"))
                    .collect::<Result<Vec<i64>>>()?;
                let mut rows = known.rows;
                for chunk in missing.chunks(ROWS_PER_STATEMENT * 4) {
                    let sql = format!(
                        "SELECT * FROM jobs WHERE job_id IN {}",
                        placeholders($backend, 1, chunk.len())
                    );
                    let mut query = sqlx::query(&sql);
                    for id in chunk {
                        query = query.bind(*id);
                    }
                    for row in query
                        .fetch_all(&mut **tx)
                        .await
                        .context("reading the page's jobs")?
                    {
                        let job = job_row(&row)?;
                        rows.insert(job.job_id, job);
                    }
                }
                let block = i64_of(batch.block, "block")?;
                let mut jobs = JobFold::new(rows, highest);
                for mutation in &batch.mutations {
                    if !jobs
                        .apply(mutation)
                        .with_context(|| format!("applying {mutation:?}"))?
                    {
                        apply_one(tx, mutation, block)
                            .await
                            .with_context(|| format!("applying {mutation:?}"))?;
                    }
                }
                Ok(jobs)
            }

            /// Writes the stream's cursor after the page, once the index is checked to still
            /// hold the cursor the page started from ([`PageStart`]); the page fails otherwise.
            pub(super) async fn write_cursor(
                tx: &mut sqlx::Transaction<'_, $db>,
                batch: &Batch,
            ) -> Result<()> {
                let expected = match &batch.from {
                    PageStart::Anywhere => None,
                    PageStart::Empty => Some(None),
                    PageStart::After(cursor) => Some(Some(cursor)),
                };
                if let Some(expected) = expected {
                    let stored: Option<String> =
                        sqlx::query("SELECT cursor FROM index_cursors WHERE contract = $1")
                            .bind(&batch.contract)
                            .fetch_optional(&mut **tx)
                            .await
                            .context("reading the index cursor")?
                            .map(|row| row.try_get("cursor"))
                            .transpose()?;
                    let stored: Option<EventCursor> = stored
                        .map(|text| serde_json::from_str(&text))
                        .transpose()
                        .context("the stored index cursor")?;
                    anyhow::ensure!(
                        stored.as_ref() == expected,
                        "{}'s page refused: the index holds the cursor {stored:?}, not {expected:?} \
                         where the page began (the index was reset or emptied meanwhile; a \
                         PostgreSQL crash empties its unlogged index): the next step starts \
                         from what the index holds",
                        batch.contract
                    );
                }
                let cursor = serde_json::to_string(&batch.cursor)?;
                sqlx::query(
                    "INSERT INTO index_cursors (contract, cursor, events_applied) \
                     VALUES ($1, $2, $3) ON CONFLICT (contract) DO UPDATE SET \
                     cursor = excluded.cursor, \
                     events_applied = index_cursors.events_applied + excluded.events_applied",
                )
                .bind(&batch.contract)
                .bind(cursor)
                .bind(i64_of(batch.events, "events")?)
                .execute(&mut **tx)
                .await
                .context("writing the index cursor")?;
                Ok(())
            }

            /// The event log's last sequence (0 when empty). The sequence grows by one per
            /// entry: only the leader's indexer writes the log.
            pub(super) async fn last_sequence(
                tx: &mut sqlx::Transaction<'_, $db>,
            ) -> Result<i64> {
                Ok(
                    sqlx::query("SELECT COALESCE(MAX(sequence), 0) AS last FROM job_events")
                        .fetch_one(&mut **tx)
                        .await
                        .context("reading the event log's sequence")?
                        .try_get("last")?,
                )
            }

            pub(super) async fn apply_one(
                tx: &mut sqlx::Transaction<'_, $db>,
                mutation: &Mutation,
                block: i64,
            ) -> Result<()> {
                match mutation {
                    Mutation::ModelSet(m) => {
                        sqlx::query(
                            "INSERT INTO models (model_id, owner, model_hash, min_vram_mb, required_flags, \
                             min_stake_tier, min_score, price, active, updated_block) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                             ON CONFLICT (model_id) DO UPDATE SET owner = excluded.owner, \
                             model_hash = excluded.model_hash, min_vram_mb = excluded.min_vram_mb, \
                             required_flags = excluded.required_flags, \
                             min_stake_tier = excluded.min_stake_tier, min_score = excluded.min_score, \
                             price = excluded.price, updated_block = excluded.updated_block",
                        )
                        .bind(i64_of(m.model_id, "model id")?)
                        .bind(&m.owner)
                        .bind(&m.model_hash)
                        .bind(i64_of(m.min_vram_mb, "min_vram_mb")?)
                        .bind(i64_of(m.required_flags, "required_flags")?)
                        .bind(i64_of(m.min_stake_tier, "min_stake_tier")?)
                        .bind(i64_of(m.min_score, "min_score")?)
                        .bind(&m.price)
                        .bind(i64::from(m.active))
                        .bind(block)
                        .execute(&mut **tx)
                        .await?;
                    }
                    Mutation::ModelActive { model_id, active } => {
                        sqlx::query("UPDATE models SET active = $1, updated_block = $2 WHERE model_id = $3")
                            .bind(i64::from(*active))
                            .bind(block)
                            .bind(i64_of(*model_id, "model id")?)
                            .execute(&mut **tx)
                            .await?;
                    }
                    Mutation::JobSubmitted(_)
                    | Mutation::JobRead(_)
                    | Mutation::JobState { .. }
                    | Mutation::JobEvent { .. } => bail!("a job mutation outside the page's fold"),
                    // A worker's row is its `get_worker` read at the page's block, and two
                    // streams read it (JobMgr's after an assignment, the pool's after its
                    // events), each at its own pages' blocks: a read at an earlier block
                    // than the row's never replaces it.
                    Mutation::Worker(w) => {
                        sqlx::query(
                            "INSERT INTO workers (address, state, gpu_model, vram_mb, compute_capability, \
                             flags, stake, hardware_tier, stake_tier, score, last_heartbeat, info, \
                             updated_block) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                             ON CONFLICT (address) DO UPDATE SET state = excluded.state, \
                             gpu_model = excluded.gpu_model, vram_mb = excluded.vram_mb, \
                             compute_capability = excluded.compute_capability, flags = excluded.flags, \
                             stake = excluded.stake, hardware_tier = excluded.hardware_tier, \
                             stake_tier = excluded.stake_tier, score = excluded.score, \
                             last_heartbeat = excluded.last_heartbeat, info = excluded.info, \
                             updated_block = excluded.updated_block \
                             WHERE workers.updated_block <= excluded.updated_block",
                        )
                        .bind(&w.address)
                        .bind(&w.state)
                        .bind(&w.gpu_model)
                        .bind(i64_of(w.vram_mb, "vram_mb")?)
                        .bind(i64_of(w.compute_capability, "compute_capability")?)
                        .bind(i64_of(w.flags, "flags")?)
                        .bind(&w.stake)
                        .bind(i64_of(w.hardware_tier, "hardware_tier")?)
                        .bind(i64_of(w.stake_tier, "stake_tier")?)
                        .bind(i64_of(w.score, "score")?)
                        .bind(i64_of(w.last_heartbeat, "last_heartbeat")?)
                        .bind(&w.info)
                        .bind(block)
                        .execute(&mut **tx)
                        .await?;
                    }
                    Mutation::Params { contract, params } => {
                        sqlx::query(
                            "INSERT INTO params (contract, params, updated_block) VALUES ($1, $2, $3) \
                             ON CONFLICT (contract) DO UPDATE SET params = excluded.params, \
                             updated_block = excluded.updated_block",
                        )
                        .bind(contract)
                        .bind(params)
                        .bind(block)
                        .execute(&mut **tx)
                        .await?;
                    }
                }
                Ok(())
            }

            pub(crate) fn job_row(r: &<$db as sqlx::Database>::Row) -> Result<JobRow> {
                Ok(JobRow {
                    job_id: u64_of(r.try_get("job_id")?, "job_id")?,
                    submitter: r.try_get("submitter")?,
                    model_id: u64_of(r.try_get("model_id")?, "model_id")?,
                    input_hash: r.try_get("input_hash")?,
                    fee: r.try_get("fee")?,
                    deadline: u64_of(r.try_get("deadline")?, "deadline")?,
                    items: u64_of(r.try_get("items")?, "items")?,
                    min_vram_mb: u64_of(r.try_get("min_vram_mb")?, "min_vram_mb")?,
                    required_flags: u64_of(r.try_get("required_flags")?, "required_flags")?,
                    min_stake_tier: u64_of(r.try_get("min_stake_tier")?, "min_stake_tier")?,
                    min_score: u64_of(r.try_get("min_score")?, "min_score")?,
                    terms: r.try_get("terms")?,
                    dispute_bond: r.try_get("dispute_bond")?,
                    state: r.try_get("state")?,
                    worker: r.try_get("worker")?,
                    output_hash: r.try_get("output_hash")?,
                    disputer: r.try_get("disputer")?,
                    assigned_at: opt_u64(r.try_get("assigned_at")?, "assigned_at")?,
                    completed_at: opt_u64(r.try_get("completed_at")?, "completed_at")?,
                    dispute: r.try_get("dispute")?,
                })
            }
        }
    };
}

// Pages go through `Any` on SQLite only: PostgreSQL's are written natively.
page_statements!(any_db, sqlx::Any, Backend::Sqlite);
page_statements!(pg_db, sqlx::Postgres, Backend::Postgres);
