//! The coordinator's own records beside the index (migration `0002_service.sql`): blobs,
//! workers' outputs and receipts, heartbeats, request nonces, the job event log and the lists
//! the API pages through. Same portable SQL as [`crate::store`].

use anyhow::{Context, Result};
use sqlx::Row;

use crate::store::{i64_of, job_row, model_row, opt_u64, u64_of, worker_row};
use crate::store::{Backend, JobRow, ModelRow, Store, WorkerRow};

/// A stored blob's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRow {
    /// SHA-256 (64 hex).
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// The account that uploaded it first.
    pub uploader: String,
    /// When (unix seconds).
    pub created_at: u64,
}

/// An output a worker uploaded for a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRow {
    /// The job.
    pub job_id: u64,
    /// The worker that uploaded it.
    pub worker: String,
    /// SHA-256 of the output (64 hex).
    pub output_hash: String,
    /// Its size.
    pub size: u64,
    /// When (unix seconds).
    pub uploaded_at: u64,
    /// The chain time of the assignment it was uploaded under (the job's `assigned_at` then):
    /// an output of an earlier assignment of the job to the same worker is not this one's.
    pub assigned_at: u64,
    /// The worker's signed receipt as JSON, once uploaded.
    pub receipt: Option<String>,
}

/// A worker's last heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LivenessRow {
    /// The worker.
    pub address: String,
    /// When (unix seconds, the coordinator's clock).
    pub last_seen: u64,
    /// Jobs it runs.
    pub running_jobs: u64,
    /// Jobs it can run at once.
    pub capacity: u64,
    /// SHA-256 digests (64 hex) of the models in its store, as JSON.
    pub models: String,
    /// Its agent's version.
    pub agent_version: String,
    /// The largest input it accepts, in bytes (None: no limit declared).
    pub max_input_bytes: Option<u64>,
    /// The largest model file it accepts, in bytes (None: no limit declared).
    pub max_model_bytes: Option<u64>,
    /// The most inputs of a batch it runs (None: single jobs only).
    pub max_batch_items: Option<u64>,
}

/// A job and the data the coordinator holds for it ([`Store::job_view`]).
#[derive(Debug, Clone, PartialEq)]
pub struct JobView {
    /// The job's row.
    pub job: JobRow,
    /// Whether its model file is stored.
    pub model_file: bool,
    /// Whether its input is stored.
    pub input: bool,
    /// Whether its assigned worker uploaded an output.
    pub output: bool,
    /// Whether that output has a receipt.
    pub receipt: bool,
    /// How many workers gave it back because it failed on them.
    pub given_back: u32,
    /// Its input's size in bytes, when stored.
    pub input_bytes: u64,
    /// Its model file's size in bytes, when stored.
    pub model_bytes: u64,
    /// Its model's file digest (64 hex; empty when the model is not indexed).
    pub model_hash: String,
    /// For a batch, what of its items the coordinator holds (`input` and `input_bytes` above
    /// are then its manifest's).
    pub batch: Option<BatchView>,
}

/// What the coordinator holds of a batch's items ([`JobView::batch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchView {
    /// Whether its input manifest is recorded ([`crate::batches::expand`]).
    pub manifest_recorded: bool,
    /// Positions of the manifest whose input its submitter uploaded.
    pub items_uploaded: u64,
    /// The largest of those inputs, in bytes (what a worker's input limit must admit: it
    /// downloads one at a time).
    pub largest_item: u64,
    /// Positions of its assigned worker's output manifest whose output the worker has not
    /// uploaded (None: no output manifest recorded for the assignment).
    pub outputs_missing: Option<u64>,
}

/// An entry of the job event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEventRow {
    /// Position in the log.
    pub sequence: u64,
    /// The job.
    pub job_id: u64,
    /// Its submitter.
    pub submitter: String,
    /// The state it entered (as the contract names it).
    pub state: String,
    /// Its worker then.
    pub worker: Option<String>,
    /// Its output hash then.
    pub output_hash: Option<String>,
    /// The block of the change.
    pub block_number: u64,
    /// The transaction of the change.
    pub tx_hash: String,
    /// When the coordinator indexed it (unix seconds).
    pub recorded_at: u64,
}

/// Filters of the job list.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only this submitter's.
    pub submitter: Option<String>,
    /// Only this worker's.
    pub worker: Option<String>,
    /// Only in this state (as the contract names it).
    pub state: Option<String>,
    /// Only ids below this (the cursor: newest first).
    pub before: Option<u64>,
}

/// `list_jobs`' statement for the filters `filter` sets, and the values to bind after the
/// cursor (then the limit): each filter an equality that the `jobs_by_*` indexes serve. (One
/// statement for every filter, `($n = '' OR column = $n)`, left SQLite no index to use: every
/// worker's long-poll read the jobs table from its newest row down.) An empty filter value
/// is no filter.
fn list_jobs_sql(filter: &JobFilter) -> (String, Vec<&str>) {
    let mut sql = String::from("SELECT * FROM jobs WHERE job_id < $1");
    let mut values = Vec::new();
    for (column, value) in [
        ("submitter", &filter.submitter),
        ("worker", &filter.worker),
        ("state", &filter.state),
    ] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            values.push(value);
            sql.push_str(&format!(" AND {column} = ${}", values.len() + 1));
        }
    }
    sql.push_str(&format!(
        " ORDER BY job_id DESC LIMIT ${}",
        values.len() + 2
    ));
    (sql, values)
}

/// `job_events`' statement for `scope`: the cursor, the scope's value if any, then the limit;
/// each scope an equality that the `job_events_by_*` indexes serve (every open event stream
/// runs it four times a second).
fn job_events_sql(scope: &EventScope) -> &'static str {
    match scope {
        EventScope::Job(_) => {
            "SELECT * FROM job_events WHERE sequence > $1 AND job_id = $2 \
             ORDER BY sequence LIMIT $3"
        }
        EventScope::Submitter(_) => {
            "SELECT * FROM job_events WHERE sequence > $1 AND submitter = $2 \
             ORDER BY sequence LIMIT $3"
        }
        EventScope::All => {
            "SELECT * FROM job_events WHERE sequence > $1 ORDER BY sequence LIMIT $2"
        }
    }
}

/// Which log entries to read.
#[derive(Debug, Clone)]
pub enum EventScope {
    /// One job's.
    Job(u64),
    /// One submitter's jobs'.
    Submitter(String),
    /// Every job's.
    All,
}

impl EventScope {
    /// Whether `row` is one of this scope's.
    pub fn matches(&self, row: &JobEventRow) -> bool {
        match self {
            Self::Job(id) => row.job_id == *id,
            Self::Submitter(address) => row.submitter == *address,
            Self::All => true,
        }
    }
}

fn liveness_row(r: &sqlx::any::AnyRow) -> Result<LivenessRow> {
    Ok(LivenessRow {
        address: r.try_get("address")?,
        last_seen: u64_of(r.try_get("last_seen")?, "last_seen")?,
        running_jobs: u64_of(r.try_get("running_jobs")?, "running_jobs")?,
        capacity: u64_of(r.try_get("capacity")?, "capacity")?,
        models: r.try_get("models")?,
        agent_version: r.try_get("agent_version")?,
        max_input_bytes: opt_u64(r.try_get("max_input_bytes")?, "max_input_bytes")?,
        max_model_bytes: opt_u64(r.try_get("max_model_bytes")?, "max_model_bytes")?,
        max_batch_items: opt_u64(r.try_get("max_batch_items")?, "max_batch_items")?,
    })
}

/// A declared byte limit as the database holds it: past `i64::MAX` it is as good as none.
fn capped_i64(limit: Option<u64>) -> Option<i64> {
    limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX))
}

fn output_row(r: &sqlx::any::AnyRow) -> Result<OutputRow> {
    Ok(OutputRow {
        job_id: u64_of(r.try_get("job_id")?, "job_id")?,
        worker: r.try_get("worker")?,
        output_hash: r.try_get("output_hash")?,
        size: u64_of(r.try_get("size")?, "size")?,
        uploaded_at: u64_of(r.try_get("uploaded_at")?, "uploaded_at")?,
        assigned_at: u64_of(r.try_get("assigned_at")?, "assigned_at")?,
        receipt: r.try_get("receipt")?,
    })
}

fn event_row(r: &sqlx::any::AnyRow) -> Result<JobEventRow> {
    Ok(JobEventRow {
        sequence: u64_of(r.try_get("sequence")?, "sequence")?,
        job_id: u64_of(r.try_get("job_id")?, "job_id")?,
        submitter: r.try_get("submitter")?,
        state: r.try_get("state")?,
        worker: r.try_get("worker")?,
        output_hash: r.try_get("output_hash")?,
        block_number: u64_of(r.try_get("block_number")?, "block_number")?,
        tx_hash: r.try_get("tx_hash")?,
        recorded_at: u64_of(r.try_get("recorded_at")?, "recorded_at")?,
    })
}

/// The least an upload counts for against its account's quota of unreferenced bytes: each
/// blob is a file (an inode and a block at least), so a quota counted in bytes alone let one
/// account store millions of 1-byte blobs and run the disk out of inodes.
pub const MIN_BLOB_CHARGE: u64 = 64 << 10;

/// An account's unreferenced upload bytes since `$2` (`$1`: the account, `$3`:
/// [`MIN_BLOB_CHARGE`]): see [`Store::pending_upload_bytes`]. A batch's inputs count until the
/// batch is assigned (and for good if it never is: cancelled or expired from the queue): one
/// `submit_batch` (whose fee comes back on a cancellation) would otherwise exempt a thousand
/// inputs of any size from the quota, so a queued batch's inputs must fit its submitter's
/// quota.
const PENDING_UPLOAD_BYTES: &str =
    "SELECT CAST(SUM(CASE WHEN b.size < $3 THEN $3 ELSE b.size END) AS BIGINT) \
     FROM blob_uploaders u \
     JOIN blobs b ON b.digest = u.digest WHERE u.uploader = $1 AND u.created_at >= $2 \
     AND NOT EXISTS (SELECT 1 FROM models m WHERE m.model_hash = u.digest \
         AND m.owner = u.uploader) \
     AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.input_hash = u.digest \
         AND j.submitter = u.uploader) \
     AND NOT EXISTS (SELECT 1 FROM job_outputs o WHERE o.output_hash = u.digest \
         AND o.worker = u.uploader) \
     AND NOT EXISTS (SELECT 1 FROM manifest_items mi \
         JOIN manifests m ON m.digest = mi.manifest \
         JOIN jobs j ON j.input_hash = mi.manifest AND j.items = m.items \
         WHERE mi.digest = u.digest AND j.submitter = u.uploader \
         AND j.state IN ('Assigned', 'Completed', 'Disputed', 'Finalized', 'Refunded')) \
     AND NOT EXISTS (SELECT 1 FROM manifest_items mi \
         JOIN manifests m ON m.digest = mi.manifest \
         JOIN job_outputs o ON o.output_hash = mi.manifest \
         JOIN jobs j ON j.job_id = o.job_id AND j.items = m.items \
         WHERE mi.digest = u.digest AND o.worker = u.uploader)";

/// The PostgreSQL advisory lock key that orders upload reservations across replicas.
pub const UPLOAD_RESERVATIONS_LOCK: i64 = 0x6369_726f_5570_6c64;

/// What the uploads in progress hold when an upload asks to reserve room, every replica's
/// counted ([`Store::reserve_upload`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadsInProgress {
    /// Bytes the account's uploads in progress reserved.
    pub account_bytes: u64,
    /// How many uploads the account has in progress.
    pub account_uploads: u64,
    /// Bytes every upload in progress reserved.
    pub total_bytes: u64,
}

/// Retention's rule for a row of `blobs` (parameters: `$1` the upload grace's start, `$2` the output
/// retention's): stored before `$1`, named by no model, by no job input still in use or in a
/// final state since `$2`, and by no output of a job not final or final since `$2`. A model or
/// a job keeps a blob only if its owner or submitter uploaded it (as only then does it grant
/// reading it): the digests of jobs' inputs are public on chain, so anyone could otherwise
/// register a model naming a finished job's private input and keep it from deletion for ever.
/// (An output is named by its own uploader, and evidence is checked for its disputer.)
/// A batch's items are kept as its manifest is: the inputs its submitter uploaded that the
/// input manifest of a batch in use (or final since `$2`) lists, and the outputs its worker
/// uploaded that such a batch's output manifest lists.
///
/// And only while the index holds JobMgr's history (its cursor): every reference above is read
/// from the index, which is empty after [`Store::reset_index`] or a PostgreSQL crash (its
/// tables are unlogged) until the leader rebuilds it, and an empty index references nothing.
/// In the same statement, so a crash between the leader's catch-up and its collection (or
/// between the listing and a deletion) collects nothing.
const COLLECTABLE: &str = "EXISTS (SELECT 1 FROM index_cursors WHERE contract = 'JobMgr') \
     AND blobs.created_at < $1 \
     AND NOT EXISTS (SELECT 1 FROM models m WHERE m.model_hash = blobs.digest \
         AND EXISTS (SELECT 1 FROM blob_uploaders u WHERE u.digest = blobs.digest \
             AND u.uploader = m.owner)) \
     AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.input_hash = blobs.digest \
         AND j.state IN ('Queued', 'Assigned', 'Completed', 'Disputed') \
         AND EXISTS (SELECT 1 FROM blob_uploaders u WHERE u.digest = blobs.digest \
             AND u.uploader = j.submitter)) \
     AND NOT EXISTS (SELECT 1 FROM job_outputs o JOIN jobs j ON j.job_id = o.job_id \
         WHERE o.output_hash = blobs.digest AND (j.state NOT IN ('Finalized', 'Cancelled', \
         'Expired', 'Refunded') OR EXISTS (SELECT 1 FROM job_events e \
         WHERE e.job_id = j.job_id AND e.state = j.state AND e.recorded_at >= $2))) \
     AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.input_hash = blobs.digest \
         AND EXISTS (SELECT 1 FROM blob_uploaders u WHERE u.digest = blobs.digest \
             AND u.uploader = j.submitter) \
         AND EXISTS (SELECT 1 FROM job_events e WHERE e.job_id = j.job_id \
         AND e.state = j.state AND e.recorded_at >= $2)) \
     AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.dispute IS NOT NULL \
         AND j.state IN ('Disputed', 'Refunded') \
         AND j.dispute LIKE '%\"evidence_hash\":\"0x' || ltrim(substr(blobs.digest, 1, 62), '0') \
         || '\"%' \
         AND EXISTS (SELECT 1 FROM blob_uploaders u WHERE u.digest = blobs.digest \
             AND u.uploader = j.disputer) \
         AND (j.state = 'Disputed' OR EXISTS (SELECT 1 FROM job_events e \
             WHERE e.job_id = j.job_id AND e.state = j.state AND e.recorded_at >= $2))) \
     AND NOT EXISTS (SELECT 1 FROM manifest_items mi \
         JOIN manifests m ON m.digest = mi.manifest \
         JOIN jobs j ON j.input_hash = mi.manifest AND j.items = m.items \
         WHERE mi.digest = blobs.digest \
         AND EXISTS (SELECT 1 FROM blob_uploaders u WHERE u.digest = blobs.digest \
             AND u.uploader = j.submitter) \
         AND (j.state IN ('Queued', 'Assigned', 'Completed', 'Disputed') \
             OR EXISTS (SELECT 1 FROM job_events e WHERE e.job_id = j.job_id \
             AND e.state = j.state AND e.recorded_at >= $2))) \
     AND NOT EXISTS (SELECT 1 FROM manifest_items mi \
         JOIN manifests m ON m.digest = mi.manifest \
         JOIN job_outputs o ON o.output_hash = mi.manifest \
         JOIN jobs j ON j.job_id = o.job_id AND j.items = m.items \
         WHERE mi.digest = blobs.digest \
         AND EXISTS (SELECT 1 FROM blob_uploaders u WHERE u.digest = blobs.digest \
             AND u.uploader = o.worker) \
         AND (j.state NOT IN ('Finalized', 'Cancelled', 'Expired', 'Refunded') \
             OR EXISTS (SELECT 1 FROM job_events e WHERE e.job_id = j.job_id \
             AND e.state = j.state AND e.recorded_at >= $2)))";

impl Store {
    /// Records `account`'s use of `nonce` until `expires_at`; `false` if it was already used
    /// (a replay). Forgets nonces that expired before `now` first.
    pub async fn use_nonce(
        &self,
        account: &str,
        nonce: &str,
        now: u64,
        expires_at: u64,
    ) -> Result<bool> {
        sqlx::query("DELETE FROM request_nonces WHERE expires_at < $1")
            .bind(i64_of(now, "now")?)
            .execute(&self.pool)
            .await
            .context("forgetting expired nonces")?;
        let inserted = sqlx::query(
            "INSERT INTO request_nonces (account, nonce, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (account, nonce) DO NOTHING",
        )
        .bind(account)
        .bind(nonce)
        .bind(i64_of(expires_at, "expires_at")?)
        .execute(&self.pool)
        .await
        .context("recording a request nonce")?;
        Ok(inserted.rows_affected() == 1)
    }

    /// Records a stored blob (its first uploader stays in `blobs`) and its uploader (every
    /// one is kept: see [`Self::has_uploaded`]), in one transaction.
    pub async fn insert_blob(&self, blob: &BlobRow) -> Result<()> {
        let mut tx = self.pool.begin().await.context("starting a transaction")?;
        // Storing it again restarts its retention (see `forget_blob_if_collectable`).
        sqlx::query(
            "INSERT INTO blobs (digest, size, uploader, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (digest) DO UPDATE SET created_at = excluded.created_at",
        )
        .bind(&blob.digest)
        .bind(i64_of(blob.size, "size")?)
        .bind(&blob.uploader)
        .bind(i64_of(blob.created_at, "created_at")?)
        .execute(&mut *tx)
        .await
        .context("recording a blob")?;
        sqlx::query(
            "INSERT INTO blob_uploaders (digest, uploader, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (digest, uploader) DO UPDATE SET created_at = excluded.created_at",
        )
        .bind(&blob.digest)
        .bind(&blob.uploader)
        .bind(i64_of(blob.created_at, "created_at")?)
        .execute(&mut *tx)
        .await
        .context("recording a blob's uploader")?;
        tx.commit().await.context("committing a blob")?;
        Ok(())
    }

    /// Whether `uploader` uploaded blob `digest` (whether first or not).
    pub async fn has_uploaded(&self, digest: &str, uploader: &str) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM blob_uploaders WHERE digest = $1 AND uploader = $2 LIMIT 1",
        )
        .bind(digest)
        .bind(uploader)
        .fetch_optional(&self.pool)
        .await
        .context("looking up a blob's uploaders")?;
        Ok(row.is_some())
    }

    /// The size of blob `digest` if `uploader` uploaded it (None otherwise).
    pub async fn uploaded_size(&self, digest: &str, uploader: &str) -> Result<Option<u64>> {
        let row = sqlx::query(
            "SELECT b.size FROM blob_uploaders u JOIN blobs b ON b.digest = u.digest \
             WHERE u.digest = $1 AND u.uploader = $2 LIMIT 1",
        )
        .bind(digest)
        .bind(uploader)
        .fetch_optional(&self.pool)
        .await
        .context("looking up a blob's uploaders")?;
        row.map(|r| u64_of(r.try_get("size")?, "size")).transpose()
    }

    /// Everyone who uploaded blob `digest`, first first.
    pub async fn uploaders(&self, digest: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT uploader FROM blob_uploaders WHERE digest = $1 ORDER BY created_at, uploader",
        )
        .bind(digest)
        .fetch_all(&self.pool)
        .await
        .context("listing a blob's uploaders")?;
        rows.iter()
            .map(|r| r.try_get("uploader").map_err(Into::into))
            .collect()
    }

    /// A blob's record.
    pub async fn blob(&self, digest: &str) -> Result<Option<BlobRow>> {
        let row = sqlx::query("SELECT * FROM blobs WHERE digest = $1")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await
            .context("reading a blob record")?;
        row.as_ref().map(blob_row).transpose()
    }

    /// Forgets the record `upload` made (see [`Store::insert_blob`]) when its bytes could not
    /// be published: its uploader's row, and the blob's row once no uploader is left, each only
    /// if its time is still this upload's (a later upload's record stays).
    pub async fn forget_upload(&self, upload: &BlobRow) -> Result<()> {
        let at = i64_of(upload.created_at, "created_at")?;
        let mut tx = self.pool.begin().await.context("starting a transaction")?;
        sqlx::query(
            "DELETE FROM blob_uploaders WHERE digest = $1 AND uploader = $2 AND created_at = $3",
        )
        .bind(&upload.digest)
        .bind(&upload.uploader)
        .bind(at)
        .execute(&mut *tx)
        .await
        .context("forgetting an upload's uploader row")?;
        sqlx::query(
            "DELETE FROM blobs WHERE digest = $1 AND created_at = $2 \
             AND NOT EXISTS (SELECT 1 FROM blob_uploaders u WHERE u.digest = blobs.digest)",
        )
        .bind(&upload.digest)
        .bind(at)
        .execute(&mut *tx)
        .await
        .context("forgetting an upload's blob row")?;
        tx.commit()
            .await
            .context("committing an upload's removal")?;
        Ok(())
    }

    /// Forgets blob `digest`'s record and uploaders if retention may still delete it (see
    /// [`Store::collectable_blobs`]), checked in the deleting statement itself: an upload of
    /// the same bytes (which restarts its retention) or a job or model naming it since it was
    /// listed keeps it. As the leader `fence` `(holder, epoch)` if any (the deletion fails once
    /// another replica has taken the lease). Whether it was forgotten.
    pub async fn forget_blob_if_collectable(
        &self,
        digest: &str,
        created_before: u64,
        final_before: u64,
        fence: Option<(&str, u64)>,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await.context("starting a transaction")?;
        if let Some(fence) = fence {
            crate::store::any_db::check_fence(&mut tx, fence).await?;
        }
        // The rule is on the deleted row itself, not on a second read of the table in a
        // subquery: PostgreSQL re-checks a row an upload changed meanwhile (its new time) only
        // in the row's own conditions.
        let forgotten = sqlx::query(&format!(
            "DELETE FROM blobs WHERE digest = $3 AND {COLLECTABLE}"
        ))
        .bind(i64_of(created_before, "time")?)
        .bind(i64_of(final_before, "time")?)
        .bind(digest)
        .execute(&mut *tx)
        .await
        .context("forgetting a collectable blob")?
        .rows_affected()
            > 0;
        if forgotten {
            sqlx::query("DELETE FROM blob_uploaders WHERE digest = $1")
                .bind(digest)
                .execute(&mut *tx)
                .await
                .context("forgetting a blob's uploaders")?;
            // A manifest lives as long as its batch keeps it: its items (kept only through it)
            // become collectable at the next pass.
            sqlx::query("DELETE FROM manifest_items WHERE manifest = $1")
                .bind(digest)
                .execute(&mut *tx)
                .await
                .context("forgetting a manifest's items")?;
            sqlx::query("DELETE FROM manifests WHERE digest = $1")
                .bind(digest)
                .execute(&mut *tx)
                .await
                .context("forgetting a manifest")?;
        }
        tx.commit().await.context("committing a blob's deletion")?;
        Ok(forgotten)
    }

    /// Blobs older than `created_before` that no model, job input or output refers to (a
    /// model or job only when its owner or submitter uploaded the blob: [`COLLECTABLE`]), and
    /// outputs of jobs that reached a final state before `final_before` (with no other
    /// reference): what retention may delete, the oldest first, at most `limit`.
    pub async fn collectable_blobs(
        &self,
        created_before: u64,
        final_before: u64,
        limit: u64,
    ) -> Result<Vec<String>> {
        let rows = sqlx::query(&format!(
            "SELECT digest FROM blobs WHERE {COLLECTABLE} ORDER BY created_at, digest LIMIT $3"
        ))
        .bind(i64_of(created_before, "time")?)
        .bind(i64_of(final_before, "time")?)
        .bind(i64_of(limit, "limit")?)
        .fetch_all(&self.pool)
        .await
        .context("finding collectable blobs")?;
        rows.iter()
            .map(|r| r.try_get("digest").map_err(Into::into))
            .collect()
    }

    /// Bytes of `uploader`'s uploads since `since` that no model, job input or output of its
    /// own refers to yet, each counted as at least [`MIN_BLOB_CHARGE`] (what its upload quota
    /// counts; retention collects such blobs after the upload grace, so older ones are on their
    /// way out). Another account's model or job naming them does not take them off the count,
    /// as it does not keep them from retention: a second account could otherwise lift the
    /// first's quota, one cheap registration a blob.
    pub async fn pending_upload_bytes(&self, uploader: &str, since: u64) -> Result<u64> {
        let total: Option<i64> = sqlx::query_scalar(PENDING_UPLOAD_BYTES)
            .bind(uploader)
            .bind(i64_of(since, "time")?)
            .bind(i64_of(MIN_BLOB_CHARGE, "charge")?)
            .fetch_one(&self.pool)
            .await
            .context("summing an account's pending uploads")?;
        u64_of(total.unwrap_or(0), "bytes")
    }

    /// Reserves `bytes` for an upload by `account` in progress, as reservation `id` (drawn by
    /// the caller, so that a caller cancelled mid-call can still end it), unless `decide`
    /// refuses it given what every replica's uploads in progress hold. The reservation lapses
    /// `ttl_secs` from now unless [`Store::renew_upload`] moves it, and ends with
    /// [`Store::end_upload`]. Times are the database's clock, which every replica shares.
    /// Reservations are taken one at a time across replicas: on PostgreSQL under a
    /// transaction-scoped advisory lock, waited for at most 5 s (each statement run for at
    /// most 5 s), read committed (a snapshot
    /// taken before the lock was granted would miss the reservation committed under it);
    /// SQLite has one connection. So two uploads racing through two replicas cannot both take
    /// an account's last slot.
    ///
    /// Returns `decide`'s refusal, if any (nothing is written then).
    pub async fn reserve_upload<E>(
        &self,
        id: &str,
        account: &str,
        bytes: u64,
        ttl_secs: u64,
        decide: impl FnOnce(&UploadsInProgress) -> std::result::Result<(), E>,
    ) -> Result<std::result::Result<(), E>> {
        let now = self.database_now();
        let mut tx = self.pool.begin().await.context("starting a reservation")?;
        if self.backend() == Backend::Postgres {
            for statement in [
                "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
                "SET LOCAL lock_timeout = '5s'",
                "SET LOCAL statement_timeout = '5s'",
            ] {
                sqlx::query(statement)
                    .execute(&mut *tx)
                    .await
                    .with_context(|| format!("preparing a reservation: {statement}"))?;
            }
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(UPLOAD_RESERVATIONS_LOCK)
                .execute(&mut *tx)
                .await
                .context("waiting for the upload reservations' lock")?;
        }
        sqlx::query(&format!(
            "DELETE FROM upload_reservations WHERE expires_at <= {now}"
        ))
        .execute(&mut *tx)
        .await
        .context("dropping lapsed upload reservations")?;
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) AS bytes, \
             CAST(COUNT(*) AS BIGINT) AS uploads FROM upload_reservations WHERE account = $1",
        )
        .bind(account)
        .fetch_one(&mut *tx)
        .await
        .context("reading an account's uploads in progress")?;
        let account_bytes = u64_of(row.try_get("bytes")?, "bytes")?;
        let account_uploads = u64_of(row.try_get("uploads")?, "uploads")?;
        let total: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM upload_reservations",
        )
        .fetch_one(&mut *tx)
        .await
        .context("reading the uploads in progress")?;
        let state = UploadsInProgress {
            account_bytes,
            account_uploads,
            total_bytes: u64_of(total, "bytes")?,
        };
        if let Err(refusal) = decide(&state) {
            // The next reservation granted sweeps the lapsed ones again: a refusal writes
            // nothing (on SQLite a commit would hold the one connection for a disk write).
            tx.rollback()
                .await
                .context("ending a refused reservation")?;
            return Ok(Err(refusal));
        }
        sqlx::query(&format!(
            "INSERT INTO upload_reservations (id, account, bytes, expires_at) \
             VALUES ($1, $2, $3, {now} + $4)"
        ))
        .bind(id)
        .bind(account)
        .bind(i64_of(bytes, "bytes")?)
        .bind(i64_of(ttl_secs, "time")?)
        .execute(&mut *tx)
        .await
        .context("recording an upload reservation")?;
        tx.commit()
            .await
            .context("committing an upload reservation")?;
        Ok(Ok(()))
    }

    /// Moves reservation `id`'s lapse to `ttl_secs` from now (its upload still streams in);
    /// false when it lapsed or ended: a lapsed reservation no longer counted, and others may
    /// have taken its room, so it is not taken back.
    pub async fn renew_upload(&self, id: &str, ttl_secs: u64) -> Result<bool> {
        let now = self.database_now();
        let renewed = sqlx::query(&format!(
            "UPDATE upload_reservations SET expires_at = {now} + $2 \
             WHERE id = $1 AND expires_at > {now}"
        ))
        .bind(id)
        .bind(i64_of(ttl_secs, "time")?)
        .execute(&self.pool)
        .await
        .context("renewing an upload reservation")?;
        Ok(renewed.rows_affected() == 1)
    }

    /// Ends reservation `id` (its upload ended, recorded or not); nothing when there is none.
    pub async fn end_upload(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM upload_reservations WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .context("ending an upload reservation")?;
        Ok(())
    }

    /// The database's clock in unix seconds, as an SQL expression.
    fn database_now(&self) -> &'static str {
        match self.backend() {
            // The statement's own time, not the transaction's start (before a lock wait).
            Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS BIGINT)",
            Backend::Sqlite => "CAST(strftime('%s', 'now') AS INTEGER)",
        }
    }

    /// Whether `digest`, uploaded by `uploader`, is the file of a model `uploader` registered
    /// (model files are public; registering someone else's private blob's hash as a model
    /// does not make it public).
    pub async fn is_model_file(&self, digest: &str, uploader: &str) -> Result<bool> {
        let row =
            sqlx::query("SELECT 1 AS one FROM models WHERE model_hash = $1 AND owner = $2 LIMIT 1")
                .bind(digest)
                .bind(uploader)
                .fetch_optional(&self.pool)
                .await
                .context("looking up model files")?;
        Ok(row.is_some())
    }

    /// Jobs under arbitration whose input, output or dispute evidence `digest` may be: those
    /// disputed, and those refunded by a worker-at-fault decision (kept for review of the
    /// decision; the slash that followed is final), naming it as
    /// input or output or whose dispute's evidence hash is its first 31 bytes (what the chain
    /// records), as [`dispute_evidence_pattern`] matches the stored dispute.
    pub async fn disputed_jobs_with_blob(&self, digest: &str) -> Result<Vec<JobRow>> {
        let rows = sqlx::query(
            "SELECT * FROM jobs WHERE dispute IS NOT NULL AND state IN ('Disputed', 'Refunded') \
             AND (input_hash = $1 OR output_hash = $1 OR dispute LIKE $2) ORDER BY job_id",
        )
        .bind(digest)
        .bind(dispute_evidence_pattern(digest))
        .fetch_all(&self.pool)
        .await
        .context("looking up disputed jobs by blob")?;
        rows.iter().map(job_row).collect()
    }

    /// The blob `uploader` uploaded whose digest's first 31 bytes are `prefix` (62 hex
    /// digits): a dispute's evidence, which the chain names by those bytes only.
    pub async fn blob_by_prefix(&self, prefix: &str, uploader: &str) -> Result<Option<BlobRow>> {
        let row = sqlx::query(
            "SELECT b.* FROM blobs b JOIN blob_uploaders u ON u.digest = b.digest \
             WHERE b.digest >= $1 AND b.digest <= $2 AND u.uploader = $3 \
             ORDER BY b.digest LIMIT 1",
        )
        .bind(format!("{prefix}00"))
        .bind(format!("{prefix}ff"))
        .bind(uploader)
        .fetch_optional(&self.pool)
        .await
        .context("looking up a blob by its digest's prefix")?;
        row.as_ref().map(blob_row).transpose()
    }

    /// Jobs whose input is `digest`.
    pub async fn jobs_with_input(&self, digest: &str) -> Result<Vec<JobRow>> {
        let rows = sqlx::query("SELECT * FROM jobs WHERE input_hash = $1 ORDER BY job_id")
            .bind(digest)
            .fetch_all(&self.pool)
            .await
            .context("looking up jobs by input")?;
        rows.iter().map(job_row).collect()
    }

    /// Outputs whose hash is `digest`, with their job's submitter.
    pub async fn outputs_with_hash(&self, digest: &str) -> Result<Vec<(OutputRow, String)>> {
        let rows = sqlx::query(
            "SELECT o.*, j.submitter AS submitter FROM job_outputs o \
             JOIN jobs j ON j.job_id = o.job_id WHERE o.output_hash = $1",
        )
        .bind(digest)
        .fetch_all(&self.pool)
        .await
        .context("looking up outputs by hash")?;
        rows.iter()
            .map(|r| Ok((output_row(r)?, r.try_get("submitter")?)))
            .collect()
    }

    /// The digests (64 hex) manifest `digest` lists, in order, if it was recorded
    /// ([`crate::batches::expand`]).
    pub async fn manifest(&self, digest: &str) -> Result<Option<Vec<String>>> {
        let recorded = sqlx::query("SELECT items FROM manifests WHERE digest = $1")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await
            .context("reading a manifest")?;
        if recorded.is_none() {
            return Ok(None);
        }
        let rows =
            sqlx::query("SELECT digest FROM manifest_items WHERE manifest = $1 ORDER BY position")
                .bind(digest)
                .fetch_all(&self.pool)
                .await
                .context("reading a manifest's items")?;
        rows.iter()
            .map(|r| r.try_get("digest").map_err(Into::into))
            .collect::<Result<Vec<String>>>()
            .map(Some)
    }

    /// How many digests manifest `digest` lists, if it was recorded.
    pub async fn manifest_len(&self, digest: &str) -> Result<Option<u64>> {
        let items: Option<i64> =
            sqlx::query_scalar("SELECT items FROM manifests WHERE digest = $1")
                .bind(digest)
                .fetch_optional(&self.pool)
                .await
                .context("reading a manifest")?;
        items.map(|n| u64_of(n, "items")).transpose()
    }

    /// Records manifest `digest` listing `items` (64 hex each, in order), in one transaction;
    /// nothing if it is recorded already (the same bytes list the same digests).
    pub async fn record_manifest(&self, digest: &str, items: &[String], at: u64) -> Result<()> {
        let mut tx = self.pool.begin().await.context("starting a transaction")?;
        let inserted = sqlx::query(
            "INSERT INTO manifests (digest, items, recorded_at) VALUES ($1, $2, $3) \
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest)
        .bind(i64_of(items.len() as u64, "items")?)
        .bind(i64_of(at, "time")?)
        .execute(&mut *tx)
        .await
        .context("recording a manifest")?
        .rows_affected();
        if inserted == 0 {
            return Ok(());
        }
        // (At most 3 × 250 parameters a statement: within SQLite's and PostgreSQL's limits.)
        for (chunk_at, chunk) in items.chunks(250).enumerate() {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
                .collect();
            let sql = format!(
                "INSERT INTO manifest_items (manifest, position, digest) VALUES {} \
                 ON CONFLICT (manifest, position) DO NOTHING",
                values.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for (i, item) in chunk.iter().enumerate() {
                query = query
                    .bind(digest)
                    .bind(i64_of((chunk_at * 250 + i) as u64, "position")?)
                    .bind(item.as_str());
            }
            query
                .execute(&mut *tx)
                .await
                .context("recording a manifest's items")?;
        }
        tx.commit().await.context("committing a manifest")?;
        Ok(())
    }

    /// Whether `reader` may read blob `digest` as an item of a batch: an input item when it is
    /// the batch's submitter or worker and the submitter uploaded both the input manifest and
    /// the item; an output item when it is the batch's submitter or the worker that uploaded
    /// the output manifest, and that worker uploaded the item. Listing someone else's digest
    /// in a manifest grants nothing.
    pub async fn batch_item_grant(&self, digest: &str, reader: &str) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM manifest_items mi JOIN manifests m ON m.digest = mi.manifest \
             JOIN jobs j ON j.input_hash = mi.manifest AND j.items = m.items \
             WHERE mi.digest = $1 AND (j.submitter = $2 OR j.worker = $2) \
             AND EXISTS (SELECT 1 FROM blob_uploaders u WHERE u.digest = mi.manifest \
                 AND u.uploader = j.submitter) \
             AND EXISTS (SELECT 1 FROM blob_uploaders u WHERE u.digest = mi.digest \
                 AND u.uploader = j.submitter) \
             UNION ALL \
             SELECT 1 AS one FROM manifest_items mi JOIN manifests m ON m.digest = mi.manifest \
             JOIN job_outputs o ON o.output_hash = mi.manifest \
             JOIN jobs j ON j.job_id = o.job_id AND j.items = m.items \
             WHERE mi.digest = $1 AND (j.submitter = $2 OR o.worker = $2) \
             AND EXISTS (SELECT 1 FROM blob_uploaders u WHERE u.digest = mi.digest \
                 AND u.uploader = o.worker) \
             LIMIT 1",
        )
        .bind(digest)
        .bind(reader)
        .fetch_optional(&self.pool)
        .await
        .context("looking up a batch item's readers")?;
        Ok(row.is_some())
    }

    /// Whether blob `digest` is an item of a batch under arbitration (disputed, or refunded by
    /// a worker-at-fault decision): an input its submitter uploaded or an output its worker
    /// uploaded, listed by the batch's manifests (what JobMgr's arbiters may read).
    pub async fn is_disputed_batch_item(&self, digest: &str) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM manifest_items mi JOIN manifests m ON m.digest = mi.manifest \
             JOIN jobs j ON j.items = m.items \
             AND (j.input_hash = mi.manifest OR j.output_hash = mi.manifest) \
             WHERE mi.digest = $1 AND j.dispute IS NOT NULL \
             AND j.state IN ('Disputed', 'Refunded') \
             AND EXISTS (SELECT 1 FROM blob_uploaders u WHERE u.digest = mi.digest \
                 AND ((j.input_hash = mi.manifest AND u.uploader = j.submitter) \
                 OR (j.output_hash = mi.manifest AND u.uploader = j.worker))) \
             LIMIT 1",
        )
        .bind(digest)
        .fetch_optional(&self.pool)
        .await
        .context("looking up disputed batches by item")?;
        Ok(row.is_some())
    }

    /// Of manifest `manifest`'s positions, how many list a blob `uploader` uploaded, and the
    /// largest of those blobs (zero when none; counted per position).
    pub async fn manifest_uploads(&self, manifest: &str, uploader: &str) -> Result<(u64, u64)> {
        let row = sqlx::query(
            "SELECT CAST(COUNT(*) AS BIGINT) AS n, CAST(COALESCE(MAX(b.size), 0) AS BIGINT) AS largest \
             FROM manifest_items mi JOIN blobs b ON b.digest = mi.digest \
             WHERE mi.manifest = $1 AND EXISTS (SELECT 1 FROM blob_uploaders u \
                 WHERE u.digest = mi.digest AND u.uploader = $2)",
        )
        .bind(manifest)
        .bind(uploader)
        .fetch_one(&self.pool)
        .await
        .context("counting a manifest's uploaded items")?;
        Ok((
            u64_of(row.try_get("n")?, "count")?,
            u64_of(row.try_get("largest")?, "size")?,
        ))
    }

    /// Bytes every unexpired upload reservation holds (every replica's): the room promised
    /// to uploads in progress, which the disk's floor keeps free for them.
    pub async fn reserved_upload_bytes(&self) -> Result<u64> {
        let now = self.database_now();
        let total: i64 = sqlx::query_scalar(&format!(
            "SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM upload_reservations \
             WHERE expires_at > {now}"
        ))
        .fetch_one(&self.pool)
        .await
        .context("reading the uploads in progress")?;
        u64_of(total, "bytes")
    }

    /// Records `worker`'s output for a job under its assignment; `Err(existing)` if it already
    /// recorded another under the same assignment. One recorded under an earlier assignment of
    /// the job to the same worker is replaced (its receipt with it).
    pub async fn insert_output(&self, output: &OutputRow) -> Result<Result<(), OutputRow>> {
        sqlx::query(
            "INSERT INTO job_outputs (job_id, worker, output_hash, size, uploaded_at, assigned_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (job_id, worker) DO UPDATE SET \
             output_hash = excluded.output_hash, size = excluded.size, \
             uploaded_at = excluded.uploaded_at, assigned_at = excluded.assigned_at, \
             receipt = NULL WHERE job_outputs.assigned_at < excluded.assigned_at",
        )
        .bind(i64_of(output.job_id, "job id")?)
        .bind(&output.worker)
        .bind(&output.output_hash)
        .bind(i64_of(output.size, "size")?)
        .bind(i64_of(output.uploaded_at, "uploaded_at")?)
        .bind(i64_of(output.assigned_at, "assigned_at")?)
        .execute(&self.pool)
        .await
        .context("recording an output")?;
        let stored = self
            .output(output.job_id, &output.worker)
            .await?
            .context("the output just recorded is missing")?;
        Ok(
            if stored.output_hash == output.output_hash && stored.assigned_at == output.assigned_at
            {
                Ok(())
            } else {
                Err(stored)
            },
        )
    }

    /// `worker`'s output for a job.
    pub async fn output(&self, job_id: u64, worker: &str) -> Result<Option<OutputRow>> {
        let row = sqlx::query("SELECT * FROM job_outputs WHERE job_id = $1 AND worker = $2")
            .bind(i64_of(job_id, "job id")?)
            .bind(worker)
            .fetch_optional(&self.pool)
            .await
            .context("reading an output")?;
        row.as_ref().map(output_row).transpose()
    }

    /// Stores the receipt of `worker`'s output for a job.
    pub async fn set_receipt(&self, job_id: u64, worker: &str, receipt: &str) -> Result<()> {
        sqlx::query("UPDATE job_outputs SET receipt = $1 WHERE job_id = $2 AND worker = $3")
            .bind(receipt)
            .bind(i64_of(job_id, "job id")?)
            .bind(worker)
            .execute(&self.pool)
            .await
            .context("storing a receipt")?;
        Ok(())
    }

    /// Records a worker's heartbeat.
    pub async fn heartbeat(&self, beat: &LivenessRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO worker_liveness (address, last_seen, running_jobs, capacity, models, \
             agent_version, max_input_bytes, max_model_bytes, max_batch_items) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (address) DO UPDATE \
             SET last_seen = excluded.last_seen, running_jobs = excluded.running_jobs, \
             capacity = excluded.capacity, models = excluded.models, \
             agent_version = excluded.agent_version, \
             max_input_bytes = excluded.max_input_bytes, \
             max_model_bytes = excluded.max_model_bytes, \
             max_batch_items = excluded.max_batch_items",
        )
        .bind(&beat.address)
        .bind(i64_of(beat.last_seen, "last_seen")?)
        .bind(i64_of(beat.running_jobs, "running_jobs")?)
        .bind(i64_of(beat.capacity, "capacity")?)
        .bind(&beat.models)
        .bind(&beat.agent_version)
        .bind(capped_i64(beat.max_input_bytes))
        .bind(capped_i64(beat.max_model_bytes))
        .bind(capped_i64(beat.max_batch_items))
        .execute(&self.pool)
        .await
        .context("recording a heartbeat")?;
        Ok(())
    }

    /// A worker's last heartbeat.
    pub async fn liveness(&self, address: &str) -> Result<Option<LivenessRow>> {
        let row = sqlx::query("SELECT * FROM worker_liveness WHERE address = $1")
            .bind(address)
            .fetch_optional(&self.pool)
            .await
            .context("reading a heartbeat")?;
        row.as_ref().map(liveness_row).transpose()
    }

    /// Every worker that sent a heartbeat at or after `since`, with its indexed row.
    pub async fn live_workers(&self, since: u64) -> Result<Vec<(WorkerRow, LivenessRow)>> {
        let rows = sqlx::query(
            "SELECT w.*, l.last_seen, l.running_jobs, l.capacity, l.models, l.agent_version, \
             l.max_input_bytes, l.max_model_bytes, l.max_batch_items \
             FROM worker_liveness l JOIN workers w ON w.address = l.address \
             WHERE l.last_seen >= $1 ORDER BY w.address",
        )
        .bind(i64_of(since, "since")?)
        .fetch_all(&self.pool)
        .await
        .context("reading live workers")?;
        rows.iter()
            .map(|r| Ok((worker_row(r)?, liveness_row(r)?)))
            .collect()
    }

    /// How many jobs the index shows assigned to each worker.
    pub async fn assigned_counts(&self) -> Result<std::collections::HashMap<String, u64>> {
        let rows = sqlx::query(
            "SELECT worker, COUNT(*) AS n FROM jobs WHERE state = 'Assigned' GROUP BY worker",
        )
        .fetch_all(&self.pool)
        .await
        .context("counting assigned jobs")?;
        rows.iter()
            .map(|r| {
                let worker: Option<String> = r.try_get("worker")?;
                Ok((
                    worker.unwrap_or_default(),
                    u64_of(r.try_get("n")?, "count")?,
                ))
            })
            .collect()
    }

    /// Models by id from `after` (exclusive), at most `limit`.
    pub async fn list_models(
        &self,
        active: Option<bool>,
        after: Option<u64>,
        limit: u64,
    ) -> Result<Vec<(ModelRow, bool)>> {
        // Whether each model's file is stored, uploaded by its owner (what workers download;
        // anyone's upload would make this an oracle of whether guessed bytes were uploaded),
        // in the same query (one query per model made a page of 500 cost 501 of them).
        let rows = sqlx::query(
            "SELECT models.*, CAST(CASE WHEN EXISTS (SELECT 1 FROM blob_uploaders u \
                 WHERE u.digest = models.model_hash AND u.uploader = models.owner) \
                 THEN 1 ELSE 0 END AS BIGINT) AS file_stored \
             FROM models WHERE model_id > $1 AND ($2 < 0 OR active = $2) \
             ORDER BY model_id LIMIT $3",
        )
        .bind(after.map_or(Ok(-1), |a| i64_of(a, "cursor"))?)
        .bind(active.map_or(-1, i64::from))
        .bind(i64_of(limit, "limit")?)
        .fetch_all(&self.pool)
        .await
        .context("listing models")?;
        rows.iter()
            .map(|r| Ok((model_row(r)?, r.try_get::<i64, _>("file_stored")? != 0)))
            .collect()
    }

    /// Jobs matching `filter`, newest first, at most `limit`.
    pub async fn list_jobs(&self, filter: &JobFilter, limit: u64) -> Result<Vec<JobRow>> {
        let (sql, values) = list_jobs_sql(filter);
        let mut query = sqlx::query(&sql).bind(
            filter
                .before
                .map_or(Ok(i64::MAX), |b| i64_of(b, "cursor"))?,
        );
        for value in values {
            query = query.bind(value.to_owned());
        }
        let rows = query
            .bind(i64_of(limit, "limit")?)
            .fetch_all(&self.pool)
            .await
            .context("listing jobs")?;
        rows.iter().map(job_row).collect()
    }

    /// The jobs assigned to `worker` that it has not given back, newest first, at most
    /// `limit` (a job given back stays assigned to it until the release lands and is indexed).
    /// A batch only to a worker whose last heartbeat declared batches that large: an older
    /// agent handed a batch's manifest as its input would run the model on it (this
    /// coordinator assigns it none; another holder of the role might).
    pub async fn assignments_of(&self, worker: &str, limit: u64) -> Result<Vec<JobRow>> {
        let rows = sqlx::query(
            "SELECT * FROM jobs WHERE worker = $1 AND state = 'Assigned' \
             AND (items = 1 OR EXISTS (SELECT 1 FROM worker_liveness l \
                 WHERE l.address = $1 AND l.max_batch_items >= jobs.items)) \
             AND NOT EXISTS (SELECT 1 FROM release_requests r \
                 WHERE r.job_id = jobs.job_id AND r.worker = $1) \
             ORDER BY job_id DESC LIMIT $2",
        )
        .bind(worker)
        .bind(i64_of(limit, "limit")?)
        .fetch_all(&self.pool)
        .await
        .context("listing a worker's assignments")?;
        rows.iter().map(job_row).collect()
    }

    /// A job with what the API shows beside it, in one query: whether the coordinator holds
    /// its model file and its input, and whether its assigned worker uploaded an output and a
    /// receipt.
    pub async fn job_view(&self, job_id: u64) -> Result<Option<JobView>> {
        let row = sqlx::query(
            "SELECT j.*, \
             CAST(CASE WHEN EXISTS (SELECT 1 FROM models m JOIN blob_uploaders u \
                 ON u.digest = m.model_hash AND u.uploader = m.owner \
                 WHERE m.model_id = j.model_id) THEN 1 ELSE 0 END AS BIGINT) AS has_model_file, \
             CAST(CASE WHEN EXISTS (SELECT 1 FROM blob_uploaders u WHERE u.digest = j.input_hash \
                 AND u.uploader = j.submitter) THEN 1 ELSE 0 END AS BIGINT) AS has_input, \
             CAST(CASE WHEN EXISTS (SELECT 1 FROM job_outputs o WHERE o.job_id = j.job_id \
                 AND o.worker = j.worker AND o.assigned_at = j.assigned_at) \
                 THEN 1 ELSE 0 END AS BIGINT) AS has_output, \
             CAST(CASE WHEN EXISTS (SELECT 1 FROM job_outputs o WHERE o.job_id = j.job_id \
                 AND o.worker = j.worker AND o.assigned_at = j.assigned_at \
                 AND o.receipt IS NOT NULL) THEN 1 ELSE 0 END AS BIGINT) \
                 AS has_receipt, \
             CAST((SELECT COUNT(*) FROM release_requests r WHERE r.job_id = j.job_id \
                 AND r.job_failed = 1) AS BIGINT) AS given_back, \
             CAST(COALESCE((SELECT b.size FROM blobs b WHERE b.digest = j.input_hash), 0) \
                 AS BIGINT) AS input_bytes, \
             CAST(COALESCE((SELECT b.size FROM blobs b JOIN models m \
                 ON b.digest = m.model_hash WHERE m.model_id = j.model_id), 0) AS BIGINT) \
                 AS model_bytes, \
             COALESCE((SELECT m.model_hash FROM models m WHERE m.model_id = j.model_id), '') \
                 AS model_hash \
             FROM jobs j WHERE j.job_id = $1",
        )
        .bind(i64_of(job_id, "job id")?)
        .fetch_optional(&self.pool)
        .await
        .context("reading a job")?;
        let Some(mut view) = row
            .map(|r| -> Result<JobView> {
                let flag = |name: &str| -> Result<bool> { Ok(r.try_get::<i64, _>(name)? != 0) };
                Ok(JobView {
                    job: job_row(&r)?,
                    model_file: flag("has_model_file")?,
                    input: flag("has_input")?,
                    output: flag("has_output")?,
                    receipt: flag("has_receipt")?,
                    given_back: u32::try_from(r.try_get::<i64, _>("given_back")?)
                        .unwrap_or(u32::MAX),
                    input_bytes: u64_of(r.try_get("input_bytes")?, "input_bytes")?,
                    model_bytes: u64_of(r.try_get("model_bytes")?, "model_bytes")?,
                    model_hash: r.try_get("model_hash")?,
                    batch: None,
                })
            })
            .transpose()?
        else {
            return Ok(None);
        };
        if view.job.items > 1 {
            view.batch = Some(self.batch_view(&view).await?);
        }
        Ok(Some(view))
    }

    /// What the coordinator holds of batch `view`'s items.
    async fn batch_view(&self, view: &JobView) -> Result<BatchView> {
        let job = &view.job;
        let recorded = self.manifest_len(&job.input_hash).await? == Some(job.items);
        let (items_uploaded, largest_item) = if recorded && view.input {
            self.manifest_uploads(&job.input_hash, &job.submitter)
                .await?
        } else {
            (0, 0)
        };
        let mut outputs_missing = None;
        if let (Some(worker), Some(assigned_at)) = (&job.worker, job.assigned_at) {
            if let Some(output) = self
                .output(job.job_id, worker)
                .await?
                .filter(|o| o.assigned_at == assigned_at)
            {
                if let Some(listed) = self.manifest_len(&output.output_hash).await? {
                    let (uploaded, _) = self.manifest_uploads(&output.output_hash, worker).await?;
                    outputs_missing = Some(listed.saturating_sub(uploaded));
                }
            }
        }
        Ok(BatchView {
            manifest_recorded: recorded,
            items_uploaded,
            largest_item,
            outputs_missing,
        })
    }

    /// Records that `worker` gives job `job_id` back, `job_failed` when the job failed on it
    /// (what counts toward the limit of give-backs) rather than the worker being unable to
    /// run it (idempotent; the reason and kind are kept from the first request).
    pub async fn request_release(
        &self,
        job_id: u64,
        worker: &str,
        reason: &str,
        job_failed: bool,
        at: u64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO release_requests (job_id, worker, reason, requested_at, job_failed) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (job_id, worker) DO NOTHING",
        )
        .bind(i64_of(job_id, "job id")?)
        .bind(worker)
        .bind(reason)
        .bind(i64_of(at, "time")?)
        .bind(i64::from(job_failed))
        .execute(&self.pool)
        .await
        .context("recording a release request")?;
        Ok(())
    }

    /// Whether the job's log shows it assigned to `worker` at some point.
    pub async fn was_assigned(&self, job_id: u64, worker: &str) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM job_events WHERE job_id = $1 AND worker = $2 \
             AND state = 'Assigned' LIMIT 1",
        )
        .bind(i64_of(job_id, "job id")?)
        .bind(worker)
        .fetch_optional(&self.pool)
        .await
        .context("reading the job's log")?;
        Ok(row.is_some())
    }

    /// Whether `worker` asked to give job `job_id` back.
    pub async fn release_requested(&self, job_id: u64, worker: &str) -> Result<bool> {
        let row =
            sqlx::query("SELECT 1 AS one FROM release_requests WHERE job_id = $1 AND worker = $2")
                .bind(i64_of(job_id, "job id")?)
                .bind(worker)
                .fetch_optional(&self.pool)
                .await
                .context("reading release requests")?;
        Ok(row.is_some())
    }

    /// The (job, worker) pairs of queued jobs whose worker gave them back, each with whether
    /// the job failed on it: the matcher never gives such a job to that worker again, nor to
    /// anyone once enough workers failed it.
    pub async fn given_back(&self) -> Result<std::collections::HashMap<(u64, String), bool>> {
        let rows = sqlx::query(
            "SELECT r.job_id, r.worker, r.job_failed FROM release_requests r \
             JOIN jobs j ON j.job_id = r.job_id WHERE j.state = 'Queued'",
        )
        .fetch_all(&self.pool)
        .await
        .context("reading release requests")?;
        rows.iter()
            .map(|r| {
                Ok((
                    (
                        u64_of(r.try_get("job_id")?, "job id")?,
                        r.try_get("worker")?,
                    ),
                    r.try_get::<i64, _>("job_failed")? != 0,
                ))
            })
            .collect()
    }

    /// How many jobs are in each state.
    pub async fn count_jobs_by_state(&self) -> Result<Vec<(String, u64)>> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
            .fetch_all(&self.pool)
            .await
            .context("counting jobs by state")?;
        rows.iter()
            .map(|r| Ok((r.try_get("state")?, u64_of(r.try_get("n")?, "count")?)))
            .collect()
    }

    /// Job events recorded at or after `since` (unix seconds), oldest first, at most `limit`
    /// (the newest), each with when its job's first event (its submission) was recorded.
    pub async fn recent_events(&self, since: u64, limit: u64) -> Result<Vec<(JobEventRow, u64)>> {
        let rows = sqlx::query(
            "SELECT e.*, (SELECT MIN(f.recorded_at) FROM job_events f WHERE f.job_id = e.job_id) \
             AS first_recorded_at FROM job_events e WHERE e.recorded_at >= $1 \
             ORDER BY e.sequence DESC LIMIT $2",
        )
        .bind(i64_of(since, "since")?)
        .bind(i64_of(limit, "limit")?)
        .fetch_all(&self.pool)
        .await
        .context("reading recent job events")?;
        rows.iter()
            .rev()
            .map(|r| {
                let first: i64 = r.try_get("first_recorded_at")?;
                Ok((event_row(r)?, u64_of(first, "first_recorded_at")?))
            })
            .collect()
    }

    /// How many times the job event log was read ([`Store::job_events`]) through this store
    /// and its clones.
    pub fn event_log_reads(&self) -> u64 {
        self.event_reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The newest event's sequence (0 before any).
    pub async fn last_sequence(&self) -> Result<u64> {
        let row = sqlx::query("SELECT COALESCE(MAX(sequence), 0) AS n FROM job_events")
            .fetch_one(&self.pool)
            .await
            .context("reading the last event sequence")?;
        u64_of(row.try_get("n")?, "sequence")
    }

    /// How many workers the index holds.
    pub async fn count_workers(&self) -> Result<u64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM workers")
            .fetch_one(&self.pool)
            .await
            .context("counting workers")?;
        u64_of(row.try_get("n")?, "count")
    }

    /// The block a job was submitted in.
    pub async fn submitted_block(&self, job_id: u64) -> Result<Option<u64>> {
        let row = sqlx::query("SELECT submitted_block FROM jobs WHERE job_id = $1")
            .bind(i64_of(job_id, "job id")?)
            .fetch_optional(&self.pool)
            .await
            .context("reading a job's submission block")?;
        row.map(|r| u64_of(r.try_get("submitted_block")?, "submitted_block"))
            .transpose()
    }

    /// Jobs in `state` by id, at most `limit`, from id `after` (exclusive).
    pub async fn jobs_in_state(&self, state: &str, after: u64, limit: u64) -> Result<Vec<JobRow>> {
        let rows = sqlx::query(
            "SELECT * FROM jobs WHERE state = $1 AND job_id > $2 ORDER BY job_id LIMIT $3",
        )
        .bind(state)
        .bind(i64_of(after, "cursor")?)
        .bind(i64_of(limit, "limit")?)
        .fetch_all(&self.pool)
        .await
        .context("listing jobs by state")?;
        rows.iter().map(job_row).collect()
    }

    /// Workers by address after `after`, with their heartbeat if any, at most `limit`.
    pub async fn list_workers(
        &self,
        state: Option<&str>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<(WorkerRow, Option<LivenessRow>)>> {
        let rows = sqlx::query(
            "SELECT w.*, l.last_seen, l.running_jobs, l.capacity, l.models, l.agent_version, \
             l.max_input_bytes, l.max_model_bytes, l.max_batch_items \
             FROM workers w LEFT JOIN worker_liveness l ON l.address = w.address \
             WHERE w.address > $1 AND ($2 = '' OR w.state = $2) ORDER BY w.address LIMIT $3",
        )
        .bind(after.unwrap_or(""))
        .bind(state.unwrap_or(""))
        .bind(i64_of(limit, "limit")?)
        .fetch_all(&self.pool)
        .await
        .context("listing workers")?;
        rows.iter()
            .map(|r| {
                let beat = match opt_u64(r.try_get("last_seen")?, "last_seen")? {
                    Some(_) => Some(liveness_row(r)?),
                    None => None,
                };
                Ok((worker_row(r)?, beat))
            })
            .collect()
    }

    /// Log entries after `after` in `scope`, oldest first, at most `limit`.
    pub async fn job_events(
        &self,
        scope: &EventScope,
        after: u64,
        limit: u64,
    ) -> Result<Vec<JobEventRow>> {
        self.event_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let query = sqlx::query(job_events_sql(scope)).bind(i64_of(after, "sequence")?);
        let query = match scope {
            EventScope::Job(id) => query.bind(i64_of(*id, "job id")?),
            EventScope::Submitter(address) => query.bind(address.clone()),
            EventScope::All => query,
        };
        let rows = query
            .bind(i64_of(limit, "limit")?)
            .fetch_all(&self.pool)
            .await
            .context("reading job events")?;
        rows.iter().map(event_row).collect()
    }
}

/// A `blobs` row.
fn blob_row(r: &sqlx::any::AnyRow) -> Result<BlobRow> {
    Ok(BlobRow {
        digest: r.try_get("digest")?,
        size: u64_of(r.try_get("size")?, "size")?,
        uploader: r.try_get("uploader")?,
        created_at: u64_of(r.try_get("created_at")?, "created_at")?,
    })
}

/// The `LIKE` pattern that finds, in a job's stored dispute (compact JSON, see
/// [`crate::indexer::job_row_of`]), the evidence hash the chain records for a blob of digest
/// `digest` (64 lowercase hex): its first 31 bytes as a felt, `0x` and minimal hex. The same
/// rule is written in SQL in the retention rule ([`COLLECTABLE`]).
pub fn dispute_evidence_pattern(digest: &str) -> String {
    let prefix = digest.get(..62).unwrap_or(digest).trim_start_matches('0');
    format!("%\"evidence_hash\":\"0x{prefix}\"%")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite's plan for `sql` with `values` bound after a first integer (its `detail`
    /// lines).
    async fn plan(store: &Store, sql: &str, values: &[&str]) -> String {
        let text = format!("EXPLAIN QUERY PLAN {sql}");
        let mut query = sqlx::query(&text).bind(i64::MAX);
        for value in values {
            query = query.bind((*value).to_owned());
        }
        let rows = query.bind(50_i64).fetch_all(&store.pool).await.unwrap();
        rows.iter()
            .map(|r| r.try_get::<String, _>("detail").unwrap())
            .collect::<Vec<_>>()
            .join("; ")
    }

    #[tokio::test]
    async fn job_lists_and_event_reads_search_their_index_instead_of_scanning() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("c.db").display()))
            .await
            .unwrap();
        let by = |submitter: Option<&str>, worker: Option<&str>, state: Option<&str>| JobFilter {
            submitter: submitter.map(str::to_owned),
            worker: worker.map(str::to_owned),
            state: state.map(str::to_owned),
            before: None,
        };
        // A worker's long-poll: its assigned jobs.
        let poll = by(None, Some("0x1"), Some("Assigned"));
        let (sql, values) = list_jobs_sql(&poll);
        assert_eq!(values, ["0x1", "Assigned"]);
        let detail = plan(&store, &sql, &values).await;
        assert!(detail.contains("USING INDEX jobs_by_"), "{detail}");
        for (filter, index) in [
            (by(Some("0x2"), None, None), "jobs_by_submitter"),
            (by(None, Some("0x1"), None), "jobs_by_worker"),
            (by(None, None, Some("Queued")), "jobs_by_state"),
        ] {
            let (sql, values) = list_jobs_sql(&filter);
            let detail = plan(&store, &sql, &values).await;
            assert!(detail.contains(index), "{filter:?}: {detail}");
        }
        // No filter (and an empty value is none): the primary key, newest first.
        let empty = by(Some(""), None, None);
        let (sql, values) = list_jobs_sql(&empty);
        assert!(values.is_empty());
        assert_eq!(
            sql,
            "SELECT * FROM jobs WHERE job_id < $1 ORDER BY job_id DESC LIMIT $2"
        );
        // The old single statement had no index to search for a worker's jobs.
        let old = "SELECT * FROM jobs WHERE job_id < $1 AND ($2 = '' OR submitter = $2) \
                   AND ($3 = '' OR worker = $3) AND ($4 = '' OR state = $4) \
                   ORDER BY job_id DESC LIMIT $5";
        let detail = plan(&store, old, &["", "0x1", "Assigned"]).await;
        assert!(!detail.contains("jobs_by_"), "{detail}");
        // And the rows are the filter's.
        let rows = store
            .list_jobs(&by(None, Some("0x1"), Some("Assigned")), 10)
            .await
            .unwrap();
        assert!(rows.is_empty());

        // An event stream's read for one job or one submitter.
        let detail = plan(&store, job_events_sql(&EventScope::Job(1)), &[]).await;
        assert!(detail.contains("job_events_by_job"), "{detail}");
        let submitter = EventScope::Submitter("0x2".into());
        let detail = plan(&store, job_events_sql(&submitter), &["0x2"]).await;
        assert!(detail.contains("job_events_by_submitter"), "{detail}");
    }
}
