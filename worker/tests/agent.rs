//! `ciro-worker run` as real processes against a real coordinator (in-process) on devnet, with
//! real libtorch on the CPU and TorchScript models made by Python torch:
//! - two workers register and stake from their own hardware reports to different stake
//!   targets (so different stake tiers), each receives only jobs it is eligible for, and every
//!   output matches Python torch to 1e-5, hashes to its on-chain commitment and carries a
//!   receipt signed by its worker's key;
//! - a model file and an input altered on the coordinator's disk are refused, given back
//!   (released at once, never re-offered to that worker), and the agent goes on serving;
//! - a worker killed (SIGKILL) between computing and committing commits the same output once
//!   after a restart; a worker killed holding a job has it released by the coordinator and
//!   completed by another worker, and is not slashed;
//! - a pass that never returns: in the worker's process, given back and the worker restarted;
//!   in a process of its own (the default), killed with no restart and no orphan left.

#[path = "../../coordinator/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use ciro_api::coordinator::JobState;
use ciro_api::wire::Digest;
use ciro_chain::bindings::{cdc_pool, job_mgr};
use ciro_chain::clients::{u256, u256_from_digest};
use ciro_chain::tx::call;
use ciro_engine::tensors::decode_input;
use ciro_tests::system::*;
use ciro_tests::Actor;
use common::{eventually, Options, Running};
use tokio::process::{Child, Command};

const WAIT: Duration = Duration::from_secs(120);

/// One Python-made model: its TorchScript file, an input, and Python's output as f32.
type ModelFiles = (Vec<u8>, Vec<u8>, Vec<f32>);

/// The Python-made models by name.
struct Made {
    _dir: tempfile::TempDir,
    files: std::collections::HashMap<&'static str, ModelFiles>,
}

/// Runs `ciro_models.py` with `args` in the venv's Python (torch), its output discarded.
fn ciro_models(args: &[&std::ffi::OsStr], what: &str) {
    let python = std::env::var("VIRTUAL_ENV")
        .map(|venv| PathBuf::from(venv).join("bin/python"))
        .unwrap_or_else(|_| PathBuf::from("python3"));
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/engine/python/ciro_models.py");
    let status = std::process::Command::new(python)
        .arg(script)
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("python (scripts/setup.sh installs torch in the venv)");
    assert!(status.success(), "{what} with Python torch");
}

fn make_models() -> Made {
    let dir = tempfile::tempdir().expect("temp dir");
    ciro_models(
        &["make".as_ref(), dir.path().as_os_str()],
        "making the models",
    );
    let mut files = std::collections::HashMap::new();
    for name in ["mlp", "encoder"] {
        let read = |suffix: &str| {
            std::fs::read(dir.path().join(format!("{name}{suffix}"))).expect("model file")
        };
        let y: Vec<f32> = read(".y.f32")
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        files.insert(name, (read(".pt"), read(".x.safetensors"), y));
    }
    Made { _dir: dir, files }
}

/// A hostile TorchScript model whose forward pass never ends (`ciro_models.py spin`).
fn make_spin() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("spin.pt");
    ciro_models(
        &["spin".as_ref(), path.as_os_str()],
        "making the spinning model",
    );
    std::fs::read(&path).expect("spin.pt")
}

/// Registers a model whose file is `bytes` (uploaded first), requiring only stake tier
/// `tier` (CPU workers declare no VRAM and no flags); its id.
async fn model(s: &System, c: &Running, bytes: &[u8], tier: u8) -> u64 {
    let digest = c
        .client_as(s, Actor::Admin)
        .upload_blob(bytes.to_vec())
        .await
        .expect("model upload")
        .digest;
    s.send(s.jobs_as(Actor::Admin).register_model(
        &u256_from_digest(&digest.0),
        &job_mgr::Requirements {
            min_vram_mb: 0,
            required_flags: 0,
            min_stake_tier: tier,
            min_score: 0,
        },
        &u256(MODEL_PRICE),
    ))
    .await
    .expect("register_model");
    call(s.jobs_reader().model_count())
        .await
        .expect("model_count")
}

/// The submitter uploads `input` and submits a job on `model`; its id.
async fn job(s: &System, c: &Running, model: u64, input: &[u8]) -> u64 {
    let digest = c
        .client_as(s, Actor::Submitter)
        .upload_blob(input.to_vec())
        .await
        .expect("input upload")
        .digest;
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

/// Starts `ciro-worker run` as `actor` with its own data directory.
fn worker(
    s: &System,
    c: &Running,
    actor: Actor,
    stake: u128,
    data: &Path,
    extra: &[&str],
) -> Child {
    worker_at(
        s,
        &c.dir.path().join("manifest.json"),
        &c.base,
        actor,
        stake,
        data,
        extra,
    )
}

/// Starts `ciro-worker run` as `actor` against the coordinator at `base`.
fn worker_at(
    s: &System,
    manifest: &Path,
    base: &str,
    actor: Actor,
    stake: u128,
    data: &Path,
    extra: &[&str],
) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.with_extension("log"))
        .expect("log");
    Command::new(env!("CARGO_BIN_EXE_ciro-worker"))
        .arg("run")
        .args(["--rpc-url", s.net.rpc_url().as_str()])
        .arg("--manifest")
        .arg(manifest)
        .args(["--devnet-account", &actor.index().to_string()])
        .args(["--coordinator", base])
        .arg("--data-dir")
        .arg(data)
        .args(["--stake-target", &stake.to_string()])
        .args(if extra.contains(&"--capacity") {
            &[][..]
        } else {
            &["--capacity", "2"][..]
        })
        .args(["--heartbeat-secs", "1", "--commit-window-ms", "300"])
        .args(if extra.contains(&"--merge-batch-items") {
            // (Throughput mode: deterministic mode runs each input alone.)
            &[][..]
        } else {
            &["--deterministic-seed", "1"][..]
        })
        .args(["--drain-grace-secs", "10"])
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .env("CIRO_LOG", "info")
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("spawning ciro-worker")
}

async fn state(
    s: &System,
    job: u64,
) -> (String, ciro_chain::cainome::cairo_serde::ContractAddress) {
    let info = s.job_info(job).await;
    (format!("{:?}", info.job.state), info.job.worker)
}

/// Waits until job `job` is in state `want`; past [`WAIT`], prints the tail of every worker
/// log in `logs` (the workers' data directories' parent) and fails with where the job stands.
async fn until_state(s: &System, job: u64, want: &str, logs: &Path) {
    let started = std::time::Instant::now();
    loop {
        let (state, worker) = state(s, job).await;
        if state == want {
            return;
        }
        if started.elapsed() > WAIT {
            dump_logs(logs);
            panic!(
                "job {job} {want}: not within {} s (it is {state}, worker {:#x})",
                WAIT.as_secs(),
                worker.0
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Job `id`'s output hash once the coordinator's index shows it completed (the chain says so
/// first; the index follows within a tick).
async fn indexed_output(c: &Running, id: u64) -> Digest {
    eventually(
        &format!("the coordinator's index shows job {id} completed"),
        WAIT,
        || async {
            let d = c.client().job(id).await.ok()?;
            (d.job.state == JobState::Completed)
                .then_some(d.job.output_hash)
                .flatten()
        },
    )
    .await
}

/// The log of the worker whose data directory is `dir` (see [`worker`]).
fn worker_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.with_extension("log")).expect("worker log")
}

/// Prints the last lines of every `*.log` in `dir` (a failing test's evidence).
fn dump_logs(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for path in entries.flatten().map(|e| e.path()) {
        if path.extension().is_some_and(|e| e == "log") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(120)..];
            eprintln!("---- {} (last {} lines) ----", path.display(), tail.len());
            for line in tail {
                eprintln!("{line}");
            }
        }
    }
}

async fn sigterm(mut child: Child) {
    let pid = child.id().expect("pid") as i32;
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { kill(pid, 15) }, 0);
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("the worker drained within a minute")
        .expect("wait");
    assert!(status.success(), "SIGTERM: {status}");
}

extern "C" {
    fn kill(pid: i32, signal: i32) -> i32;
}

fn max_abs_diff(output: &[u8], expected: &[f32]) -> f32 {
    let tensor = decode_input(output).expect("the output is safetensors");
    let got: Vec<f32> = Vec::<f32>::try_from(tensor.flatten(0, -1)).expect("f32 output");
    assert_eq!(got.len(), expected.len());
    got.iter()
        .zip(expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_stake_from_their_hardware_and_run_only_jobs_they_are_eligible_for() {
    let made = make_models();
    let s = System::deploy().await.expect("deploy");
    let c = Running::start(&s, Options::default()).await;
    let (mlp_file, mlp_x, mlp_y) = made.files["mlp"].clone();
    let (enc_file, enc_x, enc_y) = made.files["encoder"].clone();
    let mlp = model(&s, &c, &mlp_file, 0).await;
    let encoder = model(&s, &c, &enc_file, 2).await;
    let data = tempfile::tempdir().expect("dir");
    // A CPU worker is hardware tier 0: 1,000 is its minimum (stake tier 0), 8,000 reaches
    // stake tier 3.
    let a = worker(
        &s,
        &c,
        Actor::WorkerA,
        MIN_STAKE[0],
        &data.path().join("a"),
        &[],
    );
    let b = worker(
        &s,
        &c,
        Actor::WorkerB,
        MIN_STAKE[3],
        &data.path().join("b"),
        &[],
    );
    for actor in [Actor::WorkerA, Actor::WorkerB] {
        eventually(
            &format!("{actor:?} registered and staked"),
            WAIT,
            || async {
                let info = s.worker_info(actor).await;
                (format!("{:?}", info.state) == "Active").then_some(())
            },
        )
        .await;
    }
    assert_eq!(s.worker_info(Actor::WorkerA).await.stake_tier, 0);
    assert_eq!(s.worker_info(Actor::WorkerB).await.stake_tier, 3);
    assert_eq!(s.worker_info(Actor::WorkerA).await.stake.low, MIN_STAKE[0]);

    let mut jobs = Vec::new();
    for _ in 0..3 {
        jobs.push((job(&s, &c, mlp, &mlp_x).await, "mlp"));
        jobs.push((job(&s, &c, encoder, &enc_x).await, "encoder"));
    }
    for (id, _) in &jobs {
        until_state(&s, *id, "Completed", data.path()).await;
    }
    let submitter = c.client_as(&s, Actor::Submitter);
    let mut by_worker = std::collections::HashMap::new();
    for (id, name) in &jobs {
        let info = s.job_info(*id).await;
        *by_worker
            .entry((format!("{:#x}", info.job.worker.0), *name))
            .or_insert(0) += 1;
        if *name == "encoder" {
            assert_eq!(
                info.job.worker,
                s.addr(Actor::WorkerB),
                "job {id}: only B is eligible"
            );
        }
        let output_hash = indexed_output(&c, *id).await;
        assert_eq!(u256_from_digest(&output_hash.0), info.job.output_hash);
        let output = submitter.download_blob(&output_hash).await.expect("output");
        let expected = if *name == "mlp" { &mlp_y } else { &enc_y };
        let diff = max_abs_diff(&output, expected);
        assert!(
            diff <= 1e-5,
            "job {id} ({name}): max |worker - python| = {diff}"
        );
        let receipt = c.client().receipt(*id).await.expect("receipt");
        assert_eq!(receipt.receipt.output_hash, output_hash);
        assert_eq!(receipt.receipt.worker, info.job.worker.0);
        let key = if info.job.worker == s.addr(Actor::WorkerA) {
            s.net.public_key(Actor::WorkerA)
        } else {
            s.net.public_key(Actor::WorkerB)
        };
        assert!(
            receipt.is_signed_by_key(key, s.net.chain_id()),
            "job {id}: receipt signature"
        );
        assert_eq!(receipt.receipt.device, "cpu");
    }
    println!("jobs per (worker, model): {by_worker:?}");
    sigterm(a).await;
    sigterm(b).await;
    c.stop().await;
    // Each job was computed, published and committed once: a job already queued for its
    // commitment is not taken again from a poll that still shows it assigned (that re-sent it,
    // and a batch naming a job twice reverts and falls back to one transaction per job).
    for name in ["a", "b"] {
        let log = worker_log(&data.path().join(name));
        for wrong in ["computed before a restart", "a batch of results reverted"] {
            assert!(
                !log.contains(wrong),
                "worker {name} logged \"{wrong}\" without a restart:\n{log}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_workers_lose_nothing_and_are_not_slashed() {
    let made = make_models();
    let s = System::deploy().await.expect("deploy");
    let c = Running::start(
        &s,
        Options {
            stale_after_secs: 3,
            ..Options::default()
        },
    )
    .await;
    let (mlp_file, mlp_x, _) = made.files["mlp"].clone();
    let mlp = model(&s, &c, &mlp_file, 0).await;
    let data = tempfile::tempdir().expect("dir");
    let a_dir = data.path().join("a");

    // 1. A computes job 1 but holds its commitment; killed; restarted: it commits the same
    // output, once.
    let a = worker(
        &s,
        &c,
        Actor::WorkerA,
        MIN_STAKE[0],
        &a_dir,
        &["--test-hold-commits"],
    );
    let first = job(&s, &c, mlp, &mlp_x).await;
    eventually("A computed job 1", WAIT, || async {
        let status = status(&s, &c, &a_dir).await;
        find(&status, first).filter(|e| e["stage"] == "computed")
    })
    .await;
    assert_eq!(state(&s, first).await.0, "Assigned", "held: not committed");
    let mut a = a;
    a.start_kill().expect("SIGKILL");
    a.wait().await.expect("wait");
    let a = worker(&s, &c, Actor::WorkerA, MIN_STAKE[0], &a_dir, &[]);
    until_state(&s, first, "Completed", data.path()).await;
    let receipt = c.client().receipt(first).await.expect("receipt");
    assert_eq!(
        s.job_info(first).await.job.output_hash,
        u256_from_digest(&receipt.receipt.output_hash.0),
        "the committed output is the one computed before the kill"
    );

    // 2. A holds job 2 and is killed for good: the coordinator releases it, B completes it.
    let mut a = a;
    sigterm_or_kill(&mut a).await;
    let mut a = worker(
        &s,
        &c,
        Actor::WorkerA,
        MIN_STAKE[0],
        &a_dir,
        &["--test-hold-commits"],
    );
    let second = job(&s, &c, mlp, &mlp_x).await;
    eventually("A computed job 2", WAIT, || async {
        let status = status(&s, &c, &a_dir).await;
        find(&status, second).filter(|e| e["stage"] == "computed")
    })
    .await;
    a.start_kill().expect("SIGKILL");
    a.wait().await.expect("wait");
    let b = worker(
        &s,
        &c,
        Actor::WorkerB,
        MIN_STAKE[0],
        &data.path().join("b"),
        &[],
    );
    eventually("job 2 completed by B", WAIT, || async {
        let (st, w) = state(&s, second).await;
        (st == "Completed" && w == s.addr(Actor::WorkerB)).then_some(())
    })
    .await;
    let a_info = s.worker_info(Actor::WorkerA).await;
    assert_eq!(a_info.stake.low, MIN_STAKE[0], "A was not slashed");
    assert_eq!(a_info.record.open_slashes, 0);
    // Its releases are misses on its record (at least job 2's; job 1's too if the restart
    // outlasted the staleness threshold), never a fault.
    assert!(a_info.reputation.missed >= 1, "{a_info:?}");
    assert_eq!(a_info.reputation.failed, 0, "{a_info:?}");
    eventually(
        "the coordinator's index shows job 2 completed by B",
        WAIT,
        || async {
            let d = c.client().job(second).await.ok()?;
            (d.job.state == JobState::Completed
                && d.job.worker == Some(s.net.address(Actor::WorkerB)))
            .then_some(())
        },
    )
    .await;
    sigterm(b).await;
    c.stop().await;
}

async fn sigterm_or_kill(child: &mut Child) {
    let pid = child.id().expect("pid") as i32;
    // SAFETY: signalling our own child.
    unsafe { kill(pid, 15) };
    if tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .is_err()
    {
        child.start_kill().ok();
        child.wait().await.ok();
    }
}

/// Overwrites the coordinator's stored copy of blob `digest` with other bytes of the same
/// length (a compromised or failing coordinator's disk).
fn tamper(c: &Running, digest: &Digest) -> Vec<u8> {
    let hex = digest.to_string();
    let path = c.dir.path().join("blobs").join(&hex[..2]).join(&hex);
    let original = std::fs::read(&path).expect("the stored blob");
    let mut bad = original.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    std::fs::write(&path, bad).expect("tampering");
    original
}

fn restore(c: &Running, digest: &Digest, bytes: &[u8]) {
    let hex = digest.to_string();
    std::fs::write(c.dir.path().join("blobs").join(&hex[..2]).join(&hex), bytes)
        .expect("restoring");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tampered_model_file_and_input_are_refused_and_the_agent_goes_on_serving() {
    let made = make_models();
    let s = System::deploy().await.expect("deploy");
    let c = Running::start(&s, Options::default()).await;
    let (mlp_file, mlp_x, _) = made.files["mlp"].clone();
    let mlp = model(&s, &c, &mlp_file, 0).await;
    let model_digest = Digest::of(&mlp_file);
    let data = tempfile::tempdir().expect("dir");
    let a_dir = data.path().join("a");
    let a = worker(
        &s,
        &c,
        Actor::WorkerA,
        MIN_STAKE[0],
        &a_dir,
        &["--capacity", "4"],
    );

    // The model file is served altered: refused, nothing committed.
    let original = tamper(&c, &model_digest);
    let first = job(&s, &c, mlp, &mlp_x).await;
    let mut journal = None;
    for _ in 0..300 {
        let status = status(&s, &c, &a_dir).await;
        if let Some(entry) = find(&status, first).filter(|e| e["stage"] == "refused") {
            journal = Some(entry);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let journal = journal.unwrap_or_else(|| {
        panic!(
            "job 1 not refused; the worker's log:\n{}",
            std::fs::read_to_string(a_dir.with_extension("log")).unwrap_or_default()
        )
    });
    assert!(
        journal["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("model file"),
        "{journal}"
    );
    restore(&c, &model_digest, &original);

    // An input served altered: refused. (Its own input, altered on the coordinator's disk
    // after the upload and before the job exists.)
    let mut second_input = mlp_x.clone();
    let last = second_input.len() - 1;
    second_input[last] ^= 0x01;
    let input_digest = c
        .client_as(&s, Actor::Submitter)
        .upload_blob(second_input.clone())
        .await
        .expect("input upload")
        .digest;
    tamper(&c, &input_digest);
    let deadline = s.net.now().await.expect("now") + 3_600;
    s.send(s.jobs_as(Actor::Submitter).submit_job(
        &mlp,
        &u256_from_digest(&input_digest.0),
        &u256(JOB_FEE),
        &deadline,
        &no_options(),
    ))
    .await
    .expect("submit_job");
    let second = call(s.jobs_reader().job_count()).await.expect("job_count");
    let journal = eventually("job 2 refused", WAIT, || async {
        let status = status(&s, &c, &a_dir).await;
        let entry = find(&status, second)?;
        (entry["stage"] == "refused").then_some(entry)
    })
    .await;
    assert!(
        journal["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("input"),
        "{journal}"
    );

    // The agent goes on serving: the next job completes.
    let third = job(&s, &c, mlp, &mlp_x).await;
    until_state(&s, third, "Completed", data.path()).await;
    // The refused jobs were given back: released by the coordinator (a miss each on A's
    // record), queued again and never offered to A again; nothing was committed for them.
    for refused in [first, second] {
        until_state(&s, refused, "Queued", data.path()).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for refused in [first, second] {
        assert_eq!(
            state(&s, refused).await.0,
            "Queued",
            "job {refused}: not re-offered to A"
        );
    }
    assert_eq!(s.worker_info(Actor::WorkerA).await.reputation.missed, 2);
    sigterm(a).await;
    c.stop().await;
}

/// `ciro-worker status` for the worker whose data is in `dir`, as JSON.
async fn status(s: &System, c: &Running, dir: &Path) -> serde_json::Value {
    status_as(s, &c.dir.path().join("manifest.json"), dir, Actor::WorkerA).await
}

/// `ciro-worker status` as `actor`.
async fn status_as(s: &System, manifest: &Path, dir: &Path, actor: Actor) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_ciro-worker"))
        .arg("status")
        .args(["--rpc-url", s.net.rpc_url().as_str()])
        .arg("--manifest")
        .arg(manifest)
        .args(["--devnet-account", &actor.index().to_string()])
        .arg("--data-dir")
        .arg(dir)
        .output()
        .await
        .expect("ciro-worker status");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("status JSON")
}

fn find(status: &serde_json::Value, job_id: u64) -> Option<serde_json::Value> {
    status["recent"]
        .as_array()?
        .iter()
        .find(|e| e["job_id"] == job_id)
        .cloned()
}

/// The chain registers no input spec, so a worker's spec for a model is its guess from the
/// first job's input. A submitter who sends that first job with oddly shaped rows (here the
/// MLP's input as one row of rows, which the model runs) must not make the worker refuse every
/// later honest job of the model: the spec follows the next job's rows, and the job runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_first_job_shaped_to_poison_the_models_spec_does_not_stop_later_jobs() {
    let made = make_models();
    let s = System::deploy().await.expect("deploy");
    let c = Running::start(&s, Options::default()).await;
    let (mlp_file, mlp_x, mlp_y) = made.files["mlp"].clone();
    let mlp = model(&s, &c, &mlp_file, 0).await;
    let data = tempfile::tempdir().expect("dir");
    let a = worker(
        &s,
        &c,
        Actor::WorkerA,
        MIN_STAKE[0],
        &data.path().join("a"),
        &["--capacity", "1"],
    );
    let rows = decode_input(&mlp_x).expect("the MLP's input");
    let odd = ciro_engine::tensors::encode_input(&rows.unsqueeze(0)).expect("encode");
    let first = job(&s, &c, mlp, &odd).await;
    until_state(&s, first, "Completed", data.path()).await;
    let second = job(&s, &c, mlp, &mlp_x).await;
    until_state(&s, second, "Completed", data.path()).await;
    let output_hash = indexed_output(&c, second).await;
    let output = c
        .client_as(&s, Actor::Submitter)
        .download_blob(&output_hash)
        .await
        .expect("output");
    assert!(max_abs_diff(&output, &mlp_y) <= 1e-5);
    let log = worker_log(&data.path().join("a"));
    assert!(log.contains("the spec follows the job"), "{log}");
    sigterm(a).await;
    c.stop().await;
}

/// A devnet and a coordinator with the MLP and the spinning model registered, for worker A
/// in `a_dir` (under `data`). Restarts are quick: no job is released for the worker's silence
/// meanwhile.
struct Spinning {
    s: System,
    c: Running,
    mlp: u64,
    spin: u64,
    mlp_x: Vec<u8>,
    data: tempfile::TempDir,
    a_dir: PathBuf,
}

impl Spinning {
    async fn start() -> Self {
        let made = make_models();
        let spin_file = make_spin();
        let s = System::deploy().await.expect("deploy");
        let c = Running::start(
            &s,
            Options {
                stale_after_secs: 120,
                ..Options::default()
            },
        )
        .await;
        let (mlp_file, mlp_x, _) = made.files["mlp"].clone();
        let mlp = model(&s, &c, &mlp_file, 0).await;
        let spin = model(&s, &c, &spin_file, 0).await;
        let data = tempfile::tempdir().expect("dir");
        let a_dir = data.path().join("a");
        Self {
            s,
            c,
            mlp,
            spin,
            mlp_x,
            data,
            a_dir,
        }
    }
}

/// How many forward passes the worker in `dir` has begun (its log).
fn forward_passes(dir: &Path) -> usize {
    worker_log(dir).matches("running the forward pass").count()
}

/// In the worker's own process (`--isolation in-process`): a job whose forward pass ends the
/// worker's process (here: killed during it, as a crash in libtorch would end it) is resumed from the journal after a restart, but not into the same
/// end forever: after two passes it did not survive, it is given back unrun. A forward pass
/// that never ends (a model that loops) cannot be interrupted and holds the only inference
/// thread: past `--max-forward-secs` the job is given back and the worker exits with an error
/// for a restart, while an honest job queued behind the pass is neither failed nor counted;
/// restarted, the worker completes the honest job and runs neither hostile job again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_that_kills_or_wedges_the_worker_is_given_back_and_the_worker_serves_on() {
    let Spinning {
        s,
        c,
        mlp,
        spin,
        mlp_x,
        data,
        a_dir,
    } = Spinning::start().await;
    let passes = || forward_passes(&a_dir);

    // Killed during the pass, twice: the second start resumes the job from the journal.
    let first = job(&s, &c, spin, &mlp_x).await;
    for attempt in 1..=2 {
        let mut a = worker(
            &s,
            &c,
            Actor::WorkerA,
            MIN_STAKE[0],
            &a_dir,
            &["--capacity", "1", "--isolation", "in-process"],
        );
        eventually(
            &format!("forward pass {attempt} of job {first}"),
            WAIT,
            || async { (passes() >= attempt).then_some(()) },
        )
        .await;
        a.start_kill().expect("SIGKILL");
        a.wait().await.expect("wait");
    }
    assert_eq!(state(&s, first).await.0, "Assigned");

    // The third start gives it back without a third pass.
    let mut a = worker(
        &s,
        &c,
        Actor::WorkerA,
        MIN_STAKE[0],
        &a_dir,
        &[
            "--capacity",
            "2",
            "--max-forward-secs",
            "3",
            "--isolation",
            "in-process",
        ],
    );
    until_state(&s, first, "Queued", data.path()).await;
    let log = worker_log(&a_dir);
    assert!(log.contains("not run again"), "{log}");
    assert_eq!(passes(), 2, "job {first} was run a third time");

    // A pass that never returns, and an honest job queued behind it: the hostile job is given
    // back, then the worker exits with an error.
    let second = job(&s, &c, spin, &mlp_x).await;
    eventually(&format!("job {second}'s pass"), WAIT, || async {
        (passes() >= 3).then_some(())
    })
    .await;
    let honest = job(&s, &c, mlp, &mlp_x).await;
    eventually(
        &format!("job {honest} queued for the thread"),
        WAIT,
        || async { (passes() >= 4).then_some(()) },
    )
    .await;
    let exit = tokio::time::timeout(WAIT, a.wait())
        .await
        .unwrap_or_else(|_| {
            dump_logs(data.path());
            panic!("the wedged worker did not exit within {} s", WAIT.as_secs())
        })
        .expect("wait");
    assert!(
        !exit.success(),
        "a wedged worker exits with an error: {exit}"
    );
    let log = worker_log(&a_dir);
    assert!(log.contains("past the time limit"), "{log}");
    until_state(&s, second, "Queued", data.path()).await;
    assert_eq!(
        state(&s, honest).await,
        ("Assigned".to_owned(), s.addr(Actor::WorkerA))
    );
    // The journal: the hostile job failed and never to run here; the honest one still open,
    // its pass uncounted (the drain ended the process, not the job).
    let journal = status(&s, &c, &a_dir).await;
    let entry = |id: u64| find(&journal, id).unwrap_or_else(|| panic!("job {id}: {journal}"));
    assert_eq!(entry(second)["stage"], "failed", "{journal}");
    assert_eq!(entry(second)["unreturned_passes"], 2, "{journal}");
    assert_eq!(entry(honest)["stage"], "running", "{journal}");
    assert_eq!(entry(honest)["unreturned_passes"], 0, "{journal}");

    // Restarted (the default limit), it resumes the honest job from its journal and completes
    // it; neither spinning job runs again.
    let a = worker(
        &s,
        &c,
        Actor::WorkerA,
        MIN_STAKE[0],
        &a_dir,
        &["--capacity", "2", "--isolation", "in-process"],
    );
    until_state(&s, honest, "Completed", data.path()).await;
    assert_eq!(state(&s, honest).await.1, s.addr(Actor::WorkerA));
    assert_eq!(passes(), 5, "only the honest job's pass since the exit");
    for spun in [first, second] {
        assert_eq!(
            state(&s, spun).await.0,
            "Queued",
            "job {spun} not re-offered to A"
        );
    }
    // Each hostile job given back is a miss on A's record, nothing more: A is not slashed,
    // and the honest job was never given back.
    let info = s.worker_info(Actor::WorkerA).await;
    assert_eq!(info.reputation.missed, 2);
    sigterm(a).await;
    c.stop().await;
}

/// A process's parent and state (`R`, `S`, `Z`...) from `/proc/<pid>/stat`; `None` once it
/// is gone.
fn parent_and_state(pid: u32) -> Option<(u32, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`: the command may hold spaces and parentheses.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((fields.next()?.parse().ok()?, state))
}

/// The live descendants of `root` (its model fork server and the passes forked from it).
fn descendants(root: u32) -> Vec<u32> {
    let all: Vec<(u32, u32, char)> = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .filter_map(|pid| parent_and_state(pid).map(|(parent, state)| (pid, parent, state)))
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            all.iter()
                .filter(|(_, p, state)| *p == parent && *state != 'Z')
                .map(|(pid, _, _)| *pid),
        );
        i += 1;
    }
    found.split_off(1)
}

/// Whether each of `pids` has ended (gone, or a zombie).
fn all_ended(pids: &[u32]) -> bool {
    pids.iter()
        .all(|&pid| parent_and_state(pid).is_none_or(|(_, state)| state == 'Z'))
}

/// In a process of its own (the default, sandboxed): a worker killed (SIGKILL) during a pass
/// leaves no model process running behind it (one that never returns would hold the machine
/// for ever); restarted with `--max-forward-secs`, the resumed pass that never returns is
/// killed at the limit and its job given back, while the worker serves on without a restart
/// and then completes an honest job.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_isolated_pass_that_never_returns_is_killed_and_the_worker_serves_on() {
    let Spinning {
        s,
        c,
        mlp,
        spin,
        mlp_x,
        data,
        a_dir,
    } = Spinning::start().await;
    let passes = || forward_passes(&a_dir);
    let spun = job(&s, &c, spin, &mlp_x).await;
    let mut a = worker(
        &s,
        &c,
        Actor::WorkerA,
        MIN_STAKE[0],
        &a_dir,
        &["--capacity", "1"],
    );
    let pid = a.id().expect("the worker's pid");
    let model_processes = eventually("the fork server and the spinning pass", WAIT, || async {
        let found = descendants(pid);
        (passes() >= 1 && found.len() == 2).then_some(found)
    })
    .await;
    a.start_kill().expect("SIGKILL");
    a.wait().await.expect("wait");
    eventually(
        "the killed worker's model processes to end",
        Duration::from_secs(10),
        || async { all_ended(&model_processes).then_some(()) },
    )
    .await;

    let mut a = worker(
        &s,
        &c,
        Actor::WorkerA,
        MIN_STAKE[0],
        &a_dir,
        &["--capacity", "2", "--max-forward-secs", "3"],
    );
    until_state(&s, spun, "Queued", data.path()).await;
    assert_eq!(passes(), 2, "the spinning job was not resumed once");
    assert_eq!(
        descendants(a.id().expect("the worker's pid")).len(),
        1,
        "the spinning pass still runs beside the fork server"
    );
    let log = worker_log(&a_dir);
    assert!(
        log.contains("past this worker's limit of 3 s and was killed"),
        "{log}"
    );
    let honest = job(&s, &c, mlp, &mlp_x).await;
    until_state(&s, honest, "Completed", data.path()).await;
    assert!(
        a.try_wait().expect("try_wait").is_none(),
        "the worker exited: {}",
        worker_log(&a_dir)
    );
    let journal = status(&s, &c, &a_dir).await;
    let entry = |id: u64| find(&journal, id).unwrap_or_else(|| panic!("job {id}: {journal}"));
    assert_eq!(entry(spun)["stage"], "failed", "{journal}");
    assert_eq!(
        state(&s, spun).await.0,
        "Queued",
        "job {spun} re-offered to A"
    );
    assert_eq!(s.worker_info(Actor::WorkerA).await.reputation.missed, 1);
    sigterm(a).await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_coordinator_offering_a_job_assigned_to_someone_else_is_refused() {
    let s = System::deploy().await.expect("deploy");
    // A real job, assigned on chain to WorkerA.
    let (_, job_id) = s.assigned_job().await;
    let info = s.job_info(job_id).await;
    // A lying coordinator offers it to WorkerB; everything else it answers 404.
    let offer = serde_json::json!({"assignments": [{
        "job_id": job_id,
        "model_id": info.job.model_id,
        "model_hash": Digest::of(b"model"),
        "input_hash": Digest::of(b"input"),
        "deadline": info.job.deadline,
        "assigned_at": info.job.assigned_at,
        "release_at": info.job.assigned_at + 600,
    }]});
    let app = axum::Router::new()
        .route(
            "/v1/workers/{address}/assignments",
            axum::routing::get(move || {
                let offer = offer.clone();
                async move { axum::Json(offer) }
            }),
        )
        .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "{}") });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().expect("dir");
    let manifest = dir.path().join("manifest.json");
    s.manifest.write(&manifest).expect("manifest");
    let data = dir.path().join("b");
    let b = worker_at(
        &s,
        &manifest,
        &base,
        Actor::WorkerB,
        MIN_STAKE[0],
        &data,
        &[],
    );
    let entry = eventually("the offer refused", WAIT, || async {
        let status = status_as(&s, &manifest, &data, Actor::WorkerB).await;
        find(&status, job_id).filter(|e| e["stage"] == "refused")
    })
    .await;
    assert!(
        entry["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("not assigned to this worker"),
        "{entry}"
    );
    // The chain is untouched: still A's.
    let after = s.job_info(job_id).await;
    assert_eq!(after.job.worker, s.addr(Actor::WorkerA));
    assert_eq!(format!("{:?}", after.job.state), "Assigned");
    sigterm(b).await;
}

/// A SLASHER's slash is executed once its challenge window (a day by default) passes
/// unchallenged: a worker that never looks loses the stake without a line in its log. The
/// agent looks at start and every on-chain heartbeat period, reports a pending slash at error
/// level, and with `--challenge-slashes` contests it (paying the bond); `status` lists it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slash_opened_against_a_running_worker_is_reported_and_challenged() {
    let s = System::deploy().await.expect("deploy");
    let c = Running::start(&s, Options::default()).await;
    let data = tempfile::tempdir().expect("dir");
    let a_dir = data.path().join("a");
    let _a = worker(
        &s,
        &c,
        Actor::WorkerA,
        MIN_STAKE[0],
        &a_dir,
        &["--challenge-slashes", "--chain-heartbeat-secs", "2"],
    );
    eventually("A registered and staked", WAIT, || async {
        let info = s.worker_info(Actor::WorkerA).await;
        (format!("{:?}", info.state) == "Active").then_some(())
    })
    .await;
    // The pool's slasher opens a 10% slash against A (the deployment's first: id 1).
    s.send(s.pool_as(SLASHER).slash(
        &s.addr(Actor::WorkerA),
        &cdc_pool::SlashReason::Unavailable,
        &1_000,
        &felt(1),
        &nobody(),
        &u256(0),
    ))
    .await
    .expect("slash");
    eventually("the agent challenged the slash", WAIT, || async {
        let slash = call(s.pool_reader().get_slash(&1))
            .await
            .expect("get_slash");
        (slash.status == cdc_pool::SlashStatus::Challenged).then_some(())
    })
    .await;
    let listed = status(&s, &c, &a_dir).await;
    assert_eq!(listed["open_slashes"][0]["slash_id"], 1, "{listed}");
    assert_eq!(
        listed["open_slashes"][0]["status"], "Challenged",
        "{listed}"
    );
    let log = std::fs::read_to_string(a_dir.with_extension("log")).expect("the agent's log");
    assert!(
        log.contains("a slash is pending against this worker"),
        "the agent reported the slash: {log}"
    );
    c.stop().await;
}

/// `n` distinct inputs of the MLP (its sample input scaled), libtorch's own outputs for them,
/// uploaded by the submitter with their manifest, and the batch submitted; the batch's id, its
/// manifest's bytes and the expected outputs.
async fn mlp_batch(s: &System, c: &Running, made: &Made, n: u32) -> (u64, Vec<u8>, Vec<Vec<f32>>) {
    let (mlp_file, mlp_x, _) = made.files["mlp"].clone();
    let mlp = model(s, c, &mlp_file, 0).await;
    let x = decode_input(&mlp_x).expect("the sample input");
    let module = {
        let mut file = std::io::Cursor::new(mlp_file.clone());
        tch::CModule::load_data(&mut file).expect("the MLP")
    };
    let mut inputs = Vec::new();
    let mut expected = Vec::new();
    for i in 0..n {
        let xi = &x * (1.0 + f64::from(i) / 4.0);
        inputs.push(ciro_engine::tensors::encode_input(&xi).expect("encoding an input"));
        let y = tch::no_grad(|| module.forward_ts(&[xi])).expect("libtorch's pass");
        expected.push(Vec::<f32>::try_from(y.flatten(0, -1)).expect("f32"));
    }
    let digests: Vec<Digest> = inputs.iter().map(|b| Digest::of(b)).collect();
    let manifest = ciro_protocol::manifest_of(&digests);
    let submitter = c.client_as(s, Actor::Submitter);
    for bytes in inputs.iter().chain([&manifest]) {
        submitter.upload_blob(bytes.clone()).await.expect("upload");
    }
    let deadline = s.net.now().await.expect("now") + 3_600;
    s.send(s.jobs_as(Actor::Submitter).submit_batch(
        &mlp,
        &u256_from_digest(&Digest::of(&manifest).0),
        &n,
        &u256(u128::from(n) * JOB_FEE),
        &deadline,
        &no_options(),
    ))
    .await
    .expect("submit_batch");
    let batch = call(s.jobs_reader().job_count()).await.expect("job_count");
    (batch, manifest, expected)
}

/// Batch `batch`'s outputs as its submitter reads them (the output manifest committed on
/// chain, then each output it lists), each checked against `expected` to 1e-5.
async fn check_batch_outputs(s: &System, c: &Running, batch: u64, expected: &[Vec<f32>]) -> Digest {
    let output_hash = indexed_output(c, batch).await;
    assert_eq!(
        s.job_info(batch).await.job.output_hash,
        u256_from_digest(&output_hash.0)
    );
    let submitter = c.client_as(s, Actor::Submitter);
    let outputs_manifest = submitter
        .download_blob(&output_hash)
        .await
        .expect("the output manifest");
    let outputs = ciro_protocol::parse_manifest(&outputs_manifest, expected.len() as u64)
        .expect("a digest per input");
    for (i, (digest, want)) in outputs.iter().zip(expected).enumerate() {
        let bytes = submitter.download_blob(digest).await.expect("an output");
        let diff = max_abs_diff(&bytes, want);
        assert!(diff <= 1e-5, "output {i} differs from libtorch's by {diff}");
    }
    output_hash
}

/// A batch (JobMgr's `submit_batch`) of 12 inputs of the MLP, run by one worker: it reads the
/// manifest, runs each input, and publishes the output manifest, every output and a receipt
/// over the two manifests before committing the manifest's hash. Killed (aborted, as a crash
/// would end it) once it has journaled 5 outputs, it resumes from its journal after a restart
/// and runs only the 7 it had not: no input is computed twice. Every output matches libtorch's
/// own run of the model to 1e-5, in the manifest's order, and the submitter reads them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_runs_a_batch_and_resumes_it_after_a_crash_computing_no_input_twice() {
    const ITEMS: u32 = 12;
    let made = make_models();
    let s = System::deploy().await.expect("deploy");
    let c = Running::start(&s, Options::default()).await;
    let data = tempfile::tempdir().expect("dir");
    let a_dir = data.path().join("a");
    let (batch, manifest, expected) = mlp_batch(&s, &c, &made, ITEMS).await;

    let mut a = worker(
        &s,
        &c,
        Actor::WorkerA,
        MIN_STAKE[0],
        &a_dir,
        &["--test-crash-after-items", "5"],
    );
    let status = tokio::time::timeout(WAIT, a.wait())
        .await
        .expect("the worker aborted mid-batch")
        .expect("wait");
    assert!(!status.success(), "aborted: {status}");
    assert_eq!(forward_passes(&a_dir), 5, "{}", worker_log(&a_dir));
    assert_eq!(state(&s, batch).await.0, "Assigned");
    let items_on_disk = std::fs::read_dir(a_dir.join("outputs"))
        .expect("outputs")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".item"))
        .count();
    assert_eq!(items_on_disk, 5, "each journaled output is on disk");

    let a = worker(&s, &c, Actor::WorkerA, MIN_STAKE[0], &a_dir, &[]);
    until_state(&s, batch, "Completed", data.path()).await;
    assert_eq!(
        forward_passes(&a_dir),
        ITEMS as usize,
        "the restart ran only the 7 inputs not journaled: {}",
        worker_log(&a_dir)
    );
    let output_hash = check_batch_outputs(&s, &c, batch, &expected).await;
    let receipt = c.client().receipt(batch).await.expect("receipt");
    assert_eq!(
        (receipt.receipt.input_hash, receipt.receipt.output_hash),
        (Digest::of(&manifest), output_hash),
        "the receipt covers the two manifests"
    );
    assert!(receipt.is_signed_by_key(s.net.public_key(Actor::WorkerA), s.net.chain_id()));
    sigterm(a).await;
    c.stop().await;
}

/// With `--merge-batch-items` (and `--max-batch 32`), a batch of 10 inputs of 8 rows runs in 3
/// forward passes (32 + 32 + 16 rows), its outputs split back by rows: each still matches
/// libtorch's run of its input alone to 1e-5, in the manifest's order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batchs_inputs_share_passes_when_merged_and_each_output_matches_its_own_run() {
    const ITEMS: u32 = 10;
    let made = make_models();
    let s = System::deploy().await.expect("deploy");
    let c = Running::start(&s, Options::default()).await;
    let data = tempfile::tempdir().expect("dir");
    let a_dir = data.path().join("a");
    let (batch, _, expected) = mlp_batch(&s, &c, &made, ITEMS).await;
    let a = worker(
        &s,
        &c,
        Actor::WorkerA,
        MIN_STAKE[0],
        &a_dir,
        &["--merge-batch-items", "--max-batch", "32"],
    );
    until_state(&s, batch, "Completed", data.path()).await;
    assert_eq!(forward_passes(&a_dir), 3, "{}", worker_log(&a_dir));
    check_batch_outputs(&s, &c, batch, &expected).await;
    sigterm(a).await;
    c.stop().await;
}
