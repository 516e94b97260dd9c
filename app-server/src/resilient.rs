//! Calls to a third party over HTTP (the data platform, the licence-verification provider),
//! which can be slow or down: each call has a deadline, retries with backoff, and a circuit
//! breaker stops hammering the party (and stalling its callers) while it is down.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

/// Longest pause between two attempts of one call, however many attempts are configured.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How much of a refusing response body is kept in the error.
const MAX_ERROR_BODY: usize = 200;

/// How calls to one party behave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallPolicy {
    /// Deadline of one HTTP request, connection included.
    pub timeout: Duration,
    /// Attempts within one call (at least one is made).
    pub max_attempts: u32,
    /// Pause after the first failed attempt; doubled after each further one.
    pub backoff: Duration,
    /// Consecutive failed calls that open the circuit; 0 disables the breaker.
    pub breaker_threshold: u32,
    /// How long an open circuit fails fast before one trial call is let through.
    pub breaker_cooldown: Duration,
}

/// A client cannot be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ClientConfigError {
    #[error("invalid {party} url {url:?}: {reason}")]
    InvalidUrl {
        party: &'static str,
        url: String,
        reason: String,
    },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Why a call got no successful answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The party answered, refusing the request (4xx other than 408 and 429): sending it
    /// again would not change that.
    Refused(String),
    /// No answer in time after every attempt, or the circuit is open (`"circuit open"`).
    Unavailable(String),
}

/// An HTTP client for one party's endpoint, with its deadline, retries and breaker.
#[derive(Debug)]
pub struct ResilientClient {
    party: &'static str,
    client: reqwest::Client,
    url: reqwest::Url,
    max_attempts: u32,
    backoff: Duration,
    breaker: Breaker,
}

impl ResilientClient {
    /// A client for `url`, `party` naming it in logs.
    ///
    /// # Errors
    /// [`ClientConfigError`] when the URL does not parse or the HTTP client cannot be built.
    pub fn new(party: &'static str, url: &str, policy: &CallPolicy) -> Result<Self, ClientConfigError> {
        let url = reqwest::Url::parse(url).map_err(|e| ClientConfigError::InvalidUrl {
            party,
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        let client = reqwest::Client::builder()
            .timeout(policy.timeout)
            // A redirected POST may turn into a GET; a redirect is a configuration error.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            party,
            client,
            url,
            max_attempts: policy.max_attempts.max(1),
            backoff: policy.backoff,
            breaker: Breaker::new(party, policy.breaker_threshold, policy.breaker_cooldown),
        })
    }

    /// Sends the request `build` makes from the client and the endpoint, up to
    /// `max_attempts` times (backing off exponentially), unless the circuit is open; the
    /// first successful (2xx) response.
    ///
    /// # Errors
    /// [`CallError::Refused`] at once for a refusal; [`CallError::Unavailable`] after the
    /// last failed attempt, or at once while the circuit is open.
    pub async fn send(
        &self,
        build: impl Fn(&reqwest::Client, &reqwest::Url) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, CallError> {
        let Some(permit) = self.breaker.admit() else {
            return Err(CallError::Unavailable("circuit open".into()));
        };
        let result = self.attempts(build).await;
        // A refusal is an answer from a working party: it does not count as a failure.
        permit.finish(!matches!(result, Err(CallError::Unavailable(_))));
        result
    }

    async fn attempts(
        &self,
        build: impl Fn(&reqwest::Client, &reqwest::Url) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, CallError> {
        let mut last_failure = String::new();
        for attempt in 1..=self.max_attempts {
            match build(&self.client, &self.url).send().await {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) if retryable(response.status()) => last_failure = format!("HTTP {}", response.status()),
                Ok(response) => return Err(CallError::Refused(refusal(response).await)),
                Err(e) if e.is_timeout() => last_failure = "request timed out".into(),
                Err(e) => last_failure = format!("request failed: {e}"),
            }
            tracing::debug!(party = self.party, attempt, reason = %last_failure, "attempt failed");
            if attempt < self.max_attempts {
                tokio::time::sleep(backoff_after(self.backoff, attempt)).await;
            }
        }
        Err(CallError::Unavailable(format!(
            "{last_failure} (after {} attempts)",
            self.max_attempts
        )))
    }
}

fn retryable(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS
}

/// `HTTP <status>: <the start of the body>`.
async fn refusal(response: reqwest::Response) -> String {
    let status = response.status();
    let detail = response.text().await.unwrap_or_default();
    let detail: String = detail.chars().take(MAX_ERROR_BODY).collect();
    if detail.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {detail}")
    }
}

/// The pause after failed attempt number `attempt` (1-based): `base * 2^(attempt-1)`, capped.
pub fn backoff_after(base: Duration, attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(16);
    base.saturating_mul(factor).min(MAX_BACKOFF)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BreakerState {
    /// Calls go through; `failures` consecutive calls have failed.
    Closed { failures: u32 },
    /// Calls fail fast until `until`.
    Open { until: Instant },
    /// One trial call is in flight; others fail fast until it settles.
    HalfOpen,
}

/// A consecutive-failure circuit breaker: closed → open after `threshold` failed calls →
/// after `cooldown` one trial (half-open) → closed if it succeeds, open again if not.
#[derive(Debug)]
struct Breaker {
    party: &'static str,
    state: Mutex<BreakerState>,
    threshold: u32,
    cooldown: Duration,
}

impl Breaker {
    fn new(party: &'static str, threshold: u32, cooldown: Duration) -> Self {
        Self {
            party,
            state: Mutex::new(BreakerState::Closed { failures: 0 }),
            threshold,
            cooldown,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        // The state is a plain value replaced whole, so a poisoned lock still holds a valid one.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Permission to call, or `None` to fail fast.
    fn admit(&self) -> Option<Permit<'_>> {
        let mut state = self.lock();
        match *state {
            BreakerState::Closed { .. } => Some(Permit::new(self, false)),
            BreakerState::Open { until } if Instant::now() >= until => {
                *state = BreakerState::HalfOpen;
                tracing::info!(party = self.party, "circuit half-open: sending a trial call");
                Some(Permit::new(self, true))
            }
            BreakerState::Open { .. } | BreakerState::HalfOpen => None,
        }
    }

    fn record(&self, trial: bool, healthy: bool) {
        let mut state = self.lock();
        if healthy {
            if !matches!(*state, BreakerState::Closed { .. }) {
                tracing::info!(party = self.party, "circuit closed");
            }
            *state = BreakerState::Closed { failures: 0 };
            return;
        }
        let open = BreakerState::Open {
            until: Instant::now() + self.cooldown,
        };
        match *state {
            _ if trial => {
                tracing::warn!(party = self.party, "trial call failed: circuit open again");
                *state = open;
            }
            BreakerState::Closed { failures } => {
                let failures = failures.saturating_add(1);
                if self.threshold > 0 && failures >= self.threshold {
                    tracing::warn!(party = self.party, failures, "circuit open");
                    *state = open;
                } else {
                    *state = BreakerState::Closed { failures };
                }
            }
            // Another call already opened the circuit (or is its trial): leave it to that.
            BreakerState::Open { .. } | BreakerState::HalfOpen => {}
        }
    }
}

/// An admitted call. If it is dropped unsettled (the caller's future was cancelled), a
/// half-open trial gives way so the next call can try, instead of the circuit staying stuck.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let base = Duration::from_millis(100);
        assert_eq!(backoff_after(base, 1), Duration::from_millis(100));
        assert_eq!(backoff_after(base, 2), Duration::from_millis(200));
        assert_eq!(backoff_after(base, 3), Duration::from_millis(400));
        assert_eq!(backoff_after(base, 40), MAX_BACKOFF);
    }
}
