//! The store contract on PostgreSQL. Each test gets a fresh database (created through
//! `KORA_TEST_PG_ADMIN`, default postgres://postgres@127.0.0.1:5432/postgres) and drops it after.
//! Outside CI an unreachable server skips these tests with a message; with `CI` set it fails.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU32, Ordering};

use kora_store::pg::{PgConfig, PgStore};
use kora_store::testing;
use sqlx::Connection;

fn admin_url() -> String {
    std::env::var("KORA_TEST_PG_ADMIN")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A private database for one test; dropped when the test ends.
struct TestDb {
    name: String,
    url: String,
}

impl TestDb {
    async fn create() -> Option<TestDb> {
        static N: AtomicU32 = AtomicU32::new(0);
        let admin = admin_url();
        let mut conn = match sqlx::PgConnection::connect(&admin).await {
            Ok(c) => c,
            Err(e) => {
                assert!(
                    std::env::var("CI").is_err(),
                    "PostgreSQL is not reachable at {admin}: {e}; CI must not skip store tests"
                );
                eprintln!("skipping: PostgreSQL not reachable at {admin}: {e}");
                return None;
            }
        };
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros()
            % 1_000_000_000_000;
        let name = format!(
            "kora_test_{t}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(b, _)| b)
            .to_string();
        Some(TestDb {
            url: format!("{base}/{name}"),
            name,
        })
    }

    async fn drop_db(self) {
        let mut conn = sqlx::PgConnection::connect(&admin_url()).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn pg_store_contract() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = PgStore::connect(&PgConfig {
        url: db.url.clone(),
        ..PgConfig::default()
    })
    .await
    .unwrap();
    testing::run_all(&store, "p").await;
    store.close().await;
    // Reconnecting applies no migration twice and keeps the data.
    let again = PgStore::connect(&PgConfig {
        url: db.url.clone(),
        ..PgConfig::default()
    })
    .await
    .unwrap();
    use kora_store::Store;
    assert!(again.run("p-r1").await.unwrap().is_some());
    again.close().await;
    db.drop_db().await;
}

/// Two processes starting at once both migrate safely (the advisory lock serialises them).
#[tokio::test]
async fn concurrent_start_ups_migrate_once() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let cfg = PgConfig {
        url: db.url.clone(),
        ..PgConfig::default()
    };
    let (a, b) = tokio::join!(PgStore::connect(&cfg), PgStore::connect(&cfg));
    let (a, b) = (a.unwrap(), b.unwrap());
    testing::run_all(&a, "c").await;
    a.close().await;
    b.close().await;
    db.drop_db().await;
}
