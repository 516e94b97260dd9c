//! librdkafka callbacks: its log lines and client errors go to `tracing` (tagged with the
//! client's role), and a consumer commits what it has handled before a rebalance takes its
//! partitions away, so the next owner does not redo it.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// Routes librdkafka's logs and errors to `tracing`.
#[derive(Debug, Clone)]
pub(crate) struct LogContext {
    /// `producer`, `admin` or the consumer group: which client said it.
    pub(crate) client: String,
}

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let client = self.client.as_str();
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                tracing::error!(target: "librdkafka", client, fac, "{message}");
            }
            // librdkafka's "errors" are mostly lost connections it recovers from by itself.
            RDKafkaLogLevel::Error | RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", client, fac, "{message}");
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", client, fac, "{message}");
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", client, fac, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Mostly "broker transport failure" or "all brokers down": librdkafka reconnects by
        // itself, so this is a warning; what fails because of it is reported where it fails.
        tracing::warn!(target: "librdkafka", client = %self.client, %error, reason, "kafka client error");
    }
}

/// Offsets handled but not committed yet: `(topic, partition)` → the next offset to read.
#[derive(Debug, Default)]
pub(crate) struct PendingOffsets(Mutex<BTreeMap<(String, i32), i64>>);

impl PendingOffsets {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<(String, i32), i64>> {
        // A plain map updated entry by entry: still consistent after a panic elsewhere.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that the message at `offset` was handled (or dead-lettered).
    pub(crate) fn handled(&self, topic: &str, partition: i32, offset: i64) {
        self.lock().insert((topic.to_owned(), partition), offset + 1);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    /// The pending offsets as a commit request, or `None` when there is nothing to commit.
    /// They stay pending until [`Self::committed`] confirms them.
    pub(crate) fn to_commit(&self) -> Option<TopicPartitionList> {
        let pending = self.lock();
        if pending.is_empty() {
            return None;
        }
        let mut list = TopicPartitionList::with_capacity(pending.len());
        for ((topic, partition), offset) in pending.iter() {
            // Adding an offset only fails for an invalid offset value, and these are valid.
            if list
                .add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .is_err()
            {
                tracing::warn!(topic, partition, offset, "cannot express the offset to commit");
            }
        }
        Some(list)
    }

    /// Forgets the entries of `list` that did not move since it was built.
    pub(crate) fn committed(&self, list: &TopicPartitionList) {
        let mut pending = self.lock();
        for element in list.elements() {
            let key = (element.topic().to_owned(), element.partition());
            if let (Some(&now), Offset::Offset(sent)) = (pending.get(&key), element.offset())
                && now == sent
            {
                pending.remove(&key);
            }
        }
    }

    /// Forgets the entries of partitions this consumer no longer owns.
    fn forget(&self, revoked: &TopicPartitionList) {
        let mut pending = self.lock();
        for element in revoked.elements() {
            pending.remove(&(element.topic().to_owned(), element.partition()));
        }
    }
}

/// A consumer's context: logs, plus a commit of the pending offsets when partitions are
/// revoked. Rebalance callbacks run inside `recv`, between two messages, so everything
/// pending is fully handled.
pub(crate) struct GroupContext {
    pub(crate) log: LogContext,
    pub(crate) pending: std::sync::Arc<PendingOffsets>,
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.log.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason);
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(revoked) => {
                if let Some(list) = self.pending.to_commit() {
                    // Asynchronous: this callback runs on the consumer's task and must not
                    // block. If the commit is lost, the new owner redelivers these messages
                    // and the handlers' inbox makes that a no-op.
                    if let Err(error) = consumer.commit(&list, CommitMode::Async) {
                        tracing::warn!(client = %self.log.client, %error, "commit before a rebalance failed");
                    }
                }
                self.pending.forget(revoked);
                tracing::info!(client = %self.log.client, partitions = revoked.count(), "partitions revoked");
            }
            Rebalance::Assign(assigned) => {
                tracing::info!(client = %self.log.client, partitions = assigned.count(), "partitions assigned");
            }
            Rebalance::Error(error) => {
                tracing::warn!(client = %self.log.client, %error, "rebalance error");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_offsets_point_past_the_last_handled_message_and_clear_once_committed() {
        let pending = PendingOffsets::default();
        pending.handled("t", 0, 4);
        pending.handled("t", 0, 5);
        pending.handled("t", 1, 0);
        let list = pending.to_commit().expect("something to commit");
        assert_eq!(list.find_partition("t", 0).map(|e| e.offset()), Some(Offset::Offset(6)));
        assert_eq!(list.find_partition("t", 1).map(|e| e.offset()), Some(Offset::Offset(1)));
        // A message handled while the commit was in flight stays pending.
        pending.handled("t", 1, 1);
        pending.committed(&list);
        assert_eq!(pending.len(), 1);
        let rest = pending.to_commit().expect("the later offset");
        assert_eq!(rest.find_partition("t", 1).map(|e| e.offset()), Some(Offset::Offset(2)));
    }
}
