use starknet::ContractAddress;
use ciro::common::types::{Capabilities, Outcome, Requirements, SlashReason};
use ciro::cdc_pool::types::{Exit, PoolParams, PoolTotals, Slash, WorkerInfo};

/// A worker's own registration and liveness.
#[starknet::interface]
trait ICdcPoolRegistry<TContractState> {
    /// Registers the caller as a worker with its capabilities and attestation hash.
    /// Requires: sealed, not paused, only known capability flags, not registered before.
    /// Emits `WorkerRegistered`.
    fn register_worker(
        ref self: TContractState, capabilities: Capabilities, attestation_hash: felt252
    );
    /// Replaces the caller's capabilities and attestation hash (its hardware tier follows).
    /// Requires: sealed, not paused, only known capability flags, registered, not banned.
    /// Emits `CapabilitiesUpdated`.
    fn update_capabilities(
        ref self: TContractState, capabilities: Capabilities, attestation_hash: felt252
    );
    /// Takes the caller out of assignment (its stake stays). Requires: registered, not
    /// banned, not already deactivated. Emits `WorkerActiveSet`.
    fn deactivate(ref self: TContractState);
    /// Puts the caller back in assignment. Requires: not paused, registered, not banned,
    /// deactivated. Emits `WorkerActiveSet`.
    fn reactivate(ref self: TContractState);
    /// Records that the caller is alive now. Requires: registered, not banned.
    /// Emits `Heartbeat`.
    fn heartbeat(ref self: TContractState);
    /// Schedules the caller's commission on its delegators' rewards: it applies at the
    /// worker's first settlement once the exit window has passed (so delegators can leave
    /// first); rewards accrued before that keep the old rate. A second call replaces the
    /// first and restarts the notice. Requires: registered, `bps` <= 2,000 (20%).
    /// Emits `CommissionScheduled` (and `CommissionSet` when it applies).
    fn set_commission(ref self: TContractState, bps: u16);
    /// Everything about `worker` (state derived now).
    fn get_worker(self: @TContractState, worker: ContractAddress) -> WorkerInfo;
    /// Up to `limit` (<= 100) workers in registration order from `offset`.
    fn list_workers(self: @TContractState, offset: u64, limit: u64) -> Array<WorkerInfo>;
    /// Workers registered so far.
    fn worker_count(self: @TContractState) -> u64;
    /// Whether `worker` may be assigned a job with `requirements`: Active, enough VRAM, every
    /// required flag, a reputation score at least the required one, and a stake tier at least
    /// the required one.
    fn is_eligible(
        self: @TContractState, worker: ContractAddress, requirements: Requirements
    ) -> bool;
}

/// Own stake and delegations.
#[starknet::interface]
trait ICdcPoolStake<TContractState> {
    /// Adds `amount` to the caller's own stake, pulled from the caller (balance-delta
    /// checked). It counts at once for the worker's minimum, tier, eligibility and slashing,
    /// but earns rewards only after the warm-up (parameter `warmup`): it is *warming* until
    /// then, and a new stake restarts the warm-up of everything still warming. It joins the
    /// reward weight at the worker's first settlement once the warm-up is over (`activate`,
    /// or any of its stake operations or claims). Requires: not paused, registered, not
    /// banned, amount > 0. Emits `Staked` (and `StakeActivated` if earlier warming stake was
    /// due).
    fn stake(ref self: TContractState, amount: u256);
    /// Moves `amount` of own stake to a pending exit, payable after the exit window (which
    /// restarts for the whole pending amount); the warming part leaves first. Requires:
    /// amount > 0, <= own stake. Emits `UnstakeRequested` (and `StakeActivated` if warming
    /// stake was due).
    fn unstake_intent(ref self: TContractState, amount: u256);
    /// Pays `worker` its pending exit. Anyone may call it. Requires: something pending, the
    /// window over, no slash pending or challenged against the worker, and no job held (see
    /// `hold`): stake stays slashable while a job it answers for is open. Emits `Withdrawn`.
    fn unstake_action(ref self: TContractState, worker: ContractAddress);
    /// Delegates `amount` to `worker`, pulled from the caller. Counts for rewards, not for the
    /// worker's minimum, and only after the warm-up, like own stake (see `stake`): it joins the
    /// reward weight at the position's first settlement once the warm-up is over
    /// (`activate_delegation`, or a delegation operation or claim of the delegator); a new
    /// delegation to the same worker restarts the warm-up of what still warms there.
    /// Requires: not paused, worker registered and not banned, amount > 0, at most 10 workers
    /// per delegator. Emits `Delegated` (and `StakeActivated` if earlier warming was due).
    fn delegate(ref self: TContractState, worker: ContractAddress, amount: u256);
    /// Moves `amount` of the caller's delegation to `worker` to a pending exit (the warming
    /// part leaves first); when nothing stays delegated, the worker's slot among the caller's
    /// 10 is freed (rewards settled). Requires: amount > 0, <= the delegation.
    /// Emits `UndelegateRequested` (and `StakeActivated` if warming was due).
    fn undelegate_intent(ref self: TContractState, worker: ContractAddress, amount: u256);
    /// Pays `delegator` its pending undelegation from `worker`. Anyone may call it.
    /// Requires: something pending, the window over. Emits `Withdrawn`.
    fn undelegate_action(
        ref self: TContractState, delegator: ContractAddress, worker: ContractAddress
    );
    /// Settles `worker` (its rewards so far, at the old weight); if its warming stake's
    /// warm-up is over, that stake joins the reward weight from now on. Before the end of the
    /// warm-up it changes nothing but the settlement. Anyone may call it (usually the worker,
    /// right when its warm-up ends: weight joins at the first settlement after it).
    /// Requires: worker registered. Emits `StakeActivated` when stake joins.
    fn activate(ref self: TContractState, worker: ContractAddress);
    /// The same for `delegator`'s delegation to `worker`: settles the position, and if its
    /// warm-up is over, the warming delegation joins the reward weight. Anyone may call it.
    /// Emits `StakeActivated` when weight joins.
    fn activate_delegation(
        ref self: TContractState, delegator: ContractAddress, worker: ContractAddress
    );
    /// `delegator`'s delegation to `worker` (warming included) and its pending exit.
    fn delegation(
        self: @TContractState, delegator: ContractAddress, worker: ContractAddress
    ) -> (u256, Exit);
    /// The part of `delegator`'s delegation to `worker` still warming (or not yet activated)
    /// and the end of its warm-up.
    fn delegation_warming(
        self: @TContractState, delegator: ContractAddress, worker: ContractAddress
    ) -> Exit;
    /// What rewards are spread over: own stake plus delegations of every worker, less what is
    /// still warming (or due but not yet activated).
    fn total_weight(self: @TContractState) -> u256;
}

/// The reward stream.
#[starknet::interface]
trait ICdcPoolRewards<TContractState> {
    /// Pulls `amount` from the caller (JobMgr's protocol fees, or any funder) and spreads it
    /// over the total weight (`total_weight`: warming stake and delegations take no part);
    /// with no weight it goes to the treasury (nobody earns it, and the first stake to
    /// activate must not take it all).
    /// Requires: amount > 0 (works while paused). Emits `RewardNotified`.
    fn notify_reward(ref self: TContractState, amount: u256);
    /// Pays the caller everything accrued to it: as a worker (own stake and commission) and
    /// as a delegator. Returns the amount. Requires: something to claim. Emits
    /// `RewardsClaimed`.
    fn claim_rewards(ref self: TContractState) -> u256;
    /// What `claim_rewards` would pay `account` now.
    fn pending_rewards(self: @TContractState, account: ContractAddress) -> u256;
}

/// Reputation and slashing.
#[starknet::interface]
trait ICdcPoolSlashing<TContractState> {
    /// JobMgr assigns `worker` a job with `requirements`: when the worker is eligible (see
    /// `is_eligible`), one more job is held against its exit and true is returned; otherwise
    /// nothing changes and false is returned (a batch skips the entry). Requires: caller holds
    /// JOB_MANAGER.
    fn hold(ref self: TContractState, worker: ContractAddress, requirements: Requirements) -> bool;
    /// `count` of `worker`'s held jobs ended with `outcome`: their holds are released, and
    /// `rated` of them (the ones that paid at least JobMgr's rated fee) move the reputation.
    /// Score (0 to 10,000, starting at 5,000) moves an eighth of the way to 10,000 on success
    /// and to 0 on failure, a sixteenth of the way to 0 on a miss: an outcome's weight shrinks
    /// by 7/8 (or 15/16) with every later one. The caller releases only holds it placed
    /// itself (per manager) and needs no role for that, so a JobMgr whose role was revoked
    /// still closes its jobs; only a current JOB_MANAGER's outcomes move the reputation.
    /// Requires: worker registered, count > 0, rated <= count, count <= the holds the caller
    /// placed on the worker.
    /// Emits one `OutcomeRecorded` (with the final score).
    fn record_outcomes(
        ref self: TContractState,
        worker: ContractAddress,
        outcome: Outcome,
        count: u32,
        rated: u32,
        latency: u64
    );
    /// Slashes `bps` (0: the reason's default) of `worker`'s stake (own and exiting) with
    /// `beneficiary` (may be zero) receiving its share, at most `beneficiary_cap`; the rest
    /// goes to the treasury. From JOB_MANAGER: applied at once. From SLASHER: pending, the
    /// worker may challenge it within the window, and the worker's exit is locked until it is
    /// executed or resolved; it names no beneficiary (all of the cut goes to the treasury).
    /// Returns the slash id. Requires: one of those roles, worker registered, bps <= 10,000,
    /// from SLASHER a zero beneficiary. Emits `SlashCreated` (and `SlashExecuted` when
    /// applied).
    fn slash(
        ref self: TContractState,
        worker: ContractAddress,
        reason: SlashReason,
        bps: u16,
        evidence_hash: felt252,
        beneficiary: ContractAddress,
        beneficiary_cap: u256
    ) -> u64;
    /// The slashed worker contests a pending slash, paying the challenge bond; the arbiter
    /// then has the arbitration window to decide. Requires: caller is the worker, slash
    /// pending, window open. Emits `SlashChallenged`.
    fn challenge_slash(ref self: TContractState, slash_id: u64);
    /// The arbiter decides a challenged slash: upheld → applied, bond to the treasury;
    /// overturned → nothing cut, bond back to the worker. Requires: ARBITER, challenged, the
    /// arbitration deadline not passed (then only the default of `settle_slash` applies).
    /// Emits `SlashResolved` (and `SlashExecuted` when upheld).
    fn resolve_slash(ref self: TContractState, slash_id: u64, upheld: bool);
    /// Ends a challenged slash the arbiter left undecided past its arbitration deadline:
    /// overturned (nothing cut, bond back to the worker). Anyone may call it. Requires:
    /// challenged, deadline passed. Emits `SlashResolved` (`by_arbiter` false).
    fn settle_slash(ref self: TContractState, slash_id: u64);
    /// Applies an unchallenged slash after its window. Anyone may call it.
    /// Requires: pending, window over. Emits `SlashExecuted`.
    fn execute_slash(ref self: TContractState, slash_id: u64);
    /// Bans `worker` for good: its own stake moves to a pending exit (withdrawable after the
    /// exit window); it can no longer stake, be delegated to, or be assigned.
    /// Requires: admin, registered, not banned. Emits `WorkerBanned`.
    fn ban(ref self: TContractState, worker: ContractAddress);
    /// A slash by id.
    fn get_slash(self: @TContractState, slash_id: u64) -> Slash;
}

/// Parameters and accounting views.
#[starknet::interface]
trait ICdcPoolAdmin<TContractState> {
    /// Schedules new parameters, executable after the governance delay (a second schedule
    /// replaces the first and restarts it). Requires: admin; treasury not zero; 0 < min
    /// stakes, nondecreasing by tier, <= 10^9 tokens; exit window 1 h to 30 d; challenge
    /// window 1 h to 7 d; arbitration window 1 h to 30 d; 0 < bond <= 10^6 tokens; shares and
    /// slash bps <= 10,000 (slash bps > 0); warm-up 1 h to 7 d (stake already warming keeps
    /// its end). Emits `ParamsScheduled`.
    fn schedule_params(ref self: TContractState, params: PoolParams);
    /// Installs the scheduled parameters. Requires: admin, scheduled, the delay passed.
    /// Emits `ParamsSet`.
    fn execute_params(ref self: TContractState);
    /// Drops the scheduled parameters. Requires: admin, scheduled. Emits `ParamsCancelled`.
    fn cancel_params(ref self: TContractState);
    /// The last scheduled parameters and when they may be executed (0: none scheduled).
    fn pending_params(self: @TContractState) -> (PoolParams, u64);
    fn params(self: @TContractState) -> PoolParams;
    fn treasury(self: @TContractState) -> ContractAddress;
    /// The token stakes, rewards and bonds are paid in.
    fn token(self: @TContractState) -> ContractAddress;
    /// The totals that account for the pool's token balance.
    fn totals(self: @TContractState) -> PoolTotals;
}
