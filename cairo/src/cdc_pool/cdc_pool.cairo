/// The CDC Pool: the worker registry, own stake and delegations, the reward stream,
/// reputation from verified outcomes, and slashing. With governance (roles, two-step admin,
/// pause, timelocked upgrade).
///
/// Rewards use two O(1) accumulators. `reward_per_weight` grows by `amount * PRECISION /
/// total_weight` on every notification. A worker settles against it: its own stake earns
/// `stake * Δ / PRECISION`; its delegators' gross `delegated * Δ / PRECISION` pays the worker's
/// commission and the rest raises the worker's `delegator_acc` (per unit delegated), which each
/// delegation settles against. Every division rounds down, so what is credited never exceeds
/// what was funded; the dust stays counted in `reward_balance`.
///
/// New stake and delegations *warm up* before they earn (parameter `warmup`), so that a stake
/// made, rewarded (e.g. by a permissionless `finalize_jobs`) and unstaked in one multicall
/// earns nothing. Warming amounts are kept per worker (`warming`) and per position
/// (`delegation_warming`, summed per worker in `delegated_warming`), and in one global
/// `total_warming`; every weight above (the global one, a worker's own and delegated ones, a
/// position's) is the amount less its warming part. Activation is lazy: a settlement first
/// accrues at the old weights, then moves warming whose warm-up is over into the weight.
/// Warming stake still counts for the minimum, tiers and slashing, and leaves first on exits.
#[starknet::contract]
mod CdcPool {
    use array::{ArrayTrait, SpanTrait};
    use traits::{Into, TryInto};
    use option::OptionTrait;
    use starknet::{ClassHash, ContractAddress, get_block_timestamp, get_caller_address};
    use zeroable::Zeroable;
    use ciro::common::erc20;
    use ciro::common::governance::{
        Governance, IGovernance, ARBITER_ROLE, JOB_MANAGER_ROLE, SLASHER_ROLE
    };
    use ciro::common::governance::Governance::InternalTrait as GovernanceTrait;
    use ciro::common::types::{Capabilities, Outcome, Requirements, SlashReason, known_flags};
    use ciro::cdc_pool::errors;
    use ciro::cdc_pool::interface::{
        ICdcPoolAdmin, ICdcPoolRegistry, ICdcPoolRewards, ICdcPoolSlashing, ICdcPoolStake
    };
    use ciro::cdc_pool::types::{
        CommissionChange, Exit, PoolParams, PoolTotals, Reputation, ReputationPacking, Slash,
        SlashStatus, WorkerInfo, WorkerRecord, WorkerRecordPacking, WorkerState
    };

    /// Scale of the reward accumulators.
    const PRECISION: u256 = 1000000000000000000000000000;
    const BPS: u256 = 10000;
    /// Highest commission a worker may set: 20%.
    const MAX_COMMISSION_BPS: u16 = 2000;
    /// Most distinct workers one account may delegate to.
    const MAX_DELEGATIONS: u32 = 10;
    /// Most entries `list_workers` returns.
    const MAX_PAGE: u64 = 100;
    /// Reputation: starting score and its ceiling.
    const INITIAL_SCORE: u32 = 5000;
    const MAX_SCORE: u32 = 10000;
    /// Parameter bounds.
    const MAX_MIN_STAKE: u256 = 1000000000000000000000000000; // 10^9 tokens
    const MIN_EXIT_WINDOW: u64 = 3600;
    const MAX_EXIT_WINDOW: u64 = 2592000;
    const MIN_CHALLENGE_WINDOW: u64 = 3600;
    const MAX_CHALLENGE_WINDOW: u64 = 604800;
    const MIN_ARBITRATION_WINDOW: u64 = 3600;
    const MAX_ARBITRATION_WINDOW: u64 = 2592000;
    const MIN_WARMUP: u64 = 3600;
    const MAX_WARMUP: u64 = 604800;
    /// The governance operation key of a parameter change.
    const PARAMS_OP: felt252 = 'POOL_PARAMS';
    const MAX_BOND: u256 = 1000000000000000000000000; // 10^6 tokens
    /// VRAM thresholds (MB) of hardware tiers 1, 2 and 3.
    const TIER_1_VRAM: u32 = 16384;
    const TIER_2_VRAM: u32 = 40960;
    const TIER_3_VRAM: u32 = 81920;
    /// `stake_tier` of a worker whose stake meets no tier's minimum.
    const NO_TIER: u8 = 255;

    #[storage]
    struct Storage {
        /// The token stakes, rewards and bonds are paid in.
        token: ContractAddress,
        /// The bounded parameters (the treasury among them).
        params: PoolParams,
        /// The parameters a scheduled change will install (see `pending_params`).
        pending_params: PoolParams,
        /// Holds each manager (a JOB_MANAGER, or a former one) placed on each worker: what it
        /// may release.
        manager_holds: LegacyMap<(ContractAddress, ContractAddress), u32>,
        /// Each worker's commission change waiting out its notice.
        commission_changes: LegacyMap<ContractAddress, CommissionChange>,
        /// Registration, activity, commission, open slashes and holds of each worker.
        workers: LegacyMap<ContractAddress, WorkerRecord>,
        /// What each worker runs on.
        capabilities: LegacyMap<ContractAddress, Capabilities>,
        /// Each worker's declared attestation hash.
        attestations: LegacyMap<ContractAddress, felt252>,
        /// Verified outcomes of each worker.
        reputations: LegacyMap<ContractAddress, Reputation>,
        /// Workers registered so far, and by registration index.
        worker_count: u64,
        worker_at: LegacyMap<u64, ContractAddress>,
        /// Each worker's own stake, warming included.
        stakes: LegacyMap<ContractAddress, u256>,
        /// The part of each worker's own stake still warming up, and when its warm-up ends
        /// (always <= its stake).
        warming: LegacyMap<ContractAddress, Exit>,
        /// Each worker's pending unstake.
        exits: LegacyMap<ContractAddress, Exit>,
        /// Stake delegated to each worker, warming included.
        delegated: LegacyMap<ContractAddress, u256>,
        /// Σ warming delegations of each worker's positions (out of its delegators' weight).
        delegated_warming: LegacyMap<ContractAddress, u256>,
        /// Delegation of (delegator, worker), warming included.
        delegations: LegacyMap<(ContractAddress, ContractAddress), u256>,
        /// The part of (delegator, worker)'s delegation still warming up, and when its warm-up
        /// ends (always <= the delegation).
        delegation_warming: LegacyMap<(ContractAddress, ContractAddress), Exit>,
        /// Pending undelegation of (delegator, worker).
        delegation_exits: LegacyMap<(ContractAddress, ContractAddress), Exit>,
        /// The workers a delegator has delegated to (bounded), by index.
        delegate_count: LegacyMap<ContractAddress, u32>,
        delegate_at: LegacyMap<(ContractAddress, u32), ContractAddress>,
        /// Running totals (the conservation invariant).
        total_stake: u256,
        total_delegated: u256,
        total_exits: u256,
        bonds_held: u256,
        /// Σ warming own stake and delegations: out of the reward weight.
        total_warming: u256,
        /// Rewards funded and not claimed.
        reward_balance: u256,
        /// Global reward per unit of weight (scaled by PRECISION).
        reward_per_weight: u256,
        /// `reward_per_weight` when each worker last settled.
        worker_acc: LegacyMap<ContractAddress, u256>,
        /// Net reward per unit delegated to each worker (scaled by PRECISION).
        delegator_acc: LegacyMap<ContractAddress, u256>,
        /// The worker's `delegator_acc` when (delegator, worker) last settled.
        position_acc: LegacyMap<(ContractAddress, ContractAddress), u256>,
        /// Rewards settled to an account and not yet claimed.
        unclaimed: LegacyMap<ContractAddress, u256>,
        /// Slashes created so far (ids from 1), by id.
        slash_count: u64,
        slashes: LegacyMap<u64, Slash>,
    }

    #[event]
    #[derive(Drop, starknet::Event)]
    enum Event {
        WorkerRegistered: WorkerRegistered,
        CapabilitiesUpdated: CapabilitiesUpdated,
        WorkerActiveSet: WorkerActiveSet,
        Heartbeat: Heartbeat,
        CommissionSet: CommissionSet,
        Staked: Staked,
        UnstakeRequested: UnstakeRequested,
        Delegated: Delegated,
        UndelegateRequested: UndelegateRequested,
        Withdrawn: Withdrawn,
        RewardNotified: RewardNotified,
        RewardsClaimed: RewardsClaimed,
        OutcomeRecorded: OutcomeRecorded,
        SlashCreated: SlashCreated,
        SlashChallenged: SlashChallenged,
        SlashResolved: SlashResolved,
        SlashExecuted: SlashExecuted,
        WorkerBanned: WorkerBanned,
        ParamsSet: ParamsSet,
        ParamsScheduled: ParamsScheduled,
        ParamsCancelled: ParamsCancelled,
        CommissionScheduled: CommissionScheduled,
        StakeActivated: StakeActivated,
    }

    /// `amount` of `account`'s stake with `worker` (its own stake when `account` is `worker`,
    /// else its delegation) ended its warm-up and joined the reward weight.
    #[derive(Drop, starknet::Event)]
    struct StakeActivated {
        #[key]
        account: ContractAddress,
        #[key]
        worker: ContractAddress,
        amount: u256,
    }

    #[derive(Drop, starknet::Event)]
    struct WorkerRegistered {
        #[key]
        worker: ContractAddress,
        capabilities: Capabilities,
        attestation_hash: felt252,
    }

    #[derive(Drop, starknet::Event)]
    struct CapabilitiesUpdated {
        #[key]
        worker: ContractAddress,
        capabilities: Capabilities,
        attestation_hash: felt252,
    }

    /// `worker` deactivated itself (`active` false) or came back.
    #[derive(Drop, starknet::Event)]
    struct WorkerActiveSet {
        #[key]
        worker: ContractAddress,
        active: bool,
    }

    #[derive(Drop, starknet::Event)]
    struct Heartbeat {
        #[key]
        worker: ContractAddress,
        at: u64,
    }

    /// `worker`'s commission is now `bps` (a scheduled change applied).
    #[derive(Drop, starknet::Event)]
    struct CommissionSet {
        #[key]
        worker: ContractAddress,
        bps: u16,
    }

    /// `worker`'s commission becomes `bps` at its first settlement from `effective_at` on.
    #[derive(Drop, starknet::Event)]
    struct CommissionScheduled {
        #[key]
        worker: ContractAddress,
        bps: u16,
        effective_at: u64,
    }

    /// `worker` staked `amount`; its own stake is now `stake`.
    #[derive(Drop, starknet::Event)]
    struct Staked {
        #[key]
        worker: ContractAddress,
        amount: u256,
        stake: u256,
    }

    /// `worker` moved `amount` to its exit, now `pending` in all, payable at `unlock_time`.
    #[derive(Drop, starknet::Event)]
    struct UnstakeRequested {
        #[key]
        worker: ContractAddress,
        amount: u256,
        pending: u256,
        unlock_time: u64,
    }

    #[derive(Drop, starknet::Event)]
    struct Delegated {
        #[key]
        delegator: ContractAddress,
        #[key]
        worker: ContractAddress,
        amount: u256,
        delegation: u256,
    }

    #[derive(Drop, starknet::Event)]
    struct UndelegateRequested {
        #[key]
        delegator: ContractAddress,
        #[key]
        worker: ContractAddress,
        amount: u256,
        pending: u256,
        unlock_time: u64,
    }

    /// A pending exit of `account` (the worker itself, or a delegator of `worker`) was paid.
    #[derive(Drop, starknet::Event)]
    struct Withdrawn {
        #[key]
        account: ContractAddress,
        #[key]
        worker: ContractAddress,
        amount: u256,
    }

    /// `funder` added `amount` to the reward stream, spread at once at the new
    /// `reward_per_weight`; or, with no weight to spread it over, sent it all to the treasury
    /// (`to_treasury` = `amount`, otherwise 0).
    #[derive(Drop, starknet::Event)]
    struct RewardNotified {
        #[key]
        funder: ContractAddress,
        amount: u256,
        to_treasury: u256,
        reward_per_weight: u256,
    }

    #[derive(Drop, starknet::Event)]
    struct RewardsClaimed {
        #[key]
        account: ContractAddress,
        amount: u256,
    }

    /// `count` of `worker`'s jobs ended with `outcome` (their holds released); `rated` of them
    /// moved its reputation, now `score`.
    #[derive(Drop, starknet::Event)]
    struct OutcomeRecorded {
        #[key]
        worker: ContractAddress,
        outcome: Outcome,
        count: u32,
        rated: u32,
        latency: u64,
        score: u32,
    }

    #[derive(Drop, starknet::Event)]
    struct SlashCreated {
        #[key]
        slash_id: u64,
        #[key]
        worker: ContractAddress,
        reason: SlashReason,
        bps: u16,
        evidence_hash: felt252,
        beneficiary: ContractAddress,
        challenge_deadline: u64,
    }

    #[derive(Drop, starknet::Event)]
    struct SlashChallenged {
        #[key]
        slash_id: u64,
        #[key]
        worker: ContractAddress,
        bond: u256,
    }

    /// A challenged slash ended: decided by the arbiter (`by_arbiter`), or overturned by
    /// default by anyone after its arbitration deadline.
    #[derive(Drop, starknet::Event)]
    struct SlashResolved {
        #[key]
        slash_id: u64,
        upheld: bool,
        by_arbiter: bool,
    }

    /// Slash `slash_id` cut `amount` from `worker`: `to_beneficiary` went to the wronged party,
    /// `to_treasury` to the treasury.
    #[derive(Drop, starknet::Event)]
    struct SlashExecuted {
        #[key]
        slash_id: u64,
        #[key]
        worker: ContractAddress,
        amount: u256,
        to_beneficiary: u256,
        to_treasury: u256,
    }

    #[derive(Drop, starknet::Event)]
    struct WorkerBanned {
        #[key]
        worker: ContractAddress,
        unlock_time: u64,
    }

    #[derive(Drop, starknet::Event)]
    struct ParamsSet {
        params: PoolParams, 
    }

    /// A parameter change was scheduled; it may be executed from `ready_at`.
    #[derive(Drop, starknet::Event)]
    struct ParamsScheduled {
        params: PoolParams,
        ready_at: u64,
    }

    #[derive(Drop, starknet::Event)]
    struct ParamsCancelled {
        params: PoolParams, 
    }

    /// Sets the admin, token, upgrade delay and parameters (all bounded, the treasury among
    /// them). JobMgr is wired afterwards by granting it JOB_MANAGER, then the admin seals.
    #[constructor]
    fn constructor(
        ref self: ContractState,
        admin: ContractAddress,
        token: ContractAddress,
        upgrade_delay: u64,
        params: PoolParams
    ) {
        assert(!token.is_zero(), errors::ZERO_ADDRESS);
        self.token.write(token);
        assert_params(@params);
        self.params.write(params);
        let mut governance = Governance::unsafe_new_contract_state();
        governance.initialize(admin, upgrade_delay);
        self.emit(ParamsSet { params });
    }

    #[external(v0)]
    impl RegistryImpl of ICdcPoolRegistry<ContractState> {
        fn register_worker(
            ref self: ContractState, capabilities: Capabilities, attestation_hash: felt252
        ) {
            assert_open();
            assert(known_flags(capabilities.flags), errors::UNKNOWN_FLAG);
            let worker = get_caller_address();
            let mut record = self.workers.read(worker);
            assert(!record.registered, errors::ALREADY_REGISTERED);
            let now = get_block_timestamp();
            record.registered = true;
            record.registered_at = now;
            record.last_heartbeat = now;
            self.workers.write(worker, record);
            self.capabilities.write(worker, capabilities);
            self.attestations.write(worker, attestation_hash);
            self
                .reputations
                .write(
                    worker,
                    Reputation {
                        completed: 0,
                        failed: 0,
                        missed: 0,
                        score: INITIAL_SCORE,
                        avg_latency: 0,
                        last_outcome_at: 0
                    }
                );
            // A worker starts settled at the current accumulator: it earns from now on.
            self.worker_acc.write(worker, self.reward_per_weight.read());
            let index = self.worker_count.read();
            self.worker_at.write(index, worker);
            self.worker_count.write(index + 1);
            self.emit(WorkerRegistered { worker, capabilities, attestation_hash });
        }

        fn update_capabilities(
            ref self: ContractState, capabilities: Capabilities, attestation_hash: felt252
        ) {
            assert_open();
            assert(known_flags(capabilities.flags), errors::UNKNOWN_FLAG);
            let worker = get_caller_address();
            self.usable_worker(worker);
            self.attestations.write(worker, attestation_hash);
            self.capabilities.write(worker, capabilities);
            self.emit(CapabilitiesUpdated { worker, capabilities, attestation_hash });
        }

        fn deactivate(ref self: ContractState) {
            let worker = get_caller_address();
            let mut record = self.usable_worker(worker);
            assert(!record.deactivated, errors::ALREADY_DEACTIVATED);
            record.deactivated = true;
            self.workers.write(worker, record);
            self.emit(WorkerActiveSet { worker, active: false });
        }

        fn reactivate(ref self: ContractState) {
            assert_open();
            let worker = get_caller_address();
            let mut record = self.usable_worker(worker);
            assert(record.deactivated, errors::NOT_DEACTIVATED);
            record.deactivated = false;
            self.workers.write(worker, record);
            self.emit(WorkerActiveSet { worker, active: true });
        }

        fn heartbeat(ref self: ContractState) {
            let worker = get_caller_address();
            let mut record = self.usable_worker(worker);
            let at = get_block_timestamp();
            record.last_heartbeat = at;
            self.workers.write(worker, record);
            self.emit(Heartbeat { worker, at });
        }

        fn set_commission(ref self: ContractState, bps: u16) {
            let worker = get_caller_address();
            let mut record = self.workers.read(worker);
            assert(record.registered, errors::NOT_REGISTERED);
            assert(bps <= MAX_COMMISSION_BPS, errors::COMMISSION_TOO_HIGH);
            // A change waits out the exit window, so delegators can leave before it applies;
            // a second one replaces the first and restarts the notice.
            let effective_at = get_block_timestamp() + self.params.read().exit_window;
            self.commission_changes.write(worker, CommissionChange { bps, effective_at });
            self.emit(CommissionScheduled { worker, bps, effective_at });
        }

        fn get_worker(self: @ContractState, worker: ContractAddress) -> WorkerInfo {
            self.worker_info(worker)
        }

        fn list_workers(self: @ContractState, offset: u64, limit: u64) -> Array<WorkerInfo> {
            assert(limit <= MAX_PAGE, errors::BAD_LIMIT);
            let count = self.worker_count.read();
            let mut out = ArrayTrait::new();
            let mut i = offset;
            loop {
                if i >= count || i >= offset + limit {
                    break;
                }
                out.append(self.worker_info(self.worker_at.read(i)));
                i += 1;
            };
            out
        }

        fn worker_count(self: @ContractState) -> u64 {
            self.worker_count.read()
        }

        fn is_eligible(
            self: @ContractState, worker: ContractAddress, requirements: Requirements
        ) -> bool {
            if self.state_of(worker) != WorkerState::Active {
                return false;
            }
            let caps = self.capabilities.read(worker);
            if caps.vram_mb < requirements.min_vram_mb {
                return false;
            }
            if (caps.flags & requirements.required_flags) != requirements.required_flags {
                return false;
            }
            if self.reputations.read(worker).score < requirements.min_score {
                return false;
            }
            let tier = self.stake_tier(self.stakes.read(worker));
            tier != NO_TIER && tier >= requirements.min_stake_tier
        }
    }

    #[external(v0)]
    impl StakeImpl of ICdcPoolStake<ContractState> {
        fn stake(ref self: ContractState, amount: u256) {
            assert_open();
            assert(amount != 0, errors::ZERO_AMOUNT);
            let worker = get_caller_address();
            self.usable_worker(worker);
            self.settle_worker(worker);
            self.pull(worker, amount);
            let stake = self.stakes.read(worker) + amount;
            self.stakes.write(worker, stake);
            self.total_stake.write(self.total_stake.read() + amount);
            // Settled (and activated if due) above: what still warms restarts with the new.
            let warming = self.warming.read(worker);
            let unlock_time = get_block_timestamp() + self.params.read().warmup;
            self.warming.write(worker, Exit { amount: warming.amount + amount, unlock_time });
            self.total_warming.write(self.total_warming.read() + amount);
            self.emit(Staked { worker, amount, stake });
        }

        fn unstake_intent(ref self: ContractState, amount: u256) {
            assert(amount != 0, errors::ZERO_AMOUNT);
            let worker = get_caller_address();
            let stake = self.stakes.read(worker);
            assert(amount <= stake, errors::INSUFFICIENT_STAKE);
            self.settle_worker(worker);
            self.stakes.write(worker, stake - amount);
            self.total_stake.write(self.total_stake.read() - amount);
            // The warming part leaves first: it never earned, so a flash stake takes nothing.
            let warming = self.warming.read(worker);
            let from_warming = min(amount, warming.amount);
            if from_warming != 0 {
                self.cool(worker, warming, from_warming);
            }
            let exit = self.exits.read(worker);
            let unlock_time = get_block_timestamp() + self.params.read().exit_window;
            let pending = exit.amount + amount;
            self.exits.write(worker, Exit { amount: pending, unlock_time });
            self.total_exits.write(self.total_exits.read() + amount);
            self.emit(UnstakeRequested { worker, amount, pending, unlock_time });
        }

        fn unstake_action(ref self: ContractState, worker: ContractAddress) {
            let exit = self.exits.read(worker);
            assert(exit.amount != 0, errors::NOTHING_TO_WITHDRAW);
            assert(get_block_timestamp() >= exit.unlock_time, errors::STILL_LOCKED);
            let record = self.workers.read(worker);
            assert(record.open_slashes == 0, errors::SLASH_PENDING);
            assert(record.holds == 0, errors::JOBS_AT_RISK);
            self.exits.write(worker, Exit { amount: 0, unlock_time: 0 });
            self.total_exits.write(self.total_exits.read() - exit.amount);
            self.emit(Withdrawn { account: worker, worker, amount: exit.amount });
            self.push(worker, exit.amount);
        }

        fn delegate(ref self: ContractState, worker: ContractAddress, amount: u256) {
            assert_open();
            assert(amount != 0, errors::ZERO_AMOUNT);
            self.usable_worker(worker);
            let delegator = get_caller_address();
            self.settle_position(delegator, worker);
            self.track_delegation(delegator, worker);
            self.pull(delegator, amount);
            let delegation = self.delegations.read((delegator, worker)) + amount;
            self.delegations.write((delegator, worker), delegation);
            self.delegated.write(worker, self.delegated.read(worker) + amount);
            self.total_delegated.write(self.total_delegated.read() + amount);
            let warming = self.delegation_warming.read((delegator, worker));
            let unlock_time = get_block_timestamp() + self.params.read().warmup;
            self
                .delegation_warming
                .write((delegator, worker), Exit { amount: warming.amount + amount, unlock_time });
            self.delegated_warming.write(worker, self.delegated_warming.read(worker) + amount);
            self.total_warming.write(self.total_warming.read() + amount);
            self.emit(Delegated { delegator, worker, amount, delegation });
        }

        fn undelegate_intent(ref self: ContractState, worker: ContractAddress, amount: u256) {
            assert(amount != 0, errors::ZERO_AMOUNT);
            let delegator = get_caller_address();
            let delegation = self.delegations.read((delegator, worker));
            assert(amount <= delegation, errors::INSUFFICIENT_DELEGATION);
            self.settle_position(delegator, worker);
            if amount == delegation {
                // Settled above: the slot is freed for another worker (the exit is paid by
                // `undelegate_action`, which does not need it).
                self.untrack_delegation(delegator, worker);
            }
            self.delegations.write((delegator, worker), delegation - amount);
            self.delegated.write(worker, self.delegated.read(worker) - amount);
            self.total_delegated.write(self.total_delegated.read() - amount);
            let warming = self.delegation_warming.read((delegator, worker));
            let from_warming = min(amount, warming.amount);
            if from_warming != 0 {
                self.cool_delegation(delegator, worker, warming, from_warming);
            }
            let exit = self.delegation_exits.read((delegator, worker));
            let unlock_time = get_block_timestamp() + self.params.read().exit_window;
            let pending = exit.amount + amount;
            self.delegation_exits.write((delegator, worker), Exit { amount: pending, unlock_time });
            self.total_exits.write(self.total_exits.read() + amount);
            self.emit(UndelegateRequested { delegator, worker, amount, pending, unlock_time });
        }

        fn undelegate_action(
            ref self: ContractState, delegator: ContractAddress, worker: ContractAddress
        ) {
            let exit = self.delegation_exits.read((delegator, worker));
            assert(exit.amount != 0, errors::NOTHING_TO_WITHDRAW);
            assert(get_block_timestamp() >= exit.unlock_time, errors::STILL_LOCKED);
            self.delegation_exits.write((delegator, worker), Exit { amount: 0, unlock_time: 0 });
            self.total_exits.write(self.total_exits.read() - exit.amount);
            self.emit(Withdrawn { account: delegator, worker, amount: exit.amount });
            self.push(delegator, exit.amount);
        }

        fn activate(ref self: ContractState, worker: ContractAddress) {
            assert(self.workers.read(worker).registered, errors::NOT_REGISTERED);
            self.settle_worker(worker);
        }

        fn activate_delegation(
            ref self: ContractState, delegator: ContractAddress, worker: ContractAddress
        ) {
            self.settle_position(delegator, worker);
        }

        fn delegation_warming(
            self: @ContractState, delegator: ContractAddress, worker: ContractAddress
        ) -> Exit {
            self.delegation_warming.read((delegator, worker))
        }

        fn delegation(
            self: @ContractState, delegator: ContractAddress, worker: ContractAddress
        ) -> (u256, Exit) {
            (
                self.delegations.read((delegator, worker)),
                self.delegation_exits.read((delegator, worker))
            )
        }

        fn total_weight(self: @ContractState) -> u256 {
            self.active_weight()
        }
    }

    #[external(v0)]
    impl RewardsImpl of ICdcPoolRewards<ContractState> {
        fn notify_reward(ref self: ContractState, amount: u256) {
            assert(amount != 0, errors::ZERO_AMOUNT);
            let funder = get_caller_address();
            self.pull(funder, amount);
            let weight = self.active_weight();
            let mut acc = self.reward_per_weight.read();
            if weight == 0 {
                // Nobody earns now. Kept for later, it would all go to the first stake to
                // activate, however small (at launch, every fee paid before anyone else's
                // warm-up ended); the treasury takes it instead.
                let treasury = self.params.read().treasury;
                self
                    .emit(
                        RewardNotified {
                            funder, amount, to_treasury: amount, reward_per_weight: acc
                        }
                    );
                self.push(treasury, amount);
            } else {
                self.reward_balance.write(self.reward_balance.read() + amount);
                acc += amount * PRECISION / weight;
                self.reward_per_weight.write(acc);
                self
                    .emit(
                        RewardNotified { funder, amount, to_treasury: 0, reward_per_weight: acc }
                    );
            }
        }

        fn claim_rewards(ref self: ContractState) -> u256 {
            let account = get_caller_address();
            if self.workers.read(account).registered {
                self.settle_worker(account);
            }
            let count = self.delegate_count.read(account);
            let mut i = 0;
            loop {
                if i >= count {
                    break;
                }
                self.settle_position(account, self.delegate_at.read((account, i)));
                i += 1;
            };
            let amount = self.unclaimed.read(account);
            assert(amount != 0, errors::NOTHING_TO_CLAIM);
            self.unclaimed.write(account, 0);
            self.reward_balance.write(self.reward_balance.read() - amount);
            self.emit(RewardsClaimed { account, amount });
            self.push(account, amount);
            amount
        }

        fn pending_rewards(self: @ContractState, account: ContractAddress) -> u256 {
            let mut total = self.unclaimed.read(account);
            if self.workers.read(account).registered {
                let (own, commission, _) = self.worker_accrual(account);
                total += own + commission;
            }
            let count = self.delegate_count.read(account);
            let mut i = 0;
            loop {
                if i >= count {
                    break;
                }
                let worker = self.delegate_at.read((account, i));
                let (_, _, delegator_acc) = self.worker_accrual(worker);
                total += self.position_weight(account, worker)
                    * (delegator_acc - self.position_acc.read((account, worker)))
                    / PRECISION;
                i += 1;
            };
            total
        }
    }

    #[external(v0)]
    impl SlashingImpl of ICdcPoolSlashing<ContractState> {
        fn hold(
            ref self: ContractState, worker: ContractAddress, requirements: Requirements
        ) -> bool {
            Governance::unsafe_new_contract_state().assert_role(JOB_MANAGER_ROLE);
            if !RegistryImpl::is_eligible(@self, worker, requirements) {
                return false;
            }
            let mut record = self.workers.read(worker);
            record.holds += 1;
            self.workers.write(worker, record);
            let manager = get_caller_address();
            let held = self.manager_holds.read((manager, worker));
            self.manager_holds.write((manager, worker), held + 1);
            true
        }

        fn record_outcomes(
            ref self: ContractState,
            worker: ContractAddress,
            outcome: Outcome,
            count: u32,
            rated: u32,
            latency: u64
        ) {
            assert(count != 0, errors::ZERO_AMOUNT);
            assert(rated <= count, errors::BAD_RATED_COUNT);
            let mut record = self.workers.read(worker);
            assert(record.registered, errors::NOT_REGISTERED);
            // Each manager releases only the holds it placed, even after its role is revoked,
            // so revoking JOB_MANAGER never strands the jobs it holds (or their escrow).
            let manager = get_caller_address();
            let held = self.manager_holds.read((manager, worker));
            assert(held >= count, errors::NO_HOLD);
            self.manager_holds.write((manager, worker), held - count);
            record.holds -= count;
            self.workers.write(worker, record);
            // Only a current JOB_MANAGER's outcomes move the reputation.
            let rated = if Governance::unsafe_new_contract_state()
                .has_role(JOB_MANAGER_ROLE, manager) {
                rated
            } else {
                0
            };
            let mut rep = self.reputations.read(worker);
            let mut i: u32 = 0;
            loop {
                if i == rated {
                    break;
                }
                rep = apply_outcome(rep, outcome, latency);
                i += 1;
            };
            if rated != 0 {
                rep.last_outcome_at = get_block_timestamp();
                self.reputations.write(worker, rep);
            }
            self.emit(OutcomeRecorded { worker, outcome, count, rated, latency, score: rep.score });
        }

        fn slash(
            ref self: ContractState,
            worker: ContractAddress,
            reason: SlashReason,
            bps: u16,
            evidence_hash: felt252,
            beneficiary: ContractAddress,
            beneficiary_cap: u256
        ) -> u64 {
            let governance = Governance::unsafe_new_contract_state();
            let caller = get_caller_address();
            let immediate = governance.has_role(JOB_MANAGER_ROLE, caller);
            assert(immediate || governance.has_role(SLASHER_ROLE, caller), errors::NOT_AUTHORIZED);
            // Only JobMgr's slashes pay a beneficiary (a job's disputer, capped by the job's
            // terms): a SLASHER naming one could pay itself (or an account of its own) the
            // beneficiary share of every worker that misses its challenge window.
            assert(immediate || beneficiary.is_zero(), errors::SLASHER_BENEFICIARY);
            let mut record = self.workers.read(worker);
            assert(record.registered, errors::NOT_REGISTERED);
            assert(bps.into() <= BPS, errors::BAD_SLASH_BPS);
            let params = self.params.read();
            let bps = if bps == 0 {
                default_bps(@params, reason)
            } else {
                bps
            };
            let slash_id = self.slash_count.read() + 1;
            self.slash_count.write(slash_id);
            let challenge_deadline = if immediate {
                get_block_timestamp()
            } else {
                get_block_timestamp() + params.challenge_window
            };
            let slash = Slash {
                worker,
                reason,
                bps,
                evidence_hash,
                beneficiary,
                beneficiary_cap,
                beneficiary_share_bps: params.beneficiary_share_bps,
                challenge_deadline,
                arbitration_deadline: 0,
                status: SlashStatus::Pending(()),
                bond: 0,
                amount: 0,
            };
            self.slashes.write(slash_id, slash);
            self
                .emit(
                    SlashCreated {
                        slash_id,
                        worker,
                        reason,
                        bps,
                        evidence_hash,
                        beneficiary,
                        challenge_deadline
                    }
                );
            if immediate {
                self.apply_slash(slash_id, false);
            } else {
                // Locks the worker's exit until this slash is executed or resolved.
                record.open_slashes += 1;
                self.workers.write(worker, record);
            }
            slash_id
        }

        fn challenge_slash(ref self: ContractState, slash_id: u64) {
            let mut slash = self.known_slash(slash_id);
            assert(slash.status == SlashStatus::Pending(()), errors::SLASH_NOT_PENDING);
            let worker = get_caller_address();
            assert(worker == slash.worker, errors::NOT_SLASHED_WORKER);
            assert(get_block_timestamp() <= slash.challenge_deadline, errors::CHALLENGE_CLOSED);
            let bond = self.params.read().challenge_bond;
            self.pull(worker, bond);
            self.bonds_held.write(self.bonds_held.read() + bond);
            slash.status = SlashStatus::Challenged(());
            slash.bond = bond;
            slash.arbitration_deadline = get_block_timestamp()
                + self.params.read().arbitration_window;
            self.slashes.write(slash_id, slash);
            self.emit(SlashChallenged { slash_id, worker, bond });
        }

        fn resolve_slash(ref self: ContractState, slash_id: u64, upheld: bool) {
            Governance::unsafe_new_contract_state().assert_role(ARBITER_ROLE);
            let slash = self.known_slash(slash_id);
            assert(slash.status == SlashStatus::Challenged(()), errors::SLASH_NOT_CHALLENGED);
            // Past the deadline the default applies (`settle_slash`): no race with it.
            assert(get_block_timestamp() <= slash.arbitration_deadline, errors::ARBITRATION_CLOSED);
            self.bonds_held.write(self.bonds_held.read() - slash.bond);
            self.emit(SlashResolved { slash_id, upheld, by_arbiter: true });
            if upheld {
                self.apply_slash(slash_id, true);
                self.push(self.params.read().treasury, slash.bond);
            } else {
                self.overturn(slash_id, slash);
            }
        }

        fn settle_slash(ref self: ContractState, slash_id: u64) {
            let slash = self.known_slash(slash_id);
            assert(slash.status == SlashStatus::Challenged(()), errors::SLASH_NOT_CHALLENGED);
            assert(get_block_timestamp() > slash.arbitration_deadline, errors::ARBITRATION_OPEN);
            self.bonds_held.write(self.bonds_held.read() - slash.bond);
            self.emit(SlashResolved { slash_id, upheld: false, by_arbiter: false });
            self.overturn(slash_id, slash);
        }

        fn execute_slash(ref self: ContractState, slash_id: u64) {
            let slash = self.known_slash(slash_id);
            assert(slash.status == SlashStatus::Pending(()), errors::SLASH_NOT_PENDING);
            assert(get_block_timestamp() > slash.challenge_deadline, errors::CHALLENGE_OPEN);
            self.apply_slash(slash_id, true);
        }

        fn ban(ref self: ContractState, worker: ContractAddress) {
            Governance::unsafe_new_contract_state().assert_admin();
            let record = self.workers.read(worker);
            assert(record.registered, errors::NOT_REGISTERED);
            assert(!record.banned, errors::ALREADY_BANNED);
            self.settle_worker(worker);
            let mut record = self.workers.read(worker);
            record.banned = true;
            self.workers.write(worker, record);
            // All own stake leaves the weight and waits out a fresh exit window.
            let stake = self.stakes.read(worker);
            self.stakes.write(worker, 0);
            self.total_stake.write(self.total_stake.read() - stake);
            let warming = self.warming.read(worker);
            if warming.amount != 0 {
                self.cool(worker, warming, warming.amount);
            }
            let exit = self.exits.read(worker);
            let unlock_time = get_block_timestamp() + self.params.read().exit_window;
            self.exits.write(worker, Exit { amount: exit.amount + stake, unlock_time });
            self.total_exits.write(self.total_exits.read() + stake);
            self.emit(WorkerBanned { worker, unlock_time });
        }

        fn get_slash(self: @ContractState, slash_id: u64) -> Slash {
            self.known_slash(slash_id)
        }
    }

    #[external(v0)]
    impl AdminImpl of ICdcPoolAdmin<ContractState> {
        fn schedule_params(ref self: ContractState, params: PoolParams) {
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

        fn pending_params(self: @ContractState) -> (PoolParams, u64) {
            let ready_at = Governance::unsafe_new_contract_state().op_ready_at(PARAMS_OP);
            (self.pending_params.read(), ready_at)
        }

        fn params(self: @ContractState) -> PoolParams {
            self.params.read()
        }

        fn treasury(self: @ContractState) -> ContractAddress {
            self.params.read().treasury
        }

        fn token(self: @ContractState) -> ContractAddress {
            self.token.read()
        }

        fn totals(self: @ContractState) -> PoolTotals {
            PoolTotals {
                stakes: self.total_stake.read(),
                delegations: self.total_delegated.read(),
                exits: self.total_exits.read(),
                rewards: self.reward_balance.read(),
                bonds: self.bonds_held.read(),
                warming: self.total_warming.read(),
            }
        }
    }

    fn assert_open() {
        Governance::unsafe_new_contract_state().assert_open();
    }

    fn assert_params(params: @PoolParams) {
        let p = *params;
        assert(!p.treasury.is_zero(), errors::ZERO_ADDRESS);
        assert(
            p.min_stake_0 != 0
                && p.min_stake_0 <= p.min_stake_1
                && p.min_stake_1 <= p.min_stake_2
                && p.min_stake_2 <= p.min_stake_3
                && p.min_stake_3 <= MAX_MIN_STAKE,
            errors::BAD_MIN_STAKE
        );
        assert(
            p.exit_window >= MIN_EXIT_WINDOW && p.exit_window <= MAX_EXIT_WINDOW,
            errors::BAD_EXIT_WINDOW
        );
        assert(
            p.challenge_window >= MIN_CHALLENGE_WINDOW
                && p.challenge_window <= MAX_CHALLENGE_WINDOW,
            errors::BAD_CHALLENGE_WINDOW
        );
        assert(
            p.arbitration_window >= MIN_ARBITRATION_WINDOW
                && p.arbitration_window <= MAX_ARBITRATION_WINDOW,
            errors::BAD_ARBITRATION_WINDOW
        );
        assert(p.challenge_bond != 0 && p.challenge_bond <= MAX_BOND, errors::BAD_BOND);
        assert(p.warmup >= MIN_WARMUP && p.warmup <= MAX_WARMUP, errors::BAD_WARMUP);
        assert(p.beneficiary_share_bps.into() <= BPS, errors::BAD_SHARE);
        assert(
            valid_bps(p.bps_unavailable)
                && valid_bps(p.bps_poor_performance)
                && valid_bps(p.bps_protocol_violation)
                && valid_bps(p.bps_malicious)
                && valid_bps(p.bps_fraud),
            errors::BAD_SLASH_BPS
        );
    }

    fn min(a: u256, b: u256) -> u256 {
        if a < b {
            a
        } else {
            b
        }
    }

    fn valid_bps(bps: u16) -> bool {
        bps != 0 && bps.into() <= BPS
    }

    fn default_bps(params: @PoolParams, reason: SlashReason) -> u16 {
        match reason {
            SlashReason::Unavailable(()) => *params.bps_unavailable,
            SlashReason::PoorPerformance(()) => *params.bps_poor_performance,
            SlashReason::ProtocolViolation(()) => *params.bps_protocol_violation,
            SlashReason::Malicious(()) => *params.bps_malicious,
            SlashReason::Fraud(()) => *params.bps_fraud,
        }
    }

    /// One outcome's effect on a reputation: a success moves the score an eighth of the way to
    /// 10,000 and the latency average an eighth of the way to `latency` (the first success
    /// sets it); a failure moves the score an eighth of the way to 0, a miss a sixteenth.
    fn apply_outcome(rep: Reputation, outcome: Outcome, latency: u64) -> Reputation {
        let mut rep = rep;
        match outcome {
            Outcome::Success(()) => {
                rep.completed += 1;
                rep.score += (MAX_SCORE - rep.score) / 8;
                if rep.completed == 1 {
                    rep.avg_latency = latency;
                } else if latency >= rep.avg_latency {
                    rep.avg_latency += (latency - rep.avg_latency) / 8;
                } else {
                    rep.avg_latency -= (rep.avg_latency - latency) / 8;
                }
            },
            Outcome::Failure(()) => {
                rep.failed += 1;
                rep.score -= rep.score / 8;
            },
            Outcome::Missed(()) => {
                rep.missed += 1;
                rep.score -= rep.score / 16;
            },
        }
        rep
    }

    fn hardware_tier(vram_mb: u32) -> u8 {
        if vram_mb >= TIER_3_VRAM {
            3
        } else if vram_mb >= TIER_2_VRAM {
            2
        } else if vram_mb >= TIER_1_VRAM {
            1
        } else {
            0
        }
    }

    #[generate_trait]
    impl InternalImpl of InternalTrait {
        /// The record of a registered, unbanned worker.
        fn usable_worker(self: @ContractState, worker: ContractAddress) -> WorkerRecord {
            let record = self.workers.read(worker);
            assert(record.registered, errors::NOT_REGISTERED);
            assert(!record.banned, errors::BANNED);
            record
        }

        fn min_stake(self: @ContractState, tier: u8) -> u256 {
            let p = self.params.read();
            if tier == 0 {
                p.min_stake_0
            } else if tier == 1 {
                p.min_stake_1
            } else if tier == 2 {
                p.min_stake_2
            } else {
                p.min_stake_3
            }
        }

        /// Highest tier whose minimum `stake` meets, or NO_TIER.
        fn stake_tier(self: @ContractState, stake: u256) -> u8 {
            let p = self.params.read();
            if stake >= p.min_stake_3 {
                3
            } else if stake >= p.min_stake_2 {
                2
            } else if stake >= p.min_stake_1 {
                1
            } else if stake >= p.min_stake_0 {
                0
            } else {
                NO_TIER
            }
        }

        fn state_of(self: @ContractState, worker: ContractAddress) -> WorkerState {
            let record = self.workers.read(worker);
            if !record.registered {
                return WorkerState::Unregistered(());
            }
            if record.banned {
                return WorkerState::Banned(());
            }
            let tier = hardware_tier(self.capabilities.read(worker).vram_mb);
            let meets_minimum = self.stakes.read(worker) >= self.min_stake(tier);
            if !meets_minimum && self.exits.read(worker).amount != 0 {
                return WorkerState::Exiting(());
            }
            if record.deactivated || !meets_minimum {
                return WorkerState::Inactive(());
            }
            WorkerState::Active(())
        }

        fn worker_info(self: @ContractState, worker: ContractAddress) -> WorkerInfo {
            let capabilities = self.capabilities.read(worker);
            let stake = self.stakes.read(worker);
            WorkerInfo {
                address: worker,
                state: self.state_of(worker),
                capabilities,
                attestation_hash: self.attestations.read(worker),
                record: self.workers.read(worker),
                reputation: self.reputations.read(worker),
                stake,
                delegated: self.delegated.read(worker),
                exit: self.exits.read(worker),
                warming: self.warming.read(worker),
                delegated_warming: self.delegated_warming.read(worker),
                hardware_tier: hardware_tier(capabilities.vram_mb),
                stake_tier: self.stake_tier(stake),
                commission_change: self.commission_changes.read(worker),
            }
        }

        /// What `worker` has accrued since it last settled: (own-stake reward, commission, its
        /// delegators' accumulator after settling).
        fn worker_accrual(self: @ContractState, worker: ContractAddress) -> (u256, u256, u256) {
            let acc = self.reward_per_weight.read();
            let delta = acc - self.worker_acc.read(worker);
            let delegator_acc = self.delegator_acc.read(worker);
            if delta == 0 {
                return (0, 0, delegator_acc);
            }
            // Only the weight past its warm-up earns (the same weights `notify_reward` divides
            // by).
            let own = (self.stakes.read(worker) - self.warming.read(worker).amount)
                * delta
                / PRECISION;
            let delegated = self.delegated.read(worker) - self.delegated_warming.read(worker);
            if delegated == 0 {
                return (own, 0, delegator_acc);
            }
            let gross = delegated * delta / PRECISION;
            let commission_bps: u256 = self.workers.read(worker).commission_bps.into();
            let commission = gross * commission_bps / BPS;
            (own, commission, delegator_acc + (gross - commission) * PRECISION / delegated)
        }

        /// Credits `worker` what it accrued and moves its delegators' accumulator, then moves
        /// its warming stake into the weight if its warm-up is over; must run before its stake,
        /// delegations or commission change.
        fn settle_worker(ref self: ContractState, worker: ContractAddress) {
            let (own, commission, delegator_acc) = self.worker_accrual(worker);
            if own + commission != 0 {
                self.unclaimed.write(worker, self.unclaimed.read(worker) + own + commission);
            }
            self.delegator_acc.write(worker, delegator_acc);
            self.worker_acc.write(worker, self.reward_per_weight.read());
            // A scheduled commission applies from the first settlement after its notice:
            // everything accrued up to here was split at the old rate.
            let change = self.commission_changes.read(worker);
            if change.effective_at != 0 && get_block_timestamp() >= change.effective_at {
                let mut record = self.workers.read(worker);
                record.commission_bps = change.bps;
                self.workers.write(worker, record);
                self.commission_changes.write(worker, CommissionChange { bps: 0, effective_at: 0 });
                self.emit(CommissionSet { worker, bps: change.bps });
            }
            // Accrued above at the old weight: the stake earns from this settlement on.
            let warming = self.warming.read(worker);
            if warming.amount != 0 && get_block_timestamp() >= warming.unlock_time {
                self.cool(worker, warming, warming.amount);
                self.emit(StakeActivated { account: worker, worker, amount: warming.amount });
            }
        }

        /// Takes `amount` out of `worker`'s warming stake `warming` (activated, or leaving).
        fn cool(ref self: ContractState, worker: ContractAddress, warming: Exit, amount: u256) {
            let left = warming.amount - amount;
            let unlock_time = if left == 0 {
                0
            } else {
                warming.unlock_time
            };
            self.warming.write(worker, Exit { amount: left, unlock_time });
            self.total_warming.write(self.total_warming.read() - amount);
        }

        /// Takes `amount` out of the warming delegation `warming` of (delegator, worker).
        fn cool_delegation(
            ref self: ContractState,
            delegator: ContractAddress,
            worker: ContractAddress,
            warming: Exit,
            amount: u256
        ) {
            let left = warming.amount - amount;
            let unlock_time = if left == 0 {
                0
            } else {
                warming.unlock_time
            };
            self.delegation_warming.write((delegator, worker), Exit { amount: left, unlock_time });
            self.delegated_warming.write(worker, self.delegated_warming.read(worker) - amount);
            self.total_warming.write(self.total_warming.read() - amount);
        }

        /// What rewards are spread over: all stake and delegations less the warming part.
        fn active_weight(self: @ContractState) -> u256 {
            self.total_stake.read() + self.total_delegated.read() - self.total_warming.read()
        }

        /// The part of (delegator, worker)'s delegation that earns.
        fn position_weight(
            self: @ContractState, delegator: ContractAddress, worker: ContractAddress
        ) -> u256 {
            self.delegations.read((delegator, worker))
                - self.delegation_warming.read((delegator, worker)).amount
        }

        /// Settles `worker`, then credits `delegator` its delegation's share, then moves its
        /// warming delegation into the weight if its warm-up is over.
        fn settle_position(
            ref self: ContractState, delegator: ContractAddress, worker: ContractAddress
        ) {
            self.settle_worker(worker);
            let acc = self.delegator_acc.read(worker);
            let earned = self.position_weight(delegator, worker)
                * (acc - self.position_acc.read((delegator, worker)))
                / PRECISION;
            if earned != 0 {
                self.unclaimed.write(delegator, self.unclaimed.read(delegator) + earned);
            }
            self.position_acc.write((delegator, worker), acc);
            let warming = self.delegation_warming.read((delegator, worker));
            if warming.amount != 0 && get_block_timestamp() >= warming.unlock_time {
                self.cool_delegation(delegator, worker, warming, warming.amount);
                self.emit(StakeActivated { account: delegator, worker, amount: warming.amount });
            }
        }

        /// Remembers that `delegator` delegates to `worker` (for claims), once.
        fn track_delegation(
            ref self: ContractState, delegator: ContractAddress, worker: ContractAddress
        ) {
            let count = self.delegate_count.read(delegator);
            let mut i = 0;
            let mut found = false;
            loop {
                if i >= count {
                    break;
                }
                if self.delegate_at.read((delegator, i)) == worker {
                    found = true;
                    break;
                }
                i += 1;
            };
            if !found {
                assert(count < MAX_DELEGATIONS, errors::TOO_MANY_DELEGATIONS);
                self.delegate_at.write((delegator, count), worker);
                self.delegate_count.write(delegator, count + 1);
            }
        }

        fn known_slash(self: @ContractState, slash_id: u64) -> Slash {
            assert(slash_id != 0 && slash_id <= self.slash_count.read(), errors::UNKNOWN_SLASH);
            self.slashes.read(slash_id)
        }

        /// Forgets `delegator`'s delegation to `worker` in its claim list (swap-remove).
        fn untrack_delegation(
            ref self: ContractState, delegator: ContractAddress, worker: ContractAddress
        ) {
            let count = self.delegate_count.read(delegator);
            let mut i = 0;
            loop {
                if i >= count {
                    break;
                }
                if self.delegate_at.read((delegator, i)) == worker {
                    let last = self.delegate_at.read((delegator, count - 1));
                    self.delegate_at.write((delegator, i), last);
                    self.delegate_at.write((delegator, count - 1), Zeroable::zero());
                    self.delegate_count.write(delegator, count - 1);
                    break;
                }
                i += 1;
            };
        }

        /// One open slash of `worker` fewer.
        fn close_slash(ref self: ContractState, worker: ContractAddress) {
            let mut record = self.workers.read(worker);
            record.open_slashes -= 1;
            self.workers.write(worker, record);
        }

        /// Ends a challenged slash with nothing cut and the bond back to the worker (bond
        /// already taken out of `bonds_held`).
        fn overturn(ref self: ContractState, slash_id: u64, slash: Slash) {
            let mut slash = slash;
            slash.status = SlashStatus::Overturned(());
            self.slashes.write(slash_id, slash);
            self.close_slash(slash.worker);
            self.push(slash.worker, slash.bond);
        }

        /// Cuts the slash's share of the worker's own stake, then of its pending exit, and pays
        /// the beneficiary its share (at most its cap) and the treasury the rest. `was_open`:
        /// the slash was pending or challenged (counted in the worker's open slashes).
        fn apply_slash(ref self: ContractState, slash_id: u64, was_open: bool) {
            let mut slash = self.slashes.read(slash_id);
            let worker = slash.worker;
            self.settle_worker(worker);
            let stake = self.stakes.read(worker);
            let exit = self.exits.read(worker);
            let amount = (stake + exit.amount) * slash.bps.into() / BPS;
            if amount <= stake {
                self.stakes.write(worker, stake - amount);
                self.total_stake.write(self.total_stake.read() - amount);
            } else {
                let from_exit = amount - stake;
                self.stakes.write(worker, 0);
                self.total_stake.write(self.total_stake.read() - stake);
                self
                    .exits
                    .write(
                        worker,
                        Exit { amount: exit.amount - from_exit, unlock_time: exit.unlock_time }
                    );
                self.total_exits.write(self.total_exits.read() - from_exit);
            }
            // Warming stake is slashable like the rest, and never more than what is left.
            let warming = self.warming.read(worker);
            let left = self.stakes.read(worker);
            if warming.amount > left {
                self.cool(worker, warming, warming.amount - left);
            }
            slash.status = SlashStatus::Executed(());
            slash.amount = amount;
            self.slashes.write(slash_id, slash);
            if was_open {
                self.close_slash(worker);
            }
            let params = self.params.read();
            let mut to_beneficiary = 0;
            if !slash.beneficiary.is_zero() {
                to_beneficiary = amount * slash.beneficiary_share_bps.into() / BPS;
                if to_beneficiary > slash.beneficiary_cap {
                    to_beneficiary = slash.beneficiary_cap;
                }
            }
            let to_treasury = amount - to_beneficiary;
            self.emit(SlashExecuted { slash_id, worker, amount, to_beneficiary, to_treasury });
            if to_beneficiary != 0 {
                self.push(slash.beneficiary, to_beneficiary);
            }
            if to_treasury != 0 {
                self.push(params.treasury, to_treasury);
            }
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
