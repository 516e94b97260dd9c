//! First-come-first-served coupon campaigns and the coupons issued from them.
//!
//! The database is the source of truth for how many were issued: never more than
//! `total_quantity`, at most one per member per campaign. A gate (Redis or in-process)
//! sheds load in front of it but never decides alone.

use std::str::FromStr;

use time::{Duration, OffsetDateTime};

use crate::validation::{UnknownValue, ValidationErrors, in_range, text};
use crate::{CampaignId, CouponId, Krw, MemberId, OrderId};

/// A coupon of a campaign without an end date is valid this long after issue.
pub const COUPON_VALIDITY: Duration = Duration::days(30);
pub const FIXED_DISCOUNT_MAX: Krw = 10_000_000;
pub const TOTAL_QUANTITY_MAX: i64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Discount {
    Fixed { amount: Krw },
    Percent { percent: i64 },
}

impl Discount {
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        match self {
            Discount::Fixed { amount } => in_range(*amount, 1, FIXED_DISCOUNT_MAX)
                .map(drop)
                .map_err(|e| ValidationErrors::field("discount.amount", e.to_string())),
            Discount::Percent { percent } => in_range(*percent, 1, 100)
                .map(drop)
                .map_err(|e| ValidationErrors::field("discount.percent", e.to_string())),
        }
    }

    /// The amount taken off `subtotal`: never more than the subtotal, never negative.
    /// A percentage is rounded down.
    pub fn amount_off(&self, subtotal: Krw) -> Krw {
        let subtotal = subtotal.max(0);
        match *self {
            Discount::Fixed { amount } => amount.clamp(0, subtotal),
            Discount::Percent { percent } => {
                let off = i128::from(subtotal) * i128::from(percent.clamp(0, 100)) / 100;
                Krw::try_from(off).unwrap_or(subtotal).min(subtotal)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CouponError {
    #[error("the campaign has not started")]
    NotStarted,
    #[error("the campaign has ended")]
    Ended,
    #[error("the campaign is sold out")]
    SoldOut,
    #[error("the member already holds a coupon of this campaign")]
    AlreadyIssued,
    #[error("the coupon is not the member's")]
    NotOwned,
    #[error("the coupon has been used")]
    NotAvailable,
    #[error("the coupon has expired")]
    Expired,
}

/// A validated campaign creation request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCampaign {
    pub name: String,
    pub discount: Discount,
    pub total_quantity: i64,
    pub starts_at: Option<OffsetDateTime>,
    pub ends_at: Option<OffsetDateTime>,
}

impl NewCampaign {
    pub fn parse(
        name: &str,
        discount: Discount,
        total_quantity: i64,
        starts_at: Option<OffsetDateTime>,
        ends_at: Option<OffsetDateTime>,
    ) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let name = errors.check("name", text(name, 1, 100));
        if let Err(e) = discount.validate() {
            errors.merge(e);
        }
        errors.check("total_quantity", in_range(total_quantity, 1, TOTAL_QUANTITY_MAX));
        if let (Some(start), Some(end)) = (starts_at, ends_at)
            && end <= start
        {
            errors.add("ends_at", "must be after `starts_at`");
        }
        match name {
            Some(name) if errors.is_empty() => Ok(Self {
                name,
                discount,
                total_quantity,
                starts_at,
                ends_at,
            }),
            _ => Err(errors),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CouponCampaign {
    pub id: CampaignId,
    pub name: String,
    pub discount: Discount,
    pub total_quantity: i64,
    pub issued_count: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ends_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl CouponCampaign {
    pub fn create(id: CampaignId, new: NewCampaign, now: OffsetDateTime) -> Self {
        Self {
            id,
            name: new.name,
            discount: new.discount,
            total_quantity: new.total_quantity,
            issued_count: 0,
            starts_at: new.starts_at.unwrap_or(now),
            ends_at: new.ends_at,
            created_at: now,
        }
    }

    /// Whether the issue window is open at `now` (the count is the store's to check).
    pub fn check_window(&self, now: OffsetDateTime) -> Result<(), CouponError> {
        if now < self.starts_at {
            return Err(CouponError::NotStarted);
        }
        if self.ends_at.is_some_and(|end| now >= end) {
            return Err(CouponError::Ended);
        }
        Ok(())
    }

    pub fn is_sold_out(&self) -> bool {
        self.issued_count >= self.total_quantity
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CouponStatus {
    Available,
    Used,
    /// Never stored: an available coupon past its `expires_at` reads as expired.
    Expired,
}

impl CouponStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            CouponStatus::Available => "available",
            CouponStatus::Used => "used",
            CouponStatus::Expired => "expired",
        }
    }
}

impl FromStr for CouponStatus {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "available" => Ok(CouponStatus::Available),
            "used" => Ok(CouponStatus::Used),
            "expired" => Ok(CouponStatus::Expired),
            other => Err(UnknownValue::new("coupon status", other)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Coupon {
    pub id: CouponId,
    pub campaign_id: CampaignId,
    pub member_id: MemberId,
    pub status: CouponStatus,
    pub discount: Discount,
    /// The order that used it, while used.
    pub order_id: Option<OrderId>,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

impl Coupon {
    /// Issues a coupon of `campaign` to `member`. It expires with the campaign, or
    /// [`COUPON_VALIDITY`] after issue when the campaign has no end.
    pub fn issue(id: CouponId, campaign: &CouponCampaign, member_id: MemberId, now: OffsetDateTime) -> Self {
        Self {
            id,
            campaign_id: campaign.id,
            member_id,
            status: CouponStatus::Available,
            discount: campaign.discount,
            order_id: None,
            issued_at: now,
            expires_at: campaign.ends_at.unwrap_or(now + COUPON_VALIDITY),
        }
    }

    /// The status a client sees at `now`.
    pub fn status_at(&self, now: OffsetDateTime) -> CouponStatus {
        match self.status {
            CouponStatus::Available if now >= self.expires_at => CouponStatus::Expired,
            status => status,
        }
    }

    /// Marks the coupon used by `order`: it must be the member's, available and unexpired.
    pub fn use_for(&mut self, member_id: MemberId, order_id: OrderId, now: OffsetDateTime) -> Result<(), CouponError> {
        if self.member_id != member_id {
            return Err(CouponError::NotOwned);
        }
        match self.status_at(now) {
            CouponStatus::Available => {
                self.status = CouponStatus::Used;
                self.order_id = Some(order_id);
                Ok(())
            }
            CouponStatus::Expired => Err(CouponError::Expired),
            CouponStatus::Used => Err(CouponError::NotAvailable),
        }
    }

    /// Gives the coupon back when its order is cancelled.
    pub fn release(&mut self) {
        self.status = CouponStatus::Available;
        self.order_id = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;
    use uuid::Uuid;

    const NOW: OffsetDateTime = datetime!(2026-05-01 0:00 UTC);

    fn campaign(ends_at: Option<OffsetDateTime>) -> CouponCampaign {
        let new = NewCampaign::parse("Spring", Discount::Fixed { amount: 1_000 }, 2, None, ends_at).expect("valid");
        CouponCampaign::create(CampaignId(Uuid::nil()), new, NOW)
    }

    #[test]
    fn campaign_validation() {
        assert!(NewCampaign::parse("x", Discount::Percent { percent: 101 }, 1, None, None).is_err());
        assert!(NewCampaign::parse("x", Discount::Fixed { amount: 0 }, 1, None, None).is_err());
        assert!(NewCampaign::parse("x", Discount::Fixed { amount: 1 }, 0, None, None).is_err());
        assert!(NewCampaign::parse("x", Discount::Fixed { amount: 1 }, 1, Some(NOW), Some(NOW)).is_err());
    }

    #[test]
    fn issue_window() {
        let c = campaign(Some(NOW + Duration::days(1)));
        assert_eq!(c.check_window(NOW - Duration::seconds(1)), Err(CouponError::NotStarted));
        assert_eq!(c.check_window(NOW), Ok(()));
        assert_eq!(c.check_window(NOW + Duration::days(1)), Err(CouponError::Ended));
    }

    #[test]
    fn a_coupon_is_used_once_by_its_owner_before_it_expires() {
        let c = campaign(None);
        let owner = MemberId(Uuid::now_v7());
        let mut coupon = Coupon::issue(CouponId(Uuid::nil()), &c, owner, NOW);
        assert_eq!(coupon.expires_at, NOW + COUPON_VALIDITY);
        let order = OrderId(Uuid::nil());
        assert_eq!(
            coupon.use_for(MemberId(Uuid::nil()), order, NOW),
            Err(CouponError::NotOwned)
        );
        assert_eq!(
            coupon.clone().use_for(owner, order, NOW + COUPON_VALIDITY),
            Err(CouponError::Expired)
        );
        coupon.use_for(owner, order, NOW).expect("usable");
        assert_eq!(coupon.use_for(owner, order, NOW), Err(CouponError::NotAvailable));
        coupon.release();
        assert_eq!(coupon.status_at(NOW), CouponStatus::Available);
    }

    #[test]
    fn discounts() {
        assert_eq!(Discount::Fixed { amount: 1_000 }.amount_off(500), 500);
        assert_eq!(Discount::Fixed { amount: 1_000 }.amount_off(5_000), 1_000);
        assert_eq!(Discount::Percent { percent: 15 }.amount_off(999), 149);
        assert_eq!(Discount::Percent { percent: 100 }.amount_off(999), 999);
    }

    proptest! {
        #[test]
        fn a_discount_never_exceeds_the_subtotal(subtotal in 0i64..2_000_000_000, amount in 1i64..=FIXED_DISCOUNT_MAX, percent in 1i64..=100) {
            for d in [Discount::Fixed { amount }, Discount::Percent { percent }] {
                let off = d.amount_off(subtotal);
                prop_assert!(off >= 0);
                prop_assert!(off <= subtotal);
                prop_assert!(subtotal - off >= 0);
            }
            let off = Discount::Percent { percent }.amount_off(subtotal);
            prop_assert!(off * 100 <= subtotal * percent);
            prop_assert!((off + 1) * 100 > subtotal * percent);
        }
    }
}
