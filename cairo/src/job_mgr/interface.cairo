use starknet::ContractAddress;
use ciro::common::types::Requirements;
use ciro::job_mgr::types::{Assignment, JobInfo, JobParams, Model, ModelInfo};

/// The model registry.
#[starknet::interface]
trait IJobMgrModels<TContractState> {
    /// Registers a model owned by the caller and returns its id (from 1).
    /// Requires: not paused, model hash not zero, stake tier <= 3. Emits `ModelSet`.
    fn register_model(
        ref self: TContractState, model_hash: u256, requirements: Requirements, price: u256
    ) -> u64;
    /// Replaces a model's requirements and price (jobs already submitted keep their fee).
    /// Requires: caller owns it, stake tier <= 3. Emits `ModelSet`.
    fn update_model(
        ref self: TContractState, model_id: u64, requirements: Requirements, price: u256
    );
    /// Opens or closes a model to new jobs. Requires: caller owns it or is admin.
    /// Emits `ModelActiveSet`.
    fn set_model_active(ref self: TContractState, model_id: u64, active: bool);
    /// A model. Requires: it exists.
    fn get_model(self: @TContractState, model_id: u64) -> Model;
    /// Up to `limit` (<= 100) models from id `offset + 1`.
    fn list_models(self: @TContractState, offset: u64, limit: u64) -> Array<ModelInfo>;
    fn model_count(self: @TContractState) -> u64;
}

/// Jobs: escrow, assignment, results, payment, refunds.
#[starknet::interface]
trait IJobMgrJobs<TContractState> {
    /// Escrows `fee` (pulled from the caller, balance-delta checked) for a job on `model_id`
    /// and queues it; returns its id (from 1). Requires: not paused, model active, fee >= its
    /// price and >= the minimum fee, now < deadline <= now + max job duration.
    /// Emits `JobSubmitted`.
    fn submit_job(
        ref self: TContractState, model_id: u64, input_hash: u256, fee: u256, deadline: u64
    ) -> u64;
    /// Refunds a queued job to its submitter. Requires: caller is the submitter, job Queued.
    /// Emits `JobCancelled`.
    fn cancel_job(ref self: TContractState, job_id: u64);
    /// Assigns a queued job to `worker`. Requires: COORDINATOR, not paused, job Queued, before
    /// its deadline, `CdcPool.is_eligible(worker, model requirements)`. Emits `JobAssigned`.
    fn assign_job(ref self: TContractState, job_id: u64, worker: ContractAddress);
    /// `assign_job` for each of 1 to 100 assignments, all or none.
    fn assign_jobs(ref self: TContractState, assignments: Array<Assignment>);
    /// Puts an assigned job back in the queue and records a miss for its worker.
    /// Requires: job Assigned; caller COORDINATOR, or anyone once the assignment timeout has
    /// passed. Emits `JobReleased`.
    fn release_job(ref self: TContractState, job_id: u64);
    /// Commits the result's hash and starts the challenge window. Requires: caller is the
    /// assigned worker, job Assigned, not after the deadline. Emits `ResultSubmitted`.
    fn submit_result(ref self: TContractState, job_id: u64, output_hash: u256);
    /// Pays a completed job once its challenge window is over: the worker gets fee − protocol
    /// fee, the protocol fee goes to the CDC Pool's reward stream, a success is recorded.
    /// Anyone may call it. Requires: job Completed, window over. Emits `JobFinalized`.
    fn finalize(ref self: TContractState, job_id: u64);
    /// `finalize` for each of 1 to 100 jobs, all or none, with one reward notification.
    fn finalize_jobs(ref self: TContractState, job_ids: Array<u64>);
    /// Refunds a job whose deadline passed without a result, recording a failure for an
    /// assigned worker. Anyone may call it. Requires: job Queued or Assigned, deadline passed.
    /// Emits `JobExpired`.
    fn expire(ref self: TContractState, job_id: u64);
    /// A job with its dispute. Requires: it exists.
    fn get_job(self: @TContractState, job_id: u64) -> JobInfo;
    /// Up to `limit` (<= 100) of `submitter`'s jobs, oldest first from `offset`.
    fn jobs_of(
        self: @TContractState, submitter: ContractAddress, offset: u64, limit: u64
    ) -> Array<JobInfo>;
    /// Jobs `submitter` has submitted.
    fn job_count_of(self: @TContractState, submitter: ContractAddress) -> u64;
    fn job_count(self: @TContractState) -> u64;
}

/// Disputes.
#[starknet::interface]
trait IJobMgrDisputes<TContractState> {
    /// The submitter contests a result within the challenge window, paying the dispute bond.
    /// Requires: caller is the submitter, job Completed (not already disputed), window open.
    /// Emits `DisputeOpened`.
    fn open_dispute(ref self: TContractState, job_id: u64, evidence_hash: felt252);
    /// The arbiter decides. At fault: the submitter gets fee and bond back, the worker is
    /// slashed `slash_bps` (0: the pool's ProtocolViolation default) with the submitter as
    /// beneficiary, and a failure is recorded → Refunded. Not at fault: the worker is paid as
    /// in `finalize` plus the bond → Finalized. Requires: ARBITER, job Disputed,
    /// slash_bps <= 10,000. Emits `DisputeResolved`.
    fn resolve_dispute(
        ref self: TContractState, job_id: u64, worker_at_fault: bool, slash_bps: u16
    );
}

/// Parameters and accounting views.
#[starknet::interface]
trait IJobMgrAdmin<TContractState> {
    /// Replaces the parameters. Requires: admin; protocol fee <= 10%; min fee <= 10^6 tokens;
    /// challenge window 1 min to 7 d; assignment timeout 1 min to 1 d; 0 < dispute bond <=
    /// 10^6 tokens; max job duration 1 h to 30 d. Emits `ParamsSet`.
    fn set_params(ref self: TContractState, params: JobParams);
    fn get_params(self: @TContractState) -> JobParams;
    /// The CDC Pool jobs are matched against and fees are streamed to.
    fn pool(self: @TContractState) -> ContractAddress;
    /// The token fees and bonds are paid in.
    fn token(self: @TContractState) -> ContractAddress;
    /// (Σ escrow of non-final jobs, Σ open dispute bonds): together, the token balance.
    fn totals(self: @TContractState) -> (u256, u256);
}
