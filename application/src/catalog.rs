//! The catalogue: admin writes on the primary, reads from replicas through the cache
//! (cache-aside, one load per cold key). A cache outage serves from the database.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use core_domain::catalog::{NewProduct, POPULAR_LIMIT, POPULAR_WINDOW, PopularProduct, Product, ProductPatch};
use core_domain::{MemberId, ProductId, ValidationErrors};
use ports::{CacheError, CommitToken, Consistency, Loader, StoreError};

use crate::freshness::Freshness;

use crate::error::problem;
use crate::{Ports, Settings};

/// Why a catalogue use case failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The request's values are invalid.
    #[error(transparent)]
    Validation(#[from] ValidationErrors),
    /// The store failed or was unreachable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Product not found.
    #[error("product not found")]
    NotFound,
}

problem!(CatalogError {
    NotFound => NotFound, "product.not_found";
});

/// The first page of the list uses this size (and is the only page cached); the most
/// products one page may hold.
pub use crate::paging::{DEFAULT_PAGE, MAX_PAGE};

fn product_key(id: ProductId) -> String {
    format!("product:{id}")
}
const LIST_KEY: &str = "products:list";
/// The catalogue's own entry in the consistency-token store: the last commit that changed a
/// product (admin write, order, cancellation). Cache fills read with it, so an entry refilled
/// right after a change never comes from a replica that has not replayed that change.
const CATALOG: MemberId = MemberId(uuid::Uuid::nil());
const POPULAR_KEY: &str = "products:popular";

/// The catalogue: products (read through the cache), stock and popular products.
#[derive(Clone)]
pub struct CatalogService {
    ports: Ports,
    settings: Arc<Settings>,
    freshness: Freshness,
}

impl CatalogService {
    /// The service over `ports`.
    pub fn new(ports: Ports, settings: Arc<Settings>) -> Self {
        let freshness = Freshness::new(ports.consistency.clone());
        Self {
            ports,
            settings,
            freshness,
        }
    }

    /// Reads through the cache; any cache failure falls back to the database.
    async fn cached<T, F>(&self, key: &str, ttl: Duration, load: F) -> Result<T, StoreError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: Fn() -> futures::future::BoxFuture<'static, Result<T, StoreError>>,
    {
        let fill = load();
        let loader: Loader = Box::pin(async move {
            let value = fill.await?;
            serde_json::to_vec(&value).map_err(|e| StoreError::other(e.to_string()))
        });
        match self.ports.cache.get_or_load(key, ttl, loader).await {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(value) => return Ok(value),
                Err(error) => {
                    tracing::warn!(%error, key, "undecodable cache entry; reading the database")
                }
            },
            Err(CacheError::Load(error)) => return Err(error),
            Err(CacheError::Unavailable(error)) => {
                tracing::debug!(%error, key, "cache unavailable; reading the database");
            }
        }
        load().await
    }

    /// Caches the product as just written. Invalidating instead would let the next read
    /// refill the cache from a replica that has not replayed the write yet.
    async fn write_through(&self, product: &Product) {
        let key = product_key(product.id);
        let stored = match serde_json::to_vec(&Some(product)) {
            Ok(bytes) => self.ports.cache.put(&key, bytes, self.settings.product_cache_ttl).await,
            Err(error) => Err(CacheError::Unavailable(error.to_string())),
        };
        if let Err(error) = stored {
            tracing::warn!(%error, key, "cache write-through failed; dropping the entry");
            self.invalidate(vec![key]).await;
        }
    }

    async fn invalidate(&self, keys: Vec<String>) {
        if let Err(error) = self.ports.cache.invalidate(&keys).await {
            // Entries expire on their own TTL; the write has committed.
            tracing::warn!(%error, ?keys, "cache invalidation failed");
        }
    }

    /// Stock of these products changed in the commit `token` (an order placed or cancelled):
    /// their cached details go, and refills read at least that commit. The first list page
    /// keeps its short TTL rather than being dropped on every order.
    pub async fn stock_changed(&self, token: &CommitToken, products: Vec<ProductId>) {
        self.freshness.remember(CATALOG, token).await;
        let mut keys: Vec<String> = products.into_iter().map(product_key).collect();
        keys.sort();
        keys.dedup();
        if !keys.is_empty() {
            self.invalidate(keys).await;
        }
    }

    /// Admin: creates a product and writes it through the cache.
    pub async fn create(&self, name: &str, price: i64, stock: i64) -> Result<Product, CatalogError> {
        let new = NewProduct::parse(name, price, stock)?;
        let product = Product::create(ProductId(self.ports.ids.new_id()), new, self.ports.clock.now());
        let mut uow = self.ports.db.begin().await?;
        uow.catalog().insert(&product).await?;
        self.freshness.commit(uow.as_mut(), CATALOG).await?;
        self.write_through(&product).await;
        self.invalidate(vec![LIST_KEY.to_owned(), POPULAR_KEY.to_owned()]).await;
        Ok(product)
    }

    /// Admin: changes a product's price and/or stock.
    pub async fn update(&self, id: ProductId, price: Option<i64>, stock: Option<i64>) -> Result<Product, CatalogError> {
        let patch = ProductPatch::parse(price, stock)?;
        let mut uow = self.ports.db.begin().await?;
        let mut product = uow.catalog().by_id(id).await?.ok_or(CatalogError::NotFound)?;
        product.apply(patch, self.ports.clock.now());
        uow.catalog().update(&product).await?;
        self.freshness.commit(uow.as_mut(), CATALOG).await?;
        self.write_through(&product).await;
        self.invalidate(vec![LIST_KEY.to_owned(), POPULAR_KEY.to_owned()]).await;
        Ok(product)
    }

    /// One product (cache, then a replica, then the primary before a 404).
    pub async fn get(&self, id: ProductId) -> Result<Product, CatalogError> {
        let (reads, freshness) = (self.ports.catalog.clone(), self.freshness.clone());
        let product: Option<Product> = self
            .cached(&product_key(id), self.settings.product_cache_ttl, move || {
                let (reads, freshness) = (reads.clone(), freshness.clone());
                Box::pin(async move {
                    // Ids are minted by us, so a product a replica does not know yet is one
                    // it has not replayed: ask the primary before caching "not found".
                    match reads.product(id, freshness.for_member(CATALOG).await).await? {
                        Some(product) => Ok(Some(product)),
                        None => reads.product(id, Consistency::Strong).await,
                    }
                })
            })
            .await?;
        product.ok_or(CatalogError::NotFound)
    }

    /// A page of products; the default first page is cached.
    pub async fn list(&self, after: Option<ProductId>, limit: Option<i64>) -> Result<Vec<Product>, CatalogError> {
        let limit = crate::paging::limit(limit)?;
        if after.is_some() || limit != DEFAULT_PAGE {
            let consistency = self.freshness.for_member(CATALOG).await;
            return Ok(self.ports.catalog.products(after, limit, consistency).await?);
        }
        let (reads, freshness) = (self.ports.catalog.clone(), self.freshness.clone());
        Ok(self
            .cached(LIST_KEY, self.settings.product_cache_ttl, move || {
                let (reads, freshness) = (reads.clone(), freshness.clone());
                Box::pin(async move {
                    reads
                        .products(None, DEFAULT_PAGE, freshness.for_member(CATALOG).await)
                        .await
                })
            })
            .await?)
    }

    /// Top 5 by units in paid orders over the last 3 days.
    pub async fn popular(&self) -> Result<Vec<PopularProduct>, CatalogError> {
        let reads = self.ports.catalog.clone();
        let clock = self.ports.clock.clone();
        Ok(self
            .cached(POPULAR_KEY, self.settings.popular_cache_ttl, move || {
                let (reads, since) = (reads.clone(), clock.now() - POPULAR_WINDOW);
                Box::pin(async move {
                    reads
                        .popular_products(since, POPULAR_LIMIT, Consistency::Eventual)
                        .await
                })
            })
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Problem;
    use crate::testing::TestPorts;

    #[tokio::test]
    async fn a_cache_outage_serves_from_the_database() {
        let mut t = TestPorts::new();
        t.no_recent_writes();
        t.cache
            .expect_get_or_load()
            .returning(|_, _, _| Err(CacheError::Unavailable("down".into())));
        t.catalog
            .expect_product()
            .withf(|_, c| *c == Consistency::Eventual)
            .times(1)
            .returning(|_, _| Ok(None));
        t.catalog
            .expect_product()
            .withf(|_, c| *c == Consistency::Strong)
            .times(1)
            .returning(|_, _| Ok(None));
        let err = CatalogService::new(t.build(), Default::default())
            .get(ProductId(uuid::Uuid::now_v7()))
            .await
            .expect_err("missing");
        assert_eq!(err.code(), "product.not_found");
    }

    #[tokio::test]
    async fn the_cache_loader_reads_a_replica() {
        let mut t = TestPorts::new();
        t.no_recent_writes();
        t.cache.expect_get_or_load().returning(|_, _, loader| {
            Box::pin(async move { Ok(loader.await?) }) // run the loader inline
                .now_or_never_ok()
        });
        t.catalog
            .expect_products()
            .withf(|after, limit, c| after.is_none() && *limit == DEFAULT_PAGE && *c == Consistency::Eventual)
            .times(1)
            .returning(|_, _, _| Ok(vec![]));
        let list = CatalogService::new(t.build(), Default::default())
            .list(None, None)
            .await
            .expect("ok");
        assert!(list.is_empty());
    }

    #[tokio::test]
    async fn a_patch_writes_the_product_through_and_drops_the_lists() {
        let mut t = TestPorts::new();
        t.consistency
            .expect_remember()
            .withf(|member, token| *member == CATALOG && token.0 == "1")
            .times(1)
            .returning(|_, _| Ok(()));
        let now = time::OffsetDateTime::now_utc();
        let product = Product::create(
            ProductId(uuid::Uuid::now_v7()),
            NewProduct::parse("P", 10, 1).expect("ok"),
            now,
        );
        let id = product.id;
        t.expect_uow(move |uow| {
            uow.catalog.expect_by_id().return_once(move |_| Ok(Some(product)));
            uow.catalog
                .expect_update()
                .withf(|p| p.price == 99)
                .returning(|_| Ok(()));
            uow.commits();
        });
        t.cache
            .expect_put()
            .withf(move |key, value, _| {
                key == format!("product:{id}")
                    && serde_json::from_slice::<Option<Product>>(value).is_ok_and(|p| p.is_some_and(|p| p.price == 99))
            })
            .times(1)
            .returning(|_, _, _| Ok(()));
        t.cache
            .expect_invalidate()
            .withf(|keys| keys.contains(&LIST_KEY.to_owned()) && keys.contains(&POPULAR_KEY.to_owned()))
            .times(1)
            .returning(|_| Ok(()));
        let p = CatalogService::new(t.build(), Default::default())
            .update(id, Some(99), None)
            .await
            .expect("ok");
        assert_eq!(p.price, 99);
    }

    /// Runs a ready-made future to completion in a mock's synchronous `returning`.
    trait NowOrNeverOk {
        fn now_or_never_ok(self) -> Result<Vec<u8>, CacheError>;
    }
    impl<F: std::future::Future<Output = Result<Vec<u8>, CacheError>>> NowOrNeverOk for F {
        fn now_or_never_ok(self) -> Result<Vec<u8>, CacheError> {
            futures::executor::block_on(self)
        }
    }
}
