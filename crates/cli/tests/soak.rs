//! The network under load and faults, as real processes on a real devnet: 500 jobs from five
//! submitters over three `ciro-worker` agents (real libtorch on the CPU, a TorchScript MLP made
//! by Python torch), matched, assigned and finalized by a `ciro-coordinator` on SQLite. Mid-run
//! the coordinator is killed (SIGKILL) and restarted, later one worker is killed (SIGKILL) with
//! jobs in hand and restarted on its journal.
//!
//! At the end: every job is Finalized on chain and finalized exactly once; each job's signed
//! receipt names the output and the worker on chain, and its input is one a submitter uploaded;
//! every worker took part; the coordinator's index equals the chain job for job; JobMgr's and the CDC Pool's invariants hold; and the token supply is conserved
//! across every party (each account and each contract).
//!
//! On PostgreSQL, a shorter run (150 jobs) has two replicas share the database and the blob
//! directory; the leader is killed mid-run and the other takes over.
//!
//! The binaries are the workspace's (`cargo build --workspace`, which `scripts/test.sh` runs).

use std::time::Duration;

use ciro_api::coordinator::CoordinatorClient;
use ciro_api::wire::Digest;
use ciro_chain::bindings::job_mgr;
use ciro_chain::clients::{u256, u256_from_digest};
use ciro_chain::events::{CiroEvent, ContractKind, EventCursor, EventStream};
use ciro_chain::starknet::accounts::Account;
use ciro_chain::tx::{call, send};
use ciro_coordinator::store::Store;
use ciro_tests::system::*;
use ciro_tests::Actor;
use support::*;
use tokio::process::Child;

mod support;

const SUBMITTERS: [Actor; 5] = [
    Actor::Submitter,
    Actor::Delegator,
    Actor::Attacker,
    Actor::Verifier,
    Actor::Pauser,
];
const WORKERS: [Actor; 3] = [Actor::WorkerA, Actor::WorkerB, Actor::WorkerC];
const WAIT: Duration = Duration::from_secs(600);

/// Each job's JobFinalized events on chain.
async fn finalizations(s: &System) -> std::collections::HashMap<u64, u32> {
    let stream = EventStream::new(&s.net.provider, s.job_mgr, ContractKind::JobMgr, 1_000);
    let mut cursor = EventCursor::at(s.manifest.deploy_block.unwrap_or(0));
    let mut finalized = std::collections::HashMap::new();
    loop {
        let (events, next) = stream.next_page(&cursor).await.expect("events");
        for event in &events {
            if let CiroEvent::JobMgr(job_mgr::Event::JobFinalized(e)) = &event.event {
                *finalized.entry(e.job_id).or_insert(0) += 1;
            }
        }
        if events.is_empty() && next.continuation.is_none() && next.from_block == cursor.from_block
        {
            return finalized;
        }
        cursor = next;
    }
}

/// Which faults a run suffers.
enum Plan {
    /// One coordinator on SQLite, SIGKILLed and restarted; then a worker SIGKILLed and
    /// restarted.
    Sqlite,
    /// Two replicas on one PostgreSQL database; the leader SIGKILLed, the other takes over
    /// (everyone talks to the follower's API).
    PostgresFailover,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_jobs_through_a_killed_coordinator_and_a_killed_worker_all_finalize_once() {
    soak(Plan::Sqlite, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_postgresql_two_replicas_lose_their_leader_mid_run_and_every_job_finalizes_once() {
    soak(Plan::PostgresFailover, 30).await;
}

async fn soak(plan: Plan, jobs_each: u64) {
    let jobs = jobs_each * SUBMITTERS.len() as u64;
    let s = System::deploy().await.expect("deploy");
    s.fund(Actor::Pauser, FUNDS)
        .await
        .expect("fund the fifth submitter");
    let dir = tempfile::tempdir().expect("dir");
    let dir = dir.path();
    s.manifest
        .write(&dir.join("manifest.json"))
        .expect("manifest");
    let database_url = match plan {
        Plan::Sqlite => sqlite_in(dir),
        Plan::PostgresFailover => ciro_coordinator::store::fresh_postgres_database(None)
            .await
            .expect("a PostgreSQL database"),
    };
    let port = free_port();
    let mut coord = replica(&s, dir, port, &database_url, "first");
    ready(&format!("http://127.0.0.1:{port}")).await;
    // With two replicas, the first leads and everyone uses the second's API.
    let mut follower = None;
    let base = match plan {
        Plan::Sqlite => format!("http://127.0.0.1:{port}"),
        Plan::PostgresFailover => {
            let other = free_port();
            follower = Some(replica(&s, dir, other, &database_url, "second"));
            let base = format!("http://127.0.0.1:{other}");
            ready(&base).await;
            base
        }
    };

    // The model: Python torch's MLP, uploaded and registered by its owner (CPU workers).
    let models = tempfile::tempdir().expect("dir");
    let file = mlp(models.path());
    let owner = CoordinatorClient::new(&base)
        .expect("client")
        .with_signer(signer(&s, Actor::Admin));
    let model_digest = owner.upload_blob(file).await.expect("model upload").digest;
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

    let mut workers: Vec<Child> = WORKERS.iter().map(|w| worker(&s, dir, &base, *w)).collect();

    // Five submitters: each uploads its 100 inputs and submits them in multicalls of 50.
    let deadline = s.net.now().await.expect("now") + 6 * 3_600;
    let mut expected_inputs = std::collections::HashSet::new();
    let submissions = SUBMITTERS.iter().enumerate().map(|(k, actor)| {
        let s = &s;
        let base = base.clone();
        async move {
            let client = CoordinatorClient::new(&base)
                .expect("client")
                .with_signer(signer(s, *actor));
            let jm = s.jobs_as(*actor);
            let mut calls = Vec::new();
            let mut inputs = Vec::new();
            for i in 0..jobs_each {
                let bytes = input(k as u64 * 1_000 + i);
                let digest = client.upload_blob(bytes).await.expect("input").digest;
                inputs.push(digest);
                calls.push(jm.submit_job_getcall(
                    &model,
                    &u256_from_digest(&digest.0),
                    &u256(JOB_FEE),
                    &deadline,
                    &no_options(),
                ));
            }
            let account = s.net.account(*actor);
            for chunk in calls.chunks(50) {
                send(&s.net.provider, account.execute_v3(chunk.to_vec()))
                    .await
                    .expect("submitting jobs");
            }
            inputs
        }
    });
    for inputs in futures_util::future::join_all(submissions).await {
        expected_inputs.extend(inputs);
    }
    assert_eq!(call(s.jobs_reader().job_count()).await.expect("jobs"), jobs);

    // Fault 1: the (leading) coordinator is killed (SIGKILL) with jobs in flight; on SQLite
    // it is restarted, on PostgreSQL the other replica takes over.
    eventually("a fifth of the results committed", WAIT, || async {
        indexed(&base, "completed").await.filter(|n| *n >= jobs / 5)
    })
    .await;
    if let Plan::PostgresFailover = plan {
        let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics");
        assert!(
            metrics.lines().any(|l| l == "ciro_leader 1"),
            "the replica to kill is the leader"
        );
    }
    kill(&mut coord).await;
    if let Plan::Sqlite = plan {
        tokio::time::sleep(Duration::from_secs(2)).await;
        coord = replica(&s, dir, port, &database_url, "first");

        // Fault 2: a worker is killed (SIGKILL) holding jobs, and restarted on its journal.
        eventually("three fifths of the results committed", WAIT, || async {
            indexed(&base, "completed")
                .await
                .filter(|n| *n >= 3 * jobs / 5)
        })
        .await;
        kill(&mut workers[0]).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        workers[0] = worker(&s, dir, &base, WORKERS[0]);
    }

    eventually("every result committed", WAIT, || async {
        indexed(&base, "completed").await.filter(|n| *n == jobs)
    })
    .await;
    s.advance(RESULT_WINDOW + 1).await;
    eventually("every job finalized", WAIT, || async {
        indexed(&base, "finalized").await.filter(|n| *n == jobs)
    })
    .await;

    // Every job Finalized on chain, once; its output the committed one, matching torch.
    let finalized = finalizations(&s).await;
    let client = CoordinatorClient::new(&base).expect("client");
    let mut by_worker = std::collections::HashMap::new();
    for job_id in 1..=jobs {
        let info = s.job_info(job_id).await;
        assert_eq!(info.job.state, job_mgr::JobState::Finalized, "job {job_id}");
        assert_eq!(
            finalized.get(&job_id),
            Some(&1),
            "job {job_id} finalizations"
        );
        *by_worker.entry(info.job.worker.0).or_insert(0u32) += 1;
        let committed = Digest::from_halves(info.job.output_hash.high, info.job.output_hash.low);
        let receipt = client.receipt(job_id).await.expect("receipt");
        assert_eq!(
            receipt.receipt.output_hash, committed,
            "job {job_id} receipt"
        );
        assert_eq!(receipt.receipt.worker, info.job.worker.0);
        let signer = WORKERS
            .into_iter()
            .find(|w| s.net.address(*w) == info.job.worker.0)
            .expect("one of the workers");
        assert!(
            receipt.is_signed_by_key(
                s.net.signing_key(signer).verifying_key().scalar(),
                s.net.chain_id()
            ),
            "job {job_id}'s receipt is not signed by its worker"
        );
        let input = Digest::from_halves(info.job.input_hash.high, info.job.input_hash.low);
        assert!(expected_inputs.contains(&input), "job {job_id}'s input");
    }
    assert!(
        by_worker.len() == WORKERS.len(),
        "every worker took part: {by_worker:?}"
    );

    // The index equals the chain, job for job.
    let store = Store::connect(&database_url).await.expect("the index");
    for job_id in 1..=jobs {
        let chain = ciro_coordinator::indexer::job_row_of(&s.job_info(job_id).await).expect("row");
        assert_eq!(
            store.job(job_id).await.expect("read"),
            Some(chain),
            "job {job_id}: index vs chain"
        );
    }
    assert_eq!(store.jobs().await.expect("jobs").len() as u64, jobs);

    // The contracts' invariants and the token supply across every party.
    s.assert_invariants("after the soak").await;
    let supply = call(
        ciro_chain::bindings::erc20::Erc20Reader::new(s.token, &s.net.provider).total_supply(),
    )
    .await
    .expect("total_supply")
    .low;
    let mut held = 0;
    for actor in Actor::ALL {
        held += s.balance_of(actor).await;
    }
    for contract in [s.pool, s.job_mgr, s.paymaster] {
        held += s.balance(contract).await;
    }
    assert_eq!(held, supply, "every token is held by a party");

    let _ = coord.start_kill();
    if let Some(mut other) = follower {
        let _ = other.start_kill();
    }
    for w in &mut workers {
        let _ = w.start_kill();
    }
}
