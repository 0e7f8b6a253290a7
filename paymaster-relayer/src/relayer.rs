//! What the four SNIP-29 methods do: build the typed data a user signs, and execute a signed
//! one through the Paymaster (sponsored) or the user's own account (default mode), after
//! checking everything again and simulating the exact transaction.
//!
//! Every rule that guards the sponsor's deposit or the relayer's STRK is enforced here before
//! anything is sent, and again by the Paymaster contract on chain: a policy's calls, blocked
//! users, allowances, the Caller, the time bounds, the signature, replays, and a charge
//! derived from the simulated fee that never exceeds the policy's maximum.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ciro_api::snip29::{
    BuildTransaction, BuildTransactionParams, BuildTransactionResult, DeploymentData, ErrorObject,
    ExecutableTransaction, ExecuteTransactionParams, ExecuteTransactionResult, ExecutionParameters,
    FeeEstimate, FeeMode, PaymasterError, TimeBounds, TokenData, TrackingIdParams,
    TrackingIdResult, TrackingStatus,
};
use ciro_chain::bindings::paymaster::{Paymaster, PaymasterReader, Policy};
use ciro_chain::bindings::src9_account::Src9Account;
use ciro_chain::cainome::cairo_serde::{ContractAddress, U256 as CairoU256};
use ciro_chain::sender::{GasBounds, RetryPolicy};
use ciro_chain::snip9::{nonce_tag, sponsor_tag, sponsored_nonce, OutsideExecution};
use ciro_chain::starknet::contract::UdcSelector;
use ciro_chain::starknet::core::crypto::{ecdsa_verify, Signature};
use ciro_chain::starknet::core::types::StarknetError;
use ciro_chain::starknet::core::types::{
    BlockId, BlockTag, BroadcastedDeployAccountTransactionV3, BroadcastedInvokeTransactionV3,
    BroadcastedTransaction, Call, DataAvailabilityMode, Felt, FunctionCall, ResourceBounds,
    ResourceBoundsMapping, SimulationFlagForEstimateFee, TransactionExecutionStatus, U256,
};
use ciro_chain::starknet::core::utils::get_contract_address;
use ciro_chain::starknet::macros::selector;
use ciro_chain::starknet::providers::jsonrpc::HttpTransport;
use ciro_chain::starknet::providers::{JsonRpcClient, Provider, ProviderError};
use ciro_chain::tx::call as view;
use ciro_chain::ChainError;
use ciro_service::RateLimiter;

use crate::batch::{send_failure, Batcher, Entry};
use crate::metrics::RelayerMetrics;
use crate::pool::Pool;

/// STRK's address on every Starknet network (and devnet): the fee token.
pub const STRK: Felt =
    Felt::from_hex_unchecked("0x04718f5a0fc34cc1af16a1cdee98ffb20c31f5cd61d6ab07201858f4287c938d");
/// FRI in one STRK.
pub const FRI_PER_STRK: u128 = 1_000_000_000_000_000_000;
/// What an SRC-6 account's `is_valid_signature` returns for a good signature: `'VALID'`.
const VALID: Felt = Felt::from_hex_unchecked("0x56414c4944");
/// Most felts in a signature (a multisig's is longer than `[r, s]`, not unbounded).
const MAX_SIGNATURE_FELTS: usize = 16;

/// A sponsor's policy that a key (or the default) selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sponsorship {
    /// The sponsor whose deposit pays.
    pub sponsor: Felt,
    /// Its policy.
    pub policy_id: u64,
    /// Whether it also pays for new accounts (`deploy_and_invoke`). Off unless the operator
    /// says so for this key: a deployment costs an attacker nothing to ask for with a fresh
    /// key, and each new account is a new user with a fresh daily allowance.
    pub deployments: bool,
}

/// A token users may pay fees in (default mode), and its price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GasToken {
    /// The token.
    pub address: Felt,
    /// Its decimals.
    pub decimals: u8,
    /// FRI per whole token (10^decimals base units).
    pub price_fri: u128,
}

impl GasToken {
    /// `fri` in this token's base units, rounded up.
    pub fn from_fri(&self, fri: u128) -> u128 {
        let scale = 10u128.saturating_pow(u32::from(self.decimals));
        match fri.checked_mul(scale) {
            Some(product) => product.div_ceil(self.price_fri.max(1)),
            None => fri.div_ceil(self.price_fri.max(1)).saturating_mul(scale),
        }
    }
}

/// Limits and margins (see the README's configuration table).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Most calls in one transaction.
    pub max_calls: usize,
    /// Most calldata felts over all calls.
    pub max_calldata: usize,
    /// Builds and executes per user per minute (0: no limit).
    pub per_user_per_minute: u32,
    /// Requests per client IP per minute (0: no limit).
    pub per_ip_per_minute: u32,
    /// Validity given when the user asks for none (seconds).
    pub default_validity_secs: u64,
    /// Most validity a user may ask for (seconds).
    pub max_validity_secs: u64,
    /// Least validity left when executing (seconds): less could land after it and revert at
    /// the relayer's cost.
    pub min_remaining_secs: u64,
    /// The charge is the simulated fee times this (sponsored), and the least a default-mode
    /// fee transfer must pay.
    pub charge_margin: f64,
    /// Gas amounts and prices of the sent transaction: the simulation's times this.
    pub gas_margin: f64,
    /// A default-mode fee transfer is the estimate times this.
    pub quote_margin: f64,
    /// How long a request waits for a free relayer account.
    pub lease_wait: Duration,
    /// How long a sponsored execution waits for others to go out with it in one transaction
    /// (zero: each goes alone). See [`crate::batch`].
    pub batch_window: Duration,
    /// Most executions in one batch.
    pub batch_max: usize,
    /// How long an OpenZeppelin user's public key, once read, is used again (see
    /// [`KnownKey`]; zero: read for every execution).
    pub key_memory: Duration,
}

impl Limits {
    /// Whether a window ending at `execute_before` leaves less than the least remaining
    /// validity at `now` (the execution could land after it).
    pub(crate) fn closing(&self, execute_before: u64, now: u64) -> bool {
        execute_before < now.saturating_add(self.min_remaining_secs)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_calls: 16,
            max_calldata: 512,
            per_user_per_minute: 60,
            per_ip_per_minute: 600,
            default_validity_secs: 3_600,
            max_validity_secs: 86_400,
            min_remaining_secs: 10,
            charge_margin: 1.2,
            gas_margin: 1.5,
            quote_margin: 2.0,
            lease_wait: Duration::from_secs(10),
            batch_window: Duration::ZERO,
            batch_max: 16,
            key_memory: Duration::from_secs(30),
        }
    }
}

/// An OpenZeppelin user's public key as the relayer last read it. Used for
/// [`Limits::key_memory`], and only while the account's class, read afresh for every request,
/// is OpenZeppelin's: the class is never remembered, since it is what keeps out a contract
/// that would pass simulation and run nothing (see `account_classes`; OpenZeppelin's account
/// is upgradeable). The key only decides whether an execution is worth simulating, and the
/// simulation of the exact transaction runs the account's own signature check: a key rotated
/// since the reading costs a failed simulation, never a transaction. A signature the
/// remembered key refuses is checked again against the key read afresh, and an execution that
/// fails forgets the key.
#[derive(Debug, Clone, Copy)]
struct KnownKey {
    at: Instant,
    key: Felt,
}

/// Keys remembered at most; the map is cleared when full.
const KNOWN_KEYS: usize = 100_000;

/// Whether `signature` is a `[r, s]` Stark ECDSA signature of `hash` by `public_key`.
fn stark_signature_valid(public_key: Felt, hash: Felt, signature: &[Felt]) -> bool {
    match signature {
        [r, s] => ecdsa_verify(&public_key, &hash, &Signature { r: *r, s: *s }).unwrap_or(false),
        _ => false,
    }
}

/// The relayer's state.
pub struct Relayer {
    pub(crate) provider: Arc<JsonRpcClient<HttpTransport>>,
    pub(crate) chain_id: Felt,
    pub(crate) paymaster: Felt,
    /// The Paymaster's payment token (what charges are paid in) and its price.
    pub(crate) payment_token: GasToken,
    /// Tokens users may pay fees in.
    pub(crate) gas_tokens: Vec<GasToken>,
    pub(crate) fee_recipient: Felt,
    pub(crate) pool: Arc<Pool>,
    pub(crate) api_keys: HashMap<String, Sponsorship>,
    pub(crate) default_sponsorship: Option<Sponsorship>,
    pub(crate) limits: Limits,
    pub(crate) metrics: RelayerMetrics,
    /// Account classes whose `execute_from_outside_v2` really runs the signed calls after
    /// checking the signature and nonce: a user account of another class is refused (a
    /// contract posing as an account could pass simulation and pay nothing).
    account_classes: Vec<Felt>,
    /// Builds per (client, user): a stranger cannot use up a user's limit.
    builds: RateLimiter<(IpAddr, Felt)>,
    /// Executes per user, counted once the signature is good.
    users: RateLimiter<Felt>,
    /// Users with an execution in flight (sent: its transaction): one at a time, so a user
    /// cannot have several executions simulated on the same state, of which only the first
    /// can pay.
    in_flight: Slots,
    /// Executions sent, by tracking id (`paymaster_trackingIdToLatestHash`).
    tracked: Arc<Mutex<HashMap<Felt, Tracked>>>,
    /// The size at which `tracked` is next swept.
    tracked_sweep_at: Mutex<usize>,
    pub(crate) ips: RateLimiter<IpAddr>,
    /// (user, outside-execution nonce) submitted, until their validity ends.
    submitted: Mutex<HashMap<(Felt, Felt), u64>>,
    /// Policies read from the Paymaster, with when.
    policies: Mutex<HashMap<u64, CachedPolicy>>,
    /// The fee of the last relayed transaction of the same calls (see [`fee_key`]).
    fees: Mutex<HashMap<FeeKey, u128>>,
    /// Users' public keys as last read (see [`KnownKey`]).
    keys: Mutex<HashMap<Felt, KnownKey>>,
    /// The chain's clock, which executions' windows are checked against.
    clock: Arc<ChainClock>,
    /// Sponsored executions waiting to go out together (with a batch window).
    batcher: Option<Arc<Batcher>>,
    /// Users whose executions go alone (not batched) until then: they were in a batch that
    /// reverted on chain.
    alone: Arc<Mutex<HashMap<Felt, u64>>>,
    /// (relayer account, sponsor) pairs whose budget left today the Paymaster's view gave
    /// below a charge asked of it: until when, and that budget left. Until then the account is
    /// passed over for the sponsor's executions whose charge is likely over it
    /// ([`SPENT_OUT_FOR`]).
    spent_out: SpentOut,
}

/// (relayer account, sponsor) pairs whose budget left today was read below a charge asked of
/// it: until when, and that budget left (see [`spent_for`]). Shared with the batcher.
pub(crate) type SpentOut = Arc<Mutex<HashMap<(Felt, Felt), (Instant, u128)>>>;

/// Whether the relayer account `account` is to be passed over for an execution of `sponsor`'s
/// likely to charge `charge`: its budget left with the sponsor was last read, less than
/// [`SPENT_OUT_FOR`] ago, below it. (By that charge, not the largest ever asked: one execution
/// of a large charge must not take the account from the sponsor's other users, who charge
/// less.)
pub(crate) fn spent_for(spent_out: &SpentOut, account: Felt, sponsor: Felt, charge: u128) -> bool {
    let mut spent = spent_out.lock().unwrap_or_else(|p| p.into_inner());
    match spent.get(&(account, sponsor)) {
        Some((until, left)) if *until > Instant::now() => *left < charge,
        Some(_) => {
            spent.remove(&(account, sponsor));
            false
        }
        None => false,
    }
}

/// How long a relayer account whose budget with a sponsor is spent is passed over for that
/// sponsor before it is tried again (the sponsor may raise the budget, the day may turn).
const SPENT_OUT_FOR: Duration = Duration::from_secs(60);

/// The clock the account contracts check an execution's window against: the later of the
/// wall clock and the timestamp of the block the next transaction lands in (hours apart on a
/// devnet whose time was moved ahead), the latter read from the node at most once a second.
#[derive(Debug, Default)]
pub(crate) struct ChainClock {
    /// The last block timestamp read, and when.
    chain: Mutex<(Option<Instant>, u64)>,
}

impl ChainClock {
    pub(crate) fn now(&self) -> u64 {
        let chain = self.chain.lock().unwrap_or_else(|p| p.into_inner()).1;
        now().max(chain)
    }

    /// Reads the chain's time again if the last reading is over a second old (a failed read
    /// keeps the last one; the wall clock still bounds it from below). The node is the
    /// relayer's own, trusted as for everything else it reads.
    async fn refresh(&self, provider: &JsonRpcClient<HttpTransport>) {
        let fresh =
            |at: Option<Instant>| at.is_some_and(|at| at.elapsed() < Duration::from_secs(1));
        if fresh(self.chain.lock().unwrap_or_else(|p| p.into_inner()).0) {
            return;
        }
        match ciro_chain::tx::block_timestamp(provider, BlockId::Tag(BlockTag::PreConfirmed)).await
        {
            Ok(timestamp) => {
                *self.chain.lock().unwrap_or_else(|p| p.into_inner()) =
                    (Some(Instant::now()), timestamp)
            }
            Err(error) => {
                // Not read again for a second: a node that is down is not asked on every
                // request.
                self.chain.lock().unwrap_or_else(|p| p.into_inner()).0 = Some(Instant::now());
                tracing::warn!(%error, "reading the chain's time; the wall clock bounds it")
            }
        }
    }
}

type RpcResult<T> = Result<T, ErrorObject>;

/// What a user's one execution slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// An execution is being checked and simulated.
    Submitting,
    /// Its transaction was sent and has no receipt yet.
    Sent(Felt),
    /// Closed until this timestamp: a transaction of the user's reverted (the relayer paid
    /// for it), or may still land (its fate is unknown).
    Held(u64),
}

type Slots = Arc<Mutex<HashMap<Felt, Slot>>>;

/// Seconds a user's slot stays closed after one of its relayed transactions reverted.
const REVERT_HOLD_SECS: u64 = 600;

/// Retries of the receipt lookup that frees a user's slot: transport errors only, under a
/// second in all, so a request never waits long on a node that is down.
const RECEIPT_LOOKUP_RETRY: RetryPolicy = RetryPolicy {
    attempts: 3,
    first_backoff: Duration::from_millis(100),
};

fn set_slot(slots: &Mutex<HashMap<Felt, Slot>>, user: Felt, from: Slot, to: Option<Slot>) {
    let mut slots = slots.lock().unwrap_or_else(|p| p.into_inner());
    if slots.get(&user) == Some(&from) {
        match to {
            Some(slot) => slots.insert(user, slot),
            None => slots.remove(&user),
        };
    }
}

/// The Paymaster's refusal of a charge past the relayer account's daily budget with the
/// sponsor.
const RELAYER_BUDGET_REACHED: &str = "PM: relayer budget reached";

/// Contract refusals a user cannot cause: changes of the sponsor's (its relayers, its
/// policy's state, expiry and calls, its lists, its budgets, its deposit) or a pause, made
/// between the relayer's simulation and the transaction's inclusion. A revert for one of
/// these holds no user (it held the user for ten minutes for the sponsor's act).
const NOT_THE_USERS: [&str; 10] = [
    "PM: caller is not a relayer",
    "PM: policy inactive",
    "PM: policy expired",
    "PM: user blocked",
    "PM: user not allowlisted",
    "PM: call not allowed",
    RELAYER_BUDGET_REACHED,
    "PM: sponsor budget reached",
    "PM: sponsor deposit too low",
    "GOV: paused",
];

/// Whether a revert is the sponsor's (or governance's) doing, not the user's: its reason is
/// one of [`NOT_THE_USERS`], raised by the Paymaster's own frame. That frame's panic data is
/// the reason and then the one unwinding marker the relayer's account adds; a string raised
/// anywhere in the user's call tree (a contract its calls reach may be the user's own, and
/// may pass simulation, which runs as a query, and fail on chain) carries a marker for each
/// frame it passed on the way (its target's, the user's account's, the Paymaster's, the
/// relayer account's), which the user cannot take off. (A review of the first version, which
/// matched the string alone, found that spoof.)
fn sponsor_caused(error: &ChainError) -> bool {
    let ChainError::Reverted {
        reason, panic_data, ..
    } = error
    else {
        return false;
    };
    NOT_THE_USERS.contains(&reason.as_str())
        && matches!(panic_data.as_slice(), [first, marker] if first == reason && marker == "ENTRYPOINT_FAILED")
}

/// What a user's slot becomes once the transaction its execution went out in is known (it
/// was in a batch of `batch` executions), and until when the user's executions go alone.
///
/// - Landed, or reverted for the sponsor's change ([`sponsor_caused`]): the slot is free.
/// - Reverted alone: the user is held for [`REVERT_HOLD_SECS`] (it could have known).
/// - Reverted in a batch: which execution failed is not known (any of them, or someone else's
///   transaction in between). Holding every user would let one griefer hold honest users
///   for ten minutes each time; instead every user in it is free at once, but their
///   executions go alone for [`REVERT_HOLD_SECS`], where a griefer's next revert holds it.
/// - Unknown (no receipt): held until the execution's window is over, since it may still land.
fn after_landing(
    outcome: Result<(), &ChainError>,
    batch: usize,
    now: u64,
    execute_before: u64,
) -> (Option<Slot>, Option<u64>) {
    let hold = now.saturating_add(REVERT_HOLD_SECS);
    match outcome {
        Ok(_) => (None, None),
        Err(error) if sponsor_caused(error) => (None, None),
        Err(ChainError::Reverted { .. }) if batch > 1 => (None, Some(hold)),
        Err(ChainError::Reverted { .. }) => (Some(Slot::Held(hold)), None),
        Err(_) => (Some(Slot::Held(execute_before)), None),
    }
}

/// A claim on a user's slot; given back when dropped (a request that failed before sending),
/// unless its transaction was sent or the slot held. A client that goes away drops nothing:
/// its execution runs to its end in a task of its own (`Relayer::execute`). Dropped by a
/// panic, whose execution may have been sent, it holds the slot until the execution's window
/// is over.
struct Claim {
    slots: Slots,
    user: Felt,
    /// The end of the execution's window.
    execute_before: u64,
    done: bool,
}

impl Claim {
    fn sent(mut self, tx_hash: Felt) {
        set_slot(
            &self.slots,
            self.user,
            Slot::Submitting,
            Some(Slot::Sent(tx_hash)),
        );
        self.done = true;
    }

    fn hold(mut self, until: u64) {
        set_slot(
            &self.slots,
            self.user,
            Slot::Submitting,
            Some(Slot::Held(until)),
        );
        self.done = true;
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if !self.done {
            let next = std::thread::panicking().then_some(Slot::Held(self.execute_before));
            set_slot(&self.slots, self.user, Slot::Submitting, next);
        }
    }
}

/// A policy read from the Paymaster, when, and its allowed (target, selector) pairs.
type CachedPolicy = (Instant, Policy, Vec<(Felt, Felt)>);

/// The refusal of an execution whose window closed while it waited (for an account, or for
/// its batch): less than `min_remaining_secs` left.
pub(crate) fn window_closing(min_remaining_secs: u64) -> ErrorObject {
    ErrorObject {
        data: Some(format!("execute_before leaves less than {min_remaining_secs} s now").into()),
        ..ErrorObject::paymaster(PaymasterError::InvalidTimeBounds)
    }
}

pub(crate) fn unknown(reason: impl Into<String>) -> ErrorObject {
    ErrorObject::unknown_error(reason)
}

fn execution_error(reason: impl Into<String>) -> ErrorObject {
    ErrorObject::transaction_execution_error(reason)
}

/// A node failure as the user sees it: a revert with the contract's string (156), the node
/// unreachable (163 "service not available").
pub(crate) fn chain_error(error: ChainError) -> ErrorObject {
    match error {
        ChainError::Reverted { reason, .. } => execution_error(reason),
        ChainError::Transport(message) => {
            tracing::warn!(%message, "node call failed");
            unknown("service not available")
        }
        other => execution_error(other.to_string()),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Whether a user's subscription that raises its daily limit above the policy's ends
/// within `margin` seconds of `now` (a running subscription only: one already over changes
/// nothing any more).
fn subscription_ending(
    expires_at: u64,
    subscription_limit: u128,
    policy_limit: u128,
    now: u64,
    margin: u64,
) -> bool {
    expires_at > now && expires_at < now.saturating_add(margin) && subscription_limit > policy_limit
}

fn to_u128(value: CairoU256) -> u128 {
    if value.high == 0 {
        value.low
    } else {
        u128::MAX
    }
}

fn cairo_u256(value: u128) -> CairoU256 {
    CairoU256 {
        low: value,
        high: 0,
    }
}

fn hex_u256(value: u128) -> U256 {
    U256::from(value)
}

fn random_u128() -> RpcResult<u128> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(|e| {
        tracing::error!("no randomness for a nonce: {e}");
        unknown("service not available")
    })?;
    Ok(u128::from_be_bytes(bytes))
}

/// The calldata of an account's `__execute__` for `calls` (Cairo 1 encoding).
fn execute_calldata(calls: &[Call]) -> Vec<Felt> {
    let mut data = vec![Felt::from(calls.len())];
    for call in calls {
        data.extend([call.to, call.selector, Felt::from(call.calldata.len())]);
        data.extend(&call.calldata);
    }
    data
}

/// How long a tracking id is answered past its execution's window (seconds).
const TRACKED_SECS: u64 = 86_400;
/// How long past an execution's window a transaction with no receipt is said to be dropped: a
/// block's timestamp is fixed when it opens, so one stamped inside the window may still take
/// the transaction a little after the window closed.
const DROPPED_AFTER_SECS: u64 = 120;

/// What a receipt lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    /// Not looked up: the state says enough.
    NotAsked,
    Found,
    /// The node knows no such transaction.
    NotFound,
}

/// Where a tracked execution is, from what the receipt watch saw and a fresh lookup: active
/// until its receipt; accepted once in a block (succeeded or reverted); dropped only when the
/// node knows no such transaction and the window closed long enough ago that none can come.
fn tracking_status(entry: Tracked, receipt: Lookup, now: u64) -> TrackingStatus {
    match (entry.state, receipt) {
        (TrackedState::Landed, _) | (_, Lookup::Found) => TrackingStatus::Accepted,
        (TrackedState::Unknown, Lookup::NotFound)
            if now > entry.execute_before.saturating_add(DROPPED_AFTER_SECS) =>
        {
            TrackingStatus::Dropped
        }
        _ => TrackingStatus::Active,
    }
}

/// An execution sent, as `paymaster_trackingIdToLatestHash` reports it.
#[derive(Debug, Clone, Copy)]
struct Tracked {
    tx_hash: Felt,
    state: TrackedState,
    /// The end of the execution's window: past it, a transaction not in a block never runs.
    execute_before: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TrackedState {
    /// Sent; its receipt is awaited.
    Sent,
    /// In a block (succeeded or reverted).
    Landed,
    /// No receipt came while it was awaited.
    Unknown,
}

/// The user's account: already there (its class), or one to deploy first.
enum UserAccount {
    There(Felt),
    New(Box<Deployment>),
}

impl UserAccount {
    fn deployment(&self) -> Option<&Deployment> {
        match self {
            Self::There(_) => None,
            Self::New(deploy) => Some(deploy),
        }
    }
}

/// A new account the relayer deploys in the same transaction, before the user's calls.
struct Deployment {
    /// The Universal Deployer call (from zero), first in the relayer's multicall.
    call: Call,
    /// The owner's public key (OpenZeppelin's account: its only constructor argument), which
    /// the execution's signature is checked against off chain.
    public_key: Felt,
    /// What the user sent.
    data: DeploymentData,
}

impl Relayer {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        provider: Arc<JsonRpcClient<HttpTransport>>,
        chain_id: Felt,
        paymaster: Felt,
        payment_token: GasToken,
        gas_tokens: Vec<GasToken>,
        fee_recipient: Felt,
        pool: Arc<Pool>,
        api_keys: HashMap<String, Sponsorship>,
        default_sponsorship: Option<Sponsorship>,
        limits: Limits,
        metrics: RelayerMetrics,
        account_classes: Vec<Felt>,
    ) -> Self {
        let clock: Arc<ChainClock> = Arc::default();
        let spent_out = SpentOut::default();
        Self {
            account_classes,
            in_flight: Arc::default(),
            tracked: Arc::default(),
            tracked_sweep_at: Mutex::new(10_000),
            clock: clock.clone(),
            alone: Arc::default(),
            spent_out: spent_out.clone(),
            batcher: (!limits.batch_window.is_zero()).then(|| {
                Batcher::new(
                    pool.clone(),
                    metrics.clone(),
                    clock.clone(),
                    spent_out.clone(),
                    &limits,
                )
            }),
            builds: RateLimiter::per_minute(limits.per_user_per_minute, limits.per_user_per_minute),
            users: RateLimiter::per_minute(limits.per_user_per_minute, limits.per_user_per_minute),
            ips: RateLimiter::per_minute(limits.per_ip_per_minute, limits.per_ip_per_minute),
            provider,
            chain_id,
            paymaster,
            payment_token,
            gas_tokens,
            fee_recipient,
            pool,
            api_keys,
            default_sponsorship,
            limits,
            metrics,
            submitted: Mutex::new(HashMap::new()),
            policies: Mutex::new(HashMap::new()),
            fees: Mutex::new(HashMap::new()),
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// `paymaster_isAvailable`: a relayer account is in rotation.
    pub fn is_available(&self) -> bool {
        self.pool.any_enabled()
    }

    /// `paymaster_getSupportedTokens`.
    pub fn supported_tokens(&self) -> Vec<TokenData> {
        self.gas_tokens
            .iter()
            .map(|t| TokenData {
                token_address: t.address,
                decimals: t.decimals,
                price_in_strk: hex_u256(t.price_fri),
            })
            .collect()
    }

    fn sponsorship(&self, api_key: Option<&str>) -> RpcResult<Sponsorship> {
        match api_key {
            Some(key) => self
                .api_keys
                .get(key)
                .copied()
                .ok_or_else(|| unknown("x-paymaster-api-key is invalid")),
            None => self.default_sponsorship.ok_or_else(|| {
                unknown("sponsored mode needs an x-paymaster-api-key: this paymaster has no default policy")
            }),
        }
    }

    fn gas_token(&self, address: Felt) -> RpcResult<GasToken> {
        self.gas_tokens
            .iter()
            .find(|t| t.address == address)
            .copied()
            .ok_or_else(|| ErrorObject::paymaster(PaymasterError::TokenNotSupported))
    }

    fn rate_limit(&self, allowed: bool) -> RpcResult<()> {
        if allowed {
            Ok(())
        } else {
            self.metrics.refused("user_rate_limit");
            Err(unknown(format!(
                "rate limit: at most {} requests a minute per user",
                self.limits.per_user_per_minute
            )))
        }
    }

    /// Checks that `user` is an account of a supported class (155 otherwise; 150 when no
    /// contract is there).
    async fn check_account(&self, user: Felt) -> RpcResult<Felt> {
        let class = self
            .provider
            .get_class_hash_at(BlockId::Tag(BlockTag::PreConfirmed), user)
            .await
            .map_err(|e| match ChainError::from(e) {
                error @ ChainError::Transport(_) => chain_error(error),
                _ => ErrorObject::paymaster(PaymasterError::InvalidAddress),
            })?;
        self.supported_class(class)
    }

    /// `user`'s public key read less than [`Limits::key_memory`] ago.
    fn known_key(&self, user: Felt) -> Option<Felt> {
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&user)
            .filter(|known| known.at.elapsed() < self.limits.key_memory)
            .map(|known| known.key)
    }

    /// Records `user`'s public key as just read.
    fn remember_key(&self, user: Felt, key: Felt) {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if keys.len() >= KNOWN_KEYS {
            keys.clear();
        }
        keys.insert(
            user,
            KnownKey {
                at: Instant::now(),
                key,
            },
        );
    }

    /// Forgets `user`'s remembered key: its execution failed, perhaps because the key was
    /// rotated away.
    fn forget_key(&self, user: Felt) {
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&user);
    }

    /// `class`, if users' accounts may have it (155 otherwise).
    fn supported_class(&self, class: Felt) -> RpcResult<Felt> {
        if self.account_classes.contains(&class) {
            Ok(class)
        } else {
            self.metrics.refused("account_class");
            Err(ErrorObject {
                data: Some(
                    format!("account class {class:#x} is not one this paymaster supports").into(),
                ),
                ..ErrorObject::paymaster(PaymasterError::ClassHashNotSupported)
            })
        }
    }

    /// The user's account as the request names it: an account already there, of a supported
    /// class ([`Self::check_account`], whatever deployment data came with it), or a new one to
    /// deploy first, checked against `sponsorship` (`None`: default mode, the user pays).
    async fn check_user(
        &self,
        user: Felt,
        deployment: Option<&DeploymentData>,
        sponsorship: Option<Sponsorship>,
    ) -> RpcResult<UserAccount> {
        let Some(data) = deployment else {
            return Ok(UserAccount::There(self.check_account(user).await?));
        };
        let there = self
            .provider
            .get_class_hash_at(BlockId::Tag(BlockTag::PreConfirmed), user)
            .await;
        match there {
            // Already deployed: the calls alone, as for any account.
            Ok(class) => return Ok(UserAccount::There(self.supported_class(class)?)),
            Err(ProviderError::StarknetError(StarknetError::ContractNotFound)) => {}
            Err(error) => return Err(chain_error(error.into())),
        }
        let refuse = |why: String| {
            self.metrics.refused("deployment");
            Err(ErrorObject {
                data: Some(why.into()),
                ..ErrorObject::paymaster(PaymasterError::InvalidDeploymentData)
            })
        };
        if sponsorship.is_some_and(|s| !s.deployments) {
            return refuse(
                "this sponsor does not pay for account deployments: deploy the account first, \
                 or pay the fee in a gas token (default mode)"
                    .into(),
            );
        }
        if data.version != 1 {
            return refuse(format!(
                "deployment data version {} (this paymaster knows version 1)",
                data.version
            ));
        }
        if data.address != user {
            return refuse(format!(
                "the deployment is of {:#x}, the calls are {user:#x}'s",
                data.address
            ));
        }
        if !self.account_classes.contains(&data.class_hash) {
            return refuse(format!(
                "account class {:#x} is not one this paymaster supports",
                data.class_hash
            ));
        }
        // The owner's signature is checked off chain before anything is simulated or counted,
        // so only a class whose scheme the relayer knows is deployed: OpenZeppelin's account
        // (one constructor argument, the public key; `[r, s]` signatures; no `sigdata`).
        let public_key = match data.calldata.as_slice() {
            [key] if data.class_hash == crate::OPENZEPPELIN_ACCOUNT_1_0 => *key,
            _ => {
                return refuse(format!(
                    "this paymaster deploys only OpenZeppelin's account {:#x} (constructor: the \
                     public key); deploy an account of class {:#x} first",
                    crate::OPENZEPPELIN_ACCOUNT_1_0,
                    data.class_hash
                ))
            }
        };
        if data.sigdata.as_ref().is_some_and(|d| !d.is_empty()) {
            return refuse("sigdata is not used by this account class: send none".into());
        }
        // Deployed from zero (the UDC without uniqueness), an account gets the address a
        // DEPLOY_ACCOUNT transaction would give it: the one its owner computed and funded.
        let address = get_contract_address(data.salt, data.class_hash, &data.calldata, Felt::ZERO);
        if address != data.address {
            return refuse(format!(
                "this class, salt and constructor calldata give the address {address:#x}, not {:#x}",
                data.address
            ));
        }
        let calldata = vec![
            data.class_hash,
            data.salt,
            Felt::ZERO, // not unique: from zero
            Felt::ONE,
            public_key,
        ];
        Ok(UserAccount::New(Box::new(Deployment {
            call: Call {
                to: UdcSelector::New.address(),
                selector: selector!("deployContract"),
                calldata,
            },
            public_key,
            data: data.clone(),
        })))
    }

    /// Claims `user`'s slot; refuses while an earlier execution has not landed (looked up
    /// once, in case its receipt is already there) or while the slot is held.
    async fn claim_user(&self, user: Felt, execute_before: u64) -> RpcResult<Claim> {
        let claim = || Claim {
            slots: self.in_flight.clone(),
            user,
            execute_before,
            done: false,
        };
        let earlier = {
            let mut slots = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            match slots.get(&user).copied() {
                None => {
                    slots.insert(user, Slot::Submitting);
                    return Ok(claim());
                }
                Some(Slot::Held(until)) if until <= self.clock.now() => {
                    slots.insert(user, Slot::Submitting);
                    return Ok(claim());
                }
                Some(earlier) => earlier,
            }
        };
        if let Slot::Sent(tx_hash) = earlier {
            // A node hiccup (a dropped keep-alive connection, a busy node) must not make a
            // landed execution look in flight: transport errors are retried briefly.
            let lookup = RECEIPT_LOOKUP_RETRY
                .run(|| async {
                    self.provider
                        .get_transaction_receipt(tx_hash)
                        .await
                        .map_err(ChainError::from)
                })
                .await;
            match lookup {
                // A reverted one is left to its watch, which holds the user (or sends it
                // alone): freeing the slot here would let a quick client escape that.
                Ok(receipt)
                    if receipt.receipt.execution_result().status()
                        == TransactionExecutionStatus::Succeeded =>
                {
                    let mut slots = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
                    if slots.get(&user) == Some(&Slot::Sent(tx_hash)) {
                        slots.insert(user, Slot::Submitting);
                        return Ok(claim());
                    }
                }
                Ok(_) | Err(ChainError::Rejected(StarknetError::TransactionHashNotFound)) => {}
                Err(error) => tracing::warn!(
                    tx = %format!("{tx_hash:#x}"),
                    "looking up an earlier execution's receipt: {error}"
                ),
            }
        }
        self.metrics.refused("in_flight");
        Err(unknown(match earlier {
            Slot::Sent(tx_hash) => format!(
                "an earlier execution of this user is in flight ({tx_hash:#x}); retry once it lands"
            ),
            Slot::Submitting => {
                "an earlier execution of this user is being submitted; retry once it lands".into()
            }
            Slot::Held(until) => format!(
                "this user's executions are held until {until}: an earlier one reverted or may still land"
            ),
        }))
    }

    /// Whether `user`'s executions go alone (see [`after_landing`]); forgets a hold that
    /// is over.
    fn goes_alone(&self, user: Felt) -> bool {
        let mut alone = self.alone.lock().unwrap_or_else(|p| p.into_inner());
        match alone.get(&user) {
            Some(&until) if until > self.clock.now() => true,
            Some(_) => {
                alone.remove(&user);
                false
            }
            None => false,
        }
    }

    /// Checks the shape of a user's calls: some, not too many, not too long, and none to the
    /// Paymaster or a relayer account (their funds are never the user's to move).
    fn check_calls(&self, calls: &[Call]) -> RpcResult<()> {
        if calls.is_empty() {
            return Err(execution_error("no calls"));
        }
        if calls.len() > self.limits.max_calls {
            return Err(unknown(format!(
                "too many calls: {} (at most {})",
                calls.len(),
                self.limits.max_calls
            )));
        }
        let calldata: usize = calls.iter().map(|c| c.calldata.len()).sum();
        if calldata > self.limits.max_calldata {
            return Err(unknown(format!(
                "calldata too long: {calldata} felts (at most {})",
                self.limits.max_calldata
            )));
        }
        for call in calls {
            if call.to == self.paymaster || self.pool.contains(call.to) {
                self.metrics.refused("blacklisted_call");
                return Err(unknown("blacklisted calls"));
            }
        }
        Ok(())
    }

    /// The time bounds to build with, or why they are refused (157).
    fn time_bounds(&self, asked: Option<TimeBounds>) -> RpcResult<TimeBounds> {
        let now = self.clock.now();
        let bounds = asked.unwrap_or(TimeBounds {
            execute_after: 1,
            execute_before: now.saturating_add(self.limits.default_validity_secs),
        });
        self.check_window(bounds.execute_after, bounds.execute_before, now)?;
        Ok(bounds)
    }

    fn check_window(&self, after: u64, before: u64, now: u64) -> RpcResult<()> {
        let refuse = |why: String| ErrorObject {
            data: Some(why.into()),
            ..ErrorObject::paymaster(PaymasterError::InvalidTimeBounds)
        };
        if after >= before {
            return Err(refuse("execute_after is not before execute_before".into()));
        }
        if after >= now {
            return Err(refuse("execute_after is not in the past".into()));
        }
        if before > now.saturating_add(self.limits.max_validity_secs) {
            return Err(refuse(format!(
                "execute_before is more than {} s away",
                self.limits.max_validity_secs
            )));
        }
        if self.limits.closing(before, now) {
            return Err(refuse(format!(
                "execute_before leaves less than {} s",
                self.limits.min_remaining_secs
            )));
        }
        Ok(())
    }

    /// A policy and its allowed (target, selector) pairs, read at most every 2 s.
    async fn policy(&self, policy_id: u64) -> RpcResult<(Policy, Vec<(Felt, Felt)>)> {
        if let Some((at, policy, calls)) = self
            .policies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&policy_id)
        {
            if at.elapsed() < Duration::from_secs(2) {
                return Ok((policy.clone(), calls.clone()));
            }
        }
        let reader = PaymasterReader::new(self.paymaster, self.provider.as_ref());
        let (policy, allowed) = view(reader.get_policy(&policy_id))
            .await
            .map_err(|e| match e {
                ChainError::Reverted { .. } => {
                    unknown(format!("policy {policy_id} does not exist"))
                }
                other => chain_error(other),
            })?;
        let calls: Vec<(Felt, Felt)> = allowed.iter().map(|c| (c.target.0, c.selector)).collect();
        self.policies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(policy_id, (Instant::now(), policy.clone(), calls.clone()));
        Ok((policy, calls))
    }

    /// What the Paymaster would refuse for this user and these calls, said up front (163).
    /// `building`: read the user's standing (blocked, allowlisted, allowance left), which at
    /// execute the simulation checks with the contract's own strings. At execute instead: the
    /// user's subscription, whose end the simulation cannot foresee (an execution simulated
    /// under its higher limit could land after it, over the policy's, and revert at the
    /// relayer's cost); at build its end only moves the refusal to execute.
    async fn check_sponsorship(
        &self,
        sponsorship: Sponsorship,
        user: Felt,
        calls: &[Call],
        building: bool,
    ) -> RpcResult<Policy> {
        let (policy, allowed) = self.policy(sponsorship.policy_id).await?;
        let refuse = |reason: &str, metric: &str| {
            self.metrics.refused(metric);
            Err(unknown(reason.to_owned()))
        };
        if policy.sponsor.0 != sponsorship.sponsor {
            return refuse("the policy is not this sponsor's", "policy");
        }
        if !policy.active {
            return refuse("the sponsor's policy is inactive", "policy");
        }
        let now = self.clock.now();
        if policy.params.expiry <= now {
            return refuse("the sponsor's policy expired", "policy");
        }
        // As for an execution's own window: a transaction simulated now may land a few
        // seconds later, after the policy's expiry, and revert at the relayer's cost.
        if policy.params.expiry < now.saturating_add(self.limits.min_remaining_secs) {
            return refuse(
                &format!(
                    "the sponsor's policy expires within {} s",
                    self.limits.min_remaining_secs
                ),
                "policy",
            );
        }
        for call in calls {
            if !allowed.contains(&(call.to, call.selector)) {
                self.metrics.refused("call_not_allowed");
                return Err(unknown(format!(
                    "call not allowed by the sponsor's policy: {:#x} selector {:#x}",
                    call.to, call.selector
                )));
            }
        }
        let reader = PaymasterReader::new(self.paymaster, self.provider.as_ref());
        if !building {
            // The user's subscription: when it ends, its daily limit falls to the policy's, so
            // an execution simulated under the higher limit may land over the lower one and
            // revert at the relayer's cost.
            let subscription = view(reader.subscription(
                &ContractAddress(sponsorship.sponsor),
                &ContractAddress(user),
            ))
            .await
            .map_err(chain_error)?;
            if subscription_ending(
                subscription.expires_at,
                to_u128(subscription.daily_limit),
                to_u128(policy.params.daily_limit),
                now,
                self.limits.min_remaining_secs,
            ) {
                return refuse(
                    &format!(
                        "the user's subscription ends within {} s (its daily limit then falls to the \
                         policy's): try again once it has ended",
                        self.limits.min_remaining_secs
                    ),
                    "allowance",
                );
            }
            return Ok(policy);
        }
        let (allowlisted, blocked) = view(reader.user_status(
            &ContractAddress(sponsorship.sponsor),
            &ContractAddress(user),
        ))
        .await
        .map_err(chain_error)?;
        if blocked {
            return refuse("the user is blocked by the sponsor", "user_blocked");
        }
        if policy.params.allowlist_only && !allowlisted {
            return refuse("the user is not on the sponsor's allowlist", "user_blocked");
        }
        let remaining =
            view(reader.remaining_allowance(&sponsorship.policy_id, &ContractAddress(user)))
                .await
                .map_err(chain_error)?;
        if to_u128(remaining) == 0 {
            return refuse("the user's daily allowance is exhausted", "allowance");
        }
        Ok(policy)
    }

    /// Estimates the user's own calls as if its account sent them (validation skipped: the
    /// user has not signed anything yet), after deploying it first when `deploy` says so (a
    /// DEPLOY_ACCOUNT of the same class, salt and calldata, then the calls at nonce 1, in one
    /// estimate); the overall fee in FRI.
    async fn estimate_as_user(
        &self,
        user: Felt,
        calls: &[Call],
        deploy: Option<&Deployment>,
    ) -> RpcResult<u128> {
        let block = BlockId::Tag(BlockTag::PreConfirmed);
        let zero = || ResourceBounds {
            max_amount: 0,
            max_price_per_unit: 0,
        };
        let bounds = || ResourceBoundsMapping {
            l1_gas: zero(),
            l1_data_gas: zero(),
            l2_gas: zero(),
        };
        let mut txs = Vec::new();
        let nonce = match deploy {
            Some(deploy) => {
                txs.push(BroadcastedTransaction::DeployAccount(
                    BroadcastedDeployAccountTransactionV3 {
                        signature: vec![],
                        nonce: Felt::ZERO,
                        contract_address_salt: deploy.data.salt,
                        constructor_calldata: deploy.data.calldata.clone(),
                        class_hash: deploy.data.class_hash,
                        resource_bounds: bounds(),
                        tip: 0,
                        paymaster_data: vec![],
                        nonce_data_availability_mode: DataAvailabilityMode::L1,
                        fee_data_availability_mode: DataAvailabilityMode::L1,
                        is_query: true,
                    },
                ));
                Felt::ONE
            }
            None => {
                self.provider.get_nonce(block, user).await.map_err(|e| {
                    match ChainError::from(e) {
                        ChainError::Rejected(_) => {
                            ErrorObject::paymaster(PaymasterError::InvalidAddress)
                        }
                        other => chain_error(other),
                    }
                })?
            }
        };
        txs.push(BroadcastedTransaction::Invoke(
            BroadcastedInvokeTransactionV3 {
                sender_address: user,
                calldata: execute_calldata(calls),
                signature: vec![],
                nonce,
                resource_bounds: bounds(),
                tip: 0,
                paymaster_data: vec![],
                account_deployment_data: vec![],
                nonce_data_availability_mode: DataAvailabilityMode::L1,
                fee_data_availability_mode: DataAvailabilityMode::L1,
                is_query: true,
            },
        ));
        let count = txs.len();
        let estimates = self
            .provider
            .estimate_fee(txs, vec![SimulationFlagForEstimateFee::SkipValidate], block)
            .await
            .map_err(|e| chain_error(e.into()))?;
        if estimates.len() != count {
            return Err(unknown("the node returned no estimate"));
        }
        Ok(estimates.iter().map(|e| e.overall_fee).sum())
    }

    /// `paymaster_buildTransaction`.
    pub async fn build(
        &self,
        params: BuildTransactionParams,
        api_key: Option<&str>,
        client: IpAddr,
    ) -> RpcResult<BuildTransactionResult> {
        let (invoke, deployment) = match params.transaction {
            BuildTransaction::Invoke { invoke } => (invoke, None),
            BuildTransaction::DeployAndInvoke { invoke, deployment } => (invoke, Some(deployment)),
            BuildTransaction::Deploy { .. } => return Err(self.deployment_alone()),
        };
        let user = invoke.user_address;
        self.rate_limit(self.builds.allow(&(client, user)))?;
        self.clock.refresh(&self.provider).await;
        let mut calls: Vec<Call> = invoke
            .calls
            .into_iter()
            .map(|c| Call {
                to: c.to,
                selector: c.selector,
                calldata: c.calldata,
            })
            .collect();
        self.check_calls(&calls)?;
        let bounds = self.time_bounds(params.parameters.time_bounds())?;
        let sponsorship = match params.parameters.fee_mode() {
            FeeMode::Sponsored { .. } => Some(self.sponsorship(api_key)?),
            FeeMode::Default { .. } => None,
        };
        let account = self
            .check_user(user, deployment.as_ref(), sponsorship)
            .await?;
        let deploy = account.deployment();
        let fee_mode = match params.parameters.fee_mode() {
            FeeMode::Sponsored { .. } => FeeMode::Sponsored { tip: None },
            FeeMode::Default { gas_token, .. } => FeeMode::Default {
                gas_token: *gas_token,
                tip: None,
            },
        };
        let (caller, fee) = match &fee_mode {
            FeeMode::Sponsored { .. } => {
                let sponsorship = sponsorship.ok_or_else(|| unknown("no sponsorship"))?;
                let policy = self
                    .check_sponsorship(sponsorship, user, &calls, true)
                    .await?;
                let max_charge = to_u128(policy.params.max_charge);
                // The fee of the same calls relayed last time under this policy (only when its
                // charge fits: a cached value never refuses anything), or an estimate.
                let cached = self
                    .cached_fee(sponsorship, &calls)
                    .filter(|fee| deploy.is_none() && self.charge_for(*fee) <= max_charge);
                let fee = match cached {
                    Some(fee) => fee,
                    None => self.estimate_as_user(user, &calls, deploy).await?,
                };
                let strk = self.gas_token(STRK).unwrap_or(GasToken {
                    address: STRK,
                    decimals: 18,
                    price_fri: FRI_PER_STRK,
                });
                let suggested = scale(fee, self.limits.quote_margin);
                // The user's calls alone cost less than the sponsored transaction: if even
                // their charge is over the policy's maximum, execution surely would be.
                if self.charge_for(fee) > max_charge {
                    self.metrics.refused("charge_over_max");
                    return Err(execution_error(format!(
                        "the fee ({fee} FRI) would exceed the policy's max charge"
                    )));
                }
                (
                    self.paymaster,
                    FeeEstimate {
                        gas_token_price_in_strk: hex_u256(strk.price_fri),
                        estimated_fee_in_strk: hex_u256(fee),
                        estimated_fee_in_gas_token: hex_u256(fee),
                        suggested_max_fee_in_strk: hex_u256(suggested),
                        suggested_max_fee_in_gas_token: hex_u256(suggested),
                    },
                )
            }
            FeeMode::Default { gas_token, .. } => {
                let token = self.gas_token(*gas_token)?;
                let mut probe = calls.clone();
                probe.push(self.fee_transfer(token.address, 1));
                let fee = self.estimate_as_user(user, &probe, deploy).await?;
                let suggested = scale(fee, self.limits.quote_margin);
                let amount = token.from_fri(suggested);
                let balance =
                    ciro_chain::clients::balance_of(self.provider.as_ref(), token.address, user)
                        .await
                        .map_err(chain_error)?;
                if to_u128(balance) < amount {
                    return Err(execution_error(format!(
                        "the user's balance of the gas token is below the fee ({amount})"
                    )));
                }
                calls.push(self.fee_transfer(token.address, amount));
                (
                    self.pool.caller_for(user),
                    FeeEstimate {
                        gas_token_price_in_strk: hex_u256(token.price_fri),
                        estimated_fee_in_strk: hex_u256(fee),
                        estimated_fee_in_gas_token: hex_u256(token.from_fri(fee)),
                        suggested_max_fee_in_strk: hex_u256(suggested),
                        suggested_max_fee_in_gas_token: hex_u256(amount),
                    },
                )
            }
        };
        // A sponsored execution's nonce names its sponsor: the Paymaster runs it for no other.
        let nonce = match sponsorship {
            Some(sponsorship) if caller == self.paymaster => {
                sponsored_nonce(sponsorship.sponsor, random_u128()?)
            }
            _ => Felt::from(random_u128()?),
        };
        let execution = OutsideExecution {
            caller,
            nonce,
            execute_after: bounds.execute_after,
            execute_before: bounds.execute_before,
            calls,
        };
        self.metrics.built();
        let typed_data = execution.typed_data_json(self.chain_id);
        let parameters = ExecutionParameters::V1 {
            fee_mode,
            time_bounds: Some(bounds),
        };
        // A deployment asked for is echoed even when the account is already there: execute
        // looks again and deploys only if it is still missing.
        Ok(match deployment {
            None => BuildTransactionResult::Invoke {
                typed_data,
                parameters,
                fee,
            },
            Some(deployment) => BuildTransactionResult::DeployAndInvoke {
                deployment,
                typed_data,
                parameters,
                fee,
            },
        })
    }

    /// A deployment without calls: nothing would be signed, so nothing binds the request to
    /// the key that owns the account (158).
    fn deployment_alone(&self) -> ErrorObject {
        self.metrics.refused("deployment");
        ErrorObject {
            data: Some(
                "a deployment alone is not relayed: send it with the account's first calls \
                 (deploy_and_invoke), which its owner signs"
                    .into(),
            ),
            ..ErrorObject::paymaster(PaymasterError::InvalidDeploymentData)
        }
    }

    fn fee_transfer(&self, token: Felt, amount: u128) -> Call {
        Call {
            to: token,
            selector: selector!("transfer"),
            calldata: vec![self.fee_recipient, Felt::from(amount), Felt::ZERO],
        }
    }

    /// `paymaster_executeTransaction`.
    pub async fn execute(
        self: &Arc<Self>,
        params: ExecuteTransactionParams,
        api_key: Option<&str>,
    ) -> RpcResult<ExecuteTransactionResult> {
        let (invoke, deployment) = match params.transaction {
            ExecutableTransaction::Invoke { invoke } => (invoke, None),
            ExecutableTransaction::DeployAndInvoke { invoke, deployment } => {
                (invoke, Some(deployment))
            }
            ExecutableTransaction::Deploy { .. } => return Err(self.deployment_alone()),
        };
        let user = invoke.user_address;
        self.clock.refresh(&self.provider).await;
        if invoke.signature.is_empty() || invoke.signature.len() > MAX_SIGNATURE_FELTS {
            return Err(ErrorObject::paymaster(PaymasterError::InvalidSignature));
        }
        // Everything comes from the typed data as echoed, checked again: nothing the build
        // returned is remembered or trusted.
        let execution = OutsideExecution::from_typed_data(&invoke.typed_data, self.chain_id)
            .map_err(|e| execution_error(e.to_string()))?;
        self.check_window(
            execution.execute_after,
            execution.execute_before,
            self.clock.now(),
        )?;
        let fee_mode = params.parameters.fee_mode().clone();
        let sponsorship = match fee_mode {
            FeeMode::Sponsored { .. } => {
                if execution.caller != self.paymaster {
                    self.metrics.refused("caller");
                    return Err(execution_error(
                        "the typed data's Caller is not the Paymaster",
                    ));
                }
                self.check_calls(&execution.calls)?;
                let sponsorship = self.sponsorship(api_key)?;
                // The Paymaster would refuse it too (`PM: nonce not for sponsor`): said here,
                // before any simulation.
                if nonce_tag(execution.nonce) != Felt::from(sponsor_tag(sponsorship.sponsor)) {
                    self.metrics.refused("caller");
                    return Err(execution_error(
                        "the typed data's Nonce was not built for this sponsor (another \
                         sponsor's, or not a relayer's): build the transaction again",
                    ));
                }
                self.check_sponsorship(sponsorship, user, &execution.calls, false)
                    .await?;
                Some(sponsorship)
            }
            FeeMode::Default { gas_token, .. } => {
                if !self.pool.contains(execution.caller) {
                    self.metrics.refused("caller");
                    return Err(execution_error(
                        "the typed data's Caller is not the relayer account this paymaster named",
                    ));
                }
                let token = self.gas_token(gas_token)?;
                let Some((fee_call, user_calls)) = execution.calls.split_last() else {
                    return Err(execution_error("no calls"));
                };
                self.check_calls(user_calls)?;
                let paid = self.signed_fee(fee_call, &token)?;
                if paid == 0 {
                    return Err(ErrorObject::paymaster(PaymasterError::MaxAmountTooLow));
                }
                // One storage read before a relayer account is leased for a simulation: a
                // user who cannot pay the fee it signed (a fresh key is a fresh user, with its
                // own rate limit) does not get to hold the account it named as Caller.
                let balance =
                    ciro_chain::clients::balance_of(self.provider.as_ref(), token.address, user)
                        .await
                        .map_err(chain_error)?;
                if to_u128(balance) < paid {
                    self.metrics.refused("balance");
                    return Err(execution_error(format!(
                        "the user's balance of the gas token is below the fee it signed ({paid})"
                    )));
                }
                None
            }
        };
        let account = self
            .check_user(user, deployment.as_ref(), sponsorship)
            .await?;
        let message_hash = execution.message_hash(user, self.chain_id);
        match &account {
            UserAccount::There(class) => {
                self.check_signature(user, *class, message_hash, &invoke.signature)
                    .await?
            }
            // No account to ask yet: checked off chain against the constructor's key (and
            // again by the simulation, in which the new account checks it itself).
            UserAccount::New(deploy) => {
                self.check_stark_signature(deploy.public_key, message_hash, &invoke.signature)?
            }
        }
        // A replay of an execution already submitted (anyone can read a landed one's
        // signature from the chain) is refused before it counts against its user's rate:
        // counted, replays would lock the user out of its own executions.
        self.refuse_replay((user, execution.nonce))?;
        self.rate_limit(self.users.allow(&user))?;
        // From the user's claim on, the execution runs to its end in a task of its own,
        // whatever its client does: cancelled half-way (the client went away), it could be
        // sent with its user already free to stack another execution on a state without it.
        // The checks above stay tied to the request, and the per-user rate limit bounds these
        // tasks; each one beyond the first of a user stops at the claim.
        let relayer = self.clone();
        let signature = invoke.signature;
        let task = tokio::spawn(async move {
            let result = relayer
                .claim_and_submit(user, execution, signature, sponsorship, fee_mode, account)
                .await;
            if result.is_err() {
                // Perhaps signed by a key rotated away since it was remembered: read it again.
                relayer.forget_key(user);
            }
            result
        });
        task.await.unwrap_or_else(|e| {
            // A task that panicked never reached its own forgetting: an execution that failed
            // inside the relayer leaves no key remembered either.
            self.forget_key(user);
            let panicked = e.is_panic();
            tracing::error!(user = %format!("{user:#x}"), panicked, "an execution's task failed: {e}");
            Err(unknown(
                "the execution failed inside the relayer; it may still land",
            ))
        })
    }

    /// Claims the user's slot and the execution's nonce, then simulates and sends it; gives
    /// the nonce back if nothing was sent.
    async fn claim_and_submit(
        &self,
        user: Felt,
        execution: OutsideExecution,
        signature: Vec<Felt>,
        sponsorship: Option<Sponsorship>,
        fee_mode: FeeMode,
        account: UserAccount,
    ) -> RpcResult<ExecuteTransactionResult> {
        let claim = self.claim_user(user, execution.execute_before).await?;
        let nonce_key = (user, execution.nonce);
        self.claim_nonce(nonce_key, execution.execute_before)?;
        match self
            .submit(
                user,
                &execution,
                &signature,
                sponsorship,
                &fee_mode,
                claim,
                account.deployment(),
            )
            .await
        {
            Ok(result) => Ok(result),
            Err((error, sent)) => {
                if !sent {
                    // Nothing was sent: the user may try again.
                    self.submitted
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&nonce_key);
                }
                Err(error)
            }
        }
    }

    /// The amount of a default-mode fee transfer, if it is exactly `transfer(fee recipient,
    /// amount)` on the gas token; an error otherwise.
    fn signed_fee(&self, call: &Call, token: &GasToken) -> RpcResult<u128> {
        match call.calldata.as_slice() {
            [recipient, low, high]
                if call.to == token.address
                    && call.selector == selector!("transfer")
                    && *recipient == self.fee_recipient
                    && *high == Felt::ZERO =>
            {
                u128::try_from(*low).map_err(|_| execution_error("the fee amount is not a u128"))
            }
            _ => Err(execution_error(
                "the last call is not the fee transfer to this paymaster's recipient in the gas token",
            )),
        }
    }

    /// A `[r, s]` Stark ECDSA signature of `hash` by `public_key` (153 otherwise).
    fn check_stark_signature(
        &self,
        public_key: Felt,
        hash: Felt,
        signature: &[Felt],
    ) -> RpcResult<()> {
        if stark_signature_valid(public_key, hash, signature) {
            Ok(())
        } else {
            self.metrics.refused("signature");
            Err(ErrorObject::paymaster(PaymasterError::InvalidSignature))
        }
    }

    /// The signature of an existing account: off chain against its public key for
    /// OpenZeppelin's account (one storage read instead of an ECDSA run by the node), through
    /// the account's own `is_valid_signature` for any other class.
    async fn check_signature(
        &self,
        user: Felt,
        class: Felt,
        hash: Felt,
        signature: &[Felt],
    ) -> RpcResult<()> {
        if class == crate::OPENZEPPELIN_ACCOUNT_1_0 {
            // The key read a moment ago, if it signed this; else the key read now (one just
            // rotated is the new one).
            let remembered = self.known_key(user);
            if remembered.is_some_and(|key| stark_signature_valid(key, hash, signature)) {
                return Ok(());
            }
            let key = self
                .provider
                .call(
                    FunctionCall {
                        contract_address: user,
                        entry_point_selector: selector!("get_public_key"),
                        calldata: vec![],
                    },
                    BlockId::Tag(BlockTag::PreConfirmed),
                )
                .await
                .map_err(|e| chain_error(e.into()))?;
            let Some(key) = key.first().copied() else {
                return Err(unknown("the account returned no public key"));
            };
            self.remember_key(user, key);
            return self.check_stark_signature(key, hash, signature);
        }
        let mut calldata = vec![hash, Felt::from(signature.len())];
        calldata.extend(signature);
        let answer = self
            .provider
            .call(
                FunctionCall {
                    contract_address: user,
                    entry_point_selector: selector!("is_valid_signature"),
                    calldata,
                },
                // The state the transaction will run on: an account deployed a moment ago is
                // there, and a key just rotated is the new one.
                BlockId::Tag(BlockTag::PreConfirmed),
            )
            .await;
        match answer {
            Ok(values) if values.first() == Some(&VALID) || values.first() == Some(&Felt::ONE) => {
                Ok(())
            }
            Ok(_) => {
                self.metrics.refused("signature");
                Err(ErrorObject::paymaster(PaymasterError::InvalidSignature))
            }
            Err(error) => match ChainError::from(error) {
                error @ ChainError::Transport(_) => Err(chain_error(error)),
                // A panic (a malformed signature) or no such contract: not a valid signature.
                _ => {
                    self.metrics.refused("signature");
                    Err(ErrorObject::paymaster(PaymasterError::InvalidSignature))
                }
            },
        }
    }

    /// Records (user, nonce) as being submitted; refuses one already submitted (a replay, or
    /// the same execution sent twice at once).
    /// Refuses (user, nonce) `key` if it was submitted and its window is still open, without
    /// claiming it ([`Relayer::claim_nonce`] claims it).
    fn refuse_replay(&self, key: (Felt, Felt)) -> RpcResult<()> {
        let now = self.clock.now();
        let submitted = self.submitted.lock().unwrap_or_else(|p| p.into_inner());
        if submitted.get(&key).is_some_and(|expiry| *expiry >= now) {
            self.metrics.refused("replay");
            return Err(execution_error(
                "this outside execution was already submitted",
            ));
        }
        Ok(())
    }

    fn claim_nonce(&self, key: (Felt, Felt), until: u64) -> RpcResult<()> {
        let now = self.clock.now();
        let mut submitted = self.submitted.lock().unwrap_or_else(|p| p.into_inner());
        submitted.retain(|_, expiry| *expiry >= now);
        if submitted.contains_key(&key) {
            self.metrics.refused("replay");
            return Err(execution_error(
                "this outside execution was already submitted",
            ));
        }
        submitted.insert(key, until);
        Ok(())
    }

    /// Simulates the exact transaction, derives the charge (sponsored) or checks the signed
    /// fee (default), and sends it from a leased relayer account.
    #[allow(clippy::too_many_arguments)]
    async fn submit(
        &self,
        user: Felt,
        execution: &OutsideExecution,
        signature: &[Felt],
        sponsorship: Option<Sponsorship>,
        fee_mode: &FeeMode,
        claim: Claim,
        deploy: Option<&Deployment>,
    ) -> Result<ExecuteTransactionResult, (ErrorObject, bool)> {
        let result = self
            .simulate_and_send(user, execution, signature, sponsorship, fee_mode, deploy)
            .await;
        match result {
            Ok((result, watch)) => {
                claim.sent(result.transaction_hash);
                watch();
                Ok(result)
            }
            Err(Failure::Before(error) | Failure::SpentOut(error)) => Err((error, false)),
            Err(Failure::Sending(error)) => {
                // It may have landed, or land later: no other execution of the user's until
                // this one's window is over.
                claim.hold(execution.execute_before);
                Err((error, true))
            }
        }
    }

    /// [`Relayer::try_simulate_and_send`] from one relayer account, then, if that account has
    /// spent its daily budget with the sponsor (the Paymaster refused the simulation with
    /// "PM: relayer budget reached" and its own view agrees), from another, until one has
    /// budget left or none is left to try.
    async fn simulate_and_send(
        &self,
        user: Felt,
        execution: &OutsideExecution,
        signature: &[Felt],
        sponsorship: Option<Sponsorship>,
        fee_mode: &FeeMode,
        deploy: Option<&Deployment>,
    ) -> Result<(ExecuteTransactionResult, impl FnOnce() + use<>), Failure> {
        let mut tried = 0;
        loop {
            let result = self
                .try_simulate_and_send(user, execution, signature, sponsorship, fee_mode, deploy)
                .await;
            match result {
                Err(Failure::SpentOut(error)) => {
                    tried += 1;
                    if tried >= self.pool.accounts().len() {
                        return Err(Failure::Before(error));
                    }
                }
                other => return other,
            }
        }
    }

    fn is_spent_out(&self, account: Felt, sponsor: Felt, charge: u128) -> bool {
        spent_for(&self.spent_out, account, sponsor, charge)
    }

    /// A sponsored simulation from `account` that failed with `error`, charging `charge`: when
    /// the Paymaster said the account's budget with `sponsor` is reached and its view agrees
    /// (what the account may still charge the sponsor today is below the charge: a user's
    /// contract raising the same string proves nothing), the account is passed over for the
    /// sponsor a while ([`SPENT_OUT_FOR`]) and the execution tried from another
    /// ([`Failure::SpentOut`]); otherwise the simulation's failure.
    async fn sponsored_simulation_failed(
        &self,
        error: ChainError,
        account: Felt,
        sponsor: Felt,
        charge: u128,
    ) -> Failure {
        if error.revert_reason() == Some(RELAYER_BUDGET_REACHED) {
            let reader = PaymasterReader::new(self.paymaster, self.provider.as_ref());
            let budget =
                view(reader.relayer_budget(&ContractAddress(sponsor), &ContractAddress(account)))
                    .await;
            if let Ok((budget, spent)) = budget {
                let left = to_u128(budget).saturating_sub(to_u128(spent));
                if left < charge {
                    tracing::warn!(
                        relayer = %format!("{account:#x}"),
                        sponsor = %format!("{sponsor:#x}"),
                        left,
                        charge,
                        "the relayer account's budget with the sponsor is below the charge; \
                         the execution goes from another account"
                    );
                    self.metrics.passed_over("relayer_budget_spent");
                    let mut spent_out = self.spent_out.lock().unwrap_or_else(|p| p.into_inner());
                    if spent_out.len() >= 10_000 {
                        let now = Instant::now();
                        spent_out.retain(|_, (until, _)| *until > now);
                    }
                    spent_out.insert((account, sponsor), (Instant::now() + SPENT_OUT_FOR, left));
                    return Failure::SpentOut(chain_error(error));
                }
            }
        }
        self.simulation_failed(error)
    }

    async fn try_simulate_and_send(
        &self,
        user: Felt,
        execution: &OutsideExecution,
        signature: &[Felt],
        sponsorship: Option<Sponsorship>,
        fee_mode: &FeeMode,
        deploy: Option<&Deployment>,
    ) -> Result<(ExecuteTransactionResult, impl FnOnce() + use<>), Failure> {
        // A new account is deployed first, in the same transaction: the simulation, the
        // charge (sponsored) and the signed fee (default) all cover it.
        let with_deploy = |call: Call| -> Vec<Call> {
            deploy
                .map(|d| d.call.clone())
                .into_iter()
                .chain([call])
                .collect()
        };
        // The account's own nonce check runs in the simulation ("SRC9: duplicated nonce"):
        // no separate view for it.
        // Default mode: the account named as Caller at build time must send it.
        let only = sponsorship.is_none().then_some(execution.caller);
        // Sponsored: not from an account whose budget left with the sponsor today was last
        // read below the charge this execution likely has (the last one of the same calls,
        // else the least).
        let sponsor = sponsorship.map(|s| s.sponsor);
        let likely = sponsorship
            .filter(|_| deploy.is_none())
            .and_then(|s| self.cached_fee(s, &execution.calls))
            .map_or(1, |fee| self.charge_for(fee));
        let spent = |account: Felt| sponsor.is_some_and(|s| self.is_spent_out(account, s, likely));
        if sponsor.is_some()
            && self.pool.any_enabled()
            && self
                .pool
                .accounts()
                .iter()
                .filter(|a| a.enabled())
                .all(|a| spent(a.address))
        {
            self.metrics.refused("relayer_budget_spent");
            return Err(Failure::Before(execution_error(format!(
                "{RELAYER_BUDGET_REACHED}: every relayer account has spent its daily budget \
                 with this sponsor; try again later"
            ))));
        }
        let lease = self
            .pool
            .lease_avoiding(only, spent, self.limits.lease_wait)
            .await
            .ok_or_else(|| unknown("no relayer account is free; try again"))?;
        // The lease may have taken a while: the window is checked again, so nothing goes out
        // that could land after it (a revert at the relayer's cost).
        if self
            .limits
            .closing(execution.execute_before, self.clock.now())
        {
            self.metrics.refused("window_closing");
            return Err(Failure::Before(window_closing(
                self.limits.min_remaining_secs,
            )));
        }
        let account = lease.account().clone();
        let sender = &account.sender;
        let (calls, estimate, charge) = match (sponsorship, fee_mode) {
            (Some(sponsorship), _) => {
                let (policy, _) = self.policy(sponsorship.policy_id).await?;
                let max_charge = to_u128(policy.params.max_charge);
                let paymaster = Paymaster::new(self.paymaster, sender.account());
                let sponsored = |charge: u128| {
                    paymaster.execute_sponsored_getcall(
                        &ContractAddress(sponsorship.sponsor),
                        &sponsorship.policy_id,
                        &ContractAddress(user),
                        &execution.to_paymaster_binding(),
                        &signature.to_vec(),
                        &cairo_u256(charge),
                    )
                };
                // The charge comes from the fee, which hardly depends on the charge's value:
                // start from the fee of the same calls relayed last time (or simulate once
                // with the least charge to learn it), simulate the exact transaction with its
                // charge, and again only if the fee moved out of [charge / margin × 0.9,
                // charge / margin].
                let failed = |e: ChainError, charge: u128| {
                    self.sponsored_simulation_failed(
                        e,
                        account.address,
                        sponsorship.sponsor,
                        charge,
                    )
                };
                let learn = || async {
                    let first = match sender.estimate(&with_deploy(sponsored(1))).await {
                        Ok(first) => first,
                        Err(e) => return Err(failed(e, 1).await),
                    };
                    Ok::<_, Failure>(self.charge_for(first.overall_fee))
                };
                let cached = self
                    .cached_fee(sponsorship, &execution.calls)
                    .filter(|_| deploy.is_none())
                    .map(|fee| self.charge_for(fee))
                    .filter(|charge| *charge <= max_charge);
                let mut from_cache = cached.is_some();
                let mut charge = match cached {
                    Some(charge) => charge,
                    None => learn().await?,
                };
                let mut attempt = 0;
                let (calls, exact) = loop {
                    if charge > max_charge {
                        self.metrics.refused("charge_over_max");
                        return Err(Failure::Before(execution_error(format!(
                            "the fee needs a charge of {charge}, over the policy's max charge {max_charge}"
                        ))));
                    }
                    let calls = with_deploy(sponsored(charge));
                    let exact = match sender.estimate(&calls).await {
                        Ok(exact) => exact,
                        // A charge from the cache may itself be what failed (over an allowance
                        // or a budget): learn the fee afresh, once.
                        Err(_) if from_cache => {
                            from_cache = false;
                            charge = learn().await?;
                            continue;
                        }
                        Err(e) => return Err(failed(e, charge).await),
                    };
                    let needed = self.charge_for(exact.overall_fee);
                    attempt += 1;
                    if needed <= charge && (needed >= charge / 10 * 9 || attempt == 3) {
                        break (calls, exact);
                    }
                    if attempt == 3 {
                        return Err(Failure::Before(execution_error(
                            "the fee kept moving during simulation; try again",
                        )));
                    }
                    charge = needed;
                };
                if deploy.is_none() {
                    self.remember_fee(sponsorship, &execution.calls, exact.overall_fee);
                }
                (calls, exact, charge)
            }
            (None, FeeMode::Default { gas_token, .. }) => {
                let token = self.gas_token(*gas_token)?;
                let signed = execution
                    .calls
                    .last()
                    .map(|c| self.signed_fee(c, &token))
                    .transpose()?
                    .unwrap_or(0);
                let call = Src9Account::new(user, sender.account())
                    .execute_from_outside_v2_getcall(&execution.to_binding(), &signature.to_vec());
                let calls = with_deploy(call);
                let exact = sender
                    .estimate(&calls)
                    .await
                    .map_err(|e| self.simulation_failed(e))?;
                let needed = token.from_fri(scale(exact.overall_fee, self.limits.charge_margin));
                if needed > signed {
                    self.metrics.refused("max_amount_too_low");
                    return Err(Failure::Before(ErrorObject {
                        data: Some(
                            format!("the fee now needs {needed}; {signed} was signed").into(),
                        ),
                        ..ErrorObject::paymaster(PaymasterError::MaxAmountTooLow)
                    }));
                }
                (calls, exact, signed)
            }
            (None, FeeMode::Sponsored { .. }) => {
                return Err(Failure::Before(unknown("no sponsorship")))
            }
        };
        let bounds = GasBounds::from_estimate(&estimate, self.limits.gas_margin);
        let tracking_id = Felt::from(random_u128()?);
        let batcher = self
            .batcher
            .as_ref()
            .filter(|_| sponsorship.is_some() && deploy.is_none() && !self.goes_alone(user));
        let (tx_hash, account, batch) = match batcher {
            Some(batcher) => {
                // The account was leased for the simulation; the batch leases its own.
                drop(lease);
                let entry = Entry::new(
                    calls,
                    bounds,
                    scale(estimate.overall_fee, self.limits.charge_margin),
                    execution.execute_before,
                    (sponsorship.map_or(Felt::ZERO, |s| s.sponsor), charge),
                );
                let sent = batcher.send(entry).await?;
                (sent.tx_hash, sent.account, sent.executions)
            }
            None => {
                // As a batch's send: only the node's definite refusal means nothing went out
                // (the user is free at once); anything else holds the user until the
                // execution's window is over.
                let tx_hash = sender.send_with_bounds(&calls, &bounds).await.map_err(|e| {
                    tracing::error!(relayer = %format!("{:#x}", account.address), "sending failed: {e}");
                    send_failure(e)
                })?;
                drop(lease);
                (tx_hash, account, 1)
            }
        };
        let mode = if sponsorship.is_some() {
            "sponsored"
        } else {
            "default"
        };
        tracing::info!(
            user = %format!("{user:#x}"),
            relayer = %format!("{:#x}", account.address),
            tx = %format!("{tx_hash:#x}"),
            fee_fri = estimate.overall_fee,
            charge,
            mode,
            deploys = deploy.is_some(),
            "submitted"
        );
        self.metrics.submitted(mode, charge);
        let metrics = self.metrics.clone();
        let slots = Arc::downgrade(&self.in_flight);
        let execute_before = execution.execute_before;
        let clock = self.clock.clone();
        self.track(tracking_id, tx_hash, execute_before);
        let tracked = Arc::downgrade(&self.tracked);
        let alone = Arc::downgrade(&self.alone);
        // Watches the receipt once the user's slot says Sent (see `submit`).
        let watch = move || {
            tokio::spawn(async move {
                let outcome = account.sender.wait(tx_hash).await;
                if let Some(tracked) = tracked.upgrade() {
                    if let Some(entry) = tracked
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_mut(&tracking_id)
                    {
                        entry.state = match &outcome {
                            Ok(_) | Err(ChainError::Reverted { .. }) => TrackedState::Landed,
                            Err(_) => TrackedState::Unknown,
                        };
                    }
                }
                match &outcome {
                    Ok(_) => metrics.landed("succeeded"),
                    Err(ChainError::Reverted { reason, .. }) => {
                        metrics.landed("reverted");
                        tracing::error!(
                            tx = %format!("{tx_hash:#x}"),
                            user = %format!("{user:#x}"),
                            batch,
                            %reason,
                            "a relayed transaction reverted on chain: the relayer paid its gas"
                        );
                    }
                    Err(error) => {
                        metrics.landed("unknown");
                        // Its fate is unknown: the account's next nonce is read from the
                        // chain, and the user waits until the execution's window is over.
                        account.sender.forget_nonce().await;
                        tracing::warn!(tx = %format!("{tx_hash:#x}"), "no receipt: {error}");
                    }
                }
                let now = clock.now();
                let (next, goes_alone) =
                    after_landing(outcome.as_ref().map(|_| ()), batch, now, execute_before);
                if let (Some(until), Some(alone)) = (goes_alone, alone.upgrade()) {
                    let mut alone = alone.lock().unwrap_or_else(|p| p.into_inner());
                    if alone.len() >= 1_024 {
                        alone.retain(|_, until| *until > now);
                    }
                    alone.insert(user, until);
                }
                if let Some(slots) = slots.upgrade() {
                    set_slot(&slots, user, Slot::Sent(tx_hash), next);
                }
            });
        };
        Ok((
            ExecuteTransactionResult {
                transaction_hash: tx_hash,
                tracking_id,
            },
            watch,
        ))
    }

    /// Records a sent execution under `tracking_id`; entries are kept a day past their
    /// execution's window.
    fn track(&self, tracking_id: Felt, tx_hash: Felt, execute_before: u64) {
        let now = self.clock.now();
        let mut tracked = self.tracked.lock().unwrap_or_else(|p| p.into_inner());
        // Swept when it has doubled since the last sweep: amortized O(1) a send, whatever
        // stays.
        let mut sweep_at = self
            .tracked_sweep_at
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if tracked.len() >= *sweep_at {
            tracked.retain(|_, t| t.execute_before.saturating_add(TRACKED_SECS) > now);
            *sweep_at = (tracked.len() * 2).max(10_000);
        }
        tracked.insert(
            tracking_id,
            Tracked {
                tx_hash,
                state: TrackedState::Sent,
                execute_before,
            },
        );
    }

    /// `paymaster_trackingIdToLatestHash`: the transaction sent for an execution and where it
    /// is: `active` until its receipt, then `accepted` (its receipt says whether it
    /// succeeded); `dropped` once no receipt came and the execution's window is over, so it can
    /// no longer run.
    pub async fn tracking_id_to_latest_hash(
        &self,
        params: TrackingIdParams,
    ) -> RpcResult<TrackingIdResult> {
        let entry = self
            .tracked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&params.tracking_id)
            .copied()
            .ok_or_else(|| ErrorObject {
                data: Some(
                    "unknown tracking id (ids are kept a day past their execution's window, \
                     and not across a restart of the relayer)"
                        .into(),
                ),
                ..ErrorObject::paymaster(PaymasterError::InvalidId)
            })?;
        let receipt = match entry.state {
            TrackedState::Unknown => {
                // The receipt was not seen while it was awaited: look once more.
                match self.provider.get_transaction_receipt(entry.tx_hash).await {
                    Ok(_) => Lookup::Found,
                    Err(ProviderError::StarknetError(StarknetError::TransactionHashNotFound)) => {
                        Lookup::NotFound
                    }
                    // Anything else says nothing about the transaction.
                    Err(error) => return Err(chain_error(error.into())),
                }
            }
            _ => Lookup::NotAsked,
        };
        if receipt == Lookup::Found {
            if let Some(tracked) = self
                .tracked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_mut(&params.tracking_id)
            {
                tracked.state = TrackedState::Landed;
            }
        }
        let status = tracking_status(entry, receipt, self.clock.now());
        Ok(TrackingIdResult {
            transaction_hash: entry.tx_hash,
            status,
        })
    }

    /// The fee (FRI) of the last relayed transaction with calls of this shape (targets and
    /// selectors), in this mode.
    fn cached_fee(&self, sponsorship: Sponsorship, calls: &[Call]) -> Option<u128> {
        self.fees
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&fee_key(sponsorship, calls))
            .copied()
    }

    fn remember_fee(&self, sponsorship: Sponsorship, calls: &[Call], fee: u128) {
        let mut fees = self.fees.lock().unwrap_or_else(|p| p.into_inner());
        if fees.len() >= 10_000 {
            fees.clear();
        }
        fees.insert(fee_key(sponsorship, calls), fee);
    }

    fn simulation_failed(&self, error: ChainError) -> Failure {
        self.metrics.refused("simulation");
        Failure::Before(chain_error(error))
    }

    /// The charge (payment-token base units) for a simulated fee: the fee times the margin.
    fn charge_for(&self, fee_fri: u128) -> u128 {
        self.payment_token
            .from_fri(scale(fee_fri, self.limits.charge_margin))
    }
}

/// Why an execution failed: before anything was sent, or in sending (it may have landed).
#[derive(Clone)]
pub(crate) enum Failure {
    Before(ErrorObject),
    Sending(ErrorObject),
    /// Before anything was sent: the relayer account has spent its budget with the sponsor
    /// today, and another account may not have (see [`Relayer::simulate_and_send`]).
    SpentOut(ErrorObject),
}

impl From<ErrorObject> for Failure {
    fn from(error: ErrorObject) -> Self {
        Failure::Before(error)
    }
}

/// What a fee is remembered by: the sponsor, the policy and the calls themselves (their
/// Poseidon hash), so that nobody else's calls can set what a user is charged.
type FeeKey = (Felt, u64, Felt);

fn fee_key(sponsorship: Sponsorship, calls: &[Call]) -> FeeKey {
    (
        sponsorship.sponsor,
        sponsorship.policy_id,
        ciro_chain::snip9::calls_hash(calls),
    )
}

/// `value × factor`, rounded up.
fn scale(value: u128, factor: f64) -> u128 {
    ((value as f64) * factor).ceil() as u128
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_running_subscription_above_the_policy_ending_within_the_margin_is_refused() {
        // (expires_at, subscription's limit, policy's limit) at now = 1,000, margin 10 s.
        let ending =
            |expires_at, limit, policy| subscription_ending(expires_at, limit, policy, 1_000, 10);
        assert!(ending(1_001, 20, 10), "1 s left");
        assert!(ending(1_009, 20, 10), "9 s left");
        assert!(!ending(1_010, 20, 10), "10 s left: the margin is kept");
        assert!(
            !ending(1_000, 20, 10),
            "over: the policy's limit already applies"
        );
        assert!(!ending(0, 0, 10), "no subscription");
        assert!(
            !ending(1_005, 10, 10),
            "a limit no higher than the policy's changes nothing"
        );
    }

    #[test]
    fn fri_convert_up_to_token_units() {
        let strk = GasToken {
            address: STRK,
            decimals: 18,
            price_fri: FRI_PER_STRK,
        };
        assert_eq!(strk.from_fri(12_345), 12_345);
        // A 6-decimal token worth 0.5 STRK: 1 FRI is 2e-12 tokens = 2e-6 base units → 1.
        let usdc = GasToken {
            address: Felt::ONE,
            decimals: 6,
            price_fri: FRI_PER_STRK / 2,
        };
        assert_eq!(usdc.from_fri(1), 1);
        assert_eq!(usdc.from_fri(FRI_PER_STRK), 2_000_000);
        // Huge values saturate upwards, never wrap.
        assert!(strk.from_fri(u128::MAX) >= u128::MAX / FRI_PER_STRK);
    }

    #[test]
    fn execute_calldata_is_the_cairo_1_encoding() {
        let calls = [
            Call {
                to: Felt::ONE,
                selector: Felt::TWO,
                calldata: vec![Felt::THREE],
            },
            Call {
                to: Felt::from(4u8),
                selector: Felt::from(5u8),
                calldata: vec![],
            },
        ];
        let expected: Vec<Felt> = [2u8, 1, 2, 1, 3, 4, 5, 0]
            .into_iter()
            .map(Felt::from)
            .collect();
        assert_eq!(execute_calldata(&calls), expected);
    }

    #[test]
    fn a_claim_is_given_back_when_dropped_and_kept_once_sent_or_held() {
        let slots: Slots = Arc::default();
        let user = Felt::from(7u8);
        let claim = |slots: &Slots| {
            slots.lock().unwrap().insert(user, Slot::Submitting);
            Claim {
                slots: slots.clone(),
                user,
                execute_before: 1_000,
                done: false,
            }
        };
        // A request that fails before sending frees the slot.
        drop(claim(&slots));
        assert_eq!(slots.lock().unwrap().get(&user), None);
        // One whose task panicked may have sent it: held until its window is over.
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _claim = claim(&slots);
            panic!("a bug half-way");
        }));
        assert!(panicked.is_err());
        assert_eq!(slots.lock().unwrap().remove(&user), Some(Slot::Held(1_000)));
        // Sent: the slot names the transaction until its receipt is seen.
        claim(&slots).sent(Felt::from(99u8));
        assert_eq!(
            slots.lock().unwrap().get(&user),
            Some(&Slot::Sent(Felt::from(99u8)))
        );
        // The watcher of another transaction changes nothing.
        set_slot(&slots, user, Slot::Sent(Felt::from(98u8)), None);
        assert_eq!(
            slots.lock().unwrap().get(&user),
            Some(&Slot::Sent(Felt::from(99u8)))
        );
        // Its own watcher frees it, or holds it after a revert.
        set_slot(
            &slots,
            user,
            Slot::Sent(Felt::from(99u8)),
            Some(Slot::Held(1_000)),
        );
        assert_eq!(slots.lock().unwrap().get(&user), Some(&Slot::Held(1_000)));
        slots.lock().unwrap().clear();
        claim(&slots).hold(2_000);
        assert_eq!(slots.lock().unwrap().get(&user), Some(&Slot::Held(2_000)));
    }

    #[test]
    fn a_revert_holds_a_user_alone_but_frees_a_batchs_users_and_sends_them_alone() {
        let reverted = ChainError::reverted("0x1 ('boom')".into());
        let lost = ChainError::Transport("down".into());
        let (now, before) = (1_000, 5_000);
        let hold = now + REVERT_HOLD_SECS;
        assert_eq!(after_landing(Ok(()), 1, now, before), (None, None));
        assert_eq!(after_landing(Ok(()), 8, now, before), (None, None));
        assert_eq!(
            after_landing(Err(&reverted), 1, now, before),
            (Some(Slot::Held(hold)), None)
        );
        assert_eq!(
            after_landing(Err(&reverted), 2, now, before),
            (None, Some(hold))
        );
        for batch in [1, 8] {
            assert_eq!(
                after_landing(Err(&lost), batch, now, before),
                (Some(Slot::Held(before)), None),
                "a transaction that may still land holds the user, batched or not"
            );
        }
    }

    #[test]
    fn a_revert_the_sponsor_caused_holds_no_user() {
        // The sponsor deactivates its policy (or withdraws, narrows it, removes the relayer)
        // while an execution that simulated fine is in flight: the relayer pays the revert,
        // and the user, who could not have known, is not held for it.
        let (now, before) = (1_000, 5_000);
        for reason in NOT_THE_USERS {
            let hex: String = reason.bytes().map(|b| format!("{b:02x}")).collect();
            let reverted = ChainError::reverted(format!(
                "Execution failed. Failure reason:\n(0x{hex} ('{reason}'), \
                 0x454e545259504f494e545f4641494c4544 ('ENTRYPOINT_FAILED'))."
            ));
            assert!(sponsor_caused(&reverted), "{reverted:?}");
            for batch in [1, 8] {
                assert_eq!(
                    after_landing(Err(&reverted), batch, now, before),
                    (None, None),
                    "{reason} in a batch of {batch}"
                );
            }
        }
        // The same string raised in the user's call tree (a contract its calls reach, which
        // may be its own) comes up through more frames, each adding a marker: held.
        let marker = "0x454e545259504f494e545f4641494c4544 ('ENTRYPOINT_FAILED')";
        let spoofed = ChainError::reverted(format!(
            "Execution failed. Failure reason:\n(0x504d3a20757365722062\
             6c6f636b6564 ('PM: user blocked'), {marker}, {marker}, {marker})."
        ));
        assert_eq!(spoofed.revert_reason(), Some("PM: user blocked"));
        assert!(!sponsor_caused(&spoofed));
        for batch in [1, 8] {
            assert_ne!(
                after_landing(Err(&spoofed), batch, now, before),
                (None, None)
            );
        }
        // The user's own calls failing still hold it.
        let own = ChainError::reverted("0x1 ('u256_sub Overflow')".into());
        assert!(!sponsor_caused(&own));
        assert_eq!(
            after_landing(Err(&own), 1, now, before),
            (Some(Slot::Held(now + REVERT_HOLD_SECS)), None)
        );
    }

    #[test]
    fn a_tracked_execution_is_dropped_only_when_no_transaction_can_come() {
        let entry = |state| Tracked {
            tx_hash: Felt::ONE,
            state,
            execute_before: 1_000,
        };
        use TrackedState::*;
        let late = 1_000 + DROPPED_AFTER_SECS + 1;
        assert_eq!(
            tracking_status(entry(Sent), Lookup::NotAsked, late),
            TrackingStatus::Active
        );
        assert_eq!(
            tracking_status(entry(Landed), Lookup::NotAsked, 0),
            TrackingStatus::Accepted
        );
        assert_eq!(
            tracking_status(entry(Unknown), Lookup::Found, late),
            TrackingStatus::Accepted
        );
        // No receipt: active inside the window and just after it, dropped only past the
        // margin.
        assert_eq!(
            tracking_status(entry(Unknown), Lookup::NotFound, 999),
            TrackingStatus::Active
        );
        assert_eq!(
            tracking_status(entry(Unknown), Lookup::NotFound, 1_001),
            TrackingStatus::Active
        );
        assert_eq!(
            tracking_status(entry(Unknown), Lookup::NotFound, late),
            TrackingStatus::Dropped
        );
    }

    #[test]
    fn scale_rounds_up() {
        assert_eq!(scale(10, 1.2), 12);
        assert_eq!(scale(11, 1.2), 14);
    }
}
