//! The outbox relay's transport on the embedded default: instead of Kafka, each record is
//! handed straight to the in-process handlers subscribed to its topic. A record counts as
//! published only when every such handler applied it; handlers dedupe through their inbox,
//! so re-running the ones that already succeeded on a retry is harmless.

use std::sync::Arc;

use async_trait::async_trait;
use core_domain::event::DomainEvent;
use ports::{EventHandler, EventPublisher, HandlerError, OutboxRecord, PublishError};

/// [`ports::EventPublisher`] that dispatches to in-process [`EventHandler`]s.
pub struct InProcessPublisher {
    handlers: Vec<Arc<dyn EventHandler>>,
}

impl InProcessPublisher {
    /// A publisher delivering to `handlers` (each receives the topics it names).
    pub fn new(handlers: Vec<Arc<dyn EventHandler>>) -> Self {
        Self { handlers }
    }

    async fn dispatch(&self, record: &OutboxRecord) -> Result<(), PublishError> {
        let event = DomainEvent::from_json(record.payload.as_bytes())
            .map_err(|e| PublishError::Permanent(format!("malformed event payload of {}: {e}", record.id)))?;

        let mut failures = Vec::new();
        let mut all_permanent = true;
        for handler in self
            .handlers
            .iter()
            .filter(|h| h.topics().contains(&record.topic.as_str()))
        {
            let handled = handler.handle(&event).await;
            // The delivery log (README, "Following a message"): one line per consumer.
            tracing::info!(
                target: "hexride::delivery",
                direction = "consumed",
                topic = %record.topic,
                key = %record.key,
                event_id = %record.id,
                event_type = %record.event_type,
                consumer = handler.name(),
                outcome = match &handled {
                    Ok(handled) => handled.as_str(),
                    Err(HandlerError::Transient(_)) => "retried",
                    Err(HandlerError::Permanent(_)) => "failed",
                },
                "event consumed in process"
            );
            if let Err(error) = handled {
                tracing::warn!(
                    consumer = handler.name(),
                    event_id = %record.id,
                    event_type = %record.event_type,
                    %error,
                    "in-process handler failed"
                );
                all_permanent &= matches!(error, HandlerError::Permanent(_));
                failures.push(format!("{}: {error}", handler.name()));
            }
        }
        match (failures.is_empty(), all_permanent) {
            (true, _) => Ok(()),
            // Retrying cannot help any of the failed handlers: dead-letter now.
            (false, true) => Err(PublishError::Permanent(failures.join("; "))),
            (false, false) => Err(PublishError::Failed(failures.join("; "))),
        }
    }
}

impl std::fmt::Debug for InProcessPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.handlers.iter().map(|h| h.name()).collect();
        f.debug_struct("InProcessPublisher").field("handlers", &names).finish()
    }
}

#[async_trait]
impl EventPublisher for InProcessPublisher {
    async fn publish(&self, records: &[OutboxRecord]) -> Vec<Result<(), PublishError>> {
        // A claimed batch holds at most one record per aggregate, so records are independent
        // and may be applied concurrently; results keep the order of `records`.
        futures::future::join_all(records.iter().map(|record| self.dispatch(record))).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use core_domain::event::{EventPayload, MEMBER_EVENTS, PAYMENT_EVENTS};
    use core_domain::{EventId, MemberId, OrderId, PaymentId};
    use ports::{Handled, HandlerError};
    use time::macros::datetime;
    use uuid::Uuid;

    use super::*;

    /// Records what it was given; fails every event while `fail` is set.
    struct FakeHandler {
        name: &'static str,
        topics: Vec<&'static str>,
        fail: Option<HandlerError>,
        seen: Mutex<Vec<EventId>>,
    }

    impl FakeHandler {
        fn new(name: &'static str, topics: Vec<&'static str>, fail: Option<HandlerError>) -> Arc<Self> {
            Arc::new(Self {
                name,
                topics,
                fail,
                seen: Mutex::new(Vec::new()),
            })
        }

        fn seen(&self) -> Vec<EventId> {
            self.seen.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl EventHandler for FakeHandler {
        fn name(&self) -> &'static str {
            self.name
        }

        fn topics(&self) -> Vec<&'static str> {
            self.topics.clone()
        }

        async fn handle(&self, event: &DomainEvent) -> Result<Handled, HandlerError> {
            self.seen.lock().unwrap().push(event.id);
            match &self.fail {
                Some(error) => Err(error.clone()),
                None => Ok(Handled::Applied),
            }
        }
    }

    fn withdrawn() -> OutboxRecord {
        let at = datetime!(2026-05-01 0:00 UTC);
        OutboxRecord::of(&DomainEvent::new(
            EventId(Uuid::now_v7()),
            at,
            EventPayload::MemberWithdrawn {
                member_id: MemberId(Uuid::now_v7()),
                withdrawn_at: at,
            },
        ))
    }

    fn paid() -> OutboxRecord {
        let at = datetime!(2026-05-01 0:00 UTC);
        OutboxRecord::of(&DomainEvent::new(
            EventId(Uuid::now_v7()),
            at,
            EventPayload::PaymentSucceeded {
                payment_id: PaymentId(Uuid::now_v7()),
                order_id: OrderId(Uuid::now_v7()),
                member_id: MemberId(Uuid::now_v7()),
                amount: 1_000,
                items: vec![],
                paid_at: at,
            },
        ))
    }

    #[tokio::test]
    async fn each_record_goes_to_the_handlers_of_its_topic() {
        let members = FakeHandler::new("insurance-expiry", vec![MEMBER_EVENTS], None);
        let payments = FakeHandler::new("data-platform", vec![PAYMENT_EVENTS], None);
        let publisher = InProcessPublisher::new(vec![members.clone(), payments.clone()]);
        let (w, p) = (withdrawn(), paid());

        let results = publisher.publish(&[w.clone(), p.clone()]).await;

        assert_eq!(results, vec![Ok(()), Ok(())]);
        assert_eq!(members.seen(), vec![w.id]);
        assert_eq!(payments.seen(), vec![p.id]);
    }

    #[tokio::test]
    async fn a_record_without_subscribers_is_acknowledged() {
        let publisher = InProcessPublisher::new(vec![]);
        assert_eq!(publisher.publish(&[withdrawn()]).await, vec![Ok(())]);
    }

    #[tokio::test]
    async fn a_record_fails_if_any_subscribed_handler_fails_and_others_still_run() {
        let ok = FakeHandler::new("ok", vec![MEMBER_EVENTS], None);
        let failing = FakeHandler::new(
            "flaky",
            vec![MEMBER_EVENTS],
            Some(HandlerError::Transient("db hiccup".into())),
        );
        let publisher = InProcessPublisher::new(vec![failing.clone(), ok.clone()]);
        let (w, p) = (withdrawn(), paid());

        let results = publisher.publish(&[w.clone(), p]).await;

        match &results[0] {
            Err(PublishError::Failed(msg)) => assert!(msg.contains("flaky"), "{msg}"),
            other => panic!("expected Failed, got {other:?}"),
        }
        assert_eq!(results[1], Ok(()));
        assert_eq!(ok.seen(), vec![w.id]);
        assert_eq!(failing.seen(), vec![w.id]);
    }

    #[tokio::test]
    async fn a_malformed_payload_fails_without_calling_handlers() {
        let handler = FakeHandler::new("h", vec![MEMBER_EVENTS], None);
        let publisher = InProcessPublisher::new(vec![handler.clone()]);
        let mut record = withdrawn();
        record.payload = "{not json".into();

        let results = publisher.publish(&[record]).await;

        match &results[0] {
            Err(PublishError::Permanent(msg)) => assert!(msg.contains("malformed"), "{msg}"),
            other => panic!("expected Failed, got {other:?}"),
        }
        assert!(handler.seen().is_empty());
    }
}
