use starknet::{ContractAddress, StorePacking};
use traits::{Into, TryInto};
use option::OptionTrait;
use ciro::common::types::Requirements;
use ciro::common::packing::{halves, high64, join64, low64, to_felt};

/// Where a job is in its life. Final states: Finalized, Cancelled, Expired, Refunded.
#[derive(Copy, Drop, Serde, PartialEq)]
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

/// A job as the views show it. `worker`, `assigned_at`, `completed_at` and `output_hash` are
/// zero until set. (Stored split by how often each part changes: `JobCore` once, `JobStatus`
/// packed in one slot, the rest in their own maps.)
#[derive(Copy, Drop, Serde, PartialEq)]
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

/// JobMgr's bounded parameters. (Stored as `JobTerms`, packed in one slot, and the two
/// amounts.)
#[derive(Copy, Drop, Serde, PartialEq)]
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

/// What of a job never changes after submission and the hot paths read.
#[derive(Copy, Drop, Serde, PartialEq, starknet::Store)]
struct JobCore {
    submitter: ContractAddress,
    model_id: u64,
    deadline: u64,
}

/// What changes as a job moves: one storage slot (low half: assigned_at, completed_at; high
/// half: the state's index).
#[derive(Copy, Drop, Serde, PartialEq)]
struct JobStatus {
    state: JobState,
    assigned_at: u64,
    completed_at: u64,
}

impl JobStatusPacking of StorePacking<JobStatus, felt252> {
    fn pack(value: JobStatus) -> felt252 {
        to_felt(join64(value.assigned_at, value.completed_at), state_index(value.state))
    }

    fn unpack(value: felt252) -> JobStatus {
        let (low, high) = halves(value);
        JobStatus { state: state_at(high), assigned_at: low64(low), completed_at: high64(low) }
    }
}

fn state_index(state: JobState) -> u128 {
    match state {
        JobState::Queued(()) => 0,
        JobState::Assigned(()) => 1,
        JobState::Completed(()) => 2,
        JobState::Disputed(()) => 3,
        JobState::Finalized(()) => 4,
        JobState::Cancelled(()) => 5,
        JobState::Expired(()) => 6,
        JobState::Refunded(()) => 7,
    }
}

fn state_at(index: u128) -> JobState {
    if index == 0 {
        JobState::Queued(())
    } else if index == 1 {
        JobState::Assigned(())
    } else if index == 2 {
        JobState::Completed(())
    } else if index == 3 {
        JobState::Disputed(())
    } else if index == 4 {
        JobState::Finalized(())
    } else if index == 5 {
        JobState::Cancelled(())
    } else if index == 6 {
        JobState::Expired(())
    } else {
        JobState::Refunded(())
    }
}

/// The parameters that are not amounts, in one slot (low half: challenge window, assignment
/// timeout; high half: max job duration, protocol fee bps).
#[derive(Copy, Drop, Serde, PartialEq)]
struct JobTerms {
    protocol_fee_bps: u16,
    challenge_window: u64,
    assignment_timeout: u64,
    max_job_duration: u64,
}

impl JobTermsPacking of StorePacking<JobTerms, felt252> {
    fn pack(value: JobTerms) -> felt252 {
        let bps: u64 = value.protocol_fee_bps.into();
        to_felt(
            join64(value.challenge_window, value.assignment_timeout),
            join64(value.max_job_duration, bps)
        )
    }

    fn unpack(value: felt252) -> JobTerms {
        let (low, high) = halves(value);
        JobTerms {
            protocol_fee_bps: high64(high).try_into().unwrap(),
            challenge_window: low64(low),
            assignment_timeout: high64(low),
            max_job_duration: low64(high),
        }
    }
}
