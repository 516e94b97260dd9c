//! The store every SQL database is: one value implementing the store ports over a
//! [`Backend`]. Adapters name it (`SqliteStore = SqlStore<SqliteBackend>`) and add only
//! what is theirs.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use ports::{ComponentHealth, Consistency, Database, HealthCheck, StoreError, UnitOfWork};

use sqlx::Pool;

use crate::backend::{Backend, ReadFuture};
use crate::routing::{Db, ReadStats, ReplicaState, Routed};
use crate::unit_of_work::SqlUnitOfWork;

/// hexride's store ports over one SQL database: [`Database`] (units of work), the read
/// ports, [`ports::OutboxStore`], [`ports::RefreshTokenStore`] and [`HealthCheck`]. Cheap to
/// clone (an `Arc` inside).
pub struct SqlStore<B: Backend> {
    backend: Arc<B>,
}

impl<B: Backend> Clone for SqlStore<B> {
    fn clone(&self) -> Self {
        Self {
            backend: Arc::clone(&self.backend),
        }
    }
}

impl<B: Backend> std::fmt::Debug for SqlStore<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("dialect", &std::any::type_name::<B>())
            .finish_non_exhaustive()
    }
}

/// The routing diagnostics of a backend with replicas.
impl<B: Backend + Routed> SqlStore<B> {
    /// Reads served so far by target, and fallbacks to the primary by reason (the same
    /// numbers as the `db_reads_total` and `db_read_fallbacks_total` metrics, for this store).
    pub fn read_stats(&self) -> ReadStats {
        self.backend.router().stats()
    }

    /// What the last health check (or failed read) found about each replica.
    pub fn replicas(&self) -> Vec<ReplicaState> {
        self.backend.router().replica_states()
    }

    /// The primary's pool. For diagnostics and tests; writes go through units of work.
    pub fn primary_pool(&self) -> Pool<Db<B::Replication>> {
        self.backend.router().primary_pool()
    }

    /// The pool of replica `index` (0-based), whose sessions are read-only. For diagnostics
    /// and tests; reads go through the read ports.
    pub fn replica_pool(&self, index: usize) -> Option<Pool<Db<B::Replication>>> {
        self.backend.router().replica_pool(index)
    }
}

impl<B: Backend> SqlStore<B> {
    /// Connects the backend (see [`Backend::connect`]). Does not migrate.
    ///
    /// # Errors
    /// As [`Backend::connect`]: [`StoreError::Other`] for a bad configuration,
    /// [`StoreError::Unavailable`] when the primary cannot be reached.
    pub async fn connect(config: &B::Config) -> Result<Self, StoreError> {
        Ok(Self::new(B::connect(config).await?))
    }

    /// A store over a connected backend.
    pub fn new(backend: B) -> Self {
        Self {
            backend: Arc::new(backend),
        }
    }

    /// The backend, for what only it knows (replica states, pools, read statistics).
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Runs the dialect's migrations not yet applied.
    ///
    /// # Errors
    /// As [`Backend::migrate`].
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.backend.migrate().await
    }

    /// Stops background tasks and closes every pool.
    pub async fn close(&self) {
        self.backend.close().await;
    }

    /// Runs a read port's `query(conn, &args)` where `consistency` allows.
    pub(crate) async fn read<A, T, F>(&self, consistency: &Consistency, args: A, query: F) -> Result<T, StoreError>
    where
        A: Send + Sync,
        T: Send,
        F: for<'c> Fn(&'c mut B::Conn, &'c A) -> ReadFuture<'c, T> + Send + Sync,
    {
        self.backend.read(consistency, args, query).await
    }

    /// A connection to the primary outside any transaction.
    pub(crate) async fn primary(&self) -> Result<B::Conn, StoreError> {
        self.backend.primary().await
    }

    pub(crate) async fn wait_for_events(&self, max_wait: Duration) {
        self.backend.wait_for_events(max_wait).await;
    }
}

#[async_trait]
impl<B: Backend> Database for SqlStore<B> {
    async fn begin(&self) -> Result<Box<dyn UnitOfWork>, StoreError> {
        let conn = self.backend.primary().await?;
        Ok(Box::new(SqlUnitOfWork::begin(conn, Arc::clone(&self.backend))))
    }
}

#[async_trait]
impl<B: Backend> HealthCheck for SqlStore<B> {
    async fn health(&self) -> Vec<ComponentHealth> {
        self.backend.health().await
    }
}
