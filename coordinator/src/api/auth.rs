//! Server side of signed requests ([`ciro_api::coordinator::auth`]): the signature is checked
//! by the signing account's own contract (`is_valid_signature`, SRC-6), so any account type
//! works; a request signed for another origin than this coordinator's is refused before the
//! account is asked (a look-alike coordinator cannot replay what it received); a timestamp
//! window and a nonce record (in the database, shared by replicas) refuse
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

/// Most signature checks asked of the node at once: each runs an account contract the signer
/// chose, so a flood of signed requests must not become as many node calls at once.
const MAX_CHECKS_IN_FLIGHT: u32 = 64;

/// Most checks of one account's signatures at the node at once: one client cannot take every
/// place with one slow account (honest accounts' checks take milliseconds).
const MAX_CHECKS_PER_ACCOUNT: u32 = 2;

/// Longest one signature check may take at the node (503 past it).
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an account whose check ran past [`CHECK_TIMEOUT`] is refused without a check
/// (its contract is slow, or made to be).
const SLOW_ACCOUNT_COOLDOWN: Duration = Duration::from_secs(60);

/// Cached verdicts: (account, message hash, signature) → (valid, when checked).
type VerdictCache = HashMap<(Felt, Felt, Vec<Felt>), (bool, Instant)>;

/// Checks signed requests.
pub struct Verifier {
    node: Node,
    chain_id: tokio::sync::OnceCell<Felt>,
    /// The deployment's JobMgr contract, which a signed request names.
    job_manager: Felt,
    /// The origins this coordinator answers as ([`ciro_api::coordinator::auth::origin_of`]),
    /// one of which a signed request names.
    origins: Vec<String>,
    store: Store,
    window_secs: u64,
    cache_ttl: Duration,
    cache: Mutex<VerdictCache>,
    failures: IntCounterVec,
    /// Places for the signature checks in flight at the node, per account and in all.
    checks: std::sync::Arc<super::Slots<String>>,
    check_timeout: Duration,
    /// Accounts whose last check ran past the timeout, until when they are refused.
    slow: Mutex<HashMap<Felt, Instant>>,
    /// Whether an account holds JobMgr's ARBITER role, and when the chain said so.
    arbiters: Mutex<HashMap<Felt, (bool, Instant)>>,
    /// Origins a refused request was signed for, already logged.
    warned_origins: Mutex<std::collections::HashSet<String>>,
}

/// Most distinct unknown origins logged (the rest are refused silently).
const MAX_WARNED_ORIGINS: usize = 64;

impl Verifier {
    /// A verifier for the chain of `node` (its id read on first use) and the deployment whose
    /// JobMgr contract is `job_manager` (a request signed for another is refused), answering
    /// as `origins` (a request signed for another origin is refused), asking accounts through
    /// the node, recording nonces in `store`, accepting timestamps within `window_secs` of the
    /// server's clock.
    pub fn new(
        node: Node,
        job_manager: Felt,
        origins: Vec<String>,
        store: Store,
        window_secs: u64,
        failures: IntCounterVec,
    ) -> Self {
        Self {
            node,
            chain_id: tokio::sync::OnceCell::new(),
            job_manager,
            origins,
            store,
            window_secs,
            cache_ttl: Duration::from_secs(60),
            cache: Mutex::new(HashMap::new()),
            failures,
            checks: std::sync::Arc::new(super::Slots::new(
                "signature checks",
                MAX_CHECKS_IN_FLIGHT,
                MAX_CHECKS_PER_ACCOUNT,
            )),
            check_timeout: CHECK_TIMEOUT,
            slow: Mutex::new(HashMap::new()),
            arbiters: Mutex::new(HashMap::new()),
            warned_origins: Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// Sets how long one signature check may take at the node.
    pub fn with_check_timeout(mut self, timeout: Duration) -> Self {
        self.check_timeout = timeout;
        self
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
        if !self.origins.contains(&auth.coordinator) {
            self.warn_unknown_origin(&auth.coordinator);
            return Err(ApiError::new(
                ErrorCode::InvalidSignature,
                format!(
                    "the request is signed for coordinator {:?}, which is not an origin this \
                     coordinator answers as: a request signed for another coordinator is \
                     refused, so one cannot be replayed here. If that is this coordinator's \
                     URL, its operator must name it in --public-url (CIRO_PUBLIC_URL)",
                    auth.coordinator
                ),
            ));
        }
        let chain_id = self.chain_id().await?;
        let hash = auth
            .message(self.job_manager, method, path_and_query)
            .message_hash(auth.account, chain_id)
            .map_err(|e| auth_error(AuthError::Method(e)))?;
        if !self
            .is_valid_signature(auth.account, hash, &auth.signature)
            .await?
        {
            return Err(ApiError::new(
                ErrorCode::InvalidSignature,
                format!(
                    "account {:#x} does not accept this signature of the request (this \
                     coordinator checks requests signed for chain {chain_id:#x}, JobMgr {:#x} \
                     and coordinator {:?})",
                    auth.account, self.job_manager, auth.coordinator
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

    /// Logs the first requests signed for an origin this coordinator does not answer as (a
    /// look-alike's replay, or a URL the operator left out of `--public-url`), once per
    /// origin and for at most [`MAX_WARNED_ORIGINS`] origins, so refusals cannot flood the log.
    fn warn_unknown_origin(&self, origin: &str) {
        let mut warned = self
            .warned_origins
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if warned.len() < MAX_WARNED_ORIGINS && warned.insert(origin.to_owned()) {
            tracing::warn!(
                origin,
                answers_as = %self.origins.join(", "),
                "refused a request signed for another coordinator's origin (a replay, or a \
                 URL of this coordinator missing from --public-url)"
            );
        }
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
        let slow_until = self
            .slow
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&account)
            .copied();
        if slow_until.is_some_and(|until| Instant::now() < until) {
            return Err(ApiError::new(
                ErrorCode::Unavailable,
                format!(
                    "account {account:#x}'s last signature check took longer than {:?}: its \
                     requests are refused for {:?} after it",
                    self.check_timeout, SLOW_ACCOUNT_COOLDOWN
                ),
            ));
        }
        // A place per account (429 past its few) and in all (503): without it, one client's
        // slow account would hold every place and every other signed request would wait.
        let _place = self.checks.take(Some(felt_text(account)))?;
        // A refusal (a revert on a bad signature, or no account there) is `false`.
        let verdict = tokio::time::timeout(
            self.check_timeout,
            ciro_chain::account::is_valid_signature(&*self.node, account, hash, signature),
        )
        .await
        .map_err(|_| {
            let mut slow = self.slow.lock().unwrap_or_else(|p| p.into_inner());
            if slow.len() >= CACHE_CAPACITY {
                slow.retain(|_, until| Instant::now() < *until);
            }
            slow.insert(account, Instant::now() + SLOW_ACCOUNT_COOLDOWN);
            ApiError::new(
                ErrorCode::Unavailable,
                format!(
                    "checking the signature with account {account:#x} took longer than {:?}",
                    self.check_timeout
                ),
            )
        })?
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

    /// Whether `account` holds the ARBITER role of the deployment's JobMgr, as the chain says
    /// (one view call, its answer reused for a minute: a revoked arbiter may read a disputed
    /// job's data for up to that long after).
    pub async fn is_arbiter(&self, account: Felt) -> Result<bool, ApiError> {
        const REUSE: Duration = Duration::from_secs(60);
        if let Some((holds, at)) = self
            .arbiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&account)
        {
            if at.elapsed() < REUSE {
                return Ok(*holds);
            }
        }
        let role = ciro_chain::role_felt(ciro_protocol::roles::ARBITER)
            .map_err(|e| ApiError::internal(anyhow::anyhow!("the ARBITER role name: {e}")))?;
        let reader =
            ciro_chain::bindings::job_mgr::JobMgrReader::new(self.job_manager, &*self.node);
        let holds = tokio::time::timeout(
            self.check_timeout,
            ciro_chain::tx::call(reader.has_role(
                &role,
                &ciro_chain::cainome::cairo_serde::ContractAddress(account),
            )),
        )
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorCode::Unavailable,
                "the chain node did not say in time whether this account is an arbiter",
            )
        })?
        .map_err(|error| {
            ApiError::new(
                ErrorCode::Unavailable,
                format!(
                    "the chain node cannot say now whether this account is an arbiter: {error}"
                ),
            )
        })?;
        let mut arbiters = self.arbiters.lock().unwrap_or_else(|p| p.into_inner());
        if arbiters.len() >= CACHE_CAPACITY {
            arbiters.clear();
        }
        arbiters.insert(account, (holds, Instant::now()));
        Ok(holds)
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

#[cfg(test)]
mod tests {
    use super::*;
    use ciro_chain::starknet::providers::jsonrpc::HttpTransport;
    use ciro_chain::starknet::providers::JsonRpcClient;
    use std::sync::Arc;

    /// A node that takes connections and never answers, and a verifier asking it.
    async fn verifier_of_a_silent_node(
        dir: &tempfile::TempDir,
        timeout: Duration,
    ) -> Arc<Verifier> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let node: Node = Arc::new(JsonRpcClient::new(HttpTransport::new(
            url::Url::parse(&url).unwrap(),
        )));
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("db").display()))
            .await
            .unwrap();
        let failures = IntCounterVec::new(prometheus::Opts::new("f", "f"), &["code"]).unwrap();
        Arc::new(
            Verifier::new(node, Felt::ONE, Vec::new(), store, 300, failures)
                .with_check_timeout(timeout),
        )
    }

    /// Each signed request runs an account contract the signer chose: a check that does not
    /// end must not hold the request (or the node) without limit, one client's slow account
    /// must not take every place (a review found one global limit let 64 requests of one slow
    /// account make every other signed request wait, workers' heartbeats included), and a
    /// flood of checks must not become as many node calls at once.
    #[tokio::test]
    async fn signature_checks_are_bounded_in_time_per_account_and_in_all() {
        let dir = tempfile::tempdir().unwrap();
        let verifier = verifier_of_a_silent_node(&dir, Duration::from_millis(300)).await;
        let started = Instant::now();
        let error = verifier
            .is_valid_signature(Felt::ONE, Felt::TWO, &[Felt::THREE])
            .await
            .unwrap_err();
        assert_eq!(error.code, ErrorCode::Unavailable, "{}", error.message);
        assert!(
            error.message.contains("took longer than"),
            "{}",
            error.message
        );
        assert!(started.elapsed() < Duration::from_secs(3));
        // The slow account is then refused without a check.
        let started = Instant::now();
        let error = verifier
            .is_valid_signature(Felt::ONE, Felt::TWO, &[Felt::TWO])
            .await
            .unwrap_err();
        assert!(error.message.contains("refused for"), "{}", error.message);
        assert!(started.elapsed() < Duration::from_millis(200));

        // Checks that hang at the node: two of one account take its places, a third is
        // refused at once (429); other accounts fill the rest, and past them every check is
        // refused at once (503) rather than waiting.
        let verifier = verifier_of_a_silent_node(&dir, Duration::from_secs(4)).await;
        let hang = |account: u64| {
            let verifier = verifier.clone();
            tokio::spawn(async move {
                verifier
                    .is_valid_signature(Felt::from(account), Felt::TWO, &[Felt::from(account)])
                    .await
            })
        };
        let mut hanging = vec![hang(100), hang(100)];
        tokio::time::sleep(Duration::from_millis(200)).await;
        let error = verifier
            .is_valid_signature(Felt::from(100u32), Felt::TWO, &[Felt::ONE])
            .await
            .unwrap_err();
        assert_eq!(error.code, ErrorCode::RateLimited, "{}", error.message);
        for account in 0..u64::from(MAX_CHECKS_IN_FLIGHT) - 2 {
            hanging.push(hang(1_000 + account));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        let error = verifier
            .is_valid_signature(Felt::from(99u32), Felt::TWO, &[Felt::ONE])
            .await
            .unwrap_err();
        assert_eq!(error.code, ErrorCode::Unavailable, "{}", error.message);
        assert!(
            error.message.contains("signature checks are open"),
            "{}",
            error.message
        );
        assert!(started.elapsed() < Duration::from_millis(200));
        for check in hanging {
            check.abort();
        }
    }
}
