//! The CIRO worker library: what the worker binary (and later the coordinator's spot
//! checks) run.
//!
//! - [`hardware`]: the GPU report from NVML (CPU-only profile where there is no driver) and
//!   the capability flags the contracts use;
//! - [`store`]: TorchScript models addressed by SHA-256, verified before loading, with a
//!   bounded cache of loaded modules per device;
//! - [`engine`]: inference on a dedicated thread under `no_grad`, dynamic batching, and job
//!   execution from safetensors input to a hashed safetensors output;
//! - [`inference`]: running one TorchScript module directly.

pub mod digest;
pub mod engine;
pub mod error;
pub mod hardware;
pub mod inference;
pub mod store;
pub mod tensors;

pub use digest::Digest;
pub use engine::{Engine, EngineConfig, JobOutput};
pub use error::EngineError;
pub use store::{ModelSpec, ModelStore};
