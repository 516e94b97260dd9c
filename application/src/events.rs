//! Event plumbing of the application: minting events, the outbox relay that drains the
//! outbox to a publisher (Kafka or in-process), and the data-platform consumer.
//!
//! Delivery is at-least-once: a row is marked sent only after the publisher acknowledged
//! it, and consumers record an inbox row with their effect so a redelivery is a no-op.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use core_domain::EventId;
use core_domain::event::{DomainEvent, EventPayload, PAYMENT_EVENTS};
use ports::{
    Consistency, DataPlatformSink, Database, EventHandler, EventPublisher, EventTrailReads, Handled, HandlerError,
    OutboxStore, SinkError, StoreError,
};

use crate::Ports;

/// Wraps payloads into events with fresh ids, all occurring at `now`.
pub fn new_events(
    ports: &Ports,
    now: OffsetDateTime,
    payloads: impl IntoIterator<Item = EventPayload>,
) -> Vec<DomainEvent> {
    payloads
        .into_iter()
        .map(|payload| DomainEvent::new(EventId(ports.ids.new_id()), now, payload))
        .collect()
}

/// Every store failure may pass (a concurrent consumer's conflict, an outage): retry.
pub(crate) fn transient(e: StoreError) -> HandlerError {
    HandlerError::Transient(e.to_string())
}

/// Relay tunables.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// Rows claimed per round.
    pub batch_size: i64,
    /// How long a claim protects rows from other relays.
    pub lease: Duration,
    /// Attempts before a row is marked `dead`.
    pub max_attempts: i32,
    /// The pause after a row's first failed attempt, doubled after each later one.
    pub base_backoff: Duration,
    /// The longest pause between attempts.
    pub max_backoff: Duration,
    /// Longest sleep when idle (a commit that appends events wakes the relay sooner).
    pub idle_wait: Duration,
    /// How long the relay waits after it woke before claiming, so rows committed together
    /// go in one claim and one mark (fewer database transactions per event under load, at
    /// this much more delivery latency). Zero claims at once.
    pub linger: Duration,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            batch_size: 200,
            lease: Duration::from_secs(30),
            max_attempts: 12,
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(300),
            idle_wait: Duration::from_millis(500),
            linger: Duration::from_millis(5),
        }
    }
}

/// Drains the outbox to a publisher. Any number may run at once (rows are claimed).
pub struct OutboxRelay {
    outbox: Arc<dyn OutboxStore>,
    publisher: Arc<dyn EventPublisher>,
    clock: Arc<dyn ports::Clock>,
    settings: RelaySettings,
    owner: String,
}

/// `base * 2^(attempt-1)`, capped.
pub fn backoff(attempt: i32, base: Duration, max: Duration) -> Duration {
    let exponent = u32::try_from(attempt.saturating_sub(1)).unwrap_or(0).min(20);
    base.saturating_mul(1u32 << exponent).min(max)
}

impl OutboxRelay {
    /// A relay claiming as `owner`, publishing to `publisher`.
    pub fn new(
        outbox: Arc<dyn OutboxStore>,
        publisher: Arc<dyn EventPublisher>,
        clock: Arc<dyn ports::Clock>,
        settings: RelaySettings,
        owner: impl Into<String>,
    ) -> Self {
        Self {
            outbox,
            publisher,
            clock,
            settings,
            owner: owner.into(),
        }
    }

    /// Claims one batch, publishes it, records the outcome. Returns how many were claimed.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let records = self
            .outbox
            .claim(&self.owner, self.settings.batch_size, self.settings.lease)
            .await?;
        if records.is_empty() {
            return Ok(0);
        }
        let results = self.publisher.publish(&records).await;
        let mut sent = Vec::with_capacity(records.len());
        for (record, result) in records.iter().zip(results.into_iter().chain(std::iter::repeat_with(|| {
            Err(ports::PublishError::Failed("no result from publisher".into()))
        }))) {
            match result {
                Ok(()) => sent.push(record.id),
                Err(error) => {
                    let attempt = record.attempts + 1;
                    let dead =
                        attempt >= self.settings.max_attempts || matches!(error, ports::PublishError::Permanent(_));
                    let delay = backoff(attempt, self.settings.base_backoff, self.settings.max_backoff);
                    let retry_at = self.clock.now() + time::Duration::try_from(delay).unwrap_or(time::Duration::MAX);
                    if dead {
                        tracing::error!(event_id = %record.id, topic = %record.topic, %error, attempt, "outbox row is dead");
                        metrics::counter!("outbox_dead_total").increment(1);
                    } else {
                        tracing::warn!(event_id = %record.id, topic = %record.topic, %error, attempt, "publish failed; will retry");
                    }
                    metrics::counter!("outbox_publish_failures_total").increment(1);
                    self.outbox
                        .mark_failed(record.id, &error.to_string(), retry_at, dead)
                        .await?;
                }
            }
        }
        if !sent.is_empty() {
            self.outbox.mark_sent(&sent).await?;
            metrics::counter!("outbox_published_total").increment(sent.len() as u64);
        }
        Ok(records.len())
    }

    /// Publishes the backlog gauges.
    pub async fn report_backlog(&self) {
        match self.outbox.stats().await {
            Ok(stats) => {
                metrics::gauge!("outbox_backlog").set(stats.backlog as f64);
                metrics::gauge!("outbox_dead").set(stats.dead as f64);
                let age = stats
                    .oldest_created_at
                    .map_or(0.0, |oldest| (self.clock.now() - oldest).as_seconds_f64().max(0.0));
                metrics::gauge!("outbox_oldest_age_seconds").set(age);
            }
            Err(error) => tracing::warn!(%error, "could not read outbox stats"),
        }
    }

    /// Runs until `shutdown` resolves: drains while there is work, otherwise waits for a
    /// commit that appended events (or `idle_wait`). A store error backs off briefly.
    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut last_report = std::time::Instant::now() - Duration::from_secs(60);
        loop {
            if last_report.elapsed() >= Duration::from_secs(5) {
                self.report_backlog().await;
                last_report = std::time::Instant::now();
            }
            let pause = match self.run_once().await {
                // A full batch: more rows may be waiting. A shorter one drained the outbox,
                // and a commit since then has left its wake-up for the wait below.
                Ok(n) if n >= usize::try_from(self.settings.batch_size).unwrap_or(usize::MAX) => None,
                Ok(_) => Some(self.settings.idle_wait),
                Err(error) => {
                    tracing::warn!(%error, "outbox relay: store error");
                    Some(self.settings.base_backoff.max(Duration::from_millis(500)))
                }
            };
            if let Some(pause) = pause {
                tokio::select! {
                    () = &mut shutdown => return,
                    () = async {
                        self.outbox.wait_for_events(pause).await;
                        tokio::time::sleep(self.settings.linger).await;
                    } => {}
                }
            } else if futures::FutureExt::now_or_never(&mut shutdown).is_some() {
                return;
            }
        }
    }
}

/// Streams `payment.succeeded` to the external data platform, once per event.
///
/// The effect is outside our database, so the inbox is checked before sending (a
/// redelivery is skipped) and written after the platform acknowledged; the event id goes
/// along as an idempotency key for the rare crash between the two.
pub struct DataPlatformHandler {
    db: Arc<dyn Database>,
    inbox: Arc<dyn EventTrailReads>,
    sink: Arc<dyn DataPlatformSink>,
}

/// The data-platform consumer's name (inbox key and Kafka consumer group).
pub const DATA_PLATFORM: &str = "data-platform";

impl DataPlatformHandler {
    /// The handler, recording its inbox in `db`, reading it through `inbox`, and delivering
    /// to `sink`.
    pub fn new(db: Arc<dyn Database>, inbox: Arc<dyn EventTrailReads>, sink: Arc<dyn DataPlatformSink>) -> Self {
        Self { db, inbox, sink }
    }

    /// Whether the inbox already has the event: one read of the primary (a delivery that
    /// just committed is there), with no transaction or lock held while the network call
    /// runs.
    async fn already_delivered(&self, event_id: EventId) -> Result<bool, StoreError> {
        self.inbox.consumed(DATA_PLATFORM, event_id, Consistency::Strong).await
    }
}

#[async_trait]
impl EventHandler for DataPlatformHandler {
    fn name(&self) -> &'static str {
        DATA_PLATFORM
    }

    fn topics(&self) -> Vec<&'static str> {
        vec![PAYMENT_EVENTS]
    }

    async fn handle(&self, event: &DomainEvent) -> Result<Handled, HandlerError> {
        if !matches!(event.payload, EventPayload::PaymentSucceeded { .. }) {
            return Ok(Handled::Ignored);
        }
        if self.already_delivered(event.id).await.map_err(transient)? {
            return Ok(Handled::Duplicate);
        }
        self.sink.send(event).await.map_err(|e| match e {
            SinkError::Unavailable(m) => HandlerError::Transient(m),
            SinkError::Rejected(m) => HandlerError::Permanent(m),
        })?;
        let record = async {
            let mut uow = self.db.begin().await?;
            uow.events().record_delivery(DATA_PLATFORM, event.id).await?;
            uow.commit().await
        };
        match record.await {
            Ok(_) => Ok(Handled::Applied),
            // A concurrent delivery of the same event recorded it first (the platform
            // deduplicates on the event id).
            Err(StoreError::Conflict(_)) => Ok(Handled::Duplicate),
            Err(e) => Err(transient(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ports::{
        MockDataPlatformSink, MockDatabase, MockEventPublisher, MockEventTrailReads, MockOutboxStore, MockUnitOfWork,
        OutboxRecord, PublishError,
    };

    fn record(seq: i64, attempts: i32) -> OutboxRecord {
        OutboxRecord {
            id: EventId(uuid::Uuid::now_v7()),
            seq,
            topic: "member-events".into(),
            event_type: "member.withdrawn".into(),
            key: "k".into(),
            payload: "{}".into(),
            attempts,
            created_at: OffsetDateTime::now_utc(),
        }
    }

    fn clock() -> Arc<dyn ports::Clock> {
        let mut clock = ports::MockClock::new();
        clock.expect_now().returning(OffsetDateTime::now_utc);
        Arc::new(clock)
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        assert_eq!(backoff(1, base, max), base);
        assert_eq!(backoff(3, base, max), Duration::from_millis(400));
        assert_eq!(backoff(30, base, max), max);
    }

    /// An outbox whose claims return `batches[n]` rows on the n-th call (then none), and
    /// whose wait ends at `woken`'s first notification or after `max_wait`.
    struct ScriptedOutbox {
        batches: Vec<usize>,
        claims: std::sync::atomic::AtomicUsize,
        woken: tokio::sync::Notify,
    }

    #[async_trait]
    impl OutboxStore for ScriptedOutbox {
        async fn claim(&self, _: &str, limit: i64, _: Duration) -> Result<Vec<OutboxRecord>, StoreError> {
            let n = self.claims.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let rows = self.batches.get(n).copied().unwrap_or(0);
            assert!(rows as i64 <= limit);
            Ok((0..rows).map(|seq| record(seq as i64, 0)).collect())
        }
        async fn mark_sent(&self, _: &[EventId]) -> Result<(), StoreError> {
            Ok(())
        }
        async fn mark_failed(&self, _: EventId, _: &str, _: OffsetDateTime, _: bool) -> Result<(), StoreError> {
            Ok(())
        }
        async fn stats(&self) -> Result<ports::OutboxStats, StoreError> {
            Ok(ports::OutboxStats::default())
        }
        async fn wait_for_events(&self, max_wait: Duration) {
            let _ = tokio::time::timeout(max_wait, self.woken.notified()).await;
        }
    }

    /// How many claims a relay of `batch_size` makes over [`ScriptedOutbox`] in one second
    /// (paused time), with one commit's wake-up at `wake_at_ms` if given.
    async fn claims_made(batch_size: i64, batches: Vec<usize>, wake_at_ms: Option<u64>) -> usize {
        let outbox = Arc::new(ScriptedOutbox {
            batches,
            claims: std::sync::atomic::AtomicUsize::new(0),
            woken: tokio::sync::Notify::new(),
        });
        if let Some(at) = wake_at_ms {
            let outbox = Arc::clone(&outbox);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(at)).await;
                outbox.woken.notify_one();
            });
        }
        let mut publisher = MockEventPublisher::new();
        publisher
            .expect_publish()
            .returning(|records| records.iter().map(|_| Ok(())).collect());
        let relay = OutboxRelay::new(
            Arc::clone(&outbox) as Arc<dyn OutboxStore>,
            Arc::new(publisher),
            clock(),
            RelaySettings {
                batch_size,
                idle_wait: Duration::from_secs(10),
                linger: Duration::from_millis(5),
                ..RelaySettings::default()
            },
            "t",
        );
        relay.run(tokio::time::sleep(Duration::from_secs(1))).await;
        outbox.claims.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test(start_paused = true)]
    async fn a_relay_claims_again_after_a_full_batch_and_waits_after_a_short_one() {
        // A short batch drained the outbox: no empty claim after it, only the wait.
        assert_eq!(claims_made(200, vec![1], None).await, 1);
        // A full batch may have left rows: claimed again at once, then the short one ends it.
        assert_eq!(claims_made(2, vec![2, 2, 1], None).await, 3);
        // A commit's wake-up (after the linger) brings the next claim.
        assert_eq!(claims_made(200, vec![1, 3], Some(100)).await, 2);
    }

    #[tokio::test]
    async fn the_relay_marks_sent_only_what_was_acknowledged() {
        let (ok, failed, last) = (record(1, 0), record(2, 0), record(3, 11));
        let (ok_id, failed_id, last_id) = (ok.id, failed.id, last.id);
        let mut outbox = MockOutboxStore::new();
        let batch = vec![ok, failed, last];
        outbox.expect_claim().return_once(move |_, _, _| Ok(batch));
        outbox
            .expect_mark_failed()
            .withf(move |id, _, _, dead| *id == failed_id && !*dead)
            .times(1)
            .returning(|_, _, _, _| Ok(()));
        outbox
            .expect_mark_failed()
            .withf(move |id, _, _, dead| *id == last_id && *dead)
            .times(1)
            .returning(|_, _, _, _| Ok(()));
        outbox
            .expect_mark_sent()
            .withf(move |ids| ids == [ok_id])
            .times(1)
            .returning(|_| Ok(()));
        let mut publisher = MockEventPublisher::new();
        publisher.expect_publish().returning(|_| {
            vec![
                Ok(()),
                Err(PublishError::Failed("nack".into())),
                Err(PublishError::Failed("nack".into())),
            ]
        });
        let relay = OutboxRelay::new(
            Arc::new(outbox),
            Arc::new(publisher),
            clock(),
            RelaySettings::default(),
            "t",
        );
        assert_eq!(relay.run_once().await.expect("ok"), 3);
    }

    #[tokio::test]
    async fn an_undeliverable_record_is_dead_at_its_first_attempt() {
        let poison = record(1, 0);
        let poison_id = poison.id;
        let mut outbox = MockOutboxStore::new();
        outbox.expect_claim().return_once(move |_, _, _| Ok(vec![poison]));
        outbox
            .expect_mark_failed()
            .withf(move |id, _, _, dead| *id == poison_id && *dead)
            .times(1)
            .returning(|_, _, _, _| Ok(()));
        outbox.expect_mark_sent().never();
        let mut publisher = MockEventPublisher::new();
        publisher
            .expect_publish()
            .returning(|_| vec![Err(PublishError::Permanent("malformed".into()))]);
        let relay = OutboxRelay::new(
            Arc::new(outbox),
            Arc::new(publisher),
            clock(),
            RelaySettings::default(),
            "t",
        );
        assert_eq!(relay.run_once().await.expect("ok"), 1);
    }

    #[tokio::test]
    async fn a_claim_failure_is_returned_and_nothing_is_published() {
        let mut outbox = MockOutboxStore::new();
        outbox
            .expect_claim()
            .returning(|_, _, _| Err(StoreError::unavailable("down")));
        let mut publisher = MockEventPublisher::new();
        publisher.expect_publish().never();
        let relay = OutboxRelay::new(
            Arc::new(outbox),
            Arc::new(publisher),
            clock(),
            RelaySettings::default(),
            "t",
        );
        assert!(relay.run_once().await.is_err());
    }

    fn payment_event() -> DomainEvent {
        DomainEvent::new(
            EventId(uuid::Uuid::now_v7()),
            OffsetDateTime::now_utc(),
            EventPayload::PaymentSucceeded {
                payment_id: core_domain::PaymentId(uuid::Uuid::now_v7()),
                order_id: core_domain::OrderId(uuid::Uuid::now_v7()),
                member_id: core_domain::MemberId(uuid::Uuid::now_v7()),
                amount: 1_000,
                items: vec![],
                paid_at: OffsetDateTime::now_utc(),
            },
        )
    }

    /// An inbox that has the event unless `fresh`, and a database where it is recorded once
    /// if `then_commit`.
    fn db_with_inbox(fresh: bool, then_commit: bool) -> (Arc<MockDatabase>, Arc<MockEventTrailReads>) {
        let mut inbox = MockEventTrailReads::new();
        inbox
            .expect_consumed()
            .withf(|consumer, _, consistency| consumer == DATA_PLATFORM && *consistency == Consistency::Strong)
            .times(1)
            .return_once(move |_, _, _| Ok(!fresh));
        let mut db = MockDatabase::new();
        if then_commit {
            let mut record = MockUnitOfWork::new();
            record
                .events
                .expect_record_delivery()
                .withf(|consumer, _| consumer == DATA_PLATFORM)
                .times(1)
                .return_once(|_, _| Ok(()));
            record.commits();
            db.expect_begin().times(1).return_once(move || Ok(Box::new(record)));
        }
        (Arc::new(db), Arc::new(inbox))
    }

    fn handler(fresh: bool, then_commit: bool, sink: MockDataPlatformSink) -> DataPlatformHandler {
        let (db, inbox) = db_with_inbox(fresh, then_commit);
        DataPlatformHandler::new(db, inbox, Arc::new(sink))
    }

    #[tokio::test]
    async fn the_data_platform_gets_a_payment_once_and_the_inbox_records_it() {
        let mut sink = MockDataPlatformSink::new();
        sink.expect_send().times(1).returning(|_| Ok(()));
        let handler = handler(true, true, sink);
        assert_eq!(handler.handle(&payment_event()).await, Ok(Handled::Applied));
    }

    #[tokio::test]
    async fn a_delivery_another_instance_recorded_first_is_done_and_a_failed_record_is_retried() {
        for (commit, outcome) in [
            (
                StoreError::Conflict(ports::Unique::Other("inbox_pkey".into())),
                Some(Handled::Duplicate),
            ),
            (StoreError::unavailable("down"), None),
        ] {
            let mut inbox = MockEventTrailReads::new();
            inbox.expect_consumed().return_once(|_, _, _| Ok(false));
            let mut record = MockUnitOfWork::new();
            record.events.expect_record_delivery().return_once(|_, _| Ok(()));
            record.end.expect_commit().return_once(move || Err(commit));
            let mut db = MockDatabase::new();
            db.expect_begin().return_once(move || Ok(Box::new(record)));
            let mut sink = MockDataPlatformSink::new();
            sink.expect_send().times(1).returning(|_| Ok(()));
            let handler = DataPlatformHandler::new(Arc::new(db), Arc::new(inbox), Arc::new(sink));
            let handled = handler.handle(&payment_event()).await;
            assert_eq!(handled.as_ref().ok().copied(), outcome, "{handled:?}");
            if outcome.is_none() {
                assert!(matches!(handled, Err(HandlerError::Transient(_))));
            }
        }
    }

    #[tokio::test]
    async fn a_redelivered_payment_is_not_sent_again() {
        let mut sink = MockDataPlatformSink::new();
        sink.expect_send().never();
        let handler = handler(false, false, sink);
        assert_eq!(handler.handle(&payment_event()).await, Ok(Handled::Duplicate));
    }

    #[tokio::test]
    async fn sink_failures_are_transient_or_permanent() {
        for (error, transient) in [
            (SinkError::Unavailable("503".into()), true),
            (SinkError::Rejected("400".into()), false),
        ] {
            let mut sink = MockDataPlatformSink::new();
            sink.expect_send().return_once(move |_| Err(error));
            let handler = handler(true, false, sink);
            let err = handler.handle(&payment_event()).await.expect_err("failed");
            assert_eq!(matches!(err, HandlerError::Transient(_)), transient);
        }
    }
}
