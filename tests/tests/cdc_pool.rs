//! Specification of the CDC Pool: worker registry, own stake and exits, delegation, the reward
//! stream, reputation and job holds, slashing and bans, parameters and views. Each test reads
//! given / when / then; every revert is asserted by its exact error string, state changes by
//! their decoded events. JobMgr's use of the pool is in `job_mgr.rs` and `flows.rs`; the seal
//! and the timelock on role grants in `governance.rs`.
//!
//! Tests named `attack_*` are written from the attacker's side: its steps, then the assertion
//! that they fail or that nothing is lost (funds conserved: `assert_invariants`). The threats:
//! a worker escaping a slash or the stake its jobs put at risk, a slash left undecided forever,
//! a beneficiary or an admin taking more than the rules give, a commission raised under
//! delegators' feet, and a delegator's slots filled for good.

use ciro_chain::bindings::cdc_pool::{
    self, CommissionScheduled, CommissionSet, Delegated, Exit, Outcome, OutcomeRecorded,
    ParamsCancelled, ParamsScheduled, ParamsSet, PoolParams, RewardNotified, RewardsClaimed,
    SlashChallenged, SlashCreated, SlashExecuted, SlashReason, SlashResolved, SlashStatus,
    StakeActivated, Staked, UndelegateRequested, UnstakeRequested, Withdrawn, WorkerActiveSet,
    WorkerBanned, WorkerRegistered, WorkerState,
};
use ciro_chain::bindings::job_mgr;
use ciro_chain::bindings::test_token::TestToken;
use ciro_chain::cainome::cairo_serde::ContractAddress;
use ciro_chain::constants::roles;
use ciro_chain::starknet::accounts::Account;
use ciro_chain::starknet::core::types::Felt;
use ciro_chain::tx::{call, send};
use ciro_tests::assert::{assert_events, assert_reverts};
use ciro_tests::fixtures::{deploy_test_token, u256};
use ciro_tests::system::*;
use ciro_tests::{Actor, TestNet};

const ATTESTATION: u64 = 0xa77e57;
/// Every capability flag the pool knows (the contracts' ALL_FLAGS).
const ALL_FLAGS: u64 = FLAG_CUDA | FLAG_FP16 | FLAG_BF16 | FLAG_INT8 | FLAG_TEE;
/// A beneficiary cap that never binds.
const NO_CAP: u128 = u128::MAX;

/// Gives JOB_MANAGER to the admin the only way a sealed pool allows (scheduled, then granted
/// once the timelock has passed), so that the spec can call what JobMgr calls: `hold`,
/// `record_outcomes`, immediate slashes. The clock moves [`UPGRADE_DELAY`] forward.
async fn admin_as_job_manager(s: &System) {
    let admin = s.pool_as(Actor::Admin);
    let (job_manager, me) = (role(roles::JOB_MANAGER), s.addr(Actor::Admin));
    s.send(admin.schedule_role_grant(&job_manager, &me))
        .await
        .unwrap();
    s.advance(UPGRADE_DELAY).await;
    s.send(admin.grant_role(&job_manager, &me)).await.unwrap();
}

/// The admin (as job manager, see [`admin_as_job_manager`]) holds `jobs` jobs against
/// `worker`, as `assign_job` does.
async fn hold(s: &System, worker: Actor, jobs: u32) {
    for _ in 0..jobs {
        s.send(
            s.pool_as(Actor::Admin)
                .hold(&s.addr(worker), &needs(0, 0, 0, 0)),
        )
        .await
        .unwrap();
    }
}

/// Pool requirements: least VRAM, flags, stake tier and reputation score.
fn needs(vram: u32, flags: u64, tier: u8, score: u32) -> cdc_pool::Requirements {
    cdc_pool::Requirements {
        min_vram_mb: vram,
        required_flags: flags,
        min_stake_tier: tier,
        min_score: score,
    }
}

async fn eligible(s: &System, worker: Actor, requirements: &cdc_pool::Requirements) -> bool {
    call(s.pool_reader().is_eligible(&s.addr(worker), requirements))
        .await
        .unwrap()
}

async fn pending(s: &System, actor: Actor) -> u128 {
    call(s.pool_reader().pending_rewards(&s.addr(actor)))
        .await
        .unwrap()
        .low
}

async fn slash_of(s: &System, slash_id: u64) -> cdc_pool::Slash {
    call(s.pool_reader().get_slash(&slash_id)).await.unwrap()
}

async fn now(s: &System) -> u64 {
    s.net.now().await.unwrap()
}

// ---------------------------------------------------------------------------------------
// constructor, parameters, treasury
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn constructor_sets_admin_token_and_params_with_the_treasury() {
    let s = System::deploy().await.unwrap();
    let r = s.pool_reader();
    assert_eq!(call(r.admin()).await.unwrap(), s.addr(Actor::Admin));
    assert_eq!(call(r.token()).await.unwrap(), ContractAddress(s.token));
    assert_eq!(call(r.treasury()).await.unwrap(), s.addr(TREASURY));
    assert_eq!(call(r.params()).await.unwrap(), s.pool_params());
    assert_eq!(call(r.pending_params()).await.unwrap().1, 0);
    assert!(call(r.is_sealed()).await.unwrap());
    assert_eq!(call(r.total_weight()).await.unwrap(), u256(0));
    assert_eq!(call(r.worker_count()).await.unwrap(), 0);
}

#[tokio::test]
async fn constructor_rejects_zero_addresses_and_bad_params() {
    let net = TestNet::new().await.unwrap();
    let token = deploy_test_token(&net, 0).await.unwrap();
    let params = pool_params_with(net.contract_address(TREASURY));
    assert_reverts(
        try_deploy_pool(&net, Felt::ZERO, &params).await,
        "POOL: zero address",
    );
    assert_reverts(
        try_deploy_pool(&net, token, &pool_params_with(nobody())).await,
        "POOL: zero address",
    );
    let bad_exit = PoolParams {
        exit_window: 10,
        ..params.clone()
    };
    assert_reverts(
        try_deploy_pool(&net, token, &bad_exit).await,
        "POOL: exit window out of bounds",
    );
    let bad_arbitration = PoolParams {
        arbitration_window: 10,
        ..params
    };
    assert_reverts(
        try_deploy_pool(&net, token, &bad_arbitration).await,
        "POOL: arbitration window bounds",
    );
}

/// Parameters at their bounds, with the arbiter's account as the treasury.
fn new_params(s: &System) -> PoolParams {
    PoolParams {
        treasury: s.addr(Actor::Arbiter),
        min_stake_0: u256(1),
        min_stake_1: u256(1),
        min_stake_2: u256(1),
        min_stake_3: u256(1_000_000_000_000_000_000_000_000_000),
        exit_window: 2_592_000,
        challenge_window: 3_600,
        arbitration_window: 2_592_000,
        challenge_bond: u256(1_000_000_000_000_000_000_000_000),
        beneficiary_share_bps: 10_000,
        bps_unavailable: 1,
        bps_poor_performance: 1,
        bps_protocol_violation: 1,
        bps_malicious: 10_000,
        bps_fraud: 10_000,
        warmup: 604_800,
    }
}

#[tokio::test]
async fn schedule_params_then_execute_after_the_timelock_replaces_the_parameters() {
    let s = System::deploy().await.unwrap();
    let params = new_params(&s);
    let admin = s.pool_as(Actor::Admin);
    let scheduled = s.send(admin.schedule_params(&params)).await.unwrap();
    let pending = call(s.pool_reader().pending_params()).await.unwrap().1;
    let ready_at = s.read_back(pending, UPGRADE_DELAY).await;
    assert_events(
        &scheduled,
        s.pool,
        &[cdc_pool::Event::ParamsScheduled(ParamsScheduled {
            params: params.clone(),
            ready_at,
        })],
    );
    assert_eq!(
        call(s.pool_reader().pending_params()).await.unwrap(),
        (params.clone(), ready_at)
    );
    // Nothing changes until the delay has passed.
    assert_eq!(
        call(s.pool_reader().params()).await.unwrap(),
        s.pool_params()
    );
    s.advance(UPGRADE_DELAY).await;
    let out = s.send(admin.execute_params()).await.unwrap();
    assert_eq!(call(s.pool_reader().params()).await.unwrap(), params);
    assert_eq!(
        call(s.pool_reader().treasury()).await.unwrap(),
        s.addr(Actor::Arbiter)
    );
    assert_eq!(call(s.pool_reader().pending_params()).await.unwrap().1, 0);
    assert_events(
        &out,
        s.pool,
        &[cdc_pool::Event::ParamsSet(ParamsSet { params })],
    );
}

#[tokio::test]
async fn attack_admin_cannot_redirect_the_treasury_or_change_parameters_without_the_timelock() {
    // Given an admin that wants slash proceeds paid to an account of its own at once,
    let s = System::deploy().await.unwrap();
    let admin = s.pool_as(Actor::Admin);
    let grab = PoolParams {
        treasury: s.addr(Actor::Attacker),
        ..s.pool_params()
    };
    // when it executes with nothing scheduled, or before the delay,
    assert_reverts(s.send(admin.execute_params()).await, "GOV: not scheduled");
    s.send(admin.schedule_params(&grab)).await.unwrap();
    s.advance(UPGRADE_DELAY - 10).await;
    assert_reverts(
        s.send(admin.execute_params()).await,
        "GOV: timelock not passed",
    );
    // or schedules again hoping to inherit the first schedule's wait,
    s.send(admin.schedule_params(&grab)).await.unwrap();
    s.advance(20).await;
    assert_reverts(
        s.send(admin.execute_params()).await,
        "GOV: timelock not passed",
    );
    // then the treasury and the parameters are still the deployed ones.
    assert_eq!(
        call(s.pool_reader().treasury()).await.unwrap(),
        s.addr(TREASURY)
    );
    assert_eq!(
        call(s.pool_reader().params()).await.unwrap(),
        s.pool_params()
    );
}

#[tokio::test]
async fn cancel_params_drops_the_scheduled_change() {
    let s = System::deploy().await.unwrap();
    let admin = s.pool_as(Actor::Admin);
    assert_reverts(s.send(admin.cancel_params()).await, "GOV: not scheduled");
    let params = new_params(&s);
    s.send(admin.schedule_params(&params)).await.unwrap();
    let out = s.send(admin.cancel_params()).await.unwrap();
    assert_events(
        &out,
        s.pool,
        &[cdc_pool::Event::ParamsCancelled(ParamsCancelled { params })],
    );
    assert_eq!(call(s.pool_reader().pending_params()).await.unwrap().1, 0);
    s.advance(UPGRADE_DELAY).await;
    assert_reverts(s.send(admin.execute_params()).await, "GOV: not scheduled");
}

#[tokio::test]
async fn parameter_changes_reject_a_caller_who_is_not_admin() {
    let s = System::deploy().await.unwrap();
    let attacker = s.pool_as(Actor::Attacker);
    assert_reverts(
        s.send(attacker.schedule_params(&s.pool_params())).await,
        "GOV: caller is not admin",
    );
    s.send(s.pool_as(Actor::Admin).schedule_params(&s.pool_params()))
        .await
        .unwrap();
    s.advance(UPGRADE_DELAY).await;
    assert_reverts(
        s.send(attacker.execute_params()).await,
        "GOV: caller is not admin",
    );
    assert_reverts(
        s.send(attacker.cancel_params()).await,
        "GOV: caller is not admin",
    );
}

#[tokio::test]
async fn schedule_params_rejects_each_value_out_of_bounds() {
    let s = System::deploy().await.unwrap();
    let p = || s.pool_params();
    let too_much = u256(1_000_000_000_000_000_000_000_000_001);
    let cases: Vec<(PoolParams, &str)> = vec![
        (
            PoolParams {
                treasury: nobody(),
                ..p()
            },
            "POOL: zero address",
        ),
        (
            PoolParams {
                min_stake_0: u256(0),
                ..p()
            },
            "POOL: min stake out of bounds",
        ),
        (
            PoolParams {
                min_stake_1: u256(1),
                ..p()
            },
            "POOL: min stake out of bounds",
        ),
        (
            PoolParams {
                min_stake_3: u256(3_000),
                ..p()
            },
            "POOL: min stake out of bounds",
        ),
        (
            PoolParams {
                min_stake_3: too_much,
                ..p()
            },
            "POOL: min stake out of bounds",
        ),
        (
            PoolParams {
                exit_window: 3_599,
                ..p()
            },
            "POOL: exit window out of bounds",
        ),
        (
            PoolParams {
                exit_window: 2_592_001,
                ..p()
            },
            "POOL: exit window out of bounds",
        ),
        (
            PoolParams {
                challenge_window: 3_599,
                ..p()
            },
            "POOL: challenge window bounds",
        ),
        (
            PoolParams {
                challenge_window: 604_801,
                ..p()
            },
            "POOL: challenge window bounds",
        ),
        (
            PoolParams {
                arbitration_window: 3_599,
                ..p()
            },
            "POOL: arbitration window bounds",
        ),
        (
            PoolParams {
                arbitration_window: 2_592_001,
                ..p()
            },
            "POOL: arbitration window bounds",
        ),
        (
            PoolParams {
                challenge_bond: u256(0),
                ..p()
            },
            "POOL: bond out of bounds",
        ),
        (
            PoolParams {
                challenge_bond: u256(1_000_000_000_000_000_000_000_001),
                ..p()
            },
            "POOL: bond out of bounds",
        ),
        (
            PoolParams {
                beneficiary_share_bps: 10_001,
                ..p()
            },
            "POOL: share out of bounds",
        ),
        (
            PoolParams {
                bps_unavailable: 0,
                ..p()
            },
            "POOL: slash bps out of bounds",
        ),
        (
            PoolParams {
                bps_fraud: 10_001,
                ..p()
            },
            "POOL: slash bps out of bounds",
        ),
        (
            PoolParams {
                warmup: 3_599,
                ..p()
            },
            "POOL: warmup out of bounds",
        ),
        (
            PoolParams {
                warmup: 604_801,
                ..p()
            },
            "POOL: warmup out of bounds",
        ),
    ];
    for (params, error) in cases {
        assert_reverts(
            s.send(s.pool_as(Actor::Admin).schedule_params(&params))
                .await,
            error,
        );
    }
}

#[tokio::test]
async fn a_new_treasury_receives_slash_proceeds_once_its_parameters_are_executed() {
    // Given the treasury moved to the arbiter's account through the timelock
    let s = System::deploy().await.unwrap();
    s.active_worker(Actor::WorkerA).await;
    s.set_pool_params(&PoolParams {
        treasury: s.addr(Actor::Arbiter),
        ..s.pool_params()
    })
    .await;
    assert_eq!(
        call(s.pool_reader().treasury()).await.unwrap(),
        s.addr(Actor::Arbiter)
    );
    // When a slash is executed
    s.slasher_slash(Actor::WorkerA, SlashReason::Unavailable)
        .await;
    s.advance(SLASH_CHALLENGE_WINDOW + 1).await;
    s.send(s.pool_as(Actor::Attacker).execute_slash(&1))
        .await
        .unwrap();
    // Then the proceeds go to the new treasury, none to the old one
    let cut = MIN_STAKE[3] * u128::from(SLASH_BPS[0]) / 10_000;
    assert_eq!(s.balance_of(Actor::Arbiter).await, cut);
    assert_eq!(s.balance_of(TREASURY).await, 0);
    s.assert_invariants("slashed to the new treasury").await;
}

// ---------------------------------------------------------------------------------------
// registry
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn register_worker_records_capabilities_and_starts_inactive_without_stake() {
    let s = System::deploy().await.unwrap();
    let out = s
        .send(
            s.pool_as(Actor::WorkerA)
                .register_worker(&h100(), &felt(ATTESTATION)),
        )
        .await
        .unwrap();
    let info = s.worker_info(Actor::WorkerA).await;
    assert_eq!(info.state, WorkerState::Inactive);
    assert_eq!(info.capabilities, h100());
    assert_eq!(info.attestation_hash, felt(ATTESTATION));
    assert!(info.record.registered && !info.record.banned && !info.record.deactivated);
    assert_eq!((info.hardware_tier, info.stake_tier), (3, 255));
    assert_eq!(
        (info.reputation.score, info.reputation.completed),
        (5_000, 0)
    );
    assert_eq!(call(s.pool_reader().worker_count()).await.unwrap(), 1);
    assert_events(
        &out,
        s.pool,
        &[cdc_pool::Event::WorkerRegistered(WorkerRegistered {
            worker: s.addr(Actor::WorkerA),
            capabilities: h100(),
            attestation_hash: felt(ATTESTATION),
        })],
    );
}

#[tokio::test]
async fn register_worker_rejects_a_second_registration() {
    let s = System::deploy().await.unwrap();
    s.worker(Actor::WorkerA, &h100(), 0).await;
    assert_reverts(
        s.send(s.pool_as(Actor::WorkerA).register_worker(&h100(), &felt(1)))
            .await,
        "POOL: already registered",
    );
}

#[tokio::test]
async fn attack_a_worker_cannot_declare_capability_flags_the_protocol_does_not_know() {
    // Given an attacker that declares a flag bit no model may require yet (to match jobs of
    // a future flag without ever being checked for it), alone or beside every known one,
    let s = System::deploy().await.unwrap();
    let with_flags = |flags: u64| cdc_pool::Capabilities { flags, ..h100() };
    let attacker = s.pool_as(Actor::Attacker);
    // when it registers, it is refused,
    for flags in [32, ALL_FLAGS | 32, 1 << 63] {
        assert_reverts(
            s.send(attacker.register_worker(&with_flags(flags), &felt(1)))
                .await,
            "POOL: unknown capability flag",
        );
    }
    assert_eq!(
        s.worker_info(Actor::Attacker).await.state,
        WorkerState::Unregistered
    );
    // and once registered with every known flag, it cannot add one by an update.
    s.send(attacker.register_worker(&with_flags(ALL_FLAGS), &felt(1)))
        .await
        .unwrap();
    assert_reverts(
        s.send(attacker.update_capabilities(&with_flags(ALL_FLAGS | 64), &felt(2)))
            .await,
        "POOL: unknown capability flag",
    );
    let info = s.worker_info(Actor::Attacker).await;
    assert_eq!(
        (info.capabilities.flags, info.attestation_hash),
        (ALL_FLAGS, felt(1))
    );
}

#[tokio::test]
async fn get_worker_of_an_unknown_address_is_unregistered() {
    let s = System::deploy().await.unwrap();
    assert_eq!(
        s.worker_info(Actor::Attacker).await.state,
        WorkerState::Unregistered
    );
}

#[tokio::test]
async fn update_capabilities_replaces_them_and_moves_the_hardware_tier() {
    // Given an H100 worker staked at tier 0's minimum only (Inactive: tier 3 needs 8,000)
    let s = System::deploy().await.unwrap();
    s.worker(Actor::WorkerA, &h100(), MIN_STAKE[0]).await;
    assert_eq!(
        s.worker_info(Actor::WorkerA).await.state,
        WorkerState::Inactive
    );
    // When it declares a small GPU instead
    let out = s
        .send(
            s.pool_as(Actor::WorkerA)
                .update_capabilities(&small_gpu(), &felt(2)),
        )
        .await
        .unwrap();
    // Then it is a tier-0 worker, Active at that stake
    let info = s.worker_info(Actor::WorkerA).await;
    assert_eq!((info.hardware_tier, info.state), (0, WorkerState::Active));
    assert_events(
        &out,
        s.pool,
        &[cdc_pool::Event::CapabilitiesUpdated(
            cdc_pool::CapabilitiesUpdated {
                worker: s.addr(Actor::WorkerA),
                capabilities: small_gpu(),
                attestation_hash: felt(2),
            },
        )],
    );
}

#[tokio::test]
async fn registry_calls_reject_unregistered_callers() {
    let s = System::deploy().await.unwrap();
    let pool = s.pool_as(Actor::Attacker);
    assert_reverts(
        s.send(pool.update_capabilities(&h100(), &felt(1))).await,
        "POOL: worker not registered",
    );
    assert_reverts(
        s.send(pool.deactivate()).await,
        "POOL: worker not registered",
    );
    assert_reverts(
        s.send(pool.reactivate()).await,
        "POOL: worker not registered",
    );
    assert_reverts(
        s.send(pool.heartbeat()).await,
        "POOL: worker not registered",
    );
    assert_reverts(
        s.send(pool.set_commission(&1)).await,
        "POOL: worker not registered",
    );
    assert_reverts(
        s.send(pool.stake(&u256(1))).await,
        "POOL: worker not registered",
    );
}

#[tokio::test]
async fn deactivate_and_reactivate_toggle_eligibility() {
    let s = System::deploy().await.unwrap();
    s.active_worker(Actor::WorkerA).await;
    let pool = s.pool_as(Actor::WorkerA);
    let out = s.send(pool.deactivate()).await.unwrap();
    assert_eq!(
        s.worker_info(Actor::WorkerA).await.state,
        WorkerState::Inactive
    );
    assert_events(
        &out,
        s.pool,
        &[cdc_pool::Event::WorkerActiveSet(WorkerActiveSet {
            worker: s.addr(Actor::WorkerA),
            active: false,
        })],
    );
    assert_reverts(s.send(pool.deactivate()).await, "POOL: already deactivated");
    s.send(pool.reactivate()).await.unwrap();
    assert_eq!(
        s.worker_info(Actor::WorkerA).await.state,
        WorkerState::Active
    );
    assert_reverts(s.send(pool.reactivate()).await, "POOL: not deactivated");
}

#[tokio::test]
async fn heartbeat_records_the_time() {
    let s = System::deploy().await.unwrap();
    s.worker(Actor::WorkerA, &h100(), 0).await;
    s.advance(500).await;
    let out = s.send(s.pool_as(Actor::WorkerA).heartbeat()).await.unwrap();
    let info = s.worker_info(Actor::WorkerA).await;
    assert!(info.record.last_heartbeat >= info.record.registered_at + 500);
    assert_events(
        &out,
        s.pool,
        &[cdc_pool::Event::Heartbeat(cdc_pool::Heartbeat {
            worker: s.addr(Actor::WorkerA),
            at: info.record.last_heartbeat,
        })],
    );
}

#[tokio::test]
async fn set_commission_schedules_the_rate_an_exit_window_ahead_and_is_bounded_at_20_percent() {
    // Given a registered worker (no stake yet)
    let s = System::deploy().await.unwrap();
    s.worker(Actor::WorkerA, &h100(), 0).await;
    let pool = s.pool_as(Actor::WorkerA);
    let worker = s.addr(Actor::WorkerA);
    // When it sets 20%, the change is only scheduled, one exit window ahead
    let out = s.send(pool.set_commission(&2_000)).await.unwrap();
    let scheduled = s.worker_info(Actor::WorkerA).await.commission_change;
    let first_effective_at = s.read_back(scheduled.effective_at, EXIT_WINDOW).await;
    assert_events(
        &out,
        s.pool,
        &[cdc_pool::Event::CommissionScheduled(CommissionScheduled {
            worker,
            bps: 2_000,
            effective_at: first_effective_at,
        })],
    );
    assert_eq!(s.worker_info(Actor::WorkerA).await.record.commission_bps, 0);
    assert_reverts(
        s.send(pool.set_commission(&2_001)).await,
        "POOL: commission too high",
    );
    // A second change replaces the first and restarts the notice
    s.advance(1_000).await;
    let out = s.send(pool.set_commission(&1_000)).await.unwrap();
    let scheduled = s.worker_info(Actor::WorkerA).await.commission_change;
    let effective_at = s.read_back(scheduled.effective_at, EXIT_WINDOW).await;
    assert_events(
        &out,
        s.pool,
        &[cdc_pool::Event::CommissionScheduled(CommissionScheduled {
            worker,
            bps: 1_000,
            effective_at,
        })],
    );
    // Past the first notice but inside the second, a settlement (a stake) changes nothing
    s.advance(EXIT_WINDOW - 500).await;
    assert!(now(&s).await > first_effective_at);
    let out = s.send(pool.stake(&u256(1))).await.unwrap();
    assert_events(
        &out,
        s.pool,
        &[cdc_pool::Event::Staked(Staked {
            worker,
            amount: u256(1),
            stake: u256(1),
        })],
    );
    assert_eq!(s.worker_info(Actor::WorkerA).await.record.commission_bps, 0);
    // Then the first settlement after the second notice applies it
    s.advance(1_000).await;
    let out = s.send(pool.stake(&u256(1))).await.unwrap();
    assert_events(
        &out,
        s.pool,
        &[
            cdc_pool::Event::CommissionSet(CommissionSet { worker, bps: 1_000 }),
            cdc_pool::Event::Staked(Staked {
                worker,
                amount: u256(1),
                stake: u256(2),
            }),
        ],
    );
    assert_eq!(
        s.worker_info(Actor::WorkerA).await.record.commission_bps,
        1_000
    );
}

#[tokio::test]
async fn list_workers_pages_in_registration_order_and_bounds_the_limit() {
    let s = System::deploy().await.unwrap();
    for actor in [Actor::WorkerA, Actor::WorkerB, Actor::WorkerC] {
        s.worker(actor, &small_gpu(), 0).await;
    }
    let page = call(s.pool_reader().list_workers(&1, &10)).await.unwrap();
    assert_eq!(
        page.iter().map(|w| w.address).collect::<Vec<_>>(),
        vec![s.addr(Actor::WorkerB), s.addr(Actor::WorkerC)]
    );
    assert_reverts(
        call(s.pool_reader().list_workers(&0, &101)).await,
        "POOL: limit out of bounds",
    );
}

#[tokio::test]
async fn is_eligible_checks_state_vram_flags_score_and_stake_tier() {
    let s = System::deploy().await.unwrap();
    // Unregistered, then registered without stake: not eligible.
    assert!(!eligible(&s, Actor::WorkerA, &needs(0, 0, 0, 0)).await);
    s.worker(Actor::WorkerA, &h100(), 0).await;
    assert!(!eligible(&s, Actor::WorkerA, &needs(0, 0, 0, 0)).await);
    s.send(s.pool_as(Actor::WorkerA).stake(&u256(MIN_STAKE[3])))
        .await
        .unwrap();
    assert!(
        eligible(
            &s,
            Actor::WorkerA,
            &needs(81_920, FLAG_CUDA | FLAG_BF16, 3, 5_000)
        )
        .await
    );
    assert!(
        !eligible(&s, Actor::WorkerA, &needs(81_921, 0, 0, 0)).await,
        "VRAM"
    );
    assert!(
        !eligible(&s, Actor::WorkerA, &needs(0, FLAG_TEE, 0, 0)).await,
        "flags"
    );
    assert!(
        !eligible(&s, Actor::WorkerA, &needs(0, 0, 0, 5_001)).await,
        "score: a new worker has 5,000"
    );
    // A small GPU staked at tier 0 is Active but below stake tier 1.
    s.worker(Actor::WorkerB, &small_gpu(), MIN_STAKE[0]).await;
    assert!(eligible(&s, Actor::WorkerB, &needs(0, FLAG_CUDA, 0, 0)).await);
    assert!(
        !eligible(&s, Actor::WorkerB, &needs(0, FLAG_CUDA, 1, 0)).await,
        "stake tier"
    );
}

#[tokio::test]
async fn attack_an_open_slash_does_not_bench_a_worker_but_a_low_score_does() {
    // Given an active worker against which the slasher opens a slash (say, to keep it out of
    // assignment while the slash waits out its window),
    let s = System::deploy().await.unwrap();
    let model = s.model().await;
    s.active_worker(Actor::WorkerA).await;
    s.slasher_slash(Actor::WorkerA, SlashReason::Malicious)
        .await;
    // then it is still Active and eligible, and JobMgr can assign it a job (held),
    let info = s.worker_info(Actor::WorkerA).await;
    assert_eq!(
        (info.state, info.record.open_slashes),
        (WorkerState::Active, 1)
    );
    assert!(eligible(&s, Actor::WorkerA, &needs(0, 0, 0, 0)).await);
    let job = s.job(model).await;
    s.send(
        s.jobs_as(Actor::Coordinator)
            .assign_job(&job, &s.addr(Actor::WorkerA)),
    )
    .await
    .unwrap();
    assert_eq!(s.worker_info(Actor::WorkerA).await.record.holds, 1);
    // and when it lets the job expire, its score drops an eighth (5,000 → 4,375)
    s.advance(3_601).await;
    s.send(s.jobs_as(Actor::Attacker).expire(&job))
        .await
        .unwrap();
    let info = s.worker_info(Actor::WorkerA).await;
    assert_eq!((info.reputation.score, info.record.holds), (4_375, 0));
    // so requirements above its score exclude it, in the pool and at assignment.
    assert!(eligible(&s, Actor::WorkerA, &needs(0, 0, 0, 4_375)).await);
    assert!(!eligible(&s, Actor::WorkerA, &needs(0, 0, 0, 4_376)).await);
    let demanding = s
        .job_with(
            model,
            Actor::Submitter,
            JOB_FEE,
            &job_mgr::JobOptions {
                min_score: 5_000,
                ..no_options()
            },
        )
        .await;
    assert_reverts(
        s.send(
            s.jobs_as(Actor::Coordinator)
                .assign_job(&demanding, &s.addr(Actor::WorkerA)),
        )
        .await,
        "JM: worker not eligible",
    );
    assert_eq!(s.worker_info(Actor::WorkerA).await.record.holds, 0);
    s.assert_invariants("after the refused assignment").await;
}

// ---------------------------------------------------------------------------------------
// stake / unstake
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn stake_pulls_tokens_and_activates_at_the_tier_minimum() {
    let s = System::deploy().await.unwrap();
    s.worker(Actor::WorkerA, &h100(), 0).await;
    let pool = s.pool_as(Actor::WorkerA);
    s.send(pool.stake(&u256(MIN_STAKE[3] - 1))).await.unwrap();
    assert_eq!(
        s.worker_info(Actor::WorkerA).await.state,
        WorkerState::Inactive
    );
    let out = s.send(pool.stake(&u256(1))).await.unwrap();
    let info = s.worker_info(Actor::WorkerA).await;
    assert_eq!(
        (info.state, info.stake, info.stake_tier),
        (WorkerState::Active, u256(MIN_STAKE[3]), 3)
    );
    assert_eq!(s.balance_of(Actor::WorkerA).await, FUNDS - MIN_STAKE[3]);
    assert_events(
        &out,
        s.pool,
        &[cdc_pool::Event::Staked(Staked {
            worker: s.addr(Actor::WorkerA),
            amount: u256(1),
            stake: u256(MIN_STAKE[3]),
        })],
    );
    s.assert_invariants("staked").await;
}

#[tokio::test]
async fn stake_rejects_zero_and_a_token_that_delivers_less() {
    let s = System::deploy().await.unwrap();
    s.worker(Actor::WorkerA, &h100(), 0).await;
    assert_reverts(
        s.send(s.pool_as(Actor::WorkerA).stake(&u256(0))).await,
        "POOL: amount is zero",
    );
    let admin = s.net.account(Actor::Admin);
    send(
        &s.net.provider,
        TestToken::new(s.token, &admin).set_transfer_from_fee(&u256(1)),
    )
    .await
    .unwrap();
    assert_reverts(
        s.send(s.pool_as(Actor::WorkerA).stake(&u256(100))).await,
        "POOL: transfer_from shortfall",
    );
}

#[tokio::test]
async fn unstake_intent_moves_stake_to_a_pending_exit_and_restarts_the_window() {
    let s = System::deploy().await.unwrap();
    s.active_worker(Actor::WorkerA).await;
    s.warm_up(Actor::WorkerA).await;
    let pool = s.pool_as(Actor::WorkerA);
    let out = s.send(pool.unstake_intent(&u256(1_000))).await.unwrap();
    let info = s.worker_info(Actor::WorkerA).await;
    let first_unlock = info.exit.unlock_time;
    assert_eq!(
        (info.stake, info.exit.amount),
        (u256(MIN_STAKE[3] - 1_000), u256(1_000))
    );
    assert_eq!(info.state, WorkerState::Exiting);
    assert_events(
        &out,
        s.pool,
        &[cdc_pool::Event::UnstakeRequested(UnstakeRequested {
            worker: s.addr(Actor::WorkerA),
            amount: u256(1_000),
            pending: u256(1_000),
            unlock_time: first_unlock,
        })],
    );
    s.advance(100).await;
    s.send(pool.unstake_intent(&u256(500))).await.unwrap();
    let exit = s.worker_info(Actor::WorkerA).await.exit;
    assert_eq!(exit.amount, u256(1_500));
    assert!(
        exit.unlock_time >= first_unlock + 100,
        "the window restarts for the whole amount"
    );
    assert_eq!(
        call(s.pool_reader().total_weight()).await.unwrap(),
        u256(MIN_STAKE[3] - 1_500)
    );
    s.assert_invariants("exiting").await;
}

#[tokio::test]
async fn unstake_intent_rejects_zero_and_more_than_the_stake() {
    let s = System::deploy().await.unwrap();
    s.active_worker(Actor::WorkerA).await;
    let pool = s.pool_as(Actor::WorkerA);
    assert_reverts(
        s.send(pool.unstake_intent(&u256(0))).await,
        "POOL: amount is zero",
    );
    assert_reverts(
        s.send(pool.unstake_intent(&u256(MIN_STAKE[3] + 1))).await,
        "POOL: insufficient stake",
    );
}

#[tokio::test]
async fn unstake_action_pays_the_worker_after_the_window_by_anyone() {
    let s = System::deploy().await.unwrap();
    s.active_worker(Actor::WorkerA).await;
    s.send(s.pool_as(Actor::WorkerA).unstake_intent(&u256(1_000)))
        .await
        .unwrap();
    let anyone = s.pool_as(Actor::Attacker);
    assert_reverts(
        s.send(anyone.unstake_action(&s.addr(Actor::WorkerA))).await,
        "POOL: exit window not over",
    );
    s.advance(EXIT_WINDOW).await;
    let out = s
        .send(anyone.unstake_action(&s.addr(Actor::WorkerA)))
        .await
        .unwrap();
    assert_eq!(
        s.balance_of(Actor::WorkerA).await,
        FUNDS - MIN_STAKE[3] + 1_000
    );
    assert_eq!(
        s.worker_info(Actor::WorkerA).await.exit,
        Exit {
            amount: u256(0),
            unlock_time: 0
        }
    );
    assert_events(
        &out,
        s.pool,
        &[cdc_pool::Event::Withdrawn(Withdrawn {
            account: s.addr(Actor::WorkerA),
            worker: s.addr(Actor::WorkerA),
            amount: u256(1_000),
        })],
    );
    assert_reverts(
        s.send(anyone.unstake_action(&s.addr(Actor::WorkerA))).await,
        "POOL: nothing to withdraw",
    );
}

#[tokio::test]
async fn unstake_action_waits_while_a_slash_is_pending() {
    let s = System::deploy().await.unwrap();
    s.active_worker(Actor::WorkerA).await;
    s.send(
        s.pool_as(Actor::WorkerA)
            .unstake_intent(&u256(MIN_STAKE[3])),
    )
    .await
    .unwrap();
    s.slasher_slash(Actor::WorkerA, SlashReason::Malicious)
        .await;
    s.advance(EXIT_WINDOW).await;
    assert_reverts(
        s.send(
            s.pool_as(Actor::WorkerA)
                .unstake_action(&s.addr(Actor::WorkerA)),
        )
        .await,
        "POOL: slash pending",
    );
}

#[tokio::test]
async fn attack_unstaking_cannot_escape_an_assigned_job() {
    // Given a worker that takes a job and at once asks to leave with all its stake,
    let s = System::deploy().await.unwrap();
    let (_, job) = s.assigned_job().await;
    let worker = s.addr(Actor::WorkerA);
    s.send(
        s.pool_as(Actor::WorkerA)
            .unstake_intent(&u256(MIN_STAKE[3])),
    )
    .await
    .unwrap();
    // when its exit window passes with the job still assigned to it,
    s.advance(EXIT_WINDOW).await;
    // then nobody can pay the exit: the stake answers for the job,
    assert_reverts(
        s.send(s.pool_as(Actor::WorkerA).unstake_action(&worker))
            .await,
        "POOL: jobs at risk",
    );
    let info = s.worker_info(Actor::WorkerA).await;
    assert_eq!(
        (info.record.holds, info.exit.amount),
        (1, u256(MIN_STAKE[3]))
    );
    // and once the job has ended (expired: a failure recorded, its hold released), it can.
    s.send(s.jobs_as(Actor::Attacker).expire(&job))
        .await
        .unwrap();
    assert_eq!(s.worker_info(Actor::WorkerA).await.record.holds, 0);
    s.send(s.pool_as(Actor::Attacker).unstake_action(&worker))
        .await
        .unwrap();
    assert_eq!(s.balance_of(Actor::WorkerA).await, FUNDS);
    s.assert_invariants("after the exit").await;
}

#[tokio::test]
async fn attack_unstaking_cannot_escape_a_result_still_open_to_dispute() {
    // Given a one-day exit window and results open to dispute for two days,
    let s = System::deploy().await.unwrap();
    s.set_pool_params(&PoolParams {
        exit_window: 86_400,
        ..s.pool_params()
    })
    .await;
    s.set_job_params(&job_mgr::JobParams {
        challenge_window: 2 * 86_400,
        ..job_params()
    })
    .await;
    // and a worker that asks to leave with all its stake, then commits its job's result,
    let (_, job) = s.assigned_job().await;
    let worker = s.addr(Actor::WorkerA);
    s.send(
        s.pool_as(Actor::WorkerA)
            .unstake_intent(&u256(MIN_STAKE[3])),
    )
    .await
    .unwrap();
    s.send(s.jobs_as(Actor::WorkerA).submit_result(&job, &u256(0x07)))
        .await
        .unwrap();
    // when its exit window is over but the result's challenge window is not,
    s.advance(86_400 + 600).await;
    // then the exit cannot be paid while the result may still be disputed,
    assert_reverts(
        s.send(s.pool_as(Actor::WorkerA).unstake_action(&worker))
            .await,
        "POOL: jobs at risk",
    );
    assert_eq!(
        s.worker_info(Actor::WorkerA).await.exit.amount,
        u256(MIN_STAKE[3])
    );
    // and once the job is finalized (its hold released), the worker gets its stake and fee.
    s.advance(86_400).await;
    s.send(s.jobs_as(Actor::Attacker).finalize(&job))
        .await
        .unwrap();
    assert_eq!(s.worker_info(Actor::WorkerA).await.record.holds, 0);
    s.send(s.pool_as(Actor::Attacker).unstake_action(&worker))
        .await
        .unwrap();
    let protocol_fee = JOB_FEE * u128::from(PROTOCOL_FEE_BPS) / 10_000;
    assert_eq!(
        s.balance_of(Actor::WorkerA).await,
        FUNDS + JOB_FEE - protocol_fee
    );
    s.assert_invariants("after the exit").await;
}

// ---------------------------------------------------------------------------------------
// delegation
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn delegate_adds_weight_but_not_to_the_workers_own_minimum() {
    let s = System::deploy().await.unwrap();
    s.worker(Actor::WorkerA, &h100(), MIN_STAKE[3] - 1).await;
    let out = s
        .send(
            s.pool_as(Actor::Delegator)
                .delegate(&s.addr(Actor::WorkerA), &u256(5_000)),
        )
        .await
        .unwrap();
    let info = s.worker_info(Actor::WorkerA).await;
    assert_eq!(
        (info.delegated, info.delegated_warming, info.state),
        (u256(5_000), u256(5_000), WorkerState::Inactive)
    );
    // Both the stake and the delegation warm up before they weigh.
    assert_eq!(call(s.pool_reader().total_weight()).await.unwrap(), u256(0));
    s.advance(WARMUP).await;
    s.activate(Actor::WorkerA).await;
    s.activate_delegation(Actor::Delegator, Actor::WorkerA)
        .await;
    assert_eq!(
        call(s.pool_reader().total_weight()).await.unwrap(),
        u256(MIN_STAKE[3] - 1 + 5_000)
    );
    assert_eq!(
        call(
            s.pool_reader()
                .delegation(&s.addr(Actor::Delegator), &s.addr(Actor::WorkerA))
        )
        .await
        .unwrap(),
        (
            u256(5_000),
            Exit {
                amount: u256(0),
                unlock_time: 0
            }
        )
    );
    assert_events(
        &out,
        s.pool,
        &[cdc_pool::Event::Delegated(Delegated {
            delegator: s.addr(Actor::Delegator),
            worker: s.addr(Actor::WorkerA),
            amount: u256(5_000),
            delegation: u256(5_000),
        })],
    );
    s.assert_invariants("delegated").await;
}

#[tokio::test]
async fn delegate_rejects_zero_unregistered_and_banned_workers() {
    let s = System::deploy().await.unwrap();
    let d = s.pool_as(Actor::Delegator);
    assert_reverts(
        s.send(d.delegate(&s.addr(Actor::WorkerA), &u256(0))).await,
        "POOL: amount is zero",
    );
    assert_reverts(
        s.send(d.delegate(&s.addr(Actor::WorkerA), &u256(1))).await,
        "POOL: worker not registered",
    );
    s.worker(Actor::WorkerA, &h100(), 0).await;
    s.send(s.pool_as(Actor::Admin).ban(&s.addr(Actor::WorkerA)))
        .await
        .unwrap();
    assert_reverts(
        s.send(d.delegate(&s.addr(Actor::WorkerA), &u256(1))).await,
        "POOL: worker banned",
    );
}

#[tokio::test]
async fn delegate_rejects_an_eleventh_worker() {
    // Given ten registered workers the Delegator delegates to, and an eleventh
    let s = System::deploy().await.unwrap();
    let others: Vec<Actor> = Actor::ALL
        .into_iter()
        .filter(|a| *a != Actor::Delegator)
        .take(11)
        .collect();
    assert_eq!(others.len(), 11);
    let d = s.pool_as(Actor::Delegator);
    for actor in &others {
        s.send(s.pool_as(*actor).register_worker(&small_gpu(), &felt(1)))
            .await
            .unwrap();
    }
    for actor in &others[..10] {
        s.send(d.delegate(&s.addr(*actor), &u256(1))).await.unwrap();
    }
    // When it delegates to the eleventh, it is refused; more to a known one is fine
    assert_reverts(
        s.send(d.delegate(&s.addr(others[10]), &u256(1))).await,
        "POOL: too many delegations",
    );
    s.send(d.delegate(&s.addr(others[0]), &u256(1)))
        .await
        .unwrap();
}

#[tokio::test]
async fn attack_full_undelegation_frees_a_slot_and_keeps_the_positions_rewards() {
    // Given a delegator with 100 in each of ten workers (its every slot) and 1,000 of rewards
    // accrued over them (no own stake anywhere, no commission: 100 per position),
    let s = System::deploy().await.unwrap();
    let workers: Vec<Actor> = Actor::ALL
        .into_iter()
        .filter(|a| *a != Actor::Delegator)
        .take(11)
        .collect();
    let d = s.pool_as(Actor::Delegator);
    for actor in &workers {
        s.send(s.pool_as(*actor).register_worker(&small_gpu(), &felt(1)))
            .await
            .unwrap();
    }
    for actor in &workers[..10] {
        s.send(d.delegate(&s.addr(*actor), &u256(100)))
            .await
            .unwrap();
    }
    s.advance(WARMUP).await;
    for actor in &workers[..10] {
        s.activate_delegation(Actor::Delegator, *actor).await;
    }
    s.send(s.pool_as(Actor::Attacker).notify_reward(&u256(1_000)))
        .await
        .unwrap();
    let eleventh = s.addr(workers[10]);
    // when it leaves one worker only in part, no slot is freed,
    s.send(d.undelegate_intent(&s.addr(workers[1]), &u256(50)))
        .await
        .unwrap();
    assert_reverts(
        s.send(d.delegate(&eleventh, &u256(100))).await,
        "POOL: too many delegations",
    );
    // but when it leaves one worker entirely, it may delegate to an eleventh,
    s.send(d.undelegate_intent(&s.addr(workers[0]), &u256(100)))
        .await
        .unwrap();
    assert_eq!(pending(&s, Actor::Delegator).await, 1_000);
    s.send(d.delegate(&eleventh, &u256(100))).await.unwrap();
    s.warm_up_delegation(Actor::Delegator, workers[10]).await;
    // then the left position's rewards stay claimable beside the new ones (950 over a weight
    // of 950 after the exits and the new position's warm-up: 50 + 8 × 100 + 100),
    s.send(s.pool_as(Actor::Attacker).notify_reward(&u256(950)))
        .await
        .unwrap();
    let out = s.send(d.claim_rewards()).await.unwrap();
    assert_events(
        &out,
        s.pool,
        &[cdc_pool::Event::RewardsClaimed(RewardsClaimed {
            account: s.addr(Actor::Delegator),
            amount: u256(1_950),
        })],
    );
    // and the freed position's exit is still paid after the window.
    s.advance(EXIT_WINDOW).await;
    s.send(
        s.pool_as(Actor::Attacker)
            .undelegate_action(&s.addr(Actor::Delegator), &s.addr(workers[0])),
    )
    .await
    .unwrap();
    assert_eq!(
        s.balance_of(Actor::Delegator).await,
        FUNDS - 1_100 + 100 + 1_950
    );
    s.assert_invariants("after the slot was reused").await;
}

#[tokio::test]
async fn undelegate_intent_and_action_return_the_delegation_after_the_window() {
    let s = System::deploy().await.unwrap();
    s.worker(Actor::WorkerA, &h100(), 0).await;
    let d = s.pool_as(Actor::Delegator);
    let (delegator, worker) = (s.addr(Actor::Delegator), s.addr(Actor::WorkerA));
    s.send(d.delegate(&worker, &u256(3_000))).await.unwrap();
    let out = s
        .send(d.undelegate_intent(&worker, &u256(1_000)))
        .await
        .unwrap();
    let (active, exit) = call(s.pool_reader().delegation(&delegator, &worker))
        .await
        .unwrap();
    assert_eq!((active, exit.amount), (u256(2_000), u256(1_000)));
    assert_events(
        &out,
        s.pool,
        &[cdc_pool::Event::UndelegateRequested(UndelegateRequested {
            delegator,
            worker,
            amount: u256(1_000),
            pending: u256(1_000),
            unlock_time: exit.unlock_time,
        })],
    );
    let anyone = s.pool_as(Actor::Attacker);
    assert_reverts(
        s.send(anyone.undelegate_action(&delegator, &worker)).await,
        "POOL: exit window not over",
    );
    s.advance(EXIT_WINDOW).await;
    s.send(anyone.undelegate_action(&delegator, &worker))
        .await
        .unwrap();
    assert_eq!(s.balance_of(Actor::Delegator).await, FUNDS - 2_000);
    assert_reverts(
        s.send(anyone.undelegate_action(&delegator, &worker)).await,
        "POOL: nothing to withdraw",
    );
    s.assert_invariants("after undelegation").await;
}

#[tokio::test]
async fn undelegate_intent_rejects_zero_and_more_than_the_delegation() {
    let s = System::deploy().await.unwrap();
    s.worker(Actor::WorkerA, &h100(), 0).await;
    let d = s.pool_as(Actor::Delegator);
    s.send(d.delegate(&s.addr(Actor::WorkerA), &u256(10)))
        .await
        .unwrap();
    assert_reverts(
        s.send(d.undelegate_intent(&s.addr(Actor::WorkerA), &u256(0)))
            .await,
        "POOL: amount is zero",
    );
    assert_reverts(
        s.send(d.undelegate_intent(&s.addr(Actor::WorkerA), &u256(11)))
            .await,
        "POOL: insufficient delegation",
    );
}

// ---------------------------------------------------------------------------------------
// rewards
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn notify_reward_spreads_over_weight_pro_rata() {
    // Given WorkerA with 8,000 and WorkerB with 4,000 of own stake (no commission)
    let s = System::deploy().await.unwrap();
    s.worker(Actor::WorkerA, &h100(), 8_000).await;
    s.worker(Actor::WorkerB, &h100(), 4_000).await;
    s.advance(WARMUP).await;
    s.activate(Actor::WorkerA).await;
    s.activate(Actor::WorkerB).await;
    // When 1,200 of rewards arrive
    let out = s
        .send(s.pool_as(Actor::Attacker).notify_reward(&u256(1_200)))
        .await
        .unwrap();
    // Then they accrue 800 and 400
    assert_eq!(
        (
            pending(&s, Actor::WorkerA).await,
            pending(&s, Actor::WorkerB).await
        ),
        (800, 400)
    );
    let acc = match &ciro_tests::assert::decoded_events::<cdc_pool::Event>(&out, s.pool)[0] {
        cdc_pool::Event::RewardNotified(e) => e.reward_per_weight,
        other => panic!("unexpected {other:?}"),
    };
    assert_events(
        &out,
        s.pool,
        &[cdc_pool::Event::RewardNotified(RewardNotified {
            funder: s.addr(Actor::Attacker),
            amount: u256(1_200),
            to_treasury: u256(0),
            reward_per_weight: acc,
        })],
    );
    s.assert_invariants("funded").await;
}

/// The attack: at launch, before any stake has warmed up, protocol fees are notified with no
/// weight to spread them over. Kept for the next notification, they would all go to the first
/// stake to activate, however small, and however little it was present when they were paid.
#[tokio::test]
async fn attack_the_first_stake_to_activate_cannot_take_rewards_paid_while_nobody_earned() {
    let s = System::deploy().await.unwrap();
    let treasury = s.balance_of(TREASURY).await;
    // Given rewards notified while there is no stake at all,
    let out = s
        .send(s.pool_as(Actor::Attacker).notify_reward(&u256(300)))
        .await
        .unwrap();
    assert_eq!(call(s.pool_reader().total_weight()).await.unwrap(), u256(0));
    assert_events(
        &out,
        s.pool,
        &[cdc_pool::Event::RewardNotified(RewardNotified {
            funder: s.addr(Actor::Attacker),
            amount: u256(300),
            to_treasury: u256(300),
            reward_per_weight: u256(0),
        })],
    );
    // and while the only stake is still warming (warming weight is no weight),
    s.worker(Actor::WorkerA, &h100(), 8_000).await;
    s.send(s.pool_as(Actor::Attacker).notify_reward(&u256(100)))
        .await
        .unwrap();
    assert_eq!(pending(&s, Actor::WorkerA).await, 0);
    // then both went to the treasury,
    assert_eq!(s.balance_of(TREASURY).await, treasury + 400);
    // and the first stake to activate earns only what is paid once it does.
    s.warm_up(Actor::WorkerA).await;
    s.send(s.pool_as(Actor::Attacker).notify_reward(&u256(100)))
        .await
        .unwrap();
    assert_eq!(
        pending(&s, Actor::WorkerA).await,
        100,
        "nothing notified before it earned"
    );
    s.assert_invariants("rewards with no weight").await;
}

#[tokio::test]
async fn notify_reward_rejects_zero() {
    let s = System::deploy().await.unwrap();
    assert_reverts(
        s.send(s.pool_as(Actor::Attacker).notify_reward(&u256(0)))
            .await,
        "POOL: amount is zero",
    );
}

#[tokio::test]
async fn rewards_accrue_only_from_when_the_weight_joined() {
    let s = System::deploy().await.unwrap();
    s.worker(Actor::WorkerA, &h100(), 1_000).await;
    s.warm_up(Actor::WorkerA).await;
    s.send(s.pool_as(Actor::Attacker).notify_reward(&u256(500)))
        .await
        .unwrap();
    s.worker(Actor::WorkerB, &h100(), 1_000).await;
    s.warm_up(Actor::WorkerB).await;
    s.send(s.pool_as(Actor::Attacker).notify_reward(&u256(500)))
        .await
        .unwrap();
    assert_eq!(
        (
            pending(&s, Actor::WorkerA).await,
            pending(&s, Actor::WorkerB).await
        ),
        (750, 250)
    );
}

#[tokio::test]
async fn commission_applies_to_delegators_rewards_at_the_rate_when_they_accrued() {
    // Given WorkerA (1,000 own) whose 10% commission applies as a 1,000 delegation arrives
    let s = System::deploy().await.unwrap();
    let worker = s.addr(Actor::WorkerA);
    s.worker(Actor::WorkerA, &h100(), 1_000).await;
    s.send(s.pool_as(Actor::WorkerA).set_commission(&1_000))
        .await
        .unwrap();
    s.advance(EXIT_WINDOW).await;
    let out = s
        .send(s.pool_as(Actor::Delegator).delegate(&worker, &u256(1_000)))
        .await
        .unwrap();
    assert_events(
        &out,
        s.pool,
        &[
            cdc_pool::Event::CommissionSet(CommissionSet { worker, bps: 1_000 }),
            // The worker's stake, past its warm-up, joins at this settlement.
            cdc_pool::Event::StakeActivated(StakeActivated {
                account: worker,
                worker,
                amount: u256(1_000),
            }),
            cdc_pool::Event::Delegated(Delegated {
                delegator: s.addr(Actor::Delegator),
                worker,
                amount: u256(1_000),
                delegation: u256(1_000),
            }),
        ],
    );
    s.warm_up_delegation(Actor::Delegator, Actor::WorkerA).await;
    // When 1,000 arrives, a 20% commission applies at the worker's claim after its notice,
    // then 1,000 more arrives
    s.send(s.pool_as(Actor::Attacker).notify_reward(&u256(1_000)))
        .await
        .unwrap();
    s.send(s.pool_as(Actor::WorkerA).set_commission(&2_000))
        .await
        .unwrap();
    s.advance(EXIT_WINDOW).await;
    let out = s
        .send(s.pool_as(Actor::WorkerA).claim_rewards())
        .await
        .unwrap();
    assert_events(
        &out,
        s.pool,
        &[
            cdc_pool::Event::CommissionSet(CommissionSet { worker, bps: 2_000 }),
            cdc_pool::Event::RewardsClaimed(RewardsClaimed {
                account: worker,
                amount: u256(500 + 50),
            }),
        ],
    );
    s.send(s.pool_as(Actor::Attacker).notify_reward(&u256(1_000)))
        .await
        .unwrap();
    // Then the delegator got 450 + 400, the worker (after claiming 550) 500 + 100
    assert_eq!(pending(&s, Actor::Delegator).await, 850);
    assert_eq!(pending(&s, Actor::WorkerA).await, 600);
    s.assert_invariants("after the commission change").await;
}

#[tokio::test]
async fn attack_a_commission_raise_cannot_reach_rewards_accrued_before_it_applies() {
    // Given a 0% worker (1,000 own) with a 1,000 delegation,
    let s = System::deploy().await.unwrap();
    let worker = s.addr(Actor::WorkerA);
    s.worker(Actor::WorkerA, &h100(), 1_000).await;
    s.send(s.pool_as(Actor::Delegator).delegate(&worker, &u256(1_000)))
        .await
        .unwrap();
    s.advance(WARMUP).await;
    s.activate(Actor::WorkerA).await;
    s.activate_delegation(Actor::Delegator, Actor::WorkerA)
        .await;
    // when the worker flips its commission to 20% and a reward arrives within the notice,
    s.send(s.pool_as(Actor::WorkerA).set_commission(&2_000))
        .await
        .unwrap();
    s.send(s.pool_as(Actor::Attacker).notify_reward(&u256(1_000)))
        .await
        .unwrap();
    // and the worker forces a settlement at once (claiming) to try to apply it,
    let out = s
        .send(s.pool_as(Actor::WorkerA).claim_rewards())
        .await
        .unwrap();
    // then nothing applies: the delegators' half was split at 0%,
    assert_events(
        &out,
        s.pool,
        &[cdc_pool::Event::RewardsClaimed(RewardsClaimed {
            account: worker,
            amount: u256(500),
        })],
    );
    assert_eq!(s.worker_info(Actor::WorkerA).await.record.commission_bps, 0);
    assert_eq!(pending(&s, Actor::Delegator).await, 500);
    // and a reward arriving after the notice but before any settlement is still split at 0%;
    s.advance(EXIT_WINDOW).await;
    s.send(s.pool_as(Actor::Attacker).notify_reward(&u256(1_000)))
        .await
        .unwrap();
    assert_eq!(pending(&s, Actor::Delegator).await, 1_000);
    // the raise applies at the next settlement (here the delegator's claim), from then on.
    let out = s
        .send(s.pool_as(Actor::Delegator).claim_rewards())
        .await
        .unwrap();
    assert_events(
        &out,
        s.pool,
        &[
            cdc_pool::Event::CommissionSet(CommissionSet { worker, bps: 2_000 }),
            cdc_pool::Event::RewardsClaimed(RewardsClaimed {
                account: s.addr(Actor::Delegator),
                amount: u256(1_000),
            }),
        ],
    );
    s.send(s.pool_as(Actor::Attacker).notify_reward(&u256(1_000)))
        .await
        .unwrap();
    assert_eq!(pending(&s, Actor::Delegator).await, 400);
    assert_eq!(pending(&s, Actor::WorkerA).await, 500 + 500 + 100);
    s.assert_invariants("after the commission flip").await;
}

#[tokio::test]
async fn claim_rewards_pays_and_resets_and_rejects_nothing_to_claim() {
    let s = System::deploy().await.unwrap();
    s.worker(Actor::WorkerA, &h100(), 1_000).await;
    s.warm_up(Actor::WorkerA).await;
    s.send(s.pool_as(Actor::Attacker).notify_reward(&u256(77)))
        .await
        .unwrap();
    let out = s
        .send(s.pool_as(Actor::WorkerA).claim_rewards())
        .await
        .unwrap();
    assert_eq!(s.balance_of(Actor::WorkerA).await, FUNDS - 1_000 + 77);
    assert_eq!(pending(&s, Actor::WorkerA).await, 0);
    assert_events(
        &out,
        s.pool,
        &[cdc_pool::Event::RewardsClaimed(RewardsClaimed {
            account: s.addr(Actor::WorkerA),
            amount: u256(77),
        })],
    );
    assert_reverts(
        s.send(s.pool_as(Actor::WorkerA).claim_rewards()).await,
        "POOL: nothing to claim",
    );
    assert_reverts(
        s.send(s.pool_as(Actor::Attacker).claim_rewards()).await,
        "POOL: nothing to claim",
    );
}

#[tokio::test]
async fn rounding_never_lets_claims_exceed_what_was_funded() {
    // Given three equal stakes and 100 of rewards (not divisible by three), in several rounds
    let s = System::deploy().await.unwrap();
    for actor in [Actor::WorkerA, Actor::WorkerB, Actor::WorkerC] {
        s.worker(actor, &small_gpu(), 1_000).await;
    }
    s.send(
        s.pool_as(Actor::Delegator)
            .delegate(&s.addr(Actor::WorkerA), &u256(7)),
    )
    .await
    .unwrap();
    s.advance(WARMUP).await;
    for actor in [Actor::WorkerA, Actor::WorkerB, Actor::WorkerC] {
        s.activate(actor).await;
    }
    s.activate_delegation(Actor::Delegator, Actor::WorkerA)
        .await;
    for _ in 0..3 {
        s.send(s.pool_as(Actor::Attacker).notify_reward(&u256(100)))
            .await
            .unwrap();
    }
    // When everyone claims
    let mut claimed = 0;
    for actor in [
        Actor::WorkerA,
        Actor::WorkerB,
        Actor::WorkerC,
        Actor::Delegator,
    ] {
        let owed = pending(&s, actor).await;
        if owed > 0 {
            s.send(s.pool_as(actor).claim_rewards()).await.unwrap();
        }
        claimed += owed;
    }
    // Then at most the 300 funded was paid, the dust stays accounted for
    assert!((296..=300).contains(&claimed), "claimed {claimed}");
    assert_eq!(
        call(s.pool_reader().totals()).await.unwrap().rewards,
        u256(300 - claimed)
    );
    s.assert_invariants("after claims").await;
}

// ---------------------------------------------------------------------------------------
// warm-up: new stake and delegations earn only once it is over
// ---------------------------------------------------------------------------------------

/// WorkerA's stake, warmed up and activated, is the only weight; the Attacker is registered as
/// a worker (no stake) and JobMgr holds a job of WorkerA's past its challenge window, which
/// anyone may finalize (50 of protocol fee for the pool). Returns the job.
async fn a_fee_waiting_to_be_finalized(s: &System) -> u64 {
    let (_, job) = s.completed_job().await;
    s.warm_up(Actor::WorkerA).await;
    s.send(
        s.pool_as(Actor::Attacker)
            .register_worker(&h100(), &felt(1)),
    )
    .await
    .unwrap();
    job
}

/// 5% of a [`JOB_FEE`] job: what its finalization notifies to the pool.
const FEE_CUT: u128 = JOB_FEE * PROTOCOL_FEE_BPS as u128 / 10_000;

#[tokio::test]
async fn attack_a_flash_stake_around_finalize_jobs_earns_nothing() {
    // Given WorkerA's warmed-up 8,000 and a finalizable job whose protocol fee is 50,
    let s = System::deploy().await.unwrap();
    let job = a_fee_waiting_to_be_finalized(&s).await;
    // when the attacker stakes 90,000 (over 90% of the weight), finalizes the job and asks to
    // unstake, all in one multicall,
    let pool = s.pool_as(Actor::Attacker);
    let attacker = s.net.account(Actor::Attacker);
    s.send(attacker.execute_v3(vec![
        pool.stake_getcall(&u256(90_000)),
        s.jobs_as(Actor::Attacker).finalize_getcall(&job),
        pool.unstake_intent_getcall(&u256(90_000)),
    ]))
    .await
    .unwrap();
    // then its stake never weighed: the honest staker gets the whole fee, the attacker
    // nothing, and its exit holds all it put in.
    assert_eq!(pending(&s, Actor::Attacker).await, 0);
    assert_eq!(pending(&s, Actor::WorkerA).await, FEE_CUT);
    let info = s.worker_info(Actor::Attacker).await;
    assert_eq!(
        (info.stake, info.exit.amount, info.warming.amount),
        (u256(0), u256(90_000), u256(0))
    );
    assert_eq!(
        call(s.pool_reader().totals()).await.unwrap().warming,
        u256(0)
    );
    assert_reverts(s.send(pool.claim_rewards()).await, "POOL: nothing to claim");
    s.assert_invariants("after the flash stake").await;
}

#[tokio::test]
async fn attack_a_flash_delegation_around_finalize_jobs_earns_nothing() {
    // Given WorkerA's warmed-up 8,000 and a finalizable job whose protocol fee is 50,
    let s = System::deploy().await.unwrap();
    let job = a_fee_waiting_to_be_finalized(&s).await;
    // when the attacker delegates 90,000 to WorkerA, finalizes and undelegates in one
    // multicall,
    let pool = s.pool_as(Actor::Attacker);
    let worker = s.addr(Actor::WorkerA);
    let attacker = s.net.account(Actor::Attacker);
    s.send(attacker.execute_v3(vec![
        pool.delegate_getcall(&worker, &u256(90_000)),
        s.jobs_as(Actor::Attacker).finalize_getcall(&job),
        pool.undelegate_intent_getcall(&worker, &u256(90_000)),
    ]))
    .await
    .unwrap();
    // then the delegation never weighed: WorkerA keeps the whole fee (no delegators' share,
    // no commission on it), the attacker has nothing, and nothing is left warming.
    assert_eq!(pending(&s, Actor::Attacker).await, 0);
    assert_eq!(pending(&s, Actor::WorkerA).await, FEE_CUT);
    assert_eq!(
        call(
            s.pool_reader()
                .delegation_warming(&s.addr(Actor::Attacker), &worker)
        )
        .await
        .unwrap(),
        Exit {
            amount: u256(0),
            unlock_time: 0
        }
    );
    let info = s.worker_info(Actor::WorkerA).await;
    assert_eq!((info.delegated, info.delegated_warming), (u256(0), u256(0)));
    assert_eq!(
        call(s.pool_reader().totals()).await.unwrap().warming,
        u256(0)
    );
    s.assert_invariants("after the flash delegation").await;
}

#[tokio::test]
async fn attack_warming_stake_counts_for_eligibility_and_is_slashed_and_banned_like_the_rest() {
    // Given a worker whose whole stake (its tier's minimum) is still warming,
    let s = System::deploy().await.unwrap();
    admin_as_job_manager(&s).await;
    s.active_worker(Actor::WorkerA).await;
    let info = s.worker_info(Actor::WorkerA).await;
    let unlock_time = s.read_back(info.warming.unlock_time, WARMUP).await;
    assert_eq!(
        (info.state, info.stake_tier, info.warming),
        (
            WorkerState::Active,
            3,
            Exit {
                amount: u256(MIN_STAKE[3]),
                unlock_time
            }
        )
    );
    // it may be assigned (it answers for the job with all of it),
    assert!(eligible(&s, Actor::WorkerA, &needs(16_384, FLAG_CUDA, 3, 0)).await);
    assert_eq!(call(s.pool_reader().total_weight()).await.unwrap(), u256(0));
    // and a slash of half cuts it: what warms never exceeds what is left,
    s.send(s.pool_as(Actor::Admin).slash(
        &s.addr(Actor::WorkerA),
        &SlashReason::Fraud,
        &0,
        &felt(1),
        &nobody(),
        &u256(0),
    ))
    .await
    .unwrap();
    let info = s.worker_info(Actor::WorkerA).await;
    assert_eq!(
        (info.stake, info.warming.amount),
        (u256(MIN_STAKE[3] / 2), u256(MIN_STAKE[3] / 2))
    );
    assert_eq!(s.balance_of(TREASURY).await, MIN_STAKE[3] / 2);
    // and a ban moves all of it to the exit, with nothing left warming.
    s.send(s.pool_as(Actor::Admin).ban(&s.addr(Actor::WorkerA)))
        .await
        .unwrap();
    let info = s.worker_info(Actor::WorkerA).await;
    assert_eq!(
        (info.stake, info.warming.amount, info.exit.amount),
        (u256(0), u256(0), u256(MIN_STAKE[3] / 2))
    );
    assert_eq!(
        call(s.pool_reader().totals()).await.unwrap().warming,
        u256(0)
    );
    s.assert_invariants("after the slash and the ban").await;
}

#[tokio::test]
async fn attack_unstaking_takes_the_warming_stake_first() {
    // Given WorkerA with 8,000 earning and 2,000 more just staked (warming),
    let s = System::deploy().await.unwrap();
    s.active_worker(Actor::WorkerA).await;
    s.warm_up(Actor::WorkerA).await;
    let pool = s.pool_as(Actor::WorkerA);
    s.send(pool.stake(&u256(2_000))).await.unwrap();
    let warming = s.worker_info(Actor::WorkerA).await.warming;
    let unlock_time = s.read_back(warming.unlock_time, WARMUP).await;
    // when it unstakes 1,500, then 1,000,
    s.send(pool.unstake_intent(&u256(1_500))).await.unwrap();
    // then the first leaves the warming part only (its warm-up end unchanged), the earning
    // weight untouched,
    let info = s.worker_info(Actor::WorkerA).await;
    assert_eq!(
        info.warming,
        Exit {
            amount: u256(500),
            unlock_time
        }
    );
    assert_eq!(
        call(s.pool_reader().total_weight()).await.unwrap(),
        u256(MIN_STAKE[3])
    );
    // and the second takes the last 500 warming, then 500 of the earning stake.
    s.send(pool.unstake_intent(&u256(1_000))).await.unwrap();
    let info = s.worker_info(Actor::WorkerA).await;
    assert_eq!(
        info.warming,
        Exit {
            amount: u256(0),
            unlock_time: 0
        }
    );
    assert_eq!(
        call(s.pool_reader().total_weight()).await.unwrap(),
        u256(MIN_STAKE[3] - 500)
    );
    s.send(s.pool_as(Actor::Attacker).notify_reward(&u256(750)))
        .await
        .unwrap();
    assert_eq!(pending(&s, Actor::WorkerA).await, 750);
    s.assert_invariants("after the exits").await;
}

#[tokio::test]
async fn activate_before_the_warm_up_does_nothing_and_a_new_stake_restarts_it() {
    // Given WorkerA staking 1,000, then 1,000 more just before the first's warm-up ends,
    let s = System::deploy().await.unwrap();
    let worker = s.addr(Actor::WorkerA);
    s.worker(Actor::WorkerA, &h100(), 1_000).await;
    s.advance(WARMUP - 10).await;
    s.send(s.pool_as(Actor::WorkerA).stake(&u256(1_000)))
        .await
        .unwrap();
    let warming = s.worker_info(Actor::WorkerA).await.warming;
    let unlock_time = s.read_back(warming.unlock_time, WARMUP).await;
    assert_eq!(
        s.worker_info(Actor::WorkerA).await.warming,
        Exit {
            amount: u256(2_000),
            unlock_time
        },
        "the whole warming amount restarts"
    );
    // when anyone activates it before the new end, nothing joins and a reward finds no
    // weight (it goes to the treasury),
    s.advance(WARMUP - 10).await;
    let out = s
        .send(s.pool_as(Actor::Attacker).activate(&worker))
        .await
        .unwrap();
    assert_events::<cdc_pool::Event>(&out, s.pool, &[]);
    s.send(s.pool_as(Actor::Attacker).notify_reward(&u256(100)))
        .await
        .unwrap();
    assert_eq!(pending(&s, Actor::WorkerA).await, 0);
    // then after it, an activation by anyone brings all of it in, and it earns from then on
    // (only from then on).
    s.advance(10).await;
    let out = s
        .send(s.pool_as(Actor::Attacker).activate(&worker))
        .await
        .unwrap();
    assert_events(
        &out,
        s.pool,
        &[cdc_pool::Event::StakeActivated(StakeActivated {
            account: worker,
            worker,
            amount: u256(2_000),
        })],
    );
    assert_eq!(
        call(s.pool_reader().total_weight()).await.unwrap(),
        u256(2_000)
    );
    s.send(s.pool_as(Actor::Attacker).notify_reward(&u256(100)))
        .await
        .unwrap();
    assert_eq!(pending(&s, Actor::WorkerA).await, 100);
    assert_reverts(
        s.send(s.pool_as(Actor::Attacker).activate(&s.addr(Actor::WorkerB)))
            .await,
        "POOL: worker not registered",
    );
    s.assert_invariants("after the activation").await;
}

#[tokio::test]
async fn activate_delegation_joins_the_weight_only_after_the_warm_up() {
    // Given WorkerA's warmed-up 1,000 and a 1,000 delegation to it just made,
    let s = System::deploy().await.unwrap();
    let (delegator, worker) = (s.addr(Actor::Delegator), s.addr(Actor::WorkerA));
    s.worker(Actor::WorkerA, &h100(), 1_000).await;
    s.warm_up(Actor::WorkerA).await;
    s.send(s.pool_as(Actor::Delegator).delegate(&worker, &u256(1_000)))
        .await
        .unwrap();
    let warming = call(s.pool_reader().delegation_warming(&delegator, &worker))
        .await
        .unwrap();
    let unlock_time = s.read_back(warming.unlock_time, WARMUP).await;
    assert_eq!(
        call(s.pool_reader().delegation_warming(&delegator, &worker))
            .await
            .unwrap(),
        Exit {
            amount: u256(1_000),
            unlock_time
        }
    );
    // when it is activated early and a reward arrives, the worker takes it all,
    let out = s
        .send(
            s.pool_as(Actor::Attacker)
                .activate_delegation(&delegator, &worker),
        )
        .await
        .unwrap();
    assert_events::<cdc_pool::Event>(&out, s.pool, &[]);
    s.send(s.pool_as(Actor::Attacker).notify_reward(&u256(100)))
        .await
        .unwrap();
    assert_eq!(
        (
            pending(&s, Actor::WorkerA).await,
            pending(&s, Actor::Delegator).await
        ),
        (100, 0)
    );
    // then once activated after its warm-up, it shares the next one.
    s.advance(WARMUP).await;
    let out = s
        .send(
            s.pool_as(Actor::Attacker)
                .activate_delegation(&delegator, &worker),
        )
        .await
        .unwrap();
    assert_events(
        &out,
        s.pool,
        &[cdc_pool::Event::StakeActivated(StakeActivated {
            account: delegator,
            worker,
            amount: u256(1_000),
        })],
    );
    assert_eq!(
        s.worker_info(Actor::WorkerA).await.delegated_warming,
        u256(0)
    );
    s.send(s.pool_as(Actor::Attacker).notify_reward(&u256(100)))
        .await
        .unwrap();
    assert_eq!(
        (
            pending(&s, Actor::WorkerA).await,
            pending(&s, Actor::Delegator).await
        ),
        (150, 50)
    );
    s.assert_invariants("after the delegation's activation")
        .await;
}

#[tokio::test]
async fn undelegate_intent_takes_the_warming_delegation_first() {
    // Given a delegation of 1,000 earning and 500 more warming,
    let s = System::deploy().await.unwrap();
    let (delegator, worker) = (s.addr(Actor::Delegator), s.addr(Actor::WorkerA));
    s.worker(Actor::WorkerA, &h100(), 0).await;
    let d = s.pool_as(Actor::Delegator);
    s.send(d.delegate(&worker, &u256(1_000))).await.unwrap();
    s.warm_up_delegation(Actor::Delegator, Actor::WorkerA).await;
    s.send(d.delegate(&worker, &u256(500))).await.unwrap();
    // when 700 is undelegated,
    s.send(d.undelegate_intent(&worker, &u256(700)))
        .await
        .unwrap();
    // then the 500 warming went first, 200 of the earning part after it.
    assert_eq!(
        call(s.pool_reader().delegation_warming(&delegator, &worker))
            .await
            .unwrap()
            .amount,
        u256(0)
    );
    assert_eq!(
        call(s.pool_reader().total_weight()).await.unwrap(),
        u256(800)
    );
    s.assert_invariants("after the undelegation").await;
}

// ---------------------------------------------------------------------------------------
// reputation and job holds
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn hold_counts_a_job_against_an_eligible_worker_only() {
    // Given an Active worker and one registered without stake
    let s = System::deploy().await.unwrap();
    admin_as_job_manager(&s).await;
    s.active_worker(Actor::WorkerA).await;
    s.worker(Actor::WorkerB, &h100(), 0).await;
    let jm = s.pool_as(Actor::Admin);
    // When the job manager holds a job against each
    let out = s
        .send(jm.hold(&s.addr(Actor::WorkerA), &needs(0, 0, 0, 0)))
        .await
        .unwrap();
    assert_events::<cdc_pool::Event>(&out, s.pool, &[]);
    s.send(jm.hold(&s.addr(Actor::WorkerB), &needs(0, 0, 0, 0)))
        .await
        .unwrap();
    // or against the eligible one for requirements it does not meet
    s.send(jm.hold(&s.addr(Actor::WorkerA), &needs(0, 0, 0, 5_001)))
        .await
        .unwrap();
    // Then only the eligible worker's match is held; the others change nothing
    assert_eq!(s.worker_info(Actor::WorkerA).await.record.holds, 1);
    assert_eq!(s.worker_info(Actor::WorkerB).await.record.holds, 0);
    assert_reverts(
        s.send(
            s.pool_as(Actor::Attacker)
                .hold(&s.addr(Actor::WorkerA), &needs(0, 0, 0, 0)),
        )
        .await,
        "GOV: caller is missing role",
    );
}

#[tokio::test]
async fn record_outcomes_moves_the_score_by_the_documented_formula() {
    let s = System::deploy().await.unwrap();
    admin_as_job_manager(&s).await;
    s.active_worker(Actor::WorkerA).await;
    hold(&s, Actor::WorkerA, 4).await;
    let jm = s.pool_as(Actor::Admin);
    let worker = s.addr(Actor::WorkerA);
    // success: score += (10,000 − score) / 8; latency average starts at the first success
    let out = s
        .send(jm.record_outcomes(&worker, &Outcome::Success, &1, &1, &40))
        .await
        .unwrap();
    assert_events(
        &out,
        s.pool,
        &[cdc_pool::Event::OutcomeRecorded(OutcomeRecorded {
            worker,
            outcome: Outcome::Success,
            count: 1,
            rated: 1,
            latency: 40,
            score: 5_625,
        })],
    );
    // success again: latency average moves an eighth of the way (40 → 40 + (120 − 40)/8 = 50)
    s.send(jm.record_outcomes(&worker, &Outcome::Success, &1, &1, &120))
        .await
        .unwrap();
    // failure: score −= score / 8; miss: score −= score / 16
    s.send(jm.record_outcomes(&worker, &Outcome::Failure, &1, &1, &0))
        .await
        .unwrap();
    s.send(jm.record_outcomes(&worker, &Outcome::Missed, &1, &1, &0))
        .await
        .unwrap();
    let info = s.worker_info(Actor::WorkerA).await;
    let rep = info.reputation;
    let mut score: u32 = 5_000;
    score += (10_000 - score) / 8;
    score += (10_000 - score) / 8;
    score -= score / 8;
    score -= score / 16;
    assert_eq!(
        (rep.completed, rep.failed, rep.missed, rep.score),
        (2, 1, 1, score)
    );
    assert_eq!(rep.avg_latency, 50);
    assert_eq!(info.record.holds, 0, "each outcome released its hold");
}

#[tokio::test]
async fn record_outcomes_applies_the_formula_rated_times_and_releases_count_holds() {
    let s = System::deploy().await.unwrap();
    admin_as_job_manager(&s).await;
    s.active_worker(Actor::WorkerA).await;
    s.active_worker(Actor::WorkerB).await;
    hold(&s, Actor::WorkerA, 3).await;
    hold(&s, Actor::WorkerB, 5).await;
    let jm = s.pool_as(Actor::Admin);
    let (a, b) = (s.addr(Actor::WorkerA), s.addr(Actor::WorkerB));
    // Three rated outcomes at once equal three single ones.
    s.send(jm.record_outcomes(&a, &Outcome::Success, &3, &3, &60))
        .await
        .unwrap();
    for _ in 0..3 {
        s.send(jm.record_outcomes(&b, &Outcome::Success, &1, &1, &60))
            .await
            .unwrap();
    }
    let (rep_a, rep_b) = (
        s.worker_info(Actor::WorkerA).await.reputation,
        s.worker_info(Actor::WorkerB).await.reputation,
    );
    assert_eq!(
        (rep_a.completed, rep_a.score, rep_a.avg_latency),
        (rep_b.completed, rep_b.score, rep_b.avg_latency)
    );
    assert_eq!(rep_a.completed, 3);
    // Unrated outcomes release their holds and move nothing.
    let out = s
        .send(jm.record_outcomes(&b, &Outcome::Failure, &2, &0, &0))
        .await
        .unwrap();
    assert_events(
        &out,
        s.pool,
        &[cdc_pool::Event::OutcomeRecorded(OutcomeRecorded {
            worker: b,
            outcome: Outcome::Failure,
            count: 2,
            rated: 0,
            latency: 0,
            score: rep_b.score,
        })],
    );
    let info = s.worker_info(Actor::WorkerB).await;
    assert_eq!(
        (
            info.record.holds,
            info.reputation.failed,
            info.reputation.score
        ),
        (0, 0, rep_b.score)
    );
    assert_eq!(s.worker_info(Actor::WorkerA).await.record.holds, 0);
}

#[tokio::test]
async fn record_outcomes_rejects_bad_counts_unheld_jobs_unknown_workers_and_other_callers() {
    let s = System::deploy().await.unwrap();
    admin_as_job_manager(&s).await;
    s.active_worker(Actor::WorkerA).await;
    hold(&s, Actor::WorkerA, 1).await;
    // A caller releases only holds it placed: another's are out of its reach.
    assert_reverts(
        s.send(s.pool_as(Actor::Attacker).record_outcomes(
            &s.addr(Actor::WorkerA),
            &Outcome::Failure,
            &1,
            &1,
            &0,
        ))
        .await,
        "POOL: no hold to release",
    );
    let jm = s.pool_as(Actor::Admin);
    let worker = s.addr(Actor::WorkerA);
    assert_reverts(
        s.send(jm.record_outcomes(&worker, &Outcome::Success, &0, &0, &1))
            .await,
        "POOL: amount is zero",
    );
    assert_reverts(
        s.send(jm.record_outcomes(&worker, &Outcome::Success, &1, &2, &1))
            .await,
        "POOL: rated count over count",
    );
    assert_reverts(
        s.send(jm.record_outcomes(&worker, &Outcome::Failure, &2, &2, &0))
            .await,
        "POOL: no hold to release",
    );
    assert_reverts(
        s.send(jm.record_outcomes(&s.addr(Actor::WorkerB), &Outcome::Success, &1, &1, &1))
            .await,
        "POOL: worker not registered",
    );
    let info = s.worker_info(Actor::WorkerA).await;
    assert_eq!((info.record.holds, info.reputation.score), (1, 5_000));
}

// ---------------------------------------------------------------------------------------
// slashing and bans
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn slash_by_the_job_manager_applies_at_once_and_splits_with_the_beneficiary() {
    let s = System::deploy().await.unwrap();
    admin_as_job_manager(&s).await;
    s.active_worker(Actor::WorkerA).await;
    let worker = s.addr(Actor::WorkerA);
    let out = s
        .send(s.pool_as(Actor::Admin).slash(
            &worker,
            &SlashReason::Fraud,
            &0,
            &felt(9),
            &s.addr(Actor::Submitter),
            &u256(NO_CAP),
        ))
        .await
        .unwrap();
    let cut = MIN_STAKE[3] * u128::from(SLASH_BPS[4]) / 10_000;
    let share = cut * u128::from(BENEFICIARY_SHARE_BPS) / 10_000;
    assert_eq!(s.balance_of(Actor::Submitter).await, FUNDS + share);
    assert_eq!(s.balance_of(TREASURY).await, cut - share);
    let slash = slash_of(&s, 1).await;
    assert_eq!(
        (slash.status, slash.amount, slash.bps, slash.beneficiary_cap),
        (SlashStatus::Executed, u256(cut), SLASH_BPS[4], u256(NO_CAP))
    );
    assert_eq!(
        s.worker_info(Actor::WorkerA).await.record.open_slashes,
        0,
        "an immediate slash is never open"
    );
    assert_events(
        &out,
        s.pool,
        &[
            cdc_pool::Event::SlashCreated(SlashCreated {
                slash_id: 1,
                worker,
                reason: SlashReason::Fraud,
                bps: SLASH_BPS[4],
                evidence_hash: felt(9),
                beneficiary: s.addr(Actor::Submitter),
                challenge_deadline: slash.challenge_deadline,
            }),
            cdc_pool::Event::SlashExecuted(SlashExecuted {
                slash_id: 1,
                worker,
                amount: u256(cut),
                to_beneficiary: u256(share),
                to_treasury: u256(cut - share),
            }),
        ],
    );
    s.assert_invariants("slashed").await;
}

#[tokio::test]
async fn attack_a_beneficiary_never_receives_more_than_its_cap() {
    // Given a worker with 8,000 staked and a beneficiary (say, a disputer who manufactured the
    // case) whose slash is capped at 300,
    let s = System::deploy().await.unwrap();
    admin_as_job_manager(&s).await;
    s.active_worker(Actor::WorkerA).await;
    let worker = s.addr(Actor::WorkerA);
    let beneficiary = s.addr(Actor::Attacker);
    // when a 50% Fraud slash is applied with it as beneficiary,
    let out = s
        .send(s.pool_as(Actor::Admin).slash(
            &worker,
            &SlashReason::Fraud,
            &0,
            &felt(1),
            &beneficiary,
            &u256(300),
        ))
        .await
        .unwrap();
    // then of the 4,000 cut its share would be 2,000 but it gets exactly 300, the treasury
    // the other 3,700,
    assert_eq!(s.balance_of(Actor::Attacker).await, FUNDS + 300);
    assert_eq!(s.balance_of(TREASURY).await, 3_700);
    let events: Vec<cdc_pool::Event> = ciro_tests::assert::decoded_events(&out, s.pool);
    assert_eq!(
        events.last(),
        Some(&cdc_pool::Event::SlashExecuted(SlashExecuted {
            slash_id: 1,
            worker,
            amount: u256(4_000),
            to_beneficiary: u256(300),
            to_treasury: u256(3_700),
        }))
    );
    // and a slasher's slash, which names no beneficiary, pays it nothing when executed (1% of
    // 4,000 to the treasury).
    s.send(s.pool_as(SLASHER).slash(
        &worker,
        &SlashReason::Unavailable,
        &0,
        &felt(2),
        &nobody(),
        &u256(0),
    ))
    .await
    .unwrap();
    s.advance(SLASH_CHALLENGE_WINDOW + 1).await;
    let out = s
        .send(s.pool_as(Actor::Attacker).execute_slash(&2))
        .await
        .unwrap();
    assert_events(
        &out,
        s.pool,
        &[
            // The slash settles the worker, whose stake is past its warm-up by now.
            cdc_pool::Event::StakeActivated(StakeActivated {
                account: worker,
                worker,
                amount: u256(4_000),
            }),
            cdc_pool::Event::SlashExecuted(SlashExecuted {
                slash_id: 2,
                worker,
                amount: u256(40),
                to_beneficiary: u256(0),
                to_treasury: u256(40),
            }),
        ],
    );
    assert_eq!(s.balance_of(Actor::Attacker).await, FUNDS + 300);
    assert_eq!(s.balance_of(TREASURY).await, 3_740);
    s.assert_invariants("after the capped slashes").await;
}

#[tokio::test]
async fn attack_a_slasher_cannot_pay_itself_or_another_a_beneficiary_share() {
    // Given a SLASHER (a compromised key, or a rogue operator) and a worker with 8,000 staked
    // that will not challenge in time,
    let s = System::deploy().await.unwrap();
    s.active_worker(Actor::WorkerA).await;
    let worker = s.addr(Actor::WorkerA);
    // when it opens a Fraud slash naming itself, or an account of its own, as beneficiary with
    // no cap, each is refused;
    for beneficiary in [s.addr(SLASHER), s.addr(Actor::Attacker)] {
        assert_reverts(
            s.send(s.pool_as(SLASHER).slash(
                &worker,
                &SlashReason::Fraud,
                &0,
                &felt(1),
                &beneficiary,
                &u256(NO_CAP),
            ))
            .await,
            "POOL: slasher names beneficiary",
        );
    }
    // and its slash without one (the first slash: the refused ones left no id) sends the
    // whole cut to the treasury once executed.
    let slasher_before = s.balance_of(SLASHER).await;
    s.send(s.pool_as(SLASHER).slash(
        &worker,
        &SlashReason::Fraud,
        &0,
        &felt(1),
        &nobody(),
        &u256(NO_CAP),
    ))
    .await
    .unwrap();
    s.advance(SLASH_CHALLENGE_WINDOW + 1).await;
    s.send(s.pool_as(Actor::Attacker).execute_slash(&1))
        .await
        .unwrap();
    let cut = MIN_STAKE[3] * u128::from(SLASH_BPS[4]) / 10_000;
    assert_eq!(s.balance_of(TREASURY).await, cut);
    assert_eq!(s.balance_of(Actor::Attacker).await, FUNDS);
    assert!(
        s.balance_of(SLASHER).await <= slasher_before,
        "the slasher gained nothing"
    );
    s.assert_invariants("after the slasher's slash").await;
}

#[tokio::test]
async fn slash_reaches_a_pending_exit_when_the_stake_is_not_enough() {
    let s = System::deploy().await.unwrap();
    admin_as_job_manager(&s).await;
    s.active_worker(Actor::WorkerA).await;
    s.send(
        s.pool_as(Actor::WorkerA)
            .unstake_intent(&u256(MIN_STAKE[3] - 100)),
    )
    .await
    .unwrap();
    s.send(s.pool_as(Actor::Admin).slash(
        &s.addr(Actor::WorkerA),
        &SlashReason::Fraud,
        &5_000,
        &felt(1),
        &nobody(),
        &u256(0),
    ))
    .await
    .unwrap();
    let info = s.worker_info(Actor::WorkerA).await;
    assert_eq!(info.stake, u256(0));
    assert_eq!(info.exit.amount, u256(MIN_STAKE[3] / 2));
    assert_eq!(s.balance_of(TREASURY).await, MIN_STAKE[3] / 2);
    s.assert_invariants("slashed from the exit").await;
}

#[tokio::test]
async fn slash_by_the_slasher_is_pending_with_a_challenge_window_and_slashes_stack() {
    let s = System::deploy().await.unwrap();
    s.active_worker(Actor::WorkerA).await;
    let worker = s.addr(Actor::WorkerA);
    let out = s
        .send(s.pool_as(SLASHER).slash(
            &worker,
            &SlashReason::Unavailable,
            &250,
            &felt(3),
            &nobody(),
            &u256(0),
        ))
        .await
        .unwrap();
    let slash = slash_of(&s, 1).await;
    assert_eq!(
        (slash.status, slash.bps, slash.arbitration_deadline),
        (SlashStatus::Pending, 250, 0)
    );
    s.read_back(slash.challenge_deadline, SLASH_CHALLENGE_WINDOW)
        .await;
    let info = s.worker_info(Actor::WorkerA).await;
    assert_eq!(info.record.open_slashes, 1);
    assert_eq!(info.stake, u256(MIN_STAKE[3]), "nothing cut yet");
    assert_eq!(
        info.state,
        WorkerState::Active,
        "an open slash does not bench"
    );
    assert_events(
        &out,
        s.pool,
        &[cdc_pool::Event::SlashCreated(SlashCreated {
            slash_id: 1,
            worker,
            reason: SlashReason::Unavailable,
            bps: 250,
            evidence_hash: felt(3),
            beneficiary: nobody(),
            challenge_deadline: slash.challenge_deadline,
        })],
    );
    // A second slash may be opened while the first is open; each one counts.
    s.send(s.pool_as(SLASHER).slash(
        &worker,
        &SlashReason::Fraud,
        &0,
        &felt(4),
        &nobody(),
        &u256(0),
    ))
    .await
    .unwrap();
    assert_eq!(
        (slash_of(&s, 2).await.bps, slash_of(&s, 2).await.status),
        (SLASH_BPS[4], SlashStatus::Pending)
    );
    assert_eq!(s.worker_info(Actor::WorkerA).await.record.open_slashes, 2);
}

#[tokio::test]
async fn slash_rejects_unauthorized_callers_unknown_workers_and_bps_over_10000() {
    let s = System::deploy().await.unwrap();
    s.active_worker(Actor::WorkerA).await;
    let worker = s.addr(Actor::WorkerA);
    assert_reverts(
        s.send(s.pool_as(Actor::Attacker).slash(
            &worker,
            &SlashReason::Fraud,
            &0,
            &felt(1),
            &nobody(),
            &u256(0),
        ))
        .await,
        "POOL: not job manager/slasher",
    );
    assert_reverts(
        s.send(s.pool_as(SLASHER).slash(
            &s.addr(Actor::WorkerB),
            &SlashReason::Fraud,
            &0,
            &felt(1),
            &nobody(),
            &u256(0),
        ))
        .await,
        "POOL: worker not registered",
    );
    assert_reverts(
        s.send(s.pool_as(SLASHER).slash(
            &worker,
            &SlashReason::Fraud,
            &10_001,
            &felt(1),
            &nobody(),
            &u256(0),
        ))
        .await,
        "POOL: slash bps out of bounds",
    );
}

#[tokio::test]
async fn challenge_slash_takes_the_bond_within_the_window_from_the_worker_only() {
    let s = System::deploy().await.unwrap();
    s.active_worker(Actor::WorkerA).await;
    s.active_worker(Actor::WorkerB).await;
    s.slasher_slash(Actor::WorkerA, SlashReason::Unavailable)
        .await;
    s.slasher_slash(Actor::WorkerB, SlashReason::Unavailable)
        .await;
    assert_reverts(
        s.send(s.pool_as(Actor::WorkerB).challenge_slash(&1)).await,
        "POOL: caller not slashed worker",
    );
    assert_reverts(
        s.send(s.pool_as(Actor::WorkerA).challenge_slash(&9)).await,
        "POOL: unknown slash",
    );
    let out = s
        .send(s.pool_as(Actor::WorkerA).challenge_slash(&1))
        .await
        .unwrap();
    let slash = slash_of(&s, 1).await;
    assert_eq!(
        (slash.status, slash.bond, slash.arbitration_deadline),
        (
            SlashStatus::Challenged,
            u256(CHALLENGE_BOND),
            s.read_back(slash.arbitration_deadline, ARBITRATION_WINDOW)
                .await
        )
    );
    assert_eq!(
        call(s.pool_reader().totals()).await.unwrap().bonds,
        u256(CHALLENGE_BOND)
    );
    assert_eq!(
        s.worker_info(Actor::WorkerA).await.record.open_slashes,
        1,
        "a challenged slash is still open"
    );
    assert_events(
        &out,
        s.pool,
        &[cdc_pool::Event::SlashChallenged(SlashChallenged {
            slash_id: 1,
            worker: s.addr(Actor::WorkerA),
            bond: u256(CHALLENGE_BOND),
        })],
    );
    assert_reverts(
        s.send(s.pool_as(Actor::WorkerA).challenge_slash(&1)).await,
        "POOL: slash not pending",
    );
    s.advance(SLASH_CHALLENGE_WINDOW + 1).await;
    assert_reverts(
        s.send(s.pool_as(Actor::WorkerB).challenge_slash(&2)).await,
        "POOL: challenge window closed",
    );
    s.assert_invariants("bond held").await;
}

#[tokio::test]
async fn resolve_slash_upheld_cuts_the_stake_and_gives_the_bond_to_the_treasury() {
    let s = System::deploy().await.unwrap();
    s.active_worker(Actor::WorkerA).await;
    s.slasher_slash(Actor::WorkerA, SlashReason::Malicious)
        .await;
    s.send(s.pool_as(Actor::WorkerA).challenge_slash(&1))
        .await
        .unwrap();
    let out = s
        .send(s.pool_as(Actor::Arbiter).resolve_slash(&1, &true))
        .await
        .unwrap();
    let cut = MIN_STAKE[3] * u128::from(SLASH_BPS[3]) / 10_000;
    assert_eq!(s.balance_of(TREASURY).await, cut + CHALLENGE_BOND);
    assert_eq!(slash_of(&s, 1).await.status, SlashStatus::Executed);
    assert_eq!(s.worker_info(Actor::WorkerA).await.record.open_slashes, 0);
    assert_events(
        &out,
        s.pool,
        &[
            cdc_pool::Event::SlashResolved(SlashResolved {
                slash_id: 1,
                upheld: true,
                by_arbiter: true,
            }),
            cdc_pool::Event::SlashExecuted(SlashExecuted {
                slash_id: 1,
                worker: s.addr(Actor::WorkerA),
                amount: u256(cut),
                to_beneficiary: u256(0),
                to_treasury: u256(cut),
            }),
        ],
    );
    s.assert_invariants("upheld").await;
}

#[tokio::test]
async fn resolve_slash_overturned_cuts_nothing_and_returns_the_bond() {
    let s = System::deploy().await.unwrap();
    s.active_worker(Actor::WorkerA).await;
    s.slasher_slash(Actor::WorkerA, SlashReason::Malicious)
        .await;
    s.send(s.pool_as(Actor::WorkerA).challenge_slash(&1))
        .await
        .unwrap();
    let out = s
        .send(s.pool_as(Actor::Arbiter).resolve_slash(&1, &false))
        .await
        .unwrap();
    assert_events(
        &out,
        s.pool,
        &[cdc_pool::Event::SlashResolved(SlashResolved {
            slash_id: 1,
            upheld: false,
            by_arbiter: true,
        })],
    );
    let info = s.worker_info(Actor::WorkerA).await;
    assert_eq!(
        (info.stake, info.record.open_slashes),
        (u256(MIN_STAKE[3]), 0)
    );
    assert_eq!(slash_of(&s, 1).await.status, SlashStatus::Overturned);
    assert_eq!(s.balance_of(Actor::WorkerA).await, FUNDS - MIN_STAKE[3]);
    assert_eq!(s.balance_of(TREASURY).await, 0);
    s.assert_invariants("overturned").await;
}

#[tokio::test]
async fn resolve_slash_rejects_non_arbiters_and_unchallenged_slashes() {
    let s = System::deploy().await.unwrap();
    s.active_worker(Actor::WorkerA).await;
    s.slasher_slash(Actor::WorkerA, SlashReason::Malicious)
        .await;
    assert_reverts(
        s.send(s.pool_as(Actor::Arbiter).resolve_slash(&1, &true))
            .await,
        "POOL: slash not challenged",
    );
    s.send(s.pool_as(Actor::WorkerA).challenge_slash(&1))
        .await
        .unwrap();
    assert_reverts(
        s.send(s.pool_as(Actor::Attacker).resolve_slash(&1, &false))
            .await,
        "GOV: caller is missing role",
    );
}

#[tokio::test]
async fn settle_slash_rejects_unknown_and_unchallenged_slashes() {
    let s = System::deploy().await.unwrap();
    s.active_worker(Actor::WorkerA).await;
    s.slasher_slash(Actor::WorkerA, SlashReason::Malicious)
        .await;
    let anyone = s.pool_as(Actor::Attacker);
    assert_reverts(s.send(anyone.settle_slash(&9)).await, "POOL: unknown slash");
    s.advance(SLASH_CHALLENGE_WINDOW + ARBITRATION_WINDOW + 1)
        .await;
    assert_reverts(
        s.send(anyone.settle_slash(&1)).await,
        "POOL: slash not challenged",
    );
    assert_eq!(slash_of(&s, 1).await.status, SlashStatus::Pending);
}

#[tokio::test]
async fn attack_an_undecided_slash_cannot_lock_a_worker_forever() {
    // Given a worker leaving with all its stake, and a slash it challenged that the arbiter
    // never decides,
    let s = System::deploy().await.unwrap();
    s.active_worker(Actor::WorkerA).await;
    let worker = s.addr(Actor::WorkerA);
    s.send(
        s.pool_as(Actor::WorkerA)
            .unstake_intent(&u256(MIN_STAKE[3])),
    )
    .await
    .unwrap();
    s.slasher_slash(Actor::WorkerA, SlashReason::Malicious)
        .await;
    s.send(s.pool_as(Actor::WorkerA).challenge_slash(&1))
        .await
        .unwrap();
    // when anyone tries to settle it before its arbitration deadline, it is refused,
    let anyone = s.pool_as(Actor::Attacker);
    assert_reverts(
        s.send(anyone.settle_slash(&1)).await,
        "POOL: arbitration window open",
    );
    // and the exit stays locked while it is open, even past the exit window;
    s.advance(EXIT_WINDOW).await;
    assert!(now(&s).await > slash_of(&s, 1).await.arbitration_deadline);
    assert_reverts(
        s.send(anyone.unstake_action(&worker)).await,
        "POOL: slash pending",
    );
    // past the deadline the arbiter can no longer decide it (no race with the default),
    assert_reverts(
        s.send(s.pool_as(Actor::Arbiter).resolve_slash(&1, &true))
            .await,
        "POOL: arbitration window closed",
    );
    // and anyone settles it: overturned, the bond back,
    let out = s.send(anyone.settle_slash(&1)).await.unwrap();
    assert_events(
        &out,
        s.pool,
        &[cdc_pool::Event::SlashResolved(SlashResolved {
            slash_id: 1,
            upheld: false,
            by_arbiter: false,
        })],
    );
    assert_eq!(slash_of(&s, 1).await.status, SlashStatus::Overturned);
    assert_eq!(s.worker_info(Actor::WorkerA).await.record.open_slashes, 0);
    assert_eq!(s.balance_of(Actor::WorkerA).await, FUNDS - MIN_STAKE[3]);
    // then the arbiter cannot decide it afterwards, nor anyone settle it twice,
    assert_reverts(
        s.send(s.pool_as(Actor::Arbiter).resolve_slash(&1, &true))
            .await,
        "POOL: slash not challenged",
    );
    assert_reverts(
        s.send(anyone.settle_slash(&1)).await,
        "POOL: slash not challenged",
    );
    // and the exit is paid in full.
    s.send(anyone.unstake_action(&worker)).await.unwrap();
    assert_eq!(s.balance_of(Actor::WorkerA).await, FUNDS);
    s.assert_invariants("after the settled slash").await;
}

#[tokio::test]
async fn attack_ending_smaller_slashes_does_not_unlock_an_exit_under_a_challenged_fraud_slash() {
    // Given a worker that asks to leave with all its 8,000, and two days before its exit
    // unlocks is slashed 50% for Fraud, which it challenges,
    let s = System::deploy().await.unwrap();
    s.active_worker(Actor::WorkerA).await;
    let worker = s.addr(Actor::WorkerA);
    s.send(
        s.pool_as(Actor::WorkerA)
            .unstake_intent(&u256(MIN_STAKE[3])),
    )
    .await
    .unwrap();
    s.advance(EXIT_WINDOW - 2 * 86_400).await;
    s.slasher_slash(Actor::WorkerA, SlashReason::Fraud).await;
    s.send(s.pool_as(Actor::WorkerA).challenge_slash(&1))
        .await
        .unwrap();
    // when two smaller slashes follow and both end (one overturned after its challenge, one
    // executed, 1% of 8,000) while the Fraud slash is still before the arbiter,
    s.slasher_slash(Actor::WorkerA, SlashReason::Unavailable)
        .await;
    s.slasher_slash(Actor::WorkerA, SlashReason::PoorPerformance)
        .await;
    assert_eq!(s.worker_info(Actor::WorkerA).await.record.open_slashes, 3);
    s.send(s.pool_as(Actor::WorkerA).challenge_slash(&3))
        .await
        .unwrap();
    s.send(s.pool_as(Actor::Arbiter).resolve_slash(&3, &false))
        .await
        .unwrap();
    s.advance(2 * 86_400).await;
    let anyone = s.pool_as(Actor::Attacker);
    s.send(anyone.execute_slash(&2)).await.unwrap();
    // then its exit window is over but the exit stays locked by the Fraud slash,
    let info = s.worker_info(Actor::WorkerA).await;
    assert!(now(&s).await >= info.exit.unlock_time);
    assert_eq!(
        (info.record.open_slashes, info.exit.amount),
        (1, u256(7_920))
    );
    assert_reverts(
        s.send(anyone.unstake_action(&worker)).await,
        "POOL: slash pending",
    );
    assert_reverts(
        s.send(s.pool_as(Actor::WorkerA).settle_slash(&1)).await,
        "POOL: arbitration window open",
    );
    // and the upheld Fraud slash cuts the full 50% of what is left (stake and exit).
    let out = s
        .send(s.pool_as(Actor::Arbiter).resolve_slash(&1, &true))
        .await
        .unwrap();
    let events: Vec<cdc_pool::Event> = ciro_tests::assert::decoded_events(&out, s.pool);
    assert_eq!(
        events.last(),
        Some(&cdc_pool::Event::SlashExecuted(SlashExecuted {
            slash_id: 1,
            worker,
            amount: u256(3_960),
            to_beneficiary: u256(0),
            to_treasury: u256(3_960),
        }))
    );
    s.send(anyone.unstake_action(&worker)).await.unwrap();
    // The worker lost 80 + 3,960 and the Fraud slash's bond; the overturned one's came back.
    assert_eq!(
        s.balance_of(Actor::WorkerA).await,
        FUNDS - MIN_STAKE[3] - CHALLENGE_BOND + 3_960
    );
    assert_eq!(s.balance_of(TREASURY).await, 80 + 3_960 + CHALLENGE_BOND);
    s.assert_invariants("after the slashes").await;
}

#[tokio::test]
async fn attack_executing_one_of_two_pending_slashes_leaves_the_exit_locked() {
    // Given a worker leaving with all its 8,000 and two pending 1% slashes,
    let s = System::deploy().await.unwrap();
    s.active_worker(Actor::WorkerA).await;
    let worker = s.addr(Actor::WorkerA);
    s.send(
        s.pool_as(Actor::WorkerA)
            .unstake_intent(&u256(MIN_STAKE[3])),
    )
    .await
    .unwrap();
    s.slasher_slash(Actor::WorkerA, SlashReason::Unavailable)
        .await;
    s.slasher_slash(Actor::WorkerA, SlashReason::Unavailable)
        .await;
    // when its exit window is over and the first slash is executed (80),
    s.advance(EXIT_WINDOW).await;
    let anyone = s.pool_as(Actor::Attacker);
    s.send(anyone.execute_slash(&1)).await.unwrap();
    // then the exit is still locked by the second,
    assert_eq!(s.worker_info(Actor::WorkerA).await.record.open_slashes, 1);
    assert_reverts(
        s.send(anyone.unstake_action(&worker)).await,
        "POOL: slash pending",
    );
    // which also reaches the exit (1% of 7,920, rounded down) before it is paid.
    s.send(anyone.execute_slash(&2)).await.unwrap();
    assert_eq!(slash_of(&s, 2).await.amount, u256(79));
    s.send(anyone.unstake_action(&worker)).await.unwrap();
    // It got its 8,000 back less both cuts.
    assert_eq!(s.balance_of(Actor::WorkerA).await, FUNDS - 80 - 79);
    assert_eq!(s.balance_of(TREASURY).await, 80 + 79);
    s.assert_invariants("after both slashes").await;
}

#[tokio::test]
async fn execute_slash_waits_for_the_window_and_only_runs_on_pending_slashes() {
    let s = System::deploy().await.unwrap();
    s.active_worker(Actor::WorkerA).await;
    s.slasher_slash(Actor::WorkerA, SlashReason::Unavailable)
        .await;
    let anyone = s.pool_as(Actor::Attacker);
    assert_reverts(
        s.send(anyone.execute_slash(&1)).await,
        "POOL: challenge window open",
    );
    s.advance(SLASH_CHALLENGE_WINDOW + 1).await;
    s.send(anyone.execute_slash(&1)).await.unwrap();
    assert_eq!(s.worker_info(Actor::WorkerA).await.record.open_slashes, 0);
    assert_reverts(
        s.send(anyone.execute_slash(&1)).await,
        "POOL: slash not pending",
    );
    assert_reverts(
        call(s.pool_reader().get_slash(&2)).await,
        "POOL: unknown slash",
    );
}

#[tokio::test]
async fn ban_moves_the_stake_to_an_exit_and_shuts_the_worker_out() {
    let s = System::deploy().await.unwrap();
    s.active_worker(Actor::WorkerA).await;
    let worker = s.addr(Actor::WorkerA);
    let out = s.send(s.pool_as(Actor::Admin).ban(&worker)).await.unwrap();
    let info = s.worker_info(Actor::WorkerA).await;
    assert_eq!(
        (info.state, info.stake, info.exit.amount),
        (WorkerState::Banned, u256(0), u256(MIN_STAKE[3]))
    );
    assert_events(
        &out,
        s.pool,
        &[cdc_pool::Event::WorkerBanned(WorkerBanned {
            worker,
            unlock_time: info.exit.unlock_time,
        })],
    );
    let pool = s.pool_as(Actor::WorkerA);
    assert_reverts(s.send(pool.stake(&u256(1))).await, "POOL: worker banned");
    assert_reverts(s.send(pool.heartbeat()).await, "POOL: worker banned");
    assert_reverts(s.send(pool.reactivate()).await, "POOL: worker banned");
    // It can withdraw what is left after the exit window.
    s.advance(EXIT_WINDOW).await;
    s.send(pool.unstake_action(&worker)).await.unwrap();
    assert_eq!(s.balance_of(Actor::WorkerA).await, FUNDS);
    s.assert_invariants("banned and withdrawn").await;
}

#[tokio::test]
async fn ban_rejects_non_admins_unknown_and_already_banned_workers() {
    let s = System::deploy().await.unwrap();
    s.worker(Actor::WorkerA, &h100(), 0).await;
    assert_reverts(
        s.send(s.pool_as(Actor::Attacker).ban(&s.addr(Actor::WorkerA)))
            .await,
        "GOV: caller is not admin",
    );
    assert_reverts(
        s.send(s.pool_as(Actor::Admin).ban(&s.addr(Actor::WorkerB)))
            .await,
        "POOL: worker not registered",
    );
    s.send(s.pool_as(Actor::Admin).ban(&s.addr(Actor::WorkerA)))
        .await
        .unwrap();
    assert_reverts(
        s.send(s.pool_as(Actor::Admin).ban(&s.addr(Actor::WorkerA)))
            .await,
        "POOL: worker already banned",
    );
}

#[tokio::test]
async fn pause_stops_registration_updates_and_reactivation_but_not_exits() {
    let s = System::deploy().await.unwrap();
    s.active_worker(Actor::WorkerA).await;
    s.send(s.pool_as(Actor::WorkerA).deactivate())
        .await
        .unwrap();
    s.send(s.pool_as(Actor::Pauser).pause()).await.unwrap();
    let pool = s.pool_as(Actor::WorkerA);
    assert_reverts(
        s.send(pool.update_capabilities(&small_gpu(), &felt(1)))
            .await,
        "GOV: paused",
    );
    assert_reverts(s.send(pool.reactivate()).await, "GOV: paused");
    // Exits and liveness keep working.
    s.send(pool.heartbeat()).await.unwrap();
    s.send(pool.unstake_intent(&u256(10))).await.unwrap();
}

#[tokio::test]
async fn a_payout_the_token_fails_to_deliver_reverts_and_keeps_the_exit() {
    let s = System::deploy().await.unwrap();
    s.active_worker(Actor::WorkerA).await;
    s.send(s.pool_as(Actor::WorkerA).unstake_intent(&u256(100)))
        .await
        .unwrap();
    s.advance(EXIT_WINDOW).await;
    let admin = s.net.account(Actor::Admin);
    send(
        &s.net.provider,
        TestToken::new(s.token, &admin).set_transfer_returns_false(&true),
    )
    .await
    .unwrap();
    assert_reverts(
        s.send(
            s.pool_as(Actor::WorkerA)
                .unstake_action(&s.addr(Actor::WorkerA)),
        )
        .await,
        "POOL: token transfer failed",
    );
    assert_eq!(s.worker_info(Actor::WorkerA).await.exit.amount, u256(100));
    s.assert_invariants("after the failed payout").await;
}

#[tokio::test]
async fn a_token_that_reenters_cannot_pay_an_exit_twice() {
    // Given an unlocked exit and a token whose `transfer` calls `unstake_action` again
    let s = System::deploy().await.unwrap();
    s.active_worker(Actor::WorkerA).await;
    s.send(s.pool_as(Actor::WorkerA).unstake_intent(&u256(100)))
        .await
        .unwrap();
    s.advance(EXIT_WINDOW).await;
    let admin = s.net.account(Actor::Admin);
    let selector =
        ciro_chain::starknet::core::utils::get_selector_from_name("unstake_action").unwrap();
    send(
        &s.net.provider,
        TestToken::new(s.token, &admin).set_reentry(
            &ContractAddress(s.pool),
            &selector,
            &vec![s.net.address(Actor::WorkerA)],
        ),
    )
    .await
    .unwrap();
    // Then the second payout finds the exit already paid and everything reverts
    assert_reverts(
        s.send(
            s.pool_as(Actor::Attacker)
                .unstake_action(&s.addr(Actor::WorkerA)),
        )
        .await,
        "POOL: nothing to withdraw",
    );
    assert_eq!(s.worker_info(Actor::WorkerA).await.exit.amount, u256(100));
    s.assert_invariants("after the refused re-entry").await;
}

#[tokio::test]
async fn attack_a_pending_commission_raise_is_visible_to_a_new_delegator() {
    // Given a worker at 0% that schedules 20% just before delegators arrive,
    let s = System::deploy().await.unwrap();
    s.active_worker(Actor::WorkerA).await;
    s.send(s.pool_as(Actor::WorkerA).set_commission(&2_000))
        .await
        .unwrap();
    // then anyone reading the worker sees the raise and when it applies, before delegating.
    let info = s.worker_info(Actor::WorkerA).await;
    let effective_at = s
        .read_back(info.commission_change.effective_at, EXIT_WINDOW)
        .await;
    assert_eq!(info.record.commission_bps, 0);
    assert_eq!(
        info.commission_change,
        cdc_pool::CommissionChange {
            bps: 2_000,
            effective_at
        }
    );
}
