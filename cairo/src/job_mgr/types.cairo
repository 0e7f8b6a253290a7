use starknet::ContractAddress;
use ciro::common::types::Requirements;

/// Where a job is in its life. Final states: Finalized, Cancelled, Expired, Refunded.
#[derive(Copy, Drop, Serde, PartialEq, starknet::Store)]
enum JobState {
    /// Funded, waiting for a worker.
    Queued: (),
    /// A worker has it.
    Assigned: (),
    /// The worker committed a result; the challenge window runs.
    Completed: (),
    /// The submitter contests the result; the arbiter decides.
    Disputed: (),
    /// The worker was paid (after the window, or after winning a dispute).
    Finalized: (),
    /// The submitter took it back before assignment and was refunded.
    Cancelled: (),
    /// Its deadline passed without a result; the submitter was refunded.
    Expired: (),
    /// The worker lost a dispute; the submitter got the fee and the bond back.
    Refunded: (),
}

/// A registered model.
#[derive(Copy, Drop, Serde, PartialEq, starknet::Store)]
struct Model {
    owner: ContractAddress,
    /// SHA-256 of the TorchScript file, as the worker's model store addresses it.
    model_hash: u256,
    requirements: Requirements,
    /// Least fee a job on it may pay.
    price: u256,
    active: bool,
}

/// A job. `worker`, `assigned_at`, `completed_at` and `output_hash` are zero until set.
#[derive(Copy, Drop, Serde, PartialEq, starknet::Store)]
struct Job {
    submitter: ContractAddress,
    model_id: u64,
    /// SHA-256 of the input tensors.
    input_hash: u256,
    /// Escrowed payment.
    fee: u256,
    /// No result is accepted after it; the job may then be expired.
    deadline: u64,
    state: JobState,
    worker: ContractAddress,
    assigned_at: u64,
    completed_at: u64,
    /// SHA-256 of the output tensors the worker committed.
    output_hash: u256,
}

/// A dispute on a job.
#[derive(Copy, Drop, Serde, PartialEq, starknet::Store)]
struct Dispute {
    evidence_hash: felt252,
    bond: u256,
    opened_at: u64,
}

/// JobMgr's bounded parameters.
#[derive(Copy, Drop, Serde, PartialEq, starknet::Store)]
struct JobParams {
    /// Share of each fee paid to the CDC Pool's reward stream, in basis points (<= 1,000).
    protocol_fee_bps: u16,
    /// Least fee of any job.
    min_fee: u256,
    /// Seconds after a result during which the submitter may dispute it.
    challenge_window: u64,
    /// Seconds after which anyone may release an assignment without a result.
    assignment_timeout: u64,
    /// Bond a submitter pays to open a dispute.
    dispute_bond: u256,
    /// Furthest a deadline may lie ahead of submission, in seconds.
    max_job_duration: u64,
}

/// One assignment of a batch.
#[derive(Copy, Drop, Serde, PartialEq)]
struct Assignment {
    job_id: u64,
    worker: ContractAddress,
}

/// A model with its id.
#[derive(Copy, Drop, Serde, PartialEq)]
struct ModelInfo {
    model_id: u64,
    model: Model,
}

/// A job with its id and its dispute (zero when none was opened).
#[derive(Copy, Drop, Serde, PartialEq)]
struct JobInfo {
    job_id: u64,
    job: Job,
    dispute: Dispute,
}
