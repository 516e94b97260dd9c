//! The unit of work: one read-committed transaction on a primary connection. Each method
//! delegates to its context's SQL function, the same one the read ports use.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres};
use time::OffsetDateTime;
use tokio::sync::Notify;

use core_domain::catalog::Product;
use core_domain::coupon::{Coupon, CouponCampaign};
use core_domain::event::DomainEvent;
use core_domain::insurance::{DrivingSession, Policy, PolicyAudit};
use core_domain::member::Member;
use core_domain::order::{Order, Payment};
use core_domain::wallet::LedgerEntry;
use core_domain::{CampaignId, CouponId, EventId, Krw, MemberId, OrderId, PolicyId, ProductId, SessionId};
use ports::{CommitToken, IdempotencyStart, StoreError, UnitOfWork};

use crate::codec::Lock;
use crate::{catalog, commerce, insurance, members, outbox, translate};

/// The token of a commit whose WAL position could not be read (the connection broke right
/// after `COMMIT` succeeded). It parses as no position, so reads that carry it go to the
/// primary, which has the write.
const UNKNOWN_POSITION: &str = "unknown";

/// The commit's position: the end of the WAL the primary has written. With
/// `synchronous_commit` on (or `local`, `remote_write`, `remote_apply`), `COMMIT` returns only
/// once the commit record is flushed, so the write position (`pg_current_wal_lsn()`) is at or
/// past it. With `synchronous_commit = off` the record may still sit in WAL buffers, so the
/// insert position is used instead: it is always past every record already inserted, but may
/// not have reached the replicas yet, so it costs reads a short wait, never a stale result.
const COMMIT_POSITION_SQL: &str = "select (case when current_setting('synchronous_commit') = 'off' \
     then pg_current_wal_insert_lsn() else pg_current_wal_lsn() end)::text";

/// An open transaction on a pooled primary connection. Dropped while open (an abandoned unit
/// of work, or a cancelled `commit`), it rolls back before the connection is reused.
struct OpenTransaction {
    conn: Option<PoolConnection<Postgres>>,
}

impl OpenTransaction {
    fn conn(&mut self) -> Result<&mut PgConnection, StoreError> {
        self.conn.as_deref_mut().ok_or_else(spent)
    }

    /// Ends the transaction with `statement` (`commit` or `rollback`) and hands the
    /// connection back; the transaction is over whether or not the statement succeeded
    /// (PostgreSQL rolls back a failed commit).
    async fn finish(&mut self, statement: &'static str) -> Result<PoolConnection<Postgres>, StoreError> {
        let conn = self.conn.as_deref_mut().ok_or_else(spent)?;
        let result = sqlx::query(statement).execute(&mut *conn).await;
        // Past the await: the statement ran, so there is nothing left to roll back on drop.
        let conn = self.conn.take().ok_or_else(spent)?;
        result.map_err(translate)?;
        Ok(conn)
    }
}

impl Drop for OpenTransaction {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if sqlx::query("rollback").execute(&mut *conn).await.is_err() {
                        conn.close_on_drop();
                    }
                });
            }
            // No runtime to roll back on: closing the socket makes the server abort it.
            Err(_) => drop(conn.detach()),
        }
    }
}

/// A [`UnitOfWork`] over PostgreSQL. Dropping it without committing rolls back.
pub struct PgUnitOfWork {
    /// `None` once committed or rolled back.
    tx: Option<OpenTransaction>,
    events: Arc<Notify>,
    /// Whether this transaction appended outbox rows (and so notified the relays).
    appended_events: bool,
    /// Whether a statement failed, which aborts a PostgreSQL transaction.
    failed: bool,
}

impl std::fmt::Debug for PgUnitOfWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgUnitOfWork")
            .field("open", &self.tx.is_some())
            .field("appended_events", &self.appended_events)
            .field("failed", &self.failed)
            .finish()
    }
}

fn spent() -> StoreError {
    StoreError::Other("the unit of work was already committed or rolled back".to_owned())
}

impl PgUnitOfWork {
    pub(crate) async fn begin(primary: &PgPool, events: Arc<Notify>) -> Result<Self, StoreError> {
        let conn = primary.acquire().await.map_err(translate)?;
        let mut tx = OpenTransaction { conn: Some(conn) };
        sqlx::query("begin isolation level read committed")
            .execute(tx.conn()?)
            .await
            .map_err(translate)?;
        Ok(Self {
            tx: Some(tx),
            events,
            appended_events: false,
            failed: false,
        })
    }

    fn conn(&mut self) -> Result<&mut PgConnection, StoreError> {
        self.tx.as_mut().ok_or_else(spent)?.conn()
    }

    /// Notes a failed statement: PostgreSQL has aborted the transaction, so a later commit
    /// must fail instead of silently rolling back.
    fn track<T>(&mut self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if result.is_err() {
            self.failed = true;
        }
        result
    }
}

#[async_trait]
impl UnitOfWork for PgUnitOfWork {
    // --- members -------------------------------------------------------------------

    async fn insert_member(&mut self, member: &Member) -> Result<(), StoreError> {
        let result = members::insert(self.conn()?, member).await;
        self.track(result)
    }

    async fn member(&mut self, id: MemberId) -> Result<Option<Member>, StoreError> {
        let result = members::by_id(self.conn()?, id, Lock::ForUpdate).await;
        self.track(result)
    }

    async fn member_by_email(&mut self, email: &str) -> Result<Option<Member>, StoreError> {
        let result = members::by_email(self.conn()?, email, Lock::ForUpdate).await;
        self.track(result)
    }

    async fn update_member(&mut self, member: &Member) -> Result<(), StoreError> {
        let result = members::update(self.conn()?, member).await;
        self.track(result)
    }

    async fn members_to_anonymise(
        &mut self,
        withdrawn_before: OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<Member>, StoreError> {
        let result = members::to_anonymise(self.conn()?, withdrawn_before, limit).await;
        self.track(result)
    }

    // --- insurance -----------------------------------------------------------------

    async fn insert_policy(&mut self, policy: &Policy) -> Result<(), StoreError> {
        let result = insurance::insert_policy(self.conn()?, policy).await;
        self.track(result)
    }

    async fn policy(&mut self, id: PolicyId) -> Result<Option<Policy>, StoreError> {
        let result = insurance::policy_by_id(self.conn()?, id, Lock::ForUpdate).await;
        self.track(result)
    }

    async fn policy_by_number(&mut self, policy_number: &str) -> Result<Option<Policy>, StoreError> {
        let result = insurance::policy_by_number(self.conn()?, policy_number, Lock::ForUpdate).await;
        self.track(result)
    }

    async fn policies_of_member(&mut self, member_id: MemberId) -> Result<Vec<Policy>, StoreError> {
        let result = insurance::policies_of_member(self.conn()?, member_id, Lock::ForUpdate).await;
        self.track(result)
    }

    async fn update_policy(&mut self, policy: &Policy, expected_version: i64) -> Result<(), StoreError> {
        let result = insurance::update_policy(self.conn()?, policy, expected_version).await;
        self.track(result)
    }

    async fn insert_policy_audit(&mut self, audit: &PolicyAudit) -> Result<(), StoreError> {
        let result = insurance::insert_audit(self.conn()?, audit).await;
        self.track(result)
    }

    async fn insert_session(&mut self, session: &DrivingSession) -> Result<(), StoreError> {
        let result = insurance::insert_session(self.conn()?, session).await;
        self.track(result)
    }

    async fn session(&mut self, id: SessionId) -> Result<Option<DrivingSession>, StoreError> {
        let result = insurance::session_by_id(self.conn()?, id, Lock::ForUpdate).await;
        self.track(result)
    }

    async fn update_session(&mut self, session: &DrivingSession) -> Result<(), StoreError> {
        let result = insurance::update_session(self.conn()?, session).await;
        self.track(result)
    }

    // --- catalogue -----------------------------------------------------------------

    async fn insert_product(&mut self, product: &Product) -> Result<(), StoreError> {
        let result = catalog::insert(self.conn()?, product).await;
        self.track(result)
    }

    async fn product(&mut self, id: ProductId) -> Result<Option<Product>, StoreError> {
        let result = catalog::by_id(self.conn()?, id, Lock::ForUpdate).await;
        self.track(result)
    }

    async fn update_product(&mut self, product: &Product) -> Result<(), StoreError> {
        let result = catalog::update(self.conn()?, product).await;
        self.track(result)
    }

    async fn take_stock(&mut self, id: ProductId, quantity: i64) -> Result<bool, StoreError> {
        let result = catalog::take_stock(self.conn()?, id, quantity).await;
        self.track(result)
    }

    async fn return_stock(&mut self, id: ProductId, quantity: i64) -> Result<(), StoreError> {
        let result = catalog::return_stock(self.conn()?, id, quantity).await;
        self.track(result)
    }

    // --- wallet --------------------------------------------------------------------

    async fn credit_points(
        &mut self,
        member_id: MemberId,
        amount: Krw,
        max_balance: Krw,
    ) -> Result<Option<Krw>, StoreError> {
        let result = commerce::credit_points(self.conn()?, member_id, amount, max_balance).await;
        self.track(result)
    }

    async fn debit_points(&mut self, member_id: MemberId, amount: Krw) -> Result<Option<Krw>, StoreError> {
        let result = commerce::debit_points(self.conn()?, member_id, amount).await;
        self.track(result)
    }

    async fn insert_ledger(&mut self, entry: &LedgerEntry) -> Result<(), StoreError> {
        let result = commerce::insert_ledger(self.conn()?, entry).await;
        self.track(result)
    }

    // --- coupons -------------------------------------------------------------------

    async fn insert_campaign(&mut self, campaign: &CouponCampaign) -> Result<(), StoreError> {
        let result = commerce::insert_campaign(self.conn()?, campaign).await;
        self.track(result)
    }

    async fn campaign(&mut self, id: CampaignId) -> Result<Option<CouponCampaign>, StoreError> {
        let result = commerce::campaign_by_id(self.conn()?, id, Lock::ForUpdate).await;
        self.track(result)
    }

    async fn claim_coupon_slot(&mut self, id: CampaignId) -> Result<bool, StoreError> {
        let result = commerce::claim_coupon_slot(self.conn()?, id).await;
        self.track(result)
    }

    async fn insert_coupon(&mut self, coupon: &Coupon) -> Result<(), StoreError> {
        let result = commerce::insert_coupon(self.conn()?, coupon).await;
        self.track(result)
    }

    async fn coupon(&mut self, id: CouponId) -> Result<Option<Coupon>, StoreError> {
        let result = commerce::coupon_by_id(self.conn()?, id, Lock::ForUpdate).await;
        self.track(result)
    }

    async fn update_coupon(&mut self, coupon: &Coupon) -> Result<(), StoreError> {
        let result = commerce::update_coupon(self.conn()?, coupon).await;
        self.track(result)
    }

    // --- orders and payments -------------------------------------------------------

    async fn insert_order(&mut self, order: &Order) -> Result<(), StoreError> {
        let result = commerce::insert_order(self.conn()?, order).await;
        self.track(result)
    }

    async fn order(&mut self, id: OrderId) -> Result<Option<Order>, StoreError> {
        let result = commerce::order_by_id(self.conn()?, id, Lock::ForUpdate).await;
        self.track(result)
    }

    async fn update_order(&mut self, order: &Order) -> Result<(), StoreError> {
        let result = commerce::update_order(self.conn()?, order).await;
        self.track(result)
    }

    async fn stale_orders(&mut self, created_before: OffsetDateTime, limit: i64) -> Result<Vec<Order>, StoreError> {
        let result = commerce::stale_orders(self.conn()?, created_before, limit).await;
        self.track(result)
    }

    async fn insert_payment(&mut self, payment: &Payment) -> Result<(), StoreError> {
        let result = commerce::insert_payment(self.conn()?, payment).await;
        self.track(result)
    }

    async fn begin_idempotent(
        &mut self,
        scope: &str,
        key: &str,
        fingerprint: &str,
    ) -> Result<IdempotencyStart, StoreError> {
        let result = commerce::begin_idempotent(self.conn()?, scope, key, fingerprint).await;
        self.track(result)
    }

    async fn complete_idempotent(&mut self, scope: &str, key: &str, response: &str) -> Result<(), StoreError> {
        let result = commerce::complete_idempotent(self.conn()?, scope, key, response).await;
        self.track(result)
    }

    // --- events --------------------------------------------------------------------

    async fn append_events(&mut self, events: &[DomainEvent]) -> Result<(), StoreError> {
        let first = !self.appended_events;
        let result = outbox::append(self.conn()?, events, first).await;
        self.track(result)?;
        self.appended_events |= !events.is_empty();
        Ok(())
    }

    async fn record_inbox(&mut self, consumer: &str, event_id: EventId) -> Result<bool, StoreError> {
        let result = outbox::record_inbox(self.conn()?, consumer, event_id).await;
        self.track(result)
    }

    // --- end -----------------------------------------------------------------------

    async fn commit(&mut self) -> Result<CommitToken, StoreError> {
        let mut tx = self.tx.take().ok_or_else(spent)?;
        if self.failed {
            tx.finish("rollback").await?;
            return Err(StoreError::Other(
                "cannot commit: a statement of this unit of work failed, so it was rolled back".to_owned(),
            ));
        }
        let mut conn = tx.finish("commit").await?;
        if self.appended_events {
            // Other instances hear of it through `pg_notify`; this one needs no round trip.
            self.events.notify_one();
        }
        let position: Result<String, _> = sqlx::query_scalar(COMMIT_POSITION_SQL).fetch_one(&mut *conn).await;
        match position {
            Ok(lsn) => Ok(CommitToken(lsn)),
            Err(e) => {
                // The commit is done: failing now would invite a retry of a write that happened.
                tracing::warn!(error = %e, "committed, but could not read the commit position");
                Ok(CommitToken(UNKNOWN_POSITION.to_owned()))
            }
        }
    }

    async fn rollback(&mut self) -> Result<(), StoreError> {
        let mut tx = self.tx.take().ok_or_else(spent)?;
        tx.finish("rollback").await?;
        Ok(())
    }
}
