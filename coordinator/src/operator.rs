//! The leader's work: index the chain, run the keepers, match and assign.
//!
//! Every replica runs an [`Operator`]. One at a time holds the leader lease ([`crate::leader`]);
//! it alone indexes (its index writes fenced by its epoch), and, when the coordinator has an
//! account, sends the transactions of the keepers and the matcher. The others follow the index
//! their leader writes (for `/ready`) and take over when its lease lapses.
//!
//! A tick, on the leader:
//! 1. **index** the chain up to its head;
//! 2. **keepers**, acting only on what the index (the chain, confirmed) says:
//!    - expire jobs past their deadline (`expire`: a queued job's fee is refunded, an assigned
//!      job's worker records a failure);
//!    - release assignments whose worker stopped heartbeating, or that passed the job's own
//!      release limit (`release_job`: the job goes back to the queue and is matched again);
//!    - finalize completed jobs whose challenge window closed (`finalize_jobs`);
//! 3. index again (so the matcher sees released jobs), then **match**: queued jobs whose input
//!    and model file are present, against live workers ([`crate::matcher::Matcher`]), assigned with
//!    `assign_jobs`.
//!
//! Every action is batched (up to `batch_size` entries per transaction) and split in halves on
//! a revert until the entry at fault is alone; that entry is logged with the contract's error
//! and, for an assignment, its (job, worker) pair is set aside for a while (an assignment the
//! contract skipped because the job was assigned in the chain's current second says nothing
//! against the pair: the job is offered again once the coordinator's clock reaches its next
//! second, which with ticks under a second saves a transaction per tick). Nothing is done
//! twice: the contracts refuse to assign, release, finalize or expire a job that is not in the
//! state the index said (a stale index only costs a skipped entry), and the next tick starts by
//! indexing what this one sent.
//!
//! Times are chain time: the latest block's timestamp (devnet's clock moves with
//! `increase_time`), never the coordinator's clock, except liveness, which is the
//! coordinator's own record of heartbeats.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use ciro_chain::bindings::job_mgr::{self, JobMgr};
use ciro_chain::cainome::cairo_serde::ContractAddress;
use ciro_chain::sender::TxSender;
use ciro_chain::starknet::core::types::{BlockId, BlockTag, Call, Felt};
use ciro_chain::tx::{block_timestamp, TxOutcome};
use ciro_chain::{ChainError, RpcAccount};
use ciro_service::{CancellationToken, Metrics};
use prometheus::{
    Counter, CounterVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts,
};
use tracing::Instrument;

use crate::api::{gave_up_on, live_candidates, release_after, term};
use crate::blobs::BlobStore;
use crate::eligibility::Requirements;
use crate::indexer::{felt_text, unix_now, Indexer, IndexerStatus};
use crate::matcher::{Matcher, QueuedJob, Sizes};
use crate::store::{JobRow, Store};

/// The most entries `assign_jobs` and `finalize_jobs` take (the contracts' bound).
pub const MAX_BATCH: usize = 100;
/// States a job can still change in; the rest are final.
const FINAL_STATES: [&str; 4] = ["Finalized", "Cancelled", "Expired", "Refunded"];

/// How the leader works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorConfig {
    /// This replica's name in the lease (unique per process).
    pub holder: String,
    /// How long a lease lasts unless renewed (renewed every third of it).
    pub lease_ttl: Duration,
    /// Time between ticks.
    pub tick: Duration,
    /// A worker silent this long is not live: it gets no new jobs, and its assignments are
    /// released.
    pub stale_after_secs: u64,
    /// Entries per transaction (1 to [`MAX_BATCH`]).
    pub batch_size: usize,
    /// How long a (job, worker) pair the contract refused is set aside.
    pub exclusion_secs: u64,
    /// Outputs are kept this long after their job's final state.
    pub output_retention_secs: u64,
    /// Uploads nothing refers to are collected after this long.
    pub upload_grace_secs: u64,
    /// A queued job this many workers gave back is not matched again (0: no limit): a job
    /// that wedges or crashes every worker it reaches costs at most this many restarts.
    pub max_give_backs: u32,
}

/// The default of [`OperatorConfig::max_give_backs`].
pub const DEFAULT_MAX_GIVE_BACKS: u32 = 3;

impl OperatorConfig {
    /// Defaults for `holder`: a 10 s lease, a 1 s tick, workers stale after 30 s, batches of
    /// 100, outputs kept 7 days, unreferenced uploads collected after a day, jobs no longer
    /// matched once [`DEFAULT_MAX_GIVE_BACKS`] workers gave them back.
    pub fn new(holder: impl Into<String>) -> Self {
        Self {
            holder: holder.into(),
            lease_ttl: Duration::from_secs(10),
            tick: Duration::from_secs(1),
            stale_after_secs: 30,
            batch_size: MAX_BATCH,
            exclusion_secs: 60,
            output_retention_secs: 7 * 24 * 3600,
            upload_grace_secs: 24 * 3600,
            max_give_backs: DEFAULT_MAX_GIVE_BACKS,
        }
    }
}

/// The operator's metrics.
#[derive(Clone)]
struct OperatorMetrics {
    jobs: IntGaugeVec,
    leader: IntGauge,
    epoch: IntGauge,
    queue_wait: Histogram,
    finalize_time: Histogram,
    batch: HistogramVec,
    txs: IntCounterVec,
    fees: CounterVec,
    actions: IntCounterVec,
    collected: Counter,
}

impl OperatorMetrics {
    fn register(metrics: &Metrics) -> Result<Self> {
        let seconds = vec![
            1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0,
        ];
        let this = Self {
            jobs: IntGaugeVec::new(
                Opts::new("ciro_jobs", "Jobs in the index by state"),
                &["state"],
            )?,
            leader: IntGauge::new(
                "ciro_leader",
                "1 while this replica holds the leader lease",
            )?,
            epoch: IntGauge::new("ciro_leader_epoch", "The lease epoch this replica leads in")?,
            queue_wait: Histogram::with_opts(
                HistogramOpts::new(
                    "ciro_queue_wait_seconds",
                    "Chain seconds from a job's submission to its assignment by this coordinator",
                )
                .buckets(seconds.clone()),
            )?,
            finalize_time: Histogram::with_opts(
                HistogramOpts::new(
                    "ciro_time_to_finalize_seconds",
                    "Chain seconds from a job's submission to its finalization by this coordinator",
                )
                .buckets(seconds),
            )?,
            batch: HistogramVec::new(
                HistogramOpts::new("ciro_batch_size", "Entries per keeper or matcher transaction")
                    .buckets(vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]),
                &["action"],
            )?,
            txs: IntCounterVec::new(
                Opts::new(
                    "ciro_chain_transactions_total",
                    "Transactions sent by the coordinator, by action and result",
                ),
                &["action", "result"],
            )?,
            fees: CounterVec::new(
                Opts::new(
                    "ciro_chain_fees_fri_total",
                    "Fees the coordinator's transactions paid, in FRI, by action",
                ),
                &["action"],
            )?,
            actions: IntCounterVec::new(
                Opts::new(
                    "ciro_keeper_jobs_total",
                    "Jobs acted on (assigned, released, finalized, expired) or skipped by the chain",
                ),
                &["action", "result"],
            )?,
            collected: Counter::new(
                "ciro_blobs_collected_total",
                "Blobs deleted by retention",
            )?,
        };
        let registry = metrics.registry();
        registry.register(Box::new(this.jobs.clone()))?;
        registry.register(Box::new(this.leader.clone()))?;
        registry.register(Box::new(this.epoch.clone()))?;
        registry.register(Box::new(this.queue_wait.clone()))?;
        registry.register(Box::new(this.finalize_time.clone()))?;
        registry.register(Box::new(this.batch.clone()))?;
        registry.register(Box::new(this.txs.clone()))?;
        registry.register(Box::new(this.fees.clone()))?;
        registry.register(Box::new(this.actions.clone()))?;
        registry.register(Box::new(this.collected.clone()))?;
        Ok(this)
    }
}

/// What a keeper or the matcher does to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Assign,
    Release,
    Finalize,
    Expire,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Assign => "assign",
            Action::Release => "release",
            Action::Finalize => "finalize",
            Action::Expire => "expire",
        }
    }
}

/// One entry of a batch: a job, for an assignment or a release its worker, and for a release
/// the time of the assignment it was decided against (the contract refuses it on any other).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    job_id: u64,
    worker: Option<Felt>,
    assigned_at: u64,
}

/// Runs the leader's work on every replica that wins the lease.
pub struct Operator {
    store: Store,
    blobs: Arc<dyn BlobStore>,
    indexer: Indexer,
    sender: Option<Arc<TxSender<RpcAccount>>>,
    job_mgr: Felt,
    config: OperatorConfig,
    metrics: OperatorMetrics,
    /// (job, worker) pairs the contract refused, until when (unix seconds).
    excluded: HashMap<(u64, Felt), u64>,
    /// Jobs the contract skipped as assigned in the chain's current second, until when (unix
    /// seconds): not offered again before the chain's clock can have moved on.
    held: HashMap<u64, u64>,
    /// Queued batches whose manifest is not one of their inputs (logged once; never offered).
    bad_manifests: std::collections::HashSet<u64>,
    /// Block timestamps already read.
    block_times: HashMap<u64, u64>,
    /// The matcher's table of live workers and its job classes, kept across ticks.
    matcher: Matcher,
    rotation: usize,
    last_gc: u64,
    /// The epoch this replica leads in and since when: silence is only judged once it has
    /// led (and so taken heartbeats) for twice the staleness threshold.
    leading_since: Option<(u64, std::time::Instant)>,
    /// The lease as the lease task last renewed it.
    lease: Arc<LeaseView>,
    /// The epoch the current tick leads in.
    tick_epoch: u64,
}

/// The leader lease as the lease task last saw it, shared with the ticks: the epoch held (0:
/// not leading) and until when (unix milliseconds, by this replica's clock).
#[derive(Debug, Default)]
struct LeaseView {
    epoch: AtomicU64,
    until_ms: AtomicU64,
}

/// Whether a tick of `tick_epoch` may still send a transaction: the lease task holds that
/// epoch and the lease has more than `margin_ms` left. Index writes are fenced in the
/// database; chain transactions cannot be, so a leader whose lease is lapsing stops sending
/// before another replica can take over and act on the same jobs. (A release that lands late
/// anyway names the worker it was decided against, and the contract refuses it once the job
/// has another assignment.)
fn may_send(held_epoch: u64, tick_epoch: u64, until_ms: u64, now_ms: u64, margin_ms: u64) -> bool {
    held_epoch != 0 && held_epoch == tick_epoch && now_ms.saturating_add(margin_ms) < until_ms
}

/// Most blobs retention collects in one tick.
const GC_BATCH: u64 = 500;

impl Operator {
    /// The operator of `indexer`'s deployment. Without `sender` (no coordinator account) it
    /// indexes when it leads but sends nothing.
    pub fn new(
        store: Store,
        blobs: Arc<dyn BlobStore>,
        indexer: Indexer,
        sender: Option<Arc<TxSender<RpcAccount>>>,
        config: OperatorConfig,
        metrics: &Metrics,
    ) -> Result<Self> {
        anyhow::ensure!(
            (1..=MAX_BATCH).contains(&config.batch_size),
            "the batch size must be 1 to {MAX_BATCH}"
        );
        let (job_mgr, _) = indexer.contracts();
        Ok(Self {
            store,
            blobs,
            indexer,
            sender,
            job_mgr,
            config,
            metrics: OperatorMetrics::register(metrics)?,
            excluded: HashMap::new(),
            held: HashMap::new(),
            bad_manifests: std::collections::HashSet::new(),
            block_times: HashMap::new(),
            matcher: Matcher::new(),
            rotation: 0,
            last_gc: 0,
            leading_since: None,
            lease: Arc::new(LeaseView::default()),
            tick_epoch: 0,
        })
    }

    /// The indexer's status (for `/ready`).
    pub fn status(&self) -> Arc<IndexerStatus> {
        self.indexer.status()
    }

    /// Competes for the lease and works while it holds it, until `shutdown`; then gives the
    /// lease up so another replica takes over at once.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let lease = self.lease.clone();
        let renewing = tokio::spawn(renew(
            self.store.clone(),
            self.config.clone(),
            lease.clone(),
            self.metrics.clone(),
            shutdown.clone(),
        ));
        let mut backoff = self.config.tick;
        loop {
            let leading = lease.epoch.load(Ordering::SeqCst);
            let result = if leading > 0 {
                self.tick(leading).await
            } else {
                self.follow().await
            };
            let wait = match result {
                Ok(()) => {
                    backoff = self.config.tick;
                    self.config.tick
                }
                Err(error) => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        ?backoff,
                        "coordinator tick failed"
                    );
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    backoff
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        if renewing.await.is_err() {
            tracing::warn!("the lease task panicked");
        }
    }

    /// A replica that does not lead: reports where the leader's index stands.
    async fn follow(&mut self) -> Result<()> {
        self.indexer.observe().await?;
        self.count_jobs().await
    }

    /// One round of the leader's work in `epoch`.
    pub async fn tick(&mut self, epoch: u64) -> Result<()> {
        if self.leading_since.map(|(e, _)| e) != Some(epoch) {
            self.leading_since = Some((epoch, std::time::Instant::now()));
        }
        self.tick_epoch = epoch;
        let holder = self.config.holder.clone();
        let fence = Some((holder.as_str(), epoch));
        // An index with no JobMgr cursor (a new deployment, a reset, a PostgreSQL crash that
        // emptied the unlogged index) is rebuilt from the deployment block, and the API
        // refuses heartbeats of workers it has not indexed yet; any long catch-up (a rebuild
        // this process took over half-way, an outage) also leaves workers unheard through no
        // fault of theirs. After either, silence is judged only once this replica has led for
        // twice the threshold again, as after a takeover. (A rebuild's step that failed leaves
        // its mark for the catch-up that completes it.)
        let catching_up = std::time::Instant::now();
        self.indexer.catch_up_fenced(fence).await?;
        if self.indexer.status().take_started_empty()
            || catching_up.elapsed() >= Duration::from_secs(self.config.stale_after_secs)
        {
            self.leading_since = Some((epoch, std::time::Instant::now()));
        }
        self.count_jobs().await?;
        self.collect_blobs().await?;
        if self.sender.is_none() {
            return Ok(());
        }
        let now = self.chain_now().await?;
        let mut acted = self.expire(now).await?;
        acted |= self.release(now).await?;
        acted |= self.finalize(now).await?;
        if acted {
            self.indexer.catch_up_fenced(fence).await?;
        }
        self.assign(now).await
    }

    /// The latest block's timestamp.
    async fn chain_now(&self) -> Result<u64> {
        block_timestamp(&**self.indexer.node(), BlockId::Tag(BlockTag::Latest))
            .await
            .context("reading the chain's time")
    }

    async fn block_time(&mut self, block: u64) -> Result<u64> {
        if let Some(at) = self.block_times.get(&block) {
            return Ok(*at);
        }
        let at = block_timestamp(&**self.indexer.node(), BlockId::Number(block))
            .await
            .with_context(|| format!("reading block {block}'s timestamp"))?;
        if self.block_times.len() > 10_000 {
            self.block_times.clear();
        }
        self.block_times.insert(block, at);
        Ok(at)
    }

    async fn count_jobs(&self) -> Result<()> {
        self.metrics.jobs.reset();
        for (state, count) in self.store.count_jobs_by_state().await? {
            self.metrics
                .jobs
                .with_label_values(&[&state])
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        Ok(())
    }

    /// Every indexed job in `state`.
    async fn all_in(&self, state: &str) -> Result<Vec<JobRow>> {
        let mut rows = Vec::new();
        let mut after = 0;
        loop {
            let page = self.store.jobs_in_state(state, after, 1_000).await?;
            let Some(last) = page.last() else { break };
            after = last.job_id;
            let full = page.len() == 1_000;
            rows.extend(page);
            if !full {
                break;
            }
        }
        Ok(rows)
    }

    /// Expires queued and assigned jobs whose deadline passed.
    async fn expire(&mut self, now: u64) -> Result<bool> {
        let mut due = Vec::new();
        for state in ["Queued", "Assigned"] {
            due.extend(
                self.all_in(state)
                    .await?
                    .into_iter()
                    .filter(|job| now > job.deadline)
                    .map(|job| Entry {
                        job_id: job.job_id,
                        worker: None,
                        assigned_at: 0,
                    }),
            );
        }
        Ok(!self.send(Action::Expire, due).await?.is_empty())
    }

    /// Releases assignments whose worker is not live or that passed the job's release limit.
    async fn release(&mut self, now: u64) -> Result<bool> {
        let live_since = unix_now().saturating_sub(self.config.stale_after_secs);
        // After a takeover or an outage of the coordinator, workers have not been heard for
        // a while through no fault of theirs: judge silence only once this replica has led
        // for twice the threshold.
        let settled = self.leading_since.is_some_and(|(_, since)| {
            since.elapsed() >= Duration::from_secs(2 * self.config.stale_after_secs)
        });
        let mut due = Vec::new();
        for job in self.all_in("Assigned").await? {
            let Some(worker) = job.worker.clone() else {
                continue;
            };
            // The release names the assignment by its time; the index reads it from the
            // contract with the assignment, so a row without it is corrupt.
            let Some(assigned_at) = job.assigned_at else {
                tracing::error!(job_id = job.job_id, %worker, "an assigned job without its assignment time in the index");
                continue;
            };
            let timed_out = now >= assigned_at.saturating_add(release_after(&job));
            // A worker that uploaded its output is committing it: silence does not release
            // it (the job's own release limit still does).
            let silent = settled
                && match self.store.liveness(&worker).await? {
                    Some(beat) => beat.last_seen < live_since,
                    None => true,
                }
                && self
                    .store
                    .output(job.job_id, &worker)
                    .await?
                    .is_none_or(|o| o.assigned_at != assigned_at);
            let given_back = self.store.release_requested(job.job_id, &worker).await?;
            if timed_out || silent || given_back {
                // The index stores addresses as the chain gave them; one that does not parse
                // is a corrupt row, and a release naming another worker would only revert.
                let Ok(address) = Felt::from_hex(&worker) else {
                    tracing::error!(job_id = job.job_id, %worker, "unparsable worker address in the index");
                    continue;
                };
                tracing::info!(
                    job_id = job.job_id,
                    %worker,
                    timed_out,
                    silent,
                    given_back,
                    "releasing the assignment"
                );
                due.push(Entry {
                    job_id: job.job_id,
                    worker: Some(address),
                    assigned_at,
                });
            }
        }
        Ok(!self.send(Action::Release, due).await?.is_empty())
    }

    /// Finalizes completed jobs whose challenge window closed.
    async fn finalize(&mut self, now: u64) -> Result<bool> {
        let due: Vec<Entry> = self
            .all_in("Completed")
            .await?
            .into_iter()
            .filter(|job| {
                job.completed_at
                    .is_some_and(|at| now >= at.saturating_add(term(job, "challenge_window")))
            })
            .map(|job| Entry {
                job_id: job.job_id,
                worker: None,
                assigned_at: 0,
            })
            .collect();
        let done = self.send(Action::Finalize, due).await?;
        for (outcome, entries) in &done {
            let skipped: HashSet<u64> = self
                .events(outcome)
                .into_iter()
                .filter_map(|e| match e {
                    job_mgr::Event::FinalizeSkipped(s) => Some(s.job_id),
                    _ => None,
                })
                .collect();
            let at = self.receipt_time(outcome).await?;
            for entry in entries {
                if skipped.contains(&entry.job_id) {
                    self.count(Action::Finalize, "skipped", 1);
                    continue;
                }
                if let Some(block) = self.store.submitted_block(entry.job_id).await? {
                    let submitted = self.block_time(block).await?;
                    self.metrics
                        .finalize_time
                        .observe(at.saturating_sub(submitted) as f64);
                }
            }
        }
        Ok(!done.is_empty())
    }

    /// Matches queued jobs whose data is present to live workers and assigns them.
    async fn assign(&mut self, now: u64) -> Result<()> {
        let wall = unix_now();
        self.excluded.retain(|_, until| *until > wall);
        self.held.retain(|_, until| *until > wall);
        let mut queued = self.all_in("Queued").await?;
        queued.retain(|job| !self.held.contains_key(&job.job_id));
        let queued_ids: std::collections::HashSet<u64> = queued.iter().map(|j| j.job_id).collect();
        self.bad_manifests.retain(|id| queued_ids.contains(id));
        // Before anything that may end the tick early: a manifest uploaded before its batch
        // was indexed is recorded now, so the inputs it lists are kept from retention whether
        // or not a worker is live to take the batch.
        self.record_manifests(&queued).await;
        if queued.is_empty() {
            return Ok(());
        }
        let candidates = live_candidates(&self.store, self.config.stale_after_secs).await?;
        if candidates.is_empty() {
            return Ok(());
        }
        let mut present: HashMap<(String, String), Option<u64>> = HashMap::new();
        let mut model_hashes: HashMap<u64, Option<(String, String)>> = HashMap::new();
        let given_back = self.store.given_back().await?;
        let mut gave_back: HashMap<u64, u32> = HashMap::new();
        for ((job_id, _), &job_failed) in &given_back {
            if job_failed {
                *gave_back.entry(*job_id).or_default() += 1;
            }
        }
        let mut jobs = Vec::new();
        let earliest = now.max(wall);
        for job in &queued {
            if earliest.saturating_add(release_after(job)) > job.deadline {
                continue; // The contract would refuse: the release limit must fit.
            }
            let workers = gave_back.get(&job.job_id).copied().unwrap_or(0);
            if gave_up_on(workers, self.config.max_give_backs) {
                continue; // Failed or refused by enough workers: it waits for its deadline.
            }
            let model_hash = match model_hashes.get(&job.model_id) {
                Some(hash) => hash.clone(),
                None => {
                    let hash = self
                        .store
                        .model(job.model_id)
                        .await?
                        .map(|m| (m.model_hash, m.owner));
                    model_hashes.insert(job.model_id, hash.clone());
                    hash
                }
            };
            let Some((model_hash, owner)) = model_hash else {
                continue;
            };
            // The data the API lets the worker read: the input its submitter uploaded, the
            // model file its owner uploaded.
            let Some(mut input_bytes) = self
                .present(&mut present, &job.input_hash, &job.submitter)
                .await?
            else {
                continue;
            };
            if job.items > 1 {
                // A batch: its input is a manifest its submitter uploaded, recorded once; it
                // is offered once every input it lists is uploaded by the submitter too, to a
                // worker admitting its largest input (it fetches one at a time).
                let Some(largest) = self.batch_ready(job).await? else {
                    continue;
                };
                input_bytes = largest;
            }
            let Some(model_bytes) = self.present(&mut present, &model_hash, &owner).await? else {
                continue;
            };
            jobs.push(QueuedJob {
                job_id: job.job_id,
                model_hash,
                requirements: Requirements {
                    min_vram_mb: job.min_vram_mb,
                    required_flags: job.required_flags,
                    min_stake_tier: job.min_stake_tier,
                    min_score: job.min_score,
                },
                // The matcher passes over workers whose declared limits refuse these (a
                // worker holding the model downloads no model file).
                sizes: Sizes {
                    input_bytes,
                    model_bytes,
                    items: job.items,
                },
            });
        }
        if jobs.is_empty() {
            return Ok(());
        }
        self.rotation = self.rotation.wrapping_add(1);
        let submitters: HashMap<u64, &str> = queued
            .iter()
            .map(|j| (j.job_id, j.submitter.as_str()))
            .collect();
        // The contract refuses a submitter working its own job; a pair it refused lately waits
        // out its exclusion; a worker that gave a job back never gets it again. The matcher
        // passes over these pairs (and workers whose declared limits refuse the job's data),
        // so the job goes to the next best worker in the same tick (filtered after the plan,
        // the same best worker was chosen and dropped every tick).
        let excluded = &self.excluded;
        self.matcher.sync(&candidates);
        let plan = self
            .matcher
            .plan(&jobs, self.rotation, |job_id, _, address| {
                submitters.get(&job_id) == Some(&address)
                    || Felt::from_hex(address).map_or(true, |w| excluded.contains_key(&(job_id, w)))
                    || given_back.contains_key(&(job_id, address.to_owned()))
            });
        tracing::debug!(
            jobs = jobs.len(),
            assigned = plan.assignments.len(),
            passed_over = plan.passed_over,
            classes = self.matcher.classes(),
            "matcher plan"
        );
        let mut entries = Vec::with_capacity(plan.assignments.len());
        for (job_id, place) in plan.assignments {
            let Ok(worker) = Felt::from_hex(self.matcher.address(place)) else {
                continue;
            };
            entries.push(Entry {
                job_id,
                worker: Some(worker),
                assigned_at: 0,
            });
        }
        let done = self.send(Action::Assign, entries).await?;
        for (outcome, batch) in &done {
            let skipped: HashMap<u64, Felt> = self
                .events(outcome)
                .into_iter()
                .filter_map(|e| match e {
                    job_mgr::Event::AssignmentSkipped(s) => Some((s.job_id, s.reason)),
                    _ => None,
                })
                .collect();
            let at = self.receipt_time(outcome).await?;
            for entry in batch {
                let worker = entry.worker.unwrap_or_default();
                let span = tracing::info_span!("job", job_id = entry.job_id);
                if let Some(reason) = skipped.get(&entry.job_id) {
                    let reason = short_string(*reason);
                    self.count(Action::Assign, "skipped", 1);
                    if reason == ASSIGNED_THIS_SECOND {
                        // The job was assigned (and released) in the chain's current second:
                        // nothing against the pair. The job waits for the coordinator's next
                        // second (each try is a transaction; on devnet a try runs at the time of
                        // the block before it, so one more may be skipped), then any worker may
                        // take it.
                        span.in_scope(|| {
                            tracing::info!(worker = %felt_text(worker), %reason, "the contract skipped the assignment until the chain's next second")
                        });
                        // (Wall clock: the chain's may have been moved far ahead on devnet.)
                        self.held.insert(entry.job_id, unix_now() + 1);
                        continue;
                    }
                    span.in_scope(|| {
                        tracing::info!(worker = %felt_text(worker), %reason, "the contract skipped the assignment; the pair is set aside")
                    });
                    self.excluded
                        .insert((entry.job_id, worker), wall + self.config.exclusion_secs);
                    continue;
                }
                span.in_scope(|| tracing::info!(worker = %felt_text(worker), "assigned"));
                if let Some(block) = self.store.submitted_block(entry.job_id).await? {
                    let submitted = self.block_time(block).await?;
                    self.metrics
                        .queue_wait
                        .observe(at.saturating_sub(submitted) as f64);
                }
            }
        }
        Ok(())
    }

    /// Records the manifests of `queued` batches that their submitters uploaded and no one has
    /// recorded yet ([`crate::batches::expand`]). A manifest that is not one of its batch's
    /// inputs (its length) sets the batch aside, logged once; one whose bytes are not there yet
    /// (an upload publishing them) or a failed read is tried again at the next tick.
    async fn record_manifests(&mut self, queued: &[JobRow]) {
        for job in queued.iter().filter(|j| j.items > 1) {
            if self.bad_manifests.contains(&job.job_id) {
                continue;
            }
            let recorded = match self.store.manifest_len(&job.input_hash).await {
                Ok(recorded) => recorded,
                Err(e) => {
                    tracing::warn!(job_id = job.job_id, error = %format!("{e:#}"), "reading a batch's manifest");
                    continue;
                }
            };
            match recorded {
                Some(n) if n == job.items => continue,
                Some(n) => {
                    tracing::warn!(job_id = job.job_id, manifest = %job.input_hash, listed = n, items = job.items, "a batch's manifest lists another count of inputs: never offered");
                    self.bad_manifests.insert(job.job_id);
                    continue;
                }
                None => {}
            }
            match self
                .store
                .uploaded_size(&job.input_hash, &job.submitter)
                .await
            {
                Ok(Some(_)) => {}
                Ok(None) => continue, // Not uploaded by its submitter (yet).
                Err(e) => {
                    tracing::warn!(job_id = job.job_id, error = %format!("{e:#}"), "reading a batch's manifest upload");
                    continue;
                }
            }
            match crate::batches::expand(
                &self.store,
                self.blobs.as_ref(),
                &job.input_hash,
                job.items,
            )
            .await
            {
                Ok(Ok(())) => {}
                Ok(Err(e @ crate::batches::ManifestError::Length { .. })) => {
                    tracing::warn!(job_id = job.job_id, manifest = %job.input_hash, "a batch's manifest is refused: {e}");
                    self.bad_manifests.insert(job.job_id);
                }
                Ok(Err(e)) => {
                    tracing::debug!(
                        job_id = job.job_id,
                        "a batch's manifest is not recorded yet: {e}"
                    );
                }
                Err(e) => {
                    tracing::warn!(job_id = job.job_id, error = %format!("{e:#}"), "recording a batch's manifest");
                }
            }
        }
    }

    /// The largest input of batch `job` once its manifest is recorded (listing as many inputs
    /// as the batch has) and its submitter uploaded every input it lists (None: not yet).
    async fn batch_ready(&mut self, job: &JobRow) -> Result<Option<u64>> {
        if self.bad_manifests.contains(&job.job_id)
            || self.store.manifest_len(&job.input_hash).await? != Some(job.items)
        {
            return Ok(None);
        }
        let (uploaded, largest) = self
            .store
            .manifest_uploads(&job.input_hash, &job.submitter)
            .await?;
        Ok((uploaded == job.items).then_some(largest))
    }

    /// The size of blob `digest` if it is stored, uploaded by `uploader` (among others, maybe).
    async fn present(
        &self,
        cache: &mut HashMap<(String, String), Option<u64>>,
        digest: &str,
        uploader: &str,
    ) -> Result<Option<u64>> {
        let key = (digest.to_owned(), uploader.to_owned());
        if let Some(known) = cache.get(&key) {
            return Ok(*known);
        }
        let found = self.store.uploaded_size(digest, uploader).await?;
        cache.insert(key, found);
        Ok(found)
    }

    /// JobMgr's events in `outcome`.
    fn events(&self, outcome: &TxOutcome) -> Vec<job_mgr::Event> {
        outcome
            .events_from(self.job_mgr)
            .into_iter()
            .filter_map(|e| job_mgr::Event::try_from(e).ok())
            .collect()
    }

    async fn receipt_time(&mut self, outcome: &TxOutcome) -> Result<u64> {
        self.block_time(outcome.receipt.block.block_number()).await
    }

    fn count(&self, action: Action, result: &str, n: u64) {
        self.metrics
            .actions
            .with_label_values(&[action.name(), result])
            .inc_by(n);
    }

    /// The calls of one batch.
    fn calls(&self, action: Action, entries: &[Entry]) -> Vec<Call> {
        let binding =
            |sender: &TxSender<RpcAccount>| JobMgr::new(self.job_mgr, sender.account().clone());
        let Some(sender) = &self.sender else {
            return Vec::new();
        };
        let jm = binding(sender);
        match action {
            Action::Assign => {
                let batch: Vec<job_mgr::Assignment> = entries
                    .iter()
                    .map(|e| job_mgr::Assignment {
                        job_id: e.job_id,
                        worker: ContractAddress(e.worker.unwrap_or_default()),
                    })
                    .collect();
                vec![jm.assign_jobs_getcall(&batch)]
            }
            Action::Finalize => {
                let ids: Vec<u64> = entries.iter().map(|e| e.job_id).collect();
                vec![jm.finalize_jobs_getcall(&ids)]
            }
            Action::Release => entries
                .iter()
                .map(|e| {
                    jm.release_job_getcall(
                        &e.job_id,
                        &ContractAddress(e.worker.unwrap_or_default()),
                        &e.assigned_at,
                    )
                })
                .collect(),
            Action::Expire => entries
                .iter()
                .map(|e| jm.expire_getcall(&e.job_id))
                .collect(),
        }
    }

    /// Sends `entries` in batches; a batch that reverts is split in halves until the entry at
    /// fault is alone, which is logged with the contract's error (and, for an assignment, set
    /// aside). Returns the transactions that succeeded with their entries.
    async fn send(
        &mut self,
        action: Action,
        entries: Vec<Entry>,
    ) -> Result<Vec<(TxOutcome, Vec<Entry>)>> {
        let Some(sender) = self.sender.clone() else {
            return Ok(Vec::new());
        };
        let mut stack: Vec<Vec<Entry>> = entries
            .chunks(self.config.batch_size)
            .rev()
            .map(<[Entry]>::to_vec)
            .collect();
        let mut done = Vec::new();
        let name = action.name();
        let margin = u64::try_from((self.config.lease_ttl / 3).as_millis()).unwrap_or(u64::MAX);
        while let Some(batch) = stack.pop() {
            if !may_send(
                self.lease.epoch.load(Ordering::SeqCst),
                self.tick_epoch,
                self.lease.until_ms.load(Ordering::SeqCst),
                crate::leader::now_ms(),
                margin,
            ) {
                let left: usize = batch.len() + stack.iter().map(Vec::len).sum::<usize>();
                tracing::warn!(
                    action = name,
                    left,
                    "the leader lease is lapsing or lost: nothing more is sent this tick"
                );
                break;
            }
            let calls = self.calls(action, &batch);
            match sender.execute(calls).await {
                Ok(outcome) => {
                    self.metrics.txs.with_label_values(&[name, "ok"]).inc();
                    self.metrics
                        .batch
                        .with_label_values(&[name])
                        .observe(batch.len() as f64);
                    let fee = outcome.actual_fee().to_biguint();
                    let fee: f64 = fee.to_string().parse().unwrap_or(0.0);
                    self.metrics.fees.with_label_values(&[name]).inc_by(fee);
                    self.count(action, "ok", batch.len() as u64);
                    tracing::info!(
                        action = name,
                        jobs = batch.len(),
                        tx = %felt_text(outcome.tx_hash),
                        "sent"
                    );
                    done.push((outcome, batch));
                }
                Err(ChainError::Reverted { reason, .. }) if batch.len() > 1 => {
                    self.metrics
                        .txs
                        .with_label_values(&[name, "reverted"])
                        .inc();
                    tracing::info!(action = name, jobs = batch.len(), %reason, "batch reverted; splitting it");
                    let half = batch.len() / 2;
                    stack.push(batch[half..].to_vec());
                    stack.push(batch[..half].to_vec());
                }
                Err(error) => {
                    let result = match error {
                        ChainError::Reverted { .. } => "reverted",
                        _ => "failed",
                    };
                    self.metrics.txs.with_label_values(&[name, result]).inc();
                    self.count(action, result, batch.len() as u64);
                    for entry in &batch {
                        let span = tracing::info_span!("job", job_id = entry.job_id);
                        async {
                            tracing::warn!(action = name, error = %error, "the chain refused")
                        }
                        .instrument(span)
                        .await;
                        if let (Action::Assign, Some(worker), ChainError::Reverted { .. }) =
                            (action, entry.worker, &error)
                        {
                            self.excluded.insert(
                                (entry.job_id, worker),
                                unix_now() + self.config.exclusion_secs,
                            );
                        }
                    }
                    if !matches!(error, ChainError::Reverted { .. }) {
                        // The node or the account is in trouble: the next tick retries.
                        return Err(anyhow::Error::new(error)
                            .context(format!("sending a {name} transaction")));
                    }
                }
            }
        }
        Ok(done)
    }

    /// Deletes blobs retention no longer keeps (at most once a minute).
    async fn collect_blobs(&mut self) -> Result<()> {
        let now = unix_now();
        if now < self.last_gc + 60 {
            return Ok(());
        }
        self.last_gc = now;
        let created_before = now.saturating_sub(self.config.upload_grace_secs);
        let final_before = now.saturating_sub(self.config.output_retention_secs);
        // A bounded batch per tick (the keepers and the matcher run after it): a full one
        // brings the next pass forward to the next tick.
        let digests = self
            .store
            .collectable_blobs(created_before, final_before, GC_BATCH)
            .await?;
        if digests.len() as u64 == GC_BATCH {
            self.last_gc = 0;
        }
        for text in digests {
            let Ok(digest) = text.parse::<ciro_api::wire::Digest>() else {
                continue;
            };
            match collect_blob(
                &self.store,
                self.blobs.as_ref(),
                &digest,
                created_before,
                final_before,
                Some((self.config.holder.as_str(), self.tick_epoch)),
            )
            .await
            {
                Ok(true) => {
                    self.metrics.collected.inc();
                    tracing::info!(digest = %text, "blob collected by retention");
                }
                Ok(false) => {}
                // One blob's failure does not stop the rest (nor the tick's other work).
                Err(e) => tracing::warn!(digest = %text, error = %e, "collecting a blob failed"),
            }
        }
        Ok(())
    }
}

/// Deletes blob `digest` if retention's rule (cut-offs `created_before` and `final_before`)
/// still holds for it; whether it did. An upload of the same bytes may come at any moment (the
/// API of any replica) and records itself before it publishes its bytes, so: the records go
/// first, in a statement that re-checks the rule on the row (a re-upload restarts the blob's
/// retention, a new job or model names it); then the file is set aside, and restored if an
/// upload recorded itself meanwhile (its bytes are these), else purged. An upload recorded
/// after that check publishes its bytes after the set-aside: they stay. As the leader `fence`
/// `(holder, epoch)` if any: a deposed leader deletes nothing (its listing may be older than
/// the new leader's index, perhaps an index being rebuilt).
pub async fn collect_blob(
    store: &Store,
    blobs: &dyn BlobStore,
    digest: &ciro_api::wire::Digest,
    created_before: u64,
    final_before: u64,
    fence: Option<(&str, u64)>,
) -> Result<bool> {
    let text = digest.to_string();
    if !store
        .forget_blob_if_collectable(&text, created_before, final_before, fence)
        .await?
    {
        return Ok(false);
    }
    let Some(aside) = blobs.set_aside(digest).await? else {
        return Ok(true);
    };
    if store.blob(&text).await?.is_some() {
        blobs.restore(digest, &aside).await?;
        return Ok(false);
    }
    blobs.purge(&aside).await?;
    Ok(true)
}

/// Keeps `epoch` at the epoch this replica leads in (0: it does not), renewing the lease every
/// third of its life; gives it up on shutdown.
async fn renew(
    store: Store,
    config: OperatorConfig,
    lease: Arc<LeaseView>,
    metrics: OperatorMetrics,
    shutdown: CancellationToken,
) {
    let every = config.lease_ttl / 3;
    loop {
        let (now, until) = match store
            .acquire_leadership(&config.holder, config.lease_ttl)
            .await
        {
            Ok(Some(held)) => (held.epoch, held.expires_at_ms),
            Ok(None) => (0, 0),
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "renewing the leader lease failed"
                );
                (0, 0)
            }
        };
        lease.until_ms.store(until, Ordering::SeqCst);
        let before = lease.epoch.swap(now, Ordering::SeqCst);
        if before != now {
            if now > 0 {
                tracing::info!(holder = %config.holder, epoch = now, "leading");
            } else {
                tracing::info!(holder = %config.holder, "following (another replica leads)");
            }
        }
        metrics.leader.set(i64::from(now > 0));
        metrics.epoch.set(i64::try_from(now).unwrap_or(i64::MAX));
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
    }
    lease.until_ms.store(0, Ordering::SeqCst);
    if lease.epoch.swap(0, Ordering::SeqCst) > 0 {
        if let Err(error) = store.release_leadership(&config.holder).await {
            tracing::warn!(error = format!("{error:#}"), "giving the lease up failed");
        }
    }
    metrics.leader.set(0);
}

/// JobMgr's skip reason for a job whose previous assignment was in the current second.
const ASSIGNED_THIS_SECOND: &str = "JM: assigned this second";

/// A felt as the Cairo short string it holds (an error string), or hex.
fn short_string(felt: Felt) -> String {
    let bytes = felt.to_bytes_be();
    let text: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    match String::from_utf8(text) {
        Ok(s) if s.chars().all(|c| c.is_ascii_graphic() || c == ' ') && !s.is_empty() => s,
        _ => felt_text(felt),
    }
}

/// Whether `state` is final (no transition leaves it).
pub fn is_final(state: &str) -> bool {
    FINAL_STATES.contains(&state)
}

#[cfg(test)]
mod tests {
    use super::may_send;

    #[test]
    fn a_leader_sends_only_in_its_epoch_with_time_left_on_its_lease() {
        // Epoch 3 held until t = 10,000 ms; a margin of 3,000 ms.
        assert!(may_send(3, 3, 10_000, 6_999, 3_000));
        // Too close to the expiry: another replica may take over before the send lands.
        assert!(!may_send(3, 3, 10_000, 7_000, 3_000));
        assert!(!may_send(3, 3, 10_000, 12_000, 3_000));
        // The lease task lost the lease (0), or a new epoch began after this tick started.
        assert!(!may_send(0, 3, 10_000, 1_000, 3_000));
        assert!(!may_send(4, 3, 10_000, 1_000, 3_000));
    }
}
