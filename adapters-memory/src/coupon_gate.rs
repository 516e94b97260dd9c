//! First-come-first-served admission in process memory. One mutex guards every campaign:
//! the critical section is a hash lookup and an insert, never held across an await, so a
//! single lock is simpler than per-campaign locks and not a bottleneck.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use core_domain::{CampaignId, MemberId};
use ports::{CouponGate, GateDecision, GateError};

/// [`ports::CouponGate`] for a single instance. The admitted count of a campaign is the
/// size of its admitted set.
#[derive(Debug, Default)]
pub struct MemoryCouponGate {
    campaigns: Mutex<HashMap<CampaignId, HashSet<MemberId>>>,
}

impl MemoryCouponGate {
    /// A gate with nothing admitted.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl CouponGate for MemoryCouponGate {
    async fn try_acquire(
        &self,
        campaign_id: CampaignId,
        member_id: MemberId,
        total_quantity: i64,
    ) -> Result<GateDecision, GateError> {
        // Each operation is a single insert or remove, so a panic elsewhere cannot leave the
        // map half-updated: recovering from poisoning is safe.
        let mut campaigns = self.campaigns.lock().unwrap_or_else(PoisonError::into_inner);
        let admitted = campaigns.entry(campaign_id).or_default();
        if admitted.contains(&member_id) {
            return Ok(GateDecision::AlreadyIssued);
        }
        let count = i64::try_from(admitted.len()).unwrap_or(i64::MAX);
        if count >= total_quantity {
            return Ok(GateDecision::SoldOut);
        }
        admitted.insert(member_id);
        Ok(GateDecision::Admitted)
    }

    async fn release(&self, campaign_id: CampaignId, member_id: MemberId) -> Result<(), GateError> {
        let mut campaigns = self.campaigns.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(admitted) = campaigns.get_mut(&campaign_id) {
            admitted.remove(&member_id);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use uuid::Uuid;

    use super::*;

    fn member() -> MemberId {
        MemberId(Uuid::now_v7())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_hundred_members_racing_for_fifty_coupons_admit_exactly_fifty() {
        let gate = Arc::new(MemoryCouponGate::new());
        let campaign = CampaignId(Uuid::now_v7());
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let gate = Arc::clone(&gate);
                tokio::spawn(async move { gate.try_acquire(campaign, member(), 50).await })
            })
            .collect();
        let mut admitted = 0;
        let mut sold_out = 0;
        for task in tasks {
            match task.await.unwrap().unwrap() {
                GateDecision::Admitted => admitted += 1,
                GateDecision::SoldOut => sold_out += 1,
                GateDecision::AlreadyIssued => panic!("every member is distinct"),
            }
        }
        assert_eq!(admitted, 50);
        assert_eq!(sold_out, 150);
    }

    #[tokio::test]
    async fn the_same_member_twice_is_already_issued() {
        let gate = MemoryCouponGate::new();
        let campaign = CampaignId(Uuid::now_v7());
        let m = member();
        assert_eq!(gate.try_acquire(campaign, m, 10).await, Ok(GateDecision::Admitted));
        assert_eq!(gate.try_acquire(campaign, m, 10).await, Ok(GateDecision::AlreadyIssued));
    }

    #[tokio::test]
    async fn a_member_admitted_to_a_sold_out_campaign_is_told_already_issued() {
        let gate = MemoryCouponGate::new();
        let campaign = CampaignId(Uuid::now_v7());
        let m = member();
        assert_eq!(gate.try_acquire(campaign, m, 1).await, Ok(GateDecision::Admitted));
        assert_eq!(gate.try_acquire(campaign, m, 1).await, Ok(GateDecision::AlreadyIssued));
    }

    #[tokio::test]
    async fn release_frees_a_slot_for_someone_else() {
        let gate = MemoryCouponGate::new();
        let campaign = CampaignId(Uuid::now_v7());
        let (first, second) = (member(), member());
        assert_eq!(gate.try_acquire(campaign, first, 1).await, Ok(GateDecision::Admitted));
        assert_eq!(gate.try_acquire(campaign, second, 1).await, Ok(GateDecision::SoldOut));

        gate.release(campaign, first).await.unwrap();

        assert_eq!(gate.try_acquire(campaign, second, 1).await, Ok(GateDecision::Admitted));
    }

    #[tokio::test]
    async fn campaigns_are_counted_separately() {
        let gate = MemoryCouponGate::new();
        let (a, b) = (CampaignId(Uuid::now_v7()), CampaignId(Uuid::now_v7()));
        let m = member();
        assert_eq!(gate.try_acquire(a, m, 1).await, Ok(GateDecision::Admitted));
        assert_eq!(gate.try_acquire(b, m, 1).await, Ok(GateDecision::Admitted));
        assert_eq!(gate.try_acquire(b, member(), 1).await, Ok(GateDecision::SoldOut));
    }
}
