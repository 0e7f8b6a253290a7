//! Sponsored executions sent together: several users' `execute_sponsored` calls in one
//! relayer transaction (`--batch-window-ms`).
//!
//! Each execution has passed every check and its own exact simulation before it is queued
//! (so its charge and its refusal, if any, are its own). The first execution queued opens a
//! window; when it closes (or `--batch-max` executions are queued), the queue goes out from
//! one leased account as one multicall, after **one simulation of the whole batch**:
//! executions that pass alone can still fail together (two charges that each fit a sponsor's
//! deposit but not both; one user's call changing what another's relies on), and a batch that
//! would revert would sink every execution in it at the relayer's cost. The batch goes out
//! whole only if that simulation passes **and costs no more than its executions' own
//! simulations added up** (executions that interact can make each other dearer; their
//! charges come from their own simulations). Otherwise it is split: each execution is
//! simulated again alone and sent alone (if its fee still fits what it is charged) or
//! refused with its own error, so one failing execution never takes the others down.
//!
//! At flush time an execution whose window now leaves less than `min_remaining_secs` is
//! refused (its window was checked when it arrived; one that closes while it waits would
//! revert the whole batch at the relayer's cost), and so is one whose client has gone away
//! (nobody would watch its transaction). A batch keeps under [`MAX_BATCH_CALLDATA`] felts.
//!
//! What a batch does not change: each user still has one execution in flight, each execution
//! is charged what its own simulation gave, and every execution is tracked and watched under
//! its batch's transaction hash. How a batch that reverts on chain is treated:
//! [`crate::relayer`]'s `after_landing`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ciro_api::snip29::{ErrorObject, PaymasterError};
use ciro_chain::sender::GasBounds;
use ciro_chain::starknet::core::types::{Call, Felt};
use ciro_chain::ChainError;
use tokio::sync::oneshot;

use crate::metrics::RelayerMetrics;
use crate::pool::{Pool, RelayerAccount};
use crate::relayer::{chain_error, unknown, ChainClock, Failure, Limits};

/// Most calldata felts in one batch transaction (the sequencer's limit on a transaction's
/// calldata is 4,000 felts on Starknet's public networks).
pub(crate) const MAX_BATCH_CALLDATA: usize = 3_500;

/// Most executions queued at once; more are refused (try again).
const MAX_QUEUED: usize = 1_024;

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
    /// The fee of its own simulation (FRI), which its charge was computed from: a batch
    /// dearer than its executions' fees, or a re-simulation over it, is not sent.
    pub fee: u128,
    /// The end of its window.
    pub execute_before: u64,
    reply: Option<oneshot::Sender<Reply>>,
}

impl Entry {
    pub(crate) fn new(calls: Vec<Call>, bounds: GasBounds, fee: u128, execute_before: u64) -> Self {
        Self {
            calls,
            bounds,
            fee,
            execute_before,
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

    fn gone(&self) -> bool {
        self.reply.as_ref().is_none_or(|r| r.is_closed())
    }
}

/// The queue of executions waiting for their batch.
pub(crate) struct Batcher {
    pool: Arc<Pool>,
    metrics: RelayerMetrics,
    clock: Arc<ChainClock>,
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
        limits: &Limits,
    ) -> Arc<Self> {
        Arc::new(Self {
            pool,
            metrics,
            clock,
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
            match queue.len() {
                1 => Some(self.limits.batch_window),
                n if n == self.limits.batch_max => Some(Duration::ZERO),
                _ => None,
            }
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
    /// [`MAX_BATCH_CALLDATA`] felts.
    async fn flush(&self) {
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
            let now = self.clock.now();
            let mut live = Vec::with_capacity(entries.len());
            for entry in entries {
                if entry.gone() {
                    self.metrics.refused("client_gone");
                    tracing::info!("an execution whose client went away is not sent");
                } else if entry.execute_before < now.saturating_add(self.limits.min_remaining_secs)
                {
                    self.metrics.refused("window_closing");
                    entry.answer(Err(Failure::Before(ErrorObject {
                        data: Some(
                            format!(
                                "execute_before leaves less than {} s now",
                                self.limits.min_remaining_secs
                            )
                            .into(),
                        ),
                        ..ErrorObject::paymaster(PaymasterError::InvalidTimeBounds)
                    })));
                } else {
                    live.push(entry);
                }
            }
            if !live.is_empty() {
                self.send_batch(live).await;
            }
        }
    }

    async fn send_batch(&self, entries: Vec<Entry>) {
        let Some(lease) = self.pool.lease(None, self.limits.lease_wait).await else {
            for entry in entries {
                entry.answer(Err(Failure::Before(unknown(
                    "no relayer account is free; try again",
                ))));
            }
            return;
        };
        let account = lease.account().clone();
        let sender = &account.sender;
        if entries.len() > 1 {
            let calls: Vec<Call> = entries.iter().flat_map(|e| e.calls.clone()).collect();
            let own: u128 = entries.iter().map(|e| e.fee).sum();
            match sender.estimate(&calls).await {
                Ok(estimate) if estimate.overall_fee <= own => {
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
                        own_fees = own,
                        "a batch costs more than its executions alone; they go one by one"
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
        let alone = entries.len() == 1;
        for entry in entries {
            // Split from a batch: simulated again, after the executions sent before it.
            let bounds = if alone {
                entry.bounds
            } else {
                match sender.estimate(&entry.calls).await {
                    Ok(estimate) if estimate.overall_fee <= entry.fee => {
                        GasBounds::from_estimate(&estimate, self.limits.gas_margin)
                    }
                    Ok(estimate) => {
                        self.metrics.refused("fee_moved");
                        let why = format!(
                            "the fee moved to {} FRI, over what the charge covers ({} FRI); try again",
                            estimate.overall_fee, entry.fee
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
                }
            };
            let reply = match sender.send_with_bounds(&entry.calls, &bounds).await {
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
}

/// A send that failed: the node's definite refusal means nothing went out (the users are
/// free to try again); anything else may still have landed.
fn send_failure(error: ChainError) -> Failure {
    match error {
        ChainError::Rejected(_) | ChainError::Reverted { .. } => {
            Failure::Before(chain_error(error))
        }
        other => Failure::Sending(chain_error(other)),
    }
}
