//! Sending transactions and awaiting their receipts.

use std::time::{Duration, Instant};

use cainome::cairo_serde::call::FCall;
use cainome::cairo_serde::CairoSerde;
use starknet::accounts::{ConnectedAccount, ExecutionV3};
use starknet::core::types::{
    BlockId, BlockTag, Event, ExecutionResult, Felt, StarknetError, TransactionReceipt,
    TransactionReceiptWithBlockInfo,
};
use starknet::providers::{Provider, ProviderError};

use crate::ChainError;

/// How long [`wait_for_receipt`] waits before giving up.
pub const RECEIPT_TIMEOUT: Duration = Duration::from_secs(60);
const RECEIPT_POLL: Duration = Duration::from_millis(50);

/// A transaction that succeeded on chain.
#[derive(Debug, Clone)]
pub struct TxOutcome {
    pub tx_hash: Felt,
    pub receipt: TransactionReceiptWithBlockInfo,
}

impl TxOutcome {
    /// Every event the transaction emitted, in order (the fee transfer included).
    pub fn events(&self) -> &[Event] {
        self.receipt.receipt.events()
    }

    /// The events emitted by `contract`, in order.
    pub fn events_from(&self, contract: Felt) -> Vec<&Event> {
        self.events()
            .iter()
            .filter(|e| e.from_address == contract)
            .collect()
    }

    /// The fee paid, in the fee token's smallest unit (FRI for STRK).
    pub fn actual_fee(&self) -> Felt {
        let fee = match &self.receipt.receipt {
            TransactionReceipt::Invoke(r) => &r.actual_fee,
            TransactionReceipt::Declare(r) => &r.actual_fee,
            TransactionReceipt::DeployAccount(r) => &r.actual_fee,
            TransactionReceipt::Deploy(r) => &r.actual_fee,
            TransactionReceipt::L1Handler(r) => &r.actual_fee,
        };
        fee.amount
    }
}

/// The timestamp of `block` (a number, `Latest`, or `PreConfirmed` for the block the next
/// transaction lands in).
pub async fn block_timestamp<P>(provider: &P, block: BlockId) -> Result<u64, ChainError>
where
    P: Provider + Sync,
{
    use starknet::core::types::MaybePreConfirmedBlockWithTxHashes as Block;
    let block = provider
        .get_block_with_tx_hashes(block)
        .await
        .map_err(ChainError::from)?;
    Ok(match block {
        Block::Block(b) => b.timestamp,
        Block::PreConfirmedBlock(b) => b.timestamp,
    })
}

/// The hash of block `number` (a closed block).
pub async fn block_hash<P>(provider: &P, number: u64) -> Result<Felt, ChainError>
where
    P: Provider + Sync,
{
    use starknet::core::types::MaybePreConfirmedBlockWithTxHashes as Block;
    match provider
        .get_block_with_tx_hashes(BlockId::Number(number))
        .await
        .map_err(ChainError::from)?
    {
        Block::Block(b) => Ok(b.block_hash),
        Block::PreConfirmedBlock(_) => Err(ChainError::internal(anyhow::anyhow!(
            "block {number} is not closed yet"
        ))),
    }
}

/// Sends a cainome-built execution and awaits its receipt through `provider`. A revert, in
/// fee estimation or on chain, becomes [`ChainError::Reverted`] with the contract's error
/// string.
pub async fn send<P, A>(
    provider: &P,
    execution: ExecutionV3<'_, A>,
) -> Result<TxOutcome, ChainError>
where
    P: Provider + Sync,
    A: ConnectedAccount + Sync,
{
    let sent = execution.send().await.map_err(ChainError::from)?;
    let receipt = wait_for_receipt(provider, sent.transaction_hash).await?;
    Ok(TxOutcome {
        tx_hash: sent.transaction_hash,
        receipt,
    })
}

/// Polls for the receipt of `tx_hash` until it is known, then checks its execution result.
pub async fn wait_for_receipt<P>(
    provider: &P,
    tx_hash: Felt,
) -> Result<TransactionReceiptWithBlockInfo, ChainError>
where
    P: Provider + Sync,
{
    let started = Instant::now();
    loop {
        match provider.get_transaction_receipt(tx_hash).await {
            Ok(receipt) => {
                return match receipt.receipt.execution_result() {
                    ExecutionResult::Succeeded => Ok(receipt),
                    ExecutionResult::Reverted { reason } => {
                        Err(ChainError::reverted(reason.clone()))
                    }
                };
            }
            Err(ProviderError::StarknetError(StarknetError::TransactionHashNotFound)) => {}
            Err(e) => return Err(e.into()),
        }
        if started.elapsed() > RECEIPT_TIMEOUT {
            return Err(ChainError::ReceiptTimeout {
                tx_hash,
                waited_ms: started.elapsed().as_millis() as u64,
            });
        }
        tokio_sleep(RECEIPT_POLL).await;
    }
}

async fn tokio_sleep(duration: Duration) {
    // starknet-rs is runtime-agnostic; the services and tests run on tokio.
    tokio::time::sleep(duration).await
}

/// Runs a cainome-built view call at the latest block. A panic in the view becomes
/// [`ChainError::Reverted`] with the contract's error string.
pub async fn call<P, T>(fcall: FCall<'_, P, T>) -> Result<T, ChainError>
where
    P: Provider + Sync,
    T: CairoSerde<RustType = T>,
{
    fcall
        .block_id(BlockId::Tag(BlockTag::Latest))
        .call()
        .await
        .map_err(ChainError::from)
}
