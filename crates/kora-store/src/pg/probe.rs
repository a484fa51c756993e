//! What a deployment check asks of the ledger's PostgreSQL without changing it: one connection
//! with the configured settings (no pool, no migration), and how that session is secured.

use sqlx::Connection;

use super::PgConfig;
use crate::Result;

/// How the configured role's session is secured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSecurity {
    /// The connection is encrypted (`pg_stat_ssl`).
    pub tls: bool,
    /// The role is a superuser.
    pub superuser: bool,
    /// The role may create databases or roles.
    pub creates: bool,
    /// The server's version (`SHOW server_version`).
    pub server_version: String,
}

/// Connects once as `cfg` says and reads [`SessionSecurity`].
pub async fn session_security(cfg: &PgConfig) -> Result<SessionSecurity> {
    let mut conn = sqlx::PgConnection::connect_with(&super::options::for_config(cfg)?).await?;
    let (tls, superuser, creates, server_version): (bool, bool, bool, String) = sqlx::query_as(
        "SELECT COALESCE((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false), \
         r.rolsuper, r.rolcreatedb OR r.rolcreaterole, current_setting('server_version') \
         FROM pg_roles r WHERE r.rolname = current_user",
    )
    .fetch_one(&mut conn)
    .await?;
    let _ = conn.close().await;
    Ok(SessionSecurity {
        tls,
        superuser,
        creates,
        server_version,
    })
}
