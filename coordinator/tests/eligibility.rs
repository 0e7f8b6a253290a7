//! The matcher's eligibility mirror agrees with `CdcPool.is_eligible` on randomized cases:
//! workers in every state the rule distinguishes (active at tier 3 with a raised reputation,
//! active at tier 1 with a lowered one, below its hardware tier's minimum, deactivated) are
//! indexed through the real indexer, then for hundreds of random requirements the mirror's
//! verdict on the indexed row equals the contract's view, and every rule decides some case.

use std::collections::BTreeSet;
use std::sync::Arc;

use ciro_chain::bindings::{cdc_pool, job_mgr};
use ciro_chain::starknet::providers::jsonrpc::HttpTransport;
use ciro_chain::starknet::providers::JsonRpcClient;
use ciro_chain::tx::call;
use ciro_coordinator::eligibility::{check, Ineligible, Requirements};
use ciro_coordinator::indexer::{felt_text, Indexer};
use ciro_coordinator::store::Store;
use ciro_protocol::flags;
use ciro_tests::fixtures::u256;
use ciro_tests::system::*;
use ciro_tests::Actor;

/// xorshift64*: reproducible cases from a fixed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick(&mut self, values: &[u64]) -> u64 {
        values[(self.next() % values.len() as u64) as usize]
    }
}

fn reason(result: &Result<(), Ineligible>) -> &'static str {
    match result {
        Ok(()) => "eligible",
        Err(Ineligible::NotActive { .. }) => "not active",
        Err(Ineligible::Vram { .. }) => "vram",
        Err(Ineligible::Flags { .. }) => "flags",
        Err(Ineligible::Score { .. }) => "score",
        Err(Ineligible::NoStakeTier) => "no stake tier",
        Err(Ineligible::StakeTier { .. }) => "stake tier",
    }
}

#[tokio::test]
async fn the_mirror_agrees_with_the_contract_on_random_cases() {
    let s = System::deploy().await.expect("deploy");
    // WorkerA: H100 at tier 3, a rated job completed (reputation up).
    let model = s.model().await;
    s.active_worker(Actor::WorkerA).await;
    let done = s.job(model).await;
    s.complete(done, Actor::WorkerA).await;
    s.advance(RESULT_WINDOW).await;
    s.send(s.jobs_as(Actor::Coordinator).finalize(&done))
        .await
        .expect("finalize");
    // WorkerB: a small GPU at tier 1, a job of a model any worker can run missed (reputation
    // down).
    s.worker(Actor::WorkerB, &small_gpu(), MIN_STAKE[1]).await;
    let anyone = job_mgr::Requirements {
        min_vram_mb: 0,
        required_flags: 0,
        min_stake_tier: 0,
        min_score: 0,
    };
    s.send(
        s.jobs_as(Actor::Admin)
            .register_model(&u256(0xbeef), &anyone, &u256(MODEL_PRICE)),
    )
    .await
    .expect("register_model");
    let missed = s.job(model + 1).await;
    s.send(
        s.jobs_as(Actor::Coordinator)
            .assign_job(&missed, &s.addr(Actor::WorkerB)),
    )
    .await
    .expect("assign_job");
    s.advance(ASSIGNMENT_TIMEOUT + 1).await;
    s.send(s.jobs_as(Actor::Coordinator).release_job(
        &missed,
        &s.addr(Actor::WorkerB),
        &s.assigned_at(missed).await,
    ))
    .await
    .expect("release_job");
    // WorkerC: an H100 staked only tier 0's minimum, below its hardware tier's.
    s.worker(Actor::WorkerC, &h100(), MIN_STAKE[0]).await;
    // The Attacker: a small GPU, staked, then deactivated.
    s.worker(Actor::Attacker, &small_gpu(), MIN_STAKE[0]).await;
    s.send(s.pool_as(Actor::Attacker).deactivate())
        .await
        .expect("deactivate");

    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("m.db").display()))
        .await
        .expect("store");
    let node = Arc::new(JsonRpcClient::new(HttpTransport::new(s.net.rpc_url())));
    Indexer::new(node, store.clone(), &s.manifest, 1_000)
        .expect("indexer")
        .catch_up()
        .await
        .expect("catch up");

    let workers = [
        Actor::WorkerA,
        Actor::WorkerB,
        Actor::WorkerC,
        Actor::Attacker,
    ];
    let mut rows = Vec::new();
    for actor in workers {
        let row = store
            .worker(&felt_text(s.addr(actor).0))
            .await
            .expect("read")
            .expect("indexed");
        rows.push((actor, row));
    }
    let scores: Vec<u64> = rows.iter().map(|(_, row)| row.score).collect();
    assert!(
        scores[0] > 5_000 && scores[1] < 5_000,
        "reputations moved: {scores:?}"
    );
    let mut score_choices = vec![0, 5_000, 10_000];
    for score in &scores {
        score_choices.extend([score.saturating_sub(1), *score, score + 1]);
    }

    let mut rng = Rng(0x00c1_2026_1122);
    let mut seen = BTreeSet::new();
    for case in 0..150 {
        let requirements = Requirements {
            min_vram_mb: rng.pick(&[0, 8_191, 8_192, 8_193, 16_384, 81_920, 81_921]),
            required_flags: rng.next() & flags::ALL & rng.next(),
            min_stake_tier: rng.pick(&[0, 0, 1, 2, 3]),
            min_score: rng.pick(&score_choices),
        };
        let on_chain = cdc_pool::Requirements {
            min_vram_mb: u32::try_from(requirements.min_vram_mb).expect("u32"),
            required_flags: requirements.required_flags,
            min_stake_tier: u8::try_from(requirements.min_stake_tier).expect("u8"),
            min_score: u32::try_from(requirements.min_score).expect("u32"),
        };
        for (actor, row) in &rows {
            let mirrored = check(row, &requirements);
            let chain = call(s.pool_reader().is_eligible(&s.addr(*actor), &on_chain))
                .await
                .expect("is_eligible");
            assert_eq!(
                mirrored.is_ok(),
                chain,
                "case {case}, {actor:?}, {requirements:?}: mirror says {mirrored:?}, the contract {chain}"
            );
            seen.insert(reason(&mirrored));
        }
    }
    // Every rule decided some case: the comparison is not vacuous.
    for expected in [
        "eligible",
        "not active",
        "vram",
        "flags",
        "score",
        "stake tier",
    ] {
        assert!(
            seen.contains(expected),
            "no case decided by {expected}: {seen:?}"
        );
    }
}
