//! The store contract on the embedded stores: one test per check and store.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use kora_store::memory::MemoryStore;
use kora_store::sqlite::SqliteStore;
use kora_store::{Store, testing};

macro_rules! contract {
    ($($check:ident),*) => {
        mod memory {
            use super::*;
            $(
                #[tokio::test]
                async fn $check() {
                    testing::$check(&MemoryStore::new(), "m").await;
                }
            )*
        }
        /// A ledger file (WAL journal), reopened after the check: nothing is migrated twice and
        /// the data stays.
        mod sqlite_file {
            use super::*;
            $(
                #[tokio::test]
                async fn $check() {
                    let dir = tempfile::tempdir().unwrap();
                    let path = dir.path().join("ledger.db");
                    let path = path.to_str().unwrap();
                    let s = SqliteStore::open(path).await.unwrap();
                    testing::$check(&s, "s").await;
                    let runs = s.runs(&Default::default()).await.unwrap();
                    drop(s);
                    let again = SqliteStore::open(path).await.unwrap();
                    assert_eq!(again.runs(&Default::default()).await.unwrap(), runs);
                }
            )*
        }
        mod sqlite_memory {
            use super::*;
            $(
                #[tokio::test]
                async fn $check() {
                    testing::$check(&SqliteStore::open(":memory:").await.unwrap(), "q").await;
                }
            )*
        }
    };
}

kora_store::contract_checks!(contract);
