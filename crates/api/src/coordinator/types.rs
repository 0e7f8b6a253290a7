//! The coordinator's request and response bodies.
//!
//! They mirror what the chain says (JobMgr's jobs and models, the CDC Pool's workers, as the
//! coordinator's indexer mirrors them) plus what only the coordinator knows: which blobs it
//! holds, which workers are live, why a job is not matched yet. Felts (addresses, hashes that
//! are not SHA-256) and u256 amounts are `0x`-hex strings; SHA-256 digests are 64 hex digits;
//! ids, counts and unix timestamps (seconds) are JSON numbers.

use serde::{Deserialize, Serialize};
use serde_with::serde_as;

use crate::wire::{Digest, Felt, FeltHex, U256Hex, U256};

/// A stored blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BlobInfo {
    /// SHA-256 of the bytes.
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[0-9a-fA-F]{64}$"))]
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// When it was first uploaded (unix seconds).
    pub created_at: u64,
}

/// What a model asks of the worker that runs it (the on-chain `Requirements`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Requirements {
    /// Least GPU memory, in MB.
    pub min_vram_mb: u32,
    /// Capability flags the worker must all have (bitfield of the `FLAG_*` constants).
    pub required_flags: u64,
    /// Least stake tier (0 to 3) of the worker's own stake.
    pub min_stake_tier: u8,
    /// Least reputation score (0 to 10,000).
    pub min_score: u32,
}

/// A registered model.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Model {
    /// Its on-chain id.
    pub model_id: u64,
    /// Who registered it.
    #[serde_as(as = "FeltHex")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^0x[0-9a-fA-F]{1,64}$"))]
    pub owner: Felt,
    /// SHA-256 of the TorchScript file.
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[0-9a-fA-F]{64}$"))]
    pub model_hash: Digest,
    /// What it asks of a worker.
    pub requirements: Requirements,
    /// Least fee a job on it may pay (payment token base units).
    #[serde_as(as = "U256Hex")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^0x[0-9a-fA-F]{1,64}$"))]
    pub price: U256,
    /// Whether new jobs may use it.
    pub active: bool,
    /// Whether the coordinator holds the model file as uploaded by the model's owner (what
    /// workers download; jobs on it are matched only then).
    pub file_available: bool,
}

/// Where a job is in its life (JobMgr's `JobState`). Final: finalized, cancelled, expired,
/// refunded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Funded, waiting for a worker.
    Queued,
    /// A worker has it.
    Assigned,
    /// The worker committed a result; the challenge window runs.
    Completed,
    /// Contested; the arbiter decides.
    Disputed,
    /// The worker was paid.
    Finalized,
    /// Taken back by the submitter before assignment.
    Cancelled,
    /// Its deadline passed without a result; the submitter was refunded.
    Expired,
    /// The worker lost a dispute; the submitter was refunded.
    Refunded,
}

impl JobState {
    /// Whether the job can no longer change.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Finalized | Self::Cancelled | Self::Expired | Self::Refunded
        )
    }
}

/// A dispute opened on a job.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Dispute {
    /// Who opened it.
    #[serde_as(as = "FeltHex")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^0x[0-9a-fA-F]{1,64}$"))]
    pub disputer: Felt,
    /// Hash of the evidence the disputer submitted.
    #[serde_as(as = "FeltHex")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^0x[0-9a-fA-F]{1,64}$"))]
    pub evidence_hash: Felt,
    /// The bond it paid.
    #[serde_as(as = "U256Hex")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^0x[0-9a-fA-F]{1,64}$"))]
    pub bond: U256,
    /// When it was opened (unix seconds).
    pub opened_at: u64,
}

/// A job as the chain records it.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Job {
    /// Its on-chain id.
    pub job_id: u64,
    /// Who submitted and paid for it.
    #[serde_as(as = "FeltHex")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^0x[0-9a-fA-F]{1,64}$"))]
    pub submitter: Felt,
    /// The model it runs.
    pub model_id: u64,
    /// SHA-256 of its input.
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[0-9a-fA-F]{64}$"))]
    pub input_hash: Digest,
    /// The escrowed fee (payment token base units).
    #[serde_as(as = "U256Hex")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^0x[0-9a-fA-F]{1,64}$"))]
    pub fee: U256,
    /// No result is accepted after it (unix seconds).
    pub deadline: u64,
    /// Inputs it carries: 1, or a batch's count (JobMgr's `submit_batch`: its input and output
    /// hashes are then those of its manifests, and no worker runs batches yet).
    #[serde(default = "one_item")]
    pub items: u64,
    /// Its state.
    pub state: JobState,
    /// The assigned worker, once assigned.
    #[serde_as(as = "Option<FeltHex>")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub worker: Option<Felt>,
    /// When it was assigned (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_at: Option<u64>,
    /// When its result was committed (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<u64>,
    /// SHA-256 of the committed output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub output_hash: Option<Digest>,
    /// The requirements fixed at submission (the model's, narrowed by the submitter).
    pub requirements: Requirements,
    /// Its dispute, if one was opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispute: Option<Dispute>,
}

/// Which of a job's blobs the coordinator holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DataAvailability {
    /// The model file (hashing to the model's registered hash).
    pub model: bool,
    /// The input (hashing to the job's on-chain `input_hash`).
    pub input: bool,
    /// The output the worker uploaded.
    pub output: bool,
    /// The worker's signed receipt.
    pub receipt: bool,
    /// A batch's inputs its submitter uploaded (its manifest listing them uploaded too;
    /// absent for a single job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items_uploaded: Option<u64>,
    /// A batch's outputs that its worker's output manifest lists and the worker has not
    /// uploaded (absent for a single job, or before an output manifest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs_missing: Option<u64>,
}

/// A requirement of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Requirement {
    /// Least GPU memory.
    MinVramMb,
    /// Capability flags.
    RequiredFlags,
    /// Least stake tier.
    MinStakeTier,
    /// Least reputation score.
    MinScore,
}

/// A requirement that no live worker meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnmetRequirement {
    /// Which one.
    pub requirement: Requirement,
    /// What the job requires.
    pub required: u64,
    /// The closest a live worker comes: the most VRAM, the highest tier or score, or for
    /// flags the flags of the worker missing the fewest. Absent when no worker is live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_offered: Option<u64>,
}

/// Why a queued job has no worker yet, most blocking first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum UnmatchedReason {
    /// The input blob has not been uploaded.
    InputNotUploaded,
    /// The model file has not been uploaded.
    ModelFileNotUploaded,
    /// The model was deactivated.
    ModelInactive,
    /// No worker has sent a heartbeat recently.
    NoLiveWorkers,
    /// No live worker meets all the requirements. `unmet` lists each requirement that no live
    /// worker meets; it is empty when each is met by some worker but none meets all.
    NoEligibleWorker {
        /// The requirements no live worker meets.
        unmet: Vec<UnmetRequirement>,
    },
    /// Eligible workers are live but have no spare capacity.
    EligibleWorkersBusy {
        /// How many are eligible (and admit the job's data under their declared limits).
        eligible: u32,
    },
    /// It will be considered at the matcher's next tick.
    AwaitingMatcher,
    /// It is a batch (JobMgr's `submit_batch`: many inputs under one manifest) whose manifest
    /// its submitter has not uploaded.
    ManifestNotUploaded,
    /// Its uploaded manifest is not `items` SHA-256 digests (32 bytes each): no worker can run
    /// it. It stays queued until its submitter cancels it or its deadline passes (a refund).
    ManifestInvalid {
        /// The manifest's size in bytes.
        bytes: u64,
        /// The batch's inputs on chain.
        items: u64,
    },
    /// Inputs its manifest lists that its submitter has not uploaded yet.
    BatchInputsMissing {
        /// How many.
        missing: u64,
    },
    /// No eligible live worker runs batches of this many inputs (each declares the most in
    /// its heartbeats; an agent that declares none runs single jobs only).
    NoBatchWorker {
        /// Its inputs.
        items: u64,
    },
    /// Its deadline leaves less than the job's release window: no worker may be assigned it
    /// (the chain refuses), and it will expire with a refund.
    DeadlineTooClose,
    /// As many workers as the coordinator allows gave it back (failed or refused it): it is
    /// not offered again, and it expires with a refund unless its submitter cancels it first.
    GivenBack {
        /// How many workers gave it back.
        workers: u32,
    },
    /// Its input or model file is larger than any eligible live worker accepts (each declares
    /// its limits in its heartbeats).
    TooLarge {
        /// The input's size in bytes.
        input_bytes: u64,
        /// The model file's size in bytes.
        model_bytes: u64,
        /// How many eligible live workers there are (all of which refuse the size).
        eligible: u32,
    },
    /// Clients only: a reason this client does not know (a newer coordinator's), whose
    /// `Unmatched::message` says it in words. A coordinator never sends `unknown` (the OpenAPI
    /// document lists it because the schema is derived from this type).
    #[serde(other)]
    Unknown,
}

/// A job's unmatched reason with its human explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Unmatched {
    /// The reason, for programs.
    pub reason: UnmatchedReason,
    /// The reason, for people.
    pub message: String,
}

/// `GET` of one job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobDetails {
    /// The job as the chain records it.
    pub job: Job,
    /// Which of its blobs the coordinator holds.
    pub data: DataAvailability,
    /// Why it is not matched yet (only for a queued job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmatched: Option<Unmatched>,
    /// The last block the coordinator's index includes.
    pub indexed_block: u64,
}

/// One page of a list; pass `next_cursor` as `cursor` for the next one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    /// The items, in the list's order.
    pub items: Vec<T>,
    /// Opaque cursor of the next page; absent on the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Query of `GET /v1/models`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct ListModels {
    /// Only active (or only inactive) models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// From this cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// At most this many (the server caps it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// Query of `GET /v1/jobs`, newest first.
#[serde_as]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct ListJobs {
    /// Only this submitter's jobs.
    #[serde_as(as = "Option<FeltHex>")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<String>))]
    pub submitter: Option<Felt>,
    /// Only jobs assigned to this worker.
    #[serde_as(as = "Option<FeltHex>")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<String>))]
    pub worker: Option<Felt>,
    /// Only jobs in this state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<JobState>,
    /// From this cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// At most this many (the server caps it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// A worker's state (the CDC Pool's `WorkerState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Never registered.
    Unregistered,
    /// Registered, staked enough: may be assigned.
    Active,
    /// Deactivated, or below its minimum stake.
    Inactive,
    /// Below its minimum stake while an unstake is pending.
    Exiting,
    /// Banned.
    Banned,
}

/// What a worker declared it runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Capabilities {
    /// The GPU model (the on-chain short string, decoded), or `CPU`.
    pub gpu_model: String,
    /// GPU memory, in MB (0 on CPU).
    pub vram_mb: u32,
    /// CUDA compute capability times ten (90 for 9.0), 0 on CPU.
    pub compute_capability: u32,
    /// Capability flags (bitfield of the `FLAG_*` constants).
    pub flags: u64,
}

/// A worker's verified track record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Reputation {
    /// Jobs it completed and was paid for.
    pub completed: u32,
    /// Jobs it failed (dispute lost, or expired while assigned).
    pub failed: u32,
    /// Assignments it let time out.
    pub missed: u32,
    /// 0 to 10,000.
    pub score: u32,
    /// Moving average of assignment-to-result seconds.
    pub avg_latency_secs: u64,
    /// When its last outcome was recorded (unix seconds; 0 if none).
    pub last_outcome_at: u64,
}

/// What the coordinator knows of a worker from its heartbeats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Liveness {
    /// Its last heartbeat to the coordinator (unix seconds).
    pub last_seen: u64,
    /// Whether that heartbeat is recent enough for it to be matched.
    pub live: bool,
    /// Jobs it is running.
    pub running_jobs: u32,
    /// Jobs it can run at once.
    pub capacity: u32,
    /// Models in its local store.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub models: Vec<Digest>,
}

/// A worker.
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Worker {
    /// Its account address.
    #[serde_as(as = "FeltHex")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^0x[0-9a-fA-F]{1,64}$"))]
    pub address: Felt,
    /// Its on-chain state.
    pub state: WorkerState,
    /// What it declared it runs on.
    pub capabilities: Capabilities,
    /// Hash of its hardware attestation, as declared.
    #[serde_as(as = "FeltHex")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^0x[0-9a-fA-F]{1,64}$"))]
    pub attestation_hash: Felt,
    /// Its own stake (payment token base units).
    #[serde_as(as = "U256Hex")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^0x[0-9a-fA-F]{1,64}$"))]
    pub stake: U256,
    /// Stake delegated to it.
    #[serde_as(as = "U256Hex")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^0x[0-9a-fA-F]{1,64}$"))]
    pub delegated: U256,
    /// Hardware tier (0 to 3) from its VRAM.
    pub hardware_tier: u8,
    /// Highest tier (0 to 3) whose minimum its own stake meets; absent if none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stake_tier: Option<u8>,
    /// Its track record.
    pub reputation: Reputation,
    /// When it registered (unix seconds).
    pub registered_at: u64,
    /// Its last on-chain heartbeat (unix seconds).
    pub chain_heartbeat_at: u64,
    /// Its heartbeats to the coordinator; absent if it never sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness: Option<Liveness>,
}

/// Query of `GET /v1/workers`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct ListWorkers {
    /// Only workers in this state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<WorkerState>,
    /// Only live (or only not live) workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<bool>,
    /// From this cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// At most this many (the server caps it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// Query of `GET /v1/events`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct EventsQuery {
    /// Only events after this sequence (a `Last-Event-ID` header takes precedence); without
    /// either, from now on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
}

/// Query of `GET /v1/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct StatsQuery {
    /// Minutes of history in `recent` (1 to 60; default 15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minutes: Option<u32>,
}

/// One minute of the network's flow (by when the coordinator indexed each change).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MinuteStats {
    /// The minute's start (unix seconds).
    pub minute: u64,
    /// Jobs submitted in it.
    pub submitted: u32,
    /// Jobs assigned in it.
    pub assigned: u32,
    /// Results committed in it.
    pub completed: u32,
    /// Jobs finalized in it.
    pub finalized: u32,
    /// Median seconds from submission to assignment of the jobs assigned in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_wait_p50_secs: Option<f64>,
    /// Longest such wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_wait_max_secs: Option<f64>,
    /// Median seconds from submission to finalization of the jobs finalized in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finalize_p50_secs: Option<f64>,
}

/// The contracts' accounting, read from the chain (payment-token base units).
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Accounting {
    /// JobMgr: fees escrowed for jobs not yet final.
    #[serde_as(as = "U256Hex")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub escrow: U256,
    /// JobMgr: open dispute bonds.
    #[serde_as(as = "U256Hex")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub dispute_bonds: U256,
    /// CDC Pool: workers' own active stake.
    #[serde_as(as = "U256Hex")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub stakes: U256,
    /// CDC Pool: active delegations.
    #[serde_as(as = "U256Hex")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub delegations: U256,
    /// CDC Pool: rewards funded and not yet claimed.
    #[serde_as(as = "U256Hex")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub rewards: U256,
    /// Paymaster: sponsors' deposits (absent when the deployment has no Paymaster).
    #[serde_as(as = "Option<U256Hex>")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub sponsor_deposits: Option<U256>,
}

/// `GET /v1/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NetworkStats {
    /// How many jobs are in each state (states with none are absent).
    pub jobs_by_state: std::collections::BTreeMap<String, u64>,
    /// Workers the pool knows.
    pub workers: u64,
    /// Workers with a recent heartbeat.
    pub live_workers: u64,
    /// The last minutes, oldest first.
    pub recent: Vec<MinuteStats>,
    /// The contracts' totals; absent when the chain could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounting: Option<Accounting>,
    /// The newest event's sequence (stream `GET /v1/events?after=` it for what follows).
    pub last_sequence: u64,
    /// The last block the index includes.
    pub indexed_block: u64,
    /// The coordinator's clock (unix seconds).
    pub server_time: u64,
}

/// Most models a heartbeat may list (a worker holding more lists its most recently used): each
/// is 64 characters of every listing of the worker, and a registration needs no stake.
pub const MAX_HEARTBEAT_MODELS: usize = 100;

/// A worker's heartbeat (body of `POST /v1/workers/{address}/heartbeat`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Heartbeat {
    /// Jobs it is running.
    pub running_jobs: u32,
    /// Jobs it can run at once.
    pub capacity: u32,
    /// Models in its local store, at most [`MAX_HEARTBEAT_MODELS`] (the matcher prefers
    /// workers that already hold a job's model).
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub models: Vec<Digest>,
    /// The agent's version, for the operator's logs.
    pub agent_version: String,
    /// The largest job input it accepts, in bytes (absent: no limit declared). The matcher
    /// offers it no job whose input is larger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_input_bytes: Option<u64>,
    /// The largest model file it accepts, in bytes (absent: no limit declared). The matcher
    /// offers it no job whose model file is larger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_model_bytes: Option<u64>,
    /// The most inputs of a batch it runs, 1 to [`MAX_BATCH_ITEMS`] (absent: it runs single
    /// jobs only). The matcher offers it no larger batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_items: Option<u32>,
}

/// The most inputs of a batch (JobMgr's bound).
pub const MAX_BATCH_ITEMS: u32 = 1000;

/// The coordinator's answer to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeartbeatAck {
    /// The coordinator's clock (unix seconds), so a worker can see its own skew.
    pub server_time: u64,
    /// Send the next heartbeat within this many seconds.
    pub interval_secs: u64,
    /// Without a heartbeat for this long, the worker is no longer live and its assignments
    /// may be released.
    pub stale_after_secs: u64,
}

/// Query of the assignment long-poll.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct PollAssignments {
    /// Wait up to this many seconds for an assignment (the server caps it); 0 or absent
    /// answers at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_secs: Option<u32>,
}

/// A job assigned to the polling worker. The worker checks it against the chain before
/// spending anything on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Assignment {
    /// The job.
    pub job_id: u64,
    /// Its model.
    pub model_id: u64,
    /// SHA-256 of the model file (download it with this digest).
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[0-9a-fA-F]{64}$"))]
    pub model_hash: Digest,
    /// SHA-256 of the input (download it with this digest).
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[0-9a-fA-F]{64}$"))]
    pub input_hash: Digest,
    /// No result is accepted after it (unix seconds).
    pub deadline: u64,
    /// When it was assigned on-chain (unix seconds).
    pub assigned_at: u64,
    /// From then on anyone may release the job if no result was committed (unix seconds).
    pub release_at: u64,
    /// Its inputs: 1, or a batch's count, whose `input_hash` is then its manifest's (the
    /// inputs' SHA-256 digests, 32 bytes each, in order). Absent from an older coordinator: 1.
    #[serde(default = "one_item")]
    pub items: u64,
}

/// Answer of the assignment long-poll: the worker's assignments without a committed result
/// (empty when the wait ran out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Assignments {
    /// The assignments, oldest first.
    pub assignments: Vec<Assignment>,
}

/// Body of `POST /v1/jobs/{job_id}/release`: why the assigned worker gives the job back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReleaseRequest {
    /// Why (at most 500 characters), e.g. "the model file does not hash to its model_hash".
    /// A worker whose process died during the job's pass may report it as `job_failed` also
    /// after the job was released for its silence (it is no longer assigned to it), while the
    /// job is queued or assigned to another worker.
    pub reason: String,
    /// Whose failure it is (`job_failed` when absent).
    #[serde(default)]
    pub kind: GiveBack,
}

/// Whose failure a worker's give-back reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum GiveBack {
    /// The job failed on this worker: its input or model, or a pass that wedged or crashed
    /// the worker. Counts toward the coordinator's limit of give-backs per job, past which
    /// the job is offered to no one.
    #[default]
    JobFailed,
    /// This worker cannot run it (its own limits, disk or journal, or the job's data not
    /// served as registered): another worker may. Does not count against the job.
    WorkerUnable,
}

/// Answer to a release request: the give-back is recorded, and while the job is still assigned
/// to the worker the coordinator releases it on chain at its next tick (a miss on the worker's
/// record, as any release).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReleaseAccepted {
    /// The job.
    pub job_id: u64,
}

/// Answer to an output upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutputAccepted {
    /// The job.
    pub job_id: u64,
    /// SHA-256 of the stored output (commit this on-chain).
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[0-9a-fA-F]{64}$"))]
    pub output_hash: Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// Query of `GET /v1/jobs/{job_id}/inputs` and `GET /v1/jobs/{job_id}/outputs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct ItemsQuery {
    /// From this position of the manifest on (0 by default): where a transfer that broke off
    /// resumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u64>,
}

/// Answer to a batch's outputs upload (`PUT /v1/jobs/{job_id}/outputs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutputsAccepted {
    /// The batch.
    pub job_id: u64,
    /// SHA-256 of its output manifest, which lists the outputs stored.
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[0-9a-fA-F]{64}$"))]
    pub output_hash: Digest,
    /// How many outputs were stored (each checked against the manifest).
    pub items: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// The SSE event name of [`JobEvent`]s.
pub const JOB_EVENT: &str = "job";

/// A job's state change, streamed as server-sent events named [`JOB_EVENT`] whose `id` is
/// `sequence` (send it back as `Last-Event-ID` to resume after it).
#[serde_as]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobEvent {
    /// Position in the coordinator's event log (increasing).
    pub sequence: u64,
    /// The job.
    pub job_id: u64,
    /// Its submitter.
    #[serde_as(as = "FeltHex")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^0x[0-9a-fA-F]{1,64}$"))]
    pub submitter: Felt,
    /// Its new state.
    pub state: JobState,
    /// Its worker, once assigned.
    #[serde_as(as = "Option<FeltHex>")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub worker: Option<Felt>,
    /// Its output hash, once committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub output_hash: Option<Digest>,
    /// The block of the change.
    pub block_number: u64,
    /// The transaction of the change.
    #[serde_as(as = "FeltHex")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^0x[0-9a-fA-F]{1,64}$"))]
    pub transaction_hash: Felt,
}

/// A job's inputs when a document leaves them out: one.
fn one_item() -> u64 {
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job {
            job_id: 7,
            submitter: Felt::from(0x5a6fu32),
            model_id: 2,
            input_hash: Digest::of(b"input"),
            fee: U256::from(10u128.pow(18)),
            deadline: 1_900_000_000,
            items: 1,
            state: JobState::Queued,
            worker: None,
            assigned_at: None,
            completed_at: None,
            output_hash: None,
            requirements: Requirements {
                min_vram_mb: 16_000,
                required_flags: 1,
                min_stake_tier: 1,
                min_score: 0,
            },
            dispute: None,
        }
    }

    #[test]
    fn job_details_have_the_documented_json_shape() {
        let details = JobDetails {
            job: job(),
            data: DataAvailability {
                model: true,
                input: true,
                output: false,
                receipt: false,
                items_uploaded: None,
                outputs_missing: None,
            },
            unmatched: Some(Unmatched {
                reason: UnmatchedReason::NoEligibleWorker {
                    unmet: vec![UnmetRequirement {
                        requirement: Requirement::MinVramMb,
                        required: 16_000,
                        best_offered: Some(8_000),
                    }],
                },
                message: "no live worker has 16000 MB of VRAM (most: 8000)".into(),
            }),
            indexed_block: 12,
        };
        let json = serde_json::to_value(&details).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "job": {
                    "job_id": 7,
                    "submitter": "0x5a6f",
                    "model_id": 2,
                    "input_hash": Digest::of(b"input").to_string(),
                    "fee": "0xde0b6b3a7640000",
                    "deadline": 1_900_000_000u64,
                    "items": 1,
                    "state": "queued",
                    "requirements": {
                        "min_vram_mb": 16_000, "required_flags": 1,
                        "min_stake_tier": 1, "min_score": 0
                    }
                },
                "data": {"model": true, "input": true, "output": false, "receipt": false},
                "unmatched": {
                    "reason": {
                        "code": "no_eligible_worker",
                        "unmet": [{"requirement": "min_vram_mb", "required": 16_000, "best_offered": 8_000}]
                    },
                    "message": "no live worker has 16000 MB of VRAM (most: 8000)"
                },
                "indexed_block": 12
            })
        );
        assert_eq!(serde_json::from_value::<JobDetails>(json).unwrap(), details);
    }

    #[test]
    fn an_assigned_job_carries_its_worker_and_unit_reasons_are_bare_codes() {
        let mut assigned = job();
        assigned.state = JobState::Completed;
        assigned.worker = Some(Felt::from(0xbeefu32));
        assigned.assigned_at = Some(1_800_000_000);
        assigned.output_hash = Some(Digest::of(b"out"));
        let json = serde_json::to_value(&assigned).unwrap();
        assert_eq!(json["worker"], "0xbeef");
        assert_eq!(json["output_hash"], Digest::of(b"out").to_string());
        assert_eq!(serde_json::from_value::<Job>(json).unwrap(), assigned);
        assert_eq!(
            serde_json::to_value(UnmatchedReason::InputNotUploaded).unwrap(),
            serde_json::json!({"code": "input_not_uploaded"})
        );
        assert!(JobState::Refunded.is_final() && !JobState::Disputed.is_final());
    }

    #[test]
    fn a_reason_from_a_newer_coordinator_decodes_as_unknown_with_its_message() {
        let json = serde_json::json!({
            "reason": {"code": "some_future_reason", "limit": 3, "detail": {"a": [1, 2]}},
            "message": "what the newer coordinator says"
        });
        let unmatched = serde_json::from_value::<Unmatched>(json).unwrap();
        assert_eq!(unmatched.reason, UnmatchedReason::Unknown);
        assert_eq!(unmatched.message, "what the newer coordinator says");
        // A known code with a malformed body is still an error, not Unknown.
        assert!(serde_json::from_value::<UnmatchedReason>(
            serde_json::json!({"code": "given_back", "workers": "three"})
        )
        .is_err());
    }

    #[test]
    fn list_queries_encode_as_url_queries_both_ways() {
        let query = ListJobs {
            submitter: Some(Felt::from(0xabcu32)),
            state: Some(JobState::Assigned),
            limit: Some(50),
            ..ListJobs::default()
        };
        let encoded = serde_urlencoded::to_string(&query).unwrap();
        assert_eq!(encoded, "submitter=0xabc&state=assigned&limit=50");
        assert_eq!(
            serde_urlencoded::from_str::<ListJobs>(&encoded).unwrap(),
            query
        );
        assert_eq!(
            serde_urlencoded::to_string(ListJobs::default()).unwrap(),
            ""
        );
    }
}
