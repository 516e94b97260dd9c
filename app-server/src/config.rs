//! Configuration: `config/default.toml` (built in), an optional file, then `APP__SECTION__KEY`
//! environment variables. Every knob is documented in `config/default.toml` and the README.

use std::time::Duration;

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
    pub data_platform: DataPlatformSettings,
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
    pub request_timeout_secs: u64,
    pub shutdown_grace_secs: u64,
    pub max_body_bytes: usize,
    pub trust_forwarded_for: bool,
    pub role: InstanceRole,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseConfig {
    pub url: String,
    #[serde(default, deserialize_with = "list_or_csv")]
    pub replica_urls: Vec<String>,
    pub max_connections: u32,
    pub acquire_timeout_secs: u64,
    pub busy_timeout_secs: u64,
    pub migrate_on_start: bool,
    pub statement_timeout_secs: u64,
    pub max_replica_lag_ms: u64,
    pub read_your_writes_wait_ms: u64,
    pub health_interval_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct KafkaConfig {
    pub brokers: String,
    pub namespace: String,
    pub client_id: String,
    pub partitions: i32,
    pub replication_factor: i32,
    pub delivery_timeout_ms: u64,
    pub linger_ms: u64,
    pub request_timeout_ms: u64,
    pub startup_timeout_secs: u64,
    pub session_timeout_ms: u64,
    pub fetch_wait_max_ms: u64,
    pub consumer_max_attempts: u32,
    pub consumer_backoff_ms: u64,
    pub consumer_max_backoff_ms: u64,
    pub commit_batch: usize,
    pub commit_interval_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RedisConfig {
    pub url: String,
    pub key_prefix: String,
    pub command_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    pub cache_lock_ttl_ms: u64,
    pub coupon_gate_ttl_secs: u64,
    pub near_cache_entries: usize,
    pub near_cache_ttl_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthConfig {
    pub jwt_secret: SecretString,
    pub access_ttl_secs: u64,
    pub refresh_ttl_secs: u64,
    pub login_per_email_per_minute: u32,
    pub login_per_ip_per_minute: u32,
    pub api_per_member_per_minute: u32,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub read_your_writes_window_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InsurerConfig {
    pub webhook_secret: SecretString,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DataPlatformSettings {
    pub url: String,
    pub timeout_ms: u64,
    pub max_attempts: u32,
    pub backoff_ms: u64,
    pub breaker_threshold: u32,
    pub breaker_cooldown_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CacheConfig {
    pub max_entries: u64,
    pub product_ttl_secs: u64,
    pub popular_ttl_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RelayConfig {
    pub batch_size: i64,
    pub lease_secs: u64,
    pub max_attempts: i32,
    pub idle_wait_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct JobsConfig {
    pub interval_secs: u64,
    pub batch_size: i64,
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
fn list_or_csv<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
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
    })
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

impl ServerConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_parse_to_the_embedded_runtime() {
        let config = Config::defaults().expect("defaults");
        assert!(config.database.url.starts_with("sqlite://"));
        assert!(config.database.replica_urls.is_empty());
        assert!(config.kafka.brokers.is_empty());
        assert_eq!(config.server.role, InstanceRole::All);
    }

    #[test]
    fn replica_urls_accept_a_comma_separated_string() {
        let parsed: Vec<String> = list_or_csv(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(
            "postgres://a, postgres://b",
        ))
        .expect("csv");
        assert_eq!(parsed, ["postgres://a", "postgres://b"]);
    }
}
