//! A typed, resumable stream of the project's contract events: what the coordinator's
//! indexer consumes.
//!
//! [`EventStream::next_page`] reads `starknet_getEvents` for one contract from an
//! [`EventCursor`] up to the latest block, one page (chunk) at a time, and decodes every
//! event into the contract's binding type. The cursor is plain data (serde): store it after
//! processing a page, and a restarted indexer resumes exactly there, with nothing lost or
//! repeated. Only events in blocks (ACCEPTED_ON_L2 or later) advance the cursor;
//! [`EventStream::pre_confirmed`] peeks at the pre-confirmed block's events, which come again
//! through `next_page` once their block is closed.

use serde::{Deserialize, Serialize};
use starknet::core::types::{BlockId, BlockTag, EmittedEvent, EventFilter, Felt};
use starknet::providers::Provider;

use crate::bindings::{cdc_pool, governance, job_mgr, paymaster, test_token};
use crate::ChainError;

/// The contracts whose events the stream decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContractKind {
    TestToken,
    JobMgr,
    CdcPool,
    Paymaster,
}

/// A decoded event of one of the project's contracts. The governance every contract hosts
/// emits its own events (roles, admin, pause, upgrades) from the host's address, decoded as
/// [`CiroEvent::Governance`].
#[derive(Debug, Clone, PartialEq)]
pub enum CiroEvent {
    TestToken(test_token::Event),
    JobMgr(job_mgr::Event),
    CdcPool(cdc_pool::Event),
    Paymaster(paymaster::Event),
    Governance(governance::Event),
}

impl ContractKind {
    fn decode(self, event: &EmittedEvent) -> Result<CiroEvent, String> {
        let own = match self {
            ContractKind::TestToken => {
                return test_token::Event::try_from(event).map(CiroEvent::TestToken)
            }
            ContractKind::JobMgr => job_mgr::Event::try_from(event).map(CiroEvent::JobMgr),
            ContractKind::CdcPool => cdc_pool::Event::try_from(event).map(CiroEvent::CdcPool),
            ContractKind::Paymaster => paymaster::Event::try_from(event).map(CiroEvent::Paymaster),
        };
        own.or_else(|own_error| {
            governance::Event::try_from(event)
                .map(CiroEvent::Governance)
                .map_err(|_| own_error)
        })
    }
}

/// How final an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Finality {
    /// In a closed block (ACCEPTED_ON_L2, or ACCEPTED_ON_L1 later).
    AcceptedOnL2,
    /// In the pre-confirmed block: may still change or be dropped.
    PreConfirmed,
}

/// One decoded event with where it happened.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainEvent {
    pub contract: Felt,
    pub block_number: Option<u64>,
    pub block_hash: Option<Felt>,
    pub tx_hash: Felt,
    pub finality: Finality,
    pub event: CiroEvent,
}

/// Where a stream stands. Store it after handling a page; resume from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventCursor {
    /// First block not yet fully read.
    pub from_block: u64,
    /// The end of the range being paged through (a continuation token belongs to one range).
    pub to_block: Option<u64>,
    /// The node's token for the next page of `from_block..=to_block`.
    pub continuation: Option<String>,
}

impl EventCursor {
    /// A cursor at `block` (e.g. the deployment block from the manifest).
    pub fn at(block: u64) -> Self {
        Self {
            from_block: block,
            to_block: None,
            continuation: None,
        }
    }
}

/// Events of one contract, page by page.
#[derive(Debug, Clone)]
pub struct EventStream<P> {
    provider: P,
    contract: Felt,
    kind: ContractKind,
    chunk_size: u64,
}

impl<P: Provider + Sync> EventStream<P> {
    /// A stream over `contract`'s events; pages hold at most `chunk_size` events.
    pub fn new(provider: P, contract: Felt, kind: ContractKind, chunk_size: u64) -> Self {
        Self {
            provider,
            contract,
            kind,
            chunk_size: chunk_size.max(1),
        }
    }

    /// The next page of accepted events from `cursor`, and the cursor after it. An empty
    /// page with an unchanged `from_block` means the stream is caught up.
    pub async fn next_page(
        &self,
        cursor: &EventCursor,
    ) -> Result<(Vec<ChainEvent>, EventCursor), ChainError> {
        let (events, next) = self.next_raw_page(cursor).await?;
        Ok((self.decode_page(&events)?, next))
    }

    /// [`Self::next_page`] without the decoding: the node's events as they came, and the
    /// cursor after them. A reader that pipelines pages asks for the next page as soon as it
    /// has this one's cursor, and decodes ([`Self::decode_page`]) elsewhere.
    pub async fn next_raw_page(
        &self,
        cursor: &EventCursor,
    ) -> Result<(Vec<EmittedEvent>, EventCursor), ChainError> {
        let to_block = match cursor.to_block {
            Some(to) => to,
            None => self
                .provider
                .block_number()
                .await
                .map_err(ChainError::from)?,
        };
        if cursor.from_block > to_block {
            return Ok((Vec::new(), EventCursor::at(cursor.from_block)));
        }
        let filter = EventFilter {
            from_block: Some(BlockId::Number(cursor.from_block)),
            to_block: Some(BlockId::Number(to_block)),
            address: Some(self.contract),
            keys: None,
        };
        let page = self
            .provider
            .get_events(filter, cursor.continuation.clone(), self.chunk_size)
            .await
            .map_err(ChainError::from)?;
        let next = match page.continuation_token {
            Some(token) => EventCursor {
                from_block: cursor.from_block,
                to_block: Some(to_block),
                continuation: Some(token),
            },
            None => EventCursor::at(to_block + 1),
        };
        Ok((page.events, next))
    }

    /// Decodes a page of this contract's events (see [`Self::next_raw_page`]).
    pub fn decode_page(&self, events: &[EmittedEvent]) -> Result<Vec<ChainEvent>, ChainError> {
        events.iter().map(|e| self.decode(e)).collect()
    }

    /// The events of the pre-confirmed block (not yet accepted; they will come again from
    /// [`Self::next_page`] once their block closes).
    pub async fn pre_confirmed(&self) -> Result<Vec<ChainEvent>, ChainError> {
        let filter = EventFilter {
            from_block: Some(BlockId::Tag(BlockTag::PreConfirmed)),
            to_block: Some(BlockId::Tag(BlockTag::PreConfirmed)),
            address: Some(self.contract),
            keys: None,
        };
        every_event(&self.provider, filter, self.chunk_size)
            .await?
            .iter()
            .map(|event| self.decode(event))
            .collect()
    }

    fn decode(&self, event: &EmittedEvent) -> Result<ChainEvent, ChainError> {
        let decoded = self.kind.decode(event).map_err(|e| {
            ChainError::internal(anyhow::anyhow!(
                "undecodable {:?} event in tx {:#x}: {e}",
                self.kind,
                event.transaction_hash
            ))
        })?;
        Ok(ChainEvent {
            contract: event.from_address,
            block_number: event.block_number,
            block_hash: event.block_hash,
            tx_hash: event.transaction_hash,
            finality: if event.block_hash.is_some() {
                Finality::AcceptedOnL2
            } else {
                Finality::PreConfirmed
            },
            event: decoded,
        })
    }
}

/// Every event `filter` matches, page after page of `chunk_size` (the node's continuation
/// tokens followed to the end).
pub async fn every_event<P: Provider + Sync>(
    provider: &P,
    filter: EventFilter,
    chunk_size: u64,
) -> Result<Vec<EmittedEvent>, ChainError> {
    let mut events = Vec::new();
    let mut continuation = None;
    loop {
        let page = provider
            .get_events(filter.clone(), continuation, chunk_size)
            .await
            .map_err(ChainError::from)?;
        events.extend(page.events);
        match page.continuation_token {
            Some(token) => continuation = Some(token),
            None => return Ok(events),
        }
    }
}
