//! The SQL adapter contract against MariaDB: a fresh database per case, on the primary only
//! (read routing has its own tests).

use adapters_mysql::{MysqlConfig, MysqlStore};
use tests::contract::Stores;
use tests::services::{self, MysqlDatabase};

async fn mariadb_stores() -> Option<(Stores, MysqlDatabase)> {
    let urls = services::mariadb().await?;
    let db = services::fresh_mariadb(&urls).await;
    let config = MysqlConfig {
        primary_url: db.primary_url.clone(),
        ..MysqlConfig::default()
    };
    let store = MysqlStore::connect(&config).await.expect("connect");
    store.migrate().await.expect("migrate");
    Some((Stores::of(store), db))
}

tests::contract_tests!(optional mariadb_stores());
