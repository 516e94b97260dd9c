//! The read side: queries that name their consistency, so adapters can route them to a
//! replica (`Eventual`), to a replica that has caught up (`ReadYourWrites`) or the primary.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use core_domain::catalog::{PopularProduct, Product};
use core_domain::coupon::{Coupon, CouponCampaign};
use core_domain::insurance::{DrivingSession, InsurancePlan, InsurerCallback, Policy, PolicyAudit};
use core_domain::member::Member;
use core_domain::order::{Order, Payment};
use core_domain::wallet::LedgerEntry;
use core_domain::{CampaignId, CouponId, EventId, Krw, MemberId, OrderId, PlanId, PolicyId, ProductId, SessionId};

use crate::page::{Page, PageRequest, TimeKey};
use crate::store::{Consistency, StoreError};
use crate::unit_of_work::IdempotencyRecord;

/// The sort key of a member's policies: created at, id.
pub type PolicyKey = TimeKey<PolicyId>;
/// The sort key of a member's ledger: created at, the entry's insertion sequence.
pub type LedgerKey = TimeKey<i64>;
/// The sort key of a member's coupons: issued at, id.
pub type CouponKey = TimeKey<CouponId>;
/// The sort key of a member's orders: created at, id.
pub type OrderKey = TimeKey<OrderId>;

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
    /// One page of the members matching `query`, by e-mail (each page's key is its last
    /// member's e-mail).
    async fn search_members(
        &self,
        query: &MemberQuery,
        consistency: Consistency,
    ) -> Result<Page<Member, String>, StoreError>;
    /// Members withdrawn at or before `withdrawn_before` and not yet anonymised, after
    /// `after`, by id, at most `limit` (the anonymisation batch's work list).
    async fn members_to_anonymise(
        &self,
        withdrawn_before: OffsetDateTime,
        after: Option<MemberId>,
        limit: i64,
        consistency: Consistency,
    ) -> Result<Vec<MemberId>, StoreError>;
    /// How many [`members_to_anonymise`](Self::members_to_anonymise) there are after `after`.
    async fn count_members_to_anonymise(
        &self,
        withdrawn_before: OffsetDateTime,
        after: Option<MemberId>,
        consistency: Consistency,
    ) -> Result<i64, StoreError>;
}

/// A staff search over members, one page of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberQuery {
    /// What to match.
    pub pattern: MemberPattern,
    /// Which page: members whose e-mail sorts after `page.after` (the last of the previous
    /// page), at most `page.limit`.
    pub page: PageRequest<String>,
}

/// What a [`MemberQuery`] matches. Its strings are taken literally: `%` and `_` are not
/// wildcards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberPattern {
    /// E-mails starting with this (lower-cased by the caller).
    EmailPrefix(String),
    /// E-mails or names containing `text` (lower-cased by the caller; matched without
    /// regard to case), or, when `digits` is not empty, phone numbers containing `digits`.
    Anywhere {
        /// Lower-cased, not empty.
        text: String,
        /// Only ASCII digits; may be empty.
        digits: String,
    },
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
    /// One page of the member's policies, newest first (by creation time, then id).
    async fn policies_of_member(
        &self,
        member_id: MemberId,
        page: &PageRequest<PolicyKey>,
        consistency: Consistency,
    ) -> Result<Page<Policy, PolicyKey>, StoreError>;
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
    /// One page of the member's ledger, newest first (by time, then insertion order).
    async fn ledger(
        &self,
        member_id: MemberId,
        page: &PageRequest<LedgerKey>,
        consistency: Consistency,
    ) -> Result<Page<LedgerEntry, LedgerKey>, StoreError>;
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
    /// Campaigns by id (creation order), after `after` if given, at most `limit`.
    async fn campaigns(
        &self,
        after: Option<CampaignId>,
        limit: i64,
        consistency: Consistency,
    ) -> Result<Vec<CouponCampaign>, StoreError>;
    /// One page of the member's coupons, newest first (by issue time, then id).
    async fn coupons_of_member(
        &self,
        member_id: MemberId,
        page: &PageRequest<CouponKey>,
        consistency: Consistency,
    ) -> Result<Page<Coupon, CouponKey>, StoreError>;
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
    /// Pending orders created at or before `created_before`, after `after`, by id, at most
    /// `limit` (the stale-order batch's work list).
    async fn stale_order_ids(
        &self,
        created_before: OffsetDateTime,
        after: Option<OrderId>,
        limit: i64,
        consistency: Consistency,
    ) -> Result<Vec<OrderId>, StoreError>;
    /// How many [`stale_order_ids`](Self::stale_order_ids) there are after `after`.
    async fn count_stale_orders(
        &self,
        created_before: OffsetDateTime,
        after: Option<OrderId>,
        consistency: Consistency,
    ) -> Result<i64, StoreError>;
    /// One page of the member's orders with their lines, newest first (by creation time,
    /// then id).
    async fn orders_of_member(
        &self,
        member_id: MemberId,
        page: &PageRequest<OrderKey>,
        consistency: Consistency,
    ) -> Result<Page<Order, OrderKey>, StoreError>;
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

/// An outbox event as staff see it: what was written, whether the relay delivered it, and
/// which consumers applied it (their inbox records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailEvent {
    /// The event's id.
    pub id: EventId,
    /// Where it goes (`member-events`, …).
    pub topic: String,
    /// `member.withdrawn`, ….
    pub event_type: String,
    /// The aggregate it is about (the Kafka key).
    pub aggregate_id: Uuid,
    /// The JSON envelope.
    pub payload: String,
    /// `pending`, `sent` or `dead`.
    pub status: String,
    /// Failed publish attempts.
    pub attempts: i64,
    /// The last publish error, if any.
    pub last_error: Option<String>,
    /// When it was written.
    pub created_at: OffsetDateTime,
    /// When the relay published it.
    pub sent_at: Option<OffsetDateTime>,
    /// Consumers that applied it, in the order they did.
    pub consumed: Vec<Consumption>,
}

/// One consumer's record of having applied an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumption {
    /// The consumer (`insurance-expiry`, …).
    pub consumer: String,
    /// When its effect committed.
    pub processed_at: OffsetDateTime,
}

/// The trail staff follow: events written about an aggregate and who consumed them, and the
/// insurer callbacks a policy received.
///
/// # Errors (every method)
/// MUST return [`StoreError::Unavailable`] when no suitable server answers in time.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait EventTrailReads: Send + Sync {
    /// Outbox events whose aggregate is one of `aggregates`, newest first, at most `limit`,
    /// each with its inbox records.
    async fn events_of(
        &self,
        aggregates: &[Uuid],
        limit: i64,
        consistency: Consistency,
    ) -> Result<Vec<TrailEvent>, StoreError>;
    /// Whether `consumer` has recorded `event_id` in its inbox (applied or delivered it).
    async fn consumed(&self, consumer: &str, event_id: EventId, consistency: Consistency) -> Result<bool, StoreError>;
    /// The insurer callbacks recorded for the policy, oldest first.
    async fn insurer_callbacks(
        &self,
        policy_id: PolicyId,
        consistency: Consistency,
    ) -> Result<Vec<InsurerCallback>, StoreError>;
}
