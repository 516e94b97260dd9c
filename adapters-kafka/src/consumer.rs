//! Runs one [`EventHandler`] as a Kafka consumer group. Messages are handled one at a time,
//! so every partition is processed in order; an offset is committed only after its message's
//! effect is done — the handler returned `Ok` (its inbox row committed with the effect) or the
//! message was written to `<topic>.dlt`. A crash anywhere before the commit means the message
//! comes again, and the handler's inbox turns the repeat into a no-op.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use tokio::time::Instant;

use core_domain::event::DomainEvent;
use ports::{EventHandler, HandlerError};

use crate::KafkaSetupError;
use crate::context::{GroupContext, LogContext, PendingOffsets};
use crate::producer::Producer;
use crate::publisher::{EVENT_ID_HEADER, EVENT_TYPE_HEADER};
use crate::settings::KafkaSettings;

/// Dead-letter headers, besides `event_id` and `event_type` (copied when known).
pub const ERROR_HEADER: &str = "error";
pub const ORIGINAL_TOPIC_HEADER: &str = "original_topic";
pub const ORIGINAL_PARTITION_HEADER: &str = "original_partition";
pub const ORIGINAL_OFFSET_HEADER: &str = "original_offset";
pub const CONSUMER_HEADER: &str = "consumer";

/// The longest error text kept in a dead-letter header.
const MAX_ERROR_LEN: usize = 2_000;

type Stop = Shared<BoxFuture<'static, ()>>;
type GroupConsumer = StreamConsumer<GroupContext>;

/// What became of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Handled or dead-lettered: its offset may be committed.
    Done,
    /// Shutdown came first: not committed, so it is delivered again later.
    Stopped,
}

/// One handler consuming its topics as the consumer group named after it.
pub struct KafkaConsumer {
    settings: KafkaSettings,
    handler: Arc<dyn EventHandler>,
    group: String,
    topics: Vec<String>,
    dead_letters: Producer,
}

impl std::fmt::Debug for KafkaConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConsumer")
            .field("group", &self.group)
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl KafkaConsumer {
    /// A consumer for `handler`: group `handler.name()`, topics `handler.topics()`
    /// (both namespaced).
    ///
    /// # Errors
    /// When librdkafka rejects the configuration.
    pub fn new(settings: &KafkaSettings, handler: Arc<dyn EventHandler>) -> Result<Self, KafkaSetupError> {
        let group = settings.group(handler.name());
        let topics = handler.topics().iter().map(|t| settings.topic(t)).collect();
        let dead_letters = Producer::new(settings, &format!("{group}-dlt")).map_err(KafkaSetupError::Client)?;
        Ok(Self {
            settings: settings.clone(),
            handler,
            group,
            topics,
            dead_letters,
        })
    }

    /// The consumer group (namespaced).
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Consumes until `shutdown` resolves, then commits what was handled and leaves the
    /// group. A message whose handling was interrupted by the shutdown is not committed.
    ///
    /// # Errors
    /// When the consumer cannot be created or subscribed (bad configuration); broker
    /// outages are waited out instead.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), KafkaSetupError> {
        let stop: Stop = shutdown.boxed().shared();
        let pending = Arc::new(PendingOffsets::default());
        let context = GroupContext {
            log: LogContext {
                client: self.group.clone(),
            },
            pending: Arc::clone(&pending),
        };
        let consumer: Arc<GroupConsumer> = Arc::new(
            self.settings
                .consumer_config(&self.group)
                .create_with_context(context)
                .map_err(KafkaSetupError::Client)?,
        );
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(KafkaSetupError::Client)?;
        tracing::info!(group = %self.group, topics = ?self.topics, "kafka consumer started");

        let batch = self.settings.consumer.commit_batch.max(1);
        let interval = self.settings.consumer.commit_interval.max(Duration::from_millis(1));
        let mut uncommitted = 0usize;
        let mut oldest_uncommitted: Option<Instant> = None;
        loop {
            // With nothing to commit, wait as long as it takes; otherwise commit once idle
            // for `interval`.
            let wait = if uncommitted == 0 {
                Duration::from_secs(3600)
            } else {
                interval
            };
            let next = tokio::select! {
                biased;
                () = stop.clone() => break,
                next = tokio::time::timeout(wait, consumer.recv()) => next,
            };
            match next {
                Err(_idle) => {
                    if commit(&consumer, &pending, &self.group).await {
                        uncommitted = 0;
                        oldest_uncommitted = None;
                    }
                }
                Ok(Err(error)) => {
                    tracing::warn!(group = %self.group, %error, "kafka consumer error");
                    if sleep_or_stop(Duration::from_millis(200), &stop).await {
                        break;
                    }
                }
                Ok(Ok(message)) => {
                    let message = message.detach();
                    if self.process(&message, &stop).await == Outcome::Stopped {
                        break;
                    }
                    pending.handled(message.topic(), message.partition(), message.offset());
                    uncommitted += 1;
                    let since = *oldest_uncommitted.get_or_insert_with(Instant::now);
                    if (uncommitted >= batch || since.elapsed() >= interval)
                        && commit(&consumer, &pending, &self.group).await
                    {
                        uncommitted = 0;
                        oldest_uncommitted = None;
                    }
                }
            }
        }
        commit(&consumer, &pending, &self.group).await;
        consumer.unsubscribe();
        // Closing leaves the group (blocking while the broker answers): off the async threads,
        // and not waited for longer than a request may take.
        let closing = tokio::task::spawn_blocking(move || drop(consumer));
        match tokio::time::timeout(self.settings.request_timeout, closing).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(group = %self.group, %error, "closing the kafka consumer failed"),
            Err(_) => tracing::warn!(group = %self.group, "the kafka consumer did not close in time"),
        }
        self.dead_letters.flush(self.settings.request_timeout).await;
        tracing::info!(group = %self.group, "kafka consumer stopped");
        Ok(())
    }

    /// Handles one message: parse, call the handler with bounded retries, or dead-letter it.
    async fn process(&self, message: &OwnedMessage, stop: &Stop) -> Outcome {
        let event = match message.payload().map(DomainEvent::from_json) {
            Some(Ok(event)) => event,
            Some(Err(error)) => {
                return self
                    .dead_letter(message, None, &format!("unparsable event: {error}"), stop)
                    .await;
            }
            None => return self.dead_letter(message, None, "empty message", stop).await,
        };
        let consumer = self.group.as_str();
        let max_attempts = self.settings.consumer.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            let handled = AssertUnwindSafe(self.handler.handle(&event)).catch_unwind().await;
            let error = match handled {
                Ok(Ok(())) => {
                    metrics::counter!("kafka_consumer_messages_total", "consumer" => consumer.to_owned(), "outcome" => "handled")
                        .increment(1);
                    return Outcome::Done;
                }
                Ok(Err(error)) => error,
                // A handler bug must not take the consumer down with it: park the message.
                Err(_panic) => HandlerError::Permanent("the handler panicked".into()),
            };
            match error {
                HandlerError::Permanent(reason) => {
                    return self.dead_letter(message, Some(&event), &reason, stop).await;
                }
                HandlerError::Transient(reason) if attempt >= max_attempts => {
                    let reason = format!("{reason} (gave up after {attempt} attempts)");
                    return self.dead_letter(message, Some(&event), &reason, stop).await;
                }
                HandlerError::Transient(reason) => {
                    let pause = backoff(attempt, &self.settings);
                    tracing::warn!(consumer, event_id = %event.id, attempt, %reason, ?pause, "handler failed; retrying");
                    metrics::counter!("kafka_consumer_retries_total", "consumer" => consumer.to_owned()).increment(1);
                    if sleep_or_stop(pause, stop).await {
                        return Outcome::Stopped;
                    }
                    attempt += 1;
                }
            }
        }
    }

    /// Writes `message` to `<topic>.dlt` with the reason, retrying until the write is
    /// acknowledged: the offset must not move on before it is.
    async fn dead_letter(
        &self,
        message: &OwnedMessage,
        event: Option<&DomainEvent>,
        error: &str,
        stop: &Stop,
    ) -> Outcome {
        let topic = KafkaSettings::dead_letter_topic(message.topic());
        let original = |key: &str| -> Option<String> {
            message
                .headers()?
                .iter()
                .find(|h| h.key == key)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let event_id = event.map(|e| e.id.to_string()).or_else(|| original(EVENT_ID_HEADER));
        let event_type = event
            .map(|e| e.event_type().to_owned())
            .or_else(|| original(EVENT_TYPE_HEADER));
        let error: String = error.chars().take(MAX_ERROR_LEN).collect();
        let (partition, offset) = (message.partition().to_string(), message.offset().to_string());
        let mut headers = OwnedHeaders::new_with_capacity(7)
            .insert(header(ERROR_HEADER, &error))
            .insert(header(ORIGINAL_TOPIC_HEADER, message.topic()))
            .insert(header(ORIGINAL_PARTITION_HEADER, &partition))
            .insert(header(ORIGINAL_OFFSET_HEADER, &offset))
            .insert(header(CONSUMER_HEADER, &self.group));
        if let Some(id) = &event_id {
            headers = headers.insert(header(EVENT_ID_HEADER, id));
        }
        if let Some(kind) = &event_type {
            headers = headers.insert(header(EVENT_TYPE_HEADER, kind));
        }
        let mut attempt = 1;
        loop {
            let deadline = Instant::now() + self.settings.delivery_timeout + Duration::from_secs(1);
            match self
                .dead_letters
                .send(&topic, message.key(), message.payload(), headers.clone(), deadline)
                .await
            {
                Ok(()) => {
                    tracing::error!(
                        consumer = %self.group,
                        event_id = event_id.as_deref().unwrap_or("-"),
                        topic = message.topic(),
                        partition = message.partition(),
                        offset = message.offset(),
                        %error,
                        "message dead-lettered to {topic}"
                    );
                    metrics::counter!("kafka_consumer_messages_total", "consumer" => self.group.clone(), "outcome" => "dead_lettered")
                        .increment(1);
                    return Outcome::Done;
                }
                Err(failure) => {
                    let pause = backoff(attempt, &self.settings);
                    tracing::warn!(consumer = %self.group, %failure, attempt, "dead-letter write failed; retrying");
                    if sleep_or_stop(pause, stop).await {
                        return Outcome::Stopped;
                    }
                    attempt += 1;
                }
            }
        }
    }
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

/// Commits the pending offsets synchronously (on a blocking thread). Whether it succeeded;
/// on failure they stay pending for the next commit.
async fn commit(consumer: &Arc<GroupConsumer>, pending: &PendingOffsets, group: &str) -> bool {
    let Some(list) = pending.to_commit() else {
        return true;
    };
    let (consumer, request) = (Arc::clone(consumer), list.clone());
    match tokio::task::spawn_blocking(move || consumer.commit(&request, CommitMode::Sync)).await {
        Ok(Ok(())) => {
            pending.committed(&list);
            true
        }
        Ok(Err(error)) => {
            tracing::warn!(group, %error, "offset commit failed; will retry");
            false
        }
        Err(error) => {
            tracing::warn!(group, %error, "offset commit task failed");
            false
        }
    }
}

/// `base * 2^(attempt-1)`, capped.
fn backoff(attempt: u32, settings: &KafkaSettings) -> Duration {
    let c = &settings.consumer;
    c.base_backoff
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(c.max_backoff)
}

/// Sleeps for `pause`; `true` if shutdown came first.
async fn sleep_or_stop(pause: Duration, stop: &Stop) -> bool {
    tokio::select! {
        biased;
        () = stop.clone() => true,
        () = tokio::time::sleep(pause) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handler_backoff_doubles_up_to_the_cap() {
        let settings = KafkaSettings {
            consumer: crate::ConsumerSettings {
                base_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_millis(500),
                ..crate::ConsumerSettings::default()
            },
            ..KafkaSettings::default()
        };
        assert_eq!(backoff(1, &settings), Duration::from_millis(100));
        assert_eq!(backoff(3, &settings), Duration::from_millis(400));
        assert_eq!(backoff(4, &settings), Duration::from_millis(500));
        assert_eq!(backoff(40, &settings), Duration::from_millis(500));
    }
}
