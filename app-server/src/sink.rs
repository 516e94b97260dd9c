//! Delivery of events to the external data platform over HTTP, through a
//! [`ResilientClient`]: each send retries with backoff within a deadline, and a circuit
//! breaker stops hammering the platform (and stalling the consumer) while it is down.

use async_trait::async_trait;
use core_domain::event::DomainEvent;
use ports::{DataPlatformSink, SinkError};
use reqwest::header::CONTENT_TYPE;

use crate::resilient::{CallError, CallPolicy, ClientConfigError, ResilientClient};

/// [`ports::DataPlatformSink`] that POSTs each event's JSON envelope to the platform.
///
/// Headers: `Content-Type: application/json`, `Idempotency-Key: <event id>` (so the
/// platform can drop the duplicates at-least-once delivery produces) and `X-Event-Type`.
/// 2xx is delivered; 4xx other than 408/429 is [`SinkError::Rejected`]; 5xx, 408, 429,
/// timeouts and connection errors are retried, then [`SinkError::Unavailable`].
#[derive(Debug)]
pub struct HttpDataPlatformSink {
    client: ResilientClient,
}

impl HttpDataPlatformSink {
    /// A sink for the platform's endpoint `url`.
    ///
    /// # Errors
    /// [`ClientConfigError`] when the URL does not parse or the HTTP client cannot be built.
    pub fn new(url: &str, policy: &CallPolicy) -> Result<Self, ClientConfigError> {
        Ok(Self {
            client: ResilientClient::new("data platform", url, policy)?,
        })
    }
}

#[async_trait]
impl DataPlatformSink for HttpDataPlatformSink {
    async fn send(&self, event: &DomainEvent) -> Result<(), SinkError> {
        let body = event.to_json();
        let result = self
            .client
            .send(|client, url| {
                client
                    .post(url.clone())
                    .header(CONTENT_TYPE, "application/json")
                    .header("Idempotency-Key", event.id.to_string())
                    .header("X-Event-Type", event.event_type())
                    .body(body.clone())
            })
            .await;
        let (result, outcome) = match result {
            Ok(_) => (Ok(()), "ok"),
            Err(CallError::Refused(reason)) => (Err(SinkError::Rejected(reason)), "rejected"),
            Err(CallError::Unavailable(reason)) if reason == "circuit open" => {
                (Err(SinkError::Unavailable(reason)), "circuit_open")
            }
            Err(CallError::Unavailable(reason)) => (Err(SinkError::Unavailable(reason)), "unavailable"),
        };
        metrics::counter!("data_platform_sends_total", "outcome" => outcome).increment(1);
        result
    }
}

/// The sink used when no data-platform URL is configured: the event is logged and
/// counted as delivered, so the consumer keeps moving in development setups.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogOnlySink;

#[async_trait]
impl DataPlatformSink for LogOnlySink {
    async fn send(&self, event: &DomainEvent) -> Result<(), SinkError> {
        tracing::info!(
            event_id = %event.id,
            event_type = event.event_type(),
            payload = %event.to_json(),
            "data platform not configured: event logged only"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use axum::Router;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode as AxumStatus};
    use axum::routing::post;
    use core_domain::event::EventPayload;
    use core_domain::{EventId, MemberId, OrderId, PaymentId};
    use time::macros::datetime;
    use uuid::Uuid;

    use super::*;

    /// What the fake platform does with request number `n` (0-based).
    type Behaviour = Arc<dyn Fn(usize) -> Reply + Send + Sync>;

    #[derive(Clone, Copy)]
    enum Reply {
        Status(u16),
        Hang,
    }

    #[derive(Clone)]
    struct Platform {
        requests: Arc<AtomicUsize>,
        last: Arc<Mutex<Option<(HeaderMap, String)>>>,
        behaviour: Arc<Mutex<Behaviour>>,
    }

    impl Platform {
        fn requests(&self) -> usize {
            self.requests.load(Ordering::SeqCst)
        }

        fn behave(&self, behaviour: impl Fn(usize) -> Reply + Send + Sync + 'static) {
            *self.behaviour.lock().unwrap() = Arc::new(behaviour);
        }
    }

    async fn receive(State(platform): State<Platform>, headers: HeaderMap, body: String) -> AxumStatus {
        let n = platform.requests.fetch_add(1, Ordering::SeqCst);
        *platform.last.lock().unwrap() = Some((headers, body));
        let behaviour = Arc::clone(&platform.behaviour.lock().unwrap());
        match behaviour(n) {
            Reply::Status(code) => AxumStatus::from_u16(code).unwrap(),
            Reply::Hang => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                AxumStatus::OK
            }
        }
    }

    /// Starts a fake data platform on a free port.
    async fn platform(behaviour: impl Fn(usize) -> Reply + Send + Sync + 'static) -> (Platform, SocketAddr) {
        let platform = Platform {
            requests: Arc::new(AtomicUsize::new(0)),
            last: Arc::new(Mutex::new(None)),
            behaviour: Arc::new(Mutex::new(Arc::new(behaviour))),
        };
        let app = Router::new()
            .route("/{tenant}/events", post(receive))
            .with_state(platform.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (platform, addr)
    }

    fn sink(addr: SocketAddr, policy: CallPolicy) -> HttpDataPlatformSink {
        HttpDataPlatformSink::new(&format!("http://{addr}/hexride/events"), &policy).unwrap()
    }

    fn fast() -> CallPolicy {
        CallPolicy {
            timeout: Duration::from_secs(2),
            max_attempts: 3,
            backoff: Duration::from_millis(10),
            breaker_threshold: 3,
            breaker_cooldown: Duration::from_secs(60),
        }
    }

    fn payment() -> DomainEvent {
        let at = datetime!(2026-05-01 0:00 UTC);
        DomainEvent::new(
            EventId(Uuid::now_v7()),
            at,
            EventPayload::PaymentSucceeded {
                payment_id: PaymentId(Uuid::now_v7()),
                order_id: OrderId(Uuid::now_v7()),
                member_id: MemberId(Uuid::now_v7()),
                amount: 12_000,
                items: vec![],
                paid_at: at,
            },
        )
    }

    #[tokio::test]
    async fn two_server_errors_then_success_is_delivered_in_three_requests() {
        let (platform, addr) = platform(|n| Reply::Status(if n < 2 { 500 } else { 200 })).await;
        let event = payment();

        assert_eq!(sink(addr, fast()).send(&event).await, Ok(()));

        assert_eq!(platform.requests(), 3);
        let (headers, body) = platform.last.lock().unwrap().clone().unwrap();
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["idempotency-key"], event.id.to_string().as_str());
        assert_eq!(headers["x-event-type"], "payment.succeeded");
        assert_eq!(DomainEvent::from_json(body.as_bytes()).unwrap(), event);
    }

    #[tokio::test]
    async fn a_client_error_is_rejected_without_retrying() {
        let (platform, addr) = platform(|_| Reply::Status(400)).await;

        let result = sink(addr, fast()).send(&payment()).await;

        assert!(
            matches!(result, Err(SinkError::Rejected(ref m)) if m.contains("400")),
            "{result:?}"
        );
        assert_eq!(platform.requests(), 1);
    }

    #[tokio::test]
    async fn too_many_requests_is_retried() {
        let (platform, addr) = platform(|n| Reply::Status(if n == 0 { 429 } else { 204 })).await;
        assert_eq!(sink(addr, fast()).send(&payment()).await, Ok(()));
        assert_eq!(platform.requests(), 2);
    }

    #[tokio::test]
    async fn persistent_server_errors_are_unavailable_and_then_open_the_circuit() {
        let (platform, addr) = platform(|_| Reply::Status(500)).await;
        let sink = sink(addr, fast());

        for sent in 1..=3 {
            assert!(matches!(sink.send(&payment()).await, Err(SinkError::Unavailable(_))));
            assert_eq!(platform.requests(), sent * 3);
        }

        assert_eq!(
            sink.send(&payment()).await,
            Err(SinkError::Unavailable("circuit open".into()))
        );
        assert_eq!(platform.requests(), 9);
    }

    #[tokio::test]
    async fn after_the_cooldown_one_trial_closes_the_circuit_if_it_succeeds() {
        let (platform, addr) = platform(|_| Reply::Status(503)).await;
        let sink = sink(
            addr,
            CallPolicy {
                max_attempts: 1,
                breaker_threshold: 2,
                breaker_cooldown: Duration::from_millis(100),
                ..fast()
            },
        );
        for _ in 0..2 {
            assert!(sink.send(&payment()).await.is_err());
        }
        assert_eq!(
            sink.send(&payment()).await,
            Err(SinkError::Unavailable("circuit open".into()))
        );

        // The trial fails: open again, without a second request.
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(matches!(sink.send(&payment()).await, Err(SinkError::Unavailable(m)) if m != "circuit open"));
        assert_eq!(
            sink.send(&payment()).await,
            Err(SinkError::Unavailable("circuit open".into()))
        );
        assert_eq!(platform.requests(), 3);

        // The platform recovers: the next trial succeeds and the circuit closes.
        platform.behave(|_| Reply::Status(200));
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(sink.send(&payment()).await, Ok(()));
        assert_eq!(sink.send(&payment()).await, Ok(()));
        assert_eq!(platform.requests(), 5);
    }

    #[tokio::test]
    async fn a_hanging_platform_times_out_as_unavailable() {
        let (platform, addr) = platform(|_| Reply::Hang).await;
        let sink = sink(
            addr,
            CallPolicy {
                timeout: Duration::from_millis(200),
                max_attempts: 1,
                ..fast()
            },
        );

        let started = Instant::now();
        let result = sink.send(&payment()).await;
        let elapsed = started.elapsed();

        assert!(
            matches!(result, Err(SinkError::Unavailable(ref m)) if m.contains("timed out")),
            "{result:?}"
        );
        assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(1_000), "{elapsed:?}");
        assert_eq!(platform.requests(), 1);
    }

    #[tokio::test]
    async fn a_refused_connection_is_unavailable() {
        // Bind and drop a listener to get a port nobody listens on.
        let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let result = sink(
            addr,
            CallPolicy {
                max_attempts: 2,
                ..fast()
            },
        )
        .send(&payment())
        .await;
        assert!(matches!(result, Err(SinkError::Unavailable(_))), "{result:?}");
    }

    #[test]
    fn an_unparsable_url_is_a_configuration_error() {
        let result = HttpDataPlatformSink::new("not a url", &fast());
        assert!(matches!(result, Err(ClientConfigError::InvalidUrl { .. })));
    }

    #[tokio::test]
    async fn the_log_only_sink_accepts_everything() {
        assert_eq!(LogOnlySink.send(&payment()).await, Ok(()));
    }
}
