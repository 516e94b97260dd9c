//! Rate limiting in process memory with governor (GCRA). The port takes the quota per call,
//! so one keyed governor limiter is created lazily per distinct quota and shared by every
//! key checked under it.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota as GovernorQuota};
use ports::{LimiterError, Quota, RateDecision, RateLimiter};

/// Every this many checks a limiter drops the state of keys that are back at full burst,
/// so memory follows the number of recently active keys, not every key ever seen.
const HOUSEKEEPING_EVERY: u64 = 4096;

/// The smallest `retry_after` reported, so a limited caller is never told to retry at once.
const MIN_RETRY_AFTER: Duration = Duration::from_millis(1);

struct QuotaLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
    checks: AtomicU64,
}

/// [`ports::RateLimiter`] for a single instance: `limit` calls per `period` per key, with
/// the whole `limit` available as a burst and refilled evenly over `period`.
#[derive(Default)]
pub struct MemoryRateLimiter {
    limiters: Mutex<HashMap<Quota, Arc<QuotaLimiter>>>,
}

impl MemoryRateLimiter {
    /// An empty limiter; per-quota state is created on first use.
    pub fn new() -> Self {
        Self::default()
    }

    fn limiter_for(&self, quota: Quota, governor_quota: GovernorQuota) -> Arc<QuotaLimiter> {
        // The map holds only plain data, so a poisoned lock cannot leave it inconsistent.
        let mut limiters = self.limiters.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(limiters.entry(quota).or_insert_with(|| {
            Arc::new(QuotaLimiter {
                limiter: DefaultKeyedRateLimiter::keyed(governor_quota),
                checks: AtomicU64::new(0),
            })
        }))
    }
}

impl std::fmt::Debug for MemoryRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let quotas = self.limiters.lock().map(|limiters| limiters.len()).unwrap_or_default();
        f.debug_struct("MemoryRateLimiter").field("quotas", &quotas).finish()
    }
}

/// `limit` per `period` as GCRA: a burst of `limit`, one cell back every `period / limit`.
/// `None` when the quota cannot limit anything (a zero period or a sub-nanosecond interval).
fn to_governor(limit: NonZeroU32, period: Duration) -> Option<GovernorQuota> {
    GovernorQuota::with_period(period / limit.get()).map(|q| q.allow_burst(limit))
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn check(&self, key: &str, quota: Quota) -> Result<RateDecision, LimiterError> {
        let Some(limit) = NonZeroU32::new(quota.limit) else {
            // A limit of zero allows nothing; a later retry within the period will not help.
            return Ok(RateDecision::Limited {
                retry_after: quota.period.max(MIN_RETRY_AFTER),
            });
        };
        let Some(governor_quota) = to_governor(limit, quota.period) else {
            return Ok(RateDecision::Allowed);
        };
        let entry = self.limiter_for(quota, governor_quota);

        let decision = match entry.limiter.check_key(&key.to_owned()) {
            Ok(()) => RateDecision::Allowed,
            Err(not_until) => RateDecision::Limited {
                retry_after: not_until
                    .wait_time_from(entry.limiter.clock().now())
                    .max(MIN_RETRY_AFTER),
            },
        };

        if entry.checks.fetch_add(1, Ordering::Relaxed) % HOUSEKEEPING_EVERY == HOUSEKEEPING_EVERY - 1 {
            entry.limiter.retain_recent();
            entry.limiter.shrink_to_fit();
        }
        Ok(decision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn per_minute(limit: u32) -> Quota {
        Quota {
            limit,
            period: Duration::from_secs(60),
        }
    }

    #[tokio::test]
    async fn five_per_minute_allows_exactly_five_then_limits() {
        let limiter = MemoryRateLimiter::new();
        for _ in 0..5 {
            assert_eq!(limiter.check("ip:1", per_minute(5)).await, Ok(RateDecision::Allowed));
        }
        match limiter.check("ip:1", per_minute(5)).await {
            Ok(RateDecision::Limited { retry_after }) => {
                assert!(retry_after > Duration::ZERO);
                // One cell comes back every 60 s / 5.
                assert!(retry_after <= Duration::from_secs(12), "{retry_after:?}");
            }
            other => panic!("expected Limited, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn other_keys_are_unaffected() {
        let limiter = MemoryRateLimiter::new();
        for _ in 0..6 {
            limiter.check("ip:1", per_minute(5)).await.unwrap();
        }
        for _ in 0..5 {
            assert_eq!(limiter.check("ip:2", per_minute(5)).await, Ok(RateDecision::Allowed));
        }
    }

    #[tokio::test]
    async fn the_same_key_under_another_quota_is_counted_separately() {
        let limiter = MemoryRateLimiter::new();
        for _ in 0..5 {
            limiter.check("ip:1", per_minute(5)).await.unwrap();
        }
        assert_eq!(limiter.check("ip:1", per_minute(10)).await, Ok(RateDecision::Allowed));
    }

    #[tokio::test]
    async fn a_cell_comes_back_after_period_over_limit() {
        let limiter = MemoryRateLimiter::new();
        let quota = Quota {
            limit: 2,
            period: Duration::from_millis(100),
        };
        assert_eq!(limiter.check("k", quota).await, Ok(RateDecision::Allowed));
        assert_eq!(limiter.check("k", quota).await, Ok(RateDecision::Allowed));
        assert!(matches!(
            limiter.check("k", quota).await,
            Ok(RateDecision::Limited { .. })
        ));
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(limiter.check("k", quota).await, Ok(RateDecision::Allowed));
    }

    #[tokio::test]
    async fn a_zero_limit_limits_everything() {
        let limiter = MemoryRateLimiter::new();
        assert_eq!(
            limiter.check("k", per_minute(0)).await,
            Ok(RateDecision::Limited {
                retry_after: Duration::from_secs(60)
            })
        );
    }
}
