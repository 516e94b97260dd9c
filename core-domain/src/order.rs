//! Orders and their payment with points.

use std::collections::HashSet;
use std::str::FromStr;

use time::{Duration, OffsetDateTime};

use crate::catalog::Product;
use crate::coupon::Coupon;
use crate::event::{EventPayload, PaidItem};
use crate::validation::{UnknownValue, ValidationErrors, in_range};
use crate::{CouponId, Krw, MemberId, OrderId, PaymentId, ProductId};

/// Pending orders older than this are cancelled, returning stock and coupon.
pub const PENDING_ORDER_TTL: Duration = Duration::minutes(15);
pub const MAX_LINES: usize = 20;
pub const MAX_QUANTITY: i64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Pending,
    Paid,
    Cancelled,
}

impl OrderStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Paid => "paid",
            OrderStatus::Cancelled => "cancelled",
        }
    }
}

impl FromStr for OrderStatus {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(OrderStatus::Pending),
            "paid" => Ok(OrderStatus::Paid),
            "cancelled" => Ok(OrderStatus::Cancelled),
            other => Err(UnknownValue::new("order status", other)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("the order is not pending")]
    NotPending,
}

/// A validated order request: 1–20 lines, 1–100 units each, each product once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRequest {
    pub items: Vec<(ProductId, i64)>,
    pub coupon_id: Option<CouponId>,
}

impl OrderRequest {
    pub fn parse(items: Vec<(ProductId, i64)>, coupon_id: Option<CouponId>) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if items.is_empty() || items.len() > MAX_LINES {
            errors.add("items", format!("must have 1 to {MAX_LINES} lines"));
        }
        let mut seen = HashSet::new();
        for (i, (product_id, quantity)) in items.iter().enumerate() {
            errors.check(&format!("items[{i}].quantity"), in_range(*quantity, 1, MAX_QUANTITY));
            if !seen.insert(*product_id) {
                errors.add(&format!("items[{i}].product_id"), "appears more than once");
            }
        }
        errors.into_result(|| Self { items, coupon_id })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OrderLine {
    pub product_id: ProductId,
    pub product_name: String,
    pub unit_price: Krw,
    pub quantity: i64,
    pub line_total: Krw,
}

impl OrderLine {
    /// A line at the product's current price.
    pub fn of(product: &Product, quantity: i64) -> Self {
        Self {
            product_id: product.id,
            product_name: product.name.clone(),
            unit_price: product.price,
            quantity,
            line_total: product.price.saturating_mul(quantity),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Order {
    pub id: OrderId,
    pub member_id: MemberId,
    pub status: OrderStatus,
    pub items: Vec<OrderLine>,
    pub subtotal: Krw,
    pub discount: Krw,
    pub total: Krw,
    pub coupon_id: Option<CouponId>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub paid_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub cancelled_at: Option<OffsetDateTime>,
}

impl Order {
    /// Prices an order: `total = subtotal - discount >= 0`. The coupon, if any, must already
    /// have been checked and marked used by the caller ([`Coupon::use_for`]).
    pub fn place(
        id: OrderId,
        member_id: MemberId,
        items: Vec<OrderLine>,
        coupon: Option<&Coupon>,
        now: OffsetDateTime,
    ) -> Self {
        let subtotal = items.iter().fold(0, |sum: Krw, l| sum.saturating_add(l.line_total));
        let discount = coupon.map_or(0, |c| c.discount.amount_off(subtotal));
        Self {
            id,
            member_id,
            status: OrderStatus::Pending,
            items,
            subtotal,
            discount,
            total: subtotal - discount,
            coupon_id: coupon.map(|c| c.id),
            created_at: now,
            paid_at: None,
            cancelled_at: None,
        }
    }

    /// pending → paid, returning the payment and its `payment.succeeded` event.
    pub fn pay(&mut self, payment_id: PaymentId, now: OffsetDateTime) -> Result<(Payment, EventPayload), OrderError> {
        if self.status != OrderStatus::Pending {
            return Err(OrderError::NotPending);
        }
        self.status = OrderStatus::Paid;
        self.paid_at = Some(now);
        let payment = Payment {
            id: payment_id,
            order_id: self.id,
            member_id: self.member_id,
            amount: self.total,
            status: PaymentStatus::Succeeded,
            created_at: now,
        };
        let event = EventPayload::PaymentSucceeded {
            payment_id,
            order_id: self.id,
            member_id: self.member_id,
            amount: self.total,
            items: self
                .items
                .iter()
                .map(|l| PaidItem {
                    product_id: l.product_id,
                    quantity: l.quantity,
                    unit_price: l.unit_price,
                })
                .collect(),
            paid_at: now,
        };
        Ok((payment, event))
    }

    /// Pending for longer than [`PENDING_ORDER_TTL`].
    pub fn is_stale(&self, now: OffsetDateTime) -> bool {
        self.status == OrderStatus::Pending && self.created_at + PENDING_ORDER_TTL <= now
    }

    /// pending → cancelled. The caller returns stock and coupon in the same transaction.
    pub fn cancel(&mut self, now: OffsetDateTime) -> Result<(), OrderError> {
        if self.status != OrderStatus::Pending {
            return Err(OrderError::NotPending);
        }
        self.status = OrderStatus::Cancelled;
        self.cancelled_at = Some(now);
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Succeeded,
}

impl PaymentStatus {
    pub fn as_str(&self) -> &'static str {
        "succeeded"
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Payment {
    pub id: PaymentId,
    pub order_id: OrderId,
    pub member_id: MemberId,
    pub amount: Krw,
    pub status: PaymentStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::NewProduct;
    use crate::coupon::{CouponCampaign, Discount, NewCampaign};
    use crate::{CampaignId, ProductId};
    use time::macros::datetime;
    use uuid::Uuid;

    const NOW: OffsetDateTime = datetime!(2026-05-01 0:00 UTC);

    fn product(price: i64) -> Product {
        Product::create(
            ProductId(Uuid::now_v7()),
            NewProduct::parse("P", price, 10).expect("ok"),
            NOW,
        )
    }

    #[test]
    fn order_request_bounds() {
        let p = ProductId(Uuid::now_v7());
        assert!(OrderRequest::parse(vec![], None).is_err());
        assert!(OrderRequest::parse(vec![(p, 0)], None).is_err());
        assert!(OrderRequest::parse(vec![(p, 101)], None).is_err());
        assert!(OrderRequest::parse(vec![(p, 1), (p, 2)], None).is_err());
        let many: Vec<_> = (0..21).map(|_| (ProductId(Uuid::now_v7()), 1)).collect();
        assert!(OrderRequest::parse(many, None).is_err());
        assert!(OrderRequest::parse(vec![(p, 100)], None).is_ok());
    }

    #[test]
    fn a_coupon_discount_never_makes_the_total_negative() {
        let new = NewCampaign::parse("c", Discount::Fixed { amount: 50_000 }, 1, None, None).expect("ok");
        let campaign = CouponCampaign::create(CampaignId(Uuid::nil()), new, NOW);
        let coupon = Coupon::issue(crate::CouponId(Uuid::nil()), &campaign, MemberId(Uuid::nil()), NOW);
        let lines = vec![OrderLine::of(&product(1_000), 3), OrderLine::of(&product(500), 2)];
        let order = Order::place(OrderId(Uuid::nil()), MemberId(Uuid::nil()), lines, Some(&coupon), NOW);
        assert_eq!((order.subtotal, order.discount, order.total), (4_000, 4_000, 0));
    }

    #[test]
    fn paying_is_once_and_emits_the_event() {
        let lines = vec![OrderLine::of(&product(1_000), 2)];
        let mut order = Order::place(OrderId(Uuid::nil()), MemberId(Uuid::nil()), lines, None, NOW);
        let (payment, event) = order.pay(PaymentId(Uuid::nil()), NOW).expect("pending");
        assert_eq!(payment.amount, 2_000);
        assert_eq!(event.event_type(), "payment.succeeded");
        assert_eq!(order.pay(PaymentId(Uuid::nil()), NOW), Err(OrderError::NotPending));
        assert_eq!(order.cancel(NOW), Err(OrderError::NotPending));
    }

    #[test]
    fn pending_orders_go_stale_after_fifteen_minutes() {
        let order = Order::place(
            OrderId(Uuid::nil()),
            MemberId(Uuid::nil()),
            vec![OrderLine::of(&product(1), 1)],
            None,
            NOW,
        );
        assert!(!order.is_stale(NOW + Duration::minutes(14)));
        assert!(order.is_stale(NOW + PENDING_ORDER_TTL));
    }
}
