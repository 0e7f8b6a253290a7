//! Job inputs and outputs as safetensors, and their validation against a model's spec.

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use tch::{Kind, Tensor};

use crate::error::EngineError;
use crate::store::ModelSpec;

/// The tensor name a job's input and output carry.
pub const INPUT_NAME: &str = "input";
pub const OUTPUT_NAME: &str = "output";

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
/// function of the tensor alone, so equal tensors hash equal.
fn encode(name: &str, tensor: &Tensor) -> Result<Vec<u8>, String> {
    let tensor = tensor.to_device(tch::Device::Cpu).contiguous();
    let dtype = Dtype::try_from(tensor.kind()).map_err(|e| e.to_string())?;
    let shape: Vec<usize> = tensor.size().iter().map(|&d| d as usize).collect();
    let numel = tensor.numel();
    let mut data = vec![0u8; numel * tensor.kind().elt_size_in_bytes()];
    tensor.copy_data_u8(&mut data, numel);
    let view = TensorView::new(dtype, shape, &data).map_err(|e| format!("{e:?}"))?;
    safetensors::serialize([(name, view)], &None).map_err(|e| format!("{e:?}"))
}
