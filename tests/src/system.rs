//! The CIRO system as the JobMgr and CDC Pool specifications see it: a test token, a CDC Pool
//! and a JobMgr wired together (JobMgr holds JOB_MANAGER in the pool), roles granted to the
//! named actors, every party funded and approving both contracts.
//!
//! Two actors take roles the job-side suites have no other use for: the Sponsor's account is
//! the pool's treasury, the Relayer's holds SLASHER. The Verifier holds VERIFIER in JobMgr.
//! Both contracts are sealed once wired, as a real deployment leaves them: business is open
//! and every further grant or parameter change goes through the timelock.

use anyhow::Result;
use ciro_chain::bindings::cdc_pool::{self, CdcPool, CdcPoolReader};
use ciro_chain::bindings::constructor_calldata;
use ciro_chain::bindings::job_mgr::{self, JobMgr, JobMgrReader};
use ciro_chain::bindings::test_token::{TestToken, TestTokenReader};
use ciro_chain::cainome::cairo_serde::ContractAddress;
use ciro_chain::constants::contracts;
use ciro_chain::starknet::accounts::Account;
use ciro_chain::starknet::core::types::Felt;
use ciro_chain::starknet::core::utils::cairo_short_string_to_felt;
use ciro_chain::tx::{call, send, TxOutcome};
use ciro_chain::ChainError;
use ciro_deploy::deployment::{JobsConfig, PoolConfig, RoleConfig};
use ciro_deploy::{DeployConfig, Manifest};

use crate::fixtures::u256;
use crate::{Actor, TestNet};
use ciro_chain::starknet::providers::jsonrpc::HttpTransport;
use ciro_chain::starknet::providers::JsonRpcClient;
use ciro_chain::RpcAccount;

/// The pool's treasury.
pub const TREASURY: Actor = Actor::Sponsor;
/// Holds SLASHER in the pool.
pub const SLASHER: Actor = Actor::Relayer;
/// What every funded party holds at the start, approved to both contracts.
pub const FUNDS: u128 = 1_000_000;
/// The parties [`System::deploy`] funds with [`FUNDS`] each.
pub const FUNDED: [Actor; 7] = [
    Actor::Submitter,
    Actor::WorkerA,
    Actor::WorkerB,
    Actor::WorkerC,
    Actor::Delegator,
    Actor::Attacker,
    Actor::Verifier,
];
/// Upgrade delay of both contracts: the timelock of upgrades, grants and parameters.
pub const UPGRADE_DELAY: u64 = 3_600;

/// Minimum own stake per hardware tier (VRAM < 16 GB, < 40 GB, < 80 GB, >= 80 GB).
pub const MIN_STAKE: [u128; 4] = [1_000, 2_000, 4_000, 8_000];
pub const EXIT_WINDOW: u64 = 7 * 86_400;
pub const SLASH_CHALLENGE_WINDOW: u64 = 86_400;
/// Seconds the arbiter has to decide a challenged slash or a dispute.
pub const ARBITRATION_WINDOW: u64 = 3 * 86_400;
/// Seconds new stake and delegations wait before they earn rewards.
pub const WARMUP: u64 = 86_400;
pub const CHALLENGE_BOND: u128 = 100;
pub const BENEFICIARY_SHARE_BPS: u16 = 5_000;
/// Default slash per reason: Unavailable, PoorPerformance, ProtocolViolation, Malicious, Fraud.
pub const SLASH_BPS: [u16; 5] = [100, 500, 1_000, 2_500, 5_000];

pub const PROTOCOL_FEE_BPS: u16 = 500;
pub const MIN_FEE: u128 = 10;
pub const RESULT_WINDOW: u64 = 3_600;
pub const ASSIGNMENT_TIMEOUT: u64 = 600;
/// Least dispute bond, and the bond's share of a job's fee.
pub const MIN_DISPUTE_BOND: u128 = 50;
pub const DISPUTE_BOND_BPS: u16 = 1_000;
/// The dispute bond of a [`JOB_FEE`] job: max(50, 10% of 1,000).
pub const DISPUTE_BOND: u128 = 100;
pub const MAX_JOB_DURATION: u64 = 86_400;
pub const MAX_DISPUTE_SLASH_BPS: u16 = 5_000;
/// A disputer wins at most this many times the job's fee from a slash.
pub const MAX_AWARD_MULTIPLE: u16 = 2;
/// Jobs paying less move no reputation.
pub const MIN_RATED_FEE: u128 = 100;

/// A model's price in the fixtures, and the fee jobs pay.
pub const MODEL_PRICE: u128 = 100;
pub const JOB_FEE: u128 = 1_000;
/// Capability flags (the contracts' FLAG_*, defined once in `ciro-protocol`).
pub use ciro_chain::constants::flags::{
    BF16 as FLAG_BF16, CUDA as FLAG_CUDA, FP16 as FLAG_FP16, INT8 as FLAG_INT8, TEE as FLAG_TEE,
};

/// The deployment the specifications run on: the same `deploy_all` and config format a real
/// network gets, with the suite's parameters and role holders, the test token minted to no one
/// (the parties are funded by [`System::fund`], so the supply is what the suite minted).
pub fn deploy_config(net: &TestNet) -> DeployConfig {
    let holder = |actor: Actor| vec![net.contract_address(actor).0];
    DeployConfig {
        payment_token: None,
        upgrade_delay: UPGRADE_DELAY,
        treasury: Some(net.contract_address(TREASURY).0),
        roles: RoleConfig {
            coordinator: holder(Actor::Coordinator),
            arbiter: holder(Actor::Arbiter),
            pauser: holder(Actor::Pauser),
            slasher: holder(SLASHER),
            verifier: holder(Actor::Verifier),
        },
        pool: pool_config(),
        jobs: jobs_config(),
        test_token_supply: 0,
        seal: true,
    }
}

/// The pool's parameters with `treasury` (the suite's [`PoolConfig`]).
pub fn pool_params_with(treasury: ContractAddress) -> cdc_pool::PoolParams {
    DeployConfig {
        treasury: None,
        pool: pool_config(),
        ..DeployConfig::default()
    }
    .pool_params(treasury.0)
}

/// JobMgr's parameters (the suite's [`JobsConfig`]).
pub fn job_params() -> job_mgr::JobParams {
    DeployConfig {
        jobs: jobs_config(),
        ..DeployConfig::default()
    }
    .job_params()
}

/// The suite's pool parameters, in the deployment config's form.
pub fn pool_config() -> PoolConfig {
    PoolConfig {
        min_stake: MIN_STAKE,
        exit_window: EXIT_WINDOW,
        challenge_window: SLASH_CHALLENGE_WINDOW,
        arbitration_window: ARBITRATION_WINDOW,
        challenge_bond: CHALLENGE_BOND,
        beneficiary_share_bps: BENEFICIARY_SHARE_BPS,
        slash_bps: SLASH_BPS,
        warmup: WARMUP,
    }
}

/// The suite's JobMgr parameters, in the deployment config's form.
pub fn jobs_config() -> JobsConfig {
    JobsConfig {
        protocol_fee_bps: PROTOCOL_FEE_BPS,
        min_fee: MIN_FEE,
        challenge_window: RESULT_WINDOW,
        assignment_timeout: ASSIGNMENT_TIMEOUT,
        min_dispute_bond: MIN_DISPUTE_BOND,
        dispute_bond_bps: DISPUTE_BOND_BPS,
        max_job_duration: MAX_JOB_DURATION,
        arbitration_window: ARBITRATION_WINDOW,
        max_dispute_slash_bps: MAX_DISPUTE_SLASH_BPS,
        max_award_multiple: MAX_AWARD_MULTIPLE,
        min_rated_fee: MIN_RATED_FEE,
    }
}

/// An H100-class worker: 80 GB, compute capability 9.0, every flag but TEE.
pub fn h100() -> cdc_pool::Capabilities {
    cdc_pool::Capabilities {
        gpu_model: cairo_short_string_to_felt("H100").expect("short string"),
        vram_mb: 81_920,
        compute_capability: 90,
        flags: FLAG_CUDA | FLAG_FP16 | FLAG_BF16 | FLAG_INT8,
    }
}

/// A consumer GPU: 8 GB, compute capability 7.5, CUDA and FP16.
pub fn small_gpu() -> cdc_pool::Capabilities {
    cdc_pool::Capabilities {
        gpu_model: cairo_short_string_to_felt("T4").expect("short string"),
        vram_mb: 8_192,
        compute_capability: 75,
        flags: FLAG_CUDA | FLAG_FP16,
    }
}

/// A model needing 16 GB, CUDA and FP16, and stake tier 0.
pub fn requirements() -> job_mgr::Requirements {
    job_mgr::Requirements {
        min_vram_mb: 16_384,
        required_flags: FLAG_CUDA | FLAG_FP16,
        min_stake_tier: 0,
        min_score: 0,
    }
}

/// The terms a job paying `fee` is submitted under with [`job_params`] and no options.
pub fn terms_for(fee: u128) -> job_mgr::JobTerms {
    job_mgr::JobTerms {
        challenge_window: RESULT_WINDOW,
        release_after: ASSIGNMENT_TIMEOUT,
        arbitration_window: ARBITRATION_WINDOW,
        protocol_fee_bps: PROTOCOL_FEE_BPS,
        max_slash_bps: MAX_DISPUTE_SLASH_BPS,
        max_award_multiple: MAX_AWARD_MULTIPLE,
        rated: fee >= MIN_RATED_FEE,
    }
}

/// The dispute bond of a job paying `fee` under [`job_params`].
pub fn bond_for(fee: u128) -> u128 {
    (fee * DISPUTE_BOND_BPS as u128 / 10_000).max(MIN_DISPUTE_BOND)
}

/// Job options that narrow nothing.
pub fn no_options() -> job_mgr::JobOptions {
    ciro_chain::clients::no_options()
}

pub fn role(name: &str) -> Felt {
    ciro_chain::role_felt(name).expect("role names are short strings")
}

/// The deployed system.
pub struct System {
    pub net: TestNet,
    pub token: Felt,
    pub pool: Felt,
    pub job_mgr: Felt,
    /// Deployed and sealed with the rest (the Paymaster's own specs use their own fixture).
    pub paymaster: Felt,
    /// What `deploy_all` recorded.
    pub manifest: Manifest,
}

/// Deploys a CDC Pool with these arguments (from the admin's account).
pub async fn try_deploy_pool(
    net: &TestNet,
    token: Felt,
    params: &cdc_pool::PoolParams,
) -> Result<Felt, ChainError> {
    let deployer = net.account(Actor::Admin);
    let calldata = constructor_calldata(CdcPool::new(Felt::ZERO, &deployer).constructor_getcall(
        &net.contract_address(Actor::Admin),
        &ContractAddress(token),
        &UPGRADE_DELAY,
        params,
    ));
    net.try_deploy(Actor::Admin, "CdcPool", calldata).await
}

/// Deploys a JobMgr with these arguments (from the admin's account).
pub async fn try_deploy_job_mgr(
    net: &TestNet,
    token: Felt,
    pool: Felt,
    params: &job_mgr::JobParams,
) -> Result<Felt, ChainError> {
    let deployer = net.account(Actor::Admin);
    let calldata = constructor_calldata(JobMgr::new(Felt::ZERO, &deployer).constructor_getcall(
        &net.contract_address(Actor::Admin),
        &ContractAddress(token),
        &ContractAddress(pool),
        &UPGRADE_DELAY,
        params,
    ));
    net.try_deploy(Actor::Admin, "JobMgr", calldata).await
}

impl System {
    /// The system deployed by `deploy_all` with [`deploy_config`], exactly as a real
    /// network is: test token, pool, JobMgr and Paymaster; roles: COORDINATOR (Coordinator),
    /// ARBITER (Arbiter) and VERIFIER (Verifier) in JobMgr; ARBITER (Arbiter), SLASHER
    /// ([`SLASHER`]) and JOB_MANAGER (JobMgr) in the pool; PAUSER (Pauser) in all; all sealed.
    /// The [`FUNDED`] parties hold [`FUNDS`] each, approved to the pool and JobMgr.
    pub async fn deploy() -> Result<Self> {
        Self::deploy_sealed(true).await
    }

    /// [`Self::deploy`] left in the setup phase (not sealed).
    pub async fn deploy_unsealed() -> Result<Self> {
        Self::deploy_sealed(false).await
    }

    async fn deploy_sealed(seal: bool) -> Result<Self> {
        let net = TestNet::new().await?;
        let config = DeployConfig {
            seal,
            ..deploy_config(&net)
        };
        let mut manifest = Manifest::default();
        net.deploy_all(&config, &mut manifest, |_| {}).await?;
        let system = Self {
            token: manifest.contract(contracts::TEST_TOKEN)?,
            pool: manifest.contract(contracts::CDC_POOL)?,
            job_mgr: manifest.contract(contracts::JOB_MGR)?,
            paymaster: manifest.contract(contracts::PAYMASTER)?,
            manifest,
            net,
        };
        for actor in FUNDED {
            system.fund(actor, FUNDS).await?;
        }
        Ok(system)
    }

    /// Mints `amount` to `actor` and approves both contracts for all it holds.
    pub async fn fund(&self, actor: Actor, amount: u128) -> Result<()> {
        let account = self.net.account(actor);
        let token = TestToken::new(self.token, &account);
        let calls = vec![
            token.mint_getcall(&self.net.contract_address(actor), &u256(amount)),
            token.approve_getcall(&ContractAddress(self.pool), &u256(u128::MAX)),
            token.approve_getcall(&ContractAddress(self.job_mgr), &u256(u128::MAX)),
        ];
        send(&self.net.provider, account.execute_v3(calls)).await?;
        Ok(())
    }

    pub fn pool_as(&self, actor: Actor) -> CdcPool<RpcAccount> {
        CdcPool::new(self.pool, self.net.account(actor))
    }

    pub fn jobs_as(&self, actor: Actor) -> JobMgr<RpcAccount> {
        JobMgr::new(self.job_mgr, self.net.account(actor))
    }

    pub fn pool_reader(&self) -> CdcPoolReader<&JsonRpcClient<HttpTransport>> {
        CdcPoolReader::new(self.pool, &self.net.provider)
    }

    pub fn jobs_reader(&self) -> JobMgrReader<&JsonRpcClient<HttpTransport>> {
        JobMgrReader::new(self.job_mgr, &self.net.provider)
    }

    pub fn addr(&self, actor: Actor) -> ContractAddress {
        self.net.contract_address(actor)
    }

    /// A time the contract computed as "its block time + `delay`", read back from the chain
    /// as `actual`: asserts it is within 2 s of the latest block's time + `delay` (devnet's
    /// clock may tick between a transaction and the next read) and returns it, so that exact
    /// comparisons of events and views can use it.
    pub async fn read_back(&self, actual: u64, delay: u64) -> u64 {
        let now = self.net.now().await.expect("now");
        assert!(
            actual.abs_diff(now + delay) <= 2,
            "{actual} is not the chain's time {now} + {delay}"
        );
        actual
    }

    /// The pool's parameters as deployed.
    pub fn pool_params(&self) -> cdc_pool::PoolParams {
        pool_params_with(self.addr(TREASURY))
    }

    /// The admin schedules `params` in the pool, waits the timelock and executes them.
    pub async fn set_pool_params(&self, params: &cdc_pool::PoolParams) {
        self.send(self.pool_as(Actor::Admin).schedule_params(params))
            .await
            .expect("schedule_params");
        self.advance(UPGRADE_DELAY).await;
        self.send(self.pool_as(Actor::Admin).execute_params())
            .await
            .expect("execute_params");
    }

    /// The admin schedules `params` in JobMgr, waits the timelock and executes them.
    pub async fn set_job_params(&self, params: &job_mgr::JobParams) {
        self.send(self.jobs_as(Actor::Admin).schedule_params(params))
            .await
            .expect("schedule_params");
        self.advance(UPGRADE_DELAY).await;
        self.send(self.jobs_as(Actor::Admin).execute_params())
            .await
            .expect("execute_params");
    }

    /// Token balance of `holder`.
    pub async fn balance(&self, holder: Felt) -> u128 {
        call(
            TestTokenReader::new(self.token, &self.net.provider)
                .balance_of(&ContractAddress(holder)),
        )
        .await
        .expect("balance_of")
        .low
    }

    pub async fn balance_of(&self, actor: Actor) -> u128 {
        self.balance(self.net.address(actor)).await
    }

    /// Moves the chain's clock forward.
    pub async fn advance(&self, seconds: u64) {
        self.net
            .devnet
            .increase_time(seconds)
            .await
            .expect("increase_time");
    }

    /// Registers `actor` as a worker on `capabilities` and stakes `stake`.
    pub async fn worker(&self, actor: Actor, capabilities: &cdc_pool::Capabilities, stake: u128) {
        let pool = self.pool_as(actor);
        send(
            &self.net.provider,
            pool.register_worker(capabilities, &Felt::from(0xa77e57u64)),
        )
        .await
        .expect("register_worker");
        if stake > 0 {
            send(&self.net.provider, pool.stake(&u256(stake)))
                .await
                .expect("stake");
        }
    }

    /// `actor` activates its own stake: what finished its warm-up earns from now on.
    pub async fn activate(&self, actor: Actor) {
        self.send(self.pool_as(actor).activate(&self.addr(actor)))
            .await
            .expect("activate");
    }

    /// `delegator` activates its delegation to `worker` (see [`Self::activate`]).
    pub async fn activate_delegation(&self, delegator: Actor, worker: Actor) {
        self.send(
            self.pool_as(delegator)
                .activate_delegation(&self.addr(delegator), &self.addr(worker)),
        )
        .await
        .expect("activate_delegation");
    }

    /// Lets [`WARMUP`] pass and activates `actor`'s own stake: from now on it earns rewards.
    pub async fn warm_up(&self, actor: Actor) {
        self.advance(WARMUP).await;
        self.activate(actor).await;
    }

    /// Lets [`WARMUP`] pass and activates `delegator`'s delegation to `worker`.
    pub async fn warm_up_delegation(&self, delegator: Actor, worker: Actor) {
        self.advance(WARMUP).await;
        self.activate_delegation(delegator, worker).await;
    }

    /// An H100 worker staked at its tier's minimum (tier 3).
    pub async fn active_worker(&self, actor: Actor) {
        self.worker(actor, &h100(), MIN_STAKE[3]).await;
    }

    /// Registers a model (owner: Admin) with [`requirements`] and [`MODEL_PRICE`]; its id.
    pub async fn model(&self) -> u64 {
        send(
            &self.net.provider,
            self.jobs_as(Actor::Admin).register_model(
                &u256(0x5eed),
                &requirements(),
                &u256(MODEL_PRICE),
            ),
        )
        .await
        .expect("register_model");
        call(self.jobs_reader().model_count())
            .await
            .expect("model_count")
    }

    /// The Submitter submits a job on `model_id` paying [`JOB_FEE`], due in an hour; its id.
    pub async fn job(&self, model_id: u64) -> u64 {
        self.job_with(model_id, Actor::Submitter, JOB_FEE, &no_options())
            .await
    }

    /// `submitter` submits a job on `model_id` paying `fee` under `options`, due in an hour;
    /// its id.
    pub async fn job_with(
        &self,
        model_id: u64,
        submitter: Actor,
        fee: u128,
        options: &job_mgr::JobOptions,
    ) -> u64 {
        let deadline = self.net.now().await.expect("now") + 3_600;
        send(
            &self.net.provider,
            self.jobs_as(submitter).submit_job(
                &model_id,
                &u256(0x1),
                &u256(fee),
                &deadline,
                options,
            ),
        )
        .await
        .expect("submit_job");
        call(self.jobs_reader().job_count())
            .await
            .expect("job_count")
    }

    /// A model, an active WorkerA and a job assigned to it; (model id, job id).
    pub async fn assigned_job(&self) -> (u64, u64) {
        let model = self.model().await;
        self.active_worker(Actor::WorkerA).await;
        let job = self.job(model).await;
        send(
            &self.net.provider,
            self.jobs_as(Actor::Coordinator)
                .assign_job(&job, &self.addr(Actor::WorkerA)),
        )
        .await
        .expect("assign_job");
        (model, job)
    }

    /// The coordinator assigns `job` to `worker`, who commits a result.
    pub async fn complete(&self, job: u64, worker: Actor) {
        self.send(
            self.jobs_as(Actor::Coordinator)
                .assign_job(&job, &self.addr(worker)),
        )
        .await
        .expect("assign_job");
        self.send(self.jobs_as(worker).submit_result(&job, &u256(0x07)))
            .await
            .expect("submit_result");
    }

    /// The slasher opens a pending slash of `worker` for `reason` at the reason's default
    /// share, with no beneficiary.
    pub async fn slasher_slash(&self, worker: Actor, reason: cdc_pool::SlashReason) {
        self.send(self.pool_as(SLASHER).slash(
            &self.addr(worker),
            &reason,
            &0,
            &felt(1),
            &nobody(),
            &u256(0),
        ))
        .await
        .expect("slash");
    }

    /// [`Self::assigned_job`] with WorkerA's result committed; (model id, job id).
    pub async fn completed_job(&self) -> (u64, u64) {
        let (model, job) = self.assigned_job().await;
        send(
            &self.net.provider,
            self.jobs_as(Actor::WorkerA)
                .submit_result(&job, &u256(0x07)),
        )
        .await
        .expect("submit_result");
        (model, job)
    }

    pub async fn job_info(&self, job_id: u64) -> job_mgr::JobInfo {
        call(self.jobs_reader().get_job(&job_id))
            .await
            .expect("get_job")
    }

    /// The time of `job_id`'s current assignment as the chain shows it (0: none), which
    /// `release_job` names.
    pub async fn assigned_at(&self, job_id: u64) -> u64 {
        self.job_info(job_id).await.job.assigned_at
    }

    pub async fn worker_info(&self, actor: Actor) -> cdc_pool::WorkerInfo {
        call(self.pool_reader().get_worker(&self.addr(actor)))
            .await
            .expect("get_worker")
    }

    /// The conservation invariants of both contracts: JobMgr's balance is Σ escrow + Σ open
    /// bonds; the pool's is Σ stakes + Σ delegations + Σ exits + rewards + bonds.
    pub async fn assert_invariants(&self, label: &str) {
        let (escrow, bonds) = call(self.jobs_reader().totals()).await.expect("totals");
        assert_eq!(
            self.balance(self.job_mgr).await,
            escrow.low + bonds.low,
            "{label}: JobMgr balance == escrow + dispute bonds"
        );
        let t = call(self.pool_reader().totals()).await.expect("totals");
        assert_eq!(
            self.balance(self.pool).await,
            t.stakes.low + t.delegations.low + t.exits.low + t.rewards.low + t.bonds.low,
            "{label}: pool balance == stakes + delegations + exits + rewards + bonds"
        );
    }

    /// Sends an execution and returns the outcome (test sugar).
    pub async fn send(
        &self,
        execution: ciro_chain::starknet::accounts::ExecutionV3<'_, RpcAccount>,
    ) -> Result<TxOutcome, ChainError> {
        send(&self.net.provider, execution).await
    }
}

/// A felt from a small number (hashes and ids in the specs).
pub fn felt(value: u64) -> Felt {
    Felt::from(value)
}

/// The zero address (no beneficiary).
pub fn nobody() -> ContractAddress {
    ContractAddress(Felt::ZERO)
}
