//! Signed requests attacked, against a coordinator verifying through devnet's account
//! contracts (`is_valid_signature`): a forged signature, a signature for another path or
//! another body, an expired timestamp, a replayed nonce, a worker polling or beating for
//! another worker, a worker uploading the output of a job assigned to someone else, a stranger
//! uploading a receipt, a worker giving back another's job. Each gets its specific 4xx and changes nothing; the honest request
//! after them succeeds.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use ciro_api::coordinator::auth::{headers, origin_of};
use ciro_api::coordinator::{ErrorBody, ErrorCode, Heartbeat, RequestMessage, RequestSigner};
use ciro_api::wire::Digest;
use ciro_chain::starknet::core::types::Felt;
use ciro_tests::system::*;
use ciro_tests::Actor;
use common::{signer, Options, Running};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// A request signed by `signer` for `method path` over `signed_body`, sent with `body`.
struct Signed<'a> {
    signer: &'a RequestSigner,
    method: &'static str,
    path: String,
    signed_body: Vec<u8>,
    body: Vec<u8>,
    timestamp: u64,
    nonce: Felt,
    /// The origin it is signed for (`None`: the coordinator's it is sent to).
    coordinator: Option<String>,
}

impl<'a> Signed<'a> {
    fn new(signer: &'a RequestSigner, method: &'static str, path: String, body: Vec<u8>) -> Self {
        Self {
            signer,
            method,
            path,
            signed_body: body.clone(),
            body,
            timestamp: now(),
            nonce: Felt::from(now() * 1_000 + NONCES.fetch_add(1, Ordering::SeqCst)),
            coordinator: None,
        }
    }

    fn headers(&self, base: &str) -> reqwest::header::HeaderMap {
        let origin = origin_of(&url::Url::parse(base).expect("base URL")).expect("origin");
        let auth = self
            .signer
            .sign(&RequestMessage {
                job_manager: self.signer.job_manager(),
                coordinator: self.coordinator.as_deref().unwrap_or(&origin),
                method: self.method,
                path_and_query: &self.path,
                body_sha256: Digest::of(&self.signed_body),
                timestamp: self.timestamp,
                nonce: self.nonce,
            })
            .expect("sign");
        auth.to_headers()
    }

    async fn send(&self, c: &Running, path_sent: Option<&str>) -> reqwest::Response {
        let url = format!("{}{}", c.base, path_sent.unwrap_or(&self.path));
        let method = reqwest::Method::from_bytes(self.method.as_bytes()).expect("method");
        let mut request = reqwest::Client::new()
            .request(method, url)
            .headers(self.headers(&c.base))
            .body(self.body.clone());
        if self.method == "POST" {
            request = request.header("content-type", "application/json");
        }
        request.send().await.expect("request")
    }
}

/// Fresh nonces for this process's requests.
static NONCES: AtomicU64 = AtomicU64::new(1);

async fn refused(response: reqwest::Response, status: u16, code: ErrorCode) -> String {
    let got = response.status().as_u16();
    let body: ErrorBody = response.json().await.expect("a JSON error");
    assert_eq!(got, status, "{}", body.message);
    assert_eq!(body.code, code, "{}", body.message);
    body.message
}

fn beat() -> Vec<u8> {
    serde_json::to_vec(&Heartbeat {
        running_jobs: 0,
        capacity: 1,
        models: vec![],
        agent_version: "auth-test".into(),
        max_input_bytes: None,
        max_model_bytes: None,
        max_batch_items: None,
    })
    .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_expired_replayed_and_misdirected_requests_are_refused_and_change_nothing() {
    let s = System::deploy().await.expect("deploy");
    // No account: this coordinator assigns nothing; the test assigns on chain itself.
    let c = Running::start(
        &s,
        Options {
            with_account: false,
            ..Options::default()
        },
    )
    .await;
    let (_, job) = s.assigned_job().await; // to WorkerA
    s.active_worker(Actor::WorkerB).await;
    let a_address = s.net.address(Actor::WorkerA);
    let beat_path = format!("/v1/workers/{a_address:#x}/heartbeat");
    common::eventually(
        "the workers and the job are indexed",
        std::time::Duration::from_secs(60),
        || async {
            let b = c.client().worker(s.net.address(Actor::WorkerB)).await.ok();
            let j = c.client().job(job).await.ok();
            b.zip(j).map(drop)
        },
    )
    .await;
    let a = signer(&s, Actor::WorkerA);
    let b = signer(&s, Actor::WorkerB);

    // Forged: A's address, the attacker's key.
    let forger = RequestSigner::new(
        s.net.signing_key(Actor::Attacker),
        a_address,
        s.net.chain_id(),
        s.job_mgr,
    );
    let forged = Signed::new(&forger, "POST", beat_path.clone(), beat());
    refused(
        forged.send(&c, None).await,
        401,
        ErrorCode::InvalidSignature,
    )
    .await;

    // A's real signature, for another path (B's heartbeat route).
    let elsewhere = Signed::new(&a, "POST", beat_path.clone(), beat());
    let b_path = format!("/v1/workers/{:#x}/heartbeat", s.net.address(Actor::WorkerB));
    refused(
        elsewhere.send(&c, Some(&b_path)).await,
        401,
        ErrorCode::InvalidSignature,
    )
    .await;

    // A's real signature over one body, sent with another.
    let mut swapped = Signed::new(&a, "POST", beat_path.clone(), beat());
    swapped.body = br#"{"running_jobs":0,"capacity":64,"models":[],"agent_version":"x"}"#.to_vec();
    let message = refused(
        swapped.send(&c, None).await,
        401,
        ErrorCode::InvalidSignature,
    )
    .await;
    assert!(
        message.contains("SHA-256") || message.contains("body"),
        "{message}"
    );

    // A's real signature, made for another deployment's coordinator on this chain (a worker
    // serving two networks with one account): the path, body and time all match, only the
    // JobMgr it names differs, and this coordinator refuses it.
    let other_deployment = RequestSigner::new(
        s.net.signing_key(Actor::WorkerA),
        a_address,
        s.net.chain_id(),
        s.pool,
    );
    let replayed = Signed::new(&other_deployment, "POST", beat_path.clone(), beat());
    refused(
        replayed.send(&c, None).await,
        401,
        ErrorCode::InvalidSignature,
    )
    .await;

    // A's real signature, made for a look-alike coordinator A was led to (what it would
    // replay here within the window): refused before A's account is asked; and with its
    // origin header rewritten to this coordinator's, the signature no longer matches.
    let mut look_alike = Signed::new(&a, "POST", beat_path.clone(), beat());
    look_alike.coordinator = Some("https://coordinator.look-alike.example".into());
    let message = refused(
        look_alike.send(&c, None).await,
        401,
        ErrorCode::InvalidSignature,
    )
    .await;
    assert!(
        message.contains("coordinator.look-alike.example")
            && message.contains("not an origin this coordinator answers as"),
        "{message}"
    );
    let mut rewritten = look_alike.headers(&c.base);
    rewritten.insert(
        headers::COORDINATOR,
        origin_of(&url::Url::parse(&c.base).expect("base"))
            .expect("origin")
            .parse()
            .expect("header"),
    );
    let response = reqwest::Client::new()
        .post(format!("{}{beat_path}", c.base))
        .headers(rewritten)
        .header("content-type", "application/json")
        .body(beat())
        .send()
        .await
        .expect("request");
    let message = refused(response, 401, ErrorCode::InvalidSignature).await;
    assert!(message.contains("does not accept"), "{message}");

    // Expired: signed an hour ago.
    let mut stale = Signed::new(&a, "POST", beat_path.clone(), beat());
    stale.timestamp -= 3_600;
    refused(stale.send(&c, None).await, 401, ErrorCode::StaleRequest).await;

    // B beating as A, and B polling A's assignments.
    let impostor = Signed::new(&b, "POST", beat_path.clone(), beat());
    refused(impostor.send(&c, None).await, 403, ErrorCode::Forbidden).await;
    let polling = Signed::new(
        &b,
        "GET",
        format!("/v1/workers/{a_address:#x}/assignments"),
        vec![],
    );
    refused(polling.send(&c, None).await, 403, ErrorCode::Forbidden).await;

    // None of that recorded a heartbeat for A.
    let a_row = c.client().worker(a_address).await.expect("A");
    assert!(a_row.liveness.is_none(), "{:?}", a_row.liveness);

    // A heartbeat listing more models than a heartbeat may (each is 64 characters of every
    // listing of the worker, for any registered account) is refused.
    let mut crowded: Heartbeat = serde_json::from_slice(&beat()).expect("a heartbeat");
    crowded.models = (0..=ciro_api::coordinator::MAX_HEARTBEAT_MODELS as u32)
        .map(|i| Digest::of(&i.to_be_bytes()))
        .collect();
    let crowded = Signed::new(
        &a,
        "POST",
        beat_path.clone(),
        serde_json::to_vec(&crowded).expect("json"),
    );
    let message = refused(crowded.send(&c, None).await, 400, ErrorCode::BadRequest).await;
    assert!(message.contains("at most 100 models"), "{message}");

    // The honest heartbeat is accepted once; its replay is refused.
    let honest = Signed::new(&a, "POST", beat_path.clone(), beat());
    assert_eq!(honest.send(&c, None).await.status().as_u16(), 200);
    refused(honest.send(&c, None).await, 401, ErrorCode::ReplayedNonce).await;
    assert!(c
        .client()
        .worker(a_address)
        .await
        .expect("A")
        .liveness
        .is_some());

    // B uploads an output for A's job; a stranger uploads its receipt. Neither is stored.
    let output = b"not B's job".to_vec();
    let output_path = format!("/v1/jobs/{job}/output/{}", Digest::of(&output));
    let upload = Signed::new(&b, "PUT", output_path, output);
    refused(upload.send(&c, None).await, 403, ErrorCode::NotAssigned).await;
    let attacker = signer(&s, Actor::Attacker);
    let receipt = Signed::new(
        &attacker,
        "PUT",
        format!("/v1/jobs/{job}/receipt"),
        br#"{"receipt":{},"signature":[]}"#.to_vec(),
    );
    let response = receipt.send(&c, None).await;
    assert!(
        [400, 403].contains(&response.status().as_u16()),
        "a stranger's receipt: {}",
        response.status()
    );
    let details = c.client().job(job).await.expect("job");
    assert!(
        !details.data.output && !details.data.receipt,
        "{:?}",
        details.data
    );

    // B gives back A's job: refused. A gives it back: accepted (the leader releases it).
    let body = br#"{"reason":"cannot run it"}"#.to_vec();
    let stranger = Signed::new(&b, "POST", format!("/v1/jobs/{job}/release"), body.clone());
    refused(stranger.send(&c, None).await, 403, ErrorCode::NotAssigned).await;
    let long = format!(r#"{{"reason":"{}"}}"#, "x".repeat(501)).into_bytes();
    let too_long = Signed::new(&a, "POST", format!("/v1/jobs/{job}/release"), long);
    refused(too_long.send(&c, None).await, 400, ErrorCode::BadRequest).await;
    let honest = Signed::new(&a, "POST", format!("/v1/jobs/{job}/release"), body);
    assert_eq!(honest.send(&c, None).await.status().as_u16(), 200);
    c.stop().await;
}

/// The attack: an account that uploaded a tiny blob once names it again with a large body.
/// A re-upload adds nothing to the account's unreferenced bytes, so the quota lets it in; it
/// must not also skip the size limit (bytes that hash to the digest are exactly the blob's
/// size), nor the count of uploads in progress and the disk floor, or one account could
/// stream any number of bodies of the largest size into the staging area at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_re_upload_cannot_carry_more_bytes_than_the_blob_it_names() {
    let s = System::deploy().await.expect("deploy");
    let c = Running::start(
        &s,
        Options {
            with_account: false,
            ..Options::default()
        },
    )
    .await;
    let submitter = signer(&s, Actor::Submitter);
    let tiny = b"ten bytes.".to_vec();
    let digest = c
        .client_as(&s, Actor::Submitter)
        .upload_blob(tiny.clone())
        .await
        .expect("the first upload")
        .digest;
    let path = ciro_api::coordinator::routes::blob(&digest);
    // A megabyte under the tiny blob's name is refused before its body is read,
    // (a blob upload signs the digest it names: the body is checked against it as it streams)
    let mut large = Signed::new(&submitter, "PUT", path.clone(), vec![7; 1 << 20]);
    large.signed_body = tiny.clone();
    let message = refused(large.send(&c, None).await, 413, ErrorCode::PayloadTooLarge).await;
    assert!(message.contains("is 10 bytes"), "{message}");
    // while the same bytes again are taken.
    let again = Signed::new(&submitter, "PUT", path, tiny);
    assert!(again.send(&c, None).await.status().is_success());
    c.stop().await;
}

/// The attack: a worker's key opens long-polls without end (each waits up to 30 s and reads
/// the database five times a second), until the pool's connections time out and the whole API,
/// the leader's lease renewal included, fails. One worker may have two polls waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_cannot_hold_more_than_two_long_polls_waiting() {
    let s = System::deploy().await.expect("deploy");
    let c = Running::start(
        &s,
        Options {
            with_account: false,
            ..Options::default()
        },
    )
    .await;
    s.active_worker(Actor::WorkerA).await;
    let a = signer(&s, Actor::WorkerA);
    let address = s.net.address(Actor::WorkerA);
    common::eventually(
        "the worker is indexed",
        std::time::Duration::from_secs(60),
        || async { c.client().worker(address).await.ok() },
    )
    .await;
    let path = format!("/v1/workers/{address:#x}/assignments?wait_secs=30");
    let poll = |path: String| {
        let request = Signed::new(&a, "GET", path, vec![]);
        let (url, headers) = (
            format!("{}{}", c.base, request.path),
            request.headers(&c.base),
        );
        tokio::spawn(async move {
            reqwest::Client::new()
                .get(url)
                .headers(headers)
                .send()
                .await
                .expect("a long-poll")
        })
    };
    // Two polls wait (nothing is assigned),
    let waiting = [poll(path.clone()), poll(path.clone())];
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(waiting.iter().all(|p| !p.is_finished()), "both polls wait");
    // a third is refused with the reason,
    let third = poll(path.clone()).await.expect("the third poll");
    let message = refused(third, 429, ErrorCode::RateLimited).await;
    assert!(message.contains("long-polls"), "{message}");
    // while a poll that does not wait still answers at once.
    let at_once = poll(format!("/v1/workers/{address:#x}/assignments"))
        .await
        .expect("a poll without a wait");
    assert_eq!(at_once.status().as_u16(), 200);
    for p in waiting {
        p.abort();
    }
    c.stop().await;
}

/// Opens an upload of `bytes` signed by `signer` through `c` that sends one byte of its body
/// and then holds the connection open, in progress, until the task is aborted.
async fn hold_upload(
    c: &Running,
    signer: &RequestSigner,
    bytes: Vec<u8>,
) -> tokio::task::JoinHandle<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let path = ciro_api::coordinator::routes::blob(&Digest::of(&bytes));
    let request = Signed::new(signer, "PUT", path.clone(), bytes.clone());
    let address = c.base.trim_start_matches("http://").to_owned();
    let mut head = format!(
        "PUT {path} HTTP/1.1\r\nhost: {address}\r\ncontent-length: {}\r\n",
        bytes.len()
    );
    for (name, value) in request.headers(&c.base).iter() {
        let value = value.to_str().expect("an ASCII header");
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    stream.write_all(head.as_bytes()).await.expect("headers");
    stream.write_all(&bytes[..1]).await.expect("a first byte");
    tokio::spawn(async move {
        // Held until aborted (or until the server answers, which the test then sees as a
        // fifth upload accepted).
        let mut answer = [0u8; 256];
        let _ = stream.read(&mut answer).await;
        panic!(
            "a held upload was answered: {}",
            String::from_utf8_lossy(&answer)
        );
    })
}

/// What the uploads in progress hold for `account`, every replica's counted (read through
/// a reservation that is always refused).
async fn in_progress(
    store: &ciro_coordinator::store::Store,
    account: &str,
) -> ciro_coordinator::records::UploadsInProgress {
    store
        .reserve_upload("a look", account, 0, 100, |held| Err(*held))
        .await
        .expect("reading the reservations")
        .expect_err("always refused")
}

/// The attack: an account spreads its uploads over the coordinator's replicas to hold more
/// in progress (more of the staging disk, more of its quota unchecked) than one replica lets
/// it. Each replica counting only its own uploads admitted N times as much with N replicas;
/// the reservations are now shared in the database, so the fifth upload is refused through
/// either replica (after the held uploads outlived their reservations' first lifetimes:
/// renewed, they still count), and once the held uploads end (their client went away) the
/// account uploads again through either.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_account_spreading_uploads_over_replicas_holds_no_more_in_progress_than_through_one() {
    let s = System::deploy().await.expect("deploy");
    let url = common::fresh_postgres().await.expect("database");
    let replica = |holder: &str| Options {
        database_url: Some(url.clone()),
        holder: holder.into(),
        with_account: false,
        // Renewed every 750 ms: the held uploads outlive their first lifetimes below.
        upload_reservation_ttl: Some(std::time::Duration::from_secs(3)),
        ..Options::default()
    };
    let one = Running::start(&s, replica("replica-1")).await;
    let two = Running::start(&s, replica("replica-2")).await;
    let submitter = signer(&s, Actor::Submitter);
    let account = ciro_coordinator::indexer::felt_text(s.net.address(Actor::Submitter));
    let store = ciro_coordinator::store::Store::connect(&url)
        .await
        .expect("the replicas' database");
    // Four uploads held open, two through each replica.
    let mut held = Vec::new();
    for i in 0..4u8 {
        let c = if i % 2 == 0 { &one } else { &two };
        held.push(hold_upload(c, &submitter, vec![i; 1_000]).await);
    }
    common::eventually(
        "four uploads in progress",
        std::time::Duration::from_secs(30),
        || async { (in_progress(&store, &account).await.account_uploads == 4).then_some(()) },
    )
    .await;
    let held_now = in_progress(&store, &account).await;
    assert_eq!(
        held_now.account_bytes,
        4 * ciro_coordinator::records::MIN_BLOB_CHARGE,
        "{held_now:?}"
    );
    // Past their first lifetimes, renewed, they still count: a fifth, through either
    // replica, is refused with the reason.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    assert_eq!(in_progress(&store, &account).await.account_uploads, 4);
    for c in [&one, &two] {
        let fifth = Signed::new(
            &submitter,
            "PUT",
            ciro_api::coordinator::routes::blob(&Digest::of(&[9; 1_000])),
            vec![9; 1_000],
        );
        let message = refused(fifth.send(c, None).await, 429, ErrorCode::RateLimited).await;
        assert!(message.contains("4 uploads in progress"), "{message}");
    }
    // The held uploads' clients go away: their reservations end, and the account uploads
    // through either replica.
    for task in held {
        task.abort();
    }
    common::eventually(
        "the held uploads' reservations ended",
        std::time::Duration::from_secs(30),
        || async { (in_progress(&store, &account).await.account_uploads == 0).then_some(()) },
    )
    .await;
    for c in [&one, &two] {
        c.client_as(&s, Actor::Submitter)
            .upload_blob(vec![9; 1_000])
            .await
            .expect("an upload once the held ones ended");
    }
    assert_eq!(in_progress(&store, &account).await.account_uploads, 0);
    one.stop().await;
    two.stop().await;
}
