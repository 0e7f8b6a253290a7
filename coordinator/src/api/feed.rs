//! One reader of the job event log per process, fanning what it reads out to every open event
//! stream. Each stream used to read the log itself every 250 ms, so the streams a few dozen
//! client addresses may open (a thousand by default) cost the database thousands of queries a
//! second; now they cost one reader's four, plus each stream's own catch-up when it opens or
//! falls behind.
//!
//! A batch says which stretch of the log it covers, `(from, to]`, all scopes together. A
//! stream knows how far its own reads covered the log; a batch that starts past that (the
//! reader started after the stream's catch-up, or the stream fell behind the channel) sends
//! it back to the database to catch up, so no entry is skipped, and entries it already sent
//! are dropped by their sequence.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use ciro_service::CancellationToken;
use tokio::sync::broadcast;

use crate::records::{EventScope, JobEventRow};
use crate::store::Store;

/// How often the reader looks for new entries.
const POLL: Duration = Duration::from_millis(250);

/// Most entries one read takes (a full read is followed by the next at once).
const PAGE: u64 = 100;

/// Batches the channel holds for streams that have not taken them yet (a slow client holds
/// them all: at most 6,400 entries); a stream further behind catches up from the database.
const CAPACITY: usize = 64;

/// A live stream that has had no batch for this long reads the database once (a stalled or
/// restarting reader, a rebuilt log, still reach it).
const QUIET: Duration = Duration::from_secs(30);

/// Entries a stream's catch-up reads at once.
const CATCH_UP_PAGE: u64 = 100;

/// The log's entries in `(from, to]`, every scope's.
#[derive(Debug)]
pub(super) struct Batch {
    from: u64,
    to: u64,
    rows: Vec<JobEventRow>,
}

/// The process's reader of the event log.
pub(super) struct EventFeed {
    sender: broadcast::Sender<Arc<Batch>>,
    /// The reader's task, once started (started again if it ended: a panic).
    reader: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Default for EventFeed {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(CAPACITY).0,
            reader: std::sync::Mutex::new(None),
        }
    }
}

impl EventFeed {
    /// A receiver of the batches read from now on; the reader starts with the first.
    fn subscribe(
        self: &Arc<Self>,
        store: &Store,
        shutdown: &CancellationToken,
    ) -> broadcast::Receiver<Arc<Batch>> {
        let receiver = self.sender.subscribe();
        let mut reader = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        if reader.as_ref().is_none_or(|task| task.is_finished()) && !shutdown.is_cancelled() {
            *reader = Some(tokio::spawn(
                self.clone().read(store.clone(), shutdown.clone()),
            ));
        }
        receiver
    }

    async fn read(self: Arc<Self>, store: Store, shutdown: CancellationToken) {
        let mut last = None;
        loop {
            let mut full = false;
            match last {
                None => match store.last_sequence().await {
                    Ok(top) => last = Some(top),
                    Err(error) => {
                        tracing::warn!(error = format!("{error:#}"), "reading the event log's end")
                    }
                },
                Some(from) => match store.job_events(&EventScope::All, from, PAGE).await {
                    Ok(rows) => match rows.last().map(|r| r.sequence) {
                        Some(to) => {
                            full = rows.len() as u64 == PAGE;
                            // No stream open is not an error: the next one catches up.
                            let _ = self.sender.send(Arc::new(Batch { from, to, rows }));
                            last = Some(to);
                        }
                        // Nothing new: a log rebuilt below this position (a reset index, a
                        // restored database) is followed from its end.
                        None => {
                            if let Ok(top) = store.last_sequence().await {
                                if top < from {
                                    last = Some(top);
                                }
                            }
                        }
                    },
                    Err(error) => {
                        tracing::warn!(error = format!("{error:#}"), "reading job events")
                    }
                },
            }
            if full && !shutdown.is_cancelled() {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }
}

/// Where a stream stands.
enum Phase {
    /// To read the log's end, then catch up to it from the database.
    Behind,
    /// Reading its scope's entries from the database until it reaches `top`.
    CatchingUp(u64),
    /// Taking the reader's batches.
    Live,
}

/// One stream's position: the entries of `scope` after `after`, in order, each once.
pub(super) struct Follower {
    store: Store,
    scope: EventScope,
    /// The last entry it gave.
    after: u64,
    /// The log is known up to here: every entry of its scope at or below it was given or is
    /// pending.
    covered: u64,
    phase: Phase,
    pending: VecDeque<JobEventRow>,
    batches: broadcast::Receiver<Arc<Batch>>,
    shutdown: CancellationToken,
}

impl Follower {
    /// Follows `scope` after entry `after`, through `feed`.
    pub(super) fn new(
        feed: &Arc<EventFeed>,
        store: Store,
        scope: EventScope,
        after: u64,
        shutdown: CancellationToken,
    ) -> Self {
        // Subscribed before the catch-up reads: nothing read after it is missed.
        let batches = feed.subscribe(&store, &shutdown);
        Self {
            store,
            scope,
            after,
            covered: after,
            phase: Phase::Behind,
            pending: VecDeque::new(),
            batches,
            shutdown,
        }
    }

    /// The next entry of its scope; `None` once the server shuts down.
    pub(super) async fn next(&mut self) -> Option<JobEventRow> {
        loop {
            if let Some(row) = self.pending.pop_front() {
                if row.sequence <= self.after {
                    continue;
                }
                self.after = row.sequence;
                return Some(row);
            }
            match self.phase {
                Phase::Behind => match self.store.last_sequence().await {
                    Ok(top) => self.phase = Phase::CatchingUp(top),
                    Err(error) => {
                        tracing::warn!(error = format!("{error:#}"), "reading the event log's end");
                        self.pause().await?;
                    }
                },
                Phase::CatchingUp(top) => {
                    match self
                        .store
                        .job_events(&self.scope, self.after, CATCH_UP_PAGE)
                        .await
                    {
                        Ok(rows) => {
                            if (rows.len() as u64) < CATCH_UP_PAGE {
                                self.covered = self.covered.max(top);
                                self.phase = Phase::Live;
                            }
                            self.pending.extend(rows);
                        }
                        Err(error) => {
                            tracing::warn!(error = format!("{error:#}"), "reading job events");
                            self.pause().await?;
                        }
                    }
                }
                Phase::Live => {
                    let batch = tokio::select! {
                        _ = self.shutdown.cancelled() => return None,
                        batch = self.batches.recv() => batch,
                        _ = tokio::time::sleep(QUIET) => {
                            self.phase = Phase::Behind;
                            continue;
                        }
                    };
                    match batch {
                        Ok(batch) if batch.from <= self.covered => {
                            self.pending.extend(
                                batch
                                    .rows
                                    .iter()
                                    .filter(|r| r.sequence > self.after && self.scope.matches(r))
                                    .cloned(),
                            );
                            self.covered = self.covered.max(batch.to);
                        }
                        // A stretch it did not see (the reader began after its catch-up), or
                        // batches it fell behind on: back to the database.
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                            self.phase = Phase::Behind
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        }
    }

    /// Waits before retrying a failed read; `None` if the server shuts down meanwhile.
    async fn pause(&self) -> Option<()> {
        tokio::select! {
            _ = self.shutdown.cancelled() => None,
            _ = tokio::time::sleep(POLL) => Some(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Batch as Page, JobRow, Mutation};

    /// Records a submission of job `job_id` by `submitter` in block `block`: one log entry.
    async fn record(store: &Store, job_id: u64, submitter: &str, block: u64) {
        let job = JobRow {
            job_id,
            submitter: submitter.into(),
            model_id: 1,
            input_hash: "11".repeat(32),
            fee: "0x64".into(),
            deadline: 1_000,
            items: 1,
            min_vram_mb: 0,
            required_flags: 0,
            min_stake_tier: 0,
            min_score: 0,
            terms: "{}".into(),
            dispute_bond: "0x1".into(),
            state: "Queued".into(),
            worker: None,
            output_hash: None,
            disputer: None,
            assigned_at: None,
            completed_at: None,
            dispute: None,
        };
        store
            .apply(&Page {
                contract: "JobMgr".into(),
                cursor: ciro_chain::events::EventCursor::at(block + 1),
                events: 1,
                block,
                mutations: vec![
                    Mutation::JobSubmitted(job),
                    Mutation::JobEvent {
                        job_id,
                        block_number: block,
                        tx_hash: format!("{block:#x}"),
                        recorded_at: 7,
                    },
                ],
                from: crate::store::PageStart::Anywhere,
            })
            .await
            .expect("an entry");
    }

    async fn jobs(follower: &mut Follower, n: usize) -> Vec<u64> {
        let mut seen = Vec::new();
        for _ in 0..n {
            let row = tokio::time::timeout(Duration::from_secs(10), follower.next())
                .await
                .expect("an entry in time")
                .expect("not shut down");
            seen.push(row.job_id);
        }
        seen
    }

    #[tokio::test]
    async fn followers_get_every_entry_of_their_scope_once_in_order() {
        // Entries recorded before a follower opens (its catch-up), while the reader starts
        // (a stretch the follower's catch-up may not have covered), and after (batches).
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("c.db").display()))
            .await
            .expect("store");
        for (job, submitter) in [(1, "0xa"), (2, "0xb"), (3, "0xa")] {
            record(&store, job, submitter, job).await;
        }
        let feed = Arc::new(EventFeed::default());
        let shutdown = CancellationToken::new();
        let mut all = Follower::new(&feed, store.clone(), EventScope::All, 0, shutdown.clone());
        let mut mine = Follower::new(
            &feed,
            store.clone(),
            EventScope::Submitter("0xa".into()),
            0,
            shutdown.clone(),
        );
        let mut late = Follower::new(
            &feed,
            store.clone(),
            EventScope::Job(5),
            0,
            shutdown.clone(),
        );
        assert_eq!(jobs(&mut all, 3).await, vec![1, 2, 3]);
        record(&store, 4, "0xa", 4).await;
        assert_eq!(jobs(&mut all, 1).await, vec![4]);
        for (job, submitter) in [(5, "0xb"), (6, "0xa")] {
            record(&store, job, submitter, job).await;
        }
        assert_eq!(jobs(&mut all, 2).await, vec![5, 6]);
        assert_eq!(jobs(&mut mine, 4).await, vec![1, 3, 4, 6]);
        assert_eq!(jobs(&mut late, 1).await, vec![5]);
        // Nothing more, and none again: each waits.
        for follower in [&mut all, &mut mine, &mut late] {
            assert!(
                tokio::time::timeout(Duration::from_millis(700), follower.next())
                    .await
                    .is_err(),
                "an entry came twice"
            );
        }
        // One opened after everything, from entry 4: the rest once.
        let mut resumed = Follower::new(&feed, store.clone(), EventScope::All, 4, shutdown.clone());
        assert_eq!(jobs(&mut resumed, 2).await, vec![5, 6]);
        shutdown.cancel();
        assert!(all.next().await.is_none());
    }
}
