//! The outbox relay's transport to Kafka. A claimed batch is queued all at once (the producer
//! batches it on the wire) and each record is acknowledged to the relay only by its own
//! successful delivery report, so the relay never marks a row sent that the broker did not
//! take. Key = aggregate id, so the events of one aggregate share a partition and keep order.

use async_trait::async_trait;
use futures::future::join_all;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::Producer as _;
use tokio::time::Instant;

use ports::{ComponentHealth, EventPublisher, HealthCheck, HealthStatus, OutboxRecord, PublishError};

use crate::producer::{Delivered, Producer, SendError, await_delivery, enqueue};
use crate::settings::KafkaSettings;

/// Header carrying the event id (consumers and the data platform deduplicate on it).
pub const EVENT_ID_HEADER: &str = "event_id";
/// Header carrying the event type (`member.withdrawn`, …).
pub const EVENT_TYPE_HEADER: &str = "event_type";

/// [`ports::EventPublisher`] over an idempotent Kafka producer.
pub struct KafkaPublisher {
    producer: Producer,
}

impl std::fmt::Debug for KafkaPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaPublisher")
            .field("brokers", &self.producer.settings().brokers)
            .finish_non_exhaustive()
    }
}

impl KafkaPublisher {
    /// A publisher to `settings.brokers`. Connects lazily: a broker that is down shows up as
    /// failed publishes, which the relay retries.
    ///
    /// # Errors
    /// When librdkafka rejects the configuration.
    pub fn new(settings: &KafkaSettings) -> Result<Self, crate::KafkaSetupError> {
        Ok(Self {
            producer: Producer::new(settings, "producer").map_err(crate::KafkaSetupError::Client)?,
        })
    }

    /// Waits (up to `timeout`) for records still in flight; call before exiting.
    pub async fn flush(&self, timeout: std::time::Duration) {
        self.producer.flush(timeout).await;
    }

    fn headers(record: &OutboxRecord) -> OwnedHeaders {
        let event_id = record.id.to_string();
        OwnedHeaders::new_with_capacity(2)
            .insert(Header {
                key: EVENT_ID_HEADER,
                value: Some(event_id.as_str()),
            })
            .insert(Header {
                key: EVENT_TYPE_HEADER,
                value: Some(record.event_type.as_str()),
            })
    }
}

#[async_trait]
impl EventPublisher for KafkaPublisher {
    async fn publish(&self, records: &[OutboxRecord]) -> Vec<Result<(), PublishError>> {
        let settings = self.producer.settings();
        // librdkafka reports every record within `message.timeout.ms`; the margin only
        // guards against a report that never comes.
        let deadline = Instant::now() + settings.delivery_timeout + std::time::Duration::from_secs(1);
        let producer = self.producer.get();
        let mut queued = Vec::with_capacity(records.len());
        let topics: Vec<String> = records.iter().map(|r| settings.topic(&r.topic)).collect();
        for (record, topic) in records.iter().zip(&topics) {
            queued.push(
                enqueue(
                    &producer,
                    topic,
                    Some(record.key.as_bytes()),
                    Some(record.payload.as_bytes()),
                    Self::headers(record),
                    deadline,
                )
                .await,
            );
        }
        let results = join_all(queued.into_iter().map(|queued| async move {
            match queued {
                Ok(delivery) => await_delivery(delivery, deadline).await,
                Err(error) => Err(error),
            }
        }))
        .await;
        // Nothing is in flight any more: a producer that failed a delivery can be replaced.
        if results.iter().any(|r| matches!(r, Err(SendError::Retriable(_)))) {
            self.producer.retire(producer);
        }
        for ((record, topic), result) in records.iter().zip(&topics).zip(&results) {
            log_produced(record, topic, result);
        }
        results
            .into_iter()
            .map(|result| {
                result.map(|_| ()).map_err(|error| match error {
                    SendError::Retriable(reason) => PublishError::Failed(reason),
                    SendError::Refused(reason) => PublishError::Permanent(reason),
                })
            })
            .collect()
    }
}

/// The delivery log's line for a record the relay published (README, "Following a
/// message"): where it landed, or why it did not (the relay retries it).
fn log_produced(record: &OutboxRecord, topic: &str, result: &Result<Delivered, SendError>) {
    match result {
        Ok(Delivered { partition, offset }) => tracing::info!(
            target: "hexride::delivery",
            direction = "produced",
            topic,
            partition,
            offset,
            key = %record.key,
            event_id = %record.id,
            event_type = %record.event_type,
            outcome = "delivered",
            "event produced"
        ),
        Err(error) => tracing::warn!(
            target: "hexride::delivery",
            direction = "produced",
            topic,
            key = %record.key,
            event_id = %record.id,
            event_type = %record.event_type,
            outcome = match error {
                SendError::Retriable(_) => "retried",
                SendError::Refused(_) => "refused",
            },
            %error,
            "event not produced"
        ),
    }
}

/// Readiness: whether the brokers answer a metadata request within a second. A broker outage
/// degrades the instance rather than failing it: requests still commit, their events wait in
/// the outbox until the brokers are back.
#[async_trait]
impl HealthCheck for KafkaPublisher {
    async fn health(&self) -> Vec<ComponentHealth> {
        let producer = self.producer.get();
        let topic = self.producer.settings().topic(core_domain::event::MEMBER_EVENTS);
        let probe = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), std::time::Duration::from_secs(1))
                .map(|metadata| metadata.brokers().len())
        })
        .await;
        let (status, detail) = match probe {
            Ok(Ok(brokers)) if brokers > 0 => (HealthStatus::Up, None),
            Ok(Ok(_)) => (HealthStatus::Degraded, Some("no brokers in the metadata".to_owned())),
            Ok(Err(error)) => (
                HealthStatus::Degraded,
                Some(format!("brokers unreachable ({error}); events wait in the outbox")),
            ),
            Err(error) => (HealthStatus::Degraded, Some(format!("probe failed: {error}"))),
        };
        vec![ComponentHealth::new("kafka", status, detail)]
    }
}
