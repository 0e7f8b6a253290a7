//! `CoordinatorClient` against a small coordinator built here with axum from the crate's route
//! templates and auth helpers, the way the real one will be: requests are signed as their
//! route requires and verify on the server, answers are typed, errors carry their code.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use ciro_api::coordinator::auth::{headers, origin_of, RequestAuth, RequestMessage, RequestSigner};
use ciro_api::coordinator::{
    routes, Assignment, Assignments, BlobInfo, ClientError, CoordinatorClient, DataAvailability,
    ErrorBody, ErrorCode, Heartbeat, HeartbeatAck, Job, JobDetails, JobEvent, JobState, ListJobs,
    OutputAccepted, Page, PollAssignments, Receipt, Requirements, SignedReceipt,
};
use ciro_api::wire::{parse_felt, Digest, Felt, U256};
use starknet::signers::SigningKey;

const CHAIN_ID: Felt = Felt::from_hex_unchecked("0x534e5f5345504f4c4941");
const WORKER: Felt = Felt::from_hex_unchecked("0x77");
/// The deployment's JobMgr contract the server serves.
const JOB_MGR: Felt = Felt::from_hex_unchecked("0x10b");

#[derive(Default)]
struct Server {
    /// The public key of every known account (the real server asks the account contract).
    keys: HashMap<Felt, Felt>,
    blobs: HashMap<Digest, Bytes>,
    nonces: HashSet<(Felt, Felt)>,
    receipts: HashMap<u64, SignedReceipt>,
    /// Acknowledge uploads with this digest instead of the body's (a lying coordinator).
    misreport: Option<Digest>,
    /// The origin it answers as, which signed requests must name.
    origin: String,
}

#[derive(Clone, Default)]
struct App {
    server: Arc<Mutex<Server>>,
    hits: Arc<AtomicUsize>,
}

fn error(code: ErrorCode, message: impl Into<String>) -> Response {
    (code.status(), Json(ErrorBody::new(code, message))).into_response()
}

/// A refusal: its code and message.
type Refusal = (ErrorCode, String);

fn refused((code, message): Refusal) -> Response {
    error(code, message)
}

/// The server side of signed requests: headers, freshness, body, signature, replay.
fn authenticate(
    app: &App,
    method: &Method,
    uri: &OriginalUri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Felt, Refusal> {
    let refuse = |e: ciro_api::coordinator::auth::AuthError| (e.code(), e.to_string());
    let auth = RequestAuth::from_headers(headers)
        .map_err(refuse)?
        .ok_or_else(|| (ErrorCode::Unauthenticated, "sign this request".to_owned()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    auth.check_freshness(now, 60).map_err(refuse)?;
    auth.check_body(body).map_err(refuse)?;
    let path = uri.0.path_and_query().unwrap().as_str();
    let origin = app.server.lock().unwrap().origin.clone();
    if auth.coordinator != origin {
        return Err((
            ErrorCode::InvalidSignature,
            format!("signed for {}, this is {origin}", auth.coordinator),
        ));
    }
    let hash = auth
        .message(JOB_MGR, method.as_str(), path)
        .message_hash(auth.account, CHAIN_ID)
        .map_err(|e| (ErrorCode::InvalidSignature, e.to_string()))?;
    let mut server = app.server.lock().unwrap();
    let valid = match (server.keys.get(&auth.account), &auth.signature[..]) {
        (Some(key), [r, s]) => starknet_crypto::verify(key, &hash, r, s).unwrap_or(false),
        _ => false,
    };
    if !valid {
        return Err((
            ErrorCode::InvalidSignature,
            "the account rejects the signature".into(),
        ));
    }
    if !server.nonces.insert((auth.account, auth.nonce)) {
        return Err((ErrorCode::ReplayedNonce, "nonce already used".into()));
    }
    Ok(auth.account)
}

async fn put_blob(
    State(app): State<App>,
    Path(digest): Path<String>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    app.hits.fetch_add(1, Ordering::SeqCst);
    let Ok(digest) = digest.parse::<Digest>() else {
        return error(ErrorCode::BadRequest, "not a digest");
    };
    if let Err(refusal) = authenticate(&app, &method, &uri, &headers, &body) {
        return refused(refusal);
    }
    if Digest::of(&body) != digest {
        return error(
            ErrorCode::DigestMismatch,
            "the body does not hash to the digest",
        );
    }
    let size = body.len() as u64;
    let mut server = app.server.lock().unwrap();
    server.blobs.insert(digest, body);
    let info = BlobInfo {
        digest: server.misreport.unwrap_or(digest),
        size,
        created_at: 1_750_000_000,
    };
    (StatusCode::CREATED, Json(info)).into_response()
}

async fn blob_meta(State(app): State<App>, Path(digest): Path<String>) -> Response {
    let Ok(digest) = digest.parse::<Digest>() else {
        return error(ErrorCode::BadRequest, "not a digest");
    };
    match app.server.lock().unwrap().blobs.get(&digest) {
        Some(bytes) => Json(BlobInfo {
            digest,
            size: bytes.len() as u64,
            created_at: 1_750_000_000,
        })
        .into_response(),
        None => error(ErrorCode::BlobNotFound, "no such blob"),
    }
}

/// Job 7 is assigned to `WORKER`: only it may upload the output.
async fn put_output(
    State(app): State<App>,
    Path((job_id, digest)): Path<(u64, String)>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let signer = match authenticate(&app, &method, &uri, &headers, &body) {
        Ok(signer) => signer,
        Err(refusal) => return refused(refusal),
    };
    if job_id != 7 || signer != WORKER {
        return error(ErrorCode::NotAssigned, "not the job's worker");
    }
    let Ok(digest) = digest.parse::<Digest>() else {
        return error(ErrorCode::BadRequest, "not a digest");
    };
    if Digest::of(&body) != digest {
        return error(
            ErrorCode::DigestMismatch,
            "the body does not hash to the digest",
        );
    }
    let size = body.len() as u64;
    app.server.lock().unwrap().blobs.insert(digest, body);
    Json(OutputAccepted {
        job_id,
        output_hash: digest,
        size,
    })
    .into_response()
}

async fn get_blob(State(app): State<App>, Path(digest): Path<String>) -> Response {
    let blob = digest
        .parse::<Digest>()
        .ok()
        .and_then(|digest| app.server.lock().unwrap().blobs.get(&digest).cloned());
    match blob {
        Some(bytes) => bytes.into_response(),
        None => error(ErrorCode::BlobNotFound, "no such blob"),
    }
}

fn job(job_id: u64, submitter: Felt) -> Job {
    Job {
        job_id,
        submitter,
        model_id: 1,
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
            min_vram_mb: 0,
            required_flags: 0,
            min_stake_tier: 0,
            min_score: 0,
        },
        dispute: None,
    }
}

async fn get_job(Path(job_id): Path<u64>) -> Response {
    if job_id != 7 {
        return error(
            ErrorCode::JobNotFound,
            format!("job {job_id} is not indexed"),
        );
    }
    Json(JobDetails {
        job: job(7, Felt::ONE),
        data: DataAvailability {
            model: true,
            input: false,
            output: false,
            receipt: false,
            items_uploaded: None,
            outputs_missing: None,
        },
        unmatched: None,
        indexed_block: 100,
    })
    .into_response()
}

async fn list_jobs(Query(query): Query<ListJobs>) -> Json<Page<Job>> {
    let submitter = query.submitter.unwrap_or(Felt::ZERO);
    let items = (0..query.limit.unwrap_or(1))
        .map(|i| job(100 + u64::from(i), submitter))
        .collect();
    Json(Page {
        items,
        next_cursor: Some("after-101".into()),
    })
}

async fn heartbeat(
    State(app): State<App>,
    Path(address): Path<String>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let signer = match authenticate(&app, &method, &uri, &headers, &body) {
        Ok(signer) => signer,
        Err(refusal) => return refused(refusal),
    };
    if parse_felt(&address).ok() != Some(signer) {
        return error(ErrorCode::Forbidden, "a heartbeat for another worker");
    }
    let Ok(beat) = serde_json::from_slice::<Heartbeat>(&body) else {
        return error(ErrorCode::BadRequest, "not a heartbeat");
    };
    Json(HeartbeatAck {
        server_time: u64::from(beat.running_jobs),
        interval_secs: 10,
        stale_after_secs: u64::from(beat.capacity) * 30,
    })
    .into_response()
}

async fn assignments(
    State(app): State<App>,
    Query(query): Query<PollAssignments>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
) -> Response {
    if let Err(refusal) = authenticate(&app, &method, &uri, &headers, b"") {
        return refused(refusal);
    }
    let assignments = match query.wait_secs {
        Some(5) => vec![Assignment {
            job_id: 7,
            model_id: 1,
            model_hash: Digest::of(b"model"),
            input_hash: Digest::of(b"input"),
            deadline: 1_900_000_000,
            assigned_at: 1_800_000_000,
            release_at: 1_800_003_600,
            items: 1,
        }],
        _ => vec![],
    };
    Json(Assignments { assignments }).into_response()
}

async fn put_receipt(
    State(app): State<App>,
    Path(job_id): Path<u64>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refusal) = authenticate(&app, &method, &uri, &headers, &body) {
        return refused(refusal);
    }
    let Ok(receipt) = serde_json::from_slice::<SignedReceipt>(&body) else {
        return error(ErrorCode::BadRequest, "not a receipt");
    };
    app.server.lock().unwrap().receipts.insert(job_id, receipt);
    StatusCode::NO_CONTENT.into_response()
}

async fn get_receipt(State(app): State<App>, Path(job_id): Path<u64>) -> Response {
    match app.server.lock().unwrap().receipts.get(&job_id) {
        Some(receipt) => Json(receipt.clone()).into_response(),
        None => error(ErrorCode::ReceiptNotFound, "no receipt"),
    }
}

/// A submitter's stream: the events of its job 7.
async fn submitter_events(Path(submitter): Path<String>, headers: HeaderMap) -> Response {
    if parse_felt(&submitter).ok() != Some(Felt::ONE) {
        return error(ErrorCode::BadRequest, "unknown submitter");
    }
    job_events(Path(7), headers).await.into_response()
}

async fn job_events(
    Path(job_id): Path<u64>,
    headers: HeaderMap,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let after: u64 = headers
        .get("last-event-id")
        .map_or(0, |id| id.to_str().unwrap().parse().unwrap());
    let states = [(1, JobState::Assigned), (2, JobState::Completed)];
    let mut events = vec![Ok(Event::default().comment("keep-alive"))];
    for (sequence, state) in states.into_iter().filter(|(s, _)| *s > after) {
        let event = JobEvent {
            sequence,
            job_id,
            submitter: Felt::ONE,
            state,
            worker: Some(WORKER),
            output_hash: None,
            block_number: 10 + sequence,
            transaction_hash: Felt::from(sequence),
        };
        // An event of another kind, which the client skips.
        events.push(Ok(Event::default().event("other").data("{}")));
        events.push(Ok(Event::default()
            .event(ciro_api::coordinator::JOB_EVENT)
            .id(sequence.to_string())
            .json_data(&event)
            .unwrap()));
    }
    Sse::new(futures_util::stream::iter(events))
}

async fn proxy_failure() -> Response {
    (StatusCode::BAD_GATEWAY, "<html>bad gateway</html>").into_response()
}

async fn start(keys: &[(Felt, &SigningKey)]) -> (String, App) {
    start_under("", keys).await
}

/// The coordinator mounted under `prefix` (as behind a proxy that keeps the prefix).
async fn start_under(prefix: &str, keys: &[(Felt, &SigningKey)]) -> (String, App) {
    let app = App::default();
    for (account, key) in keys {
        app.server
            .lock()
            .unwrap()
            .keys
            .insert(*account, key.verifying_key().scalar());
    }
    let router = Router::new()
        .route(routes::BLOB, put(put_blob).get(get_blob))
        .route(routes::BLOB_META, get(blob_meta))
        .route(routes::JOB_OUTPUT, put(put_output))
        .route(routes::SUBMITTER_EVENTS, get(submitter_events))
        .route(routes::JOB, get(get_job))
        .route(routes::JOBS, get(list_jobs))
        .route(routes::MODEL, get(proxy_failure))
        .route(routes::WORKER_HEARTBEAT, post(heartbeat))
        .route(routes::WORKER_ASSIGNMENTS, get(assignments))
        .route(routes::JOB_RECEIPT, put(put_receipt).get(get_receipt))
        .route(routes::JOB_EVENTS, get(job_events))
        .with_state(app.clone());
    let router = if prefix.is_empty() {
        router
    } else {
        Router::new().nest(prefix, router)
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}{prefix}", listener.local_addr().unwrap());
    app.server.lock().unwrap().origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, app)
}

fn worker_key() -> SigningKey {
    SigningKey::from_secret_scalar(Felt::from(0x5eedu32))
}

fn worker_client(url: &str) -> CoordinatorClient {
    CoordinatorClient::new(url)
        .unwrap()
        .with_signer(RequestSigner::new(worker_key(), WORKER, CHAIN_ID, JOB_MGR))
}

/// A coordinator (or someone on the path) that keeps a transfer open without sending it: a
/// blob trickled a byte at a time (each within the stall limit, so only the average rate
/// ends it), an answer that never comes, and an error whose body never ends. Each is
/// abandoned as stalled, or read only as far as it is shown, instead of holding the caller.
#[tokio::test]
async fn trickled_unanswered_and_endless_transfers_are_abandoned() {
    use futures_util::StreamExt;
    let trickle = || {
        futures_util::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Some((Ok::<_, Infallible>(Bytes::from_static(b"x")), ()))
        })
    };
    let app = Router::new()
        .route(
            routes::BLOB,
            get(move || async move { axum::body::Body::from_stream(trickle()) }).put(|| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                StatusCode::OK
            }),
        )
        .route(
            routes::JOB,
            get(|| async {
                // A 500 whose body never ends.
                let endless = futures_util::stream::repeat(Bytes::from_static(&[b'x'; 8192]))
                    .map(Ok::<_, Infallible>);
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    axum::body::Body::from_stream(endless),
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = worker_client(&url).with_transfer_pace(Duration::from_millis(500), 1_000);

    // Each call must end well within 10 s (without the rules they never end).
    let within = Duration::from_secs(10);
    let started = std::time::Instant::now();
    let error = tokio::time::timeout(within, client.download_blob(&Digest::of(b"blob")))
        .await
        .expect("the trickled download did not end within 10 s")
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::Stalled { reason, .. } if reason.contains("bytes a second")),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // A blob upload whose answer never comes (the route's handler sleeps for an hour).
    let started = std::time::Instant::now();
    let unanswered = tokio::time::timeout(within, client.upload_blob(&b"input"[..]))
        .await
        .expect("the unanswered upload did not end within 10 s")
        .unwrap_err();
    assert!(
        matches!(&unanswered, ClientError::Stalled { reason, .. } if reason.contains("no answer")),
        "{unanswered}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    let error = tokio::time::timeout(within, client.job(7))
        .await
        .expect("the endless error did not end within 10 s")
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::Http { status, .. } if status.as_u16() == 500),
        "{error}"
    );
}

#[tokio::test]
async fn a_signed_request_is_not_carried_across_a_redirect() {
    // A redirect from the coordinator's URL (a proxy rule, a shared gateway) to another host:
    // following it would hand that host headers still valid at the coordinator's origin.
    let elsewhere_hits = Arc::new(AtomicUsize::new(0));
    let hits = elsewhere_hits.clone();
    let elsewhere = Router::new().fallback(move || {
        let hits = hits.clone();
        async move {
            hits.fetch_add(1, Ordering::SeqCst);
            StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, elsewhere).await });
    let redirecting = Router::new().fallback(move |uri: axum::http::Uri| {
        let target = target.clone();
        async move { axum::response::Redirect::temporary(&format!("{target}{uri}")) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, redirecting).await });

    let client = worker_client(&url);
    let error = client
        .upload_blob(Bytes::from_static(b"private input"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ClientError::Http { status, .. } if status.is_redirection()),
        "{error}"
    );
    assert_eq!(elsewhere_hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn signed_blob_upload_then_verified_download() {
    let key = worker_key();
    let (url, _app) = start(&[(WORKER, &key)]).await;
    let client = worker_client(&url);
    let bytes = b"model file".to_vec();
    let info = client.upload_blob(bytes.clone()).await.unwrap();
    assert_eq!(info.digest, Digest::of(&bytes));
    assert_eq!(info.size, bytes.len() as u64);
    assert_eq!(client.download_blob(&info.digest).await.unwrap(), bytes);

    let missing = client
        .download_blob(&Digest::of(b"nothing"))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Some(ErrorCode::BlobNotFound));
    assert!(!missing.is_retryable());
}

#[tokio::test]
async fn an_upload_acknowledged_with_another_digest_is_an_error_not_a_digest_to_use() {
    let key = worker_key();
    let (url, app) = start(&[(WORKER, &key)]).await;
    let theirs = Digest::of(b"the attacker's input");
    app.server.lock().unwrap().misreport = Some(theirs);
    let client = worker_client(&url);
    let error = client.upload_blob(b"my input".to_vec()).await.unwrap_err();
    assert!(
        matches!(&error, ClientError::UploadMisreported { expected, reported, .. }
            if *expected == Digest::of(b"my input") && *reported == theirs),
        "{error:?}"
    );
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn a_blob_that_does_not_hash_to_its_digest_is_refused() {
    let (url, app) = start(&[]).await;
    let claimed = Digest::of(b"the real model");
    app.server
        .lock()
        .unwrap()
        .blobs
        .insert(claimed, Bytes::from_static(b"a tampered model"));
    let client = CoordinatorClient::new(&url).unwrap();
    let error = client.download_blob(&claimed).await.unwrap_err();
    assert!(
        matches!(&error, ClientError::DigestMismatch { expected, actual, .. }
            if *expected == claimed && *actual == Digest::of(b"a tampered model")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_blob_past_the_callers_limit_is_refused_before_it_is_read() {
    let (url, app) = start(&[]).await;
    let bytes = Bytes::from(vec![7u8; 4_096]);
    let digest = Digest::of(&bytes);
    app.server
        .lock()
        .unwrap()
        .blobs
        .insert(digest, bytes.clone());
    let client = CoordinatorClient::new(&url).unwrap();
    assert_eq!(
        client.download_blob_within(&digest, 4_096).await.unwrap(),
        bytes
    );
    let error = client
        .download_blob_within(&digest, 4_095)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::TooLarge { limit, .. } if *limit == 4_095),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    // The streaming reader refuses it too, before its first chunk.
    let refused = client.open_blob(&digest).await.unwrap().within(1_000);
    assert!(matches!(refused, Err(ClientError::TooLarge { .. })));
}

#[tokio::test]
async fn writes_without_a_signer_or_with_a_wrong_key_are_refused() {
    let key = worker_key();
    let (url, app) = start(&[(WORKER, &key)]).await;

    let anonymous = CoordinatorClient::new(&url).unwrap();
    let error = anonymous.upload_blob(b"x".to_vec()).await.unwrap_err();
    assert!(
        matches!(error, ClientError::SignerRequired(routes::BLOB)),
        "{error:?}"
    );
    assert_eq!(app.hits.load(Ordering::SeqCst), 0, "nothing was sent");
    let error = anonymous
        .poll_assignments(Duration::ZERO)
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::SignerRequired(_)), "{error:?}");

    let impostor = CoordinatorClient::new(&url)
        .unwrap()
        .with_signer(RequestSigner::new(
            SigningKey::from_secret_scalar(Felt::from(0xbadu32)),
            WORKER,
            CHAIN_ID,
            JOB_MGR,
        ));
    let error = impostor.upload_blob(b"x".to_vec()).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::InvalidSignature));
    assert!(
        matches!(&error, ClientError::Api { status, .. } if *status == StatusCode::UNAUTHORIZED)
    );

    // Signed for another chain: the hash differs, so the signature does not verify.
    let other_chain = CoordinatorClient::new(&url)
        .unwrap()
        .with_signer(RequestSigner::new(key.clone(), WORKER, Felt::ONE, JOB_MGR));
    let error = other_chain.upload_blob(b"x".to_vec()).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::InvalidSignature));

    // Signed for another deployment on the same chain: likewise.
    let other_deployment = CoordinatorClient::new(&url)
        .unwrap()
        .with_signer(RequestSigner::new(
            key,
            WORKER,
            CHAIN_ID,
            JOB_MGR + Felt::ONE,
        ));
    let error = other_deployment
        .upload_blob(b"x".to_vec())
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::InvalidSignature));
}

#[tokio::test]
async fn a_replayed_or_redirected_signature_is_refused() {
    // What an eavesdropper could do with one signed request's headers.
    let key = worker_key();
    let (url, _app) = start(&[(WORKER, &key)]).await;
    let body = b"input".to_vec();
    let digest = Digest::of(&body);
    let path = routes::blob(&digest);
    let signer = RequestSigner::new(key, WORKER, CHAIN_ID, JOB_MGR);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let origin = origin_of(&url::Url::parse(&url).unwrap()).unwrap();
    let auth = signer
        .sign(&RequestMessage {
            job_manager: JOB_MGR,
            coordinator: &origin,
            method: "PUT",
            path_and_query: &path,
            body_sha256: digest,
            timestamp: now,
            nonce: Felt::from(99u8),
        })
        .unwrap();
    let http = reqwest::Client::new();
    let send = |path: String, body: Vec<u8>| {
        http.put(format!("{url}{path}"))
            .headers(auth.to_headers())
            .body(body)
            .send()
    };
    let code = |response: reqwest::Response| async move {
        response.json::<ErrorBody>().await.unwrap().code
    };

    let other = Digest::of(b"other");
    let redirected = send(routes::blob(&other), b"other".to_vec()).await.unwrap();
    assert_eq!(code(redirected).await, ErrorCode::InvalidSignature);
    let swapped_body = send(path.clone(), b"tampered".to_vec()).await.unwrap();
    assert_eq!(code(swapped_body).await, ErrorCode::InvalidSignature);
    // Signed for a look-alike coordinator, which replays it here: refused, whether it names
    // the look-alike's origin or claims this one's.
    let look_alike = signer
        .sign(&RequestMessage {
            job_manager: JOB_MGR,
            coordinator: "https://look-alike.example",
            method: "PUT",
            path_and_query: &path,
            body_sha256: digest,
            timestamp: now,
            nonce: Felt::from(98u8),
        })
        .unwrap();
    let mut claimed = look_alike.clone();
    claimed.coordinator = origin.clone();
    for replayed in [look_alike, claimed] {
        let response = http
            .put(format!("{url}{path}"))
            .headers(replayed.to_headers())
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(code(response).await, ErrorCode::InvalidSignature);
    }
    let first = send(path.clone(), body.clone()).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let replay = send(path, body).await.unwrap();
    assert_eq!(code(replay).await, ErrorCode::ReplayedNonce);

    let mut unsigned = auth.to_headers();
    unsigned.remove(headers::SIGNATURE);
    let response = http
        .put(format!("{url}{}", routes::blob(&Digest::of(b""))))
        .headers(unsigned)
        .send()
        .await
        .unwrap();
    assert_eq!(code(response).await, ErrorCode::Unauthenticated);
}

#[tokio::test]
async fn reads_are_typed_and_errors_carry_their_code() {
    let (url, _app) = start(&[]).await;
    let client = CoordinatorClient::new(&url).unwrap();

    let details = client.job(7).await.unwrap();
    assert_eq!(details.job.job_id, 7);
    assert!(details.data.model && !details.data.input);

    let error = client.job(8).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::JobNotFound));
    assert!(error.is_retryable(), "the indexer may not have caught up");

    let page = client
        .list_jobs(&ListJobs {
            submitter: Some(Felt::from(0xabcu32)),
            limit: Some(2),
            ..ListJobs::default()
        })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    assert!(page
        .items
        .iter()
        .all(|job| job.submitter == Felt::from(0xabcu32)));
    assert_eq!(page.next_cursor.as_deref(), Some("after-101"));

    let error = client.model(1).await.unwrap_err();
    assert!(
        matches!(&error, ClientError::Http { status, body, .. }
            if *status == StatusCode::BAD_GATEWAY && body.contains("bad gateway")),
        "{error:?}"
    );
    assert!(error.is_retryable());
}

#[tokio::test]
async fn worker_heartbeat_poll_and_receipt() {
    let key = worker_key();
    let (url, _app) = start(&[(WORKER, &key)]).await;
    let client = worker_client(&url);

    let ack = client
        .heartbeat(&Heartbeat {
            running_jobs: 3,
            capacity: 4,
            models: vec![Digest::of(b"model")],
            agent_version: "0.1.0".into(),
            max_input_bytes: Some(64 << 20),
            max_model_bytes: None,
            max_batch_items: None,
        })
        .await
        .unwrap();
    assert_eq!((ack.server_time, ack.stale_after_secs), (3, 120));

    let polled = client
        .poll_assignments(Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(polled.assignments.len(), 1);
    assert_eq!(polled.assignments[0].model_hash, Digest::of(b"model"));
    let none = client.poll_assignments(Duration::ZERO).await.unwrap();
    assert!(none.assignments.is_empty());

    let receipt = Receipt {
        job_manager: Felt::from(0x1234u32),
        job_id: 7,
        worker: WORKER,
        model_hash: Digest::of(b"model"),
        input_hash: Digest::of(b"input"),
        output_hash: Digest::of(b"output"),
        device: "cpu".into(),
        libtorch_version: "2.11.0".into(),
        cuda_version: String::new(),
        deterministic: true,
        seed: 0,
        started_at: 1_800_000_001,
        finished_at: 1_800_000_002,
        model_load_ms: 10,
        inference_ms: 20,
    }
    .sign(&key, CHAIN_ID)
    .unwrap();
    client.upload_receipt(&receipt).await.unwrap();
    let stored = CoordinatorClient::new(&url)
        .unwrap()
        .receipt(7)
        .await
        .unwrap();
    assert_eq!(stored, receipt);
    assert!(stored.is_signed_by_key(key.verifying_key().scalar(), CHAIN_ID));
}

#[tokio::test]
async fn job_events_stream_and_resume_after_the_last_id() {
    let (url, _app) = start(&[]).await;
    let client = CoordinatorClient::new(&url).unwrap();

    let mut events = client.job_events(7, None).await.unwrap();
    let first = events.next().await.unwrap().unwrap();
    assert_eq!((first.sequence, first.state), (1, JobState::Assigned));
    assert_eq!(first.worker, Some(WORKER));
    let second = events.next().await.unwrap().unwrap();
    assert_eq!((second.sequence, second.state), (2, JobState::Completed));
    assert_eq!(events.next().await.unwrap(), None);

    let mut resumed = client.job_events(7, Some(first.sequence)).await.unwrap();
    assert_eq!(resumed.next().await.unwrap().unwrap(), second);
    assert_eq!(resumed.next().await.unwrap(), None);
}

#[tokio::test]
async fn a_base_url_path_prefix_is_kept_and_signed() {
    let key = worker_key();
    let (url, _app) = start_under("/ciro", &[(WORKER, &key)]).await;
    assert!(url.ends_with("/ciro"));
    // With and without a trailing slash.
    for base in [url.clone(), format!("{url}/")] {
        let client = worker_client(&base);
        let info = client.upload_blob(base.clone().into_bytes()).await.unwrap();
        assert_eq!(client.download_blob(&info.digest).await.unwrap(), base);
    }
}

#[test]
fn base_urls_that_cannot_take_a_path_are_refused() {
    for bad in [
        "not a url",
        "ftp://host",
        "http://host/?a=1",
        "http://host/#top",
    ] {
        let error = CoordinatorClient::new(bad).unwrap_err();
        assert!(matches!(error, ClientError::Url { .. }), "{bad}: {error:?}");
        assert!(!error.is_retryable());
    }
}

#[tokio::test]
async fn only_the_assigned_worker_uploads_the_output() {
    let key = worker_key();
    let stranger_key = SigningKey::from_secret_scalar(Felt::from(0x57u32));
    let stranger = Felt::from(0x5757u32);
    let (url, _app) = start(&[(WORKER, &key), (stranger, &stranger_key)]).await;

    let output = b"output tensors".to_vec();
    let accepted = worker_client(&url)
        .upload_output(7, output.clone())
        .await
        .unwrap();
    assert_eq!(accepted.output_hash, Digest::of(&output));
    assert_eq!(accepted.size, output.len() as u64);
    let meta = CoordinatorClient::new(&url)
        .unwrap()
        .blob_meta(&accepted.output_hash)
        .await
        .unwrap();
    assert_eq!(meta.size, output.len() as u64);

    let error = CoordinatorClient::new(&url)
        .unwrap()
        .with_signer(RequestSigner::new(
            stranger_key,
            stranger,
            CHAIN_ID,
            JOB_MGR,
        ))
        .upload_output(7, b"forged".to_vec())
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::NotAssigned));
    assert!(matches!(&error, ClientError::Api { status, .. } if *status == StatusCode::FORBIDDEN));
}

#[tokio::test]
async fn a_submitters_events_stream() {
    let (url, _app) = start(&[]).await;
    let mut events = CoordinatorClient::new(&url)
        .unwrap()
        .submitter_events(Felt::ONE, None)
        .await
        .unwrap();
    let first = events.next().await.unwrap().unwrap();
    assert_eq!((first.job_id, first.submitter), (7, Felt::ONE));
}

/// A batch's items body from a coordinator that lies about it (an item longer than the
/// caller's limit, a length that would overflow, a body ending inside an item or its length)
/// is refused item by item, never trusted or panicked on; a caller that takes its time
/// between items (a worker computing) is not taken for a stalled transfer; and whether a
/// coordinator serves a route is read from its OpenAPI document.
#[tokio::test]
async fn a_lying_items_body_is_refused_and_a_slow_reader_is_not_stalled() {
    use ciro_api::coordinator::items::{encode, prefix};
    use ciro_api::coordinator::routes::HttpMethod;
    use futures_util::StreamExt;
    let bodies = |job_id: u64| -> Vec<u8> {
        match job_id {
            1 => encode([&b"abcde"[..], b"xyz"]),
            2 => [&prefix(100)[..], &[7u8; 10]].concat(),
            3 => prefix(u64::MAX).to_vec(),
            4 => [&prefix(2000)[..], &[1u8; 2000]].concat(),
            _ => vec![0, 0, 1],
        }
    };
    let app = Router::new()
        .route(
            routes::JOB_INPUTS,
            get(move |Path(job_id): Path<u64>| async move {
                // In two chunks, the second after a pause (so that the client reads it after
                // its own wait).
                let body = bodies(job_id);
                let (first, second) = body.split_at(body.len().min(13));
                let (first, second) = (first.to_vec(), second.to_vec());
                let chunks = futures_util::stream::iter([first, second]).then(|chunk| async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok::<_, Infallible>(chunk)
                });
                axum::body::Body::from_stream(chunks)
            }),
        )
        .route(
            routes::OPENAPI,
            get(|| async { Json(serde_json::json!({"paths": {routes::JOB_INPUTS: {"get": {}}}})) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = worker_client(&url).with_transfer_pace(Duration::from_millis(500), 1_000);

    let mut items = client.open_batch_inputs(1, 0).await.expect("open");
    assert_eq!(&items.next_item(5).await.unwrap().unwrap()[..], b"abcde");
    // The caller's own time between items is not the transfer's.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(&items.next_item(5).await.unwrap().unwrap()[..], b"xyz");
    assert!(items.next_item(5).await.unwrap().is_none());

    let mut items = client.open_batch_inputs(2, 0).await.expect("open");
    let truncated = items.next_item(1000).await.unwrap_err();
    assert!(
        matches!(truncated, ClientError::Truncated { .. }) && truncated.is_retryable(),
        "{truncated}"
    );
    for (job_id, limit) in [(3, u64::MAX), (4, 1000)] {
        let mut items = client.open_batch_inputs(job_id, 0).await.expect("open");
        let error = items.next_item(limit).await.unwrap_err();
        assert!(
            matches!(error, ClientError::TooLarge { limit: l, .. } if l == limit),
            "job {job_id}: {error}"
        );
    }
    let mut items = client.open_batch_inputs(5, 0).await.expect("open");
    assert!(matches!(
        items.next_item(1000).await.unwrap_err(),
        ClientError::Truncated { .. }
    ));

    // (Public: asked without a signer.)
    let unsigned = CoordinatorClient::new(&url).unwrap();
    assert!(unsigned
        .serves(&[(HttpMethod::Get, routes::JOB_INPUTS)])
        .await
        .unwrap());
    assert!(!unsigned
        .serves(&[
            (HttpMethod::Get, routes::JOB_INPUTS),
            (HttpMethod::Put, routes::JOB_OUTPUTS)
        ])
        .await
        .unwrap());
}
