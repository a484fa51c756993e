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

/// Two commits whose batches name the same runs in opposite orders (two coordinators deciding
/// about the same runs) wait for each other instead of deadlocking: `kora_commit` locks a
/// batch's runs in run id order. A third transaction holds both runs while the two commits
/// start, so each has taken its first lock when it is released; locked in batch order, they
/// would then wait for each other, and PostgreSQL would abort one after its deadlock timeout.
#[tokio::test]
async fn commits_naming_the_same_runs_in_opposite_orders_do_not_deadlock() {
    use kora_store::{Batch, Expect, NewRun, RunStatus};
    use sqlx::Connection;
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = std::sync::Arc::new(PgStore::connect(&cfg(&db)).await.unwrap());
    let run = |id: &str| NewRun {
        run_id: id.into(),
        idempotency_key: None,
        spec: None,
        params: kora_model::Map::new(),
        status: RunStatus::Running,
        error: None,
        at_ms: 1,
        concurrency: None,
        deadline_ms: None,
        parent: None,
        tenant: "default".into(),
    };
    store
        .commit(Batch {
            new_runs: vec![run("r1"), run("r2")],
            ..Default::default()
        })
        .await
        .unwrap();
    let mut holder = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("SELECT 1 FROM runs WHERE run_id IN ('r1', 'r2') FOR UPDATE")
        .execute(&mut holder)
        .await
        .unwrap();
    let expecting = |ids: [&str; 2]| {
        let store = std::sync::Arc::clone(&store);
        let expect = ids
            .iter()
            .map(|id| Expect::Outcomes {
                run_id: (*id).into(),
                count: 0,
            })
            .collect();
        tokio::spawn(async move {
            store
                .commit(Batch {
                    expect,
                    ..Default::default()
                })
                .await
        })
    };
    let a = expecting(["r1", "r2"]);
    let b = expecting(["r2", "r1"]);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
    for commit in [a, b] {
        let done = tokio::time::timeout(std::time::Duration::from_secs(10), commit)
            .await
            .expect("the commits finish")
            .unwrap();
        assert!(done.is_ok(), "{done:?}");
    }
    holder.close().await.unwrap();
    store.close().await;
}

/// Marking tasks published never waits for a row another transaction holds (a commit
/// recording that attempt's outcome): the mark is a hint, and waiting for it could deadlock two
/// coordinators' commits. The held attempt stays unmarked; the others are marked.
#[tokio::test]
async fn marks_skip_attempts_another_transaction_holds() {
    use kora_store::{AttemptKey, AttemptStatus, Batch, NewAttempt, NewRun, RunStatus};
    use sqlx::Connection;
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = PgStore::connect(&cfg(&db)).await.unwrap();
    let attempt = |node: &str| NewAttempt {
        run_id: "r".into(),
        node_id: node.into(),
        iteration: 0,
        attempt: 1,
        node_type: "NoOpNode".into(),
        status: AttemptStatus::Dispatched,
        at_ms: 2,
    };
    let key = |node: &str| AttemptKey {
        run_id: "r".into(),
        node_id: node.into(),
        iteration: 0,
        attempt: 1,
    };
    store
        .commit(Batch {
            new_runs: vec![NewRun {
                run_id: "r".into(),
                idempotency_key: None,
                spec: None,
                params: kora_model::Map::new(),
                status: RunStatus::Running,
                error: None,
                at_ms: 1,
                concurrency: None,
                deadline_ms: None,
                parent: None,
                tenant: "default".into(),
            }],
            new_attempts: ["a", "b", "c", "d"].map(attempt).to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut holder = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("SELECT 1 FROM attempts WHERE node_id IN ('a', 'c') FOR UPDATE")
        .execute(&mut holder)
        .await
        .unwrap();
    let quick = std::time::Duration::from_secs(5);
    tokio::time::timeout(
        quick,
        store.commit(Batch {
            published: vec![key("a"), key("b")],
            published_ms: 10,
            outcomes: Vec::new(),
            ..Default::default()
        }),
    )
    .await
    .expect("a commit's marks do not wait")
    .unwrap();
    tokio::time::timeout(quick, store.mark_published(&[key("c"), key("d")], 10))
        .await
        .expect("the outbox's marks do not wait")
        .unwrap();
    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
    let marked: Vec<String> = sqlx::query_scalar(
        "SELECT node_id FROM attempts WHERE published_ms IS NOT NULL ORDER BY node_id",
    )
    .fetch_all(&mut holder)
    .await
    .unwrap();
    assert_eq!(marked, ["b", "d"]);
    holder.close().await.unwrap();
    store.close().await;
}

/// A run and its attempts are read as one snapshot while another connection commits.
#[tokio::test]
async fn a_run_and_its_attempts_are_read_as_one_snapshot() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let store = std::sync::Arc::new(PgStore::connect(&cfg(&db)).await.unwrap());
    testing::run_with_attempts_is_one_snapshot(store.clone(), "p").await;
    store.close().await;
}
