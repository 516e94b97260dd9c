//! The unit of work, once for every database: one transaction on a primary connection.
//! It implements every context's write port; each context module (`members`, `insurance`,
//! …) holds that impl next to its statements, so the unit of work and the read ports run
//! the same SQL. A failed statement spoils the transaction on every store alike
//! (PostgreSQL aborts it, and the others must not commit half of it either), so `commit`
//! then rolls back and fails.
//!
//! Writes whose results nobody reads are queued and go with the next statement (see
//! [`crate::batch`]), so a write's error can surface from a later statement or from the
//! commit; either way the unit of work fails and nothing of it is committed.

use std::sync::Arc;

use async_trait::async_trait;

use core_domain::MemberId;
use ports::{
    CatalogWrites, Claim, CommitToken, CouponWrites, EventWrites, IdempotencyWrites, InsuranceWrites, JobWrites,
    KeyClaim, LicenceWrites, MemberWrites, OrderWrites, StoreError, UnitOfWork, WalletWrites,
};

use crate::backend::{Backend, Transaction};
use crate::batch::{Queue, WorkConn};
use crate::sql::SqlConn as _;

/// A [`UnitOfWork`] over any [`Backend`]. Dropping it without committing rolls back.
pub struct SqlUnitOfWork<B: Backend> {
    tx: Transaction<B::Conn>,
    /// What has not been sent yet: queued writes, and the `begin` where it waits for the
    /// first statement.
    queue: Queue,
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
            .field("queue", &self.queue)
            .field("appended_events", &self.appended_events)
            .field("failed", &self.failed)
            .finish()
    }
}

impl<B: Backend> SqlUnitOfWork<B> {
    /// Begins a transaction on `conn`, a primary connection, when its first statement goes
    /// out (in the same script where the dialect sends scripts, [`Batch::Script`]); a unit of
    /// work that only queued writes may not need one ([`WorkConn::commit_alone`]).
    pub(crate) fn begin(conn: B::Conn, backend: Arc<B>) -> Self {
        let queue = Queue {
            begin: Some(conn.dialect().begin),
            writes: Vec::new(),
        };
        Self {
            tx: Transaction::new(conn),
            queue,
            backend,
            appended_events: false,
            failed: false,
        }
    }

    /// The transaction's connection, for a context's statement: what is queued goes first.
    pub(crate) fn conn(&mut self) -> Result<WorkConn<'_, B::Conn>, StoreError> {
        Ok(WorkConn::new(self.tx.conn()?, &mut self.queue))
    }

    /// Whether nothing of the transaction has reached the database, not even its `begin`:
    /// then there is nothing to roll back.
    fn unsent(&self) -> bool {
        self.queue.begin.is_some()
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

    fn licences(&mut self) -> &mut dyn LicenceWrites {
        self
    }

    fn jobs(&mut self) -> &mut dyn JobWrites {
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

    /// The key's reservation and the member's lock in one round trip where the dialect can.
    async fn claim_for_member(&mut self, key: Option<KeyClaim<'_>>, member_id: MemberId) -> Result<Claim, StoreError> {
        let result = crate::idempotency::claim_for_member(&mut self.conn()?, key, member_id).await;
        self.track(result)
    }

    async fn commit(&mut self) -> Result<CommitToken, StoreError> {
        if self.failed {
            self.rollback().await?;
            return Err(StoreError::other(
                "cannot commit: a statement of this unit of work failed, so it was rolled back".to_owned(),
            ));
        }
        // Disjoint fields: the connection of `tx` and the `queue`, the commit of `backend`.
        let result = {
            let mut conn = WorkConn::new(self.tx.conn()?, &mut self.queue);
            self.backend.commit(&mut conn).await
        };
        match result {
            Ok(token) => {
                // Past the await, the commit ran: there is nothing left to roll back on drop.
                // (A commit cancelled before this point still rolls back when the
                // transaction drops.)
                self.tx.ended();
                if self.appended_events {
                    self.backend.wake_relay();
                }
                Ok(token)
            }
            Err(e) => {
                // A queued write failed before the `commit` (the transaction is open), or the
                // `commit` did (it is over, and a `rollback` changes nothing): roll back
                // either way, so the connection goes back to its pool outside a transaction.
                self.failed = true;
                self.queue = Queue::default();
                if let Err(rollback) = self.tx.rollback().await {
                    tracing::debug!(error = %rollback, "rollback after a failed commit");
                }
                Err(e)
            }
        }
    }

    async fn rollback(&mut self) -> Result<(), StoreError> {
        if self.unsent() {
            self.queue = Queue::default();
            self.tx.ended();
            return Ok(());
        }
        self.queue = Queue::default();
        self.tx.rollback().await
    }
}

impl<B: Backend> Drop for SqlUnitOfWork<B> {
    /// A transaction whose `begin` never went out is not rolled back (there is none).
    fn drop(&mut self) {
        if self.unsent() {
            self.tx.ended();
        }
    }
}
