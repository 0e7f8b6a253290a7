//! `ciro job …` and `ciro model …`: the submitter's and the model owner's commands, on the
//! coordinator's typed client (`ciro_api`) and the chain crate.
//!
//! The chain is the authority: a job's model, fee, state and output commitment are read from
//! JobMgr, never taken from the coordinator; a downloaded output is accepted only when it
//! hashes to the on-chain `output_hash`, and a worker's receipt only when its account contract
//! accepts the signature (`is_valid_signature`) and it names this job's hashes. Results go to
//! stdout (a job id, a model id, a table), progress to stderr, so scripts can capture them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use ciro_api::coordinator::{
    CoordinatorClient, ErrorCode, JobDetails, JobState, ListJobs, ListModels, RequestSigner,
    SignedReceipt,
};
use ciro_api::snip29::PaymasterClient;
use ciro_api::wire::Digest;
use ciro_chain::account::{connect_with_key, is_valid_signature};
use ciro_chain::bindings::job_mgr;
use ciro_chain::cainome::cairo_serde::{ContractAddress, U256};
use ciro_chain::clients::{balance_of, u256, u256_from_digest, JobMgrClient};
use ciro_chain::gasless::{self, Payment};
use ciro_chain::manifest::Manifest;
use ciro_chain::sender::{SenderConfig, TxSender};
use ciro_chain::tx::{block_timestamp, call, TxOutcome};
use ciro_chain::RpcAccount;
use ciro_protocol::{contracts, TOKEN};
use ciro_service::{terminal_safe, AccountArgs, ChainArgs};
use clap::{Args, Subcommand};
use futures_util::StreamExt;
use starknet::accounts::Account;
use starknet::core::types::{BlockId, BlockTag, Call, EventFilter, Felt};
use starknet::providers::jsonrpc::HttpTransport;
use starknet::providers::{JsonRpcClient, Provider};
use starknet::signers::SigningKey;

/// The relayer's API key: from the environment only (a secret never goes on a command line).
const RELAYER_API_KEY_ENV: &str = "CIRO_RELAYER_API_KEY";

/// Where the network is, and who acts.
#[derive(Args, Clone)]
pub struct Connection {
    #[command(flatten)]
    pub chain: ChainArgs,
    #[command(flatten)]
    pub account: AccountArgs,
    /// The coordinator's base URL.
    #[arg(
        long,
        env = "CIRO_COORDINATOR_URL",
        default_value = "http://127.0.0.1:7070"
    )]
    pub coordinator: String,
}

/// The read-only commands' connection: the account is optional (public data needs none).
#[derive(Args, Clone)]
pub struct ReadConnection {
    #[command(flatten)]
    pub on: Connection,
}

#[derive(Subcommand)]
pub enum JobCommand {
    /// Upload an input and submit a job on a model (token approval and `submit_job` in one
    /// transaction, sent directly or, with --gasless, through the paymaster relayer); prints
    /// the job id.
    Submit(SubmitArgs),
    /// A job's chain state, which of its data the coordinator holds, and why it is not matched
    /// yet.
    Status(StatusArgs),
    /// Follow a job's state changes live until it reaches a final state (or --until).
    Watch(WatchArgs),
    /// Download a job's output, check it against the on-chain commitment (and, with
    /// --expect, against your own run of the model), write it, and show the worker's signed
    /// receipt.
    Result(ResultArgs),
    /// Take back a job no worker has been assigned yet (the fee is refunded).
    Cancel(IdArgs),
    /// Contest a completed job's result within its challenge window, paying its dispute bond;
    /// the evidence file is uploaded to the coordinator for the arbiter.
    Dispute(DisputeArgs),
    /// Download a disputed job's evidence, input and output into --out (as its arbiter, or
    /// its submitter, worker or disputer: each reads what it may), each checked against what
    /// the chain records; then decide with `ciro job resolve`.
    Evidence(EvidenceArgs),
    /// The arbiter decides a disputed job: with --worker-at-fault the worker is slashed and
    /// the submitter refunded, otherwise the result stands and the worker is paid.
    Resolve(ResolveArgs),
    /// List jobs, newest first (yours with an account, or --submitter's, or everyone's).
    List(ListArgs),
    /// How a finalized job's fee was split, from its `JobFinalized` event on chain: the
    /// worker's payout and the protocol fee (JSON).
    Settlement(SettlementArgs),
}

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Upload a TorchScript file and register it on chain as a model you own; prints its id.
    Add(ModelAddArgs),
    /// List the registered models.
    List(ReadConnection),
}

#[derive(Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    on: Connection,
    /// The model: its on-chain id, or the SHA-256 of its file (hex).
    #[arg(long)]
    model: String,
    /// The input tensors (safetensors). Two or more (`--input a --input b`, or `--input a b`,
    /// at most 1000) make one batch (JobMgr's `submit_batch`): one on-chain job whose
    /// lifecycle costs far less per input, run by one worker, paid or refunded as a whole.
    #[arg(long, required = true, num_args = 1..)]
    input: Vec<PathBuf>,
    /// The fee to escrow in all, in tokens (e.g. 1.5); default: the model's price (or the
    /// network's least fee, if higher) per input.
    #[arg(long)]
    fee: Option<String>,
    /// For a batch (two or more inputs): seconds after its assignment from which anyone may
    /// release it without a result, the network's assignment timeout to a day (default: the
    /// assignment timeout plus 5 s per input, at most a day). A single job takes the
    /// network's assignment timeout.
    #[arg(long)]
    release_after: Option<u64>,
    /// Seconds from now after which no result is accepted and the fee comes back.
    #[arg(long, default_value_t = 3_600)]
    deadline: u64,
    /// Send through the paymaster relayer: a sponsor pays the gas, the account needs no STRK.
    #[arg(long, requires = "relayer")]
    gasless: bool,
    /// The paymaster relayer's URL (SNIP-29); its API key, if it wants one, from
    /// CIRO_RELAYER_API_KEY.
    #[arg(long, env = "CIRO_RELAYER_URL")]
    relayer: Option<String>,
}

#[derive(Args)]
pub struct IdArgs {
    #[command(flatten)]
    on: Connection,
    /// The job's id.
    job: u64,
}

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    on: ReadConnection,
    /// The job's id.
    job: u64,
    /// Print the coordinator's JSON instead.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct WatchArgs {
    #[command(flatten)]
    on: ReadConnection,
    /// The job's id.
    job: u64,
    /// Stop once the job is in this state (queued, assigned, completed, disputed, finalized,
    /// cancelled, expired, refunded) or a final one.
    #[arg(long)]
    until: Option<String>,
    /// Give up after this many seconds (exit status 1).
    #[arg(long, default_value_t = 3_600)]
    timeout: u64,
}

#[derive(Args)]
pub struct ResultArgs {
    #[command(flatten)]
    on: Connection,
    /// The job's id.
    job: u64,
    /// Where to write the output (safetensors); for a batch, a directory that receives
    /// `NNNN.safetensors`, one per input in order.
    #[arg(long, short)]
    out: PathBuf,
    /// Your own run's output (safetensors): every tensor must match the worker's within
    /// --tolerance, or the command fails naming the first difference (then dispute). For a
    /// batch, a directory of `NNNN.safetensors`.
    #[arg(long)]
    expect: Option<PathBuf>,
    /// Largest absolute difference accepted by --expect.
    #[arg(long, default_value_t = 1e-4)]
    tolerance: f32,
    #[command(flatten)]
    download: DownloadArgs,
}

/// Bounds on what a download from the coordinator may cost (its bytes are checked against
/// the chain only once they are all in).
#[derive(Args)]
pub struct DownloadArgs {
    /// Most bytes one downloaded file may have.
    #[arg(long, env = "CIRO_MAX_DOWNLOAD_BYTES", default_value_t = 1 << 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_bytes: u64,
    /// Longest one download may take, in seconds.
    #[arg(long, env = "CIRO_DOWNLOAD_TIMEOUT_SECS", default_value_t = 1_800,
          value_parser = clap::value_parser!(u64).range(1..))]
    download_timeout_secs: u64,
}

impl DownloadArgs {
    /// Blob `digest` from the coordinator, within these bounds (the client checks that the
    /// bytes hash to the digest).
    async fn blob(&self, coordinator: &CoordinatorClient, digest: &Digest) -> Result<Vec<u8>> {
        let limit = Duration::from_secs(self.download_timeout_secs);
        let bytes = tokio::time::timeout(
            limit,
            coordinator.download_blob_within(digest, self.max_bytes),
        )
        .await
        .map_err(|_| anyhow::anyhow!("the download took longer than {limit:?}"))??;
        Ok(Vec::from(bytes))
    }
}

#[derive(Args)]
pub struct DisputeArgs {
    #[command(flatten)]
    on: Connection,
    /// The job's id.
    job: u64,
    /// The evidence (e.g. your own run's output); its SHA-256 is recorded on chain.
    #[arg(long)]
    evidence: PathBuf,
}

#[derive(Args)]
pub struct EvidenceArgs {
    #[command(flatten)]
    on: Connection,
    /// The job's id.
    job: u64,
    /// The directory to write `evidence`, `input.safetensors` and `output.safetensors` to
    /// (created if needed).
    #[arg(long, short)]
    out: PathBuf,
    #[command(flatten)]
    download: DownloadArgs,
}

#[derive(Args)]
pub struct ResolveArgs {
    #[command(flatten)]
    on: Connection,
    /// The job's id.
    job: u64,
    /// The worker's result was wrong: slash it and refund the submitter.
    #[arg(long)]
    worker_at_fault: bool,
    /// Share of the worker's stake slashed when at fault, in basis points (at most the
    /// network's maximum).
    #[arg(long, default_value_t = 1_000)]
    slash_bps: u16,
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    on: ReadConnection,
    /// Only this submitter's jobs (default: the account's, if one is given).
    #[arg(long)]
    submitter: Option<Felt>,
    /// Every submitter's jobs, even with an account.
    #[arg(long, conflicts_with = "submitter")]
    all: bool,
    /// Only jobs in this state.
    #[arg(long)]
    state: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

#[derive(Args)]
pub struct SettlementArgs {
    #[command(flatten)]
    on: ReadConnection,
    /// The job's id.
    job: u64,
}

#[derive(Args)]
pub struct ModelAddArgs {
    #[command(flatten)]
    on: Connection,
    /// The TorchScript file (torch.jit.save).
    file: PathBuf,
    /// Least fee of a job on it, in tokens (e.g. 0.5).
    #[arg(long)]
    price: String,
    /// Least GPU memory a worker must have, in MB (0: CPU workers too).
    #[arg(long, default_value_t = 0)]
    min_vram_mb: u32,
    /// Capability flags a worker must have (bits; see ciro_protocol::flags).
    #[arg(long, default_value_t = 0)]
    flags: u64,
    /// Least stake tier (0 to 3).
    #[arg(long, default_value_t = 0)]
    min_tier: u8,
    /// Least reputation score (0 to 10,000).
    #[arg(long, default_value_t = 0)]
    min_score: u32,
}

/// Everything a command talks to, as one account (or none).
struct Session {
    provider: JsonRpcClient<HttpTransport>,
    chain_id: Felt,
    jobs_address: Felt,
    /// The Paymaster, the only `Caller` a sponsored execution may name.
    paymaster: Option<Felt>,
    deploy_block: Option<u64>,
    token: Felt,
    coordinator: CoordinatorClient,
    me: Option<Me>,
}

/// The acting account.
struct Me {
    address: Felt,
    key: SigningKey,
    jobs: JobMgrClient<RpcAccount>,
    sender: Arc<TxSender<RpcAccount>>,
}

impl Session {
    async fn open(on: &Connection, with_account: bool) -> Result<Self> {
        let chain = on.chain.config()?;
        let provider = JsonRpcClient::new(HttpTransport::new(chain.rpc_url.clone()));
        let chain_id = provider
            .chain_id()
            .await
            .with_context(|| format!("reaching the chain node at {}", chain.rpc_url))?;
        let manifest = Manifest::read(&chain.manifest)?;
        let jobs_address = manifest.contract(contracts::JOB_MGR).with_context(|| {
            format!(
                "{} names no JobMgr: deploy first (`ciro deploy`) or pass --manifest",
                chain.manifest.display()
            )
        })?;
        let token = call(job_mgr::JobMgrReader::new(jobs_address, &provider).token())
            .await
            .context("reading JobMgr's payment token")?
            .0;
        let mut coordinator = CoordinatorClient::new(&on.coordinator)
            .with_context(|| format!("coordinator URL {}", on.coordinator))?;
        let given = on.account.devnet_account.is_some() || on.account.account_address.is_some();
        let me = if with_account || given {
            let source = on.account.source()?;
            let (account, key) = connect_with_key(&source, &chain.rpc_url, chain_id).await?;
            let address = account.address();
            let sender = Arc::new(TxSender::new(account, SenderConfig::default()));
            coordinator = coordinator.with_signer(RequestSigner::new(
                key.clone(),
                address,
                chain_id,
                jobs_address,
            ));
            Some(Me {
                address,
                key,
                jobs: JobMgrClient::new(jobs_address, sender.clone()),
                sender,
            })
        } else {
            None
        };
        Ok(Self {
            provider,
            chain_id,
            jobs_address,
            paymaster: manifest.contract(contracts::PAYMASTER).ok(),
            deploy_block: manifest.deploy_block,
            token,
            coordinator,
            me,
        })
    }

    fn me(&self) -> Result<&Me> {
        self.me
            .as_ref()
            .context("choose an account: --devnet-account N, or --account-address with its key")
    }

    fn reader(&self) -> job_mgr::JobMgrReader<&JsonRpcClient<HttpTransport>> {
        job_mgr::JobMgrReader::new(self.jobs_address, &self.provider)
    }

    async fn chain_job(&self, job_id: u64) -> Result<job_mgr::JobInfo> {
        let count = call(self.reader().job_count()).await?;
        ensure!(
            (1..=count).contains(&job_id),
            "no job {job_id} on chain (there are {count})"
        );
        Ok(call(self.reader().get_job(&job_id)).await?)
    }

    /// The chain's time as the next transaction sees it: the block being built (the latest
    /// block can be far older on a quiet chain, which would shorten a deadline counted from it
    /// or put it in the past).
    async fn now(&self) -> Result<u64> {
        Ok(block_timestamp(&self.provider, BlockId::Tag(BlockTag::PreConfirmed)).await?)
    }
}

/// `amount` (base units) as tokens, e.g. `1.500000`.
pub fn tokens(amount: u128) -> String {
    format!(
        "{}.{:06}",
        amount / TOKEN,
        (amount % TOKEN) / (TOKEN / 1_000_000)
    )
}

/// Tokens as text (`1.5`, `2`, `0.000001`) in base units.
pub fn parse_tokens(text: &str) -> Result<u128> {
    let text = text.trim();
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    ensure!(
        digits(whole) && fraction.is_none_or(|f| digits(f) && f.len() <= 18),
        "{text:?} is not an amount of tokens (e.g. 2 or 1.5, at most 18 decimals)"
    );
    let fraction = fraction.unwrap_or("");
    let scale = 10u128.pow(18 - fraction.len() as u32);
    let fraction: u128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse()?
    };
    whole
        .parse::<u128>()
        .ok()
        .and_then(|w| w.checked_mul(TOKEN))
        .and_then(|w| w.checked_add(fraction * scale))
        .with_context(|| format!("{text} tokens is too large"))
}

/// An amount the coordinator reported, as tokens.
fn api_tokens(amount: ciro_api::wire::U256) -> String {
    if amount.high() == 0 {
        tokens(amount.low())
    } else {
        "more than 2^128 units".to_owned()
    }
}

fn low(value: U256) -> Result<u128> {
    ensure!(value.high == 0, "an amount above 2^128 base units");
    Ok(value.low)
}

fn digest_of(value: U256) -> Digest {
    Digest::from_halves(value.high, value.low)
}

fn state_name(state: &job_mgr::JobState) -> &'static str {
    match state {
        job_mgr::JobState::Queued => "queued",
        job_mgr::JobState::Assigned => "assigned",
        job_mgr::JobState::Completed => "completed",
        job_mgr::JobState::Disputed => "disputed",
        job_mgr::JobState::Finalized => "finalized",
        job_mgr::JobState::Cancelled => "cancelled",
        job_mgr::JobState::Expired => "expired",
        job_mgr::JobState::Refunded => "refunded",
    }
}

fn parse_state(text: &str) -> Result<JobState> {
    serde_json::from_value(serde_json::Value::String(text.to_ascii_lowercase())).map_err(|_| {
        anyhow::anyhow!(
            "{text:?} is not a job state: queued, assigned, completed, disputed, finalized, \
             cancelled, expired or refunded"
        )
    })
}

fn api_state_name(state: JobState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{state:?}"))
}

/// A transaction's hash and fee, for the progress lines.
fn tx_line(outcome: &TxOutcome) -> String {
    let fri = u128::try_from(outcome.actual_fee().to_biguint()).unwrap_or(u128::MAX);
    format!(
        "tx {:#x} (fee {} STRK)",
        outcome.tx_hash,
        tokens(fri).trim_end_matches('0').trim_end_matches('.')
    )
}

/// Checks that `bytes` is a safetensors file of tensors; their names, dtypes and shapes.
fn check_safetensors(bytes: &[u8], what: &str) -> Result<Vec<String>> {
    let tensors = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| anyhow::anyhow!("{what} is not a safetensors file: {e:?}"))?;
    let mut described = Vec::new();
    for (name, view) in tensors.tensors() {
        described.push(format!(
            "{}: {:?} {:?}",
            terminal_safe(&name, false),
            view.dtype(),
            view.shape()
        ));
    }
    ensure!(!described.is_empty(), "{what} holds no tensor");
    described.sort();
    Ok(described)
}

/// The model `text` names: an id, or the hash of a registered model's file.
async fn resolve_model(s: &Session, text: &str) -> Result<u64> {
    // A file hash is 64 hex digits (which may all be decimal digits): never read it as an id.
    let hash_like = text.len() >= 64 || text.starts_with("0x");
    if let (false, Ok(id)) = (hash_like, text.parse::<u64>()) {
        return Ok(id);
    }
    let wanted: Digest = text.parse().map_err(|_| {
        anyhow::anyhow!("--model must be a model id or the 64-hex-digit SHA-256 of its file")
    })?;
    let count = call(s.reader().model_count()).await?;
    let mut found = Vec::new();
    for id in 1..=count {
        let model = call(s.reader().get_model(&id)).await?;
        if digest_of(model.model_hash) == wanted {
            found.push(Registered {
                id,
                active: model.active,
                owner: model.owner.0,
                // Anyone may register a file's hash at any price: one beyond u128 is shown as
                // the largest, not an error that stops every submission by hash.
                price: low(model.price).unwrap_or(u128::MAX),
            });
        }
    }
    choose_model(&found, &wanted)
}

/// A registered model whose file hash a submitter named.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Registered {
    id: u64,
    active: bool,
    owner: Felt,
    price: u128,
}

/// The model a file hash names: its one active registration (or, with none active, the last
/// one, which `submit` then reports as inactive). Anyone may register a file's hash again, at
/// any price and with requirements only its own worker meets; so with several active
/// registrations the submitter must choose by id rather than pay whichever came last.
fn choose_model(found: &[Registered], wanted: &Digest) -> Result<u64> {
    let active: Vec<&Registered> = found.iter().filter(|m| m.active).collect();
    match (active.as_slice(), found.last()) {
        ([one], _) => Ok(one.id),
        ([], Some(last)) => Ok(last.id),
        ([], None) => {
            bail!("no registered model has file hash {wanted}: register it with `ciro model add`")
        }
        (several, _) => {
            let listed: Vec<String> = several
                .iter()
                .map(|m| format!("{} (owner {:#x}, price {})", m.id, m.owner, tokens(m.price)))
                .collect();
            bail!(
                "{} active models have file hash {wanted}: {}; pass --model with the id of the one \
                 you mean (anyone may register a file's hash, at any price)",
                several.len(),
                listed.join(", ")
            )
        }
    }
}

pub async fn run_job(command: JobCommand) -> Result<()> {
    match command {
        JobCommand::Submit(args) => submit(args).await,
        JobCommand::Status(args) => status(args).await,
        JobCommand::Watch(args) => watch(args).await,
        JobCommand::Result(args) => result(args).await,
        JobCommand::Cancel(args) => cancel(args).await,
        JobCommand::Dispute(args) => dispute(args).await,
        JobCommand::Evidence(args) => evidence(args).await,
        JobCommand::Resolve(args) => resolve(args).await,
        JobCommand::List(args) => list(args).await,
        JobCommand::Settlement(args) => settlement(args).await,
    }
}

pub async fn run_model(command: ModelCommand) -> Result<()> {
    match command {
        ModelCommand::Add(args) => model_add(args).await,
        ModelCommand::List(args) => model_list(args).await,
    }
}

async fn submit(args: SubmitArgs) -> Result<()> {
    let s = Session::open(&args.on, true).await?;
    let me = s.me()?;
    let model_id = resolve_model(&s, &args.model).await?;
    let count = call(s.reader().model_count()).await?;
    ensure!(
        (1..=count).contains(&model_id),
        "no model {model_id} (there are {count}): `ciro model list` shows them"
    );
    let model = call(s.reader().get_model(&model_id)).await?;
    ensure!(
        model.active,
        "model {model_id} is inactive: its owner closed it to new jobs; choose another (`ciro model list`)"
    );
    let params = call(s.reader().get_params()).await?;
    let (price, min_fee) = (low(model.price)?, low(params.min_fee)?);
    let items = args.input.len() as u128;
    ensure!(
        items <= u128::from(MAX_BATCH_ITEMS),
        "{items} inputs: a batch holds at most {MAX_BATCH_ITEMS}; submit them as several"
    );
    let fee = match &args.fee {
        Some(text) => parse_tokens(text)?,
        None => price.max(min_fee).saturating_mul(items),
    };
    // (Per input, as JobMgr checks a batch: the fee divided by its inputs.)
    let per_input = fee / items;
    ensure!(
        per_input >= price,
        "a fee of {} is below model {model_id}'s price of {} per input: pass --fee {} or more",
        tokens(fee),
        tokens(price),
        tokens(price.saturating_mul(items))
    );
    ensure!(
        per_input >= min_fee,
        "a fee of {} is below the network's least fee of {} per input: pass --fee {} or more",
        tokens(fee),
        tokens(min_fee),
        tokens(min_fee.saturating_mul(items))
    );
    ensure!(
        args.deadline <= params.max_job_duration,
        "a deadline {} s ahead is beyond the network's longest of {} s: pass --deadline {} or less",
        args.deadline,
        params.max_job_duration,
        params.max_job_duration
    );
    ensure!(
        args.deadline > params.assignment_timeout,
        "a deadline {} s ahead leaves no worker time to run it (an assignment may last {} s): \
         pass --deadline {} or more",
        args.deadline,
        params.assignment_timeout,
        params.assignment_timeout + 60
    );
    if items > 1 {
        return submit_batch(&s, &args, model_id, &model, &params, fee).await;
    }
    let input = &args.input[0];
    let bytes =
        std::fs::read(input).with_context(|| format!("reading the input {}", input.display()))?;
    let tensors = check_safetensors(&bytes, &format!("the input {}", input.display()))?;
    let balance = low(balance_of(&s.provider, s.token, me.address).await?)?;
    ensure!(
        balance >= fee,
        "{:#x} holds {} of the payment token {:#x} and the fee is {}: get more tokens first",
        me.address,
        tokens(balance),
        s.token,
        tokens(fee)
    );

    let uploaded = s
        .coordinator
        .upload_blob(bytes)
        .await
        .context("uploading the input to the coordinator")?;
    eprintln!(
        "input     {} ({} bytes; {}) uploaded",
        uploaded.digest,
        uploaded.size,
        tensors.join(", ")
    );
    let deadline = s.now().await? + args.deadline;
    let calls = me.jobs.submit_job_calls(
        s.token,
        model_id,
        u256_from_digest(&uploaded.digest.0),
        u256(fee),
        deadline,
        // The model's requirements as read above: its owner lowering them meanwhile does not
        // reach this job.
        &ciro_chain::clients::pinned_options(&model.requirements),
    );
    let outcome = send_submission(&s, &args, calls).await?;
    // The transaction (the relayer's, when gasless) must hold this very submission.
    let job_id = submitted_job_id(
        &s,
        &outcome,
        &uploaded.digest,
        fee,
        model_id,
        1,
        "this input",
    )?;
    // The model as the chain has it (a coordinator's model list is not checked against the
    // chain: the file hash says which model the fee paid for).
    eprintln!(
        "submitted job {job_id} on model {model_id} (file {} on chain, owner {:#x}): fee {} \
         escrowed, deadline in {} s; {}",
        digest_of(model.model_hash),
        model.owner.0,
        tokens(fee),
        args.deadline,
        tx_line(&outcome)
    );
    println!("{job_id}");
    Ok(())
}

/// Sends a submission's calls: directly, or through the paymaster relayer with --gasless.
async fn send_submission(s: &Session, args: &SubmitArgs, calls: Vec<Call>) -> Result<TxOutcome> {
    let me = s.me()?;
    Ok(if args.gasless {
        let url = args
            .relayer
            .as_deref()
            .context("--gasless needs --relayer")?;
        let mut relayer =
            PaymasterClient::new(url).with_context(|| format!("relayer URL {url}"))?;
        if let Ok(key) = std::env::var(RELAYER_API_KEY_ENV) {
            relayer = relayer.with_api_key(key);
        }
        let sent = gasless::execute(
            &relayer,
            me.address,
            &me.key,
            s.chain_id,
            &calls,
            Payment::Sponsored {
                paymaster: s.paymaster,
            },
            gasless::chain_clock(&s.provider).await,
            gasless::DEFAULT_VALIDITY,
        )
        .await
        .context("sending the job through the paymaster relayer")?;
        eprintln!(
            "gasless   relayer sent tx {:#x}; waiting for it",
            sent.transaction_hash
        );
        me.sender.wait(sent.transaction_hash).await?
    } else {
        me.sender.execute(calls).await?
    })
}

/// The id of the job `outcome` submitted for this account: its `JobSubmitted` event naming
/// `input_hash` (an input, or a batch's manifest), `fee`, `model_id` and `items` (`what` names
/// the submission in the error when there is none).
fn submitted_job_id(
    s: &Session,
    outcome: &TxOutcome,
    input_hash: &Digest,
    fee: u128,
    model_id: u64,
    items: u32,
    what: &str,
) -> Result<u64> {
    let me = s.me()?;
    let input_hash = u256_from_digest(&input_hash.0);
    outcome
        .events_from(s.jobs_address)
        .into_iter()
        .filter_map(|e| job_mgr::Event::try_from(e).ok())
        .find_map(|e| match e {
            job_mgr::Event::JobSubmitted(j)
                if j.submitter.0 == me.address
                    && j.input_hash == input_hash
                    && j.fee == u256(fee)
                    && j.model_id == model_id
                    && j.items == items =>
            {
                Some(j.job_id)
            }
            _ => None,
        })
        .with_context(|| {
            format!(
                "transaction {:#x} holds no submission of {what} by {:#x}",
                outcome.tx_hash, me.address
            )
        })
}

/// Most inputs of a batch (JobMgr's bound).
const MAX_BATCH_ITEMS: u32 = 1000;

/// Transfers at a time (the coordinator checks at most 2 of an account's signed requests at
/// once).
const UPLOADS_AT_ONCE: usize = 2;

/// Uploads `bytes`, trying again a few times, a little later each, when the coordinator is
/// busy or limits the rate (a batch's many uploads meet its limits).
async fn upload_retrying(
    coordinator: &CoordinatorClient,
    bytes: Vec<u8>,
) -> Result<ciro_api::coordinator::BlobInfo, ciro_api::coordinator::ClientError> {
    let mut pause = Duration::from_millis(250);
    let mut tries = 0;
    loop {
        tries += 1;
        match coordinator.upload_blob(bytes.clone()).await {
            Err(e) if e.is_retryable() && tries < 6 => {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            other => return other,
        }
    }
}

/// `ciro job submit` of two or more inputs: one batch. Every input is checked and uploaded,
/// then the manifest (their digests in order), and only then is the fee escrowed, so a batch
/// is never paid for while its data is missing.
async fn submit_batch(
    s: &Session,
    args: &SubmitArgs,
    model_id: u64,
    model: &job_mgr::Model,
    params: &job_mgr::JobParams,
    fee: u128,
) -> Result<()> {
    let me = s.me()?;
    let items = u32::try_from(args.input.len()).context("too many inputs")?;
    let release_after = match args.release_after {
        Some(secs) => secs,
        None => (params.assignment_timeout + 5 * u64::from(items)).min(86_400),
    };
    ensure!(
        (params.assignment_timeout..=86_400).contains(&release_after),
        "--release-after is the network's assignment timeout ({} s) to a day (got \
         {release_after})",
        params.assignment_timeout
    );
    ensure!(
        release_after + 60 <= params.max_job_duration,
        "a release window of {release_after} s leaves no room within the network's longest \
         deadline of {} s: pass a smaller --release-after",
        params.max_job_duration
    );
    ensure!(
        args.deadline >= release_after + 60,
        "a deadline {} s ahead leaves a worker less than the batch's release window of {} s \
         (its {items} inputs): pass --deadline {} or more",
        args.deadline,
        release_after,
        release_after + 60
    );
    let balance = low(balance_of(&s.provider, s.token, me.address).await?)?;
    ensure!(
        balance >= fee,
        "{:#x} holds {} of the payment token {:#x} and the fee is {}: get more tokens first",
        me.address,
        tokens(balance),
        s.token,
        tokens(fee)
    );
    let mut inputs = Vec::with_capacity(args.input.len());
    for path in &args.input {
        let bytes =
            std::fs::read(path).with_context(|| format!("reading the input {}", path.display()))?;
        check_safetensors(&bytes, &format!("the input {}", path.display()))?;
        inputs.push(bytes);
    }
    let digests: Vec<Digest> = inputs.iter().map(|b| Digest::of(b)).collect();
    let uploads = inputs.into_iter().enumerate().map(|(i, bytes)| async move {
        upload_retrying(&s.coordinator, bytes)
            .await
            .with_context(|| format!("uploading input {i} ({})", args.input[i].display()))
    });
    let mut uploads = futures_util::stream::iter(uploads).buffer_unordered(UPLOADS_AT_ONCE);
    let mut uploaded_bytes = 0u64;
    while let Some(done) = uploads.next().await {
        uploaded_bytes += done?.size;
    }
    let manifest = upload_retrying(&s.coordinator, ciro_protocol::manifest_of(&digests))
        .await
        .context("uploading the batch's manifest")?
        .digest;
    eprintln!("inputs    {items} ({uploaded_bytes} bytes) uploaded; manifest {manifest}");
    let deadline = s.now().await? + args.deadline;
    let mut options = ciro_chain::clients::pinned_options(&model.requirements);
    options.release_after = release_after;
    let calls = me.jobs.submit_batch_calls(
        s.token,
        model_id,
        u256_from_digest(&manifest.0),
        items,
        u256(fee),
        deadline,
        &options,
    );
    let outcome = send_submission(s, args, calls).await?;
    let job_id = submitted_job_id(s, &outcome, &manifest, fee, model_id, items, "this batch")?;
    eprintln!(
        "submitted job {job_id}: a batch of {items} inputs on model {model_id} (file {} on \
         chain): fee {} escrowed ({} per input), deadline in {} s, released {} s after its \
         assignment if no result; {}",
        digest_of(model.model_hash),
        tokens(fee),
        tokens(fee / u128::from(items)),
        args.deadline,
        release_after,
        tx_line(&outcome)
    );
    println!("{job_id}");
    Ok(())
}

async fn job_details(s: &Session, job_id: u64) -> Result<JobDetails> {
    // The coordinator may not have indexed a job submitted a moment ago: wait a little.
    let mut tries = 0;
    loop {
        match s.coordinator.job(job_id).await {
            Err(e) if e.code() == Some(ErrorCode::JobNotFound) && tries < 20 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => {
                return other.with_context(|| format!("asking the coordinator for job {job_id}"))
            }
        }
    }
}

async fn status(args: StatusArgs) -> Result<()> {
    let s = Session::open(&args.on.on, false).await?;
    let details = job_details(&s, args.job).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&details)?);
        return Ok(());
    }
    // The job as JobMgr has it; the coordinator only for the data it holds and why the job
    // is not matched (its index can lag the chain by a tick, or be wrong).
    let info = s.chain_job(args.job).await?;
    let job = &info.job;
    let yes = |b: bool| if b { "yes" } else { "no" };
    println!(
        "job {}  {}  model {}  fee {}  submitter {:#x}",
        args.job,
        state_name(&job.state),
        job.model_id,
        tokens(low(job.fee)?),
        job.submitter.0
    );
    if job.worker.0 != Felt::ZERO {
        println!("worker {:#x}", job.worker.0);
    }
    if job.output_hash != u256(0) {
        println!("output {}", digest_of(job.output_hash));
    }
    if api_state_name(details.job.state) != state_name(&job.state) {
        println!(
            "the coordinator's index still shows it {} (it follows the chain within a tick)",
            api_state_name(details.job.state)
        );
    }
    println!(
        "data: model file {}, input {}, output {}, receipt {}",
        yes(details.data.model),
        yes(details.data.input),
        yes(details.data.output),
        yes(details.data.receipt)
    );
    if info.items > 1 {
        println!(
            "batch: {} inputs, {} uploaded by the submitter{}",
            info.items,
            details
                .data
                .items_uploaded
                .map_or_else(|| "an unknown number".to_owned(), |n| n.to_string()),
            details
                .data
                .outputs_missing
                .map(|n| format!("; {n} outputs of the worker's manifest not uploaded"))
                .unwrap_or_default()
        );
    }
    if let Some(unmatched) = &details.unmatched {
        println!(
            "not matched yet: {}",
            terminal_safe(&unmatched.message, false)
        );
    }
    Ok(())
}

async fn watch(args: WatchArgs) -> Result<()> {
    let until = args.until.as_deref().map(parse_state).transpose()?;
    let s = Session::open(&args.on.on, false).await?;
    job_details(&s, args.job).await?;
    let follow = async {
        let mut last = None;
        let mut pause = Duration::ZERO;
        loop {
            // A stream that ended without an event is opened again after a growing pause
            // (a coordinator closing every stream at once would otherwise keep this spinning).
            tokio::time::sleep(pause).await;
            pause = (pause * 2).clamp(Duration::from_millis(250), Duration::from_secs(10));
            // The stream replays the job's history, then follows it; after a dropped
            // connection it resumes from the last event seen.
            let mut events = s.coordinator.job_events(args.job, last).await?;
            while let Some(event) = events.next().await? {
                pause = Duration::ZERO;
                last = Some(event.sequence);
                let worker = event
                    .worker
                    .map(|w| format!("  worker {w:#x}"))
                    .unwrap_or_default();
                let output = event
                    .output_hash
                    .map(|o| format!("  output {o}"))
                    .unwrap_or_default();
                println!(
                    "job {}  {}  block {}  tx {:#x}{worker}{output}",
                    event.job_id,
                    api_state_name(event.state),
                    event.block_number,
                    event.transaction_hash
                );
                if event.state.is_final() || Some(event.state) == until {
                    return Ok::<_, anyhow::Error>(());
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(args.timeout), follow)
        .await
        .with_context(|| format!("job {} did not get there in {} s", args.job, args.timeout))?
}

async fn result(args: ResultArgs) -> Result<()> {
    let s = Session::open(&args.on, true).await?;
    let info = s.chain_job(args.job).await?;
    let job = &info.job;
    match job.state {
        job_mgr::JobState::Completed
        | job_mgr::JobState::Disputed
        | job_mgr::JobState::Finalized
        | job_mgr::JobState::Refunded => {}
        ref ended @ (job_mgr::JobState::Cancelled | job_mgr::JobState::Expired) => bail!(
            "job {} is {}: it ended without a result (its fee went back to its submitter)",
            args.job,
            state_name(ended)
        ),
        ref other => bail!(
            "job {} is {}: it has no result yet (`ciro job watch {}` follows it)",
            args.job,
            state_name(other),
            args.job
        ),
    }
    match job.state {
        job_mgr::JobState::Refunded => bail!(
            "job {}'s result was judged wrong: the arbiter found its worker at fault and your \
             fee was refunded; there is no result to trust",
            args.job
        ),
        job_mgr::JobState::Disputed => eprintln!(
            "warning: job {}'s result is disputed; the arbiter has not decided yet",
            args.job
        ),
        job_mgr::JobState::Completed => eprintln!(
            "note: job {}'s challenge window is open until {} (unix): check the output now \
             (--expect) and dispute it before then if it is wrong",
            args.job,
            job.completed_at + info.terms.challenge_window
        ),
        _ => {}
    }
    if info.items > 1 {
        return batch_result(&s, &args, &info).await;
    }
    // The reference is read before the output is written: `--out` may name the same file.
    let reference = match &args.expect {
        Some(path) => Some((
            path,
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        )),
        None => None,
    };
    let committed = digest_of(job.output_hash);
    // The client checks that the bytes hash to the digest asked for: the on-chain one.
    let bytes = args
        .download
        .blob(&s.coordinator, &committed)
        .await
        .with_context(|| format!("downloading job {}'s output {committed}", args.job))?;
    ensure!(
        Digest::of(&bytes) == committed,
        "the output does not hash to the on-chain commitment {committed}"
    );
    let tensors = check_safetensors(&bytes, "the output")?;
    std::fs::write(&args.out, &bytes).with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "output    {committed} = on-chain output_hash of job {} ({} bytes; {}) written to {}",
        args.job,
        bytes.len(),
        tensors.join(", "),
        args.out.display()
    );
    let worker = job.worker.0;
    match s.coordinator.receipt(args.job).await {
        Ok(receipt) => {
            check_receipt(&s, &info, &receipt).await?;
            let r = &receipt.receipt;
            println!(
                "receipt   signed by worker {worker:#x} (checked by its account contract): \
                 device {}, libtorch {}, CUDA {}, deterministic {} (seed {}), model load {} ms, \
                 inference {} ms",
                terminal_safe(&r.device, false),
                terminal_safe(&r.libtorch_version, false),
                if r.cuda_version.is_empty() {
                    "none".into()
                } else {
                    terminal_safe(&r.cuda_version, false)
                },
                r.deterministic,
                r.seed,
                r.model_load_ms,
                r.inference_ms
            );
        }
        Err(e) if e.code() == Some(ErrorCode::ReceiptNotFound) => {
            println!("receipt   none: worker {worker:#x} uploaded no signed receipt");
        }
        Err(e) => return Err(e).context("fetching the worker's receipt"),
    }
    if let Some((expected, mine)) = &reference {
        compare(&bytes, mine, args.tolerance).with_context(|| {
            format!(
                "job {}'s output differs from {}: contest it with `ciro job dispute {} --evidence {}` \
                 before its challenge window closes",
                args.job,
                expected.display(),
                args.job,
                expected.display()
            )
        })?;
        println!(
            "expected  matches {} within {}",
            expected.display(),
            args.tolerance
        );
    }
    Ok(())
}

/// `ciro job result` of a batch: `--out` is a directory that receives `NNNN.safetensors`, one
/// per input in the manifest's order, each checked against the output manifest, which is
/// checked against the on-chain commitment; `--expect` a directory of the same names.
async fn batch_result(s: &Session, args: &ResultArgs, info: &job_mgr::JobInfo) -> Result<()> {
    let items = u64::from(info.items);
    let committed = digest_of(info.job.output_hash);
    let manifest = args
        .download
        .blob(&s.coordinator, &committed)
        .await
        .with_context(|| format!("downloading job {}'s output manifest {committed}", args.job))?;
    ensure!(
        Digest::of(&manifest) == committed,
        "the output manifest does not hash to the on-chain commitment {committed}"
    );
    let outputs = ciro_protocol::parse_manifest(&manifest, items).with_context(|| {
        format!(
            "the committed output manifest is {} bytes, not {items} digests of 32: the worker \
             committed no valid batch result; contest it with `ciro job dispute {}`",
            manifest.len(),
            args.job
        )
    })?;
    // The references are read before any output is written: `--out` may name the same
    // directory.
    let references = match &args.expect {
        Some(dir) => Some(
            (0..outputs.len())
                .map(|i| {
                    let path = dir.join(format!("{i:04}.safetensors"));
                    std::fs::read(&path)
                        .with_context(|| format!("reading {}", path.display()))
                        .map(|bytes| (path, bytes))
                })
                .collect::<Result<Vec<_>>>()?,
        ),
        None => None,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating the directory {}", args.out.display()))?;
    let contest = format!(
        "if the worker never uploaded them, contest the batch with `ciro job dispute {}`",
        args.job
    );
    let usage = ItemUse {
        tensors: true,
        keep: references.is_some(),
        hint: Some(&contest),
    };
    let written = download_items(
        s,
        args.job,
        Side::Outputs,
        &outputs,
        &args.out,
        &args.download,
        usage,
    )
    .await?;
    println!(
        "outputs   {items} of batch job {}: manifest {committed} = on-chain output_hash, each \
         output checked against it, written to {}/NNNN.safetensors",
        args.job,
        args.out.display()
    );
    match s.coordinator.receipt(args.job).await {
        Ok(receipt) => {
            check_receipt(s, info, &receipt).await?;
            println!(
                "receipt   signed by worker {:#x} over the input and output manifests \
                 (checked by its account contract): inference {} ms in all",
                info.job.worker.0, receipt.receipt.inference_ms
            );
        }
        Err(e) if e.code() == Some(ErrorCode::ReceiptNotFound) => {
            println!(
                "receipt   none: worker {:#x} uploaded no signed receipt",
                info.job.worker.0
            );
        }
        Err(e) => return Err(e).context("fetching the worker's receipt"),
    }
    if let (Some(dir), Some(references)) = (&args.expect, &references) {
        for (i, (bytes, (path, mine))) in written.iter().zip(references).enumerate() {
            compare(bytes, mine, args.tolerance).with_context(|| {
                format!(
                    "output {i} of job {} differs from {}: contest the batch with `ciro job \
                     dispute {} --evidence {}` before its challenge window closes",
                    args.job,
                    path.display(),
                    args.job,
                    path.display()
                )
            })?;
        }
        println!(
            "expected  all {items} match {}/NNNN.safetensors within {}",
            dir.display(),
            args.tolerance
        );
    }
    Ok(())
}

/// A batch's inputs or outputs.
#[derive(Clone, Copy)]
enum Side {
    Inputs,
    Outputs,
}

/// What [`download_items`] does with each item beyond checking its digest.
struct ItemUse<'a> {
    /// Refuse an item that is not a tensor file (a result; evidence is written as it is).
    tensors: bool,
    /// Return the items (else only written: a batch may hold gigabytes).
    keep: bool,
    /// What to do when the items are not all there, added to that error.
    hint: Option<&'a str>,
}

/// Batch `job_id`'s inputs or outputs, listed by `digests` (its manifest, checked against the
/// chain), in one signed request: each checked against its digest (and as a tensor file, as
/// `usage` says) and written to `dir/NNNN.safetensors`. A transfer that breaks off resumes at
/// the first item it did not bring (three tries without progress); `download`'s time limit
/// bounds each item.
async fn download_items(
    s: &Session,
    job_id: u64,
    side: Side,
    digests: &[Digest],
    dir: &Path,
    download: &DownloadArgs,
    usage: ItemUse<'_>,
) -> Result<Vec<Vec<u8>>> {
    let what = match side {
        Side::Inputs => "input",
        Side::Outputs => "output",
    };
    let limit = Duration::from_secs(download.download_timeout_secs);
    let timed_out = || ciro_api::coordinator::ClientError::Stalled {
        url: format!("job {job_id}'s {what}s"),
        reason: format!("an {what} took longer than {limit:?}"),
    };
    let hinted = |error: anyhow::Error| match usage.hint {
        Some(hint) => error.context(hint.to_owned()),
        None => error,
    };
    let mut written: Vec<Vec<u8>> = Vec::new();
    let mut done = 0usize;
    let mut tries = 0;
    while done < digests.len() {
        let from = done as u64;
        let open = async {
            match side {
                Side::Inputs => s.coordinator.open_batch_inputs(job_id, from).await,
                Side::Outputs => s.coordinator.open_batch_outputs(job_id, from).await,
            }
        };
        let opened = tokio::time::timeout(limit, open)
            .await
            .unwrap_or_else(|_| Err(timed_out()));
        let broke = match opened {
            Err(e) => Some(e),
            Ok(mut items) => loop {
                let i = done;
                let Some(digest) = digests.get(i) else {
                    break None;
                };
                let next = tokio::time::timeout(limit, items.next_item(download.max_bytes))
                    .await
                    .unwrap_or_else(|_| Err(timed_out()));
                match next {
                    Ok(Some(bytes)) => {
                        ensure!(
                            Digest::of(&bytes) == *digest,
                            "{what} {i} does not hash to its manifest's digest {digest}"
                        );
                        if usage.tensors {
                            check_safetensors(&bytes, &format!("{what} {i}"))?;
                        }
                        let path = dir.join(format!("{i:04}.safetensors"));
                        std::fs::write(&path, &bytes)
                            .with_context(|| format!("writing {}", path.display()))?;
                        if usage.keep {
                            written.push(bytes.to_vec());
                        }
                        done += 1;
                        tries = 0;
                    }
                    Ok(None) => {
                        return Err(hinted(anyhow::anyhow!(
                            "the coordinator sent {i} of job {job_id}'s {} {what}s",
                            digests.len()
                        )))
                    }
                    Err(e) => break Some(e),
                }
            },
        };
        let Some(broke) = broke else { break };
        if matches!(
            broke.code(),
            Some(ErrorCode::NotFound | ErrorCode::MethodNotAllowed)
        ) {
            return Err(anyhow::Error::new(broke).context(format!(
                "the coordinator does not serve a batch's {what}s in one request (it predates \
                 them): upgrade it, or read each {what} the manifest lists with GET /v1/blobs"
            )));
        }
        tries += 1;
        if !broke.is_retryable() || tries >= 3 {
            return Err(hinted(anyhow::Error::new(broke).context(format!(
                "downloading job {job_id}'s {what}s from {what} {done} on"
            ))));
        }
        tokio::time::sleep(Duration::from_millis(500 * tries)).await;
    }
    Ok(written)
}

/// Checks a receipt: it names this JobMgr, job, worker and hashes, and the worker's account
/// contract accepts its signature.
async fn check_receipt(s: &Session, info: &job_mgr::JobInfo, signed: &SignedReceipt) -> Result<()> {
    let r = &signed.receipt;
    let job = &info.job;
    ensure!(
        r.job_manager == s.jobs_address
            && r.job_id == info.job_id
            && r.worker == job.worker.0
            && r.input_hash == digest_of(job.input_hash)
            && r.output_hash == digest_of(job.output_hash),
        "the receipt does not describe job {}'s on-chain worker and hashes",
        info.job_id
    );
    let model = call(s.reader().get_model(&job.model_id)).await?;
    ensure!(
        r.model_hash == digest_of(model.model_hash),
        "the receipt names another model file than model {}",
        job.model_id
    );
    let valid = is_valid_signature(
        &s.provider,
        r.worker,
        r.message_hash(s.chain_id),
        &signed.signature,
    )
    .await?;
    ensure!(
        valid,
        "the receipt's signature is not accepted by worker {:#x}'s account",
        r.worker
    );
    Ok(())
}

/// A floating-point tensor's elements (F64, F32, F16 or BF16, little-endian) as f64; `None`
/// for any other dtype.
fn float_elements(tensor: &safetensors::tensor::TensorView<'_>) -> Option<Vec<f64>> {
    use safetensors::Dtype;
    let data = tensor.data();
    Some(match tensor.dtype() {
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|c| c.try_into().map_or(f64::NAN, f64::from_le_bytes))
            .collect(),
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| {
                c.try_into()
                    .map_or(f64::NAN, |b| f64::from(f32::from_le_bytes(b)))
            })
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|c| f64::from(half::f16::from_le_bytes([c[0], c[1]])))
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|c| f64::from(half::bf16::from_le_bytes([c[0], c[1]])))
            .collect(),
        _ => return None,
    })
}

/// Every tensor of `expected` is in `actual` with the same dtype and shape; floating-point
/// elements within `tolerance` of each other, any other dtype's bytes equal.
fn compare(actual: &[u8], expected: &[u8], tolerance: f32) -> Result<()> {
    ensure!(
        tolerance.is_finite() && tolerance >= 0.0,
        "--tolerance must be a finite number of at least 0, not {tolerance}"
    );
    let actual = safetensors::SafeTensors::deserialize(actual)
        .map_err(|e| anyhow::anyhow!("the output is not safetensors: {e:?}"))?;
    let expected = safetensors::SafeTensors::deserialize(expected)
        .map_err(|e| anyhow::anyhow!("the expected file is not safetensors: {e:?}"))?;
    let names = expected.names();
    ensure!(!names.is_empty(), "the expected file holds no tensor");
    for name in names {
        let want = expected.tensor(name)?;
        let got = actual
            .tensor(name)
            .map_err(|_| anyhow::anyhow!("the output has no tensor {name:?}"))?;
        ensure!(
            got.dtype() == want.dtype() && got.shape() == want.shape(),
            "tensor {name:?} is {:?} {:?}, expected {:?} {:?}",
            got.dtype(),
            got.shape(),
            want.dtype(),
            want.shape()
        );
        match (float_elements(&got), float_elements(&want)) {
            (Some(g), Some(w)) => {
                let within = f64::from(tolerance);
                if let Some((i, (a, b))) = g.iter().zip(&w).enumerate().find(|(_, (a, b))| {
                    // Equal values (infinities included) match; a NaN never does.
                    let d = (*a - *b).abs();
                    *a != *b && (d.is_nan() || d > within)
                }) {
                    bail!(
                        "tensor {name:?} element {i} is {a}, expected {b} (tolerance {tolerance})"
                    );
                }
            }
            // Integers and booleans: exactly.
            _ => ensure!(got.data() == want.data(), "tensor {name:?} differs"),
        }
    }
    Ok(())
}

async fn cancel(args: IdArgs) -> Result<()> {
    let s = Session::open(&args.on, true).await?;
    let me = s.me()?;
    let info = s.chain_job(args.job).await?;
    ensure!(
        info.job.submitter.0 == me.address,
        "job {} is {:#x}'s, not yours: only its submitter may cancel it",
        args.job,
        info.job.submitter.0
    );
    ensure!(
        info.job.state == job_mgr::JobState::Queued,
        "job {} is {}: only a queued job (no worker yet) can be cancelled",
        args.job,
        state_name(&info.job.state)
    );
    let outcome = me.jobs.cancel_job(args.job).await?;
    println!(
        "cancelled job {}: {} refunded; {}",
        args.job,
        tokens(low(info.job.fee)?),
        tx_line(&outcome)
    );
    Ok(())
}

async fn dispute(args: DisputeArgs) -> Result<()> {
    let s = Session::open(&args.on, true).await?;
    let me = s.me()?;
    let info = s.chain_job(args.job).await?;
    ensure!(
        info.job.state == job_mgr::JobState::Completed,
        "job {} is {}: only a completed job, within its challenge window, can be disputed",
        args.job,
        state_name(&info.job.state)
    );
    let window = info.terms.challenge_window;
    let closes = info.job.completed_at + window;
    let now = s.now().await?;
    ensure!(
        now < closes,
        "job {}'s challenge window closed {} s ago",
        args.job,
        now - closes
    );
    let bond = low(info.dispute_bond)?;
    let balance = low(balance_of(&s.provider, s.token, me.address).await?)?;
    ensure!(
        balance >= bond,
        "a dispute of job {} costs a bond of {} and {:#x} holds {}",
        args.job,
        tokens(bond),
        me.address,
        tokens(balance)
    );
    let evidence = std::fs::read(&args.evidence)
        .with_context(|| format!("reading {}", args.evidence.display()))?;
    let uploaded = s
        .coordinator
        .upload_blob(evidence)
        .await
        .context("uploading the evidence to the coordinator")?;
    // The chain records a felt: the digest's first 31 bytes (the full digest names the blob).
    let evidence_hash = Felt::from_bytes_be_slice(&uploaded.digest.0[..31]);
    let outcome = me
        .jobs
        .open_dispute(s.token, args.job, evidence_hash, u256(bond))
        .await?;
    println!(
        "disputed job {}: bond {} paid, evidence {} (on chain {evidence_hash:#x}); the arbiter \
         decides within its window; {}",
        args.job,
        tokens(bond),
        uploaded.digest,
        tx_line(&outcome)
    );
    Ok(())
}

/// How long `ciro job evidence` waits for the coordinator to index a dispute the chain shows.
const INDEX_LAG_WAIT: Duration = Duration::from_secs(30);

async fn evidence(args: EvidenceArgs) -> Result<()> {
    let s = Session::open(&args.on, true).await?;
    s.me()?;
    let info = s.chain_job(args.job).await?;
    ensure!(
        info.dispute.disputer.0 != Felt::ZERO,
        "job {} is {} and was never disputed: it has no evidence",
        args.job,
        state_name(&info.job.state)
    );
    if info.job.state != job_mgr::JobState::Disputed {
        eprintln!(
            "note: job {}'s dispute was decided (it is {}): its data may be read only while it \
             is disputed",
            args.job,
            state_name(&info.job.state)
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    // The coordinator's index follows the chain a tick or two behind: a dispute the chain
    // shows may not be indexed yet (and until it is, its data is not readable through it).
    let waited = std::time::Instant::now();
    let found = loop {
        match s.coordinator.job_evidence(args.job).await {
            Err(e)
                if e.code() == Some(ErrorCode::InvalidState)
                    && waited.elapsed() < INDEX_LAG_WAIT =>
            {
                tokio::time::sleep(Duration::from_millis(500)).await
            }
            found => {
                break found.with_context(|| {
                    format!("finding job {}'s evidence at the coordinator", args.job)
                })?
            }
        }
    };
    // The chain records the evidence's first 31 bytes: the coordinator's blob must begin so.
    ensure!(
        Felt::from_bytes_be_slice(&found.digest.0[..31]) == info.dispute.evidence_hash,
        "the coordinator names evidence {} for job {}, which is not the {:#x} its dispute \
         records",
        found.digest,
        args.job,
        info.dispute.evidence_hash
    );
    // A batch's input and output are its manifests; its items follow them.
    let batch = info.items > 1;
    let (input_name, output_name) = if batch {
        ("input.manifest", "output.manifest")
    } else {
        ("input.safetensors", "output.safetensors")
    };
    let files = [
        ("evidence", "evidence", found.digest),
        ("input", input_name, digest_of(info.job.input_hash)),
        ("output", output_name, digest_of(info.job.output_hash)),
    ];
    let mut refused = Vec::new();
    let mut manifests = Vec::new();
    for (what, name, digest) in files {
        // The client checks that the bytes hash to the digest asked for.
        let bytes = match args.download.blob(&s.coordinator, &digest).await {
            Ok(bytes) => bytes,
            Err(error) => {
                eprintln!(
                    "{what:<9} {digest}: {}",
                    terminal_safe(&format!("{error:#}"), false)
                );
                refused.push(what);
                continue;
            }
        };
        let path = args.out.join(name);
        std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
        println!(
            "{what:<9} {digest} ({} bytes) written to {}",
            bytes.len(),
            path.display()
        );
        if what != "evidence" {
            manifests.push((what, bytes));
        }
    }
    if batch {
        let items = u64::from(info.items);
        for (what, manifest) in &manifests {
            let Some(digests) = ciro_protocol::parse_manifest(manifest, items) else {
                eprintln!(
                    "{what:<9} the manifest is {} bytes, not {items} digests of 32: no items",
                    manifest.len()
                );
                refused.push(*what);
                continue;
            };
            let (side, dir) = if *what == "input" {
                (Side::Inputs, args.out.join("inputs"))
            } else {
                (Side::Outputs, args.out.join("outputs"))
            };
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            // Written as they are: a cheater's output need not be a tensor file, and the
            // arbiter needs it all the same.
            let usage = ItemUse {
                tensors: false,
                keep: false,
                hint: None,
            };
            match download_items(&s, args.job, side, &digests, &dir, &args.download, usage).await
            {
                Ok(_) => println!(
                    "{what:<9} {items} items, each checked against the manifest, written to {}/NNNN.safetensors",
                    dir.display()
                ),
                Err(error) => {
                    eprintln!(
                        "{what:<9} items: {}",
                        terminal_safe(&format!("{error:#}"), false)
                    );
                    refused.push(*what);
                }
            }
        }
    }
    ensure!(
        refused.is_empty(),
        "job {}'s {} could not be downloaded (above)",
        args.job,
        refused.join(" and ")
    );
    Ok(())
}

async fn resolve(args: ResolveArgs) -> Result<()> {
    let s = Session::open(&args.on, true).await?;
    let me = s.me()?;
    let info = s.chain_job(args.job).await?;
    ensure!(
        info.job.state == job_mgr::JobState::Disputed,
        "job {} is {}: only a disputed job can be resolved",
        args.job,
        state_name(&info.job.state)
    );
    let arbiter = starknet::core::utils::cairo_short_string_to_felt(ciro_protocol::roles::ARBITER)?;
    ensure!(
        call(s.reader().has_role(&arbiter, &ContractAddress(me.address))).await?,
        "{:#x} is not an ARBITER of JobMgr: only an arbiter decides disputes",
        me.address
    );
    let outcome = me
        .jobs
        .resolve_dispute(args.job, args.worker_at_fault, args.slash_bps)
        .await?;
    let after = s.chain_job(args.job).await?;
    println!(
        "resolved job {}: worker {:#x} {}; the job is now {}; {}",
        args.job,
        info.job.worker.0,
        if args.worker_at_fault {
            format!("at fault, {} bps of its stake slashed", args.slash_bps)
        } else {
            "was right and is paid".to_owned()
        },
        state_name(&after.job.state),
        tx_line(&outcome)
    );
    Ok(())
}

async fn list(args: ListArgs) -> Result<()> {
    let s = Session::open(&args.on.on, false).await?;
    let submitter = match (args.submitter, args.all, &s.me) {
        (Some(address), _, _) => Some(address),
        (None, false, Some(me)) => Some(me.address),
        _ => None,
    };
    let state = args.state.as_deref().map(parse_state).transpose()?;
    let mut query = ListJobs {
        submitter,
        worker: None,
        state,
        cursor: None,
        limit: Some(args.limit.min(100)),
    };
    println!(
        "{:>6}  {:<10}  {:>5}  {:>12}  {:<12}  output",
        "job", "state", "model", "fee", "worker"
    );
    let mut shown = 0;
    loop {
        query.limit = Some(args.limit.saturating_sub(shown).clamp(1, 100));
        let page = s.coordinator.list_jobs(&query).await?;
        for job in page
            .items
            .iter()
            .take(args.limit.saturating_sub(shown) as usize)
        {
            let worker = job
                .worker
                .map(|w| {
                    let text = format!("{w:#x}");
                    format!("{}…", &text[..text.len().min(11)])
                })
                .unwrap_or_else(|| "-".into());
            let output = job
                .output_hash
                .map(|o| o.to_string()[..16].to_owned() + "…")
                .unwrap_or_else(|| "-".into());
            println!(
                "{:>6}  {:<10}  {:>5}  {:>12}  {:<12}  {output}",
                job.job_id,
                api_state_name(job.state),
                job.model_id,
                api_tokens(job.fee),
                worker
            );
            shown += 1;
        }
        // An empty page or a cursor seen before ends the listing (a coordinator answering so
        // would keep it going for ever).
        match page.next_cursor {
            Some(cursor)
                if shown < args.limit
                    && !page.items.is_empty()
                    && query.cursor.as_ref() != Some(&cursor) =>
            {
                query.cursor = Some(cursor)
            }
            _ => break,
        }
    }
    Ok(())
}

async fn settlement(args: SettlementArgs) -> Result<()> {
    let s = Session::open(&args.on.on, false).await?;
    let info = s.chain_job(args.job).await?;
    ensure!(
        info.job.state == job_mgr::JobState::Finalized,
        "job {} is {}: only a finalized job has paid its worker",
        args.job,
        state_name(&info.job.state)
    );
    let selector = starknet::core::utils::get_selector_from_name("JobFinalized")?;
    let filter = EventFilter {
        from_block: s.deploy_block.map(BlockId::Number),
        to_block: Some(BlockId::Tag(BlockTag::Latest)),
        address: Some(s.jobs_address),
        keys: Some(vec![vec![selector], vec![Felt::from(args.job)]]),
    };
    let mut token = None;
    loop {
        let page = s.provider.get_events(filter.clone(), token, 100).await?;
        for emitted in page.events {
            let event = starknet::core::types::Event {
                from_address: emitted.from_address,
                keys: emitted.keys,
                data: emitted.data,
            };
            if let Ok(job_mgr::Event::JobFinalized(f)) = job_mgr::Event::try_from(&event) {
                if f.job_id == args.job {
                    let (payout, fee) = (low(f.payout)?, low(f.protocol_fee)?);
                    println!(
                        "{}",
                        serde_json::json!({
                            "job_id": f.job_id,
                            "worker": format!("{:#x}", f.worker.0),
                            "fee": low(info.job.fee)?.to_string(),
                            "payout": payout.to_string(),
                            "protocol_fee": fee.to_string(),
                            "transaction_hash": format!("{:#x}", emitted.transaction_hash),
                        })
                    );
                    return Ok(());
                }
            }
        }
        match page.continuation_token {
            Some(next) => token = Some(next),
            None => bail!("no JobFinalized event of job {} on chain", args.job),
        }
    }
}

async fn model_add(args: ModelAddArgs) -> Result<()> {
    let s = Session::open(&args.on, true).await?;
    let me = s.me()?;
    let price = parse_tokens(&args.price)?;
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("reading the model file {}", args.file.display()))?;
    // A TorchScript file is a zip archive (torch.jit.save): refuse anything else up front.
    ensure!(
        bytes.starts_with(b"PK\x03\x04"),
        "{} is not a TorchScript file (torch.jit.save writes a zip archive)",
        args.file.display()
    );
    let uploaded = s
        .coordinator
        .upload_blob(bytes)
        .await
        .context("uploading the model file to the coordinator")?;
    eprintln!(
        "model file {} ({} bytes) uploaded",
        uploaded.digest, uploaded.size
    );
    let requirements = job_mgr::Requirements {
        min_vram_mb: args.min_vram_mb,
        required_flags: args.flags,
        min_stake_tier: args.min_tier,
        min_score: args.min_score,
    };
    let (model_id, outcome) = me
        .jobs
        .register_model(
            u256_from_digest(&uploaded.digest.0),
            &requirements,
            u256(price),
        )
        .await?;
    eprintln!(
        "registered model {model_id}: price {}, owner {:#x}; {}",
        tokens(price),
        me.address,
        tx_line(&outcome)
    );
    println!("{model_id}");
    Ok(())
}

async fn model_list(args: ReadConnection) -> Result<()> {
    let s = Session::open(&args.on, false).await?;
    let mut query = ListModels {
        active: None,
        cursor: None,
        limit: Some(100),
    };
    println!(
        "{:>5}  {:<6}  {:>12}  {:<5}  {:<64}  requirements",
        "model", "active", "price", "file", "model_hash"
    );
    let mut seen = std::collections::HashSet::new();
    let mut last_id = 0;
    loop {
        let page = s.coordinator.list_models(&query).await?;
        for m in &page.items {
            println!(
                "{:>5}  {:<6}  {:>12}  {:<5}  {}  vram>={} MB flags={:#x} tier>={} score>={}",
                m.model_id,
                m.active,
                api_tokens(m.price),
                if m.file_available { "yes" } else { "no" },
                m.model_hash,
                m.requirements.min_vram_mb,
                m.requirements.required_flags,
                m.requirements.min_stake_tier,
                m.requirements.min_score
            );
        }
        // A page that is empty, or a cursor seen before, ends the listing (a coordinator
        // answering so would keep it going for ever), as does a model id not above the last.
        let ascending = page.items.iter().all(|m| m.model_id > last_id);
        last_id = page
            .items
            .iter()
            .map(|m| m.model_id)
            .max()
            .unwrap_or(last_id);
        match page.next_cursor {
            Some(cursor) if !page.items.is_empty() && ascending && seen.insert(cursor.clone()) => {
                query.cursor = Some(cursor)
            }
            _ => break,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_file_hash_names_its_one_active_model_and_several_must_be_chosen_by_id() {
        let wanted = Digest::of(b"model file");
        let model = |id, active, owner: u64, price| Registered {
            id,
            active,
            owner: Felt::from(owner),
            price,
        };
        assert_eq!(choose_model(&[model(3, true, 1, 5)], &wanted).unwrap(), 3);
        // An inactive registration does not count; with none active, the last is reported.
        assert_eq!(
            choose_model(&[model(3, true, 1, 5), model(4, false, 2, 9)], &wanted).unwrap(),
            3
        );
        assert_eq!(
            choose_model(&[model(3, false, 1, 5), model(4, false, 2, 9)], &wanted).unwrap(),
            4
        );
        assert!(choose_model(&[], &wanted)
            .unwrap_err()
            .to_string()
            .contains("no registered model"));
        // A second active registration of the same file (anyone's, at any price): refused,
        // both listed, instead of taking the newest.
        let error = choose_model(&[model(3, true, 1, 5), model(4, true, 0xbad, 900)], &wanted)
            .unwrap_err()
            .to_string();
        assert!(error.contains("2 active models"), "{error}");
        assert!(
            error.contains("3 (owner 0x1") && error.contains("4 (owner 0xbad"),
            "{error}"
        );
    }

    use super::*;

    #[test]
    fn token_amounts_round_trip() {
        assert_eq!(parse_tokens("2").unwrap(), 2 * TOKEN);
        assert_eq!(parse_tokens("1.5").unwrap(), 3 * TOKEN / 2);
        assert_eq!(parse_tokens("0.000000000000000001").unwrap(), 1);
        assert_eq!(tokens(3 * TOKEN / 2), "1.500000");
        for bad in ["", "1.", ".5", "-1", "1e3", "1.0000000000000000001", "abc"] {
            assert!(parse_tokens(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_tokens("1000000000000000000000").is_err(), "overflow");
    }

    fn safetensors_of(values: &[f32]) -> Vec<u8> {
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        safetensors_raw("F32", values.len(), &data)
    }

    fn safetensors_raw(dtype: &str, len: usize, data: &[u8]) -> Vec<u8> {
        let header = format!(
            r#"{{"output":{{"dtype":"{dtype}","shape":[{len}],"data_offsets":[0,{}]}}}}"#,
            data.len()
        );
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(data);
        bytes
    }

    #[test]
    fn half_precision_outputs_are_compared_as_numbers_not_bytes() {
        let f16 = |v: &[f32]| -> Vec<u8> {
            let data: Vec<u8> = v
                .iter()
                .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
                .collect();
            safetensors_raw("F16", v.len(), &data)
        };
        let bf16 = |v: &[f32]| -> Vec<u8> {
            let data: Vec<u8> = v
                .iter()
                .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
                .collect();
            safetensors_raw("BF16", v.len(), &data)
        };
        for encode in [&f16 as &dyn Fn(&[f32]) -> Vec<u8>, &bf16] {
            let mine = encode(&[1.0, 2.0, -3.0]);
            // One unit in the last place apart: different bytes, within the tolerance.
            let near = encode(&[1.0, 2.01, -3.0]);
            assert_ne!(near, mine);
            assert!(compare(&near, &mine, 0.05).is_ok());
            let far = compare(&encode(&[1.0, 2.5, -3.0]), &mine, 0.05).unwrap_err();
            assert!(far.to_string().contains("element 1"), "{far}");
            assert!(compare(&encode(&[1.0, f32::NAN, -3.0]), &mine, 0.05).is_err());
        }
        // Integers stay exact.
        let ints = safetensors_raw("I32", 1, &7i32.to_le_bytes());
        assert!(compare(&ints, &ints, 0.0).is_ok());
        let other = safetensors_raw("I32", 1, &8i32.to_le_bytes());
        assert!(compare(&other, &ints, 100.0).is_err());
    }

    #[test]
    fn outputs_are_compared_within_the_tolerance() {
        let mine = safetensors_of(&[1.0, 2.0, 3.0]);
        assert!(compare(&safetensors_of(&[1.0, 2.00001, 3.0]), &mine, 1e-4).is_ok());
        let far = compare(&safetensors_of(&[1.0, 2.5, 3.0]), &mine, 1e-4).unwrap_err();
        assert!(far.to_string().contains("element 1"), "{far}");
        let nan = compare(&safetensors_of(&[1.0, f32::NAN, 3.0]), &mine, 1e-4);
        assert!(nan.is_err(), "a NaN passes");
        let shape = compare(&safetensors_of(&[1.0, 2.0]), &mine, 1e-4);
        assert!(shape.is_err(), "another shape passes");
        assert!(compare(b"not safetensors", &mine, 1e-4).is_err());
        let wide = safetensors_of(&[1.0, 9.0, 3.0]);
        assert!(
            compare(&wide, &mine, f32::NAN).is_err(),
            "a NaN tolerance accepts all"
        );
        assert!(compare(&wide, &mine, -1.0).is_err());
        let inf = safetensors_of(&[f32::INFINITY]);
        let same = compare(&inf, &inf, 1e-4);
        assert!(same.is_ok(), "equal infinities differ: {same:?}");
    }

    #[test]
    fn job_states_parse_by_name() {
        assert_eq!(parse_state("Finalized").unwrap(), JobState::Finalized);
        assert_eq!(parse_state("queued").unwrap(), JobState::Queued);
        assert!(parse_state("done").is_err());
    }
}
