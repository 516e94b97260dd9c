//! Kafka for hexride: the outbox relay's publisher, consumers that run the event handlers as
//! consumer groups with manual commits and a dead-letter topic, and topic provisioning.
//!
//! Delivery is at-least-once at every hop (the relay marks a row sent only after its delivery
//! report; a consumer commits an offset only after the effect), and effectively-once in
//! effect because every handler records an inbox row with its effect. Nothing here needs
//! Kafka transactions, which not every Kafka-protocol broker implements.

mod admin;
mod consumer;
mod context;
mod producer;
mod publisher;
mod settings;

pub use admin::ensure_topics;
pub use consumer::{
    CONSUMER_HEADER, ERROR_HEADER, KafkaConsumer, ORIGINAL_OFFSET_HEADER, ORIGINAL_PARTITION_HEADER,
    ORIGINAL_TOPIC_HEADER,
};
pub use publisher::{EVENT_ID_HEADER, EVENT_TYPE_HEADER, KafkaPublisher};
pub use settings::{ConsumerSettings, DLT_SUFFIX, KafkaSettings};

/// A Kafka client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    /// librdkafka refused the configuration or could not create the client.
    #[error("kafka client: {0}")]
    Client(#[source] rdkafka::error::KafkaError),
    /// Topics could not be created.
    #[error("kafka topic provisioning: {0}")]
    Provision(String),
}
