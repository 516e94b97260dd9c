//! The one managed, multiplexed Redis connection of a process, shared by every adapter.
//! Every call has a deadline so an unreachable Redis fails fast into the ports' fallbacks,
//! and an outage is logged once when it starts and once when it ends, never per request.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::caching::{CacheConfig, CacheMode};
use redis::{
    Cmd, ErrorKind, FromRedisValue, IntoConnectionInfo, Pipeline, ProtocolVersion, RedisError, RedisResult,
    ScriptInvocation, ServerErrorKind,
};

/// How to reach Redis and how long to wait for it. Its `Debug` shows the URL without its
/// password.
#[derive(Clone)]
pub struct RedisSettings {
    /// `redis://[:password@]host:port[/db]` (or `rediss://`, `redis+unix://`).
    pub url: String,
    /// Prepended to every key, so several deployments (or test runs) can share one Redis.
    /// Must not contain `{` or `}`: those delimit the hash tags that keep the keys of one
    /// script in one Redis Cluster slot.
    pub key_prefix: String,
    /// The deadline of every call, connecting included: past it the call fails with the
    /// port's `Unavailable` error.
    pub command_timeout: Duration,
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
    /// Hot cache values kept in process memory (Redis server-assisted client-side caching:
    /// Redis tells this process when a value it holds changes). 0 turns it off.
    pub near_cache_entries: usize,
    /// The longest a value stays in process memory (also bounded by its Redis TTL). It bounds
    /// how stale a value can be when an invalidation races a read. Zero turns it off.
    pub near_cache_ttl: Duration,
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &ports::redact_url(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("command_timeout", &self.command_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("near_cache_entries", &self.near_cache_entries)
            .field("near_cache_ttl", &self.near_cache_ttl)
            .finish()
    }
}

/// Why the Redis adapters cannot be built (configuration errors only: an unreachable Redis
/// is not an error at start-up, the adapters run degraded until it answers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedisSetupError {
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(String),
    #[error("invalid Redis key prefix `{0}`: it must not contain `{{` or `}}`")]
    InvalidPrefix(String),
}

/// A failed call, already logged according to the outage policy; adapters turn it into
/// their port's `Unavailable` error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Failure(pub String);

/// A handle on the process's Redis connection: cheap to clone, every clone shares the
/// connection and the outage state.
#[derive(Clone)]
pub struct RedisConn {
    inner: Arc<Inner>,
}

struct Inner {
    manager: ConnectionManager,
    timeout: Duration,
    prefix: String,
    /// `host:port` without credentials, for log lines.
    address: String,
    /// The near-cache TTL cap when the near cache is on.
    near_cache_ttl: Option<Duration>,
    /// Whether Redis is down (bit 0) and since when (the other bits: nanoseconds since
    /// `epoch`), in one word so both change together. Flips are what get logged.
    state: AtomicU64,
    epoch: Instant,
}

impl fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConn")
            .field("address", &self.inner.address)
            .field("prefix", &self.inner.prefix)
            .field("down", &self.is_down())
            .finish()
    }
}

impl RedisConn {
    /// Opens the connection manager and pings Redis once. An unreachable Redis is logged and
    /// the handle returned anyway: calls fail fast until it answers, and the manager
    /// reconnects on the first call after it is back.
    ///
    /// # Errors
    /// [`RedisSetupError`] for a malformed URL or key prefix.
    pub async fn connect(settings: &RedisSettings) -> Result<Self, RedisSetupError> {
        if settings.key_prefix.contains(['{', '}']) {
            return Err(RedisSetupError::InvalidPrefix(settings.key_prefix.clone()));
        }
        let near_cache_ttl =
            (settings.near_cache_entries > 0 && !settings.near_cache_ttl.is_zero()).then_some(settings.near_cache_ttl);
        let mut info = settings
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| RedisSetupError::InvalidUrl(e.to_string()))?;
        if near_cache_ttl.is_some() {
            // Invalidation messages are RESP3 pushes on the connection itself.
            let redis = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
            info = info.set_redis_settings(redis);
        }
        let client = redis::Client::open(info).map_err(|e| RedisSetupError::InvalidUrl(e.to_string()))?;
        let address = client.get_connection_info().addr().to_string();
        // No reconnection retries inside the manager: a retry loop would hold every caller
        // for its whole backoff. A failed attempt fails the calls waiting on it at once, and
        // the next call starts a new attempt, so recovery is noticed on first use.
        let mut config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.command_timeout));
        if let (Some(ttl), Some(entries)) = (near_cache_ttl, NonZeroUsize::new(settings.near_cache_entries)) {
            // Opt-in tracking: only the commands that ask for it (the cache's value reads) are
            // tracked and kept. A reconnection starts a new epoch, dropping every value held
            // (invalidations sent while disconnected were missed).
            config = config.set_cache_config(
                CacheConfig::new()
                    .set_mode(CacheMode::OptIn)
                    .set_size(entries)
                    .set_default_client_ttl(ttl),
            );
        }
        let manager = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| RedisSetupError::InvalidUrl(e.to_string()))?;
        let conn = Self {
            inner: Arc::new(Inner {
                manager,
                timeout: settings.command_timeout,
                prefix: settings.key_prefix.clone(),
                address,
                near_cache_ttl,
                state: AtomicU64::new(0),
                epoch: Instant::now(),
            }),
        };
        // A failed `ping` has logged the outage already.
        if conn.ping().await.is_ok() {
            tracing::info!(address = %conn.inner.address, "connected to Redis");
        }
        Ok(conn)
    }

    /// `PING`.
    ///
    /// # Errors
    /// [`Failure`] when Redis does not answer `PONG` in time.
    pub async fn ping(&self) -> Result<(), Failure> {
        let pong: String = self.query(&redis::cmd("PING")).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(Failure(format!("unexpected PING reply `{pong}`")))
        }
    }

    /// The longest a cache value may be kept in process memory, if the near cache is on.
    pub fn near_cache_ttl(&self) -> Option<Duration> {
        self.inner.near_cache_ttl
    }

    /// `host:port` of the server (no credentials).
    pub fn address(&self) -> &str {
        &self.inner.address
    }

    /// The key `<prefix><kind>:{<tag>}<suffix>`. Everything a script touches shares one tag,
    /// so it lands in one Redis Cluster slot. Only the first `{…}` of a key is its tag: a
    /// `}` inside `tag` shortens the tag, but identically for every key built from the same
    /// `kind` and `tag`, so those still share a slot. An empty tag (which Redis would ignore,
    /// hashing the whole key) becomes `_`.
    pub fn key(&self, kind: &str, tag: impl fmt::Display, suffix: &str) -> String {
        let tag = tag.to_string();
        let tag = if tag.is_empty() { "_" } else { tag.as_str() };
        format!("{}{kind}:{{{tag}}}{suffix}", self.inner.prefix)
    }

    /// Runs one command.
    ///
    /// # Errors
    /// [`Failure`] when Redis is unreachable, too slow, or answers with an error.
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, Failure> {
        let (mut con, started) = (self.inner.manager.clone(), self.now_nanos());
        self.observe(
            started,
            tokio::time::timeout(self.inner.timeout, cmd.query_async(&mut con)).await,
        )
    }

    /// Runs a pipeline (a transaction if it was built with `.atomic()`).
    ///
    /// # Errors
    /// As [`RedisConn::query`].
    pub async fn pipeline<T: FromRedisValue>(&self, pipe: &Pipeline) -> Result<T, Failure> {
        let (mut con, started) = (self.inner.manager.clone(), self.now_nanos());
        self.observe(
            started,
            tokio::time::timeout(self.inner.timeout, pipe.query_async(&mut con)).await,
        )
    }

    /// Runs a Lua script by its SHA1, loading it first if Redis does not know it (after a
    /// restart, say).
    ///
    /// # Errors
    /// As [`RedisConn::query`].
    pub async fn script<T: FromRedisValue>(&self, invocation: &ScriptInvocation<'_>) -> Result<T, Failure> {
        let (mut con, started) = (self.inner.manager.clone(), self.now_nanos());
        self.observe(
            started,
            tokio::time::timeout(self.inner.timeout, invocation.invoke_async(&mut con)).await,
        )
    }

    /// Records the outcome of a call that started at `started`: logs the start or end of an
    /// outage, and errors that are not outages (a reply of the wrong shape, a script error:
    /// bugs) every time.
    fn observe<T>(
        &self,
        started: u64,
        outcome: Result<RedisResult<T>, tokio::time::error::Elapsed>,
    ) -> Result<T, Failure> {
        match outcome {
            Ok(Ok(value)) => {
                self.mark_up(started);
                Ok(value)
            }
            Ok(Err(error)) if is_misuse(&error) => {
                // Redis answered, so it is up; the request itself is wrong.
                self.mark_up(started);
                tracing::error!(%error, address = %self.inner.address, "Redis refused a command");
                Err(Failure(error.to_string()))
            }
            Ok(Err(error)) => Err(self.mark_down(started, error.to_string())),
            Err(_) => Err(self.mark_down(started, format!("no answer within {:?}", self.inner.timeout))),
        }
    }

    fn now_nanos(&self) -> u64 {
        // 2^63 ns is 292 years of uptime.
        u64::try_from(self.inner.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX >> 1)
    }

    /// Flips the state to `down` (or up) if it is not so already and the call that says so
    /// started after the last flip. A call that started before it carries stale news: a
    /// reply read just before a crash, or an error from the dead connection or a failed
    /// reconnection attempt just after a recovery. Whether this call flipped it.
    fn flip(&self, started: u64, down: bool) -> bool {
        let mut current = self.inner.state.load(Ordering::Relaxed);
        loop {
            let (is_down, changed_at) = (current & 1 == 1, current >> 1);
            if is_down == down || started < changed_at {
                return false;
            }
            let next = (self.now_nanos() << 1) | u64::from(down);
            match self
                .inner
                .state
                .compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    fn mark_up(&self, started: u64) {
        if self.flip(started, false) {
            tracing::info!(address = %self.inner.address, "Redis is reachable again");
        }
    }

    fn mark_down(&self, started: u64, reason: String) -> Failure {
        if self.flip(started, true) {
            tracing::warn!(
                address = %self.inner.address,
                error = %reason,
                "Redis unavailable: serving without it (database fallbacks, open API limits, closed login limits) \
                 until it answers again"
            );
        }
        Failure(reason)
    }

    /// Whether the last call found Redis unreachable.
    pub fn is_down(&self) -> bool {
        self.inner.state.load(Ordering::Relaxed) & 1 == 1
    }
}

/// Errors that mean our request was wrong rather than Redis unavailable.
fn is_misuse(error: &RedisError) -> bool {
    matches!(
        error.kind(),
        ErrorKind::Parse
            | ErrorKind::UnexpectedReturnType
            | ErrorKind::Client
            | ErrorKind::Server(ServerErrorKind::CrossSlot | ServerErrorKind::NoScript | ServerErrorKind::NoPerm)
    ) || (error.kind() == ErrorKind::Server(ServerErrorKind::ResponseError) && is_script_error(error))
}

/// A Lua runtime error (`ERR user_script:…` / `ERR Error running script…`): a bug in one of
/// our scripts, not an outage. Other `ERR` replies (out of memory, say) count as outages.
fn is_script_error(error: &RedisError) -> bool {
    let detail = error.detail().unwrap_or_default();
    detail.contains("script") || error.to_string().contains("user_script")
}

/// A duration as whole milliseconds, at least 1 (Redis refuses a zero expiry).
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn settings(url: &str) -> RedisSettings {
        RedisSettings {
            url: url.to_owned(),
            key_prefix: "hx:".to_owned(),
            command_timeout: Duration::from_millis(200),
            connect_timeout: Duration::from_millis(200),
            near_cache_entries: 0,
            near_cache_ttl: Duration::ZERO,
        }
    }

    #[test]
    fn printed_settings_show_no_password() {
        let printed = format!("{:?}", settings("redis://:s3cret@cache:6379"));
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(printed.contains("redis://@cache:6379"), "{printed}");
    }

    #[tokio::test]
    async fn keys_carry_the_prefix_and_a_hash_tag() {
        // Port 1 is closed: connecting is lazy, and an unreachable Redis is not an error.
        let conn = RedisConn::connect(&settings("redis://127.0.0.1:1")).await.unwrap();
        assert_eq!(conn.key("c", "product:1", ":lock"), "hx:c:{product:1}:lock");
        assert_eq!(conn.address(), "127.0.0.1:1");
    }

    /// The hash tag of a key: from its first `{` to the next `}`, as Redis Cluster reads it.
    fn hash_tag(key: &str) -> &str {
        let open = key.find('{').expect("a tag");
        let close = key[open + 1..].find('}').expect("a closed tag") + open + 1;
        &key[open + 1..close]
    }

    #[tokio::test]
    async fn keys_built_from_one_tag_share_a_cluster_slot_whatever_the_tag_holds() {
        let conn = RedisConn::connect(&settings("redis://127.0.0.1:1")).await.unwrap();
        for tag in ["product:1", "a}b", "{x}", ""] {
            let (value, lock) = (conn.key("cache", tag, ""), conn.key("cache", tag, ":lock"));
            assert_eq!(hash_tag(&value), hash_tag(&lock), "{value} / {lock}");
            assert!(!hash_tag(&value).is_empty(), "{value}");
        }
    }

    #[tokio::test]
    async fn a_prefix_with_braces_or_a_bad_url_is_refused() {
        let mut braces = settings("redis://127.0.0.1:1");
        braces.key_prefix = "a{b}".to_owned();
        assert_eq!(
            RedisConn::connect(&braces).await.err(),
            Some(RedisSetupError::InvalidPrefix("a{b}".to_owned()))
        );
        assert!(matches!(
            RedisConn::connect(&settings("http://127.0.0.1:1")).await,
            Err(RedisSetupError::InvalidUrl(_))
        ));
    }

    #[tokio::test]
    async fn calls_to_an_unreachable_redis_fail_fast() {
        let conn = RedisConn::connect(&settings("redis://127.0.0.1:1")).await.unwrap();
        assert!(conn.is_down());
        let started = Instant::now();
        for _ in 0..20 {
            let reply: Result<Option<String>, Failure> = conn.query(redis::cmd("GET").arg("k")).await;
            assert!(reply.is_err());
        }
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn news_older_than_the_last_flip_does_not_flip_the_state() {
        let conn = RedisConn::connect(&settings("redis://127.0.0.1:1")).await.unwrap();
        assert!(conn.is_down(), "the start-up PING failed");
        // A reply to a call that started before Redis was found down is stale.
        conn.mark_up(0);
        assert!(conn.is_down());
        let started = conn.now_nanos();
        conn.mark_up(started);
        assert!(!conn.is_down());
        // So is an error of a call that started before the recovery.
        conn.mark_down(started, "refused".to_owned());
        assert!(!conn.is_down());
        conn.mark_down(conn.now_nanos(), "refused".to_owned());
        assert!(conn.is_down());
    }

    #[test]
    fn millis_never_round_to_zero() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_micros(1500)), 1);
        assert_eq!(millis(Duration::from_secs(2)), 2000);
    }
}
