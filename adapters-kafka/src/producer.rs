//! The idempotent producer behind the outbox publisher and the dead-letter writes. A record
//! counts as written only on a successful delivery report (`acks=all`); anything else — a
//! full queue past the deadline, an error report, no report in time — is a failure the caller
//! retries.
//!
//! After a failed delivery the producer is replaced by a fresh one (a new producer id). An
//! idempotent producer whose record timed out must otherwise recover its sequence state with
//! the broker (an epoch bump), which not every Kafka-protocol broker implements — tansu 0.6
//! loses its storage task on it — and a fatal error leaves it unusable for good. A new
//! producer id is always safe here: the relay re-sends what failed and consumers deduplicate.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use tokio::time::Instant;

use crate::context::LogContext;
use crate::settings::KafkaSettings;

type Inner = FutureProducer<LogContext>;

/// Why a record was not written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SendError {
    /// Retrying may help (broker down, timeout, leader change).
    #[error("{0}")]
    Retriable(String),
    /// The broker will refuse this record whatever happens (too large, invalid).
    #[error("{0}")]
    Refused(String),
}

/// A producer that replaces itself after a failed delivery or a fatal error.
pub(crate) struct Producer {
    settings: KafkaSettings,
    role: String,
    current: Mutex<Arc<Inner>>,
}

impl Producer {
    /// A producer named `<client_id>-<role>`.
    pub(crate) fn new(settings: &KafkaSettings, role: &str) -> Result<Self, KafkaError> {
        let inner = Self::create(settings, role)?;
        Ok(Self {
            settings: settings.clone(),
            role: role.to_owned(),
            current: Mutex::new(Arc::new(inner)),
        })
    }

    fn create(settings: &KafkaSettings, role: &str) -> Result<Inner, KafkaError> {
        settings.producer_config(role).create_with_context(LogContext {
            client: role.to_owned(),
        })
    }

    /// The live producer (a fresh one if the current one hit a fatal error).
    pub(crate) fn get(&self) -> Arc<Inner> {
        let current = Arc::clone(&self.current.lock().unwrap_or_else(PoisonError::into_inner));
        if let Some((code, reason)) = current.client().fatal_error() {
            tracing::error!(client = %self.role, ?code, reason, "kafka producer hit a fatal error");
            self.retire(Arc::clone(&current));
            return Arc::clone(&self.current.lock().unwrap_or_else(PoisonError::into_inner));
        }
        current
    }

    /// Replaces `used` by a fresh producer, unless that already happened, after a failed
    /// delivery. The old one is dropped off the async threads: dropping a producer purges
    /// and flushes, blocking for up to 500 ms.
    pub(crate) fn retire(&self, used: Arc<Inner>) {
        let replaced = {
            let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
            if Arc::ptr_eq(&current, &used) {
                match Self::create(&self.settings, &self.role) {
                    Ok(fresh) => {
                        tracing::info!(client = %self.role, "kafka producer replaced after a failed delivery");
                        metrics::counter!("kafka_producer_replaced_total", "client" => self.role.clone()).increment(1);
                        Some(std::mem::replace(&mut *current, Arc::new(fresh)))
                    }
                    Err(error) => {
                        tracing::error!(client = %self.role, %error, "cannot create a kafka producer");
                        None
                    }
                }
            } else {
                None
            }
        };
        drop(tokio::task::spawn_blocking(move || {
            drop(replaced);
            drop(used);
        }));
    }

    /// Sends one record and waits for its delivery report until `deadline`.
    pub(crate) async fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: OwnedHeaders,
        deadline: Instant,
    ) -> Result<Delivered, SendError> {
        let producer = self.get();
        let result = match enqueue(&producer, topic, key, payload, headers, deadline).await {
            Ok(delivery) => await_delivery(delivery, deadline).await,
            Err(error) => Err(error),
        };
        if matches!(result, Err(SendError::Retriable(_))) {
            self.retire(producer);
        }
        result
    }

    /// Waits until every queued record has its delivery report, up to `timeout`.
    pub(crate) async fn flush(&self, timeout: Duration) {
        let producer = self.get();
        let role = self.role.clone();
        let flushed = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
        match flushed {
            Ok(Ok(())) => tracing::debug!(client = %role, "kafka producer flushed"),
            Ok(Err(error)) => tracing::warn!(client = %role, %error, "kafka producer flush incomplete"),
            Err(error) => tracing::warn!(client = %role, %error, "kafka producer flush task failed"),
        }
    }

    pub(crate) fn settings(&self) -> &KafkaSettings {
        &self.settings
    }
}

/// Queues a record, waiting (until `deadline`) while the local queue is full.
pub(crate) async fn enqueue(
    producer: &Inner,
    topic: &str,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    headers: OwnedHeaders,
    deadline: Instant,
) -> Result<rdkafka::producer::DeliveryFuture, SendError> {
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
    if let Some(key) = key {
        record = record.key(key);
    }
    if let Some(payload) = payload {
        record = record.payload(payload);
    }
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) if Instant::now() < deadline => {
                record = back;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err((error, _)) => return Err(classify(&error)),
        }
    }
}

/// Where the broker put a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// Waits for a delivery report until `deadline`.
pub(crate) async fn await_delivery(
    delivery: rdkafka::producer::DeliveryFuture,
    deadline: Instant,
) -> Result<Delivered, SendError> {
    match tokio::time::timeout_at(deadline, delivery).await {
        Ok(Ok(Ok(delivery))) => Ok(Delivered {
            partition: delivery.partition,
            offset: delivery.offset,
        }),
        Ok(Ok(Err((error, _)))) => Err(classify(&error)),
        Ok(Err(_cancelled)) => Err(SendError::Retriable("the producer was closed before delivery".into())),
        Err(_) => Err(SendError::Retriable("no delivery report in time".into())),
    }
}

/// Whether retrying a record that failed with `error` can ever succeed.
fn classify(error: &KafkaError) -> SendError {
    let refused = matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidRecord
        )
    );
    if refused {
        SendError::Refused(error.to_string())
    } else {
        SendError::Retriable(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_and_format_errors_are_refusals_and_the_rest_is_retriable() {
        let too_large = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        assert!(matches!(classify(&too_large), SendError::Refused(_)));
        let timed_out = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        assert!(matches!(classify(&timed_out), SendError::Retriable(_)));
        let down = KafkaError::MessageProduction(RDKafkaErrorCode::AllBrokersDown);
        assert!(matches!(classify(&down), SendError::Retriable(_)));
    }
}
