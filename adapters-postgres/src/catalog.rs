//! Catalogue SQL: products, the atomic stock take, and popular products. Stock is only ever
//! changed by single conditional statements, so concurrent orders cannot oversell.

use async_trait::async_trait;
use sqlx::PgConnection;
use time::OffsetDateTime;

use core_domain::ProductId;
use core_domain::catalog::{PopularProduct, Product};
use ports::{CatalogReads, Consistency, StoreError};
use sql_rows::catalog::{popular_product, product};

use crate::codec::{Lock, Row, lockable};
use crate::{PgStore, translate};

pub(crate) async fn insert(conn: &mut PgConnection, p: &Product) -> Result<(), StoreError> {
    sqlx::query(
        "insert into products (id, name, price, stock, created_at, updated_at) \
         values ($1, $2, $3, $4, $5, $6)",
    )
    .bind(p.id.0)
    .bind(&p.name)
    .bind(p.price)
    .bind(p.stock)
    .bind(p.created_at)
    .bind(p.updated_at)
    .execute(conn)
    .await
    .map_err(translate)?;
    Ok(())
}

pub(crate) async fn by_id(conn: &mut PgConnection, id: ProductId, lock: Lock) -> Result<Option<Product>, StoreError> {
    sqlx::query(lockable!("select * from products where id = $1", lock))
        .bind(id.0)
        .fetch_optional(conn)
        .await
        .map_err(translate)?
        .map(|row| product(&Row(&row)))
        .transpose()
}

/// By id (UUIDv7 sorts in creation order), after `after` if given.
pub(crate) async fn page(
    conn: &mut PgConnection,
    after: Option<ProductId>,
    limit: i64,
) -> Result<Vec<Product>, StoreError> {
    sqlx::query("select * from products where ($1::uuid is null or id > $1) order by id limit $2")
        .bind(after.map(|id| id.0))
        .bind(sql_rows::limit(limit))
        .fetch_all(conn)
        .await
        .map_err(translate)?
        .iter()
        .map(|row| product(&Row(row)))
        .collect()
}

pub(crate) async fn update(conn: &mut PgConnection, p: &Product) -> Result<(), StoreError> {
    let result = sqlx::query("update products set name = $2, price = $3, stock = $4, updated_at = $5 where id = $1")
        .bind(p.id.0)
        .bind(&p.name)
        .bind(p.price)
        .bind(p.stock)
        .bind(p.updated_at)
        .execute(conn)
        .await
        .map_err(translate)?;
    sql_rows::require_row(result.rows_affected(), "product", p.id)
}

/// `stock -= quantity` only if enough is left; `false` otherwise (or for an unknown product).
/// A concurrent take waits for the row lock, then re-checks the condition on the new stock.
pub(crate) async fn take_stock(conn: &mut PgConnection, id: ProductId, quantity: i64) -> Result<bool, StoreError> {
    let result =
        sqlx::query("update products set stock = stock - $2, updated_at = now() where id = $1 and stock >= $2")
            .bind(id.0)
            .bind(quantity)
            .execute(conn)
            .await
            .map_err(translate)?;
    Ok(result.rows_affected() == 1)
}

pub(crate) async fn return_stock(conn: &mut PgConnection, id: ProductId, quantity: i64) -> Result<(), StoreError> {
    let result = sqlx::query("update products set stock = stock + $2, updated_at = now() where id = $1")
        .bind(id.0)
        .bind(quantity)
        .execute(conn)
        .await
        .map_err(translate)?;
    sql_rows::require_row(result.rows_affected(), "product", id)
}

/// Units in lines of orders paid at or after `since`; most units first, ties by product id.
pub(crate) async fn popular(
    conn: &mut PgConnection,
    since: OffsetDateTime,
    limit: i64,
) -> Result<Vec<PopularProduct>, StoreError> {
    sqlx::query(
        "select p.*, sum(i.quantity)::bigint as units_sold from order_items i \
         join orders o on o.id = i.order_id \
         join products p on p.id = i.product_id \
         where o.status = 'paid' and o.paid_at >= $1 \
         group by p.id order by units_sold desc, p.id limit $2",
    )
    .bind(since)
    .bind(sql_rows::limit(limit))
    .fetch_all(conn)
    .await
    .map_err(translate)?
    .iter()
    .map(|row| popular_product(&Row(row)))
    .collect()
}

#[async_trait]
impl CatalogReads for PgStore {
    async fn product(&self, id: ProductId, consistency: Consistency) -> Result<Option<Product>, StoreError> {
        self.read(&consistency, |conn| Box::pin(by_id(conn, id, Lock::None)))
            .await
    }

    async fn products(
        &self,
        after: Option<ProductId>,
        limit: i64,
        consistency: Consistency,
    ) -> Result<Vec<Product>, StoreError> {
        self.read(&consistency, |conn| Box::pin(page(conn, after, limit))).await
    }

    async fn popular_products(
        &self,
        since: OffsetDateTime,
        limit: i64,
        consistency: Consistency,
    ) -> Result<Vec<PopularProduct>, StoreError> {
        self.read(&consistency, |conn| Box::pin(popular(conn, since, limit)))
            .await
    }
}
