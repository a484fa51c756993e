//! Running a Kora installation for a benchmark: the release binary, and removing what a run
//! made (its streams, its raw-benchmark streams, its database) however it ended.

use kora_broker::nats::{JetStreamBroker, NatsConfig};
use sqlx::Connection;

const ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A name part unique to this run: `letter`, the process id and the time.
pub(crate) fn tag(letter: char) -> String {
    format!(
        "{letter}{}x{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() % 1_000_000)
    )
}

/// Creates the ledger database `db` on the local PostgreSQL: the admin connection (for
/// [`cleanup`]) and the database's URL.
pub(crate) async fn create_database(db: &str) -> (sqlx::PgConnection, String) {
    let mut admin = sqlx::PgConnection::connect(ADMIN)
        .await
        .expect("PostgreSQL on 127.0.0.1:5432");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&mut admin)
        .await
        .expect("create db");
    (admin, format!("postgres://postgres@127.0.0.1:5432/{db}"))
}

/// The release `kora` binary: `KORA_BIN`, or target/release/kora (`make bench` builds it).
pub(crate) fn kora_bin() -> std::path::PathBuf {
    if let Some(b) = std::env::var_os("KORA_BIN") {
        return b.into();
    }
    let b = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/kora");
    assert!(
        b.exists(),
        "{} is missing: run `cargo build --release -p kora-cli --bin kora` (make bench does)",
        b.display()
    );
    b
}

/// Deletes the installation's streams (`prefix`), the raw benchmark's (`tag`) and `db`.
pub(crate) async fn cleanup(
    nats: &str,
    prefix: &str,
    tag: &str,
    db: &str,
    admin: &mut sqlx::PgConnection,
) {
    if let Ok(b) = JetStreamBroker::connect(&NatsConfig {
        url: nats.into(),
        ..NatsConfig::default()
    })
    .await
    {
        let _ = b
            .delete_streams_with_prefix(&prefix.to_ascii_uppercase())
            .await;
        let _ = b
            .delete_streams_with_prefix(&format!("RAW{tag}").to_ascii_uppercase())
            .await;
    }
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
    )))
    .execute(admin)
    .await;
}
