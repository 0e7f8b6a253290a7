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

/// Assigns `job` to `worker`, lets the assignment time out and releases it (back in the queue).
async fn assign_and_release(s: &System, job: u64, worker: Actor) {
    s.send(
        s.jobs_as(Actor::Coordinator)
            .assign_job(&job, &s.addr(worker)),
    )
    .await
    .expect("assign_job");
    s.advance(ASSIGNMENT_TIMEOUT + 1).await;
    s.send(s.jobs_as(Actor::Coordinator).release_job(
        &job,
        &s.addr(worker),
        &s.assigned_at(job).await,
    ))
    .await
    .expect("release_job");
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
    assign_and_release(s, released, Actor::WorkerB).await;
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

/// The job event log numbers the same events the same way however the pages fall: a rebuild
/// (large pages) logs what live indexing (small pages) logged, entry for entry, so a stream
/// resumed by sequence after a rebuild neither skips nor repeats. The case that broke it: a
/// job's dispute opened and resolved, once in one page and once in two.
#[tokio::test]
async fn the_event_log_is_the_same_however_pages_fall() {
    use ciro_coordinator::records::EventScope;
    let s = System::deploy().await.expect("deploy");
    activity(&s).await;
    let disputed = s.job(1).await;
    s.complete(disputed, Actor::WorkerA).await;
    s.send(s.jobs_as(Actor::Submitter).open_dispute(
        &disputed,
        &ciro_chain::starknet::core::types::Felt::from(0xe1_u32),
    ))
    .await
    .expect("open_dispute");
    s.send(
        s.jobs_as(Actor::Arbiter)
            .resolve_dispute(&disputed, &true, &1_000),
    )
    .await
    .expect("resolve_dispute");
    // A job assigned, released, assigned again and completed: a row read at the range's end
    // (past these) must not lend its output to the release's or the new assignment's entries.
    let released = s.job(1).await;
    assign_and_release(&s, released, Actor::WorkerB).await;
    // (By B again: A was just found at fault and slashed below its tier.)
    s.complete(released, Actor::WorkerB).await;
    let mut logs = Vec::new();
    for page_size in [1, 1_000] {
        let (store, _dir) = store(Backend::Sqlite).await.expect("store");
        indexer(&s, &store, page_size)
            .catch_up()
            .await
            .expect("catch up");
        assert_index_equals_chain(&s, &store, &[Actor::WorkerA, Actor::WorkerB]).await;
        let log: Vec<_> = store
            .job_events(&EventScope::All, 0, 10_000)
            .await
            .expect("log")
            .into_iter()
            .map(|e| {
                (
                    e.sequence,
                    e.job_id,
                    e.state,
                    e.worker,
                    e.output_hash,
                    e.block_number,
                    e.tx_hash,
                )
            })
            .collect();
        logs.push(log);
    }
    let states: Vec<&str> = logs[0]
        .iter()
        .filter(|e| e.1 == disputed)
        .map(|e| e.2.as_str())
        .collect();
    assert_eq!(
        states,
        ["Queued", "Assigned", "Completed", "Disputed", "Refunded"],
        "the disputed job's log"
    );
    let outputs: Vec<(&str, bool)> = logs[1]
        .iter()
        .filter(|e| e.1 == released)
        .map(|e| (e.2.as_str(), e.4.is_some()))
        .collect();
    assert_eq!(
        outputs,
        [
            ("Queued", false),
            ("Assigned", false),
            ("Queued", false),
            ("Assigned", false),
            ("Completed", true)
        ],
        "the released job's log (state, whether it shows an output)"
    );
    assert_eq!(
        logs[0], logs[1],
        "pages of 1 and of 1,000 logged differently"
    );
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

/// A PostgreSQL cluster of the test's own, in a temporary directory (its Unix socket there, no
/// TCP), which the test can crash without touching the shared test server. Run by the
/// `postgres` OS user when the tests run as root (PostgreSQL refuses to run as root).
struct OwnCluster {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
}

impl OwnCluster {
    /// The newest installed PostgreSQL's programs (Debian's layout), else those on `PATH`.
    fn bin() -> std::path::PathBuf {
        let mut versions: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let version = entry.file_name().to_str()?.parse().ok()?;
                let bin = entry.path().join("bin");
                bin.join("pg_ctl").exists().then_some((version, bin))
            })
            .collect();
        versions.sort();
        versions.pop().map(|(_, bin)| bin).unwrap_or_default()
    }

    fn as_root() -> bool {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() == 0 }
    }

    /// A PostgreSQL program, to be run as the cluster's user.
    fn command(&self, program: &str) -> std::process::Command {
        let path = self.bin.join(program);
        if Self::as_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            std::process::Command::new(path)
        }
    }

    /// Runs a PostgreSQL program as the cluster's user; fails the test with its output.
    fn run(&self, program: &str, args: &[&str]) {
        let out = self
            .command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn dir(&self) -> &str {
        self.dir.path().to_str().expect("a UTF-8 temporary path")
    }

    fn data(&self) -> String {
        format!("{}/data", self.dir())
    }

    /// A new cluster, initialized and started.
    fn start() -> Self {
        let cluster = Self {
            dir: tempfile::tempdir().expect("a temporary directory"),
            bin: Self::bin(),
        };
        if Self::as_root() {
            let status = std::process::Command::new("chown")
                .args(["postgres:", cluster.dir()])
                .status()
                .expect("chown");
            assert!(status.success(), "chown postgres: {}", cluster.dir());
        }
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        cluster.pg_ctl_start();
        cluster
    }

    fn pg_ctl_start(&self) {
        let options = format!("-k {} -c listen_addresses=", self.dir());
        let log = format!("{}/log", self.dir());
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@localhost/postgres?host={}", self.dir())
    }

    /// Stops it as a crash does (no shutdown checkpoint: its next start runs crash recovery),
    /// then starts it again.
    fn crash_and_restart(&self) {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
        self.pg_ctl_start();
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let data = self.data();
        let _stopped = self
            .command("pg_ctl")
            .args(["-D", data.as_str(), "-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// Each table of the database at `url` and its persistence (`p` logged, `u` unlogged).
async fn persistence(url: &str) -> std::collections::BTreeMap<String, String> {
    use sqlx::{Connection, Row};
    let mut db = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::query(
        "SELECT relname::text AS name, relpersistence::text AS persistence FROM pg_class \
         WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace",
    )
    .fetch_all(&mut db)
    .await
    .expect("pg_class")
    .iter()
    .map(|row| (row.get("name"), row.get("persistence")))
    .collect()
}

/// On PostgreSQL the index's tables are unlogged (its pages skip the write-ahead log), and
/// only they are. A crash of PostgreSQL empties them, all together (rows and cursors), while
/// the service's own tables keep their rows; the same indexer, its cache full of rows the
/// database lost, then rebuilds the index from the deployment block to what the chain says,
/// every event applied once, after at most one failed step (its first page takes a cached row
/// for one the database has; the failure empties the cache).
#[tokio::test]
async fn a_postgres_crash_empties_the_unlogged_index_and_the_indexer_rebuilds_it() {
    use ciro_coordinator::store::INDEX_TABLES;
    let s = System::deploy().await.expect("deploy");
    activity(&s).await;
    let cluster = OwnCluster::start();
    let url = cluster.url();
    let store = Store::connect(&url).await.expect("store");
    let tables = persistence(&url).await;
    for table in INDEX_TABLES {
        assert_eq!(
            tables.get(table).map(String::as_str),
            Some("u"),
            "index table {table}"
        );
    }
    for (table, persistence) in &tables {
        if !INDEX_TABLES.contains(&table.as_str()) {
            assert_eq!(persistence, "p", "service table {table} is not logged");
        }
    }
    // Connecting again (another replica, a restart) leaves them as they are.
    Store::connect(&url).await.expect("store again");
    assert_eq!(persistence(&url).await, tables);

    // Small pages: the rebuild's jobs are spread over many pages, each of which would fail
    // once on its stale cached row if a failure kept the rest of the cache.
    let indexer = indexer(&s, &store, 3);
    indexer.catch_up().await.expect("catch up");
    assert_index_equals_chain(&s, &store, &[Actor::WorkerA, Actor::WorkerB]).await;
    // A catch-up of a new index is a rebuild from the deployment block (the leader restarts
    // its settling after one); one from a stored cursor is not.
    assert!(indexer.status().take_started_empty());
    indexer.catch_up().await.expect("resume");
    assert!(!indexer.status().take_started_empty());
    let lease = store
        .acquire_leadership("before the crash", std::time::Duration::from_secs(600))
        .await
        .expect("lease")
        .expect("the lease is free");

    cluster.crash_and_restart();
    assert!(store.jobs().await.expect("jobs").is_empty());
    assert!(store.model(1).await.expect("model").is_none());
    for contract in ["JobMgr", "CdcPool"] {
        assert!(
            store.cursor(contract).await.expect("cursor").is_none(),
            "{contract}'s cursor outlived its rows"
        );
    }
    assert!(
        store
            .acquire_leadership("after the crash", std::time::Duration::from_secs(600))
            .await
            .expect("lease")
            .is_none(),
        "the lease (a logged table) was lost in the crash"
    );
    assert!(lease.epoch > 0);

    // The chain moved on meanwhile.
    let job = s.job(1).await;
    s.complete(job, Actor::WorkerB).await;
    let mut failed = Vec::new();
    while let Err(err) = indexer.catch_up().await {
        failed.push(format!("{err:#}"));
        assert!(failed.len() <= 1, "steps failed: {failed:#?}");
    }
    assert_index_equals_chain(&s, &store, &[Actor::WorkerA, Actor::WorkerB]).await;
    assert!(
        indexer.status().take_started_empty(),
        "the rebuild after the crash was not reported"
    );
    let mut applied = 0;
    for contract in ["JobMgr", "CdcPool"] {
        applied += store
            .cursor(contract)
            .await
            .expect("cursor")
            .expect("stored")
            .1;
    }
    assert_eq!(
        applied,
        events_on_chain(&s).await,
        "every event applied exactly once in the rebuild"
    );
}
