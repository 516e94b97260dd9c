//! What the Kafka clients need to know: where the brokers are, how topics and groups are
//! named, and the timeouts and retry budgets that decide when a record or message is given up.
//! The `client_config` helpers turn these into librdkafka properties in one place.

use std::time::Duration;

use rdkafka::ClientConfig;

/// Settings shared by the publisher, the consumers and topic provisioning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    /// `host:port[,host:port…]`.
    pub brokers: String,
    /// Prefixes every topic and consumer group (`<namespace>.member-events`), so several
    /// environments or test runs can share one cluster. Empty = no prefix.
    pub namespace: String,
    /// The base of every client id (`<client_id>-producer`, `<client_id>-<group>`), which
    /// brokers show in their logs and metrics.
    pub client_id: String,
    /// Partitions of the topics created at start-up (existing topics are left as they are).
    pub partitions: i32,
    /// Replication factor of the topics created at start-up.
    pub replication_factor: i32,
    /// How long a record may wait for its delivery report (`message.timeout.ms`) before the
    /// relay counts it as failed. Keep it well below the relay's lease, or another relay may
    /// claim and publish the row while this one still waits.
    pub delivery_timeout: Duration,
    /// How long the producer waits to batch records (`linger.ms`).
    pub linger: Duration,
    /// Deadline of admin requests (topic creation) and of the flush on shutdown.
    pub request_timeout: Duration,
    /// Consumer group session timeout: how long a silent consumer keeps its partitions.
    pub session_timeout: Duration,
    /// Longest time the broker holds a fetch open while waiting for data (`fetch.wait.max.ms`):
    /// bounds the delay between a publish and its consumption.
    pub fetch_wait_max: Duration,
    /// Handler retries and commits.
    pub consumer: ConsumerSettings,
}

/// How a consumer retries its handler and commits offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSettings {
    /// Handler calls per message before a transient failure sends it to the dead-letter topic.
    pub max_attempts: u32,
    /// Pause after the first failed call; doubled after each further one, up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Offsets of handled messages are committed (synchronously) after this many messages…
    pub commit_batch: usize,
    /// …or once the consumer has been idle or this long has passed since the first
    /// uncommitted one, whichever comes first.
    pub commit_interval: Duration,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            commit_batch: 100,
            commit_interval: Duration::from_millis(200),
        }
    }
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            brokers: String::new(),
            namespace: String::new(),
            client_id: "hexride".to_owned(),
            partitions: 6,
            replication_factor: 1,
            delivery_timeout: Duration::from_secs(10),
            linger: Duration::from_millis(2),
            request_timeout: Duration::from_secs(10),
            session_timeout: Duration::from_secs(10),
            fetch_wait_max: Duration::from_millis(100),
            consumer: ConsumerSettings::default(),
        }
    }
}

/// The suffix of a topic's dead-letter topic.
pub const DLT_SUFFIX: &str = ".dlt";

impl KafkaSettings {
    /// The Kafka topic of a domain topic (`member-events` → `<namespace>.member-events`).
    pub fn topic(&self, name: &str) -> String {
        self.prefixed(name)
    }

    /// The dead-letter topic of a Kafka topic (already namespaced): `<topic>.dlt`.
    pub fn dead_letter_topic(kafka_topic: &str) -> String {
        format!("{kafka_topic}{DLT_SUFFIX}")
    }

    /// The consumer group of a handler (`insurance-expiry` → `<namespace>.insurance-expiry`).
    pub fn group(&self, name: &str) -> String {
        self.prefixed(name)
    }

    fn prefixed(&self, name: &str) -> String {
        if self.namespace.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.namespace)
        }
    }

    /// Properties every client shares.
    pub(crate) fn base_config(&self, client_suffix: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", format!("{}-{client_suffix}", self.client_id))
            .set("socket.keepalive.enable", "true")
            // Bounds every broker request, so a synchronous commit against a dead broker
            // fails after this instead of librdkafka's minute.
            .set("socket.timeout.ms", millis(self.request_timeout).max(10).to_string())
            // Reconnect quickly after a broker restart.
            .set("reconnect.backoff.ms", "50")
            .set("reconnect.backoff.max.ms", "1000");
        config
    }

    /// An idempotent producer: `acks=all`, in-order retries without duplicates, and a
    /// delivery report for every record within `delivery_timeout`.
    pub(crate) fn producer_config(&self, client_suffix: &str) -> ClientConfig {
        let mut config = self.base_config(client_suffix);
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", millis(self.delivery_timeout).to_string())
            .set("linger.ms", millis(self.linger).to_string())
            .set(
                "request.timeout.ms",
                millis(self.request_timeout.min(self.delivery_timeout))
                    .max(1)
                    .to_string(),
            );
        config
    }

    /// A group consumer that never commits on its own: classic protocol, no auto-commit,
    /// no offset store, reading from the start of a partition the group has no offset for.
    pub(crate) fn consumer_config(&self, group: &str) -> ClientConfig {
        let mut config = self.base_config(group);
        config
            .set("group.id", group)
            .set("group.protocol", "classic")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("session.timeout.ms", millis(self.session_timeout).to_string())
            .set(
                "heartbeat.interval.ms",
                (millis(self.session_timeout) / 3).max(1).to_string(),
            )
            .set("fetch.wait.max.ms", millis(self.fetch_wait_max).to_string());
        config
    }
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_prefixes_topics_and_groups_and_the_dead_letter_topic_follows() {
        let settings = KafkaSettings {
            namespace: "staging".into(),
            ..KafkaSettings::default()
        };
        assert_eq!(settings.topic("member-events"), "staging.member-events");
        assert_eq!(settings.group("insurance-expiry"), "staging.insurance-expiry");
        assert_eq!(
            KafkaSettings::dead_letter_topic(&settings.topic("member-events")),
            "staging.member-events.dlt"
        );
        assert_eq!(KafkaSettings::default().topic("member-events"), "member-events");
    }

    #[test]
    fn the_producer_is_idempotent_and_waits_for_every_replica() {
        let config = KafkaSettings::default().producer_config("p");
        assert_eq!(config.get("enable.idempotence"), Some("true"));
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("message.timeout.ms"), Some("10000"));
    }

    #[test]
    fn consumers_commit_only_by_hand_on_the_classic_protocol() {
        let config = KafkaSettings::default().consumer_config("g");
        assert_eq!(config.get("group.id"), Some("g"));
        assert_eq!(config.get("group.protocol"), Some("classic"));
        assert_eq!(config.get("enable.auto.commit"), Some("false"));
        assert_eq!(config.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(config.get("auto.offset.reset"), Some("earliest"));
    }
}
