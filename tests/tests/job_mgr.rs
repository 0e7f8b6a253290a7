//! Specification of JobMgr: the model registry, jobs and escrow, assignment against the CDC
//! Pool, results, payment, expiry, disputes, parameters and views. Each test reads given /
//! when / then; every revert is asserted by its exact error string, state changes by their
//! decoded events. Whole stories are in `flows.rs`.

use ciro_chain::bindings::cdc_pool::SlashStatus;
use ciro_chain::bindings::job_mgr::{
    self, Assignment, AssignmentSkipped, DisputeOpened, DisputeResolved, FinalizeSkipped,
    JobAssigned, JobCancelled, JobExpired, JobFinalized, JobReleased, JobState, ModelActiveSet,
    ModelSet, ParamsCancelled, ParamsScheduled, ParamsSet, ResultSubmitted,
};
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

const FEE_CUT: u128 = JOB_FEE * PROTOCOL_FEE_BPS as u128 / 10_000;

async fn deadline_in(s: &System, seconds: u64) -> u64 {
    s.net.now().await.unwrap() + seconds
}

// ---------------------------------------------------------------------------------------
// constructor and parameters
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn constructor_sets_admin_token_pool_and_params() {
    let s = System::deploy().await.unwrap();
    let r = s.jobs_reader();
    assert_eq!(call(r.admin()).await.unwrap(), s.addr(Actor::Admin));
    assert_eq!(call(r.token()).await.unwrap(), ContractAddress(s.token));
    assert_eq!(call(r.pool()).await.unwrap(), ContractAddress(s.pool));
    assert_eq!(call(r.get_params()).await.unwrap(), job_params());
    assert_eq!(call(r.job_count()).await.unwrap(), 0);
    assert_eq!(call(r.model_count()).await.unwrap(), 0);
}

#[tokio::test]
async fn constructor_rejects_a_zero_token_or_pool() {
    let net = TestNet::new().await.unwrap();
    let token = deploy_test_token(&net, 0).await.unwrap();
    assert_reverts(
        try_deploy_job_mgr(&net, Felt::ZERO, token, &job_params()).await,
        "JM: zero address",
    );
    assert_reverts(
        try_deploy_job_mgr(&net, token, Felt::ZERO, &job_params()).await,
        "JM: zero address",
    );
}

#[tokio::test]
async fn constructor_rejects_parameters_out_of_bounds() {
    let net = TestNet::new().await.unwrap();
    let token = deploy_test_token(&net, 0).await.unwrap();
    let params = job_mgr::JobParams {
        protocol_fee_bps: 1_001,
        ..job_params()
    };
    assert_reverts(
        try_deploy_job_mgr(&net, token, token, &params).await,
        "JM: protocol fee over 10%",
    );
}

fn new_params() -> job_mgr::JobParams {
    job_mgr::JobParams {
        protocol_fee_bps: 1_000,
        min_fee: u256(1),
        challenge_window: 60,
        assignment_timeout: 86_400,
        min_dispute_bond: u256(1),
        dispute_bond_bps: 10_000,
        max_job_duration: 2_592_000,
        arbitration_window: 2_592_000,
        max_dispute_slash_bps: 10_000,
        max_award_multiple: 100,
        min_rated_fee: u256(0),
    }
}

#[tokio::test]
async fn schedule_params_then_execute_after_the_timelock_replaces_the_parameters() {
    let s = System::deploy().await.unwrap();
    let params = new_params();
    let admin = s.jobs_as(Actor::Admin);
    let scheduled = s.send(admin.schedule_params(&params)).await.unwrap();
    let pending = call(s.jobs_reader().pending_params()).await.unwrap().1;
    let ready_at = s.read_back(pending, UPGRADE_DELAY).await;
    assert_events(
        &scheduled,
        s.job_mgr,
        &[job_mgr::Event::ParamsScheduled(ParamsScheduled {
            params: params.clone(),
            ready_at,
        })],
    );
    assert_eq!(
        call(s.jobs_reader().pending_params()).await.unwrap(),
        (params.clone(), ready_at)
    );
    // Nothing changes until the delay has passed.
    assert_eq!(
        call(s.jobs_reader().get_params()).await.unwrap(),
        job_params()
    );
    s.advance(UPGRADE_DELAY).await;
    let out = s.send(admin.execute_params()).await.unwrap();
    assert_eq!(
        call(s.jobs_reader().get_params()).await.unwrap(),
        params.clone()
    );
    assert_events(
        &out,
        s.job_mgr,
        &[job_mgr::Event::ParamsSet(ParamsSet { params })],
    );
    assert_eq!(call(s.jobs_reader().pending_params()).await.unwrap().1, 0);
}

#[tokio::test]
async fn attack_admin_cannot_change_parameters_without_the_timelock() {
    let s = System::deploy().await.unwrap();
    let admin = s.jobs_as(Actor::Admin);
    // Executing with nothing scheduled, or before the delay, is refused.
    assert_reverts(s.send(admin.execute_params()).await, "GOV: not scheduled");
    s.send(admin.schedule_params(&new_params())).await.unwrap();
    s.advance(UPGRADE_DELAY - 10).await;
    assert_reverts(
        s.send(admin.execute_params()).await,
        "GOV: timelock not passed",
    );
    // A second schedule restarts the delay rather than inheriting the first one's.
    s.send(admin.schedule_params(&new_params())).await.unwrap();
    s.advance(20).await;
    assert_reverts(
        s.send(admin.execute_params()).await,
        "GOV: timelock not passed",
    );
    assert_eq!(
        call(s.jobs_reader().get_params()).await.unwrap(),
        job_params()
    );
}

#[tokio::test]
async fn cancel_params_drops_the_scheduled_change() {
    let s = System::deploy().await.unwrap();
    let admin = s.jobs_as(Actor::Admin);
    assert_reverts(s.send(admin.cancel_params()).await, "GOV: not scheduled");
    let params = new_params();
    s.send(admin.schedule_params(&params)).await.unwrap();
    let out = s.send(admin.cancel_params()).await.unwrap();
    assert_events(
        &out,
        s.job_mgr,
        &[job_mgr::Event::ParamsCancelled(ParamsCancelled { params })],
    );
    s.advance(UPGRADE_DELAY).await;
    assert_reverts(s.send(admin.execute_params()).await, "GOV: not scheduled");
}

#[tokio::test]
async fn parameter_changes_reject_a_caller_who_is_not_admin() {
    let s = System::deploy().await.unwrap();
    let attacker = s.jobs_as(Actor::Attacker);
    assert_reverts(
        s.send(attacker.schedule_params(&job_params())).await,
        "GOV: caller is not admin",
    );
    s.send(s.jobs_as(Actor::Admin).schedule_params(&job_params()))
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
    let p = job_params;
    let cases: Vec<(job_mgr::JobParams, &str)> = vec![
        (
            job_mgr::JobParams {
                protocol_fee_bps: 1_001,
                ..p()
            },
            "JM: protocol fee over 10%",
        ),
        (
            job_mgr::JobParams {
                min_fee: u256(1_000_000_000_000_000_000_000_001),
                ..p()
            },
            "JM: min fee out of bounds",
        ),
        (
            job_mgr::JobParams {
                challenge_window: 59,
                ..p()
            },
            "JM: challenge window bounds",
        ),
        (
            job_mgr::JobParams {
                challenge_window: 604_801,
                ..p()
            },
            "JM: challenge window bounds",
        ),
        (
            job_mgr::JobParams {
                assignment_timeout: 59,
                ..p()
            },
            "JM: assignment timeout bounds",
        ),
        (
            job_mgr::JobParams {
                assignment_timeout: 86_401,
                ..p()
            },
            "JM: assignment timeout bounds",
        ),
        (
            job_mgr::JobParams {
                min_dispute_bond: u256(0),
                ..p()
            },
            "JM: dispute bond out of bounds",
        ),
        (
            job_mgr::JobParams {
                min_dispute_bond: u256(1_000_000_000_000_000_000_000_001),
                ..p()
            },
            "JM: dispute bond out of bounds",
        ),
        (
            job_mgr::JobParams {
                dispute_bond_bps: 10_001,
                ..p()
            },
            "JM: bond bps out of bounds",
        ),
        (
            job_mgr::JobParams {
                max_job_duration: 3_599,
                ..p()
            },
            "JM: max duration out of bounds",
        ),
        (
            job_mgr::JobParams {
                max_job_duration: 2_592_001,
                ..p()
            },
            "JM: max duration out of bounds",
        ),
        (
            job_mgr::JobParams {
                arbitration_window: 3_599,
                ..p()
            },
            "JM: arbitration window bounds",
        ),
        (
            job_mgr::JobParams {
                arbitration_window: 2_592_001,
                ..p()
            },
            "JM: arbitration window bounds",
        ),
        (
            job_mgr::JobParams {
                max_dispute_slash_bps: 10_001,
                ..p()
            },
            "JM: max slash bps out of bounds",
        ),
        (
            job_mgr::JobParams {
                max_award_multiple: 101,
                ..p()
            },
            "JM: award multiple over 100",
        ),
        (
            job_mgr::JobParams {
                min_rated_fee: u256(1_000_000_000_000_000_000_000_001),
                ..p()
            },
            "JM: rated fee out of bounds",
        ),
    ];
    for (params, error) in cases {
        assert_reverts(
            s.send(s.jobs_as(Actor::Admin).schedule_params(&params))
                .await,
            error,
        );
    }
}

#[tokio::test]
async fn governance_is_hosted_roles_are_admin_only() {
    let s = System::deploy().await.unwrap();
    assert!(call(
        s.jobs_reader()
            .has_role(&role(roles::COORDINATOR), &s.addr(Actor::Coordinator))
    )
    .await
    .unwrap());
    assert_reverts(
        s.send(
            s.jobs_as(Actor::Attacker)
                .grant_role(&role(roles::COORDINATOR), &s.addr(Actor::Attacker)),
        )
        .await,
        "GOV: caller is not admin",
    );
    assert_reverts(
        s.send(s.jobs_as(Actor::Attacker).pause()).await,
        "GOV: caller is missing role",
    );
}

// ---------------------------------------------------------------------------------------
// model registry
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn register_model_stores_the_model_owned_by_the_caller_and_emits_model_set() {
    let s = System::deploy().await.unwrap();
    let out = s
        .send(
            s.jobs_as(Actor::WorkerC)
                .register_model(&u256(0xabc), &requirements(), &u256(7)),
        )
        .await
        .unwrap();
    let model = call(s.jobs_reader().get_model(&1)).await.unwrap();
    assert_eq!(
        model,
        job_mgr::Model {
            owner: s.addr(Actor::WorkerC),
            model_hash: u256(0xabc),
            requirements: requirements(),
            price: u256(7),
            active: true,
        }
    );
    assert_events(
        &out,
        s.job_mgr,
        &[job_mgr::Event::ModelSet(ModelSet {
            model_id: 1,
            owner: s.addr(Actor::WorkerC),
            model_hash: u256(0xabc),
            requirements: requirements(),
            price: u256(7),
        })],
    );
}

#[tokio::test]
async fn register_model_rejects_a_zero_hash() {
    let s = System::deploy().await.unwrap();
    assert_reverts(
        s.send(
            s.jobs_as(Actor::Admin)
                .register_model(&u256(0), &requirements(), &u256(1)),
        )
        .await,
        "JM: zero model hash",
    );
}

#[tokio::test]
async fn register_model_rejects_a_stake_tier_above_3() {
    let s = System::deploy().await.unwrap();
    let req = job_mgr::Requirements {
        min_stake_tier: 4,
        ..requirements()
    };
    assert_reverts(
        s.send(
            s.jobs_as(Actor::Admin)
                .register_model(&u256(1), &req, &u256(1)),
        )
        .await,
        "JM: stake tier out of bounds",
    );
}

#[tokio::test]
async fn register_and_update_model_reject_unknown_flags_and_scores_over_10000() {
    let s = System::deploy().await.unwrap();
    let admin = s.jobs_as(Actor::Admin);
    let unknown_flag = job_mgr::Requirements {
        required_flags: 32,
        ..requirements()
    };
    let too_high = job_mgr::Requirements {
        min_score: 10_001,
        ..requirements()
    };
    assert_reverts(
        s.send(admin.register_model(&u256(1), &unknown_flag, &u256(1)))
            .await,
        "JM: unknown capability flag",
    );
    assert_reverts(
        s.send(admin.register_model(&u256(1), &too_high, &u256(1)))
            .await,
        "JM: min score out of bounds",
    );
    let model = s.model().await;
    assert_reverts(
        s.send(admin.update_model(&model, &unknown_flag, &u256(1)))
            .await,
        "JM: unknown capability flag",
    );
    assert_reverts(
        s.send(admin.update_model(&model, &too_high, &u256(1)))
            .await,
        "JM: min score out of bounds",
    );
}

#[tokio::test]
async fn update_model_replaces_requirements_and_price_for_the_owner() {
    let s = System::deploy().await.unwrap();
    let model = s.model().await;
    let req = job_mgr::Requirements {
        min_vram_mb: 40_960,
        required_flags: FLAG_CUDA | FLAG_BF16,
        min_stake_tier: 2,
        min_score: 6_000,
    };
    let out = s
        .send(
            s.jobs_as(Actor::Admin)
                .update_model(&model, &req, &u256(300)),
        )
        .await
        .unwrap();
    let stored = call(s.jobs_reader().get_model(&model)).await.unwrap();
    assert_eq!(
        (stored.requirements, stored.price),
        (req.clone(), u256(300))
    );
    assert_events(
        &out,
        s.job_mgr,
        &[job_mgr::Event::ModelSet(ModelSet {
            model_id: model,
            owner: s.addr(Actor::Admin),
            model_hash: u256(0x5eed),
            requirements: req,
            price: u256(300),
        })],
    );
}

#[tokio::test]
async fn update_model_rejects_a_caller_who_is_not_the_owner() {
    let s = System::deploy().await.unwrap();
    let model = s.model().await;
    assert_reverts(
        s.send(
            s.jobs_as(Actor::Attacker)
                .update_model(&model, &requirements(), &u256(0)),
        )
        .await,
        "JM: not the model owner",
    );
}

#[tokio::test]
async fn update_model_rejects_an_unknown_model_and_a_stake_tier_above_3() {
    let s = System::deploy().await.unwrap();
    assert_reverts(
        s.send(
            s.jobs_as(Actor::Admin)
                .update_model(&9, &requirements(), &u256(0)),
        )
        .await,
        "JM: unknown model",
    );
    let model = s.model().await;
    let req = job_mgr::Requirements {
        min_stake_tier: 9,
        ..requirements()
    };
    assert_reverts(
        s.send(s.jobs_as(Actor::Admin).update_model(&model, &req, &u256(0)))
            .await,
        "JM: stake tier out of bounds",
    );
}

#[tokio::test]
async fn set_model_active_closes_and_reopens_a_model_for_owner_or_admin() {
    let s = System::deploy().await.unwrap();
    s.send(
        s.jobs_as(Actor::WorkerC)
            .register_model(&u256(1), &requirements(), &u256(1)),
    )
    .await
    .unwrap();
    // The owner closes it; the admin reopens it.
    let out = s
        .send(s.jobs_as(Actor::WorkerC).set_model_active(&1, &false))
        .await
        .unwrap();
    assert!(!call(s.jobs_reader().get_model(&1)).await.unwrap().active);
    assert_events(
        &out,
        s.job_mgr,
        &[job_mgr::Event::ModelActiveSet(ModelActiveSet {
            model_id: 1,
            active: false,
        })],
    );
    s.send(s.jobs_as(Actor::Admin).set_model_active(&1, &true))
        .await
        .unwrap();
    assert!(call(s.jobs_reader().get_model(&1)).await.unwrap().active);
}

#[tokio::test]
async fn set_model_active_rejects_anyone_else_and_unknown_models() {
    let s = System::deploy().await.unwrap();
    let model = s.model().await;
    assert_reverts(
        s.send(s.jobs_as(Actor::Attacker).set_model_active(&model, &false))
            .await,
        "GOV: caller is not admin",
    );
    assert_reverts(
        s.send(s.jobs_as(Actor::Admin).set_model_active(&7, &false))
            .await,
        "JM: unknown model",
    );
}

#[tokio::test]
async fn get_model_rejects_an_unknown_id() {
    let s = System::deploy().await.unwrap();
    assert_reverts(
        call(s.jobs_reader().get_model(&0)).await,
        "JM: unknown model",
    );
    assert_reverts(
        call(s.jobs_reader().get_model(&1)).await,
        "JM: unknown model",
    );
}

#[tokio::test]
async fn list_models_pages_in_id_order_and_bounds_the_limit() {
    let s = System::deploy().await.unwrap();
    for _ in 0..3 {
        s.model().await;
    }
    let page = call(s.jobs_reader().list_models(&1, &5)).await.unwrap();
    assert_eq!(
        page.iter().map(|m| m.model_id).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert!(call(s.jobs_reader().list_models(&3, &5))
        .await
        .unwrap()
        .is_empty());
    assert_reverts(
        call(s.jobs_reader().list_models(&0, &101)).await,
        "JM: limit out of bounds",
    );
}

// ---------------------------------------------------------------------------------------
// submit_job / cancel_job
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn submit_job_pulls_fee_into_escrow_and_queues_the_job() {
    let s = System::deploy().await.unwrap();
    let model = s.model().await;
    let deadline = deadline_in(&s, 3_600).await;
    let out = s
        .send(s.jobs_as(Actor::Submitter).submit_job(
            &model,
            &u256(0x1a),
            &u256(JOB_FEE),
            &deadline,
            &no_options(),
        ))
        .await
        .unwrap();
    assert_eq!(s.balance(s.job_mgr).await, JOB_FEE);
    assert_eq!(s.balance_of(Actor::Submitter).await, FUNDS - JOB_FEE);
    let info = s.job_info(1).await;
    assert_eq!(info.job.state, JobState::Queued);
    assert_eq!(info.job.submitter, s.addr(Actor::Submitter));
    assert_eq!(
        (info.job.fee, info.job.deadline, info.job.input_hash),
        (u256(JOB_FEE), deadline, u256(0x1a))
    );
    assert_events(
        &out,
        s.job_mgr,
        &[job_mgr::Event::JobSubmitted(job_mgr::JobSubmitted {
            job_id: 1,
            submitter: s.addr(Actor::Submitter),
            model_id: model,
            input_hash: u256(0x1a),
            fee: u256(JOB_FEE),
            deadline,
            items: 1,
            requirements: requirements(),
            terms: terms_for(JOB_FEE),
            dispute_bond: u256(DISPUTE_BOND),
        })],
    );
    assert_eq!(
        (info.terms, info.requirements, info.dispute_bond, info.items),
        (terms_for(JOB_FEE), requirements(), u256(DISPUTE_BOND), 1)
    );
    assert_eq!(
        call(s.jobs_reader().totals()).await.unwrap(),
        (u256(JOB_FEE), u256(0))
    );
}

#[tokio::test]
async fn submit_job_narrows_the_requirements_with_the_submitters_options() {
    let s = System::deploy().await.unwrap();
    let model = s.model().await;
    let options = job_mgr::JobOptions {
        min_vram_mb: 40_960,
        extra_flags: FLAG_TEE,
        min_stake_tier: 2,
        min_score: 7_000,
        release_after: 7_200,
    };
    let job = s.job_with(model, Actor::Submitter, JOB_FEE, &options).await;
    let info = s.job_info(job).await;
    assert_eq!(
        info.requirements,
        job_mgr::Requirements {
            min_vram_mb: 40_960,
            required_flags: FLAG_CUDA | FLAG_FP16 | FLAG_TEE,
            min_stake_tier: 2,
            min_score: 7_000,
        }
    );
    assert_eq!(info.terms.release_after, 7_200);
    // Options below the model's widen nothing: the model's 16 GB stays.
    let lower = job_mgr::JobOptions {
        min_vram_mb: 8_192,
        ..no_options()
    };
    let job = s.job_with(model, Actor::Submitter, JOB_FEE, &lower).await;
    assert_eq!(s.job_info(job).await.requirements, requirements());
}

/// The attack: a model owner watches for a large submission on its model and lowers the
/// model's VRAM and stake-tier requirements just before it lands, so that the job may go to a
/// worker with less memory or less stake to slash than the submitter chose the model for. A
/// submitter that passes the requirements it read (as `ciro job submit` does) keeps them.
#[tokio::test]
async fn attack_a_model_owner_lowering_its_requirements_cannot_reach_a_submission_that_pinned_them()
{
    // Given a model needing 40 GB and stake tier 3, as the submitter reads it,
    let s = System::deploy().await.unwrap();
    let read = job_mgr::Requirements {
        min_vram_mb: 40_960,
        min_stake_tier: 3,
        ..requirements()
    };
    s.send(
        s.jobs_as(Actor::Admin)
            .register_model(&u256(7), &read, &u256(MODEL_PRICE)),
    )
    .await
    .unwrap();
    let pinned = job_mgr::JobOptions {
        min_vram_mb: read.min_vram_mb,
        extra_flags: read.required_flags,
        min_stake_tier: read.min_stake_tier,
        min_score: read.min_score,
        ..no_options()
    };
    // when its owner lowers them to 8 GB and tier 0 before the submission lands,
    s.send(s.jobs_as(Actor::Admin).update_model(
        &1,
        &requirements_at(8_192, 0),
        &u256(MODEL_PRICE),
    ))
    .await
    .unwrap();
    let job = s.job_with(1, Actor::Submitter, JOB_FEE, &pinned).await;
    // then the job keeps what the submitter read, and a small, lightly staked worker cannot
    // take it,
    assert_eq!(s.job_info(job).await.requirements, read);
    s.worker(Actor::WorkerB, &small_gpu(), MIN_STAKE[0]).await;
    assert_reverts(
        s.send(
            s.jobs_as(Actor::Coordinator)
                .assign_job(&job, &s.addr(Actor::WorkerB)),
        )
        .await,
        "JM: worker not eligible",
    );
    // while a job that did not pin them takes the model's new ones.
    let unpinned = s.job(1).await;
    assert_eq!(
        s.job_info(unpinned).await.requirements,
        requirements_at(8_192, 0)
    );
    s.send(
        s.jobs_as(Actor::Coordinator)
            .assign_job(&unpinned, &s.addr(Actor::WorkerB)),
    )
    .await
    .unwrap();
}

fn requirements_at(min_vram_mb: u32, min_stake_tier: u8) -> job_mgr::Requirements {
    job_mgr::Requirements {
        min_vram_mb,
        min_stake_tier,
        ..requirements()
    }
}

#[tokio::test]
async fn submit_job_scales_the_dispute_bond_with_the_fee_and_floors_it() {
    let s = System::deploy().await.unwrap();
    let model = s.model().await; // price 100
                                 // 10% of 100 is 10: the floor of 50 applies. 10% of 10,000 is 1,000.
    let cheap = s
        .job_with(model, Actor::Submitter, 100, &no_options())
        .await;
    let dear = s
        .job_with(model, Actor::Submitter, 10_000, &no_options())
        .await;
    assert_eq!(s.job_info(cheap).await.dispute_bond, u256(MIN_DISPUTE_BOND));
    assert_eq!(s.job_info(dear).await.dispute_bond, u256(1_000));
    assert_eq!(bond_for(100), MIN_DISPUTE_BOND);
}

#[tokio::test]
async fn submit_job_rejects_unknown_flags_stake_tiers_over_3_scores_over_10000_and_release_limits_out_of_bounds(
) {
    let s = System::deploy().await.unwrap();
    let model = s.model().await;
    let deadline = deadline_in(&s, 600).await;
    let jobs = s.jobs_as(Actor::Submitter);
    let cases = [
        (
            job_mgr::JobOptions {
                extra_flags: 64,
                ..no_options()
            },
            "JM: unknown capability flag",
        ),
        (
            job_mgr::JobOptions {
                min_stake_tier: 4,
                ..no_options()
            },
            "JM: stake tier out of bounds",
        ),
        (
            job_mgr::JobOptions {
                min_score: 10_001,
                ..no_options()
            },
            "JM: min score out of bounds",
        ),
        (
            job_mgr::JobOptions {
                release_after: 59,
                ..no_options()
            },
            "JM: release limit out of bounds",
        ),
        (
            job_mgr::JobOptions {
                release_after: ASSIGNMENT_TIMEOUT - 1,
                ..no_options()
            },
            "JM: release limit out of bounds",
        ),
        (
            job_mgr::JobOptions {
                release_after: 86_401,
                ..no_options()
            },
            "JM: release limit out of bounds",
        ),
    ];
    for (options, error) in cases {
        assert_reverts(
            s.send(jobs.submit_job(&model, &u256(1), &u256(JOB_FEE), &deadline, &options))
                .await,
            error,
        );
    }
}

#[tokio::test]
async fn attack_parameter_and_model_changes_do_not_reach_jobs_already_escrowed() {
    // Given a TEE model with jobs escrowed under today's terms,
    let s = System::deploy().await.unwrap();
    let tee = job_mgr::Requirements {
        required_flags: FLAG_CUDA | FLAG_TEE,
        ..requirements()
    };
    s.send(
        s.jobs_as(Actor::WorkerC)
            .register_model(&u256(7), &tee, &u256(MODEL_PRICE)),
    )
    .await
    .unwrap();
    let deadline = deadline_in(&s, 6 * 3_600).await;
    s.send(s.jobs_as(Actor::Submitter).submit_job(
        &1,
        &u256(1),
        &u256(JOB_FEE),
        &deadline,
        &no_options(),
    ))
    .await
    .unwrap();
    let job = 1;
    // when the model owner drops the TEE flag and the admin shortens the challenge window to
    // its minimum and raises the protocol fee to 10% (through the timelock),
    s.send(
        s.jobs_as(Actor::WorkerC)
            .update_model(&1, &requirements(), &u256(MODEL_PRICE)),
    )
    .await
    .unwrap();
    s.set_job_params(&job_mgr::JobParams {
        challenge_window: 60,
        protocol_fee_bps: 1_000,
        ..job_params()
    })
    .await;
    // then a worker without TEE still cannot take the job,
    s.active_worker(Actor::WorkerA).await; // H100 flags: no TEE
    assert_reverts(
        s.send(
            s.jobs_as(Actor::Coordinator)
                .assign_job(&job, &s.addr(Actor::WorkerA)),
        )
        .await,
        "JM: worker not eligible",
    );
    // and a TEE worker that completes it can be disputed for the whole original window, and
    // is paid at the original protocol fee.
    let tee_gpu = ciro_chain::bindings::cdc_pool::Capabilities {
        flags: FLAG_CUDA | FLAG_FP16 | FLAG_TEE,
        ..h100()
    };
    s.worker(Actor::WorkerB, &tee_gpu, MIN_STAKE[3]).await;
    s.complete(job, Actor::WorkerB).await;
    s.advance(61).await;
    assert_reverts(
        s.send(s.jobs_as(Actor::Attacker).finalize(&job)).await,
        "JM: challenge window open",
    );
    s.advance(RESULT_WINDOW).await;
    let before = s.balance_of(Actor::WorkerB).await;
    s.send(s.jobs_as(Actor::Attacker).finalize(&job))
        .await
        .unwrap();
    assert_eq!(
        s.balance_of(Actor::WorkerB).await - before,
        JOB_FEE - FEE_CUT
    );
    s.assert_invariants("after finalize").await;
}

#[tokio::test]
async fn submit_job_rejects_unknown_and_inactive_models() {
    let s = System::deploy().await.unwrap();
    let deadline = deadline_in(&s, 600).await;
    let jobs = s.jobs_as(Actor::Submitter);
    assert_reverts(
        s.send(jobs.submit_job(&1, &u256(1), &u256(JOB_FEE), &deadline, &no_options()))
            .await,
        "JM: unknown model",
    );
    let model = s.model().await;
    s.send(s.jobs_as(Actor::Admin).set_model_active(&model, &false))
        .await
        .unwrap();
    assert_reverts(
        s.send(jobs.submit_job(&model, &u256(1), &u256(JOB_FEE), &deadline, &no_options()))
            .await,
        "JM: model inactive",
    );
}

#[tokio::test]
async fn submit_job_rejects_a_fee_below_the_model_price_or_the_minimum() {
    let s = System::deploy().await.unwrap();
    let model = s.model().await; // price 100
    let deadline = deadline_in(&s, 600).await;
    let jobs = s.jobs_as(Actor::Submitter);
    assert_reverts(
        s.send(jobs.submit_job(
            &model,
            &u256(1),
            &u256(MODEL_PRICE - 1),
            &deadline,
            &no_options(),
        ))
        .await,
        "JM: fee below model price",
    );
    s.send(
        s.jobs_as(Actor::Admin)
            .register_model(&u256(2), &requirements(), &u256(0)),
    )
    .await
    .unwrap();
    assert_reverts(
        s.send(jobs.submit_job(&2, &u256(1), &u256(MIN_FEE - 1), &deadline, &no_options()))
            .await,
        "JM: fee below minimum",
    );
}

#[tokio::test]
async fn submit_job_rejects_a_deadline_in_the_past_or_beyond_the_max_duration() {
    let s = System::deploy().await.unwrap();
    let model = s.model().await;
    let now = s.net.now().await.unwrap();
    let jobs = s.jobs_as(Actor::Submitter);
    assert_reverts(
        s.send(jobs.submit_job(
            &model,
            &u256(1),
            &u256(JOB_FEE),
            &now.saturating_sub(1),
            &no_options(),
        ))
        .await,
        "JM: deadline not in future",
    );
    assert_reverts(
        s.send(jobs.submit_job(
            &model,
            &u256(1),
            &u256(JOB_FEE),
            &(now + MAX_JOB_DURATION + 100),
            &no_options(),
        ))
        .await,
        "JM: deadline too far",
    );
}

#[tokio::test]
async fn submit_job_rejects_a_token_that_delivers_less_than_the_fee() {
    let s = System::deploy().await.unwrap();
    let model = s.model().await;
    let admin = s.net.account(Actor::Admin);
    send(
        &s.net.provider,
        TestToken::new(s.token, &admin).set_transfer_from_fee(&u256(1)),
    )
    .await
    .unwrap();
    let deadline = deadline_in(&s, 600).await;
    assert_reverts(
        s.send(s.jobs_as(Actor::Submitter).submit_job(
            &model,
            &u256(1),
            &u256(JOB_FEE),
            &deadline,
            &no_options(),
        ))
        .await,
        "JM: transfer_from shortfall",
    );
}

// ---------------------------------------------------------------------------------------
// batches: one job of many inputs
// ---------------------------------------------------------------------------------------

/// Inputs of the batches below.
const ITEMS: u32 = 8;

#[tokio::test]
async fn submit_batch_escrows_the_whole_fee_and_queues_one_job_of_its_items() {
    let s = System::deploy().await.unwrap();
    let model = s.model().await;
    let deadline = deadline_in(&s, 3_600).await;
    let fee = JOB_FEE * u128::from(ITEMS);
    let out = s
        .send(s.jobs_as(Actor::Submitter).submit_batch(
            &model,
            &u256(0xba7c),
            &ITEMS,
            &u256(fee),
            &deadline,
            &no_options(),
        ))
        .await
        .unwrap();
    // One job: one escrow of the whole fee, terms fixed from it (the bond scales with it).
    let bond = fee * u128::from(DISPUTE_BOND_BPS) / 10_000;
    assert_events(
        &out,
        s.job_mgr,
        &[job_mgr::Event::JobSubmitted(job_mgr::JobSubmitted {
            job_id: 1,
            submitter: s.addr(Actor::Submitter),
            model_id: model,
            input_hash: u256(0xba7c),
            fee: u256(fee),
            deadline,
            items: ITEMS,
            requirements: requirements(),
            terms: terms_for(fee),
            dispute_bond: u256(bond),
        })],
    );
    assert_eq!(s.balance(s.job_mgr).await, fee);
    assert_eq!(s.balance_of(Actor::Submitter).await, FUNDS - fee);
    let info = s.job_info(1).await;
    assert_eq!(
        (
            info.items,
            info.job.state,
            info.job.input_hash,
            info.dispute_bond
        ),
        (ITEMS, JobState::Queued, u256(0xba7c), u256(bond))
    );
    assert_eq!(call(s.jobs_reader().job_count()).await.unwrap(), 1);
    assert_eq!(
        call(s.jobs_reader().totals()).await.unwrap(),
        (u256(fee), u256(0))
    );
    // A single job beside it still shows one input.
    let single = s.job(model).await;
    assert_eq!(s.job_info(single).await.items, 1);
}

#[tokio::test]
async fn submit_batch_rejects_fewer_than_2_or_more_than_1000_items() {
    let s = System::deploy().await.unwrap();
    let model = s.model().await;
    let deadline = deadline_in(&s, 600).await;
    let jobs = s.jobs_as(Actor::Submitter);
    for items in [0u32, 1, 1_001] {
        let fee = JOB_FEE * u128::from(items.max(1));
        assert_reverts(
            s.send(jobs.submit_batch(
                &model,
                &u256(1),
                &items,
                &u256(fee),
                &deadline,
                &no_options(),
            ))
            .await,
            "JM: items out of bounds",
        );
    }
    // Both bounds themselves are accepted.
    for items in [2u32, 1_000] {
        let fee = MODEL_PRICE * u128::from(items);
        s.send(jobs.submit_batch(
            &model,
            &u256(1),
            &items,
            &u256(fee),
            &deadline,
            &no_options(),
        ))
        .await
        .unwrap();
    }
    assert_eq!(s.job_info(2).await.items, 1_000);
    assert_eq!(s.balance(s.job_mgr).await, MODEL_PRICE * 1_002);
}

#[tokio::test]
async fn attack_a_batch_cannot_buy_an_input_below_the_model_price_or_the_minimum_fee() {
    // A submitter batching inputs to pay less than a single job would for each is refused:
    // the fee divided by the items must reach both the model's price and the minimum fee.
    let s = System::deploy().await.unwrap();
    let model = s.model().await; // price 100
    let deadline = deadline_in(&s, 600).await;
    let jobs = s.jobs_as(Actor::Submitter);
    let batch = |model: u64, fee: u128| {
        jobs.submit_batch(
            &model,
            &u256(1),
            &ITEMS,
            &u256(fee),
            &deadline,
            &no_options(),
        )
    };
    assert_reverts(
        s.send(batch(model, MODEL_PRICE * u128::from(ITEMS) - 1))
            .await,
        "JM: fee below model price",
    );
    // The price of one input is not enough for the batch either.
    assert_reverts(
        s.send(batch(model, MODEL_PRICE)).await,
        "JM: fee below model price",
    );
    let admin = s.jobs_as(Actor::Admin);
    s.send(admin.register_model(&u256(2), &requirements(), &u256(0)))
        .await
        .unwrap();
    assert_reverts(
        s.send(batch(2, MIN_FEE * u128::from(ITEMS) - 1)).await,
        "JM: fee below minimum",
    );
    // A price whose product with the items would overflow u256 (2^254 × 8) is refused with
    // the price's reason, not an arithmetic panic.
    let huge = ciro_chain::cainome::cairo_serde::U256 {
        low: 0,
        high: 1 << 126,
    };
    s.send(admin.register_model(&u256(3), &requirements(), &huge))
        .await
        .unwrap();
    assert_reverts(s.send(batch(3, FUNDS)).await, "JM: fee below model price");
    assert_eq!(s.balance(s.job_mgr).await, 0);
    // Exactly the price of each input is accepted.
    s.send(batch(model, MODEL_PRICE * u128::from(ITEMS)))
        .await
        .unwrap();
}

#[tokio::test]
async fn submit_batch_rejects_what_submit_job_rejects() {
    let s = System::deploy().await.unwrap();
    let model = s.model().await;
    let now = s.net.now().await.unwrap();
    let jobs = s.jobs_as(Actor::Submitter);
    let fee = u256(JOB_FEE * u128::from(ITEMS));
    let batch = |model: u64, deadline: u64, options: job_mgr::JobOptions| {
        jobs.submit_batch(&model, &u256(1), &ITEMS, &fee, &deadline, &options)
    };
    assert_reverts(
        s.send(batch(9, now + 600, no_options())).await,
        "JM: unknown model",
    );
    assert_reverts(
        s.send(batch(model, now.saturating_sub(1), no_options()))
            .await,
        "JM: deadline not in future",
    );
    assert_reverts(
        s.send(batch(model, now + MAX_JOB_DURATION + 100, no_options()))
            .await,
        "JM: deadline too far",
    );
    assert_reverts(
        s.send(batch(
            model,
            now + 600,
            job_mgr::JobOptions {
                min_stake_tier: 4,
                ..no_options()
            },
        ))
        .await,
        "JM: stake tier out of bounds",
    );
    s.send(s.jobs_as(Actor::Admin).set_model_active(&model, &false))
        .await
        .unwrap();
    assert_reverts(
        s.send(batch(model, now + 600, no_options())).await,
        "JM: model inactive",
    );
    assert_eq!(s.balance(s.job_mgr).await, 0);
}

#[tokio::test]
async fn attack_a_worker_at_fault_on_one_input_loses_the_whole_batch() {
    // A batch is run, paid and judged as one job: the worker commits one output manifest, and
    // a dispute naming one wrong input refunds every input's fee and slashes the worker, the
    // disputer's award capped at the whole batch's fee times the award multiple (not one
    // input's, and not uncapped).
    let s = System::deploy().await.unwrap();
    let model = s.model().await;
    s.active_worker(Actor::WorkerA).await;
    let deadline = deadline_in(&s, 3_600).await;
    let fee = MODEL_PRICE * u128::from(ITEMS); // 800
    s.send(s.jobs_as(Actor::Submitter).submit_batch(
        &model,
        &u256(0xba7c),
        &ITEMS,
        &u256(fee),
        &deadline,
        &no_options(),
    ))
    .await
    .unwrap();
    s.complete(1, Actor::WorkerA).await;
    let bond = (fee * u128::from(DISPUTE_BOND_BPS) / 10_000).max(MIN_DISPUTE_BOND);
    s.send(s.jobs_as(Actor::Submitter).open_dispute(&1, &felt(3)))
        .await
        .unwrap();
    assert_eq!(s.balance(s.job_mgr).await, fee + bond);
    s.send(
        s.jobs_as(Actor::Arbiter)
            .resolve_dispute(&1, &true, &MAX_DISPUTE_SLASH_BPS),
    )
    .await
    .unwrap();
    // Slash 4,000 of 8,000; the beneficiary's share (2,000) is cut to 2 × 800.
    let slash = MIN_STAKE[3] * u128::from(MAX_DISPUTE_SLASH_BPS) / 10_000;
    let cap = fee * u128::from(MAX_AWARD_MULTIPLE);
    assert!(slash * u128::from(BENEFICIARY_SHARE_BPS) / 10_000 > cap);
    assert_eq!(s.job_info(1).await.job.state, JobState::Refunded);
    assert_eq!(s.balance_of(Actor::Submitter).await, FUNDS + cap);
    assert_eq!(s.balance_of(TREASURY).await, slash - cap);
    assert_eq!(s.balance(s.job_mgr).await, 0);
    let worker = s.worker_info(Actor::WorkerA).await;
    assert_eq!(worker.stake, u256(MIN_STAKE[3] - slash));
    assert_eq!(
        (worker.reputation.completed, worker.reputation.failed),
        (0, 1)
    );
    s.assert_invariants("batch refunded").await;
}

#[tokio::test]
async fn cancel_job_refunds_a_queued_job_to_its_submitter() {
    let s = System::deploy().await.unwrap();
    let model = s.model().await;
    let job = s.job(model).await;
    let out = s
        .send(s.jobs_as(Actor::Submitter).cancel_job(&job))
        .await
        .unwrap();
    assert_eq!(s.job_info(job).await.job.state, JobState::Cancelled);
    assert_eq!(s.balance_of(Actor::Submitter).await, FUNDS);
    assert_eq!(s.balance(s.job_mgr).await, 0);
    assert_events(
        &out,
        s.job_mgr,
        &[job_mgr::Event::JobCancelled(JobCancelled {
            job_id: job,
            submitter: s.addr(Actor::Submitter),
            refund: u256(JOB_FEE),
        })],
    );
}

#[tokio::test]
async fn cancel_job_rejects_others_unknown_jobs_and_jobs_not_queued() {
    let s = System::deploy().await.unwrap();
    assert_reverts(
        s.send(s.jobs_as(Actor::Submitter).cancel_job(&1)).await,
        "JM: unknown job",
    );
    let (_, job) = s.assigned_job().await;
    assert_reverts(
        s.send(s.jobs_as(Actor::Attacker).cancel_job(&job)).await,
        "JM: not the submitter",
    );
    assert_reverts(
        s.send(s.jobs_as(Actor::Submitter).cancel_job(&job)).await,
        "JM: job not queued",
    );
}

// ---------------------------------------------------------------------------------------
// assign_job / assign_jobs / release_job
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn assign_job_assigns_an_eligible_worker_and_emits_job_assigned() {
    let s = System::deploy().await.unwrap();
    let model = s.model().await;
    s.active_worker(Actor::WorkerA).await;
    let job = s.job(model).await;
    let out = s
        .send(
            s.jobs_as(Actor::Coordinator)
                .assign_job(&job, &s.addr(Actor::WorkerA)),
        )
        .await
        .unwrap();
    let info = s.job_info(job).await.job;
    assert_eq!(
        (info.state, info.worker),
        (JobState::Assigned, s.addr(Actor::WorkerA))
    );
    assert!(info.assigned_at > 0);
    assert_events(
        &out,
        s.job_mgr,
        &[job_mgr::Event::JobAssigned(JobAssigned {
            job_id: job,
            worker: s.addr(Actor::WorkerA),
        })],
    );
}

#[tokio::test]
async fn assign_job_rejects_a_caller_without_the_coordinator_role() {
    let s = System::deploy().await.unwrap();
    let model = s.model().await;
    s.active_worker(Actor::WorkerA).await;
    let job = s.job(model).await;
    assert_reverts(
        s.send(
            s.jobs_as(Actor::Attacker)
                .assign_job(&job, &s.addr(Actor::WorkerA)),
        )
        .await,
        "GOV: caller is missing role",
    );
}

#[tokio::test]
async fn assign_job_rejects_ineligible_workers() {
    // Given a model needing 16 GB, CUDA+FP16 and stake tier 0, and
    // WorkerA unregistered, WorkerB on 8 GB (tier 0), WorkerC an H100 below its minimum
    let s = System::deploy().await.unwrap();
    let model = s.model().await;
    let job = s.job(model).await;
    s.worker(Actor::WorkerB, &small_gpu(), MIN_STAKE[0]).await;
    s.worker(Actor::WorkerC, &h100(), MIN_STAKE[2]).await;
    let coordinator = s.jobs_as(Actor::Coordinator);
    for worker in [Actor::WorkerA, Actor::WorkerB, Actor::WorkerC] {
        assert_reverts(
            s.send(coordinator.assign_job(&job, &s.addr(worker))).await,
            "JM: worker not eligible",
        );
    }
    // A model requiring TEE rejects an H100 without it (stake tiers: see cdc_pool.rs).
    s.active_worker(Actor::WorkerA).await;
    let tee = job_mgr::Requirements {
        required_flags: FLAG_TEE,
        ..requirements()
    };
    s.send(
        s.jobs_as(Actor::Admin)
            .register_model(&u256(2), &tee, &u256(0)),
    )
    .await
    .unwrap();
    let tee_job = s.job(2).await;
    assert_reverts(
        s.send(coordinator.assign_job(&tee_job, &s.addr(Actor::WorkerA)))
            .await,
        "JM: worker not eligible",
    );
    // A deactivated worker is not eligible either.
    s.send(s.pool_as(Actor::WorkerA).deactivate())
        .await
        .unwrap();
    assert_reverts(
        s.send(coordinator.assign_job(&job, &s.addr(Actor::WorkerA)))
            .await,
        "JM: worker not eligible",
    );
}

#[tokio::test]
async fn assign_job_rejects_a_job_not_queued_or_past_its_deadline() {
    let s = System::deploy().await.unwrap();
    let (model, job) = s.assigned_job().await;
    let coordinator = s.jobs_as(Actor::Coordinator);
    assert_reverts(
        s.send(coordinator.assign_job(&job, &s.addr(Actor::WorkerA)))
            .await,
        "JM: job not queued",
    );
    let late = s.job(model).await;
    s.advance(3_600).await;
    assert_reverts(
        s.send(coordinator.assign_job(&late, &s.addr(Actor::WorkerA)))
            .await,
        "JM: deadline passed",
    );
    assert_reverts(
        s.send(coordinator.assign_job(&99, &s.addr(Actor::WorkerA)))
            .await,
        "JM: unknown job",
    );
}

#[tokio::test]
async fn attack_one_bad_entry_cannot_grief_an_assignment_batch() {
    // Given two queued jobs and two workers, one of which is unregistered (it deactivated or
    // was never there), and a third job a front-runner already got assigned,
    let s = System::deploy().await.unwrap();
    let model = s.model().await;
    s.active_worker(Actor::WorkerA).await;
    s.active_worker(Actor::WorkerB).await;
    let a = s.job(model).await;
    let b = s.job(model).await;
    let c = s.job(model).await;
    let coordinator = s.jobs_as(Actor::Coordinator);
    s.send(coordinator.assign_job(&c, &s.addr(Actor::WorkerB)))
        .await
        .unwrap();
    // when the coordinator sends a batch with those bad entries,
    let batch = vec![
        Assignment {
            job_id: a,
            worker: s.addr(Actor::WorkerA),
        },
        Assignment {
            job_id: b,
            worker: s.addr(Actor::WorkerC),
        },
        Assignment {
            job_id: c,
            worker: s.addr(Actor::WorkerA),
        },
        Assignment {
            job_id: 99,
            worker: s.addr(Actor::WorkerA),
        },
    ];
    let out = s.send(coordinator.assign_jobs(&batch)).await.unwrap();
    // then the good entry goes through and each bad one is skipped with its reason.
    assert_eq!(s.job_info(a).await.job.worker, s.addr(Actor::WorkerA));
    assert_eq!(s.job_info(b).await.job.state, JobState::Queued);
    assert_eq!(s.job_info(c).await.job.worker, s.addr(Actor::WorkerB));
    let reason = |text: &str| role(text);
    assert_events(
        &out,
        s.job_mgr,
        &[
            job_mgr::Event::JobAssigned(JobAssigned {
                job_id: a,
                worker: s.addr(Actor::WorkerA),
            }),
            job_mgr::Event::AssignmentSkipped(AssignmentSkipped {
                job_id: b,
                worker: s.addr(Actor::WorkerC),
                reason: reason("JM: worker not eligible"),
            }),
            job_mgr::Event::AssignmentSkipped(AssignmentSkipped {
                job_id: c,
                worker: s.addr(Actor::WorkerA),
                reason: reason("JM: job not queued"),
            }),
            job_mgr::Event::AssignmentSkipped(AssignmentSkipped {
                job_id: 99,
                worker: s.addr(Actor::WorkerA),
                reason: reason("JM: unknown job"),
            }),
        ],
    );
    // Only the assigned jobs are held against the workers' exits.
    assert_eq!(s.worker_info(Actor::WorkerA).await.record.holds, 1);
    assert_eq!(s.worker_info(Actor::WorkerB).await.record.holds, 1);
}

#[tokio::test]
async fn attack_a_submitter_cannot_work_its_own_job() {
    // Given a worker that submits jobs to itself to farm reputation,
    let s = System::deploy().await.unwrap();
    let model = s.model().await;
    s.active_worker(Actor::WorkerA).await;
    let own = s
        .job_with(model, Actor::WorkerA, JOB_FEE, &no_options())
        .await;
    // then the coordinator cannot assign it to itself, alone or in a batch.
    let coordinator = s.jobs_as(Actor::Coordinator);
    assert_reverts(
        s.send(coordinator.assign_job(&own, &s.addr(Actor::WorkerA)))
            .await,
        "JM: submitter cannot be worker",
    );
    let out = s
        .send(coordinator.assign_jobs(&vec![Assignment {
            job_id: own,
            worker: s.addr(Actor::WorkerA),
        }]))
        .await
        .unwrap();
    assert_events(
        &out,
        s.job_mgr,
        &[job_mgr::Event::AssignmentSkipped(AssignmentSkipped {
            job_id: own,
            worker: s.addr(Actor::WorkerA),
            reason: role("JM: submitter cannot be worker"),
        })],
    );
}

#[tokio::test]
async fn assign_job_requires_the_submitters_minimum_score() {
    let s = System::deploy().await.unwrap();
    let model = s.model().await;
    s.active_worker(Actor::WorkerA).await; // score 5,000
    s.active_worker(Actor::WorkerB).await;
    // WorkerB earns one rated success: 5,625.
    let job = s.job(model).await;
    s.complete(job, Actor::WorkerB).await;
    s.advance(RESULT_WINDOW).await;
    s.send(s.jobs_as(Actor::Submitter).finalize(&job))
        .await
        .unwrap();
    let picky = s
        .job_with(
            model,
            Actor::Submitter,
            JOB_FEE,
            &job_mgr::JobOptions {
                min_score: 5_001,
                ..no_options()
            },
        )
        .await;
    let coordinator = s.jobs_as(Actor::Coordinator);
    assert_reverts(
        s.send(coordinator.assign_job(&picky, &s.addr(Actor::WorkerA)))
            .await,
        "JM: worker not eligible",
    );
    s.send(coordinator.assign_job(&picky, &s.addr(Actor::WorkerB)))
        .await
        .unwrap();
}

#[tokio::test]
async fn assign_jobs_rejects_an_empty_or_oversized_batch() {
    let s = System::deploy().await.unwrap();
    let coordinator = s.jobs_as(Actor::Coordinator);
    assert_reverts(
        s.send(coordinator.assign_jobs(&vec![])).await,
        "JM: empty batch",
    );
    let many = vec![
        Assignment {
            job_id: 1,
            worker: s.addr(Actor::WorkerA)
        };
        101
    ];
    assert_reverts(
        s.send(coordinator.assign_jobs(&many)).await,
        "JM: batch too large",
    );
    assert_reverts(
        s.send(s.jobs_as(Actor::Attacker).assign_jobs(&many)).await,
        "GOV: caller is missing role",
    );
}

#[tokio::test]
async fn release_job_by_the_coordinator_requeues_at_once_and_records_a_miss() {
    let s = System::deploy().await.unwrap();
    let (_, job) = s.assigned_job().await;
    let out = s
        .send(s.jobs_as(Actor::Coordinator).release_job(
            &job,
            &s.addr(Actor::WorkerA),
            &s.assigned_at(job).await,
        ))
        .await
        .unwrap();
    let info = s.job_info(job).await.job;
    assert_eq!((info.state, info.worker), (JobState::Queued, nobody()));
    assert_eq!(s.worker_info(Actor::WorkerA).await.reputation.missed, 1);
    assert_events(
        &out,
        s.job_mgr,
        &[job_mgr::Event::JobReleased(JobReleased {
            job_id: job,
            worker: s.addr(Actor::WorkerA),
            by: s.addr(Actor::Coordinator),
        })],
    );
}

#[tokio::test]
async fn release_job_by_anyone_else_waits_for_the_assignment_timeout() {
    let s = System::deploy().await.unwrap();
    let (_, job) = s.assigned_job().await;
    assert_reverts(
        s.send(s.jobs_as(Actor::Attacker).release_job(
            &job,
            &s.addr(Actor::WorkerA),
            &s.assigned_at(job).await,
        ))
        .await,
        "JM: assignment not timed out",
    );
    s.advance(ASSIGNMENT_TIMEOUT).await;
    s.send(s.jobs_as(Actor::Attacker).release_job(
        &job,
        &s.addr(Actor::WorkerA),
        &s.assigned_at(job).await,
    ))
    .await
    .unwrap();
    assert_eq!(s.job_info(job).await.job.state, JobState::Queued);
}

#[tokio::test]
async fn attack_strangers_cannot_release_a_long_job_before_the_submitters_limit() {
    // Given a job due in 12 hours whose submitter allows 6 hours before anyone may release it,
    let s = System::deploy().await.unwrap();
    let model = s.model().await;
    s.active_worker(Actor::WorkerA).await;
    let deadline = deadline_in(&s, 12 * 3_600).await;
    s.send(s.jobs_as(Actor::Submitter).submit_job(
        &model,
        &u256(1),
        &u256(JOB_FEE),
        &deadline,
        &job_mgr::JobOptions {
            release_after: 6 * 3_600,
            ..no_options()
        },
    ))
    .await
    .unwrap();
    let job = 1;
    s.send(
        s.jobs_as(Actor::Coordinator)
            .assign_job(&job, &s.addr(Actor::WorkerA)),
    )
    .await
    .unwrap();
    // then past the global 10 minutes a stranger still cannot release it,
    s.advance(ASSIGNMENT_TIMEOUT).await;
    assert_reverts(
        s.send(s.jobs_as(Actor::Attacker).release_job(
            &job,
            &s.addr(Actor::WorkerA),
            &s.assigned_at(job).await,
        ))
        .await,
        "JM: assignment not timed out",
    );
    // and can once the submitter's limit has passed.
    s.advance(6 * 3_600 - ASSIGNMENT_TIMEOUT).await;
    s.send(s.jobs_as(Actor::Attacker).release_job(
        &job,
        &s.addr(Actor::WorkerA),
        &s.assigned_at(job).await,
    ))
    .await
    .unwrap();
    assert_eq!(s.worker_info(Actor::WorkerA).await.record.holds, 0);
}

#[tokio::test]
async fn attack_a_submitter_cannot_farm_misses_with_a_deadline_shorter_than_the_release_limit() {
    // Given a job due in 30 minutes whose release limit is an hour (so a worker assigned now
    // could be released or expired before it had the time it is judged against),
    let s = System::deploy().await.unwrap();
    let model = s.model().await;
    s.active_worker(Actor::WorkerA).await;
    let deadline = deadline_in(&s, 1_800).await;
    let options = job_mgr::JobOptions {
        release_after: 3_600,
        ..no_options()
    };
    s.send(s.jobs_as(Actor::Attacker).submit_job(
        &model,
        &u256(1),
        &u256(JOB_FEE),
        &deadline,
        &options,
    ))
    .await
    .unwrap();
    // then nobody can assign it, so no miss or failure can be recorded for it,
    assert_reverts(
        s.send(
            s.jobs_as(Actor::Coordinator)
                .assign_job(&1, &s.addr(Actor::WorkerA)),
        )
        .await,
        "JM: deadline too close",
    );
    // and the submitter only gets its fee back after expiry.
    s.advance(1_801).await;
    s.send(s.jobs_as(Actor::Attacker).expire(&1)).await.unwrap();
    assert_eq!(s.worker_info(Actor::WorkerA).await.reputation.score, 5_000);
    s.assert_invariants("after expiry").await;
}

#[tokio::test]
async fn attack_revoking_job_manager_cannot_strand_escrow_or_exits() {
    // Given a worker with a completed job held against its exit, and a worker on its way out,
    let s = System::deploy().await.unwrap();
    let (_, job) = s.completed_job().await;
    s.send(
        s.pool_as(Actor::WorkerA)
            .unstake_intent(&u256(MIN_STAKE[3])),
    )
    .await
    .unwrap();
    // when the pool admin revokes JOB_MANAGER from JobMgr (instant),
    let pool_admin = s.pool_as(Actor::Admin);
    s.send(pool_admin.revoke_role(&role(roles::JOB_MANAGER), &ContractAddress(s.job_mgr)))
        .await
        .unwrap();
    // then the job still finalizes and pays, its hold is released (the reputation does not
    // move: JobMgr no longer vouches for outcomes),
    s.advance(RESULT_WINDOW).await;
    s.send(s.jobs_as(Actor::Attacker).finalize(&job))
        .await
        .unwrap();
    let info = s.worker_info(Actor::WorkerA).await;
    assert_eq!((info.record.holds, info.reputation.score), (0, 5_000));
    // and the worker's exit is paid after its window.
    s.advance(EXIT_WINDOW).await;
    s.send(
        s.pool_as(Actor::WorkerA)
            .unstake_action(&s.addr(Actor::WorkerA)),
    )
    .await
    .unwrap();
    assert_eq!(
        s.balance_of(Actor::WorkerA).await,
        FUNDS + JOB_FEE - FEE_CUT
    );
    s.assert_invariants("after the exit").await;
}

#[tokio::test]
async fn release_job_rejects_a_job_not_assigned() {
    let s = System::deploy().await.unwrap();
    let model = s.model().await;
    let job = s.job(model).await;
    assert_reverts(
        s.send(s.jobs_as(Actor::Coordinator).release_job(
            &job,
            &s.addr(Actor::WorkerA),
            &s.assigned_at(job).await,
        ))
        .await,
        "JM: job not assigned",
    );
}

#[tokio::test]
async fn attack_a_release_decided_against_one_assignment_cannot_land_on_the_next() {
    // Given a job the coordinator released from WorkerA and then assigned to WorkerB (as a new
    // leader would after a takeover),
    let s = System::deploy().await.unwrap();
    let (_, job) = s.assigned_job().await;
    s.active_worker(Actor::WorkerB).await;
    let coordinator = s.jobs_as(Actor::Coordinator);
    let a_at = s.assigned_at(job).await;
    s.send(coordinator.release_job(&job, &s.addr(Actor::WorkerA), &a_at))
        .await
        .unwrap();
    s.advance(1).await;
    s.send(coordinator.assign_job(&job, &s.addr(Actor::WorkerB)))
        .await
        .unwrap();
    let b_at = s.assigned_at(job).await;
    // when the old leader's release of WorkerA's assignment lands late, or a stranger past the
    // release limit names the wrong worker (with either assignment's time), each is refused,
    for at in [a_at, b_at] {
        assert_reverts(
            s.send(coordinator.release_job(&job, &s.addr(Actor::WorkerA), &at))
                .await,
            "JM: not the assigned worker",
        );
    }
    s.advance(ASSIGNMENT_TIMEOUT).await;
    for at in [a_at, b_at] {
        assert_reverts(
            s.send(
                s.jobs_as(Actor::Attacker)
                    .release_job(&job, &s.addr(Actor::WorkerA), &at),
            )
            .await,
            "JM: not the assigned worker",
        );
    }
    // so WorkerB keeps its assignment and its record: no miss, its hold in place.
    let info = s.job_info(job).await.job;
    assert_eq!(
        (info.state, info.worker),
        (JobState::Assigned, s.addr(Actor::WorkerB))
    );
    let b = s.worker_info(Actor::WorkerB).await;
    assert_eq!((b.reputation.missed, b.record.holds), (0, 1));
    assert_eq!(s.worker_info(Actor::WorkerA).await.reputation.missed, 1);
    s.assert_invariants("after the refused releases").await;
}

#[tokio::test]
async fn attack_a_late_release_cannot_land_on_the_same_workers_next_assignment() {
    // Given a job released from WorkerA and assigned to WorkerA again a second later (a new
    // leader's release and reassignment while the old leader's release is in flight),
    let s = System::deploy().await.unwrap();
    let (_, job) = s.assigned_job().await;
    let coordinator = s.jobs_as(Actor::Coordinator);
    let first = s.assigned_at(job).await;
    s.send(coordinator.release_job(&job, &s.addr(Actor::WorkerA), &first))
        .await
        .unwrap();
    s.advance(1).await;
    s.send(coordinator.assign_job(&job, &s.addr(Actor::WorkerA)))
        .await
        .unwrap();
    let second = s.assigned_at(job).await;
    assert!(second > first, "assignments have increasing times");
    // when the old leader's release of the first assignment lands, or a stranger past the
    // release limit names it, each is refused: it names an assignment that is over,
    assert_reverts(
        s.send(coordinator.release_job(&job, &s.addr(Actor::WorkerA), &first))
            .await,
        "JM: not that assignment",
    );
    s.advance(ASSIGNMENT_TIMEOUT).await;
    for at in [first, second + 1, 0] {
        assert_reverts(
            s.send(
                s.jobs_as(Actor::Attacker)
                    .release_job(&job, &s.addr(Actor::WorkerA), &at),
            )
            .await,
            "JM: not that assignment",
        );
    }
    // so WorkerA keeps its second assignment with one miss on its record (the first's), its
    // hold in place;
    let info = s.job_info(job).await.job;
    assert_eq!(
        (info.state, info.worker, info.assigned_at),
        (JobState::Assigned, s.addr(Actor::WorkerA), second)
    );
    let a = s.worker_info(Actor::WorkerA).await;
    assert_eq!((a.reputation.missed, a.record.holds), (1, 1));
    // and a release naming the second assignment (past its limit) lands.
    s.send(
        s.jobs_as(Actor::Attacker)
            .release_job(&job, &s.addr(Actor::WorkerA), &second),
    )
    .await
    .unwrap();
    let info = s.job_info(job).await.job;
    assert_eq!(
        (info.state, info.worker, info.assigned_at),
        (JobState::Queued, nobody(), 0)
    );
    assert_eq!(s.worker_info(Actor::WorkerA).await.reputation.missed, 2);
    s.assert_invariants("after the releases").await;
}

#[tokio::test]
async fn assign_refuses_a_job_in_the_second_of_its_previous_assignment() {
    // One transaction runs at one block time: the coordinator assigns a job to WorkerA,
    // releases it and assigns it to WorkerB in the same second. Were the second assignment
    // allowed, it would share the first's time and a release of the first could land on it.
    let s = System::deploy().await.unwrap();
    let model = s.model().await;
    s.active_worker(Actor::WorkerA).await;
    s.active_worker(Actor::WorkerB).await;
    let job = s.job(model).await;
    let jm = s.jobs_as(Actor::Coordinator);
    // The transaction runs at the latest block's time (devnet: a block's time is set when it
    // is mined and is the next transaction's clock); were it another, the release would
    // revert with 'JM: not that assignment' and the test fail.
    let now = s.net.now().await.unwrap();
    let reassign = |worker: Actor| {
        vec![
            jm.assign_job_getcall(&job, &s.addr(Actor::WorkerA)),
            jm.release_job_getcall(&job, &s.addr(Actor::WorkerA), &now),
            jm.assign_job_getcall(&job, &s.addr(worker)),
        ]
    };
    for worker in [Actor::WorkerB, Actor::WorkerA] {
        assert_reverts(
            s.send(jm.account.execute_v3(reassign(worker))).await,
            "JM: assigned this second",
        );
    }
    // In a batch the same entry is skipped with the reason, the rest going through:
    let batch = vec![Assignment {
        job_id: job,
        worker: s.addr(Actor::WorkerB),
    }];
    let out = s
        .send(jm.account.execute_v3(vec![
            jm.assign_job_getcall(&job, &s.addr(Actor::WorkerA)),
            jm.release_job_getcall(&job, &s.addr(Actor::WorkerA), &now),
            jm.assign_jobs_getcall(&batch),
        ]))
        .await
        .unwrap();
    assert!(out
        .events_from(s.job_mgr)
        .into_iter()
        .filter_map(|e| job_mgr::Event::try_from(e).ok())
        .any(|e| e
            == job_mgr::Event::AssignmentSkipped(AssignmentSkipped {
                job_id: job,
                worker: s.addr(Actor::WorkerB),
                reason: Felt::from_bytes_be_slice(b"JM: assigned this second"),
            })));
    assert_eq!(s.job_info(job).await.job.state, JobState::Queued);
    // A second later the job is assigned again.
    s.advance(1).await;
    s.send(jm.assign_job(&job, &s.addr(Actor::WorkerB)))
        .await
        .unwrap();
    let info = s.job_info(job).await.job;
    assert_eq!(
        (info.state, info.worker),
        (JobState::Assigned, s.addr(Actor::WorkerB))
    );
    assert!(info.assigned_at > now);
    s.assert_invariants("after the refused reassignments").await;
}

// ---------------------------------------------------------------------------------------
// submit_result / finalize / finalize_jobs / expire
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn submit_result_by_the_assigned_worker_completes_the_job() {
    let s = System::deploy().await.unwrap();
    let (_, job) = s.assigned_job().await;
    let out = s
        .send(s.jobs_as(Actor::WorkerA).submit_result(&job, &u256(0xfeed)))
        .await
        .unwrap();
    let info = s.job_info(job).await.job;
    assert_eq!(
        (info.state, info.output_hash),
        (JobState::Completed, u256(0xfeed))
    );
    assert!(info.completed_at >= info.assigned_at);
    assert_events(
        &out,
        s.job_mgr,
        &[job_mgr::Event::ResultSubmitted(ResultSubmitted {
            job_id: job,
            worker: s.addr(Actor::WorkerA),
            output_hash: u256(0xfeed),
        })],
    );
}

#[tokio::test]
async fn submit_result_rejects_anyone_but_the_assigned_worker() {
    let s = System::deploy().await.unwrap();
    let (_, job) = s.assigned_job().await;
    s.active_worker(Actor::WorkerB).await;
    assert_reverts(
        s.send(s.jobs_as(Actor::WorkerB).submit_result(&job, &u256(1)))
            .await,
        "JM: not the assigned worker",
    );
}

#[tokio::test]
async fn submit_result_rejects_a_job_not_assigned_or_past_its_deadline() {
    let s = System::deploy().await.unwrap();
    let (model, job) = s.completed_job().await;
    assert_reverts(
        s.send(s.jobs_as(Actor::WorkerA).submit_result(&job, &u256(1)))
            .await,
        "JM: job not assigned",
    );
    let late = s.job(model).await;
    s.send(
        s.jobs_as(Actor::Coordinator)
            .assign_job(&late, &s.addr(Actor::WorkerA)),
    )
    .await
    .unwrap();
    s.advance(3_601).await;
    assert_reverts(
        s.send(s.jobs_as(Actor::WorkerA).submit_result(&late, &u256(1)))
            .await,
        "JM: deadline passed",
    );
}

#[tokio::test]
async fn finalize_pays_the_worker_streams_the_protocol_fee_and_records_a_success() {
    let s = System::deploy().await.unwrap();
    let (_, job) = s.completed_job().await;
    // (the worker's stake past its warm-up, so that the fee has weight to spread over)
    s.warm_up(Actor::WorkerA).await;
    s.advance(RESULT_WINDOW).await;
    let out = s
        .send(s.jobs_as(Actor::Attacker).finalize(&job))
        .await
        .unwrap();
    assert_eq!(s.job_info(job).await.job.state, JobState::Finalized);
    assert_eq!(
        s.balance_of(Actor::WorkerA).await,
        FUNDS - MIN_STAKE[3] + JOB_FEE - FEE_CUT
    );
    let totals = call(s.pool_reader().totals()).await.unwrap();
    assert_eq!(totals.rewards, u256(FEE_CUT));
    assert_eq!(s.worker_info(Actor::WorkerA).await.reputation.completed, 1);
    assert_events(
        &out,
        s.job_mgr,
        &[job_mgr::Event::JobFinalized(JobFinalized {
            job_id: job,
            worker: s.addr(Actor::WorkerA),
            payout: u256(JOB_FEE - FEE_CUT),
            protocol_fee: u256(FEE_CUT),
        })],
    );
    s.assert_invariants("after finalize").await;
}

/// At launch, before any stake has warmed up: the protocol fee has nobody to earn it, so it
/// goes to the treasury rather than waiting for the first stake to activate.
#[tokio::test]
async fn finalize_with_no_stake_past_its_warm_up_sends_the_protocol_fee_to_the_treasury() {
    let s = System::deploy().await.unwrap();
    let (_, job) = s.completed_job().await;
    s.advance(RESULT_WINDOW).await;
    let treasury = s.balance_of(TREASURY).await;
    s.send(s.jobs_as(Actor::Attacker).finalize(&job))
        .await
        .unwrap();
    assert_eq!(
        s.balance_of(Actor::WorkerA).await,
        FUNDS - MIN_STAKE[3] + JOB_FEE - FEE_CUT
    );
    assert_eq!(s.balance_of(TREASURY).await, treasury + FEE_CUT);
    assert_eq!(
        call(s.pool_reader().totals()).await.unwrap().rewards,
        u256(0)
    );
    // and the worker, once active, earns none of it.
    s.warm_up(Actor::WorkerA).await;
    assert_eq!(
        call(s.pool_reader().pending_rewards(&s.addr(Actor::WorkerA)))
            .await
            .unwrap(),
        u256(0)
    );
    s.assert_invariants("after finalize").await;
}

#[tokio::test]
async fn finalize_rejects_a_job_in_its_challenge_window_or_not_completed() {
    let s = System::deploy().await.unwrap();
    let (model, job) = s.completed_job().await;
    s.advance(RESULT_WINDOW - 20).await;
    assert_reverts(
        s.send(s.jobs_as(Actor::Attacker).finalize(&job)).await,
        "JM: challenge window open",
    );
    let queued = s.job(model).await;
    assert_reverts(
        s.send(s.jobs_as(Actor::Attacker).finalize(&queued)).await,
        "JM: job not completed",
    );
    s.advance(20).await;
    s.send(s.jobs_as(Actor::Attacker).finalize(&job))
        .await
        .unwrap();
    assert_reverts(
        s.send(s.jobs_as(Actor::Attacker).finalize(&job)).await,
        "JM: job not completed",
    );
}

#[tokio::test]
async fn finalize_jobs_pays_a_batch_with_one_reward_notification() {
    let s = System::deploy().await.unwrap();
    let (model, first) = s.completed_job().await;
    let mut jobs = vec![first];
    for _ in 0..2 {
        let job = s.job(model).await;
        s.complete(job, Actor::WorkerA).await;
        jobs.push(job);
    }
    s.warm_up(Actor::WorkerA).await;
    s.advance(RESULT_WINDOW).await;
    let out = s
        .send(s.jobs_as(Actor::Attacker).finalize_jobs(&jobs))
        .await
        .unwrap();
    assert_eq!(
        s.balance_of(Actor::WorkerA).await,
        FUNDS - MIN_STAKE[3] + 3 * (JOB_FEE - FEE_CUT)
    );
    let notifications: Vec<ciro_chain::bindings::cdc_pool::Event> =
        ciro_tests::assert::decoded_events(&out, s.pool);
    let rewards: Vec<_> = notifications
        .iter()
        .filter(|e| matches!(e, ciro_chain::bindings::cdc_pool::Event::RewardNotified(_)))
        .collect();
    assert_eq!(rewards.len(), 1);
    assert_eq!(
        call(s.pool_reader().totals()).await.unwrap().rewards,
        u256(3 * FEE_CUT)
    );
    s.assert_invariants("after the batch").await;
}

#[tokio::test]
async fn finalize_jobs_rejects_an_empty_or_oversized_batch() {
    let s = System::deploy().await.unwrap();
    let (_, job) = s.completed_job().await;
    s.advance(RESULT_WINDOW).await;
    let anyone = s.jobs_as(Actor::Attacker);
    assert_reverts(
        s.send(anyone.finalize_jobs(&vec![])).await,
        "JM: empty batch",
    );
    assert_reverts(
        s.send(anyone.finalize_jobs(&vec![job; 101])).await,
        "JM: batch too large",
    );
}

#[tokio::test]
async fn attack_a_front_run_finalize_cannot_grief_a_batch() {
    // Given three finalizable jobs, a queued one, and an attacker who finalizes one of the
    // three just before the keeper's batch lands,
    let s = System::deploy().await.unwrap();
    let (model, a) = s.completed_job().await;
    let b = s.job(model).await;
    s.complete(b, Actor::WorkerA).await;
    let queued = s.job(model).await;
    s.advance(RESULT_WINDOW).await;
    s.send(s.jobs_as(Actor::Attacker).finalize(&a))
        .await
        .unwrap();
    // when the batch runs,
    let out = s
        .send(
            s.jobs_as(Actor::Coordinator)
                .finalize_jobs(&vec![a, b, queued, 77]),
        )
        .await
        .unwrap();
    // then b is paid once, the others are skipped with their reasons, and a was paid once.
    assert_eq!(s.job_info(b).await.job.state, JobState::Finalized);
    assert_eq!(
        s.balance_of(Actor::WorkerA).await,
        FUNDS - MIN_STAKE[3] + 2 * (JOB_FEE - FEE_CUT)
    );
    assert_events(
        &out,
        s.job_mgr,
        &[
            job_mgr::Event::FinalizeSkipped(FinalizeSkipped {
                job_id: a,
                reason: role("JM: job not completed"),
            }),
            job_mgr::Event::JobFinalized(JobFinalized {
                job_id: b,
                worker: s.addr(Actor::WorkerA),
                payout: u256(JOB_FEE - FEE_CUT),
                protocol_fee: u256(FEE_CUT),
            }),
            job_mgr::Event::FinalizeSkipped(FinalizeSkipped {
                job_id: queued,
                reason: role("JM: job not completed"),
            }),
            job_mgr::Event::FinalizeSkipped(FinalizeSkipped {
                job_id: 77,
                reason: role("JM: unknown job"),
            }),
        ],
    );
    // A batch where nothing is finalizable changes nothing and pays nothing.
    s.send(s.jobs_as(Actor::Coordinator).finalize_jobs(&vec![a, b]))
        .await
        .unwrap();
    assert_eq!(s.worker_info(Actor::WorkerA).await.reputation.completed, 2);
    s.assert_invariants("after the batches").await;
}

#[tokio::test]
async fn attack_cheap_self_dealing_jobs_do_not_move_reputation() {
    // Given a worker paid for jobs below the rated fee (a friend submits them),
    let s = System::deploy().await.unwrap();
    s.send(
        s.jobs_as(Actor::Admin)
            .register_model(&u256(9), &requirements(), &u256(0)),
    )
    .await
    .unwrap();
    s.active_worker(Actor::WorkerA).await;
    let mut jobs = Vec::new();
    for _ in 0..3 {
        let job = s
            .job_with(1, Actor::Attacker, MIN_RATED_FEE - 1, &no_options())
            .await;
        s.complete(job, Actor::WorkerA).await;
        jobs.push(job);
    }
    s.advance(RESULT_WINDOW).await;
    s.send(s.jobs_as(Actor::Attacker).finalize_jobs(&jobs))
        .await
        .unwrap();
    // then the score and counters did not move, but the holds were released,
    let info = s.worker_info(Actor::WorkerA).await;
    assert_eq!(
        (info.reputation.score, info.reputation.completed),
        (5_000, 0)
    );
    assert_eq!(info.record.holds, 0);
    // and one job at the rated fee moves it.
    let rated = s
        .job_with(1, Actor::Attacker, MIN_RATED_FEE, &no_options())
        .await;
    s.complete(rated, Actor::WorkerA).await;
    s.advance(RESULT_WINDOW).await;
    s.send(s.jobs_as(Actor::Attacker).finalize(&rated))
        .await
        .unwrap();
    assert_eq!(s.worker_info(Actor::WorkerA).await.reputation.score, 5_625);
}

#[tokio::test]
async fn expire_refunds_a_queued_job_after_its_deadline() {
    let s = System::deploy().await.unwrap();
    let model = s.model().await;
    let job = s.job(model).await;
    s.advance(3_601).await;
    let out = s
        .send(s.jobs_as(Actor::Attacker).expire(&job))
        .await
        .unwrap();
    assert_eq!(s.job_info(job).await.job.state, JobState::Expired);
    assert_eq!(s.balance_of(Actor::Submitter).await, FUNDS);
    assert_events(
        &out,
        s.job_mgr,
        &[job_mgr::Event::JobExpired(JobExpired {
            job_id: job,
            submitter: s.addr(Actor::Submitter),
            refund: u256(JOB_FEE),
        })],
    );
}

#[tokio::test]
async fn expire_of_an_assigned_job_records_a_failure_for_its_worker() {
    let s = System::deploy().await.unwrap();
    let (_, job) = s.assigned_job().await;
    s.advance(3_601).await;
    s.send(s.jobs_as(Actor::Attacker).expire(&job))
        .await
        .unwrap();
    assert_eq!(s.worker_info(Actor::WorkerA).await.reputation.failed, 1);
    assert_eq!(s.balance_of(Actor::Submitter).await, FUNDS);
}

#[tokio::test]
async fn expire_rejects_a_job_before_its_deadline_or_already_completed() {
    let s = System::deploy().await.unwrap();
    let (model, completed) = s.completed_job().await;
    let queued = s.job(model).await;
    assert_reverts(
        s.send(s.jobs_as(Actor::Attacker).expire(&queued)).await,
        "JM: deadline not passed",
    );
    s.advance(3_601).await;
    assert_reverts(
        s.send(s.jobs_as(Actor::Attacker).expire(&completed)).await,
        "JM: job not expirable",
    );
}

// ---------------------------------------------------------------------------------------
// disputes
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn open_dispute_takes_the_jobs_bond_and_marks_the_job_disputed() {
    let s = System::deploy().await.unwrap();
    let (_, job) = s.completed_job().await;
    let out = s
        .send(s.jobs_as(Actor::Submitter).open_dispute(&job, &felt(0xe1)))
        .await
        .unwrap();
    let info = s.job_info(job).await;
    assert_eq!(info.job.state, JobState::Disputed);
    assert_eq!(
        (
            info.dispute.disputer,
            info.dispute.evidence_hash,
            info.dispute.bond
        ),
        (s.addr(Actor::Submitter), felt(0xe1), u256(DISPUTE_BOND))
    );
    assert_eq!(
        s.balance_of(Actor::Submitter).await,
        FUNDS - JOB_FEE - DISPUTE_BOND
    );
    assert_eq!(
        call(s.jobs_reader().totals()).await.unwrap(),
        (u256(JOB_FEE), u256(DISPUTE_BOND))
    );
    assert_events(
        &out,
        s.job_mgr,
        &[job_mgr::Event::DisputeOpened(DisputeOpened {
            job_id: job,
            disputer: s.addr(Actor::Submitter),
            evidence_hash: felt(0xe1),
            bond: u256(DISPUTE_BOND),
        })],
    );
    s.assert_invariants("dispute open").await;
}

#[tokio::test]
async fn open_dispute_by_a_verifier_takes_the_bond_from_the_verifier() {
    let s = System::deploy().await.unwrap();
    let (_, job) = s.completed_job().await;
    s.send(s.jobs_as(Actor::Verifier).open_dispute(&job, &felt(0xe2)))
        .await
        .unwrap();
    assert_eq!(
        s.job_info(job).await.dispute.disputer,
        s.addr(Actor::Verifier)
    );
    assert_eq!(s.balance_of(Actor::Verifier).await, FUNDS - DISPUTE_BOND);
    assert_eq!(
        s.balance_of(Actor::Submitter).await,
        FUNDS - JOB_FEE,
        "the submitter pays nothing for a verifier's dispute"
    );
}

#[tokio::test]
async fn open_dispute_rejects_others_a_second_dispute_and_a_closed_window() {
    let s = System::deploy().await.unwrap();
    let (model, job) = s.completed_job().await;
    let submitter = s.jobs_as(Actor::Submitter);
    for stranger in [Actor::Attacker, Actor::WorkerA, Actor::Arbiter] {
        assert_reverts(
            s.send(s.jobs_as(stranger).open_dispute(&job, &felt(1)))
                .await,
            "JM: not submitter or verifier",
        );
    }
    let queued = s.job(model).await;
    assert_reverts(
        s.send(submitter.open_dispute(&queued, &felt(1))).await,
        "JM: job not completed",
    );
    s.send(submitter.open_dispute(&job, &felt(1)))
        .await
        .unwrap();
    assert_reverts(
        s.send(s.jobs_as(Actor::Verifier).open_dispute(&job, &felt(1)))
            .await,
        "JM: dispute already open",
    );

    let late = s.job(model).await;
    s.complete(late, Actor::WorkerA).await;
    s.advance(RESULT_WINDOW).await;
    assert_reverts(
        s.send(submitter.open_dispute(&late, &felt(1))).await,
        "JM: challenge window closed",
    );
}

#[tokio::test]
async fn resolve_dispute_worker_at_fault_refunds_and_slashes_through_the_pool() {
    let s = System::deploy().await.unwrap();
    let (_, job) = s.completed_job().await;
    s.send(s.jobs_as(Actor::Submitter).open_dispute(&job, &felt(0xe1)))
        .await
        .unwrap();
    let treasury = s.balance_of(TREASURY).await;
    let out = s
        .send(
            s.jobs_as(Actor::Arbiter)
                .resolve_dispute(&job, &true, &1_000),
        )
        .await
        .unwrap();
    // 10% of 8,000 is 800: half to the submitter (within 2 × the fee), half to the treasury.
    let cut = MIN_STAKE[3] / 10;
    assert_eq!(
        s.worker_info(Actor::WorkerA).await.stake,
        u256(MIN_STAKE[3] - cut)
    );
    let slash = call(s.pool_reader().get_slash(&1)).await.unwrap();
    assert_eq!(
        (
            slash.beneficiary,
            slash.evidence_hash,
            slash.amount,
            slash.beneficiary_cap
        ),
        (
            s.addr(Actor::Submitter),
            felt(0xe1),
            u256(cut),
            u256(JOB_FEE * MAX_AWARD_MULTIPLE as u128)
        )
    );
    assert_eq!(s.balance_of(Actor::Submitter).await, FUNDS + cut / 2);
    assert_eq!(s.balance_of(TREASURY).await - treasury, cut / 2);
    assert_events(
        &out,
        s.job_mgr,
        &[job_mgr::Event::DisputeResolved(DisputeResolved {
            job_id: job,
            worker: s.addr(Actor::WorkerA),
            worker_at_fault: true,
            slash_id: 1,
            by_arbiter: true,
        })],
    );
    let info = s.worker_info(Actor::WorkerA).await;
    assert_eq!(s.job_info(job).await.job.state, JobState::Refunded);
    assert_eq!((info.reputation.failed, info.record.holds), (1, 0));
    // The arbiter's decision is final: the slash is executed at once, never pending, so the
    // slashed worker cannot challenge it to hold its stake or have it overturned by default.
    assert_eq!(
        (slash.status, info.record.open_slashes),
        (SlashStatus::Executed, 0)
    );
    assert_reverts(
        s.send(s.pool_as(Actor::WorkerA).challenge_slash(&1)).await,
        "POOL: slash not pending",
    );
    s.assert_invariants("after resolution").await;
}

#[tokio::test]
async fn attack_a_manufactured_dispute_on_a_cheap_job_wins_at_most_the_award_cap() {
    // Given a 100-token job (price 100) the submitter disputes to win the worker's stake,
    let s = System::deploy().await.unwrap();
    let model = s.model().await;
    s.active_worker(Actor::WorkerA).await;
    let job = s
        .job_with(model, Actor::Submitter, MODEL_PRICE, &no_options())
        .await;
    s.complete(job, Actor::WorkerA).await;
    s.send(s.jobs_as(Actor::Submitter).open_dispute(&job, &felt(1)))
        .await
        .unwrap();
    let treasury = s.balance_of(TREASURY).await;
    // when the arbiter slashes the maximum 50% (4,000 of 8,000),
    s.send(
        s.jobs_as(Actor::Arbiter)
            .resolve_dispute(&job, &true, &MAX_DISPUTE_SLASH_BPS),
    )
    .await
    .unwrap();
    // then the submitter wins only 2 × 100 on top of its refund and bond; the treasury the
    // rest.
    assert_eq!(
        s.balance_of(Actor::Submitter).await,
        FUNDS + 2 * MODEL_PRICE
    );
    assert_eq!(
        s.balance_of(TREASURY).await - treasury,
        MIN_STAKE[3] / 2 - 2 * MODEL_PRICE
    );
    s.assert_invariants("after the capped award").await;
}

#[tokio::test]
async fn resolve_dispute_at_fault_with_zero_bps_refunds_without_slashing() {
    let s = System::deploy().await.unwrap();
    let (_, job) = s.completed_job().await;
    s.send(s.jobs_as(Actor::Verifier).open_dispute(&job, &felt(1)))
        .await
        .unwrap();
    s.send(s.jobs_as(Actor::Arbiter).resolve_dispute(&job, &true, &0))
        .await
        .unwrap();
    assert_reverts(
        call(s.pool_reader().get_slash(&1)).await,
        "POOL: unknown slash",
    );
    assert_eq!(
        s.worker_info(Actor::WorkerA).await.stake,
        u256(MIN_STAKE[3])
    );
    assert_eq!(s.balance_of(Actor::Submitter).await, FUNDS);
    assert_eq!(s.balance_of(Actor::Verifier).await, FUNDS);
    s.assert_invariants("after resolution").await;
}

#[tokio::test]
async fn resolve_dispute_worker_right_pays_fee_and_bond_to_the_worker() {
    let s = System::deploy().await.unwrap();
    let (_, job) = s.completed_job().await;
    s.send(s.jobs_as(Actor::Submitter).open_dispute(&job, &felt(0xe1)))
        .await
        .unwrap();
    let out = s
        .send(s.jobs_as(Actor::Arbiter).resolve_dispute(&job, &false, &0))
        .await
        .unwrap();
    assert_eq!(
        s.balance_of(Actor::WorkerA).await,
        FUNDS - MIN_STAKE[3] + JOB_FEE - FEE_CUT + DISPUTE_BOND
    );
    assert_events(
        &out,
        s.job_mgr,
        &[
            job_mgr::Event::DisputeResolved(DisputeResolved {
                job_id: job,
                worker: s.addr(Actor::WorkerA),
                worker_at_fault: false,
                slash_id: 0,
                by_arbiter: true,
            }),
            job_mgr::Event::JobFinalized(JobFinalized {
                job_id: job,
                worker: s.addr(Actor::WorkerA),
                payout: u256(JOB_FEE - FEE_CUT),
                protocol_fee: u256(FEE_CUT),
            }),
        ],
    );
    s.assert_invariants("after resolution").await;
}

#[tokio::test]
async fn resolve_dispute_rejects_non_arbiters_undisputed_jobs_and_bps_over_the_jobs_cap() {
    let s = System::deploy().await.unwrap();
    let (_, job) = s.completed_job().await;
    assert_reverts(
        s.send(s.jobs_as(Actor::Arbiter).resolve_dispute(&job, &true, &0))
            .await,
        "JM: job not disputed",
    );
    s.send(s.jobs_as(Actor::Submitter).open_dispute(&job, &felt(1)))
        .await
        .unwrap();
    assert_reverts(
        s.send(s.jobs_as(Actor::Attacker).resolve_dispute(&job, &false, &0))
            .await,
        "GOV: caller is missing role",
    );
    assert_reverts(
        s.send(s.jobs_as(Actor::Arbiter).resolve_dispute(
            &job,
            &true,
            &(MAX_DISPUTE_SLASH_BPS + 1),
        ))
        .await,
        "JM: slash bps out of bounds",
    );
}

#[tokio::test]
async fn attack_unstaking_cannot_outrun_a_dispute() {
    // Given jobs whose arbiter may take 30 days (longer than the 7-day exit window), and a
    // worker that takes one, starts leaving at once, and commits junk,
    let s = System::deploy().await.unwrap();
    s.set_job_params(&job_mgr::JobParams {
        arbitration_window: 30 * 86_400,
        ..job_params()
    })
    .await;
    let (_, job) = s.assigned_job().await;
    s.send(
        s.pool_as(Actor::WorkerA)
            .unstake_intent(&u256(MIN_STAKE[3])),
    )
    .await
    .unwrap();
    s.send(s.jobs_as(Actor::WorkerA).submit_result(&job, &u256(0)))
        .await
        .unwrap();
    s.send(s.jobs_as(Actor::Submitter).open_dispute(&job, &felt(1)))
        .await
        .unwrap();
    // when its exit window passes before the arbiter rules,
    s.advance(EXIT_WINDOW).await;
    // then it cannot withdraw while the job is held,
    assert_reverts(
        s.send(
            s.pool_as(Actor::WorkerA)
                .unstake_action(&s.addr(Actor::WorkerA)),
        )
        .await,
        "POOL: jobs at risk",
    );
    // and the arbiter's slash reaches the whole exit.
    s.send(
        s.jobs_as(Actor::Arbiter)
            .resolve_dispute(&job, &true, &MAX_DISPUTE_SLASH_BPS),
    )
    .await
    .unwrap();
    let info = s.worker_info(Actor::WorkerA).await;
    assert_eq!(info.exit.amount, u256(MIN_STAKE[3] / 2));
    s.send(
        s.pool_as(Actor::WorkerA)
            .unstake_action(&s.addr(Actor::WorkerA)),
    )
    .await
    .unwrap();
    s.assert_invariants("after the exit").await;
}

#[tokio::test]
async fn settle_dispute_after_the_arbitration_window_lets_the_result_stand() {
    let s = System::deploy().await.unwrap();
    let (_, job) = s.completed_job().await;
    s.send(s.jobs_as(Actor::Submitter).open_dispute(&job, &felt(1)))
        .await
        .unwrap();
    assert_reverts(
        s.send(s.jobs_as(Actor::Attacker).settle_dispute(&job))
            .await,
        "JM: arbitration window open",
    );
    s.advance(ARBITRATION_WINDOW + 1).await;
    // Past the deadline the arbiter can no longer decide (no race with the default).
    assert_reverts(
        s.send(s.jobs_as(Actor::Arbiter).resolve_dispute(&job, &true, &0))
            .await,
        "JM: arbitration window closed",
    );
    let out = s
        .send(s.jobs_as(Actor::Attacker).settle_dispute(&job))
        .await
        .unwrap();
    // The worker is paid as if undisputed, the submitter's bond comes back, no reputation
    // moves, and the worker's hold is released.
    assert_eq!(s.job_info(job).await.job.state, JobState::Finalized);
    assert_eq!(
        s.balance_of(Actor::WorkerA).await,
        FUNDS - MIN_STAKE[3] + JOB_FEE - FEE_CUT
    );
    assert_eq!(s.balance_of(Actor::Submitter).await, FUNDS - JOB_FEE);
    let info = s.worker_info(Actor::WorkerA).await;
    assert_eq!(
        (
            info.reputation.score,
            info.reputation.completed,
            info.record.holds
        ),
        (5_000, 0, 0)
    );
    assert_events(
        &out,
        s.job_mgr,
        &[
            job_mgr::Event::DisputeResolved(DisputeResolved {
                job_id: job,
                worker: s.addr(Actor::WorkerA),
                worker_at_fault: false,
                slash_id: 0,
                by_arbiter: false,
            }),
            job_mgr::Event::JobFinalized(JobFinalized {
                job_id: job,
                worker: s.addr(Actor::WorkerA),
                payout: u256(JOB_FEE - FEE_CUT),
                protocol_fee: u256(FEE_CUT),
            }),
        ],
    );
    // Nobody can decide or settle it again.
    assert_reverts(
        s.send(s.jobs_as(Actor::Arbiter).resolve_dispute(&job, &true, &0))
            .await,
        "JM: job not disputed",
    );
    assert_reverts(
        s.send(s.jobs_as(Actor::Attacker).settle_dispute(&job))
            .await,
        "JM: job not disputed",
    );
    s.assert_invariants("after settlement").await;
}

// ---------------------------------------------------------------------------------------
// views
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn jobs_of_pages_a_submitters_jobs_oldest_first() {
    let s = System::deploy().await.unwrap();
    let model = s.model().await;
    for _ in 0..3 {
        s.job(model).await;
    }
    let reader = s.jobs_reader();
    assert_eq!(
        call(reader.job_count_of(&s.addr(Actor::Submitter)))
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        call(reader.job_count_of(&s.addr(Actor::Attacker)))
            .await
            .unwrap(),
        0
    );
    let page = call(reader.jobs_of(&s.addr(Actor::Submitter), &1, &10))
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|j| j.job_id).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert_reverts(
        call(reader.jobs_of(&s.addr(Actor::Submitter), &0, &101)).await,
        "JM: limit out of bounds",
    );
    assert_reverts(call(reader.get_job(&4)).await, "JM: unknown job");
    assert_eq!(call(reader.job_count()).await.unwrap(), 3);
}

#[tokio::test]
async fn finalize_jobs_pays_each_run_of_one_workers_jobs_once_and_records_every_job() {
    // Given jobs completed by A, A, B, A (three runs)
    let s = System::deploy().await.unwrap();
    let model = s.model().await;
    s.active_worker(Actor::WorkerA).await;
    s.active_worker(Actor::WorkerB).await;
    let mut jobs = Vec::new();
    for worker in [
        Actor::WorkerA,
        Actor::WorkerA,
        Actor::WorkerB,
        Actor::WorkerA,
    ] {
        let job = s.job(model).await;
        s.complete(job, worker).await;
        jobs.push(job);
    }
    s.advance(RESULT_WINDOW).await;
    // When they are finalized in one batch
    let out = s
        .send(s.jobs_as(Actor::Attacker).finalize_jobs(&jobs))
        .await
        .unwrap();
    // Then A is paid for three jobs and B for one, and every job is recorded
    assert_eq!(
        s.balance_of(Actor::WorkerA).await,
        FUNDS - MIN_STAKE[3] + 3 * (JOB_FEE - FEE_CUT)
    );
    assert_eq!(
        s.balance_of(Actor::WorkerB).await,
        FUNDS - MIN_STAKE[3] + JOB_FEE - FEE_CUT
    );
    assert_eq!(s.worker_info(Actor::WorkerA).await.reputation.completed, 3);
    assert_eq!(s.worker_info(Actor::WorkerB).await.reputation.completed, 1);
    let finalized: Vec<job_mgr::Event> = ciro_tests::assert::decoded_events(&out, s.job_mgr);
    assert_eq!(finalized.len(), 4, "one JobFinalized per job");
    s.assert_invariants("after three runs").await;
}

#[tokio::test]
async fn a_refund_the_token_fails_to_deliver_reverts_and_keeps_the_escrow() {
    // Given a queued job, and a token whose transfer starts returning false
    let s = System::deploy().await.unwrap();
    let model = s.model().await;
    let job = s.job(model).await;
    let admin = s.net.account(Actor::Admin);
    send(
        &s.net.provider,
        TestToken::new(s.token, &admin).set_transfer_returns_false(&true),
    )
    .await
    .unwrap();
    // When the submitter cancels, it reverts and nothing changed
    assert_reverts(
        s.send(s.jobs_as(Actor::Submitter).cancel_job(&job)).await,
        "JM: token transfer failed",
    );
    assert_eq!(s.job_info(job).await.job.state, JobState::Queued);
    s.assert_invariants("after the failed refund").await;
}

#[tokio::test]
async fn a_token_that_reenters_cannot_finalize_a_job_twice() {
    // Given a completed job past its window, and a token whose `transfer` (the worker's
    // payment) calls `finalize` on the same job again
    let s = System::deploy().await.unwrap();
    let (_, job) = s.completed_job().await;
    s.advance(RESULT_WINDOW).await;
    let admin = s.net.account(Actor::Admin);
    let token = TestToken::new(s.token, &admin);
    let finalize = ciro_chain::starknet::core::utils::get_selector_from_name("finalize").unwrap();
    send(
        &s.net.provider,
        token.set_reentry(
            &ContractAddress(s.job_mgr),
            &finalize,
            &vec![Felt::from(job)],
        ),
    )
    .await
    .unwrap();
    // When anyone finalizes it, the re-entry finds the job already final and everything reverts
    assert_reverts(
        s.send(s.jobs_as(Actor::Attacker).finalize(&job)).await,
        "JM: job not completed",
    );
    assert_eq!(s.job_info(job).await.job.state, JobState::Completed);
    // And with an honest token it is paid once
    send(
        &s.net.provider,
        token.set_reentry(&ContractAddress(Felt::ZERO), &Felt::ZERO, &vec![]),
    )
    .await
    .unwrap();
    s.send(s.jobs_as(Actor::Attacker).finalize(&job))
        .await
        .unwrap();
    assert_eq!(
        s.balance_of(Actor::WorkerA).await,
        FUNDS - MIN_STAKE[3] + JOB_FEE - FEE_CUT
    );
    s.assert_invariants("after the honest finalization").await;
}
