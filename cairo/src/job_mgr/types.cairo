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
    /// Who opened it: the submitter, or a VERIFIER. Its bond comes back to it unless the
    /// worker is found right.
    disputer: ContractAddress,
    evidence_hash: felt252,
    bond: u256,
    opened_at: u64,
}

/// JobMgr's bounded parameters, changed only through the timelock once sealed. What decides a
/// job's money is copied into the job when it is submitted (`JobTerms`, its dispute bond and
/// its requirements), so a later change never touches a job already paid for.
#[derive(Copy, Drop, Serde, PartialEq, starknet::Store)]
struct JobParams {
    /// Share of each fee paid to the CDC Pool's reward stream, in basis points (<= 1,000).
    protocol_fee_bps: u16,
    /// Least fee of any job.
    min_fee: u256,
    /// Seconds after a result during which the submitter (or a verifier) may dispute it.
    challenge_window: u64,
    /// Default seconds after which anyone may release an assignment without a result (a
    /// submitter may choose its own, within bounds).
    assignment_timeout: u64,
    /// Least dispute bond; a job's bond is the larger of this and `dispute_bond_bps` of its
    /// fee.
    min_dispute_bond: u256,
    /// Dispute bond as a share of the job's fee, in basis points (<= 10,000).
    dispute_bond_bps: u16,
    /// Furthest a deadline may lie ahead of submission, in seconds.
    max_job_duration: u64,
    /// Seconds the arbiter has to decide a dispute before anyone may settle it by default.
    arbitration_window: u64,
    /// Most of a worker's stake a dispute may slash, in basis points (<= 10,000).
    max_dispute_slash_bps: u16,
    /// Most a disputer may receive from a worker's slash, as a multiple of the job's fee
    /// (<= 100; the rest of the slash goes to the treasury).
    max_award_multiple: u16,
    /// Least fee for a job's outcome to move its worker's reputation (anti-farming).
    min_rated_fee: u256,
}

/// What a submitter chooses beyond the model's requirements (it can only narrow them). A
/// client that passes the requirements it read from the model pins them: a model owner who
/// lowers them before the submission lands cannot send the job to a weaker worker.
#[derive(Copy, Drop, Serde, PartialEq)]
struct JobOptions {
    /// Least GPU memory of the worker, in MB, if above the model's.
    min_vram_mb: u32,
    /// Capability flags required on top of the model's.
    extra_flags: u64,
    /// Least stake tier (0 to 3) of the worker's own stake, if above the model's.
    min_stake_tier: u8,
    /// Least reputation score (0 to 10,000) of the worker, if above the model's.
    min_score: u32,
    /// Seconds after assignment from which anyone may release the job without a result; 0
    /// takes the `assignment_timeout` parameter, else 1 min to 1 d.
    release_after: u64,
}

/// The terms a job was submitted under (one packed slot per job: low half challenge window
/// and release limit; high half arbitration window, then the three bps/multiple fields and
/// the rated flag in 16-bit lanes).
#[derive(Copy, Drop, Serde, PartialEq)]
struct JobTerms {
    challenge_window: u64,
    release_after: u64,
    arbitration_window: u64,
    protocol_fee_bps: u16,
    max_slash_bps: u16,
    max_award_multiple: u16,
    /// Whether its outcome moves the worker's reputation (fee >= the rated minimum).
    rated: bool,
}

impl JobTermsPacking of StorePacking<JobTerms, felt252> {
    fn pack(value: JobTerms) -> felt252 {
        let fee: u128 = value.protocol_fee_bps.into();
        let slash: u128 = value.max_slash_bps.into();
        let award: u128 = value.max_award_multiple.into();
        let rated: u128 = if value.rated {
            1
        } else {
            0
        };
        let lanes = fee + slash * 0x10000 + award * 0x100000000 + rated * 0x1000000000000;
        to_felt(
            join64(value.challenge_window, value.release_after),
            value.arbitration_window.into() + lanes * 0x10000000000000000
        )
    }

    fn unpack(value: felt252) -> JobTerms {
        let (low, high) = halves(value);
        let lanes = high / 0x10000000000000000;
        JobTerms {
            challenge_window: low64(low),
            release_after: high64(low),
            arbitration_window: low64(high),
            protocol_fee_bps: (lanes % 0x10000).try_into().unwrap(),
            max_slash_bps: ((lanes / 0x10000) % 0x10000).try_into().unwrap(),
            max_award_multiple: ((lanes / 0x100000000) % 0x10000).try_into().unwrap(),
            rated: (lanes / 0x1000000000000) % 2 == 1,
        }
    }
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

/// A job with its id, the terms and requirements fixed at its submission, and its dispute
/// (zero when none was opened).
#[derive(Copy, Drop, Serde, PartialEq)]
struct JobInfo {
    job_id: u64,
    job: Job,
    terms: JobTerms,
    requirements: Requirements,
    /// Bond a dispute of this job costs.
    dispute_bond: u256,
    dispute: Dispute,
    /// Inputs the job carries: 1, or a batch's count (its input and output hashes are then
    /// those of its manifests).
    items: u32,
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
