//! Configuration: `config/default.toml` (built in), an optional file, then `APP__SECTION__KEY`
//! environment variables. Every knob is documented in `config/default.toml` and the README.

use std::time::Duration;

#[cfg(test)]
use secrecy::ExposeSecret;
use secrecy::SecretString;
use serde::Deserialize;

/// The defaults, compiled in so the binary runs from any directory.
const DEFAULTS: &str = include_str!("../../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub kafka: KafkaConfig,
    pub redis: RedisConfig,
    pub auth: AuthConfig,
    pub insurer: InsurerConfig,
    pub data_platform: HttpPartySettings,
    pub licence_provider: HttpPartySettings,
    pub licences: LicencesConfig,
    pub cache: CacheConfig,
    pub relay: RelayConfig,
    pub jobs: JobsConfig,
    pub log: LogConfig,
    pub bootstrap: BootstrapConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceRole {
    All,
    Api,
    Worker,
}

impl InstanceRole {
    pub fn serves_http(self) -> bool {
        matches!(self, InstanceRole::All | InstanceRole::Api)
    }

    pub fn runs_workers(self) -> bool {
        matches!(self, InstanceRole::All | InstanceRole::Worker)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerConfig {
    pub listen: String,
    /// Where metrics, readiness details and the Swagger UI are served; port 0 picks a free
    /// one.
    pub admin_listen: String,
    #[serde(rename = "request_timeout_secs", deserialize_with = "units::positive_secs")]
    pub request_timeout: Duration,
    #[serde(rename = "shutdown_grace_secs", deserialize_with = "units::secs")]
    pub shutdown_grace: Duration,
    /// After SIGTERM, how long readiness answers 503 while requests are still served (each
    /// response closing its connection), before the listener closes. 0: no drain.
    #[serde(rename = "drain_secs", deserialize_with = "units::secs")]
    pub drain: Duration,
    pub max_body_bytes: usize,
    /// Networks of the load balancers and proxies in front (CIDRs). A request from one of
    /// them has its client IP taken from `X-Forwarded-For`: the right-most entry that is not
    /// itself a trusted proxy.
    #[serde(default, deserialize_with = "networks")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub role: InstanceRole,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseConfig {
    /// May hold a password: never printed (see [`ports::redact_url`] for messages).
    pub url: SecretString,
    #[serde(default, deserialize_with = "list_or_csv")]
    pub replica_urls: Vec<SecretString>,
    #[serde(deserialize_with = "units::at_least_one")]
    pub max_connections: u32,
    #[serde(rename = "acquire_timeout_secs", deserialize_with = "units::positive_secs")]
    pub acquire_timeout: Duration,
    #[serde(rename = "busy_timeout_secs", deserialize_with = "units::secs")]
    pub busy_timeout: Duration,
    pub sqlite_synchronous: adapters_sqlite::Synchronous,
    pub migrate_on_start: bool,
    #[serde(rename = "statement_timeout_secs", deserialize_with = "units::positive_secs")]
    pub statement_timeout: Duration,
    #[serde(rename = "max_replica_lag_ms", deserialize_with = "units::millis")]
    pub max_replica_lag: Duration,
    #[serde(rename = "read_your_writes_wait_ms", deserialize_with = "units::millis")]
    pub read_your_writes_wait: Duration,
    #[serde(rename = "health_interval_ms", deserialize_with = "units::positive_millis")]
    pub health_interval: Duration,
}

#[derive(Debug, Clone, Deserialize)]
pub struct KafkaConfig {
    pub brokers: String,
    pub namespace: String,
    pub client_id: String,
    #[serde(deserialize_with = "units::at_least_one")]
    pub partitions: i32,
    #[serde(deserialize_with = "units::at_least_one")]
    pub replication_factor: i32,
    #[serde(rename = "delivery_timeout_ms", deserialize_with = "units::positive_millis")]
    pub delivery_timeout: Duration,
    #[serde(rename = "linger_ms", deserialize_with = "units::millis")]
    pub linger: Duration,
    #[serde(rename = "request_timeout_ms", deserialize_with = "units::positive_millis")]
    pub request_timeout: Duration,
    #[serde(rename = "startup_timeout_secs", deserialize_with = "units::positive_secs")]
    pub startup_timeout: Duration,
    #[serde(rename = "session_timeout_ms", deserialize_with = "units::positive_millis")]
    pub session_timeout: Duration,
    #[serde(rename = "fetch_wait_max_ms", deserialize_with = "units::millis")]
    pub fetch_wait_max: Duration,
    #[serde(deserialize_with = "units::at_least_one")]
    pub consumer_max_attempts: u32,
    #[serde(rename = "consumer_backoff_ms", deserialize_with = "units::millis")]
    pub consumer_backoff: Duration,
    #[serde(rename = "consumer_max_backoff_ms", deserialize_with = "units::millis")]
    pub consumer_max_backoff: Duration,
    #[serde(deserialize_with = "units::at_least_one")]
    pub commit_batch: usize,
    #[serde(rename = "commit_interval_ms", deserialize_with = "units::positive_millis")]
    pub commit_interval: Duration,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RedisConfig {
    /// May hold a password: never printed.
    pub url: SecretString,
    pub key_prefix: String,
    #[serde(rename = "command_timeout_ms", deserialize_with = "units::positive_millis")]
    pub command_timeout: Duration,
    #[serde(rename = "connect_timeout_ms", deserialize_with = "units::positive_millis")]
    pub connect_timeout: Duration,
    #[serde(rename = "cache_lock_ttl_ms", deserialize_with = "units::positive_millis")]
    pub cache_lock_ttl: Duration,
    #[serde(rename = "coupon_gate_ttl_secs", deserialize_with = "units::positive_secs")]
    pub coupon_gate_ttl: Duration,
    pub near_cache_entries: usize,
    #[serde(rename = "near_cache_ttl_ms", deserialize_with = "units::millis")]
    pub near_cache_ttl: Duration,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthConfig {
    pub jwt_secret: SecretString,
    #[serde(rename = "access_ttl_secs", deserialize_with = "units::positive_secs")]
    pub access_ttl: Duration,
    #[serde(rename = "refresh_ttl_secs", deserialize_with = "units::positive_secs")]
    pub refresh_ttl: Duration,
    #[serde(rename = "staff_idle_timeout_secs", deserialize_with = "units::positive_secs")]
    pub staff_idle_timeout: Duration,
    #[serde(deserialize_with = "units::at_least_one")]
    pub login_per_email_per_hour: u32,
    #[serde(deserialize_with = "units::at_least_one")]
    pub login_per_ip_and_email_per_minute: u32,
    #[serde(deserialize_with = "units::at_least_one")]
    pub login_per_ip_per_minute: u32,
    #[serde(deserialize_with = "units::at_least_one")]
    pub sign_up_per_ip_per_minute: u32,
    /// Threads that hash and verify passwords (0: one per core).
    pub hash_threads: usize,
    /// Hashes waiting for a thread before sign-ups and logins are answered 503 (0: 16 per
    /// thread).
    pub hash_queue: usize,
    #[serde(deserialize_with = "units::at_least_one")]
    pub api_per_member_per_minute: u32,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    #[serde(rename = "read_your_writes_window_secs", deserialize_with = "units::secs")]
    pub read_your_writes_window: Duration,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InsurerConfig {
    pub webhook_secret: SecretString,
}

/// A third party reached over HTTP (`[data_platform]`, `[licence_provider]`).
#[derive(Debug, Clone, Deserialize)]
pub struct HttpPartySettings {
    pub url: String,
    #[serde(rename = "timeout_ms", deserialize_with = "units::positive_millis")]
    pub timeout: Duration,
    #[serde(deserialize_with = "units::at_least_one")]
    pub max_attempts: u32,
    #[serde(rename = "backoff_ms", deserialize_with = "units::millis")]
    pub backoff: Duration,
    pub breaker_threshold: u32,
    #[serde(rename = "breaker_cooldown_secs", deserialize_with = "units::secs")]
    pub breaker_cooldown: Duration,
}

impl HttpPartySettings {
    /// Whether a URL is set (else a stand-in is used).
    pub fn configured(&self) -> bool {
        !self.url.trim().is_empty()
    }

    /// Its deadline, retries and breaker.
    pub fn policy(&self) -> crate::resilient::CallPolicy {
        crate::resilient::CallPolicy {
            timeout: self.timeout,
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            breaker_threshold: self.breaker_threshold,
            breaker_cooldown: self.breaker_cooldown,
        }
    }
}

/// When licences are due for re-verification.
#[derive(Debug, Clone, Deserialize)]
pub struct LicencesConfig {
    pub expiring_within_days: u16,
    pub unverified_for_days: u16,
}

impl LicencesConfig {
    pub fn due_policy(&self) -> core_domain::licence::DuePolicy {
        core_domain::licence::DuePolicy {
            expiring_within: time::Duration::days(i64::from(self.expiring_within_days)),
            unverified_for: time::Duration::days(i64::from(self.unverified_for_days)),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct CacheConfig {
    pub max_entries: u64,
    #[serde(rename = "product_ttl_secs", deserialize_with = "units::secs")]
    pub product_ttl: Duration,
    #[serde(rename = "popular_ttl_secs", deserialize_with = "units::secs")]
    pub popular_ttl: Duration,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RelayConfig {
    #[serde(deserialize_with = "units::at_least_one")]
    pub batch_size: i64,
    #[serde(rename = "lease_secs", deserialize_with = "units::positive_secs")]
    pub lease: Duration,
    #[serde(deserialize_with = "units::at_least_one")]
    pub max_attempts: i32,
    #[serde(rename = "idle_wait_ms", deserialize_with = "units::millis")]
    pub idle_wait: Duration,
    #[serde(rename = "linger_ms", deserialize_with = "units::millis")]
    pub linger: Duration,
}

#[derive(Debug, Clone, Deserialize)]
pub struct JobsConfig {
    #[serde(rename = "interval_secs", deserialize_with = "units::positive_secs")]
    pub interval: Duration,
    #[serde(deserialize_with = "units::at_least_one")]
    pub batch_size: i64,
    pub max_rows_per_second: u32,
    #[serde(rename = "lease_secs", deserialize_with = "units::positive_secs")]
    pub lease: Duration,
}

impl JobsConfig {
    pub fn settings(&self) -> application::jobs::JobSettings {
        application::jobs::JobSettings {
            chunk_size: self.batch_size,
            max_rows_per_second: self.max_rows_per_second,
            lease: self.lease,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogConfig {
    pub format: String,
    pub level: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BootstrapConfig {
    #[serde(default)]
    pub staff: Vec<StaffAccount>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StaffAccount {
    pub email: String,
    pub password: SecretString,
    pub name: String,
    pub phone: String,
    pub role: String,
}

/// Replica URLs come as a TOML list or, from the environment, a comma-separated string.
fn list_or_csv<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<SecretString>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrCsv {
        List(Vec<String>),
        Csv(String),
    }
    Ok(match ListOrCsv::deserialize(deserializer)? {
        ListOrCsv::List(list) => list,
        ListOrCsv::Csv(csv) => csv
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
    }
    .into_iter()
    .map(SecretString::from)
    .collect())
}

/// CIDR networks (`10.0.0.0/8`, `fd00::/8`; a bare address is one host), as a list or a
/// comma-separated string; a malformed one is refused at start-up.
fn networks<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
    list_or_csv(deserializer)?
        .iter()
        .map(|entry| {
            let entry = secrecy::ExposeSecret::expose_secret(entry);
            entry
                .parse::<ipnet::IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| serde::de::Error::custom(format!("not a network (CIDR) or address: `{entry}`")))
        })
        .collect()
}

/// Typed values from the integer keys of the configuration: a `…_secs` or `…_ms` key
/// becomes a [`Duration`] once, here, and a key that must be positive is refused at start-up
/// when it is not (instead of being clamped where it is used).
mod units {
    use std::time::Duration;

    use serde::de::{Deserialize, Deserializer, Error};

    fn positive<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        match u64::deserialize(deserializer)? {
            0 => Err(D::Error::custom("must be at least 1")),
            n => Ok(n),
        }
    }

    pub(super) fn secs<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_secs)
    }

    pub(super) fn millis<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }

    pub(super) fn positive_secs<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        positive(deserializer).map(Duration::from_secs)
    }

    pub(super) fn positive_millis<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        positive(deserializer).map(Duration::from_millis)
    }

    /// A count that must be at least 1 (pool sizes, batch sizes, attempts, quotas).
    pub(super) fn at_least_one<'de, D, T>(deserializer: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de> + PartialOrd + From<u8>,
    {
        let value = T::deserialize(deserializer)?;
        if value < T::from(1) {
            return Err(D::Error::custom("must be at least 1"));
        }
        Ok(value)
    }
}

impl Config {
    /// Defaults, then `file` if given, then `APP__…` environment variables.
    pub fn load(file: Option<&str>) -> Result<Self, config::ConfigError> {
        let mut builder =
            config::Config::builder().add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Some(file) = file {
            builder = builder.add_source(config::File::with_name(file));
        }
        builder
            .add_source(
                config::Environment::with_prefix("APP")
                    .prefix_separator("__")
                    .separator("__"),
            )
            .build()?
            .try_deserialize()
    }

    /// The defaults alone (tests start from these).
    pub fn defaults() -> Result<Self, config::ConfigError> {
        config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .build()?
            .try_deserialize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_parse_to_the_embedded_runtime() {
        let config = Config::defaults().expect("defaults");
        assert!(config.database.url.expose_secret().starts_with("sqlite://"));
        assert_eq!(config.server.request_timeout, Duration::from_secs(30));
        assert_eq!(config.database.health_interval, Duration::from_millis(500));
        assert!(config.database.replica_urls.is_empty());
        assert!(config.kafka.brokers.is_empty());
        assert_eq!(config.server.role, InstanceRole::All);
        assert_eq!(config.database.sqlite_synchronous, adapters_sqlite::Synchronous::Normal);
    }

    #[test]
    fn replica_urls_accept_a_comma_separated_string() {
        let parsed: Vec<String> = list_or_csv(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(
            "postgres://a, postgres://b",
        ))
        .expect("csv")
        .iter()
        .map(|url| url.expose_secret().to_owned())
        .collect();
        assert_eq!(parsed, ["postgres://a", "postgres://b"]);
    }

    #[test]
    fn a_zero_timeout_or_pool_size_is_refused_not_clamped() {
        let load = |key: &str| {
            config::Config::builder()
                .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
                .set_override(key, 0)
                .and_then(|builder| builder.build())
                .and_then(|built| built.try_deserialize::<Config>())
        };
        for key in [
            "server.request_timeout_secs",
            "relay.lease_secs",
            "database.max_connections",
        ] {
            let err = load(key).expect_err(key).to_string();
            assert!(err.contains("must be at least 1"), "{key}: {err}");
        }
        assert!(
            load("database.read_your_writes_wait_ms").is_ok(),
            "0 ms of waiting is allowed"
        );
    }

    #[test]
    fn urls_with_passwords_are_never_printed() {
        let mut config = Config::defaults().expect("defaults");
        config.database.url = "postgres://app:s3cret@db/hexride".to_owned().into();
        config.redis.url = "redis://:s3cret@cache:6379".to_owned().into();
        assert!(!format!("{config:?}").contains("s3cret"));
    }
}
