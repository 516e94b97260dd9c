//! The store every SQL database is: one value implementing the store ports over a
//! [`Backend`]. Adapters name it (`SqliteStore = SqlStore<SqliteBackend>`) and add only
//! what is theirs.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use ports::{ComponentHealth, Consistency, Database, HealthCheck, StoreError, UnitOfWork};

use crate::backend::{Backend, ReadFuture};
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
        let conn = self.backend.begin().await?;
        Ok(Box::new(SqlUnitOfWork::new(conn, Arc::clone(&self.backend))))
    }
}

#[async_trait]
impl<B: Backend> HealthCheck for SqlStore<B> {
    async fn health(&self) -> Vec<ComponentHealth> {
        self.backend.health().await
    }
}
