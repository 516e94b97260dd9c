//! Rate limits shared by every instance: GCRA in one Lua script, so a check is one atomic
//! round trip and a key costs one integer (its theoretical arrival time). The script reads
//! Redis's own clock, so instances with skewed clocks still count against one timeline.

use std::time::Duration;

use async_trait::async_trait;
use ports::{LimiterError, Quota, RateDecision, RateLimiter};
use redis::Script;

use crate::conn::RedisConn;

/// The smallest `retry_after` reported, so a limited caller is never told to retry at once.
const MIN_RETRY_AFTER: Duration = Duration::from_millis(1);

/// GCRA with a burst of `limit`: one cell comes back every `interval`. The key holds the
/// theoretical arrival time (TAT) in microseconds of Redis time and expires when it is
/// reached, i.e. when the key is back at full burst.
/// KEYS: the key. ARGV: interval in µs, limit. Returns {1, 0} (allowed) or {0, retry_after_µs}.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat - interval * (limit - 1)
if now < allow_at then
  return {0, allow_at - now}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.max(1, math.ceil((new_tat - now) / 1000)))
return {1, 0}
";

/// [`ports::RateLimiter`] over Redis: `limit` calls per `period` per key, the whole `limit`
/// available as a burst and refilled evenly over `period` (the in-process limiter's rule).
#[derive(Debug, Clone)]
pub struct RedisRateLimiter {
    conn: RedisConn,
    gcra: Script,
}

impl RedisRateLimiter {
    /// A limiter on `conn`; its keys live until they are back at full burst.
    pub fn new(conn: RedisConn) -> Self {
        Self {
            conn,
            gcra: Script::new(GCRA),
        }
    }
}

/// The emission interval `period / limit` in whole microseconds; `None` when it rounds to
/// zero (the quota cannot limit anything measurable).
fn interval_micros(quota: Quota) -> Option<u64> {
    let interval = quota.period.as_micros() / u128::from(quota.limit.max(1));
    u64::try_from(interval).ok().filter(|&micros| micros > 0)
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(&self, key: &str, quota: Quota) -> Result<RateDecision, LimiterError> {
        if quota.limit == 0 {
            // A limit of zero allows nothing; a later retry within the period will not help.
            return Ok(RateDecision::Limited {
                retry_after: quota.period.max(MIN_RETRY_AFTER),
            });
        }
        let Some(interval) = interval_micros(quota) else {
            return Ok(RateDecision::Allowed);
        };
        // The quota is part of the key: one key checked under two quotas counts separately.
        let redis_key = self
            .conn
            .key("rate", key, &format!(":{}:{}", quota.limit, quota.period.as_micros()));
        let (allowed, retry_micros): (i64, i64) = self
            .conn
            .script(self.gcra.key(redis_key).arg(interval).arg(quota.limit))
            .await
            .map_err(|failure| LimiterError::Unavailable(failure.0))?;
        Ok(if allowed == 1 {
            RateDecision::Allowed
        } else {
            let micros = u64::try_from(retry_micros).unwrap_or_default();
            RateDecision::Limited {
                retry_after: Duration::from_micros(micros).max(MIN_RETRY_AFTER),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_is_the_period_over_the_limit() {
        let quota = |limit, period| Quota { limit, period };
        assert_eq!(interval_micros(quota(5, Duration::from_secs(60))), Some(12_000_000));
        assert_eq!(interval_micros(quota(1_000_000, Duration::from_secs(60))), Some(60));
        assert_eq!(interval_micros(quota(10, Duration::from_micros(5))), None);
        assert_eq!(interval_micros(quota(3, Duration::ZERO)), None);
    }
}
