//! Types JobMgr and CDC Pool share: what a model requires of a worker, what a worker offers,
//! and how a job's outcome and a slash's reason are told to the pool.

/// Capability flags, one bit each, shared by a model's requirements and a worker's
/// capabilities.
const FLAG_CUDA: u64 = 1;
const FLAG_FP16: u64 = 2;
const FLAG_BF16: u64 = 4;
const FLAG_INT8: u64 = 8;
const FLAG_TEE: u64 = 16;
/// Every known flag: a flag outside it is refused wherever flags are declared or required.
const ALL_FLAGS: u64 = 31;

/// What a model requires of the worker that runs it.
#[derive(Copy, Drop, Serde, PartialEq, starknet::Store)]
struct Requirements {
    /// Least GPU memory, in MB.
    min_vram_mb: u32,
    /// Capability flags the worker must all have (bitfield, `FLAG_*`).
    required_flags: u64,
    /// Least stake tier (0 to 3) of the worker's own stake.
    min_stake_tier: u8,
    /// Least reputation score (0 to 10,000) of the worker.
    min_score: u32,
}

/// Whether `flags` uses only known capability bits.
fn known_flags(flags: u64) -> bool {
    (flags & ALL_FLAGS) == flags
}

/// What a worker declares it runs on. The pool derives its hardware tier from `vram_mb`.
#[derive(Copy, Drop, Serde, PartialEq, starknet::Store)]
struct Capabilities {
    /// The GPU model as a short string (e.g. 'H100'), or 'CPU'.
    gpu_model: felt252,
    /// GPU memory, in MB (0 on CPU).
    vram_mb: u32,
    /// CUDA compute capability times ten (90 for 9.0), 0 on CPU.
    compute_capability: u32,
    /// Capability flags (bitfield, `FLAG_*`).
    flags: u64,
}

/// How a job ended for its worker, as JobMgr records it in the pool.
#[derive(Copy, Drop, Serde, PartialEq, starknet::Store)]
enum Outcome {
    /// The result was accepted (finalized, or upheld in a dispute).
    Success: (),
    /// The result was wrong (dispute lost) or the job expired while assigned.
    Failure: (),
    /// The worker let its assignment time out.
    Missed: (),
}

/// Why a worker is slashed; each reason has a default share of stake (a pool parameter).
#[derive(Copy, Drop, Serde, PartialEq, starknet::Store)]
enum SlashReason {
    Unavailable: (),
    PoorPerformance: (),
    ProtocolViolation: (),
    Malicious: (),
    Fraud: (),
}
