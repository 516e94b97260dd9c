//! The unit of work: one `begin immediate` transaction on the writer connection. Each method
//! delegates to its context's SQL function, the same one the read ports use.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use sqlx::{Sqlite, SqliteConnection, Transaction};
use time::OffsetDateTime;

use core_domain::catalog::Product;
use core_domain::coupon::{Coupon, CouponCampaign};
use core_domain::event::DomainEvent;
use core_domain::insurance::{DrivingSession, Policy, PolicyAudit};
use core_domain::member::Member;
use core_domain::order::{Order, Payment};
use core_domain::wallet::LedgerEntry;
use core_domain::{CampaignId, CouponId, EventId, Krw, MemberId, OrderId, PolicyId, ProductId, SessionId};
use ports::{CommitToken, IdempotencyStart, StoreError, UnitOfWork};

use crate::{Inner, catalog, commerce, insurance, members, outbox, translate};

/// A [`UnitOfWork`] over SQLite. Dropping it without committing rolls back (sqlx rolls the
/// transaction back when the connection returns to the pool).
pub struct SqliteUnitOfWork {
    /// `None` once committed or rolled back.
    tx: Option<Transaction<'static, Sqlite>>,
    store: Arc<Inner>,
    /// Whether the relay should be woken after commit.
    appended_events: bool,
}

impl std::fmt::Debug for SqliteUnitOfWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteUnitOfWork")
            .field("open", &self.tx.is_some())
            .field("appended_events", &self.appended_events)
            .finish()
    }
}

fn spent() -> StoreError {
    StoreError::Other("the unit of work was already committed or rolled back".to_owned())
}

impl SqliteUnitOfWork {
    pub(crate) fn new(tx: Transaction<'static, Sqlite>, store: Arc<Inner>) -> Self {
        Self {
            tx: Some(tx),
            store,
            appended_events: false,
        }
    }

    fn conn(&mut self) -> Result<&mut SqliteConnection, StoreError> {
        self.tx.as_deref_mut().ok_or_else(spent)
    }
}

#[async_trait]
impl UnitOfWork for SqliteUnitOfWork {
    // --- members -------------------------------------------------------------------

    async fn insert_member(&mut self, member: &Member) -> Result<(), StoreError> {
        members::insert(self.conn()?, member).await
    }

    async fn member(&mut self, id: MemberId) -> Result<Option<Member>, StoreError> {
        members::by_id(self.conn()?, id).await
    }

    async fn member_by_email(&mut self, email: &str) -> Result<Option<Member>, StoreError> {
        members::by_email(self.conn()?, email).await
    }

    async fn update_member(&mut self, member: &Member) -> Result<(), StoreError> {
        members::update(self.conn()?, member).await
    }

    async fn members_to_anonymise(
        &mut self,
        withdrawn_before: OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<Member>, StoreError> {
        members::to_anonymise(self.conn()?, withdrawn_before, limit).await
    }

    // --- insurance -----------------------------------------------------------------

    async fn insert_policy(&mut self, policy: &Policy) -> Result<(), StoreError> {
        insurance::insert_policy(self.conn()?, policy).await
    }

    async fn policy(&mut self, id: PolicyId) -> Result<Option<Policy>, StoreError> {
        insurance::policy_by_id(self.conn()?, id).await
    }

    async fn policy_by_number(&mut self, policy_number: &str) -> Result<Option<Policy>, StoreError> {
        insurance::policy_by_number(self.conn()?, policy_number).await
    }

    async fn policies_of_member(&mut self, member_id: MemberId) -> Result<Vec<Policy>, StoreError> {
        insurance::policies_of_member(self.conn()?, member_id).await
    }

    async fn update_policy(&mut self, policy: &Policy, expected_version: i64) -> Result<(), StoreError> {
        insurance::update_policy(self.conn()?, policy, expected_version).await
    }

    async fn insert_policy_audit(&mut self, audit: &PolicyAudit) -> Result<(), StoreError> {
        insurance::insert_audit(self.conn()?, audit).await
    }

    async fn insert_session(&mut self, session: &DrivingSession) -> Result<(), StoreError> {
        insurance::insert_session(self.conn()?, session).await
    }

    async fn session(&mut self, id: SessionId) -> Result<Option<DrivingSession>, StoreError> {
        insurance::session_by_id(self.conn()?, id).await
    }

    async fn update_session(&mut self, session: &DrivingSession) -> Result<(), StoreError> {
        insurance::update_session(self.conn()?, session).await
    }

    // --- catalogue -----------------------------------------------------------------

    async fn insert_product(&mut self, product: &Product) -> Result<(), StoreError> {
        catalog::insert(self.conn()?, product).await
    }

    async fn product(&mut self, id: ProductId) -> Result<Option<Product>, StoreError> {
        catalog::by_id(self.conn()?, id).await
    }

    async fn update_product(&mut self, product: &Product) -> Result<(), StoreError> {
        catalog::update(self.conn()?, product).await
    }

    async fn take_stock(&mut self, id: ProductId, quantity: i64) -> Result<bool, StoreError> {
        catalog::take_stock(self.conn()?, id, quantity).await
    }

    async fn return_stock(&mut self, id: ProductId, quantity: i64) -> Result<(), StoreError> {
        catalog::return_stock(self.conn()?, id, quantity).await
    }

    // --- wallet --------------------------------------------------------------------

    async fn credit_points(
        &mut self,
        member_id: MemberId,
        amount: Krw,
        max_balance: Krw,
    ) -> Result<Option<Krw>, StoreError> {
        commerce::credit_points(self.conn()?, member_id, amount, max_balance).await
    }

    async fn debit_points(&mut self, member_id: MemberId, amount: Krw) -> Result<Option<Krw>, StoreError> {
        commerce::debit_points(self.conn()?, member_id, amount).await
    }

    async fn insert_ledger(&mut self, entry: &LedgerEntry) -> Result<(), StoreError> {
        commerce::insert_ledger(self.conn()?, entry).await
    }

    // --- coupons -------------------------------------------------------------------

    async fn insert_campaign(&mut self, campaign: &CouponCampaign) -> Result<(), StoreError> {
        commerce::insert_campaign(self.conn()?, campaign).await
    }

    async fn campaign(&mut self, id: CampaignId) -> Result<Option<CouponCampaign>, StoreError> {
        commerce::campaign_by_id(self.conn()?, id).await
    }

    async fn claim_coupon_slot(&mut self, id: CampaignId) -> Result<bool, StoreError> {
        commerce::claim_coupon_slot(self.conn()?, id).await
    }

    async fn insert_coupon(&mut self, coupon: &Coupon) -> Result<(), StoreError> {
        commerce::insert_coupon(self.conn()?, coupon).await
    }

    async fn coupon(&mut self, id: CouponId) -> Result<Option<Coupon>, StoreError> {
        commerce::coupon_by_id(self.conn()?, id).await
    }

    async fn update_coupon(&mut self, coupon: &Coupon) -> Result<(), StoreError> {
        commerce::update_coupon(self.conn()?, coupon).await
    }

    // --- orders and payments -------------------------------------------------------

    async fn insert_order(&mut self, order: &Order) -> Result<(), StoreError> {
        commerce::insert_order(self.conn()?, order).await
    }

    async fn order(&mut self, id: OrderId) -> Result<Option<Order>, StoreError> {
        commerce::order_by_id(self.conn()?, id).await
    }

    async fn update_order(&mut self, order: &Order) -> Result<(), StoreError> {
        commerce::update_order(self.conn()?, order).await
    }

    async fn stale_orders(&mut self, created_before: OffsetDateTime, limit: i64) -> Result<Vec<Order>, StoreError> {
        commerce::stale_orders(self.conn()?, created_before, limit).await
    }

    async fn insert_payment(&mut self, payment: &Payment) -> Result<(), StoreError> {
        commerce::insert_payment(self.conn()?, payment).await
    }

    async fn begin_idempotent(
        &mut self,
        scope: &str,
        key: &str,
        fingerprint: &str,
    ) -> Result<IdempotencyStart, StoreError> {
        commerce::begin_idempotent(self.conn()?, scope, key, fingerprint).await
    }

    async fn complete_idempotent(&mut self, scope: &str, key: &str, response: &str) -> Result<(), StoreError> {
        commerce::complete_idempotent(self.conn()?, scope, key, response).await
    }

    // --- events --------------------------------------------------------------------

    async fn append_events(&mut self, events: &[DomainEvent]) -> Result<(), StoreError> {
        outbox::append(self.conn()?, events).await?;
        self.appended_events |= !events.is_empty();
        Ok(())
    }

    async fn record_inbox(&mut self, consumer: &str, event_id: EventId) -> Result<bool, StoreError> {
        outbox::record_inbox(self.conn()?, consumer, event_id).await
    }

    // --- end -----------------------------------------------------------------------

    async fn commit(&mut self) -> Result<CommitToken, StoreError> {
        let tx = self.tx.take().ok_or_else(spent)?;
        tx.commit().await.map_err(translate)?;
        if self.appended_events {
            self.store.events.notify_one();
        }
        let seq = self.store.commits.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(CommitToken(seq.to_string()))
    }

    async fn rollback(&mut self) -> Result<(), StoreError> {
        let tx = self.tx.take().ok_or_else(spent)?;
        tx.rollback().await.map_err(translate)
    }
}
