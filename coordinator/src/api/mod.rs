//! The REST API (routes and types from [`ciro_api::coordinator`]): blobs, models, jobs with
//! their data availability and why they are unmatched, job event streams, workers, and the
//! workers' heartbeats, assignment long-poll, output and receipt uploads.
//!
//! Every error is an [`ErrorBody`] with a stable code; paths, queries and bodies are parsed
//! here (never by an extractor that would answer in plain text), so bad input is a 4xx that
//! says what is wrong. Writes, and reads of private data, are signed ([`auth`]).

pub mod auth;
pub mod dashboard;
mod feed;
mod items;
pub mod openapi;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use ciro_api::coordinator::{
    routes, Assignment, Assignments, BlobInfo, Capabilities, DataAvailability, Dispute, ErrorBody,
    ErrorCode, GiveBack, Heartbeat, HeartbeatAck, Job, JobDetails, JobEvent, JobState, ListJobs,
    ListModels, ListWorkers, Liveness, Model, OutputAccepted, Page, PollAssignments,
    ReleaseAccepted, ReleaseRequest, Reputation, Requirements as ApiRequirements, SignedReceipt,
    Unmatched, UnmatchedReason, Worker, WorkerState, JOB_EVENT,
};
use ciro_api::wire::{parse_felt, parse_u256, Digest, Felt, U256};
use ciro_chain::bindings::cdc_pool;
use ciro_service::CancellationToken;
use futures_util::{Stream, StreamExt};
use prometheus::{IntCounterVec, Opts};

use crate::blobs::{BlobError, BlobStore};
use crate::eligibility::{self, Requirements};
use crate::indexer::{felt_text, unix_now, IndexerStatus};
use crate::matcher::{self, Candidate, Sizes};
use crate::records::{
    BlobRow, EventScope, JobEventRow, JobFilter, JobView, LivenessRow, OutputRow,
};
use crate::store::{JobRow, ModelRow, Store, WorkerRow};

pub use auth::Verifier;
pub use ciro_service::RateLimiter;

/// The API's limits and timings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// Largest blob upload, in bytes.
    pub max_blob_bytes: u64,
    /// Largest JSON body, in bytes.
    pub max_json_bytes: usize,
    /// A signed request's timestamp may be this far from the server's clock (seconds).
    pub signature_window_secs: u64,
    /// Workers are asked to send a heartbeat this often (seconds).
    pub heartbeat_interval_secs: u64,
    /// A worker without a heartbeat for this long is not live (seconds).
    pub stale_after_secs: u64,
    /// Requests per second per client address (0: no limit).
    pub rate_per_sec: u32,
    /// Burst of requests per client address.
    pub rate_burst: u32,
    /// Longest assignment long-poll (seconds).
    pub max_wait_secs: u32,
    /// Most event streams (`/v1/jobs/{id}/events`, `/v1/submitters/{address}/events`,
    /// `/v1/events`) open at once; each reads the database four times a second.
    pub max_event_streams: u32,
    /// Most event streams one client address may hold open.
    pub max_event_streams_per_client: u32,
    /// Most assignment long-polls waiting at once (each reads the database five times a
    /// second); one worker may hold [`MAX_LONG_POLLS_PER_WORKER`].
    pub max_long_polls: u32,
    /// Most bytes of one account's uploads that nothing of its own refers to yet (no model,
    /// job or output of its own): past it the account's uploads are refused (429) until it
    /// uses or loses some.
    pub max_pending_upload_bytes: u64,
    /// Uploads are refused (503) while the blob store has less than this free, beyond what
    /// the uploads in progress may still write.
    pub min_free_bytes: u64,
    /// How long an upload nothing refers to is kept (seconds): what the quota counts.
    pub upload_grace_secs: u64,
    /// A queued job this many workers gave back is not matched again (the operator's
    /// [`crate::operator::OperatorConfig::max_give_backs`]; here for its explanation).
    pub max_give_backs: u32,
    /// An upload's body must bring a chunk within this long, and, once past it, average
    /// [`ApiConfig::min_upload_rate`]: an upload holds a share of its account's quota and of
    /// the disk's room while it lasts, so a trickle must not make it last for ever.
    pub upload_stall: Duration,
    /// Bytes a second an upload's body must average once past its first `upload_stall`.
    pub min_upload_rate: u64,
    /// How long an upload's reservation lasts unless renewed (every quarter of it while the
    /// upload streams in): the reservations of a replica that died lapse within this.
    pub upload_reservation_ttl: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_blob_bytes: 256 << 20,
            max_json_bytes: 64 << 10,
            signature_window_secs: 300,
            heartbeat_interval_secs: 10,
            stale_after_secs: 30,
            rate_per_sec: 200,
            rate_burst: 400,
            max_wait_secs: 30,
            max_event_streams: 1_024,
            max_event_streams_per_client: 16,
            max_long_polls: 4_096,
            max_pending_upload_bytes: 4 << 30,
            min_free_bytes: 1 << 30,
            upload_grace_secs: 24 * 3_600,
            max_give_backs: crate::operator::DEFAULT_MAX_GIVE_BACKS,
            upload_stall: Duration::from_secs(30),
            min_upload_rate: 64 << 10,
            upload_reservation_ttl: Duration::from_secs(120),
        }
    }
}

/// Items per page when the query names no limit, and the most a page holds.
const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 500;
/// Longest agent version string accepted in a heartbeat.
const MAX_AGENT_VERSION: usize = 64;
/// Most jobs a worker may declare it runs at once.
const MAX_CAPACITY: u32 = 1_024;
/// Most jobs a worker is counted as able to run: no more than one assignments poll answers
/// with (a worker with more assignments than a page would never see its oldest ones). A larger
/// declared capacity is accepted and counted as this.
const USABLE_CAPACITY: u32 = MAX_PAGE;

/// An error answer: its code gives the status.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The stable code.
    pub code: ErrorCode,
    /// The human message.
    pub message: String,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A server failure: logged in full, answered without details.
    pub fn internal(error: anyhow::Error) -> Self {
        tracing::error!(error = format!("{error:#}"), "request failed");
        Self::new(ErrorCode::Internal, "internal error (see the server's log)")
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        (status, Json(ErrorBody::new(self.code, self.message))).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The API's shared state.
#[derive(Clone)]
pub struct Api {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    blobs: Arc<dyn BlobStore>,
    verifier: Verifier,
    limiter: RateLimiter<IpAddr>,
    config: ApiConfig,
    index: Arc<IndexerStatus>,
    shutdown: CancellationToken,
    /// The live workers, when last read.
    candidates: tokio::sync::Mutex<Option<(std::time::Instant, Arc<Vec<Candidate>>)>>,
    /// Answers for jobs in a final state (which no longer change), when read.
    final_jobs: std::sync::Mutex<HashMap<u64, (std::time::Instant, JobDetails)>>,
    /// Where the dashboard's accounting totals are read (none: not shown).
    accounting: Option<Arc<dashboard::AccountingSource>>,
    /// The last `/v1/stats` answers.
    stats: dashboard::StatsCache,
    /// The event streams open.
    streams: Arc<StreamSlots>,
    /// The assignment long-polls waiting, per worker.
    polls: Arc<Slots<String>>,
    /// The one reader of the event log the streams follow.
    feed: Arc<feed::EventFeed>,
    /// This replica's uploads in progress (the shared count is the database's).
    uploads: UploadGate,
}

/// Most uploads one account may have in progress at once.
const MAX_UPLOADS_PER_ACCOUNT: u64 = 4;

/// Most assignment long-polls one worker may have waiting at once (the agent polls one at a
/// time; two let a poll whose client went away overlap its successor).
pub const MAX_LONG_POLLS_PER_WORKER: u32 = 2;

/// Uploads in progress through this replica, by account: a first check before the shared
/// reservations in the database are read (an account at its most uploads here is refused
/// without touching them), and one reservation taken at a time by this replica (so that a
/// burst of uploads parks at most one database connection on the reservations' lock).
/// The longest an upload waits for its reservation (its replica's turn, the reads, the
/// database's lock) before it is refused as unavailable.
const RESERVE_WAIT: Duration = Duration::from_secs(15);

struct UploadGate {
    here: std::sync::Mutex<HashMap<String, u64>>,
    one_at_a_time: tokio::sync::Semaphore,
}

impl UploadGate {
    fn new() -> Self {
        Self {
            here: std::sync::Mutex::default(),
            one_at_a_time: tokio::sync::Semaphore::new(1),
        }
    }
}

/// One upload's reservation in the database ([`Store::reserve_upload`]), shared by every
/// replica's count. Armed from before it is asked for (a caller cancelled mid-request still
/// ends whatever was recorded), renewed while it lasts (every quarter of its lifetime, sooner
/// after a failed renewal), and ended by [`Reservation::end`] or its drop, each in a task of
/// its own that outlives a cancelled caller; a replica that dies leaves it to lapse. A
/// reservation found lapsed at a renewal cancels `lapsed`: the upload is no longer counted
/// and is abandoned.
struct Reservation {
    api: Api,
    id: String,
    account: String,
    /// Whether a row may exist to delete.
    armed: bool,
    renewing: Option<tokio::task::JoinHandle<()>>,
    lapsed: CancellationToken,
}

impl Reservation {
    /// Counts an upload of `account` through this replica, unless it has its most here.
    fn arm(api: &Api, account: &str) -> ApiResult<Self> {
        {
            let mut here =
                api.inner.uploads.here.lock().map_err(|_| {
                    ApiError::internal(anyhow::anyhow!("the upload gate is poisoned"))
                })?;
            let count = here.entry(account.to_owned()).or_insert(0);
            if *count >= MAX_UPLOADS_PER_ACCOUNT {
                return Err(too_many_uploads(account, *count));
            }
            *count += 1;
        }
        let mut id = [0u8; 16];
        // A reservation's id only has to be unique: should the system's generator fail, the
        // time and a counter serve.
        if getrandom::getrandom(&mut id).is_err() {
            static DRAWN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |t| t.as_nanos() as u64);
            id[..8].copy_from_slice(&nanos.to_be_bytes());
            id[8..].copy_from_slice(
                &DRAWN
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    .to_be_bytes(),
            );
        }
        Ok(Self {
            api: api.clone(),
            id: id.iter().map(|b| format!("{b:02x}")).collect(),
            account: account.to_owned(),
            armed: true,
            renewing: None,
            lapsed: CancellationToken::new(),
        })
    }

    /// Starts renewing the reservation, recorded now.
    fn renew(&mut self) {
        let (store, id, lapsed) = (
            self.api.store().clone(),
            self.id.clone(),
            self.lapsed.clone(),
        );
        let ttl = self.api.inner.config.upload_reservation_ttl;
        let every = ttl / 4;
        let ttl = ttl.as_secs().max(1);
        self.renewing = Some(tokio::spawn(async move {
            let mut wait = every;
            loop {
                tokio::time::sleep(wait).await;
                match store.renew_upload(&id, ttl).await {
                    Ok(true) => wait = every,
                    Ok(false) => {
                        tracing::warn!(
                            reservation = %id,
                            "an upload's reservation lapsed while it streamed in: abandoned"
                        );
                        lapsed.cancel();
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(
                            error = format!("{e:#}"),
                            "renewing an upload's reservation failed: retrying"
                        );
                        wait = (every / 6).max(Duration::from_millis(100));
                    }
                }
            }
        }));
    }

    /// Ends the reservation and waits for it (the upload ended, recorded or not), so the
    /// account's next upload does not find it still held.
    async fn end(mut self) {
        if let Some(deleting) = self.release() {
            if deleting.await.is_err() {
                tracing::warn!("the task ending an upload's reservation panicked");
            }
        }
    }

    /// Stops the renewals and deletes the row in a task of its own (none when nothing was
    /// recorded).
    fn release(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        if let Some(renewing) = self.renewing.take() {
            renewing.abort();
        }
        if !std::mem::take(&mut self.armed) {
            return None;
        }
        let (store, id) = (self.api.store().clone(), self.id.clone());
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        Some(runtime.spawn(async move {
            if let Err(e) = store.end_upload(&id).await {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "ending an upload's reservation failed: it lapses on its own"
                );
            }
        }))
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let _ = self.release();
        if let Ok(mut here) = self.api.inner.uploads.here.lock() {
            if let Some(count) = here.get_mut(&self.account) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    here.remove(&self.account);
                }
            }
        }
    }
}

/// The refusal of an upload by `account`, which has `uploads` in progress.
fn too_many_uploads(account: &str, uploads: u64) -> ApiError {
    ApiError::new(
        ErrorCode::RateLimited,
        format!(
            "{account} has {uploads} uploads in progress, the most one account may: retry when \
             one ends"
        ),
    )
}

/// Open requests of one kind that hold a place while they last (event streams, long-polls),
/// in all and per key (a client address, a worker), against their limits.
struct Slots<K> {
    /// What the places are for, in errors ("event streams", "long-polls").
    what: &'static str,
    max_total: u32,
    max_per_key: u32,
    open: std::sync::Mutex<(u32, HashMap<K, u32>)>,
}

/// One place, given back when the request ends (the client went away or the server stops).
struct Slot<K: std::hash::Hash + Eq> {
    slots: Arc<Slots<K>>,
    key: Option<K>,
}

/// The event streams open, per client address.
type StreamSlots = Slots<IpAddr>;
type StreamSlot = Slot<IpAddr>;

impl<K: std::hash::Hash + Eq + Clone + std::fmt::Display> Slots<K> {
    fn new(what: &'static str, max_total: u32, max_per_key: u32) -> Self {
        Self {
            what,
            max_total,
            max_per_key,
            open: std::sync::Mutex::new((0, HashMap::new())),
        }
    }

    /// A place for a request of `key`'s, or why there is none: the key holds its most (429),
    /// or the server serves its most (503).
    fn take(self: &Arc<Self>, key: Option<K>) -> Result<Slot<K>, ApiError> {
        let what = self.what;
        let mut open = self
            .open
            .lock()
            .map_err(|_| ApiError::internal(anyhow::anyhow!("the count of {what} is poisoned")))?;
        let (total, per_key) = &mut *open;
        if let Some(key) = &key {
            if per_key.get(key).copied().unwrap_or(0) >= self.max_per_key {
                return Err(ApiError::new(
                    ErrorCode::RateLimited,
                    format!(
                        "{key} holds {} {what} open, the most one may: close one first",
                        self.max_per_key
                    ),
                ));
            }
        }
        if *total >= self.max_total {
            return Err(ApiError::new(
                ErrorCode::Unavailable,
                format!(
                    "{} {what} are open, the most this coordinator serves: retry later",
                    self.max_total
                ),
            ));
        }
        *total += 1;
        if let Some(key) = &key {
            *per_key.entry(key.clone()).or_insert(0) += 1;
        }
        Ok(Slot {
            slots: self.clone(),
            key,
        })
    }
}

impl<K: std::hash::Hash + Eq> Drop for Slot<K> {
    fn drop(&mut self) {
        let Ok(mut open) = self.slots.open.lock() else {
            return;
        };
        let (total, per_key) = &mut *open;
        *total = total.saturating_sub(1);
        if let Some(key) = &self.key {
            if let Some(count) = per_key.get_mut(key) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    per_key.remove(key);
                }
            }
        }
    }
}

/// The client a request counts against, for rate and stream limits (absent when the server
/// was not started with connection info): its IPv4 address, or its IPv6 /64 (one host
/// usually holds a whole /64, and would otherwise be a client per address).
fn client_of(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| ciro_service::limits::client_group(info.0.ip()))
}

/// How long the answer for a job in a final state is reused (only retention, deleting its
/// output, can change it).
const FINAL_JOB_TTL: std::time::Duration = std::time::Duration::from_secs(5);
/// Most final-job answers kept.
const FINAL_JOBS_CACHED: usize = 50_000;

/// How long the live workers read for "why not matched yet" answers are reused.
const CANDIDATES_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// A verified signed request.
struct Signed {
    account: Felt,
    body_sha256: Digest,
}

impl Api {
    /// The API over `store` and `blobs`, verifying signatures with `verifier`.
    pub fn new(
        store: Store,
        blobs: Arc<dyn BlobStore>,
        verifier: Verifier,
        config: ApiConfig,
        index: Arc<IndexerStatus>,
        shutdown: CancellationToken,
    ) -> Self {
        let limiter = RateLimiter::per_second(f64::from(config.rate_per_sec), config.rate_burst);
        let streams = Arc::new(StreamSlots::new(
            "event streams",
            config.max_event_streams,
            config.max_event_streams_per_client,
        ));
        let polls = Arc::new(Slots::new(
            "long-polls",
            config.max_long_polls,
            MAX_LONG_POLLS_PER_WORKER,
        ));
        Self {
            inner: Arc::new(Inner {
                store,
                blobs,
                verifier,
                limiter,
                config,
                index,
                shutdown,
                candidates: tokio::sync::Mutex::new(None),
                final_jobs: std::sync::Mutex::new(HashMap::new()),
                accounting: None,
                stats: Default::default(),
                streams,
                polls,
                feed: Arc::default(),
                uploads: UploadGate::new(),
            }),
        }
    }

    /// The API, with the dashboard's accounting totals read from `source`. Call before the
    /// API is cloned (it is a no-op on a shared one).
    pub fn with_accounting(mut self, source: Arc<dashboard::AccountingSource>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.accounting = Some(source);
        }
        self
    }

    /// The counter of refused signed requests by code, to register in the metrics.
    pub fn auth_failures_counter() -> prometheus::Result<IntCounterVec> {
        IntCounterVec::new(
            Opts::new(
                "ciro_api_auth_failures",
                "Signed requests refused, by error code",
            ),
            &["code"],
        )
    }

    /// The router of every route of [`routes::ROUTES`] and [`routes::OPENAPI`].
    pub fn router(self) -> Router {
        let v1 = Router::new()
            .route(routes::BLOB, put(put_blob).get(get_blob))
            .route(routes::BLOB_META, get(blob_meta))
            .route(routes::MODELS, get(list_models))
            .route(routes::MODEL, get(get_model))
            .route(routes::JOBS, get(list_jobs))
            .route(routes::JOB, get(get_job))
            .route(routes::JOB_EVENTS, get(job_events))
            .route(routes::JOB_OUTPUT, put(put_output))
            .route(routes::JOB_INPUTS, get(items::get_inputs))
            .route(
                routes::JOB_OUTPUTS,
                put(items::put_outputs).get(items::get_outputs),
            )
            .route(routes::JOB_RECEIPT, put(put_receipt).get(get_receipt))
            .route(routes::JOB_EVIDENCE, get(get_evidence))
            .route(routes::JOB_RELEASE, post(post_release))
            .route(routes::SUBMITTER_EVENTS, get(submitter_events))
            .route(routes::EVENTS, get(dashboard::all_events))
            .route(routes::STATS, get(dashboard::stats))
            .route(routes::WORKERS, get(list_workers))
            .route(routes::WORKER, get(get_worker))
            .route(routes::WORKER_HEARTBEAT, post(heartbeat))
            .route(routes::WORKER_ASSIGNMENTS, get(assignments))
            .layer(middleware::from_fn_with_state(self.clone(), rate_limit));
        v1.route(routes::OPENAPI, get(openapi_document))
            .route(routes::DASHBOARD, get(dashboard::page))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            // Bodies are read by the handlers, each with its own limit.
            .layer(DefaultBodyLimit::disable())
            // No answer is to be sniffed into another type (a blob's bytes served as a page on
            // the dashboard's origin).
            .layer(middleware::map_response(
                |mut response: Response| async move {
                    response.headers_mut().insert(
                        header::X_CONTENT_TYPE_OPTIONS,
                        axum::http::HeaderValue::from_static("nosniff"),
                    );
                    response
                },
            ))
            .with_state(self)
    }

    async fn signed(
        &self,
        method: &Method,
        uri: &axum::http::Uri,
        headers: &HeaderMap,
    ) -> ApiResult<Option<Signed>> {
        let path = uri
            .path_and_query()
            .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned());
        let Some(account) = self
            .inner
            .verifier
            .verify(method.as_str(), &path, headers)
            .await?
        else {
            return Ok(None);
        };
        // Verified: the header parsed.
        let body_sha256 = headers
            .get(ciro_api::coordinator::auth::headers::CONTENT_SHA256)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidSignature, "no body hash"))?;
        Ok(Some(Signed {
            account,
            body_sha256,
        }))
    }

    async fn require_signed(
        &self,
        method: &Method,
        uri: &axum::http::Uri,
        headers: &HeaderMap,
    ) -> ApiResult<Signed> {
        self.signed(method, uri, headers).await?.ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthenticated,
                "this request must be signed by a Starknet account (x-ciro-* headers)",
            )
        })
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The live workers as matcher candidates, read at most once a second (the "why not
    /// matched yet" answers share them).
    async fn candidates(&self) -> ApiResult<Arc<Vec<Candidate>>> {
        let mut cached = self.inner.candidates.lock().await;
        if let Some((at, candidates)) = cached.as_ref() {
            if at.elapsed() < CANDIDATES_TTL {
                return Ok(candidates.clone());
            }
        }
        let fresh = Arc::new(
            live_candidates(self.store(), self.inner.config.stale_after_secs)
                .await
                .map_err(ApiError::internal)?,
        );
        *cached = Some((std::time::Instant::now(), fresh.clone()));
        Ok(fresh)
    }
}

/// The live workers (heartbeat within `stale_after_secs`) as matcher candidates, their spare
/// capacity net of the jobs the index shows assigned to them.
pub async fn live_candidates(
    store: &Store,
    stale_after_secs: u64,
) -> anyhow::Result<Vec<Candidate>> {
    let since = unix_now().saturating_sub(stale_after_secs);
    let live = store.live_workers(since).await?;
    let assigned = store.assigned_counts().await?;
    Ok(live
        .into_iter()
        .map(|(row, beat)| {
            let held = assigned.get(&row.address).copied().unwrap_or(0);
            let busy = beat.running_jobs.max(held);
            let capacity = u32::try_from(beat.capacity).unwrap_or(u32::MAX);
            let mut models: Vec<Digest> = serde_json::from_str::<Vec<String>>(&beat.models)
                .unwrap_or_default()
                .iter()
                .filter_map(|m| m.parse().ok())
                .collect();
            models.sort_unstable();
            models.dedup();
            let avg_latency_secs = serde_json::from_str::<cdc_pool::WorkerInfo>(&row.info)
                .map(|info| info.reputation.avg_latency)
                .unwrap_or(0);
            Candidate {
                spare: u32::try_from(beat.capacity.saturating_sub(busy)).unwrap_or(0),
                capacity,
                avg_latency_secs,
                models,
                max_input_bytes: beat.max_input_bytes,
                max_model_bytes: beat.max_model_bytes,
                max_batch_items: beat.max_batch_items,
                row,
            }
        })
        .collect())
}

async fn rate_limit(State(api): State<Api>, request: Request, next: Next) -> Response {
    let client = client_of(request.extensions());
    if let Some(client) = client {
        if !api.inner.limiter.allow(&client) {
            return ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "more than {} requests a second from {client}: slow down",
                    api.inner.config.rate_per_sec
                ),
            )
            .into_response();
        }
    }
    next.run(request).await
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route (see /openapi.json)")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "the route exists but not with this method (see /openapi.json)",
    )
}

async fn openapi_document() -> Response {
    Json(openapi::document()).into_response()
}

// ---- parsing -------------------------------------------------------------------------------

fn parse_digest(text: &str) -> ApiResult<Digest> {
    text.parse()
        .map_err(|_| ApiError::bad(format!("{text:?} is not a SHA-256 digest (64 hex digits)")))
}

/// The largest id, cursor or event sequence the index can hold (its columns are signed
/// 64-bit integers in both databases).
pub const MAX_ID: u64 = i64::MAX as u64;

fn parse_id(text: &str, what: &str) -> ApiResult<u64> {
    text.parse().ok().filter(|id| *id <= MAX_ID).ok_or_else(|| {
        ApiError::bad(format!(
            "{what} {text:?} is not an integer from 0 to {MAX_ID}"
        ))
    })
}

fn parse_address(text: &str) -> ApiResult<Felt> {
    parse_felt(text)
        .map_err(|_| ApiError::bad(format!("{text:?} is not an account address (0x-hex felt)")))
}

fn parse_query<T: serde::de::DeserializeOwned + Default>(query: Option<String>) -> ApiResult<T> {
    match query {
        None => Ok(T::default()),
        Some(query) => serde_urlencoded::from_str(&query)
            .map_err(|e| ApiError::bad(format!("bad query string: {e}"))),
    }
}

fn page_limit(limit: Option<u32>) -> ApiResult<u64> {
    match limit {
        Some(0) => Err(ApiError::bad("limit must be at least 1")),
        Some(n) => Ok(u64::from(n.min(MAX_PAGE))),
        None => Ok(u64::from(DEFAULT_PAGE)),
    }
}

async fn read_json<T: serde::de::DeserializeOwned>(
    body: Body,
    limit: usize,
) -> ApiResult<(T, Vec<u8>)> {
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the body exceeds {limit} bytes"),
        )
    })?;
    let value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad(format!("malformed JSON body: {e}")))?;
    Ok((value, bytes.to_vec()))
}

fn check_body(signed: &Signed, body: &[u8]) -> ApiResult<()> {
    let actual = Digest::of(body);
    if actual != signed.body_sha256 {
        return Err(ApiError::new(
            ErrorCode::InvalidSignature,
            format!(
                "the body hashes to {actual}, the request signed {}",
                signed.body_sha256
            ),
        ));
    }
    Ok(())
}

fn parse_address_text(text: &str) -> ApiResult<Felt> {
    Felt::from_hex(text)
        .map_err(|e| ApiError::internal(anyhow::anyhow!("stored address {text:?}: {e}")))
}

fn parse_digest_text(text: &str) -> ApiResult<Digest> {
    text.parse()
        .map_err(|e| ApiError::internal(anyhow::anyhow!("stored digest {text:?}: {e:?}")))
}

fn parse_amount_text(text: &str) -> ApiResult<U256> {
    parse_u256(text).map_err(|e| ApiError::internal(anyhow::anyhow!("stored amount {text:?}: {e}")))
}

// ---- conversions ---------------------------------------------------------------------------

fn job_state(state: &str) -> ApiResult<JobState> {
    serde_json::from_value(serde_json::Value::String(state.to_lowercase()))
        .map_err(|_| ApiError::internal(anyhow::anyhow!("stored job state {state:?}")))
}

fn state_name(state: JobState) -> String {
    let json = serde_json::to_value(state).unwrap_or_default();
    let lower = json.as_str().unwrap_or_default();
    let mut name = lower.to_owned();
    if let Some(first) = name.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    name
}

fn requirements_of(job: &JobRow) -> Requirements {
    Requirements {
        min_vram_mb: job.min_vram_mb,
        required_flags: job.required_flags,
        min_stake_tier: job.min_stake_tier,
        min_score: job.min_score,
    }
}

fn job_of(row: &JobRow) -> ApiResult<Job> {
    let dispute = match &row.dispute {
        None => None,
        Some(text) => {
            let value: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| ApiError::internal(anyhow::anyhow!("stored dispute: {e}")))?;
            let field = |name: &str| value[name].as_str().unwrap_or_default().to_owned();
            Some(Dispute {
                disputer: parse_address_text(&field("disputer"))?,
                evidence_hash: parse_address_text(&field("evidence_hash"))?,
                bond: parse_amount_text(&field("bond"))?,
                opened_at: value["opened_at"].as_u64().unwrap_or_default(),
            })
        }
    };
    Ok(Job {
        job_id: row.job_id,
        submitter: parse_address_text(&row.submitter)?,
        model_id: row.model_id,
        input_hash: parse_digest_text(&row.input_hash)?,
        fee: parse_amount_text(&row.fee)?,
        deadline: row.deadline,
        items: row.items,
        state: job_state(&row.state)?,
        worker: row.worker.as_deref().map(parse_address_text).transpose()?,
        assigned_at: row.assigned_at,
        completed_at: row.completed_at,
        output_hash: row
            .output_hash
            .as_deref()
            .map(parse_digest_text)
            .transpose()?,
        requirements: ApiRequirements {
            min_vram_mb: u32::try_from(row.min_vram_mb).unwrap_or(u32::MAX),
            required_flags: row.required_flags,
            min_stake_tier: u8::try_from(row.min_stake_tier).unwrap_or(u8::MAX),
            min_score: u32::try_from(row.min_score).unwrap_or(u32::MAX),
        },
        dispute,
    })
}

fn model_of(row: &ModelRow, file_available: bool) -> ApiResult<Model> {
    Ok(Model {
        model_id: row.model_id,
        owner: parse_address_text(&row.owner)?,
        model_hash: parse_digest_text(&row.model_hash)?,
        requirements: ApiRequirements {
            min_vram_mb: u32::try_from(row.min_vram_mb).unwrap_or(u32::MAX),
            required_flags: row.required_flags,
            min_stake_tier: u8::try_from(row.min_stake_tier).unwrap_or(u8::MAX),
            min_score: u32::try_from(row.min_score).unwrap_or(u32::MAX),
        },
        price: parse_amount_text(&row.price)?,
        active: row.active,
        file_available,
    })
}

fn worker_of(row: &WorkerRow, beat: Option<&LivenessRow>, stale_after: u64) -> ApiResult<Worker> {
    let info: cdc_pool::WorkerInfo = serde_json::from_str(&row.info)
        .map_err(|e| ApiError::internal(anyhow::anyhow!("stored worker view: {e}")))?;
    let state = serde_json::from_value(serde_json::Value::String(row.state.to_lowercase()))
        .unwrap_or(WorkerState::Unregistered);
    let now = unix_now();
    let amount = |v: &ciro_chain::cainome::cairo_serde::U256| U256::from_words(v.low, v.high);
    Ok(Worker {
        address: parse_address_text(&row.address)?,
        state,
        capabilities: Capabilities {
            gpu_model: row.gpu_model.clone(),
            vram_mb: info.capabilities.vram_mb,
            compute_capability: info.capabilities.compute_capability,
            flags: info.capabilities.flags,
        },
        attestation_hash: info.attestation_hash,
        stake: amount(&info.stake),
        delegated: amount(&info.delegated),
        hardware_tier: info.hardware_tier,
        stake_tier: (u64::from(info.stake_tier) != crate::eligibility::NO_TIER)
            .then_some(info.stake_tier),
        reputation: Reputation {
            completed: info.reputation.completed,
            failed: info.reputation.failed,
            missed: info.reputation.missed,
            score: info.reputation.score,
            avg_latency_secs: info.reputation.avg_latency,
            last_outcome_at: info.reputation.last_outcome_at,
        },
        registered_at: info.record.registered_at,
        chain_heartbeat_at: info.record.last_heartbeat,
        liveness: beat.map(|b| Liveness {
            last_seen: b.last_seen,
            live: b.last_seen + stale_after >= now,
            running_jobs: u32::try_from(b.running_jobs).unwrap_or(u32::MAX),
            capacity: u32::try_from(b.capacity).unwrap_or(u32::MAX),
            models: serde_json::from_str::<Vec<String>>(&b.models)
                .unwrap_or_default()
                .iter()
                .filter_map(|m| m.parse().ok())
                .collect(),
        }),
    })
}

fn event_of(row: &JobEventRow) -> ApiResult<JobEvent> {
    Ok(JobEvent {
        sequence: row.sequence,
        job_id: row.job_id,
        submitter: parse_address_text(&row.submitter)?,
        state: job_state(&row.state)?,
        worker: row.worker.as_deref().map(parse_address_text).transpose()?,
        output_hash: row
            .output_hash
            .as_deref()
            .map(parse_digest_text)
            .transpose()?,
        block_number: row.block_number,
        transaction_hash: parse_address_text(&row.tx_hash)?,
    })
}

fn not_indexed(api: &Api, job_id: u64) -> ApiError {
    ApiError::new(
        ErrorCode::JobNotFound,
        format!(
            "job {job_id} is not in the index (indexed to block {}): if it was just submitted, retry",
            api.inner.index.indexed()
        ),
    )
}

async fn indexed_job(api: &Api, job_id: u64) -> ApiResult<JobRow> {
    api.store()
        .job(job_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| not_indexed(api, job_id))
}

// ---- blobs ---------------------------------------------------------------------------------

/// Reserves room for an upload of `digest` by `uploader` that declares `declared` bytes (its
/// Content-Length), or refuses it: 429 when the account has its most uploads in progress or
/// its quota of unreferenced bytes (recorded within the upload grace, plus its uploads in
/// progress, plus this one) would be exceeded; 503 when the blob store's free space less what
/// the uploads in progress may write would fall below the floor, or when the reservations
/// cannot be read. The uploads in progress are every replica's (a table of reservations in
/// the shared database, taken one at a time): N replicas do not admit N times an account's
/// uploads. The account's unreferenced bytes and the free space are read before the
/// reservations: an upload of the account that ends between the two reads (its blob recorded,
/// then its reservation ended) can be counted in neither, so the quota and the floor may be
/// passed by that upload's bytes (the count of uploads is exact). A re-upload of bytes the
/// account already uploaded adds nothing to its unreferenced bytes, so the quota does not
/// refuse it; but its body may only be the blob's recorded size (bytes that hash to the
/// digest are that many), and it counts against the uploads in progress and the disk floor
/// like any other while it streams in (without that, an account could stream any number of
/// bodies of the largest size into the staging area by naming a tiny blob it uploaded once).
/// Returns the reservation (held until the blob is recorded) and the most bytes the body may
/// carry.
async fn reserve_upload(
    api: &Api,
    uploader: &str,
    digest: &Digest,
    declared: Option<u64>,
) -> ApiResult<(Reservation, u64)> {
    let config = &api.inner.config;
    let store = api.store();
    let known = store
        .uploaded_size(&digest.to_string(), uploader)
        .await
        .map_err(ApiError::internal)?;
    let (charge, pending_since) = match known {
        Some(size) => {
            if let Some(declared) = declared.filter(|d| *d > size) {
                return Err(ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    format!(
                        "blob {digest} is {size} bytes, as this account uploaded it before; the \
                         body declares {declared}"
                    ),
                ));
            }
            (size, None)
        }
        None => (
            declared
                .map_or(config.max_blob_bytes, |d| d.min(config.max_blob_bytes))
                .max(crate::records::MIN_BLOB_CHARGE),
            Some(unix_now().saturating_sub(config.upload_grace_secs)),
        ),
    };
    Ok((
        reserve_room(api, uploader, charge, pending_since).await?,
        charge,
    ))
}

/// Reserves room for an upload of `charge` bytes by `uploader` ([`reserve_upload`]): one of
/// its [`MAX_UPLOADS_PER_ACCOUNT`], the disk's floor, and, with `pending_since`, its quota of
/// unreferenced bytes (counted from uploads since then).
async fn reserve_room(
    api: &Api,
    uploader: &str,
    charge: u64,
    pending_since: Option<u64>,
) -> ApiResult<Reservation> {
    let config = &api.inner.config;
    let store = api.store();
    let mut reservation = Reservation::arm(api, uploader)?;
    // This replica's turn, then the account's unreferenced bytes and the free space (read
    // once the turn is taken, so that they are no older than the wait), then the shared
    // reservations; bounded in all, a slow database being a 503.
    let decided = tokio::time::timeout(RESERVE_WAIT, async {
        let _turn = api
            .inner
            .uploads
            .one_at_a_time
            .acquire()
            .await
            .map_err(|e| anyhow::Error::new(e).context("the upload gate"))?;
        let pending = match pending_since {
            Some(since) => Some(store.pending_upload_bytes(uploader, since).await?),
            None => None,
        };
        let free =
            api.inner.blobs.free_bytes().await.map_err(|e| {
                anyhow::Error::new(e).context("reading the blob store's free space")
            })?;
        let decide = |held: &crate::records::UploadsInProgress| -> ApiResult<()> {
            if held.account_uploads >= MAX_UPLOADS_PER_ACCOUNT {
                return Err(too_many_uploads(uploader, held.account_uploads));
            }
            let reserved = held.account_bytes;
            if let Some(pending) = pending.filter(|p| {
                p.saturating_add(reserved).saturating_add(charge) > config.max_pending_upload_bytes
            }) {
                return Err(ApiError::new(
                    ErrorCode::RateLimited,
                    format!(
                        "{uploader} holds {pending} bytes of uploads that no model, job or output \
                         of its own refers to yet and {reserved} more in progress; {charge} more \
                         would pass its quota of {}: register or submit what they are for, or wait \
                         for unused uploads to be collected",
                        config.max_pending_upload_bytes
                    ),
                ));
            }
            if let Some(free) = free {
                let total = held.total_bytes;
                let left = free.saturating_sub(total).saturating_sub(charge);
                if left < config.min_free_bytes {
                    tracing::error!(
                        free,
                        in_progress = total,
                        floor = config.min_free_bytes,
                        "the blob store is short of disk: uploads refused"
                    );
                    return Err(ApiError::new(
                        ErrorCode::Unavailable,
                        format!(
                            "the coordinator's blob store has {free} bytes free and {total} being \
                             uploaded, too little for {charge} more above its floor of {}: retry \
                             later",
                            config.min_free_bytes
                        ),
                    ));
                }
            }
            Ok(())
        };
        store
            .reserve_upload(
                &reservation.id,
                uploader,
                charge,
                config.upload_reservation_ttl.as_secs().max(1),
                decide,
            )
            .await
    })
    .await
    .unwrap_or_else(|_| {
        Err(anyhow::anyhow!(
            "no answer in {} s (the database is slow or the reservations are busy)",
            RESERVE_WAIT.as_secs()
        ))
    });
    match decided {
        Ok(Ok(())) => {
            reservation.renew();
            Ok(reservation)
        }
        Ok(Err(refusal)) => {
            reservation.armed = false; // Nothing recorded.
            Err(refusal)
        }
        // A lock or a connection waited for too long, or the database is down: retryable.
        Err(e) => {
            tracing::error!(
                error = format!("{e:#}"),
                "reserving room for an upload failed"
            );
            Err(ApiError::new(
                ErrorCode::Unavailable,
                format!(
                    "the coordinator could not reserve room for the upload ({e:#}): retry later"
                ),
            ))
        }
    }
}

/// `body`, failing with `TimedOut` once it falls behind: a chunk must come within `stall`,
/// and once past its first `stall` the body must average `min_rate` bytes a second (a byte
/// within each `stall` would otherwise keep an upload, and what it reserved, for ever).
fn paced<S>(
    body: S,
    stall: Duration,
    min_rate: u64,
    lapsed: CancellationToken,
) -> impl Stream<Item = std::io::Result<axum::body::Bytes>> + Send
where
    S: Stream<Item = std::io::Result<axum::body::Bytes>> + Send,
{
    paced_with_credit(body, stall, min_rate, lapsed, Arc::default())
}

/// [`paced`], counting `credit` bytes as received on top of the body's own (the reader's time
/// away from the body, at `min_rate`: a handler that stops reading between parts of one body
/// does not charge its own time to the sender).
fn paced_with_credit<S>(
    body: S,
    stall: Duration,
    min_rate: u64,
    lapsed: CancellationToken,
    credit: Arc<std::sync::atomic::AtomicU64>,
) -> impl Stream<Item = std::io::Result<axum::body::Bytes>> + Send
where
    S: Stream<Item = std::io::Result<axum::body::Bytes>> + Send,
{
    let started = tokio::time::Instant::now();
    let min_rate = min_rate.max(1);
    futures_util::stream::unfold(
        (Box::pin(body), 0u64, false),
        move |(mut body, received, ended)| {
            let lapsed = lapsed.clone();
            let credit = credit.clone();
            async move {
                if ended {
                    return None;
                }
                // By when the bytes received so far stop covering the average owed.
                let counted =
                    received.saturating_add(credit.load(std::sync::atomic::Ordering::Relaxed));
                let owed_by =
                    started + stall + Duration::from_secs_f64(counted as f64 / min_rate as f64);
                let deadline = (tokio::time::Instant::now() + stall).min(owed_by);
                let next = tokio::select! {
                    () = lapsed.cancelled() => {
                        return Some((
                            Err(std::io::Error::new(
                                std::io::ErrorKind::Interrupted,
                                "its reservation lapsed (the coordinator could not renew it)",
                            )),
                            (body, received, true),
                        ));
                    }
                    next = tokio::time::timeout_at(deadline, body.next()) => next,
                };
                match next {
                    Ok(Some(Ok(chunk))) => {
                        let received = received.saturating_add(chunk.len() as u64);
                        Some((Ok(chunk), (body, received, false)))
                    }
                    Ok(Some(Err(e))) => Some((Err(e), (body, received, true))),
                    Ok(None) => None,
                    Err(_) => Some((
                        Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!(
                                "its body fell behind after {received} bytes in {} s (a chunk is \
                             due within {} s, and past them {min_rate} bytes a second on \
                             average)",
                                started.elapsed().as_secs(),
                                stall.as_secs()
                            ),
                        )),
                        (body, received, true),
                    )),
                }
            }
        },
    )
}

/// A request's declared body length (`Content-Length`), when it gives a valid one.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Streams `body` in as blob `digest` uploaded by `uploader`, within the room reserved for
/// the length its `headers` declare, and records it.
async fn store_blob(
    api: &Api,
    digest: &Digest,
    body: Body,
    uploader: Felt,
    headers: &HeaderMap,
) -> ApiResult<BlobRow> {
    let declared = declared_length(headers);
    let (reservation, limit) = reserve_upload(api, &felt_text(uploader), digest, declared).await?;
    let stream = body
        .into_data_stream()
        .map(|chunk| chunk.map_err(std::io::Error::other));
    let config = &api.inner.config;
    let stream = paced(
        stream,
        config.upload_stall,
        config.min_upload_rate,
        reservation.lapsed.clone(),
    );
    let staged = match api
        .inner
        .blobs
        .stage(digest, Box::pin(stream), limit)
        .await
        .map_err(stage_refusal)
    {
        Ok(staged) => staged,
        Err(refusal) => {
            // Ended before the answer, so the account's next upload does not find it held.
            reservation.end().await;
            return Err(refusal);
        }
    };
    record_staged(api, staged, uploader, Some(reservation)).await
}

/// The answer to an upload whose body could not be staged.
fn stage_refusal(error: BlobError) -> ApiError {
    match error {
        BlobError::Body(e) if e.kind() == std::io::ErrorKind::TimedOut => ApiError::new(
            ErrorCode::RequestTimeout,
            format!("the upload was abandoned: {e}"),
        ),
        BlobError::Body(e) if e.kind() == std::io::ErrorKind::Interrupted => ApiError::new(
            ErrorCode::Unavailable,
            format!("the upload was abandoned: {e}; retry it"),
        ),
        BlobError::TooLarge { limit } => ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the body exceeds {limit} bytes (the length it declared, or the upload limit)"),
        ),
        BlobError::DigestMismatch { claimed, actual } => ApiError::new(
            ErrorCode::DigestMismatch,
            format!("the body hashes to {actual}, not to {claimed}"),
        ),
        BlobError::Body(e) => ApiError::bad(format!("reading the body failed: {e}")),
        BlobError::Storage(e) => {
            ApiError::internal(anyhow::Error::new(e).context("the blob store"))
        }
    }
}

/// Records blob `staged` as uploaded by `uploader` and publishes its bytes, then ends
/// `reservation` if given (an upload of several blobs ends its own once all are in).
async fn record_staged(
    api: &Api,
    staged: crate::blobs::StagedBlob,
    uploader: Felt,
    reservation: Option<Reservation>,
) -> ApiResult<BlobRow> {
    let digest = *staged.digest();
    // Recorded before it is published: retention forgets a blob's records (checking that none
    // is new) before it sets its bytes aside, and restores them if a record came meanwhile, so
    // bytes published after their record are never deleted by a collection in progress.
    let row = BlobRow {
        digest: digest.to_string(),
        size: staged.size(),
        uploader: felt_text(uploader),
        created_at: unix_now(),
    };
    // In a task of its own, so that a client going away between the two cannot leave a
    // record without its bytes; the reservation ends in it once the blob is recorded (ended
    // before, by a client going away, the upload would be counted neither as in progress nor
    // as recorded for a moment).
    let recorded = row.clone();
    let api_ = api.clone();
    let published = digest;
    tokio::spawn(async move {
        let done = async {
            api_.store().insert_blob(&recorded).await?;
            if let Err(e) = api_.inner.blobs.publish(staged).await {
                // Not published: this upload's own record goes (another upload's stays),
                // unless the bytes are there already (this account's or anyone's earlier
                // upload, which the record, renewed by this one, now describes: forgetting it
                // would leave this account's earlier upload unrecorded, its job's input
                // unreadable and collectable).
                if !api_.inner.blobs.contains(&published).await.unwrap_or(false) {
                    api_.store().forget_upload(&recorded).await?;
                }
                return Err(anyhow::Error::new(e).context("publishing the blob"));
            }
            anyhow::Ok(())
        }
        .await;
        if let Some(reservation) = reservation {
            reservation.end().await;
        }
        done
    })
    .await
    .map_err(|e| ApiError::internal(anyhow::anyhow!("the upload's task: {e}")))?
    .map_err(ApiError::internal)?;
    Ok(row)
}

fn check_signed_digest(signed: &Signed, digest: &Digest) -> ApiResult<()> {
    if signed.body_sha256 != *digest {
        return Err(ApiError::new(
            ErrorCode::DigestMismatch,
            format!(
                "the request signed a body hashing to {}, the path names {digest}",
                signed.body_sha256
            ),
        ));
    }
    Ok(())
}

async fn put_blob(
    State(api): State<Api>,
    Path(digest): Path<String>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let digest = parse_digest(&digest)?;
    let signed = api.require_signed(&method, &uri, &headers).await?;
    check_signed_digest(&signed, &digest)?;
    let row = store_blob(&api, &digest, body, signed.account, &headers).await?;
    let stored = api
        .store()
        .blob(&row.digest)
        .await
        .map_err(ApiError::internal)?;
    let created_at = stored.map_or(row.created_at, |b| b.created_at);
    tracing::info!(%digest, size = row.size, uploader = %row.uploader, "blob stored");
    // A batch's manifest uploaded by its submitter after the batch was indexed: recorded now,
    // so the inputs it lists count as referenced from their first upload.
    let text = digest.to_string();
    let batches = api
        .store()
        .jobs_with_input(&text)
        .await
        .map_err(ApiError::internal)?;
    if let Some(batch) = batches
        .iter()
        .find(|j| j.items > 1 && j.submitter == row.uploader)
    {
        if let Err(e) =
            crate::batches::expand(api.store(), api.inner.blobs.as_ref(), &text, batch.items)
                .await
                .map_err(ApiError::internal)?
        {
            tracing::info!(%digest, job_id = batch.job_id, "not a manifest of the batch: {e}");
        }
    }
    Ok((
        StatusCode::CREATED,
        Json(BlobInfo {
            digest,
            size: row.size,
            created_at,
        }),
    )
        .into_response())
}

async fn blob_meta(
    State(api): State<Api>,
    Path(digest): Path<String>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> ApiResult<Json<BlobInfo>> {
    let digest = parse_digest(&digest)?;
    let row = readable_blob(&api, &digest, &method, &uri, &headers).await?;
    Ok(Json(BlobInfo {
        digest,
        size: row.size,
        created_at: row.created_at,
    }))
}

/// Blob `digest`'s record, when the request may read the blob ([`may_read_blob`]). A blob it
/// may not read is answered exactly as one that is not there (404 `blob_not_found`, the same
/// message): otherwise anyone could learn whether a guessed private input or output (a
/// low-entropy one, a yes or a no) was uploaded, by its digest alone.
async fn readable_blob(
    api: &Api,
    digest: &Digest,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> ApiResult<crate::records::BlobRow> {
    let reader = api.signed(method, uri, headers).await?.map(|s| s.account);
    let hidden = || {
        ApiError::new(
            ErrorCode::BlobNotFound,
            match reader {
                Some(reader) => format!(
                    "no blob {digest} that {} may read (an input, output or evidence is read \
                     by its job's submitter and worker, and by JobMgr's arbiters while the job \
                     is disputed)",
                    felt_text(reader)
                ),
                None => format!(
                    "no public blob {digest} (an input, output or evidence is read by a signed \
                     request of its job's submitter or worker)"
                ),
            },
        )
    };
    let text = digest.to_string();
    let record = api
        .store()
        .blob(&text)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(hidden)?;
    let uploaders = api
        .store()
        .uploaders(&record.digest)
        .await
        .map_err(ApiError::internal)?;
    if !may_read_blob(api, &text, reader, &uploaders).await? {
        return Err(hidden());
    }
    Ok(record)
}

/// Who may read a blob: anyone for a model file its model's owner uploaded; the submitter and
/// the worker of a job whose submitter uploaded it, for an input; a job's submitter and the
/// worker that uploaded it, for an output; a disputed job's submitter and worker, for the
/// evidence its disputer uploaded; a batch's submitter and worker, for the items its manifests
/// list as the single-job rules would grant them ([`Store::batch_item_grant`]); JobMgr's
/// arbiters, for a disputed job's input, output and evidence, a batch's items included
/// ([`may_read_disputed`]); else whoever uploaded it (each upload of the same bytes counts: the
/// uploader holds them).
async fn may_read_blob(
    api: &Api,
    digest: &str,
    reader: Option<Felt>,
    uploaders: &[String],
) -> ApiResult<bool> {
    for uploader in uploaders {
        if api
            .store()
            .is_model_file(digest, uploader)
            .await
            .map_err(ApiError::internal)?
        {
            return Ok(true);
        }
    }
    let Some(reader) = reader else {
        return Ok(false);
    };
    let reader = felt_text(reader);
    if uploaders.contains(&reader) {
        return Ok(true);
    }
    let jobs = api
        .store()
        .jobs_with_input(digest)
        .await
        .map_err(ApiError::internal)?;
    // Only jobs whose submitter uploaded this input grant it (anyone can submit a job naming
    // a public input_hash).
    if jobs
        .iter()
        .filter(|j| uploaders.contains(&j.submitter))
        .any(|j| j.submitter == reader || j.worker.as_deref() == Some(reader.as_str()))
    {
        return Ok(true);
    }
    let outputs = api
        .store()
        .outputs_with_hash(digest)
        .await
        .map_err(ApiError::internal)?;
    if outputs
        .iter()
        .any(|(o, submitter)| *submitter == reader || o.worker == reader)
    {
        return Ok(true);
    }
    if api
        .store()
        .batch_item_grant(digest, &reader)
        .await
        .map_err(ApiError::internal)?
    {
        return Ok(true);
    }
    if may_read_disputed(api, digest, &reader, uploaders).await? {
        return Ok(true);
    }
    Ok(false)
}

/// Whether `reader` may read blob `digest` (uploaded by `uploaders`) as a party to a dispute
/// or as its arbiter: a disputed job's submitter, worker and disputer read the evidence its
/// disputer uploaded (the chain names it by its first 31 bytes); an account holding JobMgr's
/// ARBITER role reads that evidence, the job's input its submitter uploaded and the output
/// its worker uploaded. The same holds once a worker-at-fault decision refunded the job, for
/// the output retention period (retention keeps the data as long), so the parties and the
/// arbiters can review the decision that slashed the worker (that slash is executed at once:
/// it cannot be challenged). Arbiters are asked of the chain only when the blob is one of
/// these.
async fn may_read_disputed(
    api: &Api,
    digest: &str,
    reader: &str,
    uploaders: &[String],
) -> ApiResult<bool> {
    let jobs = api
        .store()
        .disputed_jobs_with_blob(digest)
        .await
        .map_err(ApiError::internal)?;
    let mut for_arbiters = false;
    for job in &jobs {
        let uploaded_by = |who: Option<&str>| who.is_some_and(|w| uploaders.iter().any(|u| u == w));
        let evidence = is_evidence_of(job, digest) && uploaded_by(job.disputer.as_deref());
        if evidence
            && (job.submitter == reader
                || job.worker.as_deref() == Some(reader)
                || job.disputer.as_deref() == Some(reader))
        {
            return Ok(true);
        }
        for_arbiters |= evidence
            || (job.input_hash == digest && uploaded_by(Some(&job.submitter)))
            || (job.output_hash.as_deref() == Some(digest) && uploaded_by(job.worker.as_deref()));
    }
    if !for_arbiters {
        for_arbiters = api
            .store()
            .is_disputed_batch_item(digest)
            .await
            .map_err(ApiError::internal)?;
    }
    if !for_arbiters {
        return Ok(false);
    }
    let reader = parse_address_text(reader)?;
    api.inner.verifier.is_arbiter(reader).await
}

/// Whether blob `digest` is the evidence of `job`'s dispute: the chain records its first 31
/// bytes as a felt.
fn is_evidence_of(job: &JobRow, digest: &str) -> bool {
    let Ok(digest) = digest.parse::<ciro_api::wire::Digest>() else {
        return false;
    };
    recorded_evidence(job).is_some_and(|recorded| recorded == felt_text(evidence_felt(&digest)))
}

/// The evidence hash `job`'s stored dispute records (`0x` and minimal hex), if it has one.
fn recorded_evidence(job: &JobRow) -> Option<String> {
    let dispute = serde_json::from_str::<serde_json::Value>(job.dispute.as_deref()?).ok()?;
    dispute["evidence_hash"].as_str().map(str::to_owned)
}

/// The felt the chain records for an evidence blob of digest `digest`: its first 31 bytes.
pub fn evidence_felt(digest: &ciro_api::wire::Digest) -> Felt {
    Felt::from_bytes_be_slice(&digest.0[..31])
}

/// `GET /v1/jobs/{id}/evidence`: the blob the job's disputer uploaded whose first 31 bytes are
/// the evidence hash its dispute records.
async fn get_evidence(
    State(api): State<Api>,
    Path(job_id): Path<String>,
) -> ApiResult<Json<BlobInfo>> {
    let job_id = parse_id(&job_id, "job id")?;
    let job = indexed_job(&api, job_id).await?;
    let (Some(_), Some(disputer)) = (&job.dispute, &job.disputer) else {
        return Err(ApiError::new(
            ErrorCode::InvalidState,
            format!(
                "job {job_id} is {} and was never disputed: it has no evidence",
                job.state
            ),
        ));
    };
    let recorded = recorded_evidence(&job)
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("job {job_id}'s stored dispute")))?;
    let felt = parse_address_text(&recorded)?;
    let bytes = felt.to_bytes_be();
    if bytes[0] != 0 {
        // Not the first 31 bytes of any SHA-256: no blob is this evidence.
        return Err(ApiError::new(
            ErrorCode::BlobNotFound,
            format!("job {job_id}'s dispute names evidence {recorded}, wider than 31 bytes: no blob's digest begins with it"),
        ));
    }
    let prefix = hex_of(&bytes[1..]);
    let row = api
        .store()
        .blob_by_prefix(&prefix, disputer)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::BlobNotFound,
                format!(
                    "job {job_id}'s dispute names evidence {recorded}, which its disputer \
                     {disputer} did not upload to this coordinator"
                ),
            )
        })?;
    Ok(Json(BlobInfo {
        digest: parse_digest(&row.digest)?,
        size: row.size,
        created_at: row.created_at,
    }))
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn get_blob(
    State(api): State<Api>,
    Path(digest): Path<String>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let digest = parse_digest(&digest)?;
    readable_blob(&api, &digest, &method, &uri, &headers).await?;
    let (size, stream) = api
        .inner
        .blobs
        .open(&digest)
        .await
        .map_err(|e| ApiError::internal(anyhow::Error::new(e)))?
        .ok_or_else(|| ApiError::new(ErrorCode::BlobNotFound, format!("blob {digest} is gone")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, size.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

// ---- models --------------------------------------------------------------------------------

async fn list_models(
    State(api): State<Api>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Page<Model>>> {
    let query: ListModels = parse_query(query)?;
    let limit = page_limit(query.limit)?;
    let after = query
        .cursor
        .as_deref()
        .map(|c| parse_id(c, "cursor"))
        .transpose()?;
    let rows = api
        .store()
        .list_models(query.active, after, limit)
        .await
        .map_err(ApiError::internal)?;
    let items = rows
        .iter()
        .map(|(row, stored)| model_of(row, *stored))
        .collect::<ApiResult<Vec<_>>>()?;
    let next_cursor = (rows.len() as u64 == limit)
        .then(|| rows.last().map(|(r, _)| r.model_id.to_string()))
        .flatten();
    Ok(Json(Page { items, next_cursor }))
}

async fn get_model(State(api): State<Api>, Path(model_id): Path<String>) -> ApiResult<Json<Model>> {
    let model_id = parse_id(&model_id, "model id")?;
    let row = api
        .store()
        .model(model_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::new(ErrorCode::ModelNotFound, format!("no model {model_id}")))?;
    // Its file is there for workers only when its owner uploaded it (anyone may register a
    // model naming any digest: answering for anyone's upload would tell whether a guessed
    // private input or output had been uploaded).
    let stored = api
        .store()
        .has_uploaded(&row.model_hash, &row.owner)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(model_of(&row, stored)?))
}

// ---- jobs ----------------------------------------------------------------------------------

async fn list_jobs(
    State(api): State<Api>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Page<Job>>> {
    let query: ListJobs = parse_query(query)?;
    let limit = page_limit(query.limit)?;
    let filter = JobFilter {
        submitter: query.submitter.map(felt_text),
        worker: query.worker.map(felt_text),
        state: query.state.map(state_name),
        before: query
            .cursor
            .as_deref()
            .map(|c| parse_id(c, "cursor"))
            .transpose()?,
    };
    let rows = api
        .store()
        .list_jobs(&filter, limit)
        .await
        .map_err(ApiError::internal)?;
    let items = rows.iter().map(job_of).collect::<ApiResult<Vec<_>>>()?;
    let next_cursor = (rows.len() as u64 == limit)
        .then(|| rows.last().map(|r| r.job_id.to_string()))
        .flatten();
    Ok(Json(Page { items, next_cursor }))
}

/// Why a queued job is not assigned yet.
pub fn unmatched_reason(
    view: &JobView,
    max_give_backs: u32,
    candidates: &[Candidate],
) -> UnmatchedReason {
    let job = &view.job;
    let mut input_bytes = view.input_bytes;
    if let Some(batch) = &view.batch {
        if !view.input {
            return UnmatchedReason::ManifestNotUploaded;
        }
        if !batch.manifest_recorded {
            if view.input_bytes != 32 * job.items {
                return UnmatchedReason::ManifestInvalid {
                    bytes: view.input_bytes,
                    items: job.items,
                };
            }
            // (Recorded by the operator's next tick.)
        } else if batch.items_uploaded < job.items {
            return UnmatchedReason::BatchInputsMissing {
                missing: job.items - batch.items_uploaded,
            };
        }
        input_bytes = batch.largest_item;
    } else if !view.input {
        return UnmatchedReason::InputNotUploaded;
    }
    if !view.model_file {
        return UnmatchedReason::ModelFileNotUploaded;
    }
    if gave_up_on(view.given_back, max_give_backs) {
        return UnmatchedReason::GivenBack {
            workers: view.given_back,
        };
    }
    let release_after = release_after(job);
    if unix_now() + release_after > job.deadline {
        return UnmatchedReason::DeadlineTooClose;
    }
    let sizes = Sizes {
        input_bytes,
        model_bytes: view.model_bytes,
        items: job.items,
    };
    matcher::explain(&requirements_of(job), sizes, &view.model_hash, candidates)
}

/// Whether a queued job that `given_back` workers gave back is past `max_give_backs` (0: no
/// limit) and no longer matched.
pub fn gave_up_on(given_back: u32, max_give_backs: u32) -> bool {
    max_give_backs > 0 && given_back >= max_give_backs
}

/// The job's release window (its terms' `release_after`, seconds).
pub fn release_after(job: &JobRow) -> u64 {
    term(job, "release_after")
}

/// A numeric field of the job's terms (stored as the bindings serialize them: 0x-hex
/// strings); 0 when absent or unreadable.
pub fn term(job: &JobRow, name: &str) -> u64 {
    let terms = serde_json::from_str::<serde_json::Value>(&job.terms).unwrap_or_default();
    match &terms[name] {
        serde_json::Value::Number(n) => n.as_u64().unwrap_or(0),
        serde_json::Value::String(text) => ciro_api::wire::parse_u64(text).unwrap_or(0),
        _ => 0,
    }
}

async fn get_job(
    State(api): State<Api>,
    Path(job_id): Path<String>,
) -> ApiResult<Json<JobDetails>> {
    let job_id = parse_id(&job_id, "job id")?;
    if let Ok(cache) = api.inner.final_jobs.lock() {
        if let Some((at, details)) = cache.get(&job_id) {
            if at.elapsed() < FINAL_JOB_TTL {
                return Ok(Json(details.clone()));
            }
        }
    }
    let view = api
        .store()
        .job_view(job_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| not_indexed(&api, job_id))?;
    let job = job_of(&view.job)?;
    let unmatched = if job.state == JobState::Queued {
        let candidates = api.candidates().await?;
        let reason = unmatched_reason(&view, api.inner.config.max_give_backs, &candidates);
        Some(Unmatched {
            message: matcher::describe(&reason),
            reason,
        })
    } else {
        None
    };
    let details = JobDetails {
        job,
        data: DataAvailability {
            model: view.model_file,
            input: view.input,
            output: view.output,
            receipt: view.receipt,
            items_uploaded: view.batch.map(|b| b.items_uploaded),
            outputs_missing: view.batch.and_then(|b| b.outputs_missing),
        },
        unmatched,
        indexed_block: api.inner.index.indexed(),
    };
    if crate::operator::is_final(&view.job.state) {
        if let Ok(mut cache) = api.inner.final_jobs.lock() {
            if cache.len() >= FINAL_JOBS_CACHED {
                cache.clear();
            }
            cache.insert(job_id, (std::time::Instant::now(), details.clone()));
        }
    }
    Ok(Json(details))
}

async fn put_output(
    State(api): State<Api>,
    Path((job_id, digest)): Path<(String, String)>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<OutputAccepted>> {
    let job_id = parse_id(&job_id, "job id")?;
    let digest = parse_digest(&digest)?;
    let signed = api.require_signed(&method, &uri, &headers).await?;
    check_signed_digest(&signed, &digest)?;
    let job = indexed_job(&api, job_id).await?;
    let signer = felt_text(signed.account);
    assigned_to(&job, &signer)?;
    let accepts = match job.state.as_str() {
        "Assigned" => true,
        // Committed on-chain first: only that output.
        "Completed" | "Disputed" => job.output_hash.as_deref() == Some(digest.to_string().as_str()),
        _ => false,
    };
    if !accepts {
        return Err(ApiError::new(
            ErrorCode::InvalidState,
            format!("job {job_id} is {} and accepts no such output", job.state),
        ));
    }
    let blob = store_blob(&api, &digest, body, signed.account, &headers).await?;
    if job.items > 1 {
        // A batch's output is its output manifest: one digest of 32 bytes per input, each
        // output uploaded by this worker (which the receipt then waits for).
        let refused = |why: String| {
            ApiError::new(
                ErrorCode::BadRequest,
                format!("job {job_id} is a batch of {} inputs: {why}", job.items),
            )
        };
        if blob.size != 32 * job.items {
            return Err(refused(format!(
                "its output is a manifest of {} bytes (32 per input), not {}",
                32 * job.items,
                blob.size
            )));
        }
        let text = digest.to_string();
        match crate::batches::expand(api.store(), api.inner.blobs.as_ref(), &text, job.items)
            .await
            .map_err(ApiError::internal)?
        {
            Ok(()) => {}
            Err(crate::batches::ManifestError::Missing) => {
                // (Its bytes set aside by retention between the store and this read.)
                return Err(ApiError::new(
                    ErrorCode::Unavailable,
                    format!("job {job_id}'s output manifest could not be read back: retry"),
                ));
            }
            Err(e) => return Err(refused(e.to_string())),
        }
    }
    let output = OutputRow {
        job_id,
        worker: signer.clone(),
        output_hash: digest.to_string(),
        size: blob.size,
        uploaded_at: unix_now(),
        assigned_at: job.assigned_at.unwrap_or_default(),
        receipt: None,
    };
    if let Err(existing) = api
        .store()
        .insert_output(&output)
        .await
        .map_err(ApiError::internal)?
    {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "{signer} already uploaded output {} for job {job_id}",
                existing.output_hash
            ),
        ));
    }
    tracing::info!(job_id, worker = %signer, output = %digest, "output stored");
    Ok(Json(OutputAccepted {
        job_id,
        output_hash: digest,
        size: blob.size,
    }))
}

/// `job` as assigned to `signer` (its worker), or 403 `not_assigned`.
fn assigned_to(job: &JobRow, signer: &str) -> ApiResult<()> {
    if job.worker.as_deref() != Some(signer) {
        return Err(ApiError::new(
            ErrorCode::NotAssigned,
            format!("job {} is not assigned to {signer}", job.job_id),
        ));
    }
    Ok(())
}

/// The assigned worker gives a job back: recorded for the leader to release on chain.
async fn post_release(
    State(api): State<Api>,
    Path(job_id): Path<String>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<ReleaseAccepted>> {
    let job_id = parse_id(&job_id, "job id")?;
    let signed = api.require_signed(&method, &uri, &headers).await?;
    let (request, bytes): (ReleaseRequest, _) =
        read_json(body, api.inner.config.max_json_bytes).await?;
    check_body(&signed, &bytes)?;
    if request.reason.chars().count() > 500 {
        return Err(ApiError::bad("the reason is longer than 500 characters"));
    }
    let job = indexed_job(&api, job_id).await?;
    let signer = felt_text(signed.account);
    let assigned_here = job.worker.as_deref() == Some(signer.as_str()) && job.state == "Assigned";
    // A worker restarted after dying in the job's pass finds it released for its silence (and
    // maybe assigned to another): its report of the failure still counts, as the worker the
    // job's log shows assigned before, while the job is not final.
    let reports_failure = !assigned_here
        && request.kind == GiveBack::JobFailed
        && matches!(job.state.as_str(), "Queued" | "Assigned")
        && api
            .store()
            .was_assigned(job_id, &signer)
            .await
            .map_err(ApiError::internal)?;
    if !assigned_here && !reports_failure {
        assigned_to(&job, &signer)?;
        return Err(ApiError::new(
            ErrorCode::InvalidState,
            format!(
                "job {job_id} is {}, not Assigned: nothing to give back",
                job.state
            ),
        ));
    }
    api.store()
        .request_release(
            job_id,
            &signer,
            &request.reason,
            request.kind == GiveBack::JobFailed,
            unix_now(),
        )
        .await
        .map_err(ApiError::internal)?;
    tracing::info!(job_id, worker = %signer, reason = %request.reason, "the worker gives the job back");
    Ok(Json(ReleaseAccepted { job_id }))
}

async fn put_receipt(
    State(api): State<Api>,
    Path(job_id): Path<String>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<StatusCode> {
    let job_id = parse_id(&job_id, "job id")?;
    let signed = api.require_signed(&method, &uri, &headers).await?;
    let (receipt, bytes): (SignedReceipt, _) =
        read_json(body, api.inner.config.max_json_bytes).await?;
    check_body(&signed, &bytes)?;
    let job = indexed_job(&api, job_id).await?;
    let signer = felt_text(signed.account);
    assigned_to(&job, &signer)?;
    // (an output of an earlier assignment of the job to this worker is not this one's)
    let output = api
        .store()
        .output(job_id, &signer)
        .await
        .map_err(ApiError::internal)?
        .filter(|o| Some(o.assigned_at) == job.assigned_at)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidState,
                format!("upload job {job_id}'s output before its receipt"),
            )
        })?;
    if job.items > 1 {
        let (uploaded, _) = api
            .store()
            .manifest_uploads(&output.output_hash, &signer)
            .await
            .map_err(ApiError::internal)?;
        if uploaded < job.items {
            return Err(ApiError::new(
                ErrorCode::InvalidState,
                format!(
                    "upload the {} outputs of job {job_id}'s output manifest before its receipt \
                     ({uploaded} uploaded)",
                    job.items
                ),
            ));
        }
    }
    let r = &receipt.receipt;
    let mismatch = if r.job_id != job_id {
        Some(format!("the receipt is for job {}", r.job_id))
    } else if r.worker != signed.account {
        Some(format!("the receipt names worker {:#x}", r.worker))
    } else if r.output_hash.to_string() != output.output_hash {
        Some(format!(
            "the receipt's output {} is not the uploaded {}",
            r.output_hash, output.output_hash
        ))
    } else if r.input_hash.to_string() != job.input_hash {
        Some(format!(
            "the receipt's input {} is not the job's {}",
            r.input_hash, job.input_hash
        ))
    } else {
        None
    };
    if let Some(reason) = mismatch {
        return Err(ApiError::bad(reason));
    }
    let hash = r.message_hash(api.inner.verifier.chain_id().await?);
    if !api
        .inner
        .verifier
        .is_valid_signature(signed.account, hash, &receipt.signature)
        .await?
    {
        return Err(ApiError::new(
            ErrorCode::InvalidSignature,
            format!("the receipt is not signed by {signer}'s account"),
        ));
    }
    let text = serde_json::to_string(&receipt).map_err(|e| ApiError::internal(e.into()))?;
    api.store()
        .set_receipt(job_id, &signer, &text)
        .await
        .map_err(ApiError::internal)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_receipt(
    State(api): State<Api>,
    Path(job_id): Path<String>,
) -> ApiResult<Json<SignedReceipt>> {
    let job_id = parse_id(&job_id, "job id")?;
    let job = indexed_job(&api, job_id).await?;
    let none = || {
        ApiError::new(
            ErrorCode::ReceiptNotFound,
            format!("no receipt for job {job_id}"),
        )
    };
    let worker = job.worker.ok_or_else(none)?;
    let output = api
        .store()
        .output(job_id, &worker)
        .await
        .map_err(ApiError::internal)?
        .filter(|o| Some(o.assigned_at) == job.assigned_at)
        .and_then(|o| o.receipt)
        .ok_or_else(none)?;
    let receipt = serde_json::from_str(&output).map_err(|e| ApiError::internal(e.into()))?;
    Ok(Json(receipt))
}

// ---- event streams -------------------------------------------------------------------------

fn last_event_id(headers: &HeaderMap) -> ApiResult<u64> {
    match headers.get("last-event-id") {
        None => Ok(0),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .filter(|id: &u64| *id <= MAX_ID)
            .ok_or_else(|| ApiError::bad("Last-Event-ID must be the sequence of an event")),
    }
}

/// The log entries of `scope` after `after`, then each one as it is recorded, as server-sent
/// events, for a client given `slot` (held as long as the stream).
fn event_stream(
    api: Api,
    scope: EventScope,
    after: u64,
    slot: StreamSlot,
) -> impl Stream<Item = Result<Event, std::convert::Infallible>> {
    // The stream catches up from the database, then takes the process's one reader's
    // batches ([`feed`]).
    let follower = feed::Follower::new(
        &api.inner.feed,
        api.store().clone(),
        scope,
        after,
        api.inner.shutdown.clone(),
    );
    futures_util::stream::unfold((follower, slot), |(mut follower, slot)| async move {
        loop {
            let row = follower.next().await?;
            match event_of(&row)
                .and_then(|e| serde_json::to_string(&e).map_err(|e| ApiError::internal(e.into())))
            {
                Ok(data) => {
                    let event = Event::default()
                        .event(JOB_EVENT)
                        .id(row.sequence.to_string())
                        .data(data);
                    return Some((Ok(event), (follower, slot)));
                }
                Err(_) => continue,
            }
        }
    })
}

async fn job_events(
    State(api): State<Api>,
    Path(job_id): Path<String>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
) -> ApiResult<Response> {
    let job_id = parse_id(&job_id, "job id")?;
    let after = last_event_id(&headers)?;
    indexed_job(&api, job_id).await?;
    let slot = api.inner.streams.take(client_of(&extensions))?;
    Ok(
        Sse::new(event_stream(api, EventScope::Job(job_id), after, slot))
            .keep_alive(KeepAlive::default())
            .into_response(),
    )
}

async fn submitter_events(
    State(api): State<Api>,
    Path(address): Path<String>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
) -> ApiResult<Response> {
    let address = parse_address(&address)?;
    let after = last_event_id(&headers)?;
    let slot = api.inner.streams.take(client_of(&extensions))?;
    Ok(Sse::new(event_stream(
        api,
        EventScope::Submitter(felt_text(address)),
        after,
        slot,
    ))
    .keep_alive(KeepAlive::default())
    .into_response())
}

// ---- workers -------------------------------------------------------------------------------

async fn list_workers(
    State(api): State<Api>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Page<Worker>>> {
    let query: ListWorkers = parse_query(query)?;
    let limit = page_limit(query.limit)?;
    let state = query.state.map(|s| {
        let name = serde_json::to_value(s).unwrap_or_default();
        state_name_of_worker(name.as_str().unwrap_or_default())
    });
    let rows = api
        .store()
        .list_workers(state.as_deref(), query.cursor.as_deref(), limit)
        .await
        .map_err(ApiError::internal)?;
    let stale = api.inner.config.stale_after_secs;
    let mut items = Vec::new();
    for (row, beat) in &rows {
        let worker = worker_of(row, beat.as_ref(), stale)?;
        let live = worker.liveness.as_ref().is_some_and(|l| l.live);
        if query.live.is_none_or(|wanted| wanted == live) {
            items.push(worker);
        }
    }
    let next_cursor = (rows.len() as u64 == limit)
        .then(|| rows.last().map(|(r, _)| r.address.clone()))
        .flatten();
    Ok(Json(Page { items, next_cursor }))
}

fn state_name_of_worker(lower: &str) -> String {
    let mut name = lower.to_owned();
    if let Some(first) = name.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    name
}

async fn get_worker(
    State(api): State<Api>,
    Path(address): Path<String>,
) -> ApiResult<Json<Worker>> {
    let address = felt_text(parse_address(&address)?);
    let row = api
        .store()
        .worker(&address)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::WorkerNotFound,
                format!("no worker {address} in the CDC Pool"),
            )
        })?;
    let beat = api
        .store()
        .liveness(&address)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(worker_of(
        &row,
        beat.as_ref(),
        api.inner.config.stale_after_secs,
    )?))
}

/// The signer, if it is the worker the path names and the pool knows it.
/// The worker `address` names, when the request is signed by it: its address as the index
/// writes it, and its indexed row.
async fn that_worker(api: &Api, address: &str, signed: &Signed) -> ApiResult<(String, WorkerRow)> {
    let address = felt_text(parse_address(address)?);
    let signer = felt_text(signed.account);
    if signer != address {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("{signer} may not act for worker {address}"),
        ));
    }
    match api
        .store()
        .worker(&address)
        .await
        .map_err(ApiError::internal)?
    {
        Some(row) => Ok((address, row)),
        None => Err(ApiError::new(
            ErrorCode::WorkerNotFound,
            format!("{address} is not registered in the CDC Pool (or not indexed yet: retry)"),
        )),
    }
}

/// Whether a worker may announce itself live: it can be offered jobs (Active, with stake
/// meeting a tier), or it is finishing a job assigned to it, whatever its state now (silence
/// would have the job released). A registration alone costs no stake, so without this any
/// number of unstaked workers could fill the live set the matcher and the "why not matched"
/// answers read each tick.
async fn may_be_live(api: &Api, address: &str, row: &WorkerRow) -> ApiResult<bool> {
    if eligibility::may_take_jobs(row) {
        return Ok(true);
    }
    Ok(!api
        .store()
        .assignments_of(address, 1)
        .await
        .map_err(ApiError::internal)?
        .is_empty())
}

async fn heartbeat(
    State(api): State<Api>,
    Path(address): Path<String>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<HeartbeatAck>> {
    let signed = api.require_signed(&method, &uri, &headers).await?;
    let (beat, bytes): (Heartbeat, _) = read_json(body, api.inner.config.max_json_bytes).await?;
    check_body(&signed, &bytes)?;
    let (address, row) = that_worker(&api, &address, &signed).await?;
    if !may_be_live(&api, &address, &row).await? {
        return Err(ApiError::new(
            ErrorCode::InvalidState,
            format!(
                "worker {address} is {} in the CDC Pool{}: heartbeats are taken from Active \
                 workers whose own stake meets a tier, and from workers finishing an assigned job \
                 (if it just staked, retry once the coordinator has indexed it)",
                row.state,
                if row.stake_tier == eligibility::NO_TIER {
                    ", its stake below every tier"
                } else {
                    ""
                }
            ),
        ));
    }
    if beat.capacity == 0 || beat.capacity > MAX_CAPACITY {
        return Err(ApiError::bad(format!(
            "capacity must be 1 to {MAX_CAPACITY}"
        )));
    }
    if beat.running_jobs > MAX_CAPACITY {
        return Err(ApiError::bad(format!(
            "running_jobs must be at most {MAX_CAPACITY}"
        )));
    }
    if beat.models.len() > ciro_api::coordinator::MAX_HEARTBEAT_MODELS {
        return Err(ApiError::bad(format!(
            "at most {} models",
            ciro_api::coordinator::MAX_HEARTBEAT_MODELS
        )));
    }
    if beat.agent_version.len() > MAX_AGENT_VERSION {
        return Err(ApiError::bad(format!(
            "agent_version is at most {MAX_AGENT_VERSION} bytes"
        )));
    }
    if beat
        .max_batch_items
        .is_some_and(|n| n == 0 || n > ciro_api::coordinator::MAX_BATCH_ITEMS)
    {
        return Err(ApiError::bad(format!(
            "max_batch_items must be 1 to {} when given",
            ciro_api::coordinator::MAX_BATCH_ITEMS
        )));
    }
    if beat.max_input_bytes == Some(0) || beat.max_model_bytes == Some(0) {
        return Err(ApiError::bad(
            "max_input_bytes and max_model_bytes are at least 1 when given",
        ));
    }
    let models: Vec<String> = beat.models.iter().map(ToString::to_string).collect();
    let now = unix_now();
    api.store()
        .heartbeat(&LivenessRow {
            address,
            last_seen: now,
            running_jobs: u64::from(beat.running_jobs),
            capacity: u64::from(beat.capacity.min(USABLE_CAPACITY)),
            models: serde_json::to_string(&models).map_err(|e| ApiError::internal(e.into()))?,
            agent_version: beat.agent_version,
            max_input_bytes: beat.max_input_bytes,
            max_model_bytes: beat.max_model_bytes,
            max_batch_items: beat.max_batch_items.map(u64::from),
        })
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(HeartbeatAck {
        server_time: now,
        interval_secs: api.inner.config.heartbeat_interval_secs,
        stale_after_secs: api.inner.config.stale_after_secs,
    }))
}

async fn assignments(
    State(api): State<Api>,
    Path(address): Path<String>,
    RawQuery(query): RawQuery,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> ApiResult<Json<Assignments>> {
    let query: PollAssignments = parse_query(query)?;
    let signed = api.require_signed(&method, &uri, &headers).await?;
    let (address, row) = that_worker(&api, &address, &signed).await?;
    // Only a worker that can be offered jobs waits for them: an unstaked registration costs
    // nothing, and its polls must not hold the places staked workers wait in. (A worker
    // finishing an assignment, whatever its state, is answered at once with it.)
    let wait = if eligibility::may_take_jobs(&row) {
        Duration::from_secs(u64::from(
            query
                .wait_secs
                .unwrap_or(0)
                .min(api.inner.config.max_wait_secs),
        ))
    } else {
        Duration::ZERO
    };
    // A waiting poll holds a place, one worker a bounded few: without it, one worker's key
    // could open polls without end, each reading the database five times a second.
    let _slot = if wait.is_zero() {
        None
    } else {
        Some(api.inner.polls.take(Some(address.clone()))?)
    };
    let until = tokio::time::Instant::now() + wait;
    loop {
        // Not a job the worker gave back: it stays assigned to it until the release lands
        // and is indexed, and a restarted worker would take it again.
        let jobs = api
            .store()
            .assignments_of(&address, u64::from(MAX_PAGE))
            .await
            .map_err(ApiError::internal)?;
        if !jobs.is_empty() || tokio::time::Instant::now() >= until {
            let mut assignments = Vec::with_capacity(jobs.len());
            for job in jobs.iter().rev() {
                let model = api
                    .store()
                    .model(job.model_id)
                    .await
                    .map_err(ApiError::internal)?
                    .ok_or_else(|| {
                        ApiError::internal(anyhow::anyhow!("job {} has no model", job.job_id))
                    })?;
                let assigned_at = job.assigned_at.unwrap_or_default();
                assignments.push(Assignment {
                    job_id: job.job_id,
                    model_id: job.model_id,
                    model_hash: parse_digest_text(&model.model_hash)?,
                    input_hash: parse_digest_text(&job.input_hash)?,
                    deadline: job.deadline,
                    assigned_at,
                    release_at: assigned_at + release_after(job),
                    items: job.items,
                });
            }
            return Ok(Json(Assignments { assignments }));
        }
        tokio::select! {
            _ = api.inner.shutdown.cancelled() => return Ok(Json(Assignments { assignments: vec![] })),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `paced` lets through of `body`, and how it ended (`None`: the body's own end).
    async fn through_paced(
        body: impl Stream<Item = std::io::Result<axum::body::Bytes>> + Send,
    ) -> (u64, Option<std::io::ErrorKind>) {
        through_paced_until(body, CancellationToken::new()).await
    }

    /// [`through_paced`] for an upload whose reservation lapses when `lapsed` is cancelled.
    async fn through_paced_until(
        body: impl Stream<Item = std::io::Result<axum::body::Bytes>> + Send,
        lapsed: CancellationToken,
    ) -> (u64, Option<std::io::ErrorKind>) {
        let mut paced = std::pin::pin!(paced(body, Duration::from_millis(300), 1_024, lapsed));
        let mut received = 0;
        while let Some(item) = paced.next().await {
            match item {
                Ok(chunk) => received += chunk.len() as u64,
                Err(e) => return (received, Some(e.kind())),
            }
        }
        (received, None)
    }

    #[tokio::test]
    async fn an_upload_body_that_falls_behind_is_cut_and_one_that_keeps_up_is_not() {
        let chunk = || Ok(axum::body::Bytes::from(vec![7u8; 1_024]));
        // Kept up: all of it.
        let fast = futures_util::stream::iter((0..10).map(|_| chunk()));
        assert_eq!(through_paced(fast).await, (10_240, None));
        // A chunk, then nothing: cut after the stall.
        let stalled = futures_util::stream::iter([chunk()]).chain(futures_util::stream::pending());
        assert_eq!(
            through_paced(stalled).await,
            (1_024, Some(std::io::ErrorKind::TimedOut))
        );
        // A byte every 100 ms, always within the stall, far under the average owed: cut too.
        let trickle = futures_util::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Some((Ok(axum::body::Bytes::from_static(b"x")), ()))
        });
        let (received, ended) = through_paced(trickle).await;
        assert_eq!(ended, Some(std::io::ErrorKind::TimedOut));
        assert!(received < 10, "{received} bytes let through");
        // The body's own error is passed on as it is.
        let broken =
            futures_util::stream::iter([chunk(), Err(std::io::Error::other("connection reset"))]);
        assert_eq!(
            through_paced(broken).await,
            (1_024, Some(std::io::ErrorKind::Other))
        );
        // A body that keeps up is cut once its reservation lapses (no longer counted).
        let lapsed = CancellationToken::new();
        let steady = futures_util::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Some((chunk(), ()))
        });
        let lapse = {
            let lapsed = lapsed.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                lapsed.cancel();
            })
        };
        let (received, ended) = through_paced_until(steady, lapsed).await;
        assert_eq!(ended, Some(std::io::ErrorKind::Interrupted));
        assert!(
            received >= 1_024,
            "{received} bytes let through before the lapse"
        );
        lapse.await.expect("the lapse");
    }

    #[test]
    fn a_job_is_given_up_on_at_the_limit_of_give_backs_and_never_without_one() {
        assert!(!gave_up_on(0, 3));
        assert!(!gave_up_on(2, 3));
        assert!(gave_up_on(3, 3));
        assert!(gave_up_on(4, 3));
        assert!(gave_up_on(1, 1));
        assert!(!gave_up_on(u32::MAX, 0), "0 sets no limit");
    }
}
