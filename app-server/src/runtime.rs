//! The composition root: picks adapters from configuration and wires them into the use
//! cases. `sqlite://` (the embedded default), `postgres://` (a primary and
//! `database.replica_urls`, with read routing) or `mysql://` (MariaDB or MySQL, with GTID
//! replicas) for the stores; cache,
//! limiter, coupon gate and read-your-writes tokens in process or, with `redis.url`, in Redis
//! (refresh tokens too) so that instances share them; events through Kafka with
//! `kafka.brokers` (see `kafka.rs`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rand::RngExt;
use secrecy::ExposeSecret;

use adapters_memory::{
    Argon2Hasher, Argon2Params, HashLimits, InProcessPublisher, MemoryConsistencyTokens, MemoryCouponGate,
    MemoryRateLimiter, MokaCache, SystemClock, UuidV7Ids,
};
use adapters_mysql::MysqlStore;
use adapters_postgres::{PgConfig, PgStore};
use adapters_redis::{RedisAdapters, RedisSettings, RedisTuning};
use adapters_sqlite::{SqliteConfig, SqliteStore};
use application::events::{DataPlatformHandler, OutboxRelay, RelaySettings};
use application::insurance::InsuranceExpiryHandler;
use application::jobs::JobRunner;
use application::members::SignUp;
use application::{Ports, Services, Settings};
use core_domain::member::Role;
use ports::{
    Cache, ConsistencyTokens, CouponGate, DataPlatformSink, EventHandler, EventPublisher, HealthCheck, LicenceVerifier,
    Quota, RateLimiter, RefreshTokenStore, StorePorts,
};

use crate::config::{Config, DatabaseConfig};
use crate::jwt::JwtAccessTokens;
use crate::licence_provider::{HttpLicenceVerifier, SelfDeclaredLicences};
use crate::sink::{HttpDataPlatformSink, LogOnlySink};

/// Everything a running instance needs, built once.
pub struct Runtime {
    pub config: Config,
    pub ports: Ports,
    pub services: Services,
    pub health: Vec<Arc<dyn HealthCheck>>,
    pub publisher: Arc<dyn EventPublisher>,
    /// The event handlers: called by the relay in process, or run as Kafka consumers.
    pub handlers: Vec<Arc<dyn EventHandler>>,
    /// The Kafka publisher when `kafka.brokers` is set (flushed on close).
    kafka: Option<Arc<adapters_kafka::KafkaPublisher>>,
    store: Store,
}

/// The SQL store behind the store ports, kept to close its pools on shutdown.
#[derive(Clone)]
enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
    Mysql(MysqlStore),
}

impl Store {
    /// Connects to the store `database.url` names (and migrates it if configured).
    async fn connect(config: &Config) -> anyhow::Result<Self> {
        let db = &config.database;
        let url = db.url.expose_secret();
        let store = if url.starts_with("sqlite:") {
            let store = SqliteStore::connect(&SqliteConfig {
                url: url.to_owned(),
                max_readers: db.max_connections,
                busy_timeout: db.busy_timeout,
                acquire_timeout: db.acquire_timeout,
                synchronous: db.sqlite_synchronous,
            })
            .await
            .context("opening the SQLite database")?;
            if db.migrate_on_start {
                store.migrate().await.context("migrating the database")?;
            }
            Store::Sqlite(store)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            require_shared_secret(config, "PostgreSQL")?;
            let store = PgStore::connect(&sql_config(db))
                .await
                .with_context(|| format!("connecting to the PostgreSQL primary {}", ports::redact_url(url)))?;
            if db.migrate_on_start {
                store.migrate().await.context("migrating the database")?;
            }
            Store::Postgres(store)
        } else if url.starts_with("mysql:") || url.starts_with("mariadb:") {
            require_shared_secret(config, "MySQL")?;
            let store = MysqlStore::connect(&sql_config(db))
                .await
                .with_context(|| format!("connecting to the MySQL primary {}", ports::redact_url(url)))?;
            if db.migrate_on_start {
                store.migrate().await.context("migrating the database")?;
            }
            Store::Mysql(store)
        } else {
            bail!(
                "database.url `{}`: this build supports sqlite://, postgres:// and mysql://",
                ports::redact_url(url)
            );
        };
        Ok(store)
    }

    fn ports(&self) -> StorePorts {
        match self {
            Store::Sqlite(store) => StorePorts::of(store.clone()),
            Store::Postgres(store) => StorePorts::of(store.clone()),
            Store::Mysql(store) => StorePorts::of(store.clone()),
        }
    }

    async fn close(&self) {
        match self {
            Store::Sqlite(store) => store.close().await,
            Store::Postgres(store) => store.close().await,
            Store::Mysql(store) => store.close().await,
        }
    }
}

/// Several instances share a server database, so they must accept each other's access
/// tokens: a per-process random secret would not do.
fn require_shared_secret(config: &Config, database: &str) -> anyhow::Result<()> {
    if config.auth.jwt_secret.expose_secret().is_empty() {
        bail!(
            "auth.jwt_secret is empty: with {database}, instances share the database and must \
             share the access-token secret too. Set APP__AUTH__JWT_SECRET (the same on every instance)."
        );
    }
    Ok(())
}

/// The `database.*` settings as a server adapter's configuration (PostgreSQL's and
/// MySQL's are the same type).
fn sql_config(db: &DatabaseConfig) -> PgConfig {
    PgConfig {
        primary_url: db.url.expose_secret().to_owned(),
        replica_urls: db
            .replica_urls
            .iter()
            .map(|url| url.expose_secret().to_owned())
            .collect(),
        max_connections: db.max_connections,
        acquire_timeout: db.acquire_timeout,
        statement_timeout: db.statement_timeout,
        max_replica_lag: db.max_replica_lag,
        read_your_writes_wait: db.read_your_writes_wait,
        health_interval: db.health_interval,
    }
}

/// The cache-like ports: in Redis when `redis.url` is set (shared by every instance), else
/// in process memory.
struct SharedState {
    cache: Arc<dyn Cache>,
    limiter: Arc<dyn RateLimiter>,
    coupon_gate: Arc<dyn CouponGate>,
    consistency: Arc<dyn ConsistencyTokens>,
    /// Only with Redis; otherwise refresh tokens stay in the SQL store.
    refresh_tokens: Option<Arc<dyn RefreshTokenStore>>,
    health: Option<Arc<dyn HealthCheck>>,
}

impl SharedState {
    /// Redis adapters for a set `redis.url` (an unreachable Redis is logged, not refused:
    /// the service runs degraded until it answers), else the in-process ones.
    async fn connect(config: &Config) -> anyhow::Result<Self> {
        let window = config.auth.read_your_writes_window;
        let r = &config.redis;
        if r.url.expose_secret().trim().is_empty() {
            return Ok(Self {
                cache: Arc::new(MokaCache::new(config.cache.max_entries)),
                limiter: Arc::new(MemoryRateLimiter::new()),
                coupon_gate: Arc::new(MemoryCouponGate::new()),
                consistency: Arc::new(MemoryConsistencyTokens::new(window)),
                refresh_tokens: None,
                health: None,
            });
        }
        let settings = RedisSettings {
            url: r.url.expose_secret().trim().to_owned(),
            key_prefix: r.key_prefix.clone(),
            command_timeout: r.command_timeout,
            connect_timeout: r.connect_timeout,
            near_cache_entries: r.near_cache_entries,
            near_cache_ttl: r.near_cache_ttl,
        };
        let tuning = RedisTuning {
            cache_lock_ttl: r.cache_lock_ttl,
            coupon_gate_ttl: r.coupon_gate_ttl,
            read_your_writes_window: window,
        };
        let redis = RedisAdapters::connect(&settings, tuning)
            .await
            .context("connecting to Redis (redis.url)")?;
        Ok(Self {
            cache: redis.cache,
            limiter: redis.limiter,
            coupon_gate: redis.coupon_gate,
            consistency: redis.consistency,
            refresh_tokens: Some(redis.refresh_tokens),
            health: Some(redis.health),
        })
    }
}

fn per_minute(limit: u32) -> Quota {
    Quota {
        limit,
        period: Duration::from_secs(60),
    }
}

impl Runtime {
    /// Connects the stores (and migrates them if configured) and wires every port.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let secret = match config.auth.jwt_secret.expose_secret() {
            "" => {
                tracing::warn!(
                    "auth.jwt_secret is not set: generated a random one. Tokens will not survive a restart \
                     and instances will not accept each other's tokens. Set APP__AUTH__JWT_SECRET in production."
                );
                let bytes: [u8; 32] = rand::rng().random();
                bytes.to_vec()
            }
            secret => {
                crate::jwt::check_secret(secret).map_err(|why| anyhow::anyhow!("auth.jwt_secret {why}"))?;
                secret.as_bytes().to_vec()
            }
        };
        let insurer_secret = config.insurer.webhook_secret.expose_secret();
        if !insurer_secret.is_empty() && insurer_secret.len() < crate::jwt::MIN_SECRET_BYTES {
            bail!(
                "insurer.webhook_secret is {} bytes; at least {} are needed (empty turns insurer callbacks off)",
                insurer_secret.len(),
                crate::jwt::MIN_SECRET_BYTES
            );
        }
        let shared = SharedState::connect(&config).await?;
        let store = Store::connect(&config).await?;
        let stores = store.ports();

        let mut limits = match config.auth.hash_threads {
            0 => HashLimits::default(),
            threads => HashLimits::for_threads(threads),
        };
        if config.auth.hash_queue > 0 {
            limits.queue = config.auth.hash_queue;
        }
        let hasher = Argon2Hasher::with_limits(
            Argon2Params {
                memory_kib: config.auth.argon2_memory_kib,
                iterations: config.auth.argon2_iterations,
                parallelism: 1,
            },
            limits,
        )
        .context("argon2 parameters (auth.argon2_memory_kib, auth.argon2_iterations, auth.hash_threads)")?;

        let licence_verifier: Arc<dyn LicenceVerifier> = if config.licence_provider.configured() {
            let provider = &config.licence_provider;
            Arc::new(HttpLicenceVerifier::new(&provider.url, &provider.policy()).context("licence_provider settings")?)
        } else {
            tracing::warn!(
                "licence_provider.url is not set: licences are taken as valid as registered, never verified. \
                 Set APP__LICENCE_PROVIDER__URL wherever licences matter."
            );
            Arc::new(SelfDeclaredLicences)
        };
        let ports = Ports {
            db: stores.db,
            members: stores.members,
            insurance: stores.insurance,
            licences: stores.licences,
            jobs: stores.jobs,
            licence_verifier,
            catalog: stores.catalog,
            wallet: stores.wallet,
            coupons: stores.coupons,
            orders: stores.orders,
            idempotency: stores.idempotency,
            outbox: stores.outbox,
            refresh_tokens: shared.refresh_tokens.unwrap_or(stores.refresh_tokens),
            staff_sessions: stores.staff_sessions,
            trail: stores.trail,
            access_tokens: Arc::new(JwtAccessTokens::new(&secret, config.auth.access_ttl)),
            consistency: shared.consistency,
            cache: shared.cache,
            limiter: shared.limiter,
            coupon_gate: shared.coupon_gate,
            clock: Arc::new(SystemClock),
            ids: Arc::new(UuidV7Ids),
            hasher: Arc::new(hasher),
        };
        let settings = Settings {
            login_per_email: Quota {
                limit: config.auth.login_per_email_per_hour,
                period: Duration::from_secs(3600),
            },
            login_per_ip_and_email: per_minute(config.auth.login_per_ip_and_email_per_minute),
            login_per_ip: per_minute(config.auth.login_per_ip_per_minute),
            sign_up_per_ip: per_minute(config.auth.sign_up_per_ip_per_minute),
            refresh_ttl: config.auth.refresh_ttl,
            staff_idle_timeout: config.auth.staff_idle_timeout,
            product_cache_ttl: config.cache.product_ttl,
            popular_cache_ttl: config.cache.popular_ttl,
        };
        let services = Services::new(ports.clone(), settings);

        let sink: Arc<dyn DataPlatformSink> = if config.data_platform.configured() {
            let dp = &config.data_platform;
            Arc::new(HttpDataPlatformSink::new(&dp.url, &dp.policy()).context("data_platform settings")?)
        } else {
            Arc::new(LogOnlySink)
        };
        let handlers: Vec<Arc<dyn EventHandler>> = vec![
            Arc::new(InsuranceExpiryHandler::new(services.insurance.clone())),
            Arc::new(DataPlatformHandler::new(ports.db.clone(), ports.trail.clone(), sink)),
        ];
        let kafka = crate::kafka::connect(&config).await?;
        let publisher: Arc<dyn EventPublisher> = match &kafka {
            Some(kafka) => kafka.clone(),
            None => Arc::new(InProcessPublisher::new(handlers.clone())),
        };

        let runtime = Self {
            health: [
                Some(stores.health),
                shared.health,
                kafka.clone().map(|k| k as Arc<dyn HealthCheck>),
            ]
            .into_iter()
            .flatten()
            .collect(),
            config,
            ports,
            services,
            publisher,
            handlers,
            kafka,
            store,
        };
        runtime.bootstrap_staff().await?;
        Ok(runtime)
    }

    /// Creates the staff accounts of `bootstrap.staff` that do not exist yet.
    async fn bootstrap_staff(&self) -> anyhow::Result<()> {
        for staff in &self.config.bootstrap.staff {
            let role: Role = staff.role.parse().context("bootstrap.staff")?;
            let request = SignUp {
                email: staff.email.clone(),
                password: staff.password.expose_secret().to_owned(),
                name: staff.name.clone(),
                phone: staff.phone.clone(),
            };
            let member = self
                .services
                .members
                .ensure_account(request, role)
                .await
                .with_context(|| format!("bootstrap staff {}", staff.email))?;
            tracing::info!(email = %member.email, role = %member.role, "staff account ready");
        }
        Ok(())
    }

    /// The runner of this instance's scheduled jobs. Its name in leases, new each time,
    /// carries the process id, so an operator (or a test) can tell which process holds a job.
    pub fn job_runner(&self) -> JobRunner {
        JobRunner::new(
            self.ports.jobs.clone(),
            self.ports.clock.clone(),
            format!("jobs-{}-{}", std::process::id(), uuid::Uuid::now_v7()),
            self.config.jobs.settings(),
        )
    }

    /// An outbox relay draining to this instance's publisher.
    pub fn relay(&self, owner: &str) -> OutboxRelay {
        let r = &self.config.relay;
        OutboxRelay::new(
            self.ports.outbox.clone(),
            self.publisher.clone(),
            self.ports.clock.clone(),
            RelaySettings {
                batch_size: r.batch_size,
                lease: r.lease,
                max_attempts: r.max_attempts,
                idle_wait: r.idle_wait,
                linger: r.linger,
                ..RelaySettings::default()
            },
            owner,
        )
    }

    /// Flushes the Kafka producer and closes connection pools (after the workers have stopped).
    pub async fn close(&self) {
        if let Some(kafka) = &self.kafka {
            kafka.flush(self.config.kafka.request_timeout).await;
        }
        self.store.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with_url(url: &str) -> Config {
        let mut config = Config::defaults().expect("defaults");
        config.database.url = url.to_owned().into();
        config
    }

    #[tokio::test]
    async fn postgres_refuses_to_start_without_a_shared_jwt_secret() {
        let config = config_with_url("postgres://postgres@127.0.0.1:1/hexride");
        let error = Runtime::build(config).await.err().expect("refused");
        assert!(error.to_string().contains("auth.jwt_secret is empty"), "{error:#}");
    }

    #[tokio::test]
    async fn weak_secrets_are_refused_at_start() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let base = config_with_url(&format!("sqlite://{}/weak.db", dir.path().display()));
        for (jwt, insurer, expected) in [
            (
                "change-me-to-a-long-random-secret",
                "",
                "auth.jwt_secret is a placeholder",
            ),
            ("short", "", "auth.jwt_secret is 5 bytes"),
            (
                "0123456789abcdef0123456789abcdef",
                "short",
                "insurer.webhook_secret is 5 bytes",
            ),
        ] {
            let mut config = base.clone();
            config.auth.jwt_secret = jwt.to_owned().into();
            config.insurer.webhook_secret = insurer.to_owned().into();
            let error = Runtime::build(config).await.err().expect("refused");
            assert!(error.to_string().contains(expected), "{error:#}");
        }
    }

    #[tokio::test]
    async fn an_unsupported_database_url_is_refused_without_its_password() {
        let error = Runtime::build(config_with_url("oracle://app:s3cret@db/hexride"))
            .await
            .err()
            .expect("refused");
        let message = format!("{error:#}");
        assert!(message.contains("sqlite://, postgres:// and mysql://"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
    }

    #[tokio::test]
    async fn a_malformed_redis_url_or_prefix_is_refused_at_start() {
        let mut config = config_with_url("sqlite::memory:");
        config.redis.url = "http://127.0.0.1:1".to_owned().into();
        let error = Runtime::build(config.clone()).await.err().expect("refused");
        assert!(format!("{error:#}").contains("invalid Redis URL"), "{error:#}");

        config.redis.url = "redis://127.0.0.1:1".to_owned().into();
        config.redis.key_prefix = "{x}".to_owned();
        let error = Runtime::build(config).await.err().expect("refused");
        assert!(format!("{error:#}").contains("key prefix"), "{error:#}");
    }

    #[tokio::test]
    async fn an_unreachable_redis_starts_degraded() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = config_with_url(&format!("sqlite://{}", dir.path().join("db").display()));
        config.redis.url = "redis://127.0.0.1:1".to_owned().into();
        let runtime = Runtime::build(config).await.expect("starts without Redis");
        let mut components = Vec::new();
        for check in &runtime.health {
            components.extend(check.health().await);
        }
        let redis = components
            .iter()
            .find(|c| c.name == "redis")
            .expect("a redis component");
        assert_eq!(redis.status, ports::HealthStatus::Degraded);
        runtime.close().await;
    }

    #[test]
    fn database_settings_become_the_server_configuration() {
        let mut db = Config::defaults().expect("defaults").database;
        db.url = "postgres://app@primary/hexride".to_owned().into();
        db.replica_urls = vec!["postgres://app@replica/hexride".to_owned().into()];
        let pg = sql_config(&db);
        assert_eq!(pg.primary_url, "postgres://app@primary/hexride");
        assert_eq!(pg.replica_urls, ["postgres://app@replica/hexride"]);
        assert_eq!(pg.max_replica_lag, Duration::from_secs(5));
        assert_eq!(pg.read_your_writes_wait, Duration::from_millis(200));
        assert_eq!(pg.statement_timeout, Duration::from_secs(10));
        assert_eq!(pg.health_interval, Duration::from_millis(500));
    }
}
