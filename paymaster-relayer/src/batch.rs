//! Sponsored executions sent together: several users' `execute_sponsored` calls in one
//! relayer transaction (`--batch-window-ms`).
//!
//! Each execution has passed every check and its own exact simulation before it is queued
//! (so its charge and its refusal, if any, are its own). The first execution queued opens a
//! window; when it closes (or `--batch-max` executions are queued), the queue goes out in
//! batches, each from its own leased account as one multicall, after **one simulation of the
//! whole batch**:
//! executions that pass alone can still fail together (two charges that each fit a sponsor's
//! deposit but not both; one user's call changing what another's relies on), and a batch that
//! would revert would sink every execution in it at the relayer's cost. The batch goes out
//! whole only if that simulation passes **and costs no more than its executions' charges
//! cover** (each charge is its own simulation's fee times the charge margin; executions that
//! interact can make each other dearer). Otherwise it is split: each execution is simulated
//! again alone, once the one split before it has landed (the rest are refused, unsent, if it
//! has no receipt in time), and sent alone (if its fee still fits what its charge covers) or
//! refused with its own error, so one failing execution never takes the others down.
//!
//! At flush time an execution whose window now leaves less than `min_remaining_secs` is
//! refused (its window was checked when it arrived; one that closes while it waits would
//! revert the whole batch at the relayer's cost). A batch keeps under [`MAX_BATCH_CALLDATA`]
//! felts. A client that goes away changes nothing: its execution runs to its end in a task of
//! its own, tracked and watched like any other.
//!
//! What a batch does not change: each user still has one execution in flight, each execution
//! is charged what its own simulation gave, and every execution is tracked and watched under
//! the hash of the transaction it went out in (its batch's, or its own once split). How a
//! batch that reverts on chain is treated:
//! [`crate::relayer`]'s `after_landing`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ciro_api::snip29::ErrorObject;
use ciro_chain::sender::GasBounds;
use ciro_chain::starknet::core::types::{Call, Felt, StarknetError};
use ciro_chain::ChainError;
use tokio::sync::oneshot;

use crate::metrics::RelayerMetrics;
use crate::pool::{Pool, RelayerAccount};
use crate::relayer::{
    chain_error, spent_for, unknown, window_closing, ChainClock, Failure, Limits, SpentOut,
};

/// Most calldata felts in one batch transaction (the sequencer's limit on a transaction's
/// calldata is 4,000 felts on Starknet's public networks).
pub(crate) const MAX_BATCH_CALLDATA: usize = 3_500;

/// Most executions queued at once; more are refused (try again).
const MAX_QUEUED: usize = 1_024;

/// How long a split execution waits for the receipt of the one sent before it.
const SPLIT_WAIT: Duration = Duration::from_secs(30);

/// An execution's transaction: its hash, the account that sent it, and how many executions
/// it carries.
pub(crate) struct Sent {
    pub tx_hash: Felt,
    pub account: Arc<RelayerAccount>,
    pub executions: usize,
}

type Reply = Result<Sent, Failure>;

/// One queued execution.
pub(crate) struct Entry {
    /// Its `execute_sponsored` call.
    pub calls: Vec<Call>,
    /// The gas bounds of its own simulation.
    pub bounds: GasBounds,
    /// What its charge covers, in FRI: its own simulation's fee times the charge margin. A
    /// batch dearer than its executions' covers added up, or a re-simulation over its own
    /// cover, is not sent: the relayer is never charged more than it is paid back, and a gas
    /// price that rises within the margin while the execution waits refuses nothing.
    pub covered: u128,
    /// The end of its window.
    pub execute_before: u64,
    /// Its sponsor and its charge: an account whose budget left with the sponsor was read
    /// below the charge does not send it.
    pub charged: (Felt, u128),
    reply: Option<oneshot::Sender<Reply>>,
}

impl Entry {
    pub(crate) fn new(
        calls: Vec<Call>,
        bounds: GasBounds,
        covered: u128,
        execute_before: u64,
        charged: (Felt, u128),
    ) -> Self {
        Self {
            calls,
            bounds,
            covered,
            execute_before,
            charged,
            reply: None,
        }
    }

    fn calldata(&self) -> usize {
        self.calls.iter().map(|c| c.calldata.len() + 3).sum()
    }

    fn answer(self, reply: Reply) {
        if let Some(to) = self.reply {
            let _ = to.send(reply);
        }
    }

    /// Whether nobody waits for its answer any more. The relayer runs every execution to its
    /// end whatever its client does (`Relayer::execute`), so this is only an
    /// execution whose task itself failed.
    fn gone(&self) -> bool {
        self.reply.as_ref().is_none_or(|r| r.is_closed())
    }
}

/// The queue of executions waiting for their batch.
pub(crate) struct Batcher {
    pool: Arc<Pool>,
    metrics: RelayerMetrics,
    clock: Arc<ChainClock>,
    /// The relayer's accounts whose budget left with a sponsor was read below a charge.
    spent_out: SpentOut,
    /// The window, most executions per batch, gas margin, lease wait and least remaining
    /// validity: the relayer's own.
    limits: Limits,
    queue: Mutex<Vec<Entry>>,
}

impl Batcher {
    pub(crate) fn new(
        pool: Arc<Pool>,
        metrics: RelayerMetrics,
        clock: Arc<ChainClock>,
        spent_out: SpentOut,
        limits: &Limits,
    ) -> Arc<Self> {
        Arc::new(Self {
            pool,
            metrics,
            clock,
            spent_out,
            limits: Limits {
                batch_max: limits.batch_max.max(1),
                ..limits.clone()
            },
            queue: Mutex::new(Vec::new()),
        })
    }

    /// Queues `entry` and waits for the transaction it went out in.
    pub(crate) async fn send(self: &Arc<Self>, mut entry: Entry) -> Reply {
        let (reply, answer) = oneshot::channel();
        entry.reply = Some(reply);
        let flush_now = {
            let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            if queue.len() >= MAX_QUEUED {
                return Err(Failure::Before(unknown(
                    "too many executions waiting to be sent; try again",
                )));
            }
            queue.push(entry);
            flush_after(queue.len(), self.limits.batch_max, self.limits.batch_window)
        };
        if let Some(wait) = flush_now {
            let batcher = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                batcher.flush().await;
            });
        }
        // The sender is dropped only if the task sending it died: it may have been sent.
        answer.await.unwrap_or_else(|_| {
            Err(Failure::Sending(unknown(
                "the batch this execution was in was lost; it may still land",
            )))
        })
    }

    /// Sends what is queued, in batches of at most `max` executions and
    /// [`MAX_BATCH_CALLDATA`] felts, each in a task of its own: a batch that is slow to go out
    /// (split, waiting for receipts) holds up no other.
    async fn flush(self: &Arc<Self>) {
        loop {
            let entries: Vec<Entry> = {
                let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                let mut calldata = 0;
                let mut n = 0;
                while n < queue.len().min(self.limits.batch_max) {
                    calldata += queue[n].calldata();
                    if n > 0 && calldata > MAX_BATCH_CALLDATA {
                        break;
                    }
                    n += 1;
                }
                queue.drain(..n).collect()
            };
            if entries.is_empty() {
                return;
            }
            let waited_for = entries.into_iter().filter(|entry| {
                let gone = entry.gone();
                if gone {
                    self.metrics.refused("task_lost");
                    tracing::warn!("an execution nobody waits for any more is not sent");
                }
                !gone
            });
            let live = self.still_open(waited_for);
            if !live.is_empty() {
                let batcher = self.clone();
                tokio::spawn(async move { batcher.send_batch(live).await });
            }
        }
    }

    /// `entries` whose windows still leave the least remaining validity now; the others are
    /// refused.
    fn still_open(&self, entries: impl IntoIterator<Item = Entry>) -> Vec<Entry> {
        let now = self.clock.now();
        let mut open = Vec::new();
        for entry in entries {
            if self.limits.closing(entry.execute_before, now) {
                self.metrics.refused("window_closing");
                entry.answer(Err(Failure::Before(window_closing(
                    self.limits.min_remaining_secs,
                ))));
            } else {
                open.push(entry);
            }
        }
        open
    }

    /// Whether `account` is to be passed over for `entries`: its budget left with one of their
    /// sponsors was read below that entry's charge (see [`spent_for`]).
    fn spent(&self, account: Felt, entries: &[Entry]) -> bool {
        entries.iter().any(|entry| {
            let (sponsor, charge) = entry.charged;
            spent_for(&self.spent_out, account, sponsor, charge)
        })
    }

    async fn send_batch(&self, entries: Vec<Entry>) {
        let lease = self
            .pool
            .lease_avoiding(None, |a| self.spent(a, &entries), self.limits.lease_wait)
            .await;
        let Some(lease) = lease else {
            for entry in entries {
                entry.answer(Err(Failure::Before(unknown(
                    "no relayer account is free; try again",
                ))));
            }
            return;
        };
        // The lease may have taken a while: the windows are checked again.
        let entries = self.still_open(entries);
        let account = lease.account().clone();
        let sender = &account.sender;
        if entries.len() > 1 {
            let calls: Vec<Call> = entries.iter().flat_map(|e| e.calls.clone()).collect();
            let covered: u128 = entries.iter().map(|e| e.covered).sum();
            match sender.estimate(&calls).await {
                Ok(estimate) if estimate.overall_fee <= covered => {
                    let bounds = GasBounds::from_estimate(&estimate, self.limits.gas_margin);
                    let sent = sender.send_with_bounds(&calls, &bounds).await;
                    drop(lease);
                    let executions = entries.len();
                    match sent {
                        Ok(tx_hash) => {
                            self.metrics.batch("sent", executions);
                            tracing::debug!(
                                tx = %format!("{tx_hash:#x}"),
                                executions,
                                "batch sent"
                            );
                            for entry in entries {
                                entry.answer(Ok(Sent {
                                    tx_hash,
                                    account: account.clone(),
                                    executions,
                                }));
                            }
                        }
                        Err(error) => {
                            self.metrics.batch("failed", executions);
                            tracing::error!(relayer = %format!("{:#x}", account.address), "sending a batch failed: {error}");
                            let failure = send_failure(error);
                            for entry in entries {
                                entry.answer(Err(failure.clone()));
                            }
                        }
                    }
                    return;
                }
                Ok(estimate) => {
                    self.metrics.batch("split", entries.len());
                    tracing::warn!(
                        executions = entries.len(),
                        batch_fee = estimate.overall_fee,
                        covered,
                        "a batch costs more than its executions' charges cover; they go one by one"
                    );
                }
                Err(error) => {
                    self.metrics.batch("split", entries.len());
                    tracing::warn!(
                        executions = entries.len(),
                        %error,
                        "a batch fails as a whole; its executions go one by one"
                    );
                }
            }
        }
        if entries.len() > 1 {
            // No account is held while the split executions wait for each other.
            drop(lease);
            self.send_split(entries).await;
            return;
        }
        for entry in entries {
            let reply = match sender.send_with_bounds(&entry.calls, &entry.bounds).await {
                Ok(tx_hash) => Ok(Sent {
                    tx_hash,
                    account: account.clone(),
                    executions: 1,
                }),
                Err(error) => {
                    tracing::error!(relayer = %format!("{:#x}", account.address), "sending failed: {error}");
                    Err(send_failure(error))
                }
            };
            entry.answer(reply);
        }
        drop(lease);
    }

    /// A split batch's executions, one by one, each from an account leased for it alone: each
    /// simulated again once the one sent before it has landed (on a live network a simulation
    /// does not see transactions still in the mempool, and one that overlooked them could
    /// revert at the relayer's cost), and sent if its fee still fits what its charge covers.
    /// When the one before has no receipt within [`SPLIT_WAIT`], or its send failed in a way
    /// that may still land, the rest are refused unsent (try again): the state they would be
    /// simulated on is not known.
    async fn send_split(&self, entries: Vec<Entry>) {
        let mut entries = entries.into_iter();
        let mut previous: Option<(Felt, Arc<RelayerAccount>)> = None;
        // Why the rest cannot be simulated on a known state, once they cannot.
        let mut stalled: Option<&str> = None;
        while let Some(entry) = entries.next() {
            if let Some((tx_hash, account)) = previous.take() {
                let missing =
                    match tokio::time::timeout(SPLIT_WAIT, account.sender.wait(tx_hash)).await {
                        Ok(Ok(_)) | Ok(Err(ChainError::Reverted { .. })) => None,
                        Ok(Err(error)) => Some(error.to_string()),
                        Err(_) => Some(format!("none within {SPLIT_WAIT:?}")),
                    };
                if let Some(why) = missing {
                    tracing::warn!(tx = %format!("{tx_hash:#x}"), "a split execution's receipt: {why}");
                    stalled = Some(
                        "an execution split from the same batch has no receipt yet; try again",
                    );
                }
            }
            if let Some(why) = stalled {
                for rest in std::iter::once(entry).chain(entries.by_ref()) {
                    self.metrics.refused("split_stalled");
                    rest.answer(Err(Failure::Before(unknown(why))));
                }
                return;
            }
            let Some(entry) = self.still_open([entry]).pop() else {
                continue;
            };
            let lease = self
                .pool
                .lease_avoiding(
                    None,
                    |a| self.spent(a, std::slice::from_ref(&entry)),
                    self.limits.lease_wait,
                )
                .await;
            let Some(lease) = lease else {
                entry.answer(Err(Failure::Before(unknown(
                    "no relayer account is free; try again",
                ))));
                continue;
            };
            // The lease may have taken a while: the window is checked again.
            let Some(entry) = self.still_open([entry]).pop() else {
                continue;
            };
            let account = lease.account().clone();
            let bounds = match account.sender.estimate(&entry.calls).await {
                Ok(estimate) if estimate.overall_fee <= entry.covered => {
                    GasBounds::from_estimate(&estimate, self.limits.gas_margin)
                }
                Ok(estimate) => {
                    self.metrics.refused("fee_moved");
                    let why = format!(
                        "the fee moved to {} FRI, over what the charge covers ({} FRI); try again",
                        estimate.overall_fee, entry.covered
                    );
                    entry.answer(Err(Failure::Before(
                        ErrorObject::transaction_execution_error(why),
                    )));
                    continue;
                }
                Err(error) => {
                    self.metrics.refused("simulation");
                    entry.answer(Err(Failure::Before(chain_error(error))));
                    continue;
                }
            };
            let sent = account.sender.send_with_bounds(&entry.calls, &bounds).await;
            drop(lease);
            match sent {
                Ok(tx_hash) => {
                    previous = Some((tx_hash, account.clone()));
                    entry.answer(Ok(Sent {
                        tx_hash,
                        account,
                        executions: 1,
                    }));
                }
                Err(error) => {
                    tracing::error!(relayer = %format!("{:#x}", account.address), "sending failed: {error}");
                    let failure = send_failure(error);
                    if matches!(failure, Failure::Sending(_)) {
                        stalled = Some("the send of an execution split from the same batch may still land; try again");
                    }
                    entry.answer(Err(failure));
                }
            }
        }
    }
}

/// When to flush after an execution is queued, `queued` now waiting: the first one opens
/// the window; every `batch_max`-th sends at once (a full batch, `--batch-max 1` included);
/// the others ride on a flush already scheduled.
fn flush_after(queued: usize, batch_max: usize, window: Duration) -> Option<Duration> {
    if queued % batch_max.max(1) == 0 {
        Some(Duration::ZERO)
    } else if queued == 1 {
        Some(window)
    } else {
        None
    }
}

/// A send that failed: only the node's definite refusal of the transaction itself (its
/// validation reverted or failed, the account cannot pay, the fee or version is refused, the
/// account is no account) means nothing went out, and the users are free to try again.
/// Anything else may still have landed: a duplicate (the same transaction is there: a send
/// whose answer was lost went out), a transport failure, a refused nonce, a node's unexpected
/// error, another transaction of the same nonce. (The sender reports a refusal that followed a
/// lost attempt as possibly sent: see `TxSender::send_with_bounds`.)
pub(crate) fn send_failure(error: ChainError) -> Failure {
    match error {
        ChainError::Rejected(
            StarknetError::InsufficientAccountBalance
            | StarknetError::InsufficientResourcesForValidate
            | StarknetError::ValidationFailure(_)
            | StarknetError::NonAccount
            | StarknetError::ContractNotFound
            | StarknetError::UnsupportedTxVersion
            | StarknetError::FeeBelowMinimum,
        )
        | ChainError::Reverted { .. } => Failure::Before(chain_error(error)),
        other => Failure::Sending(chain_error(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_execution_opens_the_window_and_a_full_batch_goes_at_once() {
        let window = Duration::from_millis(400);
        assert_eq!(flush_after(1, 8, window), Some(window));
        assert_eq!(flush_after(2, 8, window), None);
        assert_eq!(flush_after(8, 8, window), Some(Duration::ZERO));
        // Queued while a full batch waits to be taken: the next full one goes too.
        assert_eq!(flush_after(16, 8, window), Some(Duration::ZERO));
        // One per batch: each goes at once, never after a window.
        assert_eq!(flush_after(1, 1, window), Some(Duration::ZERO));
        assert_eq!(flush_after(2, 1, window), Some(Duration::ZERO));
        assert_eq!(flush_after(1, 0, window), Some(Duration::ZERO));
    }

    #[test]
    fn only_a_definite_refusal_means_nothing_went_out() {
        let before = |e| matches!(send_failure(e), Failure::Before(_));
        assert!(before(ChainError::Rejected(
            StarknetError::InsufficientAccountBalance
        )));
        assert!(before(ChainError::Reverted {
            reason: "PM: sponsor deposit too low".into(),
            panic_data: vec![],
            raw: String::new(),
        }));
        assert!(!before(ChainError::Rejected(StarknetError::DuplicateTx)));
        assert!(!before(ChainError::Rejected(
            StarknetError::UnexpectedError("gateway".into())
        )));
        assert!(!before(ChainError::Rejected(
            StarknetError::ReplacementTransactionUnderpriced
        )));
        assert!(!before(ChainError::Transport("timed out".into())));
        assert!(!before(ChainError::NonceRejected("nonce".into())));
    }
}
