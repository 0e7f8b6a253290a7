//! Leader election over the database: exactly one replica at a time runs the indexer, the
//! matcher and the keepers. The lease is a row (`leases`, name `leader`) holding its holder, an
//! expiry and an **epoch** that grows with every change of holder.
//!
//! A replica takes the lease when it is free or expired, renews it while it holds it, and
//! steps down when a renewal fails. A deposed leader that has not noticed yet cannot corrupt
//! the index: every index write checks, in its own transaction, that the writer's epoch is
//! still the lease's ([`Store::apply_fenced`]). Its chain transactions cannot be fenced that
//! way, and the contracts are the guard: they refuse to assign a job twice or finalize it
//! twice, and `release_job` names the assignment it was decided against (its worker and its
//! time), so a deposed leader's late release cannot undo the new leader's next assignment of
//! the job, to another worker or to the same one. The
//! operator also sends nothing once its lease has less than a third of its time left or the
//! lease task lost it (see `operator::may_send`), which keeps a deposed leader's late
//! transactions rare.
//!
//! The expiry is on the database's rows but counted by each replica's clock: replicas'
//! clocks must agree to well within the lease (NTP does).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use sqlx::Row;

use crate::store::{i64_of, u64_of, Batch, Store};

/// The lease's name.
pub(crate) const LEADER: &str = "leader";

/// A held lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The epoch this replica leads in.
    pub epoch: u64,
    /// Until when (unix milliseconds) it holds unless renewed.
    pub expires_at_ms: u64,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Store {
    /// Takes or renews the leader lease for `holder` for `ttl`. `Some` if `holder` leads now:
    /// a renewal keeps the epoch, a takeover increments it. `None` if another replica holds
    /// an unexpired lease.
    pub async fn acquire_leadership(&self, holder: &str, ttl: Duration) -> Result<Option<Lease>> {
        let now = now_ms();
        let expires = now + u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX / 2);
        let mut tx = self.pool.begin().await.context("starting a transaction")?;
        // Renewal by the holder, or takeover of an expired lease (the epoch moves).
        let changed = sqlx::query(
            "UPDATE leases SET epoch = CASE WHEN holder = $1 AND expires_at_ms >= $2 \
             THEN epoch ELSE epoch + 1 END, holder = $1, expires_at_ms = $3 \
             WHERE name = $4 AND (holder = $1 OR expires_at_ms < $2)",
        )
        .bind(holder)
        .bind(i64_of(now, "now")?)
        .bind(i64_of(expires, "expiry")?)
        .bind(LEADER)
        .execute(&mut *tx)
        .await
        .context("taking the leader lease")?;
        if changed.rows_affected() == 0 {
            tx.rollback().await.ok();
            return Ok(None);
        }
        let row = sqlx::query("SELECT epoch FROM leases WHERE name = $1")
            .bind(LEADER)
            .fetch_one(&mut *tx)
            .await
            .context("reading the leader lease")?;
        tx.commit().await.context("committing the leader lease")?;
        Ok(Some(Lease {
            epoch: u64_of(row.try_get("epoch")?, "epoch")?,
            expires_at_ms: expires,
        }))
    }

    /// Gives the lease up (on shutdown), so another replica takes over at once.
    pub async fn release_leadership(&self, holder: &str) -> Result<()> {
        sqlx::query("UPDATE leases SET expires_at_ms = 0 WHERE name = $1 AND holder = $2")
            .bind(LEADER)
            .bind(holder)
            .execute(&self.pool)
            .await
            .context("releasing the leader lease")?;
        Ok(())
    }

    /// The current holder and epoch.
    pub async fn leader(&self) -> Result<(String, u64)> {
        let row = sqlx::query("SELECT holder, epoch FROM leases WHERE name = $1")
            .bind(LEADER)
            .fetch_one(&self.pool)
            .await
            .context("reading the leader lease")?;
        Ok((
            row.try_get("holder")?,
            u64_of(row.try_get("epoch")?, "epoch")?,
        ))
    }

    /// [`Store::apply`], refused unless `holder` still leads in `epoch` (checked in the same
    /// transaction: a deposed leader writes nothing).
    pub async fn apply_fenced(&self, batch: &Batch, holder: &str, epoch: u64) -> Result<()> {
        self.apply_checked(batch, Some((holder, epoch))).await
    }
}
