//! Sponsored executions sent together: several users' `execute_sponsored` calls in one
//! relayer transaction (`--batch-window-ms`).
//!
//! Each execution has passed every check and its own exact simulation before it is queued
//! (so its charge and its refusal, if any, are its own). The first execution queued opens a
//! window; when it closes, the queue (up to `--batch-max` executions) goes out from one leased
//! account as one multicall, after **one simulation of the whole batch**: executions that pass
//! alone can still fail together (two charges that each fit a sponsor's deposit but not both;
//! one user's call changing what another's relies on), and a batch that would revert would
//! sink every execution in it at the relayer's cost. A batch whose simulation fails is split:
//! each execution is simulated again alone, on the state the ones before it left, and sent
//! alone or refused with its own error, so one failing execution never takes the others down.
//!
//! What a batch does not change: each user still has one execution in flight, each execution
//! is charged what its own simulation gave (a batch shares the relayer account's validation
//! and fee transfer, so it costs less than its executions' fees added up), and every
//! execution is tracked and watched under the batch's transaction hash.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ciro_chain::sender::GasBounds;
use ciro_chain::starknet::core::types::{Call, Felt};
use tokio::sync::oneshot;

use crate::metrics::RelayerMetrics;
use crate::pool::{Pool, RelayerAccount};
use crate::relayer::{chain_error, unknown, Failure};

/// An execution's transaction: its hash and the account that sent it.
pub(crate) struct Sent {
    pub tx_hash: Felt,
    pub account: Arc<RelayerAccount>,
    /// Executions in the transaction.
    pub executions: usize,
}

type Reply = Result<Sent, Failure>;

/// One queued execution: its calls (the `execute_sponsored` call), the gas bounds of its
/// own simulation, and where its outcome goes.
struct Entry {
    calls: Vec<Call>,
    bounds: GasBounds,
    reply: oneshot::Sender<Reply>,
}

/// The queue of executions waiting for their batch.
pub(crate) struct Batcher {
    pool: Arc<Pool>,
    metrics: RelayerMetrics,
    window: Duration,
    max: usize,
    gas_margin: f64,
    lease_wait: Duration,
    queue: Mutex<Vec<Entry>>,
}

impl Batcher {
    pub(crate) fn new(
        pool: Arc<Pool>,
        metrics: RelayerMetrics,
        window: Duration,
        max: usize,
        gas_margin: f64,
        lease_wait: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            pool,
            metrics,
            window,
            max: max.max(1),
            gas_margin,
            lease_wait,
            queue: Mutex::new(Vec::new()),
        })
    }

    /// Queues `calls` (simulated alone with `bounds`) and waits for the transaction they
    /// went out in.
    pub(crate) async fn send(self: &Arc<Self>, calls: Vec<Call>, bounds: GasBounds) -> Reply {
        let (reply, answer) = oneshot::channel();
        let opens_window = {
            let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.push(Entry {
                calls,
                bounds,
                reply,
            });
            queue.len() == 1
        };
        if opens_window {
            let batcher = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(batcher.window).await;
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

    /// Sends what is queued, `max` executions per transaction.
    async fn flush(&self) {
        loop {
            let entries: Vec<Entry> = {
                let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                let n = queue.len().min(self.max);
                queue.drain(..n).collect()
            };
            if entries.is_empty() {
                return;
            }
            self.send_batch(entries).await;
        }
    }

    async fn send_batch(&self, entries: Vec<Entry>) {
        let Some(lease) = self.pool.lease(None, self.lease_wait).await else {
            for entry in entries {
                let _ = entry.reply.send(Err(Failure::Before(unknown(
                    "no relayer account is free; try again",
                ))));
            }
            return;
        };
        let account = lease.account().clone();
        let sender = &account.sender;
        if entries.len() > 1 {
            let calls: Vec<Call> = entries.iter().flat_map(|e| e.calls.clone()).collect();
            match sender.estimate(&calls).await {
                Ok(estimate) => {
                    let bounds = GasBounds::from_estimate(&estimate, self.gas_margin);
                    let sent = sender.send_with_bounds(&calls, &bounds).await;
                    drop(lease);
                    self.metrics.batch("sent", entries.len());
                    match sent {
                        Ok(tx_hash) => {
                            tracing::debug!(
                                tx = %format!("{tx_hash:#x}"),
                                executions = entries.len(),
                                "batch sent"
                            );
                            let executions = entries.len();
                            for entry in entries {
                                let _ = entry.reply.send(Ok(Sent {
                                    tx_hash,
                                    account: account.clone(),
                                    executions,
                                }));
                            }
                        }
                        Err(error) => {
                            tracing::error!(relayer = %format!("{:#x}", account.address), "sending a batch failed: {error}");
                            let error = chain_error(error);
                            for entry in entries {
                                let _ = entry.reply.send(Err(Failure::Sending(error.clone())));
                            }
                        }
                    }
                    return;
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
            // Split from a failed batch: simulated again on the state the executions sent
            // before it leave.
            let bounds = if alone {
                entry.bounds
            } else {
                match sender.estimate(&entry.calls).await {
                    Ok(estimate) => GasBounds::from_estimate(&estimate, self.gas_margin),
                    Err(error) => {
                        self.metrics.refused("simulation");
                        let _ = entry.reply.send(Err(Failure::Before(chain_error(error))));
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
                    Err(Failure::Sending(chain_error(error)))
                }
            };
            let _ = entry.reply.send(reply);
        }
        drop(lease);
    }
}
