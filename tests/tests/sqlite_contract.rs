//! The SQL adapter contract against SQLite: a fresh database file per case.

use adapters_sqlite::{SqliteConfig, SqliteStore};
use tempfile::TempDir;
use tests::contract::Stores;

async fn sqlite_stores() -> (Stores, TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = SqliteConfig {
        url: format!("sqlite://{}", dir.path().join("contract.db").display()),
        ..SqliteConfig::default()
    };
    let store = SqliteStore::connect(&config).await.expect("connect");
    store.migrate().await.expect("migrate");
    (Stores::of(store), dir)
}

tests::contract_tests!(sqlite_stores());
