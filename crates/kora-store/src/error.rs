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
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
