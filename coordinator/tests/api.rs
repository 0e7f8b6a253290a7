//! The REST API's answers to bad and unsigned input, served in-process over a fresh SQLite
//! store and blob directory: every refusal is a JSON error body with its specific code, and
//! changes nothing. (Signed flows need a chain to verify signatures: the end-to-end suite.)

use std::net::SocketAddr;
use std::sync::Arc;

use ciro_api::coordinator::{ErrorBody, ErrorCode};
use ciro_chain::starknet::core::types::Felt;
use ciro_chain::starknet::providers::jsonrpc::HttpTransport;
use ciro_chain::starknet::providers::JsonRpcClient;
use ciro_coordinator::api::{Api, ApiConfig, Verifier};
use ciro_coordinator::blobs::LocalBlobStore;
use ciro_coordinator::indexer::IndexerStatus;
use ciro_coordinator::store::Store;
use ciro_service::CancellationToken;

struct Served {
    base: String,
    http: reqwest::Client,
    store: Store,
    _dir: tempfile::TempDir,
}

/// The origin the in-process coordinator answers as.
const ORIGIN: &str = "https://coordinator.ciro.test";

async fn serve(config: ApiConfig) -> Served {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("c.db").display()))
        .await
        .expect("store");
    let blobs = LocalBlobStore::open_dir(dir.path().join("blobs"))
        .await
        .expect("blobs");
    // No node: unsigned requests never reach it.
    let node = Arc::new(JsonRpcClient::new(HttpTransport::new(
        url::Url::parse("http://127.0.0.1:9/rpc").expect("url"),
    )));
    let failures = Api::auth_failures_counter().expect("counter");
    let api = Api::new(
        store.clone(),
        Arc::new(blobs),
        Verifier::new(
            node,
            Felt::ONE,
            vec![ORIGIN.to_owned()],
            store.clone(),
            300,
            failures,
        ),
        config,
        Arc::new(IndexerStatus::default()),
        CancellationToken::new(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let router = api.router();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    Served {
        base: format!("http://{address}"),
        http: reqwest::Client::new(),
        store,
        _dir: dir,
    }
}

async fn error_of(response: reqwest::Response) -> (u16, ErrorCode, String) {
    let status = response.status().as_u16();
    let body: ErrorBody = response.json().await.expect("a JSON error body");
    (status, body.code, body.message)
}

#[tokio::test]
async fn bad_and_unsigned_requests_get_their_specific_4xx_as_json() {
    let s = serve(ApiConfig::default()).await;
    let digest = ciro_api::wire::Digest::of(b"input");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let cases: Vec<(reqwest::RequestBuilder, u16, ErrorCode, &str)> = vec![
        (
            s.http.get(format!("{}/v1/nope", s.base)),
            404,
            ErrorCode::NotFound,
            "no such route",
        ),
        (
            s.http.delete(format!("{}/v1/jobs", s.base)),
            405,
            ErrorCode::MethodNotAllowed,
            "method",
        ),
        (
            s.http.get(format!("{}/v1/jobs/12x", s.base)),
            400,
            ErrorCode::BadRequest,
            "job id",
        ),
        (
            s.http.get(format!("{}/v1/jobs/7", s.base)),
            404,
            ErrorCode::JobNotFound,
            "not in the index",
        ),
        (
            s.http.get(format!("{}/v1/models/7", s.base)),
            404,
            ErrorCode::ModelNotFound,
            "no model 7",
        ),
        (
            s.http.get(format!("{}/v1/workers/0xzz", s.base)),
            400,
            ErrorCode::BadRequest,
            "address",
        ),
        (
            s.http.get(format!("{}/v1/workers/0x5", s.base)),
            404,
            ErrorCode::WorkerNotFound,
            "0x5",
        ),
        (
            s.http.get(format!("{}/v1/jobs?state=lost", s.base)),
            400,
            ErrorCode::BadRequest,
            "query",
        ),
        (
            s.http.get(format!("{}/v1/jobs?limit=0", s.base)),
            400,
            ErrorCode::BadRequest,
            "limit",
        ),
        (
            // Past the sequences the database holds: refused, not a stream that fails forever.
            s.http
                .get(format!("{}/v1/events?after=9223372036854775808", s.base)),
            400,
            ErrorCode::BadRequest,
            "after",
        ),
        (
            s.http.get(format!("{}/v1/blobs/abc", s.base)),
            400,
            ErrorCode::BadRequest,
            "SHA-256",
        ),
        (
            s.http.get(format!("{}/v1/blobs/{digest}", s.base)),
            404,
            ErrorCode::BlobNotFound,
            "no public blob",
        ),
        (
            s.http
                .put(format!("{}/v1/blobs/{digest}", s.base))
                .body("input"),
            401,
            ErrorCode::Unauthenticated,
            "signed",
        ),
        (
            s.http
                .put(format!("{}/v1/blobs/{digest}", s.base))
                .header("x-ciro-account", "0x1")
                .body("input"),
            401,
            ErrorCode::Unauthenticated,
            "x-ciro-timestamp",
        ),
        (
            s.http
                .put(format!("{}/v1/blobs/{digest}", s.base))
                .header("x-ciro-account", "0x1")
                .header("x-ciro-coordinator", ORIGIN)
                .header("x-ciro-timestamp", "1")
                .header("x-ciro-nonce", "0x1")
                .header("x-ciro-content-sha256", digest.to_string())
                .header("x-ciro-signature", "0x1,0x2")
                .body("input"),
            401,
            ErrorCode::StaleRequest,
            "window",
        ),
        (
            // Signed for a look-alike's origin (what it would replay here): refused before
            // the account is asked (this coordinator has no node: asking it would be a 503).
            s.http
                .put(format!("{}/v1/blobs/{digest}", s.base))
                .header("x-ciro-account", "0x1")
                .header(
                    "x-ciro-coordinator",
                    "https://coordinator.ciro.test.look-alike.example",
                )
                .header("x-ciro-timestamp", now.to_string())
                .header("x-ciro-nonce", "0x1")
                .header("x-ciro-content-sha256", digest.to_string())
                .header("x-ciro-signature", "0x1,0x2")
                .body("input"),
            401,
            ErrorCode::InvalidSignature,
            "--public-url",
        ),
        (
            s.http
                .put(format!("{}/v1/blobs/{digest}", s.base))
                .header("x-ciro-account", "0x1")
                .header("x-ciro-timestamp", now.to_string())
                .header("x-ciro-nonce", "0x1")
                .header("x-ciro-content-sha256", digest.to_string())
                .header("x-ciro-signature", "0x1,0x2")
                .body("input"),
            401,
            ErrorCode::Unauthenticated,
            "x-ciro-coordinator",
        ),
        (
            s.http
                .post(format!("{}/v1/workers/0x5/heartbeat", s.base))
                .body("{not json"),
            401,
            ErrorCode::Unauthenticated,
            "signed",
        ),
        (
            s.http.get(format!("{}/v1/workers/0x5/assignments", s.base)),
            401,
            ErrorCode::Unauthenticated,
            "signed",
        ),
    ];
    for (request, status, code, says) in cases {
        let (got_status, got_code, message) = error_of(request.send().await.expect("send")).await;
        assert_eq!((got_status, got_code), (status, code), "{message}");
        assert!(
            message.contains(says),
            "{code:?}: {message:?} lacks {says:?}"
        );
    }
    // Nothing was stored.
    let (status, code, _) = error_of(
        s.http
            .get(format!("{}/v1/blobs/{digest}/meta", s.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code), (404, ErrorCode::BlobNotFound));
    // Lists of an empty index are empty pages, and the OpenAPI document is served.
    let page: serde_json::Value = s
        .http
        .get(format!("{}/v1/jobs", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page, serde_json::json!({"items": []}));
    let doc: serde_json::Value = s
        .http
        .get(format!("{}/openapi.json", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/v1/jobs/{job_id}"]["get"].is_object());
}

#[tokio::test]
async fn a_client_past_its_rate_gets_429() {
    let s = serve(ApiConfig {
        rate_per_sec: 1,
        rate_burst: 2,
        ..ApiConfig::default()
    })
    .await;
    let url = format!("{}/v1/models", s.base);
    for _ in 0..2 {
        assert_eq!(s.http.get(&url).send().await.unwrap().status(), 200);
    }
    let (status, code, message) = error_of(s.http.get(&url).send().await.unwrap()).await;
    assert_eq!((status, code), (429, ErrorCode::RateLimited), "{message}");
}

#[tokio::test]
async fn event_streams_past_a_clients_or_the_servers_limit_are_refused_until_one_closes() {
    // One client may hold two streams open: a third is 429, whichever stream it asks for.
    let s = serve(ApiConfig {
        max_event_streams: 3,
        max_event_streams_per_client: 2,
        ..ApiConfig::default()
    })
    .await;
    let all = format!("{}/v1/events?after=0", s.base);
    let mine = format!("{}/v1/submitters/0xabc/events", s.base);
    let open = |url: String| {
        let http = s.http.clone();
        async move { http.get(url).send().await.expect("request") }
    };
    let first = open(all.clone()).await;
    let second = open(mine.clone()).await;
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let (status, code, message) = error_of(open(all.clone()).await).await;
    assert_eq!((status, code), (429, ErrorCode::RateLimited), "{message}");
    assert!(message.contains("close one first"), "{message}");
    // Closing one gives its place back (once the server sees the connection gone).
    drop(first);
    let mut again = None;
    for _ in 0..150 {
        let response = open(mine.clone()).await;
        if response.status() == 200 {
            again = Some(response);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let _again = again.expect("a closed stream's place is given back within 30 s");
    drop(second);

    // The server's own limit: past it, 503 for everyone.
    let s = serve(ApiConfig {
        max_event_streams: 2,
        max_event_streams_per_client: 16,
        ..ApiConfig::default()
    })
    .await;
    let url = format!("{}/v1/events?after=0", s.base);
    let _held = [
        s.http.get(&url).send().await.expect("request"),
        s.http.get(&url).send().await.expect("request"),
    ];
    let (status, code, message) = error_of(s.http.get(&url).send().await.unwrap()).await;
    assert_eq!((status, code), (503, ErrorCode::Unavailable), "{message}");
}

#[tokio::test]
async fn network_stats_of_any_window_are_the_last_minutes_of_one_answer() {
    // `minutes` 1 to 60 is one computation (a client cycling through them used to cost one
    // each): every window is the newest minutes of the widest one.
    let s = serve(ApiConfig::default()).await;
    let stats = |minutes: u8| {
        let url = format!("{}/v1/stats?minutes={minutes}", s.base);
        let http = s.http.clone();
        async move {
            let response = http.get(url).send().await.expect("stats");
            assert_eq!(response.status().as_u16(), 200);
            response
                .json::<ciro_api::coordinator::NetworkStats>()
                .await
                .expect("stats body")
        }
    };
    let wide = stats(60).await;
    assert_eq!(wide.recent.len(), 60);
    for minutes in [1u8, 5, 15, 59] {
        let narrow = stats(minutes).await;
        assert_eq!(narrow.recent.len(), usize::from(minutes));
        let newest = narrow.recent.last().expect("a minute").minute;
        assert_eq!(newest, wide.recent.last().expect("a minute").minute);
        assert!(narrow
            .recent
            .windows(2)
            .all(|w| w[1].minute == w[0].minute + 60));
    }
    let (status, code, _) = error_of(
        s.http
            .get(format!("{}/v1/stats?minutes=61", s.base))
            .send()
            .await
            .expect("stats"),
    )
    .await;
    assert_eq!((status, code), (400, ErrorCode::BadRequest));
}

#[tokio::test]
async fn open_event_streams_share_one_reader_of_the_log() {
    // Each stream read the log every 250 ms itself: a thousand streams, thousands of queries
    // a second. Now one reader fans entries out; a stream reads only to catch up.
    use ciro_coordinator::store::{Batch, JobRow, Mutation};
    let s = serve(ApiConfig {
        max_event_streams_per_client: 64,
        ..ApiConfig::default()
    })
    .await;
    let mut streams = Vec::new();
    for i in 0..20 {
        let url = if i % 2 == 0 {
            format!("{}/v1/events?after=0", s.base)
        } else {
            format!("{}/v1/submitters/0xabc/events", s.base)
        };
        let response = s.http.get(url).send().await.expect("stream");
        assert_eq!(response.status().as_u16(), 200);
        streams.push(response);
    }
    // Settled (each stream's catch-up done), then two idle seconds.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let before = s.store.event_log_reads();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let reads = s.store.event_log_reads() - before;
    assert!(
        reads <= 20,
        "{reads} reads of the event log in 2 s with 20 idle streams open"
    );

    // An entry recorded now reaches every stream, once.
    let job = JobRow {
        job_id: 1,
        submitter: "0xabc".into(),
        model_id: 1,
        input_hash: "11".repeat(32),
        fee: "0x64".into(),
        deadline: 1_000,
        items: 1,
        min_vram_mb: 0,
        required_flags: 0,
        min_stake_tier: 0,
        min_score: 0,
        terms: "{}".into(),
        dispute_bond: "0x1".into(),
        state: "Queued".into(),
        worker: None,
        output_hash: None,
        disputer: None,
        assigned_at: None,
        completed_at: None,
        dispute: None,
    };
    s.store
        .apply(&Batch {
            contract: "JobMgr".into(),
            cursor: ciro_chain::events::EventCursor::at(2),
            events: 1,
            block: 1,
            mutations: vec![
                Mutation::JobSubmitted(job),
                Mutation::JobEvent {
                    job_id: 1,
                    block_number: 1,
                    tx_hash: "0x1".into(),
                    recorded_at: 7,
                },
            ],
            from: ciro_coordinator::store::PageStart::Anywhere,
        })
        .await
        .expect("an entry");
    for mut response in streams {
        let mut text = String::new();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while !text.contains("job_id") || !text.ends_with("\n\n") {
            let chunk = tokio::time::timeout_at(deadline, response.chunk())
                .await
                .expect("the entry reached the stream")
                .expect("a chunk")
                .expect("open");
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        assert_eq!(text.matches("\"job_id\":1").count(), 1, "{text}");
        assert!(text.contains("id: 1"), "{text}");
    }
}
