//! The coordinator under faults, as real processes (the `ciro-coordinator` binary) against a
//! real devnet, with three simulated workers that sign like the real agent and commit results
//! on chain in multicalls:
//! - on SQLite, the coordinator is killed (SIGKILL) with 120 jobs in flight and restarted;
//! - on PostgreSQL, two replicas share the database and the blob directory, and the leader is
//!   killed mid-load; the other takes over.
//!
//! Either way every job ends Finalized, the index equals the chain (a reconcile over every
//! job), each job was assigned once and finalized once on chain, and the contracts'
//! invariants (token conservation included) hold.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use ciro_api::coordinator::{CoordinatorClient, Heartbeat, JobState, ListJobs};
use ciro_api::wire::Digest;
use ciro_chain::bindings::job_mgr::{self, JobMgr};
use ciro_chain::clients::{u256, u256_from_digest};
use ciro_chain::events::{CiroEvent, ContractKind, EventCursor, EventStream};
use ciro_chain::starknet::accounts::{Account, ConnectedAccount};
use ciro_chain::tx::{call, send};
use ciro_coordinator::store::Store;
use ciro_service::CancellationToken;
use ciro_tests::system::*;
use ciro_tests::Actor;
use common::{eventually, fresh_postgres, sample, signer};
use tokio::process::{Child, Command};

const JOBS: u64 = 120;
const WORKERS: [Actor; 3] = [Actor::WorkerA, Actor::WorkerB, Actor::WorkerC];
const WAIT: Duration = Duration::from_secs(180);

/// One `ciro-coordinator` process.
struct Replica {
    child: Child,
    base: String,
    name: String,
}

/// Where the replicas' shared files are.
struct Site {
    dir: tempfile::TempDir,
    manifest: PathBuf,
    database_url: String,
}

impl Site {
    fn new(s: &System, database_url: Option<String>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let manifest = dir.path().join("manifest.json");
        s.manifest.write(&manifest).expect("manifest");
        let database_url = database_url
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("coordinator.db").display()));
        Self {
            dir,
            manifest,
            database_url,
        }
    }

    fn blobs(&self) -> PathBuf {
        self.dir.path().join("blobs")
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    /// Starts a replica named `name` on `port`, acting as the suite's coordinator account.
    async fn start(&self, s: &System, name: &str, port: u16) -> Replica {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(name))
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_ciro-coordinator"))
            .args(["--rpc-url", s.net.rpc_url().as_str()])
            .arg("--manifest")
            .arg(&self.manifest)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--database-url", &self.database_url])
            .arg("--blob-dir")
            .arg(self.blobs())
            .args(["--devnet-account", &Actor::Coordinator.index().to_string()])
            .args(["--replica-name", name])
            .args(["--lease-secs", "3", "--tick-ms", "200"])
            .args(["--stale-after-secs", "60", "--rate-limit", "10000"])
            .env("CIRO_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("spawning ciro-coordinator");
        let base = format!("http://127.0.0.1:{port}");
        let health = format!("{base}/health");
        eventually(
            &format!("{name} answers"),
            Duration::from_secs(60),
            || async {
                reqwest::get(&health)
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(drop)
            },
        )
        .await;
        Replica {
            child,
            base,
            name: name.into(),
        }
    }
}

impl Replica {
    async fn metric(&self, series: &str) -> f64 {
        match reqwest::get(format!("{}/metrics", self.base)).await {
            Ok(r) => sample(&r.text().await.unwrap_or_default(), series),
            Err(_) => 0.0,
        }
    }

    async fn kill(mut self) {
        self.child.start_kill().expect("SIGKILL");
        let status = self.child.wait().await.expect("wait");
        assert!(!status.success(), "{} was killed: {status}", self.name);
    }

    async fn stop(mut self) {
        let pid = self.child.id().expect("pid");
        // SAFETY: signalling our own child process.
        let rc = unsafe { libc_kill(pid as i32, 15) };
        assert_eq!(rc, 0, "SIGTERM to {}", self.name);
        let status = self.child.wait().await.expect("wait");
        assert!(
            status.success(),
            "{} stopped by SIGTERM: {status}",
            self.name
        );
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, signal: i32) -> i32;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("address")
        .port()
}

/// The deployment, funded, with the model (its file uploaded by its owner, the admin: a file
/// uploaded by anyone else is not the model's) and three active workers.
async fn network(s: &System, client: &CoordinatorClient) -> (u64, Digest) {
    let model_file = b"the load test's model file".to_vec();
    let model_digest = client
        .upload_blob(model_file)
        .await
        .expect("model upload")
        .digest;
    s.send(s.jobs_as(Actor::Admin).register_model(
        &u256_from_digest(&model_digest.0),
        &requirements(),
        &u256(MODEL_PRICE),
    ))
    .await
    .expect("register_model");
    for worker in WORKERS {
        s.active_worker(worker).await;
    }
    (
        call(s.jobs_reader().model_count())
            .await
            .expect("model_count"),
        model_digest,
    )
}

/// The submitter uploads `JOBS` inputs and submits their jobs in multicalls of 40.
async fn submit_jobs(s: &System, client: &CoordinatorClient, model: u64) {
    let deadline = s.net.now().await.expect("now") + 6 * 3_600;
    let jm = s.jobs_as(Actor::Submitter);
    let mut calls = Vec::new();
    for i in 0..JOBS {
        let input = format!("input tensors of job {i}").into_bytes();
        let digest = client.upload_blob(input).await.expect("input").digest;
        calls.push(jm.submit_job_getcall(
            &model,
            &u256_from_digest(&digest.0),
            &u256(JOB_FEE),
            &deadline,
            &no_options(),
        ));
    }
    let account = s.net.account(Actor::Submitter);
    for chunk in calls.chunks(40) {
        send(&s.net.provider, account.execute_v3(chunk.to_vec()))
            .await
            .expect("submitting jobs");
    }
    assert_eq!(
        call(s.jobs_reader().job_count()).await.expect("job_count"),
        JOBS
    );
}

fn output_of(job_id: u64) -> Vec<u8> {
    format!("output of job {job_id}").into_bytes()
}

/// A worker that heartbeats, long-polls, uploads each output and commits the outputs of what
/// it was given in one multicall; it rides out the coordinator being away.
async fn simulate_worker(
    signer: ciro_api::coordinator::RequestSigner,
    account: ciro_chain::RpcAccount,
    job_mgr: ciro_chain::starknet::core::types::Felt,
    base: String,
    model: Digest,
    stop: CancellationToken,
) -> u64 {
    let worker = signer.account();
    let client = CoordinatorClient::new(&base)
        .expect("client")
        .with_signer(signer);
    let jm = JobMgr::new(job_mgr, account.clone());
    let mut committed = HashSet::new();
    while !stop.is_cancelled() {
        let beat = Heartbeat {
            running_jobs: 0,
            capacity: 20,
            models: vec![model],
            agent_version: "recovery-test".into(),
            max_input_bytes: None,
            max_model_bytes: None,
            max_batch_items: None,
        };
        if client.heartbeat(&beat).await.is_err() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let Ok(polled) = client.poll_assignments(Duration::from_secs(1)).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let fresh: Vec<u64> = polled
            .assignments
            .iter()
            .map(|a| a.job_id)
            .filter(|id| !committed.contains(id))
            .collect();
        let mut ready = Vec::new();
        for job_id in fresh {
            if client
                .upload_output(job_id, output_of(job_id))
                .await
                .is_ok()
            {
                ready.push(job_id);
            }
        }
        if ready.is_empty() {
            continue;
        }
        let calls = ready
            .iter()
            .map(|id| {
                jm.submit_result_getcall(id, &u256_from_digest(&Digest::of(&output_of(*id)).0))
            })
            .collect();
        match send(account.provider(), account.execute_v3(calls)).await {
            Ok(_) => committed.extend(ready),
            Err(error) => eprintln!("{worker:#x}: committing {ready:?} failed: {error}"),
        }
    }
    committed.len() as u64
}

/// How many jobs the chain shows in `state` (reads every job).
async fn on_chain_in(s: &System, state: &str) -> u64 {
    let mut n = 0;
    for job_id in 1..=JOBS {
        if format!("{:?}", s.job_info(job_id).await.job.state) == state {
            n += 1;
        }
    }
    n
}

/// How many jobs `replica`'s index shows in `state` (0 while it is away).
async fn indexed_in(base: &str, state: JobState) -> u64 {
    let Ok(client) = CoordinatorClient::new(base) else {
        return 0;
    };
    client
        .list_jobs(&ListJobs {
            state: Some(state),
            limit: Some(200),
            ..ListJobs::default()
        })
        .await
        .map_or(0, |page| page.items.len() as u64)
}

/// Each job's JobAssigned and JobFinalized events on chain.
async fn lifecycle_events(s: &System) -> (HashMap<u64, u32>, HashMap<u64, u32>) {
    let stream = EventStream::new(&s.net.provider, s.job_mgr, ContractKind::JobMgr, 1_000);
    let mut cursor = EventCursor::at(s.manifest.deploy_block.unwrap_or(0));
    let (mut assigned, mut finalized) = (HashMap::new(), HashMap::new());
    loop {
        let (events, next) = stream.next_page(&cursor).await.expect("events");
        for event in &events {
            match &event.event {
                CiroEvent::JobMgr(job_mgr::Event::JobAssigned(e)) => {
                    *assigned.entry(e.job_id).or_insert(0) += 1
                }
                CiroEvent::JobMgr(job_mgr::Event::JobFinalized(e)) => {
                    *finalized.entry(e.job_id).or_insert(0) += 1
                }
                _ => {}
            }
        }
        if events.is_empty() && next.continuation.is_none() && next.from_block == cursor.from_block
        {
            break;
        }
        cursor = next;
    }
    (assigned, finalized)
}

/// Every job Finalized on chain, assigned and finalized exactly once, the index equal to the
/// chain, the invariants held.
async fn assert_end_state(s: &System, database_url: &str) {
    assert_eq!(on_chain_in(s, "Finalized").await, JOBS);
    let (assigned, finalized) = lifecycle_events(s).await;
    for job_id in 1..=JOBS {
        assert_eq!(assigned.get(&job_id), Some(&1), "job {job_id} assignments");
        assert_eq!(
            finalized.get(&job_id),
            Some(&1),
            "job {job_id} finalizations"
        );
    }
    let store = Store::connect(database_url).await.expect("the index");
    common::assert_jobs_match_chain(s, &store).await;
    s.assert_invariants("after the load").await;
}

/// Runs the load against `api` (the base URL the workers and the submitter use); `fault` runs
/// once some results are committed; then the challenge window passes and everything must end
/// Finalized.
async fn run_load<F, Fut>(s: &System, api: &str, fault: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = String>,
{
    let client = CoordinatorClient::new(api)
        .expect("client")
        .with_signer(signer(s, Actor::Submitter));
    let owner = CoordinatorClient::new(api)
        .expect("client")
        .with_signer(signer(s, Actor::Admin));
    let (model, model_digest) = network(s, &owner).await;
    let stop = CancellationToken::new();
    let workers: Vec<_> = WORKERS
        .into_iter()
        .map(|w| {
            tokio::spawn(simulate_worker(
                signer(s, w),
                s.net.account(w),
                s.job_mgr,
                api.to_owned(),
                model_digest,
                stop.clone(),
            ))
        })
        .collect();
    submit_jobs(s, &client, model).await;
    eventually("the first results committed", WAIT, || async {
        (indexed_in(api, JobState::Completed).await >= 20).then_some(())
    })
    .await;
    let after = fault().await;
    eventually("every job completed on chain", WAIT, || async {
        (indexed_in(&after, JobState::Completed).await == JOBS).then_some(())
    })
    .await;
    stop.cancel();
    let mut committed = 0;
    for w in workers {
        committed += w.await.expect("worker task");
    }
    assert_eq!(
        committed, JOBS,
        "each job committed once by the simulated workers"
    );
    s.advance(RESULT_WINDOW + 1).await;
    eventually("every job finalized in the index", WAIT, || async {
        (indexed_in(&after, JobState::Finalized).await == JOBS).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_coordinator_killed_with_120_jobs_in_flight_resumes_and_nothing_is_done_twice() {
    let s = System::deploy().await.expect("deploy");
    let site = Site::new(&s, None);
    let port = free_port();
    let first = site.start(&s, "first", port).await;
    let api = first.base.clone();
    let mut first = Some(first);
    let (site_ref, s_ref) = (&site, &s);
    let mut restarted = None;
    run_load(&s, &api, || async {
        first.take().expect("running").kill().await;
        // The same database and port; a new process (a new replica name: it waits out the
        // dead one's lease).
        let second = site_ref.start(s_ref, "restarted", port).await;
        let base = second.base.clone();
        restarted = Some(second);
        base
    })
    .await;
    let second = restarted.expect("restarted");
    assert_eq!(second.metric("ciro_leader").await, 1.0);
    // The restarted process did the rest of the work: every finalization is its.
    assert_eq!(
        second
            .metric(r#"ciro_keeper_jobs_total{action="finalize",result="ok"}"#)
            .await,
        JOBS as f64
    );
    second.stop().await;
    assert_end_state(&s, &site.database_url).await;
}

/// Two processes given one replica name (a fixed name in a replicated template, a rolling
/// update, pid 1 in two containers): each would renew the other's lease as its own, in the same
/// epoch, so both would lead and the fence would pass for both. The lease names the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_postgres_two_replicas_given_one_name_never_both_lead() {
    let s = System::deploy().await.expect("deploy");
    let database_url = fresh_postgres().await.expect("a PostgreSQL database");
    let site = Site::new(&s, Some(database_url));
    let first = site.start(&s, "twin", free_port()).await;
    eventually("the first twin leads", Duration::from_secs(30), || async {
        (first.metric("ciro_leader").await == 1.0).then_some(())
    })
    .await;
    let second = site.start(&s, "twin", free_port()).await;
    // Several renewals later (a lease of 3 s is renewed every second), still one leader.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            (
                first.metric("ciro_leader").await,
                second.metric("ciro_leader").await
            ),
            (1.0, 0.0),
            "one leader at a time"
        );
    }
    second.stop().await;
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_postgres_the_leader_is_killed_mid_load_and_the_other_replica_takes_over() {
    let s = System::deploy().await.expect("deploy");
    let database_url = fresh_postgres().await.expect("a PostgreSQL database");
    let site = Site::new(&s, Some(database_url));
    let leader = site.start(&s, "replica-1", free_port()).await;
    eventually("replica-1 leads", Duration::from_secs(30), || async {
        (leader.metric("ciro_leader").await == 1.0).then_some(())
    })
    .await;
    let follower = site.start(&s, "replica-2", free_port()).await;
    let api = follower.base.clone();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        follower.metric("ciro_leader").await,
        0.0,
        "one leader at a time"
    );
    let mut leader = Some(leader);
    run_load(&s, &api, || async {
        leader.take().expect("leading").kill().await;
        api.clone()
    })
    .await;
    assert_eq!(follower.metric("ciro_leader").await, 1.0);
    assert!(follower.metric("ciro_leader_epoch").await >= 2.0);
    assert_eq!(
        follower
            .metric(r#"ciro_keeper_jobs_total{action="finalize",result="ok"}"#)
            .await,
        JOBS as f64,
        "the replica that took over finalized every job"
    );
    follower.stop().await;
    assert_end_state(&s, &site.database_url).await;
}
