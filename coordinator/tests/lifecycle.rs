//! A job's whole life through the coordinator against a real devnet: the model file and the
//! input uploaded, the model registered and the job submitted on chain, the worker announced
//! by signed heartbeats, the job matched and assigned by the coordinator's own transaction,
//! the output uploaded and committed by the worker, the challenge window passed and the job
//! finalized by the keeper; the submitter downloads the output and it hashes to the on-chain
//! commitment, and the job's server-sent event stream showed each state change once. And
//! liveness: a worker that falls silent has its job released and matched to
//! another worker, which completes it.

mod common;

use std::time::Duration;

use ciro_api::coordinator::{
    CoordinatorClient, ErrorCode, GiveBack, Heartbeat, JobState, ListJobs, ListWorkers,
    UnmatchedReason,
};
use ciro_api::wire::Digest;
use ciro_chain::clients::{u256, u256_from_digest};
use ciro_chain::tx::call;
use ciro_coordinator::store::Store;
use ciro_tests::system::*;
use ciro_tests::Actor;
use common::{eventually, sample, Options, Running};

const WAIT: Duration = Duration::from_secs(60);

fn heartbeat(models: &[Digest]) -> Heartbeat {
    Heartbeat {
        running_jobs: 0,
        capacity: 2,
        models: models.to_vec(),
        agent_version: "test-worker".into(),
        max_input_bytes: None,
        max_model_bytes: None,
        max_batch_items: None,
    }
}

/// Whether a heartbeat was refused because the coordinator has not indexed the worker, or
/// its stake, yet (or again, while an emptied index is rebuilt).
fn not_indexed_yet(e: &ciro_api::coordinator::ClientError) -> bool {
    matches!(
        e.code(),
        Some(
            ciro_api::coordinator::ErrorCode::WorkerNotFound
                | ciro_api::coordinator::ErrorCode::InvalidState
        )
    )
}

/// `client`'s first heartbeat, once the coordinator has indexed its registration.
async fn announce(client: &ciro_api::coordinator::CoordinatorClient, models: &[Digest]) {
    eventually(
        "the worker is indexed and its heartbeat accepted",
        WAIT,
        || async {
            match client.heartbeat(&heartbeat(models)).await {
                Ok(_) => Some(()),
                // Not indexed yet, or its stake not indexed yet.
                Err(e) if not_indexed_yet(&e) => None,
                Err(e) => panic!("heartbeat: {e}"),
            }
        },
    )
    .await
}

/// Announces `client`'s worker holding `models`, then keeps it live: a heartbeat every 500 ms
/// until the task is aborted.
async fn keep_live(
    client: ciro_api::coordinator::CoordinatorClient,
    models: Vec<Digest>,
) -> tokio::task::JoinHandle<()> {
    keep_beating(client, heartbeat(&models)).await
}

/// [`keep_live`] with the heartbeat `beat` (limits, models).
async fn keep_beating(
    client: ciro_api::coordinator::CoordinatorClient,
    beat: Heartbeat,
) -> tokio::task::JoinHandle<()> {
    announce(&client, &beat.models).await;
    client.heartbeat(&beat).await.expect("heartbeat");
    tokio::spawn(async move {
        loop {
            client.heartbeat(&beat).await.expect("heartbeat");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

/// A refused blob read's status, code and message, with `digest` written as `<digest>`: what
/// tells one blob's refusal from another's.
/// A batch's inputs or outputs.
enum Side {
    Inputs,
    Outputs,
}

/// Batch `job_id`'s inputs or outputs from position `from` on, in one request of `client`.
async fn read_items(
    client: &CoordinatorClient,
    job_id: u64,
    side: Side,
    from: u64,
) -> Vec<Vec<u8>> {
    let mut download = match side {
        Side::Inputs => client.open_batch_inputs(job_id, from).await,
        Side::Outputs => client.open_batch_outputs(job_id, from).await,
    }
    .expect("opening the items");
    let mut items = Vec::new();
    while let Some(item) = download.next_item(1 << 20).await.expect("an item") {
        items.push(item.to_vec());
    }
    items
}

/// Uploads `outputs` as batch `job_id`'s, signing `signed` as the body's SHA-256 (its own by
/// default).
async fn upload_items(
    client: &CoordinatorClient,
    job_id: u64,
    outputs: &[Vec<u8>],
    signed: Option<Digest>,
) -> Result<ciro_api::coordinator::OutputsAccepted, ciro_api::coordinator::ClientError> {
    let body = ciro_api::coordinator::items::encode(outputs.iter().map(Vec::as_slice));
    let (sha256, len) = (Digest::of(&body), body.len() as u64);
    let chunks = futures_util::stream::iter(
        body.chunks(7)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    client
        .upload_batch_outputs(job_id, chunks, signed.unwrap_or(sha256), len)
        .await
}

/// The code of the API's refusal.
fn refused_code<T: std::fmt::Debug>(
    result: Result<T, ciro_api::coordinator::ClientError>,
) -> ErrorCode {
    let error = result.expect_err("a refusal");
    error
        .code()
        .unwrap_or_else(|| panic!("not the API's refusal: {error}"))
}

fn hidden<T: std::fmt::Debug>(
    read: Result<T, ciro_api::coordinator::ClientError>,
    digest: &Digest,
) -> (u16, String, String) {
    match read.expect_err("a refused read") {
        ciro_api::coordinator::ClientError::Api { status, body, .. } => (
            status.as_u16(),
            format!("{:?}", body.code),
            body.message.replace(&digest.to_string(), "<digest>"),
        ),
        other => panic!("not the API's refusal: {other}"),
    }
}

/// The job's reason for waiting once it is `given_back` (polled until it is).
async fn given_back_reason(c: &Running, job: u64, what: &str) -> ciro_api::coordinator::Unmatched {
    eventually(what, WAIT, || async {
        let details = c.client().job(job).await.ok()?;
        let unmatched = details.unmatched?;
        matches!(unmatched.reason, UnmatchedReason::GivenBack { .. }).then_some(unmatched)
    })
    .await
}

/// Registers a model whose file is `bytes` (uploaded first); its id and digest.
async fn model_with_file(s: &System, c: &Running, bytes: &[u8]) -> (u64, Digest) {
    let digest = c
        .client_as(s, Actor::Admin)
        .upload_blob(bytes.to_vec())
        .await
        .expect("uploading the model file")
        .digest;
    (register_model_as(s, Actor::Admin, &digest).await, digest)
}

/// `owner` registers a model whose file hashes to `digest`, with [`requirements`] and
/// [`MODEL_PRICE`]; its id.
async fn register_model_as(s: &System, owner: Actor, digest: &Digest) -> u64 {
    s.send(s.jobs_as(owner).register_model(
        &u256_from_digest(&digest.0),
        &requirements(),
        &u256(MODEL_PRICE),
    ))
    .await
    .expect("register_model");
    call(s.jobs_reader().model_count())
        .await
        .expect("model_count")
}

/// The submitter uploads `input` and submits a job on `model`; the job's id and the input's
/// digest.
async fn job_with_input(s: &System, c: &Running, model: u64, input: &[u8]) -> (u64, Digest) {
    let digest = c
        .client_as(s, Actor::Submitter)
        .upload_blob(input.to_vec())
        .await
        .expect("uploading the input")
        .digest;
    (submit_on(s, model, &digest).await, digest)
}

/// The submitter submits a job on `model` naming input `digest`, due in an hour; its id.
async fn submit_on(s: &System, model: u64, digest: &Digest) -> u64 {
    let deadline = s.net.now().await.expect("now") + 3_600;
    s.send(s.jobs_as(Actor::Submitter).submit_job(
        &model,
        &u256_from_digest(&digest.0),
        &u256(JOB_FEE),
        &deadline,
        &no_options(),
    ))
    .await
    .expect("submit_job");
    call(s.jobs_reader().job_count()).await.expect("job_count")
}

/// Waits until the chain shows `job` in `state`.
async fn chain_state(s: &System, job: u64, state: &str) -> ciro_chain::bindings::job_mgr::JobInfo {
    eventually(&format!("job {job} {state} on chain"), WAIT, || async {
        let info = s.job_info(job).await;
        (format!("{:?}", info.job.state) == state).then_some(info)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_lives_its_whole_life_through_the_coordinator() {
    let s = System::deploy().await.expect("deploy");
    let c = Running::start(&s, Options::default()).await;
    let worker = c.client_as(&s, Actor::WorkerA);
    let submitter = c.client_as(&s, Actor::Submitter);
    let stranger = c.client_as(&s, Actor::Attacker);

    let (model, model_digest) = model_with_file(&s, &c, b"a TorchScript file's bytes").await;
    s.active_worker(Actor::WorkerA).await;
    announce(&worker, &[model_digest]).await;
    let input = b"the submitter's input tensors".to_vec();
    let (job, input_digest) = job_with_input(&s, &c, model, &input).await;
    // The submitter follows the job's state changes live (server-sent events).
    let following = {
        let stream = c.client();
        tokio::spawn(async move {
            // From the first event on (the stream replays the log), once the job is indexed.
            let mut events = loop {
                match stream.job_events(job, None).await {
                    Ok(events) => break events,
                    Err(e) if e.code() == Some(ciro_api::coordinator::ErrorCode::JobNotFound) => {
                        tokio::time::sleep(Duration::from_millis(100)).await
                    }
                    Err(e) => panic!("the event stream: {e}"),
                }
            };
            let mut seen = Vec::new();
            while let Some(event) = events.next().await.expect("an event") {
                assert_eq!(event.job_id, job);
                seen.push((event.state, event.worker));
                if event.state == JobState::Finalized {
                    break;
                }
            }
            seen
        })
    };

    // Matched and assigned on chain by the coordinator; the worker's long-poll returns it.
    let assignment = eventually("the assignment reaches the worker", WAIT, || async {
        let polled = worker
            .poll_assignments(Duration::from_secs(5))
            .await
            .expect("poll");
        polled.assignments.into_iter().find(|a| a.job_id == job)
    })
    .await;
    assert_eq!(assignment.input_hash, input_digest);
    assert_eq!(assignment.model_hash, model_digest);
    let info = chain_state(&s, job, "Assigned").await;
    assert_eq!(info.job.worker, s.addr(Actor::WorkerA));

    // The worker reads its input (private: a stranger may not) and the public model file.
    assert_eq!(
        worker.download_blob(&input_digest).await.expect("input"),
        input
    );
    let refused = stranger
        .download_blob(&input_digest)
        .await
        .expect_err("a stranger reads the input");
    assert_eq!(
        refused.code(),
        Some(ciro_api::coordinator::ErrorCode::BlobNotFound)
    );
    // Answered exactly as bytes never uploaded, to a stranger and to an unsigned request,
    // for the bytes and for their size: nothing tells that a guessed input exists.
    let never = Digest::of(b"bytes nobody uploaded");
    for reader in [&stranger, &c.client()] {
        assert_eq!(
            hidden(reader.download_blob(&input_digest).await, &input_digest),
            hidden(reader.download_blob(&never).await, &never)
        );
        assert_eq!(
            hidden(reader.blob_meta(&input_digest).await, &input_digest),
            hidden(reader.blob_meta(&never).await, &never)
        );
    }
    assert_eq!(
        worker.blob_meta(&input_digest).await.expect("meta").size,
        input.len() as u64,
        "the job's worker reads the input's size"
    );
    assert_eq!(
        c.client()
            .download_blob(&model_digest)
            .await
            .expect("model"),
        b"a TorchScript file's bytes".to_vec()
    );

    // The output: uploaded, then committed on chain by the worker.
    let output = b"the worker's output tensors".to_vec();
    let accepted = worker
        .upload_output(job, output.clone())
        .await
        .expect("output upload");
    let output_digest = Digest::of(&output);
    assert_eq!(accepted.output_hash, output_digest);
    s.send(
        s.jobs_as(Actor::WorkerA)
            .submit_result(&job, &u256_from_digest(&output_digest.0)),
    )
    .await
    .expect("submit_result");
    chain_state(&s, job, "Completed").await;

    // Not finalized while the window is open; finalized by the keeper once it closes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        format!("{:?}", s.job_info(job).await.job.state),
        "Completed"
    );
    s.advance(RESULT_WINDOW + 1).await;
    let info = chain_state(&s, job, "Finalized").await;
    let details = eventually("the index shows it finalized", WAIT, || async {
        let d = c.client().job(job).await.expect("job");
        (d.job.state == JobState::Finalized).then_some(d)
    })
    .await;
    assert_eq!(details.job.output_hash, Some(output_digest));
    let seen = tokio::time::timeout(WAIT, following)
        .await
        .expect("the event stream reached Finalized")
        .expect("the follower");
    let worker_a = Some(s.net.address(Actor::WorkerA));
    assert_eq!(
        seen,
        vec![
            (JobState::Queued, None),
            (JobState::Assigned, worker_a),
            (JobState::Completed, worker_a),
            (JobState::Finalized, worker_a),
        ]
    );

    // The submitter's download hashes to the on-chain commitment; a stranger is refused.
    let downloaded = submitter
        .download_blob(&output_digest)
        .await
        .expect("output");
    assert_eq!(
        u256_from_digest(&Digest::of(&downloaded).0),
        info.job.output_hash
    );
    let refused = stranger
        .download_blob(&output_digest)
        .await
        .expect_err("a stranger reads the output");
    assert_eq!(
        refused.code(),
        Some(ciro_api::coordinator::ErrorCode::BlobNotFound)
    );

    // The listing by submitter finds it; the metrics counted one assignment and one finalization.
    let mine = c
        .client()
        .list_jobs(&ListJobs {
            submitter: Some(s.net.address(Actor::Submitter)),
            ..ListJobs::default()
        })
        .await
        .expect("list");
    assert_eq!(
        mine.items.iter().map(|j| j.job_id).collect::<Vec<_>>(),
        vec![job]
    );
    // The gauge follows the index at the leader's next tick.
    let metrics = eventually("the jobs gauge counts it finalized", WAIT, || async {
        let m = c.metrics().await;
        (sample(&m, r#"ciro_jobs{state="Finalized"}"#) == 1.0).then_some(m)
    })
    .await;
    assert_eq!(
        sample(
            &metrics,
            r#"ciro_keeper_jobs_total{action="assign",result="ok"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &metrics,
            r#"ciro_keeper_jobs_total{action="finalize",result="ok"}"#
        ),
        1.0
    );
    assert_eq!(sample(&metrics, "ciro_leader"), 1.0);
    assert_eq!(sample(&metrics, "ciro_queue_wait_seconds_count"), 1.0);
    s.assert_invariants("after the lifecycle").await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_workers_job_is_released_and_completed_by_another() {
    let s = System::deploy().await.expect("deploy");
    let c = Running::start(
        &s,
        Options {
            stale_after_secs: 3,
            ..Options::default()
        },
    )
    .await;
    let a = c.client_as(&s, Actor::WorkerA);
    let b = c.client_as(&s, Actor::WorkerB);
    let (model, model_digest) = model_with_file(&s, &c, b"model bytes").await;
    s.active_worker(Actor::WorkerA).await;
    s.active_worker(Actor::WorkerB).await;
    // Only A is live when the job arrives.
    announce(&a, &[model_digest]).await;
    let (job, _) = job_with_input(&s, &c, model, b"input").await;
    let info = chain_state(&s, job, "Assigned").await;
    assert_eq!(info.job.worker, s.addr(Actor::WorkerA));

    // A falls silent; B keeps beating. The keeper releases A's assignment and the matcher
    // gives the job to B.
    let beating = keep_live(c.client_as(&s, Actor::WorkerB), vec![]).await;
    let reassigned = eventually("the job reassigned to B", WAIT, || async {
        let info = s.job_info(job).await;
        (info.job.worker == s.addr(Actor::WorkerB)).then_some(info)
    })
    .await;
    assert_eq!(format!("{:?}", reassigned.job.state), "Assigned");
    let polled = b
        .poll_assignments(Duration::from_secs(5))
        .await
        .expect("poll B");
    assert!(polled.assignments.iter().any(|x| x.job_id == job));
    s.send(s.jobs_as(Actor::WorkerB).submit_result(&job, &u256(0x0b)))
        .await
        .expect("B commits");
    s.advance(RESULT_WINDOW + 1).await;
    chain_state(&s, job, "Finalized").await;
    beating.abort();

    // A's miss is on record; the release was the coordinator's.
    let a_info = s.worker_info(Actor::WorkerA).await;
    assert_eq!(a_info.reputation.missed, 1, "{a_info:?}");
    let metrics = c.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            r#"ciro_keeper_jobs_total{action="release",result="ok"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &metrics,
            r#"ciro_keeper_jobs_total{action="assign",result="ok"}"#
        ),
        2.0
    );
    s.assert_invariants("after the reassignment").await;
    c.stop().await;
}

/// Heartbeats every 500 ms, carrying on through the refusals an index being rebuilt answers
/// (the worker not indexed yet); any other refusal fails the test.
fn beat_through_rebuilds(
    client: ciro_api::coordinator::CoordinatorClient,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match client.heartbeat(&heartbeat(&[])).await {
                Ok(_) => {}
                Err(e) if not_indexed_yet(&e) => {}
                Err(e) => panic!("heartbeat: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

/// An index emptied under a running leader (a reset, or a PostgreSQL crash of the unlogged
/// index) is rebuilt from the chain, and while it is, the API refuses heartbeats of workers
/// it has not indexed again: silence is not the workers' fault then. The leader judges
/// silence only once it has led for twice the threshold after the rebuild, as after a
/// takeover: a worker silent since the reset keeps its job until then, and loses it after.
/// (Without that rule its job is released one threshold after its last heartbeat, however
/// recent the rebuild.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_the_index_is_rebuilt_silence_is_judged_only_once_the_leader_has_settled_again() {
    const STALE: u64 = 3;
    let s = System::deploy().await.expect("deploy");
    let started = std::time::Instant::now();
    let c = Running::start(
        &s,
        Options {
            stale_after_secs: STALE,
            ..Options::default()
        },
    )
    .await;
    let (model, model_digest) = model_with_file(&s, &c, b"model bytes").await;
    s.active_worker(Actor::WorkerA).await;
    s.active_worker(Actor::WorkerB).await;
    // Only A is live when the job arrives.
    let a_beating = keep_live(c.client_as(&s, Actor::WorkerA), vec![model_digest]).await;
    let (job, _) = job_with_input(&s, &c, model, b"input").await;
    let info = chain_state(&s, job, "Assigned").await;
    assert_eq!(info.job.worker, s.addr(Actor::WorkerA));
    let b_beating = beat_through_rebuilds(c.client_as(&s, Actor::WorkerB));
    // The leader has settled (led for more than twice the threshold) while A beats, so
    // without the rule below A's silence would count from its last heartbeat.
    let settled = started + Duration::from_secs(2 * STALE + 1);
    tokio::time::sleep(settled.saturating_duration_since(std::time::Instant::now())).await;

    // A falls silent, and the index is emptied at once.
    a_beating.abort();
    let reset_at = std::time::Instant::now();
    let store = Store::connect(&format!(
        "sqlite://{}",
        c.dir.path().join("coordinator.db").display()
    ))
    .await
    .expect("the coordinator's database");
    store.reset_index().await.expect("reset the index");

    // The job goes to B, but not before the leader has led twice the threshold past the
    // rebuild, which began after the reset.
    let reassigned = eventually("the job reassigned to B", WAIT, || async {
        let info = s.job_info(job).await;
        (info.job.worker != s.addr(Actor::WorkerA)).then_some((info, reset_at.elapsed()))
    })
    .await;
    let (info, after) = reassigned;
    assert!(
        after >= Duration::from_secs(2 * STALE),
        "A's job was released {after:?} after the index was emptied, before the leader settled again"
    );
    // The release happened (it was not held for good): the next state is B's assignment.
    let info = if info.job.worker == s.addr(Actor::WorkerB) {
        info
    } else {
        eventually("the job assigned to B", WAIT, || async {
            let info = s.job_info(job).await;
            (info.job.worker == s.addr(Actor::WorkerB)).then_some(info)
        })
        .await
    };
    assert_eq!(format!("{:?}", info.job.state), "Assigned");
    b_beating.abort();
    let a_info = s.worker_info(Actor::WorkerA).await;
    assert_eq!(a_info.reputation.missed, 1, "{a_info:?}");
    s.assert_invariants("after the release that followed the rebuild")
        .await;
    c.stop().await;
}

/// A worker that gives a job back never gets it again, and the job goes to the next eligible
/// worker even when the one that gave it back still ranks first (here: it holds the model, 16
/// levels up). Dropping the pair after the plan chose it would choose it again every tick and
/// leave the job queued until its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_its_best_worker_gives_back_goes_to_the_next_eligible_worker() {
    let s = System::deploy().await.expect("deploy");
    let c = Running::start(&s, Options::default()).await;
    let a = c.client_as(&s, Actor::WorkerA);
    let (model, model_digest) = model_with_file(&s, &c, b"a model both can run").await;
    s.active_worker(Actor::WorkerA).await;
    s.active_worker(Actor::WorkerB).await;
    announce(&a, &[model_digest]).await;
    let beating = [
        keep_live(c.client_as(&s, Actor::WorkerA), vec![model_digest]).await,
        keep_live(c.client_as(&s, Actor::WorkerB), vec![]).await,
    ];
    let b_row = eventually("B is live", WAIT, || async {
        let row = c
            .client()
            .worker(s.net.address(Actor::WorkerB))
            .await
            .ok()?;
        row.liveness.is_some().then_some(row)
    })
    .await;
    assert!(b_row.liveness.is_some());
    let (job, _) = job_with_input(&s, &c, model, b"input").await;
    let info = chain_state(&s, job, "Assigned").await;
    assert_eq!(info.job.worker, s.addr(Actor::WorkerA), "A holds the model");

    // Once the coordinator's index shows the assignment, A gives the job back.
    eventually("A's give-back accepted", WAIT, || async {
        a.request_release(job, "cannot run it", GiveBack::JobFailed)
            .await
            .ok()
    })
    .await;
    let reassigned = eventually("the job assigned to B", WAIT, || async {
        let info = s.job_info(job).await;
        (info.job.worker == s.addr(Actor::WorkerB)).then_some(info)
    })
    .await;
    assert_eq!(format!("{:?}", reassigned.job.state), "Assigned");
    for task in beating {
        task.abort();
    }
    s.assert_invariants("after the reassignment").await;
    c.stop().await;
}

/// JobMgr refuses to assign a job in the second of its previous assignment (so a release can
/// name an assignment by its time). A job released and offered again within that second is
/// skipped by `assign_jobs`; the coordinator holds the job back a second and offers it again,
/// rather than setting the (job, worker) pair aside as for a refusal that says something about
/// the pair (here a 120 s exclusion would leave the job waiting two minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_skipped_as_assigned_this_second_is_offered_again_a_second_later() {
    let s = System::deploy().await.expect("deploy");
    let c = Running::start(
        &s,
        Options {
            exclusion_secs: 120,
            ..Options::default()
        },
    )
    .await;
    let a = c.client_as(&s, Actor::WorkerA);
    let (model, model_digest) = model_with_file(&s, &c, b"a model either can run").await;
    s.active_worker(Actor::WorkerA).await;
    s.active_worker(Actor::WorkerB).await;
    let beating_a = keep_live(c.client_as(&s, Actor::WorkerA), vec![model_digest]).await;
    let (job, _) = job_with_input(&s, &c, model, b"input").await;
    let first = chain_state(&s, job, "Assigned").await.job;
    assert_eq!(
        first.worker,
        s.addr(Actor::WorkerA),
        "A is the only live worker"
    );
    eventually("A's give-back accepted", WAIT, || async {
        a.request_release(job, "cannot run it", GiveBack::JobFailed)
            .await
            .ok()
    })
    .await;
    chain_state(&s, job, "Queued").await;
    // The chain's clock goes back to the first assignment's second: the next transaction runs
    // in it (devnet runs a transaction at the time of the block before it). Nothing else is
    // sent meanwhile: A gave the job back, so no live worker may take it until B is live.
    s.net
        .devnet
        .set_time(first.assigned_at)
        .await
        .expect("set_time");
    let skipped = |text: String| {
        text.lines()
            .find(|l| {
                l.starts_with("ciro_keeper_jobs_total")
                    && l.contains("action=\"assign\"")
                    && l.contains("result=\"skipped\"")
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert_eq!(skipped(c.metrics().await), 0, "nothing skipped yet");
    let beating_b = keep_live(c.client_as(&s, Actor::WorkerB), vec![]).await;
    let started = std::time::Instant::now();
    let reassigned = eventually("the job assigned to B", WAIT, || async {
        let info = s.job_info(job).await;
        (info.job.worker == s.addr(Actor::WorkerB)).then_some(info.job)
    })
    .await;
    assert_eq!(format!("{:?}", reassigned.state), "Assigned");
    assert!(
        reassigned.assigned_at > first.assigned_at,
        "a later second than the first assignment"
    );
    assert!(
        skipped(c.metrics().await) >= 1,
        "the first offer to B ran in the first assignment's second and was skipped"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "offered again within seconds, not after the pair's 120 s exclusion ({:?})",
        started.elapsed()
    );
    beating_a.abort();
    beating_b.abort();
    s.assert_invariants("after the reassignment").await;
    c.stop().await;
}

/// A job every worker fails (a model that wedges or crashes the worker, an input no worker
/// can decode) would otherwise be offered to each live worker in turn, each paying for it (a
/// restart, a miss on its record). Once `max_give_backs` workers gave it back as failed on them
/// it is offered to no one, though an eligible worker with room is live: it says why, and its
/// submitter can cancel it and get the fee back. A worker that gives it back as unable to run
/// it (its own limits) does not count: the job goes on to the next worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_enough_workers_gave_back_is_offered_to_no_other() {
    let s = System::deploy().await.expect("deploy");
    let c = Running::start(
        &s,
        Options {
            max_give_backs: 1,
            ..Options::default()
        },
    )
    .await;
    let (model, _) = model_with_file(&s, &c, b"a model every worker fails on").await;
    let workers = [Actor::WorkerA, Actor::WorkerB, Actor::WorkerC];
    let mut beating = Vec::new();
    for actor in workers {
        s.active_worker(actor).await;
        beating.push(keep_live(c.client_as(&s, actor), vec![]).await);
    }
    let (job, _) = job_with_input(&s, &c, model, b"an input").await;
    let before = s.balance_of(Actor::Submitter).await;

    // Two workers in turn are assigned the job and give it back: the first unable to run it,
    // the second because it failed there.
    let mut gave_back = Vec::new();
    for (turn, kind) in [GiveBack::WorkerUnable, GiveBack::JobFailed]
        .into_iter()
        .enumerate()
    {
        let holder = eventually("the job assigned to a new worker", WAIT, || async {
            let info = s.job_info(job).await;
            let state = format!("{:?}", info.job.state);
            (state == "Assigned" && !gave_back.contains(&info.job.worker))
                .then_some(info.job.worker)
        })
        .await;
        gave_back.push(holder);
        let actor = workers
            .into_iter()
            .find(|a| s.addr(*a) == holder)
            .expect("one of the three workers");
        let client = c.client_as(&s, actor);
        eventually("the give-back accepted", WAIT, || async {
            client
                .request_release(job, "the job fails here", kind)
                .await
                .ok()
        })
        .await;
        assert_eq!(gave_back.len(), turn + 1);
    }

    // Released, and then offered to no one: the third worker is live, eligible and idle.
    let unmatched = given_back_reason(&c, job, "the job queued again, failed once").await;
    assert_eq!(
        unmatched.reason,
        UnmatchedReason::GivenBack { workers: 1 },
        "only the failure counts: {unmatched:?}"
    );
    assert!(
        unmatched.message.contains("failed on 1 worker,"),
        "{unmatched:?}"
    );
    // Ten matcher ticks with an eligible worker idle, and still queued.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let info = s.job_info(job).await;
    assert_eq!(format!("{:?}", info.job.state), "Queued", "{info:?}");
    let third = workers
        .into_iter()
        .find(|a| !gave_back.contains(&s.addr(*a)))
        .expect("a third worker");
    let row = c
        .client()
        .worker(s.net.address(third))
        .await
        .expect("worker");
    assert!(row.liveness.is_some(), "the third worker is live: {row:?}");

    // Its submitter takes the fee back.
    s.send(s.jobs_as(Actor::Submitter).cancel_job(&job))
        .await
        .expect("cancel_job");
    chain_state(&s, job, "Cancelled").await;
    assert_eq!(
        s.balance_of(Actor::Submitter).await,
        before + JOB_FEE,
        "the escrowed fee returned"
    );
    for task in beating {
        task.abort();
    }
    s.assert_invariants("after the cancellation").await;
    c.stop().await;
}

/// A worker declares in its heartbeats the largest input and model file it accepts; a job
/// whose data is larger was assigned to it anyway, and it could only give the job back (as
/// unable, which counts nothing), so the job circulated until its deadline. Now the matcher
/// offers it only to a worker that admits it, the job explains why it waits while none does,
/// and a declared limit of zero is refused. A worker that holds the model already downloads
/// no model file, so its model-file limit does not apply to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_larger_than_a_workers_limits_goes_only_to_a_worker_that_admits_it() {
    let s = System::deploy().await.expect("deploy");
    let c = Running::start(&s, Options::default()).await;
    let model_file = [7u8; 100];
    let (model, model_digest) = model_with_file(&s, &c, &model_file).await;
    for actor in [Actor::WorkerA, Actor::WorkerB, Actor::WorkerC] {
        s.active_worker(actor).await;
    }
    let a = c.client_as(&s, Actor::WorkerA);
    announce(&a, &[]).await;
    let zero = Heartbeat {
        max_input_bytes: Some(0),
        ..heartbeat(&[])
    };
    let refused = a.heartbeat(&zero).await.expect_err("a zero limit");
    assert_eq!(
        refused.code(),
        Some(ciro_api::coordinator::ErrorCode::BadRequest),
        "{refused}"
    );
    // The job's input is 24 bytes, its model file 100. A admits inputs of 8 bytes at most; C
    // admits the input but model files of 50 bytes at most (with the two limits swapped, C
    // would admit the job).
    let limits = |input, model| Heartbeat {
        max_input_bytes: Some(input),
        max_model_bytes: Some(model),
        ..heartbeat(&[])
    };
    let mut beating = vec![
        keep_beating(a, limits(8, 1 << 20)).await,
        keep_beating(c.client_as(&s, Actor::WorkerC), limits(200, 50)).await,
    ];
    let input = b"an input of 24 bytes....";
    let (job, _) = job_with_input(&s, &c, model, input).await;
    // The answers share the live workers read at most once a second: wait for both.
    let expected = UnmatchedReason::TooLarge {
        input_bytes: input.len() as u64,
        model_bytes: model_file.len() as u64,
        eligible: 2,
    };
    let unmatched = eventually("the job explains its size", WAIT, || async {
        let unmatched = c.client().job(job).await.ok()?.unmatched?;
        (unmatched.reason == expected).then_some(unmatched)
    })
    .await;
    assert!(
        unmatched.message.contains("larger than any"),
        "{unmatched:?}"
    );
    // The workers' list reads the heartbeats with their limits.
    let listed = c
        .client()
        .list_workers(&ListWorkers::default())
        .await
        .expect("the workers' list");
    let live = listed
        .items
        .iter()
        .filter(|w| w.liveness.as_ref().is_some_and(|l| l.live))
        .count();
    assert_eq!(live, 2, "{listed:?}");
    // Ten matcher ticks with A and C live and idle: still queued.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let info = s.job_info(job).await;
    assert_eq!(format!("{:?}", info.job.state), "Queued", "{info:?}");

    // C now holds the model (its operator loaded it), with the same limits and room for one
    // job: it downloads no model file, so it gets the job.
    beating.pop().expect("C's heartbeats").abort();
    let holding = Heartbeat {
        models: vec![model_digest],
        capacity: 1,
        ..limits(200, 50)
    };
    beating.push(keep_beating(c.client_as(&s, Actor::WorkerC), holding).await);
    assert_eq!(
        chain_state(&s, job, "Assigned").await.job.worker,
        s.addr(Actor::WorkerC)
    );

    // B declares no limit: with C busy, it gets the next such job.
    let (next, _) = job_with_input(&s, &c, model, b"another input, 24 bytes.").await;
    beating.push(keep_live(c.client_as(&s, Actor::WorkerB), vec![]).await);
    assert_eq!(
        chain_state(&s, next, "Assigned").await.job.worker,
        s.addr(Actor::WorkerB)
    );
    for task in beating {
        task.abort();
    }
    c.stop().await;
}

/// A worker whose process dies in a job's pass and restarts slowly has the job released for
/// its silence, which counts nothing: such a job would reach every slow-restarting worker.
/// Restarted, the worker reports the failure although the job is no longer its own, and the
/// report counts. Only a worker the job's log shows assigned may report so, and only as
/// failed: a stranger's report, or an "unable" one for a job no longer its own, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_that_died_in_a_jobs_pass_reports_it_after_its_silence_release() {
    let s = System::deploy().await.expect("deploy");
    let c = Running::start(
        &s,
        Options {
            stale_after_secs: 3,
            max_give_backs: 2,
            ..Options::default()
        },
    )
    .await;
    let (model, _) = model_with_file(&s, &c, b"a model that kills the process").await;
    let workers = [Actor::WorkerA, Actor::WorkerB, Actor::WorkerC];
    for actor in workers {
        s.active_worker(actor).await;
    }
    // Only A is live when the job arrives; then A falls silent (its process died in the pass).
    let a = c.client_as(&s, Actor::WorkerA);
    announce(&a, &[]).await;
    let (job, _) = job_with_input(&s, &c, model, b"an input").await;
    assert_eq!(
        chain_state(&s, job, "Assigned").await.job.worker,
        s.addr(Actor::WorkerA)
    );
    let mut beating = Vec::new();
    for actor in [Actor::WorkerB, Actor::WorkerC] {
        beating.push(keep_live(c.client_as(&s, actor), vec![]).await);
    }
    let holder = eventually(
        "the job released for A's silence and reassigned",
        WAIT,
        || async {
            let info = s.job_info(job).await;
            let worker = info.job.worker;
            (format!("{:?}", info.job.state) == "Assigned" && worker != s.addr(Actor::WorkerA))
                .then_some(worker)
        },
    )
    .await;
    let (next, stranger) = if holder == s.addr(Actor::WorkerB) {
        (Actor::WorkerB, Actor::WorkerC)
    } else {
        (Actor::WorkerC, Actor::WorkerB)
    };
    eventually("the index shows the reassignment", WAIT, || async {
        let details = c.client().job(job).await.ok()?;
        (details.job.worker == Some(s.net.address(next))).then_some(())
    })
    .await;

    // A worker never assigned the job cannot report it; A cannot report it as unable to run
    // a job no longer its own; A's report of the failure is taken.
    let refused = c
        .client_as(&s, stranger)
        .request_release(job, "never had it", GiveBack::JobFailed)
        .await
        .expect_err("a stranger's report");
    assert_eq!(
        refused.code(),
        Some(ciro_api::coordinator::ErrorCode::NotAssigned)
    );
    let refused = a
        .request_release(job, "cannot run it", GiveBack::WorkerUnable)
        .await
        .expect_err("an unable report for a job no longer A's");
    assert_eq!(
        refused.code(),
        Some(ciro_api::coordinator::ErrorCode::NotAssigned)
    );
    a.request_release(job, "died in its pass", GiveBack::JobFailed)
        .await
        .expect("A's report of the failure");
    // The report releases nothing: the job stays with its new worker.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(s.job_info(job).await.job.worker, holder);

    // The new holder fails it too: two failures, the limit; the stranger (live, idle) is not
    // offered it.
    let client = c.client_as(&s, next);
    client
        .request_release(job, "the job fails here", GiveBack::JobFailed)
        .await
        .expect("the holder's give-back");
    let unmatched = given_back_reason(&c, job, "the job queued again, failed twice").await;
    assert_eq!(
        unmatched.reason,
        UnmatchedReason::GivenBack { workers: 2 },
        "{unmatched:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let info = s.job_info(job).await;
    assert_eq!(format!("{:?}", info.job.state), "Queued", "{info:?}");
    for task in beating {
        task.abort();
    }
    c.stop().await;
}

/// Input hashes are public on chain, so anyone can submit a job naming someone else's input.
/// Such a job is not matched on the other submitter's upload (its worker would read their
/// private input), and the stranger cannot download it. Uploading the same bytes itself,
/// which proves it holds them, makes the stranger's job servable like any other (two
/// submitters with identical inputs both get served).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_naming_someone_elses_input_waits_for_its_own_upload_of_it() {
    let s = System::deploy().await.expect("deploy");
    let c = Running::start(&s, Options::default()).await;
    let worker = c.client_as(&s, Actor::WorkerA);
    let stranger = c.client_as(&s, Actor::Attacker);
    let (model, model_digest) = model_with_file(&s, &c, b"a TorchScript file's bytes").await;
    s.active_worker(Actor::WorkerA).await;
    announce(&worker, &[model_digest]).await;
    let input = b"the submitter's private input".to_vec();
    let (first, digest) = job_with_input(&s, &c, model, &input).await;
    let deadline = s.net.now().await.expect("now") + 3_600;
    s.send(s.jobs_as(Actor::Attacker).submit_job(
        &model,
        &u256_from_digest(&digest.0),
        &u256(JOB_FEE),
        &deadline,
        &no_options(),
    ))
    .await
    .expect("the stranger's submit_job");
    let theirs = call(s.jobs_reader().job_count()).await.expect("job_count");
    chain_state(&s, first, "Assigned").await;

    // The worker has room for both, yet only the uploader's job is matched.
    let details = eventually("the stranger's job is indexed", WAIT, || async {
        c.client().job(theirs).await.ok()
    })
    .await;
    assert_eq!(details.job.state, JobState::Queued, "{details:?}");
    assert!(!details.data.input, "{details:?}");
    let why = format!("{:?}", details.unmatched);
    assert!(why.contains("not been uploaded"), "{why}");
    let refused = stranger
        .download_blob(&digest)
        .await
        .expect_err("the stranger reads the submitter's input");
    assert_eq!(
        refused.code(),
        Some(ciro_api::coordinator::ErrorCode::BlobNotFound)
    );
    // A model the stranger registers naming the input's digest does not say its file is
    // stored (that would tell anyone whether guessed bytes were uploaded), on its own page or
    // in the listing.
    let probe = register_model_as(&s, Actor::Attacker, &digest).await;
    let probed = eventually("the stranger's model is indexed", WAIT, || async {
        c.client().model(probe).await.ok()
    })
    .await;
    assert!(!probed.file_available, "{probed:?}");
    let listed = c
        .client()
        .list_models(&Default::default())
        .await
        .expect("models");
    assert!(
        listed
            .items
            .iter()
            .any(|m| m.model_id == probe && !m.file_available),
        "{listed:?}"
    );
    assert!(c.client().model(model).await.expect("model").file_available);

    // The same bytes, uploaded by the stranger: now its own input too. The answer gives this
    // upload's time (each upload restarts the blob's retention), not the submitter's earlier
    // one, which would tell the stranger the bytes were there.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let before = ciro_coordinator::indexer::unix_now();
    let uploaded = stranger.upload_blob(input.clone()).await.expect("upload");
    assert!(
        uploaded.created_at >= before,
        "the upload answered {}, before it began ({before})",
        uploaded.created_at
    );
    chain_state(&s, theirs, "Assigned").await;
    assert_eq!(stranger.download_blob(&digest).await.expect("read"), input);
    assert!(c.client().job(theirs).await.expect("job").data.input);
    c.stop().await;
}

/// Uploads are free, so each account may hold only so many bytes that nothing refers to yet,
/// each blob counting at least 64 KiB (a file is an inode and a block whatever its size: a
/// quota of bytes alone let one account store millions of tiny files): past its quota its
/// uploads are refused with the reason (another account is not; a re-upload of its own bytes
/// is not), and a submitted job's input stops counting once the coordinator indexes the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_accounts_unused_uploads_are_capped_until_a_job_uses_them() {
    let s = System::deploy().await.expect("deploy");
    let c = Running::start(
        &s,
        Options {
            upload_quota: Some(150_000),
            ..Options::default()
        },
    )
    .await;
    let (model, _) = model_with_file(&s, &c, b"a TorchScript file's bytes").await;
    let submitter = c.client_as(&s, Actor::Submitter);
    let blob = |tag: u8| vec![tag; 2_000];
    let first = submitter
        .upload_blob(blob(1))
        .await
        .expect("first upload")
        .digest;
    submitter.upload_blob(blob(2)).await.expect("second upload");
    // Two blobs of 2,000 bytes count 2 x 64 KiB = 131,072, and a third would pass the
    // 150,000 quota (in bytes alone the three are 6,000): refused, and nothing stored; the
    // same account's re-upload of bytes it holds adds nothing.
    let refused = submitter
        .upload_blob(blob(3))
        .await
        .expect_err("an upload past the quota");
    assert_eq!(
        refused.code(),
        Some(ciro_api::coordinator::ErrorCode::RateLimited),
        "{refused}"
    );
    assert!(refused.to_string().contains("quota"), "{refused}");
    let third = Digest::of(&blob(3));
    assert!(c.client().blob_meta(&third).await.is_err());
    submitter
        .upload_blob(blob(2))
        .await
        .expect("a re-upload of the account's own bytes");
    // Another account has its own quota.
    c.client_as(&s, Actor::Attacker)
        .upload_blob(blob(3))
        .await
        .expect("another account's upload");
    // A job on the first blob: once indexed, it no longer counts.
    let id = submit_on(&s, model, &first).await;
    eventually("the job is indexed", WAIT, || async {
        c.client().job(id).await.ok()
    })
    .await;
    submitter
        .upload_blob(blob(4))
        .await
        .expect("an upload once the first blob is in use");
    c.stop().await;
}

/// Attack: an upload holds a share of its account's upload slots and quota, and of the
/// disk's room, for as long as its body lasts, so bodies trickled a byte at a time (each byte
/// in time for any idle limit) would hold them for ever: one account's four would lock it out,
/// and many accounts' would have the coordinator refuse everyone's uploads as short of disk.
/// (Two are sent here; without the rule they are never answered.)
/// Refused: a body must average the minimum rate once past its first stall, or the upload is
/// abandoned (408) and what it reserved is freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trickled_upload_bodies_are_cut_and_free_what_they_held() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = System::deploy().await.expect("deploy");
    let c = Running::start(
        &s,
        Options {
            upload_pace: Some((Duration::from_secs(2), 1_024)),
            ..Options::default()
        },
    )
    .await;
    let signer = common::signer(&s, Actor::Submitter);
    let origin = ciro_api::coordinator::auth::origin_of(&url::Url::parse(&c.base).expect("URL"))
        .expect("origin");
    let address = c.base.trim_start_matches("http://").to_owned();
    // Two uploads at once (one account's signature checks run two at a time), each declaring
    // 1,000 bytes and sending one byte every 200 ms: always within the 2 s stall, far under
    // 1 KiB/s.
    let mut trickles = Vec::new();
    for i in 0..2u8 {
        let digest = Digest::of(&[i; 1_000]);
        let path = format!("/v1/blobs/{digest}");
        let auth = signer
            .sign(&ciro_api::coordinator::RequestMessage {
                job_manager: signer.job_manager(),
                coordinator: &origin,
                method: "PUT",
                path_and_query: &path,
                body_sha256: digest,
                timestamp: ciro_coordinator::indexer::unix_now(),
                nonce: ciro_chain::starknet::core::types::Felt::from(0x7_0000u64 + u64::from(i)),
            })
            .expect("sign");
        let mut head =
            format!("PUT {path} HTTP/1.1\r\nhost: {address}\r\ncontent-length: 1000\r\n");
        for (name, value) in auth.to_headers().iter() {
            let value = value.to_str().expect("an ASCII header");
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut stream = tokio::net::TcpStream::connect(&address)
            .await
            .expect("connect");
        stream.write_all(head.as_bytes()).await.expect("headers");
        trickles.push(tokio::spawn(async move {
            let (mut read, mut write) = stream.into_split();
            let trickle = tokio::spawn(async move {
                for _ in 0..1_000 {
                    if write.write_all(&[i]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            });
            let mut answer = Vec::new();
            let mut buffer = [0u8; 4_096];
            // Until the server answers and closes (or resets) the connection.
            while let Ok(n) = read.read(&mut buffer).await {
                if n == 0 {
                    break;
                }
                answer.extend_from_slice(&buffer[..n]);
            }
            trickle.abort();
            String::from_utf8_lossy(&answer).into_owned()
        }));
    }
    for trickle in trickles {
        let answer = tokio::time::timeout(Duration::from_secs(30), trickle)
            .await
            .expect("a trickled upload still held after 30 s")
            .expect("the trickle's task");
        assert!(
            answer.starts_with("HTTP/1.1 408") && answer.contains("abandoned"),
            "{answer}"
        );
    }
    // What they held is free again: the account uploads.
    c.client_as(&s, Actor::Submitter)
        .upload_blob(vec![9; 1_000])
        .await
        .expect("an upload once the trickles were cut");
    c.stop().await;
}

/// Waits until the coordinator's index shows `job` in `state`.
async fn indexed_state(c: &Running, job: u64, state: JobState) {
    eventually(&format!("job {job} indexed {state:?}"), WAIT, || async {
        let details = c.client().job(job).await.ok()?;
        (details.job.state == state).then_some(())
    })
    .await
}

/// Runs `job` through WorkerA: polled, its output uploaded and committed; the output's digest.
async fn complete_through(s: &System, c: &Running, job: u64, output: &[u8]) -> Digest {
    let worker = c.client_as(s, Actor::WorkerA);
    eventually("the assignment reaches the worker", WAIT, || async {
        let polled = worker
            .poll_assignments(Duration::from_secs(5))
            .await
            .expect("poll");
        polled.assignments.into_iter().find(|a| a.job_id == job)
    })
    .await;
    worker
        .upload_output(job, output.to_vec())
        .await
        .expect("output upload");
    let digest = Digest::of(output);
    s.send(
        s.jobs_as(Actor::WorkerA)
            .submit_result(&job, &u256_from_digest(&digest.0)),
    )
    .await
    .expect("submit_result");
    chain_state(s, job, "Completed").await;
    indexed_state(c, job, JobState::Completed).await;
    digest
}

/// The felt the chain records for evidence `digest`: its first 31 bytes.
fn evidence_felt(digest: &Digest) -> ciro_chain::starknet::core::types::Felt {
    ciro_chain::starknet::core::types::Felt::from_bytes_be_slice(&digest.0[..31])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_disputed_jobs_data_reaches_its_arbiter_and_parties_and_no_one_else() {
    // The arbiter decides from the job's input, its output and the disputer's evidence. Each
    // is private: only JobMgr's arbiters (asked of the chain) and the dispute's parties may
    // read them, while the job is disputed and, after a worker-at-fault decision, while its
    // slash may be challenged; the evidence, which the chain names by its first 31 bytes, is
    // found through the job, and only the disputer's own upload counts as evidence.
    use ciro_api::coordinator::ErrorCode;
    let s = System::deploy().await.expect("deploy");
    let c = Running::start(&s, Options::default()).await;
    let worker = c.client_as(&s, Actor::WorkerA);
    let submitter = c.client_as(&s, Actor::Submitter);
    let arbiter = c.client_as(&s, Actor::Arbiter);
    let stranger = c.client_as(&s, Actor::Attacker);
    // A blob a reader may not read is answered as one that is not there.
    let forbidden = |error: ciro_api::coordinator::ClientError| {
        assert_eq!(error.code(), Some(ErrorCode::BlobNotFound), "{error}");
    };

    let (model, model_digest) = model_with_file(&s, &c, b"a model whose result is disputed").await;
    s.active_worker(Actor::WorkerA).await;
    announce(&worker, &[model_digest]).await;
    let input = b"the disputed job's input".to_vec();
    let (job, input_digest) = job_with_input(&s, &c, model, &input).await;
    let output = b"the worker's wrong output".to_vec();
    let output_digest = complete_through(&s, &c, job, &output).await;

    // Not disputed: the arbiter reads none of it, and the job has no evidence.
    for digest in [&input_digest, &output_digest] {
        forbidden(arbiter.download_blob(digest).await.expect_err("read"));
    }
    let none = c.client().job_evidence(job).await.expect_err("no dispute");
    assert_eq!(none.code(), Some(ErrorCode::InvalidState), "{none}");

    // The submitter uploads its evidence and disputes on chain, naming its first 31 bytes.
    let evidence = b"the submitter's own run of the job".to_vec();
    let evidence_digest = submitter
        .upload_blob(evidence.clone())
        .await
        .expect("evidence upload")
        .digest;
    s.send(
        s.jobs_as(Actor::Submitter)
            .open_dispute(&job, &evidence_felt(&evidence_digest)),
    )
    .await
    .expect("open_dispute");
    chain_state(&s, job, "Disputed").await;
    indexed_state(&c, job, JobState::Disputed).await;

    // Anyone finds the evidence's whole digest through the job (its bytes stay private).
    let found = c.client().job_evidence(job).await.expect("evidence");
    assert_eq!(found.digest, evidence_digest);
    assert_eq!(found.size, evidence.len() as u64);

    // The arbiter reads all three; the accused worker reads the evidence against it.
    let all = [
        (&evidence_digest, &evidence),
        (&input_digest, &input),
        (&output_digest, &output),
    ];
    for (digest, bytes) in all {
        assert_eq!(
            arbiter
                .download_blob(digest)
                .await
                .expect("the arbiter reads"),
            *bytes
        );
    }
    assert_eq!(
        worker
            .download_blob(&evidence_digest)
            .await
            .expect("evidence"),
        evidence
    );
    // A stranger reads none of them, nor does a holder of another JobMgr role (VERIFIER).
    for reader in [&stranger, &c.client_as(&s, Actor::Verifier)] {
        for (digest, _) in all {
            forbidden(reader.download_blob(digest).await.expect_err("read"));
        }
    }

    // A second job whose dispute names another account's private blob: its disputer gains no
    // read of it, the arbiter neither, and the job has no evidence here.
    let (second, _) = job_with_input(&s, &c, model, b"a second input").await;
    let second_output = complete_through(&s, &c, second, b"a second output").await;
    let private = b"the delegator's private bytes".to_vec();
    let victim = c
        .client_as(&s, Actor::Delegator)
        .upload_blob(private.clone())
        .await
        .expect("the victim's upload")
        .digest;
    s.send(
        s.jobs_as(Actor::Submitter)
            .open_dispute(&second, &evidence_felt(&victim)),
    )
    .await
    .expect("open_dispute");
    chain_state(&s, second, "Disputed").await;
    indexed_state(&c, second, JobState::Disputed).await;
    for reader in [&submitter, &worker, &arbiter] {
        forbidden(reader.download_blob(&victim).await.expect_err("read"));
    }
    let missing = c.client().job_evidence(second).await.expect_err("evidence");
    assert_eq!(missing.code(), Some(ErrorCode::BlobNotFound), "{missing}");

    // Decided against the worker: it may challenge the slash, which an arbiter decides from
    // the same data, so the arbiter and the parties still read it (a stranger still not).
    s.send(
        s.jobs_as(Actor::Arbiter)
            .resolve_dispute(&job, &true, &1_000),
    )
    .await
    .expect("resolve_dispute");
    chain_state(&s, job, "Refunded").await;
    indexed_state(&c, job, JobState::Refunded).await;
    for (digest, bytes) in all {
        assert_eq!(
            arbiter
                .download_blob(digest)
                .await
                .expect("the arbiter reads"),
            *bytes
        );
        forbidden(stranger.download_blob(digest).await.expect_err("read"));
    }
    assert_eq!(
        worker
            .download_blob(&evidence_digest)
            .await
            .expect("evidence"),
        evidence
    );

    // Decided for the worker: nothing follows, and the arbiter's reads end.
    s.send(
        s.jobs_as(Actor::Arbiter)
            .resolve_dispute(&second, &false, &0),
    )
    .await
    .expect("resolve_dispute");
    chain_state(&s, second, "Finalized").await;
    indexed_state(&c, second, JobState::Finalized).await;
    forbidden(
        arbiter
            .download_blob(&second_output)
            .await
            .expect_err("read"),
    );
}

/// Attack: registering in the CDC Pool costs no stake, so an attacker's unstaked workers, in
/// any number, would fill the live set the matcher and the "why not matched" answers read
/// each tick, and hold long-poll places staked workers wait in. Refused: the coordinator
/// takes heartbeats only from a worker that can be offered jobs (Active, stake meeting a
/// tier) and answers anyone else's polls at once. A worker that drops out of Active while
/// finishing an assigned job still may: silence would have its job released.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_a_staked_worker_or_one_finishing_its_job_is_taken_as_live() {
    let s = System::deploy().await.expect("deploy");
    let c = Running::start(&s, Options::default()).await;
    let worker = c.client_as(&s, Actor::WorkerA);
    let address = s.net.address(Actor::WorkerA);

    // Registered without stake.
    s.worker(Actor::WorkerA, &h100(), 0).await;
    let refused = eventually("the unstaked worker is indexed", WAIT, || async {
        match worker.heartbeat(&heartbeat(&[])).await {
            Err(e) if e.code() == Some(ciro_api::coordinator::ErrorCode::WorkerNotFound) => None,
            Err(e) => Some(e),
            Ok(_) => panic!("an unstaked worker's heartbeat was taken"),
        }
    })
    .await;
    assert_eq!(
        refused.code(),
        Some(ciro_api::coordinator::ErrorCode::InvalidState),
        "{refused}"
    );
    let text = refused.to_string();
    assert!(
        text.contains("Inactive") && text.contains("below every tier"),
        "{text}"
    );
    let asked = std::time::Instant::now();
    let polled = worker
        .poll_assignments(Duration::from_secs(20))
        .await
        .expect("poll");
    assert!(polled.assignments.is_empty());
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "an unstaked worker's poll was held for {:?}",
        asked.elapsed()
    );
    let indexed = c.client().worker(address).await.expect("the worker");
    assert!(
        indexed.liveness.is_none(),
        "an unstaked worker's heartbeat was stored: {:?}",
        indexed.liveness
    );

    // Staked: taken, and given a job.
    s.send(s.pool_as(Actor::WorkerA).stake(&u256(MIN_STAKE[3])))
        .await
        .expect("stake");
    let (model, model_digest) = model_with_file(&s, &c, b"a model for the live-set rule").await;
    announce(&worker, &[model_digest]).await;
    let (job, _) = job_with_input(&s, &c, model, b"an input").await;
    eventually("the assignment reaches the worker", WAIT, || async {
        let polled = worker
            .poll_assignments(Duration::from_secs(5))
            .await
            .expect("poll");
        polled
            .assignments
            .iter()
            .any(|a| a.job_id == job)
            .then_some(())
    })
    .await;

    // Deactivated while it holds the job: still taken as live, and given its job at once.
    s.send(s.pool_as(Actor::WorkerA).deactivate())
        .await
        .expect("deactivate");
    eventually("the deactivation is indexed", WAIT, || async {
        let indexed = c.client().worker(address).await.ok()?;
        (indexed.state == ciro_api::coordinator::WorkerState::Inactive).then_some(())
    })
    .await;
    worker
        .heartbeat(&heartbeat(&[model_digest]))
        .await
        .expect("a worker finishing its job is taken as live");
    let polled = worker
        .poll_assignments(Duration::from_secs(20))
        .await
        .expect("poll");
    assert_eq!(
        polled
            .assignments
            .iter()
            .map(|a| a.job_id)
            .collect::<Vec<_>>(),
        vec![job]
    );
}

/// The submitter submits a batch of `items` on `model` naming manifest `manifest`, due in an
/// hour; its id.
async fn submit_batch_on(s: &System, model: u64, manifest: &Digest, items: u32) -> u64 {
    let deadline = s.net.now().await.expect("now") + 3_600;
    s.send(s.jobs_as(Actor::Submitter).submit_batch(
        &model,
        &u256_from_digest(&manifest.0),
        &items,
        &u256(u128::from(items) * JOB_FEE),
        &deadline,
        &no_options(),
    ))
    .await
    .expect("submit_batch");
    call(s.jobs_reader().job_count()).await.expect("job_count")
}

/// The job's unmatched reason once it is `wanted`'s kind (polled until it is).
async fn reason_becomes(
    c: &Running,
    job: u64,
    what: &str,
    wanted: impl Fn(&UnmatchedReason) -> bool,
) -> UnmatchedReason {
    eventually(what, WAIT, || async {
        let reason = c.client().job(job).await.ok()?.unmatched?.reason;
        wanted(&reason).then_some(reason)
    })
    .await
}

/// A batch (JobMgr's `submit_batch`: four inputs under one manifest) waits, each step said as
/// its reason, for its manifest, then for each input the manifest lists, then for a worker
/// declaring batches that large, and is then assigned to it. Its items are read by its
/// submitter and worker and by no one else; a manifest of the wrong length is refused, and an
/// output manifest listing a blob the worker did not upload neither lets the submitter read
/// that blob nor takes the worker's receipt until the worker holds the bytes. Then it
/// completes and finalizes as one job, paying its worker for all four inputs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_is_assigned_only_to_a_worker_declaring_batches_once_its_items_are_uploaded() {
    let s = System::deploy().await.expect("deploy");
    let c = Running::start(&s, Options::default()).await;
    let submitter = c.client_as(&s, Actor::Submitter);
    let worker = c.client_as(&s, Actor::WorkerA);
    let stranger = c.client_as(&s, Actor::WorkerB);
    let (model, model_digest) = model_with_file(&s, &c, b"a model for batches").await;
    s.active_worker(Actor::WorkerA).await;
    let single_jobs_only = keep_live(worker.clone(), vec![model_digest]).await;

    let inputs: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 100 + usize::from(i)]).collect();
    let digests: Vec<Digest> = inputs.iter().map(|b| Digest::of(b)).collect();
    let manifest_bytes = ciro_protocol::manifest_of(&digests);
    let manifest = Digest::of(&manifest_bytes);
    let batch = submit_batch_on(&s, model, &manifest, 4).await;
    reason_becomes(&c, batch, "the manifest is awaited", |r| {
        *r == UnmatchedReason::ManifestNotUploaded
    })
    .await;
    // Uploaded after the batch is indexed: recorded at once.
    submitter
        .upload_blob(manifest_bytes.clone())
        .await
        .expect("uploading the manifest");
    reason_becomes(&c, batch, "the inputs are awaited", |r| {
        *r == UnmatchedReason::BatchInputsMissing { missing: 4 }
    })
    .await;
    for input in &inputs[..3] {
        submitter
            .upload_blob(input.clone())
            .await
            .expect("uploading an input");
    }
    reason_becomes(&c, batch, "the last input is awaited", |r| {
        *r == UnmatchedReason::BatchInputsMissing { missing: 1 }
    })
    .await;
    submitter
        .upload_blob(inputs[3].clone())
        .await
        .expect("uploading an input");
    let reason = reason_becomes(&c, batch, "a batch worker is awaited", |r| {
        matches!(r, UnmatchedReason::NoBatchWorker { .. })
    })
    .await;
    assert_eq!(reason, UnmatchedReason::NoBatchWorker { items: 4 });
    let details = c.client().job(batch).await.expect("job");
    assert_eq!(details.data.items_uploaded, Some(4), "{details:?}");
    chain_state(&s, batch, "Queued").await;
    // An agent declaring no batches is never handed one, whoever assigned it.
    assert!(worker
        .poll_assignments(Duration::ZERO)
        .await
        .expect("poll")
        .assignments
        .is_empty());
    // No one but the batch's parties reads its inputs.
    for digest in &digests {
        assert_eq!(
            hidden(stranger.download_blob(digest).await, digest).0,
            404,
            "a stranger reads no input of the batch"
        );
    }
    single_jobs_only.abort();

    let beat = Heartbeat {
        max_batch_items: Some(8),
        ..heartbeat(&[model_digest])
    };
    let beating = keep_beating(worker.clone(), beat).await;
    chain_state(&s, batch, "Assigned").await;
    let assignment = eventually("the batch reaches its worker", WAIT, || async {
        let polled = worker
            .poll_assignments(Duration::from_secs(5))
            .await
            .expect("poll");
        polled.assignments.into_iter().find(|a| a.job_id == batch)
    })
    .await;
    assert_eq!((assignment.items, assignment.input_hash), (4, manifest));
    assert_eq!(
        worker.download_blob(&manifest).await.expect("the manifest"),
        manifest_bytes
    );
    // The inputs in one signed request, in the manifest's order, from any position; to the
    // batch's parties only.
    assert_eq!(read_items(&worker, batch, Side::Inputs, 0).await, inputs);
    assert_eq!(
        read_items(&submitter, batch, Side::Inputs, 2).await,
        &inputs[2..]
    );
    assert!(read_items(&worker, batch, Side::Inputs, 4).await.is_empty());
    assert_eq!(
        refused_code(worker.open_batch_inputs(batch, 5).await),
        ErrorCode::BadRequest
    );
    assert_eq!(
        refused_code(stranger.open_batch_inputs(batch, 0).await),
        ErrorCode::Forbidden,
        "a stranger reads no input of the batch in one request either"
    );
    assert_eq!(
        refused_code(stranger.open_batch_outputs(batch, 0).await),
        ErrorCode::Forbidden
    );
    // No outputs before the output manifest.
    assert_eq!(
        refused_code(upload_items(&worker, batch, &[b"x".to_vec()], None).await),
        ErrorCode::InvalidState
    );
    for (digest, input) in digests.iter().zip(&inputs) {
        assert_eq!(
            &worker.download_blob(digest).await.expect("an input")[..],
            &input[..]
        );
    }

    // An output manifest of the wrong length is refused, and nothing is recorded.
    let short = worker.upload_output(batch, vec![1u8; 3 * 32]).await;
    assert_eq!(
        short.expect_err("a short manifest").code(),
        Some(ciro_api::coordinator::ErrorCode::BadRequest)
    );
    assert!(!c.client().job(batch).await.expect("job").data.output);

    // The worker's output manifest lists three outputs of its own and a private blob of
    // another account's.
    let outputs: Vec<Vec<u8>> = (0..3u8).map(|i| vec![0xa0 + i; 64]).collect();
    let private = b"the admin's private bytes".to_vec();
    c.client_as(&s, Actor::Admin)
        .upload_blob(private.clone())
        .await
        .expect("the admin's upload");
    let mut output_digests: Vec<Digest> = outputs.iter().map(|b| Digest::of(b)).collect();
    output_digests.push(Digest::of(&private));
    let output_manifest = ciro_protocol::manifest_of(&output_digests);
    let output_hash = Digest::of(&output_manifest);
    worker
        .upload_output(batch, output_manifest.clone())
        .await
        .expect("the output manifest");
    for output in &outputs {
        worker.upload_blob(output.clone()).await.expect("an output");
    }
    // Its outputs in one request: only the assigned worker's, each checked against the
    // manifest's digest at its position, the whole body against what the request signed.
    assert_eq!(
        refused_code(upload_items(&stranger, batch, &outputs, None).await),
        ErrorCode::NotAssigned
    );
    let junk = [outputs.clone(), vec![b"not the admin's bytes".to_vec()]].concat();
    let refused = upload_items(&worker, batch, &junk, None).await;
    assert_eq!(refused_code(refused), ErrorCode::DigestMismatch);
    let with_private = [outputs.clone(), vec![private.clone()]].concat();
    let forged = Digest::of(b"another body");
    assert_eq!(
        refused_code(upload_items(&worker, batch, &with_private[..3], Some(forged)).await),
        ErrorCode::BadRequest,
        "a body ending before the manifest's last output"
    );
    // The outputs checked before a refusal are stored; the admin's blob, never sent, is still
    // not the worker's.
    let details = c.client().job(batch).await.expect("job");
    assert_eq!(details.data.outputs_missing, Some(1), "{details:?}");
    // The worker does not hold the admin's blob, and listing it gets it nothing.
    assert_eq!(
        refused_code(worker.open_batch_outputs(batch, 0).await),
        ErrorCode::InvalidState
    );
    assert_eq!(
        hidden(
            submitter.download_blob(&output_digests[3]).await,
            &output_digests[3]
        )
        .0,
        404,
        "listing another account's blob grants its reading to no one"
    );
    let receipt = ciro_api::coordinator::Receipt {
        job_manager: s.job_mgr,
        job_id: batch,
        worker: s.net.address(Actor::WorkerA),
        model_hash: model_digest,
        input_hash: manifest,
        output_hash,
        device: "cpu".into(),
        libtorch_version: "2.11.0".into(),
        cuda_version: String::new(),
        deterministic: true,
        seed: 0,
        started_at: 1,
        finished_at: 2,
        model_load_ms: 0,
        inference_ms: 1,
    }
    .sign(&s.net.signing_key(Actor::WorkerA), s.net.chain_id())
    .expect("signing");
    let refused = worker.upload_receipt(&receipt).await;
    assert_eq!(
        refused.expect_err("a receipt before the outputs").code(),
        Some(ciro_api::coordinator::ErrorCode::InvalidState)
    );
    // Holding the bytes, the worker uploads them: now they are its output too. A body whose
    // hash is not the one the request signed is refused once read (its outputs, each the
    // bytes its manifest names, are stored as they came), as is one going on past the last.
    assert_eq!(
        refused_code(upload_items(&worker, batch, &with_private, Some(forged)).await),
        ErrorCode::DigestMismatch
    );
    let details = c.client().job(batch).await.expect("job");
    assert_eq!(details.data.outputs_missing, Some(0), "{details:?}");
    let more = [with_private.clone(), vec![b"a fifth".to_vec()]].concat();
    assert_eq!(
        refused_code(upload_items(&worker, batch, &more, None).await),
        ErrorCode::BadRequest,
        "a body going on past the manifest's outputs"
    );
    let accepted = upload_items(&worker, batch, &with_private, None)
        .await
        .expect("the outputs in one request");
    assert_eq!(
        (accepted.output_hash, accepted.items),
        (output_hash, 4),
        "{accepted:?}"
    );
    assert_eq!(
        read_items(&worker, batch, Side::Outputs, 0).await,
        with_private
    );
    worker
        .upload_receipt(&receipt)
        .await
        .expect("the receipt once every output is uploaded");
    let details = c.client().job(batch).await.expect("job");
    assert_eq!(
        (details.data.outputs_missing, details.data.receipt),
        (Some(0), true),
        "{details:?}"
    );
    s.send(
        s.jobs_as(Actor::WorkerA)
            .submit_result(&batch, &u256_from_digest(&output_hash.0)),
    )
    .await
    .expect("submit_result");
    chain_state(&s, batch, "Completed").await;
    indexed_state(&c, batch, JobState::Completed).await;
    // The submitter reads every output item and input; a stranger none.
    for (digest, bytes) in output_digests.iter().zip(outputs.iter().chain([&private])) {
        assert_eq!(
            &submitter.download_blob(digest).await.expect("an output")[..],
            &bytes[..]
        );
        assert_eq!(hidden(stranger.download_blob(digest).await, digest).0, 404);
    }
    assert_eq!(
        hidden(stranger.download_blob(&output_hash).await, &output_hash).0,
        404
    );
    assert_eq!(
        read_items(&submitter, batch, Side::Outputs, 1).await,
        &with_private[1..]
    );
    assert_eq!(
        refused_code(stranger.open_batch_outputs(batch, 0).await),
        ErrorCode::Forbidden
    );
    let before = s.balance_of(Actor::WorkerA).await;
    s.advance(RESULT_WINDOW + 1).await;
    chain_state(&s, batch, "Finalized").await;
    assert!(
        s.balance_of(Actor::WorkerA).await > before,
        "the worker is paid for the batch"
    );
    beating.abort();
    s.assert_invariants("after the batch").await;
    c.stop().await;
}

/// A batch's manifest uploaded before the batch is submitted is recorded by the leader when it
/// first sees the batch; one whose length is not 32 bytes per input is refused (never
/// assigned, its reason said), and another submitter's batch naming the first submitter's
/// manifest and inputs gets nothing: it did not upload them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_manifest_uploaded_first_is_recorded_and_one_of_the_wrong_length_or_owner_is_not() {
    let s = System::deploy().await.expect("deploy");
    let c = Running::start(&s, Options::default()).await;
    let submitter = c.client_as(&s, Actor::Submitter);
    let (model, model_digest) = model_with_file(&s, &c, b"a model for batches").await;
    s.active_worker(Actor::WorkerA).await;
    let beat = Heartbeat {
        max_batch_items: Some(8),
        ..heartbeat(&[model_digest])
    };
    let beating = keep_beating(c.client_as(&s, Actor::WorkerA), beat).await;

    // 7 digests for 8 inputs: refused.
    let short: Vec<u8> = (0..7u8).flat_map(|i| [i; 32]).collect();
    let short_digest = submitter
        .upload_blob(short)
        .await
        .expect("uploading")
        .digest;
    let bad = submit_batch_on(&s, model, &short_digest, 8).await;
    let reason = reason_becomes(&c, bad, "the manifest is refused", |r| {
        matches!(r, UnmatchedReason::ManifestInvalid { .. })
    })
    .await;
    assert_eq!(
        reason,
        UnmatchedReason::ManifestInvalid {
            bytes: 7 * 32,
            items: 8
        }
    );

    // Uploaded in full before the submission: the operator records it and assigns the batch.
    let inputs: Vec<Vec<u8>> = (0..2u8).map(|i| vec![0x40 + i; 50]).collect();
    let digests: Vec<Digest> = inputs.iter().map(|b| Digest::of(b)).collect();
    let manifest_bytes = ciro_protocol::manifest_of(&digests);
    for bytes in inputs.iter().chain([&manifest_bytes]) {
        submitter.upload_blob(bytes.clone()).await.expect("upload");
    }
    let good = submit_batch_on(&s, model, &Digest::of(&manifest_bytes), 2).await;
    chain_state(&s, good, "Assigned").await;
    chain_state(&s, bad, "Queued").await;

    // Another account's batch naming the same manifest: it did not upload the manifest or
    // the inputs, so its batch waits and its would-be worker reads nothing through it.
    s.fund(Actor::Delegator, 10 * JOB_FEE)
        .await
        .expect("funding the copier");
    let deadline = s.net.now().await.expect("now") + 3_600;
    s.send(s.jobs_as(Actor::Delegator).submit_batch(
        &model,
        &u256_from_digest(&Digest::of(&manifest_bytes).0),
        &2,
        &u256(2 * JOB_FEE),
        &deadline,
        &no_options(),
    ))
    .await
    .expect("submit_batch");
    let copied = call(s.jobs_reader().job_count()).await.expect("job_count");
    reason_becomes(&c, copied, "the copier's manifest is awaited", |r| {
        *r == UnmatchedReason::ManifestNotUploaded
    })
    .await;
    let copier = c.client_as(&s, Actor::Delegator);
    for digest in &digests {
        assert_eq!(hidden(copier.download_blob(digest).await, digest).0, 404);
    }
    beating.abort();
    c.stop().await;
}
