//! The indexer against a real devnet deployment (`deploy_all`), on SQLite and on PostgreSQL:
//! the index equals what the chain's views say for every job, model and worker; a restarted
//! indexer resumes from its stored cursor with every event applied exactly once; an emptied
//! index rebuilds from the deployment block to the same rows.

mod common;

use std::sync::Arc;

use anyhow::Result;
use ciro_chain::events::{ContractKind, EventCursor, EventStream};
use ciro_chain::starknet::providers::jsonrpc::HttpTransport;
use ciro_chain::starknet::providers::JsonRpcClient;
use ciro_chain::tx::call;
use ciro_coordinator::indexer::{felt_text, worker_row_of, Indexer};
use ciro_coordinator::store::{Backend, Store};
use ciro_tests::system::*;
use ciro_tests::Actor;
use common::fresh_postgres;

async fn store(backend: Backend) -> Result<(Store, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("index.db").display()),
        Backend::Postgres => fresh_postgres().await?,
    };
    let store = Store::connect(&url).await?;
    assert_eq!(store.backend(), backend);
    Ok((store, dir))
}

fn indexer(s: &System, store: &Store, page_size: u64) -> Indexer {
    let node = Arc::new(JsonRpcClient::new(HttpTransport::new(s.net.rpc_url())));
    Indexer::new(node, store.clone(), &s.manifest, page_size).expect("the manifest")
}

/// Every event JobMgr and the pool emitted since the deployment, read raw.
async fn events_on_chain(s: &System) -> u64 {
    let mut total = 0;
    for (kind, address) in [
        (ContractKind::JobMgr, s.job_mgr),
        (ContractKind::CdcPool, s.pool),
    ] {
        let stream = EventStream::new(&s.net.provider, address, kind, 1_000);
        let mut cursor = EventCursor::at(s.manifest.deploy_block.unwrap_or(0));
        loop {
            let (events, next) = stream.next_page(&cursor).await.expect("events");
            total += events.len() as u64;
            if events.is_empty() && next.continuation.is_none() {
                break;
            }
            cursor = next;
        }
    }
    total
}

/// The index equals the chain's views: every job, the model, every worker.
async fn assert_index_equals_chain(s: &System, store: &Store, workers: &[Actor]) {
    common::assert_jobs_match_chain(s, store).await;
    let model = call(s.jobs_reader().get_model(&1))
        .await
        .expect("get_model");
    let row = store
        .model(1)
        .await
        .expect("read")
        .expect("model 1 indexed");
    assert_eq!(
        row.model_hash,
        ciro_protocol::Digest::from_halves(model.model_hash.high, model.model_hash.low).to_string()
    );
    assert_eq!(row.active, model.active);
    assert_eq!(row.min_vram_mb, u64::from(model.requirements.min_vram_mb));
    for &worker in workers {
        let chain = worker_row_of(&s.worker_info(worker).await).expect("row");
        let indexed = store
            .worker(&felt_text(s.addr(worker).0))
            .await
            .expect("read")
            .expect("worker indexed");
        assert_eq!(indexed, chain, "{worker:?}");
    }
}

/// A job's life and its neighbours: one finalized, one queued, one cancelled, one assigned
/// and released.
async fn activity(s: &System) {
    let model = s.model().await;
    s.active_worker(Actor::WorkerA).await;
    s.active_worker(Actor::WorkerB).await;
    let finalized = s.job(model).await;
    s.complete(finalized, Actor::WorkerA).await;
    s.job(model).await;
    let cancelled = s.job(model).await;
    s.send(s.jobs_as(Actor::Submitter).cancel_job(&cancelled))
        .await
        .expect("cancel_job");
    let released = s.job(model).await;
    s.send(
        s.jobs_as(Actor::Coordinator)
            .assign_job(&released, &s.addr(Actor::WorkerB)),
    )
    .await
    .expect("assign_job");
    s.advance(ASSIGNMENT_TIMEOUT + 1).await;
    s.send(s.jobs_as(Actor::Coordinator).release_job(
        &released,
        &s.addr(Actor::WorkerB),
        &s.assigned_at(released).await,
    ))
    .await
    .expect("release_job");
    s.advance(RESULT_WINDOW).await;
    s.send(
        s.jobs_as(Actor::Coordinator)
            .finalize_jobs(&vec![finalized]),
    )
    .await
    .expect("finalize_jobs");
}

async fn mirrors_resumes_and_rebuilds(backend: Backend) {
    let s = System::deploy().await.expect("deploy");
    activity(&s).await;
    let (store, _dir) = store(backend).await.expect("store");

    // Small pages: the continuation path is taken many times.
    let first = indexer(&s, &store, 3);
    first.catch_up().await.expect("catch up");
    assert_index_equals_chain(&s, &store, &[Actor::WorkerA, Actor::WorkerB]).await;
    assert_eq!(first.status().lag(), 0);

    // More activity; a new indexer (a restarted process) resumes from the stored cursors.
    let model = 1;
    let job = s.job(model).await;
    s.complete(job, Actor::WorkerB).await;
    let restarted = indexer(&s, &store, 1_000);
    restarted.catch_up().await.expect("resume");
    assert_index_equals_chain(&s, &store, &[Actor::WorkerA, Actor::WorkerB]).await;
    let applied = store
        .cursor("JobMgr")
        .await
        .expect("cursor")
        .expect("stored")
        .1
        + store
            .cursor("CdcPool")
            .await
            .expect("cursor")
            .expect("stored")
            .1;
    assert_eq!(
        applied,
        events_on_chain(&s).await,
        "every event applied exactly once across the restart"
    );

    // Rebuild from the deployment block: the same index.
    let before = store.jobs().await.expect("jobs");
    store.reset_index().await.expect("reset");
    assert!(store.jobs().await.expect("jobs").is_empty());
    indexer(&s, &store, 50).catch_up().await.expect("rebuild");
    assert_eq!(store.jobs().await.expect("jobs"), before);
    assert_index_equals_chain(&s, &store, &[Actor::WorkerA, Actor::WorkerB]).await;
}

#[tokio::test]
async fn sqlite_index_mirrors_the_chain_resumes_and_rebuilds() {
    mirrors_resumes_and_rebuilds(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_index_mirrors_the_chain_resumes_and_rebuilds() {
    mirrors_resumes_and_rebuilds(Backend::Postgres).await;
}

#[tokio::test]
async fn a_bad_database_url_is_refused_with_the_reason() {
    let err = Store::connect("mysql://localhost/x").await.unwrap_err();
    assert!(
        format!("{err:#}").contains("unsupported database URL"),
        "{err:#}"
    );
    let err = Store::connect("postgres://nobody@localhost:1/x")
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("connecting to the database"),
        "{err:#}"
    );
}
