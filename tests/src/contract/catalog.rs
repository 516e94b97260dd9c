//! The catalogue: products and their stock, and popular products. The concurrency case runs
//! each attempt in its own unit of work on its own task and counts exact outcomes.

use futures::future::join_all;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use core_domain::catalog::{NewProduct, Product, ProductPatch};
use core_domain::order::OrderLine;
use core_domain::{PaymentId, ProductId};
use ports::Consistency;

use super::orders::{insert_orders, order};
use super::{Stores, now, stored_rider};

/// A product (not stored).
pub fn product(name: &str, price: i64, stock: i64, at: OffsetDateTime) -> Product {
    Product::create(
        ProductId(Uuid::now_v7()),
        NewProduct::parse(name, price, stock).expect("valid product"),
        at,
    )
}

pub(super) async fn stored_product(stores: &Stores, name: &str, price: i64, stock: i64) -> Product {
    let p = product(name, price, stock, now());
    let mut uow = stores.db.begin().await.unwrap();
    uow.catalog().insert(&p).await.unwrap();
    uow.commit().await.unwrap();
    p
}

pub(super) async fn stock_of(stores: &Stores, id: ProductId) -> i64 {
    stores
        .catalog
        .product(id, Consistency::Strong)
        .await
        .unwrap()
        .unwrap()
        .stock
}

pub async fn products_round_trip_and_page_by_id(stores: Stores) {
    let t0 = now() - Duration::hours(1);
    let a = product("Helmet", 30_000, 5, t0);
    let b = product("Gloves", 12_000, 0, t0 + Duration::microseconds(1));
    let mut c = product("Jacket", 99_000, 2, t0 + Duration::microseconds(2));
    let mut uow = stores.db.begin().await.unwrap();
    for p in [&c, &a, &b] {
        uow.catalog().insert(p).await.unwrap();
    }
    assert_eq!(uow.catalog().by_id(a.id).await.unwrap(), Some(a.clone()));
    c.apply(ProductPatch::parse(Some(95_000), Some(7)).unwrap(), now());
    uow.catalog().update(&c).await.unwrap();
    uow.commit().await.unwrap();

    let mut all = vec![a.clone(), b.clone(), c.clone()];
    all.sort_by_key(|p| p.id);
    let page = |after: Option<ProductId>, limit: i64| {
        let stores = stores.clone();
        async move {
            stores
                .catalog
                .products(after, limit, Consistency::Eventual)
                .await
                .unwrap()
        }
    };
    assert_eq!(page(None, 10).await, all);
    assert_eq!(page(None, 2).await, all[..2].to_vec());
    assert_eq!(page(Some(all[1].id), 10).await, all[2..].to_vec());
    assert_eq!(page(Some(all[2].id), 10).await, vec![]);
    assert_eq!(
        stores.catalog.product(c.id, Consistency::Eventual).await.unwrap(),
        Some(c)
    );
    assert_eq!(
        stores
            .catalog
            .product(ProductId(Uuid::now_v7()), Consistency::Eventual)
            .await
            .unwrap(),
        None
    );
}

pub async fn take_stock_never_goes_below_zero(stores: Stores) {
    let p = stored_product(&stores, "Helmet", 30_000, 3).await;
    let mut uow = stores.db.begin().await.unwrap();
    assert_eq!(uow.catalog().take_stock(p.id, 4).await.unwrap(), None);
    let taken = uow.catalog().take_stock(p.id, 2).await.unwrap().expect("2 of 3 taken");
    assert_eq!(
        (taken.id, taken.name.as_str(), taken.price, taken.stock),
        (p.id, "Helmet", 30_000, 1)
    );
    assert_eq!(uow.catalog().take_stock(p.id, 2).await.unwrap(), None);
    assert_eq!(
        uow.catalog().take_stock(p.id, 1).await.unwrap().map(|p| p.stock),
        Some(0)
    );
    assert_eq!(uow.catalog().take_stock(p.id, 1).await.unwrap(), None);
    assert_eq!(
        uow.catalog().take_stock(ProductId(Uuid::now_v7()), 1).await.unwrap(),
        None
    );
    uow.commit().await.unwrap();
    assert_eq!(stock_of(&stores, p.id).await, 0);

    let mut uow = stores.db.begin().await.unwrap();
    uow.catalog().return_stock(p.id, 2).await.unwrap();
    uow.commit().await.unwrap();
    assert_eq!(stock_of(&stores, p.id).await, 2);
}

pub async fn concurrent_stock_takes_succeed_exactly_as_often_as_there_is_stock(stores: Stores) {
    let p = stored_product(&stores, "Limited", 1_000, 5).await;
    let attempts = (0..20).map(|_| {
        let db = stores.db.clone();
        tokio::spawn(async move {
            let mut uow = db.begin().await.unwrap();
            let taken = uow.catalog().take_stock(p.id, 1).await.unwrap();
            uow.commit().await.unwrap();
            taken.is_some()
        })
    });
    let taken = join_all(attempts)
        .await
        .into_iter()
        .filter(|r| *r.as_ref().unwrap())
        .count();
    assert_eq!(taken, 5);
    assert_eq!(stock_of(&stores, p.id).await, 0);
}

pub async fn popular_products_rank_units_of_recently_paid_orders(stores: Stores) {
    let m = stored_rider(&stores, "popular@example.com").await;
    let t = now();
    let since = t - Duration::days(3);
    let p1 = stored_product(&stores, "P1", 1_000, 1_000).await;
    let p2 = stored_product(&stores, "P2", 1_000, 1_000).await;
    let p3 = stored_product(&stores, "P3", 1_000, 1_000).await;
    let p4 = stored_product(&stores, "P4", 1_000, 1_000).await;
    assert!(p1.id < p2.id);

    let paid = |lines: Vec<OrderLine>, paid_at: OffsetDateTime| {
        let mut o = order(m.id, lines, paid_at - Duration::minutes(1));
        o.pay(PaymentId(Uuid::now_v7()), paid_at).unwrap();
        o
    };
    let o1 = paid(
        vec![OrderLine::of(&p2, 1), OrderLine::of(&p1, 3)],
        t - Duration::hours(1),
    );
    let o2 = paid(vec![OrderLine::of(&p2, 2), OrderLine::of(&p3, 2)], since);
    let too_old = paid(vec![OrderLine::of(&p4, 50)], since - Duration::microseconds(1));
    let pending = order(m.id, vec![OrderLine::of(&p4, 10)], t);
    let mut cancelled = order(m.id, vec![OrderLine::of(&p4, 10)], t);
    cancelled.cancel(t).unwrap();
    insert_orders(&stores, &[&o1, &o2, &too_old, &pending, &cancelled]).await;

    let top = |limit| {
        let stores = stores.clone();
        async move {
            stores
                .catalog
                .popular_products(since, limit, Consistency::Eventual)
                .await
                .unwrap()
                .into_iter()
                .map(|p| (p.product.name, p.units_sold))
                .collect::<Vec<_>>()
        }
    };
    // P1 and P2 tie at 3 units: by product id.
    assert_eq!(
        top(5).await,
        [("P1".to_owned(), 3), ("P2".to_owned(), 3), ("P3".to_owned(), 2)]
    );
    assert_eq!(top(2).await, [("P1".to_owned(), 3), ("P2".to_owned(), 3)]);
    let first = stores
        .catalog
        .popular_products(since, 1, Consistency::Eventual)
        .await
        .unwrap();
    assert_eq!(first[0].product, p1);
}
