//! Shared by the engine's and the worker binary's integration tests (the worker includes this
//! file by path): models made by Python torch at test time
//! (`crates/engine/python/ciro_models.py`) and helpers to read its files.
//!
//! Needs Python with torch 2.11.0 (scripts/setup.sh installs it): the tests fail, they do
//! not skip, when it is missing.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;
use tch::Tensor;

/// The project's Python: the venv's when `VIRTUAL_ENV` is set (scripts/env.sh), else python3.
pub fn python() -> PathBuf {
    match std::env::var_os("VIRTUAL_ENV") {
        Some(venv) => Path::new(&venv).join("bin/python"),
        None => PathBuf::from("python3"),
    }
}

pub fn models_script() -> PathBuf {
    // The including crate's manifest dir is either `crates/engine` or `worker`.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join("crates/engine/python/ciro_models.py"))
        .find(|script| script.exists())
        .expect("crates/engine/python/ciro_models.py above the crate")
}

/// Runs `ciro_models.py make` into `dir`; returns its JSON description.
pub fn make_models(dir: &Path) -> Value {
    let output = Command::new(python())
        .arg(models_script())
        .arg("make")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "running {:?} (scripts/setup.sh installs torch): {e}",
                python()
            )
        });
    assert!(
        output.status.success(),
        "ciro_models.py make failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let described: Value = serde_json::from_slice(&output.stdout).unwrap();
    let version = described["torch"].as_str().unwrap();
    assert!(
        version.starts_with("2.11.0"),
        "expected torch 2.11.0, python has {version}"
    );
    described
}

/// Models made once per test binary (Python takes seconds to start torch): their directory
/// and description. Tests copy what they change.
pub fn shared_models() -> &'static (PathBuf, Value) {
    static MODELS: OnceLock<(PathBuf, Value)> = OnceLock::new();
    MODELS.get_or_init(|| {
        // Kept for the life of the process; the OS temp cleaner owns it afterwards.
        let dir = tempfile::tempdir().unwrap().keep();
        let described = make_models(&dir);
        (dir, described)
    })
}

/// Reads a little-endian float32 file written by the script into a tensor of `shape`.
pub fn read_f32(path: &Path, shape: &[i64]) -> Tensor {
    let bytes = std::fs::read(path).unwrap();
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Tensor::from_slice(&values).reshape(shape)
}

pub fn shape(value: &Value) -> Vec<i64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_i64().unwrap())
        .collect()
}

/// The sample input and Python's output for model `name`.
pub fn sample(dir: &Path, described: &Value, name: &str) -> (Tensor, Tensor) {
    let x = read_f32(
        &dir.join(format!("{name}.x.f32")),
        &shape(&described[name]["x_shape"]),
    );
    let y = read_f32(
        &dir.join(format!("{name}.y.f32")),
        &shape(&described[name]["y_shape"]),
    );
    (x, y)
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}
