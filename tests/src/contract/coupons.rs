//! Coupons: campaigns, first-come-first-served slots and issued coupons. The concurrency
//! case runs each claim in its own unit of work on its own task and counts exact outcomes.

use futures::future::join_all;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use core_domain::coupon::{Coupon, CouponCampaign, CouponStatus, Discount, NewCampaign};
use core_domain::{CampaignId, CouponId, OrderId};
use ports::{Consistency, PageRequest, StoreError, Unique};

use super::{Stores, assert_store_error, now, stored_rider};

/// A campaign (not stored).
pub fn campaign(total_quantity: i64, discount: Discount, at: OffsetDateTime) -> CouponCampaign {
    CouponCampaign::create(
        CampaignId(Uuid::now_v7()),
        NewCampaign::parse("Spring", discount, total_quantity, None, Some(at + Duration::days(7)))
            .expect("valid campaign"),
        at,
    )
}

pub(super) async fn stored_campaign(stores: &Stores, total_quantity: i64) -> CouponCampaign {
    let c = campaign(total_quantity, Discount::Fixed { amount: 1_000 }, now());
    let mut uow = stores.db.begin().await.unwrap();
    uow.coupons().insert_campaign(&c).await.unwrap();
    uow.commit().await.unwrap();
    c
}

pub async fn campaigns_page_by_id_with_their_issued_counts(stores: Stores) {
    let mut all = Vec::new();
    for total in [3, 5, 7] {
        all.push(stored_campaign(&stores, total).await);
    }
    let mut uow = stores.db.begin().await.unwrap();
    assert!(uow.coupons().claim_coupon_slot(all[1].id).await.unwrap());
    uow.commit().await.unwrap();
    all[1].issued_count = 1;
    all.sort_by_key(|c| c.id);
    let page = |after: Option<CampaignId>, limit: i64| {
        let stores = stores.clone();
        async move {
            stores
                .coupons
                .campaigns(after, limit, Consistency::Strong)
                .await
                .unwrap()
        }
    };
    assert_eq!(page(None, 10).await, all);
    assert_eq!(page(None, 2).await, all[..2].to_vec());
    assert_eq!(page(Some(all[0].id), 1).await, all[1..2].to_vec());
    assert_eq!(page(Some(all[2].id), 10).await, vec![]);
}

pub async fn coupon_slots_never_exceed_the_total_quantity_under_concurrent_claims(stores: Stores) {
    let c = stored_campaign(&stores, 10).await;
    let claims = (0..50).map(|_| {
        let db = stores.db.clone();
        tokio::spawn(async move {
            let mut uow = db.begin().await.unwrap();
            let won = uow.coupons().claim_coupon_slot(c.id).await.unwrap();
            uow.commit().await.unwrap();
            won
        })
    });
    let won = join_all(claims)
        .await
        .into_iter()
        .filter(|r| *r.as_ref().unwrap())
        .count();
    assert_eq!(won, 10);
    let stored = stores
        .coupons
        .campaign(c.id, Consistency::Strong)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stored.issued_count, stored.total_quantity), (10, 10));
    assert!(stored.is_sold_out());
}

pub async fn a_second_coupon_of_a_campaign_is_a_coupon_per_member_conflict(stores: Stores) {
    let m = stored_rider(&stores, "coupons@example.com").await;
    let spring = stored_campaign(&stores, 100).await;
    let percent = campaign(5, Discount::Percent { percent: 15 }, now());
    let mut uow = stores.db.begin().await.unwrap();
    uow.coupons().insert_campaign(&percent).await.unwrap();
    assert_eq!(
        uow.coupons().campaign_by_id(percent.id).await.unwrap(),
        Some(percent.clone())
    );
    let first = Coupon::issue(CouponId(Uuid::now_v7()), &spring, m.id, now());
    let other = Coupon::issue(
        CouponId(Uuid::now_v7()),
        &percent,
        m.id,
        now() + Duration::microseconds(1),
    );
    uow.coupons().insert_coupon(&first).await.unwrap();
    uow.coupons().insert_coupon(&other).await.unwrap();
    uow.commit().await.unwrap();

    let mut uow = stores.db.begin().await.unwrap();
    let again = Coupon::issue(CouponId(Uuid::now_v7()), &spring, m.id, now());
    assert_store_error(
        uow.coupons().insert_coupon(&again).await,
        StoreError::Conflict(Unique::CouponPerMember),
    );
    drop(uow);

    // Round trip, including a status change.
    let mut used = first.clone();
    used.use_for(m.id, OrderId(Uuid::now_v7()), now()).unwrap();
    let mut uow = stores.db.begin().await.unwrap();
    assert_eq!(uow.coupons().coupon_by_id(first.id).await.unwrap(), Some(first));
    uow.coupons().update_coupon(&used).await.unwrap();
    assert_eq!(uow.coupons().coupon_by_id(used.id).await.unwrap(), Some(used.clone()));
    uow.commit().await.unwrap();
    assert_eq!(used.status, CouponStatus::Used);
    assert_eq!(
        stores
            .coupons
            .coupons_of_member(m.id, &PageRequest::first(10), Consistency::Eventual)
            .await
            .unwrap()
            .items,
        vec![other, used]
    );
    assert_eq!(
        stores
            .coupons
            .campaign(percent.id, Consistency::Eventual)
            .await
            .unwrap(),
        Some(percent)
    );
}
