/// JobMgr: the model registry, jobs with escrowed fees, assignment against the CDC Pool,
/// results, payment and disputes. With governance (roles, two-step admin, setup phase and
/// seal, pause, one timelock for upgrades, role grants and parameter changes).
///
/// Money: a submitter's fee is escrowed at `submit_job` and leaves exactly once: refunded on
/// cancel, expiry or a lost dispute, or paid on finalization (fee − protocol fee to the worker,
/// the protocol fee to the CDC Pool's reward stream). A dispute bond is held while the dispute
/// is open and goes back to the disputer unless the worker is found right. So the token
/// balance always equals the escrow of non-final jobs plus open bonds (`totals`).
///
/// Everything that decides a job's money (protocol fee, challenge, release and arbitration
/// windows, dispute bond, slash and award caps, whether it is rated) and the worker it may
/// run on (the model's requirements narrowed by the submitter's options) is copied into the
/// job when it is submitted: later parameter or model changes never reach it.
///
/// Every assigned job is held against its worker's exit in the pool (`CdcPool.hold`) until
/// its outcome is recorded, so the stake that answers for it stays slashable.
#[starknet::contract]
mod JobMgr {
    use array::{ArrayTrait, SpanTrait};
    use traits::{Into, TryInto};
    use option::OptionTrait;
    use starknet::{ClassHash, ContractAddress, get_block_timestamp, get_caller_address};
    use zeroable::Zeroable;
    use ciro::common::erc20;
    use ciro::common::erc20::{IERC20Dispatcher, IERC20DispatcherTrait};
    use ciro::common::governance::{
        Governance, IGovernance, ARBITER_ROLE, COORDINATOR_ROLE, VERIFIER_ROLE
    };
    use ciro::common::governance::Governance::InternalTrait as GovernanceTrait;
    use ciro::common::types::{Outcome, Requirements, SlashReason, known_flags};
    use ciro::cdc_pool::interface::{
        ICdcPoolRewardsDispatcher, ICdcPoolRewardsDispatcherTrait, ICdcPoolSlashingDispatcher,
        ICdcPoolSlashingDispatcherTrait
    };
    use ciro::job_mgr::errors;
    use ciro::job_mgr::interface::{IJobMgrAdmin, IJobMgrDisputes, IJobMgrJobs, IJobMgrModels};
    use ciro::job_mgr::types::{
        Assignment, Dispute, Job, JobCore, JobInfo, JobOptions, JobParams, JobState, JobStatus,
        JobStatusPacking, JobTerms, JobTermsPacking, Model, ModelInfo
    };

    const BPS: u256 = 10000;
    const MAX_PROTOCOL_FEE_BPS: u16 = 1000;
    const MAX_STAKE_TIER: u8 = 3;
    const MAX_SCORE: u32 = 10000;
    /// Most entries of a batch or a page.
    const MAX_BATCH: u32 = 100;
    /// Most inputs of one batch job.
    const MAX_ITEMS: u32 = 1000;
    const MAX_PAGE: u64 = 100;
    /// Parameter bounds.
    const MAX_AMOUNT_PARAM: u256 = 1000000000000000000000000; // 10^6 tokens
    const MIN_CHALLENGE_WINDOW: u64 = 60;
    const MAX_CHALLENGE_WINDOW: u64 = 604800;
    const MIN_ASSIGNMENT_TIMEOUT: u64 = 60;
    const MAX_ASSIGNMENT_TIMEOUT: u64 = 86400;
    const MIN_MAX_DURATION: u64 = 3600;
    const MAX_MAX_DURATION: u64 = 2592000;
    const MIN_ARBITRATION_WINDOW: u64 = 3600;
    const MAX_ARBITRATION_WINDOW: u64 = 2592000;
    const MAX_AWARD_MULTIPLE: u16 = 100;
    /// The governance operation key of a parameter change.
    const PARAMS_OP: felt252 = 'JM_PARAMS';

    #[storage]
    struct Storage {
        /// The token fees and bonds are paid in.
        token: ContractAddress,
        /// The CDC Pool: eligibility and holds, outcomes, slashing and the reward stream.
        pool: ContractAddress,
        /// The parameters new jobs are submitted under.
        params: JobParams,
        /// The parameters a scheduled change will install (see `pending_params`).
        pending_params: JobParams,
        /// Models registered so far (ids from 1), by id.
        model_count: u64,
        models: LegacyMap<u64, Model>,
        /// Jobs submitted so far (ids from 1).
        job_count: u64,
        /// Submitter, model and deadline of each job (written once).
        job_core: LegacyMap<u64, JobCore>,
        /// The terms each job was submitted under (one packed slot, written once).
        job_terms: LegacyMap<u64, JobTerms>,
        /// What a worker must offer to be assigned each job (written once).
        job_requirements: LegacyMap<u64, Requirements>,
        /// Bond a dispute of each job costs (written once).
        job_bond: LegacyMap<u64, u256>,
        /// Escrowed fee of each job.
        job_fee: LegacyMap<u64, u256>,
        /// SHA-256 of each job's input tensors (a batch's: of its manifest).
        job_input: LegacyMap<u64, u256>,
        /// A batch's number of inputs; 0 (written never) for a single job.
        job_items: LegacyMap<u64, u32>,
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
        AssignmentSkipped: AssignmentSkipped,
        JobReleased: JobReleased,
        ResultSubmitted: ResultSubmitted,
        JobFinalized: JobFinalized,
        FinalizeSkipped: FinalizeSkipped,
        JobExpired: JobExpired,
        DisputeOpened: DisputeOpened,
        DisputeResolved: DisputeResolved,
        ParamsSet: ParamsSet,
        ParamsScheduled: ParamsScheduled,
        ParamsCancelled: ParamsCancelled,
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

    /// Job `job_id` was escrowed under `terms`, for workers meeting `requirements`.
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
        requirements: Requirements,
        terms: JobTerms,
        dispute_bond: u256,
        /// Inputs it carries: 1 for `submit_job`, 2 and more for a batch.
        items: u32,
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

    /// `assign_jobs` left this entry out: `reason` is the error `assign_job` would revert
    /// with.
    #[derive(Drop, starknet::Event)]
    struct AssignmentSkipped {
        #[key]
        job_id: u64,
        #[key]
        worker: ContractAddress,
        reason: felt252,
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

    /// `finalize_jobs` left job `job_id` out: `reason` is the error `finalize` would revert
    /// with.
    #[derive(Drop, starknet::Event)]
    struct FinalizeSkipped {
        #[key]
        job_id: u64,
        reason: felt252,
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
        disputer: ContractAddress,
        evidence_hash: felt252,
        bond: u256,
    }

    /// Job `job_id`'s dispute ended: decided by the arbiter (`by_arbiter`), or settled by
    /// default after the arbitration deadline (the result stands, the bond goes back).
    /// `slash_id` is the pool's slash (0 if none).
    #[derive(Drop, starknet::Event)]
    struct DisputeResolved {
        #[key]
        job_id: u64,
        #[key]
        worker: ContractAddress,
        worker_at_fault: bool,
        slash_id: u64,
        by_arbiter: bool,
    }

    #[derive(Drop, starknet::Event)]
    struct ParamsSet {
        params: JobParams, 
    }

    /// A parameter change was scheduled; it may be executed from `ready_at`.
    #[derive(Drop, starknet::Event)]
    struct ParamsScheduled {
        params: JobParams,
        ready_at: u64,
    }

    #[derive(Drop, starknet::Event)]
    struct ParamsCancelled {
        params: JobParams, 
    }

    /// Sets the admin, token, CDC Pool, upgrade delay and parameters (all bounded). The pool
    /// must grant this contract JOB_MANAGER, and the admin seal, before jobs can be taken.
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
        self.emit(ParamsSet { params });
        let mut governance = Governance::unsafe_new_contract_state();
        governance.initialize(admin, upgrade_delay);
    }

    #[external(v0)]
    impl ModelsImpl of IJobMgrModels<ContractState> {
        fn register_model(
            ref self: ContractState, model_hash: u256, requirements: Requirements, price: u256
        ) -> u64 {
            assert_open();
            assert(model_hash != 0, errors::ZERO_MODEL_HASH);
            assert_requirements(@requirements);
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
            assert_requirements(@requirements);
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
            ref self: ContractState,
            model_id: u64,
            input_hash: u256,
            fee: u256,
            deadline: u64,
            options: JobOptions
        ) -> u64 {
            self.submit(model_id, input_hash, 1, fee, deadline, options)
        }

        fn submit_batch(
            ref self: ContractState,
            model_id: u64,
            manifest_hash: u256,
            items: u32,
            fee: u256,
            deadline: u64,
            options: JobOptions
        ) -> u64 {
            // One input is a single job (`submit_job`): a batch has at least two.
            let items = if items == 1 {
                0
            } else {
                items
            };
            self.submit(model_id, manifest_hash, items, fee, deadline, options)
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
            assert_open();
            Governance::unsafe_new_contract_state().assert_role(COORDINATOR_ROLE);
            let reason = self.assign(job_id, worker);
            assert(reason == 0, reason);
        }

        fn assign_jobs(ref self: ContractState, assignments: Array<Assignment>) {
            assert_open();
            Governance::unsafe_new_contract_state().assert_role(COORDINATOR_ROLE);
            assert_batch(assignments.len());
            let mut assignments = assignments.span();
            loop {
                match assignments.pop_front() {
                    Option::Some(a) => {
                        let job_id = *a.job_id;
                        let worker = *a.worker;
                        let reason = self.assign(job_id, worker);
                        if reason != 0 {
                            self.emit(AssignmentSkipped { job_id, worker, reason });
                        }
                    },
                    Option::None(()) => {
                        break;
                    },
                };
            };
        }

        fn release_job(
            ref self: ContractState, job_id: u64, worker: ContractAddress, assigned_at: u64
        ) {
            let mut status = self.known_status(job_id);
            assert(status.state == JobState::Assigned(()), errors::NOT_ASSIGNED);
            assert(worker == self.job_worker.read(job_id), errors::NOT_ASSIGNED_WORKER);
            // A job's assignments have strictly increasing times (`assign`), so the time names
            // the assignment: a release decided against an earlier one, even of this worker,
            // cannot land on this one.
            assert(assigned_at == status.assigned_at, errors::NOT_THAT_ASSIGNMENT);
            let by = get_caller_address();
            let terms = self.job_terms.read(job_id);
            let governance = Governance::unsafe_new_contract_state();
            if !governance.has_role(COORDINATOR_ROLE, by) {
                assert(
                    get_block_timestamp() >= status.assigned_at + terms.release_after,
                    errors::NOT_TIMED_OUT
                );
            }
            // `assigned_at` is kept (the views show 0 once the worker is cleared): the job's next
            // assignment must come in a later second (`assign`).
            status.state = JobState::Queued(());
            self.job_status.write(job_id, status);
            self.job_worker.write(job_id, Zeroable::zero());
            self.emit(JobReleased { job_id, worker, by });
            self.record(worker, Outcome::Missed(()), terms.rated, 0);
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
            self.finalize_batch(ids.span(), true);
        }

        fn finalize_jobs(ref self: ContractState, job_ids: Array<u64>) {
            assert_batch(job_ids.len());
            self.finalize_batch(job_ids.span(), false);
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
                let rated = self.job_terms.read(job_id).rated;
                self.record(self.job_worker.read(job_id), Outcome::Failure(()), rated, 0);
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
            let disputer = get_caller_address();
            let governance = Governance::unsafe_new_contract_state();
            assert(
                disputer == self.job_core.read(job_id).submitter
                    || governance.has_role(VERIFIER_ROLE, disputer),
                errors::NOT_DISPUTER
            );
            assert(status.state != JobState::Disputed(()), errors::DISPUTE_OPEN);
            assert(status.state == JobState::Completed(()), errors::NOT_COMPLETED);
            let now = get_block_timestamp();
            assert(
                now < status.completed_at + self.job_terms.read(job_id).challenge_window,
                errors::WINDOW_CLOSED
            );
            let bond = self.job_bond.read(job_id);
            self.pull(disputer, bond);
            status.state = JobState::Disputed(());
            self.job_status.write(job_id, status);
            self.disputes.write(job_id, Dispute { disputer, evidence_hash, bond, opened_at: now });
            self.bond_total.write(self.bond_total.read() + bond);
            self.emit(DisputeOpened { job_id, disputer, evidence_hash, bond });
        }

        fn resolve_dispute(
            ref self: ContractState, job_id: u64, worker_at_fault: bool, slash_bps: u16
        ) {
            Governance::unsafe_new_contract_state().assert_role(ARBITER_ROLE);
            let mut status = self.known_status(job_id);
            assert(status.state == JobState::Disputed(()), errors::NOT_DISPUTED);
            let terms = self.job_terms.read(job_id);
            assert(slash_bps <= terms.max_slash_bps, errors::BAD_SLASH_BPS);
            let dispute = self.disputes.read(job_id);
            // Past the deadline the default applies (`settle_dispute`): no race with it.
            assert(
                get_block_timestamp() <= dispute.opened_at + terms.arbitration_window,
                errors::ARBITRATION_CLOSED
            );
            let fee = self.job_fee.read(job_id);
            self.bond_total.write(self.bond_total.read() - dispute.bond);
            self.escrow_total.write(self.escrow_total.read() - fee);
            let worker = self.job_worker.read(job_id);
            if worker_at_fault {
                status.state = JobState::Refunded(());
                self.job_status.write(job_id, status);
                let submitter = self.job_core.read(job_id).submitter;
                let mut slash_id = 0;
                if slash_bps != 0 {
                    slash_id = self
                        .pool_slashing()
                        .slash(
                            worker,
                            SlashReason::ProtocolViolation(()),
                            slash_bps,
                            dispute.evidence_hash,
                            dispute.disputer,
                            fee * terms.max_award_multiple.into()
                        );
                }
                self
                    .emit(
                        DisputeResolved {
                            job_id, worker, worker_at_fault, slash_id, by_arbiter: true
                        }
                    );
                self.record(worker, Outcome::Failure(()), terms.rated, 0);
                self.push(submitter, fee);
                self.push(dispute.disputer, dispute.bond);
            } else {
                self
                    .emit(
                        DisputeResolved {
                            job_id, worker, worker_at_fault, slash_id: 0, by_arbiter: true
                        }
                    );
                // The disputer was wrong: its bond goes to the worker.
                self.pay_worker(job_id, status, terms, worker, fee, dispute.bond, terms.rated);
            }
        }

        fn settle_dispute(ref self: ContractState, job_id: u64) {
            let status = self.known_status(job_id);
            assert(status.state == JobState::Disputed(()), errors::NOT_DISPUTED);
            let terms = self.job_terms.read(job_id);
            let dispute = self.disputes.read(job_id);
            assert(
                get_block_timestamp() > dispute.opened_at + terms.arbitration_window,
                errors::ARBITRATION_OPEN
            );
            let fee = self.job_fee.read(job_id);
            self.bond_total.write(self.bond_total.read() - dispute.bond);
            self.escrow_total.write(self.escrow_total.read() - fee);
            let worker = self.job_worker.read(job_id);
            self
                .emit(
                    DisputeResolved {
                        job_id, worker, worker_at_fault: false, slash_id: 0, by_arbiter: false
                    }
                );
            // Undecided: the result stands as if undisputed, the bond goes back, and no
            // reputation moves (nobody judged the result).
            self.pay_worker(job_id, status, terms, worker, fee, 0, false);
            self.push(dispute.disputer, dispute.bond);
        }
    }

    #[external(v0)]
    impl AdminImpl of IJobMgrAdmin<ContractState> {
        fn schedule_params(ref self: ContractState, params: JobParams) {
            let mut governance = Governance::unsafe_new_contract_state();
            governance.assert_admin();
            assert_params(@params);
            let ready_at = governance.schedule_op(PARAMS_OP);
            self.pending_params.write(params);
            self.emit(ParamsScheduled { params, ready_at });
        }

        fn execute_params(ref self: ContractState) {
            let mut governance = Governance::unsafe_new_contract_state();
            governance.assert_admin();
            governance.take_op(PARAMS_OP);
            let params = self.pending_params.read();
            self.params.write(params);
            self.emit(ParamsSet { params });
        }

        fn cancel_params(ref self: ContractState) {
            let mut governance = Governance::unsafe_new_contract_state();
            governance.assert_admin();
            governance.cancel_op(PARAMS_OP);
            self.emit(ParamsCancelled { params: self.pending_params.read() });
        }

        fn pending_params(self: @ContractState) -> (JobParams, u64) {
            let ready_at = Governance::unsafe_new_contract_state().op_ready_at(PARAMS_OP);
            (self.pending_params.read(), ready_at)
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

    fn assert_open() {
        Governance::unsafe_new_contract_state().assert_open();
    }

    fn assert_batch(len: u32) {
        assert(len != 0, errors::EMPTY_BATCH);
        assert(len <= MAX_BATCH, errors::BATCH_TOO_LARGE);
    }

    fn assert_requirements(requirements: @Requirements) {
        assert(*requirements.min_stake_tier <= MAX_STAKE_TIER, errors::BAD_STAKE_TIER);
        assert(known_flags(*requirements.required_flags), errors::UNKNOWN_FLAG);
        assert(*requirements.min_score <= MAX_SCORE, errors::BAD_MIN_SCORE);
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
        assert(
            p.min_dispute_bond != 0 && p.min_dispute_bond <= MAX_AMOUNT_PARAM,
            errors::BAD_DISPUTE_BOND
        );
        assert(p.dispute_bond_bps.into() <= BPS, errors::BAD_DISPUTE_BOND_BPS);
        assert(
            p.max_job_duration >= MIN_MAX_DURATION && p.max_job_duration <= MAX_MAX_DURATION,
            errors::BAD_MAX_DURATION
        );
        assert(
            p.arbitration_window >= MIN_ARBITRATION_WINDOW
                && p.arbitration_window <= MAX_ARBITRATION_WINDOW,
            errors::BAD_ARBITRATION_WINDOW
        );
        assert(p.max_dispute_slash_bps.into() <= BPS, errors::BAD_MAX_SLASH);
        assert(p.max_award_multiple <= MAX_AWARD_MULTIPLE, errors::BAD_AWARD_MULTIPLE);
        assert(p.min_rated_fee <= MAX_AMOUNT_PARAM, errors::BAD_RATED_FEE);
    }

    /// A run of consecutive finalized jobs of one worker: paid and recorded at once.
    #[derive(Copy, Drop)]
    struct Run {
        worker: ContractAddress,
        payout: u256,
        protocol_fees: u256,
        count: u32,
        rated: u32,
        latency: u64,
    }

    #[generate_trait]
    impl InternalImpl of InternalTrait {
        /// Escrows `fee` for a job of `items` inputs (1: a single job; more: a batch, whose
        /// `input_hash` is its manifest's) and queues it; see `submit_job` and `submit_batch`.
        fn submit(
            ref self: ContractState,
            model_id: u64,
            input_hash: u256,
            items: u32,
            fee: u256,
            deadline: u64,
            options: JobOptions
        ) -> u64 {
            assert_open();
            // `submit_job` passes 1; a batch has 2 or more.
            assert(items >= 1 && items <= MAX_ITEMS, errors::BAD_ITEM_COUNT);
            let model = self.known_model(model_id);
            assert(model.active, errors::MODEL_INACTIVE);
            let params = self.params.read();
            // Per input: fee / items >= x exactly when fee >= items * x, without the product
            // (a price near u256's top would overflow it).
            let per_item = if items == 1 {
                fee
            } else {
                fee / items.into()
            };
            assert(per_item >= model.price, errors::FEE_BELOW_PRICE);
            assert(per_item >= params.min_fee, errors::FEE_BELOW_MINIMUM);
            let now = get_block_timestamp();
            assert(deadline > now, errors::DEADLINE_IN_PAST);
            assert(deadline <= now + params.max_job_duration, errors::DEADLINE_TOO_FAR);
            assert(known_flags(options.extra_flags), errors::UNKNOWN_FLAG);
            assert(options.min_stake_tier <= MAX_STAKE_TIER, errors::BAD_STAKE_TIER);
            assert(options.min_score <= MAX_SCORE, errors::BAD_MIN_SCORE);
            let release_after = if options.release_after == 0 {
                params.assignment_timeout
            } else {
                // A submitter may give workers more time than the default, never less: a
                // hair-trigger release would let it farm misses against a worker.
                assert(
                    options.release_after >= params.assignment_timeout
                        && options.release_after <= MAX_ASSIGNMENT_TIMEOUT,
                    errors::BAD_RELEASE_AFTER
                );
                options.release_after
            };
            let model_req = model.requirements;
            let requirements = Requirements {
                min_vram_mb: if options.min_vram_mb > model_req.min_vram_mb {
                    options.min_vram_mb
                } else {
                    model_req.min_vram_mb
                },
                required_flags: model_req.required_flags | options.extra_flags,
                min_stake_tier: if options.min_stake_tier > model_req.min_stake_tier {
                    options.min_stake_tier
                } else {
                    model_req.min_stake_tier
                },
                min_score: if options.min_score > model_req.min_score {
                    options.min_score
                } else {
                    model_req.min_score
                },
            };
            let terms = JobTerms {
                challenge_window: params.challenge_window,
                release_after,
                arbitration_window: params.arbitration_window,
                protocol_fee_bps: params.protocol_fee_bps,
                max_slash_bps: params.max_dispute_slash_bps,
                max_award_multiple: params.max_award_multiple,
                rated: fee >= params.min_rated_fee,
            };
            let scaled_bond = fee * params.dispute_bond_bps.into() / BPS;
            let dispute_bond = if scaled_bond > params.min_dispute_bond {
                scaled_bond
            } else {
                params.min_dispute_bond
            };
            let submitter = get_caller_address();
            self.pull(submitter, fee);
            let job_id = self.job_count.read() + 1;
            self.job_count.write(job_id);
            self.job_core.write(job_id, JobCore { submitter, model_id, deadline });
            self.job_terms.write(job_id, terms);
            self.job_requirements.write(job_id, requirements);
            self.job_bond.write(job_id, dispute_bond);
            self.job_fee.write(job_id, fee);
            self.job_input.write(job_id, input_hash);
            if items != 1 {
                self.job_items.write(job_id, items);
            }
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
            self
                .emit(
                    JobSubmitted {
                        job_id,
                        submitter,
                        model_id,
                        input_hash,
                        fee,
                        deadline,
                        requirements,
                        terms,
                        dispute_bond,
                        items
                    }
                );
            job_id
        }

        fn known_model(self: @ContractState, model_id: u64) -> Model {
            assert(model_id != 0 && model_id <= self.model_count.read(), errors::UNKNOWN_MODEL);
            self.models.read(model_id)
        }

        fn exists(self: @ContractState, job_id: u64) -> bool {
            job_id != 0 && job_id <= self.job_count.read()
        }

        /// The status of an existing job.
        fn known_status(self: @ContractState, job_id: u64) -> JobStatus {
            assert(self.exists(job_id), errors::UNKNOWN_JOB);
            self.job_status.read(job_id)
        }

        fn job_info(self: @ContractState, job_id: u64) -> JobInfo {
            let core = self.job_core.read(job_id);
            let status = self.job_status.read(job_id);
            let worker = self.job_worker.read(job_id);
            let items = self.job_items.read(job_id);
            JobInfo {
                job_id, job: Job {
                    submitter: core.submitter,
                    model_id: core.model_id,
                    input_hash: self.job_input.read(job_id),
                    fee: self.job_fee.read(job_id),
                    deadline: core.deadline,
                    state: status.state,
                    worker,
                    // A released job keeps its last assignment's time in storage; it shows none.
                    assigned_at: if worker.is_zero() {
                        0
                    } else {
                        status.assigned_at
                    },
                    completed_at: status.completed_at,
                    output_hash: self.job_output.read(job_id),
                },
                terms: self.job_terms.read(job_id),
                requirements: self.job_requirements.read(job_id),
                dispute_bond: self.job_bond.read(job_id),
                dispute: self.disputes.read(job_id),
                items: if items == 0 {
                    1
                } else {
                    items
                },
            }
        }

        fn pool_slashing(self: @ContractState) -> ICdcPoolSlashingDispatcher {
            ICdcPoolSlashingDispatcher { contract_address: self.pool.read() }
        }

        /// Ends one of `worker`'s held jobs with `outcome` (moving its reputation if `rated`).
        fn record(
            ref self: ContractState,
            worker: ContractAddress,
            outcome: Outcome,
            rated: bool,
            latency: u64
        ) {
            let rated_count = if rated {
                1
            } else {
                0
            };
            self.pool_slashing().record_outcomes(worker, outcome, 1, rated_count, latency);
        }

        /// Assigns `job_id` to `worker` and holds it against the worker's exit; returns 0, or
        /// the error that prevented it (nothing changed then).
        fn assign(ref self: ContractState, job_id: u64, worker: ContractAddress) -> felt252 {
            if !self.exists(job_id) {
                return errors::UNKNOWN_JOB;
            }
            let mut status = self.job_status.read(job_id);
            if status.state != JobState::Queued(()) {
                return errors::NOT_QUEUED;
            }
            let core = self.job_core.read(job_id);
            let now = get_block_timestamp();
            // A released job keeps its last assignment's time: the next one comes strictly
            // later, so `release_job` can name an assignment by its time.
            if now <= status.assigned_at {
                return errors::ASSIGNED_THIS_SECOND;
            }
            if now >= core.deadline {
                return errors::DEADLINE_PASSED;
            }
            if worker == core.submitter {
                return errors::SELF_ASSIGNMENT;
            }
            // The worker gets at least its release window before the deadline, so a miss or a
            // failure is only ever recorded against time it really had.
            if now + self.job_terms.read(job_id).release_after > core.deadline {
                return errors::DEADLINE_TOO_CLOSE;
            }
            if !self.pool_slashing().hold(worker, self.job_requirements.read(job_id)) {
                return errors::NOT_ELIGIBLE;
            }
            status.state = JobState::Assigned(());
            status.assigned_at = now;
            self.job_status.write(job_id, status);
            self.job_worker.write(job_id, worker);
            self.emit(JobAssigned { job_id, worker });
            0
        }

        /// Why `job_id` cannot be finalized now, or 0.
        fn finalize_check(self: @ContractState, job_id: u64, now: u64) -> felt252 {
            if !self.exists(job_id) {
                return errors::UNKNOWN_JOB;
            }
            let status = self.job_status.read(job_id);
            if status.state != JobState::Completed(()) {
                return errors::NOT_COMPLETED;
            }
            if now < status.completed_at + self.job_terms.read(job_id).challenge_window {
                return errors::WINDOW_OPEN;
            }
            0
        }

        /// Pays a job's worker (fee − protocol fee, plus `extra` such as a losing disputer's
        /// bond), streams the protocol fee and records a success (rated or not): the job ends
        /// Finalized. Escrow and bond totals are the caller's to update.
        fn pay_worker(
            ref self: ContractState,
            job_id: u64,
            status: JobStatus,
            terms: JobTerms,
            worker: ContractAddress,
            fee: u256,
            extra: u256,
            rated: bool
        ) {
            let mut status = status;
            status.state = JobState::Finalized(());
            self.job_status.write(job_id, status);
            let protocol_fee = fee * terms.protocol_fee_bps.into() / BPS;
            let payout = fee - protocol_fee;
            self.emit(JobFinalized { job_id, worker, payout, protocol_fee });
            self
                .record(
                    worker, Outcome::Success(()), rated, status.completed_at - status.assigned_at
                );
            self.push(worker, payout + extra);
            self.stream_to_pool(protocol_fee);
        }

        /// Finalizes completed jobs whose window is over (`strict`: a job that is not reverts
        /// the call; otherwise it is skipped with a `FinalizeSkipped` event). Effects first
        /// (every job's state, the escrow total, events); then, per run of consecutive jobs of
        /// one worker, one outcome record and one payment; then one reward notification.
        fn finalize_batch(ref self: ContractState, mut job_ids: Span<u64>, strict: bool) {
            let now = get_block_timestamp();
            let mut runs: Array<Run> = ArrayTrait::new();
            let mut run = Run {
                worker: Zeroable::zero(),
                payout: 0,
                protocol_fees: 0,
                count: 0,
                rated: 0,
                latency: 0
            };
            loop {
                match job_ids.pop_front() {
                    Option::Some(job_id) => {
                        let job_id = *job_id;
                        let reason = self.finalize_check(job_id, now);
                        if reason != 0 {
                            assert(!strict, reason);
                            self.emit(FinalizeSkipped { job_id, reason });
                        } else {
                            let (next, done) = self.finalize_one(job_id, run);
                            if done.count != 0 {
                                runs.append(done);
                            }
                            run = next;
                        }
                    },
                    Option::None(()) => {
                        break;
                    },
                };
            };
            if run.count != 0 {
                runs.append(run);
            }
            let pool = self.pool_slashing();
            let mut protocol_fees: u256 = 0;
            let mut runs = runs.span();
            loop {
                match runs.pop_front() {
                    Option::Some(run) => {
                        let run = *run;
                        let count: u64 = run.count.into();
                        protocol_fees += run.protocol_fees;
                        pool
                            .record_outcomes(
                                run.worker,
                                Outcome::Success(()),
                                run.count,
                                run.rated,
                                run.latency / count
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

        /// Finalizes one checked job (state, escrow total, event) into `run`; returns the run
        /// to continue and, when the worker changed, the finished run (count 0 if none).
        fn finalize_one(ref self: ContractState, job_id: u64, run: Run) -> (Run, Run) {
            let mut status = self.job_status.read(job_id);
            let terms = self.job_terms.read(job_id);
            status.state = JobState::Finalized(());
            self.job_status.write(job_id, status);
            let worker = self.job_worker.read(job_id);
            let fee = self.job_fee.read(job_id);
            self.escrow_total.write(self.escrow_total.read() - fee);
            let protocol_fee = fee * terms.protocol_fee_bps.into() / BPS;
            let payout = fee - protocol_fee;
            self.emit(JobFinalized { job_id, worker, payout, protocol_fee });
            let empty = Run { worker, payout: 0, protocol_fees: 0, count: 0, rated: 0, latency: 0 };
            let (done, base) = if run.count != 0 && worker != run.worker {
                (run, empty)
            } else if run.count == 0 {
                (empty, empty)
            } else {
                (empty, run)
            };
            let rated: u32 = if terms.rated {
                1
            } else {
                0
            };
            let next = Run {
                worker,
                payout: base.payout + payout,
                protocol_fees: base.protocol_fees + protocol_fee,
                count: base.count + 1,
                rated: base.rated + rated,
                latency: base.latency + status.completed_at - status.assigned_at,
            };
            (next, done)
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
            assert(
                erc20::pull_exact(self.token.read(), from, amount), errors::TRANSFER_FROM_SHORTFALL
            );
        }

        fn push(ref self: ContractState, to: ContractAddress, amount: u256) {
            assert(erc20::push(self.token.read(), to, amount), errors::TRANSFER_FAILED);
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

        fn schedule_role_grant(ref self: ContractState, role: felt252, account: ContractAddress) {
            let mut governance = Governance::unsafe_new_contract_state();
            governance.schedule_role_grant(role, account);
        }

        fn cancel_role_grant(ref self: ContractState, role: felt252, account: ContractAddress) {
            let mut governance = Governance::unsafe_new_contract_state();
            governance.cancel_role_grant(role, account);
        }

        fn role_grant_ready_at(
            self: @ContractState, role: felt252, account: ContractAddress
        ) -> u64 {
            Governance::unsafe_new_contract_state().role_grant_ready_at(role, account)
        }

        fn is_sealed(self: @ContractState) -> bool {
            Governance::unsafe_new_contract_state().is_sealed()
        }

        fn seal(ref self: ContractState) {
            let mut governance = Governance::unsafe_new_contract_state();
            governance.seal();
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
