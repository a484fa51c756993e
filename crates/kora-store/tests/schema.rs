//! The ledger's schema discipline: a ledger made before the migrations were squashed is adopted
//! and upgraded with its data intact; an upgraded ledger has exactly a new one's schema; an
//! edited migration and a ledger from a newer build are refused with a message that says what
//! to do; a function is replaced only by a newer generation, and every function file is pinned
//! to its generation. A missing ledger database is created for `kora serve`, and the errors a
//! new installation meets say what to do.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use kora_model::wire::{EventKind, RunEvent, WIRE_VERSION};
use kora_store::pg::{PgConfig, PgStore, schema};
use kora_store::sqlite::{SqliteStore, schema as lite};
use kora_store::testing::TestDb;
use kora_store::{
    AttemptStatus, AttemptUpdate, Batch, DeadLetterFilter, Expect, RunFilter, RunStatus, Store,
};
use sqlx::{Connection, SqlSafeStr};

const PG_LEGACY: &str = include_str!("fixtures/postgres-legacy-v6.sql");
const SQLITE_LEGACY: &str = include_str!("fixtures/sqlite-legacy-v5.sql");

/// The fixture's runs.
const DIAMOND: &str = "01a23aeb-0195-70bb-ab7d-1a66880a0813";
const DIVIDE: &str = "01a23aeb-030a-7271-b566-594b8dd5a8ff";
const REJECTED: &str = "01a23aeb-2456-7513-8e1d-ab5568bc86f7";
const RUNNING: &str = "01a23aeb-381f-7493-9c33-bbe792041fda";

fn cfg(db: &TestDb) -> PgConfig {
    PgConfig {
        url: db.url.clone(),
        ..PgConfig::default()
    }
}

/// A database holding the legacy fixture, as the earlier Kora left it.
async fn legacy_pg() -> Option<TestDb> {
    let db = TestDb::create().await?;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(PG_LEGACY))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    Some(db)
}

async fn pg_scalar_list(url: &str, sql: &'static str) -> Vec<String> {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let out: Vec<String> = sqlx::query_scalar(sql).fetch_all(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    out
}

fn event(run: &str, seq: u64) -> RunEvent {
    RunEvent {
        v: WIRE_VERSION,
        event_id: format!("{run}:{seq}"),
        run_id: run.into(),
        seq,
        kind: EventKind::NodeSucceeded,
        node_id: Some("source".into()),
        iteration: 0,
        attempt: 1,
        at_ms: 5,
        detail: None,
    }
}

/// What every upgraded legacy ledger must still say, on either backend.
async fn legacy_data_reads_back(s: &dyn Store, runs: &[(&str, RunStatus)]) {
    let listed = s.runs(&RunFilter::default()).await.unwrap();
    let got: BTreeSet<(String, &str)> = listed
        .iter()
        .map(|r| (r.run_id.clone(), r.status.as_str()))
        .collect();
    let want: BTreeSet<(String, &str)> = runs
        .iter()
        .map(|(id, st)| ((*id).to_string(), st.as_str()))
        .collect();
    assert_eq!(got, want);
    for r in &listed {
        let max = s
            .events(&r.run_id)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .max();
        assert_eq!(
            r.event_seq,
            max.unwrap_or(0),
            "run {}: the migration backfilled its highest event sequence",
            r.run_id
        );
    }
    let diamond = listed.iter().find(|r| r.run_id == DIAMOND).unwrap();
    assert!(diamond.event_seq > 0);
    let ids: Vec<String> = diamond
        .spec
        .as_ref()
        .unwrap()
        .nodes
        .iter()
        .map(|n| n.id.clone())
        .collect();
    let results = s.results(DIAMOND, &ids).await.unwrap();
    assert_eq!(results["mean"]["result"]["mean"], serde_json::json!(7.8));
    assert_eq!(
        results["report"]["merged_data"]["max"],
        serde_json::json!(16)
    );
}

#[tokio::test]
async fn a_legacy_pg_ledger_is_adopted_and_upgraded() {
    let Some(db) = legacy_pg().await else { return };
    let store = PgStore::connect(&cfg(&db)).await.unwrap();
    let applied = pg_scalar_list(
        &db.url,
        "SELECT version::text FROM _sqlx_migrations WHERE success ORDER BY version",
    )
    .await;
    let all: Vec<String> = schema::MIGRATIONS
        .iter()
        .map(|(v, ..)| v.to_string())
        .collect();
    assert_eq!(applied, all, "the baseline adopted, the later ones applied");
    let leftovers = pg_scalar_list(
        &db.url,
        "SELECT relname::text FROM pg_class WHERE relname = 'kora_migrations'
         UNION ALL SELECT proname::text FROM pg_proc WHERE proname IN ('kora_commit_base', 'kora_commit_keys')",
    )
    .await;
    assert!(
        leftovers.is_empty(),
        "the old bookkeeping and retired functions are gone: {leftovers:?}"
    );
    legacy_data_reads_back(
        &store,
        &[
            (DIAMOND, RunStatus::Succeeded),
            (DIVIDE, RunStatus::Succeeded),
            (REJECTED, RunStatus::Rejected),
            (RUNNING, RunStatus::Running),
        ],
    )
    .await;
    // The replayed dead letter keeps its trail.
    let dl = store
        .dead_letters(&DeadLetterFilter {
            any_state: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(dl.len(), 1);
    let info = dl[0].attempt.dead_letter.as_ref().unwrap();
    assert_eq!(
        (info.state.as_str(), info.replayed_by.as_deref()),
        ("replayed", Some("fixture-maker"))
    );
    let retried = store.attempts(DIVIDE).await.unwrap();
    assert!(
        retried.iter().any(|a| a.attempt == 2
            && a.overrides == serde_json::json!({"divisor": 5}).as_object().cloned())
    );
    assert_eq!(store.triggers().await.unwrap()[0].name, "orders");
    assert_eq!(store.audit_log(&Default::default()).await.unwrap().len(), 1);
    // The run the earlier Kora left running goes on under the new functions.
    let before = store.run(RUNNING).await.unwrap().unwrap().event_seq;
    let report = store
        .commit(Batch {
            expect: vec![Expect::Outcomes {
                run_id: RUNNING.into(),
                count: 0,
            }],
            outcomes: vec![AttemptUpdate {
                run_id: RUNNING.into(),
                node_id: "source".into(),
                iteration: 0,
                attempt: 1,
                status: AttemptStatus::Succeeded,
                output: Some(serde_json::json!({"result": {"values": [1]}})),
                error: None,
                error_type: None,
                worker_id: Some("w".into()),
                at_ms: 5,
                dead_letter: None,
            }],
            events: vec![event(RUNNING, before + 1)],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(report.outcomes_ignored, 0);
    let after = store.run(RUNNING).await.unwrap().unwrap();
    assert_eq!(after.event_seq, before + 1);
    store.close().await;
    // Opening it again changes nothing.
    let again = PgStore::connect(&cfg(&db)).await.unwrap();
    assert_eq!(again.run(RUNNING).await.unwrap().unwrap(), after);
    again.close().await;
}

/// The schema of one PostgreSQL database: columns and indexes of Kora's tables, and its
/// functions, as sorted text.
async fn pg_schema(url: &str) -> Vec<String> {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let mut out: Vec<String> = sqlx::query_scalar(
        "SELECT table_name || '.' || column_name || ' ' || data_type || ' null=' || is_nullable
                || ' default=' || coalesce(column_default, '-')
         FROM information_schema.columns WHERE table_schema = 'public' AND table_name NOT LIKE '\\_sqlx%'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    // pg_dump qualifies names with the schema; a new ledger's definitions do not.
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT replace(indexdef, 'public.', '') FROM pg_indexes WHERE schemaname = 'public' AND tablename NOT LIKE '\\_sqlx%'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let functions: Vec<String> = sqlx::query_scalar(
        "SELECT p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    out.extend(indexes);
    out.extend(functions.into_iter().map(|f| format!("function {f}")));
    out.sort();
    out
}

#[tokio::test]
async fn an_upgraded_pg_ledger_has_a_new_ledgers_schema() {
    let Some(old) = legacy_pg().await else { return };
    let Some(new) = TestDb::create().await else {
        return;
    };
    PgStore::connect(&cfg(&old)).await.unwrap().close().await;
    PgStore::connect(&cfg(&new)).await.unwrap().close().await;
    let (a, b) = (pg_schema(&old.url).await, pg_schema(&new.url).await);
    let only_old: Vec<&String> = a.iter().filter(|x| !b.contains(x)).collect();
    let only_new: Vec<&String> = b.iter().filter(|x| !a.contains(x)).collect();
    assert!(
        only_old.is_empty() && only_new.is_empty(),
        "the baseline differs from the legacy schema:\n  only upgraded: {only_old:#?}\n  only new: {only_new:#?}"
    );
    assert!(a.iter().any(|x| x == "function kora_commit"));
}

/// The migrations with one byte added to migration `version`'s file.
fn edited(
    migrations: &[(i64, &'static str, &'static str)],
    version: i64,
) -> Vec<(i64, &'static str, &'static str)> {
    migrations
        .iter()
        .map(|&(v, f, sql)| {
            if v == version {
                let changed: &'static str = Box::leak(format!("{sql}\n").into_boxed_str());
                (v, f, changed)
            } else {
                (v, f, sql)
            }
        })
        .collect()
}

#[tokio::test]
async fn an_edited_pg_migration_is_refused() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    PgStore::connect(&cfg(&db)).await.unwrap().close().await;
    let m = schema::migrator_of(&edited(schema::MIGRATIONS, 2));
    let err = PgStore::connect_with(&cfg(&db), &m)
        .await
        .err()
        .expect("an edited migration is refused");
    let msg = err.to_string();
    assert!(
        msg.contains(
            "migration 2 (0002_run_event_seq.sql) was changed after this ledger applied it"
        ) && msg.contains("append-only"),
        "{msg}"
    );
    // A ledger a newer build migrated further is refused too, not silently used.
    let older = schema::migrator_of(&schema::MIGRATIONS[..2]);
    let msg = PgStore::connect_with(&cfg(&db), &older)
        .await
        .err()
        .expect("an unknown migration is refused")
        .to_string();
    assert!(
        msg.contains("has migration 3, which this build of Kora does not know"),
        "{msg}"
    );
}

async fn marks(conn: &mut sqlx::PgConnection) -> i64 {
    sqlx::query_scalar("SELECT kora_mark_published('[]'::jsonb, 0)")
        .fetch_one(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_function_is_replaced_only_by_a_newer_generation() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    PgStore::connect(&cfg(&db)).await.unwrap().close().await;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let stand_in =
        "CREATE OR REPLACE FUNCTION kora_mark_published(keys jsonb, at_ms bigint) RETURNS bigint
                    LANGUAGE sql AS $$ SELECT 42::bigint $$";
    // A newer build's function (generation 99) stays when this build starts.
    sqlx::raw_sql(stand_in).execute(&mut conn).await.unwrap();
    sqlx::query("UPDATE kora_functions SET generation = 99 WHERE name = 'kora_mark_published'")
        .execute(&mut conn)
        .await
        .unwrap();
    PgStore::connect(&cfg(&db)).await.unwrap().close().await;
    assert_eq!(
        marks(&mut conn).await,
        42,
        "an older build never puts back its function"
    );
    // An older generation is replaced.
    sqlx::query("UPDATE kora_functions SET generation = 0 WHERE name = 'kora_mark_published'")
        .execute(&mut conn)
        .await
        .unwrap();
    PgStore::connect(&cfg(&db)).await.unwrap().close().await;
    assert_eq!(marks(&mut conn).await, 0, "this build's function is back");
    conn.close().await.unwrap();
}

/// Each function file's checksum at its generation. A changed file fails here: raise its
/// generation in src/pg/schema.rs and pin the new checksum this test prints.
const PINNED: &[(&str, i64, &str)] = &[
    ("kora_commit", 5, "d1d91abc98cb94ea80c9f3126a0cc038"),
    ("kora_mark_published", 2, "21232bd4948a5d69ba3e634361a0ca5d"),
];

#[test]
fn function_files_are_pinned_to_their_generations() {
    for f in schema::FUNCTIONS {
        let sum: String = sqlx::migrate::Migration::new(
            0,
            f.name.into(),
            sqlx::migrate::MigrationType::Simple,
            f.sql.into_sql_str(),
            false,
        )
        .checksum
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
        let pinned = PINNED.iter().find(|(n, ..)| *n == f.name);
        assert_eq!(
            pinned.map(|&(_, g, s)| (g, s)),
            Some((f.generation, sum.as_str())),
            "functions/postgres/{}.sql changed or its generation moved: raise its generation in \
             src/pg/schema.rs and pin (\"{}\", {}, \"{sum}\") here",
            f.name,
            f.name,
            f.generation
        );
    }
}

/// A SQLite file holding the legacy fixture.
async fn legacy_sqlite(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("legacy.db");
    let path = path.to_str().unwrap().to_string();
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(SQLITE_LEGACY))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    path
}

async fn sqlite_schema(path: &str) -> Vec<String> {
    let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
    let mut conn = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
    let mut out: Vec<String> = sqlx::query_scalar(
        "SELECT m.name || '.' || p.name || ' ' || p.type || ' notnull=' || p.\"notnull\"
                || ' default=' || coalesce(p.dflt_value, '-') || ' pk=' || p.pk
         FROM sqlite_master m JOIN pragma_table_info(m.name) p
         WHERE m.type = 'table' AND m.name NOT LIKE '\\_sqlx%' ESCAPE '\\'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT 'index ' || name || ' on ' || tbl_name FROM sqlite_master
         WHERE type = 'index' AND tbl_name NOT LIKE '\\_sqlx%' ESCAPE '\\'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    out.extend(indexes);
    out.sort();
    out
}

#[tokio::test]
async fn a_legacy_sqlite_ledger_is_adopted_and_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = legacy_sqlite(&dir).await;
    let store = SqliteStore::open(&path).await.unwrap();
    let runs = store.runs(&RunFilter::default()).await.unwrap();
    assert_eq!(runs.len(), 2);
    let failed = runs.iter().find(|r| r.status == RunStatus::Failed).unwrap();
    assert!(failed.event_seq > 0);
    let open = store
        .dead_letters(&DeadLetterFilter::default())
        .await
        .unwrap();
    assert_eq!(open.len(), 1, "the open dead letter is still open");
    assert_eq!(open[0].attempt.node_id, "divide");
    let diamond = runs
        .iter()
        .find(|r| r.status == RunStatus::Succeeded)
        .unwrap();
    let ids: Vec<String> = diamond
        .spec
        .as_ref()
        .unwrap()
        .nodes
        .iter()
        .map(|n| n.id.clone())
        .collect();
    let results = store.results(&diamond.run_id, &ids).await.unwrap();
    assert_eq!(results["mean"]["result"]["mean"], serde_json::json!(7.8));
    for r in &runs {
        let max = store
            .events(&r.run_id)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .max();
        assert_eq!(r.event_seq, max.unwrap_or(0));
    }
    drop(store);
    let fresh = dir.path().join("fresh.db");
    SqliteStore::open(fresh.to_str().unwrap()).await.unwrap();
    let (a, b) = (
        sqlite_schema(&path).await,
        sqlite_schema(fresh.to_str().unwrap()).await,
    );
    assert_eq!(a, b, "an upgraded file has a new file's schema");
}

#[tokio::test]
async fn an_edited_sqlite_migration_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let path = path.to_str().unwrap();
    drop(SqliteStore::open(path).await.unwrap());
    let m = lite::migrator_of(&edited(lite::MIGRATIONS, 1));
    let msg = SqliteStore::open_with(path, &m)
        .await
        .err()
        .expect("an edited migration is refused")
        .to_string();
    assert!(
        msg.contains("migration 1 (0001_ledger.sql) was changed after this ledger applied it")
            && msg.contains("crates/kora-store/migrations/sqlite/0001_ledger.sql"),
        "{msg}"
    );
}

/// A test database's name and URL with the database itself dropped: missing, but still
/// dropped by the `TestDb` when the test ends, however it ends.
async fn missing_db() -> Option<TestDb> {
    let db = TestDb::create().await?;
    let mut admin = sqlx::PgConnection::connect(&TestDb::admin_url())
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE {}", db.name)))
        .execute(&mut admin)
        .await
        .unwrap();
    Some(db)
}

/// `kora serve` creates a missing ledger database (once); a role that does not exist is named
/// with its SQLSTATE and what to do, without sqlx's line of PostgreSQL's C source.
#[tokio::test]
async fn a_missing_ledger_database_is_created() {
    let Some(db) = missing_db().await else {
        return;
    };
    let c = cfg(&db);
    let missing = PgStore::connect(&c).await.err().unwrap().to_string();
    assert!(
        missing.contains("(SQLSTATE 3D000)") && missing.contains("createdb"),
        "{missing}"
    );
    assert_eq!(
        PgStore::create_database_if_missing(&c).await.unwrap(),
        Some(db.name.clone())
    );
    assert_eq!(PgStore::create_database_if_missing(&c).await.unwrap(), None);
    PgStore::connect(&c).await.unwrap().close().await;
    let no_role = PgConfig {
        url: db.url.replacen("://postgres@", "://kora_no_such_role@", 1),
        ..PgConfig::default()
    };
    let e = PgStore::create_database_if_missing(&no_role)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("(SQLSTATE 28000)") && e.contains("postgres://USER") && !e.contains("at line"),
        "{e}"
    );
}

/// Roles started together (`kora serve … &` three times) race to create the missing database:
/// exactly one creates it, none fails.
#[tokio::test]
async fn roles_starting_together_create_the_database_once() {
    let Some(db) = missing_db().await else {
        return;
    };
    let c = cfg(&db);
    let create = || PgStore::create_database_if_missing(&c);
    let (a, b, d, e) = tokio::join!(create(), create(), create(), create());
    let made: Vec<Option<String>> = [a, b, d, e].into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(made.iter().flatten().count(), 1, "{made:?}");
    let (a, b) = tokio::join!(PgStore::connect(&c), PgStore::connect(&c));
    a.unwrap().close().await;
    b.unwrap().close().await;
}
