//! Topic provisioning at start-up. Not every broker creates topics on first use (the one the
//! tests run on never does), and a topic created by a producer's first record would get the
//! broker's default partition count anyway, so every topic and its dead-letter topic is
//! created explicitly; one that already exists is fine.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::RDKafkaErrorCode;
use tokio::time::Instant;

use crate::KafkaSetupError;
use crate::context::LogContext;
use crate::settings::KafkaSettings;

/// Creates each of `topics` (domain names, namespaced here) and its `.dlt` topic unless it
/// exists, retrying for up to `within` while the brokers cannot be reached.
///
/// # Errors
/// [`KafkaSetupError::Provision`] when a topic cannot be created (or the brokers did not
/// answer within `within`).
pub async fn ensure_topics(settings: &KafkaSettings, topics: &[&str], within: Duration) -> Result<(), KafkaSetupError> {
    let names: Vec<String> = topics
        .iter()
        .flat_map(|t| {
            let topic = settings.topic(t);
            [KafkaSettings::dead_letter_topic(&topic), topic]
        })
        .collect();
    let admin: AdminClient<LogContext> = settings
        .base_config("admin")
        .create_with_context(LogContext { client: "admin".into() })
        .map_err(KafkaSetupError::Client)?;
    let deadline = Instant::now() + within;
    let mut missing = names.clone();
    let result = loop {
        match create(&admin, settings, &missing).await {
            Ok(()) => break Ok(()),
            Err(failed) if Instant::now() + Duration::from_millis(500) < deadline => {
                tracing::warn!(error = %failed.1, "creating kafka topics failed; retrying");
                missing = failed.0;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err((_, reason)) => break Err(KafkaSetupError::Provision(reason)),
        }
    };
    // Dropping the client joins its thread.
    drop(tokio::task::spawn_blocking(move || drop(admin)));
    if result.is_ok() {
        tracing::info!(topics = ?names, partitions = settings.partitions, "kafka topics ready");
    }
    result
}

/// One attempt; on failure, the topics still to create and why.
async fn create(
    admin: &AdminClient<LogContext>,
    settings: &KafkaSettings,
    names: &[String],
) -> Result<(), (Vec<String>, String)> {
    let new_topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                settings.partitions.max(1),
                TopicReplication::Fixed(settings.replication_factor.max(1)),
            )
        })
        .collect();
    let options = AdminOptions::new()
        .request_timeout(Some(settings.request_timeout))
        .operation_timeout(Some(settings.request_timeout));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(|e| (names.to_vec(), format!("create topics: {e}")))?;
    let mut failed = Vec::new();
    let mut reasons = Vec::new();
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                reasons.push(format!("{name}: {code}"));
                failed.push(name);
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err((failed, format!("create topics: {}", reasons.join(", "))))
    }
}
