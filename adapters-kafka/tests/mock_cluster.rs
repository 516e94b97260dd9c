//! The adapter against librdkafka's in-process mock cluster: fast checks of the publisher's
//! acknowledgements and the consumer's order, commits and dead letters that need no broker.
//! The fault tests against a real broker live in `tests/tests/kafka_events.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};

use adapters_kafka::{
    ConsumerSettings, ERROR_HEADER, EVENT_ID_HEADER, EVENT_TYPE_HEADER, KafkaConsumer, KafkaPublisher, KafkaSettings,
};
use core_domain::event::{DomainEvent, EventPayload, MEMBER_EVENTS};
use core_domain::{EventId, MemberId};
use ports::{EventHandler, EventPublisher, Handled, HandlerError, OutboxRecord, PublishError};

fn settings(cluster: &MockCluster<'_, impl rdkafka::ClientContext>) -> KafkaSettings {
    KafkaSettings {
        brokers: cluster.bootstrap_servers(),
        namespace: "mock".into(),
        partitions: 1,
        delivery_timeout: Duration::from_millis(1_500),
        session_timeout: Duration::from_secs(6),
        consumer: ConsumerSettings {
            max_attempts: 2,
            base_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(20),
            ..ConsumerSettings::default()
        },
        ..KafkaSettings::default()
    }
}

fn cluster_with_topics() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("mock cluster");
    for topic in ["mock.member-events", "mock.member-events.dlt"] {
        cluster.create_topic(topic, 1, 1).expect("topic");
    }
    cluster
}

fn withdrawn(member: MemberId) -> DomainEvent {
    let at = time::OffsetDateTime::now_utc();
    DomainEvent::new(
        EventId(uuid::Uuid::now_v7()),
        at,
        EventPayload::MemberWithdrawn {
            member_id: member,
            withdrawn_at: at,
        },
    )
}

/// Records every event it is given.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<EventId>>,
}

#[async_trait]
impl EventHandler for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    fn topics(&self) -> Vec<&'static str> {
        vec![MEMBER_EVENTS]
    }

    async fn handle(&self, event: &DomainEvent) -> Result<Handled, HandlerError> {
        self.seen.lock().unwrap().push(event.id);
        Ok(Handled::Applied)
    }
}

async fn wait_until(within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "condition not met within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every record of `topic`, read without a group.
fn read_all(brokers: &str, topic: &str, expected: usize) -> Vec<rdkafka::message::OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "mock-reader")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    let mut list = rdkafka::TopicPartitionList::new();
    list.add_partition_offset(topic, 0, rdkafka::Offset::Beginning).unwrap();
    consumer.assign(&list).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut messages = Vec::new();
    while messages.len() < expected && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            messages.push(message.unwrap().detach());
        }
    }
    messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_batch_is_acknowledged_per_record_and_consumed_in_order() {
    let cluster = cluster_with_topics();
    let settings = settings(&cluster);
    let member = MemberId(uuid::Uuid::now_v7());
    let events: Vec<DomainEvent> = (0..5).map(|_| withdrawn(member)).collect();
    let records: Vec<OutboxRecord> = events.iter().map(OutboxRecord::of).collect();

    let publisher = KafkaPublisher::new(&settings).unwrap();
    assert_eq!(publisher.publish(&records).await, vec![Ok(()); 5]);

    let written = tokio::task::spawn_blocking({
        let brokers = settings.brokers.clone();
        move || read_all(&brokers, "mock.member-events", 5)
    })
    .await
    .unwrap();
    assert_eq!(written.len(), 5);
    let first = &written[0];
    assert_eq!(first.key(), Some(member.to_string().as_bytes()));
    assert_eq!(first.payload(), Some(records[0].payload.as_bytes()));
    let headers = first.headers().expect("headers");
    let header = |name: &str| {
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(header(EVENT_ID_HEADER), Some(events[0].id.to_string()));
    assert_eq!(header(EVENT_TYPE_HEADER), Some("member.withdrawn".to_owned()));

    let recorder = Arc::new(Recorder::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let consumer = KafkaConsumer::new(&settings, recorder.clone()).unwrap();
    let running = tokio::spawn(consumer.run(async move {
        let _ = stopped.await;
    }));
    wait_until(Duration::from_secs(30), || recorder.seen.lock().unwrap().len() == 5).await;
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    assert_eq!(
        *recorder.seen.lock().unwrap(),
        events.iter().map(|e| e.id).collect::<Vec<_>>()
    );
    publisher.flush(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_the_broker_does_not_acknowledge_are_failed_not_sent() {
    let cluster = cluster_with_topics();
    let settings = settings(&cluster);
    let publisher = KafkaPublisher::new(&settings).unwrap();
    let record = OutboxRecord::of(&withdrawn(MemberId(uuid::Uuid::now_v7())));
    assert_eq!(publisher.publish(std::slice::from_ref(&record)).await, vec![Ok(())]);

    cluster.broker_down(1).unwrap();
    let started = Instant::now();
    let results = publisher.publish(std::slice::from_ref(&record)).await;
    assert!(matches!(results[..], [Err(PublishError::Failed(_))]), "{results:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

    cluster.broker_up(1).unwrap();
    assert_eq!(publisher.publish(std::slice::from_ref(&record)).await, vec![Ok(())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unparsable_message_is_dead_lettered_and_the_next_one_handled() {
    let cluster = cluster_with_topics();
    let settings = settings(&cluster);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &settings.brokers)
        .create()
        .unwrap();
    producer
        .send(
            FutureRecord::to("mock.member-events").key("k").payload("{not json"),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    let good = withdrawn(MemberId(uuid::Uuid::now_v7()));
    KafkaPublisher::new(&settings)
        .unwrap()
        .publish(&[OutboxRecord::of(&good)])
        .await;

    let recorder = Arc::new(Recorder::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let consumer = KafkaConsumer::new(&settings, recorder.clone()).unwrap();
    let running = tokio::spawn(consumer.run(async move {
        let _ = stopped.await;
    }));
    wait_until(Duration::from_secs(30), || !recorder.seen.lock().unwrap().is_empty()).await;
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();

    assert_eq!(*recorder.seen.lock().unwrap(), vec![good.id]);
    let dead = tokio::task::spawn_blocking({
        let brokers = settings.brokers.clone();
        move || read_all(&brokers, "mock.member-events.dlt", 1)
    })
    .await
    .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].payload(), Some(&b"{not json"[..]));
    let error = dead[0]
        .headers()
        .and_then(|h| h.iter().find(|h| h.key == ERROR_HEADER).and_then(|h| h.value))
        .map(|v| String::from_utf8_lossy(v).into_owned());
    assert!(error.is_some_and(|e| e.contains("unparsable event")));
}
