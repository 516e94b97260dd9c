//! Scheduled batch jobs that stay out of daytime traffic's way.
//!
//! A job ([`BatchJob`]) is a keyed work list, read from a replica, worked in chunks: each
//! chunk is one unit of work on the primary that re-checks its items under their locks, does
//! the work, and records the job's progress ([`Progress::record`]) in the same transaction.
//! The [`JobRunner`] around it
//! - runs a job on one instance at a time, under a lease in the database ([`JobLeases`]),
//!   extended by every chunk and taken over by another instance once its holder's lease
//!   runs out (the holder died);
//! - resumes a run after the last committed chunk (the progress row's cursor), whoever
//!   runs it next;
//! - paces itself to `max_rows_per_second`;
//! - exports progress: `job_rows_total{batch,outcome}`, `job_rows_left{batch}`,
//!   `job_runs_total{batch,outcome}`, `job_last_finished_timestamp_seconds{batch}`.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use governor::{Quota, RateLimiter};
use time::OffsetDateTime;

use ports::{Clock, JobLeases, JobProgress, StoreError, UnitOfWork};

/// How every batch job runs (`[jobs]` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSettings {
    /// Items per chunk (one transaction).
    pub chunk_size: i64,
    /// Items per second a job works at most; 0: as fast as it can.
    pub max_rows_per_second: u32,
    /// How long a lease lasts without a committed chunk: how soon another instance takes
    /// over a job whose holder died.
    pub lease: Duration,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            chunk_size: 100,
            max_rows_per_second: 500,
            lease: Duration::from_secs(60),
        }
    }
}

/// Why a run stopped before the end of its work list.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The store failed; the run resumes from its last chunk next time.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another instance took the lease over (this one was too slow to extend it): the
    /// chunk was rolled back, and the other instance goes on.
    #[error("the job's lease was taken over by another instance")]
    LeaseLost,
    /// A use case's own error, described.
    #[error("{0}")]
    Failed(String),
}

/// The key a work list resumes after, parsed from the job's cursor (`None`: from the start).
///
/// # Errors
/// [`JobError::Failed`] for a cursor that is no key of this job.
pub fn resume_after<K: std::str::FromStr>(cursor: Option<&str>) -> Result<Option<K>, JobError> {
    cursor
        .map(|key| key.parse().map_err(|_| JobError::Failed(format!("bad cursor {key:?}"))))
        .transpose()
}

/// What a chunk did, as recorded with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a chunk's progress goes back to the runner"]
pub struct Recorded {
    done: i64,
    failed: i64,
}

/// A chunk's handle on its job's progress row.
#[derive(Debug)]
pub struct Progress<'a> {
    job: &'a str,
    holder: &'a str,
    cursor: &'a str,
    lease_until: OffsetDateTime,
}

impl Progress<'_> {
    /// Records the chunk in `uow`, which must then commit: `done` items done and `failed`
    /// left for the next run. [`JobError::LeaseLost`] (roll back) when another instance
    /// holds the lease now.
    ///
    /// # Errors
    /// [`JobError::LeaseLost`], or the store's error.
    pub async fn record(&self, uow: &mut dyn UnitOfWork, done: i64, failed: i64) -> Result<Recorded, JobError> {
        let progress = JobProgress {
            job: self.job,
            holder: self.holder,
            cursor: self.cursor,
            done,
            failed,
            lease_until: self.lease_until,
        };
        if uow.jobs().advance(&progress).await? {
            Ok(Recorded { done, failed })
        } else {
            Err(JobError::LeaseLost)
        }
    }
}

/// A batch job: its work list and how to work one chunk of it.
#[async_trait]
pub trait BatchJob: Send + Sync {
    /// An item of the work list, as read from a replica.
    type Item: Send + Sync;

    /// The job's name (its lease, its metrics' `batch` label).
    fn name(&self) -> &'static str;

    /// The item's key: the work list is in key order, and a run resumes after a key.
    fn key(item: &Self::Item) -> String;

    /// The next items of the work list after `after` (from the start when `None`), at most
    /// `limit`, from a replica. A replica may lag: the chunk re-checks each item on the
    /// primary.
    async fn work_list(
        &self,
        after: Option<&str>,
        limit: i64,
        now: OffsetDateTime,
    ) -> Result<Vec<Self::Item>, JobError>;

    /// How many items are left after `after` (for the `job_rows_left` gauge).
    async fn remaining(&self, after: Option<&str>, now: OffsetDateTime) -> Result<i64, JobError>;

    /// Works `items` in one unit of work, which records `progress` before it commits.
    async fn chunk(&self, items: Vec<Self::Item>, progress: Progress<'_>) -> Result<Recorded, JobError>;
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// Another instance holds the job's lease.
    HeldElsewhere,
    /// The work list was worked to its end.
    Finished {
        /// Items this instance did (a resumed run's earlier holders' are in the job's row).
        done: i64,
        /// Items this instance could not do: they wait for the next run.
        failed: i64,
    },
}

/// Runs batch jobs under their leases, paced.
#[derive(Clone)]
pub struct JobRunner {
    leases: Arc<dyn JobLeases>,
    clock: Arc<dyn Clock>,
    holder: String,
    settings: JobSettings,
}

impl JobRunner {
    /// A runner for this instance, `holder` naming it in the leases it takes.
    pub fn new(leases: Arc<dyn JobLeases>, clock: Arc<dyn Clock>, holder: String, settings: JobSettings) -> Self {
        Self {
            leases,
            clock,
            holder,
            settings,
        }
    }

    /// The instance's name in leases.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    fn lease_until(&self) -> OffsetDateTime {
        self.clock.now() + self.settings.lease
    }

    /// Runs `job` to the end of its work list, if no other instance holds it.
    ///
    /// # Errors
    /// A chunk's or the store's error: the lease is given back (unless it was lost) and the
    /// next run resumes after the last committed chunk.
    pub async fn run<J: BatchJob>(&self, job: &J) -> Result<RunOutcome, JobError> {
        let name = job.name();
        let now = self.clock.now();
        let Some(lease) = self.leases.acquire(name, &self.holder, now, self.lease_until()).await? else {
            return Ok(RunOutcome::HeldElsewhere);
        };
        if lease.cursor.is_some() {
            tracing::info!(job = name, after = ?lease.cursor, "resuming the job's run");
        }
        let result = self.work(job, lease.cursor).await;
        let outcome = match result {
            Ok((done, failed)) => {
                if !self.leases.finish(name, &self.holder, self.clock.now()).await? {
                    return Err(JobError::LeaseLost);
                }
                let finished = self.clock.now().unix_timestamp() as f64;
                metrics::gauge!("job_last_finished_timestamp_seconds", "batch" => name).set(finished);
                metrics::gauge!("job_rows_left", "batch" => name).set(0.0);
                Ok(RunOutcome::Finished { done, failed })
            }
            Err(JobError::LeaseLost) => Err(JobError::LeaseLost),
            Err(error) => {
                if let Err(release) = self.leases.release(name, &self.holder).await {
                    tracing::warn!(job = name, error = %release, "could not give the job's lease back");
                }
                Err(error)
            }
        };
        let label = match &outcome {
            Ok(_) => "finished",
            Err(JobError::LeaseLost) => "lease_lost",
            Err(_) => "failed",
        };
        metrics::counter!("job_runs_total", "batch" => name, "outcome" => label).increment(1);
        outcome
    }

    /// Works chunks from `cursor` on; this holder's counts of done and failed items.
    async fn work<J: BatchJob>(&self, job: &J, mut cursor: Option<String>) -> Result<(i64, i64), JobError> {
        let name = job.name();
        let chunk_size = self.settings.chunk_size.max(1);
        // A burst of one chunk: the first goes at once, each later one when the pace allows.
        let pace = NonZeroU32::new(self.settings.max_rows_per_second).map(|rate| {
            let burst = NonZeroU32::new(u32::try_from(chunk_size).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
            RateLimiter::direct(Quota::per_second(rate).allow_burst(burst))
        });
        let (mut done, mut failed) = (0, 0);
        let left = job.remaining(cursor.as_deref(), self.clock.now()).await?;
        metrics::gauge!("job_rows_left", "batch" => name).set(left as f64);
        loop {
            let items = job.work_list(cursor.as_deref(), chunk_size, self.clock.now()).await?;
            let Some(last) = items.last() else {
                return Ok((done, failed));
            };
            let last = J::key(last);
            if let (Some(pace), Some(n)) = (&pace, NonZeroU32::new(u32::try_from(items.len()).unwrap_or(u32::MAX))) {
                // `n` never exceeds the burst (a chunk's size at most), so this only waits.
                let _ = pace.until_n_ready(n).await;
            }
            let count = items.len() as i64;
            let progress = Progress {
                job: name,
                holder: &self.holder,
                cursor: &last,
                lease_until: self.lease_until(),
            };
            let recorded = job.chunk(items, progress).await?;
            done += recorded.done;
            failed += recorded.failed;
            metrics::counter!("job_rows_total", "batch" => name, "outcome" => "done").increment(recorded.done as u64);
            metrics::counter!("job_rows_total", "batch" => name, "outcome" => "failed")
                .increment(recorded.failed as u64);
            metrics::gauge!("job_rows_left", "batch" => name).decrement(count as f64);
            cursor = Some(last);
        }
    }
}
