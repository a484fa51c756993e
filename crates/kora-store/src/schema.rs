//! What the PostgreSQL and SQLite ledgers share about their schemas: the append-only rule, in
//! the words an operator sees when it is broken.

use sqlx::SqlSafeStr;
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};

use crate::Error;

/// A migrator over `migrations` (`(version, file, sql)`).
pub(crate) fn migrator_of(migrations: &[(i64, &'static str, &'static str)]) -> Migrator {
    Migrator::with_migrations(
        migrations
            .iter()
            .map(|(version, file, sql)| {
                Migration::new(
                    *version,
                    (*file).into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// A migration this ledger applied differs from this build's file of the same number.
pub(crate) fn edited_message(version: i64, file: &str, backend: &str) -> String {
    format!(
        "migration {version} ({file}) was changed after this ledger applied it: its checksum \
         differs. Migrations are append-only: restore crates/kora-store/migrations/{backend}/{file} \
         as it was and put the change in a new migration"
    )
}

/// The ledger has a migration this build does not know: a newer Kora made it.
pub(crate) fn unknown_message(version: i64) -> String {
    format!(
        "this ledger has migration {version}, which this build of Kora does not know: a newer \
         Kora has upgraded it. Run that version (or a newer one)"
    )
}

/// A migrator error in words an operator can act on.
pub(crate) fn migrate_error(e: MigrateError, migrator: &Migrator, backend: &str) -> Error {
    let file = |v: i64| {
        migrator
            .iter()
            .find(|m| m.version == v)
            .map_or_else(|| format!("{v:04}"), |m| m.description.to_string())
    };
    match e {
        MigrateError::VersionMismatch(v) => Error::Schema(edited_message(v, &file(v), backend)),
        MigrateError::VersionMissing(v) => Error::Schema(unknown_message(v)),
        other => Error::Schema(format!("cannot migrate the ledger: {other}")),
    }
}
