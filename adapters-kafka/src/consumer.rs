//! Runs one [`EventHandler`] as a Kafka consumer group. Messages are handled one at a time,
//! so every partition is processed in order; an offset is committed only after its message's
//! effect is done — the handler returned `Ok` (its inbox row committed with the effect) or the
//! message was written to `<topic>.dlt`. A crash anywhere before the commit means the message
//! comes again, and the handler's inbox turns the repeat into a no-op.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::{Message, Offset, TopicPartitionList};
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

/// The delivery log's line for a consumed `message` (README, "Following a message"): one
/// per outcome, with the same fields as the relay's `produced` lines.
macro_rules! consumed {
    ($level:expr, $message:expr, $group:expr, $event_id:expr, $event_type:expr, $outcome:expr, $($rest:tt)+) => {
        tracing::event!(
            target: "hexride::delivery",
            $level,
            direction = "consumed",
            topic = $message.topic(),
            partition = $message.partition(),
            offset = $message.offset(),
            key = %String::from_utf8_lossy($message.key().unwrap_or_default()),
            event_id = %$event_id,
            event_type = %$event_type,
            consumer = %$group,
            outcome = $outcome,
            $($rest)+
        )
    };
}

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
        // Once per session timeout: are partitions left without a consumer? (See `Stalls`.)
        let period = self.settings.session_timeout.max(Duration::from_secs(1));
        let mut check = tokio::time::interval_at(Instant::now() + period, period);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stalls = Stalls::default();
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
                _ = check.tick() => {
                    if stalls.check(&consumer, &self.topics, self.settings.request_timeout).await {
                        // Leaving and joining again makes the broker assign every partition
                        // among the members it still has. What was handled is committed
                        // first; anything else comes again, and the inbox absorbs repeats.
                        tracing::warn!(group = %self.group, "partitions left without a consumer: joining the group again");
                        commit(&consumer, &pending, &self.group).await;
                        consumer.unsubscribe();
                        consumer.subscribe(&topics).map_err(KafkaSetupError::Client)?;
                    }
                    continue;
                }
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
                Ok(Ok(handled)) => {
                    consumed!(
                        tracing::Level::INFO,
                        message,
                        consumer,
                        event.id,
                        event.event_type(),
                        handled.as_str(),
                        "event consumed"
                    );
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
                    consumed!(tracing::Level::WARN, message, consumer, event.id, event.event_type(), "retried", attempt, %reason, ?pause, "handler failed; retrying");
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
                Ok(_) => {
                    consumed!(
                        tracing::Level::ERROR,
                        message,
                        self.group,
                        event_id.as_deref().unwrap_or("-"),
                        event_type.as_deref().unwrap_or("-"),
                        "dead_lettered",
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

/// Partitions of the group's topics held by other members, with a backlog, and where their
/// group's committed offset stood at the last check.
///
/// A partition whose backlog stays and whose committed offset does not move for a whole
/// check period (a session timeout) has no live consumer. A Kafka broker never leaves one
/// so for long: it reassigns a dead member's partitions once its session expires. The tansu
/// 0.6.0 broker does: it evicts the member, tells the survivors to rejoin, and answers their
/// rejoin with unchanged metadata with the old generation and the old assignment; only a
/// member leaving or joining rebalances the group there. So a consumer that sees such a
/// partition leaves and joins again. (Asking the broker for the group's members would be
/// more direct, but tansu 0.6.0 fails `DescribeGroups` on its SQLite storage.)
#[derive(Debug, Default)]
struct Stalls {
    previous: HashMap<(String, i32), i64>,
}

impl Stalls {
    /// Whether a partition of another member has had a backlog and the same committed offset
    /// at this check and the last. Errors (a broker outage) count as "no" and forget the
    /// last check.
    async fn check(&mut self, consumer: &Arc<GroupConsumer>, topics: &[String], timeout: Duration) -> bool {
        let (consumer, topics) = (Arc::clone(consumer), topics.to_vec());
        let observed = tokio::task::spawn_blocking(move || backlogged_elsewhere(&consumer, &topics, timeout)).await;
        let now = match observed {
            Ok(Ok(now)) => now,
            _ => HashMap::new(),
        };
        self.observe(now)
    }

    /// Records one observation; whether a partition stalled since the last one.
    fn observe(&mut self, now: HashMap<(String, i32), i64>) -> bool {
        let stalled = now
            .iter()
            .any(|(partition, offset)| self.previous.get(partition) == Some(offset));
        self.previous = if stalled { HashMap::new() } else { now };
        stalled
    }
}

/// The partitions of `topics` not assigned to this consumer that have messages past their
/// group's committed offset, with that offset (the log start when nothing is committed).
fn backlogged_elsewhere(
    consumer: &GroupConsumer,
    topics: &[String],
    timeout: Duration,
) -> rdkafka::error::KafkaResult<HashMap<(String, i32), i64>> {
    let assigned: HashSet<(String, i32)> = consumer
        .assignment()?
        .elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect();
    let mut others = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            if !assigned.contains(&(topic.clone(), partition.id())) {
                others.add_partition(topic, partition.id());
            }
        }
    }
    if others.count() == 0 {
        return Ok(HashMap::new());
    }
    let committed = consumer.committed_offsets(others, timeout)?;
    let mut backlogged = HashMap::new();
    for element in committed.elements() {
        let (low, high) = consumer.fetch_watermarks(element.topic(), element.partition(), timeout)?;
        let position = match element.offset() {
            Offset::Offset(offset) => offset,
            _ => low,
        };
        if high > position {
            backlogged.insert((element.topic().to_owned(), element.partition()), position);
        }
    }
    Ok(backlogged)
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
    fn a_backlog_whose_committed_offset_does_not_move_for_a_check_period_is_a_stall() {
        let seen = |entries: &[(i32, i64)]| -> HashMap<(String, i32), i64> {
            entries
                .iter()
                .map(|&(p, offset)| (("t".to_owned(), p), offset))
                .collect()
        };
        let mut stalls = Stalls::default();
        assert!(
            !stalls.observe(seen(&[(0, 5), (1, 7)])),
            "a first sighting is not a stall"
        );
        assert!(!stalls.observe(seen(&[(0, 9), (1, 8)])), "both moved on");
        assert!(!stalls.observe(seen(&[(0, 12)])), "partition 1 caught up; 0 moved");
        assert!(stalls.observe(seen(&[(0, 12), (1, 8)])), "partition 0 stood still");
        assert!(
            !stalls.observe(seen(&[(0, 12)])),
            "after a rejoin the watch starts over"
        );
        assert!(!stalls.observe(HashMap::new()), "no backlog elsewhere");
        assert!(!stalls.observe(seen(&[(0, 12)])));
    }

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
