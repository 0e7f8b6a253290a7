//! The live dashboard and what it reads: the page itself at `/` (static HTML with its own
//! small SVG charts, no build step, no third-party script), `GET /v1/stats` (jobs by state,
//! workers, the last minutes' flow and latencies, the contracts' accounting totals) and
//! `GET /v1/events` (every job's state changes as server-sent events, from `?after=N`, a
//! `Last-Event-ID`, or else from now).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ciro_api::coordinator::{Accounting, EventsQuery, MinuteStats, NetworkStats, StatsQuery};
use ciro_api::wire::{Felt, U256};
use ciro_chain::bindings::paymaster::PaymasterReader;
use ciro_chain::bindings::{cdc_pool::CdcPoolReader, job_mgr::JobMgrReader};
use ciro_chain::tx::call;

use super::{client_of, event_stream, last_event_id, parse_query, Api, ApiError, ApiResult};
use crate::indexer::{unix_now, Node};
use crate::records::EventScope;

/// The page (served as is).
const PAGE: &str = include_str!("dashboard.html");
/// Most events read to compute the recent minutes.
const RECENT_EVENTS: u64 = 20_000;
/// How long the chain's totals are reused.
const ACCOUNTING_TTL: Duration = Duration::from_secs(2);
/// How long a `/v1/stats` answer is reused (concurrent callers share one computation).
const STATS_TTL: Duration = Duration::from_secs(1);

/// The widest window `GET /v1/stats` serves, in minutes (the one it computes).
const STATS_MINUTES: u64 = 60;
/// Longest wait for the chain's totals (then the last ones read are shown).
const NODE_TIMEOUT: Duration = Duration::from_secs(5);

/// The last `/v1/stats` answers, by their `minutes`.
pub type StatsCache = tokio::sync::Mutex<std::collections::HashMap<u64, (Instant, NetworkStats)>>;

/// Where the contracts whose totals the dashboard shows are, and the last totals read.
pub struct AccountingSource {
    node: Node,
    job_mgr: Felt,
    pool: Felt,
    paymaster: Option<Felt>,
    last: tokio::sync::Mutex<Option<(Instant, Accounting)>>,
}

impl AccountingSource {
    /// Totals of `job_mgr`, `pool` and `paymaster` (a deployment may have none) read through
    /// `node`.
    pub fn new(node: Node, job_mgr: Felt, pool: Felt, paymaster: Option<Felt>) -> Arc<Self> {
        Arc::new(Self {
            node,
            job_mgr,
            pool,
            paymaster,
            last: tokio::sync::Mutex::new(None),
        })
    }

    async fn read(&self) -> Option<Accounting> {
        let mut last = self.last.lock().await;
        if let Some((at, totals)) = last.as_ref() {
            if at.elapsed() < ACCOUNTING_TTL {
                return Some(totals.clone());
            }
        }
        let wide = |v: ciro_chain::cainome::cairo_serde::U256| U256::from_words(v.low, v.high);
        let node = self.node.as_ref();
        let read = async {
            let (escrow, bonds) = call(JobMgrReader::new(self.job_mgr, node).totals()).await?;
            let pool = call(CdcPoolReader::new(self.pool, node).totals()).await?;
            let deposits = match self.paymaster {
                Some(paymaster) => Some(wide(
                    call(PaymasterReader::new(paymaster, node).totals())
                        .await?
                        .0,
                )),
                None => None,
            };
            Ok::<_, ciro_chain::ChainError>(Accounting {
                escrow: wide(escrow),
                dispute_bonds: wide(bonds),
                stakes: wide(pool.stakes),
                delegations: wide(pool.delegations),
                rewards: wide(pool.rewards),
                sponsor_deposits: deposits,
            })
        };
        let stale = last.as_ref().map(|(_, totals)| totals.clone());
        match tokio::time::timeout(NODE_TIMEOUT, read).await {
            Ok(Ok(totals)) => {
                *last = Some((Instant::now(), totals.clone()));
                Some(totals)
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "reading the contracts' totals for the dashboard");
                stale
            }
            Err(_) => {
                tracing::warn!("the chain node did not give the contracts' totals in time");
                stale
            }
        }
    }
}

/// `GET /`: the dashboard, under a content security policy that runs its own script only
/// (by hash), talks only to this origin and cannot be framed: were a field to escape the
/// page's escaping, no injected script would run.
pub(super) async fn page() -> Response {
    static POLICY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let policy = POLICY.get_or_init(|| content_security_policy(PAGE));
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, policy.as_str()),
        ],
        PAGE,
    )
        .into_response()
}

/// The page's policy: its one inline script allowed by its SHA-256, inline styles (the
/// legend's swatches), connections and images from this origin only, no framing.
fn content_security_policy(page: &str) -> String {
    use sha2::Digest as _;
    let script = page
        .split_once("<script>")
        .and_then(|(_, rest)| rest.split_once("</script>"))
        .map_or("", |(script, _)| script);
    // A browser hashes the script's text with its line breaks normalized to LF (a checkout
    // with CRLF line endings would otherwise block the page's own script).
    let script = script.replace("\r\n", "\n");
    let hash = base64(&sha2::Sha256::digest(script.as_bytes()));
    format!(
        "default-src 'none'; script-src 'sha256-{hash}'; style-src 'unsafe-inline'; \
         connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    )
}

/// Standard base64 with padding (RFC 4648), for the policy's script hash.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `GET /v1/events`: every job's changes after `Last-Event-ID`, else `?after=`.
pub(super) async fn all_events(
    State(api): State<Api>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
) -> ApiResult<Response> {
    let query: EventsQuery = parse_query(query)?;
    let after = match (headers.get("last-event-id"), query.after) {
        (Some(_), _) => last_event_id(&headers)?,
        (None, Some(after)) if after <= super::MAX_ID => after,
        (None, Some(_)) => {
            return Err(ApiError::bad(
                "after must be the sequence of an event (at most 2^63 - 1)",
            ))
        }
        // Without a position, what happens from now on (the history can be long).
        (None, None) => api
            .store()
            .last_sequence()
            .await
            .map_err(ApiError::internal)?,
    };
    let slot = api.inner.streams.take(client_of(&extensions))?;
    Ok(Sse::new(event_stream(api, EventScope::All, after, slot))
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[values.len() / 2])
}

/// `GET /v1/stats`.
pub(super) async fn stats(
    State(api): State<Api>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<NetworkStats>> {
    let query: StatsQuery = parse_query(query)?;
    let minutes = u64::from(query.minutes.unwrap_or(15));
    if !(1..=60).contains(&minutes) {
        return Err(ApiError::bad("minutes must be 1 to 60"));
    }
    // One answer, for the widest window, serves every `minutes` (its last minutes are the
    // narrower window's, the newest events being the ones kept): a client cycling through
    // 1 to 60 costs one computation a second, not sixty.
    let requested = minutes as usize;
    let narrowed = move |mut answer: NetworkStats| {
        let from = answer.recent.len().saturating_sub(requested);
        answer.recent.drain(..from);
        Json(answer)
    };
    let mut cache = api.inner.stats.lock().await;
    if let Some((at, answer)) = cache.get(&STATS_MINUTES) {
        if at.elapsed() < STATS_TTL {
            return Ok(narrowed(answer.clone()));
        }
    }
    let minutes = STATS_MINUTES;
    let store = api.store();
    let now = unix_now();
    let first_minute = (now / 60 + 1 - minutes) * 60;
    let jobs_by_state: BTreeMap<String, u64> = store
        .count_jobs_by_state()
        .await
        .map_err(ApiError::internal)?
        .into_iter()
        .map(|(state, n)| (state.to_lowercase(), n))
        .collect();
    let workers = store.count_workers().await.map_err(ApiError::internal)?;
    let live_workers = store
        .live_workers(now.saturating_sub(api.inner.config.stale_after_secs))
        .await
        .map_err(ApiError::internal)?
        .len() as u64;
    let events = store
        .recent_events(first_minute, RECENT_EVENTS)
        .await
        .map_err(ApiError::internal)?;
    let mut buckets: Vec<(MinuteStats, Vec<f64>, Vec<f64>)> = (0..minutes)
        .map(|i| {
            let minute = MinuteStats {
                minute: first_minute + i * 60,
                submitted: 0,
                assigned: 0,
                completed: 0,
                finalized: 0,
                queue_wait_p50_secs: None,
                queue_wait_max_secs: None,
                finalize_p50_secs: None,
            };
            (minute, Vec::new(), Vec::new())
        })
        .collect();
    // A job's submission is its first event; later queued events are releases.
    let mut submitted = std::collections::HashSet::new();
    for (event, first_at) in &events {
        let index = (event.recorded_at.saturating_sub(first_minute) / 60) as usize;
        let Some((bucket, waits, finals)) = buckets.get_mut(index) else {
            continue;
        };
        let since_submission = event.recorded_at.saturating_sub(*first_at) as f64;
        match event.state.as_str() {
            "Queued" if event.recorded_at == *first_at && submitted.insert(event.job_id) => {
                bucket.submitted += 1;
            }
            "Assigned" => {
                bucket.assigned += 1;
                waits.push(since_submission);
            }
            "Completed" => bucket.completed += 1,
            "Finalized" => {
                bucket.finalized += 1;
                finals.push(since_submission);
            }
            _ => {}
        }
    }
    let recent = buckets
        .into_iter()
        .map(|(mut bucket, mut waits, mut finals)| {
            bucket.queue_wait_max_secs = waits.iter().copied().reduce(f64::max);
            bucket.queue_wait_p50_secs = median(&mut waits);
            bucket.finalize_p50_secs = median(&mut finals);
            bucket
        })
        .collect();
    let accounting = match &api.inner.accounting {
        Some(source) => source.read().await,
        None => None,
    };
    let answer = NetworkStats {
        jobs_by_state,
        workers,
        live_workers,
        recent,
        accounting,
        last_sequence: store.last_sequence().await.map_err(ApiError::internal)?,
        indexed_block: api.inner.index.indexed(),
        server_time: now,
    };
    cache.insert(STATS_MINUTES, (Instant::now(), answer.clone()));
    Ok(narrowed(answer))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_pages_policy_allows_its_own_script_by_hash_and_nothing_else() {
        assert_eq!(super::base64(b"hello"), "aGVsbG8=");
        assert_eq!(super::base64(b"hi"), "aGk=");
        assert_eq!(super::base64(b"abc"), "YWJj");
        assert_eq!(super::base64(b""), "");
        let policy = super::content_security_policy("<p>x</p><script>run()</script>");
        // SHA-256 of "run()", base64.
        use sha2::Digest as _;
        let expected = super::base64(&sha2::Sha256::digest(b"run()"));
        assert!(
            policy.contains(&format!("script-src 'sha256-{expected}'")),
            "{policy}"
        );
        assert!(policy.contains("default-src 'none'") && policy.contains("frame-ancestors 'none'"));
        // The real page has exactly one inline script, the one hashed.
        assert_eq!(super::PAGE.matches("<script").count(), 1);
    }

    use super::*;

    #[test]
    fn the_median_is_the_middle_value() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0]), Some(4.0));
    }
}
