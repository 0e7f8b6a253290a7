//! The chain indexer: follows JobMgr's and the CDC Pool's events with the chain crate's
//! [`EventStream`] and mirrors models, jobs, workers and parameters into the [`Store`].
//!
//! Each page of a contract's events becomes one [`Batch`]: its mutations and the stream's
//! next cursor are written in one transaction, so a restarted indexer resumes exactly where
//! it stopped, with nothing lost or applied twice, and [`Store::reset_index`] followed by a
//! run rebuilds the whole index from the deployment block.
//!
//! Job events carry everything their row needs and are applied as they are (the indexer's
//! throughput is bounded by `starknet_getEvents`, not by reads). A worker's row is the pool's
//! own `get_worker` view read at the end of the page's block range (stake tiers, state and
//! reputation are computed by the contract; mirroring that arithmetic would be a second
//! implementation to drift), and so is a job after an assignment, a result or a dispute's
//! opening or resolution (for the contract's own times and the whole dispute). A worker's row
//! is read again after any pool event naming it and after an assignment to it (JobMgr's
//! `hold` on its stake emits no pool event). The job event log's entries come from the
//! events alone, in their order, so a rebuild logs what live indexing logged.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use ciro_chain::bindings::cdc_pool::{self, CdcPoolReader};
use ciro_chain::bindings::job_mgr::{self, JobMgrReader};
use ciro_chain::cainome::cairo_serde::{ContractAddress, U256};
use ciro_chain::constants::contracts;
use ciro_chain::events::{ChainEvent, CiroEvent, ContractKind, EventCursor, EventStream};
use ciro_chain::manifest::Manifest;
use ciro_chain::starknet::core::types::{BlockId, Felt};
use ciro_chain::starknet::core::utils::parse_cairo_short_string;
use ciro_chain::starknet::providers::jsonrpc::HttpTransport;
use ciro_chain::starknet::providers::{JsonRpcClient, Provider};
use ciro_chain::ChainError;
use ciro_protocol::Digest;
use ciro_service::CancellationToken;
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;

use crate::store::{Batch, JobCache, JobRow, ModelRow, Mutation, PageStart, Store, WorkerRow};

/// The node client the indexer reads through.
pub type Node = Arc<JsonRpcClient<HttpTransport>>;

/// Most pages of one contract a step applies.
pub const PAGES_PER_STEP: u32 = 16;

/// Pages read from the node and waiting to be decoded that a reader may hold (see
/// [`Indexer::read_pages`] for all it holds).
pub const READ_AHEAD: usize = 2;

/// Where the indexer stands, shared with the readiness check and the metrics.
#[derive(Debug, Default)]
pub struct IndexerStatus {
    stepped: AtomicBool,
    /// A step found JobMgr's cursor missing (a new or emptied index) since the leader last
    /// took this ([`IndexerStatus::take_started_empty`]).
    started_empty: AtomicBool,
    head: AtomicU64,
    indexed: AtomicU64,
    events: AtomicU64,
}

impl IndexerStatus {
    /// Whether a step began from an index without JobMgr's cursor (a rebuild from the
    /// deployment block) since the last call; clears it.
    pub fn take_started_empty(&self) -> bool {
        self.started_empty.swap(false, Ordering::Relaxed)
    }

    /// Whether a step has completed since the process started (head and indexed are known).
    pub fn stepped(&self) -> bool {
        self.stepped.load(Ordering::Relaxed)
    }

    /// The chain's latest closed block when last looked at.
    pub fn head(&self) -> u64 {
        self.head.load(Ordering::Relaxed)
    }

    /// The last block every stream has fully applied.
    pub fn indexed(&self) -> u64 {
        self.indexed.load(Ordering::Relaxed)
    }

    /// Blocks the index is behind the chain.
    pub fn lag(&self) -> u64 {
        self.head().saturating_sub(self.indexed())
    }

    /// Events applied by this process.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }
}

/// The indexer of one deployment.
#[derive(Debug, Clone)]
pub struct Indexer {
    node: Node,
    store: Store,
    job_mgr: Felt,
    pool: Felt,
    deploy_block: u64,
    page_size: u64,
    status: Arc<IndexerStatus>,
    /// The job rows the last pages left (see [`JobCache`]).
    jobs: Arc<Mutex<JobCache>>,
}

/// Pages read ahead of the writer, and the tasks reading them (aborted when it is dropped).
struct PageReader {
    prepared: mpsc::Receiver<Result<Prepared>>,
    /// The fetching and the preparing task.
    tasks: [AbortOnDropHandle<()>; 2],
}

impl PageReader {
    /// The next page, or `None` after the last one (the range's end or the step's limit,
    /// where the fetching task stops). A task that panicked ends the pages with its panic.
    async fn recv(&mut self) -> Option<Result<Prepared>> {
        if let Some(page) = self.prepared.recv().await {
            return Some(page);
        }
        // The preparing task has ended (its sender is gone); the fetching one ends once its
        // receiver is: their outcomes are known without waiting on the node.
        let [fetch, prepare] = &mut self.tasks;
        for task in [prepare, fetch] {
            if let Err(error) = task.await {
                return Some(Err(error).context("the page reader stopped"));
            }
        }
        None
    }
}

/// A page read and made ready to write, off the write path: its events decoded, their
/// mutations built, and the chain reads they need done at the page's block.
struct Prepared {
    events: u64,
    next: EventCursor,
    block: u64,
    mutations: Vec<Mutation>,
}

/// A felt as the index writes it: minimal `0x` hex.
pub fn felt_text(felt: Felt) -> String {
    format!("{felt:#x}")
}

fn address_text(address: &ContractAddress) -> String {
    felt_text(address.0)
}

/// A u256 amount as the index writes it: minimal `0x` hex.
pub fn amount_text(value: &U256) -> String {
    if value.high == 0 {
        format!("{:#x}", value.low)
    } else {
        format!("0x{:x}{:032x}", value.high, value.low)
    }
}

fn digest_text(value: &U256) -> String {
    Digest::from_halves(value.high, value.low).to_string()
}

fn job_state(state: &job_mgr::JobState) -> &'static str {
    match state {
        job_mgr::JobState::Queued => "Queued",
        job_mgr::JobState::Assigned => "Assigned",
        job_mgr::JobState::Completed => "Completed",
        job_mgr::JobState::Disputed => "Disputed",
        job_mgr::JobState::Finalized => "Finalized",
        job_mgr::JobState::Cancelled => "Cancelled",
        job_mgr::JobState::Expired => "Expired",
        job_mgr::JobState::Refunded => "Refunded",
    }
}

fn nonzero(address: &ContractAddress) -> Option<String> {
    (address.0 != Felt::ZERO).then(|| address_text(address))
}

/// A job's dispute as its row keeps it: compact JSON whose `evidence_hash` is `0x` and minimal
/// hex (the retention rule and the arbiters' read rule find evidence by that text:
/// [`crate::records::dispute_evidence_pattern`]).
pub fn dispute_text(
    disputer: &str,
    evidence_hash: Felt,
    bond: &str,
    opened_at: u64,
) -> serde_json::Result<String> {
    serde_json::to_string(&serde_json::json!({
        "disputer": disputer,
        "evidence_hash": felt_text(evidence_hash),
        "bond": bond,
        "opened_at": opened_at,
    }))
}

/// A job's row from the chain's `get_job`.
pub fn job_row_of(info: &job_mgr::JobInfo) -> Result<JobRow> {
    let job = &info.job;
    let output = (job.output_hash.low != 0 || job.output_hash.high != 0)
        .then(|| digest_text(&job.output_hash));
    Ok(JobRow {
        state: job_state(&job.state).to_owned(),
        worker: nonzero(&job.worker),
        output_hash: output,
        disputer: nonzero(&info.dispute.disputer),
        assigned_at: (job.assigned_at != 0).then_some(job.assigned_at),
        completed_at: (job.completed_at != 0).then_some(job.completed_at),
        dispute: (info.dispute.disputer.0 != Felt::ZERO)
            .then(|| {
                dispute_text(
                    &address_text(&info.dispute.disputer),
                    info.dispute.evidence_hash,
                    &amount_text(&info.dispute.bond),
                    info.dispute.opened_at,
                )
            })
            .transpose()?,
        ..submitted_row(&job_mgr::JobSubmitted {
            job_id: info.job_id,
            submitter: job.submitter,
            model_id: job.model_id,
            input_hash: job.input_hash,
            fee: job.fee,
            deadline: job.deadline,
            items: info.items,
            requirements: info.requirements.clone(),
            terms: info.terms.clone(),
            dispute_bond: info.dispute_bond,
        })?
    })
}

/// A job's row as its `JobSubmitted` event leaves it: queued, no worker, no output.
fn submitted_row(j: &job_mgr::JobSubmitted) -> Result<JobRow> {
    Ok(JobRow {
        job_id: j.job_id,
        submitter: address_text(&j.submitter),
        model_id: j.model_id,
        input_hash: digest_text(&j.input_hash),
        fee: amount_text(&j.fee),
        deadline: j.deadline,
        items: u64::from(j.items),
        min_vram_mb: u64::from(j.requirements.min_vram_mb),
        required_flags: j.requirements.required_flags,
        min_stake_tier: u64::from(j.requirements.min_stake_tier),
        min_score: u64::from(j.requirements.min_score),
        terms: serde_json::to_string(&j.terms)?,
        dispute_bond: amount_text(&j.dispute_bond),
        state: "Queued".to_owned(),
        worker: None,
        output_hash: None,
        disputer: None,
        assigned_at: None,
        completed_at: None,
        dispute: None,
    })
}

/// A worker's row from the pool's `get_worker`.
pub fn worker_row_of(info: &cdc_pool::WorkerInfo) -> Result<WorkerRow> {
    let caps = &info.capabilities;
    Ok(WorkerRow {
        address: address_text(&info.address),
        state: format!("{:?}", info.state),
        gpu_model: parse_cairo_short_string(&caps.gpu_model)
            .unwrap_or_else(|_| felt_text(caps.gpu_model)),
        vram_mb: u64::from(caps.vram_mb),
        compute_capability: u64::from(caps.compute_capability),
        flags: caps.flags,
        stake: amount_text(&info.stake),
        hardware_tier: u64::from(info.hardware_tier),
        stake_tier: u64::from(info.stake_tier),
        score: u64::from(info.reputation.score),
        last_heartbeat: info.record.last_heartbeat,
        info: serde_json::to_string(info)?,
    })
}

impl Indexer {
    /// The indexer of the deployment `manifest` describes, writing to `store`; pages hold at
    /// most `page_size` events.
    pub fn new(node: Node, store: Store, manifest: &Manifest, page_size: u64) -> Result<Self> {
        Ok(Self {
            node,
            store,
            job_mgr: manifest.contract(contracts::JOB_MGR)?,
            pool: manifest.contract(contracts::CDC_POOL)?,
            deploy_block: manifest.deploy_block.unwrap_or(0),
            page_size,
            status: Arc::default(),
            jobs: Arc::default(),
        })
    }

    /// Where the indexer stands.
    pub fn status(&self) -> Arc<IndexerStatus> {
        self.status.clone()
    }

    /// Applies each contract's events, up to [`PAGES_PER_STEP`] pages of each; returns how many
    /// events were applied.
    pub async fn step(&self) -> Result<u64> {
        self.step_fenced(None).await
    }

    /// [`Indexer::step`] as the leader `(holder, epoch)`: its writes are refused once another
    /// replica has taken the lease (see [`crate::leader`]). While a page is applied, the next
    /// one of the same range is already being read (the node and the database work at once).
    pub async fn step_fenced(&self, fence: Option<(&str, u64)>) -> Result<u64> {
        let mut applied = 0;
        let mut indexed = u64::MAX;
        // Both contracts' pages are read from the start (the pool's while JobMgr's are
        // written); each contract's are written in order, JobMgr's first.
        let mut readers = Vec::with_capacity(2);
        for (name, kind, address) in [
            (contracts::JOB_MGR, ContractKind::JobMgr, self.job_mgr),
            (contracts::CDC_POOL, ContractKind::CdcPool, self.pool),
        ] {
            let (cursor, from) = match self.store.cursor(name).await? {
                Some((cursor, _)) => (cursor.clone(), PageStart::After(cursor)),
                None => {
                    if name == contracts::JOB_MGR {
                        self.status.started_empty.store(true, Ordering::Relaxed);
                    }
                    (EventCursor::at(self.deploy_block), PageStart::Empty)
                }
            };
            readers.push((name, from, self.read_pages(name, kind, address, cursor)));
        }
        for (name, mut from, mut reader) in readers {
            // The block this contract's index stands at after its last page.
            let mut done = None;
            while let Some(page) = reader.recv().await {
                let page = page?;
                let events = page.events;
                let next = page.next.clone();
                // On an error the reader's tasks are dropped with it, which aborts them.
                done = Some(self.write_page(name, page, from, fence).await?);
                from = PageStart::After(next);
                applied += events;
                self.status.events.fetch_add(events, Ordering::Relaxed);
            }
            let done = done.context("the page reader ended without a page")?;
            indexed = indexed.min(done);
        }
        let head = self.head().await?;
        self.status.head.store(head, Ordering::Relaxed);
        self.status.indexed.store(indexed, Ordering::Relaxed);
        self.status.stepped.store(true, Ordering::Relaxed);
        if applied > 0 {
            tracing::debug!(applied, indexed, head, "indexed pages");
        }
        Ok(applied)
    }

    /// Reads up to [`PAGES_PER_STEP`] pages of a contract's events from `cursor` and prepares
    /// them, ahead of the writer, in two tasks: one asks the node for the next page as soon as
    /// it has the last one's cursor (the node never waits for the decoding or the database),
    /// the other decodes each page and prepares its mutations. Beyond the page being written,
    /// a reader holds at most [`READ_AHEAD`] + 3 pages: [`READ_AHEAD`] read and waiting to be
    /// prepared, one prepared and waiting to be written, and one in each task waiting to hand
    /// it on. The pages come out in order and end where the fetching task stops; an error
    /// ends them; dropping the reader aborts both tasks.
    fn read_pages(
        &self,
        name: &'static str,
        kind: ContractKind,
        address: Felt,
        cursor: EventCursor,
    ) -> PageReader {
        let stream = EventStream::new(self.node.clone(), address, kind, self.page_size);
        let (raw_pages, mut raw) = mpsc::channel(READ_AHEAD);
        let fetching = stream.clone();
        let fetch = tokio::spawn(async move {
            let mut cursor = cursor;
            for _ in 0..PAGES_PER_STEP {
                let page = fetching
                    .next_raw_page(&cursor)
                    .await
                    .with_context(|| format!("reading {name}'s events"));
                let next = match &page {
                    Ok((_, next)) if next.to_block.is_some() => Some(next.clone()),
                    _ => None,
                };
                if raw_pages.send(page).await.is_err() {
                    return;
                }
                match next {
                    Some(next) => cursor = next,
                    None => return,
                }
            }
        });
        let (prepared_pages, prepared) = mpsc::channel(1);
        let this = self.clone();
        let prepare = tokio::spawn(async move {
            while let Some(page) = raw.recv().await {
                let page = match page {
                    Ok((events, next)) => match stream.decode_page(&events) {
                        Ok(events) => this.prepare(&events, next).await,
                        Err(error) => Err(anyhow::Error::from(error))
                            .context(format!("decoding {name}'s events")),
                    },
                    Err(error) => Err(error),
                };
                let failed = page.is_err();
                if prepared_pages.send(page).await.is_err() || failed {
                    return;
                }
            }
        });
        PageReader {
            prepared,
            tasks: [
                AbortOnDropHandle::new(fetch),
                AbortOnDropHandle::new(prepare),
            ],
        }
    }

    /// The mutations of one page of events, with the chain reads some of them need, at the
    /// page's block (the end of its range).
    async fn prepare(&self, events: &[ChainEvent], next: EventCursor) -> Result<Prepared> {
        let block = next
            .to_block
            .unwrap_or_else(|| next.from_block.saturating_sub(1));
        let mut mutations = Vec::with_capacity(events.len());
        let mut workers = BTreeSet::new();
        let mut reread_jobs = BTreeSet::new();
        let recorded_at = unix_now();
        for event in events {
            match &event.event {
                CiroEvent::JobMgr(e) => {
                    let origin = Origin {
                        block: event.block_number.unwrap_or(block),
                        tx_hash: felt_text(event.tx_hash),
                        recorded_at,
                    };
                    job_mutation(e, &origin, &mut mutations, &mut reread_jobs, &mut workers)?;
                }
                CiroEvent::CdcPool(e) => pool_mutation(e, &mut mutations, &mut workers)?,
                _ => {}
            }
        }
        for job_id in reread_jobs {
            let info = JobMgrReader::new(self.job_mgr, &self.node)
                .get_job(&job_id)
                .block_id(BlockId::Number(block))
                .call()
                .await
                .map_err(ChainError::from)
                .with_context(|| format!("reading job {job_id} at block {block}"))?;
            mutations.push(Mutation::JobRead(job_row_of(&info)?));
        }
        for worker in workers {
            let info = CdcPoolReader::new(self.pool, &self.node)
                .get_worker(&ContractAddress(worker))
                .block_id(BlockId::Number(block))
                .call()
                .await
                .map_err(ChainError::from)
                .with_context(|| format!("reading worker {worker:#x} at block {block}"))?;
            mutations.push(Mutation::Worker(worker_row_of(&info)?));
        }
        Ok(Prepared {
            events: events.len() as u64,
            next,
            block,
            mutations,
        })
    }

    /// Writes a prepared page of `name`'s events and the cursor after it in one transaction;
    /// the block the index of `name` then stands at.
    async fn write_page(
        &self,
        name: &str,
        page: Prepared,
        from: PageStart,
        fence: Option<(&str, u64)>,
    ) -> Result<u64> {
        let done = if page.next.to_block.is_some() {
            page.next.from_block.saturating_sub(1)
        } else {
            page.block
        };
        self.store
            .apply_cached(
                &Batch {
                    contract: name.to_owned(),
                    cursor: page.next,
                    events: page.events,
                    block: page.block,
                    mutations: page.mutations,
                    from,
                },
                fence,
                Some(&self.jobs),
            )
            .await?;
        Ok(done)
    }

    /// Steps until the index has every event up to the chain's head at the time of the call.
    pub async fn catch_up(&self) -> Result<()> {
        self.catch_up_fenced(None).await
    }

    /// [`Indexer::catch_up`] as the leader `(holder, epoch)`.
    pub async fn catch_up_fenced(&self, fence: Option<(&str, u64)>) -> Result<()> {
        let head = self.head().await?;
        loop {
            self.step_fenced(fence).await?;
            // A step that stopped short of a range's end (its page limit) left `indexed`
            // below it: step again.
            if self.status.indexed() >= head {
                return Ok(());
            }
        }
    }

    /// Where the index stands without indexing (a replica that does not lead): the stored
    /// cursors against the chain's head, for `/ready` and `/metrics`.
    pub async fn observe(&self) -> Result<()> {
        let mut indexed = u64::MAX;
        for name in [contracts::JOB_MGR, contracts::CDC_POOL] {
            let block = match self.store.cursor(name).await? {
                Some((cursor, _)) => cursor.from_block.saturating_sub(1),
                None => self.deploy_block,
            };
            indexed = indexed.min(block);
        }
        let head = self.head().await?;
        self.status.head.store(head, Ordering::Relaxed);
        self.status
            .indexed
            .store(indexed.min(head), Ordering::Relaxed);
        self.status.stepped.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// The chain's head block.
    async fn head(&self) -> Result<u64> {
        self.node
            .block_number()
            .await
            .map_err(ChainError::from)
            .context("reading the chain's head")
    }

    /// The node the indexer reads.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The JobMgr and CDC Pool addresses it follows.
    pub fn contracts(&self) -> (Felt, Felt) {
        (self.job_mgr, self.pool)
    }

    /// Follows the chain until `shutdown`, polling every `poll` when caught up. Errors (the
    /// node or the database away) are logged and retried with backoff; nothing is lost,
    /// since the cursor only moves with the rows.
    pub async fn run(self, poll: Duration, shutdown: CancellationToken) {
        let mut backoff = poll;
        loop {
            let wait = match self.step().await {
                Ok(0) => {
                    backoff = poll;
                    poll
                }
                Ok(_) => Duration::ZERO,
                Err(error) => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        ?backoff,
                        "indexer step failed"
                    );
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    backoff
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

fn model_row(m: &job_mgr::ModelSet) -> ModelRow {
    ModelRow {
        model_id: m.model_id,
        owner: address_text(&m.owner),
        model_hash: digest_text(&m.model_hash),
        min_vram_mb: u64::from(m.requirements.min_vram_mb),
        required_flags: m.requirements.required_flags,
        min_stake_tier: u64::from(m.requirements.min_stake_tier),
        min_score: u64::from(m.requirements.min_score),
        price: amount_text(&m.price),
        // Registration activates; an update of an inactive model does not reactivate it (the
        // upsert leaves `active` as it is).
        active: true,
    }
}

fn state(job_id: u64, state: &'static str) -> Mutation {
    Mutation::JobState {
        job_id,
        state,
        worker: None,
        output_hash: None,
        disputer: None,
        at: None,
    }
}

/// Where a job event comes from, for the job's log entry.
#[derive(Debug)]
struct Origin {
    block: u64,
    tx_hash: String,
    recorded_at: u64,
}

impl Origin {
    fn event(&self, job_id: u64) -> Mutation {
        Mutation::JobEvent {
            job_id,
            block_number: self.block,
            tx_hash: self.tx_hash.clone(),
            recorded_at: self.recorded_at,
        }
    }
}

/// The coordinator's clock, in unix seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn job_mutation(
    event: &job_mgr::Event,
    origin: &Origin,
    out: &mut Vec<Mutation>,
    reread: &mut BTreeSet<u64>,
    workers: &mut BTreeSet<Felt>,
) -> Result<()> {
    use job_mgr::Event as E;
    let before = out.len();
    let job_id = match event {
        E::JobSubmitted(j) => Some(j.job_id),
        E::JobCancelled(j) => Some(j.job_id),
        E::JobExpired(j) => Some(j.job_id),
        E::JobFinalized(j) => Some(j.job_id),
        E::JobAssigned(j) => Some(j.job_id),
        E::JobReleased(j) => Some(j.job_id),
        E::ResultSubmitted(j) => Some(j.job_id),
        E::DisputeOpened(d) => Some(d.job_id),
        E::DisputeResolved(d) => Some(d.job_id),
        _ => None,
    };
    match event {
        E::ModelSet(m) => out.push(Mutation::ModelSet(model_row(m))),
        E::ModelActiveSet(m) => out.push(Mutation::ModelActive {
            model_id: m.model_id,
            active: m.active,
        }),
        E::JobSubmitted(j) => out.push(Mutation::JobSubmitted(submitted_row(j)?)),
        E::JobCancelled(j) => out.push(state(j.job_id, "Cancelled")),
        E::JobExpired(j) => out.push(state(j.job_id, "Expired")),
        E::JobFinalized(j) => out.push(state(j.job_id, "Finalized")),
        E::JobAssigned(j) => {
            out.push(Mutation::JobState {
                job_id: j.job_id,
                state: "Assigned",
                worker: Some(Some(address_text(&j.worker))),
                output_hash: None,
                disputer: None,
                at: None,
            });
            // Its assignment time is the contract's (a block's header may show a later second
            // than the transaction saw): the job is read at the page's end.
            reread.insert(j.job_id);
            // The pool holds the worker's stake for the job (`hold`) without an event of its
            // own: its row is read again.
            workers.insert(j.worker.0);
        }
        E::JobReleased(j) => out.push(Mutation::JobState {
            job_id: j.job_id,
            state: "Queued",
            worker: Some(None),
            output_hash: None,
            disputer: None,
            at: None,
        }),
        E::ResultSubmitted(j) => {
            out.push(Mutation::JobState {
                job_id: j.job_id,
                state: "Completed",
                worker: None,
                output_hash: Some(digest_text(&j.output_hash)),
                disputer: None,
                at: None,
            });
            // Its completion time is the contract's: read at the page's end.
            reread.insert(j.job_id);
        }
        // The state change is the event's own and logged in its place, so the event log
        // numbers the same events the same way however pages fall (a rebuild's pages are not
        // live indexing's; read back at the page's end and logged then, a job's opening and
        // resolution made one entry in one page and two in two, shifting every later
        // sequence). The dispute's time and the whole dispute are the contract's: the job is
        // read at the page's end.
        E::DisputeOpened(d) => {
            out.push(Mutation::JobState {
                job_id: d.job_id,
                state: "Disputed",
                worker: None,
                output_hash: None,
                disputer: Some(address_text(&d.disputer)),
                at: None,
            });
            reread.insert(d.job_id);
        }
        // Against the worker: refunded. Otherwise the result stands and the job's own
        // `JobFinalized` follows (and is logged).
        E::DisputeResolved(d) => {
            if d.worker_at_fault {
                out.push(state(d.job_id, "Refunded"));
            }
            reread.insert(d.job_id);
        }
        E::ParamsSet(p) => out.push(Mutation::Params {
            contract: contracts::JOB_MGR.to_owned(),
            params: serde_json::to_string(&p.params)?,
        }),
        E::AssignmentSkipped(s) => tracing::info!(
            job_id = s.job_id,
            worker = %address_text(&s.worker),
            reason = %parse_cairo_short_string(&s.reason).unwrap_or_default(),
            "the chain skipped an assignment"
        ),
        E::FinalizeSkipped(s) => tracing::info!(
            job_id = s.job_id,
            reason = %parse_cairo_short_string(&s.reason).unwrap_or_default(),
            "the chain skipped a finalization"
        ),
        E::ParamsScheduled(_) | E::ParamsCancelled(_) => {}
    }
    if let Some(job_id) = job_id.filter(|_| out.len() > before) {
        out.push(origin.event(job_id));
    }
    Ok(())
}

fn pool_mutation(
    event: &cdc_pool::Event,
    out: &mut Vec<Mutation>,
    workers: &mut BTreeSet<Felt>,
) -> Result<()> {
    use cdc_pool::Event as E;
    let worker = match event {
        E::WorkerRegistered(e) => Some(e.worker),
        E::CapabilitiesUpdated(e) => Some(e.worker),
        E::WorkerActiveSet(e) => Some(e.worker),
        E::Heartbeat(e) => Some(e.worker),
        E::CommissionSet(e) => Some(e.worker),
        E::CommissionScheduled(e) => Some(e.worker),
        E::Staked(e) => Some(e.worker),
        E::UnstakeRequested(e) => Some(e.worker),
        E::Delegated(e) => Some(e.worker),
        E::UndelegateRequested(e) => Some(e.worker),
        E::Withdrawn(e) => Some(e.worker),
        E::OutcomeRecorded(e) => Some(e.worker),
        E::SlashCreated(e) => Some(e.worker),
        E::SlashChallenged(e) => Some(e.worker),
        E::SlashExecuted(e) => Some(e.worker),
        E::WorkerBanned(e) => Some(e.worker),
        E::StakeActivated(e) => Some(e.worker),
        E::ParamsSet(p) => {
            out.push(Mutation::Params {
                contract: contracts::CDC_POOL.to_owned(),
                params: serde_json::to_string(&p.params)?,
            });
            None
        }
        E::SlashResolved(_)
        | E::RewardNotified(_)
        | E::RewardsClaimed(_)
        | E::ParamsScheduled(_)
        | E::ParamsCancelled(_) => None,
    };
    if let Some(worker) = worker {
        workers.insert(worker.0);
    }
    Ok(())
}
