//! A batch's items in one signed request each way ([`ciro_api::coordinator::items`]): its
//! inputs read by its worker (or submitter, or an arbiter while it is disputed) and its
//! outputs uploaded by its worker, then read by its submitter. The rules are the per-item ones
//! ([`crate::store::Store::batch_item_grant`]), checked once for the whole batch: the inputs
//! are those its submitter uploaded, listed by the input manifest its submitter uploaded; the
//! outputs are those its worker uploaded, listed by the output manifest its worker uploaded
//! under its current assignment. What one request saves is the signature check (the signer's
//! account contract, asked through the node) of every item but the first.

use std::io;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ciro_api::coordinator::items::{self, PREFIX_BYTES};
use ciro_api::coordinator::{ErrorCode, ItemsQuery, OutputsAccepted};
use ciro_api::wire::Digest;
use futures_util::StreamExt;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::io::StreamReader;

use super::{
    assigned_to, declared_length, indexed_job, parse_digest, parse_id, parse_query, record_staged,
    reserve_room, stage_refusal, Api, ApiError, ApiResult,
};
use crate::blobs::{BlobError, ByteStream};
use crate::indexer::{felt_text, unix_now};
use crate::store::JobRow;

/// Which of a batch's manifests a request is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Inputs,
    Outputs,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Self::Inputs => "inputs",
            Self::Outputs => "outputs",
        }
    }
}

/// `job` as a batch, or 400.
fn batch(job: &JobRow, side: Side) -> ApiResult<()> {
    if job.items < 2 {
        return Err(ApiError::bad(format!(
            "job {} is one input, not a batch: read its {} as a blob (/v1/blobs/{{digest}})",
            job.job_id,
            match side {
                Side::Inputs => "input",
                Side::Outputs => "output",
            }
        )));
    }
    Ok(())
}

/// The output manifest `job`'s worker uploaded under its current assignment (the committed
/// one once the job is completed), or 409.
async fn output_manifest(api: &Api, job: &JobRow, worker: &str) -> ApiResult<String> {
    let none = || {
        ApiError::new(
            ErrorCode::InvalidState,
            format!(
                "job {} has no output manifest uploaded by {worker} under its assignment \
                 (PUT /v1/jobs/{}/output/{{digest}} first)",
                job.job_id, job.job_id
            ),
        )
    };
    let output = api
        .store()
        .output(job.job_id, worker)
        .await
        .map_err(ApiError::internal)?
        .filter(|o| Some(o.assigned_at) == job.assigned_at)
        .ok_or_else(none)?;
    if job
        .output_hash
        .as_deref()
        .is_some_and(|committed| committed != output.output_hash)
    {
        return Err(ApiError::new(
            ErrorCode::InvalidState,
            format!(
                "job {} committed output {} on chain, not the uploaded {}",
                job.job_id,
                job.output_hash.as_deref().unwrap_or_default(),
                output.output_hash
            ),
        ));
    }
    Ok(output.output_hash)
}

/// The digests manifest `manifest` of `job` lists, recorded with the batch's count, or 409.
async fn listed(api: &Api, job: &JobRow, manifest: &str, side: Side) -> ApiResult<Vec<String>> {
    api.store()
        .manifest(manifest)
        .await
        .map_err(ApiError::internal)?
        .filter(|digests| digests.len() as u64 == job.items)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidState,
                format!(
                    "job {}'s {} manifest {manifest} is not recorded as {} digests",
                    job.job_id,
                    side.name(),
                    job.items
                ),
            )
        })
}

/// `GET /v1/jobs/{job_id}/inputs`.
pub(super) async fn get_inputs(
    State(api): State<Api>,
    Path(job_id): Path<String>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    get_items(api, job_id, Side::Inputs, method, uri, headers).await
}

/// `GET /v1/jobs/{job_id}/outputs`.
pub(super) async fn get_outputs(
    State(api): State<Api>,
    Path(job_id): Path<String>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    get_items(api, job_id, Side::Outputs, method, uri, headers).await
}

/// A batch's inputs (those its submitter uploaded) or outputs (those its worker uploaded), in
/// their manifest's order from `?from=N` on, to its submitter, its worker, and JobMgr's
/// arbiters while it is disputed (or refunded by a worker-at-fault decision).
async fn get_items(
    api: Api,
    job_id: String,
    side: Side,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let job_id = parse_id(&job_id, "job id")?;
    let query: ItemsQuery = parse_query(uri.query().map(str::to_owned))?;
    let signed = api.require_signed(&method, &uri, &headers).await?;
    let job = indexed_job(&api, job_id).await?;
    batch(&job, side)?;
    let reader = felt_text(signed.account);
    let party = job.submitter == reader || job.worker.as_deref() == Some(reader.as_str());
    let under_arbitration =
        job.dispute.is_some() && matches!(job.state.as_str(), "Disputed" | "Refunded");
    let arbiter =
        !party && under_arbitration && api.inner.verifier.is_arbiter(signed.account).await?;
    if !party && !arbiter {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "{reader} may not read job {job_id}'s {}: its submitter and worker may, and \
                 JobMgr's arbiters while it is disputed",
                side.name()
            ),
        ));
    }
    let (manifest, uploader) = match side {
        Side::Inputs => (job.input_hash.clone(), job.submitter.clone()),
        Side::Outputs => {
            let worker = job.worker.clone().ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidState,
                    format!("job {job_id} has no worker: it has no outputs"),
                )
            })?;
            (output_manifest(&api, &job, &worker).await?, worker)
        }
    };
    let digests = listed(&api, &job, &manifest, side).await?;
    let store = api.store();
    let (uploaded, _) = store
        .manifest_uploads(&manifest, &uploader)
        .await
        .map_err(ApiError::internal)?;
    let manifest_uploaded = match side {
        Side::Inputs => store
            .has_uploaded(&manifest, &uploader)
            .await
            .map_err(ApiError::internal)?,
        // (Its output row is its upload.)
        Side::Outputs => true,
    };
    if !manifest_uploaded || uploaded < job.items {
        return Err(ApiError::new(
            ErrorCode::InvalidState,
            format!(
                "{uploaded} of job {job_id}'s {} {} are uploaded by {uploader}{}",
                job.items,
                side.name(),
                if manifest_uploaded {
                    ""
                } else {
                    ", and not its manifest"
                }
            ),
        ));
    }
    let from = query.from.unwrap_or(0);
    if from > job.items {
        return Err(ApiError::bad(format!(
            "job {job_id} has {} {}: there is no position {from}",
            job.items,
            side.name()
        )));
    }
    let blobs = api.inner.blobs.clone();
    let body = futures_util::stream::iter(digests.into_iter().skip(from as usize))
        .then(move |text| {
            let blobs = blobs.clone();
            async move {
                let digest: Digest = text
                    .parse()
                    .map_err(|e| io::Error::other(format!("manifest item {text}: {e}")))?;
                match blobs.open(&digest).await {
                    Ok(Some((size, bytes))) => Ok(futures_util::stream::once(async move {
                        Ok(Bytes::copy_from_slice(&items::prefix(size)))
                    })
                    .chain(bytes)),
                    // (Set aside by retention meanwhile: the body ends short, which the reader
                    // sees, and retries from where it broke off.)
                    Ok(None) => Err(io::Error::other(format!("item {digest} is gone"))),
                    Err(e) => Err(io::Error::other(e)),
                }
            }
        })
        .map(|opened| match opened {
            Ok(item) => item.boxed(),
            Err(e) => futures_util::stream::once(async move { Err(e) }).boxed(),
        })
        .flatten();
    tracing::debug!(job_id, side = side.name(), from, %reader, "streaming a batch's items");
    Ok((
        [(header::CONTENT_TYPE, items::CONTENT_TYPE)],
        Body::from_stream(body),
    )
        .into_response())
}

/// `PUT /v1/jobs/{job_id}/outputs`: the assigned worker's outputs, every one its output
/// manifest lists, in order ([`items`]), after that manifest (`PUT .../output/{digest}`). Each
/// output is staged and checked against its position's digest, then recorded as uploaded by
/// the worker and published before the next is read: outputs stored before a refusal stay
/// (they are the bytes the manifest names), and the whole body is checked against the SHA-256
/// the request signed at its end.
pub(super) async fn put_outputs(
    State(api): State<Api>,
    Path(job_id): Path<String>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<OutputsAccepted>> {
    let job_id = parse_id(&job_id, "job id")?;
    let signed = api.require_signed(&method, &uri, &headers).await?;
    let job = indexed_job(&api, job_id).await?;
    batch(&job, Side::Outputs)?;
    let signer = felt_text(signed.account);
    assigned_to(&job, &signer)?;
    if !matches!(job.state.as_str(), "Assigned" | "Completed" | "Disputed") {
        return Err(ApiError::new(
            ErrorCode::InvalidState,
            format!("job {job_id} is {} and takes no outputs", job.state),
        ));
    }
    let manifest = output_manifest(&api, &job, &signer).await?;
    let digests = listed(&api, &job, &manifest, Side::Outputs).await?;
    let config = &api.inner.config;
    let most = job
        .items
        .saturating_mul(PREFIX_BYTES.saturating_add(config.max_blob_bytes));
    let declared = declared_length(&headers)
        .ok_or_else(|| ApiError::bad("declare the body's length (Content-Length)"))?;
    if declared > most {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "the body declares {declared} bytes, more than {} outputs of at most {} bytes \
                 each",
                job.items, config.max_blob_bytes
            ),
        ));
    }
    // One output is staged at a time and recorded (so referenced, out of the quota) before
    // the next: the request reserves what one upload of the largest blob would (one of the
    // account's uploads, its quota of unreferenced bytes with its other uploads in progress,
    // the disk's floor), and checks the disk's floor again before each output.
    let charge = declared
        .min(config.max_blob_bytes)
        .max(crate::records::MIN_BLOB_CHARGE);
    let reservation = reserve_room(
        &api,
        &signer,
        charge,
        Some(unix_now().saturating_sub(config.upload_grace_secs)),
    )
    .await?;
    let stored = store_outputs(&api, &job, &digests, &signed, body, &reservation, charge).await;
    reservation.end().await;
    let bytes = stored?;
    tracing::info!(job_id, worker = %signer, items = job.items, bytes, "batch outputs stored");
    Ok(Json(OutputsAccepted {
        job_id,
        output_hash: parse_digest(&manifest)?,
        items: job.items,
        bytes,
    }))
}

/// Streams in `body`, the outputs `digests` lists ([`put_outputs`]), within `reservation`:
/// their bytes in all.
async fn store_outputs(
    api: &Api,
    job: &JobRow,
    digests: &[String],
    signed: &super::Signed,
    body: Body,
    reservation: &super::Reservation,
    charge: u64,
) -> ApiResult<u64> {
    let config = &api.inner.config;
    let job_id = job.job_id;
    let hasher = Arc::new(Mutex::new(Sha256::new()));
    let hashed = hasher.clone();
    let stream = body
        .into_data_stream()
        .map(|chunk| chunk.map_err(io::Error::other));
    // The time this handler spends on each output (its checks, records and renaming) is not
    // the client's: it is credited to the pace as the bytes it would have sent meanwhile.
    let credit = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stream = super::paced_with_credit(
        stream,
        config.upload_stall,
        config.min_upload_rate,
        reservation.lapsed.clone(),
        credit.clone(),
    )
    .map(move |chunk| {
        if let Ok(chunk) = &chunk {
            hashed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .update(chunk);
        }
        chunk
    });
    let reader = Arc::new(tokio::sync::Mutex::new(StreamReader::new(Box::pin(stream))));
    let mut bytes = 0u64;
    for (position, text) in digests.iter().enumerate() {
        let mut prefix = [0u8; PREFIX_BYTES as usize];
        reader
            .lock()
            .await
            .read_exact(&mut prefix)
            .await
            .map_err(|e| body_refusal(e, position, job.items))?;
        let len = u64::from_be_bytes(prefix);
        if len > config.max_blob_bytes {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "output {position} is {len} bytes, more than the {} a blob may hold",
                    config.max_blob_bytes
                ),
            ));
        }
        let expected = parse_digest(text)?;
        let clock = std::time::Instant::now();
        if let Some(free) = api
            .inner
            .blobs
            .free_bytes()
            .await
            .map_err(|e| ApiError::internal(anyhow::Error::new(e).context("the free space")))?
        {
            // The room promised to the other uploads in progress stays free, as when a
            // reservation is granted (this request's own charge covers its first output).
            let others = api
                .store()
                .reserved_upload_bytes()
                .await
                .map_err(ApiError::internal)?
                .saturating_sub(charge);
            if free.saturating_sub(others).saturating_sub(len) < config.min_free_bytes {
                tracing::error!(
                    free,
                    floor = config.min_free_bytes,
                    "the blob store is short of disk: a batch's outputs refused"
                );
                return Err(ApiError::new(
                    ErrorCode::Unavailable,
                    format!(
                        "the coordinator's blob store has {free} bytes free, too little for \
                         output {position} ({len} bytes) above its floor of {}: retry later",
                        config.min_free_bytes
                    ),
                ));
            }
        }
        let checks = clock.elapsed();
        let staged = api
            .inner
            .blobs
            .stage(&expected, item_stream(reader.clone(), len), len)
            .await
            .map_err(|e| match e {
                BlobError::DigestMismatch { actual, .. } => ApiError::new(
                    ErrorCode::DigestMismatch,
                    format!(
                        "output {position} hashes to {actual}; the output manifest lists \
                         {expected}"
                    ),
                ),
                BlobError::Body(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    body_refusal(e, position, job.items)
                }
                other => stage_refusal(other),
            });
        // Bytes that hash to the digest the worker's own signed manifest lists are that
        // output, whoever carried them: recorded as it arrives, the whole body's signed hash
        // checked at its end.
        let staged = staged?;
        let recording = std::time::Instant::now();
        record_staged(api, staged, signed.account, None).await?;
        // (The checks before the output and its record after, not its streaming in.)
        let spent = checks + recording.elapsed();
        credit.fetch_add(
            (spent.as_secs_f64() * config.min_upload_rate as f64) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        bytes = bytes.saturating_add(len);
    }
    let mut past = [0u8; 1];
    let more = reader
        .lock()
        .await
        .read(&mut past)
        .await
        .map_err(|e| body_refusal(e, digests.len(), job.items))?;
    if more > 0 {
        return Err(ApiError::bad(format!(
            "the body goes on past the {} outputs job {job_id}'s output manifest lists",
            job.items
        )));
    }
    let actual = Digest(
        std::mem::take(&mut *hasher.lock().unwrap_or_else(|p| p.into_inner()))
            .finalize()
            .into(),
    );
    if actual != signed.body_sha256 {
        return Err(ApiError::new(
            ErrorCode::DigestMismatch,
            format!(
                "the body hashes to {actual}, the request signed {}",
                signed.body_sha256
            ),
        ));
    }
    Ok(bytes)
}

/// The answer to an outputs body that broke off reading output `position` of `items`.
fn body_refusal(e: io::Error, position: usize, items: u64) -> ApiError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => ApiError::bad(format!(
            "the body ended within output {position} of {items}"
        )),
        io::ErrorKind::TimedOut => ApiError::new(
            ErrorCode::RequestTimeout,
            format!("the upload was abandoned: {e}"),
        ),
        io::ErrorKind::Interrupted => ApiError::new(
            ErrorCode::Unavailable,
            format!("the upload was abandoned: {e}; retry it"),
        ),
        _ => ApiError::bad(format!("reading the body failed: {e}")),
    }
}

/// The next `len` bytes of `reader`, as a stream (an error if it ends first).
fn item_stream<R>(reader: Arc<tokio::sync::Mutex<R>>, len: u64) -> ByteStream
where
    R: AsyncRead + Unpin + Send + 'static,
{
    Box::pin(futures_util::stream::try_unfold(
        (reader, len),
        |(reader, left)| async move {
            if left == 0 {
                return Ok(None);
            }
            let mut chunk = vec![0u8; left.min(64 << 10) as usize];
            let read = reader.lock().await.read(&mut chunk).await?;
            if read == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the body ended within an output",
                ));
            }
            chunk.truncate(read);
            Ok(Some((Bytes::from(chunk), (reader, left - read as u64))))
        },
    ))
}
