//! Scheduled batch jobs: one instance runs a job at a time, under a lease kept in the
//! database; a run records its progress with each chunk it commits, so whoever runs the job
//! next (the same instance after a restart, or another when the holder died and its lease
//! ran out) resumes after the last committed chunk.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::store::StoreError;

/// A lease taken on a job: where its run stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobLease {
    /// The key of the last item the run committed; `None` at the start of a run.
    pub cursor: Option<String>,
    /// When the run began (an earlier holder's, when this one resumes it).
    pub run_started_at: OffsetDateTime,
}

/// A job's row, for metrics and staff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    /// The job's name.
    pub name: String,
    /// Who holds the lease (an instance's id), if anyone.
    pub holder: Option<String>,
    /// Until when the holder's lease lasts.
    pub lease_until: Option<OffsetDateTime>,
    /// See [`JobLease::cursor`].
    pub cursor: Option<String>,
    /// When the current (or last) run began.
    pub run_started_at: Option<OffsetDateTime>,
    /// When the last run that reached the end of its work list finished.
    pub last_finished_at: Option<OffsetDateTime>,
    /// Items done in the current (or last) run.
    pub rows_done: i64,
    /// Items that failed in the current (or last) run (left for the next run).
    pub rows_failed: i64,
}

/// One committed chunk of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobProgress<'a> {
    /// The job.
    pub job: &'a str,
    /// The lease holder recording it.
    pub holder: &'a str,
    /// The key of the chunk's last item.
    pub cursor: &'a str,
    /// Items of the chunk done.
    pub done: i64,
    /// Items of the chunk that failed.
    pub failed: i64,
    /// The lease is extended to this.
    pub lease_until: OffsetDateTime,
}

/// Job leases, outside units of work.
///
/// # Errors (every method)
/// MUST return [`StoreError::Unavailable`] when the primary does not answer in time.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait JobLeases: Send + Sync {
    /// Takes `job`'s lease for `holder` until `until`, when no one holds it, its holder's
    /// lease ran out by `now`, or `holder` holds it already. `None` when someone else does.
    async fn acquire(
        &self,
        job: &str,
        holder: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<Option<JobLease>, StoreError>;
    /// Ends `holder`'s run at the end of its work list: the cursor is cleared, the lease
    /// released and `now` recorded as the last finish. `false` when `holder` had lost it.
    async fn finish(&self, job: &str, holder: &str, now: OffsetDateTime) -> Result<bool, StoreError>;
    /// Gives up `holder`'s lease, keeping the cursor for the next run (shutdown, failure).
    async fn release(&self, job: &str, holder: &str) -> Result<(), StoreError>;
    /// Every job's row, by name.
    async fn job_states(&self) -> Result<Vec<JobState>, StoreError>;
}

/// A job's progress, in the unit of work of the chunk it records.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait JobWrites: Send {
    /// Records a chunk and extends the lease, if `progress.holder` still holds it; `false`
    /// (and nothing written) when it does not, and then the chunk must not commit.
    async fn advance<'a>(&mut self, progress: &JobProgress<'a>) -> Result<bool, StoreError>;
}
