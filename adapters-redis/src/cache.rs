//! Cache-aside shared by every instance. A cold key is loaded once across the cluster: a
//! short lock key (`SET NX PX`) elects one loader, the others poll for its value and load
//! themselves only if the lock outlives its TTL; within a process, callers of one cold key
//! also share one flight, so a stampede costs Redis one poller per instance.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use ports::{Cache, CacheError, Loader};
use redis::{CommandCacheConfig, Script, Value};
use tokio::time::Instant;

use crate::conn::{Failure, RedisConn, millis};

/// How often a caller waiting for another instance's load looks for its value.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// The value if present, else takes the load lock (1) or finds it taken (0).
/// KEYS: value, lock. ARGV: lock token, lock TTL in ms.
const TRY_LOCK: &str = r"
local value = redis.call('GET', KEYS[1])
if value then return value end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
";

/// Stores a loaded value only while the loader still holds the lock: a `put` or an
/// `invalidate` during the load dropped the lock, and the loaded value may predate it.
/// KEYS: value, lock. ARGV: lock token, value, TTL in ms.
const STORE: &str = r"
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
";

/// Releases the lock if it is still ours (after a failed load).
/// KEYS: lock. ARGV: lock token.
const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

type Flight = Shared<BoxFuture<'static, Result<Vec<u8>, CacheError>>>;

/// [`ports::Cache`] over Redis `GET`/`SET PX`, values as raw bytes. With the connection's
/// near cache on, a value read once is served from process memory until Redis reports a
/// change to its key (or the near-cache TTL passes).
#[derive(Clone)]
pub struct RedisCache {
    inner: Arc<Inner>,
}

struct Inner {
    conn: RedisConn,
    lock_ttl: Duration,
    try_lock: Script,
    store: Script,
    unlock: Script,
    /// The loads of cold keys in progress in this process, by key, with an id so a
    /// finished flight removes only itself.
    flights: Mutex<HashMap<String, (u64, Flight)>>,
    next_flight: AtomicU64,
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("conn", &self.inner.conn)
            .field("lock_ttl", &self.inner.lock_ttl)
            .finish()
    }
}

impl RedisCache {
    /// A cache on `conn`. `lock_ttl` bounds how long one instance may hold a cold key's load
    /// lock, and so how long the others wait before loading it themselves.
    pub fn new(conn: RedisConn, lock_ttl: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                conn,
                lock_ttl,
                try_lock: Script::new(TRY_LOCK),
                store: Script::new(STORE),
                unlock: Script::new(UNLOCK),
                flights: Mutex::new(HashMap::new()),
                next_flight: AtomicU64::new(0),
            }),
        }
    }
}

fn unavailable(failure: Failure) -> CacheError {
    CacheError::Unavailable(failure.0)
}

impl Inner {
    fn value_key(&self, key: &str) -> String {
        self.conn.key("cache", key, "")
    }

    fn lock_key(&self, key: &str) -> String {
        self.conn.key("cache", key, ":lock")
    }

    /// Fills a cold key: waits for another instance's load, or loads and stores.
    async fn fill(&self, key: &str, ttl: Duration, loader: Loader) -> Result<Vec<u8>, CacheError> {
        let (value_key, lock_key) = (self.value_key(key), self.lock_key(key));
        let token = uuid::Uuid::new_v4().simple().to_string();
        let lock_ttl_ms = millis(self.lock_ttl);
        // The lock expires `lock_ttl` after it was last taken: waiting that long means its
        // holder is stuck or gone, and the stampede protection gives way to availability.
        let give_up = Instant::now() + self.lock_ttl;
        loop {
            let reply: Value = self
                .conn
                .script(
                    self.try_lock
                        .key(&value_key)
                        .key(&lock_key)
                        .arg(&token)
                        .arg(lock_ttl_ms),
                )
                .await
                .map_err(unavailable)?;
            match reply {
                Value::BulkString(value) => return Ok(value),
                Value::Int(1) => break,
                Value::Int(_) if Instant::now() >= give_up => {
                    tracing::debug!(key, "cache load lock held too long; loading without it");
                    return loader.await.map_err(CacheError::Load);
                }
                Value::Int(_) => tokio::time::sleep(POLL_INTERVAL).await,
                other => return Err(CacheError::Unavailable(format!("unexpected lock reply {other:?}"))),
            }
        }

        match loader.await {
            Ok(value) => {
                let stored: Result<i64, Failure> = self
                    .conn
                    .script(
                        self.store
                            .key(&value_key)
                            .key(&lock_key)
                            .arg(&token)
                            .arg(value.as_slice())
                            .arg(millis(ttl)),
                    )
                    .await;
                if let Err(error) = stored {
                    // The value is good; only the next reader pays for another load.
                    tracing::debug!(%error, key, "could not store a loaded value");
                }
                Ok(value)
            }
            Err(error) => {
                // Let a waiter take over now rather than when the lock expires.
                let _: Result<i64, Failure> = self.conn.script(self.unlock.key(&lock_key).arg(&token)).await;
                Err(CacheError::Load(error))
            }
        }
    }

    /// Forgets a finished flight (only the one with this id: a newer one may have started).
    fn land(&self, key: &str, id: u64) {
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        if flights.get(key).is_some_and(|(current, _)| *current == id) {
            flights.remove(key);
        }
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn get_or_load(&self, key: &str, ttl: Duration, loader: Loader) -> Result<Vec<u8>, CacheError> {
        let mut get = redis::cmd("GET");
        get.arg(self.inner.value_key(key));
        if let Some(near) = self.inner.conn.near_cache_ttl() {
            // Kept in process memory until Redis says the key changed, or the cap passes.
            get.set_cache_config(CommandCacheConfig::new().set_client_side_ttl(near.min(ttl)));
        }
        let cached: Option<Vec<u8>> = self.inner.conn.query(&get).await.map_err(unavailable)?;
        if let Some(value) = cached {
            return Ok(value);
        }

        // Cold: join this process's flight for the key, or start one. A follower's loader
        // is dropped unrun; the flight runs as long as any caller still awaits it.
        let flight = {
            // The map holds only plain data, so a poisoned lock cannot leave it inconsistent.
            let mut flights = self.inner.flights.lock().unwrap_or_else(PoisonError::into_inner);
            match flights.get(key) {
                Some((_, flight)) => flight.clone(),
                None => {
                    let id = self.inner.next_flight.fetch_add(1, Ordering::Relaxed);
                    let (inner, owned_key) = (Arc::clone(&self.inner), key.to_owned());
                    let flight = async move {
                        let result = inner.fill(&owned_key, ttl, loader).await;
                        inner.land(&owned_key, id);
                        result
                    }
                    .boxed()
                    .shared();
                    flights.insert(key.to_owned(), (id, flight.clone()));
                    flight
                }
            }
        };
        flight.await
    }

    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), CacheError> {
        // Dropping the lock fences off a load in progress, which may have read the old value.
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(self.inner.value_key(key))
            .arg(value)
            .arg("PX")
            .arg(millis(ttl))
            .ignore()
            .cmd("DEL")
            .arg(self.inner.lock_key(key))
            .ignore();
        self.inner.conn.pipeline::<()>(&pipe).await.map_err(unavailable)
    }

    async fn invalidate(&self, keys: &[String]) -> Result<(), CacheError> {
        if keys.is_empty() {
            return Ok(());
        }
        // One `DEL` per cache key (its value and lock share a slot), all sent at once: the
        // keys themselves may live in different cluster slots, on different masters, so
        // they are neither one command nor one pipeline.
        let deletes = keys.iter().map(|key| async move {
            let mut del = redis::cmd("DEL");
            del.arg(self.inner.value_key(key)).arg(self.inner.lock_key(key));
            self.inner.conn.query::<i64>(&del).await
        });
        futures::future::try_join_all(deletes)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}
