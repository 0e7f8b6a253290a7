use starknet::{ContractAddress, StorePacking};
use traits::{Into, TryInto};
use option::OptionTrait;
use ciro::common::packing::{halves, high64, join32, join64, lane32, low64, to_felt};
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
    /// Banned by the admin; it may only withdraw after its exit window.
    Banned: (),
}

/// What the pool stores per worker besides its capabilities, attestation, stake and
/// reputation: one packed slot (low half: registered_at, last_heartbeat; high half:
/// open_slashes and holds (32 bits each), commission (16), flags).
#[derive(Copy, Drop, Serde, PartialEq)]
struct WorkerRecord {
    registered: bool,
    /// Set by `deactivate`, cleared by `reactivate`.
    deactivated: bool,
    banned: bool,
    /// Commission on its delegators' rewards, in basis points.
    commission_bps: u16,
    registered_at: u64,
    last_heartbeat: u64,
    /// Slashes against it that are pending or challenged: its exit cannot be paid while any
    /// is open.
    open_slashes: u32,
    /// Jobs JobMgr holds it to (assigned, in their challenge window or disputed): its exit
    /// cannot be paid while any is held, so the stake at risk stays slashable.
    holds: u32,
}

/// A commission change waiting out its notice (the exit window), so delegators can leave
/// before a raise applies.
#[derive(Copy, Drop, Serde, PartialEq, starknet::Store)]
struct CommissionChange {
    bps: u16,
    /// When it applies (0: none pending).
    effective_at: u64,
}

/// Verified outcomes of a worker's jobs, as JobMgr recorded them: two packed slots (four u32
/// lanes; the latency average and the last outcome's time).
#[derive(Copy, Drop, Serde, PartialEq)]
struct Reputation {
    completed: u32,
    failed: u32,
    missed: u32,
    /// 0 to 10,000; starts at 5,000 (see `record_outcomes` for the formula).
    score: u32,
    /// Moving average of assignment-to-result seconds of successful jobs.
    avg_latency: u64,
    last_outcome_at: u64,
}

/// An amount waiting for `unlock_time`: a pending exit (payable from then on), or stake or a
/// delegation warming up (earning rewards from its first settlement from then on).
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
    /// Hash of the worker's hardware attestation (e.g. a TEE quote), as it declared it.
    attestation_hash: felt252,
    record: WorkerRecord,
    reputation: Reputation,
    /// Own stake (what counts for its minimum, its stake tier and slashing), warming included.
    stake: u256,
    /// Stake delegated to it by others, warming included.
    delegated: u256,
    /// Its pending unstake.
    exit: Exit,
    /// The part of `stake` still warming up (earning nothing): it joins the reward weight at
    /// the worker's first settlement from `unlock_time` on (see `activate`).
    warming: Exit,
    /// The part of `delegated` that is still warming up or not yet activated (earning nothing).
    delegated_warming: u256,
    /// Hardware tier (0 to 3) from its VRAM: the tier whose minimum stake applies.
    hardware_tier: u8,
    /// Highest tier (0 to 3) whose minimum its own stake meets, or 255 if none.
    stake_tier: u8,
    /// A commission change waiting out its notice (`effective_at` 0: none), so a delegator
    /// sees a raise before it joins.
    commission_change: CommissionChange,
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
    /// Overturned by the arbiter, or left undecided past its arbitration deadline: nothing
    /// was cut and the bond went back.
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
    /// Most the beneficiary may receive (JobMgr bounds it by a multiple of the job's fee);
    /// the rest goes to the treasury.
    beneficiary_cap: u256,
    /// The beneficiary's share of the cut, in basis points: the pool's parameter when the
    /// slash was created (a later change does not reach it).
    beneficiary_share_bps: u16,
    /// The last moment the worker may challenge.
    challenge_deadline: u64,
    /// Once challenged: after this moment anyone may settle it (overturned by default).
    arbitration_deadline: u64,
    status: SlashStatus,
    /// Bond the worker paid to challenge.
    bond: u256,
    /// What was cut (once executed).
    amount: u256,
}

/// The pool's bounded parameters (changed only through the timelock once sealed).
#[derive(Copy, Drop, Serde, PartialEq, starknet::Store)]
struct PoolParams {
    /// Where slash proceeds (beyond the wronged party's share) and upheld bonds go.
    treasury: ContractAddress,
    /// Minimum own stake to be Active, per hardware tier 0 to 3.
    min_stake_0: u256,
    min_stake_1: u256,
    min_stake_2: u256,
    min_stake_3: u256,
    /// Seconds between an unstake (or undelegate) intent and its payout.
    exit_window: u64,
    /// Seconds a worker has to challenge a slasher's slash.
    challenge_window: u64,
    /// Seconds the arbiter has to decide a challenged slash before anyone may settle it.
    arbitration_window: u64,
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
    /// Seconds new stake and delegations wait before they earn rewards (they count for the
    /// minimum, tiers and slashing at once).
    warmup: u64,
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
    /// The part of `stakes` + `delegations` still warming up (out of the reward weight).
    warming: u256,
}

impl WorkerRecordPacking of StorePacking<WorkerRecord, felt252> {
    fn pack(value: WorkerRecord) -> felt252 {
        let mut flags: u64 = 0;
        if value.registered {
            flags += 1;
        }
        if value.deactivated {
            flags += 2;
        }
        if value.banned {
            flags += 4;
        }
        let commission: u64 = value.commission_bps.into();
        let counters: u64 = value.open_slashes.into() + value.holds.into() * 0x100000000;
        let high = join64(counters, commission) + flags.into() * 0x100000000000000000000;
        to_felt(join64(value.registered_at, value.last_heartbeat), high)
    }

    fn unpack(value: felt252) -> WorkerRecord {
        let (low, high) = halves(value);
        let flags = high / 0x100000000000000000000;
        WorkerRecord {
            registered: flags % 2 == 1,
            deactivated: (flags / 2) % 2 == 1,
            banned: (flags / 4) % 2 == 1,
            commission_bps: (high64(high) % 0x10000).try_into().unwrap(),
            registered_at: low64(low),
            last_heartbeat: high64(low),
            open_slashes: (low64(high) % 0x100000000).try_into().unwrap(),
            holds: (low64(high) / 0x100000000).try_into().unwrap(),
        }
    }
}

impl ReputationPacking of StorePacking<Reputation, u256> {
    fn pack(value: Reputation) -> u256 {
        u256 {
            low: join32(value.completed, value.failed, value.missed, value.score),
            high: join64(value.avg_latency, value.last_outcome_at),
        }
    }

    fn unpack(value: u256) -> Reputation {
        Reputation {
            completed: lane32(value.low, 0),
            failed: lane32(value.low, 1),
            missed: lane32(value.low, 2),
            score: lane32(value.low, 3),
            avg_latency: low64(value.high),
            last_outcome_at: high64(value.high),
        }
    }
}
