//! Read routing between the primary and the replicas.
//!
//! `Strong` reads go to the primary. `Eventual` reads go to the next healthy replica, round
//! robin. `ReadYourWrites(lsn)` reads go to a healthy replica that has replayed `lsn`: one the
//! last health check saw past it, else one that gets there within `read_your_writes_wait`
//! (polled on the connection the read then uses, so the read sees what the poll saw). Every
//! other case falls back to the primary and is counted by reason. A replica read that fails
//! for the replica's sake (connection lost, replica shutting down, recovery conflict) is run
//! again once on the primary, so a replica dying under load fails no request; a replica that
//! lost its connection is also skipped until its next successful health check.
//!
//! Health comes from a background task per replica that asks, every `health_interval`, for
//! the replica's replay position and lag. A replica is healthy when it answers, is in
//! recovery, and its lag is known and at most `max_replica_lag`.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use futures::future::join_all;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Connection, PgConnection, PgPool, Postgres, Row};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use ports::{CommitToken, Consistency, StoreError};

use sql_store::ReadFuture;

use crate::conn::PgConn;
use crate::{PgConfig, translate};

/// How often a `ReadYourWrites` read asks a replica whether it has replayed the token.
const CATCH_UP_POLL: Duration = Duration::from_millis(10);
/// A replica pool that cannot hand out a connection this fast sends the read to the primary
/// (a dead replica makes the pool retry connecting until its acquire timeout).
const REPLICA_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a replica connection whose query failed has to prove it is still alive.
const PING_TIMEOUT: Duration = Duration::from_millis(250);

/// The replica health query. `lag_seconds` is 0 when everything received has been replayed
/// (an idle primary sends nothing, and the last replay time would then only measure the
/// idleness), else the age of the last replayed commit; NULL (unknown) when nothing was
/// replayed since the replica started.
const HEALTH_SQL: &str = "select pg_is_in_recovery() as in_recovery, \
     pg_last_wal_receive_lsn()::text as receive_lsn, \
     pg_last_wal_replay_lsn()::text as replay_lsn, \
     (case when pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() then 0 \
           else extract(epoch from now() - pg_last_xact_replay_timestamp()) end)::float8 as lag_seconds";

/// A WAL position (`pg_lsn`), as a number so positions compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Lsn(u64);

impl Lsn {
    /// Parses PostgreSQL's `XXXXXXXX/XXXXXXXX` text form.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let (high, low) = text.trim().split_once('/')?;
        let high = u32::from_str_radix(high, 16).ok()?;
        let low = u32::from_str_radix(low, 16).ok()?;
        Some(Self((u64::from(high) << 32) | u64::from(low)))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// Reads served by target and fallbacks to the primary by reason, since the store started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadStats {
    /// Reads run on the primary (including fallbacks).
    pub primary: u64,
    /// Reads run on a replica.
    pub replica: u64,
    /// Replicas are configured but none was healthy.
    pub no_healthy_replica: u64,
    /// No healthy replica replayed a `ReadYourWrites` token in time.
    pub not_caught_up: u64,
    /// A replica failed the read (or its connection) and the primary answered instead.
    pub replica_error: u64,
}

/// What the router knows about one replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaState {
    /// `replica-<n>`, 1-based in `replica_urls` order.
    pub name: String,
    /// Whether reads may go there.
    pub healthy: bool,
    /// The last replay position seen (`pg_last_wal_replay_lsn()`).
    pub replay_lsn: Option<String>,
    /// The last lag measured; `None` when unknown.
    pub lag: Option<Duration>,
    /// Why it is skipped (`down: …`, `lag 3.2s > 2s`, `lag unknown`); `None` when healthy.
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Copy)]
enum Target {
    Primary,
    Replica,
}

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::Primary => "primary",
            Target::Replica => "replica",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Fallback {
    NoHealthyReplica,
    NotCaughtUp,
    ReplicaError,
}

impl Fallback {
    fn label(self) -> &'static str {
        match self {
            Fallback::NoHealthyReplica => "no_healthy_replica",
            Fallback::NotCaughtUp => "not_caught_up",
            Fallback::ReplicaError => "replica_error",
        }
    }
}

/// Where a read runs.
enum Placement {
    Replica(Arc<Replica>, PoolConnection<Postgres>),
    /// On the primary, after a fallback when `Some`.
    Primary(Option<Fallback>),
}

#[derive(Debug, Clone, Default)]
struct Status {
    /// `None` until first checked.
    healthy: Option<bool>,
    replay_lsn: Option<Lsn>,
    lag: Option<Duration>,
    problem: Option<String>,
}

impl Status {
    fn down(detail: impl fmt::Display, replay_lsn: Option<Lsn>) -> Self {
        Self {
            healthy: Some(false),
            replay_lsn,
            lag: None,
            problem: Some(format!("down: {detail}")),
        }
    }
}

/// One replica: its read-only pool and what its health checks found.
pub(crate) struct Replica {
    name: String,
    pool: PgPool,
    /// For the health checker's own connection, so a busy pool cannot starve the checks.
    health_options: PgConnectOptions,
    status: RwLock<Status>,
}

impl Replica {
    /// A lazily connected pool: a replica that is down when the store starts is skipped, not
    /// fatal.
    pub(crate) fn new(name: String, options: PgConnectOptions, config: &PgConfig) -> Self {
        let health_options = options.clone().application_name(&format!("hexride-{name}-health"));
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(config.acquire_timeout.min(REPLICA_ACQUIRE_TIMEOUT))
            .connect_lazy_with(options);
        Self {
            name,
            pool,
            health_options,
            status: RwLock::new(Status {
                problem: Some("not checked yet".to_owned()),
                ..Status::default()
            }),
        }
    }

    fn with_status<R>(&self, f: impl FnOnce(&Status) -> R) -> R {
        f(&self.status.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn state(&self) -> ReplicaState {
        self.with_status(|s| ReplicaState {
            name: self.name.clone(),
            healthy: s.healthy == Some(true),
            replay_lsn: s.replay_lsn.map(|lsn| lsn.to_string()),
            lag: s.lag,
            problem: s.problem.clone(),
        })
    }

    /// Records a new status, logging only transitions (not every check).
    fn set_status(&self, new: Status) {
        let lag = new.lag.map_or(f64::NAN, |lag| lag.as_secs_f64());
        metrics::gauge!("db_replica_lag_seconds", "replica" => self.name.clone()).set(lag);
        let mut status = self.status.write().unwrap_or_else(PoisonError::into_inner);
        let was = status.healthy;
        match (was, new.healthy) {
            (Some(false), Some(true)) => {
                tracing::info!(replica = %self.name, "replica is healthy again: reads return to it")
            }
            (None, Some(true)) => tracing::info!(replica = %self.name, "replica is healthy"),
            (Some(true) | None, Some(false)) => tracing::warn!(
                replica = %self.name,
                problem = new.problem.as_deref().unwrap_or_default(),
                "replica is unhealthy: its reads go to other replicas or the primary"
            ),
            _ => {}
        }
        *status = new;
    }

    /// A read failed on this replica: skip it until a health check finds it well again.
    fn mark_down(&self, detail: impl fmt::Display) {
        let replay_lsn = self.with_status(|s| s.replay_lsn);
        self.set_status(Status::down(detail, replay_lsn));
    }

    /// A poll saw the replica at or past `lsn`: later reads with that token need not poll.
    fn note_replayed(&self, lsn: Lsn) {
        let mut status = self.status.write().unwrap_or_else(PoisonError::into_inner);
        if status.replay_lsn < Some(lsn) {
            status.replay_lsn = Some(lsn);
        }
    }

    /// One health check on `conn` (connected first if needed, dropped if it fails).
    async fn check(&self, conn: &mut Option<PgConnection>, max_lag: Duration, timeout: Duration) {
        let probe = async {
            let mut c = match conn.take() {
                Some(c) => c,
                None => PgConnection::connect_with(&self.health_options).await?,
            };
            let row = sqlx::query(HEALTH_SQL).fetch_one(&mut c).await?;
            Ok::<_, sqlx::Error>((c, row))
        };
        let last_replay = self.with_status(|s| s.replay_lsn);
        let status = match tokio::time::timeout(timeout, probe).await {
            Ok(Ok((c, row))) => {
                *conn = Some(c);
                evaluate(&row, max_lag).unwrap_or_else(|e| Status::down(e, last_replay))
            }
            Ok(Err(e)) => Status::down(e, last_replay),
            Err(_) => Status::down(format_args!("no answer within {}", seconds(timeout)), last_replay),
        };
        self.set_status(status);
    }
}

/// Judges a health-query row against `max_lag`.
fn evaluate(row: &PgRow, max_lag: Duration) -> Result<Status, StoreError> {
    let in_recovery: bool = row.try_get("in_recovery").map_err(translate)?;
    let replay_lsn = row
        .try_get::<Option<String>, _>("replay_lsn")
        .map_err(translate)?
        .as_deref()
        .and_then(Lsn::parse);
    let lag = row
        .try_get::<Option<f64>, _>("lag_seconds")
        .map_err(translate)?
        .filter(|s| s.is_finite())
        // A replica clock a little ahead of the primary's gives a negative age.
        .map(|s| Duration::from_secs_f64(s.max(0.0)));
    let problem = if !in_recovery {
        Some("not a replica: pg_is_in_recovery() is false".to_owned())
    } else {
        match lag {
            None => Some("lag unknown".to_owned()),
            Some(lag) if lag > max_lag => Some(format!("lag {} > {}", seconds(lag), seconds(max_lag))),
            Some(_) => None,
        }
    };
    Ok(Status {
        healthy: Some(problem.is_none()),
        replay_lsn,
        lag,
        problem,
    })
}

/// `3.2s`, `2s`, `0.5s`.
fn seconds(d: Duration) -> String {
    let tenths = (d.as_secs_f64() * 10.0).round() / 10.0;
    if tenths.fract() == 0.0 {
        format!("{tenths:.0}s")
    } else {
        format!("{tenths:.1}s")
    }
}

#[derive(Default)]
struct Counters {
    primary: AtomicU64,
    replica: AtomicU64,
    no_healthy_replica: AtomicU64,
    not_caught_up: AtomicU64,
    replica_error: AtomicU64,
}

/// Routes reads; owns the replicas.
pub(crate) struct Router {
    primary: PgPool,
    replicas: Vec<Arc<Replica>>,
    /// Round-robin cursor.
    next: AtomicUsize,
    counters: Counters,
    read_your_writes_wait: Duration,
    max_replica_lag: Duration,
    health_interval: Duration,
}

impl Router {
    pub(crate) fn new(primary: PgPool, replicas: Vec<Arc<Replica>>, config: &PgConfig) -> Self {
        Self {
            primary,
            replicas,
            next: AtomicUsize::new(0),
            counters: Counters::default(),
            read_your_writes_wait: config.read_your_writes_wait,
            max_replica_lag: config.max_replica_lag,
            health_interval: config.health_interval.max(Duration::from_millis(10)),
        }
    }

    pub(crate) fn replica_count(&self) -> usize {
        self.replicas.len()
    }

    /// A health check is given twice the interval, within [0.5 s, 3 s].
    fn health_timeout(&self) -> Duration {
        (self.health_interval * 2).clamp(Duration::from_millis(500), Duration::from_secs(3))
    }

    /// Checks every replica once, at once (at start-up, so reads are routed from the first).
    pub(crate) async fn check_replicas_once(&self) {
        let timeout = self.health_timeout();
        join_all(
            self.replicas
                .iter()
                .map(|replica| async move { replica.check(&mut None, self.max_replica_lag, timeout).await }),
        )
        .await;
    }

    /// One health-check task per replica, until `shutdown` says stop (or is dropped).
    pub(crate) fn spawn_health_checks(&self, shutdown: &watch::Sender<bool>) -> Vec<JoinHandle<()>> {
        self.replicas
            .iter()
            .map(|replica| {
                let replica = Arc::clone(replica);
                let mut shutdown = shutdown.subscribe();
                let (interval, max_lag, timeout) = (self.health_interval, self.max_replica_lag, self.health_timeout());
                tokio::spawn(async move {
                    let mut conn = None;
                    let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
                    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
                    loop {
                        tokio::select! {
                            _ = ticker.tick() => replica.check(&mut conn, max_lag, timeout).await,
                            _ = shutdown.changed() => return,
                        }
                    }
                })
            })
            .collect()
    }

    pub(crate) async fn close(&self) {
        join_all(self.replicas.iter().map(|replica| replica.pool.close())).await;
    }

    pub(crate) fn stats(&self) -> ReadStats {
        let c = &self.counters;
        ReadStats {
            primary: c.primary.load(Ordering::Relaxed),
            replica: c.replica.load(Ordering::Relaxed),
            no_healthy_replica: c.no_healthy_replica.load(Ordering::Relaxed),
            not_caught_up: c.not_caught_up.load(Ordering::Relaxed),
            replica_error: c.replica_error.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn replica_states(&self) -> Vec<ReplicaState> {
        self.replicas.iter().map(|replica| replica.state()).collect()
    }

    pub(crate) fn replica_pool(&self, index: usize) -> Option<PgPool> {
        self.replicas.get(index).map(|replica| replica.pool.clone())
    }

    fn count(&self, target: Target) {
        let counter = match target {
            Target::Primary => &self.counters.primary,
            Target::Replica => &self.counters.replica,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("db_reads_total", "target" => target.label()).increment(1);
    }

    fn fallback(&self, reason: Fallback) {
        let counter = match reason {
            Fallback::NoHealthyReplica => &self.counters.no_healthy_replica,
            Fallback::NotCaughtUp => &self.counters.not_caught_up,
            Fallback::ReplicaError => &self.counters.replica_error,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("db_read_fallbacks_total", "reason" => reason.label()).increment(1);
    }

    /// Runs `query` where `consistency` allows, falling back to the primary as described in
    /// the module header.
    pub(crate) async fn read<A, T, F>(&self, consistency: &Consistency, args: A, query: F) -> Result<T, StoreError>
    where
        A: Send + Sync,
        F: for<'c> Fn(&'c mut PgConn, &'c A) -> ReadFuture<'c, T> + Send + Sync,
        T: Send,
    {
        let placement = match consistency {
            Consistency::Strong => Placement::Primary(None),
            Consistency::Eventual => self.place_eventual().await,
            Consistency::ReadYourWrites(token) => self.place_caught_up(token).await,
        };
        let (replica, mut conn) = match placement {
            Placement::Replica(replica, conn) => (replica, PgConn::new(conn)),
            Placement::Primary(fallback) => {
                if let Some(reason) = fallback {
                    self.fallback(reason);
                }
                return self.on_primary(&args, &query).await;
            }
        };
        let result = query(&mut conn, &args).await;
        let retry = match &result {
            // Replaying WAL cancelled the query (a recovery conflict): the replica is fine.
            Err(StoreError::Concurrency) => true,
            // The replica has not replayed a migration yet: the primary has the schema.
            Err(StoreError::SchemaMissing(_)) => true,
            // The connection or the server is gone, unless the connection still answers:
            // then the query itself timed out, and would only time out on the primary too.
            Err(StoreError::Unavailable(_)) => {
                let alive = tokio::time::timeout(PING_TIMEOUT, conn.inner().ping()).await;
                let dead = !matches!(alive, Ok(Ok(())));
                if dead {
                    replica.mark_down(result.as_ref().err().map(StoreError::chain).unwrap_or_default());
                }
                dead
            }
            _ => false,
        };
        if !retry {
            self.count(Target::Replica);
            return result;
        }
        drop(conn);
        tracing::debug!(replica = %replica.name, error = ?result.err(), "replica read failed, reading the primary");
        self.fallback(Fallback::ReplicaError);
        self.on_primary(&args, &query).await
    }

    /// Waits until every replica that answers has replayed `lsn`, up to `max_wait`; a replica
    /// that does not answer or stays behind is logged and left to the health checks.
    pub(crate) async fn wait_for_replay(&self, lsn: &str, max_wait: Duration) {
        let deadline = tokio::time::Instant::now() + max_wait;
        for replica in &self.replicas {
            loop {
                let replayed = sqlx::query_scalar::<_, bool>("select pg_last_wal_replay_lsn() >= $1::pg_lsn")
                    .bind(lsn)
                    .fetch_one(&replica.pool);
                match tokio::time::timeout(Duration::from_secs(2), replayed).await {
                    Ok(Ok(true)) => break,
                    Ok(Ok(false)) if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    outcome => {
                        tracing::warn!(replica = %replica.name, ?outcome, %lsn, "replica has not replayed the migrations");
                        break;
                    }
                }
            }
        }
    }

    async fn on_primary<A, T, F>(&self, args: &A, query: &F) -> Result<T, StoreError>
    where
        F: for<'c> Fn(&'c mut PgConn, &'c A) -> ReadFuture<'c, T> + Send + Sync,
    {
        let mut conn = PgConn::new(self.primary.acquire().await.map_err(translate)?);
        self.count(Target::Primary);
        query(&mut conn, args).await
    }

    /// The next healthy replica (round robin) whose status also passes `wanted`.
    fn pick(&self, wanted: impl Fn(&Status) -> bool) -> Option<Arc<Replica>> {
        let n = self.replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| &self.replicas[start.wrapping_add(i) % n])
            .find(|replica| replica.with_status(|s| s.healthy == Some(true) && wanted(s)))
            .cloned()
    }

    async fn connect_to(&self, replica: Arc<Replica>) -> Placement {
        match replica.pool.acquire().await {
            Ok(conn) => Placement::Replica(replica, conn),
            Err(e) => {
                // A timeout may only mean the pool is busy; anything else means the replica
                // cannot be reached.
                if !matches!(e, sqlx::Error::PoolTimedOut) {
                    replica.mark_down(&e);
                }
                Placement::Primary(Some(Fallback::ReplicaError))
            }
        }
    }

    async fn place_eventual(&self) -> Placement {
        if self.replicas.is_empty() {
            return Placement::Primary(None);
        }
        match self.pick(|_| true) {
            Some(replica) => self.connect_to(replica).await,
            None => Placement::Primary(Some(Fallback::NoHealthyReplica)),
        }
    }

    async fn place_caught_up(&self, token: &CommitToken) -> Placement {
        if self.replicas.is_empty() {
            return Placement::Primary(None);
        }
        // A token this store did not mint (another backend's, or "unknown" after a commit
        // whose position could not be read): only the primary is sure to have the write.
        let Some(lsn) = Lsn::parse(&token.0) else {
            return Placement::Primary(None);
        };
        if let Some(replica) = self.pick(|s| s.replay_lsn >= Some(lsn)) {
            return self.connect_to(replica).await;
        }
        let Some(replica) = self.pick(|_| true) else {
            return Placement::Primary(Some(Fallback::NoHealthyReplica));
        };
        let (replica, mut conn) = match self.connect_to(replica).await {
            Placement::Replica(replica, conn) => (replica, conn),
            primary => return primary,
        };
        let deadline = Instant::now() + self.read_your_writes_wait;
        loop {
            let caught_up = sqlx::query_scalar::<_, Option<bool>>("select pg_last_wal_replay_lsn() >= $1::pg_lsn")
                .bind(lsn.to_string())
                .fetch_one(&mut *conn)
                .await;
            match caught_up {
                Ok(Some(true)) => {
                    replica.note_replayed(lsn);
                    return Placement::Replica(replica, conn);
                }
                Ok(_) => {}
                Err(e) => {
                    drop(conn);
                    replica.mark_down(&e);
                    return Placement::Primary(Some(Fallback::ReplicaError));
                }
            }
            if Instant::now() + CATCH_UP_POLL > deadline {
                return Placement::Primary(Some(Fallback::NotCaughtUp));
            }
            tokio::time::sleep(CATCH_UP_POLL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_parse_compare_and_print_like_pg_lsn() {
        let a = Lsn::parse("0/16B3748").expect("valid");
        let b = Lsn::parse("1/0").expect("valid");
        assert!(a < b);
        assert_eq!(a.to_string(), "0/16B3748");
        assert_eq!(Lsn::parse("1/A0").expect("valid").to_string(), "1/A0");
        assert_eq!(Lsn::parse("FFFFFFFF/FFFFFFFF"), Some(Lsn(u64::MAX)));
        for bad in ["", "12", "x/1", "1/", "unknown", "1/2/3"] {
            assert_eq!(Lsn::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn durations_print_to_a_tenth_of_a_second() {
        assert_eq!(seconds(Duration::from_secs(2)), "2s");
        assert_eq!(seconds(Duration::from_millis(3_240)), "3.2s");
        assert_eq!(seconds(Duration::from_millis(500)), "0.5s");
    }
}
