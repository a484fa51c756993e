//! The store contract on the embedded stores.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use kora_store::memory::MemoryStore;
use kora_store::sqlite::SqliteStore;
use kora_store::testing;

#[tokio::test]
async fn memory_store_contract() {
    testing::run_all(&MemoryStore::new(), "m").await;
}

#[tokio::test]
async fn sqlite_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let s = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    testing::run_all(&s, "s").await;
    drop(s);
    // Reopening applies no migration twice and keeps the data.
    let s = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    use kora_store::Store;
    assert!(s.run("s-r1").await.unwrap().is_some());
}

#[tokio::test]
async fn sqlite_in_memory_contract() {
    testing::run_all(&SqliteStore::open(":memory:").await.unwrap(), "q").await;
}
