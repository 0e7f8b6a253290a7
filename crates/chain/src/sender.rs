//! Sending transactions from one account shared by concurrent tasks.
//!
//! [`TxSender`] owns the account's nonce: a task takes the nonce lock, estimates the fee (with
//! the configured margin), signs and submits with the next nonce, advances it, and releases
//! the lock as soon as the node has accepted the transaction; waiting for the receipt happens
//! outside the lock, so transactions of many tasks pipeline. A nonce the node rejects makes
//! the sender re-read the nonce from the chain and try once more. Transport errors (node
//! unreachable, timeouts) are retried with exponential backoff; a revert or a rejection is
//! never retried. A transaction is estimated and signed once and that same transaction is
//! retried; after a lost answer its hash is looked up first, so a transaction that landed is
//! never sent again at another nonce.
//!
//! With a [`Relay`] ([`TxSender::with_relay`]) the account pays no gas: each transaction is
//! signed as a SNIP-9 outside execution and sent by a paymaster relayer, one at a time (a
//! relayer takes one execution per user in flight).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use starknet::accounts::{ConnectedAccount, ExecutionV3};
use starknet::core::types::{
    BlockId, BlockTag, Call, FeeEstimate, Felt, FunctionCall, StarknetError,
};
use starknet::macros::selector;
use starknet::providers::Provider;
use tokio::sync::Mutex;

use crate::gasless::{chain_clock, GaslessError, Relay};
use crate::tx::{wait_for_receipt, TxOutcome};
use crate::ChainError;

/// Retries of transport errors.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all (1 = no retry).
    pub attempts: u32,
    /// Wait before the first retry; doubled each time.
    pub first_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            first_backoff: Duration::from_millis(200),
        }
    }
}

impl RetryPolicy {
    /// Runs `operation`, retrying it while it fails with [`ChainError::Transport`].
    pub async fn run<T, F, Fut>(&self, mut operation: F) -> Result<T, ChainError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ChainError>>,
    {
        let mut backoff = self.first_backoff;
        let mut attempt = 1;
        loop {
            match operation().await {
                Err(ChainError::Transport(message)) if attempt < self.attempts => {
                    tracing::warn!(attempt, %message, ?backoff, "transport error, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

/// Fee and retry settings of a [`TxSender`].
#[derive(Debug, Clone, Copy)]
pub struct SenderConfig {
    /// Multiplier on the estimated gas amounts and prices (1.5 = 50% margin).
    pub fee_margin: f64,
    pub retry: RetryPolicy,
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self {
            fee_margin: 1.5,
            retry: RetryPolicy::default(),
        }
    }
}

/// Gas amounts and prices a transaction may use at most: fixed by the caller (a relayer that
/// simulated the exact transaction), so that sending does no estimation of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GasBounds {
    pub l1_gas: u64,
    pub l1_gas_price: u128,
    pub l2_gas: u64,
    pub l2_gas_price: u128,
    pub l1_data_gas: u64,
    pub l1_data_gas_price: u128,
}

impl GasBounds {
    /// The estimate's amounts and prices, each times `margin` (rounded up).
    pub fn from_estimate(estimate: &FeeEstimate, margin: f64) -> Self {
        let amount = |v: u64| ((v as f64) * margin).ceil() as u64;
        let price = |v: u128| ((v as f64) * margin).ceil() as u128;
        Self {
            l1_gas: amount(estimate.l1_gas_consumed),
            l1_gas_price: price(estimate.l1_gas_price),
            l2_gas: amount(estimate.l2_gas_consumed),
            l2_gas_price: price(estimate.l2_gas_price),
            l1_data_gas: amount(estimate.l1_data_gas_consumed),
            l1_data_gas_price: price(estimate.l1_data_gas_price),
        }
    }

    /// The most the transaction can cost (FRI): every amount times its price.
    pub fn max_fee(&self) -> u128 {
        (self.l1_gas as u128)
            .saturating_mul(self.l1_gas_price)
            .saturating_add((self.l2_gas as u128).saturating_mul(self.l2_gas_price))
            .saturating_add((self.l1_data_gas as u128).saturating_mul(self.l1_data_gas_price))
    }
}

/// One account, many concurrent senders.
#[derive(Debug)]
pub struct TxSender<A> {
    account: A,
    config: SenderConfig,
    /// The next nonce to use, once read from the chain.
    nonce: Mutex<Option<Felt>>,
    /// The relayer that sends instead, if any; the lock keeps one execution in flight.
    relay: Option<(Relay, Mutex<()>)>,
}

impl<A> TxSender<A>
where
    A: ConnectedAccount + Sync + Send,
{
    pub fn new(account: A, config: SenderConfig) -> Self {
        Self {
            account,
            config,
            nonce: Mutex::new(None),
            relay: None,
        }
    }

    /// Sends through `relay` instead of paying gas: [`Self::execute`] has the relayer send
    /// each transaction (and, with the relay's fallback, sends it directly when the relayer
    /// refuses it or is out of reach). Estimates and [`Self::send_with_bounds`] stay direct.
    pub fn with_relay(mut self, relay: Relay) -> Self {
        self.relay = Some((relay, Mutex::new(())));
        self
    }

    /// Whether transactions go through a relayer.
    pub fn is_relayed(&self) -> bool {
        self.relay.is_some()
    }

    pub fn account(&self) -> &A {
        &self.account
    }

    /// Executes `calls` (from the bindings' `*_getcall`) in one transaction and awaits its
    /// receipt (the relayer's transaction, when relayed).
    pub async fn execute(&self, calls: Vec<Call>) -> Result<TxOutcome, ChainError> {
        if let Some((relay, one_at_a_time)) = &self.relay {
            let _turn = one_at_a_time.lock().await;
            let user = self.account.address();
            let now = chain_clock(self.account.provider()).await;
            let failure = match relay.send(user, &calls, now).await {
                Ok(sent) => {
                    let outcome = self.wait(sent.transaction_hash).await?;
                    self.check_executed(user, sent.execution.nonce, sent.transaction_hash)
                        .await?;
                    return Ok(outcome);
                }
                Err(failure) => failure,
            };
            let signed = failure.was_signed();
            let unsafe_build = matches!(failure, GaslessError::Unsafe(_));
            let mut error = ChainError::from(failure);
            if let Some(reason) = error.revert_reason().map(str::to_owned) {
                // The relayer's simulation runs the Paymaster's checks (budgets, limits) and
                // its own too: only a revert of the calls alone is theirs (and final).
                self.estimate(&calls).await?;
                error = ChainError::Paymaster {
                    code: None,
                    message: format!("its simulation failed ({reason}) where the calls alone pass"),
                };
            }
            if unsafe_build {
                tracing::error!(%error, "the relayer built an execution this account does not sign");
            }
            let refused = matches!(
                error,
                ChainError::Paymaster { .. } | ChainError::Transport(_)
            );
            // A signed execution the relayer refused or lost may still be sent in its window:
            // sending the calls directly too could run them twice.
            if !(relay.fallback() && refused && !signed) {
                return Err(error);
            }
            tracing::warn!(%error, "the relayer did not take the transaction; paying its gas directly");
        }
        let tx_hash = {
            let mut nonce = self.nonce.lock().await;
            let used = *nonce;
            match self.submit(&mut nonce, &calls).await {
                Err(ChainError::NonceRejected(message)) => {
                    tracing::warn!(%message, "nonce rejected; re-reading it from the chain");
                    *nonce = None;
                    self.submit(&mut nonce, &calls).await?
                }
                // Nodes report a stale nonce in fee estimation as an execution failure, not
                // as a nonce error: when the chain's nonce is past the one used (another sender
                // of this account moved it), that was the cause, whatever the message;
                // resynchronise and send once more. A chain nonce behind ours only means our
                // own transactions are still pending: the error stands.
                Err(error @ ChainError::Reverted { .. }) => match used {
                    Some(used) if self.chain_nonce().await? > used => {
                        tracing::warn!(%error, "stale nonce; re-reading it from the chain");
                        *nonce = None;
                        self.submit(&mut nonce, &calls).await?
                    }
                    _ => return Err(error),
                },
                other => other?,
            }
        };
        self.wait(tx_hash).await
    }

    /// Checks that the relayer's transaction ran this account's outside execution: the
    /// account no longer accepts its nonce (a relayer could answer with the hash of any
    /// successful transaction).
    async fn check_executed(
        &self,
        user: Felt,
        nonce: Felt,
        tx_hash: Felt,
    ) -> Result<(), ChainError> {
        let answer = self
            .account
            .provider()
            .call(
                FunctionCall {
                    contract_address: user,
                    entry_point_selector: selector!("is_valid_outside_execution_nonce"),
                    calldata: vec![nonce],
                },
                BlockId::Tag(BlockTag::PreConfirmed),
            )
            .await
            .map_err(ChainError::from)?;
        if answer.first() == Some(&Felt::ZERO) {
            Ok(())
        } else {
            Err(ChainError::Paymaster {
                code: None,
                message: format!(
                    "its transaction {tx_hash:#x} did not run this account's execution (nonce \
                     {nonce:#x} still unused)"
                ),
            })
        }
    }

    /// Estimates `calls` as this account's next transaction: the node executes them exactly
    /// as they would run now (signature validation included), so a revert comes back as
    /// [`ChainError::Reverted`] with the contract's error string and nothing is sent.
    pub async fn estimate(&self, calls: &[Call]) -> Result<FeeEstimate, ChainError> {
        let nonce = match *self.nonce.lock().await {
            Some(value) => value,
            None => self.chain_nonce().await?,
        };
        self.config
            .retry
            .run(|| async {
                self.account
                    .execute_v3(calls.to_vec())
                    .nonce(nonce)
                    .estimate_fee()
                    .await
                    .map_err(ChainError::from)
            })
            .await
    }

    /// Sends `calls` with the caller's gas bounds (no estimation) and returns the transaction
    /// hash once the node accepted it, without waiting for the receipt (see
    /// [`Self::wait`]). A rejected nonce is re-read from the chain and the transaction sent
    /// once more.
    pub async fn send_with_bounds(
        &self,
        calls: &[Call],
        bounds: &GasBounds,
    ) -> Result<Felt, ChainError> {
        let mut nonce = self.nonce.lock().await;
        match self.submit_bounded(&mut nonce, calls, bounds).await {
            Err(ChainError::NonceRejected(message)) => {
                tracing::warn!(%message, "nonce rejected; re-reading it from the chain");
                *nonce = None;
                self.submit_bounded(&mut nonce, calls, bounds).await
            }
            other => other,
        }
    }

    /// Forgets the cached nonce: the next transaction reads it from the chain (after a
    /// transaction whose fate is unknown, e.g. no receipt in time).
    pub async fn forget_nonce(&self) {
        *self.nonce.lock().await = None;
    }

    /// Awaits the receipt of a transaction this sender sent.
    pub async fn wait(&self, tx_hash: Felt) -> Result<TxOutcome, ChainError> {
        let receipt = self
            .config
            .retry
            .run(|| wait_for_receipt(self.account.provider(), tx_hash))
            .await?;
        Ok(TxOutcome { tx_hash, receipt })
    }

    /// Sends `calls` within the caller's `bounds` at the cached (else the chain's) nonce, as
    /// [`Self::submit`] sends an estimated transaction: a lost answer is looked up, never
    /// answered by sending the calls again.
    async fn submit_bounded(
        &self,
        nonce: &mut Option<Felt>,
        calls: &[Call],
        bounds: &GasBounds,
    ) -> Result<Felt, ChainError> {
        let current = match *nonce {
            Some(value) => value,
            None => self.chain_nonce().await?,
        };
        self.send_signed(nonce, current, calls, bounds).await
    }

    /// `calls` as this account's transaction at `nonce` within `bounds` (no estimation).
    fn bounded(&self, calls: &[Call], nonce: Felt, bounds: &GasBounds) -> ExecutionV3<'_, A> {
        self.account
            .execute_v3(calls.to_vec())
            .nonce(nonce)
            .l1_gas(bounds.l1_gas)
            .l1_gas_price(bounds.l1_gas_price)
            .l2_gas(bounds.l2_gas)
            .l2_gas_price(bounds.l2_gas_price)
            .l1_data_gas(bounds.l1_data_gas)
            .l1_data_gas_price(bounds.l1_data_gas_price)
    }

    /// The account's nonce as the chain sees it (pre-confirmed block included).
    async fn chain_nonce(&self) -> Result<Felt, ChainError> {
        self.config
            .retry
            .run(|| async {
                self.account
                    .provider()
                    .get_nonce(BlockId::Tag(BlockTag::PreConfirmed), self.account.address())
                    .await
                    .map_err(ChainError::from)
            })
            .await
    }

    /// Sends `calls` at the cached (else the chain's) nonce: estimated once, then the same
    /// signed transaction is sent until the node answers. A send whose answer was lost (a
    /// transport error) may have reached the node, so before each new attempt, and when a
    /// later attempt is refused, the transaction's hash is looked up: a transaction the node
    /// knows is this one, and is not sent again (re-sending the calls at a fresh nonce after a
    /// lost answer would run them twice).
    async fn submit(&self, nonce: &mut Option<Felt>, calls: &[Call]) -> Result<Felt, ChainError> {
        let current = match *nonce {
            Some(value) => value,
            None => self.chain_nonce().await?,
        };
        let estimate = self
            .config
            .retry
            .run(|| async {
                self.account
                    .execute_v3(calls.to_vec())
                    .nonce(current)
                    .estimate_fee()
                    .await
                    .map_err(ChainError::from)
            })
            .await?;
        let bounds = GasBounds::from_estimate(&estimate, self.config.fee_margin);
        self.send_signed(nonce, current, calls, &bounds).await
    }

    /// Signs `calls` once at `current` within `bounds` and sends that transaction until the
    /// node answers. A send whose answer was lost (a transport error) may have reached the
    /// node, so before each new attempt, and when a later attempt is refused, the
    /// transaction's hash is looked up: a transaction the node knows is this one, and is not
    /// sent again. On success the cached nonce moves past `current`; when the transaction's
    /// fate stays unknown it is forgotten (the next transaction reads it from the chain).
    async fn send_signed(
        &self,
        nonce: &mut Option<Felt>,
        current: Felt,
        calls: &[Call],
        bounds: &GasBounds,
    ) -> Result<Felt, ChainError> {
        let prepared = self
            .bounded(calls, current, bounds)
            .tip(0)
            .prepared()
            .map_err(|e| ChainError::Transport(format!("preparing the transaction: {e}")))?;
        let tx_hash = prepared.transaction_hash(false);
        let lost = AtomicBool::new(false);
        let sent = self
            .config
            .retry
            .run(|| async {
                if lost.load(Ordering::SeqCst) && self.known(tx_hash).await? {
                    return Ok(tx_hash);
                }
                match prepared.send().await.map_err(ChainError::from) {
                    Ok(sent) => Ok(sent.transaction_hash),
                    Err(error @ ChainError::Transport(_)) => {
                        lost.store(true, Ordering::SeqCst);
                        Err(error)
                    }
                    Err(error) => {
                        if lost.load(Ordering::SeqCst) && self.known(tx_hash).await? {
                            return Ok(tx_hash);
                        }
                        Err(error)
                    }
                }
            })
            .await;
        let sent = match sent {
            // Once an attempt was lost, any failure after it (a refusal, a refused nonce: the
            // lost attempt may have taken it) leaves the transaction's fate unknown: reported
            // as possibly sent, never as a refusal that would free what it holds, and not sent
            // again.
            Err(error) if lost.load(Ordering::SeqCst) => {
                *nonce = None;
                let message = match error {
                    ChainError::Transport(message) => message,
                    other => other.to_string(),
                };
                return Err(ChainError::Transport(format!(
                    "{message} (transaction {tx_hash:#x} may still land: not sent again)"
                )));
            }
            other => other?,
        };
        *nonce = Some(current + Felt::ONE);
        Ok(sent)
    }

    /// Whether the node knows transaction `tx_hash` (received, pending or included).
    async fn known(&self, tx_hash: Felt) -> Result<bool, ChainError> {
        match self
            .account
            .provider()
            .get_transaction_status(tx_hash)
            .await
            .map_err(ChainError::from)
        {
            Ok(_) => Ok(true),
            Err(ChainError::Rejected(StarknetError::TransactionHashNotFound)) => Ok(false),
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use starknet::core::types::StarknetError;

    fn fast() -> RetryPolicy {
        RetryPolicy {
            attempts: 4,
            first_backoff: Duration::from_millis(1),
        }
    }

    #[tokio::test]
    async fn transport_errors_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let result = fast()
            .run(|| async {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                if n < 2 {
                    Err(ChainError::Transport("connection refused".into()))
                } else {
                    Ok(n)
                }
            })
            .await;
        assert_eq!(result.unwrap(), 2);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn transport_errors_stop_after_the_last_attempt() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = fast()
            .run(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(ChainError::Transport("timed out".into()))
            })
            .await;
        assert!(matches!(result, Err(ChainError::Transport(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn reverts_and_rejections_are_never_retried() {
        for error in [
            ChainError::Rejected(StarknetError::InsufficientAccountBalance),
            ChainError::Reverted {
                reason: "ERC20: insufficient balance".into(),
                panic_data: vec![],
                raw: String::new(),
            },
        ] {
            let calls = AtomicU32::new(0);
            let mut error = Some(error);
            let result: Result<(), _> = fast()
                .run(|| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let error = error.take();
                    async move {
                        Err(error
                            .unwrap_or_else(|| ChainError::Rejected(StarknetError::DuplicateTx)))
                    }
                })
                .await;
            assert!(result.is_err());
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        }
    }
}
