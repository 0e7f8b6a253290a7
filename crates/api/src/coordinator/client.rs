//! The coordinator's Rust SDK: one method per endpoint, typed answers, errors carrying the
//! coordinator's error body.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ciro_api::coordinator::ClientError> {
//! use ciro_api::coordinator::{CoordinatorClient, RequestSigner};
//! use ciro_api::wire::Felt;
//! use starknet::signers::SigningKey;
//!
//! let key = SigningKey::from_secret_scalar(Felt::from(0x1234u32));
//! let (account, chain_id, job_mgr) = (Felt::from(0xacc0u32), Felt::from(0x5345u32), Felt::TWO);
//! let signer = RequestSigner::new(key, account, chain_id, job_mgr);
//! let client = CoordinatorClient::new("http://127.0.0.1:8080")?.with_signer(signer);
//! let input = client.upload_blob(b"input tensors".to_vec()).await?;
//! println!("uploaded {}", input.digest);
//! # Ok(()) }
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::{Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use url::Url;

use super::auth::{origin_of, RequestMessage, RequestSigner, SignError};
use super::error::{ErrorBody, ErrorCode};
use super::receipt::SignedReceipt;
use super::routes::{self, Access, HttpMethod};
use super::sse::SseParser;
use super::types::{
    Assignments, BlobInfo, GiveBack, Heartbeat, HeartbeatAck, ItemsQuery, Job, JobDetails,
    JobEvent, ListJobs, ListModels, ListWorkers, Model, NetworkStats, OutputAccepted,
    OutputsAccepted, Page, PollAssignments, ReleaseAccepted, ReleaseRequest, StatsQuery, Worker,
    JOB_EVENT,
};
use crate::wire::{Digest, Felt};

/// A failed call to the coordinator. Each variant says whether retrying can help; see also
/// [`ClientError::is_retryable`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The coordinator refused the request with its error body. Retry only if
    /// `body.code.is_retryable()`.
    #[error("{method} {url}: coordinator answered {status}: {body}")]
    Api {
        /// The request's method.
        method: &'static str,
        /// The request's URL.
        url: String,
        /// The HTTP status.
        status: StatusCode,
        /// The error body.
        body: ErrorBody,
    },
    /// A non-2xx answer without the API's error body (e.g. from a proxy). Retry on 5xx.
    #[error("{method} {url}: answered {status} without an API error body: {body}")]
    Http {
        /// The request's method.
        method: &'static str,
        /// The request's URL.
        url: String,
        /// The HTTP status.
        status: StatusCode,
        /// The start of the body.
        body: String,
    },
    /// The request could not be sent or its answer not read (connection, timeout). Retryable.
    #[error("{method} {url}: request failed")]
    Transport {
        /// The request's method.
        method: &'static str,
        /// The request's URL.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The answer is not the expected JSON: client and server disagree on the API. Not
    /// retryable.
    #[error("{method} {url}: the answer is not the expected JSON")]
    Decode {
        /// The request's method.
        method: &'static str,
        /// The request's URL.
        url: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A downloaded blob does not hash to its digest (discard what was received). Retryable.
    #[error("{url}: downloaded bytes hash to {actual}, not {expected}")]
    DigestMismatch {
        /// The blob's URL.
        url: String,
        /// The digest asked for.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// A download passed the caller's limit (the coordinator sends more than the blob may hold).
    /// Not retryable.
    #[error("{url}: more than the {limit} bytes accepted")]
    TooLarge {
        /// The blob's URL.
        url: String,
        /// The limit, in bytes.
        limit: u64,
    },
    /// The coordinator acknowledged an upload with another digest or size than the bytes sent
    /// (a faulty or lying server, or someone between): its answer must not be used, e.g. as a
    /// job's on-chain input hash. Not retryable.
    #[error(
        "the coordinator acknowledged the upload as {reported} ({reported_size} bytes), but the \
         bytes sent are {expected} ({size} bytes)"
    )]
    UploadMisreported {
        /// The digest of the bytes sent.
        expected: Digest,
        /// Their size.
        size: u64,
        /// The digest the coordinator answered with.
        reported: Digest,
        /// The size it answered with.
        reported_size: u64,
    },
    /// A transfer stalled: nothing received for [`DOWNLOAD_STALL`], no answer to a request
    /// within it (plus the body's time at [`MIN_TRANSFER_RATE`]), or a download slower on
    /// average than [`MIN_TRANSFER_RATE`] once past its first [`DOWNLOAD_STALL`]. Retryable.
    #[error("{url}: the transfer stalled ({reason})")]
    Stalled {
        /// The URL.
        url: String,
        /// How.
        reason: String,
    },
    /// An items body ([`super::items`]) ended inside an item, or is not one. Retryable (from
    /// the position of the first item not received).
    #[error("{url}: {reason}")]
    Truncated {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// An event stream is malformed. Reconnecting (from the last event id) may help.
    #[error("{url}: malformed event stream: {reason}")]
    EventStream {
        /// The stream's URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The endpoint needs a signed request and the client has no signer. Not retryable.
    #[error("{0} needs a signed request: give the client a signer")]
    SignerRequired(&'static str),
    /// Signing the request failed. Not retryable.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// The base URL, or the base URL with a path, is not a usable URL. Not retryable.
    #[error("invalid URL {url:?}: {reason}")]
    Url {
        /// The text.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A request body or query could not be encoded. Not retryable.
    #[error("encoding the {what} failed: {reason}")]
    Encode {
        /// The body or the query.
        what: &'static str,
        /// The cause.
        reason: String,
    },
    /// The HTTP client could not be built (TLS backend). Not retryable.
    #[error("building the HTTP client failed")]
    Build(#[source] reqwest::Error),
}

impl ClientError {
    /// The coordinator's error code, when it answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Api { body, .. } => Some(body.code),
            _ => None,
        }
    }

    /// Whether sending the same call again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Api { body, .. } => body.code.is_retryable(),
            Self::Http { status, .. } => status.is_server_error(),
            Self::Transport { .. }
            | Self::DigestMismatch { .. }
            | Self::EventStream { .. }
            | Self::Truncated { .. }
            | Self::Stalled { .. } => true,
            Self::TooLarge { .. }
            | Self::UploadMisreported { .. }
            | Self::Decode { .. }
            | Self::SignerRequired(_)
            | Self::Sign(_)
            | Self::Url { .. }
            | Self::Encode { .. }
            | Self::Build(_) => false,
        }
    }
}

/// A request body.
enum Body {
    Empty,
    Json(Vec<u8>),
    /// Raw bytes and their SHA-256 (already computed for the path: a model file is hashed once).
    Raw(Bytes, Digest),
    /// A streamed body, its SHA-256 and its length (sent as `Content-Length`).
    Stream(reqwest::Body, Digest, u64),
}

impl Body {
    /// Its length in bytes.
    fn len(&self) -> u64 {
        match self {
            Self::Empty => 0,
            Self::Json(bytes) => bytes.len() as u64,
            Self::Raw(bytes, _) => bytes.len() as u64,
            Self::Stream(_, _, len) => *len,
        }
    }

    fn sha256(&self) -> Digest {
        match self {
            Self::Empty => Digest::of(&[]),
            Self::Json(bytes) => Digest::of(bytes),
            Self::Raw(_, digest) | Self::Stream(_, digest, _) => *digest,
        }
    }
}

/// How long a call may take.
#[derive(Clone, Copy)]
enum Deadline {
    /// The client's request timeout.
    Default,
    /// The request timeout plus this much (a long-poll).
    Extra(Duration),
    /// None (blob transfers, event streams): only the connect timeout applies.
    Unbounded,
}

/// One call: the route template it fills (to look up its access rule) and the filled path.
struct Call {
    method: HttpMethod,
    template: &'static str,
    path: String,
    query: String,
    body: Body,
    deadline: Deadline,
    headers: HeaderMap,
}

impl Call {
    fn new(method: HttpMethod, template: &'static str, path: String) -> Self {
        Self {
            method,
            template,
            path,
            query: String::new(),
            body: Body::Empty,
            deadline: Deadline::Default,
            headers: HeaderMap::new(),
        }
    }

    fn query<Q: Serialize>(mut self, query: &Q) -> Result<Self, ClientError> {
        self.query = serde_urlencoded::to_string(query).map_err(|e| ClientError::Encode {
            what: "query",
            reason: e.to_string(),
        })?;
        Ok(self)
    }

    fn json<B: Serialize>(mut self, body: &B) -> Result<Self, ClientError> {
        let bytes = serde_json::to_vec(body).map_err(|e| ClientError::Encode {
            what: "body",
            reason: e.to_string(),
        })?;
        self.body = Body::Json(bytes);
        Ok(self)
    }

    fn raw(mut self, bytes: Bytes, digest: Digest) -> Self {
        self.body = Body::Raw(bytes, digest);
        self
    }

    fn deadline(mut self, deadline: Deadline) -> Self {
        self.deadline = deadline;
        self
    }
}

/// The coordinator's client.
#[derive(Debug, Clone)]
pub struct CoordinatorClient {
    http: reqwest::Client,
    /// The base URL without a trailing slash; route paths are appended to it.
    base: String,
    signer: Option<RequestSigner>,
    request_timeout: Duration,
    /// What a blob transfer must keep up (see [`ClientError::Stalled`]).
    pace: Pace,
}

/// The least a transfer keeps up: an answer or a byte within `stall`, and on average
/// `min_rate` bytes a second once past its first `stall`.
#[derive(Debug, Clone, Copy)]
struct Pace {
    stall: Duration,
    min_rate: u64,
}

impl Pace {
    /// How long a request sending `body` bytes may wait for its answer's headers.
    fn answer_within(&self, body: u64) -> Duration {
        self.stall + Duration::from_secs(body / self.min_rate.max(1))
    }
}

impl CoordinatorClient {
    /// A client of the coordinator at `base_url` (its root, e.g. `http://127.0.0.1:8080`; a
    /// path prefix is kept, and signed as part of the path), without a signer. Redirects are
    /// not followed: a signed request's headers would go to wherever the redirect points,
    /// still valid at the origin they were signed for.
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(ClientError::Build)?;
        Self::with_http_client(base_url, http)
    }

    /// As [`CoordinatorClient::new`], with a given HTTP client (its timeouts apply too; give
    /// it `redirect::Policy::none()`, or a redirect carries signed requests elsewhere).
    pub fn with_http_client(base_url: &str, http: reqwest::Client) -> Result<Self, ClientError> {
        let invalid = |reason: String| ClientError::Url {
            url: base_url.to_owned(),
            reason,
        };
        let url = Url::parse(base_url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("not an http or https URL".into()));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("a base URL has no query or fragment".into()));
        }
        Ok(Self {
            http,
            base: url.as_str().trim_end_matches('/').to_owned(),
            signer: None,
            request_timeout: Duration::from_secs(30),
            pace: Pace {
                stall: DOWNLOAD_STALL,
                min_rate: MIN_TRANSFER_RATE,
            },
        })
    }

    /// Sets what a blob transfer must keep up: an answer or a byte within `stall`, and on
    /// average `min_rate` bytes a second once past its first `stall` (defaults
    /// [`DOWNLOAD_STALL`], [`MIN_TRANSFER_RATE`]).
    pub fn with_transfer_pace(mut self, stall: Duration, min_rate: u64) -> Self {
        self.pace = Pace {
            stall,
            min_rate: min_rate.max(1),
        };
        self
    }

    /// Signs requests with `signer` (required for writes, worker endpoints and private reads).
    pub fn with_signer(mut self, signer: RequestSigner) -> Self {
        self.signer = Some(signer);
        self
    }

    /// The time limit of each call, except blob transfers and event streams, which have none,
    /// and long-polls, which get their wait on top (30 s by default).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The signer, if any.
    pub fn signer(&self) -> Option<&RequestSigner> {
        self.signer.as_ref()
    }

    /// Uploads a blob (an input, a model file, an attestation report); its digest is
    /// computed here. Uploading bytes the coordinator already holds succeeds. The answer is
    /// checked against the bytes sent ([`ClientError::UploadMisreported`]): callers put its
    /// digest on chain.
    pub async fn upload_blob(&self, bytes: impl Into<Bytes>) -> Result<BlobInfo, ClientError> {
        let bytes = bytes.into();
        let digest = Digest::of(&bytes);
        let size = bytes.len() as u64;
        let call = Call::new(HttpMethod::Put, routes::BLOB, routes::blob(&digest))
            .raw(bytes, digest)
            .deadline(Deadline::Unbounded);
        let info: BlobInfo = self.json_of(call).await?;
        if info.digest != digest || info.size != size {
            return Err(ClientError::UploadMisreported {
                expected: digest,
                size,
                reported: info.digest,
                reported_size: info.size,
            });
        }
        Ok(info)
    }

    /// Downloads a whole blob, checked against its digest. Signed when the client has a
    /// signer (inputs and outputs are private; model files are public).
    pub async fn download_blob(&self, digest: &Digest) -> Result<Bytes, ClientError> {
        self.download_blob_within(digest, u64::MAX).await
    }

    /// [`CoordinatorClient::download_blob`], refused with [`ClientError::TooLarge`] as soon as
    /// the coordinator announces or sends more than `limit` bytes (nothing past it is kept).
    pub async fn download_blob_within(
        &self,
        digest: &Digest,
        limit: u64,
    ) -> Result<Bytes, ClientError> {
        let mut download = self.open_blob(digest).await?.within(limit)?;
        // The announced length only sizes the first allocation, up to a bound: a server cannot
        // make the client reserve memory it never sends.
        let announced = download.content_length().unwrap_or(0);
        let mut bytes = Vec::with_capacity(announced.min(PREALLOCATE_MAX) as usize);
        while let Some(chunk) = download.chunk().await? {
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes.into())
    }

    /// Starts downloading a blob, to read chunk by chunk (a large model file, with progress).
    pub async fn open_blob(&self, digest: &Digest) -> Result<BlobDownload, ClientError> {
        let call = Call::new(HttpMethod::Get, routes::BLOB, routes::blob(digest))
            .deadline(Deadline::Unbounded);
        let (url, response) = self.send(call).await?;
        Ok(BlobDownload {
            url,
            response,
            expected: *digest,
            hasher: Sha256::new(),
            limit: u64::MAX,
            received: 0,
            pace: self.pace,
            started: tokio::time::Instant::now(),
        })
    }

    /// Starts downloading batch `job_id`'s inputs from position `from` on, in one signed
    /// request (its submitter, its worker, arbiters while it is disputed): read each with
    /// [`ItemsDownload::next_item`] and check it against the input manifest.
    pub async fn open_batch_inputs(
        &self,
        job_id: u64,
        from: u64,
    ) -> Result<ItemsDownload, ClientError> {
        self.open_items(routes::JOB_INPUTS, routes::job_inputs(job_id), from)
            .await
    }

    /// As [`Self::open_batch_inputs`], for the outputs its worker uploaded (checked against the
    /// output manifest).
    pub async fn open_batch_outputs(
        &self,
        job_id: u64,
        from: u64,
    ) -> Result<ItemsDownload, ClientError> {
        self.open_items(routes::JOB_OUTPUTS, routes::job_outputs(job_id), from)
            .await
    }

    async fn open_items(
        &self,
        template: &'static str,
        path: String,
        from: u64,
    ) -> Result<ItemsDownload, ClientError> {
        let call = Call::new(HttpMethod::Get, template, path)
            .query(&ItemsQuery {
                from: (from > 0).then_some(from),
            })?
            .deadline(Deadline::Unbounded);
        let (url, response) = self.send(call).await?;
        Ok(ItemsDownload {
            url,
            response,
            buffer: bytes::BytesMut::new(),
            ended: false,
            received: 0,
            pace: self.pace,
            waited: Duration::ZERO,
        })
    }

    /// Uploads batch `job_id`'s outputs in one signed request, as its assigned worker, once
    /// its output manifest is uploaded ([`Self::upload_output`]): `body` is every output in
    /// the manifest's order, framed as [`super::items`] says, `sha256` and `len` its SHA-256
    /// and length (computed by the caller, who streams it from wherever the outputs are).
    pub async fn upload_batch_outputs<S>(
        &self,
        job_id: u64,
        body: S,
        sha256: Digest,
        len: u64,
    ) -> Result<OutputsAccepted, ClientError>
    where
        S: futures_util::TryStream + Send + 'static,
        Bytes: From<S::Ok>,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let body = reqwest::Body::wrap_stream(body);
        let mut call = Call::new(
            HttpMethod::Put,
            routes::JOB_OUTPUTS,
            routes::job_outputs(job_id),
        )
        .deadline(Deadline::Unbounded);
        call.body = Body::Stream(body, sha256, len);
        self.json_of(call).await
    }

    /// Whether the coordinator serves every `(method, route template)` of `wanted` (read from
    /// its public OpenAPI document, [`routes::OPENAPI`], once): a client newer than its
    /// coordinator asks before using routes the coordinator may predate.
    pub async fn serves(&self, wanted: &[(HttpMethod, &str)]) -> Result<bool, ClientError> {
        let call = Call::new(HttpMethod::Get, routes::OPENAPI, routes::OPENAPI.to_owned());
        let document: serde_json::Value = self.json_of(call).await?;
        Ok(wanted.iter().all(|(method, template)| {
            document["paths"][*template][method.as_str().to_lowercase()].is_object()
        }))
    }

    /// A disputed job's evidence: the blob its disputer uploaded whose SHA-256 begins with the
    /// 31 bytes the chain records. Read its bytes with [`Self::download_blob`] (its
    /// submitter, worker and disputer, and JobMgr's arbiters may), which checks the whole
    /// digest.
    pub async fn job_evidence(&self, job_id: u64) -> Result<BlobInfo, ClientError> {
        let call = Call::new(
            HttpMethod::Get,
            routes::JOB_EVIDENCE,
            routes::job_evidence(job_id),
        );
        self.json_of(call).await
    }

    /// A blob's size and upload time.
    pub async fn blob_meta(&self, digest: &Digest) -> Result<BlobInfo, ClientError> {
        let call = Call::new(
            HttpMethod::Get,
            routes::BLOB_META,
            routes::blob_meta(digest),
        );
        self.json_of(call).await
    }

    /// Registered models, one page.
    pub async fn list_models(&self, query: &ListModels) -> Result<Page<Model>, ClientError> {
        let call =
            Call::new(HttpMethod::Get, routes::MODELS, routes::MODELS.into()).query(query)?;
        self.json_of(call).await
    }

    /// One model.
    pub async fn model(&self, model_id: u64) -> Result<Model, ClientError> {
        let call = Call::new(HttpMethod::Get, routes::MODEL, routes::model(model_id));
        self.json_of(call).await
    }

    /// Jobs, one page, newest first.
    pub async fn list_jobs(&self, query: &ListJobs) -> Result<Page<Job>, ClientError> {
        let call = Call::new(HttpMethod::Get, routes::JOBS, routes::JOBS.into()).query(query)?;
        self.json_of(call).await
    }

    /// One job: its chain state, which of its blobs the coordinator holds, and why it is not
    /// matched yet.
    pub async fn job(&self, job_id: u64) -> Result<JobDetails, ClientError> {
        let call = Call::new(HttpMethod::Get, routes::JOB, routes::job(job_id));
        self.json_of(call).await
    }

    /// A job's state changes as they happen, after event `last_event_id` if given.
    pub async fn job_events(
        &self,
        job_id: u64,
        last_event_id: Option<u64>,
    ) -> Result<JobEvents, ClientError> {
        let call = Call::new(
            HttpMethod::Get,
            routes::JOB_EVENTS,
            routes::job_events(job_id),
        );
        self.events(call, last_event_id).await
    }

    /// State changes of every job of `submitter`, after event `last_event_id` if given.
    pub async fn submitter_events(
        &self,
        submitter: Felt,
        last_event_id: Option<u64>,
    ) -> Result<JobEvents, ClientError> {
        let call = Call::new(
            HttpMethod::Get,
            routes::SUBMITTER_EVENTS,
            routes::submitter_events(submitter),
        );
        self.events(call, last_event_id).await
    }

    /// Every job's state changes after event `after` (from now on if `None`).
    pub async fn all_events(&self, after: Option<u64>) -> Result<JobEvents, ClientError> {
        let call = Call::new(HttpMethod::Get, routes::EVENTS, routes::EVENTS.into());
        self.events(call, after).await
    }

    /// The network at a glance over the last `minutes` (the server's default if `None`).
    pub async fn stats(&self, minutes: Option<u32>) -> Result<NetworkStats, ClientError> {
        let call = Call::new(HttpMethod::Get, routes::STATS, routes::STATS.into())
            .query(&StatsQuery { minutes })?;
        self.json_of(call).await
    }

    /// Workers, one page.
    pub async fn list_workers(&self, query: &ListWorkers) -> Result<Page<Worker>, ClientError> {
        let call =
            Call::new(HttpMethod::Get, routes::WORKERS, routes::WORKERS.into()).query(query)?;
        self.json_of(call).await
    }

    /// One worker.
    pub async fn worker(&self, address: Felt) -> Result<Worker, ClientError> {
        let call = Call::new(HttpMethod::Get, routes::WORKER, routes::worker(address));
        self.json_of(call).await
    }

    /// The signer's heartbeat, as the worker it is.
    pub async fn heartbeat(&self, heartbeat: &Heartbeat) -> Result<HeartbeatAck, ClientError> {
        let worker = self.signer_account(routes::WORKER_HEARTBEAT)?;
        let call = Call::new(
            HttpMethod::Post,
            routes::WORKER_HEARTBEAT,
            routes::worker_heartbeat(worker),
        )
        .json(heartbeat)?;
        self.json_of(call).await
    }

    /// The signer's assignments without a committed result, waiting up to `wait` for one
    /// when there are none.
    pub async fn poll_assignments(&self, wait: Duration) -> Result<Assignments, ClientError> {
        let worker = self.signer_account(routes::WORKER_ASSIGNMENTS)?;
        let wait_secs = u32::try_from(wait.as_secs()).unwrap_or(u32::MAX);
        let call = Call::new(
            HttpMethod::Get,
            routes::WORKER_ASSIGNMENTS,
            routes::worker_assignments(worker),
        )
        .query(&PollAssignments {
            wait_secs: (wait_secs > 0).then_some(wait_secs),
        })?
        .deadline(Deadline::Extra(wait));
        self.json_of(call).await
    }

    /// Uploads a job's output, as its assigned worker.
    pub async fn upload_output(
        &self,
        job_id: u64,
        bytes: impl Into<Bytes>,
    ) -> Result<OutputAccepted, ClientError> {
        let bytes = bytes.into();
        let digest = Digest::of(&bytes);
        let call = Call::new(
            HttpMethod::Put,
            routes::JOB_OUTPUT,
            routes::job_output(job_id, &digest),
        )
        .raw(bytes, digest)
        .deadline(Deadline::Unbounded);
        self.json_of(call).await
    }

    /// Uploads the signed receipt of its job, as the job's assigned worker.
    pub async fn upload_receipt(&self, receipt: &SignedReceipt) -> Result<(), ClientError> {
        let job_id = receipt.receipt.job_id;
        let call = Call::new(
            HttpMethod::Put,
            routes::JOB_RECEIPT,
            routes::job_receipt(job_id),
        )
        .json(receipt)?;
        self.send(call).await.map(drop)
    }

    /// Gives an assigned job back, as its worker, saying whose failure it is: the coordinator
    /// releases it on chain so that another worker gets it.
    pub async fn request_release(
        &self,
        job_id: u64,
        reason: &str,
        kind: GiveBack,
    ) -> Result<ReleaseAccepted, ClientError> {
        let call = Call::new(
            HttpMethod::Post,
            routes::JOB_RELEASE,
            routes::job_release(job_id),
        )
        .json(&ReleaseRequest {
            reason: reason.chars().take(500).collect(),
            kind,
        })?;
        self.json_of(call).await
    }

    /// A job's signed receipt.
    pub async fn receipt(&self, job_id: u64) -> Result<SignedReceipt, ClientError> {
        let call = Call::new(
            HttpMethod::Get,
            routes::JOB_RECEIPT,
            routes::job_receipt(job_id),
        );
        self.json_of(call).await
    }

    fn signer_account(&self, endpoint: &'static str) -> Result<Felt, ClientError> {
        self.signer
            .as_ref()
            .map(RequestSigner::account)
            .ok_or(ClientError::SignerRequired(endpoint))
    }

    async fn events(
        &self,
        mut call: Call,
        last_event_id: Option<u64>,
    ) -> Result<JobEvents, ClientError> {
        call.headers
            .insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        if let Some(id) = last_event_id {
            call.headers.insert("last-event-id", HeaderValue::from(id));
        }
        let (url, response) = self.send(call.deadline(Deadline::Unbounded)).await?;
        Ok(JobEvents {
            url,
            response,
            parser: SseParser::default(),
        })
    }

    async fn json_of<T: DeserializeOwned>(&self, call: Call) -> Result<T, ClientError> {
        let method = call.method.as_str();
        let (url, response) = self.send(call).await?;
        // Within the request's limit even for a call whose answer had none (an upload's JSON
        // answer after its headers).
        let bytes = tokio::time::timeout(
            self.request_timeout,
            read_at_most(response, MAX_JSON_BYTES, method, &url),
        )
        .await
        .map_err(|_| ClientError::Stalled {
            url: url.clone(),
            reason: format!(
                "the answer's body took more than {} s",
                self.request_timeout.as_secs()
            ),
        })??
        .ok_or_else(|| ClientError::TooLarge {
            url: url.clone(),
            limit: MAX_JSON_BYTES as u64,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| ClientError::Decode {
            method,
            url,
            source,
        })
    }

    /// Sends a call (signed as its route requires), giving its URL and its 2xx response.
    async fn send(&self, call: Call) -> Result<(String, Response), ClientError> {
        let method = call.method.as_str();
        let mut text = format!("{}{}", self.base, call.path);
        if !call.query.is_empty() {
            text.push('?');
            text.push_str(&call.query);
        }
        let url = Url::parse(&text).map_err(|e| ClientError::Url {
            url: text.clone(),
            reason: e.to_string(),
        })?;
        let mut request = self
            .http
            .request(call.method.to_http(), url.clone())
            .headers(call.headers);
        let operational = [
            routes::HEALTH,
            routes::READY,
            routes::METRICS,
            routes::OPENAPI,
        ];
        let access = match routes::find(call.method, call.template) {
            Some(route) => route.access,
            None if operational.contains(&call.template) => Access::Public,
            None => Access::Signed,
        };
        let signer = match access {
            Access::Public => None,
            Access::SignedIfPrivate => self.signer.as_ref(),
            Access::Signed => Some(
                self.signer
                    .as_ref()
                    .ok_or(ClientError::SignerRequired(call.template))?,
            ),
        };
        if let Some(signer) = signer {
            // What goes on the wire after the host: the path (with any base prefix) and query.
            let path_and_query = &url[url::Position::BeforePath..];
            // The coordinator's origin: a look-alike that receives the request cannot replay
            // it to another coordinator.
            let coordinator = origin_of(&url).ok_or_else(|| ClientError::Url {
                url: url.to_string(),
                reason: "no http or https origin to sign for".into(),
            })?;
            let message = RequestMessage {
                job_manager: signer.job_manager(),
                coordinator: &coordinator,
                method,
                path_and_query,
                body_sha256: call.body.sha256(),
                timestamp: unix_now(),
                nonce: random_nonce()?,
            };
            request = request.headers(signer.sign(&message)?.to_headers());
        }
        let body_len = call.body.len();
        request = match call.body {
            Body::Empty => request,
            Body::Json(bytes) => request.header(CONTENT_TYPE, "application/json").body(bytes),
            Body::Raw(bytes, _) => request
                .header(CONTENT_TYPE, "application/octet-stream")
                .body(bytes),
            Body::Stream(body, _, len) => request
                .header(CONTENT_TYPE, super::items::CONTENT_TYPE)
                .header(reqwest::header::CONTENT_LENGTH, len)
                .body(body),
        };
        let unbounded = matches!(call.deadline, Deadline::Unbounded);
        request = match call.deadline {
            Deadline::Default => request.timeout(self.request_timeout),
            Deadline::Extra(extra) => request.timeout(self.request_timeout + extra),
            Deadline::Unbounded => request,
        };
        let url = url.to_string();
        let response = if unbounded {
            // No overall limit (a blob of any size, an event stream), but the answer's
            // headers come within the pace, or the call is abandoned as stalled.
            tokio::time::timeout(self.pace.answer_within(body_len), request.send())
                .await
                .map_err(|_| ClientError::Stalled {
                    url: url.clone(),
                    reason: format!(
                        "no answer within {} s",
                        self.pace.answer_within(body_len).as_secs()
                    ),
                })?
        } else {
            request.send().await
        }
        .map_err(transport(method, &url))?;
        let status = response.status();
        if status.is_success() {
            return Ok((url, response));
        }
        // An error's body is read only as far as anyone shows it, within the request's limit
        // (an endless or slow one must not hold the caller or its memory).
        let body = tokio::time::timeout(
            self.request_timeout,
            read_at_most(response, MAX_ERROR_BYTES, method, &url),
        )
        .await
        .ok()
        .transpose()?
        .flatten()
        .unwrap_or_default();
        Err(match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(body) => ClientError::Api {
                method,
                url,
                status,
                body,
            },
            Err(_) => ClientError::Http {
                method,
                url,
                status,
                body: String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
            },
        })
    }
}

/// Maps a reqwest error of `method` on `url` to [`ClientError::Transport`].
fn transport<'a>(
    method: &'static str,
    url: &'a str,
) -> impl FnOnce(reqwest::Error) -> ClientError + 'a {
    move |source| ClientError::Transport {
        method,
        url: url.to_owned(),
        source,
    }
}

/// Most a download reserves ahead of the bytes it receives.
const PREALLOCATE_MAX: u64 = 64 << 20;

/// Most bytes of a JSON answer read (the largest the API gives is a page of 100 jobs).
const MAX_JSON_BYTES: usize = 16 << 20;

/// Most bytes of an error answer read (what an error shows is its code and message).
const MAX_ERROR_BYTES: usize = 64 << 10;

/// The least average rate of a blob transfer once past its first [`DOWNLOAD_STALL`], in
/// bytes a second (a 1 GiB model takes at most about 4.5 hours at it): a server sending a
/// byte a minute would otherwise hold a download for ever.
pub const MIN_TRANSFER_RATE: u64 = 64 << 10;

/// The body of `response`, or `None` once it passes `limit` bytes.
async fn read_at_most(
    mut response: Response,
    limit: usize,
    method: &'static str,
    url: &str,
) -> Result<Option<Bytes>, ClientError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport(method, url))? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body.into()))
}

fn unix_now() -> u64 {
    // A clock before 1970 signs timestamp 0, which the server refuses as stale.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// 128 random bits: a nonce no request of this account will repeat.
fn random_nonce() -> Result<Felt, ClientError> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| SignError::new(format!("no randomness for the nonce: {e}")))?;
    Ok(Felt::from(u128::from_be_bytes(bytes)))
}

/// A blob being downloaded, hashed as it arrives.
#[derive(Debug)]
pub struct BlobDownload {
    url: String,
    response: Response,
    expected: Digest,
    hasher: Sha256,
    limit: u64,
    received: u64,
    pace: Pace,
    started: tokio::time::Instant,
}

/// How long a blob download may go without receiving a byte, or a blob transfer without an
/// answer, before it is abandoned (a stalled connection would otherwise hold its caller for
/// ever: blob transfers have no overall limit, only this and [`MIN_TRANSFER_RATE`]).
pub const DOWNLOAD_STALL: Duration = Duration::from_secs(60);

impl BlobDownload {
    /// Refuses the download once it announces or sends more than `limit` bytes.
    pub fn within(mut self, limit: u64) -> Result<Self, ClientError> {
        self.limit = limit;
        match self.content_length() {
            Some(length) if length > limit => Err(ClientError::TooLarge {
                url: self.url,
                limit,
            }),
            _ => Ok(self),
        }
    }

    /// The blob's size, when the coordinator sent it.
    pub fn content_length(&self) -> Option<u64> {
        self.response.content_length()
    }

    /// The next chunk, or `None` at the end once the whole blob hashed to its digest. On
    /// [`ClientError::DigestMismatch`] discard every chunk received.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, ClientError> {
        let next = tokio::time::timeout(self.pace.stall, self.response.chunk())
            .await
            .map_err(|_| ClientError::Stalled {
                url: self.url.clone(),
                reason: format!("no data for {} s", self.pace.stall.as_secs()),
            })?;
        match next {
            Ok(Some(chunk)) => {
                self.received = self.received.saturating_add(chunk.len() as u64);
                // Past its first `stall`, the download keeps up `min_rate` on average (a
                // trickle of a byte within each stall would otherwise never end).
                let paced = self.started.elapsed().saturating_sub(self.pace.stall);
                let owed = paced.as_secs_f64() * self.pace.min_rate as f64;
                if (self.received as f64) < owed {
                    return Err(ClientError::Stalled {
                        url: self.url.clone(),
                        reason: format!(
                            "{} bytes in {} s, under {} bytes a second",
                            self.received,
                            self.started.elapsed().as_secs(),
                            self.pace.min_rate
                        ),
                    });
                }
                if self.received > self.limit {
                    return Err(ClientError::TooLarge {
                        url: self.url.clone(),
                        limit: self.limit,
                    });
                }
                self.hasher.update(&chunk);
                Ok(Some(chunk))
            }
            Ok(None) => {
                let actual = Digest(std::mem::take(&mut self.hasher).finalize().into());
                if actual != self.expected {
                    return Err(ClientError::DigestMismatch {
                        url: self.url.clone(),
                        expected: self.expected,
                        actual,
                    });
                }
                Ok(None)
            }
            Err(source) => Err(transport("GET", &self.url)(source)),
        }
    }
}

/// A batch's items being downloaded ([`super::items`]), one at a time.
#[derive(Debug)]
pub struct ItemsDownload {
    url: String,
    response: Response,
    buffer: bytes::BytesMut,
    ended: bool,
    received: u64,
    pace: Pace,
    /// Time spent waiting for the coordinator's bytes (not the caller's time between items,
    /// which the pace does not count: a worker computes between them).
    waited: Duration,
}

impl ItemsDownload {
    /// The next item, or `None` at the end of the body; [`ClientError::TooLarge`] for an item
    /// announced longer than `limit` (nothing of it is kept), [`ClientError::Truncated`] if
    /// the body ends inside an item. The caller checks each item against its manifest.
    pub async fn next_item(&mut self, limit: u64) -> Result<Option<Bytes>, ClientError> {
        const PREFIX: usize = super::items::PREFIX_BYTES as usize;
        if !self.fill(PREFIX).await? {
            if self.buffer.is_empty() {
                return Ok(None);
            }
            return Err(self.truncated("the body ended inside an item's length"));
        }
        let mut length = [0u8; PREFIX];
        length.copy_from_slice(&self.buffer[..PREFIX]);
        let length = u64::from_be_bytes(length);
        let too_large = || ClientError::TooLarge {
            url: self.url.clone(),
            limit,
        };
        if length > limit {
            return Err(too_large());
        }
        let want = usize::try_from(length)
            .ok()
            .and_then(|length| length.checked_add(PREFIX))
            .ok_or_else(too_large)?;
        if !self.fill(want).await? {
            return Err(self.truncated("the body ended inside an item"));
        }
        let mut item = self.buffer.split_to(want);
        Ok(Some(item.split_off(PREFIX).freeze()))
    }

    fn truncated(&self, reason: &str) -> ClientError {
        ClientError::Truncated {
            url: self.url.clone(),
            reason: format!("{reason} (after {} bytes)", self.received),
        }
    }

    /// Reads until `want` bytes are buffered (`true`) or the body ends first (`false`), at the
    /// transfer pace ([`BlobDownload::chunk`]'s, over the time spent waiting for bytes).
    async fn fill(&mut self, want: usize) -> Result<bool, ClientError> {
        while self.buffer.len() < want {
            if self.ended {
                return Ok(false);
            }
            let asked = tokio::time::Instant::now();
            let next = tokio::time::timeout(self.pace.stall, self.response.chunk())
                .await
                .map_err(|_| ClientError::Stalled {
                    url: self.url.clone(),
                    reason: format!("no data for {} s", self.pace.stall.as_secs()),
                })?
                .map_err(transport("GET", &self.url))?;
            self.waited += asked.elapsed();
            let Some(chunk) = next else {
                self.ended = true;
                continue;
            };
            self.received = self.received.saturating_add(chunk.len() as u64);
            let paced = self.waited.saturating_sub(self.pace.stall);
            let owed = paced.as_secs_f64() * self.pace.min_rate as f64;
            if (self.received as f64) < owed {
                return Err(ClientError::Stalled {
                    url: self.url.clone(),
                    reason: format!(
                        "{} bytes in {} s of waiting, under {} bytes a second",
                        self.received,
                        self.waited.as_secs(),
                        self.pace.min_rate
                    ),
                });
            }
            self.buffer.extend_from_slice(&chunk);
        }
        Ok(true)
    }
}

/// A stream of [`JobEvent`]s (server-sent events).
#[derive(Debug)]
pub struct JobEvents {
    url: String,
    response: Response,
    parser: SseParser,
}

impl JobEvents {
    /// The next event; `None` when the coordinator closed the stream (reconnect with the last
    /// event's `sequence` to resume).
    pub async fn next(&mut self) -> Result<Option<JobEvent>, ClientError> {
        loop {
            let event = self
                .parser
                .next_event()
                .map_err(|e| ClientError::EventStream {
                    url: self.url.clone(),
                    reason: e.to_string(),
                })?;
            if let Some(event) = event {
                if event.event != JOB_EVENT {
                    continue;
                }
                return serde_json::from_str(&event.data)
                    .map(Some)
                    .map_err(|source| ClientError::Decode {
                        method: "GET",
                        url: self.url.clone(),
                        source,
                    });
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.parser.push(&chunk),
                Ok(None) => return Ok(None),
                Err(source) => return Err(transport("GET", &self.url)(source)),
            }
        }
    }
}
