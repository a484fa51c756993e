//! The store contract on PostgreSQL: one test per check, each on a database of its own
//! ([`testing::TestDb`], dropped even when the check fails). Outside CI an unreachable server
//! skips these tests with a message; with `CI` set it fails.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use kora_store::pg::{PgConfig, PgStore};
use kora_store::testing::{self, TestDb};
use kora_store::{RunFilter, Store};

fn cfg(db: &TestDb) -> PgConfig {
    PgConfig {
        url: db.url.clone(),
        ..PgConfig::default()
    }
}

macro_rules! contract {
    ($($check:ident),*) => {$(
        /// The check, then a reconnect: no migration is applied twice and the data stays.
        #[tokio::test]
        async fn $check() {
            let Some(db) = TestDb::create().await else { return };
            let store = PgStore::connect(&cfg(&db)).await.unwrap();
            testing::$check(&store, "p").await;
            let runs = store.runs(&RunFilter::default()).await.unwrap();
            store.close().await;
            let again = PgStore::connect(&cfg(&db)).await.unwrap();
            assert_eq!(again.runs(&RunFilter::default()).await.unwrap(), runs);
            again.close().await;
        }
    )*};
}

kora_store::contract_checks!(contract);

/// Two processes starting at once both migrate safely (the advisory lock serialises them), and
/// both can write.
#[tokio::test]
async fn concurrent_start_ups_migrate_once() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let c = cfg(&db);
    let (a, b) = tokio::join!(PgStore::connect(&c), PgStore::connect(&c));
    let (a, b) = (a.unwrap(), b.unwrap());
    testing::run_all(&a, "a").await;
    testing::records_a_run(&b, "b").await;
    a.close().await;
    b.close().await;
}
