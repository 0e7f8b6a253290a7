//! `cargo bench -p ciro-coordinator --bench indexer`: the indexer's ingest rate against
//! reading the same events raw with `starknet_getEvents`, on one devnet in the same run.
//!
//! The chain: a `deploy_all` deployment, a model, 1,500 jobs submitted in multicalls of 100
//! and 1,000 of them cancelled (about 2,500 JobMgr events, plus the pool's and the deployment's
//! own). Raw: every JobMgr and CDC Pool event from the deployment block, pages of 1,000, no
//! decoding. Indexer: a fresh index caught up from the deployment block (decoding, rows, the
//! job event log, the cursor, one transaction per page), on SQLite and on PostgreSQL. Printed:
//! events per second of each and the ratio indexer ÷ raw (target: at least 0.8); exits 1
//! when a ratio misses it.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use ciro_chain::clients::u256;
use ciro_chain::starknet::accounts::Account;
use ciro_chain::starknet::core::types::{BlockId, EventFilter};
use ciro_chain::starknet::providers::jsonrpc::HttpTransport;
use ciro_chain::starknet::providers::{JsonRpcClient, Provider};
use ciro_chain::tx::send;
use ciro_coordinator::indexer::Indexer;
use ciro_coordinator::store::Store;
use ciro_tests::system::*;
use ciro_tests::Actor;

const SUBMITTED: u64 = 1_500;
const CANCELLED: u64 = 1_000;
const TARGET: f64 = 0.8;
const ROUNDS: usize = 3;

async fn make_events(s: &System) -> Result<()> {
    let model = s.model().await;
    let account = s.net.account(Actor::Submitter);
    let jm = s.jobs_as(Actor::Submitter);
    let deadline = s.net.now().await? + 3_600;
    let submits: Vec<_> = (0..SUBMITTED)
        .map(|i| {
            jm.submit_job_getcall(
                &model,
                &u256(u128::from(i) + 1),
                &u256(MODEL_PRICE),
                &deadline,
                &no_options(),
            )
        })
        .collect();
    for chunk in submits.chunks(100) {
        send(&s.net.provider, account.execute_v3(chunk.to_vec())).await?;
    }
    let cancels: Vec<_> = (1..=CANCELLED)
        .map(|id| jm.cancel_job_getcall(&id))
        .collect();
    for chunk in cancels.chunks(100) {
        send(&s.net.provider, account.execute_v3(chunk.to_vec())).await?;
    }
    Ok(())
}

/// Every event of JobMgr and the pool from the deployment block, raw; how many.
async fn read_raw(s: &System) -> Result<u64> {
    let from = s.manifest.deploy_block.unwrap_or(0);
    let mut total = 0;
    for address in [s.job_mgr, s.pool] {
        let mut token = None;
        loop {
            let page = s
                .net
                .provider
                .get_events(
                    EventFilter {
                        from_block: Some(BlockId::Number(from)),
                        to_block: None,
                        address: Some(address),
                        keys: None,
                    },
                    token.clone(),
                    1_000,
                )
                .await?;
            total += page.events.len() as u64;
            token = page.continuation_token;
            if token.is_none() {
                break;
            }
        }
    }
    Ok(total)
}

/// A fresh index of `url` caught up; events applied and seconds.
async fn index(s: &System, url: &str) -> Result<(u64, f64)> {
    let store = Store::connect(url).await?;
    store.reset_index().await?;
    let node = Arc::new(JsonRpcClient::new(HttpTransport::new(s.net.rpc_url())));
    let indexer = Indexer::new(node, store, &s.manifest, 1_000)?;
    let started = Instant::now();
    indexer.catch_up().await?;
    Ok((indexer.status().events(), started.elapsed().as_secs_f64()))
}

#[tokio::main]
async fn main() -> Result<()> {
    let s = System::deploy().await?;
    make_events(&s).await?;
    let dir = tempfile::tempdir()?;
    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    let postgres = common::fresh_postgres().await?;
    // Best of ROUNDS for each, interleaved, so both see the same node state.
    let (mut raw_best, mut events) = (f64::MAX, 0);
    let mut best = [f64::MAX, f64::MAX];
    for _ in 0..ROUNDS {
        let started = Instant::now();
        events = read_raw(&s).await?;
        raw_best = raw_best.min(started.elapsed().as_secs_f64());
        for (i, url) in [&sqlite, &postgres].into_iter().enumerate() {
            let (applied, secs) = index(&s, url).await?;
            anyhow::ensure!(
                applied == events,
                "the indexer applied {applied} events, the chain has {events}"
            );
            best[i] = best[i].min(secs);
        }
    }
    let raw_rate = events as f64 / raw_best;
    println!("{events} events (JobMgr and CDC Pool), best of {ROUNDS}");
    println!("raw starknet_getEvents  {raw_rate:>9.0} events/s");
    let mut missed = false;
    for (name, secs) in ["sqlite", "postgres"].into_iter().zip(best) {
        let rate = events as f64 / secs;
        let ratio = rate / raw_rate;
        missed |= ratio < TARGET;
        println!("indexer on {name:<9}  {rate:>9.0} events/s   ratio {ratio:.2}");
    }
    if missed {
        println!("target missed (ratio >= {TARGET})");
        std::process::exit(1);
    }
    println!("target met: every ratio >= {TARGET}");
    Ok(())
}
