//! Cache-aside in process memory with moka. moka's `try_get_with` coalesces concurrent
//! loads of one key, which is the stampede protection the `Cache` port promises; each entry
//! carries its own TTL through moka's `Expiry` hook.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use ports::{Cache, CacheError, Loader};

/// What is stored under a key: the bytes and how long they live from insertion.
type Entry = (Vec<u8>, Duration);

/// Expires each entry after the TTL it was stored with.
struct PerEntryTtl;

impl moka::Expiry<String, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _key: &String, value: &Entry, _at: Instant) -> Option<Duration> {
        Some(value.1)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &Entry,
        _at: Instant,
        _remaining: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.1)
    }
}

/// [`ports::Cache`] over a bounded in-process moka cache.
#[derive(Clone)]
pub struct MokaCache {
    inner: moka::future::Cache<String, Entry>,
}

impl MokaCache {
    /// A cache holding at most `max_entries` keys (least recently/frequently used ones are
    /// evicted first).
    pub fn new(max_entries: u64) -> Self {
        Self {
            inner: moka::future::Cache::builder()
                .max_capacity(max_entries)
                .expire_after(PerEntryTtl)
                .build(),
        }
    }
}

impl std::fmt::Debug for MokaCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MokaCache")
            .field("entries", &self.inner.entry_count())
            .finish()
    }
}

#[async_trait]
impl Cache for MokaCache {
    async fn get_or_load(&self, key: &str, ttl: Duration, loader: Loader) -> Result<Vec<u8>, CacheError> {
        // Only one caller's `init` future runs for a cold key; the others wait for its result.
        // An error is handed to every waiter and nothing is stored, so the next call reloads.
        let init = async move { loader.await.map(|bytes| (bytes, ttl)) };
        self.inner
            .try_get_with(key.to_owned(), init)
            .await
            .map(|(bytes, _)| bytes)
            .map_err(|error| CacheError::Load((*error).clone()))
    }

    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), CacheError> {
        self.inner.insert(key.to_owned(), (value, ttl)).await;
        Ok(())
    }

    async fn invalidate(&self, keys: &[String]) -> Result<(), CacheError> {
        for key in keys {
            self.inner.invalidate(key).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::FutureExt;
    use ports::StoreError;

    use super::*;

    fn counting_loader(calls: &Arc<AtomicUsize>, value: &'static [u8]) -> Loader {
        let calls = Arc::clone(calls);
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(value.to_vec())
        }
        .boxed()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn fifty_concurrent_callers_of_a_cold_key_share_one_load() {
        let cache = MokaCache::new(100);
        let calls = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (cache, loader) = (cache.clone(), counting_loader(&calls, b"v"));
                tokio::spawn(async move { cache.get_or_load("product:1", Duration::from_secs(60), loader).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), Ok(b"v".to_vec()));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_put_value_is_served_without_loading() {
        let cache = MokaCache::new(100);
        let calls = Arc::new(AtomicUsize::new(0));
        let ttl = Duration::from_secs(60);
        cache.put("product:1", b"new".to_vec(), ttl).await.unwrap();
        let value = cache
            .get_or_load("product:1", ttl, counting_loader(&calls, b"old"))
            .await;
        assert_eq!(value, Ok(b"new".to_vec()));
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_warm_key_is_served_without_loading() {
        let cache = MokaCache::new(100);
        let calls = Arc::new(AtomicUsize::new(0));
        let ttl = Duration::from_secs(60);
        cache
            .get_or_load("k", ttl, counting_loader(&calls, b"first"))
            .await
            .unwrap();
        let second = cache.get_or_load("k", ttl, counting_loader(&calls, b"second")).await;
        assert_eq!(second, Ok(b"first".to_vec()));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_loader_error_is_returned_and_not_cached() {
        let cache = MokaCache::new(100);
        let failing: Loader = async { Err(StoreError::unavailable("db down")) }.boxed();
        let first = cache.get_or_load("k", Duration::from_secs(60), failing).await;
        assert_eq!(first, Err(CacheError::Load(StoreError::unavailable("db down"))));

        let calls = Arc::new(AtomicUsize::new(0));
        let second = cache
            .get_or_load("k", Duration::from_secs(60), counting_loader(&calls, b"v"))
            .await;
        assert_eq!(second, Ok(b"v".to_vec()));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_entry_expires_after_its_own_ttl() {
        let cache = MokaCache::new(100);
        let calls = Arc::new(AtomicUsize::new(0));
        let short = Duration::from_millis(50);
        let long = Duration::from_secs(60);
        cache
            .get_or_load("short", short, counting_loader(&calls, b"a"))
            .await
            .unwrap();
        cache
            .get_or_load("long", long, counting_loader(&calls, b"b"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;

        cache
            .get_or_load("short", short, counting_loader(&calls, b"a2"))
            .await
            .unwrap();
        let long_again = cache.get_or_load("long", long, counting_loader(&calls, b"b2")).await;
        assert_eq!(long_again, Ok(b"b".to_vec()));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn invalidated_keys_are_loaded_again() {
        let cache = MokaCache::new(100);
        let calls = Arc::new(AtomicUsize::new(0));
        let ttl = Duration::from_secs(60);
        cache
            .get_or_load("a", ttl, counting_loader(&calls, b"old"))
            .await
            .unwrap();
        cache
            .get_or_load("b", ttl, counting_loader(&calls, b"kept"))
            .await
            .unwrap();

        cache.invalidate(&["a".to_owned(), "missing".to_owned()]).await.unwrap();

        assert_eq!(
            cache.get_or_load("a", ttl, counting_loader(&calls, b"new")).await,
            Ok(b"new".to_vec())
        );
        assert_eq!(
            cache.get_or_load("b", ttl, counting_loader(&calls, b"x")).await,
            Ok(b"kept".to_vec())
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
