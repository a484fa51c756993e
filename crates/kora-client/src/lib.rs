//! Talking to a Kora installation as a client: submitting runs and waiting for them
//! ([`runs`]), and the operator API ([`control::Control`]: dead letters, replays, restarts,
//! cancels, triggers, poison messages; [`overview`]: what an installation is doing) that the
//! `kora` CLI and the HTTP gateway both use.
//!
//! Owns: what a client reads from the ledger, the requests it sends (run requests, cancels,
//! operator requests the coordinator applies and answers), and one [`Error`] whose kinds say how
//! a caller should answer (not found, invalid, conflict, no answer, timeout).
//!
//! Must not: write run state. The coordinator is its only writer; this crate asks it to.

pub mod control;
pub mod overview;
pub mod runs;

pub use control::{Control, PoisonMessage, TriggerSource, parse_since};
pub use runs::{Ending, RunReport, Submission};

use kora_model::wire::RefusalKind;

/// What went wrong, by how a caller should answer it (the gateway maps each kind to a status).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// What was asked for does not exist: a run, a dead letter, a trigger.
    #[error("{0}")]
    NotFound(String),
    /// The request cannot be done as asked: a malformed id, a bad filter or schedule.
    #[error("{0}")]
    Invalid(String),
    /// Not in this state: a dead letter already replayed, a run still running.
    #[error("{0}")]
    Conflict(String),
    /// No coordinator answered in time; the request is kept and applied when one runs.
    #[error("{0}")]
    NoAnswer(String),
    /// A run did not end within the time given.
    #[error("{0}")]
    Timeout(String),
    #[error(transparent)]
    Store(kora_store::Error),
    #[error(transparent)]
    Broker(#[from] kora_broker::Error),
    #[error(transparent)]
    Wire(#[from] kora_model::wire::WireError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<kora_store::Error> for Error {
    fn from(e: kora_store::Error) -> Self {
        match e {
            kora_store::Error::Taken(m) => Error::Conflict(m),
            e => Error::Store(e),
        }
    }
}

impl Error {
    /// A coordinator's refusal, by the kind it gave.
    pub(crate) fn refused(kind: RefusalKind, message: String) -> Self {
        match kind {
            RefusalKind::NotFound => Error::NotFound(message),
            RefusalKind::Invalid => Error::Invalid(message),
            RefusalKind::Conflict => Error::Conflict(message),
        }
    }
}
