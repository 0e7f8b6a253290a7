//! libtorch through tch against Python torch: a TorchScript model written by Python at test
//! time gives the same output through the worker's inference module (to 1e-5).

mod common;

use ciro_worker::inference::{default_device, InferenceError, TorchScriptModel};
use common::{make_models, max_abs_diff, sample};
use tch::{Device, Kind, Tensor};

#[test]
fn torchscript_models_match_python_to_1e_5_on_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let described = make_models(dir.path());
    for name in ["mlp", "encoder"] {
        let (x, expected) = sample(dir.path(), &described, name);
        let model =
            TorchScriptModel::load(&dir.path().join(format!("{name}.pt")), Device::Cpu).unwrap();
        let y = model.forward(&x).unwrap();
        assert_eq!(y.size(), expected.size(), "{name}");
        assert_eq!(y.kind(), Kind::Float);
        let diff = max_abs_diff(&y, &expected);
        assert!(diff <= 1e-5, "{name}: max |rust - python| = {diff}");
        // The comparison is not vacuous: the output is not all zeros.
        assert!(
            expected.abs().sum(Kind::Float).double_value(&[]) > 0.1,
            "{name}"
        );
    }
}

#[test]
fn wrong_input_shape_is_a_forward_error() {
    let dir = tempfile::tempdir().unwrap();
    make_models(dir.path());
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
