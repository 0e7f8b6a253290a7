//! The coordinator's REST API: routes, request and response bodies, the error body, request
//! signing, the worker's signed receipt, and the client.
//!
//! | Method | Path | Access | What |
//! |---|---|---|---|
//! | PUT | `/v1/blobs/{digest}` | signed | upload a blob (raw body) |
//! | GET | `/v1/blobs/{digest}` | signed if private | download a blob |
//! | GET | `/v1/blobs/{digest}/meta` | as the download | a blob's size and latest upload time |
//! | GET | `/v1/models` | public | list models |
//! | GET | `/v1/models/{model_id}` | public | one model |
//! | GET | `/v1/jobs` | public | list jobs by submitter, worker, state |
//! | GET | `/v1/jobs/{job_id}` | public | a job, its data, why it is unmatched |
//! | GET | `/v1/jobs/{job_id}/events` | public | SSE: the job's state changes |
//! | PUT | `/v1/jobs/{job_id}/output/{digest}` | signed (assigned worker) | upload the output |
//! | GET | `/v1/jobs/{job_id}/inputs` | signed (submitter, worker; arbiters while disputed) | a batch's inputs in one body |
//! | PUT | `/v1/jobs/{job_id}/outputs` | signed (assigned worker) | a batch's outputs in one body |
//! | GET | `/v1/jobs/{job_id}/outputs` | signed (submitter, worker; arbiters while disputed) | a batch's outputs in one body |
//! | PUT | `/v1/jobs/{job_id}/receipt` | signed (assigned worker) | upload the signed receipt |
//! | GET | `/v1/jobs/{job_id}/receipt` | public | the signed receipt |
//! | GET | `/v1/submitters/{address}/events` | public | SSE: a submitter's jobs |
//! | GET | `/v1/events` | public | SSE: every job (`?after=N`) |
//! | GET | `/v1/stats` | public | jobs by state, workers, recent flow and latency, accounting |
//! | GET | `/v1/workers` | public | list workers |
//! | GET | `/v1/workers/{address}` | public | one worker |
//! | POST | `/v1/workers/{address}/heartbeat` | signed (that worker) | heartbeat |
//! | GET | `/v1/workers/{address}/assignments` | signed (that worker) | long-poll assignments |
//!
//! [`routes::ROUTES`] is the same table in code.

pub mod auth;
pub mod client;
pub mod error;
pub mod items;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod receipt;
pub mod routes;
pub mod sse;
pub mod types;

pub use auth::{RequestAuth, RequestMessage, RequestSigner};
pub use client::{BlobDownload, ClientError, CoordinatorClient, ItemsDownload, JobEvents};
pub use error::{ErrorBody, ErrorCode};
pub use receipt::{Receipt, SignedReceipt};
pub use types::*;
