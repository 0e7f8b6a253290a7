//! End-to-end throughput of the network on one devnet, against the same devnet's raw
//! throughput of plain STRK transfers measured in the same run.
//!
//!   cargo bench -p ciro-cli --bench network --profile dev
//!
//! The network: a `ciro-coordinator` (SQLite) and three `ciro-worker` agents (libtorch on the
//! CPU, Python torch's MLP) on a test deployment; batching everywhere the contracts allow:
//! each submitter's jobs in one multicall, `assign_jobs`, the workers' results in multicalls,
//! `finalize_jobs`. Measured:
//! - transfers/s: STRK transfers from five accounts at once, each waiting for its receipt;
//! - jobs/s: from the first submission to the last job finalized (the challenge window is
//!   passed on devnet's clock as soon as every result is in);
//! - the whole lifecycle's on-chain fee per job (the STRK the submitters, the coordinator and
//!   the workers spent), as a ratio to one transfer's fee;
//! - submit → result latency (the job's submission landed → the coordinator's `completed`
//!   event for it), p50 and p99.
//!
//! Targets (issue 14): jobs/s ÷ transfers/s ≥ 2; lifecycle fee per job ≤ 1 transfer.
//!
//! `CIRO_BENCH_ITEMS=N` (default 1) sends each submitter's inputs as batches of N (JobMgr's
//! `submit_batch`: one on-chain job per N inputs, its manifest and inputs uploaded before the
//! clock starts, so the leader records the manifests as it first sees the batches), to
//! workers started with `--merge-batch-items` (a batch's inputs share forward passes); the ratios
//! are then per input: inputs/s ÷ transfers/s, and the lifecycle fee per input.
//!
//!   CIRO_BENCH_ITEMS=32 cargo bench -p ciro-cli --bench network --profile dev

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ciro_api::coordinator::CoordinatorClient;
use ciro_chain::bindings::job_mgr;
use ciro_chain::clients::{balance_of, u256, u256_from_digest};
use ciro_chain::starknet::accounts::Account;
use ciro_chain::starknet::core::types::Felt;
use ciro_chain::starknet::core::utils::get_selector_from_name;
use ciro_chain::tx::{call, send};
use ciro_tests::net::STRK;
use ciro_tests::system::*;
use ciro_tests::Actor;
use support::*;

const SUBMITTERS: [Actor; 4] = [
    Actor::Submitter,
    Actor::Delegator,
    Actor::Attacker,
    Actor::Verifier,
];
const WORKERS: [Actor; 3] = [Actor::WorkerA, Actor::WorkerB, Actor::WorkerC];
/// Inputs each submitter sends (rounded up to a whole number of batches).
const INPUTS_EACH: u64 = 50;
const TRANSFERS_EACH: u64 = 20;
const WAIT: Duration = Duration::from_secs(900);

async fn strk(s: &System, who: Felt) -> u128 {
    balance_of(&s.net.provider, STRK, who)
        .await
        .expect("STRK")
        .low
}

/// STRK transfers from the submitters at once: transfers/s and the mean fee (FRI).
async fn transfers(s: &System) -> (f64, u128) {
    let receiver = s.net.address(Actor::Arbiter);
    let start = Instant::now();
    let tasks = SUBMITTERS.iter().map(|actor| async move {
        let account = s.net.account(*actor);
        let mut fees = 0u128;
        for _ in 0..TRANSFERS_EACH {
            let transfer = ciro_chain::starknet::core::types::Call {
                to: STRK,
                selector: get_selector_from_name("transfer").expect("selector"),
                calldata: vec![receiver, Felt::ONE, Felt::ZERO],
            };
            let outcome = send(&s.net.provider, account.execute_v3(vec![transfer]))
                .await
                .expect("transfer");
            fees += u128::try_from(outcome.actual_fee().to_biguint()).expect("fee");
        }
        fees
    });
    let fees: u128 = futures_util::future::join_all(tasks)
        .await
        .into_iter()
        .sum();
    let n = TRANSFERS_EACH * SUBMITTERS.len() as u64;
    (
        n as f64 / start.elapsed().as_secs_f64(),
        fees / u128::from(n),
    )
}

async fn nonce(s: &System, who: Felt) -> u64 {
    use ciro_chain::starknet::providers::Provider;
    let n = s
        .net
        .provider
        .get_nonce(
            ciro_chain::starknet::core::types::BlockId::Tag(
                ciro_chain::starknet::core::types::BlockTag::Latest,
            ),
            who,
        )
        .await
        .expect("nonce");
    u64::try_from(n.to_biguint()).expect("nonce")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let items: u64 = std::env::var("CIRO_BENCH_ITEMS")
        .ok()
        .map(|n| {
            n.parse()
                .expect("CIRO_BENCH_ITEMS: a number of inputs per job")
        })
        .unwrap_or(1);
    assert!(
        (1..=1000).contains(&items),
        "CIRO_BENCH_ITEMS is 1 to 1000 (JobMgr's bounds for a batch)"
    );
    // On-chain jobs per submitter, and in all; inputs in all.
    let jobs_each = INPUTS_EACH.div_ceil(items);
    let jobs = jobs_each * SUBMITTERS.len() as u64;
    let inputs = jobs * items;
    let s = System::deploy().await.expect("deploy");
    let dir = tempfile::tempdir().expect("dir");
    let dir = dir.path();
    s.manifest
        .write(&dir.join("manifest.json"))
        .expect("manifest");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut coord = coordinator(&s, dir, port);
    eventually("the coordinator is ready", WAIT, || async {
        reqwest::get(format!("{base}/ready"))
            .await
            .ok()
            .filter(|r| r.status().is_success())
            .map(drop)
    })
    .await;
    let models = tempfile::tempdir().expect("dir");
    let owner = CoordinatorClient::new(&base)
        .expect("client")
        .with_signer(signer(&s, Actor::Admin));
    let model_digest = owner
        .upload_blob(mlp(models.path()))
        .await
        .expect("model upload")
        .digest;
    s.send(s.jobs_as(Actor::Admin).register_model(
        &u256_from_digest(&model_digest.0),
        &job_mgr::Requirements {
            min_vram_mb: 0,
            required_flags: 0,
            min_stake_tier: 0,
            min_score: 0,
        },
        &u256(MODEL_PRICE),
    ))
    .await
    .expect("register_model");
    let model = call(s.jobs_reader().model_count()).await.expect("models");
    // Batches' inputs share passes (their rows concatenated): the workers serve only this
    // benchmark's MLP, which keeps rows apart (see `EngineConfig::batch_jobs`).
    let extra: &[&str] = if items > 1 {
        &["--merge-batch-items"]
    } else {
        &[]
    };
    let mut workers: Vec<_> = WORKERS
        .iter()
        .map(|w| worker_with(&s, dir, &base, *w, extra))
        .collect();
    let client = CoordinatorClient::new(&base).expect("client");
    eventually("three live workers", WAIT, || async {
        let stats = client.stats(Some(1)).await.ok()?;
        (stats.live_workers == 3).then_some(())
    })
    .await;

    // The baseline, on the same devnet.
    let (transfers_per_sec, transfer_fee) = transfers(&s).await;

    // Inputs uploaded before the clock starts (a submitter's upload is not chain work).
    let mut calls = HashMap::new();
    let deadline = s.net.now().await.expect("now") + 6 * 3_600;
    for (k, actor) in SUBMITTERS.iter().enumerate() {
        let up = CoordinatorClient::new(&base)
            .expect("client")
            .with_signer(signer(&s, *actor));
        let jm = s.jobs_as(*actor);
        let mut mine = Vec::new();
        for j in 0..jobs_each {
            let mut digests = Vec::new();
            for i in 0..items {
                let seed = 10_000 + k as u64 * 100_000 + j * items + i;
                digests.push(up.upload_blob(input(seed)).await.expect("input").digest);
            }
            if items == 1 {
                mine.push(jm.submit_job_getcall(
                    &model,
                    &u256_from_digest(&digests[0].0),
                    &u256(JOB_FEE),
                    &deadline,
                    &no_options(),
                ));
                continue;
            }
            let manifest = up
                .upload_blob(ciro_protocol::manifest_of(&digests))
                .await
                .expect("manifest")
                .digest;
            mine.push(jm.submit_batch_getcall(
                &model,
                &u256_from_digest(&manifest.0),
                &u32::try_from(items).expect("items"),
                &u256(u128::from(items) * JOB_FEE),
                &deadline,
                &no_options(),
            ));
        }
        calls.insert(*actor, mine);
    }
    let spenders: Vec<Felt> = SUBMITTERS
        .iter()
        .chain(WORKERS.iter())
        .chain([Actor::Coordinator].iter())
        .map(|a| s.net.address(*a))
        .collect();
    let mut before = 0;
    let mut nonces_before = Vec::new();
    for who in &spenders {
        before += strk(&s, *who).await;
        nonces_before.push(nonce(&s, *who).await);
    }
    let first_job = call(s.jobs_reader().job_count()).await.expect("jobs") + 1;

    // Results as the coordinator sees them, from its event stream.
    let mut events = client
        .all_events(Some(
            client.stats(Some(1)).await.expect("stats").last_sequence,
        ))
        .await
        .expect("events");
    let watcher = tokio::spawn(async move {
        let mut completed = HashMap::new();
        loop {
            let event = events
                .next()
                .await
                .expect("the coordinator's event stream")
                .expect("the event stream ended");
            if event.state == ciro_api::coordinator::JobState::Completed {
                completed
                    .entry(event.job_id)
                    .or_insert_with(|| (Instant::now(), event.submitter));
                if completed.len() as u64 == jobs {
                    break;
                }
            }
        }
        completed
    });

    let start = Instant::now();
    let submissions = SUBMITTERS.iter().map(|actor| {
        let s = &s;
        let mine = calls[actor].clone();
        async move {
            let account = s.net.account(*actor);
            send(&s.net.provider, account.execute_v3(mine))
                .await
                .expect("submitting jobs");
            (s.net.address(*actor), Instant::now())
        }
    });
    // When each submitter's jobs landed on chain.
    let landed: HashMap<Felt, Instant> = futures_util::future::join_all(submissions)
        .await
        .into_iter()
        .collect();
    let completed = tokio::time::timeout(WAIT, watcher)
        .await
        .expect("every result in time")
        .expect("watcher");
    s.advance(RESULT_WINDOW + 1).await;
    eventually("every job finalized", WAIT, || async {
        indexed(&base, "finalized").await.filter(|n| *n == jobs)
    })
    .await;
    let elapsed = start.elapsed().as_secs_f64();
    for job_id in first_job..first_job + jobs {
        assert_eq!(
            s.job_info(job_id).await.job.state,
            job_mgr::JobState::Finalized,
            "job {job_id}"
        );
    }
    let mut after = 0;
    let mut sent = [0u64; 3];
    for (i, who) in spenders.iter().enumerate() {
        after += strk(&s, *who).await;
        let n = nonce(&s, *who).await - nonces_before[i];
        // Submitters, then workers, then the coordinator.
        let role = if i < SUBMITTERS.len() {
            0
        } else if i < SUBMITTERS.len() + WORKERS.len() {
            1
        } else {
            2
        };
        sent[role] += n;
    }
    let fee_per_input = (before - after) / u128::from(inputs);
    let mut latencies: Vec<f64> = completed
        .values()
        .map(|(at, submitter)| {
            at.saturating_duration_since(landed[submitter])
                .as_secs_f64()
        })
        .collect();
    latencies.sort_by(f64::total_cmp);

    let inputs_per_sec = inputs as f64 / elapsed;
    println!(
        "network benchmark: {inputs} inputs in {jobs} on-chain jobs of {items}, 3 CPU workers, \
         one devnet"
    );
    println!(
        "  transfers        {transfers_per_sec:>8.1} /s   fee {:.6} STRK",
        transfer_fee as f64 / 1e18
    );
    println!(
        "  jobs finalized   {:>8.2} /s   (on chain)",
        jobs as f64 / elapsed
    );
    println!(
        "  inputs finalized {inputs_per_sec:>8.1} /s   ratio {:.2} of transfers/s (target >= 2)",
        inputs_per_sec / transfers_per_sec
    );
    println!(
        "  lifecycle fee    {:.6} STRK per input   ratio {:.2} of a transfer (target <= 1)",
        fee_per_input as f64 / 1e18,
        fee_per_input as f64 / transfer_fee as f64
    );
    println!(
        "  transactions     submitters {}, workers {}, coordinator {} ({:.3} per input)",
        sent[0],
        sent[1],
        sent[2],
        sent.iter().sum::<u64>() as f64 / inputs as f64
    );
    println!(
        "  submit -> result p50 {:.1} s   p99 {:.1} s   (per on-chain job)",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    let _ = coord.start_kill();
    for w in &mut workers {
        let _ = w.start_kill();
    }
}
