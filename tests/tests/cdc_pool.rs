//! Specification of the CDC Pool: worker registry, own stake and exits, delegation, the reward
//! stream, reputation, slashing and bans, parameters and views. Each test reads given / when /
//! then; every revert is asserted by its exact error string, state changes by their decoded
//! events. JobMgr's use of the pool is in `job_mgr.rs` and `flows.rs`.

use ciro_chain::bindings::cdc_pool::{
    self, CommissionSet, Delegated, Exit, Outcome, OutcomeRecorded, PoolParams, RewardNotified,
    RewardsClaimed, SlashChallenged, SlashCreated, SlashExecuted, SlashReason, SlashResolved,
    SlashStatus, Staked, UndelegateRequested, UnstakeRequested, Withdrawn, WorkerActiveSet,
    WorkerBanned, WorkerRegistered, WorkerState,
};
use ciro_chain::bindings::test_token::TestToken;
use ciro_chain::cainome::cairo_serde::ContractAddress;
use ciro_chain::starknet::core::types::Felt;
use ciro_chain::tx::{call, send};
use ciro_tests::assert::{assert_events, assert_reverts};
use ciro_tests::fixtures::{deploy_test_token, u256};
use ciro_tests::system::*;
use ciro_tests::{Actor, TestNet};

const ATTESTATION: u64 = 0xa77e57;

/// Gives JOB_MANAGER to the admin, so that the spec can call what JobMgr calls.
async fn admin_as_job_manager(s: &System) {
    s.send(
        s.pool_as(Actor::Admin)
            .grant_role(&role("JOB_MANAGER"), &s.addr(Actor::Admin)),
    )
    .await
    .unwrap();
}

async fn pending(s: &System, actor: Actor) -> u128 {
    call(s.pool_reader().pending_rewards(&s.addr(actor)))
        .await
        .unwrap()
        .low
}

// ---------------------------------------------------------------------------------------
// constructor, parameters, treasury
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn constructor_sets_admin_token_treasury_and_params() {
    let s = System::deploy().await.unwrap();
    let r = s.pool_reader();
    assert_eq!(call(r.admin()).await.unwrap(), s.addr(Actor::Admin));
    assert_eq!(call(r.token()).await.unwrap(), ContractAddress(s.token));
    assert_eq!(call(r.treasury()).await.unwrap(), s.addr(TREASURY));
    assert_eq!(call(r.params()).await.unwrap(), pool_params());
    assert_eq!(call(r.total_weight()).await.unwrap(), u256(0));
    assert_eq!(call(r.worker_count()).await.unwrap(), 0);
}

#[tokio::test]
async fn constructor_rejects_zero_addresses_and_bad_params() {
    let net = TestNet::new().await.unwrap();
    let token = deploy_test_token(&net, 0).await.unwrap();
    let treasury = net.address(TREASURY);
    assert_reverts(
        try_deploy_pool(&net, Felt::ZERO, treasury, &pool_params()).await,
        "POOL: zero address",
    );
    assert_reverts(
        try_deploy_pool(&net, token, Felt::ZERO, &pool_params()).await,
        "POOL: zero address",
    );
    let bad = PoolParams {
        exit_window: 10,
        ..pool_params()
    };
    assert_reverts(
        try_deploy_pool(&net, token, treasury, &bad).await,
        "POOL: exit window out of bounds",
    );
}

#[tokio::test]
async fn set_params_replaces_the_parameters_and_emits_params_set() {
    let s = System::deploy().await.unwrap();
    let params = PoolParams {
        min_stake_0: u256(1),
        min_stake_1: u256(1),
        min_stake_2: u256(1),
        min_stake_3: u256(1_000_000_000_000_000_000_000_000_000),
        exit_window: 2_592_000,
        challenge_window: 3_600,
        challenge_bond: u256(1_000_000_000_000_000_000_000_000),
        beneficiary_share_bps: 10_000,
        bps_unavailable: 1,
        bps_poor_performance: 1,
        bps_protocol_violation: 1,
        bps_malicious: 10_000,
        bps_fraud: 10_000,
    };
    let out = s
        .send(s.pool_as(Actor::Admin).set_params(&params))
        .await
        .unwrap();
    assert_eq!(call(s.pool_reader().params()).await.unwrap(), params);
    assert_events(
        &out,
        s.pool,
        &[cdc_pool::Event::ParamsSet(cdc_pool::ParamsSet { params })],
    );
}

#[tokio::test]
async fn set_params_rejects_a_caller_who_is_not_admin() {
    let s = System::deploy().await.unwrap();
    assert_reverts(
        s.send(s.pool_as(Actor::Attacker).set_params(&pool_params()))
            .await,
        "GOV: caller is not admin",
    );
}

#[tokio::test]
async fn set_params_rejects_each_value_out_of_bounds() {
    let s = System::deploy().await.unwrap();
    let p = pool_params;
    let too_much = u256(1_000_000_000_000_000_000_000_000_001);
    let cases: Vec<(PoolParams, &str)> = vec![
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
    ];
    for (params, error) in cases {
        assert_reverts(
            s.send(s.pool_as(Actor::Admin).set_params(&params)).await,
            error,
        );
    }
}

#[tokio::test]
async fn set_treasury_replaces_it_for_the_admin_only_and_never_zero() {
    let s = System::deploy().await.unwrap();
    let out = s
        .send(
            s.pool_as(Actor::Admin)
                .set_treasury(&s.addr(Actor::Arbiter)),
        )
        .await
        .unwrap();
    assert_eq!(
        call(s.pool_reader().treasury()).await.unwrap(),
        s.addr(Actor::Arbiter)
    );
    assert_events(
        &out,
        s.pool,
        &[cdc_pool::Event::TreasurySet(cdc_pool::TreasurySet {
            treasury: s.addr(Actor::Arbiter),
        })],
    );
    assert_reverts(
        s.send(
            s.pool_as(Actor::Attacker)
                .set_treasury(&s.addr(Actor::Attacker)),
        )
        .await,
        "GOV: caller is not admin",
    );
    assert_reverts(
        s.send(s.pool_as(Actor::Admin).set_treasury(&nobody()))
            .await,
        "POOL: zero address",
    );
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
async fn set_commission_is_bounded_at_20_percent() {
    let s = System::deploy().await.unwrap();
    s.worker(Actor::WorkerA, &h100(), 0).await;
    let out = s
        .send(s.pool_as(Actor::WorkerA).set_commission(&2_000))
        .await
        .unwrap();
    assert_eq!(
        s.worker_info(Actor::WorkerA).await.record.commission_bps,
        2_000
    );
    assert_events(
        &out,
        s.pool,
        &[cdc_pool::Event::CommissionSet(CommissionSet {
            worker: s.addr(Actor::WorkerA),
            bps: 2_000,
        })],
    );
    assert_reverts(
        s.send(s.pool_as(Actor::WorkerA).set_commission(&2_001))
            .await,
        "POOL: commission too high",
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
async fn is_eligible_checks_state_vram_flags_and_stake_tier() {
    let s = System::deploy().await.unwrap();
    let r = s.pool_reader();
    let req = |vram: u32, flags: u64, tier: u8| cdc_pool::Requirements {
        min_vram_mb: vram,
        required_flags: flags,
        min_stake_tier: tier,
    };
    let a = s.addr(Actor::WorkerA);
    // Unregistered, then registered without stake: not eligible.
    assert!(!call(r.is_eligible(&a, &req(0, 0, 0))).await.unwrap());
    s.worker(Actor::WorkerA, &h100(), MIN_STAKE[3]).await;
    assert!(
        call(r.is_eligible(&a, &req(81_920, FLAG_CUDA | FLAG_BF16, 3)))
            .await
            .unwrap()
    );
    assert!(
        !call(r.is_eligible(&a, &req(81_921, 0, 0))).await.unwrap(),
        "VRAM"
    );
    assert!(
        !call(r.is_eligible(&a, &req(0, FLAG_TEE, 0))).await.unwrap(),
        "flags"
    );
    // A small GPU staked at tier 0 is Active but below stake tier 1.
    s.worker(Actor::WorkerB, &small_gpu(), MIN_STAKE[0]).await;
    let b = s.addr(Actor::WorkerB);
    assert!(call(r.is_eligible(&b, &req(0, FLAG_CUDA, 0)))
        .await
        .unwrap());
    assert!(
        !call(r.is_eligible(&b, &req(0, FLAG_CUDA, 1)))
            .await
            .unwrap(),
        "stake tier"
    );
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
        (info.delegated, info.state),
        (u256(5_000), WorkerState::Inactive)
    );
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
            distributed: u256(1_200),
            reward_per_weight: acc,
        })],
    );
    s.assert_invariants("funded").await;
}

#[tokio::test]
async fn notify_reward_with_no_weight_waits_for_the_next_notification() {
    let s = System::deploy().await.unwrap();
    s.send(s.pool_as(Actor::Attacker).notify_reward(&u256(300)))
        .await
        .unwrap();
    s.worker(Actor::WorkerA, &h100(), 8_000).await;
    assert_eq!(pending(&s, Actor::WorkerA).await, 0);
    s.send(s.pool_as(Actor::Attacker).notify_reward(&u256(100)))
        .await
        .unwrap();
    assert_eq!(
        pending(&s, Actor::WorkerA).await,
        400,
        "what waited is distributed too"
    );
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
    s.send(s.pool_as(Actor::Attacker).notify_reward(&u256(500)))
        .await
        .unwrap();
    s.worker(Actor::WorkerB, &h100(), 1_000).await;
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
    // Given WorkerA (1,000 own, 10% commission) and a 1,000 delegation
    let s = System::deploy().await.unwrap();
    s.worker(Actor::WorkerA, &h100(), 1_000).await;
    s.send(s.pool_as(Actor::WorkerA).set_commission(&1_000))
        .await
        .unwrap();
    s.send(
        s.pool_as(Actor::Delegator)
            .delegate(&s.addr(Actor::WorkerA), &u256(1_000)),
    )
    .await
    .unwrap();
    // When 1,000 arrives, the commission rises to 20%, then 1,000 more arrives
    s.send(s.pool_as(Actor::Attacker).notify_reward(&u256(1_000)))
        .await
        .unwrap();
    s.send(s.pool_as(Actor::WorkerA).set_commission(&2_000))
        .await
        .unwrap();
    s.send(s.pool_as(Actor::Attacker).notify_reward(&u256(1_000)))
        .await
        .unwrap();
    // Then the delegator got 450 + 400, the worker 500 + 50 + 500 + 100
    assert_eq!(pending(&s, Actor::Delegator).await, 850);
    assert_eq!(pending(&s, Actor::WorkerA).await, 1_150);
}

#[tokio::test]
async fn claim_rewards_pays_and_resets_and_rejects_nothing_to_claim() {
    let s = System::deploy().await.unwrap();
    s.worker(Actor::WorkerA, &h100(), 1_000).await;
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
// reputation
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn record_outcome_moves_the_score_by_the_documented_formula() {
    let s = System::deploy().await.unwrap();
    admin_as_job_manager(&s).await;
    s.worker(Actor::WorkerA, &h100(), 0).await;
    let jm = s.pool_as(Actor::Admin);
    let worker = s.addr(Actor::WorkerA);
    // success: score += (10,000 − score) / 8; latency average starts at the first success
    let out = s
        .send(jm.record_outcome(&worker, &Outcome::Success, &40))
        .await
        .unwrap();
    assert_events(
        &out,
        s.pool,
        &[cdc_pool::Event::OutcomeRecorded(OutcomeRecorded {
            worker,
            outcome: Outcome::Success,
            latency: 40,
            score: 5_625,
        })],
    );
    // success again: latency average moves an eighth of the way (40 → 40 + (120 − 40)/8 = 50)
    s.send(jm.record_outcome(&worker, &Outcome::Success, &120))
        .await
        .unwrap();
    // failure: score −= score / 8; miss: score −= score / 16
    s.send(jm.record_outcome(&worker, &Outcome::Failure, &0))
        .await
        .unwrap();
    s.send(jm.record_outcome(&worker, &Outcome::Missed, &0))
        .await
        .unwrap();
    let rep = s.worker_info(Actor::WorkerA).await.reputation;
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
}

#[tokio::test]
async fn record_outcome_is_for_the_job_manager_only_on_registered_workers() {
    let s = System::deploy().await.unwrap();
    assert_reverts(
        s.send(s.pool_as(Actor::Attacker).record_outcome(
            &s.addr(Actor::Attacker),
            &Outcome::Success,
            &1,
        ))
        .await,
        "GOV: caller is missing role",
    );
    admin_as_job_manager(&s).await;
    assert_reverts(
        s.send(s.pool_as(Actor::Admin).record_outcome(
            &s.addr(Actor::WorkerA),
            &Outcome::Success,
            &1,
        ))
        .await,
        "POOL: worker not registered",
    );
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
        ))
        .await
        .unwrap();
    let cut = MIN_STAKE[3] * u128::from(SLASH_BPS[4]) / 10_000;
    let share = cut * u128::from(BENEFICIARY_SHARE_BPS) / 10_000;
    assert_eq!(s.balance_of(Actor::Submitter).await, FUNDS + share);
    assert_eq!(s.balance_of(TREASURY).await, cut - share);
    let slash = call(s.pool_reader().get_slash(&1)).await.unwrap();
    assert_eq!(
        (slash.status, slash.amount, slash.bps),
        (SlashStatus::Executed, u256(cut), SLASH_BPS[4])
    );
    let events: Vec<cdc_pool::Event> = ciro_tests::assert::decoded_events(&out, s.pool);
    assert!(
        events.contains(&cdc_pool::Event::SlashExecuted(SlashExecuted {
            slash_id: 1,
            worker,
            amount: u256(cut),
            to_beneficiary: u256(share),
            to_treasury: u256(cut - share),
        }))
    );
    s.assert_invariants("slashed").await;
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
async fn slash_by_the_slasher_is_pending_with_a_challenge_window() {
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
        ))
        .await
        .unwrap();
    let slash = call(s.pool_reader().get_slash(&1)).await.unwrap();
    assert_eq!((slash.status, slash.bps), (SlashStatus::Pending, 250));
    assert_eq!(s.worker_info(Actor::WorkerA).await.record.pending_slash, 1);
    assert_eq!(
        s.worker_info(Actor::WorkerA).await.stake,
        u256(MIN_STAKE[3]),
        "nothing cut yet"
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
    assert_reverts(
        s.send(
            s.pool_as(SLASHER)
                .slash(&worker, &SlashReason::Fraud, &0, &felt(4), &nobody()),
        )
        .await,
        "POOL: slash pending",
    );
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
    let slasher = s.pool_as(SLASHER);
    s.send(slasher.slash(
        &s.addr(Actor::WorkerA),
        &SlashReason::Unavailable,
        &0,
        &felt(1),
        &nobody(),
    ))
    .await
    .unwrap();
    s.send(slasher.slash(
        &s.addr(Actor::WorkerB),
        &SlashReason::Unavailable,
        &0,
        &felt(1),
        &nobody(),
    ))
    .await
    .unwrap();
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
    assert_eq!(
        call(s.pool_reader().get_slash(&1)).await.unwrap().status,
        SlashStatus::Challenged
    );
    assert_eq!(
        call(s.pool_reader().totals()).await.unwrap().bonds,
        u256(CHALLENGE_BOND)
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
    assert_eq!(
        call(s.pool_reader().get_slash(&1)).await.unwrap().status,
        SlashStatus::Executed
    );
    let events: Vec<cdc_pool::Event> = ciro_tests::assert::decoded_events(&out, s.pool);
    assert_eq!(
        events[0],
        cdc_pool::Event::SlashResolved(SlashResolved {
            slash_id: 1,
            upheld: true
        })
    );
    s.assert_invariants("upheld").await;
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
async fn record_outcomes_applies_the_formula_count_times() {
    let s = System::deploy().await.unwrap();
    admin_as_job_manager(&s).await;
    s.worker(Actor::WorkerA, &h100(), 0).await;
    s.worker(Actor::WorkerB, &h100(), 0).await;
    let jm = s.pool_as(Actor::Admin);
    // Three outcomes at once equal three single ones.
    s.send(jm.record_outcomes(&s.addr(Actor::WorkerA), &Outcome::Success, &3, &60))
        .await
        .unwrap();
    for _ in 0..3 {
        s.send(jm.record_outcome(&s.addr(Actor::WorkerB), &Outcome::Success, &60))
            .await
            .unwrap();
    }
    let (a, b) = (
        s.worker_info(Actor::WorkerA).await.reputation,
        s.worker_info(Actor::WorkerB).await.reputation,
    );
    assert_eq!(
        (a.completed, a.score, a.avg_latency),
        (b.completed, b.score, b.avg_latency)
    );
    assert_eq!(a.completed, 3);
    assert_reverts(
        s.send(jm.record_outcomes(&s.addr(Actor::WorkerA), &Outcome::Success, &0, &1))
            .await,
        "POOL: amount is zero",
    );
    assert_reverts(
        s.send(s.pool_as(Actor::Attacker).record_outcomes(
            &s.addr(Actor::WorkerA),
            &Outcome::Failure,
            &1,
            &1,
        ))
        .await,
        "GOV: caller is missing role",
    );
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
