//! `cargo bench -p ciro-coordinator --bench api`: `GET /v1/jobs/{id}` of the coordinator's
//! API under concurrent load, against a trivial axum handler answering a same-sized JSON body
//! on the same machine in the same run, on SQLite and on PostgreSQL (the local cluster
//! scripts/setup.sh starts, or `CIRO_TEST_POSTGRES`).
//!
//! The index holds 10,000 jobs (nine in ten finalized, one in ten queued: a queued job's
//! answer also says why it is not matched, which reads the live workers) and 100 live
//! workers. 32 concurrent clients with keep-alive request random jobs for 5 s per target.
//! Printed per backend: requests per second of both, their ratio (target: at least 0.5) and
//! the coordinator's p50/p99 latency. Exits 1 when a ratio misses the target.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use axum::routing::get;
use ciro_chain::events::EventCursor;
use ciro_chain::starknet::providers::jsonrpc::HttpTransport;
use ciro_chain::starknet::providers::JsonRpcClient;
use ciro_coordinator::api::{Api, ApiConfig, Verifier};
use ciro_coordinator::blobs::LocalBlobStore;
use ciro_coordinator::indexer::{unix_now, IndexerStatus};
use ciro_coordinator::records::LivenessRow;
use ciro_coordinator::store::{Batch, JobRow, ModelRow, Mutation, PageStart, Store, WorkerRow};
use ciro_service::CancellationToken;

const JOBS: u64 = 10_000;
const WORKERS: u64 = 100;
const CLIENTS: usize = 32;
const DURATION: Duration = Duration::from_secs(5);
const TARGET: f64 = 0.5;

fn job(job_id: u64) -> JobRow {
    let queued = job_id % 10 == 0;
    JobRow {
        job_id,
        submitter: format!("{:#x}", 0x5u64),
        model_id: 1,
        input_hash: format!("{job_id:064x}"),
        fee: "0x3e8".into(),
        deadline: unix_now() + 86_400,
        items: 1,
        min_vram_mb: 16_384,
        required_flags: 3,
        min_stake_tier: 0,
        min_score: 0,
        terms: r#"{"challenge_window":"0xe10","release_after":"0x258","arbitration_window":"0x3f480","protocol_fee_bps":500,"max_slash_bps":5000,"max_award_multiple":2,"rated":true}"#.into(),
        dispute_bond: "0x64".into(),
        state: if queued { "Queued" } else { "Finalized" }.into(),
        worker: (!queued).then(|| format!("{:#x}", 0x1000 + job_id % WORKERS)),
        output_hash: (!queued).then(|| format!("{:064x}", job_id + 1)),
        disputer: None,
        assigned_at: (!queued).then_some(1_000),
        completed_at: (!queued).then_some(1_010),
        dispute: None,
    }
}

fn worker(i: u64) -> WorkerRow {
    WorkerRow {
        address: format!("{:#x}", 0x1000 + i),
        state: "Active".into(),
        gpu_model: "H100".into(),
        vram_mb: [8_192, 81_920][(i % 2) as usize],
        compute_capability: 90,
        flags: 3,
        stake: "0x1f40".into(),
        hardware_tier: 3,
        stake_tier: 3,
        score: 5_000,
        last_heartbeat: 0,
        info: "{}".into(),
    }
}

async fn seed(store: &Store) -> Result<()> {
    let mut mutations = vec![Mutation::ModelSet(ModelRow {
        model_id: 1,
        owner: "0x1".into(),
        model_hash: "ab".repeat(32),
        min_vram_mb: 16_384,
        required_flags: 3,
        min_stake_tier: 0,
        min_score: 0,
        price: "0x64".into(),
        active: true,
    })];
    mutations.extend((0..WORKERS).map(|i| Mutation::Worker(worker(i))));
    mutations.extend((1..=JOBS).map(|id| Mutation::JobSubmitted(job(id))));
    store
        .apply(&Batch {
            contract: "JobMgr".into(),
            cursor: EventCursor::at(1),
            events: 0,
            block: 1,
            mutations,
            from: PageStart::Anywhere,
        })
        .await?;
    for i in 0..WORKERS {
        store
            .heartbeat(&LivenessRow {
                address: worker(i).address,
                last_seen: unix_now() + 3_600,
                running_jobs: 0,
                capacity: 4,
                models: "[]".into(),
                agent_version: "bench".into(),
                max_input_bytes: None,
                max_model_bytes: None,
                max_batch_items: None,
            })
            .await?;
    }
    Ok(())
}

async fn serve(router: axum::Router) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    Ok(address)
}

struct Load {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// `CLIENTS` keep-alive clients requesting random jobs from `base` for `DURATION`.
async fn load(base: &str) -> Result<Load> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()?;
    // Warm the connections and the server's caches.
    for id in 1..=200 {
        http.get(format!("{base}/v1/jobs/{id}")).send().await?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (http, base, stop, errors) =
                (http.clone(), base.to_owned(), stop.clone(), errors.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (c as u64 + 1);
                while !stop.load(Ordering::Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let id = 1 + x % JOBS;
                    let t = Instant::now();
                    match http.get(format!("{base}/v1/jobs/{id}")).send().await {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            latencies.push(t.elapsed());
                        }
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                latencies
            })
        })
        .collect();
    tokio::time::sleep(DURATION).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        errors.load(Ordering::Relaxed) == 0,
        "{} requests to {base} failed",
        errors.load(Ordering::Relaxed)
    );
    all.sort();
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Ok(Load {
        per_sec: all.len() as f64 / elapsed,
        p50_ms: at(0.50).as_secs_f64() * 1e3,
        p99_ms: at(0.99).as_secs_f64() * 1e3,
    })
}

async fn run(backend: &str, url: &str, dir: &std::path::Path) -> Result<f64> {
    let store = Store::connect(url).await?;
    seed(&store).await?;
    let sample = job(2);
    let api = Api::new(
        store.clone(),
        Arc::new(LocalBlobStore::open_dir(dir.join(format!("blobs-{backend}"))).await?),
        Verifier::new(
            Arc::new(JsonRpcClient::new(HttpTransport::new(url::Url::parse(
                "http://127.0.0.1:9/rpc",
            )?))),
            ciro_chain::starknet::core::types::Felt::ONE,
            Vec::new(),
            store.clone(),
            300,
            Api::auth_failures_counter()?,
        ),
        ApiConfig {
            rate_per_sec: 1_000_000,
            rate_burst: 1_000_000,
            ..ApiConfig::default()
        },
        Arc::new(IndexerStatus::default()),
        CancellationToken::new(),
    );
    let coordinator = serve(api.router()).await?;
    // The baseline answers what the coordinator answers for a finalized job, from memory.
    let body: String = reqwest::get(format!("http://{coordinator}/v1/jobs/{}", sample.job_id))
        .await?
        .text()
        .await?;
    let baseline = serve(axum::Router::new().route(
        "/v1/jobs/{id}",
        get(move || {
            let body = body.clone();
            async move { ([("content-type", "application/json")], body) }
        }),
    ))
    .await?;
    let base_load = load(&format!("http://{baseline}")).await?;
    let api_load = load(&format!("http://{coordinator}")).await?;
    let ratio = api_load.per_sec / base_load.per_sec;
    println!(
        "{backend:<10} coordinator {:>8.0} req/s (p50 {:.2} ms, p99 {:.2} ms) | trivial axum {:>8.0} req/s (p99 {:.2} ms) | ratio {ratio:.2}",
        api_load.per_sec, api_load.p50_ms, api_load.p99_ms, base_load.per_sec, base_load.p99_ms
    );
    Ok(ratio)
}

#[tokio::main]
async fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    println!(
        "GET /v1/jobs/{{id}}: {JOBS} jobs indexed, {WORKERS} live workers, {CLIENTS} clients, {} s per target",
        DURATION.as_secs()
    );
    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    let mut ratios = vec![("sqlite", run("sqlite", &sqlite, dir.path()).await?)];
    let postgres = common::fresh_postgres().await?;
    ratios.push(("postgres", run("postgres", &postgres, dir.path()).await?));
    let missed: Vec<_> = ratios.iter().filter(|(_, r)| *r < TARGET).collect();
    if !missed.is_empty() {
        println!("target missed (ratio >= {TARGET}): {missed:?}");
        std::process::exit(1);
    }
    println!("target met: every ratio >= {TARGET}");
    Ok(())
}
