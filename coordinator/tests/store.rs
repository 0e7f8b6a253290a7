//! The index's page writes (`Store::apply`), on SQLite and PostgreSQL: a page's job mutations
//! are folded in memory and written in multi-row statements, so these check that the fold
//! keeps the per-event semantics: mutations apply in order, each log entry records the job as
//! the mutations before it left it, sequences continue across pages, a mutation of a job the
//! index lacks changes nothing, a chain read never rewrites what submission fixed, and a page
//! larger than one statement's rows is written whole.

#[path = "common/mod.rs"]
mod common;

use ciro_api::wire::Digest;
use ciro_chain::events::EventCursor;
use ciro_coordinator::blobs::{BlobError, BlobStore, ByteStream, LocalBlobStore, StagedBlob};
use ciro_coordinator::operator::collect_blob;
use ciro_coordinator::records::{BlobRow, EventScope, OutputRow};
use ciro_coordinator::store::{
    Batch, JobCache, JobRow, ModelRow, Mutation, PageStart, Store, WorkerRow,
};

/// A fresh SQLite database's URL in `dir`.
fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("index.db").display())
}

fn job(job_id: u64) -> JobRow {
    JobRow {
        job_id,
        submitter: "0xabc".into(),
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
    }
}

fn logged(job_id: u64, block_number: u64) -> Mutation {
    Mutation::JobEvent {
        job_id,
        block_number,
        tx_hash: format!("{block_number:#x}"),
        recorded_at: 7,
    }
}

fn page(block: u64, mutations: Vec<Mutation>) -> Batch {
    Batch {
        contract: "JobMgr".into(),
        cursor: EventCursor::at(block + 1),
        events: mutations.len() as u64,
        block,
        mutations,
        from: PageStart::Anywhere,
    }
}

/// A log entry: sequence, state, worker, output hash, block.
type Logged<'a> = (u64, &'a str, Option<&'a str>, Option<&'a str>, u64);

async fn folds_pages_in_order(url: &str) {
    let store = Store::connect(url).await.expect("store");
    let output = "22".repeat(32);
    // One page: submitted, assigned, completed, each logged; a job the index lacks.
    store
        .apply(&page(
            10,
            vec![
                Mutation::JobSubmitted(job(1)),
                logged(1, 8),
                Mutation::JobState {
                    job_id: 1,
                    state: "Assigned",
                    worker: Some(Some("0xw".into())),
                    output_hash: None,
                    disputer: None,
                    at: Some(100),
                },
                logged(1, 9),
                Mutation::JobState {
                    job_id: 1,
                    state: "Completed",
                    worker: None,
                    output_hash: Some(output.clone()),
                    disputer: None,
                    at: Some(150),
                },
                logged(1, 10),
                Mutation::JobState {
                    job_id: 99,
                    state: "Cancelled",
                    worker: None,
                    output_hash: None,
                    disputer: None,
                    at: None,
                },
                logged(99, 10),
            ],
        ))
        .await
        .expect("first page");
    let row = store.job(1).await.expect("read").expect("job 1");
    assert_eq!(
        (
            row.state.as_str(),
            row.worker.as_deref(),
            row.output_hash.as_deref()
        ),
        ("Completed", Some("0xw"), Some(output.as_str()))
    );
    assert_eq!((row.assigned_at, row.completed_at), (Some(100), Some(150)));
    assert_eq!(
        store.job(99).await.expect("read"),
        None,
        "an unknown job appeared"
    );
    assert_eq!(store.submitted_block(1).await.expect("read"), Some(10));

    // The next page: released back to the queue (the assignment time cleared), then cancelled.
    store
        .apply(&page(
            11,
            vec![
                Mutation::JobState {
                    job_id: 1,
                    state: "Queued",
                    worker: Some(None),
                    output_hash: None,
                    disputer: None,
                    at: None,
                },
                logged(1, 11),
            ],
        ))
        .await
        .expect("second page");
    let row = store.job(1).await.expect("read").expect("job 1");
    assert_eq!((row.state.as_str(), row.worker), ("Queued", None));
    assert_eq!((row.assigned_at, row.completed_at), (None, Some(150)));
    assert_eq!(store.submitted_block(1).await.expect("read"), Some(10));

    let log = store
        .job_events(&EventScope::Job(1), 0, 100)
        .await
        .expect("log");
    let seen: Vec<Logged> = log
        .iter()
        .map(|e| {
            (
                e.sequence,
                e.state.as_str(),
                e.worker.as_deref(),
                e.output_hash.as_deref(),
                e.block_number,
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (1, "Queued", None, None, 8),
            (2, "Assigned", Some("0xw"), None, 9),
            (3, "Completed", Some("0xw"), Some(output.as_str()), 10),
            // Released: no worker and no output (a job back in the queue has none on chain;
            // a row read at a later block may have lent it one).
            (4, "Queued", None, None, 11),
        ]
    );
    assert_eq!(
        store
            .job_events(&EventScope::All, 0, 100)
            .await
            .expect("log")
            .len(),
        4,
        "the unknown job was logged"
    );

    // A chain read of a known job updates what changes (state, worker, output, disputer,
    // times, dispute) and never what was fixed at submission; a dispute's state change sets
    // the disputer; a state change of a job before its submission in the same page changes
    // nothing (as an UPDATE of no row would), mixed with a non-job mutation.
    let mut read = job(1);
    read.submitter = "0xforged".into();
    read.fee = "0xffff".into();
    read.state = "Completed".into();
    read.worker = Some("0xw2".into());
    read.output_hash = Some(output.clone());
    read.completed_at = Some(160);
    store
        .apply(&page(
            12,
            vec![
                Mutation::JobRead(read),
                Mutation::Params {
                    contract: "JobMgr".into(),
                    params: "{}".into(),
                },
                Mutation::JobState {
                    job_id: 1,
                    state: "Disputed",
                    worker: None,
                    output_hash: None,
                    disputer: Some("0xd".into()),
                    at: None,
                },
                Mutation::JobState {
                    job_id: 2,
                    state: "Cancelled",
                    worker: None,
                    output_hash: None,
                    disputer: None,
                    at: None,
                },
                Mutation::JobSubmitted(job(2)),
            ],
        ))
        .await
        .expect("third page");
    let row = store.job(1).await.expect("read").expect("job 1");
    assert_eq!(
        (row.submitter.as_str(), row.fee.as_str()),
        ("0xabc", "0x64"),
        "a chain read rewrote what submission fixed"
    );
    assert_eq!(
        (
            row.state.as_str(),
            row.worker.as_deref(),
            row.disputer.as_deref(),
            row.completed_at
        ),
        ("Disputed", Some("0xw2"), Some("0xd"), Some(160))
    );
    assert_eq!(
        store.job(2).await.expect("read").expect("job 2").state,
        "Queued",
        "a change before the submission applied"
    );
    assert_eq!(store.submitted_block(2).await.expect("read"), Some(12));
    assert_eq!(
        store.params("JobMgr").await.expect("read").as_deref(),
        Some("{}")
    );

    // A page of 1,000 submissions and 1,000 log entries (several statements' worth).
    let mut big = Vec::new();
    for id in 1_000..2_000 {
        big.push(Mutation::JobSubmitted(job(id)));
        big.push(logged(id, 12));
    }
    store.apply(&page(13, big)).await.expect("a large page");
    assert_eq!(store.jobs().await.expect("jobs").len(), 1_002);
    let log = store
        .job_events(&EventScope::All, 4, 2_000)
        .await
        .expect("log");
    assert_eq!(log.len(), 1_000);
    assert!(log
        .iter()
        .zip(5..)
        .all(|(e, sequence)| e.sequence == sequence && e.job_id == sequence + 995));
}

#[tokio::test]
async fn sqlite_pages_fold_in_order() {
    let dir = tempfile::tempdir().expect("dir");
    folds_pages_in_order(&sqlite_url(&dir)).await;
}

#[tokio::test]
async fn postgres_pages_fold_in_order() {
    folds_pages_in_order(&common::fresh_postgres().await.expect("database")).await;
}

fn state(
    job_id: u64,
    state: &'static str,
    worker: Option<Option<String>>,
    at: Option<u64>,
) -> Mutation {
    Mutation::JobState {
        job_id,
        state,
        worker,
        output_hash: None,
        disputer: None,
        at,
    }
}

/// The indexer keeps the rows its pages committed (`JobCache`) and reads a page's jobs only
/// when it lacks them. The attacks on that: a row another leader changed while this one was
/// deposed, a row a failed page changed in memory but never committed, and a row of an index
/// since reset; each must be read from the database, never taken from the cache.
async fn a_cached_row_is_never_one_the_database_no_longer_has(url: &str) {
    use std::sync::Mutex;
    use std::time::Duration;
    let store = Store::connect(url).await.expect("store");
    let cache = Mutex::new(JobCache::default());
    let ttl = Duration::from_secs(60);
    let lead = |holder: &'static str| {
        let store = store.clone();
        async move {
            store
                .acquire_leadership(holder, ttl)
                .await
                .expect("lease")
                .expect("the lease is free")
                .epoch
        }
    };
    let a1 = lead("a").await;
    store
        .apply_cached(
            &page(10, vec![Mutation::JobSubmitted(job(1)), logged(1, 10)]),
            Some(("a", a1)),
            Some(&cache),
        )
        .await
        .expect("a's page");
    assert_eq!(
        cache.lock().expect("cache").len(),
        1,
        "the row was not kept"
    );

    // `a` is deposed; `b` assigns the job; `a` leads again.
    store.release_leadership("a").await.expect("release");
    let b = lead("b").await;
    store
        .apply_fenced(
            &page(
                11,
                vec![
                    state(1, "Assigned", Some(Some("0xb".into())), Some(200)),
                    logged(1, 11),
                ],
            ),
            "b",
            b,
        )
        .await
        .expect("b's page");
    store.release_leadership("b").await.expect("release");
    let a2 = lead("a").await;
    store
        .apply_cached(
            &page(
                12,
                vec![state(1, "Completed", None, Some(250)), logged(1, 12)],
            ),
            Some(("a", a2)),
            Some(&cache),
        )
        .await
        .expect("a's page as leader again");
    let row = store.job(1).await.expect("read").expect("job 1");
    assert_eq!(
        (
            row.state.as_str(),
            row.worker.as_deref(),
            row.assigned_at,
            row.completed_at
        ),
        ("Completed", Some("0xb"), Some(200), Some(250)),
        "a's cached row from before b's leadership overwrote b's assignment"
    );

    // A page that fails to write (a job with a deadline past the database's integers) after
    // finalizing job 1 in memory: the next page sees job 1 as committed, not as finalized.
    let mut unwritable = job(2);
    unwritable.deadline = u64::MAX;
    assert!(store
        .apply_cached(
            &page(
                13,
                vec![
                    state(1, "Finalized", None, None),
                    logged(1, 13),
                    Mutation::JobSubmitted(unwritable)
                ]
            ),
            Some(("a", a2)),
            Some(&cache),
        )
        .await
        .is_err());
    store
        .apply_cached(
            &page(14, vec![logged(1, 14)]),
            Some(("a", a2)),
            Some(&cache),
        )
        .await
        .expect("the next page");
    let log = store
        .job_events(&EventScope::Job(1), 0, 100)
        .await
        .expect("log");
    let seen: Vec<(&str, Option<&str>, u64)> = log
        .iter()
        .map(|e| (e.state.as_str(), e.worker.as_deref(), e.block_number))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("Queued", None, 10),
            ("Assigned", Some("0xb"), 11),
            ("Completed", Some("0xb"), 12),
            ("Completed", Some("0xb"), 14),
        ],
        "a failed page's change was taken as committed"
    );
    assert_eq!(
        store.job(1).await.expect("read").expect("job 1").state,
        "Completed"
    );

    // The index is reset: a state change of job 1 before its submission is indexed again
    // changes nothing, though the cache held job 1.
    assert_eq!(cache.lock().expect("cache").len(), 1);
    store.reset_index().await.expect("reset");
    store
        .apply_cached(
            &page(20, vec![state(1, "Cancelled", None, None), logged(1, 20)]),
            Some(("a", a2)),
            Some(&cache),
        )
        .await
        .expect("a page after the reset");
    assert_eq!(
        store.job(1).await.expect("read"),
        None,
        "a row of the index before the reset came back from the cache"
    );
    assert!(
        store
            .job_events(&EventScope::Job(1), 0, 10)
            .await
            .expect("log")
            .is_empty(),
        "a row of the index before the reset was logged from the cache"
    );

    // The index reset through another connection (whose generation this store does not see),
    // then replayed from the start, the chain now saying another fee: a page that takes its
    // cached job for one the database has fails on both databases (the update finds no row;
    // an upsert would have written the cached row's fee), and after the indexer's retry the
    // job is in the index as the replay says.
    let mut again = job(1);
    again.fee = "0x65".into();
    store
        .apply_cached(
            &page(
                21,
                vec![
                    Mutation::JobSubmitted(again.clone()),
                    Mutation::JobSubmitted(job(2)),
                ],
            ),
            Some(("a", a2)),
            Some(&cache),
        )
        .await
        .expect("the job indexed again");
    Store::connect(url)
        .await
        .expect("another connection")
        .reset_index()
        .await
        .expect("reset elsewhere");
    let mut replayed = again.clone();
    replayed.fee = "0x66".into();
    let replay = page(22, vec![Mutation::JobSubmitted(replayed), logged(1, 22)]);
    assert!(
        store
            .apply_cached(&replay, Some(("a", a2)), Some(&cache))
            .await
            .is_err(),
        "a page wrote a cached row the database no longer has"
    );
    store
        .apply_cached(&replay, Some(("a", a2)), Some(&cache))
        .await
        .expect("the retry");
    let row = store.job(1).await.expect("read");
    assert_eq!(
        row.as_ref().map(|r| (r.state.as_str(), r.fee.as_str())),
        Some(("Queued", "0x66")),
        "a job replayed after a reset elsewhere is not in the index as the chain says"
    );
    // The failed page emptied the cache: the replay's next page, of job 2 (cached before the
    // reset too), is written at once, not failed on its own stale row (each page of a rebuild
    // would then fail once).
    let mut second = job(2);
    second.fee = "0x67".into();
    store
        .apply_cached(
            &page(23, vec![Mutation::JobSubmitted(second), logged(2, 23)]),
            Some(("a", a2)),
            Some(&cache),
        )
        .await
        .expect("the replay's next page, at its first try");
    assert_eq!(
        store.job(2).await.expect("read").map(|r| r.fee),
        Some("0x67".to_owned())
    );
}

/// A page reads only the jobs the cache lacks and the database may have (ids up to the highest
/// it has): a job written by an earlier page and since dropped from a full cache is read again,
/// and a state change of a job above the highest changes nothing.
async fn a_job_dropped_from_a_full_cache_is_read_again(url: &str) {
    use std::sync::Mutex;
    let store = Store::connect(url).await.expect("store");
    // Two rows at most: each page past that starts the cache over.
    let cache = Mutex::new(JobCache::with_capacity(2));
    let apply = |block, mutations| {
        let (store, cache) = (&store, &cache);
        async move {
            store
                .apply_cached(&page(block, mutations), None, Some(cache))
                .await
                .expect("a page")
        }
    };
    apply(
        10,
        vec![
            Mutation::JobSubmitted(job(1)),
            Mutation::JobSubmitted(job(2)),
        ],
    )
    .await;
    apply(11, vec![Mutation::JobSubmitted(job(3)), logged(3, 11)]).await;
    apply(
        12,
        vec![
            state(2, "Cancelled", None, None),
            logged(2, 12),
            state(9, "Cancelled", None, None),
            logged(9, 12),
        ],
    )
    .await;
    assert_eq!(
        store.job(2).await.expect("read").expect("job 2").state,
        "Cancelled",
        "a job dropped from the cache was taken for one the database lacks"
    );
    assert_eq!(store.job(9).await.expect("read"), None);
    let log = store
        .job_events(&EventScope::Job(2), 0, 10)
        .await
        .expect("log");
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].state.as_str(), log[0].submitter.as_str()),
        ("Cancelled", "0xabc")
    );
}

#[tokio::test]
async fn sqlite_a_job_dropped_from_a_full_cache_is_read_again() {
    let dir = tempfile::tempdir().expect("dir");
    a_job_dropped_from_a_full_cache_is_read_again(&sqlite_url(&dir)).await;
}

#[tokio::test]
async fn postgres_a_job_dropped_from_a_full_cache_is_read_again() {
    a_job_dropped_from_a_full_cache_is_read_again(
        &common::fresh_postgres().await.expect("database"),
    )
    .await;
}

#[tokio::test]
async fn sqlite_a_cached_row_is_never_one_the_database_no_longer_has() {
    let dir = tempfile::tempdir().expect("dir");
    a_cached_row_is_never_one_the_database_no_longer_has(&sqlite_url(&dir)).await;
}

#[tokio::test]
async fn postgres_a_cached_row_is_never_one_the_database_no_longer_has() {
    a_cached_row_is_never_one_the_database_no_longer_has(
        &common::fresh_postgres().await.expect("database"),
    )
    .await;
}

/// A page is written only while the index still holds the cursor it started from: the attack
/// is a page read before the index was reset or emptied (a PostgreSQL crash empties its
/// unlogged index) and written after, which would leave an index of that page alone with a
/// cursor past everything before it, never rebuilt. Refused pages write nothing.
async fn a_page_is_refused_once_the_index_no_longer_holds_its_start(url: &str) {
    let store = Store::connect(url).await.expect("store");
    let at = |block, mutations, from| Batch {
        from,
        ..page(block, mutations)
    };
    let first = at(10, vec![Mutation::JobSubmitted(job(1))], PageStart::Empty);
    store.apply(&first).await.expect("the stream's first page");
    // A second "first page" (another writer, or a step that read no cursor) is refused.
    assert!(store
        .apply(&at(
            10,
            vec![Mutation::JobSubmitted(job(9))],
            PageStart::Empty
        ))
        .await
        .is_err());
    let second = at(
        11,
        vec![Mutation::JobSubmitted(job(2))],
        PageStart::After(first.cursor.clone()),
    );
    store.apply(&second).await.expect("the next page");
    // A page that starts where the index no longer stands (here the first page's end again).
    assert!(store
        .apply(&at(
            12,
            vec![Mutation::JobSubmitted(job(3))],
            PageStart::After(first.cursor.clone()),
        ))
        .await
        .is_err());

    // Reset through another connection while a page was being read: the page is refused.
    Store::connect(url)
        .await
        .expect("another connection")
        .reset_index()
        .await
        .expect("reset elsewhere");
    let err = store
        .apply(&at(
            12,
            vec![Mutation::JobSubmitted(job(3))],
            PageStart::After(second.cursor.clone()),
        ))
        .await
        .expect_err("a page of an index since emptied");
    assert!(format!("{err:#}").contains("page refused"), "{err:#}");
    assert!(store.jobs().await.expect("jobs").is_empty());
    assert!(store.cursor("JobMgr").await.expect("cursor").is_none());
    // The rebuild's first page is taken.
    store.apply(&first).await.expect("the rebuild's first page");
    let ids: Vec<u64> = store
        .jobs()
        .await
        .expect("jobs")
        .iter()
        .map(|j| j.job_id)
        .collect();
    assert_eq!(ids, vec![1]);
    assert_eq!(
        store.cursor("JobMgr").await.expect("cursor").map(|c| c.0),
        Some(first.cursor)
    );
}

#[tokio::test]
async fn sqlite_a_page_is_refused_once_the_index_no_longer_holds_its_start() {
    let dir = tempfile::tempdir().expect("dir");
    a_page_is_refused_once_the_index_no_longer_holds_its_start(&sqlite_url(&dir)).await;
}

#[tokio::test]
async fn postgres_a_page_is_refused_once_the_index_no_longer_holds_its_start() {
    a_page_is_refused_once_the_index_no_longer_holds_its_start(
        &common::fresh_postgres().await.expect("database"),
    )
    .await;
}

/// Every text a page writes comes back as it was, whatever it holds: PostgreSQL's page writes
/// `COPY` rows in as text, where backslashes, tabs, newlines and `\N` are syntax, and update
/// known rows from array parameters.
async fn text_survives_the_page_write_as_it_was(url: &str) {
    let store = Store::connect(url).await.expect("store");
    let tricky = [
        "NULL",
        "",
        "a,b",
        "{x}",
        "say \"hi\"",
        "back\\slash\\",
        "tab\tnew\nline",
        "carriage\rreturn",
        "\\N",
        "\\.",
        "ünï ✓",
    ];
    let mutations: Vec<Mutation> = tricky
        .iter()
        .zip(1..)
        .flat_map(|(text, id)| {
            let mut row = job(id);
            row.submitter = (*text).to_owned();
            row.terms = format!("{{\"note\":{}}}", serde_json::Value::from(*text));
            row.worker = Some((*text).to_owned());
            row.dispute = Some((*text).to_owned());
            [Mutation::JobSubmitted(row), logged(id, 10)]
        })
        .collect();
    store.apply(&page(10, mutations)).await.expect("a page");
    // Known rows take the update path.
    let updates: Vec<Mutation> = tricky
        .iter()
        .zip(1..)
        .map(|(text, id)| Mutation::JobState {
            job_id: id,
            state: "Completed",
            worker: None,
            output_hash: Some(format!("{text}!")),
            disputer: Some((*text).to_owned()),
            at: Some(5),
        })
        .collect();
    store
        .apply(&page(11, updates))
        .await
        .expect("a second page");
    for (text, id) in tricky.iter().zip(1..) {
        let row = store.job(id).await.expect("read").expect("the job");
        assert_eq!(row.submitter, *text);
        assert_eq!(
            row.terms,
            format!("{{\"note\":{}}}", serde_json::Value::from(*text))
        );
        assert_eq!(row.worker.as_deref(), Some(*text));
        assert_eq!(row.dispute.as_deref(), Some(*text));
        assert_eq!(row.output_hash, Some(format!("{text}!")));
        assert_eq!(row.disputer.as_deref(), Some(*text));
        assert_eq!(
            (row.state.as_str(), row.completed_at),
            ("Completed", Some(5))
        );
        let log = store
            .job_events(&EventScope::Job(id), 0, 10)
            .await
            .expect("log");
        assert_eq!(log.len(), 1);
        assert_eq!(
            (log[0].submitter.as_str(), log[0].worker.as_deref()),
            (*text, Some(*text))
        );
    }
}

#[tokio::test]
async fn sqlite_text_survives_the_page_write_as_it_was() {
    let dir = tempfile::tempdir().expect("dir");
    text_survives_the_page_write_as_it_was(&sqlite_url(&dir)).await;
}

#[tokio::test]
async fn postgres_text_survives_the_page_write_as_it_was() {
    text_survives_the_page_write_as_it_was(&common::fresh_postgres().await.expect("database"))
        .await;
}

/// A blob store that, when retention sets a blob aside, lets an upload of the same bytes record
/// itself: the interleaving retention must survive (an upload records itself, then publishes;
/// here its record lands between the set-aside and retention's check for one).
struct UploadDuringSetAside {
    inner: LocalBlobStore,
    store: Store,
    now: u64,
}

#[async_trait::async_trait]
impl BlobStore for UploadDuringSetAside {
    async fn stage(
        &self,
        digest: &Digest,
        body: ByteStream,
        limit: u64,
    ) -> Result<StagedBlob, BlobError> {
        self.inner.stage(digest, body, limit).await
    }
    async fn publish(&self, staged: StagedBlob) -> Result<u64, BlobError> {
        self.inner.publish(staged).await
    }
    async fn open(&self, digest: &Digest) -> Result<Option<(u64, ByteStream)>, BlobError> {
        self.inner.open(digest).await
    }
    async fn contains(&self, digest: &Digest) -> Result<bool, BlobError> {
        self.inner.contains(digest).await
    }
    async fn set_aside(&self, digest: &Digest) -> Result<Option<String>, BlobError> {
        let aside = self.inner.set_aside(digest).await;
        self.store
            .insert_blob(&blob(digest, "0xb0b", self.now))
            .await
            .expect("the racing upload's record");
        aside
    }
    async fn restore(&self, digest: &Digest, aside: &str) -> Result<(), BlobError> {
        self.inner.restore(digest, aside).await
    }
    async fn purge(&self, aside: &str) -> Result<(), BlobError> {
        self.inner.purge(aside).await
    }
}

/// An active model `model_id` of `owner` whose file is `digest`, with no requirements.
fn model(model_id: u64, owner: &str, digest: &Digest) -> ModelRow {
    ModelRow {
        model_id,
        owner: owner.into(),
        model_hash: digest.to_string(),
        min_vram_mb: 0,
        required_flags: 0,
        min_stake_tier: 0,
        min_score: 0,
        price: "0x1".into(),
        active: true,
    }
}

fn blob(digest: &Digest, uploader: &str, created_at: u64) -> BlobRow {
    BlobRow {
        digest: digest.to_string(),
        size: 5,
        uploader: uploader.into(),
        created_at,
    }
}

/// `count` blobs of 5 bytes each (all `i`, for `i` from 0) stored in `files` and recorded as
/// uploaded by `0xa11ce` at `created_at`; their digests.
async fn stored_blobs(
    store: &Store,
    files: &LocalBlobStore,
    count: u8,
    created_at: u64,
) -> Vec<Digest> {
    let mut digests = Vec::new();
    for i in 0..count {
        let bytes = vec![i; 5];
        let digest = Digest::of(&bytes);
        let body: ByteStream = Box::pin(futures_util::stream::iter(vec![Ok(bytes::Bytes::from(
            bytes,
        ))]));
        files.put(&digest, body, 100).await.expect("put");
        store
            .insert_blob(&blob(&digest, "0xa11ce", created_at))
            .await
            .expect("record");
        digests.push(digest);
    }
    digests
}

/// Retention reads every reference from the index, so it collects nothing while the index is
/// empty (after a reset, or a PostgreSQL crash that emptied its unlogged tables, until the
/// leader rebuilds it): the attack is a crash between the leader's catch-up and its
/// collection, which would otherwise see every stored blob as named by nothing and delete
/// models, live jobs' inputs and outputs, which the chain holds only the hashes of.
async fn retention_collects_nothing_while_the_index_is_empty(url: &str) {
    const NOW: u64 = 100_000;
    const GRACE_START: u64 = NOW - 3_600;
    let store = Store::connect(url).await.expect("store");
    let dir = tempfile::tempdir().expect("dir");
    let files = LocalBlobStore::open_dir(dir.path()).await.expect("blobs");
    let digests = stored_blobs(&store, &files, 2, NOW - 86_400).await;
    let [input, unnamed] = digests[..] else {
        unreachable!()
    };
    let mut queued = job(1);
    queued.submitter = "0xa11ce".into();
    queued.input_hash = input.to_string();
    let index = page(1, vec![Mutation::JobSubmitted(queued)]);
    store.apply(&index).await.expect("a queued job naming one");
    let list = || store.collectable_blobs(GRACE_START, GRACE_START, 100);
    assert_eq!(list().await.expect("listing"), vec![unnamed.to_string()]);

    Store::connect(url)
        .await
        .expect("another connection")
        .reset_index()
        .await
        .expect("reset");
    assert_eq!(list().await.expect("listing"), Vec::<String>::new());
    for digest in [input, unnamed] {
        assert!(
            !collect_blob(&store, &files, &digest, GRACE_START, GRACE_START, None)
                .await
                .expect("collect"),
            "{digest} collected from an empty index"
        );
        assert!(files.contains(&digest).await.expect("contains"));
    }

    // Rebuilt: the rule applies again.
    store.apply(&index).await.expect("rebuilt");
    assert_eq!(list().await.expect("listing"), vec![unnamed.to_string()]);

    // Deletion is the leader's: a deposed leader (whose listing may predate the new leader's
    // reset and partial rebuild) deletes nothing; the leader does.
    let ttl = std::time::Duration::from_secs(60);
    let a = store
        .acquire_leadership("a", ttl)
        .await
        .expect("lease")
        .expect("free")
        .epoch;
    store.release_leadership("a").await.expect("release");
    let b = store
        .acquire_leadership("b", ttl)
        .await
        .expect("lease")
        .expect("free")
        .epoch;
    assert!(
        collect_blob(
            &store,
            &files,
            &unnamed,
            GRACE_START,
            GRACE_START,
            Some(("a", a))
        )
        .await
        .is_err(),
        "a deposed leader collected"
    );
    assert!(files.contains(&unnamed).await.expect("contains"));
    assert!(store
        .blob(&unnamed.to_string())
        .await
        .expect("read")
        .is_some());
    assert!(collect_blob(
        &store,
        &files,
        &unnamed,
        GRACE_START,
        GRACE_START,
        Some(("b", b))
    )
    .await
    .expect("the leader collects"));
    assert!(!files.contains(&unnamed).await.expect("contains"));
}

#[tokio::test]
async fn sqlite_retention_collects_nothing_while_the_index_is_empty() {
    let dir = tempfile::tempdir().expect("dir");
    retention_collects_nothing_while_the_index_is_empty(&sqlite_url(&dir)).await;
}

#[tokio::test]
async fn postgres_retention_collects_nothing_while_the_index_is_empty() {
    retention_collects_nothing_while_the_index_is_empty(
        &common::fresh_postgres().await.expect("database"),
    )
    .await;
}

/// Retention lists a blob, then deletes it only if the rule still holds: an upload of the same
/// bytes (restarting its retention) or a job of its uploader naming it after the listing keeps
/// it, records and file; an upload that records itself while the file is set aside gets the
/// file back; and a job or a model of someone who never uploaded it keeps nothing.
async fn retention_spares_what_was_uploaded_or_named_since_the_listing(url: &str) {
    const NOW: u64 = 100_000;
    const GRACE_START: u64 = NOW - 3_600;
    let store = Store::connect(url).await.expect("store");
    // The index holds JobMgr's history (retention collects nothing otherwise).
    store.apply(&page(0, vec![])).await.expect("an index");
    let dir = tempfile::tempdir().expect("dir");
    let files = LocalBlobStore::open_dir(dir.path()).await.expect("blobs");
    // Stored a day ago, named by nothing: collectable.
    let digests = stored_blobs(&store, &files, 4, NOW - 86_400).await;
    let listed = store
        .collectable_blobs(GRACE_START, GRACE_START, 100)
        .await
        .expect("listing");
    assert_eq!(listed.len(), 4, "{listed:?}");
    // A listing is bounded (retention runs in the leader's tick): the first of the same.
    let first_two = store
        .collectable_blobs(GRACE_START, GRACE_START, 2)
        .await
        .expect("a bounded listing");
    assert_eq!(first_two, listed[..2]);
    let [uploaded_again, named, raced, plain] = digests[..] else {
        unreachable!()
    };

    // After the listing: the same bytes uploaded again (by anyone), a job of their uploader
    // naming another.
    store
        .insert_blob(&blob(&uploaded_again, "0xb0b", NOW))
        .await
        .expect("re-upload");
    let mut submitted = job(1);
    submitted.submitter = "0xa11ce".into();
    submitted.input_hash = named.to_string();
    store
        .apply(&page(1, vec![Mutation::JobSubmitted(submitted)]))
        .await
        .expect("a job naming it");
    for digest in [uploaded_again, named] {
        assert!(
            !collect_blob(&store, &files, &digest, GRACE_START, GRACE_START, None)
                .await
                .expect("collect"),
            "{digest} collected"
        );
        assert!(store
            .blob(&digest.to_string())
            .await
            .expect("read")
            .is_some());
        assert!(files.contains(&digest).await.expect("contains"));
    }

    // An upload recording itself while the file is set aside: the file comes back.
    let racing = UploadDuringSetAside {
        inner: files.clone(),
        store: store.clone(),
        now: NOW,
    };
    assert!(
        !collect_blob(&store, &racing, &raced, GRACE_START, GRACE_START, None)
            .await
            .expect("collect")
    );
    assert!(store
        .blob(&raced.to_string())
        .await
        .expect("read")
        .is_some());
    assert!(files.contains(&raced).await.expect("contains"));

    // The last is named only by those who never uploaded it (its digest is public once a job
    // names it on chain): a job and a model of someone else's keep nothing, or anyone could
    // keep another's private input from deletion for ever. Records and file gone.
    let mut strangers = job(2);
    strangers.input_hash = plain.to_string();
    // And a stranger's job on it cancelled just now (a final job's input is kept for the
    // retention period after, when its submitter uploaded it).
    let mut cancelled = job(3);
    cancelled.input_hash = plain.to_string();
    store
        .apply(&page(
            2,
            vec![
                Mutation::JobSubmitted(strangers),
                Mutation::JobSubmitted(cancelled),
                Mutation::JobState {
                    job_id: 3,
                    state: "Cancelled",
                    worker: None,
                    output_hash: None,
                    disputer: None,
                    at: None,
                },
                Mutation::JobEvent {
                    job_id: 3,
                    block_number: 2,
                    tx_hash: "0x2".into(),
                    recorded_at: NOW,
                },
                Mutation::ModelSet(model(9, "0xabc", &plain)),
            ],
        ))
        .await
        .expect("a stranger's job and model naming it");
    assert!(
        collect_blob(&store, &files, &plain, GRACE_START, GRACE_START, None)
            .await
            .expect("collect")
    );
    assert!(store
        .blob(&plain.to_string())
        .await
        .expect("read")
        .is_none());
    assert!(store
        .uploaders(&plain.to_string())
        .await
        .expect("read")
        .is_empty());
    assert!(!files.contains(&plain).await.expect("contains"));
    assert_eq!(
        store
            .collectable_blobs(GRACE_START, GRACE_START, 100)
            .await
            .expect("listing"),
        Vec::<String>::new()
    );

    // An upload whose bytes could not be published forgets its own record only: a later
    // upload's stays, and alone it leaves none.
    let lone = Digest::of(b"never published");
    let first = blob(&lone, "0xa11ce", NOW);
    store.insert_blob(&first).await.expect("record");
    store
        .insert_blob(&blob(&lone, "0xb0b", NOW + 1))
        .await
        .expect("a later upload's record");
    store.forget_upload(&first).await.expect("forget");
    let text = lone.to_string();
    assert_eq!(store.uploaders(&text).await.expect("read"), vec!["0xb0b"]);
    assert!(store.blob(&text).await.expect("read").is_some());
    let alone = Digest::of(b"alone");
    let upload = blob(&alone, "0xa11ce", NOW);
    store.insert_blob(&upload).await.expect("record");
    store.forget_upload(&upload).await.expect("forget");
    assert!(store
        .blob(&alone.to_string())
        .await
        .expect("read")
        .is_none());
    assert!(store
        .uploaders(&alone.to_string())
        .await
        .expect("read")
        .is_empty());
}

/// A disputed job's evidence is kept while the job is disputed, however old its upload
/// (arbitration outlasts the upload grace), and for the output retention period after a
/// worker-at-fault decision (the worker may challenge the slash, which an arbiter decides from
/// it); only the disputer's own upload is kept for it (a dispute naming someone else's blob
/// pins nothing). The chain names evidence by its digest's first 31 bytes; the first blob's
/// digest begins with zeros, which the recorded felt's text drops.
async fn retention_keeps_a_disputed_jobs_evidence(url: &str) {
    const NOW: u64 = 100_000;
    const GRACE_START: u64 = NOW - 3_600;
    let store = Store::connect(url).await.expect("store");
    let dir = tempfile::tempdir().expect("dir");
    let files = LocalBlobStore::open_dir(dir.path()).await.expect("blobs");
    let evidence_bytes = (0u32..)
        .map(|i| format!("evidence {i}").into_bytes())
        .find(|b| Digest::of(b).0[0] == 0)
        .expect("a digest beginning with a zero byte");
    let mut digests = Vec::new();
    for (bytes, uploader) in [
        (evidence_bytes, "0xd15"),
        (b"unrelated".to_vec(), "0xd15"),
        (b"someone else's".to_vec(), "0xe11e"),
        (b"evidence of a refunded job".to_vec(), "0xd15"),
    ] {
        let digest = Digest::of(&bytes);
        let body: ByteStream = Box::pin(futures_util::stream::iter(vec![Ok(bytes::Bytes::from(
            bytes,
        ))]));
        files.put(&digest, body, 100).await.expect("put");
        store
            .insert_blob(&blob(&digest, uploader, NOW - 86_400))
            .await
            .expect("record");
        digests.push(digest);
    }
    let [evidence, unrelated, others, refunded] = digests[..] else {
        unreachable!()
    };
    let disputed = |job_id: u64, state: &str, named: &Digest| {
        let recorded = ciro_chain::starknet::core::types::Felt::from_bytes_be_slice(&named.0[..31]);
        let mut row = job(job_id);
        row.state = state.into();
        row.disputer = Some("0xd15".into());
        row.dispute = Some(
            ciro_coordinator::indexer::dispute_text("0xd15", recorded, "0x1", NOW - 86_400)
                .expect("dispute"),
        );
        row
    };
    store
        .apply(&page(
            1,
            vec![
                Mutation::JobSubmitted(disputed(7, "Disputed", &evidence)),
                // Its disputer names a blob it did not upload.
                Mutation::JobSubmitted(disputed(8, "Disputed", &others)),
                // Decided against its worker just now: the slash may be challenged.
                Mutation::JobSubmitted(disputed(9, "Refunded", &refunded)),
                Mutation::JobEvent {
                    job_id: 9,
                    block_number: 1,
                    tx_hash: "0x1".into(),
                    recorded_at: NOW,
                },
            ],
        ))
        .await
        .expect("disputed jobs");
    let mut collectable = store
        .collectable_blobs(GRACE_START, GRACE_START, 100)
        .await
        .expect("listing");
    collectable.sort();
    let mut expected = vec![unrelated.to_string(), others.to_string()];
    expected.sort();
    assert_eq!(collectable, expected);
    for kept in [evidence, refunded] {
        assert!(
            !collect_blob(&store, &files, &kept, GRACE_START, GRACE_START, None)
                .await
                .expect("collect"),
            "the evidence of a job under arbitration was collected"
        );
        assert!(files.contains(&kept).await.expect("contains"));
    }
    // The read rule finds the jobs by the same evidence.
    for (digest, job_id) in [(evidence, 7), (others, 8), (refunded, 9)] {
        let found = store
            .disputed_jobs_with_blob(&digest.to_string())
            .await
            .expect("lookup");
        assert_eq!(
            found.iter().map(|j| j.job_id).collect::<Vec<_>>(),
            vec![job_id]
        );
    }
    let prefix = evidence.to_string()[..62].to_owned();
    assert_eq!(
        store
            .blob_by_prefix(&prefix, "0xd15")
            .await
            .expect("prefix")
            .map(|b| b.digest),
        Some(evidence.to_string())
    );
    assert!(store
        .blob_by_prefix(&prefix, "0xe11e")
        .await
        .expect("prefix")
        .is_none());

    // Decided for its worker: nothing follows, and the evidence is collectable like any other
    // unreferenced blob; a refund past the retention period likewise.
    store
        .apply(&page(
            2,
            vec![Mutation::JobState {
                job_id: 7,
                state: "Finalized",
                worker: None,
                output_hash: None,
                disputer: None,
                at: None,
            }],
        ))
        .await
        .expect("decided");
    assert!(store
        .disputed_jobs_with_blob(&evidence.to_string())
        .await
        .expect("lookup")
        .is_empty());
    assert!(
        collect_blob(&store, &files, &evidence, GRACE_START, GRACE_START, None)
            .await
            .expect("collect")
    );
    assert!(!files.contains(&evidence).await.expect("contains"));
    assert!(
        collect_blob(&store, &files, &refunded, GRACE_START, NOW + 1, None)
            .await
            .expect("collect"),
        "a refunded job's evidence outlived the retention period"
    );
}

#[tokio::test]
async fn sqlite_retention_keeps_a_disputed_jobs_evidence() {
    let dir = tempfile::tempdir().expect("dir");
    retention_keeps_a_disputed_jobs_evidence(&sqlite_url(&dir)).await;
}

#[tokio::test]
async fn postgres_retention_keeps_a_disputed_jobs_evidence() {
    retention_keeps_a_disputed_jobs_evidence(&common::fresh_postgres().await.expect("database"))
        .await;
}

#[tokio::test]
async fn sqlite_retention_spares_what_was_uploaded_or_named_since_the_listing() {
    let dir = tempfile::tempdir().expect("dir");
    retention_spares_what_was_uploaded_or_named_since_the_listing(&sqlite_url(&dir)).await;
}

#[tokio::test]
async fn postgres_retention_spares_what_was_uploaded_or_named_since_the_listing() {
    retention_spares_what_was_uploaded_or_named_since_the_listing(
        &common::fresh_postgres().await.expect("database"),
    )
    .await;
}

/// A job released (a timeout, the worker's silence) may be assigned to the same worker again:
/// the earlier assignment's output must not stand for the new one's (it exempted the worker
/// from a silence release and refused the new upload with a conflict).
async fn an_output_belongs_to_the_assignment_it_was_uploaded_under(url: &str) {
    let store = Store::connect(url).await.expect("store");
    let output = |tag: &str, assigned_at: u64| OutputRow {
        job_id: 9,
        worker: "0xw".into(),
        output_hash: tag.repeat(64),
        size: 1,
        uploaded_at: 5,
        assigned_at,
        receipt: None,
    };
    store
        .insert_output(&output("a", 100))
        .await
        .expect("write")
        .expect("first");
    store.set_receipt(9, "0xw", "{}").await.expect("receipt");
    // Under the same assignment another output conflicts; the same one again is taken.
    let conflict = store.insert_output(&output("b", 100)).await.expect("write");
    assert_eq!(
        conflict.expect_err("a conflict").output_hash,
        "a".repeat(64)
    );
    store
        .insert_output(&output("a", 100))
        .await
        .expect("write")
        .expect("the same again");
    // A later assignment's output replaces it, receipt and all,
    store
        .insert_output(&output("b", 200))
        .await
        .expect("write")
        .expect("a new assignment's");
    let row = store.output(9, "0xw").await.expect("read").expect("row");
    assert_eq!(
        (row.output_hash.as_str(), row.assigned_at, row.receipt),
        ("b".repeat(64).as_str(), 200, None)
    );
    // and the earlier assignment's late upload changes nothing.
    assert!(store
        .insert_output(&output("a", 100))
        .await
        .expect("write")
        .is_err());
    assert_eq!(
        store
            .output(9, "0xw")
            .await
            .expect("read")
            .expect("row")
            .assigned_at,
        200
    );
}

#[tokio::test]
async fn sqlite_an_output_belongs_to_the_assignment_it_was_uploaded_under() {
    let dir = tempfile::tempdir().expect("dir");
    an_output_belongs_to_the_assignment_it_was_uploaded_under(&sqlite_url(&dir)).await;
}

#[tokio::test]
async fn postgres_an_output_belongs_to_the_assignment_it_was_uploaded_under() {
    an_output_belongs_to_the_assignment_it_was_uploaded_under(
        &common::fresh_postgres().await.expect("database"),
    )
    .await;
}

/// A page of models says, for each, whether its file is stored, from one query (one query
/// per model made a page of 500 cost 501 for anyone), in id order after the cursor.
async fn a_model_page_says_which_files_are_stored(url: &str) {
    let store = Store::connect(url).await.expect("store");
    let models: Vec<ModelRow> = (1..=3u64)
        .map(|model_id| ModelRow {
            active: model_id != 2,
            ..model(model_id, "0xa11ce", &Digest::of(&[model_id as u8]))
        })
        .collect();
    store
        .apply(&page(
            1,
            models.iter().cloned().map(Mutation::ModelSet).collect(),
        ))
        .await
        .expect("models");
    store
        .insert_blob(&blob(&Digest::of(&[2u8]), "0xa11ce", 1))
        .await
        .expect("a stored file");
    // Model 3's bytes uploaded by someone other than its owner: not its file (workers download
    // only the owner's upload), and saying so would tell anyone who registers a model naming
    // a guessed digest whether those bytes were uploaded.
    store
        .insert_blob(&blob(&Digest::of(&[3u8]), "0xb0b", 1))
        .await
        .expect("someone else's upload");
    let listed = store.list_models(None, None, 10).await.expect("listing");
    let flags: Vec<(u64, bool)> = listed.iter().map(|(m, f)| (m.model_id, *f)).collect();
    assert_eq!(flags, [(1, false), (2, true), (3, false)]);
    assert_eq!(listed[1].0, models[1]);
    let active: Vec<u64> = store
        .list_models(Some(true), Some(1), 10)
        .await
        .expect("listing")
        .iter()
        .map(|(m, _)| m.model_id)
        .collect();
    assert_eq!(active, [3]);
}

#[tokio::test]
async fn sqlite_a_model_page_says_which_files_are_stored() {
    let dir = tempfile::tempdir().expect("dir");
    a_model_page_says_which_files_are_stored(&sqlite_url(&dir)).await;
}

#[tokio::test]
async fn postgres_a_model_page_says_which_files_are_stored() {
    a_model_page_says_which_files_are_stored(&common::fresh_postgres().await.expect("database"))
        .await;
}

/// An account's quota counts its uploads that nothing of its own names: another account's
/// model or job naming them takes nothing off (it does not keep them from retention either),
/// or a second account could lift the first's quota, one cheap registration a blob; its own
/// model, job or output does.
async fn only_an_uploaders_own_names_take_an_upload_off_its_quota(url: &str) {
    const MIN: u64 = ciro_coordinator::records::MIN_BLOB_CHARGE;
    let store = Store::connect(url).await.expect("store");
    let digests: Vec<Digest> = (10..14u8).map(|i| Digest::of(&[i])).collect();
    for digest in &digests {
        store
            .insert_blob(&blob(digest, "0xa11ce", 50))
            .await
            .expect("an upload");
    }
    let pending = || async { store.pending_upload_bytes("0xa11ce", 0).await.expect("sum") };
    assert_eq!(pending().await, 4 * MIN);
    let mut theirs = job(1);
    theirs.input_hash = digests[1].to_string();
    store
        .apply(&page(
            1,
            vec![
                Mutation::ModelSet(model(1, "0xb0b", &digests[0])),
                Mutation::JobSubmitted(theirs),
            ],
        ))
        .await
        .expect("another account's model and job naming two of them");
    assert_eq!(pending().await, 4 * MIN, "another account's names count");
    let mut own = job(2);
    own.submitter = "0xa11ce".into();
    own.input_hash = digests[3].to_string();
    store
        .apply(&page(
            2,
            vec![
                Mutation::ModelSet(model(2, "0xa11ce", &digests[2])),
                Mutation::JobSubmitted(own),
            ],
        ))
        .await
        .expect("its own model and job naming the other two");
    assert_eq!(pending().await, 2 * MIN, "its own names take them off");
}

#[tokio::test]
async fn sqlite_only_an_uploaders_own_names_take_an_upload_off_its_quota() {
    let dir = tempfile::tempdir().expect("dir");
    only_an_uploaders_own_names_take_an_upload_off_its_quota(&sqlite_url(&dir)).await;
}

#[tokio::test]
async fn postgres_only_an_uploaders_own_names_take_an_upload_off_its_quota() {
    only_an_uploaders_own_names_take_an_upload_off_its_quota(
        &common::fresh_postgres().await.expect("database"),
    )
    .await;
}

fn worker(score: u64) -> WorkerRow {
    WorkerRow {
        address: "0x77".into(),
        state: "Active".into(),
        gpu_model: "H100".into(),
        vram_mb: 81_920,
        compute_capability: 90,
        flags: 0,
        stake: "0x1".into(),
        hardware_tier: 3,
        stake_tier: 0,
        score,
        last_heartbeat: 0,
        info: "{}".into(),
    }
}

/// Two streams read a worker's row (JobMgr's pages after an assignment, the pool's after its
/// events), each at the block its page ends at, and they are written in either order: a read
/// at an earlier block than the row's (the pool's page ending below JobMgr's) never replaces
/// it; a read at the same or a later block does.
async fn a_worker_read_at_an_earlier_block_never_replaces_a_later_one(url: &str) {
    let store = Store::connect(url).await.expect("store");
    let score = |store: Store| async move {
        store
            .worker("0x77")
            .await
            .expect("read")
            .expect("the worker's row")
            .score
    };
    store
        .apply(&page(10, vec![Mutation::Worker(worker(5))]))
        .await
        .expect("the read at block 10");
    store
        .apply(&page(8, vec![Mutation::Worker(worker(1))]))
        .await
        .expect("the read at block 8, written after");
    assert_eq!(
        score(store.clone()).await,
        5,
        "the read at block 8 replaced the one at block 10"
    );
    store
        .apply(&page(10, vec![Mutation::Worker(worker(6))]))
        .await
        .expect("another read at block 10");
    assert_eq!(score(store.clone()).await, 6);
    store
        .apply(&page(12, vec![Mutation::Worker(worker(7))]))
        .await
        .expect("a read at block 12");
    assert_eq!(score(store.clone()).await, 7);
}

#[tokio::test]
async fn sqlite_a_worker_read_at_an_earlier_block_never_replaces_a_later_one() {
    let dir = tempfile::tempdir().expect("dir");
    a_worker_read_at_an_earlier_block_never_replaces_a_later_one(&sqlite_url(&dir)).await;
}

#[tokio::test]
async fn postgres_a_worker_read_at_an_earlier_block_never_replaces_a_later_one() {
    a_worker_read_at_an_earlier_block_never_replaces_a_later_one(
        &common::fresh_postgres().await.expect("database"),
    )
    .await;
}

/// Upload reservations, shared by every replica of one database: an account's uploads in
/// progress and their bytes, and every account's bytes, are counted across replicas; an ended
/// or lapsed reservation counts no more, a renewed one counts past its first lapse, and a
/// lapsed one is not renewed; a refused one records nothing; and reservations racing through
/// two replicas for an account's last slots are taken one at a time (the attack: sixteen at
/// once where four are allowed). Lapses are the database's clock, in whole seconds.
async fn upload_reservations_are_shared_by_replicas_and_taken_one_at_a_time(
    one: Store,
    two: Store,
) {
    const MOST: u64 = 4;
    let at_most = |held: &ciro_coordinator::records::UploadsInProgress| {
        if held.account_uploads >= MOST {
            Err(*held)
        } else {
            Ok(())
        }
    };
    let seen = |store: Store, account: &'static str| async move {
        store
            .reserve_upload("a look", account, 0, 100, |held| Err(*held))
            .await
            .expect("read")
            .expect_err("always refused")
    };
    // Sixteen reservations of 100 bytes for one account at once, alternating replicas: four.
    let racing: Vec<_> = (0..16)
        .map(|i| {
            let store = if i % 2 == 0 { one.clone() } else { two.clone() };
            tokio::spawn(async move {
                let id = format!("race-{i}");
                store
                    .reserve_upload(&id, "0xa", 100, 100, at_most)
                    .await
                    .expect("a reservation or a refusal")
                    .ok()
                    .map(|()| id)
            })
        })
        .collect();
    let mut granted = Vec::new();
    for task in racing {
        granted.extend(task.await.expect("task"));
    }
    assert_eq!(granted.len(), MOST as usize, "{granted:?}");
    // Another account's reservation counts in the total, not in the first account's share.
    two.reserve_upload("b", "0xb", 1_000, 100, at_most)
        .await
        .expect("reserve")
        .expect("granted");
    let held = seen(one.clone(), "0xa").await;
    assert_eq!(
        (held.account_uploads, held.account_bytes, held.total_bytes),
        (4, 400, 1_400)
    );
    // The fifth is refused through either replica, and records nothing, until one ends.
    for store in [&one, &two] {
        let refused = store
            .reserve_upload("fifth", "0xa", 100, 100, at_most)
            .await
            .expect("reserve")
            .expect_err("a fifth");
        assert_eq!(refused.account_uploads, 4);
    }
    assert!(
        !one.renew_upload("fifth", 100).await.expect("renew"),
        "a refused reservation recorded nothing"
    );
    two.end_upload(&granted[0]).await.expect("end");
    one.reserve_upload("fifth", "0xa", 100, 100, at_most)
        .await
        .expect("reserve")
        .expect("a slot once one ended");
    // Two of 0xa's taken again with short lifetimes (1 and 2 s): the first to lapse without a
    // sweep in between, the second renewed at once (a second to spare) and so kept.
    for (i, store) in [&one, &two].into_iter().enumerate() {
        store.end_upload(&granted[i + 1]).await.expect("end");
        store
            .reserve_upload(&format!("short-{i}"), "0xa", 100, i as u64 + 1, at_most)
            .await
            .expect("reserve")
            .expect("granted");
    }
    assert!(one.renew_upload("short-1", 100).await.expect("renew"));
    tokio::time::sleep(std::time::Duration::from_millis(3_100)).await;
    let short = "short-0";
    assert!(
        !two.renew_upload(short, 100).await.expect("renew"),
        "a lapsed reservation is not renewed"
    );
    let later = seen(two.clone(), "0xa").await;
    assert_eq!(
        (
            later.account_uploads,
            later.account_bytes,
            later.total_bytes
        ),
        (3, 300, 1_300),
        "{short} lapsed; short-1 was renewed; granted[3], fifth and b hold"
    );
}

#[tokio::test]
async fn sqlite_upload_reservations_are_shared_by_replicas_and_taken_one_at_a_time() {
    // One SQLite database has one writer: its replicas are one process's connections.
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::connect(&sqlite_url(&dir)).await.expect("store");
    upload_reservations_are_shared_by_replicas_and_taken_one_at_a_time(store.clone(), store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_upload_reservations_are_shared_by_replicas_and_taken_one_at_a_time() {
    let url = common::fresh_postgres().await.expect("database");
    let one = Store::connect(&url).await.expect("one replica");
    let two = Store::connect(&url).await.expect("another replica");
    upload_reservations_are_shared_by_replicas_and_taken_one_at_a_time(one, two).await;
}

/// A reservation does not wait for ever on a lock another session holds (a stuck replica's
/// transaction, an operator's session): it fails with the reason within seconds (the API
/// answers 503, retryable), and is granted once the lock is free.
#[tokio::test]
async fn postgres_a_reservation_fails_rather_than_wait_for_ever_on_the_lock() {
    use sqlx::Connection;
    let url = common::fresh_postgres().await.expect("database");
    let store = Store::connect(&url).await.expect("store");
    let mut holder = sqlx::PgConnection::connect(&url)
        .await
        .expect("another session");
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(ciro_coordinator::records::UPLOAD_RESERVATIONS_LOCK)
        .execute(&mut holder)
        .await
        .expect("hold the reservations' lock");
    let started = std::time::Instant::now();
    let failed = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        store.reserve_upload("waits", "0xa", 1, 100, |_| Ok::<(), ()>(())),
    )
    .await
    .expect("an answer within 30 s")
    .expect_err("the lock is held");
    assert!(
        format!("{failed:#}").contains("lock"),
        "{failed:#} after {:?}",
        started.elapsed()
    );
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(ciro_coordinator::records::UPLOAD_RESERVATIONS_LOCK)
        .execute(&mut holder)
        .await
        .expect("release the lock");
    store
        .reserve_upload("waits", "0xa", 1, 100, |_| Ok::<(), ()>(()))
        .await
        .expect("reserve")
        .expect("granted once the lock is free");
}

/// Stores `bytes` in `files` and records `uploader`'s upload of them at `created_at`; the
/// digest.
async fn stored_as(
    store: &Store,
    files: &LocalBlobStore,
    bytes: Vec<u8>,
    uploader: &str,
    created_at: u64,
) -> Digest {
    let digest = Digest::of(&bytes);
    let body: ByteStream = Box::pin(futures_util::stream::iter(vec![Ok(bytes::Bytes::from(
        bytes,
    ))]));
    files.put(&digest, body, 1 << 20).await.expect("put");
    store
        .insert_blob(&blob(&digest, uploader, created_at))
        .await
        .expect("record");
    digest
}

/// A batch's items are kept and taken off the quota through its recorded manifests, and only
/// as the single-job rules would: an input its submitter uploaded, listed by the input manifest
/// of a batch in use whose count is the manifest's; an output its worker uploaded, listed by the
/// worker's output manifest. Attacks refused: a submitter listing another account's blob in
/// its manifest keeps it from nothing and takes it off no quota; a manifest recorded for 2
/// inputs keeps nothing of a batch claiming 3; a worker's output manifest listing another
/// account's blob keeps it from nothing. Collecting a manifest forgets its recorded items.
async fn batches_keep_their_items_through_their_manifests_only(url: &str) {
    const NOW: u64 = 100_000;
    const GRACE_START: u64 = NOW - 3_600;
    const OLD: u64 = NOW - 86_400;
    let (submitter, worker, stranger) = ("0x5b", "0x3a", "0x7c");
    let store = Store::connect(url).await.expect("store");
    let dir = tempfile::tempdir().expect("dir");
    let files = LocalBlobStore::open_dir(dir.path()).await.expect("blobs");
    let in0 = stored_as(&store, &files, vec![1; 10], submitter, OLD).await;
    let in1 = stored_as(&store, &files, vec![2; 10], submitter, OLD).await;
    let theirs = stored_as(&store, &files, vec![3; 10], stranger, OLD).await;
    let queued_in = stored_as(&store, &files, vec![7; 10], submitter, OLD).await;
    let c0 = stored_as(&store, &files, vec![8; 10], submitter, OLD).await;
    let c1 = stored_as(&store, &files, vec![9; 10], submitter, OLD).await;
    let extra = stored_as(&store, &files, vec![4; 10], submitter, OLD).await;
    let out0 = stored_as(&store, &files, vec![5; 10], worker, OLD).await;
    let their_out = stored_as(&store, &files, vec![6; 10], stranger, OLD).await;
    let manifest_of = |d: &[Digest]| ciro_protocol::manifest_of(d);
    let m1 = stored_as(&store, &files, manifest_of(&[in0, in1]), submitter, OLD).await;
    let m2 = stored_as(
        &store,
        &files,
        manifest_of(&[theirs, queued_in]),
        submitter,
        OLD,
    )
    .await;
    let m3 = stored_as(&store, &files, manifest_of(&[extra, in0]), submitter, OLD).await;
    let om = stored_as(&store, &files, manifest_of(&[out0, their_out]), worker, OLD).await;
    let m4 = stored_as(&store, &files, manifest_of(&[c0, c1]), submitter, OLD).await;
    for (manifest, items) in [
        (m1, vec![in0, in1]),
        (m2, vec![theirs, queued_in]),
        (m3, vec![extra, in0]),
        (om, vec![out0, their_out]),
        (m4, vec![c0, c1]),
    ] {
        let items: Vec<String> = items.iter().map(ToString::to_string).collect();
        store
            .record_manifest(&manifest.to_string(), &items, OLD)
            .await
            .expect("a manifest");
    }
    // Batch 1 (2 inputs, m1) assigned to the worker, whose output manifest is om; batch 2 (2
    // inputs, m2) queued; batch 3 claims 3 inputs under m3's 2, and was cancelled long ago.
    let batch = |id: u64, manifest: &Digest, items: u64| {
        let mut j = job(id);
        j.submitter = submitter.into();
        j.input_hash = manifest.to_string();
        j.items = items;
        j
    };
    let mut cancelled = batch(3, &m3, 3);
    cancelled.state = "Cancelled".into();
    // Batch 4 (2 inputs, m4) cancelled from the queue: its inputs were never in use.
    let mut withdrawn = batch(4, &m4, 2);
    withdrawn.state = "Cancelled".into();
    let mut assigned = batch(1, &m1, 2);
    assigned.state = "Assigned".into();
    assigned.worker = Some(worker.into());
    assigned.assigned_at = Some(50);
    store
        .apply(&page(
            1,
            vec![
                Mutation::JobSubmitted(assigned),
                Mutation::JobSubmitted(batch(2, &m2, 2)),
                Mutation::JobSubmitted(cancelled),
                Mutation::JobSubmitted(withdrawn),
            ],
        ))
        .await
        .expect("the batches");
    store
        .insert_output(&OutputRow {
            job_id: 1,
            worker: worker.into(),
            output_hash: om.to_string(),
            size: 64,
            uploaded_at: OLD,
            assigned_at: 50,
            receipt: None,
        })
        .await
        .expect("an output")
        .expect("the first");

    let mut listed = store
        .collectable_blobs(GRACE_START, GRACE_START, 100)
        .await
        .expect("listing");
    listed.sort();
    let mut want = vec![
        theirs.to_string(),
        extra.to_string(),
        their_out.to_string(),
        m3.to_string(),
        c0.to_string(),
        c1.to_string(),
        m4.to_string(),
    ];
    want.sort();
    assert_eq!(listed, want, "only what no batch of its uploader keeps");

    // The quota, counted from before the uploads: the submitter's inputs of the assigned batch
    // 1 are off it; the queued batch 2's still count (a queued batch's inputs must fit the
    // quota: a cancellable submission would otherwise exempt a thousand inputs of any size), as
    // do batch 4's, cancelled from the queue, and `extra` (batch 3's count is not its
    // manifest's); the stranger's blobs listed by
    // others' manifests still count against the stranger; the worker's outputs count for
    // nothing.
    let charge = ciro_coordinator::records::MIN_BLOB_CHARGE;
    let pending = |who: &'static str| {
        let store = store.clone();
        async move { store.pending_upload_bytes(who, 0).await.expect("pending") }
    };
    assert_eq!(
        pending(submitter).await,
        4 * charge,
        "`queued_in`, `extra` and the withdrawn batch's `c0` and `c1` count"
    );
    assert_eq!(pending(stranger).await, 2 * charge);
    assert_eq!(pending(worker).await, 0);

    // Read grants: the parties of batch 1 read its items, no one else; the stranger's blob
    // listed by the submitter's manifest is granted to no one through it.
    let granted = |digest: Digest, reader: &'static str| {
        let store = store.clone();
        async move {
            store
                .batch_item_grant(&digest.to_string(), reader)
                .await
                .expect("grant")
        }
    };
    assert!(granted(in0, worker).await);
    assert!(granted(out0, submitter).await);
    assert!(!granted(in0, stranger).await);
    assert!(!granted(theirs, submitter).await);
    assert!(!granted(their_out, submitter).await);
    assert!(!granted(extra, worker).await);

    // m3 is collected (its batch was cancelled long ago): its recorded items go with it.
    assert!(
        collect_blob(&store, &files, &m3, GRACE_START, GRACE_START, None)
            .await
            .expect("collect")
    );
    assert_eq!(store.manifest(&m3.to_string()).await.expect("read"), None);
    assert!(store
        .manifest(&m1.to_string())
        .await
        .expect("read")
        .is_some());
}

#[tokio::test]
async fn sqlite_batches_keep_their_items_through_their_manifests_only() {
    let dir = tempfile::tempdir().expect("dir");
    batches_keep_their_items_through_their_manifests_only(&sqlite_url(&dir)).await;
}

#[tokio::test]
async fn postgres_batches_keep_their_items_through_their_manifests_only() {
    batches_keep_their_items_through_their_manifests_only(
        &common::fresh_postgres().await.expect("database"),
    )
    .await;
}
