//! Kafka in the composition root. With `kafka.brokers` set, the outbox relay publishes to
//! Kafka instead of calling the handlers in process, and worker instances run each handler as
//! a consumer group. Topics are created at start-up, since the broker may not create them.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::task::JoinHandle;

use adapters_kafka::{ConsumerSettings, KafkaConsumer, KafkaPublisher, KafkaSettings};
use core_domain::event::TOPICS;

use crate::config::Config;
use crate::runtime::Runtime;
use crate::server::Shutdown;

/// The adapter's settings from `kafka.*`, or `None` when `kafka.brokers` is empty.
pub fn settings(config: &Config) -> Option<KafkaSettings> {
    let k = &config.kafka;
    let brokers = k.brokers.trim();
    if brokers.is_empty() {
        return None;
    }
    Some(KafkaSettings {
        brokers: brokers.to_owned(),
        namespace: k.namespace.trim().to_owned(),
        client_id: k.client_id.trim().to_owned(),
        partitions: k.partitions,
        replication_factor: k.replication_factor,
        delivery_timeout: k.delivery_timeout,
        linger: k.linger,
        request_timeout: k.request_timeout,
        session_timeout: k.session_timeout,
        fetch_wait_max: k.fetch_wait_max,
        consumer: ConsumerSettings {
            max_attempts: k.consumer_max_attempts,
            base_backoff: k.consumer_backoff,
            max_backoff: k.consumer_max_backoff.max(k.consumer_backoff),
            commit_batch: k.commit_batch,
            commit_interval: k.commit_interval,
        },
    })
}

/// Checks the settings, creates the topics (waiting up to `kafka.startup_timeout_secs` for
/// the brokers) and builds the publisher; `None` without Kafka.
///
/// # Errors
/// A delivery timeout that does not fit in the relay's lease, or topics that cannot be
/// created.
pub async fn connect(config: &Config) -> anyhow::Result<Option<Arc<KafkaPublisher>>> {
    let Some(settings) = settings(config) else {
        return Ok(None);
    };
    // A row whose delivery report is still awaited must not be claimed by another relay:
    // the report (or its timeout) has to come well within the lease.
    let lease = config.relay.lease;
    if settings.delivery_timeout + Duration::from_secs(2) > lease {
        bail!(
            "kafka.delivery_timeout_ms ({} ms) must be at least 2 s below relay.lease_secs ({} s), \
             or another relay could publish a row again while this one still waits for its acknowledgement",
            settings.delivery_timeout.as_millis(),
            lease.as_secs()
        );
    }
    let within = config.kafka.startup_timeout;
    adapters_kafka::ensure_topics(&settings, &TOPICS, within)
        .await
        .with_context(|| format!("preparing the kafka topics on {}", settings.brokers))?;
    let publisher = KafkaPublisher::new(&settings).context("creating the kafka producer")?;
    tracing::info!(brokers = %settings.brokers, namespace = %settings.namespace, "events go through kafka");
    Ok(Some(Arc::new(publisher)))
}

/// Starts one consumer per event handler (worker instances with Kafka only); each commits
/// and leaves its group when `shutdown` fires.
///
/// # Errors
/// When a consumer cannot be created (a configuration librdkafka refuses).
pub fn spawn_consumers(runtime: &Runtime, shutdown: &Shutdown) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let Some(settings) = settings(&runtime.config) else {
        return Ok(Vec::new());
    };
    let mut tasks = Vec::with_capacity(runtime.handlers.len());
    for handler in &runtime.handlers {
        let consumer = KafkaConsumer::new(&settings, Arc::clone(handler))
            .with_context(|| format!("creating the kafka consumer {}", handler.name()))?;
        let stop = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let group = consumer.group().to_owned();
            if let Err(error) = consumer.run(stop.wait()).await {
                tracing::error!(%group, error = %error, "kafka consumer failed");
            }
        }));
    }
    Ok(tasks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_brokers_there_is_no_kafka() {
        let config = Config::defaults().expect("defaults");
        assert!(settings(&config).is_none());
    }

    #[test]
    fn kafka_settings_come_from_the_kafka_section() {
        let mut config = Config::defaults().expect("defaults");
        config.kafka.brokers = " 10.0.0.1:9092,10.0.0.2:9092 ".into();
        config.kafka.namespace = "staging".into();
        let settings = settings(&config).expect("kafka");
        assert_eq!(settings.brokers, "10.0.0.1:9092,10.0.0.2:9092");
        assert_eq!(settings.topic("member-events"), "staging.member-events");
        assert_eq!(settings.delivery_timeout, config.kafka.delivery_timeout);
        assert_eq!(settings.consumer.max_attempts, config.kafka.consumer_max_attempts);
    }

    #[tokio::test]
    async fn a_delivery_timeout_longer_than_the_lease_is_refused() {
        let mut config = Config::defaults().expect("defaults");
        config.kafka.brokers = "127.0.0.1:1".into();
        config.relay.lease = Duration::from_secs(5);
        config.kafka.delivery_timeout = Duration::from_millis(10_000);
        let error = connect(&config).await.expect_err("refused");
        assert!(error.to_string().contains("relay.lease_secs"), "{error:#}");
    }
}
