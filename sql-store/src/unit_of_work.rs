//! The unit of work, once for every database: one transaction on a primary connection.
//! It implements every context's write port; each context module (`members`, `insurance`,
//! …) holds that impl next to its statements, so the unit of work and the read ports run
//! the same SQL. A failed statement spoils the transaction on every store alike
//! (PostgreSQL aborts it, and the others must not commit half of it either), so `commit`
//! then rolls back and fails.

use std::sync::Arc;

use async_trait::async_trait;

use ports::{
    CatalogWrites, CommitToken, CouponWrites, EventWrites, IdempotencyWrites, InsuranceWrites, MemberWrites,
    OrderWrites, StoreError, UnitOfWork, WalletWrites,
};

use crate::backend::{Backend, Transaction};

/// A [`UnitOfWork`] over any [`Backend`]. Dropping it without committing rolls back.
pub struct SqlUnitOfWork<B: Backend> {
    tx: Transaction<B::Conn>,
    backend: Arc<B>,
    /// Whether this transaction appended outbox rows (so relays are woken at commit).
    appended_events: bool,
    /// Whether a statement failed: the transaction can then only roll back.
    failed: bool,
}

impl<B: Backend> std::fmt::Debug for SqlUnitOfWork<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlUnitOfWork")
            .field("tx", &self.tx)
            .field("appended_events", &self.appended_events)
            .field("failed", &self.failed)
            .finish()
    }
}

impl<B: Backend> SqlUnitOfWork<B> {
    /// Takes over `conn`, on which [`Backend::begin`] has begun a transaction.
    pub(crate) fn new(conn: B::Conn, backend: Arc<B>) -> Self {
        Self {
            tx: Transaction::new(conn),
            backend,
            appended_events: false,
            failed: false,
        }
    }

    /// The transaction's connection, for a context's statement.
    pub(crate) fn conn(&mut self) -> Result<&mut B::Conn, StoreError> {
        self.tx.conn()
    }

    /// Notes a failed statement, so a later commit fails instead of committing part of the
    /// work (or, on PostgreSQL, silently rolling it back).
    pub(crate) fn track<T>(&mut self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    /// After outbox rows were appended: the relays are woken when this commits.
    pub(crate) fn tell_relays(&mut self) {
        self.appended_events = true;
    }
}

#[async_trait]
impl<B: Backend> UnitOfWork for SqlUnitOfWork<B> {
    fn members(&mut self) -> &mut dyn MemberWrites {
        self
    }

    fn insurance(&mut self) -> &mut dyn InsuranceWrites {
        self
    }

    fn catalog(&mut self) -> &mut dyn CatalogWrites {
        self
    }

    fn wallet(&mut self) -> &mut dyn WalletWrites {
        self
    }

    fn coupons(&mut self) -> &mut dyn CouponWrites {
        self
    }

    fn orders(&mut self) -> &mut dyn OrderWrites {
        self
    }

    fn idempotency(&mut self) -> &mut dyn IdempotencyWrites {
        self
    }

    fn events(&mut self) -> &mut dyn EventWrites {
        self
    }

    async fn commit(&mut self) -> Result<CommitToken, StoreError> {
        if self.failed {
            self.tx.rollback().await?;
            return Err(StoreError::other(
                "cannot commit: a statement of this unit of work failed, so it was rolled back".to_owned(),
            ));
        }
        // Disjoint fields: the connection of `tx`, the commit of `backend`.
        let result = self.backend.commit(self.tx.conn()?).await;
        // Past the await, the commit ran: there is nothing left to roll back on drop. (A
        // commit cancelled before this point still rolls back when the transaction drops.)
        self.tx.ended();
        let token = result?;
        if self.appended_events {
            self.backend.wake_relay();
        }
        Ok(token)
    }

    async fn rollback(&mut self) -> Result<(), StoreError> {
        self.tx.rollback().await
    }
}
