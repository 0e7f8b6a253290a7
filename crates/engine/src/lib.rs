//! CIRO's inference engine, a library with no chain dependency: what the worker agent runs,
//! and what a verifier re-running a job would run.
//!
//! - [`hardware`]: the GPU report from NVML (CPU-only profile where there is no driver) and
//!   the capability flags the contracts use;
//! - [`store`]: TorchScript models addressed by SHA-256, verified before loading, with a
//!   bounded cache of loaded modules per device;
//! - [`engine`]: inference on a dedicated thread under `no_grad`, dynamic batching, and job
//!   execution from safetensors input to a hashed safetensors output;
//! - [`isolation`] and [`sandbox`]: each job's pass in a sandboxed process of its own, which
//!   holds nothing worth stealing from a model that takes control of it;
//! - [`screen`]: what a TorchScript model may call, checked before it is loaded (no file
//!   access, no operators or classes outside ATen's);
//! - [`tensors`]: safetensors input and output;
//! - [`digest`]: SHA-256 digests, the content addresses of models, inputs and outputs.

pub mod digest;
pub mod engine;
pub mod error;
pub mod hardware;
pub mod isolation;
pub mod sandbox;
pub mod screen;
pub mod store;
pub mod tensors;

pub use digest::Digest;

/// The libtorch version the engine was built against (from torch's `version.py`; `unknown`
/// when the build did not find it).
pub fn libtorch_version() -> &'static str {
    option_env!("CIRO_LIBTORCH_VERSION").unwrap_or("unknown")
}
pub use engine::{default_device, Engine, EngineConfig, JobOutput};
pub use error::EngineError;
pub use isolation::{child_main, Isolation, SandboxReport};
pub use store::{LoadedModel, ModelSpec, ModelStore};
