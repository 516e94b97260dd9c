//! Delivery of events to the external data platform over HTTP. The platform is a third
//! party that can be slow or down, so each send retries with backoff within a deadline and
//! a circuit breaker stops hammering it (and stalling the consumer) while it is down.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use core_domain::event::DomainEvent;
use ports::{DataPlatformSink, SinkError};
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;

/// Longest pause between two attempts of one send, however many attempts are configured.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How much of a rejecting response body is kept in the error.
const MAX_ERROR_BODY: usize = 200;

/// Where and how to deliver events to the data platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPlatformConfig {
    /// The endpoint events are POSTed to. Empty means "not configured" (use [`LogOnlySink`]).
    pub url: String,
    /// Deadline of one HTTP request, connection included.
    pub timeout: Duration,
    /// Attempts within one `send` (at least one is made).
    pub max_attempts: u32,
    /// Pause after the first failed attempt; doubled after each further one.
    pub backoff: Duration,
    /// Consecutive failed sends that open the circuit; 0 disables the breaker.
    pub breaker_threshold: u32,
    /// How long an open circuit fails fast before one trial send is let through.
    pub breaker_cooldown: Duration,
}

impl Default for DataPlatformConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            timeout: Duration::from_secs(5),
            max_attempts: 3,
            backoff: Duration::from_millis(200),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(30),
        }
    }
}

/// The sink cannot be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum SinkConfigError {
    #[error("invalid data platform url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// [`ports::DataPlatformSink`] that POSTs each event's JSON envelope to the platform.
///
/// Headers: `Content-Type: application/json`, `Idempotency-Key: <event id>` (so the
/// platform can drop the duplicates at-least-once delivery produces) and `X-Event-Type`.
/// 2xx is delivered; 4xx other than 408/429 is [`SinkError::Rejected`]; 5xx, 408, 429,
/// timeouts and connection errors are retried, then [`SinkError::Unavailable`].
#[derive(Debug)]
pub struct HttpDataPlatformSink {
    client: reqwest::Client,
    url: reqwest::Url,
    max_attempts: u32,
    backoff: Duration,
    breaker: Breaker,
}

impl HttpDataPlatformSink {
    /// A sink for `config.url`.
    ///
    /// # Errors
    /// [`SinkConfigError`] when the URL does not parse or the HTTP client cannot be built.
    pub fn new(config: DataPlatformConfig) -> Result<Self, SinkConfigError> {
        let url = reqwest::Url::parse(&config.url).map_err(|e| SinkConfigError::InvalidUrl {
            url: config.url.clone(),
            reason: e.to_string(),
        })?;
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            // A redirected POST may turn into a GET; a redirect is a configuration error.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            client,
            url,
            max_attempts: config.max_attempts,
            backoff: config.backoff,
            breaker: Breaker::new(config.breaker_threshold, config.breaker_cooldown),
        })
    }

    /// Tries up to `max_attempts` times, backing off exponentially between attempts.
    async fn deliver(&self, event: &DomainEvent) -> Result<(), SinkError> {
        let body = event.to_json();
        let mut last_failure = String::new();
        for attempt in 1..=self.max_attempts {
            match self.attempt(event, &body).await {
                Attempt::Delivered => return Ok(()),
                Attempt::Rejected(reason) => return Err(SinkError::Rejected(reason)),
                Attempt::Retryable(reason) => {
                    tracing::debug!(event_id = %event.id, attempt, %reason, "data platform attempt failed");
                    last_failure = reason;
                }
            }
            if attempt < self.max_attempts {
                tokio::time::sleep(backoff_after(self.backoff, attempt)).await;
            }
        }
        Err(SinkError::Unavailable(format!(
            "{last_failure} (after {} attempts)",
            self.max_attempts
        )))
    }

    async fn attempt(&self, event: &DomainEvent, body: &str) -> Attempt {
        let request = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", event.id.to_string())
            .header("X-Event-Type", event.event_type())
            .body(body.to_owned());
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) if e.is_timeout() => return Attempt::Retryable("request timed out".into()),
            Err(e) => return Attempt::Retryable(format!("request failed: {e}")),
        };
        let status = response.status();
        if status.is_success() {
            return Attempt::Delivered;
        }
        if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS
        {
            return Attempt::Retryable(format!("HTTP {status}"));
        }
        // Anything else (4xx, or a redirect we do not follow) will not change on retry.
        let detail = response.text().await.unwrap_or_default();
        let detail: String = detail.chars().take(MAX_ERROR_BODY).collect();
        Attempt::Rejected(if detail.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {detail}")
        })
    }
}

#[async_trait]
impl DataPlatformSink for HttpDataPlatformSink {
    async fn send(&self, event: &DomainEvent) -> Result<(), SinkError> {
        let Some(permit) = self.breaker.admit() else {
            metrics::counter!("data_platform_sends_total", "outcome" => "circuit_open").increment(1);
            return Err(SinkError::Unavailable("circuit open".into()));
        };
        let result = self.deliver(event).await;
        // A rejection is an answer from a working platform: it does not count as a failure.
        permit.finish(!matches!(result, Err(SinkError::Unavailable(_))));
        let outcome = match &result {
            Ok(()) => "ok",
            Err(SinkError::Rejected(_)) => "rejected",
            Err(SinkError::Unavailable(_)) => "unavailable",
        };
        metrics::counter!("data_platform_sends_total", "outcome" => outcome).increment(1);
        result
    }
}

enum Attempt {
    Delivered,
    Rejected(String),
    Retryable(String),
}

/// The pause after failed attempt number `attempt` (1-based): `base * 2^(attempt-1)`, capped.
fn backoff_after(base: Duration, attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(16);
    base.saturating_mul(factor).min(MAX_BACKOFF)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BreakerState {
    /// Sends go through; `failures` consecutive sends have failed.
    Closed { failures: u32 },
    /// Sends fail fast until `until`.
    Open { until: Instant },
    /// One trial send is in flight; others fail fast until it settles.
    HalfOpen,
}

/// A consecutive-failure circuit breaker: closed → open after `threshold` failed sends →
/// after `cooldown` one trial (half-open) → closed if it succeeds, open again if not.
#[derive(Debug)]
struct Breaker {
    state: Mutex<BreakerState>,
    threshold: u32,
    cooldown: Duration,
}

impl Breaker {
    fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            state: Mutex::new(BreakerState::Closed { failures: 0 }),
            threshold,
            cooldown,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        // The state is a plain value replaced whole, so a poisoned lock still holds a valid one.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Permission to send, or `None` to fail fast.
    fn admit(&self) -> Option<Permit<'_>> {
        let mut state = self.lock();
        match *state {
            BreakerState::Closed { .. } => Some(Permit::new(self, false)),
            BreakerState::Open { until } if Instant::now() >= until => {
                *state = BreakerState::HalfOpen;
                tracing::info!("data platform circuit half-open: sending a trial event");
                Some(Permit::new(self, true))
            }
            BreakerState::Open { .. } | BreakerState::HalfOpen => None,
        }
    }

    fn record(&self, trial: bool, healthy: bool) {
        let mut state = self.lock();
        if healthy {
            if !matches!(*state, BreakerState::Closed { .. }) {
                tracing::info!("data platform circuit closed");
            }
            *state = BreakerState::Closed { failures: 0 };
            return;
        }
        let open = BreakerState::Open {
            until: Instant::now() + self.cooldown,
        };
        match *state {
            _ if trial => {
                tracing::warn!("data platform trial failed: circuit open again");
                *state = open;
            }
            BreakerState::Closed { failures } => {
                let failures = failures.saturating_add(1);
                if self.threshold > 0 && failures >= self.threshold {
                    tracing::warn!(failures, "data platform circuit open");
                    *state = open;
                } else {
                    *state = BreakerState::Closed { failures };
                }
            }
            // Another send already opened the circuit (or is its trial): leave it to that.
            BreakerState::Open { .. } | BreakerState::HalfOpen => {}
        }
    }
}

/// An admitted send. If it is dropped unsettled (the caller's future was cancelled), a
/// half-open trial gives way so the next send can try, instead of the circuit staying stuck.
struct Permit<'a> {
    breaker: &'a Breaker,
    trial: bool,
    settled: bool,
}

impl<'a> Permit<'a> {
    fn new(breaker: &'a Breaker, trial: bool) -> Self {
        Self {
            breaker,
            trial,
            settled: false,
        }
    }

    fn finish(mut self, healthy: bool) {
        self.settled = true;
        self.breaker.record(self.trial, healthy);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.trial && !self.settled {
            let mut state = self.breaker.lock();
            if *state == BreakerState::HalfOpen {
                *state = BreakerState::Open { until: Instant::now() };
            }
        }
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
    use std::sync::atomic::{AtomicUsize, Ordering};

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

    fn sink(addr: SocketAddr, config: DataPlatformConfig) -> HttpDataPlatformSink {
        HttpDataPlatformSink::new(DataPlatformConfig {
            url: format!("http://{addr}/hexride/events"),
            ..config
        })
        .unwrap()
    }

    fn fast() -> DataPlatformConfig {
        DataPlatformConfig {
            url: String::new(),
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
            DataPlatformConfig {
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
            DataPlatformConfig {
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
            DataPlatformConfig {
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
        let result = HttpDataPlatformSink::new(DataPlatformConfig {
            url: "not a url".into(),
            ..DataPlatformConfig::default()
        });
        assert!(matches!(result, Err(SinkConfigError::InvalidUrl { .. })));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let base = Duration::from_millis(100);
        assert_eq!(backoff_after(base, 1), Duration::from_millis(100));
        assert_eq!(backoff_after(base, 2), Duration::from_millis(200));
        assert_eq!(backoff_after(base, 3), Duration::from_millis(400));
        assert_eq!(backoff_after(base, 40), MAX_BACKOFF);
    }

    #[tokio::test]
    async fn the_log_only_sink_accepts_everything() {
        assert_eq!(LogOnlySink.send(&payment()).await, Ok(()));
    }
}
