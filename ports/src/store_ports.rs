//! Every port one database adapter implements, as the trait objects the application takes.

use std::sync::Arc;

use crate::{
    CatalogReads, CouponReads, Database, EventTrailReads, HealthCheck, IdempotencyReads, InsuranceReads, JobLeases,
    LicenceReads, MemberReads, OrderReads, OutboxStore, RefreshTokenStore, StaffSessions, WalletReads,
};

/// The ports of one store: units of work, every context's reads, the outbox, refresh
/// tokens and its health. [`StorePorts::of`] makes them all from one value.
#[derive(Clone)]
pub struct StorePorts {
    /// Units of work on the primary.
    pub db: Arc<dyn Database>,
    /// Member reads.
    pub members: Arc<dyn MemberReads>,
    /// Policy, plan, audit and driving-session reads.
    pub insurance: Arc<dyn InsuranceReads>,
    /// Driving licences and their checks.
    pub licences: Arc<dyn LicenceReads>,
    /// Batch jobs' leases and progress.
    pub jobs: Arc<dyn JobLeases>,
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
    /// Refresh tokens in the database.
    pub refresh_tokens: Arc<dyn RefreshTokenStore>,
    /// The admin web's sessions.
    pub staff_sessions: Arc<dyn StaffSessions>,
    /// Events, their consumers and insurer callbacks, for staff.
    pub trail: Arc<dyn EventTrailReads>,
    /// The store's health, for readiness.
    pub health: Arc<dyn HealthCheck>,
}

impl StorePorts {
    /// Every port from one store that implements them all (the SQL adapters do).
    pub fn of<S>(store: S) -> Self
    where
        S: Database
            + MemberReads
            + InsuranceReads
            + LicenceReads
            + JobLeases
            + CatalogReads
            + WalletReads
            + CouponReads
            + OrderReads
            + IdempotencyReads
            + OutboxStore
            + RefreshTokenStore
            + StaffSessions
            + EventTrailReads
            + HealthCheck
            + 'static,
    {
        let store = Arc::new(store);
        Self {
            db: store.clone(),
            members: store.clone(),
            insurance: store.clone(),
            licences: store.clone(),
            jobs: store.clone(),
            catalog: store.clone(),
            wallet: store.clone(),
            coupons: store.clone(),
            orders: store.clone(),
            idempotency: store.clone(),
            outbox: store.clone(),
            refresh_tokens: store.clone(),
            staff_sessions: store.clone(),
            trail: store.clone(),
            health: store,
        }
    }
}
