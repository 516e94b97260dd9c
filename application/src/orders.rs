//! Orders and payment with points. Placing an order takes stock atomically and uses the
//! coupon; paying debits points, marks the order paid, writes the payment and emits
//! `payment.succeeded` — all in one transaction, made retry-safe by an `Idempotency-Key`.

use core_domain::coupon::CouponError;
use core_domain::order::{Order, OrderError, OrderLine, OrderRequest, PENDING_ORDER_TTL, Payment};
use core_domain::wallet::{LedgerEntry, LedgerKind};
use core_domain::{CouponId, LedgerId, MemberId, OrderId, PaymentId, ProductId, ValidationErrors};

use async_trait::async_trait;
use ports::{Consistency, OrderKey, Page, StoreError};
use time::OffsetDateTime;

use crate::Ports;
use crate::catalog::CatalogService;
use crate::error::problem;
use crate::events::new_events;
use crate::freshness::Freshness;
use crate::idempotency::{IdempotencyError, IdempotencyKey, Keyed, Start};
use crate::jobs::{BatchJob, JobError, Progress, Recorded};

/// Why an order use case failed.
#[derive(Debug, thiserror::Error)]
pub enum OrdersError {
    /// The request's values are invalid.
    #[error(transparent)]
    Validation(#[from] ValidationErrors),
    /// The store failed or was unreachable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Order not found.
    #[error("order not found")]
    NotFound,
    /// Product … not found.
    #[error("product {0} not found")]
    ProductNotFound(ProductId),
    /// Not enough stock of product ….
    #[error("not enough stock of product {0}")]
    OutOfStock(ProductId),
    /// Coupon not found.
    #[error("coupon not found")]
    CouponNotFound,
    /// The coupon has been used.
    #[error("the coupon has been used")]
    CouponNotAvailable,
    /// The coupon has expired.
    #[error("the coupon has expired")]
    CouponExpired,
    /// The order is not pending.
    #[error("the order is not pending")]
    NotPending,
    /// Insufficient points.
    #[error("insufficient points")]
    InsufficientPoints,
    /// The Idempotency-Key was used with another request, or its request still runs.
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
    /// The member is not active.
    #[error("the member is not active")]
    MemberInactive,
}

problem!(OrdersError [Idempotency] {
    NotFound => NotFound, "order.not_found";
    ProductNotFound(_) => NotFound, "product.not_found";
    OutOfStock(_) => Conflict, "order.out_of_stock";
    CouponNotFound => NotFound, "coupon.not_found";
    CouponNotAvailable => Conflict, "coupon.not_available";
    CouponExpired => Conflict, "coupon.expired";
    NotPending => Conflict, "order.not_pending";
    InsufficientPoints => Conflict, "points.insufficient";
    MemberInactive => Conflict, "member.inactive";
});

impl From<OrderError> for OrdersError {
    fn from(e: OrderError) -> Self {
        match e {
            OrderError::NotPending => OrdersError::NotPending,
        }
    }
}

/// Orders and payment with points.
#[derive(Clone)]
pub struct OrderService {
    ports: Ports,
    freshness: Freshness,
    /// Told when stock changes, so cached product details do not show stale stock.
    catalog: CatalogService,
}

impl OrderService {
    /// The service over `ports`; stock changes are told to `catalog`'s cache.
    pub fn new(ports: Ports, catalog: CatalogService) -> Self {
        let freshness = Freshness::new(ports.consistency.clone());
        Self {
            ports,
            freshness,
            catalog,
        }
    }

    /// Places an order: stock is taken atomically per line, the coupon (own, available,
    /// unexpired) is used, and the order is priced. With a key, a retry of a placed order
    /// returns it and takes nothing again.
    #[tracing::instrument(skip(self, items, key))]
    pub async fn place(
        &self,
        member_id: MemberId,
        items: Vec<(ProductId, i64)>,
        coupon_id: Option<CouponId>,
        key: Option<&IdempotencyKey>,
    ) -> Result<Order, OrdersError> {
        let mut request = OrderRequest::parse(items, coupon_id)?;
        // One lock order for every transaction: no deadlock between two orders that share
        // products.
        request.items.sort_by_key(|(product_id, _)| *product_id);
        let now = self.ports.clock.now();
        let order_id = OrderId(self.ports.ids.new_id());
        let keyed = Keyed::new("order", member_id, key);
        let mut uow = self.ports.db.begin().await?;
        match keyed.begin(uow.as_mut()).await? {
            Start::Active => {}
            Start::Inactive => return Err(OrdersError::MemberInactive),
            Start::Replay(order) => return Ok(order),
        }
        let mut lines = Vec::with_capacity(request.items.len());
        for (product_id, quantity) in &request.items {
            let Some(product) = uow.catalog().take_stock(*product_id, *quantity).await? else {
                // Only on failure: which of the two it was.
                return Err(match uow.catalog().by_id(*product_id).await? {
                    Some(_) => OrdersError::OutOfStock(*product_id),
                    None => OrdersError::ProductNotFound(*product_id),
                });
            };
            lines.push(OrderLine::of(&product, *quantity));
        }
        let coupon = match request.coupon_id {
            None => None,
            Some(coupon_id) => {
                let mut coupon = uow
                    .coupons()
                    .coupon_by_id(coupon_id)
                    .await?
                    .ok_or(OrdersError::CouponNotFound)?;
                coupon.use_for(member_id, order_id, now).map_err(|e| match e {
                    CouponError::Expired => OrdersError::CouponExpired,
                    CouponError::NotAvailable => OrdersError::CouponNotAvailable,
                    _ => OrdersError::CouponNotFound,
                })?;
                uow.coupons().update_coupon(&coupon).await?;
                Some(coupon)
            }
        };
        let order = Order::place(order_id, member_id, lines, coupon.as_ref(), now);
        uow.orders().insert_order(&order).await?;
        keyed.complete(uow.as_mut(), &order).await?;
        let token = self.freshness.commit(uow.as_mut(), member_id).await?;
        self.catalog
            .stock_changed(&token, order.items.iter().map(|l| l.product_id).collect())
            .await;
        Ok(order)
    }

    /// One page of the member's orders, newest first.
    pub async fn list(
        &self,
        member_id: MemberId,
        after: Option<OrderKey>,
        limit: Option<i64>,
    ) -> Result<Page<Order, OrderKey>, OrdersError> {
        let page = crate::paging::page(after, limit)?;
        let consistency = self.freshness.for_member(member_id).await;
        Ok(self
            .ports
            .orders
            .orders_of_member(member_id, &page, consistency)
            .await?)
    }

    /// One of the member's orders.
    pub async fn get(&self, member_id: MemberId, order_id: OrderId) -> Result<Order, OrdersError> {
        let consistency = self.freshness.for_member(member_id).await;
        self.ports
            .orders
            .order(order_id, consistency)
            .await?
            .filter(|o| o.member_id == member_id)
            .ok_or(OrdersError::NotFound)
    }

    /// Pays a pending order of the caller with points. The same key and request replay the
    /// first response; the same key with another request is refused. A failed attempt
    /// stores nothing, so it can be retried with the same key.
    #[tracing::instrument(skip(self, key))]
    pub async fn pay(
        &self,
        member_id: MemberId,
        order_id: OrderId,
        key: &IdempotencyKey,
    ) -> Result<Payment, OrdersError> {
        let keyed = Keyed::new("payment", member_id, Some(key));
        let now = self.ports.clock.now();
        let mut uow = self.ports.db.begin().await?;
        match keyed.begin(uow.as_mut()).await? {
            Start::Active => {}
            Start::Inactive => return Err(OrdersError::MemberInactive),
            Start::Replay(payment) => return Ok(payment),
        }

        let mut order = uow
            .orders()
            .order_by_id(order_id)
            .await?
            .filter(|o| o.member_id == member_id)
            .ok_or(OrdersError::NotFound)?;
        let (payment, event) = order.pay(PaymentId(self.ports.ids.new_id()), now)?;
        let balance = uow
            .wallet()
            .debit_points(member_id, payment.amount)
            .await?
            .ok_or(OrdersError::InsufficientPoints)?;
        uow.wallet()
            .insert_ledger(&LedgerEntry {
                id: LedgerId(self.ports.ids.new_id()),
                member_id,
                kind: LedgerKind::Payment,
                amount: -payment.amount,
                balance_after: balance,
                reference: Some(payment.id.0),
                created_at: now,
            })
            .await?;
        uow.orders().update_order(&order).await?;
        uow.orders().insert_payment(&payment).await?;
        uow.events().append(&new_events(&self.ports, now, [event])).await?;
        keyed.complete(uow.as_mut(), &payment).await?;
        self.freshness.commit(uow.as_mut(), member_id).await?;
        Ok(payment)
    }
}

/// The batch that cancels pending orders older than 15 minutes, returning their stock and
/// coupon ([`crate::jobs`]).
#[derive(Clone)]
pub struct CancelStaleOrders {
    ports: Ports,
    catalog: CatalogService,
}

/// The stale-order batch's job name.
pub const STALE_ORDERS_JOB: &str = "stale-orders";

impl CancelStaleOrders {
    /// Over `ports`, telling `catalog` which products' stock it changed.
    pub fn new(ports: Ports, catalog: CatalogService) -> Self {
        Self { ports, catalog }
    }
}

#[async_trait]
impl BatchJob for CancelStaleOrders {
    type Item = OrderId;

    fn name(&self) -> &'static str {
        STALE_ORDERS_JOB
    }

    fn key(item: &OrderId) -> String {
        item.to_string()
    }

    async fn work_list(&self, after: Option<&str>, limit: i64, now: OffsetDateTime) -> Result<Vec<OrderId>, JobError> {
        let ids = self
            .ports
            .orders
            .stale_order_ids(
                now - PENDING_ORDER_TTL,
                crate::jobs::resume_after(after)?,
                limit,
                Consistency::Eventual,
            )
            .await?;
        Ok(ids)
    }

    async fn remaining(&self, after: Option<&str>, now: OffsetDateTime) -> Result<i64, JobError> {
        let count = self
            .ports
            .orders
            .count_stale_orders(
                now - PENDING_ORDER_TTL,
                crate::jobs::resume_after(after)?,
                Consistency::Eventual,
            )
            .await?;
        Ok(count)
    }

    async fn chunk(&self, ids: Vec<OrderId>, progress: Progress<'_>) -> Result<Recorded, JobError> {
        let now = self.ports.clock.now();
        let mut uow = self.ports.db.begin().await?;
        // Re-checked on the primary under their locks: paid or cancelled since, they are left.
        let stale = uow.orders().stale_orders(&ids, now - PENDING_ORDER_TTL).await?;
        for mut order in stale.iter().cloned() {
            order.cancel(now).map_err(|e| JobError::Failed(e.to_string()))?;
            for line in &order.items {
                uow.catalog().return_stock(line.product_id, line.quantity).await?;
            }
            if let Some(coupon_id) = order.coupon_id
                && let Some(mut coupon) = uow.coupons().coupon_by_id(coupon_id).await?
            {
                coupon.release();
                uow.coupons().update_coupon(&coupon).await?;
            }
            uow.orders().update_order(&order).await?;
        }
        let recorded = progress.record(uow.as_mut(), stale.len() as i64, 0).await?;
        let token = uow.commit().await?;
        self.catalog
            .stock_changed(
                &token,
                stale
                    .iter()
                    .flat_map(|o| o.items.iter().map(|l| l.product_id))
                    .collect(),
            )
            .await;
        Ok(recorded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Problem;
    use crate::testing::TestPorts;
    use core_domain::catalog::{NewProduct, Product};
    use ports::{IdempotencyRecord, IdempotencyStart};
    use time::OffsetDateTime;

    fn key(key: &str, fingerprint: &str) -> IdempotencyKey {
        IdempotencyKey::parse(key, fingerprint).expect("a valid key")
    }

    fn service(t: TestPorts) -> OrderService {
        let ports = t.build();
        OrderService::new(ports.clone(), CatalogService::new(ports, Default::default()))
    }

    fn product(stock: i64) -> Product {
        Product::create(
            ProductId(uuid::Uuid::now_v7()),
            NewProduct::parse("P", 1_000, stock).expect("ok"),
            OffsetDateTime::now_utc(),
        )
    }

    fn pending_order(member_id: MemberId, total: i64) -> Order {
        let p = product(10);
        let mut order = Order::place(
            OrderId(uuid::Uuid::now_v7()),
            member_id,
            vec![OrderLine::of(&p, 1)],
            None,
            OffsetDateTime::now_utc(),
        );
        order.total = total;
        order
    }

    #[tokio::test]
    async fn out_of_stock_aborts_the_order() {
        let mut t = TestPorts::new();
        let p = product(0);
        let id = p.id;
        t.expect_uow(move |uow| {
            crate::testing::active_member(uow);
            uow.catalog.expect_take_stock().return_once(|_, _| Ok(None));
            uow.catalog.expect_by_id().return_once(move |_| Ok(Some(p)));
            uow.orders.expect_insert_order().never();
            uow.end.expect_commit().never();
        });
        let err = service(t)
            .place(MemberId(uuid::Uuid::now_v7()), vec![(id, 1)], None, None)
            .await
            .expect_err("no stock");
        assert_eq!(err.code(), "order.out_of_stock");
    }

    #[tokio::test]
    async fn paying_debits_and_emits_in_one_transaction() {
        let mut t = TestPorts::new();
        let member_id = MemberId(uuid::Uuid::now_v7());
        let order = pending_order(member_id, 1_000);
        let order_id = order.id;
        t.expect_uow(move |uow| {
            uow.reserves_key();
            crate::testing::active_member(uow);
            uow.orders.expect_order_by_id().return_once(move |_| Ok(Some(order)));
            uow.wallet
                .expect_debit_points()
                .withf(|_, amount| *amount == 1_000)
                .return_once(|_, _| Ok(Some(500)));
            uow.wallet
                .expect_insert_ledger()
                .withf(|e| e.amount == -1_000 && e.balance_after == 500)
                .returning(|_| Ok(()));
            uow.orders
                .expect_update_order()
                .withf(|o| o.paid_at.is_some())
                .returning(|_| Ok(()));
            uow.orders.expect_insert_payment().returning(|_| Ok(()));
            uow.emits(&["payment.succeeded"]);
            uow.idempotency.expect_complete().times(1).returning(|_, _, _| Ok(()));
            uow.commits();
        });
        t.consistency.expect_remember().returning(|_, _| Ok(()));
        let payment = service(t)
            .pay(member_id, order_id, &key("key-1", "fp"))
            .await
            .expect("paid");
        assert_eq!(payment.amount, 1_000);
    }

    #[tokio::test]
    async fn a_replayed_key_returns_the_stored_payment_without_debiting() {
        let mut t = TestPorts::new();
        let member_id = MemberId(uuid::Uuid::now_v7());
        let mut order = pending_order(member_id, 1_000);
        let (payment, _) = order
            .pay(PaymentId(uuid::Uuid::now_v7()), OffsetDateTime::now_utc())
            .expect("ok");
        let stored = serde_json::to_string(&payment).expect("json");
        t.expect_uow(move |uow| {
            uow.idempotency.expect_begin().return_once(move |_, _, _| {
                Ok(IdempotencyStart::Seen(IdempotencyRecord {
                    fingerprint: "fp".into(),
                    response: Some(stored),
                }))
            });
            uow.wallet.expect_debit_points().never();
            uow.end.expect_rollback().returning(|| Ok(()));
        });
        let replay = service(t)
            .pay(member_id, order.id, &key("key-1", "fp"))
            .await
            .expect("replay");
        assert_eq!(replay, payment);
    }

    #[tokio::test]
    async fn a_reused_key_with_another_request_is_refused() {
        let mut t = TestPorts::new();
        t.expect_uow(|uow| {
            uow.idempotency.expect_begin().return_once(|_, _, _| {
                Ok(IdempotencyStart::Seen(IdempotencyRecord {
                    fingerprint: "other".into(),
                    response: Some("{}".into()),
                }))
            });
            uow.orders.expect_order_by_id().never();
        });
        let err = service(t)
            .pay(
                MemberId(uuid::Uuid::now_v7()),
                OrderId(uuid::Uuid::now_v7()),
                &key("key-1", "fp"),
            )
            .await
            .expect_err("mismatch");
        assert_eq!(err.code(), "idempotency.key_mismatch");
    }

    #[tokio::test]
    async fn insufficient_points_commit_nothing() {
        let mut t = TestPorts::new();
        let member_id = MemberId(uuid::Uuid::now_v7());
        let order = pending_order(member_id, 1_000);
        let order_id = order.id;
        t.expect_uow(move |uow| {
            uow.reserves_key();
            crate::testing::active_member(uow);
            uow.orders.expect_order_by_id().return_once(move |_| Ok(Some(order)));
            uow.wallet.expect_debit_points().return_once(|_, _| Ok(None));
            uow.events.expect_append().never();
            uow.end.expect_commit().never();
        });
        let err = service(t)
            .pay(member_id, order_id, &key("k", "fp"))
            .await
            .expect_err("poor");
        assert_eq!(err.code(), "points.insufficient");
    }

    #[tokio::test]
    async fn stale_orders_return_stock_and_drop_cached_stock() {
        let mut t = TestPorts::new();
        let order = pending_order(MemberId(uuid::Uuid::now_v7()), 1_000);
        let order_id = order.id;
        t.consistency.expect_remember().times(1).returning(|_, _| Ok(()));
        t.cache
            .expect_invalidate()
            .withf(|keys| keys.len() == 1 && keys[0].starts_with("product:"))
            .times(1)
            .returning(|_| Ok(()));
        // The work list, from a replica: the order, then nothing more.
        t.orders.expect_count_stale_orders().returning(|_, _, _| Ok(1));
        t.orders
            .expect_stale_order_ids()
            .withf(|_, after, _, consistency| after.is_none() && *consistency == Consistency::Eventual)
            .times(1)
            .return_once(move |_, _, _, _| Ok(vec![order_id]));
        t.orders
            .expect_stale_order_ids()
            .withf(move |_, after, _, _| *after == Some(order_id))
            .times(1)
            .return_once(|_, _, _, _| Ok(vec![]));
        t.jobs.expect_acquire().times(1).returning(|_, _, now, _| {
            Ok(Some(ports::JobLease {
                cursor: None,
                run_started_at: now,
            }))
        });
        t.jobs.expect_finish().times(1).returning(|_, _, _| Ok(true));
        t.expect_uow(move |uow| {
            uow.orders
                .expect_stale_orders()
                .withf(move |ids, _| ids == [order_id])
                .return_once(move |_, _| Ok(vec![order]));
            uow.catalog
                .expect_return_stock()
                .withf(|_, q| *q == 1)
                .times(1)
                .returning(|_, _| Ok(()));
            uow.orders
                .expect_update_order()
                .withf(|o| o.cancelled_at.is_some())
                .times(1)
                .returning(|_| Ok(()));
            let cursor = order_id.to_string();
            uow.jobs
                .expect_advance()
                .withf(move |p| p.job == STALE_ORDERS_JOB && p.cursor == cursor && p.done == 1 && p.failed == 0)
                .times(1)
                .returning(|_| Ok(true));
            uow.commits();
        });
        let ports = t.build();
        let catalog = CatalogService::new(ports.clone(), Default::default());
        let runner = crate::jobs::JobRunner::new(
            ports.jobs.clone(),
            ports.clock.clone(),
            "test".into(),
            crate::jobs::JobSettings::default(),
        );
        let job = CancelStaleOrders::new(ports, catalog);
        assert_eq!(
            runner.run(&job).await.expect("ok"),
            crate::jobs::RunOutcome::Finished { done: 1, failed: 0 }
        );
    }
}
