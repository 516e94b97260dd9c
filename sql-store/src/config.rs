//! Where a primary and its replicas are, and how connections and reads behave: one
//! configuration for every server with replicas (PostgreSQL's `PgConfig` and MySQL's
//! `MysqlConfig` are this type).

use std::time::Duration;

/// Where the primary and the replicas are, and how connections behave and reads are routed
/// between them. Its `Debug` shows the URLs without their passwords.
#[derive(Clone, PartialEq, Eq)]
pub struct SqlConfig {
    /// The primary's URL (`postgres://…`, `mysql://…`): every write and every `Strong`
    /// read. Empty by default: it must be set.
    pub primary_url: String,
    /// Replicas of the primary, for `Eventual` and `ReadYourWrites` reads. Empty: every read
    /// goes to the primary.
    pub replica_urls: Vec<String>,
    /// Size of each pool (the primary's and each replica's).
    pub max_connections: u32,
    /// How long a caller waits for a pooled connection before `StoreError::Unavailable`
    /// (for a replica's pool, at most 1 s: a dead replica must not hold reads up).
    pub acquire_timeout: Duration,
    /// The server stops any statement running longer (PostgreSQL `statement_timeout`;
    /// MariaDB `max_statement_time`; MySQL `max_execution_time`, which covers `select`
    /// only).
    pub statement_timeout: Duration,
    /// A replica further behind than this (or whose lag is unknown) gets no reads.
    pub max_replica_lag: Duration,
    /// How long a `ReadYourWrites` read waits for a replica to apply its token before it
    /// reads the primary instead.
    pub read_your_writes_wait: Duration,
    /// How often each replica's health and position are checked (and, for MySQL, the
    /// primary's heartbeat written).
    pub health_interval: Duration,
}

impl SqlConfig {
    /// The defaults, for the primary at `primary_url` and no replica.
    pub fn primary(primary_url: impl Into<String>) -> Self {
        Self {
            primary_url: primary_url.into(),
            ..Self::default()
        }
    }
}

impl Default for SqlConfig {
    fn default() -> Self {
        Self {
            primary_url: String::new(),
            replica_urls: Vec::new(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
            max_replica_lag: Duration::from_secs(5),
            read_your_writes_wait: Duration::from_millis(200),
            health_interval: Duration::from_millis(500),
        }
    }
}

impl std::fmt::Debug for SqlConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let replicas: Vec<String> = self.replica_urls.iter().map(|url| ports::redact_url(url)).collect();
        f.debug_struct("SqlConfig")
            .field("primary_url", &ports::redact_url(&self.primary_url))
            .field("replica_urls", &replicas)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("max_replica_lag", &self.max_replica_lag)
            .field("read_your_writes_wait", &self.read_your_writes_wait)
            .field("health_interval", &self.health_interval)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_every_password() {
        let config = SqlConfig {
            replica_urls: vec!["mysql://app:r3plica@replica/hexride".to_owned()],
            ..SqlConfig::primary("postgres://app:s3cret@db/hexride")
        };
        let printed = format!("{config:?}");
        assert!(!printed.contains("s3cret") && !printed.contains("r3plica"), "{printed}");
        assert!(
            printed.contains("db/hexride") && printed.contains("replica/hexride"),
            "{printed}"
        );
    }
}
