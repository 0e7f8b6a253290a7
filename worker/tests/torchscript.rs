//! libtorch through tch against Python torch: a TorchScript model written by Python at test
//! time gives the same output through the worker's inference module (to 1e-5).
//!
//! Needs Python with torch 2.11.0 (scripts/setup.sh installs it in the project venv): the
//! test fails, it does not skip, when it is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use ciro_worker::inference::{default_device, InferenceError, TorchScriptModel};
use tch::{Device, Kind, Tensor};

/// The project's Python: the venv's when `VIRTUAL_ENV` is set (scripts/env.sh), else python3.
fn python() -> PathBuf {
    match std::env::var_os("VIRTUAL_ENV") {
        Some(venv) => Path::new(&venv).join("bin/python"),
        None => PathBuf::from("python3"),
    }
}

/// Writes a scripted MLP, a fixed input and Python's output for it into `dir`.
fn make_model_with_python(dir: &Path) {
    let script = r#"
import sys, torch
torch.manual_seed(7)
out = sys.argv[1]
model = torch.nn.Sequential(
    torch.nn.Linear(16, 64), torch.nn.GELU(), torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4)
).eval()
scripted = torch.jit.script(model)
scripted.save(f"{out}/mlp.pt")
x = torch.randn(8, 16)
with torch.no_grad():
    y = scripted(x)
torch.save({"x": x, "y": y}, f"{out}/io.pt")
# Plain little-endian float32 files, read back by the Rust side.
x.numpy().astype("<f4").tofile(f"{out}/x.f32")
y.numpy().astype("<f4").tofile(f"{out}/y.f32")
print(torch.__version__)
"#;
    let output = Command::new(python())
        .arg("-c")
        .arg(script)
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
        "python torch failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let version = String::from_utf8_lossy(&output.stdout);
    assert!(
        version.starts_with("2.11.0"),
        "expected torch 2.11.0, python has {version}"
    );
}

fn read_f32(path: &Path, shape: &[i64]) -> Tensor {
    let bytes = std::fs::read(path).unwrap();
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Tensor::from_slice(&values).reshape(shape)
}

#[test]
fn torchscript_mlp_matches_python_to_1e_5_on_cpu() {
    let dir = tempfile::tempdir().unwrap();
    make_model_with_python(dir.path());
    let x = read_f32(&dir.path().join("x.f32"), &[8, 16]);
    let expected = read_f32(&dir.path().join("y.f32"), &[8, 4]);

    let model = TorchScriptModel::load(&dir.path().join("mlp.pt"), Device::Cpu).unwrap();
    let y = model.forward(&x).unwrap();

    assert_eq!(y.size(), vec![8, 4]);
    assert_eq!(y.kind(), Kind::Float);
    let max_abs_diff = (&y - &expected).abs().max().double_value(&[]);
    assert!(max_abs_diff <= 1e-5, "max |rust - python| = {max_abs_diff}");
    // The comparison is not vacuous: the output is not all zeros.
    assert!(expected.abs().sum(Kind::Float).double_value(&[]) > 0.1);
}

#[test]
fn wrong_input_shape_is_a_forward_error() {
    let dir = tempfile::tempdir().unwrap();
    make_model_with_python(dir.path());
    let model = TorchScriptModel::load(&dir.path().join("mlp.pt"), Device::Cpu).unwrap();
    let result = model.forward(&Tensor::zeros([8, 15], (Kind::Float, Device::Cpu)));
    assert!(
        matches!(result, Err(InferenceError::Forward(_))),
        "{result:?}"
    );
}

#[test]
fn a_file_that_is_not_torchscript_is_a_load_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-model.pt");
    std::fs::write(&path, b"definitely not a zip archive").unwrap();
    let result = TorchScriptModel::load(&path, Device::Cpu);
    assert!(
        matches!(result, Err(InferenceError::Load { .. })),
        "{result:?}"
    );
}

#[test]
fn default_device_matches_what_libtorch_sees() {
    let expected = if tch::Cuda::is_available() {
        Device::Cuda(0)
    } else {
        Device::Cpu
    };
    assert_eq!(default_device(), expected);
}
