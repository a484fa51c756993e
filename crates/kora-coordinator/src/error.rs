//! The coordinator's one error type.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Broker(#[from] kora_broker::Error),
    #[error(transparent)]
    Store(#[from] kora_store::Error),
    /// The task committing a batch ended without an answer (it panicked): the batch is
    /// handed back as for a ledger outage.
    #[error("the ledger commit did not finish: {0}")]
    CommitLost(String),
    #[error("cannot encode {0}")]
    Encode(#[from] kora_model::wire::WireError),
    /// A failure a crash test injected (the `coordinator-fail` failpoint).
    #[cfg(feature = "failpoints")]
    #[error("{0}")]
    Injected(String),
}
