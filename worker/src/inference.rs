//! TorchScript execution through libtorch.

use std::path::Path;

use tch::{CModule, Device, Tensor};

/// Errors running a model; none of them is worth retrying with the same input.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    /// The file is missing or is not a TorchScript module.
    #[error("loading TorchScript module {path}: {source}")]
    Load { path: String, source: tch::TchError },
    /// The module rejected the input (shape, dtype) or failed while running.
    #[error("running the model: {0}")]
    Forward(tch::TchError),
}

/// The device inference runs on: the first CUDA device when libtorch sees one, else CPU.
pub fn default_device() -> Device {
    Device::cuda_if_available()
}

/// A TorchScript module loaded on one device, in evaluation mode.
#[derive(Debug)]
pub struct TorchScriptModel {
    module: CModule,
    device: Device,
}

impl TorchScriptModel {
    /// Loads the module saved at `path` (by `torch.jit.save`) onto `device`.
    pub fn load(path: &Path, device: Device) -> Result<Self, InferenceError> {
        let mut module =
            CModule::load_on_device(path, device).map_err(|source| InferenceError::Load {
                path: path.display().to_string(),
                source,
            })?;
        module.set_eval();
        Ok(Self { module, device })
    }

    /// The device the module runs on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Runs `input` through the module without recording gradients; the output is returned
    /// on the CPU.
    pub fn forward(&self, input: &Tensor) -> Result<Tensor, InferenceError> {
        tch::no_grad(|| {
            let input = input.to_device(self.device);
            self.module
                .forward_ts(&[input])
                .map(|output| output.to_device(Device::Cpu))
        })
        .map_err(InferenceError::Forward)
    }
}
