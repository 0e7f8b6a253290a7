//! Server side of signed requests ([`ciro_api::coordinator::auth`]): the signature is checked
//! by the signing account's own contract (`is_valid_signature`, SRC-6), so any account type
//! works; a timestamp window and a nonce record (in the database, shared by replicas) refuse
//! replays. Verdicts are cached briefly by (account, message hash, signature), so a replayed
//! request costs no chain call before it is refused.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use ciro_api::coordinator::auth::{AuthError, RequestAuth};
use ciro_api::coordinator::ErrorCode;
use ciro_chain::starknet::core::types::Felt;
use ciro_chain::starknet::providers::Provider;
use prometheus::IntCounterVec;

use super::ApiError;
use crate::indexer::{felt_text, unix_now, Node};
use crate::store::Store;

/// Most cached verdicts (older ones are dropped first when full).
const CACHE_CAPACITY: usize = 100_000;

/// Cached verdicts: (account, message hash, signature) → (valid, when checked).
type VerdictCache = HashMap<(Felt, Felt, Vec<Felt>), (bool, Instant)>;

/// Checks signed requests.
pub struct Verifier {
    node: Node,
    chain_id: tokio::sync::OnceCell<Felt>,
    store: Store,
    window_secs: u64,
    cache_ttl: Duration,
    cache: Mutex<VerdictCache>,
    failures: IntCounterVec,
}

impl Verifier {
    /// A verifier for the chain of `node` (its id read on first use), asking accounts through
    /// it, recording nonces in `store`, accepting timestamps within `window_secs` of the
    /// server's clock.
    pub fn new(node: Node, store: Store, window_secs: u64, failures: IntCounterVec) -> Self {
        Self {
            node,
            chain_id: tokio::sync::OnceCell::new(),
            store,
            window_secs,
            cache_ttl: Duration::from_secs(60),
            cache: Mutex::new(HashMap::new()),
            failures,
        }
    }

    /// The chain the signatures are for (asked of the node once).
    pub async fn chain_id(&self) -> Result<Felt, ApiError> {
        self.chain_id
            .get_or_try_init(|| async { self.node.chain_id().await })
            .await
            .copied()
            .map_err(|error| {
                ApiError::new(
                    ErrorCode::Unavailable,
                    format!("the chain node does not answer: {error}"),
                )
            })
    }

    /// The signing account of a request, `None` if it is unsigned; an error if it is signed
    /// badly (malformed, stale, forged, replayed).
    pub async fn verify(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &HeaderMap,
    ) -> Result<Option<Felt>, ApiError> {
        let result = self.verify_inner(method, path_and_query, headers).await;
        if let Err(error) = &result {
            self.failures
                .with_label_values(&[error.code.as_str()])
                .inc();
        }
        result
    }

    async fn verify_inner(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &HeaderMap,
    ) -> Result<Option<Felt>, ApiError> {
        let Some(auth) = RequestAuth::from_headers(headers).map_err(auth_error)? else {
            return Ok(None);
        };
        let now = unix_now();
        auth.check_freshness(now, self.window_secs)
            .map_err(auth_error)?;
        let hash = auth
            .message(method, path_and_query)
            .message_hash(auth.account, self.chain_id().await?)
            .map_err(|e| auth_error(AuthError::Method(e)))?;
        if !self
            .is_valid_signature(auth.account, hash, &auth.signature)
            .await?
        {
            return Err(ApiError::new(
                ErrorCode::InvalidSignature,
                format!(
                    "account {:#x} does not accept this signature of the request",
                    auth.account
                ),
            ));
        }
        // Only a verified request spends its nonce (a forgery cannot burn someone's nonce).
        let fresh = self
            .store
            .use_nonce(
                &felt_text(auth.account),
                &felt_text(auth.nonce),
                now,
                auth.timestamp + self.window_secs + 1,
            )
            .await
            .map_err(ApiError::internal)?;
        if !fresh {
            return Err(ApiError::new(
                ErrorCode::ReplayedNonce,
                format!(
                    "nonce {:#x} was already used by {:#x}: sign a fresh request",
                    auth.nonce, auth.account
                ),
            ));
        }
        Ok(Some(auth.account))
    }

    /// Asks `account`'s contract whether `signature` signs `hash` (cached briefly).
    pub async fn is_valid_signature(
        &self,
        account: Felt,
        hash: Felt,
        signature: &[Felt],
    ) -> Result<bool, ApiError> {
        let key = (account, hash, signature.to_vec());
        if let Some((verdict, at)) = self.lock().get(&key) {
            if at.elapsed() < self.cache_ttl {
                return Ok(*verdict);
            }
        }
        // A refusal (a revert on a bad signature, or no account there) is `false`.
        let verdict =
            ciro_chain::account::is_valid_signature(&*self.node, account, hash, signature)
                .await
                .map_err(|error| {
                    ApiError::new(
                        ErrorCode::Unavailable,
                        format!("the chain node cannot check the signature now: {error}"),
                    )
                })?;
        let mut cache = self.lock();
        if cache.len() >= CACHE_CAPACITY {
            let ttl = self.cache_ttl;
            cache.retain(|_, (_, at)| at.elapsed() < ttl);
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(key, (verdict, Instant::now()));
        Ok(verdict)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VerdictCache> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn auth_error(error: AuthError) -> ApiError {
    ApiError::new(error.code(), error.to_string())
}

/// A token bucket per client address: `rate` requests a second, bursts of `burst`.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    /// A limiter of `rate` requests per second with bursts of `burst`.
    pub fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `client` may make a request now (takes a token if so).
    pub fn allow(&self, client: IpAddr) -> bool {
        let now = Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() > 100_000 {
            let burst_time = self.burst / self.rate.max(1e-9);
            buckets.retain(|_, (_, at)| now.duration_since(*at).as_secs_f64() < burst_time);
        }
        let (tokens, at) = buckets.entry(client).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let limiter = RateLimiter::new(1, 3);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        assert!((0..3).all(|_| limiter.allow(a)));
        assert!(!limiter.allow(a), "the burst is spent");
        assert!(limiter.allow(b), "another client has its own bucket");
    }
}
