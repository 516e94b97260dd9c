//! Commerce rows: the wallet ledger, coupon campaigns and coupons, orders with their lines,
//! payments and idempotency keys; and the two columns a discount is stored in.

use std::collections::HashMap;

use core_domain::OrderId;
use core_domain::coupon::{Coupon, CouponCampaign, Discount};
use core_domain::order::{Order, OrderLine, Payment, PaymentStatus};
use core_domain::wallet::LedgerEntry;
use ports::{IdempotencyStart, StoreError};

use crate::{Columns, corrupt};

/// A `wallet_ledger` row.
///
/// # Errors
/// [`StoreError::Other`] for a column that does not decode.
pub fn ledger_entry(row: &impl Columns) -> Result<LedgerEntry, StoreError> {
    Ok(LedgerEntry {
        id: row.id("id")?,
        member_id: row.id("member_id")?,
        kind: row.parsed("kind")?,
        amount: row.int("amount")?,
        balance_after: row.int("balance_after")?,
        reference: row.opt_uuid("reference")?,
        created_at: row.time("created_at")?,
    })
}

/// A discount as two columns: `discount_kind` (`fixed` | `percent`) and `discount_value`.
pub fn discount_columns(d: &Discount) -> (&'static str, i64) {
    match *d {
        Discount::Fixed { amount } => ("fixed", amount),
        Discount::Percent { percent } => ("percent", percent),
    }
}

/// The discount stored by [`discount_columns`] in a campaign's or a coupon's row.
///
/// # Errors
/// [`StoreError::Other`] for a column that does not decode, or an unknown kind.
pub fn discount(row: &impl Columns) -> Result<Discount, StoreError> {
    let value = row.int("discount_value")?;
    match row.text("discount_kind")?.as_str() {
        "fixed" => Ok(Discount::Fixed { amount: value }),
        "percent" => Ok(Discount::Percent { percent: value }),
        other => Err(corrupt(
            "discount_kind",
            format_args!("unknown discount kind `{other}`"),
        )),
    }
}

/// A `coupon_campaigns` row.
///
/// # Errors
/// [`StoreError::Other`] for a column that does not decode.
pub fn campaign(row: &impl Columns) -> Result<CouponCampaign, StoreError> {
    Ok(CouponCampaign {
        id: row.id("id")?,
        name: row.text("name")?,
        discount: discount(row)?,
        total_quantity: row.int("total_quantity")?,
        issued_count: row.int("issued_count")?,
        starts_at: row.time("starts_at")?,
        ends_at: row.opt_time("ends_at")?,
        created_at: row.time("created_at")?,
    })
}

/// A `coupons` row.
///
/// # Errors
/// [`StoreError::Other`] for a column that does not decode.
pub fn coupon(row: &impl Columns) -> Result<Coupon, StoreError> {
    Ok(Coupon {
        id: row.id("id")?,
        campaign_id: row.id("campaign_id")?,
        member_id: row.id("member_id")?,
        status: row.parsed("status")?,
        discount: discount(row)?,
        order_id: row.opt_id("order_id")?,
        issued_at: row.time("issued_at")?,
        expires_at: row.time("expires_at")?,
    })
}

/// An `orders` row: the order without its lines (see [`attach_lines`]).
///
/// # Errors
/// [`StoreError::Other`] for a column that does not decode.
pub fn order_head(row: &impl Columns) -> Result<Order, StoreError> {
    Ok(Order {
        id: row.id("id")?,
        member_id: row.id("member_id")?,
        status: row.parsed("status")?,
        items: Vec::new(),
        subtotal: row.int("subtotal")?,
        discount: row.int("discount")?,
        total: row.int("total")?,
        coupon_id: row.opt_id("coupon_id")?,
        created_at: row.time("created_at")?,
        paid_at: row.opt_time("paid_at")?,
        cancelled_at: row.opt_time("cancelled_at")?,
    })
}

/// An `order_items` row.
///
/// # Errors
/// [`StoreError::Other`] for a column that does not decode.
pub fn order_line(row: &impl Columns) -> Result<OrderLine, StoreError> {
    Ok(OrderLine {
        product_id: row.id("product_id")?,
        product_name: row.text("product_name")?,
        unit_price: row.int("unit_price")?,
        quantity: row.int("quantity")?,
        line_total: row.int("line_total")?,
    })
}

/// Gives each of `orders` its lines from `line_rows` (`order_items` rows of any of the
/// orders, in line order within each order); an order without rows gets no lines.
///
/// # Errors
/// [`StoreError::Other`] for a column that does not decode.
pub fn attach_lines(orders: &mut [Order], line_rows: impl IntoIterator<Item = impl Columns>) -> Result<(), StoreError> {
    let mut lines: HashMap<OrderId, Vec<OrderLine>> = HashMap::new();
    for row in line_rows {
        lines.entry(row.id("order_id")?).or_default().push(order_line(&row)?);
    }
    for order in orders {
        order.items = lines.remove(&order.id).unwrap_or_default();
    }
    Ok(())
}

/// A `payments` row.
///
/// # Errors
/// [`StoreError::Other`] for a column that does not decode, or an unknown status.
pub fn payment(row: &impl Columns) -> Result<Payment, StoreError> {
    Ok(Payment {
        id: row.id("id")?,
        order_id: row.id("order_id")?,
        member_id: row.id("member_id")?,
        amount: row.int("amount")?,
        status: match row.text("status")?.as_str() {
            "succeeded" => PaymentStatus::Succeeded,
            other => return Err(corrupt("status", format_args!("unknown payment status `{other}`"))),
        },
        created_at: row.time("created_at")?,
    })
}

/// The `fingerprint` and `response` of an `idempotency_keys` row: a key used before.
///
/// # Errors
/// [`StoreError::Other`] for a column that does not decode.
pub fn idempotency_seen(row: &impl Columns) -> Result<IdempotencyStart, StoreError> {
    Ok(IdempotencyStart::Seen {
        fingerprint: row.text("fingerprint")?,
        response: row.opt_text("response")?,
    })
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::fake::Row;

    #[test]
    fn a_discount_reads_back_from_its_two_columns() {
        for d in [Discount::Fixed { amount: 3_000 }, Discount::Percent { percent: 15 }] {
            let (kind, value) = discount_columns(&d);
            let row = Row::default().with("discount_kind", kind).with("discount_value", value);
            assert_eq!(discount(&row).ok(), Some(d));
        }
        let row = Row::default().with("discount_kind", "bogof").with("discount_value", 1);
        assert!(matches!(
            discount(&row),
            Err(StoreError::Other(m)) if m == "corrupt value in column `discount_kind`: unknown discount kind `bogof`"
        ));
    }

    fn order_row(id: Uuid) -> Row {
        Row::default()
            .with("id", id)
            .with("member_id", Uuid::nil())
            .with("status", "pending")
            .with("subtotal", 0)
            .with("discount", 0)
            .with("total", 0)
            .null("coupon_id")
            .with("created_at", 0)
            .null("paid_at")
            .null("cancelled_at")
    }

    fn line_row(order: Uuid, name: &str) -> Row {
        Row::default()
            .with("order_id", order)
            .with("product_id", Uuid::nil())
            .with("product_name", name)
            .with("unit_price", 1)
            .with("quantity", 1)
            .with("line_total", 1)
    }

    #[test]
    fn lines_go_to_their_orders_in_order() {
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let mut orders: Vec<Order> = [b, a, c].map(|id| order_head(&order_row(id)).unwrap()).into();
        let lines = [line_row(a, "a1"), line_row(a, "a2"), line_row(b, "b1")];
        attach_lines(&mut orders, lines).unwrap();
        let names: Vec<Vec<&str>> = orders
            .iter()
            .map(|o| o.items.iter().map(|l| l.product_name.as_str()).collect())
            .collect();
        assert_eq!(names, [vec!["b1"], vec!["a1", "a2"], vec![]]);
    }

    #[test]
    fn an_unknown_payment_status_is_corrupt_data() {
        let row = Row::default()
            .with("id", Uuid::nil())
            .with("order_id", Uuid::nil())
            .with("member_id", Uuid::nil())
            .with("amount", 100)
            .with("status", "refunded")
            .with("created_at", 0);
        assert!(matches!(
            payment(&row),
            Err(StoreError::Other(m)) if m == "corrupt value in column `status`: unknown payment status `refunded`"
        ));
    }
}
