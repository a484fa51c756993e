//! The embedded ledger's schema: migrations through sqlx's migrator (checksums; an edited
//! migration is refused), and adoption of files made by Kora's earlier hand-written migrator
//! (`kora_migrations` at [`LEGACY_VERSION`], whose schema is the baseline's). SQLite has no
//! stored functions: the commit logic is in Rust.

use sqlx::migrate::Migrator;
use sqlx::sqlite::SqlitePool;

use crate::schema::migrate_error;
use crate::{Error, Result};

/// The last version of the hand-written migrator, whose schema the baseline reproduces.
pub const LEGACY_VERSION: i64 = 5;

/// This build's migrations, in order. Append only: never edit or renumber a file that landed.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "0001_ledger.sql",
        include_str!("../../migrations/sqlite/0001_ledger.sql"),
    ),
    (
        2,
        "0002_run_event_seq.sql",
        include_str!("../../migrations/sqlite/0002_run_event_seq.sql"),
    ),
    (
        3,
        "0003_tenants_keys_workflows.sql",
        include_str!("../../migrations/sqlite/0003_tenants_keys_workflows.sql"),
    ),
    (
        4,
        "0004_tenant_active_runs.sql",
        include_str!("../../migrations/sqlite/0004_tenant_active_runs.sql"),
    ),
    (
        5,
        "0005_alerts.sql",
        include_str!("../../migrations/sqlite/0005_alerts.sql"),
    ),
    (
        6,
        "0006_runs_by_finished.sql",
        include_str!("../../migrations/sqlite/0006_runs_by_finished.sql"),
    ),
];

pub fn migrator() -> Migrator {
    migrator_of(MIGRATIONS)
}

/// A migrator over `migrations` (`(version, file, sql)`); tests make edited ones.
pub fn migrator_of(migrations: &[(i64, &'static str, &'static str)]) -> Migrator {
    crate::schema::migrator_of(migrations)
}

/// Adopts a legacy file, then applies pending migrations (refusing an edited one).
pub async fn migrate(pool: &SqlitePool, migrator: &Migrator) -> Result<()> {
    let mut conn = pool.acquire().await?;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('kora_migrations', '_sqlx_migrations')",
    )
    .fetch_all(&mut *conn)
    .await?;
    let legacy = tables.iter().any(|t| t == "kora_migrations");
    let current = tables.iter().any(|t| t == "_sqlx_migrations");
    if legacy {
        if !current {
            let version: Option<i64> =
                sqlx::query_scalar("SELECT max(version) FROM kora_migrations")
                    .fetch_one(&mut *conn)
                    .await?;
            let version = version.unwrap_or(0);
            if version != LEGACY_VERSION {
                return Err(Error::Schema(format!(
                    "this ledger file was made by a development build of Kora (schema version \
                     {version} of the old migrator); only version {LEGACY_VERSION} can be \
                     upgraded: start a new file"
                )));
            }
            migrator
                .skip(&mut *conn, Some(1))
                .await
                .map_err(|e| migrate_error(e, migrator, "sqlite"))?;
            tracing::info!(
                legacy_version = version,
                "adopted a ledger file made by the earlier migrator"
            );
        }
        sqlx::raw_sql("DROP TABLE kora_migrations")
            .execute(&mut *conn)
            .await?;
    }
    migrator
        .run(&mut *conn)
        .await
        .map_err(|e| migrate_error(e, migrator, "sqlite"))
}
