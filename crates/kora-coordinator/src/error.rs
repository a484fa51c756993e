//! The coordinator's one error type.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Broker(#[from] kora_broker::Error),
    #[error(transparent)]
    Store(#[from] kora_store::Error),
    #[error("cannot encode {0}")]
    Encode(#[from] kora_model::wire::WireError),
    /// A failure a crash test injected (the `coordinator-fail` failpoint).
    #[cfg(feature = "failpoints")]
    #[error("{0}")]
    Injected(String),
}
