//! The SQL adapter contract against PostgreSQL: a fresh database per case, on the primary
//! only (replicas would make eventual reads lag; routing has its own tests).

use adapters_postgres::{PgConfig, PgStore};
use tests::contract::Stores;
use tests::services::{self, PgDatabase};

async fn postgres_stores() -> Option<(Stores, PgDatabase)> {
    let pg = services::postgres().await?;
    let db = services::fresh_pg(&pg).await;
    let config = PgConfig {
        primary_url: db.primary_url.clone(),
        ..PgConfig::default()
    };
    let store = PgStore::connect(&config).await.expect("connect");
    store.migrate().await.expect("migrate");
    Some((Stores::of(store), db))
}

tests::contract_tests!(optional postgres_stores());
