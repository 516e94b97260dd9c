//! Redis adapters: the cache-like ports shared by every `app-server` instance — cache-aside
//! with cross-instance stampede protection (and a near cache Redis keeps coherent), GCRA
//! rate limits, the FCFS coupon gate, refresh tokens with reuse detection and
//! read-your-writes tokens.
//!
//! All of them share one [`RedisConn`] (one managed, multiplexed connection per process),
//! every call has a deadline, and every key carries a `{…}` hash tag so each script's keys
//! sit in one Redis Cluster slot. When Redis is unreachable each call fails fast with its
//! port's `Unavailable` error and the application's fallbacks take over; the outage is
//! logged once, and its end once.

pub mod cache;
pub mod conn;
pub mod consistency;
pub mod coupon_gate;
pub mod health;
pub mod limiter;
pub mod tokens;

use std::sync::Arc;
use std::time::Duration;

pub use cache::RedisCache;
pub use conn::{RedisConn, RedisSettings, RedisSetupError};
pub use consistency::RedisConsistencyTokens;
pub use coupon_gate::RedisCouponGate;
pub use health::RedisHealth;
pub use limiter::RedisRateLimiter;
pub use tokens::RedisRefreshTokens;

/// Tunables of the adapters beyond the connection.
#[derive(Debug, Clone, Copy)]
pub struct RedisTuning {
    /// How long one instance may hold a cold cache key's load lock.
    pub cache_lock_ttl: Duration,
    /// How long a campaign's admitted set lives after its last admission.
    pub coupon_gate_ttl: Duration,
    /// How long a member's last commit token is recalled.
    pub read_your_writes_window: Duration,
}

/// Every Redis adapter, on one shared connection.
#[derive(Debug, Clone)]
pub struct RedisAdapters {
    pub conn: RedisConn,
    pub cache: Arc<RedisCache>,
    pub limiter: Arc<RedisRateLimiter>,
    pub coupon_gate: Arc<RedisCouponGate>,
    pub refresh_tokens: Arc<RedisRefreshTokens>,
    pub consistency: Arc<RedisConsistencyTokens>,
    pub health: Arc<RedisHealth>,
}

impl RedisAdapters {
    /// Connects (see [`RedisConn::connect`]: an unreachable Redis is logged, not refused)
    /// and builds every adapter on the connection.
    ///
    /// # Errors
    /// [`RedisSetupError`] for a malformed URL or key prefix.
    pub async fn connect(settings: &RedisSettings, tuning: RedisTuning) -> Result<Self, RedisSetupError> {
        let conn = RedisConn::connect(settings).await?;
        Ok(Self {
            cache: Arc::new(RedisCache::new(conn.clone(), tuning.cache_lock_ttl)),
            limiter: Arc::new(RedisRateLimiter::new(conn.clone())),
            coupon_gate: Arc::new(RedisCouponGate::new(conn.clone(), tuning.coupon_gate_ttl)),
            refresh_tokens: Arc::new(RedisRefreshTokens::new(conn.clone())),
            consistency: Arc::new(RedisConsistencyTokens::new(
                conn.clone(),
                tuning.read_your_writes_window,
            )),
            health: Arc::new(RedisHealth::new(conn.clone())),
            conn,
        })
    }
}
