/// JobMgr: the model registry, jobs with escrowed fees, assignment against the CDC Pool,
/// results, payment and disputes. With governance (roles, two-step admin, pause, timelocked
/// upgrade).
///
/// Money: a submitter's fee is escrowed at `submit_job` and leaves exactly once: refunded on
/// cancel, expiry or a lost dispute, or paid on finalization (fee − protocol fee to the worker,
/// the protocol fee to the CDC Pool's reward stream). A dispute bond is held while the dispute
/// is open and goes to whoever the arbiter finds right. So the token balance always equals
/// the escrow of non-final jobs plus open bonds (`totals`).
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
        Assignment, Dispute, Job, JobInfo, JobParams, JobState, Model, ModelInfo
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
        /// The bounded parameters.
        params: JobParams,
        /// Models registered so far (ids from 1), by id.
        model_count: u64,
        models: LegacyMap<u64, Model>,
        /// Jobs submitted so far (ids from 1), by id.
        job_count: u64,
        jobs: LegacyMap<u64, Job>,
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
        assert_params(@params);
        self.params.write(params);
        let mut governance = Governance::unsafe_new_contract_state();
        governance.initialize(admin, upgrade_delay);
        self.emit(ParamsSet { params });
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
            let params = self.params.read();
            assert(fee >= model.price, errors::FEE_BELOW_PRICE);
            assert(fee >= params.min_fee, errors::FEE_BELOW_MINIMUM);
            let now = get_block_timestamp();
            assert(deadline > now, errors::DEADLINE_IN_PAST);
            assert(deadline <= now + params.max_job_duration, errors::DEADLINE_TOO_FAR);
            let submitter = get_caller_address();
            self.pull(submitter, fee);
            let job_id = self.job_count.read() + 1;
            self.job_count.write(job_id);
            self
                .jobs
                .write(
                    job_id,
                    Job {
                        submitter,
                        model_id,
                        input_hash,
                        fee,
                        deadline,
                        state: JobState::Queued(()),
                        worker: Zeroable::zero(),
                        assigned_at: 0,
                        completed_at: 0,
                        output_hash: 0,
                    }
                );
            let index = self.submitter_job_count.read(submitter);
            self.submitter_jobs.write((submitter, index), job_id);
            self.submitter_job_count.write(submitter, index + 1);
            self.escrow_total.write(self.escrow_total.read() + fee);
            self.emit(JobSubmitted { job_id, submitter, model_id, input_hash, fee, deadline });
            job_id
        }

        fn cancel_job(ref self: ContractState, job_id: u64) {
            let mut job = self.known_job(job_id);
            assert(get_caller_address() == job.submitter, errors::NOT_SUBMITTER);
            assert(job.state == JobState::Queued(()), errors::NOT_QUEUED);
            job.state = JobState::Cancelled(());
            self.jobs.write(job_id, job);
            self.escrow_total.write(self.escrow_total.read() - job.fee);
            self.emit(JobCancelled { job_id, submitter: job.submitter, refund: job.fee });
            self.push(job.submitter, job.fee);
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
            let mut job = self.known_job(job_id);
            assert(job.state == JobState::Assigned(()), errors::NOT_ASSIGNED);
            let by = get_caller_address();
            let governance = Governance::unsafe_new_contract_state();
            if !governance.has_role(COORDINATOR_ROLE, by) {
                assert(
                    get_block_timestamp() >= job.assigned_at
                        + self.params.read().assignment_timeout,
                    errors::NOT_TIMED_OUT
                );
            }
            let worker = job.worker;
            job.state = JobState::Queued(());
            job.worker = Zeroable::zero();
            job.assigned_at = 0;
            self.jobs.write(job_id, job);
            self.emit(JobReleased { job_id, worker, by });
            self.pool_slashing().record_outcome(worker, Outcome::Missed(()), 0);
        }

        fn submit_result(ref self: ContractState, job_id: u64, output_hash: u256) {
            let mut job = self.known_job(job_id);
            assert(job.state == JobState::Assigned(()), errors::NOT_ASSIGNED);
            let worker = get_caller_address();
            assert(worker == job.worker, errors::NOT_ASSIGNED_WORKER);
            let now = get_block_timestamp();
            assert(now <= job.deadline, errors::DEADLINE_PASSED);
            job.state = JobState::Completed(());
            job.completed_at = now;
            job.output_hash = output_hash;
            self.jobs.write(job_id, job);
            self.emit(ResultSubmitted { job_id, worker, output_hash });
        }

        fn finalize(ref self: ContractState, job_id: u64) {
            let protocol_fee = self.finalize_one(job_id);
            self.stream_to_pool(protocol_fee);
        }

        fn finalize_jobs(ref self: ContractState, job_ids: Array<u64>) {
            assert_batch(job_ids.len());
            let mut job_ids = job_ids.span();
            let mut protocol_fees = 0;
            loop {
                match job_ids.pop_front() {
                    Option::Some(job_id) => {
                        protocol_fees += self.finalize_one(*job_id);
                    },
                    Option::None(()) => {
                        break;
                    },
                };
            };
            self.stream_to_pool(protocol_fees);
        }

        fn expire(ref self: ContractState, job_id: u64) {
            let mut job = self.known_job(job_id);
            let was_assigned = job.state == JobState::Assigned(());
            assert(was_assigned || job.state == JobState::Queued(()), errors::NOT_EXPIRABLE);
            assert(get_block_timestamp() > job.deadline, errors::DEADLINE_NOT_PASSED);
            job.state = JobState::Expired(());
            self.jobs.write(job_id, job);
            self.escrow_total.write(self.escrow_total.read() - job.fee);
            self.emit(JobExpired { job_id, submitter: job.submitter, refund: job.fee });
            if was_assigned {
                self.pool_slashing().record_outcome(job.worker, Outcome::Failure(()), 0);
            }
            self.push(job.submitter, job.fee);
        }

        fn get_job(self: @ContractState, job_id: u64) -> JobInfo {
            JobInfo { job_id, job: self.known_job(job_id), dispute: self.disputes.read(job_id) }
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
                let job_id = self.submitter_jobs.read((submitter, i));
                out
                    .append(
                        JobInfo {
                            job_id, job: self.jobs.read(job_id), dispute: self.disputes.read(job_id)
                        }
                    );
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
            let mut job = self.known_job(job_id);
            let submitter = get_caller_address();
            assert(submitter == job.submitter, errors::NOT_SUBMITTER);
            assert(job.state != JobState::Disputed(()), errors::DISPUTE_OPEN);
            assert(job.state == JobState::Completed(()), errors::NOT_COMPLETED);
            let now = get_block_timestamp();
            assert(
                now < job.completed_at + self.params.read().challenge_window, errors::WINDOW_CLOSED
            );
            let bond = self.params.read().dispute_bond;
            self.pull(submitter, bond);
            job.state = JobState::Disputed(());
            self.jobs.write(job_id, job);
            self.disputes.write(job_id, Dispute { evidence_hash, bond, opened_at: now });
            self.bond_total.write(self.bond_total.read() + bond);
            self.emit(DisputeOpened { job_id, submitter, evidence_hash, bond });
        }

        fn resolve_dispute(
            ref self: ContractState, job_id: u64, worker_at_fault: bool, slash_bps: u16
        ) {
            Governance::unsafe_new_contract_state().assert_role(ARBITER_ROLE);
            let mut job = self.known_job(job_id);
            assert(job.state == JobState::Disputed(()), errors::NOT_DISPUTED);
            assert(slash_bps.into() <= BPS, errors::BAD_SLASH_BPS);
            let dispute = self.disputes.read(job_id);
            self.bond_total.write(self.bond_total.read() - dispute.bond);
            self.escrow_total.write(self.escrow_total.read() - job.fee);
            let worker = job.worker;
            if worker_at_fault {
                job.state = JobState::Refunded(());
                self.jobs.write(job_id, job);
                let slash_id = self
                    .pool_slashing()
                    .slash(
                        worker,
                        SlashReason::ProtocolViolation(()),
                        slash_bps,
                        dispute.evidence_hash,
                        job.submitter
                    );
                self.emit(DisputeResolved { job_id, worker, worker_at_fault, slash_id });
                self.pool_slashing().record_outcome(worker, Outcome::Failure(()), 0);
                self.push(job.submitter, job.fee + dispute.bond);
            } else {
                job.state = JobState::Finalized(());
                self.jobs.write(job_id, job);
                let protocol_fee = self.protocol_fee_of(job.fee);
                let payout = job.fee - protocol_fee;
                self.emit(DisputeResolved { job_id, worker, worker_at_fault, slash_id: 0 });
                self.emit(JobFinalized { job_id, worker, payout, protocol_fee });
                self
                    .pool_slashing()
                    .record_outcome(
                        worker, Outcome::Success(()), job.completed_at - job.assigned_at
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
            assert_params(@params);
            self.params.write(params);
            self.emit(ParamsSet { params });
        }

        fn get_params(self: @ContractState) -> JobParams {
            self.params.read()
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

    #[generate_trait]
    impl InternalImpl of InternalTrait {
        fn known_model(self: @ContractState, model_id: u64) -> Model {
            assert(model_id != 0 && model_id <= self.model_count.read(), errors::UNKNOWN_MODEL);
            self.models.read(model_id)
        }

        fn known_job(self: @ContractState, job_id: u64) -> Job {
            assert(job_id != 0 && job_id <= self.job_count.read(), errors::UNKNOWN_JOB);
            self.jobs.read(job_id)
        }

        fn pool_slashing(self: @ContractState) -> ICdcPoolSlashingDispatcher {
            ICdcPoolSlashingDispatcher { contract_address: self.pool.read() }
        }

        fn protocol_fee_of(self: @ContractState, fee: u256) -> u256 {
            fee * self.params.read().protocol_fee_bps.into() / BPS
        }

        fn assign(ref self: ContractState, job_id: u64, worker: ContractAddress) {
            let mut job = self.known_job(job_id);
            assert(job.state == JobState::Queued(()), errors::NOT_QUEUED);
            let now = get_block_timestamp();
            assert(now < job.deadline, errors::DEADLINE_PASSED);
            let requirements = self.models.read(job.model_id).requirements;
            let pool = ICdcPoolRegistryDispatcher { contract_address: self.pool.read() };
            assert(pool.is_eligible(worker, requirements), errors::NOT_ELIGIBLE);
            job.state = JobState::Assigned(());
            job.worker = worker;
            job.assigned_at = now;
            self.jobs.write(job_id, job);
            self.emit(JobAssigned { job_id, worker });
        }

        /// Pays one completed job's worker and returns its protocol fee (streamed by the caller).
        fn finalize_one(ref self: ContractState, job_id: u64) -> u256 {
            let mut job = self.known_job(job_id);
            assert(job.state == JobState::Completed(()), errors::NOT_COMPLETED);
            assert(
                get_block_timestamp() >= job.completed_at + self.params.read().challenge_window,
                errors::WINDOW_OPEN
            );
            job.state = JobState::Finalized(());
            self.jobs.write(job_id, job);
            self.escrow_total.write(self.escrow_total.read() - job.fee);
            let protocol_fee = self.protocol_fee_of(job.fee);
            let payout = job.fee - protocol_fee;
            self.emit(JobFinalized { job_id, worker: job.worker, payout, protocol_fee });
            self
                .pool_slashing()
                .record_outcome(
                    job.worker, Outcome::Success(()), job.completed_at - job.assigned_at
                );
            self.push(job.worker, payout);
            protocol_fee
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
