//! The read-routing suite every SQL adapter with replicas must pass (PostgreSQL, MariaDB),
//! written once against a real primary and replica (`scripts/infra.sh`): reads land on the
//! replica by the servers' own counters, read-your-writes falls back to the primary while the
//! replica lags, a replica killed under load fails no read, and a replica lagging past the
//! limit is reported degraded, skipped, and refuses writes.
//!
//! An adapter's test file implements [`ReplicaPair`] (a fresh database on its pair, and what
//! only its servers can say) and calls [`routing_tests!`](crate::routing_tests). The cases
//! lag and kill the shared replica, so they run one at a time (a lock) and always leave it
//! started and without lag ([`RestoreReplica`], which runs `scripts/infra.sh` on drop, even
//! when the case fails).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::{Mutex, MutexGuard};
use uuid::Uuid;

use core_domain::ProductId;
use core_domain::catalog::{NewProduct, Product};
use ports::{CatalogReads, CommitToken, Consistency, Database, HealthCheck, HealthStatus};
use sql_store::routing::{ReadStats, ReplicaState, Routed};
use sql_store::{Backend, SqlConfig, SqlStore};

use crate::services;

/// A primary and a replica of one kind of server, with a fresh database on both.
#[async_trait]
pub trait ReplicaPair: Send + Sync + Sized + 'static {
    /// The adapter's backend.
    type Backend: Backend<Config = SqlConfig> + Routed;
    /// What [`ReplicaPair::server_reads`] counts, to compare before and after.
    type Reads: std::fmt::Debug + Send;

    /// The service in `scripts/infra.sh` (`pg`, `mariadb`), for `lag`.
    const SERVICE: &'static str;
    /// Its replica component, for `kill` and `start`.
    const REPLICA: &'static str;

    /// A fresh database on the pair, or `None` when the pair is missing and skipping was
    /// asked for. The database is dropped with the value.
    async fn fresh() -> Option<Self>;

    /// The database's URLs: `(primary, replica)`.
    fn urls(&self) -> (String, String);

    /// Whether the replica has applied `token`, asked of the replica directly.
    async fn replica_has_applied(&self, token: &CommitToken) -> bool;

    /// The servers' own record of the reads they ran, from their statistics.
    async fn server_reads(&self) -> Self::Reads;

    /// Asserts, from `before` and the servers' statistics now, that `reads` product reads
    /// ran on the replica and not on the primary.
    async fn assert_reads_ran_on_the_replica(&self, before: Self::Reads, reads: u64);

    /// Called before the replica is SIGKILLed: shortens its crash recovery if the server
    /// allows it (the cases are about routing, not recovery time).
    async fn before_replica_kill(&self) {}

    /// Asserts that a connection of the store's replica pool is read-only, named or
    /// time-limited as the adapter sets it, and that a write on it fails loudly.
    async fn assert_replica_sessions_refuse_writes(&self, store: &SqlStore<Self::Backend>);
}

/// One routing case at a time in a process: they change the shared replica.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// Waits for the other cases of this process to finish with the replica.
pub async fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// Puts the replica of `service` back (started, no delay) when dropped, whatever the case
/// did. Made once a case has its fixture, so a skipped case leaves the services alone.
pub struct RestoreReplica {
    service: &'static str,
    replica: &'static str,
}

impl Drop for RestoreReplica {
    fn drop(&mut self) {
        for args in [&["start", self.replica][..], &["lag", "0", self.service][..]] {
            if let Err(e) = services::infra(args) {
                eprintln!("restoring the replica: {e}");
            }
        }
    }
}

/// A migrated store over a fresh database on the pair, whose replica has the schema, a
/// first write, and is judged healthy.
pub struct Fixture<P: ReplicaPair> {
    pub store: SqlStore<P::Backend>,
    pub pair: P,
    /// Restores the replica when the case ends.
    _restore: RestoreReplica,
}

impl<P: ReplicaPair> Fixture<P> {
    /// The fixture, with the configuration `tune`d (health checks every 200 ms to begin
    /// with), or `None` when the pair is missing and skipping was asked for.
    pub async fn new(tune: impl FnOnce(&mut SqlConfig) + Send) -> Option<Self> {
        let pair = P::fresh().await?;
        let (primary_url, replica_url) = pair.urls();
        let mut config = SqlConfig {
            replica_urls: vec![replica_url],
            health_interval: Duration::from_millis(200),
            ..SqlConfig::primary(primary_url)
        };
        tune(&mut config);
        let store = SqlStore::<P::Backend>::connect(&config).await.expect("connect");
        store.migrate().await.expect("migrate");
        let fixture = Self {
            store,
            pair,
            _restore: RestoreReplica {
                service: P::SERVICE,
                replica: P::REPLICA,
            },
        };
        let token = fixture.store_product("warm-up").await.1;
        fixture.wait_applied(&token).await;
        fixture.wait_healthy().await;
        Some(fixture)
    }

    /// Stores a product in a unit of work of its own.
    pub async fn store_product(&self, name: &str) -> (Product, CommitToken) {
        store_product(&self.store, name).await
    }

    /// Waits (up to 30 s) until the replica has applied `token`, asking it directly.
    pub async fn wait_applied(&self, token: &CommitToken) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.pair.replica_has_applied(token).await {
            assert!(
                Instant::now() < deadline,
                "the replica did not apply {} in 30 s",
                token.0
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the store's health checks call the replica healthy.
    pub async fn wait_healthy(&self) {
        self.wait_replica(Duration::from_secs(60), |r| r.healthy, "healthy")
            .await;
    }

    /// Waits until the store's view of the replica is `wanted`, and returns it.
    pub async fn wait_replica(
        &self,
        within: Duration,
        wanted: impl Fn(&ReplicaState) -> bool,
        what: &str,
    ) -> ReplicaState {
        let deadline = Instant::now() + within;
        loop {
            let state = self.store.replicas().remove(0);
            if wanted(&state) {
                return state;
            }
            assert!(
                Instant::now() < deadline,
                "the replica was not {what} within {within:?}: {state:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The store's read counters now.
    pub fn stats(&self) -> ReadStats {
        self.store.read_stats()
    }

    /// Lags the pair's replica by `seconds` (`0` resets), and waits for a health check that
    /// began after the change: MariaDB restarts its SQL thread to change the delay, and a
    /// check that saw it stopped must not decide the case's first read.
    pub async fn lag(&self, seconds: &str) {
        let checks = self.store.replicas().remove(0).checks;
        services::infra_await(&["lag", seconds, P::SERVICE]).await;
        self.wait_replica(Duration::from_secs(10), |r| r.checks >= checks + 2, "checked again")
            .await;
    }

    /// Reads `product` `n` times at `consistency`, each finding it.
    pub async fn read_product(&self, product: &Product, consistency: &Consistency, n: usize) {
        for _ in 0..n {
            let read = self.store.product(product.id, consistency.clone()).await.expect("read");
            assert_eq!(read.as_ref(), Some(product));
        }
    }
}

/// Stores a product named `name` in a unit of work of its own.
pub async fn store_product<B: Backend>(store: &SqlStore<B>, name: &str) -> (Product, CommitToken) {
    let product = Product::create(
        ProductId(Uuid::now_v7()),
        NewProduct::parse(name, 1_000, 10).expect("valid product"),
        // What the database keeps: microseconds.
        crate::contract::now(),
    );
    let mut uow = store.begin().await.expect("begin");
    uow.catalog().insert(&product).await.expect("insert product");
    let token = uow.commit().await.expect("commit");
    (product, token)
}

/// A steady trickle of commits (a product every 100 ms) until stopped: a replica whose
/// replay is delayed stays that far behind them, and its lag shows.
pub struct Trickle {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Trickle {
    pub fn start<B: Backend>(store: &SqlStore<B>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (store, stop) = (store.clone(), stop.clone());
            async move {
                while !stop.load(Ordering::Relaxed) {
                    store_product(&store, "Trickle").await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        Self { stop, task }
    }

    pub async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the trickle of commits");
    }
}

/// The change from `before` to `after`, field by field.
pub fn delta(before: ReadStats, after: ReadStats) -> ReadStats {
    ReadStats {
        primary: after.primary - before.primary,
        replica: after.replica - before.replica,
        no_healthy_replica: after.no_healthy_replica - before.no_healthy_replica,
        not_caught_up: after.not_caught_up - before.not_caught_up,
        replica_error: after.replica_error - before.replica_error,
    }
}

pub async fn eventual_reads_land_on_the_replica_and_strong_reads_on_the_primary<P: ReplicaPair>() {
    let Some(f) = Fixture::<P>::new(|_| {}).await else {
        return;
    };
    let (product, token) = f.store_product("Helmet").await;
    f.wait_applied(&token).await;

    let (before, server_before) = (f.stats(), f.pair.server_reads().await);
    f.read_product(&product, &Consistency::Eventual, 50).await;
    let d = delta(before, f.stats());
    assert_eq!((d.replica, d.primary), (50, 0), "{d:?}");
    // The servers' own view.
    f.pair.assert_reads_ran_on_the_replica(server_before, 50).await;

    let before = f.stats();
    f.read_product(&product, &Consistency::Strong, 10).await;
    // A token the replica has applied is served by the replica.
    f.read_product(&product, &Consistency::ReadYourWrites(token), 1).await;
    let d = delta(before, f.stats());
    assert_eq!((d.primary, d.replica), (10, 1), "{d:?}");
    assert_eq!(d.not_caught_up + d.no_healthy_replica + d.replica_error, 0, "{d:?}");

    let health = f.store.health().await;
    assert_eq!(
        health.iter().map(|c| (c.name.as_str(), c.status)).collect::<Vec<_>>(),
        [("database", HealthStatus::Up), ("replica-1", HealthStatus::Up)]
    );
    f.store.close().await;
}

pub async fn a_lagging_replica_sends_read_your_writes_to_the_primary_but_keeps_eventual_reads<P: ReplicaPair>() {
    let Some(f) = Fixture::<P>::new(|_| {}).await else {
        return;
    };
    let (old, token) = f.store_product("Old").await;
    f.wait_applied(&token).await;

    f.lag("2").await;
    f.wait_healthy().await;
    let (new, token) = f.store_product("New").await;
    let before = f.stats();
    let started = Instant::now();
    let read = f
        .store
        .product(new.id, Consistency::ReadYourWrites(token.clone()))
        .await
        .expect("read your write");
    let waited = started.elapsed();
    assert_eq!(read, Some(new.clone()), "the writer sees its write at once");
    let d = delta(before, f.stats());
    assert_eq!((d.not_caught_up, d.primary, d.replica), (1, 1, 0), "{d:?}");
    // It waited `read_your_writes_wait` (200 ms) for the replica, not the 2 s of lag.
    assert!(
        waited >= Duration::from_millis(180) && waited < Duration::from_millis(1_500),
        "{waited:?}"
    );

    // Eventual reads still go to the (healthy, within 5 s) replica, which has not applied
    // the new row yet but has the old one.
    let before = f.stats();
    f.read_product(&old, &Consistency::Eventual, 1).await;
    assert_eq!(
        f.store.product(new.id, Consistency::Eventual).await.expect("read"),
        None
    );
    let d = delta(before, f.stats());
    assert_eq!((d.replica, d.primary), (2, 0), "{d:?}");

    // Once applied, the same token is served by the replica.
    f.wait_applied(&token).await;
    let before = f.stats();
    f.read_product(&new, &Consistency::ReadYourWrites(token), 1).await;
    let d = delta(before, f.stats());
    assert_eq!((d.replica, d.primary), (1, 0), "{d:?}");

    f.lag("0").await;
    f.store.close().await;
}

pub async fn a_replica_killed_under_load_fails_no_read_and_is_used_again_once_back<P: ReplicaPair>() {
    let Some(f) = Fixture::<P>::new(|_| {}).await else {
        return;
    };
    let (product, token) = f.store_product("Gloves").await;
    f.wait_applied(&token).await;
    let store = f.store.clone();

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let readers: Vec<_> = (0..8)
        .map(|n| {
            let (store, stop, ok, failed) = (store.clone(), stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let result = if n % 2 == 0 {
                        store
                            .product(product.id, Consistency::Eventual)
                            .await
                            .map(|p| p.is_some())
                    } else {
                        store
                            .products(None, 10, Consistency::Eventual)
                            .await
                            .map(|p| !p.is_empty())
                    };
                    match result {
                        Ok(true) => ok.fetch_add(1, Ordering::Relaxed),
                        Ok(false) | Err(_) => {
                            eprintln!("read failed: {result:?}");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(1)).await;
    let before_kill = f.stats();
    assert!(
        before_kill.replica > 0,
        "reads were landing on the replica: {before_kill:?}"
    );
    f.pair.before_replica_kill().await;
    services::infra_await(&["kill", P::REPLICA]).await;
    let down = f
        .wait_replica(Duration::from_secs(10), |r| !r.healthy, "marked unhealthy")
        .await;
    assert!(
        down.problem.as_deref().unwrap_or_default().starts_with("down"),
        "{down:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let health = f.store.health().await;
    assert_eq!(health[0].status, HealthStatus::Up, "{health:?}");
    assert_eq!(health[1].status, HealthStatus::Degraded, "{health:?}");

    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.await.expect("reader");
    }
    let d = delta(before_kill, f.stats());
    eprintln!(
        "replica killed under load: {} reads, {} failed; since the kill: {d:?}",
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no read failed");
    assert!(ok.load(Ordering::Relaxed) > 100, "{} reads", ok.load(Ordering::Relaxed));
    assert!(
        d.replica_error + d.no_healthy_replica > 0,
        "fallbacks were counted: {d:?}"
    );
    assert!(d.primary > 0, "{d:?}");

    services::infra_await(&["start", P::REPLICA]).await;
    f.wait_healthy().await;
    let before = f.stats();
    f.read_product(&product, &Consistency::Eventual, 20).await;
    let d = delta(before, f.stats());
    assert_eq!((d.replica, d.primary), (20, 0), "reads are back on the replica: {d:?}");
    f.store.close().await;
}

pub async fn a_replica_lagging_past_the_limit_is_degraded_and_skipped_and_refuses_writes<P: ReplicaPair>() {
    let Some(f) = Fixture::<P>::new(|c| c.max_replica_lag = Duration::from_millis(500)).await else {
        return;
    };
    let (product, token) = f.store_product("Jacket").await;
    f.wait_applied(&token).await;

    f.lag("2").await;
    // A steady trickle of commits: the replica stays ~2 s behind them.
    let trickle = Trickle::start(&f.store);

    let lagging = f
        .wait_replica(
            Duration::from_secs(15),
            |r| !r.healthy && r.problem.as_deref().unwrap_or_default().starts_with("lag"),
            "degraded by lag",
        )
        .await;
    assert!(
        lagging.problem.as_deref().unwrap_or_default().ends_with("> 0.5s"),
        "{lagging:?}"
    );
    let health = f.store.health().await;
    assert_eq!(health[0].status, HealthStatus::Up, "{health:?}");
    assert_eq!(health[1].name, "replica-1");
    assert_eq!(health[1].status, HealthStatus::Degraded, "{health:?}");
    assert!(
        health[1].detail.as_deref().unwrap_or_default().starts_with("lag "),
        "{health:?}"
    );

    let before = f.stats();
    f.read_product(&product, &Consistency::Eventual, 20).await;
    let d = delta(before, f.stats());
    assert_eq!((d.primary, d.replica, d.no_healthy_replica), (20, 0, 20), "{d:?}");

    f.pair.assert_replica_sessions_refuse_writes(&f.store).await;

    trickle.stop().await;
    f.lag("0").await;
    f.wait_healthy().await;
    f.store.close().await;
}

/// Expands to one `#[tokio::test]` per routing case for the [`ReplicaPair`] `$pair`, each
/// holding the process's routing lock.
///
/// ```ignore
/// tests::routing_tests!(PgPair);
/// ```
#[macro_export]
macro_rules! routing_tests {
    ($pair:ty) => {
        $crate::routing_tests!(@cases $pair;
            eventual_reads_land_on_the_replica_and_strong_reads_on_the_primary,
            a_lagging_replica_sends_read_your_writes_to_the_primary_but_keeps_eventual_reads,
            a_replica_killed_under_load_fails_no_read_and_is_used_again_once_back,
            a_replica_lagging_past_the_limit_is_degraded_and_skipped_and_refuses_writes,
        );
    };
    (@cases $pair:ty; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let _serial = $crate::routing::serial().await;
                $crate::routing::$case::<$pair>().await;
            }
        )*
    };
}
