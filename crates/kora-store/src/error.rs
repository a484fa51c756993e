#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("run {0} not found")]
    RunNotFound(String),
    #[error("invalid store configuration: {0}")]
    Config(String),
    #[error("run {run_id} changed under this writer ({detail}); rebuild its state and retry")]
    Conflict { run_id: String, detail: String },
    /// A name or id that must be unique is held by another (a trigger name, an API key id).
    #[error("{0}")]
    Taken(String),
    /// The ledger's schema cannot be brought to this build's: an edited or unknown migration,
    /// or a ledger from a build that cannot be upgraded.
    #[error("{0}")]
    Schema(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Shown as the database's own message and SQLSTATE (never sqlx's rendering, which adds
    /// the line of PostgreSQL's C source that raised it), with what to do for the errors a
    /// new installation meets. Not a `source`: the text already says it all, once.
    #[error("database: {}", describe(.0))]
    Db(sqlx::Error),
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Db(e)
    }
}

/// The SQLSTATE of a database error, if it is one.
pub(crate) fn sqlstate(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

fn describe(e: &sqlx::Error) -> String {
    let db = match e {
        sqlx::Error::Database(db) => db,
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) if e.to_string().contains("certificate") => {
            return format!(
                "{e}; with sslmode=verify-full the server's certificate must be signed by the CA in sslrootcert and name the URL's host"
            );
        }
        sqlx::Error::Io(_) => return format!("{e}; is PostgreSQL running at that address?"),
        _ => return e.to_string(),
    };
    let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
    let hint = match code.as_str() {
        "3D000" => "; create it (`createdb NAME`), or let `kora serve` create it",
        "28000" if db.message().ends_with("no encryption") => {
            "; the server accepts this client only over TLS: add sslmode=verify-full&sslrootcert=/path/to/ca.pem to the URL"
        }
        "28000" | "28P01" => {
            "; name a role that exists in the URL (postgres://USER@HOST:5432/DB) and its password, if it needs one, in database.password_file or PGPASSWORD"
        }
        _ => "",
    };
    format!("{} (SQLSTATE {code}){hint}", db.message())
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
