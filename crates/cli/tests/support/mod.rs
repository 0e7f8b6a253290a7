//! What the network's process tests and benchmark share: the workspace's binaries started as
//! a coordinator (SQLite) and worker agents on a test devnet deployment, signed API clients,
//! inputs for Python torch's MLP.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use ciro_api::coordinator::{CoordinatorClient, RequestSigner};
use ciro_tests::system::*;
use ciro_tests::Actor;
use tokio::process::{Child, Command};

/// The MLP's input row (ciro_models.py, size "test").
pub const ROW: usize = 16;

pub fn bin(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_ciro")).with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        path.display()
    );
    path
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("address")
        .port()
}

pub fn log(dir: &Path, name: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))
        .expect("log file")
}

/// The SQLite database of the coordinators started in `dir`.
pub fn sqlite_in(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("coordinator.db").display())
}

/// A coordinator on `port` over `dir`'s SQLite database.
pub fn coordinator(s: &System, dir: &Path, port: u16) -> Child {
    replica(s, dir, port, &sqlite_in(dir), "coordinator")
}

/// A coordinator replica named `name` on `port` over `database_url`, sharing `dir`'s blob
/// directory with the other replicas (3-second leader leases).
pub fn replica(s: &System, dir: &Path, port: u16, database_url: &str, name: &str) -> Child {
    let log = log(dir, name);
    Command::new(bin("ciro-coordinator"))
        .args(["--rpc-url", s.net.rpc_url().as_str()])
        .arg("--manifest")
        .arg(dir.join("manifest.json"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--database-url", database_url])
        .arg("--blob-dir")
        .arg(dir.join("blobs"))
        .args(["--devnet-account", &Actor::Coordinator.index().to_string()])
        .args(["--replica-name", name, "--lease-secs", "3"])
        .args(["--tick-ms", "300", "--rate-limit", "10000"])
        .env("CIRO_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("ciro-coordinator")
}

/// Waits until the service at `base` answers `/ready` with 200.
pub async fn ready(base: &str) {
    let url = format!("{base}/ready");
    eventually(
        &format!("{base} is ready"),
        Duration::from_secs(120),
        || async {
            reqwest::get(&url)
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .map(drop)
        },
    )
    .await;
}

pub fn worker(s: &System, dir: &Path, base: &str, actor: Actor) -> Child {
    worker_with(s, dir, base, actor, &[])
}

/// [`worker`] with `extra` arguments.
pub fn worker_with(s: &System, dir: &Path, base: &str, actor: Actor, extra: &[&str]) -> Child {
    let name = format!("worker-{}", actor.index());
    let log = log(dir, &name);
    Command::new(bin("ciro-worker"))
        .arg("run")
        .args(["--rpc-url", s.net.rpc_url().as_str()])
        .arg("--manifest")
        .arg(dir.join("manifest.json"))
        .args(["--devnet-account", &actor.index().to_string()])
        .args(["--coordinator", base])
        .arg("--data-dir")
        .arg(dir.join(&name))
        .args(["--stake-target", &MIN_STAKE[0].to_string()])
        .args([
            "--capacity",
            "4",
            "--heartbeat-secs",
            "1",
            "--commit-window-ms",
            "500",
        ])
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .env("CIRO_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("ciro-worker")
}

pub async fn kill(child: &mut Child) {
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("wait");
}

/// Polls `check` every 500 ms until it gives a value, or panics after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub fn signer(s: &System, actor: Actor) -> RequestSigner {
    RequestSigner::new(
        s.net.signing_key(actor),
        s.net.address(actor),
        s.net.chain_id(),
        s.job_mgr,
    )
}

/// Jobs the coordinator's index shows in `state` (`None` while it is away).
pub async fn indexed(base: &str, state: &str) -> Option<u64> {
    let client = CoordinatorClient::new(base).ok()?;
    let stats = client.stats(Some(1)).await.ok()?;
    Some(stats.jobs_by_state.get(state).copied().unwrap_or(0))
}

/// One row of `ROW` floats as a safetensors file (tensor "input", shape [1, ROW]).
pub fn input(seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let values: Vec<f32> = (0..ROW)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 2_000) as f32 / 1_000.0 - 1.0
        })
        .collect();
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let header = format!(
        r#"{{"input":{{"dtype":"F32","shape":[1,{ROW}],"data_offsets":[0,{}]}}}}"#,
        data.len()
    );
    let mut padded = header.into_bytes();
    padded.resize(padded.len().div_ceil(8) * 8, b' ');
    let mut bytes = (padded.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&padded);
    bytes.extend_from_slice(&data);
    bytes
}

/// The MLP made by Python torch: its TorchScript file.
pub fn mlp(dir: &Path) -> Vec<u8> {
    let python = std::env::var("VIRTUAL_ENV")
        .map(|venv| PathBuf::from(venv).join("bin/python"))
        .unwrap_or_else(|_| PathBuf::from("python3"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/python/ciro_models.py");
    let status = std::process::Command::new(python)
        .arg(script)
        .arg("make")
        .arg(dir)
        .stdout(Stdio::null())
        .status()
        .expect("python (scripts/setup.sh installs torch in the venv)");
    assert!(status.success(), "making the models with Python torch");
    std::fs::read(dir.join("mlp.pt")).expect("mlp.pt")
}
