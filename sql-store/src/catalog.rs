//! Catalogue: products, the atomic stock take, and popular products. Stock is only ever
//! changed by single conditional statements, so concurrent orders cannot oversell.

use async_trait::async_trait;
use time::OffsetDateTime;

use core_domain::ProductId;
use core_domain::catalog::{PopularProduct, Product};
use ports::{CatalogReads, CatalogWrites, Consistency, StoreError};

use crate::SqlUnitOfWork;
use crate::backend::Backend;
use crate::sql::{Lock, SqlConn, Statement, sql};
use crate::{Columns, SqlStore, require_row};

/// A `products` row.
///
/// # Errors
/// [`StoreError::Other`] for a column that does not decode.
pub fn product(row: &impl Columns) -> Result<Product, StoreError> {
    Ok(Product {
        id: row.id("id")?,
        name: row.text("name")?,
        price: row.int("price")?,
        stock: row.int("stock")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

/// A `products` row with its `units_sold` (a 64-bit sum).
///
/// # Errors
/// [`StoreError::Other`] for a column that does not decode.
pub fn popular_product(row: &impl Columns) -> Result<PopularProduct, StoreError> {
    Ok(PopularProduct {
        product: product(row)?,
        units_sold: row.int("units_sold")?,
    })
}

pub(crate) async fn insert(conn: &mut impl SqlConn, p: &Product) -> Result<(), StoreError> {
    sql("insert into products (id, name, price, stock, created_at, updated_at) values (?, ?, ?, ?, ?, ?)")
        .id(p.id)
        .text(&p.name)
        .int(p.price)
        .int(p.stock)
        .time(p.created_at)
        .time(p.updated_at)
        .execute(conn)
        .await?;
    Ok(())
}

pub(crate) async fn by_id(conn: &mut impl SqlConn, id: ProductId, lock: Lock) -> Result<Option<Product>, StoreError> {
    by_id_statement(id, lock).fetch_optional(conn, product).await
}

fn by_id_statement<'a>(id: ProductId, lock: Lock) -> Statement<'a> {
    sql("select * from products where id = ? {lock}").id(id).lock(lock)
}

/// By id (UUIDv7 sorts in creation order), after `after` if given.
pub(crate) async fn page(
    conn: &mut impl SqlConn,
    after: Option<ProductId>,
    limit: i64,
) -> Result<Vec<Product>, StoreError> {
    let statement = match after {
        Some(after) => sql("select * from products where id > ? order by id limit ?").id(after),
        None => sql("select * from products order by id limit ?"),
    };
    statement.limit(limit).fetch_all(conn, product).await
}

pub(crate) async fn update(conn: &mut impl SqlConn, p: &Product) -> Result<(), StoreError> {
    let changed = sql("update products set name = ?, price = ?, stock = ?, updated_at = ? where id = ?")
        .text(&p.name)
        .int(p.price)
        .int(p.stock)
        .time(p.updated_at)
        .id(p.id)
        .execute(conn)
        .await?;
    require_row(changed, "product", p.id)
}

/// `stock -= quantity` only if enough is left: the product as the take left it, or `None`
/// when there is not enough (or no such product). A concurrent take waits for the row lock,
/// then re-checks the condition on the new stock.
pub(crate) async fn take_stock(
    conn: &mut impl SqlConn,
    id: ProductId,
    quantity: i64,
) -> Result<Option<Product>, StoreError> {
    sql("update products set stock = stock - ?, updated_at = ? where id = ? and stock >= ?")
        .int(quantity)
        .time(OffsetDateTime::now_utc())
        .id(id)
        .int(quantity)
        .update_returning(conn, "*", by_id_statement(id, Lock::None), product)
        .await
}

pub(crate) async fn return_stock(conn: &mut impl SqlConn, id: ProductId, quantity: i64) -> Result<(), StoreError> {
    let changed = sql("update products set stock = stock + ?, updated_at = ? where id = ?")
        .int(quantity)
        .time(OffsetDateTime::now_utc())
        .id(id)
        .execute(conn)
        .await?;
    require_row(changed, "product", id)
}

/// Units in lines of orders paid at or after `since`; most units first, ties by product id.
/// (`sum` of a `bigint` is a `numeric` in PostgreSQL: the cast keeps it a 64-bit integer.)
/// The sums are grouped by the lines' product id alone and joined to the products after:
/// `group by p.id` with `p.*` selected relies on the primary key's functional dependency,
/// which PostgreSQL and MySQL 8 see and MariaDB's `ONLY_FULL_GROUP_BY` does not.
pub(crate) async fn popular(
    conn: &mut impl SqlConn,
    since: OffsetDateTime,
    limit: i64,
) -> Result<Vec<PopularProduct>, StoreError> {
    sql("select p.*, s.units_sold from \
           (select i.product_id, cast(sum(i.quantity) as {bigint}) as units_sold from order_items i \
            join orders o on o.id = i.order_id \
            where o.status = 'paid' and o.paid_at >= ? \
            group by i.product_id) s \
         join products p on p.id = s.product_id \
         order by s.units_sold desc, p.id limit ?")
    .time(since)
    .limit(limit)
    .fetch_all(conn, popular_product)
    .await
}

#[async_trait]
impl<B: Backend> CatalogWrites for SqlUnitOfWork<B> {
    async fn insert(&mut self, product: &Product) -> Result<(), StoreError> {
        let result = insert(&mut self.conn()?, product).await;
        self.track(result)
    }

    async fn by_id(&mut self, id: ProductId) -> Result<Option<Product>, StoreError> {
        let result = by_id(&mut self.conn()?, id, Lock::ForUpdate).await;
        self.track(result)
    }

    async fn update(&mut self, product: &Product) -> Result<(), StoreError> {
        let result = update(&mut self.conn()?, product).await;
        self.track(result)
    }

    async fn take_stock(&mut self, id: ProductId, quantity: i64) -> Result<Option<Product>, StoreError> {
        let result = take_stock(&mut self.conn()?, id, quantity).await;
        self.track(result)
    }

    async fn return_stock(&mut self, id: ProductId, quantity: i64) -> Result<(), StoreError> {
        let result = return_stock(&mut self.conn()?, id, quantity).await;
        self.track(result)
    }
}

#[async_trait]
impl<B: Backend> CatalogReads for SqlStore<B> {
    async fn product(&self, id: ProductId, consistency: Consistency) -> Result<Option<Product>, StoreError> {
        self.read(&consistency, id, |conn, &id| Box::pin(by_id(conn, id, Lock::None)))
            .await
    }

    async fn products(
        &self,
        after: Option<ProductId>,
        limit: i64,
        consistency: Consistency,
    ) -> Result<Vec<Product>, StoreError> {
        self.read(&consistency, (after, limit), |conn, &(after, limit)| {
            Box::pin(page(conn, after, limit))
        })
        .await
    }

    async fn popular_products(
        &self,
        since: OffsetDateTime,
        limit: i64,
        consistency: Consistency,
    ) -> Result<Vec<PopularProduct>, StoreError> {
        self.read(&consistency, (since, limit), |conn, &(since, limit)| {
            Box::pin(popular(conn, since, limit))
        })
        .await
    }
}
