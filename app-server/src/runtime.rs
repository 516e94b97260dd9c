//! The composition root: picks adapters from configuration and wires them into the use
//! cases. `sqlite://` (the embedded default) uses in-process events, cache, limiter and
//! coupon gate; PostgreSQL, MySQL, Kafka and Redis plug in here as their adapters land.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rand::RngExt;
use secrecy::ExposeSecret;

use adapters_memory::{
    Argon2Hasher, Argon2Params, InProcessPublisher, MemoryConsistencyTokens, MemoryCouponGate, MemoryRateLimiter,
    MokaCache, SystemClock, UuidV7Ids,
};
use adapters_sqlite::{SqliteConfig, SqliteStore};
use application::events::{DataPlatformHandler, OutboxRelay, RelaySettings};
use application::insurance::InsuranceExpiryHandler;
use application::members::SignUp;
use application::{Ports, Services, Settings};
use core_domain::member::Role;
use ports::{DataPlatformSink, EventHandler, EventPublisher, HealthCheck, Quota};

use crate::config::Config;
use crate::jwt::JwtAccessTokens;
use crate::sink::{DataPlatformConfig, HttpDataPlatformSink, LogOnlySink};

/// Everything a running instance needs, built once.
pub struct Runtime {
    pub config: Config,
    pub ports: Ports,
    pub services: Services,
    pub health: Vec<Arc<dyn HealthCheck>>,
    pub publisher: Arc<dyn EventPublisher>,
    sqlite: Option<SqliteStore>,
}

fn per_minute(limit: u32) -> Quota {
    Quota {
        limit: limit.max(1),
        period: Duration::from_secs(60),
    }
}

impl Runtime {
    /// Connects the stores (and migrates them if configured) and wires every port.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let url = config.database.url.clone();
        if !url.starts_with("sqlite:") {
            bail!(
                "database.url `{}`: only sqlite:// is supported by this build (PostgreSQL and MySQL adapters are not wired in yet)",
                url.split('@').next_back().unwrap_or_default()
            );
        }
        if !config.kafka.brokers.trim().is_empty() {
            bail!(
                "kafka.brokers is set, but this build has no Kafka adapter yet; leave it empty for in-process events"
            );
        }
        if !config.redis.url.trim().is_empty() {
            bail!("redis.url is set, but this build has no Redis adapter yet; leave it empty for the in-process cache");
        }
        let store = SqliteStore::connect(&SqliteConfig {
            url,
            max_readers: config.database.max_connections.max(1),
            busy_timeout: Duration::from_secs(config.database.busy_timeout_secs),
            acquire_timeout: Duration::from_secs(config.database.acquire_timeout_secs),
        })
        .await
        .context("opening the SQLite database")?;
        if config.database.migrate_on_start {
            store.migrate().await.context("migrating the database")?;
        }
        let store = Arc::new(store);

        let secret = match config.auth.jwt_secret.expose_secret() {
            "" => {
                tracing::warn!(
                    "auth.jwt_secret is not set: generated a random one. Tokens will not survive a restart \
                     and instances will not accept each other's tokens. Set APP__AUTH__JWT_SECRET in production."
                );
                let bytes: [u8; 32] = rand::rng().random();
                bytes.to_vec()
            }
            secret => secret.as_bytes().to_vec(),
        };
        let hasher = Argon2Hasher::new(Argon2Params {
            memory_kib: config.auth.argon2_memory_kib,
            iterations: config.auth.argon2_iterations,
            parallelism: 1,
        })
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;

        let ports = Ports {
            db: store.clone(),
            members: store.clone(),
            insurance: store.clone(),
            catalog: store.clone(),
            commerce: store.clone(),
            outbox: store.clone(),
            refresh_tokens: store.clone(),
            access_tokens: Arc::new(JwtAccessTokens::new(
                &secret,
                Duration::from_secs(config.auth.access_ttl_secs),
            )),
            consistency: Arc::new(MemoryConsistencyTokens::new(Duration::from_secs(
                config.auth.read_your_writes_window_secs,
            ))),
            cache: Arc::new(MokaCache::new(config.cache.max_entries)),
            limiter: Arc::new(MemoryRateLimiter::new()),
            coupon_gate: Arc::new(MemoryCouponGate::new()),
            clock: Arc::new(SystemClock),
            ids: Arc::new(UuidV7Ids),
            hasher: Arc::new(hasher),
        };
        let settings = Settings {
            login_per_email: per_minute(config.auth.login_per_email_per_minute),
            login_per_ip: per_minute(config.auth.login_per_ip_per_minute),
            refresh_ttl: Duration::from_secs(config.auth.refresh_ttl_secs),
            product_cache_ttl: Duration::from_secs(config.cache.product_ttl_secs),
            popular_cache_ttl: Duration::from_secs(config.cache.popular_ttl_secs),
        };
        let services = Services::new(ports.clone(), settings);

        let sink: Arc<dyn DataPlatformSink> = if config.data_platform.url.trim().is_empty() {
            Arc::new(LogOnlySink)
        } else {
            let dp = &config.data_platform;
            Arc::new(
                HttpDataPlatformSink::new(DataPlatformConfig {
                    url: dp.url.clone(),
                    timeout: Duration::from_millis(dp.timeout_ms),
                    max_attempts: dp.max_attempts.max(1),
                    backoff: Duration::from_millis(dp.backoff_ms),
                    breaker_threshold: dp.breaker_threshold,
                    breaker_cooldown: Duration::from_secs(dp.breaker_cooldown_secs),
                })
                .map_err(|e| anyhow::anyhow!("data_platform: {e}"))?,
            )
        };
        let handlers: Vec<Arc<dyn EventHandler>> = vec![
            Arc::new(InsuranceExpiryHandler::new(services.insurance.clone())),
            Arc::new(DataPlatformHandler::new(ports.db.clone(), sink)),
        ];
        let publisher: Arc<dyn EventPublisher> = Arc::new(InProcessPublisher::new(handlers));

        let runtime = Self {
            health: vec![store.clone() as Arc<dyn HealthCheck>],
            config,
            ports,
            services,
            publisher,
            sqlite: Some((*store).clone()),
        };
        runtime.bootstrap_staff().await?;
        Ok(runtime)
    }

    /// Creates the staff accounts of `bootstrap.staff` that do not exist yet.
    async fn bootstrap_staff(&self) -> anyhow::Result<()> {
        for staff in &self.config.bootstrap.staff {
            let role: Role = staff
                .role
                .parse()
                .map_err(|e: String| anyhow::anyhow!("bootstrap.staff: {e}"))?;
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
                .map_err(|e| anyhow::anyhow!("bootstrap staff {}: {e}", staff.email))?;
            tracing::info!(email = %member.email, role = %member.role, "staff account ready");
        }
        Ok(())
    }

    /// An outbox relay draining to this instance's publisher.
    pub fn relay(&self, owner: &str) -> OutboxRelay {
        let r = &self.config.relay;
        OutboxRelay::new(
            self.ports.outbox.clone(),
            self.publisher.clone(),
            self.ports.clock.clone(),
            RelaySettings {
                batch_size: r.batch_size.max(1),
                lease: Duration::from_secs(r.lease_secs.max(1)),
                max_attempts: r.max_attempts.max(1),
                idle_wait: Duration::from_millis(r.idle_wait_ms.max(10)),
                ..RelaySettings::default()
            },
            owner,
        )
    }

    /// Closes connection pools (after the workers have stopped).
    pub async fn close(&self) {
        if let Some(store) = &self.sqlite {
            store.close().await;
        }
    }
}
