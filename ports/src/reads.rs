//! The read side: queries that name their consistency, so adapters can route them to a
//! replica (`Eventual`), to a replica that has caught up (`ReadYourWrites`) or the primary.

use async_trait::async_trait;
use time::OffsetDateTime;

use core_domain::catalog::{PopularProduct, Product};
use core_domain::coupon::{Coupon, CouponCampaign};
use core_domain::insurance::{DrivingSession, InsurancePlan, Policy, PolicyAudit};
use core_domain::member::Member;
use core_domain::order::{Order, Payment};
use core_domain::wallet::LedgerEntry;
use core_domain::{CampaignId, Krw, MemberId, OrderId, PlanId, PolicyId, ProductId, SessionId};

use crate::store::{Consistency, StoreError};
use crate::unit_of_work::IdempotencyRecord;

/// Members, as reads see them.
///
/// # Errors (every method)
/// MUST return [`StoreError::Unavailable`] when no suitable server answers in time.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait MemberReads: Send + Sync {
    /// The member, if there is one.
    async fn member(&self, id: MemberId, consistency: Consistency) -> Result<Option<Member>, StoreError>;
    /// `email` is matched exactly (it is stored lower-cased).
    async fn member_by_email(&self, email: &str, consistency: Consistency) -> Result<Option<Member>, StoreError>;
    /// Members whose e-mail starts with `prefix`, by e-mail, at most `limit`.
    async fn search_members(
        &self,
        prefix: &str,
        limit: i64,
        consistency: Consistency,
    ) -> Result<Vec<Member>, StoreError>;
}

/// Policies, their audit trails and driving sessions, as reads see them.
///
/// # Errors (every method)
/// MUST return [`StoreError::Unavailable`] when no suitable server answers in time.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait InsuranceReads: Send + Sync {
    /// The policy, if there is one.
    async fn policy(&self, id: PolicyId, consistency: Consistency) -> Result<Option<Policy>, StoreError>;
    /// Newest first.
    async fn policies_of_member(
        &self,
        member_id: MemberId,
        consistency: Consistency,
    ) -> Result<Vec<Policy>, StoreError>;
    /// Audit trail of a policy, oldest first.
    async fn policy_audit(&self, id: PolicyId, consistency: Consistency) -> Result<Vec<PolicyAudit>, StoreError>;
    /// The driving session, if there is one.
    async fn session(&self, id: SessionId, consistency: Consistency) -> Result<Option<DrivingSession>, StoreError>;
    /// Sessions of the policy that overlap `[from, to)` (an open session overlaps if it
    /// started before `to`), oldest first.
    async fn sessions_of_policy(
        &self,
        policy_id: PolicyId,
        from: OffsetDateTime,
        to: OffsetDateTime,
        consistency: Consistency,
    ) -> Result<Vec<DrivingSession>, StoreError>;
    /// The plan, if there is one.
    async fn plan(&self, id: PlanId, consistency: Consistency) -> Result<Option<InsurancePlan>, StoreError>;
    /// Every plan (only the offered ones unless `with_retired`), by name.
    async fn plans(&self, with_retired: bool, consistency: Consistency) -> Result<Vec<InsurancePlan>, StoreError>;
}

/// The catalogue, as reads see it.
///
/// # Errors (every method)
/// MUST return [`StoreError::Unavailable`] when no suitable server answers in time.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait CatalogReads: Send + Sync {
    /// The product, if there is one.
    async fn product(&self, id: ProductId, consistency: Consistency) -> Result<Option<Product>, StoreError>;
    /// Products by id (creation order), after `after` if given, at most `limit`.
    async fn products(
        &self,
        after: Option<ProductId>,
        limit: i64,
        consistency: Consistency,
    ) -> Result<Vec<Product>, StoreError>;
    /// The top `limit` products by units in orders paid at or after `since`.
    async fn popular_products(
        &self,
        since: OffsetDateTime,
        limit: i64,
        consistency: Consistency,
    ) -> Result<Vec<PopularProduct>, StoreError>;
}

/// Point wallets and their ledger, as members read them.
///
/// # Errors (every method)
/// MUST return [`StoreError::Unavailable`] when no suitable server answers in time.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait WalletReads: Send + Sync {
    /// The member's balance; 0 for a member without a wallet yet.
    async fn balance(&self, member_id: MemberId, consistency: Consistency) -> Result<Krw, StoreError>;
    /// The member's ledger, newest first, at most `limit` rows.
    async fn ledger(
        &self,
        member_id: MemberId,
        limit: i64,
        consistency: Consistency,
    ) -> Result<Vec<LedgerEntry>, StoreError>;
}

/// Coupon campaigns and the coupons issued from them.
///
/// # Errors (every method)
/// MUST return [`StoreError::Unavailable`] when no suitable server answers in time.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait CouponReads: Send + Sync {
    /// A campaign, with its issued count as of the read.
    async fn campaign(&self, id: CampaignId, consistency: Consistency) -> Result<Option<CouponCampaign>, StoreError>;
    /// The member's coupons, newest first.
    async fn coupons_of_member(&self, member_id: MemberId, consistency: Consistency)
    -> Result<Vec<Coupon>, StoreError>;
}

/// Orders with their lines, and their payments.
///
/// # Errors (every method)
/// MUST return [`StoreError::Unavailable`] when no suitable server answers in time.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait OrderReads: Send + Sync {
    /// An order with its lines.
    async fn order(&self, id: OrderId, consistency: Consistency) -> Result<Option<Order>, StoreError>;
    /// The member's orders with their lines, newest first, at most `limit`.
    async fn orders_of_member(
        &self,
        member_id: MemberId,
        limit: i64,
        consistency: Consistency,
    ) -> Result<Vec<Order>, StoreError>;
    /// The payment of an order, if it was paid.
    async fn payment_of_order(
        &self,
        order_id: OrderId,
        consistency: Consistency,
    ) -> Result<Option<Payment>, StoreError>;
}

/// Idempotency keys, as reads see them: a retry that the fast path turns away (a sold-out
/// campaign, say) looks here for the response its first attempt stored, without a write.
///
/// # Errors (every method)
/// MUST return [`StoreError::Unavailable`] when no suitable server answers in time.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait IdempotencyReads: Send + Sync {
    /// What is stored under `(scope, key)`, if the key was used.
    async fn idempotency_record(
        &self,
        scope: &str,
        key: &str,
        consistency: Consistency,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;
}
