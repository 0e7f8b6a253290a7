/// JobMgr: the model registry, jobs with escrowed fees, assignment against the CDC Pool,
/// results, payment and disputes. With governance (roles, two-step admin, pause, timelocked
/// upgrade).
///
/// Money: a submitter's fee is escrowed at `submit_job` and leaves exactly once: refunded on
/// cancel, expiry or a lost dispute, or paid on finalization (fee − protocol fee to the worker,
/// the protocol fee to the CDC Pool's reward stream). A dispute bond is held while the dispute
/// is open and goes to whoever the arbiter finds right. So the token balance always equals
/// the escrow of non-final jobs plus open bonds (`totals`).
///
/// Storage is laid out for the hot paths (see the gas report in the README): a job's status
/// and timestamps share one slot, the parameters that are not amounts share another, and
/// `finalize_jobs` pays each run of consecutive jobs of one worker with one transfer and one
/// reputation update.
#[starknet::contract]
mod JobMgr {
    use array::{ArrayTrait, SpanTrait};
    use traits::{Into, TryInto};
    use option::OptionTrait;
    use starknet::{
        ClassHash, ContractAddress, get_block_timestamp, get_caller_address, get_contract_address
    };
    use zeroable::Zeroable;
    use ciro::common::erc20::{IERC20Dispatcher, IERC20DispatcherTrait};
    use ciro::common::governance::{Governance, IGovernance, ARBITER_ROLE, COORDINATOR_ROLE};
    use ciro::common::governance::Governance::InternalTrait as GovernanceTrait;
    use ciro::common::types::{Outcome, Requirements, SlashReason};
    use ciro::cdc_pool::interface::{
        ICdcPoolRegistryDispatcher, ICdcPoolRegistryDispatcherTrait, ICdcPoolRewardsDispatcher,
        ICdcPoolRewardsDispatcherTrait, ICdcPoolSlashingDispatcher, ICdcPoolSlashingDispatcherTrait
    };
    use ciro::job_mgr::errors;
    use ciro::job_mgr::interface::{IJobMgrAdmin, IJobMgrDisputes, IJobMgrJobs, IJobMgrModels};
    use ciro::job_mgr::types::{
        Assignment, Dispute, Job, JobCore, JobInfo, JobParams, JobState, JobStatus,
        JobStatusPacking, JobTerms, JobTermsPacking, Model, ModelInfo
    };

    const BPS: u256 = 10000;
    const MAX_PROTOCOL_FEE_BPS: u16 = 1000;
    const MAX_STAKE_TIER: u8 = 3;
    /// Most entries of a batch or a page.
    const MAX_BATCH: u32 = 100;
    const MAX_PAGE: u64 = 100;
    /// Parameter bounds.
    const MAX_AMOUNT_PARAM: u256 = 1000000000000000000000000; // 10^6 tokens
    const MIN_CHALLENGE_WINDOW: u64 = 60;
    const MAX_CHALLENGE_WINDOW: u64 = 604800;
    const MIN_ASSIGNMENT_TIMEOUT: u64 = 60;
    const MAX_ASSIGNMENT_TIMEOUT: u64 = 86400;
    const MIN_MAX_DURATION: u64 = 3600;
    const MAX_MAX_DURATION: u64 = 2592000;

    #[storage]
    struct Storage {
        /// The token fees and bonds are paid in.
        token: ContractAddress,
        /// The CDC Pool: eligibility, outcomes, slashing and the reward stream.
        pool: ContractAddress,
        /// The parameters that are not amounts (one packed slot).
        terms: JobTerms,
        /// Least fee of any job.
        min_fee: u256,
        /// Bond a submitter pays to open a dispute.
        dispute_bond: u256,
        /// Models registered so far (ids from 1), by id.
        model_count: u64,
        models: LegacyMap<u64, Model>,
        /// Jobs submitted so far (ids from 1).
        job_count: u64,
        /// Submitter, model and deadline of each job (written once).
        job_core: LegacyMap<u64, JobCore>,
        /// Escrowed fee of each job.
        job_fee: LegacyMap<u64, u256>,
        /// SHA-256 of each job's input tensors.
        job_input: LegacyMap<u64, u256>,
        /// State and timestamps of each job (one packed slot).
        job_status: LegacyMap<u64, JobStatus>,
        /// The worker a job is assigned to, or zero.
        job_worker: LegacyMap<u64, ContractAddress>,
        /// SHA-256 of the output the worker committed, or zero.
        job_output: LegacyMap<u64, u256>,
        /// The dispute of a job, if one was opened.
        disputes: LegacyMap<u64, Dispute>,
        /// Jobs per submitter, and a submitter's jobs by index.
        submitter_job_count: LegacyMap<ContractAddress, u64>,
        submitter_jobs: LegacyMap<(ContractAddress, u64), u64>,
        /// Σ fees of non-final jobs.
        escrow_total: u256,
        /// Σ bonds of open disputes.
        bond_total: u256,
    }

    #[event]
    #[derive(Drop, starknet::Event)]
    enum Event {
        ModelSet: ModelSet,
        ModelActiveSet: ModelActiveSet,
        JobSubmitted: JobSubmitted,
        JobCancelled: JobCancelled,
        JobAssigned: JobAssigned,
        JobReleased: JobReleased,
        ResultSubmitted: ResultSubmitted,
        JobFinalized: JobFinalized,
        JobExpired: JobExpired,
        DisputeOpened: DisputeOpened,
        DisputeResolved: DisputeResolved,
        ParamsSet: ParamsSet,
    }

    /// Model `model_id` was registered or updated.
    #[derive(Drop, starknet::Event)]
    struct ModelSet {
        #[key]
        model_id: u64,
        #[key]
        owner: ContractAddress,
        model_hash: u256,
        requirements: Requirements,
        price: u256,
    }

    #[derive(Drop, starknet::Event)]
    struct ModelActiveSet {
        #[key]
        model_id: u64,
        active: bool,
    }

    #[derive(Drop, starknet::Event)]
    struct JobSubmitted {
        #[key]
        job_id: u64,
        #[key]
        submitter: ContractAddress,
        #[key]
        model_id: u64,
        input_hash: u256,
        fee: u256,
        deadline: u64,
    }

    #[derive(Drop, starknet::Event)]
    struct JobCancelled {
        #[key]
        job_id: u64,
        #[key]
        submitter: ContractAddress,
        refund: u256,
    }

    #[derive(Drop, starknet::Event)]
    struct JobAssigned {
        #[key]
        job_id: u64,
        #[key]
        worker: ContractAddress,
    }

    /// Job `job_id` went back to the queue; `worker` was recorded a miss.
    #[derive(Drop, starknet::Event)]
    struct JobReleased {
        #[key]
        job_id: u64,
        #[key]
        worker: ContractAddress,
        by: ContractAddress,
    }

    #[derive(Drop, starknet::Event)]
    struct ResultSubmitted {
        #[key]
        job_id: u64,
        #[key]
        worker: ContractAddress,
        output_hash: u256,
    }

    /// `worker` was paid `payout` for job `job_id`; `protocol_fee` went to the reward stream.
    #[derive(Drop, starknet::Event)]
    struct JobFinalized {
        #[key]
        job_id: u64,
        #[key]
        worker: ContractAddress,
        payout: u256,
        protocol_fee: u256,
    }

    #[derive(Drop, starknet::Event)]
    struct JobExpired {
        #[key]
        job_id: u64,
        #[key]
        submitter: ContractAddress,
        refund: u256,
    }

    #[derive(Drop, starknet::Event)]
    struct DisputeOpened {
        #[key]
        job_id: u64,
        #[key]
        submitter: ContractAddress,
        evidence_hash: felt252,
        bond: u256,
    }

    /// The arbiter decided job `job_id`'s dispute; `slash_id` is the pool's slash (0 if the
    /// worker was right).
    #[derive(Drop, starknet::Event)]
    struct DisputeResolved {
        #[key]
        job_id: u64,
        #[key]
        worker: ContractAddress,
        worker_at_fault: bool,
        slash_id: u64,
    }

    #[derive(Drop, starknet::Event)]
    struct ParamsSet {
        params: JobParams, 
    }

    /// Sets the admin, token, CDC Pool, upgrade delay and parameters (all bounded). The pool
    /// must grant this contract JOB_MANAGER before jobs can finish.
    #[constructor]
    fn constructor(
        ref self: ContractState,
        admin: ContractAddress,
        token: ContractAddress,
        pool: ContractAddress,
        upgrade_delay: u64,
        params: JobParams
    ) {
        assert(!token.is_zero() && !pool.is_zero(), errors::ZERO_ADDRESS);
        self.token.write(token);
        self.pool.write(pool);
        self.write_params(params);
        let mut governance = Governance::unsafe_new_contract_state();
        governance.initialize(admin, upgrade_delay);
    }

    #[external(v0)]
    impl ModelsImpl of IJobMgrModels<ContractState> {
        fn register_model(
            ref self: ContractState, model_hash: u256, requirements: Requirements, price: u256
        ) -> u64 {
            assert_not_paused();
            assert(model_hash != 0, errors::ZERO_MODEL_HASH);
            assert(requirements.min_stake_tier <= MAX_STAKE_TIER, errors::BAD_STAKE_TIER);
            let owner = get_caller_address();
            let model_id = self.model_count.read() + 1;
            self.model_count.write(model_id);
            self
                .models
                .write(model_id, Model { owner, model_hash, requirements, price, active: true });
            self.emit(ModelSet { model_id, owner, model_hash, requirements, price });
            model_id
        }

        fn update_model(
            ref self: ContractState, model_id: u64, requirements: Requirements, price: u256
        ) {
            let mut model = self.known_model(model_id);
            assert(get_caller_address() == model.owner, errors::NOT_MODEL_OWNER);
            assert(requirements.min_stake_tier <= MAX_STAKE_TIER, errors::BAD_STAKE_TIER);
            model.requirements = requirements;
            model.price = price;
            self.models.write(model_id, model);
            self
                .emit(
                    ModelSet {
                        model_id,
                        owner: model.owner,
                        model_hash: model.model_hash,
                        requirements,
                        price
                    }
                );
        }

        fn set_model_active(ref self: ContractState, model_id: u64, active: bool) {
            let mut model = self.known_model(model_id);
            let caller = get_caller_address();
            if caller != model.owner {
                Governance::unsafe_new_contract_state().assert_admin();
            }
            model.active = active;
            self.models.write(model_id, model);
            self.emit(ModelActiveSet { model_id, active });
        }

        fn get_model(self: @ContractState, model_id: u64) -> Model {
            self.known_model(model_id)
        }

        fn list_models(self: @ContractState, offset: u64, limit: u64) -> Array<ModelInfo> {
            assert(limit <= MAX_PAGE, errors::BAD_LIMIT);
            let count = self.model_count.read();
            let mut out = ArrayTrait::new();
            let mut id = offset + 1;
            loop {
                if id > count || id > offset + limit {
                    break;
                }
                out.append(ModelInfo { model_id: id, model: self.models.read(id) });
                id += 1;
            };
            out
        }

        fn model_count(self: @ContractState) -> u64 {
            self.model_count.read()
        }
    }

    #[external(v0)]
    impl JobsImpl of IJobMgrJobs<ContractState> {
        fn submit_job(
            ref self: ContractState, model_id: u64, input_hash: u256, fee: u256, deadline: u64
        ) -> u64 {
            assert_not_paused();
            let model = self.known_model(model_id);
            assert(model.active, errors::MODEL_INACTIVE);
            assert(fee >= model.price, errors::FEE_BELOW_PRICE);
            assert(fee >= self.min_fee.read(), errors::FEE_BELOW_MINIMUM);
            let now = get_block_timestamp();
            assert(deadline > now, errors::DEADLINE_IN_PAST);
            assert(deadline <= now + self.terms.read().max_job_duration, errors::DEADLINE_TOO_FAR);
            let submitter = get_caller_address();
            self.pull(submitter, fee);
            let job_id = self.job_count.read() + 1;
            self.job_count.write(job_id);
            self.job_core.write(job_id, JobCore { submitter, model_id, deadline });
            self.job_fee.write(job_id, fee);
            self.job_input.write(job_id, input_hash);
            self
                .job_status
                .write(
                    job_id,
                    JobStatus { state: JobState::Queued(()), assigned_at: 0, completed_at: 0 }
                );
            let index = self.submitter_job_count.read(submitter);
            self.submitter_jobs.write((submitter, index), job_id);
            self.submitter_job_count.write(submitter, index + 1);
            self.escrow_total.write(self.escrow_total.read() + fee);
            self.emit(JobSubmitted { job_id, submitter, model_id, input_hash, fee, deadline });
            job_id
        }

        fn cancel_job(ref self: ContractState, job_id: u64) {
            let mut status = self.known_status(job_id);
            let submitter = self.job_core.read(job_id).submitter;
            assert(get_caller_address() == submitter, errors::NOT_SUBMITTER);
            assert(status.state == JobState::Queued(()), errors::NOT_QUEUED);
            status.state = JobState::Cancelled(());
            self.job_status.write(job_id, status);
            let fee = self.job_fee.read(job_id);
            self.escrow_total.write(self.escrow_total.read() - fee);
            self.emit(JobCancelled { job_id, submitter, refund: fee });
            self.push(submitter, fee);
        }

        fn assign_job(ref self: ContractState, job_id: u64, worker: ContractAddress) {
            assert_not_paused();
            Governance::unsafe_new_contract_state().assert_role(COORDINATOR_ROLE);
            self.assign(job_id, worker);
        }

        fn assign_jobs(ref self: ContractState, assignments: Array<Assignment>) {
            assert_not_paused();
            Governance::unsafe_new_contract_state().assert_role(COORDINATOR_ROLE);
            assert_batch(assignments.len());
            let mut assignments = assignments.span();
            loop {
                match assignments.pop_front() {
                    Option::Some(a) => self.assign(*a.job_id, *a.worker),
                    Option::None(()) => {
                        break;
                    },
                };
            };
        }

        fn release_job(ref self: ContractState, job_id: u64) {
            let mut status = self.known_status(job_id);
            assert(status.state == JobState::Assigned(()), errors::NOT_ASSIGNED);
            let by = get_caller_address();
            let governance = Governance::unsafe_new_contract_state();
            if !governance.has_role(COORDINATOR_ROLE, by) {
                assert(
                    get_block_timestamp() >= status.assigned_at
                        + self.terms.read().assignment_timeout,
                    errors::NOT_TIMED_OUT
                );
            }
            let worker = self.job_worker.read(job_id);
            status.state = JobState::Queued(());
            status.assigned_at = 0;
            self.job_status.write(job_id, status);
            self.job_worker.write(job_id, Zeroable::zero());
            self.emit(JobReleased { job_id, worker, by });
            self.pool_slashing().record_outcome(worker, Outcome::Missed(()), 0);
        }

        fn submit_result(ref self: ContractState, job_id: u64, output_hash: u256) {
            let mut status = self.known_status(job_id);
            assert(status.state == JobState::Assigned(()), errors::NOT_ASSIGNED);
            let worker = get_caller_address();
            assert(worker == self.job_worker.read(job_id), errors::NOT_ASSIGNED_WORKER);
            let now = get_block_timestamp();
            assert(now <= self.job_core.read(job_id).deadline, errors::DEADLINE_PASSED);
            status.state = JobState::Completed(());
            status.completed_at = now;
            self.job_status.write(job_id, status);
            self.job_output.write(job_id, output_hash);
            self.emit(ResultSubmitted { job_id, worker, output_hash });
        }

        fn finalize(ref self: ContractState, job_id: u64) {
            let mut ids = ArrayTrait::new();
            ids.append(job_id);
            self.finalize_batch(ids.span());
        }

        fn finalize_jobs(ref self: ContractState, job_ids: Array<u64>) {
            assert_batch(job_ids.len());
            self.finalize_batch(job_ids.span());
        }

        fn expire(ref self: ContractState, job_id: u64) {
            let mut status = self.known_status(job_id);
            let was_assigned = status.state == JobState::Assigned(());
            assert(was_assigned || status.state == JobState::Queued(()), errors::NOT_EXPIRABLE);
            let core = self.job_core.read(job_id);
            assert(get_block_timestamp() > core.deadline, errors::DEADLINE_NOT_PASSED);
            status.state = JobState::Expired(());
            self.job_status.write(job_id, status);
            let fee = self.job_fee.read(job_id);
            self.escrow_total.write(self.escrow_total.read() - fee);
            self.emit(JobExpired { job_id, submitter: core.submitter, refund: fee });
            if was_assigned {
                self
                    .pool_slashing()
                    .record_outcome(self.job_worker.read(job_id), Outcome::Failure(()), 0);
            }
            self.push(core.submitter, fee);
        }

        fn get_job(self: @ContractState, job_id: u64) -> JobInfo {
            self.known_status(job_id);
            self.job_info(job_id)
        }

        fn jobs_of(
            self: @ContractState, submitter: ContractAddress, offset: u64, limit: u64
        ) -> Array<JobInfo> {
            assert(limit <= MAX_PAGE, errors::BAD_LIMIT);
            let count = self.submitter_job_count.read(submitter);
            let mut out = ArrayTrait::new();
            let mut i = offset;
            loop {
                if i >= count || i >= offset + limit {
                    break;
                }
                out.append(self.job_info(self.submitter_jobs.read((submitter, i))));
                i += 1;
            };
            out
        }

        fn job_count_of(self: @ContractState, submitter: ContractAddress) -> u64 {
            self.submitter_job_count.read(submitter)
        }

        fn job_count(self: @ContractState) -> u64 {
            self.job_count.read()
        }
    }

    #[external(v0)]
    impl DisputesImpl of IJobMgrDisputes<ContractState> {
        fn open_dispute(ref self: ContractState, job_id: u64, evidence_hash: felt252) {
            let mut status = self.known_status(job_id);
            let submitter = get_caller_address();
            assert(submitter == self.job_core.read(job_id).submitter, errors::NOT_SUBMITTER);
            assert(status.state != JobState::Disputed(()), errors::DISPUTE_OPEN);
            assert(status.state == JobState::Completed(()), errors::NOT_COMPLETED);
            let now = get_block_timestamp();
            assert(
                now < status.completed_at + self.terms.read().challenge_window,
                errors::WINDOW_CLOSED
            );
            let bond = self.dispute_bond.read();
            self.pull(submitter, bond);
            status.state = JobState::Disputed(());
            self.job_status.write(job_id, status);
            self.disputes.write(job_id, Dispute { evidence_hash, bond, opened_at: now });
            self.bond_total.write(self.bond_total.read() + bond);
            self.emit(DisputeOpened { job_id, submitter, evidence_hash, bond });
        }

        fn resolve_dispute(
            ref self: ContractState, job_id: u64, worker_at_fault: bool, slash_bps: u16
        ) {
            Governance::unsafe_new_contract_state().assert_role(ARBITER_ROLE);
            let mut status = self.known_status(job_id);
            assert(status.state == JobState::Disputed(()), errors::NOT_DISPUTED);
            assert(slash_bps.into() <= BPS, errors::BAD_SLASH_BPS);
            let dispute = self.disputes.read(job_id);
            let fee = self.job_fee.read(job_id);
            self.bond_total.write(self.bond_total.read() - dispute.bond);
            self.escrow_total.write(self.escrow_total.read() - fee);
            let worker = self.job_worker.read(job_id);
            if worker_at_fault {
                status.state = JobState::Refunded(());
                self.job_status.write(job_id, status);
                let submitter = self.job_core.read(job_id).submitter;
                let slash_id = self
                    .pool_slashing()
                    .slash(
                        worker,
                        SlashReason::ProtocolViolation(()),
                        slash_bps,
                        dispute.evidence_hash,
                        submitter
                    );
                self.emit(DisputeResolved { job_id, worker, worker_at_fault, slash_id });
                self.pool_slashing().record_outcome(worker, Outcome::Failure(()), 0);
                self.push(submitter, fee + dispute.bond);
            } else {
                status.state = JobState::Finalized(());
                self.job_status.write(job_id, status);
                let protocol_fee = fee * self.terms.read().protocol_fee_bps.into() / BPS;
                let payout = fee - protocol_fee;
                self.emit(DisputeResolved { job_id, worker, worker_at_fault, slash_id: 0 });
                self.emit(JobFinalized { job_id, worker, payout, protocol_fee });
                self
                    .pool_slashing()
                    .record_outcome(
                        worker, Outcome::Success(()), status.completed_at - status.assigned_at
                    );
                self.push(worker, payout + dispute.bond);
                self.stream_to_pool(protocol_fee);
            }
        }
    }

    #[external(v0)]
    impl AdminImpl of IJobMgrAdmin<ContractState> {
        fn set_params(ref self: ContractState, params: JobParams) {
            Governance::unsafe_new_contract_state().assert_admin();
            self.write_params(params);
        }

        fn get_params(self: @ContractState) -> JobParams {
            let terms = self.terms.read();
            JobParams {
                protocol_fee_bps: terms.protocol_fee_bps,
                min_fee: self.min_fee.read(),
                challenge_window: terms.challenge_window,
                assignment_timeout: terms.assignment_timeout,
                dispute_bond: self.dispute_bond.read(),
                max_job_duration: terms.max_job_duration,
            }
        }

        fn pool(self: @ContractState) -> ContractAddress {
            self.pool.read()
        }

        fn token(self: @ContractState) -> ContractAddress {
            self.token.read()
        }

        fn totals(self: @ContractState) -> (u256, u256) {
            (self.escrow_total.read(), self.bond_total.read())
        }
    }

    fn assert_not_paused() {
        Governance::unsafe_new_contract_state().assert_not_paused();
    }

    fn assert_batch(len: u32) {
        assert(len != 0, errors::EMPTY_BATCH);
        assert(len <= MAX_BATCH, errors::BATCH_TOO_LARGE);
    }

    fn assert_params(params: @JobParams) {
        let p = *params;
        assert(p.protocol_fee_bps <= MAX_PROTOCOL_FEE_BPS, errors::BAD_PROTOCOL_FEE);
        assert(p.min_fee <= MAX_AMOUNT_PARAM, errors::BAD_MIN_FEE);
        assert(
            p.challenge_window >= MIN_CHALLENGE_WINDOW
                && p.challenge_window <= MAX_CHALLENGE_WINDOW,
            errors::BAD_CHALLENGE_WINDOW
        );
        assert(
            p.assignment_timeout >= MIN_ASSIGNMENT_TIMEOUT
                && p.assignment_timeout <= MAX_ASSIGNMENT_TIMEOUT,
            errors::BAD_ASSIGNMENT_TIMEOUT
        );
        assert(p.dispute_bond != 0 && p.dispute_bond <= MAX_AMOUNT_PARAM, errors::BAD_DISPUTE_BOND);
        assert(
            p.max_job_duration >= MIN_MAX_DURATION && p.max_job_duration <= MAX_MAX_DURATION,
            errors::BAD_MAX_DURATION
        );
    }

    /// A run of consecutive finalized jobs of one worker: paid and recorded at once.
    #[derive(Copy, Drop)]
    struct Run {
        worker: ContractAddress,
        payout: u256,
        count: u32,
        latency: u64,
    }

    #[generate_trait]
    impl InternalImpl of InternalTrait {
        fn write_params(ref self: ContractState, params: JobParams) {
            assert_params(@params);
            self
                .terms
                .write(
                    JobTerms {
                        protocol_fee_bps: params.protocol_fee_bps,
                        challenge_window: params.challenge_window,
                        assignment_timeout: params.assignment_timeout,
                        max_job_duration: params.max_job_duration,
                    }
                );
            self.min_fee.write(params.min_fee);
            self.dispute_bond.write(params.dispute_bond);
            self.emit(ParamsSet { params });
        }

        fn known_model(self: @ContractState, model_id: u64) -> Model {
            assert(model_id != 0 && model_id <= self.model_count.read(), errors::UNKNOWN_MODEL);
            self.models.read(model_id)
        }

        /// The status of an existing job.
        fn known_status(self: @ContractState, job_id: u64) -> JobStatus {
            assert(job_id != 0 && job_id <= self.job_count.read(), errors::UNKNOWN_JOB);
            self.job_status.read(job_id)
        }

        fn job_info(self: @ContractState, job_id: u64) -> JobInfo {
            let core = self.job_core.read(job_id);
            let status = self.job_status.read(job_id);
            JobInfo {
                job_id, job: Job {
                    submitter: core.submitter,
                    model_id: core.model_id,
                    input_hash: self.job_input.read(job_id),
                    fee: self.job_fee.read(job_id),
                    deadline: core.deadline,
                    state: status.state,
                    worker: self.job_worker.read(job_id),
                    assigned_at: status.assigned_at,
                    completed_at: status.completed_at,
                    output_hash: self.job_output.read(job_id),
                }, dispute: self.disputes.read(job_id),
            }
        }

        fn pool_slashing(self: @ContractState) -> ICdcPoolSlashingDispatcher {
            ICdcPoolSlashingDispatcher { contract_address: self.pool.read() }
        }

        fn assign(ref self: ContractState, job_id: u64, worker: ContractAddress) {
            let mut status = self.known_status(job_id);
            assert(status.state == JobState::Queued(()), errors::NOT_QUEUED);
            let core = self.job_core.read(job_id);
            let now = get_block_timestamp();
            assert(now < core.deadline, errors::DEADLINE_PASSED);
            let requirements = self.models.read(core.model_id).requirements;
            let pool = ICdcPoolRegistryDispatcher { contract_address: self.pool.read() };
            assert(pool.is_eligible(worker, requirements), errors::NOT_ELIGIBLE);
            status.state = JobState::Assigned(());
            status.assigned_at = now;
            self.job_status.write(job_id, status);
            self.job_worker.write(job_id, worker);
            self.emit(JobAssigned { job_id, worker });
        }

        /// Finalizes completed jobs whose window is over. Effects first (every job's state,
        /// the escrow total, events); then, per run of consecutive jobs of one worker, one
        /// reputation update and one payment; then one reward notification for all protocol
        /// fees.
        fn finalize_batch(ref self: ContractState, mut job_ids: Span<u64>) {
            let terms = self.terms.read();
            let now = get_block_timestamp();
            let mut runs: Array<Run> = ArrayTrait::new();
            let mut run = Run { worker: Zeroable::zero(), payout: 0, count: 0, latency: 0 };
            let mut escrow_out: u256 = 0;
            let mut protocol_fees: u256 = 0;
            loop {
                match job_ids.pop_front() {
                    Option::Some(job_id) => {
                        let job_id = *job_id;
                        let mut status = self.known_status(job_id);
                        assert(status.state == JobState::Completed(()), errors::NOT_COMPLETED);
                        assert(
                            now >= status.completed_at + terms.challenge_window, errors::WINDOW_OPEN
                        );
                        status.state = JobState::Finalized(());
                        self.job_status.write(job_id, status);
                        let worker = self.job_worker.read(job_id);
                        let fee = self.job_fee.read(job_id);
                        let protocol_fee = fee * terms.protocol_fee_bps.into() / BPS;
                        let payout = fee - protocol_fee;
                        escrow_out += fee;
                        protocol_fees += protocol_fee;
                        self.emit(JobFinalized { job_id, worker, payout, protocol_fee });
                        if run.count != 0 && worker != run.worker {
                            runs.append(run);
                            run = Run { worker, payout: 0, count: 0, latency: 0 };
                        }
                        // Whole-struct assignment: Cairo 2.1 drops field assignments made
                        // inside a loop's match arm (see the README's toolchain notes).
                        run = Run {
                            worker,
                            payout: run.payout + payout,
                            count: run.count + 1,
                            latency: run.latency + status.completed_at - status.assigned_at,
                        };
                    },
                    Option::None(()) => {
                        break;
                    },
                };
            };
            runs.append(run);
            self.escrow_total.write(self.escrow_total.read() - escrow_out);
            let pool = self.pool_slashing();
            let mut runs = runs.span();
            loop {
                match runs.pop_front() {
                    Option::Some(run) => {
                        let run = *run;
                        let count: u64 = run.count.into();
                        pool
                            .record_outcomes(
                                run.worker, Outcome::Success(()), run.count, run.latency / count
                            );
                        self.push(run.worker, run.payout);
                    },
                    Option::None(()) => {
                        break;
                    },
                };
            };
            self.stream_to_pool(protocol_fees);
        }

        /// Hands `amount` of protocol fees to the CDC Pool's reward stream.
        fn stream_to_pool(ref self: ContractState, amount: u256) {
            if amount == 0 {
                return;
            }
            let pool = self.pool.read();
            let token = IERC20Dispatcher { contract_address: self.token.read() };
            token.approve(pool, amount);
            ICdcPoolRewardsDispatcher { contract_address: pool }.notify_reward(amount);
        }

        /// Pulls exactly `amount` from `from` (a token that moves less fails the check).
        fn pull(ref self: ContractState, from: ContractAddress, amount: u256) {
            let token = IERC20Dispatcher { contract_address: self.token.read() };
            let this = get_contract_address();
            let before = token.balance_of(this);
            token.transfer_from(from, this, amount);
            let after = token.balance_of(this);
            assert(after >= before && after - before == amount, errors::TRANSFER_FROM_SHORTFALL);
        }

        fn push(ref self: ContractState, to: ContractAddress, amount: u256) {
            let token = IERC20Dispatcher { contract_address: self.token.read() };
            assert(token.transfer(to, amount), errors::TRANSFER_FAILED);
        }
    }

    /// Governance, delegated to the shared library (see `common::governance`).
    #[external(v0)]
    impl GovernanceImpl of IGovernance<ContractState> {
        fn admin(self: @ContractState) -> ContractAddress {
            Governance::unsafe_new_contract_state().admin()
        }

        fn pending_admin(self: @ContractState) -> ContractAddress {
            Governance::unsafe_new_contract_state().pending_admin()
        }

        fn has_role(self: @ContractState, role: felt252, account: ContractAddress) -> bool {
            Governance::unsafe_new_contract_state().has_role(role, account)
        }

        fn grant_role(ref self: ContractState, role: felt252, account: ContractAddress) {
            let mut governance = Governance::unsafe_new_contract_state();
            governance.grant_role(role, account);
        }

        fn revoke_role(ref self: ContractState, role: felt252, account: ContractAddress) {
            let mut governance = Governance::unsafe_new_contract_state();
            governance.revoke_role(role, account);
        }

        fn transfer_admin(ref self: ContractState, new_admin: ContractAddress) {
            let mut governance = Governance::unsafe_new_contract_state();
            governance.transfer_admin(new_admin);
        }

        fn accept_admin(ref self: ContractState) {
            let mut governance = Governance::unsafe_new_contract_state();
            governance.accept_admin();
        }

        fn is_paused(self: @ContractState) -> bool {
            Governance::unsafe_new_contract_state().is_paused()
        }

        fn pause(ref self: ContractState) {
            let mut governance = Governance::unsafe_new_contract_state();
            governance.pause();
        }

        fn unpause(ref self: ContractState) {
            let mut governance = Governance::unsafe_new_contract_state();
            governance.unpause();
        }

        fn upgrade_status(self: @ContractState) -> (u64, ClassHash, u64) {
            Governance::unsafe_new_contract_state().upgrade_status()
        }

        fn schedule_upgrade(ref self: ContractState, class_hash: ClassHash) {
            let mut governance = Governance::unsafe_new_contract_state();
            governance.schedule_upgrade(class_hash);
        }

        fn cancel_upgrade(ref self: ContractState) {
            let mut governance = Governance::unsafe_new_contract_state();
            governance.cancel_upgrade();
        }

        fn execute_upgrade(ref self: ContractState) {
            let mut governance = Governance::unsafe_new_contract_state();
            governance.execute_upgrade();
        }
    }
}
