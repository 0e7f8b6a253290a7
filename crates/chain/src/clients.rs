//! The contracts in the services' words: a [`JobMgrClient`] and a [`PoolClient`] act for one
//! account through a shared [`TxSender`] (nonces, fee margin, transport retries), build every
//! call with the cainome bindings, batch calls into one multicall where the contract has no
//! batch entry point, and return the ids the contracts assign from their events.

use std::sync::Arc;

use cainome::cairo_serde::{ContractAddress, U256};
use starknet::accounts::ConnectedAccount;
use starknet::core::types::{BlockId, BlockTag, Call, EventFilter, Felt};
use starknet::macros::selector;

use crate::bindings::cdc_pool::{self, CdcPool, CdcPoolReader};
use crate::bindings::erc20::{Erc20, Erc20Reader};
use crate::bindings::job_mgr::{self, JobMgr, JobMgrReader};
use crate::sender::TxSender;
use crate::tx::{call, TxOutcome};
use crate::ChainError;

/// A `u256` of the bindings from a `u128`.
pub fn u256(value: u128) -> U256 {
    U256 {
        low: value,
        high: 0,
    }
}

/// Whether a `u256` of the bindings is zero.
pub fn is_zero(value: &U256) -> bool {
    value.low == 0 && value.high == 0
}

/// A `u256` of the bindings from 32 big-endian bytes (a SHA-256 digest).
pub fn u256_from_digest(digest: &[u8; 32]) -> U256 {
    let mut high = [0u8; 16];
    let mut low = [0u8; 16];
    high.copy_from_slice(&digest[..16]);
    low.copy_from_slice(&digest[16..]);
    U256 {
        low: u128::from_be_bytes(low),
        high: u128::from_be_bytes(high),
    }
}

/// The first event of `contract` in `outcome` that `pick` recognizes (the event named `event`).
fn find_event<E, T>(
    outcome: &TxOutcome,
    contract: Felt,
    event: &'static str,
    pick: impl Fn(E) -> Option<T>,
) -> Result<T, ChainError>
where
    E: for<'a> TryFrom<&'a starknet::core::types::Event, Error = String>,
{
    outcome
        .events_from(contract)
        .into_iter()
        .filter_map(|event| E::try_from(event).ok())
        .find_map(pick)
        .ok_or_else(|| ChainError::MissingEvent {
            tx_hash: outcome.tx_hash,
            contract,
            event,
        })
}

/// Job options that pin `requirements` (a model's, as the submitter read them), with the
/// default release limit: a model owner who lowers the model's requirements before the
/// submission lands cannot widen the job to weaker workers.
pub fn pinned_options(requirements: &job_mgr::Requirements) -> job_mgr::JobOptions {
    job_mgr::JobOptions {
        min_vram_mb: requirements.min_vram_mb,
        extra_flags: requirements.required_flags,
        min_stake_tier: requirements.min_stake_tier,
        min_score: requirements.min_score,
        release_after: 0,
    }
}

/// Job options that narrow nothing: the model's requirements as they are, the default
/// release limit.
pub fn no_options() -> job_mgr::JobOptions {
    job_mgr::JobOptions {
        min_vram_mb: 0,
        extra_flags: 0,
        min_stake_tier: 0,
        min_score: 0,
        release_after: 0,
    }
}

/// JobMgr as one account acts on it.
pub struct JobMgrClient<A> {
    pub address: Felt,
    sender: Arc<TxSender<A>>,
}

impl<A> JobMgrClient<A>
where
    A: ConnectedAccount + Sync + Send + Clone,
{
    pub fn new(address: Felt, sender: Arc<TxSender<A>>) -> Self {
        Self { address, sender }
    }

    fn binding(&self) -> JobMgr<A> {
        JobMgr::new(self.address, self.sender.account().clone())
    }

    /// A reader on the sender's provider.
    pub fn reader(&self) -> JobMgrReader<&A::Provider> {
        JobMgrReader::new(self.address, self.sender.account().provider())
    }

    /// Registers a model; its id and the transaction.
    pub async fn register_model(
        &self,
        model_hash: U256,
        requirements: &job_mgr::Requirements,
        price: U256,
    ) -> Result<(u64, TxOutcome), ChainError> {
        let call = self
            .binding()
            .register_model_getcall(&model_hash, requirements, &price);
        let outcome = self.sender.execute(vec![call]).await?;
        let id = find_event(
            &outcome,
            self.address,
            "ModelSet",
            |e: job_mgr::Event| match e {
                job_mgr::Event::ModelSet(m) => Some(m.model_id),
                _ => None,
            },
        )?;
        Ok((id, outcome))
    }

    /// The calls of a job submission: the token approval of `fee`, then `submit_job` (one
    /// multicall, sent directly by [`Self::submit_job`] or through a paymaster relayer).
    pub fn submit_job_calls(
        &self,
        token: Felt,
        model_id: u64,
        input_hash: U256,
        fee: U256,
        deadline: u64,
        options: &job_mgr::JobOptions,
    ) -> Vec<Call> {
        let submit =
            self.binding()
                .submit_job_getcall(&model_id, &input_hash, &fee, &deadline, options);
        self.approved(token, &fee, submit)
    }

    /// The calls of a batch submission (JobMgr's `submit_batch`: `items` inputs of one model
    /// under the manifest hashing to `manifest_hash`, for `fee` in all): the token approval of
    /// `fee`, then `submit_batch`.
    #[allow(clippy::too_many_arguments)]
    pub fn submit_batch_calls(
        &self,
        token: Felt,
        model_id: u64,
        manifest_hash: U256,
        items: u32,
        fee: U256,
        deadline: u64,
        options: &job_mgr::JobOptions,
    ) -> Vec<Call> {
        let submit = self.binding().submit_batch_getcall(
            &model_id,
            &manifest_hash,
            &items,
            &fee,
            &deadline,
            options,
        );
        self.approved(token, &fee, submit)
    }

    /// `call` after the approval of `fee` of `token` to JobMgr (one multicall).
    fn approved(&self, token: Felt, fee: &U256, call: Call) -> Vec<Call> {
        let approve = Erc20::new(token, self.sender.account().clone())
            .approve_getcall(&ContractAddress(self.address), fee);
        vec![approve, call]
    }

    /// The id of the job a submission transaction created (its `JobSubmitted` event).
    pub fn submitted_job_id(&self, outcome: &TxOutcome) -> Result<u64, ChainError> {
        find_event(
            outcome,
            self.address,
            "JobSubmitted",
            |e: job_mgr::Event| match e {
                job_mgr::Event::JobSubmitted(j) => Some(j.job_id),
                _ => None,
            },
        )
    }

    /// Escrows `fee` for a job and queues it under `options` (the submitter's narrowing of the
    /// model's requirements; [`no_options`] narrows nothing); its id and the
    /// transaction. The token approval goes in the same multicall.
    pub async fn submit_job(
        &self,
        token: Felt,
        model_id: u64,
        input_hash: U256,
        fee: U256,
        deadline: u64,
        options: &job_mgr::JobOptions,
    ) -> Result<(u64, TxOutcome), ChainError> {
        let calls = self.submit_job_calls(token, model_id, input_hash, fee, deadline, options);
        let outcome = self.sender.execute(calls).await?;
        let id = self.submitted_job_id(&outcome)?;
        Ok((id, outcome))
    }

    pub async fn cancel_job(&self, job_id: u64) -> Result<TxOutcome, ChainError> {
        self.sender
            .execute(vec![self.binding().cancel_job_getcall(&job_id)])
            .await
    }

    /// Assigns jobs to workers in one transaction (`assign_jobs`: an entry that fails a
    /// per-job check is skipped with an `AssignmentSkipped` event).
    pub async fn assign_jobs(&self, assignments: &[(u64, Felt)]) -> Result<TxOutcome, ChainError> {
        let batch: Vec<job_mgr::Assignment> = assignments
            .iter()
            .map(|(job_id, worker)| job_mgr::Assignment {
                job_id: *job_id,
                worker: ContractAddress(*worker),
            })
            .collect();
        self.sender
            .execute(vec![self.binding().assign_jobs_getcall(&batch)])
            .await
    }

    /// Releases `worker`'s assignment of `job_id` made at `assigned_at` (the job's
    /// `assigned_at` as the chain shows it: a release names the assignment it was decided
    /// against).
    pub async fn release_job(
        &self,
        job_id: u64,
        worker: &Felt,
        assigned_at: u64,
    ) -> Result<TxOutcome, ChainError> {
        self.sender
            .execute(vec![self.binding().release_job_getcall(
                &job_id,
                &ContractAddress(*worker),
                &assigned_at,
            )])
            .await
    }

    pub async fn submit_result(
        &self,
        job_id: u64,
        output_hash: U256,
    ) -> Result<TxOutcome, ChainError> {
        self.sender
            .execute(vec![self
                .binding()
                .submit_result_getcall(&job_id, &output_hash)])
            .await
    }

    /// Finalizes jobs in one transaction (`finalize` for one, `finalize_jobs` for more).
    pub async fn finalize(&self, job_ids: &[u64]) -> Result<TxOutcome, ChainError> {
        let call: Call = match job_ids {
            [one] => self.binding().finalize_getcall(one),
            many => self.binding().finalize_jobs_getcall(&many.to_vec()),
        };
        self.sender.execute(vec![call]).await
    }

    pub async fn expire(&self, job_id: u64) -> Result<TxOutcome, ChainError> {
        self.sender
            .execute(vec![self.binding().expire_getcall(&job_id)])
            .await
    }

    pub async fn open_dispute(
        &self,
        token: Felt,
        job_id: u64,
        evidence_hash: Felt,
        bond: U256,
    ) -> Result<TxOutcome, ChainError> {
        let approve = Erc20::new(token, self.sender.account().clone())
            .approve_getcall(&ContractAddress(self.address), &bond);
        let open = self.binding().open_dispute_getcall(&job_id, &evidence_hash);
        self.sender.execute(vec![approve, open]).await
    }

    pub async fn resolve_dispute(
        &self,
        job_id: u64,
        worker_at_fault: bool,
        slash_bps: u16,
    ) -> Result<TxOutcome, ChainError> {
        self.sender
            .execute(vec![self.binding().resolve_dispute_getcall(
                &job_id,
                &worker_at_fault,
                &slash_bps,
            )])
            .await
    }

    pub async fn job(&self, job_id: u64) -> Result<job_mgr::JobInfo, ChainError> {
        call(self.reader().get_job(&job_id)).await
    }

    pub async fn model(&self, model_id: u64) -> Result<job_mgr::Model, ChainError> {
        call(self.reader().get_model(&model_id)).await
    }

    pub async fn params(&self) -> Result<job_mgr::JobParams, ChainError> {
        call(self.reader().get_params()).await
    }
}

/// The CDC Pool as one account acts on it.
pub struct PoolClient<A> {
    pub address: Felt,
    sender: Arc<TxSender<A>>,
}

impl<A> PoolClient<A>
where
    A: ConnectedAccount + Sync + Send + Clone,
{
    pub fn new(address: Felt, sender: Arc<TxSender<A>>) -> Self {
        Self { address, sender }
    }

    fn binding(&self) -> CdcPool<A> {
        CdcPool::new(self.address, self.sender.account().clone())
    }

    pub fn reader(&self) -> CdcPoolReader<&A::Provider> {
        CdcPoolReader::new(self.address, self.sender.account().provider())
    }

    /// Registers the account as a worker and, when `stake` is not zero, approves and stakes
    /// it: one multicall.
    pub async fn register_and_stake(
        &self,
        token: Felt,
        capabilities: &cdc_pool::Capabilities,
        attestation_hash: Felt,
        stake: U256,
    ) -> Result<TxOutcome, ChainError> {
        let pool = self.binding();
        let mut calls = vec![pool.register_worker_getcall(capabilities, &attestation_hash)];
        if stake != u256(0) {
            calls.push(
                Erc20::new(token, self.sender.account().clone())
                    .approve_getcall(&ContractAddress(self.address), &stake),
            );
            calls.push(pool.stake_getcall(&stake));
        }
        self.sender.execute(calls).await
    }

    pub async fn stake(&self, token: Felt, amount: U256) -> Result<TxOutcome, ChainError> {
        let approve = Erc20::new(token, self.sender.account().clone())
            .approve_getcall(&ContractAddress(self.address), &amount);
        self.sender
            .execute(vec![approve, self.binding().stake_getcall(&amount)])
            .await
    }

    pub async fn unstake_intent(&self, amount: U256) -> Result<TxOutcome, ChainError> {
        self.sender
            .execute(vec![self.binding().unstake_intent_getcall(&amount)])
            .await
    }

    pub async fn unstake_action(&self, worker: Felt) -> Result<TxOutcome, ChainError> {
        self.sender
            .execute(vec![self
                .binding()
                .unstake_action_getcall(&ContractAddress(worker))])
            .await
    }

    /// Settles `worker`: its warming stake joins the reward weight if its warm-up is over
    /// (anyone may send it).
    pub async fn activate(&self, worker: Felt) -> Result<TxOutcome, ChainError> {
        self.sender
            .execute(vec![self
                .binding()
                .activate_getcall(&ContractAddress(worker))])
            .await
    }

    pub async fn heartbeat(&self) -> Result<TxOutcome, ChainError> {
        self.sender
            .execute(vec![self.binding().heartbeat_getcall()])
            .await
    }

    /// Replaces the worker's capabilities and attestation hash.
    pub async fn update_capabilities(
        &self,
        capabilities: &cdc_pool::Capabilities,
        attestation_hash: Felt,
    ) -> Result<TxOutcome, ChainError> {
        self.sender
            .execute(vec![self
                .binding()
                .update_capabilities_getcall(capabilities, &attestation_hash)])
            .await
    }

    /// Takes the worker out of assignment (its stake stays).
    pub async fn deactivate(&self) -> Result<TxOutcome, ChainError> {
        self.sender
            .execute(vec![self.binding().deactivate_getcall()])
            .await
    }

    /// Puts a deactivated worker back in assignment.
    pub async fn reactivate(&self) -> Result<TxOutcome, ChainError> {
        self.sender
            .execute(vec![self.binding().reactivate_getcall()])
            .await
    }

    pub async fn claim_rewards(&self) -> Result<TxOutcome, ChainError> {
        self.sender
            .execute(vec![self.binding().claim_rewards_getcall()])
            .await
    }

    pub async fn worker(&self, worker: Felt) -> Result<cdc_pool::WorkerInfo, ChainError> {
        call(self.reader().get_worker(&ContractAddress(worker))).await
    }

    /// `worker`'s slashes still open, by id: pending (the worker may challenge it until its
    /// deadline; after, anyone may execute it) or challenged (the arbiter decides). Found from
    /// the pool's `SlashCreated` events keyed by the worker from `from_block` (the deployment's
    /// block), each read back with `get_slash`.
    pub async fn open_slashes(
        &self,
        worker: Felt,
        from_block: u64,
    ) -> Result<Vec<(u64, cdc_pool::Slash)>, ChainError> {
        let provider = self.sender.account().provider();
        let filter = EventFilter {
            from_block: Some(BlockId::Number(from_block)),
            to_block: Some(BlockId::Tag(BlockTag::Latest)),
            address: Some(self.address),
            keys: Some(vec![vec![selector!("SlashCreated")], vec![], vec![worker]]),
        };
        let mut ids = Vec::new();
        for event in crate::events::every_event(provider, filter, 1_000).await? {
            let id = event.keys.get(1).copied().unwrap_or_default();
            ids.push(u64::try_from(id).map_err(|_| {
                ChainError::internal(anyhow::anyhow!("a slash id out of range: {id:#x}"))
            })?);
        }
        let mut open = Vec::new();
        for id in ids {
            let slash = call(self.reader().get_slash(&id)).await?;
            if matches!(
                slash.status,
                cdc_pool::SlashStatus::Pending | cdc_pool::SlashStatus::Challenged
            ) {
                open.push((id, slash));
            }
        }
        Ok(open)
    }

    /// Contests pending slash `slash_id` (of this account's), paying the pool's challenge
    /// bond: approve and `challenge_slash`, one transaction.
    pub async fn challenge_slash(
        &self,
        token: Felt,
        slash_id: u64,
    ) -> Result<TxOutcome, ChainError> {
        let bond = call(self.reader().params()).await?.challenge_bond;
        let approve = Erc20::new(token, self.sender.account().clone())
            .approve_getcall(&ContractAddress(self.address), &bond);
        self.sender
            .execute(vec![
                approve,
                self.binding().challenge_slash_getcall(&slash_id),
            ])
            .await
    }

    pub async fn pending_rewards(&self, account: Felt) -> Result<U256, ChainError> {
        call(self.reader().pending_rewards(&ContractAddress(account))).await
    }

    pub async fn is_eligible(
        &self,
        worker: Felt,
        requirements: &cdc_pool::Requirements,
    ) -> Result<bool, ChainError> {
        call(
            self.reader()
                .is_eligible(&ContractAddress(worker), requirements),
        )
        .await
    }
}

/// An ERC-20 balance.
pub async fn balance_of<P>(provider: &P, token: Felt, holder: Felt) -> Result<U256, ChainError>
where
    P: starknet::providers::Provider + Sync,
{
    call(Erc20Reader::new(token, provider).balance_of(&ContractAddress(holder))).await
}
