//! Flow tests: whole stories across JobMgr and the CDC Pool. Each opens with the story and
//! ends with a conservation check over every party's token balance (nothing created, nothing
//! lost) and the contracts' own invariants.

use ciro_chain::bindings::cdc_pool::{SlashReason, SlashStatus, WorkerState};
use ciro_chain::bindings::job_mgr::JobState;
use ciro_chain::tx::call;
use ciro_tests::fixtures::u256;
use ciro_tests::system::*;
use ciro_tests::Actor;

/// Σ over every token holder of these flows (the funded parties, the treasury, the slasher)
/// and both contracts: must equal what was minted.
async fn total_supply_held(s: &System) -> u128 {
    let mut total = s.balance(s.pool).await + s.balance(s.job_mgr).await;
    for actor in FUNDED.into_iter().chain([TREASURY, SLASHER]) {
        total += s.balance_of(actor).await;
    }
    total
}

/// Tokens minted by `System::deploy`: FUNDS to each funded party.
const MINTED: u128 = FUNDED.len() as u128 * FUNDS;

#[tokio::test]
async fn flow_1_model_stake_submit_assign_result_finalize_rewards_claimed() {
    // Story: the admin registers a model; WorkerA registers an H100 and stakes its tier's
    // minimum; the Submitter pays 1,000 for a job; the coordinator assigns it to WorkerA, who
    // commits a result; after the challenge window anyone finalizes it: WorkerA gets 950, the
    // 50 protocol fee flows to the pool's reward stream, where WorkerA (the only weight, its
    // stake warmed up and activated before the job) claims it. Its reputation records one
    // success.
    let s = System::deploy().await.unwrap();
    let model = s.model().await;
    s.active_worker(Actor::WorkerA).await;
    s.warm_up(Actor::WorkerA).await;
    assert_eq!(
        s.worker_info(Actor::WorkerA).await.state,
        WorkerState::Active
    );
    let job = s.job(model).await;
    assert_eq!(s.job_info(job).await.job.state, JobState::Queued);
    s.send(
        s.jobs_as(Actor::Coordinator)
            .assign_job(&job, &s.addr(Actor::WorkerA)),
    )
    .await
    .unwrap();
    s.advance(30).await;
    s.send(s.jobs_as(Actor::WorkerA).submit_result(&job, &u256(0xabc)))
        .await
        .unwrap();
    s.assert_invariants("after the result").await;
    s.advance(RESULT_WINDOW).await;
    s.send(s.jobs_as(Actor::Attacker).finalize(&job))
        .await
        .unwrap();

    let info = s.job_info(job).await;
    assert_eq!(info.job.state, JobState::Finalized);
    let fee = JOB_FEE * u128::from(PROTOCOL_FEE_BPS) / 10_000;
    assert_eq!(
        s.balance_of(Actor::WorkerA).await,
        FUNDS - MIN_STAKE[3] + JOB_FEE - fee
    );
    assert_eq!(
        call(s.pool_reader().pending_rewards(&s.addr(Actor::WorkerA)))
            .await
            .unwrap(),
        u256(fee)
    );
    s.send(s.pool_as(Actor::WorkerA).claim_rewards())
        .await
        .unwrap();
    assert_eq!(
        s.balance_of(Actor::WorkerA).await,
        FUNDS - MIN_STAKE[3] + JOB_FEE
    );
    assert_eq!(s.balance_of(Actor::Submitter).await, FUNDS - JOB_FEE);
    let rep = s.worker_info(Actor::WorkerA).await.reputation;
    assert_eq!((rep.completed, rep.failed, rep.missed), (1, 0, 0));
    assert_eq!(rep.score, 5_000 + 5_000 / 8);
    assert!(rep.avg_latency >= 30);

    s.assert_invariants("end").await;
    assert_eq!(total_supply_held(&s).await, MINTED);
}

#[tokio::test]
async fn flow_2_disputes_worker_at_fault_refunded_and_slashed_worker_right_paid_with_bond() {
    // Story: two jobs get results. The Submitter disputes both. On the first the arbiter finds
    // WorkerA at fault: the Submitter gets fee and bond back, WorkerA is slashed 10% of its
    // stake (half to the Submitter, half to the treasury) and a failure is recorded. On the
    // second WorkerA was right: it is paid as in finalize plus the Submitter's bond.
    let s = System::deploy().await.unwrap();
    let (model, first) = s.completed_job().await;
    let second = s.job(model).await;
    s.complete(second, Actor::WorkerA).await;
    for job in [first, second] {
        s.send(
            s.jobs_as(Actor::Submitter)
                .open_dispute(&job, &felt(0xe71d)),
        )
        .await
        .unwrap();
    }
    assert_eq!(
        s.balance_of(Actor::Submitter).await,
        FUNDS - 2 * JOB_FEE - 2 * DISPUTE_BOND
    );
    s.assert_invariants("two disputes open").await;

    s.send(
        s.jobs_as(Actor::Arbiter)
            .resolve_dispute(&first, &true, &1_000),
    )
    .await
    .unwrap();
    let slash = MIN_STAKE[3] / 10;
    let to_submitter = slash * u128::from(BENEFICIARY_SHARE_BPS) / 10_000;
    assert_eq!(s.job_info(first).await.job.state, JobState::Refunded);
    assert_eq!(
        s.balance_of(Actor::Submitter).await,
        FUNDS - JOB_FEE - DISPUTE_BOND + to_submitter
    );
    assert_eq!(s.balance_of(TREASURY).await, slash - to_submitter);
    let worker = s.worker_info(Actor::WorkerA).await;
    assert_eq!(worker.stake, u256(MIN_STAKE[3] - slash));
    assert_eq!(worker.reputation.failed, 1);

    s.send(
        s.jobs_as(Actor::Arbiter)
            .resolve_dispute(&second, &false, &0),
    )
    .await
    .unwrap();
    let fee = JOB_FEE * u128::from(PROTOCOL_FEE_BPS) / 10_000;
    assert_eq!(s.job_info(second).await.job.state, JobState::Finalized);
    assert_eq!(
        s.balance_of(Actor::WorkerA).await,
        FUNDS - MIN_STAKE[3] + JOB_FEE - fee + DISPUTE_BOND
    );
    assert_eq!(s.worker_info(Actor::WorkerA).await.reputation.completed, 1);

    s.assert_invariants("end").await;
    assert_eq!(total_supply_held(&s).await, MINTED);
}

#[tokio::test]
async fn flow_2b_a_batch_of_inputs_is_escrowed_run_and_paid_as_one_job() {
    // Story: the Submitter pays 8 × 1,000 for a batch of 8 inputs (one manifest); the
    // coordinator assigns it with `assign_jobs` to WorkerA, who commits one output manifest;
    // after the window `finalize_jobs` pays WorkerA 8,000 − 5% in one payment, the 400
    // protocol fee goes through the pool (to the treasury: no stake has warmed up), and one success is recorded (a batch is
    // one outcome). Then a batch the Submitter cancels comes back whole.
    let s = System::deploy().await.unwrap();
    let model = s.model().await;
    s.active_worker(Actor::WorkerA).await;
    let deadline = s.net.now().await.unwrap() + 3_600;
    let fee = 8 * JOB_FEE;
    let submitter = s.jobs_as(Actor::Submitter);
    for manifest in [0xba7c, 0xba7d] {
        s.send(submitter.submit_batch(
            &model,
            &u256(manifest),
            &8,
            &u256(fee),
            &deadline,
            &no_options(),
        ))
        .await
        .unwrap();
    }
    s.send(s.jobs_as(Actor::Coordinator).assign_jobs(&vec![
        ciro_chain::bindings::job_mgr::Assignment {
            job_id: 1,
            worker: s.addr(Actor::WorkerA),
        },
    ]))
    .await
    .unwrap();
    s.send(s.jobs_as(Actor::WorkerA).submit_result(&1, &u256(0x0a7)))
        .await
        .unwrap();
    s.send(submitter.cancel_job(&2)).await.unwrap();
    s.assert_invariants("result in, one batch cancelled").await;
    s.advance(RESULT_WINDOW).await;
    s.send(s.jobs_as(Actor::Attacker).finalize_jobs(&vec![1]))
        .await
        .unwrap();

    let protocol_fee = fee * u128::from(PROTOCOL_FEE_BPS) / 10_000;
    let info = s.job_info(1).await;
    assert_eq!((info.job.state, info.items), (JobState::Finalized, 8));
    assert_eq!(
        s.balance_of(Actor::WorkerA).await,
        FUNDS - MIN_STAKE[3] + fee - protocol_fee
    );
    assert_eq!(s.balance_of(Actor::Submitter).await, FUNDS - fee);
    assert_eq!(s.job_info(2).await.job.state, JobState::Cancelled);
    let rep = s.worker_info(Actor::WorkerA).await.reputation;
    assert_eq!((rep.completed, rep.failed, rep.missed), (1, 0, 0));
    // Nobody's stake has warmed up: the pool passes the protocol fee to the treasury.
    assert_eq!(s.balance_of(TREASURY).await, protocol_fee);
    s.assert_invariants("end").await;
    assert_eq!(total_supply_held(&s).await, MINTED);
}

#[tokio::test]
async fn flow_3_timeout_release_reassign_complete_then_deadline_expire_refund() {
    // Story: WorkerA sits on an assignment; after the timeout anyone releases it (a miss for
    // WorkerA); the coordinator reassigns it to WorkerB, who completes it and is paid. A second
    // job is assigned to WorkerB and never answered: after its deadline anyone expires it, the
    // Submitter is refunded in full and WorkerB is recorded a failure.
    let s = System::deploy().await.unwrap();
    let (model, job) = s.assigned_job().await;
    s.active_worker(Actor::WorkerB).await;
    s.advance(ASSIGNMENT_TIMEOUT).await;
    s.send(s.jobs_as(Actor::Attacker).release_job(
        &job,
        &s.addr(Actor::WorkerA),
        &s.assigned_at(job).await,
    ))
    .await
    .unwrap();
    assert_eq!(s.job_info(job).await.job.state, JobState::Queued);
    assert_eq!(s.worker_info(Actor::WorkerA).await.reputation.missed, 1);
    s.complete(job, Actor::WorkerB).await;
    s.advance(RESULT_WINDOW).await;
    s.send(s.jobs_as(Actor::WorkerB).finalize(&job))
        .await
        .unwrap();
    let fee = JOB_FEE * u128::from(PROTOCOL_FEE_BPS) / 10_000;
    assert_eq!(
        s.balance_of(Actor::WorkerB).await,
        FUNDS - MIN_STAKE[3] + JOB_FEE - fee
    );

    let late = s.job(model).await;
    s.send(
        s.jobs_as(Actor::Coordinator)
            .assign_job(&late, &s.addr(Actor::WorkerB)),
    )
    .await
    .unwrap();
    s.advance(3_601).await;
    let before = s.balance_of(Actor::Submitter).await;
    s.send(s.jobs_as(Actor::Attacker).expire(&late))
        .await
        .unwrap();
    assert_eq!(s.job_info(late).await.job.state, JobState::Expired);
    assert_eq!(s.balance_of(Actor::Submitter).await, before + JOB_FEE);
    assert_eq!(s.worker_info(Actor::WorkerB).await.reputation.failed, 1);

    s.assert_invariants("end").await;
    assert_eq!(total_supply_held(&s).await, MINTED);
}

#[tokio::test]
async fn flow_4_stake_delegate_rewards_accrue_unstake_only_after_the_window() {
    // Story: WorkerA stakes 8,000 and announces a 10% commission, which applies after the
    // exit window's notice; the Delegator then delegates 2,000 to it (settling the worker, so
    // the commission is in force and the worker's stake, past its warm-up, activated); the
    // delegation warms up and is activated. 1,000 of rewards arrive: 800 for WorkerA's own stake, 200 for the delegation of which
    // 20 is commission. Both claim. Then both exit: nothing can be withdrawn before the exit
    // window, everything after it.
    let s = System::deploy().await.unwrap();
    s.active_worker(Actor::WorkerA).await;
    s.send(s.pool_as(Actor::WorkerA).set_commission(&1_000))
        .await
        .unwrap();
    s.advance(EXIT_WINDOW).await;
    s.send(
        s.pool_as(Actor::Delegator)
            .delegate(&s.addr(Actor::WorkerA), &u256(2_000)),
    )
    .await
    .unwrap();
    s.warm_up_delegation(Actor::Delegator, Actor::WorkerA).await;
    assert_eq!(
        s.worker_info(Actor::WorkerA).await.record.commission_bps,
        1_000
    );
    assert_eq!(
        call(s.pool_reader().total_weight()).await.unwrap(),
        u256(10_000)
    );
    s.send(s.pool_as(Actor::Attacker).notify_reward(&u256(1_000)))
        .await
        .unwrap();
    let reader = s.pool_reader();
    assert_eq!(
        call(reader.pending_rewards(&s.addr(Actor::WorkerA)))
            .await
            .unwrap(),
        u256(820)
    );
    assert_eq!(
        call(reader.pending_rewards(&s.addr(Actor::Delegator)))
            .await
            .unwrap(),
        u256(180)
    );
    s.send(s.pool_as(Actor::WorkerA).claim_rewards())
        .await
        .unwrap();
    s.send(s.pool_as(Actor::Delegator).claim_rewards())
        .await
        .unwrap();

    s.send(
        s.pool_as(Actor::WorkerA)
            .unstake_intent(&u256(MIN_STAKE[3])),
    )
    .await
    .unwrap();
    s.send(
        s.pool_as(Actor::Delegator)
            .undelegate_intent(&s.addr(Actor::WorkerA), &u256(2_000)),
    )
    .await
    .unwrap();
    assert_eq!(
        s.worker_info(Actor::WorkerA).await.state,
        WorkerState::Exiting
    );
    s.advance(EXIT_WINDOW - 10).await;
    ciro_tests::assert::assert_reverts(
        s.send(
            s.pool_as(Actor::Attacker)
                .unstake_action(&s.addr(Actor::WorkerA)),
        )
        .await,
        "POOL: exit window not over",
    );
    s.advance(10).await;
    s.send(
        s.pool_as(Actor::Attacker)
            .unstake_action(&s.addr(Actor::WorkerA)),
    )
    .await
    .unwrap();
    s.send(
        s.pool_as(Actor::Attacker)
            .undelegate_action(&s.addr(Actor::Delegator), &s.addr(Actor::WorkerA)),
    )
    .await
    .unwrap();
    assert_eq!(s.balance_of(Actor::WorkerA).await, FUNDS + 820);
    assert_eq!(s.balance_of(Actor::Delegator).await, FUNDS + 180);
    assert_eq!(s.balance_of(Actor::Attacker).await, FUNDS - 1_000);

    s.assert_invariants("end").await;
    assert_eq!(
        s.balance(s.pool).await,
        0,
        "everything paid out, no dust at these amounts"
    );
    assert_eq!(total_supply_held(&s).await, MINTED);
}

#[tokio::test]
async fn flow_5_slasher_slash_challenged_and_overturned_then_unchallenged_slash_executed() {
    // Story: the slasher accuses WorkerA of being unavailable; WorkerA challenges with a bond
    // and the arbiter overturns it: nothing is cut and the bond comes back. The slasher then
    // accuses it of poor performance; WorkerA lets the window pass and anyone executes it: 5%
    // of its stake goes to the treasury (there is no wronged party).
    let s = System::deploy().await.unwrap();
    s.active_worker(Actor::WorkerA).await;
    let worker = s.addr(Actor::WorkerA);
    let zero = ciro_chain::cainome::cairo_serde::ContractAddress(Default::default());
    s.send(s.pool_as(SLASHER).slash(
        &worker,
        &SlashReason::Unavailable,
        &0,
        &felt(0xe1),
        &zero,
        &u256(0),
    ))
    .await
    .unwrap();
    // An open slash locks the worker's exit; it stays assignable.
    let info = s.worker_info(Actor::WorkerA).await;
    assert_eq!(
        (info.state, info.record.open_slashes),
        (WorkerState::Active, 1)
    );
    s.send(s.pool_as(Actor::WorkerA).challenge_slash(&1))
        .await
        .unwrap();
    assert_eq!(
        s.balance_of(Actor::WorkerA).await,
        FUNDS - MIN_STAKE[3] - CHALLENGE_BOND
    );
    s.assert_invariants("challenge bond held").await;
    s.send(s.pool_as(Actor::Arbiter).resolve_slash(&1, &false))
        .await
        .unwrap();
    assert_eq!(
        call(s.pool_reader().get_slash(&1)).await.unwrap().status,
        SlashStatus::Overturned
    );
    assert_eq!(s.balance_of(Actor::WorkerA).await, FUNDS - MIN_STAKE[3]);
    assert_eq!(
        s.worker_info(Actor::WorkerA).await.state,
        WorkerState::Active
    );

    s.send(s.pool_as(SLASHER).slash(
        &worker,
        &SlashReason::PoorPerformance,
        &0,
        &felt(0xe2),
        &zero,
        &u256(0),
    ))
    .await
    .unwrap();
    s.advance(SLASH_CHALLENGE_WINDOW + 1).await;
    s.send(s.pool_as(Actor::Attacker).execute_slash(&2))
        .await
        .unwrap();
    let cut = MIN_STAKE[3] * u128::from(SLASH_BPS[1]) / 10_000;
    assert_eq!(s.balance_of(TREASURY).await, cut);
    let info = s.worker_info(Actor::WorkerA).await;
    assert_eq!(info.stake, u256(MIN_STAKE[3] - cut));
    assert_eq!(
        info.state,
        WorkerState::Inactive,
        "below its tier's minimum now"
    );

    s.assert_invariants("end").await;
    assert_eq!(total_supply_held(&s).await, MINTED);
}

#[tokio::test]
async fn flow_7_pause_stops_new_business_and_every_exit_still_works() {
    // Story: with a job in each state that can exit (queued, completed, assigned past its
    // deadline), stake exiting and rewards accrued, the pauser pauses both contracts. New
    // business (models, jobs, assignments, workers, stake, delegation) is refused; cancels,
    // finalization, expiry, disputes, claims and unstake actions all still go through.
    let s = System::deploy().await.unwrap();
    let (model, completed) = s.completed_job().await;
    s.warm_up(Actor::WorkerA).await;
    let queued = s.job(model).await;
    let stale = s.job(model).await;
    s.send(
        s.jobs_as(Actor::Coordinator)
            .assign_job(&stale, &s.addr(Actor::WorkerA)),
    )
    .await
    .unwrap();
    s.send(s.pool_as(Actor::Attacker).notify_reward(&u256(100)))
        .await
        .unwrap();
    s.send(s.pool_as(Actor::WorkerA).unstake_intent(&u256(1_000)))
        .await
        .unwrap();
    s.send(s.jobs_as(Actor::Pauser).pause()).await.unwrap();
    s.send(s.pool_as(Actor::Pauser).pause()).await.unwrap();

    use ciro_tests::assert::assert_reverts;
    assert_reverts(
        s.send(
            s.jobs_as(Actor::Admin)
                .register_model(&u256(1), &requirements(), &u256(1)),
        )
        .await,
        "GOV: paused",
    );
    let deadline = s.net.now().await.unwrap() + 600;
    assert_reverts(
        s.send(s.jobs_as(Actor::Submitter).submit_job(
            &model,
            &u256(1),
            &u256(JOB_FEE),
            &deadline,
            &no_options(),
        ))
        .await,
        "GOV: paused",
    );
    assert_reverts(
        s.send(s.jobs_as(Actor::Submitter).submit_batch(
            &model,
            &u256(1),
            &2,
            &u256(2 * JOB_FEE),
            &deadline,
            &no_options(),
        ))
        .await,
        "GOV: paused",
    );
    assert_reverts(
        s.send(
            s.jobs_as(Actor::Coordinator)
                .assign_job(&queued, &s.addr(Actor::WorkerA)),
        )
        .await,
        "GOV: paused",
    );
    assert_reverts(
        s.send(s.pool_as(Actor::WorkerB).register_worker(&h100(), &felt(1)))
            .await,
        "GOV: paused",
    );
    assert_reverts(
        s.send(s.pool_as(Actor::WorkerA).stake(&u256(1))).await,
        "GOV: paused",
    );
    assert_reverts(
        s.send(
            s.pool_as(Actor::Delegator)
                .delegate(&s.addr(Actor::WorkerA), &u256(1)),
        )
        .await,
        "GOV: paused",
    );

    s.send(s.jobs_as(Actor::Submitter).cancel_job(&queued))
        .await
        .unwrap();
    s.advance(RESULT_WINDOW + 1).await;
    s.send(s.jobs_as(Actor::Attacker).finalize(&completed))
        .await
        .unwrap();
    s.send(s.jobs_as(Actor::Attacker).expire(&stale))
        .await
        .unwrap();
    s.send(s.pool_as(Actor::WorkerA).claim_rewards())
        .await
        .unwrap();
    s.advance(EXIT_WINDOW).await;
    s.send(
        s.pool_as(Actor::Attacker)
            .unstake_action(&s.addr(Actor::WorkerA)),
    )
    .await
    .unwrap();
    for job in [completed, queued, stale] {
        assert_ne!(s.job_info(job).await.job.state, JobState::Queued);
    }
    assert_eq!(
        s.balance_of(Actor::Submitter).await,
        FUNDS - 3 * JOB_FEE + 2 * JOB_FEE
    );

    // Unpaused, business resumes.
    s.send(s.jobs_as(Actor::Pauser).unpause()).await.unwrap();
    s.job(model).await;

    // The timelocked upgrade: JobMgr's class can be replaced only after the delay, and the
    // state survives (here the class is replaced by itself, re-declared classes being equal).
    let class = ciro_chain::cainome::cairo_serde::ClassHash(s.net.class_hash("JobMgr").unwrap());
    s.send(s.jobs_as(Actor::Admin).schedule_upgrade(&class))
        .await
        .unwrap();
    assert_reverts(
        s.send(s.jobs_as(Actor::Admin).execute_upgrade()).await,
        "GOV: upgrade delay not passed",
    );
    s.advance(UPGRADE_DELAY).await;
    s.send(s.jobs_as(Actor::Admin).execute_upgrade())
        .await
        .unwrap();
    assert_eq!(call(s.jobs_reader().job_count()).await.unwrap(), 4);

    s.assert_invariants("end").await;
    assert_eq!(total_supply_held(&s).await, MINTED);
}

/// The second pass's accounting invariants, read back from both contracts: each worker's
/// `holds` equals its jobs that are Assigned, Completed or Disputed, and its `open_slashes`
/// equals its slashes that are Pending or Challenged.
async fn assert_holds_and_open_slashes(s: &System, workers: &[Actor], label: &str) {
    let jobs = call(s.jobs_reader().job_count()).await.unwrap();
    let mut slashes = Vec::new();
    let mut id = 1;
    while let Ok(slash) = call(s.pool_reader().get_slash(&id)).await {
        slashes.push(slash);
        id += 1;
    }
    for &w in workers {
        let mut held = 0;
        for job in 1..=jobs {
            let info = s.job_info(job).await.job;
            if info.worker == s.addr(w)
                && matches!(
                    info.state,
                    JobState::Assigned | JobState::Completed | JobState::Disputed
                )
            {
                held += 1;
            }
        }
        let open = slashes
            .iter()
            .filter(|x| {
                x.worker == s.addr(w)
                    && matches!(x.status, SlashStatus::Pending | SlashStatus::Challenged)
            })
            .count() as u32;
        let record = s.worker_info(w).await.record;
        assert_eq!(record.holds, held, "{label}: holds of {w:?}");
        assert_eq!(record.open_slashes, open, "{label}: open slashes of {w:?}");
    }
}

/// Every worker's warming stake is within its stake, its delegators' warming within its
/// delegations, and together they make the pool's total warming (the part of the weight that
/// does not earn).
async fn assert_warming_within_stake(s: &System, workers: &[Actor], label: &str) {
    let mut warming = 0;
    for w in workers {
        let info = s.worker_info(*w).await;
        assert!(
            info.warming.amount.low <= info.stake.low,
            "{label}: {w:?} warming within its stake"
        );
        assert!(
            info.delegated_warming.low <= info.delegated.low,
            "{label}: {w:?} delegators' warming within its delegations"
        );
        warming += info.warming.amount.low + info.delegated_warming.low;
    }
    let totals = call(s.pool_reader().totals()).await.unwrap();
    assert_eq!(totals.warming.low, warming, "{label}: total warming");
    assert_eq!(
        call(s.pool_reader().total_weight()).await.unwrap().low,
        totals.stakes.low + totals.delegations.low - warming,
        "{label}: weight is what does not warm"
    );
}

#[tokio::test]
async fn flow_random_operations_never_break_conservation() {
    // Story: three workers, a delegator, a submitter, a verifier, the slasher, the admin and an
    // outsider do 120 operations chosen by a seeded generator: stakes and exits, delegations,
    // rewards and claims, jobs submitted (with options), assigned one by one and in batches
    // with invalid entries, released, answered, finalized one by one and in batches with
    // invalid entries, disputed by the submitter or the verifier and resolved or settled
    // after the arbitration deadline, expired, slashes opened, challenged, executed, resolved
    // and settled, parameter changes scheduled and executed through the timelock, time
    // passing. Many are refused (their preconditions do not hold at that moment); whatever
    // happens, after every step both contracts' invariants hold, no token is created or lost,
    // and every worker's holds and open slashes match its jobs and slashes.
    use ciro_chain::bindings::job_mgr::{Assignment, JobOptions};
    use ciro_chain::ChainError;
    let s = System::deploy().await.unwrap();
    let model = s.model().await;
    let workers = [Actor::WorkerA, Actor::WorkerB, Actor::WorkerC];
    for w in workers {
        s.active_worker(w).await;
    }
    s.advance(WARMUP).await;
    for w in workers {
        s.activate(w).await;
    }
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let (mut refused, mut done) = (0, 0);
    for step in 0..120 {
        let w = workers[next(3) as usize];
        let other = workers[next(3) as usize];
        let job_count = call(s.jobs_reader().job_count()).await.unwrap();
        let job = 1 + next(job_count.max(1));
        let job2 = 1 + next(job_count.max(1) + 2);
        let slash_id = 1 + next(4);
        let amount = u256(1 + u128::from(next(2_000)));
        let result: Result<_, ChainError> = match next(26) {
            0 => s.send(s.pool_as(w).stake(&amount)).await,
            1 => s.send(s.pool_as(w).unstake_intent(&amount)).await,
            2 => {
                s.send(s.pool_as(Actor::Attacker).unstake_action(&s.addr(w)))
                    .await
            }
            3 => {
                s.send(s.pool_as(Actor::Delegator).delegate(&s.addr(w), &amount))
                    .await
            }
            4 => {
                s.send(
                    s.pool_as(Actor::Delegator)
                        .undelegate_intent(&s.addr(w), &amount),
                )
                .await
            }
            5 => {
                s.send(s.pool_as(Actor::Attacker).notify_reward(&amount))
                    .await
            }
            6 => s.send(s.pool_as(w).claim_rewards()).await,
            7 => {
                let deadline = s.net.now().await.unwrap() + 1_800;
                let options = JobOptions {
                    min_vram_mb: [0, 0, 40_960][next(3) as usize],
                    extra_flags: [0, FLAG_BF16, FLAG_TEE][next(3) as usize],
                    min_stake_tier: [0, 0, 3][next(3) as usize],
                    min_score: [0, 0, 5_500][next(3) as usize],
                    release_after: [0, 60, 3_600][next(3) as usize],
                };
                let fee = [JOB_FEE, MIN_RATED_FEE, MODEL_PRICE][next(3) as usize];
                s.send(s.jobs_as(Actor::Submitter).submit_job(
                    &model,
                    &u256(1),
                    &u256(fee),
                    &deadline,
                    &options,
                ))
                .await
            }
            8 => {
                s.send(s.jobs_as(Actor::Coordinator).assign_job(&job, &s.addr(w)))
                    .await
            }
            9 => s.send(s.jobs_as(w).submit_result(&job, &u256(2))).await,
            10 => s.send(s.jobs_as(Actor::Attacker).finalize(&job)).await,
            11 => {
                let disputer = [Actor::Submitter, Actor::Verifier][next(2) as usize];
                s.send(s.jobs_as(disputer).open_dispute(&job, &felt(1)))
                    .await
            }
            12 => {
                let fault = next(2) == 0;
                let bps = [0, 1_000, MAX_DISPUTE_SLASH_BPS][next(3) as usize];
                s.send(
                    s.jobs_as(Actor::Arbiter)
                        .resolve_dispute(&job, &fault, &bps),
                )
                .await
            }
            13 => {
                let batch = vec![
                    Assignment {
                        job_id: job,
                        worker: s.addr(w),
                    },
                    Assignment {
                        job_id: job2,
                        worker: s.addr(other),
                    },
                ];
                s.send(s.jobs_as(Actor::Coordinator).assign_jobs(&batch))
                    .await
            }
            14 => {
                s.send(
                    s.jobs_as(Actor::Attacker)
                        .finalize_jobs(&vec![job, job2, job]),
                )
                .await
            }
            15 => {
                s.send(s.jobs_as(Actor::Attacker).settle_dispute(&job))
                    .await
            }
            16 => {
                let releaser = [Actor::Coordinator, Actor::Attacker][next(2) as usize];
                // Half the time the job's own worker and assignment (the release can land),
                // else a random worker (refused unless it is the job's) or an assignment time
                // a second off the job's (always refused).
                let info = s.job_info(job).await.job;
                let (named, at) = match next(4) {
                    0 | 1 => (info.worker, info.assigned_at),
                    2 => (s.addr(w), info.assigned_at),
                    _ => (info.worker, info.assigned_at.wrapping_sub(1)),
                };
                s.send(s.jobs_as(releaser).release_job(&job, &named, &at))
                    .await
            }
            17 => {
                let reason =
                    [SlashReason::Unavailable, SlashReason::Fraud][next(2) as usize].clone();
                // A slasher naming a beneficiary is refused: half the time it tries.
                let beneficiary = if next(2) == 0 {
                    nobody()
                } else {
                    s.addr(Actor::Submitter)
                };
                s.send(s.pool_as(SLASHER).slash(
                    &s.addr(w),
                    &reason,
                    &0,
                    &felt(2),
                    &beneficiary,
                    &u256(JOB_FEE),
                ))
                .await
            }
            18 => s.send(s.pool_as(w).challenge_slash(&slash_id)).await,
            19 => {
                let upheld = next(2) == 0;
                s.send(s.pool_as(Actor::Arbiter).resolve_slash(&slash_id, &upheld))
                    .await
            }
            20 => {
                if next(2) == 0 {
                    s.send(s.pool_as(Actor::Attacker).execute_slash(&slash_id))
                        .await
                } else {
                    s.send(s.pool_as(Actor::Attacker).settle_slash(&slash_id))
                        .await
                }
            }
            21 => {
                let params = ciro_chain::bindings::job_mgr::JobParams {
                    protocol_fee_bps: [0, PROTOCOL_FEE_BPS, 1_000][next(3) as usize],
                    challenge_window: [60, RESULT_WINDOW][next(2) as usize],
                    ..job_params()
                };
                s.send(s.jobs_as(Actor::Admin).schedule_params(&params))
                    .await
            }
            22 => s.send(s.jobs_as(Actor::Admin).execute_params()).await,
            23 => {
                s.send(s.pool_as(Actor::Attacker).activate(&s.addr(w)))
                    .await
            }
            24 => {
                s.send(
                    s.pool_as(Actor::Attacker)
                        .activate_delegation(&s.addr(Actor::Delegator), &s.addr(w)),
                )
                .await
            }
            _ => {
                s.advance([600, 4_000, ARBITRATION_WINDOW + 1][next(3) as usize])
                    .await;
                s.send(s.jobs_as(Actor::Attacker).expire(&job)).await
            }
        };
        match result {
            Ok(_) => done += 1,
            Err(ChainError::Reverted { .. }) => refused += 1,
            Err(other) => panic!("step {step}: not a contract revert: {other}"),
        }
        let label = format!("step {step}");
        s.assert_invariants(&label).await;
        assert_eq!(
            total_supply_held(&s).await,
            MINTED,
            "{label}: supply conserved"
        );
        assert_holds_and_open_slashes(&s, &workers, &label).await;
        assert_warming_within_stake(&s, &workers, &label).await;
    }
    eprintln!("{done} operations done, {refused} refused by the contracts");
    assert!(
        done >= 30 && refused >= 10,
        "a mix of both: {done} done, {refused} refused"
    );
}
