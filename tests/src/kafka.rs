//! Looking at Kafka directly in tests: read a whole topic (to count events by id or check
//! their order), write raw records (poison messages), and read a group's committed offsets,
//! all without joining any group, so the application's own groups and offsets are left alone.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// One record of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMessage {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Option<Vec<u8>>,
    pub headers: BTreeMap<String, String>,
}

impl TopicMessage {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// Every record of `topic` up to its current end, in partition then offset order.
///
/// # Panics
/// When the broker cannot be read within 60 s.
pub async fn read_topic(brokers: &str, topic: &str) -> Vec<TopicMessage> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || read_topic_blocking(&brokers, &topic))
        .await
        .expect("reading the topic")
}

fn read_topic_blocking(brokers: &str, topic: &str) -> Vec<TopicMessage> {
    let timeout = Duration::from_secs(10);
    let consumer = reader(brokers, &format!("hxt-reader-{}", uuid::Uuid::now_v7().simple()));
    let mut assignment = TopicPartitionList::new();
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for partition in 0..partition_count(&consumer, topic) {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, timeout)
            .unwrap_or_else(|e| panic!("watermarks of {topic}/{partition}: {e}"));
        if high > low {
            assignment
                .add_partition_offset(topic, partition, Offset::Offset(low))
                .expect("offset");
            ends.insert(partition, high);
        }
    }
    let mut messages = Vec::new();
    if ends.is_empty() {
        return messages;
    }
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ends.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{topic}: could not read to the end (left: {ends:?})"
        );
        let Some(next) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = next.unwrap_or_else(|e| panic!("reading {topic}: {e}"));
        let headers = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let (partition, offset) = (message.partition(), message.offset());
        messages.push(TopicMessage {
            partition,
            offset,
            key: message.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            payload: message.payload().map(<[u8]>::to_vec),
            headers,
        });
        if ends.get(&partition).is_some_and(|end| offset + 1 >= *end) {
            ends.remove(&partition);
        }
    }
    messages.sort_by_key(|m| (m.partition, m.offset));
    messages
}

/// Writes one raw record (no headers) and returns its `(partition, offset)`.
///
/// # Panics
/// When the broker does not acknowledge it within 10 s.
pub async fn produce_raw(brokers: &str, topic: &str, key: &str, payload: &[u8]) -> (i32, i64) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "10000")
        .create()
        .expect("a producer");
    let delivered = producer
        .send(
            FutureRecord::to(topic).key(key).payload(payload),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("producing to {topic}: {e}"));
    (delivered.partition, delivered.offset)
}

/// The end offset (high watermark) of each partition of `topic`.
///
/// # Panics
/// When the broker does not answer within 10 s.
pub async fn end_offsets(brokers: &str, topic: &str) -> BTreeMap<i32, i64> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let timeout = Duration::from_secs(10);
        let consumer = reader(&brokers, &format!("hxt-reader-{}", uuid::Uuid::now_v7().simple()));
        (0..partition_count(&consumer, &topic))
            .map(|p| {
                let (_, high) = consumer
                    .fetch_watermarks(&topic, p, timeout)
                    .unwrap_or_else(|e| panic!("watermarks of {topic}/{p}: {e}"));
                (p, high)
            })
            .collect()
    })
    .await
    .expect("reading watermarks")
}

/// The offsets `group` has committed on each partition of `topic` (partitions it never
/// committed are left out). Reads them without joining the group.
///
/// # Panics
/// When the broker does not answer within 10 s.
pub async fn committed_offsets(brokers: &str, group: &str, topic: &str) -> BTreeMap<i32, i64> {
    let (brokers, group, topic) = (brokers.to_owned(), group.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer = reader(&brokers, &group);
        let mut list = TopicPartitionList::new();
        for p in 0..partition_count(&consumer, &topic) {
            list.add_partition(&topic, p);
        }
        let committed = consumer
            .committed_offsets(list, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("committed offsets of {group} on {topic}: {e}"));
        committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect()
    })
    .await
    .expect("reading committed offsets")
}

fn reader(brokers: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("a reader")
}

fn partition_count(consumer: &BaseConsumer, topic: &str) -> i32 {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("metadata of {topic}: {e}"));
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().len())
        .unwrap_or_else(|| panic!("no topic {topic}"));
    i32::try_from(partitions).expect("partition count")
}
