//! Batch jobs' leases and progress: one `jobs` row per job. Every change to a lease is one
//! conditional `update` on the primary, so two instances cannot both hold it: the one whose
//! update changed the row has it.

use async_trait::async_trait;
use time::OffsetDateTime;

use ports::{JobLease, JobLeases, JobProgress, JobState, JobWrites, StoreError};

use crate::SqlUnitOfWork;
use crate::backend::Backend;
use crate::sql::sql;
use crate::{Columns, SqlStore};

/// A `jobs` row.
///
/// # Errors
/// [`StoreError::Other`] for a column that does not decode.
pub fn job_state(row: &impl Columns) -> Result<JobState, StoreError> {
    Ok(JobState {
        name: row.text("name")?,
        holder: row.opt_text("holder")?,
        lease_until: row.opt_time("lease_until")?,
        cursor: row.opt_text("resume_after")?,
        run_started_at: row.opt_time("run_started_at")?,
        last_finished_at: row.opt_time("last_finished_at")?,
        rows_done: row.int("rows_done")?,
        rows_failed: row.int("rows_failed")?,
    })
}

#[async_trait]
impl<B: Backend> JobLeases for SqlStore<B> {
    async fn acquire(
        &self,
        job: &str,
        holder: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<Option<JobLease>, StoreError> {
        let mut conn = self.primary().await?;
        sql(
            "insert into jobs (name, rows_done, rows_failed, created_at, updated_at) values (?, 0, 0, ?, ?) \
             {skip_duplicate}",
        )
        .text(job)
        .time(now)
        .time(now)
        .insert_unless_duplicate(&mut conn)
        .await?;
        // A new run (no cursor) starts its counts and clock; a resumed one keeps them.
        let taken = sql("update jobs set holder = ?, lease_until = ?, updated_at = ?, \
             run_started_at = case when resume_after is null then ? else run_started_at end, \
             rows_done = case when resume_after is null then 0 else rows_done end, \
             rows_failed = case when resume_after is null then 0 else rows_failed end \
             where name = ? and (holder is null or holder = ? or lease_until <= ?)")
        .text(holder)
        .time(until)
        .time(now)
        .time(now)
        .text(job)
        .text(holder)
        .time(now)
        .execute(&mut conn)
        .await?;
        if taken == 0 {
            return Ok(None);
        }
        let state = sql("select * from jobs where name = ?")
            .text(job)
            .fetch_one(&mut conn, job_state)
            .await?;
        Ok(Some(JobLease {
            cursor: state.cursor,
            run_started_at: state.run_started_at.unwrap_or(now),
        }))
    }

    async fn finish(&self, job: &str, holder: &str, now: OffsetDateTime) -> Result<bool, StoreError> {
        let finished = sql(
            "update jobs set holder = null, lease_until = null, resume_after = null, last_finished_at = ?, \
             updated_at = ? where name = ? and holder = ?",
        )
        .time(now)
        .time(now)
        .text(job)
        .text(holder)
        .execute(&mut self.primary().await?)
        .await?;
        Ok(finished > 0)
    }

    async fn release(&self, job: &str, holder: &str) -> Result<(), StoreError> {
        sql("update jobs set holder = null, lease_until = null where name = ? and holder = ?")
            .text(job)
            .text(holder)
            .execute(&mut self.primary().await?)
            .await?;
        Ok(())
    }

    async fn job_states(&self) -> Result<Vec<JobState>, StoreError> {
        sql("select * from jobs order by name")
            .fetch_all(&mut self.primary().await?, job_state)
            .await
    }
}

#[async_trait]
impl<B: Backend> JobWrites for SqlUnitOfWork<B> {
    async fn advance<'a>(&mut self, p: &JobProgress<'a>) -> Result<bool, StoreError> {
        let result = sql(
            "update jobs set resume_after = ?, rows_done = rows_done + ?, rows_failed = rows_failed + ?, \
             lease_until = ?, updated_at = ? where name = ? and holder = ?",
        )
        .text(p.cursor)
        .int(p.done)
        .int(p.failed)
        .time(p.lease_until)
        .time(OffsetDateTime::now_utc())
        .text(p.job)
        .text(p.holder)
        .execute(&mut self.conn()?)
        .await;
        self.track(result).map(|changed| changed > 0)
    }
}
