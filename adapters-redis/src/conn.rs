//! The one managed, multiplexed Redis connection of a process, shared by every adapter: to
//! one server, or to a Redis Cluster (`redis+cluster://` URLs). Every call has a deadline so
//! an unreachable Redis fails fast into the ports' fallbacks, and an outage is logged once
//! when it starts and once when it ends, never per request.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::caching::{CacheConfig, CacheMode};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{
    Cmd, ErrorKind, FromRedisValue, IntoConnectionInfo, Pipeline, ProtocolVersion, RedisError, RedisFuture,
    RedisResult, ScriptInvocation, ServerErrorKind, Value,
};

/// How to reach Redis and how long to wait for it. Its `Debug` shows the URL without its
/// password.
#[derive(Clone)]
pub struct RedisSettings {
    /// `redis://[:password@]host:port[/db]` (or `rediss://`, `redis+unix://`) for one
    /// server; `redis+cluster://[:password@]host:port[,host:port…]` (or `rediss+cluster://`)
    /// for a Redis Cluster, named by one or more of its nodes (the rest are discovered).
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
    connection: Connection,
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
        // Opt-in tracking: only the commands that ask for it (the cache's value reads) are
        // tracked and kept. A reconnection starts a new epoch, dropping every value held
        // (invalidations sent while disconnected were missed). Invalidation messages are
        // RESP3 pushes on the connection itself.
        let cache = near_cache_ttl
            .zip(NonZeroUsize::new(settings.near_cache_entries))
            .map(|(ttl, entries)| {
                CacheConfig::new()
                    .set_mode(CacheMode::OptIn)
                    .set_size(entries)
                    .set_default_client_ttl(ttl)
            });
        let (connection, address) = match cluster_nodes(&settings.url) {
            Some(nodes) => Connection::cluster(nodes?, settings, cache)?,
            None => Connection::single(&settings.url, settings, cache)?,
        };
        let conn = Self {
            inner: Arc::new(Inner {
                connection,
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

    /// `host:port` of the server, or the `host:port,…` nodes named for a cluster (no
    /// credentials).
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
        let (mut con, started) = (self.inner.connection.clone(), self.now_nanos());
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
        let (mut con, started) = (self.inner.connection.clone(), self.now_nanos());
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
        let (mut con, started) = (self.inner.connection.clone(), self.now_nanos());
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

/// The connection every call goes through: a managed connection to one server, or a
/// cluster connection that routes each command to its key's slot and follows the cluster's
/// topology (failovers, resharding).
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Connection {
    /// A managed connection to the server at `url`, and its `host:port`.
    fn single(
        url: &str,
        settings: &RedisSettings,
        cache: Option<CacheConfig>,
    ) -> Result<(Self, String), RedisSetupError> {
        let invalid = |e: RedisError| RedisSetupError::InvalidUrl(e.to_string());
        let mut info = url.into_connection_info().map_err(invalid)?;
        if cache.is_some() {
            let redis = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
            info = info.set_redis_settings(redis);
        }
        let client = redis::Client::open(info).map_err(invalid)?;
        let address = client.get_connection_info().addr().to_string();
        // No reconnection retries inside the manager: a retry loop would hold every caller
        // for its whole backoff. A failed attempt fails the calls waiting on it at once, and
        // the next call starts a new attempt, so recovery is noticed on first use.
        let mut config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.command_timeout));
        if let Some(cache) = cache {
            config = config.set_cache_config(cache);
        }
        let manager = ConnectionManager::new_lazy_with_config(client, config).map_err(invalid)?;
        Ok((Self::Single(manager), address))
    }

    /// A cluster connection seeded with `nodes` (`redis://` URLs), and their `host:port`s.
    /// It connects in the background: an unreachable cluster fails calls, not start-up.
    fn cluster(
        nodes: Vec<String>,
        settings: &RedisSettings,
        cache: Option<CacheConfig>,
    ) -> Result<(Self, String), RedisSetupError> {
        let invalid = |e: RedisError| RedisSetupError::InvalidUrl(e.to_string());
        let mut addresses = Vec::with_capacity(nodes.len());
        for node in &nodes {
            let info = node.as_str().into_connection_info().map_err(invalid)?;
            addresses.push(info.addr().to_string());
        }
        // Redirections (MOVED/ASK after a failover or a reshard) and reconnections are
        // retried inside the client, all within one command deadline.
        let mut builder = ClusterClientBuilder::new(nodes)
            .connection_timeout(settings.connect_timeout)
            .response_timeout(settings.command_timeout)
            .overall_response_timeout(Some(settings.command_timeout));
        if let Some(cache) = cache {
            builder = builder.use_protocol(ProtocolVersion::RESP3).cache_config(cache);
        }
        let client = builder.build().map_err(invalid)?;
        let connection = client.get_pending_async_connection_with_config(ClusterConfig::new());
        Ok((Self::Cluster(connection), addresses.join(",")))
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(manager) => manager.req_packed_command(cmd),
            Self::Cluster(cluster) => cluster.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(manager) => manager.req_packed_commands(pipeline, offset, count),
            Self::Cluster(cluster) => cluster.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(manager) => manager.get_db(),
            Self::Cluster(cluster) => cluster.get_db(),
        }
    }
}

/// The seed nodes of a `redis+cluster://[user:password@]host:port[,host:port…][/db][?…]`
/// (or `rediss+cluster://`) URL as `redis://` (`rediss://`) URLs, each with the credentials
/// and the path of the whole; `None` for a URL that does not name a cluster.
///
/// # Errors
/// [`RedisSetupError::InvalidUrl`] for a cluster URL that names no node.
pub fn cluster_nodes(url: &str) -> Option<Result<Vec<String>, RedisSetupError>> {
    let (scheme, rest) = url.split_once("+cluster://")?;
    if !matches!(scheme, "redis" | "rediss") {
        return None;
    }
    let invalid = || RedisSetupError::InvalidUrl(format!("{}: no nodes", ports::redact_url(url)));
    let (authority, tail) = rest.find(['/', '?']).map_or((rest, ""), |at| rest.split_at(at));
    let (credentials, hosts) = authority.rsplit_once('@').map_or(("", authority), |(c, h)| (c, h));
    let at = if credentials.is_empty() { "" } else { "@" };
    let nodes: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|host| !host.is_empty())
        .map(|host| format!("{scheme}://{credentials}{at}{host}{tail}"))
        .collect();
    Some(if nodes.is_empty() { Err(invalid()) } else { Ok(nodes) })
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
    fn a_cluster_url_names_its_seed_nodes_with_the_credentials_and_path_of_the_whole() {
        assert_eq!(cluster_nodes("redis://127.0.0.1:6379"), None);
        assert_eq!(cluster_nodes("http+cluster://127.0.0.1:6379"), None);
        assert_eq!(
            cluster_nodes("redis+cluster://127.0.0.1:7001,127.0.0.1:7002"),
            Some(Ok(vec![
                "redis://127.0.0.1:7001".to_owned(),
                "redis://127.0.0.1:7002".to_owned()
            ]))
        );
        assert_eq!(
            cluster_nodes("rediss+cluster://u:p@a:1, b:2/0?protocol=resp3"),
            Some(Ok(vec![
                "rediss://u:p@a:1/0?protocol=resp3".to_owned(),
                "rediss://u:p@b:2/0?protocol=resp3".to_owned()
            ]))
        );
        assert!(matches!(
            cluster_nodes("redis+cluster://:secret@/0"),
            Some(Err(RedisSetupError::InvalidUrl(message))) if !message.contains("secret")
        ));
    }

    #[tokio::test]
    async fn a_cluster_connection_is_lazy_and_fails_fast_when_no_node_answers() {
        let conn = RedisConn::connect(&settings("redis+cluster://127.0.0.1:1,127.0.0.1:2"))
            .await
            .unwrap();
        assert_eq!(conn.address(), "127.0.0.1:1,127.0.0.1:2");
        assert!(conn.is_down());
        let started = Instant::now();
        for _ in 0..5 {
            let reply: Result<Option<String>, Failure> = conn.query(redis::cmd("GET").arg("k")).await;
            assert!(reply.is_err());
        }
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    }

    #[test]
    fn millis_never_round_to_zero() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_micros(1500)), 1);
        assert_eq!(millis(Duration::from_secs(2)), 2000);
    }
}
