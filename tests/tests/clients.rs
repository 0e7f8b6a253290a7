//! The chain crate's JobMgr and pool clients on devnet: ids come back from the contracts'
//! events, approvals ride in the same multicall, batches use the contracts' batch entry points,
//! reverts carry the contract's string.

use std::sync::Arc;

use ciro_chain::bindings::{cdc_pool, job_mgr};
use ciro_chain::clients::{balance_of, u256, u256_from_digest, JobMgrClient, PoolClient};
use ciro_chain::sender::{SenderConfig, TxSender};
use ciro_chain::starknet::core::types::Felt;
use ciro_tests::assert::assert_reverts;
use ciro_tests::system::*;
use ciro_tests::Actor;

fn sender(s: &System, actor: Actor) -> Arc<TxSender<ciro_chain::RpcAccount>> {
    Arc::new(TxSender::new(s.net.account(actor), SenderConfig::default()))
}

#[test]
fn digests_become_u256_big_endian() {
    let mut digest = [0u8; 32];
    digest[0] = 0x12;
    digest[31] = 0x34;
    let value = u256_from_digest(&digest);
    assert_eq!(value.high, 0x12 << 120);
    assert_eq!(value.low, 0x34);
}

#[tokio::test]
async fn a_job_runs_its_whole_life_through_the_clients() {
    let s = System::deploy().await.unwrap();
    let admin = JobMgrClient::new(s.job_mgr, sender(&s, Actor::Admin));
    let submitter = JobMgrClient::new(s.job_mgr, sender(&s, Actor::Submitter));
    let coordinator = JobMgrClient::new(s.job_mgr, sender(&s, Actor::Coordinator));
    let worker_jobs = JobMgrClient::new(s.job_mgr, sender(&s, Actor::WorkerC));
    let worker_pool = PoolClient::new(s.pool, sender(&s, Actor::WorkerC));

    // A model, then a worker registered and staked in one multicall
    let (model, _) = admin
        .register_model(u256(0xabc), &requirements(), u256(MODEL_PRICE))
        .await
        .unwrap();
    assert_eq!(model, 1);
    let caps = cdc_pool::Capabilities { ..h100() };
    worker_pool
        .register_and_stake(s.token, &caps, Felt::from(7u8), u256(MIN_STAKE[3]))
        .await
        .unwrap();
    let worker = s.net.address(Actor::WorkerC);
    // Its stake earns once warmed up and activated
    s.advance(WARMUP).await;
    worker_pool.activate(worker).await.unwrap();
    assert_eq!(
        worker_pool.worker(worker).await.unwrap().state,
        cdc_pool::WorkerState::Active
    );
    let req = cdc_pool::Requirements {
        min_vram_mb: 16_384,
        required_flags: FLAG_CUDA,
        min_stake_tier: 3,
        min_score: 0,
    };
    assert!(worker_pool.is_eligible(worker, &req).await.unwrap());

    // Two jobs, assigned in one batch, answered, finalized in one batch
    let deadline = s.net.now().await.unwrap() + 3_600;
    let mut jobs = Vec::new();
    for input in [1u128, 2] {
        let (id, _) = submitter
            .submit_job(
                s.token,
                model,
                u256(input),
                u256(JOB_FEE),
                deadline,
                &no_options(),
            )
            .await
            .unwrap();
        jobs.push(id);
    }
    assert_eq!(jobs, vec![1, 2]);
    coordinator
        .assign_jobs(&jobs.iter().map(|id| (*id, worker)).collect::<Vec<_>>())
        .await
        .unwrap();
    for id in &jobs {
        worker_jobs.submit_result(*id, u256(0xbeef)).await.unwrap();
    }
    // A batch inside the window finalizes nothing: each job is skipped, none paid.
    coordinator.finalize(&jobs).await.unwrap();
    assert_reverts(
        coordinator.finalize(&jobs[..1]).await,
        "JM: challenge window open",
    );
    assert_eq!(
        admin.job(jobs[1]).await.unwrap().job.state,
        job_mgr::JobState::Completed
    );
    s.advance(RESULT_WINDOW).await;
    coordinator.finalize(&jobs).await.unwrap();
    for id in &jobs {
        assert_eq!(
            admin.job(*id).await.unwrap().job.state,
            job_mgr::JobState::Finalized
        );
    }

    // The worker is the only weight: it claims every protocol fee
    let fees = 2 * JOB_FEE * u128::from(PROTOCOL_FEE_BPS) / 10_000;
    assert_eq!(
        worker_pool.pending_rewards(worker).await.unwrap(),
        u256(fees)
    );
    worker_pool.claim_rewards().await.unwrap();
    assert_eq!(
        balance_of(&s.net.provider, s.token, worker).await.unwrap(),
        u256(FUNDS - MIN_STAKE[3] + 2 * JOB_FEE)
    );
    assert_eq!(admin.params().await.unwrap(), job_params());
    s.assert_invariants("end").await;
}
