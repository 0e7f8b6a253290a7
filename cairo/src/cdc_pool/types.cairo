use starknet::ContractAddress;
use ciro::common::types::{Capabilities, SlashReason};

/// A worker's state, derived on every read from what is stored (never stored itself).
#[derive(Copy, Drop, Serde, PartialEq)]
enum WorkerState {
    /// Never registered.
    Unregistered: (),
    /// Registered, not deactivated, own stake at least its tier's minimum: may be assigned.
    Active: (),
    /// Registered but deactivated by itself or below its minimum stake.
    Inactive: (),
    /// Below its minimum stake while an unstake intent is pending.
    Exiting: (),
    /// A slash against it is pending (not yet executed or resolved).
    Slashed: (),
    /// Banned by the admin; it may only withdraw after its exit window.
    Banned: (),
}

/// What the pool stores per worker besides its stake and reputation.
#[derive(Copy, Drop, Serde, PartialEq, starknet::Store)]
struct WorkerRecord {
    registered: bool,
    /// Set by `deactivate`, cleared by `reactivate`.
    deactivated: bool,
    banned: bool,
    /// Commission on its delegators' rewards, in basis points.
    commission_bps: u16,
    /// Hash of the worker's hardware attestation (e.g. a TEE quote), as it declared it.
    attestation_hash: felt252,
    registered_at: u64,
    last_heartbeat: u64,
    /// Id of the pending slash against it, or 0.
    pending_slash: u64,
}

/// Verified outcomes of a worker's jobs, as JobMgr recorded them.
#[derive(Copy, Drop, Serde, PartialEq, starknet::Store)]
struct Reputation {
    completed: u32,
    failed: u32,
    missed: u32,
    /// 0 to 10,000; starts at 5,000 (see `record_outcome` for the formula).
    score: u32,
    /// Moving average of assignment-to-result seconds of successful jobs.
    avg_latency: u64,
    last_outcome_at: u64,
}

/// An amount on its way out of the pool, payable once `unlock_time` has passed.
#[derive(Copy, Drop, Serde, PartialEq, starknet::Store)]
struct Exit {
    amount: u256,
    unlock_time: u64,
}

/// Everything `get_worker` tells about a worker.
#[derive(Copy, Drop, Serde, PartialEq)]
struct WorkerInfo {
    address: ContractAddress,
    state: WorkerState,
    capabilities: Capabilities,
    record: WorkerRecord,
    reputation: Reputation,
    /// Own active stake (what counts for its minimum and its stake tier).
    stake: u256,
    /// Stake delegated to it by others.
    delegated: u256,
    /// Its pending unstake.
    exit: Exit,
    /// Hardware tier (0 to 3) from its VRAM: the tier whose minimum stake applies.
    hardware_tier: u8,
    /// Highest tier (0 to 3) whose minimum its own stake meets, or 255 if none.
    stake_tier: u8,
}

/// Status of a slash.
#[derive(Copy, Drop, Serde, PartialEq, starknet::Store)]
enum SlashStatus {
    /// Created by a slasher; the worker may challenge it within the window.
    Pending: (),
    /// Challenged by the worker; the arbiter decides.
    Challenged: (),
    /// Applied: the stake was cut and the proceeds paid out.
    Executed: (),
    /// Overturned by the arbiter: nothing was cut and the bond went back.
    Overturned: (),
}

/// A slash, pending or done.
#[derive(Copy, Drop, Serde, PartialEq, starknet::Store)]
struct Slash {
    worker: ContractAddress,
    reason: SlashReason,
    bps: u16,
    evidence_hash: felt252,
    /// Who gets the wronged party's share (zero: all goes to the treasury).
    beneficiary: ContractAddress,
    /// The last moment the worker may challenge.
    challenge_deadline: u64,
    status: SlashStatus,
    /// Bond the worker paid to challenge.
    bond: u256,
    /// What was cut (once executed).
    amount: u256,
}

/// The pool's bounded parameters.
#[derive(Copy, Drop, Serde, PartialEq, starknet::Store)]
struct PoolParams {
    /// Minimum own stake to be Active, per hardware tier 0 to 3.
    min_stake_0: u256,
    min_stake_1: u256,
    min_stake_2: u256,
    min_stake_3: u256,
    /// Seconds between an unstake (or undelegate) intent and its payout.
    exit_window: u64,
    /// Seconds a worker has to challenge a slasher's slash.
    challenge_window: u64,
    /// Bond a worker pays to challenge a slash.
    challenge_bond: u256,
    /// Share of a slash paid to the wronged party when there is one, in basis points.
    beneficiary_share_bps: u16,
    /// Default slash per reason, in basis points of the worker's stake.
    bps_unavailable: u16,
    bps_poor_performance: u16,
    bps_protocol_violation: u16,
    bps_malicious: u16,
    bps_fraud: u16,
}

/// Totals that account for every token the pool holds (the conservation invariant).
#[derive(Copy, Drop, Serde, PartialEq)]
struct PoolTotals {
    /// Σ workers' own active stake.
    stakes: u256,
    /// Σ active delegations.
    delegations: u256,
    /// Σ pending unstakes and undelegations.
    exits: u256,
    /// Rewards funded and not yet claimed (distributed or not, rounding dust included).
    rewards: u256,
    /// Challenge bonds held.
    bonds: u256,
}
