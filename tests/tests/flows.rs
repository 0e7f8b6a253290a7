//! Flow tests: whole stories across JobMgr and the CDC Pool. Each opens with the story and
//! ends with a conservation check over every party's token balance (nothing created, nothing
//! lost) and the contracts' own invariants.

use ciro_chain::bindings::cdc_pool::{Outcome, SlashReason, SlashStatus, WorkerState};
use ciro_chain::bindings::job_mgr::JobState;
use ciro_chain::tx::call;
use ciro_tests::fixtures::u256;
use ciro_tests::system::*;
use ciro_tests::Actor;

/// Every holder of the token in these flows.
const PARTIES: [Actor; 8] = [
    Actor::Submitter,
    Actor::WorkerA,
    Actor::WorkerB,
    Actor::WorkerC,
    Actor::Delegator,
    Actor::Attacker,
    TREASURY,
    SLASHER,
];

/// Σ over every party and both contracts: must equal what was minted.
async fn total_supply_held(s: &System) -> u128 {
    let mut total = s.balance(s.pool).await + s.balance(s.job_mgr).await;
    for actor in PARTIES {
        total += s.balance_of(actor).await;
    }
    total
}

/// Tokens minted by `System::deploy`: FUNDS to each of six parties.
const MINTED: u128 = 6 * FUNDS;

#[tokio::test]
async fn flow_1_model_stake_submit_assign_result_finalize_rewards_claimed() {
    // Story: the admin registers a model; WorkerA registers an H100 and stakes its tier's
    // minimum; the Submitter pays 1,000 for a job; the coordinator assigns it to WorkerA, who
    // commits a result; after the challenge window anyone finalizes it: WorkerA gets 950, the
    // 50 protocol fee flows to the pool's reward stream, where WorkerA (the only weight)
    // claims it. Its reputation records one success.
    let s = System::deploy().await.unwrap();
    let model = s.model().await;
    s.active_worker(Actor::WorkerA).await;
    assert_eq!(s.worker_info(Actor::WorkerA).await.state, WorkerState::Active);
    let job = s.job(model).await;
    assert_eq!(s.job_info(job).await.job.state, JobState::Queued);
    s.send(s.jobs_as(Actor::Coordinator).assign_job(&job, &s.addr(Actor::WorkerA)))
        .await
        .unwrap();
    s.advance(30).await;
    s.send(s.jobs_as(Actor::WorkerA).submit_result(&job, &u256(0xabc)))
        .await
        .unwrap();
    s.assert_invariants("after the result").await;
    s.advance(RESULT_WINDOW).await;
    s.send(s.jobs_as(Actor::Attacker).finalize(&job)).await.unwrap();

    let info = s.job_info(job).await;
    assert_eq!(info.job.state, JobState::Finalized);
    let fee = JOB_FEE * u128::from(PROTOCOL_FEE_BPS) / 10_000;
    assert_eq!(s.balance_of(Actor::WorkerA).await, FUNDS - MIN_STAKE[3] + JOB_FEE - fee);
    assert_eq!(
        call(s.pool_reader().pending_rewards(&s.addr(Actor::WorkerA))).await.unwrap(),
        u256(fee)
    );
    s.send(s.pool_as(Actor::WorkerA).claim_rewards()).await.unwrap();
    assert_eq!(s.balance_of(Actor::WorkerA).await, FUNDS - MIN_STAKE[3] + JOB_FEE);
    assert_eq!(s.balance_of(Actor::Submitter).await, FUNDS - JOB_FEE);
    let rep = s.worker_info(Actor::WorkerA).await.reputation;
    assert_eq!((rep.completed, rep.failed, rep.missed), (1, 0, 0));
    assert_eq!(rep.score, 5_000 + 5_000 / 8);
    assert!(rep.avg_latency >= 30);

    s.assert_invariants("end").await;
    assert_eq!(total_supply_held(&s).await, MINTED);
    let _ = (Outcome::Success, SlashReason::Fraud, SlashStatus::Pending);
}
