//! `ciro-worker run`: the agent. It trusts the chain, never the coordinator.
//!
//! On start it declares its hardware and makes itself eligible ([`crate::onboard`]), then:
//! - heartbeats to the coordinator (load, capacity, the models in its store) and, less often,
//!   on chain;
//! - long-polls the coordinator for assignments and, for each, reads the job **from the
//!   chain**: assigned to this worker, before its deadline, with the input and model the
//!   assignment names; anything else is refused and logged with the job id;
//! - downloads the input (its SHA-256 must be the on-chain `input_hash`) and, when its store
//!   lacks it, the model file (its SHA-256 must be the registered `model_hash`), runs the job
//!   through the engine (concurrent jobs of one model share its dynamic batcher), writes the
//!   output to its journal, uploads it with a signed receipt, and commits `submit_result`;
//!   results finished within `commit_window` of each other go in one multicall;
//! - claims its rewards once they pass `claim_threshold`.
//!
//! With a relayer ([`RelayerConfig`]) every transaction of the agent, onboarding included,
//! is a SNIP-9 outside execution the paymaster relayer sends and a sponsor pays for: the
//! worker needs no gas token (its stake is in the payment token). With `fallback` a
//! transaction the relayer refuses or cannot take is sent and paid directly.
//!
//! The journal ([`crate::journal`]) makes it crash-safe: a computed output is uploaded and
//! committed after a restart, never recomputed; a job past its deadline is dropped. On
//! SIGTERM it stops taking work, finishes what it runs (abandoning, after `drain_grace`, what
//! is left: the coordinator's keeper releases it), commits, and with `deactivate_on_exit`
//! deactivates on chain.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use ciro_api::coordinator::routes::{self, HttpMethod};
use ciro_api::coordinator::{
    Assignment, ClientError, CoordinatorClient, ErrorCode, GiveBack, Heartbeat, Receipt,
    RequestSigner,
};
use ciro_api::snip29::PaymasterClient;
use ciro_chain::account::AccountSource;
use ciro_chain::bindings::cdc_pool;
use ciro_chain::bindings::job_mgr::{self, JobMgr, JobState};
use ciro_chain::cainome::cairo_serde::{ContractAddress, U256};
use ciro_chain::clients::{u256_from_digest, JobMgrClient, PoolClient};
use ciro_chain::gasless::{Payment, Relay};
use ciro_chain::manifest::Manifest;
use ciro_chain::sender::{SenderConfig, TxSender};
use ciro_chain::starknet::accounts::{Account, ConnectedAccount};
use ciro_chain::starknet::core::types::{BlockId, BlockTag, Felt};
use ciro_chain::starknet::providers::Provider;
use ciro_chain::starknet::signers::SigningKey;
use ciro_chain::tx::{block_timestamp, call};
use ciro_chain::{ChainError, RpcAccount};
use ciro_engine::tensors::{decode_input, dtype_name};
use ciro_engine::{hardware, Digest, Engine, EngineConfig, EngineError, ModelSpec, ModelStore};
use ciro_service::{serve, CancellationToken, ChainConfig, Metrics, Readiness, RpcCheck};
use futures_util::{FutureExt, StreamExt, TryStreamExt};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::journal::{Entry, Journal, Stage};
use crate::onboard::{declare, onboard};

/// A SNIP-29 paymaster relayer the agent's transactions go through, paid by a sponsor.
#[derive(Clone)]
pub struct RelayerConfig {
    /// Its URL.
    pub url: String,
    /// Its API key (which sponsor's policy pays), if it wants one.
    pub api_key: Option<String>,
    /// Send and pay directly what the relayer refuses or cannot take.
    pub fallback: bool,
}

impl std::fmt::Debug for RelayerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayerConfig")
            .field("url", &self.url)
            .field("api_key", &self.api_key.as_ref().map(|_| "(set)"))
            .field("fallback", &self.fallback)
            .finish()
    }
}

/// The agent's configuration, validated.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The node and the deployment manifest.
    pub chain: ChainConfig,
    /// The worker's account.
    pub account: AccountSource,
    /// The coordinator's base URL.
    pub coordinator: String,
    /// Where the journal, the outputs and the model store live.
    pub data_dir: PathBuf,
    /// Own stake to hold (topped up to it, never beyond), in token base units.
    pub stake_target: u128,
    /// Jobs run at once.
    pub capacity: u32,
    /// Period of heartbeats to the coordinator.
    pub heartbeat: Duration,
    /// Period of on-chain heartbeats.
    pub chain_heartbeat: Duration,
    /// Claim rewards once pending rewards reach this (None: never automatically).
    pub claim_threshold: Option<u128>,
    /// Deterministic mode with this seed.
    pub deterministic_seed: Option<u64>,
    /// Most rows of one forward pass.
    pub max_batch: i64,
    /// Largest input accepted, in bytes (each of a batch's inputs).
    pub max_input_bytes: u64,
    /// Most inputs of a batch it runs (1: single jobs only), declared in its heartbeats.
    pub max_batch_items: u32,
    /// Largest model file accepted, in bytes (it is held in memory while it is checked).
    pub max_model_bytes: u64,
    /// Largest output a job may have, in bytes of tensor data: a larger one fails the job
    /// before it is written (what the coordinator accepts: an output no one can upload would
    /// only fill the disk).
    pub max_output_bytes: u64,
    /// How long a drain waits for running jobs on SIGTERM.
    pub drain_grace: Duration,
    /// Longest a job's forward pass may run (waiting for the inference thread included). Past
    /// it the job is given back and the agent exits for a restart: a forward pass cannot be
    /// interrupted, and one that never ends holds the engine's only inference thread.
    pub max_forward: Duration,
    /// Deactivate on chain when stopping.
    pub deactivate_on_exit: bool,
    /// Results finished within this of each other are committed in one transaction.
    pub commit_window: Duration,
    /// Longest assignment long-poll.
    pub poll_wait: Duration,
    /// Test only: compute and journal results but never upload or commit them (to kill the
    /// agent between computing and committing).
    pub hold_commits: bool,
    /// Test only: add 1 to the first element of every output (a cheating worker).
    pub test_corrupt_output: bool,
    /// Test only: abort the process (as a crash would) once it has journaled this many of a
    /// batch's outputs.
    pub test_crash_after_items: Option<u64>,
    /// Where to serve `/health`, `/ready` (the node) and `/metrics`.
    pub listen: std::net::SocketAddr,
    /// The paymaster relayer its transactions go through (gasless), if any.
    pub relayer: Option<RelayerConfig>,
    /// Challenge every slash opened against this worker while its window is open, paying the
    /// pool's challenge bond (without it, a pending slash is reported, and challenged only by
    /// `ciro-worker challenge-slash`).
    pub challenge_slashes: bool,
    /// Put jobs' rows in shared forward passes (throughput mode; see
    /// [`EngineConfig::batch_jobs`] for why it is off by default).
    pub batch_jobs: bool,
    /// Run a batch's inputs with their rows in shared passes (throughput mode only): see
    /// `--merge-batch-items`.
    pub merge_batch_items: bool,
    /// Each job's pass in a process of its own, sandboxed or not ([`ciro_engine::isolation`]);
    /// `None` runs models in the agent's process, which holds the account key (for models the
    /// operator trusts). A sandboxed one is checked at start: the agent refuses to serve when
    /// a model's process could reach the worker's files, network, signals or memory.
    pub isolation: Option<ciro_engine::Isolation>,
    /// Most bytes of model files kept loaded between jobs (None: half the inference device's
    /// memory, the best GPU's on CUDA, else the machine's). The least recently used models
    /// are let go first; the model a job needs is always loaded.
    pub max_loaded_model_bytes: Option<u64>,
    /// Most bytes of model files kept on disk (None: 4 times `max_model_bytes`). The least
    /// recently used are removed first; the one a job just fetched is always kept.
    pub max_stored_model_bytes: Option<u64>,
    /// How long the output of a job that ended (committed, refused, dropped or failed) stays
    /// in the journal's `outputs/` (the coordinator keeps the uploaded copy; this one is for
    /// an operator's own checks). Checked at start and every hour.
    pub keep_outputs: Duration,
}

impl AgentConfig {
    /// Checks what its types do not: a capacity, a batch and size limits of at least 1 (the
    /// command line's parser refuses 0 too; this guards a configuration built in code, whose
    /// zero limit the coordinator would refuse in every heartbeat, leaving the worker never
    /// live).
    pub fn validate(&self) -> Result<()> {
        anyhow::ensure!(self.capacity >= 1, "the capacity is at least 1 job");
        anyhow::ensure!(self.max_batch >= 1, "the largest batch is at least 1 row");
        anyhow::ensure!(
            (1..=ciro_api::coordinator::MAX_BATCH_ITEMS).contains(&self.max_batch_items),
            "the most inputs of a batch is 1 to {}",
            ciro_api::coordinator::MAX_BATCH_ITEMS
        );
        anyhow::ensure!(
            self.max_input_bytes >= 1 && self.max_model_bytes >= 1,
            "the input and model file size limits are at least 1 byte (got {} and {})",
            self.max_input_bytes,
            self.max_model_bytes
        );
        Ok(())
    }
}

/// The agent's metrics.
#[derive(Clone)]
struct AgentMetrics {
    jobs: prometheus::IntCounterVec,
    running: prometheus::IntGauge,
    commits: prometheus::IntCounterVec,
    open_slashes: prometheus::IntGauge,
    loaded_model_bytes: prometheus::IntGauge,
}

impl AgentMetrics {
    fn register(metrics: &Metrics) -> Result<Self> {
        let this = Self {
            jobs: prometheus::IntCounterVec::new(
                prometheus::Opts::new(
                    "ciro_worker_jobs_total",
                    "Jobs by how their task ended here (done: queued for commitment or already committed; refused, dropped, failed; retry: a passing failure, taken again later)",
                ),
                &["stage"],
            )?,
            running: prometheus::IntGauge::new("ciro_worker_running_jobs", "Jobs running now")?,
            commits: prometheus::IntCounterVec::new(
                prometheus::Opts::new(
                    "ciro_worker_commit_transactions_total",
                    "submit_result transactions by result",
                ),
                &["result"],
            )?,
            open_slashes: prometheus::IntGauge::new(
                "ciro_worker_open_slashes",
                "Slashes open against this worker (pending: to challenge before the deadline, or challenged)",
            )?,
            loaded_model_bytes: prometheus::IntGauge::new(
                "ciro_worker_loaded_model_bytes",
                "Bytes of the model files whose modules are in memory: kept loaded, or let go of but still in running passes (at the last heartbeat)",
            )?,
        };
        metrics.registry().register(Box::new(this.jobs.clone()))?;
        metrics
            .registry()
            .register(Box::new(this.running.clone()))?;
        metrics
            .registry()
            .register(Box::new(this.commits.clone()))?;
        metrics
            .registry()
            .register(Box::new(this.open_slashes.clone()))?;
        metrics
            .registry()
            .register(Box::new(this.loaded_model_bytes.clone()))?;
        Ok(this)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What the agent shares between its tasks.
struct Agent {
    config: AgentConfig,
    me: Felt,
    chain_id: Felt,
    key: SigningKey,
    account: RpcAccount,
    sender: Arc<TxSender<RpcAccount>>,
    jobs: JobMgrClient<RpcAccount>,
    pool: PoolClient<RpcAccount>,
    job_mgr: Felt,
    /// The payment token (challenge bonds are paid in it).
    token: Felt,
    /// The deployment's first block (where slashes are looked for).
    deploy_block: u64,
    client: CoordinatorClient,
    store: Arc<ModelStore>,
    engine: Engine,
    journal: Journal,
    device: String,
    cuda: String,
    in_flight: Mutex<HashSet<u64>>,
    /// Jobs refused lately, not taken again before the instant (an honest coordinator does
    /// not offer them again; a lying one is not let to make the agent spin).
    cooldown: Mutex<std::collections::HashMap<u64, Instant>>,
    /// Per model: one download, or one change of its spec and the run after it, at a time
    /// (jobs of a model not yet stored wait for the first one's download instead of fetching
    /// it again). See [`Agent::with_model_lock`].
    model_locks: Mutex<std::collections::HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
    /// Results queued for their commitment: not taken again from a poll that still shows the
    /// job assigned (the coordinator indexes the commitment a tick after it lands).
    queued: Mutex<HashSet<u64>>,
    running: AtomicU32,
    commits: mpsc::UnboundedSender<u64>,
    metrics: AgentMetrics,
    /// The first job whose model the engine was stuck on past `max_forward` (0: none). Once
    /// such a job is given back, `wedged` is cancelled: the agent takes no more work and exits
    /// with an error.
    wedged_by: AtomicU64,
    wedged: CancellationToken,
    /// Jobs whose forward pass is counted in the journal and has not returned yet: at the end
    /// of a drain, those abandoned are uncounted (the process ends by choice, not by them).
    counted: Mutex<Counted>,
    /// The job whose pass this process's predecessor died in, when the journal shows exactly
    /// one pass that never returned (0: none, or several, which cannot be told apart): after a
    /// release for silence, only that job is reported as failed.
    died_in: AtomicU64,
    /// Whether the coordinator moves a batch's items in one request each way, and when it was
    /// last asked (see [`Agent::batch_limit`]).
    batch_transfers: Mutex<Option<(bool, Instant)>>,
}

/// The forward passes counted in the journal and not returned yet, and whether the drain has
/// closed the set. A pass is counted before it may start; the drain closes the set and takes
/// it, uncounting each pass it abandons; a pass that comes after the close does not start and
/// uncounts itself. So every pass the process did not die of is uncounted exactly once: by
/// its own return, or by the drain, or by itself after the close.
#[derive(Debug, Default)]
struct Counted {
    jobs: HashSet<u64>,
    closed: bool,
}

impl Counted {
    /// Enters job `job_id`'s pass (already counted in the journal); false once closed: the pass
    /// does not start, and its caller uncounts it.
    fn enter(&mut self, job_id: u64) -> bool {
        if !self.closed {
            self.jobs.insert(job_id);
        }
        !self.closed
    }

    /// Whether job `job_id`'s returned pass is still for its caller to uncount (not taken by
    /// the drain).
    fn leave(&mut self, job_id: u64) -> bool {
        self.jobs.remove(&job_id)
    }

    /// Closes the set; the passes the drain abandons, for it to uncount.
    fn close(&mut self) -> Vec<u64> {
        self.closed = true;
        self.jobs.drain().collect()
    }
}

/// The job whose pass the previous process died in, when the journal's open entries show
/// exactly one pass that never returned.
fn died_in(open: &[Entry]) -> Option<u64> {
    let mut unreturned = open
        .iter()
        .filter(|e| e.stage == Stage::Running && e.attempts > 0);
    match (unreturned.next(), unreturned.next()) {
        (Some(only), None) => Some(only.job_id),
        _ => None,
    }
}

/// `mutex`'s guard, also when a thread panicked holding it (the sets it guards stay
/// consistent: each change is one call).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `sender` with its transactions sent through `relayer` as SNIP-9 outside executions signed
/// with `key`, paid by the sponsor whose policy the relayer applies (the Paymaster of
/// `manifest` must be the execution's Caller, when the manifest names one).
pub fn relayed(
    sender: TxSender<RpcAccount>,
    relayer: &RelayerConfig,
    key: SigningKey,
    chain_id: Felt,
    manifest: &Manifest,
) -> Result<TxSender<RpcAccount>> {
    let mut client = PaymasterClient::new(&relayer.url)
        .map_err(|e| anyhow!("the relayer URL {}: {e}", relayer.url))?;
    if let Some(api_key) = &relayer.api_key {
        client = client.with_api_key(api_key.clone());
    }
    tracing::info!(
        relayer = %relayer.url,
        fallback = relayer.fallback,
        "gasless: transactions go through the paymaster relayer"
    );
    Ok(sender.with_relay(
        Relay::new(
            client,
            key,
            chain_id,
            Payment::Sponsored {
                paymaster: manifest
                    .contract(ciro_chain::constants::contracts::PAYMASTER)
                    .ok(),
            },
        )
        .with_fallback(relayer.fallback),
    ))
}

/// What [`Agent::activate_if_warm`] found.
enum Warmup {
    /// Stake is warming, its warm-up not over yet.
    Warming,
    /// Nothing warming (or an activation just sent).
    Idle,
}

/// How long a refused job is not taken again.
const REFUSAL_COOLDOWN: Duration = Duration::from_secs(60);

/// How long a job that met a passing failure waits before it is taken again.
const RETRY_COOLDOWN: Duration = Duration::from_secs(5);

/// Forward passes of one job this worker's process may fail to survive (a crash, a kill, a
/// pass past `max_forward`) before the job is given back instead of run again: a job that
/// crashes libtorch would otherwise be resumed from the journal into the same crash after
/// every restart until its deadline.
const MAX_FORWARD_ATTEMPTS: u32 = 2;

/// Longest wait between two looks for slashes against the worker.
const SLASH_WATCH_LONGEST: Duration = Duration::from_secs(600);

/// Wait before a look for slashes that failed is made again.
const SLASH_WATCH_RETRY: Duration = Duration::from_secs(30);

/// How often a job waiting on its forward pass checks whether the engine is stuck.
const WATCH_PERIOD: Duration = Duration::from_secs(1);

/// Set once an agent of this process found its engine stuck (see [`process_wedged`]).
static WEDGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process's engine is stuck in native code (a forward pass or a model load that
/// will not return): its `main` should end it without running exit-time destructors, which
/// could wait on the stuck thread's locks (libtorch's thread pools, CUDA's context).
pub fn process_wedged() -> bool {
    WEDGED.load(Ordering::SeqCst)
}

/// Why a job is not run or not committed (logged with the job id; the journal keeps it).
#[derive(Debug)]
enum Refusal {
    /// The chain or the data disagree with the assignment.
    Refused(String),
    /// Its deadline passed.
    Dropped(String),
    /// The engine or the chain failed it: given back as the job's failure (the coordinator
    /// stops offering a job enough workers failed).
    Failed(String),
    /// This worker cannot run it: its own limits, disk or journal, or a fault between it and
    /// the coordinator (data not served, or not as registered). Given back as the worker's
    /// failure, which does not count against the job: another worker may run it.
    Unable(String),
    /// A passing failure (the node or the coordinator away, the agent draining): the job keeps
    /// its journaled stage, a computed output included, and is taken again at the next poll
    /// after [`RETRY_COOLDOWN`]; it is neither ended nor given back.
    Retry(String),
    /// The engine is stuck on the job's model past `max_forward`: failed and given back like
    /// `Failed`, never run here again, and the agent exits for a restart.
    Wedged(String),
}

/// A coordinator's refusal of a computed job's output or receipt: passing when it may clear by
/// itself (the coordinator unreachable or failing, or its index a tick behind the chain's
/// assignment), so the result is kept and published again at a later poll; final otherwise
/// (e.g. a conflicting output already stored), so the job ends and is given back rather than
/// retried until its release limit.
fn passing_or_failed(error: &ClientError, reason: String) -> Refusal {
    let lagging = matches!(
        error.code(),
        Some(ErrorCode::NotAssigned | ErrorCode::InvalidState)
    );
    if error.is_retryable() || lagging {
        Refusal::Retry(reason)
    } else if error.code() == Some(ErrorCode::PayloadTooLarge) {
        // An output past the coordinator's limit: the same on every worker.
        Refusal::Failed(reason)
    } else {
        Refusal::Unable(reason)
    }
}

/// Runs the agent until `shutdown`, then drains.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> Result<()> {
    config.validate()?;
    let registry = Metrics::new("ciro-worker", env!("CARGO_PKG_VERSION"))?;
    let agent_metrics = AgentMetrics::register(&registry)?;
    let manifest = Manifest::read(&config.chain.manifest)?;
    let node = ciro_chain::starknet::providers::JsonRpcClient::new(
        ciro_chain::starknet::providers::jsonrpc::HttpTransport::new(config.chain.rpc_url.clone()),
    );
    let chain_id = node.chain_id().await.context("reading the chain id")?;
    let (account, key) =
        ciro_chain::account::connect_with_key(&config.account, &config.chain.rpc_url, chain_id)
            .await?;
    let me = account.address();
    let mut sender = TxSender::new(account.clone(), SenderConfig::default());
    if let Some(relayer) = &config.relayer {
        sender = relayed(sender, relayer, key.clone(), chain_id, &manifest)?;
    }
    let sender = Arc::new(sender);
    let job_mgr = manifest.contract(ciro_chain::constants::contracts::JOB_MGR)?;
    let pool_address = manifest.contract(ciro_chain::constants::contracts::CDC_POOL)?;
    let jobs = JobMgrClient::new(job_mgr, sender.clone());
    let pool = PoolClient::new(pool_address, sender.clone());
    let token = call(pool.reader().token()).await?.0;
    let client = CoordinatorClient::new(&config.coordinator)
        .map_err(|e| anyhow!("the coordinator URL: {e}"))?
        .with_signer(RequestSigner::new(key.clone(), me, chain_id, job_mgr));
    if plain_http_off_host(&config.coordinator) {
        tracing::warn!(
            coordinator = %config.coordinator,
            "the coordinator is reached over plain http on another host: anyone on the path can \
             read this worker's signed requests and the jobs' data, and rewrite the coordinator's \
             answers (making the worker give jobs back); use https"
        );
    }

    // Hardware → capabilities → an eligible worker on chain.
    let report = hardware::detect();
    let declared = declare(&report)?;
    tracing::info!(
        worker = %format!("{me:#x}"),
        gpu = ?report.best_gpu().map(|g| g.name.clone()),
        report = %declared.report_digest,
        "hardware declared"
    );
    onboard(&pool, &account, token, &declared, config.stake_target).await?;
    match client.upload_blob(declared.canonical_report.clone()).await {
        Ok(info) => {
            tracing::info!(digest = %info.digest, "hardware report uploaded for anyone to check")
        }
        Err(e) => {
            tracing::warn!(error = %e, "uploading the hardware report failed (the coordinator may be down); continuing")
        }
    }

    if let Some(isolation) = config.isolation.as_ref().filter(|i| i.sandbox) {
        check_sandbox(
            isolation,
            &config.data_dir,
            &config.data_dir.join("models"),
            ciro_engine::default_device(),
        )
        .await?;
    }
    let engine_config = EngineConfig {
        deterministic_seed: config.deterministic_seed,
        max_batch: config.max_batch,
        batch_jobs: config.batch_jobs,
        max_output_bytes: config.max_output_bytes,
        isolation: config.isolation.clone(),
        // Isolated, each pass is timed and killed by the engine; in process, the watchdog of
        // `forward_watched` times what cannot be interrupted.
        pass_limit: config.isolation.is_some().then_some(config.max_forward),
        ..EngineConfig::default()
    };
    let max_loaded_bytes = config.max_loaded_model_bytes.unwrap_or_else(|| {
        let device_mb = match engine_config.device {
            tch::Device::Cuda(_) => report.best_gpu().map(|g| g.vram_mb),
            _ => None,
        }
        .unwrap_or(report.cpu.ram_mb);
        // At least the largest model file it accepts (a device whose memory reads 0 would
        // otherwise keep only the newest module).
        ((device_mb << 20) / 2).max(config.max_model_bytes)
    });
    let max_stored_bytes = config
        .max_stored_model_bytes
        .unwrap_or(config.max_model_bytes.saturating_mul(4));
    tracing::info!(
        max_loaded_bytes,
        max_stored_bytes,
        "models kept loaded between jobs: at most 8, their files totalling at most \
         max_loaded_bytes; model files kept on disk: at most max_stored_bytes"
    );
    let store = Arc::new(
        ModelStore::open(config.data_dir.join("models"), 8)?
            .with_max_loaded_bytes(max_loaded_bytes)
            .with_max_stored_bytes(max_stored_bytes),
    );
    let device = match engine_config.device {
        tch::Device::Cuda(_) => report
            .best_gpu()
            .map_or_else(|| "cuda".to_owned(), |g| g.name.clone()),
        _ => "cpu".to_owned(),
    };
    let cuda = match engine_config.device {
        tch::Device::Cuda(_) => report.cuda_version.clone().unwrap_or_default(),
        _ => String::new(),
    };
    let engine = Engine::new(store.clone(), engine_config)?;
    let journal = Journal::open(&config.data_dir).await?;
    // The deployment: its chain, its JobMgr and its first block's hash (a devnet restarted
    // with the same seed redeploys at the same addresses, in blocks of other hashes).
    let deployed_in = match manifest.deploy_block {
        Some(number) => format!(
            "{:#x}",
            ciro_chain::tx::block_hash(&node, number)
                .await
                .context("reading the deployment's first block")?
        ),
        None => "unknown".to_owned(),
    };
    journal
        .bind(&format!("{chain_id:#x}/{job_mgr:#x}/{deployed_in}"))
        .await?;
    let (commits, commit_queue) = mpsc::unbounded_channel();
    let agent = Arc::new(Agent {
        config,
        me,
        chain_id,
        key,
        account,
        sender,
        jobs,
        pool,
        job_mgr,
        token,
        deploy_block: manifest.deploy_block.unwrap_or(0),
        client,
        store,
        engine,
        journal,
        device,
        cuda,
        in_flight: Mutex::new(HashSet::new()),
        cooldown: Mutex::new(std::collections::HashMap::new()),
        model_locks: Mutex::new(std::collections::HashMap::new()),
        queued: Mutex::new(HashSet::new()),
        running: AtomicU32::new(0),
        commits,
        metrics: agent_metrics,
        wedged_by: AtomicU64::new(0),
        wedged: CancellationToken::new(),
        counted: Mutex::new(Counted::default()),
        died_in: AtomicU64::new(0),
        batch_transfers: Mutex::new(None),
    });
    let serving = {
        let readiness =
            Readiness::new().with_check(RpcCheck::new(agent.config.chain.rpc_url.clone()));
        let stop = shutdown.clone();
        let listen = agent.config.listen;
        tokio::spawn(
            async move { serve(listen, axum::Router::new(), &registry, readiness, stop).await },
        )
    };

    let stop_side = CancellationToken::new();
    let committer = tokio::spawn(agent.clone().committer(commit_queue, stop_side.clone()));
    let beats = tokio::spawn(agent.clone().heartbeats(stop_side.clone()));
    let chain_beats = tokio::spawn(agent.clone().chain_heartbeats(stop_side.clone()));
    let activations = tokio::spawn(agent.clone().activations(stop_side.clone()));
    let slash_watch = tokio::spawn(agent.clone().slash_watch(stop_side.clone()));
    let computed = tokio::spawn(agent.clone().retake_computed(shutdown.clone()));
    let pruning = tokio::spawn(agent.clone().prune_outputs(stop_side.clone()));

    // Resume what the journal holds.
    let open = agent.journal.open_jobs().await?;
    if let Some(job_id) = died_in(&open) {
        agent.died_in.store(job_id, Ordering::SeqCst);
    }
    for entry in open {
        tracing::info!(
            job_id = entry.job_id,
            stage = entry.stage.as_str(),
            "resuming from the journal"
        );
        agent.clone().spawn(resumed(&entry));
    }

    agent.clone().poll(shutdown.clone()).await;
    if agent.wedged.is_cancelled() {
        // Stop serving too: the process is to end (see `AgentConfig::max_forward`).
        shutdown.cancel();
    }

    // Drain: no new work; wait for the running jobs, up to the grace period.
    let started = Instant::now();
    while agent.running.load(Ordering::SeqCst) > 0 && started.elapsed() < agent.config.drain_grace {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let abandoned: Vec<u64> = agent
        .in_flight
        .lock()
        .map(|s| s.iter().copied().collect())
        .unwrap_or_default();
    if !abandoned.is_empty() {
        tracing::warn!(?abandoned, "drain grace over: abandoning these jobs (the coordinator's keeper releases them; a computed output is committed on the next start)");
    }
    // Their passes did not end the process, the drain did: uncounted, so that restarts during
    // a long pass do not give a job back unrun. (A pass the engine is stuck on was failed.)
    // Taken out, so that a pass returning meanwhile is not uncounted a second time, and closed,
    // so that a pass about to start does not start counted after this (see `Counted`).
    let counted = lock(&agent.counted).close();
    for job_id in counted {
        if let Err(e) = agent.journal.forward_returned(job_id).await {
            tracing::warn!(job_id, error = %e, "uncounting an abandoned forward pass");
        }
    }
    // Let the committer send what is queued, then stop the side tasks.
    tokio::time::sleep(agent.config.commit_window * 2).await;
    stop_side.cancel();
    for task in [
        beats,
        chain_beats,
        activations,
        slash_watch,
        computed,
        pruning,
    ] {
        task.await.ok();
    }
    committer.await.ok();
    if agent.config.deactivate_on_exit && !agent.wedged.is_cancelled() {
        match agent.pool.deactivate().await {
            Ok(out) => tracing::info!(tx = %format!("{:#x}", out.tx_hash), "deactivated on chain"),
            Err(e) => tracing::warn!(error = %e, "deactivating failed"),
        }
    }
    match serving.await {
        Ok(result) => result.context("serving /health, /ready and /metrics")?,
        Err(e) => tracing::warn!(error = %e, "the HTTP task"),
    }
    let wedged_by = agent.wedged_by.load(Ordering::SeqCst);
    if agent.wedged.is_cancelled() {
        anyhow::bail!(
            "the engine was stuck past --max-forward-secs on job {wedged_by}'s model (its \
             forward pass or its load, which cannot be interrupted): exiting so that a new \
             process serves (a supervisor restarts the worker; the journal resumes its other \
             jobs and never runs job {wedged_by} again)"
        );
    }
    tracing::info!("stopped");
    Ok(())
}

impl Agent {
    /// Long-polls for assignments until `shutdown`.
    async fn poll(self: Arc<Self>, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(250);
        loop {
            let asked = tokio::time::Instant::now();
            let polled = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wedged.cancelled() => return,
                polled = self.client.poll_assignments(self.config.poll_wait) => polled,
            };
            match polled {
                Ok(polled) => {
                    backoff = Duration::from_millis(250);
                    let offered = polled.assignments.len();
                    let mut taken = 0;
                    for assignment in polled.assignments {
                        if self.running.load(Ordering::SeqCst) >= self.config.capacity {
                            break;
                        }
                        if self.takes(assignment.job_id).await {
                            taken += 1;
                            self.clone().spawn(assignment);
                        }
                    }
                    // Nothing, long before the wait asked for: the coordinator does not hold
                    // the polls of a worker it cannot offer jobs to (not Active, or its stake
                    // below every tier; the heartbeats' warnings say which).
                    let early = offered == 0
                        && asked.elapsed() + Duration::from_millis(100) < self.config.poll_wait;
                    if self.running.load(Ordering::SeqCst) >= self.config.capacity
                        || (offered > 0 && taken == 0)
                        || early
                    {
                        // Busy, offered only what it will not take, or not waited for: do not
                        // spin.
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = self.wedged.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, ?backoff, "polling the coordinator failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = self.wedged.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Until `stop`, at start and every [`PRUNE_OUTPUTS_EVERY`]: removes the journal's
    /// outputs no job will read again ([`Journal::prune_outputs`]), then the rows of jobs that
    /// ended and are past their deadline ([`Journal::prune_rows`]).
    async fn prune_outputs(self: Arc<Self>, stop: CancellationToken) {
        loop {
            match self.journal.prune_outputs(self.config.keep_outputs).await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(
                    removed,
                    keep_secs = self.config.keep_outputs.as_secs(),
                    "removed the outputs of jobs that ended"
                ),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "pruning the journal's outputs")
                }
            }
            // After the outputs: the rows name the files to remove.
            match self.journal.prune_rows(self.config.keep_outputs).await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(
                    removed,
                    keep_secs = self.config.keep_outputs.as_secs(),
                    "forgot the jobs that ended and are past their deadline"
                ),
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "pruning the journal's rows"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(PRUNE_OUTPUTS_EVERY) => {}
            }
        }
    }

    /// Every [`RETAKE_COMPUTED_EVERY`] until `shutdown` (or the agent wedges), takes up again
    /// the results computed and not committed yet that no task is on: the coordinator offers
    /// a job only while it lists it, and one that stops (lagging, faulty, hostile) would leave
    /// a computed result uncommitted until the job's deadline, which then counts as a failure
    /// on chain. The job is checked against the chain again as at every take.
    async fn retake_computed(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wedged.cancelled() => return,
                _ = tokio::time::sleep(RETAKE_COMPUTED_EVERY) => {}
            }
            let open = match self.journal.open_jobs().await {
                Ok(open) => open,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the journal for computed results");
                    continue;
                }
            };
            for entry in open.into_iter().filter(|e| e.stage == Stage::Computed) {
                if self.takes(entry.job_id).await {
                    tracing::info!(
                        job_id = entry.job_id,
                        "a computed result not committed yet: taken up again"
                    );
                    self.clone().spawn(resumed(&entry));
                }
            }
        }
    }

    /// Whether to take job `job_id` now: not committed already, not refused lately, not
    /// running.
    async fn takes(&self, job_id: u64) -> bool {
        let cooling = self
            .cooldown
            .lock()
            .map(|mut c| {
                c.retain(|_, until| *until > Instant::now());
                c.contains_key(&job_id)
            })
            .unwrap_or(false);
        if cooling {
            return false;
        }
        let running = self
            .in_flight
            .lock()
            .map(|set| set.contains(&job_id))
            .unwrap_or(true);
        let queued = self
            .queued
            .lock()
            .map(|set| set.contains(&job_id))
            .unwrap_or(true);
        if running || queued {
            return false;
        }
        !matches!(
            self.journal.entry(job_id).await,
            Ok(Some(Entry {
                stage: Stage::Committed,
                ..
            }))
        )
    }

    /// Runs `assignment` in its own task unless it already runs or is finished.
    fn spawn(self: Arc<Self>, assignment: Assignment) {
        let job_id = assignment.job_id;
        {
            let Ok(mut set) = self.in_flight.lock() else {
                return;
            };
            if !set.insert(job_id) {
                return;
            }
        }
        self.running.fetch_add(1, Ordering::SeqCst);
        self.metrics.running.inc();
        let span = tracing::info_span!("job", job_id);
        tokio::spawn(
            async move {
                // A panic in the job's handling (a libtorch call a model's output makes fail,
                // a bug) is the job's failure: the task still journals it, gives the job back
                // and frees its slot, which an unwinding task would have held for good.
                let outcome = match AssertUnwindSafe(self.handle(&assignment))
                    .catch_unwind()
                    .await
                {
                    Ok(outcome) => outcome,
                    Err(panic) => {
                        let reason =
                            format!("the job's handling panicked: {}", panic_text(&*panic));
                        // A computed result is kept and taken up again, not given back.
                        let computed = matches!(
                            self.journal.entry(job_id).await,
                            Ok(Some(Entry { stage: Stage::Computed, .. }))
                        );
                        Err(if computed {
                            Refusal::Retry(reason)
                        } else {
                            Refusal::Failed(reason)
                        })
                    }
                };
                let mut ended = "done";
                let wedged = matches!(outcome, Err(Refusal::Wedged(_)));
                let kind = if matches!(outcome, Err(Refusal::Unable(_))) {
                    GiveBack::WorkerUnable
                } else {
                    GiveBack::JobFailed
                };
                let (stage, reason) = match outcome {
                    Ok(()) => (None, None),
                    Err(Refusal::Refused(r) | Refusal::Unable(r)) => (Some(Stage::Refused), Some(r)),
                    Err(Refusal::Dropped(r)) => (Some(Stage::Dropped), Some(r)),
                    Err(Refusal::Failed(r) | Refusal::Wedged(r)) => (Some(Stage::Failed), Some(r)),
                    Err(Refusal::Retry(reason)) => {
                        tracing::warn!(%reason, "job not done yet: taken again at a later poll");
                        if let Ok(mut cooldown) = self.cooldown.lock() {
                            cooldown.insert(job_id, Instant::now() + RETRY_COOLDOWN);
                        }
                        ended = "retry";
                        (None, None)
                    }
                };
                let ended = stage.map_or(ended, Stage::as_str);
                self.metrics.jobs.with_label_values(&[ended]).inc();
                if let (Some(stage), Some(reason)) = (stage, reason) {
                    tracing::warn!(stage = stage.as_str(), %reason, "job not done");
                    if let Ok(mut cooldown) = self.cooldown.lock() {
                        cooldown.insert(job_id, Instant::now() + REFUSAL_COOLDOWN);
                    }
                    // Journaled even when refused before it was taken (not this worker's).
                    let recorded = self
                        .journal
                        .begin(job_id, assignment.model_hash, assignment.input_hash, assignment.deadline)
                        .await;
                    // The one pass that started and never returned: the process before this one
                    // died in it (a crash, a kill, the time limit). With passes of several jobs
                    // unreturned, which one killed it is unknown, and none is reported.
                    let died_in_pass = self.died_in.load(Ordering::SeqCst) == job_id
                        && matches!(&recorded, Ok(e) if e.stage == Stage::Running && e.attempts > 0);
                    let finished = match recorded {
                        Ok(_) => self.journal.finish(job_id, stage, Some(&reason)).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = finished {
                        tracing::error!(error = %e, "recording the refusal in the journal");
                    }
                    let not_ours = stage == Stage::Refused && reason.contains("not assigned to this worker");
                    // Give it back so that another worker gets it now rather than after its
                    // release limit. Refused for not being ours there is nothing to give back,
                    // but a job released for this worker's silence while it restarted after
                    // dying in the job's pass is reported as failed here: it counts toward the
                    // coordinator's limit, or it would reach every worker that restarts slowly.
                    let give_back = if not_ours {
                        died_in_pass.then(|| (
                            "this worker's process ended during the job's forward pass (a crash, a kill or the time limit), and the job was released while it restarted".to_owned(),
                            GiveBack::JobFailed,
                        ))
                    } else if matches!(stage, Stage::Failed | Stage::Refused) {
                        Some((reason.clone(), kind))
                    } else {
                        None
                    };
                    if let Some((why, kind)) = give_back {
                        match self.client.request_release(job_id, &why, kind).await {
                            Ok(_) => tracing::info!(?kind, "gave the job back to the coordinator"),
                            Err(e) => tracing::warn!(error = %e, "giving the job back failed (the keeper releases it at its limit)"),
                        }
                    }
                }
                // Given back and journaled: now the restart (see `max_forward`). (Isolated, a
                // pass is timed and killed by the engine and never wedges it.)
                if wedged {
                    WEDGED.store(true, Ordering::SeqCst);
                    self.wedged.cancel();
                }
                self.running.fetch_sub(1, Ordering::SeqCst);
                self.metrics.running.dec();
                if let Ok(mut set) = self.in_flight.lock() {
                    set.remove(&job_id);
                }
            }
            .instrument(span),
        );
    }

    async fn chain_now(&self) -> Result<u64, Refusal> {
        block_timestamp(self.account.provider(), BlockId::Tag(BlockTag::Latest))
            .await
            .map_err(|e| Refusal::Retry(format!("reading the chain's time: {e}")))
    }

    /// Checks the assignment against the chain; the job's on-chain record.
    async fn verify(&self, a: &Assignment) -> Result<job_mgr::JobInfo, Refusal> {
        let info = self.jobs.job(a.job_id).await.map_err(|e| {
            chain_read(e, &format!("job {}", a.job_id), "the chain has no such job")
        })?;
        let job = &info.job;
        if job.state != JobState::Assigned || job.worker.0 != self.me {
            return Err(Refusal::Refused(format!(
                "the chain shows the job {:?} to {:#x}, not assigned to this worker {:#x}",
                job.state, job.worker.0, self.me
            )));
        }
        if job.input_hash != u256_from_digest(&a.input_hash.0) {
            return Err(Refusal::Unable(format!(
                "the assignment names input {} but the chain's input_hash differs",
                a.input_hash
            )));
        }
        let model = self.jobs.model(job.model_id).await.map_err(|e| {
            chain_read(
                e,
                &format!("model {}", job.model_id),
                "the chain has no such model",
            )
        })?;
        if model.model_hash != u256_from_digest(&a.model_hash.0) {
            return Err(Refusal::Unable(format!(
                "the assignment names model file {} but model {} is registered with another hash",
                a.model_hash, job.model_id
            )));
        }
        let items = u64::from(info.items);
        if items != a.items && a.items != 0 {
            return Err(Refusal::Unable(format!(
                "the assignment names {} inputs but the chain's job has {items}",
                a.items
            )));
        }
        // (What this agent takes now: `--max-batch-items`, or single jobs only from a
        // coordinator that cannot move a batch's items in one request.)
        let limit = if items > 1 {
            self.batch_limit().await
        } else {
            1
        };
        if items > u64::from(limit) {
            return Err(Refusal::Unable(format!(
                "it is a batch of {items} inputs, more than the {limit} this worker runs now"
            )));
        }
        let now = self.chain_now().await?;
        if now > job.deadline {
            return Err(Refusal::Dropped(format!(
                "its deadline {} passed (chain time {now})",
                job.deadline
            )));
        }
        Ok(info)
    }

    /// One job, from the assignment to its result queued for commitment.
    async fn handle(&self, a: &Assignment) -> Result<(), Refusal> {
        let info = match self.verify(a).await {
            // No longer assigned because this worker's result landed (the process ended
            // between the commitment and its journal entry): done, not refused.
            Err(Refusal::Refused(reason)) if self.committed_on_chain(a.job_id).await => {
                tracing::info!(%reason, "the result was already committed on chain");
                self.journal
                    .finish(a.job_id, Stage::Committed, None)
                    .await
                    .map_err(|e| Refusal::Retry(format!("the journal: {e:#}")))?;
                return Ok(());
            }
            other => other?,
        };
        let mut entry = self
            .journal
            .begin(a.job_id, a.model_hash, a.input_hash, info.job.deadline)
            .await
            .map_err(|e| Refusal::Unable(format!("the journal: {e:#}")))?;
        if matches!(entry.stage, Stage::Refused | Stage::Dropped | Stage::Failed) {
            // Ended here before; the chain assigns it to this worker now: take it again.
            // With the values just checked against the chain (the entry may hold an unchecked
            // offer's).
            self.journal
                .reopen(a.job_id, a.model_hash, a.input_hash, info.job.deadline)
                .await
                .map_err(|e| Refusal::Unable(format!("the journal: {e:#}")))?;
            entry.stage = Stage::Running;
            entry.model_hash = a.model_hash;
            entry.input_hash = a.input_hash;
            entry.deadline = info.job.deadline;
        }
        let items = u64::from(info.items);
        match entry.stage {
            Stage::Running if items > 1 => self.compute_batch(a, &entry, items).await?,
            Stage::Running => self.compute(a, &entry).await?,
            Stage::Computed => tracing::info!(
                "computed before a restart: uploading and committing the same output"
            ),
            _ => return Ok(()),
        }
        if self.config.hold_commits {
            tracing::warn!("holding the result unpublished and uncommitted (--test-hold-commits)");
            return Ok(());
        }
        // The output is journaled from here on: a failure to publish it ends the job only when
        // it cannot clear (see `passing_or_failed`); a failure to queue it is passing.
        self.publish(a.job_id).await?;
        if let Ok(mut queued) = self.queued.lock() {
            queued.insert(a.job_id);
        }
        self.commits.send(a.job_id).map_err(|_| {
            self.unqueue(&[a.job_id]);
            Refusal::Retry("the committer stopped (draining): committed after a restart".into())
        })
    }

    /// Downloads, verifies, runs and journals the job's output.
    async fn compute(&self, a: &Assignment, entry: &Entry) -> Result<(), Refusal> {
        check_attempts(entry)?;
        let input = self.fetch_input(&a.input_hash, "the input").await?;
        self.ensure_model(a, &input).await?;
        let started = unix_now();
        let clock = Instant::now();
        let output = self.run_pass(a, &input).await?;
        let inference_ms = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
        let receipt = self.receipt(a, output.output_hash, started, inference_ms)?;
        self.journal
            .computed(a.job_id, &output.output, output.output_hash, &receipt)
            .await
            .map_err(|e| Refusal::Unable(format!("the journal: {e:#}")))?;
        tracing::info!(output = %output.output_hash, inference_ms, "computed");
        Ok(())
    }

    /// A batch (`items` inputs under the manifest `a.input_hash`): reads and checks the
    /// manifest, runs each input not yet computed (each output journaled as it is done, so a
    /// restart computes none twice), then journals the output manifest (the outputs' digests in
    /// order) as the job's output, with a receipt over the two manifests.
    async fn compute_batch(
        &self,
        a: &Assignment,
        entry: &Entry,
        items: u64,
    ) -> Result<(), Refusal> {
        check_attempts(entry)?;
        let mut listed = self
            .journal
            .items(a.job_id)
            .await
            .map_err(|e| Refusal::Unable(format!("the journal: {e:#}")))?;
        if listed.len() as u64 != items {
            let manifest = self
                .client
                .download_blob_within(&a.input_hash, 32 * items)
                .await
                .map_err(|e| download_refusal(e, "the manifest", 32 * items))?;
            if Digest::of(&manifest) != entry.input_hash {
                return Err(Refusal::Unable(
                    "the manifest does not hash to the on-chain input_hash".into(),
                ));
            }
            let Some(inputs) = ciro_protocol::parse_manifest(&manifest, items) else {
                return Err(Refusal::Failed(format!(
                    "the manifest is {} bytes, not {items} digests of 32 bytes",
                    manifest.len()
                )));
            };
            self.journal
                .begin_items(a.job_id, &inputs)
                .await
                .map_err(|e| Refusal::Unable(format!("the journal: {e:#}")))?;
            listed = inputs.into_iter().map(|d| (d, None)).collect();
        }
        let started = unix_now();
        let pending: Vec<(u64, Digest)> = listed
            .iter()
            .enumerate()
            .filter(|(_, (_, out))| out.is_none())
            .map(|(position, (input, _))| (position as u64, *input))
            .collect();
        // Rows of several inputs in one pass only where the operator allows it
        // (`--merge-batch-items`, throughput mode): exact only for models that keep rows
        // apart, as with [`EngineConfig::batch_jobs`].
        let merge = self.config.merge_batch_items && self.config.deterministic_seed.is_none();
        tracing::info!(items, todo = pending.len(), merge, "running a batch");
        let mut run = BatchRun {
            merge,
            ..BatchRun::default()
        };
        // The inputs in one signed request, from the first not computed on, each checked
        // against the manifest; a download that breaks off resumes at the first input it did
        // not bring, a few times ([`ITEM_TRIES`]) before the job waits for a later poll.
        let limit = self.config.max_input_bytes;
        let mut next = 0usize; // Of `pending`: the first input not received.
        let mut tries = 1u32;
        let mut pause = Duration::from_millis(100);
        while next < pending.len() {
            let from = pending[next].0;
            let broke = match self.client.open_batch_inputs(a.job_id, from).await {
                Err(e) => Some(e),
                Ok(mut download) => {
                    let mut position = from;
                    loop {
                        let bytes = match download.next_item(limit).await {
                            Ok(Some(bytes)) => bytes,
                            Ok(None) => {
                                break (next < pending.len()).then(|| ClientError::Truncated {
                                    url: format!("job {}'s inputs", a.job_id),
                                    reason: format!(
                                        "the body ended at position {position} of {items}"
                                    ),
                                });
                            }
                            Err(e) => break Some(e),
                        };
                        let this = position;
                        position += 1;
                        // (An input computed before a restart, inside the range: skipped.)
                        if pending[next].0 != this {
                            continue;
                        }
                        if Digest::of(&bytes) != pending[next].1 {
                            return Err(Refusal::Unable(format!(
                                "input {this} of the batch does not hash to its manifest's \
                                 digest {}",
                                pending[next].1
                            )));
                        }
                        next += 1;
                        tries = 1;
                        pause = Duration::from_millis(100);
                        self.take_input(a, this, bytes.to_vec(), &mut run).await?;
                        if next == pending.len() {
                            break None;
                        }
                    }
                }
            };
            let Some(e) = broke else { continue };
            if e.is_retryable() && tries < ITEM_TRIES {
                tracing::debug!(tries, at = next, error = %e, "resuming a batch's inputs");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
                tries += 1;
                continue;
            }
            return Err(download_refusal(e, "the batch's inputs", limit));
        }
        if !run.chunk.is_empty() {
            let full = std::mem::take(&mut run.chunk);
            self.run_items(a, full, &mut run.inference_ms, &mut run.journaled)
                .await?;
        }
        let inference_ms = run.inference_ms;
        let outputs = self
            .journal
            .items(a.job_id)
            .await
            .map_err(|e| Refusal::Unable(format!("the journal: {e:#}")))?
            .into_iter()
            .map(|(_, out)| out)
            .collect::<Option<Vec<Digest>>>()
            .ok_or_else(|| Refusal::Unable("the journal lost a batch output".into()))?;
        let manifest = ciro_protocol::manifest_of(&outputs);
        let output_hash = Digest::of(&manifest);
        let receipt = self.receipt(a, output_hash, started, inference_ms)?;
        self.journal
            .computed(a.job_id, &manifest, output_hash, &receipt)
            .await
            .map_err(|e| Refusal::Unable(format!("the journal: {e:#}")))?;
        tracing::info!(output = %output_hash, items, inference_ms, "batch computed");
        Ok(())
    }

    /// Takes input `position` of batch `a` into `run`: runs the chunk of inputs gathered so far
    /// once this one cannot join it (another type or shape past the rows, or past
    /// `--max-batch` rows), or this one alone when it cannot be merged.
    async fn take_input(
        &self,
        a: &Assignment,
        position: u64,
        bytes: Vec<u8>,
        run: &mut BatchRun,
    ) -> Result<(), Refusal> {
        if !run.model_ready {
            self.ensure_model(a, &bytes).await?;
            run.model_ready = true;
        }
        // Empty, a scalar or not a tensor file: alone, refused as it would be.
        let Some((rows, shape)) = run.merge.then(|| rows_and_shape(&bytes)).flatten() else {
            return self
                .run_items(
                    a,
                    vec![(position, bytes)],
                    &mut run.inference_ms,
                    &mut run.journaled,
                )
                .await;
        };
        if !run.chunk.is_empty()
            && (run.chunk_shape.as_ref() != Some(&shape)
                || run.chunk_rows + rows > self.config.max_batch)
        {
            let full = std::mem::take(&mut run.chunk);
            self.run_items(a, full, &mut run.inference_ms, &mut run.journaled)
                .await?;
            run.chunk_rows = 0;
        }
        run.chunk_rows += rows;
        run.chunk_shape = Some(shape);
        run.chunk.push((position, bytes));
        Ok(())
    }

    /// Runs a batch's `items` (position, input) and journals each output: one pass for all of
    /// them when there are several (their rows concatenated, the output split back by rows),
    /// or one pass each when the model's output does not keep the rows apart.
    async fn run_items(
        &self,
        a: &Assignment,
        items: Vec<(u64, Vec<u8>)>,
        inference_ms: &mut u64,
        journaled: &mut u64,
    ) -> Result<(), Refusal> {
        let merged = if items.len() > 1 {
            merge_rows(&items)
        } else {
            None
        };
        if let Some((input, rows)) = merged {
            let clock = Instant::now();
            // A merged pass the engine refuses (its output over the limit, more rows than the
            // model's stored spec or the model itself takes) is not the inputs' fault: each
            // runs alone then, and fails or not as it would have.
            let parts = match self.run_pass(a, &input).await {
                Ok(out) => {
                    let parts = split_rows(&out.output, &rows);
                    if parts.is_none() {
                        tracing::warn!(items = items.len(), "the merged pass gave no output of the batch's rows: one pass per input");
                    }
                    parts
                }
                Err(Refusal::Failed(reason)) => {
                    tracing::warn!(items = items.len(), %reason, "a merged pass failed: one pass per input");
                    None
                }
                Err(other) => return Err(other),
            };
            *inference_ms = inference_ms.saturating_add(elapsed_ms(clock));
            if let Some(parts) = parts {
                for ((position, _), output) in items.iter().zip(parts) {
                    self.journal_item(a, *position, &output, journaled).await?;
                }
                return Ok(());
            }
        }
        for (position, input) in &items {
            let clock = Instant::now();
            let out = self.run_pass(a, input).await?;
            *inference_ms = inference_ms.saturating_add(elapsed_ms(clock));
            self.journal_item(a, *position, &out.output, journaled)
                .await?;
        }
        Ok(())
    }

    /// Journals output `position` of batch `a` (`journaled`: how many this process has).
    async fn journal_item(
        &self,
        a: &Assignment,
        position: u64,
        output: &[u8],
        journaled: &mut u64,
    ) -> Result<(), Refusal> {
        self.journal
            .item_computed(a.job_id, position, output, Digest::of(output))
            .await
            .map_err(|e| Refusal::Unable(format!("the journal: {e:#}")))?;
        *journaled += 1;
        if self.config.test_crash_after_items == Some(*journaled) {
            tracing::warn!(journaled, "aborting mid-batch (--test-crash-after-items)");
            std::process::abort();
        }
        Ok(())
    }

    /// The signed receipt (as JSON) of job `a`'s output `output_hash`.
    fn receipt(
        &self,
        a: &Assignment,
        output_hash: Digest,
        started: u64,
        inference_ms: u64,
    ) -> Result<String, Refusal> {
        let receipt = Receipt {
            job_manager: self.job_mgr,
            job_id: a.job_id,
            worker: self.me,
            model_hash: a.model_hash,
            input_hash: a.input_hash,
            output_hash,
            device: self.device.clone(),
            libtorch_version: ciro_engine::libtorch_version().to_owned(),
            cuda_version: self.cuda.clone(),
            deterministic: self.config.deterministic_seed.is_some(),
            seed: self.config.deterministic_seed.unwrap_or(0),
            started_at: started,
            finished_at: unix_now(),
            model_load_ms: 0,
            inference_ms,
        }
        .sign(&self.key, self.chain_id)
        .map_err(|e| Refusal::Unable(format!("signing the receipt: {e}")))?;
        serde_json::to_string(&receipt)
            .map_err(|e| Refusal::Unable(format!("encoding the receipt: {e}")))
    }

    /// Downloads blob `digest` (`what`: the input, or a batch's input) within the input limit
    /// and checks its digest. A coordinator that is restarting or busy (a lost answer, a 5xx) is
    /// retried at a later poll; only its answer that the blob is not there gives the job back.
    async fn fetch_input(&self, digest: &Digest, what: &str) -> Result<Vec<u8>, Refusal> {
        let meta = self.client.blob_meta(digest).await.map_err(|e| {
            if e.is_retryable() {
                Refusal::Retry(format!("reading {what}'s size: {e}"))
            } else {
                Refusal::Unable(format!("{what} is not available: {e}"))
            }
        })?;
        if meta.size > self.config.max_input_bytes {
            return Err(Refusal::Unable(format!(
                "{what} is {} bytes, more than the {} this worker accepts",
                meta.size, self.config.max_input_bytes
            )));
        }
        let input = self
            .client
            .download_blob_within(digest, self.config.max_input_bytes)
            .await
            .map_err(|e| download_refusal(e, what, self.config.max_input_bytes))?;
        if Digest::of(&input) != *digest {
            return Err(Refusal::Unable(format!(
                "{what} does not hash to its digest {digest}"
            )));
        }
        Ok(input.to_vec())
    }

    /// Fetches the job's model into the store unless it is there (`input`: one of its inputs,
    /// which the model's spec is checked against).
    async fn ensure_model(&self, a: &Assignment, input: &[u8]) -> Result<(), Refusal> {
        if !self.store.contains(&a.model_hash) {
            self.with_model_lock(a.model_hash, async {
                // Another job of the model may have stored it while this one waited.
                if self.store.contains(&a.model_hash) {
                    Ok(())
                } else {
                    self.fetch_model(a, input).await
                }
            })
            .await??;
        }
        Ok(())
    }

    /// One forward pass of job `a` on `input`, counted in the journal before it starts and
    /// uncounted once it returns (a pass the process does not survive stays counted).
    async fn run_pass(
        &self,
        a: &Assignment,
        input: &[u8],
    ) -> Result<ciro_engine::JobOutput, Refusal> {
        let attempt = self
            .journal
            .forward_started(a.job_id)
            .await
            .map_err(|e| Refusal::Unable(format!("the journal: {e:#}")))?;
        if !lock(&self.counted).enter(a.job_id) {
            // The drain has uncounted the passes it abandons: this one does not start.
            if let Err(e) = self.journal.forward_returned(a.job_id).await {
                tracing::warn!(error = %e, "uncounting a pass the drain stopped");
            }
            return Err(Refusal::Retry(
                "the agent is draining: the job runs at the next start".into(),
            ));
        }
        tracing::info!(attempt, "running the forward pass");
        // A panic in the pass is the job's failure, and the pass is uncounted below all the
        // same (the journal would otherwise hold it as started and never returned).
        let output = AssertUnwindSafe(self.forward_watched(a, input))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| {
                Err(Refusal::Failed(format!(
                    "the forward pass panicked: {}",
                    panic_text(&*panic)
                )))
            });
        // Uncounted once: here, unless the drain already did (or it wedged).
        let still_counted = lock(&self.counted).leave(a.job_id);
        if still_counted && !matches!(output, Err(Refusal::Wedged(_))) {
            if let Err(e) = self.journal.forward_returned(a.job_id).await {
                tracing::warn!(error = %e, "recording the forward pass's return");
            }
        }
        let output = output?;
        Ok(if self.config.test_corrupt_output {
            // The cheating worker of the dispute tests: a wrong answer, consistently hashed,
            // uploaded, signed and committed.
            let bytes = corrupt(output.output);
            tracing::warn!("returning a wrong output (--test-corrupt-output)");
            ciro_engine::JobOutput {
                output_hash: Digest::of(&bytes),
                output: bytes,
                ..output
            }
        } else {
            output
        })
    }

    /// The job's forward pass, watched: past `max_forward` of the engine loading the job's
    /// model or running a pass of it (not of waiting for the thread or for a batch), the job
    /// is never run again here ([`Refusal::Wedged`]) and the agent is to exit.
    async fn forward_watched(
        &self,
        a: &Assignment,
        input: &[u8],
    ) -> Result<ciro_engine::JobOutput, Refusal> {
        let limit = self.config.max_forward;
        let run = self.forward(a, input);
        tokio::pin!(run);
        let mut watch = tokio::time::interval(WATCH_PERIOD.min(limit));
        loop {
            tokio::select! {
                output = &mut run => return output,
                _ = watch.tick() => {}
            }
            let Some(busy) = self.engine.busy_with(&a.model_hash) else {
                continue;
            };
            if busy <= limit {
                continue;
            }
            // The first job to see it names the wedge; the others of the model are failed too.
            let _ =
                self.wedged_by
                    .compare_exchange(0, a.job_id, Ordering::SeqCst, Ordering::SeqCst);
            if let Err(e) = self
                .journal
                .forward_condemned(a.job_id, MAX_FORWARD_ATTEMPTS)
                .await
            {
                tracing::warn!(error = %e, "recording the job as not to be run again");
            }
            tracing::error!(
                model = %a.model_hash,
                busy_secs = busy.as_secs(),
                limit_secs = limit.as_secs(),
                "the engine has been loading or running this job's model past the time limit: \
                 giving the job back, then exiting for a restart (neither can be interrupted)"
            );
            return Err(Refusal::Wedged(format!(
                "the engine loaded or ran its model for longer than this worker's limit of {} s",
                limit.as_secs()
            )));
        }
    }

    /// The job's forward pass: its output, or why the engine refused it.
    async fn forward(
        &self,
        a: &Assignment,
        input: &[u8],
    ) -> Result<ciro_engine::JobOutput, Refusal> {
        match self.engine.execute(a.model_hash, input).await {
            // The stored spec is a guess from an earlier job's input (a submitter's, possibly
            // shaped to make this worker refuse every later job of the model): this job's rows
            // are as good a guess. The spec follows them and the job runs; the model decides.
            // Under the model's lock, so that two jobs with different rows do not undo each
            // other's spec between the change and the run.
            Err(e @ (EngineError::WrongShape { .. } | EngineError::WrongDtype { .. })) => {
                let spec = self.spec_of(input)?;
                tracing::warn!(reason = %e, shape = ?spec.input_shape, dtype = %spec.input_dtype, "the job's rows differ from the model's stored spec: the spec follows the job");
                self.with_model_lock(a.model_hash, async {
                    match self.store.respec(&a.model_hash, &spec) {
                        Ok(()) => Ok(self.engine.execute(a.model_hash, input).await),
                        Err(e) => Err(Refusal::Unable(format!("storing the model's spec: {e:#}"))),
                    }
                })
                .await??
            }
            other => other,
        }
        .map_err(engine_refusal)
    }

    /// Downloads the model file (progress in the logs), checks it against the registered hash
    /// and adds it to the store with the input's row shape and type as its spec.
    async fn fetch_model(&self, a: &Assignment, input: &[u8]) -> Result<(), Refusal> {
        // The input first: one that is not a tensor file refuses the job before a model file
        // of up to gigabytes is downloaded for nothing (a submitter's garbage input would
        // otherwise cost a full download, and hold the model's other jobs behind it).
        let spec = self.spec_of(input)?;
        let too_large = |e: ClientError| {
            Refusal::Unable(format!(
                "the model file is larger than the {} bytes this worker accepts: {e}",
                self.config.max_model_bytes
            ))
        };
        let mut download = self
            .client
            .open_blob(&a.model_hash)
            .await
            .and_then(|download| download.within(self.config.max_model_bytes))
            .map_err(|e| match e {
                e @ ClientError::TooLarge { .. } => too_large(e),
                e if e.is_retryable() => Refusal::Retry(format!("opening the model file: {e}")),
                e => Refusal::Unable(format!("the model file is not available: {e}")),
            })?;
        let total = download.content_length().unwrap_or(0);
        let mut bytes = Vec::with_capacity(usize::try_from(total.min(1 << 30)).unwrap_or(0));
        let mut logged = 0;
        // A progress bar on a terminal; progress in the logs otherwise.
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        loop {
            match download.chunk().await {
                Ok(Some(chunk)) => {
                    bytes.extend_from_slice(&chunk);
                    let percent = (bytes.len() as u64 * 100).checked_div(total).unwrap_or(100);
                    if terminal {
                        progress_bar(&a.model_hash, percent, bytes.len() as u64, total);
                    } else if percent >= logged + 25 {
                        logged = percent;
                        tracing::info!(model = %a.model_hash, percent, bytes = bytes.len(), "downloading the model file");
                    }
                }
                Ok(None) => {
                    if terminal {
                        eprintln!();
                    }
                    break;
                }
                Err(ClientError::DigestMismatch { .. }) => {
                    return Err(Refusal::Unable(
                        "the model file does not hash to its registered model_hash".into(),
                    ))
                }
                Err(e @ ClientError::TooLarge { .. }) => return Err(too_large(e)),
                // A stalled download is abandoned and the job given back, as documented; a
                // lost connection or a 5xx is retried at a later poll.
                Err(e) if e.is_retryable() && !matches!(e, ClientError::Stalled { .. }) => {
                    return Err(Refusal::Retry(format!("downloading the model file: {e}")))
                }
                Err(e) => return Err(Refusal::Unable(format!("downloading the model file: {e}"))),
            }
        }
        let size = bytes.len();
        // Hashing and writing a model file of gigabytes takes seconds: off the async runtime,
        // whose threads also carry heartbeats and polls.
        let store = self.store.clone();
        let expected = a.model_hash;
        tokio::task::spawn_blocking(move || {
            if Digest::of(&bytes) != expected {
                return Err(Refusal::Unable(
                    "the model file does not hash to its registered model_hash".into(),
                ));
            }
            store
                .insert(&bytes, &spec)
                .map_err(|e| Refusal::Unable(format!("storing the model: {e:#}")))
        })
        .await
        .map_err(|e| Refusal::Unable(format!("the model store's task: {e}")))??;
        tracing::info!(model = %a.model_hash, bytes = size, "model file verified and stored");
        Ok(())
    }

    /// Runs `work` holding model `hash`'s lock (one download, or one change of its spec and
    /// the run that follows, at a time); the last job holding the lock removes it from the
    /// table.
    async fn with_model_lock<T>(
        &self,
        hash: Digest,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, Refusal> {
        let lock = self
            .model_locks
            .lock()
            .map_err(|_| Refusal::Unable("the model lock table is poisoned".into()))?
            .entry(hash)
            .or_default()
            .clone();
        let done = {
            let _one = lock.lock().await;
            work.await
        };
        if let Ok(mut table) = self.model_locks.lock() {
            if Arc::strong_count(&lock) == 2 {
                table.remove(&hash);
            }
        }
        Ok(done)
    }

    /// The spec a job's input implies: its row shape and type. The chain registers no spec, so
    /// a worker's spec for a model is this guess from a job's input, corrected by the next job
    /// whose rows differ (see [`Agent::compute`]).
    fn spec_of(&self, input: &[u8]) -> Result<ModelSpec, Refusal> {
        let tensor = decode_input(input)
            .map_err(|e| Refusal::Refused(format!("the input is not a tensor file: {e}")))?;
        let shape = tensor.size();
        Ok(ModelSpec {
            input_shape: shape.get(1..).unwrap_or_default().to_vec(),
            input_dtype: dtype_name(tensor.kind()),
            max_batch: self.config.max_batch,
        })
    }

    /// Uploads a computed job's output and receipt (again after a restart: the same bytes).
    async fn publish(&self, job_id: u64) -> Result<(), Refusal> {
        let entry = self
            .journal
            .entry(job_id)
            .await
            .ok()
            .flatten()
            .ok_or_else(|| Refusal::Unable("the journal lost the job".into()))?;
        let output = self
            .journal
            .output(job_id)
            .await
            .map_err(|e| Refusal::Unable(format!("reading the output: {e:#}")))?;
        self.client
            .upload_output(job_id, output)
            .await
            .map_err(|e| passing_or_failed(&e, format!("uploading the output: {e}")))?;
        if entry.items > 1 {
            // A batch: its output manifest is recorded by now, so each output it lists is
            // referenced from its upload on (and the receipt waits for all of them).
            self.publish_items(job_id).await?;
        }
        if let Some(text) = entry.receipt {
            let receipt = serde_json::from_str(&text)
                .map_err(|e| Refusal::Unable(format!("the journal's receipt: {e}")))?;
            match self.client.upload_receipt(&receipt).await {
                Ok(()) => {}
                Err(e) if e.code() == Some(ErrorCode::Conflict) => {}
                Err(e) => return Err(passing_or_failed(&e, format!("uploading the receipt: {e}"))),
            }
        }
        Ok(())
    }

    /// Uploads batch `job_id`'s outputs in one signed request, streamed from the journal's
    /// files, each first checked against its journaled digest (all again after a restart: an
    /// upload of the same bytes is taken again, and only this worker's own upload of each
    /// counts for its receipt).
    async fn publish_items(&self, job_id: u64) -> Result<(), Refusal> {
        let items = self
            .journal
            .items(job_id)
            .await
            .map_err(|e| Refusal::Unable(format!("the journal: {e:#}")))?;
        let mut body = ciro_api::coordinator::items::BodyHasher::default();
        for (position, (_, output)) in items.iter().enumerate() {
            let output =
                output.ok_or_else(|| Refusal::Unable("the journal lost a batch output".into()))?;
            let bytes = self
                .journal
                .item_output(job_id, position as u64)
                .await
                .map_err(|e| Refusal::Unable(format!("reading a batch output: {e:#}")))?;
            if Digest::of(&bytes) != output {
                return Err(Refusal::Unable(format!(
                    "output {position} of the batch on disk no longer hashes to its journaled \
                     digest {output}"
                )));
            }
            body.item(&bytes);
        }
        let (sha256, len) = body.finish();
        let count = items.len() as u64;
        item_transfer("the batch's outputs", || {
            let journal = self.journal.clone();
            let stream = futures_util::stream::iter(0..count)
                .then(move |position| {
                    let journal = journal.clone();
                    async move {
                        let bytes = journal
                            .item_output(job_id, position)
                            .await
                            .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
                        let prefix =
                            ciro_api::coordinator::items::prefix(bytes.len() as u64).to_vec();
                        Ok::<_, std::io::Error>([prefix, bytes])
                    }
                })
                .map_ok(|chunks| futures_util::stream::iter(chunks.map(Ok::<_, std::io::Error>)))
                .try_flatten();
            self.client
                .upload_batch_outputs(job_id, stream, sha256, len)
        })
        .await
        .map_err(|e| passing_or_failed(&e, format!("uploading the batch's outputs: {e}")))?;
        Ok(())
    }

    /// Commits queued results: those arriving within `commit_window` go in one multicall.
    async fn committer(
        self: Arc<Self>,
        mut queue: mpsc::UnboundedReceiver<u64>,
        stop: CancellationToken,
    ) {
        loop {
            let first = tokio::select! {
                first = queue.recv() => first,
                _ = stop.cancelled() => None,
            };
            let Some(first) = first else { return };
            let mut batch = vec![first];
            let window = tokio::time::sleep(self.config.commit_window);
            tokio::pin!(window);
            loop {
                tokio::select! {
                    _ = &mut window => break,
                    next = queue.recv() => match next {
                        Some(id) => batch.push(id),
                        None => break,
                    },
                }
            }
            self.commit(batch).await;
        }
    }

    async fn commit(&self, batch: Vec<u64>) {
        if self.config.hold_commits {
            tracing::warn!(jobs = ?batch, "holding the results uncommitted (--test-hold-commits)");
            return;
        }
        let mut calls = Vec::new();
        let mut ids = Vec::new();
        let binding = JobMgr::new(self.job_mgr, self.account.clone());
        // A job named twice would revert the whole multicall.
        let mut seen = HashSet::new();
        let batch: Vec<u64> = batch.into_iter().filter(|id| seen.insert(*id)).collect();
        for id in batch {
            match self.journal.entry(id).await {
                Ok(Some(Entry {
                    stage: Stage::Computed,
                    output_hash: Some(hash),
                    ..
                })) => {
                    calls.push(binding.submit_result_getcall(&id, &u256_from_digest(&hash.0)));
                    ids.push(id);
                }
                Ok(_) => self.unqueue(&[id]),
                Err(e) => {
                    tracing::error!(job_id = id, error = %e, "reading the journal");
                    self.unqueue(&[id]);
                }
            }
        }
        if ids.is_empty() {
            return;
        }
        match self.sender.execute(calls).await {
            Ok(out) => {
                self.metrics.commits.with_label_values(&["ok"]).inc();
                for id in &ids {
                    if let Err(e) = self.journal.finish(*id, Stage::Committed, None).await {
                        tracing::error!(job_id = id, error = %e, "recording the commitment");
                    }
                }
                self.unqueue(&ids);
                tracing::info!(jobs = ?ids, tx = %format!("{:#x}", out.tx_hash), "results committed");
                self.maybe_claim().await;
            }
            Err(ChainError::Reverted { reason, .. }) if ids.len() > 1 => {
                self.metrics.commits.with_label_values(&["reverted"]).inc();
                tracing::warn!(%reason, "a batch of results reverted; committing them one by one");
                for id in ids {
                    Box::pin(self.commit(vec![id])).await;
                }
            }
            Err(ChainError::Reverted { reason, .. }) => {
                self.metrics.commits.with_label_values(&["reverted"]).inc();
                let id = ids[0];
                // An earlier send whose answer was lost (or a relayed execution sent late)
                // may have committed it already: then it is done, not failed.
                if self.committed_on_chain(id).await {
                    tracing::info!(job_id = id, "the result was already committed on chain");
                    if let Err(e) = self.journal.finish(id, Stage::Committed, None).await {
                        tracing::error!(job_id = id, error = %e, "recording the commitment");
                    }
                    self.unqueue(&[id]);
                    return;
                }
                tracing::warn!(job_id = id, %reason, "the chain refused the result");
                let stage = if reason.contains("deadline") {
                    Stage::Dropped
                } else {
                    Stage::Failed
                };
                if let Err(e) = self.journal.finish(id, stage, Some(&reason)).await {
                    tracing::error!(job_id = id, error = %e, "recording the refusal");
                }
                self.unqueue(&[id]);
                // Still assigned to this worker on chain: give it back so that another
                // worker gets it now rather than at its release limit.
                if stage == Stage::Failed {
                    match self
                        .client
                        .request_release(id, &reason, GiveBack::WorkerUnable)
                        .await
                    {
                        Ok(_) => {
                            tracing::info!(job_id = id, "gave the job back to the coordinator")
                        }
                        Err(e) => {
                            tracing::warn!(job_id = id, error = %e, "giving the job back failed (the keeper releases it at its limit)")
                        }
                    }
                }
            }
            Err(error) => {
                self.metrics.commits.with_label_values(&["failed"]).inc();
                // The node is away: the results stay computed and are retried.
                tracing::warn!(jobs = ?ids, %error, "committing failed; retrying in 2 s");
                tokio::time::sleep(Duration::from_secs(2)).await;
                for id in ids {
                    let _ = self.commits.send(id);
                }
            }
        }
    }

    /// Jobs no longer queued for their commitment (committed, refused or not computed).
    fn unqueue(&self, ids: &[u64]) {
        if let Ok(mut queued) = self.queued.lock() {
            for id in ids {
                queued.remove(id);
            }
        }
    }

    /// Whether job `id` carries this worker's journaled output on chain.
    async fn committed_on_chain(&self, id: u64) -> bool {
        let ours = match self.journal.entry(id).await {
            Ok(Some(Entry {
                output_hash: Some(hash),
                ..
            })) => u256_from_digest(&hash.0),
            _ => return false,
        };
        match self.jobs.job(id).await {
            Ok(info) => {
                matches!(
                    info.job.state,
                    JobState::Completed | JobState::Disputed | JobState::Finalized
                ) && info.job.worker.0 == self.me
                    && info.job.output_hash == ours
            }
            Err(e) => {
                tracing::warn!(job_id = id, error = %e, "reading the job");
                false
            }
        }
    }

    async fn maybe_claim(&self) {
        let Some(threshold) = self.config.claim_threshold else {
            return;
        };
        let pending = match self.pool.pending_rewards(self.me).await {
            Ok(U256 { low, high }) => {
                if high > 0 {
                    u128::MAX
                } else {
                    low
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading pending rewards");
                return;
            }
        };
        if pending >= threshold {
            match self.pool.claim_rewards().await {
                Ok(out) => {
                    tracing::info!(pending, tx = %format!("{:#x}", out.tx_hash), "rewards claimed")
                }
                Err(e) => tracing::warn!(error = %e, "claiming rewards failed"),
            }
        }
    }

    /// The most inputs of a batch this agent takes: `--max-batch-items`, or 1 (single jobs
    /// only) while the coordinator does not show that it serves a batch's items in one request
    /// each way (`GET /v1/jobs/{id}/inputs`, `PUT /v1/jobs/{id}/outputs`), which this agent
    /// moves them by: a coordinator predating them would see every batch given back. A yes is
    /// kept; a no, or no answer (within 5 s), is asked again [`BATCH_ROUTES_RECHECK`] later
    /// (a coordinator upgraded after its workers).
    async fn batch_limit(&self) -> u32 {
        if self.config.max_batch_items == 1 {
            return 1;
        }
        let known = *lock(&self.batch_transfers);
        let serves = match known {
            Some((true, _)) => true,
            Some((false, at)) if at.elapsed() < BATCH_ROUTES_RECHECK => false,
            _ => {
                let asked = tokio::time::timeout(
                    Duration::from_secs(5),
                    self.client.serves(&[
                        (HttpMethod::Get, routes::JOB_INPUTS),
                        (HttpMethod::Put, routes::JOB_OUTPUTS),
                    ]),
                )
                .await;
                let serves = match asked {
                    Ok(Ok(serves)) => serves,
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "reading the coordinator's routes failed: single jobs only for now");
                        false
                    }
                    Err(_) => {
                        tracing::warn!("the coordinator's routes did not come within 5 s: single jobs only for now");
                        false
                    }
                };
                if !serves && known.is_none() {
                    tracing::warn!(
                        "the coordinator does not serve a batch's items in one request: this \
                         agent takes single jobs only until it does"
                    );
                }
                *lock(&self.batch_transfers) = Some((serves, Instant::now()));
                serves
            }
        };
        if serves {
            self.config.max_batch_items
        } else {
            1
        }
    }

    /// Heartbeats to the coordinator until `stop`.
    async fn heartbeats(self: Arc<Self>, stop: CancellationToken) {
        let mut refused: Option<String> = None;
        loop {
            self.metrics
                .loaded_model_bytes
                .set(i64::try_from(self.store.loaded_bytes()).unwrap_or(i64::MAX));
            let beat = Heartbeat {
                running_jobs: self.running.load(Ordering::SeqCst),
                capacity: self.config.capacity,
                models: self
                    .store
                    .recent_hashes(ciro_api::coordinator::MAX_HEARTBEAT_MODELS),
                agent_version: format!("ciro-worker {}", env!("CARGO_PKG_VERSION")),
                // The matcher offers no job this agent would give back as too large.
                max_input_bytes: Some(self.config.max_input_bytes),
                max_model_bytes: Some(self.config.max_model_bytes),
                max_batch_items: Some(self.batch_limit().await),
            };
            match self.client.heartbeat(&beat).await {
                Ok(_) => refused = None,
                // The coordinator refuses this worker's state (deactivated, stake below every
                // tier, or not indexed yet): said once per answer, not every period.
                Err(error) if error.code().is_some() => {
                    let text = error.to_string();
                    if refused.as_deref() != Some(text.as_str()) {
                        tracing::warn!(%error, "the coordinator refuses this worker's heartbeats");
                        refused = Some(text);
                    }
                }
                Err(error) => tracing::warn!(%error, "heartbeat to the coordinator failed"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.config.heartbeat) => {}
            }
        }
    }

    /// Until `stop`: activates the worker's warming stake once its warm-up is over. Stake
    /// earns rewards only from its first settlement after the warm-up, and nothing routine the
    /// agent sends settles it (a top-up or a claim does), so without this a worker's stake
    /// could wait long to earn. Checked every coordinator heartbeat while stake is warming (the
    /// chain's clock can jump), every on-chain heartbeat period otherwise; failures back off
    /// from the heartbeat to the on-chain heartbeat period (a relayer whose policy does not
    /// cover `activate` is not asked every few seconds).
    async fn activations(self: Arc<Self>, stop: CancellationToken) {
        let mut backoff = self.config.heartbeat;
        loop {
            let wait = match self.activate_if_warm().await {
                Ok(Warmup::Warming) => {
                    backoff = self.config.heartbeat;
                    self.config.heartbeat
                }
                Ok(Warmup::Idle) => {
                    backoff = self.config.heartbeat;
                    self.config.chain_heartbeat
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "activating the warmed-up stake failed");
                    let wait = backoff;
                    backoff = (backoff * 2).min(self.config.chain_heartbeat);
                    wait
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// This worker's warming stake and the end of its warm-up, as the next block sees them.
    async fn warming(&self) -> Result<(U256, u64)> {
        let info = self
            .pool
            .reader()
            .get_worker(&ContractAddress(self.me))
            .block_id(BlockId::Tag(BlockTag::PreConfirmed))
            .call()
            .await
            .map_err(ChainError::from)
            .context("reading the worker's stake")?;
        Ok((info.warming.amount, info.warming.unlock_time))
    }

    /// Sends `activate` for this worker if part of its stake is warming and its warm-up is
    /// over on the chain's clock.
    async fn activate_if_warm(&self) -> Result<Warmup> {
        let (warming, unlock_time) = self.warming().await?;
        if ciro_chain::clients::is_zero(&warming) {
            return Ok(Warmup::Idle);
        }
        let now = block_timestamp(
            self.account.provider(),
            BlockId::Tag(BlockTag::PreConfirmed),
        )
        .await?;
        if now < unlock_time {
            return Ok(Warmup::Warming);
        }
        let out = self.pool.activate(self.me).await?;
        let tx = format!("{:#x}", out.tx_hash);
        let (left, _) = self.warming().await?;
        if ciro_chain::clients::is_zero(&left) {
            tracing::info!(stake = %warming.low, %tx, "the warm-up is over: the stake now earns rewards");
        } else {
            // A top-up landed first and restarted the warm-up: the next check sees it. Not
            // retried at once, so that no case sends an activation every heartbeat.
            tracing::warn!(%tx, "the activation moved no stake (its warm-up restarted?)");
        }
        Ok(Warmup::Idle)
    }

    /// Until `stop`, at start and then at least four times per challenge window (and at most
    /// every on-chain heartbeat period or 10 minutes): looks for slashes opened against this
    /// worker. A SLASHER's slash is executed once its challenge window (a day by default, an
    /// hour at least) passes unchallenged; an unattended worker would lose the stake without
    /// a line in its log. Each pending one is reported at error level (once) and, with
    /// `challenge_slashes`, challenged (retried each look until it is); one whose window
    /// passed before it was seen is reported too. A failed look is retried within 30 s.
    async fn slash_watch(self: Arc<Self>, stop: CancellationToken) {
        let mut reported = HashSet::new();
        loop {
            let wait = match self.check_slashes(&mut reported).await {
                Ok(window) => self
                    .config
                    .chain_heartbeat
                    .min(SLASH_WATCH_LONGEST)
                    .min(window / 4)
                    .max(Duration::from_secs(1)),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "looking for slashes against this worker failed (retried within 30 s)");
                    SLASH_WATCH_RETRY.min(self.config.chain_heartbeat)
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One look for slashes against this worker; the pool's challenge window.
    async fn check_slashes(&self, reported: &mut HashSet<u64>) -> Result<Duration> {
        let window = Duration::from_secs(call(self.pool.reader().params()).await?.challenge_window);
        let info = self.pool.worker(self.me).await?;
        if info.record.open_slashes == 0 {
            self.metrics.open_slashes.set(0);
            return Ok(window);
        }
        let open = self.pool.open_slashes(self.me, self.deploy_block).await?;
        self.metrics
            .open_slashes
            .set(i64::try_from(open.len()).unwrap_or(i64::MAX));
        let now = block_timestamp(self.account.provider(), BlockId::Tag(BlockTag::Latest)).await?;
        for (slash_id, slash) in open {
            if slash.status != cdc_pool::SlashStatus::Pending {
                continue;
            }
            let missed = now > slash.challenge_deadline;
            if reported.insert(slash_id) {
                let what = if missed {
                    "a slash against this worker passed its challenge deadline unchallenged: \
                     anyone may now execute it"
                        .to_owned()
                } else {
                    format!(
                        "a slash is pending against this worker: it is executed unless \
                         challenged before its deadline (`ciro-worker challenge-slash \
                         --slash-id {slash_id}`, or run with --challenge-slashes)"
                    )
                };
                tracing::error!(
                    slash_id,
                    reason = ?slash.reason,
                    bps = slash.bps,
                    challenge_deadline = slash.challenge_deadline,
                    "{what}"
                );
            }
            if !missed && self.config.challenge_slashes {
                match self.pool.challenge_slash(self.token, slash_id).await {
                    Ok(out) => tracing::warn!(
                        slash_id,
                        tx = %format!("{:#x}", out.tx_hash),
                        "challenged the slash: the arbiter decides (the bond comes back if it is overturned)"
                    ),
                    Err(e) => {
                        tracing::error!(slash_id, error = %e, "challenging the slash failed (retried next period)")
                    }
                }
            }
        }
        Ok(window)
    }

    /// On-chain heartbeats until `stop`.
    async fn chain_heartbeats(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.config.chain_heartbeat) => {}
            }
            match self.pool.heartbeat().await {
                Ok(out) => {
                    tracing::debug!(tx = %format!("{:#x}", out.tx_hash), "on-chain heartbeat")
                }
                Err(e) => tracing::warn!(error = %e, "on-chain heartbeat failed"),
            }
        }
    }
}

/// One line of a download's progress bar on stderr (a terminal), redrawn in place.
fn progress_bar(model: &Digest, percent: u64, done: u64, total: u64) {
    let filled = usize::try_from(percent.min(100) / 4).unwrap_or(25);
    let hex = model.to_string();
    eprint!(
        "\rmodel {}… [{}{}] {percent:>3}% {:.1}/{:.1} MB",
        &hex[..12],
        "#".repeat(filled),
        ".".repeat(25 - filled),
        done as f64 / 1e6,
        total as f64 / 1e6,
    );
}

/// Whether `url` is plain `http` to a host other than this one (loopback names and addresses
/// are this host).
fn plain_http_off_host(url: &str) -> bool {
    let Ok(url) = url::Url::parse(url) else {
        return false;
    };
    let loopback = match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => true,
    };
    url.scheme() == "http" && !loopback
}

/// What a caught panic says (its message, at most 500 characters).
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic")
        .chars()
        .take(500)
        .collect()
}

/// One of a batch's transfers (`what`), tried again a little later each time it fails for a
/// passing reason (rate limited, a lost answer), at most [`ITEM_TRIES`] times: one refusal
/// would otherwise send the whole batch's transfers again at the next poll. A download that
/// does not hash to its digest is not tried again.
async fn item_transfer<T, F, Fut>(what: &str, mut transfer: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let mut pause = Duration::from_millis(100);
    let mut tries = 1;
    loop {
        match transfer().await {
            Err(e)
                if e.is_retryable()
                    && !matches!(e, ClientError::DigestMismatch { .. })
                    && tries < ITEM_TRIES =>
            {
                tracing::debug!(what, tries, error = %e, "retrying a batch transfer");
                tokio::time::sleep(pause).await;
                pause *= 2;
                tries += 1;
            }
            other => return other,
        }
    }
}

/// A batch being run (`Agent::compute_batch`): the inputs gathered for the next merged pass
/// and what the batch has taken so far.
#[derive(Default)]
struct BatchRun {
    /// Whether inputs share passes (`--merge-batch-items`).
    merge: bool,
    /// (position, input) of the inputs gathered, in order.
    chunk: Vec<(u64, Vec<u8>)>,
    /// The rows in the chunk, and the type and shape past the rows its inputs share.
    chunk_rows: i64,
    chunk_shape: Option<(tch::Kind, Vec<i64>)>,
    model_ready: bool,
    inference_ms: u64,
    /// Outputs this process journaled.
    journaled: u64,
}

/// Milliseconds since `clock`.
fn elapsed_ms(clock: Instant) -> u64 {
    u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// An input's rows and what other inputs must share with it to share a pass (its type and its
/// shape past the rows); None when it has no rows to merge (empty, a scalar, not a tensor).
fn rows_and_shape(bytes: &[u8]) -> Option<(i64, (tch::Kind, Vec<i64>))> {
    let tensor = ciro_engine::tensors::decode_input(bytes).ok()?;
    let size = tensor.size();
    let rows = *size.first()?;
    (rows >= 1).then(|| (rows, (tensor.kind(), size[1..].to_vec())))
}

/// The inputs' tensors concatenated along their rows, as one input file, with each input's
/// rows (None: an input that does not decode, or whose shape differs: run each alone).
fn merge_rows(items: &[(u64, Vec<u8>)]) -> Option<(Vec<u8>, Vec<i64>)> {
    let tensors = items
        .iter()
        .map(|(_, bytes)| ciro_engine::tensors::decode_input(bytes).ok())
        .collect::<Option<Vec<tch::Tensor>>>()?;
    let first = tensors.first()?;
    if tensors.iter().any(|t| {
        t.dim() == 0 || t.kind() != first.kind() || t.size().get(1..) != first.size().get(1..)
    }) {
        return None;
    }
    let rows: Vec<i64> = tensors.iter().map(|t| t.size()[0]).collect();
    let merged = tch::Tensor::f_cat(&tensors, 0).ok()?;
    Some((ciro_engine::tensors::encode_input(&merged).ok()?, rows))
}

/// A merged pass's output file split back into each input's output file by `rows` (None: its
/// rows are not the inputs' rows, so the model mixed or changed them).
fn split_rows(output: &[u8], rows: &[i64]) -> Option<Vec<Vec<u8>>> {
    let tensor = ciro_engine::tensors::decode_input(output).ok()?;
    if tensor.dim() == 0 || tensor.size()[0] != rows.iter().sum::<i64>() {
        return None;
    }
    let mut at = 0;
    let mut parts = Vec::with_capacity(rows.len());
    for &n in rows {
        let part = tensor.f_narrow(0, at, n).ok()?;
        parts.push(ciro_engine::tensors::encode_output(&part).ok()?);
        at += n;
    }
    Some(parts)
}

/// Refuses a job whose forward passes this worker's process did not survive
/// [`MAX_FORWARD_ATTEMPTS`] times (a batch's passes counted together: one poison input fails
/// the batch, which the chain pays all or nothing).
fn check_attempts(entry: &Entry) -> Result<(), Refusal> {
    if entry.attempts >= MAX_FORWARD_ATTEMPTS {
        return Err(Refusal::Failed(format!(
            "its forward pass was started {} times and this worker's process ended during \
             each (a crash, a kill or the time limit): not run again",
            entry.attempts
        )));
    }
    Ok(())
}

/// What a failed download of `what` (limited to `limit` bytes) means for the job.
fn download_refusal(e: ClientError, what: &str, limit: u64) -> Refusal {
    match e {
        ClientError::DigestMismatch { .. } => {
            Refusal::Unable(format!("{what} does not hash to its digest: {e}"))
        }
        ClientError::TooLarge { .. } => Refusal::Unable(format!(
            "{what} is larger than the {limit} bytes this worker accepts: {e}"
        )),
        other if other.is_retryable() && !matches!(other, ClientError::Stalled { .. }) => {
            Refusal::Retry(format!("downloading {what}: {other}"))
        }
        other => Refusal::Unable(format!("downloading {what}: {other}")),
    }
}

/// The assignment a journal entry resumes (what the chain says is checked at the take).
fn resumed(entry: &Entry) -> Assignment {
    Assignment {
        job_id: entry.job_id,
        model_id: 0,
        model_hash: entry.model_hash,
        input_hash: entry.input_hash,
        deadline: entry.deadline,
        assigned_at: 0,
        release_at: 0,
        // (Unknown here: the chain's count is taken.)
        items: 0,
    }
}

/// How long a coordinator found not to serve a batch's items in one request (or not
/// answering) is taken at its word before it is asked again.
const BATCH_ROUTES_RECHECK: Duration = Duration::from_secs(300);

/// Tries of one batch input's download or output's upload that failed for a passing reason
/// (rate limited, a lost answer) before the batch is left to the next poll.
const ITEM_TRIES: u32 = 5;

/// How often results computed and not committed are taken up again when the coordinator no
/// longer offers their jobs ([`Agent::retake_computed`]).
const RETAKE_COMPUTED_EVERY: Duration = Duration::from_secs(30);

/// How often the outputs of jobs that ended are looked at ([`AgentConfig::keep_outputs`]).
const PRUNE_OUTPUTS_EVERY: Duration = Duration::from_secs(3_600);

/// Runs the sandbox check ([`ciro_engine::Isolation::check_sandbox`]) in `scratch`, for the
/// model store `store`, with a tensor operation on `device`: an error, and no serving, when a
/// model's process could reach what it must not, or cannot do what a pass needs, or when the
/// worker's data lies beneath a path a model's process may read.
pub async fn check_sandbox(
    isolation: &ciro_engine::Isolation,
    scratch: &std::path::Path,
    store: &std::path::Path,
    device: tch::Device,
) -> anyhow::Result<()> {
    for dir in [scratch, store] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        // Canonical, so that a data directory reached through a link is seen where it is.
        let dir = dir
            .canonicalize()
            .with_context(|| format!("resolving {}", dir.display()))?;
        // What a model's process may read must not hold the worker's own files.
        let readable = ciro_engine::sandbox::default_read_paths()
            .into_iter()
            .chain(isolation.read.iter().cloned())
            .find(|root| dir.starts_with(root));
        if let Some(root) = readable {
            anyhow::bail!(
                "{} is beneath {}, which a model's process may read (a library directory, \
                 or --sandbox-read): keep the worker's data elsewhere",
                dir.display(),
                root.display()
            );
        }
    }
    let report = isolation
        .check_sandbox(scratch, store, device)
        .await
        .context("checking the model sandbox (`--isolation process` runs models unsandboxed)")?;
    let escapes: Vec<&str> = report.escapes().iter().map(|a| a.what.as_str()).collect();
    let broken: Vec<String> = report
        .broken()
        .iter()
        .map(|a| format!("{} ({})", a.what, a.error.as_deref().unwrap_or("?")))
        .collect();
    anyhow::ensure!(
        escapes.is_empty(),
        "the model sandbox does not hold on this machine: a model's process could {}; \
         refusing to serve (`--isolation process` accepts the risk)",
        escapes.join(", ")
    );
    anyhow::ensure!(
        broken.is_empty(),
        "the model sandbox stops what a pass needs: {}; add the paths a pass must read with \
         `--sandbox-read`, or run with `--isolation process`",
        broken.join(", ")
    );
    tracing::info!(
        escapes_blocked = report
            .attempts
            .iter()
            .filter(|a| !a.allowed && !a.worked)
            .count(),
        "the model sandbox holds: each job's model runs in a process that cannot reach the \
         worker's files, network, signals or memory"
    );
    Ok(())
}

/// How an engine error ends a job: as the job's failure (given back as failed, which counts
/// toward the coordinator's limit of give-backs), or as this worker's (its store lost or
/// damaged the model file: given back as unable, so another worker may run it and the job is
/// not held against; and an internal fault: a file it could not read, a task it lost).
/// Running out of memory counts as the job's: every give-back records a miss against its
/// worker on chain, so a model written to exhaust memory on every worker would otherwise be
/// handed to each eligible worker in turn, each taking a miss, at no cost to its submitter but
/// gas; counted, it reaches at most the limit's number of workers. (A panic in the pass
/// itself, which a model's output can cause, is the job's failure too: see `compute`.)
fn engine_refusal(error: EngineError) -> Refusal {
    let reason = format!("the engine refused the job: {error}");
    match &error {
        EngineError::UnknownModel(_)
        | EngineError::HashMismatch { .. }
        | EngineError::Internal(_) => Refusal::Unable(reason),
        _ => Refusal::Failed(reason),
    }
}

/// A failed read of `what` on chain: only the contract's refusal (a revert: it does not
/// exist) is final, `missing` with the reason; anything else (a lost answer, a node that is
/// busy or errs, a block it has not seen) may clear and is retried at a later poll. Taking a
/// passing node error for an answer gave the job back, with a result already computed.
fn chain_read(error: ChainError, what: &str, missing: &str) -> Refusal {
    match error {
        ChainError::Reverted { .. } => Refusal::Unable(format!("{missing}: {error}")),
        other => Refusal::Retry(format!("reading {what} on chain: {other}")),
    }
}

/// `output` (a safetensors file) with 1 added to its first element (test only).
fn corrupt(mut output: Vec<u8>) -> Vec<u8> {
    let header = output
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes)
        .and_then(|n| usize::try_from(n).ok());
    if let Some(start) = header.and_then(|n| n.checked_add(8)) {
        if let Some(first) = output.get_mut(start..start + 4) {
            let value = f32::from_le_bytes([first[0], first[1], first[2], first[3]]) + 1.0;
            first.copy_from_slice(&value.to_le_bytes());
        }
    }
    output
}

#[cfg(test)]
mod tests {
    use super::{chain_read, died_in, engine_refusal, AgentConfig, Counted, Entry, Refusal, Stage};
    use ciro_chain::starknet::core::types::StarknetError;
    use ciro_chain::ChainError;
    use std::time::Duration;

    #[test]
    fn plain_http_is_flagged_only_off_this_host() {
        use super::plain_http_off_host as flagged;
        assert!(flagged("http://coordinator.example:7070"));
        assert!(flagged("http://10.0.0.5:7070"));
        for fine in [
            "https://coordinator.example",
            "http://127.0.0.1:7070",
            "http://localhost:7070",
            "http://[::1]:7070",
        ] {
            assert!(!flagged(fine), "{fine}");
        }
    }

    /// An engine error is the job's failure unless it is this worker's: its store lost or
    /// damaged the model file, or an internal fault (given back as unable). Running out of
    /// memory counts against the job since session 20: each give-back records a miss against
    /// its worker on chain, and a model written to exhaust memory everywhere was handed to
    /// every eligible worker in turn, each taking a miss (a review's finding; an earlier
    /// review had it uncounted so a job could reach a worker with more memory, which the
    /// job's own VRAM requirement is for).
    #[test]
    fn only_this_workers_own_faults_give_the_job_back_as_unable() {
        use ciro_engine::{Digest, EngineError};
        let unable = |e: EngineError| matches!(engine_refusal(e), Refusal::Unable(_));
        let failed = |e: EngineError| matches!(engine_refusal(e), Refusal::Failed(_));
        let hash = Digest::of(b"model");
        assert!(unable(EngineError::UnknownModel(hash)));
        assert!(unable(EngineError::HashMismatch {
            expected: hash,
            actual: Digest::of(b"other")
        }));
        assert!(unable(EngineError::Internal(anyhow::anyhow!("lost task"))));
        assert!(failed(EngineError::CorruptModel {
            hash,
            reason: "CUDA out of memory. Tried to allocate 2.00 GiB".into()
        }));
        assert!(failed(EngineError::Forward(
            "CUDA error: out of memory".into()
        )));
        assert!(failed(EngineError::CorruptModel {
            hash,
            reason: "PytorchStreamReader failed locating file constants.pkl".into()
        }));
        assert!(failed(EngineError::Forward("shape mismatch".into())));
        assert!(failed(EngineError::UnsafeModel {
            hash,
            reason: "m/code/__torch__.py names `from_file`".into()
        }));
        assert!(failed(EngineError::EmptyInput));
        assert!(failed(EngineError::InvalidInput("no tensor".into())));
    }

    /// Only the contract's refusal of the read ends the job; a node that errs, a block it has
    /// not seen, or a lost answer is retried (a review found these gave the job back with its
    /// result already computed).
    #[test]
    fn only_a_reverted_chain_read_gives_the_job_back() {
        let unable =
            |e: ChainError| matches!(chain_read(e, "job 1", "no such job"), Refusal::Unable(_));
        assert!(unable(ChainError::reverted("JM: unknown job".into())));
        for passing in [
            ChainError::Node {
                code: -32603,
                message: "internal error".into(),
            },
            ChainError::Rejected(StarknetError::BlockNotFound),
            ChainError::Transport("connection reset".into()),
            ChainError::Internal(anyhow::anyhow!("decoding")),
        ] {
            let shown = passing.to_string();
            assert!(
                matches!(
                    chain_read(passing, "job 1", "no such job"),
                    Refusal::Retry(_)
                ),
                "{shown}"
            );
        }
    }

    #[tokio::test]
    async fn a_configuration_with_a_zero_limit_is_refused_before_anything_starts() {
        let config = AgentConfig {
            chain: ciro_service::ChainConfig {
                // Nothing listens there: the agent must fail on the limits before the node.
                rpc_url: "http://127.0.0.1:9".parse().unwrap(),
                manifest: "/nonexistent/manifest.json".into(),
            },
            account: ciro_chain::account::AccountSource::DevnetPredeployed(0),
            coordinator: "http://127.0.0.1:9".into(),
            data_dir: std::env::temp_dir(),
            stake_target: 0,
            capacity: 1,
            heartbeat: Duration::from_secs(1),
            chain_heartbeat: Duration::from_secs(1),
            claim_threshold: None,
            deterministic_seed: None,
            max_batch: 1,
            max_input_bytes: 1,
            max_batch_items: 1,
            max_model_bytes: 1,
            max_output_bytes: 1,
            drain_grace: Duration::from_secs(1),
            max_forward: Duration::from_secs(1),
            deactivate_on_exit: false,
            commit_window: Duration::from_millis(1),
            poll_wait: Duration::from_secs(1),
            hold_commits: false,
            test_corrupt_output: false,
            test_crash_after_items: None,
            listen: "127.0.0.1:0".parse().unwrap(),
            relayer: None,
            challenge_slashes: false,
            batch_jobs: false,
            merge_batch_items: false,
            isolation: None,
            max_loaded_model_bytes: None,
            max_stored_model_bytes: None,
            keep_outputs: Duration::from_secs(1),
        };
        assert!(config.validate().is_ok());
        for (input, model) in [(0, 1), (1, 0)] {
            let mut zero = config.clone();
            zero.max_input_bytes = input;
            zero.max_model_bytes = model;
            let error = super::run(zero, ciro_service::CancellationToken::new())
                .await
                .unwrap_err();
            assert!(
                error
                    .to_string()
                    .contains("size limits are at least 1 byte"),
                "{error:#}"
            );
        }
        let mut idle = config.clone();
        idle.capacity = 0;
        assert!(idle.validate().is_err());
        let mut empty = config;
        empty.max_batch = 0;
        assert!(empty.validate().is_err());
    }

    fn entry(job_id: u64, stage: Stage, attempts: u32) -> Entry {
        Entry {
            job_id,
            model_hash: ciro_engine::Digest::of(b"model"),
            input_hash: ciro_engine::Digest::of(b"input"),
            deadline: 0,
            stage,
            output_hash: None,
            receipt: None,
            reason: None,
            attempts,
            items: 1,
        }
    }

    #[test]
    fn only_the_one_unreturned_pass_is_blamed_for_the_death() {
        // One pass never returned (a computed job and a job not started are beside it).
        let open = [
            entry(1, Stage::Running, 0),
            entry(2, Stage::Running, 1),
            entry(3, Stage::Computed, 0),
        ];
        assert_eq!(died_in(&open), Some(2));
        // Two passes were in flight when the process died: which one killed it is unknown.
        let open = [entry(2, Stage::Running, 1), entry(4, Stage::Running, 2)];
        assert_eq!(died_in(&open), None);
        assert_eq!(died_in(&[entry(1, Stage::Running, 0)]), None);
    }

    #[test]
    fn every_counted_pass_is_uncounted_once_by_its_return_the_drain_or_itself() {
        let mut counted = Counted::default();
        // Two passes run; one returns before the drain: its caller uncounts it.
        assert!(counted.enter(1));
        assert!(counted.enter(2));
        assert!(counted.leave(1));
        // The drain takes the one still running, and uncounts it.
        assert_eq!(counted.close(), vec![2]);
        // That pass returns later: already uncounted, not a second time.
        assert!(!counted.leave(2));
        // A pass counted after the drain does not start (its caller uncounts it), and nothing
        // is left for a later drain to take.
        assert!(!counted.enter(3));
        assert!(!counted.leave(3));
        assert!(counted.close().is_empty());
    }
}
