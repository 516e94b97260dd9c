//! Mock ports for the use-case tests: every port a strict mock (an unexpected call fails
//! the test), with a real-ish clock and id source.

use std::sync::Arc;

use core_domain::MemberId;
use core_domain::member::{Member, NewMember, Role};
use ports::*;
use time::OffsetDateTime;

pub struct TestPorts {
    pub db: MockDatabase,
    pub members: MockMemberReads,
    pub insurance: MockInsuranceReads,
    pub licences: MockLicenceReads,
    pub jobs: MockJobLeases,
    pub licence_verifier: MockLicenceVerifier,
    pub catalog: MockCatalogReads,
    pub wallet: MockWalletReads,
    pub coupons: MockCouponReads,
    pub orders: MockOrderReads,
    pub idempotency: MockIdempotencyReads,
    pub outbox: MockOutboxStore,
    pub refresh_tokens: MockRefreshTokenStore,
    pub staff_sessions: MockStaffSessions,
    pub trail: MockEventTrailReads,
    pub access_tokens: MockAccessTokens,
    pub consistency: MockConsistencyTokens,
    pub cache: MockCache,
    pub limiter: MockRateLimiter,
    pub coupon_gate: MockCouponGate,
    pub clock: MockClock,
    pub ids: MockIdSource,
    pub hasher: MockPasswordHasher,
}

impl TestPorts {
    pub fn new() -> Self {
        let mut clock = MockClock::new();
        clock.expect_now().returning(OffsetDateTime::now_utc);
        let mut ids = MockIdSource::new();
        ids.expect_new_id().returning(uuid::Uuid::now_v7);
        Self {
            db: MockDatabase::new(),
            members: MockMemberReads::new(),
            insurance: MockInsuranceReads::new(),
            licences: MockLicenceReads::new(),
            jobs: MockJobLeases::new(),
            licence_verifier: MockLicenceVerifier::new(),
            catalog: MockCatalogReads::new(),
            wallet: MockWalletReads::new(),
            coupons: MockCouponReads::new(),
            orders: MockOrderReads::new(),
            idempotency: MockIdempotencyReads::new(),
            outbox: MockOutboxStore::new(),
            refresh_tokens: MockRefreshTokenStore::new(),
            staff_sessions: MockStaffSessions::new(),
            trail: MockEventTrailReads::new(),
            access_tokens: MockAccessTokens::new(),
            consistency: MockConsistencyTokens::new(),
            cache: MockCache::new(),
            limiter: MockRateLimiter::new(),
            coupon_gate: MockCouponGate::new(),
            clock,
            ids,
            hasher: MockPasswordHasher::new(),
        }
    }

    /// The next `db.begin()` returns a unit of work configured by `configure`.
    pub fn expect_uow(&mut self, configure: impl FnOnce(&mut MockUnitOfWork)) {
        let mut uow = MockUnitOfWork::new();
        configure(&mut uow);
        self.db.expect_begin().times(1).return_once(move || Ok(Box::new(uow)));
    }

    /// The next `db.begin()` calls return these units of work, in order, and `begin` is
    /// called exactly as many times as there are.
    pub fn expect_uows(&mut self, uows: Vec<MockUnitOfWork>) {
        let count = uows.len();
        let queue = std::sync::Mutex::new(std::collections::VecDeque::from(uows));
        self.db.expect_begin().times(count).returning(move || {
            let uow = queue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop_front()
                .expect("a unit of work for every begin");
            Ok(Box::new(uow))
        });
    }

    /// Every cache read misses and runs its loader inline, as a cold cache does.
    pub fn cold_cache(&mut self) {
        self.cache
            .expect_get_or_load()
            .returning(|_, _, loader| futures::executor::block_on(loader).map_err(CacheError::Load));
    }

    pub fn allow_limits(&mut self) {
        self.limiter.expect_check().returning(|_, _| Ok(RateDecision::Allowed));
    }

    /// Reads on behalf of members find no recent write.
    pub fn no_recent_writes(&mut self) {
        self.consistency.expect_recall().returning(|_| Ok(None));
    }

    pub fn build(self) -> crate::Ports {
        crate::Ports {
            db: Arc::new(self.db),
            members: Arc::new(self.members),
            insurance: Arc::new(self.insurance),
            licences: Arc::new(self.licences),
            jobs: Arc::new(self.jobs),
            licence_verifier: Arc::new(self.licence_verifier),
            catalog: Arc::new(self.catalog),
            wallet: Arc::new(self.wallet),
            coupons: Arc::new(self.coupons),
            orders: Arc::new(self.orders),
            idempotency: Arc::new(self.idempotency),
            outbox: Arc::new(self.outbox),
            refresh_tokens: Arc::new(self.refresh_tokens),
            staff_sessions: Arc::new(self.staff_sessions),
            trail: Arc::new(self.trail),
            access_tokens: Arc::new(self.access_tokens),
            consistency: Arc::new(self.consistency),
            cache: Arc::new(self.cache),
            limiter: Arc::new(self.limiter),
            coupon_gate: Arc::new(self.coupon_gate),
            clock: Arc::new(self.clock),
            ids: Arc::new(self.ids),
            hasher: Arc::new(self.hasher),
        }
    }
}

/// The unit of work finds the member active (any id).
pub fn active_member(uow: &mut MockUnitOfWork) {
    uow.members.expect_by_id().returning(|id| {
        let mut member = member_fixture(Role::Rider);
        member.id = id;
        Ok(Some(member))
    });
}

pub fn member_fixture(role: Role) -> Member {
    let new = NewMember::parse("rider@example.com", "correct horse battery", "Kim", "01012345678").expect("valid");
    Member::register(
        MemberId(uuid::Uuid::now_v7()),
        &new,
        "phc".into(),
        role,
        OffsetDateTime::now_utc(),
    )
    .0
}
