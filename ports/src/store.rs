//! What every store shares: commit tokens and read consistency, the uniqueness rules, and
//! the store error with its cause. The write side itself is in
//! [`unit_of_work`](crate::unit_of_work).

use std::sync::Arc;

/// A position in the primary's commit history: the PostgreSQL commit LSN, a MySQL/MariaDB
/// GTID, or an adapter-specific counter. Opaque to the application; only the adapter that
/// minted it compares tokens.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct CommitToken(pub String);

/// How fresh a read must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consistency {
    /// Any healthy replica (or the primary when none is healthy).
    Eventual,
    /// A replica that has replayed this token, else the primary after a bounded wait.
    ReadYourWrites(CommitToken),
    /// The primary.
    Strong,
}

/// A uniqueness rule the store enforces, named so callers can map it to a domain conflict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unique {
    /// E-mails are unique among members.
    MemberEmail,
    /// An insurer's policy number is registered once.
    PolicyNumber,
    /// A member may hold one active policy.
    ActivePolicy,
    /// A rider may have one open driving session.
    OpenSession,
    /// One coupon per member per campaign.
    CouponPerMember,
    /// A rule this code does not name (the constraint or index, as the database reports it).
    Other(String),
}

/// What went wrong below a store error: a message for people and, where there is one, the
/// driver's error it came from (kept as the error's [`source`](std::error::Error::source), so
/// the edge logs the whole chain). Compares by message only: a source is evidence, not
/// identity.
#[derive(Debug, Clone)]
pub struct Cause {
    message: String,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl Cause {
    /// A cause with no underlying error.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// `message`, caused by `source`.
    pub fn caused_by(message: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            message: message.into(),
            source: Some(Arc::new(source)),
        }
    }

    /// The message, without the source's.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Cause {
    /// The underlying error, if any.
    pub fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl std::ops::Deref for Cause {
    type Target = str;

    fn deref(&self) -> &str {
        &self.message
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        self.message == other.message
    }
}

impl Eq for Cause {}

impl PartialEq<str> for Cause {
    fn eq(&self, other: &str) -> bool {
        self.message == other
    }
}

impl PartialEq<&str> for Cause {
    fn eq(&self, other: &&str) -> bool {
        self.message == *other
    }
}

/// A URL without its password, for messages and logs: `postgres://app:secret@db/x` →
/// `postgres://app@db/x`. The one redaction of the code base.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user = url[scheme + 3..at].split(':').next().unwrap_or_default();
            format!("{}{user}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// An error followed by its sources, `error: cause: cause`, for logs and health details.
#[derive(Debug, Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// Errors of every store operation. Adapters translate driver errors into these; the
/// driver's error stays reachable as [`source`](std::error::Error::source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// A uniqueness rule was violated.
    Conflict(Unique),
    /// A concurrent transaction got in the way (serialization failure, deadlock, stale
    /// version). Retrying the whole unit of work may succeed.
    Concurrency,
    /// The database cannot be reached or did not answer in time.
    Unavailable(Cause),
    /// A table or database the statement needs is not there: a replica that has not
    /// replayed a migration yet, or a database that was never migrated. Another server (the
    /// primary) may have it.
    SchemaMissing(Cause),
    /// Anything else: a bug or corrupt data. Logged, answered as an opaque 500.
    Other(Cause),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Conflict(rule) => write!(f, "conflict: {rule:?} already exists"),
            StoreError::Concurrency => f.write_str("concurrent update, retry"),
            StoreError::Unavailable(cause) => write!(f, "store unavailable: {cause}"),
            StoreError::SchemaMissing(cause) => write!(f, "schema not there: {cause}"),
            StoreError::Other(cause) => write!(f, "store error: {cause}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Conflict(_) | StoreError::Concurrency => None,
            StoreError::Unavailable(cause) | StoreError::SchemaMissing(cause) | StoreError::Other(cause) => {
                cause.source()
            }
        }
    }
}

impl StoreError {
    /// Whether the whole unit of work may succeed if run again (only
    /// [`StoreError::Concurrency`]).
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Concurrency)
    }

    /// [`StoreError::Unavailable`] with a message.
    pub fn unavailable(message: impl Into<String>) -> Self {
        StoreError::Unavailable(Cause::new(message))
    }

    /// [`StoreError::Other`] with a message.
    pub fn other(message: impl Into<String>) -> Self {
        StoreError::Other(Cause::new(message))
    }

    /// The error with its causes, for logs and health details.
    pub fn chain(&self) -> String {
        ErrorChain(self).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted_in_messages() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/hexride"),
            "postgres://app@db:5432/hexride"
        );
        assert_eq!(redact_url("redis://:s3cret@cache:6379"), "redis://@cache:6379");
        assert_eq!(redact_url("postgres://db/hexride"), "postgres://db/hexride");
        assert_eq!(redact_url("sqlite://data/hexride.db"), "sqlite://data/hexride.db");
    }

    #[test]
    fn a_store_error_keeps_its_cause_and_compares_by_message() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let err = StoreError::Unavailable(Cause::caused_by("the connection failed", io));
        assert_eq!(err.to_string(), "store unavailable: the connection failed");
        assert_eq!(err.chain(), "store unavailable: the connection failed: reset by peer");
        assert_eq!(err, StoreError::unavailable("the connection failed"));
        assert_ne!(err, StoreError::other("the connection failed"));
    }
}
