//! First-come-first-served coupons. The gate (Redis or in-process) turns away the crowd
//! once a campaign is sold out; the database has the last word with an atomic
//! conditional count and a unique (campaign, member) row, so it never over-issues. The
//! campaign itself is read through the cache, so the crowd never reaches the database.

use std::time::Duration;

use time::OffsetDateTime;

use core_domain::coupon::{Coupon, CouponCampaign, CouponError, Discount, NewCampaign};
use core_domain::{CampaignId, CouponId, MemberId, ValidationErrors};
use ports::{CacheError, Consistency, CouponKey, GateDecision, Loader, Page, StoreError, Unique};

use crate::Ports;
use crate::error::problem;
use crate::freshness::Freshness;
use crate::idempotency::{IdempotencyError, IdempotencyKey, Keyed, Start};
use crate::paging;

/// Why a coupon use case failed.
#[derive(Debug, thiserror::Error)]
pub enum CouponsError {
    /// The request's values are invalid.
    #[error(transparent)]
    Validation(#[from] ValidationErrors),
    /// The store failed or was unreachable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Coupon campaign not found.
    #[error("coupon campaign not found")]
    CampaignNotFound,
    /// The campaign has not started.
    #[error("the campaign has not started")]
    NotStarted,
    /// The campaign has ended.
    #[error("the campaign has ended")]
    Ended,
    /// The campaign is sold out.
    #[error("the campaign is sold out")]
    SoldOut,
    /// You already hold a coupon of this campaign.
    #[error("you already hold a coupon of this campaign")]
    AlreadyIssued,
    /// The member is not active.
    #[error("the member is not active")]
    MemberInactive,
    /// The Idempotency-Key was used with another request, or its request still runs.
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
}

problem!(CouponsError [Idempotency] {
    CampaignNotFound => NotFound, "coupon.campaign_not_found";
    NotStarted => Conflict, "coupon.not_started";
    Ended => Conflict, "coupon.ended";
    SoldOut => Conflict, "coupon.sold_out";
    AlreadyIssued => Conflict, "coupon.already_issued";
    MemberInactive => Conflict, "member.inactive";
});

impl From<CouponError> for CouponsError {
    fn from(e: CouponError) -> Self {
        match e {
            CouponError::NotStarted => CouponsError::NotStarted,
            CouponError::Ended => CouponsError::Ended,
            CouponError::SoldOut => CouponsError::SoldOut,
            _ => CouponsError::AlreadyIssued,
        }
    }
}

/// A campaign creation request as the client sent it.
#[derive(Debug, Clone)]
pub struct CampaignRequest {
    /// The campaign's name.
    pub name: String,
    /// What each coupon takes off.
    pub discount: Discount,
    /// How many coupons may be issued, in all.
    pub total_quantity: i64,
    /// When issuing starts; now if not given.
    pub starts_at: Option<OffsetDateTime>,
    /// When issuing ends; never if not given.
    pub ends_at: Option<OffsetDateTime>,
}

/// How long a campaign is cached. Nothing about a campaign changes after its creation but
/// `issued_count`, and a stale count only passes a request on to the gate, which knows.
pub const CAMPAIGN_CACHE_TTL: Duration = Duration::from_secs(10);

fn campaign_key(id: CampaignId) -> String {
    format!("campaign:{id}")
}

/// Coupon campaigns and first-come-first-served issue.
#[derive(Clone)]
pub struct CouponService {
    ports: Ports,
    freshness: Freshness,
}

impl CouponService {
    /// The service over `ports`.
    pub fn new(ports: Ports) -> Self {
        let freshness = Freshness::new(ports.consistency.clone());
        Self { ports, freshness }
    }

    /// Admin: creates a campaign.
    pub async fn create_campaign(&self, request: CampaignRequest) -> Result<CouponCampaign, CouponsError> {
        let new = NewCampaign::parse(
            &request.name,
            request.discount,
            request.total_quantity,
            request.starts_at,
            request.ends_at,
        )?;
        let campaign = CouponCampaign::create(CampaignId(self.ports.ids.new_id()), new, self.ports.clock.now());
        let mut uow = self.ports.db.begin().await?;
        uow.coupons().insert_campaign(&campaign).await?;
        uow.commit().await?;
        Ok(campaign)
    }

    /// Staff: a page of campaigns in creation order, with their issued counts, from the
    /// primary (like every staff read: what an admin just made is there).
    pub async fn campaigns(&self, after: Option<CampaignId>, limit: i64) -> Result<Vec<CouponCampaign>, CouponsError> {
        let limit = paging::limit(Some(limit))?;
        Ok(self.ports.coupons.campaigns(after, limit, Consistency::Strong).await?)
    }

    /// Issues one coupon of the campaign to the member, first come first served. With a
    /// key, a retry of an issue that succeeded returns its coupon.
    #[tracing::instrument(skip(self, key))]
    pub async fn issue(
        &self,
        member_id: MemberId,
        campaign_id: CampaignId,
        key: Option<&IdempotencyKey>,
    ) -> Result<Coupon, CouponsError> {
        let keyed = Keyed::new("coupon", member_id, key);
        let result = self.issue_first_come(member_id, campaign_id, &keyed).await;
        match result {
            // The retry of an issue that succeeded meets the fast path's "sold out" or
            // "already issued" (or a campaign that has ended since) before the database:
            // the response its first attempt stored is the answer. Only keyed requests
            // that were turned away read it, from a replica that has the member's writes.
            Err(CouponsError::SoldOut | CouponsError::AlreadyIssued | CouponsError::Ended) if key.is_some() => {
                let consistency = self.freshness.for_member(member_id).await;
                match keyed.stored(self.ports.idempotency.as_ref(), consistency).await? {
                    Some(coupon) => Ok(coupon),
                    None => result,
                }
            }
            other => other,
        }
    }

    async fn issue_first_come(
        &self,
        member_id: MemberId,
        campaign_id: CampaignId,
        keyed: &Keyed<'_>,
    ) -> Result<Coupon, CouponsError> {
        let now = self.ports.clock.now();
        let campaign = self.campaign(campaign_id).await?;
        campaign.check_window(now)?;
        if campaign.is_sold_out() {
            return Err(CouponsError::SoldOut);
        }
        let gated = match self
            .ports
            .coupon_gate
            .try_acquire(campaign_id, member_id, campaign.total_quantity)
            .await
        {
            Ok(GateDecision::Admitted) => true,
            Ok(GateDecision::SoldOut) => return Err(CouponsError::SoldOut),
            Ok(GateDecision::AlreadyIssued) => return Err(CouponsError::AlreadyIssued),
            Err(error) => {
                tracing::debug!(%error, "coupon gate unavailable; relying on the database");
                false
            }
        };
        let result = self.issue_in_database(member_id, &campaign, now, keyed).await;
        let keeps_slot = matches!(result, Ok(_) | Err(CouponsError::SoldOut | CouponsError::AlreadyIssued));
        if gated && !keeps_slot {
            // The database did not issue (it failed, or the member is not active): give
            // the slot back so the gate does not sell out ahead of the database. SoldOut
            // and AlreadyIssued keep theirs: the database agrees the slot is gone.
            if let Err(error) = self.ports.coupon_gate.release(campaign_id, member_id).await {
                tracing::warn!(%error, "could not release a coupon gate slot");
            }
        }
        result
    }

    /// The campaign, through the cache: the crowd of a first-come-first-served campaign
    /// reads it once per cache TTL, not once per request. The database when the cache is
    /// unavailable. A cached or replica `issued_count` may lag, but "sold out" only ever
    /// becomes true, so acting on it is safe; the window does not change.
    async fn campaign(&self, campaign_id: CampaignId) -> Result<CouponCampaign, CouponsError> {
        let reads = self.ports.coupons.clone();
        let load = move || {
            let reads = reads.clone();
            async move {
                // Ids are minted by us: a campaign a replica does not know is one it has not
                // replayed yet, so ask the primary before answering "not found".
                match reads.campaign(campaign_id, Consistency::Eventual).await? {
                    Some(campaign) => Ok(Some(campaign)),
                    None => reads.campaign(campaign_id, Consistency::Strong).await,
                }
            }
        };
        let fill = load();
        let loader: Loader = Box::pin(async move {
            let campaign: Option<CouponCampaign> = fill.await?;
            serde_json::to_vec(&campaign).map_err(|e| StoreError::other(e.to_string()))
        });
        let key = campaign_key(campaign_id);
        let campaign = match self.ports.cache.get_or_load(&key, CAMPAIGN_CACHE_TTL, loader).await {
            Ok(bytes) => match serde_json::from_slice::<Option<CouponCampaign>>(&bytes) {
                Ok(campaign) => campaign,
                Err(error) => {
                    tracing::warn!(%error, key, "undecodable cache entry; reading the database");
                    load().await?
                }
            },
            Err(CacheError::Load(error)) => return Err(error.into()),
            Err(CacheError::Unavailable(error)) => {
                tracing::debug!(%error, key, "cache unavailable; reading the database");
                load().await?
            }
        };
        campaign.ok_or(CouponsError::CampaignNotFound)
    }

    async fn issue_in_database(
        &self,
        member_id: MemberId,
        campaign: &CouponCampaign,
        now: OffsetDateTime,
        keyed: &Keyed<'_>,
    ) -> Result<Coupon, CouponsError> {
        let coupon = Coupon::issue(CouponId(self.ports.ids.new_id()), campaign, member_id, now);
        let mut uow = self.ports.db.begin().await?;
        match keyed.begin(uow.as_mut()).await? {
            Start::Active => {}
            Start::Inactive => return Err(CouponsError::MemberInactive),
            Start::Replay(coupon) => return Ok(coupon),
        }
        // The slot first: its update locks the campaign row before the coupon's foreign key
        // reads it. The other way round, concurrent issues all take a shared lock on the
        // campaign (MySQL's foreign-key check) and then each waits for the others to upgrade
        // it: a deadlock. A duplicate found after the claim rolls the claim back with it.
        if !uow.coupons().claim_coupon_slot(campaign.id).await? {
            return Err(CouponsError::SoldOut);
        }
        match uow.coupons().insert_coupon(&coupon).await {
            Err(StoreError::Conflict(Unique::CouponPerMember)) => {
                return Err(CouponsError::AlreadyIssued);
            }
            other => other?,
        }
        keyed.complete(uow.as_mut(), &coupon).await?;
        self.freshness.commit(uow.as_mut(), member_id).await?;
        Ok(coupon)
    }

    /// One page of the member's coupons, newest first.
    pub async fn my_coupons(
        &self,
        member_id: MemberId,
        after: Option<CouponKey>,
        limit: Option<i64>,
    ) -> Result<Page<Coupon, CouponKey>, CouponsError> {
        let page = paging::page(after, limit)?;
        let consistency = self.freshness.for_member(member_id).await;
        Ok(self
            .ports
            .coupons
            .coupons_of_member(member_id, &page, consistency)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Problem;
    use crate::testing::TestPorts;
    use ports::GateError;

    fn campaign() -> CouponCampaign {
        let new = NewCampaign::parse("c", Discount::Fixed { amount: 100 }, 10, None, None).expect("ok");
        CouponCampaign::create(
            CampaignId(uuid::Uuid::now_v7()),
            new,
            OffsetDateTime::now_utc() - time::Duration::hours(1),
        )
    }

    #[tokio::test]
    async fn with_the_campaign_cached_the_gate_turns_the_crowd_away_without_touching_the_database() {
        let mut t = TestPorts::new();
        let cached = serde_json::to_vec(&Some(campaign())).expect("serialisable");
        t.cache
            .expect_get_or_load()
            .withf(|key, ttl, _| key.starts_with("campaign:") && *ttl == CAMPAIGN_CACHE_TTL)
            .return_once(move |_, _, _| Ok(cached));
        t.coupons.expect_campaign().never();
        t.coupon_gate
            .expect_try_acquire()
            .return_once(|_, _, _| Ok(GateDecision::SoldOut));
        t.db.expect_begin().never();
        let err = CouponService::new(t.build())
            .issue(MemberId(uuid::Uuid::now_v7()), CampaignId(uuid::Uuid::now_v7()), None)
            .await
            .expect_err("sold out");
        assert_eq!(err.code(), "coupon.sold_out");
    }

    #[tokio::test]
    async fn a_redis_outage_falls_back_to_the_database_which_can_refuse() {
        let mut t = TestPorts::new();
        let c = campaign();
        t.cache
            .expect_get_or_load()
            .return_once(|_, _, _| Err(CacheError::Unavailable("down".into())));
        t.coupons
            .expect_campaign()
            .withf(|_, consistency| *consistency == Consistency::Eventual)
            .return_once(move |_, _| Ok(Some(c)));
        t.coupon_gate
            .expect_try_acquire()
            .return_once(|_, _, _| Err(GateError::Unavailable("down".into())));
        t.coupon_gate.expect_release().never();
        t.expect_uow(|uow| {
            crate::testing::active_member(uow);
            uow.coupons.expect_insert_coupon().returning(|_| Ok(()));
            uow.coupons.expect_claim_coupon_slot().return_once(|_| Ok(false));
            uow.end.expect_commit().never();
        });
        let err = CouponService::new(t.build())
            .issue(MemberId(uuid::Uuid::now_v7()), CampaignId(uuid::Uuid::now_v7()), None)
            .await
            .expect_err("sold out");
        assert_eq!(err.code(), "coupon.sold_out");
    }

    #[tokio::test]
    async fn a_database_failure_after_admission_gives_the_slot_back() {
        let mut t = TestPorts::new();
        t.cold_cache();
        let c = campaign();
        t.coupons.expect_campaign().return_once(move |_, _| Ok(Some(c)));
        t.coupon_gate
            .expect_try_acquire()
            .return_once(|_, _, _| Ok(GateDecision::Admitted));
        t.coupon_gate.expect_release().times(1).returning(|_, _| Ok(()));
        t.db.expect_begin().returning(|| Err(StoreError::unavailable("down")));
        let err = CouponService::new(t.build())
            .issue(MemberId(uuid::Uuid::now_v7()), CampaignId(uuid::Uuid::now_v7()), None)
            .await
            .expect_err("down");
        assert_eq!(err.code(), "service.unavailable");
    }

    #[tokio::test]
    async fn a_duplicate_in_the_database_is_already_issued() {
        let mut t = TestPorts::new();
        t.cold_cache();
        let c = campaign();
        t.coupons.expect_campaign().return_once(move |_, _| Ok(Some(c)));
        t.coupon_gate
            .expect_try_acquire()
            .return_once(|_, _, _| Ok(GateDecision::Admitted));
        t.coupon_gate.expect_release().never();
        t.expect_uow(|uow| {
            crate::testing::active_member(uow);
            uow.coupons.expect_claim_coupon_slot().return_once(|_| Ok(true));
            uow.coupons
                .expect_insert_coupon()
                .return_once(|_| Err(StoreError::Conflict(Unique::CouponPerMember)));
            uow.end.expect_commit().never();
        });
        let err = CouponService::new(t.build())
            .issue(MemberId(uuid::Uuid::now_v7()), CampaignId(uuid::Uuid::now_v7()), None)
            .await
            .expect_err("dup");
        assert_eq!(err.code(), "coupon.already_issued");
    }

    #[tokio::test]
    async fn a_campaign_unknown_to_the_replica_is_asked_of_the_primary_before_not_found() {
        let mut t = TestPorts::new();
        t.cold_cache();
        t.coupons
            .expect_campaign()
            .withf(|_, consistency| *consistency == Consistency::Eventual)
            .return_once(|_, _| Ok(None));
        t.coupons
            .expect_campaign()
            .withf(|_, consistency| *consistency == Consistency::Strong)
            .return_once(|_, _| Ok(None));
        let err = CouponService::new(t.build())
            .issue(MemberId(uuid::Uuid::now_v7()), CampaignId(uuid::Uuid::now_v7()), None)
            .await
            .expect_err("missing");
        assert_eq!(err.code(), "coupon.campaign_not_found");
    }

    #[tokio::test]
    async fn a_keyed_retry_turned_away_by_the_gate_gets_its_stored_coupon_without_a_write() {
        let mut t = TestPorts::new();
        let member_id = MemberId(uuid::Uuid::now_v7());
        let c = campaign();
        let issued = Coupon::issue(CouponId(uuid::Uuid::now_v7()), &c, member_id, OffsetDateTime::now_utc());
        let stored = serde_json::to_string(&issued).expect("json");
        t.cold_cache();
        t.coupons.expect_campaign().return_once(move |_, _| Ok(Some(c)));
        t.coupon_gate
            .expect_try_acquire()
            .return_once(|_, _, _| Ok(GateDecision::AlreadyIssued));
        t.db.expect_begin().never();
        t.consistency.expect_recall().returning(|_| Ok(None));
        t.idempotency
            .expect_idempotency_record()
            .withf(move |scope, key, _| scope == format!("coupon:{member_id}") && key == "k")
            .times(1)
            .return_once(move |_, _, _| {
                Ok(Some(ports::IdempotencyRecord {
                    fingerprint: "fp".into(),
                    response: Some(stored),
                }))
            });
        let key = IdempotencyKey::parse("k", "fp").expect("valid");
        let coupon = CouponService::new(t.build())
            .issue(member_id, CampaignId(uuid::Uuid::now_v7()), Some(&key))
            .await
            .expect("replayed");
        assert_eq!(coupon, issued);
    }

    #[tokio::test]
    async fn a_keyed_request_turned_away_whose_key_is_unused_keeps_its_refusal() {
        let mut t = TestPorts::new();
        let c = campaign();
        t.cold_cache();
        t.coupons.expect_campaign().return_once(move |_, _| Ok(Some(c)));
        t.coupon_gate
            .expect_try_acquire()
            .return_once(|_, _, _| Ok(GateDecision::SoldOut));
        t.db.expect_begin().never();
        t.consistency.expect_recall().returning(|_| Ok(None));
        t.idempotency
            .expect_idempotency_record()
            .times(1)
            .return_once(|_, _, _| Ok(None));
        let key = IdempotencyKey::parse("k", "fp").expect("valid");
        let err = CouponService::new(t.build())
            .issue(
                MemberId(uuid::Uuid::now_v7()),
                CampaignId(uuid::Uuid::now_v7()),
                Some(&key),
            )
            .await
            .expect_err("sold out");
        assert_eq!(err.code(), "coupon.sold_out");
    }
}
