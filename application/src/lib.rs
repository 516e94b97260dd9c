#![warn(missing_docs)]
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
pub mod idempotency;
pub mod insurance;
pub mod jobs;
pub mod licences;
pub mod members;
pub mod orders;
pub mod paging;
mod retry;
pub mod wallet;

#[cfg(test)]
mod testing;

use std::sync::Arc;
use std::time::Duration;

use ports::{
    AccessTokens, Cache, CatalogReads, Clock, ConsistencyTokens, CouponGate, CouponReads, Database, EventTrailReads,
    IdSource, IdempotencyReads, InsuranceReads, JobLeases, LicenceReads, LicenceVerifier, MemberReads, OrderReads,
    OutboxStore, PasswordHasher, Quota, RateLimiter, RefreshTokenStore, StaffSessions, WalletReads,
};

pub use error::{ErrorKind, Problem};

/// Every port the use cases need, chosen by the composition root.
#[derive(Clone)]
pub struct Ports {
    /// Units of work on the primary.
    pub db: Arc<dyn Database>,
    /// Member reads.
    pub members: Arc<dyn MemberReads>,
    /// Policy, audit and driving-session reads.
    pub insurance: Arc<dyn InsuranceReads>,
    /// Driving licences and their checks.
    pub licences: Arc<dyn LicenceReads>,
    /// Batch jobs' leases.
    pub jobs: Arc<dyn JobLeases>,
    /// The licence-verification provider.
    pub licence_verifier: Arc<dyn LicenceVerifier>,
    /// Catalogue reads.
    pub catalog: Arc<dyn CatalogReads>,
    /// Wallet and ledger reads.
    pub wallet: Arc<dyn WalletReads>,
    /// Campaign and coupon reads.
    pub coupons: Arc<dyn CouponReads>,
    /// Order and payment reads.
    pub orders: Arc<dyn OrderReads>,
    /// Responses stored under idempotency keys.
    pub idempotency: Arc<dyn IdempotencyReads>,
    /// The relay's view of the outbox.
    pub outbox: Arc<dyn OutboxStore>,
    /// Refresh tokens (the database, or Redis).
    pub refresh_tokens: Arc<dyn RefreshTokenStore>,
    /// The admin web's sessions.
    pub staff_sessions: Arc<dyn StaffSessions>,
    /// Events, their consumers and insurer callbacks, for staff.
    pub trail: Arc<dyn EventTrailReads>,
    /// Access-token signing.
    pub access_tokens: Arc<dyn AccessTokens>,
    /// Each member's last commit token.
    pub consistency: Arc<dyn ConsistencyTokens>,
    /// The read cache.
    pub cache: Arc<dyn Cache>,
    /// Rate limits.
    pub limiter: Arc<dyn RateLimiter>,
    /// The first-come-first-served gate in front of the database.
    pub coupon_gate: Arc<dyn CouponGate>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// New ids.
    pub ids: Arc<dyn IdSource>,
    /// Password hashing.
    pub hasher: Arc<dyn PasswordHasher>,
}

/// Tunables of the use cases (from the `[app]`-level configuration).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Login attempts per e-mail address, from any client (a ceiling for slow guessing from
    /// many addresses).
    pub login_per_email: Quota,
    /// Login attempts per (client IP, e-mail address).
    pub login_per_ip_and_email: Quota,
    /// Login attempts per client IP.
    pub login_per_ip: Quota,
    /// Sign-ups per client IP (through [`members::MemberService::sign_up_from`]).
    pub sign_up_per_ip: Quota,
    /// How long a refresh token lives.
    pub refresh_ttl: Duration,
    /// How long an admin-web session lives without a request.
    pub staff_idle_timeout: Duration,
    /// How long a product (detail or first list page) stays cached.
    pub product_cache_ttl: Duration,
    /// How long the popular-products list stays cached.
    pub popular_cache_ttl: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            login_per_email: Quota {
                limit: 100,
                period: Duration::from_secs(3600),
            },
            login_per_ip_and_email: Quota {
                limit: 10,
                period: Duration::from_secs(60),
            },
            login_per_ip: Quota {
                limit: 50,
                period: Duration::from_secs(60),
            },
            sign_up_per_ip: Quota {
                limit: 20,
                period: Duration::from_secs(60),
            },
            refresh_ttl: Duration::from_secs(14 * 24 * 3600),
            staff_idle_timeout: Duration::from_secs(30 * 60),
            product_cache_ttl: Duration::from_secs(10),
            popular_cache_ttl: Duration::from_secs(60),
        }
    }
}

/// All services, built once at start-up.
#[derive(Clone)]
pub struct Services {
    /// Members and auth.
    pub members: members::MemberService,
    /// Time-based insurance.
    pub insurance: insurance::InsuranceService,
    /// Driving licences.
    pub licences: licences::LicenceService,
    /// The catalogue.
    pub catalog: catalog::CatalogService,
    /// Point wallets.
    pub wallet: wallet::WalletService,
    /// Coupons.
    pub coupons: coupons::CouponService,
    /// Orders and payments.
    pub orders: orders::OrderService,
}

impl Services {
    /// Every service over `ports`.
    pub fn new(ports: Ports, settings: Settings) -> Self {
        let settings = Arc::new(settings);
        let catalog = catalog::CatalogService::new(ports.clone(), settings.clone());
        Self {
            members: members::MemberService::new(ports.clone(), settings),
            insurance: insurance::InsuranceService::new(ports.clone()),
            licences: licences::LicenceService::new(ports.clone()),
            wallet: wallet::WalletService::new(ports.clone()),
            coupons: coupons::CouponService::new(ports.clone()),
            orders: orders::OrderService::new(ports, catalog.clone()),
            catalog,
        }
    }
}
