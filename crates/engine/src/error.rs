//! The engine's errors. None of them is worth retrying with the same model and input,
//! except [`EngineError::Internal`], which is logged and not shown to a submitter.

use crate::digest::Digest;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No model with this hash in the store.
    #[error("unknown model {0}")]
    UnknownModel(Digest),
    /// The stored file's SHA-256 is not the model hash it is filed under (tampered or
    /// corrupt on disk).
    #[error("model {expected}: file hashes to {actual}")]
    HashMismatch { expected: Digest, actual: Digest },
    /// The file has the right hash but libtorch cannot load it as TorchScript.
    #[error("model {hash} is not a loadable TorchScript module: {reason}")]
    CorruptModel { hash: Digest, reason: String },
    /// The model calls what a model may not (files, operators or classes outside ATen's:
    /// [`crate::screen`]); never loaded.
    #[error("model {hash} is refused: {reason}")]
    UnsafeModel { hash: Digest, reason: String },
    /// The input is not a safetensors file with one tensor (or one named `input`).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The input has no rows.
    #[error("empty input: the leading (batch) dimension is 0")]
    EmptyInput,
    /// The input's per-row shape is not the model's.
    #[error("wrong input shape {actual:?}: the model takes [batch, {expected:?}]")]
    WrongShape {
        expected: Vec<i64>,
        actual: Vec<i64>,
    },
    /// The input's element type is not the model's.
    #[error("wrong input dtype {actual}: the model takes {expected}")]
    WrongDtype { expected: String, actual: String },
    /// More rows than the model or the engine accepts in one request.
    #[error("batch of {rows} rows exceeds the maximum of {max}")]
    BatchTooLarge { rows: i64, max: i64 },
    /// The model failed while running on a valid input.
    #[error("inference failed: {0}")]
    Forward(String),
    /// A fault of the worker itself (I/O, a lost task); retryable. Its cause is logged when it
    /// is made and kept as the source; its text is fixed, so no detail of the worker's
    /// machine reaches a submitter.
    #[error("internal error in the inference engine")]
    Internal(#[source] anyhow::Error),
}

impl From<anyhow::Error> for EngineError {
    fn from(error: anyhow::Error) -> Self {
        tracing::error!(error = format!("{error:#}"), "internal engine error");
        EngineError::Internal(error)
    }
}
