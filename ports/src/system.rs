//! Time, identity and password hashing: small ports so tests control them.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

/// The time, as the use cases see it.
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait Clock: Send + Sync {
    /// The current UTC time.
    fn now(&self) -> OffsetDateTime;
}

/// New ids.
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait IdSource: Send + Sync {
    /// A new UUIDv7.
    fn new_id(&self) -> Uuid;
}

/// Why hashing or verifying a password failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// The hasher failed (not: the password did not match).
    #[error("password hashing failed: {0}")]
    Failed(String),
    /// Too many hashes are running and waiting: try again shortly.
    #[error("password hashing is at capacity; try again shortly")]
    Busy,
}

/// Password hashing (argon2id). Slow on purpose: adapters run it off the async executor.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait PasswordHasher: Send + Sync {
    /// A PHC string.
    ///
    /// # Errors
    /// [`HashError::Failed`] if hashing fails.
    async fn hash(&self, password: &str) -> Result<String, HashError>;
    /// Whether `password` matches `hash`. A malformed or empty hash is `Ok(false)`.
    ///
    /// # Errors
    /// [`HashError::Failed`] if the hasher itself fails.
    async fn verify(&self, password: &str, hash: &str) -> Result<bool, HashError>;
}
