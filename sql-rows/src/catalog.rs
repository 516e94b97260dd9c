//! Catalogue rows: products and their sales.

use core_domain::catalog::{PopularProduct, Product};
use ports::StoreError;

use crate::Columns;

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
