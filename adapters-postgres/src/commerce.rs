//! Commerce SQL: point wallets and their ledger, coupon campaigns and coupons, orders with
//! their lines, payments and idempotency keys. Balances and coupon counts change only in
//! single conditional statements, so their bounds hold under any concurrency.

use async_trait::async_trait;
use sqlx::PgConnection;
use sqlx::postgres::PgRow;
use time::OffsetDateTime;
use uuid::Uuid;

use core_domain::coupon::{Coupon, CouponCampaign};
use core_domain::order::{Order, Payment};
use core_domain::wallet::LedgerEntry;
use core_domain::{CampaignId, CouponId, Krw, MemberId, OrderId};
use ports::{CommerceReads, Consistency, IdempotencyStart, StoreError};
use sql_rows::commerce::{
    attach_lines, campaign, coupon, discount_columns, idempotency_seen, ledger_entry, order_head, payment,
};

use crate::codec::{Lock, Row, lockable};
use crate::{PgStore, translate};

// --- wallet ----------------------------------------------------------------------------

/// Adds `amount` if the balance stays `<= max_balance`, creating the wallet at 0 first. A
/// concurrent credit waits for the row lock and re-checks the bound on the new balance.
pub(crate) async fn credit_points(
    conn: &mut PgConnection,
    member_id: MemberId,
    amount: Krw,
    max_balance: Krw,
) -> Result<Option<Krw>, StoreError> {
    sqlx::query(
        "insert into wallets (member_id, balance, created_at, updated_at) values ($1, 0, now(), now()) \
         on conflict (member_id) do nothing",
    )
    .bind(member_id.0)
    .execute(&mut *conn)
    .await
    .map_err(translate)?;
    sqlx::query_scalar(
        "update wallets set balance = balance + $1, updated_at = now() \
         where member_id = $2 and balance + $1 <= $3 returning balance",
    )
    .bind(amount)
    .bind(member_id.0)
    .bind(max_balance)
    .fetch_optional(conn)
    .await
    .map_err(translate)
}

/// Takes `amount` if the balance stays `>= 0`; `None` otherwise or without a wallet.
pub(crate) async fn debit_points(
    conn: &mut PgConnection,
    member_id: MemberId,
    amount: Krw,
) -> Result<Option<Krw>, StoreError> {
    sqlx::query_scalar(
        "update wallets set balance = balance - $1, updated_at = now() \
         where member_id = $2 and balance >= $1 returning balance",
    )
    .bind(amount)
    .bind(member_id.0)
    .fetch_optional(conn)
    .await
    .map_err(translate)
}

pub(crate) async fn balance(conn: &mut PgConnection, member_id: MemberId) -> Result<Krw, StoreError> {
    let balance: Option<i64> = sqlx::query_scalar("select balance from wallets where member_id = $1")
        .bind(member_id.0)
        .fetch_optional(conn)
        .await
        .map_err(translate)?;
    Ok(balance.unwrap_or(0))
}

pub(crate) async fn insert_ledger(conn: &mut PgConnection, e: &LedgerEntry) -> Result<(), StoreError> {
    sqlx::query(
        "insert into wallet_ledger (id, member_id, kind, amount, balance_after, reference, \
         created_at) values ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(e.id.0)
    .bind(e.member_id.0)
    .bind(e.kind.as_str())
    .bind(e.amount)
    .bind(e.balance_after)
    .bind(e.reference)
    .bind(e.created_at)
    .execute(conn)
    .await
    .map_err(translate)?;
    Ok(())
}

/// Newest first (rows of the same instant: last inserted first).
pub(crate) async fn ledger(
    conn: &mut PgConnection,
    member_id: MemberId,
    limit: i64,
) -> Result<Vec<LedgerEntry>, StoreError> {
    sqlx::query(
        "select * from wallet_ledger where member_id = $1 \
         order by created_at desc, seq desc limit $2",
    )
    .bind(member_id.0)
    .bind(sql_rows::limit(limit))
    .fetch_all(conn)
    .await
    .map_err(translate)?
    .iter()
    .map(|row| ledger_entry(&Row(row)))
    .collect()
}

// --- coupons ---------------------------------------------------------------------------

pub(crate) async fn insert_campaign(conn: &mut PgConnection, c: &CouponCampaign) -> Result<(), StoreError> {
    let (kind, value) = discount_columns(&c.discount);
    sqlx::query(
        "insert into coupon_campaigns (id, name, discount_kind, discount_value, total_quantity, \
         issued_count, starts_at, ends_at, created_at, updated_at) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
    )
    .bind(c.id.0)
    .bind(&c.name)
    .bind(kind)
    .bind(value)
    .bind(c.total_quantity)
    .bind(c.issued_count)
    .bind(c.starts_at)
    .bind(c.ends_at)
    .bind(c.created_at)
    .execute(conn)
    .await
    .map_err(translate)?;
    Ok(())
}

pub(crate) async fn campaign_by_id(
    conn: &mut PgConnection,
    id: CampaignId,
    lock: Lock,
) -> Result<Option<CouponCampaign>, StoreError> {
    sqlx::query(lockable!("select * from coupon_campaigns where id = $1", lock))
        .bind(id.0)
        .fetch_optional(conn)
        .await
        .map_err(translate)?
        .map(|row| campaign(&Row(&row)))
        .transpose()
}

/// `issued_count += 1` only while below `total_quantity`; `false` when sold out.
pub(crate) async fn claim_coupon_slot(conn: &mut PgConnection, id: CampaignId) -> Result<bool, StoreError> {
    let result = sqlx::query(
        "update coupon_campaigns set issued_count = issued_count + 1, updated_at = now() \
         where id = $1 and issued_count < total_quantity",
    )
    .bind(id.0)
    .execute(conn)
    .await
    .map_err(translate)?;
    Ok(result.rows_affected() == 1)
}

/// Conflict: [`ports::Unique::CouponPerMember`].
pub(crate) async fn insert_coupon(conn: &mut PgConnection, c: &Coupon) -> Result<(), StoreError> {
    let (kind, value) = discount_columns(&c.discount);
    sqlx::query(
        "insert into coupons (id, campaign_id, member_id, status, discount_kind, discount_value, \
         order_id, issued_at, expires_at, created_at, updated_at) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $8, $8)",
    )
    .bind(c.id.0)
    .bind(c.campaign_id.0)
    .bind(c.member_id.0)
    .bind(c.status.as_str())
    .bind(kind)
    .bind(value)
    .bind(c.order_id.map(|id| id.0))
    .bind(c.issued_at)
    .bind(c.expires_at)
    .execute(conn)
    .await
    .map_err(translate)?;
    Ok(())
}

pub(crate) async fn coupon_by_id(
    conn: &mut PgConnection,
    id: CouponId,
    lock: Lock,
) -> Result<Option<Coupon>, StoreError> {
    sqlx::query(lockable!("select * from coupons where id = $1", lock))
        .bind(id.0)
        .fetch_optional(conn)
        .await
        .map_err(translate)?
        .map(|row| coupon(&Row(&row)))
        .transpose()
}

/// Saves status, order and expiry (the discount and owner never change after issue).
pub(crate) async fn update_coupon(conn: &mut PgConnection, c: &Coupon) -> Result<(), StoreError> {
    let result = sqlx::query(
        "update coupons set status = $2, order_id = $3, expires_at = $4, updated_at = now() \
         where id = $1",
    )
    .bind(c.id.0)
    .bind(c.status.as_str())
    .bind(c.order_id.map(|id| id.0))
    .bind(c.expires_at)
    .execute(conn)
    .await
    .map_err(translate)?;
    sql_rows::require_row(result.rows_affected(), "coupon", c.id)
}

/// Newest first.
pub(crate) async fn coupons_of_member(conn: &mut PgConnection, member_id: MemberId) -> Result<Vec<Coupon>, StoreError> {
    sqlx::query("select * from coupons where member_id = $1 order by issued_at desc, id desc")
        .bind(member_id.0)
        .fetch_all(conn)
        .await
        .map_err(translate)?
        .iter()
        .map(|row| coupon(&Row(row)))
        .collect()
}

// --- orders and payments ---------------------------------------------------------------

/// Order rows → orders with their lines (in placement order), in the rows' order. Two
/// queries whatever the number of orders.
async fn with_lines(conn: &mut PgConnection, rows: &[PgRow]) -> Result<Vec<Order>, StoreError> {
    let mut orders = rows
        .iter()
        .map(|row| order_head(&Row(row)))
        .collect::<Result<Vec<_>, _>>()?;
    if orders.is_empty() {
        return Ok(orders);
    }
    let ids: Vec<Uuid> = orders.iter().map(|o| o.id.0).collect();
    let line_rows = sqlx::query("select * from order_items where order_id = any($1) order by order_id, line_no")
        .bind(ids)
        .fetch_all(conn)
        .await
        .map_err(translate)?;
    attach_lines(&mut orders, line_rows.iter().map(Row))?;
    Ok(orders)
}

pub(crate) async fn insert_order(conn: &mut PgConnection, o: &Order) -> Result<(), StoreError> {
    sqlx::query(
        "insert into orders (id, member_id, status, subtotal, discount, total, coupon_id, \
         paid_at, cancelled_at, created_at, updated_at) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
    )
    .bind(o.id.0)
    .bind(o.member_id.0)
    .bind(o.status.as_str())
    .bind(o.subtotal)
    .bind(o.discount)
    .bind(o.total)
    .bind(o.coupon_id.map(|id| id.0))
    .bind(o.paid_at)
    .bind(o.cancelled_at)
    .bind(o.created_at)
    .execute(&mut *conn)
    .await
    .map_err(translate)?;
    for (line_no, line) in (1_i64..).zip(&o.items) {
        sqlx::query(
            "insert into order_items (order_id, line_no, product_id, product_name, unit_price, \
             quantity, line_total) values ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(o.id.0)
        .bind(line_no)
        .bind(line.product_id.0)
        .bind(&line.product_name)
        .bind(line.unit_price)
        .bind(line.quantity)
        .bind(line.line_total)
        .execute(&mut *conn)
        .await
        .map_err(translate)?;
    }
    Ok(())
}

pub(crate) async fn order_by_id(conn: &mut PgConnection, id: OrderId, lock: Lock) -> Result<Option<Order>, StoreError> {
    let rows = sqlx::query(lockable!("select * from orders where id = $1", lock))
        .bind(id.0)
        .fetch_all(&mut *conn)
        .await
        .map_err(translate)?;
    Ok(with_lines(conn, &rows).await?.pop())
}

/// Saves status, `paid_at` and `cancelled_at`.
pub(crate) async fn update_order(conn: &mut PgConnection, o: &Order) -> Result<(), StoreError> {
    let result = sqlx::query(
        "update orders set status = $2, paid_at = $3, cancelled_at = $4, updated_at = now() \
         where id = $1",
    )
    .bind(o.id.0)
    .bind(o.status.as_str())
    .bind(o.paid_at)
    .bind(o.cancelled_at)
    .execute(conn)
    .await
    .map_err(translate)?;
    sql_rows::require_row(result.rows_affected(), "order", o.id)
}

/// Newest first.
pub(crate) async fn orders_of_member(
    conn: &mut PgConnection,
    member_id: MemberId,
    limit: i64,
) -> Result<Vec<Order>, StoreError> {
    let rows = sqlx::query("select * from orders where member_id = $1 order by created_at desc, id desc limit $2")
        .bind(member_id.0)
        .bind(sql_rows::limit(limit))
        .fetch_all(&mut *conn)
        .await
        .map_err(translate)?;
    with_lines(conn, &rows).await
}

/// Pending orders created at or before `created_before`, oldest first, locked; rows another
/// transaction holds (a payment in flight, another instance's job) are skipped, not waited for.
pub(crate) async fn stale_orders(
    conn: &mut PgConnection,
    created_before: OffsetDateTime,
    limit: i64,
) -> Result<Vec<Order>, StoreError> {
    let rows = sqlx::query(
        "select * from orders where status = 'pending' and created_at <= $1 \
         order by created_at, id limit $2 for no key update skip locked",
    )
    .bind(created_before)
    .bind(sql_rows::limit(limit))
    .fetch_all(&mut *conn)
    .await
    .map_err(translate)?;
    with_lines(conn, &rows).await
}

pub(crate) async fn insert_payment(conn: &mut PgConnection, p: &Payment) -> Result<(), StoreError> {
    sqlx::query(
        "insert into payments (id, order_id, member_id, amount, status, created_at, updated_at) \
         values ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(p.id.0)
    .bind(p.order_id.0)
    .bind(p.member_id.0)
    .bind(p.amount)
    .bind(p.status.as_str())
    .bind(p.created_at)
    .execute(conn)
    .await
    .map_err(translate)?;
    Ok(())
}

pub(crate) async fn payment_of_order(
    conn: &mut PgConnection,
    order_id: OrderId,
) -> Result<Option<Payment>, StoreError> {
    sqlx::query("select * from payments where order_id = $1")
        .bind(order_id.0)
        .fetch_optional(conn)
        .await
        .map_err(translate)?
        .map(|row| payment(&Row(&row)))
        .transpose()
}

// --- idempotency -----------------------------------------------------------------------

/// Insert-or-ignore, then read: the row is either ours (new) or an earlier request's. An
/// insert of a key another open transaction has inserted waits for it to end: after its
/// commit this reads its row, after its rollback the key is ours.
pub(crate) async fn begin_idempotent(
    conn: &mut PgConnection,
    scope: &str,
    key: &str,
    fingerprint: &str,
) -> Result<IdempotencyStart, StoreError> {
    let inserted = sqlx::query(
        "insert into idempotency_keys (scope, key, fingerprint, response, created_at, updated_at) \
         values ($1, $2, $3, null, now(), now()) on conflict (scope, key) do nothing",
    )
    .bind(scope)
    .bind(key)
    .bind(fingerprint)
    .execute(&mut *conn)
    .await
    .map_err(translate)?;
    if inserted.rows_affected() == 1 {
        return Ok(IdempotencyStart::New);
    }
    let row = sqlx::query("select fingerprint, response from idempotency_keys where scope = $1 and key = $2")
        .bind(scope)
        .bind(key)
        .fetch_one(conn)
        .await
        .map_err(translate)?;
    idempotency_seen(&Row(&row))
}

pub(crate) async fn complete_idempotent(
    conn: &mut PgConnection,
    scope: &str,
    key: &str,
    response: &str,
) -> Result<(), StoreError> {
    let result =
        sqlx::query("update idempotency_keys set response = $3, updated_at = now() where scope = $1 and key = $2")
            .bind(scope)
            .bind(key)
            .bind(response)
            .execute(conn)
            .await
            .map_err(translate)?;
    sql_rows::require_row(result.rows_affected(), "idempotency key", format_args!("{scope}/{key}"))
}

#[async_trait]
impl CommerceReads for PgStore {
    async fn balance(&self, member_id: MemberId, consistency: Consistency) -> Result<Krw, StoreError> {
        self.read(&consistency, |conn| Box::pin(balance(conn, member_id))).await
    }

    async fn ledger(
        &self,
        member_id: MemberId,
        limit: i64,
        consistency: Consistency,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        self.read(&consistency, |conn| Box::pin(ledger(conn, member_id, limit)))
            .await
    }

    async fn campaign(&self, id: CampaignId, consistency: Consistency) -> Result<Option<CouponCampaign>, StoreError> {
        self.read(&consistency, |conn| Box::pin(campaign_by_id(conn, id, Lock::None)))
            .await
    }

    async fn coupons_of_member(
        &self,
        member_id: MemberId,
        consistency: Consistency,
    ) -> Result<Vec<Coupon>, StoreError> {
        self.read(&consistency, |conn| Box::pin(coupons_of_member(conn, member_id)))
            .await
    }

    async fn order(&self, id: OrderId, consistency: Consistency) -> Result<Option<Order>, StoreError> {
        self.read(&consistency, |conn| Box::pin(order_by_id(conn, id, Lock::None)))
            .await
    }

    async fn orders_of_member(
        &self,
        member_id: MemberId,
        limit: i64,
        consistency: Consistency,
    ) -> Result<Vec<Order>, StoreError> {
        self.read(&consistency, |conn| Box::pin(orders_of_member(conn, member_id, limit)))
            .await
    }

    async fn payment_of_order(
        &self,
        order_id: OrderId,
        consistency: Consistency,
    ) -> Result<Option<Payment>, StoreError> {
        self.read(&consistency, |conn| Box::pin(payment_of_order(conn, order_id)))
            .await
    }
}
