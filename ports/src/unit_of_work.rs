//! The write side: a unit of work is one database transaction on the primary, whose commit
//! returns a consistency token so a member's later reads can demand to see that write.
//!
//! Its statements are grouped by bounded context, one trait each, reached through the unit of
//! work: `uow.members().by_id(id)`, `uow.orders().insert_order(&order)`, … A transaction
//! implements every context trait; a use case names only the contexts it touches.
//!
//! # Errors (every method of every context)
//! Besides what a method's own `# Errors` says, every method:
//! - MUST return [`StoreError::Conflict`] naming the rule when a uniqueness rule is violated;
//! - MUST return [`StoreError::Concurrency`] on serialization failures and deadlocks (the
//!   whole unit of work may be run again);
//! - MUST return [`StoreError::Unavailable`] when the connection is lost or times out;
//! - MUST leave the unit of work unable to commit once it has failed: [`UnitOfWork::commit`]
//!   then rolls back and returns [`StoreError::Other`].
//!
//! A write that returns nothing but `()` (an insert, a status update, an outbox row) MAY be
//! sent later, with the unit of work's next statement or its commit, so that several share a
//! round trip: its error, a conflict included, then comes from that later call, and the unit
//! of work fails the same way. A use case that must tell one write's conflict from the rest
//! reads it where the write returns something (`insert` of a member, `begin` of a key).
//!
//! Methods that read a row for change (`by_id`, `policy_by_id`, `order_by_id`, …) lock it
//! where the database supports row locks, so two transactions cannot both act on one state.

use async_trait::async_trait;
use time::OffsetDateTime;

use core_domain::catalog::Product;
use core_domain::coupon::{Coupon, CouponCampaign};
use core_domain::event::DomainEvent;
use core_domain::insurance::{DrivingSession, InsurancePlan, InsurerCallback, Policy, PolicyAudit};
use core_domain::member::Member;
use core_domain::order::{Order, Payment};
use core_domain::wallet::LedgerEntry;
use core_domain::{CampaignId, CouponId, EventId, Krw, MemberId, OrderId, PlanId, PolicyId, ProductId, SessionId};

use crate::jobs::JobWrites;
use crate::licences::LicenceWrites;
use crate::store::{CommitToken, StoreError};

/// Opens units of work on the primary.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait Database: Send + Sync {
    /// Begins a transaction on the primary.
    ///
    /// # Errors
    /// MUST return [`StoreError::Unavailable`] when no connection can be had in time.
    async fn begin(&self) -> Result<Box<dyn UnitOfWork>, StoreError>;
}

/// One database transaction on the primary. Every context's statements run inside it;
/// nothing is visible to others until [`UnitOfWork::commit`]. Dropping it without
/// committing rolls back. See the [module](self) for the error contract of every method.
#[async_trait]
pub trait UnitOfWork: Send {
    /// Members: registration, profile, withdrawal, anonymisation.
    fn members(&mut self) -> &mut dyn MemberWrites;
    /// Insurance: policies, their audit trail and driving sessions.
    fn insurance(&mut self) -> &mut dyn InsuranceWrites;
    /// Driving licences and their checks.
    fn licences(&mut self) -> &mut dyn LicenceWrites;
    /// A batch job's progress, committed with the chunk it records.
    fn jobs(&mut self) -> &mut dyn JobWrites;
    /// The product catalogue and its stock.
    fn catalog(&mut self) -> &mut dyn CatalogWrites;
    /// Point wallets and their ledger.
    fn wallet(&mut self) -> &mut dyn WalletWrites;
    /// Coupon campaigns and issued coupons.
    fn coupons(&mut self) -> &mut dyn CouponWrites;
    /// Orders and payments.
    fn orders(&mut self) -> &mut dyn OrderWrites;
    /// Idempotency keys of requests that must not run twice.
    fn idempotency(&mut self) -> &mut dyn IdempotencyWrites;
    /// The outbox and the consumers' inbox.
    fn events(&mut self) -> &mut dyn EventWrites;

    /// How a member's keyed request starts: reserves `key` as [`IdempotencyWrites::begin`]
    /// does and, unless the key was used before, reads the member locked for change as
    /// [`MemberWrites::by_id`] does. Without a key, only the member. A store that can sends
    /// both in one round trip (the member's lock is then taken even for a key seen before,
    /// and let go with the rollback that follows); this provided method makes the two calls.
    ///
    /// # Errors
    /// As the two methods.
    async fn claim_for_member(&mut self, key: Option<KeyClaim<'_>>, member_id: MemberId) -> Result<Claim, StoreError> {
        if let Some(key) = key
            && let IdempotencyStart::Seen(record) =
                self.idempotency().begin(key.scope, key.key, key.fingerprint).await?
        {
            return Ok(Claim::Seen(record));
        }
        Ok(Claim::Member(self.members().by_id(member_id).await?))
    }

    /// Commits and returns the commit's consistency token. The unit of work is spent after.
    ///
    /// # Errors
    /// MUST return [`StoreError::Other`] (after rolling back) when a statement of this unit
    /// of work failed, and [`StoreError::Unavailable`] when the commit's outcome is unknown.
    async fn commit(&mut self) -> Result<CommitToken, StoreError>;
    /// Rolls back. The unit of work is spent after.
    ///
    /// # Errors
    /// MUST return [`StoreError::Unavailable`] when the connection is lost (the database
    /// rolls back on its own then).
    async fn rollback(&mut self) -> Result<(), StoreError>;
}

/// Members inside a unit of work.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait MemberWrites: Send {
    /// Stores a new member.
    ///
    /// # Errors
    /// MUST return [`StoreError::Conflict`]`(`[`Unique::MemberEmail`](crate::Unique::MemberEmail)`)`
    /// if the e-mail is taken.
    async fn insert(&mut self, member: &Member) -> Result<(), StoreError>;
    /// The member, locked for change; `None` if there is none.
    ///
    /// # Errors
    /// Only those of every method.
    async fn by_id(&mut self, id: MemberId) -> Result<Option<Member>, StoreError>;
    /// The member with this (lower-cased) e-mail, locked for change.
    ///
    /// # Errors
    /// Only those of every method.
    async fn by_email(&mut self, email: &str) -> Result<Option<Member>, StoreError>;
    /// Saves every mutable field of the member.
    ///
    /// # Errors
    /// MUST return [`StoreError::Conflict`]`(`[`Unique::MemberEmail`](crate::Unique::MemberEmail)`)`
    /// if the new e-mail is taken, [`StoreError::Other`] if the member does not exist.
    async fn update(&mut self, member: &Member) -> Result<(), StoreError>;
    /// Of the members `ids`, those withdrawn at or before `withdrawn_before` and not yet
    /// anonymised, locked, by id (a batch's chunk re-checking its work list).
    ///
    /// # Errors
    /// Only those of every method.
    async fn to_anonymise(
        &mut self,
        ids: &[MemberId],
        withdrawn_before: OffsetDateTime,
    ) -> Result<Vec<Member>, StoreError>;
}

/// Policies, their audit trail and driving sessions inside a unit of work.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait InsuranceWrites: Send {
    /// Stores a new policy.
    ///
    /// # Errors
    /// MUST return [`StoreError::Conflict`] with [`Unique::PolicyNumber`](crate::Unique::PolicyNumber)
    /// for a taken policy number, [`Unique::ActivePolicy`](crate::Unique::ActivePolicy) when
    /// the member already holds an active policy.
    async fn insert_policy(&mut self, policy: &Policy) -> Result<(), StoreError>;
    /// The policy, locked for change.
    ///
    /// # Errors
    /// Only those of every method.
    async fn policy_by_id(&mut self, id: PolicyId) -> Result<Option<Policy>, StoreError>;
    /// The policy with this insurer reference, locked for change.
    ///
    /// # Errors
    /// Only those of every method.
    async fn policy_by_number(&mut self, policy_number: &str) -> Result<Option<Policy>, StoreError>;
    /// Every policy of the member, newest first, locked for change.
    ///
    /// # Errors
    /// Only those of every method.
    async fn policies_of_member(&mut self, member_id: MemberId) -> Result<Vec<Policy>, StoreError>;
    /// Saves `policy` if the stored version is still `expected_version`.
    ///
    /// # Errors
    /// MUST return [`StoreError::Concurrency`] when the stored version is another one (a
    /// concurrent change won; the caller may run its unit of work again).
    async fn update_policy(&mut self, policy: &Policy, expected_version: i64) -> Result<(), StoreError>;
    /// Appends an entry to a policy's audit trail.
    ///
    /// # Errors
    /// Only those of every method.
    async fn insert_audit(&mut self, audit: &PolicyAudit) -> Result<(), StoreError>;
    /// Records an insurer callback that was applied (the inbox has its id).
    ///
    /// # Errors
    /// Only those of every method.
    async fn insert_insurer_callback(&mut self, callback: &InsurerCallback) -> Result<(), StoreError>;
    /// Stores a new driving session.
    ///
    /// # Errors
    /// MUST return [`StoreError::Conflict`]`(`[`Unique::OpenSession`](crate::Unique::OpenSession)`)`
    /// when the rider already has an open session.
    async fn insert_session(&mut self, session: &DrivingSession) -> Result<(), StoreError>;
    /// The driving session, locked for change.
    ///
    /// # Errors
    /// Only those of every method.
    async fn session_by_id(&mut self, id: SessionId) -> Result<Option<DrivingSession>, StoreError>;
    /// Saves the session's start and end.
    ///
    /// # Errors
    /// MUST return [`StoreError::Conflict`]`(`[`Unique::OpenSession`](crate::Unique::OpenSession)`)`
    /// when reopening it beside another open session, [`StoreError::Other`] if it does not
    /// exist.
    async fn update_session(&mut self, session: &DrivingSession) -> Result<(), StoreError>;
    /// Stores a new plan.
    ///
    /// # Errors
    /// Only those of every method.
    async fn insert_plan(&mut self, plan: &InsurancePlan) -> Result<(), StoreError>;
    /// The plan as this transaction reads it, unlocked: enrolments must not queue behind
    /// one row, and a plan change racing an enrolment may order either way.
    ///
    /// # Errors
    /// Only those of every method.
    async fn plan_by_id(&mut self, id: PlanId) -> Result<Option<InsurancePlan>, StoreError>;
    /// The plan, locked for update until the transaction ends: for a change of the plan, so
    /// two concurrent changes do not lose one.
    ///
    /// # Errors
    /// Only those of every method.
    async fn plan_for_update(&mut self, id: PlanId) -> Result<Option<InsurancePlan>, StoreError>;
    /// Stores a changed plan.
    ///
    /// # Errors
    /// MUST return [`StoreError::Other`] if the plan does not exist.
    async fn update_plan(&mut self, plan: &InsurancePlan) -> Result<(), StoreError>;
}

/// The product catalogue inside a unit of work.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait CatalogWrites: Send {
    /// Stores a new product.
    ///
    /// # Errors
    /// Only those of every method.
    async fn insert(&mut self, product: &Product) -> Result<(), StoreError>;
    /// The product, locked for change.
    ///
    /// # Errors
    /// Only those of every method.
    async fn by_id(&mut self, id: ProductId) -> Result<Option<Product>, StoreError>;
    /// Saves the product's name, price, stock and `updated_at`.
    ///
    /// # Errors
    /// MUST return [`StoreError::Other`] if the product does not exist.
    async fn update(&mut self, product: &Product) -> Result<(), StoreError>;
    /// Atomically `stock -= quantity` if `stock >= quantity`: the product as the take left
    /// it (locked for change, like [`by_id`](Self::by_id)), or `None` when there is not
    /// enough stock or no such product.
    ///
    /// # Errors
    /// Only those of every method.
    async fn take_stock(&mut self, id: ProductId, quantity: i64) -> Result<Option<Product>, StoreError>;
    /// Atomically `stock += quantity` (a cancelled order gives its units back).
    ///
    /// # Errors
    /// MUST return [`StoreError::Other`] if the product does not exist.
    async fn return_stock(&mut self, id: ProductId, quantity: i64) -> Result<(), StoreError>;
}

/// Point wallets inside a unit of work.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait WalletWrites: Send {
    /// Atomically adds `amount` if the balance stays `<= max_balance`; the new balance, or
    /// `None` when it would exceed it. Creates the wallet at 0 first if needed.
    ///
    /// # Errors
    /// Only those of every method.
    async fn credit_points(
        &mut self,
        member_id: MemberId,
        amount: Krw,
        max_balance: Krw,
    ) -> Result<Option<Krw>, StoreError>;
    /// Atomically takes `amount` if the balance stays `>= 0`; the new balance, or `None`.
    ///
    /// # Errors
    /// Only those of every method.
    async fn debit_points(&mut self, member_id: MemberId, amount: Krw) -> Result<Option<Krw>, StoreError>;
    /// Appends a row to the member's ledger.
    ///
    /// # Errors
    /// Only those of every method.
    async fn insert_ledger(&mut self, entry: &LedgerEntry) -> Result<(), StoreError>;
}

/// Coupon campaigns and coupons inside a unit of work.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait CouponWrites: Send {
    /// Stores a new coupon campaign.
    ///
    /// # Errors
    /// Only those of every method.
    async fn insert_campaign(&mut self, campaign: &CouponCampaign) -> Result<(), StoreError>;
    /// The campaign, locked for change.
    ///
    /// # Errors
    /// Only those of every method.
    async fn campaign_by_id(&mut self, id: CampaignId) -> Result<Option<CouponCampaign>, StoreError>;
    /// Atomically `issued_count += 1` if `issued_count < total_quantity`; `false` when sold out.
    ///
    /// # Errors
    /// Only those of every method.
    async fn claim_coupon_slot(&mut self, id: CampaignId) -> Result<bool, StoreError>;
    /// Stores an issued coupon.
    ///
    /// # Errors
    /// MUST return [`StoreError::Conflict`]`(`[`Unique::CouponPerMember`](crate::Unique::CouponPerMember)`)`
    /// when the member already holds a coupon of the campaign.
    async fn insert_coupon(&mut self, coupon: &Coupon) -> Result<(), StoreError>;
    /// The coupon, locked for change.
    ///
    /// # Errors
    /// Only those of every method.
    async fn coupon_by_id(&mut self, id: CouponId) -> Result<Option<Coupon>, StoreError>;
    /// Saves the coupon's status, order and expiry.
    ///
    /// # Errors
    /// MUST return [`StoreError::Other`] if the coupon does not exist.
    async fn update_coupon(&mut self, coupon: &Coupon) -> Result<(), StoreError>;
}

/// Orders and payments inside a unit of work.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait OrderWrites: Send {
    /// Stores a new order with its lines, in line order.
    ///
    /// # Errors
    /// Only those of every method.
    async fn insert_order(&mut self, order: &Order) -> Result<(), StoreError>;
    /// The order with its lines, locked for change.
    ///
    /// # Errors
    /// Only those of every method.
    async fn order_by_id(&mut self, id: OrderId) -> Result<Option<Order>, StoreError>;
    /// Saves status, `paid_at` and `cancelled_at`.
    ///
    /// # Errors
    /// MUST return [`StoreError::Other`] if the order does not exist.
    async fn update_order(&mut self, order: &Order) -> Result<(), StoreError>;
    /// Of the orders `ids`, those still pending and created at or before `created_before`,
    /// with their lines, locked, by id (a batch's chunk re-checking its work list).
    ///
    /// # Errors
    /// Only those of every method.
    async fn stale_orders(&mut self, ids: &[OrderId], created_before: OffsetDateTime)
    -> Result<Vec<Order>, StoreError>;
    /// Stores the payment of an order (one per order).
    ///
    /// # Errors
    /// Only those of every method.
    async fn insert_payment(&mut self, payment: &Payment) -> Result<(), StoreError>;
}

/// A key used before: the request that used it first and, once done, its response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// The fingerprint of the request that used the key first.
    pub fingerprint: String,
    /// Its response, once its unit of work committed; `None` while it is in progress.
    pub response: Option<String>,
}

/// An idempotency key to reserve: see [`IdempotencyWrites::begin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyClaim<'a> {
    /// What the key protects, for whom (`order:<member id>`).
    pub scope: &'a str,
    /// The client's key.
    pub key: &'a str,
    /// The fingerprint of the request that came with it.
    pub fingerprint: &'a str,
}

/// What [`UnitOfWork::claim_for_member`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key was used before: what is stored under it.
    Seen(IdempotencyRecord),
    /// The key is now reserved by this transaction (or there was none), and the member,
    /// locked for change; `None` if there is none.
    Member(Option<Member>),
}

/// What [`IdempotencyWrites::begin`] found under a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyStart {
    /// The key is new and now reserved by this transaction.
    New,
    /// The key was used before.
    Seen(IdempotencyRecord),
}

/// Idempotency keys inside a unit of work: a request's effects and its stored response
/// commit together, so a retried request finds the response instead of running again.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait IdempotencyWrites: Send {
    /// Reserves `(scope, key)` for this transaction, or reports what was stored under it. A
    /// concurrent transaction holding the same key makes this wait for it to finish.
    ///
    /// # Errors
    /// Only those of every method.
    async fn begin(&mut self, scope: &str, key: &str, fingerprint: &str) -> Result<IdempotencyStart, StoreError>;
    /// Stores the response for a key reserved by [`IdempotencyWrites::begin`].
    ///
    /// # Errors
    /// MUST return [`StoreError::Other`] if this transaction did not reserve the key.
    async fn complete(&mut self, scope: &str, key: &str, response: &str) -> Result<(), StoreError>;
}

/// The outbox and the inbox inside a unit of work: events commit with the change they
/// describe, and a consumer's effects commit with the record that it saw the event.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait EventWrites: Send {
    /// Appends events to the outbox, in order.
    ///
    /// # Errors
    /// Only those of every method.
    async fn append(&mut self, events: &[DomainEvent]) -> Result<(), StoreError>;
    /// Records that `consumer` applied `event_id`; `false` if it already had (a redelivery).
    ///
    /// # Errors
    /// Only those of every method.
    async fn record_inbox(&mut self, consumer: &str, event_id: EventId) -> Result<bool, StoreError>;
    /// Records that `consumer` delivered `event_id` somewhere outside this database (the data
    /// platform), for a consumer that checked its inbox before delivering: nothing to read
    /// back, so it may go with the commit, and a unit of work of this write alone may be one
    /// statement without a transaction.
    ///
    /// # Errors
    /// Only those of every method; a record already there (a concurrent delivery) MAY be a
    /// [`StoreError::Conflict`], from this call or from the commit.
    async fn record_delivery(&mut self, consumer: &str, event_id: EventId) -> Result<(), StoreError>;
}

#[cfg(feature = "mocks")]
pub use mock::MockUnitOfWork;

#[cfg(feature = "mocks")]
mod mock {
    use super::*;

    mockall::mock! {
        /// The end of a [`MockUnitOfWork`]: its commit and rollback.
        pub End {
            /// See [`UnitOfWork::commit`].
            pub async fn commit(&mut self) -> Result<CommitToken, StoreError>;
            /// See [`UnitOfWork::rollback`].
            pub async fn rollback(&mut self) -> Result<(), StoreError>;
        }
    }

    /// A unit of work of strict mocks, one per context: a test sets expectations on the
    /// contexts its use case touches (`uow.orders.expect_insert_order()`), and any other
    /// call fails it.
    #[derive(Default)]
    pub struct MockUnitOfWork {
        /// See [`UnitOfWork::members`].
        pub members: MockMemberWrites,
        /// See [`UnitOfWork::insurance`].
        pub insurance: MockInsuranceWrites,
        /// See [`UnitOfWork::licences`].
        pub licences: crate::licences::MockLicenceWrites,
        /// See [`UnitOfWork::jobs`].
        pub jobs: crate::jobs::MockJobWrites,
        /// See [`UnitOfWork::catalog`].
        pub catalog: MockCatalogWrites,
        /// See [`UnitOfWork::wallet`].
        pub wallet: MockWalletWrites,
        /// See [`UnitOfWork::coupons`].
        pub coupons: MockCouponWrites,
        /// See [`UnitOfWork::orders`].
        pub orders: MockOrderWrites,
        /// See [`UnitOfWork::idempotency`].
        pub idempotency: MockIdempotencyWrites,
        /// See [`UnitOfWork::events`].
        pub events: MockEventWrites,
        /// Commit and rollback.
        pub end: MockEnd,
    }

    impl MockUnitOfWork {
        /// A unit of work expecting no call at all.
        pub fn new() -> Self {
            Self::default()
        }

        /// Expects exactly one commit, which succeeds with token `"1"`.
        pub fn commits(&mut self) {
            self.end
                .expect_commit()
                .times(1)
                .returning(|| Ok(CommitToken("1".into())));
        }

        /// Expects exactly one append to the outbox, of events of these types in this order.
        pub fn emits(&mut self, types: &[&'static str]) {
            let types = types.to_vec();
            self.events
                .expect_append()
                .withf(move |events| events.iter().map(DomainEvent::event_type).eq(types.iter().copied()))
                .times(1)
                .returning(|_| Ok(()));
        }

        /// Expects the request's idempotency key to be new: `begin` reserves it once.
        pub fn reserves_key(&mut self) {
            self.idempotency
                .expect_begin()
                .times(1)
                .returning(|_, _, _| Ok(IdempotencyStart::New));
        }
    }

    #[async_trait]
    impl UnitOfWork for MockUnitOfWork {
        fn members(&mut self) -> &mut dyn MemberWrites {
            &mut self.members
        }
        fn insurance(&mut self) -> &mut dyn InsuranceWrites {
            &mut self.insurance
        }
        fn licences(&mut self) -> &mut dyn LicenceWrites {
            &mut self.licences
        }
        fn jobs(&mut self) -> &mut dyn JobWrites {
            &mut self.jobs
        }
        fn catalog(&mut self) -> &mut dyn CatalogWrites {
            &mut self.catalog
        }
        fn wallet(&mut self) -> &mut dyn WalletWrites {
            &mut self.wallet
        }
        fn coupons(&mut self) -> &mut dyn CouponWrites {
            &mut self.coupons
        }
        fn orders(&mut self) -> &mut dyn OrderWrites {
            &mut self.orders
        }
        fn idempotency(&mut self) -> &mut dyn IdempotencyWrites {
            &mut self.idempotency
        }
        fn events(&mut self) -> &mut dyn EventWrites {
            &mut self.events
        }
        async fn commit(&mut self) -> Result<CommitToken, StoreError> {
            self.end.commit().await
        }
        async fn rollback(&mut self) -> Result<(), StoreError> {
            self.end.rollback().await
        }
    }
}
