//! Job inputs and outputs as safetensors, and their validation against a model's spec.

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use tch::{Kind, Tensor};

use crate::error::EngineError;
use crate::store::ModelSpec;

/// The tensor name a job's input and output carry.
pub const INPUT_NAME: &str = "input";
pub const OUTPUT_NAME: &str = "output";

/// Most bytes of tensor data a file is encoded with (4 times a coordinator's default blob
/// limit). A model's output is what its author wrote: an expanded view of a few bytes may
/// stand for terabytes, which copying would try to allocate (an allocation failure aborts
/// the process, and the job would be resumed into the same abort at every start).
pub const MAX_ENCODED_BYTES: u64 = 1 << 30;

/// safetensors' name of a libtorch element type (`F32`, ...).
pub fn dtype_name(kind: Kind) -> String {
    Dtype::try_from(kind)
        .map(|d| format!("{d:?}"))
        .unwrap_or_else(|_| format!("{kind:?}"))
}

/// Decodes a job's input: a safetensors file holding one tensor, or one named `input`.
pub fn decode_input(bytes: &[u8]) -> Result<Tensor, EngineError> {
    let file = SafeTensors::deserialize(bytes)
        .map_err(|e| EngineError::InvalidInput(format!("not safetensors: {e:?}")))?;
    let names = file.names();
    let name = match names.as_slice() {
        [only] => only.to_string(),
        _ if names.iter().any(|n| n.as_str() == INPUT_NAME) => INPUT_NAME.to_owned(),
        [] => return Err(EngineError::InvalidInput("no tensor in the file".into())),
        _ => {
            return Err(EngineError::InvalidInput(format!(
                "{} tensors and none named {INPUT_NAME:?}",
                names.len()
            )))
        }
    };
    let view = file
        .tensor(&name)
        .map_err(|e| EngineError::InvalidInput(format!("{e:?}")))?;
    Tensor::try_from(view).map_err(|e| EngineError::InvalidInput(e.to_string()))
}

/// Checks `input` against `spec` and the engine's limit; returns its number of rows.
pub fn validate(
    input: &Tensor,
    spec: &ModelSpec,
    engine_max_batch: i64,
) -> Result<i64, EngineError> {
    let dtype = dtype_name(input.kind());
    if dtype != spec.input_dtype {
        return Err(EngineError::WrongDtype {
            expected: spec.input_dtype.clone(),
            actual: dtype,
        });
    }
    let shape = input.size();
    if shape.len() != spec.input_shape.len() + 1 || shape[1..] != spec.input_shape[..] {
        return Err(EngineError::WrongShape {
            expected: spec.input_shape.clone(),
            actual: shape,
        });
    }
    let rows = shape[0];
    if rows == 0 {
        return Err(EngineError::EmptyInput);
    }
    let max = spec.max_batch.min(engine_max_batch);
    if rows > max {
        return Err(EngineError::BatchTooLarge { rows, max });
    }
    Ok(rows)
}

/// Encodes an output tensor as safetensors named `output`.
pub fn encode_output(output: &Tensor) -> Result<Vec<u8>, EngineError> {
    encode(OUTPUT_NAME, output)
        .map_err(|e| EngineError::Forward(format!("encoding the output: {e}")))
}

/// Encodes a tensor as a job input file named `input` (what a submitter uploads).
pub fn encode_input(input: &Tensor) -> Result<Vec<u8>, EngineError> {
    encode(INPUT_NAME, input).map_err(EngineError::InvalidInput)
}

/// One tensor (moved to the CPU, made contiguous) as a safetensors file. The bytes are a
/// function of the tensor alone, so equal tensors hash equal. Only a dense tensor of a
/// safetensors type and at most [`MAX_ENCODED_BYTES`] of data is encoded; every libtorch call
/// here is the fallible one, so a tensor libtorch cannot copy is an error, not a panic.
fn encode(name: &str, tensor: &Tensor) -> Result<Vec<u8>, String> {
    if tensor.is_sparse() || tensor.is_mkldnn() {
        return Err(
            "the tensor is not dense (sparse or MKL-DNN): only dense tensors are kept".into(),
        );
    }
    let kind = tensor.f_kind().map_err(|e| e.to_string())?;
    let dtype = Dtype::try_from(kind).map_err(|e| e.to_string())?;
    let dims = tensor.size();
    let shape = dims
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| format!("the shape {dims:?} has a negative dimension"))?;
    let bytes = shape
        .iter()
        .try_fold(kind.elt_size_in_bytes() as u64, |n, &d| {
            n.checked_mul(d as u64)
        })
        .filter(|&bytes| bytes <= MAX_ENCODED_BYTES)
        .ok_or_else(|| {
            format!(
                "a {kind:?} tensor of shape {dims:?} is more than the {MAX_ENCODED_BYTES} bytes \
                 a file may hold"
            )
        })?;
    let numel: usize = shape.iter().product();
    let tensor = tensor
        .f_to(tch::Device::Cpu)
        .and_then(|t| t.f_contiguous())
        .map_err(|e| format!("copying the tensor: {e}"))?;
    let mut data = vec![0u8; bytes as usize];
    tensor
        .f_copy_data_u8(&mut data, numel)
        .map_err(|e| format!("copying the tensor: {e}"))?;
    let view = TensorView::new(dtype, shape, &data).map_err(|e| format!("{e:?}"))?;
    safetensors::serialize([(name, view)], &None).map_err(|e| format!("{e:?}"))
}
