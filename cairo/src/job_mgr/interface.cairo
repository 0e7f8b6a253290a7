use starknet::ContractAddress;
use ciro::common::types::Requirements;
use ciro::job_mgr::types::{Assignment, JobInfo, JobOptions, JobParams, Model, ModelInfo};

/// The model registry.
#[starknet::interface]
trait IJobMgrModels<TContractState> {
    /// Registers a model owned by the caller and returns its id (from 1).
    /// Requires: sealed, not paused, model hash not zero, stake tier <= 3, only known
    /// capability flags, min score <= 10,000. Emits `ModelSet`.
    fn register_model(
        ref self: TContractState, model_hash: u256, requirements: Requirements, price: u256
    ) -> u64;
    /// Replaces a model's requirements and price (jobs already submitted keep their fee and
    /// the requirements they were submitted under). Requires: caller owns it, the same bounds
    /// as `register_model`. Emits `ModelSet`.
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
    /// and queues it; returns its id (from 1). Fixes the job's terms from the current
    /// parameters (protocol fee, challenge and arbitration windows, release limit, dispute
    /// bond = max(min bond, bond bps of the fee), slash and award caps, rated = fee >= the
    /// rated minimum) and its requirements: the model's, plus `options.extra_flags`, and the
    /// higher of the model's and the options' VRAM, stake tier and score (a client pins the
    /// model's requirements as it read them by passing them). Requires: sealed, not paused,
    /// model active, fee >= its price and >= the minimum fee, now < deadline <= now + max job
    /// duration, only known extra flags, stake tier <= 3, min score <= 10,000, release limit 0
    /// (the default) or from the default assignment timeout to 1 d.
    /// Emits `JobSubmitted`.
    fn submit_job(
        ref self: TContractState,
        model_id: u64,
        input_hash: u256,
        fee: u256,
        deadline: u64,
        options: JobOptions
    ) -> u64;
    /// `submit_job` for a batch of `items` (2 to 1,000) inputs of one model, run, paid,
    /// disputed and refunded as one job: one escrow, one assignment, one result, one payment.
    /// `manifest_hash` is the SHA-256 of the batch's input manifest (the inputs' SHA-256
    /// digests, 32 bytes each, in order); the worker commits the SHA-256 of the output
    /// manifest (the outputs' digests in the same order) as the result. `fee` pays for all the
    /// inputs: fee / items must be at least the model's price and the minimum fee (a batch
    /// never buys an input below a single job's price). The terms are fixed as for a single
    /// job, from the whole fee (dispute bond, award cap, rated). A dispute contests the whole
    /// batch (its evidence names the input): a worker at fault refunds all of it.
    /// Requires: those of `submit_job`, 2 <= items <= 1,000. Emits `JobSubmitted` (with
    /// `items`).
    fn submit_batch(
        ref self: TContractState,
        model_id: u64,
        manifest_hash: u256,
        items: u32,
        fee: u256,
        deadline: u64,
        options: JobOptions
    ) -> u64;
    /// Refunds a queued job to its submitter. Requires: caller is the submitter, job Queued.
    /// Emits `JobCancelled`.
    fn cancel_job(ref self: TContractState, job_id: u64);
    /// Assigns a queued job to `worker` and holds it against the worker's exit in the pool.
    /// Requires: COORDINATOR, sealed, not paused, job Queued, a later second than the job's
    /// previous assignment if it had one (so a job's assignments have strictly increasing
    /// times, which `release_job` names them by), before its deadline, worker not the
    /// submitter, the job's release limit fits before its deadline (so the worker has the time
    /// a miss is judged against), `CdcPool.hold(worker, job requirements)` (eligibility).
    /// Emits `JobAssigned`.
    fn assign_job(ref self: TContractState, job_id: u64, worker: ContractAddress);
    /// `assign_job` for each of 1 to 100 assignments; an entry that fails a per-job check is
    /// skipped (`AssignmentSkipped` with the error `assign_job` would give) and the rest go
    /// through. Requires: COORDINATOR, sealed, not paused, 1 to 100 entries.
    fn assign_jobs(ref self: TContractState, assignments: Array<Assignment>);
    /// Puts an assigned job back in the queue and records a miss for its worker (its hold
    /// released). Requires: job Assigned to `worker` at `assigned_at` (the assignment's time,
    /// as `get_job` shows it): a release decided against one assignment cannot land on the
    /// next, even one of the same worker (a coordinator replica that lost its lead while its
    /// release was in flight would otherwise charge the miss to the assignment after it);
    /// caller COORDINATOR, or anyone once the job's release limit (chosen at submission) has
    /// passed since assignment. Emits `JobReleased`.
    fn release_job(
        ref self: TContractState, job_id: u64, worker: ContractAddress, assigned_at: u64
    );
    /// Commits the result's hash and starts the challenge window. Requires: caller is the
    /// assigned worker, job Assigned, not after the deadline. Emits `ResultSubmitted`.
    fn submit_result(ref self: TContractState, job_id: u64, output_hash: u256);
    /// Pays a completed job once its challenge window (fixed at submission) is over: the
    /// worker gets fee − protocol fee (the job's rate), the protocol fee goes to the CDC Pool's
    /// reward stream, a success is recorded (its hold released). Anyone may call it.
    /// Requires: job Completed, window over. Emits `JobFinalized`.
    fn finalize(ref self: TContractState, job_id: u64);
    /// `finalize` for each of 1 to 100 jobs with one reward notification; a job that is not
    /// finalizable (unknown, not Completed, window open) is skipped with `FinalizeSkipped`.
    fn finalize_jobs(ref self: TContractState, job_ids: Array<u64>);
    /// Refunds a job whose deadline passed without a result, recording a failure for an
    /// assigned worker (its hold released). Anyone may call it. Requires: job Queued or
    /// Assigned, deadline passed. Emits `JobExpired`.
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
    /// The submitter, or a VERIFIER (a spot-checking service), contests a result within the
    /// job's challenge window, paying the job's dispute bond. Requires: caller is the
    /// submitter or holds VERIFIER, job Completed (not already disputed), window open.
    /// Emits `DisputeOpened`.
    fn open_dispute(ref self: TContractState, job_id: u64, evidence_hash: felt252);
    /// The arbiter decides. At fault → Refunded: the submitter gets the fee back, the disputer
    /// its bond, a failure is recorded, and when `slash_bps` > 0 the worker is slashed that
    /// share (ProtocolViolation) with the disputer as beneficiary, its award capped at the
    /// job's award multiple × fee. Not at fault → Finalized: the worker is paid as in
    /// `finalize` plus the disputer's bond. Requires: ARBITER, job Disputed, slash_bps <= the
    /// job's slash cap, the job's arbitration window not passed since the dispute opened (then
    /// only the default of `settle_dispute` applies). Emits `DisputeResolved`.
    fn resolve_dispute(
        ref self: TContractState, job_id: u64, worker_at_fault: bool, slash_bps: u16
    );
    /// Ends a dispute the arbiter left undecided past the job's arbitration window: the
    /// result stands (the worker is paid as in `finalize`, no reputation change) and the bond
    /// goes back to the disputer. Anyone may call it. Requires: job Disputed, the window
    /// passed since the dispute opened. Emits `DisputeResolved` (`by_arbiter` false).
    fn settle_dispute(ref self: TContractState, job_id: u64);
}

/// Parameters and accounting views.
#[starknet::interface]
trait IJobMgrAdmin<TContractState> {
    /// Schedules new parameters for jobs submitted after they are executed (a second
    /// schedule replaces the first and restarts the delay). Requires: admin; protocol fee <=
    /// 10%; min fee, min rated fee <= 10^6 tokens; challenge window 1 min to 7 d; assignment
    /// timeout 1 min to 1 d; 0 < min dispute bond <= 10^6 tokens; bond bps, max slash bps <=
    /// 10,000; max job duration 1 h to 30 d; arbitration window 1 h to 30 d; award multiple
    /// <= 100. Emits `ParamsScheduled`.
    fn schedule_params(ref self: TContractState, params: JobParams);
    /// Installs the scheduled parameters. Requires: admin, scheduled, the governance delay
    /// passed. Emits `ParamsSet`.
    fn execute_params(ref self: TContractState);
    /// Drops the scheduled parameters. Requires: admin, scheduled. Emits `ParamsCancelled`.
    fn cancel_params(ref self: TContractState);
    /// The last scheduled parameters and when they may be executed (0: none scheduled).
    fn pending_params(self: @TContractState) -> (JobParams, u64);
    /// The parameters new jobs are submitted under.
    fn get_params(self: @TContractState) -> JobParams;
    /// The CDC Pool jobs are matched against and fees are streamed to.
    fn pool(self: @TContractState) -> ContractAddress;
    /// The token fees and bonds are paid in.
    fn token(self: @TContractState) -> ContractAddress;
    /// (Σ escrow of non-final jobs, Σ open dispute bonds): together, the token balance.
    fn totals(self: @TContractState) -> (u256, u256);
}
