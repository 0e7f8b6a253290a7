//! The `ciro-worker` binary: the hardware report as JSON, and one job run through a stored
//! model from the command line.

#[path = "../../crates/engine/tests/common/mod.rs"]
mod common;

use std::process::Command;

use ciro_engine::hardware::HardwareReport;
use ciro_engine::tensors::{decode_input, encode_input};
use ciro_engine::Digest;
use common::{max_abs_diff, sample, shared_models};

fn worker() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ciro-worker"))
}

#[test]
fn hardware_prints_a_report_that_explains_itself() {
    let output = worker().arg("hardware").output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: HardwareReport = serde_json::from_slice(&output.stdout).unwrap();
    assert!(report.cpu.logical_cores >= 1);
    assert_eq!(report.gpus.is_empty(), report.no_gpu_reason.is_some());
}

#[test]
fn add_model_then_exec_runs_a_job_and_reports_its_hashes() {
    let (models, described) = shared_models();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");

    let added = worker()
        .args(["add-model", "--shape", "16", "--max-batch", "16", "--store"])
        .arg(&store)
        .arg("--file")
        .arg(models.join("mlp.pt"))
        .output()
        .unwrap();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let hash: Digest = String::from_utf8(added.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        hash,
        Digest::of(&std::fs::read(models.join("mlp.pt")).unwrap())
    );

    let (x, expected) = sample(models, described, "mlp");
    let input = dir.path().join("input.safetensors");
    let output = dir.path().join("output.safetensors");
    std::fs::write(&input, encode_input(&x).unwrap()).unwrap();
    let ran = worker()
        .args([
            "exec",
            "--deterministic-seed",
            "1",
            "--model",
            &hash.to_string(),
            "--store",
        ])
        .arg(&store)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .env("CUDA_VISIBLE_DEVICES", "")
        .output()
        .unwrap();
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&ran.stdout).unwrap();
    let written = std::fs::read(&output).unwrap();
    assert_eq!(report["output_hash"], Digest::of(&written).to_string());
    assert_eq!(
        report["input_hash"],
        Digest::of(&std::fs::read(&input).unwrap()).to_string()
    );
    assert!(max_abs_diff(&decode_input(&written).unwrap(), &expected) <= 1e-5);
}

#[test]
fn exec_with_an_unknown_model_fails_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.safetensors");
    std::fs::write(&input, b"irrelevant").unwrap();
    let missing = Digest::of(b"missing");
    let ran = worker()
        .args(["exec", "--model", &missing.to_string(), "--store"])
        .arg(dir.path().join("store"))
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert!(!ran.status.success());
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert!(
        stderr.contains(&format!("unknown model {missing}")),
        "{stderr}"
    );
}
