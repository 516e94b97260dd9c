//! The write side: a unit of work (one database transaction on the primary) whose commit
//! returns a consistency token, so a member's later reads can demand to see that write.

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

/// A position in the primary's commit history: the PostgreSQL commit LSN, a MySQL/MariaDB
/// GTID, or an adapter-specific counter. Opaque to the application; only the adapter that
/// minted it compares tokens.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct CommitToken(pub String);

/// How fresh a read must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consistency {
    /// Any healthy replica (or the primary when none is healthy).
    Eventual,
    /// A replica that has replayed this token, else the primary after a bounded wait.
    ReadYourWrites(CommitToken),
    /// The primary.
    Strong,
}

/// A uniqueness rule the store enforces, named so callers can map it to a domain conflict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unique {
    /// E-mails are unique among members.
    MemberEmail,
    /// An insurer's policy number is registered once.
    PolicyNumber,
    /// A member may hold one active policy.
    ActivePolicy,
    /// A rider may have one open driving session.
    OpenSession,
    /// One coupon per member per campaign.
    CouponPerMember,
    /// A rule this code does not name (the constraint or index, as the database reports it).
    Other(String),
}

/// What went wrong below a store error: a message for people and, where there is one, the
/// driver's error it came from (kept as the error's [`source`](std::error::Error::source), so
/// the edge logs the whole chain). Compares by message only: a source is evidence, not
/// identity.
#[derive(Debug, Clone)]
pub struct Cause {
    message: String,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl Cause {
    /// A cause with no underlying error.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// `message`, caused by `source`.
    pub fn caused_by(message: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            message: message.into(),
            source: Some(Arc::new(source)),
        }
    }

    /// The message, without the source's.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Cause {
    /// The underlying error, if any.
    pub fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl std::ops::Deref for Cause {
    type Target = str;

    fn deref(&self) -> &str {
        &self.message
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        self.message == other.message
    }
}

impl Eq for Cause {}

impl PartialEq<str> for Cause {
    fn eq(&self, other: &str) -> bool {
        self.message == other
    }
}

impl PartialEq<&str> for Cause {
    fn eq(&self, other: &&str) -> bool {
        self.message == *other
    }
}

/// A URL without its password, for messages and logs: `postgres://app:secret@db/x` →
/// `postgres://app@db/x`. The one redaction of the code base.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user = url[scheme + 3..at].split(':').next().unwrap_or_default();
            format!("{}{user}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// An error followed by its sources, `error: cause: cause`, for logs and health details.
#[derive(Debug, Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// Errors of every store operation. Adapters translate driver errors into these; the
/// driver's error stays reachable as [`source`](std::error::Error::source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// A uniqueness rule was violated.
    Conflict(Unique),
    /// A concurrent transaction got in the way (serialization failure, deadlock, stale
    /// version). Retrying the whole unit of work may succeed.
    Concurrency,
    /// The database cannot be reached or did not answer in time.
    Unavailable(Cause),
    /// A table or database the statement needs is not there: a replica that has not
    /// replayed a migration yet, or a database that was never migrated. Another server (the
    /// primary) may have it.
    SchemaMissing(Cause),
    /// Anything else: a bug or corrupt data. Logged, answered as an opaque 500.
    Other(Cause),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Conflict(rule) => write!(f, "conflict: {rule:?} already exists"),
            StoreError::Concurrency => f.write_str("concurrent update, retry"),
            StoreError::Unavailable(cause) => write!(f, "store unavailable: {cause}"),
            StoreError::SchemaMissing(cause) => write!(f, "schema not there: {cause}"),
            StoreError::Other(cause) => write!(f, "store error: {cause}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Conflict(_) | StoreError::Concurrency => None,
            StoreError::Unavailable(cause) | StoreError::SchemaMissing(cause) | StoreError::Other(cause) => {
                cause.source()
            }
        }
    }
}

impl StoreError {
    /// Whether the whole unit of work may succeed if run again (only
    /// [`StoreError::Concurrency`]).
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Concurrency)
    }

    /// [`StoreError::Unavailable`] with a message.
    pub fn unavailable(message: impl Into<String>) -> Self {
        StoreError::Unavailable(Cause::new(message))
    }

    /// [`StoreError::Other`] with a message.
    pub fn other(message: impl Into<String>) -> Self {
        StoreError::Other(Cause::new(message))
    }

    /// The error with its causes, for logs and health details.
    pub fn chain(&self) -> String {
        ErrorChain(self).to_string()
    }
}

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

/// What [`UnitOfWork::begin_idempotent`] found under a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyStart {
    /// The key is new and now reserved by this transaction.
    New,
    /// The key was used before, with this request fingerprint and (once completed) response.
    Seen {
        /// The fingerprint of the request that used the key first.
        fingerprint: String,
        /// Its response, once its unit of work completed; `None` while it is in progress.
        response: Option<String>,
    },
}

/// One database transaction on the primary. Every method runs inside it; nothing is visible
/// to others until [`UnitOfWork::commit`]. Dropping it without committing rolls back.
///
/// Methods that read a row for change (`member`, `policy`, `order`, …) lock it where the
/// database supports row locks, so two transactions cannot both act on the same state.
///
/// # Errors (every method)
/// - MUST return [`StoreError::Conflict`] naming the rule when a uniqueness rule is violated;
/// - MUST return [`StoreError::Concurrency`] on serialization failures and deadlocks, and from
///   `update_policy` when the stored version is not `expected_version`;
/// - MUST return [`StoreError::Unavailable`] when the connection is lost or times out.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait UnitOfWork: Send {
    // --- members -------------------------------------------------------------------
    /// Stores a new member.
    ///
    /// # Errors
    /// MUST return [`StoreError::Conflict`]`(`[`Unique::MemberEmail`]`)` if the e-mail is taken.
    async fn insert_member(&mut self, member: &Member) -> Result<(), StoreError>;
    /// The member, locked for change; `None` if there is none.
    async fn member(&mut self, id: MemberId) -> Result<Option<Member>, StoreError>;
    /// The member with this (lower-cased) e-mail, locked for change.
    async fn member_by_email(&mut self, email: &str) -> Result<Option<Member>, StoreError>;
    /// Saves every mutable field of the member.
    ///
    /// # Errors
    /// MUST return [`StoreError::Conflict`]`(`[`Unique::MemberEmail`]`)` if the new e-mail is
    /// taken, [`StoreError::Other`] if the member does not exist.
    async fn update_member(&mut self, member: &Member) -> Result<(), StoreError>;
    /// Withdrawn, not yet anonymised, withdrawn at or before `withdrawn_before`; oldest
    /// first, locked, skipping members another transaction holds.
    async fn members_to_anonymise(
        &mut self,
        withdrawn_before: OffsetDateTime,
        limit: i64,
    ) -> Result<Vec<Member>, StoreError>;

    // --- insurance -----------------------------------------------------------------
    /// Stores a new policy.
    ///
    /// # Errors
    /// MUST return [`StoreError::Conflict`] with [`Unique::PolicyNumber`] for a taken policy
    /// number, [`Unique::ActivePolicy`] when the member already holds an active policy.
    async fn insert_policy(&mut self, policy: &Policy) -> Result<(), StoreError>;
    /// The policy, locked for change.
    async fn policy(&mut self, id: PolicyId) -> Result<Option<Policy>, StoreError>;
    /// The policy with this insurer reference, locked for change.
    async fn policy_by_number(&mut self, policy_number: &str) -> Result<Option<Policy>, StoreError>;
    /// Every policy of the member, newest first, locked for change.
    async fn policies_of_member(&mut self, member_id: MemberId) -> Result<Vec<Policy>, StoreError>;
    /// Saves `policy` if the stored version is still `expected_version`.
    ///
    /// # Errors
    /// MUST return [`StoreError::Concurrency`] when the stored version is another one (a
    /// concurrent change won; the caller may run its unit of work again).
    async fn update_policy(&mut self, policy: &Policy, expected_version: i64) -> Result<(), StoreError>;
    /// Appends an entry to a policy's audit trail.
    async fn insert_policy_audit(&mut self, audit: &PolicyAudit) -> Result<(), StoreError>;
    /// Stores a new driving session.
    ///
    /// # Errors
    /// MUST return [`StoreError::Conflict`]`(`[`Unique::OpenSession`]`)` when the rider
    /// already has an open session.
    async fn insert_session(&mut self, session: &DrivingSession) -> Result<(), StoreError>;
    /// The driving session, locked for change.
    async fn session(&mut self, id: SessionId) -> Result<Option<DrivingSession>, StoreError>;
    /// Saves the session's start and end.
    ///
    /// # Errors
    /// MUST return [`StoreError::Conflict`]`(`[`Unique::OpenSession`]`)` when reopening it
    /// beside another open session, [`StoreError::Other`] if it does not exist.
    async fn update_session(&mut self, session: &DrivingSession) -> Result<(), StoreError>;

    // --- catalogue -----------------------------------------------------------------
    /// Stores a new product.
    async fn insert_product(&mut self, product: &Product) -> Result<(), StoreError>;
    /// The product, locked for change.
    async fn product(&mut self, id: ProductId) -> Result<Option<Product>, StoreError>;
    /// Saves the product's name, price, stock and `updated_at`.
    ///
    /// # Errors
    /// MUST return [`StoreError::Other`] if the product does not exist.
    async fn update_product(&mut self, product: &Product) -> Result<(), StoreError>;
    /// Atomically `stock -= quantity` if `stock >= quantity`; `false` when there is not enough.
    async fn take_stock(&mut self, id: ProductId, quantity: i64) -> Result<bool, StoreError>;
    /// Atomically `stock += quantity` (a cancelled order gives its units back).
    ///
    /// # Errors
    /// MUST return [`StoreError::Other`] if the product does not exist.
    async fn return_stock(&mut self, id: ProductId, quantity: i64) -> Result<(), StoreError>;

    // --- wallet --------------------------------------------------------------------
    /// Atomically adds `amount` if the balance stays `<= max_balance`; the new balance, or
    /// `None` when it would exceed it. Creates the wallet at 0 first if needed.
    async fn credit_points(
        &mut self,
        member_id: MemberId,
        amount: Krw,
        max_balance: Krw,
    ) -> Result<Option<Krw>, StoreError>;
    /// Atomically takes `amount` if the balance stays `>= 0`; the new balance, or `None`.
    async fn debit_points(&mut self, member_id: MemberId, amount: Krw) -> Result<Option<Krw>, StoreError>;
    /// Appends a row to the member's ledger.
    async fn insert_ledger(&mut self, entry: &LedgerEntry) -> Result<(), StoreError>;

    // --- coupons -------------------------------------------------------------------
    /// Stores a new coupon campaign.
    async fn insert_campaign(&mut self, campaign: &CouponCampaign) -> Result<(), StoreError>;
    /// The campaign, locked for change.
    async fn campaign(&mut self, id: CampaignId) -> Result<Option<CouponCampaign>, StoreError>;
    /// Atomically `issued_count += 1` if `issued_count < total_quantity`; `false` when sold out.
    async fn claim_coupon_slot(&mut self, id: CampaignId) -> Result<bool, StoreError>;
    /// Stores an issued coupon.
    ///
    /// # Errors
    /// MUST return [`StoreError::Conflict`]`(`[`Unique::CouponPerMember`]`)` when the member
    /// already holds a coupon of the campaign.
    async fn insert_coupon(&mut self, coupon: &Coupon) -> Result<(), StoreError>;
    /// The coupon, locked for change.
    async fn coupon(&mut self, id: CouponId) -> Result<Option<Coupon>, StoreError>;
    /// Saves the coupon's status, order and expiry.
    ///
    /// # Errors
    /// MUST return [`StoreError::Other`] if the coupon does not exist.
    async fn update_coupon(&mut self, coupon: &Coupon) -> Result<(), StoreError>;

    // --- orders and payments -------------------------------------------------------
    /// Stores a new order with its lines, in line order.
    async fn insert_order(&mut self, order: &Order) -> Result<(), StoreError>;
    /// The order with its lines, locked for change.
    async fn order(&mut self, id: OrderId) -> Result<Option<Order>, StoreError>;
    /// Saves status, `paid_at` and `cancelled_at`.
    ///
    /// # Errors
    /// MUST return [`StoreError::Other`] if the order does not exist.
    async fn update_order(&mut self, order: &Order) -> Result<(), StoreError>;
    /// Pending orders created at or before `created_before`, oldest first, skipping rows
    /// locked by other transactions where the database can.
    async fn stale_orders(&mut self, created_before: OffsetDateTime, limit: i64) -> Result<Vec<Order>, StoreError>;
    /// Stores the payment of an order (one per order).
    async fn insert_payment(&mut self, payment: &Payment) -> Result<(), StoreError>;
    /// Reserves `(scope, key)` for this transaction, or reports what was stored under it. A
    /// concurrent transaction holding the same key makes this wait for it to finish.
    async fn begin_idempotent(
        &mut self,
        scope: &str,
        key: &str,
        fingerprint: &str,
    ) -> Result<IdempotencyStart, StoreError>;
    /// Stores the response for a key reserved by `begin_idempotent`.
    async fn complete_idempotent(&mut self, scope: &str, key: &str, response: &str) -> Result<(), StoreError>;

    // --- events --------------------------------------------------------------------
    /// Appends events to the outbox, in order.
    async fn append_events(&mut self, events: &[DomainEvent]) -> Result<(), StoreError>;
    /// Records that `consumer` applied `event_id`; `false` if it already had (a redelivery).
    async fn record_inbox(&mut self, consumer: &str, event_id: EventId) -> Result<bool, StoreError>;

    // --- end -----------------------------------------------------------------------
    /// Commits and returns the commit's consistency token. The unit of work is spent after.
    async fn commit(&mut self) -> Result<CommitToken, StoreError>;
    /// Rolls back. The unit of work is spent after.
    async fn rollback(&mut self) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted_in_messages() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/hexride"),
            "postgres://app@db:5432/hexride"
        );
        assert_eq!(redact_url("redis://:s3cret@cache:6379"), "redis://@cache:6379");
        assert_eq!(redact_url("postgres://db/hexride"), "postgres://db/hexride");
        assert_eq!(redact_url("sqlite://data/hexride.db"), "sqlite://data/hexride.db");
    }

    #[test]
    fn a_store_error_keeps_its_cause_and_compares_by_message() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let err = StoreError::Unavailable(Cause::caused_by("the connection failed", io));
        assert_eq!(err.to_string(), "store unavailable: the connection failed");
        assert_eq!(err.chain(), "store unavailable: the connection failed: reset by peer");
        assert_eq!(err, StoreError::unavailable("the connection failed"));
        assert_ne!(err, StoreError::other("the connection failed"));
    }
}
