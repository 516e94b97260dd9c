//! Orders with their lines, and payments. An order and its lines are written and read
//! together; a list of orders reads its lines in one more statement, whatever its length.

use std::collections::HashMap;

use async_trait::async_trait;
use time::OffsetDateTime;

use core_domain::order::{Order, OrderLine, Payment, PaymentStatus};
use core_domain::{MemberId, OrderId};
use ports::{Consistency, OrderKey, OrderReads, OrderWrites, Page, PageRequest, StoreError, TimeKey};

use crate::SqlUnitOfWork;
use crate::backend::Backend;
use crate::sql::{Lock, SqlConn, Statement, sql};
use crate::{Columns, SqlStore, corrupt};

/// An `orders` row: the order without its lines (its lines are read with it by every order query).
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

/// Runs `heads` (a select of `orders` rows) and gives each order its lines, in the rows'
/// order.
async fn with_lines(conn: &mut impl SqlConn, heads: Statement<'_>) -> Result<Vec<Order>, StoreError> {
    let mut orders = heads.fetch_all(&mut *conn, order_head).await?;
    if orders.is_empty() {
        return Ok(orders);
    }
    let ids: Vec<OrderId> = orders.iter().map(|o| o.id).collect();
    let lines = lines_statement(&ids)
        .fetch_all(conn, |row| Ok((row.id::<OrderId>("order_id")?, order_line(row)?)))
        .await?;
    attach_lines(&mut orders, lines);
    Ok(orders)
}

/// The lines of the orders `ids` (not empty), for [`order_line`].
pub(crate) fn lines_statement(ids: &[OrderId]) -> Statement<'_> {
    sql("select * from order_items where order_id in (?) order by order_id, line_no").ids(ids)
}

/// Gives each of `orders` its `lines` (of any of the orders, in line order within each
/// order); an order without lines gets none.
fn attach_lines(orders: &mut [Order], lines: Vec<(OrderId, OrderLine)>) {
    let mut by_order: HashMap<OrderId, Vec<OrderLine>> = HashMap::new();
    for (order_id, line) in lines {
        by_order.entry(order_id).or_default().push(line);
    }
    for order in orders {
        order.items = by_order.remove(&order.id).unwrap_or_default();
    }
}

pub(crate) async fn insert_order(conn: &mut impl SqlConn, o: &Order) -> Result<(), StoreError> {
    sql(
        "insert into orders (id, member_id, status, subtotal, discount, total, coupon_id, \
         paid_at, cancelled_at, created_at, updated_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .id(o.id)
    .id(o.member_id)
    .text(o.status.as_str())
    .int(o.subtotal)
    .int(o.discount)
    .int(o.total)
    .opt_id(o.coupon_id)
    .opt_time(o.paid_at)
    .opt_time(o.cancelled_at)
    .time(o.created_at)
    .time(o.created_at)
    .defer(&mut *conn, None)
    .await?;
    for (line_no, line) in (1_i64..).zip(&o.items) {
        sql(
            "insert into order_items (order_id, line_no, product_id, product_name, unit_price, \
             quantity, line_total) values (?, ?, ?, ?, ?, ?, ?)",
        )
        .id(o.id)
        .int(line_no)
        .id(line.product_id)
        .text(&line.product_name)
        .int(line.unit_price)
        .int(line.quantity)
        .int(line.line_total)
        .defer(&mut *conn, None)
        .await?;
    }
    Ok(())
}

/// The order with its lines, in one statement: an order has at least one line (the domain
/// refuses an empty one), so the inner join returns it whole, one row per line; `lock`
/// locks the lines with the order.
pub(crate) async fn order_by_id(conn: &mut impl SqlConn, id: OrderId, lock: Lock) -> Result<Option<Order>, StoreError> {
    let rows = sql(
        "select o.*, i.line_no, i.product_id, i.product_name, i.unit_price, i.quantity, i.line_total \
                    from orders o join order_items i on i.order_id = o.id where o.id = ? order by i.line_no {lock}",
    )
    .id(id)
    .lock(lock)
    .fetch_all(conn, |row| Ok((order_head(row)?, order_line(row)?)))
    .await?;
    let mut rows = rows.into_iter();
    Ok(rows.next().map(|(mut order, first)| {
        order.items = std::iter::once(first).chain(rows.map(|(_, line)| line)).collect();
        order
    }))
}

/// Saves status, `paid_at` and `cancelled_at`.
pub(crate) async fn update_order(conn: &mut impl SqlConn, o: &Order) -> Result<(), StoreError> {
    sql("update orders set status = ?, paid_at = ?, cancelled_at = ?, updated_at = ? where id = ?")
        .text(o.status.as_str())
        .opt_time(o.paid_at)
        .opt_time(o.cancelled_at)
        .time(OffsetDateTime::now_utc())
        .id(o.id)
        .defer(conn, Some(format!("order {}", o.id)))
        .await
}

/// The member's orders without their lines, newest first, for [`order_head`].
/// The heads of one page of the member's orders, newest first, with one row more than the
/// page to tell whether another follows.
pub(crate) fn orders_of_member_statement<'a>(member_id: MemberId, page: &PageRequest<OrderKey>) -> Statement<'a> {
    sql(
        "select * from orders where member_id = ? and (created_at < ? or (created_at = ? and id < ?)) \
         order by created_at desc, id desc limit ?",
    )
    .id(member_id)
    .before_id_key(page.after.as_ref())
    .limit(page.probe())
}

/// One page, newest first.
pub(crate) async fn orders_of_member(
    conn: &mut impl SqlConn,
    member_id: MemberId,
    page: &PageRequest<OrderKey>,
) -> Result<Page<Order, OrderKey>, StoreError> {
    let orders = with_lines(conn, orders_of_member_statement(member_id, page)).await?;
    Ok(Page::keyed(orders, page, |o| TimeKey {
        at: o.created_at,
        tie: o.id,
    }))
}

/// Of the orders `ids`, those still pending and created at or before `created_before`,
/// locked, by id.
pub(crate) async fn stale_orders(
    conn: &mut impl SqlConn,
    ids: &[OrderId],
    created_before: OffsetDateTime,
) -> Result<Vec<Order>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let heads = sql(
        "select * from orders where id in (?) and status = 'pending' and created_at <= ? \
                     order by id {lock}",
    )
    .ids(ids)
    .time(created_before)
    .lock(Lock::ForUpdate);
    with_lines(conn, heads).await
}

pub(crate) async fn insert_payment(conn: &mut impl SqlConn, p: &Payment) -> Result<(), StoreError> {
    sql(
        "insert into payments (id, order_id, member_id, amount, status, created_at, updated_at) \
         values (?, ?, ?, ?, ?, ?, ?)",
    )
    .id(p.id)
    .id(p.order_id)
    .id(p.member_id)
    .int(p.amount)
    .text(p.status.as_str())
    .time(p.created_at)
    .time(p.created_at)
    .defer(conn, None)
    .await
}

pub(crate) async fn payment_of_order(
    conn: &mut impl SqlConn,
    order_id: OrderId,
) -> Result<Option<Payment>, StoreError> {
    sql("select * from payments where order_id = ?")
        .id(order_id)
        .fetch_optional(conn, payment)
        .await
}

#[async_trait]
impl<B: Backend> OrderWrites for SqlUnitOfWork<B> {
    async fn insert_order(&mut self, order: &Order) -> Result<(), StoreError> {
        let result = insert_order(&mut self.conn()?, order).await;
        self.track(result)
    }

    async fn order_by_id(&mut self, id: OrderId) -> Result<Option<Order>, StoreError> {
        let result = order_by_id(&mut self.conn()?, id, Lock::ForUpdate).await;
        self.track(result)
    }

    async fn update_order(&mut self, order: &Order) -> Result<(), StoreError> {
        let result = update_order(&mut self.conn()?, order).await;
        self.track(result)
    }

    async fn stale_orders(
        &mut self,
        ids: &[OrderId],
        created_before: OffsetDateTime,
    ) -> Result<Vec<Order>, StoreError> {
        let result = stale_orders(&mut self.conn()?, ids, created_before).await;
        self.track(result)
    }

    async fn insert_payment(&mut self, payment: &Payment) -> Result<(), StoreError> {
        let result = insert_payment(&mut self.conn()?, payment).await;
        self.track(result)
    }
}

#[async_trait]
impl<B: Backend> OrderReads for SqlStore<B> {
    async fn stale_order_ids(
        &self,
        created_before: OffsetDateTime,
        after: Option<OrderId>,
        limit: i64,
        consistency: Consistency,
    ) -> Result<Vec<OrderId>, StoreError> {
        self.read(
            &consistency,
            (created_before, after, limit),
            |conn, &(before, after, limit)| {
                Box::pin(
                    sql(
                        "select id from orders where status = 'pending' and created_at <= ? and id > ? \
                     order by id limit ?",
                    )
                    .time(before)
                    .after_id(after)
                    .limit(limit)
                    .fetch_all(conn, |row| row.id("id")),
                )
            },
        )
        .await
    }

    async fn count_stale_orders(
        &self,
        created_before: OffsetDateTime,
        after: Option<OrderId>,
        consistency: Consistency,
    ) -> Result<i64, StoreError> {
        self.read(&consistency, (created_before, after), |conn, &(before, after)| {
            Box::pin(
                sql("select count(*) as n from orders where status = 'pending' and created_at <= ? and id > ?")
                    .time(before)
                    .after_id(after)
                    .fetch_one(conn, |row| row.int("n")),
            )
        })
        .await
    }

    async fn order(&self, id: OrderId, consistency: Consistency) -> Result<Option<Order>, StoreError> {
        self.read(&consistency, id, |conn, &id| {
            Box::pin(order_by_id(conn, id, Lock::None))
        })
        .await
    }

    async fn orders_of_member(
        &self,
        member_id: MemberId,
        page: &PageRequest<OrderKey>,
        consistency: Consistency,
    ) -> Result<Page<Order, OrderKey>, StoreError> {
        self.read(&consistency, (member_id, page.clone()), |conn, (member_id, page)| {
            Box::pin(orders_of_member(conn, *member_id, page))
        })
        .await
    }

    async fn payment_of_order(
        &self,
        order_id: OrderId,
        consistency: Consistency,
    ) -> Result<Option<Payment>, StoreError> {
        self.read(&consistency, order_id, |conn, &order_id| {
            Box::pin(payment_of_order(conn, order_id))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::fake::Row;

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

    fn line(order: Uuid, name: &str) -> (OrderId, OrderLine) {
        let row = Row::default()
            .with("order_id", order)
            .with("product_id", Uuid::nil())
            .with("product_name", name)
            .with("unit_price", 1)
            .with("quantity", 1)
            .with("line_total", 1);
        (OrderId(order), order_line(&row).unwrap())
    }

    #[test]
    fn lines_go_to_their_orders_in_order() {
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let mut orders: Vec<Order> = [b, a, c].map(|id| order_head(&order_row(id)).unwrap()).into();
        let lines = vec![line(a, "a1"), line(a, "a2"), line(b, "b1")];
        attach_lines(&mut orders, lines);
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
