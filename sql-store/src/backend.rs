//! What a database supplies besides its SQL text: connections and where reads run (pools,
//! replicas, routing), how a transaction begins and what its commit token is, how relays
//! are woken, health, migrations. [`Transaction`] is the one copy of "an open transaction
//! rolls back when abandoned" that every store uses.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use ports::{CommitToken, ComponentHealth, Consistency, StoreError};

use crate::batch::WorkConn;
use crate::sql::SqlConn;

/// A read query, run on whichever connection the backend picks (possibly twice: on a
/// replica, then on the primary), so it is a function of the connection and of the
/// arguments the read was given (borrowed for as long as the connection is).
pub type ReadFuture<'c, T> = BoxFuture<'c, Result<T, StoreError>>;

/// One database deployment: a primary, maybe replicas, and the dialect's connections.
///
/// # Errors (every method that returns a `Result`)
/// MUST return [`StoreError::Unavailable`] when no suitable server answers in time.
#[async_trait]
pub trait Backend: Send + Sync + Sized + 'static {
    /// Where the database is and how to use it.
    type Config: Send + Sync;
    /// A pooled connection, in or out of a transaction.
    type Conn: SqlConn + 'static;

    /// Connects (the primary must answer; replicas may be down). Does not migrate.
    async fn connect(config: &Self::Config) -> Result<Self, StoreError>;

    /// Runs the dialect's migrations not yet applied.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// Stops background tasks and closes the pools.
    async fn close(&self);

    /// Runs a read port's `query(conn, &args)` where `consistency` allows: `Strong` on the
    /// primary, others on a replica that qualifies, else on the primary.
    async fn read<A, T, F>(&self, consistency: &Consistency, args: A, query: F) -> Result<T, StoreError>
    where
        A: Send + Sync,
        T: Send,
        F: for<'c> Fn(&'c mut Self::Conn, &'c A) -> ReadFuture<'c, T> + Send + Sync;

    /// A connection to the primary outside any transaction (each statement commits), for
    /// the single-statement writes of the relay and the token store.
    async fn primary(&self) -> Result<Self::Conn, StoreError>;

    /// A connection to the primary with a write transaction begun on it (the dialect's
    /// [`begin`](crate::Dialect::begin) statement).
    async fn begin(&self) -> Result<Self::Conn, StoreError> {
        let mut conn = self.primary().await?;
        let begin = conn.dialect().begin;
        conn.raw(begin).await?;
        Ok(conn)
    }

    /// Sends what the unit of work has queued on `conn` and commits its transaction
    /// ([`WorkConn::flush`] then `commit`, in as few round trips as the dialect can), and
    /// returns the commit's consistency token. Once the `commit` succeeded this never fails:
    /// a commit that happened must not be reported as failed (the caller would retry a write
    /// that was made), so a position that cannot be read is a token that only the primary
    /// satisfies.
    ///
    /// # Errors
    /// A queued write's failure (the transaction is still open: the caller rolls back), or
    /// the `commit`'s (then nothing committed).
    async fn commit(&self, conn: &mut WorkConn<'_, Self::Conn>) -> Result<CommitToken, StoreError>;

    /// After a commit that appended outbox rows: wakes this instance's relay, and lets
    /// other instances' relays know (PostgreSQL: `pg_notify`, coalesced).
    fn wake_relay(&self);

    /// Resolves when outbox rows may have been appended since the last call, or after
    /// `max_wait`.
    async fn wait_for_events(&self, max_wait: Duration);

    /// The primary's health, and each replica's.
    async fn health(&self) -> Vec<ComponentHealth>;
}

/// An open transaction on a pooled connection. Dropped while open (an abandoned unit of
/// work, a cancelled commit), it rolls back before the connection is reused.
pub struct Transaction<C: SqlConn + 'static> {
    conn: Option<C>,
}

impl<C: SqlConn + 'static> std::fmt::Debug for Transaction<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("open", &self.conn.is_some())
            .finish()
    }
}

/// The error of any use of a transaction (or a unit of work) after its end.
pub(crate) fn spent() -> StoreError {
    StoreError::other("the unit of work was already committed or rolled back".to_owned())
}

impl<C: SqlConn + 'static> Transaction<C> {
    /// Takes over `conn`, on which a transaction has just begun.
    pub fn new(conn: C) -> Self {
        Self { conn: Some(conn) }
    }

    /// The connection, while the transaction is open.
    ///
    /// # Errors
    /// [`StoreError::Other`] once committed or rolled back.
    pub fn conn(&mut self) -> Result<&mut C, StoreError> {
        self.conn.as_mut().ok_or_else(spent)
    }

    /// Commits and hands the connection back, for a caller that wants the commit's token
    /// ([`Backend::commit`]). The transaction is over whether or not the `commit`
    /// succeeded (a failed `commit` rolls back).
    ///
    /// # Errors
    /// As the `commit` statement fails; [`StoreError::Other`] if already over.
    pub async fn commit(&mut self) -> Result<C, StoreError> {
        let conn = self.conn.as_mut().ok_or_else(spent)?;
        let result = conn.raw("commit").await;
        // Past the await, the statement ran: there is nothing left to roll back on drop. (A
        // commit cancelled before this point still rolls back when the transaction drops.)
        let conn = self.conn.take().ok_or_else(spent)?;
        result?;
        Ok(conn)
    }

    /// Marks the transaction over after the caller ended it on [`conn`](Self::conn)
    /// (committed or rolled back it): the connection goes back to its pool as it is.
    pub fn ended(&mut self) {
        self.conn = None;
    }

    /// Rolls back.
    ///
    /// # Errors
    /// As the `rollback` statement fails; [`StoreError::Other`] if already over.
    pub async fn rollback(&mut self) -> Result<(), StoreError> {
        let conn = self.conn.as_mut().ok_or_else(spent)?;
        let result = conn.raw("rollback").await;
        self.conn = None;
        result
    }
}

impl<C: SqlConn + 'static> Drop for Transaction<C> {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        // Without a runtime the connection is dropped as it is: a pooled connection that
        // cannot be returned is closed, and closing the socket aborts the transaction.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = conn.raw("rollback").await {
                    tracing::debug!(error = %e, "rolling back an abandoned transaction failed");
                    conn.close_on_drop();
                }
            });
        }
    }
}

/// A backend's background tasks (replica health checks, listeners, heartbeats) and the
/// signal that stops them. Dropped, it aborts them.
#[derive(Debug)]
pub struct BackgroundTasks {
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Default for BackgroundTasks {
    fn default() -> Self {
        Self::new()
    }
}

impl BackgroundTasks {
    /// No tasks yet.
    pub fn new() -> Self {
        Self {
            shutdown: watch::channel(false).0,
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// The stop signal: a task ends when it changes (or is dropped).
    pub fn signal(&self) -> &watch::Sender<bool> {
        &self.shutdown
    }

    /// Keeps `tasks`, to stop them with the others.
    pub fn add(&self, tasks: impl IntoIterator<Item = JoinHandle<()>>) {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner).extend(tasks);
    }

    /// Signals every task to stop, aborts it, and waits until it has.
    pub async fn stop(&self) {
        let _ = self.shutdown.send(true);
        let tasks: Vec<JoinHandle<()>> = self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
            .collect();
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for BackgroundTasks {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks.get_mut().unwrap_or_else(PoisonError::into_inner).drain(..) {
            task.abort();
        }
    }
}
