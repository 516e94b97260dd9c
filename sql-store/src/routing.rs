//! Read routing between a primary and its replicas.
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
//! the replica's replay position and lag. A replica is healthy when it answers, replicates,
//! and its lag is known and at most `max_replica_lag`.
//!
//! Written once for every database with replicas: a dialect supplies its [`Replication`]
//! (what a commit token is, how a replica reports its position and lag, whether a replica
//! connection has applied a position); the rest (round robin, fallbacks and their counters
//! and metrics, health bookkeeping, retries on the primary) is here.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use sqlx::pool::PoolOptions;
use sqlx::{Connection, Database, Pool};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use ports::{CommitToken, ComponentHealth, Consistency, HealthStatus, StoreError};

use crate::SqlConfig;
use crate::backend::ReadFuture;
use crate::driver::{SqlxConn, SqlxDialect};
use crate::pool::{Conns, Leased};

/// How often a `ReadYourWrites` read asks a replica whether it has applied the token (when
/// the server cannot wait for it itself).
pub const CATCH_UP_POLL: Duration = Duration::from_millis(10);
/// A replica pool that cannot hand out a connection this fast sends the read to the primary
/// (a dead replica makes the pool retry connecting until its acquire timeout).
const REPLICA_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a replica connection whose query failed has to prove it is still alive.
const PING_TIMEOUT: Duration = Duration::from_millis(250);

/// The driver of dialect `R`.
/// The sqlx database of a [`Replication`].
pub type Db<R> = <<R as Replication>::Dialect as SqlxDialect>::Db;
/// A connection of dialect `R`'s driver.
pub type DbConnection<R> = <Db<R> as Database>::Connection;
/// Connection options of dialect `R`'s driver.
pub type DbOptions<R> = <DbConnection<R> as Connection>::Options;

/// What one database's replication is, for the router: its commit positions, how a replica
/// reports its state, and how to ask a replica whether it has applied a position.
///
/// # Errors (every method that returns a `Result`)
/// MUST return the dialect's translation of the driver error.
#[async_trait]
pub trait Replication: Send + Sync + 'static {
    /// The dialect whose connections the router hands to read queries.
    type Dialect: SqlxDialect;
    /// A replica's applied position, or a commit token's (PostgreSQL: an LSN; MariaDB: a
    /// GTID position; MySQL: a GTID set).
    type Position: Clone + PartialEq + fmt::Display + fmt::Debug + Send + Sync + 'static;

    /// A commit token as a position; `None` for a token this store did not mint (then only
    /// the primary is sure to have the write).
    fn parse(&self, token: &CommitToken) -> Option<Self::Position>;

    /// Whether a replica at `have` has applied everything up to `wanted`.
    fn covers(&self, have: &Self::Position, wanted: &Self::Position) -> bool;

    /// One health probe on the health checker's own connection.
    async fn probe(&self, conn: &mut DbConnection<Self>) -> Result<Probe<Self::Position>, StoreError>;

    /// Whether the replica behind `conn` has applied `position`, waiting for it at most
    /// `wait`. By default asks [`Replication::applied`] every [`CATCH_UP_POLL`]; a database
    /// that can wait server-side overrides it with one round trip.
    async fn wait_applied(
        &self,
        conn: &mut DbConnection<Self>,
        position: &Self::Position,
        wait: Duration,
    ) -> Result<bool, StoreError> {
        let deadline = Instant::now() + wait;
        loop {
            if self.applied(conn, position).await? {
                return Ok(true);
            }
            if Instant::now() + CATCH_UP_POLL > deadline {
                return Ok(false);
            }
            tokio::time::sleep(CATCH_UP_POLL).await;
        }
    }

    /// Whether the replica behind `conn` has applied `position`, now.
    async fn applied(&self, conn: &mut DbConnection<Self>, position: &Self::Position) -> Result<bool, StoreError>;
}

/// What a replica said about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe<P> {
    /// Why it cannot serve reads whatever its lag (not a replica; replication stopped).
    pub problem: Option<String>,
    /// How far it has applied.
    pub position: Option<P>,
    /// How far behind the primary it is; `None` when unknown.
    pub lag: Option<Duration>,
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
    /// No healthy replica applied a `ReadYourWrites` token in time.
    pub not_caught_up: u64,
    /// A replica failed the read (or its connection) and the primary answered instead.
    pub replica_error: u64,
}

/// What the router knows about one replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaState {
    /// `replica-<n>`, 1-based in configuration order.
    pub name: String,
    /// Whether reads may go there.
    pub healthy: bool,
    /// The last applied position seen.
    pub position: Option<String>,
    /// The last lag measured; `None` when unknown.
    pub lag: Option<Duration>,
    /// Why it is skipped (`down: …`, `lag 3.2s > 2s`, `lag unknown`); `None` when healthy.
    pub problem: Option<String>,
    /// Health checks completed so far: a caller that changed the replica waits for a check
    /// that began after its change.
    pub checks: u64,
    /// Reads it answered so far.
    pub reads: u64,
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
enum Placement<R: Replication> {
    Replica(Arc<Replica<R>>, Leased<Db<R>>),
    /// On the primary, after a fallback when `Some`.
    Primary(Option<Fallback>),
}

#[derive(Debug, Clone)]
struct Status<P> {
    /// `None` until first checked.
    healthy: Option<bool>,
    position: Option<P>,
    lag: Option<Duration>,
    problem: Option<String>,
}

impl<P> Status<P> {
    fn down(detail: impl fmt::Display, position: Option<P>) -> Self {
        Self {
            healthy: Some(false),
            position,
            lag: None,
            problem: Some(format!("down: {detail}")),
        }
    }
}

/// One replica: its read-only pool and what its health checks found.
pub struct Replica<R: Replication> {
    name: String,
    pool: Conns<Db<R>>,
    /// For the health checker's own connection, so a busy pool cannot starve the checks.
    health_options: DbOptions<R>,
    status: RwLock<Status<R::Position>>,
    /// Health checks completed.
    checks: AtomicU64,
    /// Reads answered.
    reads: AtomicU64,
}

impl<R: Replication> Replica<R> {
    /// A lazily connected pool over `options` (a replica that is down when the store
    /// starts is skipped, not fatal), made with `pool` from the store's
    /// [`pool_options`](crate::driver::pool_options); the health checks connect with
    /// `health_options`.
    pub fn new(
        name: String,
        pool: impl FnOnce(PoolOptions<Db<R>>) -> PoolOptions<Db<R>>,
        options: DbOptions<R>,
        health_options: DbOptions<R>,
        config: &SqlConfig,
    ) -> Self {
        let base = crate::driver::pool_options(
            config.max_connections,
            config.acquire_timeout.min(REPLICA_ACQUIRE_TIMEOUT),
        );
        let pool = Conns::new(pool(base).connect_lazy_with(options));
        Self {
            name,
            pool,
            health_options,
            status: RwLock::new(Status {
                healthy: None,
                position: None,
                lag: None,
                problem: Some("not checked yet".to_owned()),
            }),
            checks: AtomicU64::new(0),
            reads: AtomicU64::new(0),
        }
    }

    fn with_status<T>(&self, f: impl FnOnce(&Status<R::Position>) -> T) -> T {
        f(&self.status.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn position(&self) -> Option<R::Position> {
        self.with_status(|s| s.position.clone())
    }

    fn state(&self) -> ReplicaState {
        self.with_status(|s| ReplicaState {
            name: self.name.clone(),
            healthy: s.healthy == Some(true),
            position: s.position.as_ref().map(ToString::to_string),
            lag: s.lag,
            problem: s.problem.clone(),
            checks: self.checks.load(Ordering::Acquire),
            reads: self.reads.load(Ordering::Relaxed),
        })
    }

    /// Records a new status, logging only transitions (not every check).
    fn set_status(&self, new: Status<R::Position>) {
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
        self.set_status(Status::down(detail, self.position()));
    }

    /// A check saw the replica at `position`: later reads with that token need not ask.
    fn note_applied(&self, replication: &R, position: &R::Position) {
        let mut status = self.status.write().unwrap_or_else(PoisonError::into_inner);
        let behind = status
            .position
            .as_ref()
            .is_none_or(|have| !replication.covers(have, position));
        if behind {
            status.position = Some(position.clone());
        }
    }

    /// One health check on `conn` (connected first if needed, dropped if it fails).
    async fn check(&self, replication: &R, conn: &mut Option<DbConnection<R>>, max_lag: Duration, timeout: Duration) {
        let probe = async {
            let mut c = match conn.take() {
                Some(c) => c,
                None => DbConnection::<R>::connect_with(&self.health_options)
                    .await
                    .map_err(<R::Dialect as SqlxDialect>::translate)?,
            };
            let probe = replication.probe(&mut c).await?;
            Ok::<_, StoreError>((c, probe))
        };
        let last = self.position();
        let status = match tokio::time::timeout(timeout, probe).await {
            Ok(Ok((c, probe))) => {
                *conn = Some(c);
                evaluate(probe, max_lag)
            }
            Ok(Err(e)) => Status::down(e.chain(), last),
            Err(_) => Status::down(format_args!("no answer within {}", seconds(timeout)), last),
        };
        self.set_status(status);
        self.checks.fetch_add(1, Ordering::Release);
    }
}

/// Judges a probe against `max_lag`.
fn evaluate<P>(probe: Probe<P>, max_lag: Duration) -> Status<P> {
    let problem = probe.problem.or_else(|| match probe.lag {
        None => Some("lag unknown".to_owned()),
        Some(lag) if lag > max_lag => Some(format!("lag {} > {}", seconds(lag), seconds(max_lag))),
        Some(_) => None,
    });
    Status {
        healthy: Some(problem.is_none()),
        position: probe.position,
        lag: probe.lag,
        problem,
    }
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

/// A backend whose reads go through a [`Router`]: its routing diagnostics are then on the
/// store (`SqlStore::read_stats`, `replicas`, the pools).
pub trait Routed {
    /// How its servers replicate.
    type Replication: Replication;

    /// The router between its primary and its replicas.
    fn router(&self) -> &Router<Self::Replication>;
}

/// Routes reads between a primary and its replicas; owns the replicas.
pub struct Router<R: Replication> {
    replication: Arc<R>,
    primary: Conns<Db<R>>,
    replicas: Vec<Arc<Replica<R>>>,
    /// Round-robin cursor.
    next: AtomicUsize,
    counters: Counters,
    read_your_writes_wait: Duration,
    max_replica_lag: Duration,
    health_interval: Duration,
}

impl<R: Replication> Router<R> {
    /// Routes between `primary` and `replicas`.
    pub fn new(replication: R, primary: Conns<Db<R>>, replicas: Vec<Replica<R>>, config: &SqlConfig) -> Self {
        Self {
            replication: Arc::new(replication),
            primary,
            replicas: replicas.into_iter().map(Arc::new).collect(),
            next: AtomicUsize::new(0),
            counters: Counters::default(),
            read_your_writes_wait: config.read_your_writes_wait,
            max_replica_lag: config.max_replica_lag,
            health_interval: config.health_interval.max(Duration::from_millis(10)),
        }
    }

    /// How many replicas are configured.
    pub fn replica_count(&self) -> usize {
        self.replicas.len()
    }

    /// A health check is given twice the interval, within [0.5 s, 3 s].
    fn health_timeout(&self) -> Duration {
        (self.health_interval * 2).clamp(Duration::from_millis(500), Duration::from_secs(3))
    }

    /// Checks every replica once, at once (at start-up, so reads are routed from the first).
    pub async fn check_replicas_once(&self) {
        let timeout = self.health_timeout();
        join_all(self.replicas.iter().map(|replica| async move {
            replica
                .check(&self.replication, &mut None, self.max_replica_lag, timeout)
                .await
        }))
        .await;
    }

    /// One health-check task per replica, until `shutdown` says stop (or is dropped).
    pub fn spawn_health_checks(&self, shutdown: &watch::Sender<bool>) -> Vec<JoinHandle<()>> {
        self.replicas
            .iter()
            .map(|replica| {
                let replica = Arc::clone(replica);
                let replication = Arc::clone(&self.replication);
                let mut shutdown = shutdown.subscribe();
                let (interval, max_lag, timeout) = (self.health_interval, self.max_replica_lag, self.health_timeout());
                tokio::spawn(async move {
                    let mut conn = None;
                    let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
                    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
                    loop {
                        tokio::select! {
                            _ = ticker.tick() => replica.check(&replication, &mut conn, max_lag, timeout).await,
                            _ = shutdown.changed() => return,
                        }
                    }
                })
            })
            .collect()
    }

    /// Closes the replicas' pools and the primary's, waiting for connections in use to be
    /// returned.
    pub async fn close(&self) {
        join_all(self.replicas.iter().map(|replica| replica.pool.close())).await;
        self.primary.close().await;
    }

    /// `database` is the primary (`Down` when it does not answer within its acquire
    /// timeout); each replica is `Up` or `Degraded` (reads go elsewhere), never `Down`: the
    /// service still works without it.
    pub async fn health(&self) -> Vec<ComponentHealth> {
        let probe = async {
            let mut conn = self.primary.acquire().await?;
            conn.start()?.ping().await?;
            conn.settled();
            Ok::<_, sqlx::Error>(())
        };
        let primary = match tokio::time::timeout(self.primary.pool().options().get_acquire_timeout(), probe).await {
            Ok(Ok(())) => ComponentHealth::new("database", HealthStatus::Up, None),
            Ok(Err(e)) => ComponentHealth::new(
                "database",
                HealthStatus::Down,
                Some(<R::Dialect as SqlxDialect>::translate(e).chain()),
            ),
            Err(_) => ComponentHealth::new(
                "database",
                HealthStatus::Down,
                Some("the primary did not answer in time".to_owned()),
            ),
        };
        let mut entries = vec![primary];
        entries.extend(self.replica_states().into_iter().map(|replica| match replica.problem {
            None => ComponentHealth::new(replica.name, HealthStatus::Up, None),
            Some(problem) => ComponentHealth::new(replica.name, HealthStatus::Degraded, Some(problem)),
        }));
        entries
    }

    /// Reads served so far by target, and fallbacks by reason.
    pub fn stats(&self) -> ReadStats {
        let c = &self.counters;
        ReadStats {
            primary: c.primary.load(Ordering::Relaxed),
            replica: c.replica.load(Ordering::Relaxed),
            no_healthy_replica: c.no_healthy_replica.load(Ordering::Relaxed),
            not_caught_up: c.not_caught_up.load(Ordering::Relaxed),
            replica_error: c.replica_error.load(Ordering::Relaxed),
        }
    }

    /// What the last check (or failed read) found about each replica.
    pub fn replica_states(&self) -> Vec<ReplicaState> {
        self.replicas.iter().map(|replica| replica.state()).collect()
    }

    /// The primary's pool.
    pub fn primary_pool(&self) -> Pool<Db<R>> {
        self.primary.pool().clone()
    }

    /// The pool of replica `index` (0-based).
    pub fn replica_pool(&self, index: usize) -> Option<Pool<Db<R>>> {
        self.replicas.get(index).map(|replica| replica.pool.pool().clone())
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
    ///
    /// # Errors
    /// The query's, or [`StoreError::Unavailable`] when the primary cannot be had.
    pub async fn read<A, T, F>(&self, consistency: &Consistency, args: A, query: F) -> Result<T, StoreError>
    where
        A: Send + Sync,
        F: for<'c> Fn(&'c mut SqlxConn<R::Dialect>, &'c A) -> ReadFuture<'c, T> + Send + Sync,
        T: Send,
    {
        let placement = match consistency {
            Consistency::Strong => Placement::Primary(None),
            Consistency::Eventual => self.place_eventual().await,
            Consistency::ReadYourWrites(token) => self.place_caught_up(token).await,
        };
        let (replica, mut conn) = match placement {
            Placement::Replica(replica, conn) => (replica, SqlxConn::new(conn)),
            Placement::Primary(fallback) => {
                if let Some(reason) = fallback {
                    self.fallback(reason);
                }
                return self.on_primary(&args, &query).await;
            }
        };
        let result = query(&mut conn, &args).await;
        let retry = match &result {
            // Applying replicated changes cancelled the query (a recovery conflict): the
            // replica is fine.
            Err(StoreError::Concurrency) => true,
            // The replica has not applied a migration yet: the primary has the schema.
            Err(StoreError::SchemaMissing(_)) => true,
            // The connection or the server is gone, unless the connection still answers:
            // then the query itself timed out, and would only time out on the primary too.
            Err(StoreError::Unavailable(_)) => {
                let alive = match conn.inner() {
                    Ok(conn) => tokio::time::timeout(PING_TIMEOUT, conn.ping()).await.ok(),
                    Err(_) => None,
                };
                let dead = !matches!(alive, Some(Ok(())));
                if dead {
                    replica.mark_down(result.as_ref().err().map(StoreError::chain).unwrap_or_default());
                }
                dead
            }
            _ => false,
        };
        if !retry {
            self.count(Target::Replica);
            replica.reads.fetch_add(1, Ordering::Relaxed);
            return result;
        }
        drop(conn);
        tracing::debug!(replica = %replica.name, error = ?result.err(), "replica read failed, reading the primary");
        self.fallback(Fallback::ReplicaError);
        self.on_primary(&args, &query).await
    }

    /// Waits until every replica that answers has applied `position`, up to `max_wait`; a
    /// replica that does not answer or stays behind is logged and left to the health checks.
    pub async fn wait_for_replicas(&self, position: &R::Position, max_wait: Duration) {
        for replica in &self.replicas {
            let applied = async {
                let mut conn = replica
                    .pool
                    .acquire()
                    .await
                    .map_err(<R::Dialect as SqlxDialect>::translate)?;
                self.wait_applied(&mut conn, position, max_wait).await
            };
            match tokio::time::timeout(max_wait + Duration::from_secs(2), applied).await {
                Ok(Ok(true)) => {}
                outcome => {
                    tracing::warn!(replica = %replica.name, ?outcome, %position, "replica has not applied the migrations");
                }
            }
        }
    }

    /// [`Replication::wait_applied`] on a leased connection, which stays in good order only
    /// if the wait ends.
    async fn wait_applied(
        &self,
        conn: &mut Leased<Db<R>>,
        position: &R::Position,
        wait: Duration,
    ) -> Result<bool, StoreError> {
        let raw = conn.start().map_err(<R::Dialect as SqlxDialect>::translate)?;
        let applied = self.replication.wait_applied(raw, position, wait).await?;
        conn.settled();
        Ok(applied)
    }

    async fn on_primary<A, T, F>(&self, args: &A, query: &F) -> Result<T, StoreError>
    where
        F: for<'c> Fn(&'c mut SqlxConn<R::Dialect>, &'c A) -> ReadFuture<'c, T> + Send + Sync,
    {
        let conn = self
            .primary
            .acquire()
            .await
            .map_err(<R::Dialect as SqlxDialect>::translate)?;
        let mut conn = SqlxConn::new(conn);
        self.count(Target::Primary);
        query(&mut conn, args).await
    }

    /// The next healthy replica (round robin) whose status also passes `wanted`.
    fn pick(&self, wanted: impl Fn(&Status<R::Position>) -> bool) -> Option<Arc<Replica<R>>> {
        let n = self.replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| &self.replicas[start.wrapping_add(i) % n])
            .find(|replica| replica.with_status(|s| s.healthy == Some(true) && wanted(s)))
            .cloned()
    }

    async fn connect_to(&self, replica: Arc<Replica<R>>) -> Placement<R> {
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

    async fn place_eventual(&self) -> Placement<R> {
        if self.replicas.is_empty() {
            return Placement::Primary(None);
        }
        match self.pick(|_| true) {
            Some(replica) => self.connect_to(replica).await,
            None => Placement::Primary(Some(Fallback::NoHealthyReplica)),
        }
    }

    async fn place_caught_up(&self, token: &CommitToken) -> Placement<R> {
        if self.replicas.is_empty() {
            return Placement::Primary(None);
        }
        // A token this store did not mint (another backend's, or "unknown" after a commit
        // whose position could not be read): only the primary is sure to have the write.
        let Some(wanted) = self.replication.parse(token) else {
            return Placement::Primary(None);
        };
        let replication = &*self.replication;
        if let Some(replica) = self.pick(|s| {
            s.position
                .as_ref()
                .is_some_and(|have| replication.covers(have, &wanted))
        }) {
            return self.connect_to(replica).await;
        }
        let Some(replica) = self.pick(|_| true) else {
            return Placement::Primary(Some(Fallback::NoHealthyReplica));
        };
        let (replica, mut conn) = match self.connect_to(replica).await {
            Placement::Replica(replica, conn) => (replica, conn),
            primary => return primary,
        };
        match self.wait_applied(&mut conn, &wanted, self.read_your_writes_wait).await {
            Ok(true) => {
                replica.note_applied(replication, &wanted);
                Placement::Replica(replica, conn)
            }
            Ok(false) => Placement::Primary(Some(Fallback::NotCaughtUp)),
            Err(e) => {
                drop(conn);
                replica.mark_down(e.chain());
                Placement::Primary(Some(Fallback::ReplicaError))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_to_a_tenth_of_a_second() {
        assert_eq!(seconds(Duration::from_secs(2)), "2s");
        assert_eq!(seconds(Duration::from_millis(3_240)), "3.2s");
        assert_eq!(seconds(Duration::from_millis(500)), "0.5s");
    }

    #[test]
    fn a_replica_is_healthy_only_with_a_known_lag_within_the_bound() {
        let probe = |problem: Option<&str>, lag: Option<u64>| Probe {
            problem: problem.map(str::to_owned),
            position: Some(1),
            lag: lag.map(Duration::from_millis),
        };
        let max = Duration::from_secs(2);
        assert_eq!(evaluate(probe(None, Some(100)), max).healthy, Some(true));
        let unknown = evaluate(probe(None, None), max);
        assert_eq!(
            (unknown.healthy, unknown.problem.as_deref()),
            (Some(false), Some("lag unknown"))
        );
        let behind = evaluate(probe(None, Some(3_240)), max);
        assert_eq!(behind.problem.as_deref(), Some("lag 3.2s > 2s"));
        let stopped = evaluate(probe(Some("replication stopped"), Some(0)), max);
        assert_eq!(stopped.problem.as_deref(), Some("replication stopped"));
    }
}
