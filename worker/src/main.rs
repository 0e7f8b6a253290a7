//! `ciro-worker`: the GPU owner's command line, on the service runtime (logging, one exit
//! path): `run` (the agent: register and stake, take assigned jobs, run them, commit, get
//! paid), `status`, `claim`, and the local tools `hardware`, `add-model`, `exec`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use ciro_chain::account::connect_with_key;
use ciro_chain::cainome::cairo_serde::ContractAddress;
use ciro_chain::clients::PoolClient;
use ciro_chain::manifest::Manifest;
use ciro_chain::sender::{SenderConfig, TxSender};
use ciro_chain::starknet::accounts::Account;
use ciro_chain::starknet::core::types::{BlockId, BlockTag, Felt};
use ciro_chain::starknet::providers::jsonrpc::HttpTransport;
use ciro_chain::starknet::providers::{JsonRpcClient, Provider};
use ciro_chain::tx::call;
use ciro_chain::{ChainError, RpcAccount};
use ciro_engine::{hardware, Digest, Engine, EngineConfig, ModelSpec, ModelStore};
use ciro_service::{run_main, run_service, AccountArgs, ChainArgs, LogArgs, ServeArgs};
use ciro_worker::agent::{self, AgentConfig};
use ciro_worker::journal::Journal;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "ciro-worker", version, about = "CIRO GPU worker")]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent: declare the hardware, register and stake as needed, then take the jobs
    /// the coordinator assigns, verify them on chain, run them, upload and commit the results.
    /// SIGTERM drains.
    Run(Box<RunArgs>),
    /// Print the worker's on-chain state, stake, reputation, pending rewards and the jobs in
    /// its journal, as JSON.
    Status(StatusArgs),
    /// Claim the worker's pending rewards (gasless with --relayer).
    Claim(ClaimArgs),
    /// Contest a pending slash against this worker, paying the pool's challenge bond
    /// (`status` lists the open ones); the arbiter then decides.
    ChallengeSlash(ChallengeSlashArgs),
    /// Print this machine's hardware report as JSON (GPUs from NVML, or a CPU-only profile).
    Hardware,
    /// Add a TorchScript file to the model store; prints its hash (the on-chain model_hash).
    AddModel(AddModelArgs),
    /// Run one job: a safetensors input through a stored model; prints the hashes as JSON.
    Exec(ExecArgs),
    /// One job's forward pass in a sandboxed process (started by the worker itself).
    #[command(hide = true)]
    Pass(PassArgs),
}

#[derive(Args)]
struct PassArgs {
    /// The engine's request (JSON).
    request: String,
}

/// Where a job's model runs.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum IsolationMode {
    /// In a process of its own per job, sandboxed (Linux Landlock and seccomp): it cannot
    /// reach the worker's files, network, signals or memory. Checked at start.
    Sandboxed,
    /// In a process of its own per job, not sandboxed (a kernel without Landlock): a model
    /// that takes control of its process can read what the worker's user can.
    Process,
    /// In the worker's own process, with a warm cache and shared passes: only for models the
    /// operator trusts (a model that takes control of the process has the account key).
    InProcess,
}

#[derive(Args)]
struct IsolationArgs {
    /// Where each job's model runs: `sandboxed` (default), `process` or `in-process`. A
    /// submitter's model is code; libtorch's loader trusts its records, and a crafted one can
    /// take control of the process it runs in.
    #[arg(long, env = "WORKER_ISOLATION", value_enum, default_value_t = IsolationMode::Sandboxed)]
    isolation: IsolationMode,
    /// More paths a sandboxed model process may read beneath (comma-separated in the
    /// environment variable): where a GPU driver's libraries live outside the system's
    /// library directories and libtorch's.
    #[arg(
        long = "sandbox-read",
        env = "WORKER_SANDBOX_READ",
        value_delimiter = ','
    )]
    sandbox_read: Vec<PathBuf>,
    /// Most memory, in MiB, a job's model process may take beyond what it starts with
    /// (libtorch, loaded once): an allocation past it fails as the job's error instead of
    /// taking the machine's memory. It counts memory reserved, not only used (each thread's
    /// stack, 8 MiB), and loading a model takes about four times its file's size. 0: no
    /// limit. Default: three quarters of this machine's memory shared by the jobs that run at
    /// once (`--capacity`). GPU memory is not counted.
    #[arg(long = "pass-memory-mb", env = "WORKER_PASS_MEMORY_MB")]
    pass_memory_mb: Option<u64>,
}

impl IsolationArgs {
    /// The engine's isolation: this executable's hidden `pass` subcommand; `at_once` passes
    /// may run at once (they share the default memory limit).
    fn isolation(&self, at_once: u32) -> Result<Option<ciro_engine::Isolation>> {
        if self.isolation == IsolationMode::InProcess {
            return Ok(None);
        }
        let program = std::env::current_exe().context("finding this executable")?;
        let mut isolation = ciro_engine::Isolation::new(program, &["pass"]);
        isolation.sandbox = self.isolation == IsolationMode::Sandboxed;
        isolation.pass_memory = match self.pass_memory_mb {
            Some(0) => None,
            Some(mib) => Some(mib.saturating_mul(1 << 20)),
            None => Some(
                ciro_engine::hardware::total_ram_mb()
                    .context("reading this machine's memory for the pass memory limit (set --pass-memory-mb)")?
                    .saturating_mul(3 << 18)
                    / u64::from(at_once.max(1)),
            ),
        };
        // Resolved here: the model processes start in `/`.
        isolation.read = self
            .sandbox_read
            .iter()
            .map(|path| {
                std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))
            })
            .collect::<Result<_>>()?;
        Ok(Some(isolation))
    }
}

#[derive(Args)]
struct ChainAccountArgs {
    #[command(flatten)]
    chain: ChainArgs,
    #[command(flatten)]
    account: AccountArgs,
}

#[derive(Args)]
struct RelayerArgs {
    /// Send every transaction (onboarding, results, heartbeats, claims) through this SNIP-29
    /// paymaster relayer, paid by a sponsor; its API key, if it wants one, from
    /// CIRO_RELAYER_API_KEY.
    #[arg(long, env = "WORKER_RELAYER_URL")]
    relayer: Option<String>,
    /// With --relayer: send and pay directly what the relayer refuses or cannot take (without
    /// it, such a transaction fails and is retried as the agent retries any).
    #[arg(long, env = "WORKER_RELAYER_FALLBACK", requires = "relayer")]
    relayer_fallback: bool,
}

impl RelayerArgs {
    fn config(&self) -> Option<agent::RelayerConfig> {
        self.relayer.clone().map(|url| agent::RelayerConfig {
            url,
            api_key: std::env::var(RELAYER_API_KEY_ENV)
                .ok()
                .filter(|k| !k.is_empty()),
            fallback: self.relayer_fallback,
        })
    }
}

#[derive(Args)]
struct ClaimArgs {
    #[command(flatten)]
    on: ChainAccountArgs,
    #[command(flatten)]
    relayer: RelayerArgs,
}

#[derive(Args)]
struct ChallengeSlashArgs {
    #[command(flatten)]
    on: ChainAccountArgs,
    #[command(flatten)]
    relayer: RelayerArgs,
    /// The slash's id (`ciro-worker status` lists this worker's open ones).
    #[arg(long)]
    slash_id: u64,
}

#[derive(Args)]
struct StatusArgs {
    #[command(flatten)]
    on: ChainAccountArgs,
    /// The agent's data directory (journal, outputs, model store).
    #[arg(long, env = "WORKER_DATA_DIR", default_value = "ciro-worker")]
    data_dir: PathBuf,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    on: ChainAccountArgs,
    /// The coordinator's base URL.
    #[arg(
        long,
        env = "CIRO_COORDINATOR_URL",
        default_value = "http://127.0.0.1:7070"
    )]
    coordinator: String,
    /// The agent's data directory (journal, outputs, model store; created if missing).
    #[arg(long, env = "WORKER_DATA_DIR", default_value = "ciro-worker")]
    data_dir: PathBuf,
    /// Own stake to hold, in the payment token's base units: topped up to it, never beyond.
    #[arg(long, env = "WORKER_STAKE_TARGET")]
    stake_target: u128,
    /// Jobs run at once (1 to 500, the most a coordinator counts: one assignments poll).
    #[arg(long, env = "WORKER_CAPACITY", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=500))]
    capacity: u32,
    /// Seconds between heartbeats to the coordinator.
    #[arg(long, env = "WORKER_HEARTBEAT_SECS", default_value_t = 10)]
    heartbeat_secs: u64,
    /// Seconds between on-chain heartbeats.
    #[arg(long, env = "WORKER_CHAIN_HEARTBEAT_SECS", default_value_t = 3_600)]
    chain_heartbeat_secs: u64,
    /// Claim rewards once pending rewards reach this many base units (unset: only by
    /// `ciro-worker claim`).
    #[arg(long, env = "WORKER_CLAIM_THRESHOLD")]
    claim_threshold: Option<u128>,
    /// Deterministic mode with this seed (every job alone, seeded, deterministic kernels).
    #[arg(long, env = "WORKER_DETERMINISTIC_SEED")]
    deterministic_seed: Option<u64>,
    /// Most rows per forward pass.
    #[arg(long, env = "WORKER_MAX_BATCH", default_value_t = 64)]
    max_batch: i64,
    /// Largest input accepted, in bytes, at least 1 (declared to the coordinator, which
    /// offers no larger job).
    #[arg(long, env = "WORKER_MAX_INPUT_BYTES", default_value_t = 64 << 20,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_input_bytes: u64,
    /// Most inputs of a batch (JobMgr's `submit_batch`) it runs, 1 to 1000 (declared to the
    /// coordinator, which offers no larger batch; 1: single jobs only). A batch's inputs run
    /// one pass each, its outputs journaled one by one.
    #[arg(long, env = "WORKER_MAX_BATCH_ITEMS", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    max_batch_items: u32,
    /// Largest model file accepted, in bytes, at least 1 (held in memory while its hash is
    /// checked; declared to the coordinator, which offers no job with a larger one).
    #[arg(long, env = "WORKER_MAX_MODEL_BYTES", default_value_t = 8 << 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_model_bytes: u64,
    /// Largest output a job may have, in bytes of tensor data, at least 1 (default 256 MiB,
    /// the coordinator's default upload limit): a larger one fails the job before it is
    /// written, since no one could upload it.
    #[arg(long, env = "WORKER_MAX_OUTPUT_BYTES", default_value_t = 256 << 20,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_output_bytes: u64,
    /// Most bytes of model files kept loaded between jobs, at least 1 (default: half the
    /// inference device's memory, the best GPU's on CUDA, else the machine's). The least
    /// recently used models are let go first, and the modules of passes still running count
    /// until their passes end (a load waits up to 2 minutes for them); the model a job needs
    /// is always loaded.
    #[arg(long, env = "WORKER_MAX_LOADED_MODEL_BYTES",
          value_parser = clap::value_parser!(u64).range(1..))]
    max_loaded_model_bytes: Option<u64>,
    /// Most bytes of model files kept on disk, at least 1 (default: 4 times
    /// `--max-model-bytes`). After each download the least recently used files are removed
    /// until the store fits; the one just fetched is always kept.
    #[arg(long, env = "WORKER_MAX_STORED_MODEL_BYTES",
          value_parser = clap::value_parser!(u64).range(1..))]
    max_stored_model_bytes: Option<u64>,
    /// Seconds the output of a job that ended (committed, refused, dropped or failed) stays
    /// in the data directory's `outputs/` (the coordinator keeps the uploaded copy). Checked at
    /// start and every hour.
    #[arg(long, env = "WORKER_KEEP_OUTPUTS_SECS", default_value_t = 7 * 86_400)]
    keep_outputs_secs: u64,
    /// Seconds a drain (SIGTERM) waits for running jobs before abandoning them.
    #[arg(long, env = "WORKER_DRAIN_GRACE_SECS", default_value_t = 60)]
    drain_grace_secs: u64,
    /// Longest a job's forward pass may take, in seconds. Isolated (the default), each job's
    /// pass is timed from its process's start: past it the process is killed, the job fails
    /// and is given back, and the worker serves on. In process, the time the engine spends
    /// loading the job's model or running a pass of it counts (not a wait for the inference
    /// thread or a batch): past it the job is given back and the worker exits with an error
    /// for its supervisor to restart it (neither can be interrupted).
    #[arg(long, env = "WORKER_MAX_FORWARD_SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    max_forward_secs: u64,
    /// Deactivate on chain when stopping.
    #[arg(long, env = "WORKER_DEACTIVATE")]
    deactivate: bool,
    /// Results finished within this many milliseconds go in one transaction.
    #[arg(long, env = "WORKER_COMMIT_WINDOW_MS", default_value_t = 500)]
    commit_window_ms: u64,
    #[command(flatten)]
    relayer: RelayerArgs,
    /// Challenge every slash opened against this worker while its window is open, paying the
    /// pool's challenge bond (without it, a pending slash is logged at error level and left
    /// to `ciro-worker challenge-slash`).
    #[arg(long, env = "WORKER_CHALLENGE_SLASHES")]
    challenge_slashes: bool,
    /// Throughput mode: run jobs of a model in shared forward passes. Exact only for models
    /// whose rows do not affect each other: a model that mixes rows gives a job an output
    /// that depends on the jobs beside it, which a re-run alone (a dispute) does not
    /// reproduce. Off by default (each job alone); turn it on only for models you trust.
    #[arg(long, env = "WORKER_BATCH_JOBS", conflicts_with = "deterministic_seed")]
    batch_jobs: bool,
    /// Run a batch's inputs (JobMgr's `submit_batch`) with their rows in shared forward passes
    /// (up to --max-batch rows a pass; throughput mode only), each output split back by rows:
    /// far fewer passes, and with isolation far fewer processes. Exact only for models whose
    /// rows do not affect each other (as with --batch-jobs, but within one submitter's batch),
    /// and not bit-identical to a pass of each input alone. The agent checks only that the
    /// output has the inputs' rows (else, or when the merged pass fails, each input runs
    /// alone): a model that mixes rows and keeps their count gives wrong outputs. Turn it on
    /// only for models you trust to keep rows apart.
    #[arg(
        long,
        env = "WORKER_MERGE_BATCH_ITEMS",
        conflicts_with = "deterministic_seed"
    )]
    merge_batch_items: bool,
    #[command(flatten)]
    isolation: IsolationArgs,
    /// Test only: compute and journal results but never commit them.
    #[arg(long, hide = true)]
    test_hold_commits: bool,
    /// Test only: a cheating worker (every output's first element plus 1).
    #[arg(long, hide = true)]
    test_corrupt_output: bool,
    /// Test only: end the process (abort, as a crash would) once this many of a batch's
    /// outputs are journaled by it.
    #[arg(long = "test-crash-after-items", hide = true)]
    test_crash_after_items: Option<u64>,
    #[command(flatten)]
    serve: ServeArgs<7072>,
}

#[derive(Args)]
struct StoreArgs {
    /// Model store directory.
    #[arg(long, env = "WORKER_MODEL_STORE", default_value = "models")]
    store: PathBuf,
}

#[derive(Args)]
struct AddModelArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The TorchScript file (torch.jit.save).
    #[arg(long)]
    file: PathBuf,
    /// Shape of one input row, comma-separated (e.g. 16 or 3,224,224).
    #[arg(long, value_delimiter = ',', required = true)]
    shape: Vec<i64>,
    /// Input element type as safetensors names it.
    #[arg(long, default_value = "F32")]
    dtype: String,
    /// Most rows per forward pass.
    #[arg(long, default_value_t = 64)]
    max_batch: i64,
}

#[derive(Args)]
struct ExecArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Model hash (SHA-256 hex).
    #[arg(long)]
    model: Digest,
    /// Input safetensors file.
    #[arg(long)]
    input: PathBuf,
    /// Where to write the output safetensors file.
    #[arg(long)]
    output: PathBuf,
    /// Deterministic mode with this seed.
    #[arg(long, env = "WORKER_DETERMINISTIC_SEED")]
    deterministic_seed: Option<u64>,
    #[command(flatten)]
    isolation: IsolationArgs,
}

/// The worker's memory holds its account key: never in a core dump, and not readable through
/// `/proc` by another process of its user without `CAP_SYS_PTRACE`.
fn no_core_dumps() -> Result<()> {
    let none = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit with a valid rlimit, and prctl with integer arguments.
    unsafe {
        anyhow::ensure!(
            libc::setrlimit(libc::RLIMIT_CORE, &none) == 0,
            "turning core dumps off: {}",
            std::io::Error::last_os_error()
        );
        anyhow::ensure!(
            libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) == 0,
            "marking the process not dumpable: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// The relayer's API key: from the environment only (a secret never goes on a command line).
const RELAYER_API_KEY_ENV: &str = "CIRO_RELAYER_API_KEY";

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A model's process: into its sandbox before anything else runs (no thread, no runtime).
    if let Command::Pass(args) = &cli.command {
        return ciro_engine::child_main(&args.request);
    }
    let code = match cli.command {
        Command::Run(args) => run_service("ciro-worker", &cli.log, |shutdown| async move {
            no_core_dumps()?;
            let config = AgentConfig {
                chain: args.on.chain.config()?,
                account: args.on.account.source()?,
                coordinator: args.coordinator,
                data_dir: args.data_dir,
                stake_target: args.stake_target,
                capacity: args.capacity.max(1),
                heartbeat: Duration::from_secs(args.heartbeat_secs.max(1)),
                chain_heartbeat: Duration::from_secs(args.chain_heartbeat_secs.max(1)),
                claim_threshold: args.claim_threshold,
                deterministic_seed: args.deterministic_seed,
                max_batch: args.max_batch.max(1),
                max_input_bytes: args.max_input_bytes,
                max_batch_items: args.max_batch_items,
                max_output_bytes: args.max_output_bytes,
                max_model_bytes: args.max_model_bytes,
                drain_grace: Duration::from_secs(args.drain_grace_secs),
                max_forward: Duration::from_secs(args.max_forward_secs),
                deactivate_on_exit: args.deactivate,
                commit_window: Duration::from_millis(args.commit_window_ms),
                poll_wait: Duration::from_secs(20),
                hold_commits: args.test_hold_commits,
                test_corrupt_output: args.test_corrupt_output,
                test_crash_after_items: args.test_crash_after_items,
                listen: args.serve.listen,
                relayer: args.relayer.config(),
                challenge_slashes: args.challenge_slashes,
                batch_jobs: args.batch_jobs,
                merge_batch_items: args.merge_batch_items,
                isolation: {
                    let isolation = args.isolation.isolation(args.capacity)?;
                    anyhow::ensure!(
                        !args.batch_jobs || isolation.is_none(),
                        "--batch-jobs shares forward passes between jobs, which needs \
                         --isolation in-process (each isolated job runs in a process of its own)"
                    );
                    isolation
                },
                max_loaded_model_bytes: args.max_loaded_model_bytes,
                max_stored_model_bytes: args.max_stored_model_bytes,
                keep_outputs: Duration::from_secs(args.keep_outputs_secs),
            };
            agent::run(config, shutdown).await
        }),
        command => run_main("ciro-worker", &cli.log, run(command)),
    };
    if agent::process_wedged() {
        // The engine's thread is stuck in libtorch: end the process without exit-time
        // destructors, which could wait on it (the error is already on stderr).
        use std::io::Write;
        let _ = std::io::stderr().flush();
        // SAFETY: `_exit` ends the process at once; nothing after it runs.
        unsafe { libc::_exit(1) }
    }
    code
}

/// The pool of the manifest, as the configured account; its transactions through `relayer`
/// when given.
async fn clients(
    on: &ChainAccountArgs,
    relayer: Option<&agent::RelayerConfig>,
) -> Result<(PoolClient<RpcAccount>, Felt, u64)> {
    let chain = on.chain.config()?;
    let manifest = Manifest::read(&chain.manifest)?;
    let node = JsonRpcClient::new(HttpTransport::new(chain.rpc_url.clone()));
    let chain_id = node.chain_id().await.context("reading the chain id")?;
    let (account, key) = connect_with_key(&on.account.source()?, &chain.rpc_url, chain_id).await?;
    let me = account.address();
    let mut sender = TxSender::new(account, SenderConfig::default());
    if let Some(relayer) = relayer {
        sender = agent::relayed(sender, relayer, key, chain_id, &manifest)?;
    }
    let pool = PoolClient::new(
        manifest.contract(ciro_chain::constants::contracts::CDC_POOL)?,
        Arc::new(sender),
    );
    Ok((pool, me, manifest.deploy_block.unwrap_or(0)))
}

/// Attempts of a gasless claim: the relayer refuses an execution while an earlier one of the
/// same account (the running agent's heartbeat, say) is in flight.
const CLAIM_ATTEMPTS: u32 = 5;

/// Whether the relayer refused because an earlier execution of the account is in flight (the
/// reference relayer's words; another relayer's refusals are not retried).
fn in_flight(error: &ChainError) -> bool {
    let text = error.to_string();
    text.contains("in flight") || text.contains("being submitted")
}

fn amount(value: &ciro_chain::cainome::cairo_serde::U256) -> String {
    if value.high == 0 {
        value.low.to_string()
    } else {
        format!("{:#x}{:032x}", value.high, value.low)
    }
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Run(_) => unreachable!("run is served by run_service"),
        Command::Pass(_) => anyhow::bail!("a pass is served before any runtime starts"),
        Command::Status(args) => {
            let (pool, me, deploy_block) = clients(&args.on, None).await?;
            let info = pool.worker(me).await?;
            let pending = pool.pending_rewards(me).await?;
            let slashes = if info.record.open_slashes == 0 {
                Vec::new()
            } else {
                pool.open_slashes(me, deploy_block).await?
            };
            let journal = Journal::open(&args.data_dir).await?;
            let open = journal.open_jobs().await?;
            let recent = journal.recent(10).await?;
            let job = |e: &ciro_worker::journal::Entry| {
                serde_json::json!({
                    "job_id": e.job_id,
                    "stage": e.stage.as_str(),
                    "deadline": e.deadline,
                    "output_hash": e.output_hash,
                    "reason": e.reason,
                    "unreturned_passes": e.attempts,
                })
            };
            let status = serde_json::json!({
                "worker": format!("{me:#x}"),
                "state": format!("{:?}", info.state),
                "deactivated": info.record.deactivated,
                "stake": amount(&info.stake),
                "delegated": amount(&info.delegated),
                "warming": {
                    "amount": amount(&info.warming.amount),
                    "until": info.warming.unlock_time,
                },
                "hardware_tier": info.hardware_tier,
                "stake_tier": info.stake_tier,
                "reputation": {
                    "score": info.reputation.score,
                    "completed": info.reputation.completed,
                    "failed": info.reputation.failed,
                    "missed": info.reputation.missed,
                    "avg_latency_secs": info.reputation.avg_latency,
                },
                "pending_rewards": amount(&pending),
                "open_slashes": slashes.iter().map(|(id, slash)| serde_json::json!({
                    "slash_id": id,
                    "status": format!("{:?}", slash.status),
                    "reason": format!("{:?}", slash.reason),
                    "bps": slash.bps,
                    "challenge_deadline": slash.challenge_deadline,
                    "arbitration_deadline": slash.arbitration_deadline,
                })).collect::<Vec<_>>(),
                "in_flight": open.iter().map(job).collect::<Vec<_>>(),
                "recent": recent.iter().map(job).collect::<Vec<_>>(),
            });
            println!("{}", serde_json::to_string_pretty(&status)?);
        }
        Command::Claim(args) => {
            let relayer = args.relayer.config();
            let (pool, me, _) = clients(&args.on, relayer.as_ref()).await?;
            // As the next block sees them: a claim that just landed shows.
            let pending_now = || async {
                pool.reader()
                    .pending_rewards(&ContractAddress(me))
                    .block_id(BlockId::Tag(BlockTag::PreConfirmed))
                    .call()
                    .await
                    .map_err(ChainError::from)
                    .context("reading the pending rewards")
            };
            let pending = pending_now().await?;
            if ciro_chain::clients::is_zero(&pending) {
                println!("no rewards pending for {me:#x}");
                return Ok(());
            }
            let meanwhile = || {
                println!(
                    "claimed {}: the rewards were claimed meanwhile (an earlier execution landed)",
                    amount(&pending)
                );
            };
            let mut attempt = 1;
            loop {
                if attempt > 1 {
                    let left = pending_now().await?;
                    if ciro_chain::clients::is_zero(&left) {
                        meanwhile();
                        return Ok(());
                    }
                }
                match pool.claim_rewards().await {
                    Ok(out) => {
                        let fee = if relayer.is_some() {
                            format!(
                                "sponsored: its fee of {} FRI paid by the relayer",
                                out.actual_fee()
                            )
                        } else {
                            format!("fee {} FRI", out.actual_fee())
                        };
                        println!(
                            "claimed {} (tx {:#x}, {fee})",
                            amount(&pending),
                            out.tx_hash
                        );
                        return Ok(());
                    }
                    // An execution refused after signing may still land: the retry then finds
                    // nothing to claim, which is this claim's success, not a failure.
                    Err(error)
                        if attempt > 1
                            && error
                                .revert_reason()
                                .is_some_and(|r| r.contains("nothing to claim")) =>
                    {
                        meanwhile();
                        return Ok(());
                    }
                    // The relayer takes one execution per account at a time (the running
                    // agent's heartbeat, say): that refusal passes; others (the policy) do not.
                    Err(error @ ChainError::Paymaster { .. })
                        if attempt < CLAIM_ATTEMPTS && in_flight(&error) =>
                    {
                        let wait = Duration::from_secs(2 << attempt.min(4));
                        eprintln!("the relayer did not take the claim yet ({error}); retrying in {wait:?}");
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                    }
                    Err(error) => return Err(error).context("claiming the rewards"),
                }
            }
        }
        Command::ChallengeSlash(args) => {
            let relayer = args.relayer.config();
            let (pool, me, _) = clients(&args.on, relayer.as_ref()).await?;
            let slash = call(pool.reader().get_slash(&args.slash_id))
                .await
                .with_context(|| format!("reading slash {}", args.slash_id))?;
            anyhow::ensure!(
                slash.worker.0 == me,
                "slash {} is against {:#x}, not this worker {me:#x}",
                args.slash_id,
                slash.worker.0
            );
            anyhow::ensure!(
                slash.status == ciro_chain::bindings::cdc_pool::SlashStatus::Pending,
                "slash {} is {:?}: only a pending slash can be challenged",
                args.slash_id,
                slash.status
            );
            let token = call(pool.reader().token()).await?.0;
            let out = pool
                .challenge_slash(token, args.slash_id)
                .await
                .context("challenging the slash")?;
            println!(
                "challenged slash {} (tx {:#x}): the arbiter decides before {} (the bond comes back if it is overturned, or if the arbiter does not decide in time)",
                args.slash_id,
                out.tx_hash,
                call(pool.reader().get_slash(&args.slash_id)).await?.arbitration_deadline
            );
        }
        Command::Hardware => println!("{}", serde_json::to_string_pretty(&hardware::detect())?),
        Command::AddModel(args) => {
            let store = ModelStore::open(&args.store.store, 1)?;
            let spec = ModelSpec {
                input_shape: args.shape,
                input_dtype: args.dtype,
                max_batch: args.max_batch,
            };
            println!("{}", store.insert_file(&args.file, &spec)?);
        }
        Command::Exec(args) => {
            let store = Arc::new(ModelStore::open(&args.store.store, 1)?);
            let input = std::fs::read(&args.input)
                .with_context(|| format!("reading {}", args.input.display()))?;
            let isolation = args.isolation.isolation(1)?;
            if let Some(isolation) = isolation.as_ref().filter(|i| i.sandbox) {
                // A directory of this run's own (a fixed name in a shared directory could be
                // another user's).
                let scratch =
                    std::env::temp_dir().join(format!("ciro-sandbox-check-{}", std::process::id()));
                std::fs::create_dir(&scratch)
                    .with_context(|| format!("creating {}", scratch.display()))?;
                let checked = agent::check_sandbox(
                    isolation,
                    &scratch,
                    &args.store.store,
                    ciro_engine::default_device(),
                )
                .await;
                let _ = std::fs::remove_dir(&scratch);
                checked?;
            }
            let config = EngineConfig {
                deterministic_seed: args.deterministic_seed,
                max_wait: Duration::ZERO,
                isolation,
                ..EngineConfig::default()
            };
            let device = config.device;
            let output = Engine::new(store, config)?
                .execute(args.model, &input)
                .await?;
            std::fs::write(&args.output, &output.output)
                .with_context(|| format!("writing {}", args.output.display()))?;
            let report = serde_json::json!({
                "model": args.model,
                "input_hash": output.input_hash,
                "output_hash": output.output_hash,
                "device": format!("{device:?}"),
            });
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(())
}
