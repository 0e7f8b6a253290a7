//! The agent's journal of its jobs: a small SQLite database beside the computed outputs, so a
//! crash or restart resumes where it stopped. A job moves `running` → `computed` (its output
//! written to disk, atomically, before the state says so) → `committed` (its `submit_result`
//! landed); or ends `refused` (the chain or the data disagreed with the assignment), `dropped`
//! (its deadline passed) or `failed` (the engine or the chain refused it). A computed output is
//! never recomputed: a restart uploads and commits the one on disk, so a job never gets two
//! outputs from this worker. Each running job also counts its forward passes started and not
//! returned (`attempts`): a pass the process did not survive (a crash, a kill, a pass past the
//! time limit) stays counted, so a job that keeps ending the process is not run again.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result};
use ciro_engine::Digest;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::Row;

/// Where a job stands in this worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Taken; its output is not computed yet.
    Running,
    /// Its output is on disk, not yet committed.
    Computed,
    /// Its result is on chain.
    Committed,
    /// Not run: the chain or the data disagreed with the assignment.
    Refused,
    /// Not run or not committed: its deadline passed.
    Dropped,
    /// The engine or the chain refused it.
    Failed,
}

impl Stage {
    /// The stage's name in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Running => "running",
            Stage::Computed => "computed",
            Stage::Committed => "committed",
            Stage::Refused => "refused",
            Stage::Dropped => "dropped",
            Stage::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Result<Self> {
        Ok(match text {
            "running" => Stage::Running,
            "computed" => Stage::Computed,
            "committed" => Stage::Committed,
            "refused" => Stage::Refused,
            "dropped" => Stage::Dropped,
            "failed" => Stage::Failed,
            other => anyhow::bail!("unknown journal stage {other:?}"),
        })
    }

    /// Whether the job still needs work (computing or committing).
    pub fn is_open(self) -> bool {
        matches!(self, Stage::Running | Stage::Computed)
    }
}

/// A job in the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The job.
    pub job_id: u64,
    /// SHA-256 of its model file.
    pub model_hash: Digest,
    /// SHA-256 of its input.
    pub input_hash: Digest,
    /// Its deadline (chain seconds).
    pub deadline: u64,
    /// Where it stands.
    pub stage: Stage,
    /// SHA-256 of its output, once computed.
    pub output_hash: Option<Digest>,
    /// Its signed receipt as JSON, once computed.
    pub receipt: Option<String>,
    /// Why it was refused, dropped or failed.
    pub reason: Option<String>,
    /// Forward passes started and not returned from: each one the process did not survive.
    pub attempts: u32,
    /// Its inputs: 1, or a batch's count ([`Journal::begin_items`]), whose `input_hash` and
    /// `output_hash` are then its manifests'.
    pub items: u64,
}

/// The journal: `<dir>/journal.db` and `<dir>/outputs/`.
#[derive(Debug, Clone)]
pub struct Journal {
    pool: SqlitePool,
    outputs: PathBuf,
    /// Held while an output is written and recorded, and while the pruning looks at a file:
    /// it never removes an output being written or just recorded.
    files: std::sync::Arc<tokio::sync::Mutex<()>>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Writes `bytes` to `path` atomically: to `staged`, synced, then renamed into place (a crash
/// leaves either no file at `path` or the whole one, and at most a staged `.tmp`).
async fn write_synced(staged: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    tokio::fs::write(staged, bytes)
        .await
        .with_context(|| format!("writing {}", staged.display()))?;
    tokio::fs::File::open(staged)
        .await?
        .sync_all()
        .await
        .with_context(|| format!("syncing {}", staged.display()))?;
    tokio::fs::rename(staged, path)
        .await
        .with_context(|| format!("publishing {}", path.display()))
}

fn id(value: u64) -> Result<i64> {
    i64::try_from(value).with_context(|| format!("{value} does not fit the journal"))
}

impl Journal {
    /// Opens (creating) the journal in `dir`.
    pub async fn open(dir: &Path) -> Result<Self> {
        let outputs = dir.join("outputs");
        tokio::fs::create_dir_all(&outputs)
            .await
            .with_context(|| format!("creating {}", outputs.display()))?;
        let path = dir.join("journal.db");
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Full);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .with_context(|| format!("opening the journal {}", path.display()))?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS jobs (job_id INTEGER PRIMARY KEY, model_hash TEXT NOT NULL, \
             input_hash TEXT NOT NULL, deadline INTEGER NOT NULL, stage TEXT NOT NULL, \
             output_hash TEXT, receipt TEXT, reason TEXT, updated_at INTEGER NOT NULL, \
             attempts INTEGER NOT NULL DEFAULT 0)",
        )
        .execute(&pool)
        .await
        .context("creating the journal's table")?;
        // A journal written before `attempts` existed gains the column (counting from 0).
        let has_attempts: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pragma_table_info('jobs') WHERE name = 'attempts'",
        )
        .fetch_one(&pool)
        .await
        .context("reading the journal's columns")?;
        if has_attempts == 0 {
            sqlx::query("ALTER TABLE jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0")
                .execute(&pool)
                .await
                .context("adding the attempts column to the journal")?;
        }
        // And `items` (a batch's inputs), with the items' own table.
        let has_items: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pragma_table_info('jobs') WHERE name = 'items'",
        )
        .fetch_one(&pool)
        .await
        .context("reading the journal's columns")?;
        if has_items == 0 {
            sqlx::query("ALTER TABLE jobs ADD COLUMN items INTEGER NOT NULL DEFAULT 1")
                .execute(&pool)
                .await
                .context("adding the items column to the journal")?;
        }
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS batch_items (job_id INTEGER NOT NULL, \
             position INTEGER NOT NULL, input_hash TEXT NOT NULL, output_hash TEXT, \
             PRIMARY KEY (job_id, position))",
        )
        .execute(&pool)
        .await
        .context("creating the journal's batch items")?;
        Ok(Self {
            pool,
            outputs,
            files: Default::default(),
        })
    }

    /// Ties the journal to one deployment (`deployment`: the chain id, JobMgr's address and
    /// the deployment's first block's hash), or refuses one made for another: job ids restart with each deployment, so a data
    /// directory reused after a redeploy (a restarted devnet, a new network) would take a new
    /// job for an old one (a committed entry ignored, an old crash count refusing it).
    pub async fn bind(&self, deployment: &str) -> Result<()> {
        sqlx::query("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            .execute(&self.pool)
            .await
            .context("creating the journal's meta table")?;
        let unbound: bool = sqlx::query_scalar(
            "SELECT NOT EXISTS (SELECT 1 FROM meta WHERE key = 'deployment') \
             AND EXISTS (SELECT 1 FROM jobs)",
        )
        .fetch_one(&self.pool)
        .await
        .context("reading the journal's deployment")?;
        if unbound {
            tracing::warn!(
                %deployment,
                "this journal has entries from before journals named their deployment: it is \
                 bound to this one; if it was written for another, remove it"
            );
        }
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('deployment', ?) ON CONFLICT (key) DO NOTHING",
        )
        .bind(deployment)
        .execute(&self.pool)
        .await
        .context("recording the journal's deployment")?;
        let bound: String = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'deployment'")
            .fetch_one(&self.pool)
            .await
            .context("reading the journal's deployment")?;
        anyhow::ensure!(
            bound == deployment,
            "this data directory's journal belongs to another deployment ({bound}), not this one \
             ({deployment}): job ids restart with each deployment, so its entries would be taken \
             for new jobs; run with another --data-dir (or remove this one)"
        );
        Ok(())
    }

    /// Where job `job_id`'s output is kept.
    pub fn output_path(&self, job_id: u64) -> PathBuf {
        self.outputs.join(format!("{job_id}.safetensors"))
    }

    /// Records a job taken; an existing entry is left as it is (and returned).
    pub async fn begin(
        &self,
        job_id: u64,
        model_hash: Digest,
        input_hash: Digest,
        deadline: u64,
    ) -> Result<Entry> {
        sqlx::query(
            "INSERT INTO jobs (job_id, model_hash, input_hash, deadline, stage, updated_at) \
             VALUES (?, ?, ?, ?, 'running', ?) ON CONFLICT (job_id) DO NOTHING",
        )
        .bind(id(job_id)?)
        .bind(model_hash.to_string())
        .bind(input_hash.to_string())
        .bind(id(deadline)?)
        .bind(now())
        .execute(&self.pool)
        .await
        .context("recording a job in the journal")?;
        self.entry(job_id)
            .await?
            .context("the journal lost the job it just recorded")
    }

    /// Where output `position` of batch `job_id` is kept until the batch is computed (its
    /// output manifest is then the job's output).
    pub fn item_path(&self, job_id: u64, position: u64) -> PathBuf {
        self.outputs.join(format!("{job_id}.{position:04}.item"))
    }

    /// Records running job `job_id` as a batch of the inputs `inputs` lists (its manifest, in
    /// order), unless recorded already (a resumed batch keeps the outputs it computed).
    pub async fn begin_items(&self, job_id: u64, inputs: &[Digest]) -> Result<()> {
        let mut tx = self
            .pool
            .begin()
            .await
            .context("starting a journal transaction")?;
        let set = sqlx::query("UPDATE jobs SET items = ? WHERE job_id = ? AND stage = 'running'")
            .bind(id(inputs.len() as u64)?)
            .bind(id(job_id)?)
            .execute(&mut *tx)
            .await
            .context("recording a batch in the journal")?;
        anyhow::ensure!(
            set.rows_affected() == 1,
            "job {job_id} is not running in the journal"
        );
        for (position, input) in inputs.iter().enumerate() {
            sqlx::query(
                "INSERT INTO batch_items (job_id, position, input_hash) VALUES (?, ?, ?) \
                 ON CONFLICT (job_id, position) DO NOTHING",
            )
            .bind(id(job_id)?)
            .bind(id(position as u64)?)
            .bind(input.to_string())
            .execute(&mut *tx)
            .await
            .context("recording a batch's input in the journal")?;
        }
        tx.commit()
            .await
            .context("committing a batch to the journal")?;
        Ok(())
    }

    /// Batch `job_id`'s inputs and the outputs computed of them, in order.
    pub async fn items(&self, job_id: u64) -> Result<Vec<(Digest, Option<Digest>)>> {
        let rows = sqlx::query(
            "SELECT input_hash, output_hash FROM batch_items WHERE job_id = ? ORDER BY position",
        )
        .bind(id(job_id)?)
        .fetch_all(&self.pool)
        .await
        .context("reading a batch from the journal")?;
        rows.iter()
            .map(|r| {
                let input: String = r.try_get("input_hash")?;
                let output: Option<String> = r.try_get("output_hash")?;
                let parse = |t: &str| {
                    t.parse::<Digest>()
                        .map_err(|e| anyhow::anyhow!("journal batch item: {e:?}"))
                };
                Ok((parse(&input)?, output.as_deref().map(parse).transpose()?))
            })
            .collect()
    }

    /// Writes output `position` of running batch `job_id` to disk (atomically), then records
    /// it: an item computed once is never computed again, across restarts.
    pub async fn item_computed(
        &self,
        job_id: u64,
        position: u64,
        output: &[u8],
        output_hash: Digest,
    ) -> Result<()> {
        let _files = self.files.lock().await;
        let staged = self.outputs.join(format!("{job_id}.{position:04}.tmp"));
        write_synced(&staged, &self.item_path(job_id, position), output).await?;
        sqlx::query(
            "UPDATE batch_items SET output_hash = ? WHERE job_id = ? AND position = ? \
             AND output_hash IS NULL",
        )
        .bind(output_hash.to_string())
        .bind(id(job_id)?)
        .bind(id(position)?)
        .execute(&self.pool)
        .await
        .context("recording a batch output in the journal")?;
        Ok(())
    }

    /// Output `position` of batch `job_id`, from disk.
    pub async fn item_output(&self, job_id: u64, position: u64) -> Result<Vec<u8>> {
        let path = self.item_path(job_id, position);
        tokio::fs::read(&path)
            .await
            .with_context(|| format!("reading {}", path.display()))
    }

    /// Writes the output to disk (atomically), then records the job computed.
    pub async fn computed(
        &self,
        job_id: u64,
        output: &[u8],
        output_hash: Digest,
        receipt: &str,
    ) -> Result<()> {
        let _files = self.files.lock().await;
        // Only a running job takes an output: one already computed keeps the one it has.
        match self.entry(job_id).await? {
            Some(entry) if entry.stage == Stage::Running => {}
            _ => return Ok(()),
        }
        let path = self.output_path(job_id);
        write_synced(&path.with_extension("tmp"), &path, output).await?;
        sqlx::query(
            "UPDATE jobs SET stage = 'computed', output_hash = ?, receipt = ?, attempts = 0, \
             updated_at = ? WHERE job_id = ? AND stage = 'running'",
        )
        .bind(output_hash.to_string())
        .bind(receipt)
        .bind(now())
        .bind(id(job_id)?)
        .execute(&self.pool)
        .await
        .context("recording an output in the journal")?;
        Ok(())
    }

    /// Records that a running job's forward pass starts, durably, before it starts; the
    /// passes started and not returned from, this one included.
    pub async fn forward_started(&self, job_id: u64) -> Result<u32> {
        let attempts: Option<i64> = sqlx::query_scalar(
            "UPDATE jobs SET attempts = attempts + 1, updated_at = ? \
             WHERE job_id = ? AND stage = 'running' RETURNING attempts",
        )
        .bind(now())
        .bind(id(job_id)?)
        .fetch_optional(&self.pool)
        .await
        .context("counting a forward pass in the journal")?;
        let attempts = attempts.context("the job is not running in the journal")?;
        Ok(u32::try_from(attempts).unwrap_or(u32::MAX))
    }

    /// Records that a running job's forward pass returned (with an output or an error): it
    /// did not end the process. (A computed output clears the count too.)
    pub async fn forward_returned(&self, job_id: u64) -> Result<()> {
        sqlx::query(
            "UPDATE jobs SET attempts = MAX(attempts - 1, 0), updated_at = ? \
             WHERE job_id = ? AND stage = 'running'",
        )
        .bind(now())
        .bind(id(job_id)?)
        .execute(&self.pool)
        .await
        .context("recording a forward pass's return in the journal")?;
        Ok(())
    }

    /// Records a job's forward pass as `attempts` passes not returned from (at least): the
    /// engine was stuck on it, and it is not to be run here again, even if offered again.
    pub async fn forward_condemned(&self, job_id: u64, attempts: u32) -> Result<()> {
        sqlx::query("UPDATE jobs SET attempts = MAX(attempts, ?), updated_at = ? WHERE job_id = ?")
            .bind(i64::from(attempts))
            .bind(now())
            .bind(id(job_id)?)
            .execute(&self.pool)
            .await
            .context("recording a job not to be run again in the journal")?;
        Ok(())
    }

    /// Moves an open job to `stage` (with `reason` for an ending other than `committed`).
    pub async fn finish(&self, job_id: u64, stage: Stage, reason: Option<&str>) -> Result<()> {
        sqlx::query(
            "UPDATE jobs SET stage = ?, reason = ?, updated_at = ? WHERE job_id = ? \
             AND stage IN ('running', 'computed')",
        )
        .bind(stage.as_str())
        .bind(reason)
        .bind(now())
        .bind(id(job_id)?)
        .execute(&self.pool)
        .await
        .context("updating the journal")?;
        Ok(())
    }

    /// Takes a job that ended refused, dropped or failed again (the chain now assigns it to
    /// this worker): back to `running`. A computed or committed job is left as it is.
    ///
    /// Its hashes and deadline become the ones given, which the caller checked against the
    /// chain: an entry ended on a coordinator's offer that was refused before anything was
    /// checked (a job not this worker's, or a lying coordinator's) holds the offer's values,
    /// and keeping them would refuse the real assignment's input as not matching, every time.
    pub async fn reopen(
        &self,
        job_id: u64,
        model_hash: Digest,
        input_hash: Digest,
        deadline: u64,
    ) -> Result<()> {
        let mut tx = self
            .pool
            .begin()
            .await
            .context("starting a journal transaction")?;
        let reopened = sqlx::query(
            "UPDATE jobs SET stage = 'running', reason = NULL, output_hash = NULL, receipt = NULL, \
             model_hash = ?, input_hash = ?, deadline = ?, updated_at = ?, items = 1 \
             WHERE job_id = ? AND stage IN ('refused', 'dropped', 'failed')",
        )
        .bind(model_hash.to_string())
        .bind(input_hash.to_string())
        .bind(id(deadline)?)
        .bind(now())
        .bind(id(job_id)?)
        .execute(&mut *tx)
        .await
        .context("reopening a job in the journal")?
        .rows_affected();
        if reopened > 0 {
            // A batch taken again starts afresh: its manifest is read again.
            sqlx::query("DELETE FROM batch_items WHERE job_id = ?")
                .bind(id(job_id)?)
                .execute(&mut *tx)
                .await
                .context("reopening a batch in the journal")?;
        }
        tx.commit().await.context("committing a reopening")?;
        Ok(())
    }

    /// The output on disk of a computed job.
    pub async fn output(&self, job_id: u64) -> Result<Vec<u8>> {
        let path = self.output_path(job_id);
        tokio::fs::read(&path)
            .await
            .with_context(|| format!("reading {}", path.display()))
    }

    /// One job's entry.
    pub async fn entry(&self, job_id: u64) -> Result<Option<Entry>> {
        let row = sqlx::query("SELECT * FROM jobs WHERE job_id = ?")
            .bind(id(job_id)?)
            .fetch_optional(&self.pool)
            .await
            .context("reading the journal")?;
        row.map(|r| entry_of(&r)).transpose()
    }

    /// Jobs still running or computed, oldest first.
    pub async fn open_jobs(&self) -> Result<Vec<Entry>> {
        let rows = sqlx::query(
            "SELECT * FROM jobs WHERE stage IN ('running', 'computed') ORDER BY job_id",
        )
        .fetch_all(&self.pool)
        .await
        .context("reading the journal")?;
        rows.iter().map(entry_of).collect()
    }

    /// Removes from `outputs/` what no job will read again: the output of a job committed at
    /// least `keep` ago (a dispute may still want it before), of a job that ended without a
    /// commit (refused, dropped or failed: nothing on chain names it, and a job taken again
    /// computes its output again), whenever it ended, and a staged write
    /// (`.tmp`) a crash in [`Journal::computed`] left (each file is looked at while no output
    /// is being written). A computed job's output is what it commits and stays; a file the
    /// journal does not name is not this journal's and stays. The work is one lookup per file
    /// present. How many files were removed.
    pub async fn prune_outputs(&self, keep: std::time::Duration) -> Result<u64> {
        let cutoff = now().saturating_sub(i64::try_from(keep.as_secs()).unwrap_or(i64::MAX));
        let mut dir = tokio::fs::read_dir(&self.outputs)
            .await
            .with_context(|| format!("listing {}", self.outputs.display()))?;
        let mut removed = 0;
        while let Some(file) = dir
            .next_entry()
            .await
            .with_context(|| format!("listing {}", self.outputs.display()))?
        {
            let name = file.file_name();
            let Some((stem, extension)) = name.to_str().and_then(|n| n.split_once('.')) else {
                continue;
            };
            let Ok(job_id) = stem.parse::<u64>() else {
                continue;
            };
            let _files = self.files.lock().await;
            let row = sqlx::query("SELECT stage, updated_at FROM jobs WHERE job_id = ?")
                .bind(id(job_id)?)
                .fetch_optional(&self.pool)
                .await
                .context("reading the journal")?;
            let Some(row) = row else { continue };
            let stage = Stage::parse(&row.try_get::<String, _>("stage")?)?;
            let updated_at: i64 = row.try_get("updated_at")?;
            let unused = match extension {
                // (A batch's item outputs, `{job}.{position}.item`, go by the job's rule.)
                "safetensors" => {
                    !stage.is_open() && (stage != Stage::Committed || updated_at <= cutoff)
                }
                e if e.ends_with(".item") => {
                    !stage.is_open() && (stage != Stage::Committed || updated_at <= cutoff)
                }
                // No write is under way (the lock): a crash left it.
                e if e == "tmp" || e.ends_with(".tmp") => true,
                _ => false,
            };
            if !unused {
                continue;
            }
            match tokio::fs::remove_file(file.path()).await {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("removing {}", file.path().display()))
                }
            }
        }
        Ok(removed)
    }

    /// Forgets the jobs that ended (committed, refused, dropped or failed) at least `keep` ago
    /// and whose deadline (chain seconds) passed by now: past its deadline a job takes no
    /// result on chain, so no offer of it can be taken again, and its row (a commit, a
    /// refusal) guards nothing. A job still open (running, or computed and not committed: its
    /// crash count, its output) stays, whatever its age. Run after [`Journal::prune_outputs`]
    /// with the same `keep`, which has removed these jobs' outputs (a file whose job the
    /// journal no longer names would stay). How many rows were removed.
    pub async fn prune_rows(&self, keep: std::time::Duration) -> Result<u64> {
        let now = now();
        let cutoff = now.saturating_sub(i64::try_from(keep.as_secs()).unwrap_or(i64::MAX));
        let _files = self.files.lock().await;
        let removed = sqlx::query(
            "DELETE FROM jobs WHERE stage NOT IN (?, ?) AND updated_at <= ? AND deadline < ?",
        )
        .bind(Stage::Running.as_str())
        .bind(Stage::Computed.as_str())
        .bind(cutoff)
        .bind(now)
        .execute(&self.pool)
        .await
        .context("pruning the journal's rows")?;
        sqlx::query(
            "DELETE FROM batch_items WHERE NOT EXISTS \
             (SELECT 1 FROM jobs j WHERE j.job_id = batch_items.job_id)",
        )
        .execute(&self.pool)
        .await
        .context("pruning the journal's batch items")?;
        Ok(removed.rows_affected())
    }

    /// The most recent jobs, newest first.
    pub async fn recent(&self, limit: u32) -> Result<Vec<Entry>> {
        let rows = sqlx::query("SELECT * FROM jobs ORDER BY updated_at DESC, job_id DESC LIMIT ?")
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .context("reading the journal")?;
        rows.iter().map(entry_of).collect()
    }
}

fn entry_of(row: &sqlx::sqlite::SqliteRow) -> Result<Entry> {
    let digest = |name: &str| -> Result<Digest> {
        let text: String = row.try_get(name)?;
        text.parse()
            .map_err(|e| anyhow::anyhow!("journal {name}: {e:?}"))
    };
    let output_hash: Option<String> = row.try_get("output_hash")?;
    Ok(Entry {
        job_id: u64::try_from(row.try_get::<i64, _>("job_id")?)?,
        model_hash: digest("model_hash")?,
        input_hash: digest("input_hash")?,
        deadline: u64::try_from(row.try_get::<i64, _>("deadline")?)?,
        stage: Stage::parse(&row.try_get::<String, _>("stage")?)?,
        output_hash: output_hash
            .map(|t| {
                t.parse()
                    .map_err(|e| anyhow::anyhow!("journal output_hash: {e:?}"))
            })
            .transpose()?,
        receipt: row.try_get("receipt")?,
        reason: row.try_get("reason")?,
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
        items: u64::try_from(row.try_get::<i64, _>("items")?).unwrap_or(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_computed_output_survives_a_reopen_and_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let (model, input) = (Digest::of(b"model"), Digest::of(b"input"));
        {
            let journal = Journal::open(dir.path()).await.unwrap();
            let entry = journal.begin(7, model, input, 100).await.unwrap();
            assert_eq!(entry.stage, Stage::Running);
            journal
                .computed(7, b"first output", Digest::of(b"first output"), "{}")
                .await
                .unwrap();
            // A second computation of the same job (a race or a bug) changes nothing.
            journal
                .computed(7, b"other output", Digest::of(b"other output"), "{}")
                .await
                .unwrap();
        }
        let journal = Journal::open(dir.path()).await.unwrap();
        let open = journal.open_jobs().await.unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].stage, Stage::Computed);
        assert_eq!(open[0].output_hash, Some(Digest::of(b"first output")));
        assert_eq!(journal.output(7).await.unwrap(), b"first output");
        // Taking it again keeps what is recorded.
        let again = journal.begin(7, model, input, 100).await.unwrap();
        assert_eq!(again.stage, Stage::Computed);
        journal.finish(7, Stage::Committed, None).await.unwrap();
        journal
            .finish(7, Stage::Failed, Some("late"))
            .await
            .unwrap();
        let done = journal.entry(7).await.unwrap().unwrap();
        assert_eq!(
            done.stage,
            Stage::Committed,
            "a committed job stays committed"
        );
        assert!(journal.open_jobs().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_forward_pass_the_process_did_not_survive_stays_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (model, input) = (Digest::of(b"model"), Digest::of(b"input"));
        {
            let journal = Journal::open(dir.path()).await.unwrap();
            journal.begin(3, model, input, 100).await.unwrap();
            // A pass that returned (an error) leaves no count; one that did not, does.
            assert_eq!(journal.forward_started(3).await.unwrap(), 1);
            journal.forward_returned(3).await.unwrap();
            assert_eq!(journal.forward_started(3).await.unwrap(), 1);
            // (the process dies here)
        }
        let journal = Journal::open(dir.path()).await.unwrap();
        let open = journal.open_jobs().await.unwrap();
        assert_eq!((open[0].job_id, open[0].attempts), (3, 1));
        assert_eq!(journal.forward_started(3).await.unwrap(), 2);
        // An output clears it; a job not running counts nothing.
        journal
            .computed(3, b"out", Digest::of(b"out"), "{}")
            .await
            .unwrap();
        assert_eq!(journal.entry(3).await.unwrap().unwrap().attempts, 0);
        assert!(journal.forward_started(3).await.is_err());
    }

    #[tokio::test]
    async fn a_journal_from_before_attempts_gains_the_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        {
            let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
                .unwrap()
                .create_if_missing(true);
            let pool = SqlitePoolOptions::new()
                .connect_with(options)
                .await
                .unwrap();
            sqlx::query(
                "CREATE TABLE jobs (job_id INTEGER PRIMARY KEY, model_hash TEXT NOT NULL, \
                 input_hash TEXT NOT NULL, deadline INTEGER NOT NULL, stage TEXT NOT NULL, \
                 output_hash TEXT, receipt TEXT, reason TEXT, updated_at INTEGER NOT NULL)",
            )
            .execute(&pool)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO jobs (job_id, model_hash, input_hash, deadline, stage, updated_at) \
                 VALUES (5, ?, ?, 100, 'running', 0)",
            )
            .bind(Digest::of(b"model").to_string())
            .bind(Digest::of(b"input").to_string())
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
        let journal = Journal::open(dir.path()).await.unwrap();
        assert_eq!(journal.open_jobs().await.unwrap()[0].attempts, 0);
        assert_eq!(journal.forward_started(5).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_journal_serves_only_the_deployment_it_was_made_for() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).await.unwrap();
        journal.bind("0x534e/0x1").await.unwrap();
        journal.bind("0x534e/0x1").await.unwrap();
        let other = journal.bind("0x534e/0x2").await.unwrap_err().to_string();
        assert!(other.contains("another deployment (0x534e/0x1)"), "{other}");
        // Reopened, it still knows.
        drop(journal);
        let journal = Journal::open(dir.path()).await.unwrap();
        assert!(journal.bind("0x534e/0x2").await.is_err());
        journal.bind("0x534e/0x1").await.unwrap();
    }

    #[tokio::test]
    async fn a_refused_job_can_be_taken_again_but_a_committed_one_cannot() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).await.unwrap();
        let (model, input) = (Digest::of(b"model"), Digest::of(b"input"));
        journal.begin(1, model, input, 100).await.unwrap();
        journal
            .finish(1, Stage::Refused, Some("not ours"))
            .await
            .unwrap();
        // (taken again with the values the chain holds, not the refused offer's)
        let checked = Digest::of(b"the chain's input");
        journal.reopen(1, model, checked, 200).await.unwrap();
        let again = journal.entry(1).await.unwrap().unwrap();
        assert_eq!((again.stage, again.reason), (Stage::Running, None));
        assert_eq!((again.input_hash, again.deadline), (checked, 200));
        journal.begin(2, model, input, 100).await.unwrap();
        journal
            .computed(2, b"out", Digest::of(b"out"), "{}")
            .await
            .unwrap();
        journal.finish(2, Stage::Committed, None).await.unwrap();
        journal.reopen(2, model, input, 100).await.unwrap();
        assert_eq!(
            journal.entry(2).await.unwrap().unwrap().stage,
            Stage::Committed
        );
    }

    #[tokio::test]
    async fn pruning_removes_only_outputs_no_job_will_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).await.unwrap();
        let (model, input) = (Digest::of(b"model"), Digest::of(b"input"));
        // 1 committed and 2 failed long ago, 3 computed long ago (not committed yet), 4
        // committed just now, 5 running with a write a crash left, 6 failed just now (an
        // output never committed: not kept for disputes).
        for job in 1..=6 {
            journal.begin(job, model, input, 100).await.unwrap();
        }
        for job in [1, 2, 3, 4, 6] {
            let output = format!("output {job}");
            journal
                .computed(job, output.as_bytes(), Digest::of(output.as_bytes()), "{}")
                .await
                .unwrap();
        }
        journal.finish(1, Stage::Committed, None).await.unwrap();
        journal
            .finish(2, Stage::Failed, Some("refused"))
            .await
            .unwrap();
        journal.finish(4, Stage::Committed, None).await.unwrap();
        journal
            .finish(6, Stage::Failed, Some("the upload was refused"))
            .await
            .unwrap();
        sqlx::query("UPDATE jobs SET updated_at = ? WHERE job_id IN (1, 2, 3)")
            .bind(now() - 8 * 86_400)
            .execute(&journal.pool)
            .await
            .unwrap();
        let outputs = dir.path().join("outputs");
        std::fs::write(journal.output_path(5).with_extension("tmp"), b"half").unwrap();
        std::fs::write(outputs.join("99.safetensors"), b"not in the journal").unwrap();
        std::fs::write(outputs.join("notes.txt"), b"not the journal's").unwrap();

        let week = std::time::Duration::from_secs(7 * 86_400);
        assert_eq!(journal.prune_outputs(week).await.unwrap(), 4);
        let mut left: Vec<String> = std::fs::read_dir(&outputs)
            .unwrap()
            .map(|f| f.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "3.safetensors",
                "4.safetensors",
                "99.safetensors",
                "notes.txt"
            ]
        );
        // The computed job's output is still what it commits.
        assert_eq!(journal.output(3).await.unwrap(), b"output 3");
        assert_eq!(journal.prune_outputs(week).await.unwrap(), 0);
        // With nothing kept, the recently committed one goes too; the computed one stays.
        assert_eq!(
            journal
                .prune_outputs(std::time::Duration::ZERO)
                .await
                .unwrap(),
            1
        );
        assert!(journal.output_path(3).exists());
        assert!(!journal.output_path(4).exists());
    }

    /// Rows go once their job ended at least `keep` ago and its deadline passed; an open job
    /// (running: its crash count; computed: its output to commit) stays however old, and so
    /// does an ended one whose deadline is still ahead (an offer of it could come again).
    #[tokio::test]
    async fn ended_jobs_past_their_deadline_are_forgotten_after_the_keep_time_and_open_ones_never()
    {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).await.unwrap();
        let (model, input) = (Digest::of(b"model"), Digest::of(b"input"));
        let far = u64::try_from(now()).unwrap() + 86_400;
        for (job, deadline) in [(1, 100), (2, 100), (3, 100), (4, 100), (5, far), (6, 100)] {
            journal.begin(job, model, input, deadline).await.unwrap();
        }
        journal
            .computed(2, b"output 2", Digest::of(b"output 2"), "{}")
            .await
            .unwrap();
        journal.finish(3, Stage::Committed, None).await.unwrap();
        journal
            .finish(4, Stage::Refused, Some("not ours"))
            .await
            .unwrap();
        journal
            .finish(5, Stage::Refused, Some("not ours"))
            .await
            .unwrap();
        journal.finish(6, Stage::Dropped, None).await.unwrap();
        sqlx::query("UPDATE jobs SET updated_at = ? WHERE job_id IN (1, 2, 3, 4, 5)")
            .bind(now() - 8 * 86_400)
            .execute(&journal.pool)
            .await
            .unwrap();
        let week = std::time::Duration::from_secs(7 * 86_400);
        assert_eq!(journal.prune_rows(week).await.unwrap(), 2);
        let left: Vec<u64> =
            sqlx::query_scalar::<_, i64>("SELECT job_id FROM jobs ORDER BY job_id")
                .fetch_all(&journal.pool)
                .await
                .unwrap()
                .into_iter()
                .map(|id| id as u64)
                .collect();
        // 1 running and 2 computed (open), 5 (its deadline ahead), 6 (ended within the week).
        assert_eq!(left, [1, 2, 5, 6]);
        assert_eq!(journal.prune_rows(week).await.unwrap(), 0);
        assert_eq!(journal.output(2).await.unwrap(), b"output 2");
    }
}
