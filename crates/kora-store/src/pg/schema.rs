//! The ledger's schema on PostgreSQL: migrations, adoption of ledgers made before them, and the
//! PL/pgSQL functions.
//!
//! - **Migrations** (`migrations/postgres/NNNN_*.sql`) run through sqlx's migrator, which
//!   records each one's checksum and refuses a ledger whose applied migration differs from this
//!   build's: migrations are append-only.
//! - **Adoption.** A ledger made by Kora's earlier hand-written migrator (table
//!   `kora_migrations` at [`LEGACY_VERSION`]) has exactly the baseline's schema: the baseline is
//!   recorded as applied, and the later migrations run as usual.
//! - **Functions** (`functions/postgres/*.sql`, one each) are replaced after the migrations,
//!   in one transaction, when this build's generation of a function is newer than the ledger's
//!   (`kora_functions`), so an older process in a rolling upgrade never puts back an older one.
//!
//! All of it runs on one connection holding a session advisory lock, so any number of processes
//! may start at once.

use sqlx::PgConnection;
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgPool, Postgres};

use crate::schema::migrate_error;
use crate::{Error, Result};

/// The advisory lock every migrating process takes.
const LOCK_KEY: i64 = 7_203_571;

/// The last version of the hand-written migrator, whose schema the baseline reproduces.
pub const LEGACY_VERSION: i64 = 6;

/// This build's migrations, in order. Append only: never edit or renumber a file that landed.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "0001_ledger.sql",
        include_str!("../../migrations/postgres/0001_ledger.sql"),
    ),
    (
        2,
        "0002_run_event_seq.sql",
        include_str!("../../migrations/postgres/0002_run_event_seq.sql"),
    ),
    (
        3,
        "0003_function_generations.sql",
        include_str!("../../migrations/postgres/0003_function_generations.sql"),
    ),
    (
        4,
        "0004_tenants_keys_workflows.sql",
        include_str!("../../migrations/postgres/0004_tenants_keys_workflows.sql"),
    ),
    (
        5,
        "0005_tenant_active_runs.sql",
        include_str!("../../migrations/postgres/0005_tenant_active_runs.sql"),
    ),
    (
        6,
        "0006_alerts.sql",
        include_str!("../../migrations/postgres/0006_alerts.sql"),
    ),
    (
        7,
        "0007_runs_by_finished.sql",
        include_str!("../../migrations/postgres/0007_runs_by_finished.sql"),
    ),
];

/// A PL/pgSQL function and the generation of its file in this build.
#[derive(Debug, Clone, Copy)]
pub struct Function {
    pub name: &'static str,
    /// Raise it whenever the file changes (a test pins each file's checksum to its generation).
    pub generation: i64,
    pub sql: &'static str,
}

pub const FUNCTIONS: &[Function] = &[
    Function {
        name: "kora_commit",
        generation: 5,
        sql: include_str!("../../functions/postgres/kora_commit.sql"),
    },
    Function {
        name: "kora_mark_published",
        generation: 2,
        sql: include_str!("../../functions/postgres/kora_mark_published.sql"),
    },
];

/// Functions earlier builds created that this one no longer uses: dropped after the functions
/// are replaced (`kora_commit` no longer calls them).
const RETIRED: &[&str] = &["kora_commit_base(jsonb)", "kora_commit_keys(jsonb, text)"];

/// This build's migrator.
pub fn migrator() -> Migrator {
    migrator_of(MIGRATIONS)
}

/// A migrator over `migrations` (`(version, file, sql)`); tests make edited ones.
pub fn migrator_of(migrations: &[(i64, &'static str, &'static str)]) -> Migrator {
    let mut m = crate::schema::migrator_of(migrations);
    // The advisory lock below covers adoption, migrations and functions together.
    m.set_locking(false);
    m
}

/// Brings the ledger's schema up to this build's: adopts a legacy ledger, applies pending
/// migrations (refusing an edited one), then replaces functions that are older.
pub async fn migrate(pool: &PgPool, migrator: &Migrator) -> Result<()> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(LOCK_KEY)
        .execute(&mut *conn)
        .await?;
    let done = migrate_locked(&mut conn, migrator).await;
    release(conn).await;
    done
}

/// Checks, changing nothing, that the ledger has every migration and function generation of
/// this build (a newer ledger is fine: a rolling upgrade's older process). What a role with
/// `database.migrate = false` does instead of [`migrate`].
pub async fn check_current(pool: &PgPool) -> Result<()> {
    let setup = "run `kora setup` connected as the ledger database's owner (database.migrate = false here: this role does not change the schema)";
    let made: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    let have: Option<i64> = if made {
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(pool)
            .await?
    } else {
        None
    };
    let need = MIGRATIONS.last().map_or(0, |m| m.0);
    let have = have.unwrap_or(0);
    if have < need {
        return Err(Error::Schema(format!(
            "the ledger's schema is at migration {have}, this build needs {need}: {setup}"
        )));
    }
    let functions: Vec<(String, i64)> =
        sqlx::query_as("SELECT name, generation FROM kora_functions")
            .fetch_all(pool)
            .await?;
    for f in FUNCTIONS {
        let current = functions
            .iter()
            .find(|(name, _)| name == f.name)
            .is_some_and(|(_, g)| *g >= f.generation);
        if !current {
            return Err(Error::Schema(format!(
                "the ledger's function {} is older than this build's (generation {}): {setup}",
                f.name, f.generation
            )));
        }
    }
    Ok(())
}

/// Releases the session lock; a connection that cannot is closed, which releases it too.
async fn release(mut conn: PoolConnection<Postgres>) {
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(LOCK_KEY)
        .execute(&mut *conn)
        .await;
    if unlocked.is_err() {
        conn.close_on_drop();
    }
}

async fn migrate_locked(conn: &mut PgConnection, migrator: &Migrator) -> Result<()> {
    adopt_legacy(conn, migrator).await?;
    migrator
        .run(&mut *conn)
        .await
        .map_err(|e| migrate_error(e, migrator, "postgres"))?;
    replace_functions(conn, FUNCTIONS).await
}

/// A ledger from the hand-written migrator: the baseline is recorded as applied (its schema is
/// the baseline's), and the old bookkeeping table dropped.
async fn adopt_legacy(conn: &mut PgConnection, migrator: &Migrator) -> Result<()> {
    let (legacy, current): (bool, bool) = sqlx::query_as(
        "SELECT to_regclass('kora_migrations') IS NOT NULL, to_regclass('_sqlx_migrations') IS NOT NULL",
    )
    .fetch_one(&mut *conn)
    .await?;
    if !legacy {
        return Ok(());
    }
    if !current {
        let version: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM kora_migrations")
            .fetch_one(&mut *conn)
            .await?;
        let version = version.unwrap_or(0);
        if version != LEGACY_VERSION {
            return Err(Error::Schema(format!(
                "this ledger was made by a development build of Kora (schema version {version} of \
                 the old migrator); only version {LEGACY_VERSION} can be upgraded. Create a new \
                 ledger database, or open this one with that build and let it finish migrating first"
            )));
        }
        migrator
            .skip(&mut *conn, Some(1))
            .await
            .map_err(|e| migrate_error(e, migrator, "postgres"))?;
        tracing::info!(
            legacy_version = version,
            "adopted a ledger made by the earlier migrator: its schema is the baseline"
        );
    }
    sqlx::raw_sql("DROP TABLE kora_migrations")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Replaces each function whose generation in the ledger is older than this build's (or
/// missing), records the new generation, and drops retired functions, in one transaction.
async fn replace_functions(conn: &mut PgConnection, functions: &[Function]) -> Result<()> {
    use sqlx::Connection;
    let mut tx = conn.begin().await?;
    let have: Vec<(String, i64)> = sqlx::query_as("SELECT name, generation FROM kora_functions")
        .fetch_all(&mut *tx)
        .await?;
    for f in functions {
        let theirs = have.iter().find(|(n, _)| n == f.name).map(|(_, g)| *g);
        match theirs {
            Some(g) if g == f.generation => continue,
            Some(g) if g > f.generation => {
                tracing::warn!(
                    function = f.name,
                    ledger = g,
                    ours = f.generation,
                    "the ledger's function is newer than this build's: upgrade this process"
                );
                continue;
            }
            _ => {}
        }
        sqlx::raw_sql(f.sql)
            .execute(&mut *tx)
            .await
            .map_err(|e| Error::Schema(format!("cannot create function {}: {e}", f.name)))?;
        sqlx::query(
            "INSERT INTO kora_functions (name, generation, applied_ms) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET generation = excluded.generation, applied_ms = excluded.applied_ms",
        )
        .bind(f.name)
        .bind(f.generation)
        .bind(i64::try_from(kora_model::now_ms()).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
        tracing::info!(
            function = f.name,
            generation = f.generation,
            "ledger function replaced"
        );
    }
    for signature in RETIRED {
        let present: bool = sqlx::query_scalar("SELECT to_regprocedure($1) IS NOT NULL")
            .bind(signature)
            .fetch_one(&mut *tx)
            .await?;
        if present {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP FUNCTION {signature}")))
                .execute(&mut *tx)
                .await?;
            tracing::info!(function = signature, "retired ledger function dropped");
        }
    }
    tx.commit().await?;
    Ok(())
}
