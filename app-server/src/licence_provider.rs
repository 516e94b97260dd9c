//! The licence-verification provider over HTTP, and the stand-in used when none is
//! configured.
//!
//! The provider's contract: `POST <licence_provider.url>` with
//! `{"number": "11-22-333333-44", "expires_on": "2030-05-31"}`; it answers 200 with
//! `{"status": "valid", "expires_on": "2030-05-31"}` or `{"status": "rejected", "reason": "…"}`.
//! Only such an answer is a verdict: a refusal (4xx), a failure (5xx, timeout) or a body
//! that does not parse leaves the licence as it is (a rider is never suspended on a
//! garbled answer) and is [`VerifierError::Unavailable`].

use async_trait::async_trait;
use time::Date;

use core_domain::licence::Verdict;
use ports::{LicenceQuery, LicenceVerifier, VerifierError};

use crate::resilient::{CallError, CallPolicy, ClientConfigError, ResilientClient};

time::serde::format_description!(iso_date, Date, "[year]-[month]-[day]");

#[derive(serde::Serialize)]
struct Request<'a> {
    number: &'a str,
    #[serde(with = "iso_date")]
    expires_on: Date,
}

#[derive(serde::Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Answer {
    Valid {
        #[serde(with = "iso_date")]
        expires_on: Date,
    },
    Rejected {
        reason: String,
    },
}

/// [`LicenceVerifier`] over the provider's HTTP API, with a deadline, retries and a circuit
/// breaker ([`ResilientClient`]).
#[derive(Debug)]
pub struct HttpLicenceVerifier {
    client: ResilientClient,
}

impl HttpLicenceVerifier {
    /// A verifier for the provider at `url`.
    ///
    /// # Errors
    /// [`ClientConfigError`] when the URL does not parse or the HTTP client cannot be built.
    pub fn new(url: &str, policy: &CallPolicy) -> Result<Self, ClientConfigError> {
        Ok(Self {
            client: ResilientClient::new("licence provider", url, policy)?,
        })
    }
}

#[async_trait]
impl LicenceVerifier for HttpLicenceVerifier {
    async fn verify(&self, query: &LicenceQuery) -> Result<Verdict, VerifierError> {
        let request = Request {
            number: &query.number,
            expires_on: query.expires_on,
        };
        let result = self
            .client
            .send(|client, url| client.post(url.clone()).json(&request))
            .await;
        let outcome = match result {
            Err(CallError::Refused(reason)) => {
                tracing::error!(%reason, "the licence provider refused a verification request");
                Err(VerifierError::Unavailable(format!("refused: {reason}")))
            }
            Err(CallError::Unavailable(reason)) => Err(VerifierError::Unavailable(reason)),
            Ok(response) => match response.json::<Answer>().await {
                Ok(Answer::Valid { expires_on }) => Ok(Verdict::Valid { expires_on }),
                Ok(Answer::Rejected { reason }) => Ok(Verdict::Rejected { reason }),
                Err(error) => {
                    tracing::error!(%error, "the licence provider's answer does not parse");
                    Err(VerifierError::Unavailable(format!("unreadable answer: {error}")))
                }
            },
        };
        let label = match &outcome {
            Ok(Verdict::Valid { .. }) => "valid",
            Ok(Verdict::Rejected { .. }) => "rejected",
            Err(_) => "unavailable",
        };
        metrics::counter!("licence_verifications_total", "outcome" => label).increment(1);
        outcome
    }
}

/// The verifier when no provider is configured (the embedded default, development): it
/// takes the rider's word, so every well-formed licence is valid until the date the rider
/// gave. Logged at start-up; never use it where licences matter.
#[derive(Debug, Clone, Copy, Default)]
pub struct SelfDeclaredLicences;

#[async_trait]
impl LicenceVerifier for SelfDeclaredLicences {
    async fn verify(&self, query: &LicenceQuery) -> Result<Verdict, VerifierError> {
        Ok(Verdict::Valid {
            expires_on: query.expires_on,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use axum::Router;
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;
    use time::macros::date;

    use super::*;

    type Reply = Arc<dyn Fn(usize, serde_json::Value) -> Response + Send + Sync>;

    /// A fake provider answering request `n` (0-based) with `reply(n, body)`.
    async fn provider(
        reply: impl Fn(usize, serde_json::Value) -> Response + Send + Sync + 'static,
    ) -> (Arc<AtomicUsize>, SocketAddr) {
        let count = Arc::new(AtomicUsize::new(0));
        let reply: Reply = Arc::new(reply);
        let state = (count.clone(), reply);
        let app = Router::new()
            .route(
                "/verify",
                post(
                    |State((count, reply)): State<(Arc<AtomicUsize>, Reply)>,
                     axum::Json(body): axum::Json<serde_json::Value>| async move {
                        let n = count.fetch_add(1, Ordering::SeqCst);
                        reply(n, body)
                    },
                ),
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (count, addr)
    }

    fn verifier(addr: SocketAddr) -> HttpLicenceVerifier {
        HttpLicenceVerifier::new(
            &format!("http://{addr}/verify"),
            &CallPolicy {
                timeout: Duration::from_millis(500),
                max_attempts: 2,
                backoff: Duration::from_millis(10),
                breaker_threshold: 2,
                breaker_cooldown: Duration::from_secs(60),
            },
        )
        .unwrap()
    }

    fn query() -> LicenceQuery {
        LicenceQuery {
            number: "11-22-333333-44".into(),
            expires_on: date!(2030 - 05 - 31),
        }
    }

    #[tokio::test]
    async fn the_providers_verdicts_are_read_from_its_answer() {
        let (_, addr) = provider(|_, body| {
            assert_eq!(
                body,
                serde_json::json!({"number": "11-22-333333-44", "expires_on": "2030-05-31"})
            );
            axum::Json(serde_json::json!({"status": "valid", "expires_on": "2031-01-02"})).into_response()
        })
        .await;
        assert_eq!(
            verifier(addr).verify(&query()).await,
            Ok(Verdict::Valid {
                expires_on: date!(2031 - 01 - 02)
            })
        );
        let (_, addr) =
            provider(|_, _| axum::Json(serde_json::json!({"status": "rejected", "reason": "revoked"})).into_response())
                .await;
        assert_eq!(
            verifier(addr).verify(&query()).await,
            Ok(Verdict::Rejected {
                reason: "revoked".into()
            })
        );
    }

    #[tokio::test]
    async fn a_failure_is_retried_and_a_garbled_or_refused_answer_is_no_verdict() {
        let (count, addr) = provider(|n, _| {
            if n == 0 {
                StatusCode::SERVICE_UNAVAILABLE.into_response()
            } else {
                axum::Json(serde_json::json!({"status": "valid", "expires_on": "2030-05-31"})).into_response()
            }
        })
        .await;
        assert!(verifier(addr).verify(&query()).await.is_ok());
        assert_eq!(count.load(Ordering::SeqCst), 2, "one retry after the 503");

        let (_, addr) = provider(|_, _| axum::Json(serde_json::json!({"status": "maybe"})).into_response()).await;
        assert!(
            matches!(verifier(addr).verify(&query()).await, Err(VerifierError::Unavailable(m)) if m.contains("unreadable"))
        );

        let (count, addr) = provider(|_, _| StatusCode::BAD_REQUEST.into_response()).await;
        assert!(
            matches!(verifier(addr).verify(&query()).await, Err(VerifierError::Unavailable(m)) if m.contains("refused"))
        );
        assert_eq!(count.load(Ordering::SeqCst), 1, "a refusal is not retried");
    }

    #[tokio::test]
    async fn a_provider_that_keeps_failing_opens_the_circuit() {
        let (count, addr) = provider(|_, _| StatusCode::INTERNAL_SERVER_ERROR.into_response()).await;
        let verifier = verifier(addr);
        for _ in 0..2 {
            assert!(verifier.verify(&query()).await.is_err());
        }
        assert_eq!(count.load(Ordering::SeqCst), 4);
        assert_eq!(
            verifier.verify(&query()).await,
            Err(VerifierError::Unavailable("circuit open".into()))
        );
        assert_eq!(count.load(Ordering::SeqCst), 4, "no request while the circuit is open");
    }
}
