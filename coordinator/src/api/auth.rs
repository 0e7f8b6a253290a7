//! Server side of signed requests ([`ciro_api::coordinator::auth`]): the signature is checked
//! by the signing account's own contract (`is_valid_signature`, SRC-6), so any account type
//! works; a timestamp window and a nonce record (in the database, shared by replicas) refuse
//! replays. Verdicts are cached briefly by (account, message hash, signature), so a replayed
//! request costs no chain call before it is refused.

use std::collections::HashMap;
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
        // It is kept for twice the window: each replica forgets nonces by its own clock, and
        // one running ahead by up to a window must not forget a nonce that a replica running
        // on time would still accept the timestamp of.
        let fresh = self
            .store
            .use_nonce(
                &felt_text(auth.account),
                &felt_text(auth.nonce),
                now,
                auth.timestamp
                    .saturating_add(self.window_secs.saturating_mul(2))
                    .saturating_add(1),
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
