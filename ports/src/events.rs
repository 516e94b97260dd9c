//! Events: the outbox (written in the state change's transaction, drained by a relay), the
//! publisher the relay hands rows to (Kafka or in-process), the handlers that consume them
//! (recording an inbox row with their effect), and the external data-platform sink.

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use core_domain::EventId;
use core_domain::event::DomainEvent;

use crate::store::StoreError;

/// An outbox row as the relay sees it. `payload` is the JSON envelope, sent as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRecord {
    /// The event's id (its Kafka `event_id` header).
    pub id: EventId,
    /// Append order; per-aggregate order follows it.
    pub seq: i64,
    /// Where it goes (`member-events`, …).
    pub topic: String,
    /// `member.withdrawn`, … (its Kafka `event_type` header).
    pub event_type: String,
    /// The aggregate id: the Kafka key.
    pub key: String,
    /// The JSON envelope.
    pub payload: String,
    /// Failed publish attempts so far.
    pub attempts: i32,
    /// When the event occurred.
    pub created_at: OffsetDateTime,
}

impl OutboxRecord {
    /// The record of an event about to be appended (seq is assigned by the store).
    pub fn of(event: &DomainEvent) -> Self {
        Self {
            id: event.id,
            seq: 0,
            topic: event.topic().to_owned(),
            event_type: event.event_type().to_owned(),
            key: event.aggregate_id.to_string(),
            payload: event.to_json(),
            attempts: 0,
            created_at: event.occurred_at,
        }
    }
}

/// Size and age of the unsent outbox, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxStats {
    /// Rows not yet sent (and not dead).
    pub backlog: i64,
    /// When the oldest of them occurred; `None` when there are none.
    pub oldest_created_at: Option<OffsetDateTime>,
    /// Rows given up on after their last attempt.
    pub dead: i64,
}

/// The relay's view of the outbox. Safe for any number of relays at once.
///
/// # Errors (every method)
/// MUST return [`StoreError::Unavailable`] when the database cannot be reached.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Claims up to `limit` rows for `owner` for `lease`: pending, due, not under another
    /// live claim, and with no earlier unsent row of the same aggregate (so per-aggregate
    /// order holds and a batch has at most one row per aggregate). In `seq` order.
    async fn claim(&self, owner: &str, limit: i64, lease: Duration) -> Result<Vec<OutboxRecord>, StoreError>;
    /// Marks rows sent. Called only after the transport acknowledged them.
    async fn mark_sent(&self, ids: &[EventId]) -> Result<(), StoreError>;
    /// Records a failed attempt: the claim is released and the row is due again at
    /// `retry_at`, or is marked `dead` (never retried) when `dead` is true.
    async fn mark_failed(
        &self,
        id: EventId,
        error: &str,
        retry_at: OffsetDateTime,
        dead: bool,
    ) -> Result<(), StoreError>;
    /// Size and age of the unsent outbox.
    async fn stats(&self) -> Result<OutboxStats, StoreError>;
    /// Resolves when rows may have been appended since the last call, or after `max_wait`.
    async fn wait_for_events(&self, max_wait: Duration);
}

/// Why a record was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The transport did not acknowledge the record; retry later.
    #[error("publish failed: {0}")]
    Failed(String),
    /// The record can never be delivered (malformed, or a consumer refused it for good):
    /// it is marked dead at once instead of retried.
    #[error("undeliverable: {0}")]
    Permanent(String),
}

/// Hands outbox rows to the event transport.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait EventPublisher: Send + Sync {
    /// Publishes the records and reports, per record and in the same order, whether the
    /// transport acknowledged it (Kafka: a successful delivery report with `acks=all`;
    /// in-process: every subscribed handler applied it).
    ///
    /// # Errors
    /// Per record: [`PublishError::Failed`] when it was not acknowledged in time.
    async fn publish(&self, records: &[OutboxRecord]) -> Vec<Result<(), PublishError>>;
}

/// What a handler did with an event it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Its effect is now committed.
    Applied,
    /// Its inbox already held it: an earlier delivery applied it, nothing changed now.
    Duplicate,
    /// Not an event this consumer acts on.
    Ignored,
}

impl Handled {
    /// `applied`, `duplicate` or `ignored`: the outcome in delivery logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Duplicate => "duplicate",
            Self::Ignored => "ignored",
        }
    }
}

/// Why a handler did not apply an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// May succeed if retried (a database or network hiccup).
    #[error("transient: {0}")]
    Transient(String),
    /// Will never succeed (a malformed event): dead-letter it at once.
    #[error("permanent: {0}")]
    Permanent(String),
}

/// A consumer of domain events. Handlers are idempotent: they record the event in their
/// inbox in the same transaction as their effect, so a redelivery is a no-op.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait EventHandler: Send + Sync {
    /// The consumer name: inbox key and Kafka consumer group (`insurance-expiry`, …).
    fn name(&self) -> &'static str;
    /// The topics it consumes.
    fn topics(&self) -> Vec<&'static str>;
    /// Applies the event's effect, at most once per event id, and says which it was.
    ///
    /// # Errors
    /// [`HandlerError::Transient`] to be retried; [`HandlerError::Permanent`] to be
    /// dead-lettered.
    async fn handle(&self, event: &DomainEvent) -> Result<Handled, HandlerError>;
}

/// Why the data platform did not take an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// Failed this time (timeout, 5xx, connection refused, circuit open): retry later.
    #[error("data platform unavailable: {0}")]
    Unavailable(String),
    /// Refused the event (4xx): retrying will not help.
    #[error("data platform rejected the event: {0}")]
    Rejected(String),
}

/// The external data platform that receives `payment.succeeded`.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait DataPlatformSink: Send + Sync {
    /// Delivers one event. The event id travels with it so the platform can deduplicate.
    ///
    /// # Errors
    /// [`SinkError::Unavailable`] when it should be retried, [`SinkError::Rejected`] when not.
    async fn send(&self, event: &DomainEvent) -> Result<(), SinkError>;
}
