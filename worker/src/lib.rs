//! The CIRO worker library. For now: running a TorchScript model with libtorch (tch), on
//! CUDA when the machine has it, else on the CPU.

pub mod inference;
