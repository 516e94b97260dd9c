//! Use cases of hexride: one service per context, orchestrating domain rules through ports.
//!
//! No SQL, HTTP or Kafka here. Each service holds the [`Ports`] bundle (cheap `Arc` clones)
//! and answers with its own error enum, whose [`Problem`] impl gives the HTTP layer a
//! status class and a stable `code` without this crate knowing about HTTP.

pub mod catalog;
pub mod coupons;
pub mod error;
pub mod events;
pub mod freshness;
pub mod insurance;
pub mod members;
pub mod orders;
mod retry;
pub mod wallet;

#[cfg(test)]
mod testing;

use std::sync::Arc;
use std::time::Duration;

use ports::{
    AccessTokens, Cache, CatalogReads, Clock, ConsistencyTokens, CouponGate, CouponReads, Database, IdSource,
    InsuranceReads, MemberReads, OrderReads, OutboxStore, PasswordHasher, Quota, RateLimiter, RefreshTokenStore,
    WalletReads,
};

pub use error::{ErrorKind, Problem};

/// Every port the use cases need, chosen by the composition root.
#[derive(Clone)]
pub struct Ports {
    pub db: Arc<dyn Database>,
    pub members: Arc<dyn MemberReads>,
    pub insurance: Arc<dyn InsuranceReads>,
    pub catalog: Arc<dyn CatalogReads>,
    pub wallet: Arc<dyn WalletReads>,
    pub coupons: Arc<dyn CouponReads>,
    pub orders: Arc<dyn OrderReads>,
    pub outbox: Arc<dyn OutboxStore>,
    pub refresh_tokens: Arc<dyn RefreshTokenStore>,
    pub access_tokens: Arc<dyn AccessTokens>,
    pub consistency: Arc<dyn ConsistencyTokens>,
    pub cache: Arc<dyn Cache>,
    pub limiter: Arc<dyn RateLimiter>,
    pub coupon_gate: Arc<dyn CouponGate>,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdSource>,
    pub hasher: Arc<dyn PasswordHasher>,
}

/// Tunables of the use cases (from the `[app]`-level configuration).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Login attempts per e-mail address.
    pub login_per_email: Quota,
    /// Login attempts per client IP.
    pub login_per_ip: Quota,
    /// How long a refresh token lives.
    pub refresh_ttl: Duration,
    /// How long a product (detail or first list page) stays cached.
    pub product_cache_ttl: Duration,
    /// How long the popular-products list stays cached.
    pub popular_cache_ttl: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            login_per_email: Quota {
                limit: 10,
                period: Duration::from_secs(60),
            },
            login_per_ip: Quota {
                limit: 50,
                period: Duration::from_secs(60),
            },
            refresh_ttl: Duration::from_secs(14 * 24 * 3600),
            product_cache_ttl: Duration::from_secs(10),
            popular_cache_ttl: Duration::from_secs(60),
        }
    }
}

/// All services, built once at start-up.
#[derive(Clone)]
pub struct Services {
    pub members: members::MemberService,
    pub insurance: insurance::InsuranceService,
    pub catalog: catalog::CatalogService,
    pub wallet: wallet::WalletService,
    pub coupons: coupons::CouponService,
    pub orders: orders::OrderService,
}

impl Services {
    pub fn new(ports: Ports, settings: Settings) -> Self {
        let settings = Arc::new(settings);
        let catalog = catalog::CatalogService::new(ports.clone(), settings.clone());
        Self {
            members: members::MemberService::new(ports.clone(), settings),
            insurance: insurance::InsuranceService::new(ports.clone()),
            wallet: wallet::WalletService::new(ports.clone()),
            coupons: coupons::CouponService::new(ports.clone()),
            orders: orders::OrderService::new(ports, catalog.clone()),
            catalog,
        }
    }
}
