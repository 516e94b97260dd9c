//! Products of the catalogue. Reads are hot (replicas and cache); writes are admin-only.

use time::{Duration, OffsetDateTime};

use crate::validation::{ValidationErrors, in_range, text};
use crate::{Krw, ProductId};

pub const PRICE_MAX: Krw = 100_000_000;
pub const STOCK_MAX: i64 = 1_000_000;
/// Popular products: top [`POPULAR_LIMIT`] by units in paid orders over [`POPULAR_WINDOW`].
pub const POPULAR_WINDOW: Duration = Duration::days(3);
pub const POPULAR_LIMIT: i64 = 5;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Product {
    pub id: ProductId,
    pub name: String,
    pub price: Krw,
    pub stock: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// A validated product creation request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProduct {
    pub name: String,
    pub price: Krw,
    pub stock: i64,
}

impl NewProduct {
    pub fn parse(name: &str, price: i64, stock: i64) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let name = errors.check("name", text(name, 1, 100));
        errors.check("price", in_range(price, 1, PRICE_MAX));
        errors.check("stock", in_range(stock, 0, STOCK_MAX));
        match name {
            Some(name) if errors.is_empty() => Ok(Self { name, price, stock }),
            _ => Err(errors),
        }
    }
}

/// A validated change of price and/or stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProductPatch {
    pub price: Option<Krw>,
    pub stock: Option<i64>,
}

impl ProductPatch {
    pub fn parse(price: Option<i64>, stock: Option<i64>) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if price.is_none() && stock.is_none() {
            errors.add("price", "give `price`, `stock` or both");
        }
        if let Some(price) = price {
            errors.check("price", in_range(price, 1, PRICE_MAX));
        }
        if let Some(stock) = stock {
            errors.check("stock", in_range(stock, 0, STOCK_MAX));
        }
        errors.into_result(|| Self { price, stock })
    }
}

impl Product {
    pub fn create(id: ProductId, new: NewProduct, now: OffsetDateTime) -> Self {
        Self {
            id,
            name: new.name,
            price: new.price,
            stock: new.stock,
            created_at: now,
            updated_at: now,
        }
    }

    pub fn apply(&mut self, patch: ProductPatch, now: OffsetDateTime) {
        if let Some(price) = patch.price {
            self.price = price;
        }
        if let Some(stock) = patch.stock {
            self.stock = stock;
        }
        self.updated_at = now;
    }
}

/// A product with the units sold in the popularity window.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PopularProduct {
    #[serde(flatten)]
    pub product: Product,
    pub units_sold: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;
    use uuid::Uuid;

    #[test]
    fn product_bounds() {
        assert!(NewProduct::parse("Helmet", 1, 0).is_ok());
        let errors = NewProduct::parse(" ", 0, -1).expect_err("invalid");
        assert_eq!(errors.fields().len(), 3);
        assert!(ProductPatch::parse(None, None).is_err());
        assert!(ProductPatch::parse(Some(0), None).is_err());
    }

    #[test]
    fn a_patch_changes_only_what_it_names() {
        let now = datetime!(2026-01-01 0:00 UTC);
        let mut p = Product::create(
            ProductId(Uuid::nil()),
            NewProduct::parse("Helmet", 100, 5).expect("ok"),
            now,
        );
        p.apply(ProductPatch::parse(None, Some(9)).expect("ok"), now);
        assert_eq!((p.price, p.stock), (100, 9));
    }
}
