//! A shared cache of serialized values (in-process moka, or Redis shared by instances).

use std::time::Duration;

use async_trait::async_trait;

use crate::BoxFuture;
use crate::store::StoreError;

/// Why a cache call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    /// The cache cannot be reached; callers serve from the database instead.
    #[error("cache unavailable: {0}")]
    Unavailable(String),
    /// The loader of [`Cache::get_or_load`] failed.
    #[error(transparent)]
    Load(#[from] StoreError),
}

/// Produces the value of a cold key.
pub type Loader = BoxFuture<Result<Vec<u8>, StoreError>>;

/// Cache-aside with stampede protection.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait Cache: Send + Sync {
    /// The value under `key`, or runs `loader` and stores its value for `ttl`. Concurrent
    /// callers of a cold key share one load.
    ///
    /// # Errors
    /// [`CacheError::Load`] with the loader's error (nothing is stored);
    /// [`CacheError::Unavailable`] when the cache cannot be reached (the loader may not have run).
    async fn get_or_load(&self, key: &str, ttl: Duration, loader: Loader) -> Result<Vec<u8>, CacheError>;
    /// Stores `value` under `key` for `ttl` (write-through after a change, so the next read
    /// does not reload it from a replica that may not have the change yet).
    ///
    /// # Errors
    /// [`CacheError::Unavailable`] when the cache cannot be reached.
    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), CacheError>;
    /// Removes keys (after a write that changes what they hold).
    ///
    /// # Errors
    /// [`CacheError::Unavailable`] when the cache cannot be reached.
    async fn invalidate(&self, keys: &[String]) -> Result<(), CacheError>;
}
