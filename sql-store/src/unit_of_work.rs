//! The unit of work, once for every database: one transaction on a primary connection.
//! Each method runs its context's statement, the same one the read ports use. A failed
//! statement spoils the transaction on every store alike (PostgreSQL aborts it, and the
//! others must not commit half of it either), so `commit` then rolls back and fails.

use std::sync::Arc;

use async_trait::async_trait;
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

use crate::backend::{Backend, Transaction};
use crate::sql::Lock;
use crate::{catalog, coupons, events, idempotency, insurance, members, orders, wallet};

/// A [`UnitOfWork`] over any [`Backend`]. Dropping it without committing rolls back.
pub struct SqlUnitOfWork<B: Backend> {
    tx: Transaction<B::Conn>,
    backend: Arc<B>,
    /// Whether this transaction appended outbox rows (and so told the relays).
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

    fn conn(&mut self) -> Result<&mut B::Conn, StoreError> {
        self.tx.conn()
    }

    /// Notes a failed statement, so a later commit fails instead of committing part of the
    /// work (or, on PostgreSQL, silently rolling it back).
    fn track<T>(&mut self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if result.is_err() {
            self.failed = true;
        }
        result
    }
}

#[async_trait]
impl<B: Backend> UnitOfWork for SqlUnitOfWork<B> {
    // --- members -------------------------------------------------------------

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

    // --- insurance -----------------------------------------------------------

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

    // --- catalogue -----------------------------------------------------------

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

    // --- wallet --------------------------------------------------------------

    async fn credit_points(
        &mut self,
        member_id: MemberId,
        amount: Krw,
        max_balance: Krw,
    ) -> Result<Option<Krw>, StoreError> {
        let result = wallet::credit_points(self.conn()?, member_id, amount, max_balance).await;
        self.track(result)
    }

    async fn debit_points(&mut self, member_id: MemberId, amount: Krw) -> Result<Option<Krw>, StoreError> {
        let result = wallet::debit_points(self.conn()?, member_id, amount).await;
        self.track(result)
    }

    async fn insert_ledger(&mut self, entry: &LedgerEntry) -> Result<(), StoreError> {
        let result = wallet::insert_ledger(self.conn()?, entry).await;
        self.track(result)
    }

    // --- coupons -------------------------------------------------------------

    async fn insert_campaign(&mut self, campaign: &CouponCampaign) -> Result<(), StoreError> {
        let result = coupons::insert_campaign(self.conn()?, campaign).await;
        self.track(result)
    }

    async fn campaign(&mut self, id: CampaignId) -> Result<Option<CouponCampaign>, StoreError> {
        let result = coupons::campaign_by_id(self.conn()?, id, Lock::ForUpdate).await;
        self.track(result)
    }

    async fn claim_coupon_slot(&mut self, id: CampaignId) -> Result<bool, StoreError> {
        let result = coupons::claim_coupon_slot(self.conn()?, id).await;
        self.track(result)
    }

    async fn insert_coupon(&mut self, coupon: &Coupon) -> Result<(), StoreError> {
        let result = coupons::insert_coupon(self.conn()?, coupon).await;
        self.track(result)
    }

    async fn coupon(&mut self, id: CouponId) -> Result<Option<Coupon>, StoreError> {
        let result = coupons::coupon_by_id(self.conn()?, id, Lock::ForUpdate).await;
        self.track(result)
    }

    async fn update_coupon(&mut self, coupon: &Coupon) -> Result<(), StoreError> {
        let result = coupons::update_coupon(self.conn()?, coupon).await;
        self.track(result)
    }

    // --- orders and payments -------------------------------------------------

    async fn insert_order(&mut self, order: &Order) -> Result<(), StoreError> {
        let result = orders::insert_order(self.conn()?, order).await;
        self.track(result)
    }

    async fn order(&mut self, id: OrderId) -> Result<Option<Order>, StoreError> {
        let result = orders::order_by_id(self.conn()?, id, Lock::ForUpdate).await;
        self.track(result)
    }

    async fn update_order(&mut self, order: &Order) -> Result<(), StoreError> {
        let result = orders::update_order(self.conn()?, order).await;
        self.track(result)
    }

    async fn stale_orders(&mut self, created_before: OffsetDateTime, limit: i64) -> Result<Vec<Order>, StoreError> {
        let result = orders::stale_orders(self.conn()?, created_before, limit).await;
        self.track(result)
    }

    async fn insert_payment(&mut self, payment: &Payment) -> Result<(), StoreError> {
        let result = orders::insert_payment(self.conn()?, payment).await;
        self.track(result)
    }

    async fn begin_idempotent(
        &mut self,
        scope: &str,
        key: &str,
        fingerprint: &str,
    ) -> Result<IdempotencyStart, StoreError> {
        let result = idempotency::begin_idempotent(self.conn()?, scope, key, fingerprint).await;
        self.track(result)
    }

    async fn complete_idempotent(&mut self, scope: &str, key: &str, response: &str) -> Result<(), StoreError> {
        let result = idempotency::complete_idempotent(self.conn()?, scope, key, response).await;
        self.track(result)
    }

    // --- events --------------------------------------------------------------------

    async fn append_events(&mut self, events: &[DomainEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let result = events::append(self.conn()?, events).await;
        self.track(result)?;
        if !self.appended_events {
            // Disjoint fields: the connection of `tx`, the hook of `backend`.
            let result = self.backend.events_appended(self.tx.conn()?).await;
            self.track(result)?;
            self.appended_events = true;
        }
        Ok(())
    }

    async fn record_inbox(&mut self, consumer: &str, event_id: EventId) -> Result<bool, StoreError> {
        let result = events::record_inbox(self.conn()?, consumer, event_id).await;
        self.track(result)
    }

    // --- end -----------------------------------------------------------------------

    async fn commit(&mut self) -> Result<CommitToken, StoreError> {
        if self.failed {
            self.tx.rollback().await?;
            return Err(StoreError::other(
                "cannot commit: a statement of this unit of work failed, so it was rolled back".to_owned(),
            ));
        }
        let mut conn = self.tx.commit().await?;
        let token = self.backend.commit_token(&mut conn).await;
        if self.appended_events {
            self.backend.wake_relay();
        }
        Ok(token)
    }

    async fn rollback(&mut self) -> Result<(), StoreError> {
        self.tx.rollback().await
    }
}
